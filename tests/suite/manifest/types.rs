//! Manifests carry connection types (fields with labels, data types, rules
//! and visibility), templates (values, hidden, locked or overridable) and
//! the connections that follow them (type, template, embedded-builder mark):
//! loaded, planned and applied through the registry's checks, exported
//! back without a secret.

use connective::manifest::{
    Document, ExportError, ExportOptions, Format, LoadOptions, Manifest, ManifestError, Rule, SecretHolder,
    SecretRef, SecretSource, SecretSources, SourceContext, SourceError, export,
};
use connective::model::{BuilderAccess, Layer, ParamValues, ResolvePolicy, SecretValue, TypeLibrary};
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

/// A mail relay type whose port rule `min` sets, and a connection on
/// `port`.
fn relay(min: u16, port: u16) -> String {
    format!(
        r#"
project: acme
types:
  relay:
    fields:
      HostName: {{}}
      Port: {{ type: integer, min: {min}, max: 65535 }}
connections:
  - name: mail
    type: relay
    parameters:
      HostName: {{ default: relay.internal }}
      Port: {{ default: "{port}" }}
"#
    )
}

#[test]
fn one_apply_tightens_a_type_and_fixes_its_connections_but_refuses_a_final_misfit() {
    let sources = SecretSources::standard();
    let registry = Registry::in_memory();
    let apply = |text: &str| -> Result<(), Box<dyn std::error::Error>> {
        let plan = load(text, &sources)?.plan(&registry, &sources)?;
        plan.apply(&registry)?;
        Ok(())
    };
    apply(&relay(1, 25)).unwrap_or_else(|e| panic!("{e}"));

    // Ports below 1024 are no longer allowed, and the connection moves to
    // 2525 in the same manifest: the final state fits, so it applies.
    apply(&relay(1024, 2525)).unwrap_or_else(|e| panic!("{e}"));
    let project: ProjectId = "acme".parse().unwrap();
    let ty = registry
        .connection_type(&project, &"relay".parse().unwrap())
        .unwrap();
    let mail = registry
        .snapshot(&project)
        .unwrap()
        .by_name(None, &"mail".parse().unwrap())
        .map(|c| c.value.clone())
        .unwrap();
    assert!(ty.check_connection(mail.spec(), None).is_ok());
    let ParamValues::Plain(port) = mail.spec().param("Port").unwrap().values() else {
        panic!("a plain parameter");
    };
    assert_eq!(port.get(&Layer::Default), Some("2525"));

    // Tightened again without fixing the connection: refused, naming the
    // connection where it is declared, and nothing changes.
    let error = apply(&relay(3000, 2525)).unwrap_err();
    let said = error.to_string();
    assert!(said.contains("Port") && said.contains("connections[0]"), "{said}");
    assert_eq!(
        registry
            .connection_type(&project, &"relay".parse().unwrap())
            .unwrap()
            .field("Port")
            .unwrap()
            .validation()
            .min,
        Some(1024)
    );
}

#[test]
fn template_secrets_export_as_the_references_the_options_name_and_apply_back() {
    let sources = vault();
    let registry = Registry::in_memory();
    let manifest = load(TYPED, &sources).unwrap_or_else(|e| panic!("{e}"));
    manifest
        .plan(&registry, &sources)
        .unwrap()
        .apply(&registry)
        .unwrap();
    let project: ProjectId = "acme".parse().unwrap();

    // The host's convention: its vault, by template and field.
    let options = ExportOptions::references(|slot| match slot.holder {
        SecretHolder::Template(t) => {
            assert_eq!((t.as_str(), slot.param.as_str()), ("acme-twilio", "ApiKey"));
            "vault:kv/twilio".to_owned()
        }
        _ => format!("vault:kv/{}", slot.param),
    });
    let doc = export(&registry, &project, &options).unwrap();
    let field = &doc
        .templates
        .get("acme-twilio")
        .unwrap()
        .fields
        .get("ApiKey")
        .unwrap();
    assert_eq!(
        field.default.as_ref().map(|t| t.as_str()),
        Some("vault:kv/twilio")
    );
    let text = doc.to_text(Format::Yaml).unwrap();
    assert!(!text.contains(CLIENT_SECRET), "{text}");

    // Applied to another registry, the template gets the vault's value.
    let other = Registry::in_memory();
    let back = Manifest::parse_with(
        &text,
        Format::Yaml,
        "export",
        &LoadOptions::new().sources(&sources),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    back.plan(&other, &sources).unwrap().apply(&other).unwrap();
    let template = other.template(&project, &"acme-twilio".parse().unwrap()).unwrap();
    let ParamValues::Secret(layers) = template.value.field("ApiKey").unwrap().values() else {
        panic!("a secret field");
    };
    assert!(layers.external(&Layer::Default).is_none(), "a stored value");
    // The value is the vault's: the original manifest plans no change there.
    let original = load(TYPED, &sources).unwrap();
    assert!(original.plan(&other, &sources).unwrap().is_empty());
    // And to the registry it came from, it changes nothing.
    assert!(back.plan(&registry, &sources).unwrap().is_empty());

    // A namer giving something that is not a reference is refused, naming
    // the template's field and not repeating the text.
    let bad = ExportOptions::references(|_| "plain-text-oops".to_owned());
    let error = export(&registry, &project, &bad).unwrap_err();
    assert!(
        matches!(&error, ExportError::TemplateNotAReference { template, field, .. }
            if template.as_str() == "acme-twilio" && field.as_str() == "ApiKey"),
        "{error}"
    );
    assert!(!error.to_string().contains("plain-text-oops"));
}

#[test]
fn a_template_secret_in_an_external_store_is_kept_as_a_reference_through_apply_and_export() {
    let sources = vault();
    let text = TYPED.replace("\"vault:kv/twilio\"", "\"openbao:kv/apps:twilio#api_key\"");
    let manifest = load(&text, &sources).unwrap_or_else(|e| panic!("{e}"));
    let registry = Registry::in_memory();
    manifest
        .plan(&registry, &sources)
        .unwrap()
        .apply(&registry)
        .unwrap();
    let project: ProjectId = "acme".parse().unwrap();
    let template = registry
        .template(&project, &"acme-twilio".parse().unwrap())
        .unwrap();
    let ParamValues::Secret(layers) = template.value.field("ApiKey").unwrap().values() else {
        panic!("a secret field");
    };
    assert_eq!(
        layers
            .external(&Layer::Default)
            .map(ToString::to_string)
            .as_deref(),
        Some("openbao:kv/apps:twilio#api_key")
    );
    // Exported as the same reference, whatever the options, and planned
    // back as no change.
    for options in [ExportOptions::keep(), ExportOptions::env_references("ACME")] {
        let doc = export(&registry, &project, &options).unwrap();
        let field = &doc
            .templates
            .get("acme-twilio")
            .unwrap()
            .fields
            .get("ApiKey")
            .unwrap();
        assert_eq!(
            field.default.as_ref().map(|t| t.as_str()),
            Some("openbao:kv/apps:twilio#api_key")
        );
    }
    assert!(manifest.plan(&registry, &sources).unwrap().is_empty());
}

/// A host whose library defines the `relay` type with ports from `min`.
fn host_registry(min: i64) -> Registry {
    let relay = ConnectionType::builder("relay")
        .label("Mail relay")
        .field(Field::string("HostName"))
        .field(Field::integer("Port").range(min, 65535))
        .build()
        .unwrap();
    let policy = ResolvePolicy::default().with_types(TypeLibrary::new([relay]).unwrap());
    Registry::builder().policy(policy).build().unwrap()
}

const HOST_TYPED: &str = r#"
project: acme
connections:
  - name: mail
    type: relay
    parameters:
      HostName: { default: relay.internal }
      Port: { default: "2525" }
"#;

#[test]
fn host_types_export_with_the_project_and_must_match_the_host_applying_them() {
    let sources = SecretSources::standard();
    let registry = host_registry(1);
    let manifest = load(HOST_TYPED, &sources).unwrap_or_else(|e| panic!("{e}"));
    manifest
        .plan(&registry, &sources)
        .unwrap()
        .apply(&registry)
        .unwrap();
    let project: ProjectId = "acme".parse().unwrap();

    // The export says what the host's type is...
    let doc = export(&registry, &project, &ExportOptions::keep()).unwrap();
    assert!(doc.types.is_empty());
    let relay = doc.host_types.get("relay").expect("the host type is exported");
    assert_eq!(relay.label.as_deref(), Some("Mail relay"));
    let text = doc.to_text(Format::Yaml).unwrap();
    assert!(text.contains("hostTypes:"), "{text}");

    // ...applies back to the same host as no change...
    let back = load(&text, &sources).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back.document(), &doc);
    assert!(back.plan(&registry, &sources).unwrap().is_empty());

    // ...and is refused by a host whose type differs or is missing.
    for (other, missing) in [(host_registry(1024), false), (Registry::in_memory(), true)] {
        let error = back.plan(&other, &sources).unwrap_err();
        let ManifestError::Invalid { problems, .. } = &error else {
            panic!("{error}");
        };
        assert!(
            problems.iter().any(|p| p.location.path == "hostTypes.relay"
                && matches!(&p.rule, Rule::HostTypeMismatch { name, missing: m } if name.as_str() == "relay" && *m == missing)),
            "{error}"
        );
    }
}

#[test]
fn the_sample_slack_manifest_applies_resolves_and_round_trips() {
    let sources = SecretSources::standard();
    let manifest = Manifest::load("examples/manifests/slack.yaml").unwrap_or_else(|e| panic!("{e}"));
    let registry = Registry::in_memory();
    let plan = manifest
        .plan(&registry, &sources)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.summary().create, 4, "{plan}");
    plan.apply(&registry).unwrap();

    // Globex has entered its channel; the template supplies the app.
    let request = ResolveRequest::parse("acme", "alerts", "production")
        .unwrap()
        .for_customer("globex")
        .unwrap();
    let env = registry.resolve(&request).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(env.expose("SLACK_CLIENT_ID"), Some("acme-slack-app"));
    assert_eq!(env.expose("SLACK_CHANNEL"), Some("#globex-alerts"));
    assert!(env.expose("SLACK_CLIENT_SECRET").is_some_and(|s| !s.is_empty()));
    // Initech still owes its channel, and only that.
    let initech = ResolveRequest::parse("acme", "alerts", "production")
        .unwrap()
        .for_customer("initech")
        .unwrap();
    let owed: Vec<_> = registry
        .onboarding(&initech)
        .owed
        .iter()
        .map(|f| f.label.clone())
        .collect();
    assert_eq!(owed, ["Channel for alerts"]);

    // Exported and planned back: nothing to do.
    let project: ProjectId = "acme".parse().unwrap();
    let text = export(&registry, &project, &ExportOptions::keep())
        .unwrap()
        .to_text(Format::Yaml)
        .unwrap();
    let back = Manifest::parse(&text, Format::Yaml, "export.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert!(back.plan(&registry, &sources).unwrap().is_empty());
    assert!(manifest.plan(&registry, &sources).unwrap().is_empty());
}

#[test]
fn the_readmes_typed_manifest_loads_and_applies() {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("```yaml\nproject: acme\ntypes:")
        .expect("the README shows a manifest with types")
        + "```yaml\n".len();
    let text = &readme[start..start + readme[start..].find("```").unwrap()];
    let sources = SecretSources::standard();
    let manifest = load(text, &sources).unwrap_or_else(|e| panic!("{e}"));
    let registry = Registry::in_memory();
    let plan = manifest
        .plan(&registry, &sources)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(plan.summary().create, 3, "{plan}");
    plan.apply(&registry).unwrap();
    let template = registry
        .template(&"acme".parse().unwrap(), &"acme-twilio".parse().unwrap())
        .unwrap();
    let ParamValues::Secret(layers) = template.value.field("ApiKey").unwrap().values() else {
        panic!("a secret field");
    };
    assert_eq!(
        layers
            .external(&Layer::Default)
            .map(ToString::to_string)
            .as_deref(),
        Some("vault:secret/twilio#api_key")
    );
}
