//! What the OAuth runtime can fail with. Messages name identifiers, never a
//! token, secret, code or `state`.

use std::fmt;

use crate::model::{
    AppOwner, AuthScheme, ConnectionName, CredentialKey, EnvVarName, ProjectId, ReauthReason, Scope,
    Timestamp,
};

/// Whose tokens an error is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Subject {
    /// A connection's credentials (authorization code or client credentials),
    /// and the connection's scope and name when the runtime found it in the
    /// catalog.
    Credentials(CredentialKey, Option<(Scope, ConnectionName)>),
    /// A shared OAuth application's client credentials.
    App(ProjectId, AppOwner),
    /// A pending authorization of a project.
    Authorization(ProjectId),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Credentials(k, c) => write!(f, "{}", Named(k, c)),
            Subject::App(p, o) => write!(f, "the {o} of project {p}"),
            Subject::Authorization(p) => write!(f, "a pending authorization of project {p}"),
        }
    }
}

/// A connection as errors name it: by scope and name as the rest of the
/// crate does when they are known ("connection crm (project scope, ID
/// ...) in production of project acme"), keeping the ID; by what the token
/// key shows otherwise.
pub(crate) struct Named<'a>(
    pub(crate) &'a CredentialKey,
    pub(crate) &'a Option<(Scope, ConnectionName)>,
);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Named(key, connection) = self;
        let Some((scope, name)) = connection else {
            return write!(f, "{key}");
        };
        write!(
            f,
            "connection {name} ({scope}, ID {}) in {}",
            key.connection, key.environment
        )?;
        if let Some(c) = &key.customer {
            write!(f, " for customer {c}")?;
        }
        write!(f, " of project {}", key.project)
    }
}

/// An OAuth runtime failure. `Clone`, so one failed refresh can answer every
/// caller that waited for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// The runtime itself could not be set up.
    #[error("oauth runtime: {problem}")]
    Setup {
        /// What failed.
        problem: String,
    },
    /// No connection has this ID in this project.
    #[error("{subject}: no such connection")]
    UnknownConnection {
        /// Whose.
        subject: Subject,
    },
    /// The connection does not authenticate with OAuth 2.0.
    #[error("{subject}: the connection does not use OAuth 2.0 (it uses {auth})")]
    NotOAuth {
        /// Whose.
        subject: Subject,
        /// What it uses.
        auth: AuthScheme,
    },
    /// The connection's OAuth settings are missing or invalid (a parameter
    /// such as `TokenURL`, or a URL that is not HTTPS).
    #[error("{subject}: {problem}")]
    Misconfigured {
        /// Whose.
        subject: Subject,
        /// What is wrong (names parameters, never values of secret ones).
        problem: String,
    },
    /// No pending authorization has this `state` (wrong or forged).
    #[error("no pending authorization has this state")]
    UnknownState,
    /// The pending authorization expired before its callback.
    #[error("the authorization of {} expired at {at}", Named(key, connection))]
    StateExpired {
        /// Whose.
        key: CredentialKey,
        /// The connection's scope and name, when the runtime found it in
        /// the catalog.
        connection: Option<(Scope, ConnectionName)>,
        /// When it expired.
        at: Timestamp,
    },
    /// The pending authorization was already completed or denied: a `state`
    /// is single use.
    #[error("the authorization of {} was already used", Named(key, connection))]
    StateUsed {
        /// Whose.
        key: CredentialKey,
        /// The connection's scope and name, when the runtime found it in
        /// the catalog.
        connection: Option<(Scope, ConnectionName)>,
    },
    /// The authorization server sent the user back with an error.
    #[error("the authorization of {} was denied ({error})", Named(key, connection))]
    Denied {
        /// Whose.
        key: CredentialKey,
        /// The connection's scope and name, when the runtime found it in
        /// the catalog.
        connection: Option<(Scope, ConnectionName)>,
        /// The error code it sent (`access_denied`, ...).
        error: String,
    },
    /// A person must authorize the connection again.
    #[error("{} needs re-authorization: {reason}", Named(key, connection))]
    NeedsReauthorization {
        /// Whose.
        key: CredentialKey,
        /// The connection's scope and name, when the runtime found it in
        /// the catalog.
        connection: Option<(Scope, ConnectionName)>,
        /// Why.
        reason: ReauthReason,
    },
    /// The token server cannot serve now (a timeout, a refused connection, a
    /// 5xx, a 429): transient, retried with backoff.
    #[error("{subject}: the token server is unavailable for now ({message})")]
    Unavailable {
        /// Whose.
        subject: Subject,
        /// What happened (no secrets).
        message: String,
        /// When the next attempt will be made.
        retry_at: Option<Timestamp>,
    },
    /// The token server refused the request for another reason than a bad
    /// grant (`invalid_client`, `invalid_scope`, ...).
    #[error("{subject}: the token server refused the request: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        /// Whose.
        subject: Subject,
        /// The OAuth error code.
        error: String,
        /// The server's description, bounded and with anything token-like
        /// redacted.
        description: Option<String>,
    },
    /// Another replica holds the refresh lease and did not finish in time.
    #[error(
        "{}: another replica is refreshing the tokens and did not finish in time",
        Named(key, connection)
    )]
    Busy {
        /// Whose.
        key: CredentialKey,
        /// The connection's scope and name, when the runtime found it in
        /// the catalog.
        connection: Option<(Scope, ConnectionName)>,
    },
    /// The variable name asked for is one the registry's
    /// [`ReservedNames`](crate::model::ReservedNames) refuse (rule 4, the
    /// check resolution runs on every variable); nothing was added.
    #[error("variable {name} is reserved ({reason})")]
    ReservedVariable {
        /// The refused name.
        name: EnvVarName,
        /// Why it is reserved.
        reason: String,
    },
    /// The store failed; nothing the caller could use was lost.
    #[error("{subject}: store failed: {message}")]
    Store {
        /// Whose.
        subject: Subject,
        /// The store's error (names keys and versions only).
        message: String,
    },
    /// The token server issued new tokens but they could not be stored; they
    /// are not handed out (a rotated refresh token must be stored first) and
    /// are kept in memory to be stored on the next call.
    #[error(
        "{}: new tokens could not be stored ({message}); not handed out, storing them again on the next call",
        Named(key, connection)
    )]
    NotStored {
        /// Whose.
        key: CredentialKey,
        /// The connection's scope and name, when the runtime found it in
        /// the catalog.
        connection: Option<(Scope, ConnectionName)>,
        /// The store's error.
        message: String,
    },
    /// The host records every read of secrets in the audit trail, and this
    /// token's could not be recorded: it is not handed out.
    #[error(
        "{subject}: the token is not handed out, its read could not be recorded in the audit trail: {reason}"
    )]
    NotAudited {
        /// Whose.
        subject: Subject,
        /// Why (never a value).
        reason: String,
    },
}

impl OAuthError {
    /// The error's kind as one fixed word (`unknown_state`,
    /// `needs_reauthorization`, ...), e.g. for metrics and the outcome of a
    /// tracing span: never a value.
    pub fn kind(&self) -> &'static str {
        match self {
            OAuthError::Setup { .. } => "setup",
            OAuthError::UnknownConnection { .. } => "unknown_connection",
            OAuthError::NotOAuth { .. } => "not_oauth",
            OAuthError::Misconfigured { .. } => "misconfigured",
            OAuthError::UnknownState => "unknown_state",
            OAuthError::StateExpired { .. } => "state_expired",
            OAuthError::StateUsed { .. } => "state_used",
            OAuthError::Denied { .. } => "denied",
            OAuthError::NeedsReauthorization { .. } => "needs_reauthorization",
            OAuthError::Unavailable { .. } => "unavailable",
            OAuthError::Refused { .. } => "refused",
            OAuthError::Busy { .. } => "busy",
            OAuthError::ReservedVariable { .. } => "reserved_variable",
            OAuthError::Store { .. } => "store",
            OAuthError::NotStored { .. } => "not_stored",
            OAuthError::NotAudited { .. } => "not_audited",
        }
    }

    /// Whether trying again later may succeed without a person acting.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            OAuthError::Unavailable { .. }
                | OAuthError::Busy { .. }
                | OAuthError::Store { .. }
                | OAuthError::NotStored { .. }
        )
    }
}
