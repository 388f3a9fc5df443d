//! Connection types and templates across replicas: two registries on one
//! durable store (two handles on one SQLite file, two connections to one
//! PostgreSQL database). A type or template change on one and a write of a
//! connection following it on the other, each validated against the old
//! state of the other, never both commit: the second conflicts and, retried,
//! is refused with the typed error. The stored connection always fits its
//! stored type and template.
//!
//! The interleaving is forced rather than hoped for: the losing side's store
//! handle runs the winner's whole write after the loser has validated its
//! batch and before it commits it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use connective::model::{ConnectionTemplate, Layer, TemplateField, TypeProblem};
use connective::model::{Record, RecordKey, Revision, Version as RecordVersion};
use connective::prelude::*;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{
    Batch, Change, CommitToken, Committed, PostgresStore, Snapshot, SqliteStore, Store, StoreError,
};
use connective::test_kit;

fn ring() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("k1", &[7; 32]).expect("key"))
}

type Hook = Box<dyn FnOnce() + Send>;

/// A store handle that, once armed, runs a hook just before forwarding its
/// next commit: another registry's write lands between this registry's
/// validation and its commit.
struct Interposed {
    inner: Arc<dyn Store>,
    hook: Mutex<Option<Hook>>,
}

impl Interposed {
    fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Interposed {
            inner,
            hook: Mutex::new(None),
        })
    }

    fn arm(&self, hook: impl FnOnce() + Send + 'static) {
        *self.hook.lock().expect("hook") = Some(Box::new(hook));
    }
}

impl Store for Interposed {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }

    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        let hook = self.hook.lock().expect("hook").take();
        if let Some(hook) = hook {
            hook();
        }
        self.inner.commit(batch)
    }

    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        self.inner.find_commit(token, after)
    }

    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.inner.changes_since(after, limit)
    }

    fn get(&self, key: &RecordKey) -> Result<Option<(RecordVersion, Record)>, StoreError> {
        self.inner.get(key)
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision()
    }

    fn wait_for_change(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
        self.inner.wait_for_change(after, timeout)
    }
}

fn smtp_type(min_port: i64) -> ConnectionType {
    ConnectionType::builder("smtp")
        .field(Field::string("HostName"))
        .field(Field::integer("Port").range(min_port, 65535))
        .build()
        .expect("type")
}

fn mailer(project: &ProjectId) -> ConnectionSpec {
    ConnectionSpec::project(project.clone(), "mailer")
        .of_type(&smtp_type(1))
        .value("HostName", Layer::Default, "db.internal")
        .value("Port", Layer::Default, "5432")
        .build()
        .expect("spec")
}

fn slack_type() -> ConnectionType {
    ConnectionType::builder("slack-oauth2")
        .field(Field::string("ClientID"))
        .field(Field::string("Scopes"))
        .build()
        .expect("type")
}

/// The organization's Slack app; `Scopes` may be overridden or not.
fn slack_app(project: &ProjectId, scopes: Overridable) -> ConnectionTemplate {
    let field = TemplateField::plain("Scopes").default("chat:write");
    let field = match scopes {
        Overridable::Yes => field.overridable(),
        Overridable::No => field,
    };
    ConnectionTemplate::builder(project.clone(), "acme-slack", "slack-oauth2")
        .field(TemplateField::plain("ClientID").default("acme-client").hidden())
        .field(field)
        .build()
        .expect("template")
}

#[derive(Debug, Clone, Copy)]
enum Overridable {
    Yes,
    No,
}

/// What races: a type or template write against a connection write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Race {
    /// Port's range tightened to 1024.. against Port set to 80.
    TypeTightened,
    /// Scopes locked by the template against Scopes overridden.
    TemplateLocked,
}

/// Registries `a` (the definition writer) and `b` (the connection writer),
/// each on an interposed handle of its own.
struct Replicas {
    a: Arc<Registry>,
    a_store: Arc<Interposed>,
    b: Arc<Registry>,
    b_store: Arc<Interposed>,
    open: Box<dyn Fn() -> Arc<dyn Store>>,
}

impl Replicas {
    fn new(open: impl Fn() -> Arc<dyn Store> + 'static) -> Self {
        let registry = |store: &Arc<Interposed>| {
            Arc::new(
                Registry::builder()
                    .shared_store(Arc::clone(store) as Arc<dyn Store>)
                    .build()
                    .expect("registry"),
            )
        };
        let (a_store, b_store) = (Interposed::new(open()), Interposed::new(open()));
        Replicas {
            a: registry(&a_store),
            b: registry(&b_store),
            a_store,
            b_store,
            open: Box::new(open),
        }
    }

    /// Sets up `race` in a project of its own; returns the project and the
    /// connection's ID.
    fn setup(&self, race: Race) -> (ProjectId, ConnectionId) {
        let project = test_kit::unique_project("typed");
        let spec = match race {
            Race::TypeTightened => {
                self.a.put_type(&project, smtp_type(1), None).expect("type");
                mailer(&project)
            }
            Race::TemplateLocked => {
                self.a.put_type(&project, slack_type(), None).expect("type");
                self.a
                    .put_template(slack_app(&project, Overridable::Yes), None)
                    .expect("template");
                ConnectionSpec::project(project.clone(), "slack")
                    .of_template(&slack_type(), &slack_app(&project, Overridable::Yes))
                    .build()
                    .expect("spec")
            }
        };
        let (id, _) = self.a.create_connection(spec).expect("connection");
        self.b.sync().expect("b syncs");
        (project, id)
    }
}

/// The definition write of `race`, on `registry`.
fn define(registry: &Registry, project: &ProjectId, race: Race) -> Result<(), RegistryError> {
    match race {
        Race::TypeTightened => {
            let version = registry
                .project_type(project, &"smtp".parse().expect("name"))
                .expect("type")
                .version;
            registry.put_type(project, smtp_type(1024), Some(version))
        }
        Race::TemplateLocked => {
            let version = registry
                .template(project, &"acme-slack".parse().expect("name"))
                .expect("template")
                .version;
            registry.put_template(slack_app(project, Overridable::No), Some(version))
        }
    }
    .map(drop)
}

/// The connection write of `race`, on `registry`.
fn edit(registry: &Registry, project: &ProjectId, id: ConnectionId, race: Race) -> Result<(), RegistryError> {
    let version = registry.connection(project, id).expect("connection").version;
    let (param, value) = match race {
        Race::TypeTightened => ("Port", "80"),
        Race::TemplateLocked => ("Scopes", "chat:write,users:read"),
    };
    registry
        .set_value(
            project,
            id,
            version,
            &param.parse().expect("param"),
            Layer::Default,
            value,
        )
        .map(drop)
}

fn assert_refused_by_type(race: Race, e: &RegistryError) {
    let RegistryError::Type(e) = e else {
        panic!("{race:?}: expected a type error, got {e}");
    };
    let expected = match race {
        Race::TypeTightened => e
            .problems
            .iter()
            .any(|p| matches!(p, TypeProblem::BadValue { field, .. } if field.as_str() == "Port")),
        Race::TemplateLocked => e
            .problems
            .iter()
            .any(|p| matches!(p, TypeProblem::LockedByTemplate { field } if field.as_str() == "Scopes")),
    };
    assert!(expected, "{race:?}: {e}");
}

/// What a registry loading the store anew finds: the connection fits its
/// type and template.
fn assert_stored_state_fits(replicas: &Replicas, project: &ProjectId, id: ConnectionId, race: Race) {
    let fresh = Registry::builder()
        .shared_store((replicas.open)())
        .build()
        .expect("fresh registry");
    let connection = fresh.connection(project, id).expect("connection");
    let spec = connection.value.spec();
    let ty = fresh
        .connection_type(project, spec.connection_type().expect("typed"))
        .expect("type");
    let template = spec
        .template()
        .map(|name| fresh.template(project, name).expect("template").value);
    if let Err(e) = ty.check_connection(spec, template.as_deref()) {
        panic!("{race:?}: the stored connection does not fit its stored type: {e}");
    }
}

fn races_on(open: impl Fn() -> Arc<dyn Store> + 'static) {
    let replicas = Replicas::new(open);
    for race in [Race::TypeTightened, Race::TemplateLocked] {
        // The connection write validates first; the definition commits
        // before it: the connection write conflicts, then is refused.
        let (project, id) = replicas.setup(race);
        let (a, p) = (Arc::clone(&replicas.a), project.clone());
        replicas
            .b_store
            .arm(move || define(&a, &p, race).expect("the definition commits first"));
        let lost = edit(&replicas.b, &project, id, race).expect_err("the connection write must conflict");
        assert!(lost.is_retryable(), "{race:?}: {lost}");
        let again = edit(&replicas.b, &project, id, race).expect_err("refused on retry");
        assert_refused_by_type(race, &again);
        assert_stored_state_fits(&replicas, &project, id, race);

        // The definition validates first; the connection write commits
        // before it: the definition conflicts, then is refused.
        let (project, id) = replicas.setup(race);
        let (b, p) = (Arc::clone(&replicas.b), project.clone());
        replicas
            .a_store
            .arm(move || edit(&b, &p, id, race).expect("the connection write commits first"));
        let lost = define(&replicas.a, &project, race).expect_err("the definition must conflict");
        assert!(lost.is_retryable(), "{race:?}: {lost}");
        let again = define(&replicas.a, &project, race).expect_err("refused on retry");
        assert_refused_by_type(race, &again);
        assert_stored_state_fits(&replicas, &project, id, race);
    }
}

#[test]
fn type_and_template_changes_racing_connection_writes_on_one_sqlite_file_leave_no_misfit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("typed.db");
    races_on(move || Arc::new(SqliteStore::open(&path, ring()).expect("open")));
}

#[test]
fn type_and_template_changes_racing_connection_writes_on_one_postgres_database_leave_no_misfit() {
    let Some(db) = test_kit::postgres::database("typed_race") else {
        return;
    };
    let url = db.connection_string();
    races_on(move || Arc::new(PostgresStore::connect(&url, ring()).expect("connect")));
}
