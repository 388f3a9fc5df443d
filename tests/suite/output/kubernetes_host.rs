//! A Kubernetes host builds with the `kubernetes` feature: connective picks no
//! Kubernetes version, so a host that enables `k8s-openapi/latest` itself, as
//! every `kube` host does, compiles and runs.
//!
//! The test writes such a host in a temporary folder (a path dependency on
//! this crate, `k8s-openapi = { version = "0.29", features = ["latest"] }`),
//! builds it with `cargo build --offline` from the registry this build has
//! already downloaded, and runs it. Its target folder is kept under this
//! crate's `target/tmp`, so only the first run compiles the dependencies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const HOST_MAIN: &str = r#"
use connective::fixture::Fixture;
use connective::model::Param;
use connective::output::kubernetes::{KubernetesOptions, to_kubernetes};
use k8s_openapi::api::core::v1::Container;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fx = Fixture::project("acme")
        .connection("twilio", |c| {
            c.param(Param::plain("ServiceURL").default("https://api.twilio.com"))
                .param(Param::secret("ApiKey").default("sk_live"))
        })
        .mappings("orders", |m| m.by_name("twilio", [("ServiceURL", "SMS_URL"), ("ApiKey", "SMS_KEY")]))
        .build()?;
    let out = to_kubernetes(&fx.resolve("orders", "production")?, &KubernetesOptions::new("orders-env")?)?;
    let container = Container { name: "orders".into(), env: Some(out.env), ..Container::default() };
    k8s_openapi::k8s_if_1_37! { println!("kubernetes 1.37"); }
    println!("{}", serde_json::to_string(&container)?);
    Ok(())
}
"#;

fn host_manifest(connective: &Path) -> String {
    format!(
        r#"[package]
name = "k8s-host"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
connective = {{ path = {path:?}, features = ["kubernetes"] }}
k8s-openapi = {{ version = "0.29", features = ["latest"] }}
serde_json = "1"

[workspace]
"#,
        path = connective.display().to_string()
    )
}

#[test]
fn a_host_enabling_k8s_openapi_latest_builds_and_runs() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let host = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(host.path().join("src")).expect("src");
    std::fs::write(host.path().join("Cargo.toml"), host_manifest(&crate_dir)).expect("manifest");
    std::fs::write(host.path().join("src/main.rs"), HOST_MAIN).expect("main.rs");
    // This crate's lock file: the versions already in the local registry.
    std::fs::copy(crate_dir.join("Cargo.lock"), host.path().join("Cargo.lock")).expect("lock file");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("k8s-host-target");

    let started = Instant::now();
    let out = Command::new(env!("CARGO"))
        .args(["run", "--offline", "--quiet"])
        .current_dir(host.path())
        .env("CARGO_TARGET_DIR", &target)
        // No debug info: the first build takes a third less time.
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .env("CARGO_INCREMENTAL", "0")
        // What this repository's `.cargo/config.toml` sets must not help the host.
        .env_remove("K8S_OPENAPI_ENABLED_VERSION")
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the host does not build:\n{stderr}");
    // Straight to the terminal: the harness captures `eprintln!`.
    use std::io::Write as _;
    let _ = writeln!(
        std::io::stderr(),
        "k8s host built and ran in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("kubernetes 1.37"), "{stdout}");
    let container: serde_json::Value =
        serde_json::from_str(lines.next().expect("a container")).expect("json");
    assert_eq!(
        container["env"],
        serde_json::json!([
            {"name": "SMS_URL", "value": "https://api.twilio.com"},
            {"name": "SMS_KEY", "valueFrom": {"secretKeyRef": {"name": "orders-env", "key": "SMS_KEY"}}},
        ])
    );
}
