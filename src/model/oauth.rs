//! Shared OAuth applications, as records.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ident::{ConnectionId, IntegrationId, ProjectId};
use super::secret::SecretValue;
use super::target::PlatformTarget;

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
    client_id: String,
    client_secret: SecretValue,
    token_url: String,
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
            client_id,
            client_secret,
            token_url,
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

/// The parameters a managed OAuth application supplies to each of its
/// connections, as Choreo names them.
pub const APP_PARAMS: [&str; 3] = ["ConsumerKey", "ConsumerSecret", "TokenURL"];
