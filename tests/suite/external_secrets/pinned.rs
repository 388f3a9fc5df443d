//! A resolution pins one generation of the `SecretCache` and borrows its
//! referenced values from it: the answer keeps the values (and their
//! provenance) of that generation whatever the cache refreshes later, the
//! next resolution sees the refreshed ones, a memoized registry never hands
//! out a value older than the cache's, and a reference the cache has not
//! fetched yet is still waited for (or answered `NotFetched`) as before.
//! The store is an in-memory `SecretStore` answering `value-N` for its N-th
//! read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connective::external::{SecretCache, SecretStore, StoreFuture, StoreSecret};
use connective::model::{
    ExternalFault, ExternalRef, ExternalSecrets, Layer, ParamValues, ResolvePolicy, SecretLocation,
    SecretValue, StoreName,
};
use connective::prelude::*;
use connective::resolve::{Problem, ValueSource};

/// Answers `value-N` (version N) for the N-th read of any location, under
/// every key asked for here, after `delay_ms`.
#[derive(Default)]
struct Counting {
    reads: AtomicU64,
    delay_ms: AtomicU64,
}

/// A [`Counting`] the test keeps a handle on.
#[derive(Clone)]
struct Shared(Arc<Counting>);

impl SecretStore for Shared {
    fn read<'a>(&'a self, location: &'a SecretLocation) -> StoreFuture<'a> {
        Box::pin(async move {
            let n = self.0.reads.fetch_add(1, Ordering::SeqCst) + 1;
            let delay = self.0.delay_ms.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(delay)).await;
            Ok(StoreSecret::new()
                .with_key(
                    "password",
                    SecretValue::new(format!("{}-value-{n}", location.path())),
                )
                .with_key("user", SecretValue::new(format!("{}-user-{n}", location.path())))
                .with_version(n.to_string().parse().unwrap()))
        })
    }
}

fn cache(store: &Arc<Counting>, refresh: Duration, first_fetch_wait: Duration) -> SecretCache {
    SecretCache::builder()
        .store(StoreName::vault(), Shared(store.clone()))
        .refresh_interval(refresh)
        .max_staleness(Duration::from_secs(600))
        .first_fetch_wait(first_fetch_wait)
        .jitter(0.0)
        .build()
        .unwrap()
}

/// `crm` with `Password` and `User` referenced in production, mapped to
/// `CRM_PASSWORD` and `CRM_USER` for integration `orders`; a memo of
/// `memo` answers.
fn registry(cache: &SecretCache, memo: usize) -> Registry {
    let registry = Registry::builder()
        .policy(ResolvePolicy::default().with_external_secrets(Arc::new(cache.clone())))
        .resolve_memo(memo)
        .build()
        .unwrap();
    registry
        .create_connection(
            ConnectionSpec::project("acme", "crm")
                .auth(AuthScheme::Basic)
                .param(Param::secret("Password").env_ref("production", "vault:secret/crm#password"))
                .param(Param::secret("User").env_ref("production", "vault:secret/crm#user"))
                .build()
                .unwrap(),
        )
        .unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("crm", [("Password", "CRM_PASSWORD"), ("User", "CRM_USER")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    registry
}

fn request() -> ResolveRequest {
    ResolveRequest::parse("acme", "orders", "production").unwrap()
}

fn password() -> ExternalRef {
    "vault:secret/crm#password".parse().unwrap()
}

/// The version the provenance of `name` in `env` says was served.
fn version(env: &ResolvedEnv, name: &str) -> u64 {
    match env.provenance(name).unwrap().source {
        ValueSource::External { fetch, .. } => fetch.version.as_ref().unwrap().as_str().parse().unwrap(),
        other => panic!("not an external value: {other:?}"),
    }
}

/// Waits until the cache serves a newer version of the password than
/// `than`.
fn wait_for_refresh(cache: &SecretCache, than: u64) {
    let start = Instant::now();
    loop {
        let now = cache.lookup(&password()).unwrap();
        let served: u64 = now.fetch.version.as_ref().unwrap().as_str().parse().unwrap();
        if served > than {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no refresh");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn an_answer_keeps_its_cache_generation_and_a_new_resolution_sees_the_refresh() {
    let store = Arc::new(Counting::default());
    let cache = cache(&store, Duration::from_millis(500), Duration::from_secs(5));
    let registry = registry(&cache, 0);
    let old = registry.resolve(&request()).unwrap();
    assert_eq!(old.expose("CRM_PASSWORD"), Some("crm-value-1"));
    assert_eq!(old.expose("CRM_USER"), Some("crm-user-1"));
    // A second resolution borrows from the cache's generation.
    let again = registry.resolve(&request()).unwrap();
    assert_eq!(again.expose("CRM_PASSWORD"), Some("crm-value-1"));
    let said = format!("{again} {again:?}");
    assert!(!said.contains("crm-value-1"), "a value leaked: {said}");
    wait_for_refresh(&cache, 1);

    let new = registry.resolve(&request()).unwrap();
    assert!(version(&new, "CRM_PASSWORD") > 1);
    assert_ne!(new.expose("CRM_PASSWORD"), Some("crm-value-1"));
    // One generation: both values of an answer come from the same fetch.
    assert_eq!(version(&new, "CRM_USER"), version(&new, "CRM_PASSWORD"));
    // The answers made before keep what they read, value and provenance.
    for env in [&old, &again] {
        assert_eq!(env.expose("CRM_PASSWORD"), Some("crm-value-1"));
        assert_eq!(env.expose("CRM_USER"), Some("crm-user-1"));
        assert_eq!(version(env, "CRM_PASSWORD"), 1);
        let provenance = env.provenance("CRM_PASSWORD").unwrap().to_string();
        assert!(
            provenance.contains("from vault:secret/crm#password (version 1, fetched at"),
            "{provenance}"
        );
    }
    // Explanation reads the cache as it is now.
    let why = registry.explain(&request(), "CRM_PASSWORD").unwrap().unwrap();
    assert_ne!(why.value.expose(), "crm-value-1");
    assert!(matches!(why.provenance.source, ValueSource::External { .. }));
}

#[test]
fn a_memoized_registry_never_serves_a_value_older_than_the_cache() {
    let store = Arc::new(Counting::default());
    let cache = cache(&store, Duration::from_millis(50), Duration::from_secs(5));
    let registry = registry(&cache, 1_024);
    let mut seen = std::collections::BTreeSet::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(600) {
        let before = cache.lookup(&password()).unwrap();
        let before: u64 = before.fetch.version.as_ref().unwrap().as_str().parse().unwrap();
        let env = registry.resolve(&request()).unwrap();
        let served = version(&env, "CRM_PASSWORD");
        assert!(
            served >= before,
            "the registry served version {served} after the cache served {before}"
        );
        assert_eq!(env.expose("CRM_PASSWORD").unwrap(), format!("crm-value-{served}"));
        seen.insert(served);
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(seen.len() >= 3, "refreshes seen: {seen:?}");
    // Answers holding referenced values are not kept.
    assert_eq!(registry.resolve_memo_stats().hits, 0);
}

#[test]
fn a_reference_not_fetched_yet_is_waited_for_or_answered_not_fetched() {
    // Waited for: the first resolution reads the first fetch.
    let store = Arc::new(Counting::default());
    let waiting = cache(&store, Duration::from_secs(60), Duration::from_secs(5));
    let waited = registry(&waiting, 0);
    let env = waited.resolve(&request()).unwrap();
    assert_eq!(env.expose("CRM_PASSWORD"), Some("crm-value-1"));
    assert_eq!(env.expose("CRM_USER"), Some("crm-user-1"));
    assert_eq!(store.reads.load(Ordering::SeqCst), 1, "one fetch for both keys");

    // Waited for too when the cache already knows the reference (a lookup
    // elsewhere started its fetch): the generation the resolution pins says
    // "not fetched", and the resolution waits as the cache's settings say.
    let store = Arc::new(Counting::default());
    store.delay_ms.store(300, Ordering::SeqCst);
    let slow = cache(&store, Duration::from_secs(60), Duration::from_secs(5));
    let known = registry(&slow, 0);
    let snapshot = known.snapshot(&"acme".parse().unwrap()).unwrap();
    let crm = snapshot.connections().next().unwrap();
    let ParamValues::Secret(layers) = crm.value.spec().param("Password").unwrap().values() else {
        panic!("a secret parameter")
    };
    // The reference the snapshot holds, the one resolution looks up.
    let held = layers
        .external(&Layer::Environment("production".parse().unwrap()))
        .unwrap();
    let started = slow.prefetch([held], Duration::ZERO);
    assert_eq!(started, [(password(), ExternalFault::NotFetched)]);
    let env = known.resolve(&request()).unwrap();
    assert_eq!(env.expose("CRM_PASSWORD"), Some("crm-value-1"));

    // Not waited for: `NotFetched` naming the reference, then the value.
    // The store answers late, so that the fetch the first resolution
    // starts cannot have finished when it looks (on a loaded machine a
    // prompt store sometimes did).
    let store = Arc::new(Counting::default());
    store.delay_ms.store(500, Ordering::SeqCst);
    let eager = cache(&store, Duration::from_secs(60), Duration::ZERO);
    let registry = registry(&eager, 0);
    let err = registry.resolve(&request()).unwrap_err();
    assert!(
        err.problems.iter().any(|p| matches!(
            p,
            Problem::ExternalSecret { reference, fault: ExternalFault::NotFetched, .. }
                if **reference == password()
        )),
        "{err}"
    );
    let start = Instant::now();
    let env = loop {
        match registry.resolve(&request()) {
            Ok(env) => break env,
            Err(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("never fetched: {e}"),
        }
    };
    assert_eq!(env.expose("CRM_PASSWORD"), Some("crm-value-1"));
}

#[test]
fn a_memoized_registry_resolves_referenced_values_afresh_across_writes_until_they_are_stored() {
    let store = Arc::new(Counting::default());
    let cache = cache(&store, Duration::from_millis(100), Duration::from_secs(5));
    let registry = registry(&cache, 1_024);
    let served = || -> u64 {
        let now = cache.lookup(&password()).unwrap();
        now.fetch.version.as_ref().unwrap().as_str().parse().unwrap()
    };
    // The answer has the value the cache served while it was resolved.
    let fresh = |registry: &Registry| {
        let before = served();
        let env = registry.resolve(&request()).unwrap();
        let got = version(&env, "CRM_PASSWORD");
        assert!(before <= got && got <= served(), "{before} {got}");
        assert_eq!(env.expose("CRM_PASSWORD").unwrap(), format!("crm-value-{got}"));
        env
    };
    let first = registry.resolve(&request()).unwrap();
    fresh(&registry);
    // A write the answer does not read: what the memo keeps is carried
    // over to the new snapshot, and the values are still read afresh.
    registry
        .create_connection(
            ConnectionSpec::project("acme", "unrelated")
                .param(Param::plain("Url").default("https://example.com"))
                .build()
                .unwrap(),
        )
        .unwrap();
    fresh(&registry);
    assert_eq!(registry.resolve_memo_stats().carried_over, 1);
    let seen = version(&fresh(&registry), "CRM_PASSWORD");
    wait_for_refresh(&cache, seen);
    assert!(version(&fresh(&registry), "CRM_PASSWORD") > seen);
    assert_eq!(registry.resolve_memo_stats().hits, 0);
    // Once the values are stored, the answer is kept and handed out again.
    let id = first.get("CRM_PASSWORD").unwrap().connection_id();
    let version_now = registry.connection(&"acme".parse().unwrap(), id).unwrap().version;
    registry
        .update_connection(
            id,
            version_now,
            ConnectionSpec::project("acme", "crm")
                .auth(AuthScheme::Basic)
                .param(Param::secret("Password").env("production", "stored-password"))
                .param(Param::secret("User").env("production", "stored-user"))
                .build()
                .unwrap(),
        )
        .unwrap();
    let stored = registry.resolve(&request()).unwrap();
    assert_eq!(stored.expose("CRM_PASSWORD"), Some("stored-password"));
    let again = registry.resolve(&request()).unwrap();
    assert!(again.shares_answer_with(&stored), "memoized");
    assert_eq!(registry.resolve_memo_stats().hits, 1);
}
