//! With the `tracing` feature, the OAuth runtime's calls open spans that
//! name the connection (project, connection, environment, customer) or the
//! application and say the outcome, and never carry a token, secret, code
//! or `state`.

use std::sync::Arc;
use std::time::Duration;

use connective::model::{AppOwner, CredentialKey, PlaintextCodec, RecordKey, with_secret_codec};
use connective::oauth::runtime::TokenTester;
use connective::prelude::*;

use crate::support::oauth_server::{
    APP_SECRET, OAuthServer, REDIRECT, SVC_SECRET, SvcProvisioner, crm_spec, managed,
};
use crate::support::spans::Capture;

/// The token set's tokens in the store, in plaintext (test only).
fn stored_tokens(registry: &Registry, key: &CredentialKey) -> Vec<String> {
    let (_, record) = registry
        .store()
        .get(&RecordKey::TokenSet(key.clone()))
        .expect("get")
        .expect("a token set");
    let json = with_secret_codec(Arc::new(PlaintextCodec), || serde_json::to_value(&record)).expect("json");
    ["access_token", "refresh_token"]
        .iter()
        .filter_map(|f| json["token_set"][f].as_str().map(str::to_owned))
        .collect()
}

/// The environment variable that makes [`spans_child`] run.
const CHILD: &str = "CONNECTIVE_OAUTH_SPANS_CHILD";

/// Runs [`spans_child`] in a process of its own (see
/// [`crate::support::child`]).
#[test]
fn runtime_spans_name_the_connection_and_never_a_secret() {
    crate::support::child::run("oauth::spans::spans_child", CHILD);
}

/// The scenario, run by the test above in a process of its own (with
/// [`CHILD`] set); does nothing otherwise.
#[test]
fn spans_child() {
    if !crate::support::child::is_child(CHILD) {
        return;
    }
    // Access tokens live 2 s: a refresh is due half a second later.
    let Some(server) = OAuthServer::start(2) else {
        return;
    };
    let capture = Capture::default();
    let log = capture.0.clone();
    let metas = capture.1.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let mut secrets: Vec<String> = vec![APP_SECRET.into(), SVC_SECRET.into()];
    let (key, app_key) = tracing::subscriber::with_default(capture, || {
        rt.block_on(async {
            let registry = Arc::new(
                Registry::builder()
                    .provisioner(SvcProvisioner {
                        token_url: server.token_url(),
                    })
                    .build()
                    .expect("registry"),
            );
            let (id, _) = registry.create_connection(crm_spec(&server)).expect("create");
            let (app_id, _) = registry
                .create_connection(managed("inventory", "api:read"))
                .expect("create managed");
            let runtime = registry.oauth_runtime().build().expect("runtime");
            let key = CredentialKey::new(
                "acme".parse().unwrap(),
                id,
                "production".parse().unwrap(),
                Some("globex".parse().unwrap()),
            );
            let app_key = CredentialKey::new(
                "acme".parse().unwrap(),
                app_id,
                "production".parse().unwrap(),
                None,
            );

            let started = runtime
                .start_authorization(&key, REDIRECT, None)
                .await
                .expect("start");
            let callback = server.consent(started.url(), false).await;
            let code = callback.code.clone().expect("a code");
            secrets.extend([started.state().to_owned(), code.clone()]);
            runtime
                .complete_authorization(&callback.state, &code)
                .await
                .expect("complete");
            secrets.extend(stored_tokens(&registry, &key));
            // A reused state: a refused completion is traced too.
            assert!(
                runtime
                    .complete_authorization(&callback.state, &code)
                    .await
                    .is_err()
            );

            let token = runtime.access_token(&key).await.expect("token");
            tokio::time::sleep(Duration::from_millis(
                token
                    .expires_at()
                    .expect("expiry")
                    .0
                    .saturating_sub(connective::model::Timestamp::now().0),
            ))
            .await;
            let refreshed = runtime.access_token(&key).await.expect("refreshed");
            assert_ne!(refreshed.expose(), token.expose(), "a refresh was made");
            secrets.extend(stored_tokens(&registry, &key));

            let app_token = runtime.access_token(&app_key).await.expect("client credentials");
            secrets.push(app_token.expose().to_owned());
            runtime
                .app_token(&"acme".parse().unwrap(), &AppOwner::Project, &["api:read"])
                .await
                .expect("app token");
            runtime.test_connection(&key, &TokenTester).await.expect("test");

            let denied = runtime
                .start_authorization(&key, REDIRECT, None)
                .await
                .expect("start");
            secrets.push(denied.state().to_owned());
            assert!(
                runtime
                    .deny_authorization(denied.state(), "access_denied")
                    .await
                    .is_err()
            );
            (key, app_key)
        })
    });
    let log = log.lock().unwrap().join("\n");
    let who = format!(
        "project=acme connection={} environment=production customer=\"globex\"",
        key.connection
    );
    for span in [
        "connective.oauth.authorize.start",
        "connective.oauth.authorize.complete",
        "connective.oauth.authorize.deny",
        "connective.oauth.token",
        "connective.oauth.refresh",
        "connective.oauth.test",
    ] {
        assert!(log.contains(&format!("span {span}")), "no {span} span:\n{log}");
    }
    for expected in [
        format!("span connective.oauth.authorize.start {who}"),
        format!("span connective.oauth.token {who}"),
        format!("span connective.oauth.refresh {who}"),
        format!("span connective.oauth.test {who}"),
        format!(
            "span connective.oauth.token project=acme connection={} environment=production customer=\"\"",
            app_key.connection
        ),
        "span connective.oauth.client_credentials project=acme owner=project application".into(),
    ] {
        assert!(log.contains(&expected), "missing {expected:?} in:\n{log}");
    }
    // A completion or denial learns whose it is from the pending
    // authorization, and records it with the outcome.
    let completions = span_ids(&log, "connective.oauth.authorize.complete");
    let denials = span_ids(&log, "connective.oauth.authorize.deny");
    assert_eq!((completions.len(), denials.len()), (2, 1), "{log}");
    for (id, outcome) in [
        (completions[0], "ok"),
        (completions[1], "state_used"),
        (denials[0], "denied"),
    ] {
        for field in [
            format!("connection={}", key.connection),
            "customer=\"globex\"".into(),
            format!("outcome=\"{outcome}\""),
        ] {
            assert!(
                log.lines().any(|l| l == format!("record {id} {field}")),
                "span {id} has no {field}:\n{log}"
            );
        }
    }
    // The README's tracing table names each of them and its fields.
    let readme = include_str!("../../../README.md");
    let table = readme
        .split("**Tracing (feature `tracing`).**")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").nth(1))
        .expect("the README has a tracing table");
    for meta in metas
        .lock()
        .unwrap()
        .iter()
        .filter(|m| m.name().starts_with("connective.oauth"))
    {
        assert!(
            table.contains(&format!("`{}`", meta.name())),
            "{} is not in the README",
            meta.name()
        );
        for field in meta.fields() {
            assert!(
                table.contains(&format!("`{}`", field.name())),
                "field {} of {} is not in the README",
                field.name(),
                meta.name()
            );
        }
    }
    let test = span_ids(&log, "connective.oauth.test")[0];
    assert!(log.contains(&format!("record {test} passed=true")), "{log}");
    assert!(log.contains(&format!("record {test} latency_ms=")), "{log}");
    assert!(secrets.len() >= 9, "{} secrets to look for", secrets.len());
    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !log.contains(secret.as_str()),
            "{secret:?} reached tracing:\n{log}"
        );
    }
}

/// The IDs the capture gave the spans named `name` (one per span, in order
/// of creation).
fn span_ids(log: &str, name: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.starts_with("span "))
        .zip(1u64..)
        .filter(|(l, _)| l.split(' ').nth(1) == Some(name))
        .map(|(_, id)| id)
        .collect()
}
