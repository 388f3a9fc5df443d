//! A shared store on PostgreSQL, for many host replicas on one database
//! (feature `postgres`): [`PostgresStore`], its connection settings
//! ([`PostgresSettings`]) and TLS modes ([`SslMode`]).

mod ops;
mod pipeline;
mod settings;
mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::{Handle, RuntimeFlavor};

pub use settings::PostgresSettings;
pub use tls::{BadSslMode, SslMode};

use super::seal::{KeyRing, Resealed};
use super::{AsyncStore, Batch, Change, CommitToken, Committed, Snapshot, Store, StoreError, StoreFuture};
use crate::model::{AuditEntry, AuditQuery, ReadNote, Record, RecordKey, Revision, Version};
use ops::Inner;

pub(crate) const BACKEND: &str = "postgres";

/// The `NOTIFY` channel commits are announced on (payload: the revision).
pub const NOTIFY_CHANNEL: &str = "connective_feed";

/// The schema version this code writes.
pub const POSTGRES_SCHEMA_VERSION: u32 = ops::MIGRATIONS.len() as u32;

/// A shared store on PostgreSQL (feature `postgres`): many host replicas on one
/// database, each following the change feed. It runs on `tokio-postgres` with a
/// `deadpool-postgres` pool, and serves blocking callers ([`Store`]) and async
/// ones ([`AsyncStore`]) with the same code.
///
/// - **Commit order is feed order.** A batch takes its revision with
///   `UPDATE connective_head SET revision = revision + 1 ... RETURNING` inside
///   its transaction; the row lock serializes committers until they commit, so
///   a follower reading `changes_since(last)` never skips a revision that
///   commits late, and a failed batch consumes no revision. Expectations are
///   checked after taking that lock, inside the transaction.
/// - **Two round trips per commit**, whatever the batch holds: `BEGIN`, the
///   revision and the versions of the batch's keys are sent together; once
///   the expectations hold, the audit entry, the token, the records (one
///   statement for the whole batch), the feed's changes and `COMMIT` are
///   sent together. A statement that fails aborts the transaction, and the
///   `COMMIT` after it rolls it back: nothing of the batch is written, and
///   the error names the first failure. Looking a commit up
///   ([`Store::find_commit`]), appending reads to the audit trail and
///   pruning the feed take one round trip each, a re-seal two.
/// - **Portable core.** Every statement on the commit, load and feed path is
///   plain SQL that Postgres-wire distributed databases accept; transactions
///   that lose a serialization race (`40001`) are retried.
/// - **Woken by `NOTIFY`.** A commit announces its revision with `pg_notify`
///   inside its own transaction (the server sends it as the transaction
///   commits; no round trip of its own), and [`Store::wait_for_change`]
///   `LISTEN`s (on a connection of its own, outside the pool): woken by an
///   announcement of a revision past the one it waits after, it returns that
///   revision without another statement, and [`Store::changes_since`] reads
///   the head and the batches in one statement. A database without `NOTIFY`
///   refuses the first commit's announcement before anything is written;
///   that commit is made again without it, and from then on followers poll
///   (see [`PostgresSettings::poll_interval`]).
/// - **Versioned schema** in tables named `connective_*`, created and migrated
///   by the library (concurrent replicas may start at once); a database whose
///   schema is newer than this code is refused with [`StoreError::Unreadable`].
///   Put them in a schema of your own with `options=-csearch_path=myschema`.
/// - **Sealed secrets**, as in `SqliteStore`: JSON rows with every secret
///   sealed under the [`KeyRing`]'s newest key; each key ID bound to its key
///   at first use (other bytes under a known ID are refused when the store
///   is made, with [`StoreError::KeyMismatch`]); a record no key of the ring
///   opens is reported, and the rest loads.
/// - **Deadlines.** The database work of each call has
///   [`PostgresSettings::statement_timeout`]: past it the statement is
///   cancelled on the server, the connection dropped, and the call answers
///   [`StoreError::Timeout`] (retryable), or [`StoreError::OutcomeUnknown`]
///   when the commit itself was under way. Connecting and waiting for a
///   pooled connection have their own deadlines.
/// - **Faults.** When the server goes away, calls answer
///   [`StoreError::Unavailable`]; the pool connects again on a later call. A
///   connection lost while committing leaves the outcome unknown: the commit
///   answers [`StoreError::OutcomeUnknown`], and [`Store::find_commit`]
///   (which waits for the lost transaction to end) tells whether the batch
///   landed.
/// - **TLS** with rustls, `sslmode` as libpq defines it ([`SslMode`]);
///   a certificate that is not trusted or names another host is
///   [`StoreError::Tls`].
/// - **No secret in a message.** Errors, `Debug` and the client's log lines
///   name the server and database, never the password; statement parameters
///   the client logs at `debug` level are identifiers and sealed text.
///
/// # Blocking and async hosts
/// - An async host (tokio) makes the store inside its runtime with
///   [`PostgresStore::connect_async`], [`PostgresSettings::connect_async`] or
///   from the pool it already has ([`PostgresStore::from_pool`]), and hands it
///   to [`RegistryBuilder::async_store`](crate::registry::RegistryBuilder::async_store):
///   writes awaited through the registry's `_async` methods never block a
///   runtime thread, and [`Registry::follow_async`](crate::registry::Registry::follow_async)
///   follows the feed on a task.
/// - A blocking host makes it with [`PostgresStore::connect`] (or
///   [`PostgresSettings::connect`]): the store then runs a private runtime of
///   one thread for its connections, and each blocking call waits on it.
///
/// A blocking call made from inside a tokio runtime runs on a short-lived
/// helper thread (it never panics, but it blocks the calling thread); one made
/// on the very current-thread runtime that drives the store's connections
/// would wait forever, and answers [`StoreError::Unavailable`] instead.
///
/// ```no_run
/// use connective::store::seal::{KeyRing, SealKey};
/// use connective::store::{PostgresStore, Store};
/// let key = SealKey::from_base64("2025-01", &std::env::var("CONNECTIVE_KEY")?)?;
/// // Everything from PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, PGSSLMODE:
/// let store = PostgresStore::connect("", KeyRing::new(key))?;
/// println!("at revision {}", store.revision()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use connective::prelude::*;
/// use connective::store::seal::{KeyRing, SealKey};
/// use connective::store::PostgresSettings;
/// let key = SealKey::from_base64("2025-01", &std::env::var("CONNECTIVE_KEY")?)?;
/// let store = PostgresSettings::from_connection_string(
///     "host=db.internal user=app dbname=connections sslmode=verify-full sslrootcert=/etc/db-ca.pem",
/// )?
/// .pool_size(8)
/// .statement_timeout(Duration::from_secs(5))
/// .connect_async(KeyRing::new(key))
/// .await?;
/// let registry = Arc::new(Registry::builder().async_store(store).build_async().await?);
/// let _follower = registry.follow_async(Duration::from_secs(1));
/// registry
///     .create_connection_async(ConnectionSpec::project("acme", "crm").build()?)
///     .await?;
/// # Ok(())
/// # }
/// ```
pub struct PostgresStore {
    inner: Arc<Inner>,
    runtime: Runtime,
}

/// Where the store's connections run.
enum Runtime {
    /// A private runtime (blocking hosts), shut down with the store.
    Own(Option<tokio::runtime::Runtime>, Handle),
    /// The host's runtime the store was made on.
    Host(Handle),
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.inner.shown)
            .field("keys", &self.inner.ring)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Runtime::Own(runtime, _) = &mut self.runtime
            && let Some(runtime) = runtime.take()
        {
            // Never blocks, so the store may be dropped anywhere (a runtime
            // dropped inside another would panic).
            runtime.shutdown_background();
        }
    }
}

fn no_runtime(e: std::io::Error) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        message: format!("cannot start the client's runtime: {e}"),
    }
}

impl PostgresSettings {
    /// Connects for a blocking host: a private runtime of one thread runs the
    /// store's connections. Creates or migrates the schema and binds the key
    /// ring's keys before returning.
    pub fn connect(self, keys: KeyRing) -> Result<PostgresStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("connective-postgres")
            .enable_all()
            .build()
            .map_err(no_runtime)?;
        let handle = runtime.handle().clone();
        let inner = Arc::new(Inner::new(&self, None, keys)?);
        let store = PostgresStore {
            inner,
            runtime: Runtime::Own(Some(runtime), handle),
        };
        store.block(store.inner.start())?;
        Ok(store)
    }

    /// Connects for an async host, on the current tokio runtime: creates or
    /// migrates the schema and binds the key ring's keys.
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn connect_async(self, keys: KeyRing) -> Result<PostgresStore, StoreError> {
        let inner = Arc::new(Inner::new(&self, None, keys)?);
        inner.start().await?;
        Ok(PostgresStore {
            inner,
            runtime: Runtime::Host(Handle::current()),
        })
    }

    /// Uses the host's own pool for the store's statements, and these
    /// settings for the rest: the deadlines, the connection that `LISTEN`s,
    /// TLS for cancel requests. (The pool's connections keep their own
    /// settings: the server's `statement_timeout` is not added to them.)
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn connect_with_pool(
        self,
        pool: deadpool_postgres::Pool,
        keys: KeyRing,
    ) -> Result<PostgresStore, StoreError> {
        let inner = Arc::new(Inner::new(&self, Some(pool), keys)?);
        inner.start().await?;
        Ok(PostgresStore {
            inner,
            runtime: Runtime::Host(Handle::current()),
        })
    }
}

impl PostgresStore {
    /// Connects for a blocking host with a libpq-style connection string
    /// (key/value or URL; may be empty), the `PG*` variables filling in what
    /// it leaves out (see [`PostgresSettings`]), then creates or migrates the
    /// schema.
    pub fn connect(params: &str, keys: KeyRing) -> Result<Self, StoreError> {
        PostgresSettings::from_connection_string(params)?.connect(keys)
    }

    /// Connects for a blocking host using only the standard `PG*` variables.
    pub fn from_env(keys: KeyRing) -> Result<Self, StoreError> {
        Self::connect("", keys)
    }

    /// Connects for an async host, on the current tokio runtime (see
    /// [`PostgresSettings::connect_async`]).
    pub async fn connect_async(params: &str, keys: KeyRing) -> Result<Self, StoreError> {
        PostgresSettings::from_connection_string(params)?
            .connect_async(keys)
            .await
    }

    /// Uses the pool the host already has (`deadpool-postgres`), on the
    /// current tokio runtime, with the default deadlines. Without connection
    /// settings the store cannot open a `LISTEN` connection of its own, so
    /// followers poll (every 200 ms); give settings with
    /// [`PostgresSettings::connect_with_pool`] to be woken by `NOTIFY`.
    pub async fn from_pool(pool: deadpool_postgres::Pool, keys: KeyRing) -> Result<Self, StoreError> {
        let inner = Arc::new(Inner::for_pool(pool, keys)?);
        inner.start().await?;
        Ok(PostgresStore {
            inner,
            runtime: Runtime::Host(Handle::current()),
        })
    }

    /// The longest [`Store::wait_for_change`] sleeps between two looks at the
    /// head revision (default 200 ms; see
    /// [`PostgresSettings::poll_interval`]).
    pub fn with_poll_interval(self, interval: Duration) -> Self {
        self.inner.set_poll_interval(interval);
        self
    }

    /// Never uses `LISTEN/NOTIFY`: commits send no notification and
    /// [`Store::wait_for_change`] only polls. For Postgres-wire databases
    /// without `NOTIFY` (the store also notices that by itself).
    pub fn without_notify(self) -> Self {
        self.inner.disable_notify();
        self
    }

    /// The key ring secrets are sealed with.
    pub fn key_ring(&self) -> &KeyRing {
        &self.inner.ring
    }

    /// The server and database, for messages (never the password).
    pub fn server(&self) -> &str {
        &self.inner.shown
    }

    /// The pool's current size and idle connections.
    pub fn pool_status(&self) -> deadpool_postgres::Status {
        self.inner.pool.status()
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
        self.block(self.inner.reseal())
    }

    /// [`PostgresStore::reseal`] for async hosts.
    pub async fn reseal_async(&self) -> Result<Resealed, StoreError> {
        let inner = Arc::clone(&self.inner);
        self.run(async move { inner.reseal().await }).await
    }

    /// Drops change-feed entries of revisions up to `through` (at most the
    /// latest). A follower asking for changes after an older revision is told
    /// [`StoreError::FeedTruncated`] and reloads. Returns how many entries were
    /// removed.
    pub fn prune_feed(&self, through: Revision) -> Result<usize, StoreError> {
        self.block(self.inner.prune_feed(through))
    }

    /// [`PostgresStore::prune_feed`] for async hosts.
    pub async fn prune_feed_async(&self, through: Revision) -> Result<usize, StoreError> {
        let inner = Arc::clone(&self.inner);
        self.run(async move { inner.prune_feed(through).await }).await
    }

    fn handle(&self) -> &Handle {
        match &self.runtime {
            Runtime::Own(_, handle) | Runtime::Host(handle) => handle,
        }
    }

    /// Runs `op` to completion for a blocking caller: on this thread when it
    /// is outside any runtime, else on a helper thread (a runtime's thread
    /// must not block on another future).
    fn block<T: Send>(
        &self,
        op: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        let handle = self.handle();
        let Ok(current) = Handle::try_current() else {
            return handle.block_on(op);
        };
        if handle.runtime_flavor() == RuntimeFlavor::CurrentThread && current.id() == handle.id() {
            return Err(StoreError::Unavailable {
                backend: BACKEND,
                message: "a blocking call on the current-thread runtime that runs the store's connections \
                          would wait forever; use the store's async calls (AsyncStore) there"
                    .into(),
            });
        }
        std::thread::scope(|s| match s.spawn(|| handle.block_on(op)).join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    }

    /// Runs `op` for an async caller: where it is, when the store runs on
    /// the host's runtime; on the store's own runtime otherwise (its
    /// connections live there).
    async fn run<T: Send + 'static>(
        &self,
        op: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        match &self.runtime {
            Runtime::Host(_) => op.await,
            Runtime::Own(_, handle) => handle.spawn(op).await.map_err(|e| StoreError::Unavailable {
                backend: BACKEND,
                message: format!("the client's runtime dropped a call: {e}"),
            })?,
        }
    }
}

impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.block(self.inner.load())
    }

    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        self.block(self.inner.commit(batch))
    }

    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        self.block(self.inner.find_commit(token, after))
    }

    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        self.block(self.inner.changes_since(after, limit))
    }

    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        self.block(self.inner.get(key))
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        self.block(self.inner.revision())
    }

    fn wait_for_change(&self, after: Revision, timeout: Duration) -> Result<Revision, StoreError> {
        self.block(self.inner.wait_for_change(after, timeout))
    }

    fn keeps_audit(&self) -> bool {
        true
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.block(self.inner.audit(query))
    }

    fn append_reads(&self, reads: &[ReadNote]) -> Result<(), StoreError> {
        self.block(self.inner.append_reads(reads))
    }
}

impl AsyncStore for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn load(&self) -> StoreFuture<'_, Snapshot> {
        let inner = Arc::clone(&self.inner);
        Box::pin(self.run(async move { inner.load().await }))
    }

    fn commit<'a>(&'a self, batch: &'a Batch) -> StoreFuture<'a, Committed> {
        if let Runtime::Host(_) = self.runtime {
            return Box::pin(self.inner.commit(batch));
        }
        let (inner, batch) = (Arc::clone(&self.inner), batch.clone());
        Box::pin(self.run(async move { inner.commit(&batch).await }))
    }

    fn find_commit(&self, token: CommitToken, after: Revision) -> StoreFuture<'_, Option<Committed>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(self.run(async move { inner.find_commit(token, after).await }))
    }

    fn changes_since(&self, after: Revision, limit: usize) -> StoreFuture<'_, Vec<Change>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(self.run(async move { inner.changes_since(after, limit).await }))
    }

    fn get<'a>(&'a self, key: &'a RecordKey) -> StoreFuture<'a, Option<(Version, Record)>> {
        let (inner, key) = (Arc::clone(&self.inner), key.clone());
        Box::pin(self.run(async move { inner.get(&key).await }))
    }

    fn revision(&self) -> StoreFuture<'_, Revision> {
        let inner = Arc::clone(&self.inner);
        Box::pin(self.run(async move { inner.revision().await }))
    }

    fn wait_for_change(&self, after: Revision, timeout: Duration) -> StoreFuture<'_, Revision> {
        let inner = Arc::clone(&self.inner);
        Box::pin(self.run(async move { inner.wait_for_change(after, timeout).await }))
    }

    fn keeps_audit(&self) -> bool {
        true
    }

    fn audit<'a>(&'a self, query: &'a AuditQuery) -> StoreFuture<'a, Vec<AuditEntry>> {
        let (inner, query) = (Arc::clone(&self.inner), query.clone());
        Box::pin(self.run(async move { inner.audit(&query).await }))
    }

    fn append_reads<'a>(&'a self, reads: &'a [ReadNote]) -> StoreFuture<'a, ()> {
        let (inner, reads) = (Arc::clone(&self.inner), reads.to_vec());
        Box::pin(self.run(async move { inner.append_reads(&reads).await }))
    }
}
