//! The audit trail: who changed which records, and who read which secrets,
//! when; never a value.
//!
//! A registry built with an audit actor
//! ([`RegistryBuilder::audit`](crate::registry::RegistryBuilder::audit))
//! hands the store an [`AuditNote`] with every batch it commits; the store
//! writes the batch's [`AuditEntry`] in the same transaction (so an entry
//! exists exactly for each committed batch, none for a refused one) into
//! an append-only table, and answers [`AuditQuery`]s. With reads audited
//! too ([`RegistryBuilder::audit_reads`](crate::registry::RegistryBuilder::audit_reads)),
//! each read of secret values (a resolution whose answer holds secrets, an
//! OAuth access token handed out) is a [`SecretRead`] the registry appends
//! to the same trail ([`AuditAction::Read`]).

use serde::{Deserialize, Serialize};

use super::connection::Scope;
use super::ident::{
    ActorId, ConnectionId, ConnectionName, CustomerId, Environment, IntegrationId, ParamName, ProjectId,
};
use super::oauth::AppOwner;
use super::record::RecordKey;
use super::record::{Revision, Version};
use super::token::{CredentialKey, Timestamp};

/// What a registry hands the store with a batch to audit: who, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditNote {
    /// Who made the write.
    pub actor: ActorId,
    /// When the registry committed it.
    pub at: Timestamp,
}

/// An entry's place in a store's audit trail: the store gives each entry
/// the next position when it appends it (1, 2, 3, ...; never reused), so
/// positions order the trail and page through it ([`AuditQuery::after`]).
/// 0 is "before anything".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditPosition(pub u64);

impl std::fmt::Display for AuditPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit entry {}", self.0)
    }
}

/// What one committed write did to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditOperation {
    /// The record did not exist (or was deleted) and now does.
    Created,
    /// The record existed and was replaced.
    Updated,
    /// The record was deleted.
    Deleted,
}

/// One record a committed write changed: its key and versions, never its
/// value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditChange {
    /// The record.
    pub key: RecordKey,
    /// What was done to it.
    pub operation: AuditOperation,
    /// Its live version before the write (`None`: it did not exist).
    pub before: Option<Version>,
    /// Its version after the write (for a deletion, the tombstone's).
    pub after: Version,
}

/// One secret parameter whose value a resolution handed out: which
/// connection and which field, never the value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ReadField {
    /// The connection's ID.
    pub connection_id: ConnectionId,
    /// The connection's name.
    pub connection: ConnectionName,
    /// The connection's scope.
    pub scope: Scope,
    /// The parameter.
    pub param: ParamName,
}

/// A read of secret values, as the audit trail keeps it: what was read,
/// never the values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretRead {
    /// A resolution whose answer held secret values (a resolution without
    /// any is not a secret read and is not recorded).
    Resolution {
        /// The project.
        project: ProjectId,
        /// The integration resolved.
        integration: IntegrationId,
        /// The environment.
        environment: Environment,
        /// The customer, if any.
        customer: Option<CustomerId>,
        /// The store revision the answer reflected.
        revision: Revision,
        /// The secret fields the answer held, in the answer's order.
        fields: Vec<ReadField>,
    },
    /// An OAuth access token of a connection, handed out by the OAuth
    /// runtime (from memory or freshly obtained).
    AccessToken {
        /// Whose token: connection, environment, customer.
        key: CredentialKey,
        /// The connection's name and scope (`None`: the connection was no
        /// longer in the registry's catalog).
        connection: Option<(Scope, ConnectionName)>,
    },
    /// A client-credentials token of an OAuth application, handed out by
    /// the OAuth runtime.
    AppToken {
        /// The project.
        project: ProjectId,
        /// Whose application.
        owner: AppOwner,
    },
}

impl SecretRead {
    /// The project read from.
    pub fn project(&self) -> &ProjectId {
        match self {
            SecretRead::Resolution { project, .. } | SecretRead::AppToken { project, .. } => project,
            SecretRead::AccessToken { key, .. } => &key.project,
        }
    }

    /// The records whose secrets were read (each connection once, in
    /// order; for a token, the connection and its token set; an
    /// application): what [`AuditQuery::of_record`] matches.
    pub fn keys(&self) -> Vec<RecordKey> {
        match self {
            SecretRead::Resolution { project, fields, .. } => {
                let mut keys: Vec<RecordKey> = Vec::new();
                for f in fields {
                    let key = RecordKey::Connection(project.clone(), f.scope.clone(), f.connection.clone());
                    if !keys.contains(&key) {
                        keys.push(key);
                    }
                }
                keys
            }
            SecretRead::AccessToken { key, connection } => {
                let mut keys = Vec::with_capacity(2);
                if let Some((scope, name)) = connection {
                    keys.push(RecordKey::Connection(
                        key.project.clone(),
                        scope.clone(),
                        name.clone(),
                    ));
                }
                keys.push(RecordKey::TokenSet(key.clone()));
                keys
            }
            SecretRead::AppToken { project, owner } => {
                vec![RecordKey::OAuthApp(project.clone(), owner.clone())]
            }
        }
    }
}

/// A read a registry hands the store to append to the trail: who read what,
/// when ([`Store::append_reads`](crate::store::Store::append_reads)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadNote {
    /// Who read.
    pub actor: ActorId,
    /// When.
    pub at: Timestamp,
    /// What.
    pub read: SecretRead,
}

/// What an audit entry records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// A committed write (its outcome: committed; a refused write leaves no
    /// entry).
    Write {
        /// The revision the write committed as.
        revision: Revision,
        /// Every record it changed, in the batch's order.
        changes: Vec<AuditChange>,
    },
    /// A read of secret values.
    Read(SecretRead),
}

/// Which kind of entries a query selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuditKind {
    /// Committed writes ([`AuditAction::Write`]).
    Write,
    /// Reads of secrets ([`AuditAction::Read`]).
    Read,
}

/// One entry of the audit trail: a committed write or a read of secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its place in the trail.
    pub position: AuditPosition,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: ActorId,
    /// What.
    pub action: AuditAction,
}

impl AuditEntry {
    /// The entry of a committed write.
    pub fn write(
        position: AuditPosition,
        note: &AuditNote,
        revision: Revision,
        changes: Vec<AuditChange>,
    ) -> Self {
        AuditEntry {
            position,
            at: note.at,
            actor: note.actor.clone(),
            action: AuditAction::Write { revision, changes },
        }
    }

    /// The entry of a read.
    pub fn read(position: AuditPosition, note: ReadNote) -> Self {
        AuditEntry {
            position,
            at: note.at,
            actor: note.actor,
            action: AuditAction::Read(note.read),
        }
    }

    /// Which kind of entry.
    pub fn kind(&self) -> AuditKind {
        match self.action {
            AuditAction::Write { .. } => AuditKind::Write,
            AuditAction::Read(_) => AuditKind::Read,
        }
    }

    /// For a write, the revision it committed as.
    pub fn revision(&self) -> Option<Revision> {
        match &self.action {
            AuditAction::Write { revision, .. } => Some(*revision),
            AuditAction::Read(_) => None,
        }
    }

    /// For a write, the records it changed (none for a read).
    pub fn changes(&self) -> &[AuditChange] {
        match &self.action {
            AuditAction::Write { changes, .. } => changes,
            AuditAction::Read(_) => &[],
        }
    }

    /// For a read, what was read.
    pub fn secret_read(&self) -> Option<&SecretRead> {
        match &self.action {
            AuditAction::Read(read) => Some(read),
            AuditAction::Write { .. } => None,
        }
    }

    /// The records the entry is about: those a write changed, those whose
    /// secrets a read read.
    pub fn keys(&self) -> Vec<RecordKey> {
        match &self.action {
            AuditAction::Write { changes, .. } => changes.iter().map(|c| c.key.clone()).collect(),
            AuditAction::Read(read) => read.keys(),
        }
    }

    /// Whether `query` selects this entry.
    pub fn matches(&self, query: &AuditQuery) -> bool {
        self.position > query.after
            && query.kind.is_none_or(|k| k == self.kind())
            && query.actor.as_ref().is_none_or(|a| *a == self.actor)
            && query.from.is_none_or(|from| self.at >= from)
            && query.until.is_none_or(|until| self.at < until)
            && query.key.as_ref().is_none_or(|k| self.keys().contains(k))
    }
}

/// Which audit entries to read: every condition given must hold. Entries
/// come in trail order (oldest first), at most [`AuditQuery::limit`] of them.
///
/// ```
/// use connective::model::{AuditKind, AuditQuery, Timestamp};
/// let q = AuditQuery::all().by("user:alice".parse()?).between(Timestamp(0), Timestamp(1_000)).reads();
/// assert_eq!(q.limit, AuditQuery::DEFAULT_LIMIT);
/// assert_eq!(q.kind, Some(AuditKind::Read));
/// # Ok::<(), connective::model::ParseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only entries about this record (a connection's key, say): writes
    /// that changed it, reads of its secrets.
    pub key: Option<RecordKey>,
    /// Only entries by this actor.
    pub actor: Option<ActorId>,
    /// Only entries at or after this instant.
    pub from: Option<Timestamp>,
    /// Only entries before this instant.
    pub until: Option<Timestamp>,
    /// Only writes, or only reads.
    pub kind: Option<AuditKind>,
    /// Only entries after this position (to page through the trail).
    pub after: AuditPosition,
    /// At most this many entries.
    pub limit: usize,
}

impl AuditQuery {
    /// The limit of a query that sets none.
    pub const DEFAULT_LIMIT: usize = 1_000;

    /// Every entry (up to [`AuditQuery::DEFAULT_LIMIT`]).
    pub fn all() -> Self {
        AuditQuery {
            key: None,
            actor: None,
            from: None,
            until: None,
            kind: None,
            after: AuditPosition(0),
            limit: Self::DEFAULT_LIMIT,
        }
    }
    /// Only entries about `key`.
    pub fn of_record(mut self, key: RecordKey) -> Self {
        self.key = Some(key);
        self
    }
    /// Only entries by `actor`.
    pub fn by(mut self, actor: ActorId) -> Self {
        self.actor = Some(actor);
        self
    }
    /// Only entries at or after `from` and before `until`.
    pub fn between(mut self, from: Timestamp, until: Timestamp) -> Self {
        self.from = Some(from);
        self.until = Some(until);
        self
    }
    /// Only committed writes.
    pub fn writes(mut self) -> Self {
        self.kind = Some(AuditKind::Write);
        self
    }
    /// Only reads of secrets.
    pub fn reads(mut self) -> Self {
        self.kind = Some(AuditKind::Read);
        self
    }
    /// Only entries after position `after`.
    pub fn after(mut self, after: AuditPosition) -> Self {
        self.after = after;
        self
    }
    /// At most `limit` entries.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_reads_back_what_it_writes_and_queries_select_by_every_condition() {
        let key = RecordKey::Mappings("acme".parse().unwrap(), "orders".parse().unwrap());
        let note = AuditNote {
            at: Timestamp(1_000),
            actor: "user:alice".parse().unwrap(),
        };
        let change = AuditChange {
            key: key.clone(),
            operation: AuditOperation::Updated,
            before: Some(Version(1)),
            after: Version(2),
        };
        let entry = AuditEntry::write(AuditPosition(3), &note, Revision(7), vec![change]);
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<AuditEntry>(&json).unwrap(), entry);
        assert_eq!(entry.revision(), Some(Revision(7)));
        assert!(entry.matches(&AuditQuery::all()));
        assert!(entry.matches(&AuditQuery::all().of_record(key)));
        assert!(entry.matches(&AuditQuery::all().writes()));
        assert!(!entry.matches(&AuditQuery::all().reads()));
        assert!(!entry.matches(&AuditQuery::all().after(AuditPosition(3))));
        assert!(!entry.matches(&AuditQuery::all().by("user:bob".parse().unwrap())));
        assert!(entry.matches(&AuditQuery::all().between(Timestamp(1_000), Timestamp(1_001))));
        assert!(!entry.matches(&AuditQuery::all().between(Timestamp(0), Timestamp(1_000))));
    }

    #[test]
    fn a_read_is_about_each_connection_it_read_once() {
        let project: ProjectId = "acme".parse().unwrap();
        let field = |name: &str, param: &str| ReadField {
            connection_id: ConnectionId::random(),
            connection: name.parse().unwrap(),
            scope: Scope::Project,
            param: param.parse().unwrap(),
        };
        let read = SecretRead::Resolution {
            project: project.clone(),
            integration: "orders".parse().unwrap(),
            environment: "production".parse().unwrap(),
            customer: None,
            revision: Revision(4),
            fields: vec![
                field("crm", "ApiKey"),
                field("crm", "Secret"),
                field("db", "Password"),
            ],
        };
        let crm = RecordKey::Connection(project.clone(), Scope::Project, "crm".parse().unwrap());
        let db = RecordKey::Connection(project, Scope::Project, "db".parse().unwrap());
        assert_eq!(read.keys(), vec![crm.clone(), db]);
        let entry = AuditEntry::read(
            AuditPosition(9),
            ReadNote {
                actor: "deployer".parse().unwrap(),
                at: Timestamp(5),
                read,
            },
        );
        assert_eq!(entry.kind(), AuditKind::Read);
        assert!(entry.changes().is_empty());
        assert!(entry.matches(&AuditQuery::all().of_record(crm).reads()));
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<AuditEntry>(&json).unwrap(), entry);
    }
}
