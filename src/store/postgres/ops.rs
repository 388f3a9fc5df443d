//! The store's calls on the async client: one implementation, awaited by
//! async callers and driven to completion for blocking ones.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, TimeoutType};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, CancelToken, Config, IsolationLevel};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::pipeline::{Open, Outcome, Pipeline};
use super::settings::PostgresSettings;
use super::tls::{self, Roots, SslMode};
use super::{BACKEND, NOTIFY_CHANNEL, POSTGRES_SCHEMA_VERSION};
use crate::block_on::block_on;
use crate::model::{
    AuditAction, AuditEntry, AuditKind, AuditQuery, ReadNote, Record, RecordKey, Revision, Version,
};
use crate::store::rows::{
    self, decode_audit, decode_changes, decode_key, decode_live, decode_record, encode_audit, encode_batch,
    encode_key, encode_record, in_feed, to_u64,
};
use crate::store::seal::{self, KeyRing, Resealed};
use crate::store::{
    Batch, Change, CommitToken, Committed, Snapshot, StoreError, check_audit_instant, next_version,
};

/// The schema, one migration per version: `MIGRATIONS[n]` takes version `n`
/// to `n + 1`. Never edit a released entry; append a new one. Plain SQL that
/// Postgres-wire distributed databases accept as well.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: records with tombstones, the change feed, the head revision.
    "CREATE TABLE connective_head (
         id INT PRIMARY KEY,
         revision BIGINT NOT NULL,
         feed_floor BIGINT NOT NULL
     );
     INSERT INTO connective_head (id, revision, feed_floor) VALUES (1, 0, 0);
     CREATE TABLE connective_records (
         key TEXT PRIMARY KEY,
         project TEXT NOT NULL,
         version BIGINT NOT NULL,
         revision BIGINT NOT NULL,
         body TEXT
     );
     CREATE INDEX connective_records_project ON connective_records (project);
     CREATE TABLE connective_changes (
         revision BIGINT NOT NULL,
         seq INT NOT NULL,
         key TEXT NOT NULL,
         version BIGINT NOT NULL,
         body TEXT,
         PRIMARY KEY (revision, seq)
     );",
    // 2: the tokens of committed batches, kept as long as the feed keeps them.
    "CREATE TABLE connective_commits (
         revision BIGINT PRIMARY KEY,
         token TEXT NOT NULL
     );",
    // 3: the check value of each sealing key ID's key, from its first use.
    "CREATE TABLE connective_seal_keys (
         key_id TEXT PRIMARY KEY,
         key_check TEXT NOT NULL
     );",
    // 4: the audit trail, append-only: one entry per audited batch, and the
    // keys it changed (to find a record's entries). Rows are never updated
    // (the application role needs only INSERT, SELECT and, for retention,
    // DELETE on them).
    "CREATE TABLE connective_audit (
         revision BIGINT PRIMARY KEY,
         at BIGINT NOT NULL,
         actor TEXT NOT NULL,
         body TEXT NOT NULL
     );
     CREATE INDEX connective_audit_actor ON connective_audit (actor, revision);
     CREATE INDEX connective_audit_at ON connective_audit (at);
     CREATE TABLE connective_audit_keys (
         key TEXT NOT NULL,
         revision BIGINT NOT NULL,
         PRIMARY KEY (key, revision)
     );",
    // 5: the audit trail keeps reads of secrets too, which have no revision:
    // entries are keyed by their position in the trail, a write's entry
    // keeps its revision. Positions come from a counter row that writers
    // and readers lock until they commit, so position order is commit
    // order (a reader paging with `after` misses nothing) and positions are
    // never reused. Version 4's entries move over at position = revision,
    // their bodies as they were.
    "CREATE TABLE connective_audit_trail (
         position BIGINT PRIMARY KEY,
         revision BIGINT UNIQUE,
         at BIGINT NOT NULL,
         actor TEXT NOT NULL,
         body TEXT NOT NULL
     );
     INSERT INTO connective_audit_trail (position, revision, at, actor, body)
         SELECT revision, revision, at, actor, body FROM connective_audit;
     CREATE INDEX connective_audit_trail_actor ON connective_audit_trail (actor, position);
     CREATE INDEX connective_audit_trail_at ON connective_audit_trail (at);
     CREATE TABLE connective_audit_trail_keys (
         key TEXT NOT NULL,
         position BIGINT NOT NULL,
         PRIMARY KEY (key, position)
     );
     INSERT INTO connective_audit_trail_keys (key, position)
         SELECT key, revision FROM connective_audit_keys;
     CREATE TABLE connective_audit_head (
         id INT PRIMARY KEY,
         position BIGINT NOT NULL
     );
     INSERT INTO connective_audit_head (id, position)
         SELECT 1, COALESCE(MAX(position), 0) FROM connective_audit_trail;
     DROP TABLE connective_audit_keys;
     DROP TABLE connective_audit;",
];

/// Reads appended to the audit trail in one statement (so in one
/// transaction): takes the next `$1` audit positions (locking the counter
/// until it commits, so position order is commit order), writes the
/// entries at them (`$2` instants, `$3` actors, `$4` bodies, in order) and
/// the keys each is about (`$5` the entry's place in `$2`..`$4`, from 1;
/// `$6` the key).
const READS_WRITE: &str = "WITH p AS (
         UPDATE connective_audit_head SET position = position + $1 WHERE id = 1
         RETURNING position - $1 AS base
     ), entry AS (
         INSERT INTO connective_audit_trail (position, revision, at, actor, body)
         SELECT p.base + e.n, NULL::BIGINT, e.at, e.actor, e.body
         FROM p, unnest($2::BIGINT[], $3::TEXT[], $4::TEXT[]) WITH ORDINALITY AS e (at, actor, body, n)
     )
     INSERT INTO connective_audit_trail_keys (key, position)
     SELECT k.key, p.base + k.n FROM p, unnest($5::BIGINT[], $6::TEXT[]) AS k (n, key)";
/// The audit entries a query selects (see [`AuditQuery`]); `$6` is true
/// for writes only, false for reads only.
const AUDIT_QUERY: &str = "SELECT position, body FROM connective_audit_trail
     WHERE position > $1 AND ($2::TEXT IS NULL OR actor = $2) AND ($3::BIGINT IS NULL OR at >= $3)
         AND ($4::BIGINT IS NULL OR at < $4)
         AND ($5::TEXT IS NULL OR position IN
             (SELECT position FROM connective_audit_trail_keys WHERE key = $5))
         AND ($6::BOOLEAN IS NULL OR (revision IS NOT NULL) = $6)
     ORDER BY position LIMIT $7";

/// How often a transaction that lost a serialization race is retried.
const RETRIES: usize = 8;

/// Takes the next revision; locks the head row until the transaction
/// ends. A prepared statement, so the server plans it once per connection
/// (as a simple query it was planned on every commit). `$1` is
/// [`LAST_REVISION`]: at it, no row is bumped, and the commit is refused
/// ([`StoreError::LastRevision`]) in the same round trip.
const BUMP: &str =
    "UPDATE connective_head SET revision = revision + 1 WHERE id = 1 AND revision < $1 RETURNING revision";
/// [`Revision::MAX`] as the head row keeps it.
const LAST_REVISION: i64 = Revision::MAX.0 as i64;
/// [`BUMP`] that also queues the `NOTIFY` announcing the new revision (the
/// payload) on [`NOTIFY_CHANNEL`]: the server sends it when the transaction
/// commits, and drops it if the transaction rolls back, so the announcement
/// costs no round trip of its own and reaches followers as the commit does.
const BUMP_NOTIFY: &str = "UPDATE connective_head SET revision = revision + 1 WHERE id = 1 AND revision < $1
     RETURNING revision, pg_notify('connective_feed', revision::TEXT)";
const READ_VERSIONS: &str = "SELECT key, version, body IS NULL FROM connective_records WHERE key = ANY($1)";
/// A batch's records, one array element per write: `$1` revision, `$2`
/// keys, `$3` projects, `$4` versions, `$5` bodies (null: deleted).
const UPSERT: &str = "INSERT INTO connective_records (key, project, version, revision, body)
     SELECT w.key, w.project, w.version, $1::BIGINT, w.body
     FROM unnest($2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[]) AS w (key, project, version, body)
     ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version,
         revision = EXCLUDED.revision, body = EXCLUDED.body";
/// A batch's changes in the feed: `$1` revision, then per write `$2` its
/// place in the batch, `$3` key, `$4` version, `$5` body.
const APPEND: &str = "INSERT INTO connective_changes (revision, seq, key, version, body)
     SELECT $1::BIGINT, w.seq, w.key, w.version, w.body
     FROM unnest($2::INT[], $3::TEXT[], $4::BIGINT[], $5::TEXT[]) AS w (seq, key, version, body)";
/// A batch's audit entry at the next audit position (locking the counter
/// until commit), with the keys it changed: `$1` revision, `$2` instant,
/// `$3` actor, `$4` body, `$5` keys.
const AUDIT_WRITE: &str = "WITH p AS (
         UPDATE connective_audit_head SET position = position + 1 WHERE id = 1 RETURNING position
     ), entry AS (
         INSERT INTO connective_audit_trail (position, revision, at, actor, body)
         SELECT position, $1::BIGINT, $2::BIGINT, $3::TEXT, $4::TEXT FROM p
     )
     INSERT INTO connective_audit_trail_keys (key, position)
     SELECT k, p.position FROM p, unnest($5::TEXT[]) AS k";
const TOKEN: &str = "INSERT INTO connective_commits (revision, token) VALUES ($1, $2)";
const HEAD: &str = "SELECT revision, feed_floor FROM connective_head WHERE id = 1";
const LIVE: &str = "SELECT key, version, body FROM connective_records WHERE body IS NOT NULL";
const ONE: &str = "SELECT version, body FROM connective_records WHERE key = $1 AND body IS NOT NULL";
/// The head and the feed's batches after `$1` up to `$2` (or the head),
/// in one statement: one snapshot, so every batch up to the head it reads
/// has committed and is there (committers hold the head row until they
/// commit), and one round trip. The head comes on every row; with no
/// batch to read, one row of head alone.
const HEAD_AND_FEED: &str = "SELECT h.revision, h.feed_floor, c.revision, c.key, c.version, c.body
     FROM connective_head h
     LEFT JOIN connective_changes c ON c.revision > $1 AND c.revision <= LEAST(h.revision, $2)
     WHERE h.id = 1
     ORDER BY c.revision, c.seq";

/// Begins a transaction whose lock waits give up after 10 s (one simple
/// query).
const BEGIN_WAITING: &str = "BEGIN; SET LOCAL lock_timeout = '10s'";
const HEAD_FOR_UPDATE: &str = "SELECT revision, feed_floor FROM connective_head WHERE id = 1 FOR UPDATE";
/// The revision of the batch committed after `$1` with token `$2`, on
/// each of its changes' rows with the change's version, in order (a batch
/// without changes: one row, without a version).
const COMMIT_BY_TOKEN: &str = "SELECT c.revision, ch.version FROM connective_commits c
     LEFT JOIN connective_changes ch ON ch.revision = c.revision
     WHERE c.revision > $1 AND c.token = $2
     ORDER BY ch.seq";

/// Begins a transaction and locks the head row until it ends (one simple
/// query): commits wait, and each statement after it sees every commit
/// before.
const BEGIN_LOCK_HEAD: &str = "BEGIN; SELECT 1 FROM connective_head WHERE id = 1 FOR UPDATE";
/// The feed's changes through revision `$1` (at most the head), when the
/// floor is below it.
const PRUNE_CHANGES: &str = "DELETE FROM connective_changes c USING connective_head h
     WHERE h.id = 1 AND c.revision <= LEAST($1::BIGINT, h.revision)
         AND LEAST($1::BIGINT, h.revision) > h.feed_floor";
/// [`PRUNE_CHANGES`] for the tokens of committed batches.
const PRUNE_COMMITS: &str = "DELETE FROM connective_commits c USING connective_head h
     WHERE h.id = 1 AND c.revision <= LEAST($1::BIGINT, h.revision)
         AND LEAST($1::BIGINT, h.revision) > h.feed_floor";
/// Raises the feed's floor to `$1` (at most the head), never lowers it.
const RAISE_FLOOR: &str = "UPDATE connective_head SET feed_floor = LEAST($1::BIGINT, revision)
     WHERE id = 1 AND LEAST($1::BIGINT, revision) > feed_floor";

const RECORD_BODIES: &str = "SELECT key, body FROM connective_records WHERE body IS NOT NULL";
const CHANGE_BODIES: &str = "SELECT revision, seq, key, body FROM connective_changes WHERE body IS NOT NULL";
/// New bodies of records: `$1` keys, `$2` bodies.
const RESEAL_RECORDS: &str = "UPDATE connective_records r SET body = w.body
     FROM unnest($1::TEXT[], $2::TEXT[]) AS w (key, body) WHERE r.key = w.key";
/// New bodies of the feed's changes: `$1` revisions, `$2` places in their
/// batch, `$3` bodies.
const RESEAL_CHANGES: &str = "UPDATE connective_changes c SET body = w.body
     FROM unnest($1::BIGINT[], $2::INT[], $3::TEXT[]) AS w (revision, seq, body)
     WHERE c.revision = w.revision AND c.seq = w.seq";
/// The most rows one statement of a re-seal rewrites (bounds each message).
const RESEAL_CHUNK: usize = 1000;

/// The store's state, shared by its calls and its listener task.
pub(super) struct Inner {
    pub(super) pool: Pool,
    pub(super) shown: String,
    pub(super) ring: Arc<KeyRing>,
    /// The host name certificates are checked against.
    tls_host: String,
    /// TLS for the listener's connection and for cancel requests.
    tls: MakeRustlsConnect,
    /// How the listener connects (`None`: a host's pool without settings,
    /// so followers poll).
    listen: Option<Config>,
    notify: AtomicBool,
    poll_interval_us: AtomicU64,
    statement_timeout: Duration,
    connect_timeout: Duration,
    listener: tokio::sync::Mutex<Option<Listener>>,
    /// Woken by each notification (and when the listener dies).
    wake: Arc<Notify>,
    /// The highest revision a notification announced (0: none yet).
    heard: Arc<AtomicU64>,
}

/// The connection that `LISTEN`s, driven by a task of its own.
struct Listener {
    _client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
    alive: Arc<AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Why a call failed: the store's own answer, or the database's.
pub(super) enum Failure {
    Store(StoreError),
    Db(&'static str, tokio_postgres::Error),
    /// The connection was lost while committing: the outcome is unknown.
    LostCommit(tokio_postgres::Error),
    /// The database refused the commit's `NOTIFY` (it lacks one): the
    /// transaction rolled back, nothing was written.
    Announce(tokio_postgres::Error),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

trait Context<T> {
    fn ctx(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn ctx(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|e| Failure::Db(what, e))
    }
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// Whether the server refused `pg_notify` itself (a Postgres-wire database
/// without `NOTIFY`: no such function, or not supported), as opposed to any
/// other failure of the statement that carries it (a read-only standby
/// after a failover, a lock timeout, a full disk), which must not turn the
/// store's notifications off for good.
fn refuses_notify(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::FEATURE_NOT_SUPPORTED || *c == SqlState::UNDEFINED_FUNCTION)
}

/// A database error as a message: the server's own words and code (its
/// `message`, never its `detail`, which may quote a row), not the bare "db
/// error" the client's `Display` gives.
fn described(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Whether the server cancelled the statement for taking too long.
fn cancelled(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::QUERY_CANCELED || *c == SqlState::LOCK_NOT_AVAILABLE)
}

/// A poll interval in whole microseconds, as the store keeps it: one too
/// long for a `u64` (more than 584,000 years) is the longest, not wrapped
/// to a short one (`as u64` made 2^60 s into 0: a busy loop).
fn micros(interval: Duration) -> u64 {
    u64::try_from(interval.as_micros()).unwrap_or(u64::MAX)
}

fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::InvalidBatch {
        reason: format!("{what} {n} is out of range"),
    })
}

/// A column of a row, as a typed error instead of a panic.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| StoreError::Unreadable {
        backend: BACKEND,
        what: format!("column {i} of a row"),
        message: e.to_string(),
    })
}

fn head_of(row: &tokio_postgres::Row) -> Result<(Revision, Revision), StoreError> {
    let (revision, floor): (i64, i64) = (col(row, 0)?, col(row, 1)?);
    rows::head(BACKEND, revision, floor)
}

fn pool_of(settings: &PostgresSettings, tls: MakeRustlsConnect) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        settings.pool_config(),
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(settings.pool_timeout))
        .create_timeout(Some(settings.connect_timeout))
        .recycle_timeout(Some(settings.connect_timeout))
        .build()
        .map_err(|e| StoreError::Unavailable {
            backend: BACKEND,
            message: format!("cannot build the connection pool: {e}"),
        })
}

impl Inner {
    /// The store's state from `settings`, on `pool` if given, else on a
    /// pool of its own.
    pub(super) fn new(
        settings: &PostgresSettings,
        pool: Option<Pool>,
        keys: KeyRing,
    ) -> Result<Self, StoreError> {
        let shown = settings.server();
        let tls = tls::connector(settings.ssl_mode, &settings.roots, &shown)?;
        let pool = match pool {
            Some(pool) => pool,
            None => pool_of(settings, tls.clone())?,
        };
        Ok(Inner {
            pool,
            shown,
            ring: Arc::new(keys),
            tls_host: settings.tls_host(),
            tls,
            listen: Some(settings.config.clone()),
            notify: AtomicBool::new(settings.notify),
            poll_interval_us: AtomicU64::new(micros(settings.poll_interval)),
            statement_timeout: settings.statement_timeout,
            connect_timeout: settings.connect_timeout,
            listener: tokio::sync::Mutex::new(None),
            wake: Arc::new(Notify::new()),
            heard: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The store's state on a host's pool, without connection settings:
    /// default deadlines, no listener.
    pub(super) fn for_pool(pool: Pool, keys: KeyRing) -> Result<Self, StoreError> {
        let tls = tls::connector(SslMode::Prefer, &Roots::Default, "the host's pool")?;
        Ok(Inner {
            pool,
            shown: "the host's pool".into(),
            ring: Arc::new(keys),
            tls_host: String::new(),
            tls,
            listen: None,
            notify: AtomicBool::new(true),
            poll_interval_us: AtomicU64::new(200_000),
            statement_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            listener: tokio::sync::Mutex::new(None),
            wake: Arc::new(Notify::new()),
            heard: Arc::new(AtomicU64::new(0)),
        })
    }

    pub(super) fn set_poll_interval(&self, interval: Duration) {
        let us = micros(interval.max(Duration::from_millis(1)));
        self.poll_interval_us.store(us, Ordering::Relaxed);
    }

    fn poll_interval(&self) -> Duration {
        Duration::from_micros(self.poll_interval_us.load(Ordering::Relaxed))
    }

    pub(super) fn disable_notify(&self) {
        self.notify.store(false, Ordering::Relaxed);
    }

    /// Creates or migrates the schema, then binds the key ring's keys.
    pub(super) async fn start(&self) -> Result<(), StoreError> {
        self.migrate().await?;
        self.bind_keys().await
    }

    fn pool_error(&self, e: PoolError) -> StoreError {
        match e {
            PoolError::Timeout(kind) => {
                let (what, after) = match kind {
                    TimeoutType::Wait => ("waiting for a free pooled connection", self.statement_timeout),
                    TimeoutType::Create => ("connecting", self.connect_timeout),
                    TimeoutType::Recycle => ("checking a pooled connection", self.connect_timeout),
                };
                StoreError::Timeout {
                    backend: BACKEND,
                    what: format!("{what} to {}", self.shown),
                    after,
                }
            }
            PoolError::Backend(e) => match tls::classify(&e, &self.tls_host) {
                Some(failure) => StoreError::Tls {
                    backend: BACKEND,
                    server: self.shown.clone(),
                    failure,
                },
                // The client says only "error connecting to server" or "db
                // error": add the cause ("Connection refused") or the
                // server's own words (`described`).
                None => StoreError::Unavailable {
                    backend: BACKEND,
                    message: match (e.as_db_error(), std::error::Error::source(&e)) {
                        (None, Some(cause)) => format!("cannot connect to {}: {e}: {cause}", self.shown),
                        _ => format!("cannot connect to {}: {}", self.shown, described(&e)),
                    },
                },
            },
            other => StoreError::Unavailable {
                backend: BACKEND,
                message: format!("no connection to {}: {other}", self.shown),
            },
        }
    }

    fn db_error(&self, what: &'static str, e: &tokio_postgres::Error) -> StoreError {
        if cancelled(e) {
            return StoreError::Timeout {
                backend: BACKEND,
                what: format!("{what} on {}", self.shown),
                after: self.statement_timeout,
            };
        }
        StoreError::Unavailable {
            backend: BACKEND,
            message: format!("{what} on {}: {}", self.shown, described(e)),
        }
    }

    /// Asks the server to cancel what the connection of `token` runs
    /// (bounded by the connect timeout; best effort).
    async fn cancel(&self, token: &CancelToken) {
        let _ = tokio::time::timeout(self.connect_timeout, token.cancel_query(self.tls.clone())).await;
    }

    /// Runs `body` on a pooled connection within the statement timeout. A
    /// connection that failed is dropped rather than pooled again; one that
    /// ran out of time has its statement cancelled and is dropped, and the
    /// call answers [`StoreError::Timeout`] (or
    /// [`StoreError::OutcomeUnknown`] if `committing` was set by then).
    async fn with_conn<T>(
        &self,
        what: &'static str,
        committing: Option<&AtomicBool>,
        body: impl AsyncFnOnce(&mut Object) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        let token = conn.cancel_token();
        let outcome = tokio::time::timeout(self.statement_timeout, body(&mut conn)).await;
        match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(Failure::Store(e))) => Err(e),
            Ok(Err(Failure::Db(context, e))) => {
                if e.as_db_error().is_none() {
                    drop(Object::take(conn));
                }
                Err(self.db_error(context, &e))
            }
            Ok(Err(Failure::Announce(e))) => Err(self.db_error("cannot announce the commit", &e)),
            Ok(Err(Failure::LostCommit(e))) => {
                drop(Object::take(conn));
                Err(StoreError::OutcomeUnknown {
                    backend: BACKEND,
                    message: format!("the connection to {} was lost while committing: {e}", self.shown),
                })
            }
            Err(_) => {
                self.cancel(&token).await;
                drop(Object::take(conn));
                if committing.is_some_and(|c| c.load(Ordering::Acquire)) {
                    Err(StoreError::OutcomeUnknown {
                        backend: BACKEND,
                        message: format!(
                            "the commit on {} did not answer within {:?}",
                            self.shown, self.statement_timeout
                        ),
                    })
                } else {
                    Err(StoreError::Timeout {
                        backend: BACKEND,
                        what: format!("{what} on {}", self.shown),
                        after: self.statement_timeout,
                    })
                }
            }
        }
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let shown = self.shown.clone();
            let outcome = self
                .with_conn("migrating the schema", None, async |conn| {
                    match try_migrate(conn, &shown).await {
                        // Replicas starting together race to create the
                        // tables; the loser of a race sees a duplicate and
                        // retries.
                        Err(Failure::Db(_, e))
                            if attempt < RETRIES
                                && (retryable(&e)
                                    || e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                                    || e.code() == Some(&SqlState::DUPLICATE_TABLE)
                                    || e.code() == Some(&SqlState::DUPLICATE_OBJECT)) =>
                        {
                            Ok(false)
                        }
                        Err(Failure::LostCommit(e)) => Err(Failure::Db("cannot migrate the schema", e)),
                        other => other.map(|()| true),
                    }
                })
                .await?;
            if outcome {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(10 * attempt as u64)).await;
        }
    }

    /// Binds the ring's keys to their IDs (see "Key binding" in
    /// [`seal`](crate::store::seal)), in one transaction (concurrent
    /// replicas binding one ID wait for each other; the second reads the
    /// first's check). The binding rules are blocking code shared with the
    /// SQLite store: they run on a blocking thread, each statement awaited
    /// there while the runtime drives the connection.
    async fn bind_keys(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        let token = conn.cancel_token();
        let ring = Arc::clone(&self.ring);
        let work = tokio::task::spawn_blocking(move || -> Result<(), Failure> {
            let tx = block_on(conn.transaction()).ctx("cannot begin a transaction")?;
            seal::bind_keys(
                BACKEND,
                &ring,
                |id| {
                    let row = block_on(tx.query_opt(
                        "SELECT key_check FROM connective_seal_keys WHERE key_id = $1",
                        &[&id],
                    ))
                    .ctx("cannot read the key checks")?;
                    Ok(row.map(|r| col::<String>(&r, 0)).transpose()?)
                },
                |needle| {
                    let rows = block_on(tx.query(
                        "(SELECT body FROM connective_records WHERE strpos(body, $1) > 0 LIMIT 3)
                         UNION ALL
                         (SELECT body FROM connective_changes WHERE strpos(body, $1) > 0 LIMIT 3)
                         LIMIT 3",
                        &[&needle],
                    ))
                    .ctx("cannot look for sealed values")?;
                    Ok(rows
                        .iter()
                        .map(|r| col::<String>(r, 0))
                        .collect::<Result<_, _>>()?)
                },
                |id, check| {
                    block_on(tx.execute(
                        "INSERT INTO connective_seal_keys (key_id, key_check) VALUES ($1, $2)
                         ON CONFLICT (key_id) DO NOTHING",
                        &[&id, &check],
                    ))
                    .map(drop)
                    .ctx("cannot record a key check")
                },
            )?;
            block_on(tx.commit()).ctx("cannot commit the key checks")
        });
        match tokio::time::timeout(self.statement_timeout, work).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(Failure::Store(e)))) => Err(e),
            Ok(Ok(Err(Failure::Db(what, e)))) => Err(self.db_error(what, &e)),
            Ok(Ok(Err(Failure::LostCommit(e) | Failure::Announce(e)))) => {
                Err(self.db_error("binding the key ring's keys", &e))
            }
            Ok(Err(join)) => Err(StoreError::Unavailable {
                backend: BACKEND,
                message: format!("binding the key ring's keys failed: {join}"),
            }),
            Err(_) => {
                self.cancel(&token).await;
                Err(StoreError::Timeout {
                    backend: BACKEND,
                    what: format!("binding the key ring's keys on {}", self.shown),
                    after: self.statement_timeout,
                })
            }
        }
    }

    pub(super) async fn load(&self) -> Result<Snapshot, StoreError> {
        let (revision, rows) = self
            .with_conn("reading records", None, async |conn| {
                let tx = snapshot(conn).await?;
                let head = head_of(
                    &tx.query_one(HEAD, &[])
                        .await
                        .ctx("cannot read the head revision")?,
                )?;
                let live = tx.prepare_cached(LIVE).await.ctx("cannot prepare a statement")?;
                let rows = tx.query(&live, &[]).await.ctx("cannot read records")?;
                tx.commit().await.ctx("cannot end the snapshot")?;
                let mut out = Vec::with_capacity(rows.len());
                for row in &rows {
                    out.push((
                        col::<String>(row, 0)?,
                        col::<i64>(row, 1)?,
                        col::<String>(row, 2)?,
                    ));
                }
                Ok((head.0, out))
            })
            .await?;
        let (records, unreadable) = decode_live(BACKEND, &self.ring, rows)?;
        Ok(Snapshot {
            revision,
            records,
            unreadable,
        })
    }

    pub(super) async fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        batch.validate()?;
        // Seal and encode before taking the lock.
        let encoded = encode_batch(BACKEND, &self.ring, batch)?;
        let keys: Vec<&str> = encoded.iter().map(|(k, _)| k.as_str()).collect();
        let committing = AtomicBool::new(false);
        self.with_conn("committing", Some(&committing), async |conn| {
            let mut attempt = 0;
            loop {
                attempt += 1;
                // Wake followers early: the commit announces its revision
                // with NOTIFY, in its own transaction. Some Postgres-wire
                // databases lack NOTIFY; there the attempt fails before
                // anything is written, and is made again without it
                // (polling is correct without it).
                let announce = if self.notify.load(Ordering::Relaxed) {
                    Announce::Notify
                } else {
                    Announce::Quiet
                };
                match commit_once(conn, batch, &encoded, &keys, &committing, announce).await {
                    Err(Failure::Db(_, e)) if retryable(&e) && attempt < RETRIES => {
                        committing.store(false, Ordering::Release);
                        tokio::time::sleep(Duration::from_millis(2 * attempt as u64)).await;
                    }
                    Err(Failure::Announce(_)) => self.disable_notify(),
                    other => break other,
                }
            }
        })
        .await
    }

    /// One round trip: `BEGIN` with a lock timeout, the head row locked,
    /// the batch looked up and `COMMIT`, pipelined (read-only: if one fails,
    /// the ones after it fail with it or read, and nothing is written).
    pub(super) async fn find_commit(
        &self,
        token: CommitToken,
        after: Revision,
    ) -> Result<Option<Committed>, StoreError> {
        // Past every revision a row can hold: the head check finds nothing after it.
        let after_i = i64::try_from(after.0).unwrap_or(i64::MAX);
        let token = token.to_string();
        let found = self
            .with_conn("looking up a commit", None, async |conn| {
                let (head, lookup) = tokio::join!(
                    biased;
                    conn.prepare_cached(HEAD_FOR_UPDATE),
                    conn.prepare_cached(COMMIT_BY_TOKEN),
                );
                let prepared = |s: Result<_, _>| s.ctx("cannot prepare a statement");
                let (head, lookup) = (prepared(head)?, prepared(lookup)?);
                let client: &tokio_postgres::Client = conn;
                let lookup_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&after_i, &token];
                // A transaction that lost its client while committing holds
                // the head row until the server has committed or aborted
                // it: waiting for the row (bounded, for a server that has
                // not noticed yet that its client is gone) makes the answer
                // final, and the look-up after it sees that transaction's
                // outcome. All four are sent in this one poll: the `COMMIT`
                // always follows the `BEGIN`.
                let (begun, locked, rows, ended) = tokio::join!(
                    biased;
                    client.batch_execute(BEGIN_WAITING),
                    client.query_one(&head, &[]),
                    client.query(&lookup, &lookup_params),
                    client.batch_execute("COMMIT"),
                );
                // The first failure is the real one.
                begun.ctx("cannot begin a transaction")?;
                let locked = locked.ctx("cannot wait for committers to finish")?;
                let rows = rows.ctx("cannot look up a commit")?;
                ended.ctx("cannot end the look-up")?;
                if !rows::batches_after(after, head_of(&locked)?)? {
                    return Ok(None);
                }
                let Some(first) = rows.first() else {
                    return Ok(None);
                };
                let rev: i64 = col(first, 0)?;
                let mut versions = Vec::with_capacity(rows.len());
                for row in &rows {
                    // A batch without changes: one row, no version.
                    if let Some(version) = col::<Option<i64>>(row, 1)? {
                        versions.push(version);
                    }
                }
                Ok(Some((rev, versions)))
            })
            .await?;
        found
            .map(|(rev, versions)| rows::committed(BACKEND, rev, versions))
            .transpose()
    }

    pub(super) async fn changes_since(
        &self,
        after: Revision,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Past every revision a row can hold: the head check finds nothing after it.
        let after_i = i64::try_from(after.0).unwrap_or(i64::MAX);
        // Revisions are consecutive, so `limit` batches end at after + limit
        // (or the head, if that comes first).
        let last = i64::try_from(after.0.saturating_add(limit as u64)).unwrap_or(i64::MAX);
        let rows = self
            .with_conn("reading the change feed", None, async |conn| {
                let feed = conn
                    .prepare_cached(HEAD_AND_FEED)
                    .await
                    .ctx("cannot prepare a statement")?;
                let rows = conn
                    .query(&feed, &[&after_i, &last])
                    .await
                    .ctx("cannot read the change feed")?;
                let Some(first) = rows.first() else {
                    return Err(StoreError::Unreadable {
                        backend: BACKEND,
                        what: "the head revision".into(),
                        message: "the head row is missing".into(),
                    }
                    .into());
                };
                if !rows::batches_after(after, head_of(first)?)? {
                    return Ok(Vec::new());
                }
                let mut out = Vec::with_capacity(rows.len());
                for row in &rows {
                    // The head alone (no batch read) has no change columns.
                    let Some(revision) = col::<Option<i64>>(row, 2)? else {
                        continue;
                    };
                    out.push((
                        revision,
                        col::<String>(row, 3)?,
                        col::<i64>(row, 4)?,
                        col::<Option<String>>(row, 5)?,
                    ));
                }
                Ok(out)
            })
            .await?;
        decode_changes(BACKEND, &self.ring, rows)
    }

    pub(super) async fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        let key_text = encode_key(BACKEND, key)?;
        let row = self
            .with_conn("reading a record", None, async |conn| {
                let one = conn.prepare_cached(ONE).await.ctx("cannot prepare a statement")?;
                let row = conn
                    .query_opt(&one, &[&key_text])
                    .await
                    .ctx("cannot read a record")?;
                match row {
                    None => Ok(None),
                    Some(row) => Ok(Some((col::<i64>(&row, 0)?, col::<String>(&row, 1)?))),
                }
            })
            .await?;
        match row {
            None => Ok(None),
            Some((version, body)) => {
                let record = decode_record(BACKEND, &self.ring, key, &body)?;
                Ok(Some((rows::stored_version(BACKEND, key, version)?, record)))
            }
        }
    }

    /// One round trip: one statement, its own transaction, takes the
    /// positions and writes every entry and the keys it is about.
    pub(super) async fn append_reads(&self, reads: &[ReadNote]) -> Result<(), StoreError> {
        if reads.is_empty() {
            return Ok(());
        }
        let count = i64::try_from(reads.len()).map_err(|_| StoreError::InvalidBatch {
            reason: "too many audit entries".into(),
        })?;
        let mut ats = Vec::with_capacity(reads.len());
        let mut actors = Vec::with_capacity(reads.len());
        let mut bodies = Vec::with_capacity(reads.len());
        let (mut entries, mut keys) = (Vec::new(), Vec::new());
        for (entry, read) in (1i64..).zip(reads) {
            check_audit_instant(read.at, &format!("the read by {}", read.actor))?;
            bodies.push(encode_audit(
                BACKEND,
                read.at,
                &read.actor,
                &AuditAction::Read(read.read.clone()),
            )?);
            ats.push(to_i64(read.at.0, "the audit instant")?);
            actors.push(read.actor.as_str());
            for key in read.read.keys() {
                entries.push(entry);
                keys.push(encode_key(BACKEND, &key)?);
            }
        }
        self.with_conn("recording reads in the audit trail", None, async |conn| {
            let append = conn
                .prepare_cached(READS_WRITE)
                .await
                .ctx("cannot prepare a statement")?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                match conn
                    .execute(&append, &[&count, &ats, &actors, &bodies, &entries, &keys])
                    .await
                {
                    Ok(_) => break Ok(()),
                    Err(e) if retryable(&e) && attempt < RETRIES => {
                        tokio::time::sleep(Duration::from_millis(2 * attempt as u64)).await;
                    }
                    // Nothing to look up if the answer is lost: a failed
                    // append (the registry appends again; an entry may then
                    // appear twice, never be lost).
                    Err(e) => break Err(Failure::Db("cannot write the audit entry", e)),
                }
            }
        })
        .await
    }

    pub(super) async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let key = query.key.as_ref().map(|k| encode_key(BACKEND, k)).transpose()?;
        let writes = query.kind.map(|k| k == AuditKind::Write);
        let Some(rows::AuditBounds {
            after,
            from,
            until,
            limit,
        }) = rows::audit_bounds(query)
        else {
            return Ok(Vec::new());
        };
        let actor = query.actor.as_ref().map(|a| a.as_str().to_owned());
        let bodies = self
            .with_conn("reading the audit trail", None, async |conn| {
                let stmt = conn
                    .prepare_cached(AUDIT_QUERY)
                    .await
                    .ctx("cannot prepare a statement")?;
                let rows = conn
                    .query(&stmt, &[&after, &actor, &from, &until, &key, &writes, &limit])
                    .await
                    .ctx("cannot read the audit trail")?;
                let mut bodies = Vec::with_capacity(rows.len());
                for row in &rows {
                    bodies.push((col::<i64>(row, 0)?, col::<String>(row, 1)?));
                }
                Ok(bodies)
            })
            .await?;
        bodies
            .iter()
            .map(|(position, body)| decode_audit(BACKEND, *position, body))
            .collect()
    }

    pub(super) async fn revision(&self) -> Result<Revision, StoreError> {
        self.with_conn("reading the head revision", None, async |conn| {
            let head = conn
                .prepare_cached(HEAD)
                .await
                .ctx("cannot prepare a statement")?;
            let row = conn
                .query_one(&head, &[])
                .await
                .ctx("cannot read the head revision")?;
            Ok(head_of(&row)?.0)
        })
        .await
    }

    pub(super) async fn wait_for_change(
        &self,
        after: Revision,
        timeout: Duration,
    ) -> Result<Revision, StoreError> {
        let deadline = Instant::from_std(crate::deadline::after(timeout));
        loop {
            // Listen and register for the wake-up before looking, so a
            // commit between the look and the wait still wakes us.
            let listening = self.ensure_listening().await;
            let notified = self.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.revision().await?;
            let left = deadline.saturating_duration_since(Instant::now());
            if now > after || left.is_zero() {
                return Ok(now);
            }
            let slice = left.min(self.poll_interval());
            if !listening {
                tokio::time::sleep(slice).await;
                continue;
            }
            if tokio::time::timeout(slice, notified).await.is_ok() {
                // A commit announced its revision (committed before the
                // announcement was sent): no need to look at the head.
                let heard = Revision(self.heard.load(Ordering::Acquire));
                if heard > after {
                    return Ok(heard);
                }
            }
        }
    }

    /// Makes sure the listening connection is up (when `NOTIFY` is in use
    /// and the store knows how to connect); whether it is.
    async fn ensure_listening(&self) -> bool {
        if !self.notify.load(Ordering::Relaxed) {
            return false;
        }
        let Some(config) = &self.listen else {
            return false;
        };
        let mut slot = self.listener.lock().await;
        if let Some(listener) = slot.as_ref()
            && listener.alive.load(Ordering::Acquire)
        {
            return true;
        }
        *slot = None;
        let connected = tokio::time::timeout(self.connect_timeout, config.connect(self.tls.clone())).await;
        let Ok(Ok((client, mut connection))) = connected else {
            return false;
        };
        let alive = Arc::new(AtomicBool::new(true));
        let (wake, still, heard) = (
            Arc::clone(&self.wake),
            Arc::clone(&alive),
            Arc::clone(&self.heard),
        );
        let task = tokio::spawn(async move {
            while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
                if let AsyncMessage::Notification(note) = message {
                    // The payload is the committed revision; anything else
                    // (another client's NOTIFY) only wakes the waiters,
                    // who then look at the head.
                    if let Ok(revision) = note.payload().parse::<u64>() {
                        heard.fetch_max(revision, Ordering::AcqRel);
                    }
                    wake.notify_waiters();
                }
            }
            still.store(false, Ordering::Release);
            wake.notify_waiters();
        });
        match client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")).await {
            Ok(()) => {
                *slot = Some(Listener {
                    _client: client,
                    task,
                    alive,
                });
                true
            }
            Err(e) => {
                task.abort();
                if e.as_db_error().is_some() {
                    // The database does not do LISTEN: poll from now on.
                    self.disable_notify();
                }
                false
            }
        }
    }

    /// Two round trips: the head row locked and the sealed bodies read,
    /// pipelined; then their new bodies (in statements of at most
    /// [`RESEAL_CHUNK`] rows) and `COMMIT`, pipelined.
    pub(super) async fn reseal(&self) -> Result<Resealed, StoreError> {
        let ring = Arc::clone(&self.ring);
        self.with_conn("re-sealing", None, async |conn| {
            let (records, changes, reseal_records, reseal_changes) = tokio::join!(
                biased;
                conn.prepare_cached(RECORD_BODIES),
                conn.prepare_cached(CHANGE_BODIES),
                conn.prepare_cached(RESEAL_RECORDS),
                conn.prepare_cached(RESEAL_CHANGES),
            );
            let prepared = |s: Result<_, _>| s.ctx("cannot prepare a statement");
            let (records, changes, reseal_records, reseal_changes) = (
                prepared(records)?,
                prepared(changes)?,
                prepared(reseal_records)?,
                prepared(reseal_changes)?,
            );
            let client: &tokio_postgres::Client = conn;
            // Rolls back if anything below fails before the COMMIT is sent
            // (a value no key opens): nothing changes.
            let mut open = Open::new(client);
            let (locked, record_rows, change_rows) = tokio::join!(
                biased;
                client.batch_execute(BEGIN_LOCK_HEAD),
                client.query(&records, &[]),
                client.query(&changes, &[]),
            );
            // The first failure is the real one.
            locked.ctx("cannot begin the re-seal")?;
            let record_rows = record_rows.ctx("cannot read records")?;
            let change_rows = change_rows.ctx("cannot read the change feed")?;
            let mut record_keys = Vec::with_capacity(record_rows.len());
            let mut record_bodies = Vec::with_capacity(record_rows.len());
            for row in &record_rows {
                let key_text: String = col(row, 0)?;
                let body: String = col(row, 1)?;
                let key = decode_key(BACKEND, &key_text)?;
                let record = decode_record(BACKEND, &ring, &key, &body)?;
                record_bodies.push(encode_record(BACKEND, &ring, &record)?);
                record_keys.push(key_text);
            }
            let mut change_revisions = Vec::with_capacity(change_rows.len());
            let mut change_seqs = Vec::with_capacity(change_rows.len());
            let mut change_bodies = Vec::with_capacity(change_rows.len());
            for row in &change_rows {
                let revision: i64 = col(row, 0)?;
                let seq: i32 = col(row, 1)?;
                let key_text: String = col(row, 2)?;
                let body: String = col(row, 3)?;
                let key = decode_key(BACKEND, &key_text)?;
                let record = decode_record(BACKEND, &ring, &key, &body).map_err(|e| in_feed(e, revision))?;
                change_bodies.push(encode_record(BACKEND, &ring, &record)?);
                change_revisions.push(revision);
                change_seqs.push(seq);
            }
            let (reseal_records, reseal_changes) = (&reseal_records, &reseal_changes);
            let mut steps = Pipeline::new();
            for (keys, bodies) in record_keys
                .chunks(RESEAL_CHUNK)
                .zip(record_bodies.chunks(RESEAL_CHUNK))
            {
                steps.push("cannot rewrite a record", async move {
                    client.execute(reseal_records, &[&keys, &bodies]).await.map(drop)
                });
            }
            let changes_chunks = change_revisions
                .chunks(RESEAL_CHUNK)
                .zip(change_seqs.chunks(RESEAL_CHUNK))
                .zip(change_bodies.chunks(RESEAL_CHUNK));
            for ((revisions, seqs), bodies) in changes_chunks {
                steps.push("cannot rewrite a change", async move {
                    client
                        .execute(reseal_changes, &[&revisions, &seqs, &bodies])
                        .await
                        .map(drop)
                });
            }
            finish_pipeline(steps, &mut open, "cannot commit the re-seal", client).await?;
            Ok(Resealed {
                records: record_keys.len(),
                changes: change_revisions.len(),
            })
        })
        .await
    }

    /// One round trip: the head row locked, the feed's changes and tokens
    /// through the revision deleted, the floor raised and `COMMIT`,
    /// pipelined (each statement after the lock sees every commit before
    /// it, and decides from the head row itself whether there is anything
    /// to prune).
    pub(super) async fn prune_feed(&self, through: Revision) -> Result<usize, StoreError> {
        // Past every revision a row can hold: through the head.
        let through = i64::try_from(through.0).unwrap_or(i64::MAX);
        self.with_conn("pruning the change feed", None, async |conn| {
            let (changes, commits, floor) = tokio::join!(
                biased;
                conn.prepare_cached(PRUNE_CHANGES),
                conn.prepare_cached(PRUNE_COMMITS),
                conn.prepare_cached(RAISE_FLOOR),
            );
            let prepared = |s: Result<_, _>| s.ctx("cannot prepare a statement");
            let (changes, commits, floor) = (prepared(changes)?, prepared(commits)?, prepared(floor)?);
            let client: &tokio_postgres::Client = conn;
            let removed = AtomicU64::new(0);
            let mut open = Open::new(client);
            let mut steps = Pipeline::new();
            steps.push(
                "cannot lock the head revision",
                client.batch_execute(BEGIN_LOCK_HEAD),
            );
            steps.push("cannot prune the change feed", async {
                let n = client.execute(&changes, &[&through]).await?;
                removed.store(n, Ordering::Relaxed);
                Ok::<(), tokio_postgres::Error>(())
            });
            steps.push("cannot prune the change feed", async {
                client.execute(&commits, &[&through]).await.map(drop)
            });
            steps.push("cannot prune the change feed", async {
                client.execute(&floor, &[&through]).await.map(drop)
            });
            finish_pipeline(steps, &mut open, "cannot commit the pruning", client).await?;
            Ok(usize::try_from(removed.load(Ordering::Relaxed)).unwrap_or(usize::MAX))
        })
        .await
    }
}

/// Sends `steps` and, once each was handed to the connection, the `COMMIT`
/// of the transaction `open` guards (the first step began it); awaits every
/// answer. The first failure, under its step's context: if a step failed on
/// the server the transaction is aborted and the `COMMIT` rolled it back;
/// if one could not be sent, neither was the `COMMIT` (and `open` rolls
/// back when dropped).
async fn finish_pipeline<'a>(
    mut steps: Pipeline<'a>,
    open: &mut Open<'_>,
    commit_what: &'static str,
    client: &'a tokio_postgres::Client,
) -> Result<(), Failure> {
    if steps.send().await {
        steps.push(commit_what, client.batch_execute("COMMIT"));
        steps.send().await;
        open.ended();
    }
    for Outcome { what, result } in steps.finish().await {
        result.ctx(what)?;
    }
    Ok(())
}

/// A read-only repeatable-read transaction: the consistent view `load` and
/// `changes_since` read from.
async fn snapshot(conn: &mut Object) -> Result<deadpool_postgres::Transaction<'_>, Failure> {
    conn.build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .ctx("cannot begin a snapshot")
}

async fn try_migrate(conn: &mut Object, shown: &str) -> Result<(), Failure> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS connective_schema (id INT PRIMARY KEY, version INT NOT NULL);
         INSERT INTO connective_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
    )
    .await
    .ctx("cannot create the schema table")?;
    let tx = conn.transaction().await.ctx("cannot begin the migration")?;
    let row = tx
        .query_one(
            "SELECT version FROM connective_schema WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .ctx("cannot read the schema version")?;
    let version: i32 = col(&row, 0)?;
    let version = u32::try_from(version).map_err(|_| StoreError::Unreadable {
        backend: BACKEND,
        what: format!("the schema of {shown}"),
        message: format!("invalid schema version {version}"),
    })?;
    if version > POSTGRES_SCHEMA_VERSION {
        return Err(StoreError::Unreadable {
            backend: BACKEND,
            what: format!("the schema of {shown}"),
            message: format!(
                "its schema version {version} is newer than this code's {POSTGRES_SCHEMA_VERSION}; \
                 upgrade connective on this replica"
            ),
        }
        .into());
    }
    if version == POSTGRES_SCHEMA_VERSION {
        return Ok(());
    }
    for sql in &MIGRATIONS[version as usize..] {
        tx.batch_execute(sql).await.ctx("cannot migrate the schema")?;
    }
    let new = i32::try_from(POSTGRES_SCHEMA_VERSION).unwrap_or(i32::MAX);
    tx.execute("UPDATE connective_schema SET version = $1 WHERE id = 1", &[&new])
        .await
        .ctx("cannot record the schema version")?;
    tx.commit().await.ctx("cannot commit the migration")
}

/// How a commit announces itself.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Announce {
    /// `NOTIFY` with the new revision, queued inside the transaction.
    Notify,
    /// Nothing (the database lacks `NOTIFY`, or the store does not use it).
    Quiet,
}

/// One attempt at a commit, inside one transaction, in two round trips:
///
/// 1. `BEGIN` and taking the next revision (which locks the head row until
///    the transaction ends: committers are serialized, so revision order is
///    commit order), and the versions of the batch's keys, read by a
///    statement the server runs after it got the lock, so the expectations
///    are checked against everything committed before.
/// 2. Once the expectations hold: the audit entry, the token, the records
///    and the feed's changes, and `COMMIT`. `COMMIT` is sent only after
///    every statement before it was handed to the connection; if one of
///    them fails on the server, the transaction is aborted and the `COMMIT`
///    rolls it back.
///
/// Sets `committing` just before the `COMMIT` is sent: from then on a lost
/// answer is an unknown outcome (unless a statement before it answered a
/// failure: then nothing was written). A database error while taking the
/// revision with [`Announce::Notify`] that refuses `pg_notify` comes back as
/// [`Failure::Announce`]. On a conflict or any failure before the `COMMIT`,
/// the transaction is rolled back: no revision is consumed.
async fn commit_once(
    conn: &mut Object,
    batch: &Batch,
    encoded: &[(String, Option<String>)],
    keys: &[&str],
    committing: &AtomicBool,
    announce: Announce,
) -> Result<Committed, Failure> {
    // Prepared once per connection (pipelined), then taken from its cache.
    let (bump, read_versions, upsert, append, token, audit) = tokio::join!(
        biased;
        conn.prepare_cached(match announce {
            Announce::Notify => BUMP_NOTIFY,
            Announce::Quiet => BUMP,
        }),
        conn.prepare_cached(READ_VERSIONS),
        conn.prepare_cached(UPSERT),
        conn.prepare_cached(APPEND),
        conn.prepare_cached(TOKEN),
        conn.prepare_cached(AUDIT_WRITE),
    );
    let refused = |e: tokio_postgres::Error, what| match announce {
        Announce::Notify if refuses_notify(&e) => Failure::Announce(e),
        _ => Failure::Db(what, e),
    };
    let bump = bump.map_err(|e| refused(e, "cannot prepare a statement"))?;
    let prepared = |s: Result<_, _>| s.ctx("cannot prepare a statement");
    let (read_versions, upsert, append, token, audit) = (
        prepared(read_versions)?,
        prepared(upsert)?,
        prepared(append)?,
        prepared(token)?,
        prepared(audit)?,
    );
    let client: &tokio_postgres::Client = conn;
    let mut open = Open::new(client);
    // `BEGIN` is handed to the connection before the bump is (polled once
    // on its own), so the bump never runs outside the transaction; all
    // three travel together.
    let mut begin = pin!(client.batch_execute("BEGIN"));
    let first = poll_fn(|cx| Poll::Ready(begin.as_mut().poll(cx))).await;
    if let Poll::Ready(Err(e)) = first {
        return Err(Failure::Db("cannot begin a transaction", e));
    }
    let keys_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&keys];
    let (begun, bumped, rows) = tokio::join!(
        biased;
        async move {
            match first {
                Poll::Ready(result) => result,
                Poll::Pending => begin.await,
            }
        },
        client.query_opt(&bump, &[&LAST_REVISION]),
        client.query(&read_versions, &keys_param),
    );
    // The first failure is the real one: after it, the others fail only
    // because the transaction is aborted.
    begun.ctx("cannot begin a transaction")?;
    let bumped = bumped.map_err(|e| refused(e, "cannot take the next revision"))?;
    // No row bumped: the head is at the last revision (dropping `open`
    // rolls the transaction back).
    let Some(bumped) = bumped else {
        return Err(Failure::Store(StoreError::LastRevision {
            backend: BACKEND,
            revision: Revision::MAX,
        }));
    };
    let rev: i64 = col(&bumped, 0)?;
    let revision = Revision(to_u64(BACKEND, rev, "the head revision")?);
    let rows = rows.ctx("cannot read records")?;
    let mut current = HashMap::with_capacity(rows.len());
    for row in &rows {
        let key: String = col(row, 0)?;
        let version: i64 = col(row, 1)?;
        let deleted: bool = col(row, 2)?;
        current.insert(key, (version, deleted));
    }
    let mut versions = Vec::with_capacity(batch.writes.len());
    let mut before = Vec::with_capacity(batch.writes.len());
    for (w, (key_text, _)) in batch.writes.iter().zip(encoded) {
        // The key's last version, live or deleted.
        let previous = match current.get(key_text) {
            Some(&(v, deleted)) => Some((rows::stored_version(BACKEND, &w.key, v)?, deleted)),
            None => None,
        };
        let found = previous.and_then(|(v, deleted)| (!deleted).then_some(v));
        // On a conflict, dropping `open` rolls the transaction back: no
        // revision is consumed.
        w.expect.check(&w.key, found)?;
        before.push(found);
        versions.push(next_version(&w.key, previous.map(|(v, _)| v))?);
    }
    let audited = match batch.audit_action(revision, &before, &versions) {
        Some((note, action)) => Some((
            encode_audit(BACKEND, note.at, &note.actor, &action)?,
            to_i64(note.at.0, "the audit instant")?,
            note.actor.as_str(),
        )),
        None => None,
    };
    let token_text = batch.token.map(|t| t.to_string());
    let projects: Vec<&str> = batch.writes.iter().map(|w| w.key.project().as_str()).collect();
    let bodies: Vec<Option<&str>> = encoded.iter().map(|(_, body)| body.as_deref()).collect();
    let numbers = versions
        .iter()
        .map(|v| to_i64(v.0, "version"))
        .collect::<Result<Vec<i64>, _>>()?;
    let seqs = (0..batch.writes.len())
        .map(i32::try_from)
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|_| StoreError::InvalidBatch {
            reason: "too many writes".into(),
        })?;

    let mut writes = Pipeline::new();
    if let Some((body, at, actor)) = &audited {
        writes.push("cannot write the audit entry", async {
            client
                .execute(&audit, &[&rev, at, actor, body, &keys])
                .await
                .map(drop)
        });
    }
    if let Some(token_text) = &token_text {
        writes.push("cannot record the batch's token", async {
            client.execute(&token, &[&rev, token_text]).await.map(drop)
        });
    }
    writes.push("cannot write a record", async {
        client
            .execute(&upsert, &[&rev, &keys, &projects, &numbers, &bodies])
            .await
            .map(drop)
    });
    writes.push("cannot write the change feed", async {
        client
            .execute(&append, &[&rev, &seqs, &keys, &numbers, &bodies])
            .await
            .map(drop)
    });
    // The COMMIT's place in the pipeline, if it was sent.
    let mut commit_at = None;
    if writes.send().await {
        committing.store(true, Ordering::Release);
        commit_at = Some(writes.len());
        writes.push("cannot commit", client.batch_execute("COMMIT"));
        writes.send().await;
        open.ended();
    }
    for (i, Outcome { what, result }) in writes.finish().await.into_iter().enumerate() {
        let Err(e) = result else { continue };
        return Err(if Some(i) != commit_at {
            // A statement before the COMMIT failed: if the server ran it,
            // the transaction is aborted and the COMMIT rolled it back; if
            // it was never sent, neither was the COMMIT (and `open` rolls
            // back). Only an answer lost after the COMMIT was sent leaves
            // the outcome unknown.
            if e.as_db_error().is_none() && commit_at.is_some() {
                Failure::LostCommit(e)
            } else {
                Failure::Db(what, e)
            }
        } else if retryable(&e) {
            Failure::Db("cannot commit", e)
        } else if e.as_db_error().is_some() {
            Failure::Db("the server refused the commit", e)
        } else {
            Failure::LostCommit(e)
        });
    }
    Ok(Committed { revision, versions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_announces_on_the_notify_channel() {
        // The channel is written into the statement.
        assert!(BUMP_NOTIFY.contains(&format!("pg_notify('{NOTIFY_CHANNEL}', revision::TEXT)")));
    }

    /// A poll interval past what a `u64` of microseconds holds is the
    /// longest one, never a short one it wraps to.
    #[test]
    fn a_poll_interval_too_long_to_count_is_the_longest() {
        assert_eq!(micros(Duration::from_millis(200)), 200_000);
        assert_eq!(micros(Duration::from_secs(1 << 60)), u64::MAX);
        assert_eq!(micros(Duration::from_secs(u64::MAX / 1_000_000 + 1)), u64::MAX);
        assert_eq!(micros(Duration::MAX), u64::MAX);
    }
}
