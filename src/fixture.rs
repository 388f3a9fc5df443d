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

/// One write of the fixture. The closures run when they are given, so they
/// may borrow the test's data; the builders' problems surface in `build()`.
enum Step {
    Connection(Box<ConnectionBuilder>),
    Mappings(MappingsBuilder),
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
    pub fn connection(mut self, name: &str, f: impl FnOnce(ConnectionBuilder) -> ConnectionBuilder) -> Self {
        let builder = f(ConnectionSpec::project(&self.project, name));
        self.steps.push(Step::Connection(Box::new(builder)));
        self
    }

    /// Adds an integration-scope connection.
    pub fn integration_connection(
        mut self,
        integration: &str,
        name: &str,
        f: impl FnOnce(ConnectionBuilder) -> ConnectionBuilder,
    ) -> Self {
        let builder = f(ConnectionSpec::integration(&self.project, integration, name));
        self.steps.push(Step::Connection(Box::new(builder)));
        self
    }

    /// Sets an integration's mappings.
    pub fn mappings(mut self, integration: &str, f: impl FnOnce(MappingsBuilder) -> MappingsBuilder) -> Self {
        let builder = f(crate::model::Mappings::of(&self.project, integration));
        self.steps.push(Step::Mappings(builder));
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
                        Step::Connection(builder) => {
                            tx.create_connection(builder.build()?)?;
                        }
                        Step::Mappings(builder) => tx.set_mappings(builder.build()?, None)?,
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
        let view = self.registry.view(&self.project);
        let found = match integration {
            Some(i) => view.find_connection(
                &i.parse::<IntegrationId>()?,
                &crate::model::ConnectionRef::Name(parsed),
            ),
            None => view.snapshot.by_name(None, &parsed),
        };
        found.map(|c| c.value.id()).ok_or_else(missing)
    }
}

impl Resolver for Fixture {
    fn resolve(&self, request: &ResolveRequest) -> Result<ResolvedEnv, ResolveError> {
        self.registry.resolve(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Param;

    /// The closures may borrow the test's own data: nothing needs `'static`
    /// or `move`.
    #[test]
    fn closures_borrow_local_test_data() {
        let urls = [
            ("development".to_owned(), "https://dev.crm".to_owned()),
            ("production".to_owned(), "https://crm".to_owned()),
        ];
        let mapping = [("Url", "CRM_URL")];
        let integration = String::from("orders");
        let fx = Fixture::project("acme")
            .connection("crm", |c| {
                let url = urls.iter().fold(Param::plain("Url"), |p, (env, url)| {
                    p.env(env.as_str(), url.as_str())
                });
                c.param(url)
            })
            .integration_connection(&integration, "ledger", |c| {
                c.param(Param::plain("Host").default(urls[0].1.as_str()))
            })
            .mappings(&integration, |m| {
                m.by_name("crm", mapping).by_name_defaults("ledger")
            })
            .build()
            .unwrap();
        let env = fx.resolve(&integration, "production").unwrap();
        assert_eq!(env.expose("CRM_URL"), Some("https://crm"));
        assert_eq!(env.expose("LEDGER_HOST"), Some("https://dev.crm"));
        // The data is still ours.
        assert_eq!(urls.len(), 2);
    }
}
