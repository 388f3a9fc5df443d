//! Plan and apply: differences by stable key (project, scope, name), one
//! atomic write, idempotent; Choreo `connectionConfig` IDs; export that
//! round-trips without ever writing a secret.

use connective::manifest::{
    ExportOptions, Format, LoadOptions, Manifest, ManifestError, Rule, SecretRef, SecretSource,
    SecretSources, SourceContext, SourceError, export,
};
use connective::model::SecretValue;
use connective::prelude::*;

use crate::support::manifests::{apply, resolve, sample, small, small_with};

const SAMPLE_SECRETS: [&str; 9] = [
    "tw-dev-8f3a",
    "tw-live-91c2",
    "pg-w4reh0use",
    "sf-client-3c9",
    "sf-globex-7d1",
    "sf-initech-2b9",
    "sf-initech-sandbox-55e",
    "s3cr3t-crm",
    "pr0d-crm",
];

/// A source standing in for a host's vault.
struct Vault;
impl SecretSource for Vault {
    fn fetch(&self, r: &SecretRef, _: &SourceContext) -> Result<SecretValue, SourceError> {
        match r.rest() {
            "kv/api" => Ok(SecretValue::new("vault-value-1")),
            other => Err(SourceError(format!("no secret at {other}"))),
        }
    }
}

#[test]
fn applying_the_sample_creates_everything_and_applying_again_changes_nothing() {
    let registry = Registry::in_memory();
    let m = sample();
    let plan = m.plan(&registry, &SecretSources::standard()).unwrap();
    let s = plan.summary();
    assert_eq!(
        (s.create, s.update, s.delete, s.unchanged),
        (7, 0, 0, 0),
        "{plan}"
    );
    let applied = plan.apply(&registry).unwrap();
    assert_eq!(applied.created.len(), 5);
    assert_eq!(
        applied.report.provisioned.len(),
        1,
        "the project's shared OAuth application"
    );
    let revision = registry.catalog().revision();

    let again = m.plan(&registry, &SecretSources::standard()).unwrap();
    assert!(again.is_empty(), "{again}");
    assert_eq!(again.summary().unchanged, 7);
    let applied = again.apply(&registry).unwrap();
    assert_eq!(applied.report.revision, revision);
    assert_eq!(registry.catalog().revision(), revision, "nothing was written");

    let orders = resolve(&registry, "orders", "production", None);
    let get = |name: &str| orders.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    assert_eq!(get("SMS_API_KEY"), Some("tw-live-91c2"));
    assert_eq!(get("DB_HOST"), Some("db-prod.internal"));
    assert_eq!(get("DB_PORT"), Some("5432"));
    assert_eq!(get("LEGACY_CRM_PASSWORD"), Some("pr0d-crm"));
    assert_eq!(get("LEGACY_CRM_TIMEOUT"), None, "optional without a value");
    assert_eq!(get("INVENTORY_CLIENT_SECRET").map(str::len), Some(48));
    let test = resolve(&registry, "crm-sync", "test", Some("initech"));
    assert_eq!(
        test[1],
        ("SALESFORCE_TOKEN".into(), "sf-initech-sandbox-55e".into())
    );
}

#[test]
fn the_same_manifest_gives_the_same_result_on_two_registries() {
    let (a, b) = (Registry::in_memory(), Registry::in_memory());
    let m = sample();
    apply(&m, &a);
    apply(&m, &b);
    let id = |r: &Registry| {
        r.visible_connections(&"acme".parse().unwrap(), &"orders".parse().unwrap())[0]
            .connection
            .value
            .id()
    };
    assert_ne!(id(&a), id(&b), "Connection IDs are local to a registry");
    for (integration, customer) in [("orders", None), ("crm-sync", Some("globex"))] {
        for env in ["development", "production"] {
            let (x, y) = (
                resolve(&a, integration, env, customer),
                resolve(&b, integration, env, customer),
            );
            // OAuth credentials are each registry's own; everything else is equal.
            let strip = |v: Vec<(String, String)>| {
                v.into_iter()
                    .filter(|(n, _)| !n.contains("CLIENT"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(strip(x), strip(y), "{integration} {env}");
        }
    }
}

#[test]
fn what_the_manifest_no_longer_declares_is_deleted_mappings_first() {
    let registry = Registry::in_memory();
    apply(&sample(), &registry);
    let m = Manifest::parse(
        "project: acme\nconnections:\n  - name: twilio\n    auth: api-key\n    target: { external: twilio }\n    description: SMS for every integration of the project\n    parameters:\n      ServiceURL: { default: https://api.twilio.com/2010-04-01 }\n      ApiKey: { secret: true, environments: { development: keep:existing, production: keep:existing } }\n",
        Format::Yaml,
        "shrunk.yaml",
    )
    .unwrap();
    let plan = m.plan(&registry, &SecretSources::standard()).unwrap();
    let s = plan.summary();
    assert_eq!(
        (s.create, s.update, s.delete, s.unchanged),
        (0, 0, 6, 1),
        "{plan}"
    );
    let text = plan.to_string();
    assert!(text.contains("- connection inventory (project scope)"), "{text}");
    assert!(text.contains("- mappings of integration orders"), "{text}");
    let applied = plan.apply(&registry).unwrap();
    assert_eq!(
        applied.report.released.len(),
        1,
        "the shared OAuth application goes with its last user"
    );
    let snapshot = registry.snapshot(&"acme".parse().unwrap()).unwrap();
    assert_eq!(snapshot.connection_count(), 1);
    assert_eq!(snapshot.all_mappings().count(), 0);
    assert!(m.plan(&registry, &SecretSources::standard()).unwrap().is_empty());
}

#[test]
fn export_round_trips_in_every_format_and_never_writes_a_secret() {
    let registry = Registry::in_memory();
    apply(&sample(), &registry);
    let project: ProjectId = "acme".parse().unwrap();
    let doc = export(&registry, &project, &ExportOptions::keep()).unwrap();
    for format in [Format::Yaml, Format::Toml, Format::Json] {
        let text = doc.to_text(format).unwrap();
        for secret in SAMPLE_SECRETS {
            assert!(!text.contains(secret), "{format:?} export holds {secret}");
        }
        assert!(text.contains("keep:existing"), "{text}");
        let back = Manifest::parse(&text, format, "export").unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(back.document(), &doc, "{format:?}");
        let plan = back.plan(&registry, &SecretSources::standard()).unwrap();
        assert!(plan.is_empty(), "{format:?}: {plan}");
    }
    // Applied to an empty registry, `keep:existing` has nothing to keep.
    let back = Manifest::from_document(doc, "export.yaml").unwrap();
    let err = back
        .plan(&Registry::in_memory(), &SecretSources::standard())
        .unwrap_err();
    assert!(
        err.to_string().contains("connections[1].parameters.AccessToken.customers.globex: keep:existing keeps the registry's current secret value, but the registry has none for salesforce.AccessToken (customer globex override)"),
        "{err}"
    );
}

#[test]
fn secret_sources_resolve_references_and_report_failures_without_values() {
    let registry = Registry::in_memory();
    let vault = SecretSources::standard().register("vault", Vault).unwrap();
    let with_vault = LoadOptions::new().sources(&vault);
    let plan = small_with("vault:kv/api", "https://x", &with_vault)
        .plan(&registry, &vault)
        .unwrap();
    plan.apply(&registry).unwrap();
    assert_eq!(
        resolve(&registry, "orders", "production", None)[1].1,
        "vault-value-1"
    );

    // Accepted when loaded, but planned with sources that lack the scheme.
    let err: ManifestError = small_with("vault:kv/api", "https://x", &with_vault)
        .plan(&registry, &SecretSources::standard())
        .unwrap_err();
    assert!(
        matches!(err.problems()[0].rule, Rule::UnknownScheme { .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "small.yaml: connections[0].parameters.Key.default: the secret reference does not start with a registered \
         scheme (env:, file:, keep:); the value is not repeated here"
    );
    let err = small_with("vault:kv/other", "https://x", &with_vault)
        .plan(&registry, &vault)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "small.yaml: connections[0].parameters.Key.default: secret reference vault:kv/other cannot be read: no secret at kv/other"
    );
    let err = small("env:CONNECTIVE_SECRET_APPLY_TEST_SURELY_UNSET", "https://x")
        .plan(&registry, &vault)
        .unwrap_err();
    assert!(
        err.to_string()
            .ends_with("environment variable CONNECTIVE_SECRET_APPLY_TEST_SURELY_UNSET is not set"),
        "{err}"
    );
    let err = small("file:no/such/file", "https://x")
        .plan(&registry, &vault)
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "secret reference file:no/such/file cannot be read: there is no folder to read it from"
        ),
        "{err}"
    );
    assert!(SecretSources::standard().register("keep", Vault).is_err());
    assert!(SecretSources::standard().register("Vault", Vault).is_err());
}

#[test]
fn mappings_are_checked_against_the_host_policy_at_plan_time() {
    let registry = Registry::builder()
        .prefix("CHOREO".parse().unwrap())
        .build()
        .unwrap();
    let m = Manifest::parse(
        "project: acme\nconnections:\n  - name: a\n    parameters:\n      URL: {default: u}\n  - name: b\n    parameters:\n      URL: {default: v}\nintegrations:\n  orders:\n    connections:\n      - connection: a\n        env: [{from: URL, to: PATH}, {from: URL, to: SAME}]\n      - connection: b\n        env: [{from: URL, to: SAME}]\n",
        Format::Yaml,
        "policy.yaml",
    )
    .unwrap();
    let err = m.plan(&registry, &SecretSources::standard()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("policy.yaml: integrations.orders: variable PATH (from a.URL) is reserved"),
        "{text}"
    );
    assert!(
        text.contains("policy.yaml: integrations.orders: variable SAME is produced by both a.URL and b.URL"),
        "{text}"
    );
    assert_eq!(registry.catalog().revision().0, 0, "nothing was written");
}

#[test]
fn an_integration_scope_connection_and_a_pinned_reference() {
    let registry = Registry::in_memory();
    let m = Manifest::parse(
        "project: acme\nconnections:\n  - name: crm\n    parameters: {URL: {default: project-crm}}\n  - name: crm\n    integration: orders\n    parameters: {URL: {default: own-crm}}\nintegrations:\n  orders:\n    connections:\n      - connection: crm\n        env: [{from: URL, to: NEAREST}]\n      - connection: crm\n        scope: project\n        env: [{from: URL, to: SHARED}]\n",
        Format::Yaml,
        "pin.yaml",
    )
    .unwrap();
    apply(&m, &registry);
    let env = resolve(&registry, "orders", "production", None);
    assert_eq!(
        env,
        [
            ("NEAREST".into(), "own-crm".into()),
            ("SHARED".into(), "project-crm".into())
        ]
    );
    let doc = export(&registry, &"acme".parse().unwrap(), &ExportOptions::keep()).unwrap();
    let back = Manifest::from_document(doc, "x").unwrap();
    assert!(
        back.plan(&registry, &SecretSources::standard())
            .unwrap()
            .is_empty()
    );
}

/// A project whose mappings refer to a connection deleted with
/// `DeleteMode::Force` cannot be exported as a manifest the loader takes
/// back: export refuses, naming every dangling (integration, reference);
/// once the mappings are set right, what it writes loads, plans to
/// nothing on the same registry, and applies to an empty one that exports
/// the same document.
#[test]
fn export_refuses_references_a_forced_delete_left_and_round_trips_once_they_are_fixed() {
    use connective::manifest::{DanglingReference, ExportError};
    use connective::model::ConnectionRef;

    let registry = Registry::in_memory();
    let project: ProjectId = "acme".parse().unwrap();
    let plain = |name: &str, integration: Option<&str>| {
        let spec = match integration {
            Some(i) => ConnectionSpec::integration("acme", i, name),
            None => ConnectionSpec::project("acme", name),
        };
        spec.target(Target::external(name))
            .param(Param::plain("ServiceURL").default(format!("https://{name}.example")))
            .build()
            .unwrap()
    };
    let (crm, _) = registry.create_connection(plain("crm", None)).unwrap();
    let (billing, _) = registry.create_connection(plain("billing", None)).unwrap();
    let (erp, _) = registry.create_connection(plain("erp", Some("orders"))).unwrap();
    let orders = |m: Mappings| registry.set_mappings(m, None).unwrap();
    orders(
        Mappings::of("acme", "orders")
            .by_id(crm.to_string().as_str(), [("ServiceURL", "CRM_URL")])
            .by_name_defaults("billing")
            .by_id_defaults(erp.to_string().as_str())
            .build()
            .unwrap(),
    );
    orders(
        Mappings::of("acme", "invoices")
            .by_name("crm", [("ServiceURL", "CRM")])
            .build()
            .unwrap(),
    );
    for id in [crm, billing] {
        registry
            .delete_connection(&project, id, Version(1), DeleteMode::Force)
            .unwrap();
    }

    let err = export(&registry, &project, &ExportOptions::keep()).unwrap_err();
    let ExportError::DanglingReferences {
        project: p,
        references,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(p, &project);
    let dangling = |integration: &str, reference: ConnectionRef| (integration.to_owned(), reference);
    assert_eq!(
        references
            .iter()
            .map(|d: &DanglingReference| (d.integration.to_string(), d.reference.clone()))
            .collect::<Vec<_>>(),
        vec![
            dangling("invoices", ConnectionRef::Name("crm".parse().unwrap())),
            dangling("orders", ConnectionRef::Id(crm)),
            dangling("orders", ConnectionRef::Name("billing".parse().unwrap())),
        ]
    );
    assert_eq!(
        err.to_string(),
        format!(
            "project acme cannot be exported: mappings refer to connections it no longer has (deleted with \
             DeleteMode::Force): integration invoices refers to connection named crm; integration orders refers \
             to connection {crm}; integration orders refers to connection named billing; set those mappings to a \
             connection of the project, or remove them, and export again"
        )
    );

    // The operator points the mappings at what exists.
    let version = |integration: &str| {
        registry
            .snapshot(&project)
            .unwrap()
            .all_mappings()
            .find(|m| m.value.integration().as_str() == integration)
            .map(|m| m.version)
    };
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_id_defaults(erp.to_string().as_str())
                .build()
                .unwrap(),
            version("orders"),
        )
        .unwrap();
    let invoices = version("invoices").unwrap();
    registry
        .write(|tx| tx.delete_mappings(&project, &"invoices".parse().unwrap(), invoices))
        .unwrap();
    let doc = export(&registry, &project, &ExportOptions::keep()).unwrap();
    for format in [Format::Yaml, Format::Toml, Format::Json] {
        let text = doc.to_text(format).unwrap();
        let back = Manifest::parse(&text, format, "export").unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(back.document(), &doc, "{format:?}");
        let plan = back.plan(&registry, &SecretSources::standard()).unwrap();
        assert!(plan.is_empty(), "{format:?}: {plan}");
    }
    let fresh = Registry::in_memory();
    apply(
        &Manifest::from_document(doc.clone(), "export.yaml").unwrap(),
        &fresh,
    );
    assert_eq!(export(&fresh, &project, &ExportOptions::keep()).unwrap(), doc);
}
