//! Connection types: a field schema defined once, per project or per host,
//! that every connection of the type is held to on every write.

use connective::model::{
    AuthField, DataKind, Layer, ResolvePolicy, SpecProblem, TargetKind, TypeLibrary, TypeName, TypeProblem,
    ValueProblem,
};
use connective::prelude::*;

use crate::support::acme;

fn postgres() -> ConnectionType {
    ConnectionType::builder("postgresql")
        .label("PostgreSQL")
        .target(TargetKind::Database)
        .field(Field::string("HostName").label("Host"))
        .field(
            Field::integer("Port")
                .label("Port")
                .range(1, 65535)
                .default("5432"),
        )
        .field(Field::string("Username").label("User"))
        .field(Field::secret("Password").label("Password"))
        .field(Field::string("DatabaseName").label("Database"))
        .field(Field::picklist("SslMode", ["disable", "require", "verify-full"]).optional())
        .build()
        .unwrap()
}

fn slack() -> ConnectionType {
    ConnectionType::builder("slack-oauth2")
        .label("Slack OAuth 2.0")
        .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
        .field(Field::url("AuthorizeURL").default("https://slack.com/oauth/v2/authorize"))
        .field(Field::url("TokenURL").default("https://slack.com/api/oauth.v2.access"))
        .field(Field::string("ClientID"))
        .field(Field::secret("ClientSecret"))
        .field(Field::string("Scopes").default("chat:write"))
        .build()
        .unwrap()
}

fn warehouse(port: &str) -> ConnectionSpec {
    ConnectionSpec::project("acme", "warehouse")
        .target(Target::database("postgresql"))
        .of_type(&postgres())
        .value("HostName", Layer::Default, "db.internal")
        .value("Port", Layer::Default, port)
        .value("Username", Layer::Default, "orders")
        .value("Password", Layer::Default, "pg-s3cret-value")
        .value("DatabaseName", Layer::Default, "warehouse")
        .build()
        .unwrap()
}

fn type_problems(e: RegistryError) -> Vec<TypeProblem> {
    match e {
        RegistryError::Type(e) => e.problems,
        other => panic!("expected a type error, got {other:?}"),
    }
}

#[test]
fn a_connection_of_a_project_type_is_checked_on_create_update_and_value_edits() {
    let registry = Registry::in_memory();
    registry.put_type(&acme(), postgres(), None).unwrap();
    let (id, _) = registry.create_connection(warehouse("5432")).unwrap();

    // Create: every problem at once, each naming its field.
    let bad = ConnectionSpec::project("acme", "other")
        .target(Target::database("postgresql"))
        .of_type(&postgres())
        .value("HostName", Layer::Default, "db\nevil")
        .value("Port", Layer::Default, "5432x")
        .value("Port", Layer::Environment(Environment::production()), "0")
        .value("SslMode", Layer::Default, "sometimes")
        .build()
        .unwrap();
    let problems = type_problems(registry.create_connection(bad).unwrap_err());
    let fields: Vec<(String, DataKind)> = problems
        .iter()
        .map(|p| match p {
            TypeProblem::BadValue { field, expected, .. } => (field.to_string(), *expected),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(
        fields,
        [
            ("HostName".to_owned(), DataKind::String),
            ("Port".to_owned(), DataKind::Integer),
            ("Port".to_owned(), DataKind::Integer),
            ("SslMode".to_owned(), DataKind::Picklist),
        ]
    );
    assert!(matches!(
        &problems[1],
        TypeProblem::BadValue {
            why: ValueProblem::NotInteger,
            layer: Layer::Default,
            ..
        }
    ));
    assert!(matches!(
        &problems[2],
        TypeProblem::BadValue {
            why: ValueProblem::OutOfRange { .. },
            ..
        }
    ));

    // Update: the same checks.
    let version = registry.connection(&acme(), id).unwrap().version;
    let problems = type_problems(
        registry
            .update_connection(id, version, warehouse("99999"))
            .unwrap_err(),
    );
    assert!(matches!(&problems[..], [TypeProblem::BadValue { field, .. }] if field == "Port"));

    // A value edit: the same checks, and the secret never shows.
    let err = registry
        .set_value(
            &acme(),
            id,
            version,
            &"Port".parse().unwrap(),
            Layer::Default,
            "http",
        )
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("field Port (default value) must be an integer: not an integer"),
        "{err}"
    );
    registry
        .set_value(
            &acme(),
            id,
            version,
            &"Port".parse().unwrap(),
            Layer::Default,
            "6432",
        )
        .unwrap();
    let err = registry
        .write(|tx| {
            tx.create_connection(
                ConnectionSpec::project("acme", "extra")
                    .target(Target::database("postgresql"))
                    .of_type(&postgres())
                    .param(Param::plain("Unknown").default("x"))
                    .build()?,
            )
        })
        .unwrap_err();
    assert!(matches!(
        &type_problems(err)[..],
        [TypeProblem::UnknownField { field }] if field == "Unknown"
    ));
}

#[test]
fn a_connection_must_be_stored_as_its_type_says() {
    let registry = Registry::in_memory();
    registry.put_type(&acme(), slack(), None).unwrap();
    let spec = ConnectionSpec::project("acme", "slack")
        .type_name("slack-oauth2")
        .target(Target::external("slack"))
        .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
        .param(Param::plain("AuthorizeURL").default("https://slack.com/oauth/v2/authorize"))
        .param(Param::plain("TokenURL").default("ftp://slack.com/token"))
        .param(Param::plain("ClientID"))
        .param(Param::secret("ClientSecret").optional())
        .param(Param::plain("Scopes").optional())
        .build()
        .unwrap();
    let problems = type_problems(registry.create_connection(spec).unwrap_err());
    assert!(problems.iter().any(|p| matches!(
        p,
        TypeProblem::BadValue { field, why: ValueProblem::SchemeNotAllowed { .. }, .. } if field == "TokenURL"
    )));
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, TypeProblem::RequirementMismatch { field, .. } if field == "Scopes"))
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, TypeProblem::RequirementMismatch { field, .. } if field == "ClientSecret"))
    );

    // Another auth scheme than the type's.
    let spec = ConnectionSpec::project("acme", "slack2")
        .of_type(&slack())
        .auth(AuthScheme::Custom)
        .build()
        .unwrap();
    let problems = type_problems(registry.create_connection(spec).unwrap_err());
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, TypeProblem::AuthMismatch { .. }))
    );

    // A type nobody defines.
    let spec = ConnectionSpec::project("acme", "x")
        .type_name("nope")
        .build()
        .unwrap();
    assert!(matches!(
        registry.create_connection(spec),
        Err(RegistryError::UnknownType { name, .. }) if name == "nope"
    ));
}

#[test]
fn a_host_type_serves_every_project_and_a_project_type_of_its_name_wins() {
    let host = ConnectionType::builder("webhook")
        .label("Webhook")
        .field(Field::url("URL").schemes(["https"]))
        .build()
        .unwrap();
    let registry = Registry::builder()
        .policy(ResolvePolicy::default().with_types(TypeLibrary::new([host.clone()]).unwrap()))
        .build()
        .unwrap();
    let hook = |project: &str, url: &str| {
        ConnectionSpec::project(project, "hook")
            .of_type(&host)
            .value("URL", Layer::Default, url)
            .build()
            .unwrap()
    };
    // Every project knows the host's type.
    for project in ["acme", "globex"] {
        registry
            .create_connection(hook(project, "https://hooks.example.com/1"))
            .unwrap();
    }
    let err = registry
        .create_connection(hook("initech", "http://hooks.example.com/1"))
        .unwrap_err();
    assert!(err.to_string().contains("not a URL of scheme https"), "{err}");

    // A project's own type of the same name takes precedence for it alone.
    let relaxed = ConnectionType::builder("webhook")
        .label("Webhook (any scheme)")
        .field(Field::url("URL").schemes(["http", "https"]))
        .build()
        .unwrap();
    registry
        .put_type(&"initech".parse().unwrap(), relaxed, None)
        .unwrap();
    registry
        .create_connection(hook("initech", "http://hooks.example.com/1"))
        .unwrap();
    let name: TypeName = "webhook".parse().unwrap();
    assert_eq!(
        registry
            .connection_type(&"initech".parse().unwrap(), &name)
            .unwrap()
            .label(),
        "Webhook (any scheme)"
    );
    assert_eq!(
        registry.connection_type(&acme(), &name).unwrap().label(),
        "Webhook"
    );

    // Deleting it puts the project back on the host's type, which its
    // connection no longer fits: refused.
    let initech: ProjectId = "initech".parse().unwrap();
    let version = registry.project_type(&initech, &name).unwrap().version;
    let err = registry.delete_type(&initech, &name, version).unwrap_err();
    assert!(matches!(&type_problems(err)[..], [TypeProblem::BadValue { .. }]));
}

#[test]
fn a_type_in_use_stays_and_a_change_its_connections_do_not_fit_is_refused() {
    let registry = Registry::in_memory();
    registry.put_type(&acme(), postgres(), None).unwrap();
    registry.create_connection(warehouse("5432")).unwrap();
    let name: TypeName = "postgresql".parse().unwrap();
    let version = registry.project_type(&acme(), &name).unwrap().version;
    assert!(matches!(
        registry.delete_type(&acme(), &name, version),
        Err(RegistryError::TypeInUse { connections, .. }) if connections.len() == 1
    ));
    // Narrowing the port range below the connection's value.
    let narrow = ConnectionType::builder("postgresql")
        .target(TargetKind::Database)
        .field(Field::string("HostName"))
        .field(Field::integer("Port").range(6000, 7000))
        .field(Field::string("Username"))
        .field(Field::secret("Password"))
        .field(Field::string("DatabaseName"))
        .field(Field::picklist("SslMode", ["disable"]).optional())
        .build()
        .unwrap();
    let problems = type_problems(registry.put_type(&acme(), narrow, Some(version)).unwrap_err());
    assert!(matches!(&problems[..], [TypeProblem::BadValue { field, .. }] if field == "Port"));
    // A stale version is a conflict, as for every record (rule 8).
    assert!(matches!(
        registry.put_type(&acme(), postgres(), None),
        Err(RegistryError::Conflict { .. })
    ));
}

#[test]
fn auth_schemes_declare_the_fields_they_need() {
    // A supplied OAuth client without its fields no longer builds.
    let err = ConnectionSpec::project("acme", "crm")
        .target(Target::external("crm"))
        .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
        .build()
        .unwrap_err();
    let missing: Vec<&str> = err
        .problems
        .iter()
        .filter_map(|p| match p {
            SpecProblem::MissingParam { param, .. } => Some(*param),
            _ => None,
        })
        .collect();
    assert_eq!(
        missing,
        ["AuthorizeURL", "TokenURL", "ClientID", "ClientSecret", "Scopes"]
    );
    assert!(
        err.to_string()
            .contains("an oauth2 authorization code connection needs parameter AuthorizeURL")
    );
    // Secret exactly where the scheme says, required where it must be.
    let err = ConnectionSpec::project("acme", "crm")
        .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
        .param(Param::plain("AuthorizeURL").optional())
        .param(Param::secret("TokenURL"))
        .param(Param::plain("ClientID"))
        .param(Param::plain("ClientSecret"))
        .param(Param::plain("Scopes").optional())
        .build()
        .unwrap_err();
    assert!(err.problems.contains(&SpecProblem::MustBeRequired {
        param: "AuthorizeURL".parse().unwrap()
    }));
    assert!(err.problems.contains(&SpecProblem::MustBePlain {
        param: "TokenURL".parse().unwrap()
    }));
    assert!(err.problems.contains(&SpecProblem::MustBeSecret {
        param: "ClientSecret".parse().unwrap()
    }));
    // A public client declares its secret optional and leaves it empty.
    assert!(
        ConnectionSpec::project("acme", "crm")
            .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
            .param(Param::plain("AuthorizeURL"))
            .param(Param::plain("TokenURL"))
            .param(Param::plain("ClientID"))
            .param(Param::secret("ClientSecret").optional())
            .param(Param::plain("Scopes").optional())
            .build()
            .is_ok()
    );
    // The names are the OAuth runtime's, and the database's Devant's.
    let names = |fields: &[AuthField]| fields.iter().map(|f| f.param).collect::<Vec<_>>();
    assert_eq!(names(&AuthField::DATABASE), Target::DATABASE_PARAMS);
    assert_eq!(
        names(AuthScheme::OAuth2(OAuthClient::Shared).fields()),
        ["TokenURL", "ConsumerKey", "ConsumerSecret"]
    );
    // A type of the scheme must have them, of the right kind.
    let err = ConnectionType::builder("db")
        .target(TargetKind::Database)
        .field(Field::string("Port"))
        .build()
        .unwrap_err();
    assert!(err.problems.iter().any(|p| matches!(p, TypeProblem::NeededFieldKind { field, expected: DataKind::Integer } if field == "Port")));
    assert!(err.problems.iter().any(|p| matches!(
        p,
        TypeProblem::NeedsField {
            field: "Password",
            kind: DataKind::Secret,
            ..
        }
    )));
}

#[test]
fn types_and_typed_connections_survive_a_reload_from_the_store() {
    let store = std::sync::Arc::new(connective::store::MemoryStore::new());
    let registry = Registry::builder().shared_store(store.clone()).build().unwrap();
    registry.put_type(&acme(), postgres(), None).unwrap();
    let (id, _) = registry.create_connection(warehouse("5432")).unwrap();
    let again = Registry::builder().shared_store(store).build().unwrap();
    let name: TypeName = "postgresql".parse().unwrap();
    assert_eq!(
        again
            .project_type(&acme(), &name)
            .unwrap()
            .value
            .definition()
            .as_ref(),
        &postgres()
    );
    let c = again.connection(&acme(), id).unwrap();
    assert_eq!(c.value.spec().connection_type(), Some(&name));
    // And the reloaded registry keeps checking.
    let err = again
        .set_value(
            &acme(),
            id,
            c.version,
            &"Port".parse().unwrap(),
            Layer::Default,
            "x",
        )
        .unwrap_err();
    assert!(matches!(err, RegistryError::Type(_)));
}
