//! Shared OAuth applications: which application a connection uses, and the
//! provisioner that creates, rotates and releases them.
//!
//! The rule (architecture rule 5, the Choreo model): an OAuth 2.0
//! client-credentials connection to a platform integration
//! ([`OAuthClient::Shared`]) uses its project's one application when it is
//! project-scope, and its integration's application when it is
//! integration-scope; [`OAuthClient::Dedicated`] gives the connection an
//! application of its own. The registry provisions an application when the
//! first connection needs it and releases it when the last one is gone, in the
//! same atomic write. See [`app_owner_for`].
//!
//! The OAuth runtime's records (token sets and connection statuses) are
//! indexed for every registry in [`RuntimeRecords`]; with the
//! `oauth-runtime` feature, [`runtime`] authorizes connections, keeps their
//! tokens fresh and tracks their health (rule 11).

pub(crate) mod ledger;
mod records;
#[cfg(feature = "oauth-runtime")]
#[cfg_attr(docsrs, doc(cfg(feature = "oauth-runtime")))]
pub mod runtime;

pub use records::{RuntimeRecords, SHARDS};

use std::fmt;

use crate::model::{
    AppOwner, ConnectionId, ConnectionSpec, OAuthApp, OAuthClient, PlatformTarget, ProjectId, Scope,
    SecretValue,
};

/// **Rule 5, application sharing.** The application a connection with ID `id`
/// and spec `spec` uses, or `None` if the platform manages no application for
/// it.
///
/// ```
/// use connective::model::{AppOwner, AuthScheme, ConnectionId, ConnectionSpec, OAuthClient};
/// use connective::oauth::app_owner_for;
/// let spec = ConnectionSpec::integration("acme", "orders", "billing")
///     .platform_target("acme", "billing-api")
///     .auth(AuthScheme::OAuth2(OAuthClient::Shared))
///     .build()?;
/// let owner = app_owner_for(&spec, ConnectionId::random());
/// assert_eq!(owner, Some(AppOwner::Integration("orders".parse()?)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn app_owner_for(spec: &ConnectionSpec, id: ConnectionId) -> Option<AppOwner> {
    match (spec.auth().managed_oauth()?, spec.scope()) {
        (OAuthClient::Dedicated, _) => Some(AppOwner::Connection(id)),
        (_, Scope::Project) => Some(AppOwner::Project),
        (_, Scope::Integration(i)) => Some(AppOwner::Integration(i.clone())),
    }
}

/// What a provisioner is asked to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    /// The project.
    pub project: ProjectId,
    /// Whose application.
    pub owner: AppOwner,
}

/// A new application's client credentials.
#[derive(Debug, Clone)]
pub struct OAuthCredentials {
    /// The client ID.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretValue,
    /// The token endpoint.
    pub token_url: String,
}

/// A provisioner failure. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("oauth provisioner failed to {action} the {owner} of project {project}: {message}")]
pub struct ProvisionError {
    /// What was being done (`provision`, `grant`, `rotate`, `release`, ...).
    pub action: &'static str,
    /// The project.
    pub project: ProjectId,
    /// Whose application.
    pub owner: AppOwner,
    /// What went wrong.
    pub message: String,
}

/// Creates and manages OAuth applications at the host's identity provider.
///
/// The registry calls [`provision`](Self::provision), [`grant`](Self::grant)
/// and [`rotate`](Self::rotate) *before* committing a write (a failure aborts
/// it) and compensates with [`release`](Self::release) / [`revoke`](Self::revoke)
/// if the commit then fails; it calls `release` and `revoke` for removed
/// applications and grants *after* the commit (a failure there is reported as a
/// warning: the store stays the truth).
pub trait OAuthProvisioner: Send + Sync {
    /// Creates an application.
    fn provision(&self, request: &ProvisionRequest) -> Result<OAuthCredentials, ProvisionError>;

    /// Issues a new client secret for `app`.
    fn rotate(&self, app: &OAuthApp) -> Result<SecretValue, ProvisionError>;

    /// Grants `app` access to `target`.
    fn grant(&self, app: &OAuthApp, target: &PlatformTarget) -> Result<(), ProvisionError> {
        let _ = (app, target);
        Ok(())
    }

    /// Withdraws `app`'s access to `target`.
    fn revoke(&self, app: &OAuthApp, target: &PlatformTarget) -> Result<(), ProvisionError> {
        let _ = (app, target);
        Ok(())
    }

    /// Deletes `app`.
    fn release(&self, app: &OAuthApp) -> Result<(), ProvisionError> {
        let _ = app;
        Ok(())
    }
}

/// The default provisioner: generates strong random credentials locally (client
/// ID of 24 and secret of 48 characters from the operating system's generator,
/// base62) and reports a fixed token URL.
#[derive(Clone, PartialEq, Eq)]
pub struct LocalProvisioner {
    token_url: String,
}

impl fmt::Debug for LocalProvisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalProvisioner")
            .field("token_url", &self.token_url)
            .finish()
    }
}

impl Default for LocalProvisioner {
    fn default() -> Self {
        LocalProvisioner::new("https://localhost/oauth2/token")
    }
}

impl LocalProvisioner {
    /// A provisioner whose applications use `token_url`.
    pub fn new(token_url: impl Into<String>) -> Self {
        LocalProvisioner {
            token_url: token_url.into(),
        }
    }

    fn random(
        len: usize,
        project: &ProjectId,
        owner: &AppOwner,
        action: &'static str,
    ) -> Result<String, ProvisionError> {
        const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut out = String::with_capacity(len);
        let mut buf = [0u8; 64];
        while out.len() < len {
            crate::model::random::try_fill(&mut buf).map_err(|e| ProvisionError {
                action,
                project: project.clone(),
                owner: owner.clone(),
                message: format!("the operating system's random generator failed: {e}"),
            })?;
            // Rejection sampling keeps every character equally likely.
            for b in buf {
                if b < 248 && out.len() < len {
                    out.push(ALPHABET[usize::from(b % 62)] as char);
                }
            }
        }
        Ok(out)
    }
}

impl OAuthProvisioner for LocalProvisioner {
    fn provision(&self, request: &ProvisionRequest) -> Result<OAuthCredentials, ProvisionError> {
        let id = Self::random(24, &request.project, &request.owner, "provision")?;
        let secret = Self::random(48, &request.project, &request.owner, "provision")?;
        Ok(OAuthCredentials {
            client_id: id,
            client_secret: SecretValue::new(secret),
            token_url: self.token_url.clone(),
        })
    }

    fn rotate(&self, app: &OAuthApp) -> Result<SecretValue, ProvisionError> {
        Self::random(48, app.project(), app.owner(), "rotate").map(SecretValue::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_credentials_are_long_random_and_distinct() {
        let p = LocalProvisioner::default();
        let req = ProvisionRequest {
            project: "p".parse().unwrap(),
            owner: AppOwner::Project,
        };
        let a = p.provision(&req).unwrap();
        let b = p.provision(&req).unwrap();
        assert_eq!(a.client_id.len(), 24);
        assert_eq!(a.client_secret.expose().len(), 48);
        assert_ne!(a.client_id, b.client_id);
        assert!(!a.client_secret.same_as(&b.client_secret));
        assert!(
            a.client_secret
                .expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric())
        );
    }
}
