//! Rule 5: shared OAuth applications, the Choreo way.
//!
//! Project-scope OAuth connections to platform integrations all use the
//! project's one OAuth application; one integration's OAuth connections share
//! that integration's application unless a connection asks for a dedicated
//! one. The application is provisioned with its first connection, rotated on
//! request, and released with its last connection — each in the same atomic
//! write. A test provisioner records what the registry asks of it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use connective::model::{
    APP_PARAMS, Layer, OAuthApp, PlatformTarget, Record, RecordKey, Revision, SecretValue, Version,
};
use connective::oauth::{OAuthCredentials, OAuthProvisioner, ProvisionError, ProvisionRequest};
use connective::prelude::*;
use connective::resolve::{AppField, ValueSource};
use connective::store::{Batch, Change, CommitToken, Committed, MemoryStore, Snapshot, Store, StoreError};

use crate::support::acme;

const TOKEN_URL: &str = "https://idp.acme.test/oauth2/token";

/// What the registry asked of the provisioner.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    Provision(AppOwner),
    Grant(AppOwner, String),
    Revoke(AppOwner, String),
    Rotate(AppOwner),
    Release(AppOwner, String),
}

#[derive(Default)]
struct State {
    calls: Vec<Call>,
    issued: u32,
    fail: Option<&'static str>,
}

/// Issues `client-N` / `secret-N` credentials and records every call.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<State>>);

impl Recorder {
    fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().calls.clone()
    }
    fn clear(&self) {
        self.0.lock().unwrap().calls.clear();
    }
    fn fail(&self, action: Option<&'static str>) {
        self.0.lock().unwrap().fail = action;
    }
    fn record(
        &self,
        action: &'static str,
        app: (&ProjectId, &AppOwner),
        call: Call,
    ) -> Result<u32, ProvisionError> {
        let mut state = self.0.lock().unwrap();
        if state.fail == Some(action) {
            return Err(ProvisionError {
                action,
                project: app.0.clone(),
                owner: app.1.clone(),
                message: "identity provider said 503".into(),
            });
        }
        state.calls.push(call);
        state.issued += 1;
        Ok(state.issued)
    }
}

fn target_name(target: &PlatformTarget) -> String {
    format!("{}/{}", target.project, target.integration)
}

impl OAuthProvisioner for Recorder {
    fn provision(&self, request: &ProvisionRequest) -> Result<OAuthCredentials, ProvisionError> {
        let n = self.record(
            "provision",
            (&request.project, &request.owner),
            Call::Provision(request.owner.clone()),
        )?;
        Ok(OAuthCredentials {
            client_id: format!("client-{n}"),
            client_secret: SecretValue::new(format!("secret-{n}")),
            token_url: TOKEN_URL.into(),
        })
    }

    fn rotate(&self, app: &OAuthApp) -> Result<SecretValue, ProvisionError> {
        let n = self.record(
            "rotate",
            (app.project(), app.owner()),
            Call::Rotate(app.owner().clone()),
        )?;
        Ok(SecretValue::new(format!("secret-{n}")))
    }

    fn grant(&self, app: &OAuthApp, target: &PlatformTarget) -> Result<(), ProvisionError> {
        let call = Call::Grant(app.owner().clone(), target_name(target));
        self.record("grant", (app.project(), app.owner()), call)
            .map(|_| ())
    }

    fn revoke(&self, app: &OAuthApp, target: &PlatformTarget) -> Result<(), ProvisionError> {
        let call = Call::Revoke(app.owner().clone(), target_name(target));
        self.record("revoke", (app.project(), app.owner()), call)
            .map(|_| ())
    }

    fn release(&self, app: &OAuthApp) -> Result<(), ProvisionError> {
        let call = Call::Release(app.owner().clone(), app.client_id().to_owned());
        self.record("release", (app.project(), app.owner()), call)
            .map(|_| ())
    }
}

/// A memory store whose commits can be made to fail, as a database that went
/// away between validation and commit, or that lost the answer to a commit.
#[derive(Default)]
struct FlakyStore {
    inner: MemoryStore,
    /// Commits fail: nothing is written.
    down: AtomicBool,
    /// The next commit is applied, then its answer lost.
    lose_after_applying: AtomicBool,
    /// The next commit's answer is lost before it is applied (it is not).
    lose_before_applying: AtomicBool,
    /// Look-ups of lost commits fail.
    lookups_down: AtomicBool,
}

fn lost() -> StoreError {
    StoreError::OutcomeUnknown {
        backend: "flaky",
        message: "connection reset while committing".into(),
    }
}

impl Store for FlakyStore {
    fn backend(&self) -> &'static str {
        "flaky"
    }
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }
    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                backend: "flaky",
                message: "connection reset".into(),
            });
        }
        if self.lose_before_applying.swap(false, Ordering::SeqCst) {
            return Err(lost());
        }
        let committed = self.inner.commit(batch)?;
        if self.lose_after_applying.swap(false, Ordering::SeqCst) {
            return Err(lost());
        }
        Ok(committed)
    }
    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        if self.lookups_down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                backend: "flaky",
                message: "connection refused".into(),
            });
        }
        self.inner.find_commit(token, after)
    }
    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.inner.changes_since(after, limit)
    }
    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        self.inner.get(key)
    }
    fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision()
    }
}

fn registry(recorder: &Recorder) -> Registry {
    Registry::builder().provisioner(recorder.clone()).build().unwrap()
}

/// An OAuth 2.0 client-credentials connection to platform integration
/// `target` of project `acme`.
fn oauth(scope: Option<&str>, name: &str, target: &str, client: OAuthClient) -> ConnectionSpec {
    let builder = match scope {
        None => ConnectionSpec::project("acme", name),
        Some(integration) => ConnectionSpec::integration("acme", integration, name),
    };
    builder
        .platform_target("acme", target)
        .auth(AuthScheme::OAuth2(client))
        .param(Param::plain("ServiceURL").default(format!("https://internal/{target}")))
        .build()
        .unwrap()
}

/// Maps every OAuth parameter of each named connection as `NAME_PARAM`.
fn map_all(integration: &str, names: &[&str]) -> Mappings {
    let mut builder = Mappings::of("acme", integration);
    for name in names {
        let prefix = name.to_uppercase().replace('-', "_");
        builder = builder.by_name(
            *name,
            ["ServiceURL", "ConsumerKey", "ConsumerSecret", "TokenURL"]
                .map(|p| (p.to_owned(), format!("{prefix}_{}", p.to_uppercase()))),
        );
    }
    builder.build().unwrap()
}

fn resolve(registry: &Registry, integration: &str) -> ResolvedEnv {
    registry
        .resolve(&ResolveRequest::parse("acme", integration, "production").unwrap())
        .unwrap()
}

fn expose(env: &ResolvedEnv, var: &str) -> String {
    env.get(var)
        .unwrap_or_else(|| panic!("{var} missing from {env}"))
        .value()
        .expose()
        .to_owned()
}

fn targets(app: &OAuthApp) -> Vec<String> {
    let mut out: Vec<String> = app.grants().iter().map(target_name).collect();
    out.sort();
    out
}

#[test]
fn project_oauth_connections_share_the_project_application() {
    let recorder = Recorder::default();
    let registry = registry(&recorder);
    let names = ["inventory", "billing", "shipping"];
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (id, report) = registry
            .create_connection(oauth(None, name, &format!("{name}-api"), OAuthClient::Shared))
            .unwrap();
        ids.push(id);
        let provisioned = if i == 0 {
            vec![(acme(), AppOwner::Project)]
        } else {
            vec![]
        };
        assert_eq!(
            report.provisioned, provisioned,
            "provisioned with the first connection only"
        );
    }
    registry.set_mappings(map_all("orders", &names), None).unwrap();

    let env = resolve(&registry, "orders");
    for name in ["BILLING", "SHIPPING"] {
        assert_eq!(
            expose(&env, &format!("{name}_CONSUMERKEY")),
            expose(&env, "INVENTORY_CONSUMERKEY")
        );
        assert_eq!(
            expose(&env, &format!("{name}_CONSUMERSECRET")),
            expose(&env, "INVENTORY_CONSUMERSECRET")
        );
        assert_eq!(expose(&env, &format!("{name}_TOKENURL")), TOKEN_URL);
    }
    assert_eq!(expose(&env, "INVENTORY_CONSUMERKEY"), "client-1");
    assert_eq!(expose(&env, "INVENTORY_CONSUMERSECRET"), "secret-1");
    assert!(env.get("SHIPPING_CONSUMERSECRET").unwrap().value().is_secret());
    assert!(!env.get("SHIPPING_CONSUMERKEY").unwrap().value().is_secret());
    assert_eq!(
        expose(&env, "SHIPPING_SERVICEURL"),
        "https://internal/shipping-api"
    );

    // Provenance names the application, not a value layer of the connection.
    let why = env.provenance("BILLING_CONSUMERSECRET").unwrap();
    assert_eq!(
        why.source,
        ValueSource::OAuthApp {
            owner: AppOwner::Project,
            field: AppField::ClientSecret
        }
    );
    assert_eq!(why.connection_id, ids[1]);
    assert!(
        why.to_string()
            .contains("ConsumerSecret of the project application"),
        "{why}"
    );

    // One application, granted the three targets, used by the three connections.
    let info = registry.oauth_app(&acme(), &AppOwner::Project).unwrap();
    let mut users = info.users.clone();
    users.sort();
    ids.sort();
    assert_eq!(users, ids);
    assert_eq!(
        targets(&info.app.value),
        ["acme/billing-api", "acme/inventory-api", "acme/shipping-api"]
    );
    assert_eq!(info.app.value.client_id(), "client-1");
    assert_eq!(
        recorder.calls(),
        vec![
            Call::Provision(AppOwner::Project),
            Call::Grant(AppOwner::Project, "acme/inventory-api".into()),
            Call::Grant(AppOwner::Project, "acme/billing-api".into()),
            Call::Grant(AppOwner::Project, "acme/shipping-api".into()),
        ]
    );
}

#[test]
fn a_rotation_is_seen_by_every_connection_of_the_application_at_once() {
    let recorder = Recorder::default();
    let registry = registry(&recorder);
    let names = ["inventory", "billing", "shipping"];
    for name in names {
        registry
            .create_connection(oauth(None, name, &format!("{name}-api"), OAuthClient::Shared))
            .unwrap();
    }
    registry.set_mappings(map_all("orders", &names), None).unwrap();
    registry
        .set_mappings(map_all("reports", &["billing"]), None)
        .unwrap();
    let before = resolve(&registry, "orders");
    let frozen = registry.view(&acme());

    let report = registry.rotate_app_secret(&acme(), &AppOwner::Project).unwrap();
    assert_eq!(report.rotated, vec![(acme(), AppOwner::Project)]);

    let after = resolve(&registry, "orders");
    let rotated = expose(&after, "INVENTORY_CONSUMERSECRET");
    assert_ne!(rotated, expose(&before, "INVENTORY_CONSUMERSECRET"));
    for name in names {
        let var = format!("{}_CONSUMERSECRET", name.to_uppercase());
        assert_eq!(expose(&after, &var), rotated, "{var} still has the old secret");
        let key = format!("{}_CONSUMERKEY", name.to_uppercase());
        assert_eq!(
            expose(&after, &key),
            expose(&before, &key),
            "the client ID survives rotation"
        );
    }
    assert_eq!(
        expose(&resolve(&registry, "reports"), "BILLING_CONSUMERSECRET"),
        rotated
    );
    // A snapshot taken before the rotation keeps answering consistently.
    let old = frozen
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
        .unwrap();
    assert_eq!(
        expose(&old, "SHIPPING_CONSUMERSECRET"),
        expose(&before, "SHIPPING_CONSUMERSECRET")
    );
    assert!(recorder.calls().contains(&Call::Rotate(AppOwner::Project)));
}

#[test]
fn a_failed_rotation_keeps_the_old_secret() {
    let recorder = Recorder::default();
    let registry = registry(&recorder);
    registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap();
    registry
        .set_mappings(map_all("orders", &["inventory"]), None)
        .unwrap();
    let revision = registry.catalog().revision();
    recorder.fail(Some("rotate"));
    let err = registry
        .rotate_app_secret(&acme(), &AppOwner::Project)
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Provision(ProvisionError { action: "rotate", .. })
        ),
        "{err}"
    );
    assert_eq!(registry.catalog().revision(), revision);
    assert_eq!(
        expose(&resolve(&registry, "orders"), "INVENTORY_CONSUMERSECRET"),
        "secret-1"
    );
    assert!(matches!(
        registry.rotate_app_secret(&acme(), &AppOwner::Integration("orders".parse().unwrap())),
        Err(RegistryError::AppNotFound { .. })
    ));
}

#[test]
fn one_integrations_oauth_connections_share_its_application_unless_dedicated() {
    let recorder = Recorder::default();
    let registry = registry(&recorder);
    let (inventory, _) = registry
        .create_connection(oauth(
            Some("orders"),
            "inventory",
            "inventory-api",
            OAuthClient::Shared,
        ))
        .unwrap();
    let (billing, _) = registry
        .create_connection(oauth(
            Some("orders"),
            "billing",
            "billing-api",
            OAuthClient::Shared,
        ))
        .unwrap();
    let (audit, report) = registry
        .create_connection(oauth(
            Some("orders"),
            "audit",
            "audit-api",
            OAuthClient::Dedicated,
        ))
        .unwrap();
    assert_eq!(report.provisioned, vec![(acme(), AppOwner::Connection(audit))]);
    // A project connection in the same project uses yet another application.
    registry
        .create_connection(oauth(None, "shipping", "shipping-api", OAuthClient::Shared))
        .unwrap();
    registry
        .set_mappings(
            map_all("orders", &["inventory", "billing", "audit", "shipping"]),
            None,
        )
        .unwrap();

    let env = resolve(&registry, "orders");
    assert_eq!(
        expose(&env, "INVENTORY_CONSUMERKEY"),
        expose(&env, "BILLING_CONSUMERKEY")
    );
    assert_eq!(
        expose(&env, "INVENTORY_CONSUMERSECRET"),
        expose(&env, "BILLING_CONSUMERSECRET")
    );
    for other in ["AUDIT", "SHIPPING"] {
        assert_ne!(
            expose(&env, &format!("{other}_CONSUMERKEY")),
            expose(&env, "INVENTORY_CONSUMERKEY")
        );
        assert_ne!(
            expose(&env, &format!("{other}_CONSUMERSECRET")),
            expose(&env, "INVENTORY_CONSUMERSECRET")
        );
    }
    let orders_app = AppOwner::Integration("orders".parse().unwrap());
    let owner_of = |var: &str| match &env.provenance(var).unwrap().source {
        ValueSource::OAuthApp { owner, .. } => owner.clone(),
        other => panic!("{var} comes from {other}"),
    };
    assert_eq!(owner_of("BILLING_CONSUMERSECRET"), orders_app);
    assert_eq!(owner_of("AUDIT_CONSUMERSECRET"), AppOwner::Connection(audit));
    assert_eq!(owner_of("SHIPPING_CONSUMERSECRET"), AppOwner::Project);

    let shared = registry.oauth_app(&acme(), &orders_app).unwrap();
    assert_eq!(
        targets(&shared.app.value),
        ["acme/billing-api", "acme/inventory-api"]
    );
    let mut users = shared.users.clone();
    users.sort();
    let mut expected = vec![inventory, billing];
    expected.sort();
    assert_eq!(users, expected);
    let dedicated = registry.oauth_app(&acme(), &AppOwner::Connection(audit)).unwrap();
    assert_eq!(dedicated.users, vec![audit]);
    assert_eq!(targets(&dedicated.app.value), ["acme/audit-api"]);

    // The stored connection refers to its application; it holds no copy of the
    // client, so it serializes without any secret codec.
    let stored = registry.connection(&acme(), billing).unwrap().value;
    assert_eq!(stored.oauth_app(), Some(&orders_app));
    assert!(APP_PARAMS.iter().all(|p| stored.spec().param(p).is_none()));
    let json = serde_json::to_string(&*stored).unwrap();
    assert!(!json.contains(&expose(&env, "BILLING_CONSUMERSECRET")), "{json}");
}

#[test]
fn default_variable_names_include_the_application_parameters() {
    let registry = Registry::builder()
        .prefix("CHOREO".parse().unwrap())
        .build()
        .unwrap();
    registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name_defaults("inventory")
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let env = resolve(&registry, "orders");
    let names: Vec<&str> = env.iter().map(|v| v.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "CHOREO_INVENTORY_SERVICEURL",
            "CHOREO_INVENTORY_CONSUMERKEY",
            "CHOREO_INVENTORY_CONSUMERSECRET",
            "CHOREO_INVENTORY_TOKENURL"
        ]
    );
    // The default local provisioner issues long random credentials.
    assert_eq!(expose(&env, "CHOREO_INVENTORY_CONSUMERKEY").len(), 24);
    assert_eq!(expose(&env, "CHOREO_INVENTORY_CONSUMERSECRET").len(), 48);
}

#[test]
fn a_supplied_client_is_the_connections_own_and_provisions_nothing() {
    let recorder = Recorder::default();
    let registry = registry(&recorder);
    let (_, report) = registry
        .create_connection(
            ConnectionSpec::project("acme", "salesforce")
                .target(Target::external("salesforce"))
                .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
                .param(
                    Param::plain("AuthorizeURL")
                        .default("https://login.salesforce.com/services/oauth2/authorize"),
                )
                .param(Param::plain("TokenURL").default("https://login.salesforce.com/services/oauth2/token"))
                .param(Param::plain("ClientID").default("sf-client"))
                .param(Param::secret("ClientSecret").default("sf-secret"))
                .param(Param::plain("Scopes").optional())
                .build()
                .unwrap(),
        )
        .unwrap();
    assert!(report.provisioned.is_empty());
    assert!(recorder.calls().is_empty());
    assert!(registry.snapshot(&acme()).unwrap().apps().next().is_none());
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name(
                    "salesforce",
                    [("ClientID", "SF_CLIENT_ID"), ("ClientSecret", "SF_CLIENT_SECRET")],
                )
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    let env = resolve(&registry, "orders");
    assert_eq!(expose(&env, "SF_CLIENT_ID"), "sf-client");
    assert_eq!(expose(&env, "SF_CLIENT_SECRET"), "sf-secret");
    assert_eq!(
        env.provenance("SF_CLIENT_SECRET").unwrap().source,
        ValueSource::Layer(Layer::Default)
    );
}

#[test]
fn the_application_is_released_with_its_last_connection_and_not_before() {
    let recorder = Recorder::default();
    let registry = registry(&recorder);
    let (inventory, _) = registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap();
    let (billing, _) = registry
        .create_connection(oauth(None, "billing", "billing-api", OAuthClient::Shared))
        .unwrap();
    recorder.clear();

    let version = registry.connection(&acme(), inventory).unwrap().version;
    let report = registry
        .delete_connection(&acme(), inventory, version, DeleteMode::Refuse)
        .unwrap();
    assert!(report.released.is_empty());
    let info = registry.oauth_app(&acme(), &AppOwner::Project).unwrap();
    assert_eq!(info.users, vec![billing]);
    assert_eq!(
        targets(&info.app.value),
        ["acme/billing-api"],
        "the unused grant is dropped"
    );
    assert_eq!(
        recorder.calls(),
        vec![Call::Revoke(AppOwner::Project, "acme/inventory-api".into())],
        "the application stays while billing uses it"
    );

    recorder.clear();
    let version = registry.connection(&acme(), billing).unwrap().version;
    let report = registry
        .delete_connection(&acme(), billing, version, DeleteMode::Refuse)
        .unwrap();
    assert_eq!(report.released, vec![(acme(), AppOwner::Project)]);
    assert!(registry.oauth_app(&acme(), &AppOwner::Project).is_none());
    assert_eq!(
        recorder.calls(),
        vec![Call::Release(AppOwner::Project, "client-1".into())]
    );
    // Connection and application went in one write.
    assert_eq!(report.revision, registry.catalog().revision());
    assert!(
        registry
            .store()
            .get(&RecordKey::OAuthApp(acme(), AppOwner::Project))
            .unwrap()
            .is_none()
    );

    // The next OAuth connection gets a fresh application.
    recorder.clear();
    let (_, report) = registry
        .create_connection(oauth(None, "shipping", "shipping-api", OAuthClient::Shared))
        .unwrap();
    assert_eq!(report.provisioned, vec![(acme(), AppOwner::Project)]);
    let fresh = registry.oauth_app(&acme(), &AppOwner::Project).unwrap();
    assert_ne!(fresh.app.value.client_id(), "client-1");
}

#[test]
fn a_dedicated_application_goes_with_its_connection() {
    let recorder = Recorder::default();
    let registry = registry(&recorder);
    let (audit, _) = registry
        .create_connection(oauth(
            Some("orders"),
            "audit",
            "audit-api",
            OAuthClient::Dedicated,
        ))
        .unwrap();
    let version = registry.connection(&acme(), audit).unwrap().version;
    let report = registry
        .delete_connection(&acme(), audit, version, DeleteMode::Refuse)
        .unwrap();
    assert_eq!(report.released, vec![(acme(), AppOwner::Connection(audit))]);
    assert!(
        recorder
            .calls()
            .contains(&Call::Release(AppOwner::Connection(audit), "client-1".into()))
    );
}

#[test]
fn moving_the_last_connection_off_the_application_releases_it() {
    let recorder = Recorder::default();
    let registry = registry(&recorder);
    let (id, _) = registry
        .create_connection(oauth(
            Some("orders"),
            "inventory",
            "inventory-api",
            OAuthClient::Shared,
        ))
        .unwrap();
    let version = registry.connection(&acme(), id).unwrap().version;
    // From the integration's shared application to a dedicated one.
    let report = registry
        .update_connection(
            id,
            version,
            oauth(
                Some("orders"),
                "inventory",
                "inventory-api",
                OAuthClient::Dedicated,
            ),
        )
        .unwrap();
    let orders_app = AppOwner::Integration("orders".parse().unwrap());
    assert_eq!(report.provisioned, vec![(acme(), AppOwner::Connection(id))]);
    assert_eq!(report.released, vec![(acme(), orders_app.clone())]);
    assert!(registry.oauth_app(&acme(), &orders_app).is_none());
    assert_eq!(
        registry.connection(&acme(), id).unwrap().value.oauth_app(),
        Some(&AppOwner::Connection(id))
    );
}

#[test]
fn a_failing_provisioner_aborts_the_write_with_nothing_stored() {
    let recorder = Recorder::default();
    let registry = registry(&recorder);
    recorder.fail(Some("provision"));
    let revision = registry.store().revision().unwrap();

    // A batch: a plain connection, then an OAuth one whose provisioning fails.
    let err = registry
        .write(|tx| {
            tx.create_connection(
                ConnectionSpec::project("acme", "twilio")
                    .param(Param::plain("ServiceURL").default("https://api.twilio.com"))
                    .build()?,
            )?;
            tx.create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        })
        .unwrap_err();
    match &err {
        RegistryError::Provision(e) => {
            assert_eq!(e.action, "provision");
            assert_eq!(e.owner, AppOwner::Project);
        }
        other => panic!("expected a provisioner error, got {other}"),
    }
    assert_eq!(registry.store().revision().unwrap(), revision);
    assert_eq!(registry.store().load().unwrap().records.len(), 0);
    assert!(
        registry
            .snapshot(&acme())
            .is_none_or(|s| s.connection_count() == 0)
    );

    // A grant that fails aborts too, and leaves the application as it was.
    recorder.fail(None);
    registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap();
    let before = registry.oauth_app(&acme(), &AppOwner::Project).unwrap();
    let revision = registry.store().revision().unwrap();
    recorder.fail(Some("grant"));
    let err = registry
        .create_connection(oauth(None, "billing", "billing-api", OAuthClient::Shared))
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::Provision(ProvisionError { action: "grant", .. })
        ),
        "{err}"
    );
    assert_eq!(registry.store().revision().unwrap(), revision);
    let after = registry.oauth_app(&acme(), &AppOwner::Project).unwrap();
    assert_eq!(after.app.version, before.app.version);
    assert_eq!(targets(&after.app.value), ["acme/inventory-api"]);
    assert_eq!(registry.snapshot(&acme()).unwrap().connection_count(), 1);
}

#[test]
fn a_failed_commit_releases_what_was_provisioned_for_it() {
    let recorder = Recorder::default();
    let store = Arc::new(FlakyStore::default());
    let registry = Registry::builder()
        .shared_store(store.clone())
        .provisioner(recorder.clone())
        .build()
        .unwrap();

    store.down.store(true, Ordering::SeqCst);
    let err = registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::Store(StoreError::Unavailable { .. })),
        "{err}"
    );
    assert_eq!(
        recorder.calls(),
        vec![
            Call::Provision(AppOwner::Project),
            Call::Grant(AppOwner::Project, "acme/inventory-api".into()),
            Call::Release(AppOwner::Project, "client-1".into()),
        ],
        "the application provisioned for the failed write is released again"
    );
    assert!(registry.oauth_app(&acme(), &AppOwner::Project).is_none());

    // A grant issued on an existing application for a failed write is revoked.
    store.down.store(false, Ordering::SeqCst);
    registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap();
    recorder.clear();
    store.down.store(true, Ordering::SeqCst);
    registry
        .create_connection(oauth(None, "billing", "billing-api", OAuthClient::Shared))
        .unwrap_err();
    assert_eq!(
        recorder.calls(),
        vec![
            Call::Grant(AppOwner::Project, "acme/billing-api".into()),
            Call::Revoke(AppOwner::Project, "acme/billing-api".into()),
        ]
    );
    let app = registry.oauth_app(&acme(), &AppOwner::Project).unwrap();
    assert_eq!(targets(&app.app.value), ["acme/inventory-api"]);
}

fn flaky(recorder: &Recorder) -> (Arc<FlakyStore>, Registry) {
    let store = Arc::new(FlakyStore::default());
    let registry = Registry::builder()
        .shared_store(store.clone())
        .provisioner(recorder.clone())
        .build()
        .unwrap();
    (store, registry)
}

/// The OAuth client ID a registry loading `store` anew resolves for
/// `orders`' mapping of connection `inventory`.
fn client_id_seen_afresh(store: &Arc<FlakyStore>) -> String {
    let fresh = Registry::builder().shared_store(store.clone()).build().unwrap();
    fresh
        .set_mappings(map_all("orders", &["inventory"]), None)
        .unwrap();
    expose(&resolve(&fresh, "orders"), "INVENTORY_CONSUMERKEY")
}

/// The commit applied but its answer was lost (as when the connection drops
/// during COMMIT). The registry looks the batch up before undoing anything:
/// it was applied, so the write succeeds and the application it provisioned
/// stays, provisioned once and in use.
#[test]
fn a_commit_whose_answer_is_lost_after_it_applied_keeps_its_application() {
    let recorder = Recorder::default();
    let (store, registry) = flaky(&recorder);
    store.lose_after_applying.store(true, Ordering::SeqCst);
    let (id, report) = registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap();
    assert_eq!(report.provisioned, vec![(acme(), AppOwner::Project)]);
    assert_eq!(
        recorder.calls(),
        vec![
            Call::Provision(AppOwner::Project),
            Call::Grant(AppOwner::Project, "acme/inventory-api".into()),
        ],
        "nothing released"
    );
    assert_eq!(
        registry.oauth_app(&acme(), &AppOwner::Project).unwrap().users,
        vec![id]
    );
    assert_eq!(store.revision().unwrap(), Revision(1), "committed once");
    assert_eq!(client_id_seen_afresh(&store), "client-1");
}

/// The answer was lost before the batch applied: the look-up says so, and
/// the registry commits the same batch again; the application is provisioned
/// once and in use.
#[test]
fn a_commit_whose_answer_is_lost_before_it_applied_is_committed_again() {
    let recorder = Recorder::default();
    let (store, registry) = flaky(&recorder);
    store.lose_before_applying.store(true, Ordering::SeqCst);
    let (id, _) = registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap();
    assert_eq!(
        recorder.calls(),
        vec![
            Call::Provision(AppOwner::Project),
            Call::Grant(AppOwner::Project, "acme/inventory-api".into()),
        ]
    );
    assert_eq!(
        registry.oauth_app(&acme(), &AppOwner::Project).unwrap().users,
        vec![id]
    );
    assert_eq!(store.revision().unwrap(), Revision(1));
    assert_eq!(client_id_seen_afresh(&store), "client-1");
}

/// When the lost commit cannot be looked up either, the write answers
/// `OutcomeUnknown` and nothing is released. The next write finds out: the
/// batch had applied, so the application stays in use, and a retry of the
/// create is checked against it (the name is taken): one application,
/// provisioned once, in use.
#[test]
fn an_unknown_outcome_undoes_nothing_until_it_is_known_to_have_applied() {
    let recorder = Recorder::default();
    let (store, registry) = flaky(&recorder);
    store.lose_after_applying.store(true, Ordering::SeqCst);
    store.lookups_down.store(true, Ordering::SeqCst);
    let err = registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap_err();
    let RegistryError::OutcomeUnknown { token, kept, .. } = &err else {
        panic!("expected an unknown outcome, got {err}");
    };
    assert_eq!(kept, &vec![(acme(), AppOwner::Project)]);
    assert!(err.is_retryable());
    assert_eq!(registry.unsettled(), vec![*token]);
    assert!(!recorder.calls().iter().any(|c| matches!(c, Call::Release(..))));

    store.lookups_down.store(false, Ordering::SeqCst);
    let err = registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap_err();
    assert!(matches!(err, RegistryError::NameTaken { .. }), "{err}");
    let report = registry.settle();
    assert!(report.released.is_empty() && report.warnings.is_empty());
    assert!(registry.unsettled().is_empty());
    assert_eq!(
        recorder.calls(),
        vec![
            Call::Provision(AppOwner::Project),
            Call::Grant(AppOwner::Project, "acme/inventory-api".into()),
        ]
    );
    assert_eq!(client_id_seen_afresh(&store), "client-1");
}

/// The same, but the batch had not applied: once that is known (here at the
/// next write), what was provisioned for it is released, and the report of
/// that write says so.
#[test]
fn an_unknown_outcome_is_undone_once_it_is_known_not_to_have_applied() {
    let recorder = Recorder::default();
    let (store, registry) = flaky(&recorder);
    store.lose_before_applying.store(true, Ordering::SeqCst);
    store.lookups_down.store(true, Ordering::SeqCst);
    let err = registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap_err();
    assert!(matches!(err, RegistryError::OutcomeUnknown { .. }), "{err}");
    assert!(!recorder.calls().iter().any(|c| matches!(c, Call::Release(..))));

    store.lookups_down.store(false, Ordering::SeqCst);
    let (_, report) = registry
        .create_connection(ConnectionSpec::project("acme", "plain").build().unwrap())
        .unwrap();
    assert_eq!(report.released, vec![(acme(), AppOwner::Project)]);
    assert!(registry.unsettled().is_empty());
    assert_eq!(
        recorder.calls().last(),
        Some(&Call::Release(AppOwner::Project, "client-1".into()))
    );
    assert!(registry.oauth_app(&acme(), &AppOwner::Project).is_none());
}

/// A failed write whose provisioner work cannot be undone says so: the
/// error carries the write's own error and every failed release or
/// revocation.
#[test]
fn a_compensation_that_fails_is_reported_with_the_error() {
    let recorder = Recorder::default();
    let (store, registry) = flaky(&recorder);
    store.down.store(true, Ordering::SeqCst);
    recorder.fail(Some("release"));
    let err = registry
        .create_connection(oauth(None, "inventory", "inventory-api", OAuthClient::Shared))
        .unwrap_err();
    match &err {
        RegistryError::CompensationFailed { error, failures } => {
            assert!(
                matches!(**error, RegistryError::Store(StoreError::Unavailable { .. })),
                "{error}"
            );
            assert_eq!(failures.len(), 1);
            assert_eq!(
                (failures[0].action, &failures[0].owner),
                ("release", &AppOwner::Project)
            );
        }
        other => panic!("expected a failed compensation, got {other}"),
    }
    assert!(err.is_retryable(), "retryable as the write's own error is");
    assert!(err.to_string().contains("release"), "{err}");
}
