//! A key ID names one key: a replica whose ring holds other bytes under a key
//! ID the store knows is refused at open, before it reads or seals anything;
//! a record that cannot be read back (sealed by a rogue writer, or under a key
//! the ring lacks) is reported with its key while every other project keeps
//! serving. On a real SQLite file and a real PostgreSQL database.

use std::path::Path;
use std::sync::Arc;

use connective::model::{Record, RecordKey, Scope, with_secret_codec};
use connective::prelude::*;
use connective::resolve::Problem;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{Batch, Expect, PostgresStore, SqliteStore, Store, StoreError, Write};
use connective::test_kit;

fn key(id: &str, byte: u8) -> SealKey {
    SealKey::from_bytes(id, &[byte; 32]).expect("key")
}

fn right() -> KeyRing {
    KeyRing::new(key("k1", 1))
}

/// The same ID with other bytes.
fn wrong() -> KeyRing {
    KeyRing::new(key("k1", 2))
}

/// One durable backend, opened and tampered with directly.
trait Backend {
    fn open(&self, ring: KeyRing) -> Result<Arc<dyn Store>, StoreError>;
    /// Runs SQL with `$1`, `$2` text parameters (SQLite reads them as `?1`,
    /// `?2`) and the backend's table names written as `{records}`,
    /// `{changes}`, `{seal_keys}`.
    fn execute(&self, sql: &str, params: &[&str]);
}

struct Sqlite<'a>(&'a Path);

impl Backend for Sqlite<'_> {
    fn open(&self, ring: KeyRing) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(SqliteStore::open(self.0, ring)?))
    }
    fn execute(&self, sql: &str, params: &[&str]) {
        let sql = sql
            .replace("{records}", "records")
            .replace("{changes}", "changes")
            .replace("{seal_keys}", "seal_keys")
            .replace('$', "?");
        let conn = rusqlite::Connection::open(self.0).expect("sqlite");
        conn.execute(&sql, rusqlite::params_from_iter(params.iter()))
            .expect("tamper");
    }
}

struct Postgres<'a>(&'a test_kit::postgres::TestDatabase);

impl Backend for Postgres<'_> {
    fn open(&self, ring: KeyRing) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(PostgresStore::connect(
            &self.0.connection_string(),
            ring,
        )?))
    }
    fn execute(&self, sql: &str, params: &[&str]) {
        let sql = sql
            .replace("{records}", "connective_records")
            .replace("{changes}", "connective_changes")
            .replace("{seal_keys}", "connective_seal_keys");
        let mut client = self.0.client().expect("client");
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
            .collect();
        client.execute(&sql, &params).expect("tamper");
    }
}

fn refused_for_k1(result: Result<Arc<dyn Store>, StoreError>) {
    match result {
        Err(StoreError::KeyMismatch { key_id, .. }) => assert_eq!(key_id, "k1"),
        Err(other) => panic!("expected a key mismatch on k1, got {other}"),
        Ok(_) => panic!("a wrong k1 was accepted"),
    }
}

/// The first use binds k1 to its key: other bytes under k1 are refused at
/// open, as the newest key or as an old one, before anything is sealed.
fn a_wrong_key_under_a_known_id_is_refused(backend: &dyn Backend) {
    let store = backend.open(right()).expect("the first open binds k1");
    let p = test_kit::unique_project("bind");
    let mut batch = Batch::new();
    batch.push(Write::put(
        test_kit::sample_connection(&p, "crm", "s3cret"),
        Expect::Absent,
    ));
    store.commit(&batch).expect("commit");
    let revision = store.revision().expect("revision");
    drop(store);

    refused_for_k1(backend.open(wrong()));
    refused_for_k1(
        backend.open(
            KeyRing::new(key("k2", 5))
                .with_old_key(key("k1", 2))
                .expect("ring"),
        ),
    );
    // The refused replicas bound nothing (k2 included) and wrote nothing.
    let store = backend.open(right()).expect("the right key still opens");
    assert_eq!(store.revision().expect("revision"), revision);
    refused_for_k1(backend.open(wrong()));
    // A rotation ring with the right old key binds its new key.
    drop(
        backend
            .open(
                KeyRing::new(key("k2", 5))
                    .with_old_key(key("k1", 1))
                    .expect("ring"),
            )
            .expect("rotation"),
    );
    match backend.open(KeyRing::new(key("k2", 6))) {
        Err(StoreError::KeyMismatch { key_id, .. }) => assert_eq!(key_id, "k2"),
        other => panic!("expected a key mismatch on k2, got {:?}", other.map(|_| ())),
    }
}

/// A store written before key checks existed has sealed values but no
/// checks: the first open of each key ID must open one of them first.
fn a_store_without_key_checks_binds_only_the_key_that_opens_it(backend: &dyn Backend) {
    let store = backend.open(right()).expect("open");
    let p = test_kit::unique_project("legacy");
    let mut batch = Batch::new();
    batch.push(Write::put(
        test_kit::sample_connection(&p, "crm", "s3cret"),
        Expect::Absent,
    ));
    store.commit(&batch).expect("commit");
    drop(store);
    backend.execute("DELETE FROM {seal_keys}", &[]);
    refused_for_k1(backend.open(wrong()));
    backend
        .open(right())
        .expect("the key that opens the values binds");
    refused_for_k1(backend.open(wrong()));
}

fn crm(project: &ProjectId, secret: &str) -> ConnectionSpec {
    ConnectionSpec::project(project.clone(), "crm")
        .param(Param::plain("Url").default("https://crm.example.com"))
        .param(Param::secret("Key").default(secret))
        .build()
        .expect("spec")
}

fn erp(project: &ProjectId) -> ConnectionSpec {
    ConnectionSpec::project(project.clone(), "erp")
        .param(Param::plain("Url").default("https://erp.example.com"))
        .build()
        .expect("spec")
}

fn request(project: &ProjectId, integration: &str) -> ResolveRequest {
    ResolveRequest::new(
        project.clone(),
        integration.parse().expect("integration"),
        "production".parse().expect("environment"),
    )
}

fn registry(store: Arc<dyn Store>) -> Registry {
    Registry::builder().shared_store(store).build().expect("registry")
}

/// A record rewritten by a rogue writer (sealed under other bytes for k1)
/// is reported by the raw store with its key, and registries built on the
/// store or following its feed keep serving everything else: the other
/// project fully, the same project's integrations that do not depend on the
/// record. What depends on it fails typed; writes to its project are
/// refused; deleting the row at its version brings the project back.
fn one_unreadable_record_leaves_the_rest_serving(backend: &dyn Backend) {
    let store = backend.open(right()).expect("open");
    let (good, bad) = (test_kit::unique_project("good"), test_kit::unique_project("bad"));
    let writer = registry(store.clone());
    for p in [&good, &bad] {
        writer.create_connection(crm(p, "crm-key")).expect("crm");
        writer.create_connection(erp(p)).expect("erp");
        writer
            .set_mappings(
                Mappings::of(p.clone(), "orders")
                    .by_name("crm", [("Key", "CRM_KEY")])
                    .build()
                    .expect("m"),
                None,
            )
            .expect("orders");
        writer
            .set_mappings(
                Mappings::of(p.clone(), "billing")
                    .by_name("erp", [("Url", "ERP_URL")])
                    .build()
                    .expect("m"),
                None,
            )
            .expect("billing");
    }
    // A follower that saw all of that, then follows the rogue write.
    let follower = registry(backend.open(right()).expect("open"));
    let id = writer
        .snapshot(&bad)
        .expect("bad")
        .by_name(None, &"crm".parse().expect("name"))
        .expect("crm")
        .value
        .id();
    let version = writer.connection(&bad, id).expect("crm").version;
    writer
        .update_connection(id, version, crm(&bad, "rotated"))
        .expect("update");
    let crm_key = RecordKey::Connection(bad.clone(), Scope::Project, "crm".parse().expect("name"));
    let Some((version, record)) = store.get(&crm_key).expect("get") else {
        panic!("crm is stored")
    };
    // The rogue write: the same record, sealed under other bytes for k1.
    let rogue = with_secret_codec(Arc::new(wrong()), || serde_json::to_string(&record)).expect("encode");
    let key_text = serde_json::to_string(&crm_key).expect("key");
    backend.execute(
        "UPDATE {records} SET body = $1 WHERE key = $2",
        &[&rogue, &key_text],
    );
    backend.execute(
        "UPDATE {changes} SET body = $1 WHERE key = $2 AND body IS NOT NULL
         AND revision = (SELECT MAX(revision) FROM {changes} WHERE key = $2)",
        &[&rogue, &key_text],
    );

    // The raw store refuses the row and reads the rest.
    let raw = backend.open(right()).expect("open");
    let snapshot = raw.load().expect("a partial load");
    assert_eq!(snapshot.unreadable.len(), 1, "{:?}", snapshot.unreadable);
    let lost = &snapshot.unreadable[0];
    assert_eq!(
        (&lost.key, lost.version, lost.key_id.as_deref()),
        (&crm_key, version, Some("k1"))
    );
    assert!(lost.error.to_string().contains("does not open"), "{}", lost.error);
    assert!(!lost.error.to_string().contains("rotated"));
    assert!(
        snapshot
            .records
            .iter()
            .any(|(_, r)| matches!(r, Record::Connection(c) if c.project() == &good))
    );
    assert!(matches!(raw.get(&crm_key), Err(StoreError::Unreadable { .. })));

    // A registry built on the store, and the follower catching up.
    let fresh = registry(raw.clone());
    follower
        .sync()
        .expect("the follower catches up past the unreadable change");
    for r in [&fresh, &follower] {
        let listed: Vec<RecordKey> = r.unreadable().into_iter().map(|u| u.key).collect();
        assert_eq!(listed, vec![crm_key.clone()]);
        assert_eq!(
            r.resolve(&request(&good, "orders"))
                .expect("good/orders")
                .expose("CRM_KEY"),
            Some("crm-key")
        );
        assert_eq!(
            r.resolve(&request(&bad, "billing"))
                .expect("bad/billing")
                .expose("ERP_URL"),
            Some("https://erp.example.com")
        );
        let err = r
            .resolve(&request(&bad, "orders"))
            .expect_err("bad/orders depends on crm");
        assert_eq!(
            err.problems,
            vec![Problem::Unreadable {
                record: crm_key.clone()
            }]
        );
        let err = r
            .create_connection(erp(&bad).clone_renamed("erp2"))
            .expect_err("bad is read-only");
        assert!(
            matches!(&err, RegistryError::ProjectUnreadable { project, records } if project == &bad && records == &vec![crm_key.clone()]),
            "{err}"
        );
        r.create_connection(erp(&good).clone_renamed(&format!("erp-{}", r.catalog().revision())))
            .expect("good is writable");
    }

    // The way back: delete the row at its version (or restore the key that
    // sealed it); the project is writable again.
    let mut batch = Batch::new();
    batch.push(Write::delete(crm_key.clone(), Expect::Version(version)));
    raw.commit(&batch)
        .expect("the raw store deletes what it cannot read");
    for r in [&fresh, &follower] {
        r.sync().expect("sync");
        assert!(r.unreadable().is_empty());
        let err = r.resolve(&request(&bad, "orders")).expect_err("crm is gone");
        assert!(matches!(err.problems[0], Problem::NotVisible { .. }), "{err}");
    }
    fresh
        .create_connection(crm(&bad, "new-key"))
        .expect("bad is writable again");
}

trait Renamed {
    fn clone_renamed(&self, name: &str) -> ConnectionSpec;
}

impl Renamed for ConnectionSpec {
    fn clone_renamed(&self, name: &str) -> ConnectionSpec {
        ConnectionSpec::project(self.project_id().clone(), name)
            .param(Param::plain("Url").default("https://other.example.com"))
            .build()
            .expect("spec")
    }
}

#[test]
fn sqlite_refuses_a_wrong_key_under_a_known_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    a_wrong_key_under_a_known_id_is_refused(&Sqlite(&dir.path().join("keys.db")));
}

#[test]
fn sqlite_binds_a_store_without_key_checks_to_the_key_that_opens_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    a_store_without_key_checks_binds_only_the_key_that_opens_it(&Sqlite(&dir.path().join("legacy.db")));
}

#[test]
fn sqlite_one_unreadable_record_leaves_the_rest_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    one_unreadable_record_leaves_the_rest_serving(&Sqlite(&dir.path().join("rogue.db")));
}

#[test]
fn postgres_refuses_a_wrong_key_under_a_known_id() {
    let Some(db) = test_kit::postgres::database("keys") else {
        return;
    };
    a_wrong_key_under_a_known_id_is_refused(&Postgres(&db));
}

#[test]
fn postgres_binds_a_store_without_key_checks_to_the_key_that_opens_it() {
    let Some(db) = test_kit::postgres::database("legacy_keys") else {
        return;
    };
    a_store_without_key_checks_binds_only_the_key_that_opens_it(&Postgres(&db));
}

#[test]
fn postgres_one_unreadable_record_leaves_the_rest_serving() {
    let Some(db) = test_kit::postgres::database("rogue") else {
        return;
    };
    one_unreadable_record_leaves_the_rest_serving(&Postgres(&db));
}
