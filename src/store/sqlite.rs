//! A durable store in one SQLite file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::rows::{
    self, decode_audit, decode_changes, decode_key, decode_record, encode_audit, encode_batch, encode_key,
    encode_record, in_feed,
};
use super::seal::{self, KeyRing, Resealed};
use super::{
    Batch, Change, CommitToken, Committed, Snapshot, Store, StoreError, check_audit_instant, next_revision,
    next_version,
};
use crate::model::{
    ActorId, AuditAction, AuditEntry, AuditKind, AuditQuery, ReadNote, Record, RecordKey, Revision,
    Timestamp, Version,
};

const BACKEND: &str = "sqlite";

/// `PRAGMA application_id` of a connective database ("cnx1").
const APPLICATION_ID: i32 = 0x636e_7831;

/// The schema, one migration per version: `MIGRATIONS[n]` takes version `n`
/// to `n + 1`. Never edit a released entry; append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: records with tombstones, the change feed, the head revision.
    "CREATE TABLE head (
         id INTEGER PRIMARY KEY CHECK (id = 1),
         revision INTEGER NOT NULL,
         feed_floor INTEGER NOT NULL
     );
     INSERT INTO head (id, revision, feed_floor) VALUES (1, 0, 0);
     CREATE TABLE records (
         key TEXT PRIMARY KEY,
         project TEXT NOT NULL,
         version INTEGER NOT NULL,
         revision INTEGER NOT NULL,
         body TEXT
     ) WITHOUT ROWID;
     CREATE INDEX records_project ON records (project);
     CREATE TABLE changes (
         revision INTEGER NOT NULL,
         seq INTEGER NOT NULL,
         key TEXT NOT NULL,
         version INTEGER NOT NULL,
         body TEXT,
         PRIMARY KEY (revision, seq)
     ) WITHOUT ROWID;",
    // 2: the tokens of committed batches, kept as long as the feed keeps them.
    "CREATE TABLE commits (
         revision INTEGER PRIMARY KEY,
         token TEXT NOT NULL
     );",
    // 3: the check value of each sealing key ID's key, from its first use.
    "CREATE TABLE seal_keys (
         key_id TEXT PRIMARY KEY,
         key_check TEXT NOT NULL
     ) WITHOUT ROWID;",
    // 4: the audit trail, append-only: one entry per audited batch, and the
    // keys it changed (to find a record's entries). Rows are never updated;
    // deleting old ones is the host's retention.
    "CREATE TABLE audit (
         revision INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         actor TEXT NOT NULL,
         body TEXT NOT NULL
     );
     CREATE INDEX audit_actor ON audit (actor, revision);
     CREATE INDEX audit_at ON audit (at);
     CREATE TABLE audit_keys (
         key TEXT NOT NULL,
         revision INTEGER NOT NULL,
         PRIMARY KEY (key, revision)
     ) WITHOUT ROWID;
     CREATE TRIGGER audit_append_only BEFORE UPDATE ON audit
     BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
     CREATE TRIGGER audit_keys_append_only BEFORE UPDATE ON audit_keys
     BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    // 5: the audit trail keeps reads of secrets too, which have no revision:
    // entries are keyed by their position in the trail (never reused, so
    // AUTOINCREMENT), a write's entry keeps its revision. Version 4's
    // entries move over at position = revision, their bodies as they were.
    "CREATE TABLE audit_trail (
         position INTEGER PRIMARY KEY AUTOINCREMENT,
         revision INTEGER UNIQUE,
         at INTEGER NOT NULL,
         actor TEXT NOT NULL,
         body TEXT NOT NULL
     );
     INSERT INTO audit_trail (position, revision, at, actor, body)
         SELECT revision, revision, at, actor, body FROM audit ORDER BY revision;
     CREATE INDEX audit_trail_actor ON audit_trail (actor, position);
     CREATE INDEX audit_trail_at ON audit_trail (at);
     CREATE TABLE audit_trail_keys (
         key TEXT NOT NULL,
         position INTEGER NOT NULL,
         PRIMARY KEY (key, position)
     ) WITHOUT ROWID;
     INSERT INTO audit_trail_keys (key, position) SELECT key, revision FROM audit_keys;
     DROP TABLE audit_keys;
     DROP TABLE audit;
     CREATE TRIGGER audit_trail_append_only BEFORE UPDATE ON audit_trail
     BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
     CREATE TRIGGER audit_trail_keys_append_only BEFORE UPDATE ON audit_trail_keys
     BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
];

/// The audit entries a query selects (see [`AuditQuery`]); `?6` is 1 for
/// writes only, 0 for reads only.
const AUDIT_QUERY: &str = "SELECT position, body FROM audit_trail
     WHERE position > ?1 AND (?2 IS NULL OR actor = ?2) AND (?3 IS NULL OR at >= ?3)
         AND (?4 IS NULL OR at < ?4)
         AND (?5 IS NULL OR position IN (SELECT position FROM audit_trail_keys WHERE key = ?5))
         AND (?6 IS NULL OR (revision IS NOT NULL) = ?6)
     ORDER BY position LIMIT ?7";
const AUDIT_ENTRY: &str = "INSERT INTO audit_trail (revision, at, actor, body) VALUES (?1, ?2, ?3, ?4)";
const AUDIT_KEY: &str = "INSERT INTO audit_trail_keys (key, position) VALUES (?1, ?2)";

/// The schema version this code writes.
pub const SQLITE_SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// A durable store in one SQLite file (feature `sqlite`).
///
/// - **Durable:** WAL journal with `synchronous=FULL`: a commit that returned
///   `Ok` survives a crash of the process or the machine.
/// - **Sealed:** records are stored as JSON with every secret value sealed
///   under the [`KeyRing`]'s newest key; no secret is written in plaintext
///   (deleted content is overwritten, `secure_delete=ON`). Each key ID is
///   bound to its key at first use: a ring with other bytes under a known ID
///   is refused at open ([`StoreError::KeyMismatch`]). A record no key of the
///   ring opens is listed in [`Snapshot::unreadable`](super::Snapshot::unreadable)
///   and the rest loads.
/// - **Versioned schema:** created and migrated on open; a file written by a
///   newer version of this crate is refused with [`StoreError::Unreadable`].
/// - **Tombstones:** a deleted key keeps its last version, so versions never
///   repeat across delete and re-create; the change feed is a table kept until
///   [`SqliteStore::prune_feed`], and so are the batches' tokens.
/// - **Lost answers:** a commit that fails with an I/O error while SQLite
///   writes it may have reached the log anyway: it answers
///   [`StoreError::OutcomeUnknown`], and [`Store::find_commit`] tells.
///
/// One process may open the file several times and several processes may share
/// it (SQLite's locking; a writer waits up to the busy timeout, 5 s by default).
/// For replicas on several machines use `PostgresStore`.
///
/// ```no_run
/// use connective::store::seal::{KeyRing, SealKey};
/// use connective::store::{SqliteStore, Store};
/// let key = SealKey::from_base64("2025-01", &std::env::var("CONNECTIVE_KEY")?)?;
/// let store = SqliteStore::open("connections.db", KeyRing::new(key))?;
/// println!("at revision {}", store.revision()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct SqliteStore {
    conn: Mutex<Connection>,
    ring: Arc<KeyRing>,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("keys", &self.ring)
            .finish()
    }
}

/// Appends one audit entry (a write's, with its revision, or a read's)
/// and the keys it is about, inside `tx`.
fn append_audit<'k>(
    tx: &rusqlite::Transaction<'_>,
    revision: Option<i64>,
    at: Timestamp,
    actor: &ActorId,
    action: &AuditAction,
    keys: impl Iterator<Item = &'k str>,
) -> Result<(), StoreError> {
    let body = encode_audit(BACKEND, at, actor, action)?;
    let at = to_i64(at.0, "the audit instant")?;
    let position: i64 = tx
        .prepare_cached(AUDIT_ENTRY)
        .and_then(|mut stmt| {
            stmt.execute(params![revision, at, actor.as_str(), body])?;
            Ok(tx.last_insert_rowid())
        })
        .map_err(|e| unavailable("cannot write the audit entry", e))?;
    let mut insert = tx
        .prepare_cached(AUDIT_KEY)
        .map_err(|e| unavailable("cannot write the audit entry", e))?;
    for key_text in keys {
        insert
            .execute(params![key_text, position])
            .map_err(|e| unavailable("cannot write the audit entry", e))?;
    }
    Ok(())
}

fn unavailable(context: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable {
        backend: BACKEND,
        message: format!("{context}: {e}"),
    }
}

fn to_i64(n: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::InvalidBatch {
        reason: format!("{what} {n} is out of range"),
    })
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, migrating its schema
    /// to this code's version.
    pub fn open(path: impl AsRef<Path>, keys: KeyRing) -> Result<Self, StoreError> {
        Self::open_with_busy_timeout(path, keys, Duration::from_secs(5))
    }

    /// Like [`SqliteStore::open`], waiting up to `busy_timeout` for another
    /// connection's write lock before answering [`StoreError::Unavailable`].
    pub fn open_with_busy_timeout(
        path: impl AsRef<Path>,
        keys: KeyRing,
        busy_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| unavailable(&format!("cannot open {shown}"), e))?;
        conn.busy_timeout(busy_timeout)
            .map_err(|e| unavailable("cannot set the busy timeout", e))?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(|e| unavailable(&format!("cannot switch {shown} to WAL"), e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Unavailable {
                backend: BACKEND,
                message: format!("{shown} cannot use WAL journaling (journal mode is {mode})"),
            });
        }
        for (name, value) in [("synchronous", "FULL"), ("secure_delete", "ON")] {
            conn.pragma_update(None, name, value)
                .map_err(|e| unavailable(&format!("cannot set {name}"), e))?;
        }
        let mut conn = conn;
        migrate(&mut conn, &shown)?;
        bind(&mut conn, &keys)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            ring: Arc::new(keys),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key ring secrets are sealed with.
    pub fn key_ring(&self) -> &KeyRing {
        &self.ring
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // Transactions roll back when dropped, so a panic while holding the
        // lock leaves the connection usable.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rewrites every sealed value under the key ring's newest key: the live
    /// records and the bodies kept in the change feed, in one transaction
    /// (concurrent commits wait). Versions and revisions do not change: this is
    /// not a write of the records. Afterwards the WAL is checkpointed and
    /// truncated so old sealed text does not linger in it (overwritten pages
    /// are zeroed, `secure_delete=ON`). Once it returns, keys other than the
    /// newest can be removed from the rings of every process using the file.
    ///
    /// A value that no key of the ring opens fails the whole re-seal with
    /// [`StoreError::Unreadable`] naming the record and key; nothing changes.
    pub fn reseal(&self) -> Result<Resealed, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| unavailable("cannot begin a transaction", e))?;
        let mut done = Resealed::default();
        let rows: Vec<(String, String)> = {
            let mut stmt = tx
                .prepare("SELECT key, body FROM records WHERE body IS NOT NULL")
                .map_err(|e| unavailable("cannot read records", e))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(|e| unavailable("cannot read records", e))?
        };
        for (key_text, body) in rows {
            let key = decode_key(BACKEND, &key_text)?;
            let record = decode_record(BACKEND, &self.ring, &key, &body)?;
            let body = encode_record(BACKEND, &self.ring, &record)?;
            tx.execute(
                "UPDATE records SET body = ?1 WHERE key = ?2",
                params![body, key_text],
            )
            .map_err(|e| unavailable(&format!("cannot rewrite {key}"), e))?;
            done.records += 1;
        }
        let changes: Vec<(i64, i64, String, String)> = {
            let mut stmt = tx
                .prepare("SELECT revision, seq, key, body FROM changes WHERE body IS NOT NULL")
                .map_err(|e| unavailable("cannot read the change feed", e))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .and_then(|rows| rows.collect())
                .map_err(|e| unavailable("cannot read the change feed", e))?
        };
        for (revision, seq, key_text, body) in changes {
            let key = decode_key(BACKEND, &key_text)?;
            let record = decode_record(BACKEND, &self.ring, &key, &body).map_err(|e| in_feed(e, revision))?;
            let body = encode_record(BACKEND, &self.ring, &record)?;
            tx.execute(
                "UPDATE changes SET body = ?1 WHERE revision = ?2 AND seq = ?3",
                params![body, revision, seq],
            )
            .map_err(|e| unavailable(&format!("cannot rewrite the change of {key} at r{revision}"), e))?;
            done.changes += 1;
        }
        tx.commit()
            .map_err(|e| unavailable("cannot commit the re-seal", e))?;
        // Best effort: a reader holding an old snapshot can keep the WAL alive;
        // the next checkpoint then overwrites it.
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(done)
    }

    /// Drops change-feed entries of revisions up to `through` (at most the
    /// latest). A follower asking for changes after an older revision is told
    /// [`StoreError::FeedTruncated`] and reloads. Returns how many entries were
    /// removed.
    pub fn prune_feed(&self, through: Revision) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| unavailable("cannot begin a transaction", e))?;
        let (revision, floor) = head(&tx)?;
        let through = through.0.min(revision.0);
        if through <= floor.0 {
            return Ok(0);
        }
        let t = to_i64(through, "revision")?;
        let removed = tx
            .execute("DELETE FROM changes WHERE revision <= ?1", [t])
            .map_err(|e| unavailable("cannot prune the change feed", e))?;
        tx.execute("DELETE FROM commits WHERE revision <= ?1", [t])
            .map_err(|e| unavailable("cannot prune the change feed", e))?;
        tx.execute("UPDATE head SET feed_floor = ?1 WHERE id = 1", [t])
            .map_err(|e| unavailable("cannot prune the change feed", e))?;
        tx.commit()
            .map_err(|e| unavailable("cannot commit the pruning", e))?;
        Ok(removed)
    }
}

fn migrate(conn: &mut Connection, shown: &str) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| unavailable(&format!("cannot lock {shown} to migrate it"), e))?;
    let app: i32 = tx
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| unavailable(&format!("cannot read {shown}"), e))?;
    let version: u32 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| unavailable(&format!("cannot read {shown}"), e))?;
    if app != APPLICATION_ID {
        let has_tables: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table')",
                [],
                |r| r.get(0),
            )
            .map_err(|e| unavailable(&format!("cannot read {shown}"), e))?;
        if app != 0 || has_tables {
            return Err(StoreError::Unreadable {
                backend: BACKEND,
                what: shown.to_string(),
                message: "not a connective database (it has other tables or another application id)".into(),
            });
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(|e| unavailable(&format!("cannot initialize {shown}"), e))?;
    }
    if version > SQLITE_SCHEMA_VERSION {
        return Err(StoreError::Unreadable {
            backend: BACKEND,
            what: shown.to_string(),
            message: format!(
                "its schema version {version} is newer than this code's {SQLITE_SCHEMA_VERSION}; \
                 upgrade connective to open it"
            ),
        });
    }
    for (n, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql)
            .map_err(|e| unavailable(&format!("cannot migrate {shown} to version {}", n + 1), e))?;
    }
    if version < SQLITE_SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SQLITE_SCHEMA_VERSION)
            .map_err(|e| unavailable(&format!("cannot migrate {shown}"), e))?;
    }
    tx.commit()
        .map_err(|e| unavailable(&format!("cannot commit the migration of {shown}"), e))
}

/// Binds the ring's keys to their IDs (see "Key binding" in
/// [`seal`](super::seal)), in one transaction.
fn bind(conn: &mut Connection, ring: &KeyRing) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| unavailable("cannot lock the database to check the keys", e))?;
    seal::bind_keys(
        BACKEND,
        ring,
        |id| {
            tx.query_row("SELECT key_check FROM seal_keys WHERE key_id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| unavailable("cannot read the key checks", e))
        },
        |needle| {
            let mut stmt = tx
                .prepare(
                    "SELECT body FROM (SELECT body FROM records WHERE body IS NOT NULL
                                       UNION ALL SELECT body FROM changes WHERE body IS NOT NULL)
                     WHERE instr(body, ?1) > 0 LIMIT 3",
                )
                .map_err(|e| unavailable("cannot look for sealed values", e))?;
            stmt.query_map([needle], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(|e| unavailable("cannot look for sealed values", e))
        },
        |id, check| {
            tx.execute(
                "INSERT INTO seal_keys (key_id, key_check) VALUES (?1, ?2) ON CONFLICT (key_id) DO NOTHING",
                [id, check],
            )
            .map(drop)
            .map_err(|e| unavailable("cannot record a key check", e))
        },
    )?;
    tx.commit()
        .map_err(|e| unavailable("cannot commit the key checks", e))
}

/// The head revision and the feed floor (every change after it is kept).
fn head(conn: &Connection) -> Result<(Revision, Revision), StoreError> {
    let (revision, floor): (i64, i64) = conn
        .query_row("SELECT revision, feed_floor FROM head WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|e| unavailable("cannot read the head revision", e))?;
    rows::head(BACKEND, revision, floor)
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(|e| unavailable("cannot begin a transaction", e))?;
        let (revision, _) = head(&tx)?;
        // Rows are decoded on other threads while this one reads on.
        let (records, unreadable) = rows::decode_live_from(BACKEND, &self.ring, |sink| {
            let failed = |e| unavailable("cannot read records", e);
            let mut stmt = tx
                .prepare("SELECT key, version, body FROM records WHERE body IS NOT NULL")
                .map_err(failed)?;
            let mut rows = stmt.query([]).map_err(failed)?;
            while let Some(row) = rows.next().map_err(failed)? {
                let key = row.get_ref(0).and_then(|v| Ok(v.as_str()?)).map_err(failed)?;
                let version: i64 = row.get(1).map_err(failed)?;
                // A body that is not text is an unreadable record, not a
                // failed load.
                let body = match row.get_ref(2).map_err(failed)? {
                    ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes,
                    ValueRef::Null | ValueRef::Integer(_) | ValueRef::Real(_) => &[],
                };
                sink.push(key, version, body);
            }
            Ok(())
        })?;
        drop(tx);
        drop(conn);
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
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| unavailable("cannot begin a transaction", e))?;
        let (previous, _) = head(&tx)?;
        let revision = next_revision(BACKEND, previous)?;
        let mut versions = Vec::with_capacity(batch.writes.len());
        let mut before = Vec::with_capacity(batch.writes.len());
        {
            let mut stmt = tx
                .prepare_cached("SELECT version, body IS NULL FROM records WHERE key = ?1")
                .map_err(|e| unavailable("cannot read records", e))?;
            for (w, (key_text, _)) in batch.writes.iter().zip(&encoded) {
                let row: Option<(i64, bool)> = stmt
                    .query_row([key_text], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(|e| unavailable(&format!("cannot read {}", w.key), e))?;
                // The key's last version, live or deleted.
                let previous = row
                    .map(|(v, deleted)| {
                        Ok::<_, StoreError>((rows::stored_version(BACKEND, &w.key, v)?, deleted))
                    })
                    .transpose()?;
                let found = previous.and_then(|(v, deleted)| (!deleted).then_some(v));
                w.expect.check(&w.key, found)?;
                before.push(found);
                versions.push(next_version(&w.key, previous.map(|(v, _)| v))?);
            }
        }
        let rev = to_i64(revision.0, "revision")?;
        tx.execute("UPDATE head SET revision = ?1 WHERE id = 1", [rev])
            .map_err(|e| unavailable("cannot advance the revision", e))?;
        {
            let mut upsert = tx
                .prepare_cached(
                    "INSERT INTO records (key, project, version, revision, body) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (key) DO UPDATE SET version = excluded.version,
                         revision = excluded.revision, body = excluded.body",
                )
                .map_err(|e| unavailable("cannot write records", e))?;
            let mut feed = tx
                .prepare_cached(
                    "INSERT INTO changes (revision, seq, key, version, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(|e| unavailable("cannot write the change feed", e))?;
            for (seq, ((w, (key_text, body)), version)) in
                batch.writes.iter().zip(&encoded).zip(&versions).enumerate()
            {
                let v = to_i64(version.0, "version")?;
                upsert
                    .execute(params![key_text, w.key.project().as_str(), v, rev, body])
                    .map_err(|e| unavailable(&format!("cannot write {}", w.key), e))?;
                feed.execute(params![rev, seq as i64, key_text, v, body])
                    .map_err(|e| unavailable(&format!("cannot write the change of {}", w.key), e))?;
            }
        }
        if let Some((note, action)) = batch.audit_action(revision, &before, &versions) {
            let keys = encoded.iter().map(|(key_text, _)| key_text.as_str());
            append_audit(&tx, Some(rev), note.at, &note.actor, &action, keys)?;
        }
        if let Some(token) = batch.token {
            tx.prepare_cached("INSERT INTO commits (revision, token) VALUES (?1, ?2)")
                .and_then(|mut stmt| stmt.execute(params![rev, token.to_string()]))
                .map_err(|e| unavailable("cannot record the batch's token", e))?;
        }
        match tx.commit() {
            Ok(()) => Ok(Committed { revision, versions }),
            // Busy: the commit did not happen (and is rolled back).
            Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {
                Err(unavailable(&format!("cannot commit {revision}"), e))
            }
            // An I/O error while committing may come after the commit record
            // reached the log (a failed sync): the outcome is unknown.
            Err(e) => Err(StoreError::OutcomeUnknown {
                backend: BACKEND,
                message: format!("committing {revision} failed: {e}"),
            }),
        }
    }

    fn find_commit(&self, token: CommitToken, after: Revision) -> Result<Option<Committed>, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(|e| unavailable("cannot begin a transaction", e))?;
        if !rows::batches_after(after, head(&tx)?)? {
            return Ok(None);
        }
        let after = to_i64(after.0, "revision")?;
        let found: Option<i64> = tx
            .prepare_cached("SELECT revision FROM commits WHERE revision > ?1 AND token = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![after, token.to_string()], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| unavailable("cannot look up a commit", e))?;
        let Some(rev) = found else {
            return Ok(None);
        };
        let versions: Vec<i64> = tx
            .prepare_cached("SELECT version FROM changes WHERE revision = ?1 ORDER BY seq")
            .and_then(|mut stmt| stmt.query_map([rev], |r| r.get(0))?.collect())
            .map_err(|e| unavailable("cannot look up a commit", e))?;
        rows::committed(BACKEND, rev, versions).map(Some)
    }

    fn changes_since(&self, after: Revision, limit: usize) -> Result<Vec<Change>, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction()
            .map_err(|e| unavailable("cannot begin a transaction", e))?;
        let (revision, floor) = head(&tx)?;
        if limit == 0 || !rows::batches_after(after, (revision, floor))? {
            return Ok(Vec::new());
        }
        // Revisions are consecutive, so `limit` batches end at after + limit.
        let last = after.0.saturating_add(limit as u64).min(revision.0);
        let rows: Vec<(i64, String, i64, Option<String>)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT revision, key, version, body FROM changes
                     WHERE revision > ?1 AND revision <= ?2 ORDER BY revision, seq",
                )
                .map_err(|e| unavailable("cannot read the change feed", e))?;
            stmt.query_map([to_i64(after.0, "revision")?, to_i64(last, "revision")?], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| unavailable("cannot read the change feed", e))?
        };
        drop(tx);
        drop(conn);
        decode_changes(BACKEND, &self.ring, rows)
    }

    fn get(&self, key: &RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        let key_text = encode_key(BACKEND, key)?;
        let row: Option<(i64, String)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached("SELECT version, body FROM records WHERE key = ?1 AND body IS NOT NULL")
                .map_err(|e| unavailable("cannot read records", e))?;
            stmt.query_row([&key_text], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(|e| unavailable(&format!("cannot read {key}"), e))?
        };
        match row {
            None => Ok(None),
            Some((version, body)) => {
                let record = decode_record(BACKEND, &self.ring, key, &body)?;
                Ok(Some((rows::stored_version(BACKEND, key, version)?, record)))
            }
        }
    }

    fn revision(&self) -> Result<Revision, StoreError> {
        Ok(head(&self.lock())?.0)
    }

    fn keeps_audit(&self) -> bool {
        true
    }

    fn append_reads(&self, reads: &[ReadNote]) -> Result<(), StoreError> {
        if reads.is_empty() {
            return Ok(());
        }
        // Encode before taking the lock.
        let mut encoded = Vec::with_capacity(reads.len());
        for read in reads {
            check_audit_instant(read.at, &format!("the read by {}", read.actor))?;
            let action = AuditAction::Read(read.read.clone());
            let keys = read
                .read
                .keys()
                .iter()
                .map(|k| encode_key(BACKEND, k))
                .collect::<Result<Vec<_>, _>>()?;
            encoded.push((action, keys));
        }
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| unavailable("cannot begin a transaction", e))?;
        for (read, (action, keys)) in reads.iter().zip(&encoded) {
            append_audit(
                &tx,
                None,
                read.at,
                &read.actor,
                action,
                keys.iter().map(String::as_str),
            )?;
        }
        tx.commit()
            .map_err(|e| unavailable("cannot commit the audit entries of reads", e))
    }

    fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let key = query.key.as_ref().map(|k| encode_key(BACKEND, k)).transpose()?;
        let Some(rows::AuditBounds {
            after,
            from,
            until,
            limit,
        }) = rows::audit_bounds(query)
        else {
            return Ok(Vec::new());
        };
        let writes = query.kind.map(|k| k == AuditKind::Write);
        let rows: Vec<(i64, String)> = {
            let conn = self.lock();
            let mut stmt = conn
                .prepare_cached(AUDIT_QUERY)
                .map_err(|e| unavailable("cannot read the audit trail", e))?;
            let rows = stmt
                .query_map(
                    params![
                        after,
                        query.actor.as_ref().map(|a| a.as_str()),
                        from,
                        until,
                        key,
                        writes,
                        limit
                    ],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .map_err(|e| unavailable("cannot read the audit trail", e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| unavailable("cannot read the audit trail", e))?
        };
        rows.iter()
            .map(|(position, body)| decode_audit(BACKEND, *position, body))
            .collect()
    }
}
