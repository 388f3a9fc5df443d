//! SQLite figures (issues 4 and 14, feature `sqlite`): the median of one durable
//! commit, and a cold start loading 1,000,000 connections.
//!
//! The database lives in a temporary directory under the cargo target
//! directory (a real disk, not tmpfs): WAL with `synchronous=FULL`, so a
//! commit returns after its fsync.
//!
//! - Durable commit: `Registry::update_connection` on a registry over a
//!   `SqliteStore` holding 1,000 connections (one write: seal the secrets,
//!   serialize, commit, fsync, update the catalog), and the bare
//!   `Store::commit` of the same one-record batch beside it.
//! - Cold start: `SqliteStore::open` + `Registry::builder().build()` (read every
//!   record, open every sealed secret, build the catalog) on a database of
//!   1,000,000 connections (1,000 projects of 1,000), written beforehand. The
//!   file was just written, so it is in the page cache (a warm cold start).
//!
//! ```text
//! cargo bench --features sqlite --bench sqlite
//! CONNECTIVE_BENCH_QUICK=1 cargo bench --features sqlite --bench sqlite   # 100,000 connections
//! ```

mod common;

use std::path::Path;
use std::time::Instant;

use common::{PER_PROJECT, figure, filler_spec, filler_spec_version, fmt_ns, median, ns, quantile, quick};
use connective::catalog::Catalog;
use connective::model::{ConnectionId, ProjectId, ResolvePolicy, Version};
use connective::prelude::Registry;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{Batch, Expect, SqliteStore, Store, Write};

fn keys() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("bench", &[7u8; 32]).expect("seal key"))
}

fn scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&base).expect("target dir");
    tempfile::Builder::new()
        .prefix("connective-bench-sqlite")
        .tempdir_in(base)
        .expect("temp dir")
}

/// Durable commit medians: through the registry, and the bare store.
fn durable_commit(dir: &Path) {
    let writes = if quick() { 50 } else { 300 };
    let path = dir.join("commit.db");
    let store = SqliteStore::open(&path, keys()).expect("open");
    common::fill_store(&store, PER_PROJECT);
    let registry = Registry::builder().store(store).build().expect("registry");
    let project: ProjectId = "proj-000000".parse().expect("project");
    let snapshot = registry.snapshot(&project).expect("snapshot");
    let mut targets: Vec<(ConnectionId, Version, usize)> = snapshot
        .connections()
        .map(|c| {
            let index: usize = c.value.name().as_str()[1..].parse().expect("filler name");
            (c.value.id(), c.version, index)
        })
        .collect();
    drop(snapshot);
    targets.sort_by_key(|t| t.2);

    let mut through_registry = Vec::with_capacity(writes);
    for k in 0..writes {
        let (id, version, index) = &mut targets[k % PER_PROJECT];
        // Flip between two values so every write changes the record.
        let spec = filler_spec_version(project.as_str(), *index, 1 + k / PER_PROJECT);
        let start = Instant::now();
        registry.update_connection(*id, *version, spec).expect("update");
        through_registry.push(ns(start.elapsed()));
        version.0 += 1;
    }
    let mut bare = Vec::with_capacity(writes);
    for k in 0..writes {
        let (id, version, index) = &mut targets[(k + writes) % PER_PROJECT];
        let record = connective::model::Record::Connection(std::sync::Arc::new(
            connective::model::Connection::new(*id, filler_spec(project.as_str(), *index), None),
        ));
        let mut batch = Batch::new();
        batch.push(Write::put(record, Expect::Version(*version)));
        let start = Instant::now();
        registry.store().commit(&batch).expect("commit");
        bare.push(ns(start.elapsed()));
        version.0 += 1;
    }
    let m = median(&mut through_registry);
    let p99 = quantile(&mut through_registry, 0.99);
    let b = median(&mut bare);
    figure(
        "SQLite durable commit (Registry::update_connection), median",
        &format!(
            "{} (p99 {}; bare Store::commit {}, registry/bare {:.2}x; {writes} writes)",
            fmt_ns(m),
            fmt_ns(p99),
            fmt_ns(b),
            m / b
        ),
        "<= 2 ms",
        m <= 2e6,
    );
}

/// Cold start of a registry over a database of `n` connections.
fn cold_start(dir: &Path) {
    let n = common::large();
    let path = dir.join("cold.db");
    let start = Instant::now();
    {
        let store = SqliteStore::open(&path, keys()).expect("open");
        common::fill_store(&store, n);
    }
    let filled = start.elapsed();
    eprintln!("wrote {n} connections in {:.1} s", filled.as_secs_f64());
    let runs = if quick() { 1 } else { 2 };
    let mut times = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let registry = Registry::builder()
            .store(SqliteStore::open(&path, keys()).expect("open"))
            .build()
            .expect("registry");
        times.push(ns(start.elapsed()));
        assert_eq!(registry.catalog().projects().len(), n.div_ceil(PER_PROJECT));
        // Not timed: dropping 1,000,000 connections.
        drop(registry);
    }
    // Where the time goes: the store's load (read, decode, open sealed
    // secrets), then the catalog built from its records.
    let (start, cpu) = (Instant::now(), common::cpu_seconds());
    let snapshot = SqliteStore::open(&path, keys())
        .expect("open")
        .load()
        .expect("load");
    let load = ns(start.elapsed());
    let load_cpu = common::cpu_seconds() - cpu;
    let start = Instant::now();
    let catalog = Catalog::from_records(ResolvePolicy::default(), snapshot.revision, snapshot.records);
    let build = ns(start.elapsed());
    drop(catalog);
    // The first run is the real cold start: later ones reuse memory the
    // process already got from the kernel for the previous catalog.
    let first = times[0];
    let each: Vec<String> = times.iter().map(|t| fmt_ns(*t)).collect();
    figure(
        &format!("SQLite cold start, {n} connections (open + load + catalog)"),
        &format!(
            "{} (first run; runs: {}; one more run split: store load {} ({load_cpu:.2} CPU-s on all threads), \
             catalog build {})",
            fmt_ns(first),
            each.join(", "),
            fmt_ns(load),
            fmt_ns(build)
        ),
        "<= 5 s",
        first <= 5e9,
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = scratch_dir();
    println!("# issue 14 figures: SQLite");
    durable_commit(dir.path());
    cold_start(dir.path());
}
