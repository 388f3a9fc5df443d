//! What loading, planning and applying a manifest can fail with.
//!
//! Every problem names the file, the path inside it
//! (`connections[2].parameters.ServiceURL`) and the rule broken; all problems
//! of one manifest are reported together. No message ever contains a value of
//! a secret parameter, not even a literal one written there by mistake.

use std::fmt;

use crate::model::{ConnectionId, ConnectionName, IntegrationId, ParamName, ParseError, Scope, SpecProblem};
use crate::registry::RegistryError;
use crate::resolve::Problem;

/// Where in a file a problem is: a path (`connections[2].parameters.ServiceURL`)
/// and, when the parser knows it, a line and column (1-based).
///
/// A map key that is not a valid identifier appears by its position, `#N`
/// (1-based), never by its text: `connections[0].parameters.Key.environments.#2`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The path inside the document; empty for the document itself.
    pub path: String,
    /// Line and column, when known.
    pub line_column: Option<(usize, usize)>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.line_column, self.path.is_empty()) {
            (Some((l, c)), true) => write!(f, "line {l} column {c}"),
            (Some((l, c)), false) => write!(f, "{} (line {l} column {c})", self.path),
            (None, true) => f.write_str("(document)"),
            (None, false) => f.write_str(&self.path),
        }
    }
}

/// Which rule a manifest breaks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Rule {
    /// The text is not a well-formed document of the expected shape (the
    /// parser's message: unknown field, wrong type, bad syntax).
    #[error("{message}")]
    Syntax {
        /// What the parser said.
        message: String,
    },
    /// The format version is not one this crate reads.
    #[error(
        "unsupported manifest version{} (this crate reads version {})",
        if found.is_empty() { String::new() } else { format!(" {found:?}") },
        super::doc::VERSION
    )]
    Version {
        /// The version given, if it looks like one (digits and dots, short);
        /// empty otherwise.
        found: String,
    },
    /// A component configuration's `schemaVersion` (or `apiVersion`) is not
    /// one this crate reads.
    #[error(
        "unsupported component configuration version{} (this crate reads component.yaml 1.0, 1.1 and 1.2, and \
         component-config.yaml core.choreo.dev/v1beta1)",
        if found.is_empty() { String::new() } else { format!(" {found:?}") }
    )]
    ComponentVersion {
        /// The version given, if short; empty otherwise.
        found: String,
    },
    /// A `resourceRef` is not in one of the platform's forms.
    #[error(
        "not a resource reference: use [service:][/<project>/]<component>/<major-version>[/<endpoint>][/<visibility>], \
         thirdparty:<service>/<version> or database:[<server>/]<database>"
    )]
    ResourceRef,
    /// A connection reference's `resourceRef` names another kind of target
    /// than the registry's connection of that name has.
    #[error("connection {connection} reaches {target}, but its resourceRef names a {resource}")]
    TargetMismatch {
        /// The connection.
        connection: ConnectionName,
        /// The kind the resourceRef names.
        resource: &'static str,
        /// The connection's target, described.
        target: String,
    },
    /// Connection references use the platform's fixed variable names, which
    /// the registry's default prefix does not produce.
    #[error(
        "connection references inject {expected}_<CONNECTION>_<PARAMETER>, but this registry's default variable \
         names have {}: give the registry the prefix {expected}, or use serviceReferences with explicit env",
        found.as_ref().map_or("no prefix".to_string(), |p| format!("the prefix {p}"))
    )]
    DefaultPrefix {
        /// The platform's prefix.
        expected: crate::model::EnvVarName,
        /// The registry's.
        found: Option<crate::model::EnvVarName>,
    },
    /// The manifest is larger than the host's [`ManifestLimits`](super::ManifestLimits) allow.
    #[error("{}", too_large(*limit, *max, *found))]
    TooLarge {
        /// Which limit.
        limit: Limit,
        /// Its value.
        max: usize,
        /// The size found, when known.
        found: Option<usize>,
    },
    /// An identifier is invalid. The text is not repeated (it may be a secret
    /// written in the wrong place), in the message or in the error: its
    /// `input` is empty.
    #[error("{}", ident_message(.0))]
    Ident(ParseError),
    /// A secret parameter's value is not a reference.
    #[error(
        "a secret value must be a reference (env:NAME, file:PATH, keep:existing, vault:MOUNT/PATH#KEY \
         or a scheme the host registers), not the secret itself; the value is not repeated here"
    )]
    LiteralSecret,
    /// A secret reference's scheme is not registered with the
    /// [`SecretSources`](super::SecretSources).
    #[error(
        "the secret reference does not start with a registered scheme ({}); the value is not repeated here",
        known.join(":, ") + ":"
    )]
    UnknownScheme {
        /// The schemes that are registered.
        known: Vec<String>,
    },
    /// A secret value names an external secret store (`vault:`,
    /// `openbao:`) but is not a reference to it. The value is not repeated.
    #[error("{0}; the value is not repeated here")]
    BadExternalRef(crate::model::ExternalRefError),
    /// A secret source could not supply a value.
    #[error("secret reference {reference} cannot be read: {reason}")]
    SecretUnavailable {
        /// The reference (`env:NAME`, `file:PATH`): never the value.
        reference: String,
        /// Why.
        reason: String,
    },
    /// `keep:existing` where the registry holds no secret value to keep.
    #[error(
        "keep:existing keeps the registry's current secret value, but the registry has none for {connection}.{param} ({layer})"
    )]
    NothingToKeep {
        /// The connection.
        connection: ConnectionName,
        /// The parameter.
        param: ParamName,
        /// The value layer, described.
        layer: String,
    },
    /// A field only makes sense together with another.
    #[error("{0}")]
    Misplaced(&'static str),
    /// The connection spec breaks a rule of the model.
    #[error("{0}")]
    Spec(SpecProblem),
    /// A connection type or template breaks a rule of the model.
    #[error("{0}")]
    Type(crate::model::TypeProblem),
    /// `keep:existing` for a template's secret the registry's template has
    /// no value of.
    #[error("template {template} has no secret {field} ({layer}) in the registry to keep")]
    NothingToKeepInTemplate {
        /// The template.
        template: crate::model::TemplateName,
        /// The field.
        field: ParamName,
        /// The value layer, described.
        layer: String,
    },
    /// A host type the manifest declares (`hostTypes`, as export writes
    /// them) that the registry's host does not define as declared.
    #[error("host type {name} is not the registry's: {}", if *missing { "the host defines no type of that name" } else { "the host's definition differs" })]
    HostTypeMismatch {
        /// The type.
        name: crate::model::TypeName,
        /// Whether the host has no type of the name (else: it differs).
        missing: bool,
    },
    /// A connection names a template the manifest does not declare.
    #[error("no template named {name} is declared; templates are declared under `templates`")]
    UnknownTemplate {
        /// The template.
        name: crate::model::TemplateName,
    },
    /// Two connections share a name in one scope.
    #[error("connection {name} is declared more than once at {scope} (first at {first})")]
    DuplicateConnection {
        /// The name.
        name: ConnectionName,
        /// The scope.
        scope: Scope,
        /// The path of the first declaration.
        first: String,
    },
    /// A name reference names no connection the integration can see.
    #[error(
        "integration {integration} can see no connection named {name}{}; connections are declared under `connections`",
        scope.as_ref().map_or(String::new(), |s| format!(" at {s}"))
    )]
    UnknownConnection {
        /// The integration.
        integration: IntegrationId,
        /// The name.
        name: ConnectionName,
        /// The pinned scope, if any.
        scope: Option<Scope>,
    },
    /// A mapping names a parameter the connection does not have.
    #[error("connection {connection} has no parameter {param}")]
    UnknownParam {
        /// The connection.
        connection: ConnectionName,
        /// The parameter.
        param: ParamName,
    },
    /// A `connectionConfig` ID is not a connection of this registry visible to
    /// the integration.
    #[error(
        "connection id {id} is not a connection of project {project} visible to integration {integration} in this \
         registry (Connection IDs are local to a registry: refer to the connection by name to apply the manifest \
         elsewhere)"
    )]
    UnknownConnectionId {
        /// The ID.
        id: ConnectionId,
        /// The project.
        project: crate::model::ProjectId,
        /// The integration.
        integration: IntegrationId,
    },
    /// A `connectionConfig` ID names a registry connection the manifest does
    /// not declare (applying would delete it).
    #[error(
        "connection id {id} is connection {name} at {scope}, which this manifest does not declare (applying it would \
         delete the connection)"
    )]
    UndeclaredConnectionId {
        /// The ID.
        id: ConnectionId,
        /// Its name.
        name: ConnectionName,
        /// Its scope.
        scope: Scope,
    },
    /// The mappings would break a resolution rule (a variable produced twice,
    /// a reserved name).
    #[error("{0}")]
    Mapping(Problem),
    /// The registry would refuse the plan's writes (its dry run says why).
    #[error("the registry would refuse this: {0}")]
    Refused(Box<RegistryError>),
}

/// Which of the [`ManifestLimits`](super::ManifestLimits) a manifest exceeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// [`ManifestLimits::max_bytes`](super::ManifestLimits::max_bytes).
    Bytes,
    /// [`ManifestLimits::max_yaml_nodes`](super::ManifestLimits::max_yaml_nodes).
    YamlNodes,
    /// [`ManifestLimits::max_yaml_aliases`](super::ManifestLimits::max_yaml_aliases).
    YamlAliases,
    /// [`ManifestLimits::max_depth`](super::ManifestLimits::max_depth).
    Depth,
}

fn too_large(limit: Limit, max: usize, found: Option<usize>) -> String {
    match (limit, found) {
        (Limit::Bytes, Some(n)) => {
            format!("the manifest is {n} bytes, at most {max} allowed (ManifestLimits::max_bytes)")
        }
        (Limit::Bytes, None) => {
            format!("the manifest is larger than {max} bytes (ManifestLimits::max_bytes)")
        }
        (Limit::YamlNodes, _) => {
            format!("the manifest has more than {max} YAML nodes (ManifestLimits::max_yaml_nodes)")
        }
        (Limit::YamlAliases, _) => format!(
            "the manifest has more than {max} YAML aliases, or too many per anchor (ManifestLimits::max_yaml_aliases)"
        ),
        (Limit::Depth, _) => {
            format!("the manifest nests deeper than {max} levels (ManifestLimits::max_depth)")
        }
    }
}

/// An identifier error without the text it was about.
fn ident_message(e: &ParseError) -> String {
    match e {
        ParseError::Empty { kind } => format!("invalid {kind}: must not be empty"),
        ParseError::TooLong { kind, len, max, .. } => {
            format!("invalid {kind}: {len} characters, at most {max} allowed")
        }
        ParseError::BadChar {
            kind, position, rule, ..
        } => format!(
            "invalid {kind}: the character at position {position} is not allowed ({rule}); the text is not repeated here"
        ),
        ParseError::Reserved { kind, reason, .. } => format!("invalid {kind}: reserved ({reason})"),
    }
}

/// `e` without the text it was about.
pub(crate) fn redacted(e: ParseError) -> ParseError {
    match e {
        ParseError::TooLong { kind, len, max, .. } => ParseError::TooLong {
            kind,
            input: String::new(),
            len,
            max,
        },
        ParseError::BadChar {
            kind,
            found,
            position,
            rule,
            ..
        } => ParseError::BadChar {
            kind,
            input: String::new(),
            found,
            position,
            rule,
        },
        ParseError::Reserved { kind, reason, .. } => ParseError::Reserved {
            kind,
            input: String::new(),
            reason,
        },
        other => other,
    }
}

/// One problem: where and which rule.
#[derive(Debug)]
pub struct ManifestProblem {
    /// Where in the file.
    pub location: Location,
    /// The rule broken.
    pub rule: Rule,
}

impl ManifestProblem {
    pub(crate) fn at(path: impl Into<String>, rule: Rule) -> Self {
        ManifestProblem {
            location: Location {
                path: path.into(),
                line_column: None,
            },
            rule,
        }
    }
}

impl fmt::Display for ManifestProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.rule)
    }
}

/// A manifest that cannot be loaded or planned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("cannot read manifest {file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file name does not say which format it is in.
    #[error("manifest {file}: unknown format (use a .yaml, .yml, .toml or .json file name)")]
    UnknownFormat {
        /// The file.
        file: String,
    },
    /// The manifest breaks rules; every problem is listed, one per line, as
    /// `file: path: rule`.
    #[error("{}", render(file, problems))]
    Invalid {
        /// The file (or the name given to text loaded from memory).
        file: String,
        /// Every problem, in document order.
        problems: Vec<ManifestProblem>,
    },
}

impl ManifestError {
    /// The problems, for [`ManifestError::Invalid`] (empty otherwise).
    pub fn problems(&self) -> &[ManifestProblem] {
        match self {
            ManifestError::Invalid { problems, .. } => problems,
            _ => &[],
        }
    }
}

fn render(file: &str, problems: &[ManifestProblem]) -> String {
    let mut out = String::new();
    if problems.len() > 1 {
        out.push_str(&format!("{file}: {} problems\n", problems.len()));
    }
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{file}: {p}"));
    }
    out
}

/// Applying a plan failed; nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// The registry refused the write (a conflict if it changed since the
    /// plan was made: plan again).
    #[error("applying the manifest of project {project} failed: {source}")]
    Registry {
        /// The project.
        project: crate::model::ProjectId,
        /// Why.
        #[source]
        source: Box<RegistryError>,
    },
    /// The project changed since the plan was made: plan again.
    #[error(
        "project {project} changed since the plan was made (planned at {planned}, now at {current}): plan again"
    )]
    Stale {
        /// The project.
        project: crate::model::ProjectId,
        /// The revision the plan read.
        planned: crate::model::Revision,
        /// The project's revision now.
        current: crate::model::Revision,
    },
}

impl ApplyError {
    /// Whether planning again and applying may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ApplyError::Registry { source, .. } => source.is_retryable(),
            ApplyError::Stale { .. } => true,
        }
    }
}
