//! Parameter mappings: which parameters of which connection an integration
//! wants, under which environment variable.

use serde::{Deserialize, Serialize};

use super::connection::{IntoIdent, SpecProblem, ident_or_problem, join};
use super::ident::{
    ConnectionId, ConnectionName, EnvVarName, IntegrationId, ParamName, ParseError, ProjectId,
};

/// How an integration refers to a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionRef {
    /// By name: the most specific visible connection wins (rule 2).
    Name(ConnectionName),
    /// By Connection ID: exactly that connection, if visible.
    Id(ConnectionId),
}

impl std::fmt::Display for ConnectionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectionRef::Name(n) => write!(f, "connection named {n}"),
            ConnectionRef::Id(id) => write!(f, "connection {id}"),
        }
    }
}

/// One `from` parameter `to` environment variable entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnvMap {
    /// The parameter.
    pub from: ParamName,
    /// The environment variable.
    pub to: EnvVarName,
}

/// Which variables a connection's parameters land in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvMapping {
    /// Every parameter as `PREFIX_CONNECTION_PARAM`
    /// ([`EnvVarName::default_for`]); optional parameters without a value are
    /// left out.
    Defaults,
    /// Exactly these entries, in order.
    Explicit(Vec<EnvMap>),
}

/// One connection an integration uses, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionUse {
    /// Which connection.
    pub reference: ConnectionRef,
    /// Which variables.
    pub env: EnvMapping,
}

/// An integration's parameter mappings: the `from`/`to` shape of Choreo's
/// component configuration. Stored as one record per integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mappings {
    project: ProjectId,
    integration: IntegrationId,
    uses: Vec<ConnectionUse>,
}

/// The most connections one integration may use.
pub const MAX_USES: usize = 1024;

impl Mappings {
    /// Starts the mappings of an integration.
    ///
    /// ```
    /// use connective::model::Mappings;
    /// let m = Mappings::of("acme", "orders")
    ///     .by_name("twilio", [("ServiceURL", "TWILIO_URL"), ("ApiKey", "TWILIO_KEY")])
    ///     .by_name_defaults("legacy-crm")
    ///     .build()?;
    /// assert_eq!(m.uses().len(), 2);
    /// # Ok::<(), connective::model::MappingsError>(())
    /// ```
    pub fn of<P: IntoIdent<ProjectId>, I: IntoIdent<IntegrationId>>(
        project: P,
        integration: I,
    ) -> MappingsBuilder {
        MappingsBuilder {
            project: project.into_ident(),
            integration: integration.into_ident(),
            uses: Vec::new(),
        }
    }

    /// Assembles already validated parts.
    pub fn new(project: ProjectId, integration: IntegrationId, uses: Vec<ConnectionUse>) -> Self {
        Mappings {
            project,
            integration,
            uses,
        }
    }

    /// The project.
    pub fn project(&self) -> &ProjectId {
        &self.project
    }
    /// The integration.
    pub fn integration(&self) -> &IntegrationId {
        &self.integration
    }
    /// The connections used, in order.
    pub fn uses(&self) -> &[ConnectionUse] {
        &self.uses
    }
}

type PendingRef = Result<ConnectionRef, ParseError>;
type PendingMap = Vec<(Result<ParamName, ParseError>, Result<EnvVarName, ParseError>)>;

/// Builds [`Mappings`]; every problem is reported by [`MappingsBuilder::build`].
#[derive(Debug, Clone)]
pub struct MappingsBuilder {
    project: Result<ProjectId, ParseError>,
    integration: Result<IntegrationId, ParseError>,
    uses: Vec<(PendingRef, Option<PendingMap>)>,
}

impl MappingsBuilder {
    fn push<F, T>(mut self, reference: PendingRef, entries: Option<impl IntoIterator<Item = (F, T)>>) -> Self
    where
        F: IntoIdent<ParamName>,
        T: IntoIdent<EnvVarName>,
    {
        let entries = entries.map(|e| {
            e.into_iter()
                .map(|(f, t)| (f.into_ident(), t.into_ident()))
                .collect()
        });
        self.uses.push((reference, entries));
        self
    }

    /// Uses the connection named `name` with explicit `(from, to)` entries.
    pub fn by_name<N, F, T>(self, name: N, entries: impl IntoIterator<Item = (F, T)>) -> Self
    where
        N: IntoIdent<ConnectionName>,
        F: IntoIdent<ParamName>,
        T: IntoIdent<EnvVarName>,
    {
        self.push(name.into_ident().map(ConnectionRef::Name), Some(entries))
    }

    /// Uses the connection named `name` with default variable names.
    pub fn by_name_defaults<N: IntoIdent<ConnectionName>>(self, name: N) -> Self {
        self.push::<&str, &str>(
            name.into_ident().map(ConnectionRef::Name),
            None::<Vec<(&str, &str)>>,
        )
    }

    /// Uses the connection with ID `id` with explicit `(from, to)` entries.
    pub fn by_id<N, F, T>(self, id: N, entries: impl IntoIterator<Item = (F, T)>) -> Self
    where
        N: IntoIdent<ConnectionId>,
        F: IntoIdent<ParamName>,
        T: IntoIdent<EnvVarName>,
    {
        self.push(id.into_ident().map(ConnectionRef::Id), Some(entries))
    }

    /// Uses the connection with ID `id` with default variable names.
    pub fn by_id_defaults<N: IntoIdent<ConnectionId>>(self, id: N) -> Self {
        self.push::<&str, &str>(id.into_ident().map(ConnectionRef::Id), None::<Vec<(&str, &str)>>)
    }

    /// Appends an already built use.
    pub fn with_use(mut self, item: ConnectionUse) -> Self {
        let entries = match item.env {
            EnvMapping::Defaults => None,
            EnvMapping::Explicit(e) => Some(e.into_iter().map(|m| (Ok(m.from), Ok(m.to))).collect()),
        };
        self.uses.push((Ok(item.reference), entries));
        self
    }

    /// Validates every identifier and returns the mappings, or every problem.
    /// (Whether the references resolve, and variable collisions across
    /// connections, are checked against the catalog by the registry and the
    /// resolver.)
    pub fn build(self) -> Result<Mappings, MappingsError> {
        let mut problems = Vec::new();
        let project = ident_or_problem(self.project, "project", &mut problems);
        let integration = ident_or_problem(self.integration, "integration", &mut problems);
        if self.uses.len() > MAX_USES {
            problems.push(SpecProblem::TooLong {
                field: "connections".into(),
                len: self.uses.len(),
                max: MAX_USES,
            });
        }
        let mut uses = Vec::with_capacity(self.uses.len());
        for (i, (reference, entries)) in self.uses.into_iter().enumerate() {
            let reference = ident_or_problem(reference, format!("connections[{i}].reference"), &mut problems);
            let env = match entries {
                None => Some(EnvMapping::Defaults),
                Some(entries) => {
                    let mut out = Vec::with_capacity(entries.len());
                    for (j, (from, to)) in entries.into_iter().enumerate() {
                        match (from, to) {
                            (Ok(from), Ok(to)) => out.push(EnvMap { from, to }),
                            (from, to) => {
                                if let Err(error) = from {
                                    problems.push(SpecProblem::Ident {
                                        field: format!("connections[{i}].env[{j}].from"),
                                        error,
                                    });
                                }
                                if let Err(error) = to {
                                    problems.push(SpecProblem::Ident {
                                        field: format!("connections[{i}].env[{j}].to"),
                                        error,
                                    });
                                }
                            }
                        }
                    }
                    Some(EnvMapping::Explicit(out))
                }
            };
            if let (Some(reference), Some(env)) = (reference, env) {
                uses.push(ConnectionUse { reference, env });
            }
        }
        match (project, integration) {
            (Some(project), Some(integration)) if problems.is_empty() => Ok(Mappings {
                project,
                integration,
                uses,
            }),
            _ => Err(MappingsError { problems }),
        }
    }
}

/// Mappings that failed validation, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid mappings: {}", join(problems))]
pub struct MappingsError {
    /// Every problem.
    pub problems: Vec<SpecProblem>,
}
