//! The conformance suite for an [`AsyncStore`] (features `test-kit` and
//! `async`): the same checks, through the async calls.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

use super::{sample_connection, unique_project};
use crate::model::{AuditEntry, AuditQuery, ReadNote, Record, RecordKey, Revision, Version};
use crate::store::{
    AsyncStore, Batch, Change, CommitToken, Committed, Expect, Snapshot, Store, StoreError, Write,
};

/// An [`AsyncStore`] seen as a blocking [`Store`]: each call is the async
/// call, driven to completion with [`Handle::block_on`] on the calling
/// thread. So [`run_all`](super::run_all) and the other checks exercise
/// the async calls of a store.
///
/// The handle must be a multi-threaded runtime's (its workers drive the
/// store's connections while a check's thread waits), and the calls must
/// come from threads outside it.
pub struct AsyncAsBlocking {
    store: Arc<dyn AsyncStore>,
    handle: Handle,
}

impl std::fmt::Debug for AsyncAsBlocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncAsBlocking")
            .field("backend", &self.store.backend())
            .finish_non_exhaustive()
    }
}

impl AsyncAsBlocking {
    /// `store`'s async calls, driven on `handle`'s runtime.
    pub fn new(store: Arc<dyn AsyncStore>, handle: Handle) -> Self {
        AsyncAsBlocking { store, handle }
    }
}

impl Store for AsyncAsBlocking {
    fn backend(&self) -> &'static str {
        self.store.backend()
    }
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.handle.block_on(self.store.load())
    }
    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        self.handle.block_on(self.store.commit(batch))
    }
    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        self.handle.block_on(self.store.find_commit(token, after))
    }
    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.handle.block_on(self.store.changes_since(after, limit))
    }
    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        self.handle.block_on(self.store.get(key))
    }
    fn revision(&self) -> Result<Revision, StoreError> {
        self.handle.block_on(self.store.revision())
    }
    fn wait_for_change(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
        self.handle.block_on(self.store.wait_for_change(after, timeout))
    }
    fn keeps_audit(&self) -> bool {
        self.store.keeps_audit()
    }
    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.handle.block_on(self.store.audit(query))
    }
    fn append_reads(&self, reads: &[ReadNote]) -> Result<(), StoreError> {
        self.handle.block_on(self.store.append_reads(reads))
    }
}

/// Runs every single-store check on `store`'s async calls (see
/// [`AsyncAsBlocking`] for `handle`), then [`concurrent_async_writers`]
/// with 100 tasks. Call it from a plain thread (a `#[test]`), not from
/// inside the runtime.
pub fn run_all_async(store: Arc<dyn AsyncStore>, handle: Handle) {
    super::run_all(&AsyncAsBlocking::new(Arc::clone(&store), handle.clone()));
    handle.block_on(concurrent_async_writers(store, 100));
}

/// `writers` tasks, spawned at once, each commit a new record of their own:
/// every one commits (no deadlock, however few connections the store has),
/// each at its own revision, the revisions are consecutive, and the change
/// feed holds every write. Returns how long the commits took.
///
/// # Panics
/// Outside a tokio runtime, or when a check fails.
pub async fn concurrent_async_writers(store: Arc<dyn AsyncStore>, writers: usize) -> Duration {
    let p = unique_project("kit-async");
    let r0 = match store.revision().await {
        Ok(r) => r,
        Err(e) => panic!("{} store: revision failed: {e}", store.backend()),
    };
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let store = Arc::clone(&store);
        let record = sample_connection(&p, &format!("writer{w}"), "s");
        tasks.spawn(async move {
            let key = record.key();
            let batch = Batch {
                writes: vec![Write::put(record, Expect::Absent)],
                token: None,
                audit: None,
            };
            (key, store.commit(&batch).await)
        });
    }
    let mut revisions = BTreeSet::new();
    let mut keys = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        let (key, result) = match joined {
            Ok(r) => r,
            Err(e) => panic!("a writer task failed: {e}"),
        };
        match result {
            Ok(c) => {
                assert_eq!(c.versions, vec![Version(1)], "a new record got another version");
                assert!(
                    revisions.insert(c.revision),
                    "two commits got revision {}",
                    c.revision
                );
            }
            Err(e) => panic!("{} store: concurrent async commit failed: {e}", store.backend()),
        }
        keys.insert(key.to_string());
    }
    let took = started.elapsed();
    let want: BTreeSet<Revision> = (1..=writers as u64).map(|i| Revision(r0.0 + i)).collect();
    assert_eq!(revisions, want, "the writers' revisions are not consecutive");
    let feed = match store.changes_since(r0, usize::MAX).await {
        Ok(f) => f,
        Err(e) => panic!("{} store: changes_since failed: {e}", store.backend()),
    };
    let fed: BTreeSet<String> = feed.iter().map(|c| c.key.to_string()).collect();
    assert_eq!(fed, keys, "the change feed lacks acknowledged writes");
    took
}
