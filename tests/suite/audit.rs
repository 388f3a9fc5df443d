//! The audit trail: every committed write has exactly one entry (who, when,
//! which records, versions before and after), a refused write none, and no
//! entry holds a value; on the memory store, on SQLite and on PostgreSQL,
//! with writers racing on two registries.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use connective::model::{ActorId, AuditEntry, AuditOperation, AuditQuery, RecordKey, Timestamp};
use connective::prelude::*;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{MemoryStore, Store, StoreError};

use crate::support::acme;
use crate::support::crm::{crm, orders};

fn actor(name: &str) -> ActorId {
    name.parse().unwrap()
}

fn audited(store: Arc<dyn Store>) -> Arc<Registry> {
    Arc::new(
        Registry::builder()
            .shared_store(store)
            .audit(actor("service:host"))
            .build()
            .expect("registry"),
    )
}

/// The secrets the scenario writes: none may appear in an entry.
fn secret(writer: usize, round: usize) -> String {
    format!("crm-secret-{writer}-{round}")
}

fn no_value_in(entries: &[AuditEntry], secrets: &[String]) {
    let text = format!("{entries:?} {}", serde_json::to_string(entries).expect("json"));
    for s in secrets {
        assert!(!text.contains(s.as_str()), "a value reached the audit trail");
    }
    assert!(
        !text.contains("crm.example.com"),
        "a plain value reached the audit trail"
    );
}

#[test]
fn each_committed_write_has_one_entry_naming_its_actor_and_a_refused_one_none() {
    let registry = audited(Arc::new(MemoryStore::new()));
    let alice = actor("alice@acme.example");
    let started = Timestamp::now();
    let (id, report) = registry
        .write_as(&alice, |tx| tx.create_connection(crm("crm-secret-1")))
        .unwrap();
    // Unattributed writes are the registry's actor's.
    registry.set_mappings(orders(), None).unwrap();
    // Refused: a stale version, an unknown connection.
    let stale = registry.write_as(&alice, |tx| {
        tx.update_connection(id, Version(7), crm("crm-secret-2"))
    });
    assert!(matches!(stale, Err(RegistryError::Conflict { .. })));
    let version = registry.connection(&acme(), id).unwrap().version;
    let bob = actor("bob@acme.example");
    registry
        .write_as(&bob, |tx| tx.update_connection(id, version, crm("crm-secret-3")))
        .unwrap();
    let entries = registry.audit(&AuditQuery::all()).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].actor, alice);
    assert_eq!(entries[0].revision, report.revision);
    assert!(entries[0].at >= started);
    assert_eq!(entries[1].actor, actor("service:host"));
    let key = RecordKey::Connection(acme(), Scope::Project, "crm".parse().unwrap());
    let created = entries[0].changes.iter().find(|c| c.key == key).unwrap();
    assert_eq!(created.operation, AuditOperation::Created);
    assert_eq!(created.before, None);
    let updated = entries[2].changes.iter().find(|c| c.key == key).unwrap();
    assert_eq!(updated.operation, AuditOperation::Updated);
    assert_eq!(updated.before, Some(version));
    assert_eq!(updated.after, Version(version.0 + 1));

    // Queries by record, actor and time.
    let of_crm = registry.audit(&AuditQuery::all().of_record(key)).unwrap();
    assert_eq!(of_crm.len(), 2, "creation and update, not the mappings");
    assert_eq!(registry.audit(&AuditQuery::all().by(bob)).unwrap().len(), 1);
    let later = Timestamp(entries[2].at.0 + 1);
    assert!(
        registry
            .audit(&AuditQuery::all().between(later, Timestamp(u64::MAX)))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        registry
            .audit(&AuditQuery::all().after(entries[0].revision).limit(1))
            .unwrap(),
        &entries[1..2]
    );
    // A deletion records the tombstone's version.
    registry
        .delete_connection(&acme(), id, Version(version.0 + 1), DeleteMode::Force)
        .unwrap();
    let last = registry.audit(&AuditQuery::all()).unwrap().pop().unwrap();
    assert!(
        last.changes
            .iter()
            .any(|c| c.operation == AuditOperation::Deleted)
    );
    no_value_in(
        &registry.audit(&AuditQuery::all()).unwrap(),
        &[
            "crm-secret-1".into(),
            "crm-secret-2".into(),
            "crm-secret-3".into(),
        ],
    );
}

#[test]
fn a_registry_cannot_audit_on_a_store_that_keeps_no_trail() {
    #[derive(Debug)]
    struct NoTrail(MemoryStore);
    impl Store for NoTrail {
        fn backend(&self) -> &'static str {
            "no-trail"
        }
        fn load(&self) -> Result<connective::store::Snapshot, StoreError> {
            self.0.load()
        }
        fn commit(&self, b: &connective::store::Batch) -> Result<connective::store::Committed, StoreError> {
            self.0.commit(b)
        }
        fn find_commit(
            &self,
            t: connective::store::CommitToken,
            a: connective::model::Revision,
        ) -> Result<Option<connective::store::Committed>, StoreError> {
            self.0.find_commit(t, a)
        }
        fn changes_since(
            &self,
            a: connective::model::Revision,
            l: usize,
        ) -> Result<Vec<connective::store::Change>, StoreError> {
            self.0.changes_since(a, l)
        }
        fn get(&self, k: &RecordKey) -> Result<Option<(Version, connective::model::Record)>, StoreError> {
            self.0.get(k)
        }
        fn revision(&self) -> Result<connective::model::Revision, StoreError> {
            self.0.revision()
        }
    }
    let err = Registry::builder()
        .store(NoTrail(MemoryStore::new()))
        .audit(actor("service:host"))
        .build()
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Store(StoreError::Unsupported { .. })),
        "{err}"
    );
    let plain = Registry::builder()
        .store(NoTrail(MemoryStore::new()))
        .build()
        .unwrap();
    assert!(plain.audit(&AuditQuery::all()).is_err());
}

/// Two registries on one store, two writers on each, racing to update one
/// connection from versions their registry last saw: each success has
/// exactly one entry, at its revision, naming its writer; conflicts have
/// none; no entry holds a value.
fn racing_writers_leave_one_entry_per_committed_write(a: Arc<Registry>, b: Arc<Registry>) {
    const ROUNDS: usize = 12;
    let (id, created) = a
        .write_as(&actor("setup"), |tx| {
            tx.create_connection(crm("crm-secret-setup"))
        })
        .unwrap();
    b.sync().unwrap();
    let writers = [(&a, 0usize), (&a, 1), (&b, 2), (&b, 3)];
    let barrier = Barrier::new(writers.len());
    let results: Vec<(usize, Vec<Result<connective::model::Revision, RegistryError>>)> =
        std::thread::scope(|s| {
            let handles: Vec<_> = writers
                .iter()
                .map(|&(registry, w)| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        let me = actor(&format!("writer-{w}"));
                        barrier.wait();
                        let mut out = Vec::new();
                        for round in 0..ROUNDS {
                            let _ = registry.sync();
                            let version = registry.connection(&acme(), id).unwrap().version;
                            out.push(
                                registry
                                    .write_as(&me, |tx| {
                                        tx.update_connection(id, version, crm(&secret(w, round)))
                                    })
                                    .map(|(_, report)| report.revision),
                            );
                        }
                        (w, out)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
    let mut committed: BTreeMap<u64, usize> = BTreeMap::new();
    let mut refused = 0;
    for (w, out) in &results {
        for r in out {
            match r {
                Ok(revision) => assert!(committed.insert(revision.0, *w).is_none()),
                Err(RegistryError::Conflict { .. }) => refused += 1,
                Err(other) => panic!("writer {w}: {other}"),
            }
        }
    }
    assert!(!committed.is_empty());
    let entries = a.audit(&AuditQuery::all().after(created.revision)).unwrap();
    let seen: BTreeMap<u64, String> = entries
        .iter()
        .map(|e| (e.revision.0, e.actor.to_string()))
        .collect();
    assert_eq!(entries.len(), committed.len(), "{refused} refused");
    let expected: BTreeMap<u64, String> = committed
        .iter()
        .map(|(rev, w)| (*rev, format!("writer-{w}")))
        .collect();
    assert_eq!(seen, expected);
    // Both registries read the same trail from the store.
    assert_eq!(b.audit(&AuditQuery::all()).unwrap().len(), entries.len() + 1);
    let secrets: Vec<String> = (0..4)
        .flat_map(|w| (0..ROUNDS).map(move |r| secret(w, r)))
        .collect();
    no_value_in(&entries, &secrets);
    eprintln!(
        "audit race: {} committed, {refused} refused, {} entries",
        committed.len(),
        entries.len()
    );
}

#[test]
fn racing_writers_on_two_registries_on_memory() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    racing_writers_leave_one_entry_per_committed_write(audited(store.clone()), audited(store));
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn ring() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("k1", &[5; 32]).expect("key"))
}

#[cfg(feature = "sqlite")]
#[test]
fn racing_writers_on_two_registries_on_sqlite() {
    use connective::store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.db");
    let open = || -> Arc<dyn Store> { Arc::new(SqliteStore::open(&path, ring()).expect("open")) };
    racing_writers_leave_one_entry_per_committed_write(audited(open()), audited(open()));
    // The trail survives a reopen, and rows are never updated.
    let again = audited(open());
    assert!(again.audit(&AuditQuery::all()).unwrap().len() > 1);
    let conn = rusqlite::Connection::open(&path).expect("open the file");
    let err = conn
        .execute("UPDATE audit SET actor = 'mallory'", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[cfg(all(feature = "postgres", feature = "test-kit"))]
#[test]
fn racing_writers_on_two_registries_on_postgres() {
    use connective::store::PostgresStore;
    use connective::test_kit::postgres::database;
    let Some(db) = database("audit_race") else {
        return;
    };
    let url = db.connection_string();
    let open = || -> Arc<dyn Store> { Arc::new(PostgresStore::connect(&url, ring()).expect("connect")) };
    racing_writers_leave_one_entry_per_committed_write(audited(open()), audited(open()));
}
