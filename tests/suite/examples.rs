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

/// The rows of the first Markdown table after `heading` in `text` whose first
/// cell is a feature name in backticks: those names.
fn feature_rows(text: &str, heading: &str) -> Vec<String> {
    let section = text
        .split(heading)
        .nth(1)
        .unwrap_or_else(|| panic!("no {heading:?} section"));
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cell = l.trim_start_matches('|').split('|').next()?.trim();
            Some(cell.strip_prefix('`')?.strip_suffix('`')?.to_owned())
        })
        .collect()
}

/// Every cargo feature a newcomer can turn on is in the README's table and the
/// crate documentation's, and neither lists a feature Cargo.toml lacks.
#[test]
fn the_feature_tables_name_every_cargo_feature() {
    let cargo = include_str!("../../Cargo.toml");
    let mut features: Vec<String> = cargo
        .split("[features]\n")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("Cargo.toml has a [features] table")
        .lines()
        .filter_map(|l| l.split_once(" = ").map(|(name, _)| name.trim().to_owned()))
        .filter(|name| !name.starts_with('#') && name != "default")
        .collect();
    features.sort();
    let lib = include_str!("../../src/lib.rs")
        .replace("//! ", "")
        .replace("//!", "");
    for (what, text, heading) in [
        (
            "README.md",
            include_str!("../../README.md").to_owned(),
            "## Features",
        ),
        ("src/lib.rs", lib, "# Features"),
    ] {
        let mut listed = feature_rows(&text, heading);
        listed.sort();
        assert_eq!(listed, features, "the feature table of {what}");
    }
}

/// The README's first manifest, with its `env:` references answered by a
/// stand-in for the applying process's environment and its `file:` ones read
/// beside the sample manifests.
#[cfg(feature = "manifest")]
mod readme_manifest {
    use connective::manifest::{
        Format, LoadOptions, Manifest, SecretRef, SecretSource, SecretSources, SourceContext, SourceError,
    };
    use connective::model::SecretValue;
    use connective::prelude::*;

    /// The `CONNECTIVE_SECRET_*` variables the manifest names.
    struct Environment;
    impl SecretSource for Environment {
        fn fetch(&self, r: &SecretRef, _: &SourceContext) -> Result<SecretValue, SourceError> {
            match r.rest() {
                "CONNECTIVE_SECRET_TWILIO_LIVE_KEY" => Ok(SecretValue::new("tw-live-readme")),
                "CONNECTIVE_SECRET_SF_CLIENT" => Ok(SecretValue::new("sf-client-readme")),
                "CONNECTIVE_SECRET_SF_GLOBEX" => Ok(SecretValue::new("sf-globex-readme")),
                "CONNECTIVE_SECRET_SF_INITECH" => Ok(SecretValue::new("sf-initech-readme")),
                "CONNECTIVE_SECRET_SF_INITECH_SANDBOX" => Ok(SecretValue::new("sf-initech-sandbox-readme")),
                "CONNECTIVE_SECRET_CRM_PASSWORD" => Ok(SecretValue::new("crm-readme")),
                other => Err(SourceError(format!("environment variable {other} is not set"))),
            }
        }
    }

    /// The section of the README on manifests.
    fn section() -> &'static str {
        include_str!("../../README.md")
            .split("## Manifests (feature `manifest`)")
            .nth(1)
            .expect("the README has a section on manifests")
    }

    /// The first block of `language` in the section.
    fn block(language: &str) -> &'static str {
        section()
            .split(&format!("```{language}\n"))
            .nth(1)
            .and_then(|s| s.split("```").next())
            .unwrap_or_else(|| panic!("the README shows a {language} block on manifests"))
    }

    fn sources() -> SecretSources {
        SecretSources::standard().register("env", Environment).unwrap()
    }

    fn parse(text: &str) -> Result<Manifest, connective::manifest::ManifestError> {
        Manifest::parse_with(
            text,
            Format::Yaml,
            "acme.yaml",
            &LoadOptions::new().sources(&sources()),
        )
    }

    /// The error the README shows is the one its manifest, with the two
    /// mistakes it names, gives.
    #[test]
    fn the_readmes_manifest_error_is_the_one_shown() {
        let text = block("yaml");
        let inventory = "development: https://dev.internal/inventory";
        let crm = "      - connection: legacy-crm  ";
        assert!(text.contains(inventory) && text.contains(crm), "{text}");
        let wrong = text
            .replacen(inventory, "Prod: https://dev.internal/inventory", 1)
            .replacen(crm, "      - connection: legacy-cm   ", 1);
        let err = parse(&wrong).expect_err("two mistakes");
        assert_eq!(err.to_string(), block("text").trim_end());
    }

    #[test]
    fn the_readmes_manifest_loads_applies_and_resolves_as_its_comments_say() {
        let sources = sources();
        let manifest = parse(block("yaml"))
            .unwrap_or_else(|e| panic!("{e}"))
            .with_base_dir(Some("examples/manifests".into()));
        let registry = Registry::in_memory();
        let plan = manifest
            .plan(&registry, &sources)
            .unwrap_or_else(|e| panic!("{e}"));
        plan.apply(&registry).unwrap_or_else(|e| panic!("{e}"));
        assert!(manifest.plan(&registry, &sources).unwrap().is_empty());

        let orders = registry
            .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            orders.expose("SMS_URL"),
            Some("https://api.twilio.com/2010-04-01")
        );
        assert_eq!(orders.expose("SMS_API_KEY"), Some("tw-live-readme"));
        assert_eq!(orders.expose("INVENTORY_URL"), Some("https://internal/inventory"));
        // The project's shared application supplies the OAuth client.
        assert!(orders.expose("INVENTORY_CLIENT_ID").is_some());
        assert!(orders.get("INVENTORY_CLIENT_SECRET").unwrap().value().is_secret());
        // `legacy-crm` without `env`: its parameters under default names.
        assert_eq!(
            orders.expose("LEGACY_CRM_SERVICEURL"),
            Some("https://crm.example.com")
        );
        assert_eq!(orders.expose("LEGACY_CRM_PASSWORD"), Some("crm-readme"));
        assert_eq!(orders.len(), 7, "{orders}");
        let development = registry
            .resolve(&ResolveRequest::parse("acme", "orders", "development").unwrap())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(development.expose("SMS_API_KEY"), Some("tw-dev-8f3a"));

        // `crm-sync` gets the customer's own token; `test` the sandbox one.
        let token = |customer: &str, environment: &str| {
            let request = ResolveRequest::parse("acme", "crm-sync", environment)
                .unwrap()
                .for_customer(customer)
                .unwrap();
            let env = registry.resolve(&request).unwrap_or_else(|e| panic!("{e}"));
            env.expose("SALESFORCE_TOKEN").map(str::to_owned)
        };
        assert_eq!(token("globex", "production").as_deref(), Some("sf-globex-readme"));
        assert_eq!(
            token("initech", "production").as_deref(),
            Some("sf-initech-readme")
        );
        assert_eq!(
            token("initech", "test").as_deref(),
            Some("sf-initech-sandbox-readme")
        );
    }
}

/// The PostgreSQL example pointed at a server that is not there says why it
/// cannot connect, not only that it cannot.
#[cfg(all(feature = "postgres", feature = "test-kit"))]
#[test]
fn postgres_example_says_why_it_cannot_connect() {
    // A loopback port nothing listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = Command::new(example("postgres"))
        .arg(format!(
            "host=127.0.0.1 port={port} user=app dbname=connections connect_timeout=5"
        ))
        .env_remove("CONNECTIVE_SEAL_KEY")
        .output()
        .expect("example runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: postgres store unavailable: cannot connect to 127.0.0.1:{port}/connections: error connecting to server: Connection refused"
        )),
        "{stderr}"
    );
}
