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

use std::collections::HashMap;
use std::sync::Arc;

/// Re-exported from [`model`](crate::model), where the OAuth application is defined.
pub use crate::model::AppField;
use env::VarHasher;
pub use env::{MappingKind, Provenance, ResolvedEnv, ResolvedValue, ResolvedVar, ValueSource};
pub use error::{Problem, ResolveError};
pub use explain::{Considered, Explanation, LayerOutcome, explain};
use indexmap::IndexMap;
use indexmap::map::Entry;

use crate::catalog::{Catalog, ProjectSnapshot};
use crate::model::{
    Connection, ConnectionId, ConnectionName, ConnectionRef, ConnectionUse, CustomerId, EnteredBy,
    EnvMapping, EnvVarName, Environment, IntegrationId, IntoIdent, Mappings, ParamName, ParamValues,
    ParseError, ProjectId, Requirement, ResolvePolicy, Scope, Tenancy, Versioned,
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

/// A parameter's value for a request, or why there is none.
enum Lookup {
    Found(ResolvedValue, ValueSource),
    /// No value, and the parameter is optional.
    Absent,
}

fn lookup(
    snapshot: &ProjectSnapshot,
    connection: &Connection,
    param: &ParamName,
    request: &ResolveRequest,
    explicit: bool,
) -> Result<Lookup, Problem> {
    let env = &request.environment;
    let customer = request.customer.as_ref();
    if let Some(owner) = connection.oauth_app()
        && let Some(field) = AppField::for_param(param.as_str())
    {
        let Some(app) = snapshot.app(owner) else {
            return Err(Problem::OAuthAppMissing {
                connection: connection.name().clone(),
                connection_id: connection.id(),
                owner: owner.clone(),
            });
        };
        let value = match field {
            AppField::ClientId => ResolvedValue::Plain(app.value.client_id().to_owned()),
            AppField::ClientSecret => ResolvedValue::Secret(app.value.client_secret().clone()),
            AppField::TokenUrl => ResolvedValue::Plain(app.value.token_url().to_owned()),
        };
        return Ok(Lookup::Found(
            value,
            ValueSource::OAuthApp {
                owner: owner.clone(),
                field,
            },
        ));
    }
    let Some(p) = connection.spec().param(param.as_str()) else {
        return Err(Problem::UnknownParam {
            connection: connection.name().clone(),
            connection_id: connection.id(),
            param: param.clone(),
        });
    };
    if matches!(p.tenancy(), Tenancy::PerCustomer(_)) && customer.is_none() {
        // An optional per-customer parameter under a default-name mapping has
        // no value without a customer, like any optional parameter without one.
        if !explicit && p.requirement() == Requirement::Optional {
            return Ok(Lookup::Absent);
        }
        return Err(Problem::CustomerRequired {
            connection: connection.name().clone(),
            connection_id: connection.id(),
            param: param.clone(),
        });
    }
    let found = match p.values() {
        ParamValues::Plain(layers) => layers
            .pick(env, customer)
            .map(|(l, v)| (ResolvedValue::Plain(v.clone()), l)),
        ParamValues::Secret(layers) => layers
            .pick(env, customer)
            .map(|(l, v)| (ResolvedValue::Secret(v.clone()), l)),
    };
    match found {
        Some((value, layer)) => Ok(Lookup::Found(value, ValueSource::Layer(layer.clone()))),
        None if !explicit && p.requirement() == Requirement::Optional => Ok(Lookup::Absent),
        None => Err(Problem::MissingValue {
            connection: connection.name().clone(),
            connection_id: connection.id(),
            param: param.clone(),
            environment: env.clone(),
            customer: customer.cloned(),
        }),
    }
}

/// The parameters a default-name mapping injects: the declared ones, then
/// the OAuth application's.
fn default_params(connection: &Connection) -> impl Iterator<Item = ParamName> + '_ {
    let app = connection
        .oauth_app()
        .is_some()
        .then(|| {
            AppField::ALL
                .iter()
                .filter_map(|f| f.param().parse::<ParamName>().ok())
        })
        .into_iter()
        .flatten();
    connection
        .spec()
        .params()
        .iter()
        .map(|p| p.name().clone())
        .chain(app)
}

/// What [`walk`] keeps for a claimed variable: it can name the connection and
/// parameter that claimed it, for a later entry that collides.
trait Claimed {
    fn origin(&self) -> (ConnectionName, ParamName);
}

impl Claimed for ResolvedVar {
    fn origin(&self) -> (ConnectionName, ParamName) {
        (self.provenance.connection.clone(), self.provenance.param.clone())
    }
}

impl Claimed for (ConnectionName, ParamName) {
    fn origin(&self) -> (ConnectionName, ParamName) {
        self.clone()
    }
}

/// One planned variable: which connection and parameter it comes from.
struct Slot<'s, V> {
    connection: &'s Connection,
    param: ParamName,
    kind: MappingKind,
    value: V,
}

/// Walks an integration's mappings in order (rules 1, 2 and 4): finds each
/// connection, names each variable (explicit or default), asks `value` for the
/// parameter's value (`Ok(None)`: leave the variable out), and checks reserved
/// names and collisions. Every problem is collected.
///
/// Each variable kept is turned into a `T` by `finish` as it is claimed, so
/// the map walked into is the one returned (no second map is built).
fn walk<'s, V, T: Claimed>(
    snapshot: &'s ProjectSnapshot,
    policy: &ResolvePolicy,
    integration: &IntegrationId,
    uses: &[ConnectionUse],
    mut value: impl FnMut(&'s Connection, &ParamName, bool) -> Result<Option<V>, Problem>,
    mut finish: impl FnMut(&EnvVarName, Slot<'s, V>) -> T,
) -> (IndexMap<EnvVarName, T, VarHasher>, Vec<Problem>) {
    // Room for every variable up front: growing the map moves every entry.
    let capacity = uses
        .iter()
        .map(|u| match &u.env {
            EnvMapping::Explicit(entries) => entries.len(),
            EnvMapping::Defaults => 8,
        })
        .sum();
    let mut vars: IndexMap<EnvVarName, T, VarHasher> =
        IndexMap::with_capacity_and_hasher(capacity, VarHasher::default());
    // Variables whose value is missing still claim their name, so a second
    // entry producing it is reported too (every problem at once).
    let mut unvalued: HashMap<EnvVarName, (ConnectionName, ParamName)> = HashMap::new();
    let mut problems = Vec::new();
    for use_ in uses {
        let Some(found) = find_connection(snapshot, integration, &use_.reference) else {
            problems.push(Problem::NotVisible {
                reference: use_.reference.clone(),
                integration: integration.clone(),
            });
            continue;
        };
        let connection: &'s Connection = &found.value;
        let mut add = |name: EnvVarName, param: &ParamName, kind: MappingKind| {
            let explicit = kind == MappingKind::Explicit;
            let value = match value(connection, param, explicit) {
                Ok(Some(v)) => Some(v),
                Ok(None) => return,
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            };
            if let Err(error) = policy.reserved().check(&name) {
                problems.push(Problem::Reserved {
                    variable: name,
                    connection: connection.name().clone(),
                    param: param.clone(),
                    reason: match error {
                        ParseError::Reserved { reason, .. } => reason,
                        other => other.to_string(),
                    },
                });
                return;
            }
            // One hash of the name: the entry either holds the first claim
            // (a collision) or is where this one goes.
            let slot = match vars.entry(name) {
                Entry::Occupied(first) => {
                    let origin = first.get().origin();
                    (first.key().clone(), Some(origin))
                }
                Entry::Vacant(slot) => match unvalued.get(slot.key()) {
                    Some(origin) => (slot.into_key(), Some(origin.clone())),
                    None => match value {
                        Some(value) => {
                            let claimed = finish(
                                slot.key(),
                                Slot {
                                    connection,
                                    param: param.clone(),
                                    kind,
                                    value,
                                },
                            );
                            slot.insert(claimed);
                            return;
                        }
                        None => (slot.into_key(), None),
                    },
                },
            };
            match slot {
                (variable, Some(first)) => problems.push(Problem::Collision {
                    variable,
                    first,
                    second: (connection.name().clone(), param.clone()),
                }),
                (variable, None) => {
                    unvalued.insert(variable, (connection.name().clone(), param.clone()));
                }
            }
        };
        match &use_.env {
            EnvMapping::Explicit(entries) => {
                for entry in entries {
                    add(entry.to.clone(), &entry.from, MappingKind::Explicit);
                }
            }
            EnvMapping::Defaults => {
                for param in default_params(connection) {
                    let name = EnvVarName::default_for(policy.prefix(), connection.name(), &param);
                    add(name, &param, MappingKind::Default);
                }
            }
        }
    }
    (vars, problems)
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
