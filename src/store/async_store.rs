//! The store's calls as futures (feature `async`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{Batch, Change, CommitToken, Committed, MemoryStore, Snapshot, Store, StoreError};
use crate::model::{AuditEntry, AuditQuery, ReadNote, Record, RecordKey, Revision, Version};

/// The future of one [`AsyncStore`] call.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The [`Store`] contract with calls that wait without blocking a thread
/// (feature `async`): what [`Registry::write_async`] and the other async
/// forms of the registry's writes await, for hosts that run on tokio.
///
/// Every method means exactly what the [`Store`] method of the same name
/// means (see the [module documentation](super)); a backend implementing
/// both traits implements the contract once and answers both. The futures
/// are `Send`, so a host can spawn them; they may need the tokio runtime the
/// store was made on (timers, sockets).
///
/// [`Registry::write_async`]: crate::registry::Registry::write_async
pub trait AsyncStore: Send + Sync + 'static {
    /// A short name for messages (`memory`, `postgres`).
    fn backend(&self) -> &'static str;

    /// [`Store::load`].
    fn load(&self) -> StoreFuture<'_, Snapshot>;

    /// [`Store::commit`].
    fn commit<'a>(&'a self, batch: &'a Batch) -> StoreFuture<'a, Committed>;

    /// [`Store::find_commit`].
    fn find_commit(&self, token: CommitToken, after: Revision) -> StoreFuture<'_, Option<Committed>>;

    /// [`Store::changes_since`].
    fn changes_since(&self, after: Revision, limit: usize) -> StoreFuture<'_, Vec<Change>>;

    /// [`Store::get`].
    fn get<'a>(&'a self, key: &'a RecordKey) -> StoreFuture<'a, Option<(Version, Record)>>;

    /// [`Store::revision`].
    fn revision(&self) -> StoreFuture<'_, Revision>;

    /// [`Store::keeps_audit`]. The default is no.
    fn keeps_audit(&self) -> bool {
        false
    }

    /// [`Store::audit`]. The default answers [`StoreError::Unsupported`].
    fn audit<'a>(&'a self, query: &'a AuditQuery) -> StoreFuture<'a, Vec<AuditEntry>> {
        let _ = query;
        let backend = self.backend();
        Box::pin(std::future::ready(Err(StoreError::Unsupported {
            backend,
            what: "an audit trail",
        })))
    }

    /// [`Store::append_reads`]. The default answers
    /// [`StoreError::Unsupported`].
    fn append_reads<'a>(&'a self, reads: &'a [ReadNote]) -> StoreFuture<'a, ()> {
        let _ = reads;
        let backend = self.backend();
        Box::pin(std::future::ready(Err(StoreError::Unsupported {
            backend,
            what: "an audit trail",
        })))
    }

    /// [`Store::wait_for_change`], sleeping on tokio's timer. The default
    /// looks at [`AsyncStore::revision`] every 10 ms; backends with a
    /// notification channel wake earlier.
    fn wait_for_change(&self, after: Revision, timeout: Duration) -> StoreFuture<'_, Revision> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::from_std(crate::deadline::after(timeout));
            loop {
                let now = self.revision().await?;
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if now > after || left.is_zero() {
                    return Ok(now);
                }
                tokio::time::sleep(Duration::from_millis(10).min(left)).await;
            }
        })
    }
}

impl<S: AsyncStore + ?Sized> AsyncStore for Arc<S> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn load(&self) -> StoreFuture<'_, Snapshot> {
        (**self).load()
    }
    fn commit<'a>(&'a self, batch: &'a Batch) -> StoreFuture<'a, Committed> {
        (**self).commit(batch)
    }
    fn find_commit(&self, token: CommitToken, after: Revision) -> StoreFuture<'_, Option<Committed>> {
        (**self).find_commit(token, after)
    }
    fn changes_since(&self, after: Revision, limit: usize) -> StoreFuture<'_, Vec<Change>> {
        (**self).changes_since(after, limit)
    }
    fn get<'a>(&'a self, key: &'a RecordKey) -> StoreFuture<'a, Option<(Version, Record)>> {
        (**self).get(key)
    }
    fn revision(&self) -> StoreFuture<'_, Revision> {
        (**self).revision()
    }
    fn wait_for_change(&self, after: Revision, timeout: Duration) -> StoreFuture<'_, Revision> {
        (**self).wait_for_change(after, timeout)
    }
    fn keeps_audit(&self) -> bool {
        (**self).keeps_audit()
    }
    fn audit<'a>(&'a self, query: &'a AuditQuery) -> StoreFuture<'a, Vec<AuditEntry>> {
        (**self).audit(query)
    }
    fn append_reads<'a>(&'a self, reads: &'a [ReadNote]) -> StoreFuture<'a, ()> {
        (**self).append_reads(reads)
    }
}

/// The memory store never waits on I/O: each call completes when polled
/// (only [`AsyncStore::wait_for_change`] sleeps, on tokio's timer).
impl AsyncStore for MemoryStore {
    fn backend(&self) -> &'static str {
        Store::backend(self)
    }
    fn load(&self) -> StoreFuture<'_, Snapshot> {
        Box::pin(std::future::ready(Store::load(self)))
    }
    fn commit<'a>(&'a self, batch: &'a Batch) -> StoreFuture<'a, Committed> {
        Box::pin(std::future::ready(Store::commit(self, batch)))
    }
    fn find_commit(&self, token: CommitToken, after: Revision) -> StoreFuture<'_, Option<Committed>> {
        Box::pin(std::future::ready(Store::find_commit(self, token, after)))
    }
    fn changes_since(&self, after: Revision, limit: usize) -> StoreFuture<'_, Vec<Change>> {
        Box::pin(std::future::ready(Store::changes_since(self, after, limit)))
    }
    fn get<'a>(&'a self, key: &'a RecordKey) -> StoreFuture<'a, Option<(Version, Record)>> {
        Box::pin(std::future::ready(Store::get(self, key)))
    }
    fn revision(&self) -> StoreFuture<'_, Revision> {
        Box::pin(std::future::ready(Store::revision(self)))
    }
    fn keeps_audit(&self) -> bool {
        Store::keeps_audit(self)
    }
    fn audit<'a>(&'a self, query: &'a AuditQuery) -> StoreFuture<'a, Vec<AuditEntry>> {
        Box::pin(std::future::ready(Store::audit(self, query)))
    }
    fn append_reads<'a>(&'a self, reads: &'a [ReadNote]) -> StoreFuture<'a, ()> {
        Box::pin(std::future::ready(Store::append_reads(self, reads)))
    }
}
