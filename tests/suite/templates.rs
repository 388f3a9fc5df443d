//! Connection templates: a template of a type pre-fills values (and may
//! hide and lock them), connections made from it ask only for the rest, and
//! a change of the template reaches every one of them.

use connective::model::{ConnectionTemplate, Layer, TemplateField, TypeProblem};
use connective::prelude::*;
use connective::resolve::{Problem, ValueSource};
use proptest::prelude::*;

use crate::support::acme;

fn slack() -> ConnectionType {
    ConnectionType::builder("slack-oauth2")
        .label("Slack OAuth 2.0")
        .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
        .field(Field::url("AuthorizeURL").default("https://slack.com/oauth/v2/authorize"))
        .field(Field::url("TokenURL").default("https://slack.com/api/oauth.v2.access"))
        .field(Field::string("ClientID").label("Client ID"))
        .field(Field::secret("ClientSecret").label("Client secret"))
        .field(Field::string("Scopes").default("chat:write"))
        .build()
        .unwrap()
}

/// The organization's Slack app: client hidden and locked, scopes
/// overridable.
fn acme_slack(client_id: &str) -> ConnectionTemplate {
    ConnectionTemplate::builder("acme", "acme-slack", "slack-oauth2")
        .label("Acme's Slack app")
        .field(TemplateField::plain("ClientID").default(client_id).hidden())
        .field(
            TemplateField::secret("ClientSecret")
                .default("acme-slack-secret")
                .env("production", "acme-slack-prod-secret")
                .hidden(),
        )
        .field(TemplateField::plain("Scopes").default("chat:write").overridable())
        .build()
        .unwrap()
}

fn from_template(name: &str, template: &ConnectionTemplate) -> connective::model::ConnectionBuilder {
    ConnectionSpec::project("acme", name)
        .target(Target::external("slack"))
        .of_template(&slack(), template)
}

fn map_all(registry: &Registry, connection: &str) {
    registry
        .set_mappings(
            Mappings::of("acme", "alerts")
                .by_name(
                    connection,
                    [
                        ("ClientID", "SLACK_CLIENT_ID"),
                        ("ClientSecret", "SLACK_CLIENT_SECRET"),
                        ("Scopes", "SLACK_SCOPES"),
                        ("TokenURL", "SLACK_TOKEN_URL"),
                    ],
                )
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
}

fn request(env: &str) -> ResolveRequest {
    ResolveRequest::parse("acme", "alerts", env).unwrap()
}

#[test]
fn a_connection_from_a_template_gets_its_values_and_template_changes_reach_it() {
    let registry = Registry::in_memory();
    registry.put_type(&acme(), slack(), None).unwrap();
    registry.put_template(acme_slack("acme-client"), None).unwrap();
    let template = registry
        .template(&acme(), &"acme-slack".parse().unwrap())
        .unwrap();
    // The connection asks for nothing the template fills: it has no value
    // of its own for ClientID, ClientSecret or Scopes.
    let spec = from_template("slack", &template.value).build().unwrap();
    for p in ["ClientID", "ClientSecret", "Scopes"] {
        assert!(spec.param(p).unwrap().layers().is_empty(), "{p}");
    }
    let (id, _) = registry.create_connection(spec).unwrap();
    map_all(&registry, "slack");

    let env = registry.resolve(&request("production")).unwrap();
    assert_eq!(env.expose("SLACK_CLIENT_ID"), Some("acme-client"));
    assert_eq!(env.expose("SLACK_CLIENT_SECRET"), Some("acme-slack-prod-secret"));
    let source = &env.provenance("SLACK_CLIENT_SECRET").unwrap().source;
    assert_eq!(
        source.to_string(),
        "template acme-slack, environment production override"
    );
    assert!(matches!(source, ValueSource::Template { template, .. } if template == "acme-slack"));
    // The type's own default stays the connection's.
    assert!(matches!(
        env.provenance("SLACK_TOKEN_URL").unwrap().source,
        ValueSource::Layer(Layer::Default)
    ));
    let dev = registry.resolve(&request("development")).unwrap();
    assert_eq!(dev.expose("SLACK_CLIENT_SECRET"), Some("acme-slack-secret"));

    // The operator rotates the organization's client: every connection made
    // from the template resolves to the new one, with no write to them.
    let connection_version = registry.connection(&acme(), id).unwrap().version;
    let mut changed = (*template.value).clone();
    changed
        .set_value(&"ClientID".parse().unwrap(), Layer::Default, "acme-client-2")
        .unwrap();
    registry.put_template(changed, Some(template.version)).unwrap();
    let env = registry.resolve(&request("production")).unwrap();
    assert_eq!(env.expose("SLACK_CLIENT_ID"), Some("acme-client-2"));
    assert_eq!(
        registry.connection(&acme(), id).unwrap().version,
        connection_version
    );

    // Explain shows the connection's (empty) layers and the template's.
    let why = registry
        .explain(&request("production"), "SLACK_CLIENT_SECRET")
        .unwrap()
        .unwrap();
    let text = why.to_string();
    assert!(
        text.contains("template acme-slack, environment production override: won"),
        "{text}"
    );
    assert!(!text.contains("acme-slack-prod-secret"), "{text}");
}

#[test]
fn a_connection_overrides_only_what_the_template_allows() {
    let registry = Registry::in_memory();
    registry.put_type(&acme(), slack(), None).unwrap();
    let template = acme_slack("acme-client");
    registry.put_template(template.clone(), None).unwrap();

    // A locked field: refused, naming the field; the secret never shows.
    let err = registry
        .create_connection(
            from_template("slack", &template)
                .value("ClientSecret", Layer::Default, "mine-secret-value")
                .build()
                .unwrap(),
        )
        .unwrap_err();
    match &err {
        RegistryError::Type(e) => assert!(matches!(
            &e.problems[..],
            [TypeProblem::LockedByTemplate { field }] if field == "ClientSecret"
        )),
        other => panic!("expected a type error, got {other:?}"),
    }
    assert!(!format!("{err} {err:?}").contains("mine-secret-value"));

    // An overridable one: the connection's own value wins where it has one.
    let (id, _) = registry
        .create_connection(
            from_template("slack", &template)
                .value(
                    "Scopes",
                    Layer::Environment(Environment::production()),
                    "chat:write channels:read",
                )
                .build()
                .unwrap(),
        )
        .unwrap();
    map_all(&registry, "slack");
    let prod = registry.resolve(&request("production")).unwrap();
    assert_eq!(prod.expose("SLACK_SCOPES"), Some("chat:write channels:read"));
    assert!(matches!(
        prod.provenance("SLACK_SCOPES").unwrap().source,
        ValueSource::Layer(Layer::Environment(_))
    ));
    let dev = registry.resolve(&request("development")).unwrap();
    assert!(matches!(
        dev.provenance("SLACK_SCOPES").unwrap().source,
        ValueSource::Template { .. }
    ));

    // A value edit of a locked field is refused too.
    let version = registry.connection(&acme(), id).unwrap().version;
    let err = registry
        .set_value(
            &acme(),
            id,
            version,
            &"ClientID".parse().unwrap(),
            Layer::Default,
            "other",
        )
        .unwrap_err();
    assert!(matches!(err, RegistryError::Type(_)), "{err}");

    // Locking Scopes while the connection overrides it is refused.
    let current = registry
        .template(&acme(), &"acme-slack".parse().unwrap())
        .unwrap();
    let locked = ConnectionTemplate::builder("acme", "acme-slack", "slack-oauth2")
        .field(TemplateField::plain("ClientID").default("acme-client").hidden())
        .field(TemplateField::secret("ClientSecret").default("s").hidden())
        .field(TemplateField::plain("Scopes").default("chat:write"))
        .build()
        .unwrap();
    let err = registry.put_template(locked, Some(current.version)).unwrap_err();
    assert!(matches!(err, RegistryError::Type(_)), "{err}");

    // And a template in use stays.
    let err = registry
        .delete_template(&acme(), &"acme-slack".parse().unwrap(), current.version)
        .unwrap_err();
    assert!(matches!(err, RegistryError::TemplateInUse { .. }), "{err}");
}

/// What the model says a connection made from a template resolves to:
/// its own value where it has one for the environment, else the
/// template's (production value, else default).
fn expected(
    own: &Option<(bool, String)>,
    template: &(Option<String>, Option<String>),
    production: bool,
) -> Option<(String, bool)> {
    if let Some((for_prod_only, v)) = own
        && (!for_prod_only || production)
    {
        return Some((v.clone(), false));
    }
    let (default, prod) = template;
    if production && let Some(v) = prod {
        return Some((v.clone(), true));
    }
    default.clone().map(|v| (v, true))
}

fn value() -> impl Strategy<Value = String> {
    "[a-z]{1,8}"
}

fn template_values() -> impl Strategy<Value = (Option<String>, Option<String>)> {
    (proptest::option::of(value()), proptest::option::of(value()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// A connection made from a template resolves as the model says, in
    /// each environment, after any sequence of template changes.
    #[test]
    fn a_connection_from_a_template_resolves_as_the_model_says(
        own in proptest::option::of((any::<bool>(), value())),
        versions in proptest::collection::vec(template_values(), 1..5),
    ) {
        let ty = ConnectionType::builder("api")
            .auth(AuthScheme::None)
            .field(Field::string("Region").optional())
            .build()
            .unwrap();
        let registry = Registry::in_memory();
        registry.put_type(&acme(), ty.clone(), None).unwrap();
        let template_of = |(default, prod): &(Option<String>, Option<String>)| {
            let mut f = TemplateField::plain("Region").overridable();
            if let Some(v) = default {
                f = f.default(v.clone());
            }
            if let Some(v) = prod {
                f = f.env("production", v.clone());
            }
            ConnectionTemplate::builder("acme", "api-eu", "api").field(f).build().unwrap()
        };
        registry.put_template(template_of(&versions[0]), None).unwrap();
        let mut spec = ConnectionSpec::project("acme", "api")
            .target(Target::external("api"))
            .of_template(&ty, &template_of(&versions[0]));
        if let Some((prod_only, v)) = &own {
            let layer = if *prod_only { Layer::Environment(Environment::production()) } else { Layer::Default };
            spec = spec.value("Region", layer, v.clone());
        }
        registry.create_connection(spec.build().unwrap()).unwrap();
        registry
            .set_mappings(
                Mappings::of("acme", "alerts").by_name("api", [("Region", "REGION")]).build().unwrap(),
                None,
            )
            .unwrap();
        for (i, values) in versions.iter().enumerate() {
            if i > 0 {
                let current = registry.template(&acme(), &"api-eu".parse().unwrap()).unwrap();
                registry.put_template(template_of(values), Some(current.version)).unwrap();
            }
            for env in ["production", "development"] {
                // An explicitly mapped parameter without a value is an
                // error of the resolution (MissingValue), not an absence.
                let got = match registry.resolve(&request(env)) {
                    Ok(got) => {
                        let v = got.get("REGION").unwrap();
                        let from_template = matches!(v.provenance().source, ValueSource::Template { .. });
                        Some((v.value().expose().to_owned(), from_template))
                    }
                    Err(e) => {
                        prop_assert!(matches!(&e.problems[..], [Problem::MissingValue { .. }]), "{}", e);
                        None
                    }
                };
                prop_assert_eq!(got, expected(&own, values, env == "production"), "{} {:?}", env, values);
            }
        }
    }
}
