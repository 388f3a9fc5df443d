//! What a store keeps: records with keys and versions.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::connection::{Connection, Scope};
use super::ident::{ConnectionName, IntegrationId, ProjectId, TemplateName, TypeName};
use super::mapping::Mappings;
use super::oauth::{AppOwner, OAuthApp};
use super::template::ConnectionTemplate;
use super::token::{ConnectionStatus, CredentialKey, PendingAuthorization, TokenSet};
use super::types::ProjectType;

/// A record's version. Starts at 1 on creation and grows by one on every write
/// of the key; versions of a key never repeat, not even across delete and
/// re-create.
///
/// A stored record's version is between [`Version::FIRST`] and
/// [`Version::MAX`]; a key at `MAX` cannot be written again (every store
/// refuses it with a typed error and writes nothing). The one limit is the
/// smallest any backend of this crate can keep (the memory store keeps a
/// version in 7 bytes), so that every store agrees; no real key gets there
/// (2^56 - 1 writes, 2,284 years at a million writes a second).
///
/// ```
/// use connective::model::Version;
/// assert_eq!(Version::FIRST.next(), Some(Version(2)));
/// assert_eq!(Version::MAX.next(), None);
/// assert!(Version::MAX.is_valid() && !Version(0).is_valid());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(pub u64);

impl Version {
    /// The version of a key's first write.
    pub const FIRST: Version = Version(1);

    /// The last version a record can have: 2^56 - 1 (72057594037927935).
    pub const MAX: Version = Version((1 << 56) - 1);

    /// The version a write after this one gives the key, or `None` when
    /// this is [`Version::MAX`] (or past it): the key cannot be written
    /// again.
    pub const fn next(self) -> Option<Version> {
        if self.0 >= Version::MAX.0 {
            None
        } else {
            Some(Version(self.0 + 1))
        }
    }

    /// Whether a stored record may be at this version: from
    /// [`Version::FIRST`] to [`Version::MAX`].
    pub const fn is_valid(self) -> bool {
        self.0 >= Version::FIRST.0 && self.0 <= Version::MAX.0
    }
}

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

impl Revision {
    /// The last revision a store can reach: `i64::MAX`
    /// (9223372036854775807), the most the durable stores keep in a signed
    /// 64-bit column, and so the limit of every store alike. A store whose
    /// head is there refuses every batch ([`next_revision`]); only a
    /// corrupt store gets there (2^63 - 1 batches are 292,471 years at a
    /// million a second).
    ///
    /// [`next_revision`]: crate::store::next_revision
    pub const MAX: Revision = Revision(i64::MAX as u64);

    /// The revision of the batch committed after this one, or `None` when
    /// this is [`Revision::MAX`] (or past it).
    ///
    /// ```
    /// use connective::model::Revision;
    /// assert_eq!(Revision(0).next(), Some(Revision(1)));
    /// assert_eq!(Revision::MAX.next(), None);
    /// ```
    pub const fn next(self) -> Option<Revision> {
        if self.0 >= Revision::MAX.0 {
            None
        } else {
            Some(Revision(self.0 + 1))
        }
    }
}

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
    /// A reference fence of a project (see [`Record::ReferenceFence`]).
    /// Stored as `references`, its name before it was called a fence.
    #[serde(rename = "references")]
    ReferenceFence(ProjectId, NameStripe),
    /// A connection's OAuth token set, for one environment and customer.
    TokenSet(CredentialKey),
    /// An OAuth authorization waiting for its callback, under the random part
    /// of its `state`.
    PendingAuthorization(ProjectId, String),
    /// A connection's status, for one environment and customer.
    Status(CredentialKey),
    /// A project's connection type.
    ConnectionType(ProjectId, TypeName),
    /// A project's connection template.
    Template(ProjectId, TemplateName),
}

impl RecordKey {
    /// The project the record belongs to.
    pub fn project(&self) -> &ProjectId {
        match self {
            RecordKey::Connection(p, _, _)
            | RecordKey::Mappings(p, _)
            | RecordKey::OAuthApp(p, _)
            | RecordKey::ReferenceFence(p, _)
            | RecordKey::PendingAuthorization(p, _)
            | RecordKey::ConnectionType(p, _)
            | RecordKey::Template(p, _) => p,
            RecordKey::TokenSet(k) | RecordKey::Status(k) => &k.project,
        }
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordKey::Connection(p, scope, name) => write!(f, "connection {name} ({scope}) of project {p}"),
            RecordKey::Mappings(p, i) => write!(f, "mappings of integration {i} of project {p}"),
            RecordKey::OAuthApp(p, o) => write!(f, "{o} of project {p}"),
            RecordKey::ReferenceFence(p, stripe) => write!(f, "reference fence {stripe} of project {p}"),
            RecordKey::TokenSet(k) => write!(f, "token set of {k}"),
            // The state is a bearer of the authorization: not shown.
            RecordKey::PendingAuthorization(p, _) => write!(f, "pending authorization of project {p}"),
            RecordKey::Status(k) => write!(f, "status of {k}"),
            RecordKey::ConnectionType(p, t) => write!(f, "connection type {t} of project {p}"),
            RecordKey::Template(p, t) => write!(f, "template {t} of project {p}"),
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
    /// A reference fence, the concurrency fence of rule 10: a record
    /// without content that every write able to change what a mapping
    /// resolves to rewrites, for each connection name it involves (see
    /// [`NameStripe`]). Two replicas making such writes concurrently about
    /// one name thus conflict in the store instead of together leaving a
    /// reference dangling (rules 9 and 10). Stored as `references`.
    #[serde(rename = "references")]
    ReferenceFence(Arc<ReferenceFence>),
    /// A connection's OAuth tokens (rule 11); its tokens are secrets.
    TokenSet(Arc<TokenSet>),
    /// An OAuth authorization waiting for its callback.
    PendingAuthorization(Arc<PendingAuthorization>),
    /// A connection's status (rule 11).
    Status(Arc<ConnectionStatus>),
    /// A project's connection type: the field schema its connections follow.
    ConnectionType(Arc<ProjectType>),
    /// A project's connection template.
    Template(Arc<ConnectionTemplate>),
}

impl Record {
    /// The record's key.
    pub fn key(&self) -> RecordKey {
        match self {
            Record::Connection(c) => c.key(),
            Record::Mappings(m) => RecordKey::Mappings(m.project().clone(), m.integration().clone()),
            Record::OAuthApp(a) => RecordKey::OAuthApp(a.project().clone(), a.owner().clone()),
            Record::ReferenceFence(f) => RecordKey::ReferenceFence(f.project.clone(), f.stripe),
            Record::TokenSet(t) => RecordKey::TokenSet(t.key().clone()),
            Record::PendingAuthorization(p) => {
                RecordKey::PendingAuthorization(p.credentials().project.clone(), p.state_id().to_owned())
            }
            Record::Status(s) => RecordKey::Status(s.key().clone()),
            Record::ConnectionType(t) => RecordKey::ConnectionType(t.project().clone(), t.name().clone()),
            Record::Template(t) => RecordKey::Template(t.project().clone(), t.name().clone()),
        }
    }
}

impl Connection {
    /// The connection's store key: (project, scope, name).
    pub fn key(&self) -> RecordKey {
        RecordKey::Connection(self.project().clone(), self.scope().clone(), self.name().clone())
    }
}

/// Which of a project's reference fences guards a connection name: one of
/// [`NameStripe::COUNT`] stripes, chosen by a hash of the name (FNV-1a over
/// its UTF-8 bytes). The hash is part of the stored format: every replica of
/// every version must pick the same stripe for a name, so it never changes.
///
/// ```
/// use connective::model::{ConnectionName, NameStripe};
/// let crm: ConnectionName = "crm".parse()?;
/// assert_eq!(NameStripe::of(&crm), NameStripe::of(&"crm".parse()?));
/// assert!(NameStripe::of(&crm).index() < NameStripe::COUNT);
/// # Ok::<(), connective::model::ParseError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct NameStripe(u8);

impl NameStripe {
    /// How many stripes a project has.
    pub const COUNT: u8 = 64;

    /// The stripe of `name`.
    pub fn of(name: &ConnectionName) -> Self {
        Self::hash([name.as_str().as_bytes()])
    }

    /// The stripe a write of connection `name` rewrites when the connection
    /// follows a type: every write of a type or a template rewrites all
    /// [`NameStripe::all`] stripes of its project, so across replicas a type
    /// or template change and a write of a connection following it conflict
    /// instead of together leaving a connection that does not fit its type.
    /// Hashed as `typed:NAME` (a colon is in no connection name), so it is
    /// seldom the stripe of [`NameStripe::of`] the same name: a value edit
    /// of a typed connection and a mapping of it rarely contend.
    pub fn of_typed(name: &ConnectionName) -> Self {
        Self::hash([b"typed:".as_slice(), name.as_str().as_bytes()])
    }

    /// Every stripe, in order.
    ///
    /// ```
    /// use connective::model::NameStripe;
    /// assert_eq!(NameStripe::all().count(), usize::from(NameStripe::COUNT));
    /// ```
    pub fn all() -> impl Iterator<Item = NameStripe> {
        (0..Self::COUNT).map(NameStripe)
    }

    fn hash<const N: usize>(parts: [&[u8]; N]) -> Self {
        // FNV-1a, 32 bits: fixed forever (see the type's documentation).
        let mut hash: u32 = 0x811c_9dc5;
        for byte in parts.into_iter().flatten() {
            hash ^= u32::from(*byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        NameStripe((hash % u32::from(Self::COUNT)) as u8)
    }

    /// The stripe's number, below [`NameStripe::COUNT`].
    pub fn index(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for NameStripe {
    type Error = String;

    fn try_from(n: u8) -> Result<Self, Self::Error> {
        if n < Self::COUNT {
            Ok(NameStripe(n))
        } else {
            Err(format!("name stripe {n} is not below {}", Self::COUNT))
        }
    }
}

impl From<NameStripe> for u8 {
    fn from(s: NameStripe) -> u8 {
        s.0
    }
}

impl fmt::Display for NameStripe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The content of a [`Record::ReferenceFence`]: which fence it is. It holds no
/// data; what matters is its version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReferenceFence {
    /// The project.
    pub project: ProjectId,
    /// The stripe of names it guards.
    pub stripe: NameStripe,
}

impl ReferenceFence {
    /// The fence guarding `name` in `project`.
    pub fn of(project: &ProjectId, name: &ConnectionName) -> Self {
        ReferenceFence {
            project: project.clone(),
            stripe: NameStripe::of(name),
        }
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
