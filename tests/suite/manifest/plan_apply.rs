//! A plan and its apply agree: the plan replays its writes in the registry's
//! dry run, so what it accepts, apply does (with the report the plan
//! previewed), and what apply would refuse, the plan reports. Checked on
//! every sample manifest and on generated manifests applied one after
//! another.

use std::collections::BTreeMap;

use connective::manifest::{
    Applied, Format, Manifest, Plan, Rule, SecretRef, SecretSource, SecretSources, SourceContext, SourceError,
};
use connective::model::{ConnectionId, SecretValue};
use connective::prelude::*;
use connective::registry::WriteReport;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Value, json};

/// What a report says a write does, with the Connection IDs of connections
/// the write creates replaced by their position (a dry run draws its own).
#[derive(Debug, PartialEq)]
struct Effect {
    created: usize,
    provisioned: Vec<String>,
    released: Vec<String>,
    rotated: Vec<String>,
    rebindings: Vec<String>,
}

fn effect(report: &WriteReport) -> Effect {
    let name = |id: ConnectionId| match report.created.iter().position(|c| *c == id) {
        Some(i) => format!("new connection #{i}"),
        None => id.to_string(),
    };
    // A dedicated application is named after its connection.
    let apps = |apps: &[(ProjectId, AppOwner)]| -> Vec<String> {
        apps.iter()
            .map(|(project, owner)| match owner {
                AppOwner::Connection(id) => format!("{project}: application of {}", name(*id)),
                other => format!("{project}: {other}"),
            })
            .collect()
    };
    Effect {
        created: report.created.len(),
        provisioned: apps(&report.provisioned),
        released: apps(&report.released),
        rotated: apps(&report.rotated),
        rebindings: report
            .rebindings
            .iter()
            .map(|r| {
                format!(
                    "{}/{}: {} {} -> {}",
                    r.project,
                    r.integration,
                    r.name,
                    name(r.before),
                    r.after.map_or("nothing".into(), name)
                )
            })
            .collect(),
    }
}

/// Applies `plan` and checks that it did what the plan said it would.
fn apply_as_planned(plan: &Plan, registry: &Registry) -> Result<Applied, TestCaseError> {
    let applied = plan
        .apply(registry)
        .map_err(|e| TestCaseError::fail(format!("the plan was accepted, its apply refused: {e}")))?;
    prop_assert_eq!(applied.summary, plan.summary());
    prop_assert_eq!(effect(&applied.report), effect(plan.preview()));
    prop_assert_eq!(applied.created.len(), plan.preview().created.len());
    Ok(applied)
}

/// Plans `manifest` against `registry` and, if the plan is accepted, applies
/// it, checking that apply agrees and that planning again changes nothing;
/// a refused plan leaves the registry as it was.
fn plan_and_apply(
    manifest: &Manifest,
    registry: &Registry,
    sources: &SecretSources,
) -> Result<Option<Applied>, TestCaseError> {
    let before = registry.catalog().revision();
    match manifest.plan(registry, sources) {
        Ok(plan) => {
            let applied = apply_as_planned(&plan, registry)?;
            let again = manifest
                .plan(registry, sources)
                .map_err(|e| TestCaseError::fail(format!("planning again after apply failed: {e}")))?;
            prop_assert!(
                again.is_empty(),
                "planning again after apply changes things:\n{again}"
            );
            Ok(Some(applied))
        }
        Err(_) => {
            prop_assert_eq!(
                registry.catalog().revision(),
                before,
                "a refused plan wrote something"
            );
            Ok(None)
        }
    }
}

#[test]
fn every_sample_manifest_plans_exactly_what_its_apply_does() {
    let samples = [
        "examples/manifests/acme.yaml",
        "examples/manifests/acme.toml",
        "examples/manifests/acme.json",
    ];
    let sources = SecretSources::standard();
    let shared = Registry::in_memory();
    for (i, path) in samples.iter().enumerate() {
        let manifest = Manifest::load(path).unwrap_or_else(|e| panic!("{e}"));
        // Into an empty registry: everything is created, the shared OAuth
        // application provisioned.
        let fresh = Registry::in_memory();
        let applied = plan_and_apply(&manifest, &fresh, &sources)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .unwrap_or_else(|| panic!("{path}: the plan was refused"));
        assert!(!applied.report.provisioned.is_empty(), "{path}");
        // One after another into the same registry: the first creates, the
        // others find everything as declared.
        let applied = plan_and_apply(&manifest, &shared, &sources)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .unwrap_or_else(|| panic!("{path}: the plan was refused"));
        if i > 0 {
            assert_eq!(
                applied.summary.create + applied.summary.update + applied.summary.delete,
                0,
                "{path}"
            );
        }
    }
}

/// The writes a plan makes run in one order: connections, then mappings,
/// then deletions. A mapping is therefore checked while a connection the
/// manifest deletes still shadows the one it declares; apply refuses that,
/// and so must the plan (a plan that checked its own picture of the
/// project, as it once did, accepted it).
#[test]
fn a_plan_refuses_what_apply_refuses_while_an_undeclared_connection_still_shadows() {
    let registry = Registry::in_memory();
    registry
        .create_connection(
            ConnectionSpec::project("acme", "crm")
                .param(Param::plain("Url").default("https://crm"))
                .build()
                .unwrap(),
        )
        .unwrap();
    registry
        .create_connection(
            ConnectionSpec::integration("acme", "orders", "crm")
                .param(Param::plain("Region").default("eu"))
                .build()
                .unwrap(),
        )
        .unwrap();
    let manifest = Manifest::parse(
        r#"{"version": "1", "project": "acme",
            "connections": [{"name": "crm", "parameters": {"Url": {"default": "https://crm"}}}],
            "integrations": {"orders": {"connections": [{"connection": "crm", "env": [{"from": "Url", "to": "CRM_URL"}]}]}}}"#,
        Format::Json,
        "shadow.json",
    )
    .unwrap();
    let err = manifest.plan(&registry, &SecretSources::none()).unwrap_err();
    let connective::manifest::ManifestError::Invalid { problems, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        problems.iter().any(|p| matches!(
            &p.rule,
            Rule::Mapping(connective::resolve::Problem::UnknownParam { .. })
        )),
        "{err}"
    );
    // What apply does with these writes: the same refusal.
    let orders_crm = registry
        .visible_connections(&"acme".parse().unwrap(), &"orders".parse().unwrap())
        .into_iter()
        .find(|v| v.connection.value.scope() != &Scope::Project)
        .unwrap();
    let refused = registry.write(|tx| {
        tx.set_mappings(
            Mappings::of("acme", "orders")
                .by_name("crm", [("Url", "CRM_URL")])
                .build()?,
            None,
        )?;
        tx.delete_connection(
            &"acme".parse().unwrap(),
            orders_crm.connection.value.id(),
            orders_crm.connection.version,
            DeleteMode::Refuse,
        )
    });
    assert!(
        matches!(refused, Err(RegistryError::InvalidMappings { .. })),
        "{refused:?}"
    );
}

/// A host's vault behind the `env:` scheme: `env:NAME` is `v-NAME`.
struct Vault;

impl SecretSource for Vault {
    fn fetch(&self, r: &SecretRef, _: &SourceContext) -> Result<SecretValue, SourceError> {
        Ok(SecretValue::new(format!("v-{}", r.rest())))
    }
}

const NAMES: [&str; 3] = ["crm", "sms", "db"];
const INTEGRATIONS: [&str; 2] = ["orders", "billing"];
/// `Key` is secret; an entry may also name `ConsumerKey`, which only a
/// managed OAuth connection has.
const PARAMS: [&str; 4] = ["Url", "Region", "Key", "ConsumerKey"];
const VARS: [&str; 4] = ["A_URL", "B_URL", "KEY", "PATH"];

/// One generated connection.
#[derive(Debug, Clone)]
struct GenConnection {
    name: usize,
    /// `None`: project scope.
    integration: Option<usize>,
    /// 0: none, 1: api-key, 2: oauth2 with the shared application, 3: oauth2
    /// with a dedicated one.
    auth: usize,
    /// Which of the first three [`PARAMS`] it has, and a value of each (0:
    /// none, the parameter optional).
    params: BTreeMap<usize, usize>,
}

/// One generated use: which connection (an index into the manifest's
/// connections, of those the integration can see) and its entries
/// (`None`: default variable names).
#[derive(Debug, Clone)]
struct GenUse {
    connection: usize,
    env: Option<Vec<(usize, usize)>>,
}

fn connection() -> impl Strategy<Value = GenConnection> {
    (
        0..NAMES.len(),
        prop::option::of(0..INTEGRATIONS.len()),
        0..4usize,
        prop::collection::btree_map(0..3usize, 0..3usize, 0..3),
    )
        .prop_map(|(name, integration, auth, mut params)| {
            if auth == 1 {
                // An api-key connection needs its secret.
                params.entry(2).or_insert(1);
            }
            GenConnection {
                name,
                integration,
                auth,
                params,
            }
        })
}

fn use_() -> impl Strategy<Value = GenUse> {
    (
        any::<prop::sample::Index>(),
        prop::option::weighted(0.6, prop::collection::vec((0..PARAMS.len(), 0..VARS.len()), 1..3)),
    )
        .prop_map(|(connection, env)| GenUse {
            connection: connection.index(usize::MAX),
            env,
        })
}

/// Connections (one per name and scope) and, per integration, its uses.
type GenManifest = (Vec<GenConnection>, BTreeMap<usize, Vec<GenUse>>);

fn manifest() -> impl Strategy<Value = GenManifest> {
    (
        prop::collection::vec(connection(), 0..5),
        prop::collection::btree_map(0..INTEGRATIONS.len(), prop::collection::vec(use_(), 1..3), 0..3),
    )
        .prop_map(|(mut connections, integrations)| {
            let mut seen = std::collections::HashSet::new();
            connections.retain(|c| seen.insert((c.name, c.integration)));
            (connections, integrations)
        })
}

/// The manifest's JSON text. A use names one of the connections its
/// integration can see (none: the use is left out); an entry may still name
/// a parameter the connection lacks, which the loader refuses.
fn manifest_json((connections, integrations): &GenManifest) -> String {
    let docs: Vec<Value> = connections.iter().map(connection_json).collect();
    let integrations: serde_json::Map<String, Value> = integrations
        .iter()
        .map(|(i, uses)| {
            let visible: Vec<&GenConnection> = connections
                .iter()
                .filter(|c| c.integration.is_none_or(|own| own == *i))
                .collect();
            let uses: Vec<Value> = uses
                .iter()
                .filter(|_| !visible.is_empty())
                .map(|u| {
                    let mut doc = json!({"connection": NAMES[visible[u.connection % visible.len()].name]});
                    if let Some(env) = &u.env {
                        let entries: Vec<Value> = env
                            .iter()
                            .map(|(p, v)| json!({"from": PARAMS[*p], "to": VARS[*v]}))
                            .collect();
                        doc["env"] = json!(entries);
                    }
                    doc
                })
                .collect();
            (INTEGRATIONS[*i].to_string(), json!({"connections": uses}))
        })
        .collect();
    json!({"version": "1", "project": "acme", "connections": docs, "integrations": integrations}).to_string()
}

fn connection_json(c: &GenConnection) -> Value {
    let mut params = serde_json::Map::new();
    for (p, v) in &c.params {
        let param = match PARAMS[*p] {
            "Key" => json!({"secret": true, "default": format!("env:key{v}")}),
            _ if *v == 0 => json!({"optional": true}),
            _ => json!({"default": format!("value-{v}")}),
        };
        params.insert(PARAMS[*p].into(), param);
    }
    let mut doc = json!({"name": NAMES[c.name], "parameters": params});
    if let Some(i) = c.integration {
        doc["integration"] = json!(INTEGRATIONS[i]);
    }
    match c.auth {
        1 => doc["auth"] = json!("api-key"),
        2 | 3 => {
            doc["auth"] = json!("oauth2");
            doc["target"] = json!({"platform": {"integration": format!("{}-api", NAMES[c.name])}});
            if c.auth == 3 {
                doc["client"] = json!("dedicated");
            }
        }
        _ => {}
    }
    doc
}

/// `cases` cases; a failure is kept next to this file and replayed first.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(cases)
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Generated manifests applied one after another to one registry (so
    /// later ones update, rename, reshadow and delete what earlier ones
    /// made): each plan the registry accepts applies with the effect it
    /// previewed and leaves nothing to do; each plan it refuses writes
    /// nothing.
    #[test]
    fn generated_manifests_plan_exactly_what_their_apply_does(
        manifests in prop::collection::vec(manifest(), 1..4),
    ) {
        let registry = Registry::in_memory();
        let sources = SecretSources::none().register("env", Vault).unwrap();
        for generated in &manifests {
            let text = manifest_json(generated);
            // Manifests the loader refuses (a connection declared twice, an
            // entry naming an undeclared parameter) never reach a plan.
            let Ok(manifest) = Manifest::parse(&text, Format::Json, "generated.json") else {
                continue;
            };
            plan_and_apply(&manifest, &registry, &sources)?;
        }
    }
}
