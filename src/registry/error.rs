//! What a registry write can fail with.

use crate::model::{
    AppOwner, ConnectionId, ConnectionName, IntegrationId, MappingsError, ProjectId, RecordKey, Scope,
    SpecError, TemplateName, TypeError, TypeName, Version, join,
};
use crate::oauth::ProvisionError;
use crate::resolve::Problem;
use crate::store::{CommitToken, ConflictMessage, Expect, StoreError};

/// A refused or failed registry write. Nothing was written. Messages name
/// identifiers and versions, never values.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Reads of secrets can be audited only with the audit trail on
    /// ([`RegistryBuilder::audit`](super::RegistryBuilder::audit), whose
    /// actor is the default reader).
    #[error("reads of secrets can be audited only with the audit trail on (RegistryBuilder::audit)")]
    ReadAuditWithoutTrail,
    /// The connection spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The mappings are malformed.
    #[error(transparent)]
    MappingsSyntax(#[from] MappingsError),
    /// A connection or template does not fit its connection type, or a type
    /// change would make one misfit; every problem is listed.
    #[error(transparent)]
    Type(#[from] TypeError),
    /// The connection type named is neither the project's nor the host's.
    #[error("project {project} has no connection type {name}, and the host defines none")]
    UnknownType {
        /// The project.
        project: ProjectId,
        /// The type.
        name: TypeName,
    },
    /// The template named does not exist in the project.
    #[error("project {project} has no template {name}")]
    UnknownTemplate {
        /// The project.
        project: ProjectId,
        /// The template.
        name: TemplateName,
    },
    /// A project's connection type still has connections or templates.
    #[error(
        "connection type {name} of project {project} is still used by {}",
        in_use(connections, templates)
    )]
    TypeInUse {
        /// The project.
        project: ProjectId,
        /// The type.
        name: TypeName,
        /// The connections following it.
        connections: Vec<ConnectionName>,
        /// The templates of it.
        templates: Vec<TemplateName>,
    },
    /// A template still has connections made from it.
    #[error(
        "template {name} of project {project} is still used by connection(s) {}",
        join(connections)
    )]
    TemplateInUse {
        /// The project.
        project: ProjectId,
        /// The template.
        name: TemplateName,
        /// The connections made from it.
        connections: Vec<ConnectionName>,
    },
    /// Another connection already has this name in this scope (rule 2).
    #[error("project {project} already has a connection named {name} at {scope}: {existing}")]
    NameTaken {
        /// The project.
        project: ProjectId,
        /// The scope.
        scope: Scope,
        /// The name.
        name: ConnectionName,
        /// The connection holding it.
        existing: ConnectionId,
    },
    /// No such connection in this project.
    #[error("project {project} has no connection {id}")]
    ConnectionNotFound {
        /// The project.
        project: ProjectId,
        /// The ID.
        id: ConnectionId,
    },
    /// No such OAuth application.
    #[error("project {project} has no {owner}")]
    AppNotFound {
        /// The project.
        project: ProjectId,
        /// Whose application.
        owner: AppOwner,
    },
    /// The version read is stale: somebody else wrote first (rule 8).
    #[error("{}", ConflictMessage { key, expected, found })]
    Conflict {
        /// The record.
        key: RecordKey,
        /// What the writer expected.
        expected: Expect,
        /// What is there (`None`: nothing).
        found: Option<Version>,
    },
    /// The write would write a record already at its last version
    /// ([`Version::MAX`]): versions never repeat, so it cannot be written
    /// again (see [`next_version`](crate::store::next_version)). Nothing
    /// was written. Not retryable.
    #[error("{key} is at the last version {version} and cannot be written again")]
    LastVersion {
        /// The record (a connection: its project, scope and name).
        key: RecordKey,
        /// Its version.
        version: Version,
    },
    /// The connection is still used; delete with
    /// [`DeleteMode::Force`](super::DeleteMode::Force) to proceed (rule 9).
    #[error(
        "connection {name} ({id}) of project {project} is still used by integration(s) {}",
        join(dependents)
    )]
    StillUsed {
        /// The project.
        project: ProjectId,
        /// The connection.
        id: ConnectionId,
        /// Its name.
        name: ConnectionName,
        /// The integrations whose mappings resolve to it.
        dependents: Vec<IntegrationId>,
    },
    /// The mappings do not fit the catalog (invisible connections, unknown
    /// parameters, reserved or colliding variables); every problem is listed.
    #[error(
        "invalid mappings for integration {integration} of project {project}: {}",
        join(problems)
    )]
    InvalidMappings {
        /// The project.
        project: ProjectId,
        /// The integration.
        integration: IntegrationId,
        /// Every problem.
        problems: Vec<Problem>,
    },
    /// The OAuth provisioner failed.
    #[error(transparent)]
    Provision(#[from] ProvisionError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// The project has records the store holds but this registry cannot read
    /// back ([`Registry::unreadable`](super::Registry::unreadable)): a write
    /// could break what it cannot see, so the project is read-only here until
    /// they are readable again. Other projects are not affected.
    #[error(
        "project {project} has records this registry cannot read ({}): it is read-only until they are readable again",
        join(records)
    )]
    ProjectUnreadable {
        /// The project.
        project: ProjectId,
        /// The records that cannot be read.
        records: Vec<RecordKey>,
    },
    /// The write failed (`error`; nothing was stored), and undoing what the
    /// OAuth provisioner did for it failed too: the applications or grants
    /// named in `failures` remain at the identity provider.
    #[error("{error}; undoing its provisioner work failed too: {}", join(failures))]
    CompensationFailed {
        /// Why the write failed.
        error: Box<RegistryError>,
        /// The releases and revocations that failed.
        failures: Vec<ProvisionError>,
    },
    /// The store lost the answer to the commit and it could not be looked up
    /// yet: the write may or may not have been applied. Nothing provisioned
    /// for it is undone until that is known; the registry finds out at its
    /// next write or [`Registry::settle`](super::Registry::settle), and then
    /// undoes the provisioner's work only if the write was not applied.
    /// Retrying the write is safe: if the first attempt was applied, the
    /// retry is checked against it (a conflict, or the name taken).
    #[error("the outcome of commit {token} is unknown ({message}); {} oauth application(s) provisioned or granted for it are kept until it is known", kept.len())]
    OutcomeUnknown {
        /// The batch's token.
        token: CommitToken,
        /// The applications provisioned or granted a target for the write.
        kept: Vec<(ProjectId, AppOwner)>,
        /// Why it could not be looked up (never a value).
        message: String,
    },
}

fn in_use(connections: &[ConnectionName], templates: &[TemplateName]) -> String {
    match (connections.is_empty(), templates.is_empty()) {
        (false, true) => format!("connection(s) {}", join(connections)),
        (true, false) => format!("template(s) {}", join(templates)),
        _ => format!(
            "connection(s) {} and template(s) {}",
            join(connections),
            join(templates)
        ),
    }
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { key, expected, found } => RegistryError::Conflict { key, expected, found },
            StoreError::LastVersion { key, version } => RegistryError::LastVersion { key, version },
            other => RegistryError::Store(other),
        }
    }
}

impl RegistryError {
    /// Whether re-reading and retrying may succeed (a conflict, a store that
    /// is unavailable for now, a commit whose outcome is not known yet).
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Conflict { .. }
            | RegistryError::Store(StoreError::Unavailable { .. })
            | RegistryError::OutcomeUnknown { .. } => true,
            RegistryError::CompensationFailed { error, .. } => error.is_retryable(),
            _ => false,
        }
    }
}
