//! Memoized resolution: the answer for (project, integration, environment,
//! customer) kept per snapshot, so asking again between writes costs a
//! lookup and a reference count, not a resolution.
//!
//! An answer is handed out again only while the project's snapshot is the
//! one it was computed on (or carried over to). After a write, the next
//! request compares what the answer read (the integration's mappings, the
//! connection each mapping entry finds, their OAuth applications and
//! templates) in the new snapshot with what it read before: untouched, the
//! answer is carried over to the new snapshot; anything else, it is
//! resolved afresh. So a resolution after a write never returns the old
//! answer, and a write elsewhere in the project costs nothing but that
//! comparison.
//!
//! An answer holding values read from the host's cache of external secrets
//! is never handed out again (those values change without a write): the
//! memo keeps only that it reads them, so the next request resolves afresh
//! at once on the project's current snapshot, without the writers' lock
//! (the snapshot found, and kept by the answer, through the thread's stripe
//! of it, as for a resolution without a memo).
//!
//! A hit writes no memory other threads read: the shard's table is an
//! immutable copy loaded through `arc-swap` (each reader pays its debt on
//! a slot of its own), the answer is checked against its project's count
//! of changes with one load (no lookup of the project, no load of its
//! snapshot), hits (and misses) are counted on a stripe the thread leases
//! for itself, the clock's mark is written only when it is clear, and the
//! copy of the answer handed out shares it by the thread's own stripe of it
//! (a padded `Arc` to the answer, made on the thread's first hit), not by
//! the answer's one reference count. Writers of a shard (a miss, a
//! carry-over, an eviction) take the shard's mutex and swap in a new copy
//! of its table.

mod handles;
mod striped;

use std::any::Any;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use arc_swap::ArcSwap;
use hashbrown::{DefaultHashBuilder, HashTable};

pub(crate) use self::handles::SnapshotHandles;
pub(super) use self::handles::Stripe;
use self::striped::Striped;
use super::env::AnswerStripes;
use super::{ResolveError, ResolveRequest, ResolvedEnv, Resolver, find_connection, resolve_owned};
use crate::catalog::{Catalog, Changes, ProjectSnapshot};
use crate::model::{CustomerId, IntegrationId, ProjectId};

/// A bounded memo of resolutions (see [`ResolveMemo::new`]).
///
/// Owned by a [`Registry`](crate::registry::Registry), configured with
/// [`RegistryBuilder::resolve_memo`](crate::registry::RegistryBuilder::resolve_memo).
pub struct ResolveMemo {
    shards: Box<[Shard]>,
    /// Entries each shard keeps at most.
    per_shard: usize,
    hasher: DefaultHashBuilder,
    hits: Striped,
    misses: Striped,
    carried: AtomicU64,
    evictions: AtomicU64,
    /// The stripes first resolutions keep their snapshot by.
    handles: SnapshotHandles,
}

/// What a registry's memo of resolutions has done so far (see
/// [`RegistryBuilder::resolve_memo`](crate::registry::RegistryBuilder::resolve_memo)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MemoStats {
    /// Answers handed out again on the snapshot they were computed on (or
    /// carried over to).
    pub hits: u64,
    /// Resolutions computed afresh (nothing kept, what the kept answer
    /// read has changed, or the answer reads external secrets).
    pub misses: u64,
    /// Answers carried over to a newer snapshot because the writes in
    /// between touched nothing they read.
    pub carried_over: u64,
    /// Answers dropped to make room.
    pub evictions: u64,
    /// Answers kept now (a request whose answer reads the host's cache of
    /// external secrets counts too: the memo keeps that it does, and
    /// resolves it afresh each time).
    pub entries: usize,
    /// The most answers kept.
    pub capacity: usize,
}

/// One shard: the table readers load, and the lock its writers take.
struct Shard {
    /// Replaced whole by every change (readers never wait).
    table: ArcSwap<Table>,
    /// Serializes the shard's writers; holds the clock hand: the next slot
    /// eviction looks at.
    writer: Mutex<usize>,
}

/// A shard's entries, as one immutable copy: a clock of entries and their
/// index by request.
#[derive(Clone, Default)]
struct Table {
    /// Positions in `slots`, by the request's hash.
    index: HashTable<usize>,
    slots: Vec<Arc<Entry>>,
}

/// A kept answer.
struct Entry {
    hash: u64,
    request: ResolveRequest,
    /// The project's count of changes, and its value when the answer was
    /// computed on (or carried over to) the snapshot: the answer holds
    /// while the count stays there.
    changes: Arc<Changes>,
    seen: u64,
    reads: Arc<Reads>,
    kept: Kept,
    /// The answer's stripes: a hit hands out a copy sharing it by the
    /// calling thread's stripe, so threads asking for one answer write no
    /// reference count in common.
    stripes: AnswerStripes,
    /// Set on a hit when clear, cleared as the clock hand passes.
    referenced: AtomicBool,
}

impl Entry {
    /// Whether the project has not changed since the answer was computed
    /// (or carried over).
    #[inline]
    fn holds(&self) -> bool {
        self.changes.get() == self.seen
    }

    /// Marks the entry for the clock (a write only when the mark is clear,
    /// so readers of a hot entry do not pass its line between them).
    #[inline]
    fn mark(&self) {
        if !self.referenced.load(Ordering::Relaxed) {
            self.referenced.store(true, Ordering::Relaxed);
        }
    }
}

/// What an entry keeps for its request.
enum Kept {
    /// The answer, handed out again while it holds.
    Answer(ResolvedEnv),
    /// The answer reads values from the host's cache of external secrets,
    /// which change without a write: it is resolved afresh at every
    /// request, on the project's current snapshot, without the writer's
    /// lock, its answer keeping the thread's stripe of the snapshot (see
    /// [`SnapshotHandles`]).
    Afresh,
}

/// A record an answer read, by identity (`None`: looked up, not there).
type Read = Option<Weak<dyn Any + Send + Sync>>;

/// What a resolution of an integration reads from its project's snapshot,
/// in order: the mappings, then for each mapping entry the connection it
/// finds (rules 1 and 2) and that connection's OAuth application and
/// template. Records are compared by identity: a write replaces a record
/// with a new one, and an unchanged record is shared between snapshots.
#[derive(Default)]
struct Reads(Vec<Read>);

impl Reads {
    fn of(snapshot: &ProjectSnapshot, integration: &IntegrationId) -> Reads {
        let mut reads = Vec::new();
        visit_reads(snapshot, integration, |r| reads.push(r.map(Shared::weak)));
        Reads(reads)
    }

    /// Whether `snapshot` holds exactly the records these were.
    fn hold_in(&self, snapshot: &ProjectSnapshot, integration: &IntegrationId) -> bool {
        let mut same = true;
        let mut kept = self.0.iter();
        visit_reads(snapshot, integration, |now| {
            same &= match (kept.next(), now) {
                (Some(None), None) => true,
                (Some(Some(was)), Some(now)) => std::ptr::addr_eq(Weak::as_ptr(was), now.address()),
                _ => false,
            };
        });
        same && kept.next().is_none()
    }
}

/// A shared record of a snapshot, of any kind.
trait Shared {
    fn address(&self) -> *const ();
    fn weak(&self) -> Weak<dyn Any + Send + Sync>;
}

impl<T: Any + Send + Sync> Shared for Arc<T> {
    fn address(&self) -> *const () {
        Arc::as_ptr(self).cast()
    }
    fn weak(&self) -> Weak<dyn Any + Send + Sync> {
        Arc::downgrade(self) as Weak<dyn Any + Send + Sync>
    }
}

/// Calls `f` on every record a resolution of `integration` reads, in the
/// order [`Reads`] keeps them (see there): what [`walk`](super::walk) finds
/// and [`lookup`](super::lookup) reads.
fn visit_reads(
    snapshot: &ProjectSnapshot,
    integration: &IntegrationId,
    mut f: impl FnMut(Option<&dyn Shared>),
) {
    let Some(mappings) = snapshot.mappings(integration) else {
        f(None);
        return;
    };
    f(Some(&mappings.value));
    for use_ in mappings.value.uses() {
        let Some(found) = find_connection(snapshot, integration, &use_.reference) else {
            f(None);
            continue;
        };
        let connection = &found.value;
        f(Some(connection));
        if let Some(owner) = connection.oauth_app() {
            f(snapshot.app(owner).map(|a| &a.value as &dyn Shared));
        }
        if let Some(name) = connection.spec().template() {
            f(snapshot.template(name).map(|t| &t.value as &dyn Shared));
        }
    }
}

/// Shards for `capacity` entries: one for a small memo, else 8, so writers
/// of different requests rarely wait on one lock.
fn shard_count(capacity: usize) -> usize {
    if capacity < 64 { 1 } else { 8 }
}

impl ResolveMemo {
    /// The default capacity: answers kept at most (a clock evicts the least
    /// recently asked beyond it). An answer costs its variables (about 300
    /// bytes each) and a little bookkeeping.
    pub const DEFAULT_CAPACITY: usize = 1024;

    /// A memo keeping at most about `capacity` answers (rounded up to a
    /// multiple of its shard count); `0` keeps none.
    pub fn new(capacity: usize) -> Self {
        let shards = shard_count(capacity);
        let per_shard = capacity.div_ceil(shards);
        ResolveMemo {
            shards: (0..shards)
                .map(|_| Shard {
                    table: ArcSwap::default(),
                    writer: Mutex::new(0),
                })
                .collect(),
            per_shard,
            hasher: DefaultHashBuilder::default(),
            hits: Striped::new(),
            misses: Striped::new(),
            carried: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            handles: SnapshotHandles::new(),
        }
    }

    /// Lets go of what the memo keeps of `project`'s snapshot for first
    /// resolutions: called after a new one is installed, so the replaced
    /// snapshot is kept only by answers (the memo's kept answers
    /// included).
    pub(crate) fn released(&self, project: &ProjectId) {
        self.handles.released(project);
    }

    /// [`ResolveMemo::released`] for every project (the catalog was
    /// replaced whole).
    pub(crate) fn released_all(&self) {
        self.handles.release_all();
    }

    /// The most answers kept (`usize::MAX` for a memo made with a
    /// capacity too large to round up).
    pub fn capacity(&self) -> usize {
        self.per_shard.saturating_mul(self.shards.len())
    }

    /// What the memo has done so far.
    pub fn stats(&self) -> MemoStats {
        MemoStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            carried_over: self.carried.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.shards.iter().map(|s| s.table.load().slots.len()).sum(),
            capacity: self.capacity(),
        }
    }

    /// The hash of a request: foldhash over its parts' text (see
    /// [`parts`]), each part once.
    #[inline]
    fn hash(&self, request: &ResolveRequest) -> u64 {
        let mut h = self.hasher.build_hasher();
        for part in parts(request) {
            // foldhash mixes each part's length into the hash.
            h.write(part.as_bytes());
        }
        h.finish()
    }

    fn shard(&self, hash: u64) -> &Shard {
        // The middle bits: the table inside uses the low and the top ones.
        &self.shards[(hash >> 32) as usize % self.shards.len()]
    }

    /// Resolves `request` against `catalog`, from the memo when the answer
    /// kept still holds.
    pub(crate) fn resolve(
        &self,
        catalog: &Catalog,
        request: &ResolveRequest,
    ) -> Result<ResolvedEnv, ResolveError> {
        if self.per_shard == 0 {
            return self.handles.resolve(catalog, request);
        }
        let hash = self.hash(request);
        // The fast path: the answer computed on (or carried over to) the
        // project's current snapshot.
        let table = self.shard(hash).table.load();
        if let Some(entry) = table.find(hash, request)
            && entry.holds()
        {
            entry.mark();
            match &entry.kept {
                Kept::Answer(env) => {
                    self.hits.add_one();
                    return Ok(env.on_stripe(&entry.stripes, striped::mine()));
                }
                Kept::Afresh => {
                    // On the project's current snapshot (this one, unless
                    // a write came in since), kept by the thread's stripe
                    // of it rather than the snapshot's one count.
                    drop(table);
                    self.misses.add_one();
                    return self.handles.resolve(catalog, request);
                }
            }
        }
        drop(table);
        self.refresh(catalog, request, hash)
    }

    /// Resolves `request` on `snapshot` (its project's current one): an
    /// answer that reads the host's cache of external secrets.
    #[inline(never)]
    fn afresh(
        &self,
        catalog: &Catalog,
        request: &ResolveRequest,
        snapshot: Arc<ProjectSnapshot>,
    ) -> Result<ResolvedEnv, ResolveError> {
        self.misses.add_one();
        resolve_owned(snapshot, catalog.policy(), request)
    }

    /// The slow path: carries the kept answer over to the current snapshot
    /// if what it read is unchanged, else resolves afresh; keeps the result.
    /// Never inlined, so the fast path stays small (its frame, the
    /// registers it saves).
    #[inline(never)]
    fn refresh(
        &self,
        catalog: &Catalog,
        request: &ResolveRequest,
        hash: u64,
    ) -> Result<ResolvedEnv, ResolveError> {
        let Some(current) = catalog.current(&request.project) else {
            // No such project: nothing to keep.
            return catalog.resolve(request);
        };
        let snapshot = &current.snapshot;
        // An answer keeps the snapshot: a reference count of its own.
        let resolve = || resolve_owned(Arc::clone(snapshot), catalog.policy(), request);
        // Records the store holds but this replica cannot read: resolution
        // reports them, and nothing about them is kept.
        if !snapshot.unreadable().is_empty() {
            self.misses.add_one();
            return resolve();
        }
        let shard = self.shard(hash);
        {
            let writer = shard.writer.lock().unwrap_or_else(|e| e.into_inner());
            let table = shard.table.load_full();
            if let Some(i) = table.position(hash, request) {
                let kept = &table.slots[i];
                if Arc::ptr_eq(&kept.changes, &current.changes) && kept.seen == current.seen {
                    // Another caller refreshed it meanwhile.
                    kept.mark();
                    match &kept.kept {
                        Kept::Answer(env) => {
                            self.hits.add_one();
                            return Ok(env.on_stripe(&kept.stripes, striped::mine()));
                        }
                        Kept::Afresh => {
                            drop(writer);
                            return self.afresh(catalog, request, Arc::clone(snapshot));
                        }
                    }
                }
                if kept.reads.hold_in(snapshot, &request.integration) {
                    let (kept_now, env) = match &kept.kept {
                        Kept::Answer(env) => {
                            let env = env.clone().at(snapshot.revision());
                            (Kept::Answer(env.clone()), Some(env))
                        }
                        Kept::Afresh => (Kept::Afresh, None),
                    };
                    let carried = Entry {
                        hash,
                        request: kept.request.clone(),
                        changes: Arc::clone(&current.changes),
                        seen: current.seen,
                        reads: Arc::clone(&kept.reads),
                        kept: kept_now,
                        stripes: AnswerStripes::new(striped::OWN + 1),
                        referenced: AtomicBool::new(true),
                    };
                    let mut next = Table::clone(&table);
                    next.slots[i] = Arc::new(carried);
                    shard.table.store(Arc::new(next));
                    self.carried.fetch_add(1, Ordering::Relaxed);
                    match env {
                        Some(env) => return Ok(env),
                        None => {
                            drop(writer);
                            return self.afresh(catalog, request, Arc::clone(snapshot));
                        }
                    }
                }
            }
        }
        self.misses.add_one();
        // Resolved without a lock held; what it read is taken from the same
        // snapshot, so the two agree whatever writes happen meanwhile (and
        // the count was read before the snapshot was loaded: a write in
        // between leaves the answer kept under an older count, so it is
        // checked again on the next request, never handed out stale).
        let env = resolve()?;
        // Values from an external store change without a write: they are
        // read from the host's cache on every resolution. What is kept then
        // is only that, so the next request resolves without the lock.
        let kept = match env.has_external_values() {
            true => Kept::Afresh,
            false => Kept::Answer(env.clone()),
        };
        let entry = Entry {
            hash,
            request: request.clone(),
            changes: Arc::clone(&current.changes),
            seen: current.seen,
            reads: Arc::new(Reads::of(snapshot, &request.integration)),
            kept,
            stripes: AnswerStripes::new(striped::OWN + 1),
            referenced: AtomicBool::new(false),
        };
        let mut hand = shard.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = Table::clone(&shard.table.load());
        if let Some(i) = next.position(hash, request) {
            next.slots[i] = Arc::new(entry);
        } else {
            if next.slots.len() >= self.per_shard && next.evict_one(&mut hand) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
            next.insert(entry);
        }
        shard.table.store(Arc::new(next));
        Ok(env)
    }
}

/// A request's parts as text: project, integration, environment and
/// customer (empty without one: no customer ID is). Two requests are equal
/// exactly when their parts are; hashing and comparing the text directly
/// takes each identifier's text once.
#[inline]
fn parts(request: &ResolveRequest) -> [&str; 4] {
    [
        request.project.as_str(),
        request.integration.as_str(),
        request.environment.as_str(),
        request.customer.as_ref().map_or("", CustomerId::as_str),
    ]
}

/// Whether two requests' parts (see [`parts`]) are the same text.
#[inline]
fn same_parts(a: [&str; 4], b: [&str; 4]) -> bool {
    a.iter()
        .zip(b)
        .all(|(a, b)| same_text(a.as_bytes(), b.as_bytes()))
}

/// Whether `a` and `b` are the same bytes: for identifiers (at most a few
/// dozen bytes), compared a word at a time in place rather than through
/// `memcmp` (whose short-length path, a masked vector compare, took two
/// thirds of a hit's time on this machine's EPYC).
#[inline]
fn same_text(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        // Two half words, overlapping (or bytes, under four).
        let half = |s: &[u8], i: usize| {
            s.get(i..i + 4)
                .map(|w| u32::from_ne_bytes(w.try_into().unwrap_or_default()))
        };
        return if n < 4 {
            a.iter().zip(b).all(|(x, y)| x == y)
        } else {
            half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4)
        };
    }
    // Whole words, then the last word (overlapping the one before).
    let word = |s: &[u8], i: usize| {
        s.get(i..i + 8)
            .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or_default()))
    };
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

impl Table {
    #[inline]
    fn position(&self, hash: u64, request: &ResolveRequest) -> Option<usize> {
        let wanted = parts(request);
        self.index
            .find(hash, |&i| same_parts(parts(&self.slots[i].request), wanted))
            .copied()
    }

    #[inline]
    fn find(&self, hash: u64, request: &ResolveRequest) -> Option<&Entry> {
        self.position(hash, request).map(|i| &*self.slots[i])
    }

    fn insert(&mut self, entry: Entry) {
        let i = self.slots.len();
        let hash = entry.hash;
        self.slots.push(Arc::new(entry));
        let slots = &self.slots;
        self.index.insert_unique(hash, i, |&j| slots[j].hash);
    }

    /// The clock, with its hand at `hand`: passes referenced entries
    /// (clearing the mark) and evicts the first unreferenced one. `false`
    /// if there is nothing to evict.
    fn evict_one(&mut self, hand: &mut usize) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        // Two turns at most: the first clears every mark.
        for _ in 0..2 * self.slots.len() {
            if *hand >= self.slots.len() {
                *hand = 0;
            }
            let entry = &self.slots[*hand];
            if entry.referenced.swap(false, Ordering::Relaxed) {
                *hand += 1;
                continue;
            }
            self.remove(*hand);
            return true;
        }
        false
    }

    /// Removes the entry at `i`; the last one takes its place.
    fn remove(&mut self, i: usize) {
        let hash = self.slots[i].hash;
        if let Ok(entry) = self.index.find_entry(hash, |&j| j == i) {
            entry.remove();
        }
        let last = self.slots.len() - 1;
        self.slots.swap_remove(i);
        if i != last {
            let moved = self.slots[i].hash;
            if let Some(p) = self.index.find_mut(moved, |&j| j == last) {
                *p = i;
            }
        }
    }
}

impl fmt::Debug for ResolveMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveMemo")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Connection, ConnectionId, ConnectionSpec, Mappings, Param, Record, ResolvePolicy, Revision, Version,
    };

    fn request(customer: usize) -> ResolveRequest {
        ResolveRequest::parse("acme", "orders", "production")
            .unwrap()
            .for_customer(format!("c{customer}"))
            .unwrap()
    }

    fn entry(memo: &ResolveMemo, customer: usize) -> Entry {
        let request = request(customer);
        Entry {
            hash: memo.hash(&request),
            kept: Kept::Answer(ResolvedEnv::empty(request.clone())),
            request,
            changes: Arc::default(),
            seen: 0,
            reads: Arc::default(),
            stripes: AnswerStripes::new(1),
            referenced: AtomicBool::new(false),
        }
    }

    #[test]
    fn the_clock_evicts_unreferenced_entries_first_and_keeps_the_index_right() {
        let memo = ResolveMemo::new(4);
        let mut table = Table::default();
        let mut hand = 0;
        for c in 0..4 {
            table.insert(entry(&memo, c));
        }
        table.slots[0].referenced.store(true, Ordering::Relaxed);
        table.slots[2].referenced.store(true, Ordering::Relaxed);
        assert!(table.evict_one(&mut hand));
        // Entry 1 went (0 was referenced); the last one moved into its place.
        let find = |table: &Table, c: usize| {
            let r = request(c);
            table.find(memo.hash(&r), &r).is_some()
        };
        assert!(!find(&table, 1));
        for c in [0, 2, 3] {
            assert!(find(&table, c), "customer {c} is still kept");
        }
        assert!(table.evict_one(&mut hand));
        assert_eq!(table.slots.len(), 2);
        // Everything left is still found through the index.
        for s in &table.slots {
            assert!(table.find(s.hash, &s.request).is_some());
        }
    }

    /// A project `acme` whose integration `orders` maps `crm`'s `Url`
    /// (default `url`) to `CRM_URL`.
    /// Runs `f` on `threads` threads, each keeping what it made (and so
    /// its stripe lease) until every thread has made it; their results, in
    /// thread order.
    pub(super) fn on_threads_alive_at_once<T: Send>(threads: usize, f: impl Fn() -> T + Sync) -> Vec<T> {
        // No test exhausting the stripes runs meanwhile.
        let _leases = super::striped::LEASES
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let barrier = std::sync::Barrier::new(threads);
        std::thread::scope(|s| {
            let spawned: Vec<_> = (0..threads)
                .map(|_| {
                    s.spawn(|| {
                        let made = f();
                        barrier.wait();
                        made
                    })
                })
                .collect();
            spawned.into_iter().map(|t| t.join().unwrap()).collect()
        })
    }

    pub(super) fn records(url: &str) -> Vec<(Version, Record)> {
        let spec = ConnectionSpec::project("acme", "crm")
            .param(Param::plain("Url").default(url))
            .build()
            .unwrap();
        let connection = Connection::new(ConnectionId::random(), spec, None);
        let mappings = Mappings::of("acme", "orders")
            .by_name("crm", [("Url", "CRM_URL")])
            .build()
            .unwrap();
        vec![
            (Version(1), Record::Connection(Arc::new(connection))),
            (Version(1), Record::Mappings(Arc::new(mappings))),
        ]
    }

    /// A catalog holding [`records`] of `url` at revision 1.
    pub(super) fn catalog(url: &str) -> Catalog {
        Catalog::from_records(ResolvePolicy::default(), Revision(1), records(url))
    }

    #[test]
    fn a_catalog_replaced_whole_is_never_answered_from_the_one_before() {
        let catalog = catalog("https://a.example");
        let memo = ResolveMemo::new(16);
        let request = ResolveRequest::parse("acme", "orders", "production").unwrap();
        let first = memo.resolve(&catalog, &request).unwrap();
        assert_eq!(first.expose("CRM_URL"), Some("https://a.example"));
        assert!(
            memo.resolve(&catalog, &request)
                .unwrap()
                .shares_answer_with(&first)
        );
        // A new directory (a resynchronization): the project's slot is a
        // new one, and the kept answer's count on the old slot moved.
        catalog.replace_all(Revision(2), records("https://b.example"), Vec::new());
        let after = memo.resolve(&catalog, &request).unwrap();
        assert_eq!(after.expose("CRM_URL"), Some("https://b.example"));
        assert_eq!(after.revision(), Revision(2));
        // Kept again on the new slot.
        assert!(
            memo.resolve(&catalog, &request)
                .unwrap()
                .shares_answer_with(&after)
        );
        // The project gone: nothing of it is answered.
        catalog.replace_all(Revision(3), Vec::new(), Vec::new());
        assert!(memo.resolve(&catalog, &request).unwrap().is_empty());
        let stats = memo.stats();
        assert_eq!((stats.hits, stats.misses), (2, 2), "{stats:?}");
    }

    #[test]
    fn hits_on_threads_alive_at_once_share_the_answer_by_stripes_of_their_own() {
        let catalog = catalog("https://a.example");
        let memo = ResolveMemo::new(16);
        let request = ResolveRequest::parse("acme", "orders", "production").unwrap();
        let first = memo.resolve(&catalog, &request).unwrap();
        assert_eq!(first.stripe_address(), None, "a miss hands out the answer itself");
        let threads = 3;
        let hits = on_threads_alive_at_once(threads, || {
            let hit = memo.resolve(&catalog, &request).unwrap();
            let again = memo.resolve(&catalog, &request).unwrap();
            (hit, again)
        });
        for (i, (hit, again)) in hits.iter().enumerate() {
            assert!(hit.shares_answer_with(&first) && again.shares_answer_with(&first));
            assert!(hit.stripe_address().is_some());
            assert_eq!(
                hit.stripe_address(),
                again.stripe_address(),
                "thread {i}: one stripe"
            );
            for (other, _) in &hits[i + 1..] {
                assert_ne!(
                    hit.stripe_address(),
                    other.stripe_address(),
                    "two threads, two stripes"
                );
            }
        }
        assert_eq!(memo.stats().hits, 2 * threads as u64);
    }

    #[test]
    fn text_is_the_same_exactly_when_every_byte_is() {
        let text = "abcdefghijklmnopqrstuvwxyz0123456789-_.abcdefghijklmnopqrstuvwxy";
        for n in 0..=text.len() {
            let a = &text.as_bytes()[..n];
            assert!(same_text(a, a));
            let copy = a.to_vec();
            assert!(same_text(a, &copy), "{n} bytes, another copy");
            for i in 0..n {
                let mut other = copy.clone();
                other[i] ^= 1;
                assert!(!same_text(a, &other), "{n} bytes, byte {i} differs");
            }
            if n > 0 {
                assert!(!same_text(a, &a[..n - 1]), "{n} bytes against a prefix");
            }
        }
        let r = request(7);
        assert!(same_parts(parts(&r), parts(&r.clone())));
        assert!(!same_parts(parts(&r), parts(&request(8))));
        let no_customer = ResolveRequest::parse("acme", "orders", "production").unwrap();
        assert!(!same_parts(parts(&r), parts(&no_customer)));
    }

    #[test]
    fn capacity_is_split_over_shards_and_zero_keeps_nothing() {
        assert_eq!(ResolveMemo::new(0).capacity(), 0);
        assert_eq!(ResolveMemo::new(10).capacity(), 10);
        assert_eq!(ResolveMemo::new(1000).capacity(), 1000);
        assert_eq!(ResolveMemo::new(1001).capacity(), 1008);
    }
}
