//! The conformance suite every [`Store`] must pass, yours included (feature
//! `test-kit`).
//!
//! Each check is a public function that takes a store, exercises one part of
//! the contract in the [`store`](crate::store) module documentation and panics
//! with a message naming what broke, like an `assert!`. Call them from your
//! own `#[test]`s:
//!
//! ```
//! use connective::store::MemoryStore;
//! use connective::test_kit;
//!
//! let store = MemoryStore::new();
//! test_kit::run_all(&store);
//! test_kit::reopen_keeps_everything(MemoryStore::new, false);
//! ```
//!
//! The checks tolerate records already in the store (each uses a project of
//! its own, and revisions relative to where it started) but expect nobody else
//! to write to the store while one runs.
//!
//! [`run_all`] runs every single-store check; [`reopen_keeps_everything`] takes
//! a closure that opens the same durable store again; [`concurrent_writers`]
//! and [`follower_sees_every_revision`] take several handles on one shared
//! store (e.g. two `PostgresStore`s on one database) to check what replicas
//! rely on. [`the_last_version_is_final`] and
//! [`stored_versions_out_of_range_are_refused`] take a closure that sets a
//! row's stored version by the backend's own means, to check the versions'
//! limits without writing 2^56 times.
//!
//! With the `async` feature, [`run_all_async`] runs the same checks through
//! an [`AsyncStore`](crate::store::AsyncStore)'s async calls, and
//! [`concurrent_async_writers`] commits from many tasks at once.
//!
//! With the `postgres` feature, [`postgres`] finds or starts a PostgreSQL
//! server and gives each test a database of its own.
//!
//! # What is stable
//!
//! This module is public so that a host can hold its own [`Store`] to the
//! contract, and it follows the crate's semantic versioning like any other
//! public API, as follows:
//!
//! - **The checks** ([`run_all`] and each check it runs,
//!   [`reopen_keeps_everything`], [`concurrent_writers`],
//!   [`racing_creators`], [`follower_sees_every_revision`],
//!   [`the_last_version_is_final`],
//!   [`stored_versions_out_of_range_are_refused`]) keep their
//!   names and signatures. What they check may grow within a minor release:
//!   a check asks more of a store only where the contract in the
//!   [`store`](crate::store) module documentation already says so (a store
//!   that keeps the documented contract keeps passing); a check that asks
//!   for something the contract does not say yet is a breaking change.
//! - **The sample records** ([`sample_connection`], [`connection_with`],
//!   [`sample_mappings`], [`sample_oauth_app`], the OAuth runtime's samples,
//!   [`unique_project`], [`unique_secret`]) and the comparison helpers
//!   ([`record_json`], [`same_record`], [`marker_of`]) keep their
//!   signatures; the field values of a sample may change (a test should not
//!   depend on them beyond what the function's documentation promises).
//! - **[`postgres`] is test support**, not part of the library's working
//!   surface: it starts throwaway servers for tests (this crate's, and a
//!   host's that wants the same), and its behaviour (where it looks for
//!   binaries, how it cleans up, what it prints when no server can be had)
//!   may change in any release. Do not use it outside tests.

#[cfg(feature = "async")]
mod async_kit;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "external-secrets")]
pub mod secret_store;

#[cfg(feature = "async")]
pub use async_kit::{AsyncAsBlocking, concurrent_async_writers, run_all_async};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use crate::model::{
    AppOwner, Connection, ConnectionId, ConnectionSpec, Mappings, OAuthApp, Param, PlaintextCodec, ProjectId,
    Record, RecordKey, Revision, SecretValue, Version, with_secret_codec,
};
use crate::store::{Batch, Change, CommitToken, Committed, Expect, Op, Store, StoreError, Write};

// ---------------------------------------------------------------------------
// Sample records
// ---------------------------------------------------------------------------

/// A project ID no other check uses: `prefix` plus random hex.
pub fn unique_project(prefix: &str) -> ProjectId {
    let id = ConnectionId::random().to_string().replace('-', "");
    let text = format!("{prefix}-{}", &id[..16]);
    match text.parse() {
        Ok(p) => p,
        Err(e) => {
            panic!("test_kit::unique_project: {text:?} is not a project id ({e}); use a prefix of letters")
        }
    }
}

/// A unique text to use as a secret value, easy to search for in raw bytes.
pub fn unique_secret(label: &str) -> String {
    format!("{label}-{}", ConnectionId::random().to_string().replace('-', ""))
}

/// A project-scope connection named `name` with a plain `ServiceURL`, a secret
/// `ApiKey` whose default is `secret`, and a plain `Marker` holding `marker`
/// (the concurrency checks use it to tell writes apart).
pub fn connection_with(
    project: &ProjectId,
    id: ConnectionId,
    name: &str,
    secret: &str,
    marker: &str,
) -> Record {
    let spec = ConnectionSpec::project(project, name)
        .param(
            Param::plain("ServiceURL")
                .default("https://api.example.com")
                .env("production", "https://example.com"),
        )
        .param(Param::secret("ApiKey").default(secret))
        .param(Param::plain("Marker").optional().default(marker))
        .build();
    match spec {
        Ok(spec) => Record::Connection(Arc::new(Connection::new(id, spec, None))),
        Err(e) => panic!("test_kit: cannot build a sample connection named {name:?}: {e}"),
    }
}

/// A new sample connection (random ID) with one secret, see [`connection_with`].
pub fn sample_connection(project: &ProjectId, name: &str, secret: &str) -> Record {
    connection_with(project, ConnectionId::random(), name, secret, "")
}

/// A connection whose secret parameters hold every given value in some layer:
/// the first three as `Password`'s default, production and development values,
/// the rest as `Token` values per customer or per customer and environment.
pub fn secret_rich_connection(project: &ProjectId, name: &str, secrets: &[&str]) -> Record {
    let mut param = Param::secret("Password");
    let mut token = Param::secret("Token").optional();
    for (i, s) in secrets.iter().enumerate() {
        let customer = format!("customer{i}");
        match i {
            0 => param = param.default(*s),
            1 => param = param.env("production", *s),
            2 => param = param.env("development", *s),
            _ if i % 2 == 0 => token = token.customer(customer.as_str(), *s),
            _ => token = token.customer_env(customer.as_str(), "production", *s),
        }
    }
    let spec = ConnectionSpec::project(project, name)
        .param(Param::plain("HostName").default("db.internal"))
        .param(param)
        .param(token)
        .build();
    match spec {
        Ok(spec) => Record::Connection(Arc::new(Connection::new(ConnectionId::random(), spec, None))),
        Err(e) => panic!("test_kit: cannot build a sample connection named {name:?}: {e}"),
    }
}

/// Mappings of `integration` using the connection named `connection`.
pub fn sample_mappings(project: &ProjectId, integration: &str, connection: &str) -> Record {
    match Mappings::of(project, integration)
        .by_name(connection, [("ServiceURL", "SERVICE_URL"), ("ApiKey", "API_KEY")])
        .build()
    {
        Ok(m) => Record::Mappings(Arc::new(m)),
        Err(e) => panic!("test_kit: cannot build sample mappings of {integration:?}: {e}"),
    }
}

/// The project's shared OAuth application with client secret `secret`.
pub fn sample_oauth_app(project: &ProjectId, secret: &str) -> Record {
    Record::OAuthApp(Arc::new(OAuthApp::new(
        project.clone(),
        AppOwner::Project,
        format!("client-{project}"),
        SecretValue::new(secret),
        "https://idp.example.com/oauth2/token".into(),
        Vec::new(),
    )))
}

/// The credential key the OAuth samples use: connection `00000000-0000-4000-8000-000000000001`
/// of `project` in production for customer `globex`.
pub fn sample_credential_key(project: &ProjectId) -> crate::model::CredentialKey {
    crate::model::CredentialKey::new(
        project.clone(),
        ConnectionId::parse("00000000-0000-4000-8000-000000000001")
            .unwrap_or_else(|e| panic!("test_kit: bad sample connection ID: {e}")),
        crate::model::Environment::production(),
        Some(
            "globex"
                .parse()
                .unwrap_or_else(|e| panic!("test_kit: bad sample customer: {e}")),
        ),
    )
}

/// An OAuth token set of [`sample_credential_key`] with these tokens (secrets)
/// and a refresh lease.
pub fn sample_token_set(project: &ProjectId, access: &str, refresh: Option<&str>) -> Record {
    use crate::model::{RefreshLease, Timestamp, TokenSet};
    match TokenSet::new(
        sample_credential_key(project),
        SecretValue::new(access),
        refresh.map(SecretValue::new),
        "Bearer",
        vec!["api:read".into(), "offline_access".into()],
        Timestamp(1_700_000_000_000),
        Some(Timestamp(1_700_000_003_600)),
    ) {
        Ok(set) => Record::TokenSet(Arc::new(set.with_lease(Some(RefreshLease {
            holder: "replica-a".into(),
            until: Timestamp(1_700_000_000_060),
        })))),
        Err(e) => panic!("test_kit: bad sample token set: {e}"),
    }
}

/// A pending OAuth authorization of [`sample_credential_key`] whose PKCE
/// verifier (a secret, 43 to 128 characters) is `verifier`.
pub fn sample_pending_authorization(project: &ProjectId, verifier: &str) -> Record {
    use crate::model::{PendingAuthorization, Timestamp};
    match PendingAuthorization::new(
        "k1tStateAbcdefghijklmnop".into(),
        sample_credential_key(project),
        "https://host.example.com/oauth/callback".into(),
        vec!["api:read".into()],
        SecretValue::new(verifier),
        Timestamp(1_700_000_000_000),
        Timestamp(1_700_000_600_000),
    ) {
        Ok(p) => Record::PendingAuthorization(Arc::new(p)),
        Err(e) => panic!("test_kit: bad sample pending authorization: {e}"),
    }
}

/// A failing connection status of [`sample_credential_key`] with a test
/// result.
pub fn sample_status(project: &ProjectId) -> Record {
    use crate::model::{ConnectionStatus, Health, TestResult, Timestamp};
    Record::Status(Arc::new(
        ConnectionStatus::new(
            sample_credential_key(project),
            Health::Failing {
                since: Timestamp(1_700_000_000_000),
                last_error: "HTTP 503".into(),
                attempts: 2,
                next_retry: Timestamp(1_700_000_000_800),
            },
            Timestamp(1_700_000_000_000),
        )
        .with_test(Some(TestResult {
            ok: false,
            latency_ms: 12,
            message: "HTTP 503".into(),
            at: Timestamp(1_700_000_000_000),
        })),
    ))
}

/// A connection type of `project` with fields of every data type, a
/// pattern, a range and URL schemes.
pub fn sample_connection_type(project: &ProjectId) -> Record {
    use crate::model::{ConnectionType, DataType, EnteredBy, Field, ProjectType, Visibility};
    let built = ConnectionType::builder("kit-type")
        .label("Kit type ✓")
        .describe("every data type")
        .auth(crate::model::AuthScheme::ApiKey)
        .field(
            Field::string("Name")
                .label("Name")
                .pattern("[a-z]+")
                .example("acme"),
        )
        .field(Field::secret("ApiKey").label("API key"))
        .field(
            Field::url("Endpoint")
                .schemes(["https", "wss"])
                .default("https://api.example.com"),
        )
        .field(Field::integer("Port").range(1, 65535).default("443"))
        .field(Field::boolean("Verbose").optional().default("false"))
        .field(Field::of_type("Region", DataType::picklist(["eu", "us"])).visibility(Visibility::Customer))
        .field(
            Field::text("Notes")
                .optional()
                .per_customer(EnteredBy::Customer)
                .visibility(Visibility::Customer),
        )
        .field(
            Field::string("TenantId")
                .optional()
                .visibility(Visibility::Programmatic),
        )
        .build();
    match built {
        Ok(t) => Record::ConnectionType(Arc::new(ProjectType::new(project.clone(), t))),
        Err(e) => panic!("test_kit: bad sample connection type: {e}"),
    }
}

/// A template of [`sample_connection_type`] whose secret `ApiKey` is `secret`
/// (hidden), with a plain field overridable per environment.
pub fn sample_template(project: &ProjectId, secret: &str) -> Record {
    use crate::model::{ConnectionTemplate, TemplateField};
    match ConnectionTemplate::builder(project, "kit-template", "kit-type")
        .label("Kit template")
        .field(TemplateField::secret("ApiKey").default(secret).hidden())
        .field(
            TemplateField::plain("Endpoint")
                .default("https://api.example.com")
                .env("production", "https://prod.example.com")
                .overridable(),
        )
        .build()
    {
        Ok(t) => Record::Template(Arc::new(t)),
        Err(e) => panic!("test_kit: bad sample template: {e}"),
    }
}

/// The record's full content as JSON, secrets in plaintext: what equality of
/// records means here. Never write it anywhere.
pub fn record_json(record: &Record) -> String {
    match with_secret_codec(Arc::new(PlaintextCodec), || serde_json::to_string(record)) {
        Ok(json) => json,
        Err(e) => panic!("test_kit: cannot serialize {}: {e}", record.key()),
    }
}

/// Whether two records have the same content, secrets included.
pub fn same_record(a: &Record, b: &Record) -> bool {
    a.key() == b.key() && record_json(a) == record_json(b)
}

#[track_caller]
fn assert_same(what: &str, got: &Record, want: &Record) {
    assert!(
        same_record(got, want),
        "{what}: the store returned different content for {}",
        want.key()
    );
}

/// The sample connection's `Marker` value.
pub fn marker_of(record: &Record) -> Option<String> {
    let Record::Connection(c) = record else {
        return None;
    };
    match c.spec().param("Marker")?.values() {
        crate::model::ParamValues::Plain(l) => l.get(&crate::model::Layer::Default).map(str::to_owned),
        crate::model::ParamValues::Secret(_) => None,
    }
}

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

#[track_caller]
fn commit_ok(store: &dyn Store, batch: &Batch, what: &str) -> Committed {
    match store.commit(batch) {
        Ok(c) => c,
        Err(e) => panic!("{} store: {what}: commit failed: {e}", store.backend()),
    }
}

#[track_caller]
fn get_ok(store: &dyn Store, key: &RecordKey) -> Option<(Version, Record)> {
    match store.get(key) {
        Ok(r) => r,
        Err(e) => panic!("{} store: get {key} failed: {e}", store.backend()),
    }
}

#[track_caller]
fn revision_ok(store: &dyn Store) -> Revision {
    match store.revision() {
        Ok(r) => r,
        Err(e) => panic!("{} store: revision failed: {e}", store.backend()),
    }
}

#[track_caller]
fn changes_ok(store: &dyn Store, after: Revision, limit: usize) -> Vec<Change> {
    match store.changes_since(after, limit) {
        Ok(c) => c,
        Err(e) => panic!(
            "{} store: changes_since({after}, {limit}) failed: {e}",
            store.backend()
        ),
    }
}

fn batch(writes: Vec<Write>) -> Batch {
    Batch {
        writes,
        token: None,
        audit: None,
    }
}

fn put(record: &Record, expect: Expect) -> Write {
    Write::put(record.clone(), expect)
}

#[track_caller]
fn expect_conflict(
    store: &dyn Store,
    b: &Batch,
    key: &RecordKey,
    expected: Expect,
    found: Option<Version>,
    what: &str,
) -> StoreError {
    match store.commit(b) {
        Err(e @ StoreError::Conflict { .. }) => {
            let StoreError::Conflict {
                key: k,
                expected: x,
                found: f,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(k, key, "{what}: the conflict names the wrong key");
            assert_eq!(*x, expected, "{what}: the conflict reports the wrong expectation");
            assert_eq!(*f, found, "{what}: the conflict reports the wrong found version");
            e
        }
        Err(e) => panic!(
            "{} store: {what}: expected a conflict on {key}, got error {e}",
            store.backend()
        ),
        Ok(c) => panic!(
            "{} store: {what}: expected a conflict on {key}, but it committed {}",
            store.backend(),
            c.revision
        ),
    }
}

/// A comparable view of a change: revision, key, version, content.
fn view(c: &Change) -> (Revision, RecordKey, Version, Option<String>) {
    (c.revision, c.key.clone(), c.version, c.record().map(record_json))
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

/// Runs every single-store check, in order, on `store`.
pub fn run_all(store: &dyn Store) {
    versions_and_conflicts(store);
    batches_are_atomic(store);
    invalid_batches_are_rejected(store);
    delete_and_recreate(store);
    records_round_trip(store);
    snapshot_matches(store);
    change_feed_order_and_limits(store);
    wait_for_change_wakes(store);
    commits_are_found_by_token(store);
    audited_batches_leave_one_entry(store);
    concurrent_writers(&[store], 4, 25);
    racing_creators(&[store], 4);
    follower_sees_every_revision(&[store], store, 3, 20);
}

#[track_caller]
fn find_ok(store: &dyn Store, token: CommitToken, after: Revision) -> Option<Committed> {
    match store.find_commit(token, after) {
        Ok(c) => c,
        Err(e) => panic!(
            "{} store: find_commit({token}, {after}) failed: {e}",
            store.backend()
        ),
    }
}

/// For a store that keeps an audit trail ([`Store::keeps_audit`]): a
/// committed batch with an audit note leaves exactly one entry, with each
/// key's operation and versions before and after, selected by record,
/// actor, time and revision; a batch that conflicted, or carried no note,
/// leaves none; no entry holds a value. Nothing is checked on a store that
/// keeps no trail.
pub fn audited_batches_leave_one_entry(store: &dyn Store) {
    if !store.keeps_audit() {
        return;
    }
    let p = unique_project("kit-audit");
    let secret = unique_secret("audit");
    let actor: crate::model::ActorId = format!("kit:{}", p.as_str()).parse().expect("an actor");
    let note = crate::model::AuditNote {
        actor: actor.clone(),
        at: crate::model::Timestamp(1_000),
    };
    let mine = || crate::model::AuditQuery::all().by(actor.clone());
    let entries = |q: &crate::model::AuditQuery| match store.audit(q) {
        Ok(e) => e,
        Err(e) => panic!("{} store: audit failed: {e}", store.backend()),
    };
    let record = sample_connection(&p, "svc", &secret);
    let created = commit_ok(
        store,
        &batch(vec![put(&record, Expect::Absent)]).with_audit(note.clone()),
        "an audited batch",
    );
    // Past the last instant a store keeps: refused, nothing written.
    let late = crate::model::AuditNote {
        actor: actor.clone(),
        at: crate::model::Timestamp(u64::MAX),
    };
    let before = revision_ok(store);
    let other = sample_connection(&p, "late", &secret);
    match store.commit(&batch(vec![put(&other, Expect::Absent)]).with_audit(late)) {
        Err(StoreError::InvalidBatch { .. }) => {}
        other => panic!(
            "{} store: an audit note past the last instant: expected StoreError::InvalidBatch, got {:?}",
            store.backend(),
            other.map(|c| c.revision)
        ),
    }
    assert_eq!(revision_ok(store), before, "a refused batch took a revision");
    assert!(get_ok(store, &other.key()).is_none(), "a refused batch wrote");
    // Refused: no entry. Unaudited: no entry.
    let refused = store.commit(&batch(vec![put(&record, Expect::Absent)]).with_audit(note.clone()));
    assert!(
        matches!(refused, Err(StoreError::Conflict { .. })),
        "{} store: a conflicting batch is refused",
        store.backend()
    );
    commit_ok(
        store,
        &batch(vec![put(&sample_mappings(&p, "orders", "svc"), Expect::Absent)]),
        "an unaudited batch",
    );
    let updated = commit_ok(
        store,
        &batch(vec![put(&record, Expect::Version(created.versions[0]))]).with_audit(note.clone()),
        "an audited update",
    );
    let got = entries(&mine());
    assert_eq!(
        got.iter().map(|e| e.revision()).collect::<Vec<_>>(),
        vec![Some(created.revision), Some(updated.revision)],
        "{} store: one entry per audited committed batch, oldest first",
        store.backend()
    );
    let change = &got[1].changes()[0];
    assert_eq!(
        (change.key.clone(), change.operation, change.before, change.after),
        (
            record.key(),
            crate::model::AuditOperation::Updated,
            Some(created.versions[0]),
            updated.versions[0]
        ),
        "{} store: an entry names the key, the operation and the versions",
        store.backend()
    );
    assert_eq!(
        got[0].changes()[0].operation,
        crate::model::AuditOperation::Created
    );
    assert!(got[0].position < got[1].position);
    assert_eq!(got[0].at, note.at);
    assert_eq!(entries(&mine().of_record(record.key())).len(), 2);
    assert_eq!(entries(&mine().after(got[0].position)).len(), 1);
    assert_eq!(entries(&mine().limit(1)).len(), 1);
    let t = |n| crate::model::Timestamp(n);
    assert_eq!(entries(&mine().between(t(1_000), t(1_001))).len(), 2);
    assert!(entries(&mine().between(t(0), t(1_000))).is_empty());
    // Bounds at the ends of their types select as they say: nothing after
    // the last position or from the last instant, everything before it,
    // no limit; never an error.
    let last = crate::model::AuditPosition(u64::MAX);
    assert!(entries(&mine().after(last)).is_empty(), "after the last position");
    assert!(
        entries(&mine().between(t(u64::MAX), t(u64::MAX))).is_empty(),
        "from the last instant"
    );
    assert_eq!(
        entries(&mine().between(t(0), t(u64::MAX))).len(),
        2,
        "until the last instant"
    );
    assert_eq!(entries(&mine().limit(usize::MAX)).len(), 2, "without limit");
    assert!(entries(&mine().limit(0)).is_empty(), "a limit of 0");
    let text = format!("{got:?}");
    assert!(
        !text.contains(&secret),
        "{} store: an audit entry holds a value",
        store.backend()
    );
    appended_reads_follow_in_order(store, &p, &actor, got[1].position);
}

/// Reads appended to the trail ([`Store::append_reads`]) come after every
/// entry before them, in the order given, are selected by kind and by the
/// records they read, and read back as they were appended.
fn appended_reads_follow_in_order(
    store: &dyn Store,
    p: &ProjectId,
    actor: &crate::model::ActorId,
    last_write: crate::model::AuditPosition,
) {
    use crate::model::{AuditQuery, ReadField, ReadNote, SecretRead};
    let read = |n: u64| ReadNote {
        actor: actor.clone(),
        at: crate::model::Timestamp(2_000 + n),
        read: SecretRead::Resolution {
            project: p.clone(),
            integration: "orders".parse().expect("an integration"),
            environment: "production".parse().expect("an environment"),
            customer: None,
            revision: Revision(n),
            fields: vec![ReadField {
                connection_id: crate::model::ConnectionId::random(),
                connection: "svc".parse().expect("a name"),
                scope: crate::model::Scope::Project,
                param: "ApiKey".parse().expect("a parameter"),
            }],
        },
    };
    // A read past the last instant a store keeps is refused, with the
    // reads given with it: none is appended.
    let mut late = read(3);
    late.at = crate::model::Timestamp(u64::MAX);
    match store.append_reads(&[read(0), late]) {
        Err(StoreError::InvalidBatch { .. }) => {}
        other => panic!(
            "{} store: a read past the last instant: expected StoreError::InvalidBatch, got {other:?}",
            store.backend()
        ),
    }
    let reads = [read(1), read(2)];
    if let Err(e) = store.append_reads(&reads) {
        panic!("{} store: append_reads failed: {e}", store.backend());
    }
    let entries = |q: &AuditQuery| match store.audit(q) {
        Ok(e) => e,
        Err(e) => panic!("{} store: audit failed: {e}", store.backend()),
    };
    let got = entries(&AuditQuery::all().by(actor.clone()).reads());
    assert_eq!(
        got.iter()
            .map(|e| (e.actor.clone(), e.at, e.secret_read().cloned()))
            .collect::<Vec<_>>(),
        reads
            .iter()
            .map(|r| (r.actor.clone(), r.at, Some(r.read.clone())))
            .collect::<Vec<_>>(),
        "{} store: reads read back as appended, in order",
        store.backend()
    );
    assert!(
        got[0].position > last_write && got[1].position > got[0].position,
        "{} store: appended entries come after every entry before them",
        store.backend()
    );
    let svc = crate::model::RecordKey::Connection(
        p.clone(),
        crate::model::Scope::Project,
        "svc".parse().expect("a name"),
    );
    let of_svc = entries(&AuditQuery::all().by(actor.clone()).of_record(svc));
    assert_eq!(
        of_svc.len(),
        4,
        "{} store: writes and reads of one record",
        store.backend()
    );
    assert_eq!(entries(&AuditQuery::all().by(actor.clone()).writes()).len(), 2);
    assert!(store.append_reads(&[]).is_ok());
}

/// A batch committed with a token is found by it, among the batches after
/// any earlier revision, with the revision and versions its commit answered;
/// a batch that conflicted, or carried no token, is not found.
pub fn commits_are_found_by_token(store: &dyn Store) {
    let p = unique_project("kit-tokens");
    let r0 = revision_ok(store);
    let (first, second) = (CommitToken::random(), CommitToken::random());
    let record = sample_connection(&p, "svc", "s");
    let b = batch(vec![
        put(&record, Expect::Absent),
        put(&sample_mappings(&p, "orders", "svc"), Expect::Absent),
    ])
    .with_token(first);
    let committed = commit_ok(store, &b, "a batch with a token");
    assert_eq!(
        find_ok(store, first, r0),
        Some(committed.clone()),
        "{} store: a committed batch is found by its token with what its commit answered",
        store.backend()
    );
    assert_eq!(
        find_ok(store, first, Revision(committed.revision.0 - 1)),
        Some(committed.clone()),
        "{} store: found among the batches after the revision just before it",
        store.backend()
    );
    assert_eq!(
        find_ok(store, first, committed.revision),
        None,
        "{} store: a batch is not among the batches after its own revision",
        store.backend()
    );
    for far in [Revision(i64::MAX as u64), Revision(u64::MAX)] {
        assert_eq!(
            find_ok(store, first, far),
            None,
            "{} store: a batch is not among the batches after {far}",
            store.backend()
        );
    }
    // A conflicting batch with a token was not applied: not found.
    let conflicting = batch(vec![put(&record, Expect::Absent)]).with_token(second);
    expect_conflict(
        store,
        &conflicting,
        &record.key(),
        Expect::Absent,
        Some(Version(1)),
        "a stale create",
    );
    assert_eq!(
        find_ok(store, second, r0),
        None,
        "{} store: a batch that conflicted is not found",
        store.backend()
    );
    // Nor is a token no batch carried, after a batch without a token.
    let untokened = commit_ok(
        store,
        &batch(vec![put(&sample_connection(&p, "other", "s"), Expect::Absent)]),
        "a batch without a token",
    );
    assert_eq!(
        find_ok(store, second, r0),
        None,
        "{} store: a token no batch carried is not found",
        store.backend()
    );
    assert!(untokened.revision > committed.revision);
}

/// Versions start at 1 and grow by one per write; a stale or wrong expectation
/// is a conflict that changes nothing and names the key and versions (but
/// never a value).
pub fn versions_and_conflicts(store: &dyn Store) {
    // One scenario of the contract, told in order: its steps share the
    // store's state and the revisions seen so far, so it stays one function.
    let p = unique_project("kit-versions");
    let secret = unique_secret("never-in-messages");
    let r0 = revision_ok(store);
    let first = sample_connection(&p, "svc", &secret);
    let key = first.key();

    let c = commit_ok(store, &batch(vec![put(&first, Expect::Absent)]), "create");
    assert_eq!(c.versions, vec![Version(1)], "a new key starts at version 1");
    assert_eq!(c.revision, Revision(r0.0 + 1), "a batch gets the next revision");
    assert_eq!(
        revision_ok(store),
        c.revision,
        "revision() reports the last commit"
    );
    let (v, got) = get_ok(store, &key).unwrap_or_else(|| panic!("{key} missing after create"));
    assert_eq!(v, Version(1));
    assert_same("get after create", &got, &first);

    let e = expect_conflict(
        store,
        &batch(vec![put(&first, Expect::Absent)]),
        &key,
        Expect::Absent,
        Some(Version(1)),
        "create of an existing key",
    );
    let text = e.to_string();
    assert!(
        text.contains(&key.to_string()),
        "conflict message {text:?} does not name {key}"
    );
    assert!(
        !text.contains(&secret),
        "a conflict message contains a secret value"
    );

    let second = connection_with(&p, connection_id(&first), "svc", &secret, "second");
    let c = commit_ok(
        store,
        &batch(vec![put(&second, Expect::Version(Version(1)))]),
        "update",
    );
    assert_eq!(c.versions, vec![Version(2)], "an update makes version 2");
    assert_eq!(c.revision, Revision(r0.0 + 2));

    let stale = connection_with(&p, connection_id(&first), "svc", &secret, "stale");
    let e = expect_conflict(
        store,
        &batch(vec![put(&stale, Expect::Version(Version(1)))]),
        &key,
        Expect::Version(Version(1)),
        Some(Version(2)),
        "stale update",
    );
    let text = e.to_string();
    assert!(
        text.contains("v1") && text.contains("v2"),
        "conflict message {text:?} does not name both versions"
    );
    assert_eq!(
        revision_ok(store),
        Revision(r0.0 + 2),
        "a conflict must not consume a revision"
    );
    let (v, got) = get_ok(store, &key).unwrap_or_else(|| panic!("{key} missing"));
    assert_eq!(v, Version(2), "a stale write must not change the version");
    assert_same("a stale write must not change the record", &got, &second);

    let ghost = sample_connection(&p, "ghost", &secret);
    expect_conflict(
        store,
        &batch(vec![put(&ghost, Expect::Version(Version(5)))]),
        &ghost.key(),
        Expect::Version(Version(5)),
        None,
        "update of a missing key",
    );
    assert!(
        get_ok(store, &ghost.key()).is_none(),
        "a failed write must not create the record"
    );
    assert!(
        changes_ok(store, Revision(r0.0 + 2), 100).is_empty(),
        "conflicts must not reach the change feed"
    );
}

fn connection_id(record: &Record) -> ConnectionId {
    match record {
        Record::Connection(c) => c.id(),
        _ => panic!("test_kit: not a connection"),
    }
}

/// A batch whose third write conflicts leaves nothing behind: not the writes
/// before it, not the ones after, no revision, no change.
pub fn batches_are_atomic(store: &dyn Store) {
    // One scenario of the contract, told in order: its steps share the
    // store's state and the revisions seen so far, so it stays one function.
    let p = unique_project("kit-atomic");
    let a = sample_connection(&p, "a", "secret-a");
    let b = sample_connection(&p, "b", "secret-b");
    commit_ok(
        store,
        &batch(vec![put(&a, Expect::Absent), put(&b, Expect::Absent)]),
        "setup",
    );
    let r0 = revision_ok(store);

    let c = sample_connection(&p, "c", "secret-c");
    let a2 = connection_with(&p, connection_id(&a), "a", "secret-a2", "changed");
    let d = sample_connection(&p, "d", "secret-d");
    let failing = batch(vec![
        put(&c, Expect::Absent),
        put(&a2, Expect::Version(Version(1))),
        put(&b, Expect::Absent), // b exists: the third write conflicts
        put(&d, Expect::Absent),
    ]);
    expect_conflict(
        store,
        &failing,
        &b.key(),
        Expect::Absent,
        Some(Version(1)),
        "batch with a conflicting third write",
    );
    assert_eq!(
        revision_ok(store),
        r0,
        "a failed batch must not consume a revision"
    );
    assert!(
        get_ok(store, &c.key()).is_none(),
        "the write before the conflict was applied"
    );
    assert!(
        get_ok(store, &d.key()).is_none(),
        "the write after the conflict was applied"
    );
    let (v, got) = get_ok(store, &a.key()).unwrap_or_else(|| panic!("{} missing", a.key()));
    assert_eq!(v, Version(1), "the update before the conflict was applied");
    assert_same("the update before the conflict was applied", &got, &a);
    assert!(
        changes_ok(store, r0, 100).is_empty(),
        "a failed batch reached the change feed"
    );

    // Every write's expectation is checked, not only the first one's.
    expect_conflict(
        store,
        &batch(vec![
            put(&c, Expect::Absent),
            put(&d, Expect::Version(Version(1))),
        ]),
        &d.key(),
        Expect::Version(Version(1)),
        None,
        "batch whose last write conflicts",
    );
    assert!(
        get_ok(store, &c.key()).is_none(),
        "the write before the conflict was applied"
    );

    // The same batch without the conflict commits whole, in one revision.
    let ok = batch(vec![
        put(&c, Expect::Absent),
        put(&a2, Expect::Version(Version(1))),
        Write::delete(b.key(), Expect::Version(Version(1))),
        put(&d, Expect::Absent),
    ]);
    let done = commit_ok(store, &ok, "batch of four");
    assert_eq!(done.revision, Revision(r0.0 + 1));
    assert_eq!(
        done.versions,
        vec![Version(1), Version(2), Version(2), Version(1)],
        "versions in batch order"
    );
    let feed = changes_ok(store, r0, 100);
    let keys: Vec<_> = feed
        .iter()
        .map(|c| (c.revision, c.key.clone(), c.version))
        .collect();
    let want = vec![
        (done.revision, c.key(), Version(1)),
        (done.revision, a.key(), Version(2)),
        (done.revision, b.key(), Version(2)),
        (done.revision, d.key(), Version(1)),
    ];
    assert_eq!(
        keys, want,
        "the change feed lists a batch's writes in write order under one revision"
    );
    assert!(feed[2].record().is_none(), "a delete's change carries no record");
}

/// Malformed batches are refused before anything happens.
pub fn invalid_batches_are_rejected(store: &dyn Store) {
    let p = unique_project("kit-invalid");
    let r0 = revision_ok(store);
    let a = sample_connection(&p, "a", "s");
    let other = sample_connection(&p, "other", "s");
    let cases = [
        ("an empty batch", Batch::new()),
        (
            "a key written twice",
            batch(vec![
                put(&a, Expect::Absent),
                Write::delete(a.key(), Expect::Absent),
            ]),
        ),
        (
            "a put under another key",
            batch(vec![Write {
                key: other.key(),
                expect: Expect::Absent,
                op: Op::Put(a.clone()),
            }]),
        ),
    ];
    for (what, b) in cases {
        match store.commit(&b) {
            Err(StoreError::InvalidBatch { .. }) => {}
            Err(e) => panic!(
                "{} store: {what}: expected InvalidBatch, got {e}",
                store.backend()
            ),
            Ok(c) => panic!(
                "{} store: {what}: expected InvalidBatch, but it committed {}",
                store.backend(),
                c.revision
            ),
        }
    }
    assert_eq!(revision_ok(store), r0, "an invalid batch consumed a revision");
    assert!(
        get_ok(store, &a.key()).is_none() && get_ok(store, &other.key()).is_none(),
        "an invalid batch wrote"
    );
}

/// Versions continue across delete and re-create; a deleted key reads as
/// absent everywhere; the change feed shows the delete.
pub fn delete_and_recreate(store: &dyn Store) {
    let p = unique_project("kit-recreate");
    let a = sample_connection(&p, "a", "s1");
    let key = a.key();
    commit_ok(store, &batch(vec![put(&a, Expect::Absent)]), "create");
    commit_ok(
        store,
        &batch(vec![put(&a, Expect::Version(Version(1)))]),
        "update",
    );
    let r_before_delete = revision_ok(store);
    let del = commit_ok(
        store,
        &batch(vec![Write::delete(key.clone(), Expect::Version(Version(2)))]),
        "delete",
    );
    assert_eq!(
        del.versions,
        vec![Version(3)],
        "a delete gets the next version (its tombstone's)"
    );
    assert!(
        get_ok(store, &key).is_none(),
        "a deleted record is still readable"
    );
    let snapshot = store.load().unwrap_or_else(|e| panic!("load failed: {e}"));
    assert!(
        snapshot.records.iter().all(|(_, r)| r.key() != key),
        "load() returns a deleted record"
    );
    expect_conflict(
        store,
        &batch(vec![put(&a, Expect::Version(Version(3)))]),
        &key,
        Expect::Version(Version(3)),
        None,
        "update of a deleted key at its tombstone's version",
    );
    expect_conflict(
        store,
        &batch(vec![Write::delete(key.clone(), Expect::Version(Version(2)))]),
        &key,
        Expect::Version(Version(2)),
        None,
        "second delete",
    );
    let again = commit_ok(store, &batch(vec![put(&a, Expect::Absent)]), "re-create");
    assert_eq!(
        again.versions,
        vec![Version(4)],
        "versions never repeat across delete and re-create"
    );
    let (v, _) = get_ok(store, &key).unwrap_or_else(|| panic!("{key} missing after re-create"));
    assert_eq!(v, Version(4));
    let feed = changes_ok(store, r_before_delete, 100);
    let seen: Vec<_> = feed
        .iter()
        .map(|c| (c.key.clone(), c.version, c.record().is_some()))
        .collect();
    assert_eq!(
        seen,
        vec![(key.clone(), Version(3), false), (key, Version(4), true)],
        "feed of delete and re-create"
    );
}

#[track_caller]
fn expect_last_version(store: &dyn Store, b: &Batch, key: &RecordKey, what: &str) {
    match store.commit(b) {
        Err(StoreError::LastVersion { key: k, version }) => {
            assert_eq!(&k, key, "{what}: the refusal names the wrong key");
            assert_eq!(
                version,
                Version::MAX,
                "{what}: the refusal reports the wrong version"
            );
        }
        Err(e) => panic!(
            "{} store: {what}: expected StoreError::LastVersion on {key}, got error {e}",
            store.backend()
        ),
        Ok(c) => panic!(
            "{} store: {what}: expected StoreError::LastVersion on {key}, but it committed {}",
            store.backend(),
            c.revision
        ),
    }
}

/// A key at [`Version::MAX`] cannot be written again, by a put or a delete,
/// live or deleted (a tombstone at the last version refuses a re-create):
/// the batch is refused with [`StoreError::LastVersion`] naming the key,
/// and nothing of it is written (no other write, no revision, no change).
/// A stale expectation on such a key is still a conflict.
///
/// `set_version(key, version)` sets the stored version of `key`'s row (live
/// or a tombstone) by the backend's own means (SQL for a database), the
/// way a store would be after that many writes; it is called on keys
/// written before. Not in [`run_all`], which cannot reach a backend's rows.
pub fn the_last_version_is_final(store: &dyn Store, set_version: impl Fn(&RecordKey, i64)) {
    let last = i64::try_from(Version::MAX.0).unwrap_or(i64::MAX);
    let p = unique_project("kit-last-version");
    let (a, b, c) = (
        sample_connection(&p, "svc00", "s1"),
        sample_connection(&p, "svc01", "s2"),
        sample_connection(&p, "svc02", "s3"),
    );
    commit_ok(
        store,
        &batch(vec![put(&a, Expect::Absent), put(&c, Expect::Absent)]),
        "create",
    );
    set_version(&a.key(), last - 1);
    assert_eq!(
        get_ok(store, &a.key()).map(|(v, _)| v),
        Some(Version(Version::MAX.0 - 1)),
        "set_version did not set the version"
    );
    let done = commit_ok(
        store,
        &batch(vec![put(&a, Expect::Version(Version(Version::MAX.0 - 1)))]),
        "the write to the last version",
    );
    assert_eq!(done.versions, vec![Version::MAX], "the write before the last one");
    let revision = revision_ok(store);
    let refused = batch(vec![
        put(&b, Expect::Absent),
        put(&a, Expect::Version(Version::MAX)),
    ]);
    expect_last_version(
        store,
        &refused,
        &a.key(),
        "an update of a key at the last version",
    );
    let message = store.commit(&refused).map(drop).unwrap_err().to_string();
    assert_eq!(
        message,
        format!(
            "connection svc00 (project scope) of project {p} is at the last version v{} and cannot be written again",
            Version::MAX.0
        ),
        "the refusal's message"
    );
    expect_last_version(
        store,
        &batch(vec![Write::delete(a.key(), Expect::Version(Version::MAX))]),
        &a.key(),
        "a delete of a key at the last version",
    );
    expect_conflict(
        store,
        &batch(vec![put(&a, Expect::Version(Version(1)))]),
        &a.key(),
        Expect::Version(Version(1)),
        Some(Version::MAX),
        "a stale update of a key at the last version",
    );
    // A tombstone at the last version: the key cannot be made again.
    commit_ok(
        store,
        &batch(vec![Write::delete(c.key(), Expect::Version(Version(1)))]),
        "delete",
    );
    set_version(&c.key(), last);
    let revision_after_delete = revision_ok(store);
    expect_last_version(
        store,
        &batch(vec![put(&c, Expect::Absent)]),
        &c.key(),
        "a re-create of a key deleted at the last version",
    );
    assert_eq!(
        revision_ok(store),
        revision_after_delete,
        "a refused batch took a revision"
    );
    assert!(
        changes_ok(store, revision_after_delete, 10).is_empty(),
        "a refused batch left a change"
    );
    assert!(
        get_ok(store, &b.key()).is_none(),
        "a refused batch wrote its other write"
    );
    assert!(get_ok(store, &c.key()).is_none(), "a refused re-create wrote");
    let (v, kept) = get_ok(store, &a.key()).unwrap_or_else(|| panic!("{} went missing", a.key()));
    assert_eq!(v, Version::MAX, "the refused key's version changed");
    assert_same("the refused key", &kept, &a);
    assert!(revision_ok(store) > revision, "the delete committed");
    let snapshot = store.load().unwrap_or_else(|e| panic!("load failed: {e}"));
    assert!(
        snapshot
            .records
            .iter()
            .any(|(v, r)| r.key() == a.key() && *v == Version::MAX),
        "load() does not return the key at the last version"
    );
}

/// A store whose head revision is [`Revision::MAX`] (only corruption gets
/// there) refuses every batch with [`StoreError::LastRevision`] naming the
/// head revision, not retryable, before looking at its writes (a stale
/// expectation in it is not reported), and writes nothing of it (no record,
/// no version, no revision); once the head is back below it, the same
/// batch commits.
///
/// `set_head(revision)` sets the store's head revision by the backend's
/// own means (SQL for a database). Not in [`run_all`], which cannot reach a
/// backend's head.
pub fn the_last_revision_is_final(store: &dyn Store, set_head: impl Fn(Revision)) {
    let p = unique_project("kit-last-revision");
    let (a, b) = (
        sample_connection(&p, "svc00", "s1"),
        sample_connection(&p, "svc01", "s2"),
    );
    commit_ok(store, &batch(vec![put(&a, Expect::Absent)]), "create");
    let head = revision_ok(store);
    set_head(Revision::MAX);
    assert_eq!(
        revision_ok(store),
        Revision::MAX,
        "set_head did not set the head revision"
    );
    let refused = batch(vec![
        put(&b, Expect::Absent),
        put(&a, Expect::Version(Version::FIRST)),
    ]);
    let stale = batch(vec![put(&a, Expect::Version(Version(7)))]);
    for (what, batch) in [("a batch", &refused), ("a stale batch", &stale)] {
        match store.commit(batch) {
            Err(StoreError::LastRevision { revision, .. }) => assert_eq!(
                revision,
                Revision::MAX,
                "{} store: {what}: the refusal's revision",
                store.backend()
            ),
            Err(e) => panic!(
                "{} store: {what}: expected StoreError::LastRevision, got {e}",
                store.backend()
            ),
            Ok(c) => panic!(
                "{} store: {what}: expected StoreError::LastRevision, but it committed {}",
                store.backend(),
                c.revision
            ),
        }
    }
    let err = store.commit(&refused).map(drop).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} store is at the last revision r{} and cannot commit another batch",
            store.backend(),
            Revision::MAX.0
        ),
        "the refusal's message"
    );
    assert!(!err.is_retryable(), "the refusal is retryable: {err}");
    assert_eq!(
        revision_ok(store),
        Revision::MAX,
        "a refused batch moved the head"
    );
    assert!(
        get_ok(store, &b.key()).is_none(),
        "a refused batch wrote a record"
    );
    assert_eq!(
        get_ok(store, &a.key()).map(|(v, _)| v),
        Some(Version::FIRST),
        "a refused batch wrote a version"
    );
    set_head(head);
    let done = commit_ok(store, &refused, "the batch once the head is back");
    assert_eq!(Some(done.revision), head.next(), "the batch's revision");
}

/// What a stored version outside 1 ..= [`Version::MAX`] (0, negative,
/// past the last version: a corrupt row) does: `load`, `get` and a commit
/// writing the key refuse with [`StoreError::Unreadable`] naming the key
/// and the stored number, never a panic or a wrapped number, and the
/// commit writes nothing; with the version set right again, everything
/// reads as before. For a backend that keeps versions as signed numbers
/// (a database); `set_version` as for [`the_last_version_is_final`].
pub fn stored_versions_out_of_range_are_refused(store: &dyn Store, set_version: impl Fn(&RecordKey, i64)) {
    let p = unique_project("kit-bad-version");
    let (a, b) = (sample_connection(&p, "a", "s1"), sample_connection(&p, "b", "s2"));
    commit_ok(
        store,
        &batch(vec![put(&a, Expect::Absent), put(&b, Expect::Absent)]),
        "create",
    );
    let past = i64::try_from(Version::MAX.0).unwrap_or(i64::MAX - 1) + 1;
    let named = |what: &str, bad: i64, e: StoreError| match e {
        StoreError::Unreadable {
            what: row, message, ..
        } => {
            assert_eq!(
                row,
                a.key().to_string(),
                "{what} at version {bad}: the error names another row"
            );
            assert!(
                message.contains(&bad.to_string()),
                "{what} at version {bad}: the error does not say the stored version: {message}"
            );
        }
        other => panic!(
            "{} store: {what} at stored version {bad}: expected StoreError::Unreadable, got {other}",
            store.backend()
        ),
    };
    for bad in [0, -1, i64::MIN, past, i64::MAX] {
        set_version(&a.key(), bad);
        let revision = revision_ok(store);
        match store.load() {
            Err(e) => named("load", bad, e),
            Ok(_) => panic!(
                "{} store: load at stored version {bad} succeeded",
                store.backend()
            ),
        }
        match store.get(&a.key()) {
            Err(e) => named("get", bad, e),
            Ok(found) => panic!(
                "{} store: get at stored version {bad} answered {:?}",
                store.backend(),
                found.map(|(v, _)| v)
            ),
        }
        for expect in [Expect::Version(Version(1)), Expect::Absent] {
            match store.commit(&batch(vec![
                put(&b, Expect::Version(Version(1))),
                put(&a, expect),
            ])) {
                Err(e) => named("a commit", bad, e),
                Ok(c) => panic!(
                    "{} store: a commit at stored version {bad} committed {}",
                    store.backend(),
                    c.revision
                ),
            }
        }
        assert_eq!(revision_ok(store), revision, "a refused commit took a revision");
        assert_eq!(
            get_ok(store, &b.key()).map(|(v, _)| v),
            Some(Version(1)),
            "a refused commit wrote its other write"
        );
    }
    set_version(&a.key(), 1);
    let snapshot = store.load().unwrap_or_else(|e| panic!("load failed: {e}"));
    assert!(
        snapshot
            .records
            .iter()
            .any(|(v, r)| r.key() == a.key() && *v == Version(1)),
        "the repaired row does not load"
    );
    commit_ok(
        store,
        &batch(vec![put(&a, Expect::Version(Version(1)))]),
        "a write after the repair",
    );
}

/// Every kind of record, secrets in every layer, comes back exactly as written
/// through `get`, `load` and the change feed.
pub fn records_round_trip(store: &dyn Store) {
    let p = unique_project("kit-roundtrip");
    let secrets: Vec<String> = (0..8).map(|i| unique_secret(&format!("rt{i}"))).collect();
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let records = [
        secret_rich_connection(&p, "db", &refs),
        sample_mappings(&p, "orders", "db"),
        sample_oauth_app(&p, &unique_secret("client-secret")),
        sample_connection(&p, "unicode", "pässwörd ✓ \"quoted\" \\ \n newline"),
        sample_token_set(&p, &unique_secret("access"), Some(&unique_secret("refresh"))),
        sample_pending_authorization(&p, &unique_secret("verifier-0123456789-0123456789-0123456789")),
        sample_status(&p),
        sample_connection_type(&p),
        sample_template(&p, &unique_secret("template-secret")),
    ];
    let r0 = revision_ok(store);
    commit_ok(
        store,
        &batch(records.iter().map(|r| put(r, Expect::Absent)).collect()),
        "write every kind",
    );
    for r in &records {
        let (_, got) = get_ok(store, &r.key()).unwrap_or_else(|| panic!("{} missing", r.key()));
        assert_same("get", &got, r);
    }
    let snapshot = store.load().unwrap_or_else(|e| panic!("load failed: {e}"));
    for r in &records {
        let got = snapshot.records.iter().find(|(_, x)| x.key() == r.key());
        let (_, got) = got.unwrap_or_else(|| panic!("load() lacks {}", r.key()));
        assert_same("load", got, r);
    }
    let feed = changes_ok(store, r0, 1);
    assert_eq!(feed.len(), records.len());
    for (c, r) in feed.iter().zip(&records) {
        let got = c
            .record()
            .unwrap_or_else(|| panic!("the change of {} has no record", r.key()));
        assert_same("change feed", got, r);
    }
}

/// `load()` is every live record at the latest revision, with the versions
/// `get` reports.
pub fn snapshot_matches(store: &dyn Store) {
    let p = unique_project("kit-snapshot");
    let a = sample_connection(&p, "a", "s");
    let b = sample_connection(&p, "b", "s");
    let c = sample_mappings(&p, "i1", "a");
    commit_ok(
        store,
        &batch(vec![
            put(&a, Expect::Absent),
            put(&b, Expect::Absent),
            put(&c, Expect::Absent),
        ]),
        "w1",
    );
    commit_ok(
        store,
        &batch(vec![
            put(&a, Expect::Version(Version(1))),
            Write::delete(b.key(), Expect::Version(Version(1))),
        ]),
        "w2",
    );
    let snapshot = store.load().unwrap_or_else(|e| panic!("load failed: {e}"));
    assert_eq!(
        snapshot.revision,
        revision_ok(store),
        "the snapshot's revision is the latest"
    );
    let mine: BTreeMap<RecordKey, Version> = snapshot
        .records
        .iter()
        .filter(|(_, r)| r.key().project() == &p)
        .map(|(v, r)| (r.key(), *v))
        .collect();
    let want: BTreeMap<RecordKey, Version> = [(a.key(), Version(2)), (c.key(), Version(1))]
        .into_iter()
        .collect();
    assert_eq!(
        mine, want,
        "load() returns live records with their versions, and no deleted ones"
    );
    let mut keys: Vec<_> = snapshot.records.iter().map(|(_, r)| r.key()).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "load() returns a key twice");
    for (v, r) in snapshot.records.iter().filter(|(_, r)| r.key().project() == &p) {
        let (gv, gr) = get_ok(store, &r.key()).unwrap_or_else(|| panic!("{} missing", r.key()));
        assert_eq!(gv, *v, "get and load disagree on the version of {}", r.key());
        assert_same("get vs load", &gr, r);
    }
}

/// The change feed lists every write of every batch, in revision order then
/// write order; `limit` counts batches and never splits one; paging from any
/// revision yields the same sequence.
pub fn change_feed_order_and_limits(store: &dyn Store) {
    // One scenario of the contract, told in order: its steps share the
    // store's state and the revisions seen so far, so it stays one function.
    let p = unique_project("kit-feed");
    let r0 = revision_ok(store);
    let mut live: HashMap<String, (Record, Version)> = HashMap::new();
    let mut expected = Vec::new();
    let sizes = [1usize, 3, 2, 1, 4, 2, 1];
    for (i, size) in sizes.iter().enumerate() {
        let mut writes = Vec::new();
        let mut names = Vec::new();
        for j in 0..*size {
            let name = format!("c{}", (i * 2 + j) % 7);
            if names.contains(&name) {
                continue;
            }
            names.push(name.clone());
            match live.get(&name) {
                Some((rec, v)) if (i + j) % 3 == 0 => {
                    writes.push(Write::delete(rec.key(), Expect::Version(*v)))
                }
                Some((rec, v)) => {
                    let next = connection_with(&p, connection_id(rec), &name, "s", &format!("b{i}w{j}"));
                    writes.push(put(&next, Expect::Version(*v)));
                }
                None => writes.push(put(&sample_connection(&p, &name, "s"), Expect::Absent)),
            }
        }
        let b = batch(writes);
        let c = commit_ok(store, &b, "feed batch");
        assert_eq!(
            c.revision,
            Revision(r0.0 + 1 + i as u64),
            "revisions are consecutive"
        );
        for ((w, v), name) in b.writes.iter().zip(&c.versions).zip(&names) {
            let record = match &w.op {
                Op::Put(r) => {
                    live.insert(name.clone(), (r.clone(), *v));
                    Some(record_json(r))
                }
                Op::Delete => {
                    live.remove(name);
                    None
                }
            };
            expected.push((c.revision, w.key.clone(), *v, record));
        }
    }
    let head = revision_ok(store);
    let all: Vec<_> = changes_ok(store, r0, usize::MAX).iter().map(view).collect();
    assert_eq!(
        all, expected,
        "the change feed (all at once) differs from the writes committed"
    );
    for limit in 1..=sizes.len() + 1 {
        for start in 0..sizes.len() {
            let mut after = Revision(r0.0 + start as u64);
            let mut got = Vec::new();
            loop {
                let page = changes_ok(store, after, limit);
                if page.is_empty() {
                    break;
                }
                let revisions: Vec<_> = {
                    let mut r: Vec<_> = page.iter().map(|c| c.revision).collect();
                    r.dedup();
                    r
                };
                assert!(
                    revisions.windows(2).all(|w| w[0] < w[1]),
                    "a page is not in revision order"
                );
                let remaining = (head.0 - after.0) as usize;
                assert_eq!(
                    revisions.len(),
                    limit.min(remaining),
                    "changes_since({after}, {limit}) returned {} batches",
                    revisions.len()
                );
                after = *revisions.last().unwrap_or(&after);
                got.extend(page.iter().map(view));
            }
            let want: Vec<_> = expected
                .iter()
                .filter(|c| c.0.0 > r0.0 + start as u64)
                .cloned()
                .collect();
            assert_eq!(
                got,
                want,
                "paging with limit {limit} from r{} differs from the whole feed",
                r0.0 + start as u64
            );
        }
    }
    assert!(
        changes_ok(store, head, 10).is_empty(),
        "changes after the head revision"
    );
    assert!(
        changes_ok(store, Revision(head.0 + 5), 10).is_empty(),
        "changes after a future revision"
    );
    // Revisions at the ends of what a store may count in (`u64`, `i64`)
    // are revisions like any other: nothing after them, never an error.
    for far in [Revision(i64::MAX as u64), Revision(u64::MAX)] {
        assert!(
            changes_ok(store, far, usize::MAX).is_empty(),
            "changes after {far}"
        );
    }
    assert!(
        changes_ok(store, r0, 0).is_empty(),
        "a limit of 0 batches returned changes"
    );
}

/// `wait_for_change` returns once a commit lands, long before its timeout,
/// returns the current revision when nothing happens, and takes
/// `Duration::MAX` ("no limit") for a timeout.
pub fn wait_for_change_wakes(store: &dyn Store) {
    let p = unique_project("kit-wait");
    let r0 = revision_ok(store);
    let quiet = store
        .wait_for_change(r0, Duration::from_millis(30))
        .unwrap_or_else(|e| panic!("wait failed: {e}"));
    assert_eq!(
        quiet, r0,
        "wait_for_change without a commit reports a different revision"
    );
    let record = sample_connection(&p, "late", "s");
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            commit_ok(store, &batch(vec![put(&record, Expect::Absent)]), "late commit");
        });
        let seen = store
            .wait_for_change(r0, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("wait failed: {e}"));
        assert!(seen > r0, "wait_for_change returned {seen} without the commit");
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "wait_for_change slept long past the commit"
    );
    let seen = store
        .wait_for_change(r0, Duration::MAX)
        .unwrap_or_else(|e| panic!("wait without limit failed: {e}"));
    assert!(
        seen > r0,
        "wait_for_change without limit returned {seen} past a commit"
    );
}

/// `threads_per_store` threads per handle repeatedly read a record and write it
/// back expecting the version they read. Exactly one writer wins each version;
/// every acknowledged write is in the change feed with its content; the final
/// version counts them all (no lost update).
pub fn concurrent_writers(stores: &[&dyn Store], threads_per_store: usize, attempts: usize) {
    // One scenario of the contract, told in order: its steps share the
    // store's state and the revisions seen so far, so it stays one function.
    assert!(!stores.is_empty(), "concurrent_writers needs a store");
    let first = stores[0];
    let p = unique_project("kit-race");
    let seed = sample_connection(&p, "contended", "s");
    let key = seed.key();
    let id = connection_id(&seed);
    let r0 = revision_ok(first);
    commit_ok(first, &batch(vec![put(&seed, Expect::Absent)]), "seed");
    let wins: Mutex<Vec<(Version, String)>> = Mutex::new(Vec::new());
    let conflicts = Mutex::new(0usize);
    let n = stores.len() * threads_per_store;
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        for (si, store) in stores.iter().enumerate() {
            for t in 0..threads_per_store {
                let (wins, conflicts, barrier, key, p) = (&wins, &conflicts, &barrier, &key, &p);
                s.spawn(move || {
                    barrier.wait();
                    for a in 0..attempts {
                        let Some((v, _)) = get_ok(*store, key) else {
                            panic!("{key} vanished")
                        };
                        let marker = format!("s{si}t{t}a{a}");
                        let next = connection_with(p, id, "contended", "s", &marker);
                        match store.commit(&batch(vec![put(&next, Expect::Version(v))])) {
                            Ok(c) => {
                                assert_eq!(
                                    c.versions,
                                    vec![Version(v.0 + 1)],
                                    "a write expecting {v} made another version"
                                );
                                wins.lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push((c.versions[0], marker));
                            }
                            Err(StoreError::Conflict { found, .. }) => {
                                assert!(
                                    found.is_some_and(|f| f > v),
                                    "a conflict reported {found:?} after reading {v}"
                                );
                                *conflicts.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                            }
                            Err(e) => panic!("{} store: concurrent write failed: {e}", store.backend()),
                        }
                    }
                });
            }
        }
    });
    let mut wins = wins.into_inner().unwrap_or_else(|e| e.into_inner());
    wins.sort();
    let conflicts = conflicts.into_inner().unwrap_or_else(|e| e.into_inner());
    assert_eq!(
        wins.len() + conflicts,
        n * attempts,
        "every attempt either wins or conflicts"
    );
    for (i, (v, _)) in wins.iter().enumerate() {
        assert_eq!(
            *v,
            Version(i as u64 + 2),
            "versions {wins:?} were not won exactly once each"
        );
    }
    let final_version = Version(wins.len() as u64 + 1);
    for store in stores {
        let (v, r) = get_ok(*store, &key).unwrap_or_else(|| panic!("{key} vanished"));
        assert_eq!(
            v, final_version,
            "the final version does not count every acknowledged write"
        );
        assert_eq!(
            marker_of(&r),
            wins.last().map(|(_, m)| m.clone()).or(Some(String::new()))
        );
    }
    let feed = changes_ok(first, r0, usize::MAX);
    let mine: Vec<_> = feed.iter().filter(|c| c.key == key).collect();
    assert_eq!(mine.len(), wins.len() + 1, "the feed lacks acknowledged writes");
    for (c, (v, marker)) in mine.iter().skip(1).zip(&wins) {
        assert_eq!(c.version, *v);
        let got = c.record().and_then(marker_of);
        assert_eq!(
            got.as_deref(),
            Some(marker.as_str()),
            "the feed holds another write for {v}"
        );
    }
}

/// `threads_per_store` threads per handle create the same new key at once:
/// exactly one succeeds, all others get a conflict finding version 1.
pub fn racing_creators(stores: &[&dyn Store], threads_per_store: usize) {
    assert!(!stores.is_empty(), "racing_creators needs a store");
    let p = unique_project("kit-create-race");
    let id = ConnectionId::random();
    let n = stores.len() * threads_per_store;
    let barrier = Barrier::new(n);
    let outcomes: Mutex<Vec<Result<Committed, StoreError>>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for store in stores {
            for t in 0..threads_per_store {
                let (barrier, outcomes, p) = (&barrier, &outcomes, &p);
                s.spawn(move || {
                    let record = connection_with(p, id, "created", "s", &format!("creator{t}"));
                    barrier.wait();
                    let r = store.commit(&batch(vec![put(&record, Expect::Absent)]));
                    outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                });
            }
        }
    });
    let outcomes = outcomes.into_inner().unwrap_or_else(|e| e.into_inner());
    let wins = outcomes.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{wins} of {n} racing creators succeeded");
    for r in &outcomes {
        match r {
            Ok(c) => assert_eq!(c.versions, vec![Version(1)]),
            Err(StoreError::Conflict { found, .. }) => assert_eq!(*found, Some(Version(1))),
            Err(e) => panic!("racing create failed: {e}"),
        }
    }
}

/// Writers commit concurrently through `writers` while `follower` pages
/// through the change feed from where it started: it must see every revision
/// exactly once, consecutively, each batch whole and as committed, even when
/// commits finish out of order.
pub fn follower_sees_every_revision(
    writers: &[&dyn Store],
    follower: &dyn Store,
    threads_per_writer: usize,
    batches_per_thread: usize,
) {
    // One scenario of the contract, told in order: its steps share the
    // store's state and the revisions seen so far, so it stays one function.
    assert!(!writers.is_empty(), "follower_sees_every_revision needs a writer");
    let p = unique_project("kit-follow");
    let r0 = revision_ok(follower);
    let committed: Mutex<BTreeMap<Revision, Vec<(RecordKey, Version)>>> = Mutex::new(BTreeMap::new());
    let total = writers.len() * threads_per_writer * batches_per_thread;
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut seen: Vec<Change> = Vec::new();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (wi, store) in writers.iter().enumerate() {
            for t in 0..threads_per_writer {
                let (committed, p) = (&committed, &p);
                handles.push(s.spawn(move || {
                    for b in 0..batches_per_thread {
                        let size = 1 + (b % 3);
                        let writes: Vec<Write> = (0..size)
                            .map(|k| {
                                put(
                                    &sample_connection(p, &format!("w{wi}t{t}b{b}k{k}"), "s"),
                                    Expect::Absent,
                                )
                            })
                            .collect();
                        let keys: Vec<RecordKey> = writes.iter().map(|w| w.key.clone()).collect();
                        let c = commit_ok(*store, &batch(writes), "follower feed");
                        let entry = keys.into_iter().zip(c.versions).collect();
                        committed
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(c.revision, entry);
                    }
                }));
            }
        }
        let done = &done;
        s.spawn(move || {
            for h in handles {
                let _ = h.join();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut after = r0;
        loop {
            let finished = done.load(std::sync::atomic::Ordering::SeqCst);
            let page = changes_ok(follower, after, 2);
            if let Some(last) = page.last() {
                after = last.revision;
                seen.extend(page);
            } else if finished {
                // One more look: the writers are done, so the feed is complete.
                if changes_ok(follower, after, 2).is_empty() {
                    break;
                }
            } else {
                let _ = follower.wait_for_change(after, Duration::from_millis(50));
            }
            assert!(
                Instant::now() < deadline,
                "the follower did not catch up within 60 s"
            );
        }
    });
    let committed = committed.into_inner().unwrap_or_else(|e| e.into_inner());
    assert_eq!(committed.len(), total, "a writer thread failed");
    let mut by_revision: BTreeMap<Revision, Vec<(RecordKey, Version)>> = BTreeMap::new();
    for c in &seen {
        by_revision
            .entry(c.revision)
            .or_default()
            .push((c.key.clone(), c.version));
    }
    let revisions: Vec<_> = by_revision.keys().copied().collect();
    let want: Vec<_> = (1..=total as u64).map(|i| Revision(r0.0 + i)).collect();
    assert_eq!(
        revisions, want,
        "the follower did not see every revision exactly once, in order"
    );
    assert!(
        seen.windows(2).all(|w| w[0].revision <= w[1].revision),
        "the follower saw revisions out of order"
    );
    assert_eq!(
        by_revision, committed,
        "the follower saw batches other than the ones committed"
    );
}

/// Writes through one handle, drops it, opens the store again with `open` and
/// checks that everything is there: records, versions (tombstones included),
/// the revision and the change feed. With `durable == false` (an in-memory
/// store) it only checks that `open` gives a working, empty store.
pub fn reopen_keeps_everything<S: Store>(open: impl Fn() -> S, durable: bool) {
    // One scenario of the contract, told in order: its steps share the
    // store's state and the revisions seen so far, so it stays one function.
    let p = unique_project("kit-reopen");
    let secret = unique_secret("reopen");
    let (r0, revision, feed, records, deleted, kept) = {
        let store = open();
        let r0 = revision_ok(&store);
        let a = sample_connection(&p, "a", &secret);
        let b = sample_connection(&p, "b", &secret);
        let m = sample_mappings(&p, "i", "a");
        commit_ok(
            &store,
            &batch(vec![
                put(&a, Expect::Absent),
                put(&b, Expect::Absent),
                put(&m, Expect::Absent),
            ]),
            "w1",
        );
        commit_ok(&store, &batch(vec![put(&a, Expect::Version(Version(1)))]), "w2");
        commit_ok(
            &store,
            &batch(vec![Write::delete(b.key(), Expect::Version(Version(1)))]),
            "w3",
        );
        let revision = revision_ok(&store);
        let feed: Vec<_> = changes_ok(&store, r0, usize::MAX).iter().map(view).collect();
        let snapshot = store.load().unwrap_or_else(|e| panic!("load failed: {e}"));
        let mut records: Vec<_> = snapshot
            .records
            .iter()
            .map(|(v, r)| (r.key(), *v, record_json(r)))
            .collect();
        records.sort();
        (r0, revision, feed, records, b, a)
    };
    let store = open();
    if !durable {
        assert!(
            get_ok(&store, &kept.key()).is_none(),
            "a new in-memory store is not empty"
        );
        return;
    }
    assert_eq!(
        revision_ok(&store),
        revision,
        "the revision changed across reopen"
    );
    let snapshot = store
        .load()
        .unwrap_or_else(|e| panic!("load after reopen failed: {e}"));
    let mut again: Vec<_> = snapshot
        .records
        .iter()
        .map(|(v, r)| (r.key(), *v, record_json(r)))
        .collect();
    again.sort();
    assert!(again == records, "the records changed across reopen");
    let feed_again: Vec<_> = changes_ok(&store, r0, usize::MAX).iter().map(view).collect();
    assert!(feed_again == feed, "the change feed changed across reopen");
    let c = commit_ok(
        &store,
        &batch(vec![put(&deleted, Expect::Absent)]),
        "re-create after reopen",
    );
    assert_eq!(
        c.versions,
        vec![Version(3)],
        "the tombstone's version was lost across reopen"
    );
    assert_eq!(
        c.revision,
        Revision(revision.0 + 1),
        "revisions restarted after reopen"
    );
    let c = commit_ok(
        &store,
        &batch(vec![put(&kept, Expect::Version(Version(2)))]),
        "update after reopen",
    );
    assert_eq!(c.versions, vec![Version(3)]);
}
