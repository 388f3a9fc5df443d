//! Rule 4: parameter mappings into environment variables.
//!
//! Choreo's component configuration maps each parameter `from` a connection
//! `to` an environment variable; a connection referenced without a mapping
//! injects every parameter as `PREFIX_CONNECTION_PARAM`. Names must be valid,
//! unique within the integration and not reserved by the host, and every
//! problem is reported at once.

use std::sync::Arc;

use connective::catalog::Catalog;
use connective::model::{
    Connection, ConnectionId, ConnectionRef, ConnectionUse, EnvEntry, EnvMapping, IdentKind, ParseError,
    Record, ReservedNames, ResolvePolicy, Revision, SpecProblem, Version,
};
use connective::prelude::*;
use connective::resolve::{NameSource, Problem};

use crate::support::acme;

fn production(integration: &str) -> ResolveRequest {
    ResolveRequest::parse("acme", integration, "production").unwrap()
}

fn names(env: &ResolvedEnv) -> Vec<&str> {
    env.iter().map(|v| v.name().as_str()).collect()
}

fn legacy_crm() -> ConnectionSpec {
    ConnectionSpec::project("acme", "legacy-crm")
        .target(Target::external("legacy-crm"))
        .auth(AuthScheme::Basic)
        .param(Param::plain("ServiceURL").default("https://crm.example.com"))
        .param(Param::plain("Username").default("orders-bot"))
        .param(
            Param::secret("Password")
                .default("crm-pw-1")
                .env("production", "crm-pw-prod"),
        )
        .param(Param::plain("Proxy").optional())
        .build()
        .unwrap()
}

fn api(name: &str) -> ConnectionSpec {
    ConnectionSpec::project("acme", name)
        .target(Target::external(name))
        .auth(AuthScheme::ApiKey)
        .param(Param::plain("ServiceURL").default(format!("https://api.{name}.com")))
        .param(Param::secret("ApiKey").default(format!("{name}-key")))
        .build()
        .unwrap()
}

fn problems(err: RegistryError) -> Vec<Problem> {
    match err {
        RegistryError::InvalidMappings { problems, .. } => problems,
        other => panic!("expected InvalidMappings, got {other}"),
    }
}

#[test]
fn explicit_entries_inject_the_named_variables_in_mapping_order() {
    let registry = Registry::in_memory();
    registry.create_connection(api("twilio")).unwrap();
    registry.create_connection(api("stripe")).unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("twilio", [("ApiKey", "SMS_KEY"), ("ServiceURL", "SMS_URL")])
                .by_name("stripe", [("ServiceURL", "PAYMENTS_URL")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let env = registry.resolve(&production("orders")).unwrap();
    assert_eq!(names(&env), ["SMS_KEY", "SMS_URL", "PAYMENTS_URL"]);
    assert_eq!(
        env.get("SMS_URL").unwrap().value().expose(),
        "https://api.twilio.com"
    );
    assert_eq!(
        env.get("PAYMENTS_URL").unwrap().value().expose(),
        "https://api.stripe.com"
    );
    assert!(
        env.iter()
            .all(|v| v.provenance().name_source == NameSource::Explicit)
    );
    assert_eq!(env.provenance("SMS_KEY").unwrap().param.as_str(), "ApiKey");

    // Mapping the same parameter twice under two names is fine.
    registry
        .set_mappings(
            Mappings::of("acme", "billing")
                .by_name(
                    "stripe",
                    [("ApiKey", "STRIPE_KEY"), ("ApiKey", "LEGACY_STRIPE_KEY")],
                )
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let env = registry.resolve(&production("billing")).unwrap();
    assert_eq!(names(&env), ["STRIPE_KEY", "LEGACY_STRIPE_KEY"]);
}

#[test]
fn default_names_are_the_hosts_prefix_then_connection_then_parameter() {
    let registry = Registry::builder()
        .prefix("CHOREO".parse().unwrap())
        .build()
        .unwrap();
    registry.create_connection(legacy_crm()).unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name_defaults("legacy-crm")
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let env = registry.resolve(&production("orders")).unwrap();
    // Upper-cased, '-' turned into '_'; the optional Proxy has no value and is
    // left out.
    assert_eq!(
        names(&env),
        [
            "CHOREO_LEGACY_CRM_SERVICEURL",
            "CHOREO_LEGACY_CRM_USERNAME",
            "CHOREO_LEGACY_CRM_PASSWORD"
        ]
    );
    assert_eq!(
        env.get("CHOREO_LEGACY_CRM_PASSWORD").unwrap().value().expose(),
        "crm-pw-prod"
    );
    let why = env.provenance("CHOREO_LEGACY_CRM_PASSWORD").unwrap();
    assert_eq!(why.name_source, NameSource::Default);
    assert!(why.to_string().ends_with("(default variable name)"), "{why}");

    let bare = Registry::in_memory();
    bare.create_connection(legacy_crm()).unwrap();
    bare.set_mappings(
        Mappings::of("acme", "orders")
            .by_name_defaults("legacy-crm")
            .build()
            .unwrap(),
        None,
    )
    .unwrap();
    let env = bare.resolve(&production("orders")).unwrap();
    assert_eq!(
        names(&env),
        [
            "LEGACY_CRM_SERVICEURL",
            "LEGACY_CRM_USERNAME",
            "LEGACY_CRM_PASSWORD"
        ]
    );
}

#[test]
fn default_names_inject_exactly_what_the_explicit_mapping_would() {
    let registry = Registry::builder()
        .prefix("CHOREO".parse().unwrap())
        .build()
        .unwrap();
    let (id, _) = registry.create_connection(legacy_crm()).unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders").by_id_defaults(id).build().unwrap(),
            None,
        )
        .unwrap();
    let defaults = registry.resolve(&production("orders")).unwrap();
    let entries: Vec<(String, String)> = defaults
        .iter()
        .map(|v| (v.provenance().param.to_string(), v.name().to_string()))
        .collect();
    registry
        .set_mappings(
            Mappings::of("acme", "billing")
                .by_id(id, entries)
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let explicit = registry.resolve(&production("billing")).unwrap();
    assert_eq!(names(&defaults), names(&explicit));
    for (d, e) in defaults.iter().zip(explicit.iter()) {
        assert_eq!(d.value().expose(), e.value().expose());
        assert_eq!(d.value().is_secret(), e.value().is_secret());
        assert_eq!(d.provenance().source, e.provenance().source);
        assert_eq!(d.provenance().connection_id, e.provenance().connection_id);
        assert_eq!(
            (d.provenance().name_source, e.provenance().name_source),
            (NameSource::Default, NameSource::Explicit)
        );
    }
}

#[test]
fn an_optional_parameter_without_a_value_is_left_out_only_by_default_names() {
    let registry = Registry::in_memory();
    let (id, _) = registry.create_connection(legacy_crm()).unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("legacy-crm", [("Proxy", "CRM_PROXY")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let err = registry.resolve(&production("orders")).unwrap_err();
    assert_eq!(
        err.problems,
        vec![Problem::MissingValue {
            connection: "legacy-crm".parse().unwrap(),
            connection_id: id,
            param: "Proxy".parse().unwrap(),
            environment: Environment::production(),
            customer: None,
        }],
        "an explicit entry asks for the value, so its absence is an error"
    );
    assert!(
        err.to_string()
            .contains("has no value for environment production without a customer"),
        "{err}"
    );
}

#[test]
fn two_entries_producing_one_variable_collide() {
    let registry = Registry::in_memory();
    registry.create_connection(api("twilio")).unwrap();
    registry.create_connection(api("stripe")).unwrap();
    let revision = registry.catalog().revision();
    let err = registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("twilio", [("ApiKey", "API_KEY")])
                .by_name("stripe", [("ApiKey", "API_KEY")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("variable API_KEY is produced by both twilio.ApiKey and stripe.ApiKey")
    );
    assert_eq!(
        problems(err),
        vec![Problem::Collision {
            variable: "API_KEY".parse().unwrap(),
            first: ("twilio".parse().unwrap(), "ApiKey".parse().unwrap()),
            second: ("stripe".parse().unwrap(), "ApiKey".parse().unwrap()),
        }]
    );
    assert_eq!(registry.catalog().revision(), revision);
}

#[test]
fn default_names_follow_the_same_collision_rule() {
    let registry = Registry::in_memory();
    registry.create_connection(api("twilio")).unwrap();
    // `my-db` and `my_db` are different connections with the same default
    // variable names.
    for name in ["my-db", "my_db"] {
        registry
            .create_connection(
                ConnectionSpec::project("acme", name)
                    .param(Param::plain("HostName").default(format!("{name}.internal")))
                    .build()
                    .unwrap(),
            )
            .unwrap();
    }
    let err = registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name_defaults("my-db")
                .by_name_defaults("my_db")
                .build()
                .unwrap(),
            None,
        )
        .unwrap_err();
    assert_eq!(
        problems(err),
        vec![Problem::Collision {
            variable: "MY_DB_HOSTNAME".parse().unwrap(),
            first: ("my-db".parse().unwrap(), "HostName".parse().unwrap()),
            second: ("my_db".parse().unwrap(), "HostName".parse().unwrap()),
        }]
    );

    // An explicit entry against a default name collides as well.
    let err = registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("twilio", [("ServiceURL", "MY_DB_HOSTNAME")])
                .by_name_defaults("my-db")
                .build()
                .unwrap(),
            None,
        )
        .unwrap_err();
    assert!(matches!(&problems(err)[..], [Problem::Collision { .. }]));
}

#[test]
fn an_update_whose_new_parameter_collides_with_a_dependents_variable_is_refused() {
    let registry = Registry::in_memory();
    let (crm, _) = registry
        .create_connection(
            ConnectionSpec::project("acme", "crm")
                .param(Param::plain("Url").default("https://crm"))
                .build()
                .unwrap(),
        )
        .unwrap();
    registry.create_connection(api("twilio")).unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name_defaults("crm")
                .by_name("twilio", [("ApiKey", "CRM_TOKEN")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    assert_eq!(
        names(&registry.resolve(&production("orders")).unwrap()),
        ["CRM_URL", "CRM_TOKEN"]
    );

    // The CRM connection gains a `Token` parameter: its default name is taken,
    // so the update is refused with the dependent's problem (rule 9), and
    // nothing changes.
    let version = registry.connection(&acme(), crm).unwrap().version;
    let err = registry
        .update_connection(
            crm,
            version,
            ConnectionSpec::project("acme", "crm")
                .param(Param::plain("Url").default("https://crm"))
                .param(Param::secret("Token").default("crm-token"))
                .build()
                .unwrap(),
        )
        .unwrap_err();
    match err {
        RegistryError::InvalidMappings {
            integration,
            problems,
            ..
        } => {
            assert_eq!(integration, "orders".parse::<IntegrationId>().unwrap());
            assert_eq!(
                problems,
                vec![Problem::Collision {
                    variable: "CRM_TOKEN".parse().unwrap(),
                    first: ("crm".parse().unwrap(), "Token".parse().unwrap()),
                    second: ("twilio".parse().unwrap(), "ApiKey".parse().unwrap()),
                }]
            );
        }
        other => panic!("expected InvalidMappings, got {other}"),
    }
    assert_eq!(registry.connection(&acme(), crm).unwrap().version, version);
    assert_eq!(
        names(&registry.resolve(&production("orders")).unwrap()),
        ["CRM_URL", "CRM_TOKEN"]
    );
}

#[test]
fn an_update_removing_a_mapped_parameter_is_refused() {
    let registry = Registry::in_memory();
    let (twilio, _) = registry.create_connection(api("twilio")).unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("twilio", [("ApiKey", "SMS_KEY")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let version = registry.connection(&acme(), twilio).unwrap().version;
    let err = registry
        .update_connection(
            twilio,
            version,
            ConnectionSpec::project("acme", "twilio")
                .param(Param::plain("ServiceURL").default("https://api.twilio.com"))
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, RegistryError::InvalidMappings { problems, .. }
            if matches!(&problems[..], [Problem::UnknownParam { .. }])),
        "{err}"
    );
    assert!(registry.resolve(&production("orders")).is_ok());
}

#[test]
fn the_hosts_default_reserved_names_are_refused() {
    let registry = Registry::in_memory();
    registry.create_connection(api("twilio")).unwrap();
    // A connection whose default names land on a reserved prefix.
    registry
        .create_connection(
            ConnectionSpec::project("acme", "ld")
                .param(Param::plain("Preload").default("/tmp/x.so"))
                .build()
                .unwrap(),
        )
        .unwrap();
    let err = registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name(
                    "twilio",
                    [
                        ("ServiceURL", "PATH"),
                        ("ServiceURL", "HOME"),
                        ("ApiKey", "LC_ALL"),
                        ("ApiKey", "OK_NAME"),
                    ],
                )
                .by_name_defaults("ld")
                .build()
                .unwrap(),
            None,
        )
        .unwrap_err();
    let reserved: Vec<(String, String)> = problems(err)
        .into_iter()
        .map(|p| match p {
            Problem::Reserved { variable, reason, .. } => (variable.to_string(), reason),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(
        reserved,
        [
            ("PATH".to_string(), "the host reserves this name".to_string()),
            ("HOME".into(), "the host reserves this name".into()),
            (
                "LC_ALL".into(),
                "the host reserves names starting with LC_".into()
            ),
            (
                "LD_PRELOAD".into(),
                "the host reserves names starting with LD_".into()
            ),
        ]
    );
}

#[test]
fn the_host_configures_which_names_are_reserved() {
    let strict = Registry::builder()
        .reserved(
            ReservedNames::default()
                .with_name("PORT".parse().unwrap())
                .with_prefix("K8S_"),
        )
        .build()
        .unwrap();
    let lax = Registry::builder()
        .reserved(ReservedNames::none())
        .build()
        .unwrap();
    for registry in [&strict, &lax] {
        registry.create_connection(api("twilio")).unwrap();
    }
    let mappings = || {
        Mappings::of("acme", "orders")
            .by_name(
                "twilio",
                [
                    ("ServiceURL", "PORT"),
                    ("ServiceURL", "K8S_SERVICE"),
                    ("ApiKey", "PATH"),
                    ("ApiKey", "APP_KEY"),
                ],
            )
            .build()
            .unwrap()
    };
    let refused: Vec<String> = problems(strict.set_mappings(mappings(), None).unwrap_err())
        .into_iter()
        .map(|p| match p {
            Problem::Reserved { variable, .. } => variable.to_string(),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(
        refused,
        ["PORT", "K8S_SERVICE", "PATH"],
        "the defaults stay reserved"
    );

    lax.set_mappings(mappings(), None).unwrap();
    let env = lax.resolve(&production("orders")).unwrap();
    assert_eq!(names(&env), ["PORT", "K8S_SERVICE", "PATH", "APP_KEY"]);
}

#[test]
fn malformed_names_in_mappings_are_typed_errors_listed_together() {
    let err = Mappings::of("acme", "orders")
        .by_name(
            "twilio",
            [("ApiKey", "1PASSWORD"), ("Api Key", "TWILIO_KEY"), ("ApiKey", "")],
        )
        .by_name("2fa", [("Code", "CODE")])
        .by_id("twilio", [("ApiKey", "KEY")])
        .build()
        .unwrap_err();
    let fields: Vec<(&str, &ParseError)> = err
        .problems
        .iter()
        .map(|p| match p {
            SpecProblem::Ident { field, error } => (field.as_str(), error),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(fields.len(), 5, "{err}");
    assert_eq!(fields[0].0, "connections[0].env[0].to");
    assert!(matches!(
        fields[0].1,
        ParseError::BadChar {
            kind: IdentKind::EnvVarName,
            position: 0,
            found: '1',
            ..
        }
    ));
    assert_eq!(fields[1].0, "connections[0].env[1].from");
    assert!(matches!(
        fields[1].1,
        ParseError::BadChar {
            kind: IdentKind::ParamName,
            position: 3,
            found: ' ',
            ..
        }
    ));
    assert_eq!(fields[2].0, "connections[0].env[2].to");
    assert!(matches!(
        fields[2].1,
        ParseError::Empty {
            kind: IdentKind::EnvVarName
        }
    ));
    assert_eq!(fields[3].0, "connections[1].reference");
    assert!(matches!(
        fields[3].1,
        ParseError::BadChar {
            kind: IdentKind::ConnectionName,
            position: 0,
            ..
        }
    ));
    assert_eq!(fields[4].0, "connections[2].reference");
    assert_eq!(fields[4].1.kind(), IdentKind::ConnectionId);
    assert!(
        err.to_string().starts_with(
            "invalid mappings for integration orders of project acme: connections[0].env[0].to: invalid environment variable name \"1PASSWORD\""
        ),
        "{err}"
    );

    assert_eq!(
        (err.project.as_str(), err.integration.as_str()),
        ("acme", "orders")
    );

    // Through `?`, a registry write reports the same error.
    let registry = Registry::in_memory();
    let result: Result<connective::registry::WriteReport, RegistryError> = (|| {
        let m = Mappings::of("acme", "orders")
            .by_name("twilio", [("ApiKey", "MY-KEY")])
            .build()?;
        registry.set_mappings(m, None)
    })();
    assert!(
        matches!(result, Err(RegistryError::MappingsSyntax(_))),
        "{result:?}"
    );
}

#[test]
fn every_problem_of_a_mappings_write_is_reported_at_once() {
    let registry = Registry::in_memory();
    registry.create_connection(api("twilio")).unwrap();
    registry.create_connection(api("stripe")).unwrap();
    let ghost = ConnectionId::random();
    let err = registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("twilio", [("ApiKey", "API_KEY"), ("AuthToken", "TWILIO_TOKEN")])
                .by_id(ghost, [("ApiKey", "GHOST_KEY")])
                .by_name(
                    "stripe",
                    [("ApiKey", "API_KEY"), ("ServiceURL", "LD_LIBRARY_PATH")],
                )
                .by_name("sendgrid", [("ApiKey", "MAIL_KEY")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap_err();
    let text = err.to_string();
    let kinds: Vec<&str> = problems(err)
        .iter()
        .map(|p| match p {
            Problem::UnknownParam { param, .. } => {
                assert_eq!(param.as_str(), "AuthToken");
                "unknown parameter"
            }
            Problem::NotVisible { reference, .. } => match reference {
                ConnectionRef::Id(id) => {
                    assert_eq!(*id, ghost);
                    "invisible by id"
                }
                ConnectionRef::Name(name) => {
                    assert_eq!(name.as_str(), "sendgrid");
                    "invisible by name"
                }
            },
            Problem::Collision { variable, .. } => {
                assert_eq!(variable.as_str(), "API_KEY");
                "collision"
            }
            Problem::Reserved { variable, .. } => {
                assert_eq!(variable.as_str(), "LD_LIBRARY_PATH");
                "reserved"
            }
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "unknown parameter",
            "invisible by id",
            "collision",
            "reserved",
            "invisible by name"
        ],
        "in mapping order"
    );
    assert!(
        text.starts_with("invalid mappings for integration orders of project acme: "),
        "{text}"
    );
}

/// A catalog assembled from records (as a host's fixture or another replica
/// might hold it) whose mappings are wrong in every way at once.
#[test]
fn every_problem_of_a_resolution_is_reported_in_one_error() {
    let acme = acme();
    let twilio = Connection::new(ConnectionId::random(), api("twilio"), None);
    let erp = Connection::new(
        ConnectionId::random(),
        ConnectionSpec::project("acme", "erp")
            .param(
                Param::secret("ApiKey")
                    .per_customer(EnteredBy::Organization)
                    .customer("globex", "k"),
            )
            .param(Param::plain("Region").env("development", "eu-dev"))
            .build()
            .unwrap(),
        None,
    );
    let entry = |from: &str, to: &str| EnvEntry {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
    };
    let uses = vec![
        ConnectionUse {
            reference: ConnectionRef::Name(twilio.name().clone()),
            env: EnvMapping::Explicit(vec![
                entry("ApiKey", "KEY"),
                entry("Nope", "NOPE"),
                entry("ServiceURL", "HOME"),
            ]),
        },
        ConnectionUse {
            reference: ConnectionRef::Name("gone".parse().unwrap()),
            env: EnvMapping::Defaults,
        },
        ConnectionUse {
            reference: ConnectionRef::Id(erp.id()),
            env: EnvMapping::Explicit(vec![entry("ApiKey", "ERP_KEY"), entry("Region", "ERP_REGION")]),
        },
        ConnectionUse {
            reference: ConnectionRef::Name(twilio.name().clone()),
            env: EnvMapping::Explicit(vec![entry("ServiceURL", "KEY")]),
        },
    ];
    let records = [
        Record::Connection(Arc::new(twilio.clone())),
        Record::Connection(Arc::new(erp.clone())),
        Record::Mappings(Arc::new(
            Mappings::new(acme.clone(), "orders".parse().unwrap(), uses).unwrap(),
        )),
    ];
    let catalog = Catalog::from_records(
        ResolvePolicy::default(),
        Revision(7),
        records.into_iter().map(|r| (Version(1), r)),
    );
    let err = catalog.resolve(&production("orders")).unwrap_err();
    let orders: IntegrationId = "orders".parse().unwrap();
    let pair = |c: &Connection, p: &str| (c.name().clone(), p.parse().unwrap());
    assert_eq!(
        err.problems,
        vec![
            Problem::UnknownParam {
                connection: twilio.name().clone(),
                connection_id: twilio.id(),
                param: "Nope".parse().unwrap(),
            },
            Problem::Reserved {
                variable: "HOME".parse().unwrap(),
                connection: twilio.name().clone(),
                param: "ServiceURL".parse().unwrap(),
                reason: "the host reserves this name".into(),
            },
            Problem::NotVisible {
                reference: ConnectionRef::Name("gone".parse().unwrap()),
                integration: orders,
            },
            Problem::CustomerRequired {
                connection: erp.name().clone(),
                connection_id: erp.id(),
                param: "ApiKey".parse().unwrap(),
            },
            Problem::MissingValue {
                connection: erp.name().clone(),
                connection_id: erp.id(),
                param: "Region".parse().unwrap(),
                environment: Environment::production(),
                customer: None,
            },
            Problem::Collision {
                variable: "KEY".parse().unwrap(),
                first: pair(&twilio, "ApiKey"),
                second: pair(&twilio, "ServiceURL"),
            },
        ]
    );
    assert!(
        err.to_string().starts_with(
            "cannot resolve integration orders of project acme in environment production: 6 problems: "
        ),
        "{err}"
    );

    // The value problems depend on the request; the mapping problems do not.
    let dev = catalog
        .resolve(
            &production("orders")
                .in_environment(Environment::development())
                .for_customer("globex")
                .unwrap(),
        )
        .unwrap_err();
    assert_eq!(dev.problems.len(), 4, "{dev}");
}

/// A parameter without a value for the environment still claims its
/// variable: the resolution reports the missing value *and* the collision or
/// reserved name, not one hiding the other.
#[test]
fn a_missing_value_does_not_hide_a_collision_or_a_reserved_name() {
    let twilio = Connection::new(ConnectionId::random(), api("twilio"), None);
    let erp = Connection::new(
        ConnectionId::random(),
        ConnectionSpec::project("acme", "erp")
            .param(Param::plain("Region").env("development", "eu-dev"))
            .param(Param::plain("Home").env("development", "/srv/erp"))
            .build()
            .unwrap(),
        None,
    );
    let entry = |from: &str, to: &str| EnvEntry {
        from: from.parse().unwrap(),
        to: to.parse().unwrap(),
    };
    let uses = vec![
        ConnectionUse {
            reference: ConnectionRef::Id(erp.id()),
            env: EnvMapping::Explicit(vec![entry("Region", "REGION"), entry("Home", "HOME")]),
        },
        ConnectionUse {
            reference: ConnectionRef::Id(twilio.id()),
            env: EnvMapping::Explicit(vec![entry("ServiceURL", "REGION")]),
        },
    ];
    let catalog = Catalog::from_records(
        ResolvePolicy::default(),
        Revision(1),
        [
            Record::Connection(Arc::new(twilio.clone())),
            Record::Connection(Arc::new(erp.clone())),
            Record::Mappings(Arc::new(
                Mappings::new(acme(), "orders".parse().unwrap(), uses).unwrap(),
            )),
        ]
        .into_iter()
        .map(|r| (Version(1), r)),
    );
    let missing = |param: &str| Problem::MissingValue {
        connection: erp.name().clone(),
        connection_id: erp.id(),
        param: param.parse().unwrap(),
        environment: Environment::production(),
        customer: None,
    };
    let reserved = Problem::Reserved {
        variable: "HOME".parse().unwrap(),
        connection: erp.name().clone(),
        param: "Home".parse().unwrap(),
        reason: "the host reserves this name".into(),
    };
    let collision = Problem::Collision {
        variable: "REGION".parse().unwrap(),
        first: (erp.name().clone(), "Region".parse().unwrap()),
        second: (twilio.name().clone(), "ServiceURL".parse().unwrap()),
    };
    let err = catalog.resolve(&production("orders")).unwrap_err();
    assert_eq!(
        err.problems,
        vec![
            missing("Region"),
            missing("Home"),
            reserved.clone(),
            collision.clone()
        ]
    );
    // In development the values exist and only the name problems remain.
    let err = catalog
        .resolve(&production("orders").in_environment(Environment::development()))
        .unwrap_err();
    assert_eq!(err.problems, vec![reserved, collision]);
}

/// An integrator reading a failed test, or an operator a log, learns whose
/// mappings are wrong: the integration and project are named, as given when
/// they are themselves invalid.
#[test]
fn malformed_mappings_name_their_integration_and_project() {
    let err = Mappings::of("acme", "billing")
        .by_name_defaults("2fa")
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid mappings for integration billing of project acme: connections[0].reference: \
         invalid connection name \"2fa\": character '2' at position 0 is not allowed \
         (letters, digits, '-' and '_'; starting with a letter)",
    );

    let err = Mappings::of("acme corp", "").build().unwrap_err();
    assert_eq!(
        (err.project.as_str(), err.integration.as_str()),
        ("acme corp", "")
    );
    assert!(
        err.to_string()
            .starts_with("invalid mappings for integration \"\" of project acme corp: project: "),
        "{err}"
    );

    // Mappings assembled from parsed parts (and deserialized ones) too.
    let uses = vec![
        ConnectionUse {
            reference: ConnectionRef::Name("crm".parse().unwrap()),
            env: EnvMapping::Defaults,
        };
        connective::model::MAX_USES + 1
    ];
    let err = Mappings::new("acme".parse().unwrap(), "orders".parse().unwrap(), uses).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid mappings for integration orders of project acme: "),
        "{err}"
    );
}
