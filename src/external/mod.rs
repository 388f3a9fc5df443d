//! External secret stores (HashiCorp Vault, OpenBao, a cloud secret
//! manager) and the in-memory cache resolution reads their values from.
//!
//! A secret parameter's value layer may hold an
//! [`ExternalRef`](crate::model::ExternalRef) instead of a value
//! (`vault:secret/crm/prod#password`). Resolution never calls a store: it
//! reads the [`SecretCache`], which fetches each secret on first need (or in
//! bulk at start, [`SecretCache::prefetch`]), keeps it fresh in the
//! background before its refresh interval or lease runs out, fetches each
//! secret once at a time however many resolutions want it, serves the last
//! good value while a store is down up to a maximum staleness, and never
//! writes a value to disk.
//!
//! A store is a [`SecretStore`]: the built-in [`VaultStore`](vault::VaultStore)
//! (feature `vault`) reads Vault's and OpenBao's KV version 2; a host plugs
//! in AWS, GCP or Azure by implementing the trait (the `test-kit` feature's
//! `test_kit::secret_store` checks an implementation).

mod cache;
#[cfg(feature = "vault")]
pub mod vault;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use cache::{CacheStats, SecretCache, SecretCacheBuilder, SettingsError};

use crate::model::{ExternalFault, SecretLocation, SecretValue, SecretVersion};

/// The future a [`SecretStore`] read returns.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<StoreSecret, ExternalFault>> + Send + 'a>>;

/// An external secret store: reads every key of the secret at a location.
/// The [`SecretCache`] calls it (never resolution), once per location at a
/// time, on the cache's tokio runtime (its own, or the host's:
/// [`SecretCacheBuilder::runtime`]).
///
/// An implementation answers [`ExternalFault::NotFound`] for a missing
/// secret (or version), [`ExternalFault::PermissionDenied`] for a path its
/// credentials may not read, [`ExternalFault::Unauthenticated`] when the
/// store refuses the credentials themselves, and
/// [`ExternalFault::Unavailable`] when it cannot reach the store; its
/// messages never hold a value nor a credential. A location pinned to a
/// version reads that version.
///
/// ```
/// use connective::external::{SecretStore, StoreFuture, StoreSecret};
/// use connective::model::{ExternalFault, SecretLocation, SecretValue};
///
/// /// A store answering from a fixed table (a real one calls its service).
/// struct Fixed;
/// impl SecretStore for Fixed {
///     fn read<'a>(&'a self, location: &'a SecretLocation) -> StoreFuture<'a> {
///         Box::pin(async move {
///             match location.path() {
///                 "crm" => Ok(StoreSecret::new().with_key("password", SecretValue::new("pw"))),
///                 _ => Err(ExternalFault::NotFound),
///             }
///         })
///     }
/// }
/// ```
pub trait SecretStore: Send + Sync + 'static {
    /// Every key of the secret at `location`, with its version and how long
    /// the store lets it be used, if it says.
    fn read<'a>(&'a self, location: &'a SecretLocation) -> StoreFuture<'a>;
}

/// What a [`SecretStore`] answered for one location: its keys and values,
/// the version, and the lease or time to live the store gave (a dynamic
/// secret's lease; `None` for a static secret, refreshed at the cache's
/// interval). `Debug` shows key names only.
#[derive(Clone, Default)]
pub struct StoreSecret {
    /// Sorted by key (a secret has a few keys: a short scan finds one).
    keys: Vec<(String, SecretValue)>,
    version: Option<SecretVersion>,
    ttl: Option<Duration>,
}

impl StoreSecret {
    /// No keys, no version, no lease.
    pub fn new() -> Self {
        StoreSecret::default()
    }

    /// The same with `key` holding `value`.
    pub fn with_key(mut self, key: impl Into<String>, value: SecretValue) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: impl Into<String>, value: SecretValue) {
        let key = key.into();
        match self.keys.binary_search_by(|(k, _)| k.as_str().cmp(&key)) {
            Ok(i) => self.keys[i].1 = value,
            Err(i) => self.keys.insert(i, (key, value)),
        }
    }

    /// The same, of `version`.
    pub fn with_version(mut self, version: SecretVersion) -> Self {
        self.version = Some(version);
        self
    }

    /// The same, usable for `ttl` (a lease): the cache refreshes it before.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&SecretValue> {
        if self.keys.len() <= 8 {
            // Resolution asks on every referenced value: lengths first.
            return self
                .keys
                .iter()
                .find(|(k, _)| k.len() == key.len() && k == key)
                .map(|(_, v)| v);
        }
        self.keys
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|i| &self.keys[i].1)
    }

    /// The key names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(k, _)| k.as_str())
    }

    /// The version, if the store said.
    pub fn version(&self) -> Option<&SecretVersion> {
        self.version.as_ref()
    }

    /// The lease or time to live, if the store gave one.
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl
    }
}

impl fmt::Debug for StoreSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSecret")
            .field("keys", &self.keys().collect::<Vec<_>>())
            .field("version", &self.version)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A store's message, safe to keep in a fault: at most 200 characters, on
/// one line, with every run of 16 or more characters that could be a token
/// or a value (letters, digits, `-_.+/=`) replaced by `[REDACTED]`.
///
/// ```
/// use connective::external::redact;
/// let said = redact("permission denied for token hvs.CAESIJ3xLr9m2Qa7bWv4yTz1\nand more");
/// assert_eq!(said, "permission denied for token [REDACTED] and more");
/// ```
pub fn redact(message: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let flush = |out: &mut String, run: &mut String| {
        if run.chars().count() >= 16 {
            out.push_str("[REDACTED]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in message.chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '/' | '=') {
            run.push(c);
        } else {
            flush(&mut out, &mut run);
            out.push(if c.is_control() { ' ' } else { c });
        }
    }
    flush(&mut out, &mut run);
    if out.chars().count() > 200 {
        out = out.chars().take(199).collect();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_secret_debug_names_keys_only() {
        let s = StoreSecret::new()
            .with_key("password", SecretValue::new("hunter2-value"))
            .with_version("4".parse().unwrap());
        let d = format!("{s:?}");
        assert!(
            d.contains("password") && d.contains('4') && !d.contains("hunter2"),
            "{d}"
        );
    }

    #[test]
    fn redaction_hides_long_runs_and_bounds_the_message() {
        assert_eq!(
            redact("1 error occurred: no handler"),
            "1 error occurred: no handler"
        );
        assert_eq!(redact("bad value s3cr3t-v4lue-abcdefgh"), "bad value [REDACTED]");
        assert_eq!(redact(&"x ".repeat(300)).chars().count(), 200);
    }
}
