//! HashiCorp Vault's and OpenBao's KV version 2 secrets engine, over HTTP
//! (reqwest with rustls), with token or AppRole authentication.
//!
//! A location `secret/crm/prod` is read at
//! `GET {address}/v1/secret/data/crm/prod` (`?version=N` when pinned). The
//! client renews its token ahead of expiry (a background task on the
//! runtime that reads, which is the [`SecretCache`](super::SecretCache)'s),
//! logs in again with AppRole when the token cannot be renewed any more,
//! and types what the server answers: 404 is
//! [`ExternalFault::NotFound`], 403 is
//! [`ExternalFault::PermissionDenied`] for a path the token may not read or
//! [`ExternalFault::Unauthenticated`] when the token itself is refused
//! (told apart by looking the token up). The server's error bodies reach a
//! fault bounded and redacted ([`redact`]); the token, the secret ID and
//! the values never do.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{SecretStore, StoreFuture, StoreSecret, redact};
use crate::model::{ExternalFault, SecretLocation, SecretValue, SecretVersion};

/// The largest answer body read, in bytes.
const MAX_BODY: usize = 1 << 20;

/// How a [`VaultStore`] authenticates. `Debug` never shows a credential.
#[derive(Clone)]
#[non_exhaustive]
pub enum VaultAuth {
    /// A token the host was given (renewed while it is renewable).
    Token(SecretString),
    /// AppRole: a role ID and a secret ID, exchanged for a token at the
    /// mount (`approle` by default); logged in again when the token cannot
    /// be renewed any more.
    AppRole {
        /// The mount of the AppRole auth method.
        mount: String,
        /// The role ID.
        role_id: SecretString,
        /// The secret ID.
        secret_id: SecretString,
    },
}

impl VaultAuth {
    /// Token authentication.
    pub fn token(token: impl Into<String>) -> Self {
        VaultAuth::Token(SecretString::from(token.into()))
    }

    /// Token authentication with the token in environment variable `var`
    /// (`VAULT_TOKEN`, `BAO_TOKEN`).
    pub fn token_from_env(var: &str) -> Result<Self, VaultError> {
        std::env::var(var)
            .map(VaultAuth::token)
            .map_err(|_| VaultError::Setup(format!("environment variable {var} is not set")))
    }

    /// AppRole authentication at the `approle` mount.
    pub fn app_role(role_id: impl Into<String>, secret_id: impl Into<String>) -> Self {
        VaultAuth::AppRole {
            mount: "approle".to_owned(),
            role_id: SecretString::from(role_id.into()),
            secret_id: SecretString::from(secret_id.into()),
        }
    }

    /// The same AppRole login at another mount.
    pub fn at_mount(self, mount: impl Into<String>) -> Self {
        match self {
            VaultAuth::AppRole {
                role_id, secret_id, ..
            } => VaultAuth::AppRole {
                mount: mount.into(),
                role_id,
                secret_id,
            },
            other => other,
        }
    }
}

impl fmt::Debug for VaultAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultAuth::Token(_) => f.write_str("Token([REDACTED])"),
            VaultAuth::AppRole { mount, .. } => write!(
                f,
                "AppRole {{ mount: {mount:?}, role_id: [REDACTED], secret_id: [REDACTED] }}"
            ),
        }
    }
}

/// Why a [`VaultStore`] cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The address, a certificate or the HTTP client is unusable.
    #[error("cannot set up the vault client: {0}")]
    Setup(String),
    /// The AppRole mount or the namespace is not a path of plain segments
    /// (ASCII letters, digits and `_.-@+=,`, separated by single slashes,
    /// no `.` or `..` segment, at most 128 bytes): the client puts them in
    /// request URLs and headers. The message does not repeat the text.
    #[error("cannot set up the vault client: the {part} {rule}")]
    Invalid {
        /// Which setting is wrong.
        part: VaultPart,
        /// What is wrong with it, in words.
        rule: &'static str,
    },
}

/// A setting of the vault client that [`VaultError::Invalid`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VaultPart {
    /// The mount of the AppRole auth method ([`VaultAuth::at_mount`]).
    AppRoleMount,
    /// The namespace ([`VaultStore::with_namespace`]).
    Namespace,
}

impl fmt::Display for VaultPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VaultPart::AppRoleMount => "AppRole mount",
            VaultPart::Namespace => "namespace",
        })
    }
}

/// Checks `text` as a mount (see [`VaultError::Invalid`]).
fn check(part: VaultPart, text: &str) -> Result<(), VaultError> {
    crate::model::check_mount(text).map_err(|e| VaultError::Invalid { part, rule: e.rule })
}

/// The built-in client of Vault's and OpenBao's KV version 2: a
/// [`SecretStore`] for the [`SecretCache`](super::SecretCache).
///
/// ```no_run
/// use connective::external::vault::{VaultAuth, VaultStore};
/// let store = VaultStore::new("https://bao.internal:8200", VaultAuth::app_role("role-id", "secret-id"))?
///     .with_namespace("team-a")?;
/// # Ok::<(), connective::external::vault::VaultError>(())
/// ```
#[derive(Clone)]
pub struct VaultStore {
    inner: Arc<Client>,
}

struct Client {
    address: String,
    namespace: Option<String>,
    http: reqwest::Client,
    auth: VaultAuth,
    token: tokio::sync::Mutex<Option<Token>>,
    renewing: AtomicBool,
}

/// The token in use and what the server said of it.
#[derive(Clone)]
struct Token {
    secret: SecretString,
    /// When it expires, if it does.
    expires: Option<Instant>,
    /// The lease it was given (renewals ask for as much again).
    lease: Duration,
    renewable: bool,
}

impl fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultStore")
            .field("address", &self.inner.address)
            .field("namespace", &self.inner.namespace)
            .field("auth", &self.inner.auth)
            .finish()
    }
}

impl VaultStore {
    /// A client of the server at `address` (`https://vault.internal:8200`;
    /// `http://` for a loopback development server), with the web PKI's
    /// roots, a 10 second request timeout and no redirects.
    pub fn new(address: &str, auth: VaultAuth) -> Result<Self, VaultError> {
        Self::with_client(address, auth, |b| b)
    }

    /// The same, trusting the PEM certificates `ca_pem` (a private CA) as
    /// well. A bundle without a certificate is refused.
    pub fn with_ca(address: &str, auth: VaultAuth, ca_pem: &[u8]) -> Result<Self, VaultError> {
        let certs = reqwest::Certificate::from_pem_bundle(ca_pem).map_err(|e| {
            VaultError::Setup(format!("the CA certificates are unusable: {}", e.without_url()))
        })?;
        if certs.is_empty() {
            return Err(VaultError::Setup(
                "the CA certificates are unusable: no PEM certificate in them".into(),
            ));
        }
        Self::with_client(address, auth, |mut b| {
            for cert in certs {
                b = b.add_root_certificate(cert);
            }
            b
        })
    }

    fn with_client(
        address: &str,
        auth: VaultAuth,
        configure: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Result<Self, VaultError> {
        if let VaultAuth::AppRole { mount, .. } = &auth {
            check(VaultPart::AppRoleMount, mount)?;
        }
        let address = address.trim_end_matches('/').to_owned();
        if !(address.starts_with("https://") || address.starts_with("http://")) {
            return Err(VaultError::Setup(
                "the address must start with https:// or http://".into(),
            ));
        }
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none());
        let http = configure(builder)
            .build()
            .map_err(|e| VaultError::Setup(format!("cannot build the HTTP client: {}", e.without_url())))?;
        Ok(VaultStore {
            inner: Arc::new(Client::new(address, None, http, auth)),
        })
    }

    /// Sends `X-Vault-Namespace: namespace` (Vault Enterprise and OpenBao
    /// namespaces): mounts, paths, policies and AppRole logins are the
    /// namespace's. A client of its own (a clone of this store keeps its
    /// namespace and its token). A namespace is slash-separated segments
    /// as a mount is ([`VaultError::Invalid`] otherwise).
    pub fn with_namespace(self, namespace: impl Into<String>) -> Result<Self, VaultError> {
        let namespace = namespace.into();
        check(VaultPart::Namespace, &namespace)?;
        let c = &self.inner;
        Ok(VaultStore {
            inner: Arc::new(Client::new(
                c.address.clone(),
                Some(namespace),
                c.http.clone(),
                c.auth.clone(),
            )),
        })
    }
}

impl SecretStore for VaultStore {
    fn read<'a>(&'a self, location: &'a SecretLocation) -> StoreFuture<'a> {
        Box::pin(self.inner.clone().read(location.clone()))
    }
}

/// What one HTTP exchange gave: the status and the JSON body.
struct Answer {
    status: u16,
    body: Value,
}

impl Client {
    fn new(address: String, namespace: Option<String>, http: reqwest::Client, auth: VaultAuth) -> Self {
        let token = match &auth {
            VaultAuth::Token(t) => Some(Token {
                secret: t.clone(),
                expires: None,
                lease: Duration::ZERO,
                renewable: true,
            }),
            VaultAuth::AppRole { .. } => None,
        };
        Client {
            address,
            namespace,
            http,
            auth,
            token: tokio::sync::Mutex::new(token),
            renewing: AtomicBool::new(false),
        }
    }

    async fn read(self: Arc<Self>, location: SecretLocation) -> Result<StoreSecret, ExternalFault> {
        let mut url = format!(
            "{}/v1/{}/data/{}",
            self.address,
            location.mount(),
            location.path()
        );
        if let Some(v) = location.version() {
            url.push_str("?version=");
            url.push_str(v.as_str());
        }
        let mut relogged = false;
        loop {
            let token = self.token().await?;
            let answer = self.send(self.http.get(&url), Some(&token)).await?;
            match answer.status {
                200 => return secret(&answer.body),
                404 => return Err(ExternalFault::NotFound),
                403 => {
                    if self.token_works(&token).await? {
                        return Err(ExternalFault::PermissionDenied);
                    }
                    // The token itself is refused: an AppRole logs in again
                    // (once); a given token is what it is.
                    self.forget(&token).await;
                    if relogged || matches!(self.auth, VaultAuth::Token(_)) {
                        return Err(ExternalFault::Unauthenticated {
                            message: format!("the token is refused: {}", errors(&answer.body)),
                        });
                    }
                    relogged = true;
                }
                status => return Err(unexpected(status, &answer.body)),
            }
        }
    }

    /// The token to send: logged in (AppRole) if there is none; the renewal
    /// task started.
    async fn token(self: &Arc<Self>) -> Result<SecretString, ExternalFault> {
        let mut slot = self.token.lock().await;
        if slot
            .as_ref()
            .is_some_and(|t| t.expires.is_some_and(|at| at <= Instant::now()))
        {
            *slot = None;
            if let VaultAuth::Token(_) = self.auth {
                return Err(ExternalFault::Unauthenticated {
                    message: "the token has expired".into(),
                });
            }
        }
        if slot.is_none() {
            *slot = Some(self.login().await?);
        }
        let token = slot
            .as_ref()
            .map(|t| t.secret.clone())
            .ok_or(ExternalFault::Unauthenticated {
                message: "no token".into(),
            })?;
        drop(slot);
        if !self.renewing.swap(true, Ordering::AcqRel) {
            if let VaultAuth::Token(_) = self.auth {
                // Learn the given token's lease, so it is renewed in time.
                self.learn().await;
            }
            tokio::spawn(renewer(Arc::downgrade(self)));
        }
        Ok(token)
    }

    /// Drops `token` if it is still the one in use.
    async fn forget(&self, token: &SecretString) {
        let mut slot = self.token.lock().await;
        if slot
            .as_ref()
            .is_some_and(|t| t.secret.expose_secret() == token.expose_secret())
        {
            *slot = None;
        }
    }

    /// Logs in with AppRole; a given token cannot log in again.
    async fn login(&self) -> Result<Token, ExternalFault> {
        let VaultAuth::AppRole {
            mount,
            role_id,
            secret_id,
        } = &self.auth
        else {
            return Err(ExternalFault::Unauthenticated {
                message: "the token has expired or was revoked".into(),
            });
        };
        let url = format!("{}/v1/auth/{mount}/login", self.address);
        let body = serde_json::json!({
            "role_id": role_id.expose_secret(),
            "secret_id": secret_id.expose_secret(),
        });
        let answer = self.send(post_json(&self.http, &url, &body), None).await?;
        match answer.status {
            200 => token_of(&answer.body).ok_or_else(|| ExternalFault::Invalid {
                message: "the login answer has no token".into(),
            }),
            // A refused role or secret ID; a mount without AppRole is
            // refused alike (403) or not found (404), as the server tells.
            400 | 403 | 404 => Err(ExternalFault::Unauthenticated {
                message: format!(
                    "the AppRole login at mount {mount} is refused: {}",
                    errors(&answer.body)
                ),
            }),
            status => Err(unexpected(status, &answer.body)),
        }
    }

    /// Renews the token in use; when it cannot be renewed (any more, or
    /// as long as asked: a max TTL caps it) an AppRole logs in again and a
    /// given token is kept until it expires. Answers how long until the
    /// next renewal.
    async fn renew(&self) -> Duration {
        let current = self.token.lock().await.clone();
        let Some(current) = current else {
            return Duration::from_secs(1);
        };
        let url = format!("{}/v1/auth/token/renew-self", self.address);
        let body = serde_json::json!({ "increment": format!("{}s", current.lease.as_secs().max(1)) });
        let mut next = None;
        if current.renewable
            && let Ok(answer) = self
                .send(post_json(&self.http, &url, &body), Some(&current.secret))
                .await
            && answer.status == 200
            && let Some(mut renewed) = token_of(&answer.body)
        {
            // The server answers the same token; keep the lease asked for,
            // to ask as much next time.
            renewed.secret = current.secret.clone();
            if renewed.lease >= current.lease / 2 || matches!(self.auth, VaultAuth::Token(_)) {
                renewed.lease = renewed.lease.max(current.lease);
                next = Some(renewed);
            }
        }
        if next.is_none() && matches!(self.auth, VaultAuth::AppRole { .. }) {
            next = self.login().await.ok();
        }
        let mut slot = self.token.lock().await;
        match next {
            Some(token) => {
                let wait = until_renewal(&token);
                *slot = Some(token);
                wait
            }
            // Keep what we had; try again before it expires.
            None => until_renewal(&current).min(Duration::from_secs(60)),
        }
    }

    /// Learns a given token's lease from the server (`lookup-self`).
    async fn learn(&self) {
        let Some(current) = self.token.lock().await.clone() else {
            return;
        };
        let url = format!("{}/v1/auth/token/lookup-self", self.address);
        let Ok(answer) = self.send(self.http.get(&url), Some(&current.secret)).await else {
            return;
        };
        let Some(data) = answer.body.get("data").filter(|_| answer.status == 200) else {
            return;
        };
        let secs = |field: &str| data.get(field).and_then(Value::as_u64).unwrap_or(0);
        let ttl = Duration::from_secs(secs("ttl"));
        let mut slot = self.token.lock().await;
        if let Some(t) = slot.as_mut() {
            t.expires = expiry(ttl);
            t.lease = Duration::from_secs(secs("creation_ttl")).max(ttl);
            t.renewable = data.get("renewable").and_then(Value::as_bool).unwrap_or(false);
        }
    }

    /// Whether the server still accepts `token` (a path it refuses is then
    /// a permission of the path).
    async fn token_works(&self, token: &SecretString) -> Result<bool, ExternalFault> {
        let url = format!("{}/v1/auth/token/lookup-self", self.address);
        let answer = self.send(self.http.get(&url), Some(token)).await?;
        Ok(answer.status == 200)
    }

    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
        token: Option<&SecretString>,
    ) -> Result<Answer, ExternalFault> {
        if let Some(token) = token {
            let mut value = reqwest::header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                ExternalFault::Unauthenticated {
                    message: "the token is not a valid header value".into(),
                }
            })?;
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        if let Some(ns) = &self.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        let response = request.send().await.map_err(|e| ExternalFault::Unavailable {
            message: redact(&e.without_url().to_string()),
        })?;
        let status = response.status().as_u16();
        let body = read_bounded(response).await?;
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body).unwrap_or(Value::Null)
        };
        Ok(Answer { status, body })
    }
}

/// Keeps the token renewed for as long as the client lives.
async fn renewer(client: Weak<Client>) {
    let mut wait = match client.upgrade() {
        Some(c) => next_renewal(&c).await,
        None => return,
    };
    loop {
        tokio::time::sleep(wait).await;
        let Some(c) = client.upgrade() else { return };
        wait = c.renew().await;
    }
}

async fn next_renewal(client: &Client) -> Duration {
    match &*client.token.lock().await {
        Some(token) => until_renewal(token),
        None => Duration::from_secs(1),
    }
}

/// Two thirds of what is left of a token's lease (an hour for one that
/// does not expire).
fn until_renewal(token: &Token) -> Duration {
    match token.expires {
        Some(at) => at
            .saturating_duration_since(Instant::now())
            .mul_f64(2.0 / 3.0)
            .max(Duration::from_millis(200)),
        None => Duration::from_secs(3600),
    }
}

fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> reqwest::RequestBuilder {
    http.post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, ExternalFault> {
    let too_large = || ExternalFault::Invalid {
        message: format!("the answer is larger than {MAX_BODY} bytes"),
    };
    if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| ExternalFault::Unavailable {
        message: redact(&e.without_url().to_string()),
    })? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// When a lease the server gave ends: `None` for a lease of zero (no
/// expiry) or one too long for the clock to count (a server may answer
/// any number, up to `u64::MAX` seconds).
fn expiry(lease: Duration) -> Option<Instant> {
    if lease.is_zero() {
        return None;
    }
    Instant::now().checked_add(lease)
}

/// The token of a login or renewal answer (`auth.client_token`,
/// `auth.lease_duration`, `auth.renewable`).
fn token_of(body: &Value) -> Option<Token> {
    let auth = body.get("auth")?;
    let secret = auth.get("client_token")?.as_str()?;
    let lease = Duration::from_secs(auth.get("lease_duration").and_then(Value::as_u64).unwrap_or(0));
    Some(Token {
        secret: SecretString::from(secret.to_owned()),
        expires: expiry(lease),
        lease,
        renewable: auth.get("renewable").and_then(Value::as_bool).unwrap_or(false),
    })
}

/// The keys, version and lease of a KV version 2 read answer.
fn secret(body: &Value) -> Result<StoreSecret, ExternalFault> {
    let invalid = |message: &str| ExternalFault::Invalid {
        message: message.to_owned(),
    };
    let data = body
        .get("data")
        .ok_or_else(|| invalid("the answer has no data"))?;
    let keys = data
        .get("data")
        .and_then(Value::as_object)
        // A deleted or destroyed version answers data: null.
        .ok_or(ExternalFault::NotFound)?;
    let mut out = StoreSecret::new();
    for (key, value) in keys {
        let text = match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        out.insert(key.clone(), SecretValue::new(text));
    }
    if let Some(v) = data
        .get("metadata")
        .and_then(|m| m.get("version"))
        .and_then(Value::as_u64)
        .and_then(|v| v.to_string().parse::<SecretVersion>().ok())
    {
        out = out.with_version(v);
    }
    if let Some(lease) = body
        .get("lease_duration")
        .and_then(Value::as_u64)
        .filter(|l| *l > 0)
    {
        out = out.with_ttl(Duration::from_secs(lease));
    }
    Ok(out)
}

/// The server's `errors`, joined, bounded and redacted.
fn errors(body: &Value) -> String {
    let said: Vec<&str> = body
        .get("errors")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if said.is_empty() {
        "no reason given".to_owned()
    } else {
        redact(&said.join("; "))
    }
}

fn unexpected(status: u16, body: &Value) -> ExternalFault {
    match status {
        // Sealed, standby, rate limited, server errors: try again later.
        429 | 500..=599 => ExternalFault::Unavailable {
            message: format!("HTTP {status}: {}", errors(body)),
        },
        _ => ExternalFault::Invalid {
            message: format!("HTTP {status}: {}", errors(body)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_gives_keys_version_and_lease() {
        let body = serde_json::json!({
            "lease_duration": 0,
            "data": {"data": {"password": "pw", "port": 5432}, "metadata": {"version": 3}}
        });
        let s = secret(&body).unwrap();
        assert_eq!(s.get("password").unwrap().expose(), "pw");
        assert_eq!(s.get("port").unwrap().expose(), "5432");
        assert_eq!(s.version().unwrap().as_str(), "3");
        assert_eq!(s.ttl(), None);
        let deleted = serde_json::json!({"data": {"data": null, "metadata": {"version": 4}}});
        assert_eq!(secret(&deleted).unwrap_err(), ExternalFault::NotFound);
    }

    #[test]
    fn credentials_never_show() {
        let auth = VaultAuth::app_role("role-abc-123", "secret-xyz-789");
        let d = format!("{auth:?}");
        assert!(!d.contains("role-abc") && !d.contains("secret-xyz"), "{d}");
        let store =
            VaultStore::new("http://127.0.0.1:8200", VaultAuth::token("hvs.tokentokentoken")).unwrap();
        assert!(!format!("{store:?}").contains("hvs."));
        assert!(VaultStore::new("ftp://x", VaultAuth::token("t")).is_err());
    }

    #[test]
    fn a_namespace_is_set_on_a_shared_store_too_and_a_ca_bundle_needs_a_certificate() {
        let store = VaultStore::new("http://127.0.0.1:8200", VaultAuth::token("t")).unwrap();
        let kept = store.clone();
        let scoped = store.with_namespace("team-a").unwrap();
        assert_eq!(scoped.inner.namespace.as_deref(), Some("team-a"));
        assert_eq!(kept.inner.namespace, None);
        let err = VaultStore::with_ca(
            "https://127.0.0.1:8200",
            VaultAuth::token("t"),
            b"not a certificate",
        )
        .unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
    }

    #[test]
    fn a_mount_or_namespace_that_would_reshape_a_url_or_header_is_refused_by_name() {
        let address = "http://127.0.0.1:8200";
        let hostile = [
            "",
            "a//b",
            "/approle",
            "approle/",
            "../sys",
            "x/../../sys/raw",
            "app role",
            "app\r\nX-Vault-Token: t",
            "app?x=1",
            "app#x",
            "täm",
        ];
        let long = "a".repeat(129);
        for text in hostile.iter().copied().chain([long.as_str()]) {
            let auth = VaultAuth::app_role("role-abc", "secret-xyz").at_mount(text);
            let err = VaultStore::new(address, auth).unwrap_err();
            assert!(
                matches!(
                    err,
                    VaultError::Invalid {
                        part: VaultPart::AppRoleMount,
                        ..
                    }
                ),
                "{text:?}: {err}"
            );
            let said = err.to_string();
            assert!(
                said.contains("AppRole mount") && !said.contains("secret-xyz"),
                "{said}"
            );
            let store = VaultStore::new(address, VaultAuth::token("t")).unwrap();
            let err = store.with_namespace(text).unwrap_err();
            assert!(
                matches!(
                    err,
                    VaultError::Invalid {
                        part: VaultPart::Namespace,
                        ..
                    }
                ),
                "{text:?}: {err}"
            );
            if !text.is_empty() {
                assert!(
                    !err.to_string().contains(text),
                    "the message repeats the text: {err}"
                );
            }
        }
        for good in ["approle", "auth-2/team_a", "a".repeat(128).as_str()] {
            let auth = VaultAuth::app_role("r", "s").at_mount(good);
            let store = VaultStore::new(address, auth).unwrap_or_else(|e| panic!("{good}: {e}"));
            store
                .with_namespace(good)
                .unwrap_or_else(|e| panic!("{good}: {e}"));
        }
    }

    #[test]
    fn a_lease_past_the_clock_never_expires() {
        assert!(expiry(Duration::ZERO).is_none());
        assert!(expiry(Duration::from_secs(u64::MAX)).is_none());
        let hour = expiry(Duration::from_secs(3600)).expect("an hour ahead");
        assert!(hour > Instant::now() + Duration::from_secs(3599));
    }

    #[test]
    fn error_bodies_are_redacted() {
        let body = serde_json::json!({"errors": ["invalid value 'sup3r-s3cret-value-1234' for key"]});
        let e = unexpected(400, &body).to_string();
        assert!(!e.contains("sup3r") && e.contains("[REDACTED]"), "{e}");
    }
}
