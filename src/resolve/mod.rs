//! Resolution: visibility → precedence → values → mapping → [`ResolvedEnv`]
//! with provenance.
//!
//! Pure functions over a [`ProjectSnapshot`]: no I/O, no locks. The rules of
//! the architecture live here, one function each:
//! - rules 1 and 2 (visibility, precedence): [`find_connection`];
//! - rule 3 (values): [`Layers::value_for`](crate::model::Layers::value_for);
//! - rule 4 (mapping): [`resolve_snapshot`] with the host's
//!   [`ResolvePolicy`];
//! - rule 7 (provenance): every [`ResolvedVar`] carries a [`Provenance`].

mod env;
mod error;
mod explain;
mod lookup;
mod walk;

use std::sync::Arc;

/// Re-exported from [`model`](crate::model), where the OAuth application is defined.
pub use crate::model::AppField;
pub use env::{MappingKind, Provenance, ResolvedEnv, ResolvedValue, ResolvedVar, ValueSource};
pub use error::{Problem, ResolveError};
pub use explain::{Considered, Explanation, LayerOutcome, explain};
use lookup::{Lookup, lookup};
use walk::walk;

use crate::catalog::{Catalog, ProjectSnapshot};
use crate::model::{
    Connection, ConnectionId, ConnectionRef, CustomerId, EnteredBy, EnvMapping, Environment, IntegrationId,
    IntoIdent, Mappings, ParseError, ProjectId, ResolvePolicy, Scope, Tenancy, Versioned,
};

/// What to resolve: one integration of one project, for an environment and
/// optionally a customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResolveRequest {
    /// The project.
    pub project: ProjectId,
    /// The integration.
    pub integration: IntegrationId,
    /// The environment.
    pub environment: Environment,
    /// The customer, for a multi-tenant host.
    pub customer: Option<CustomerId>,
}

impl ResolveRequest {
    /// A request without a customer.
    pub fn new(project: ProjectId, integration: IntegrationId, environment: Environment) -> Self {
        ResolveRequest {
            project,
            integration,
            environment,
            customer: None,
        }
    }

    /// Parses the three identifiers.
    ///
    /// ```
    /// use connective::resolve::ResolveRequest;
    /// let req = ResolveRequest::parse("acme", "orders", "production")?.for_customer("globex")?;
    /// assert_eq!(req.customer.unwrap().as_str(), "globex");
    /// # Ok::<(), connective::model::ParseError>(())
    /// ```
    pub fn parse(project: &str, integration: &str, environment: &str) -> Result<Self, ParseError> {
        Ok(ResolveRequest::new(
            project.parse()?,
            integration.parse()?,
            environment.parse()?,
        ))
    }

    /// The same request for `customer`.
    pub fn for_customer<C: IntoIdent<CustomerId>>(mut self, customer: C) -> Result<Self, ParseError> {
        self.customer = Some(customer.into_ident()?);
        Ok(self)
    }

    /// The same request for another environment.
    pub fn in_environment(mut self, environment: Environment) -> Self {
        self.environment = environment;
        self
    }
}

impl std::fmt::Display for ResolveRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "integration {} of project {} in environment {}",
            self.integration, self.project, self.environment
        )?;
        if let Some(c) = &self.customer {
            write!(f, " for customer {c}")?;
        }
        Ok(())
    }
}

/// The read side: turns a request into a [`ResolvedEnv`].
///
/// Implemented by [`Registry`](crate::registry::Registry), by
/// [`Catalog`] and by [`ProjectView`] (a project snapshot with a policy), so
/// host code written against `&dyn Resolver` can be unit-tested on a fixture.
pub trait Resolver {
    /// Resolves `request`, or reports every problem found.
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError>;
}

/// A project snapshot together with the host's policy: an immutable resolver.
#[derive(Debug, Clone)]
pub struct ProjectView {
    /// The snapshot.
    pub snapshot: Arc<ProjectSnapshot>,
    /// The policy.
    pub policy: ResolvePolicy,
}

impl Resolver for ProjectView {
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError> {
        if request.project != *self.snapshot.project() {
            return Ok(ResolvedEnv::empty(request.clone()));
        }
        resolve_snapshot(&self.snapshot, &self.policy, request)
    }
}

impl Resolver for Catalog {
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError> {
        self.with_project(&request.project, |snapshot| {
            resolve_snapshot(snapshot, self.policy(), request)
        })
        .unwrap_or_else(|| Ok(ResolvedEnv::empty(request.clone())))
    }
}

impl<R: Resolver + ?Sized> Resolver for &R {
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError> {
        (**self).resolve(request)
    }
}

impl<R: Resolver + ?Sized> Resolver for Arc<R> {
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError> {
        (**self).resolve(request)
    }
}

/// **Rules 1 and 2, visibility and precedence.** The connection `reference`
/// means to `integration` of the snapshot's project:
/// - by name: the integration's own integration-scope connection of that name
///   if there is one (it shadows), else the project-scope one;
/// - by ID: exactly that connection, if it is project-scope or belongs to this
///   integration.
///
/// Nothing of another integration or project is ever returned.
pub fn find_connection<'s>(
    snapshot: &'s ProjectSnapshot,
    integration: &IntegrationId,
    reference: &ConnectionRef,
) -> Option<&'s Versioned<Arc<Connection>>> {
    match reference {
        ConnectionRef::Name(name) => snapshot
            .by_name(Some(integration), name)
            .or_else(|| snapshot.by_name(None, name)),
        ConnectionRef::Id(id) => snapshot.connection(*id).filter(|c| match c.value.scope() {
            Scope::Project => true,
            Scope::Integration(owner) => owner == integration,
        }),
    }
}

/// Whether `connection` is visible to `integration` (rule 1).
pub fn is_visible(connection: &Connection, integration: &IntegrationId) -> bool {
    match connection.scope() {
        Scope::Project => true,
        Scope::Integration(owner) => owner == integration,
    }
}

/// Resolves `request` against one project snapshot (rules 1–4 and 7), reporting
/// every problem at once.
#[cfg_attr(
    feature = "tracing",
    tracing::instrument(
        level = "debug",
        name = "connective.resolve",
        skip_all,
        fields(
            project = %request.project,
            integration = %request.integration,
            environment = %request.environment,
            customer = request.customer.as_ref().map(|c| c.as_str()),
        )
    )
)]
pub fn resolve_snapshot(
    snapshot: &ProjectSnapshot,
    policy: &ResolvePolicy,
    request: &ResolveRequest,
) -> Result<ResolvedEnv, ResolveError> {
    let unreadable = snapshot.unreadable_for(&request.integration);
    if !unreadable.is_empty() {
        return Err(ResolveError {
            request: request.clone(),
            problems: unreadable
                .into_iter()
                .map(|record| Problem::Unreadable { record })
                .collect(),
        });
    }
    let Some(mappings) = snapshot.mappings(&request.integration) else {
        return Ok(ResolvedEnv::empty(request.clone()).at(snapshot.revision()));
    };
    let (vars, problems) = walk(
        snapshot,
        policy,
        &request.integration,
        mappings.value.uses(),
        |connection, param, explicit| match lookup(snapshot, connection, param, request, explicit)? {
            Lookup::Found(value, source) => Ok(Some((value, source))),
            Lookup::Absent => Ok(None),
        },
        |name, slot| {
            let (value, source) = slot.value;
            let entered_by = match &source {
                ValueSource::Layer(layer) if layer.customer().is_some() => {
                    match slot
                        .connection
                        .spec()
                        .param(slot.param.as_str())
                        .map(|p| p.tenancy())
                    {
                        Some(Tenancy::PerCustomer(by)) => Some(by),
                        _ => Some(EnteredBy::Organization),
                    }
                }
                _ => None,
            };
            let provenance = Provenance {
                entered_by,
                connection_id: slot.connection.id(),
                connection: slot.connection.name().clone(),
                scope: slot.connection.scope().clone(),
                param: slot.param,
                source,
                mapping: slot.kind,
            };
            ResolvedVar {
                name: name.clone(),
                value,
                provenance,
            }
        },
    );
    if !problems.is_empty() {
        return Err(ResolveError {
            request: request.clone(),
            problems,
        });
    }
    Ok(ResolvedEnv::new(request.clone(), snapshot.revision(), vars))
}

/// Checks mappings against a snapshot without looking at values: every
/// reference visible (rules 1, 2), every explicit parameter known, no reserved
/// name, no two entries producing one variable (rule 4). The registry refuses
/// mappings with problems; values are checked per environment at resolution.
pub fn check_mappings(
    snapshot: &ProjectSnapshot,
    policy: &ResolvePolicy,
    mappings: &Mappings,
) -> Vec<Problem> {
    let (_, problems) = walk(
        snapshot,
        policy,
        mappings.integration(),
        mappings.uses(),
        |connection, param, _| {
            let app_param = connection.oauth_app().is_some() && AppField::for_param(param.as_str()).is_some();
            if app_param || connection.spec().param(param.as_str()).is_some() {
                Ok(Some(()))
            } else {
                Err(Problem::UnknownParam {
                    connection: connection.name().clone(),
                    connection_id: connection.id(),
                    param: param.clone(),
                })
            }
        },
        |_, slot| (slot.connection.name().clone(), slot.param),
    );
    problems
}

/// How one integration uses a connection: the mapping entries that resolve to
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The integration.
    pub integration: IntegrationId,
    /// How the integration refers to the connection.
    pub reference: ConnectionRef,
    /// Which variables its parameters land in.
    pub env: EnvMapping,
}

/// Every mapping entry, of every integration of the snapshot's project, that
/// resolves to connection `id` (rules 2 and 9), sorted by integration.
pub fn usages(snapshot: &ProjectSnapshot, id: ConnectionId) -> Vec<Usage> {
    let mut out: Vec<Usage> = snapshot
        .all_mappings()
        .flat_map(|m| {
            let integration = m.value.integration();
            m.value.uses().iter().filter_map(move |u| {
                find_connection(snapshot, integration, &u.reference)
                    .filter(|c| c.value.id() == id)
                    .map(|_| Usage {
                        integration: integration.clone(),
                        reference: u.reference.clone(),
                        env: u.env.clone(),
                    })
            })
        })
        .collect();
    out.sort_by(|a, b| a.integration.cmp(&b.integration));
    out
}

/// The integrations whose mappings resolve to connection `id` (rule 9).
pub fn dependents(snapshot: &ProjectSnapshot, id: ConnectionId) -> Vec<IntegrationId> {
    let mut out: Vec<IntegrationId> = usages(snapshot, id).into_iter().map(|u| u.integration).collect();
    out.dedup();
    out
}
