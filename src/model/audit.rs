//! The audit trail: who changed which records, when, from which version to
//! which; never a value.
//!
//! A registry built with an audit actor
//! ([`RegistryBuilder::audit`](crate::registry::RegistryBuilder::audit))
//! hands the store an [`AuditNote`] with every batch it commits; the store
//! writes the batch's [`AuditEntry`] in the same transaction (so an entry
//! exists exactly for each committed batch, none for a refused one) into
//! an append-only table, and answers [`AuditQuery`]s.

use serde::{Deserialize, Serialize};

use super::ident::ActorId;
use super::record::RecordKey;
use super::record::{Revision, Version};
use super::token::Timestamp;

/// What a registry hands the store with a batch to audit: who, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditNote {
    /// Who made the write.
    pub actor: ActorId,
    /// When the registry committed it.
    pub at: Timestamp,
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

/// One committed write, as the audit trail keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// The revision the write committed as (its outcome: committed; a
    /// refused write leaves no entry).
    pub revision: Revision,
    /// When.
    pub at: Timestamp,
    /// Who.
    pub actor: ActorId,
    /// Every record it changed, in the batch's order.
    pub changes: Vec<AuditChange>,
}

impl AuditEntry {
    /// Whether `query` selects this entry.
    pub fn matches(&self, query: &AuditQuery) -> bool {
        query.actor.as_ref().is_none_or(|a| *a == self.actor)
            && query.from.is_none_or(|from| self.at >= from)
            && query.until.is_none_or(|until| self.at < until)
            && query
                .key
                .as_ref()
                .is_none_or(|k| self.changes.iter().any(|c| c.key == *k))
    }
}

/// Which audit entries to read: every condition given must hold. Entries
/// come oldest first, at most [`AuditQuery::limit`] of them.
///
/// ```
/// use connective::model::{AuditQuery, Timestamp};
/// let q = AuditQuery::all().by("user:alice".parse()?).between(Timestamp(0), Timestamp(1_000));
/// assert_eq!(q.limit, AuditQuery::DEFAULT_LIMIT);
/// # Ok::<(), connective::model::ParseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditQuery {
    /// Only writes that changed this record (a connection's key, say).
    pub key: Option<RecordKey>,
    /// Only writes by this actor.
    pub actor: Option<ActorId>,
    /// Only writes at or after this instant.
    pub from: Option<Timestamp>,
    /// Only writes before this instant.
    pub until: Option<Timestamp>,
    /// Only writes after this revision (to page through the trail).
    pub after: Revision,
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
            after: Revision(0),
            limit: Self::DEFAULT_LIMIT,
        }
    }
    /// Only writes that changed `key`.
    pub fn of_record(mut self, key: RecordKey) -> Self {
        self.key = Some(key);
        self
    }
    /// Only writes by `actor`.
    pub fn by(mut self, actor: ActorId) -> Self {
        self.actor = Some(actor);
        self
    }
    /// Only writes at or after `from` and before `until`.
    pub fn between(mut self, from: Timestamp, until: Timestamp) -> Self {
        self.from = Some(from);
        self.until = Some(until);
        self
    }
    /// Only writes after revision `after`.
    pub fn after(mut self, after: Revision) -> Self {
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
        let entry = AuditEntry {
            revision: Revision(7),
            at: Timestamp(1_000),
            actor: "user:alice".parse().unwrap(),
            changes: vec![AuditChange {
                key: key.clone(),
                operation: AuditOperation::Updated,
                before: Some(Version(1)),
                after: Version(2),
            }],
        };
        let json = serde_json::to_string(&entry).unwrap();
        assert_eq!(serde_json::from_str::<AuditEntry>(&json).unwrap(), entry);
        assert!(entry.matches(&AuditQuery::all()));
        assert!(entry.matches(&AuditQuery::all().of_record(key)));
        assert!(!entry.matches(&AuditQuery::all().by("user:bob".parse().unwrap())));
        assert!(entry.matches(&AuditQuery::all().between(Timestamp(1_000), Timestamp(1_001))));
        assert!(!entry.matches(&AuditQuery::all().between(Timestamp(0), Timestamp(1_000))));
    }
}
