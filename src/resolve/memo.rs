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

use std::any::Any;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};

use hashbrown::{DefaultHashBuilder, HashTable};

use super::{ProjectView, ResolveError, ResolveRequest, ResolvedEnv, Resolver, find_connection};
use crate::catalog::{Catalog, ProjectSnapshot};
use crate::model::IntegrationId;

/// A bounded memo of resolutions (see [`ResolveMemo::new`]).
///
/// Owned by a [`Registry`](crate::registry::Registry), configured with
/// [`RegistryBuilder::resolve_memo`](crate::registry::RegistryBuilder::resolve_memo).
pub struct ResolveMemo {
    shards: Box<[RwLock<Shard>]>,
    /// Entries each shard keeps at most.
    per_shard: usize,
    hasher: DefaultHashBuilder,
    hits: AtomicU64,
    misses: AtomicU64,
    carried: AtomicU64,
    evictions: AtomicU64,
}

/// What a registry's memo of resolutions has done so far (see
/// [`RegistryBuilder::resolve_memo`](crate::registry::RegistryBuilder::resolve_memo)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MemoStats {
    /// Answers handed out again on the snapshot they were computed on (or
    /// carried over to).
    pub hits: u64,
    /// Resolutions computed afresh (nothing kept, or what the kept answer
    /// read has changed).
    pub misses: u64,
    /// Answers carried over to a newer snapshot because the writes in
    /// between touched nothing they read.
    pub carried_over: u64,
    /// Answers dropped to make room.
    pub evictions: u64,
    /// Answers kept now.
    pub entries: usize,
    /// The most answers kept.
    pub capacity: usize,
}

/// One shard: a clock of entries and their index by request.
struct Shard {
    /// Positions in `slots`, by the request's hash.
    index: HashTable<usize>,
    slots: Vec<Slot>,
    /// The clock hand: the next slot eviction looks at.
    hand: usize,
}

struct Slot {
    hash: u64,
    request: ResolveRequest,
    /// The snapshot the answer holds on: pointer identity (the weak
    /// reference keeps the address from being reused).
    snapshot: Weak<ProjectSnapshot>,
    reads: Reads,
    env: ResolvedEnv,
    /// Set on every hit, cleared as the clock hand passes.
    referenced: AtomicBool,
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
                .map(|_| {
                    RwLock::new(Shard {
                        index: HashTable::new(),
                        slots: Vec::new(),
                        hand: 0,
                    })
                })
                .collect(),
            per_shard,
            hasher: DefaultHashBuilder::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            carried: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// The most answers kept.
    pub fn capacity(&self) -> usize {
        self.per_shard * self.shards.len()
    }

    /// What the memo has done so far.
    pub fn stats(&self) -> MemoStats {
        MemoStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            carried_over: self.carried.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self
                .shards
                .iter()
                .map(|s| s.read().map_or(0, |s| s.slots.len()))
                .sum(),
            capacity: self.capacity(),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
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
            return catalog.resolve(request);
        }
        let hash = self.hasher.hash_one(request);
        let shard = self.shard(hash);
        // The fast path: the answer computed on (or carried over to) the
        // project's current snapshot.
        let hit = catalog.with_project(&request.project, |snapshot| {
            let shard = shard.read().unwrap_or_else(|e| e.into_inner());
            let slot = shard.find(hash, request)?;
            if !std::ptr::eq(slot.snapshot.as_ptr(), snapshot) {
                return None;
            }
            if !slot.referenced.load(Ordering::Relaxed) {
                slot.referenced.store(true, Ordering::Relaxed);
            }
            Some(slot.env.clone())
        });
        match hit {
            Some(Some(env)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Ok(env)
            }
            // No such project: nothing to keep.
            None => catalog.resolve(request),
            Some(None) => self.refresh(catalog, request, hash),
        }
    }

    /// The slow path: carries the kept answer over to the current snapshot
    /// if what it read is unchanged, else resolves afresh; keeps the result.
    fn refresh(
        &self,
        catalog: &Catalog,
        request: &ResolveRequest,
        hash: u64,
    ) -> Result<ResolvedEnv, ResolveError> {
        let Some(snapshot) = catalog.project(&request.project) else {
            return catalog.resolve(request);
        };
        let view = ProjectView::of(&snapshot, catalog.policy());
        // Records the store holds but this replica cannot read: resolution
        // reports them, and nothing about them is kept.
        if !snapshot.unreadable().is_empty() {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return view.resolve(request);
        }
        let shard = self.shard(hash);
        {
            let mut guard = shard.write().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = guard.find_mut(hash, request) {
                if std::ptr::eq(slot.snapshot.as_ptr(), Arc::as_ptr(&snapshot)) {
                    // Another caller refreshed it meanwhile.
                    slot.referenced.store(true, Ordering::Relaxed);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(slot.env.clone());
                }
                if slot.reads.hold_in(&snapshot, &request.integration) {
                    slot.snapshot = Arc::downgrade(&snapshot);
                    slot.env = slot.env.clone().at(snapshot.revision());
                    slot.referenced.store(true, Ordering::Relaxed);
                    self.carried.fetch_add(1, Ordering::Relaxed);
                    return Ok(slot.env.clone());
                }
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        // Resolved without a lock held; what it read is taken from the same
        // snapshot, so the two agree whatever writes happen meanwhile.
        let env = view.resolve(request)?;
        if env.has_external_values() {
            // Values from an external store change without a write: they
            // are read from the host's cache on every resolution.
            return Ok(env);
        }
        let reads = Reads::of(&snapshot, &request.integration);
        let mut guard = shard.write().unwrap_or_else(|e| e.into_inner());
        let slot = Slot {
            hash,
            request: request.clone(),
            snapshot: Arc::downgrade(&snapshot),
            reads,
            env: env.clone(),
            referenced: AtomicBool::new(false),
        };
        if let Some(old) = guard.find_mut(hash, request) {
            *old = slot;
        } else {
            if guard.slots.len() >= self.per_shard && guard.evict_one() {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
            guard.insert(slot);
        }
        Ok(env)
    }
}

impl Shard {
    fn position(&self, hash: u64, request: &ResolveRequest) -> Option<usize> {
        self.index
            .find(hash, |&i| self.slots[i].request == *request)
            .copied()
    }

    fn find(&self, hash: u64, request: &ResolveRequest) -> Option<&Slot> {
        self.position(hash, request).map(|i| &self.slots[i])
    }

    fn find_mut(&mut self, hash: u64, request: &ResolveRequest) -> Option<&mut Slot> {
        self.position(hash, request).map(|i| &mut self.slots[i])
    }

    fn insert(&mut self, slot: Slot) {
        let i = self.slots.len();
        let hash = slot.hash;
        self.slots.push(slot);
        let slots = &self.slots;
        self.index.insert_unique(hash, i, |&j| slots[j].hash);
    }

    /// The clock: passes referenced slots (clearing the mark) and evicts the
    /// first unreferenced one. `false` if there is nothing to evict.
    fn evict_one(&mut self) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        // Two turns at most: the first clears every mark.
        for _ in 0..2 * self.slots.len() {
            if self.hand >= self.slots.len() {
                self.hand = 0;
            }
            let slot = &self.slots[self.hand];
            if slot.referenced.swap(false, Ordering::Relaxed) {
                self.hand += 1;
                continue;
            }
            self.remove(self.hand);
            return true;
        }
        false
    }

    /// Removes the slot at `i`; the last one takes its place.
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

    fn request(customer: usize) -> ResolveRequest {
        ResolveRequest::parse("acme", "orders", "production")
            .unwrap()
            .for_customer(format!("c{customer}"))
            .unwrap()
    }

    fn slot(memo: &ResolveMemo, customer: usize) -> Slot {
        let request = request(customer);
        Slot {
            hash: memo.hasher.hash_one(&request),
            env: ResolvedEnv::empty(request.clone()),
            request,
            snapshot: Weak::new(),
            reads: Reads::default(),
            referenced: AtomicBool::new(false),
        }
    }

    #[test]
    fn the_clock_evicts_unreferenced_slots_first_and_keeps_the_index_right() {
        let memo = ResolveMemo::new(4);
        let mut shard = Shard {
            index: HashTable::new(),
            slots: Vec::new(),
            hand: 0,
        };
        for c in 0..4 {
            shard.insert(slot(&memo, c));
        }
        shard.slots[0].referenced.store(true, Ordering::Relaxed);
        shard.slots[2].referenced.store(true, Ordering::Relaxed);
        assert!(shard.evict_one());
        // Slot 1 went (0 was referenced); the last one moved into its place.
        let find = |shard: &Shard, c: usize| {
            let r = request(c);
            shard.find(memo.hasher.hash_one(&r), &r).is_some()
        };
        assert!(!find(&shard, 1));
        for c in [0, 2, 3] {
            assert!(find(&shard, c), "customer {c} is still kept");
        }
        assert!(shard.evict_one());
        assert_eq!(shard.slots.len(), 2);
        // Everything left is still found through the index.
        for s in &shard.slots {
            assert!(shard.find(s.hash, &s.request).is_some());
        }
    }

    #[test]
    fn capacity_is_split_over_shards_and_zero_keeps_nothing() {
        assert_eq!(ResolveMemo::new(0).capacity(), 0);
        assert_eq!(ResolveMemo::new(10).capacity(), 10);
        assert_eq!(ResolveMemo::new(1000).capacity(), 1000);
        assert_eq!(ResolveMemo::new(1001).capacity(), 1008);
    }
}
