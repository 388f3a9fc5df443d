//! Field visibility: each field says who may see and set it; a listing for
//! a viewer never holds a field that viewer may not see, nor a secret's
//! value; customers' own flows are offered the connections marked for them.

use connective::model::{BuilderAccess, ConnectionTemplate, Layer, Presentation, TemplateField, Viewer};
use connective::prelude::*;
use connective::resolve::{ListedValue, ValueSource};
use proptest::prelude::*;

use crate::support::acme;

fn production() -> Environment {
    Environment::production()
}

fn customer(name: &str) -> Viewer {
    Viewer::Customer(name.parse().unwrap())
}

/// Slack through the organization's app: client hidden in the template,
/// each customer's workspace entered by the customer, a programmatic field
/// the host's code sets.
fn slack() -> ConnectionType {
    ConnectionType::builder("slack")
        .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
        .field(Field::url("AuthorizeURL").default("https://slack.com/oauth/v2/authorize"))
        .field(Field::url("TokenURL").default("https://slack.com/api/oauth.v2.access"))
        .field(Field::string("ClientID"))
        .field(Field::secret("ClientSecret"))
        .field(Field::string("Scopes").default("chat:write"))
        .field(
            Field::string("Workspace")
                .label("Slack workspace")
                .visibility(Visibility::Customer)
                .per_customer(EnteredBy::Customer),
        )
        .field(
            Field::secret("WebhookSecret")
                .visibility(Visibility::Customer)
                .per_customer(EnteredBy::Customer)
                .optional(),
        )
        .field(
            Field::string("InstanceTag")
                .visibility(Visibility::Programmatic)
                .optional(),
        )
        .build()
        .unwrap()
}

fn org_app() -> ConnectionTemplate {
    ConnectionTemplate::builder("acme", "acme-slack", "slack")
        .field(TemplateField::plain("ClientID").default("acme-client").hidden())
        .field(
            TemplateField::secret("ClientSecret")
                .default("acme-secret-value")
                .hidden(),
        )
        .build()
        .unwrap()
}

#[test]
fn each_viewer_sees_only_its_fields_and_never_a_secret_value() {
    let registry = Registry::in_memory();
    registry.put_type(&acme(), slack(), None).unwrap();
    registry.put_template(org_app(), None).unwrap();
    let globex: CustomerId = "globex".parse().unwrap();
    let (id, _) = registry
        .create_connection(
            ConnectionSpec::project("acme", "slack")
                .target(Target::external("slack"))
                .of_template(&slack(), &org_app())
                .value("Workspace", Layer::Customer(globex.clone()), "globex-hq")
                .value(
                    "Workspace",
                    Layer::Customer("initech".parse().unwrap()),
                    "initech-ops",
                )
                .value("WebhookSecret", Layer::Customer(globex), "globex-webhook-secret")
                .value("InstanceTag", Layer::Default, "eu-1")
                .builder_access(BuilderAccess::Available)
                .build()
                .unwrap(),
        )
        .unwrap();
    let names = |viewer: &Viewer| -> Vec<String> {
        registry
            .listing(&acme(), id, viewer, &production())
            .unwrap()
            .fields
            .iter()
            .map(|f| f.name.to_string())
            .collect()
    };
    // The organization: everything but the programmatic field and what the
    // template hides.
    assert_eq!(
        names(&Viewer::Organization),
        ["AuthorizeURL", "TokenURL", "Scopes", "Workspace", "WebhookSecret"]
    );
    // The host's code: every field.
    assert_eq!(names(&Viewer::Program).len(), 8);
    // A customer: its own fields, its own values, a secret only as set.
    let listing = registry
        .listing(&acme(), id, &customer("globex"), &production())
        .unwrap();
    let fields: Vec<(&str, &str, &ListedValue)> = listing
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.label.as_str(), &f.value))
        .collect();
    assert_eq!(
        fields,
        [
            (
                "Workspace",
                "Slack workspace",
                &ListedValue::Plain("globex-hq".into())
            ),
            ("WebhookSecret", "WebhookSecret", &ListedValue::SecretSet),
        ]
    );
    assert!(matches!(
        listing.fields[0].source,
        Some(ValueSource::Layer(Layer::Customer(_)))
    ));
    let initech = registry
        .listing(&acme(), id, &customer("initech"), &production())
        .unwrap();
    assert_eq!(initech.fields[1].value, ListedValue::Unset);
    // The host's code sees the template's hidden client, as set.
    let program = registry
        .listing(&acme(), id, &Viewer::Program, &production())
        .unwrap();
    let secret = program.fields.iter().find(|f| f.name == "ClientSecret").unwrap();
    assert_eq!(secret.value, ListedValue::SecretSet);
    assert!(matches!(secret.source, Some(ValueSource::Template { .. })));
    for viewer in [
        Viewer::Organization,
        Viewer::Program,
        customer("globex"),
        customer("initech"),
    ] {
        let text = format!("{:?}", registry.listings(&acme(), &viewer, &production()));
        for secret in ["acme-secret-value", "globex-webhook-secret"] {
            assert!(!text.contains(secret), "{viewer:?}: {text}");
        }
        assert!(!text.contains("initech-ops") || viewer != customer("globex"));
    }
}

#[test]
fn customers_flows_are_offered_project_connections_marked_for_the_builder() {
    let registry = Registry::in_memory();
    registry.put_type(&acme(), slack(), None).unwrap();
    registry.put_template(org_app(), None).unwrap();
    let make = |builder: ConnectionSpecStart, access: BuilderAccess| {
        registry
            .create_connection(
                builder
                    .target(Target::external("slack"))
                    .of_template(&slack(), &org_app())
                    .value(
                        "Workspace",
                        Layer::Customer("globex".parse().unwrap()),
                        "globex-hq",
                    )
                    .builder_access(access)
                    .build()
                    .unwrap(),
            )
            .unwrap()
    };
    make(ConnectionSpec::project("acme", "slack"), BuilderAccess::Available);
    make(
        ConnectionSpec::project("acme", "slack-internal"),
        BuilderAccess::Hidden,
    );
    // An integration's connection belongs to that integration.
    make(
        ConnectionSpec::integration("acme", "alerts", "slack-alerts"),
        BuilderAccess::Available,
    );
    let offered = |who: &str| registry.builder_connections(&acme(), &who.parse().unwrap(), &production());
    let globex = offered("globex");
    assert_eq!(globex.len(), 1);
    assert_eq!(globex[0].listing.name.as_str(), "slack");
    assert!(globex[0].ready);
    assert!(globex[0].owed.is_empty());
    // Initech has not entered its workspace yet.
    let initech = offered("initech");
    assert!(!initech[0].ready);
    assert_eq!(initech[0].owed, ["Workspace".parse::<ParamName>().unwrap()]);
    assert!(
        initech[0]
            .listing
            .fields
            .iter()
            .all(|f| f.visibility == Visibility::Customer)
    );
}

type ConnectionSpecStart = connective::model::ConnectionBuilder;

/// One generated field: visibility, secret or not, tenancy (0 global, 1 per
/// customer entered by the customer, 2 per customer set by the
/// organization), and how the template treats it (none, shown, hidden).
#[derive(Debug, Clone)]
struct GenField {
    visibility: Visibility,
    secret: bool,
    tenancy: u8,
    template: Option<Presentation>,
    values: Vec<u8>,
}

fn gen_field() -> impl Strategy<Value = GenField> {
    (
        prop_oneof![
            Just(Visibility::Organization),
            Just(Visibility::Customer),
            Just(Visibility::Programmatic)
        ],
        any::<bool>(),
        0u8..3,
        prop_oneof![
            Just(None),
            Just(Some(Presentation::Shown)),
            Just(Some(Presentation::Hidden))
        ],
        proptest::collection::vec(0u8..4, 0..4),
    )
        .prop_map(|(visibility, secret, tenancy, template, values)| {
            let visibility = if tenancy == 1 {
                Visibility::Customer
            } else {
                visibility
            };
            GenField {
                visibility,
                secret,
                tenancy,
                // Templates fill fields with one value for everybody.
                template: if tenancy == 0 { template } else { None },
                values,
            }
        })
}

const CUSTOMERS: [&str; 3] = ["globex", "initech", "umbrella"];

/// The value a generated layer holds: it names the layer, so a listing
/// showing another customer's value is caught.
fn value_of(field: usize, layer: u8) -> (Layer, String) {
    match layer {
        0 => (Layer::Default, format!("v{field}-everyone")),
        c => {
            let who = CUSTOMERS[usize::from(c - 1)];
            (Layer::Customer(who.parse().unwrap()), format!("v{field}-{who}"))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Over generated types, templates and connections: a listing for a
    /// customer holds exactly the fields that customer may see (visibility
    /// customer, not hidden by the template), only its own or everybody's
    /// values, and never a secret's value; the organization's never a
    /// programmatic or hidden field.
    #[test]
    fn no_listing_holds_a_field_its_viewer_may_not_see(
        fields in proptest::collection::vec(gen_field(), 1..7),
    ) {
        let mut ty = ConnectionType::builder("generated");
        for (i, f) in fields.iter().enumerate() {
            let name = format!("F{i}");
            let mut b = if f.secret { Field::secret(name) } else { Field::string(name) };
            b = b.visibility(f.visibility).optional();
            match f.tenancy {
                1 => b = b.per_customer(EnteredBy::Customer),
                2 => b = b.per_customer(EnteredBy::Organization),
                _ => {}
            }
            ty = ty.field(b);
        }
        let ty = ty.build().unwrap();
        let mut template = ConnectionTemplate::builder("acme", "generated-template", "generated");
        for (i, f) in fields.iter().enumerate() {
            if let Some(presentation) = f.template {
                let name = format!("F{i}");
                let mut t = if f.secret { TemplateField::secret(name) } else { TemplateField::plain(name) };
                t = t.default(format!("v{i}-template")).overridable();
                if presentation == Presentation::Hidden {
                    t = t.hidden();
                }
                template = template.field(t);
            }
        }
        let template = template.build().unwrap();
        let registry = Registry::in_memory();
        registry.put_type(&acme(), ty.clone(), None).unwrap();
        registry.put_template(template.clone(), None).unwrap();
        let mut spec = ConnectionSpec::project("acme", "generated")
            .target(Target::external("generated"))
            .of_template(&ty, &template);
        let mut secrets = Vec::new();
        for (i, f) in fields.iter().enumerate() {
            let mut layers: Vec<u8> = f.values.clone();
            layers.sort_unstable();
            layers.dedup();
            for layer in layers {
                // Per-customer fields hold customers' values only.
                if layer == 0 && f.tenancy != 0 {
                    continue;
                }
                let (layer, value) = value_of(i, layer);
                if f.secret {
                    secrets.push(value.clone());
                }
                spec = spec.value(format!("F{i}").as_str(), layer, value);
            }
            if f.secret && f.template.is_some() {
                secrets.push(format!("v{i}-template"));
            }
        }
        let (id, _) = registry.create_connection(spec.build().unwrap()).unwrap();

        let mut viewers = vec![Viewer::Organization, Viewer::Program];
        viewers.extend(CUSTOMERS.iter().map(|c| customer(c)));
        for viewer in &viewers {
            let listing = registry.listing(&acme(), id, viewer, &production()).unwrap();
            let expected: Vec<String> = fields
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    let hidden = f.template == Some(Presentation::Hidden);
                    match viewer {
                        Viewer::Program => true,
                        Viewer::Organization => f.visibility != Visibility::Programmatic && !hidden,
                        _ => f.visibility == Visibility::Customer && !hidden,
                    }
                })
                .map(|(i, _)| format!("F{i}"))
                .collect();
            let listed: Vec<String> = listing.fields.iter().map(|f| f.name.to_string()).collect();
            prop_assert_eq!(&listed, &expected, "{:?}", viewer);
            for f in &listing.fields {
                let i: usize = f.name.as_str()[1..].parse().unwrap();
                match &f.value {
                    ListedValue::Plain(v) => {
                        prop_assert!(!fields[i].secret, "a secret listed as plain");
                        if let Viewer::Customer(c) = viewer {
                            let theirs = v.ends_with(c.as_str());
                            let everyone = v.ends_with("-everyone") || v.ends_with("-template");
                            prop_assert!(theirs || everyone, "{:?} sees {}", viewer, v);
                        }
                    }
                    ListedValue::SecretSet => prop_assert!(fields[i].secret),
                    _ => {}
                }
            }
            let text = format!("{listing:?}");
            for s in &secrets {
                prop_assert!(!text.contains(s.as_str()), "{:?} sees secret {}", viewer, s);
            }
            let all = format!("{:?}", registry.listings(&acme(), viewer, &production()));
            for s in &secrets {
                prop_assert!(!all.contains(s.as_str()));
            }
        }
    }
}
