//! A write transaction: computed in memory, committed as one atomic batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use indexmap::IndexMap;

use super::{DeleteMode, Rebinding, Registry, RegistryError, WriteReport};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    AppOwner, Connection, ConnectionId, ConnectionName, ConnectionRef, ConnectionSpec, Mappings, OAuthApp,
    PlatformTarget, ProjectId, Record, RecordKey, ReferenceFence, ResolvePolicy, Version,
};
use crate::oauth::ledger::{AppBook, AppLedger, platform_target};
use crate::oauth::{OAuthProvisioner, app_owner_for};
use crate::resolve::{Problem, ProjectView};
use crate::store::{Batch, CommitToken, Expect, Op, Write};

/// A change to a connection, for [`Tx::working_for`]: its ID, and the
/// store key the change will write, if known.
type Change<'k> = (ConnectionId, Option<&'k RecordKey>);

struct Pending {
    expect: Expect,
    record: Option<Record>,
}

/// The writes of one [`Registry::write`] call. Every method validates against
/// the registry's catalog plus this transaction's earlier writes; nothing is
/// stored until the closure returns `Ok`, and then all of it is, atomically.
pub struct Tx<'r> {
    pub(super) registry: &'r Registry,
    /// The registry's provisioner, or a dry run's stand-in.
    provisioner: Arc<dyn OAuthProvisioner>,
    base: HashMap<ProjectId, Option<Arc<ProjectSnapshot>>>,
    /// Boxed: a snapshot is some 300 bytes, and a table of them would be an
    /// allocation past glibc's small sizes on every write (slower to find,
    /// and it makes `malloc` consolidate freed chunks first).
    working: HashMap<ProjectId, Box<ProjectSnapshot>>,
    pending: IndexMap<RecordKey, Pending>,
    /// What the provisioner did and is still to do for this write.
    pub(super) work: AppLedger,
    /// Connections written here, by (project, name) and by ID: the mappings
    /// that refer to them are re-checked before the commit.
    touched_names: HashSet<(ProjectId, ConnectionName)>,
    touched_ids: HashSet<ConnectionId>,
    /// Whether a forced delete allows references to stop resolving.
    forced: bool,
    /// Types whose connections and templates are checked against them
    /// before the commit: those written here, and those of templates
    /// written here.
    pub(super) retyped: Vec<(ProjectId, crate::model::TypeName)>,
    pub(super) report: WriteReport,
}

/// The ledger's view of the applications: this transaction's records.
impl AppBook for Tx<'_> {
    fn app(&mut self, project: &ProjectId, owner: &AppOwner) -> Option<Arc<OAuthApp>> {
        self.working_mut(project).app(owner).map(|a| a.value.clone())
    }

    fn app_users(&mut self, project: &ProjectId, owner: &AppOwner) -> Vec<Arc<Connection>> {
        self.working_mut(project)
            .app_users(owner)
            .into_iter()
            .map(|c| Arc::clone(&c.value))
            .collect()
    }

    fn put_app(&mut self, app: OAuthApp) {
        self.put(Record::OAuthApp(Arc::new(app)));
    }

    fn delete_app(&mut self, project: &ProjectId, owner: &AppOwner) {
        self.delete(RecordKey::OAuthApp(project.clone(), owner.clone()));
    }
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("pending", &self.pending.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Whether a mapping check could tell `old` and `new` apart: `true` when only
/// values and descriptions differ. Everything else (key, OAuth application,
/// target, authentication, the parameters' names, order, kinds, requirements
/// and tenancy) counts, which is more than a mapping check reads today.
fn same_mapping_surface(old: &Connection, new: &Connection) -> bool {
    let (a, b) = (old.spec(), new.spec());
    old.key() == new.key()
        && old.oauth_app() == new.oauth_app()
        && a.target() == b.target()
        && a.auth() == b.auth()
        && a.params().len() == b.params().len()
        && a.params().iter().zip(b.params()).all(|(p, q)| {
            p.name() == q.name()
                && p.kind() == q.kind()
                && p.requirement() == q.requirement()
                && p.tenancy() == q.tenancy()
        })
}

impl<'r> Tx<'r> {
    pub(super) fn new(registry: &'r Registry, provisioner: Arc<dyn OAuthProvisioner>) -> Self {
        Tx {
            registry,
            provisioner,
            base: HashMap::new(),
            working: HashMap::new(),
            pending: IndexMap::new(),
            work: AppLedger::default(),
            touched_names: HashSet::new(),
            touched_ids: HashSet::new(),
            forced: false,
            retyped: Vec::new(),
            report: WriteReport::default(),
        }
    }

    /// This transaction's view of a project: the catalog's snapshot plus the
    /// writes made so far (copied on first touch: O(project)).
    pub fn project(&mut self, project: &ProjectId) -> &ProjectSnapshot {
        self.working_mut(project)
    }

    /// Refuses to write to a project with records this registry cannot read.
    pub(super) fn writable(&mut self, project: &ProjectId) -> Result<(), RegistryError> {
        let unreadable = self.working_mut(project).unreadable();
        if unreadable.is_empty() {
            Ok(())
        } else {
            Err(RegistryError::ProjectUnreadable {
                project: project.clone(),
                records: unreadable.to_vec(),
            })
        }
    }

    /// The same check over every project this transaction writes to (free
    /// when no project it touched has unreadable records), and that no
    /// record it writes is at its last version ([`Version::MAX`]: the
    /// store would refuse it too, after provisioning).
    pub(super) fn check_writable(&self) -> Result<(), RegistryError> {
        for (key, p) in &self.pending {
            if let Expect::Version(v) = p.expect
                && v.next().is_none()
            {
                return Err(RegistryError::LastVersion {
                    key: key.clone(),
                    version: v,
                });
            }
        }
        for (project, snapshot) in &self.working {
            if !snapshot.unreadable().is_empty() && self.pending.keys().any(|k| k.project() == project) {
                return Err(RegistryError::ProjectUnreadable {
                    project: project.clone(),
                    records: snapshot.unreadable().to_vec(),
                });
            }
        }
        Ok(())
    }

    pub(super) fn working_mut(&mut self, project: &ProjectId) -> &mut ProjectSnapshot {
        self.working_for(project, None)
    }

    /// [`Tx::working_mut`] for a change to connection `id` (if given): on
    /// first touch the catalog reads ahead what the change will need (see
    /// `Catalog::project_for_change`), and, given the key the change will
    /// write, the store reads its entry under that key ahead meanwhile
    /// ([`Store::read_ahead_with`](crate::store::Store::read_ahead_with)).
    fn working_for(&mut self, project: &ProjectId, change: Option<Change<'_>>) -> &mut ProjectSnapshot {
        let (registry, base) = (self.registry, &mut self.base);
        self.working.entry(project.clone()).or_insert_with(|| {
            let snapshot = match change {
                Some((id, Some(key))) => registry
                    .catalog
                    .project_for_change(project, id, |warm| registry.store.read_ahead_with(key, warm)),
                Some((id, None)) => registry.catalog.project_for_change(project, id, |warm| warm()),
                None => registry.catalog.project(project),
            };
            let copy = snapshot
                .as_deref()
                .cloned()
                .unwrap_or_else(|| ProjectSnapshot::empty(project.clone()));
            base.insert(project.clone(), snapshot);
            Box::new(copy)
        })
    }

    /// This transaction's view of a project under the registry's policy:
    /// [`Tx::project`] as resolution reads it (which connection a reference
    /// finds, what a mapping check says).
    pub fn view(&mut self, project: &ProjectId) -> ProjectView<&ProjectSnapshot, &ResolvePolicy> {
        let policy = self.registry.catalog.policy();
        ProjectView::of(self.working_mut(project), policy)
    }

    pub(super) fn put(&mut self, record: Record) {
        let key = record.key();
        self.touch(&key, &record);
        let snapshot = self.working_mut(key.project());
        let current = snapshot.version_under(&record);
        // A key at its last version is refused before the commit
        // (`check_writable`).
        let next = current.map_or(Some(Version::FIRST), Version::next);
        snapshot.put(next.unwrap_or(Version::MAX), &record);
        let expect = current.map_or(Expect::Absent, Expect::Version);
        match self.pending.get_mut(&key) {
            Some(p) => p.record = Some(record),
            None => {
                self.pending.insert(
                    key,
                    Pending {
                        expect,
                        record: Some(record),
                    },
                );
            }
        }
    }

    pub(super) fn delete(&mut self, key: RecordKey) {
        if let RecordKey::Connection(project, _, name) = &key {
            self.touched_names.insert((project.clone(), name.clone()));
        }
        let snapshot = self.working_mut(key.project());
        let current = snapshot.version_of(&key);
        snapshot.remove(&key);
        match self.pending.get_mut(&key) {
            // Created and deleted in this transaction: nothing to store.
            Some(p) if p.expect == Expect::Absent => {
                self.pending.shift_remove(&key);
            }
            Some(p) => p.record = None,
            None => {
                if let Some(v) = current {
                    self.pending.insert(
                        key,
                        Pending {
                            expect: Expect::Version(v),
                            record: None,
                        },
                    );
                }
            }
        }
    }

    /// Whether this transaction writes `key`.
    pub(super) fn has_pending(&self, key: &RecordKey) -> bool {
        self.pending.contains_key(key)
    }

    /// Rewrites the reference fence guarding `name` in `project`, once per
    /// transaction and fence, expecting the version this registry's catalog
    /// holds: a concurrent write about a name of the same stripe then makes
    /// one of the two conflict (see "Across replicas" in the
    /// [module documentation](super)).
    fn fence(&mut self, project: &ProjectId, name: &ConnectionName) {
        let fence = ReferenceFence::of(project, name);
        let key = RecordKey::ReferenceFence(fence.project.clone(), fence.stripe);
        if !self.pending.contains_key(&key) {
            self.put(Record::ReferenceFence(Arc::new(fence)));
        }
    }

    pub(super) fn check_version(&mut self, key: &RecordKey, expected: Expect) -> Result<(), RegistryError> {
        let found = self.working_mut(key.project()).version_of(key);
        Ok(expected.check(key, found)?)
    }

    /// Creates a connection and returns its new Connection ID. A managed OAuth
    /// connection gets its application provisioned (or granted the target) here.
    pub fn create_connection(&mut self, spec: ConnectionSpec) -> Result<ConnectionId, RegistryError> {
        let project = spec.project_id().clone();
        self.writable(&project)?;
        let snapshot = self.working_mut(&project);
        if let Some(existing) = snapshot.by_name(spec.scope().integration(), spec.name()) {
            return Err(RegistryError::NameTaken {
                project,
                scope: spec.scope().clone(),
                name: spec.name().clone(),
                existing: existing.value.id(),
            });
        }
        let mut id = ConnectionId::random();
        while snapshot.connection(id).is_some() {
            id = ConnectionId::random();
        }
        self.check_typed(&spec)?;
        let owner = app_owner_for(&spec, id);
        if let Some(owner) = &owner {
            self.ensure_app(&project, owner, platform_target(&spec))?;
        }
        // A new connection may shadow another of its name (rule 2).
        self.fence(&project, spec.name());
        self.fence_typed(&spec);
        self.put(Record::Connection(Arc::new(Connection::new(id, spec, owner))));
        self.report.created.push(id);
        Ok(id)
    }

    /// Replaces connection `id`'s spec, expecting `version`. The Connection ID
    /// stays; the project cannot change.
    pub fn update_connection(
        &mut self,
        id: ConnectionId,
        version: Version,
        spec: ConnectionSpec,
    ) -> Result<(), RegistryError> {
        let project = spec.project_id().clone();
        // The key the update writes (the connection's, unless it renames it).
        let key = RecordKey::Connection(project.clone(), spec.scope().clone(), spec.name().clone());
        self.working_for(&project, Some((id, Some(&key))));
        self.writable(&project)?;
        let snapshot = self.working_mut(&project);
        let Some((old, current)) = snapshot.connection(id).map(|c| (c.value.clone(), c.version)) else {
            return Err(RegistryError::ConnectionNotFound { project, id });
        };
        // The connection with ID `id` is the one under its key: its version
        // is the key's (no probe of the per-name index).
        let key = old.key();
        Expect::Version(version).check(&key, Some(current))?;
        // Under its own key the connection is the only one: a name is taken
        // only when the key changes.
        let rekeyed = (spec.scope(), spec.name()) != (old.scope(), old.name());
        let snapshot = self.working_mut(&project);
        if rekeyed
            && let Some(other) = snapshot.by_name(spec.scope().integration(), spec.name())
            && other.value.id() != id
        {
            return Err(RegistryError::NameTaken {
                project,
                scope: spec.scope().clone(),
                name: spec.name().clone(),
                existing: other.value.id(),
            });
        }
        self.check_typed(&spec)?;
        self.fence_typed(&spec);
        let used_by = self.view(&project).usages(id);
        let owner = app_owner_for(&spec, id);
        if let Some(owner) = &owner {
            self.ensure_app(&project, owner, platform_target(&spec))?;
        }
        let renamed = Connection::new(id, spec, owner);
        if !same_mapping_surface(&old, &renamed) {
            self.fence(&project, old.name());
            self.fence(&project, renamed.name());
        }
        if renamed.key() != key {
            // A rename or scope change moves the record to its new stable key;
            // the put expects that key free, so a racing replica that claimed
            // the name first makes this write conflict.
            self.delete(key);
        }
        self.put(Record::Connection(Arc::new(renamed)));
        // A rename or scope change must not strand a reference that resolved
        // to this connection (rule 9); one that now resolves to another
        // connection of the old name is reported as a rebinding instead.
        let view = self.view(&project);
        let mut stranded: Vec<_> = used_by
            .into_iter()
            .filter(|u| view.find_connection(&u.integration, &u.reference).is_none())
            .map(|u| u.integration)
            .collect();
        stranded.dedup();
        if !stranded.is_empty() {
            return Err(RegistryError::StillUsed {
                project,
                id,
                name: old.name().clone(),
                dependents: stranded,
            });
        }
        if let Some(old_owner) = old.oauth_app() {
            self.collect_app(&project, old_owner)?;
        }
        Ok(())
    }

    /// Deletes connection `id` of `project`, expecting `version`. Refused while
    /// integrations' mappings resolve to it, unless `mode` is
    /// [`DeleteMode::Force`]. Releases its OAuth application if it was the last
    /// user, and deletes the OAuth runtime's records of it (token sets,
    /// statuses, pending authorizations) in the same batch.
    pub fn delete_connection(
        &mut self,
        project: &ProjectId,
        id: ConnectionId,
        version: Version,
        mode: DeleteMode,
    ) -> Result<(), RegistryError> {
        self.working_for(project, Some((id, None)));
        self.writable(project)?;
        let snapshot = self.working_mut(project);
        let Some(old) = snapshot.connection(id).map(|c| c.value.clone()) else {
            return Err(RegistryError::ConnectionNotFound {
                project: project.clone(),
                id,
            });
        };
        let key = old.key();
        self.check_version(&key, Expect::Version(version))?;
        let users = self.view(project).dependents(id);
        if mode == DeleteMode::Force {
            self.forced = true;
        }
        if !users.is_empty() && mode == DeleteMode::Refuse {
            return Err(RegistryError::StillUsed {
                project: project.clone(),
                id,
                name: old.name().clone(),
                dependents: users,
            });
        }
        self.fence(project, old.name());
        self.delete(key);
        self.delete_runtime_records(project, id);
        if let Some(owner) = old.oauth_app() {
            self.collect_app(project, owner)?;
        }
        Ok(())
    }

    /// Deletes what the OAuth runtime keeps of connection `id` (its token
    /// sets, statuses and pending authorizations), in this transaction's
    /// batch, expecting the versions the registry's index holds (caught up
    /// at the start of the write): a runtime writing one of them
    /// concurrently makes the batch conflict rather than leave it behind.
    fn delete_runtime_records(&mut self, project: &ProjectId, id: ConnectionId) {
        for (key, version) in self.registry.oauth_records.of_connection(project, id) {
            self.pending.insert(
                key,
                Pending {
                    expect: Expect::Version(version),
                    record: None,
                },
            );
        }
    }

    /// Sets one value of one parameter of connection `id`, expecting
    /// `version`: e.g. a customer entering its own value
    /// (`Layer::Customer`), or a test credential (`Layer::Environment(test)`).
    pub fn set_value(
        &mut self,
        project: &ProjectId,
        id: ConnectionId,
        version: Version,
        param: &crate::model::ParamName,
        layer: crate::model::Layer,
        value: impl Into<String>,
    ) -> Result<(), RegistryError> {
        self.edit_spec(project, id, version, |spec| {
            spec.set_value(param, layer, value).map(|_| ())
        })
    }

    /// Removes one value of one parameter of connection `id`, expecting
    /// `version`.
    pub fn remove_value(
        &mut self,
        project: &ProjectId,
        id: ConnectionId,
        version: Version,
        param: &crate::model::ParamName,
        layer: &crate::model::Layer,
    ) -> Result<(), RegistryError> {
        self.edit_spec(project, id, version, |spec| {
            spec.remove_value(param, layer).map(|_| ())
        })
    }

    fn edit_spec(
        &mut self,
        project: &ProjectId,
        id: ConnectionId,
        version: Version,
        edit: impl FnOnce(&mut ConnectionSpec) -> Result<(), crate::model::SpecProblem>,
    ) -> Result<(), RegistryError> {
        self.writable(project)?;
        let Some((old, current)) = self
            .working_mut(project)
            .connection(id)
            .map(|c| (c.value.clone(), c.version))
        else {
            return Err(RegistryError::ConnectionNotFound {
                project: project.clone(),
                id,
            });
        };
        // Its version is its key's (see `update_connection`).
        Expect::Version(version).check(&old.key(), Some(current))?;
        // Values only: no mapping's validity depends on them, so no name
        // fence; whether they fit the connection's type does.
        let mut spec = old.spec().clone();
        edit(&mut spec)
            .map_err(|problem| RegistryError::Spec(crate::model::SpecError::of(old.spec(), vec![problem])))?;
        self.check_typed(&spec)?;
        self.fence_typed(&spec);
        self.put(Record::Connection(Arc::new(Connection::new(
            id,
            spec,
            old.oauth_app().cloned(),
        ))));
        Ok(())
    }

    /// Sets an integration's mappings, expecting `expected` (`None`: the
    /// integration has none yet). Refused with every problem if a reference is
    /// not visible, a parameter unknown, or a variable reserved or produced twice.
    pub fn set_mappings(
        &mut self,
        mappings: Mappings,
        expected: Option<Version>,
    ) -> Result<(), RegistryError> {
        self.writable(mappings.project())?;
        let key = RecordKey::Mappings(mappings.project().clone(), mappings.integration().clone());
        self.check_version(&key, expected.map_or(Expect::Absent, Expect::Version))?;
        let problems = self.view(mappings.project()).check_mappings(&mappings);
        if !problems.is_empty() {
            return Err(RegistryError::InvalidMappings {
                project: mappings.project().clone(),
                integration: mappings.integration().clone(),
                problems,
            });
        }
        // Fence every name the mappings resolve through (a reference by ID
        // through the name its connection has now).
        let project = mappings.project().clone();
        let view = self.view(&project);
        let names: Vec<ConnectionName> = mappings
            .uses()
            .iter()
            .filter_map(|u| match &u.reference {
                ConnectionRef::Name(name) => Some(name.clone()),
                ConnectionRef::Id(_) => view
                    .find_connection(mappings.integration(), &u.reference)
                    .map(|c| c.value.name().clone()),
            })
            .collect();
        for name in &names {
            self.fence(&project, name);
        }
        self.put(Record::Mappings(Arc::new(mappings)));
        Ok(())
    }

    /// Removes an integration's mappings, expecting `version`.
    pub fn delete_mappings(
        &mut self,
        project: &ProjectId,
        integration: &crate::model::IntegrationId,
        version: Version,
    ) -> Result<(), RegistryError> {
        self.writable(project)?;
        let key = RecordKey::Mappings(project.clone(), integration.clone());
        self.check_version(&key, Expect::Version(version))?;
        self.delete(key);
        Ok(())
    }

    /// Rotates an OAuth application's secret: every connection using it
    /// resolves to the new secret as soon as the write commits.
    pub fn rotate_app_secret(&mut self, project: &ProjectId, owner: &AppOwner) -> Result<(), RegistryError> {
        self.writable(project)?;
        let Some(app) = self.working_mut(project).app(owner).map(|a| a.value.clone()) else {
            return Err(RegistryError::AppNotFound {
                project: project.clone(),
                owner: owner.clone(),
            });
        };
        let rotated = AppLedger::rotated(&*self.provisioner, &app)?;
        self.put(Record::OAuthApp(Arc::new(rotated)));
        self.report.rotated.push((project.clone(), owner.clone()));
        Ok(())
    }

    /// Makes sure `owner`'s application exists and is granted `target`
    /// (the ledger's work, on this transaction's records).
    fn ensure_app(
        &mut self,
        project: &ProjectId,
        owner: &AppOwner,
        target: Option<&PlatformTarget>,
    ) -> Result<(), RegistryError> {
        let provisioner = Arc::clone(&self.provisioner);
        let mut ledger = std::mem::take(&mut self.work);
        let provisioned = ledger.ensure(self, &*provisioner, project, owner, target);
        self.work = ledger;
        if provisioned? {
            self.report.provisioned.push((project.clone(), owner.clone()));
        }
        Ok(())
    }

    /// After a connection left `owner`'s application: release it if nobody
    /// uses it any more, else drop grants nobody needs.
    fn collect_app(&mut self, project: &ProjectId, owner: &AppOwner) -> Result<(), RegistryError> {
        let mut ledger = std::mem::take(&mut self.work);
        let released = ledger.collect(self, project, owner);
        self.work = ledger;
        if released {
            self.report.released.push((project.clone(), owner.clone()));
        }
        Ok(())
    }

    fn touch(&mut self, key: &RecordKey, record: &Record) {
        if let (RecordKey::Connection(project, _, name), Record::Connection(c)) = (key, record) {
            self.touched_names.insert((project.clone(), name.clone()));
            self.touched_ids.insert(c.id());
        }
    }

    /// Rule 9 for writes other than mappings: every integration whose mappings
    /// refer to a connection this transaction wrote must still pass
    /// [`check_mappings`] as well as it did before (an update removing a mapped
    /// parameter, a new connection shadowing one whose parameters it lacks, a
    /// default variable name now colliding). A forced delete may leave
    /// references that no longer resolve, and nothing else.
    pub(super) fn check_dependents(&self) -> Result<(), RegistryError> {
        if self.touched_names.is_empty() {
            return Ok(());
        }
        let policy = self.registry.catalog.policy();
        for (project, after) in &self.working {
            let before = self.base.get(project).and_then(Option::as_deref);
            for m in after.all_mappings() {
                let refers = m.value.uses().iter().any(|u| match &u.reference {
                    ConnectionRef::Name(n) => self.touched_names.contains(&(project.clone(), n.clone())),
                    ConnectionRef::Id(id) => self.touched_ids.contains(id),
                });
                if !refers {
                    continue;
                }
                let old = before
                    .map(|b| ProjectView::of(b, policy).check_mappings(&m.value))
                    .unwrap_or_default();
                let new: Vec<Problem> = ProjectView::of(after, policy)
                    .check_mappings(&m.value)
                    .into_iter()
                    .filter(|p| !old.contains(p))
                    .filter(|p| !(self.forced && matches!(p, Problem::NotVisible { .. })))
                    .collect();
                if !new.is_empty() {
                    return Err(RegistryError::InvalidMappings {
                        project: project.clone(),
                        integration: m.value.integration().clone(),
                        problems: new,
                    });
                }
            }
        }
        Ok(())
    }

    /// The batch to commit, named `token`.
    pub(super) fn batch(&self, token: CommitToken) -> Batch {
        let mut batch = Batch::new().with_token(token);
        for (key, p) in &self.pending {
            let op = match &p.record {
                Some(r) => Op::Put(r.clone()),
                None => Op::Delete,
            };
            batch.push(Write {
                key: key.clone(),
                expect: p.expect,
                op,
            });
        }
        batch
    }

    /// Name references whose connection changes with this transaction.
    pub(super) fn rebindings(&self) -> Vec<Rebinding> {
        let mut out = Vec::new();
        let policy = self.registry.catalog.policy();
        for (project, after) in &self.working {
            let Some(Some(before)) = self.base.get(project) else {
                continue;
            };
            let (before, after) = (ProjectView::of(before, policy), ProjectView::of(after, policy));
            for m in after.snapshot.all_mappings() {
                let integration = m.value.integration();
                for u in m.value.uses() {
                    let ConnectionRef::Name(name) = &u.reference else {
                        continue;
                    };
                    let was = before
                        .find_connection(integration, &u.reference)
                        .map(|c| c.value.id());
                    let now = after
                        .find_connection(integration, &u.reference)
                        .map(|c| c.value.id());
                    if let Some(was) = was
                        && Some(was) != now
                    {
                        out.push(Rebinding {
                            project: project.clone(),
                            integration: integration.clone(),
                            name: name.clone(),
                            before: was,
                            after: now,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| (&a.project, &a.integration, &a.name).cmp(&(&b.project, &b.integration, &b.name)));
        out
    }

    /// Finishes provisioner work after a successful commit; failures become
    /// warnings.
    pub(super) fn after_commit(&mut self) {
        // What is released was listed in the report when it was decided.
        let (_, failures) = self.work.finish(&*self.provisioner);
        self.report.warnings.extend(failures);
    }

    /// The working snapshots with the versions the store assigned.
    pub(super) fn into_snapshots(
        mut self,
        versions: &[Version],
        revision: crate::model::Revision,
    ) -> (Vec<ProjectSnapshot>, WriteReport) {
        for ((key, p), version) in self.pending.iter().zip(versions) {
            if let (Some(record), Some(snapshot)) = (&p.record, self.working.get_mut(key.project())) {
                snapshot.put(*version, record);
            }
        }
        // Allocated at its length: `collect` would allocate room for four
        // snapshots, past glibc's small sizes (see `Tx::working`).
        let mut snapshots = Vec::with_capacity(self.working.len());
        snapshots.extend(self.working.into_values().map(|s| {
            let mut s = *s;
            s.set_revision(revision);
            s
        }));
        (snapshots, self.report)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::name_probes;
    use crate::model::{ConnectionSpec, Layer, Param, ProjectId, Scope, Version};
    use crate::registry::{Registry, RegistryError};

    fn spec(integration: Option<&str>, name: &str, url: &str) -> ConnectionSpec {
        match integration {
            None => ConnectionSpec::project("acme", name),
            Some(i) => ConnectionSpec::integration("acme", i, name),
        }
        .param(Param::plain("ServiceURL").default(url))
        .build()
        .unwrap()
    }

    #[test]
    fn an_update_keeping_its_key_probes_no_name_index() {
        let registry = Registry::in_memory();
        let mut ids = Vec::new();
        for i in 0..50 {
            let (id, _) = registry
                .create_connection(spec(None, &format!("c{i}"), "https://a.example"))
                .unwrap();
            ids.push(id);
        }
        let before = name_probes();
        registry
            .update_connection(ids[7], Version(1), spec(None, "c7", "https://b.example"))
            .unwrap();
        registry
            .set_value(
                &"acme".parse().unwrap(),
                ids[8],
                Version(1),
                &"ServiceURL".parse().unwrap(),
                Layer::Default,
                "https://c.example",
            )
            .unwrap();
        assert_eq!(name_probes(), before, "the per-name index was probed");
        let snapshot = registry.snapshot(&"acme".parse().unwrap()).unwrap();
        assert_eq!(snapshot.connection(ids[7]).map(|c| c.version), Some(Version(2)));
        assert_eq!(
            snapshot.by_name(None, &"c8".parse().unwrap()).map(|c| c.version),
            Some(Version(2))
        );
    }

    #[test]
    fn updates_still_check_versions_and_taken_names() {
        let registry = Registry::in_memory();
        let acme: ProjectId = "acme".parse().unwrap();
        let (crm, _) = registry
            .create_connection(spec(None, "crm", "https://a.example"))
            .unwrap();
        let (erp, _) = registry
            .create_connection(spec(None, "erp", "https://a.example"))
            .unwrap();
        registry
            .create_connection(spec(Some("orders"), "crm", "https://a.example"))
            .unwrap();
        // A stale version, keeping the key or not.
        for (name, integration) in [("crm", None), ("other", None), ("crm", Some("billing"))] {
            match registry.update_connection(crm, Version(7), spec(integration, name, "https://b.example")) {
                Err(RegistryError::Conflict { found, .. }) => assert_eq!(found, Some(Version(1))),
                other => panic!("expected a conflict, got {other:?}"),
            }
        }
        let set = |version| {
            registry.set_value(
                &acme,
                erp,
                version,
                &"ServiceURL".parse().unwrap(),
                Layer::Default,
                "https://c.example",
            )
        };
        assert!(matches!(set(Version(2)), Err(RegistryError::Conflict { .. })));
        set(Version(1)).unwrap();
        // A key another connection holds, in either scope.
        for (name, integration) in [("erp", None), ("crm", Some("orders"))] {
            match registry.update_connection(crm, Version(1), spec(integration, name, "https://b.example")) {
                Err(RegistryError::NameTaken { existing, scope, .. }) => {
                    assert_ne!(existing, crm);
                    assert_eq!(scope.integration().map(|i| i.as_str()), integration);
                }
                other => panic!("expected the name taken, got {other:?}"),
            }
        }
        // Its own key, then a free one: the key's versions go on.
        registry
            .update_connection(crm, Version(1), spec(None, "crm", "https://b.example"))
            .unwrap();
        registry
            .update_connection(crm, Version(2), spec(Some("billing"), "crm", "https://b.example"))
            .unwrap();
        let snapshot = registry.snapshot(&acme).unwrap();
        let moved = snapshot.connection(crm).unwrap();
        assert_eq!(
            (moved.version, moved.value.scope()),
            (Version(1), &Scope::Integration("billing".parse().unwrap()))
        );
        assert!(snapshot.by_name(None, &"crm".parse().unwrap()).is_none());
    }
}
