//! How many round trips the PostgreSQL store's calls make, counted on the
//! wire by a proxy between the store and the server: a commit takes two
//! (blocking or async, alone or inside a registry's write, which adds one to
//! catch up), looking a commit up, appending reads to the audit trail and
//! pruning the feed one each, a re-seal two. Counted after each call was
//! made once, so the statements are prepared on the pooled connection; each
//! call is counted five times and the fewest count is its own (a count can
//! only come out high, on a loaded machine).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connective::model::{ActorId, ConnectionId, ReadField, ReadNote, Revision, Scope, SecretRead, Timestamp};
use connective::prelude::*;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{AsyncStore, Batch, CommitToken, Expect, PostgresStore, Store, Write as StoreWrite};
use connective::test_kit;
use connective::test_kit::postgres::{TestDatabase, database};

use crate::support::pg_wire::{Stream, Upstream, upstream_and_proxied};

fn ring() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("k1", &[5; 32]).expect("key"))
}

/// How long the proxy holds the server's answers back once the client has
/// sent something: statements a client pipelines reach the proxy within
/// microseconds of each other, so they all arrive before the first answer
/// is let through, and count as one flight however the client's writes
/// were split. A client that waits for an answer cannot send before it.
const HOLD: Duration = Duration::from_millis(20);

/// A TCP proxy that counts flights: a client's sending that follows an
/// answer of the server on the same connection (or opens the connection).
/// Every flight after the first on a connection is a round trip the client
/// waited for.
struct Proxy {
    port: u16,
    flights: Arc<AtomicUsize>,
}

impl Proxy {
    fn start(upstream: Upstream) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let flights = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&flights);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = Stream::connect(&upstream) else {
                    continue;
                };
                let counted = Arc::clone(&counted);
                std::thread::spawn(move || pump(client, server, counted));
            }
        });
        Proxy { port, flights }
    }

    /// Flights since the last call.
    fn take(&self) -> usize {
        self.flights.swap(0, Ordering::SeqCst)
    }
}

/// One connection: the client's bytes go on at once; the server's wait
/// until the client has sent nothing for [`HOLD`].
fn pump(client: TcpStream, server: Stream, flights: Arc<AtomicUsize>) {
    let (Ok(mut client_in), Ok(mut server_in)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let (mut client_out, mut server_out) = (client, server);
    let last_sent = Arc::new(Mutex::new(Instant::now()));
    // Whether the server answered since the client's last flight began.
    let answered = Arc::new(AtomicBool::new(true));
    let (sent, said) = (Arc::clone(&last_sent), Arc::clone(&answered));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_in.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            loop {
                let quiet = sent.lock().expect("lock").elapsed();
                if quiet >= HOLD {
                    break;
                }
                std::thread::sleep(HOLD - quiet);
            }
            said.store(true, Ordering::SeqCst);
            if client_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = client_out.shutdown(Shutdown::Both);
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match client_in.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        *last_sent.lock().expect("lock") = Instant::now();
        if answered.swap(false, Ordering::SeqCst) {
            flights.fetch_add(1, Ordering::SeqCst);
        }
        if server_out.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    server_out.shutdown(Shutdown::Write);
}

/// A proxy in front of `db`'s server, and a connection string to `db`
/// through it.
fn proxied(db: &TestDatabase) -> (Proxy, String) {
    let (upstream, params) = upstream_and_proxied(db);
    let proxy = Proxy::start(upstream);
    let params = params(proxy.port);
    (proxy, params)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A batch creating one new connection of `p`, with a token.
fn new_connection(p: &ProjectId, name: &str) -> (Batch, CommitToken) {
    let mut batch = Batch::new();
    batch.push(StoreWrite::put(
        test_kit::sample_connection(p, name, "s"),
        Expect::Absent,
    ));
    let token = CommitToken::random();
    batch.token = Some(token);
    (batch, token)
}

/// How many times each call is counted.
const TRIES: usize = 5;

/// Round trips of `op`, made [`TRIES`] times once it was made once.
fn round_trips_of(proxy: &Proxy, mut op: impl FnMut(usize)) -> Vec<usize> {
    op(0);
    proxy.take();
    (1..=TRIES)
        .map(|i| {
            op(i);
            proxy.take()
        })
        .collect()
}

/// Asserts that `op` takes `expected` round trips: the fewest of its
/// counts. A count can come out high, never low: a client descheduled for
/// longer than [`HOLD`] in the middle of a pipeline (a loaded machine) sends
/// the rest of it as a flight of its own. A call that took one round trip
/// more would count high every time.
fn assert_round_trips(proxy: &Proxy, expected: usize, what: &str, op: impl FnMut(usize)) {
    let counts = round_trips_of(proxy, op);
    assert_eq!(
        counts.iter().min(),
        Some(&expected),
        "{what}: {expected} round trips expected; counted {counts:?}"
    );
}

fn read_note(p: &ProjectId, n: u64) -> ReadNote {
    ReadNote {
        actor: "reader".parse::<ActorId>().expect("actor"),
        at: Timestamp(1_000 + n),
        read: SecretRead::Resolution {
            project: p.clone(),
            integration: "orders".parse().expect("integration"),
            environment: "production".parse().expect("environment"),
            customer: None,
            revision: Revision(n),
            fields: vec![ReadField {
                connection_id: ConnectionId::random(),
                connection: "svc".parse().expect("name"),
                scope: Scope::Project,
                param: "ApiKey".parse().expect("param"),
            }],
        },
    }
}

#[test]
fn the_blocking_store_commits_in_two_round_trips_and_looks_up_appends_and_prunes_in_one() {
    let Some(db) = database("round_trips") else { return };
    let (proxy, params) = proxied(&db);
    let store = PostgresStore::connect(&params, ring()).expect("connect through the proxy");
    let p = test_kit::unique_project("trips");
    let after = Store::revision(&store).expect("revision");
    let mut token = CommitToken::random();
    assert_round_trips(
        &proxy,
        2,
        "a commit: BEGIN, bump and read; the writes and COMMIT",
        |i| {
            let (batch, t) = new_connection(&p, &format!("c{i}"));
            Store::commit(&store, &batch).expect("commit");
            token = t;
        },
    );
    assert_round_trips(&proxy, 1, "a commit looked up", |_| {
        assert!(Store::find_commit(&store, token, after).expect("find").is_some());
    });
    assert_round_trips(&proxy, 1, "reads appended to the audit trail", |i| {
        let n = 10 * i as u64;
        Store::append_reads(&store, &[read_note(&p, n), read_note(&p, n + 1)]).expect("append");
    });
    assert_round_trips(&proxy, 1, "the feed pruned", |i| {
        store.prune_feed(Revision(i as u64 + 1)).expect("prune");
    });
    assert_round_trips(
        &proxy,
        2,
        "a re-seal: the bodies read; rewritten and COMMIT",
        |_| {
            let done = store.reseal().expect("reseal");
            assert!(done.records >= 4, "every record re-sealed: {done:?}");
        },
    );
}

#[test]
fn async_writes_make_the_round_trips_blocking_ones_make() {
    let Some(db) = database("round_trips_async") else {
        return;
    };
    let (proxy, params) = proxied(&db);
    let rt = runtime();
    let store = Arc::new(
        rt.block_on(PostgresStore::connect_async(&params, ring()))
            .expect("connect through the proxy"),
    );
    let p = test_kit::unique_project("trips");
    assert_round_trips(&proxy, 2, "an async commit", |i| {
        let (store, p) = (Arc::clone(&store), p.clone());
        rt.block_on(rt.spawn(async move {
            let (batch, _) = new_connection(&p, &format!("c{i}"));
            AsyncStore::commit(&*store, &batch).await
        }))
        .expect("task")
        .expect("commit");
    });

    // A registry's write: one round trip to catch up, then the commit;
    // blocking and async alike.
    let actor: ActorId = "service:host".parse().expect("actor");
    let blocking = Registry::builder()
        .store(PostgresStore::connect(&params, ring()).expect("blocking store"))
        .audit(actor.clone())
        .build()
        .expect("blocking registry");
    assert_round_trips(&proxy, 3, "a blocking registry's write", |i| {
        let spec = ConnectionSpec::project(p.as_str(), format!("b{i}").as_str())
            .build()
            .expect("spec");
        blocking.create_connection(spec).expect("blocking write");
    });
    let registry = Arc::new(
        rt.block_on(async {
            let store = PostgresStore::connect_async(&params, ring())
                .await
                .expect("async store");
            Registry::builder()
                .async_store(store)
                .audit(actor)
                .build_async()
                .await
        })
        .expect("async registry"),
    );
    assert_round_trips(&proxy, 3, "an async registry's write", |i| {
        let (registry, p) = (Arc::clone(&registry), p.clone());
        rt.block_on(rt.spawn(async move {
            let spec = ConnectionSpec::project(p.as_str(), format!("a{i}").as_str())
                .build()
                .expect("spec");
            registry.create_connection_async(spec).await
        }))
        .expect("task")
        .expect("async write");
    });
}
