//! `SqliteStore`: the conformance suite, secrets at rest, key rotation,
//! schema versions, and a SIGKILL crash test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use connective::model::{Record, Revision, Version};
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{Batch, Changed, CommitToken, Expect, SqliteStore, Store, StoreError, Write};
use connective::test_kit;

fn key(id: &str, byte: u8) -> SealKey {
    SealKey::from_bytes(id, &[byte; 32]).expect("a valid key")
}

fn ring() -> KeyRing {
    KeyRing::new(key("k1", 1))
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("connections.db")
}

fn commit(store: &dyn Store, writes: Vec<Write>) -> connective::store::Committed {
    store
        .commit(&Batch {
            writes,
            token: None,
            audit: None,
        })
        .expect("commit")
}

/// Every file SQLite keeps for `path`: the database, its WAL and shared memory.
fn raw_bytes(path: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(PathBuf::from(p)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn sqlite_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(db(&dir), ring()).expect("open");
    test_kit::run_all(&store);
}

/// Sets the stored version of a key's row with SQL, as the version checks
/// of the conformance suite need.
fn version_setter(path: &Path) -> impl Fn(&connective::model::RecordKey, i64) {
    let raw = rusqlite::Connection::open(path).expect("raw open");
    raw.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    move |key, version| {
        let key = serde_json::to_string(key).expect("key text");
        let n = raw
            .execute(
                "UPDATE records SET version = ?1 WHERE key = ?2",
                rusqlite::params![version, key],
            )
            .expect("set a version");
        assert_eq!(n, 1, "no row for {key}");
    }
}

#[test]
fn sqlite_store_refuses_to_write_past_the_last_version_and_to_read_versions_out_of_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(db(&dir), ring()).expect("open");
    test_kit::the_last_version_is_final(&store, version_setter(&db(&dir)));
    test_kit::stored_versions_out_of_range_are_refused(&store, version_setter(&db(&dir)));
}

#[test]
fn sqlite_store_refuses_to_commit_past_the_last_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(db(&dir), ring()).expect("open");
    let raw = rusqlite::Connection::open(db(&dir)).expect("raw open");
    raw.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    test_kit::the_last_revision_is_final(&store, |revision| {
        let revision = i64::try_from(revision.0).expect("a revision SQLite keeps");
        raw.execute("UPDATE head SET revision = ?1 WHERE id = 1", [revision])
            .expect("set the head revision");
    });
}

#[test]
fn sqlite_store_reopen_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    test_kit::reopen_keeps_everything(|| SqliteStore::open(&path, ring()).expect("open"), true);
}

#[test]
fn two_handles_on_one_file_race_and_follow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = SqliteStore::open(db(&dir), ring()).expect("open a");
    let b = SqliteStore::open(db(&dir), ring()).expect("open b");
    test_kit::concurrent_writers(&[&a, &b], 2, 15);
    test_kit::racing_creators(&[&a, &b], 3);
    test_kit::follower_sees_every_revision(&[&a], &b, 2, 10);
}

#[test]
fn no_secret_is_written_in_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let store = SqliteStore::open(&path, ring()).expect("open");
    let p = test_kit::unique_project("atrest");
    let secrets: Vec<String> = (0..6)
        .map(|i| test_kit::unique_secret(&format!("plain{i}")))
        .collect();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let app_secret = test_kit::unique_secret("clientsecret");
    let api_key = test_kit::unique_secret("apikey");
    let rich = test_kit::secret_rich_connection(&p, "db", &refs);
    let svc = test_kit::sample_connection(&p, "svc", &api_key);
    let app = test_kit::sample_oauth_app(&p, &app_secret);
    commit(
        &store,
        vec![
            Write::put(rich.clone(), Expect::Absent),
            Write::put(svc.clone(), Expect::Absent),
        ],
    );
    commit(&store, vec![Write::put(app.clone(), Expect::Absent)]);
    // Update and delete too, so old values pass through the feed and free pages.
    commit(
        &store,
        vec![Write::put(rich.clone(), Expect::Version(Version(1)))],
    );
    commit(
        &store,
        vec![Write::delete(svc.key(), Expect::Version(Version(1)))],
    );
    let bytes = raw_bytes(&path);
    assert!(
        contains(&bytes, "https://api.example.com"),
        "the search must find plain values (sanity check)"
    );
    assert!(
        contains(&bytes, "cs1:k1:"),
        "sealed values are labelled with their key"
    );
    for s in secrets.iter().chain([&app_secret, &api_key]) {
        assert!(
            !contains(&bytes, s),
            "a secret value is stored in plaintext in the SQLite files"
        );
    }
    drop(store);
    let bytes = raw_bytes(&path);
    for s in secrets.iter().chain([&app_secret, &api_key]) {
        assert!(
            !contains(&bytes, s),
            "a secret value is stored in plaintext after close"
        );
    }
    // And they still open.
    let store = SqliteStore::open(&path, ring()).expect("reopen");
    let (_, got) = store.get(&app.key()).expect("get").expect("present");
    assert!(test_kit::same_record(&got, &app));
}

fn unreadable_message(e: StoreError) -> (String, String) {
    match e {
        StoreError::Unreadable { what, message, .. } => (what, message),
        other => panic!("expected Unreadable, got {other}"),
    }
}

#[test]
fn a_missing_or_wrong_key_is_a_typed_error_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let p = test_kit::unique_project("keys");
    let secret = test_kit::unique_secret("s");
    let record = test_kit::sample_connection(&p, "svc", &secret);
    {
        let store = SqliteStore::open(&path, ring()).expect("open");
        commit(&store, vec![Write::put(record.clone(), Expect::Absent)]);
    }
    // A ring without the key the records were sealed with: the load reports
    // what it cannot read.
    let store = SqliteStore::open(&path, KeyRing::new(key("k2", 2))).expect("open without k1");
    let snapshot = store.load().expect("a load reports what it cannot read");
    assert!(snapshot.records.is_empty());
    assert_eq!(snapshot.unreadable.len(), 1);
    let lost = &snapshot.unreadable[0];
    assert_eq!(
        (&lost.key, lost.version, lost.key_id.as_deref()),
        (&record.key(), Version(1), Some("k1"))
    );
    let message = lost.error.to_string();
    assert!(
        message.contains("\"k1\"") && message.contains("does not hold") && !message.contains(&secret),
        "{message}"
    );
    let (_, message) = unreadable_message(store.get(&record.key()).expect_err("get without the key"));
    assert!(message.contains("\"k1\""), "{message}");
    let feed = store
        .changes_since(Revision(0), 10)
        .expect("the feed, with what it cannot read");
    assert!(
        matches!(&feed[0].change, Changed::Unreadable(u)
            if u.key_id.as_deref() == Some("k1") && u.error.to_string().contains("change feed")),
        "{:?}",
        feed[0]
    );
    // Writing does not need to read: a conflict check still works and reports versions.
    assert!(matches!(
        store.commit(&Batch {
            writes: vec![Write::put(record.clone(), Expect::Absent)],
            token: None,
            audit: None,
        }),
        Err(StoreError::Conflict {
            found: Some(Version(1)),
            ..
        })
    ));
    drop(store);
    // A different key under the same ID: refused at open, before anything is
    // read or sealed.
    let wrong = SqliteStore::open(&path, KeyRing::new(key("k1", 9))).expect_err("a wrong k1 is refused");
    assert!(
        matches!(&wrong, StoreError::KeyMismatch { key_id, .. } if key_id == "k1"),
        "{wrong}"
    );
    // Nothing was lost.
    let store = SqliteStore::open(&path, ring()).expect("open with the right key");
    let snapshot = store.load().expect("load");
    assert_eq!(snapshot.records.len(), 1);
    assert!(test_kit::same_record(&snapshot.records[0].1, &record));
}

/// Rows altered in the file underneath the store: a tampered sealed
/// secret, a body that is not JSON, a body that is not text, a body moved
/// to another row. A load lists each by its key, with a typed error that
/// holds no secret, and loads every other record whole, secrets included,
/// in order (enough rows for the load to decode in several batches on
/// several threads). A row whose key itself is corrupt fails the load:
/// nothing is half-loaded.
#[test]
fn altered_rows_are_listed_by_key_and_the_rest_loads_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let p = test_kit::unique_project("altered");
    let n = 2_600;
    let secrets: Vec<String> = (0..n)
        .map(|i| test_kit::unique_secret(&format!("s{i}")))
        .collect();
    let records: Vec<Record> = (0..n)
        .map(|i| test_kit::sample_connection(&p, &format!("svc{i:04}"), &secrets[i]))
        .collect();
    {
        let store = SqliteStore::open(&path, ring()).expect("open");
        commit(
            &store,
            records
                .iter()
                .map(|r| Write::put(r.clone(), Expect::Absent))
                .collect(),
        );
    }
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    // Rows in the order a load reads them.
    let keys: Vec<String> = raw
        .prepare("SELECT key FROM records ORDER BY key")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .expect("keys");
    let body = |key: &str| -> String {
        raw.query_row("SELECT body FROM records WHERE key = ?1", [key], |r| r.get(0))
            .expect("body")
    };
    let (tampered, not_json, not_text, moved) = (5, 1_023, 1_024, 2_500);
    let mut sealed = body(&keys[tampered]);
    let at = sealed.find("\"cs1:k1:").expect("a sealed secret") + 20;
    let flipped = if &sealed[at..=at] == "A" { "B" } else { "A" };
    sealed.replace_range(at..=at, flipped);
    let update = "UPDATE records SET body = ?1 WHERE key = ?2";
    raw.execute(update, rusqlite::params![sealed, keys[tampered]])
        .expect("tamper");
    raw.execute(update, rusqlite::params!["{\"connection\": {", keys[not_json]])
        .expect("truncate");
    raw.execute(
        update,
        rusqlite::params![vec![0xffu8, 0xfe, 0x7b], keys[not_text]],
    )
    .expect("a blob");
    raw.execute(update, rusqlite::params![body(&keys[0]), keys[moved]])
        .expect("move");
    let store = SqliteStore::open(&path, ring()).expect("open");
    let snapshot = store.load().expect("a load lists what it cannot read");
    let by_key = |key: &str| {
        records
            .iter()
            .position(|r| serde_json::to_string(&r.key()).expect("key") == key)
            .expect("a written record")
    };
    let altered = [tampered, not_json, not_text, moved];
    let listed: Vec<_> = snapshot.unreadable.iter().map(|u| u.key.clone()).collect();
    let want: Vec<_> = altered.iter().map(|&i| records[by_key(&keys[i])].key()).collect();
    assert_eq!(listed, want);
    let messages: Vec<String> = snapshot
        .unreadable
        .iter()
        .map(|u| {
            let StoreError::Unreadable { what, message, .. } = &u.error else {
                panic!("expected Unreadable, got {}", u.error);
            };
            assert_eq!(what, &u.key.to_string());
            message.clone()
        })
        .collect();
    assert!(messages[0].contains("does not open"), "{}", messages[0]);
    assert_eq!(snapshot.unreadable[0].key_id.as_deref(), Some("k1"));
    assert!(messages[1].contains("not a valid record"), "{}", messages[1]);
    assert!(messages[2].contains("not UTF-8"), "{}", messages[2]);
    assert!(messages[3].contains("holds the record of"), "{}", messages[3]);
    for message in &messages {
        assert!(!secrets.iter().any(|s| message.contains(s.as_str())), "{message}");
    }
    // Everything else, in row order, with its secrets.
    let loaded: Vec<_> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| !altered.contains(i))
        .map(|(_, key)| &records[by_key(key)])
        .collect();
    assert_eq!(snapshot.records.len(), loaded.len());
    for ((version, got), want) in snapshot.records.iter().zip(loaded) {
        assert_eq!(*version, Version(1));
        assert!(test_kit::same_record(got, want), "{} differs", want.key());
    }
    // A corrupt key: the whole load fails, naming what it could not read.
    raw.execute(
        "UPDATE records SET key = 'not a key' WHERE key = ?1",
        [&keys[1_800]],
    )
    .expect("corrupt a key");
    let (what, _) = unreadable_message(store.load().expect_err("a corrupt key fails the load"));
    assert_eq!(what, "a record key");
}

/// A row as an earlier version wrote it (taken from the benches'
/// cold-start database: key `bench`, its two secrets sealed then) loads to
/// the record that was written, secrets opened; the same row with one
/// character of a sealed secret changed is listed as unreadable by its key.
#[test]
fn a_row_written_before_loads_to_the_same_record() {
    use connective::model::{AuthScheme, Connection, ConnectionSpec, Param, Target};
    const BODY: &str = r#"{"connection":{"id":"b5f6417d-37a4-42d1-b88a-91759e90a72a","project":"proj-000000","scope":"project","name":"c0000","target":{"external":{"service":"svc"}},"auth":"api_key","params":[{"name":"ServiceURL","requirement":"required","tenancy":"global","values":{"plain":[["default","https://h0-0.example"]]}},{"name":"Region","requirement":"required","tenancy":"global","values":{"plain":[["default","eu-west-1"]]}},{"name":"Username","requirement":"required","tenancy":"global","values":{"plain":[["default","bot0"]]}},{"name":"ApiKey","requirement":"required","tenancy":"global","values":{"secret":[["default","cs1:bench:tTanjHASEjodWLWN1Ii1_m2X6DOmuo0B_f6sJ3po9JeUMVpl7v5PbEG-umMCoKo"]]}},{"name":"Password","requirement":"required","tenancy":"global","values":{"secret":[["default","cs1:bench:JHpm-3nS57XVQknoCk26jTZRxNNoylIxNVTy2ipJ9HOi9eHIwO--vinBr6oQi2Y"]]}}]}}"#;
    let spec = ConnectionSpec::project("proj-000000", "c0000")
        .target(Target::external("svc"))
        .auth(AuthScheme::ApiKey)
        .param(Param::plain("ServiceURL").default("https://h0-0.example"))
        .param(Param::plain("Region").default("eu-west-1"))
        .param(Param::plain("Username").default("bot0"))
        .param(Param::secret("ApiKey").default("k000000"))
        .param(Param::secret("Password").default("p000000"))
        .build()
        .expect("spec");
    let id = "b5f6417d-37a4-42d1-b88a-91759e90a72a".parse().expect("id");
    let record = Record::Connection(std::sync::Arc::new(Connection::new(id, spec, None)));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let bench = || KeyRing::new(key("bench", 7));
    let store = SqliteStore::open(&path, bench()).expect("open");
    commit(&store, vec![Write::put(record.clone(), Expect::Absent)]);
    let raw = rusqlite::Connection::open(&path).expect("raw open");
    let update = "UPDATE records SET body = ?1";
    raw.execute(update, [BODY]).expect("the earlier row");
    let snapshot = store.load().expect("load");
    assert!(snapshot.unreadable.is_empty());
    assert_eq!(snapshot.records.len(), 1);
    assert!(test_kit::same_record(&snapshot.records[0].1, &record));
    let altered = BODY.replacen("cs1:bench:tTanj", "cs1:bench:tTank", 1);
    raw.execute(update, [altered]).expect("an altered secret");
    let snapshot = store.load().expect("load");
    assert!(snapshot.records.is_empty());
    assert_eq!(snapshot.unreadable.len(), 1);
    assert_eq!(snapshot.unreadable[0].key, record.key());
    let (what, message) = unreadable_message(snapshot.unreadable[0].error.clone());
    assert_eq!(what, record.key().to_string());
    assert!(message.contains("does not open"), "{message}");
}

#[test]
fn reseal_moves_everything_to_the_newest_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let p = test_kit::unique_project("reseal");
    let records: Vec<Record> = (0..5)
        .map(|i| test_kit::sample_connection(&p, &format!("c{i}"), &test_kit::unique_secret("s")))
        .collect();
    {
        let store = SqliteStore::open(&path, ring()).expect("open");
        for r in &records {
            commit(&store, vec![Write::put(r.clone(), Expect::Absent)]);
        }
        commit(
            &store,
            vec![Write::put(records[0].clone(), Expect::Version(Version(1)))],
        );
        commit(
            &store,
            vec![Write::delete(records[1].key(), Expect::Version(Version(1)))],
        );
    }
    let before = {
        let store = SqliteStore::open(&path, ring()).expect("open");
        (
            store.revision().expect("revision"),
            store.changes_since(Revision(0), usize::MAX).expect("feed").len(),
        )
    };
    let rotated = KeyRing::new(key("k2", 2))
        .with_old_key(key("k1", 1))
        .expect("ring");
    let store = SqliteStore::open(&path, rotated).expect("open with both keys");
    let done = store.reseal().expect("reseal");
    assert_eq!(done.records, 4, "live records re-sealed");
    assert_eq!(done.changes, 6, "change-feed bodies re-sealed (puts only)");
    assert_eq!(
        store.revision().expect("revision"),
        before.0,
        "a re-seal is not a write"
    );
    drop(store);
    let bytes = raw_bytes(&path);
    assert!(
        contains(&bytes, "cs1:k2:"),
        "sanity: values sealed under k2 are in the file"
    );
    assert!(
        !contains(&bytes, "cs1:k1:"),
        "a value sealed under the retired key is still in the files"
    );
    let store = SqliteStore::open(&path, KeyRing::new(key("k2", 2))).expect("open with only the new key");
    let snapshot = store.load().expect("load with only the new key");
    assert_eq!(snapshot.records.len(), 4);
    for (_, r) in &snapshot.records {
        let want = records.iter().find(|x| x.key() == r.key()).expect("known record");
        assert!(test_kit::same_record(r, want));
    }
    assert_eq!(
        store.changes_since(Revision(0), usize::MAX).expect("feed").len(),
        before.1
    );
}

#[test]
fn a_schema_newer_than_the_code_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    drop(SqliteStore::open(&path, ring()).expect("create"));
    {
        let conn = rusqlite::Connection::open(&path).expect("raw open");
        conn.pragma_update(None, "user_version", connective::store::SQLITE_SCHEMA_VERSION + 1)
            .expect("bump");
    }
    let err = SqliteStore::open(&path, ring()).expect_err("a newer schema must be refused");
    let (_, message) = unreadable_message(err);
    assert!(message.contains("newer than this code"), "{message}");

    let other = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&other).expect("raw open");
        conn.execute_batch("CREATE TABLE unrelated (x INTEGER)")
            .expect("create");
    }
    let (_, message) = unreadable_message(SqliteStore::open(&other, ring()).expect_err("a foreign database"));
    assert!(message.contains("not a connective database"), "{message}");
}

#[test]
fn pruned_feed_reports_truncation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(db(&dir), ring()).expect("open");
    let p = test_kit::unique_project("prune");
    for i in 0..5 {
        let mut batch = Batch::new().with_token(CommitToken::new(i + 1));
        batch.push(Write::put(
            test_kit::sample_connection(&p, &format!("c{i}"), "s"),
            Expect::Absent,
        ));
        store.commit(&batch).expect("commit");
    }
    assert_eq!(store.prune_feed(Revision(3)).expect("prune"), 3);
    assert_eq!(store.prune_feed(Revision(2)).expect("prune again"), 0);
    // Tokens go with the feed: found while it keeps their batch, and a
    // look-up reaching before what it keeps cannot answer.
    let found = store.find_commit(CommitToken::new(5), Revision(3)).expect("find");
    assert_eq!(found.map(|c| c.revision), Some(Revision(5)));
    assert!(matches!(
        store.find_commit(CommitToken::new(2), Revision(0)),
        Err(StoreError::FeedTruncated { .. })
    ));
    assert_eq!(
        store.find_commit(CommitToken::new(2), Revision(3)).expect("find"),
        None
    );
    match store.changes_since(Revision(1), 10) {
        Err(StoreError::FeedTruncated { requested, oldest }) => {
            assert_eq!((requested, oldest), (Revision(1), Revision(4)));
        }
        other => panic!("expected FeedTruncated, got {other:?}"),
    }
    let rest = store.changes_since(Revision(3), 10).expect("the kept part");
    assert_eq!(rest.iter().map(|c| c.revision.0).collect::<Vec<_>>(), vec![4, 5]);
    // Through a revision past any a row can hold: through the head.
    assert_eq!(store.prune_feed(Revision(u64::MAX)).expect("prune all"), 2);
    assert!(
        store
            .changes_since(Revision(5), 10)
            .expect("nothing after")
            .is_empty()
    );
    assert!(matches!(
        store.changes_since(Revision(4), 10),
        Err(StoreError::FeedTruncated { .. })
    ));
}

// --- SIGKILL crash test ---------------------------------------------------

const CHILD_ENV: &str = "CONNECTIVE_SQLITE_CRASH_CHILD";
const BATCH: usize = 3;
const COUNTER_ID: &str = "00000000-0000-4000-8000-00000000c0de";

/// The child role of `acknowledged_writes_survive_sigkill`: commits batches
/// until killed, printing each acknowledged revision.
#[test]
#[ignore = "runs only as the child process of acknowledged_writes_survive_sigkill"]
fn sqlite_crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let store = SqliteStore::open(&path, ring()).expect("child open");
    let p: connective::model::ProjectId = "crash".parse().expect("project");
    let counter_id: connective::model::ConnectionId = COUNTER_ID.parse().expect("id");
    let counter_key = connective::model::RecordKey::Connection(
        p.clone(),
        connective::model::Scope::Project,
        "counter".parse().expect("name"),
    );
    let mut version = store.get(&counter_key).expect("get").map(|(v, _)| v);
    let start = store.revision().expect("revision").0;
    for i in start.. {
        let mut writes = Vec::new();
        for k in 0..BATCH - 1 {
            let name = format!("b{i}k{k}");
            writes.push(Write::put(
                test_kit::sample_connection(&p, &name, &format!("secret-{i}")),
                Expect::Absent,
            ));
        }
        let counter = test_kit::connection_with(&p, counter_id, "counter", "s", &format!("{i}"));
        let expect = version.map_or(Expect::Absent, Expect::Version);
        writes.push(Write::put(counter, expect));
        let done = store
            .commit(&Batch {
                writes,
                token: None,
                audit: None,
            })
            .expect("child commit");
        version = Some(done.versions[BATCH - 1]);
        println!("ACK {}", done.revision.0);
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db(&dir);
    let exe = std::env::current_exe().expect("current exe");
    let mut acked_total = 0u64;
    for round in 0..3u64 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "store::sqlite::sqlite_crash_child",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut acked = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        // Kill after a varying number of acknowledgements, mid-stream.
        let target = 15 + round * 7;
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read child output");
            if let Some(rev) = line.strip_prefix("ACK ") {
                acked.push(rev.trim().parse::<u64>().expect("revision"));
                if acked.len() as u64 >= target {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "the child did not commit in time");
        }
        child.kill().expect("SIGKILL the child"); // Child::kill sends SIGKILL on Unix.
        let status = child.wait().expect("reap the child");
        assert!(!status.success(), "the child was supposed to die, not finish");
        assert!(
            acked.len() as u64 >= target,
            "round {round}: the child stopped after {} acks",
            acked.len()
        );
        acked_total += acked.len() as u64;

        let store = SqliteStore::open(&path, ring()).expect("reopen after SIGKILL");
        let head = store.revision().expect("revision");
        let max_acked = *acked.iter().max().expect("acks");
        assert!(
            head.0 >= max_acked,
            "round {round}: acknowledged r{max_acked} lost (head is {head})"
        );
        let feed = store.changes_since(Revision(0), usize::MAX).expect("feed");
        for r in 1..=head.0 {
            let n = feed.iter().filter(|c| c.revision.0 == r).count();
            assert_eq!(
                n, BATCH,
                "round {round}: batch r{r} is half applied ({n} of {BATCH} writes)"
            );
        }
        let snapshot = store.load().expect("load");
        assert_eq!(
            snapshot.records.len() as u64,
            head.0 * (BATCH as u64 - 1) + 1,
            "live records vs batches"
        );
        let counter_key = connective::model::RecordKey::Connection(
            "crash".parse().expect("project"),
            connective::model::Scope::Project,
            "counter".parse().expect("name"),
        );
        let counter = snapshot
            .records
            .iter()
            .find(|(_, r)| r.key() == counter_key)
            .expect("the counter record");
        assert_eq!(
            counter.0,
            Version(head.0),
            "the counter's version equals the number of batches"
        );
        assert_eq!(test_kit::marker_of(&counter.1), Some(format!("{}", head.0 - 1)));
        for rev in &acked {
            assert!(
                feed.iter().any(|c| c.revision.0 == *rev),
                "acknowledged r{rev} missing from the feed"
            );
        }
    }
    assert!(acked_total >= 15 + 22 + 29);
}

// --- Audit queries at the ends of their types ------------------------------

mod audit_bounds {
    use connective::model::{ActorId, AuditNote, AuditPosition, AuditQuery, Timestamp};
    use connective::store::{Batch, Expect, MemoryStore, SqliteStore, Store, Write};
    use connective::test_kit;
    use proptest::prelude::*;

    /// The same audited batches, at instants from 0 to `i64::MAX`, in a
    /// fresh memory store and a fresh SQLite store.
    fn stores() -> (MemoryStore, SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let sqlite = SqliteStore::open(dir.path().join("audit.db"), super::ring()).expect("open");
        let memory = MemoryStore::new();
        let p = test_kit::unique_project("bounds");
        let instants = [
            0,
            1,
            999,
            1_000,
            1_001,
            u64::MAX / 4,
            i64::MAX as u64 - 1,
            i64::MAX as u64,
        ];
        for (i, at) in instants.into_iter().enumerate() {
            let actor: ActorId = if i % 2 == 0 { "user:alice" } else { "svc:deploy" }
                .parse()
                .unwrap();
            let record = test_kit::sample_connection(&p, &format!("c{i}"), "s");
            let batch = Batch::new().with_audit(AuditNote {
                actor,
                at: Timestamp(at),
            });
            let mut batch = batch;
            batch.push(Write::put(record, Expect::Absent));
            for store in [&memory as &dyn Store, &sqlite] {
                store.commit(&batch).expect("commit");
            }
        }
        (memory, sqlite, dir)
    }

    fn edge_u64() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..12,
            995u64..1_005,
            Just(u64::MAX / 4),
            (i64::MAX as u64 - 2)..=(i64::MAX as u64 + 2),
            (u64::MAX - 2)..=u64::MAX,
            any::<u64>(),
        ]
    }

    fn query() -> impl Strategy<Value = AuditQuery> {
        (
            edge_u64(),
            proptest::option::of(edge_u64()),
            proptest::option::of(edge_u64()),
            prop_oneof![0usize..10, Just(usize::MAX), any::<usize>()],
            0u8..3,
            0u8..3,
        )
            .prop_map(|(after, from, until, limit, kind, actor)| {
                let mut q = AuditQuery::all().after(AuditPosition(after));
                q.from = from.map(Timestamp);
                q.until = until.map(Timestamp);
                q = q.limit(limit);
                q = match kind {
                    1 => q.writes(),
                    2 => q.reads(),
                    _ => q,
                };
                match actor {
                    1 => q.by("user:alice".parse().unwrap()),
                    2 => q.by("svc:deploy".parse().unwrap()),
                    _ => q,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the bounds (positions, instants and limits up to the
        /// ends of their types), SQLite answers an audit query as the
        /// memory store does: the same entries, never an error.
        #[test]
        fn sqlite_answers_audit_queries_at_any_bounds_as_the_memory_store(q in query()) {
            thread_local! {
                static STORES: (MemoryStore, SqliteStore, tempfile::TempDir) = stores();
            }
            STORES.with(|(memory, sqlite, _)| {
                let want = memory.audit(&q).map_err(|e| TestCaseError::fail(format!("memory: {e}")))?;
                let got = sqlite.audit(&q).map_err(|e| TestCaseError::fail(format!("sqlite: {q:?}: {e}")))?;
                prop_assert_eq!(format!("{got:?}"), format!("{want:?}"), "{:?}", q);
                Ok(())
            })?;
        }
    }
}
