//! Recording reads of secrets in the audit trail (off unless the host turns
//! it on with [`RegistryBuilder::audit_reads`](super::RegistryBuilder::audit_reads)).
//!
//! A read of secrets (a resolution whose answer holds secret values, an
//! OAuth access token handed out) becomes a [`ReadNote`]. With
//! [`ReadAudit::synchronous`] the note is appended to the store before the
//! answer is returned; with [`ReadAudit::queued`] the read goes into a
//! bounded in-memory queue that a thread of the registry drains to the
//! store in batches, so the read itself costs no store round trip (a
//! resolution is queued as its answer, shared rather than copied, and made
//! into its note by that thread). What happens when
//! that queue is full is the host's choice ([`QueueFull`]).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::{ActorId, ReadField, ReadNote, SecretRead, Timestamp};
use crate::resolve::{Explanation, ResolvedEnv, ResolvedVar};
use crate::store::{Store, StoreError};

/// How a registry records reads of secrets in the audit trail (see
/// [`RegistryBuilder::audit_reads`](super::RegistryBuilder::audit_reads)).
///
/// ```
/// use connective::registry::{QueueFull, ReadAudit};
/// let audit = ReadAudit::queued(10_000, QueueFull::Drop);
/// assert_eq!(audit.capacity(), Some(10_000));
/// assert_eq!(ReadAudit::synchronous().capacity(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAudit {
    delivery: Delivery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Synchronous,
    Queued { capacity: usize, when_full: QueueFull },
}

impl ReadAudit {
    /// Each read is appended to the store before its answer is returned
    /// (one store round trip per read, on the calling thread); if the store
    /// cannot record it, the read fails and nothing secret is handed out.
    /// For hosts whose rules say "no unrecorded read"; an async host calls
    /// reads through `spawn_blocking` in this mode.
    pub fn synchronous() -> Self {
        ReadAudit {
            delivery: Delivery::Synchronous,
        }
    }

    /// Each read is put into an in-memory queue of at most `capacity`
    /// entries (at least 1) and the read returns at once; a thread of the
    /// registry appends queued entries to the store in batches, in order,
    /// retrying while the store is unavailable. When the queue is full,
    /// `when_full` decides. Entries still queued when the process dies are
    /// lost: [`Registry::flush_read_audit`](super::Registry::flush_read_audit)
    /// waits for the queue to drain (dropping the registry does too, for a
    /// bounded time).
    pub fn queued(capacity: usize, when_full: QueueFull) -> Self {
        ReadAudit {
            delivery: Delivery::Queued {
                capacity: capacity.max(1),
                when_full,
            },
        }
    }

    /// The queue's capacity (`None`: synchronous).
    pub fn capacity(&self) -> Option<usize> {
        match self.delivery {
            Delivery::Synchronous => None,
            Delivery::Queued { capacity, .. } => Some(capacity),
        }
    }
}

/// What a read does when the queue of reads to record is full (see
/// [`ReadAudit::queued`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueFull {
    /// Wait until the registry's thread has made room (the read blocks its
    /// thread while the store is slow or down).
    Block,
    /// Do not record the read, count it
    /// ([`ReadAuditStats::dropped`]), and answer.
    Drop,
    /// Refuse the read: it fails and nothing secret is handed out.
    Fail,
}

/// How the recording of reads is doing (see
/// [`Registry::read_audit_stats`](super::Registry::read_audit_stats)).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ReadAuditStats {
    /// Reads waiting in the queue (or being appended) now.
    pub queued: usize,
    /// Reads appended to the store so far.
    pub recorded: u64,
    /// Reads not recorded because the queue was full ([`QueueFull::Drop`]),
    /// or still queued when the registry was dropped and the store could
    /// not take them.
    pub dropped: u64,
    /// Reads refused because they could not be recorded
    /// ([`QueueFull::Fail`], or a synchronous append that failed).
    pub refused: u64,
    /// Why the last append to the store failed, while it keeps failing
    /// (cleared by the next success).
    pub last_error: Option<StoreError>,
}

/// Why a read was refused: it could not be recorded.
#[derive(Debug, Clone)]
pub(crate) enum NotRecorded {
    /// The queue was full ([`QueueFull::Fail`]).
    QueueFull(usize),
    /// The store did not take it (synchronous).
    Store(StoreError),
}

impl fmt::Display for NotRecorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotRecorded::QueueFull(capacity) => {
                write!(f, "the queue of reads to audit is full ({capacity} entries)")
            }
            NotRecorded::Store(e) => write!(f, "the audit trail did not record it: {e}"),
        }
    }
}

/// How many reads the thread appends in one store call at most.
const DRAIN_BATCH: usize = 512;
/// Pauses between attempts while the store fails.
const RETRY_FIRST: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// How long dropping the registry waits for the queue to drain.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The read side of the audit trail of one registry.
pub(crate) struct Reads {
    /// Who reads are recorded as when the caller names nobody.
    default_actor: ActorId,
    store: Arc<dyn Store>,
    delivery: Delivery,
    shared: Arc<Shared>,
    drainer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when reads are queued, and when closing.
    work: Condvar,
    /// Signalled when the thread has appended (room, progress).
    done: Condvar,
}

/// A read waiting in the queue.
enum Pending {
    Note(ReadNote),
    /// A resolution's answer (shared, not copied), turned into its note by
    /// the registry's thread: off the read's path.
    Answer {
        actor: ActorId,
        at: Timestamp,
        env: ResolvedEnv,
    },
}

impl Pending {
    fn into_note(self) -> ReadNote {
        match self {
            Pending::Note(note) => note,
            Pending::Answer { actor, at, env } => ReadNote {
                actor,
                at,
                read: resolution_read(&env),
            },
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    /// Taken by the thread and being appended (still counted as queued).
    in_flight: usize,
    /// Reads accepted into the queue so far.
    accepted: u64,
    /// Reads accepted and then appended or dropped so far.
    settled: u64,
    recorded: u64,
    dropped: u64,
    refused: u64,
    last_error: Option<StoreError>,
    closed: bool,
}

impl fmt::Debug for Reads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reads")
            .field("default_actor", &self.default_actor)
            .field("delivery", &self.delivery)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Reads {
    pub(crate) fn new(setting: &ReadAudit, default_actor: ActorId, store: Arc<dyn Store>) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let drainer = match setting.delivery {
            Delivery::Synchronous => None,
            Delivery::Queued { .. } => {
                let (shared, store) = (Arc::clone(&shared), Arc::clone(&store));
                std::thread::Builder::new()
                    .name("connective-read-audit".into())
                    .spawn(move || drain(&shared, &*store))
                    .ok()
            }
        };
        // Without its thread (the system refused one), a queue would never
        // drain: record synchronously instead.
        let delivery = match drainer {
            None => Delivery::Synchronous,
            Some(_) => setting.delivery,
        };
        Reads {
            default_actor,
            store,
            delivery,
            shared,
            drainer: Mutex::new(drainer),
        }
    }

    /// Records the secret fields of `env` read by `actor` (the default
    /// actor if `None`); nothing for an answer without secrets.
    pub(crate) fn resolution(&self, actor: Option<&ActorId>, env: &ResolvedEnv) -> Result<(), NotRecorded> {
        if !env.iter().any(|v| v.value().is_secret()) {
            return Ok(());
        }
        let actor = actor.unwrap_or(&self.default_actor).clone();
        let at = Timestamp::now();
        match self.delivery {
            Delivery::Synchronous => self.append_now(ReadNote {
                actor,
                at,
                read: resolution_read(env),
            }),
            Delivery::Queued { capacity, when_full } => self.enqueue(
                Pending::Answer {
                    actor,
                    at,
                    env: env.clone(),
                },
                capacity,
                when_full,
            ),
        }
    }

    /// Records one explained variable's value, if secret.
    pub(crate) fn explained(
        &self,
        request: &crate::resolve::ResolveRequest,
        revision: crate::model::Revision,
        why: &Explanation,
    ) -> Result<(), NotRecorded> {
        if !why.value.is_secret() {
            return Ok(());
        }
        let p = &why.provenance;
        let fields = vec![ReadField {
            connection_id: p.connection_id,
            connection: p.connection.clone(),
            scope: p.scope.clone(),
            param: p.param.clone(),
        }];
        self.record(
            None,
            SecretRead::Resolution {
                project: request.project.clone(),
                integration: request.integration.clone(),
                environment: request.environment.clone(),
                customer: request.customer.clone(),
                revision,
                fields,
            },
        )
    }

    /// Records `read` by `actor` (the default actor if `None`) as the
    /// setting says.
    pub(crate) fn record(&self, actor: Option<&ActorId>, read: SecretRead) -> Result<(), NotRecorded> {
        let note = ReadNote {
            actor: actor.unwrap_or(&self.default_actor).clone(),
            at: Timestamp::now(),
            read,
        };
        match self.delivery {
            Delivery::Synchronous => self.append_now(note),
            Delivery::Queued { capacity, when_full } => {
                self.enqueue(Pending::Note(note), capacity, when_full)
            }
        }
    }

    /// Appends `note` to the store now (synchronous delivery).
    fn append_now(&self, note: ReadNote) -> Result<(), NotRecorded> {
        match self.store.append_reads(std::slice::from_ref(&note)) {
            Ok(()) => {
                self.shared.lock().recorded += 1;
                Ok(())
            }
            Err(e) => {
                self.shared.lock().refused += 1;
                Err(NotRecorded::Store(e))
            }
        }
    }

    /// Puts `pending` into the queue, or does what `when_full` says.
    fn enqueue(&self, pending: Pending, capacity: usize, when_full: QueueFull) -> Result<(), NotRecorded> {
        let mut state = self.shared.lock();
        while state.queue.len() + state.in_flight >= capacity {
            match when_full {
                QueueFull::Drop => {
                    state.dropped += 1;
                    return Ok(());
                }
                QueueFull::Fail => {
                    state.refused += 1;
                    return Err(NotRecorded::QueueFull(capacity));
                }
                QueueFull::Block => {
                    state = self.shared.done.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
        state.queue.push_back(pending);
        state.accepted += 1;
        drop(state);
        self.shared.work.notify_one();
        Ok(())
    }

    /// Waits until every read queued before the call is appended (or
    /// dropped), at most `timeout`; `Err` with the last store error (or a
    /// timeout) if not.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), StoreError> {
        let deadline = crate::deadline::after(timeout);
        let mut state = self.shared.lock();
        let target = state.accepted;
        while state.settled < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || state.closed {
                return Err(state.last_error.clone().unwrap_or(StoreError::Timeout {
                    backend: self.store.backend(),
                    what: "recording the queued reads in the audit trail".into(),
                    after: timeout,
                }));
            }
            state = self
                .shared
                .done
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Ok(())
    }

    pub(crate) fn stats(&self) -> ReadAuditStats {
        let state = self.shared.lock();
        ReadAuditStats {
            queued: state.queue.len() + state.in_flight,
            recorded: state.recorded,
            dropped: state.dropped,
            refused: state.refused,
            last_error: state.last_error.clone(),
        }
    }
}

impl Drop for Reads {
    /// Lets the thread append what is queued (for a bounded time), then
    /// stops it.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_all();
        self.shared.done.notify_all();
        let drainer = self.drainer.get_mut().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = drainer {
            let _ = handle.join();
        }
    }
}

/// The read a resolution's answer is: its request and its secret fields.
fn resolution_read(env: &ResolvedEnv) -> SecretRead {
    let request = env.request();
    SecretRead::Resolution {
        project: request.project.clone(),
        integration: request.integration.clone(),
        environment: request.environment.clone(),
        customer: request.customer.clone(),
        revision: env.revision(),
        fields: secret_fields(env.iter()),
    }
}

/// The secret fields among `vars`, in order.
fn secret_fields<'a>(vars: impl Iterator<Item = ResolvedVar<'a>>) -> Vec<ReadField> {
    vars.filter(|v| v.is_secret())
        .map(|v| ReadField {
            connection_id: v.connection_id(),
            connection: v.connection().clone(),
            scope: v.scope().clone(),
            param: v.param().clone(),
        })
        .collect()
}

/// The thread's loop: appends queued reads in batches, in order, retrying
/// while the store fails; once closed, drains what it can within
/// [`CLOSE_WAIT`] and drops the rest (counted).
fn drain(shared: &Shared, store: &dyn Store) {
    let mut pause = RETRY_FIRST;
    let mut closing_since: Option<Instant> = None;
    loop {
        let batch: Vec<Pending> = {
            let mut state = shared.lock();
            while state.queue.is_empty() && !state.closed {
                state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            if state.queue.is_empty() {
                return;
            }
            if state.closed {
                let since = *closing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= CLOSE_WAIT {
                    let lost = state.queue.len() as u64;
                    state.queue.clear();
                    state.dropped += lost;
                    state.settled += lost;
                    drop(state);
                    shared.done.notify_all();
                    return;
                }
            }
            let n = state.queue.len().min(DRAIN_BATCH);
            state.in_flight = n;
            state.queue.drain(..n).collect()
        };
        // Answers become notes here, off the reads' path.
        let batch: Vec<ReadNote> = batch.into_iter().map(Pending::into_note).collect();
        let outcome = store.append_reads(&batch);
        let mut state = shared.lock();
        state.in_flight = 0;
        match outcome {
            Ok(()) => {
                state.recorded += batch.len() as u64;
                state.settled += batch.len() as u64;
                state.last_error = None;
                pause = RETRY_FIRST;
                drop(state);
                shared.done.notify_all();
            }
            Err(e) => {
                // Back at the front, in order; try again after a pause.
                for note in batch.into_iter().rev() {
                    state.queue.push_front(Pending::Note(note));
                }
                state.last_error = Some(e);
                drop(state);
                shared.done.notify_all();
                std::thread::sleep(pause);
                pause = (pause * 2).min(RETRY_MAX);
            }
        }
    }
}
