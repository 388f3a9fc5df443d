//! Shared OAuth applications, as records.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::connection::PlatformTarget;
use super::ident::{ConnectionId, IntegrationId, ProjectId};
use super::secret::SecretValue;

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
/// connections. Connections refer to it; they never copy its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthApp {
    /// The project.
    pub project: ProjectId,
    /// Whose application it is.
    pub owner: AppOwner,
    /// The client ID (`ConsumerKey`).
    pub client_id: String,
    /// The client secret (`ConsumerSecret`).
    pub client_secret: SecretValue,
    /// The token endpoint (`TokenURL`).
    pub token_url: String,
    /// The targets this application has been granted access to.
    pub grants: Vec<PlatformTarget>,
}
