//! The in-memory index resolution reads: immutable snapshots per project,
//! swapped atomically on change.
//!
//! Readers load a project's current [`ProjectSnapshot`] (one atomic pointer
//! load) and never wait on writers. A write builds the touched project's next
//! snapshot and swaps it in. The next snapshot shares the current one's
//! connection tables in shards of a few dozen connections and copies only
//! the shards it changes, so a write costs about the square root of the
//! project's size, and nothing in proportion to the whole catalog. Only the
//! first write to a new project also rebuilds the small project directory.

mod shards;

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use hashbrown::DefaultHashBuilder;
use hashbrown::HashMap;

use self::shards::ShardedTable;

use crate::model::{
    AppOwner, Connection, ConnectionId, ConnectionName, ConnectionRef, ConnectionTemplate, IntegrationId,
    Mappings, NameStripe, OAuthApp, ProjectId, ProjectType, Record, RecordKey, ResolvePolicy, Revision,
    Scope, TemplateName, TypeName, Version, Versioned,
};

/// One project's connections, mappings and OAuth applications at one revision.
/// Immutable once published; cheap to share (`Arc`).
#[derive(Debug, Clone)]
pub struct ProjectSnapshot {
    project: ProjectId,
    revision: Revision,
    connections: ById,
    /// The per-name index: for each connection, a [`NameSlot`] (8 bytes)
    /// filed under its (scope, name). It holds neither a key nor a
    /// reference (a probe finds the connection in [`ById`] and compares its
    /// own scope and name), so a write that copies a shard of it copies
    /// plain bytes and touches no connection. Sharded like [`ById`].
    by_name: ShardedTable<NameSlot, NAME_SHARD>,
    mappings: HashMap<IntegrationId, Versioned<Arc<Mappings>>>,
    apps: HashMap<AppOwner, Versioned<Arc<OAuthApp>>>,
    /// The project's own connection types.
    types: HashMap<TypeName, Versioned<Arc<ProjectType>>>,
    /// The project's templates.
    templates: HashMap<TemplateName, Versioned<Arc<ConnectionTemplate>>>,
    /// The versions of the project's reference fences, sorted by stripe (at
    /// most [`NameStripe::COUNT`]).
    fences: Vec<(NameStripe, Version)>,
    /// Records of the project the store holds but could not read back.
    unreadable: Vec<RecordKey>,
}

/// The shard size of the per-name index: its slots are plain bytes, so a
/// copy of a shard is a `memcpy` (about eight cache lines, read in order),
/// and only a write that adds, removes or renames a connection copies one
/// (an update keeping scope and name leaves the index alone). Shards of 64
/// rather than 32 take about a byte a connection less (fewer tables, so
/// less of their fixed overhead), which pays for [`ID_SHARD`]'s.
const NAME_SHARD: usize = 64;

/// The shard size of [`ById`]: a copy of a shard takes a reference on each
/// connection in it (a cold cache line each in a large catalog, fetched
/// together: see `ShardedTable::warm_path`); for a project of 1,000
/// connections a write touches 8 groups, 8 shards and about 16
/// connections (see [`shards`]), where shards of 32 touched 8 + 4 + 32.
/// Measured at 1,000,000 connections: about 1 µs less a write (of 7.4), for
/// 2 bytes a connection more in the by-ID table (more, smaller tables).
const ID_SHARD: usize = 16;

/// Spreads 32 bits of a key's hash over a table hash: every bit the shard
/// tables use (those from 32 up for a shard, the top eight for a tag in it)
/// depends on them.
fn spread(part: u32) -> u64 {
    u64::from(part).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The high 32 bits of a (scope, name) key's hash (foldhash, seeded at
/// random once per process): what the per-name index files the key under.
fn name_part(integration: Option<&IntegrationId>, name: &ConnectionName) -> u32 {
    let mut h = HASHER.build_hasher();
    integration.map(IntegrationId::as_str).hash(&mut h);
    name.as_str().hash(&mut h);
    narrow((h.finish() >> 32) as u32)
}

/// The high 32 bits of a Connection ID's hash: what [`ById`] files the
/// connection under.
fn id_part(id: &ConnectionId) -> u32 {
    narrow((HASHER.hash_one(id) >> 32) as u32)
}

#[cfg(test)]
thread_local! {
    /// In tests: whether hashes keep two bits only, so that keys and IDs
    /// collide all the time.
    static NARROW: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
thread_local! {
    /// In tests: how many probes of the per-name index this thread made.
    static NAME_PROBES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// In tests: how many probes of the per-name index (a lookup of a
/// connection by scope and name) the calling thread has made so far.
#[cfg(test)]
pub(crate) fn name_probes() -> u64 {
    NAME_PROBES.with(std::cell::Cell::get)
}

/// `part`, or in a test that asks for collisions, two bits of it.
#[inline(always)]
fn narrow(part: u32) -> u32 {
    #[cfg(test)]
    if NARROW.with(std::cell::Cell::get) {
        return part & 3;
    }
    part
}

static HASHER: std::sync::LazyLock<DefaultHashBuilder> =
    std::sync::LazyLock::new(DefaultHashBuilder::default);

/// An entry of the per-name index: the [`name_part`] of a connection's
/// (scope, name) and the [`id_part`] of its ID, which is where [`ById`]
/// files it. Two connections may share a slot's value (both parts
/// colliding); such slots are interchangeable, so the index keeps one per
/// connection and removing either leaves the right one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NameSlot(u64);

impl NameSlot {
    fn new(name: u32, id: u32) -> Self {
        NameSlot((u64::from(name) << 32) | u64::from(id))
    }

    fn of(c: &Connection) -> Self {
        let (integration, name) = key_of(c);
        NameSlot::new(name_part(integration, name), id_part(&c.id()))
    }

    fn name(self) -> u32 {
        (self.0 >> 32) as u32
    }

    fn id(self) -> u32 {
        self.0 as u32
    }

    /// The hash the per-name index files this slot under.
    fn hash(self) -> u64 {
        spread(self.name())
    }
}

impl shards::Entry for NameSlot {
    /// Plain bytes: nothing to fetch.
    fn warm(&self) {}
}

impl shards::Entry for Versioned<Arc<Connection>> {
    /// The connection's reference count, which a copy of its shard
    /// increments.
    fn warm(&self) {
        shards::warm_count(&self.value);
    }

    /// Its reference count, and the lines of the connection that a change
    /// to it compares with the change (its key, and its parameters' names and attributes: see
    /// `Tx::update_connection`): the connection's own and those of its
    /// array of parameters, which in a large catalog are cold. Read
    /// together here, they arrive together, where the comparisons would
    /// fetch them one after another.
    fn warm_for_change(&self) {
        self.warm();
        let spec = self.value.spec();
        std::hint::black_box((spec.project_id().as_str().len(), spec.name().as_str().len()));
        std::hint::black_box(spec.scope().integration().map(|i| i.as_str().len()));
        for p in spec.params() {
            std::hint::black_box(p.name().as_str().len());
        }
    }
}

/// The connections of a project by ID: a table of the records themselves,
/// keyed by their own ID (16 bytes a connection, no separate key), in
/// shards the snapshots of the project share, so a write copies one shard
/// (a few dozen connections) rather than the whole project.
#[derive(Debug, Clone, Default)]
struct ById(ShardedTable<Versioned<Arc<Connection>>, ID_SHARD>);

fn id_hash(id: &ConnectionId) -> u64 {
    spread(id_part(id))
}

impl ById {
    fn get(&self, id: &ConnectionId) -> Option<&Versioned<Arc<Connection>>> {
        self.0.find(id_hash(id), |c| c.value.id() == *id)
    }

    fn insert(&mut self, c: Versioned<Arc<Connection>>) {
        let id = c.value.id();
        self.0.insert(
            id_hash(&id),
            c,
            |x| x.value.id() == id,
            |x| id_hash(&x.value.id()),
        );
    }

    fn remove(&mut self, id: &ConnectionId) {
        self.0.remove(id_hash(id), |c| c.value.id() == *id);
    }

    /// The connection filed under `id_part` for which `eq` holds.
    fn find_part(
        &self,
        id_part: u32,
        eq: impl FnMut(&Versioned<Arc<Connection>>) -> bool,
    ) -> Option<&Versioned<Arc<Connection>>> {
        self.0.find(spread(id_part), eq)
    }

    fn values(&self) -> impl Iterator<Item = &Versioned<Arc<Connection>>> {
        self.0.iter()
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

fn key_of(c: &Connection) -> (Option<&IntegrationId>, &ConnectionName) {
    (c.scope().integration(), c.name())
}

impl ProjectSnapshot {
    /// An empty project.
    pub fn empty(project: ProjectId) -> Self {
        ProjectSnapshot {
            project,
            revision: Revision(0),
            connections: ById::default(),
            by_name: ShardedTable::default(),
            mappings: HashMap::new(),
            apps: HashMap::new(),
            types: HashMap::new(),
            templates: HashMap::new(),
            fences: Vec::new(),
            unreadable: Vec::new(),
        }
    }

    /// The connection under (`integration`, `name`): the per-name index
    /// gives the candidates' [`id_part`]s, and [`ById`] the connection under
    /// one whose own scope and name are the key.
    fn name_lookup(
        &self,
        integration: Option<&IntegrationId>,
        name: &ConnectionName,
    ) -> Option<&Versioned<Arc<Connection>>> {
        #[cfg(test)]
        NAME_PROBES.with(|n| n.set(n.get() + 1));
        let part = name_part(integration, name);
        let mut found = None;
        self.by_name.find(spread(part), |slot| {
            if slot.name() == part {
                found = self
                    .connections
                    .find_part(slot.id(), |c| key_of(&c.value) == (integration, name));
            }
            found.is_some()
        })?;
        found
    }

    /// Drops a connection's slot from the per-name index.
    fn unindex(&mut self, slot: NameSlot) {
        self.by_name.remove(slot.hash(), |x| *x == slot);
    }

    /// The project.
    pub fn project(&self) -> &ProjectId {
        &self.project
    }

    /// The store revision this snapshot reflects.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// A connection by ID.
    pub fn connection(&self, id: ConnectionId) -> Option<&Versioned<Arc<Connection>>> {
        self.connections.get(&id)
    }

    /// A connection by scope and name: `integration` `None` means project
    /// scope. (Which one an integration *sees* is the resolver's rule 2, see
    /// [`ProjectView::find_connection`](crate::resolve::ProjectView::find_connection).)
    pub fn by_name(
        &self,
        integration: Option<&IntegrationId>,
        name: &ConnectionName,
    ) -> Option<&Versioned<Arc<Connection>>> {
        self.name_lookup(integration, name)
    }

    /// Every connection, in no particular order.
    pub fn connections(&self) -> impl Iterator<Item = &Versioned<Arc<Connection>>> {
        self.connections.values()
    }

    /// How many connections the project has.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// An integration's mappings.
    pub fn mappings(&self, integration: &IntegrationId) -> Option<&Versioned<Arc<Mappings>>> {
        self.mappings.get(integration)
    }

    /// Every integration's mappings.
    pub fn all_mappings(&self) -> impl Iterator<Item = &Versioned<Arc<Mappings>>> {
        self.mappings.values()
    }

    /// An OAuth application.
    pub fn app(&self, owner: &AppOwner) -> Option<&Versioned<Arc<OAuthApp>>> {
        self.apps.get(owner)
    }

    /// Every OAuth application.
    pub fn apps(&self) -> impl Iterator<Item = &Versioned<Arc<OAuthApp>>> {
        self.apps.values()
    }

    /// A project's own connection type by name (the host's are in the
    /// policy: [`ResolvePolicy::types`]).
    pub fn project_type(&self, name: &TypeName) -> Option<&Versioned<Arc<ProjectType>>> {
        self.types.get(name)
    }

    /// Every connection type of the project.
    pub fn project_types(&self) -> impl Iterator<Item = &Versioned<Arc<ProjectType>>> {
        self.types.values()
    }

    /// A template by name.
    pub fn template(&self, name: &TemplateName) -> Option<&Versioned<Arc<ConnectionTemplate>>> {
        self.templates.get(name)
    }

    /// Every template of the project.
    pub fn templates(&self) -> impl Iterator<Item = &Versioned<Arc<ConnectionTemplate>>> {
        self.templates.values()
    }

    /// The connections using an OAuth application.
    pub fn app_users(&self, owner: &AppOwner) -> Vec<&Versioned<Arc<Connection>>> {
        let mut users: Vec<_> = self
            .connections
            .values()
            .filter(|c| c.value.oauth_app() == Some(owner))
            .collect();
        users.sort_by(|a, b| (a.value.scope(), a.value.name()).cmp(&(b.value.scope(), b.value.name())));
        users
    }

    /// Records of the project that the store holds but could not read back
    /// (e.g. sealed under a key this replica lacks), sorted. Resolutions that
    /// depend on one fail ([`ProjectSnapshot::unreadable_for`]).
    pub fn unreadable(&self) -> &[RecordKey] {
        &self.unreadable
    }

    /// The unreadable records a resolution for `integration` may depend on:
    /// its mappings, the connections of every name it refers to in either
    /// scope it sees (and their OAuth applications), and, for a reference by
    /// ID that finds nothing, every unreadable connection it could see. Empty
    /// (and free) when the project has none.
    pub fn unreadable_for(&self, integration: &IntegrationId) -> Vec<RecordKey> {
        if self.unreadable.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<RecordKey> = Vec::new();
        let mut add = |key: RecordKey| {
            if self.unreadable.binary_search(&key).is_ok() && !out.contains(&key) {
                out.push(key);
            }
        };
        let p = &self.project;
        add(RecordKey::Mappings(p.clone(), integration.clone()));
        let Some(mappings) = self.mappings(integration) else {
            return out;
        };
        let own = Scope::Integration(integration.clone());
        for u in mappings.value.uses() {
            let candidates: Vec<&Versioned<Arc<Connection>>> = match &u.reference {
                ConnectionRef::Name(name) => {
                    add(RecordKey::Connection(p.clone(), own.clone(), name.clone()));
                    add(RecordKey::Connection(p.clone(), Scope::Project, name.clone()));
                    [self.by_name(Some(integration), name), self.by_name(None, name)]
                        .into_iter()
                        .flatten()
                        .collect()
                }
                ConnectionRef::Id(id) => match self.connection(*id) {
                    Some(c) => vec![c],
                    None => {
                        for key in &self.unreadable {
                            if let RecordKey::Connection(_, scope, _) = key
                                && (scope == &Scope::Project || scope == &own)
                            {
                                add(key.clone());
                            }
                        }
                        Vec::new()
                    }
                },
            };
            for c in candidates {
                if let Some(owner) = c.value.oauth_app() {
                    add(RecordKey::OAuthApp(p.clone(), owner.clone()));
                }
            }
        }
        out
    }

    /// Marks the record under `key` as held by the store but unreadable here:
    /// whatever this snapshot had under the key is dropped.
    pub(crate) fn mark_unreadable(&mut self, key: &RecordKey) {
        if key.project() != &self.project {
            return;
        }
        self.remove(key);
        if let Err(i) = self.unreadable.binary_search(key) {
            self.unreadable.insert(i, key.clone());
        }
    }

    /// Forgets that the record under `key` was unreadable (it was written or
    /// deleted since).
    fn readable_again(&mut self, key: &RecordKey) {
        if let Ok(i) = self.unreadable.binary_search(key) {
            self.unreadable.remove(i);
        }
    }

    /// Stores a record of this project at `version`. Records of another
    /// project are ignored.
    pub(crate) fn put(&mut self, version: Version, record: &Record) {
        if !self.unreadable.is_empty() && record.key().project() == &self.project {
            self.readable_again(&record.key());
        }
        match record {
            Record::Connection(c) if c.project() == &self.project => {
                // An update that keeps the connection's key (most do: same
                // scope and name) replaces its by-ID entry and nothing else:
                // its slot in the per-name index depends on the key and the
                // ID only, and no other connection holds the key. The index
                // is neither read (in a large catalog its shard is cold
                // lines) nor copied (it stays shared with the previous
                // snapshot).
                let old = self.connections.get(&c.id());
                if old.is_some_and(|o| key_of(&o.value) == key_of(c)) {
                    self.connections.insert(Versioned {
                        version,
                        value: c.clone(),
                    });
                    return;
                }
                let slot = NameSlot::of(c);
                let kept = match old.map(|o| NameSlot::of(&o.value)) {
                    Some(old) if old == slot => true,
                    Some(old) => {
                        self.unindex(old);
                        false
                    }
                    None => false,
                };
                // The record's key is its (scope, name): another connection
                // under that key is the one this record replaces.
                if let Some((slot, other)) = self
                    .name_lookup(c.scope().integration(), c.name())
                    .filter(|o| o.value.id() != c.id())
                    .map(|o| (NameSlot::of(&o.value), o.value.id()))
                {
                    self.unindex(slot);
                    self.connections.remove(&other);
                }
                self.connections.insert(Versioned {
                    version,
                    value: c.clone(),
                });
                if !kept {
                    self.by_name.insert_unique(slot.hash(), slot, |x| x.hash());
                }
            }
            Record::Mappings(m) if m.project() == &self.project => {
                self.mappings.insert(
                    m.integration().clone(),
                    Versioned {
                        version,
                        value: m.clone(),
                    },
                );
            }
            Record::OAuthApp(a) if a.project() == &self.project => {
                self.apps.insert(
                    a.owner().clone(),
                    Versioned {
                        version,
                        value: a.clone(),
                    },
                );
            }
            Record::ConnectionType(t) if t.project() == &self.project => {
                self.types.insert(
                    t.name().clone(),
                    Versioned {
                        version,
                        value: t.clone(),
                    },
                );
            }
            Record::Template(t) if t.project() == &self.project => {
                self.templates.insert(
                    t.name().clone(),
                    Versioned {
                        version,
                        value: t.clone(),
                    },
                );
            }
            Record::ReferenceFence(f) if f.project == self.project => {
                match self.fences.binary_search_by_key(&f.stripe, |(s, _)| *s) {
                    Ok(i) => self.fences[i].1 = version,
                    Err(i) => self.fences.insert(i, (f.stripe, version)),
                }
            }
            _ => {}
        }
    }

    /// Removes a record of this project.
    pub(crate) fn remove(&mut self, key: &RecordKey) {
        if !self.unreadable.is_empty() {
            self.readable_again(key);
        }
        match key {
            RecordKey::Connection(p, scope, name) if p == &self.project => {
                let old = self
                    .name_lookup(scope.integration(), name)
                    .map(|o| (NameSlot::of(&o.value), o.value.id()));
                if let Some((slot, id)) = old {
                    self.unindex(slot);
                    self.connections.remove(&id);
                }
            }
            RecordKey::Mappings(p, i) if p == &self.project => {
                self.mappings.remove(i);
            }
            RecordKey::OAuthApp(p, o) if p == &self.project => {
                self.apps.remove(o);
            }
            RecordKey::ConnectionType(p, t) if p == &self.project => {
                self.types.remove(t);
            }
            RecordKey::Template(p, t) if p == &self.project => {
                self.templates.remove(t);
            }
            RecordKey::ReferenceFence(p, stripe) if p == &self.project => {
                if let Ok(i) = self.fences.binary_search_by_key(stripe, |(s, _)| *s) {
                    self.fences.remove(i);
                }
            }
            _ => {}
        }
    }

    /// The live version under `record`'s key, if any: [`version_of`]
    /// its key, but for a connection filed under the same key as the one
    /// with its ID (an update keeping scope and name), read from that
    /// one's by-ID entry without a probe of the per-name index.
    ///
    /// [`version_of`]: ProjectSnapshot::version_of
    pub(crate) fn version_under(&self, record: &Record) -> Option<Version> {
        if let Record::Connection(c) = record
            && c.project() == &self.project
            && let Some(same) = self
                .connections
                .get(&c.id())
                .filter(|o| key_of(&o.value) == key_of(c))
        {
            return Some(same.version);
        }
        self.version_of(&record.key())
    }

    /// The live version of a record, if any.
    pub(crate) fn version_of(&self, key: &RecordKey) -> Option<Version> {
        match key {
            RecordKey::Connection(_, scope, name) => {
                self.by_name(scope.integration(), name).map(|c| c.version)
            }
            RecordKey::Mappings(_, i) => self.mappings.get(i).map(|m| m.version),
            RecordKey::OAuthApp(_, o) => self.apps.get(o).map(|a| a.version),
            RecordKey::ConnectionType(_, t) => self.types.get(t).map(|x| x.version),
            RecordKey::Template(_, t) => self.templates.get(t).map(|x| x.version),
            RecordKey::ReferenceFence(_, stripe) => self
                .fences
                .binary_search_by_key(stripe, |(s, _)| *s)
                .ok()
                .map(|i| self.fences[i].1),
            // The OAuth runtime's records are not resolution's: the
            // registry keeps them in `oauth::RuntimeRecords`.
            RecordKey::TokenSet(_) | RecordKey::PendingAuthorization(..) | RecordKey::Status(_) => None,
        }
    }

    pub(crate) fn set_revision(&mut self, revision: Revision) {
        self.revision = revision;
    }

    /// Puts connection `records` in, in order, into a snapshot that holds
    /// no connection yet (and lists no unreadable record): what a
    /// [`ProjectSnapshot::put`] of each leaves. When no two share an ID or
    /// a key (a store's load), each is added beside the others, so both
    /// tables are built at once (`ShardedTable::from_entries`: each shard
    /// allocated once); otherwise they are put one by one.
    fn put_all_connections(&mut self, records: Vec<(Version, Record)>) {
        debug_assert!(self.connections.0.len() == 0 && self.unreadable.is_empty());
        let mut connections = Vec::with_capacity(records.len());
        for (version, record) in &records {
            match record {
                Record::Connection(c) if c.project() == &self.project => connections.push(Versioned {
                    version: *version,
                    value: Arc::clone(c),
                }),
                _ => return self.put_each(&records),
            }
        }
        let mut ids = hashbrown::HashSet::with_capacity(connections.len());
        let mut keys = hashbrown::HashSet::with_capacity(connections.len());
        if !connections
            .iter()
            .all(|c| ids.insert(c.value.id()) && keys.insert(key_of(&c.value)))
        {
            return self.put_each(&records);
        }
        drop((ids, keys));
        let slots = connections.iter().map(|c| NameSlot::of(&c.value));
        self.by_name = ShardedTable::from_entries(slots.map(|slot| (slot.hash(), slot)).collect());
        let by_id = connections.into_iter().map(|c| (id_hash(&c.value.id()), c));
        self.connections = ById(ShardedTable::from_entries(by_id.collect()));
    }

    /// [`ProjectSnapshot::put`] of each of `records`, in order.
    fn put_each(&mut self, records: &[(Version, Record)]) {
        for (version, record) in records {
            self.put(*version, record);
        }
    }
}

type Directory = HashMap<ProjectId, SlotRef>;

/// A project's place in the directory: its current snapshot, and a count of
/// the snapshots installed there since. Slots are kept side by side (see
/// [`SlotRef`]), each on a cache line of its own: a write installing a
/// project's snapshot does not take the line from readers of another.
#[derive(Debug)]
#[repr(align(64))]
struct ProjectSlot {
    current: ArcSwap<ProjectSnapshot>,
    changes: Arc<Changes>,
}

/// A [`ProjectSlot`] in a block of slots allocated together, shared by the
/// directories that hold them. A catalog built whole
/// ([`Catalog::replace_all`]) puts every project's slot in one block; a
/// project added later gets a block of its own. Every write and every
/// reader loads its project's slot first: side by side, the slots of a
/// catalog of 1,000 projects take 16 pages that writes keep in cache,
/// where each slot allocated on its own landed among its project's
/// connections, a cache miss and a TLB miss on a page of its own for
/// every write into a large catalog.
#[derive(Debug, Clone)]
struct SlotRef {
    block: Arc<[ProjectSlot]>,
    at: usize,
}

impl SlotRef {
    /// A block of one slot, holding `snapshot`.
    fn alone(snapshot: ProjectSnapshot) -> Self {
        SlotRef {
            block: Arc::new([ProjectSlot::new(snapshot)]),
            at: 0,
        }
    }
}

impl std::ops::Deref for SlotRef {
    type Target = ProjectSlot;

    fn deref(&self) -> &ProjectSlot {
        &self.block[self.at]
    }
}

impl ProjectSlot {
    fn new(snapshot: ProjectSnapshot) -> Self {
        ProjectSlot {
            current: ArcSwap::from_pointee(snapshot),
            changes: Arc::default(),
        }
    }

    /// Installs `snapshot`, then counts the change.
    fn store(&self, snapshot: ProjectSnapshot) {
        self.current.store(Arc::new(snapshot));
        self.changes.0.fetch_add(1, Ordering::Release);
    }
}

/// How often a project's snapshot has been replaced: a count that moves
/// after every new snapshot is installed (and when a new directory retires
/// the project's slot), so a reader holding it can tell "unchanged since"
/// with one load, without loading the snapshot (see [`Catalog::current`]).
#[derive(Debug, Default)]
pub(crate) struct Changes(AtomicU64);

impl Changes {
    /// The count now.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// A project's current snapshot, with its [`Changes`] and their count read
/// before the snapshot was (so the snapshot is at least as new as the count
/// says).
pub(crate) struct Current {
    /// The project's count of changes.
    pub(crate) changes: Arc<Changes>,
    /// Its value before `snapshot` was loaded.
    pub(crate) seen: u64,
    /// The snapshot.
    pub(crate) snapshot: Arc<ProjectSnapshot>,
}

/// The live catalog: every project's current snapshot, plus the host's
/// [`ResolvePolicy`]. `Send + Sync`; reads are lock-free.
///
/// Most hosts use it through [`Registry`](crate::registry::Registry). Built
/// directly from records it is a plain in-memory resolver, handy in tests:
///
/// ```
/// use connective::catalog::Catalog;
/// use connective::model::ResolvePolicy;
/// let catalog = Catalog::new(ResolvePolicy::default());
/// assert!(catalog.project(&"acme".parse()?).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Catalog {
    directory: ArcSwap<Directory>,
    revision: AtomicU64,
    policy: ResolvePolicy,
}

impl Catalog {
    /// An empty catalog.
    pub fn new(policy: ResolvePolicy) -> Self {
        Catalog {
            directory: ArcSwap::from_pointee(HashMap::new()),
            revision: AtomicU64::new(0),
            policy,
        }
    }

    /// A catalog holding `records` at `revision`.
    pub fn from_records(
        policy: ResolvePolicy,
        revision: Revision,
        records: impl IntoIterator<Item = (Version, Record)>,
    ) -> Self {
        let catalog = Catalog::new(policy);
        catalog.replace_all(revision, records, Vec::new());
        catalog
    }

    /// The host's resolution policy.
    pub fn policy(&self) -> &ResolvePolicy {
        &self.policy
    }

    /// The store revision the catalog reflects.
    pub fn revision(&self) -> Revision {
        Revision(self.revision.load(Ordering::Acquire))
    }

    /// A project's current snapshot.
    pub fn project(&self, project: &ProjectId) -> Option<Arc<ProjectSnapshot>> {
        self.directory
            .load()
            .get(project)
            .map(|slot| slot.current.load_full())
    }

    /// A project's current snapshot, for a write that changes connection
    /// `id` in a copy of it: the same as [`Catalog::project`], but first
    /// every cache line the copy and the change will touch is read with
    /// plain loads (the project's count of changes, the snapshot's tables'
    /// reference counts, the path to `id`'s shard and the counts a copy of
    /// it takes: see `ShardedTable::warm_change`). In a large catalog these
    /// lines are cold; read here, each level's arrive together instead of
    /// one after another behind the locked increments that take the
    /// references.
    ///
    /// Those reads are plain loads, with no locked instruction among them:
    /// `around` gets them as a function to call once (if the project has a
    /// snapshot), so that the caller can start reads of its own before and
    /// have them overlap (the registry reads the store's entry ahead there).
    pub(crate) fn project_for_change(
        &self,
        project: &ProjectId,
        id: ConnectionId,
        around: impl FnOnce(&mut dyn FnMut()),
    ) -> Option<Arc<ProjectSnapshot>> {
        let directory = self.directory.load();
        let slot = directory.get(project)?;
        let snapshot = slot.current.load();
        around(&mut || {
            shards::warm_count(&slot.changes);
            snapshot.by_name.warm_copy();
            std::hint::black_box(snapshot.fences.first().copied());
            snapshot.connections.0.warm_change(id_hash(&id));
        });
        Some(arc_swap::Guard::into_inner(snapshot))
    }

    /// Runs `f` on a project's current snapshot without taking a reference
    /// count on it (readers on several threads then share no counter).
    #[cfg(feature = "oauth-runtime")]
    pub(crate) fn with_project<R>(
        &self,
        project: &ProjectId,
        f: impl FnOnce(&ProjectSnapshot) -> R,
    ) -> Option<R> {
        let directory = self.directory.load();
        let snapshot = directory.get(project)?.current.load();
        Some(f(&snapshot))
    }

    /// A project's current snapshot with the count of its changes (see
    /// [`Current`]): a reader keeping something computed from the snapshot
    /// knows it still holds while [`Changes::get`] answers `seen`.
    pub(crate) fn current(&self, project: &ProjectId) -> Option<Current> {
        let directory = self.directory.load();
        let slot = directory.get(project)?;
        let seen = slot.changes.get();
        Some(Current {
            changes: Arc::clone(&slot.changes),
            seen,
            snapshot: slot.current.load_full(),
        })
    }

    /// Every project's ID.
    pub fn projects(&self) -> Vec<ProjectId> {
        let mut out: Vec<_> = self.directory.load().keys().cloned().collect();
        out.sort();
        out
    }

    /// Publishes a project's next snapshot. Callers serialize writes.
    pub(crate) fn install(&self, snapshot: ProjectSnapshot) {
        let directory = self.directory.load();
        if let Some(slot) = directory.get(&snapshot.project) {
            slot.store(snapshot);
            return;
        }
        let mut next: Directory = (**directory).clone();
        next.insert(snapshot.project.clone(), SlotRef::alone(snapshot));
        self.directory.store(Arc::new(next));
    }

    /// Sets the revision the catalog reflects, after the snapshots are in.
    pub(crate) fn set_revision(&self, revision: Revision) {
        self.revision.store(revision.0, Ordering::Release);
    }

    /// Replaces everything with `records` at `revision`, with `unreadable`
    /// the keys of records the store holds but could not read back.
    pub(crate) fn replace_all(
        &self,
        revision: Revision,
        records: impl IntoIterator<Item = (Version, Record)>,
        unreadable: Vec<RecordKey>,
    ) {
        // Each project's connections are put in at once after its other
        // records (which they do not touch).
        let mut projects: HashMap<ProjectId, (ProjectSnapshot, Vec<(Version, Record)>)> = HashMap::new();
        for (version, record) in records {
            let project = record.key().project().clone();
            let (snapshot, connections) = projects
                .entry(project.clone())
                .or_insert_with(|| (ProjectSnapshot::empty(project), Vec::new()));
            match &record {
                Record::Connection(_) => connections.push((version, record)),
                _ => snapshot.put(version, &record),
            }
        }
        let mut projects: HashMap<ProjectId, ProjectSnapshot> = projects
            .into_iter()
            .map(|(id, (mut snapshot, connections))| {
                snapshot.put_all_connections(connections);
                (id, snapshot)
            })
            .collect();
        for key in unreadable {
            let project = key.project().clone();
            projects
                .entry(project.clone())
                .or_insert_with(|| ProjectSnapshot::empty(project))
                .mark_unreadable(&key);
        }
        // Every project's per-name index in one list of groups, which
        // every write into any of them copies with the snapshot (see
        // `ShardedTable::share_lists`).
        ShardedTable::share_lists(projects.values_mut().map(|s| &mut s.by_name));
        // Every project's slot in one block (see `SlotRef`).
        let (ids, slots): (Vec<ProjectId>, Vec<ProjectSlot>) = projects
            .into_iter()
            .map(|(id, mut snapshot)| {
                snapshot.set_revision(revision);
                (id, ProjectSlot::new(snapshot))
            })
            .unzip();
        let block: Arc<[ProjectSlot]> = slots.into();
        let directory: Directory = ids
            .into_iter()
            .enumerate()
            .map(|(at, id)| {
                let block = Arc::clone(&block);
                (id, SlotRef { block, at })
            })
            .collect();
        let retired = self.directory.swap(Arc::new(directory));
        // Whoever holds a retired slot's count sees it move.
        for slot in retired.values() {
            slot.changes.0.fetch_add(1, Ordering::Release);
        }
        self.set_revision(revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConnectionSpec;

    fn connection(id: ConnectionId, name: &str, integration: Option<&str>) -> Record {
        let spec = match integration {
            None => ConnectionSpec::project("acme", name),
            Some(i) => ConnectionSpec::integration("acme", i, name),
        }
        .build()
        .unwrap();
        Record::Connection(Arc::new(Connection::new(id, spec, None)))
    }

    fn snapshot() -> ProjectSnapshot {
        ProjectSnapshot::empty("acme".parse().unwrap())
    }

    #[test]
    fn the_name_index_follows_renames_and_removals() {
        let mut s = snapshot();
        let id = ConnectionId::random();
        let (crm, erp): (ConnectionName, ConnectionName) = ("crm".parse().unwrap(), "erp".parse().unwrap());
        s.put(Version(1), &connection(id, "crm", None));
        assert_eq!(s.by_name(None, &crm).map(|c| c.value.id()), Some(id));
        s.put(Version(2), &connection(id, "erp", None));
        assert!(s.by_name(None, &crm).is_none());
        assert_eq!(s.by_name(None, &erp).map(|c| c.version), Some(Version(2)));
        s.remove(&RecordKey::Connection(
            s.project().clone(),
            Scope::Project,
            erp.clone(),
        ));
        assert!(s.by_name(None, &erp).is_none());
        assert!(s.connection(id).is_none());
        assert_eq!(s.connection_count(), 0);
    }

    #[test]
    fn a_record_under_a_taken_key_replaces_the_connection_there() {
        let mut s = snapshot();
        let (first, second) = (ConnectionId::random(), ConnectionId::random());
        s.put(Version(1), &connection(first, "crm", Some("orders")));
        s.put(Version(2), &connection(second, "crm", Some("orders")));
        let orders: IntegrationId = "orders".parse().unwrap();
        let crm: ConnectionName = "crm".parse().unwrap();
        assert_eq!(s.by_name(Some(&orders), &crm).map(|c| c.value.id()), Some(second));
        assert!(s.connection(first).is_none());
        assert_eq!(s.connection_count(), 1);
        // Same name, other scope: a different key.
        s.put(Version(1), &connection(first, "crm", None));
        assert_eq!(s.by_name(None, &crm).map(|c| c.value.id()), Some(first));
        assert_eq!(s.connection_count(), 2);
    }

    /// A key of a generated connection: (integration scope?, name).
    type Key = (Option<u8>, u8);

    #[derive(Debug, Clone)]
    enum Op {
        /// Writes connection `id` (of a pool of 12) under a key.
        Put(u8, Key),
        /// Removes whatever is under a key.
        Remove(Key),
        /// Keeps a copy of the snapshot (and of the model) to check later.
        Copy,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let key = (proptest::option::of(0..2u8), 0..6u8);
        prop_oneof![
            5 => (0..12u8, key.clone()).prop_map(|(id, k)| Op::Put(id, k)),
            2 => key.prop_map(Op::Remove),
            1 => Just(Op::Copy),
        ]
    }

    /// What a snapshot should hold: key -> (id, version) and id -> key.
    #[derive(Debug, Clone, Default)]
    struct Model {
        by_key: std::collections::BTreeMap<Key, (u8, u64)>,
    }

    impl Model {
        fn put(&mut self, id: u8, key: Key, version: u64) {
            self.by_key.retain(|k, (i, _)| *i != id && *k != key);
            self.by_key.insert(key, (id, version));
        }
    }

    fn check(s: &ProjectSnapshot, model: &Model, ids: &[ConnectionId]) -> Result<(), String> {
        let integrations: Vec<IntegrationId> =
            ["orders", "billing"].iter().map(|i| i.parse().unwrap()).collect();
        if s.connection_count() != model.by_key.len() {
            return Err(format!(
                "{} connections, expected {}",
                s.connection_count(),
                model.by_key.len()
            ));
        }
        for scope in [None, Some(0u8), Some(1)] {
            for n in 0..6u8 {
                let name: ConnectionName = format!("c{n}").parse().unwrap();
                let integration = scope.map(|i| &integrations[usize::from(i)]);
                let found = s.by_name(integration, &name).map(|c| (c.value.id(), c.version.0));
                let expected = model
                    .by_key
                    .get(&(scope, n))
                    .map(|(i, v)| (ids[usize::from(*i)], *v));
                if found != expected {
                    return Err(format!("{scope:?} c{n}: {found:?}, expected {expected:?}"));
                }
            }
        }
        for (i, id) in ids.iter().enumerate() {
            let found = s
                .connection(*id)
                .map(|c| (c.value.scope().integration().cloned(), c.value.name().clone()));
            let expected =
                model
                    .by_key
                    .iter()
                    .find(|(_, (j, _))| usize::from(*j) == i)
                    .map(|((scope, n), _)| {
                        (
                            scope.map(|x| integrations[usize::from(x)].clone()),
                            format!("c{n}").parse::<ConnectionName>().unwrap(),
                        )
                    });
            if found != expected {
                return Err(format!("connection {i}: {found:?}, expected {expected:?}"));
            }
        }
        Ok(())
    }

    fn run_ops(ops: Vec<Op>) -> Result<(), String> {
        let ids: Vec<ConnectionId> = (0..12).map(|_| ConnectionId::random()).collect();
        let mut s = snapshot();
        let mut model = Model::default();
        let mut copies = Vec::new();
        for (k, op) in ops.into_iter().enumerate() {
            let version = k as u64 + 1;
            match op {
                Op::Put(id, (scope, n)) => {
                    let integration = scope.map(|i| ["orders", "billing"][usize::from(i)]);
                    let record = connection(ids[usize::from(id)], &format!("c{n}"), integration);
                    // The version the record replaces is its key's, however
                    // it is read.
                    let replaced = model.by_key.get(&(scope, n)).map(|(_, v)| Version(*v));
                    if s.version_under(&record) != replaced || s.version_of(&record.key()) != replaced {
                        return Err(format!(
                            "under {scope:?} c{n}: {:?} / {:?}, expected {replaced:?}",
                            s.version_under(&record),
                            s.version_of(&record.key())
                        ));
                    }
                    s.put(Version(version), &record);
                    model.put(id, (scope, n), version);
                }
                Op::Remove((scope, n)) => {
                    let scope_of = match scope {
                        None => Scope::Project,
                        Some(i) => Scope::Integration(["orders", "billing"][usize::from(i)].parse().unwrap()),
                    };
                    s.remove(&RecordKey::Connection(
                        s.project().clone(),
                        scope_of,
                        format!("c{n}").parse().unwrap(),
                    ));
                    model.by_key.remove(&(scope, n));
                }
                Op::Copy => copies.push((s.clone(), model.clone())),
            }
        }
        copies.push((s, model));
        for (s, model) in &copies {
            check(s, model, &ids)?;
        }
        Ok(())
    }

    proptest::proptest! {
        /// A catalog built from a store's records holds, for every project,
        /// the snapshot that putting each record in turn leaves (compared
        /// whole, table by table and shard by shard): connections that
        /// share no ID or key (built at once), and connections that do
        /// (one under another's key or ID replaces it).
        #[test]
        fn a_catalog_built_from_records_is_the_one_puts_in_turn_build(
            picks in proptest::collection::vec((0usize..300, 0u8..3, 0u16..300, proptest::bool::ANY), 0..300),
            unique in proptest::bool::ANY,
        ) {
            let ids: Vec<ConnectionId> = (0..300).map(|_| ConnectionId::random()).collect();
            let records: Vec<(Version, Record)> = picks
                .iter()
                .enumerate()
                .map(|(i, &(id, integration, name, second))| {
                    let (id, name) = if unique { (i, i as u16) } else { (id % 40, name % 30) };
                    let (project, name) = (if second { "p1" } else { "p0" }, format!("c{name}"));
                    let spec = match integration {
                        0 => ConnectionSpec::project(project, name.as_str()),
                        n => ConnectionSpec::integration(project, format!("int{n}").as_str(), name.as_str()),
                    }
                    .build()
                    .unwrap();
                    let record = Record::Connection(Arc::new(Connection::new(ids[id], spec, None)));
                    (Version(i as u64 + 1), record)
                })
                .collect();
            let catalog = Catalog::from_records(ResolvePolicy::default(), Revision(9), records.clone());
            for project in ["p0", "p1"] {
                let project: ProjectId = project.parse().unwrap();
                let mut expected = ProjectSnapshot::empty(project.clone());
                for (version, record) in records.iter().filter(|(_, r)| r.key().project() == &project) {
                    expected.put(*version, record);
                }
                expected.set_revision(Revision(9));
                match catalog.project(&project) {
                    Some(built) => proptest::prop_assert_eq!(format!("{built:?}"), format!("{expected:?}")),
                    None => proptest::prop_assert_eq!(expected.connection_count(), 0),
                }
            }
        }
    }

    proptest::proptest! {
        /// Every snapshot, and every copy taken along the way (which later
        /// writes leave alone), finds exactly the connections a plain model
        /// holds, by name and by ID: renames, a record taking another's
        /// key, removals.
        #[test]
        fn snapshots_and_their_copies_agree_with_a_model(ops in proptest::collection::vec(op(), 0..80)) {
            run_ops(ops).map_err(proptest::test_runner::TestCaseError::fail)?;
        }

        /// The same with hashes cut to two bits, so that names and IDs
        /// collide in both indexes (slots of equal value included).
        #[test]
        fn colliding_hashes_change_no_answer(ops in proptest::collection::vec(op(), 0..80)) {
            NARROW.with(|n| n.set(true));
            let result = run_ops(ops);
            NARROW.with(|n| n.set(false));
            result.map_err(proptest::test_runner::TestCaseError::fail)?;
        }
    }

    #[test]
    fn a_project_read_for_a_change_is_the_current_snapshot() {
        let project: ProjectId = "acme".parse().unwrap();
        let ids: Vec<ConnectionId> = (0..100).map(|_| ConnectionId::random()).collect();
        let records = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (Version(1), connection(*id, &format!("c{i}"), None)));
        let catalog = Catalog::from_records(ResolvePolicy::default(), Revision(1), records);
        let current = catalog.project(&project).unwrap();
        // A connection of the project, and an ID it does not hold; the
        // reads ahead are handed to `around` once.
        for id in [ids[42], ConnectionId::random()] {
            let mut calls = 0;
            let for_change = catalog
                .project_for_change(&project, id, |warm| {
                    calls += 1;
                    warm();
                })
                .unwrap();
            assert!(Arc::ptr_eq(&for_change, &current));
            assert_eq!(calls, 1);
        }
        let other: ProjectId = "other".parse().unwrap();
        assert!(
            catalog
                .project_for_change(&other, ids[0], |warm| warm())
                .is_none()
        );
    }

    #[test]
    fn a_catalog_built_whole_keeps_its_projects_slots_and_name_lists_together() {
        let projects: Vec<ProjectId> = ["acme", "beta", "gamma"]
            .iter()
            .map(|p| p.parse().unwrap())
            .collect();
        let records = projects.iter().map(|p| {
            let spec = ConnectionSpec::project(p.as_str(), "crm").build().unwrap();
            let c = Connection::new(ConnectionId::random(), spec, None);
            (Version(1), Record::Connection(Arc::new(c)))
        });
        let catalog = Catalog::from_records(ResolvePolicy::default(), Revision(1), records);
        assert_eq!(std::mem::align_of::<ProjectSlot>(), 64, "a cache line a slot");
        let directory = catalog.directory.load_full();
        let block = &directory[&projects[0]].block;
        assert_eq!(block.len(), 3);
        let mut places: Vec<usize> = projects
            .iter()
            .map(|p| {
                assert!(
                    Arc::ptr_eq(&directory[p].block, block),
                    "{p} in a block of its own"
                );
                assert_eq!(directory[p].current.load().project(), p);
                directory[p].at
            })
            .collect();
        places.sort_unstable();
        assert_eq!(places, [0, 1, 2]);
        // A project added later: a block of its own; the others stay.
        let delta: ProjectId = "delta".parse().unwrap();
        catalog.install(ProjectSnapshot::empty(delta.clone()));
        let next = catalog.directory.load_full();
        assert_eq!(next[&delta].block.len(), 1);
        assert!(projects.iter().all(|p| Arc::ptr_eq(&next[p].block, block)));
        // A write into a project of the block changes its slot only.
        let before: Vec<_> = projects.iter().map(|p| catalog.project(p).unwrap()).collect();
        let beta = catalog.current(&projects[1]).unwrap();
        let mut changed = (*before[1]).clone();
        changed.set_revision(Revision(2));
        catalog.install(changed);
        assert!(beta.changes.get() != beta.seen, "the change is counted");
        for (i, p) in projects.iter().enumerate() {
            let now = catalog.project(p).unwrap();
            assert_eq!(Arc::ptr_eq(&now, &before[i]), i != 1, "{p}");
        }
        assert_eq!(catalog.project(&projects[1]).unwrap().revision(), Revision(2));
        // Their per-name indexes share one list of groups; a rename in one
        // copies its own out, and every name is found where it is.
        let index = |p: &ProjectId| catalog.project(p).unwrap();
        let (acme, gamma) = (index(&projects[0]), index(&projects[2]));
        assert!(acme.by_name.shares_list_with(&gamma.by_name));
        assert!(acme.by_name.shares_list_with(&index(&projects[1]).by_name));
        let mut renamed = (*gamma).clone();
        let id = gamma.connections().next().unwrap().value.id();
        let spec = ConnectionSpec::project("gamma", "erp").build().unwrap();
        renamed.put(
            Version(2),
            &Record::Connection(Arc::new(Connection::new(id, spec, None))),
        );
        catalog.install(renamed);
        let gamma = index(&projects[2]);
        assert!(!gamma.by_name.shares_list_with(&acme.by_name));
        assert!(acme.by_name.shares_list_with(&index(&projects[1]).by_name));
        let (crm, erp): (ConnectionName, ConnectionName) = ("crm".parse().unwrap(), "erp".parse().unwrap());
        assert!(gamma.by_name(None, &crm).is_none());
        assert_eq!(gamma.by_name(None, &erp).map(|c| c.value.id()), Some(id));
        for p in &projects[..2] {
            assert_eq!(index(p).by_name(None, &crm).map(|c| c.value.project()), Some(p));
        }
    }

    #[test]
    fn an_update_under_the_same_key_leaves_the_name_index_shared() {
        let mut s = snapshot();
        let ids: Vec<ConnectionId> = (0..100).map(|_| ConnectionId::random()).collect();
        for (i, id) in ids.iter().enumerate() {
            s.put(Version(1), &connection(*id, &format!("c{i}"), None));
        }
        let before = s.clone();
        s.put(Version(2), &connection(ids[7], "c7", None));
        assert!(s.by_name.shares_all_with(&before.by_name));
        assert!(!s.connections.0.shares_all_with(&before.connections.0));
        assert_eq!(
            s.by_name(None, &"c7".parse().unwrap()).map(|c| c.version),
            Some(Version(2))
        );
        assert_eq!(
            before.by_name(None, &"c7".parse().unwrap()).map(|c| c.version),
            Some(Version(1))
        );
        // Nor is it read, here or for the version the update replaces.
        let record = connection(ids[8], "c8", None);
        let probes = NAME_PROBES.with(std::cell::Cell::get);
        assert_eq!(s.version_under(&record), Some(Version(1)));
        s.put(Version(2), &record);
        assert_eq!(NAME_PROBES.with(std::cell::Cell::get), probes);
        // A rename changes it.
        s.put(Version(3), &connection(ids[7], "renamed", None));
        assert!(!s.by_name.shares_all_with(&before.by_name));
        assert!(s.by_name(None, &"c7".parse().unwrap()).is_none());
        assert_eq!(s.connection_count(), 100);
    }

    #[test]
    fn many_connections_stay_findable_by_id_and_name_as_the_tables_grow() {
        let mut s = snapshot();
        let ids: Vec<ConnectionId> = (0..3000).map(|_| ConnectionId::random()).collect();
        for (i, id) in ids.iter().enumerate() {
            s.put(Version(1), &connection(*id, &format!("c{i}"), None));
        }
        for (i, id) in ids.iter().enumerate() {
            let name: ConnectionName = format!("c{i}").parse().unwrap();
            assert_eq!(s.by_name(None, &name).map(|c| c.value.id()), Some(*id));
            assert!(s.connection(*id).is_some());
        }
        assert_eq!(s.clone().connection_count(), 3000);
    }
}
