//! Choreo's component configuration: a real `component.yaml` (schema 1.1,
//! `connectionReferences` with fixed `CHOREO_<CONNECTION>_<PARAMETER>`
//! names, `configuration.env`), the older 1.0 `serviceReferences` and
//! `component-config.yaml`, imported into an integration's mappings against
//! a registry's connections.

use connective::manifest::{
    ComponentConfig, ImportOptions, Manifest, ManifestError, ResourceRef, SecretSources,
};
use connective::model::EnvVarName;
use connective::prelude::*;

const DIR: &str = "examples/manifests/choreo";

/// The sample project, in a registry whose default names have `prefix`.
fn sample(prefix: Option<&str>) -> Registry {
    let mut builder = Registry::builder();
    if let Some(p) = prefix {
        builder = builder.prefix(p.parse().unwrap());
    }
    let registry = builder.build().unwrap();
    let manifest = Manifest::load("examples/manifests/acme.yaml").unwrap();
    manifest
        .plan(&registry, &SecretSources::standard())
        .unwrap()
        .apply(&registry)
        .unwrap();
    registry
}

fn ids() -> (ProjectId, IntegrationId) {
    ("acme".parse().unwrap(), "orders".parse().unwrap())
}

/// Imports `config` for `orders`, stores it and returns the variables
/// resolved in production, sorted.
fn import_and_resolve(registry: &Registry, config: &ComponentConfig) -> Vec<String> {
    let (acme, orders) = ids();
    let import = config
        .mappings(registry, &acme, &orders, &ImportOptions::choreo())
        .unwrap_or_else(|e| panic!("{e}"));
    let version = registry
        .snapshot(&acme)
        .and_then(|s| s.mappings(&orders).map(|m| m.version));
    registry.set_mappings(import.mappings, version).unwrap();
    let env = registry
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap_or_else(|e| panic!("{e}"));
    let mut names: Vec<String> = env.iter().map(|v| v.name().to_string()).collect();
    names.sort();
    names
}

#[test]
fn a_component_yaml_1_1_gets_choreos_fixed_names_and_its_own() {
    let registry = sample(Some("CHOREO"));
    let config = ComponentConfig::load(format!("{DIR}/component.yaml")).unwrap();
    assert_eq!(config.version(), "1.1");
    assert_eq!(config.connection_references().len(), 3);
    assert!(matches!(
        &config.connection_references()[0].resource_ref,
        Some(ResourceRef::Service { project: Some(p), component, visibility: Some(v), .. })
            if p == "acme" && component == "inventory-api" && v == "PUBLIC"
    ));
    let (acme, orders) = ids();
    let import = config
        .mappings(&registry, &acme, &orders, &ImportOptions::choreo())
        .unwrap();
    assert_eq!(import.skipped, ["LOG_LEVEL"]);
    let names = import_and_resolve(&registry, &config);
    assert_eq!(
        names,
        [
            "CHOREO_INVENTORY_CONSUMERKEY",
            "CHOREO_INVENTORY_CONSUMERSECRET",
            "CHOREO_INVENTORY_SERVICEURL",
            "CHOREO_INVENTORY_TOKENURL",
            "CHOREO_TWILIO_APIKEY",
            "CHOREO_TWILIO_SERVICEURL",
            "CHOREO_WAREHOUSE_DATABASENAME",
            "CHOREO_WAREHOUSE_HOSTNAME",
            "CHOREO_WAREHOUSE_PASSWORD",
            "CHOREO_WAREHOUSE_PORT",
            "CHOREO_WAREHOUSE_USERNAME",
            "SMS_API_KEY",
        ]
    );
    // The same value under the fixed name and the component's own.
    let env = registry
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap();
    assert_eq!(
        env.get("SMS_API_KEY").unwrap().value().expose(),
        env.get("CHOREO_TWILIO_APIKEY").unwrap().value().expose()
    );
}

#[test]
fn devant_names_come_from_the_devant_prefix() {
    let registry = sample(Some("DEVANT"));
    let config = ComponentConfig::parse(
        "schemaVersion: 1.1\ndependencies:\n  connectionReferences:\n    - name: twilio\n      resourceRef: thirdparty:twilio/v1\n",
        "component.yaml",
    )
    .unwrap();
    let (acme, orders) = ids();
    assert!(
        config
            .mappings(&registry, &acme, &orders, &ImportOptions::choreo())
            .is_err()
    );
    let import = config
        .mappings(&registry, &acme, &orders, &ImportOptions::devant())
        .unwrap();
    registry.set_mappings(import.mappings, Some(Version(1))).unwrap();
    let env = registry
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap();
    assert!(env.get("DEVANT_TWILIO_APIKEY").is_some());
}

#[test]
fn the_older_shapes_import_explicit_names() {
    let registry = sample(None);
    let v10 = ComponentConfig::load(format!("{DIR}/component-v1.0.yaml")).unwrap();
    assert_eq!(v10.version(), "1.0");
    assert_eq!(
        import_and_resolve(&registry, &v10),
        [
            "DB_HOST",
            "DB_PASSWORD",
            "INVENTORY_CLIENT_ID",
            "INVENTORY_CLIENT_SECRET",
            "INVENTORY_TOKEN_URL",
            "INVENTORY_URL"
        ]
    );
    let legacy = ComponentConfig::load(format!("{DIR}/component-config.yaml")).unwrap();
    assert_eq!(legacy.version(), "core.choreo.dev/v1beta1");
    assert_eq!(import_and_resolve(&registry, &legacy), ["SMS_API_KEY", "SMS_URL"]);
    // A real 1.0 file names the connection by its Connection ID.
    let (acme, _) = ids();
    let twilio = registry
        .snapshot(&acme)
        .unwrap()
        .by_name(None, &"twilio".parse().unwrap())
        .unwrap()
        .value
        .id();
    let by_id = ComponentConfig::parse(
        &format!(
            "schemaVersion: \"1.0\"\ndependencies:\n  serviceReferences:\n    - name: thirdparty:twilio/v1\n      connectionConfig: {twilio}\n      env:\n        - {{from: ApiKey, to: TWILIO_KEY}}\n"
        ),
        "component.yaml",
    )
    .unwrap();
    assert_eq!(import_and_resolve(&registry, &by_id), ["TWILIO_KEY"]);
}

fn rules(result: Result<impl std::fmt::Debug, ManifestError>) -> Vec<(String, String)> {
    let err = result.expect_err("accepted");
    err.problems()
        .iter()
        .map(|p| {
            (
                p.location.path.clone(),
                format!("{:?}", p.rule)
                    .split([' ', '(', '{'])
                    .next()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

#[test]
fn every_problem_of_an_import_is_named_and_nothing_is_written() {
    let registry = sample(None);
    let before = registry.catalog().revision();
    let (acme, orders) = ids();
    let config = ComponentConfig::parse(
        "schemaVersion: 1.1\ndependencies:\n  connectionReferences:\n\
         \x20   - name: nowhere\n      resourceRef: thirdparty:nowhere/v1\n\
         \x20   - name: twilio\n      resourceRef: service:/acme/twilio/v1\n\
         \x20   - name: 'hr connection'\n      resourceRef: database:hr\n\
         configuration:\n  env:\n\
         \x20   - name: K\n      valueFrom: {connectionRef: {name: twilio, key: NoSuchKey}}\n\
         \x20   - name: L\n      valueFrom: {connectionRef: {name: other, key: ApiKey}}\n",
        "component.yaml",
    )
    .unwrap();
    let found = rules(config.mappings(&registry, &acme, &orders, &ImportOptions::choreo()));
    let want: Vec<(&str, &str)> = vec![
        ("dependencies.connectionReferences", "DefaultPrefix"),
        ("dependencies.connectionReferences[0].name", "UnknownConnection"),
        (
            "dependencies.connectionReferences[1].resourceRef",
            "TargetMismatch",
        ),
        ("dependencies.connectionReferences[2].name", "Ident"),
        ("configuration.env[1].valueFrom.connectionRef.name", "Misplaced"),
        ("", "Mapping"),
    ];
    let found: Vec<(&str, &str)> = found.iter().map(|(p, r)| (p.as_str(), r.as_str())).collect();
    assert_eq!(found, want);
    assert_eq!(registry.catalog().revision(), before);
    // Shape problems are found when the file is read.
    let bad = |text: &str| rules(ComponentConfig::parse(text, "component.yaml"));
    assert_eq!(
        bad("schemaVersion: 2.0\n"),
        [("schemaVersion".into(), "ComponentVersion".into())]
    );
    assert_eq!(
        bad(
            "schemaVersion: 1.1\ndependencies:\n  connectionReferences:\n    - {name: a, resourceRef: 'service:a/b'}\n"
        ),
        [(
            "dependencies.connectionReferences[0].resourceRef".into(),
            "ResourceRef".into()
        )]
    );
    assert_eq!(
        bad(
            "schemaVersion: 1.0\ndependencies:\n  connectionReferences:\n    - {name: a, resourceRef: 'a/v1'}\n"
        ),
        [("dependencies.connectionReferences[0]".into(), "Misplaced".into())]
    );
    assert_eq!(bad("endpoints: []\n"), [(String::new(), "Misplaced".into())]);
    let prefix: EnvVarName = "CHOREO".parse().unwrap();
    assert_eq!(ImportOptions::default().prefix(), &prefix);
}

#[test]
fn resource_refs_follow_choreos_own_validator() {
    // The cases of Choreo's component.yaml validator: accepted, then refused.
    for ok in [
        "service:/HRProject/UserComponent/v1/ad088/PUBLIC",
        "service:/mttm/mmvhxd/v1.1/ad088/PUBLIC",
        "/mttm/mmvhxd/v1.1/ad088/PUBLIC",
        "mmvhxd/v1.1/ad088/PUBLIC",
        "mmvhxd/v1.1/PUBLIC",
        "mmvhxd/v1.1/ad088",
        "mmvhxd/v1.1",
        "/mmtm/mmvhxd/v1.1",
        "thirdparty:mttm/v1.1",
        "thirdparty:service name_test-v1.1/v1.1",
        "database:mySqlDbServer/hotelDb",
        "database:hotelDb",
    ] {
        assert!(ResourceRef::parse(ok).is_some(), "{ok}");
    }
    for bad in [
        "service:mttm/mmvhxd/v1.1/ad088/PUBLIC",
        "service:/mttm/mmvhxd/v1.1/ad088/PRIVATE",
        "mttm/mmvhxd/v1.1/ad088/PUBLIC",
        "mmvhxd/v1.1/ad088/",
        "mmvhxd/v1.1/",
        "thirdparty:mttm/v1.1/invalid",
        "thirdparty:v1.1",
        "thirdparty:mmtm/",
        "database:mySqlDbServerV1.1/hotelDb",
        "database:mySqlDbServer/hotelDb/invalid",
        "database:/mySqlDbServer/hotelDb",
        "THIRDPARTY:mySqlDbServer/hotelDb/invalid",
        "",
    ] {
        assert!(ResourceRef::parse(bad).is_none(), "{bad}");
    }
}

/// A wide component.yaml (40,000 connection references, and an env entry
/// for each) is refused for its size in time proportional to it: references
/// and the connections they name are found by hash, not by scanning all
/// before them.
#[test]
fn a_wide_component_yaml_is_refused_in_time_proportional_to_its_size() {
    let n = 40_000;
    let registry = Registry::builder()
        .prefix("CHOREO".parse().unwrap())
        .build()
        .unwrap();
    let specs = (0..n)
        .map(|i| {
            ConnectionSpec::project("acme", format!("c{i}").as_str())
                .param(Param::plain("Url").default("https://example.com"))
                .build()
                .unwrap()
        })
        .collect::<Vec<_>>();
    registry
        .write(|tx| {
            for spec in specs {
                tx.create_connection(spec)?;
            }
            Ok(())
        })
        .unwrap();
    let mut text = String::from("schemaVersion: 1.1\ndependencies:\n  connectionReferences:\n");
    for i in 0..n {
        text.push_str(&format!(
            "    - {{name: c{i}, resourceRef: 'thirdparty:c{i}/v1'}}\n"
        ));
    }
    text.push_str("configuration:\n  env:\n");
    for i in 0..n {
        text.push_str(&format!(
            "    - {{name: V{i}, valueFrom: {{connectionRef: {{name: c{i}, key: Url}}}}}}\n"
        ));
    }
    let config = ComponentConfig::parse(&text, "component.yaml").unwrap();
    let (acme, orders) = ids();
    let start = std::time::Instant::now();
    let err = config
        .mappings(&registry, &acme, &orders, &ImportOptions::choreo())
        .expect_err("past the bounds of one integration's mappings");
    let took = start.elapsed();
    // Refused for its size, each bound named with what was counted.
    let said = err.to_string();
    assert!(said.contains("80000 connections, at most 1024 allowed"), "{said}");
    assert!(said.contains("40000 env entries, at most 4096 allowed"), "{said}");
    assert!(
        took < std::time::Duration::from_secs(20),
        "{n} references took {took:?}"
    );
}
