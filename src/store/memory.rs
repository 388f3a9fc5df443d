//! The default store: everything in this process's memory.
//!
//! # Layout
//!
//! The store holds every record the catalog holds (the `Arc`ed payloads are
//! shared with it), so what counts is what it adds per record (the target:
//! the whole registry within 500 bytes a connection). A record carries its own
//! key, so no key is stored beside a live record:
//!
//! - `records`: a hash table of [`Entry`]s, 16 bytes each (the record's
//!   `Arc`, its kind, and its version in 7 bytes), hashed by the record's
//!   key and compared against the record itself. It is a [`TieredTable`]: a
//!   full table does not double at once but first fills a second one of up
//!   to half its size, so at 1,000,000 records it has 2^20 + 2^17 buckets
//!   of 17 bytes (a control byte each), about 20 bytes a record, where a
//!   single table would have 2^21.
//! - `tombstones`: the last version of each deleted key, so versions never
//!   repeat (16 bytes a slot, the key boxed).
//! - `feed`: the most recent batches (revision, token if any, where its
//!   changes start), and `fed`, their changes one after another in one
//!   ring, 16 bytes a change (a record's entry, or a deleted key boxed with
//!   the version of its deletion). One ring rather than a boxed slice a
//!   batch: a commit allocates nothing for the feed, and the change it
//!   evicts (whose records it mostly drops for the last time) is read from
//!   the ring's front, usually a cache line an earlier eviction read, not
//!   from a block of its own allocated long ago, then freed.
//!
//! At 1,000,000 connections that is about 20 bytes a connection, plus 1.6
//! for a full change feed of 100,000 changes (`benches/memory.rs`); before
//! the entries were packed and tiered it was 36 and 2.4. A registry's
//! reference fences add at most 64 small records a project. A record's
//! version is at most 2^56 - 1 (a write that would pass it fails with
//! [`StoreError::Unavailable`]), and the store holds at most `u32::MAX`
//! live records.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use hashbrown::{DefaultHashBuilder, HashTable};

mod table;

use table::TieredTable;

use super::{Batch, Change, Changed, CommitToken, Committed, Op, Snapshot, Store, StoreError};
use crate::model::{
    AppOwner, Connection, ConnectionName, ConnectionStatus, ConnectionTemplate, CredentialKey, IntegrationId,
    Mappings, NameStripe, OAuthApp, PendingAuthorization, ProjectId, ProjectType, Record, RecordKey,
    ReferenceFence, Revision, Scope, TemplateName, TokenSet, TypeName, Version,
};
use crate::model::{AuditEntry, AuditPosition, AuditQuery, ReadNote};
use std::sync::Arc;

/// Keeps records in memory. Fast, `Send + Sync`, gone with the process.
///
/// The change feed keeps the most recent changes only (by default 100,000);
/// a follower further behind is told [`StoreError::FeedTruncated`] and reloads.
/// The store holds at most `u32::MAX` live records.
///
/// ```
/// use connective::store::{MemoryStore, Store};
/// let store = MemoryStore::new();
/// assert_eq!(store.revision()?.0, 0);
/// # Ok::<(), connective::store::StoreError>(())
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    feed_capacity: usize,
}

/// A record key, borrowed from a [`RecordKey`] or from a record: what the
/// tables hash and compare, so a lookup builds no key.
#[derive(PartialEq, Eq, Hash)]
enum KeyRef<'a> {
    Connection(&'a ProjectId, &'a Scope, &'a ConnectionName),
    Mappings(&'a ProjectId, &'a IntegrationId),
    OAuthApp(&'a ProjectId, &'a AppOwner),
    ReferenceFence(&'a ProjectId, NameStripe),
    TokenSet(&'a CredentialKey),
    PendingAuthorization(&'a ProjectId, &'a str),
    Status(&'a CredentialKey),
    ConnectionType(&'a ProjectId, &'a TypeName),
    Template(&'a ProjectId, &'a TemplateName),
}

impl<'a> KeyRef<'a> {
    fn of_key(key: &'a RecordKey) -> Self {
        match key {
            RecordKey::Connection(p, s, n) => KeyRef::Connection(p, s, n),
            RecordKey::Mappings(p, i) => KeyRef::Mappings(p, i),
            RecordKey::OAuthApp(p, o) => KeyRef::OAuthApp(p, o),
            RecordKey::ReferenceFence(p, s) => KeyRef::ReferenceFence(p, *s),
            RecordKey::TokenSet(k) => KeyRef::TokenSet(k),
            RecordKey::PendingAuthorization(p, s) => KeyRef::PendingAuthorization(p, s),
            RecordKey::Status(k) => KeyRef::Status(k),
            RecordKey::ConnectionType(p, t) => KeyRef::ConnectionType(p, t),
            RecordKey::Template(p, t) => KeyRef::Template(p, t),
        }
    }
}

/// A record's version in 7 bytes (little-endian), so that an [`Entry`] is
/// 16 bytes: its kind, this, and the record's `Arc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Packed([u8; 7]);

const _: () = assert!(Packed::MAX == Version::MAX.0);

impl Packed {
    /// The largest version the store gives a record: [`Version::MAX`],
    /// the limit of every store, is this one.
    const MAX: u64 = (1 << 56) - 1;

    /// `version` packed, if it is at most [`Packed::MAX`].
    fn new(version: Version) -> Option<Packed> {
        if version.0 > Packed::MAX {
            return None;
        }
        let bytes = version.0.to_le_bytes();
        let mut packed = [0; 7];
        packed.copy_from_slice(&bytes[..7]);
        Some(Packed(packed))
    }

    fn get(self) -> Version {
        let mut bytes = [0; 8];
        bytes[..7].copy_from_slice(&self.0);
        Version(u64::from_le_bytes(bytes))
    }
}

/// A live record with its version: a [`Record`] with the version packed
/// beside its `Arc` (16 bytes, where `(Version, Record)` is 24).
#[derive(Debug, Clone)]
enum Entry {
    Connection(Packed, Arc<Connection>),
    Mappings(Packed, Arc<Mappings>),
    OAuthApp(Packed, Arc<OAuthApp>),
    ReferenceFence(Packed, Arc<ReferenceFence>),
    TokenSet(Packed, Arc<TokenSet>),
    PendingAuthorization(Packed, Arc<PendingAuthorization>),
    Status(Packed, Arc<ConnectionStatus>),
    ConnectionType(Packed, Arc<ProjectType>),
    Template(Packed, Arc<ConnectionTemplate>),
}

impl Entry {
    fn new(version: Packed, record: Record) -> Entry {
        let v = version;
        match record {
            Record::Connection(r) => Entry::Connection(v, r),
            Record::Mappings(r) => Entry::Mappings(v, r),
            Record::OAuthApp(r) => Entry::OAuthApp(v, r),
            Record::ReferenceFence(r) => Entry::ReferenceFence(v, r),
            Record::TokenSet(r) => Entry::TokenSet(v, r),
            Record::PendingAuthorization(r) => Entry::PendingAuthorization(v, r),
            Record::Status(r) => Entry::Status(v, r),
            Record::ConnectionType(r) => Entry::ConnectionType(v, r),
            Record::Template(r) => Entry::Template(v, r),
        }
    }

    fn version(&self) -> Version {
        match self {
            Entry::Connection(v, _)
            | Entry::Mappings(v, _)
            | Entry::OAuthApp(v, _)
            | Entry::ReferenceFence(v, _)
            | Entry::TokenSet(v, _)
            | Entry::PendingAuthorization(v, _)
            | Entry::Status(v, _)
            | Entry::ConnectionType(v, _)
            | Entry::Template(v, _) => v.get(),
        }
    }

    /// How many references the record has (the store's among them).
    fn strong_count(&self) -> usize {
        match self {
            Entry::Connection(_, r) => Arc::strong_count(r),
            Entry::Mappings(_, r) => Arc::strong_count(r),
            Entry::OAuthApp(_, r) => Arc::strong_count(r),
            Entry::ReferenceFence(_, r) => Arc::strong_count(r),
            Entry::TokenSet(_, r) => Arc::strong_count(r),
            Entry::PendingAuthorization(_, r) => Arc::strong_count(r),
            Entry::Status(_, r) => Arc::strong_count(r),
            Entry::ConnectionType(_, r) => Arc::strong_count(r),
            Entry::Template(_, r) => Arc::strong_count(r),
        }
    }

    /// The record (a reference count taken).
    fn record(&self) -> Record {
        match self {
            Entry::Connection(_, r) => Record::Connection(Arc::clone(r)),
            Entry::Mappings(_, r) => Record::Mappings(Arc::clone(r)),
            Entry::OAuthApp(_, r) => Record::OAuthApp(Arc::clone(r)),
            Entry::ReferenceFence(_, r) => Record::ReferenceFence(Arc::clone(r)),
            Entry::TokenSet(_, r) => Record::TokenSet(Arc::clone(r)),
            Entry::PendingAuthorization(_, r) => Record::PendingAuthorization(Arc::clone(r)),
            Entry::Status(_, r) => Record::Status(Arc::clone(r)),
            Entry::ConnectionType(_, r) => Record::ConnectionType(Arc::clone(r)),
            Entry::Template(_, r) => Record::Template(Arc::clone(r)),
        }
    }

    /// Reads the lines that dropping this reference to the record touches
    /// first: the reference count's and, if it is the last reference to a
    /// connection (a record of every write), the connection's own lines and
    /// its array of parameters, which dropping it reads and frees. With
    /// `depth` [`Depth::Count`] only the reference count's line, whose
    /// address is known without a read. A hint only (see
    /// [`Inner::read_ahead_evictions`]).
    fn read_ahead_drop(&self, depth: Depth) {
        let count = std::hint::black_box(self.strong_count());
        let Entry::Connection(_, c) = self else {
            return;
        };
        if depth == Depth::Count || count > 1 {
            return;
        }
        let spec = c.spec();
        std::hint::black_box((spec.project_id().as_str().len(), spec.name().as_str().len()));
        for p in spec.params() {
            std::hint::black_box(p.name().as_str().len());
        }
    }

    /// The record's key, borrowed: the same as `KeyRef::of_key(&self.record().key())`.
    fn key(&self) -> KeyRef<'_> {
        match self {
            Entry::Connection(_, c) => KeyRef::Connection(c.project(), c.scope(), c.name()),
            Entry::Mappings(_, m) => KeyRef::Mappings(m.project(), m.integration()),
            Entry::OAuthApp(_, a) => KeyRef::OAuthApp(a.project(), a.owner()),
            Entry::ReferenceFence(_, f) => KeyRef::ReferenceFence(&f.project, f.stripe),
            Entry::TokenSet(_, t) => KeyRef::TokenSet(t.key()),
            Entry::PendingAuthorization(_, p) => {
                KeyRef::PendingAuthorization(&p.credentials().project, p.state_id())
            }
            Entry::Status(_, st) => KeyRef::Status(st.key()),
            Entry::ConnectionType(_, t) => KeyRef::ConnectionType(t.project(), t.name()),
            Entry::Template(_, t) => KeyRef::Template(t.project(), t.name()),
        }
    }
}

/// One change of a batch in the feed (16 bytes): a put record's entry, or
/// a deleted key boxed with the version of its deletion.
#[derive(Debug)]
enum Fed {
    Put(Entry),
    Delete(Box<(Version, RecordKey)>),
}

/// How many of the changes a commit evicts from the feed
/// [`Inner::read_ahead_evictions`] reads ahead (a commit of one change
/// evicts about one).
const READ_AHEAD_EVICTIONS: usize = 16;

/// How far [`Entry::read_ahead_drop`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Depth {
    /// The reference count's line only.
    Count,
    /// Everything dropping the record reads first.
    Drop,
}

impl Fed {
    /// [`Entry::read_ahead_drop`] for a put; a deletion's boxed key.
    fn read_ahead_drop(&self, depth: Depth) {
        match self {
            Fed::Put(e) => e.read_ahead_drop(depth),
            Fed::Delete(deleted) => {
                std::hint::black_box(deleted.0);
            }
        }
    }

    fn version(&self) -> Version {
        match self {
            Fed::Put(e) => e.version(),
            Fed::Delete(deleted) => deleted.0,
        }
    }
}

/// One committed batch in the feed; its changes are in [`Inner::fed`].
#[derive(Debug)]
struct FeedBatch {
    revision: Revision,
    /// The position of the batch's first change among every change ever
    /// fed (see [`Inner::evicted`]).
    start: u64,
    /// How many changes the batch has (at least one).
    len: usize,
    token: Option<CommitToken>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every live record with its version, hashed by the record's key.
    records: TieredTable<Entry>,
    /// Last version of deleted keys, so versions never repeat.
    tombstones: HashTable<(Version, Box<RecordKey>)>,
    /// The hasher of both tables (foldhash, seeded at random).
    hasher: DefaultHashBuilder,
    revision: Revision,
    /// The most recent batches, oldest first.
    feed: VecDeque<FeedBatch>,
    /// The changes of `feed`'s batches, in order.
    fed: VecDeque<Fed>,
    /// How many changes were ever evicted from the front of `fed`: the
    /// position of its first among every change ever fed.
    evicted: u64,
    /// The audit trail: one entry per committed batch with an audit note
    /// and per read appended, in position order (1, 2, ...), never changed.
    audit: Vec<AuditEntry>,
}

impl Inner {
    /// The position the next audit entry gets.
    fn next_audit_position(&self) -> AuditPosition {
        AuditPosition(self.audit.len() as u64 + 1)
    }

    /// The hash of `key` in `records` and `tombstones`.
    fn hash(&self, key: &RecordKey) -> u64 {
        self.hasher.hash_one(KeyRef::of_key(key))
    }

    /// The live record under `key` (whose hash is `hash`).
    fn find(&self, key: &RecordKey, hash: u64) -> Option<&Entry> {
        let key = KeyRef::of_key(key);
        self.records.find(hash, |e| e.key() == key)
    }

    /// Stores `record` at `version` under its own key (whose hash is
    /// `hash`), in place of the live record if there is one.
    fn put(&mut self, key: &RecordKey, hash: u64, version: Packed, record: Record) {
        let entry = Entry::new(version, record);
        let Inner { records, hasher, .. } = self;
        let key = KeyRef::of_key(key);
        if let Some(live) = records.find_mut(hash, |e| e.key() == key) {
            *live = entry;
            return;
        }
        records.insert_unique(hash, entry, |e| hasher.hash_one(e.key()));
    }

    /// Removes the live record under `key` (whose hash is `hash`), if any.
    fn remove(&mut self, key: &RecordKey, hash: u64) {
        let key = KeyRef::of_key(key);
        self.records.remove(hash, |e| e.key() == key);
    }

    /// The version a deleted `key` (whose hash is `hash`) had last.
    fn tombstone(&self, key: &RecordKey, hash: u64) -> Option<Version> {
        self.tombstones.find(hash, |(_, k)| **k == *key).map(|(v, _)| *v)
    }

    /// Remembers that `key` (whose hash is `hash`) was deleted at `version`.
    fn bury(&mut self, key: &RecordKey, hash: u64, version: Version) {
        let hasher = &self.hasher;
        match self.tombstones.entry(
            hash,
            |(_, k)| **k == *key,
            |(_, k)| hasher.hash_one(KeyRef::of_key(k)),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut e) => e.get_mut().0 = version,
            hashbrown::hash_table::Entry::Vacant(e) => {
                e.insert((version, Box::new(key.clone())));
            }
        }
    }

    /// Where the batches after revision `after` start in the feed (`None`:
    /// there are none), or why the feed cannot say.
    fn feed_after(&self, after: Revision) -> Result<Option<usize>, StoreError> {
        if after >= self.revision {
            return Ok(None);
        }
        let oldest = self.feed.front().map_or(self.revision, |b| b.revision);
        if after.0 + 1 < oldest.0 {
            return Err(StoreError::FeedTruncated {
                requested: after,
                oldest,
            });
        }
        Ok(Some(self.feed.partition_point(|b| b.revision <= after)))
    }

    /// The changes of `batch`, one of `feed`'s.
    fn changes_of(&self, batch: &FeedBatch) -> impl Iterator<Item = &Fed> {
        // In range for a batch of `feed`; clamped all the same (no panic).
        let total = self.fed.len();
        let offset = usize::try_from(batch.start.saturating_sub(self.evicted)).unwrap_or(total);
        let start = offset.min(total);
        self.fed.range(start..offset.saturating_add(batch.len).min(total))
    }

    /// Appends to the feed a batch of `len` changes committed as
    /// `revision`, whose changes the caller then pushes onto `fed`, in
    /// order. First evicts the oldest batches, whole, as long as the feed
    /// would hold more than `capacity` changes (the newest batch is always
    /// kept).
    fn open_batch(&mut self, revision: Revision, len: usize, token: Option<CommitToken>, capacity: usize) {
        let (batches, changes) = self.evictions(len, capacity);
        self.feed.drain(..batches);
        // The batches' changes are the ring's first `changes`.
        self.fed.drain(..changes.min(self.fed.len()));
        self.evicted += changes as u64;
        // Grow the ring by doubling, but never past what a full feed
        // holds (`capacity`, or one larger batch).
        let needed = self.fed.len() + len;
        if needed > self.fed.capacity() {
            let target = (2 * self.fed.capacity()).clamp(needed, capacity.max(needed));
            self.fed.reserve_exact(target - self.fed.len());
        }
        let start = self.evicted + self.fed.len() as u64;
        self.feed.push_back(FeedBatch {
            revision,
            start,
            len,
            token,
        });
    }

    /// How many of the oldest batches [`Inner::open_batch`] evicts for a
    /// batch of `len` changes, and how many changes they have: the oldest
    /// batches, whole, as long as the feed would hold more than `capacity`
    /// changes.
    fn evictions(&self, len: usize, capacity: usize) -> (usize, usize) {
        let (mut batches, mut changes) = (0, 0);
        for oldest in &self.feed {
            if self.fed.len().saturating_sub(changes) + len <= capacity {
                break;
            }
            batches += 1;
            changes += oldest.len;
        }
        (batches, changes)
    }

    /// Reads ahead, before a commit of a batch of `len` changes, what
    /// dropping the changes it evicts from the feed reads (see
    /// [`Inner::evictions`]): their records are mostly dropped for the last
    /// time then, and in a large store they are cold (committed some
    /// `capacity` changes ago). Read here, beside the batch's entries, their
    /// lines arrive together with those, where the drops would fetch them
    /// one after another. The change the next commit evicts first gets its
    /// reference count read too, so that by then the lines it leads to are
    /// one read away. At most [`READ_AHEAD_EVICTIONS`] changes are read
    /// ahead: a commit that evicts more (a large batch) would otherwise read
    /// them all twice, and their lines would not stay in the cache until the
    /// drops reach them anyway. A hint only: it changes nothing.
    fn read_ahead_evictions(&self, len: usize, capacity: usize) {
        let (_, changes) = self.evictions(len, capacity);
        let changes = changes.min(self.fed.len());
        for fed in self.fed.range(..changes.min(READ_AHEAD_EVICTIONS)) {
            fed.read_ahead_drop(Depth::Drop);
        }
        if changes > 0
            && let Some(next) = self.fed.get(changes)
        {
            next.read_ahead_drop(Depth::Count);
        }
    }

    /// Forgets the tombstone of `key` (whose hash is `hash`), if any.
    fn unbury(&mut self, key: &RecordKey, hash: u64) {
        if let Ok(e) = self.tombstones.find_entry(hash, |(_, k)| **k == *key) {
            e.remove();
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::with_feed_capacity(100_000)
    }

    /// An empty store whose change feed keeps at most `capacity` changes
    /// (at least one batch is always kept whole).
    pub fn with_feed_capacity(capacity: usize) -> Self {
        MemoryStore {
            inner: Mutex::new(Inner::default()),
            feed_capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch (the
        // batch is checked before anything is changed), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Store for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        let inner = self.lock();
        Ok(Snapshot {
            revision: inner.revision,
            records: inner.records.iter().map(|e| (e.version(), e.record())).collect(),
            unreadable: Vec::new(),
        })
    }

    fn keeps_audit(&self) -> bool {
        true
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let inner = self.lock();
        let start = inner.audit.partition_point(|e| e.position <= query.after);
        Ok(inner.audit[start..]
            .iter()
            .filter(|e| e.matches(query))
            .take(query.limit)
            .cloned()
            .collect())
    }

    fn append_reads(&self, reads: &[ReadNote]) -> Result<(), StoreError> {
        for read in reads {
            super::check_audit_instant(read.at, &format!("the read by {}", read.actor))?;
        }
        let mut inner = self.lock();
        for read in reads {
            let position = inner.next_audit_position();
            inner.audit.push(AuditEntry::read(position, read.clone()));
        }
        Ok(())
    }

    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        batch.validate()?;
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.records.len() + batch.writes.len() > u32::MAX as usize {
            return Err(StoreError::Unavailable {
                backend: "memory",
                message: "the store is full (u32::MAX records)".into(),
            });
        }
        let revision = super::next_revision("memory", inner.revision)?;
        // Check every expectation before changing anything.
        let mut versions = Vec::with_capacity(batch.writes.len());
        let mut before = Vec::with_capacity(batch.writes.len());
        // Each key's hash and packed new version, so that applying the
        // batch hashes no key again.
        let mut hashed = Vec::with_capacity(batch.writes.len());
        // Every key's entry read ahead first, and what the feed's eviction
        // will drop, so that the reads of the batch's entries and of the
        // evicted records (cold in a large store) overlap.
        let hashes: Vec<u64> = batch
            .writes
            .iter()
            .map(|w| {
                let hash = inner.hash(&w.key);
                inner.records.read_ahead(hash, |e| {
                    std::hint::black_box(e.version());
                });
                hash
            })
            .collect();
        inner.read_ahead_evictions(batch.writes.len(), self.feed_capacity);
        for (w, &hash) in batch.writes.iter().zip(&hashes) {
            let found = inner.find(&w.key, hash).map(Entry::version);
            w.expect.check(&w.key, found)?;
            before.push(found);
            let previous = found.or_else(|| inner.tombstone(&w.key, hash));
            let version = super::next_version(&w.key, previous)?;
            // Never `None`: the packed limit is `Version::MAX`.
            let Some(packed) = Packed::new(version) else {
                return Err(StoreError::LastVersion {
                    key: w.key.clone(),
                    version: previous.unwrap_or(Version::MAX),
                });
            };
            versions.push(version);
            hashed.push((hash, packed));
        }
        inner.revision = revision;
        // The batch's changes go straight into the feed's ring.
        inner.open_batch(revision, batch.writes.len(), batch.token, self.feed_capacity);
        for (w, &(hash, version)) in batch.writes.iter().zip(&hashed) {
            match &w.op {
                Op::Put(record) => {
                    if !inner.tombstones.is_empty() {
                        inner.unbury(&w.key, hash);
                    }
                    inner.put(&w.key, hash, version, record.clone());
                    inner.fed.push_back(Fed::Put(Entry::new(version, record.clone())));
                }
                Op::Delete => {
                    inner.remove(&w.key, hash);
                    inner.bury(&w.key, hash, version.get());
                    inner
                        .fed
                        .push_back(Fed::Delete(Box::new((version.get(), w.key.clone()))));
                }
            }
        }
        if let Some((note, action)) = batch.audit_action(revision, &before, &versions) {
            let position = inner.next_audit_position();
            inner.audit.push(AuditEntry {
                position,
                at: note.at,
                actor: note.actor.clone(),
                action,
            });
        }
        Ok(Committed { revision, versions })
    }

    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        let inner = self.lock();
        let Some(start) = inner.feed_after(after)? else {
            return Ok(None);
        };
        Ok(inner
            .feed
            .range(start..)
            .find(|b| b.token == Some(token))
            .map(|b| Committed {
                revision: b.revision,
                versions: inner.changes_of(b).map(Fed::version).collect(),
            }))
    }

    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        let inner = self.lock();
        let Some(start) = inner.feed_after(after)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for b in inner.feed.range(start..).take(limit) {
            out.extend(inner.changes_of(b).map(|fed| {
                let (key, change) = match fed {
                    Fed::Put(e) => {
                        let record = e.record();
                        (record.key(), Changed::Put(record))
                    }
                    Fed::Delete(deleted) => (deleted.1.clone(), Changed::Deleted),
                };
                Change {
                    revision: b.revision,
                    key,
                    version: fed.version(),
                    change,
                }
            }));
        }
        Ok(out)
    }

    /// Reads the entry under `key` ahead (see `TieredTable::read_ahead`)
    /// and calls `alongside` while those reads are in flight: the lock is
    /// taken before and released after, since taking or releasing it waits
    /// for every read before it (a locked instruction), so it is held while
    /// `alongside` runs.
    fn read_ahead_with(&self, key: &RecordKey, alongside: &mut dyn FnMut()) {
        let inner = self.lock();
        inner.records.read_ahead(inner.hash(key), |e| {
            std::hint::black_box(e.version());
        });
        // And what a commit of one change evicts from the feed.
        inner.read_ahead_evictions(1, self.feed_capacity);
        alongside();
    }

    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .find(key, inner.hash(key))
            .map(|e| (e.version(), e.record())))
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock().revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Expect;

    #[test]
    fn layout_sizes() {
        // What the module documentation counts on.
        assert_eq!(std::mem::size_of::<Entry>(), 16);
        assert_eq!(std::mem::size_of::<Fed>(), 16);
        assert_eq!(std::mem::size_of::<(Version, Box<RecordKey>)>(), 16);
    }

    /// A batch that deletes a record and then updates the one the delete
    /// moved into its place updates it where it moved to.
    #[test]
    fn an_update_after_a_delete_in_one_batch_finds_the_moved_record() {
        let fence = |p: &str, n: &str| {
            Record::ReferenceFence(std::sync::Arc::new(crate::model::ReferenceFence {
                project: p.parse().unwrap(),
                stripe: crate::model::NameStripe::of(&n.parse().unwrap()),
            }))
        };
        let (a, b, c) = (fence("a", "n"), fence("b", "n"), fence("c", "n"));
        let store = MemoryStore::new();
        let mut batch = Batch::new();
        for r in [&a, &b, &c] {
            batch.push(super::super::Write::put(r.clone(), Expect::Absent));
        }
        store.commit(&batch).unwrap();
        // `c` is last: deleting `a` moves it into `a`'s place.
        let mut batch = Batch::new();
        batch.push(super::super::Write::delete(a.key(), Expect::Version(Version(1))));
        batch.push(super::super::Write::put(c.clone(), Expect::Version(Version(1))));
        batch.push(super::super::Write::put(fence("d", "n"), Expect::Absent));
        assert_eq!(
            store.commit(&batch).unwrap().versions,
            [Version(2), Version(2), Version(1)]
        );
        assert!(store.get(&a.key()).unwrap().is_none());
        assert_eq!(
            store.get(&b.key()).unwrap().map(|(v, r)| (v, r.key())),
            Some((Version(1), b.key()))
        );
        assert_eq!(
            store.get(&c.key()).unwrap().map(|(v, r)| (v, r.key())),
            Some((Version(2), c.key()))
        );
        assert_eq!(store.load().unwrap().records.len(), 3);
    }

    /// Deletes move the last record into the hole; every other record must
    /// still be found under its key, and a re-created key continue its versions.
    #[test]
    fn removals_keep_the_index_right() {
        let marker = |i: usize| {
            Record::ReferenceFence(std::sync::Arc::new(crate::model::ReferenceFence {
                project: format!("p{i}").parse().unwrap(),
                stripe: crate::model::NameStripe::of(&"n".parse().unwrap()),
            }))
        };
        let store = MemoryStore::with_feed_capacity(10);
        let mut batch = Batch::new();
        for i in 0..100 {
            batch.push(super::super::Write::put(marker(i), Expect::Absent));
        }
        store.commit(&batch).unwrap();
        for i in (0..100).step_by(3) {
            let mut batch = Batch::new();
            batch.push(super::super::Write::delete(
                marker(i).key(),
                Expect::Version(Version(1)),
            ));
            assert_eq!(store.commit(&batch).unwrap().versions, [Version(2)]);
        }
        for i in 0..100 {
            let found = store.get(&marker(i).key()).unwrap();
            if i % 3 == 0 {
                assert!(found.is_none(), "{i} was deleted");
            } else {
                let (version, record) = found.unwrap();
                assert_eq!((version, record.key()), (Version(1), marker(i).key()));
            }
        }
        assert_eq!(store.load().unwrap().records.len(), 66);
        let mut batch = Batch::new();
        batch.push(super::super::Write::put(marker(0), Expect::Absent));
        assert_eq!(store.commit(&batch).unwrap().versions, [Version(3)]);
        // The feed kept whole batches, the newest ones (10 changes at most).
        let changes = store.changes_since(Revision(26), 100).unwrap();
        assert_eq!(changes.len(), 10);
        assert!(store.changes_since(Revision(25), 100).is_err());
        assert_eq!(changes[9].key, marker(0).key());
        assert_eq!(changes[8].record().map(Record::key), None);
        assert_eq!(changes[8].key, marker(99).key());
    }
}

#[cfg(test)]
mod packed_tests {
    use super::*;
    use crate::store::{Expect, Write};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A record of project `p{i}`, distinct for each `i`.
    pub(super) fn fence(i: u32) -> Record {
        Record::ReferenceFence(Arc::new(ReferenceFence {
            project: format!("p{i}").parse().unwrap(),
            stripe: NameStripe::of(&"n".parse().unwrap()),
        }))
    }

    #[test]
    fn a_packed_version_reads_back_as_it_was() {
        for v in [
            0,
            1,
            255,
            256,
            u64::from(u32::MAX),
            1 << 40,
            Packed::MAX - 1,
            Packed::MAX,
        ] {
            assert_eq!(Packed::new(Version(v)).map(Packed::get), Some(Version(v)));
        }
        assert_eq!(Packed::new(Version(Packed::MAX + 1)), None);
        assert_eq!(Packed::new(Version(u64::MAX)), None);
    }

    /// A key at the last version (the packed limit) is refused with a
    /// typed error naming it, and the store is left as it was.
    #[test]
    fn a_version_past_the_packed_limit_is_refused() {
        let store = MemoryStore::new();
        let (a, b) = (fence(1), fence(2));
        {
            let mut inner = store.lock();
            let hash = inner.hash(&a.key());
            inner.bury(&a.key(), hash, Version(Packed::MAX - 1));
        }
        let mut batch = Batch::new();
        batch.push(Write::put(a.clone(), Expect::Absent));
        assert_eq!(store.commit(&batch).unwrap().versions, [Version(Packed::MAX)]);
        assert_eq!(
            store.get(&a.key()).unwrap().map(|(v, _)| v),
            Some(Version(Packed::MAX))
        );
        let revision = store.revision().unwrap();

        let mut batch = Batch::new();
        batch.push(Write::put(b.clone(), Expect::Absent));
        batch.push(Write::put(a.clone(), Expect::Version(Version(Packed::MAX))));
        let err = store.commit(&batch).unwrap_err();
        assert!(
            matches!(&err, StoreError::LastVersion { key, version } if *key == a.key() && *version == Version::MAX),
            "{err}"
        );
        let mut batch = Batch::new();
        batch.push(Write::delete(a.key(), Expect::Version(Version(Packed::MAX))));
        assert!(matches!(
            store.commit(&batch),
            Err(StoreError::LastVersion { .. })
        ));
        assert_eq!(store.revision().unwrap(), revision);
        assert!(store.get(&b.key()).unwrap().is_none());
        assert_eq!(
            store.get(&a.key()).unwrap().map(|(v, _)| v),
            Some(Version(Packed::MAX))
        );
    }

    /// The conformance check of the last version, on the memory store:
    /// its rows are reached through its lock.
    #[cfg(feature = "test-kit")]
    #[test]
    fn memory_store_passes_the_last_version_check() {
        let store = MemoryStore::new();
        crate::test_kit::the_last_version_is_final(&store, |key, version| {
            let version = Version(u64::try_from(version).expect("a version the memory store can hold"));
            let mut inner = store.lock();
            let hash = inner.hash(key);
            match inner.find(key, hash).map(Entry::record) {
                Some(record) => {
                    let packed = Packed::new(version).expect("a version the memory store can hold");
                    inner.put(key, hash, packed, record);
                }
                None => {
                    assert!(inner.tombstone(key, hash).is_some(), "no row for {key}");
                    inner.bury(key, hash, version);
                }
            }
        });
    }

    /// The conformance check of the last revision, on the memory store:
    /// its head is reached through its lock.
    #[cfg(feature = "test-kit")]
    #[test]
    fn memory_store_passes_the_last_revision_check() {
        let store = MemoryStore::new();
        crate::test_kit::the_last_revision_is_final(&store, |revision| store.lock().revision = revision);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u32),
        Delete(u32),
    }

    fn ops() -> impl Strategy<Value = Vec<Vec<Op>>> {
        let op = prop_oneof![
            3 => (0u32..400).prop_map(Op::Put),
            1 => (0u32..400).prop_map(Op::Delete),
        ];
        proptest::collection::vec(proptest::collection::vec(op, 1..40), 1..60)
    }

    proptest! {
        /// The store against a reference map of (live?, last version) per
        /// key, over batches of puts and deletes with the expectations the
        /// reference gives: every commit gives the versions the reference
        /// does (a re-created key continues its versions), and `get`,
        /// `load` and the feed agree with it.
        #[test]
        fn the_store_agrees_with_a_reference_map(batches in ops()) {
            let store = MemoryStore::new();
            // key -> (live, last version)
            let mut reference: BTreeMap<u32, (bool, u64)> = BTreeMap::new();
            for ops in batches {
                let mut batch = Batch::new();
                let mut expected = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for op in ops {
                    let (Op::Put(k) | Op::Delete(k)) = op;
                    if !seen.insert(k) {
                        continue; // one write a key a batch
                    }
                    let (live, last) = reference.get(&k).copied().unwrap_or((false, 0));
                    let expect = if live { Expect::Version(Version(last)) } else { Expect::Absent };
                    match op {
                        Op::Put(_) => {
                            batch.push(Write::put(fence(k), expect));
                        }
                        Op::Delete(_) if live => {
                            batch.push(Write::delete(fence(k).key(), expect));
                        }
                        Op::Delete(_) => continue,
                    }
                    expected.push(Version(last + 1));
                    reference.insert(k, (matches!(op, Op::Put(_)), last + 1));
                }
                if expected.is_empty() {
                    continue;
                }
                let committed = store.commit(&batch).unwrap();
                prop_assert_eq!(&committed.versions, &expected);
                let changes = store.changes_since(Revision(committed.revision.0 - 1), 10).unwrap();
                prop_assert_eq!(changes.iter().map(|c| c.version).collect::<Vec<_>>(), expected);
            }
            for (&k, &(live, last)) in &reference {
                let found = store.get(&fence(k).key()).unwrap();
                prop_assert_eq!(found.map(|(v, r)| (v, r.key())), live.then(|| (Version(last), fence(k).key())));
            }
            let mut loaded: Vec<_> = store.load().unwrap().records.into_iter().map(|(v, r)| (r.key(), v)).collect();
            loaded.sort_by_key(|(k, _)| k.to_string());
            let mut expected: Vec<_> = reference
                .iter()
                .filter(|(_, (live, _))| *live)
                .map(|(&k, &(_, last))| (fence(k).key(), Version(last)))
                .collect();
            expected.sort_by_key(|(k, _)| k.to_string());
            prop_assert_eq!(loaded, expected);
        }
    }
}

#[cfg(test)]
mod read_ahead_tests {
    use super::packed_tests::fence;
    use super::*;
    use crate::store::{Expect, Write};

    /// What a reader can see of the store: its revision, every key's
    /// version, and the feed from its start.
    fn state(
        store: &dyn Store,
        keys: &[RecordKey],
    ) -> (Revision, Vec<Option<Version>>, Vec<(Revision, Version)>) {
        let versions = keys
            .iter()
            .map(|k| store.get(k).unwrap().map(|(v, _)| v))
            .collect();
        let feed = store
            .changes_since(Revision(0), usize::MAX)
            .or_else(|_| store.changes_since(Revision(store.revision().unwrap().0 - 4), usize::MAX))
            .unwrap()
            .into_iter()
            .map(|c| (c.revision, c.version))
            .collect();
        (store.revision().unwrap(), versions, feed)
    }

    /// `read_ahead_with` calls `alongside` exactly once, for a key the
    /// store holds and for one it does not, directly and through the
    /// `Arc<dyn Store>` a registry holds, on a store whose feed is full
    /// (so a commit would evict: what it reads ahead), and changes nothing
    /// a reader sees; commits after it behave as without it.
    #[test]
    fn a_read_ahead_calls_alongside_once_and_changes_nothing() {
        let store = Arc::new(MemoryStore::with_feed_capacity(4));
        for i in 0..6 {
            let mut batch = Batch::new();
            batch.push(Write::put(fence(i), Expect::Absent));
            store.commit(&batch).unwrap();
        }
        let keys: Vec<RecordKey> = (0..8).map(|i| fence(i).key()).collect();
        let before = state(&*store, &keys);
        let shared: Arc<dyn Store> = store.clone();
        for key in &keys {
            let mut calls = 0;
            store.read_ahead_with(key, &mut || calls += 1);
            shared.read_ahead_with(key, &mut || calls += 1);
            assert_eq!(calls, 2, "{key}");
        }
        assert_eq!(state(&*store, &keys), before);
        let mut batch = Batch::new();
        batch.push(Write::put(fence(2), Expect::Version(Version(1))));
        batch.push(Write::put(fence(7), Expect::Absent));
        let committed = store.commit(&batch).unwrap();
        assert_eq!(committed.versions, vec![Version(2), Version(1)]);
        assert_eq!(store.get(&keys[2]).unwrap().map(|(v, _)| v), Some(Version(2)));
    }
}

#[cfg(test)]
mod feed_tests {
    use super::packed_tests::fence;
    use super::*;
    use crate::store::{Expect, Write};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A committed batch as the reference keeps it: its revision, token,
    /// and changes (key, version, whether a put).
    type RefBatch = (Revision, Option<CommitToken>, Vec<(RecordKey, Version, bool)>);

    fn batches() -> impl Strategy<Value = Vec<Vec<(u32, bool)>>> {
        // (key, delete?) writes; batches of 1 to 12 writes over 30 keys.
        proptest::collection::vec(
            proptest::collection::vec((0u32..30, proptest::bool::weighted(0.25)), 1..12),
            1..50,
        )
    }

    proptest! {
        /// The feed against a reference list of batches evicted as the
        /// store documents (oldest whole batches while over capacity,
        /// the newest always kept), over small capacities and batches of
        /// every size: after each commit, `changes_since` from every
        /// revision gives exactly the retained batches' changes after it
        /// (or `FeedTruncated`), `find_commit` finds exactly the retained
        /// batches' tokens, and the ring never takes room for more than a
        /// full feed (or the largest batch).
        #[test]
        fn the_feed_agrees_with_a_reference(plan in batches(), capacity in 1usize..40) {
            let store = MemoryStore::with_feed_capacity(capacity);
            let mut live: BTreeMap<u32, u64> = BTreeMap::new();
            let mut last: BTreeMap<u32, u64> = BTreeMap::new();
            let mut reference: Vec<RefBatch> = Vec::new();
            let mut largest = 0;
            for (n, writes) in plan.into_iter().enumerate() {
                let mut batch = Batch::new();
                let mut changes = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for (k, delete) in writes {
                    if !seen.insert(k) {
                        continue;
                    }
                    let expect = live.get(&k).map_or(Expect::Absent, |&v| Expect::Version(Version(v)));
                    let version = last.get(&k).copied().unwrap_or(0) + 1;
                    if delete && live.contains_key(&k) {
                        batch.push(Write::delete(fence(k).key(), expect));
                        live.remove(&k);
                    } else {
                        batch.push(Write::put(fence(k), expect));
                        live.insert(k, version);
                    }
                    last.insert(k, version);
                    changes.push((fence(k).key(), Version(version), !delete || live.contains_key(&k)));
                }
                let token = (n % 3 != 0).then(|| CommitToken::new(n as u128 + 1));
                batch.token = token;
                // What the commit will evict, as its read-ahead predicts it.
                let (predicted, evicted_before) = {
                    let inner = store.lock();
                    (inner.evictions(batch.writes.len(), capacity), inner.evicted)
                };
                let committed = store.commit(&batch).unwrap();
                largest = largest.max(changes.len());
                reference.push((committed.revision, token, changes));
                let mut held: usize = reference.iter().map(|b| b.2.len()).sum();
                let (mut dropped_batches, mut dropped) = (0, 0);
                while held > capacity && reference.len() > 1 {
                    let oldest = reference.remove(0).2.len();
                    held -= oldest;
                    dropped += oldest;
                    dropped_batches += 1;
                }
                prop_assert_eq!(predicted, (dropped_batches, dropped));
                {
                    let inner = store.lock();
                    prop_assert_eq!(inner.evicted - evicted_before, dropped as u64);
                    prop_assert_eq!(inner.fed.len(), held);
                    // Never more than a full feed, or the largest batch.
                    prop_assert!(inner.fed.capacity() <= capacity.max(largest), "{}", inner.fed.capacity());
                }
                let revision = committed.revision;
                let oldest = reference[0].0;
                for after in 0..=revision.0 {
                    let got = store.changes_since(Revision(after), usize::MAX);
                    if after + 1 < oldest.0 {
                        let truncated = matches!(got, Err(StoreError::FeedTruncated { .. }));
                        prop_assert!(truncated, "after {}", after);
                        continue;
                    }
                    let got: Vec<_> = got
                        .unwrap()
                        .into_iter()
                        .map(|c| (c.revision, c.key.clone(), c.version, c.record().map(Record::key)))
                        .collect();
                    let expected: Vec<_> = reference
                        .iter()
                        .filter(|b| b.0.0 > after)
                        .flat_map(|b| b.2.iter().map(move |(k, v, put)| (b.0, k.clone(), *v, put.then(|| k.clone()))))
                        .collect();
                    prop_assert_eq!(got, expected, "after {}", after);
                }
                for m in 0..=n {
                    let token = CommitToken::new(m as u128 + 1);
                    let found = store.find_commit(token, Revision(oldest.0 - 1));
                    let kept = reference.iter().find(|b| b.1 == Some(token));
                    match (found, kept) {
                        (Ok(Some(c)), Some(b)) => {
                            prop_assert_eq!(c.revision, b.0);
                            prop_assert_eq!(c.versions, b.2.iter().map(|c| c.1).collect::<Vec<_>>());
                        }
                        (Ok(None), None) => {}
                        (found, kept) => prop_assert!(false, "token {}: {:?} against {:?}", m, found, kept.map(|b| b.0)),
                    }
                }
            }
        }
    }
}
