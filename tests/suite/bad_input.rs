//! Malformed input: every identifier, spec and mapping a host might get wrong
//! gives a typed error that says which rule failed, and leaves the registry
//! exactly as it was.

use connective::model::{
    ConnectionId, ConnectionName, CustomerId, EnvVarName, Environment, IdentKind, IntegrationId, Layer,
    MappingsError, ParamName, ParamValues, ParseError, ProjectId, ReservedNames, SpecError, SpecProblem,
};
use connective::prelude::*;
use connective::registry::WriteReport;
use connective::resolve::Problem;

mod counts;
mod durations;
mod host_store;
#[cfg(feature = "oauth-runtime")]
mod host_store_oauth;
#[cfg(all(feature = "test-kit", feature = "manifest", feature = "kubernetes"))]
mod records;
#[cfg(feature = "sqlite")]
mod versions;

/// What a parse failure must look like.
#[derive(Debug)]
enum Want {
    Empty,
    TooLong { len: usize, max: usize },
    BadChar { position: usize, found: char },
}

fn parse(kind: IdentKind, input: &str) -> Result<(), ParseError> {
    match kind {
        IdentKind::Project => ProjectId::parse(input).map(drop),
        IdentKind::Integration => IntegrationId::parse(input).map(drop),
        IdentKind::Customer => CustomerId::parse(input).map(drop),
        IdentKind::ConnectionName => ConnectionName::parse(input).map(drop),
        IdentKind::ConnectionId => ConnectionId::parse(input).map(drop),
        IdentKind::ParamName => ParamName::parse(input).map(drop),
        IdentKind::EnvVarName => EnvVarName::parse(input).map(drop),
        IdentKind::Environment => Environment::parse(input).map(drop),
        other => panic!("no parser for {other}"),
    }
}

#[test]
fn malformed_identifiers_say_which_rule_failed() {
    use IdentKind::*;
    use Want::*;
    let a65 = "a".repeat(65);
    let v256 = "V".repeat(256);
    let e33 = "e".repeat(33);
    let cases: Vec<(IdentKind, &str, Want, &str)> = vec![
        (Project, "", Empty, "invalid project id: must not be empty"),
        (
            Project,
            &a65,
            TooLong { len: 65, max: 64 },
            "65 characters, at most 64 allowed",
        ),
        (
            Project,
            "acme corp",
            BadChar {
                position: 4,
                found: ' ',
            },
            "character ' ' at position 4 is not allowed",
        ),
        (
            Project,
            "-acme",
            BadChar {
                position: 0,
                found: '-',
            },
            "starting with a letter or digit",
        ),
        (
            Project,
            "acme/crm",
            BadChar {
                position: 4,
                found: '/',
            },
            "position 4",
        ),
        (
            Project,
            "caf\u{e9}",
            BadChar {
                position: 3,
                found: '\u{e9}',
            },
            "character 'é' at position 3",
        ),
        (
            Integration,
            "",
            Empty,
            "invalid integration id: must not be empty",
        ),
        (
            Integration,
            "orders!",
            BadChar {
                position: 6,
                found: '!',
            },
            "invalid integration id \"orders!\"",
        ),
        (
            Integration,
            ".hidden",
            BadChar {
                position: 0,
                found: '.',
            },
            "position 0",
        ),
        (
            Customer,
            "customer 42",
            BadChar {
                position: 8,
                found: ' ',
            },
            "invalid customer id",
        ),
        (Customer, &a65, TooLong { len: 65, max: 64 }, "at most 64 allowed"),
        (
            ConnectionName,
            "2fa",
            BadChar {
                position: 0,
                found: '2',
            },
            "starting with a letter",
        ),
        (
            ConnectionName,
            "my.conn",
            BadChar {
                position: 2,
                found: '.',
            },
            "letters, digits, '-' and '_'",
        ),
        (
            ConnectionName,
            &a65,
            TooLong { len: 65, max: 64 },
            "invalid connection name",
        ),
        (
            ConnectionId,
            "",
            Empty,
            "invalid connection id: must not be empty",
        ),
        (
            ConnectionId,
            "twilio",
            BadChar {
                position: 0,
                found: 't',
            },
            "a lower-case UUID",
        ),
        (
            ConnectionId,
            "0F6B8C1E-4d2a-4f3b-9a57-1c2d3e4f5a6b",
            BadChar {
                position: 1,
                found: 'F',
            },
            "hexadecimal",
        ),
        (
            ConnectionId,
            "0f6b8c1e-4d2a",
            BadChar {
                position: 13,
                found: '\0',
            },
            "input ends early",
        ),
        (
            ConnectionId,
            "0f6b8c1e-4d2a-4f3b-9a57-1c2d3e4f5a6b0",
            TooLong { len: 37, max: 36 },
            "at most 36",
        ),
        (
            ParamName,
            "Service URL",
            BadChar {
                position: 7,
                found: ' ',
            },
            "invalid parameter name",
        ),
        (
            ParamName,
            "_private",
            BadChar {
                position: 0,
                found: '_',
            },
            "starting with a letter",
        ),
        (
            EnvVarName,
            "",
            Empty,
            "invalid environment variable name: must not be empty",
        ),
        (
            EnvVarName,
            "1PASSWORD",
            BadChar {
                position: 0,
                found: '1',
            },
            "not starting with a digit",
        ),
        (
            EnvVarName,
            "MY-VAR",
            BadChar {
                position: 2,
                found: '-',
            },
            "letters, digits and '_'",
        ),
        (
            EnvVarName,
            &v256,
            TooLong { len: 256, max: 255 },
            "256 characters, at most 255 allowed",
        ),
        (Environment, "", Empty, "invalid environment: must not be empty"),
        (
            Environment,
            "Prod",
            BadChar {
                position: 0,
                found: 'P',
            },
            "lower-case letter",
        ),
        (
            Environment,
            "prod!",
            BadChar {
                position: 4,
                found: '!',
            },
            "position 4",
        ),
        (
            Environment,
            &e33,
            TooLong { len: 33, max: 32 },
            "at most 32 allowed",
        ),
    ];
    for (kind, input, want, fragment) in cases {
        let err = parse(kind, input).expect_err(&format!("{kind} {input:?} parsed"));
        assert_eq!(err.kind(), kind, "{err}");
        let ok = match (&want, &err) {
            (Empty, ParseError::Empty { .. }) => true,
            (TooLong { len, max }, ParseError::TooLong { len: l, max: m, .. }) => (len, max) == (l, m),
            (
                BadChar { position, found },
                ParseError::BadChar {
                    position: p,
                    found: f,
                    ..
                },
            ) => (position, found) == (p, f),
            _ => false,
        };
        assert!(ok, "{kind} {input:?}: wanted {want:?}, got {err:?}");
        let text = err.to_string();
        assert!(
            text.contains(fragment),
            "{kind} {input:?}: {text:?} lacks {fragment:?}"
        );
        assert!(text.starts_with(&format!("invalid {kind}")), "{text}");
        assert!(text.len() < 400, "the message quotes a shortened input: {text}");
    }
}

#[test]
fn reserved_variable_names_are_refused_with_the_reason() {
    let reserved = ReservedNames::default()
        .with_name("PORT".parse().unwrap())
        .with_prefix("K8S_");
    let cases = [
        ("PATH", "reserved (the host reserves this name)"),
        ("HOME", "reserved (the host reserves this name)"),
        (
            "LD_PRELOAD",
            "reserved (the host reserves names starting with LD_)",
        ),
        ("DYLD_INSERT_LIBRARIES", "names starting with DYLD_"),
        ("LC_ALL", "names starting with LC_"),
        ("PORT", "reserved (the host reserves this name)"),
        ("K8S_TOKEN", "names starting with K8S_"),
    ];
    for (name, fragment) in cases {
        let err = reserved.check(&name.parse().unwrap()).unwrap_err();
        assert!(
            matches!(&err, ParseError::Reserved { kind: IdentKind::EnvVarName, input, .. } if input == name)
        );
        assert!(err.to_string().contains(fragment), "{err}");
        assert!(ReservedNames::none().check(&name.parse().unwrap()).is_ok());
    }
    // Matching is exact-case, like environments.
    assert!(reserved.check(&"path".parse().unwrap()).is_ok());
    assert!(reserved.check(&"TWILIO_PATH".parse().unwrap()).is_ok());
}

/// Everything a registry holds and answers, to compare before and after.
fn fingerprint(registry: &Registry) -> Vec<String> {
    let mut out = vec![
        format!("catalog {}", registry.catalog().revision()),
        format!("store {}", registry.store().revision().unwrap()),
    ];
    for project in registry.catalog().projects() {
        let s = registry.snapshot(&project).unwrap();
        for c in s.connections() {
            let params: Vec<String> = c
                .value
                .spec()
                .params()
                .iter()
                .map(|p| match p.values() {
                    ParamValues::Plain(l) => format!("{}={:?}", p.name(), l.iter().collect::<Vec<_>>()),
                    ParamValues::Secret(l) => format!("{}={:?}", p.name(), l),
                })
                .collect();
            out.push(format!(
                "{} {} {} {} {:?} {params:?}",
                c.value.id(),
                c.version,
                c.value.scope(),
                c.value.name(),
                c.value.oauth_app()
            ));
        }
        for m in s.all_mappings() {
            out.push(format!("{} {:?}", m.version, m.value));
        }
        for a in s.apps() {
            out.push(format!(
                "{} {:?} {} {:?}",
                a.version,
                a.value.owner(),
                a.value.client_id(),
                a.value.grants()
            ));
        }
        for integration in ["orders", "billing"] {
            let request = ResolveRequest::new(
                project.clone(),
                integration.parse().unwrap(),
                Environment::production(),
            );
            match registry.resolve(&request) {
                Ok(env) => out.extend(env.iter().map(|v| format!("{} {}", v.name(), v.value().expose()))),
                Err(e) => out.push(e.to_string()),
            }
        }
    }
    out.sort();
    out
}

fn populated() -> (Registry, ConnectionId) {
    let registry = Registry::in_memory();
    let (twilio, _) = registry
        .create_connection(
            ConnectionSpec::project("acme", "twilio")
                .target(Target::external("twilio"))
                .auth(AuthScheme::ApiKey)
                .param(Param::plain("ServiceURL").default("https://api.twilio.com"))
                .param(Param::secret("ApiKey").default("tw-key"))
                .build()
                .unwrap(),
        )
        .unwrap();
    registry
        .create_connection(
            ConnectionSpec::project("acme", "inventory")
                .platform_target("acme", "inventory-api")
                .auth(AuthScheme::OAuth2(OAuthClient::Shared))
                .build()
                .unwrap(),
        )
        .unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("twilio", [("ApiKey", "SMS_KEY")])
                .by_name_defaults("inventory")
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    (registry, twilio)
}

fn spec_problems(result: Result<ConnectionSpec, SpecError>) -> Vec<SpecProblem> {
    result.expect_err("the spec was accepted").problems
}

type MappingsCase = fn() -> Result<Mappings, MappingsError>;

type RefusalCase = (
    &'static str,
    Result<WriteReport, RegistryError>,
    fn(&RegistryError) -> bool,
);

type SpecCase = (
    &'static str,
    fn() -> Result<ConnectionSpec, SpecError>,
    fn(&SpecProblem) -> bool,
    &'static str,
);

#[test]
fn malformed_specs_give_typed_problems_and_change_nothing() {
    let cases: Vec<SpecCase> = vec![
        (
            "bad project",
            || ConnectionSpec::project("acme corp", "twilio").build(),
            |p| {
                matches!(p, SpecProblem::Ident { field, error: ParseError::BadChar { position: 4, .. } }
                    if field == "project")
            },
            "project: invalid project id \"acme corp\"",
        ),
        (
            "bad integration",
            || ConnectionSpec::integration("acme", "orders!", "crm").build(),
            |p| matches!(p, SpecProblem::Ident { field, .. } if field == "scope.integration"),
            "scope.integration: invalid integration id",
        ),
        (
            "bad name",
            || ConnectionSpec::project("acme", "2fa").build(),
            |p| {
                matches!(p, SpecProblem::Ident { field, error: ParseError::BadChar { position: 0, .. } }
                    if field == "name")
            },
            "name: invalid connection name \"2fa\"",
        ),
        (
            "bad environment",
            || {
                ConnectionSpec::project("acme", "x")
                    .param(Param::secret("ApiKey").env("Prod", "v"))
                    .build()
            },
            |p| matches!(p, SpecProblem::Ident { field, .. } if field == "params.ApiKey.environment"),
            "params.ApiKey.environment: invalid environment \"Prod\"",
        ),
        (
            "bad customer",
            || {
                ConnectionSpec::project("acme", "x")
                    .param(Param::secret("ApiKey").customer("customer 42", "v"))
                    .build()
            },
            |p| matches!(p, SpecProblem::Ident { field, .. } if field == "params.ApiKey.customer"),
            "params.ApiKey.customer: invalid customer id",
        ),
        (
            "bad parameter name",
            || {
                ConnectionSpec::project("acme", "x")
                    .param(Param::plain("Api Key"))
                    .build()
            },
            |p| matches!(p, SpecProblem::Ident { field, .. } if field == "params[0].name"),
            "params[0].name: invalid parameter name \"Api Key\"",
        ),
        (
            "bad target",
            || {
                ConnectionSpec::project("acme", "x")
                    .platform_target("other project", "api")
                    .build()
            },
            |p| matches!(p, SpecProblem::Ident { field, .. } if field == "target.project"),
            "target.project: invalid project id",
        ),
        (
            "duplicate parameter",
            || {
                ConnectionSpec::project("acme", "x")
                    .param(Param::plain("Url"))
                    .param(Param::plain("Url"))
                    .build()
            },
            |p| matches!(p, SpecProblem::DuplicateParam { param } if param == "Url"),
            "parameter Url is declared more than once",
        ),
        (
            "duplicate value",
            || {
                ConnectionSpec::project("acme", "x")
                    .param(Param::plain("Url").env("production", "a").env("production", "b"))
                    .build()
            },
            |p| {
                matches!(
                    p,
                    SpecProblem::DuplicateValue {
                        layer: Layer::Environment(_),
                        ..
                    }
                )
            },
            "parameter Url has two values for the environment production override",
        ),
        (
            "global value of a per-customer parameter",
            || {
                ConnectionSpec::project("acme", "x")
                    .param(
                        Param::secret("Token")
                            .per_customer(EnteredBy::Customer)
                            .default("v"),
                    )
                    .build()
            },
            |p| {
                matches!(
                    p,
                    SpecProblem::GlobalValueOnPerCustomer {
                        layer: Layer::Default,
                        ..
                    }
                )
            },
            "parameter Token is per-customer and cannot have a default value",
        ),
        (
            "managed OAuth to an external service",
            || {
                ConnectionSpec::project("acme", "x")
                    .target(Target::external("salesforce"))
                    .auth(AuthScheme::OAuth2(OAuthClient::Shared))
                    .build()
            },
            |p| matches!(p, SpecProblem::ManagedOAuthNeedsPlatform { .. }),
            "only serves platform integration targets, not external service salesforce",
        ),
        (
            "declaring what the OAuth application supplies",
            || {
                ConnectionSpec::project("acme", "x")
                    .platform_target("acme", "api")
                    .auth(AuthScheme::OAuth2(OAuthClient::Dedicated))
                    .param(Param::secret("ConsumerSecret").default("mine"))
                    .build()
            },
            |p| matches!(p, SpecProblem::AppSuppliedParam { param } if param == "ConsumerSecret"),
            "parameter ConsumerSecret is supplied by the connection's oauth application",
        ),
        (
            "an API key connection without a secret",
            || {
                ConnectionSpec::project("acme", "x")
                    .auth(AuthScheme::ApiKey)
                    .param(Param::plain("ApiKey").default("k"))
                    .build()
            },
            |p| {
                matches!(
                    p,
                    SpecProblem::NeedsSecret {
                        scheme: AuthScheme::ApiKey
                    }
                )
            },
            "api-key connection needs at least one secret parameter",
        ),
        (
            "a database without a port",
            || {
                let mut b = ConnectionSpec::project("acme", "db").target(Target::database("postgresql"));
                for p in ["HostName", "Username", "DatabaseName"] {
                    b = b.param(Param::plain(p).default("x"));
                }
                b.param(Param::secret("Password").default("x")).build()
            },
            |p| matches!(p, SpecProblem::MissingParam { param: "Port", .. }),
            "a postgresql database connection needs parameter Port",
        ),
        (
            "a database with a plain password",
            || {
                let mut b = ConnectionSpec::project("acme", "db").target(Target::database("mysql"));
                for p in connective::model::Target::DATABASE_PARAMS {
                    b = b.param(Param::plain(p).default("x"));
                }
                b.build()
            },
            |p| matches!(p, SpecProblem::MustBeSecret { param } if param == "Password"),
            "parameter Password must be secret",
        ),
        (
            "a description too long",
            || {
                ConnectionSpec::project("acme", "x")
                    .describe("d".repeat(4097))
                    .build()
            },
            |p| {
                matches!(
                    p,
                    SpecProblem::TooLong {
                        len: 4097,
                        max: 4096,
                        ..
                    }
                )
            },
            "description is 4097 bytes, at most 4096 allowed",
        ),
        (
            "a value too long",
            || {
                ConnectionSpec::project("acme", "x")
                    .param(Param::plain("Blob").default("b".repeat(65_537)))
                    .build()
            },
            |p| matches!(p, SpecProblem::TooLong { len: 65_537, .. }),
            "params.Blob (default value) is 65537 bytes, at most 65536 allowed",
        ),
        (
            "too many parameters",
            || {
                (0..257)
                    .fold(ConnectionSpec::project("acme", "x"), |b, i| {
                        b.param(Param::plain(format!("P{i}")))
                    })
                    .build()
            },
            |p| matches!(p, SpecProblem::TooManyParams { count: 257, max: 256 }),
            "257 parameters, at most 256 allowed",
        ),
    ];
    let (registry, _) = populated();
    let before = fingerprint(&registry);
    for (what, build, want, fragment) in cases {
        let problems = spec_problems(build());
        assert!(problems.iter().any(want), "{what}: {problems:?}");
        let err = registry.write(|tx| tx.create_connection(build()?)).unwrap_err();
        assert!(matches!(err, RegistryError::Spec(_)), "{what}: {err}");
        assert!(
            err.to_string().contains(fragment),
            "{what}: {err} lacks {fragment:?}"
        );
        assert_eq!(fingerprint(&registry), before, "{what} changed the registry");
    }
}

#[test]
fn a_spec_with_many_problems_lists_them_all() {
    let problems = spec_problems(
        ConnectionSpec::integration("acme corp", "orders!", "2fa")
            .param(Param::plain("Api Key"))
            .param(Param::plain("Url").env("Prod", "x"))
            .param(Param::plain("Url"))
            .build(),
    );
    let fields: Vec<String> = problems
        .iter()
        .map(|p| match p {
            SpecProblem::Ident { field, .. } => field.clone(),
            SpecProblem::DuplicateParam { param } => format!("duplicate {param}"),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert_eq!(
        fields,
        [
            "project",
            "scope.integration",
            "name",
            "params[0].name",
            "params.Url.environment",
            "duplicate Url"
        ]
    );
}

fn mappings_fields(result: Result<Mappings, MappingsError>) -> Vec<String> {
    result
        .expect_err("the mappings were accepted")
        .problems
        .iter()
        .map(|p| match p {
            SpecProblem::Ident { field, error } => format!("{field}: {}", error.kind()),
            other => panic!("unexpected {other}"),
        })
        .collect()
}

#[test]
fn malformed_mappings_give_typed_problems_and_change_nothing() {
    let cases: Vec<(MappingsCase, &str)> = vec![
        (
            || Mappings::of("acme corp", "orders").build(),
            "project: project id",
        ),
        (
            || Mappings::of("acme", "orders!").build(),
            "integration: integration id",
        ),
        (
            || Mappings::of("acme", "orders").by_name_defaults("2fa").build(),
            "connections[0].reference: connection name",
        ),
        (
            || Mappings::of("acme", "orders").by_id_defaults("twilio").build(),
            "connections[0].reference: connection id",
        ),
        (
            || {
                Mappings::of("acme", "orders")
                    .by_name("twilio", [("Api Key", "KEY")])
                    .build()
            },
            "connections[0].env[0].from: parameter name",
        ),
        (
            || {
                Mappings::of("acme", "orders")
                    .by_name("twilio", [("ApiKey", "MY-KEY")])
                    .build()
            },
            "connections[0].env[0].to: environment variable name",
        ),
    ];
    let (registry, _) = populated();
    let before = fingerprint(&registry);
    for (build, want) in cases {
        assert_eq!(mappings_fields(build()), [want]);
        let err = registry.write(|tx| tx.set_mappings(build()?, None)).unwrap_err();
        assert!(matches!(err, RegistryError::MappingsSyntax(_)), "{err}");
        assert_eq!(fingerprint(&registry), before, "{want} changed the registry");
    }
}

#[test]
fn refused_registry_writes_change_nothing() {
    let (registry, twilio) = populated();
    let acme: ProjectId = "acme".parse().unwrap();
    let before = fingerprint(&registry);
    let again = || {
        ConnectionSpec::project("acme", "twilio")
            .param(Param::plain("ServiceURL").default("https://elsewhere"))
            .build()
            .unwrap()
    };
    let unknown = ConnectionId::random();
    let cases: Vec<RefusalCase> = vec![
        (
            "a second twilio at project scope",
            registry.create_connection(again()).map(|(_, r)| r),
            |e| matches!(e, RegistryError::NameTaken { .. }),
        ),
        (
            "an update of an unknown connection",
            registry.update_connection(unknown, Version(1), again()),
            |e| matches!(e, RegistryError::ConnectionNotFound { .. }),
        ),
        (
            "a spec of another project",
            registry.update_connection(
                twilio,
                Version(1),
                ConnectionSpec::project("globex", "twilio").build().unwrap(),
            ),
            |e| matches!(e, RegistryError::ConnectionNotFound { .. }),
        ),
        (
            "a delete of an unknown connection",
            registry.delete_connection(&acme, unknown, Version(1), DeleteMode::Force),
            |e| matches!(e, RegistryError::ConnectionNotFound { .. }),
        ),
        (
            "a stale update",
            registry.update_connection(twilio, Version(7), again()),
            |e| matches!(e, RegistryError::Conflict { .. }),
        ),
        (
            "a delete of a used connection",
            registry.delete_connection(&acme, twilio, Version(1), DeleteMode::Refuse),
            |e| matches!(e, RegistryError::StillUsed { .. }),
        ),
        (
            "a value for an undeclared parameter",
            registry.set_value(
                &acme,
                twilio,
                Version(1),
                &"AuthToken".parse().unwrap(),
                Layer::Default,
                "x",
            ),
            |e| {
                matches!(e, RegistryError::Spec(s)
                    if matches!(&s.problems[..], [SpecProblem::UnknownParam { .. }]))
            },
        ),
        (
            "mappings wrong in every way",
            registry.set_mappings(
                Mappings::of("acme", "billing")
                    .by_name(
                        "twilio",
                        [
                            ("ApiKey", "PATH"),
                            ("Nope", "X"),
                            ("ApiKey", "K"),
                            ("ServiceURL", "K"),
                        ],
                    )
                    .by_id(unknown, [("ApiKey", "Y")])
                    .build()
                    .unwrap(),
                None,
            ),
            |e| {
                matches!(e, RegistryError::InvalidMappings { problems, .. } if matches!(
                    &problems[..],
                    [
                        Problem::Reserved { .. },
                        Problem::UnknownParam { .. },
                        Problem::Collision { .. },
                        Problem::NotVisible { .. }
                    ]
                ))
            },
        ),
        (
            "a rotation of an application nobody has",
            registry.rotate_app_secret(&acme, &AppOwner::Integration("orders".parse().unwrap())),
            |e| matches!(e, RegistryError::AppNotFound { .. }),
        ),
        (
            "a whole batch refused by its last step",
            registry
                .write(|tx| {
                    tx.create_connection(
                        ConnectionSpec::project("acme", "stripe")
                            .param(Param::plain("Url").default("u"))
                            .build()?,
                    )?;
                    tx.rotate_app_secret(&acme, &AppOwner::Project)?;
                    tx.delete_connection(&acme, twilio, Version(1), DeleteMode::Refuse)
                })
                .map(|(_, r)| r),
            |e| matches!(e, RegistryError::StillUsed { .. }),
        ),
    ];
    for (what, result, want) in cases {
        let err = result.expect_err(what);
        assert!(want(&err), "{what}: {err}");
        assert_eq!(fingerprint(&registry), before, "{what} changed the registry");
    }
}

/// Runs `f` with secrets (de)serialized as plain text, as a host's own codec
/// would.
fn with_codec<R>(f: impl FnOnce() -> R) -> R {
    connective::model::with_secret_codec(std::sync::Arc::new(connective::model::PlaintextCodec), f)
}

/// A valid spec as JSON, for the cases below to break one way each.
fn spec_json() -> serde_json::Value {
    let spec = ConnectionSpec::project("acme", "crm")
        .target(Target::external("crm"))
        .auth(AuthScheme::ApiKey)
        .param(Param::plain("ServiceURL").default("https://crm.example.com"))
        .param(Param::secret("ApiKey").default("k").env("production", "kp"))
        .build()
        .unwrap();
    with_codec(|| serde_json::to_value(&spec)).unwrap()
}

type JsonCase = (&'static str, fn(&mut serde_json::Value), &'static str);

#[test]
fn specs_sent_as_json_are_refused_with_the_builders_checks_and_change_nothing() {
    use serde_json::json;
    let cases: Vec<JsonCase> = vec![
        (
            "duplicate parameter names",
            |j| {
                let first = j["params"][0].clone();
                j["params"].as_array_mut().unwrap().push(first);
            },
            "parameter ServiceURL is declared more than once",
        ),
        (
            "a value past its limit",
            |j| j["params"][0]["values"]["plain"][0][1] = json!("v".repeat(65_537)),
            "params.ServiceURL (default value) is 65537 bytes, at most 65536 allowed",
        ),
        (
            "a secret value past its limit",
            |j| j["params"][1]["values"]["secret"][1][1] = json!("s".repeat(70_000)),
            "is 70000 bytes, at most 65536 allowed",
        ),
        (
            "a description past its limit",
            |j| j["description"] = json!("d".repeat(4097)),
            "description is 4097 bytes, at most 4096 allowed",
        ),
        (
            "a parameter description past its limit",
            |j| j["params"][0]["description"] = json!("d".repeat(5000)),
            "params.ServiceURL.description is 5000 bytes",
        ),
        (
            "more than 256 parameters",
            |j| {
                let params = j["params"].as_array_mut().unwrap();
                for i in 0..300 {
                    let mut p = params[0].clone();
                    p["name"] = json!(format!("P{i}"));
                    params.push(p);
                }
            },
            "302 parameters, at most 256 allowed",
        ),
        (
            "a per-customer parameter with a default",
            |j| j["params"][0]["tenancy"] = json!({"per_customer": "customer"}),
            "parameter ServiceURL is per-customer and cannot have a default value",
        ),
        (
            "API-key auth with no secret",
            |j| {
                j["params"].as_array_mut().unwrap().pop();
            },
            "a api-key connection needs at least one secret parameter",
        ),
        (
            "managed OAuth on an external target",
            |j| j["auth"] = json!({"o_auth2": "shared"}),
            "a managed oauth application only serves platform integration targets, not external service crm",
        ),
        (
            "a database target without its parameters",
            |j| j["target"] = json!({"database": {"engine": "postgresql"}}),
            "a postgresql database connection needs parameter HostName",
        ),
        (
            "two values for one layer",
            |j| {
                let values = j["params"][0]["values"]["plain"].as_array_mut().unwrap();
                values.push(json!(["default", "again"]));
            },
            "parameter ServiceURL has two values for the default value",
        ),
        (
            "an external service name past its limit",
            |j| j["target"] = json!({"external": {"service": "s".repeat(300)}}),
            "target.service is 300 bytes, at most 256 allowed",
        ),
        (
            "a line break in a target",
            |j| j["target"] = json!({"external": {"service": "crm\nFORGED=1"}}),
            "target.service contains a control character",
        ),
    ];
    let (registry, _) = populated();
    let before = fingerprint(&registry);
    // The base document is accepted.
    let base: ConnectionSpec = with_codec(|| serde_json::from_value(spec_json())).unwrap();
    assert_eq!(base.params().len(), 2);
    for (what, break_it, fragment) in cases {
        let mut json = spec_json();
        break_it(&mut json);
        let parsed = with_codec(|| serde_json::from_value::<ConnectionSpec>(json.clone()));
        let created = parsed.map(|spec| registry.create_connection(spec));
        assert_eq!(fingerprint(&registry), before, "{what} changed the registry");
        let err = created.expect_err(what);
        assert_eq!(err.classify(), serde_json::error::Category::Data, "{what}: {err}");
        assert!(
            err.to_string().contains(fragment),
            "{what}: {err} lacks {fragment:?}"
        );
        // The same JSON as a stored connection record is refused as well.
        json["id"] = json!(ConnectionId::random().to_string());
        let stored = with_codec(|| serde_json::from_value::<connective::model::Connection>(json));
        let err = stored.expect_err(what);
        assert!(err.to_string().contains(fragment), "{what} (stored): {err}");
    }
}

#[test]
fn a_target_built_in_code_is_bounded_too() {
    let problems = spec_problems(
        ConnectionSpec::project("acme", "x")
            .target(Target::external("e".repeat(257)))
            .build(),
    );
    assert!(
        matches!(&problems[..], [SpecProblem::TooLong { field, len: 257, max: 256 }] if field == "target.service"),
        "{problems:?}"
    );
    let problems = spec_problems(
        ConnectionSpec::project("acme", "x")
            .target(Target::database("pg\u{1b}[2J"))
            .build(),
    );
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, SpecProblem::ControlCharacter { field } if field == "target.engine"))
    );
}

#[test]
fn oversized_mappings_are_refused_however_they_are_made() {
    use connective::model::{ConnectionRef, ConnectionUse, EnvEntry, EnvMapping, MAX_ENTRIES, MAX_USES};
    let acme: ProjectId = "acme".parse().unwrap();
    let orders: IntegrationId = "orders".parse().unwrap();
    let uses = |n: usize| -> Vec<ConnectionUse> {
        (0..n)
            .map(|_| ConnectionUse {
                reference: ConnectionRef::Name("twilio".parse().unwrap()),
                env: EnvMapping::Defaults,
            })
            .collect()
    };
    let (registry, _) = populated();
    let before = fingerprint(&registry);
    // 50,000 uses through the constructor.
    let err = Mappings::new(acme.clone(), orders.clone(), uses(50_000)).unwrap_err();
    assert!(
        matches!(&err.problems[..], [SpecProblem::TooMany { count: 50_000, max, .. }] if *max == MAX_USES),
        "{err}"
    );
    // Too many explicit entries in one use.
    let entries: Vec<EnvEntry> = (0..MAX_ENTRIES + 1)
        .map(|i| EnvEntry {
            from: "ApiKey".parse().unwrap(),
            to: format!("K{i}").parse().unwrap(),
        })
        .collect();
    let wide = vec![ConnectionUse {
        reference: ConnectionRef::Name("twilio".parse().unwrap()),
        env: EnvMapping::Explicit(entries),
    }];
    assert!(Mappings::new(acme.clone(), orders.clone(), wide.clone()).is_err());
    // Through the builder.
    let err = (0..MAX_USES + 1)
        .fold(Mappings::of("acme", "orders"), |b, _| {
            b.by_name_defaults("twilio")
        })
        .build()
        .unwrap_err();
    assert!(
        err.to_string().contains("1025 connections, at most 1024 allowed"),
        "{err}"
    );
    // Through serde, as JSON or as a stored record.
    let valid = Mappings::new(acme.clone(), orders.clone(), uses(2)).unwrap();
    let mut json = serde_json::to_value(&valid).unwrap();
    assert_eq!(serde_json::from_value::<Mappings>(json.clone()).unwrap(), valid);
    for big in [
        serde_json::to_value(uses(MAX_USES + 1)).unwrap(),
        serde_json::to_value(&wide).unwrap(),
    ] {
        json["uses"] = big;
        let parsed = serde_json::from_value::<Mappings>(json.clone());
        let set = parsed.map(|m| registry.set_mappings(m, Some(Version(1))));
        assert_eq!(
            fingerprint(&registry),
            before,
            "oversized mappings changed the registry"
        );
        let err = set.expect_err("oversized mappings were accepted");
        assert!(err.to_string().contains("at most"), "{err}");
        let record = serde_json::json!({"mappings": json.clone()});
        assert!(serde_json::from_value::<connective::model::Record>(record).is_err());
    }
}
