//! Following the change feed: a thread for blocking hosts ([`Follower`]), a
//! tokio task for async ones ([`AsyncFollower`]), one loop
//! (`Registry::follow_with`) for both.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Registry, RegistryError, STOP_CHECK, io};
use crate::block_on::block_on;
use crate::model::Revision;

/// What a follower is doing, as the host sees it: caught up, or retrying
/// after a failure (the database went away) with the pause before the next
/// try. Resolution keeps working from the catalog meanwhile.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FollowStatus {
    /// Started; no look at the store has finished yet.
    Starting,
    /// The latest look at the store succeeded: the catalog reflects
    /// `revision`.
    Following {
        /// The revision the catalog reflects.
        revision: Revision,
    },
    /// The latest look failed; the follower tries again after `retry_in`
    /// (a pause that doubles with each failure, up to the poll interval).
    /// The store reconnects on the next try.
    Retrying {
        /// Failures in a row (1 for the first).
        attempt: u32,
        /// Why the latest look failed.
        error: RegistryError,
        /// The pause before the next try.
        retry_in: Duration,
    },
}

impl FollowStatus {
    /// The error of the latest look, if it failed.
    pub fn error(&self) -> Option<&RegistryError> {
        match self {
            FollowStatus::Retrying { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// The first pause after a failure; it doubles with each failure in a row.
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// The pause after `failures` failures in a row: 50 ms, doubling, at most
/// `poll` (and at least 50 ms).
pub(super) fn backoff(failures: u32, poll: Duration) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    doubled.min(poll.max(FIRST_RETRY))
}

/// A background thread following the change feed; stops on drop.
#[derive(Debug)]
pub struct Follower {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    status: Arc<Mutex<FollowStatus>>,
}

pub(super) fn spawn_thread(registry: Arc<Registry>, poll: Duration) -> Follower {
    let stop = Arc::new(AtomicBool::new(false));
    let status = Arc::new(Mutex::new(FollowStatus::Starting));
    let (stop2, status2) = (Arc::clone(&stop), Arc::clone(&status));
    let handle = std::thread::Builder::new()
        .name("connective-follower".into())
        .spawn(move || {
            let report = |s: FollowStatus| *status2.lock().unwrap_or_else(|e| e.into_inner()) = s;
            // Wait in short slices so that dropping the follower stops it
            // promptly whatever `poll` is.
            block_on(registry.follow_with(
                &io::Blocking(&*registry.store),
                poll,
                STOP_CHECK,
                &stop2,
                &report,
            ));
        })
        .ok();
    Follower { stop, handle, status }
}

impl Follower {
    /// The last error the follower met, if the latest attempt failed (e.g. the
    /// database is down; resolution keeps working from the catalog).
    pub fn last_error(&self) -> Option<RegistryError> {
        self.status().error().cloned()
    }

    /// What the follower is doing.
    pub fn status(&self) -> FollowStatus {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether the thread is running.
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// A tokio task following the change feed (feature `async`), from
/// [`Registry::follow_async`]; dropping it stops the task.
///
/// Its status is a [`tokio::sync::watch`] channel: [`AsyncFollower::status`]
/// reads it, [`AsyncFollower::subscribe`] gives a receiver whose
/// `changed().await` wakes on each change (caught up to a new revision, a
/// failure, the recovery).
#[cfg(feature = "async")]
#[derive(Debug)]
pub struct AsyncFollower {
    task: tokio::task::JoinHandle<()>,
    status: tokio::sync::watch::Receiver<FollowStatus>,
}

#[cfg(feature = "async")]
impl AsyncFollower {
    /// What the follower is doing.
    pub fn status(&self) -> FollowStatus {
        self.status.borrow().clone()
    }

    /// A receiver of the follower's status, to await its changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<FollowStatus> {
        self.status.clone()
    }

    /// The last error the follower met, if the latest attempt failed.
    pub fn last_error(&self) -> Option<RegistryError> {
        self.status.borrow().error().cloned()
    }

    /// Whether the task is running.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }
}

#[cfg(feature = "async")]
impl Drop for AsyncFollower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(feature = "async")]
impl Registry {
    /// Follows the store's change feed on a tokio task (feature `async`; call
    /// it inside a tokio runtime): the same loop and guarantees as
    /// [`Registry::follow`], awaiting the registry's [`AsyncStore`]
    /// (PostgreSQL: woken by `LISTEN/NOTIFY` through the async client, else
    /// polling every `poll`). A failure (the database went away) is reported
    /// as [`FollowStatus::Retrying`] and retried with a pause that doubles
    /// up to `poll`; the store reconnects. Dropping the returned
    /// [`AsyncFollower`] stops the task.
    ///
    /// On a registry without an async store the task calls the blocking
    /// store: use [`Registry::follow`] for those.
    ///
    /// [`AsyncStore`]: crate::store::AsyncStore
    ///
    /// # Panics
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn follow_async(self: &Arc<Self>, poll: Duration) -> AsyncFollower {
        let (sender, status) = tokio::sync::watch::channel(FollowStatus::Starting);
        let registry = Arc::clone(self);
        let task = tokio::spawn(async move {
            let report = |s: FollowStatus| {
                sender.send_replace(s);
            };
            // Dropping the follower aborts the task: no flag to watch.
            let never = AtomicBool::new(false);
            match &registry.async_store {
                Some(store) => {
                    registry
                        .follow_with(&io::Async(&**store), poll, poll, &never, &report)
                        .await
                }
                None => {
                    registry
                        .follow_with(&io::Blocking(&*registry.store), poll, poll, &never, &report)
                        .await
                }
            }
        });
        AsyncFollower { task, status }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_poll_interval() {
        let poll = Duration::from_millis(300);
        let pauses: Vec<_> = (1..=5).map(|n| backoff(n, poll).as_millis()).collect();
        assert_eq!(pauses, vec![50, 100, 200, 300, 300]);
        assert_eq!(
            backoff(u32::MAX, Duration::from_secs(1000)),
            Duration::from_secs(1000)
        );
        assert_eq!(backoff(1, Duration::ZERO), FIRST_RETRY);
    }
}
