//! The `connective` example program, run as a new user would on the sample
//! manifests in `examples/manifests/`.
#![cfg(feature = "manifest")]

use std::path::PathBuf;
use std::process::{Command, Output};

const SECRETS: [&str; 8] = [
    "tw-dev-8f3a",
    "tw-live-91c2",
    "pg-w4reh0use",
    "sf-globex-7d1",
    "sf-initech-2b9",
    "sf-initech-sandbox-55e",
    "s3cr3t-crm",
    "pr0d-crm",
];

/// `cargo test` builds the examples next to the test binaries' `deps` folder.
fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target profile dir");
    let path = dir
        .join("examples")
        .join(format!("connective{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "the connective example was not built at {}",
        path.display()
    );
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("CONNECTIVE_SEAL_KEY")
        .output()
        .expect("the example runs")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "connective {args:?} failed:\n{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn no_secret_in(text: &str) {
    for s in SECRETS {
        assert!(!text.contains(s), "secret {s} printed:\n{text}");
    }
}

#[test]
fn resolve_prints_a_table_with_provenance_and_no_secret() {
    let out = ok(&[
        "resolve",
        "examples/manifests/acme.yaml",
        "--integration",
        "orders",
        "--env",
        "production",
    ]);
    assert!(
        out.starts_with("# integration orders of project acme in environment production"),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("SMS_API_KEY "))
        .expect("SMS_API_KEY row");
    let cells: Vec<&str> = line
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        cells,
        [
            "SMS_API_KEY",
            "[REDACTED]",
            "twilio (project)",
            "ApiKey",
            "environment production override"
        ]
    );
    assert!(out.contains("LEGACY_CRM_PASSWORD"), "{out}");
    no_secret_in(&out);
}

#[test]
fn resolve_json_redacts_secrets_unless_asked() {
    let args = [
        "resolve",
        "examples/manifests/acme.toml",
        "-i",
        "crm-sync",
        "-e",
        "test",
        "-c",
        "initech",
        "--format",
        "json",
    ];
    let out = ok(&args);
    no_secret_in(&out);
    let report: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(report["customer"], "initech");
    let token = &report["variables"][1];
    assert_eq!(
        (&token["name"], &token["value"], &token["secret"]),
        (&"SALESFORCE_TOKEN".into(), &serde_json::Value::Null, &true.into())
    );
    assert_eq!(token["source_kind"], "customer-environment");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&[&args[..], &["--show-secrets"]].concat())).expect("json");
    assert_eq!(shown["variables"][1]["value"], "sf-initech-sandbox-55e");
}

#[test]
fn resolve_dotenv_feeds_a_shell() {
    let out = ok(&[
        "resolve",
        "examples/manifests/acme.json",
        "-i",
        "orders",
        "-e",
        "development",
        "-f",
        "dotenv",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("orders.env");
    std::fs::write(&file, &out).unwrap();
    let shell = Command::new("bash")
        .args([
            "--noprofile",
            "--norc",
            "-c",
            "set -a; . \"$1\"; printf '%s|%s|%s' \"$SMS_API_KEY\" \"$DB_PORT\" \"$LEGACY_CRM_PASSWORD\"",
            "sh",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&shell.stdout),
        "tw-dev-8f3a|5432|s3cr3t-crm"
    );
}

#[test]
fn explain_says_which_layer_won_and_why_the_others_did_not() {
    let out = ok(&[
        "explain",
        "examples/manifests/acme.yaml",
        "-i",
        "crm-sync",
        "-e",
        "test",
        "-c",
        "initech",
        "SALESFORCE_URL",
    ]);
    assert!(
        out.starts_with("SALESFORCE_URL = https://initech--sandbox.my.salesforce.com\n"),
        "{out}"
    );
    assert!(
        out.contains("  value from  customer initech in environment test override\n"),
        "{out}"
    );
    assert!(
        out.contains("    customer globex override: not for customer initech\n"),
        "{out}"
    );
    assert!(
        out.contains("    customer initech override: applies, but a more specific layer wins\n"),
        "{out}"
    );
    let out = ok(&[
        "explain",
        "examples/manifests/acme.yaml",
        "-i",
        "orders",
        "-e",
        "production",
        "SMS_API_KEY",
    ]);
    assert!(out.starts_with("SMS_API_KEY = [REDACTED] (secret)\n"), "{out}");
    assert!(
        out.contains("    environment development override: not for environment production\n"),
        "{out}"
    );
    no_secret_in(&out);
    let err = run(&[
        "explain",
        "examples/manifests/acme.yaml",
        "-i",
        "orders",
        "-e",
        "production",
        "NOPE",
    ]);
    assert_eq!(err.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&err.stderr)
            .contains("does not produce NOPE; it produces: SMS_URL, SMS_API_KEY")
    );
}

#[test]
fn a_broken_manifest_fails_with_file_path_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, "project: acme\nconnections:\n  - name: twilio\n    parameters:\n      ApiKey: {secret: true, default: sk_live_123456}\n").unwrap();
    let out = run(&["plan", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "broken.yaml: connections[0].parameters.ApiKey.default: a secret value must be a reference"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("sk_live"), "{stderr}");
    let out = run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["plan", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: connective"));
}

#[cfg(feature = "sqlite")]
#[test]
fn plan_apply_resolve_and_export_with_a_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("acme.db");
    let db = db.to_str().unwrap();
    let manifest = "examples/manifests/acme.yaml";
    let plan = ok(&["plan", manifest, "--db", db]);
    assert!(
        plan.starts_with("plan for project acme (r0): 7 to create, 0 to update, 0 to delete, 0 unchanged\n"),
        "{plan}"
    );
    let applied = ok(&["apply", manifest, "--db", db]);
    assert!(applied.contains("applied at r1"), "{applied}");
    // Applying again, even from the TOML twin, changes nothing.
    let again = ok(&["apply", "examples/manifests/acme.toml", "--db", db]);
    assert!(
        again.contains("0 to create, 0 to update, 0 to delete, 7 unchanged"),
        "{again}"
    );
    assert!(again.contains("nothing to apply"), "{again}");
    // The file holds the project: resolve without the manifest.
    let table = ok(&[
        "resolve",
        "--db",
        db,
        "--project",
        "acme",
        "-i",
        "orders",
        "-e",
        "production",
    ]);
    assert!(
        table.contains("DB_HOST                  db-prod.internal"),
        "{table}"
    );
    no_secret_in(&table);
    // Secrets are sealed in the file, with a key kept beside it for the demo.
    let raw = std::fs::read(db).unwrap();
    for s in SECRETS {
        assert!(
            !raw.windows(s.len()).any(|w| w == s.as_bytes()),
            "{s} in the database file"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(format!("{db}.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Export, then plan the export against the file: nothing to change.
    let exported = ok(&["export", "--db", db, "--project", "acme", "--format", "toml"]);
    no_secret_in(&exported);
    let file = dir.path().join("exported.toml");
    std::fs::write(&file, &exported).unwrap();
    let plan = ok(&["plan", file.to_str().unwrap(), "--db", db]);
    assert!(
        plan.contains("0 to create, 0 to update, 0 to delete, 7 unchanged"),
        "{plan}"
    );
}
