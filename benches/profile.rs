//! A driver for profilers (not timed): resolves workload W (a first
//! resolution, or a repeated one from the memo), clones the copy-out
//! answer, or rewrites connections of a 1,000-connection project
//! (or of a larger catalog, one connection of each project in turn),
//! `N` times, so `valgrind --tool=callgrind` (instruction
//! counts, reproducible on a busy machine) or `perf` can compare two versions
//! of the code.
//!
//! ```text
//! cargo bench --bench profile --no-run          # prints the binary's path
//! valgrind --tool=callgrind target/release/deps/profile-<hash> resolve 10000
//! valgrind --tool=callgrind target/release/deps/profile-<hash> memoized 10000
//! valgrind --tool=callgrind target/release/deps/profile-<hash> copy 10000
//! valgrind --tool=callgrind target/release/deps/profile-<hash> write 10000
//! # a write into a large catalog, counted inside the write only, with cache misses:
//! valgrind --tool=callgrind --cache-sim=yes --collect-atstart=no \
//!     '--toggle-collect=*Registry::update_connection*' target/release/deps/profile-<hash> write 5000 100000
//! valgrind --tool=callgrind target/release/deps/profile-<hash> resolve 0   # set-up only, to subtract
//! ```
//!
//! `write N CONNECTIONS TARGETS` spreads the writes over `TARGETS`
//! connections as the write bench does (4,096) and prints the writes' CPU
//! time per write, for the 1,000,000 / 1,000 ratio on a busy machine:
//!
//! ```text
//! target/release/deps/profile-<hash> write 300000 1000 4096
//! target/release/deps/profile-<hash> write 300000 1000000 4096
//! ```
//!
//! Repeated resolutions on several threads at once (`memoized-threads N T`:
//! T threads, N each), to compare CPU time per resolution with one thread
//! (`perf stat -e task-clock`): threads sharing a written cache line
//! would pay for it here.
//!
//! ```text
//! perf stat -e task-clock target/release/deps/profile-<hash> memoized-threads 10000000 1
//! perf stat -e task-clock target/release/deps/profile-<hash> memoized-threads 10000000 2
//! ```
//!
//! Whether two threads resolving the same request write a cache line in
//! common (the one cause of lost read scaling the code can fix): `two-readers
//! N` (first resolutions) and `two-readers-memoized N` (memo hits) warm two
//! threads up, then let each resolve `N` times in turn, the other waiting,
//! between marker stores that `benches/shared_lines.py` finds in a memory
//! trace by `valgrind --tool=lackey`; the script lists every 64-byte line
//! (and every 128-byte pair, as adjacent-line prefetchers fetch them) one
//! thread wrote and the other read or wrote, and exits 1 if there is one:
//!
//! ```text
//! python3 benches/shared_lines.py target/release/deps/profile-<hash> two-readers 5
//! python3 benches/shared_lines.py target/release/deps/profile-<hash> two-readers-memoized 50
//! ```
//!
//! With reads of secrets audited (W's answer holds secrets, so each resolve
//! is a recorded read), through the queue a registry thread drains to the
//! memory store, or synchronously on the calling thread:
//!
//! ```text
//! valgrind --tool=callgrind --separate-threads=yes target/release/deps/profile-<hash> resolve-audit-queued 10000
//! valgrind --tool=callgrind target/release/deps/profile-<hash> resolve-audit-sync 10000
//! ```
//!
//! A SQLite cold start (feature `sqlite`): `cold-start N` writes a database
//! of `N` filler connections once (kept under the target directory as
//! `connective-profile-cold-N.db` and reused by later runs), then opens it
//! and loads it into a registry, printing the CPU time (user + system, every
//! thread) and wall time of each step: open, the store's load, the catalog
//! built from its records. CPU time is what to compare on a busy machine.
//!
//! ```text
//! cargo bench --features sqlite --bench profile --no-run
//! target/release/deps/profile-<hash> cold-start 1000000
//! perf record -e cpu-clock -g target/release/deps/profile-<hash> cold-start 1000000
//! valgrind --tool=callgrind target/release/deps/profile-<hash> cold-start 100000   # after a first run wrote the file
//! ```
//!
//! Run by `cargo bench` without arguments it does nothing.

mod common;

use connective::prelude::{Registry, Resolver};
use connective::registry::{QueueFull, ReadAudit};

/// W on a registry that audits writes and reads of secrets as `setting`
/// says (without a memo: every resolve is a first one).
fn audited(setting: ReadAudit) -> Registry {
    let registry = Registry::builder()
        .store(common::filler_store(0))
        .audit("service:bench".parse().expect("actor"))
        .audit_reads(setting)
        .resolve_memo(0)
        .build()
        .expect("registry");
    common::add_w(&registry);
    registry
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(what), Some(n)) = (args.first(), args.get(1).and_then(|n| n.parse::<usize>().ok())) else {
        return;
    };
    #[cfg(feature = "sqlite")]
    if what == "cold-start" {
        cold_start::run(n);
        return;
    }
    if what == "write" {
        let connections = args
            .get(2)
            .and_then(|c| c.parse().ok())
            .unwrap_or(common::PER_PROJECT);
        write(n, connections, args.get(3).and_then(|t| t.parse().ok()));
        return;
    }
    let registry = match what.as_str() {
        "resolve-audit-queued" => audited(ReadAudit::queued(1 << 20, QueueFull::Block)),
        "resolve-audit-sync" => audited(ReadAudit::synchronous()),
        "memoized" | "memoized-threads" | "two-readers-memoized" => common::registry_with_w_memo(0, 1_024),
        _ => common::registry_with_w(0),
    };
    let request = common::w_request();
    let answer = common::w_answer(&registry);
    match what.as_str() {
        "resolve" | "memoized" | "resolve-audit-queued" | "resolve-audit-sync" => {
            for _ in 0..n {
                drop(std::hint::black_box(registry.resolve(&request)));
            }
            // The queued reads reach the store before the run ends.
            registry
                .flush_read_audit(std::time::Duration::from_secs(600))
                .expect("flush");
        }
        "memoized-threads" => {
            let threads = args.get(2).and_then(|t| t.parse().ok()).unwrap_or(2);
            std::thread::scope(|s| {
                for _ in 0..threads {
                    s.spawn(|| {
                        for _ in 0..n {
                            drop(std::hint::black_box(registry.resolve(&request)));
                        }
                    });
                }
            });
        }
        "two-readers" | "two-readers-memoized" => two_readers(&registry, &request, n),
        "copy" => {
            for _ in 0..n {
                drop(std::hint::black_box(answer.clone()));
            }
        }
        other => eprintln!(
            "unknown mode {other:?}: resolve, memoized, memoized-threads, resolve-audit-queued, resolve-audit-sync, \
             copy, two-readers, two-readers-memoized, write or cold-start (feature sqlite)"
        ),
    }
}

/// Two threads resolve `request`, warmed up together, then `n` times each
/// in turn (the other waiting), each turn between two marker fills: a
/// thread stores to each `u16` of its start marker one by one, twice over
/// (making a marker stores each once), resolves, then does the same to its
/// end marker. The markers' addresses go to
/// standard error as `MARK <thread> <start|end> <address>`, and the
/// harness's own barriers as `HARNESS <address> <size>`; a marker's 4,096
/// two-byte stores are what `benches/shared_lines.py` looks for in the trace
/// (atomic stores, so the compiler keeps them 2 bytes wide). Between a
/// thread's markers it resolves and nothing else, and the other thread
/// waits on a barrier, so every line both turns touch, the barriers' aside,
/// is the registry's.
fn two_readers(registry: &Registry, request: &connective::resolve::ResolveRequest, n: usize) {
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicU16, Ordering};
    let fill = |mark: &[AtomicU16]| {
        for pass in [0xABCD, 0xDCBA] {
            mark.iter().for_each(|m| m.store(pass, Ordering::Relaxed));
        }
    };
    // Warmed up; thread 0's turn done; thread 1's turn done (so thread 0
    // waits, touching nothing, through thread 1's turn).
    let barriers = [Barrier::new(2), Barrier::new(2), Barrier::new(2)];
    for barrier in &barriers {
        eprintln!("HARNESS {:p} {}", barrier, std::mem::size_of::<Barrier>());
    }
    std::thread::scope(|s| {
        for thread in 0..2 {
            let [warm, turn, done] = &barriers;
            let marks: [Vec<AtomicU16>; 2] =
                [0, 1].map(|_| (0..MARK_STORES).map(|_| AtomicU16::new(0)).collect());
            for (mark, what) in marks.iter().zip(["start", "end"]) {
                eprintln!("MARK {thread} {what} {:p}", mark.as_ptr());
            }
            s.spawn(move || {
                for _ in 0..50 {
                    drop(std::hint::black_box(registry.resolve(request)));
                }
                warm.wait();
                if thread == 1 {
                    turn.wait();
                }
                fill(&marks[0]);
                for _ in 0..n {
                    drop(std::hint::black_box(registry.resolve(request)));
                }
                fill(&marks[1]);
                if thread == 0 {
                    turn.wait();
                }
                done.wait();
            });
        }
    });
}

/// How many 2-byte stores fill a marker of [`two_readers`].
const MARK_STORES: usize = 2048;

/// `n` updates of connections in a catalog of `connections` (1,000 by
/// default: one project) on a memory store, round-robin over `targets`
/// connections (1 a project by default: `c0000` of each; the write bench's
/// are 4,096, spread the same way: `c0000` of every project, then `c0001`
/// of every project, ...), alternating between two specs so every write
/// changes something. The specs are built before the first write. Prints
/// the writes' CPU time (the thread's, from `/proc/thread-self/schedstat`,
/// so other processes on a busy machine do not count) per write.
fn write(n: usize, connections: usize, targets: Option<usize>) {
    let registry = Registry::builder()
        .store(common::filler_store(connections))
        .build()
        .expect("registry");
    let projects = registry.catalog().projects();
    let per_project = targets
        .map_or(1, |t| t.div_ceil(projects.len()))
        .clamp(1, common::PER_PROJECT);
    let mut targets: Vec<_> = (0..per_project)
        .flat_map(|round| projects.iter().map(move |p| (round, p)))
        .map(|(round, project)| {
            let name = format!("c{round:04}");
            let (id, version) = registry
                .snapshot(project)
                .expect("snapshot")
                .connections()
                .find(|c| c.value.name().as_str() == name)
                .map(|c| (c.value.id(), c.version))
                .expect("filler connection");
            (project.clone(), round, id, version)
        })
        .collect();
    let specs: Vec<_> = (0..n)
        .map(|k| {
            let (project, round, ..) = &targets[k % targets.len()];
            common::filler_spec_version(project.as_str(), *round, k / targets.len() % 2 + 1)
        })
        .collect();
    // The CPU time of every tenth of the writes as well: the least of
    // them is the figure least disturbed by other processes sharing the
    // caches on a busy machine.
    let chunk = n.div_ceil(10).max(1);
    let mut chunks = Vec::new();
    let start = cpu_ns();
    let mut chunk_start = start;
    for (k, spec) in specs.into_iter().enumerate() {
        let slot = k % targets.len();
        let (_, _, id, version) = &mut targets[slot];
        registry.update_connection(*id, *version, spec).expect("update");
        version.0 += 1;
        if (k + 1) % chunk == 0 {
            let now = cpu_ns();
            if let (Some(a), Some(b)) = (chunk_start, now) {
                chunks.push((b - a) as f64 / chunk as f64);
            }
            chunk_start = now;
        }
    }
    if let (Some(start), Some(end)) = (start, cpu_ns()) {
        let least = chunks.iter().copied().fold(f64::INFINITY, f64::min);
        eprintln!(
            "{n} writes into {} connections, {} targets: {:.0} ns CPU a write (least of {} tenths: {least:.0} ns)",
            registry.catalog().projects().len() * common::PER_PROJECT,
            targets.len(),
            (end - start) as f64 / n.max(1) as f64,
            chunks.len(),
        );
    }
    // Ends here, without dropping the catalog (seconds at 1,000,000
    // connections), so that a profile of the run ends with the writes.
    std::process::exit(0);
}

/// The calling thread's CPU time in nanoseconds (Linux), if it can be read.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(feature = "sqlite")]
mod cold_start {
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use connective::catalog::Catalog;
    use connective::model::ResolvePolicy;
    use connective::store::seal::{KeyRing, SealKey};
    use connective::store::{SqliteStore, Store};

    use super::common;

    fn keys() -> KeyRing {
        KeyRing::new(SealKey::from_bytes("bench", &[7u8; 32]).expect("seal key"))
    }

    fn database(n: usize) -> PathBuf {
        let base = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
        std::fs::create_dir_all(&base).expect("target dir");
        let path = base.join(format!("connective-profile-cold-{n}.db"));
        if !path.exists() {
            // Written beside it and renamed, so an interrupted run leaves no
            // half-filled file to reuse.
            let partial = base.join(format!("connective-profile-cold-{n}.partial.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
            }
            let start = Instant::now();
            {
                let store = SqliteStore::open(&partial, keys()).expect("open");
                common::fill_store(&store, n);
            }
            std::fs::rename(&partial, &path).expect("rename");
            eprintln!(
                "wrote {n} connections to {} in {:.1} s",
                path.display(),
                start.elapsed().as_secs_f64()
            );
        }
        path
    }

    /// Times `f`: (CPU seconds, wall seconds, its result).
    fn timed<T>(f: impl FnOnce() -> T) -> (f64, f64, T) {
        let (cpu, wall) = (common::cpu_seconds(), Instant::now());
        let out = f();
        (common::cpu_seconds() - cpu, wall.elapsed().as_secs_f64(), out)
    }

    pub fn run(n: usize) {
        let path = database(n);
        let (open_cpu, open_wall, store) = timed(|| SqliteStore::open(&path, keys()).expect("open"));
        let (load_cpu, load_wall, snapshot) = timed(|| store.load().expect("load"));
        let records = snapshot.records.len();
        assert!(snapshot.unreadable.is_empty(), "unreadable records");
        let (build_cpu, build_wall, catalog) =
            timed(|| Catalog::from_records(ResolvePolicy::default(), snapshot.revision, snapshot.records));
        println!(
            "cold start of {records} records: open {open_cpu:.2} s CPU ({open_wall:.2} s wall), \
             load {load_cpu:.2} s CPU ({load_wall:.2} s wall), \
             catalog {build_cpu:.2} s CPU ({build_wall:.2} s wall)"
        );
        // Not measured: dropping the catalog.
        std::mem::forget(catalog);
    }
}
