//! How a connection authenticates, and the fields each scheme needs.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::oauth::AppField;
use super::types::DataKind;

/// The authorization endpoint parameter of a supplied OAuth client: the one
/// name the model's checks, connection types and the OAuth runtime use.
pub const AUTHORIZE_URL: &str = "AuthorizeURL";
/// The token endpoint parameter of a supplied OAuth client.
pub const TOKEN_URL: &str = "TokenURL";
/// The client ID parameter of a supplied OAuth client.
pub const CLIENT_ID: &str = "ClientID";
/// The client secret parameter of a supplied OAuth client (secret; a public
/// client declares it optional and leaves it empty).
pub const CLIENT_SECRET: &str = "ClientSecret";
/// The scopes parameter of a supplied OAuth client, space-separated
/// (may be optional).
pub const SCOPES: &str = "Scopes";

/// How much an auth scheme needs a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FieldNeed {
    /// Declared, and required.
    Required,
    /// Declared; it may be optional (a public client's secret, default
    /// scopes).
    Declared,
}

/// Where a field an auth scheme needs comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FieldSource {
    /// The connection declares it (a parameter).
    Connection,
    /// The connection's managed OAuth application supplies it (rule 5); the
    /// connection must not declare it.
    Application,
}

/// A field an auth scheme (or a database target) needs: its parameter name,
/// kind of data, how much it is needed and who supplies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct AuthField {
    /// The parameter name.
    pub param: &'static str,
    /// Its kind of data.
    pub kind: DataKind,
    /// Required, or declared and possibly optional.
    pub need: FieldNeed,
    /// The connection or its OAuth application.
    pub source: FieldSource,
    /// What needs it, in words (for messages).
    pub needed_by: &'static str,
}

impl AuthField {
    const fn new(
        param: &'static str,
        kind: DataKind,
        need: FieldNeed,
        source: FieldSource,
        needed_by: &'static str,
    ) -> Self {
        AuthField {
            param,
            kind,
            need,
            source,
            needed_by,
        }
    }

    /// Whether the connection declares it (rather than its application).
    pub fn on_connection(&self) -> bool {
        self.source == FieldSource::Connection
    }

    /// OAuth 2.0 authorization code with the connection's own client
    /// ([`OAuthClient::Supplied`]): the fields the OAuth runtime reads.
    pub const AUTHORIZATION_CODE: [AuthField; 5] = {
        const BY: &str = "an oauth2 authorization code connection";
        [
            AuthField::new(
                AUTHORIZE_URL,
                DataKind::Url,
                FieldNeed::Required,
                FieldSource::Connection,
                BY,
            ),
            AuthField::new(
                TOKEN_URL,
                DataKind::Url,
                FieldNeed::Required,
                FieldSource::Connection,
                BY,
            ),
            AuthField::new(
                CLIENT_ID,
                DataKind::String,
                FieldNeed::Required,
                FieldSource::Connection,
                BY,
            ),
            AuthField::new(
                CLIENT_SECRET,
                DataKind::Secret,
                FieldNeed::Declared,
                FieldSource::Connection,
                BY,
            ),
            AuthField::new(
                SCOPES,
                DataKind::String,
                FieldNeed::Declared,
                FieldSource::Connection,
                BY,
            ),
        ]
    };

    /// OAuth 2.0 client credentials on a managed application (rule 5): the
    /// application supplies the token URL, client ID and secret, under
    /// [`AppField`]'s names.
    pub const CLIENT_CREDENTIALS: [AuthField; 3] = {
        const BY: &str = "an oauth2 client credentials connection";
        [
            AuthField::new(
                AppField::TokenUrl.param(),
                DataKind::Url,
                FieldNeed::Required,
                FieldSource::Application,
                BY,
            ),
            AuthField::new(
                AppField::ClientId.param(),
                DataKind::String,
                FieldNeed::Required,
                FieldSource::Application,
                BY,
            ),
            AuthField::new(
                AppField::ClientSecret.param(),
                DataKind::Secret,
                FieldNeed::Required,
                FieldSource::Application,
                BY,
            ),
        ]
    };

    /// A managed database (Devant's names): host, port, user, password,
    /// database. The one definition [`Target::DATABASE_PARAMS`](super::Target::DATABASE_PARAMS)
    /// names.
    pub const DATABASE: [AuthField; 5] = {
        const BY: &str = "a database connection";
        [
            AuthField::new(
                "HostName",
                DataKind::String,
                FieldNeed::Required,
                FieldSource::Connection,
                BY,
            ),
            AuthField::new(
                "Port",
                DataKind::Integer,
                FieldNeed::Required,
                FieldSource::Connection,
                BY,
            ),
            AuthField::new(
                "Username",
                DataKind::String,
                FieldNeed::Required,
                FieldSource::Connection,
                BY,
            ),
            AuthField::new(
                "Password",
                DataKind::Secret,
                FieldNeed::Required,
                FieldSource::Connection,
                BY,
            ),
            AuthField::new(
                "DatabaseName",
                DataKind::String,
                FieldNeed::Required,
                FieldSource::Connection,
                BY,
            ),
        ]
    };
}

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
    /// The connection's own parameters carry the client, as for a
    /// third-party OAuth provider, and a person authorizes it (authorization
    /// code): it declares [`AuthField::AUTHORIZATION_CODE`].
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
    /// The fields this scheme needs (checked on every connection and
    /// connection type): [`AuthField::AUTHORIZATION_CODE`] for a supplied
    /// OAuth client, [`AuthField::CLIENT_CREDENTIALS`] (from the
    /// application) for a managed one, none for the others (an API key or
    /// basic connection needs some secret parameter, of any name).
    ///
    /// ```
    /// use connective::model::{AuthScheme, OAuthClient};
    /// let names: Vec<&str> = AuthScheme::OAuth2(OAuthClient::Supplied).fields().iter().map(|f| f.param).collect();
    /// assert_eq!(names, ["AuthorizeURL", "TokenURL", "ClientID", "ClientSecret", "Scopes"]);
    /// ```
    pub fn fields(self) -> &'static [AuthField] {
        match self {
            AuthScheme::OAuth2(OAuthClient::Supplied) => &AuthField::AUTHORIZATION_CODE,
            AuthScheme::OAuth2(OAuthClient::Shared | OAuthClient::Dedicated) => {
                &AuthField::CLIENT_CREDENTIALS
            }
            AuthScheme::None | AuthScheme::ApiKey | AuthScheme::Basic | AuthScheme::Custom => &[],
        }
    }

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
