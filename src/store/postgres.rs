//! A shared store on PostgreSQL, for many host replicas on one database.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, IsolationLevel, NoTls, Statement};

use super::rows::{
    self, decode_changes, decode_key, decode_live, decode_record, encode_batch, encode_key, encode_record,
    in_feed, to_u64,
};
use super::seal::{self, KeyRing, Resealed};
use super::{Batch, Change, CommitToken, Committed, Snapshot, Store, StoreError};
use crate::model::{Record, RecordKey, Revision, Version};

const BACKEND: &str = "postgres";

/// The `NOTIFY` channel commits are announced on (payload: the revision).
pub const NOTIFY_CHANNEL: &str = "connective_feed";

/// The schema, one migration per version: `MIGRATIONS[n]` takes version `n`
/// to `n + 1`. Never edit a released entry; append a new one. Plain SQL that
/// Postgres-wire distributed databases accept as well.
const MIGRATIONS: &[&str] = &[
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
];

/// The schema version this code writes.
pub const POSTGRES_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How often a transaction that lost a serialization race is retried.
const RETRIES: usize = 8;

/// A shared store on PostgreSQL (feature `postgres`): many host replicas on one
/// database, each following the change feed.
///
/// - **Commit order is feed order.** A batch takes its revision with
///   `UPDATE connective_head SET revision = revision + 1 ... RETURNING` inside
///   its transaction; the row lock serializes committers until they commit, so
///   a follower reading `changes_since(last)` never skips a revision that
///   commits late, and a failed batch consumes no revision. Expectations are
///   checked after taking that lock, inside the transaction.
/// - **Portable core.** Every statement on the commit, load and feed path is
///   plain SQL that Postgres-wire distributed databases accept; transactions
///   that lose a serialization race (`40001`) are retried. After a commit the
///   store sends `pg_notify`, and [`Store::wait_for_change`] `LISTEN`s to wake
///   early; without `NOTIFY` it polls (see [`PostgresStore::with_poll_interval`]).
/// - **Versioned schema** in tables named `connective_*`, created and migrated
///   by the library (concurrent replicas may start at once); a database whose
///   schema is newer than this code is refused with [`StoreError::Unreadable`].
///   Put them in a schema of your own with `options=-csearch_path=myschema`.
/// - **Sealed secrets**, as in `SqliteStore`: JSON rows with every secret
///   sealed under the [`KeyRing`]'s newest key; each key ID bound to its key
///   at first use (other bytes under a known ID are refused at
///   [`PostgresStore::connect`] with [`StoreError::KeyMismatch`]); a record
///   no key of the ring opens is reported, and the rest loads.
/// - **Faults.** When the server goes away, calls answer
///   [`StoreError::Unavailable`]; a later call reconnects. A connection lost
///   while committing leaves the outcome unknown: the commit answers
///   [`StoreError::OutcomeUnknown`], and [`Store::find_commit`] (which waits
///   for the lost transaction to end) tells whether the batch landed.
///
/// # Blocking and async hosts
/// The store is synchronous: each call blocks its thread on the network. From
/// async code call it through `tokio::task::spawn_blocking` (or your runtime's
/// equivalent). The `postgres` client runs a private tokio runtime, which would
/// panic when used from a thread already inside one; the store notices a
/// surrounding runtime and then runs the call on a short-lived helper thread,
/// so it never panics, but it still blocks the calling thread.
///
/// # Connecting
/// [`PostgresStore::connect`] takes a libpq-style connection string
/// (`host=db.internal user=app dbname=connections` or
/// `postgresql://app@db.internal/connections`); what it leaves out is taken
/// from the standard variables `PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
/// `PGDATABASE`, `PGAPPNAME` and `PGCONNECT_TIMEOUT`, as libpq does. Connections
/// are unencrypted (no TLS): reach the server over a trusted network, a Unix
/// socket (`host=/var/run/postgresql`) or a local TLS-terminating proxy.
///
/// ```no_run
/// use connective::store::seal::{KeyRing, SealKey};
/// use connective::store::{PostgresStore, Store};
/// let key = SealKey::from_base64("2025-01", &std::env::var("CONNECTIVE_KEY")?)?;
/// // Everything from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE:
/// let store = PostgresStore::connect("", KeyRing::new(key))?;
/// println!("at revision {}", store.revision()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PostgresStore {
    config: Config,
    shown: String,
    ring: Arc<KeyRing>,
    main: Mutex<Option<Conn>>,
    listener: Mutex<Option<Client>>,
    notify: AtomicBool,
    poll_interval: Duration,
}

/// A connection and its prepared statements.
struct Conn {
    client: Client,
    bump: Statement,
    read_versions: Statement,
    upsert: Statement,
    append: Statement,
    token: Statement,
    head: Statement,
    live: Statement,
    one: Statement,
    feed: Statement,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.shown)
            .field("keys", &self.ring)
            .finish()
    }
}

/// Runs `f` where the `postgres` client may block: on this thread, or on a
/// helper thread when this one is inside a tokio runtime.
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn unavailable(context: &str, e: &postgres::Error) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        message: format!("{context}: {e}"),
    }
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::InvalidBatch {
        reason: format!("{what} {n} is out of range"),
    })
}

/// A column of a row, as a typed error instead of a panic.
fn col<'a, T: postgres::types::FromSql<'a>>(row: &'a postgres::Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| StoreError::Unreadable {
        backend: BACKEND,
        what: format!("column {i} of a row"),
        message: e.to_string(),
    })
}

/// Why a call failed: the store's own answer, or the database's.
enum Failure {
    Store(StoreError),
    Db(&'static str, postgres::Error),
    /// The connection was lost while committing: the outcome is unknown.
    LostCommit(postgres::Error),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

trait Context<T> {
    fn ctx(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> Context<T> for Result<T, postgres::Error> {
    fn ctx(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|e| Failure::Db(what, e))
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl PostgresStore {
    /// Connects with a libpq-style connection string (key/value or URL; may be
    /// empty), filling what it leaves out from `PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD`, `PGDATABASE`, `PGAPPNAME` and `PGCONNECT_TIMEOUT`, then
    /// creates or migrates the schema. Defaults: host `localhost`, user
    /// `$USER` (else `postgres`), database named like the user, connect
    /// timeout 5 s.
    pub fn connect(params: &str, keys: KeyRing) -> Result<Self, StoreError> {
        let config = Self::config(params)?;
        let shown = describe(&config);
        let store = PostgresStore {
            config,
            shown,
            ring: Arc::new(keys),
            main: Mutex::new(None),
            listener: Mutex::new(None),
            notify: AtomicBool::new(true),
            poll_interval: Duration::from_millis(200),
        };
        store.bind_keys()?;
        Ok(store)
    }

    /// Binds the ring's keys to their IDs (see "Key binding" in
    /// [`seal`](super::seal)), in one transaction (concurrent replicas binding
    /// one ID wait for each other; the second reads the first's check).
    fn bind_keys(&self) -> Result<(), StoreError> {
        let ring = self.ring.clone();
        self.with_conn(|conn| {
            let tx = std::cell::RefCell::new(conn.client.transaction().ctx("cannot begin a transaction")?);
            seal::bind_keys(
                BACKEND,
                &ring,
                |id| {
                    let row = tx
                        .borrow_mut()
                        .query_opt(
                            "SELECT key_check FROM connective_seal_keys WHERE key_id = $1",
                            &[&id],
                        )
                        .ctx("cannot read the key checks")?;
                    Ok(row.map(|r| col::<String>(&r, 0)).transpose()?)
                },
                |needle| {
                    let rows = tx
                        .borrow_mut()
                        .query(
                            "(SELECT body FROM connective_records WHERE strpos(body, $1) > 0 LIMIT 3)
                             UNION ALL
                             (SELECT body FROM connective_changes WHERE strpos(body, $1) > 0 LIMIT 3)
                             LIMIT 3",
                            &[&needle],
                        )
                        .ctx("cannot look for sealed values")?;
                    Ok(rows
                        .iter()
                        .map(|r| col::<String>(r, 0))
                        .collect::<Result<_, _>>()?)
                },
                |id, check| {
                    tx.borrow_mut()
                        .execute(
                            "INSERT INTO connective_seal_keys (key_id, key_check) VALUES ($1, $2)
                             ON CONFLICT (key_id) DO NOTHING",
                            &[&id, &check],
                        )
                        .map(drop)
                        .ctx("cannot record a key check")
                },
            )?;
            tx.into_inner().commit().ctx("cannot commit the key checks")
        })
    }

    /// Connects using only the standard `PG*` variables (see
    /// [`PostgresStore::connect`]).
    pub fn from_env(keys: KeyRing) -> Result<Self, StoreError> {
        Self::connect("", keys)
    }

    /// The longest [`Store::wait_for_change`] sleeps between two looks at the
    /// head revision (default 200 ms). With `LISTEN/NOTIFY` it wakes as soon as
    /// a commit is announced; without (some Postgres-wire databases), this is
    /// the latency of a follower.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Never uses `LISTEN/NOTIFY`: commits send no notification and
    /// [`Store::wait_for_change`] only polls. For Postgres-wire databases
    /// without `NOTIFY` (the store also notices that by itself).
    pub fn without_notify(self) -> Self {
        self.notify.store(false, Ordering::Relaxed);
        self
    }

    /// The key ring secrets are sealed with.
    pub fn key_ring(&self) -> &KeyRing {
        &self.ring
    }

    /// The server and database, for messages (never the password).
    pub fn server(&self) -> &str {
        &self.shown
    }

    fn config(params: &str) -> Result<Config, StoreError> {
        let mut config: Config = if params.trim().is_empty() {
            Config::new()
        } else {
            params
                .parse()
                .map_err(|e: postgres::Error| StoreError::Unavailable {
                    backend: BACKEND,
                    message: format!("invalid connection string: {e}"),
                })?
        };
        if config.get_hosts().is_empty() {
            let hosts = env_var("PGHOST").unwrap_or_else(|| "localhost".into());
            for host in hosts.split(',').filter(|h| !h.is_empty()) {
                config.host(host);
            }
        }
        if config.get_ports().is_empty()
            && let Some(ports) = env_var("PGPORT")
        {
            for port in ports.split(',') {
                let port = port.trim().parse::<u16>().map_err(|_| StoreError::Unavailable {
                    backend: BACKEND,
                    message: format!("PGPORT {port:?} is not a port number"),
                })?;
                config.port(port);
            }
        }
        if config.get_user().is_none() {
            let user = env_var("PGUSER")
                .or_else(|| env_var("USER"))
                .unwrap_or_else(|| "postgres".into());
            config.user(&user);
        }
        if config.get_password().is_none()
            && let Some(password) = env_var("PGPASSWORD")
        {
            config.password(password);
        }
        if config.get_dbname().is_none()
            && let Some(db) = env_var("PGDATABASE")
        {
            config.dbname(&db);
        }
        if config.get_application_name().is_none() {
            config.application_name(&env_var("PGAPPNAME").unwrap_or_else(|| "connective".into()));
        }
        if config.get_connect_timeout().is_none() {
            let secs = env_var("PGCONNECT_TIMEOUT")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(5);
            config.connect_timeout(Duration::from_secs(secs.max(1)));
        }
        config.keepalives(true).keepalives_idle(Duration::from_secs(30));
        Ok(config)
    }

    fn lock_main(&self) -> MutexGuard<'_, Option<Conn>> {
        // A panic while holding the lock drops the transaction (rolled back);
        // the connection is dropped too below if it failed.
        self.main.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open_conn(&self) -> Result<Conn, StoreError> {
        let mut client = self
            .config
            .connect(NoTls)
            .map_err(|e| unavailable(&format!("cannot connect to {}", self.shown), &e))?;
        migrate(&mut client, &self.shown)?;
        let prepare = |client: &mut Client, sql: &str| {
            client
                .prepare(sql)
                .map_err(|e| unavailable("cannot prepare a statement", &e))
        };
        Ok(Conn {
            bump: prepare(
                &mut client,
                "UPDATE connective_head SET revision = revision + 1 WHERE id = 1 RETURNING revision",
            )?,
            read_versions: prepare(
                &mut client,
                "SELECT key, version, body IS NULL FROM connective_records WHERE key = ANY($1)",
            )?,
            upsert: prepare(
                &mut client,
                "INSERT INTO connective_records (key, project, version, revision, body)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (key) DO UPDATE SET version = EXCLUDED.version,
                     revision = EXCLUDED.revision, body = EXCLUDED.body",
            )?,
            append: prepare(
                &mut client,
                "INSERT INTO connective_changes (revision, seq, key, version, body) VALUES ($1, $2, $3, $4, $5)",
            )?,
            token: prepare(
                &mut client,
                "INSERT INTO connective_commits (revision, token) VALUES ($1, $2)",
            )?,
            head: prepare(
                &mut client,
                "SELECT revision, feed_floor FROM connective_head WHERE id = 1",
            )?,
            live: prepare(
                &mut client,
                "SELECT key, version, body FROM connective_records WHERE body IS NOT NULL",
            )?,
            one: prepare(
                &mut client,
                "SELECT version, body FROM connective_records WHERE key = $1 AND body IS NOT NULL",
            )?,
            feed: prepare(
                &mut client,
                "SELECT revision, key, version, body FROM connective_changes
                 WHERE revision > $1 AND revision <= $2 ORDER BY revision, seq",
            )?,
            client,
        })
    }

    /// Runs `f` on the main connection, connecting first if needed. On a
    /// database error the connection is dropped (a later call reconnects) and
    /// the error becomes [`StoreError::Unavailable`].
    fn with_conn<R: Send>(
        &self,
        f: impl FnMut(&mut Conn) -> Result<R, Failure> + Send,
    ) -> Result<R, StoreError> {
        let mut f = f;
        off_runtime(move || {
            let mut guard = self.lock_main();
            if guard.is_none() {
                *guard = Some(self.open_conn()?);
            }
            let Some(conn) = guard.as_mut() else {
                return Err(StoreError::Unavailable {
                    backend: BACKEND,
                    message: "no connection".into(),
                });
            };
            match f(conn) {
                Ok(r) => Ok(r),
                Err(Failure::Store(e)) => Err(e),
                Err(Failure::Db(what, e)) => {
                    *guard = None;
                    Err(unavailable(&format!("{what} on {}", self.shown), &e))
                }
                Err(Failure::LostCommit(e)) => {
                    *guard = None;
                    Err(StoreError::OutcomeUnknown {
                        backend: BACKEND,
                        message: format!("the connection to {} was lost while committing: {e}", self.shown),
                    })
                }
            }
        })
    }

    /// Rewrites every sealed value under the key ring's newest key: the live
    /// records and the bodies kept in the change feed, in one transaction that
    /// holds the head row (concurrent commits wait). Versions and revisions do
    /// not change: this is not a write of the records. Old row versions remain
    /// in the table files until PostgreSQL vacuums them (run `VACUUM` if the
    /// retired key may be compromised). Once it returns, keys other than the
    /// newest can be removed from every replica's ring.
    ///
    /// A value that no key of the ring opens fails the whole re-seal with
    /// [`StoreError::Unreadable`] naming the record and key; nothing changes.
    pub fn reseal(&self) -> Result<Resealed, StoreError> {
        let ring = self.ring.clone();
        self.with_conn(|conn| {
            let mut tx = conn.client.transaction().ctx("cannot begin the re-seal")?;
            tx.execute(
                "SELECT revision FROM connective_head WHERE id = 1 FOR UPDATE",
                &[],
            )
            .ctx("cannot lock the head revision")?;
            let mut done = Resealed::default();
            let rows = tx
                .query(
                    "SELECT key, body FROM connective_records WHERE body IS NOT NULL",
                    &[],
                )
                .ctx("cannot read records")?;
            for row in &rows {
                let key_text: String = col(row, 0)?;
                let body: String = col(row, 1)?;
                let key = decode_key(BACKEND, &key_text)?;
                let record = decode_record(BACKEND, &ring, &key, &body)?;
                let body = encode_record(BACKEND, &ring, &record)?;
                tx.execute(
                    "UPDATE connective_records SET body = $1 WHERE key = $2",
                    &[&body, &key_text],
                )
                .ctx("cannot rewrite a record")?;
                done.records += 1;
            }
            let rows = tx
                .query(
                    "SELECT revision, seq, key, body FROM connective_changes WHERE body IS NOT NULL",
                    &[],
                )
                .ctx("cannot read the change feed")?;
            for row in &rows {
                let revision: i64 = col(row, 0)?;
                let seq: i32 = col(row, 1)?;
                let key_text: String = col(row, 2)?;
                let body: String = col(row, 3)?;
                let key = decode_key(BACKEND, &key_text)?;
                let record = decode_record(BACKEND, &ring, &key, &body).map_err(|e| in_feed(e, revision))?;
                let body = encode_record(BACKEND, &ring, &record)?;
                tx.execute(
                    "UPDATE connective_changes SET body = $1 WHERE revision = $2 AND seq = $3",
                    &[&body, &revision, &seq],
                )
                .ctx("cannot rewrite a change")?;
                done.changes += 1;
            }
            tx.commit().ctx("cannot commit the re-seal")?;
            Ok(done)
        })
    }

    /// Drops change-feed entries of revisions up to `through` (at most the
    /// latest). A follower asking for changes after an older revision is told
    /// [`StoreError::FeedTruncated`] and reloads. Returns how many entries were
    /// removed.
    pub fn prune_feed(&self, through: Revision) -> Result<usize, StoreError> {
        self.with_conn(|conn| {
            let mut tx = conn.client.transaction().ctx("cannot begin a transaction")?;
            let row = tx
                .query_one(
                    "SELECT revision, feed_floor FROM connective_head WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .ctx("cannot lock the head revision")?;
            let (revision, floor): (i64, i64) = (col(&row, 0)?, col(&row, 1)?);
            let through = to_i64(through.0, "revision")?.min(revision);
            if through <= floor {
                return Ok(0);
            }
            let removed = tx
                .execute("DELETE FROM connective_changes WHERE revision <= $1", &[&through])
                .ctx("cannot prune the change feed")?;
            tx.execute("DELETE FROM connective_commits WHERE revision <= $1", &[&through])
                .ctx("cannot prune the change feed")?;
            tx.execute(
                "UPDATE connective_head SET feed_floor = $1 WHERE id = 1",
                &[&through],
            )
            .ctx("cannot prune the change feed")?;
            tx.commit().ctx("cannot commit the pruning")?;
            Ok(usize::try_from(removed).unwrap_or(usize::MAX))
        })
    }

    /// Waits up to `slice` for a notification on the listening connection.
    /// Returns `false` when notifications are not available (then the caller
    /// sleeps instead).
    fn wait_notified(&self, slice: Duration) -> bool {
        if !self.notify.load(Ordering::Relaxed) {
            return false;
        }
        // One waiter listens; concurrent waiters poll.
        let Ok(mut guard) = self.listener.try_lock() else {
            return false;
        };
        let slot = guard.take();
        let (woke, slot) = off_runtime(move || {
            let mut client = match slot {
                Some(client) => client,
                None => match self.config.connect(NoTls) {
                    Ok(mut client) => match client.batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}")) {
                        Ok(()) => client,
                        Err(e) => {
                            if e.as_db_error().is_some() {
                                // The database does not do LISTEN: poll from now on.
                                self.notify.store(false, Ordering::Relaxed);
                            }
                            return (false, None);
                        }
                    },
                    Err(_) => return (false, None),
                },
            };
            let woke = {
                let mut notifications = client.notifications();
                let woke = notifications.timeout_iter(slice).next().map(|n| n.is_some());
                // Drain what else is pending: one look at the head covers them all.
                while let Ok(Some(_)) = notifications.iter().next() {}
                woke
            };
            match woke {
                Ok(_) if !client.is_closed() => (true, Some(client)),
                _ => (false, None),
            }
        });
        *guard = slot;
        woke
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing a client blocks on its runtime: do it where that is allowed.
        let main = self.main.get_mut().unwrap_or_else(PoisonError::into_inner).take();
        let listener = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if main.is_some() || listener.is_some() {
            off_runtime(move || drop((main, listener)));
        }
    }
}

fn describe(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

fn migrate(client: &mut Client, shown: &str) -> Result<(), StoreError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match try_migrate(client, shown) {
            Ok(()) => return Ok(()),
            Err(Failure::Store(e)) => return Err(e),
            // Replicas starting together race to create the tables; the loser
            // of a race sees a duplicate and retries.
            Err(Failure::Db(_, e))
                if attempt < RETRIES
                    && (retryable(&e)
                        || e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                        || e.code() == Some(&SqlState::DUPLICATE_TABLE)
                        || e.code() == Some(&SqlState::DUPLICATE_OBJECT)) =>
            {
                std::thread::sleep(Duration::from_millis(10 * attempt as u64));
            }
            Err(Failure::Db(what, e)) => return Err(unavailable(&format!("{what} on {shown}"), &e)),
            // A migration whose answer was lost is checked again on the next
            // connection (it reads the schema version first).
            Err(Failure::LostCommit(e)) => {
                return Err(unavailable(&format!("migrating {shown}"), &e));
            }
        }
    }
}

fn try_migrate(client: &mut Client, shown: &str) -> Result<(), Failure> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS connective_schema (id INT PRIMARY KEY, version INT NOT NULL);
             INSERT INTO connective_schema (id, version) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;",
        )
        .ctx("cannot create the schema table")?;
    let mut tx = client.transaction().ctx("cannot begin the migration")?;
    let row = tx
        .query_one(
            "SELECT version FROM connective_schema WHERE id = 1 FOR UPDATE",
            &[],
        )
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
        tx.batch_execute(sql).ctx("cannot migrate the schema")?;
    }
    let new = i32::try_from(POSTGRES_SCHEMA_VERSION).unwrap_or(i32::MAX);
    tx.execute("UPDATE connective_schema SET version = $1 WHERE id = 1", &[&new])
        .ctx("cannot record the schema version")?;
    tx.commit().ctx("cannot commit the migration")
}

fn head_of(row: &postgres::Row) -> Result<(Revision, Revision), StoreError> {
    let (revision, floor): (i64, i64) = (col(row, 0)?, col(row, 1)?);
    rows::head(BACKEND, revision, floor)
}

/// A read-only repeatable-read transaction and the head revision and feed
/// floor it sees: the consistent view `load` and `changes_since` read from.
fn snapshot<'c>(
    client: &'c mut Client,
    head: &Statement,
) -> Result<(postgres::Transaction<'c>, (Revision, Revision)), Failure> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .ctx("cannot begin a snapshot")?;
    let row = tx.query_one(head, &[]).ctx("cannot read the head revision")?;
    let head = head_of(&row)?;
    Ok((tx, head))
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        let (revision, rows) = self.with_conn(|conn| {
            let (mut tx, (revision, _)) = snapshot(&mut conn.client, &conn.head)?;
            let rows = tx.query(&conn.live, &[]).ctx("cannot read records")?;
            tx.commit().ctx("cannot end the snapshot")?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((
                    col::<String>(row, 0)?,
                    col::<i64>(row, 1)?,
                    col::<String>(row, 2)?,
                ));
            }
            Ok((revision, out))
        })?;
        let (records, unreadable) = decode_live(BACKEND, &self.ring, rows)?;
        Ok(Snapshot {
            revision,
            records,
            unreadable,
        })
    }

    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        batch.validate()?;
        // Seal and encode before taking the lock.
        let encoded = encode_batch(BACKEND, &self.ring, batch)?;
        let keys: Vec<&str> = encoded.iter().map(|(k, _)| k.as_str()).collect();
        let mut attempt = 0;
        let committed = loop {
            attempt += 1;
            let outcome = self.with_conn(|conn| match commit_once(conn, batch, &encoded, &keys) {
                Err(Failure::Db(_, e)) if retryable(&e) && attempt < RETRIES => Ok(None),
                other => other.map(Some),
            });
            match outcome? {
                Some(c) => break c,
                None => std::thread::sleep(Duration::from_millis(2 * attempt as u64)),
            }
        };
        // Wake followers early; best effort (some Postgres-wire databases lack
        // NOTIFY, and polling is correct without it).
        if self.notify.load(Ordering::Relaxed) {
            let payload = committed.revision.0.to_string();
            let _ = self.with_conn(|conn| {
                match conn
                    .client
                    .execute("SELECT pg_notify($1, $2)", &[&NOTIFY_CHANNEL, &payload])
                {
                    Ok(_) => Ok(()),
                    Err(e) if e.as_db_error().is_some() => {
                        self.notify.store(false, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(e) => Err(Failure::Db("cannot notify", e)),
                }
            });
        }
        Ok(committed)
    }

    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        let after_i = to_i64(after.0, "revision")?;
        let token = token.to_string();
        let found = self.with_conn(|conn| {
            let mut tx = conn.client.transaction().ctx("cannot begin a transaction")?;
            // A transaction that lost its client while committing holds the
            // head row until the server has committed or aborted it: waiting
            // for the row makes the answer final. Bounded, for a server that
            // has not noticed yet that its client is gone.
            tx.batch_execute("SET LOCAL lock_timeout = '10s'")
                .ctx("cannot set a lock timeout")?;
            let row = tx
                .query_one(
                    "SELECT revision, feed_floor FROM connective_head WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .ctx("cannot wait for committers to finish")?;
            if !rows::batches_after(after, head_of(&row)?)? {
                return Ok(None);
            }
            let Some(row) = tx
                .query_opt(
                    "SELECT revision FROM connective_commits WHERE revision > $1 AND token = $2",
                    &[&after_i, &token],
                )
                .ctx("cannot look up a commit")?
            else {
                return Ok(None);
            };
            let rev: i64 = col(&row, 0)?;
            let versions = tx
                .query(
                    "SELECT version FROM connective_changes WHERE revision = $1 ORDER BY seq",
                    &[&rev],
                )
                .ctx("cannot look up a commit")?
                .iter()
                .map(|row| col::<i64>(row, 0))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().ctx("cannot end the look-up")?;
            Ok(Some((rev, versions)))
        })?;
        found
            .map(|(rev, versions)| rows::committed(BACKEND, rev, versions))
            .transpose()
    }

    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after_i = to_i64(after.0, "revision")?;
        let rows = self.with_conn(|conn| {
            let (mut tx, (revision, floor)) = snapshot(&mut conn.client, &conn.head)?;
            if !rows::batches_after(after, (revision, floor))? {
                return Ok(Vec::new());
            }
            // Revisions are consecutive, so `limit` batches end at after + limit.
            let last = to_i64(after.0.saturating_add(limit as u64).min(revision.0), "revision")?;
            let rows = tx
                .query(&conn.feed, &[&after_i, &last])
                .ctx("cannot read the change feed")?;
            tx.commit().ctx("cannot end the snapshot")?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push((
                    col::<i64>(row, 0)?,
                    col::<String>(row, 1)?,
                    col::<i64>(row, 2)?,
                    col::<Option<String>>(row, 3)?,
                ));
            }
            Ok(out)
        })?;
        decode_changes(BACKEND, &self.ring, rows)
    }

    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        let key_text = encode_key(BACKEND, key)?;
        let row = self.with_conn(|conn| {
            let row = conn
                .client
                .query_opt(&conn.one, &[&key_text])
                .ctx("cannot read a record")?;
            match row {
                None => Ok(None),
                Some(row) => Ok(Some((col::<i64>(&row, 0)?, col::<String>(&row, 1)?))),
            }
        })?;
        match row {
            None => Ok(None),
            Some((version, body)) => {
                let record = decode_record(BACKEND, &self.ring, key, &body)?;
                Ok(Some((Version(to_u64(BACKEND, version, "a version")?), record)))
            }
        }
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        self.with_conn(|conn| {
            let row = conn
                .client
                .query_one(&conn.head, &[])
                .ctx("cannot read the head revision")?;
            Ok(head_of(&row)?.0)
        })
    }

    fn wait_for_change(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            // Listen before looking, so a commit between the look and the wait
            // still wakes us (its notification is queued).
            let listening = self.notify.load(Ordering::Relaxed) && self.ensure_listening();
            let now = self.revision()?;
            let left = deadline.saturating_duration_since(Instant::now());
            if now > after || left.is_zero() {
                return Ok(now);
            }
            let slice = left.min(self.poll_interval);
            if !(listening && self.wait_notified(slice)) {
                std::thread::sleep(slice);
            }
        }
    }
}

impl PostgresStore {
    /// Makes sure the listening connection exists (if `NOTIFY` is in use and no
    /// other thread is waiting on it).
    fn ensure_listening(&self) -> bool {
        self.wait_notified(Duration::ZERO)
    }
}

/// One attempt at a commit, inside one transaction.
fn commit_once(
    conn: &mut Conn,
    batch: &Batch,
    encoded: &[(String, Option<String>)],
    keys: &[&str],
) -> Result<Committed, Failure> {
    let mut tx = conn.client.transaction().ctx("cannot begin a transaction")?;
    // Taking the next revision locks the head row until commit: committers are
    // serialized, so revision order is commit order and the expectations below
    // are checked against everything committed before.
    let row = tx
        .query_one(&conn.bump, &[])
        .ctx("cannot take the next revision")?;
    let rev: i64 = col(&row, 0)?;
    let revision = Revision(to_u64(BACKEND, rev, "the head revision")?);
    let rows = tx
        .query(&conn.read_versions, &[&keys])
        .ctx("cannot read records")?;
    let mut current = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let key: String = col(row, 0)?;
        let version: i64 = col(row, 1)?;
        let deleted: bool = col(row, 2)?;
        current.insert(key, (to_u64(BACKEND, version, "a version")?, deleted));
    }
    let mut versions = Vec::with_capacity(batch.writes.len());
    for (w, (key_text, _)) in batch.writes.iter().zip(encoded) {
        let (found, previous) = match current.get(key_text) {
            Some((v, false)) => (Some(Version(*v)), *v),
            Some((v, true)) => (None, *v),
            None => (None, 0),
        };
        // On a conflict, dropping the transaction rolls it back: no
        // revision is consumed.
        w.expect.check(&w.key, found)?;
        versions.push(Version(previous + 1));
    }
    if let Some(token) = batch.token {
        tx.execute(&conn.token, &[&rev, &token.to_string()])
            .ctx("cannot record the batch's token")?;
    }
    for (seq, ((w, (key_text, body)), version)) in batch.writes.iter().zip(encoded).zip(&versions).enumerate()
    {
        let v = to_i64(version.0, "version")?;
        let seq = i32::try_from(seq).map_err(|_| StoreError::InvalidBatch {
            reason: "too many writes".into(),
        })?;
        tx.execute(
            &conn.upsert,
            &[key_text, &w.key.project().as_str(), &v, &rev, body],
        )
        .ctx("cannot write a record")?;
        tx.execute(&conn.append, &[&rev, &seq, key_text, &v, body])
            .ctx("cannot write the change feed")?;
    }
    match tx.commit() {
        Ok(()) => Ok(Committed { revision, versions }),
        Err(e) if retryable(&e) => Err(Failure::Db("cannot commit", e)),
        Err(e) if e.as_db_error().is_some() => Err(Failure::Db("the server refused the commit", e)),
        Err(e) => Err(Failure::LostCommit(e)),
    }
}
