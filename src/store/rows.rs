//! The row codec shared by the durable backends: keys and records as JSON,
//! secrets sealed under a [`KeyRing`], and the checks of what is read back
//! (a row holds the record of its key; what cannot be read is listed, not
//! fatal).

use std::sync::Arc;

use super::seal::{KeyRing, SealError};
use crate::model::{
    ActorId, AuditAction, AuditChange, AuditEntry, AuditPosition, CodecError, Record, RecordKey, Revision,
    SecretCodec, Timestamp, with_secret_codec_reporting,
};
use crate::store::StoreError;

/// What a sealing error says, if a codec error is one.
fn seal_error(error: Option<CodecError>) -> Option<SealError> {
    error.and_then(|e| e.downcast::<SealError>().ok())
}

/// The stored text of a key.
pub(crate) fn encode_key(backend: &'static str, key: &RecordKey) -> Result<String, StoreError> {
    serde_json::to_string(key).map_err(|e| StoreError::Unavailable {
        backend,
        message: format!("cannot encode the key of {key}: {e}"),
    })
}

/// A key from its stored text.
pub(crate) fn decode_key(backend: &'static str, text: &str) -> Result<RecordKey, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Unreadable {
        backend,
        what: "a record key".into(),
        message: format!("not a record key ({e})"),
    })
}

/// The stored text of a record, its secrets sealed under the ring's newest key.
pub(crate) fn encode_record(
    backend: &'static str,
    ring: &Arc<KeyRing>,
    record: &Record,
) -> Result<String, StoreError> {
    let (result, codec_error) = with_secret_codec_reporting(ring.clone(), || serde_json::to_string(record));
    result.map_err(|e| StoreError::Unavailable {
        backend,
        message: match seal_error(codec_error) {
            Some(seal) => format!("cannot seal the secrets of {}: {seal}", record.key()),
            None => format!("cannot encode {}: {e}", record.key()),
        },
    })
}

/// Every write of `batch` as (key text, sealed record text or `None` for a
/// delete), ready to store; done before taking any lock.
pub(crate) fn encode_batch(
    backend: &'static str,
    ring: &Arc<KeyRing>,
    batch: &crate::store::Batch,
) -> Result<Vec<(String, Option<String>)>, StoreError> {
    batch
        .writes
        .iter()
        .map(|w| {
            let body = match &w.op {
                crate::store::Op::Put(record) => Some(encode_record(backend, ring, record)?),
                crate::store::Op::Delete => None,
            };
            Ok((encode_key(backend, &w.key)?, body))
        })
        .collect()
}

/// A stored integer (revision, version) as `u64`; a negative one means the
/// row is corrupt.
pub(crate) fn to_u64(backend: &'static str, n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Unreadable {
        backend,
        what: what.to_string(),
        message: format!("negative value {n}"),
    })
}

/// The stored version of the row of `key`, checked to be a version a
/// record can have ([`Version::is_valid`](crate::model::Version::is_valid):
/// from 1 to [`Version::MAX`](crate::model::Version::MAX)); anything else
/// (0, negative, past the last version) means the row is corrupt, and is
/// refused naming it.
pub(crate) fn stored_version(
    backend: &'static str,
    key: &RecordKey,
    n: i64,
) -> Result<crate::model::Version, StoreError> {
    use crate::model::Version;
    match u64::try_from(n).map(Version) {
        Ok(v) if v.is_valid() => Ok(v),
        _ => Err(super::not_a_version(backend, key, n)),
    }
}

/// [`stored_version`] of a row whose key is still text: the key is parsed
/// only to name a bad row.
fn stored_version_of(
    backend: &'static str,
    key_text: &str,
    n: i64,
) -> Result<crate::model::Version, StoreError> {
    match u64::try_from(n).map(crate::model::Version) {
        Ok(v) if v.is_valid() => Ok(v),
        _ => stored_version(backend, &decode_key(backend, key_text)?, n),
    }
}

/// An audit query's bounds as a durable store keeps positions and
/// instants (`i64`): `None` when no entry can match (`from` past every
/// instant a row can hold); an `after` past every position selects
/// nothing, an `until` past every instant bounds nothing, and a `limit`
/// past `i64::MAX` is no limit, as the memory store answers them.
pub(crate) fn audit_bounds(query: &crate::model::AuditQuery) -> Option<AuditBounds> {
    let from = match query.from {
        Some(t) => Some(i64::try_from(t.0).ok()?),
        None => None,
    };
    Some(AuditBounds {
        after: i64::try_from(query.after.0).unwrap_or(i64::MAX),
        from,
        until: query.until.and_then(|t| i64::try_from(t.0).ok()),
        limit: i64::try_from(query.limit).unwrap_or(i64::MAX),
    })
}

/// See [`audit_bounds`].
pub(crate) struct AuditBounds {
    /// Entries after this position.
    pub(crate) after: i64,
    /// Entries at or after this instant.
    pub(crate) from: Option<i64>,
    /// Entries before this instant.
    pub(crate) until: Option<i64>,
    /// At most this many.
    pub(crate) limit: i64,
}

/// The stored head revision and feed floor, checked.
pub(crate) fn head(
    backend: &'static str,
    revision: i64,
    floor: i64,
) -> Result<(crate::model::Revision, crate::model::Revision), StoreError> {
    Ok((
        crate::model::Revision(to_u64(backend, revision, "the head revision")?),
        crate::model::Revision(to_u64(backend, floor, "the feed floor")?),
    ))
}

/// Whether the change feed, at head `revision` with everything after `floor`
/// kept, has batches after `after`; [`StoreError::FeedTruncated`] when it no
/// longer holds all of them.
pub(crate) fn batches_after(
    after: crate::model::Revision,
    (revision, floor): (crate::model::Revision, crate::model::Revision),
) -> Result<bool, StoreError> {
    if after >= revision {
        return Ok(false);
    }
    if after < floor {
        return Err(StoreError::FeedTruncated {
            requested: after,
            oldest: crate::model::Revision(floor.0 + 1),
        });
    }
    Ok(true)
}

/// What a commit answered, from a batch's stored revision and its changes'
/// versions in order.
pub(crate) fn committed(
    backend: &'static str,
    revision: i64,
    versions: Vec<i64>,
) -> Result<crate::store::Committed, StoreError> {
    Ok(crate::store::Committed {
        revision: crate::model::Revision(to_u64(backend, revision, "a revision")?),
        versions: versions
            .into_iter()
            .map(
                |v| match to_u64(backend, v, "a version").map(crate::model::Version)? {
                    v if v.is_valid() => Ok(v),
                    v => Err(StoreError::Unreadable {
                        backend,
                        what: format!("the versions of r{revision}"),
                        message: format!("{} is not a version", v.0),
                    }),
                },
            )
            .collect::<Result<_, _>>()?,
    })
}

/// Says that an unreadable record was found in the change feed.
pub(crate) fn in_feed(e: StoreError, revision: i64) -> StoreError {
    match e {
        StoreError::Unreadable {
            backend,
            what,
            message,
        } => StoreError::Unreadable {
            backend,
            what: format!("{what} in the change feed at r{revision}"),
            message,
        },
        other => other,
    }
}

/// Rows of live records decoded as one batch; from the second batch on,
/// [`decode_live_from`] decodes on worker threads.
const BATCH_ROWS: usize = 1_024;
/// The most threads [`decode_live_from`] decodes on.
const MAX_THREADS: usize = 4;

/// Live records decoded from rows, and those that could not be.
pub(crate) type Decoded = (
    Vec<(crate::model::Version, Record)>,
    Vec<crate::store::UnreadableRecord>,
);

/// Decodes live-record rows `(key, version, body)` in order, as
/// [`Store::load`](crate::store::Store::load) returns them (see
/// [`decode_live_from`]).
#[cfg(any(feature = "postgres", test))]
pub(crate) fn decode_live(
    backend: &'static str,
    ring: &Arc<KeyRing>,
    rows: Vec<(String, i64, String)>,
) -> Result<Decoded, StoreError> {
    decode_live_from(backend, ring, |sink| {
        for (key, version, body) in rows {
            sink.push(&key, version, body.as_bytes());
        }
        Ok(())
    })
}

/// Live-record rows as a query hands them out, one at a time: see
/// [`decode_live_from`].
pub(crate) struct RowSink<'s, 'env> {
    /// The batch being filled.
    batch: RowBatch,
    /// Batches handed to the workers, numbered in row order.
    sent: usize,
    workers: Option<Workers<'s>>,
    scope: &'s std::thread::Scope<'s, 'env>,
    decode: &'env (dyn Fn(&RowBatch) -> Result<Decoded, StoreError> + Sync),
}

/// Rows `(key, version, body)` in one text buffer: the key of row `i` is
/// `text[ends[i-1].1 .. ends[i].0]`, its body `text[ends[i].0 .. ends[i].1]`.
#[derive(Default)]
struct RowBatch {
    text: Vec<u8>,
    ends: Vec<(usize, usize, i64)>,
}

impl RowBatch {
    fn rows(&self) -> impl Iterator<Item = (&[u8], i64, &[u8])> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, body_end, version)| {
            let row = (&self.text[start..key_end], version, &self.text[key_end..body_end]);
            start = body_end;
            row
        })
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

/// A batch's number and what decoding it gave.
type DecodedBatch = (usize, Result<Decoded, StoreError>);

/// The decoding threads of a large load: full batches go out numbered,
/// emptied ones come back to be filled again.
struct Workers<'s> {
    full: std::sync::mpsc::SyncSender<(usize, RowBatch)>,
    empty: std::sync::mpsc::Receiver<RowBatch>,
    handles: Vec<std::thread::ScopedJoinHandle<'s, Vec<DecodedBatch>>>,
}

impl RowSink<'_, '_> {
    /// Takes the next row. The key and body are copied into a batch, which
    /// is decoded on another thread once full, while the caller reads on.
    pub(crate) fn push(&mut self, key: &str, version: i64, body: &[u8]) {
        self.batch.text.extend_from_slice(key.as_bytes());
        let key_end = self.batch.text.len();
        self.batch.text.extend_from_slice(body);
        self.batch.ends.push((key_end, self.batch.text.len(), version));
        if self.batch.ends.len() == BATCH_ROWS {
            self.send();
        }
    }

    fn send(&mut self) {
        let workers = self.workers.get_or_insert_with(|| {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS));
            let (full, batches) = std::sync::mpsc::sync_channel::<(usize, RowBatch)>(2 * threads);
            let (give_back, empty) = std::sync::mpsc::channel();
            let batches = Arc::new(std::sync::Mutex::new(batches));
            let handles = (0..threads)
                .map(|_| {
                    let (batches, give_back, decode) = (Arc::clone(&batches), give_back.clone(), self.decode);
                    self.scope.spawn(move || {
                        let mut done = Vec::new();
                        loop {
                            // A poisoned lock means another worker panicked:
                            // its panic is what the load reports.
                            let next = batches.lock().map(|rx| rx.recv());
                            let Ok(Ok((n, mut batch))) = next else { break };
                            done.push((n, decode(&batch)));
                            batch.clear();
                            // The sink may be gone already.
                            let _ = give_back.send(batch);
                        }
                        done
                    })
                })
                .collect();
            Workers { full, empty, handles }
        });
        let next = workers.empty.try_recv().unwrap_or_default();
        let batch = std::mem::replace(&mut self.batch, next);
        // Fails only when every worker is gone, which is a panic `finish` reports.
        let _ = workers.full.send((self.sent, batch));
        self.sent += 1;
    }

    /// Decodes what is left and gathers every batch's records in row order.
    fn finish(mut self) -> Result<Decoded, StoreError> {
        let Some(workers) = self.workers.take() else {
            return (self.decode)(&self.batch);
        };
        let last = (self.decode)(&self.batch);
        drop(workers.full);
        let mut parts: Vec<_> = workers
            .handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect();
        parts.sort_unstable_by_key(|(n, _)| *n);
        let (mut records, mut unreadable) = (Vec::new(), Vec::new());
        for (_, part) in parts.into_iter().chain([(self.sent, last)]) {
            let (r, u) = part?;
            if records.is_empty() {
                records.reserve(r.len() * (self.sent + 1));
            }
            records.extend(r);
            unreadable.extend(u);
        }
        Ok((records, unreadable))
    }
}

/// Decodes the live-record rows `read` pushes into its [`RowSink`], in
/// order, as [`Store::load`](crate::store::Store::load) returns them. A
/// body that cannot be read (corrupt, not text, or a secret no key of
/// the ring opens) is listed with its key instead; only a row whose key
/// or version itself is corrupt fails the whole load (the first such
/// row's error), and so does an error of `read` (nothing is returned
/// then). A large load (a cold start: mostly JSON and opening sealed
/// secrets) is decoded in batches on up to 4 threads, as many as the
/// machine has cores, while `read` reads on: rows are copied once, from
/// the query into a batch, and decoded from there without copies.
pub(crate) fn decode_live_from(
    backend: &'static str,
    ring: &Arc<KeyRing>,
    read: impl FnOnce(&mut RowSink<'_, '_>) -> Result<(), StoreError>,
) -> Result<Decoded, StoreError> {
    let decode = |batch: &RowBatch| -> Result<Decoded, StoreError> {
        // A ring of this batch's own: the codec's reference count is taken
        // for every row and every secret, and a count the threads shared
        // would bounce between their cores.
        let codec: Arc<dyn SecretCodec> = Arc::new(KeyRing::clone(ring));
        let mut records = Vec::with_capacity(batch.ends.len());
        let mut unreadable = Vec::new();
        let mut scratch = Vec::new();
        for (key_text, version, body) in batch.rows() {
            let key_text =
                std::str::from_utf8(key_text).map_err(|_| not_a_key(backend, "not UTF-8".into()))?;
            let version = stored_version_of(backend, key_text, version)?;
            match decode_live_row(backend, &codec, &mut scratch, key_text, body)? {
                Ok(record) => records.push((version, record)),
                Err((key, error, key_id)) => {
                    unreadable.push(crate::store::UnreadableRecord::new(key, version, key_id, error));
                }
            }
        }
        Ok((records, unreadable))
    };
    std::thread::scope(|scope| {
        let mut sink = RowSink {
            batch: RowBatch::default(),
            sent: 0,
            workers: None,
            scope,
            decode: &decode,
        };
        let read = read(&mut sink);
        let decoded = sink.finish();
        read?;
        decoded
    })
}

fn not_a_key(backend: &'static str, why: String) -> StoreError {
    StoreError::Unreadable {
        backend,
        what: "a record key".into(),
        message: format!("not a record key ({why})"),
    }
}

/// A live row's record, or its key and why it is unreadable (with the ID
/// of the key that did not open a secret, if that is why).
type LiveRow = Result<Record, (RecordKey, StoreError, Option<String>)>;

/// A live row's record checked against its key text; the outer error
/// (a corrupt key) fails the load, the inner one lists the record as
/// unreadable (with the ID of the key that did not open a secret, if
/// that is why).
fn decode_live_row(
    backend: &'static str,
    codec: &Arc<dyn SecretCodec>,
    scratch: &mut Vec<u8>,
    key_text: &str,
    body: &[u8],
) -> Result<LiveRow, StoreError> {
    let opened = match std::str::from_utf8(body) {
        Ok(text) => open_record(codec, text),
        Err(_) => Err((Unopened::NotText, None)),
    };
    match opened {
        Ok(record) => {
            // The stored key is the record's own key as `encode_key` writes
            // it: comparing the text spares parsing the key of every row.
            scratch.clear();
            if serde_json::to_writer(&mut *scratch, &record.key()).is_ok() && scratch == key_text.as_bytes() {
                return Ok(Ok(record));
            }
            let key = decode_key(backend, key_text)?;
            if record.key() == key {
                return Ok(Ok(record));
            }
            let message = format!("the row holds the record of {}", record.key());
            Ok(Err((key.clone(), unreadable(backend, &key, message), None)))
        }
        Err((why, key_id)) => {
            let key = decode_key(backend, key_text)?;
            Ok(Err((
                key.clone(),
                unreadable(backend, &key, why.message()),
                key_id,
            )))
        }
    }
}

fn unreadable(backend: &'static str, key: &RecordKey, message: String) -> StoreError {
    StoreError::Unreadable {
        backend,
        what: key.to_string(),
        message,
    }
}

/// Why a record's stored text did not give a record.
enum Unopened {
    /// A secret could not be opened.
    Seal(SealError),
    /// Not the JSON of a record (or a value in it is invalid).
    Json(serde_json::Error),
    /// Not UTF-8 text.
    NotText,
}

impl Unopened {
    /// What to say (never a stored value).
    fn message(&self) -> String {
        match self {
            Unopened::Seal(seal) => seal.to_string(),
            Unopened::Json(e) => format!("not a valid record ({})", e.classify_text()),
            Unopened::NotText => "not a valid record (not UTF-8 text)".into(),
        }
    }
}

/// A record from its stored text, its secrets opened with `codec` (a
/// [`KeyRing`]); a failure also names the ID of the key whose secret could
/// not be opened, when that is why.
fn open_record(codec: &Arc<dyn SecretCodec>, text: &str) -> Result<Record, (Unopened, Option<String>)> {
    let (result, codec_error) =
        with_secret_codec_reporting(Arc::clone(codec), || serde_json::from_str::<Record>(text));
    result.map_err(|e| match seal_error(codec_error) {
        Some(seal) => {
            let key_id = seal.key_id().map(str::to_owned);
            (Unopened::Seal(seal), key_id)
        }
        None => (Unopened::Json(e), None),
    })
}

/// Decodes change-feed rows `(revision, key, version, body)`. A body that
/// cannot be read is a [`Changed::Unreadable`](crate::store::Changed::Unreadable)
/// change; a corrupt key, version or revision fails the whole page.
pub(crate) fn decode_changes(
    backend: &'static str,
    ring: &Arc<KeyRing>,
    rows: Vec<(i64, String, i64, Option<String>)>,
) -> Result<Vec<crate::store::Change>, StoreError> {
    use crate::store::{Change, Changed, UnreadableRecord};
    let mut out = Vec::with_capacity(rows.len());
    for (rev, key_text, version, body) in rows {
        let key = decode_key(backend, &key_text)?;
        let version = stored_version(backend, &key, version).map_err(|e| in_feed(e, rev))?;
        let change = match body {
            Some(body) => match decode_or_why(backend, ring, &key, &body) {
                Ok(record) => Changed::Put(record),
                Err((error, key_id)) => Changed::Unreadable(Box::new(UnreadableRecord::new(
                    key.clone(),
                    version,
                    key_id,
                    in_feed(error, rev),
                ))),
            },
            None => Changed::Deleted,
        };
        out.push(Change {
            revision: crate::model::Revision(to_u64(backend, rev, "a revision")?),
            key,
            version,
            change,
        });
    }
    Ok(out)
}

/// A record from its stored text, checked to be the record of `key`.
pub(crate) fn decode_record(
    backend: &'static str,
    ring: &Arc<KeyRing>,
    key: &RecordKey,
    text: &str,
) -> Result<Record, StoreError> {
    decode_or_why(backend, ring, key, text).map_err(|(e, _)| e)
}

/// Like [`decode_record`]; a failure also names the ID of the key whose
/// secret could not be opened, when that is why.
fn decode_or_why(
    backend: &'static str,
    ring: &Arc<KeyRing>,
    key: &RecordKey,
    text: &str,
) -> Result<Record, (StoreError, Option<String>)> {
    let record = open_record(&(ring.clone() as Arc<dyn SecretCodec>), text)
        .map_err(|(why, key_id)| (unreadable(backend, key, why.message()), key_id))?;
    if &record.key() != key {
        let message = format!("the row holds the record of {}", record.key());
        return Err((unreadable(backend, key, message), None));
    }
    Ok(record)
}

trait ClassifyText {
    fn classify_text(&self) -> String;
}

impl ClassifyText for serde_json::Error {
    /// A serde error without its message, which may quote stored values.
    fn classify_text(&self) -> String {
        let kind = match self.classify() {
            serde_json::error::Category::Io => "i/o error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected content",
            serde_json::error::Category::Eof => "truncated",
        };
        format!("{kind} at line {} column {}", self.line(), self.column())
    }
}

/// An audit entry as stored (its position is the row's): JSON of the
/// instant, the actor and the action (record keys, versions, fields read;
/// an entry never holds a value).
#[derive(serde::Serialize)]
struct StoredAudit<'a> {
    at: Timestamp,
    actor: &'a ActorId,
    action: &'a AuditAction,
}

/// An audit entry read back: the current form, or a write's entry as
/// schema version 4 stored it (with its revision and changes at the top).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum StoredAuditOwned {
    Current {
        at: Timestamp,
        actor: ActorId,
        action: AuditAction,
    },
    WriteV4 {
        revision: Revision,
        at: Timestamp,
        actor: ActorId,
        changes: Vec<AuditChange>,
    },
}

/// The stored form of an entry (see [`decode_audit`]).
pub(crate) fn encode_audit(
    backend: &'static str,
    at: Timestamp,
    actor: &ActorId,
    action: &AuditAction,
) -> Result<String, StoreError> {
    serde_json::to_string(&StoredAudit { at, actor, action }).map_err(|e| StoreError::InvalidBatch {
        reason: format!("{backend}: cannot encode an audit entry: {e}"),
    })
}

/// An audit entry read back from its position and stored form.
pub(crate) fn decode_audit(
    backend: &'static str,
    position: i64,
    body: &str,
) -> Result<AuditEntry, StoreError> {
    let position = AuditPosition(to_u64(backend, position, "an audit position")?);
    let stored: StoredAuditOwned = serde_json::from_str(body).map_err(|e| StoreError::Unreadable {
        backend,
        what: format!("{position}"),
        message: e.classify_text(),
    })?;
    Ok(match stored {
        StoredAuditOwned::Current { at, actor, action } => AuditEntry {
            position,
            at,
            actor,
            action,
        },
        StoredAuditOwned::WriteV4 {
            revision,
            at,
            actor,
            changes,
        } => AuditEntry {
            position,
            at,
            actor,
            action: AuditAction::Write { revision, changes },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::seal::{KEY_LEN, SealKey};

    fn any_stored() -> impl proptest::strategy::Strategy<Value = i64> {
        use proptest::prelude::*;
        let last = i64::try_from(crate::model::Version::MAX.0).unwrap();
        prop_oneof![
            any::<i64>(),
            -2i64..=2,
            (last - 2)..=(last + 2),
            Just(i64::MIN),
            Just(i64::MAX),
        ]
    }

    proptest::proptest! {
        /// A stored version reads back as the same version exactly when it
        /// is one a record can have (1 to `Version::MAX`); any other
        /// number is refused naming the row and the number, from the
        /// key's text as from the key, never wrapped.
        #[test]
        fn a_stored_version_is_read_back_exactly_or_refused_naming_its_row(n in any_stored()) {
            use crate::model::Version;
            let key = RecordKey::Mappings("acme".parse().unwrap(), "orders".parse().unwrap());
            let text = encode_key("test", &key).unwrap();
            let valid = n >= 1 && u64::try_from(n).is_ok_and(|v| v <= Version::MAX.0);
            for got in [stored_version("test", &key, n), stored_version_of("test", &text, n)] {
                match got {
                    Ok(v) => {
                        proptest::prop_assert!(valid, "{n} was accepted");
                        proptest::prop_assert_eq!(i64::try_from(v.0).ok(), Some(n));
                    }
                    Err(StoreError::Unreadable { what, message, .. }) => {
                        proptest::prop_assert!(!valid, "{n} was refused");
                        proptest::prop_assert_eq!(what, key.to_string());
                        proptest::prop_assert!(message.contains(&n.to_string()), "{message}");
                    }
                    Err(other) => proptest::prop_assert!(false, "{other}"),
                }
            }
        }

        /// A key's next version is the previous plus one below the last
        /// version, and a typed refusal naming the key from it on.
        #[test]
        fn the_next_version_is_one_more_until_the_last(v in proptest::prelude::any::<u64>(), near in 0u64..4) {
            use crate::model::Version;
            let key = RecordKey::Mappings("acme".parse().unwrap(), "orders".parse().unwrap());
            for previous in [Version(v), Version(Version::MAX.0 - near), Version(Version::MAX.0 + near)] {
                match crate::store::next_version(&key, Some(previous)) {
                    Ok(next) => {
                        proptest::prop_assert!(previous < Version::MAX);
                        proptest::prop_assert_eq!(next.0, previous.0 + 1);
                        proptest::prop_assert!(next.is_valid());
                    }
                    Err(StoreError::LastVersion { key: k, version }) => {
                        proptest::prop_assert!(previous >= Version::MAX);
                        proptest::prop_assert_eq!((k, version), (key.clone(), previous));
                    }
                    Err(other) => proptest::prop_assert!(false, "{other}"),
                }
            }
        }
    }

    /// A change-feed row at a version that is no version fails the page,
    /// naming the key and the revision.
    #[test]
    fn a_feed_row_at_no_version_is_refused_naming_it() {
        let ring = std::sync::Arc::new(KeyRing::new(
            SealKey::from_bytes("k1", &[7; KEY_LEN]).expect("valid key"),
        ));
        let key = RecordKey::Mappings("acme".parse().unwrap(), "orders".parse().unwrap());
        let text = encode_key("test", &key).unwrap();
        for bad in [0, -5, 1 << 56] {
            let err = decode_changes("test", &ring, vec![(7, text.clone(), bad, None)]).unwrap_err();
            assert!(
                matches!(&err, StoreError::Unreadable { what, message, .. }
                    if *what == format!("{key} in the change feed at r7") && message.contains(&bad.to_string())),
                "{err}"
            );
        }
        assert_eq!(
            decode_changes("test", &ring, vec![(7, text, 1 << 55, None)]).unwrap()[0].version,
            crate::model::Version(1 << 55)
        );
    }

    /// Enough rows for several threads: the records come back in row order,
    /// and rows that cannot be read are listed (in row order) instead of
    /// failing the load; a corrupt key fails it.
    #[test]
    fn a_large_load_decodes_in_order_on_several_threads() {
        use crate::model::{Record, Version};
        let ring = std::sync::Arc::new(KeyRing::new(
            SealKey::from_bytes("k1", &[7; KEY_LEN]).expect("valid key"),
        ));
        let marker = |i: usize| {
            Record::ReferenceFence(std::sync::Arc::new(crate::model::ReferenceFence {
                project: format!("p{i}").parse().expect("project"),
                stripe: crate::model::NameStripe::of(&"n".parse().expect("name")),
            }))
        };
        let row = |i: usize| {
            let record = marker(i);
            (
                encode_key("test", &record.key()).expect("key"),
                i as i64 + 1,
                encode_record("test", &ring, &record).expect("record"),
            )
        };
        let n = 3 * BATCH_ROWS + 5;
        let (decoded, unreadable) = decode_live("test", &ring, (0..n).map(row).collect()).expect("decode");
        assert_eq!(decoded.len(), n);
        assert!(unreadable.is_empty());
        for (i, (version, record)) in decoded.iter().enumerate() {
            assert_eq!((*version, record.key()), (Version(i as u64 + 1), marker(i).key()));
        }
        let mut bad: Vec<_> = (0..n).map(row).collect();
        // The end of one batch, the start of the next one, and a row of
        // the last batch (decoded by the reading thread).
        let (first, second, third) = (BATCH_ROWS - 1, BATCH_ROWS, n - 2);
        for i in [third, second, first] {
            bad[i].2 = "{".into();
        }
        let (decoded, unreadable) = decode_live("test", &ring, bad.clone()).expect("a partial load");
        assert_eq!(decoded.len(), n - 3);
        let keys: Vec<_> = unreadable.iter().map(|u| (u.key.clone(), u.version)).collect();
        assert_eq!(
            keys,
            vec![
                (marker(first).key(), Version(first as u64 + 1)),
                (marker(second).key(), Version(second as u64 + 1)),
                (marker(third).key(), Version(third as u64 + 1)),
            ]
        );
        assert!(matches!(
            unreadable[0].error,
            crate::store::StoreError::Unreadable { .. }
        ));
        bad[first].0 = "not a key".into();
        assert!(matches!(
            decode_live("test", &ring, bad),
            Err(crate::store::StoreError::Unreadable { .. })
        ));
    }
}
