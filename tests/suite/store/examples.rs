//! The storage examples run and say what they promise.

use std::path::PathBuf;
use std::process::{Command, Output};

/// `cargo test` builds the examples next to the test binaries' `deps` folder.
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target profile dir");
    let path: PathBuf = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example {name} was not built at {}",
        path.display()
    );
    let mut cmd = Command::new(path);
    cmd.env_remove("CONNECTIVE_SEAL_KEY");
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn sqlite_example_reopens_and_keeps_the_secret_sealed() {
    let out = example("sqlite").output().expect("run");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("CRM_URL=https://crm.example.com"), "{all}");
    assert!(all.contains("CRM_KEY=[REDACTED]"), "{all}");
    assert!(
        all.contains("sealed values in the files: true; the API key in plaintext: false"),
        "{all}"
    );
    assert!(!all.contains("crm-live-2f9d"), "{all}");
}

/// The README's command on a machine with no server configured: the example
/// starts the test kit's throwaway server, and stops it when it ends.
#[test]
fn postgres_example_starts_a_throwaway_server_without_pg_variables() {
    let mut cmd = example("postgres");
    for var in ["PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run");
    let all = text(&out);
    if out.status.code() == Some(2) && all.contains("cannot start a throwaway PostgreSQL server") {
        connective::test_kit::postgres::unavailable(&all);
        return;
    }
    assert!(out.status.success(), "{all}");
    assert!(all.contains("started a throwaway PostgreSQL server"), "{all}");
    assert!(all.contains("replica b resolves orders after"), "{all}");
    assert!(
        all.contains("CRM_KEY=[REDACTED]") && !all.contains("crm-demo-key"),
        "{all}"
    );
    // The server is gone once the example has ended.
    let address = all
        .split("replica connected to ")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the replicas say where they connected");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(address).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the throwaway server at {address} still runs after the example ended"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn postgres_example_propagates_between_replicas() {
    let Some(db) = connective::test_kit::postgres::database("example") else {
        return;
    };
    let out = example("postgres")
        .arg(db.connection_string())
        .output()
        .expect("run");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("replica b resolves orders after"), "{all}");
    assert!(
        all.contains("CRM_KEY=[REDACTED]") && !all.contains("crm-demo-key"),
        "{all}"
    );
}
