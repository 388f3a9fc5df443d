//! Prismatic's connection kinds, expressed with connective.
//!
//! In Prismatic a connection is integration-specific or reusable; each of its
//! fields may have one organization-wide value, a value the organization sets
//! for each customer, or a value each customer enters itself; and test
//! credentials replace the real values while an integration is built and tested.
//! Here: scopes, the `Tenancy` of a parameter, customer layers and the `test`
//! environment.

use connective::model::{CustomerId, Layer, ParamName, Tenancy};
use connective::prelude::*;
use connective::resolve::{Problem, ValueSource};

use crate::support::acme;

fn customer(id: &str) -> CustomerId {
    id.parse().unwrap()
}

fn request(integration: &str, env: &str, customer: Option<&str>) -> ResolveRequest {
    let r = ResolveRequest::parse("acme", integration, env).unwrap();
    match customer {
        Some(c) => r.for_customer(c).unwrap(),
        None => r,
    }
}

fn expose(env: &ResolvedEnv, var: &str) -> String {
    env.get(var)
        .unwrap_or_else(|| panic!("{var} missing from {env}"))
        .value()
        .expose()
        .to_owned()
}

fn map(registry: &Registry, integration: &str, connection: &str, entries: &[(&str, &str)]) {
    registry
        .set_mappings(
            Mappings::of("acme", integration)
                .by_name(connection, entries.iter().copied())
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
}

/// An ERP whose URL is the same for everybody, whose API key the
/// organization sets per customer, and whose webhook token each customer
/// enters.
fn erp(scope: Option<&str>) -> ConnectionSpec {
    let builder = match scope {
        Some(integration) => ConnectionSpec::integration("acme", integration, "acme-erp"),
        None => ConnectionSpec::project("acme", "acme-erp"),
    };
    builder
        .target(Target::external("acme-erp"))
        .auth(AuthScheme::Custom)
        .param(
            Param::plain("ServiceURL")
                .describe("URL")
                .default("https://api.acme-erp.com"),
        )
        .param(
            Param::secret("ApiKey")
                .describe("API key")
                .per_customer(EnteredBy::Organization)
                .customer("globex", "erp-globex-1f2e")
                .customer("initech", "erp-initech-9a8b"),
        )
        .param(
            Param::secret("WebhookToken")
                .describe("entered by the customer while configuring its instance")
                .per_customer(EnteredBy::Customer),
        )
        .build()
        .unwrap()
}

#[test]
fn an_integration_specific_connection_belongs_to_its_integration_only() {
    let registry = Registry::in_memory();
    let (id, _) = registry.create_connection(erp(Some("erp-sync"))).unwrap();
    let stored = registry.connection(&acme(), id).unwrap().value;
    assert_eq!(stored.scope(), &Scope::Integration("erp-sync".parse().unwrap()));
    map(&registry, "erp-sync", "acme-erp", &[("ServiceURL", "ERP_URL")]);
    let env = registry
        .resolve(&request("erp-sync", "production", None))
        .unwrap();
    assert_eq!(expose(&env, "ERP_URL"), "https://api.acme-erp.com");

    let sibling = registry.set_mappings(
        Mappings::of("acme", "crm-sync")
            .by_name("acme-erp", [("ServiceURL", "ERP_URL")])
            .build()
            .unwrap(),
        None,
    );
    assert!(
        matches!(sibling, Err(RegistryError::InvalidMappings { .. })),
        "{sibling:?}"
    );
    assert!(
        registry
            .visible_connections(&acme(), &"crm-sync".parse().unwrap())
            .is_empty()
    );
}

#[test]
fn a_reusable_connection_is_managed_once_and_used_by_many_integrations() {
    let registry = Registry::in_memory();
    // Prismatic's OAuth 2.0 connection fields, on a connection the organization
    // manages centrally.
    let (slack, _) = registry
        .create_connection(
            ConnectionSpec::project("acme", "slack")
                .target(Target::external("slack"))
                .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
                .param(Param::plain("AuthorizeURL").default("https://slack.com/oauth/v2/authorize"))
                .param(Param::plain("TokenURL").default("https://slack.com/api/oauth.v2.access"))
                .param(Param::plain("ClientID").default("slack-client-42"))
                .param(Param::secret("ClientSecret").default("slack-secret-c0ffee"))
                .param(Param::plain("Scopes").default("chat:write channels:read"))
                .build()
                .unwrap(),
        )
        .unwrap();
    for integration in ["erp-sync", "crm-sync", "alerts"] {
        map(
            &registry,
            integration,
            "slack",
            &[
                ("ClientID", "SLACK_CLIENT_ID"),
                ("ClientSecret", "SLACK_CLIENT_SECRET"),
                ("Scopes", "SLACK_SCOPES"),
            ],
        );
        let env = registry
            .resolve(&request(integration, "production", Some("globex")))
            .unwrap();
        assert_eq!(expose(&env, "SLACK_CLIENT_SECRET"), "slack-secret-c0ffee");
        assert_eq!(expose(&env, "SLACK_SCOPES"), "chat:write channels:read");
        assert_eq!(env.provenance("SLACK_CLIENT_ID").unwrap().connection_id, slack);
    }
    assert_eq!(registry.dependents(&acme(), slack).len(), 3);
}

#[test]
fn an_organization_global_value_is_the_same_for_every_customer() {
    let registry = Registry::in_memory();
    registry.create_connection(erp(None)).unwrap();
    map(&registry, "erp-sync", "acme-erp", &[("ServiceURL", "ERP_URL")]);
    for who in [Some("globex"), Some("initech"), Some("hooli"), None] {
        let env = registry.resolve(&request("erp-sync", "production", who)).unwrap();
        assert_eq!(
            expose(&env, "ERP_URL"),
            "https://api.acme-erp.com",
            "customer {who:?}"
        );
        let why = env.provenance("ERP_URL").unwrap();
        assert_eq!(why.source, ValueSource::Layer(Layer::Default));
        assert_eq!(why.entered_by, None);
    }
}

#[test]
fn the_organization_sets_each_customers_value_on_its_behalf() {
    let registry = Registry::in_memory();
    let (id, _) = registry.create_connection(erp(None)).unwrap();
    let stored = registry.connection(&acme(), id).unwrap().value;
    assert_eq!(
        stored.spec().param("ApiKey").unwrap().tenancy(),
        Tenancy::PerCustomer(EnteredBy::Organization)
    );
    map(&registry, "erp-sync", "acme-erp", &[("ApiKey", "ERP_API_KEY")]);
    for (who, key) in [("globex", "erp-globex-1f2e"), ("initech", "erp-initech-9a8b")] {
        for env in ["development", "production"] {
            let resolved = registry.resolve(&request("erp-sync", env, Some(who))).unwrap();
            assert_eq!(expose(&resolved, "ERP_API_KEY"), key);
            let why = resolved.provenance("ERP_API_KEY").unwrap();
            assert_eq!(why.source, ValueSource::Layer(Layer::Customer(customer(who))));
            assert_eq!(why.entered_by, Some(EnteredBy::Organization));
            assert!(why.to_string().contains("set by the organization"), "{why}");
        }
    }
}

#[test]
fn a_customer_enters_its_own_value() {
    let registry = Registry::in_memory();
    let (id, _) = registry.create_connection(erp(None)).unwrap();
    map(
        &registry,
        "erp-sync",
        "acme-erp",
        &[("WebhookToken", "ERP_WEBHOOK_TOKEN")],
    );
    let token: ParamName = "WebhookToken".parse().unwrap();

    // Before globex has configured its instance, there is nothing to inject.
    let err = registry
        .resolve(&request("erp-sync", "production", Some("globex")))
        .unwrap_err();
    assert_eq!(
        err.problems,
        vec![Problem::MissingValue {
            connection: "acme-erp".parse().unwrap(),
            connection_id: id,
            param: token.clone(),
            environment: Environment::production(),
            customer: Some(customer("globex")),
        }]
    );

    // Globex enters its token (a write naming the version it read).
    let version = registry.connection(&acme(), id).unwrap().version;
    registry
        .set_value(
            &acme(),
            id,
            version,
            &token,
            Layer::Customer(customer("globex")),
            "whk-globex-77",
        )
        .unwrap();
    let env = registry
        .resolve(&request("erp-sync", "production", Some("globex")))
        .unwrap();
    assert_eq!(expose(&env, "ERP_WEBHOOK_TOKEN"), "whk-globex-77");
    let why = env.provenance("ERP_WEBHOOK_TOKEN").unwrap();
    assert_eq!(why.entered_by, Some(EnteredBy::Customer));
    assert!(why.to_string().contains("entered by the customer"), "{why}");

    // Initech has not entered one: its resolution still fails, naming it.
    let err = registry
        .resolve(&request("erp-sync", "production", Some("initech")))
        .unwrap_err();
    assert!(err.to_string().contains("customer initech"), "{err}");

    // A second customer entering its value with the version read before the
    // first one's write is a conflict, not a lost update.
    let stale = registry.set_value(
        &acme(),
        id,
        version,
        &token,
        Layer::Customer(customer("initech")),
        "whk-initech-12",
    );
    assert!(matches!(stale, Err(RegistryError::Conflict { .. })), "{stale:?}");
    let env = registry
        .resolve(&request("erp-sync", "production", Some("globex")))
        .unwrap();
    assert_eq!(expose(&env, "ERP_WEBHOOK_TOKEN"), "whk-globex-77");
}

#[test]
fn a_per_customer_value_cannot_be_set_for_everybody() {
    let registry = Registry::in_memory();
    let (id, _) = registry.create_connection(erp(None)).unwrap();
    let version = registry.connection(&acme(), id).unwrap().version;
    let revision = registry.catalog().revision();
    for layer in [Layer::Default, Layer::Environment(Environment::production())] {
        let err = registry
            .set_value(
                &acme(),
                id,
                version,
                &"ApiKey".parse().unwrap(),
                layer,
                "for-everyone-0",
            )
            .unwrap_err();
        assert!(
            err.to_string().contains("is per-customer and cannot have"),
            "{err}"
        );
        assert!(!err.to_string().contains("for-everyone-0"), "{err}");
    }
    assert_eq!(registry.catalog().revision(), revision);
}

#[test]
fn test_credentials_replace_production_values_in_the_test_environment() {
    let registry = Registry::in_memory();
    registry
        .create_connection(
            ConnectionSpec::project("acme", "payments")
                .target(Target::external("stripe"))
                .auth(AuthScheme::ApiKey)
                .param(Param::plain("ServiceURL").default("https://api.stripe.com"))
                .param(
                    Param::secret("ApiKey")
                        .env("production", "sk_live_51Hx")
                        .env("test", "sk_test_51Hx"),
                )
                .param(
                    Param::secret("AccountKey")
                        .per_customer(EnteredBy::Customer)
                        .customer("globex", "acct_globex_live")
                        .customer_env("globex", "test", "acct_globex_test"),
                )
                .build()
                .unwrap(),
        )
        .unwrap();
    map(
        &registry,
        "billing",
        "payments",
        &[
            ("ServiceURL", "STRIPE_URL"),
            ("ApiKey", "STRIPE_KEY"),
            ("AccountKey", "STRIPE_ACCOUNT"),
        ],
    );

    let test = registry
        .resolve(&request("billing", "test", Some("globex")))
        .unwrap();
    assert_eq!(expose(&test, "STRIPE_KEY"), "sk_test_51Hx");
    assert_eq!(
        test.provenance("STRIPE_KEY").unwrap().source,
        ValueSource::Layer(Layer::Environment(Environment::test()))
    );
    assert_eq!(expose(&test, "STRIPE_ACCOUNT"), "acct_globex_test");
    assert_eq!(
        test.provenance("STRIPE_ACCOUNT").unwrap().source,
        ValueSource::Layer(Layer::CustomerEnvironment(
            customer("globex"),
            Environment::test()
        ))
    );
    assert_eq!(
        expose(&test, "STRIPE_URL"),
        "https://api.stripe.com",
        "no test value: the default"
    );

    let live = registry
        .resolve(&request("billing", "production", Some("globex")))
        .unwrap();
    assert_eq!(expose(&live, "STRIPE_KEY"), "sk_live_51Hx");
    assert_eq!(expose(&live, "STRIPE_ACCOUNT"), "acct_globex_live");

    // Development has neither a test nor a production key.
    let err = registry
        .resolve(&request("billing", "development", Some("globex")))
        .unwrap_err();
    assert!(err.to_string().contains("ApiKey of connection payments"), "{err}");
}

#[test]
fn a_customers_values_are_seen_only_when_resolving_for_that_customer() {
    let registry = Registry::in_memory();
    registry
        .create_connection(
            ConnectionSpec::project("acme", "sftp")
                .target(Target::external("sftp"))
                .param(
                    Param::plain("Host")
                        .default("sftp.acme.com")
                        .customer("globex", "sftp.globex.com")
                        .customer_env("initech", "production", "sftp.initech.com"),
                )
                .build()
                .unwrap(),
        )
        .unwrap();
    map(&registry, "erp-sync", "sftp", &[("Host", "SFTP_HOST")]);
    let host = |env: &str, who: Option<&str>| {
        expose(
            &registry.resolve(&request("erp-sync", env, who)).unwrap(),
            "SFTP_HOST",
        )
    };
    assert_eq!(host("production", Some("globex")), "sftp.globex.com");
    assert_eq!(host("production", Some("initech")), "sftp.initech.com");
    assert_eq!(host("development", Some("initech")), "sftp.acme.com");
    assert_eq!(host("production", Some("hooli")), "sftp.acme.com");
    assert_eq!(host("production", None), "sftp.acme.com");
}

#[test]
fn a_per_customer_parameter_needs_that_customers_value() {
    let registry = Registry::in_memory();
    let (id, _) = registry.create_connection(erp(None)).unwrap();
    map(
        &registry,
        "erp-sync",
        "acme-erp",
        &[
            ("ServiceURL", "ERP_URL"),
            ("ApiKey", "ERP_API_KEY"),
            ("WebhookToken", "ERP_WEBHOOK_TOKEN"),
        ],
    );

    // Hooli is a customer the organization has not set an API key for.
    let err = registry
        .resolve(&request("erp-sync", "production", Some("hooli")))
        .unwrap_err();
    let missing: Vec<(&str, Option<&CustomerId>)> = err
        .problems
        .iter()
        .map(|p| match p {
            Problem::MissingValue { param, customer, .. } => (param.as_str(), customer.as_ref()),
            other => panic!("unexpected {other}"),
        })
        .collect();
    let hooli = customer("hooli");
    assert_eq!(
        missing,
        vec![("ApiKey", Some(&hooli)), ("WebhookToken", Some(&hooli))]
    );
    let text = err.to_string();
    assert!(text.contains("2 problems"), "{text}");
    assert!(text.contains("customer hooli"), "{text}");
    assert!(text.contains("parameter ApiKey of connection acme-erp"), "{text}");

    // Without a customer at all, per-customer parameters cannot resolve.
    let err = registry
        .resolve(&request("erp-sync", "production", None))
        .unwrap_err();
    assert_eq!(
        err.problems,
        vec![
            Problem::CustomerRequired {
                connection: "acme-erp".parse().unwrap(),
                connection_id: id,
                param: "ApiKey".parse().unwrap(),
            },
            Problem::CustomerRequired {
                connection: "acme-erp".parse().unwrap(),
                connection_id: id,
                param: "WebhookToken".parse().unwrap(),
            },
        ]
    );
    assert!(
        err.to_string()
            .contains("is per-customer: resolve for a customer"),
        "{err}"
    );
}

/// An optional per-customer field under default variable names behaves like
/// any optional parameter without a value: left out when resolving without a
/// customer or for a customer who has not entered it, present for one who has.
#[test]
fn an_optional_customer_entered_field_is_left_out_until_entered() {
    let fx = connective::fixture::Fixture::project("acme")
        .connection("slack", |c| {
            c.param(Param::plain("ServiceURL").default("https://slack.com/api"))
                .param(
                    Param::secret("BotToken")
                        .per_customer(EnteredBy::Customer)
                        .optional()
                        .customer("globex", "xoxb-g"),
                )
        })
        .mappings("notify", |m| m.by_name_defaults("slack"))
        .build()
        .unwrap();
    let without = fx.resolve("notify", "production").unwrap();
    assert_eq!(without.expose("SLACK_SERVICEURL"), Some("https://slack.com/api"));
    assert!(without.get("SLACK_BOTTOKEN").is_none());
    assert!(
        fx.resolve_for("notify", "production", "initech")
            .unwrap()
            .get("SLACK_BOTTOKEN")
            .is_none()
    );
    let globex = fx.resolve_for("notify", "production", "globex").unwrap();
    assert_eq!(globex.expose("SLACK_BOTTOKEN"), Some("xoxb-g"));
    assert!(
        globex
            .provenance("SLACK_BOTTOKEN")
            .unwrap()
            .to_string()
            .contains("entered by the customer")
    );
}
