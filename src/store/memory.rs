//! The default store: everything in this process's memory.
//!
//! # Layout
//!
//! The store holds every record the catalog holds (the `Arc`ed payloads are
//! shared with it), so what counts is what it adds per record (the target:
//! the whole registry within 500 bytes a connection). A record carries its own
//! key, so no key is stored beside a live record:
//!
//! - `records`: a `Vec` of (version, record), 24 bytes each, in no order.
//! - `index`: a hash table of positions in `records` (`u32`: 4 bytes a slot
//!   plus a control byte), hashed by the record's key and compared against
//!   the record it points at. A removal moves the last record into the hole.
//! - `tombstones`: the last version of each deleted key, so versions never
//!   repeat (16 bytes a slot, the key boxed).
//! - `feed`: the most recent batches, each a boxed slice of (version, record
//!   or deleted key), 24 bytes a change, and the batch's token if any.
//!
//! At 1,000,000 connections that is about 36 bytes a connection, plus 2 for
//! a full change feed of 100,000 changes (`benches/memory.rs`). A registry's
//! reference fences add at most 64 small records a project.

use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard};

use hashbrown::{DefaultHashBuilder, HashTable};

use super::{Batch, Change, Changed, CommitToken, Committed, Op, Snapshot, Store, StoreError};
use crate::model::{
    AppOwner, ConnectionName, CredentialKey, IntegrationId, NameStripe, ProjectId, Record, RecordKey,
    Revision, Scope, TemplateName, TypeName, Version,
};
use crate::model::{AuditEntry, AuditPosition, AuditQuery, ReadNote};

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

    /// The same as `KeyRef::of_key(&record.key())`.
    fn of_record(record: &'a Record) -> Self {
        match record {
            Record::Connection(c) => KeyRef::Connection(c.project(), c.scope(), c.name()),
            Record::Mappings(m) => KeyRef::Mappings(m.project(), m.integration()),
            Record::OAuthApp(a) => KeyRef::OAuthApp(a.project(), a.owner()),
            Record::ReferenceFence(f) => KeyRef::ReferenceFence(&f.project, f.stripe),
            Record::TokenSet(t) => KeyRef::TokenSet(t.key()),
            Record::PendingAuthorization(p) => {
                KeyRef::PendingAuthorization(&p.credentials().project, p.state_id())
            }
            Record::Status(st) => KeyRef::Status(st.key()),
            Record::ConnectionType(t) => KeyRef::ConnectionType(t.project(), t.name()),
            Record::Template(t) => KeyRef::Template(t.project(), t.name()),
        }
    }
}

/// One change of a batch in the feed; its key is the record's own, or the
/// deleted key.
#[derive(Debug)]
enum Fed {
    Put(Record),
    Delete(Box<RecordKey>),
}

/// One committed batch in the feed.
#[derive(Debug)]
struct FeedBatch {
    revision: Revision,
    changes: Box<[(Version, Fed)]>,
    token: Option<CommitToken>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Every live record with its version, in no particular order.
    records: Vec<(Version, Record)>,
    /// Positions in `records`, hashed by the record's key.
    index: HashTable<u32>,
    /// Last version of deleted keys, so versions never repeat.
    tombstones: HashTable<(Version, Box<RecordKey>)>,
    /// The hasher of both tables (foldhash, seeded at random).
    hasher: DefaultHashBuilder,
    revision: Revision,
    /// The most recent batches, oldest first.
    feed: VecDeque<FeedBatch>,
    /// How many changes `feed` holds.
    feed_len: usize,
    /// The audit trail: one entry per committed batch with an audit note
    /// and per read appended, in position order (1, 2, ...), never changed.
    audit: Vec<AuditEntry>,
}

impl Inner {
    /// The position the next audit entry gets.
    fn next_audit_position(&self) -> AuditPosition {
        AuditPosition(self.audit.len() as u64 + 1)
    }

    /// Where the live record under `key` is in `records`.
    fn position(&self, key: &RecordKey) -> Option<usize> {
        self.position_hashed(key).0
    }

    /// [`Inner::position`], and the hash of `key` in `index`.
    fn position_hashed(&self, key: &RecordKey) -> (Option<usize>, u64) {
        let key = KeyRef::of_key(key);
        let hash = self.hasher.hash_one(&key);
        let records = &self.records;
        let found = self
            .index
            .find(hash, |&i| KeyRef::of_record(&records[i as usize].1) == key)
            .map(|&i| i as usize);
        (found, hash)
    }

    /// Stores `record` under its own key: at `position` when the live one
    /// is there, else as a new record; `hash` is its key's.
    fn put_at(&mut self, position: Option<usize>, hash: u64, version: Version, record: Record) {
        if let Some(i) = position {
            self.records[i] = (version, record);
            return;
        }
        let Inner {
            records,
            index,
            hasher,
            ..
        } = self;
        // `commit` checked that the position fits.
        let i = records.len() as u32;
        records.push((version, record));
        index.insert_unique(hash, i, |&j| {
            hasher.hash_one(KeyRef::of_record(&records[j as usize].1))
        });
    }

    /// Removes the live record under `key`, if any.
    fn remove(&mut self, key: &RecordKey) {
        let key = KeyRef::of_key(key);
        let Inner {
            records,
            index,
            hasher,
            ..
        } = self;
        let Ok(slot) = index.find_entry(hasher.hash_one(&key), |&i| {
            KeyRef::of_record(&records[i as usize].1) == key
        }) else {
            return;
        };
        let (i, _) = slot.remove();
        let (i, last) = (i as usize, records.len() - 1);
        if i != last {
            // The last record moves into the hole: repoint its slot.
            let moved = hasher.hash_one(KeyRef::of_record(&records[last].1));
            if let Some(slot) = index.find_mut(moved, |&j| j as usize == last) {
                *slot = i as u32;
            }
        }
        records.swap_remove(i);
    }

    /// The version a deleted `key` had last.
    fn tombstone(&self, key: &RecordKey) -> Option<Version> {
        self.tombstones
            .find(self.hasher.hash_one(KeyRef::of_key(key)), |(_, k)| **k == *key)
            .map(|(v, _)| *v)
    }

    /// Remembers that `key` was deleted at `version`.
    fn bury(&mut self, key: &RecordKey, version: Version) {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(KeyRef::of_key(key));
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

    /// Forgets the tombstone of `key`, if any.
    fn unbury(&mut self, key: &RecordKey) {
        let hash = self.hasher.hash_one(KeyRef::of_key(key));
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
            records: inner.records.clone(),
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
        // Check every expectation before changing anything.
        let mut versions = Vec::with_capacity(batch.writes.len());
        let mut before = Vec::with_capacity(batch.writes.len());
        // Where each key's record is and its hash, so that applying the
        // batch finds neither again (until a delete moves a record).
        let mut found_at = Vec::with_capacity(batch.writes.len());
        for w in &batch.writes {
            let (position, hash) = inner.position_hashed(&w.key);
            let found = position.map(|i| inner.records[i].0);
            w.expect.check(&w.key, found)?;
            found_at.push((position, hash));
            before.push(found);
            let previous = found.or_else(|| inner.tombstone(&w.key)).map_or(0, |v| v.0);
            versions.push(Version(previous + 1));
        }
        let revision = Revision(inner.revision.0 + 1);
        inner.revision = revision;
        let mut changes = Vec::with_capacity(batch.writes.len());
        let mut moved = false;
        for ((w, &version), &(position, hash)) in batch.writes.iter().zip(&versions).zip(&found_at) {
            match &w.op {
                Op::Put(record) => {
                    if !inner.tombstones.is_empty() {
                        inner.unbury(&w.key);
                    }
                    // A delete earlier in the batch may have moved the
                    // record (a new record appended moves none).
                    let position = if moved { inner.position(&w.key) } else { position };
                    inner.put_at(position, hash, version, record.clone());
                    changes.push((version, Fed::Put(record.clone())));
                }
                Op::Delete => {
                    moved = true;
                    inner.remove(&w.key);
                    inner.bury(&w.key, version);
                    changes.push((version, Fed::Delete(Box::new(w.key.clone()))));
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
        inner.feed_len += changes.len();
        inner.feed.push_back(FeedBatch {
            revision,
            changes: changes.into_boxed_slice(),
            token: batch.token,
        });
        // Drop whole batches from the front while over capacity, always
        // keeping the newest.
        while inner.feed_len > self.feed_capacity && inner.feed.len() > 1 {
            if let Some(oldest) = inner.feed.pop_front() {
                inner.feed_len -= oldest.changes.len();
            }
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
                versions: b.changes.iter().map(|(v, _)| *v).collect(),
            }))
    }

    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        let inner = self.lock();
        let Some(start) = inner.feed_after(after)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for b in inner.feed.range(start..).take(limit) {
            out.extend(b.changes.iter().map(|(version, fed)| {
                let (key, change) = match fed {
                    Fed::Put(r) => (r.key(), Changed::Put(r.clone())),
                    Fed::Delete(k) => ((**k).clone(), Changed::Deleted),
                };
                Change {
                    revision: b.revision,
                    key,
                    version: *version,
                    change,
                }
            }));
        }
        Ok(out)
    }

    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        let inner = self.lock();
        Ok(inner.position(key).map(|i| inner.records[i].clone()))
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
        assert_eq!(std::mem::size_of::<(Version, Record)>(), 24);
        assert_eq!(std::mem::size_of::<(Version, Fed)>(), 24);
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
