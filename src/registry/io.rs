//! The store calls of the write path, as one interface over a blocking
//! [`Store`] and an [`AsyncStore`](crate::store::AsyncStore): the write path
//! is written once, as `async` code generic over [`Io`]; only these calls
//! and the pauses differ between the blocking and the async front door.

use std::future::{Future, ready};
use std::time::Duration;

use crate::model::Revision;
use crate::store::{Batch, Change, CommitToken, Committed, Snapshot, Store, StoreError};

/// What the write path asks of a store, and how it pauses.
pub(super) trait Io: Sync {
    fn backend(&self) -> &'static str;
    fn load(&self) -> impl Future<Output = Result<Snapshot, StoreError>> + Send;
    fn commit<'a>(&'a self, batch: &'a Batch) -> impl Future<Output = Result<Committed, StoreError>> + Send;
    fn find_commit(
        &self,
        token: CommitToken,
        after: Revision,
    ) -> impl Future<Output = Result<Option<Committed>, StoreError>> + Send;
    fn changes_since(
        &self,
        after: Revision,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send;
    fn wait_for_change(
        &self,
        after: Revision,
        timeout: Duration,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send;
    fn pause(&self, pause: Duration) -> impl Future<Output = ()> + Send;
}

/// A blocking store: each call runs when it is made, and its future is
/// ready when polled; a pause sleeps the thread.
pub(super) struct Blocking<'s>(pub(super) &'s dyn Store);

impl Io for Blocking<'_> {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    fn load(&self) -> impl Future<Output = Result<Snapshot, StoreError>> + Send {
        ready(self.0.load())
    }
    fn commit<'a>(&'a self, batch: &'a Batch) -> impl Future<Output = Result<Committed, StoreError>> + Send {
        ready(self.0.commit(batch))
    }
    fn find_commit(
        &self,
        token: CommitToken,
        after: Revision,
    ) -> impl Future<Output = Result<Option<Committed>, StoreError>> + Send {
        ready(self.0.find_commit(token, after))
    }
    fn changes_since(
        &self,
        after: Revision,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send {
        ready(self.0.changes_since(after, limit))
    }
    fn wait_for_change(
        &self,
        after: Revision,
        timeout: Duration,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send {
        ready(self.0.wait_for_change(after, timeout))
    }
    fn pause(&self, pause: Duration) -> impl Future<Output = ()> + Send {
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        ready(())
    }
}

/// An async store: its futures, and tokio's timer.
#[cfg(feature = "async")]
pub(super) struct Async<'s>(pub(super) &'s dyn crate::store::AsyncStore);

#[cfg(feature = "async")]
impl Io for Async<'_> {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    fn load(&self) -> impl Future<Output = Result<Snapshot, StoreError>> + Send {
        self.0.load()
    }
    fn commit<'a>(&'a self, batch: &'a Batch) -> impl Future<Output = Result<Committed, StoreError>> + Send {
        self.0.commit(batch)
    }
    fn find_commit(
        &self,
        token: CommitToken,
        after: Revision,
    ) -> impl Future<Output = Result<Option<Committed>, StoreError>> + Send {
        self.0.find_commit(token, after)
    }
    fn changes_since(
        &self,
        after: Revision,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Change>, StoreError>> + Send {
        self.0.changes_since(after, limit)
    }
    fn wait_for_change(
        &self,
        after: Revision,
        timeout: Duration,
    ) -> impl Future<Output = Result<Revision, StoreError>> + Send {
        self.0.wait_for_change(after, timeout)
    }
    fn pause(&self, pause: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(pause)
    }
}
