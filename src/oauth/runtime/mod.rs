//! The OAuth runtime (feature `oauth-runtime`): connections that stay alive
//! (rule 11).
//!
//! An [`OAuthRuntime`] authorizes connections (authorization code with PKCE
//! S256), hands out valid access tokens, refreshing them ahead of expiry, gets
//! client-credentials tokens for connections on shared applications (rule 5),
//! and keeps each connection's [status](crate::model::ConnectionStatus). The
//! protocol is the `oauth2` crate's; HTTP is reqwest with rustls, every call
//! with a timeout and a bounded response.
//!
//! # The API is async
//!
//! Hosts are mostly tokio services, so the runtime is async (tokio): make it
//! with [`Registry::oauth_runtime`](crate::registry::Registry::oauth_runtime)
//! and call [`OAuthRuntime::access_token`] from any task. A fresh token comes
//! from memory without awaiting anything costly (no lock, no I/O); only a
//! refresh goes to the store and the token server. Synchronous hosts call
//! [`OAuthRuntime::cached_access_token`] for that fast path, and otherwise
//! `block_on` the async calls on a tokio runtime of their own. The store is
//! synchronous today; the runtime calls it on tokio's blocking threads.
//!
//! # A first connection
//!
//! A connection with a supplied client (the customer's own Salesforce login,
//! say) declares where to authorize and which client to use; the runtime
//! makes the authorize URL to send the person to, and completes the
//! authorization when the callback brings the `code` back. Until then, no
//! token is handed out and the error says why.
//!
//! ```
//! use std::sync::Arc;
//! use connective::model::{CredentialKey, OAuthClient};
//! use connective::prelude::*;
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let registry = Arc::new(Registry::in_memory());
//! let (crm, _) = registry.create_connection(
//!     ConnectionSpec::project("acme", "salesforce")
//!         .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
//!         .param(Param::plain("AuthorizeURL").default("https://login.example.com/authorize"))
//!         .param(Param::plain("TokenURL").default("https://login.example.com/token"))
//!         .param(Param::plain("ClientID").default("acme-app"))
//!         .param(Param::secret("ClientSecret").default("client-s3cret"))
//!         .param(Param::plain("Scopes").optional().default("api refresh_token"))
//!         .build()?,
//! )?;
//! let runtime = registry.oauth_runtime().build()?;
//! let key = CredentialKey::new("acme".parse()?, crm, Environment::production(), Some("globex".parse()?));
//!
//! let authorization = runtime
//!     .start_authorization(&key, "https://host.example.com/oauth/callback", None)
//!     .await?;
//! assert!(authorization.url().starts_with("https://login.example.com/authorize?"));
//! assert!(authorization.url().contains("code_challenge_method=S256"));
//! // The callback would bring a code: runtime.complete_authorization(authorization.state(), code).await?
//!
//! let err = runtime.access_token(&key).await.unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     format!(
//!         "connection salesforce (project scope, ID {crm}) in production for customer globex of project acme \
//!          needs re-authorization: the connection was never authorized"
//!     ),
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Tokens
//!
//! Token sets are records in the registry's store, one per
//! [`CredentialKey`] (connection, environment, customer), their tokens
//! sealed at rest by the durable stores. Each registry indexes them
//! ([`RuntimeRecords`]) as it follows the
//! change feed, so a token another replica refreshed is served from memory.
//!
//! - **Fresh** means the access token expires later than the refresh lead
//!   from now; the lead is the smaller of [`OAuthRuntimeBuilder::refresh_lead`]
//!   (default 5 minutes) and a share of the token's lifetime
//!   ([`OAuthRuntimeBuilder::refresh_share`], default a quarter).
//! - **One refresh per token set at a time.** In one process, callers of one
//!   key queue on one asynchronous lock and re-check after taking it, so the
//!   first refreshes and the rest find its result. Across replicas, the one
//!   that refreshes first writes a [`RefreshLease`](crate::model::RefreshLease)
//!   onto the token set, expecting the version it read (rule 8): of two
//!   replicas only one can; the other re-reads the record until the lease is
//!   gone and the fresh tokens are there, or the lease lapses.
//! - **A rotated refresh token is stored before the access token is handed
//!   out.** The new token set replaces the leased one, expecting the lease's
//!   version. If that commit fails, the caller gets
//!   [`OAuthError::NotStored`], never the token, and the runtime keeps the
//!   new set in memory to store it on the next call (the old refresh token is
//!   already spent at a rotating server).
//!
//! # Pending authorizations
//!
//! [`OAuthRuntime::start_authorization`] stores a pending authorization
//! that any replica can complete until it expires; completing or denying it
//! marks it used, and it stays, so a reused `state` is
//! [`OAuthError::StateUsed`], until its expiry. Expired ones are removed by
//! [`OAuthRuntime::purge_expired_authorizations`], which a host may call on a
//! schedule and which `start_authorization` runs by itself at most once per
//! [`OAuthRuntimeBuilder::purge_interval`]; a callback that finds its
//! authorization expired removes it too. Each removal expects the version
//! the registry read, so replicas purging at once never remove a record
//! another replica changed, and none fails for it. Deleting a connection
//! removes its pending authorizations, token sets and statuses in the same
//! write ([`Tx::delete_connection`](crate::registry::Tx::delete_connection)).
//!
//! # Status
//!
//! Every outcome updates the key's status: success makes it active; a
//! timeout, a refused connection, a 5xx or a 429 makes it failing (since
//! when, the last error, the next retry: backoff with jitter, at least the
//! server's `Retry-After`) and never needs-re-authorization; `invalid_grant`,
//! a missing refresh token or a denied consent make it
//! needs-re-authorization. Statuses are records, so every replica and the
//! host's UI read the same, and each change is on the change feed.
//!
//! # Tracing
//!
//! With the `tracing` feature, authorization (start, complete, deny), an
//! access token not served from memory, a refresh, a client-credentials
//! token, a connection test and a purge each run in a `DEBUG` span
//! (`connective.oauth.*`) naming the connection's key or the application and
//! recording the outcome (`ok` or [`OAuthError::kind`]). No span carries a
//! token, secret, code or `state`.
//!
//! # Resolution stays deploy-time
//!
//! [`ResolvedEnv`](crate::resolve::ResolvedEnv) never embeds an access
//! token by itself. A host that wants one as a variable asks
//! [`OAuthRuntime::with_token_variable`]; its provenance then says the token's
//! expiry.

mod apps;
mod error;
mod flow;
mod http;
mod refresh;
mod settings;
mod status;
mod tester;
mod trace;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use error::{OAuthError, Subject};
pub use flow::{Authorization, PURGE_BATCH};
pub use settings::{AUTHORIZE_URL, CLIENT_ID, CLIENT_SECRET, SCOPES, TOKEN_URL};
pub use tester::{ConnectionTester, HttpTester, TestFuture, TestTarget, TokenTester, Verdict};

use crate::model::{
    AppOwner, Connection, ConnectionId, ConnectionTemplate, CredentialKey, OAuthApp, ProjectId, Record,
    RecordKey, SecretValue, TemplateName, Timestamp, TokenSet, Version,
};
use crate::oauth::RuntimeRecords;
use crate::store::{Batch, Committed, Store, StoreError};

/// What the runtime needs of a registry: its store, its connections and
/// applications, and its index of runtime records. The registry implements
/// it; the runtime never sees the registry itself.
pub(crate) trait Host: Send + Sync + 'static {
    fn store(&self) -> Arc<dyn Store>;
    fn connection(&self, project: &ProjectId, id: ConnectionId) -> Option<Arc<Connection>>;
    fn app(&self, project: &ProjectId, owner: &AppOwner) -> Option<(Version, Arc<OAuthApp>)>;
    fn template(&self, project: &ProjectId, name: &TemplateName) -> Option<Arc<ConnectionTemplate>>;
    /// The application's version, without taking a reference count.
    fn app_version(&self, project: &ProjectId, owner: &AppOwner) -> Option<Version>;
    fn records(&self) -> &RuntimeRecords;
    /// The resolution policy (reserved variable names).
    fn policy(&self) -> &crate::model::ResolvePolicy;
    /// Records a read of secrets by `actor` (the registry's default reader
    /// if `None`) when the registry audits reads (`read` is called only
    /// then); `Err` (why) when the read must be refused.
    fn record_read(
        &self,
        actor: Option<&crate::model::ActorId>,
        read: &dyn Fn() -> crate::model::SecretRead,
    ) -> Result<(), String>;
}

/// The one seam between the runtime and the synchronous store: each call runs
/// on tokio's blocking threads.
#[derive(Clone)]
pub(crate) struct StoreSeam {
    store: Arc<dyn Store>,
}

impl StoreSeam {
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let store = Arc::clone(&self.store);
        let backend = store.backend();
        tokio::task::spawn_blocking(move || f(&*store))
            .await
            .unwrap_or_else(|e| {
                Err(StoreError::Unavailable {
                    backend,
                    message: format!("the store call did not finish: {e}"),
                })
            })
    }

    pub(crate) async fn get(&self, key: RecordKey) -> Result<Option<(Version, Record)>, StoreError> {
        self.run(move |s| s.get(&key)).await
    }

    /// Commits `batch` under a fresh token; when the answer is lost
    /// ([`StoreError::OutcomeUnknown`]) the store is asked whether the batch
    /// was applied, so the answer is the batch's (or the loss itself, if the
    /// store cannot tell yet: then a later read says).
    pub(crate) async fn commit(&self, batch: Batch) -> Result<Committed, StoreError> {
        let token = crate::store::CommitToken::random();
        let batch = batch.with_token(token);
        self.run(move |s| match s.commit(&batch) {
            Err(StoreError::OutcomeUnknown { backend, message }) => {
                for pause in [0u64, 50, 250] {
                    std::thread::sleep(Duration::from_millis(pause));
                    match s.find_commit(token, crate::model::Revision(0)) {
                        Ok(Some(committed)) => return Ok(committed),
                        Ok(None) => {
                            return Err(StoreError::Unavailable {
                                backend,
                                message: format!("{message} (the batch was not applied)"),
                            });
                        }
                        Err(_) => continue,
                    }
                }
                Err(StoreError::OutcomeUnknown { backend, message })
            }
            other => other,
        })
        .await
    }
}

/// An access token handed out by the runtime. `Debug` redacts it; read it
/// with [`AccessToken::expose`] (e.g. into an `Authorization` header).
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretValue,
    token_type: smol_str::SmolStr,
    expires_at: Option<Timestamp>,
}

impl AccessToken {
    pub(crate) fn of(set: &TokenSet) -> Self {
        AccessToken {
            // A copy of its own, not a clone sharing the token set's: callers
            // on many threads take the same token at once, and a shared
            // reference count is one cache line they would all contend on
            // (2 threads served 1.5x instead of 1.9x 1 thread's tokens).
            secret: SecretValue::new(set.access_token().expose()),
            token_type: smol_str::SmolStr::new(set.token_type()),
            expires_at: set.expires_at(),
        }
    }

    /// The token: an explicit exposure.
    pub fn expose(&self) -> &str {
        self.secret.expose()
    }

    /// The token as a secret value.
    pub fn secret(&self) -> &SecretValue {
        &self.secret
    }

    /// The token type the server gave (`Bearer`, ...).
    pub fn token_type(&self) -> &str {
        &self.token_type
    }

    /// When it expires, if the server said.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[REDACTED]")
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The runtime's settings (see the builder's methods for each).
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub http_timeout: Duration,
    pub connect_timeout: Duration,
    pub max_response_bytes: usize,
    pub refresh_lead: Duration,
    pub refresh_share: u32,
    pub assumed_lifetime: Duration,
    pub lease_ttl: Duration,
    pub lease_poll: Duration,
    pub authorization_ttl: Duration,
    pub purge_interval: Duration,
    pub attempts: u32,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    pub max_in_call_wait: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            http_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: 64 * 1024,
            refresh_lead: Duration::from_secs(300),
            refresh_share: 25,
            assumed_lifetime: Duration::from_secs(3600),
            lease_ttl: Duration::from_secs(60),
            lease_poll: Duration::from_millis(25),
            authorization_ttl: Duration::from_secs(600),
            purge_interval: Duration::from_secs(60),
            attempts: 3,
            retry_base: Duration::from_millis(200),
            retry_cap: Duration::from_secs(300),
            max_in_call_wait: Duration::from_secs(5),
        }
    }
}

/// Configures an [`OAuthRuntime`]; from
/// [`Registry::oauth_runtime`](crate::registry::Registry::oauth_runtime).
pub struct OAuthRuntimeBuilder {
    host: Arc<dyn Host>,
    config: Config,
}

impl fmt::Debug for OAuthRuntimeBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthRuntimeBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OAuthRuntimeBuilder {
    pub(crate) fn new(host: Arc<dyn Host>) -> Self {
        OAuthRuntimeBuilder {
            host,
            config: Config::default(),
        }
    }

    /// The longest an HTTP call may take, response included (default 10 s).
    pub fn http_timeout(mut self, d: Duration) -> Self {
        self.config.http_timeout = d;
        self
    }

    /// The longest connecting may take (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// The largest response body read (default 64 KiB); a larger one fails
    /// the call.
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.config.max_response_bytes = n;
        self
    }

    /// Refresh at most this long before expiry (default 5 minutes).
    pub fn refresh_lead(mut self, d: Duration) -> Self {
        self.config.refresh_lead = d;
        self
    }

    /// Refresh at most this share of the lifetime (in percent, default 25)
    /// before expiry: a token valid for 4 s is refreshed 1 s before.
    pub fn refresh_share(mut self, percent: u32) -> Self {
        self.config.refresh_share = percent.min(100);
        self
    }

    /// How long a token whose server gave no expiry is taken to live
    /// (default 1 hour).
    pub fn assumed_lifetime(mut self, d: Duration) -> Self {
        self.config.assumed_lifetime = d;
        self
    }

    /// How long a replica's refresh lease lasts if it never finishes (default
    /// 60 s; keep it well above the HTTP timeout times the attempts).
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.config.lease_ttl = d;
        self
    }

    /// How often a replica waiting on another's lease re-reads the token set
    /// (default 25 ms).
    pub fn lease_poll(mut self, d: Duration) -> Self {
        self.config.lease_poll = d;
        self
    }

    /// How long a started authorization can be completed (default 10
    /// minutes).
    pub fn authorization_ttl(mut self, d: Duration) -> Self {
        self.config.authorization_ttl = d;
        self
    }

    /// How often [`OAuthRuntime::start_authorization`] also removes the
    /// expired pending authorizations
    /// ([`OAuthRuntime::purge_expired_authorizations`]): at most once per
    /// this interval and runtime (default 1 minute; [`Duration::MAX`]:
    /// never, for a host that purges on a schedule of its own).
    pub fn purge_interval(mut self, d: Duration) -> Self {
        self.config.purge_interval = d;
        self
    }

    /// Attempts one call makes at a transient failure (default 3), waiting
    /// with backoff and jitter between them (from `base`, default 200 ms,
    /// at least the server's `Retry-After` when it is at most 5 s).
    pub fn retries(mut self, attempts: u32, base: Duration) -> Self {
        self.config.attempts = attempts.max(1);
        self.config.retry_base = base;
        self
    }

    /// The longest wait between attempts across calls, once failing (default
    /// 5 minutes).
    pub fn retry_cap(mut self, d: Duration) -> Self {
        self.config.retry_cap = d;
        self
    }

    /// Builds the runtime (its HTTP client: rustls with the web PKI roots, no
    /// redirects).
    pub fn build(self) -> Result<OAuthRuntime, OAuthError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(self.config.http_timeout)
            .connect_timeout(self.config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| OAuthError::Setup {
                problem: format!("cannot build the HTTP client: {}", e.without_url()),
            })?;
        let mut holder_bytes = [0u8; 12];
        crate::model::random::fill(&mut holder_bytes);
        let holder = holder_bytes.iter().map(|b| format!("{b:02x}")).collect();
        let seam = StoreSeam {
            store: self.host.store(),
        };
        Ok(OAuthRuntime {
            actor: None,
            inner: Arc::new(Inner {
                host: self.host,
                seam,
                http,
                config: self.config,
                holder,
                gates: Mutex::new(HashMap::new()),
                apps: apps::AppTokens::default(),
                last_purge: AtomicU64::new(0),
            }),
        })
    }
}

pub(crate) struct Inner {
    host: Arc<dyn Host>,
    seam: StoreSeam,
    http: reqwest::Client,
    config: Config,
    /// This runtime's ID on refresh leases.
    holder: String,
    /// One refresh gate per token set.
    gates: Mutex<HashMap<CredentialKey, Arc<refresh::Gate>>>,
    apps: apps::AppTokens,
    /// When start_authorization last purged expired authorizations (ms
    /// since the epoch).
    last_purge: AtomicU64,
}

/// Authorizes connections, keeps their tokens fresh and their status known
/// (see the [module documentation](self)). Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct OAuthRuntime {
    inner: Arc<Inner>,
    /// Who the tokens this handle hands out are recorded as read by (with
    /// reads audited); `None`: the registry's default reader.
    actor: Option<crate::model::ActorId>,
}

impl fmt::Debug for OAuthRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthRuntime")
            .field("holder", &self.inner.holder)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl OAuthRuntime {
    /// This runtime, handing out tokens on behalf of `actor`: with reads
    /// audited (see
    /// [`RegistryBuilder::audit_reads`](crate::registry::RegistryBuilder::audit_reads)),
    /// the tokens it hands out are recorded as `actor`'s reads. Shares
    /// everything else with `self` (caches, refresh gates).
    pub fn acting_as(&self, actor: crate::model::ActorId) -> OAuthRuntime {
        OAuthRuntime {
            inner: Arc::clone(&self.inner),
            actor: Some(actor),
        }
    }

    /// The scope and name of `key`'s connection, when the catalog has it:
    /// what errors name a connection by.
    pub(crate) fn named(
        &self,
        key: &CredentialKey,
    ) -> Option<(crate::model::Scope, crate::model::ConnectionName)> {
        self.inner
            .host
            .connection(&key.project, key.connection)
            .map(|c| (c.scope().clone(), c.name().clone()))
    }

    pub(crate) fn subject(&self, key: &CredentialKey) -> Subject {
        Subject::Credentials(key.clone(), self.named(key))
    }

    fn connection(&self, key: &CredentialKey) -> Result<Arc<Connection>, OAuthError> {
        self.inner
            .host
            .connection(&key.project, key.connection)
            .ok_or_else(|| OAuthError::UnknownConnection {
                subject: Subject::Credentials(key.clone(), None),
            })
    }

    fn client(&self, key: &CredentialKey) -> Result<settings::ClientKind, OAuthError> {
        let connection = self.connection(key)?;
        let template = connection
            .spec()
            .template()
            .and_then(|name| self.inner.host.template(&key.project, name));
        let source = settings::Source {
            connection: &connection,
            template: template.as_deref(),
        };
        settings::client_for(
            &source,
            key,
            |owner| self.inner.host.app(&key.project, owner),
            self.inner.host.policy().external_secrets(),
        )
    }

    fn records(&self) -> &RuntimeRecords {
        self.inner.host.records()
    }

    /// The stored status of `key`: [`Health::Untested`](crate::model::Health::Untested)
    /// when nothing was recorded yet.
    pub fn status(&self, key: &CredentialKey) -> crate::model::ConnectionStatus {
        match self.records().status(key) {
            Some(s) => (*s.value).clone(),
            None => {
                crate::model::ConnectionStatus::new(key.clone(), crate::model::Health::Untested, Timestamp(0))
            }
        }
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<OAuthRuntime>();
    assert_send_sync::<AccessToken>();
    assert_send_sync::<OAuthError>();
};

impl OAuthRuntime {
    /// `env` with one more variable, `name`, holding a valid access token of
    /// `key` (see [`OAuthRuntime::access_token`]); its provenance names the
    /// connection and says when the token expires
    /// ([`ValueSource::AccessToken`](crate::resolve::ValueSource::AccessToken)).
    /// Resolution never embeds a token by itself: a short-lived token in a
    /// deploy-time environment would outlive itself, so a host asks for one
    /// only where it starts the process right away.
    ///
    /// `name` passes the same reserved-name check as every resolved variable
    /// (the registry's [`ReservedNames`](crate::model::ReservedNames)): a
    /// reserved one is [`OAuthError::ReservedVariable`], checked before any
    /// token is fetched.
    pub async fn with_token_variable(
        &self,
        mut env: crate::resolve::ResolvedEnv,
        key: &CredentialKey,
        name: crate::model::EnvVarName,
    ) -> Result<crate::resolve::ResolvedEnv, OAuthError> {
        if let Err(e) = self.inner.host.policy().reserved().check(&name) {
            return Err(OAuthError::ReservedVariable {
                reason: match e {
                    crate::model::ParseError::Reserved { reason, .. } => reason,
                    other => other.to_string(),
                },
                name,
            });
        }
        let connection = self.connection(key)?;
        let token = self.access_token(key).await?;
        let provenance = crate::resolve::Provenance {
            connection_id: connection.id(),
            connection: connection.name().clone(),
            scope: connection.scope().clone(),
            param: crate::model::ParamName::parse("AccessToken").map_err(|e| OAuthError::Setup {
                problem: e.to_string(),
            })?,
            source: crate::resolve::ValueSource::AccessToken {
                expires_at: token.expires_at(),
            },
            name_source: crate::resolve::NameSource::Explicit,
            entered_by: None,
        };
        let var = crate::resolve::OwnedVar {
            name: name.clone(),
            value: crate::resolve::ResolvedValue::Secret(token.secret().clone()),
            provenance,
        };
        if !env.push(var) {
            return Err(OAuthError::Misconfigured {
                subject: self.subject(key),
                problem: format!("the environment already has a variable {name}"),
            });
        }
        Ok(env)
    }
}
