//! OAuth runtime records: token sets, pending authorizations and connection
//! statuses (rule 11). Plain data; the `oauth` wing gives them behaviour.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::ident::{ConnectionId, CustomerId, Environment, ProjectId};
use super::secret::SecretValue;

/// The longest access or refresh token kept (JSON Web Tokens with many claims
/// run to a few kilobytes).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// The most scopes a token set or authorization records.
pub const MAX_SCOPES: usize = 64;
/// The longest scope.
pub const MAX_SCOPE_LEN: usize = 256;
/// The longest redirect URI.
pub const MAX_URI_LEN: usize = 2048;
/// The longest free text kept in a record (an error message, a token type).
pub const MAX_NOTE_LEN: usize = 512;

/// A wall-clock instant, in milliseconds since the Unix epoch: what replicas
/// compare (expiry, leases), so it is not a process-local `Instant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Now, by the system clock (the epoch if the clock is before it).
    pub fn now() -> Self {
        Timestamp::from_system_time(SystemTime::now())
    }

    /// The instant `t`.
    pub fn from_system_time(t: SystemTime) -> Self {
        let millis = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp(u64::try_from(millis).unwrap_or(u64::MAX))
    }

    /// `d` later (saturating).
    pub fn plus(self, d: Duration) -> Self {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// How long after `earlier` this is (zero if it is not after).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}s", self.0 / 1000, self.0 % 1000)
    }
}

/// Whose credentials: one connection, in one environment (values, and so the
/// OAuth client, may differ per environment: Prismatic's test credentials are
/// the `test` environment), for one customer or for none.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CredentialKey {
    /// The project.
    pub project: ProjectId,
    /// The connection.
    pub connection: ConnectionId,
    /// The environment whose parameter values the OAuth client comes from.
    pub environment: Environment,
    /// The customer, for per-customer connections.
    pub customer: Option<CustomerId>,
}

impl CredentialKey {
    /// The key for `connection` of `project` in `environment`, for `customer`.
    pub fn new(
        project: ProjectId,
        connection: ConnectionId,
        environment: Environment,
        customer: Option<CustomerId>,
    ) -> Self {
        CredentialKey {
            project,
            connection,
            environment,
            customer,
        }
    }
}

impl fmt::Display for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "connection {} in {}", self.connection, self.environment)?;
        if let Some(c) = &self.customer {
            write!(f, " for customer {c}")?;
        }
        write!(f, " of project {}", self.project)
    }
}

/// Text checked against a bound and stripped of control characters when a
/// record is built or read: the free text of records (error messages, token
/// types) can come from a token server.
fn bounded(text: &str, max: usize) -> String {
    let mut out: String = text.chars().filter(|c| !c.is_control()).collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

fn check_scopes(scopes: &[String]) -> Result<(), String> {
    if scopes.len() > MAX_SCOPES {
        return Err(format!("{} scopes, more than {MAX_SCOPES}", scopes.len()));
    }
    for s in scopes {
        if s.is_empty() || s.len() > MAX_SCOPE_LEN || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "a scope must be 1 to {MAX_SCOPE_LEN} characters without spaces"
            ));
        }
    }
    Ok(())
}

fn check_token(what: &str, token: &SecretValue) -> Result<(), String> {
    let len = token.expose().len();
    if len == 0 || len > MAX_TOKEN_LEN {
        return Err(format!(
            "the {what} is {len} bytes: 1 to {MAX_TOKEN_LEN} are kept"
        ));
    }
    Ok(())
}

/// Who holds the right to refresh a token set, until when: a replica writes it
/// onto the token set (a compare-and-set through the store's versions) before
/// it asks the token server, so two replicas never refresh one token set at
/// once (rule 11).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshLease {
    /// The holder: a random ID of one runtime.
    pub holder: String,
    /// When the lease lapses if the holder never finishes.
    pub until: Timestamp,
}

/// The OAuth tokens one connection (environment, customer) holds. Its access
/// and refresh tokens are secrets: sealed at rest by the durable stores,
/// redacted in `Debug`, never in an error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "TokenSetFields")]
pub struct TokenSet {
    key: CredentialKey,
    access_token: SecretValue,
    refresh_token: Option<SecretValue>,
    token_type: String,
    scopes: Vec<String>,
    obtained_at: Timestamp,
    expires_at: Option<Timestamp>,
    lease: Option<RefreshLease>,
}

#[derive(Deserialize)]
struct TokenSetFields {
    key: CredentialKey,
    access_token: SecretValue,
    refresh_token: Option<SecretValue>,
    token_type: String,
    scopes: Vec<String>,
    obtained_at: Timestamp,
    expires_at: Option<Timestamp>,
    lease: Option<RefreshLease>,
}

impl TryFrom<TokenSetFields> for TokenSet {
    type Error = String;

    fn try_from(f: TokenSetFields) -> Result<Self, String> {
        TokenSet::new(
            f.key,
            f.access_token,
            f.refresh_token,
            &f.token_type,
            f.scopes,
            f.obtained_at,
            f.expires_at,
        )
        .map(|t| t.with_lease(f.lease))
    }
}

impl TokenSet {
    /// A token set, checked: tokens of 1 to [`MAX_TOKEN_LEN`] bytes, at most
    /// [`MAX_SCOPES`] scopes without spaces; the token type is kept bounded.
    pub fn new(
        key: CredentialKey,
        access_token: SecretValue,
        refresh_token: Option<SecretValue>,
        token_type: &str,
        scopes: Vec<String>,
        obtained_at: Timestamp,
        expires_at: Option<Timestamp>,
    ) -> Result<Self, String> {
        check_token("access token", &access_token)?;
        if let Some(r) = &refresh_token {
            check_token("refresh token", r)?;
        }
        check_scopes(&scopes)?;
        Ok(TokenSet {
            key,
            access_token,
            refresh_token,
            token_type: bounded(token_type, 64),
            scopes,
            obtained_at,
            expires_at,
            lease: None,
        })
    }

    /// Whose tokens.
    pub fn key(&self) -> &CredentialKey {
        &self.key
    }
    /// The access token: crate-internal (the runtime hands it out).
    #[cfg(feature = "oauth-runtime")]
    pub(crate) fn access_token(&self) -> &SecretValue {
        &self.access_token
    }
    /// The refresh token: crate-internal (the runtime refreshes with it).
    #[cfg(feature = "oauth-runtime")]
    pub(crate) fn refresh_token(&self) -> Option<&SecretValue> {
        self.refresh_token.as_ref()
    }
    /// Whether it has a refresh token.
    pub fn has_refresh_token(&self) -> bool {
        self.refresh_token.is_some()
    }
    /// The token type (`Bearer`, ...).
    pub fn token_type(&self) -> &str {
        &self.token_type
    }
    /// The scopes granted.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    /// When the tokens were obtained.
    pub fn obtained_at(&self) -> Timestamp {
        self.obtained_at
    }
    /// When the access token expires (`None`: the server did not say).
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }
    /// The refresh lease on it, if a replica is refreshing it.
    pub fn lease(&self) -> Option<&RefreshLease> {
        self.lease.as_ref()
    }
    /// A copy with `lease`.
    pub fn with_lease(mut self, lease: Option<RefreshLease>) -> Self {
        self.lease = lease.map(|l| RefreshLease {
            holder: bounded(&l.holder, 128),
            until: l.until,
        });
        self
    }
}

/// What became of a pending authorization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthorizationOutcome {
    /// Waiting for the callback.
    Open,
    /// Completed: the code was exchanged (single use).
    Completed {
        /// When.
        at: Timestamp,
    },
    /// The authorization server redirected back with an error
    /// (`access_denied`, ...).
    Denied {
        /// When.
        at: Timestamp,
        /// The error code the server sent (bounded, no secrets).
        error: String,
    },
}

/// An authorization started and not yet completed: what the callback needs to
/// finish it on any replica. The PKCE verifier is a secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "PendingFields")]
pub struct PendingAuthorization {
    state_id: String,
    credentials: CredentialKey,
    redirect_uri: String,
    scopes: Vec<String>,
    pkce_verifier: SecretValue,
    created_at: Timestamp,
    expires_at: Timestamp,
    outcome: AuthorizationOutcome,
}

#[derive(Deserialize)]
struct PendingFields {
    state_id: String,
    credentials: CredentialKey,
    redirect_uri: String,
    scopes: Vec<String>,
    pkce_verifier: SecretValue,
    created_at: Timestamp,
    expires_at: Timestamp,
    outcome: AuthorizationOutcome,
}

impl TryFrom<PendingFields> for PendingAuthorization {
    type Error = String;

    fn try_from(f: PendingFields) -> Result<Self, String> {
        let p = PendingAuthorization::new(
            f.state_id,
            f.credentials,
            f.redirect_uri,
            f.scopes,
            f.pkce_verifier,
            f.created_at,
            f.expires_at,
        )?;
        Ok(p.with_outcome(f.outcome))
    }
}

/// Whether `id` can be the random part of a `state`: 16 to 128 ASCII letters,
/// digits, `-` and `_`.
pub(crate) fn valid_state_id(id: &str) -> bool {
    (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl PendingAuthorization {
    /// A pending authorization, checked (state ID syntax, bounded redirect
    /// URI and scopes, a PKCE verifier of 43 to 128 characters).
    pub fn new(
        state_id: String,
        credentials: CredentialKey,
        redirect_uri: String,
        scopes: Vec<String>,
        pkce_verifier: SecretValue,
        created_at: Timestamp,
        expires_at: Timestamp,
    ) -> Result<Self, String> {
        if !valid_state_id(&state_id) {
            return Err("a state ID is 16 to 128 letters, digits, '-' or '_'".into());
        }
        if redirect_uri.is_empty() || redirect_uri.len() > MAX_URI_LEN {
            return Err(format!("a redirect URI is 1 to {MAX_URI_LEN} bytes"));
        }
        check_scopes(&scopes)?;
        if !(43..=128).contains(&pkce_verifier.expose().len()) {
            return Err("a PKCE verifier is 43 to 128 characters".into());
        }
        Ok(PendingAuthorization {
            state_id,
            credentials,
            redirect_uri,
            scopes,
            pkce_verifier,
            created_at,
            expires_at,
            outcome: AuthorizationOutcome::Open,
        })
    }

    /// The random part of its `state`.
    pub fn state_id(&self) -> &str {
        &self.state_id
    }
    /// Whose credentials it will store.
    pub fn credentials(&self) -> &CredentialKey {
        &self.credentials
    }
    /// The redirect URI the code was requested for.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }
    /// The scopes asked for.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
    /// The PKCE verifier: crate-internal (the runtime sends it once).
    #[cfg(feature = "oauth-runtime")]
    pub(crate) fn pkce_verifier(&self) -> &SecretValue {
        &self.pkce_verifier
    }
    /// When it was started.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// When it can no longer be completed.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
    /// What became of it.
    pub fn outcome(&self) -> &AuthorizationOutcome {
        &self.outcome
    }
    /// A copy with `outcome` (an error code is kept bounded).
    pub fn with_outcome(mut self, outcome: AuthorizationOutcome) -> Self {
        self.outcome = match outcome {
            AuthorizationOutcome::Denied { at, error } => AuthorizationOutcome::Denied {
                at,
                error: bounded(&error, 64),
            },
            other => other,
        };
        self
    }
}

/// Why a person must authorize a connection again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReauthReason {
    /// The token server refused the refresh token (`invalid_grant`): revoked,
    /// expired, or already used.
    InvalidGrant,
    /// The token set has no refresh token and its access token expired.
    NoRefreshToken,
    /// The customer declined the consent (`access_denied`) or the
    /// authorization server refused it.
    ConsentDenied,
    /// No token set was ever stored.
    NeverAuthorized,
}

impl fmt::Display for ReauthReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReauthReason::InvalidGrant => "the token server refused the refresh token (invalid_grant)",
            ReauthReason::NoRefreshToken => "the access token expired and there is no refresh token",
            ReauthReason::ConsentDenied => "the authorization was denied",
            ReauthReason::NeverAuthorized => "the connection was never authorized",
        })
    }
}

/// A connection's health (for one environment and customer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
#[non_exhaustive]
pub enum Health {
    /// Nothing is known yet.
    Untested,
    /// Working: the last token request or test succeeded.
    Active,
    /// Failing for a reason that may pass (a timeout, a 5xx, a 429): retried
    /// with backoff; never means a person must act.
    Failing {
        /// When it started failing.
        since: Timestamp,
        /// The last error (no secrets; bounded).
        last_error: String,
        /// Failed attempts in a row.
        attempts: u32,
        /// When the next attempt may be made.
        next_retry: Timestamp,
    },
    /// A person must authorize the connection again.
    NeedsReauthorization {
        /// Since when.
        since: Timestamp,
        /// Why.
        reason: ReauthReason,
    },
}

impl Health {
    /// Its kind, for listing by status.
    pub fn kind(&self) -> HealthKind {
        match self {
            Health::Untested => HealthKind::Untested,
            Health::Active => HealthKind::Active,
            Health::Failing { .. } => HealthKind::Failing,
            Health::NeedsReauthorization { .. } => HealthKind::NeedsReauthorization,
        }
    }
}

/// The kinds of [`Health`], to list statuses by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum HealthKind {
    /// [`Health::Untested`].
    Untested,
    /// [`Health::Active`].
    Active,
    /// [`Health::Failing`].
    Failing,
    /// [`Health::NeedsReauthorization`].
    NeedsReauthorization,
}

impl fmt::Display for HealthKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HealthKind::Untested => "untested",
            HealthKind::Active => "active",
            HealthKind::Failing => "failing",
            HealthKind::NeedsReauthorization => "needs re-authorization",
        })
    }
}

/// The last connection test's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestResult {
    /// Whether it passed.
    pub ok: bool,
    /// How long it took.
    pub latency_ms: u64,
    /// What the tester said (no secrets; bounded).
    pub message: String,
    /// When.
    pub at: Timestamp,
}

/// A connection's status for one environment and customer: stored, so every
/// replica and the host's UI read the same, and each change is on the change
/// feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StatusFields")]
pub struct ConnectionStatus {
    key: CredentialKey,
    health: Health,
    changed_at: Timestamp,
    last_test: Option<TestResult>,
}

#[derive(Deserialize)]
struct StatusFields {
    key: CredentialKey,
    health: Health,
    changed_at: Timestamp,
    last_test: Option<TestResult>,
}

impl TryFrom<StatusFields> for ConnectionStatus {
    type Error = String;

    fn try_from(f: StatusFields) -> Result<Self, String> {
        Ok(ConnectionStatus::new(f.key, f.health, f.changed_at).with_test(f.last_test))
    }
}

impl ConnectionStatus {
    /// A status (free text bounded to [`MAX_NOTE_LEN`], control characters
    /// dropped).
    pub fn new(key: CredentialKey, health: Health, changed_at: Timestamp) -> Self {
        let health = match health {
            Health::Failing {
                since,
                last_error,
                attempts,
                next_retry,
            } => Health::Failing {
                since,
                last_error: bounded(&last_error, MAX_NOTE_LEN),
                attempts,
                next_retry,
            },
            other => other,
        };
        ConnectionStatus {
            key,
            health,
            changed_at,
            last_test: None,
        }
    }

    /// A copy with the last test's result.
    pub fn with_test(mut self, test: Option<TestResult>) -> Self {
        self.last_test = test.map(|t| TestResult {
            message: bounded(&t.message, MAX_NOTE_LEN),
            ..t
        });
        self
    }

    /// Whose status.
    pub fn key(&self) -> &CredentialKey {
        &self.key
    }
    /// The health.
    pub fn health(&self) -> &Health {
        &self.health
    }
    /// When the health last changed.
    pub fn changed_at(&self) -> Timestamp {
        self.changed_at
    }
    /// The last connection test, if any.
    pub fn last_test(&self) -> Option<&TestResult> {
        self.last_test.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CredentialKey {
        CredentialKey::new(
            "acme".parse().unwrap(),
            ConnectionId::random(),
            Environment::production(),
            Some("globex".parse().unwrap()),
        )
    }

    #[test]
    fn token_sets_are_bounded_and_redacted() {
        let t = TokenSet::new(
            key(),
            SecretValue::new("at-123"),
            Some(SecretValue::new("rt-456")),
            "Bearer",
            vec!["read".into()],
            Timestamp(1),
            Some(Timestamp(2)),
        )
        .unwrap();
        let debug = format!("{t:?}");
        assert!(!debug.contains("at-123") && !debug.contains("rt-456"), "{debug}");
        assert!(
            TokenSet::new(
                key(),
                SecretValue::new(""),
                None,
                "Bearer",
                vec![],
                Timestamp(1),
                None
            )
            .is_err()
        );
        let too_long = SecretValue::new("x".repeat(MAX_TOKEN_LEN + 1));
        assert!(TokenSet::new(key(), too_long, None, "Bearer", vec![], Timestamp(1), None).is_err());
        let spaced = vec!["a b".to_string()];
        assert!(
            TokenSet::new(
                key(),
                SecretValue::new("a"),
                None,
                "Bearer",
                spaced,
                Timestamp(1),
                None
            )
            .is_err()
        );
    }

    #[test]
    fn status_text_is_bounded_and_cleaned() {
        let s = ConnectionStatus::new(
            key(),
            Health::Failing {
                since: Timestamp(1),
                last_error: format!("line\nbreak{}", "é".repeat(MAX_NOTE_LEN)),
                attempts: 1,
                next_retry: Timestamp(2),
            },
            Timestamp(1),
        );
        let Health::Failing { last_error, .. } = s.health() else {
            panic!("failing")
        };
        assert!(last_error.len() <= MAX_NOTE_LEN);
        assert!(last_error.starts_with("linebreak"));
    }

    #[test]
    fn state_ids_are_checked() {
        assert!(valid_state_id("abcdefghijklmnop"));
        assert!(!valid_state_id("short"));
        assert!(!valid_state_id("abcdefghijklmnop~"));
    }
}
