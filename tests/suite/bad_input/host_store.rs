//! A host's own store is checked as the crate's stores check their rows: a
//! record it gives the registry at a version no record can have (0, past
//! `Version::MAX`) is refused with a typed error naming the record, whether
//! it comes with the load (`build`), the reload after a truncated feed or
//! the change feed (`sync`, the follower), and the catalog keeps what it
//! had. Each store below is the memory store with one lie.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use connective::model::{AuditEntry, AuditQuery, ReadNote, Record, RecordKey, Revision, Scope, Version};
use connective::prelude::*;
use connective::store::{Batch, Change, CommitToken, Committed, MemoryStore, Snapshot, Store, StoreError};

/// What the hostile store lies about.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Lie {
    /// Nothing: it answers as the memory store does.
    None,
    /// Every connection it loads is at this version.
    LoadVersion(u64),
    /// Every change of a connection in its feed is at this version.
    FeedVersion(u64),
    /// Its feed is truncated, and every connection it loads is at this
    /// version.
    TruncatedThenLoadVersion(u64),
    /// Its load is at this revision.
    LoadRevision(u64),
}

struct Hostile {
    inner: MemoryStore,
    lie: Mutex<Lie>,
}

impl Hostile {
    fn new() -> Arc<Hostile> {
        Arc::new(Hostile {
            inner: MemoryStore::new(),
            lie: Mutex::new(Lie::None),
        })
    }

    fn lie(&self, lie: Lie) {
        *self.lie.lock().unwrap() = lie;
    }

    fn current(&self) -> Lie {
        *self.lie.lock().unwrap()
    }

    fn tampered(&self, version: u64) -> Result<Snapshot, StoreError> {
        let mut snapshot = self.inner.load()?;
        for (v, record) in &mut snapshot.records {
            if matches!(record.key(), RecordKey::Connection(..)) {
                *v = Version(version);
            }
        }
        Ok(snapshot)
    }
}

impl Store for Hostile {
    fn backend(&self) -> &'static str {
        "hostile"
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        match self.current() {
            Lie::LoadVersion(v) | Lie::TruncatedThenLoadVersion(v) => self.tampered(v),
            Lie::LoadRevision(r) => {
                let mut snapshot = self.inner.load()?;
                snapshot.revision = Revision(r);
                Ok(snapshot)
            }
            _ => self.inner.load(),
        }
    }

    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        self.inner.commit(batch)
    }

    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        self.inner.find_commit(token, after)
    }

    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        match self.current() {
            Lie::FeedVersion(v) => {
                let mut changes = self.inner.changes_since(after, limit)?;
                for c in &mut changes {
                    if matches!(c.key, RecordKey::Connection(..)) {
                        c.version = Version(v);
                    }
                }
                Ok(changes)
            }
            Lie::TruncatedThenLoadVersion(_) => Err(StoreError::FeedTruncated {
                requested: after,
                oldest: Revision(after.0.saturating_add(2)),
            }),
            _ => self.inner.changes_since(after, limit),
        }
    }

    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        self.inner.get(key)
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision()
    }

    fn keeps_audit(&self) -> bool {
        self.inner.keeps_audit()
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(query)
    }

    fn append_reads(&self, reads: &[ReadNote]) -> Result<(), StoreError> {
        self.inner.append_reads(reads)
    }

    fn wait_for_change(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
        self.inner.wait_for_change(after, timeout)
    }
}

fn spec(name: &str) -> ConnectionSpec {
    ConnectionSpec::project("acme", name)
        .auth(AuthScheme::ApiKey)
        .param(Param::secret("ApiKey").default("k-123"))
        .build()
        .unwrap()
}

fn key(name: &str) -> RecordKey {
    RecordKey::Connection("acme".parse().unwrap(), Scope::Project, name.parse().unwrap())
}

fn acme() -> ProjectId {
    "acme".parse().unwrap()
}

fn registry(store: &Arc<Hostile>) -> Result<Registry, RegistryError> {
    Registry::builder().store(store.clone()).build()
}

/// The error of a record at `version` from the hostile store.
fn assert_refused(err: &RegistryError, name: &str, version: u64) {
    assert!(
        matches!(err, RegistryError::Store(StoreError::Unreadable { backend: "hostile", what, .. }) if *what == key(name).to_string()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "hostile store cannot read connection {name} (project scope) of project acme: its stored version {version} \
             is not a version (versions run from 1 to 72057594037927935)"
        )
    );
    assert!(!err.is_retryable());
}

const BAD: [u64; 3] = [0, Version::MAX.0 + 1, u64::MAX];

#[test]
fn a_loaded_record_at_no_version_refuses_the_build_naming_it() {
    let store = Hostile::new();
    registry(&store)
        .unwrap()
        .create_connection(spec("svc00"))
        .unwrap();
    for bad in BAD {
        store.lie(Lie::LoadVersion(bad));
        let err = registry(&store).map(drop).unwrap_err();
        assert_refused(&err, "svc00", bad);
    }
    store.lie(Lie::LoadVersion(Version::MAX.0));
    let found = registry(&store)
        .unwrap()
        .snapshot(&acme())
        .unwrap()
        .connection_count();
    assert_eq!(found, 1, "the last version is a version");
}

#[test]
fn a_change_at_no_version_is_refused_by_sync_and_the_catalog_keeps_what_it_had() {
    let store = Hostile::new();
    let follower = registry(&store).unwrap();
    let writer = registry(&store).unwrap();
    writer.create_connection(spec("svc00")).unwrap();
    let before = follower.catalog().revision();
    for bad in BAD {
        store.lie(Lie::FeedVersion(bad));
        let err = follower.sync().unwrap_err();
        assert_refused(&err, "svc00", bad);
        assert_eq!(
            follower.catalog().revision(),
            before,
            "a refused page moved the catalog"
        );
        assert!(
            follower
                .snapshot(&acme())
                .is_none_or(|s| s.connection_count() == 0)
        );
    }
    store.lie(Lie::None);
    follower.sync().unwrap();
    assert_eq!(follower.snapshot(&acme()).unwrap().connection_count(), 1);
}

#[test]
fn a_reload_after_a_truncated_feed_refuses_a_record_at_no_version() {
    let store = Hostile::new();
    let follower = registry(&store).unwrap();
    let writer = registry(&store).unwrap();
    writer.create_connection(spec("svc00")).unwrap();
    let before = follower.catalog().revision();
    for bad in BAD {
        store.lie(Lie::TruncatedThenLoadVersion(bad));
        let err = follower.sync().unwrap_err();
        assert_refused(&err, "svc00", bad);
        assert_eq!(
            follower.catalog().revision(),
            before,
            "a refused reload moved the catalog"
        );
    }
    store.lie(Lie::TruncatedThenLoadVersion(7));
    follower.sync().unwrap();
    assert_eq!(follower.snapshot(&acme()).unwrap().connection_count(), 1);
}

#[test]
fn a_loaded_revision_at_the_end_of_its_type_does_not_overflow_a_write() {
    let store = Hostile::new();
    store.lie(Lie::LoadRevision(u64::MAX));
    let registry = registry(&store).unwrap();
    assert_eq!(registry.catalog().revision(), Revision(u64::MAX));
    store.lie(Lie::None);
    // The commit's revision does not follow the catalog's: the registry
    // catches up instead of publishing, and answers.
    registry.create_connection(spec("svc00")).unwrap();
}
