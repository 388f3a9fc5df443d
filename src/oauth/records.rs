//! The OAuth runtime's records as a registry has seen them: token sets and
//! connection statuses by [`CredentialKey`], each with its store version.
//!
//! The registry feeds this index from the store (at load, and from the change
//! feed as it catches up) and the runtime feeds it its own commits, in any
//! order: a record replaces what is there only if its version is higher, so a
//! late or repeated change never moves a key back.
//!
//! Reads are lock-free: the keys are spread over [`SHARDS`] copy-on-write maps
//! (an atomic pointer load each), and each key's current record is behind its
//! own atomic pointer. Nothing on the read path writes shared memory, so
//! readers on many threads do not slow each other down (a cached access token
//! is one such read). All keys of one connection share a shard, so the
//! records of a connection are found without reading the others.
//!
//! Pending authorizations are indexed too, by their expiry and connection
//! only (never their verifier): what expiring them and deleting a
//! connection need. A deleted one is remembered until it expires, so that a
//! late change cannot bring it back.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use hashbrown::DefaultHashBuilder;

use crate::model::{
    ConnectionId, ConnectionStatus, CredentialKey, HealthKind, PendingAuthorization, ProjectId, Record,
    RecordKey, Timestamp, TokenSet, Version, Versioned,
};

/// How many maps the keys are spread over (a new key copies one of them).
pub const SHARDS: usize = 64;

/// One key's latest known record, or its deletion, at a version.
#[derive(Debug)]
struct Entry<V> {
    version: Version,
    value: Option<Arc<V>>,
}

#[derive(Debug)]
struct Slot<V> {
    current: ArcSwap<Entry<V>>,
}

type Shard<V> = HashMap<CredentialKey, Arc<Slot<V>>, DefaultHashBuilder>;

/// A versioned map with lock-free reads.
struct Sharded<V> {
    shards: Vec<ArcSwap<Shard<V>>>,
    /// Serializes insertions of new keys (per shard).
    insert: Vec<Mutex<()>>,
    hasher: DefaultHashBuilder,
}

impl<V> std::fmt::Debug for Sharded<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sharded").field("len", &self.len()).finish()
    }
}

impl<V> Sharded<V> {
    fn new() -> Self {
        Sharded {
            shards: (0..SHARDS)
                .map(|_| ArcSwap::from_pointee(Shard::default()))
                .collect(),
            insert: (0..SHARDS).map(|_| Mutex::new(())).collect(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// The shard of a connection's keys: every environment and customer of
    /// one connection share it.
    fn shard_of_connection(&self, project: &ProjectId, connection: ConnectionId) -> usize {
        (self.hasher.hash_one((project, connection)) % SHARDS as u64) as usize
    }

    fn shard_of(&self, key: &CredentialKey) -> usize {
        self.shard_of_connection(&key.project, key.connection)
    }

    /// The live keys of one connection, with their versions.
    fn of_connection(&self, project: &ProjectId, connection: ConnectionId) -> Vec<(CredentialKey, Version)> {
        let shard = self.shards[self.shard_of_connection(project, connection)].load();
        shard
            .iter()
            .filter(|(k, _)| k.connection == connection && &k.project == project)
            .filter_map(|(k, slot)| {
                let entry = slot.current.load();
                entry.value.as_ref().map(|_| (k.clone(), entry.version))
            })
            .collect()
    }

    /// Runs `f` on the live record under `key`, without taking a reference
    /// count on anything.
    fn with<R>(&self, key: &CredentialKey, f: impl FnOnce(Version, &Arc<V>) -> R) -> Option<R> {
        let shard = self.shards[self.shard_of(key)].load();
        let slot = shard.get(key)?;
        let entry = slot.current.load();
        entry.value.as_ref().map(|v| f(entry.version, v))
    }

    fn get(&self, key: &CredentialKey) -> Option<Versioned<Arc<V>>> {
        self.with(key, |version, v| Versioned {
            version,
            value: Arc::clone(v),
        })
    }

    /// Sets `key` to `value` (`None`: deleted) at `version`, unless a higher
    /// or equal version is already known.
    fn apply(&self, key: &CredentialKey, version: Version, value: Option<Arc<V>>) {
        let i = self.shard_of(key);
        let slot = match self.shards[i].load().get(key) {
            Some(slot) => Arc::clone(slot),
            None => {
                let _guard = self.insert[i].lock().unwrap_or_else(|e| e.into_inner());
                let current = self.shards[i].load_full();
                match current.get(key) {
                    Some(slot) => Arc::clone(slot),
                    None => {
                        let slot = Arc::new(Slot {
                            current: ArcSwap::from_pointee(Entry { version, value }),
                        });
                        let mut next: Shard<V> = (*current).clone();
                        next.insert(key.clone(), Arc::clone(&slot));
                        self.shards[i].store(Arc::new(next));
                        return;
                    }
                }
            }
        };
        let next = Arc::new(Entry { version, value });
        slot.current.rcu(|cur| {
            if cur.version < version {
                Arc::clone(&next)
            } else {
                Arc::clone(cur)
            }
        });
    }

    /// Every live record, in no order.
    fn all(&self) -> Vec<Versioned<Arc<V>>> {
        let mut out = Vec::new();
        for shard in &self.shards {
            for slot in shard.load().values() {
                let entry = slot.current.load();
                if let Some(v) = &entry.value {
                    out.push(Versioned {
                        version: entry.version,
                        value: Arc::clone(v),
                    });
                }
            }
        }
        out
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.load().len()).sum()
    }

    fn clear(&self) {
        for (shard, lock) in self.shards.iter().zip(&self.insert) {
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            shard.store(Arc::new(Shard::default()));
        }
    }
}

/// What the index keeps of a pending authorization.
#[derive(Debug)]
struct PendingEntry {
    version: Version,
    /// Whose it is; `None` once deleted.
    credentials: Option<CredentialKey>,
    expires_at: Timestamp,
}

/// Pending authorizations by (project, state ID).
type PendingMap = HashMap<(ProjectId, String), PendingEntry>;

/// Token sets, statuses and pending authorizations, by key, with versions:
/// fed in any order (a record replaces what is there only if its version is
/// higher); token sets and statuses are read without locks. A registry
/// keeps one:
/// [`Registry::oauth_records`](crate::registry::Registry::oauth_records).
///
/// ```
/// use connective::oauth::RuntimeRecords;
/// use connective::model::{HealthKind};
/// let records = RuntimeRecords::new();
/// assert!(records.statuses(Some(HealthKind::Failing), None).is_empty());
/// ```
pub struct RuntimeRecords {
    tokens: Sharded<TokenSet>,
    statuses: Sharded<ConnectionStatus>,
    pending: Mutex<PendingMap>,
}

impl std::fmt::Debug for RuntimeRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeRecords")
            .field("token_sets", &self.tokens.len())
            .field("statuses", &self.statuses.len())
            .field("pending_authorizations", &self.pending_authorizations())
            .finish()
    }
}

impl Default for RuntimeRecords {
    fn default() -> Self {
        RuntimeRecords::new()
    }
}

impl RuntimeRecords {
    /// An empty index.
    pub fn new() -> Self {
        RuntimeRecords {
            tokens: Sharded::new(),
            statuses: Sharded::new(),
            pending: Mutex::new(HashMap::new()),
        }
    }

    fn pending_map(&self) -> std::sync::MutexGuard<'_, PendingMap> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in one record (or the deletion of `key`) at `version`; records
    /// of other kinds are ignored.
    pub(crate) fn apply(&self, key: &RecordKey, version: Version, record: Option<&Record>) {
        match (key, record) {
            (RecordKey::TokenSet(k), Some(Record::TokenSet(t))) => {
                self.tokens.apply(k, version, Some(Arc::clone(t)));
            }
            (RecordKey::TokenSet(k), None) => self.tokens.apply(k, version, None),
            (RecordKey::Status(k), Some(Record::Status(s))) => {
                self.statuses.apply(k, version, Some(Arc::clone(s)));
            }
            (RecordKey::Status(k), None) => self.statuses.apply(k, version, None),
            (RecordKey::PendingAuthorization(p, id), Some(Record::PendingAuthorization(a))) => {
                self.apply_pending(p, id, version, Some(a));
            }
            (RecordKey::PendingAuthorization(p, id), None) => self.apply_pending(p, id, version, None),
            _ => {}
        }
    }

    fn apply_pending(
        &self,
        project: &ProjectId,
        id: &str,
        version: Version,
        pending: Option<&PendingAuthorization>,
    ) {
        let mut map = self.pending_map();
        match map.get_mut(&(project.clone(), id.to_owned())) {
            Some(entry) if entry.version >= version => {}
            Some(entry) => {
                entry.version = version;
                entry.credentials = pending.map(|a| a.credentials().clone());
                if let Some(a) = pending {
                    entry.expires_at = a.expires_at();
                }
            }
            // A deletion of a key never seen leaves nothing to remember.
            None => {
                if let Some(a) = pending {
                    map.insert(
                        (project.clone(), id.to_owned()),
                        PendingEntry {
                            version,
                            credentials: Some(a.credentials().clone()),
                            expires_at: a.expires_at(),
                        },
                    );
                }
            }
        }
    }

    /// How many pending authorizations (open or already used, and not yet
    /// removed) this registry knows of.
    pub fn pending_authorizations(&self) -> usize {
        self.pending_map()
            .values()
            .filter(|e| e.credentials.is_some())
            .count()
    }

    /// The pending authorizations that expired before `now`, with their
    /// versions. Deleted ones whose expiry passed are forgotten here: no
    /// change can bring them back any more that a purge would not remove.
    #[cfg(feature = "oauth-runtime")]
    pub(crate) fn expired_authorizations(&self, now: Timestamp) -> Vec<(RecordKey, Version)> {
        let mut map = self.pending_map();
        map.retain(|_, e| e.credentials.is_some() || e.expires_at >= now);
        let mut out: Vec<_> = map
            .iter()
            .filter(|(_, e)| e.expires_at < now)
            .map(|((p, id), e)| (RecordKey::PendingAuthorization(p.clone(), id.clone()), e.version))
            .collect();
        out.sort();
        out
    }

    /// Drops `key` from the pending authorizations (the store no longer has
    /// it).
    #[cfg(feature = "oauth-runtime")]
    pub(crate) fn forget_authorization(&self, key: &RecordKey) {
        if let RecordKey::PendingAuthorization(p, id) = key {
            self.pending_map().remove(&(p.clone(), id.clone()));
        }
    }

    /// Every runtime record of connection `id` (token sets, statuses and
    /// pending authorizations, of every environment and customer), with the
    /// versions this registry knows: what deleting the connection deletes.
    pub(crate) fn of_connection(&self, project: &ProjectId, id: ConnectionId) -> Vec<(RecordKey, Version)> {
        let mut out: Vec<(RecordKey, Version)> = self
            .tokens
            .of_connection(project, id)
            .into_iter()
            .map(|(k, v)| (RecordKey::TokenSet(k), v))
            .chain(
                self.statuses
                    .of_connection(project, id)
                    .into_iter()
                    .map(|(k, v)| (RecordKey::Status(k), v)),
            )
            .collect();
        out.extend(
            self.pending_map()
                .iter()
                .filter(|(_, e)| {
                    e.credentials
                        .as_ref()
                        .is_some_and(|c| c.connection == id && &c.project == project)
                })
                .map(|((p, state), e)| {
                    (
                        RecordKey::PendingAuthorization(p.clone(), state.clone()),
                        e.version,
                    )
                }),
        );
        out.sort();
        out
    }

    /// Forgets everything and takes in `records` (a store's whole load).
    pub(crate) fn replace_all<'a>(&self, records: impl IntoIterator<Item = &'a (Version, Record)>) {
        self.tokens.clear();
        self.statuses.clear();
        self.pending_map().clear();
        for (version, record) in records {
            self.apply(&record.key(), *version, Some(record));
        }
    }

    /// The token set of `key`, if any (its tokens stay inside the crate).
    pub fn token_set(&self, key: &CredentialKey) -> Option<Versioned<Arc<TokenSet>>> {
        self.tokens.get(key)
    }

    /// Runs `f` on `key`'s token set without taking a reference count.
    #[cfg(feature = "oauth-runtime")]
    pub(crate) fn with_token_set<R>(
        &self,
        key: &CredentialKey,
        f: impl FnOnce(Version, &TokenSet) -> R,
    ) -> Option<R> {
        self.tokens.with(key, |v, t| f(v, t))
    }

    /// The stored status of `key`, if any (none means untested).
    pub fn status(&self, key: &CredentialKey) -> Option<Versioned<Arc<ConnectionStatus>>> {
        self.statuses.get(key)
    }

    /// The stored statuses, of one kind or all, of one project or all,
    /// ordered by key.
    pub fn statuses(
        &self,
        kind: Option<HealthKind>,
        project: Option<&ProjectId>,
    ) -> Vec<Versioned<Arc<ConnectionStatus>>> {
        let mut out: Vec<_> = self
            .statuses
            .all()
            .into_iter()
            .filter(|s| kind.is_none_or(|k| s.value.health().kind() == k))
            .filter(|s| project.is_none_or(|p| &s.value.key().project == p))
            .collect();
        out.sort_by(|a, b| a.value.key().cmp(b.value.key()));
        out
    }
}

// The map's key type must hash the same way everywhere it is looked up.
const _: fn() = || {
    fn hashable<T: Hash + Eq>() {}
    hashable::<CredentialKey>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConnectionId, Environment, Health, Timestamp};

    fn key(i: u128) -> CredentialKey {
        CredentialKey::new(
            "acme".parse().unwrap(),
            ConnectionId::parse(&format!("00000000-0000-4000-8000-{i:012x}")).unwrap(),
            Environment::production(),
            None,
        )
    }

    fn status(k: &CredentialKey, health: Health) -> Record {
        Record::Status(Arc::new(ConnectionStatus::new(k.clone(), health, Timestamp(1))))
    }

    #[test]
    fn a_lower_version_never_replaces_a_higher_one() {
        let r = RuntimeRecords::new();
        let k = key(1);
        r.apply(
            &RecordKey::Status(k.clone()),
            Version(2),
            Some(&status(&k, Health::Active)),
        );
        r.apply(
            &RecordKey::Status(k.clone()),
            Version(1),
            Some(&status(&k, Health::Untested)),
        );
        assert_eq!(r.status(&k).unwrap().version, Version(2));
        r.apply(&RecordKey::Status(k.clone()), Version(3), None);
        assert!(r.status(&k).is_none());
        r.apply(
            &RecordKey::Status(k.clone()),
            Version(2),
            Some(&status(&k, Health::Active)),
        );
        assert!(
            r.status(&k).is_none(),
            "a replayed change does not resurrect a deleted record"
        );
    }

    #[test]
    fn statuses_are_listed_by_kind_across_shards() {
        let r = RuntimeRecords::new();
        for i in 0..500 {
            let k = key(i);
            let health = if i % 5 == 0 {
                Health::Active
            } else {
                Health::Untested
            };
            r.apply(
                &RecordKey::Status(k.clone()),
                Version(1),
                Some(&status(&k, health)),
            );
        }
        assert_eq!(r.statuses(Some(HealthKind::Active), None).len(), 100);
        assert_eq!(r.statuses(None, None).len(), 500);
        let listed = r.statuses(None, None);
        assert!(listed.windows(2).all(|w| w[0].value.key() < w[1].value.key()));
    }
}
