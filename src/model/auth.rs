//! How a connection authenticates.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::oauth::AppField;

/// Where an OAuth 2.0 client-credentials connection gets its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OAuthClient {
    /// The shared application: the project's for a project-scope connection,
    /// the integration's for an integration-scope one.
    Shared,
    /// An application of this connection alone.
    Dedicated,
    /// The connection's own parameters carry the client (client ID, secret,
    /// token URL), as for a third-party OAuth provider.
    Supplied,
}

/// How a connection authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthScheme {
    /// No authentication.
    None,
    /// An API key (a secret parameter).
    ApiKey,
    /// User name and password (a secret parameter).
    Basic,
    /// OAuth 2.0 client credentials.
    OAuth2(OAuthClient),
    /// Whatever fields the registrant defines.
    Custom,
}

impl AuthScheme {
    /// Whether the platform manages this connection's OAuth application.
    pub fn managed_oauth(&self) -> Option<OAuthClient> {
        match self {
            AuthScheme::OAuth2(c @ (OAuthClient::Shared | OAuthClient::Dedicated)) => Some(*c),
            _ => None,
        }
    }

    /// Whether a connection with this scheme gets parameter `param` from
    /// its managed OAuth application ([`AppField`]) rather than declaring it.
    ///
    /// ```
    /// use connective::model::{AuthScheme, OAuthClient};
    /// assert!(AuthScheme::OAuth2(OAuthClient::Shared).supplies("ConsumerSecret"));
    /// assert!(!AuthScheme::OAuth2(OAuthClient::Supplied).supplies("ConsumerSecret"));
    /// assert!(!AuthScheme::ApiKey.supplies("ConsumerSecret"));
    /// ```
    pub fn supplies(&self, param: &str) -> bool {
        self.managed_oauth().is_some() && AppField::for_param(param).is_some()
    }
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthScheme::None => "no-auth",
            AuthScheme::ApiKey => "api-key",
            AuthScheme::Basic => "basic-auth",
            AuthScheme::OAuth2(OAuthClient::Shared) => "oauth2 (shared application)",
            AuthScheme::OAuth2(OAuthClient::Dedicated) => "oauth2 (dedicated application)",
            AuthScheme::OAuth2(OAuthClient::Supplied) => "oauth2 (supplied client)",
            AuthScheme::Custom => "custom",
        })
    }
}
