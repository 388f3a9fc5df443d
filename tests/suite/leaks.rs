//! Rule 6: no `Debug`, `Display`, error message or default serialization
//! contains a secret.
//!
//! A registry is filled with distinctive secret strings (parameter values in
//! every layer, OAuth client secrets before and after a rotation), and every
//! public type reachable from it is printed and serialized; none of the
//! strings may appear. The control tests prove the strings are really there to
//! find when a caller exposes them on purpose.

use std::collections::BTreeSet;
use std::fmt::{Debug, Display};
use std::sync::{Arc, Mutex};

use connective::catalog::Catalog;
use connective::fixture::Fixture;
use connective::model::{
    CustomerId, Layer, OAuthApp, PlaintextCodec, PlatformTarget, Record, RecordKey, ResolvePolicy, Revision,
    SecretValue, with_secret_codec,
};
use connective::oauth::{
    LocalProvisioner, OAuthCredentials, OAuthProvisioner, ProvisionError, ProvisionRequest,
};
use connective::output::{EnvReport, Secrets, to_dotenv};
use connective::prelude::*;
use connective::store::{Batch, Expect, MemoryStore, Store, Write};

/// A distinctive secret; `label` says where it was put.
fn secret(label: &str) -> String {
    format!("s3cr3t-{label}-QZX")
}

/// Issues known secrets (so they can be looked for) and can be told to fail.
#[derive(Clone, Default)]
struct KnownSecrets {
    issued: Arc<Mutex<Vec<String>>>,
    fail: Arc<Mutex<bool>>,
}

impl KnownSecrets {
    fn next(&self, what: &str) -> Result<SecretValue, ProvisionError> {
        let mut issued = self.issued.lock().unwrap();
        let value = secret(&format!("{what}-{}", issued.len()));
        issued.push(value.clone());
        Ok(SecretValue::new(value))
    }
    fn check(&self, request: (&ProjectId, &AppOwner)) -> Result<(), ProvisionError> {
        if *self.fail.lock().unwrap() {
            return Err(ProvisionError {
                action: "provision",
                project: request.0.clone(),
                owner: request.1.clone(),
                message: "the identity provider refused".into(),
            });
        }
        Ok(())
    }
}

impl OAuthProvisioner for KnownSecrets {
    fn provision(&self, request: &ProvisionRequest) -> Result<OAuthCredentials, ProvisionError> {
        self.check((&request.project, &request.owner))?;
        Ok(OAuthCredentials {
            client_id: format!("client-{}", self.issued.lock().unwrap().len()),
            client_secret: self.next("oauth")?,
            token_url: "https://idp.test/token".into(),
        })
    }
    fn rotate(&self, app: &OAuthApp) -> Result<SecretValue, ProvisionError> {
        self.check((app.project(), app.owner()))?;
        self.next("rotated")
    }
}

/// Everything printed or serialized, with what it was.
#[derive(Default)]
struct Haystack(Vec<(String, String)>);

impl Haystack {
    fn debug<T: Debug + ?Sized>(&mut self, what: &str, value: &T) {
        self.0.push((format!("{what} (Debug)"), format!("{value:?}")));
        self.0
            .push((format!("{what} (pretty Debug)"), format!("{value:#?}")));
    }
    fn display<T: Display + ?Sized>(&mut self, what: &str, value: &T) {
        self.0.push((format!("{what} (Display)"), value.to_string()));
    }
    fn both<T: Debug + Display + ?Sized>(&mut self, what: &str, value: &T) {
        self.debug(what, value);
        self.display(what, value);
    }
    fn text(&mut self, what: &str, text: String) {
        self.0.push((what.to_owned(), text));
    }

    fn assert_free_of(&self, needles: &BTreeSet<String>) {
        assert!(
            self.0.len() > 100,
            "the haystack is suspiciously small: {}",
            self.0.len()
        );
        let mut leaks = Vec::new();
        for (what, text) in &self.0 {
            for needle in needles {
                if text.contains(needle.as_str()) {
                    leaks.push(format!("{what} contains {needle}"));
                }
            }
        }
        assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    }
}

fn twilio_spec() -> ConnectionSpec {
    ConnectionSpec::project("acme", "twilio")
        .target(Target::external("twilio"))
        .auth(AuthScheme::ApiKey)
        .param(Param::plain("ServiceURL").default("https://api.twilio.com"))
        .param(
            Param::secret("ApiKey")
                .default(secret("twilio-default"))
                .env("production", secret("twilio-production"))
                .customer("globex", secret("twilio-globex"))
                .customer_env("globex", "test", secret("twilio-globex-test")),
        )
        .param(
            Param::secret("AuthToken")
                .optional()
                .env("development", secret("twilio-token-dev")),
        )
        .build()
        .unwrap()
}

/// A registry full of secrets, and the requests that resolve it.
fn secret_registry(provisioner: &KnownSecrets) -> (Registry, Vec<ResolveRequest>) {
    let registry = Registry::builder()
        .prefix("CHOREO".parse().unwrap())
        .provisioner(provisioner.clone())
        .build()
        .unwrap();
    registry
        .write(|tx| {
            let twilio = tx.create_connection(twilio_spec())?;
            tx.create_connection(
                ConnectionSpec::integration("acme", "orders", "legacy-crm")
                    .target(Target::external("legacy-crm"))
                    .auth(AuthScheme::Basic)
                    .param(Param::plain("Username").default("orders-bot"))
                    .param(Param::secret("Password").default(secret("crm-password")))
                    .build()?,
            )?;
            tx.create_connection(
                ConnectionSpec::project("acme", "orders-db")
                    .target(Target::database("postgresql"))
                    .param(Param::plain("HostName").default("db.internal"))
                    .param(Param::plain("Port").default("5432"))
                    .param(Param::plain("Username").default("orders"))
                    .param(Param::secret("Password").default(secret("db-password")))
                    .param(Param::plain("DatabaseName").default("orders"))
                    .build()?,
            )?;
            tx.create_connection(
                ConnectionSpec::project("acme", "erp")
                    .target(Target::external("erp"))
                    .auth(AuthScheme::Custom)
                    .param(
                        Param::secret("ApiKey")
                            .per_customer(EnteredBy::Organization)
                            .customer("globex", secret("erp-globex"))
                            .customer("initech", secret("erp-initech")),
                    )
                    .build()?,
            )?;
            tx.create_connection(
                ConnectionSpec::project("acme", "inventory")
                    .platform_target("acme", "inventory-api")
                    .auth(AuthScheme::OAuth2(OAuthClient::Shared))
                    .param(Param::plain("ServiceURL").default("https://internal/inventory"))
                    .build()?,
            )?;
            tx.create_connection(
                ConnectionSpec::integration("acme", "orders", "audit")
                    .platform_target("acme", "audit-api")
                    .auth(AuthScheme::OAuth2(OAuthClient::Dedicated))
                    .build()?,
            )?;
            tx.set_mappings(
                Mappings::of("acme", "orders")
                    .by_id(twilio, [("ApiKey", "SMS_KEY"), ("ServiceURL", "SMS_URL")])
                    .by_name_defaults("legacy-crm")
                    .by_name_defaults("orders-db")
                    .by_name_defaults("inventory")
                    .by_name_defaults("audit")
                    .build()?,
                None,
            )?;
            tx.set_mappings(
                Mappings::of("acme", "billing")
                    .by_name("twilio", [("ApiKey", "SMS_KEY"), ("AuthToken", "SMS_TOKEN")])
                    .by_name("erp", [("ApiKey", "ERP_KEY")])
                    .by_name("inventory", [("ConsumerSecret", "INVENTORY_SECRET")])
                    .build()?,
                None,
            )?;
            Ok(())
        })
        .unwrap();
    registry
        .rotate_app_secret(&"acme".parse().unwrap(), &AppOwner::Project)
        .unwrap();
    let mut requests = Vec::new();
    for integration in ["orders", "billing"] {
        for env in ["development", "production", "test"] {
            let base = ResolveRequest::parse("acme", integration, env).unwrap();
            requests.push(base.clone());
            for customer in ["globex", "initech"] {
                requests.push(base.clone().for_customer(customer).unwrap());
            }
        }
    }
    (registry, requests)
}

/// Every secret string that went into the registry.
fn needles(provisioner: &KnownSecrets) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = [
        "twilio-default",
        "twilio-production",
        "twilio-globex",
        "twilio-globex-test",
        "twilio-token-dev",
        "crm-password",
        "db-password",
        "erp-globex",
        "erp-initech",
        "builder-only",
        "too-long",
        "duplicate",
        "per-customer-default",
        "set-value",
        "fixture",
    ]
    .iter()
    .map(|l| secret(l))
    .collect();
    out.extend(provisioner.issued.lock().unwrap().iter().cloned());
    out
}

#[test]
fn the_secrets_are_there_for_whoever_asks_explicitly() {
    let provisioner = KnownSecrets::default();
    let (registry, requests) = secret_registry(&provisioner);
    let mut exposed = BTreeSet::new();
    for request in &requests {
        if let Ok(env) = registry.resolve(request) {
            for var in &env {
                if var.value().is_secret() {
                    exposed.insert(var.value().expose().to_owned());
                }
            }
        }
    }
    let expected: BTreeSet<String> = needles(&provisioner)
        .into_iter()
        .filter(|n| {
            // Secrets that never entered the registry, or were rotated away.
            ![
                "builder-only",
                "too-long",
                "duplicate",
                "per-customer-default",
                "set-value",
                "fixture",
            ]
            .iter()
            .any(|l| n == &secret(l))
                && n != &secret("oauth-0")
        })
        .collect();
    assert_eq!(
        exposed, expected,
        "resolution reaches every secret of the registry"
    );

    // So does a report that asks for them explicitly.
    let mut reported = BTreeSet::new();
    for request in &requests {
        if let Ok(env) = registry.resolve(request) {
            for var in EnvReport::new(&env, Secrets::Expose).variables {
                if var.secret {
                    reported.insert(var.value.unwrap());
                }
            }
        }
    }
    assert_eq!(reported, expected);

    // Explicit serialization with a codec carries them too.
    let snapshot = registry.snapshot(&"acme".parse().unwrap()).unwrap();
    let json = with_secret_codec(Arc::new(PlaintextCodec), || {
        let records: Vec<Record> = snapshot
            .connections()
            .map(|c| Record::Connection(c.value.clone()))
            .chain(snapshot.apps().map(|a| Record::OAuthApp(a.value.clone())))
            .collect();
        serde_json::to_string(&records)
    })
    .unwrap();
    for needle in &expected {
        assert!(
            json.contains(needle.as_str()),
            "{needle} not serialized under the codec"
        );
    }
}

#[test]
fn no_debug_display_or_error_message_contains_a_secret() {
    let provisioner = KnownSecrets::default();
    let (registry, requests) = secret_registry(&provisioner);
    let acme: ProjectId = "acme".parse().unwrap();
    let mut hay = Haystack::default();

    // The registry and what it is built from.
    hay.debug("registry", &registry);
    hay.debug("catalog", registry.catalog());
    hay.debug(
        "registry builder",
        &Registry::builder()
            .provisioner(provisioner.clone())
            .prefix("P".parse().unwrap()),
    );
    let snapshot = registry.snapshot(&acme).unwrap();
    hay.debug("project snapshot", &*snapshot);
    hay.debug("project view", &registry.view(&acme));
    for c in snapshot.connections() {
        let name = format!("connection {}", c.value.name());
        hay.debug(&name, c);
        hay.debug(&format!("{name} spec"), c.value.spec());
        hay.debug(&format!("{name} record"), &Record::Connection(c.value.clone()));
        hay.display(&format!("{name} target"), c.value.spec().target());
        for p in c.value.spec().params() {
            hay.debug(&format!("{name} param {}", p.name()), p);
            hay.debug(&format!("{name} param {} values", p.name()), p.values());
        }
        hay.debug(&format!("{name} usages"), &registry.usages(&acme, c.value.id()));
    }
    for a in snapshot.apps() {
        hay.debug(&format!("app {}", a.value.owner()), a);
        hay.debug(
            &format!("app {} record", a.value.owner()),
            &Record::OAuthApp(a.value.clone()),
        );
        hay.debug(
            &format!("app info {}", a.value.owner()),
            &registry.oauth_app(&acme, a.value.owner()),
        );
    }
    for m in snapshot.all_mappings() {
        hay.debug("mappings", m);
    }
    for integration in ["orders", "billing"] {
        hay.debug(
            &format!("visible to {integration}"),
            &registry.visible_connections(&acme, &integration.parse().unwrap()),
        );
    }

    // Every resolution, variable, value, provenance and explanation.
    for request in &requests {
        let what = request.to_string();
        match registry.resolve(request) {
            Ok(env) => {
                hay.both(&what, &env);
                let report = EnvReport::new(&env, Secrets::Redact);
                hay.debug(&format!("{what} report"), &report);
                hay.text(
                    &format!("{what} report json"),
                    serde_json::to_string(&report).unwrap(),
                );
                #[cfg(feature = "kubernetes")]
                {
                    let options = connective::output::kubernetes::KubernetesOptions::new("orders").unwrap();
                    let objects = connective::output::kubernetes::to_kubernetes(&env, &options).unwrap();
                    hay.debug(&format!("{what} kubernetes objects"), &objects);
                }
                for var in &env {
                    hay.debug(&format!("{what} {}", var.name()), &var);
                    hay.both(&format!("{what} {} value", var.name()), &var.value());
                    hay.both(&format!("{what} {} provenance", var.name()), &var.provenance());
                    let explanation = registry.explain(request, var.name().as_str()).unwrap().unwrap();
                    hay.both(&format!("{what} {} explanation", var.name()), &explanation);
                }
            }
            Err(e) => hay.both(&what, &e),
        }
    }
    let standalone = Catalog::from_records(
        ResolvePolicy::default(),
        Revision(1),
        registry.store().load().unwrap().records,
    );
    hay.debug("standalone catalog", &standalone);

    // The store's view: snapshot, change feed, a batch of records.
    hay.debug("store snapshot", &registry.store().load().unwrap());
    hay.debug(
        "change feed",
        &registry.store().changes_since(Revision(0), 1000).unwrap(),
    );
    let mut batch = Batch::new();
    for c in snapshot.connections() {
        batch.push(Write::put(Record::Connection(c.value.clone()), Expect::Absent));
    }
    hay.debug("batch", &batch);
    let memory = MemoryStore::new();
    memory.commit(&batch).unwrap();
    let conflict = memory.commit(&batch).unwrap_err();
    hay.both("store conflict", &conflict);
    batch.push(batch.writes[0].clone());
    hay.both("invalid batch", &memory.commit(&batch).unwrap_err());

    // Builders and specs that hold secrets but never reached the registry.
    let builder = ConnectionSpec::project("acme", "builder").param(
        Param::secret("Key")
            .default(secret("builder-only"))
            .env("test", secret("builder-only")),
    );
    hay.debug("connection builder", &builder);
    hay.debug(
        "param builder",
        &Param::secret("Key").customer("globex", secret("builder-only")),
    );
    hay.debug("secret value", &SecretValue::new(secret("builder-only")));
    let spec_errors = [
        ConnectionSpec::project("acme", "long")
            .param(Param::secret("Key").default(format!("{}{}", secret("too-long"), "x".repeat(70_000))))
            .build()
            .unwrap_err(),
        ConnectionSpec::project("acme", "dup")
            .param(
                Param::secret("Key")
                    .env("test", secret("duplicate"))
                    .env("test", secret("duplicate")),
            )
            .build()
            .unwrap_err(),
        ConnectionSpec::project("acme", "pc")
            .param(
                Param::secret("Key")
                    .per_customer(EnteredBy::Customer)
                    .default(secret("per-customer-default")),
            )
            .build()
            .unwrap_err(),
    ];
    for (i, e) in spec_errors.iter().enumerate() {
        hay.both(&format!("spec error {i}"), e);
        for p in &e.problems {
            hay.both(&format!("spec error {i} problem"), p);
        }
    }

    // Registry errors of every kind a caller can provoke here.
    let twilio = snapshot
        .connections()
        .find(|c| c.value.name().as_str() == "twilio")
        .unwrap()
        .value
        .id();
    let erp = snapshot
        .connections()
        .find(|c| c.value.name().as_str() == "erp")
        .unwrap()
        .value
        .id();
    let version = registry.connection(&acme, erp).unwrap().version;
    let mut errors: Vec<RegistryError> = vec![
        registry.create_connection(twilio_spec()).unwrap_err(),
        registry
            .update_connection(twilio, Version(99), twilio_spec())
            .unwrap_err(),
        registry
            .delete_connection(
                &acme,
                twilio,
                registry.connection(&acme, twilio).unwrap().version,
                DeleteMode::Refuse,
            )
            .unwrap_err(),
        registry
            .set_value(
                &acme,
                erp,
                version,
                &"ApiKey".parse().unwrap(),
                Layer::Default,
                secret("set-value"),
            )
            .unwrap_err(),
        registry
            .set_value(
                &acme,
                erp,
                version,
                &"ApiKey".parse().unwrap(),
                Layer::Customer("hooli".parse::<CustomerId>().unwrap()),
                format!("{}{}", secret("set-value"), "y".repeat(70_000)),
            )
            .unwrap_err(),
        registry
            .set_mappings(
                Mappings::of("acme", "reports")
                    .by_name("twilio", [("ApiKey", "PATH"), ("Nope", "X")])
                    .by_name("legacy-crm", [("Password", "Y")])
                    .build()
                    .unwrap(),
                None,
            )
            .unwrap_err(),
        registry
            .rotate_app_secret(&acme, &AppOwner::Integration("billing".parse().unwrap()))
            .unwrap_err(),
        registry
            .update_connection(
                connective::model::ConnectionId::random(),
                Version(1),
                twilio_spec(),
            )
            .unwrap_err(),
    ];
    *provisioner.fail.lock().unwrap() = true;
    errors.push(registry.rotate_app_secret(&acme, &AppOwner::Project).unwrap_err());
    *provisioner.fail.lock().unwrap() = false;
    let kinds: Vec<String> = errors
        .iter()
        .map(|e| format!("{e:?}").split([' ', '(', '{']).next().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "NameTaken",
            "Conflict",
            "StillUsed",
            "Spec",
            "Spec",
            "InvalidMappings",
            "AppNotFound",
            "ConnectionNotFound",
            "Provision"
        ]
    );
    for (i, e) in errors.iter().enumerate() {
        hay.both(&format!("registry error {i}"), e);
    }
    hay.both(
        "mappings error",
        &Mappings::of("acme", "x")
            .by_name("y", [("A b", "1C")])
            .build()
            .unwrap_err(),
    );

    // Write reports, inside and out of a transaction.
    let (_, report) = registry
        .write(|tx| {
            hay.debug("transaction", &*tx);
            tx.rotate_app_secret(&acme, &AppOwner::Project)
        })
        .unwrap();
    hay.debug("write report", &report);
    let (_, report) = registry
        .create_connection(
            ConnectionSpec::integration("acme", "billing", "twilio")
                .param(Param::secret("ApiKey").default(secret("fixture")))
                .param(Param::secret("AuthToken").default(secret("fixture-token")))
                .build()
                .unwrap(),
        )
        .unwrap();
    hay.debug("rebinding report", &report);
    for r in &report.rebindings {
        hay.both("rebinding", r);
    }

    // An output refused because a secret holds a NUL byte names the variable only.
    let nul = Fixture::project("acme")
        .connection("svc", |c| {
            c.param(Param::secret("Key").default(format!("{}\0", secret("fixture"))))
        })
        .mappings("orders", |m| m.by_name_defaults("svc"))
        .build()
        .unwrap();
    let err = to_dotenv(&nul.resolve("orders", "production").unwrap()).unwrap_err();
    hay.both("dotenv error", &err);

    // The OAuth plumbing.
    let local = LocalProvisioner::default();
    let credentials = local
        .provision(&ProvisionRequest {
            project: acme.clone(),
            owner: AppOwner::Project,
        })
        .unwrap();
    hay.debug("local provisioner", &local);
    hay.debug("credentials", &credentials);
    hay.debug(
        "grant target",
        &PlatformTarget {
            project: acme.clone(),
            integration: "inventory-api".parse().unwrap(),
            endpoint: None,
            visibility: connective::model::EndpointVisibility::Project,
        },
    );

    // A fixture holding a secret, and its errors.
    let fixture = Fixture::project("acme")
        .connection("svc", |c| {
            c.param(Param::secret("Key").default(secret("fixture")))
        })
        .mappings("orders", |m| m.by_name_defaults("svc"))
        .build()
        .unwrap();
    hay.debug("fixture", &fixture);
    hay.both(
        "fixture resolution",
        &fixture.resolve("orders", "production").unwrap(),
    );
    let bad = Fixture::project("acme")
        .connection("svc", |c| {
            c.param(
                Param::secret("Key")
                    .per_customer(EnteredBy::Customer)
                    .default(secret("fixture")),
            )
        })
        .build()
        .unwrap_err();
    hay.both("fixture error", &bad);

    // Sealing keys and what they seal (feature seal).
    #[cfg(feature = "seal")]
    let seal_key = {
        use connective::store::seal::{KeyRing, SealKey};
        use secrecy::ExposeSecret;
        let key = SealKey::generate("k1").unwrap();
        let text = key.to_base64().expose_secret().to_owned();
        let ring = KeyRing::new(SealKey::from_base64("k2", &text).unwrap())
            .with_old_key(key.clone())
            .unwrap();
        hay.debug("seal key", &key);
        hay.debug("key ring", &ring);
        let sealed = ring.seal(&SecretValue::new(secret("crm-password"))).unwrap();
        hay.text("sealed secret", sealed.clone());
        // Change one character in the middle of the sealed text, always to a
        // different one (the last character may carry only padding bits, and
        // replacing it with itself changed nothing one run in 64).
        let mid = sealed.len() / 2;
        let swap = if &sealed[mid..=mid] == "A" { "B" } else { "A" };
        let tampered = format!("{}{swap}{}", &sealed[..mid], &sealed[mid + 1..]);
        hay.both("seal error", &ring.open(&tampered).unwrap_err());
        hay.both(
            "seal key error",
            &SealKey::from_base64("k3", &text[..10]).unwrap_err(),
        );
        let records = with_secret_codec(Arc::new(ring), || {
            serde_json::to_string(
                &registry
                    .store()
                    .load()
                    .unwrap()
                    .records
                    .iter()
                    .map(|(_, r)| r)
                    .collect::<Vec<_>>(),
            )
        })
        .unwrap();
        hay.text("records sealed under the key ring", records);
        text
    };

    let mut needles = needles(&provisioner);
    #[cfg(feature = "seal")]
    needles.insert(seal_key);
    needles.insert(credentials.client_secret.expose().to_owned());
    // Rotations in this test issued more secrets.
    needles.extend(provisioner.issued.lock().unwrap().iter().cloned());
    hay.assert_free_of(&needles);
}

#[test]
fn default_serialization_of_a_secret_is_an_error_that_names_no_secret() {
    let provisioner = KnownSecrets::default();
    let (registry, _) = secret_registry(&provisioner);
    let snapshot = registry.snapshot(&"acme".parse().unwrap()).unwrap();
    let needles = needles(&provisioner);
    let mut attempts: Vec<(String, Result<String, serde_json::Error>)> = Vec::new();
    for c in snapshot.connections() {
        let has_secret = c
            .value
            .spec()
            .params()
            .iter()
            .any(|p| p.kind() == connective::model::ParamKind::Secret);
        let name = c.value.name().to_string();
        let result = serde_json::to_string(&*c.value);
        assert_eq!(result.is_err(), has_secret, "connection {name}: {result:?}");
        attempts.push((name.clone(), result));
        attempts.push((format!("{name} spec"), serde_json::to_string(c.value.spec())));
        attempts.push((
            format!("{name} record"),
            serde_json::to_string(&Record::Connection(c.value.clone())),
        ));
        for p in c.value.spec().params() {
            attempts.push((format!("{name}.{}", p.name()), serde_json::to_string(p)));
            attempts.push((
                format!("{name}.{} values", p.name()),
                serde_json::to_string(p.values()),
            ));
        }
    }
    for a in snapshot.apps() {
        let result = serde_json::to_string(&*a.value);
        assert!(result.is_err(), "an OAuth application serialized without a codec");
        attempts.push((format!("app {}", a.value.owner()), result));
        attempts.push((
            format!("app record {}", a.value.owner()),
            serde_json::to_value(Record::OAuthApp(a.value.clone())).map(|v| v.to_string()),
        ));
    }
    let secret_value = SecretValue::new(secret("twilio-default"));
    let err = serde_json::to_string(&secret_value).unwrap_err();
    assert!(err.to_string().contains("explicit SecretCodec"), "{err}");
    attempts.push(("secret value".into(), Err(err)));

    let mut hay = Haystack::default();
    for (what, result) in attempts {
        match result {
            Ok(json) => hay.text(&format!("{what} json"), json),
            Err(e) => hay.both(&format!("{what} serialization error"), &e),
        }
    }
    hay.assert_free_of(&needles);

    // Mappings hold no secret and serialize as they are.
    let orders = snapshot.mappings(&"orders".parse().unwrap()).unwrap();
    let json = serde_json::to_string(&*orders.value).unwrap();
    assert!(json.contains("SMS_KEY"), "{json}");

    // Reading a secret back needs the codec too.
    let err = serde_json::from_str::<SecretValue>("\"s3cr3t-from-disk-QZX\"").unwrap_err();
    assert!(!err.to_string().contains("s3cr3t-from-disk-QZX"), "{err}");
    assert!(matches!(
        registry
            .store()
            .get(&RecordKey::OAuthApp("acme".parse().unwrap(), AppOwner::Project)),
        Ok(Some(_))
    ));
}

/// A secret written where a manifest expects something else: every format,
/// every place, and the manifest's error (message and `Debug`) never repeats
/// it. `S` marks the secret.
#[cfg(feature = "manifest")]
#[test]
fn manifest_errors_never_repeat_a_misplaced_secret() {
    use connective::manifest::{Format, Manifest, Rule};
    const S: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
    let yaml = |body: &str| format!("project: acme\nconnections:\n  - name: api\n{body}");
    let cases: Vec<(&str, Format, String)> = vec![
        (
            "a secret where `default:` was forgotten (YAML)",
            Format::Yaml,
            yaml(&format!(
                "    parameters:\n      ApiKey: {{ secret: true, {S} }}\n"
            )),
        ),
        (
            "a secret where `default:` was forgotten (JSON)",
            Format::Json,
            format!(
                r#"{{"project": "acme", "connections": [{{"name": "api", "parameters": {{"ApiKey": {{"secret": true, "{S}": null}}}}}}]}}"#
            ),
        ),
        (
            "a secret where `default:` was forgotten (TOML)",
            Format::Toml,
            format!(
                "project = \"acme\"\n[[connections]]\nname = \"api\"\n[connections.parameters.ApiKey]\nsecret = true\n{S} = 1\n"
            ),
        ),
        (
            "a secret as the auth scheme",
            Format::Yaml,
            yaml(&format!("    auth: {S}\n")),
        ),
        (
            "a secret as a target kind",
            Format::Yaml,
            yaml(&format!("    target: {{ {S}: crm }}\n")),
        ),
        (
            "a secret as the target kind (JSON)",
            Format::Json,
            format!(r#"{{"project": "acme", "connections": [{{"name": "api", "target": {{"{S}": "x"}}}}]}}"#),
        ),
        (
            "a secret as an environment key",
            Format::Yaml,
            yaml(&format!(
                "    parameters:\n      ApiKey:\n        secret: true\n        environments: {{ {S}: 'env:CONNECTIVE_SECRET_K' }}\n"
            )),
        ),
        (
            "a secret as a customer key",
            Format::Yaml,
            yaml(&format!(
                "    parameters:\n      Url:\n        customers: {{ '{S}!': x }}\n"
            )),
        ),
        (
            "a secret as a parameter name",
            Format::Yaml,
            yaml(&format!("    parameters:\n      '{S}!': {{ default: x }}\n")),
        ),
        (
            "a secret as an integration key",
            Format::Yaml,
            format!("project: acme\nintegrations:\n  '{S}!': {{ connections: [] }}\n"),
        ),
        (
            "a secret as a variable name",
            Format::Yaml,
            yaml(&format!(
                "    parameters: {{ Url: {{ default: x }} }}\nintegrations:\n  orders:\n    connections:\n      - connection: api\n        env: [{{ from: Url, to: '{S}-x' }}]\n"
            )),
        ),
        (
            "a secret as the project",
            Format::Yaml,
            format!("project: '{S}!'\n"),
        ),
        (
            "a secret as the version",
            Format::Yaml,
            format!("version: {S}\nproject: acme\n"),
        ),
        (
            "a secret given twice as a key",
            Format::Yaml,
            yaml(&format!("    parameters:\n      {S}: {{}}\n      {S}: {{}}\n")),
        ),
        (
            "user:password as a secret value",
            Format::Yaml,
            yaml(&format!(
                "    parameters:\n      Login: {{ secret: true, default: 'admin:{S}' }}\n"
            )),
        ),
        (
            "a URL with a password as a secret value",
            Format::Yaml,
            yaml(&format!(
                "    parameters:\n      Dsn: {{ secret: true, default: 'postgresql://admin:{S}@db/app' }}\n"
            )),
        ),
        (
            "a scheme the host did not register",
            Format::Yaml,
            yaml(&format!(
                "    parameters:\n      Key: {{ secret: true, default: 'doppler:{S}' }}\n"
            )),
        ),
        (
            "an external store's scheme with a secret instead of a reference",
            Format::Yaml,
            yaml(&format!(
                "    parameters:\n      Key: {{ secret: true, default: 'vault:{S}' }}\n"
            )),
        ),
    ];
    for (what, format, text) in cases {
        let err = match Manifest::parse(&text, format, "acme") {
            Ok(m) => panic!("{what}: accepted: {m:?}"),
            Err(e) => e,
        };
        let shown = format!("{err}\n{err:?}");
        assert!(!shown.contains(S), "{what} leaked: {shown}");
        assert!(!err.problems().is_empty(), "{what}");
    }
    // Reference-shaped literals are refused as such, not planned.
    for value in [format!("admin:{S}"), format!("doppler:{S}")] {
        let err = Manifest::parse(
            &yaml(&format!(
                "    parameters:\n      K: {{ secret: true, default: '{value}' }}\n"
            )),
            Format::Yaml,
            "acme",
        )
        .unwrap_err();
        assert!(
            matches!(err.problems()[0].rule, Rule::UnknownScheme { .. }),
            "{err}"
        );
    }
    // An external store's scheme is a reference that must parse as one.
    let err = Manifest::parse(
        &yaml(&format!(
            "    parameters:\n      K: {{ secret: true, default: 'vault:{S}' }}\n"
        )),
        Format::Yaml,
        "acme",
    )
    .unwrap_err();
    assert!(matches!(err.problems()[0].rule, Rule::BadExternalRef(_)), "{err}");
    let err = Manifest::parse(
        &yaml(&format!(
            "    parameters:\n      K: {{ secret: true, default: 'postgresql://admin:{S}@db' }}\n"
        )),
        Format::Yaml,
        "acme",
    )
    .unwrap_err();
    assert!(matches!(err.problems()[0].rule, Rule::LiteralSecret), "{err}");
    // A manifest that loads does not show its plain values in `Debug` either
    // (a plain parameter holding a connection string with a password).
    let m = Manifest::parse(
        &yaml(&format!(
            "    parameters:\n      Dsn: {{ default: 'postgresql://admin:{S}@db/app' }}\n      Key: {{ secret: true, default: 'env:CONNECTIVE_SECRET_KEY' }}\n"
        )),
        Format::Yaml,
        "acme",
    )
    .unwrap();
    let debug = format!("{m:?}");
    assert!(!debug.contains(S), "{debug}");
    assert!(debug.contains("env:CONNECTIVE_SECRET_KEY"), "{debug}");
}
