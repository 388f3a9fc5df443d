//! The examples run and print what the README promises.

use std::path::PathBuf;
use std::process::Command;

/// `cargo test` builds the examples next to the test binaries' `deps` folder.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target profile dir");
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

fn run(name: &str) -> String {
    let path = example(name);
    assert!(
        path.exists(),
        "example {name} was not built at {}",
        path.display()
    );
    let out = Command::new(&path).output().expect("example runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn quickstart_prints_both_environments_with_provenance_and_no_secret() {
    let out = run("quickstart");
    assert!(out.contains("environment development"), "{out}");
    assert!(out.contains("environment production"), "{out}");
    assert!(
        out.contains("SMS_API_KEY=[REDACTED]  # connection twilio"),
        "{out}"
    );
    assert!(out.contains("environment production override"), "{out}");
    assert!(out.contains("ConsumerSecret of the project application"), "{out}");
    assert!(out.contains("CHOREO_LEGACY_CRM_PASSWORD=[REDACTED]"), "{out}");
    // The last lines say in words what happened to the variables.
    let last: Vec<&str> = out.lines().rev().take(2).collect();
    assert_eq!(
        last,
        [
            "The integration found 9 of those 9 variables set, e.g. SMS_URL=https://api.twilio.com/2010-04-01.",
            "Started integration orders as a child process with its 9 production variables in its environment \
             (secrets included, never printed here).",
        ],
        "{out}"
    );
    for secret in ["tw-dev-8f3a", "tw-live-91c2", "s3cr3t-crm", "pr0d-crm"] {
        assert!(!out.contains(secret), "secret {secret} printed:\n{out}");
    }
}
