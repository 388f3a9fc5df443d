//! The real OAuth 2.0 server the runtime tests use: npm `oidc-provider` on
//! loopback (`server.mjs` beside this file; installed into `node_modules`
//! here by `.ci/run`). A test that finds it missing prints
//! `skipped: <reason>` and returns; under `CI=true` it fails instead.

#![allow(dead_code)] // Each test file uses some of these.

use std::io::{BufRead, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

/// The fixed clients of `server.mjs`.
pub const APP_ID: &str = "app";
pub const APP_SECRET: &str = "app-secret-4c1f9d0e7b2a";
pub const SVC_ID: &str = "svc";
pub const SVC_SECRET: &str = "svc-secret-8e3b6a1d5c07";
pub const REDIRECT: &str = "http://127.0.0.1:9/callback";

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oauth-server")
}

pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Reports the server missing: a failure under CI, else `skipped: ...` once.
fn unavailable(reason: &str) {
    if under_ci() {
        panic!("{reason}: the OAuth test server is required under CI=true");
    }
    static TOLD: Mutex<bool> = Mutex::new(false);
    let mut told = TOLD.lock().unwrap_or_else(|e| e.into_inner());
    if !*told {
        let _ = writeln!(std::io::stderr(), "skipped: {reason}");
        *told = true;
    }
}

/// A running `server.mjs`; killed on drop.
pub struct OAuthServer {
    child: Option<Child>,
    pub port: u16,
    http: reqwest::Client,
}

/// What the server counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests at the token endpoint.
    pub token: u64,
    /// Successful grants by type.
    pub refresh: u64,
    pub code: u64,
    pub client_credentials: u64,
}

/// Where the authorization server sent the user back.
#[derive(Debug, Clone)]
pub struct Callback {
    pub state: String,
    pub code: Option<String>,
    pub error: Option<String>,
}

impl OAuthServer {
    /// Starts the server with access tokens living `access_ttl` seconds, or
    /// `None` (skipped) when node or the npm modules are missing.
    pub fn start(access_ttl: u32) -> Option<OAuthServer> {
        let module = dir().join("node_modules/oidc-provider/package.json");
        if !module.exists() {
            unavailable(&format!(
                "oidc-provider not installed at {} (run `npm ci` in tests/oauth-server, as .ci/run does)",
                module.display()
            ));
            return None;
        }
        let child = Command::new("node")
            .arg(dir().join("server.mjs"))
            .env("PORT", "0")
            .env("ACCESS_TTL", access_ttl.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                unavailable(&format!("cannot run node: {e}"));
                return None;
            }
        };
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(port) = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            panic!("the OAuth test server did not start (said {line:?})");
        };
        Some(OAuthServer {
            child: Some(child),
            port,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        })
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn token_url(&self) -> String {
        format!("{}/token", self.base())
    }

    pub fn authorize_url(&self) -> String {
        format!("{}/auth", self.base())
    }

    /// Stops the server (a server that is down).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub async fn stats(&self) -> Stats {
        let v: serde_json::Value = self
            .http
            .get(format!("{}/__stats", self.base()))
            .send()
            .await
            .expect("stats")
            .bytes()
            .await
            .map(|b| serde_json::from_slice(&b).expect("stats json"))
            .expect("stats body");
        let grant = |t: &str| v["grants"][t].as_u64().unwrap_or(0);
        Stats {
            token: v["token"].as_u64().unwrap_or(0),
            refresh: grant("refresh_token"),
            code: grant("authorization_code"),
            client_credentials: grant("client_credentials"),
        }
    }

    /// Makes the next `count` token requests fail as `mode` says
    /// (`error500`, `rate429`, `slow`, `echo`; `pass` clears).
    pub async fn fault(&self, fault: serde_json::Value) {
        self.http
            .post(format!("{}/__fault", self.base()))
            .body(fault.to_string())
            .send()
            .await
            .expect("fault");
    }

    /// Revokes a token at the revocation endpoint (as the `app` client).
    pub async fn revoke(&self, token: &str) {
        let r = self
            .http
            .post(format!("{}/token/revocation", self.base()))
            .basic_auth(APP_ID, Some(APP_SECRET))
            .form(&[("token", token), ("token_type_hint", "refresh_token")])
            .send()
            .await
            .expect("revoke");
        assert!(r.status().is_success(), "revocation answered {}", r.status());
    }

    /// Uses a refresh token directly (as the `app` client): what a second
    /// user of one rotated refresh token would do.
    pub async fn refresh_directly(&self, refresh_token: &str) -> reqwest::StatusCode {
        self.http
            .post(self.token_url())
            .basic_auth(APP_ID, Some(APP_SECRET))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .send()
            .await
            .expect("refresh")
            .status()
    }

    /// Walks the user through the authorization over HTTP, as a browser
    /// would (redirects, cookies), consenting as `alice` or declining; returns
    /// the callback's parameters.
    pub async fn consent(&self, authorize_url: &str, decline: bool) -> Callback {
        let mut cookies: Vec<(String, String)> = Vec::new();
        let mut url = Url::parse(authorize_url).expect("authorize url");
        for _ in 0..8 {
            let mut request = self.http.get(url.clone());
            if !cookies.is_empty() {
                let header: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
                request = request.header(COOKIE, header.join("; "));
            }
            let response = request.send().await.expect("authorization step");
            for set in response.headers().get_all(SET_COOKIE) {
                let text = set.to_str().expect("cookie");
                let pair = text.split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    cookies.retain(|(n, _)| n != name);
                    cookies.push((name.to_owned(), value.to_owned()));
                }
            }
            let location = response
                .headers()
                .get(LOCATION)
                .unwrap_or_else(|| panic!("no redirect from {url} ({})", response.status()))
                .to_str()
                .expect("location")
                .to_owned();
            let next = url.join(&location).expect("redirect url");
            if next.as_str().starts_with(REDIRECT) {
                let get = |k: &str| {
                    next.query_pairs()
                        .find(|(n, _)| n == k)
                        .map(|(_, v)| v.into_owned())
                };
                return Callback {
                    state: get("state").expect("state in the callback"),
                    code: get("code"),
                    error: get("error"),
                };
            }
            url = next;
            if url.path().starts_with("/interaction/") {
                url.query_pairs_mut().append_pair(
                    if decline { "deny" } else { "user" },
                    if decline { "1" } else { "alice" },
                );
            }
        }
        panic!("the authorization did not come back to the redirect URI");
    }
}

/// The connection the tests authorize: project `acme`'s `crm`, an OAuth 2.0
/// connection whose supplied client is this server's `app`.
pub fn crm_spec(server: &OAuthServer) -> connective::model::ConnectionSpec {
    use connective::model::{AuthScheme, ConnectionSpec, OAuthClient, Param, Target};
    ConnectionSpec::project("acme", "crm")
        .target(Target::external("crm"))
        .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
        .param(Param::plain("AuthorizeURL").default(server.authorize_url()))
        .param(Param::plain("TokenURL").default(server.token_url()))
        .param(Param::plain("ClientID").default(APP_ID))
        .param(Param::secret("ClientSecret").default(APP_SECRET))
        .param(Param::plain("Scopes").default("api:read"))
        .build()
        .expect("spec")
}

/// Hands out the test server's `svc` client, then an unknown secret on
/// rotation.
pub struct SvcProvisioner {
    pub token_url: String,
}

impl connective::oauth::OAuthProvisioner for SvcProvisioner {
    fn provision(
        &self,
        _: &connective::oauth::ProvisionRequest,
    ) -> Result<connective::oauth::OAuthCredentials, connective::oauth::ProvisionError> {
        Ok(connective::oauth::OAuthCredentials {
            client_id: SVC_ID.into(),
            client_secret: connective::model::SecretValue::new(SVC_SECRET),
            token_url: self.token_url.clone(),
        })
    }
    fn rotate(
        &self,
        _: &connective::model::OAuthApp,
    ) -> Result<connective::model::SecretValue, connective::oauth::ProvisionError> {
        Ok(connective::model::SecretValue::new(
            "svc-rotated-secret-not-yet-known",
        ))
    }
}

/// A project-scope connection to platform integration `name` on the
/// project's shared application (client credentials), asking for `scopes`.
pub fn managed(name: &str, scopes: &str) -> connective::model::ConnectionSpec {
    use connective::model::{AuthScheme, ConnectionSpec, OAuthClient, Param};
    ConnectionSpec::project("acme", name)
        .platform_target("acme", format!("{name}-api").as_str())
        .auth(AuthScheme::OAuth2(OAuthClient::Shared))
        .param(Param::plain("Scopes").default(scopes))
        .build()
        .expect("spec")
}

impl Drop for OAuthServer {
    fn drop(&mut self) {
        self.stop();
    }
}
