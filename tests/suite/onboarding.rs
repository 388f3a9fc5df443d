//! Customer onboarding: what customer C must still provide before
//! integration I can deploy in environment E, in wizard order, without
//! copying a value; nothing owed and nothing blocked exactly when resolving
//! succeeds.

use connective::model::{ConnectionTemplate, ConnectionType, Layer, TemplateField};
use connective::prelude::*;
use connective::resolve::Problem;
use proptest::prelude::*;

use crate::support::acme;

fn crm() -> ConnectionType {
    ConnectionType::builder("crm")
        .auth(AuthScheme::ApiKey)
        .field(Field::url("ServiceURL").default("https://crm.example.com"))
        .field(
            Field::string("Account")
                .label("CRM account")
                .visibility(Visibility::Customer)
                .per_customer(EnteredBy::Customer),
        )
        .field(
            Field::secret("ApiKey")
                .label("API key")
                .visibility(Visibility::Customer)
                .per_customer(EnteredBy::Customer),
        )
        .field(
            Field::string("Tier")
                .visibility(Visibility::Customer)
                .per_customer(EnteredBy::Organization),
        )
        .build()
        .unwrap()
}

fn erp() -> ConnectionType {
    ConnectionType::builder("erp")
        .field(
            Field::string("Company")
                .label("ERP company")
                .visibility(Visibility::Customer)
                .per_customer(EnteredBy::Customer),
        )
        .build()
        .unwrap()
}

fn request(customer: &str) -> ResolveRequest {
    ResolveRequest::parse("acme", "orders", "production")
        .unwrap()
        .for_customer(customer)
        .unwrap()
}

#[test]
fn the_wizard_asks_for_the_customers_fields_in_order_until_nothing_is_owed() {
    let registry = Registry::in_memory();
    registry.put_type(&acme(), crm(), None).unwrap();
    registry.put_type(&acme(), erp(), None).unwrap();
    let (erp_id, _) = registry
        .create_connection(
            ConnectionSpec::project("acme", "erp")
                .target(Target::external("erp"))
                .of_type(&erp())
                .build()
                .unwrap(),
        )
        .unwrap();
    let (crm_id, _) = registry
        .create_connection(
            ConnectionSpec::project("acme", "crm")
                .target(Target::external("crm"))
                .of_type(&crm())
                .build()
                .unwrap(),
        )
        .unwrap();
    // The mappings name crm first, its fields out of the type's order.
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name(
                    "crm",
                    [
                        ("ApiKey", "CRM_KEY"),
                        ("Tier", "CRM_TIER"),
                        ("Account", "CRM_ACCOUNT"),
                        ("ServiceURL", "CRM_URL"),
                    ],
                )
                .by_name("erp", [("Company", "ERP_COMPANY")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();

    let answer = registry.onboarding(&request("globex"));
    let owed: Vec<(&str, &str, &str)> = answer
        .owed
        .iter()
        .map(|f| (f.connection.as_str(), f.field.as_str(), f.label.as_str()))
        .collect();
    assert_eq!(
        owed,
        [
            ("crm", "Account", "CRM account"),
            ("crm", "ApiKey", "API key"),
            ("erp", "Company", "ERP company"),
        ]
    );
    assert_eq!(answer.owed[0].connection_type.as_ref().unwrap().as_str(), "crm");
    // The tier is the organization's to set: blocked, not owed.
    assert!(matches!(
        &answer.blocked[..],
        [Problem::MissingValue { param, .. }] if param == "Tier"
    ));
    assert!(!answer.is_complete());
    assert!(registry.resolve(&request("globex")).is_err());

    // The organization sets the tier, the customer fills in the wizard.
    let globex = || Layer::Customer("globex".parse().unwrap());
    let set = |id, param: &str, value: &str| {
        let version = registry.connection(&acme(), id).unwrap().version;
        registry
            .set_value(&acme(), id, version, &param.parse().unwrap(), globex(), value)
            .unwrap();
    };
    set(crm_id, "Tier", "gold");
    set(crm_id, "Account", "globex-001");
    let answer = registry.onboarding(&request("globex"));
    assert!(answer.blocked.is_empty());
    assert_eq!(answer.owed.len(), 2);
    set(crm_id, "ApiKey", "globex-api-key-secret");
    set(erp_id, "Company", "Globex Corp");
    let answer = registry.onboarding(&request("globex"));
    assert!(answer.is_complete(), "{answer:?}");
    assert!(!format!("{answer:?}").contains("globex-api-key-secret"));
    let env = registry.resolve(&request("globex")).unwrap();
    assert_eq!(env.expose("CRM_KEY"), Some("globex-api-key-secret"));
    // Another customer still owes everything.
    assert_eq!(registry.onboarding(&request("initech")).owed.len(), 3);
}

/// Acme's ERP template: the company is the organization's in production
/// only, hidden from customers; `overrides` says whether a connection may
/// set its own.
fn acme_erp(overrides: bool) -> ConnectionTemplate {
    let company = TemplateField::plain("Company")
        .env("production", "Acme EU")
        .hidden();
    ConnectionTemplate::builder("acme", "acme-erp", "erp")
        .field(if overrides { company.overridable() } else { company })
        .build()
        .unwrap()
}

#[test]
fn the_wizard_never_asks_for_a_field_the_template_hides_from_the_customer() {
    for overrides in [false, true] {
        let registry = Registry::in_memory();
        registry.put_type(&acme(), erp(), None).unwrap();
        registry.put_template(acme_erp(overrides), None).unwrap();
        registry
            .create_connection(
                ConnectionSpec::project("acme", "erp")
                    .target(Target::external("erp"))
                    .of_template(&erp(), &acme_erp(overrides))
                    .build()
                    .unwrap(),
            )
            .unwrap();
        registry
            .set_mappings(
                Mappings::of("acme", "orders")
                    .by_name("erp", [("Company", "ERP_COMPANY")])
                    .build()
                    .unwrap(),
                None,
            )
            .unwrap();
        // Production: the template fills it, nothing owed.
        assert!(registry.onboarding(&request("globex")).is_complete());
        // Development: no value, but the customer can neither see the field
        // nor set it: blocked (the organization's to fix), not owed.
        let request = ResolveRequest::parse("acme", "orders", "development")
            .unwrap()
            .for_customer("globex")
            .unwrap();
        let answer = registry.onboarding(&request);
        assert!(answer.owed.is_empty(), "overrides {overrides}: {answer:?}");
        assert!(
            matches!(&answer.blocked[..], [Problem::MissingValue { param, .. }] if param == "Company"),
            "overrides {overrides}: {answer:?}"
        );
        assert!(registry.resolve(&request).is_err());
    }
}

/// A generated field: 0 global (organization), 1 per customer entered by the
/// customer, 2 per customer set by the organization; required or not; which
/// layers hold a value (0 default, 1 and 2 the customers); whether the
/// connection's template fills it (0 no, 1 hidden and locked, 2 hidden and
/// overridable, 3 shown and locked, 4 shown and overridable), in production
/// only or by default.
#[derive(Debug, Clone)]
struct GenField {
    tenancy: u8,
    required: bool,
    layers: Vec<u8>,
    mapped: bool,
    template: u8,
    template_default: bool,
}

impl GenField {
    /// Whether the template fills the field and refuses the connection's
    /// own values.
    fn locked(&self) -> bool {
        matches!(self.template, 1 | 3)
    }

    /// Whether the customer may see and set the field.
    fn customer_sets(&self) -> bool {
        self.tenancy == 1 && matches!(self.template, 0 | 4)
    }
}

fn gen_field() -> impl Strategy<Value = GenField> {
    (
        0u8..3,
        any::<bool>(),
        proptest::collection::vec(0u8..3, 0..3),
        any::<bool>(),
        0u8..5,
        any::<bool>(),
    )
        .prop_map(
            |(tenancy, required, layers, mapped, template, template_default)| GenField {
                tenancy,
                required,
                layers,
                mapped,
                template,
                template_default,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Over generated types, connections, values and mappings: onboarding
    /// says "nothing owed, nothing blocked" exactly when resolution
    /// succeeds; every owed field is one the customer enters, sees and may
    /// set (not hidden or locked by a template); and owed plus
    /// blocked are the problems resolution reports.
    #[test]
    fn nothing_owed_exactly_when_resolution_succeeds(
        connections in proptest::collection::vec(proptest::collection::vec(gen_field(), 1..4), 1..3),
        defaults in any::<bool>(),
        who in 0usize..2,
        production in any::<bool>(),
    ) {
        let customers = ["globex", "initech"];
        let registry = Registry::in_memory();
        let mut mappings = Mappings::of("acme", "orders");
        for (c, fields) in connections.iter().enumerate() {
            let mut ty = ConnectionType::builder(format!("t{c}").as_str());
            for (i, f) in fields.iter().enumerate() {
                let mut b = Field::string(format!("F{i}").as_str());
                if !f.required {
                    b = b.optional();
                }
                match f.tenancy {
                    1 => b = b.per_customer(EnteredBy::Customer).visibility(Visibility::Customer),
                    2 => b = b.per_customer(EnteredBy::Organization),
                    _ => {}
                }
                ty = ty.field(b);
            }
            let ty = ty.build().unwrap();
            registry.put_type(&acme(), ty.clone(), None).unwrap();
            let spec = ConnectionSpec::project("acme", format!("c{c}").as_str())
                .target(Target::external("svc"));
            let mut spec = if fields.iter().any(|f| f.template != 0) {
                let mut template =
                    ConnectionTemplate::builder("acme", format!("p{c}").as_str(), format!("t{c}").as_str());
                for (i, f) in fields.iter().enumerate().filter(|(_, f)| f.template != 0) {
                    let mut tf = TemplateField::plain(format!("F{i}").as_str());
                    tf = if f.template_default { tf.default("t") } else { tf.env("production", "t") };
                    if f.template <= 2 {
                        tf = tf.hidden();
                    }
                    if f.template % 2 == 0 {
                        tf = tf.overridable();
                    }
                    template = template.field(tf);
                }
                let template = template.build().unwrap();
                registry.put_template(template.clone(), None).unwrap();
                spec.of_template(&ty, &template)
            } else {
                spec.of_type(&ty)
            };
            for (i, f) in fields.iter().enumerate().filter(|(_, f)| !f.locked()) {
                for &layer in &f.layers {
                    let layer = match layer {
                        0 if f.tenancy == 0 => Layer::Environment(Environment::production()),
                        0 => continue,
                        n => Layer::Customer(customers[usize::from(n - 1)].parse().unwrap()),
                    };
                    spec = spec.value(format!("F{i}").as_str(), layer, "x");
                }
            }
            registry.create_connection(spec.build().unwrap()).unwrap();
            let name = format!("c{c}");
            mappings = if defaults {
                mappings.by_name_defaults(name.as_str())
            } else {
                let entries: Vec<(String, String)> = fields
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.mapped)
                    .map(|(i, _)| (format!("F{i}"), format!("C{c}_F{i}")))
                    .collect();
                mappings.by_name(
                    name.as_str(),
                    entries.iter().map(|(a, b)| (a.as_str(), b.as_str())),
                )
            };
        }
        registry.set_mappings(mappings.build().unwrap(), None).unwrap();
        let env = if production { "production" } else { "development" };
        let request = ResolveRequest::parse("acme", "orders", env)
            .unwrap()
            .for_customer(customers[who])
            .unwrap();

        let answer = registry.onboarding(&request);
        let resolved = registry.resolve(&request);
        prop_assert_eq!(answer.is_complete(), resolved.is_ok(), "{:?} {:?}", answer, resolved);
        for owed in &answer.owed {
            let c: usize = owed.connection.as_str()[1..].parse().unwrap();
            let i: usize = owed.field.as_str()[1..].parse().unwrap();
            prop_assert!(connections[c][i].customer_sets(), "owed {:?} the customer cannot set", owed);
        }
        if let Err(e) = resolved {
            let mut reported: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
            reported.sort();
            reported.dedup();
            let mut ours: Vec<String> = answer.blocked.iter().map(ToString::to_string).collect();
            for owed in &answer.owed {
                let p = e.problems.iter().find(|p| matches!(
                    p,
                    Problem::MissingValue { connection_id, param, .. }
                        if *connection_id == owed.connection_id && *param == owed.field
                ));
                prop_assert!(p.is_some(), "owed {:?} is not a problem of resolution", owed);
                ours.push(p.unwrap().to_string());
            }
            ours.sort();
            ours.dedup();
            prop_assert_eq!(ours, reported);
        }
    }
}
