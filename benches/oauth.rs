//! The OAuth runtime's figures: a cached access token (median, and 2 threads
//! against 1), and a refresh storm (1,000 callers at expiry against a real
//! `oidc-provider`: token requests made, p99 wait).
//!
//! ```text
//! cargo bench --bench oauth --features oauth-runtime
//! CONNECTIVE_BENCH_QUICK=1 cargo bench --bench oauth --features oauth-runtime
//! ```
//!
//! The storm needs the test server (`npm ci` in `tests/oauth-server`); without
//! it that figure says it was skipped.

mod common;
#[path = "../tests/oauth-server/mod.rs"]
mod oauth_server;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::{figure, fmt_ns, median, quantile, quick};
use connective::model::{CredentialKey, Record, SecretValue, Timestamp, TokenSet};
use connective::oauth::runtime::OAuthRuntime;
use connective::prelude::*;
use connective::store::{Batch, Expect, Write};

fn key(id: ConnectionId) -> CredentialKey {
    CredentialKey::new(
        "acme".parse().expect("project"),
        id,
        "production".parse().expect("env"),
        Some("globex".parse().expect("customer")),
    )
}

/// A registry holding a fresh token set (valid one hour) and a runtime on it.
fn cached() -> (Arc<Registry>, OAuthRuntime, CredentialKey) {
    let registry = Arc::new(Registry::in_memory());
    let (id, _) = registry
        .create_connection(
            ConnectionSpec::project("acme", "crm")
                .target(Target::external("crm"))
                .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
                .param(Param::plain("AuthorizeURL").default("https://idp.example.com/auth"))
                .param(Param::plain("TokenURL").default("https://idp.example.com/token"))
                .param(Param::plain("ClientID").default("app"))
                // A public client: a secret declared and left empty.
                .param(Param::secret("ClientSecret").optional())
                .param(Param::plain("Scopes").optional())
                .build()
                .expect("spec"),
        )
        .expect("create");
    let key = key(id);
    let now = Timestamp::now();
    let set = TokenSet::new(
        key.clone(),
        SecretValue::new("eyJhbGciOiJSUzI1NiJ9.access-token-of-about-fifty-bytes"),
        Some(SecretValue::new("refresh-token")),
        "Bearer",
        vec!["api:read".into()],
        now,
        Some(now.plus(Duration::from_secs(3600))),
    )
    .expect("token set");
    let mut batch = Batch::new();
    batch.push(Write::put(Record::TokenSet(Arc::new(set)), Expect::Absent));
    registry.store().commit(&batch).expect("commit");
    registry.sync().expect("sync");
    let runtime = registry.oauth_runtime().build().expect("runtime");
    (registry, runtime, key)
}

/// Polls `f` once: the fast path completes without waiting.
fn poll_once<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a cached access token made the call wait"),
    }
}

/// Median nanoseconds per call of `call`, over rounds of `batch` calls.
fn per_call(rounds: usize, batch: usize, mut call: impl FnMut()) -> f64 {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..batch {
            call();
        }
        samples.push(start.elapsed().as_secs_f64() * 1e9 / batch as f64);
    }
    median(&mut samples)
}

fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Calls per wall second and per CPU second with `threads` threads.
fn throughput(
    runtime: &OAuthRuntime,
    key: &CredentialKey,
    threads: usize,
    length: Duration,
) -> (f64, Option<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let cpu = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (runtime, key, stop, calls, cpu) = (
                runtime.clone(),
                key.clone(),
                Arc::clone(&stop),
                Arc::clone(&calls),
                Arc::clone(&cpu),
            );
            std::thread::spawn(move || {
                let cpu0 = thread_cpu_ns();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..256 {
                        std::hint::black_box(runtime.cached_access_token(&key).expect("cached"));
                    }
                    n += 256;
                }
                calls.fetch_add(n, Ordering::Relaxed);
                if let (Some(a), Some(b)) = (cpu0, thread_cpu_ns()) {
                    cpu.fetch_add(b - a, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(length);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("thread");
    }
    let wall = start.elapsed().as_secs_f64();
    let n = calls.load(Ordering::Relaxed) as f64;
    let cpu_s = cpu.load(Ordering::Relaxed) as f64 / 1e9;
    (n / wall, (cpu_s > 0.0).then(|| n / cpu_s))
}

fn cached_figures() {
    let (_registry, runtime, key) = cached();
    let rounds = if quick() { 30 } else { 101 };
    let sync = per_call(rounds, 20_000, || {
        std::hint::black_box(runtime.cached_access_token(&key).expect("cached"));
    });
    let awaited = per_call(rounds, 20_000, || {
        std::hint::black_box(poll_once(runtime.access_token(&key)).expect("token"));
    });
    figure(
        "cached access_token, median (async call, polled once)",
        &format!("{} (sync fast path {})", fmt_ns(awaited), fmt_ns(sync)),
        "< 1 µs",
        awaited < 1000.0,
    );
    let length = Duration::from_millis(if quick() { 200 } else { 600 });
    let (mut wall, mut per_cpu) = (Vec::new(), Vec::new());
    for _ in 0..if quick() { 3 } else { 7 } {
        let one = throughput(&runtime, &key, 1, length);
        let two = throughput(&runtime, &key, 2, length);
        wall.push(two.0 / one.0);
        if let (Some(a), Some(b)) = (one.1, two.1) {
            per_cpu.push(b / a * 2.0);
        }
    }
    let ratio = median(&mut wall);
    let cpu_note = if per_cpu.is_empty() {
        String::new()
    } else {
        format!(" ({:.2}× per CPU-second)", median(&mut per_cpu))
    };
    figure(
        "cached access_token, 2 threads vs 1",
        &format!("{ratio:.2}×{cpu_note}"),
        "≥ 1.8×",
        ratio >= 1.8,
    );
}

async fn storm(server: &oauth_server::OAuthServer) {
    let registry = Arc::new(Registry::in_memory());
    let (id, _) = registry
        .create_connection(oauth_server::crm_spec(server))
        .expect("create");
    let key = key(id);
    let runtime = registry.oauth_runtime().build().expect("runtime");
    let started = runtime
        .start_authorization(&key, oauth_server::REDIRECT, None)
        .await
        .expect("start");
    let callback = server.consent(started.url(), false).await;
    runtime
        .complete_authorization(&callback.state, callback.code.as_deref().expect("code"))
        .await
        .expect("complete");
    let mut requests = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..if quick() { 1 } else { 3 } {
        let token = runtime.access_token(&key).await.expect("token");
        let expires = token.expires_at().expect("expiry").0;
        tokio::time::sleep(Duration::from_millis(
            expires.saturating_sub(Timestamp::now().0) + 20,
        ))
        .await;
        let before = server.stats().await.token;
        let start = Instant::now();
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (runtime, key) = (runtime.clone(), key.clone());
                tokio::spawn(async move {
                    runtime.access_token(&key).await.expect("token");
                    start.elapsed()
                })
            })
            .collect();
        for t in tasks {
            waits.push(t.await.expect("task").as_secs_f64() * 1e9);
        }
        requests.push(server.stats().await.token - before);
    }
    let worst = requests.iter().copied().max().unwrap_or(0);
    let p99 = quantile(&mut waits, 0.99);
    let p50 = quantile(&mut waits, 0.50);
    figure(
        "refresh storm: 1,000 concurrent callers at expiry → token requests",
        &format!(
            "{} (p50 wait {}, p99 wait {}; {} storm(s))",
            requests.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
            fmt_ns(p50),
            fmt_ns(p99),
            requests.len()
        ),
        "1 request",
        worst == 1,
    );
}

fn main() {
    cached_figures();
    match oauth_server::OAuthServer::start(2) {
        Some(server) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio");
            rt.block_on(storm(&server));
        }
        None => println!(
            "FIGURE | refresh storm | skipped: no oidc-provider (npm ci in tests/oauth-server) | target 1 request | NOT MET"
        ),
    }
}
