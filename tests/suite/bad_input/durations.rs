//! A host's "no limit": `Duration::MAX` given as a timeout, a wait or a
//! setting is a wait that never ends, not a panic (`Instant + Duration`
//! overflows past the clock's range).

use std::time::Duration;

use connective::model::Revision;
use connective::prelude::*;
use connective::registry::ReadAudit;
use connective::store::{MemoryStore, Store};

pub(super) fn crm() -> ConnectionSpec {
    ConnectionSpec::project("acme", "crm")
        .auth(AuthScheme::ApiKey)
        .param(Param::secret("ApiKey").default("k-123"))
        .build()
        .unwrap()
}

/// Maps every parameter of `crm` for integration `orders` (default names)
/// and resolves it in production.
pub(super) fn resolve_orders(registry: &Registry) -> ResolvedEnv {
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name_defaults("crm")
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    registry
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap()
}

#[test]
fn a_store_waited_on_without_limit_answers_a_change_it_has() {
    let store = std::sync::Arc::new(MemoryStore::new());
    let registry = Registry::builder().store(store.clone()).build().unwrap();
    registry.create_connection(crm()).unwrap();
    let now = store.wait_for_change(Revision(0), Duration::MAX).unwrap();
    assert!(now > Revision(0));
}

#[test]
fn the_read_audit_flushed_without_limit_flushes() {
    let registry = Registry::builder()
        .audit("service:deployer".parse().unwrap())
        .audit_reads(ReadAudit::queued(64, connective::registry::QueueFull::Block))
        .build()
        .unwrap();
    registry.create_connection(crm()).unwrap();
    resolve_orders(&registry);
    registry.flush_read_audit(Duration::MAX).unwrap();
    let stats = registry.read_audit_stats().unwrap();
    assert_eq!((stats.queued, stats.recorded), (0, 1), "{stats:?}");
}

#[cfg(feature = "async")]
#[test]
fn an_async_store_waited_on_without_limit_answers_a_change_it_has() {
    use connective::store::AsyncStore;
    let store = std::sync::Arc::new(MemoryStore::new());
    let registry = Registry::builder().store(store.clone()).build().unwrap();
    registry.create_connection(crm()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let now = runtime
        .block_on(AsyncStore::wait_for_change(&*store, Revision(0), Duration::MAX))
        .unwrap();
    assert!(now > Revision(0));
}

#[cfg(feature = "external-secrets")]
#[test]
fn a_secret_cache_without_limits_fetches_and_resolves() {
    use std::sync::Arc;

    use connective::external::{SecretCache, SecretStore, StoreFuture, StoreSecret};
    use connective::model::{ResolvePolicy, SecretLocation, SecretValue, StoreName};

    /// Answers `s3cret` under `password` at every location.
    struct Fixed;
    impl SecretStore for Fixed {
        fn read<'a>(&'a self, _: &'a SecretLocation) -> StoreFuture<'a> {
            Box::pin(async { Ok(StoreSecret::new().with_key("password", SecretValue::new("s3cret"))) })
        }
    }

    // Staleness, refresh and first wait all past the clock's range (the
    // refresh jittered up to 1.5 times).
    let cache = SecretCache::builder()
        .store(StoreName::vault(), Fixed)
        .refresh_interval(Duration::MAX / 2)
        .max_staleness(Duration::MAX)
        .first_fetch_wait(Duration::MAX)
        .jitter(0.5)
        .build()
        .unwrap();
    let registry = Registry::builder()
        .policy(ResolvePolicy::default().with_external_secrets(Arc::new(cache.clone())))
        .build()
        .unwrap();
    registry
        .create_connection(
            ConnectionSpec::project("acme", "crm")
                .auth(AuthScheme::Basic)
                .param(Param::secret("Password").env_ref("production", "vault:secret/crm#password"))
                .build()
                .unwrap(),
        )
        .unwrap();
    let env = resolve_orders(&registry);
    assert_eq!(env.expose("CRM_PASSWORD"), Some("s3cret"));
}
