//! The PostgreSQL store through its async calls, as tokio hosts use it: the
//! conformance suite on the async calls, blocking and async replicas on one
//! database, many writers on a small pool, registries writing and following
//! on tasks, a store on the host's own pool, connect and statement
//! deadlines, an outage and the recovery, secrets sealed at rest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connective::model::Revision;
use connective::prelude::*;
use connective::registry::FollowStatus;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{
    AsyncStore, Batch, Expect, PostgresSettings, PostgresStore, Store, StoreError, Write,
};
use connective::test_kit::postgres::{PgCluster, TestDatabase, database, unavailable};
use connective::test_kit::{self, AsyncAsBlocking};

use crate::support::crm::{crm, crm_key, orders};

fn ring() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("k1", &[5; 32]).expect("key"))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A `deadpool-postgres` pool on `db` as a host builds its own: no TLS, no
/// statement timeout, the `PG*` variables filling in the connection string.
fn host_pool(db: &TestDatabase, size: usize) -> deadpool_postgres::Pool {
    let mut config: tokio_postgres::Config = db.connection_string().parse().expect("config");
    if config.get_hosts().is_empty() {
        config.host(std::env::var("PGHOST").unwrap_or_else(|_| "localhost".into()));
    }
    if let Some(port) = std::env::var("PGPORT").ok().and_then(|p| p.parse().ok())
        && config.get_ports().is_empty()
    {
        config.port(port);
    }
    if config.get_user().is_none() {
        config.user(std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()));
    }
    let manager = deadpool_postgres::Manager::new(config, tokio_postgres::NoTls);
    deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .expect("host pool")
}

async fn eventually(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "{what}: not within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

#[test]
fn the_async_calls_pass_the_conformance_suite() {
    let Some(db) = database("async_kit") else { return };
    let rt = runtime();
    let store = rt
        .block_on(PostgresStore::connect_async(&db.connection_string(), ring()))
        .expect("connect");
    test_kit::run_all_async(Arc::new(store), rt.handle().clone());
}

#[test]
fn a_blocking_and_an_async_replica_share_one_database() {
    let Some(db) = database("async_mixed") else { return };
    let rt = runtime();
    let blocking = db.open(ring()).expect("blocking store");
    let shared: Arc<dyn AsyncStore> = Arc::new(
        rt.block_on(PostgresStore::connect_async(&db.connection_string(), ring()))
            .expect("async store"),
    );
    let asynchronous = AsyncAsBlocking::new(shared, rt.handle().clone());
    test_kit::concurrent_writers(&[&blocking, &asynchronous], 3, 15);
    test_kit::racing_creators(&[&blocking, &asynchronous], 3);
    test_kit::follower_sees_every_revision(&[&blocking, &asynchronous], &asynchronous, 2, 15);
    test_kit::follower_sees_every_revision(&[&asynchronous], &blocking, 2, 15);
}

#[test]
fn a_thousand_async_writers_on_a_pool_of_eight_all_commit() {
    let Some(db) = database("async_pool") else { return };
    let rt = runtime();
    rt.block_on(async {
        let store = PostgresSettings::from_connection_string(&db.connection_string())
            .expect("settings")
            .pool_size(8)
            .connect_async(ring())
            .await
            .expect("connect");
        let store = Arc::new(store);
        let took = test_kit::concurrent_async_writers(store.clone(), 1000).await;
        eprintln!("1,000 async commits on a pool of 8: {took:?}");
        let status = store.pool_status();
        assert_eq!(status.max_size, 8);
        assert!(status.size <= 8, "the pool grew past its size: {status:?}");
    });
}

#[test]
fn async_registries_write_and_follow_on_one_database() {
    let Some(db) = database("async_registries") else {
        return;
    };
    let url = db.connection_string();
    let rt = runtime();
    rt.block_on(async {
        let open = || async {
            let store = PostgresStore::connect_async(&url, ring()).await.expect("connect");
            Arc::new(
                Registry::builder()
                    .async_store(store)
                    .build_async()
                    .await
                    .expect("registry"),
            )
        };
        let (a, b) = (open().await, open().await);
        assert!(b.async_store().is_some());
        let follower = b.follow_async(Duration::from_secs(5));
        let mut status = follower.subscribe();

        let (id, report) = a
            .create_connection_async(crm("key-one"))
            .await
            .expect("create on a");
        a.set_mappings_async(orders(), None).await.expect("mappings on a");
        let took = eventually("b resolves a's write", Duration::from_secs(10), || {
            crm_key(&b).as_deref() == Some("key-one")
        })
        .await;
        // Woken by NOTIFY through the async client: its poll is 5 s.
        assert!(took < Duration::from_secs(4), "propagation took {took:?}");
        // The follower reports what it reached once its look is done, just
        // after the write became visible: its status catches up.
        eventually("b's follower reports the write's revision", Duration::from_secs(10), || {
            matches!(follower.status(), FollowStatus::Following { revision } if revision > report.revision)
        })
        .await;
        assert!(follower.last_error().is_none());

        // Back the other way through the blocking sync of an async registry.
        let version = b
            .connection(&"acme".parse().expect("project"), id)
            .expect("on b")
            .version;
        b.update_connection_async(id, version, crm("key-two"))
            .await
            .expect("update on b");
        assert_eq!(a.sync_async().await.expect("sync a"), b.catalog().revision());
        assert_eq!(crm_key(&a).as_deref(), Some("key-two"));

        // Dropping the follower stops its task: the status sender goes away.
        status.borrow_and_update();
        drop(follower);
        tokio::time::timeout(Duration::from_secs(5), async {
            while status.changed().await.is_ok() {}
        })
        .await
        .expect("the follower's task did not stop");
    });
}

#[test]
fn a_commit_its_caller_gave_up_on_leaves_its_connection_clean() {
    let Some(db) = database("given_up") else { return };
    let rt = runtime();
    // One pooled connection: the commit after the one given up runs on it.
    let store = rt
        .block_on(
            PostgresSettings::from_connection_string(&db.connection_string())
                .expect("settings")
                .pool_size(1)
                .connect_async(ring()),
        )
        .expect("store");
    let p = test_kit::unique_project("given-up");
    let put = |name: &str| Batch {
        writes: vec![Write::put(
            test_kit::sample_connection(&p, name, "s"),
            Expect::Absent,
        )],
        token: None,
        audit: None,
    };
    let start = rt.block_on(AsyncStore::revision(&store)).expect("revision");
    // Another session holds the head row: the commit's transaction waits
    // for it, and its caller stops waiting (a request handler cancelled).
    let mut holder = db.client().expect("client");
    holder
        .batch_execute("BEGIN; SELECT revision FROM connective_head WHERE id = 1 FOR UPDATE")
        .expect("lock");
    let batch = put("given-up");
    let given_up = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(300), AsyncStore::commit(&store, &batch)).await
    });
    assert!(given_up.is_err(), "{given_up:?}");
    holder.batch_execute("COMMIT").expect("unlock");

    // The given-up transaction was rolled back, not left open on the
    // pooled connection for the next commit to join.
    let next = rt
        .block_on(AsyncStore::commit(&store, &put("next")))
        .expect("the next commit");
    assert_eq!(next.revision, Revision(start.0 + 1));
    let gone = test_kit::sample_connection(&p, "given-up", "s").key();
    assert!(
        rt.block_on(AsyncStore::get(&store, &gone))
            .expect("get")
            .is_none()
    );
    let mut looker = db.client().expect("client");
    let open: i64 = looker
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'",
            &[],
        )
        .expect("activity")
        .get(0);
    assert_eq!(open, 0, "a transaction was left open");
}

#[test]
fn a_statement_held_up_by_a_lock_times_out_typed_and_retryable() {
    let Some(db) = database("async_timeout") else {
        return;
    };
    let rt = runtime();
    let p = test_kit::unique_project("timeout");
    let record = test_kit::sample_connection(&p, "held", "s");
    let batch = Batch {
        writes: vec![Write::put(record.clone(), Expect::Absent)],
        token: None,
        audit: None,
    };
    // The schema is created first, without the short timeout: on a loaded
    // machine creating it took longer than 400 ms once.
    drop(
        PostgresSettings::from_connection_string(&db.connection_string())
            .expect("settings")
            .connect(ring())
            .expect("schema"),
    );
    let settings = PostgresSettings::from_connection_string(&db.connection_string())
        .expect("settings")
        .statement_timeout(Duration::from_millis(400));
    // The store's own pool: the server's statement_timeout cancels it.
    let own = settings.clone().connect(ring()).expect("own pool");
    // A host's pool whose connections have no statement_timeout: the
    // store's deadline cancels it from the client side.
    let host_pool = host_pool(&db, 2);
    let hosted = rt
        .block_on(settings.connect_with_pool(host_pool, ring()))
        .expect("host pool store");

    // Another session holds the head row: every commit waits for it.
    let mut holder = db.client().expect("client");
    holder
        .batch_execute("BEGIN; SELECT revision FROM connective_head WHERE id = 1 FOR UPDATE")
        .expect("lock");
    let started = Instant::now();
    let e = Store::commit(&own, &batch).expect_err("the commit must time out");
    assert!(matches!(e, StoreError::Timeout { .. }), "{e:?}");
    assert!(e.is_retryable());
    let e = rt
        .block_on(AsyncStore::commit(&hosted, &batch))
        .expect_err("the commit must time out");
    assert!(matches!(e, StoreError::Timeout { .. }), "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the timeouts took {:?}",
        started.elapsed()
    );
    // Both waiting statements were cancelled on the server.
    let mut looker = db.client().expect("client");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let waiting: i64 = looker
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
                &[],
            )
            .expect("activity")
            .get(0);
        if waiting == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} statements still wait for the lock"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Released, the same commit goes through (retryable indeed).
    holder.batch_execute("ROLLBACK").expect("unlock");
    Store::commit(&own, &batch).expect("commit after the lock is gone");
    assert!(
        Store::get(&own, &record.key()).expect("get").is_some(),
        "the retried commit is not there"
    );
}

#[test]
fn the_async_follower_reports_an_outage_and_recovers() {
    let cluster = match PgCluster::start() {
        Ok(c) => c,
        Err(reason) => return unavailable(&reason),
    };
    cluster.create_database("outage").expect("database");
    let url = cluster.connection_string("outage");
    let rt = runtime();
    rt.block_on(async {
        let open = || async {
            let store = PostgresSettings::from_connection_string(&url)
                .expect("settings")
                .connect_timeout(Duration::from_secs(1))
                .statement_timeout(Duration::from_secs(2))
                .connect_async(ring())
                .await
                .expect("connect");
            Arc::new(
                Registry::builder()
                    .async_store(store)
                    .build_async()
                    .await
                    .expect("registry"),
            )
        };
        let (a, b) = (open().await, open().await);
        let follower = b.follow_async(Duration::from_millis(200));
        a.create_connection_async(crm("before")).await.expect("write");
        a.set_mappings_async(orders(), None).await.expect("mappings");
        eventually("b follows", Duration::from_secs(10), || crm_key(&b).is_some()).await;

        cluster.stop().expect("stop");
        let mut status = follower.subscribe();
        let seen = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let FollowStatus::Retrying { error, attempt, .. } = status.borrow_and_update().clone() {
                    return (error, attempt);
                }
                status.changed().await.expect("follower alive");
            }
        })
        .await
        .expect("the outage was not reported");
        assert!(seen.0.is_retryable(), "{:?}", seen.0);
        assert!(
            matches!(
                seen.0,
                RegistryError::Store(StoreError::Unavailable { .. } | StoreError::Timeout { .. })
            ),
            "{:?}",
            seen.0
        );
        // Resolution keeps working from the catalog meanwhile.
        assert_eq!(crm_key(&b).as_deref(), Some("before"));
        let e = a
            .create_connection_async(ConnectionSpec::project("acme", "down").build().expect("spec"))
            .await
            .expect_err("no database");
        assert!(e.is_retryable(), "{e:?}");

        cluster.start_again().expect("start");
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if matches!(*status.borrow_and_update(), FollowStatus::Following { .. }) {
                    return;
                }
                status.changed().await.expect("follower alive");
            }
        })
        .await
        .expect("the follower did not recover");
        let id = a
            .snapshot(&"acme".parse().expect("project"))
            .and_then(|s| s.by_name(None, &"crm".parse().expect("name")).cloned())
            .expect("crm");
        a.update_connection_async(id.value.id(), id.version, crm("after"))
            .await
            .expect("write after recovery");
        eventually("b follows after recovery", Duration::from_secs(10), || {
            crm_key(&b).as_deref() == Some("after")
        })
        .await;
        // B's store listens again (every session before the restart is
        // gone): later commits wake B through NOTIFY, not its polling.
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("look at the server");
        tokio::spawn(connection);
        let listening = async || -> i64 {
            client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND query = 'LISTEN connective_feed'",
                    &[],
                )
                .await
                .expect("activity")
                .get(0)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while listening().await != 1 {
            assert!(
                Instant::now() < deadline,
                "b's store does not listen after the recovery"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
}

#[test]
fn async_writes_are_sealed_at_rest() {
    let Some(db) = database("async_sealed") else {
        return;
    };
    let secret = test_kit::unique_secret("async-sealed");
    let rt = runtime();
    rt.block_on(async {
        let store = PostgresStore::connect_async(&db.connection_string(), ring())
            .await
            .expect("connect");
        let registry = Registry::builder()
            .async_store(store)
            .build_async()
            .await
            .expect("registry");
        registry
            .create_connection_async(crm(&secret))
            .await
            .expect("write");
        registry
            .set_mappings_async(orders(), None)
            .await
            .expect("mappings");
        assert_eq!(crm_key(&registry).as_deref(), Some(secret.as_str()));
    });
    let dump = db.pg_dump().expect("pg_dump");
    assert!(
        !dump.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "a secret is in the clear in the database"
    );
    // Another replica with the key reads it back.
    let again = Registry::builder()
        .store(db.open(ring()).expect("reopen"))
        .build()
        .expect("registry");
    assert_eq!(crm_key(&again).as_deref(), Some(secret.as_str()));
}

#[test]
fn connecting_to_a_server_that_never_answers_times_out_typed() {
    // The kernel completes the TCP handshake for a listening socket nobody
    // accepts on: the client is connected, and no answer ever comes (a hung
    // server, or a proxy whose database is gone).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let params = format!("host=127.0.0.1 port={port} user=app password=hunter2-not-shown dbname=x");

    let started = Instant::now();
    let e = PostgresSettings::from_connection_string(&params)
        .expect("settings")
        .connect_timeout(Duration::from_millis(300))
        .connect(ring())
        .expect_err("nobody answers");
    let took = started.elapsed();
    assert!(matches!(e, StoreError::Timeout { .. }), "{e:?}");
    assert!(e.is_retryable(), "{e:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "took {took:?} with a connect timeout of 300 ms"
    );
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}/x")), "{e}");
    assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");

    // `connect_timeout` of the connection string (seconds, as libpq reads
    // it), on an async host; the default would be 5 s.
    let rt = runtime();
    let started = Instant::now();
    let e = rt
        .block_on(PostgresStore::connect_async(
            &format!("{params} connect_timeout=1"),
            ring(),
        ))
        .expect_err("nobody answers");
    let took = started.elapsed();
    assert!(matches!(e, StoreError::Timeout { .. }), "{e:?}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "took {took:?} with connect_timeout=1"
    );
    drop(silent);
}

#[test]
fn a_store_on_the_hosts_pool_alone_follows_by_polling() {
    let Some(db) = database("host_pool_only") else {
        return;
    };
    let rt = runtime();
    rt.block_on(async {
        let pool = host_pool(&db, 3);
        let store = PostgresStore::from_pool(pool.clone(), ring())
            .await
            .expect("a store on the host's pool");
        assert_eq!(store.server(), "the host's pool");
        let b = Arc::new(
            Registry::builder()
                .async_store(store)
                .build_async()
                .await
                .expect("registry on the host's pool"),
        );
        let follower = b.follow_async(Duration::from_millis(100));
        let a = Arc::new(
            Registry::builder()
                .async_store(
                    PostgresStore::connect_async(&db.connection_string(), ring())
                        .await
                        .expect("connect"),
                )
                .build_async()
                .await
                .expect("registry"),
        );
        a.create_connection_async(crm("from-a"))
            .await
            .expect("write on a");
        a.set_mappings_async(orders(), None).await.expect("mappings on a");
        eventually("b polls a's write", Duration::from_secs(10), || {
            crm_key(&b).as_deref() == Some("from-a")
        })
        .await;
        // The follower reports what it reached once its look is done, just
        // after the write became visible: its status catches up.
        eventually("b's follower reports following", Duration::from_secs(10), || {
            matches!(follower.status(), FollowStatus::Following { .. })
        })
        .await;

        // B's statements ran on the host's pool, and nobody listens: without
        // connection settings the store cannot open a connection of its own.
        let status = pool.status();
        assert!(status.size >= 1 && status.max_size == 3, "{status:?}");
        let client = pool.get().await.expect("a pooled connection");
        let listening: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND query LIKE 'LISTEN%'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        assert_eq!(listening, 0);
        drop(client);

        // And B writes through it.
        let id = b
            .snapshot(&"acme".parse().expect("project"))
            .and_then(|s| s.by_name(None, &"crm".parse().expect("name")).cloned())
            .expect("crm on b");
        b.update_connection_async(id.value.id(), id.version, crm("from-b"))
            .await
            .expect("write on b");
        assert_eq!(a.sync_async().await.expect("sync a"), b.catalog().revision());
        assert_eq!(crm_key(&a).as_deref(), Some("from-b"));
    });
}
