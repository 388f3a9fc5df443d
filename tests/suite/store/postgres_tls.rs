//! TLS to PostgreSQL as libpq's `sslmode` defines it, against a real
//! PostgreSQL server started with `ssl=on` and a certificate signed by a CA
//! this test makes with `openssl`: `verify-full` connects with the right CA
//! and host name and refuses a wrong CA or host name with a typed error;
//! `verify-ca` skips the name; `require` encrypts without checking and
//! refuses a server without TLS; the settings come from the connection
//! string or `PGSSLMODE`/`PGSSLROOTCERT`. With a password, nothing the
//! client logs, answers or prints holds it, nor a secret value.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use connective::prelude::*;
use connective::store::seal::{KeyRing, SealKey};
use connective::store::{PostgresSettings, PostgresStore, SslMode, Store, StoreError, TlsFailure};
use connective::test_kit::postgres::{PgCluster, database, unavailable};
use connective::test_kit::{self};

const HOST: &str = "db.connective.test";
const USER: &str = "tlsuser";
const DATABASE: &str = "tlsdb";

fn ring() -> KeyRing {
    KeyRing::new(SealKey::from_bytes("k1", &[9; 32]).expect("key"))
}

/// A PostgreSQL server with TLS on, for this test binary.
struct TlsServer {
    cluster: PgCluster,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// A CA that signed nothing the server has.
    other_ca: PathBuf,
    password: String,
    _certs: tempfile::TempDir,
}

impl TlsServer {
    /// A connection string to it as `host` (resolved to 127.0.0.1).
    fn params(&self, host: &str, tls: &str) -> String {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user={USER} password={} dbname={DATABASE} {tls}",
            self.cluster.port(),
            self.password
        )
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A CA named `name` in `dir`: `name.key`, `name.crt`.
fn make_ca(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let config = format!(
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {name}\n[v3_ca]\n\
         basicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n"
    );
    std::fs::write(dir.join(format!("{name}.cnf")), config).map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            &format!("{name}.key"),
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-config",
            &format!("{name}.cnf"),
            "-extensions",
            "v3_ca",
            "-days",
            "2",
            "-out",
            &format!("{name}.crt"),
        ],
    )?;
    Ok(dir.join(format!("{name}.crt")))
}

fn start_tls_server() -> Result<TlsServer, String> {
    if Command::new("openssl").arg("version").output().is_err() {
        return Err("the openssl program is not installed (it makes the test CA)".into());
    }
    let certs = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = certs.path();
    let ca = make_ca(dir, "ca")?;
    let other_ca = make_ca(dir, "other")?;
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             extendedKeyUsage = serverAuth\nsubjectAltName = DNS:{HOST}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    openssl(
        dir,
        &[
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out",
            "server.key",
        ],
    )?;
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "server.key",
            "-subj",
            &format!("/CN={HOST}"),
            "-out",
            "server.csr",
        ],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    )?;
    let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| e.to_string());
    let cluster = PgCluster::start()?;
    cluster.install_file("server.crt", &read("server.crt")?, 0o644)?;
    cluster.install_file("server.key", &read("server.key")?, 0o600)?;
    // The test user must come over TLS with its password; the rest as
    // initdb left it (trust).
    let hba = format!(
        "hostssl all {USER} 127.0.0.1/32 scram-sha-256\nhost all {USER} 127.0.0.1/32 reject\n\
         local all all trust\nhost all all 127.0.0.1/32 trust\n"
    );
    cluster.install_file("pg_hba.conf", hba.as_bytes(), 0o600)?;
    cluster.reconfigure(&[
        ("ssl", "on"),
        ("ssl_cert_file", "server.crt"),
        ("ssl_key_file", "server.key"),
    ])?;
    let password = test_kit::unique_secret("pg-password");
    let mut admin = cluster.admin()?;
    for sql in [
        format!("CREATE ROLE {USER} LOGIN PASSWORD '{password}'"),
        format!("CREATE DATABASE {DATABASE} OWNER {USER}"),
    ] {
        admin
            .batch_execute(&sql)
            .map_err(|e| format!("cannot create the test user and database: {:?}", e.as_db_error()))?;
    }
    Ok(TlsServer {
        cluster,
        ca,
        other_ca,
        password,
        _certs: certs,
    })
}

/// The TLS server of this test binary, or `None` (after `unavailable`).
fn tls_server() -> Option<&'static TlsServer> {
    static SERVER: OnceLock<Result<TlsServer, String>> = OnceLock::new();
    match SERVER.get_or_init(start_tls_server) {
        Ok(server) => Some(server),
        Err(reason) => {
            unavailable(reason);
            None
        }
    }
}

fn tls_failure(result: Result<PostgresStore, StoreError>) -> TlsFailure {
    match result {
        Err(StoreError::Tls { failure, .. }) => failure,
        Err(other) => panic!("expected a TLS failure, got {other:?}"),
        Ok(_) => panic!("expected a TLS failure, but it connected"),
    }
}

/// Whether the server has a TLS connection of the test user.
fn server_sees_tls(server: &TlsServer) -> bool {
    let mut admin = server.cluster.admin().expect("admin");
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.usename = $1 AND s.ssl",
            &[&USER],
        )
        .expect("pg_stat_ssl")
        .get(0);
    n > 0
}

#[test]
fn verify_full_with_the_right_ca_and_host_name_connects() {
    let Some(server) = tls_server() else { return };
    let ca = server.ca.display().to_string();
    let store = PostgresStore::connect(
        &server.params(HOST, &format!("sslmode=verify-full sslrootcert={ca}")),
        ring(),
    )
    .expect("verify-full with the right CA and name");
    let p = test_kit::unique_project("tls");
    let record = test_kit::sample_connection(&p, "over-tls", "s");
    let mut batch = connective::store::Batch::new();
    batch.push(connective::store::Write::put(
        record.clone(),
        connective::store::Expect::Absent,
    ));
    store.commit(&batch).expect("commit over TLS");
    assert!(store.get(&record.key()).expect("get").is_some());
    assert!(
        server_sees_tls(server),
        "the server has no TLS connection of the store"
    );

    // The same through the URL form and the settings' own calls.
    let url = format!(
        "postgresql://{USER}:{}@{HOST}:{}/{DATABASE}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}",
        server.password,
        server.cluster.port()
    );
    let settings = PostgresSettings::from_connection_string(&url).expect("settings");
    assert_eq!(settings.ssl_mode(), SslMode::VerifyFull);
    let store = settings.connect(ring()).expect("verify-full from a URL");
    assert!(store.get(&record.key()).expect("get").is_some());
}

#[test]
fn verify_full_refuses_an_untrusted_certificate() {
    let Some(server) = tls_server() else { return };
    let other = server.other_ca.display();
    let failure = tls_failure(PostgresStore::connect(
        &server.params(HOST, &format!("sslmode=verify-full sslrootcert={other}")),
        ring(),
    ));
    assert_eq!(failure, TlsFailure::UntrustedCertificate);
    // verify-ca checks the chain too.
    let failure = tls_failure(PostgresStore::connect(
        &server.params(HOST, &format!("sslmode=verify-ca sslrootcert={other}")),
        ring(),
    ));
    assert_eq!(failure, TlsFailure::UntrustedCertificate);
}

#[test]
fn verify_full_refuses_a_wrong_host_name_and_verify_ca_does_not_check_it() {
    let Some(server) = tls_server() else { return };
    let ca = server.ca.display();
    let failure = tls_failure(PostgresStore::connect(
        &server.params(
            "wrong.connective.test",
            &format!("sslmode=verify-full sslrootcert={ca}"),
        ),
        ring(),
    ));
    assert_eq!(
        failure,
        TlsFailure::WrongHostName {
            host: "wrong.connective.test".into()
        }
    );
    let e = StoreError::Tls {
        backend: "postgres",
        server: "x".into(),
        failure,
    };
    assert!(!e.is_retryable(), "a TLS refusal is not retryable");
    PostgresStore::connect(
        &server.params(
            "wrong.connective.test",
            &format!("sslmode=verify-ca sslrootcert={ca}"),
        ),
        ring(),
    )
    .expect("verify-ca does not check the name");
}

#[test]
fn require_encrypts_without_checking_and_refuses_a_server_without_tls() {
    let Some(server) = tls_server() else { return };
    // No root file: encrypted, the certificate is not checked (libpq).
    let store = PostgresStore::connect(&server.params("wrong.connective.test", "sslmode=require"), ring())
        .expect("require without a root file");
    assert!(server_sees_tls(server));
    drop(store);
    // With a root file, require verifies the chain (libpq's compatibility rule).
    let failure = tls_failure(PostgresStore::connect(
        &server.params(
            HOST,
            &format!("sslmode=require sslrootcert={}", server.other_ca.display()),
        ),
        ring(),
    ));
    assert_eq!(failure, TlsFailure::UntrustedCertificate);

    // The shared test server has no TLS: require refuses it, prefer and
    // disable connect in the clear.
    let Some(db) = database("no_tls") else { return };
    let plain = db.connection_string();
    let failure = tls_failure(PostgresStore::connect(
        &format!("{plain} sslmode=require"),
        ring(),
    ));
    assert_eq!(failure, TlsFailure::NotOffered);
    PostgresStore::connect(&format!("{plain} sslmode=prefer"), ring()).expect("prefer");
    PostgresStore::connect(&format!("{plain} sslmode=disable"), ring()).expect("disable");
}

/// Run as a child by `tls_settings_come_from_pgsslmode_and_pgsslrootcert`
/// (with `CONNECTIVE_TLS_CHILD` set); does nothing otherwise.
#[test]
fn tls_environment_child() {
    let Ok(params) = std::env::var("CONNECTIVE_TLS_CHILD") else {
        return;
    };
    let expect = std::env::var("CONNECTIVE_TLS_EXPECT").unwrap_or_default();
    let settings = PostgresSettings::from_connection_string(&params).expect("settings");
    assert_eq!(settings.ssl_mode(), SslMode::VerifyFull, "PGSSLMODE was not read");
    match (expect.as_str(), settings.connect(ring())) {
        ("connects", Ok(_)) => {}
        ("untrusted", Err(StoreError::Tls { failure, .. })) => {
            assert_eq!(failure, TlsFailure::UntrustedCertificate)
        }
        (want, got) => panic!("wanted {want}, got {:?}", got.map(drop)),
    }
}

#[test]
fn tls_settings_come_from_pgsslmode_and_pgsslrootcert() {
    let Some(server) = tls_server() else { return };
    for (root, expect) in [(&server.ca, "connects"), (&server.other_ca, "untrusted")] {
        let out = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "store::postgres_tls::tls_environment_child",
                "--test-threads=1",
            ])
            .env("CONNECTIVE_TLS_CHILD", server.params(HOST, ""))
            .env("CONNECTIVE_TLS_EXPECT", expect)
            .env("PGSSLMODE", "verify-full")
            .env("PGSSLROOTCERT", root)
            .output()
            .expect("run the child");
        assert!(
            out.status.success(),
            "with PGSSLROOTCERT={} the child did not find it {expect}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "the child's filter matched no test: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// Every log line of this process (the PostgreSQL client logs through
/// `log`) while the test below listens. The suite's other tests share the
/// process, so their lines are captured too while it listens: that only adds
/// lines to search, none of which can hold this test's password or secret.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        LINES.lock().unwrap_or_else(|e| e.into_inner()).push(line);
    }
    fn flush(&self) {}
}

#[test]
fn no_password_or_secret_in_a_log_line_an_error_or_debug() {
    let Some(server) = tls_server() else { return };
    let _ = log::set_boxed_logger(Box::new(Capture));
    log::set_max_level(log::LevelFilter::Trace);
    let secret = test_kit::unique_secret("logged-secret");
    let ca = server.ca.display().to_string();
    let params = server.params(HOST, &format!("sslmode=verify-full sslrootcert={ca}"));

    let settings = PostgresSettings::from_connection_string(&params).expect("settings");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let shown = rt.block_on(async {
        let store = settings
            .clone()
            .connect_async(ring())
            .await
            .expect("connect with a password");
        let shown = format!("{store:?} {}", store.server());
        let registry = Arc::new(
            Registry::builder()
                .async_store(store)
                .build_async()
                .await
                .expect("registry"),
        );
        let spec = ConnectionSpec::project("acme", "crm")
            .param(Param::secret("ApiKey").default(secret.as_str()))
            .build()
            .expect("spec");
        let (id, _) = registry
            .create_connection_async(spec)
            .await
            .expect("write a secret");
        registry
            .set_mappings_async(
                Mappings::of("acme", "orders")
                    .by_id(id, [("ApiKey", "KEY")])
                    .build()
                    .expect("mappings"),
                None,
            )
            .await
            .expect("mappings");
        let follower = registry.follow_async(Duration::from_millis(50));
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(follower);
        let env = registry
            .resolve(&ResolveRequest::parse("acme", "orders", "production").expect("request"))
            .expect("resolve");
        assert_eq!(env.expose("KEY"), Some(secret.as_str()));
        shown
    });
    let wrong = params.replace(&server.password, "not-the-password-4711");
    let refused = PostgresStore::connect(&wrong, ring()).expect_err("a wrong password");
    let texts = [
        shown,
        format!("{settings:?}"),
        refused.to_string(),
        format!("{refused:?}"),
    ];
    // Stop listening: the rest of the suite need not format its log lines.
    log::set_max_level(log::LevelFilter::Off);
    let lines = LINES.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
    assert!(
        lines.contains("executing statement"),
        "the client's statements were not captured, so this test would prove nothing"
    );
    for text in texts.iter().chain([&lines]) {
        for needle in [server.password.as_str(), secret.as_str(), "not-the-password-4711"] {
            assert!(!text.contains(needle), "{needle:?} leaked into: {text}");
        }
    }
}
