//! `PostgresStore` against a real server: the conformance suite, replicas
//! racing and following, secrets at rest in a `pg_dump`, key rotation, schema
//! versions, LISTEN/NOTIFY and polling, the server going away and coming back,
//! and calls from inside a tokio runtime.
//!
//! The server comes from `connective::test_kit::postgres`: the `PG*`
//! variables if set, else a throwaway cluster started here. Without one the
//! tests print `skipped: ...`, and fail under `CI=true`.

use std::time::{Duration, Instant};

use connective::model::{ProjectId, Revision, Version};
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{
    Batch, Changed, CommitToken, Expect, PostgresSettings, PostgresStore, Store, StoreError, Write,
};
use connective::test_kit;
use connective::test_kit::postgres::{PgCluster, database, unavailable};

fn key(id: &str, byte: u8) -> SealKey {
    SealKey::from_bytes(id, &[byte; 32]).expect("a valid key")
}

fn ring() -> KeyRing {
    KeyRing::new(key("k1", 1))
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

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn unreadable_message(e: StoreError) -> (String, String) {
    match e {
        StoreError::Unreadable { what, message, .. } => (what, message),
        other => panic!("expected Unreadable, got {other}"),
    }
}

#[test]
fn postgres_store_passes_the_conformance_suite() {
    let Some(db) = database("conformance") else { return };
    let store = db.open(ring()).expect("open");
    test_kit::run_all(&store);
}

/// Sets the stored version of a key's row with SQL, as the version checks
/// of the conformance suite need.
fn version_setter(db: &test_kit::postgres::TestDatabase) -> impl Fn(&connective::model::RecordKey, i64) {
    let client = std::cell::RefCell::new(db.client().expect("a plain client"));
    move |key, version| {
        let key = serde_json::to_string(key).expect("key text");
        let n = client
            .borrow_mut()
            .execute(
                "UPDATE connective_records SET version = $1 WHERE key = $2",
                &[&version, &key],
            )
            .expect("set a version");
        assert_eq!(n, 1, "no row for {key}");
    }
}

#[test]
fn postgres_store_refuses_to_write_past_the_last_version_and_to_read_versions_out_of_range() {
    let Some(db) = database("versions") else { return };
    let store = db.open(ring()).expect("open");
    test_kit::the_last_version_is_final(&store, version_setter(&db));
    test_kit::stored_versions_out_of_range_are_refused(&store, version_setter(&db));
}

#[test]
fn postgres_store_refuses_to_commit_past_the_last_revision() {
    let Some(db) = database("revisions") else { return };
    let store = db.open(ring()).expect("open");
    let client = std::cell::RefCell::new(db.client().expect("a plain client"));
    test_kit::the_last_revision_is_final(&store, |revision| {
        let revision = i64::try_from(revision.0).expect("a revision PostgreSQL keeps");
        client
            .borrow_mut()
            .execute(
                "UPDATE connective_head SET revision = $1 WHERE id = 1",
                &[&revision],
            )
            .expect("set the head revision");
    });
}

#[test]
fn postgres_store_reopen_keeps_everything() {
    let Some(db) = database("reopen") else { return };
    test_kit::reopen_keeps_everything(|| db.open(ring()).expect("open"), true);
}

#[test]
fn replicas_race_on_one_key_and_follow_every_revision() {
    let Some(db) = database("replicas") else { return };
    let a = db.open(ring()).expect("replica a");
    let b = db.open(ring()).expect("replica b");
    let follower = db.open(ring()).expect("follower");
    // Two replicas, several writers each, racing on one key: exactly one wins
    // per version, every acknowledged write is in the feed.
    test_kit::concurrent_writers(&[&a, &b], 3, 15);
    test_kit::racing_creators(&[&a, &b], 4);
    // Commits from both replicas interleave; the follower sees each revision once.
    test_kit::follower_sees_every_revision(&[&a, &b], &follower, 3, 12);
}

#[test]
fn polling_without_notify_follows_too() {
    let Some(db) = database("polling") else { return };
    let writer = db.open(ring()).expect("writer").without_notify();
    let follower = db
        .open(ring())
        .expect("follower")
        .without_notify()
        .with_poll_interval(Duration::from_millis(20));
    test_kit::wait_for_change_wakes(&follower);
    test_kit::follower_sees_every_revision(&[&writer], &follower, 2, 10);
}

/// Lets `follower` start listening, then waits on it (up to 20 s) while
/// `writer` commits a new connection `name` of project `p` 200 ms later:
/// the revision before, the one the wait returned, and how long it took.
fn commit_while_waiting(
    writer: &PostgresStore,
    follower: &PostgresStore,
    p: &ProjectId,
    name: &str,
) -> (Revision, Revision, Duration) {
    let start = follower.revision().expect("revision");
    assert_eq!(
        follower
            .wait_for_change(start, Duration::from_millis(50))
            .expect("wait"),
        start
    );
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            commit(
                writer,
                vec![Write::put(
                    test_kit::sample_connection(p, name, "s"),
                    Expect::Absent,
                )],
            );
        });
        let t = Instant::now();
        let seen = follower
            .wait_for_change(start, Duration::from_secs(20))
            .expect("wait");
        (start, seen, t.elapsed())
    })
}

#[test]
fn notify_wakes_a_waiting_follower_long_before_its_poll_interval() {
    let Some(db) = database("notify") else { return };
    let writer = db.open(ring()).expect("writer");
    let follower = db
        .open(ring())
        .expect("follower")
        .with_poll_interval(Duration::from_secs(30));
    let p = test_kit::unique_project("notify");
    let (start, seen, waited) = commit_while_waiting(&writer, &follower, &p, "n");
    assert!(seen > start);
    assert!(
        waited < Duration::from_secs(5),
        "woke after {waited:?}: NOTIFY did not wake the follower"
    );
}

/// The last statement and when its backend last changed state, for each
/// connection of `app` other than its listener.
fn statements_of(client: &mut test_kit::postgres::TestClient, app: &str) -> Vec<(String, String)> {
    client
        .query(
            "SELECT query, state_change::TEXT FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = $1
                 AND query NOT LIKE 'LISTEN%' AND state = 'idle'
             ORDER BY pid",
            &[&app],
        )
        .expect("activity")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[test]
fn a_waiter_woken_by_a_commits_notification_returns_its_revision_without_a_statement() {
    let Some(db) = database("notify_payload") else {
        return;
    };
    let writer = db.open(ring()).expect("writer");
    let follower = PostgresSettings::from_connection_string(&format!(
        "{} application_name=woken_follower",
        db.connection_string()
    ))
    .expect("settings")
    .pool_size(1)
    .poll_interval(Duration::from_secs(30))
    .connect(ring())
    .expect("follower");
    let mut watcher = db.client().expect("a plain client");
    let p = test_kit::unique_project("woken");
    let start = follower.revision().expect("revision");
    // Listening from now on; its one pooled connection last ran something
    // other than the look at the head.
    assert_eq!(
        follower
            .wait_for_change(start, Duration::from_millis(50))
            .expect("wait"),
        start
    );
    assert!(follower.changes_since(start, 10).expect("feed").is_empty());
    let before = statements_of(&mut watcher, "woken_follower");

    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            follower
                .wait_for_change(start, Duration::from_secs(20))
                .expect("wait")
        });
        // The waiter's first look at the head is done when its connection
        // is idle after another statement.
        let deadline = Instant::now() + Duration::from_secs(10);
        let looked = loop {
            let now = statements_of(&mut watcher, "woken_follower");
            if now.len() == 1 && now != before {
                break now;
            }
            assert!(Instant::now() < deadline, "the waiter never looked: {now:?}");
            std::thread::sleep(Duration::from_millis(5));
        };
        let committed = commit(
            &writer,
            vec![Write::put(
                test_kit::sample_connection(&p, "n", "s"),
                Expect::Absent,
            )],
        );
        let t = Instant::now();
        let seen = waiter.join().expect("waiter");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "woke after {:?}",
            t.elapsed()
        );
        // The revision the commit announced, and no statement after the
        // wake-up: the connection's last statement is still the look.
        assert_eq!(seen, committed.revision);
        assert_eq!(statements_of(&mut watcher, "woken_follower"), looked);
    });
}

#[test]
fn a_commit_refused_for_another_reason_leaves_the_notifications_on() {
    let Some(db) = database("notify_kept") else { return };
    let writer = db.open(ring()).expect("writer");
    let follower = db
        .open(ring())
        .expect("follower")
        .with_poll_interval(Duration::from_secs(30));
    // While `refusing` holds a row, taking the next revision fails the way a
    // read-only standby fails it (as after a failover): not a refusal of
    // NOTIFY.
    let mut admin = db.client().expect("a plain client");
    admin
        .batch_execute(
            "CREATE TABLE refusing (why TEXT);
             CREATE FUNCTION refuse_when_asked() RETURNS TRIGGER LANGUAGE plpgsql AS $$
             BEGIN
                 IF EXISTS (SELECT 1 FROM refusing) THEN
                     RAISE EXCEPTION 'read-only for now' USING ERRCODE = 'read_only_sql_transaction';
                 END IF;
                 RETURN NEW;
             END $$;
             CREATE TRIGGER refuse_when_asked BEFORE UPDATE ON connective_head
                 FOR EACH ROW EXECUTE FUNCTION refuse_when_asked();
             INSERT INTO refusing VALUES ('failover');",
        )
        .expect("the refusing trigger");
    let p = test_kit::unique_project("kept");
    let refused = writer.commit(&Batch {
        writes: vec![Write::put(
            test_kit::sample_connection(&p, "a", "s"),
            Expect::Absent,
        )],
        token: None,
        audit: None,
    });
    assert!(refused.is_err(), "{refused:?}");
    admin
        .batch_execute("DELETE FROM refusing")
        .expect("writable again");

    // The next commit still wakes a follower whose poll is 30 s.
    let (start, seen, waited) = commit_while_waiting(&writer, &follower, &p, "a");
    assert!(seen > start, "the commit after the refusal announced nothing");
    assert!(
        waited < Duration::from_secs(5),
        "woke after {waited:?}: the refused commit turned NOTIFY off"
    );
}

#[test]
fn commits_on_a_database_without_notify_land_and_are_followed_by_polling() {
    let Some(db) = database("no_notify") else { return };
    // A Postgres-wire database without NOTIFY, as far as the store can
    // tell: in this schema `pg_notify` refuses, the way such servers do.
    db.client()
        .expect("a plain client")
        .batch_execute(
            "CREATE SCHEMA quiet;
             CREATE FUNCTION quiet.pg_notify(TEXT, TEXT) RETURNS VOID LANGUAGE plpgsql AS $$
             BEGIN
                 RAISE EXCEPTION 'NOTIFY is not supported' USING ERRCODE = 'feature_not_supported';
             END $$;",
        )
        .expect("the refusing pg_notify");
    let url = format!(
        "{} options=-csearch_path=quiet,pg_catalog",
        db.connection_string()
    );
    let writer = PostgresStore::connect(&url, ring()).expect("writer");
    let follower = PostgresStore::connect(&url, ring())
        .expect("follower")
        .with_poll_interval(Duration::from_millis(20));
    // The first commit meets the refusal inside its transaction: it is made
    // again without announcing itself, and consumes one revision only.
    let p = test_kit::unique_project("quiet");
    let start = writer.revision().expect("revision");
    let first = commit(
        &writer,
        vec![Write::put(
            test_kit::sample_connection(&p, "a", "s"),
            Expect::Absent,
        )],
    );
    let second = commit(
        &writer,
        vec![Write::put(
            test_kit::sample_connection(&p, "b", "s"),
            Expect::Absent,
        )],
    );
    assert_eq!(
        (first.revision, second.revision),
        (Revision(start.0 + 1), Revision(start.0 + 2))
    );
    test_kit::follower_sees_every_revision(&[&writer], &follower, 2, 5);
}

#[test]
fn no_secret_is_in_a_pg_dump() {
    let Some(db) = database("atrest") else { return };
    let store = db.open(ring()).expect("open");
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
    commit(
        &store,
        vec![Write::put(rich.clone(), Expect::Version(Version(1)))],
    );
    commit(
        &store,
        vec![Write::delete(svc.key(), Expect::Version(Version(1)))],
    );
    let dump = db.pg_dump().expect("pg_dump");
    assert!(
        contains(&dump, "https://api.example.com"),
        "the dump must show plain values (sanity check)"
    );
    assert!(
        contains(&dump, "cs1:k1:"),
        "sealed values are labelled with their key"
    );
    for s in secrets.iter().chain([&app_secret, &api_key]) {
        assert!(!contains(&dump, s), "a secret value is in plaintext in pg_dump");
    }
    let (_, got) = store.get(&app.key()).expect("get").expect("present");
    assert!(test_kit::same_record(&got, &app));
}

#[test]
fn wrong_key_missing_key_and_reseal() {
    let Some(db) = database("keys") else { return };
    let p = test_kit::unique_project("keys");
    let secret = test_kit::unique_secret("s");
    let record = test_kit::sample_connection(&p, "svc", &secret);
    let other = test_kit::sample_connection(&p, "other", &test_kit::unique_secret("s"));
    {
        let store = db.open(ring()).expect("open");
        commit(&store, vec![Write::put(record.clone(), Expect::Absent)]);
        commit(&store, vec![Write::put(other.clone(), Expect::Absent)]);
        commit(
            &store,
            vec![Write::delete(other.key(), Expect::Version(Version(1)))],
        );
    }
    // A ring without the key: the load reports what it cannot read.
    let missing = db.open(KeyRing::new(key("k2", 2))).expect("open without k1");
    let snapshot = missing.load().expect("a load reports what it cannot read");
    assert!(snapshot.records.is_empty());
    assert_eq!(snapshot.unreadable.len(), 1);
    let lost = &snapshot.unreadable[0];
    assert_eq!((&lost.key, lost.key_id.as_deref()), (&record.key(), Some("k1")));
    let message = lost.error.to_string();
    assert!(
        message.contains("\"k1\"") && message.contains("does not hold") && !message.contains(&secret),
        "{message}"
    );
    let (_, message) = unreadable_message(missing.get(&record.key()).expect_err("get without the key"));
    assert!(message.contains("\"k1\""), "{message}");
    let feed = missing
        .changes_since(Revision(0), 10)
        .expect("the feed, with what it cannot read");
    assert!(
        matches!(&feed[0].change, Changed::Unreadable(u)
            if u.key_id.as_deref() == Some("k1") && u.error.to_string().contains("change feed")),
        "{:?}",
        feed[0]
    );
    assert!(matches!(feed[2].change, Changed::Deleted));
    assert!(
        matches!(missing.reseal(), Err(StoreError::Unreadable { .. })),
        "re-seal without the key must fail"
    );
    drop(missing);
    // Different bytes under k1: refused at open, before anything is read or sealed.
    let wrong = db
        .open(KeyRing::new(key("k1", 7)))
        .expect_err("a wrong k1 is refused");
    assert!(
        matches!(&wrong, StoreError::KeyMismatch { key_id, .. } if key_id == "k1"),
        "{wrong}"
    );

    let head = db.open(ring()).expect("open").revision().expect("revision");
    let rotated = db
        .open(
            KeyRing::new(key("k2", 2))
                .with_old_key(key("k1", 1))
                .expect("ring"),
        )
        .expect("open");
    let done = rotated.reseal().expect("reseal");
    assert_eq!((done.records, done.changes), (1, 2));
    assert_eq!(
        rotated.revision().expect("revision"),
        head,
        "a re-seal is not a write"
    );
    drop(rotated);
    let only_new = db.open(KeyRing::new(key("k2", 2))).expect("open with only k2");
    let snapshot = only_new.load().expect("load with only the new key");
    assert_eq!(snapshot.records.len(), 1);
    assert!(test_kit::same_record(&snapshot.records[0].1, &record));
    assert_eq!(only_new.changes_since(Revision(0), 10).expect("feed").len(), 3);
    let dump = db.pg_dump().expect("pg_dump");
    assert!(
        contains(&dump, "cs1:k2:") && !contains(&dump, "cs1:k1:"),
        "values under the retired key remain"
    );
}

#[test]
fn a_schema_newer_than_the_code_is_refused() {
    let Some(db) = database("schema") else { return };
    drop(db.open(ring()).expect("create the schema"));
    let mut client = db.client().expect("client");
    let newer = connective::store::POSTGRES_SCHEMA_VERSION as i32 + 1;
    client
        .execute("UPDATE connective_schema SET version = $1", &[&newer])
        .expect("bump");
    let (what, message) = unreadable_message(db.open(ring()).expect_err("a newer schema must be refused"));
    assert!(message.contains("newer than this code"), "{message}");
    assert!(what.contains("schema"), "{what}");
}

#[test]
fn replicas_starting_together_migrate_once() {
    let Some(db) = database("migrate") else { return };
    let url = db.connection_string();
    let stores: Vec<Result<PostgresStore, StoreError>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| s.spawn(|| PostgresStore::connect(&url, ring())))
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for s in &stores {
        assert!(
            s.is_ok(),
            "a replica failed to start: {:?}",
            s.as_ref().err().map(ToString::to_string)
        );
    }
    let mut client = db.client().expect("client");
    let v: i32 = client
        .query_one("SELECT version FROM connective_schema", &[])
        .expect("version")
        .get(0);
    assert_eq!(v as u32, connective::store::POSTGRES_SCHEMA_VERSION);
}

#[test]
fn pruned_feed_reports_truncation() {
    let Some(db) = database("prune") else { return };
    let store = db.open(ring()).expect("open");
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
    match store.changes_since(Revision(0), 10) {
        Err(StoreError::FeedTruncated { requested, oldest }) => {
            assert_eq!((requested, oldest), (Revision(0), Revision(4)));
        }
        other => panic!("expected FeedTruncated, got {other:?}"),
    }
    assert_eq!(store.changes_since(Revision(3), 10).expect("kept").len(), 2);
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

/// A batch of two writes (the first in `p`, the second in `refused`) with a
/// token and an audit note.
fn two_writes(p: &ProjectId, refused: &ProjectId, token: u128) -> Batch {
    let actor: connective::model::ActorId = "tests:pipeline".parse().expect("an actor");
    Batch {
        writes: vec![
            Write::put(test_kit::sample_connection(p, "first", "s"), Expect::Absent),
            Write::put(
                test_kit::sample_connection(refused, "second", "s"),
                Expect::Absent,
            ),
        ],
        token: Some(CommitToken::new(token)),
        audit: Some(connective::model::AuditNote {
            actor,
            at: connective::model::Timestamp(1_000),
        }),
    }
}

#[test]
fn a_write_refused_by_the_server_mid_batch_writes_nothing_and_consumes_no_revision() {
    let Some(db) = database("refused_write") else {
        return;
    };
    let store = db.open(ring()).expect("open");
    let mut admin = db.client().expect("a plain client");
    // Rows of keys containing the text in `refused` are refused by the
    // server, as a constraint or a full disk refuses a statement, while the
    // statements before it in the commit went through.
    admin
        .batch_execute(
            "CREATE TABLE refused (needle TEXT);
             CREATE FUNCTION refuse_needle() RETURNS TRIGGER LANGUAGE plpgsql AS $$
             BEGIN
                 IF EXISTS (SELECT 1 FROM refused WHERE strpos(NEW.key, needle) > 0) THEN
                     RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation';
                 END IF;
                 RETURN NEW;
             END $$;",
        )
        .expect("the refusing function");
    // The records (the statement after the token and the audit entry), then
    // the change feed (after the records too).
    for (token, table, context) in [
        (7, "connective_records", "cannot write a record"),
        (8, "connective_changes", "cannot write the change feed"),
    ] {
        let p = test_kit::unique_project("pipe-kept");
        let refused = test_kit::unique_project("pipe-refused");
        admin
            .batch_execute(&format!(
                "DELETE FROM refused;
                 INSERT INTO refused VALUES ('{refused}');
                 CREATE TRIGGER refuse_needle BEFORE INSERT OR UPDATE ON {table}
                     FOR EACH ROW EXECUTE FUNCTION refuse_needle();",
                refused = refused.as_str()
            ))
            .expect("the refusing trigger");
        let start = store.revision().expect("revision");
        let batch = two_writes(&p, &refused, token);
        let message = store.commit(&batch).expect_err("a refused write").to_string();
        // The first failure, with its context: not the statements after it
        // failing in the aborted transaction.
        assert!(
            message.contains(context) && message.contains("refused by the test (SQLSTATE 23514)"),
            "{table}: {message}"
        );
        // Nothing of the batch: no record, no change, no token, no audit
        // entry, no revision.
        assert_eq!(store.revision().expect("revision"), start, "{table}");
        assert!(
            store.changes_since(start, 10).expect("feed").is_empty(),
            "{table}"
        );
        let first = test_kit::sample_connection(&p, "first", "s").key();
        assert!(store.get(&first).expect("get").is_none(), "{table}");
        assert_eq!(
            store.find_commit(CommitToken::new(token), start).expect("find"),
            None,
            "{table}"
        );
        let trail = store
            .audit(&connective::model::AuditQuery::all().by("tests:pipeline".parse().expect("actor")))
            .expect("audit");
        assert!(
            trail.iter().all(|e| e.revision() != Some(Revision(start.0 + 1))),
            "{table}"
        );

        // The connection is usable and the same batch lands, at the next
        // revision, with its token and its audit entry.
        admin
            .batch_execute(&format!("DROP TRIGGER refuse_needle ON {table}"))
            .expect("drop the trigger");
        let committed = store.commit(&batch).expect("the batch, allowed");
        assert_eq!(committed.revision, Revision(start.0 + 1), "{table}");
        assert_eq!(committed.versions, vec![Version(1), Version(1)], "{table}");
        assert_eq!(
            store.find_commit(CommitToken::new(token), start).expect("find"),
            Some(committed.clone()),
            "{table}"
        );
        assert_eq!(store.changes_since(start, 10).expect("feed").len(), 2, "{table}");
        let trail = store
            .audit(&connective::model::AuditQuery::all().by("tests:pipeline".parse().expect("actor")))
            .expect("audit");
        assert!(
            trail.iter().any(|e| e.revision() == Some(committed.revision)),
            "{table}"
        );
    }
}

#[test]
fn a_conflict_on_the_second_write_writes_nothing_and_names_its_key() {
    let Some(db) = database("second_conflict") else {
        return;
    };
    let store = db.open(ring()).expect("open");
    let p = test_kit::unique_project("second");
    let taken = test_kit::sample_connection(&p, "taken", "s");
    commit(&store, vec![Write::put(taken.clone(), Expect::Absent)]);
    let start = store.revision().expect("revision");
    let fresh = test_kit::sample_connection(&p, "fresh", "s");
    let e = store
        .commit(&Batch {
            writes: vec![
                Write::put(fresh.clone(), Expect::Absent),
                Write::put(taken.clone(), Expect::Absent),
            ],
            token: Some(CommitToken::new(9)),
            audit: None,
        })
        .expect_err("a conflict");
    match &e {
        StoreError::Conflict { key, .. } => assert_eq!(key, &taken.key(), "{e}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(e.to_string().contains(&taken.key().to_string()), "{e}");
    assert_eq!(store.revision().expect("revision"), start);
    assert!(store.get(&fresh.key()).expect("get").is_none());
    assert_eq!(store.find_commit(CommitToken::new(9), start).expect("find"), None);
    // The connection went back clean: the next commit takes the next
    // revision.
    let next = commit(&store, vec![Write::put(fresh, Expect::Absent)]);
    assert_eq!(next.revision, Revision(start.0 + 1));
}

#[test]
fn server_going_away_is_unavailable_and_the_store_recovers() {
    let cluster = match PgCluster::start() {
        Ok(c) => c,
        Err(reason) => return unavailable(&reason),
    };
    cluster.create_database("faults").expect("create database");
    let url = cluster.connection_string("faults");
    let store = PostgresStore::connect(&url, ring()).expect("open");
    let follower = PostgresStore::connect(&url, ring()).expect("follower");
    let p = test_kit::unique_project("faults");
    let a = test_kit::sample_connection(&p, "a", "s");
    commit(&store, vec![Write::put(a.clone(), Expect::Absent)]);
    assert_eq!(
        follower
            .wait_for_change(Revision(0), Duration::from_secs(5))
            .expect("wait"),
        Revision(1)
    );

    cluster.stop().expect("stop the server");
    let b = test_kit::sample_connection(&p, "b", "s");
    let started = Instant::now();
    for result in [
        store
            .commit(&Batch {
                writes: vec![Write::put(b.clone(), Expect::Absent)],
                token: None,
                audit: None,
            })
            .map(|_| ()),
        store.get(&a.key()).map(|_| ()),
        store.load().map(|_| ()),
        store.changes_since(Revision(0), 10).map(|_| ()),
        follower
            .wait_for_change(Revision(1), Duration::from_millis(300))
            .map(|_| ()),
    ] {
        match result {
            Err(StoreError::Unavailable {
                backend: "postgres",
                message,
            }) => {
                assert!(!message.contains("password"), "{message}");
            }
            other => panic!("expected Unavailable while the server is down, got {other:?}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "calls hung while the server was down"
    );

    cluster.start_again().expect("restart the server");
    let c = store
        .commit(&Batch {
            writes: vec![Write::put(b.clone(), Expect::Absent)],
            token: None,
            audit: None,
        })
        .expect("the store reconnects when the server is back");
    assert_eq!(
        c.revision,
        Revision(2),
        "the failed commit must not have consumed a revision"
    );
    assert_eq!(
        follower
            .wait_for_change(Revision(1), Duration::from_secs(10))
            .expect("wait"),
        Revision(2)
    );
    let snapshot = follower.load().expect("load");
    assert_eq!(snapshot.records.len(), 2);
    test_kit::versions_and_conflicts(&store);
}

#[test]
fn calls_from_inside_a_tokio_runtime_do_not_panic() {
    let Some(db) = database("tokio") else { return };
    let url = db.connection_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // Directly inside the runtime (discouraged: it blocks the executor thread).
    let store = rt
        .block_on(async { PostgresStore::connect(&url, ring()) })
        .expect("connect inside a runtime");
    let store = std::sync::Arc::new(store);
    let p = test_kit::unique_project("tokio");
    let rec = test_kit::sample_connection(&p, "t", "s");
    let s2 = store.clone();
    let rev = rt
        .block_on(async move {
            s2.commit(&Batch {
                writes: vec![Write::put(rec, Expect::Absent)],
                token: None,
                audit: None,
            })
        })
        .expect("commit inside a runtime")
        .revision;
    // The recommended way: spawn_blocking.
    let s3 = store.clone();
    let seen = rt
        .block_on(async move { tokio::task::spawn_blocking(move || s3.revision()).await })
        .expect("join")
        .expect("revision through spawn_blocking");
    assert_eq!(seen, rev);
    // Dropping the last handle inside the runtime must not panic either.
    rt.block_on(async move { drop(store) });
}

#[test]
fn connection_settings_come_from_the_string_and_never_show_the_password() {
    let err = PostgresStore::connect(
        "host=127.0.0.1 port=1 user=nobody password=hunter2-not-shown dbname=x connect_timeout=1",
        ring(),
    )
    .expect_err("nothing listens on port 1");
    match err {
        StoreError::Unavailable { message, .. } => {
            assert!(message.contains("127.0.0.1:1/x"), "{message}");
            assert!(!message.contains("hunter2-not-shown"), "{message}");
        }
        other => panic!("expected Unavailable, got {other}"),
    }
    assert!(matches!(
        PostgresStore::connect("host=", ring()),
        Err(StoreError::Unavailable { .. })
    ));
}

/// A host's "no limit" for the pool's size and the statement timeout
/// (`usize::MAX`, `Duration::MAX`, or just more than PostgreSQL counts in
/// milliseconds) gives a working store, not a panic at connect or a server
/// refusing every connection.
#[test]
fn settings_without_limits_give_a_working_store() {
    let Some(db) = database("no_limits") else { return };
    for (size, timeout) in [
        (usize::MAX, Duration::MAX),
        (1 << 40, Duration::from_secs(30 * 24 * 3600)),
        (1, Duration::from_millis(i32::MAX as u64 + 1)),
    ] {
        let store = PostgresSettings::from_connection_string(&db.connection_string())
            .expect("settings")
            .pool_size(size)
            .statement_timeout(timeout)
            .pool_timeout(Duration::MAX)
            .connect(ring())
            .unwrap_or_else(|e| panic!("pool size {size}, statement timeout {timeout:?}: {e}"));
        let p = test_kit::unique_project("no-limits");
        let record = test_kit::sample_connection(&p, "c", "s");
        commit(&store, vec![Write::put(record.clone(), Expect::Absent)]);
        let loaded = store.load().expect("load").records;
        assert!(loaded.iter().any(|(_, r)| r.key() == record.key()));
    }
}
