//! Durability and sharing: records, versions, atomic batches with expected
//! versions, and a change feed ordered by revision.
//!
//! A store knows nothing of precedence or OAuth: it keeps [`Record`]s under
//! [`RecordKey`]s. [`MemoryStore`] is the default; the `sqlite` and `postgres`
//! features add durable ones, and a host may bring its own. Every
//! implementation must pass the conformance suite (feature `test-kit`).
//!
//! # The contract
//! - [`Store::commit`] applies a [`Batch`] whole or not at all. Each [`Write`]
//!   names what it expects to find ([`Expect::Absent`] or
//!   [`Expect::Version`]); if any expectation fails, nothing is written and the
//!   store answers [`StoreError::Conflict`] for the first failing write.
//! - A put makes the key's version the previous one plus one, where "previous"
//!   counts deleted incarnations too (versions of a key never repeat); a new key
//!   starts at 1. A key at [`Version::MAX`] cannot be written again (put or
//!   delete): the batch is refused with [`StoreError::LastVersion`] and
//!   nothing is written ([`next_version`] is the rule).
//! - Every committed batch gets the next [`Revision`] (1, 2, 3, ...). The change
//!   feed lists every write of every batch, in revision order and, within a
//!   batch, in write order. A store whose head is at [`Revision::MAX`] (only
//!   corruption gets there) refuses every batch with
//!   [`StoreError::LastRevision`] before looking at its writes, and writes
//!   nothing ([`next_revision`] is the rule).
//! - A batch may carry a [`CommitToken`]; the store keeps it with the batch as
//!   long as the feed keeps the batch's revision, and [`Store::find_commit`]
//!   finds it. When a commit cannot tell whether the batch was applied (the
//!   connection dropped while committing), it answers
//!   [`StoreError::OutcomeUnknown`]; the batch was then applied whole or not at
//!   all, and `find_commit` says which. Every other error means nothing was
//!   written.
//!
//! # Blocking and async stores
//! [`Store`] is the contract with blocking calls; [`AsyncStore`] (feature
//! `async`) is the same contract with calls that return futures, for hosts on
//! tokio. A backend implements the contract once: [`MemoryStore`] answers both
//! at once (nothing waits), and [`PostgresStore`] is async code whose blocking
//! calls are driven on its own runtime. `SqliteStore` is blocking only (a
//! local file; async hosts call it through `spawn_blocking`). A store of
//! your own implements [`Store`], and [`AsyncStore`] too if it can wait
//! without blocking; the registry's async writes use [`AsyncStore`] when the
//! registry was built with one. [`StoreError::is_retryable`] tells which
//! failures may pass by themselves.

#[cfg(feature = "async")]
mod async_store;
mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod rows;
#[cfg(feature = "seal")]
pub mod seal;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "async")]
pub use async_store::{AsyncStore, StoreFuture};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{NOTIFY_CHANNEL, POSTGRES_SCHEMA_VERSION, PostgresSettings, PostgresStore, SslMode};
#[cfg(feature = "sqlite")]
pub use sqlite::{SQLITE_SCHEMA_VERSION, SqliteStore};

use crate::model::{
    AuditAction, AuditChange, AuditEntry, AuditNote, AuditOperation, AuditQuery, ReadNote, Record, RecordKey,
    Revision, Timestamp, Version,
};

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Expect {
    /// No live record under the key.
    Absent,
    /// The live record at exactly this version.
    Version(Version),
}

impl Expect {
    /// **Rule 8, no lost updates**: whether a write expecting `self` may go
    /// ahead on `key`, whose live record is at version `found` (`None`: no
    /// live record). The one check of an expectation: every backend of this
    /// crate runs it on each write of a batch before writing anything, and
    /// the registry's transaction on each edit; a host's own backend should
    /// too. A failure is the [`StoreError::Conflict`] to answer.
    ///
    /// ```
    /// use connective::model::{ProjectId, RecordKey, Version};
    /// use connective::store::Expect;
    /// let key = RecordKey::Mappings("acme".parse()?, "orders".parse()?);
    /// assert!(Expect::Version(Version(2)).check(&key, Some(Version(2))).is_ok());
    /// let stale = Expect::Version(Version(1)).check(&key, Some(Version(2))).unwrap_err();
    /// assert_eq!(
    ///     stale.to_string(),
    ///     "conflict on mappings of integration orders of project acme: expected version v1, found version v2"
    /// );
    /// assert!(Expect::Absent.check(&key, Some(Version(2))).is_err());
    /// # Ok::<(), connective::model::ParseError>(())
    /// ```
    pub fn check(self, key: &RecordKey, found: Option<Version>) -> Result<(), StoreError> {
        let met = match self {
            Expect::Absent => found.is_none(),
            Expect::Version(v) => found == Some(v),
        };
        if met {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                key: key.clone(),
                expected: self,
                found,
            })
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Absent => f.write_str("no record"),
            Expect::Version(v) => write!(f, "version {v}"),
        }
    }
}

/// The version a write of `key` gives it, `previous` being the key's last
/// version (its live record's, or its tombstone's; `None` for a key never
/// written): the next one, or [`StoreError::LastVersion`] when `previous`
/// is [`Version::MAX`]. The one rule of a new version: every backend of this
/// crate computes each write's version with it, after
/// [`Expect::check`] and before writing anything; a host's own backend
/// should too.
///
/// ```
/// use connective::model::{RecordKey, Version};
/// use connective::store::next_version;
/// let key = RecordKey::Mappings("acme".parse()?, "orders".parse()?);
/// assert_eq!(next_version(&key, None)?, Version(1));
/// assert_eq!(next_version(&key, Some(Version(4)))?, Version(5));
/// let last = next_version(&key, Some(Version::MAX)).unwrap_err();
/// assert_eq!(
///     last.to_string(),
///     "mappings of integration orders of project acme is at the last version v72057594037927935 and cannot be written again"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn next_version(key: &RecordKey, previous: Option<Version>) -> Result<Version, StoreError> {
    match previous {
        None => Ok(Version::FIRST),
        Some(v) => v.next().ok_or_else(|| StoreError::LastVersion {
            key: key.clone(),
            version: v,
        }),
    }
}

/// The revision a batch committed on a store whose head is `head` gets:
/// the next one, or [`StoreError::LastRevision`] when `head` is
/// [`Revision::MAX`]. Every backend of this crate takes a batch's revision
/// with it before writing anything (PostgreSQL: its bump of the head
/// refuses to pass the same limit); a host's own backend should too.
///
/// ```
/// use connective::model::Revision;
/// use connective::store::next_revision;
/// assert_eq!(next_revision("memory", Revision(41))?, Revision(42));
/// let last = next_revision("memory", Revision::MAX).unwrap_err();
/// assert_eq!(
///     last.to_string(),
///     "memory store is at the last revision r9223372036854775807 and cannot commit another batch"
/// );
/// assert!(!last.is_retryable());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn next_revision(backend: &'static str, head: Revision) -> Result<Revision, StoreError> {
    head.next().ok_or(StoreError::LastRevision {
        backend,
        revision: head,
    })
}

/// [`StoreError::Unreadable`] for a record whose stored version `stored`
/// is no version (outside [`Version::FIRST`]`..=`[`Version::MAX`]): the one
/// message of every store of this crate, and of the registry for a version
/// a host's own store gives it.
pub(crate) fn not_a_version(
    backend: &'static str,
    key: &RecordKey,
    stored: impl std::fmt::Display,
) -> StoreError {
    StoreError::Unreadable {
        backend,
        what: key.to_string(),
        message: format!(
            "its stored version {stored} is not a version (versions run from {} to {})",
            Version::FIRST.0,
            Version::MAX.0
        ),
    }
}

/// The last instant an audit entry can have (`i64::MAX` milliseconds, in
/// the year 292,278,994): the durable stores keep instants as signed 64-bit
/// numbers, and every store refuses a later one alike
/// ([`Batch::validate`], and [`Store::append_reads`] with
/// [`check_audit_instant`]).
pub const LAST_AUDIT_INSTANT: Timestamp = Timestamp(i64::MAX as u64);

/// Refuses an audit entry's instant past [`LAST_AUDIT_INSTANT`] with
/// [`StoreError::InvalidBatch`] saying whose (`what`, e.g. "the read by
/// user:alice"). A store's [`Store::append_reads`] checks every read with
/// it before appending any.
///
/// ```
/// use connective::model::Timestamp;
/// use connective::store::{LAST_AUDIT_INSTANT, check_audit_instant};
/// assert!(check_audit_instant(LAST_AUDIT_INSTANT, "a read").is_ok());
/// let err = check_audit_instant(Timestamp(u64::MAX), "a read").unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid batch: the instant of a read, 18446744073709551.615s, is past the last one a store keeps (9223372036854775.807s)"
/// );
/// ```
pub fn check_audit_instant(at: Timestamp, what: &str) -> Result<(), StoreError> {
    if at <= LAST_AUDIT_INSTANT {
        return Ok(());
    }
    Err(StoreError::InvalidBatch {
        reason: format!(
            "the instant of {what}, {at}, is past the last one a store keeps ({LAST_AUDIT_INSTANT})"
        ),
    })
}

/// The one wording of a version conflict (rule 8), shared by
/// [`StoreError::Conflict`] and the registry's conflict.
pub(crate) struct ConflictMessage<'a> {
    pub(crate) key: &'a RecordKey,
    pub(crate) expected: &'a Expect,
    pub(crate) found: &'a Option<Version>,
}

impl std::fmt::Display for ConflictMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // What was found, in the words of an expectation.
        let found = self.found.map_or(Expect::Absent, Expect::Version);
        write!(
            f,
            "conflict on {}: expected {}, found {found}",
            self.key, self.expected
        )
    }
}

/// What a write does.
#[derive(Debug, Clone)]
pub enum Op {
    /// Stores the record (its key must be the write's key).
    Put(Record),
    /// Removes the record.
    Delete,
}

/// One conditional write.
#[derive(Debug, Clone)]
pub struct Write {
    /// Which record.
    pub key: RecordKey,
    /// What the writer read.
    pub expect: Expect,
    /// What to do.
    pub op: Op,
}

impl Write {
    /// A put of `record` expecting `expect`.
    pub fn put(record: Record, expect: Expect) -> Self {
        Write {
            key: record.key(),
            expect,
            op: Op::Put(record),
        }
    }

    /// A delete of `key` expecting `expect`.
    pub fn delete(key: RecordKey, expect: Expect) -> Self {
        Write {
            key,
            expect,
            op: Op::Delete,
        }
    }
}

/// A batch's name, unique among the batches of a store: kept with the batch
/// so that a writer whose commit lost its answer can find out whether it was
/// applied ([`Store::find_commit`]). Shown as 32 hexadecimal digits.
///
/// ```
/// use connective::store::CommitToken;
/// let token = CommitToken::new(0x2a);
/// assert_eq!(token.to_string(), "0000000000000000000000000000002a");
/// assert_eq!(token.to_string().parse::<CommitToken>(), Ok(token));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommitToken {
    // Two halves rather than a `u128`: 8-byte alignment keeps an optional
    // token at 24 bytes where a store keeps one per batch.
    high: u64,
    low: u64,
}

impl CommitToken {
    /// The token with this number.
    pub const fn new(n: u128) -> Self {
        CommitToken {
            high: (n >> 64) as u64,
            low: n as u64,
        }
    }

    /// A random token (from the operating system's generator, as a
    /// [`ConnectionId`](crate::model::ConnectionId) is).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        crate::model::random::fill(&mut bytes);
        CommitToken::new(u128::from_le_bytes(bytes))
    }

    /// The token's number.
    pub const fn get(self) -> u128 {
        ((self.high as u128) << 64) | self.low as u128
    }
}

impl std::fmt::Display for CommitToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.get())
    }
}

/// A text that is not a [`CommitToken`] (32 hexadecimal digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a commit token is 32 hexadecimal digits")]
pub struct BadCommitToken;

impl std::str::FromStr for CommitToken {
    type Err = BadCommitToken;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BadCommitToken);
        }
        u128::from_str_radix(s, 16)
            .map(CommitToken::new)
            .map_err(|_| BadCommitToken)
    }
}

/// Writes that commit whole or not at all. A key may appear at most once.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The writes, in order.
    pub writes: Vec<Write>,
    /// The batch's name, kept with it (see [`Store::find_commit`]).
    pub token: Option<CommitToken>,
    /// Who made it and when: a store that keeps an audit trail
    /// ([`Store::keeps_audit`]) writes the batch's [`AuditEntry`] in the
    /// same transaction.
    pub audit: Option<AuditNote>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// Names the batch with `token`.
    pub fn with_token(mut self, token: CommitToken) -> Self {
        self.token = Some(token);
        self
    }

    /// Attaches the note of who made the batch and when.
    pub fn with_audit(mut self, note: AuditNote) -> Self {
        self.audit = Some(note);
        self
    }

    /// The audit note and action of this batch committed as `revision`,
    /// from each write's live version before (`None`: absent) and after, in
    /// batch order; `None` without an audit note.
    pub(crate) fn audit_action(
        &self,
        revision: Revision,
        before: &[Option<Version>],
        after: &[Version],
    ) -> Option<(&AuditNote, AuditAction)> {
        let note = self.audit.as_ref()?;
        let changes = self
            .writes
            .iter()
            .zip(before.iter().zip(after))
            .map(|(w, (before, after))| AuditChange {
                key: w.key.clone(),
                operation: match (&w.op, before) {
                    (Op::Delete, _) => AuditOperation::Deleted,
                    (Op::Put(_), Some(_)) => AuditOperation::Updated,
                    (Op::Put(_), None) => AuditOperation::Created,
                },
                before: *before,
                after: *after,
            })
            .collect();
        Some((note, AuditAction::Write { revision, changes }))
    }

    /// Appends a write.
    pub fn push(&mut self, write: Write) -> &mut Self {
        self.writes.push(write);
        self
    }

    /// Checks the batch's own shape: not empty, each key at most once, each
    /// put's record under its own key, an audit note's instant at most
    /// [`LAST_AUDIT_INSTANT`]. Stores call this before anything else.
    pub fn validate(&self) -> Result<(), StoreError> {
        if self.writes.is_empty() {
            return Err(StoreError::InvalidBatch {
                reason: "the batch is empty".into(),
            });
        }
        if let Some(note) = &self.audit {
            check_audit_instant(note.at, "the batch's audit note")?;
        }
        let mut seen = std::collections::HashSet::with_capacity(self.writes.len());
        for w in &self.writes {
            if !seen.insert(&w.key) {
                return Err(StoreError::InvalidBatch {
                    reason: format!("{} is written twice", w.key),
                });
            }
            if let Op::Put(record) = &w.op
                && record.key() != w.key
            {
                return Err(StoreError::InvalidBatch {
                    reason: format!("a put under {} carries the record of {}", w.key, record.key()),
                });
            }
        }
        Ok(())
    }
}

/// What a successful commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The batch's revision.
    pub revision: Revision,
    /// Per write, in batch order: the new version (a delete gets the version its
    /// tombstone carries).
    pub versions: Vec<Version>,
}

/// One entry of the change feed.
#[derive(Debug, Clone)]
pub struct Change {
    /// The batch's revision.
    pub revision: Revision,
    /// Which record.
    pub key: RecordKey,
    /// Its new version.
    pub version: Version,
    /// What the write left under the key.
    pub change: Changed,
}

impl Change {
    /// The record after the write: `None` for a delete, or a record that
    /// cannot be read back.
    pub fn record(&self) -> Option<&Record> {
        match &self.change {
            Changed::Put(record) => Some(record),
            Changed::Deleted | Changed::Unreadable(_) => None,
        }
    }
}

/// What a write left under its key.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Changed {
    /// This record.
    Put(Record),
    /// Nothing: the record was deleted.
    Deleted,
    /// A record this store cannot read back (e.g. its secrets are sealed
    /// under a key this replica's ring lacks).
    Unreadable(Box<UnreadableRecord>),
}

/// A stored record that cannot be read back: corrupt, sealed under a key the
/// ring lacks, or under different key bytes with the same ID. The rest of
/// the store is read without it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct UnreadableRecord {
    /// The record's key.
    pub key: RecordKey,
    /// Its version.
    pub version: Version,
    /// When a sealed secret could not be opened: the ID of the key that
    /// sealed it.
    pub key_id: Option<String>,
    /// Why ([`StoreError::Unreadable`]; never a value).
    pub error: StoreError,
}

impl UnreadableRecord {
    /// A record under `key` at `version` that cannot be read, and why.
    pub fn new(key: RecordKey, version: Version, key_id: Option<String>, error: StoreError) -> Self {
        UnreadableRecord {
            key,
            version,
            key_id,
            error,
        }
    }
}

impl std::fmt::Display for UnreadableRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.key, self.version, self.error)
    }
}

/// Everything a store holds, at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The revision of the last batch included.
    pub revision: Revision,
    /// Every live record with its version.
    pub records: Vec<(Version, Record)>,
    /// Live records that cannot be read back, left out of `records`.
    pub unreadable: Vec<UnreadableRecord>,
}

/// A store failure. Messages name keys and versions, never values.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A write's expectation failed: somebody else wrote first.
    #[error("{}", ConflictMessage { key, expected, found })]
    Conflict {
        /// The record.
        key: RecordKey,
        /// What the writer expected.
        expected: Expect,
        /// What the store holds (`None`: no live record).
        found: Option<Version>,
    },
    /// The store's head revision is [`Revision::MAX`] (a corrupt store: no
    /// real one gets there), so no batch can be committed
    /// ([`next_revision`]). Nothing was written. Not retryable.
    #[error("{backend} store is at the last revision {revision} and cannot commit another batch")]
    LastRevision {
        /// Which backend.
        backend: &'static str,
        /// The store's head revision.
        revision: Revision,
    },
    /// A write of a key already at [`Version::MAX`]: versions never
    /// repeat, so the key cannot be written again (see [`next_version`]).
    /// Nothing was written. Not retryable.
    #[error("{key} is at the last version {version} and cannot be written again")]
    LastVersion {
        /// The record.
        key: RecordKey,
        /// Its version.
        version: Version,
    },
    /// The batch itself is malformed.
    #[error("invalid batch: {reason}")]
    InvalidBatch {
        /// Why.
        reason: String,
    },
    /// The change feed no longer holds the revisions asked for; reload with
    /// [`Store::load`].
    #[error("change feed truncated: revisions after {requested} are needed but the oldest kept is {oldest}")]
    FeedTruncated {
        /// The revision asked after.
        requested: Revision,
        /// The oldest revision still in the feed.
        oldest: Revision,
    },
    /// The store does not do what was asked (an audit trail, from a store
    /// that keeps none).
    #[error("{backend} store does not support {what}")]
    Unsupported {
        /// Which backend.
        backend: &'static str,
        /// What it does not support.
        what: &'static str,
    },
    /// The backend cannot be reached or failed; nothing was written.
    #[error("{backend} store unavailable: {message}")]
    Unavailable {
        /// Which backend.
        backend: &'static str,
        /// What went wrong (never a value).
        message: String,
    },
    /// The commit's answer was lost (the connection dropped while
    /// committing): the batch was applied whole or not at all, and
    /// [`Store::find_commit`] tells which.
    #[error("{backend} store lost the answer to a commit, which may or may not have been applied: {message}")]
    OutcomeUnknown {
        /// Which backend.
        backend: &'static str,
        /// What went wrong (never a value).
        message: String,
    },
    /// The key ring holds a key under an ID that the store has bound to other
    /// key bytes (it keeps a check value of each key ID's key from its first
    /// use): opening is refused before anything is read or sealed.
    #[error(
        "{backend} store: key {key_id:?} of the key ring is not the key the store knows under that id; give this replica the right key"
    )]
    KeyMismatch {
        /// Which backend.
        backend: &'static str,
        /// The key ID.
        key_id: String,
    },
    /// A call did not finish within its deadline (a statement waiting on a
    /// lock, a server that stopped answering, no pooled connection free): it
    /// was cancelled and nothing was written. Retryable.
    #[error("{backend} store: {what} did not finish within {after:?} and was cancelled")]
    Timeout {
        /// Which backend.
        backend: &'static str,
        /// What timed out (never a value).
        what: String,
        /// The deadline it had.
        after: Duration,
    },
    /// A TLS connection to the server could not be set up as configured
    /// (an untrusted certificate, a host name the certificate does not
    /// name, a server without TLS when TLS is required). Not retryable:
    /// the configuration or the server must change.
    #[error("{backend} store: TLS with {server} failed: {failure}")]
    Tls {
        /// Which backend.
        backend: &'static str,
        /// The server (host and port; never a password).
        server: String,
        /// What failed.
        failure: TlsFailure,
    },
    /// A stored record cannot be read back (corruption, a missing or wrong key
    /// for sealed secrets, a schema newer than this code). Nothing is changed.
    #[error("{backend} store cannot read {what}: {message}")]
    Unreadable {
        /// Which backend.
        backend: &'static str,
        /// What could not be read.
        what: String,
        /// Why (never a value).
        message: String,
    },
}

impl StoreError {
    /// Whether the same call may succeed later without any change on the
    /// caller's side: the backend was unavailable or too slow, or the
    /// answer to a commit was lost. A conflict is not (re-read first).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unavailable { .. } | StoreError::Timeout { .. } | StoreError::OutcomeUnknown { .. }
        )
    }
}

/// Why a TLS connection could not be set up ([`StoreError::Tls`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFailure {
    /// The server's certificate does not chain to a trusted root (the CA
    /// file given, or the system's roots).
    #[error("the server's certificate is not signed by a trusted certificate authority")]
    UntrustedCertificate,
    /// The certificate is trusted but names another host (`verify-full`).
    #[error("the server's certificate is not valid for host {host}")]
    WrongHostName {
        /// The host name connected to.
        host: String,
    },
    /// TLS is required but the server does not offer it.
    #[error("the server does not accept TLS connections, and the TLS mode requires it")]
    NotOffered,
    /// The trusted roots could not be read (a CA file that is missing or
    /// holds no certificate).
    #[error("cannot read the trusted certificates: {0}")]
    Roots(String),
    /// Another handshake failure.
    #[error("handshake failed: {0}")]
    Handshake(String),
}

/// Durable (or not) storage of records, shared between host replicas.
///
/// Implementations must be `Send + Sync` and follow the contract in the
/// [module documentation](self). Calls may block on I/O.
pub trait Store: Send + Sync + 'static {
    /// A short name for messages (`memory`, `sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    /// Everything live, at the latest revision. A record that cannot be read
    /// back is listed in [`Snapshot::unreadable`] instead of failing the
    /// whole load.
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Applies `batch` whole or not at all. Answers
    /// [`StoreError::OutcomeUnknown`] only when it cannot tell which.
    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError>;

    /// The batch committed with `token` among the batches after revision
    /// `after`, as [`Store::commit`] would have answered it, or `None` if none
    /// of them has that token. The answer is final: a commit of that batch
    /// still in flight when this is called is waited for (or can no longer
    /// apply). Answers [`StoreError::FeedTruncated`] when the feed no longer
    /// holds every batch after `after`.
    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError>;

    /// The changes of every batch with a revision greater than `after`, in
    /// order, at most `limit` batches (a batch is never split). A record that
    /// cannot be read back is [`Changed::Unreadable`].
    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError>;

    /// One live record and its version.
    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError>;

    /// The latest committed revision.
    fn revision(&self) -> Result<Revision, StoreError>;

    /// Whether the store keeps an audit trail: it writes an [`AuditEntry`]
    /// for each committed batch that carries an [`AuditNote`] (in the
    /// batch's transaction), appends reads ([`Store::append_reads`]) and
    /// answers [`Store::audit`]. The memory, SQLite and PostgreSQL stores
    /// do; the default is no.
    fn keeps_audit(&self) -> bool {
        false
    }

    /// The audit entries `query` selects, in trail order (see
    /// [`AuditQuery`]). The default answers [`StoreError::Unsupported`].
    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let _ = query;
        Err(StoreError::Unsupported {
            backend: self.backend(),
            what: "an audit trail",
        })
    }

    /// Appends one entry per read to the audit trail, in order, all or
    /// none: each gets the next [`AuditPosition`](crate::model::AuditPosition)
    /// (after every entry appended or committed before). The default
    /// answers [`StoreError::Unsupported`].
    fn append_reads(&self, reads: &[ReadNote]) -> Result<(), StoreError> {
        let _ = reads;
        Err(StoreError::Unsupported {
            backend: self.backend(),
            what: "an audit trail",
        })
    }

    /// A hint, before a commit that will write `key`: reads ahead what that
    /// commit will read of `key` (in a large store, cold lines), calling
    /// `alongside` once meanwhile, so that its reads and the store's
    /// overlap. The registry calls it, with reads of its own catalog as
    /// `alongside`, before an update of a connection; `alongside` must not
    /// call the store. It changes nothing. The default only calls
    /// `alongside`; the memory store reads its entry for `key` ahead.
    fn read_ahead_with(&self, key: &RecordKey, alongside: &mut dyn FnMut()) {
        let _ = key;
        alongside();
    }

    /// Blocks until the store may hold a revision greater than `after`, or
    /// `timeout` passes; returns the latest revision seen. Followers call this in
    /// a loop. The default polls [`Store::revision`] every 10 ms; backends with
    /// a notification channel (PostgreSQL's `LISTEN/NOTIFY`) wake earlier.
    /// `Duration::MAX` waits without limit.
    fn wait_for_change(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
        let deadline = crate::deadline::after(timeout);
        loop {
            let now = self.revision()?;
            if now > after || Instant::now() >= deadline {
                return Ok(now);
            }
            std::thread::sleep(
                Duration::from_millis(10).min(deadline.saturating_duration_since(Instant::now())),
            );
        }
    }
}

impl<S: Store + ?Sized> Store for Arc<S> {
    fn backend(&self) -> &'static str {
        (**self).backend()
    }
    fn load(&self) -> Result<Snapshot, StoreError> {
        (**self).load()
    }
    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        (**self).commit(batch)
    }
    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        (**self).find_commit(token, after)
    }
    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        (**self).changes_since(after, limit)
    }
    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        (**self).get(key)
    }
    fn revision(&self) -> Result<Revision, StoreError> {
        (**self).revision()
    }
    fn wait_for_change(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
        (**self).wait_for_change(after, timeout)
    }
    fn read_ahead_with(&self, key: &RecordKey, alongside: &mut dyn FnMut()) {
        (**self).read_ahead_with(key, alongside)
    }
    fn keeps_audit(&self) -> bool {
        (**self).keeps_audit()
    }
    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        (**self).audit(query)
    }
    fn append_reads(&self, reads: &[ReadNote]) -> Result<(), StoreError> {
        (**self).append_reads(reads)
    }
}
