//! Resolution: visibility → precedence → values → mapping → [`ResolvedEnv`]
//! with provenance.
//!
//! Pure functions over a [`ProjectSnapshot`], read under the host's
//! [`ResolvePolicy`] as a [`ProjectView`]: no I/O, no locks. The rules of the
//! architecture live here, one function each:
//! - rule 1 (visibility): [`is_visible`];
//! - rule 2 (precedence): [`ProjectView::find_connection`];
//! - rule 3 (values): [`Layers::value_for`](crate::model::Layers::value_for);
//! - rule 4 (mapping): the walk behind [`ProjectView`]'s [`Resolver::resolve`]
//!   and [`ProjectView::check_mappings`];
//! - rule 7 (provenance): every [`ResolvedVar`] carries a [`Provenance`].

mod env;
mod error;
mod explain;
mod listing;
mod lookup;
mod memo;
mod onboarding;
mod walk;

use std::borrow::Borrow;
use std::sync::Arc;

/// Re-exported from [`model`](crate::model), where the OAuth application is defined.
pub use crate::model::AppField;
use env::Held;
#[cfg(feature = "oauth-runtime")]
pub(crate) use env::OwnedVar;
pub use env::{
    Iter, NameSource, Provenance, ResolvedEnv, ResolvedValue, ResolvedValueRef, ResolvedVar, ValueSource,
};
pub use error::{Problem, ResolveError};
pub use explain::{Considered, Explanation, LayerOutcome};
pub use listing::{BuilderConnection, ConnectionListing, ListedField, ListedValue};
use lookup::{External, Lookup, Pinned, lookup};
pub use memo::MemoStats;
pub(crate) use memo::ResolveMemo;
pub use onboarding::{Onboarding, OwedField};
use walk::walk;

use crate::catalog::{Catalog, ProjectSnapshot};
use crate::model::{
    Connection, ConnectionId, ConnectionRef, ConnectionType, CustomerId, EnvMapping, Environment,
    IntegrationId, IntoIdent, Mappings, ParseError, ProjectId, ResolvePolicy, Scope, TypeName, Versioned,
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
    ///
    /// An integration is known by its mappings: one without any (a name
    /// mistyped, or a project the resolver has never seen) resolves to an
    /// empty environment, not an error. A host that expects variables checks
    /// [`ResolvedEnv::is_empty`].
    ///
    /// ```
    /// use connective::fixture::Fixture;
    /// use connective::model::Param;
    /// let fx = Fixture::project("acme")
    ///     .connection("crm", |c| c.param(Param::plain("Url").default("https://crm.example.com")))
    ///     .mappings("orders", |m| m.by_name("crm", [("Url", "CRM_URL")]))
    ///     .build()?;
    /// assert_eq!(fx.resolve("orders", "production")?.len(), 1);
    /// assert!(fx.resolve("ordres", "production")?.is_empty());
    /// # Ok::<(), connective::fixture::FixtureError>(())
    /// ```
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError>;
}

/// One project as resolution sees it: a snapshot of the project read under
/// the host's policy. Resolution ([`Resolver::resolve`]), explanation
/// ([`ProjectView::explain`]) and the checks of mappings
/// ([`ProjectView::check_mappings`]) are its methods, so they all read the
/// same pair.
///
/// Owned by default: an immutable [`Resolver`] that later writes do not
/// change ([`Registry::view`](crate::registry::Registry::view)). A view of
/// borrowed parts, `ProjectView<&ProjectSnapshot, &ResolvePolicy>`, costs
/// nothing to make; the catalog and the registry's transactions read through
/// such views.
///
/// ```
/// use std::sync::Arc;
/// use connective::catalog::ProjectSnapshot;
/// use connective::model::{ConnectionRef, ResolvePolicy};
/// use connective::resolve::ProjectView;
/// let view = ProjectView {
///     snapshot: Arc::new(ProjectSnapshot::empty("acme".parse()?)),
///     policy: ResolvePolicy::default(),
/// };
/// let crm = ConnectionRef::Name("crm".parse()?);
/// assert!(view.find_connection(&"orders".parse()?, &crm).is_none());
/// # Ok::<(), connective::model::ParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProjectView<S = Arc<ProjectSnapshot>, P = ResolvePolicy> {
    /// The snapshot.
    pub snapshot: S,
    /// The policy.
    pub policy: P,
}

impl<'a> ProjectView<&'a ProjectSnapshot, &'a ResolvePolicy> {
    /// A view of borrowed parts.
    pub fn of(snapshot: &'a ProjectSnapshot, policy: &'a ResolvePolicy) -> Self {
        ProjectView { snapshot, policy }
    }
}

impl<S: Borrow<ProjectSnapshot>, P: Borrow<ResolvePolicy>> ProjectView<S, P> {
    fn parts(&self) -> (&ProjectSnapshot, &ResolvePolicy) {
        (self.snapshot.borrow(), self.policy.borrow())
    }

    /// The connection `reference` means to `integration` (rules 1 and 2;
    /// see [`is_visible`]): by name, the integration's own connection of that
    /// name if it has one (it shadows), else the project's; by ID, exactly
    /// that connection if the integration can see it. Nothing of another
    /// integration or project is ever returned.
    pub fn find_connection(
        &self,
        integration: &IntegrationId,
        reference: &ConnectionRef,
    ) -> Option<&Versioned<Arc<Connection>>> {
        find_connection(self.snapshot.borrow(), integration, reference)
    }

    /// The connection type `name` as the project sees it: the project's own
    /// type of that name if it has one (the more specific wins, as in rule
    /// 2), else the host's ([`ResolvePolicy::types`]).
    pub fn connection_type(&self, name: &TypeName) -> Option<&Arc<ConnectionType>> {
        let (snapshot, policy) = self.parts();
        snapshot
            .project_type(name)
            .map(|t| t.value.definition())
            .or_else(|| policy.types().get(name.as_str()))
    }

    /// Checks mappings without looking at values: every reference visible
    /// (rules 1, 2), every explicit parameter known, no reserved name, no two
    /// entries producing one variable (rule 4). The registry refuses mappings
    /// with problems; values are checked per environment at resolution.
    pub fn check_mappings(&self, mappings: &Mappings) -> Vec<Problem> {
        let (snapshot, policy) = self.parts();
        let (_, problems) = walk(
            snapshot,
            policy,
            mappings.integration(),
            mappings.uses(),
            |connection, param, _| {
                let app_param =
                    connection.oauth_app().is_some() && AppField::for_param(param.as_str()).is_some();
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
        );
        problems
    }

    /// Every mapping entry, of every integration of the project, that
    /// resolves to connection `id` (rules 2 and 9), sorted by integration.
    pub fn usages(&self, id: ConnectionId) -> Vec<Usage> {
        let snapshot = self.snapshot.borrow();
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
    pub fn dependents(&self, id: ConnectionId) -> Vec<IntegrationId> {
        let mut out: Vec<IntegrationId> = self.usages(id).into_iter().map(|u| u.integration).collect();
        out.dedup();
        out
    }
}

impl<S: SnapshotHandle, P: Borrow<ResolvePolicy>> Resolver for ProjectView<S, P> {
    /// Resolves `request` against the project (rules 1–4 and 7), reporting
    /// every problem at once; a request for another project gets nothing.
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError> {
        let (snapshot, policy) = self.parts();
        resolve_with(snapshot, policy, request, |_| self.snapshot.shared().into())
    }
}

/// [`Resolver::resolve`] on `snapshot`: checks the request against the
/// snapshot it borrows, then hands `share(snapshot)` to the answer to keep.
/// A caller that owns an `Arc` moves it in (one reference count taken per
/// resolution, by whoever loaded the snapshot) instead of lending it and
/// having the answer take another.
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
fn resolve_with<S: Borrow<ProjectSnapshot>>(
    snapshot: S,
    policy: &ResolvePolicy,
    request: &ResolveRequest,
    share: impl FnOnce(S) -> Held,
) -> Result<ResolvedEnv, ResolveError> {
    let borrowed = snapshot.borrow();
    if request.project != *borrowed.project() {
        return Ok(ResolvedEnv::empty(request.clone()));
    }
    check_readable(borrowed, request)?;
    let revision = borrowed.revision();
    if borrowed.mappings(&request.integration).is_none() {
        return Ok(ResolvedEnv::empty(request.clone()).at(revision));
    }
    ResolvedEnv::build(request.clone(), revision, share(snapshot), |snapshot, pinned| {
        walk_vars(snapshot, policy, request, pinned)
    })
}

/// Resolves `request` on `snapshot`, which the answer keeps: the `Arc` is
/// moved in, not cloned (see [`resolve_with`]).
pub(crate) fn resolve_owned(
    snapshot: Arc<ProjectSnapshot>,
    policy: &ResolvePolicy,
    request: &ResolveRequest,
) -> Result<ResolvedEnv, ResolveError> {
    resolve_held(snapshot.into(), policy, request)
}

/// Resolves `request` on the snapshot `held` holds, which the answer keeps.
pub(crate) fn resolve_held(
    held: Held,
    policy: &ResolvePolicy,
    request: &ResolveRequest,
) -> Result<ResolvedEnv, ResolveError> {
    resolve_with(held, policy, request, |held| held)
}

/// Records of the project the store holds but this replica cannot read,
/// that `request`'s integration may depend on: a problem each.
fn check_readable(snapshot: &ProjectSnapshot, request: &ResolveRequest) -> Result<(), ResolveError> {
    let unreadable = snapshot.unreadable_for(&request.integration);
    if unreadable.is_empty() {
        return Ok(());
    }
    Err(ResolveError {
        request: request.clone(),
        problems: unreadable
            .into_iter()
            .map(|record| Problem::Unreadable { record })
            .collect(),
    })
}

/// **Rules 1–4 and 7**: the variables `request` gets from `snapshot`, each
/// borrowing its name, value and what its provenance is made from (a
/// referenced value, from the cache generation `pinned` holds); none for
/// another project or an integration without mappings.
fn resolve_vars<'s>(
    snapshot: &'s ProjectSnapshot,
    policy: &ResolvePolicy,
    request: &ResolveRequest,
    pinned: &'s Pinned,
) -> Result<env::Vars<'s>, ResolveError> {
    if request.project != *snapshot.project() {
        return Ok(env::Vars::default());
    }
    check_readable(snapshot, request)?;
    walk_vars(snapshot, policy, request, pinned)
}

/// [`resolve_vars`] once the request is known to be for `snapshot`'s
/// project and every record it may read is readable.
fn walk_vars<'s>(
    snapshot: &'s ProjectSnapshot,
    policy: &ResolvePolicy,
    request: &ResolveRequest,
    pinned: &'s Pinned,
) -> Result<env::Vars<'s>, ResolveError> {
    let external = External {
        view: policy.external_secrets(),
        pinned,
    };
    let Some(mappings) = snapshot.mappings(&request.integration) else {
        return Ok(env::Vars::default());
    };
    let (vars, problems) = walk(
        snapshot,
        policy,
        &request.integration,
        mappings.value.uses(),
        |connection, param, explicit| match lookup(
            snapshot,
            connection,
            param,
            &request.environment,
            request.customer.as_ref(),
            explicit,
            external,
        )? {
            Lookup::Found(found) => Ok(Some(found)),
            Lookup::Absent => Ok(None),
        },
    );
    if !problems.is_empty() {
        return Err(ResolveError {
            request: request.clone(),
            problems,
        });
    }
    Ok(vars)
}

/// A project snapshot as a [`ProjectView`] holds it, for a resolution to
/// keep: an answer borrows its variables' names, values and provenance
/// from the snapshot it was resolved on and holds that snapshot.
pub trait SnapshotHandle: Borrow<ProjectSnapshot> {
    /// The snapshot, shared: a reference count for an `Arc`; a borrowed or
    /// owned snapshot is copied (its tables share their records).
    fn shared(&self) -> Arc<ProjectSnapshot>;
}

impl SnapshotHandle for Arc<ProjectSnapshot> {
    fn shared(&self) -> Arc<ProjectSnapshot> {
        Arc::clone(self)
    }
}

impl SnapshotHandle for &ProjectSnapshot {
    fn shared(&self) -> Arc<ProjectSnapshot> {
        Arc::new((*self).clone())
    }
}

impl SnapshotHandle for ProjectSnapshot {
    fn shared(&self) -> Arc<ProjectSnapshot> {
        Arc::new(self.clone())
    }
}

impl Resolver for Catalog {
    /// Resolves against the project's current snapshot, which the answer
    /// keeps (one reference count, taken when the snapshot is loaded and
    /// moved into the answer).
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError> {
        match self.project(&request.project) {
            Some(snapshot) => resolve_owned(snapshot, self.policy(), request),
            None => Ok(ResolvedEnv::empty(request.clone())),
        }
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

/// **Rules 1 and 2, visibility and precedence**: what
/// [`ProjectView::find_connection`] answers, for the walks that hold a
/// snapshot. By name, the integration's own integration-scope connection of
/// that name if there is one (it shadows), else the project-scope one (both
/// visible by construction); by ID, exactly that connection if
/// [`is_visible`].
pub(crate) fn find_connection<'s>(
    snapshot: &'s ProjectSnapshot,
    integration: &IntegrationId,
    reference: &ConnectionRef,
) -> Option<&'s Versioned<Arc<Connection>>> {
    match reference {
        ConnectionRef::Name(name) => snapshot
            .by_name(Some(integration), name)
            .or_else(|| snapshot.by_name(None, name)),
        ConnectionRef::Id(id) => snapshot
            .connection(*id)
            .filter(|c| is_visible(&c.value, integration)),
    }
}

/// **Rule 1, visibility**: whether `integration` can see `connection` (a
/// project-scope connection, or one of its own).
pub fn is_visible(connection: &Connection, integration: &IntegrationId) -> bool {
    match connection.scope() {
        Scope::Project => true,
        Scope::Integration(owner) => owner == integration,
    }
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
