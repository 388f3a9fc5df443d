//! Test fixtures for integrators: a project in a few lines.
//!
//! Like figment's `Jail`, this ships for *users'* tests: build a project's
//! connections and mappings declaratively, then resolve and assert.
//!
//! ```
//! use connective::fixture::Fixture;
//! use connective::model::Param;
//!
//! let fx = Fixture::project("acme")
//!     .connection("twilio", |c| {
//!         c.param(Param::plain("ServiceURL").default("https://api.twilio.com"))
//!             .param(Param::secret("ApiKey").env("production", "live").env("development", "test"))
//!     })
//!     .integration_connection("orders", "legacy", |c| c.param(Param::plain("Host").default("crm.local")))
//!     .mappings("orders", |m| m.by_name("twilio", [("ApiKey", "SMS_KEY")]).by_name_defaults("legacy"))
//!     .build()?;
//!
//! let env = fx.resolve("orders", "production")?;
//! assert_eq!(env.expose("SMS_KEY"), Some("live"));
//! assert_eq!(env.expose("LEGACY_HOST"), Some("crm.local"));
//! # Ok::<(), connective::fixture::FixtureError>(())
//! ```

use crate::model::{
    ConnectionBuilder, ConnectionId, ConnectionName, ConnectionSpec, EnvVarName, IntegrationId,
    MappingsBuilder, MappingsError, ParseError, ProjectId, ReservedNames, SpecError,
};
use crate::registry::{Registry, RegistryError};
use crate::resolve::{ResolveError, ResolveRequest, ResolvedEnv, Resolver};

/// Anything a fixture can fail with; the message says which step.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixtureError {
    /// An identifier given to the fixture is invalid.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A connection spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// Mappings are malformed.
    #[error(transparent)]
    Mappings(#[from] MappingsError),
    /// The registry refused a step.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Resolution failed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// No connection of that name.
    #[error("the fixture has no connection named {name}{}", integration.as_ref().map_or(String::new(), |i| format!(" visible to integration {i}")))]
    NoSuchConnection {
        /// The name asked for.
        name: String,
        /// The integration, if any.
        integration: Option<String>,
    },
}

enum Step {
    Connection(Box<dyn FnOnce() -> ConnectionBuilder>),
    Mappings(Box<dyn FnOnce() -> MappingsBuilder>),
}

/// Builds a [`Fixture`]: one project's connections and mappings, created in
/// order in one atomic write.
pub struct FixtureBuilder {
    project: String,
    prefix: Option<String>,
    reserved: Option<ReservedNames>,
    steps: Vec<Step>,
}

impl std::fmt::Debug for FixtureBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixtureBuilder")
            .field("project", &self.project)
            .field("steps", &self.steps.len())
            .finish_non_exhaustive()
    }
}

impl FixtureBuilder {
    /// Sets the host's prefix for default variable names.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.to_owned());
        self
    }

    /// Replaces the reserved variable names.
    pub fn reserved(mut self, reserved: ReservedNames) -> Self {
        self.reserved = Some(reserved);
        self
    }

    /// Adds a project-scope connection; `f` fills in target, auth and
    /// parameters.
    pub fn connection(
        mut self,
        name: &str,
        f: impl FnOnce(ConnectionBuilder) -> ConnectionBuilder + 'static,
    ) -> Self {
        let (project, name) = (self.project.clone(), name.to_owned());
        self.steps.push(Step::Connection(Box::new(move || {
            f(ConnectionSpec::project(&project, &name))
        })));
        self
    }

    /// Adds an integration-scope connection.
    pub fn integration_connection(
        mut self,
        integration: &str,
        name: &str,
        f: impl FnOnce(ConnectionBuilder) -> ConnectionBuilder + 'static,
    ) -> Self {
        let (project, integration, name) = (self.project.clone(), integration.to_owned(), name.to_owned());
        self.steps.push(Step::Connection(Box::new(move || {
            f(ConnectionSpec::integration(&project, &integration, &name))
        })));
        self
    }

    /// Sets an integration's mappings.
    pub fn mappings(
        mut self,
        integration: &str,
        f: impl FnOnce(MappingsBuilder) -> MappingsBuilder + 'static,
    ) -> Self {
        let (project, integration) = (self.project.clone(), integration.to_owned());
        self.steps.push(Step::Mappings(Box::new(move || {
            f(crate::model::Mappings::of(&project, &integration))
        })));
        self
    }

    /// Creates everything in one write on a fresh in-memory registry.
    pub fn build(self) -> Result<Fixture, FixtureError> {
        let project: ProjectId = self.project.parse()?;
        let mut builder = Registry::builder();
        if let Some(prefix) = &self.prefix {
            builder = builder.prefix(prefix.parse::<EnvVarName>()?);
        }
        if let Some(reserved) = self.reserved {
            builder = builder.reserved(reserved);
        }
        let registry = builder.build()?;
        registry
            .write(|tx| {
                for step in self.steps {
                    match step {
                        Step::Connection(f) => {
                            tx.create_connection(f().build()?)?;
                        }
                        Step::Mappings(f) => tx.set_mappings(f().build()?, None)?,
                    }
                }
                Ok(())
            })
            .map_err(|e| match e {
                RegistryError::Spec(e) => FixtureError::Spec(e),
                RegistryError::MappingsSyntax(e) => FixtureError::Mappings(e),
                other => FixtureError::Registry(other),
            })?;
        Ok(Fixture { registry, project })
    }
}

/// A project in an in-memory registry, for tests. Implements [`Resolver`], so
/// host code written against `&dyn Resolver` can be tested on it.
#[derive(Debug)]
pub struct Fixture {
    registry: Registry,
    project: ProjectId,
}

impl Fixture {
    /// Starts a fixture for `project`.
    pub fn project(project: &str) -> FixtureBuilder {
        FixtureBuilder {
            project: project.to_owned(),
            prefix: None,
            reserved: None,
            steps: Vec::new(),
        }
    }

    /// The registry behind the fixture, for further writes.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The project.
    pub fn project_id(&self) -> &ProjectId {
        &self.project
    }

    /// Resolves `integration` for `environment`.
    pub fn resolve(&self, integration: &str, environment: &str) -> Result<ResolvedEnv, FixtureError> {
        let request = ResolveRequest::new(self.project.clone(), integration.parse()?, environment.parse()?);
        Ok(self.registry.resolve(&request)?)
    }

    /// Resolves `integration` for `environment` and `customer`.
    pub fn resolve_for(
        &self,
        integration: &str,
        environment: &str,
        customer: &str,
    ) -> Result<ResolvedEnv, FixtureError> {
        let request = ResolveRequest::new(self.project.clone(), integration.parse()?, environment.parse()?)
            .for_customer(customer)?;
        Ok(self.registry.resolve(&request)?)
    }

    /// The Connection ID of the connection `name` as `integration` sees it
    /// (rule 2), or of the project-scope one when `integration` is `None`.
    pub fn id(&self, name: &str, integration: Option<&str>) -> Result<ConnectionId, FixtureError> {
        let missing = || FixtureError::NoSuchConnection {
            name: name.to_owned(),
            integration: integration.map(str::to_owned),
        };
        let parsed: ConnectionName = name.parse()?;
        let snapshot = self.registry.snapshot(&self.project).ok_or_else(missing)?;
        let found = match integration {
            Some(i) => crate::resolve::find_connection(
                &snapshot,
                &i.parse::<IntegrationId>()?,
                &crate::model::ConnectionRef::Name(parsed),
            ),
            None => snapshot.by_name(None, &parsed),
        };
        found.map(|c| c.value.id()).ok_or_else(missing)
    }
}

impl Resolver for Fixture {
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError> {
        self.registry.resolve(request)
    }
}
