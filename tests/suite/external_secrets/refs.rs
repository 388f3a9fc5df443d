//! Secrets that live in an external store (Vault, OpenBao): a secret
//! parameter's value layer holds a reference (`vault:secret/crm#password`),
//! kept as a reference by manifests, the registry and the durable stores
//! (nothing copied), resolved from the host's in-memory view with a
//! provenance naming the store, path, key, version and fetch time, and a
//! typed problem naming the reference (never a value) when there is none.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use connective::manifest::{Format, Manifest, Rule, SecretSources};
use connective::model::{
    ConnectionTemplate, ExternalFault, ExternalRef, ExternalSecrets, ExternalValue, FetchInfo, Layer,
    ParamValues, ResolvePolicy, SecretValue, SecretVersion, TemplateField, Timestamp, TypeProblem,
};
use connective::prelude::*;
use connective::resolve::{Problem, ValueSource};
use connective::store::SqliteStore;
use connective::store::seal::{KeyRing, SealKey};

const MANIFEST: &str = "\
project: acme
connections:
  - name: crm
    auth: basic
    parameters:
      ServiceURL:
        default: https://crm.example
      Password:
        secret: true
        default: file:dev-password.txt
        environments:
          production: vault:secret/crm/prod#password
          staging: openbao:kv/team-a:crm?version=3#password
integrations:
  orders:
    connections:
      - connection: crm
        env: [{from: ServiceURL, to: CRM_URL}, {from: Password, to: CRM_PASSWORD}]
";

/// An in-memory view answering from a map, as a host's cache would.
#[derive(Default)]
struct MapView {
    values: std::sync::Mutex<HashMap<String, (String, Option<&'static str>)>>,
    generation: AtomicU64,
}

impl MapView {
    fn put(&self, reference: &str, value: &str, version: Option<&'static str>) {
        self.values
            .lock()
            .unwrap()
            .insert(reference.to_owned(), (value.to_owned(), version));
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

impl ExternalSecrets for MapView {
    fn lookup(&self, reference: &ExternalRef) -> Result<ExternalValue, ExternalFault> {
        let values = self.values.lock().unwrap();
        let (value, version) = values
            .get(&reference.to_string())
            .ok_or(ExternalFault::NotFetched)?;
        Ok(ExternalValue {
            value: SecretValue::new(value.clone()),
            fetch: Arc::new(FetchInfo::new(
                version.map(|v| v.parse::<SecretVersion>().unwrap()),
                Timestamp(1_700_000_000),
            )),
        })
    }
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

fn ring() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("k1", &[9; 32]).expect("key"))
}

fn raw_bytes(path: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(PathBuf::from(p)) {
            all.extend(bytes);
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn registry(path: &Path, view: Option<Arc<MapView>>) -> Registry {
    let mut policy = ResolvePolicy::default();
    if let Some(view) = view {
        policy = policy.with_external_secrets(view);
    }
    Registry::builder()
        .store(SqliteStore::open(path, ring()).expect("open"))
        .policy(policy)
        .build()
        .expect("registry")
}

/// Applies [`MANIFEST`], written in `dir` beside the file its `file:`
/// reference reads.
fn apply(registry: &Registry, dir: &Path) {
    std::fs::write(dir.join("dev-password.txt"), "dev-pw-stored-41").unwrap();
    std::fs::write(dir.join("acme.yaml"), MANIFEST).unwrap();
    let manifest = Manifest::load(dir.join("acme.yaml")).expect("manifest");
    let plan = manifest.plan(registry, &SecretSources::standard()).expect("plan");
    plan.apply(registry).expect("apply");
}

fn request(env: &str) -> ResolveRequest {
    ResolveRequest::parse("acme", "orders", env).unwrap()
}

#[test]
fn a_manifest_reference_is_kept_as_a_reference_through_apply_the_store_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connections.db");
    {
        let registry = registry(&path, None);
        apply(&registry, dir.path());
    }
    // Reopened from the file: the layers hold the references, not values.
    let registry = registry(&path, None);
    let snapshot = registry.snapshot(&"acme".parse().unwrap()).expect("project");
    let crm = snapshot.connections().next().expect("crm");
    let password = crm.value.spec().param("Password").expect("Password");
    let ParamValues::Secret(layers) = password.values() else {
        panic!("Password is secret")
    };
    let prod = Layer::Environment("production".parse().unwrap());
    let staging = Layer::Environment("staging".parse().unwrap());
    assert_eq!(
        layers.external(&prod).map(ToString::to_string).as_deref(),
        Some("vault:secret/crm/prod#password")
    );
    let pinned = layers.external(&staging).expect("staging reference");
    assert_eq!(
        (
            pinned.store().as_str(),
            pinned.mount(),
            pinned.path(),
            pinned.key()
        ),
        ("openbao", "kv/team-a", "crm", "password")
    );
    assert_eq!(pinned.version().map(|v| v.as_str()), Some("3"));
    assert!(
        layers.external(&Layer::Default).is_none(),
        "the file: value is read at apply and stored"
    );
    // The file holds the reference as text, and the file: value only sealed.
    let raw = raw_bytes(&path);
    assert!(contains(&raw, "vault:secret/crm/prod#password"));
    assert!(!contains(&raw, "dev-pw-stored-41"));

    // Exported, the reference comes back as it is (and the stored one as keep:existing).
    let doc = connective::manifest::export(&registry, &"acme".parse().unwrap(), &Default::default())
        .expect("export")
        .to_text(Format::Yaml)
        .unwrap();
    assert!(doc.contains("vault:secret/crm/prod#password"), "{doc}");
    assert!(doc.contains("openbao:kv/team-a:crm?version=3#password"), "{doc}");
    assert!(doc.contains("keep:existing"), "{doc}");
    // And applying the export again changes nothing.
    let again = Manifest::parse(&doc, Format::Yaml, "export.yaml").expect("export parses");
    let plan = again.plan(&registry, &SecretSources::standard()).expect("plan");
    assert!(plan.is_empty(), "{plan}");
}

#[test]
fn resolution_reads_the_view_and_names_the_reference_in_provenance() {
    let dir = tempfile::tempdir().unwrap();
    let view = Arc::new(MapView::default());
    let registry = registry(&dir.path().join("c.db"), Some(view.clone()));
    apply(&registry, dir.path());

    // Not in the view yet: a typed problem naming the reference, no value.
    let err = registry
        .view(&"acme".parse().unwrap())
        .resolve(&request("production"))
        .unwrap_err();
    let problem = err.problems.first().expect("a problem").clone();
    match &problem {
        Problem::ExternalSecret {
            reference,
            fault,
            param,
            ..
        } => {
            assert_eq!(reference.to_string(), "vault:secret/crm/prod#password");
            assert_eq!(param.as_str(), "Password");
            assert_eq!(fault, &ExternalFault::NotFetched);
        }
        other => panic!("expected an external secret problem, got {other}"),
    }
    assert!(
        problem.to_string().contains("vault:secret/crm/prod#password"),
        "{problem}"
    );

    // In the view: the store's value, with where and when it came from.
    view.put("vault:secret/crm/prod#password", "prod-pw-v1", Some("7"));
    let env = registry
        .view(&"acme".parse().unwrap())
        .resolve(&request("production"))
        .unwrap();
    let var = env.get("CRM_PASSWORD").unwrap();
    assert_eq!(var.value().expose(), "prod-pw-v1");
    match &var.provenance().source {
        ValueSource::External {
            layer,
            template: None,
            reference,
            fetch,
        } => {
            assert_eq!(
                layer.to_string(),
                Layer::Environment("production".parse().unwrap()).to_string()
            );
            assert_eq!(reference.path(), "crm/prod");
            assert_eq!(reference.key(), "password");
            assert_eq!(fetch.version.as_ref().map(|v| v.as_str()), Some("7"));
            assert_eq!(fetch.fetched_at, Timestamp(1_700_000_000));
        }
        other => panic!("expected an external source, got {other}"),
    }
    let said = var.provenance().to_string();
    assert!(
        said.contains("vault:secret/crm/prod#password") && said.contains("version 7"),
        "{said}"
    );
    assert!(!said.contains("prod-pw-v1"), "{said}");

    // Rotated in the store: the next resolution sees it, with no apply.
    let before = registry.catalog().revision();
    view.put("vault:secret/crm/prod#password", "prod-pw-v2", Some("8"));
    let env = registry
        .view(&"acme".parse().unwrap())
        .resolve(&request("production"))
        .unwrap();
    assert_eq!(env.get("CRM_PASSWORD").unwrap().value().expose(), "prod-pw-v2");
    assert_eq!(registry.catalog().revision(), before);

    // A stored value resolves as before, beside.
    let env = registry
        .view(&"acme".parse().unwrap())
        .resolve(&request("development"))
        .unwrap();
    let var = env.get("CRM_PASSWORD").unwrap();
    assert_eq!(var.value().expose(), "dev-pw-stored-41");
    assert!(matches!(
        var.provenance().source,
        ValueSource::Layer(Layer::Default)
    ));
}

#[test]
fn without_a_view_a_referenced_value_is_a_typed_problem() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(&dir.path().join("c.db"), None);
    apply(&registry, dir.path());
    let err = registry
        .view(&"acme".parse().unwrap())
        .resolve(&request("production"))
        .unwrap_err();
    assert!(
        err.problems.iter().any(|p| matches!(
            p,
            Problem::ExternalSecret {
                fault: ExternalFault::NoCache,
                ..
            }
        )),
        "{err}"
    );
}

#[test]
fn a_malformed_store_reference_is_refused_at_load_without_repeating_it() {
    let text = MANIFEST.replace("vault:secret/crm/prod#password", "vault:hunter2-oops");
    let err = Manifest::parse(&text, Format::Yaml, "acme.yaml").unwrap_err();
    let problems = err.problems();
    assert!(
        problems.iter().any(|p| matches!(p.rule, Rule::BadExternalRef(_))),
        "{err}"
    );
    let said = format!("{err} {err:?}");
    assert!(!said.contains("hunter2"), "{said}");
}

#[test]
fn a_reference_on_a_plain_parameter_is_refused_by_the_builder() {
    let err = ConnectionSpec::project("acme", "crm")
        .param(Param::plain("ServiceURL").default_ref("vault:secret/crm#url"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("only secret parameters"), "{err}");
    let err = ConnectionSpec::project("acme", "crm")
        .param(Param::secret("Password").default_ref("vault:secret/crm"))
        .build()
        .unwrap_err();
    assert!(!err.to_string().contains("secret/crm"), "{err}");
}

/// The organization's Slack app: its client secret lives in the vault for
/// production, is kept by connective for the other environments.
fn slack_app() -> (ConnectionType, ConnectionTemplate) {
    let ty = ConnectionType::builder("slack-oauth2")
        .field(Field::string("ClientID"))
        .field(Field::secret("ClientSecret"))
        .build()
        .unwrap();
    let template = ConnectionTemplate::builder("acme", "acme-slack", "slack-oauth2")
        .field(TemplateField::plain("ClientID").default("acme-client").hidden())
        .field(
            TemplateField::secret("ClientSecret")
                .default("acme-dev-secret-7731")
                .env_ref("production", "vault:secret/slack/prod#client_secret")
                .hidden(),
        )
        .build()
        .unwrap();
    (ty, template)
}

#[test]
fn a_template_secret_in_an_external_store_resolves_and_says_it_comes_from_the_template() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("templates.db");
    let acme: ProjectId = "acme".parse().unwrap();
    let (ty, template) = slack_app();
    {
        let registry = registry(&path, None);
        registry.put_type(&acme, ty.clone(), None).unwrap();
        registry.put_template(template.clone(), None).unwrap();
        registry
            .create_connection(
                ConnectionSpec::project("acme", "slack")
                    .target(Target::external("slack"))
                    .of_template(&ty, &template)
                    .build()
                    .unwrap(),
            )
            .unwrap();
        registry
            .set_mappings(
                Mappings::of("acme", "orders")
                    .by_name("slack", [("ClientSecret", "SLACK_SECRET")])
                    .build()
                    .unwrap(),
                None,
            )
            .unwrap();
    }
    // The file holds the reference, never a copy of a value.
    let bytes = raw_bytes(&path);
    assert!(contains(&bytes, "vault:secret/slack/prod#client_secret") || contains(&bytes, "slack/prod"));
    assert!(!contains(&bytes, "acme-dev-secret-7731"));

    // Loaded anew: the template keeps the reference as a reference.
    let view = Arc::new(MapView::default());
    let registry = registry(&path, Some(Arc::clone(&view)));
    let stored = registry.template(&acme, &"acme-slack".parse().unwrap()).unwrap();
    let ParamValues::Secret(layers) = stored.value.field("ClientSecret").unwrap().values() else {
        panic!("a secret field");
    };
    let production = Layer::Environment("production".parse().unwrap());
    assert_eq!(
        layers.external(&production).map(ToString::to_string).as_deref(),
        Some("vault:secret/slack/prod#client_secret")
    );

    // Not in the host's view yet: a typed problem naming the reference.
    let error = registry.resolve(&request("production")).unwrap_err();
    assert!(
        matches!(&error.problems[..], [Problem::ExternalSecret { reference, .. }]
            if reference.to_string() == "vault:secret/slack/prod#client_secret"),
        "{error}"
    );

    view.put(
        "vault:secret/slack/prod#client_secret",
        "slack-prod-secret",
        Some("4"),
    );
    let env = registry.resolve(&request("production")).unwrap();
    let var = env.get("SLACK_SECRET").unwrap();
    assert_eq!(var.value().expose(), "slack-prod-secret");
    match &var.provenance().source {
        ValueSource::External {
            layer,
            template: Some(template),
            reference,
            fetch,
            ..
        } => {
            assert_eq!(template.as_str(), "acme-slack");
            assert_eq!(*layer, production);
            assert_eq!(reference.to_string(), "vault:secret/slack/prod#client_secret");
            assert_eq!(fetch.version.as_ref().map(|v| v.as_str()), Some("4"));
        }
        other => panic!("expected an external source from the template, got {other:?}"),
    }
    assert_eq!(
        var.provenance().source.layer(),
        None,
        "not a layer of the connection's own"
    );
    let said = var.provenance().source.to_string();
    assert!(
        said.starts_with(
            "template acme-slack, environment production override, from vault:secret/slack/prod#client_secret"
        ) && said.contains("version 4"),
        "{said}"
    );
    // Elsewhere the template's stored value, from the template.
    let dev = registry.resolve(&request("development")).unwrap();
    let var = dev.get("SLACK_SECRET").unwrap();
    assert_eq!(var.value().expose(), "acme-dev-secret-7731");
    assert!(
        matches!(&var.provenance().source, ValueSource::Template { template, .. } if template == "acme-slack")
    );
}

#[test]
fn a_template_takes_external_references_for_secret_fields_only() {
    let bad = ConnectionTemplate::builder("acme", "acme-slack", "slack-oauth2")
        .field(TemplateField::plain("ClientID").default_ref("vault:secret/slack#client_id"))
        .field(TemplateField::secret("ClientSecret").env_ref("production", "vault:secret/slack-no-key"))
        .build()
        .unwrap_err();
    let said = bad.to_string();
    assert!(
        matches!(
            &bad.problems[..],
            [
                TypeProblem::ExternalOnPlain { field },
                TypeProblem::BadExternalRef { field: secret, .. },
            ] if field.as_str() == "ClientID" && secret.as_str() == "ClientSecret"
        ),
        "{said}"
    );
    // The text of a bad reference is not repeated: it may be a secret.
    assert!(!said.contains("slack-no-key"), "{said}");

    // An operator moves the production secret into the vault.
    let (_, mut template) = slack_app();
    let production = Layer::Environment("production".parse().unwrap());
    template
        .set_ref(
            &"ClientSecret".parse().unwrap(),
            production.clone(),
            "openbao:kv/prod:slack#secret",
        )
        .unwrap();
    let ParamValues::Secret(layers) = template.field("ClientSecret").unwrap().values() else {
        panic!("a secret field");
    };
    assert_eq!(
        layers.external(&production).map(ToString::to_string).as_deref(),
        Some("openbao:kv/prod:slack#secret")
    );
    let plain = template
        .set_ref(
            &"ClientID".parse().unwrap(),
            Layer::Default,
            "vault:secret/slack#id",
        )
        .unwrap_err();
    assert!(
        matches!(&plain.problems[..], [TypeProblem::ExternalOnPlain { .. }]),
        "{plain}"
    );
}
