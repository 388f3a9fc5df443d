//! What can go wrong in a resolution; all problems are reported together.

use std::fmt;
use std::sync::Arc;

use super::ResolveRequest;
use crate::model::{
    AppOwner, ConnectionId, ConnectionName, ConnectionRef, CustomerId, EnvVarName, Environment,
    ExternalFault, ExternalRef, IntegrationId, ParamName, RecordKey, TemplateName,
};

/// One problem of a resolution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The reference names nothing this integration can see (it may not exist,
    /// or belong to another integration or project: the two are not told apart).
    #[error("no {reference} is visible to integration {integration}")]
    NotVisible {
        /// The reference as mapped.
        reference: ConnectionRef,
        /// The integration.
        integration: IntegrationId,
    },
    /// The mapping names a parameter the connection does not have.
    #[error("connection {connection} ({connection_id}) has no parameter {param}")]
    UnknownParam {
        /// The connection.
        connection: ConnectionName,
        /// Its ID.
        connection_id: ConnectionId,
        /// The parameter.
        param: ParamName,
    },
    /// A mapped parameter has no value for this environment and customer.
    #[error("parameter {param} of connection {connection} ({connection_id}) has no value for environment {environment}{}", customer.as_ref().map_or(String::from(" without a customer"), |c| format!(" and customer {c}")))]
    MissingValue {
        /// The connection.
        connection: ConnectionName,
        /// Its ID.
        connection_id: ConnectionId,
        /// The parameter.
        param: ParamName,
        /// The environment.
        environment: Environment,
        /// The customer, if any.
        customer: Option<CustomerId>,
    },
    /// A per-customer parameter was resolved without a customer.
    #[error(
        "parameter {param} of connection {connection} ({connection_id}) is per-customer: resolve for a customer"
    )]
    CustomerRequired {
        /// The connection.
        connection: ConnectionName,
        /// Its ID.
        connection_id: ConnectionId,
        /// The parameter.
        param: ParamName,
    },
    /// Two mappings produce the same variable.
    #[error("variable {variable} is produced by both {}.{} and {}.{}", first.0, first.1, second.0, second.1)]
    Collision {
        /// The variable.
        variable: EnvVarName,
        /// The first (connection, parameter).
        first: (ConnectionName, ParamName),
        /// The second.
        second: (ConnectionName, ParamName),
    },
    /// The variable name is reserved by the host.
    #[error("variable {variable} (from {connection}.{param}) is reserved: {reason}")]
    Reserved {
        /// The variable.
        variable: EnvVarName,
        /// The connection.
        connection: ConnectionName,
        /// The parameter.
        param: ParamName,
        /// Why.
        reason: String,
    },
    /// The connection's OAuth application is missing from the catalog.
    #[error("connection {connection} ({connection_id}) refers to the {owner}, which does not exist")]
    OAuthAppMissing {
        /// The connection.
        connection: ConnectionName,
        /// Its ID.
        connection_id: ConnectionId,
        /// The application's owner.
        owner: AppOwner,
    },
    /// The winning value layer refers to a secret in an external store, and
    /// the host's cache has no value to give for it (not fetched yet, gone
    /// from the store, stale past the maximum staleness, ...). Names the
    /// reference, never a value.
    #[error("parameter {param} of connection {connection} ({connection_id}) refers to {reference}: {fault}")]
    ExternalSecret {
        /// The connection.
        connection: ConnectionName,
        /// Its ID.
        connection_id: ConnectionId,
        /// The parameter.
        param: ParamName,
        /// The reference.
        reference: Arc<ExternalRef>,
        /// Why there is no value.
        fault: ExternalFault,
    },
    /// The template the connection was made from is missing from the
    /// catalog, and the connection has no value of its own.
    #[error(
        "connection {connection} ({connection_id}) was made from template {template}, which does not exist"
    )]
    TemplateMissing {
        /// The connection.
        connection: ConnectionName,
        /// Its ID.
        connection_id: ConnectionId,
        /// The template.
        template: TemplateName,
    },
    /// A record the resolution depends on is in the store but could not be
    /// read back by this replica (e.g. sealed under a key its ring lacks):
    /// resolving without it could give another connection's values.
    #[error("{record} cannot be read from the store")]
    Unreadable {
        /// The record.
        record: RecordKey,
    },
    /// The answer holds secrets, the host records every read of secrets in
    /// the audit trail, and this read could not be recorded: nothing is
    /// handed out.
    #[error("the answer holds secrets and its read could not be recorded in the audit trail: {reason}")]
    NotAudited {
        /// Why (never a value).
        reason: String,
    },
}

/// A resolution that failed, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    /// What was being resolved.
    pub request: ResolveRequest,
    /// Every problem, in mapping order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "cannot resolve {}: {n} problem{}",
            self.request,
            if n == 1 { "" } else { "s" }
        )?;
        for (i, p) in self.problems.iter().enumerate() {
            write!(f, "{} {p}", if i == 0 { ":" } else { ";" })?;
        }
        Ok(())
    }
}

impl std::error::Error for ResolveError {}
