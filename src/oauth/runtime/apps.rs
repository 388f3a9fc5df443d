//! Client credentials for connections on shared applications (rule 5): one
//! token cache per (application, scopes), serving every connection of the
//! application; a rotated secret makes its cached tokens unusable at once
//! (each cached token remembers the application version it was obtained
//! with, and the catalog's version is compared on every call).
//!
//! These tokens are cheap to obtain again, so they stay in memory: each
//! replica gets its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::{ArcSwap, ArcSwapOption};
use oauth2::basic::BasicClient;
use oauth2::{ClientId, ClientSecret, Scope, TokenUrl};

use crate::model::{AppOwner, CredentialKey, Health, OAuthApp, ProjectId, Timestamp, Version};

use super::error::{OAuthError, Subject};
use super::http::{Exchange, Failure, classify};
use super::refresh::token_of_response;
use super::settings::{AppClient, parse_url};
use super::status::{Outcome, backoff};
use super::trace::traced;
use super::{AccessToken, OAuthRuntime};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct AppKey {
    project: ProjectId,
    owner: AppOwner,
    /// Sorted and without repeats: one cache whatever the order asked.
    scopes: Vec<String>,
}

struct Cached {
    token: AccessToken,
    obtained_at: Timestamp,
    expires_at: Option<Timestamp>,
    app_version: Version,
}

#[derive(Default)]
struct AppSlot {
    current: ArcSwapOption<Cached>,
    /// The gate of one request at a time, and the last failure.
    gate: tokio::sync::Mutex<Option<(tokio::time::Instant, OAuthError)>>,
}

/// The caches, by (application, scopes); copied on a new key.
#[derive(Default)]
pub(crate) struct AppTokens {
    slots: ArcSwap<HashMap<AppKey, Arc<AppSlot>>>,
    insert: Mutex<()>,
}

impl AppTokens {
    fn slot(&self, key: &AppKey) -> Arc<AppSlot> {
        if let Some(s) = self.slots.load().get(key) {
            return Arc::clone(s);
        }
        let _guard = self.insert.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.slots.load_full();
        if let Some(s) = current.get(key) {
            return Arc::clone(s);
        }
        let slot = Arc::new(AppSlot::default());
        let mut next = (*current).clone();
        next.insert(key.clone(), Arc::clone(&slot));
        self.slots.store(Arc::new(next));
        slot
    }
}

impl OAuthRuntime {
    fn usable(&self, cached: &Cached, version: Version, now: Timestamp) -> bool {
        if cached.app_version != version {
            return false;
        }
        let config = &self.inner.config;
        let expiry = cached
            .expires_at
            .unwrap_or_else(|| cached.obtained_at.plus(config.assumed_lifetime));
        let lead = config
            .refresh_lead
            .min(expiry.since(cached.obtained_at) * config.refresh_share / 100);
        now.plus(lead) < expiry
    }

    /// A client-credentials token of the `owner` application of `project`
    /// for `scopes`, from the application's cache when fresh (one cache per
    /// application and scope set, shared by all its connections; a rotated
    /// secret invalidates it). With reads audited, the token handed out is
    /// recorded as a read, as [`OAuthRuntime::access_token`]'s are.
    pub async fn app_token(
        &self,
        project: &ProjectId,
        owner: &AppOwner,
        scopes: &[&str],
    ) -> Result<AccessToken, OAuthError> {
        let Some((version, app)) = self.inner.host.app(project, owner) else {
            return Err(OAuthError::Misconfigured {
                subject: Subject::App(project.clone(), owner.clone()),
                problem: "no such application".into(),
            });
        };
        let client = AppClient {
            app,
            version,
            owner: owner.clone(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        };
        let token = self.app_token_of(project, client, None).await?;
        let read = || crate::model::SecretRead::AppToken {
            project: project.clone(),
            owner: owner.clone(),
        };
        self.inner
            .host
            .record_read(self.actor.as_ref(), &read)
            .map_err(|reason| OAuthError::NotAudited {
                subject: Subject::App(project.clone(), owner.clone()),
                reason,
            })?;
        Ok(token)
    }

    /// A connection's token from its application; the outcome is the
    /// connection's status.
    pub(crate) async fn connection_app_token(
        &self,
        key: &CredentialKey,
        client: AppClient,
    ) -> Result<AccessToken, OAuthError> {
        self.app_token_of(&key.project, client, Some(key)).await
    }

    async fn app_token_of(
        &self,
        project: &ProjectId,
        client: AppClient,
        status_of: Option<&CredentialKey>,
    ) -> Result<AccessToken, OAuthError> {
        traced!(
            tracing::debug_span!(
                "connective.oauth.client_credentials",
                project = %project,
                owner = %client.owner,
                scopes = %client.scopes.join(" "),
                outcome = tracing::field::Empty
            ),
            self.app_token_untraced(project, client, status_of)
        )
    }

    async fn app_token_untraced(
        &self,
        project: &ProjectId,
        client: AppClient,
        status_of: Option<&CredentialKey>,
    ) -> Result<AccessToken, OAuthError> {
        let mut scopes = client.scopes.clone();
        scopes.sort();
        scopes.dedup();
        let key = AppKey {
            project: project.clone(),
            owner: client.owner.clone(),
            scopes,
        };
        let subject = Subject::App(project.clone(), client.owner.clone());
        let slot = self.inner.apps.slot(&key);
        let current_version = || self.inner.host.app_version(project, &client.owner);
        let fresh = |slot: &AppSlot| {
            let version = current_version()?;
            let cached = slot.current.load();
            let cached = cached.as_ref()?;
            self.usable(cached, version, Timestamp::now())
                .then(|| cached.token.clone())
        };
        if let Some(token) = fresh(&slot) {
            return Ok(token);
        }
        let mut memo = slot.gate.lock().await;
        if let Some(token) = fresh(&slot) {
            return Ok(token);
        }
        if let Some((until, error)) = memo.as_ref() {
            if tokio::time::Instant::now() < *until && current_version() == Some(client.version) {
                return Err(error.clone());
            }
            *memo = None;
        }
        // The application as it is now (a rotation may have happened since
        // `client` was read).
        let (version, app) = self
            .inner
            .host
            .app(project, &client.owner)
            .unwrap_or((client.version, Arc::clone(&client.app)));
        let failure = match self.request_app_token(&app, &key.scopes, &subject).await? {
            Ok((token, obtained_at)) => {
                slot.current.store(Some(Arc::new(Cached {
                    expires_at: token.expires_at(),
                    token: token.clone(),
                    obtained_at,
                    app_version: version,
                })));
                if let Some(k) = status_of {
                    let _ = self.record_outcome(k, &Outcome::Active, None).await;
                }
                return Ok(token);
            }
            Err(failure) => failure,
        };
        let (error, outcome) = app_failure(failure, subject);
        let config = &self.inner.config;
        let wait = match status_of {
            Some(k) => match self
                .record_outcome(k, &outcome, None)
                .await
                .map(|s| s.health().clone())
            {
                Ok(Health::Failing { next_retry, .. }) => next_retry.since(Timestamp::now()),
                _ => config.retry_base,
            },
            None => backoff(config.retry_base, config.retry_cap, 1, None),
        };
        *memo = Some((
            tokio::time::Instant::from_std(crate::deadline::after(wait)),
            error.clone(),
        ));
        Err(error)
    }

    /// Asks the token server for a client-credentials token of `app` for
    /// `scopes`, retrying transient failures within the call (backoff with
    /// jitter, never waiting longer than the in-call limit). The outer error
    /// is the application's configuration (a token URL that is not one).
    async fn request_app_token(
        &self,
        app: &OAuthApp,
        scopes: &[String],
        subject: &Subject,
    ) -> Result<Result<(AccessToken, Timestamp), Failure>, OAuthError> {
        let config = &self.inner.config;
        let token_url =
            parse_url("TokenURL", app.token_url()).map_err(|problem| OAuthError::Misconfigured {
                subject: subject.clone(),
                problem,
            })?;
        let secret = app.client_secret().clone();
        let oauth = BasicClient::new(ClientId::new(app.client_id().to_owned()))
            .set_client_secret(ClientSecret::new(secret.expose().to_owned()))
            .set_token_uri(TokenUrl::from_url(token_url));
        let mut attempt = 1;
        loop {
            let exchange = Exchange::new(&self.inner.http, config.max_response_bytes);
            let result = oauth
                .exchange_client_credentials()
                .add_scopes(scopes.iter().cloned().map(Scope::new))
                .request_async(&exchange)
                .await;
            let failure = match result {
                Ok(response) => return Ok(token_of_response(&response, Timestamp::now())),
                Err(e) => classify(e, exchange.meta(), &[&secret]),
            };
            match failure {
                Failure::Transient { retry_after, .. } if attempt < config.attempts => {
                    let wait = backoff(config.retry_base, config.retry_cap, attempt, retry_after);
                    if wait > config.max_in_call_wait {
                        return Ok(Err(failure));
                    }
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return Ok(Err(other)),
            }
        }
    }
}

/// What a failed client-credentials request answers and records. Client
/// credentials have no grant to lose: a refusal is the application's
/// configuration (a secret not yet known to the server), retried with
/// backoff, never a need to re-authorize.
fn app_failure(failure: Failure, subject: Subject) -> (OAuthError, Outcome) {
    match failure {
        Failure::Transient { message, retry_after } => (
            OAuthError::Unavailable {
                subject,
                message: message.clone(),
                retry_at: None,
            },
            Outcome::Transient { message, retry_after },
        ),
        Failure::Reauthorize(reason) => (
            OAuthError::Refused {
                subject,
                error: "invalid_grant".into(),
                description: Some(reason.to_string()),
            },
            Outcome::Transient {
                message: "refused: invalid_grant".into(),
                retry_after: None,
            },
        ),
        Failure::Refused { error, description } => (
            OAuthError::Refused {
                subject,
                error: error.clone(),
                description,
            },
            Outcome::Transient {
                message: format!("refused: {error}"),
                retry_after: None,
            },
        ),
    }
}
