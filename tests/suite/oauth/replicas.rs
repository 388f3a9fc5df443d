//! Two registries (host replicas) on one PostgreSQL database, each with its
//! own OAuth runtime, against a real authorization server: one refresh for
//! all their callers, the tokens sealed in the database.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::support::oauth_server::{OAuthServer, REDIRECT};
use connective::model::{CredentialKey, Health, PlaintextCodec, RecordKey, Timestamp, with_secret_codec};
use connective::oauth::runtime::OAuthRuntime;
use connective::prelude::*;
use connective::registry::Follower;
use connective::store::seal::{KeyRing, SealKey};
use connective::test_kit::postgres::{TestDatabase, database};

fn ring() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("k1", &[5; 32]).expect("key"))
}

fn crm(server: &OAuthServer) -> ConnectionSpec {
    crate::support::oauth_server::crm_spec(server)
}

/// Runs `scenario` with the OAuth server (access tokens living 4 s) and a
/// fresh database `name` on a tokio runtime; skips (or fails under
/// `CI=true`) without them. They are dropped outside the runtime (dropping
/// the database blocks).
fn with_server_and_database<F: std::future::Future<Output = ()>>(
    name: &str,
    scenario: impl FnOnce(Arc<OAuthServer>, Arc<TestDatabase>) -> F,
) {
    let Some(server) = OAuthServer::start(4) else {
        return;
    };
    // The test kit's database set-up blocks: outside the async runtime.
    let Some(db) = database(name) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let (server, db) = (Arc::new(server), Arc::new(db));
    runtime.block_on(scenario(Arc::clone(&server), Arc::clone(&db)));
    drop(runtime);
}

/// Two registries (replicas A and B) on one database, following its feed.
struct Replicas {
    a: Arc<Registry>,
    b: Arc<Registry>,
    /// The crm connection's key (production, no customer).
    key: CredentialKey,
    _followers: (Follower, Follower),
}

/// Opens two registries on `db`; A creates the crm connection, and B has
/// seen it when this returns.
async fn two_replicas(server: &OAuthServer, db: &TestDatabase) -> Replicas {
    // The stores are synchronous: they do their blocking off the runtime's
    // threads themselves.
    let open = || {
        let store = db.open(ring()).expect("store");
        Arc::new(Registry::builder().store(store).build().expect("registry"))
    };
    let (a, b) = (open(), open());
    let (id, _) = a.create_connection(crm(server)).expect("create");
    let key = CredentialKey::new("acme".parse().unwrap(), id, "production".parse().unwrap(), None);
    let followers = (
        a.follow(Duration::from_millis(20)),
        b.follow(Duration::from_millis(20)),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.connection(&key.project, id).is_none() {
        assert!(std::time::Instant::now() < deadline, "B never saw the connection");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Replicas {
        a,
        b,
        key,
        _followers: followers,
    }
}

#[test]
fn two_replicas_on_postgres_refresh_a_token_set_once() {
    with_server_and_database("oauth-replicas", |server, db| async move {
        refresh_once(&server, &db).await
    });
}

async fn refresh_once(server: &OAuthServer, db: &TestDatabase) {
    let Replicas {
        a,
        b,
        key,
        _followers,
    } = two_replicas(server, db).await;
    let runtime = |r: &Arc<Registry>| -> OAuthRuntime {
        r.oauth_runtime()
            .lease_poll(Duration::from_millis(10))
            .build()
            .expect("runtime")
    };
    let (ra, rb) = (runtime(&a), runtime(&b));
    let started = ra.start_authorization(&key, REDIRECT, None).await.expect("start");
    let callback = server.consent(started.url(), false).await;
    // The callback lands on the other replica.
    rb.complete_authorization(&callback.state, callback.code.as_deref().expect("code"))
        .await
        .expect("complete on B");
    let first = ra.access_token(&key).await.expect("A's token");
    let expires = first.expires_at().expect("expiry").0;
    tokio::time::sleep(Duration::from_millis(
        expires.saturating_sub(Timestamp::now().0) + 50,
    ))
    .await;

    // A slow token server: the loser replica must find the winner's lease
    // and wait for its result, not refresh again.
    server
        .fault(serde_json::json!({"mode": "slow", "delayMs": 400, "count": 4}))
        .await;
    let before = server.stats().await;
    let mut tasks = Vec::new();
    for i in 0..400 {
        let (runtime, key) = (if i % 2 == 0 { ra.clone() } else { rb.clone() }, key.clone());
        tasks.push(tokio::spawn(async move { runtime.access_token(&key).await }));
    }
    let mut tokens = HashSet::new();
    for t in tasks {
        tokens.insert(t.await.expect("task").expect("token").expose().to_owned());
    }
    let after = server.stats().await;
    assert_eq!(after.refresh - before.refresh, 1, "one refresh for two replicas");
    assert_eq!(after.token - before.token, 1, "one token request");
    assert_eq!(tokens.len(), 1, "both replicas hand out the one new token");
    assert!(!tokens.contains(first.expose()));
    assert_eq!(ra.status(&key).health(), &Health::Active);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rb.status(&key).health() != &Health::Active {
        assert!(std::time::Instant::now() < deadline, "B never saw the status");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Sealed at rest: neither token is in the database in plaintext.
    let (_, record) = {
        let store = Arc::clone(a.store());
        let k = RecordKey::TokenSet(key.clone());
        tokio::task::spawn_blocking(move || store.get(&k))
            .await
            .unwrap()
            .unwrap()
            .unwrap()
    };
    let json = with_secret_codec(Arc::new(PlaintextCodec), || serde_json::to_value(&record)).unwrap();
    let refresh = json["token_set"]["refresh_token"].as_str().unwrap().to_owned();
    let dump = db.pg_dump().expect("pg_dump");
    let text = String::from_utf8_lossy(&dump);
    assert!(
        !text.contains(&refresh),
        "the refresh token is stored in plaintext"
    );
    for t in &tokens {
        assert!(
            !text.contains(t.as_str()),
            "the access token is stored in plaintext"
        );
    }
}

#[test]
fn two_replicas_purging_at_once_remove_each_expired_authorization_once() {
    with_server_and_database("oauth-purge", |server, db| async move {
        let Replicas {
            a,
            b,
            key,
            _followers,
        } = two_replicas(&server, &db).await;
        let runtime = |r: &Arc<Registry>| -> OAuthRuntime {
            r.oauth_runtime()
                .authorization_ttl(Duration::from_millis(500))
                .purge_interval(Duration::MAX)
                .build()
                .expect("runtime")
        };
        let (ra, rb) = (runtime(&a), runtime(&b));
        for r in [&ra, &rb, &ra, &rb, &ra] {
            r.start_authorization(&key, REDIRECT, None).await.expect("start");
        }
        // Each replica learns of the other's from the change feed.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while a.oauth_records().pending_authorizations() < 5 || b.oauth_records().pending_authorizations() < 5
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the replicas never saw every authorization"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        let (x, y) = tokio::join!(
            ra.purge_expired_authorizations(),
            rb.purge_expired_authorizations()
        );
        let (x, y) = (x.expect("A purges"), y.expect("B purges"));
        assert_eq!(x + y, 5, "each removed once: A {x}, B {y}");
        let store = Arc::clone(a.store());
        let left = tokio::task::spawn_blocking(move || store.load())
            .await
            .unwrap()
            .unwrap()
            .records
            .iter()
            .filter(|(_, r)| matches!(r, connective::model::Record::PendingAuthorization(_)))
            .count();
        assert_eq!(left, 0, "no pending authorization is left in the database");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while a.oauth_records().pending_authorizations() + b.oauth_records().pending_authorizations() > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "an index kept a removed authorization"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(ra.purge_expired_authorizations().await, Ok(0));
    });
}
