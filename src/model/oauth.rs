//! Shared OAuth applications, as records.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ident::{ConnectionId, IntegrationId, ProjectId};
use super::secret::SecretValue;
use super::target::PlatformTarget;
use super::value::PlainValue;

/// Whose OAuth application it is, within a project. Together with the project
/// this is the application's stable key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppOwner {
    /// The project's one application, shared by its project-scope connections.
    Project,
    /// One integration's application, shared by its integration-scope
    /// connections.
    Integration(IntegrationId),
    /// A dedicated application of one connection.
    Connection(ConnectionId),
}

impl fmt::Display for AppOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppOwner::Project => f.write_str("project application"),
            AppOwner::Integration(i) => write!(f, "application of integration {i}"),
            AppOwner::Connection(c) => write!(f, "dedicated application of connection {c}"),
        }
    }
}

/// An OAuth 2.0 client (client ID, secret, token URL) used by several
/// connections. Connections refer to it; they never copy its secret, and the
/// secret has no public accessor: it leaves the library only through
/// resolution (as `ConsumerSecret`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthApp {
    project: ProjectId,
    owner: AppOwner,
    client_id: PlainValue,
    client_secret: SecretValue,
    token_url: PlainValue,
    grants: Vec<PlatformTarget>,
}

impl OAuthApp {
    /// Assembles an application record.
    pub fn new(
        project: ProjectId,
        owner: AppOwner,
        client_id: String,
        client_secret: SecretValue,
        token_url: String,
        grants: Vec<PlatformTarget>,
    ) -> Self {
        OAuthApp {
            project,
            owner,
            client_id: client_id.into(),
            client_secret,
            token_url: token_url.into(),
            grants,
        }
    }
    /// The project.
    pub fn project(&self) -> &ProjectId {
        &self.project
    }
    /// Whose application it is.
    pub fn owner(&self) -> &AppOwner {
        &self.owner
    }
    /// The client ID (`ConsumerKey`).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
    /// The token endpoint (`TokenURL`).
    pub fn token_url(&self) -> &str {
        &self.token_url
    }
    /// The client ID, shared (resolution hands it out without a copy).
    pub(crate) fn client_id_value(&self) -> &PlainValue {
        &self.client_id
    }
    /// The token endpoint, shared.
    pub(crate) fn token_url_value(&self) -> &PlainValue {
        &self.token_url
    }
    /// The targets this application has been granted access to.
    pub fn grants(&self) -> &[PlatformTarget] {
        &self.grants
    }
    /// The client secret (`ConsumerSecret`): crate-internal.
    pub(crate) fn client_secret(&self) -> &SecretValue {
        &self.client_secret
    }
    /// A copy with another secret (rotation).
    pub(crate) fn with_secret(&self, secret: SecretValue) -> Self {
        OAuthApp {
            client_secret: secret,
            ..self.clone()
        }
    }
    /// A copy with other grants.
    pub(crate) fn with_grants(&self, grants: Vec<PlatformTarget>) -> Self {
        OAuthApp {
            grants,
            ..self.clone()
        }
    }
}

/// Which field of an OAuth application a parameter is: the one definition
/// of the parameters a managed application supplies to each of its
/// connections, as Choreo names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AppField {
    /// `ConsumerKey`: the client ID.
    ClientId,
    /// `ConsumerSecret`: the client secret.
    ClientSecret,
    /// `TokenURL`: the token endpoint.
    TokenUrl,
}

impl AppField {
    /// Every field, in the order a default-name mapping injects them.
    pub const ALL: [AppField; 3] = [AppField::ClientId, AppField::ClientSecret, AppField::TokenUrl];

    /// The parameter name (`ConsumerKey`, `ConsumerSecret`, `TokenURL`).
    pub const fn param(self) -> &'static str {
        match self {
            AppField::ClientId => "ConsumerKey",
            AppField::ClientSecret => "ConsumerSecret",
            AppField::TokenUrl => "TokenURL",
        }
    }

    /// The field a parameter name stands for.
    ///
    /// ```
    /// use connective::model::AppField;
    /// assert_eq!(AppField::for_param("TokenURL"), Some(AppField::TokenUrl));
    /// assert_eq!(AppField::for_param("ServiceURL"), None);
    /// ```
    pub fn for_param(name: &str) -> Option<AppField> {
        AppField::ALL.into_iter().find(|f| f.param() == name)
    }
}

/// The parameters a managed OAuth application supplies to each of its
/// connections ([`AppField::param`] of [`AppField::ALL`]).
pub const APP_PARAMS: [&str; 3] = [
    AppField::ALL[0].param(),
    AppField::ALL[1].param(),
    AppField::ALL[2].param(),
];
