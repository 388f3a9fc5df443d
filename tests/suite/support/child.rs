//! Runs one test of the suite in a process of its own.
//!
//! `tracing` decides once per callsite and process whether any subscriber
//! wants it (its interest cache). The suite's other tests reach the crate's
//! callsites on their own threads with no subscriber while a span test
//! installs its capture, so beside them some spans would not reach the
//! capture. A span test therefore runs its scenario in a child process: the
//! parent test calls [`run`], and the scenario test returns at once unless
//! [`is_child`] says it is the child.

/// Whether this process is the child [`run`] started for the scenario that
/// `var` marks.
pub fn is_child(var: &str) -> bool {
    std::env::var_os(var).is_some()
}

/// Runs the test at `path` (e.g. `oauth::spans::spans_child`) alone in a
/// new process of this test binary with `var` set, and fails unless it ran
/// and passed. A "skipped: …" line of the child is repeated.
pub fn run(path: &str, var: &str) {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", path, "--test-threads=1", "--nocapture"])
        .env(var, "1")
        .output()
        .expect("run the child");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "the child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the child ran no test:\n{stdout}");
    if let Some(line) = stderr.lines().find(|l| l.contains("skipped: ")) {
        eprintln!("{line}");
    }
}
