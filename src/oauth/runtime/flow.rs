//! Authorization code with PKCE S256: start (a stored, expiring, single-use
//! pending authorization) and complete on any replica.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenUrl,
};

use crate::model::{
    AuthorizationOutcome, CredentialKey, PendingAuthorization, ProjectId, ReauthReason, Record, RecordKey,
    SecretValue, Timestamp, TokenSet, Version, valid_state_id,
};
use crate::store::{Batch, Expect, StoreError, Write};

use super::error::{OAuthError, Subject};
use super::http::{Exchange, Failure, bounded_code, classify};
use super::refresh::set_from_response;
use super::settings::{ClientKind, CodeClient, check_url};
use super::status::Outcome;
#[cfg(feature = "tracing")]
use super::trace::key_span;
use super::trace::traced;
use super::{AUTHORIZE_URL, OAuthRuntime, TOKEN_URL};

/// A started authorization: send the user to [`Authorization::url`]; the
/// authorization server redirects back with `state` and `code`, which
/// [`OAuthRuntime::complete_authorization`] takes on any replica.
#[derive(Clone)]
pub struct Authorization {
    url: String,
    state: SecretValue,
    expires_at: Timestamp,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the state, which completes the authorization.
        f.debug_struct("Authorization")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl Authorization {
    /// The authorize URL to send the user to (it carries the `state`).
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The opaque `state`: whoever holds it can complete the authorization,
    /// so treat it as a secret until then.
    pub fn state(&self) -> &str {
        self.state.expose()
    }
    /// When it can no longer be completed.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }
}

/// The `state` separator: after it comes the project (project IDs never
/// contain it).
const SEP: char = '~';

/// The most expired authorizations
/// [`OAuthRuntime::purge_expired_authorizations`] removes in one batch.
pub const PURGE_BATCH: usize = 100;

fn purge_error(key: &RecordKey, e: StoreError) -> OAuthError {
    OAuthError::Store {
        subject: Subject::Authorization(key.project().clone()),
        message: e.to_string(),
    }
}

fn parse_state(state: &str) -> Result<(ProjectId, &str), OAuthError> {
    let (id, project) = state.split_once(SEP).ok_or(OAuthError::UnknownState)?;
    if !valid_state_id(id) {
        return Err(OAuthError::UnknownState);
    }
    let project = project
        .parse::<ProjectId>()
        .map_err(|_| OAuthError::UnknownState)?;
    Ok((project, id))
}

fn code_client(runtime: &OAuthRuntime, key: &CredentialKey) -> Result<CodeClient, OAuthError> {
    match runtime.client(key)? {
        ClientKind::Code(c) => Ok(c),
        ClientKind::App(_) => Err(OAuthError::Misconfigured {
            subject: runtime.subject(key),
            problem: "a connection on a managed application gets its tokens by client credentials; nobody authorizes it".into(),
        }),
    }
}

impl OAuthRuntime {
    /// Starts authorizing `key`'s connection (a supplied OAuth client): a
    /// PKCE S256 challenge, a random `state`, and a pending authorization
    /// stored so that any replica can complete it, until it expires
    /// (default 10 minutes). `scopes` replace the connection's `Scopes`.
    pub async fn start_authorization(
        &self,
        key: &CredentialKey,
        redirect_uri: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<Authorization, OAuthError> {
        traced!(
            key_span!("connective.oauth.authorize.start", key),
            self.start_authorization_untraced(key, redirect_uri, scopes)
        )
    }

    async fn start_authorization_untraced(
        &self,
        key: &CredentialKey,
        redirect_uri: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<Authorization, OAuthError> {
        let client = code_client(self, key)?;
        let scopes = scopes.unwrap_or_else(|| client.scopes.clone());
        let auth_url = check_url(&self.subject(key), AUTHORIZE_URL, &client.authorize_url)?;
        let redirect = RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| OAuthError::Misconfigured {
            subject: self.subject(key),
            problem: format!("the redirect URI is not a URL ({e})"),
        })?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let id = CsrfToken::new_random_len(32).secret().clone();
        let state = format!("{id}{SEP}{}", key.project);
        let oauth = BasicClient::new(ClientId::new(client.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(auth_url))
            .set_redirect_uri(redirect);
        let state_for_url = state.clone();
        let (url, _) = oauth
            .authorize_url(move || CsrfToken::new(state_for_url))
            .add_scopes(scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .url();
        let now = Timestamp::now();
        let expires_at = now.plus(self.inner.config.authorization_ttl);
        let pending = PendingAuthorization::new(
            id,
            key.clone(),
            redirect_uri.to_owned(),
            scopes,
            SecretValue::new(verifier.secret().clone()),
            now,
            expires_at,
        )
        .map_err(|problem| OAuthError::Misconfigured {
            subject: self.subject(key),
            problem,
        })?;
        let record = Record::PendingAuthorization(Arc::new(pending));
        let mut batch = Batch::new();
        batch.push(Write::put(record.clone(), Expect::Absent));
        let committed = self
            .inner
            .seam
            .commit(batch)
            .await
            .map_err(|e| OAuthError::Store {
                subject: self.subject(key),
                message: e.to_string(),
            })?;
        if let Some(v) = committed.versions.first() {
            self.records().apply(&record.key(), *v, Some(&record));
        }
        if self.purge_due(now) {
            // Housekeeping: a failure here is not this authorization's.
            let _ = self.purge_expired_authorizations().await;
        }
        Ok(Authorization {
            url: url.to_string(),
            state: SecretValue::new(state),
            expires_at,
        })
    }

    /// Claims the pending authorization of `state`: single use, so of two
    /// callbacks (or replicas) with one `state`, one gets it.
    async fn claim(
        &self,
        state: &str,
        outcome: AuthorizationOutcome,
    ) -> Result<PendingAuthorization, OAuthError> {
        let (project, id) = parse_state(state)?;
        let key = RecordKey::PendingAuthorization(project, id.to_owned());
        let store_error = |e: StoreError| OAuthError::Store {
            subject: Subject::Authorization(key.project().clone()),
            message: e.to_string(),
        };
        let Some((version, Record::PendingAuthorization(pending))) =
            self.inner.seam.get(key.clone()).await.map_err(store_error)?
        else {
            return Err(OAuthError::UnknownState);
        };
        let credentials = pending.credentials().clone();
        // Whose it is, for the completion's (or denial's) span.
        #[cfg(feature = "tracing")]
        super::trace::record_key(&credentials);
        if *pending.outcome() != AuthorizationOutcome::Open {
            return Err(OAuthError::StateUsed {
                connection: self.named(&credentials),
                key: credentials,
            });
        }
        if Timestamp::now() >= pending.expires_at() {
            // Nobody can complete it any more: remove it (unless another
            // replica changed or removed it meanwhile).
            let _ = self.delete_authorizations(&[(key, version)]).await;
            return Err(OAuthError::StateExpired {
                connection: self.named(&credentials),
                key: credentials,
                at: pending.expires_at(),
            });
        }
        let record = Record::PendingAuthorization(Arc::new((*pending).clone().with_outcome(outcome)));
        let mut batch = Batch::new();
        batch.push(Write::put(record.clone(), Expect::Version(version)));
        match self.inner.seam.commit(batch).await {
            Ok(committed) => {
                if let Some(v) = committed.versions.first() {
                    self.records().apply(&key, *v, Some(&record));
                }
                Ok((*pending).clone())
            }
            Err(StoreError::Conflict { .. }) => Err(OAuthError::StateUsed {
                connection: self.named(&credentials),
                key: credentials,
            }),
            Err(e) => Err(OAuthError::Store {
                subject: self.subject(&credentials),
                message: e.to_string(),
            }),
        }
    }

    /// Whether `start_authorization` should purge now (at most once per
    /// purge interval and runtime; the first caller of an interval wins).
    fn purge_due(&self, now: Timestamp) -> bool {
        let interval = u64::try_from(self.inner.config.purge_interval.as_millis()).unwrap_or(u64::MAX);
        let last = self.inner.last_purge.load(Ordering::Relaxed);
        now.0.saturating_sub(last) >= interval
            && self
                .inner
                .last_purge
                .compare_exchange(last, now.0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Removes every pending authorization whose expiry has passed (open,
    /// completed or denied: past its expiry a `state` can only be refused)
    /// among those this registry knows of (its own and, as it follows the
    /// change feed, other replicas'), in batches of at most
    /// [`PURGE_BATCH`]. Returns how many it removed.
    ///
    /// Safe on several replicas at once: each removal expects the version
    /// this registry read; one that another replica removed or changed
    /// meanwhile is skipped (and re-read), not an error. A store failure is
    /// [`OAuthError::Store`]; what was removed before it stays removed.
    pub async fn purge_expired_authorizations(&self) -> Result<usize, OAuthError> {
        traced!(
            tracing::debug_span!(
                "connective.oauth.purge",
                removed = tracing::field::Empty,
                outcome = tracing::field::Empty
            ),
            self.purge_untraced()
        )
    }

    async fn purge_untraced(&self) -> Result<usize, OAuthError> {
        let expired = self.records().expired_authorizations(Timestamp::now());
        let mut removed = 0;
        for chunk in expired.chunks(PURGE_BATCH) {
            match self.delete_authorizations(chunk).await {
                Ok(()) => removed += chunk.len(),
                // One of them changed: each on its own, then.
                Err(StoreError::Conflict { .. }) => {
                    for one in chunk {
                        match self.delete_authorizations(std::slice::from_ref(one)).await {
                            Ok(()) => removed += 1,
                            Err(StoreError::Conflict { .. }) => self.reread_authorization(&one.0).await,
                            Err(e) => return Err(purge_error(&one.0, e)),
                        }
                    }
                }
                Err(e) => return Err(purge_error(&chunk[0].0, e)),
            }
        }
        #[cfg(feature = "tracing")]
        tracing::Span::current().record("removed", removed);
        Ok(removed)
    }

    /// Deletes pending authorizations in one batch, each expecting its
    /// version; the index learns of it at once.
    async fn delete_authorizations(&self, keys: &[(RecordKey, Version)]) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        for (key, version) in keys {
            batch.push(Write::delete(key.clone(), Expect::Version(*version)));
        }
        let committed = self.inner.seam.commit(batch).await?;
        for ((key, _), version) in keys.iter().zip(&committed.versions) {
            self.records().apply(key, *version, None);
        }
        Ok(())
    }

    /// After a conflict: what the store has under `key` now, into the index.
    async fn reread_authorization(&self, key: &RecordKey) {
        match self.inner.seam.get(key.clone()).await {
            Ok(Some((version, record))) => self.records().apply(key, version, Some(&record)),
            Ok(None) => self.records().forget_authorization(key),
            Err(_) => {}
        }
    }

    /// Completes an authorization with the callback's `state` and `code`:
    /// the code is exchanged (with the PKCE verifier), the token set stored
    /// (sealed by the durable stores), and the status becomes active.
    /// Returns whose credentials were stored. A wrong, expired or reused
    /// `state` is [`OAuthError::UnknownState`], [`OAuthError::StateExpired`]
    /// or [`OAuthError::StateUsed`], and stores nothing.
    pub async fn complete_authorization(&self, state: &str, code: &str) -> Result<CredentialKey, OAuthError> {
        traced!(
            tracing::debug_span!(
                "connective.oauth.authorize.complete",
                project = tracing::field::Empty,
                connection = tracing::field::Empty,
                environment = tracing::field::Empty,
                customer = tracing::field::Empty,
                outcome = tracing::field::Empty
            ),
            self.complete_authorization_untraced(state, code)
        )
    }

    async fn complete_authorization_untraced(
        &self,
        state: &str,
        code: &str,
    ) -> Result<CredentialKey, OAuthError> {
        let pending = self
            .claim(state, AuthorizationOutcome::Completed { at: Timestamp::now() })
            .await?;
        let key = pending.credentials().clone();
        let client = code_client(self, &key)?;
        let token_url = check_url(&self.subject(&key), TOKEN_URL, &client.token_url)?;
        let redirect =
            RedirectUrl::new(pending.redirect_uri().to_owned()).map_err(|e| OAuthError::Misconfigured {
                subject: self.subject(&key),
                problem: format!("the redirect URI is not a URL ({e})"),
            })?;
        let mut oauth = BasicClient::new(ClientId::new(client.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(token_url))
            .set_redirect_uri(redirect);
        if let Some(secret) = &client.client_secret {
            oauth = oauth.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        let code_secret = SecretValue::new(code);
        let mut sent = vec![&code_secret, pending.pkce_verifier()];
        if let Some(s) = &client.client_secret {
            sent.push(s);
        }
        let exchange = Exchange::new(&self.inner.http, self.inner.config.max_response_bytes);
        let result = oauth
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier().expose().to_owned()))
            .request_async(&exchange)
            .await;
        let set = match result {
            Ok(response) => set_from_response(&key, &response, None, pending.scopes(), Timestamp::now()),
            Err(e) => Err(classify(e, exchange.meta(), &sent)),
        };
        let set = match set {
            Ok(set) => set,
            Err(failure) => {
                // An authorization code is single use: whatever failed, a
                // person must start again; transient failures are not
                // recorded as a need to re-authorize.
                let failure = match failure {
                    Failure::Reauthorize(_) => Failure::Reauthorize(ReauthReason::ConsentDenied),
                    other => other,
                };
                return self.failed(&key, failure).await.map(|_| key);
            }
        };
        self.store_new_set(&key, set).await?;
        Ok(key)
    }

    /// Records an error callback (`error=access_denied`, ...): the pending
    /// authorization is closed with the error code, and the status says the
    /// connection needs (re-)authorization. Returns whose it was.
    pub async fn deny_authorization(&self, state: &str, error: &str) -> Result<CredentialKey, OAuthError> {
        traced!(
            tracing::debug_span!(
                "connective.oauth.authorize.deny",
                project = tracing::field::Empty,
                connection = tracing::field::Empty,
                environment = tracing::field::Empty,
                customer = tracing::field::Empty,
                outcome = tracing::field::Empty
            ),
            self.deny_authorization_untraced(state, error)
        )
    }

    async fn deny_authorization_untraced(
        &self,
        state: &str,
        error: &str,
    ) -> Result<CredentialKey, OAuthError> {
        let error = bounded_code(error);
        let pending = self
            .claim(
                state,
                AuthorizationOutcome::Denied {
                    at: Timestamp::now(),
                    error: error.clone(),
                },
            )
            .await?;
        let key = pending.credentials().clone();
        let _ = self
            .record_outcome(&key, &Outcome::Reauthorize(ReauthReason::ConsentDenied), None)
            .await;
        Err(OAuthError::Denied {
            connection: self.named(&key),
            key,
            error,
        })
    }

    /// Stores a newly authorized token set in place of whatever is there (a
    /// new authorization supersedes the old grant), then marks it active.
    async fn store_new_set(&self, key: &CredentialKey, set: TokenSet) -> Result<(), OAuthError> {
        let store_key = RecordKey::TokenSet(key.clone());
        let record = Record::TokenSet(Arc::new(set));
        let store_error = |e: StoreError| OAuthError::Store {
            subject: self.subject(key),
            message: e.to_string(),
        };
        for _ in 0..8 {
            let expect = match self
                .inner
                .seam
                .get(store_key.clone())
                .await
                .map_err(store_error)?
            {
                Some((v, _)) => Expect::Version(v),
                None => Expect::Absent,
            };
            let mut batch = Batch::new();
            batch.push(Write::put(record.clone(), expect));
            match self.inner.seam.commit(batch).await {
                Ok(c) => {
                    if let Some(v) = c.versions.first() {
                        self.records().apply(&store_key, *v, Some(&record));
                    }
                    let _ = self.record_outcome(key, &Outcome::Active, None).await;
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => {
                    return Err(OAuthError::NotStored {
                        key: key.clone(),
                        connection: self.named(key),
                        message: e.to_string(),
                    });
                }
            }
        }
        Err(OAuthError::Store {
            subject: self.subject(key),
            message: "the token set kept changing while storing the new one".into(),
        })
    }
}
