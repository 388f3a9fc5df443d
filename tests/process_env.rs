//! Tests that set process environment variables (`env:` secret references
//! read them). They are a binary of their own, outside `tests/suite`:
//! setting a variable while other threads of the process may read the
//! environment outside Rust's lock (SQLite, the C library's resolver) is
//! unsound, and the suite runs every other test beside them. Here only these
//! tests run, none of them reading the environment that way.
#![cfg(all(feature = "manifest", unix))]

#[path = "suite/support/mod.rs"]
mod support;

/// Plan and apply with `env:` references (from `tests/suite/manifest/apply.rs`).
mod manifest_apply {
    use connective::manifest::{Action, ApplyError, ExportOptions, Format, Manifest, SecretSources, export};
    use connective::prelude::*;

    use crate::support::manifests::{apply, resolve, sample, small};

    #[test]
    fn a_changed_value_plans_an_update_that_shows_plain_values_but_never_secrets() {
        let registry = Registry::in_memory();
        unsafe { std::env::set_var("CONNECTIVE_SECRET_APPLY_TEST_KEY_A", "first-secret-value") };
        unsafe { std::env::set_var("CONNECTIVE_SECRET_APPLY_TEST_KEY_B", "second-secret-value") };
        apply(
            &small("env:CONNECTIVE_SECRET_APPLY_TEST_KEY_A", "https://one"),
            &registry,
        );
        let plan = small("env:CONNECTIVE_SECRET_APPLY_TEST_KEY_B", "https://two")
            .plan(&registry, &SecretSources::standard())
            .unwrap();
        let c = &plan.connections()[0];
        assert_eq!(c.action, Action::Update);
        assert_eq!(
            c.changes,
            [
                "parameter URL: default value changed (\"https://one\" → \"https://two\")",
                "parameter Key: secret default value changed",
            ]
        );
        assert_eq!(plan.mappings()[0].action, Action::Unchanged);
        let shown = format!("{plan} {plan:?}");
        assert!(
            !shown.contains("first-secret-value") && !shown.contains("second-secret-value"),
            "{shown}"
        );
        let id = c.id.unwrap();
        plan.apply(&registry).unwrap();
        let env = resolve(&registry, "orders", "production", None);
        assert_eq!(env[1].1, "second-secret-value");
        assert_eq!(
            registry.visible_connections(&"acme".parse().unwrap(), &"orders".parse().unwrap())[0]
                .connection
                .value
                .id(),
            id,
            "an update keeps the Connection ID"
        );
    }

    #[test]
    fn connection_config_ids_are_looked_up_in_the_registry_applied_to() {
        let registry = Registry::in_memory();
        unsafe { std::env::set_var("CONNECTIVE_SECRET_APPLY_TEST_KEY_C", "c") };
        apply(
            &small("env:CONNECTIVE_SECRET_APPLY_TEST_KEY_C", "https://x"),
            &registry,
        );
        let id = registry.visible_connections(&"acme".parse().unwrap(), &"orders".parse().unwrap())[0]
            .connection
            .value
            .id();
        let by_id = |id: &str| {
            Manifest::parse(
                &format!("project: acme\nconnections:\n  - name: api\n    auth: api-key\n    parameters:\n      URL: {{default: 'https://x'}}\n      Key: {{secret: true, default: 'keep:existing'}}\nintegrations:\n  orders:\n    connections:\n      - connectionConfig: {id}\n        env: [{{from: URL, to: API_URL}}, {{from: Key, to: API_KEY}}]\n"),
                Format::Yaml,
                "choreo.yaml",
            )
            .unwrap()
        };
        // Here the ID names `api`: the mapping now pins it (it was by name).
        let plan = by_id(&id.to_string())
            .plan(&registry, &SecretSources::standard())
            .unwrap();
        assert_eq!(plan.mappings()[0].action, Action::Update);
        assert_eq!(
            plan.mappings()[0].changes,
            [
                "uses connection api at project scope",
                "no longer uses connection api"
            ]
        );
        plan.apply(&registry).unwrap();
        let m = registry
            .mappings(&"acme".parse().unwrap(), &"orders".parse().unwrap())
            .unwrap();
        assert_eq!(
            m.value.uses()[0].reference,
            connective::model::ConnectionRef::Id(id)
        );
        // Export writes the pinned name, which applies anywhere and changes nothing here.
        let text = export(&registry, &"acme".parse().unwrap(), &ExportOptions::keep())
            .unwrap()
            .to_text(Format::Yaml)
            .unwrap();
        assert!(
            text.contains("- connection: api\n      scope: project\n"),
            "{text}"
        );
        assert!(!text.contains(&id.to_string()), "{text}");
        let back = Manifest::parse(&text, Format::Yaml, "export.yaml").unwrap();
        assert!(
            back.plan(&registry, &SecretSources::standard())
                .unwrap()
                .is_empty()
        );

        // Elsewhere the ID means nothing: the error says so, with the path.
        let err = by_id(&id.to_string())
            .plan(&Registry::in_memory(), &SecretSources::standard())
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains(&format!("choreo.yaml: integrations.orders.connections[0].connectionConfig: connection id {id} is not a connection of project acme")), "{text}");
        assert!(text.contains("refer to the connection by name"), "{text}");
    }

    #[test]
    fn export_with_references_moves_a_project_to_another_registry() {
        let source = Registry::in_memory();
        apply(&sample(), &source);
        let project: ProjectId = "acme".parse().unwrap();
        let doc = export(
            &source,
            &project,
            &ExportOptions::env_references("CONNECTIVE_SECRET_MOVE"),
        )
        .unwrap();
        let text = doc.to_text(Format::Yaml).unwrap();
        assert!(
            text.contains("production: env:CONNECTIVE_SECRET_MOVE_ORDERS_LEGACY_CRM_PASSWORD_PRODUCTION"),
            "{text}"
        );
        // The operator supplies the values under those names.
        for (name, value) in [
            ("CONNECTIVE_SECRET_MOVE_TWILIO_APIKEY_DEVELOPMENT", "tw-dev-8f3a"),
            ("CONNECTIVE_SECRET_MOVE_TWILIO_APIKEY_PRODUCTION", "tw-live-91c2"),
            ("CONNECTIVE_SECRET_MOVE_WAREHOUSE_PASSWORD", "pg-w4reh0use"),
            ("CONNECTIVE_SECRET_MOVE_SALESFORCE_CLIENTSECRET", "sf-client-3c9"),
            (
                "CONNECTIVE_SECRET_MOVE_SALESFORCE_ACCESSTOKEN_GLOBEX",
                "sf-globex-7d1",
            ),
            (
                "CONNECTIVE_SECRET_MOVE_SALESFORCE_ACCESSTOKEN_INITECH",
                "sf-initech-2b9",
            ),
            (
                "CONNECTIVE_SECRET_MOVE_SALESFORCE_ACCESSTOKEN_INITECH_TEST",
                "sf-initech-sandbox-55e",
            ),
            ("CONNECTIVE_SECRET_MOVE_ORDERS_LEGACY_CRM_PASSWORD", "s3cr3t-crm"),
            (
                "CONNECTIVE_SECRET_MOVE_ORDERS_LEGACY_CRM_PASSWORD_PRODUCTION",
                "pr0d-crm",
            ),
        ] {
            unsafe { std::env::set_var(name, value) };
        }
        let target = Registry::in_memory();
        apply(
            &Manifest::parse(&text, Format::Yaml, "moved.yaml").unwrap(),
            &target,
        );
        for env in ["development", "production"] {
            let strip = |v: Vec<(String, String)>| {
                v.into_iter()
                    .filter(|(n, _)| !n.contains("CLIENT"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                strip(resolve(&source, "orders", env, None)),
                strip(resolve(&target, "orders", env, None))
            );
        }
        // The sample manifest itself now plans nothing against the moved project.
        assert!(
            sample()
                .plan(&target, &SecretSources::standard())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_plan_made_before_another_write_is_refused() {
        let registry = Registry::in_memory();
        unsafe { std::env::set_var("CONNECTIVE_SECRET_APPLY_TEST_KEY_D", "d") };
        let m = small("env:CONNECTIVE_SECRET_APPLY_TEST_KEY_D", "https://x");
        let plan = m.plan(&registry, &SecretSources::standard()).unwrap();
        apply(
            &small("env:CONNECTIVE_SECRET_APPLY_TEST_KEY_D", "https://y"),
            &registry,
        );
        let err = plan.apply(&registry).unwrap_err();
        assert!(matches!(err, ApplyError::Stale { .. }), "{err}");
        assert!(err.is_retryable());
        assert!(
            err.to_string()
                .starts_with("project acme changed since the plan was made"),
            "{err}"
        );
        assert_eq!(resolve(&registry, "orders", "production", None)[0].1, "https://y");
    }
}

/// `env:` references read only what the host allows (from
/// `tests/suite/manifest/secrets.rs`).
mod manifest_secrets {
    use connective::manifest::{EnvSource, Manifest, Rule, SecretSource, SecretSources, SourceContext};
    use connective::prelude::*;

    use crate::support::manifests::{folders, reference, refused};

    #[test]
    fn env_references_read_only_what_the_host_allows_and_never_the_crates_own_keys() {
        let ctx = SourceContext::default();
        unsafe {
            std::env::set_var("CONNECTIVE_SEAL_KEY", "seal-key-material");
            std::env::set_var("CONNECTIVE_SECRET_ENV_TEST", "allowed-value");
            std::env::set_var("ENV_TEST_CI_TOKEN", "ci-token-value");
            std::env::set_var("PGPASSWORD", "pg-password-value");
        }
        let default = EnvSource::default();
        assert_eq!(
            default
                .fetch(&reference("env:CONNECTIVE_SECRET_ENV_TEST"), &ctx)
                .unwrap()
                .expose(),
            "allowed-value"
        );
        refused(
            &default,
            "env:ENV_TEST_CI_TOKEN",
            &ctx,
            "is not one the host allows (it allows names starting with CONNECTIVE_SECRET_)",
        );
        for source in [
            EnvSource::default(),
            EnvSource::any(),
            EnvSource::with_prefix(""),
            EnvSource::with_prefix("CONNECTIVE_"),
            EnvSource::allow(["CONNECTIVE_SEAL_KEY", "PGPASSWORD"]),
        ] {
            for name in ["CONNECTIVE_SEAL_KEY", "PGPASSWORD"] {
                refused(
                    &source,
                    &format!("env:{name}"),
                    &ctx,
                    "is one of the crate's own settings and is never read",
                );
            }
        }
        let listed = EnvSource::allow(["ENV_TEST_CI_TOKEN"]);
        assert_eq!(
            listed
                .fetch(&reference("env:ENV_TEST_CI_TOKEN"), &ctx)
                .unwrap()
                .expose(),
            "ci-token-value"
        );
        refused(
            &listed,
            "env:CONNECTIVE_SECRET_ENV_TEST",
            &ctx,
            "not one the host allows",
        );
        refused(
            &EnvSource::any(),
            "env:../x",
            &ctx,
            "not an environment variable name",
        );
    }

    #[test]
    fn an_escape_attempt_in_a_manifest_is_a_typed_problem_and_changes_nothing() {
        let f = folders();
        let text = "project: acme\nconnections:\n  - name: api\n    auth: api-key\n    parameters:\n      Key:\n        secret: true\n        environments:\n          development: file:../elsewhere/private.txt\n          production: env:CONNECTIVE_SEAL_KEY\n";
        let path = f.manifest.join("acme.yaml");
        std::fs::write(&path, text).unwrap();
        unsafe { std::env::set_var("CONNECTIVE_SEAL_KEY", "seal-key-material") };
        let manifest = Manifest::load(&path).unwrap();
        let registry = Registry::in_memory();
        let err = manifest.plan(&registry, &SecretSources::standard()).unwrap_err();
        let rules: Vec<&Rule> = err.problems().iter().map(|p| &p.rule).collect();
        assert!(
            matches!(
                &rules[..],
                [Rule::SecretUnavailable { .. }, Rule::SecretUnavailable { .. }]
            ),
            "{err}"
        );
        let text = format!("{err} {err:?}");
        assert!(
            !text.contains("not-for-the-manifest") && !text.contains("seal-key-material"),
            "{text}"
        );
        assert_eq!(registry.catalog().revision(), connective::model::Revision(0));
    }
}
