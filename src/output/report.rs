//! A resolution as plain data, for JSON output and tables.

use serde::Serialize;

use crate::model::{Layer, Scope};
use crate::resolve::{NameSource, ResolvedEnv, ValueSource};

/// Whether a report carries secret values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Secrets {
    /// Secret values are left out (`value` is `None`).
    #[default]
    Redact,
    /// Secret values are included: an explicit exposure.
    Expose,
}

/// One variable of an [`EnvReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReportVar {
    /// The variable.
    pub name: String,
    /// Its value; `None` for a redacted secret.
    pub value: Option<String>,
    /// Whether the value is secret.
    pub secret: bool,
    /// The connection's ID.
    pub connection_id: String,
    /// The connection's name.
    pub connection: String,
    /// `project` or the integration of an integration-scope connection.
    pub scope: String,
    /// The parameter.
    pub param: String,
    /// The value layer or OAuth application that supplied the value, in words.
    pub source: String,
    /// `default`, `environment`, `customer`, `customer-environment` (the
    /// value layer that won, stored or referenced), `template` (a value of
    /// the connection's template), `oauth-app` or `access-token`.
    pub source_kind: &'static str,
    /// For a value read from an external secret store: the reference
    /// (`vault:secret/crm#password`); not secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<String>,
    /// Whether the name is the default `PREFIX_CONNECTION_PARAM` one.
    pub default_name: bool,
}

/// A resolution as plain data: the request and every variable with its
/// provenance. `Serialize`, so a host can print it as JSON.
///
/// ```
/// use connective::fixture::Fixture;
/// use connective::model::Param;
/// use connective::output::{EnvReport, Secrets};
/// let fx = Fixture::project("acme")
///     .connection("crm", |c| c.param(Param::secret("Token").default("t0k3n")))
///     .mappings("orders", |m| m.by_name("crm", [("Token", "CRM_TOKEN")]))
///     .build()?;
/// let report = EnvReport::new(&fx.resolve("orders", "production")?, Secrets::Redact);
/// assert_eq!(report.variables[0].value, None);
/// assert_eq!(report.variables[0].source_kind, "default");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct EnvReport {
    /// The project.
    pub project: String,
    /// The integration.
    pub integration: String,
    /// The environment.
    pub environment: String,
    /// The customer, if any.
    pub customer: Option<String>,
    /// The store revision the answer reflects.
    pub revision: u64,
    /// The variables, in mapping order.
    pub variables: Vec<ReportVar>,
}

impl EnvReport {
    /// The report of `env`, secrets as `secrets` says.
    pub fn new(env: &ResolvedEnv, secrets: Secrets) -> Self {
        let request = env.request();
        let variables = env
            .iter()
            .map(|var| {
                let p = &var.provenance();
                let secret = var.value().is_secret();
                let value = match (secret, secrets) {
                    (true, Secrets::Redact) => None,
                    _ => Some(var.value().expose().to_owned()),
                };
                let source_kind = match (&p.source, p.source.layer()) {
                    (
                        ValueSource::Template { .. }
                        | ValueSource::External {
                            template: Some(_), ..
                        },
                        _,
                    ) => "template",
                    (_, Some(Layer::Default)) => "default",
                    (_, Some(Layer::Environment(_))) => "environment",
                    (_, Some(Layer::Customer(_))) => "customer",
                    (_, Some(Layer::CustomerEnvironment(..))) => "customer-environment",
                    (ValueSource::OAuthApp { .. }, None) => "oauth-app",
                    _ => "access-token",
                };
                let external_ref = match &p.source {
                    ValueSource::External { reference, .. } => Some(reference.to_string()),
                    _ => None,
                };
                ReportVar {
                    name: var.name().to_string(),
                    value,
                    secret,
                    connection_id: p.connection_id.to_string(),
                    connection: p.connection.to_string(),
                    scope: match &p.scope {
                        Scope::Project => "project".to_owned(),
                        Scope::Integration(i) => i.to_string(),
                    },
                    param: p.param.to_string(),
                    source: p.source.to_string(),
                    source_kind,
                    external_ref,
                    default_name: p.name_source == NameSource::Default,
                }
            })
            .collect();
        EnvReport {
            project: request.project.to_string(),
            integration: request.integration.to_string(),
            environment: request.environment.to_string(),
            customer: request.customer.as_ref().map(|c| c.to_string()),
            revision: env.revision().0,
            variables,
        }
    }
}
