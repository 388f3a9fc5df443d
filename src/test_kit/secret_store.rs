//! The conformance suite of [`SecretStore`] implementations (features
//! `test-kit` and `external-secrets`): the built-in Vault/OpenBao client
//! passes it, and so must a host's AWS, GCP or Azure store.
//!
//! The checks need to write secrets, which a [`SecretStore`] does not do:
//! a [`SecretFixture`] writes them through the store's own API or tool.
//!
//! ```no_run
//! # #[cfg(feature = "vault")] {
//! use connective::model::{SecretLocation, StoreName};
//! use connective::test_kit::secret_store::{self, SecretFixture};
//! struct BaoCli; // writes with `bao kv put`
//! impl SecretFixture for BaoCli {
//!     fn location(&self, name: &str) -> SecretLocation {
//!         SecretLocation::new(StoreName::openbao(), "secret", &format!("conformance/{name}")).unwrap()
//!     }
//!     fn put(&self, location: &SecretLocation, keys: &[(&str, &str)]) { /* bao kv put ... */ }
//!     fn remove(&self, location: &SecretLocation) { /* bao kv metadata delete ... */ }
//!     fn forbidden(&self) -> Option<SecretLocation> { None }
//! }
//! # let store = connective::external::vault::VaultStore::new("http://127.0.0.1:8200",
//! #     connective::external::vault::VaultAuth::token("root")).unwrap();
//! secret_store::run_all(&store, &BaoCli);
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::external::{SecretCache, SecretStore, StoreFuture, StoreSecret};
use crate::model::{ExternalFault, ExternalRef, ExternalSecrets, SecretLocation};

/// Writes the secrets a check reads, in the store under test.
pub trait SecretFixture {
    /// A location of the store under test that the checks may write at,
    /// unique for `name` (a store name the [`SecretCache`] is given the
    /// store under, a mount, a path).
    fn location(&self, name: &str) -> SecretLocation;
    /// Writes `keys` at `location`, as a new version.
    fn put(&self, location: &SecretLocation, keys: &[(&str, &str)]);
    /// Deletes the secret at `location`, every version.
    fn remove(&self, location: &SecretLocation);
    /// A location holding a secret that the store's credentials may not
    /// read, if the fixture can make one (`None` skips that check).
    fn forbidden(&self) -> Option<SecretLocation>;
}

/// Runs every check on `store`.
pub fn run_all(store: &(impl SecretStore + Clone), fixture: &dyn SecretFixture) {
    reads_every_key_written(store, fixture);
    rotation_is_a_new_version(store, fixture);
    a_pinned_version_reads_that_version(store, fixture);
    missing_and_forbidden_are_typed(store, fixture);
    nothing_secret_is_shown(store, fixture);
    a_cache_fetches_each_location_once(store.clone(), fixture);
}

fn block<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the checks")
        .block_on(future)
}

fn read(store: &dyn SecretStore, location: &SecretLocation) -> Result<StoreSecret, ExternalFault> {
    block(store.read(location))
}

/// What is written is read back: every key, its value, and a version if
/// the store keeps them.
pub fn reads_every_key_written(store: &dyn SecretStore, fixture: &dyn SecretFixture) {
    let at = fixture.location("reads-every-key");
    fixture.put(&at, &[("username", "app"), ("password", "conformance-pw-1")]);
    let secret = read(store, &at).unwrap_or_else(|e| panic!("reading {at}: {e}"));
    assert_eq!(
        secret.get("username").map(|v| v.expose()),
        Some("app"),
        "username of {at}"
    );
    assert_eq!(
        secret.get("password").map(|v| v.expose()),
        Some("conformance-pw-1"),
        "password of {at}"
    );
    let mut keys: Vec<&str> = secret.keys().collect();
    keys.sort_unstable();
    assert_eq!(keys, ["password", "username"], "keys of {at}");
    fixture.remove(&at);
}

/// A value written again is read as the new value, of another version.
pub fn rotation_is_a_new_version(store: &dyn SecretStore, fixture: &dyn SecretFixture) {
    let at = fixture.location("rotation");
    fixture.put(&at, &[("password", "rotation-pw-1")]);
    let first = read(store, &at).unwrap_or_else(|e| panic!("reading {at}: {e}"));
    fixture.put(&at, &[("password", "rotation-pw-2")]);
    let second = read(store, &at).unwrap_or_else(|e| panic!("reading {at} again: {e}"));
    assert_eq!(second.get("password").map(|v| v.expose()), Some("rotation-pw-2"));
    if let (Some(a), Some(b)) = (first.version(), second.version()) {
        assert_ne!(a, b, "a rotated secret of {at} keeps its version");
    }
    fixture.remove(&at);
}

/// A location pinned to a version reads that version, not the current one
/// (stores that keep versions).
pub fn a_pinned_version_reads_that_version(store: &dyn SecretStore, fixture: &dyn SecretFixture) {
    let at = fixture.location("pinned");
    fixture.put(&at, &[("password", "pinned-pw-1")]);
    let first = read(store, &at).unwrap_or_else(|e| panic!("reading {at}: {e}"));
    let Some(version) = first.version().cloned() else {
        fixture.remove(&at);
        return;
    };
    fixture.put(&at, &[("password", "pinned-pw-2")]);
    let pinned = at.clone().with_version(version);
    let old = read(store, &pinned).unwrap_or_else(|e| panic!("reading {pinned}: {e}"));
    assert_eq!(
        old.get("password").map(|v| v.expose()),
        Some("pinned-pw-1"),
        "{pinned}"
    );
    fixture.remove(&at);
}

/// A missing secret is [`ExternalFault::NotFound`]; a forbidden one
/// [`ExternalFault::PermissionDenied`].
pub fn missing_and_forbidden_are_typed(store: &dyn SecretStore, fixture: &dyn SecretFixture) {
    let at = fixture.location("never-written");
    assert_eq!(
        read(store, &at).unwrap_err(),
        ExternalFault::NotFound,
        "reading {at}"
    );
    if let Some(forbidden) = fixture.forbidden() {
        assert_eq!(
            read(store, &forbidden).unwrap_err(),
            ExternalFault::PermissionDenied,
            "reading {forbidden}"
        );
    }
}

/// Neither an answer's `Debug` nor a fault shows a value.
pub fn nothing_secret_is_shown(store: &dyn SecretStore, fixture: &dyn SecretFixture) {
    let at = fixture.location("nothing-shown");
    let value = crate::test_kit::unique_secret("conformance");
    fixture.put(&at, &[("password", &value)]);
    let secret = read(store, &at).unwrap_or_else(|e| panic!("reading {at}: {e}"));
    assert!(
        !format!("{secret:?}").contains(&value),
        "Debug of {at} shows its value"
    );
    let missing = format!(
        "{:?} {}",
        read(store, &at.clone().with_version("999999".parse().unwrap())),
        at
    );
    assert!(!missing.contains(&value), "a fault shows a value: {missing}");
    fixture.remove(&at);
}

/// Counts the reads that reach a store.
struct Counted<S> {
    store: S,
    reads: Arc<AtomicU64>,
}

impl<S: SecretStore> SecretStore for Counted<S> {
    fn read<'a>(&'a self, location: &'a SecretLocation) -> StoreFuture<'a> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.store.read(location)
    }
}

/// Through a [`SecretCache`], 200 concurrent lookups of a cold secret (two
/// keys of it) make one read of the store, and warm lookups none.
pub fn a_cache_fetches_each_location_once(store: impl SecretStore, fixture: &dyn SecretFixture) {
    let at = fixture.location("cached-once");
    fixture.put(&at, &[("username", "cached"), ("password", "cached-pw")]);
    let reads = Arc::new(AtomicU64::new(0));
    let cache = SecretCache::builder()
        .store(
            at.store().clone(),
            Counted {
                store,
                reads: reads.clone(),
            },
        )
        .first_fetch_wait(Duration::from_secs(10))
        .build()
        .expect("a cache");
    let user = ExternalRef::new(at.clone(), "username").expect("a reference");
    let password = ExternalRef::new(at.clone(), "password").expect("a reference");
    std::thread::scope(|s| {
        for i in 0..200 {
            let r = if i % 2 == 0 { &user } else { &password };
            let cache = &cache;
            s.spawn(move || cache.lookup(r).unwrap_or_else(|e| panic!("looking up {r}: {e}")));
        }
    });
    for _ in 0..1_000 {
        cache.lookup(&password).expect("a warm lookup");
    }
    assert_eq!(reads.load(Ordering::SeqCst), 1, "reads of {at} through a cache");
    fixture.remove(&at);
}
