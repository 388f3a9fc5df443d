//! A driver for profilers (not timed): resolves workload W, or clones the
//! copy-out answer, `N` times, so `valgrind --tool=callgrind` (instruction
//! counts, reproducible on a busy machine) or `perf` can compare two versions
//! of the code.
//!
//! ```text
//! cargo bench --bench profile --no-run          # prints the binary's path
//! valgrind --tool=callgrind target/release/deps/profile-<hash> resolve 10000
//! valgrind --tool=callgrind target/release/deps/profile-<hash> copy 10000
//! valgrind --tool=callgrind target/release/deps/profile-<hash> resolve 0   # set-up only, to subtract
//! ```
//!
//! Run by `cargo bench` without arguments it does nothing.

mod common;

use connective::prelude::Resolver;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(what), Some(n)) = (args.first(), args.get(1).and_then(|n| n.parse::<usize>().ok())) else {
        return;
    };
    let registry = common::registry_with_w(0);
    let request = common::w_request();
    let answer = common::w_answer(&registry);
    match what.as_str() {
        "resolve" => {
            for _ in 0..n {
                drop(std::hint::black_box(registry.resolve(&request)));
            }
        }
        "copy" => {
            for _ in 0..n {
                drop(std::hint::black_box(answer.clone()));
            }
        }
        other => eprintln!("unknown mode {other:?}: resolve or copy"),
    }
}
