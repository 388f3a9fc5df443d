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
//! With reads of secrets audited (W's answer holds secrets, so each resolve
//! is a recorded read), through the queue a registry thread drains to the
//! memory store, or synchronously on the calling thread:
//!
//! ```text
//! valgrind --tool=callgrind --separate-threads=yes target/release/deps/profile-<hash> resolve-audit-queued 10000
//! valgrind --tool=callgrind target/release/deps/profile-<hash> resolve-audit-sync 10000
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
    if what == "write" {
        let connections = args
            .get(2)
            .and_then(|c| c.parse().ok())
            .unwrap_or(common::PER_PROJECT);
        write(n, connections);
        return;
    }
    let registry = match what.as_str() {
        "resolve-audit-queued" => audited(ReadAudit::queued(1 << 20, QueueFull::Block)),
        "resolve-audit-sync" => audited(ReadAudit::synchronous()),
        "memoized" | "memoized-threads" => common::registry_with_w_memo(0, 1_024),
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
        "copy" => {
            for _ in 0..n {
                drop(std::hint::black_box(answer.clone()));
            }
        }
        other => eprintln!(
            "unknown mode {other:?}: resolve, memoized, memoized-threads, resolve-audit-queued, resolve-audit-sync, copy or write"
        ),
    }
}

/// `n` updates of connections in a catalog of `connections` (1,000 by
/// default: one project) on a memory store, round-robin over the projects
/// (connection `c0000` of each), alternating between two specs so every
/// write changes something. The specs are built before the first write.
fn write(n: usize, connections: usize) {
    let registry = Registry::builder()
        .store(common::filler_store(connections))
        .build()
        .expect("registry");
    let mut targets: Vec<_> = registry
        .catalog()
        .projects()
        .into_iter()
        .map(|project| {
            let (id, version) = registry
                .snapshot(&project)
                .expect("snapshot")
                .connections()
                .find(|c| c.value.name().as_str() == "c0000")
                .map(|c| (c.value.id(), c.version))
                .expect("filler connection");
            (project, id, version)
        })
        .collect();
    let specs: Vec<_> = (0..n)
        .map(|k| {
            let (project, ..) = &targets[k % targets.len()];
            common::filler_spec_version(project.as_str(), 0, k / targets.len() % 2 + 1)
        })
        .collect();
    for (k, spec) in specs.into_iter().enumerate() {
        let slot = k % targets.len();
        let (_, id, version) = &mut targets[slot];
        registry.update_connection(*id, *version, spec).expect("update");
        version.0 += 1;
    }
}
