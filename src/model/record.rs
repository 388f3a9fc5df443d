//! What a store keeps: records with keys and versions.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::connection::Connection;
use super::connection::Scope;
use super::ident::{ConnectionName, IntegrationId, ProjectId};
use super::mapping::Mappings;
use super::oauth::{AppOwner, OAuthApp};

/// A record's version. Starts at 1 on creation and grows by one on every write
/// of the key; versions of a key never repeat, not even across delete and
/// re-create.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A position in a store's change feed. Every committed batch gets the next
/// revision; 0 is "before anything".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// Which record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKey {
    /// A connection, under its stable key (scope, name): two replicas cannot
    /// both create one name in one scope, and the key is the same in every
    /// registry (the Connection ID is local to one).
    Connection(ProjectId, Scope, ConnectionName),
    /// An integration's mappings.
    Mappings(ProjectId, IntegrationId),
    /// An OAuth application.
    OAuthApp(ProjectId, AppOwner),
    /// The project's reference marker (see [`Record::References`]).
    References(ProjectId),
}

impl RecordKey {
    /// The project the record belongs to.
    pub fn project(&self) -> &ProjectId {
        match self {
            RecordKey::Connection(p, _, _)
            | RecordKey::Mappings(p, _)
            | RecordKey::OAuthApp(p, _)
            | RecordKey::References(p) => p,
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordKey::Connection(p, scope, name) => write!(f, "connection {name} ({scope}) of project {p}"),
            RecordKey::Mappings(p, i) => write!(f, "mappings of integration {i} of project {p}"),
            RecordKey::OAuthApp(p, o) => write!(f, "{o} of project {p}"),
            RecordKey::References(p) => write!(f, "the reference marker of project {p}"),
        }
    }
}

/// A record. Cheap to clone: the payload is shared.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// A connection.
    Connection(Arc<Connection>),
    /// An integration's mappings.
    Mappings(Arc<Mappings>),
    /// An OAuth application.
    OAuthApp(Arc<OAuthApp>),
    /// A per-project marker that every write able to leave a reference
    /// dangling rewrites (setting mappings, deleting or renaming a
    /// connection). Two replicas doing such writes concurrently in one project
    /// thus conflict in the store instead of together stranding a reference
    /// (rule 9). It carries no data beyond its project.
    References(ProjectId),
}

impl Record {
    /// The record's key.
    pub fn key(&self) -> RecordKey {
        match self {
            Record::Connection(c) => c.key(),
            Record::Mappings(m) => RecordKey::Mappings(m.project().clone(), m.integration().clone()),
            Record::OAuthApp(a) => RecordKey::OAuthApp(a.project().clone(), a.owner().clone()),
            Record::References(p) => RecordKey::References(p.clone()),
        }
    }
}

impl Connection {
    /// The connection's store key: (project, scope, name).
    pub fn key(&self) -> RecordKey {
        RecordKey::Connection(self.project().clone(), self.scope().clone(), self.name().clone())
    }
}

/// A value with the version it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The version.
    pub version: Version,
    /// The value.
    pub value: T,
}
