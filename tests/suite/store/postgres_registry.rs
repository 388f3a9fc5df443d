//! Registries on one PostgreSQL database, as host replicas run them: a write
//! on one is resolved by the other once it follows the feed; racing writers
//! get exactly one winner; a registry keeps resolving while the database is
//! down and recovers when it returns.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use connective::prelude::*;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{PostgresStore, StoreError};
use connective::test_kit::postgres::{PgCluster, database, unavailable};

use crate::support::crm::{crm, crm_key, orders, request};

fn ring() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("k1", &[3; 32]).expect("key"))
}

fn registry(url: &str) -> Arc<Registry> {
    let store = PostgresStore::connect(url, ring()).expect("connect");
    Arc::new(Registry::builder().store(store).build().expect("registry"))
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

#[test]
fn a_write_on_one_replica_is_resolved_by_the_other() {
    let Some(db) = database("registry_follow") else {
        return;
    };
    let url = db.connection_string();
    let a = registry(&url);
    let b = registry(&url);
    let _follower = b.follow(Duration::from_secs(5));

    let (id, _) = a.create_connection(crm("key-one")).expect("create on a");
    a.set_mappings(orders(), None).expect("mappings on a");
    let took = wait_until("b resolves a's write", Duration::from_secs(10), || {
        crm_key(&b).as_deref() == Some("key-one")
    });
    // Measured with LISTEN/NOTIFY waking the follower (its poll is 5 s).
    eprintln!("propagation a -> b: {took:?}");
    assert!(
        took < Duration::from_secs(4),
        "propagation took {took:?}: the follower was not woken early"
    );
    let env = b.resolve(&request()).expect("resolve on b");
    assert_eq!(env.provenance("CRM_KEY").expect("provenance").connection_id, id);

    // And back: an update on b reaches a through sync().
    let version = b
        .connection(&"acme".parse().expect("project"), id)
        .expect("on b")
        .version;
    b.update_connection(id, version, crm("key-two"))
        .expect("update on b");
    a.sync().expect("sync a");
    assert_eq!(crm_key(&a).as_deref(), Some("key-two"));
}

#[test]
fn racing_writers_on_two_replicas_exactly_one_wins_each_round() {
    let Some(db) = database("registry_race") else {
        return;
    };
    let url = db.connection_string();
    let a = registry(&url);
    let b = registry(&url);
    let project: ProjectId = "acme".parse().expect("project");
    let (id, _) = a.create_connection(crm("key-0")).expect("create");
    a.set_mappings(orders(), None).expect("mappings");
    for round in 1..=8 {
        a.sync().expect("sync a");
        b.sync().expect("sync b");
        let va = a.connection(&project, id).expect("a sees it").version;
        let vb = b.connection(&project, id).expect("b sees it").version;
        assert_eq!(va, vb, "round {round}: the replicas disagree before racing");
        let barrier = Barrier::new(2);
        let (ra, rb) = std::thread::scope(|s| {
            let ta = s.spawn(|| {
                barrier.wait();
                a.update_connection(id, va, crm(&format!("a-{round}")))
            });
            let tb = s.spawn(|| {
                barrier.wait();
                b.update_connection(id, vb, crm(&format!("b-{round}")))
            });
            (ta.join().expect("thread a"), tb.join().expect("thread b"))
        });
        let winner = match (&ra, &rb) {
            (Ok(_), Err(RegistryError::Conflict { found, .. })) => {
                assert_eq!(
                    *found,
                    Some(Version(va.0 + 1)),
                    "round {round}: the loser saw {found:?}"
                );
                format!("a-{round}")
            }
            (Err(RegistryError::Conflict { found, .. }), Ok(_)) => {
                assert_eq!(
                    *found,
                    Some(Version(va.0 + 1)),
                    "round {round}: the loser saw {found:?}"
                );
                format!("b-{round}")
            }
            other => panic!("round {round}: expected exactly one winner and one conflict, got {other:?}"),
        };
        // Nothing lost: both replicas converge on the winner's write, one version up.
        a.sync().expect("sync a");
        b.sync().expect("sync b");
        for (name, r) in [("a", &a), ("b", &b)] {
            assert_eq!(
                r.connection(&project, id).expect("present").version,
                Version(va.0 + 1),
                "{name}"
            );
            assert_eq!(
                crm_key(r).as_deref(),
                Some(winner.as_str()),
                "round {round}: replica {name}"
            );
        }
    }
}

#[test]
fn a_registry_keeps_resolving_while_the_database_is_down_and_recovers() {
    let cluster = match PgCluster::start() {
        Ok(c) => c,
        Err(reason) => return unavailable(&reason),
    };
    cluster.create_database("registry").expect("create database");
    let url = cluster.connection_string("registry");
    let a = registry(&url);
    let b = registry(&url);
    let follower = b.follow(Duration::from_millis(100));
    let project: ProjectId = "acme".parse().expect("project");
    let (id, _) = a.create_connection(crm("before-outage")).expect("create");
    a.set_mappings(orders(), None).expect("mappings");
    wait_until("b follows", Duration::from_secs(10), || {
        crm_key(&b).as_deref() == Some("before-outage")
    });

    cluster.stop().expect("stop the server");
    // Writes fail with a typed, retryable error; reads keep working.
    let version = a.connection(&project, id).expect("present").version;
    let err = a
        .update_connection(id, version, crm("during-outage"))
        .expect_err("the database is down");
    assert!(
        matches!(err, RegistryError::Store(StoreError::Unavailable { .. })),
        "{err}"
    );
    assert!(err.is_retryable());
    for r in [&a, &b] {
        assert_eq!(
            crm_key(r).as_deref(),
            Some("before-outage"),
            "resolution must not need the database"
        );
    }
    wait_until("the follower reports the outage", Duration::from_secs(10), || {
        follower.last_error().is_some()
    });
    assert!(follower.is_running(), "the follower must survive the outage");

    cluster.start_again().expect("restart the server");
    // The failed write left nothing behind: the same version still applies.
    a.update_connection(id, version, crm("after-outage"))
        .expect("write after the server is back");
    wait_until("b catches up after the outage", Duration::from_secs(15), || {
        crm_key(&b).as_deref() == Some("after-outage")
    });
    wait_until("the follower clears its error", Duration::from_secs(10), || {
        follower.last_error().is_none()
    });
}
