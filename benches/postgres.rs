//! PostgreSQL figures (features `postgres` and `test-kit`):
//!
//! 1. Replica propagation, from a commit on replica A to the write being
//!    resolvable on replica B, p50 and p99: two registries on one database,
//!    each with its own `PostgresStore`; B follows the change feed (woken by
//!    `LISTEN/NOTIFY`, polling every 200 ms otherwise). A rewrites one of W's
//!    connections (a new `production` value of `ApiKey`); the clock runs
//!    from just before A's commit until B resolves W with the new value.
//!    Beside it, its two parts: A's own write (commit included), and the
//!    time from A's write returning until B resolves (the follower's part:
//!    A's commit has reached the server by then). Measured in one run:
//!    blocking registries with `Registry::follow` (a thread), and async
//!    registries on tokio with `Registry::follow_async` (a task), each pair
//!    on a database of its own, their writes interleaved so that both meet
//!    the same load. The async follower must do no worse than the blocking
//!    one.
//!
//!    Each replica writes the way its kind of host does: the blocking A on
//!    the calling thread, the async A's `update_connection_async` awaited
//!    inside a task on the runtime (a request handler), the bench's thread
//!    waiting for that task. (Awaited with `block_on` from the bench's own
//!    thread instead, each of the write's round trips crossed from that
//!    thread to a runtime worker and back, and woke the second, idle worker
//!    too: its median was 0.3 ms above the blocking write's, measured with
//!    `strace -f` and per-phase timestamps; no tokio host awaits its writes
//!    that way.) 1,000 writes each way (the p99 is then the 11th largest of
//!    each; with 300 it was the 4th, and on a shared 2-core machine a few
//!    descheduled writes moved the ratio from 0.67x to 1.59x between runs).
//! 2. 1,000 concurrent async writers, each to a connection of its own, on
//!    one pool of 8 connections: every write commits (no deadlock), and the
//!    throughput is set against the blocking store's (8 threads sharing one
//!    blocking store, same pool size), both through one registry (whose
//!    writer lock serializes its writes) and straight at the store. An
//!    async round that does not finish within two minutes counts as stuck.
//!
//! The server comes from `connective::test_kit::postgres`: the one the `PG*`
//! variables point at, or a throwaway cluster started for this run.
//!
//! ```text
//! cargo bench --features postgres,test-kit --bench postgres
//! CONNECTIVE_BENCH_QUICK=1 cargo bench --features postgres,test-kit --bench postgres
//! ```

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{figure, fmt_ns, median, ns, quantile, quick, w_request};
use connective::model::{
    AuthScheme, ConnectionId, ConnectionName, ConnectionSpec, Layer, Param, ParamName, ProjectId, Target,
};
use connective::prelude::{Registry, Resolver};
use connective::registry::{AsyncFollower, Follower};
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{AsyncStore, Batch, Expect, PostgresSettings, PostgresStore, Store, Write};
use connective::test_kit;
use connective::test_kit::postgres::TestDatabase;

fn keys() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("bench", &[7u8; 32]).expect("seal key"))
}

/// `svc00` of W with `ApiKey`'s production value set to `key`.
fn svc00(key: &str) -> ConnectionSpec {
    let c = common::w_connections().into_iter().next().expect("svc00");
    let mut b = ConnectionSpec::project(common::W_PROJECT, c.name.as_str())
        .target(Target::external(c.name.as_str()))
        .auth(AuthScheme::ApiKey);
    for (param, secret, default, prod) in &c.params {
        let mut p = if *secret {
            Param::secret(*param)
        } else {
            Param::plain(*param)
        };
        p = p.default(default.as_str());
        if let Some(prod) = prod {
            p = p.env("production", if *param == "ApiKey" { key } else { prod.as_str() });
        }
        b = b.param(p);
    }
    b.build().expect("spec")
}

/// How a replica writes and follows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Blocking,
    Async,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Two replicas on one database, B following A's writes: blocking
/// registries with a follower thread, or async ones with a follower task
/// on `rt`.
struct Replicas {
    mode: Mode,
    a: Arc<Registry>,
    b: Arc<Registry>,
    _thread: Option<Follower>,
    _task: Option<AsyncFollower>,
    /// Nanoseconds from just before A's commit to B resolving the write.
    propagation: Vec<f64>,
    /// Nanoseconds of A's write itself.
    commit: Vec<f64>,
}

/// One pair's figures, in nanoseconds: the propagation, A's write, and the
/// time from A's write returning until B resolves it.
struct Figures {
    p50: f64,
    p99: f64,
    write50: f64,
    write99: f64,
    after50: f64,
    after99: f64,
}

impl Replicas {
    /// Opens A (filling a fresh database with the filler connections and W)
    /// and B, and starts B's follower.
    fn open(db: &TestDatabase, mode: Mode, rt: &tokio::runtime::Runtime) -> Self {
        let open = || -> Arc<Registry> {
            Arc::new(match mode {
                Mode::Blocking => Registry::builder()
                    .store(db.open(keys()).expect("store"))
                    .build()
                    .expect("registry"),
                Mode::Async => rt.block_on(async {
                    let store = PostgresStore::connect_async(&db.connection_string(), keys())
                        .await
                        .expect("store");
                    Registry::builder()
                        .async_store(store)
                        .build_async()
                        .await
                        .expect("registry")
                }),
            })
        };
        let a = open();
        common::fill_store(a.store().as_ref(), common::PER_PROJECT);
        a.sync().expect("sync A");
        common::add_w(&a);
        let b = open();
        let poll = Duration::from_millis(200);
        let _thread = (mode == Mode::Blocking).then(|| b.follow(poll));
        let _task = (mode == Mode::Async).then(|| {
            let _runtime = rt.enter();
            b.follow_async(poll)
        });
        Replicas {
            mode,
            a,
            b,
            _thread,
            _task,
            propagation: Vec::new(),
            commit: Vec::new(),
        }
    }

    /// A's `k`-th write of a new `ApiKey`, timed until B resolves it.
    fn write(&mut self, k: usize, rt: &tokio::runtime::Runtime) {
        let project: ProjectId = common::W_PROJECT.parse().expect("project");
        let name: ConnectionName = "svc00".parse().expect("name");
        let c = self
            .a
            .snapshot(&project)
            .and_then(|s| s.by_name(None, &name).cloned())
            .expect("svc00");
        let key = format!("live-key-{k}");
        let start = Instant::now();
        match self.mode {
            Mode::Blocking => drop(
                self.a
                    .update_connection(c.value.id(), c.version, svc00(&key))
                    .expect("write on A"),
            ),
            Mode::Async => {
                // Awaited inside a task, as a tokio host's request handler
                // awaits it.
                let (a, spec) = (Arc::clone(&self.a), svc00(&key));
                let (id, version) = (c.value.id(), c.version);
                rt.block_on(rt.spawn(async move { a.update_connection_async(id, version, spec).await }))
                    .expect("the writing task")
                    .expect("write on A");
            }
        }
        self.commit.push(ns(start.elapsed()));
        let request = w_request();
        let deadline = start + Duration::from_secs(10);
        loop {
            let seen = self
                .b
                .resolve(&request)
                .ok()
                .and_then(|env| env.get("SVC00_APIKEY").map(|v| v.value().expose() == key))
                .unwrap_or(false);
            if seen {
                self.propagation.push(ns(start.elapsed()));
                return;
            }
            assert!(Instant::now() < deadline, "B did not see write {k} within 10 s");
            std::thread::sleep(Duration::from_micros(100));
        }
    }

    /// The pair's figures.
    fn figures(&self) -> Figures {
        let mut after: Vec<f64> = self
            .propagation
            .iter()
            .zip(&self.commit)
            .map(|(all, write)| all - write)
            .collect();
        let (mut propagation, mut commit) = (self.propagation.clone(), self.commit.clone());
        Figures {
            p50: median(&mut propagation),
            p99: quantile(&mut propagation, 0.99),
            write50: median(&mut commit),
            write99: quantile(&mut commit, 0.99),
            after50: median(&mut after),
            after99: quantile(&mut after, 0.99),
        }
    }
}

/// Propagation on blocking and on async replicas, each pair on a database
/// of its own, their writes interleaved so that both meet the same load.
fn propagation(writes: usize) -> Option<[Figures; 2]> {
    let rt = runtime();
    let blocking_db = test_kit::postgres::database("bench_propagation")?;
    let async_db = test_kit::postgres::database("bench_propagation_async")?;
    let mut pairs = [
        Replicas::open(&blocking_db, Mode::Blocking, &rt),
        Replicas::open(&async_db, Mode::Async, &rt),
    ];
    for k in 0..writes {
        // Alternate which goes first.
        for p in [k % 2, 1 - k % 2] {
            pairs[p].write(k, &rt);
            // Let B's follower go back to waiting, as between real writes.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    Some(pairs.map(|p| p.figures()))
}

/// One new connection of project `p` named `c{i}` with a plain `Marker`.
fn writer_spec(p: &str, i: usize) -> ConnectionSpec {
    ConnectionSpec::project(p, format!("c{i}").as_str())
        .param(Param::plain("Marker").default("0"))
        .build()
        .expect("spec")
}

/// How long the 1,000 writers may take before the run counts as stuck.
const STUCK: Duration = Duration::from_secs(120);

/// `n` value edits, each to a connection of its own, through one registry:
/// `n` async tasks at once, or 8 threads of a blocking registry. Returns
/// how many committed (the async ones within [`STUCK`]) and the writes per
/// second.
fn registry_throughput(db: &TestDatabase, mode: Mode, n: usize) -> (usize, f64) {
    let rt = runtime();
    let p = test_kit::unique_project("writers");
    let settings = PostgresSettings::from_connection_string(&db.connection_string())
        .expect("settings")
        .pool_size(8);
    let registry = Arc::new(match mode {
        Mode::Blocking => Registry::builder()
            .store(settings.connect(keys()).expect("store"))
            .build()
            .expect("registry"),
        Mode::Async => rt.block_on(async {
            let store = settings.connect_async(keys()).await.expect("store");
            Registry::builder()
                .async_store(store)
                .build_async()
                .await
                .expect("registry")
        }),
    });
    let (ids, _) = registry
        .write(|tx| {
            (0..n)
                .map(|i| tx.create_connection(writer_spec(p.as_str(), i)))
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("create the connections");
    let marker: ParamName = "Marker".parse().expect("param");
    let start = Instant::now();
    let committed = match mode {
        Mode::Async => rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for (i, id) in ids.iter().copied().enumerate() {
                let (registry, p, marker) = (Arc::clone(&registry), p.clone(), marker.clone());
                tasks.spawn(async move {
                    let version = registry.connection(&p, id).expect("connection").version;
                    registry
                        .set_value_async(&p, id, version, &marker, Layer::Default, i.to_string())
                        .await
                        .is_ok()
                });
            }
            let deadline = tokio::time::Instant::now() + STUCK;
            let mut ok = 0;
            while let Ok(Some(done)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
                ok += usize::from(done.expect("task"));
            }
            ok
        }),
        Mode::Blocking => std::thread::scope(|s| {
            let threads: Vec<_> = ids
                .chunks(n.div_ceil(8))
                .map(|chunk| {
                    let (registry, p, marker) = (&registry, &p, &marker);
                    s.spawn(move || {
                        let edit = |(i, id): (usize, &ConnectionId)| {
                            let version = registry.connection(p, *id).expect("connection").version;
                            registry
                                .set_value(p, *id, version, marker, Layer::Default, i.to_string())
                                .is_ok()
                        };
                        chunk.iter().enumerate().map(edit).filter(|ok| *ok).count()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().expect("thread")).sum()
        }),
    };
    (committed, committed as f64 / start.elapsed().as_secs_f64())
}

/// Commits per second of `n` new records straight at the store: `n` async
/// tasks at once on one pool of 8, or 8 threads sharing one blocking store
/// with a pool of 8.
fn store_throughput(db: &TestDatabase, mode: Mode, n: usize) -> f64 {
    let rt = runtime();
    let settings = PostgresSettings::from_connection_string(&db.connection_string())
        .expect("settings")
        .pool_size(8);
    match mode {
        Mode::Async => rt.block_on(async {
            let store: Arc<dyn AsyncStore> = Arc::new(settings.connect_async(keys()).await.expect("store"));
            let took = test_kit::concurrent_async_writers(store, n).await;
            n as f64 / took.as_secs_f64()
        }),
        Mode::Blocking => {
            let store = settings.connect(keys()).expect("store");
            let p = test_kit::unique_project("blocking-writers");
            let start = Instant::now();
            std::thread::scope(|s| {
                for t in 0..8 {
                    let (store, p) = (&store, &p);
                    s.spawn(move || {
                        for i in (t..n).step_by(8) {
                            let record = test_kit::sample_connection(p, &format!("w{i}"), "s");
                            let mut batch = Batch::new();
                            batch.push(Write::put(record, Expect::Absent));
                            Store::commit(store, &batch).expect("commit");
                        }
                    });
                }
            });
            n as f64 / start.elapsed().as_secs_f64()
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let writes = if quick() { 30 } else { 1000 };
    let Some([blocking, asynchronous]) = propagation(writes) else {
        println!("# PostgreSQL figures: no server could be had, nothing measured");
        return;
    };
    let db = test_kit::postgres::database("bench_writers").expect("a database");
    println!("# PostgreSQL figures ({writes} writes each way)");
    let (p50, p99) = (blocking.p50, blocking.p99);
    let (a50, a99) = (asynchronous.p50, asynchronous.p99);
    figure(
        "PostgreSQL replica propagation (commit on A -> resolvable on B), p50",
        &format!(
            "{} (A's write itself: median {}; from its return until B resolves: median {})",
            fmt_ns(p50),
            fmt_ns(blocking.write50),
            fmt_ns(blocking.after50)
        ),
        "<= 20 ms",
        p50 <= 20e6,
    );
    figure(
        "PostgreSQL replica propagation, p99",
        &format!(
            "{} (A's write itself: p99 {}; from its return until B resolves: p99 {})",
            fmt_ns(p99),
            fmt_ns(blocking.write99),
            fmt_ns(blocking.after99)
        ),
        "<= 200 ms",
        p99 <= 200e6,
    );
    // The issue's bar is "within today's figures" (2.6 / 4.3 ms on a quiet
    // machine): today's follower is the blocking one, measured in this run
    // under the same load.
    figure(
        "PostgreSQL replica propagation, async follower (tokio task), p50",
        &format!(
            "{} (A's async write itself: median {}; from its return until B resolves: median {}, \
             blocking {}); blocking follower {}: {:.2}x",
            fmt_ns(a50),
            fmt_ns(asynchronous.write50),
            fmt_ns(asynchronous.after50),
            fmt_ns(blocking.after50),
            fmt_ns(p50),
            a50 / p50
        ),
        "<= the blocking follower's (2.6 ms on a quiet machine)",
        a50 <= p50,
    );
    figure(
        "PostgreSQL replica propagation, async follower, p99",
        &format!(
            "{} (A's async write itself: p99 {}, blocking {}; from its return until B resolves: p99 {}, \
             blocking {}); blocking follower {}: {:.2}x",
            fmt_ns(a99),
            fmt_ns(asynchronous.write99),
            fmt_ns(blocking.write99),
            fmt_ns(asynchronous.after99),
            fmt_ns(blocking.after99),
            fmt_ns(p99),
            a99 / p99
        ),
        "<= the blocking follower's (4.3 ms on a quiet machine)",
        a99 <= p99,
    );

    let n = 1000;
    let (async_ok, async_registry) = registry_throughput(&db, Mode::Async, n);
    let (blocking_ok, blocking_registry) = registry_throughput(&db, Mode::Blocking, n);
    let async_store = store_throughput(&db, Mode::Async, n);
    let blocking_store = store_throughput(&db, Mode::Blocking, n);
    figure(
        "1,000 concurrent async writers (distinct connections) on one pool of 8, through one registry",
        &format!(
            "{async_ok} of {n} committed (blocking: {blocking_ok}); \
             {async_registry:.0} writes/s vs blocking registry (8 threads) {blocking_registry:.0}/s: {:.2}x",
            async_registry / blocking_registry
        ),
        "all commit, no deadlock",
        async_ok == n && blocking_ok == n,
    );
    figure(
        "1,000 concurrent async commits on one pool of 8, straight at the store",
        &format!(
            "all {n} committed; {async_store:.0} commits/s vs blocking store (8 threads) {blocking_store:.0}/s: {:.2}x",
            async_store / blocking_store
        ),
        "all commit, no deadlock",
        true,
    );
}
