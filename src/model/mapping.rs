//! Parameter mappings: which parameters of which connection an integration
//! wants, under which environment variable.

use serde::{Deserialize, Serialize};

use super::ident::{
    ConnectionId, ConnectionName, EnvVarName, IntegrationId, ParamName, ParseError, ProjectId,
};
use super::problem::{IntoIdent, SpecProblem, ident_or_problem, join, label_of};

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

/// One entry of an explicit mapping: parameter `from` is injected as
/// environment variable `to`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EnvEntry {
    /// The parameter.
    pub from: ParamName,
    /// The environment variable.
    pub to: EnvVarName,
}

/// Which variables a connection's parameters land in: every parameter under
/// its default name, or exactly the [`EnvEntry`]s given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvMapping {
    /// Every parameter as `PREFIX_CONNECTION_PARAM`
    /// ([`EnvVarName::default_for`]); optional parameters without a value are
    /// left out.
    Defaults,
    /// Exactly these entries, in order.
    Explicit(Vec<EnvEntry>),
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
///
/// Every `Mappings` is within the bounds ([`MAX_USES`] connections,
/// [`MAX_ENTRIES`] explicit entries): the builder, [`Mappings::new`] and
/// deserialization all check them. Whether the references resolve is checked
/// against the catalog by the registry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "MappingsFields")]
pub struct Mappings {
    project: ProjectId,
    integration: IntegrationId,
    uses: Vec<ConnectionUse>,
}

/// The most connections one integration may use.
pub const MAX_USES: usize = 1024;

/// The most explicit `from`/`to` entries one integration's mappings may have,
/// over all its connections.
pub const MAX_ENTRIES: usize = 4096;

/// **The bounds of an integration's mappings**, checked by every way
/// [`Mappings`] are made: `uses` connections with `entries` explicit entries
/// in all.
fn check_size(uses: usize, entries: usize, problems: &mut Vec<SpecProblem>) {
    if uses > MAX_USES {
        problems.push(SpecProblem::TooMany {
            field: "connections".into(),
            count: uses,
            max: MAX_USES,
        });
    }
    if entries > MAX_ENTRIES {
        problems.push(SpecProblem::TooMany {
            field: "env entries".into(),
            count: entries,
            max: MAX_ENTRIES,
        });
    }
}

fn explicit_entries(uses: &[ConnectionUse]) -> usize {
    uses.iter()
        .map(|u| match &u.env {
            EnvMapping::Defaults => 0,
            EnvMapping::Explicit(e) => e.len(),
        })
        .sum()
}

/// Serialized [`Mappings`] before their bounds are checked.
#[derive(Deserialize)]
#[serde(rename = "Mappings")]
struct MappingsFields {
    project: ProjectId,
    integration: IntegrationId,
    uses: Vec<ConnectionUse>,
}

impl TryFrom<MappingsFields> for Mappings {
    type Error = MappingsError;
    fn try_from(f: MappingsFields) -> Result<Self, MappingsError> {
        Mappings::new(f.project, f.integration, f.uses)
    }
}

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

    /// Assembles already parsed parts, checking the bounds ([`MAX_USES`],
    /// [`MAX_ENTRIES`]).
    pub fn new(
        project: ProjectId,
        integration: IntegrationId,
        uses: Vec<ConnectionUse>,
    ) -> Result<Self, MappingsError> {
        let mut problems = Vec::new();
        check_size(uses.len(), explicit_entries(&uses), &mut problems);
        if problems.is_empty() {
            Ok(Mappings {
                project,
                integration,
                uses,
            })
        } else {
            Err(MappingsError {
                project: project.to_string(),
                integration: integration.to_string(),
                problems,
            })
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
        let project_label = label_of(&self.project);
        let integration_label = label_of(&self.integration);
        let project = ident_or_problem(self.project, "project", &mut problems);
        let integration = ident_or_problem(self.integration, "integration", &mut problems);
        let entries = self
            .uses
            .iter()
            .map(|(_, e)| e.as_ref().map_or(0, Vec::len))
            .sum();
        check_size(self.uses.len(), entries, &mut problems);
        let mut uses = Vec::with_capacity(self.uses.len());
        for (i, (reference, entries)) in self.uses.into_iter().enumerate() {
            let reference = ident_or_problem(reference, format!("connections[{i}].reference"), &mut problems);
            let env = match entries {
                None => Some(EnvMapping::Defaults),
                Some(entries) => {
                    let mut out = Vec::with_capacity(entries.len());
                    for (j, (from, to)) in entries.into_iter().enumerate() {
                        match (from, to) {
                            (Ok(from), Ok(to)) => out.push(EnvEntry { from, to }),
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
            _ => Err(MappingsError {
                project: project_label,
                integration: integration_label,
                problems,
            }),
        }
    }
}

/// Mappings that failed validation, with every problem found, and the
/// integration (and project) they are for.
///
/// ```
/// use connective::model::Mappings;
/// let err = Mappings::of("acme", "orders")
///     .by_name("twilio", [("ApiKey", "1PASSWORD")])
///     .build()
///     .unwrap_err();
/// assert_eq!(err.integration, "orders");
/// assert!(err.to_string().starts_with(
///     "invalid mappings for integration orders of project acme: connections[0].env[0].to: "
/// ));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid mappings for integration {} of project {}: {}",
    or_quoted(integration),
    or_quoted(project),
    join(problems)
)]
#[non_exhaustive]
pub struct MappingsError {
    /// The project as given: its ID, or the text given (shortened) if it is
    /// not a valid one (`""` if it was empty).
    pub project: String,
    /// The integration as given: its ID, or the text given (shortened) if it
    /// is not a valid one (`""` if it was empty).
    pub integration: String,
    /// Every problem.
    pub problems: Vec<SpecProblem>,
}

/// The label, or `""` for an empty one, so the message still reads.
fn or_quoted(label: &str) -> std::borrow::Cow<'_, str> {
    if label.is_empty() {
        "\"\"".into()
    } else {
        label.into()
    }
}
