//! External secret references' figures: resolving workload W with every
//! secret value referenced in an external store (read from the
//! `SecretCache`) against W with stored values (target ≤ 1.1x), and the
//! requests a store sees per hour for N secret locations with refresh
//! interval T, with and without resolutions running (target N × 3600 / T,
//! independent of the resolution rate).
//!
//! ```text
//! cargo bench --bench external_secrets --features external-secrets
//! CONNECTIVE_BENCH_QUICK=1 cargo bench --bench external_secrets --features external-secrets
//! ```
//!
//! The store is an in-memory `SecretStore` counting its reads: the figures
//! are the cache's and resolution's, not a server's.
//!
//! For instruction counts, reproducible on a busy machine, the binary also
//! resolves W `N` times under a profiler and does nothing else:
//!
//! ```text
//! valgrind --tool=callgrind target/release/deps/external_secrets-<hash> profile stored 10000
//! valgrind --tool=callgrind target/release/deps/external_secrets-<hash> profile referenced 10000
//! valgrind --tool=callgrind target/release/deps/external_secrets-<hash> profile referenced 0   # set-up only
//! ```
//!
//! For cache misses (the referenced path's cost over the stored one is
//! mostly L1 data misses: W's working set is about L1's size), the
//! simulated caches of callgrind, counting the resolutions only (N plus
//! the two of the set-up), so the set-up's misses do not blur the figure:
//!
//! ```text
//! valgrind --tool=callgrind --cache-sim=yes --toggle-collect='connective::registry::Registry::resolve_by' \
//!     target/release/deps/external_secrets-<hash> profile referenced 10000
//! ```
//!
//! The misses per resolution move by ±15 from one run to the next (the
//! heap's layout differs between runs): compare versions by the
//! mean of several runs.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::record::{bench, median_ns};
use common::{figure, fmt_ns, quick, w_request};
use connective::external::{SecretCache, SecretStore, StoreFuture, StoreSecret};
use connective::model::{
    ExternalRef, Layer, ParamValues, ResolvePolicy, SecretLocation, SecretValue, StoreName,
};
use connective::prelude::*;
use criterion::Criterion;

/// Answers every location with W's keys and `k`, counting reads.
#[derive(Default)]
struct MemoryVault {
    reads: AtomicU64,
}

impl MemoryVault {
    /// The value it answers for `key` at `path`.
    fn value(path: &str, key: &str) -> String {
        format!("{path}-{key}-value")
    }
}

impl SecretStore for MemoryVault {
    fn read<'a>(&'a self, location: &'a SecretLocation) -> StoreFuture<'a> {
        Box::pin(async move {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let mut secret = StoreSecret::new().with_version("1".parse().expect("version"));
            for key in ["ApiKey.default", "ApiKey.production", "Password.default", "k"] {
                secret.insert(key, SecretValue::new(Self::value(location.path(), key)));
            }
            Ok(secret)
        })
    }
}

/// What W's secret values become: references to
/// `vault:secret/w/CONNECTION#PARAM.LAYER`, or stored values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Referenced,
    Stored,
}

/// Rewrites every secret value of W, one update of each connection: to a
/// reference to `vault:secret/w/CONNECTION#PARAM.LAYER`, or to the value
/// `MemoryVault` answers for that reference, stored. Both registries of
/// the ratio go through these same writes, so their W is built by the same
/// sequence of allocations and holds the same values.
fn rewrite_w_secrets(registry: &Registry, secrets: Secrets) {
    let snapshot = registry
        .snapshot(&common::W_PROJECT.parse().expect("project"))
        .expect("W");
    let connections: Vec<_> = snapshot.connections().cloned().collect();
    for c in connections {
        let mut spec = c.value.spec().clone();
        for p in c.value.spec().params() {
            let ParamValues::Secret(layers) = p.values() else {
                continue;
            };
            for layer in layers.layers() {
                let which = match layer {
                    Layer::Default => "default",
                    _ => "production",
                };
                let path = format!("w/{}", c.value.name());
                let key = format!("{}.{which}", p.name());
                match secrets {
                    Secrets::Referenced => {
                        let reference: ExternalRef =
                            format!("vault:secret/{path}#{key}").parse().expect("reference");
                        spec.set_external(p.name(), layer.clone(), reference)
                    }
                    Secrets::Stored => {
                        spec.set_value(p.name(), layer.clone(), MemoryVault::value(&path, &key))
                    }
                }
                .expect("set");
            }
        }
        registry
            .update_connection(c.value.id(), c.version, spec)
            .expect("update W connection");
    }
}

fn cache(store: &Arc<MemoryVault>, refresh: Duration) -> SecretCache {
    SecretCache::builder()
        .shared_store(StoreName::vault(), store.clone())
        .refresh_interval(refresh)
        .max_staleness(refresh * 10)
        .build()
        .expect("cache")
}

/// Reads per hour the store sees for `n` locations refreshed every
/// `interval`, over `run`, while `threads` threads resolve (0: none) through
/// a view reading the cache. Answers (reads per hour, resolutions made).
fn requests_per_hour(n: usize, interval: Duration, run: Duration, threads: usize) -> (f64, u64) {
    let store = Arc::new(MemoryVault::default());
    let cache = cache(&store, interval);
    let refs: Vec<ExternalRef> = (0..n)
        .map(|i| format!("vault:secret/rate/{i}#k").parse().expect("reference"))
        .collect();
    let missing = cache.prefetch(refs.iter(), Duration::from_secs(10));
    assert!(missing.is_empty(), "prefetch: {missing:?}");
    let registry = Registry::builder()
        .policy(ResolvePolicy::default().with_external_secrets(Arc::new(cache.clone())))
        .build()
        .expect("registry");
    registry
        .create_connection(
            ConnectionSpec::project("acme", "db")
                .param(Param::secret("Password").default_ref(refs[0].clone()))
                .build()
                .expect("spec"),
        )
        .expect("create");
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("db", [("Password", "DB_PASSWORD")])
                .build()
                .expect("mappings"),
            None,
        )
        .expect("mappings");
    // Counted from half an interval after the prefetch, over whole
    // intervals: every location's refreshes fall inside the window.
    std::thread::sleep(interval / 2);
    let before = store.reads.load(Ordering::Relaxed);
    let stop = AtomicBool::new(false);
    let resolutions = AtomicU64::new(0);
    let request = ResolveRequest::parse("acme", "orders", "production").expect("request");
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let view = registry.view(&"acme".parse().expect("project"));
                while !stop.load(Ordering::Relaxed) {
                    for r in &refs {
                        use connective::model::ExternalSecrets as _;
                        cache.lookup(r).expect("lookup");
                    }
                    view.resolve(&request).expect("resolve");
                    resolutions.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(run);
        stop.store(true, Ordering::Relaxed);
    });
    let reads = store.reads.load(Ordering::Relaxed) - before;
    let per_hour = reads as f64 * 3600.0 / start.elapsed().as_secs_f64();
    (per_hour, resolutions.load(Ordering::Relaxed))
}

/// W twice: with stored secret values, and with them referenced in a cache
/// (warmed: every location fetched once). Both registries are configured
/// alike, without a memo of resolutions: each resolution is a first one
/// (the stored side's memo would otherwise hand out its kept answer, and
/// the referenced side's would only add its own lookup to each resolution,
/// since answers reading external values are never handed out again).
fn w_registries(vault: &Arc<MemoryVault>) -> (Registry, Registry, SecretCache) {
    let stored = common::registry_with_w(1_000);
    rewrite_w_secrets(&stored, Secrets::Stored);
    let cache = cache(vault, Duration::from_secs(300));
    let referenced = Registry::builder()
        .store(common::filler_store(1_000))
        .resolve_memo(0)
        .policy(ResolvePolicy::default().with_external_secrets(Arc::new(cache.clone())))
        .build()
        .expect("registry");
    common::add_w(&referenced);
    rewrite_w_secrets(&referenced, Secrets::Referenced);
    let env = referenced
        .resolve(&w_request())
        .expect("resolve W with references");
    assert_eq!(env.len(), 50);
    // The same variables and values on both sides.
    let from_stored = stored.resolve(&w_request()).expect("resolve W");
    assert_eq!(from_stored.len(), 50);
    for var in &from_stored {
        assert_eq!(
            env.expose(var.name().as_str()),
            Some(var.expose()),
            "{}",
            var.name()
        );
    }
    (stored, referenced, cache)
}

/// `profile stored|referenced N`: resolves W `N` times, untimed.
fn profile(args: &[String]) -> bool {
    let [what, which, n] = args else { return false };
    let (Some(n), true) = (n.parse::<usize>().ok(), what == "profile") else {
        return false;
    };
    let vault = Arc::new(MemoryVault::default());
    let (stored, referenced, _cache) = w_registries(&vault);
    let registry = if which == "stored" { &stored } else { &referenced };
    let request = w_request();
    for _ in 0..n {
        drop(std::hint::black_box(registry.resolve(&request)));
    }
    true
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if profile(&args) {
        return;
    }
    let (warm_up, measure, samples) = if quick() {
        (Duration::from_millis(300), Duration::from_secs(1), 20)
    } else {
        (Duration::from_secs(1), Duration::from_secs(4), 60)
    };
    let mut c = Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measure)
        .sample_size(samples)
        .configure_from_args();

    let request = w_request();
    let vault = Arc::new(MemoryVault::default());
    // Warm: every referenced location fetched once, before measuring.
    let (stored, referenced, cache) = w_registries(&vault);
    let reads = vault.reads.load(Ordering::Relaxed);

    let mut g = c.benchmark_group("external_w");
    bench(&mut g, "external_w", "stored", || {
        stored.resolve(&request).expect("resolve")
    });
    bench(&mut g, "external_w", "referenced", || {
        referenced.resolve(&request).expect("resolve")
    });
    let w_refs: Vec<ExternalRef> = (0..20)
        .map(|i| {
            format!("vault:secret/w/svc{:02}#ApiKey.production", i % 10)
                .parse()
                .expect("reference")
        })
        .collect();
    bench(&mut g, "external_w", "lookups_20", || {
        use connective::model::ExternalSecrets as _;
        for r in &w_refs {
            drop(std::hint::black_box(cache.lookup(r).expect("lookup")));
        }
    });
    g.finish();
    c.final_summary();
    assert_eq!(
        vault.reads.load(Ordering::Relaxed),
        reads,
        "resolution called the store"
    );

    let get = |key: &str| median_ns(key, samples);
    println!();
    println!("# external secret figures (medians of criterion's samples in this run)");
    if let (Some(s), Some(r)) = (get("external_w/stored"), get("external_w/referenced")) {
        figure(
            "resolve W, 20 secret values referenced vs stored, criterion medians",
            &format!("{} vs {}: {:.2}x", fmt_ns(r), fmt_ns(s), r / s),
            "report",
            true,
        );
    }
    // The same two, interleaved in rounds of 2,000 resolutions each, so
    // other load on the machine falls on both alike: the median of the
    // rounds' ratios.
    let rounds = if quick() { 60 } else { 300 };
    let mut ratios = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let time = |registry: &Registry| {
            let start = Instant::now();
            for _ in 0..2_000 {
                drop(std::hint::black_box(registry.resolve(&request).expect("resolve")));
            }
            start.elapsed().as_secs_f64()
        };
        let s = time(&stored);
        let r = time(&referenced);
        ratios.push(r / s);
    }
    let ratio = common::median(&mut ratios);
    figure(
        &format!("resolve W, 20 secret values referenced vs stored, median of {rounds} interleaved rounds"),
        &format!("{ratio:.3}x"),
        "<= 1.1x",
        ratio <= 1.1,
    );

    let (n, interval, run) = if quick() {
        (50, Duration::from_millis(500), Duration::from_secs(5))
    } else {
        (200, Duration::from_millis(500), Duration::from_secs(20))
    };
    let expected = n as f64 * 3600.0 / interval.as_secs_f64();
    for threads in [0, 2] {
        let (per_hour, resolutions) = requests_per_hour(n, interval, run, threads);
        let off = (per_hour / expected - 1.0).abs();
        figure(
            &format!(
                "store requests per hour, N = {n} locations, T = {interval:?}, {threads} resolving threads ({resolutions} resolutions of all N)"
            ),
            &format!(
                "{per_hour:.0} (N x 3600 / T = {expected:.0}, {:+.1}%)",
                (per_hour / expected - 1.0) * 100.0
            ),
            "N x 3600 / T +- 10%",
            off <= 0.1,
        );
    }
}
