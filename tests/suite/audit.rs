//! The audit trail: every committed write has exactly one entry (who, when,
//! which records, versions before and after), a refused write none, and no
//! entry holds a value; on the memory store, on SQLite and on PostgreSQL,
//! with writers racing on two registries.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use connective::model::{ActorId, AuditEntry, AuditOperation, AuditQuery, RecordKey, Timestamp};
use connective::prelude::*;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
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
    assert_eq!(entries[0].revision(), Some(report.revision));
    assert!(entries[0].at >= started);
    assert_eq!(entries[1].actor, actor("service:host"));
    let key = RecordKey::Connection(acme(), Scope::Project, "crm".parse().unwrap());
    let created = entries[0].changes().iter().find(|c| c.key == key).unwrap();
    assert_eq!(created.operation, AuditOperation::Created);
    assert_eq!(created.before, None);
    let updated = entries[2].changes().iter().find(|c| c.key == key).unwrap();
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
            .audit(&AuditQuery::all().after(entries[0].position).limit(1))
            .unwrap(),
        &entries[1..2]
    );
    // A deletion records the tombstone's version.
    registry
        .delete_connection(&acme(), id, Version(version.0 + 1), DeleteMode::Force)
        .unwrap();
    let last = registry.audit(&AuditQuery::all()).unwrap().pop().unwrap();
    assert!(
        last.changes()
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
    let entries = a.audit(&AuditQuery::all().writes()).unwrap();
    let checked = one_entry_per_committed_write(&results, entries, created.revision);
    // Both registries read the same trail from the store.
    assert_eq!(b.audit(&AuditQuery::all()).unwrap().len(), checked + 1);
}

/// Each writer's results against the trail's write entries after
/// `created`: one entry per committed write, at its revision, naming its
/// writer; none for a conflict; no value in any. Returns how many entries.
fn one_entry_per_committed_write(
    results: &[(usize, Vec<Result<connective::model::Revision, RegistryError>>)],
    entries: Vec<AuditEntry>,
    created: connective::model::Revision,
) -> usize {
    const ROUNDS: usize = 12;
    let mut committed: BTreeMap<u64, usize> = BTreeMap::new();
    let mut refused = 0;
    for (w, out) in results {
        for r in out {
            match r {
                Ok(revision) => assert!(committed.insert(revision.0, *w).is_none()),
                Err(RegistryError::Conflict { .. }) => refused += 1,
                Err(other) => panic!("writer {w}: {other}"),
            }
        }
    }
    assert!(!committed.is_empty());
    let entries: Vec<AuditEntry> = entries
        .into_iter()
        .filter(|e| e.revision() > Some(created))
        .collect();
    let seen: BTreeMap<u64, String> = entries
        .iter()
        .filter_map(|e| Some((e.revision()?.0, e.actor.to_string())))
        .collect();
    assert_eq!(entries.len(), committed.len(), "{refused} refused");
    let expected: BTreeMap<u64, String> = committed
        .iter()
        .map(|(rev, w)| (*rev, format!("writer-{w}")))
        .collect();
    assert_eq!(seen, expected);
    let secrets: Vec<String> = (0..4)
        .flat_map(|w| (0..ROUNDS).map(move |r| secret(w, r)))
        .collect();
    no_value_in(&entries, &secrets);
    eprintln!(
        "audit race: {} committed, {refused} refused, {} entries",
        committed.len(),
        entries.len()
    );
    entries.len()
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
        .execute("UPDATE audit_trail SET actor = 'mallory'", [])
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

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// The audit rows a database of schema version 4 held (entries keyed by
/// revision, bodies with the revision and changes at the top), as
/// `(revision, at, actor, body, key)`: two writes of the crm connection.
fn v4_rows() -> Vec<(i64, i64, &'static str, String, String)> {
    let key = RecordKey::Connection(acme(), Scope::Project, "crm".parse().unwrap());
    let key_json = serde_json::to_value(&key).unwrap();
    let body = |revision: i64, at: i64, actor: &str, op: &str, before: Option<i64>| {
        serde_json::json!({
            "revision": revision, "at": at, "actor": actor,
            "changes": [{"key": key_json, "operation": op, "before": before, "after": revision}]
        })
        .to_string()
    };
    let key_text = serde_json::to_string(&key).unwrap();
    vec![
        (
            1,
            1_000,
            "alice@acme.example",
            body(1, 1_000, "alice@acme.example", "created", None),
            key_text.clone(),
        ),
        (
            2,
            2_000,
            "bob@acme.example",
            body(2, 2_000, "bob@acme.example", "updated", Some(1)),
            key_text,
        ),
    ]
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// After the migration, version 4's entries read back as the writes they
/// were, at positions equal to their revisions, and new entries (a write,
/// a read) follow them.
fn v4_entries_read_on(registry: &Registry) {
    let old = registry.audit(&AuditQuery::all()).unwrap();
    assert_eq!(old.len(), 2, "{old:?}");
    assert_eq!(old[0].position, connective::model::AuditPosition(1));
    assert_eq!(old[0].revision(), Some(connective::model::Revision(1)));
    assert_eq!(old[0].actor, actor("alice@acme.example"));
    assert_eq!(old[0].at, Timestamp(1_000));
    assert_eq!(old[0].changes()[0].operation, AuditOperation::Created);
    assert_eq!(old[1].changes()[0].before, Some(Version(1)));
    let key = RecordKey::Connection(acme(), Scope::Project, "crm".parse().unwrap());
    assert_eq!(
        registry.audit(&AuditQuery::all().of_record(key)).unwrap().len(),
        2
    );
    assert_eq!(
        registry
            .audit(&AuditQuery::all().by(actor("bob@acme.example")))
            .unwrap(),
        &old[1..]
    );
    registry
        .write_as(&actor("carol@acme.example"), |tx| {
            tx.create_connection(crm("crm-secret-after-migration"))
        })
        .unwrap();
    let all = registry.audit(&AuditQuery::all()).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all[2].position > old[1].position);
    assert_eq!(all[2].actor, actor("carol@acme.example"));
}

#[cfg(feature = "sqlite")]
#[test]
fn an_audit_trail_of_schema_version_4_reads_on_after_migrating_sqlite() {
    use connective::store::{SQLITE_SCHEMA_VERSION, SqliteStore};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v4.db");
    {
        // The schema as version 4 created it (frozen here, whatever the
        // code's migrations become), with a head at revision 2.
        let conn = rusqlite::Connection::open(&path).expect("create the file");
        conn.execute_batch(
            "PRAGMA application_id = 1668184113;
             CREATE TABLE head (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL,
                 feed_floor INTEGER NOT NULL);
             INSERT INTO head (id, revision, feed_floor) VALUES (1, 2, 2);
             CREATE TABLE records (key TEXT PRIMARY KEY, project TEXT NOT NULL, version INTEGER NOT NULL,
                 revision INTEGER NOT NULL, body TEXT) WITHOUT ROWID;
             CREATE INDEX records_project ON records (project);
             CREATE TABLE changes (revision INTEGER NOT NULL, seq INTEGER NOT NULL, key TEXT NOT NULL,
                 version INTEGER NOT NULL, body TEXT, PRIMARY KEY (revision, seq)) WITHOUT ROWID;
             CREATE TABLE commits (revision INTEGER PRIMARY KEY, token TEXT NOT NULL);
             CREATE TABLE seal_keys (key_id TEXT PRIMARY KEY, key_check TEXT NOT NULL) WITHOUT ROWID;
             CREATE TABLE audit (revision INTEGER PRIMARY KEY, at INTEGER NOT NULL, actor TEXT NOT NULL,
                 body TEXT NOT NULL);
             CREATE INDEX audit_actor ON audit (actor, revision);
             CREATE INDEX audit_at ON audit (at);
             CREATE TABLE audit_keys (key TEXT NOT NULL, revision INTEGER NOT NULL,
                 PRIMARY KEY (key, revision)) WITHOUT ROWID;
             CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
             BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
             CREATE TRIGGER audit_keys_append_only BEFORE UPDATE ON audit_keys
             BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
             PRAGMA user_version = 4;",
        )
        .expect("the version 4 schema");
        for (revision, at, actor, body, key) in v4_rows() {
            conn.execute(
                "INSERT INTO audit (revision, at, actor, body) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![revision, at, actor, body],
            )
            .expect("a version 4 entry");
            conn.execute(
                "INSERT INTO audit_keys (key, revision) VALUES (?1, ?2)",
                rusqlite::params![key, revision],
            )
            .expect("a version 4 key");
        }
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path, ring()).expect("open and migrate"));
    v4_entries_read_on(&audited(store));
    let conn = rusqlite::Connection::open(&path).expect("open the file");
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SQLITE_SCHEMA_VERSION);
    let err = conn
        .execute("UPDATE audit_trail SET actor = 'mallory' WHERE position = 1", [])
        .unwrap_err();
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[cfg(all(feature = "postgres", feature = "test-kit"))]
#[test]
fn an_audit_trail_of_schema_version_4_reads_on_after_migrating_postgres() {
    use connective::store::PostgresStore;
    use connective::test_kit::postgres::database;
    let Some(db) = database("audit_v4") else {
        return;
    };
    let mut client = db.client().expect("a client");
    // The schema as version 4 created it (frozen here), head at revision 2.
    client
        .batch_execute(
            "CREATE TABLE connective_schema (id INT PRIMARY KEY, version INT NOT NULL);
             INSERT INTO connective_schema (id, version) VALUES (1, 4);
             CREATE TABLE connective_head (id INT PRIMARY KEY, revision BIGINT NOT NULL,
                 feed_floor BIGINT NOT NULL);
             INSERT INTO connective_head (id, revision, feed_floor) VALUES (1, 2, 2);
             CREATE TABLE connective_records (key TEXT PRIMARY KEY, project TEXT NOT NULL,
                 version BIGINT NOT NULL, revision BIGINT NOT NULL, body TEXT);
             CREATE INDEX connective_records_project ON connective_records (project);
             CREATE TABLE connective_changes (revision BIGINT NOT NULL, seq INT NOT NULL, key TEXT NOT NULL,
                 version BIGINT NOT NULL, body TEXT, PRIMARY KEY (revision, seq));
             CREATE TABLE connective_commits (revision BIGINT PRIMARY KEY, token TEXT NOT NULL);
             CREATE TABLE connective_seal_keys (key_id TEXT PRIMARY KEY, key_check TEXT NOT NULL);
             CREATE TABLE connective_audit (revision BIGINT PRIMARY KEY, at BIGINT NOT NULL,
                 actor TEXT NOT NULL, body TEXT NOT NULL);
             CREATE INDEX connective_audit_actor ON connective_audit (actor, revision);
             CREATE INDEX connective_audit_at ON connective_audit (at);
             CREATE TABLE connective_audit_keys (key TEXT NOT NULL, revision BIGINT NOT NULL,
                 PRIMARY KEY (key, revision));",
        )
        .expect("the version 4 schema");
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    for (revision, at, actor, body, key) in v4_rows() {
        client
            .batch_execute(&format!(
                "INSERT INTO connective_audit (revision, at, actor, body) VALUES ({revision}, {at}, {}, {});
                 INSERT INTO connective_audit_keys (key, revision) VALUES ({}, {revision});",
                quote(actor),
                quote(&body),
                quote(&key)
            ))
            .expect("a version 4 entry");
    }
    let url = db.connection_string();
    let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&url, ring()).expect("connect and migrate"));
    v4_entries_read_on(&audited(store));
}

#[cfg(all(feature = "postgres", feature = "async", feature = "test-kit"))]
#[test]
fn racing_async_writers_on_two_registries_on_postgres() {
    use connective::store::PostgresStore;
    use connective::test_kit::postgres::database;
    const ROUNDS: usize = 12;
    let Some(db) = database("audit_race_async") else {
        return;
    };
    let url = db.connection_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let open = || async {
            let store = PostgresStore::connect_async(&url, ring()).await.expect("connect");
            Arc::new(
                Registry::builder()
                    .async_store(store)
                    .audit(actor("service:host"))
                    .build_async()
                    .await
                    .expect("registry"),
            )
        };
        let (a, b) = (open().await, open().await);
        let (id, created) = a
            .write_as_async(&actor("setup"), |tx| {
                tx.create_connection(crm("crm-secret-setup"))
            })
            .await
            .unwrap();
        b.sync_async().await.unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(4));
        let mut tasks = tokio::task::JoinSet::new();
        for (registry, w) in [(&a, 0usize), (&a, 1), (&b, 2), (&b, 3)] {
            let (registry, barrier) = (Arc::clone(registry), Arc::clone(&barrier));
            tasks.spawn(async move {
                let me = actor(&format!("writer-{w}"));
                barrier.wait().await;
                let mut out = Vec::new();
                for round in 0..ROUNDS {
                    let _ = registry.sync_async().await;
                    let version = registry.connection(&acme(), id).unwrap().version;
                    out.push(
                        registry
                            .write_as_async(&me, |tx| {
                                tx.update_connection(id, version, crm(&secret(w, round)))
                            })
                            .await
                            .map(|(_, report)| report.revision),
                    );
                }
                (w, out)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            results.push(joined.expect("a writer task"));
        }
        let entries = a.audit_async(&AuditQuery::all().writes()).await.unwrap();
        let checked = one_entry_per_committed_write(&results, entries, created.revision);
        assert_eq!(
            b.audit_async(&AuditQuery::all()).await.unwrap().len(),
            checked + 1
        );
    });
}

// ---------------------------------------------------------------------------
// Reads of secrets.

use connective::model::{AuditKind, ReadNote, SecretRead};
use connective::registry::{QueueFull, ReadAudit};
use connective::resolve::Problem;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::crm::request;

const FLUSH: Duration = Duration::from_secs(10);

/// A registry auditing writes and reads on `store`.
fn auditing_reads(store: Arc<dyn Store>, setting: ReadAudit) -> Registry {
    Registry::builder()
        .shared_store(store)
        .audit(actor("service:host"))
        .audit_reads(setting)
        .build()
        .expect("registry")
}

/// Integration `reports` maps only the CRM's URL: its answers hold no
/// secret.
fn reports() -> Mappings {
    Mappings::of("acme", "reports")
        .by_name("crm", [("ServiceURL", "CRM_URL")])
        .build()
        .expect("mappings")
}

fn setup_crm(registry: &Registry, key: &str) -> ConnectionId {
    let (id, _) = registry.create_connection(crm(key)).unwrap();
    registry.set_mappings(orders(), None).unwrap();
    registry.set_mappings(reports(), None).unwrap();
    id
}

fn reads_of(registry: &Registry) -> Vec<AuditEntry> {
    registry.flush_read_audit(FLUSH).expect("flush");
    registry.audit(&AuditQuery::all().reads()).unwrap()
}

#[test]
fn reads_are_not_recorded_unless_the_host_turns_it_on() {
    let registry = audited(Arc::new(MemoryStore::new()));
    setup_crm(&registry, "crm-secret-off");
    let env = registry.resolve(&request()).unwrap();
    assert_eq!(env.expose("CRM_KEY"), Some("crm-secret-off"));
    registry.resolve_as(&actor("deployer"), &request()).unwrap();
    assert!(registry.audit(&AuditQuery::all().reads()).unwrap().is_empty());
    assert!(registry.read_audit_stats().is_none());
    registry.flush_read_audit(FLUSH).unwrap();
    // Reads can be audited only with the trail on.
    let err = Registry::builder()
        .audit_reads(ReadAudit::synchronous())
        .build()
        .unwrap_err();
    assert!(matches!(err, RegistryError::ReadAuditWithoutTrail), "{err}");
}

fn resolutions_with_secrets_are_recorded(setting: ReadAudit) {
    let registry = auditing_reads(Arc::new(MemoryStore::new()), setting);
    let id = setup_crm(&registry, "crm-secret-read");
    let deployer = actor("deployer");
    let started = Timestamp::now();
    // Twice the same request: the second answer may be memoized, and is
    // a read all the same.
    for _ in 0..2 {
        let env = registry.resolve_as(&deployer, &request()).unwrap();
        assert_eq!(env.expose("CRM_KEY"), Some("crm-secret-read"));
    }
    registry.resolve(&request()).unwrap();
    // No secret in the answer: no read recorded.
    let plain = registry
        .resolve(&ResolveRequest::parse("acme", "reports", "production").unwrap())
        .unwrap();
    assert_eq!(plain.len(), 1);
    // Explaining a secret variable hands its value out; a plain one does not.
    let why = registry.explain(&request(), "CRM_KEY").unwrap().unwrap();
    assert_eq!(why.value.expose(), "crm-secret-read");
    registry.explain(&request(), "CRM_URL").unwrap().unwrap();

    let reads = reads_of(&registry);
    assert_eq!(reads.len(), 4, "{reads:#?}");
    assert_eq!(
        reads.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
        ["deployer", "deployer", "service:host", "service:host"]
    );
    for entry in &reads {
        assert_eq!(entry.kind(), AuditKind::Read);
        assert!(entry.at >= started);
        match entry.secret_read().unwrap() {
            SecretRead::Resolution {
                project,
                integration,
                environment,
                customer,
                revision,
                fields,
            } => {
                assert_eq!(project, &acme());
                assert_eq!(integration.as_str(), "orders");
                assert_eq!(environment.as_str(), "production");
                assert_eq!(customer, &None);
                assert_eq!(*revision, registry.catalog().revision());
                assert_eq!(fields.len(), 1, "only the secret field");
                assert_eq!(fields[0].connection_id, id);
                assert_eq!(fields[0].connection.as_str(), "crm");
                assert_eq!(fields[0].param.as_str(), "ApiKey");
            }
            other => panic!("{other:?}"),
        }
    }
    // Queried by connection (with its writes), by actor, by kind.
    let key = RecordKey::Connection(acme(), Scope::Project, "crm".parse().unwrap());
    let of_crm = registry.audit(&AuditQuery::all().of_record(key)).unwrap();
    assert_eq!(
        of_crm.iter().map(AuditEntry::kind).collect::<Vec<_>>(),
        [
            AuditKind::Write,
            AuditKind::Read,
            AuditKind::Read,
            AuditKind::Read,
            AuditKind::Read
        ]
    );
    assert_eq!(
        registry
            .audit(&AuditQuery::all().by(deployer).reads())
            .unwrap()
            .len(),
        2
    );
    let stats = registry.read_audit_stats().unwrap();
    assert_eq!(
        (stats.recorded, stats.dropped, stats.refused, stats.queued),
        (4, 0, 0, 0)
    );
    no_value_in(
        &registry.audit(&AuditQuery::all()).unwrap(),
        &["crm-secret-read".into()],
    );
}

#[test]
fn resolutions_with_secrets_are_recorded_through_the_queue() {
    resolutions_with_secrets_are_recorded(ReadAudit::queued(64, QueueFull::Block));
}

#[test]
fn resolutions_with_secrets_are_recorded_synchronously() {
    resolutions_with_secrets_are_recorded(ReadAudit::synchronous());
}

/// A memory store whose appends of reads can be held up (the gate) or
/// made to fail, to fill the queue.
#[derive(Default)]
struct Gated {
    inner: MemoryStore,
    closed: Mutex<bool>,
    opened: std::sync::Condvar,
    failing: AtomicBool,
    attempts: AtomicUsize,
}

impl Gated {
    fn closed() -> Arc<Gated> {
        let g = Arc::new(Gated::default());
        *g.closed.lock().unwrap() = true;
        g
    }
    fn open(&self) {
        *self.closed.lock().unwrap() = false;
        self.opened.notify_all();
    }
}

impl Store for Gated {
    fn backend(&self) -> &'static str {
        "gated"
    }
    fn load(&self) -> Result<connective::store::Snapshot, StoreError> {
        self.inner.load()
    }
    fn commit(&self, b: &connective::store::Batch) -> Result<connective::store::Committed, StoreError> {
        self.inner.commit(b)
    }
    fn find_commit(
        &self,
        t: connective::store::CommitToken,
        a: connective::model::Revision,
    ) -> Result<Option<connective::store::Committed>, StoreError> {
        self.inner.find_commit(t, a)
    }
    fn changes_since(
        &self,
        a: connective::model::Revision,
        l: usize,
    ) -> Result<Vec<connective::store::Change>, StoreError> {
        self.inner.changes_since(a, l)
    }
    fn get(&self, k: &RecordKey) -> Result<Option<(Version, connective::model::Record)>, StoreError> {
        self.inner.get(k)
    }
    fn revision(&self) -> Result<connective::model::Revision, StoreError> {
        self.inner.revision()
    }
    fn keeps_audit(&self) -> bool {
        true
    }
    fn audit(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.audit(q)
    }
    fn append_reads(&self, reads: &[ReadNote]) -> Result<(), StoreError> {
        let mut closed = self.closed.lock().unwrap();
        while *closed {
            closed = self.opened.wait(closed).unwrap();
        }
        drop(closed);
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                backend: "gated",
                message: "down for the test".into(),
            });
        }
        self.inner.append_reads(reads)
    }
}

/// A registry on `store` whose connection is set up before reads are
/// held up.
fn gated_registry(store: &Arc<Gated>, setting: ReadAudit) -> Registry {
    let registry = auditing_reads(store.clone(), setting);
    setup_crm(&registry, "crm-secret-queue");
    registry
}

#[test]
fn a_full_queue_drops_and_counts_reads_when_told_to() {
    let store = Gated::closed();
    let registry = gated_registry(&store, ReadAudit::queued(2, QueueFull::Drop));
    for _ in 0..5 {
        // Every read is answered, recorded or not.
        assert!(registry.resolve(&request()).is_ok());
    }
    let stats = registry.read_audit_stats().unwrap();
    assert_eq!((stats.queued, stats.dropped, stats.refused), (2, 3, 0));
    store.open();
    assert_eq!(reads_of(&registry).len(), 2);
    assert_eq!(registry.read_audit_stats().unwrap().recorded, 2);
}

#[test]
fn a_full_queue_refuses_reads_when_told_to() {
    let store = Gated::closed();
    let registry = gated_registry(&store, ReadAudit::queued(2, QueueFull::Fail));
    registry.resolve(&request()).unwrap();
    registry.resolve(&request()).unwrap();
    let err = registry.resolve(&request()).unwrap_err();
    assert!(
        matches!(err.problems.as_slice(), [Problem::NotAudited { .. }]),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains("crm-secret-queue"));
    // A resolution without secrets is not a secret read: it is answered.
    registry
        .resolve(&ResolveRequest::parse("acme", "reports", "production").unwrap())
        .unwrap();
    assert_eq!(registry.read_audit_stats().unwrap().refused, 1);
    store.open();
    assert_eq!(reads_of(&registry).len(), 2);
    registry.resolve(&request()).unwrap();
}

#[test]
fn a_full_queue_blocks_reads_until_there_is_room_when_told_to() {
    let store = Gated::closed();
    let registry = gated_registry(&store, ReadAudit::queued(1, QueueFull::Block));
    registry.resolve(&request()).unwrap();
    let (sent, answered) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let env = registry.resolve(&request());
            sent.send(env.is_ok()).unwrap();
        });
        assert!(
            answered.recv_timeout(Duration::from_millis(300)).is_err(),
            "the second read waits for room"
        );
        store.open();
        assert!(answered.recv_timeout(FLUSH).unwrap());
    });
    assert_eq!(reads_of(&registry).len(), 2);
}

#[test]
fn queued_reads_are_retried_while_the_store_fails_and_kept_in_order() {
    let store = Arc::new(Gated::default());
    store.failing.store(true, Ordering::SeqCst);
    let registry = gated_registry(&store, ReadAudit::queued(100, QueueFull::Fail));
    let readers = ["reader-1", "reader-2", "reader-3"];
    for r in readers {
        registry.resolve_as(&actor(r), &request()).unwrap();
    }
    let deadline = std::time::Instant::now() + FLUSH;
    while store.attempts.load(Ordering::SeqCst) < 2 {
        assert!(std::time::Instant::now() < deadline, "the thread retries");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = registry.read_audit_stats().unwrap();
    assert!(
        matches!(stats.last_error, Some(StoreError::Unavailable { .. })),
        "{stats:?}"
    );
    assert_eq!((stats.queued, stats.recorded), (3, 0));
    assert!(registry.flush_read_audit(Duration::from_millis(50)).is_err());
    store.failing.store(false, Ordering::SeqCst);
    let reads = reads_of(&registry);
    assert_eq!(
        reads.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
        readers
    );
    assert!(registry.read_audit_stats().unwrap().last_error.is_none());
}

#[test]
fn a_synchronous_read_the_store_cannot_record_is_refused() {
    let store = Arc::new(Gated::default());
    let registry = gated_registry(&store, ReadAudit::synchronous());
    registry.resolve(&request()).unwrap();
    store.failing.store(true, Ordering::SeqCst);
    let err = registry.resolve(&request()).unwrap_err();
    assert!(
        matches!(err.problems.as_slice(), [Problem::NotAudited { reason }] if reason.contains("down for the test")),
        "{err}"
    );
    let err = registry.explain(&request(), "CRM_KEY").unwrap_err();
    assert!(matches!(err.problems.as_slice(), [Problem::NotAudited { .. }]));
    // The plain variable is still explained.
    assert!(registry.explain(&request(), "CRM_URL").unwrap().is_some());
    let stats = registry.read_audit_stats().unwrap();
    assert_eq!((stats.recorded, stats.refused), (1, 2));
}

#[test]
fn dropping_the_registry_records_what_is_queued() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let registry = auditing_reads(store.clone(), ReadAudit::queued(1_000, QueueFull::Block));
    setup_crm(&registry, "crm-secret-drop");
    for _ in 0..50 {
        registry.resolve(&request()).unwrap();
    }
    drop(registry);
    assert_eq!(store.audit(&AuditQuery::all().reads()).unwrap().len(), 50);
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// Reads and writes of two registries on one store share one trail, in
/// position order, each read after what it read; no value in any entry.
fn reads_and_writes_share_one_trail(a: Registry, b: Registry) {
    let secret_a = "crm-secret-shared-a";
    let id = setup_crm(&a, secret_a);
    b.sync().unwrap();
    b.resolve_as(&actor("reader-b"), &request()).unwrap();
    b.flush_read_audit(FLUSH).unwrap();
    let version = a.connection(&acme(), id).unwrap().version;
    a.write_as(&actor("writer-a"), |tx| {
        tx.update_connection(id, version, crm("crm-secret-shared-b"))
    })
    .unwrap();
    a.resolve_as(&actor("reader-a"), &request()).unwrap();
    a.flush_read_audit(FLUSH).unwrap();
    let trail = b.audit(&AuditQuery::all()).unwrap();
    let tail: Vec<(AuditKind, &str)> = trail
        .iter()
        .rev()
        .take(3)
        .rev()
        .map(|e| (e.kind(), e.actor.as_str()))
        .collect();
    assert_eq!(
        tail,
        [
            (AuditKind::Read, "reader-b"),
            (AuditKind::Write, "writer-a"),
            (AuditKind::Read, "reader-a")
        ]
    );
    assert!(trail.windows(2).all(|w| w[0].position < w[1].position));
    no_value_in(&trail, &[secret_a.into(), "crm-secret-shared-b".into()]);
}

#[cfg(feature = "sqlite")]
#[test]
fn reads_and_writes_share_one_trail_on_sqlite() {
    use connective::store::SqliteStore;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reads.db");
    let open = |setting| auditing_reads(Arc::new(SqliteStore::open(&path, ring()).expect("open")), setting);
    reads_and_writes_share_one_trail(
        open(ReadAudit::queued(100, QueueFull::Block)),
        open(ReadAudit::synchronous()),
    );
}

#[cfg(all(feature = "postgres", feature = "test-kit"))]
#[test]
fn reads_and_writes_share_one_trail_on_postgres() {
    use connective::store::PostgresStore;
    use connective::test_kit::postgres::database;
    let Some(db) = database("audit_reads") else {
        return;
    };
    let url = db.connection_string();
    let open = |setting| {
        auditing_reads(
            Arc::new(PostgresStore::connect(&url, ring()).expect("connect")),
            setting,
        )
    };
    reads_and_writes_share_one_trail(
        open(ReadAudit::queued(100, QueueFull::Block)),
        open(ReadAudit::synchronous()),
    );
}
