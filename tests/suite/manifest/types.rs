//! Manifests carry connection types (fields with labels, data types, rules
//! and visibility), templates (values, hidden, locked or overridable) and
//! the connections that follow them (type, template, embedded-builder mark):
//! loaded, planned and applied through the registry's checks, exported
//! back without a secret.

use connective::manifest::{
    Document, ExportOptions, Format, LoadOptions, Manifest, ManifestError, Rule, SecretRef, SecretSource,
    SecretSources, SourceContext, SourceError, export,
};
use connective::model::{BuilderAccess, SecretValue};
use connective::prelude::*;
use connective::registry::RegistryError;

/// The template's secret, which must never be written anywhere.
const CLIENT_SECRET: &str = "tmpl-s3cret-77f1";

/// A source standing in for a host's vault.
struct Vault;
impl SecretSource for Vault {
    fn fetch(&self, r: &SecretRef, _: &SourceContext) -> Result<SecretValue, SourceError> {
        match r.rest() {
            "kv/twilio" => Ok(SecretValue::new(CLIENT_SECRET)),
            other => Err(SourceError(format!("no secret at {other}"))),
        }
    }
}

fn vault() -> SecretSources {
    SecretSources::standard().register("vault", Vault).unwrap()
}

/// A manifest in the form export writes (so that the round trip can be
/// compared document for document).
const TYPED: &str = r#"
version: "1"
project: acme
types:
  twilio-api-key:
    label: Twilio API key
    description: A Twilio account reached with an API key.
    auth: api-key
    target: external
    fields:
      AccountSID:
        label: Account SID
        visibility: customer
        example: AC00000000000000000000000000000000
        pattern: "AC[0-9a-f]{32}"
      ApiKey:
        label: API key
        type: secret
      Region:
        type: { picklist: [eu, us] }
        default: us
        visibility: customer
      Timeout:
        type: integer
        optional: true
        visibility: programmatic
        min: 1
        max: 60
templates:
  acme-twilio:
    type: twilio-api-key
    label: Acme's Twilio account
    fields:
      ApiKey: { secret: true, default: "vault:kv/twilio", hidden: true }
      Region: { default: eu, environments: { production: us }, overridable: true }
connections:
  - name: sms
    target: { external: twilio }
    auth: api-key
    type: twilio-api-key
    template: acme-twilio
    builder: available
    parameters:
      AccountSID: { default: AC0123456789abcdef0123456789abcdef }
      ApiKey: { secret: true }
      Region: { environments: { development: eu } }
      Timeout: { optional: true }
"#;

fn load(text: &str, sources: &SecretSources) -> Result<Manifest, ManifestError> {
    Manifest::parse_with(
        text,
        Format::Yaml,
        "typed.yaml",
        &LoadOptions::new().sources(sources),
    )
}

#[test]
fn types_templates_and_visibility_round_trip_through_apply_and_export() {
    let sources = vault();
    let manifest = load(TYPED, &sources).unwrap_or_else(|e| panic!("{e}"));
    let registry = Registry::in_memory();
    let plan = manifest
        .plan(&registry, &sources)
        .unwrap_or_else(|e| panic!("{e}"));
    let s = plan.summary();
    // A type, a template, a connection.
    assert_eq!((s.create, s.update, s.delete), (3, 0, 0), "{plan}");
    plan.apply(&registry).unwrap();

    // The registry holds what the manifest says.
    let project: ProjectId = "acme".parse().unwrap();
    let ty = registry
        .connection_type(&project, &"twilio-api-key".parse().unwrap())
        .unwrap();
    assert_eq!(ty.label(), "Twilio API key");
    assert_eq!(ty.field("AccountSID").unwrap().visibility(), Visibility::Customer);
    assert_eq!(
        ty.field("Timeout").unwrap().visibility(),
        Visibility::Programmatic
    );
    let sms = registry
        .snapshot(&project)
        .unwrap()
        .by_name(None, &"sms".parse().unwrap())
        .map(|c| c.value.clone())
        .unwrap();
    assert_eq!(sms.spec().connection_type().unwrap().as_str(), "twilio-api-key");
    assert_eq!(sms.spec().template().unwrap().as_str(), "acme-twilio");
    assert_eq!(sms.spec().builder_access(), BuilderAccess::Available);

    // Exported, it is the manifest again, the template's secret kept by
    // reference and never written.
    let doc = export(&registry, &project, &ExportOptions::keep()).unwrap();
    let expected: Document =
        serde_saphyr::from_str(&TYPED.replace("\"vault:kv/twilio\"", "keep:existing")).unwrap();
    assert_eq!(doc, expected);
    for format in [Format::Yaml, Format::Toml, Format::Json] {
        let text = doc.to_text(format).unwrap();
        assert!(!text.contains(CLIENT_SECRET), "{format:?}: {text}");
        let back = Manifest::parse_with(&text, format, "export", &LoadOptions::new().sources(&sources))
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(back.document(), &doc, "{format:?}");
        let again = back
            .plan(&registry, &sources)
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert!(again.is_empty(), "{format:?}: {again}");
        assert_eq!(again.summary().unchanged, 3, "{again}");
    }
    // The original manifest plans nothing either.
    assert!(manifest.plan(&registry, &sources).unwrap().is_empty());
}

#[test]
fn a_change_to_a_template_is_planned_as_an_update_without_showing_secrets() {
    let sources = vault();
    let registry = Registry::in_memory();
    let plan = load(TYPED, &sources).unwrap().plan(&registry, &sources).unwrap();
    plan.apply(&registry).unwrap();
    let changed = TYPED.replace("production: us }, overridable", "production: eu }, overridable");
    let plan = load(&changed, &sources)
        .unwrap()
        .plan(&registry, &sources)
        .unwrap();
    let s = plan.summary();
    assert_eq!(
        (s.create, s.update, s.delete, s.unchanged),
        (0, 1, 0, 2),
        "{plan}"
    );
    let text = plan.to_string();
    assert!(text.contains("~ template acme-twilio"), "{text}");
    assert!(text.contains("field Region: environment production"), "{text}");
    assert!(!text.contains(CLIENT_SECRET), "{text}");
    plan.apply(&registry).unwrap();
    let template = registry
        .snapshot(&"acme".parse().unwrap())
        .unwrap()
        .template(&"acme-twilio".parse().unwrap())
        .map(|t| t.value.clone())
        .unwrap();
    assert_eq!(template.field("Region").unwrap().layers().len(), 2);
}

#[test]
fn a_connection_naming_an_unknown_type_is_a_typed_error_naming_it() {
    let sources = vault();
    let text = TYPED.replace(
        "    type: twilio-api-key\n    template",
        "    type: twilio-sms\n    template",
    );
    let err = load(&text, &sources)
        .unwrap()
        .plan(&Registry::in_memory(), &sources)
        .unwrap_err();
    let ManifestError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    let found = problems.iter().any(|p| {
        p.location.path == "connections[0]"
            && matches!(&p.rule, Rule::Refused(e) if matches!(&**e,
                RegistryError::UnknownType { name, .. } if name.as_str() == "twilio-sms"))
    });
    assert!(found, "{err}");
    assert!(err.to_string().contains("twilio-sms"), "{err}");
}

#[test]
fn a_template_naming_an_unknown_type_is_refused_too() {
    let sources = vault();
    let text = TYPED.replace(
        "    type: twilio-api-key\n    label: Acme",
        "    type: twilio-sms\n    label: Acme",
    );
    let err = load(&text, &sources)
        .unwrap()
        .plan(&Registry::in_memory(), &sources)
        .unwrap_err();
    let ManifestError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        problems.iter().any(|p| p.location.path == "templates.acme-twilio"
            && matches!(&p.rule, Rule::Refused(e) if matches!(&**e,
                RegistryError::UnknownType { name, .. } if name.as_str() == "twilio-sms"))),
        "{err}"
    );
}

#[test]
fn a_literal_template_secret_is_refused_without_repeating_it() {
    let sources = vault();
    let text = TYPED.replace("\"vault:kv/twilio\"", "hunter2-literal-9");
    let err = load(&text, &sources).unwrap_err();
    let ManifestError::Invalid { file, problems } = &err else {
        panic!("{err}");
    };
    assert_eq!(file, "typed.yaml");
    assert_eq!(problems.len(), 1, "{err}");
    assert_eq!(
        problems[0].location.path,
        "templates.acme-twilio.fields.ApiKey.default"
    );
    assert!(matches!(problems[0].rule, Rule::LiteralSecret), "{err}");
    assert!(!err.to_string().contains("hunter2-literal-9"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2-literal-9"), "{err:?}");
}

#[test]
fn a_connection_naming_an_undeclared_template_is_refused_at_load() {
    let sources = vault();
    let text = TYPED.replace("    template: acme-twilio\n", "    template: acme-sms\n");
    let err = load(&text, &sources).unwrap_err();
    let ManifestError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        problems
            .iter()
            .any(|p| p.location.path == "connections[0].template"
                && matches!(&p.rule, Rule::UnknownTemplate { name } if name.as_str() == "acme-sms")),
        "{err}"
    );
}

#[test]
fn a_type_breaking_the_models_rules_is_reported_at_its_path() {
    let sources = vault();
    let text = TYPED.replace("pattern: \"AC[0-9a-f]{32}\"", "pattern: \"(unclosed\"");
    let err = load(&text, &sources).unwrap_err();
    let ManifestError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        problems
            .iter()
            .any(|p| p.location.path == "types.twilio-api-key" && matches!(p.rule, Rule::Type(_))),
        "{err}"
    );
}

#[test]
fn a_template_secret_that_cannot_be_fetched_is_reported_at_its_path() {
    let sources = vault();
    let text = TYPED.replace("vault:kv/twilio", "vault:kv/missing");
    let err = load(&text, &sources)
        .unwrap()
        .plan(&Registry::in_memory(), &sources)
        .unwrap_err();
    let ManifestError::Invalid { problems, .. } = &err else {
        panic!("{err}");
    };
    assert!(
        problems.iter().any(|p| p.location.path == "templates.acme-twilio.fields.ApiKey.default"
            && matches!(&p.rule, Rule::SecretUnavailable { reference, .. } if reference == "vault:kv/missing")),
        "{err}"
    );
    // On an empty registry `keep:existing` has nothing to keep.
    let text = TYPED.replace("\"vault:kv/twilio\"", "keep:existing");
    let err = load(&text, &sources)
        .unwrap()
        .plan(&Registry::in_memory(), &sources)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("template acme-twilio has no secret ApiKey (default value) in the registry to keep"),
        "{err}"
    );
}
