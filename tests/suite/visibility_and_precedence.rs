//! Rules 1 and 2: who sees a connection, and which one a reference gets.
//!
//! The scenarios retell the platforms' documentation: a project connection to
//! Twilio reused by two integrations; an integration connection to a legacy
//! service that a sibling integration cannot use; an integration connection
//! shadowing a project connection of the same name.

use std::sync::Arc;

use connective::catalog::Catalog;
use connective::model::{
    Connection, ConnectionId, ConnectionRef, ConnectionUse, EnvMapping, Record, ResolvePolicy, Revision,
    Version,
};
use connective::prelude::*;
use connective::resolve::{NameSource, Problem, ValueSource};

fn twilio() -> ConnectionSpec {
    ConnectionSpec::project("acme", "twilio")
        .describe("SMS for every integration of the project")
        .target(Target::external("twilio"))
        .auth(AuthScheme::ApiKey)
        .param(Param::plain("ServiceURL").default("https://api.twilio.com/2010-04-01"))
        .param(
            Param::secret("ApiKey")
                .env("development", "tw-test-5b1e")
                .env("production", "tw-live-0c9d"),
        )
        .build()
        .unwrap()
}

fn legacy_crm(integration: &str) -> ConnectionSpec {
    ConnectionSpec::integration("acme", integration, "legacy-crm")
        .target(Target::external("legacy-crm"))
        .auth(AuthScheme::Basic)
        .param(Param::plain("ServiceURL").default("https://crm.internal"))
        .param(Param::secret("Password").default("crm-pw-77"))
        .build()
        .unwrap()
}

fn crm(scope_integration: Option<&str>, url: &str) -> ConnectionSpec {
    let builder = match scope_integration {
        None => ConnectionSpec::project("acme", "crm"),
        Some(i) => ConnectionSpec::integration("acme", i, "crm"),
    };
    builder
        .target(Target::external("crm"))
        .param(Param::plain("ServiceURL").default(url))
        .build()
        .unwrap()
}

fn request(project: &str, integration: &str, env: &str) -> ResolveRequest {
    ResolveRequest::parse(project, integration, env).unwrap()
}

fn value(env: &ResolvedEnv, var: &str) -> String {
    env.get(var)
        .unwrap_or_else(|| panic!("{var} missing from {env}"))
        .value()
        .expose()
        .to_owned()
}

fn not_visible(err: RegistryError) -> Vec<ConnectionRef> {
    match err {
        RegistryError::InvalidMappings { problems, .. } => problems
            .into_iter()
            .map(|p| match p {
                Problem::NotVisible { reference, .. } => reference,
                other => panic!("expected only NotVisible problems, got {other}"),
            })
            .collect(),
        other => panic!("expected InvalidMappings, got {other}"),
    }
}

#[test]
fn a_project_connection_is_reused_by_every_integration_of_the_project() {
    let registry = Registry::in_memory();
    let (twilio_id, _) = registry.create_connection(twilio()).unwrap();

    // One integration refers to it by name, the other by Connection ID.
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("twilio", [("ServiceURL", "SMS_URL"), ("ApiKey", "SMS_KEY")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "notifications")
                .by_id(twilio_id, [("ApiKey", "TWILIO_API_KEY")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();

    let orders = registry
        .resolve(&request("acme", "orders", "production"))
        .unwrap();
    let notifications = registry
        .resolve(&request("acme", "notifications", "production"))
        .unwrap();
    assert_eq!(value(&orders, "SMS_URL"), "https://api.twilio.com/2010-04-01");
    assert_eq!(value(&orders, "SMS_KEY"), "tw-live-0c9d");
    assert_eq!(value(&notifications, "TWILIO_API_KEY"), "tw-live-0c9d");
    for provenance in [
        orders.provenance("SMS_KEY").unwrap(),
        notifications.provenance("TWILIO_API_KEY").unwrap(),
    ] {
        assert_eq!(provenance.connection_id, twilio_id);
        assert_eq!(provenance.scope, Scope::Project);
        assert_eq!(provenance.connection.as_str(), "twilio");
    }

    // Development gets the development key, through the same connection.
    let dev = registry
        .resolve(&request("acme", "orders", "development"))
        .unwrap();
    assert_eq!(value(&dev, "SMS_KEY"), "tw-test-5b1e");
    assert_eq!(
        registry.dependents(&"acme".parse().unwrap(), twilio_id),
        vec![
            "notifications".parse::<IntegrationId>().unwrap(),
            "orders".parse().unwrap()
        ]
    );
}

#[test]
fn an_integration_connection_is_invisible_to_a_sibling_by_name_and_by_id() {
    let registry = Registry::in_memory();
    let (crm_id, _) = registry.create_connection(legacy_crm("orders")).unwrap();
    let before = registry.catalog().revision();

    let by_name = registry
        .set_mappings(
            Mappings::of("acme", "billing")
                .by_name("legacy-crm", [("ServiceURL", "CRM_URL")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap_err();
    assert_eq!(
        not_visible(by_name),
        vec![ConnectionRef::Name("legacy-crm".parse().unwrap())]
    );

    let by_id = registry
        .set_mappings(
            Mappings::of("acme", "billing")
                .by_id_defaults(crm_id)
                .build()
                .unwrap(),
            None,
        )
        .unwrap_err();
    assert_eq!(not_visible(by_id), vec![ConnectionRef::Id(crm_id)]);
    assert_eq!(
        registry.catalog().revision(),
        before,
        "refused mappings write nothing"
    );

    // The owner itself may use it, by name or by ID.
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_id(crm_id, [("Password", "CRM_PASSWORD")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let orders = registry
        .resolve(&request("acme", "orders", "production"))
        .unwrap();
    assert_eq!(value(&orders, "CRM_PASSWORD"), "crm-pw-77");

    // The sibling's list of visible connections does not mention it.
    let billing = registry.visible_connections(&"acme".parse().unwrap(), &"billing".parse().unwrap());
    assert!(billing.is_empty(), "{billing:?}");
    let own = registry.visible_connections(&"acme".parse().unwrap(), &"orders".parse().unwrap());
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].connection.value.id(), crm_id);
}

#[test]
fn no_connection_of_another_project_is_visible_even_by_id() {
    let registry = Registry::in_memory();
    let (twilio_id, _) = registry.create_connection(twilio()).unwrap();
    let (crm_id, _) = registry.create_connection(legacy_crm("orders")).unwrap();

    // Same integration name, other project: neither the project connection nor
    // the integration connection of `acme` exists for `globex`.
    let err = registry
        .set_mappings(
            Mappings::of("globex", "orders")
                .by_id(twilio_id, [("ApiKey", "SMS_KEY")])
                .by_id(crm_id, [("Password", "CRM_PASSWORD")])
                .by_name("twilio", [("ServiceURL", "SMS_URL")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap_err();
    assert_eq!(
        not_visible(err),
        vec![
            ConnectionRef::Id(twilio_id),
            ConnectionRef::Id(crm_id),
            ConnectionRef::Name("twilio".parse().unwrap())
        ]
    );
    assert!(
        registry
            .visible_connections(&"globex".parse().unwrap(), &"orders".parse().unwrap())
            .is_empty()
    );
}

/// The resolver applies rule 1 itself, not only the registry's validation: a
/// catalog assembled from records whose mappings point across integrations and
/// projects resolves none of those references.
#[test]
fn the_resolver_itself_refuses_references_across_integrations_and_projects() {
    let acme: ProjectId = "acme".parse().unwrap();
    let orders_crm = Connection::new(ConnectionId::random(), legacy_crm("orders"), None);
    let acme_twilio = Connection::new(ConnectionId::random(), twilio(), None);
    let globex_twilio = Connection::new(
        ConnectionId::random(),
        ConnectionSpec::project("globex", "twilio")
            .param(Param::secret("ApiKey").default("globex-key-3"))
            .build()
            .unwrap(),
        None,
    );
    let explicit = |from: &str, to: &str| {
        EnvMapping::Explicit(vec![connective::model::EnvEntry {
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
        }])
    };
    let billing = Mappings::new(
        acme.clone(),
        "billing".parse().unwrap(),
        vec![
            ConnectionUse {
                reference: ConnectionRef::Id(orders_crm.id()),
                env: explicit("Password", "A"),
            },
            ConnectionUse {
                reference: ConnectionRef::Name("legacy-crm".parse().unwrap()),
                env: explicit("Password", "B"),
            },
            ConnectionUse {
                reference: ConnectionRef::Id(globex_twilio.id()),
                env: explicit("ApiKey", "C"),
            },
            ConnectionUse {
                reference: ConnectionRef::Id(acme_twilio.id()),
                env: explicit("ApiKey", "D"),
            },
        ],
    )
    .unwrap();
    // The owner makes the same references to its own connection.
    let orders = Mappings::new(
        acme.clone(),
        "orders".parse().unwrap(),
        vec![
            ConnectionUse {
                reference: ConnectionRef::Id(orders_crm.id()),
                env: explicit("Password", "A"),
            },
            ConnectionUse {
                reference: ConnectionRef::Name("legacy-crm".parse().unwrap()),
                env: explicit("Password", "B"),
            },
        ],
    )
    .unwrap();
    let records = [
        Record::Connection(Arc::new(orders_crm.clone())),
        Record::Connection(Arc::new(acme_twilio.clone())),
        Record::Connection(Arc::new(globex_twilio.clone())),
        Record::Mappings(Arc::new(billing)),
        Record::Mappings(Arc::new(orders)),
    ];
    let catalog = Catalog::from_records(
        ResolvePolicy::default(),
        Revision(1),
        records.into_iter().map(|r| (Version(1), r)),
    );
    let err = catalog
        .resolve(&request("acme", "billing", "production"))
        .unwrap_err();
    let billing_id: IntegrationId = "billing".parse().unwrap();
    assert_eq!(
        err.problems,
        vec![
            Problem::NotVisible {
                reference: ConnectionRef::Id(orders_crm.id()),
                integration: billing_id.clone()
            },
            Problem::NotVisible {
                reference: ConnectionRef::Name("legacy-crm".parse().unwrap()),
                integration: billing_id.clone()
            },
            Problem::NotVisible {
                reference: ConnectionRef::Id(globex_twilio.id()),
                integration: billing_id
            },
        ],
        "only the project connection of the integration's own project resolves"
    );
    // The owner's identical references resolve, through the catalog or a
    // project view.
    let view = connective::resolve::ProjectView {
        snapshot: catalog.project(&acme).unwrap(),
        policy: ResolvePolicy::default(),
    };
    for resolver in [&catalog as &dyn Resolver, &view] {
        let env = resolver
            .resolve(&request("acme", "orders", "production"))
            .unwrap();
        assert_eq!(value(&env, "A"), "crm-pw-77");
        assert_eq!(value(&env, "B"), "crm-pw-77");
        assert_eq!(env.provenance("B").unwrap().connection_id, orders_crm.id());
    }
}

#[test]
fn an_integration_connection_shadows_the_project_connection_of_the_same_name() {
    let registry = Registry::in_memory();
    let (shared, _) = registry
        .create_connection(crm(None, "https://crm.example.com"))
        .unwrap();
    let (own, _) = registry
        .create_connection(crm(Some("orders"), "https://crm-sandbox.example.com"))
        .unwrap();
    for integration in ["orders", "billing"] {
        registry
            .set_mappings(
                Mappings::of("acme", integration)
                    .by_name("crm", [("ServiceURL", "CRM_URL")])
                    .build()
                    .unwrap(),
                None,
            )
            .unwrap();
    }

    let orders = registry
        .resolve(&request("acme", "orders", "production"))
        .unwrap();
    assert_eq!(value(&orders, "CRM_URL"), "https://crm-sandbox.example.com");
    assert_eq!(orders.provenance("CRM_URL").unwrap().connection_id, own);
    assert_eq!(
        orders.provenance("CRM_URL").unwrap().scope,
        Scope::Integration("orders".parse().unwrap())
    );

    let billing = registry
        .resolve(&request("acme", "billing", "production"))
        .unwrap();
    assert_eq!(value(&billing, "CRM_URL"), "https://crm.example.com");
    assert_eq!(billing.provenance("CRM_URL").unwrap().connection_id, shared);
}

#[test]
fn a_reference_by_id_gets_exactly_that_connection_even_when_shadowed() {
    let registry = Registry::in_memory();
    let (shared, _) = registry
        .create_connection(crm(None, "https://crm.example.com"))
        .unwrap();
    let (own, _) = registry
        .create_connection(crm(Some("orders"), "https://crm-sandbox.example.com"))
        .unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_id(shared, [("ServiceURL", "SHARED_CRM_URL")])
                .by_id(own, [("ServiceURL", "OWN_CRM_URL")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let env = registry
        .resolve(&request("acme", "orders", "production"))
        .unwrap();
    assert_eq!(value(&env, "SHARED_CRM_URL"), "https://crm.example.com");
    assert_eq!(env.provenance("SHARED_CRM_URL").unwrap().connection_id, shared);
    assert_eq!(value(&env, "OWN_CRM_URL"), "https://crm-sandbox.example.com");
    assert_eq!(env.provenance("OWN_CRM_URL").unwrap().connection_id, own);
    assert_eq!(
        env.provenance("OWN_CRM_URL").unwrap().name_source,
        NameSource::Explicit
    );
    assert_eq!(
        env.provenance("OWN_CRM_URL").unwrap().source,
        ValueSource::Layer(connective::model::Layer::Default)
    );
}

#[test]
fn visible_connections_list_own_before_project_and_mark_the_shadowed_one() {
    let registry = Registry::in_memory();
    let (shared, _) = registry
        .create_connection(crm(None, "https://crm.example.com"))
        .unwrap();
    let (own, _) = registry
        .create_connection(crm(Some("orders"), "https://crm-sandbox.example.com"))
        .unwrap();
    let (twilio_id, _) = registry.create_connection(twilio()).unwrap();
    let (_, _) = registry.create_connection(legacy_crm("billing")).unwrap();
    let acme: ProjectId = "acme".parse().unwrap();

    let seen: Vec<(ConnectionId, Option<ConnectionId>)> = registry
        .visible_connections(&acme, &"orders".parse().unwrap())
        .into_iter()
        .map(|v| (v.connection.value.id(), v.shadowed_by))
        .collect();
    assert_eq!(
        seen,
        vec![(own, None), (shared, Some(own)), (twilio_id, None)],
        "sorted by name, the integration's own first; billing's legacy-crm absent"
    );

    let for_billing: Vec<ConnectionId> = registry
        .visible_connections(&acme, &"billing".parse().unwrap())
        .into_iter()
        .filter(|v| v.shadowed_by.is_none())
        .map(|v| v.connection.value.id())
        .collect();
    assert!(for_billing.contains(&shared), "nothing shadows crm for billing");
}

#[test]
fn names_are_unique_per_scope_but_may_repeat_across_scopes() {
    let registry = Registry::in_memory();
    let (shared, _) = registry
        .create_connection(crm(None, "https://crm.example.com"))
        .unwrap();
    registry
        .create_connection(crm(Some("orders"), "https://a.example.com"))
        .unwrap();
    registry
        .create_connection(crm(Some("billing"), "https://b.example.com"))
        .unwrap();
    let before = registry.catalog().revision();
    match registry.create_connection(crm(None, "https://other.example.com")) {
        Err(RegistryError::NameTaken {
            existing,
            name,
            scope,
            ..
        }) => {
            assert_eq!(existing, shared);
            assert_eq!(name.as_str(), "crm");
            assert_eq!(scope, Scope::Project);
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert!(matches!(
        registry.create_connection(crm(Some("orders"), "https://c.example.com")),
        Err(RegistryError::NameTaken { .. })
    ));
    assert_eq!(registry.catalog().revision(), before);
}

#[test]
fn creating_a_shadowing_connection_reports_the_rebinding() {
    let registry = Registry::in_memory();
    let (shared, _) = registry
        .create_connection(crm(None, "https://crm.example.com"))
        .unwrap();
    for integration in ["orders", "billing"] {
        registry
            .set_mappings(
                Mappings::of("acme", integration)
                    .by_name("crm", [("ServiceURL", "CRM_URL")])
                    .build()
                    .unwrap(),
                None,
            )
            .unwrap();
    }
    // An integration that refers by ID is not affected by shadowing.
    registry
        .set_mappings(
            Mappings::of("acme", "reports")
                .by_id(shared, [("ServiceURL", "CRM_URL")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();

    let (own, report) = registry
        .create_connection(crm(Some("orders"), "https://crm-sandbox.example.com"))
        .unwrap();
    assert_eq!(report.rebindings.len(), 1, "{:?}", report.rebindings);
    let rebinding = &report.rebindings[0];
    assert_eq!(rebinding.project.as_str(), "acme");
    assert_eq!(rebinding.integration.as_str(), "orders");
    assert_eq!(rebinding.name.as_str(), "crm");
    assert_eq!(rebinding.before, shared);
    assert_eq!(rebinding.after, Some(own));
    assert!(
        rebinding
            .to_string()
            .contains("integration orders now resolves crm to")
    );

    // Creating an unrelated connection rebinds nothing.
    let (_, report) = registry.create_connection(twilio()).unwrap();
    assert!(report.rebindings.is_empty());

    // Deleting the shadowing connection (forced: orders uses it) hands orders
    // back to the project connection, and says so.
    let version = registry
        .connection(&"acme".parse().unwrap(), own)
        .unwrap()
        .version;
    let report = registry
        .delete_connection(&"acme".parse().unwrap(), own, version, DeleteMode::Force)
        .unwrap();
    assert_eq!(report.rebindings.len(), 1);
    assert_eq!(report.rebindings[0].before, own);
    assert_eq!(report.rebindings[0].after, Some(shared));
    let orders = registry
        .resolve(&request("acme", "orders", "production"))
        .unwrap();
    assert_eq!(value(&orders, "CRM_URL"), "https://crm.example.com");
}
