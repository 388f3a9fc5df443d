//! Valid access tokens: from memory when fresh; otherwise one refresh per
//! token set at a time, in this process (a gate per key) and across replicas
//! (a lease on the token set, written with an expected version).

use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicTokenResponse};
use oauth2::{ClientId, ClientSecret, RefreshToken, TokenResponse, TokenUrl};

use crate::model::{
    CredentialKey, Health, ReauthReason, Record, RecordKey, RefreshLease, Timestamp, TokenSet, Version,
};
use crate::store::{Batch, Expect, StoreError, Write, next_version};

use super::error::OAuthError;
use super::http::{Exchange, Failure, classify};
use super::settings::{ClientKind, CodeClient};
use super::status::{Outcome, backoff};
#[cfg(feature = "tracing")]
use super::trace::key_span;
use super::trace::traced;
use super::{AccessToken, OAuthRuntime};

/// One token set's refresh gate: whoever holds it refreshes; the others wait
/// and then find the result.
#[derive(Default)]
pub(crate) struct Gate {
    state: tokio::sync::Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// The last failure and until when it answers without a new request.
    memo: Option<(tokio::time::Instant, OAuthError)>,
    /// New tokens the token server issued that could not be stored yet: the
    /// lease's version and the set.
    uncommitted: Option<(Version, TokenSet)>,
}

/// A token set made from a token response; what the response leaves out
/// (a rotated refresh token, the scopes) is kept from `old`.
pub(crate) fn set_from_response(
    key: &CredentialKey,
    response: &BasicTokenResponse,
    old_refresh: Option<&crate::model::SecretValue>,
    old_scopes: &[String],
    now: Timestamp,
) -> Result<TokenSet, Failure> {
    let access = crate::model::SecretValue::new(response.access_token().secret().clone());
    let refresh = response
        .refresh_token()
        .map(|r| crate::model::SecretValue::new(r.secret().clone()))
        .or_else(|| old_refresh.cloned());
    let scopes = response
        .scopes()
        .map(|s| s.iter().map(|s| s.to_string()).collect())
        .unwrap_or_else(|| old_scopes.to_vec());
    let expires_at = response.expires_in().map(|d| now.plus(d));
    TokenSet::new(
        key.clone(),
        access,
        refresh,
        response.token_type().as_ref(),
        scopes,
        now,
        expires_at,
    )
    .map_err(|problem| Failure::Refused {
        error: "invalid_response".into(),
        description: Some(problem),
    })
}

/// The access token of a client-credentials response, checked like a token
/// set's, and when it was obtained.
pub(crate) fn token_of_response(
    response: &BasicTokenResponse,
    now: Timestamp,
) -> Result<(AccessToken, Timestamp), Failure> {
    let secret = response.access_token().secret();
    if secret.is_empty() || secret.len() > crate::model::MAX_TOKEN_LEN {
        return Err(Failure::Refused {
            error: "invalid_response".into(),
            description: Some(format!("an access token of {} bytes", secret.len())),
        });
    }
    let token = AccessToken {
        secret: crate::model::SecretValue::new(secret.clone()),
        token_type: smol_str::SmolStr::new(response.token_type().as_ref()),
        expires_at: response.expires_in().map(|d| now.plus(d)),
    };
    Ok((token, now))
}

impl OAuthRuntime {
    fn store_error(&self, key: &CredentialKey, e: StoreError) -> OAuthError {
        OAuthError::Store {
            subject: self.subject(key),
            message: e.to_string(),
        }
    }

    /// The refresh lead for `set`: the smaller of the configured lead and the
    /// configured share of its lifetime.
    fn lead(&self, set: &TokenSet) -> Duration {
        let config = &self.inner.config;
        match set.expires_at() {
            Some(exp) => {
                let lifetime = exp.since(set.obtained_at());
                config.refresh_lead.min(lifetime * config.refresh_share / 100)
            }
            None => Duration::ZERO,
        }
    }

    fn expiry(&self, set: &TokenSet) -> Timestamp {
        set.expires_at()
            .unwrap_or_else(|| set.obtained_at().plus(self.inner.config.assumed_lifetime))
    }

    /// Fresh: expires later than the refresh lead from now.
    fn is_fresh(&self, set: &TokenSet, now: Timestamp) -> bool {
        now.plus(self.lead(set)) < self.expiry(set)
    }

    /// Still valid (though maybe due for a refresh).
    fn is_valid(&self, set: &TokenSet, now: Timestamp) -> bool {
        now < self.expiry(set)
    }

    /// A fresh access token of `key` from memory, or `None`: no lock, no
    /// I/O, no await (the fast path of [`OAuthRuntime::access_token`], for
    /// synchronous hosts too). Only token sets (authorization code) are
    /// served here.
    ///
    /// With reads audited (see
    /// [`RegistryBuilder::audit_reads`](crate::registry::RegistryBuilder::audit_reads)),
    /// a token handed out is recorded; one that must be recorded and cannot
    /// be is not handed out (`None`; [`OAuthRuntime::access_token`] then
    /// says why).
    pub fn cached_access_token(&self, key: &CredentialKey) -> Option<AccessToken> {
        let token = self.fresh_token(key)?;
        self.record_token_read(key).ok()?;
        Some(token)
    }

    /// A fresh access token of `key` from memory, not recorded as a read.
    fn fresh_token(&self, key: &CredentialKey) -> Option<AccessToken> {
        let now = Timestamp::now();
        self.records()
            .with_token_set(key, |_, set| {
                self.is_fresh(set, now).then(|| AccessToken::of(set))
            })
            .flatten()
    }

    /// A valid access token for `key`: from memory when fresh; otherwise
    /// refreshed (one refresh per token set at a time, across threads and
    /// replicas), or, for a connection on a shared application, obtained by
    /// client credentials. See the [module documentation](super).
    ///
    /// With reads audited (see
    /// [`RegistryBuilder::audit_reads`](crate::registry::RegistryBuilder::audit_reads)),
    /// each token handed out is recorded as a read by the runtime's actor
    /// ([`OAuthRuntime::acting_as`]); one that must be recorded and cannot
    /// be is [`OAuthError::NotAudited`].
    pub async fn access_token(&self, key: &CredentialKey) -> Result<AccessToken, OAuthError> {
        let token = self.token(key).await?;
        self.record_token_read(key)?;
        Ok(token)
    }

    /// [`OAuthRuntime::access_token`] without recording the read (for the
    /// runtime's own uses of a token, such as testing a connection).
    pub(crate) async fn token(&self, key: &CredentialKey) -> Result<AccessToken, OAuthError> {
        if let Some(token) = self.fresh_token(key) {
            return Ok(token);
        }
        traced!(key_span!("connective.oauth.token", key), async {
            match self.client(key)? {
                ClientKind::App(app) => self.connection_app_token(key, app).await,
                ClientKind::Code(client) => self.refreshed(key, &client).await,
            }
        })
    }

    /// Records that a token of `key` is handed out, when reads are
    /// audited.
    fn record_token_read(&self, key: &CredentialKey) -> Result<(), OAuthError> {
        let read = || {
            let connection = self.inner.host.connection(&key.project, key.connection);
            crate::model::SecretRead::AccessToken {
                key: key.clone(),
                connection: connection.map(|c| (c.scope().clone(), c.name().clone())),
            }
        };
        self.inner
            .host
            .record_read(self.actor.as_ref(), &read)
            .map_err(|reason| OAuthError::NotAudited {
                subject: self.subject(key),
                reason,
            })
    }

    fn gate(&self, key: &CredentialKey) -> Arc<Gate> {
        let mut gates = self.inner.gates.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(gates.entry(key.clone()).or_default())
    }

    /// The current token if it is still valid (for answering while a
    /// refresh is due but failed or is under way).
    fn valid_token(&self, key: &CredentialKey) -> Option<AccessToken> {
        let now = Timestamp::now();
        self.records()
            .with_token_set(key, |_, set| {
                self.is_valid(set, now).then(|| AccessToken::of(set))
            })
            .flatten()
    }

    async fn refreshed(&self, key: &CredentialKey, client: &CodeClient) -> Result<AccessToken, OAuthError> {
        let gate = self.gate(key);
        let mut state = match gate.state.try_lock() {
            Ok(state) => state,
            Err(_) => {
                // Someone refreshes now: a still valid token serves meanwhile.
                if let Some(token) = self.valid_token(key) {
                    return Ok(token);
                }
                gate.state.lock().await
            }
        };
        // Re-check after taking the gate: the holder before us may have
        // refreshed already.
        if let Some(token) = self.fresh_token(key) {
            return Ok(token);
        }
        if let Some((until, error)) = &state.memo {
            if tokio::time::Instant::now() < *until {
                return self.valid_token(key).ok_or_else(|| error.clone());
            }
            state.memo = None;
        }
        let result = traced!(
            key_span!("connective.oauth.refresh", key),
            self.refresh_locked(key, client, &mut state)
        );
        if let Err(e) = &result
            && !matches!(e, OAuthError::NotStored { .. })
        {
            let until = match self.records().status(key).map(|s| s.value.health().clone()) {
                Some(Health::Failing { next_retry, .. }) => {
                    tokio::time::Instant::from_std(crate::deadline::after(next_retry.since(Timestamp::now())))
                }
                // A person must act: answer from memory until the status
                // changes (re-authorization stores a new token set, which
                // the fast path serves).
                Some(Health::NeedsReauthorization { .. }) => {
                    tokio::time::Instant::from_std(crate::deadline::after(self.inner.config.retry_cap))
                }
                _ => tokio::time::Instant::now(),
            };
            state.memo = Some((until, e.clone()));
        }
        result
    }

    async fn refresh_locked(
        &self,
        key: &CredentialKey,
        client: &CodeClient,
        state: &mut GateState,
    ) -> Result<AccessToken, OAuthError> {
        let store_key = RecordKey::TokenSet(key.clone());
        if let Some(answer) = self.store_uncommitted(key, state).await {
            return answer;
        }
        let config = &self.inner.config;
        let give_up = tokio::time::Instant::from_std(crate::deadline::after(
            config.lease_ttl.saturating_add(config.http_timeout),
        ));
        loop {
            let got = self
                .inner
                .seam
                .get(store_key.clone())
                .await
                .map_err(|e| self.store_error(key, e))?;
            let Some((version, Record::TokenSet(set))) = got else {
                return Err(self.reauthorize(key, ReauthReason::NeverAuthorized).await);
            };
            self.records()
                .apply(&store_key, version, Some(&Record::TokenSet(Arc::clone(&set))));
            let now = Timestamp::now();
            if self.is_fresh(&set, now) {
                return Ok(AccessToken::of(&set));
            }
            // A person must act, and has not yet (no newer token set).
            if let Some(status) = self.records().status(key)
                && let Health::NeedsReauthorization { reason, .. } = status.value.health()
                && set.obtained_at() <= status.value.changed_at()
            {
                return Err(OAuthError::NeedsReauthorization {
                    key: key.clone(),
                    connection: self.named(key),
                    reason: *reason,
                });
            }
            if let Some(lease) = set.lease()
                && lease.holder != self.inner.holder
                && lease.until > now
            {
                // Another replica refreshes: re-read until it is done.
                if tokio::time::Instant::now() >= give_up {
                    return self.valid_token(key).ok_or_else(|| OAuthError::Busy {
                        key: key.clone(),
                        connection: self.named(key),
                    });
                }
                tokio::time::sleep(config.lease_poll).await;
                continue;
            }
            let Some(refresh_token) = set.refresh_token().cloned() else {
                if let Some(token) = self.is_valid(&set, now).then(|| AccessToken::of(&set)) {
                    return Ok(token);
                }
                return Err(self.reauthorize(key, ReauthReason::NoRefreshToken).await);
            };
            let Some(lease_version) = self.take_lease(key, &set, version, now).await? else {
                continue;
            };
            return self
                .refresh_leased(key, client, &set, &refresh_token, lease_version, state)
                .await;
        }
    }

    /// Records that a person must authorize `key` again, for `reason`; the
    /// error to answer.
    async fn reauthorize(&self, key: &CredentialKey, reason: ReauthReason) -> OAuthError {
        let _ = self
            .record_outcome(key, &Outcome::Reauthorize(reason), None)
            .await;
        OAuthError::NeedsReauthorization {
            key: key.clone(),
            connection: self.named(key),
            reason,
        }
    }

    /// Takes the refresh lease on `set` (read at `version`): of two
    /// replicas, one commits, the other conflicts (`None`: read again).
    /// Returns the leased record's version.
    async fn take_lease(
        &self,
        key: &CredentialKey,
        set: &TokenSet,
        version: Version,
        now: Timestamp,
    ) -> Result<Option<Version>, OAuthError> {
        let leased = Record::TokenSet(Arc::new(set.clone().with_lease(Some(RefreshLease {
            holder: self.inner.holder.clone(),
            until: now.plus(self.inner.config.lease_ttl),
        }))));
        let mut batch = Batch::new();
        batch.push(Write::put(leased.clone(), Expect::Version(version)));
        let lease_version = match self.inner.seam.commit(batch).await {
            // A store that answers without the write's version (a host's
            // own) gave it the next one; past the last version it could not.
            Ok(c) => match c.versions.first().copied() {
                Some(v) => v,
                None => next_version(&RecordKey::TokenSet(key.clone()), Some(version))
                    .map_err(|e| self.store_error(key, e))?,
            },
            Err(StoreError::Conflict { .. }) => return Ok(None),
            Err(e) => return Err(self.store_error(key, e)),
        };
        self.records()
            .apply(&RecordKey::TokenSet(key.clone()), lease_version, Some(&leased));
        Ok(Some(lease_version))
    }

    /// New tokens that could not be stored last time go first: stored now,
    /// they are the answer; if the store fails again, so does the call
    /// (they stay kept); if another replica took the token set over, they
    /// are dropped and `None` says to go on.
    async fn store_uncommitted(
        &self,
        key: &CredentialKey,
        state: &mut GateState,
    ) -> Option<Result<AccessToken, OAuthError>> {
        let (lease_version, set) = state.uncommitted.take()?;
        match self.store_refreshed(key, lease_version, &set).await {
            Ok(()) => Some(Ok(AccessToken::of(&set))),
            Err(StoreError::Conflict { .. }) => None,
            Err(e) => {
                let message = e.to_string();
                state.uncommitted = Some((lease_version, set));
                Some(Err(OAuthError::NotStored {
                    key: key.clone(),
                    connection: self.named(key),
                    message,
                }))
            }
        }
    }

    /// With the lease taken (at `lease_version`): exchanges the refresh
    /// token and stores the new set before handing out its access token;
    /// new tokens that cannot be stored are kept for the next call, and a
    /// failed exchange gives the lease back and records the failure.
    async fn refresh_leased(
        &self,
        key: &CredentialKey,
        client: &CodeClient,
        set: &TokenSet,
        refresh_token: &crate::model::SecretValue,
        lease_version: Version,
        state: &mut GateState,
    ) -> Result<AccessToken, OAuthError> {
        match self.exchange_refresh(key, client, set, refresh_token).await {
            Ok(new_set) => match self.store_refreshed(key, lease_version, &new_set).await {
                Ok(()) => Ok(AccessToken::of(&new_set)),
                Err(StoreError::Conflict { .. }) => Err(OAuthError::NotStored {
                    key: key.clone(),
                    connection: self.named(key),
                    message: "the refresh lease lapsed and another replica took the token set over".into(),
                }),
                Err(e) => {
                    let message = e.to_string();
                    state.uncommitted = Some((lease_version, new_set));
                    Err(OAuthError::NotStored {
                        key: key.clone(),
                        connection: self.named(key),
                        message,
                    })
                }
            },
            Err(failure) => {
                self.release_lease(key, lease_version, set).await;
                self.failed(key, failure).await
            }
        }
    }

    /// Stores a refreshed token set in place of the leased one (a few tries
    /// if the store is briefly unavailable), then marks the key active.
    async fn store_refreshed(
        &self,
        key: &CredentialKey,
        lease_version: Version,
        set: &TokenSet,
    ) -> Result<(), StoreError> {
        let store_key = RecordKey::TokenSet(key.clone());
        let record = Record::TokenSet(Arc::new(set.clone()));
        let mut attempt = 0;
        loop {
            let mut batch = Batch::new();
            batch.push(Write::put(record.clone(), Expect::Version(lease_version)));
            match self.inner.seam.commit(batch).await {
                Ok(c) => {
                    if let Some(v) = c.versions.first() {
                        self.records().apply(&store_key, *v, Some(&record));
                    }
                    let _ = self.record_outcome(key, &Outcome::Active, None).await;
                    return Ok(());
                }
                Err(e @ StoreError::Unavailable { .. }) if attempt + 1 < 3 => {
                    let _ = e;
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives the lease back after a failed refresh (best effort: it lapses
    /// anyway).
    async fn release_lease(&self, key: &CredentialKey, lease_version: Version, set: &TokenSet) {
        let record = Record::TokenSet(Arc::new(set.clone().with_lease(None)));
        let mut batch = Batch::new();
        batch.push(Write::put(record.clone(), Expect::Version(lease_version)));
        if let Ok(c) = self.inner.seam.commit(batch).await
            && let Some(v) = c.versions.first()
        {
            self.records()
                .apply(&RecordKey::TokenSet(key.clone()), *v, Some(&record));
        }
    }

    /// The status and the answer after a failed token request.
    pub(crate) async fn failed(
        &self,
        key: &CredentialKey,
        failure: Failure,
    ) -> Result<AccessToken, OAuthError> {
        let subject = self.subject(key);
        match failure {
            Failure::Reauthorize(reason) => {
                let _ = self
                    .record_outcome(key, &Outcome::Reauthorize(reason), None)
                    .await;
                Err(OAuthError::NeedsReauthorization {
                    key: key.clone(),
                    connection: self.named(key),
                    reason,
                })
            }
            Failure::Transient { message, retry_after } => {
                let status = self
                    .record_outcome(
                        key,
                        &Outcome::Transient {
                            message: message.clone(),
                            retry_after,
                        },
                        None,
                    )
                    .await;
                let retry_at = status.ok().and_then(|s| match s.health() {
                    Health::Failing { next_retry, .. } => Some(*next_retry),
                    _ => None,
                });
                self.valid_token(key).ok_or(OAuthError::Unavailable {
                    subject,
                    message,
                    retry_at,
                })
            }
            Failure::Refused { error, description } => {
                let message = format!("refused: {error}");
                let _ = self
                    .record_outcome(
                        key,
                        &Outcome::Transient {
                            message,
                            retry_after: None,
                        },
                        None,
                    )
                    .await;
                Err(OAuthError::Refused {
                    subject,
                    error,
                    description,
                })
            }
        }
    }

    /// One refresh grant, with up to the configured attempts at transient
    /// failures (backoff with jitter; a `Retry-After` longer than the
    /// in-call limit ends the call).
    async fn exchange_refresh(
        &self,
        key: &CredentialKey,
        client: &CodeClient,
        set: &TokenSet,
        refresh_token: &crate::model::SecretValue,
    ) -> Result<TokenSet, Failure> {
        let config = &self.inner.config;
        let token_url = super::settings::check_url(&self.subject(key), super::TOKEN_URL, &client.token_url)
            .map_err(|e| Failure::Refused {
            error: "invalid_client_configuration".into(),
            description: Some(e.to_string()),
        })?;
        let mut oauth = BasicClient::new(ClientId::new(client.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(token_url));
        if let Some(secret) = &client.client_secret {
            oauth = oauth.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        let grant = RefreshToken::new(refresh_token.expose().to_owned());
        let mut sent = vec![refresh_token];
        if let Some(s) = &client.client_secret {
            sent.push(s);
        }
        let mut attempt = 1;
        loop {
            let exchange = Exchange::new(&self.inner.http, config.max_response_bytes);
            let result = oauth
                .exchange_refresh_token(&grant)
                .request_async(&exchange)
                .await;
            let failure = match result {
                Ok(response) => {
                    return set_from_response(
                        key,
                        &response,
                        Some(refresh_token),
                        set.scopes(),
                        Timestamp::now(),
                    );
                }
                Err(e) => classify(e, exchange.meta(), &sent),
            };
            match failure {
                Failure::Transient { retry_after, .. } if attempt < config.attempts => {
                    let wait = backoff(config.retry_base, config.retry_cap, attempt, retry_after);
                    if wait > config.max_in_call_wait {
                        return Err(failure);
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return Err(other),
            }
        }
    }
}
