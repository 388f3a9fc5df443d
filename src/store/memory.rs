//! The default store: everything in this process's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use super::{Batch, Change, Committed, Expect, Op, Snapshot, Store, StoreError};
use crate::model::{Record, RecordKey, Revision, Version};

/// Keeps records in memory. Fast, `Send + Sync`, gone with the process.
///
/// The change feed keeps the most recent changes only (by default 100,000);
/// a follower further behind is told [`StoreError::FeedTruncated`] and reloads.
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

#[derive(Debug, Default)]
struct Inner {
    live: HashMap<RecordKey, (Version, Record)>,
    /// Last version of deleted keys, so versions never repeat.
    tombstones: HashMap<RecordKey, Version>,
    revision: Revision,
    feed: VecDeque<Change>,
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
            records: inner.live.values().map(|(v, r)| (*v, r.clone())).collect(),
        })
    }

    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        batch.validate()?;
        let mut inner = self.lock();
        // Check every expectation before changing anything.
        let mut versions = Vec::with_capacity(batch.writes.len());
        for w in &batch.writes {
            let found = inner.live.get(&w.key).map(|(v, _)| *v);
            let ok = match w.expect {
                Expect::Absent => found.is_none(),
                Expect::Version(v) => found == Some(v),
            };
            if !ok {
                return Err(StoreError::Conflict {
                    key: w.key.clone(),
                    expected: w.expect,
                    found,
                });
            }
            let previous = found
                .or_else(|| inner.tombstones.get(&w.key).copied())
                .map_or(0, |v| v.0);
            versions.push(Version(previous + 1));
        }
        let revision = Revision(inner.revision.0 + 1);
        inner.revision = revision;
        for (w, version) in batch.writes.iter().zip(&versions) {
            let record = match &w.op {
                Op::Put(record) => {
                    inner.tombstones.remove(&w.key);
                    inner.live.insert(w.key.clone(), (*version, record.clone()));
                    Some(record.clone())
                }
                Op::Delete => {
                    inner.live.remove(&w.key);
                    inner.tombstones.insert(w.key.clone(), *version);
                    None
                }
            };
            inner.feed.push_back(Change {
                revision,
                key: w.key.clone(),
                version: *version,
                record,
            });
        }
        // Trim whole batches from the front while over capacity.
        while inner.feed.len() > self.feed_capacity {
            let Some(first) = inner.feed.front().map(|c| c.revision) else {
                break;
            };
            if first == revision {
                break;
            }
            while inner.feed.front().is_some_and(|c| c.revision == first) {
                inner.feed.pop_front();
            }
        }
        Ok(Committed { revision, versions })
    }

    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        let inner = self.lock();
        if after >= inner.revision {
            return Ok(Vec::new());
        }
        let oldest = inner.feed.front().map_or(inner.revision, |c| c.revision);
        if after.0 + 1 < oldest.0 {
            return Err(StoreError::FeedTruncated {
                requested: after,
                oldest,
            });
        }
        let start = inner.feed.partition_point(|c| c.revision <= after);
        let mut out = Vec::new();
        let mut batches = 0usize;
        let mut last = None;
        for c in inner.feed.range(start..) {
            if last != Some(c.revision) {
                if batches == limit {
                    break;
                }
                batches += 1;
                last = Some(c.revision);
            }
            out.push(c.clone());
        }
        Ok(out)
    }

    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        Ok(self.lock().live.get(key).cloned())
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock().revision)
    }
}
