//! The OAuth runtime against a real authorization server (npm
//! `oidc-provider` on loopback): authorization code with PKCE, tokens that
//! refresh themselves once however many ask, client credentials for shared
//! applications, connection status, testers, and the faults a token server
//! and a store can have.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::support::oauth_server::{APP_SECRET, OAuthServer, REDIRECT, SvcProvisioner, managed};
use connective::model::{
    ConnectionStatus, CredentialKey, Health, HealthKind, PlaintextCodec, ReauthReason, Record, RecordKey,
    with_secret_codec,
};
use connective::oauth::runtime::{AccessToken, HttpTester, OAuthError, OAuthRuntime, TokenTester};
use connective::prelude::*;
use connective::store::{Batch, Change, Committed, MemoryStore, Op, Snapshot, Store, StoreError};

/// Access tokens live this long at the test server.
const TTL: u32 = 4;

fn crm(server: &OAuthServer) -> ConnectionSpec {
    crate::support::oauth_server::crm_spec(server)
}

struct Setup {
    registry: Arc<Registry>,
    runtime: OAuthRuntime,
    key: CredentialKey,
}

fn setup_on(
    server: &OAuthServer,
    store: impl Store,
    tune: impl FnOnce(
        connective::oauth::runtime::OAuthRuntimeBuilder,
    ) -> connective::oauth::runtime::OAuthRuntimeBuilder,
) -> Setup {
    setup_with(server, Registry::builder().store(store), tune)
}

fn setup_with(
    server: &OAuthServer,
    registry: connective::registry::RegistryBuilder,
    tune: impl FnOnce(
        connective::oauth::runtime::OAuthRuntimeBuilder,
    ) -> connective::oauth::runtime::OAuthRuntimeBuilder,
) -> Setup {
    let registry = Arc::new(registry.build().expect("registry"));
    let (id, _) = registry.create_connection(crm(server)).expect("create");
    let runtime = tune(
        registry
            .oauth_runtime()
            .http_timeout(Duration::from_secs(2))
            .retries(3, Duration::from_millis(50)),
    )
    .build()
    .expect("runtime");
    let key = CredentialKey::new(
        "acme".parse().unwrap(),
        id,
        "production".parse().unwrap(),
        Some("globex".parse().unwrap()),
    );
    Setup {
        registry,
        runtime,
        key,
    }
}

fn setup(server: &OAuthServer) -> Setup {
    setup_on(server, MemoryStore::new(), |b| b)
}

/// Authorizes `key` through the real server (consent over HTTP).
async fn authorize(s: &Setup, server: &OAuthServer) {
    let started = s
        .runtime
        .start_authorization(&s.key, REDIRECT, None)
        .await
        .expect("start");
    let callback = server.consent(started.url(), false).await;
    assert_eq!(callback.state, started.state());
    let code = callback.code.expect("a code");
    let key = s
        .runtime
        .complete_authorization(&callback.state, &code)
        .await
        .expect("complete");
    assert_eq!(key, s.key);
}

/// Integration `orders` maps every parameter of `crm` (default names).
fn map_orders(s: &Setup) {
    s.registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name_defaults("crm")
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
}

/// What `orders` resolves to in production for customer globex.
fn resolve_orders(s: &Setup) -> ResolvedEnv {
    let request = ResolveRequest::parse("acme", "orders", "production")
        .unwrap()
        .for_customer("globex")
        .unwrap();
    s.registry.resolve(&request).expect("resolve")
}

/// The stored token set's tokens, in plaintext (test only).
fn stored_tokens(store: &dyn Store, key: &CredentialKey) -> (String, Option<String>) {
    let (_, record) = store
        .get(&RecordKey::TokenSet(key.clone()))
        .expect("get")
        .expect("a token set");
    let json = with_secret_codec(Arc::new(PlaintextCodec), || serde_json::to_value(&record)).expect("json");
    let set = &json["token_set"];
    (
        set["access_token"].as_str().expect("access").to_owned(),
        set["refresh_token"].as_str().map(str::to_owned),
    )
}

/// Waits until the access token is due for a refresh (a quarter of its
/// lifetime before expiry).
async fn until_stale(token: &AccessToken) {
    let expires = token.expires_at().expect("expiry").0;
    let now = connective::model::Timestamp::now().0;
    let lead = u64::from(TTL) * 1000 / 4;
    let wait = (expires - lead).saturating_sub(now) + 50;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

async fn until_expired(token: &AccessToken) {
    let expires = token.expires_at().expect("expiry").0;
    let now = connective::model::Timestamp::now().0;
    tokio::time::sleep(Duration::from_millis(expires.saturating_sub(now) + 50)).await;
}

fn health(s: &Setup) -> Health {
    s.runtime.status(&s.key).health().clone()
}

macro_rules! server {
    () => {
        match OAuthServer::start(TTL) {
            Some(s) => s,
            None => return,
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_code_with_pkce_stores_the_token_set_and_makes_the_connection_active() {
    let server = server!();
    let s = setup(&server);
    assert_eq!(health(&s), Health::Untested);
    let started = s
        .runtime
        .start_authorization(&s.key, REDIRECT, None)
        .await
        .expect("start");
    assert!(started.url().contains("code_challenge_method=S256"), "PKCE S256");
    assert!(started.url().contains("code_challenge="));
    assert!(
        !format!("{started:?}").contains(started.state()),
        "Debug hides the state"
    );
    let callback = server.consent(started.url(), false).await;
    s.runtime
        .complete_authorization(&callback.state, callback.code.as_deref().expect("code"))
        .await
        .expect("complete");
    assert_eq!(health(&s), Health::Active);
    let token = s.runtime.access_token(&s.key).await.expect("token");
    let (access, refresh) = stored_tokens(&**s.registry.store(), &s.key);
    assert_eq!(token.expose(), access);
    assert!(refresh.is_some(), "a refresh token is kept");
    assert!(
        token.token_type().eq_ignore_ascii_case("bearer"),
        "{}",
        token.token_type()
    );
    let set = s.registry.oauth_records().token_set(&s.key).expect("indexed");
    assert_eq!(set.value.scopes(), ["api:read".to_string()]);
    let stats = server.stats().await;
    assert_eq!((stats.code, stats.refresh), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expired_or_reused_state_is_a_typed_error_and_stores_nothing() {
    let server = server!();
    let s = setup_on(&server, MemoryStore::new(), |b| {
        b.authorization_ttl(Duration::from_millis(300))
    });
    let no_tokens = |s: &Setup| {
        s.registry
            .store()
            .get(&RecordKey::TokenSet(s.key.clone()))
            .expect("get")
            .is_none()
    };

    let started = s
        .runtime
        .start_authorization(&s.key, REDIRECT, None)
        .await
        .expect("start");
    let forged = format!("{}x~acme", "A".repeat(42));
    for wrong in [
        "",
        "nonsense",
        forged.as_str(),
        "AAAAAAAAAAAAAAAAAAAA~other-project",
    ] {
        assert_eq!(
            s.runtime.complete_authorization(wrong, "code").await,
            Err(OAuthError::UnknownState),
            "{wrong:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let callback = server.consent(started.url(), false).await;
    let expired = s
        .runtime
        .complete_authorization(&callback.state, callback.code.as_deref().unwrap())
        .await;
    assert!(
        matches!(expired, Err(OAuthError::StateExpired { .. })),
        "{expired:?}"
    );
    assert!(no_tokens(&s));

    let s = setup_on(&server, MemoryStore::new(), |b| b);
    let started = s
        .runtime
        .start_authorization(&s.key, REDIRECT, None)
        .await
        .expect("start");
    let callback = server.consent(started.url(), false).await;
    let code = callback.code.clone().unwrap();
    s.runtime
        .complete_authorization(&callback.state, &code)
        .await
        .expect("first use");
    let before = stored_tokens(&**s.registry.store(), &s.key);
    let reused = s.runtime.complete_authorization(&callback.state, &code).await;
    assert!(matches!(reused, Err(OAuthError::StateUsed { .. })), "{reused:?}");
    assert_eq!(
        reused.expect_err("reused").to_string(),
        format!(
            "the authorization of connection crm (project scope, ID {}) in production for customer globex \
             of project acme was already used",
            s.key.connection
        )
    );
    assert_eq!(
        stored_tokens(&**s.registry.store(), &s.key),
        before,
        "a reused state stores nothing"
    );
    assert_eq!(server.stats().await.code, 1, "the code was exchanged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_denied_callback_records_why() {
    let server = server!();
    let s = setup(&server);
    let started = s
        .runtime
        .start_authorization(&s.key, REDIRECT, None)
        .await
        .expect("start");
    let callback = server.consent(started.url(), true).await;
    assert_eq!(callback.error.as_deref(), Some("access_denied"));
    let denied = s
        .runtime
        .deny_authorization(&callback.state, "access_denied")
        .await;
    assert!(
        matches!(&denied, Err(OAuthError::Denied { error, .. }) if error == "access_denied"),
        "{denied:?}"
    );
    assert!(matches!(
        health(&s),
        Health::NeedsReauthorization {
            reason: ReauthReason::ConsentDenied,
            ..
        }
    ));
    let again = s
        .runtime
        .deny_authorization(&callback.state, "access_denied")
        .await;
    assert!(
        matches!(again, Err(OAuthError::StateUsed { .. })),
        "single use: {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_callers_cause_one_refresh() {
    let server = server!();
    let s = setup(&server);
    authorize(&s, &server).await;
    let first = s.runtime.access_token(&s.key).await.expect("token");
    until_expired(&first).await;
    let before = server.stats().await;
    let mut tasks = Vec::new();
    for _ in 0..1000 {
        let (runtime, key) = (s.runtime.clone(), s.key.clone());
        tasks.push(tokio::spawn(async move { runtime.access_token(&key).await }));
    }
    let mut tokens = std::collections::HashSet::new();
    for t in tasks {
        tokens.insert(t.await.expect("task").expect("token").expose().to_owned());
    }
    let after = server.stats().await;
    assert_eq!(
        after.token - before.token,
        1,
        "one token request for 1,000 callers"
    );
    assert_eq!(after.refresh - before.refresh, 1);
    assert_eq!(tokens.len(), 1, "every caller got the refreshed token");
    assert!(!tokens.contains(first.expose()));
    let (access, _) = stored_tokens(&**s.registry.store(), &s.key);
    assert!(tokens.contains(&access), "the handed-out token is the stored one");
}

/// A store whose commits of a finished token set (no lease) fail while armed:
/// the store failing between the token response and the commit.
struct FlakyStore {
    inner: MemoryStore,
    fail_token_commits: Arc<AtomicBool>,
}

impl Store for FlakyStore {
    fn backend(&self) -> &'static str {
        "flaky"
    }
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.inner.load()
    }
    fn commit(&self, batch: &Batch) -> Result<Committed, StoreError> {
        let finished_set = batch
            .writes
            .iter()
            .any(|w| matches!(&w.op, Op::Put(Record::TokenSet(t)) if t.lease().is_none()));
        if finished_set && self.fail_token_commits.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                backend: "flaky",
                message: "injected".into(),
            });
        }
        self.inner.commit(batch)
    }
    fn find_commit(
        &self,
        token: connective::store::CommitToken,
        after: connective::model::Revision,
    ) -> Result<Option<Committed>, StoreError> {
        self.inner.find_commit(token, after)
    }
    fn changes_since(
        &self,
        after: connective::model::Revision,
        limit: usize,
    ) -> Result<Vec<Change>, StoreError> {
        self.inner.changes_since(after, limit)
    }
    fn get(&self, key: &RecordKey) -> Result<Option<(connective::model::Version, Record)>, StoreError> {
        self.inner.get(key)
    }
    fn revision(&self) -> Result<connective::model::Revision, StoreError> {
        self.inner.revision()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_is_stored_before_the_access_token_is_handed_out() {
    let server = server!();
    let fail = Arc::new(AtomicBool::new(false));
    let store = FlakyStore {
        inner: MemoryStore::new(),
        fail_token_commits: Arc::clone(&fail),
    };
    let s = setup_on(&server, store, |b| b);
    authorize(&s, &server).await;
    let first = s.runtime.access_token(&s.key).await.expect("token");
    let (_, old_refresh) = stored_tokens(&**s.registry.store(), &s.key);
    until_stale(&first).await;

    fail.store(true, Ordering::SeqCst);
    let refused = s.runtime.access_token(&s.key).await;
    // The token server rotated the refresh token; the store would not take it.
    assert_eq!(server.stats().await.refresh, 1);
    match &refused {
        // Still valid: the old access token serves, not the unstored new one.
        Ok(token) => assert_eq!(token.expose(), first.expose()),
        Err(e) => assert!(matches!(e, OAuthError::NotStored { .. }), "{e:?}"),
    }
    let (_, still) = stored_tokens(&**s.registry.store(), &s.key);
    assert_eq!(still, old_refresh, "nothing half-stored");

    fail.store(false, Ordering::SeqCst);
    let token = s
        .runtime
        .access_token(&s.key)
        .await
        .expect("stored on the next call");
    let (access, new_refresh) = stored_tokens(&**s.registry.store(), &s.key);
    assert_eq!(token.expose(), access);
    assert_ne!(
        new_refresh, old_refresh,
        "the rotated refresh token was kept and stored"
    );
    let stats = server.stats().await;
    assert_eq!(stats.refresh, 1, "no second refresh: nothing was lost");
    assert_eq!(health(&s), Health::Active);
    // And the stored refresh token works.
    until_stale(&token).await;
    s.runtime
        .access_token(&s.key)
        .await
        .expect("refresh with the stored token");
    assert_eq!(server.stats().await.refresh, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_is_refused_when_the_store_fails_and_the_token_expired() {
    let server = server!();
    let fail = Arc::new(AtomicBool::new(false));
    let store = FlakyStore {
        inner: MemoryStore::new(),
        fail_token_commits: Arc::clone(&fail),
    };
    let s = setup_on(&server, store, |b| b);
    authorize(&s, &server).await;
    let first = s.runtime.access_token(&s.key).await.expect("token");
    until_expired(&first).await;
    fail.store(true, Ordering::SeqCst);
    let refused = s.runtime.access_token(&s.key).await;
    assert!(
        matches!(refused, Err(OAuthError::NotStored { .. })),
        "{refused:?}"
    );
    fail.store(false, Ordering::SeqCst);
    s.runtime
        .access_token(&s.key)
        .await
        .expect("stored on the next call");
    assert_eq!(server.stats().await.refresh, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_retry_with_backoff_and_never_need_reauthorization() {
    let server = server!();
    // A base of 500 ms: the next retry across calls is 250-500 ms after the
    // failure, long enough for the checks below on a loaded machine (at 50 ms
    // a stalled scheduler made the retry time pass before they ran).
    let base = Duration::from_millis(500);
    let s = setup_on(&server, MemoryStore::new(), |b| b.retries(3, base));
    authorize(&s, &server).await;
    let first = s.runtime.access_token(&s.key).await.expect("token");
    until_expired(&first).await;

    // 500 on every request: three attempts, then failing with a next retry.
    server.fault(serde_json::json!({"mode": "error500"})).await;
    let before = server.stats().await.token;
    let called = connective::model::Timestamp::now();
    let err = s.runtime.access_token(&s.key).await.expect_err("server error");
    let answered = connective::model::Timestamp::now();
    assert!(matches!(err, OAuthError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert_eq!(server.stats().await.token - before, 3, "three attempts");
    let Health::Failing {
        attempts, next_retry, ..
    } = health(&s)
    else {
        panic!("failing expected: {:?}", health(&s));
    };
    assert_eq!(attempts, 1);
    // The next retry is the first backoff (base / 2 to base, jittered) after
    // the failure, which happened while the call ran.
    assert!(
        next_retry.since(called) >= base / 2,
        "{next_retry:?} vs {called:?}"
    );
    assert!(
        next_retry.since(answered) <= base,
        "{next_retry:?} vs {answered:?}"
    );
    // Before the next retry, callers are answered without a request.
    let before = server.stats().await.token;
    let asked = connective::model::Timestamp::now();
    assert!(s.runtime.access_token(&s.key).await.is_err());
    if asked < next_retry {
        assert_eq!(server.stats().await.token, before);
    }

    // 429 with Retry-After: 1 once, then served: the call waits and succeeds.
    server
        .fault(serde_json::json!({"mode": "rate429", "count": 1, "retryAfter": 1}))
        .await;
    let wait = next_retry.since(connective::model::Timestamp::now());
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    let started = std::time::Instant::now();
    let token = s
        .runtime
        .access_token(&s.key)
        .await
        .expect("served after Retry-After");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for Retry-After"
    );
    assert_eq!(health(&s), Health::Active);

    // Slow (past the 2 s HTTP timeout), then down: failing, never reauthorization.
    until_expired(&token).await;
    server
        .fault(serde_json::json!({"mode": "slow", "delayMs": 3000}))
        .await;
    let err = s.runtime.access_token(&s.key).await.expect_err("timeout");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(matches!(health(&s), Health::Failing { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_a_host_sets_to_the_longest_duration_never_panic() {
    // A refresh lease, a retry base and cap of `Duration::MAX`: "no limit".
    let mut server = server!();
    let s = setup_on(&server, MemoryStore::new(), |b| {
        b.lease_ttl(Duration::MAX)
            .retries(1, Duration::MAX)
            .retry_cap(Duration::MAX)
    });
    authorize(&s, &server).await;
    let first = s.runtime.access_token(&s.key).await.expect("token");
    until_stale(&first).await;
    let refreshed = s
        .runtime
        .access_token(&s.key)
        .await
        .expect("refreshed under a lease without end");
    assert_ne!(refreshed.expose(), first.expose());
    server.stop();
    until_expired(&refreshed).await;
    let err = s.runtime.access_token(&s.key).await.expect_err("down");
    assert!(err.is_transient(), "{err:?}");
    let Health::Failing { next_retry, .. } = health(&s) else {
        panic!("failing expected: {:?}", health(&s));
    };
    assert!(next_retry.since(connective::model::Timestamp::now()) > Duration::from_secs(86_400 * 365));
    // Answered from memory until the retry that never comes.
    let again = s.runtime.access_token(&s.key).await.expect_err("still down");
    assert!(again.is_transient(), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_makes_the_connection_failing_not_unauthorized() {
    let mut server = server!();
    let s = setup(&server);
    authorize(&s, &server).await;
    let first = s.runtime.access_token(&s.key).await.expect("token");
    server.stop();
    until_expired(&first).await;
    let err = s.runtime.access_token(&s.key).await.expect_err("down");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let Health::Failing { last_error, .. } = health(&s) else {
        panic!("failing expected: {:?}", health(&s));
    };
    assert!(last_error.contains("cannot connect"));
    assert!(
        s.registry
            .store()
            .get(&RecordKey::TokenSet(s.key.clone()))
            .unwrap()
            .is_some(),
        "the token set is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_needs_reauthorization() {
    let server = server!();
    let s = setup(&server);
    authorize(&s, &server).await;
    let first = s.runtime.access_token(&s.key).await.expect("token");
    let (_, refresh) = stored_tokens(&**s.registry.store(), &s.key);
    server.revoke(&refresh.expect("refresh token")).await;
    until_expired(&first).await;
    let err = s.runtime.access_token(&s.key).await.expect_err("revoked");
    assert_eq!(
        err,
        OAuthError::NeedsReauthorization {
            key: s.key.clone(),
            connection: Some((Scope::Project, "crm".parse().expect("name"))),
            reason: ReauthReason::InvalidGrant
        }
    );
    // Named as the rest of the crate names a connection, ID kept.
    assert_eq!(
        err.to_string(),
        format!(
            "connection crm (project scope, ID {}) in production for customer globex of project acme \
             needs re-authorization: the token server refused the refresh token (invalid_grant)",
            s.key.connection
        )
    );
    assert!(matches!(
        health(&s),
        Health::NeedsReauthorization {
            reason: ReauthReason::InvalidGrant,
            ..
        }
    ));
    let before = server.stats().await.token;
    assert!(s.runtime.access_token(&s.key).await.is_err());
    assert_eq!(
        server.stats().await.token,
        before,
        "no more requests until a person acts"
    );
    // A person re-authorizes: active again.
    authorize(&s, &server).await;
    s.runtime
        .access_token(&s.key)
        .await
        .expect("token after re-authorization");
    assert_eq!(health(&s), Health::Active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_used_twice_revokes_the_grant_and_needs_reauthorization() {
    let server = server!();
    let s = setup(&server);
    authorize(&s, &server).await;
    let first = s.runtime.access_token(&s.key).await.expect("token");
    let (_, spent) = stored_tokens(&**s.registry.store(), &s.key);
    until_stale(&first).await;
    let second = s.runtime.access_token(&s.key).await.expect("refreshed");
    // Someone replays the rotated-away refresh token: the server revokes the grant.
    let replay = server.refresh_directly(&spent.expect("refresh token")).await;
    assert_eq!(replay.as_u16(), 400);
    until_expired(&second).await;
    let err = s.runtime.access_token(&s.key).await.expect_err("grant revoked");
    assert!(
        matches!(
            err,
            OAuthError::NeedsReauthorization {
                reason: ReauthReason::InvalidGrant,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_secret_reaches_an_error_debug_or_status() {
    let server = server!();
    let s = setup(&server);
    authorize(&s, &server).await;
    let token = s.runtime.access_token(&s.key).await.expect("token");
    let (access, refresh) = stored_tokens(&**s.registry.store(), &s.key);
    let refresh = refresh.expect("refresh token");
    // A server that echoes the refresh token in its error description.
    server
        .fault(serde_json::json!({"mode": "echo", "count": 1}))
        .await;
    until_expired(&token).await;
    let err = s.runtime.access_token(&s.key).await.expect_err("refused");
    assert!(matches!(err, OAuthError::Refused { .. }), "{err:?}");
    let status = s.runtime.status(&s.key);
    let texts = [
        err.to_string(),
        format!("{err:?}"),
        format!("{token:?}"),
        format!("{:?}", s.runtime),
        format!("{status:?}"),
        format!("{:?}", s.registry.oauth_records().token_set(&s.key)),
        format!("{:?}", s.registry.oauth_records()),
        format!(
            "{:?}",
            s.registry.store().get(&RecordKey::TokenSet(s.key.clone()))
        ),
    ];
    for text in &texts {
        for secret in [access.as_str(), refresh.as_str(), APP_SECRET] {
            assert!(!text.contains(secret), "a secret leaked into {text}");
        }
    }
    assert!(err.to_string().contains("[REDACTED]"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_share_one_cache_per_application_and_scopes() {
    let server = server!();
    let registry = Arc::new(
        Registry::builder()
            .provisioner(SvcProvisioner {
                token_url: server.token_url(),
            })
            .build()
            .expect("registry"),
    );
    let runtime = registry
        .oauth_runtime()
        .retries(1, Duration::from_millis(10))
        .build()
        .expect("runtime");
    let key = |id| CredentialKey::new("acme".parse().unwrap(), id, "production".parse().unwrap(), None);
    let (a, _) = registry
        .create_connection(managed("inventory", "api:read"))
        .unwrap();
    let (b, _) = registry
        .create_connection(managed("billing", "api:read"))
        .unwrap();
    let (c, _) = registry
        .create_connection(managed("ledger", "api:read api:write"))
        .unwrap();
    let ta = runtime.access_token(&key(a)).await.expect("a");
    let tb = runtime.access_token(&key(b)).await.expect("b");
    assert_eq!(
        ta.expose(),
        tb.expose(),
        "one cache for the application and scopes"
    );
    assert_eq!(server.stats().await.client_credentials, 1);
    let tc = runtime.access_token(&key(c)).await.expect("c");
    assert_ne!(tc.expose(), ta.expose());
    assert_eq!(
        server.stats().await.client_credentials,
        2,
        "other scopes, another cache"
    );
    assert_eq!(runtime.status(&key(a)).health(), &Health::Active);

    registry
        .rotate_app_secret(&"acme".parse().unwrap(), &AppOwner::Project)
        .expect("rotate");
    let before = server.stats().await.token;
    let err = runtime
        .access_token(&key(a))
        .await
        .expect_err("the new secret is unknown to the server");
    assert_eq!(
        server.stats().await.token - before,
        1,
        "the cached token was not served after rotation"
    );
    assert!(
        matches!(&err, OAuthError::Refused { error, .. } if error == "invalid_client"),
        "{err:?}"
    );
    assert!(!err.to_string().contains("svc-rotated"), "{err}");
    assert!(
        matches!(runtime.status(&key(a)).health(), Health::Failing { .. }),
        "not a person's job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_are_stored_listed_by_status_and_on_the_change_feed() {
    let server = server!();
    let s = setup(&server);
    let revision = s.registry.store().revision().unwrap();
    authorize(&s, &server).await;
    let active = s
        .registry
        .oauth_records()
        .statuses(Some(HealthKind::Active), None);
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].value.key(), &s.key);
    assert!(
        s.registry
            .oauth_records()
            .statuses(Some(HealthKind::Failing), None)
            .is_empty()
    );
    let feed = s.registry.store().changes_since(revision, 100).unwrap();
    let statuses: Vec<&ConnectionStatus> = feed
        .iter()
        .filter_map(|c| match c.record() {
            Some(Record::Status(st)) => Some(&**st),
            _ => None,
        })
        .collect();
    assert_eq!(statuses.last().map(|st| st.health()), Some(&Health::Active));
    // Another registry on the store reads the same once it catches up.
    let other = Registry::builder()
        .shared_store(Arc::clone(s.registry.store()))
        .build()
        .unwrap();
    assert_eq!(
        other
            .oauth_records()
            .statuses(Some(HealthKind::Active), None)
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testers_record_latency_and_message_in_the_status() {
    let server = server!();
    let s = setup(&server);
    authorize(&s, &server).await;
    let result = s
        .runtime
        .test_connection(&s.key, &TokenTester)
        .await
        .expect("test");
    assert!(result.ok, "{result:?}");
    assert!(result.message.contains("access token was obtained"));
    let reach = HttpTester::reachability(format!("{}/.well-known/openid-configuration", server.base()));
    let result = s.runtime.test_connection(&s.key, &reach).await.expect("test");
    assert!(result.ok, "{result:?}");
    assert_eq!(s.runtime.status(&s.key).last_test().map(|t| t.ok), Some(true));
    let closed = HttpTester::reachability("http://127.0.0.1:9/health");
    let result = s.runtime.test_connection(&s.key, &closed).await.expect("test");
    assert!(!result.ok);
    assert!(result.message.contains("cannot connect"), "{result:?}");
    assert!(matches!(health(&s), Health::Failing { .. }));
    // The test credentials are the `test` environment's: never authorized.
    let test_key = CredentialKey {
        environment: "test".parse().unwrap(),
        ..s.key.clone()
    };
    let result = s
        .runtime
        .test_connection(&test_key, &TokenTester)
        .await
        .expect("test");
    assert!(!result.ok);
    assert!(matches!(
        s.runtime.status(&test_key).health(),
        Health::NeedsReauthorization {
            reason: ReauthReason::NeverAuthorized,
            ..
        }
    ));
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_sets_are_sealed_at_rest() {
    use connective::store::SqliteStore;
    use connective::store::seal::{KeyRing, SealKey};
    let server = server!();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth.db");
    let store = SqliteStore::open(&path, KeyRing::new(SealKey::from_bytes("k1", &[7; 32]).unwrap())).unwrap();
    let s = setup_on(&server, store, |b| b);
    authorize(&s, &server).await;
    let (access, refresh) = stored_tokens(&**s.registry.store(), &s.key);
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let text = String::from_utf8_lossy(&bytes);
    for secret in [access, refresh.unwrap()] {
        assert!(!text.contains(&secret), "a token is stored in plaintext");
    }
    assert!(text.contains("cs1:k1:"), "sealed values are there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolution_embeds_no_access_token_unless_the_host_asks() {
    let server = server!();
    let s = setup(&server);
    authorize(&s, &server).await;
    map_orders(&s);
    let env = resolve_orders(&s);
    let token = s.runtime.access_token(&s.key).await.expect("token");
    assert!(
        env.iter().all(|v| v.value().expose() != token.expose()),
        "no token at deploy time"
    );
    let env = s
        .runtime
        .with_token_variable(env, &s.key, "CRM_ACCESS_TOKEN".parse().unwrap())
        .await
        .expect("token variable");
    let var = env.get("CRM_ACCESS_TOKEN").expect("the variable");
    assert!(var.value().is_secret());
    assert_eq!(var.value().expose(), token.expose());
    assert_eq!(
        var.provenance().source,
        connective::resolve::ValueSource::AccessToken {
            expires_at: token.expires_at()
        }
    );
    assert!(
        var.provenance().to_string().contains("expires at"),
        "{}",
        var.provenance()
    );
    assert!(!env.to_string().contains(token.expose()), "Display redacts it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_variable_with_a_reserved_name_is_refused_naming_it() {
    let server = server!();
    let reserved = connective::model::ReservedNames::default().with_name("CRM_TOKEN".parse().unwrap());
    let s = setup_with(
        &server,
        Registry::builder().policy(connective::model::ResolvePolicy::default().with_reserved(reserved)),
        |b| b,
    );
    authorize(&s, &server).await;
    map_orders(&s);
    let env = || resolve_orders(&s);
    // A default reserved name, a reserved prefix and the host's own name.
    for name in ["PATH", "LD_PRELOAD", "CRM_TOKEN"] {
        let refused = s
            .runtime
            .with_token_variable(env(), &s.key, name.parse().unwrap())
            .await;
        match &refused {
            Err(e @ OAuthError::ReservedVariable { name: got, reason }) => {
                assert_eq!(got.as_str(), name);
                assert!(!reason.is_empty());
                assert!(e.to_string().contains(name), "{e}");
            }
            other => panic!("{name}: expected a reserved-variable refusal, got {other:?}"),
        }
    }
    let env = s
        .runtime
        .with_token_variable(env(), &s.key, "CRM_ACCESS_TOKEN".parse().unwrap())
        .await
        .expect("a name nobody reserved");
    assert!(env.get("CRM_ACCESS_TOKEN").is_some());
}

/// The pending authorizations in `store`.
fn pending_in(store: &dyn Store) -> usize {
    store
        .load()
        .expect("load")
        .records
        .iter()
        .filter(|(_, r)| matches!(r, Record::PendingAuthorization(_)))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_pending_authorizations_are_removed() {
    const LIFETIME: Duration = Duration::from_secs(4);
    let server = server!();
    // Starting purges every time here; the callback of an expired one
    // removes it too. The lifetime leaves room for three starts and a
    // consent on a loaded machine (300 ms did not, under a busy CI).
    let s = setup_on(&server, MemoryStore::new(), |b| {
        b.authorization_ttl(LIFETIME).purge_interval(Duration::ZERO)
    });
    let store = Arc::clone(s.registry.store());
    let started = std::time::Instant::now();
    let open = s
        .runtime
        .start_authorization(&s.key, REDIRECT, None)
        .await
        .expect("start");
    let used = s
        .runtime
        .start_authorization(&s.key, REDIRECT, None)
        .await
        .expect("start");
    let callback = server.consent(used.url(), false).await;
    s.runtime
        .complete_authorization(&callback.state, callback.code.as_deref().unwrap())
        .await
        .expect("complete");
    let expiring = s
        .runtime
        .start_authorization(&s.key, REDIRECT, None)
        .await
        .expect("start");
    assert!(
        started.elapsed() < LIFETIME,
        "the test itself took longer than the lifetime"
    );
    assert_eq!(
        pending_in(&*store),
        3,
        "used and open ones stay until they expire"
    );
    assert_eq!(s.registry.oauth_records().pending_authorizations(), 3);
    tokio::time::sleep(LIFETIME + Duration::from_millis(200)).await;

    // A late callback finds its authorization expired and removes it.
    let late = s.runtime.complete_authorization(expiring.state(), "code").await;
    assert!(matches!(late, Err(OAuthError::StateExpired { .. })), "{late:?}");
    assert_eq!(pending_in(&*store), 2);
    assert_eq!(
        s.runtime.complete_authorization(expiring.state(), "code").await,
        Err(OAuthError::UnknownState)
    );

    // Starting another removes the expired rest (open and used alike).
    let fresh = s
        .runtime
        .start_authorization(&s.key, REDIRECT, None)
        .await
        .expect("start");
    assert_eq!(pending_in(&*store), 1, "only the fresh one is left");
    assert_eq!(s.registry.oauth_records().pending_authorizations(), 1);
    assert_eq!(
        s.runtime.complete_authorization(open.state(), "code").await,
        Err(OAuthError::UnknownState)
    );
    assert_eq!(
        s.runtime.purge_expired_authorizations().await,
        Ok(0),
        "nothing expired is left"
    );
    tokio::time::sleep(LIFETIME + Duration::from_millis(200)).await;
    assert_eq!(s.runtime.purge_expired_authorizations().await, Ok(1));
    assert_eq!(pending_in(&*store), 0);
    drop(fresh);
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_connection_removes_its_tokens_statuses_and_pending_authorizations() {
    use connective::store::SqliteStore;
    use connective::store::seal::{KeyRing, SealKey};
    let ring = || KeyRing::new(SealKey::from_bytes("k1", &[7; 32]).unwrap());
    let server = server!();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("oauth.db");
    let s = setup_on(&server, SqliteStore::open(&path, ring()).unwrap(), |b| b);
    // Another connection with records of its own, which must stay.
    let (other, _) = s
        .registry
        .create_connection(
            ConnectionSpec::project("acme", "erp")
                .auth(connective::model::AuthScheme::OAuth2(
                    connective::model::OAuthClient::Supplied,
                ))
                .param(Param::plain("AuthorizeURL").default(server.authorize_url()))
                .param(Param::plain("TokenURL").default(server.token_url()))
                .param(Param::plain("ClientID").default(crate::support::oauth_server::APP_ID))
                .param(Param::secret("ClientSecret").default(APP_SECRET))
                .param(Param::plain("Scopes").default("api:read"))
                .build()
                .unwrap(),
        )
        .expect("create erp");
    let other_key = CredentialKey::new(
        "acme".parse().unwrap(),
        other,
        "production".parse().unwrap(),
        None,
    );
    let t = Setup {
        registry: Arc::clone(&s.registry),
        runtime: s.runtime.clone(),
        key: other_key.clone(),
    };
    authorize(&t, &server).await;

    // The connection: a token set and a status (two customers), a used and an
    // open pending authorization.
    authorize(&s, &server).await;
    let second = CredentialKey::new(
        "acme".parse().unwrap(),
        s.key.connection,
        "development".parse().unwrap(),
        None,
    );
    // No tokens for development: the test fails, and says so in a status.
    let _ = s.runtime.test_connection(&second, &TokenTester).await;
    s.runtime
        .start_authorization(&s.key, REDIRECT, None)
        .await
        .expect("start");
    let of = |records: &[(connective::model::Version, Record)], id| {
        records
            .iter()
            .filter(|(_, r)| match r {
                Record::TokenSet(t) => t.key().connection == id,
                Record::Status(st) => st.key().connection == id,
                Record::PendingAuthorization(p) => p.credentials().connection == id,
                _ => false,
            })
            .count()
    };
    let before = s.registry.store().load().unwrap().records;
    assert_eq!(
        of(&before, s.key.connection),
        5,
        "1 token set, 2 statuses, 2 pending"
    );
    let kept = of(&before, other);
    assert_eq!(kept, 3, "erp: a token set, a status, a used authorization");

    let project: ProjectId = "acme".parse().unwrap();
    let version = s.registry.connection(&project, s.key.connection).unwrap().version;
    s.registry
        .delete_connection(&project, s.key.connection, version, DeleteMode::Refuse)
        .expect("delete");
    assert!(s.registry.oauth_records().token_set(&s.key).is_none());
    assert!(s.registry.oauth_records().status(&second).is_none());
    assert_eq!(s.registry.oauth_records().pending_authorizations(), 1, "erp's");
    let deleted = s.key.connection;
    drop(t);
    drop(s);

    // What is on disk, read by a store opened afresh.
    let records = SqliteStore::open(&path, ring()).unwrap().load().unwrap().records;
    assert_eq!(
        of(&records, deleted),
        0,
        "nothing of the deleted connection is left"
    );
    assert_eq!(
        of(&records, other),
        kept,
        "the other connection keeps its records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_arriving_after_the_connection_was_deleted_leaves_no_status() {
    let server = server!();
    // Three attempts 400 to 800 ms apart: the refresh is under way for a
    // while.
    let s = setup_on(&server, MemoryStore::new(), |b| {
        b.retries(3, Duration::from_millis(800))
    });
    authorize(&s, &server).await;
    let first = s.runtime.access_token(&s.key).await.expect("token");
    until_expired(&first).await;
    server.fault(serde_json::json!({"mode": "error500"})).await;
    let refresh = {
        let (runtime, key) = (s.runtime.clone(), s.key.clone());
        tokio::spawn(async move { runtime.access_token(&key).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.stats().await.token > 0, "the refresh is under way");
    let project: ProjectId = "acme".parse().unwrap();
    let version = s.registry.connection(&project, s.key.connection).unwrap().version;
    s.registry
        .delete_connection(&project, s.key.connection, version, DeleteMode::Refuse)
        .expect("delete while refreshing");
    let err = refresh.await.unwrap().expect_err("the server fails");
    assert!(matches!(err, OAuthError::Unavailable { .. }), "{err:?}");
    let left: Vec<_> = s
        .registry
        .store()
        .load()
        .unwrap()
        .records
        .into_iter()
        .filter(|(_, r)| matches!(r, Record::Status(_) | Record::TokenSet(_)))
        .map(|(_, r)| r.key().to_string())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_out_tokens_are_recorded_as_reads_when_the_host_audits_them() {
    use connective::model::{AuditKind, AuditQuery, SecretRead};
    use connective::registry::ReadAudit;
    let server = server!();
    let s = setup_with(
        &server,
        Registry::builder()
            .audit("service:host".parse().unwrap())
            .audit_reads(ReadAudit::synchronous()),
        |b| b,
    );
    authorize(&s, &server).await;
    assert!(
        s.registry.audit(&AuditQuery::all().reads()).unwrap().is_empty(),
        "authorizing hands no token out"
    );
    let alice: connective::model::ActorId = "alice@acme.example".parse().unwrap();
    let token = s
        .runtime
        .acting_as(alice.clone())
        .access_token(&s.key)
        .await
        .expect("token");
    let cached = s.runtime.cached_access_token(&s.key).expect("cached");
    assert_eq!(cached.expose(), token.expose());
    let reads = s.registry.audit(&AuditQuery::all().reads()).unwrap();
    assert_eq!(
        reads.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
        [alice.as_str(), "service:host"]
    );
    let connection = s.registry.connection(&s.key.project, s.key.connection).unwrap();
    for entry in &reads {
        assert_eq!(entry.kind(), AuditKind::Read);
        assert_eq!(
            entry.secret_read(),
            Some(&SecretRead::AccessToken {
                key: s.key.clone(),
                connection: Some((connection.value.scope().clone(), connection.value.name().clone())),
            })
        );
    }
    assert_eq!(
        s.registry
            .audit(
                &AuditQuery::all()
                    .of_record(RecordKey::TokenSet(s.key.clone()))
                    .reads()
            )
            .unwrap()
            .len(),
        2
    );
    let trail = s.registry.audit(&AuditQuery::all()).unwrap();
    let text = format!("{trail:?} {}", serde_json::to_string(&trail).unwrap());
    let (access, refresh) = stored_tokens(&**s.registry.store(), &s.key);
    assert!(!text.contains(&access), "an access token reached the audit trail");
    assert!(!text.contains(&refresh.expect("a refresh token")));
}
