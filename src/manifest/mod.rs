//! Declarative manifests: one project's connections and its integrations'
//! mappings in a YAML, TOML or JSON file kept in Git.
//!
//! The life of a manifest:
//! 1. **Load** ([`Manifest::load`], [`Manifest::parse`]): the text is parsed
//!    into the [`Document`] types and validated; every problem is reported at
//!    once with the file, the path inside it (`connections[2].parameters.ServiceURL`)
//!    and the rule broken ([`ManifestError`]). Secret values must be
//!    references ([`SecretRef`]): a literal secret is refused, and never
//!    repeated in the message.
//! 2. **Plan** ([`Manifest::plan`]): the secret references are resolved through
//!    [`SecretSources`] and the manifest is compared with a registry by stable
//!    keys (project, scope, name) — never by Connection ID, which is local to a
//!    registry. The [`Plan`] lists what would be created, updated, deleted or
//!    left unchanged, per connection and per integration's mappings. The
//!    manifest is authoritative for its project: connections and mappings of
//!    the project that it does not declare are deleted.
//! 3. **Apply** ([`Plan::apply`]): one atomic [`Registry::write`](crate::registry::Registry::write)
//!    naming the versions the plan read; if the registry changed since, nothing
//!    is written and the error is a conflict. Applying the same manifest again
//!    changes nothing.
//! 4. **Export** ([`export`]): a project back to a [`Document`], secrets as
//!    `keep:existing` or references of the host's choosing, never plaintext.
//!    Loading and planning an export against the registry it came from shows
//!    nothing to change.
//!
//! Mappings follow Choreo's shape: per connection a reference — `connection:
//! NAME` or Choreo's `connectionConfig: ID` — and `env: [{from, to}, ...]`.
//! A `connectionConfig` ID must be a connection of the registry the manifest is
//! applied to; export writes names instead (pinned with `scope:` where a name
//! alone would pick another connection), so exported manifests apply anywhere.
//!
//! ```
//! use connective::manifest::{Format, Manifest, SecretSources};
//! use connective::prelude::*;
//!
//! let manifest = Manifest::parse(r#"
//! project: acme
//! connections:
//!   - name: twilio
//!     target: { external: twilio }
//!     auth: api-key
//!     parameters:
//!       ServiceURL: { default: "https://api.twilio.com" }
//!       ApiKey: { secret: true, default: "env:CONNECTIVE_SECRET_DOC_TWILIO_KEY" }
//! integrations:
//!   orders:
//!     connections:
//!       - connection: twilio
//!         env:
//!           - { from: ServiceURL, to: SMS_URL }
//!           - { from: ApiKey, to: SMS_KEY }
//! "#, Format::Yaml, "acme.yaml")?;
//!
//! # unsafe { std::env::set_var("CONNECTIVE_SECRET_DOC_TWILIO_KEY", "k-123") };
//! let registry = Registry::in_memory();
//! let plan = manifest.plan(&registry, &SecretSources::standard())?;
//! assert_eq!(plan.summary().create, 2); // one connection, one integration's mappings
//! plan.apply(&registry)?;
//! assert!(manifest.plan(&registry, &SecretSources::standard())?.is_empty());
//!
//! let env = registry.resolve(&ResolveRequest::parse("acme", "orders", "production")?)?;
//! assert_eq!(env.get("SMS_KEY").unwrap().value().expose(), "k-123");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod choreo;
mod doc;
mod error;
mod export;
mod plan;
#[cfg(feature = "schema")]
mod schema;
mod secret;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

pub use choreo::{
    ComponentConfig, ComponentImport, ConnectionEnv, ConnectionReference, ImportOptions, ResourceRef,
    ServiceReference,
};
pub use doc::{
    AuthDoc, BuilderDoc, ClientDoc, ConnectionDoc, CustomerDoc, CustomerLayersDoc, DataTypeDoc, Document,
    EnteredByDoc, EnvEntryDoc, FieldDoc, FieldVisibilityDoc, IntegrationDoc, ParamDoc, PlatformDoc, ScopeDoc,
    TargetDoc, TargetKindDoc, TemplateDoc, TemplateFieldDoc, Text, TypeDoc, UniqueMap, UseDoc, VERSION,
    VisibilityDoc,
};
pub use error::{ApplyError, Limit, Location, ManifestError, ManifestProblem, Rule};
pub use export::{DanglingReference, ExportError, ExportOptions, SecretHolder, SecretSlot, export};
pub use plan::{
    Action, Applied, ConnectionChange, MappingsChange, Plan, Summary, TemplateChange, TypeChange,
};
#[cfg(feature = "schema")]
pub use schema::{SCHEMA_PATH, schema, schema_text};
pub use secret::{
    EnvSource, FileSource, KEEP, NotAReference, SchemeError, SecretRef, SecretSource, SecretSources,
    SourceContext, SourceError,
};

use crate::model::{
    AuthScheme, BuilderAccess, ConnectionId, ConnectionName, ConnectionSpec, ConnectionTemplate,
    ConnectionType, CustomerId, DataType, EndpointVisibility, EnteredBy, EnvEntry, EnvVarName, Environment,
    ExternalRef, Field, IntegrationId, Layer, MAX_ENTRIES, MAX_USES, OAuthClient, Param, ParamName,
    ParseError, PlatformTarget, ProjectId, Requirement, Scope, SecretEntry, SpecProblem, StoreName, Target,
    TargetKind, TemplateField, TemplateName, Tenancy, TypeName, Visibility,
};

/// The text formats a manifest can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// TOML (`.toml`).
    Toml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format a file name's extension says.
    ///
    /// ```
    /// use connective::manifest::Format;
    /// assert_eq!(Format::from_path("acme.yml"), Some(Format::Yaml));
    /// assert_eq!(Format::from_path("acme.txt"), None);
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Option<Format> {
        let ext = path.as_ref().extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "yaml" | "yml" => Some(Format::Yaml),
            "toml" => Some(Format::Toml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }

    /// Parses a format name: `yaml`, `yml`, `toml` or `json`.
    pub fn from_name(name: &str) -> Option<Format> {
        Format::from_path(format!("x.{name}"))
    }
}

/// The biggest manifest text accepted by default (16 MiB).
pub const MAX_MANIFEST_LEN: usize = 16 * 1024 * 1024;

/// How much work a manifest may cost to read: a host reading manifests from
/// people it does not fully trust keeps these; a host loading its own large
/// manifests raises them.
///
/// | limit | default | bounds |
/// | --- | --- | --- |
/// | [`max_bytes`](ManifestLimits::max_bytes) | 16 MiB | the text, in every format |
/// | [`max_yaml_nodes`](ManifestLimits::max_yaml_nodes) | 1,000,000 | YAML mappings, sequences and scalars, aliases expanded (about 45,000 typical connections) |
/// | [`max_yaml_aliases`](ManifestLimits::max_yaml_aliases) | 10,000 | YAML aliases (`*name`): what makes a small file expand |
/// | [`max_depth`](ManifestLimits::max_depth) | 64 | YAML nesting (JSON and TOML have their parsers' own limits, 128) |
///
/// Past a limit, loading fails with [`Rule::TooLarge`] naming it.
///
/// ```
/// use connective::manifest::{LoadOptions, ManifestLimits};
/// let big = LoadOptions::new().limits(
///     ManifestLimits::default().max_bytes(64 << 20).max_yaml_nodes(20_000_000),
/// );
/// # let _ = big;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManifestLimits {
    /// The most bytes of text.
    pub max_bytes: usize,
    /// The most YAML nodes.
    pub max_yaml_nodes: usize,
    /// The most YAML aliases.
    pub max_yaml_aliases: usize,
    /// The deepest YAML nesting.
    pub max_depth: usize,
}

impl Default for ManifestLimits {
    fn default() -> Self {
        ManifestLimits {
            max_bytes: MAX_MANIFEST_LEN,
            max_yaml_nodes: 1_000_000,
            max_yaml_aliases: 10_000,
            max_depth: 64,
        }
    }
}

impl ManifestLimits {
    /// Sets [`ManifestLimits::max_bytes`].
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }
    /// Sets [`ManifestLimits::max_yaml_nodes`].
    pub fn max_yaml_nodes(mut self, n: usize) -> Self {
        self.max_yaml_nodes = n;
        self
    }
    /// Sets [`ManifestLimits::max_yaml_aliases`].
    pub fn max_yaml_aliases(mut self, n: usize) -> Self {
        self.max_yaml_aliases = n;
        self
    }
    /// Sets [`ManifestLimits::max_depth`].
    pub fn max_depth(mut self, n: usize) -> Self {
        self.max_depth = n;
        self
    }
}

/// How a manifest is loaded: its [`ManifestLimits`], which secret
/// reference schemes it may use (by default `env`, `file` and `keep`; a host
/// with its own sources passes them to [`LoadOptions::sources`]), and which
/// schemes name external secret stores (by default `vault` and `openbao`).
/// A secret value whose scheme is not accepted is refused at load, and never
/// repeated.
///
/// A reference to an external store
/// ([`ExternalRef`],
/// `vault:secret/crm#password`) is not read when the manifest is applied:
/// it is kept as a reference in the registry, and resolution reads the
/// store's current value from the host's cache.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    limits: ManifestLimits,
    schemes: BTreeSet<String>,
    external: BTreeSet<StoreName>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            limits: ManifestLimits::default(),
            schemes: SecretSources::standard().schemes().into_iter().collect(),
            external: [StoreName::vault(), StoreName::openbao()].into_iter().collect(),
        }
    }
}

impl LoadOptions {
    /// The default limits, and the schemes `env`, `file` and `keep`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: ManifestLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Accepts exactly the schemes `sources` knows (and `keep`).
    pub fn sources(mut self, sources: &SecretSources) -> Self {
        self.schemes = sources.schemes().into_iter().collect();
        self
    }

    /// Takes secret values whose scheme is one of `stores` as references to
    /// external secret stores, kept as references (default: `vault` and
    /// `openbao`). A scheme also given as a source
    /// ([`LoadOptions::sources`]) is read at apply by that source instead.
    pub fn external_stores(mut self, stores: impl IntoIterator<Item = StoreName>) -> Self {
        self.external = stores.into_iter().collect();
        self
    }

    /// The schemes taken as external secret stores, sorted.
    pub fn get_external_stores(&self) -> Vec<StoreName> {
        self.external.iter().cloned().collect()
    }

    /// The limits.
    pub fn get_limits(&self) -> &ManifestLimits {
        &self.limits
    }

    /// The accepted schemes, sorted.
    pub fn schemes(&self) -> Vec<String> {
        self.schemes.iter().cloned().collect()
    }
}

/// Parses text into the [`Document`] types with the default limits, without
/// validating identifiers and secret references (see [`Manifest::from_document`]).
pub fn parse_document(text: &str, format: Format, file: &str) -> Result<Document, ManifestError> {
    parse_document_with(text, format, file, &ManifestLimits::default())
}

/// [`parse_document`] within `limits`.
pub fn parse_document_with(
    text: &str,
    format: Format,
    file: &str,
    limits: &ManifestLimits,
) -> Result<Document, ManifestError> {
    let invalid = |path: String, line_column: Option<(usize, usize)>, rule: Rule| ManifestError::Invalid {
        file: file.to_owned(),
        problems: vec![ManifestProblem {
            location: Location { path, line_column },
            rule,
        }],
    };
    let syntax = |path: String, line_column: Option<(usize, usize)>, message: String| {
        invalid(path, line_column, Rule::Syntax { message })
    };
    if text.len() > limits.max_bytes {
        return Err(invalid(
            String::new(),
            None,
            Rule::TooLarge {
                limit: Limit::Bytes,
                max: limits.max_bytes,
                found: Some(text.len()),
            },
        ));
    }
    match format {
        Format::Yaml => parse_yaml(text, file, limits),
        Format::Toml => {
            let de = toml::Deserializer::parse(text).map_err(|e| toml_error(file, &e, text))?;
            serde_path_to_error::deserialize::<_, Document>(de).map_err(|e| {
                let inner_message = e.inner().message().to_owned();
                let (message, key) = redact_message(&inner_message);
                let path = path_text(e.path(), key);
                let inner = e.into_inner();
                let lc = inner.span().map(|s| line_column(text, s.start));
                syntax(path, lc, message)
            })
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            let result = doc::with_any_scalars(|| serde_path_to_error::deserialize::<_, Document>(&mut de));
            let doc = result.map_err(|e| {
                let (message, key) = redact_message(&json_text(e.inner()));
                let path = path_text(e.path(), key);
                let inner = e.into_inner();
                let lc = (inner.line() > 0).then(|| (inner.line(), inner.column()));
                syntax(path, lc, message)
            })?;
            de.end()
                .map_err(|e| syntax(String::new(), Some((e.line(), e.column())), json_message(&e)))?;
            Ok(doc)
        }
    }
}

/// Parses YAML into `T` within `limits`: no source snippets in messages
/// (they could show a literal secret), the budget from `limits`, repeated
/// keys passed on to `UniqueMap` (which reports them).
pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    limits: &ManifestLimits,
) -> Result<T, ManifestError> {
    let invalid = |path: String, line_column: Option<(usize, usize)>, rule: Rule| ManifestError::Invalid {
        file: file.to_owned(),
        problems: vec![ManifestProblem {
            location: Location { path, line_column },
            rule,
        }],
    };
    if text.len() > limits.max_bytes {
        return Err(invalid(
            String::new(),
            None,
            Rule::TooLarge {
                limit: Limit::Bytes,
                max: limits.max_bytes,
                found: Some(text.len()),
            },
        ));
    }
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = limits.max_yaml_nodes;
    budget.max_events = limits.max_yaml_nodes.saturating_mul(2).saturating_add(16);
    budget.max_aliases = limits.max_yaml_aliases;
    budget.max_depth = limits.max_depth;
    budget.max_total_scalar_bytes = limits.max_bytes;
    budget.max_reader_input_bytes = Some(limits.max_bytes);
    let options = serde_saphyr::options! {
        with_snippet: false,
        crop_radius: 0,
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
        budget: Some(budget),
    };
    let mut failed_at: Option<String> = None;
    let result = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            let (_, key) = redact_message(&e.inner().to_string());
            failed_at = Some(path_text(e.path(), key));
            e.into_inner()
        })
    });
    result.map_err(|e| {
        if let serde_saphyr::Error::Budget { breach, .. } = &e
            && let Some(rule) = budget_rule(breach, limits)
        {
            return invalid(String::new(), yaml_location(&e), rule);
        }
        invalid(
            failed_at.unwrap_or_default(),
            yaml_location(&e),
            Rule::Syntax {
                message: yaml_message(&e),
            },
        )
    })
}

/// Reads at most `max` bytes of `path` as text, whatever size it reports.
pub(crate) fn read_bounded(path: &Path, file: &str, max: usize) -> Result<String, ManifestError> {
    use std::io::Read;
    let read = |source| ManifestError::Read {
        file: file.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    // One byte past `max` tells a file that is too large; `usize::MAX`
    // ("no limit") reads it all (`+ 1` overflowed: a panic, or in a
    // release build a limit of 0 bytes, an empty manifest).
    std::fs::File::open(path)
        .map_err(read)?
        .take(u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() > max {
        return Err(ManifestError::Invalid {
            file: file.to_owned(),
            problems: vec![ManifestProblem::at(
                "",
                Rule::TooLarge {
                    limit: Limit::Bytes,
                    max,
                    found: None,
                },
            )],
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        read(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            e.utf8_error(),
        ))
    })
}

/// The path serde reached, as `connections[2].parameters.Key`. With
/// `drop_key`, the last map key is left out: it is the unknown field the
/// error is about, which is not repeated (it may be a secret).
fn path_text(path: &serde_path_to_error::Path, drop_key: bool) -> String {
    use serde_path_to_error::Segment;
    let mut segments: Vec<&Segment> = path.iter().collect();
    // `?` stands for a segment serde could not name (a map key being read).
    while matches!(segments.last(), Some(Segment::Unknown)) {
        segments.pop();
    }
    if drop_key && matches!(segments.last(), Some(Segment::Map { .. })) {
        segments.pop();
    }
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn yaml_location(e: &serde_saphyr::Error) -> Option<(usize, usize)> {
    e.location()
        .filter(|l| l.line() > 0)
        .map(|l| (l.line() as usize, l.column() as usize))
}

fn yaml_message(e: &serde_saphyr::Error) -> String {
    let text = e.without_snippet().to_string();
    // The location is reported separately.
    redact_message(match text.split_once(" at line ") {
        Some((head, _)) => head,
        None => &text,
    })
    .0
}

fn json_text(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.split_once(" at line ") {
        Some((head, _)) => head.to_owned(),
        None => text,
    }
}

fn json_message(e: &serde_json::Error) -> String {
    redact_message(&json_text(e)).0
}

/// The rule a YAML budget breach breaks, for the limits the host sets.
fn budget_rule(breach: &serde_saphyr::budget::BudgetBreach, limits: &ManifestLimits) -> Option<Rule> {
    use serde_saphyr::budget::BudgetBreach as B;
    let (limit, max) = match breach {
        B::Nodes { .. } | B::Events { .. } => (Limit::YamlNodes, limits.max_yaml_nodes),
        B::Aliases { .. } | B::AliasAnchorRatio { .. } => (Limit::YamlAliases, limits.max_yaml_aliases),
        B::Depth { .. } => (Limit::Depth, limits.max_depth),
        B::ScalarBytes { .. } | B::InputBytes { .. } => (Limit::Bytes, limits.max_bytes),
        _ => return None,
    };
    Some(Rule::TooLarge {
        limit,
        max,
        found: None,
    })
}

/// Serde's messages repeat what they found: the text of a value ("invalid
/// type: string \"...\""), an unknown field's name, an unknown variant. Any
/// of them may be a secret written in the wrong place, so it is dropped.
/// Returns the message, and whether it was about an unknown field (whose
/// name then ends the path, and is dropped there too).
fn redact_message(message: &str) -> (String, bool) {
    for kind in ["invalid type: ", "invalid value: "] {
        for what in ["string", "integer", "floating point", "boolean", "character"] {
            if let Some(rest) = message.strip_prefix(kind)
                && let Some(found) = rest.strip_prefix(what)
                && found.starts_with(' ')
                && let Some(i) = rest.rfind(", expected")
            {
                return (format!("{kind}{what} (not repeated here){}", &rest[i..]), false);
            }
        }
    }
    for (lead, field) in [("unknown field `", true), ("unknown variant `", false)] {
        if let Some(start) = message.find(lead) {
            let after = &message[start + lead.len()..];
            let tail = ["`, expected", "`, there are no"]
                .iter()
                .filter_map(|end| after.rfind(end).map(|i| &after[i + 1..]))
                .next()
                .unwrap_or("");
            let what = lead.trim_end_matches(" `");
            return (
                format!("{}{what} (not repeated here){tail}", &message[..start]),
                field,
            );
        }
    }
    (message.to_owned(), false)
}

fn toml_error(file: &str, e: &toml::de::Error, text: &str) -> ManifestError {
    ManifestError::Invalid {
        file: file.to_owned(),
        problems: vec![ManifestProblem {
            location: Location {
                path: String::new(),
                line_column: e.span().map(|s| line_column(text, s.start)),
            },
            rule: Rule::Syntax {
                message: redact_message(e.message()).0,
            },
        }],
    }
}

/// A parameter value as the manifest gives it. `Debug` shows a reference
/// (only references of accepted schemes get here) but not a plain value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum ValueSpec {
    /// A plain value.
    Plain(String),
    /// A reference to a secret, read when the manifest is applied.
    Secret(SecretRef),
    /// A reference to a secret in an external store, kept as a reference.
    External(ExternalRef),
}

impl fmt::Debug for ValueSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueSpec::Plain(v) => write!(f, "Plain({} bytes)", v.len()),
            ValueSpec::Secret(r) => write!(f, "Secret({r})"),
            ValueSpec::External(r) => write!(f, "External({r})"),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DeclaredValue {
    pub(crate) layer: Layer,
    pub(crate) path: String,
    pub(crate) value: ValueSpec,
}

#[derive(Debug, Clone)]
pub(crate) struct DeclaredParam {
    pub(crate) name: ParamName,
    pub(crate) secret: bool,
    pub(crate) description: String,
    pub(crate) requirement: Requirement,
    pub(crate) tenancy: Tenancy,
    pub(crate) values: Vec<DeclaredValue>,
}

#[derive(Debug, Clone)]
pub(crate) struct DeclaredConnection {
    pub(crate) path: String,
    pub(crate) scope: Scope,
    pub(crate) name: ConnectionName,
    pub(crate) description: String,
    pub(crate) target: Target,
    pub(crate) auth: AuthScheme,
    pub(crate) connection_type: Option<TypeName>,
    pub(crate) template: Option<TemplateName>,
    pub(crate) builder: BuilderAccess,
    pub(crate) params: Vec<DeclaredParam>,
}

/// A connection type the manifest declares, checked whole.
#[derive(Debug, Clone)]
pub(crate) struct DeclaredType {
    pub(crate) path: String,
    pub(crate) definition: ConnectionType,
}

/// One field of a declared template.
#[derive(Debug, Clone)]
pub(crate) struct DeclaredTemplateField {
    pub(crate) name: ParamName,
    pub(crate) secret: bool,
    pub(crate) hidden: bool,
    pub(crate) overridable: bool,
    pub(crate) values: Vec<DeclaredValue>,
}

/// A template the manifest declares; its secret values are references until
/// the manifest is planned.
#[derive(Debug, Clone)]
pub(crate) struct DeclaredTemplate {
    pub(crate) path: String,
    pub(crate) name: TemplateName,
    pub(crate) connection_type: TypeName,
    pub(crate) label: Option<String>,
    pub(crate) description: String,
    pub(crate) fields: Vec<DeclaredTemplateField>,
}

impl DeclaredTemplate {
    /// The template, with the secret values of references read from
    /// `secret` (`None`: left empty, for checks that do not need them).
    pub(crate) fn template(
        &self,
        project: &ProjectId,
        mut secret: impl FnMut(&DeclaredValue) -> Option<String>,
    ) -> Result<ConnectionTemplate, crate::model::TypeError> {
        let mut builder = ConnectionTemplate::builder(project, &self.name, &self.connection_type)
            .describe(self.description.clone());
        if let Some(label) = &self.label {
            builder = builder.label(label.clone());
        }
        for f in &self.fields {
            let mut fb = if f.secret {
                TemplateField::secret(&f.name)
            } else {
                TemplateField::plain(&f.name)
            };
            for v in &f.values {
                // A reference to an external store stays one; other
                // secrets are read now.
                if let ValueSpec::External(r) = &v.value {
                    fb = match &v.layer {
                        Layer::Environment(e) => fb.env_ref(e, r.clone()),
                        _ => fb.default_ref(r.clone()),
                    };
                    continue;
                }
                let value = match &v.value {
                    ValueSpec::Plain(s) => s.clone(),
                    _ => secret(v).unwrap_or_default(),
                };
                fb = match &v.layer {
                    Layer::Environment(e) => fb.env(e, value),
                    _ => fb.default(value),
                };
            }
            if f.hidden {
                fb = fb.hidden();
            }
            if f.overridable {
                fb = fb.overridable();
            }
            builder = builder.field(fb);
        }
        builder.build()
    }
}

/// A type's field as the model builds it.
fn field_builder(name: &str, f: &FieldDoc) -> crate::model::FieldBuilder {
    let data_type = match &f.data_type {
        DataTypeDoc::String => DataType::String,
        DataTypeDoc::Secret => DataType::Secret,
        DataTypeDoc::Url => DataType::Url,
        DataTypeDoc::Integer => DataType::Integer,
        DataTypeDoc::Boolean => DataType::Boolean,
        DataTypeDoc::Picklist(choices) => DataType::picklist(choices.iter().cloned()),
        DataTypeDoc::Text => DataType::Text,
    };
    let mut b = Field::of_type(name, data_type).describe(f.description.clone());
    if let Some(label) = &f.label {
        b = b.label(label.clone());
    }
    if f.optional {
        b = b.optional();
    }
    if let Some(by) = f.per_customer {
        b = b.per_customer(match by {
            EnteredByDoc::Organization => EnteredBy::Organization,
            EnteredByDoc::Customer => EnteredBy::Customer,
        });
    }
    if let Some(v) = f.visibility {
        b = b.visibility(match v {
            FieldVisibilityDoc::Organization => Visibility::Organization,
            FieldVisibilityDoc::Customer => Visibility::Customer,
            FieldVisibilityDoc::Programmatic => Visibility::Programmatic,
        });
    }
    if let Some(d) = &f.default {
        b = b.default(d.as_str());
    }
    if let Some(e) = &f.example {
        b = b.example(e.as_str());
    }
    if let Some(p) = &f.pattern {
        b = b.pattern(p.clone());
    }
    if let Some(min) = f.min {
        b = b.min(min);
    }
    if let Some(max) = f.max {
        b = b.max(max);
    }
    if !f.schemes.is_empty() {
        b = b.schemes(f.schemes.iter().cloned());
    }
    b
}

/// How a manifest refers to a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RefSpec {
    /// By name, rule 2 deciding at resolution.
    Name(ConnectionName),
    /// The connection of that name in that scope.
    Pinned(Scope, ConnectionName),
    /// A Connection ID of the registry applied to.
    Id(ConnectionId),
}

#[derive(Debug, Clone)]
pub(crate) struct DeclaredUse {
    pub(crate) path: String,
    pub(crate) reference: RefSpec,
    pub(crate) env: Option<Vec<EnvEntry>>,
}

#[derive(Debug, Clone)]
pub(crate) struct DeclaredMappings {
    pub(crate) path: String,
    pub(crate) integration: IntegrationId,
    pub(crate) uses: Vec<DeclaredUse>,
}

/// A loaded and validated manifest: one project's declared connections and
/// mappings. Secret references are not resolved yet ([`Manifest::plan`] does).
#[derive(Debug, Clone)]
pub struct Manifest {
    file: String,
    base_dir: Option<PathBuf>,
    document: Document,
    project: ProjectId,
    pub(crate) types: Vec<DeclaredType>,
    pub(crate) host_types: Vec<DeclaredType>,
    pub(crate) templates: Vec<DeclaredTemplate>,
    pub(crate) connections: Vec<DeclaredConnection>,
    /// `connections` by (scope, name).
    pub(crate) connection_index: ConnectionIndex,
    pub(crate) integrations: Vec<DeclaredMappings>,
}

impl Manifest {
    /// Reads, parses and validates a manifest file with the default
    /// [`LoadOptions`]; the format comes from the extension. `file:` secret
    /// references are read from under the file's folder.
    pub fn load(path: impl AsRef<Path>) -> Result<Manifest, ManifestError> {
        Manifest::load_with(path, &LoadOptions::default())
    }

    /// [`Manifest::load`] with the host's limits and schemes. At most
    /// [`ManifestLimits::max_bytes`] are read, whatever size the file reports.
    pub fn load_with(path: impl AsRef<Path>, options: &LoadOptions) -> Result<Manifest, ManifestError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let format =
            Format::from_path(path).ok_or_else(|| ManifestError::UnknownFormat { file: file.clone() })?;
        let text = read_bounded(path, &file, options.limits.max_bytes)?;
        let base = path.parent().map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            }
        });
        Ok(Manifest::parse_with(&text, format, &file, options)?.with_base_dir(base))
    }

    /// Parses and validates manifest text with the default [`LoadOptions`];
    /// `file` names it in messages.
    pub fn parse(text: &str, format: Format, file: &str) -> Result<Manifest, ManifestError> {
        Manifest::parse_with(text, format, file, &LoadOptions::default())
    }

    /// [`Manifest::parse`] with the host's limits and schemes.
    pub fn parse_with(
        text: &str,
        format: Format,
        file: &str,
        options: &LoadOptions,
    ) -> Result<Manifest, ManifestError> {
        let document = parse_document_with(text, format, file, &options.limits)?;
        Manifest::from_document_with(document, file, options)
    }

    /// Validates a document: identifiers, secret references, references
    /// between mappings and connections, and the model's rules for each
    /// connection. Every problem is reported.
    pub fn from_document(document: Document, file: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_document_with(document, file, &LoadOptions::default())
    }

    /// [`Manifest::from_document`] accepting the schemes of `options`.
    pub fn from_document_with(
        document: Document,
        file: &str,
        options: &LoadOptions,
    ) -> Result<Manifest, ManifestError> {
        let mut v = Validator {
            problems: Vec::new(),
            options,
        };
        let manifest = v.document(&document);
        match manifest {
            Some(valid) if v.problems.is_empty() => Ok(Manifest {
                file: file.to_owned(),
                base_dir: None,
                document,
                project: valid.project,
                types: valid.types,
                host_types: valid.host_types,
                templates: valid.templates,
                connections: valid.connections,
                connection_index: valid.connection_index,
                integrations: valid.integrations,
            }),
            _ => Err(ManifestError::Invalid {
                file: file.to_owned(),
                problems: v.problems,
            }),
        }
    }

    /// Sets the folder `file:` references are relative to.
    pub fn with_base_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.base_dir = dir;
        self
    }

    /// The file name used in messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The project.
    pub fn project(&self) -> &ProjectId {
        &self.project
    }

    /// The document as loaded.
    pub fn document(&self) -> &Document {
        &self.document
    }

    /// Where `file:` references are resolved from.
    pub fn base_dir(&self) -> Option<&Path> {
        self.base_dir.as_deref()
    }

    fn source_context(&self) -> SourceContext {
        SourceContext {
            base_dir: self.base_dir.clone(),
        }
    }

    fn invalid(&self, problems: Vec<ManifestProblem>) -> ManifestError {
        ManifestError::Invalid {
            file: self.file.clone(),
            problems,
        }
    }
}

/// What a valid document declares.
struct Validated {
    project: ProjectId,
    types: Vec<DeclaredType>,
    host_types: Vec<DeclaredType>,
    templates: Vec<DeclaredTemplate>,
    connections: Vec<DeclaredConnection>,
    connection_index: ConnectionIndex,
    integrations: Vec<DeclaredMappings>,
}

struct Validator<'o> {
    problems: Vec<ManifestProblem>,
    options: &'o LoadOptions,
}

impl Validator<'_> {
    fn push(&mut self, path: impl Into<String>, rule: Rule) {
        self.problems.push(ManifestProblem::at(path, rule));
    }

    /// The identifier, or `None` after recording why the text is not one
    /// (without the text).
    fn ident<T>(&mut self, path: &str, parsed: Result<T, ParseError>) -> Option<T> {
        parsed
            .map_err(|e| self.push(path, Rule::Ident(error::redacted(e))))
            .ok()
    }

    /// A map key parsed as an identifier, and the path it names: the key
    /// itself when valid, its position (`#N`) when not, so that text which
    /// is not an identifier (perhaps a secret) never reaches a message.
    fn key<T: std::str::FromStr<Err = ParseError>>(
        &mut self,
        parent: &str,
        index: usize,
        key: &str,
    ) -> (String, Option<T>) {
        match key.parse::<T>() {
            Ok(v) => (format!("{parent}.{key}"), Some(v)),
            Err(e) => {
                let path = format!("{parent}.#{}", index + 1);
                self.push(&path, Rule::Ident(error::redacted(e)));
                (path, None)
            }
        }
    }

    fn document(&mut self, doc: &Document) -> Option<Validated> {
        if let Some(v) = &doc.version
            && v.as_str() != VERSION
        {
            let v = v.as_str();
            let shown = v.len() <= 16 && v.chars().all(|c| c.is_ascii_digit() || c == '.');
            self.push(
                "version",
                Rule::Version {
                    found: if shown { v.to_owned() } else { String::new() },
                },
            );
        }
        let project = self.ident("project", doc.project.parse::<ProjectId>());
        let mut types = Vec::with_capacity(doc.types.len());
        for (index, (key, t)) in doc.types.iter().enumerate() {
            let (path, name) = self.key::<TypeName>("types", index, key);
            if let Some(name) = name
                && let Some(definition) = self.connection_type(&path, name, t)
            {
                types.push(DeclaredType { path, definition });
            }
        }
        let mut host_types = Vec::with_capacity(doc.host_types.len());
        for (index, (key, t)) in doc.host_types.iter().enumerate() {
            let (path, name) = self.key::<TypeName>("hostTypes", index, key);
            if let Some(name) = name
                && let Some(definition) = self.connection_type(&path, name, t)
            {
                host_types.push(DeclaredType { path, definition });
            }
        }
        let mut templates = Vec::with_capacity(doc.templates.len());
        for (index, (key, t)) in doc.templates.iter().enumerate() {
            let (path, name) = self.key::<TemplateName>("templates", index, key);
            if let Some(name) = name
                && let Some(decl) = self.template(&path, name, t, project.as_ref())
            {
                templates.push(decl);
            }
        }
        let mut connections: Vec<DeclaredConnection> = Vec::with_capacity(doc.connections.len());
        let mut connection_index = ConnectionIndex::with_capacity(doc.connections.len());
        let template_names: HashSet<&TemplateName> = templates.iter().map(|d| &d.name).collect();
        for (i, c) in doc.connections.iter().enumerate() {
            let path = format!("connections[{i}]");
            if let Some(decl) = self.connection(&path, c, project.as_ref()) {
                if let Some(t) = &decl.template
                    && !template_names.contains(t)
                {
                    self.push(
                        format!("{path}.template"),
                        Rule::UnknownTemplate { name: t.clone() },
                    );
                }
                let key = (decl.scope.clone(), decl.name.clone());
                if let Some(first) = connection_index.get(&key).and_then(|&at| connections.get(at)) {
                    let first = first.path.clone();
                    self.push(
                        format!("{path}.name"),
                        Rule::DuplicateConnection {
                            name: decl.name.clone(),
                            scope: decl.scope.clone(),
                            first,
                        },
                    );
                } else {
                    connection_index.insert(key, connections.len());
                    connections.push(decl);
                }
            }
        }
        let mut integrations = Vec::with_capacity(doc.integrations.len());
        for (index, (key, integ)) in doc.integrations.iter().enumerate() {
            let (path, integration) = self.key::<IntegrationId>("integrations", index, key);
            let Some(integration) = integration else {
                continue;
            };
            let (uses, entries) = (
                integ.connections.len(),
                integ
                    .connections
                    .iter()
                    .map(|u| u.env.as_ref().map_or(0, Vec::len))
                    .sum::<usize>(),
            );
            if uses > MAX_USES || entries > MAX_ENTRIES {
                let (field, count, max) = if uses > MAX_USES {
                    ("connections", uses, MAX_USES)
                } else {
                    ("env entries", entries, MAX_ENTRIES)
                };
                self.push(
                    &path,
                    Rule::Spec(SpecProblem::TooMany {
                        field: field.into(),
                        count,
                        max,
                    }),
                );
                continue;
            }
            let mut uses = Vec::with_capacity(integ.connections.len());
            for (j, u) in integ.connections.iter().enumerate() {
                let upath = format!("{path}.connections[{j}]");
                if let Some(u) = self.use_(&upath, u, &integration, (&connections, &connection_index)) {
                    uses.push(u);
                }
            }
            integrations.push(DeclaredMappings {
                path,
                integration,
                uses,
            });
        }
        Some(Validated {
            project: project?,
            types,
            host_types,
            templates,
            connections,
            connection_index,
            integrations,
        })
    }

    /// A connection type, built by the model (which checks it whole).
    fn connection_type(&mut self, path: &str, name: TypeName, t: &TypeDoc) -> Option<ConnectionType> {
        let auth = self.auth_scheme(path, t.auth, t.client);
        let mut builder = ConnectionType::builder(name)
            .describe(t.description.clone())
            .auth(auth)
            .target(match t.target {
                None | Some(TargetKindDoc::Any) => TargetKind::Any,
                Some(TargetKindDoc::Platform) => TargetKind::Platform,
                Some(TargetKindDoc::Database) => TargetKind::Database,
                Some(TargetKindDoc::External) => TargetKind::External,
            });
        if let Some(label) = &t.label {
            builder = builder.label(label.clone());
        }
        for (key, f) in t.fields.iter() {
            builder = builder.field(field_builder(key, f));
        }
        builder
            .build()
            .map_err(|e| {
                for problem in e.problems {
                    self.push(path, Rule::Type(problem));
                }
            })
            .ok()
    }

    /// A template: its values as declared (secret ones references, read at
    /// apply), checked by the model with placeholder secrets.
    fn template(
        &mut self,
        path: &str,
        name: TemplateName,
        t: &TemplateDoc,
        project: Option<&ProjectId>,
    ) -> Option<DeclaredTemplate> {
        let connection_type = self.ident(&format!("{path}.type"), t.connection_type.parse::<TypeName>());
        let mut fields = Vec::with_capacity(t.fields.len());
        for (index, (key, f)) in t.fields.iter().enumerate() {
            let (fpath, fname) = self.key::<ParamName>(&format!("{path}.fields"), index, key);
            let values = self.values(
                &fpath,
                &ParamDoc {
                    secret: f.secret,
                    default: f.default.clone(),
                    environments: f.environments.clone(),
                    ..ParamDoc::default()
                },
            );
            if let Some(name) = fname {
                fields.push(DeclaredTemplateField {
                    name,
                    secret: f.secret,
                    hidden: f.hidden,
                    overridable: f.overridable,
                    values,
                });
            }
        }
        let decl = DeclaredTemplate {
            path: path.to_owned(),
            name,
            connection_type: connection_type?,
            label: t.label.clone(),
            description: t.description.clone(),
            fields,
        };
        if let Some(project) = project
            && let Err(e) = decl.template(project, |_| None)
        {
            for problem in e.problems {
                self.push(path, Rule::Type(problem));
            }
        }
        Some(decl)
    }

    fn connection(
        &mut self,
        path: &str,
        c: &ConnectionDoc,
        project: Option<&ProjectId>,
    ) -> Option<DeclaredConnection> {
        let name = self.ident(&format!("{path}.name"), c.name.parse::<ConnectionName>());
        let scope = match &c.integration {
            None => Some(Scope::Project),
            Some(i) => self
                .ident(&format!("{path}.integration"), i.parse::<IntegrationId>())
                .map(Scope::Integration),
        };
        let target = self.target(path, c.target.as_ref(), project);
        let auth = self.auth(path, c);
        let connection_type = c
            .connection_type
            .as_ref()
            .map(|t| self.ident(&format!("{path}.type"), t.parse::<TypeName>()));
        let template = c
            .template
            .as_ref()
            .map(|t| self.ident(&format!("{path}.template"), t.parse::<TemplateName>()));
        let mut params = Vec::with_capacity(c.parameters.len());
        for (index, (key, p)) in c.parameters.iter().enumerate() {
            let (ppath, pname) = self.key::<ParamName>(&format!("{path}.parameters"), index, key);
            let values = self.values(&ppath, p);
            if let Some(name) = pname {
                params.push(DeclaredParam {
                    name,
                    secret: p.secret,
                    description: p.description.clone(),
                    requirement: if p.optional {
                        Requirement::Optional
                    } else {
                        Requirement::Required
                    },
                    tenancy: match p.per_customer {
                        None => Tenancy::Global,
                        Some(EnteredByDoc::Organization) => Tenancy::PerCustomer(EnteredBy::Organization),
                        Some(EnteredByDoc::Customer) => Tenancy::PerCustomer(EnteredBy::Customer),
                    },
                    values,
                });
            }
        }
        let decl = DeclaredConnection {
            path: path.to_owned(),
            scope: scope?,
            name: name?,
            description: c.description.clone(),
            target: target?,
            auth,
            connection_type: connection_type.unwrap_or(None),
            template: template.unwrap_or(None),
            builder: match c.builder {
                None | Some(BuilderDoc::Hidden) => BuilderAccess::Hidden,
                Some(BuilderDoc::Available) => BuilderAccess::Available,
            },
            params,
        };
        // The model's own rules (auth and target needs, per-customer values,
        // lengths), checked on the spec with placeholder secrets.
        if let Some(project) = project
            && let Err(e) = decl.spec(project, |_| None)
        {
            for problem in e.problems {
                let at = spec_problem_path(path, &problem);
                self.push(at, Rule::Spec(problem));
            }
        }
        Some(decl)
    }

    /// A connection's target (default: an unnamed external service); a
    /// platform target's project defaults to the manifest's.
    fn target(
        &mut self,
        path: &str,
        target: Option<&TargetDoc>,
        project: Option<&ProjectId>,
    ) -> Option<Target> {
        let p = match target {
            None => return Some(Target::external("")),
            Some(TargetDoc::External(s)) => return Some(Target::external(s.clone())),
            Some(TargetDoc::Database(e)) => return Some(Target::database(e.clone())),
            Some(TargetDoc::Platform(p)) => p,
        };
        let tp = format!("{path}.target.platform");
        let tproject = match &p.project {
            Some(text) => self.ident(&format!("{tp}.project"), text.parse::<ProjectId>()),
            None => project.cloned(),
        };
        let integration = self.ident(
            &format!("{tp}.integration"),
            p.integration.parse::<IntegrationId>(),
        );
        Some(Target::Platform(Box::new(PlatformTarget {
            project: tproject?,
            integration: integration?,
            endpoint: p.endpoint.clone(),
            visibility: match p.visibility.unwrap_or(VisibilityDoc::Project) {
                VisibilityDoc::Project => EndpointVisibility::Project,
                VisibilityDoc::Organization => EndpointVisibility::Organization,
                VisibilityDoc::Public => EndpointVisibility::Public,
            },
        })))
    }

    /// A connection's auth scheme; `client` belongs to `auth: oauth2` only.
    fn auth(&mut self, path: &str, c: &ConnectionDoc) -> AuthScheme {
        self.auth_scheme(path, c.auth, c.client)
    }

    /// An auth scheme (of a connection or a type) from its `auth` and
    /// `client`.
    fn auth_scheme(&mut self, path: &str, auth: AuthDoc, client: Option<ClientDoc>) -> AuthScheme {
        match (auth, client) {
            (AuthDoc::Oauth2, client) => AuthScheme::OAuth2(match client.unwrap_or(ClientDoc::Shared) {
                ClientDoc::Shared => OAuthClient::Shared,
                ClientDoc::Dedicated => OAuthClient::Dedicated,
                ClientDoc::Supplied => OAuthClient::Supplied,
            }),
            (other, client) => {
                if client.is_some() {
                    self.push(
                        format!("{path}.client"),
                        Rule::Misplaced("`client` only applies to `auth: oauth2`"),
                    );
                }
                match other {
                    AuthDoc::None => AuthScheme::None,
                    AuthDoc::ApiKey => AuthScheme::ApiKey,
                    AuthDoc::Basic => AuthScheme::Basic,
                    AuthDoc::Custom | AuthDoc::Oauth2 => AuthScheme::Custom,
                }
            }
        }
    }

    fn values(&mut self, ppath: &str, p: &ParamDoc) -> Vec<DeclaredValue> {
        let mut out = Vec::new();
        let mut add = |this: &mut Self, layer: Layer, path: String, text: &Text| {
            let value = if p.secret {
                match SecretRef::parse(text.as_str()) {
                    // A scheme the host registered as a source is read at
                    // apply, even one that names an external store.
                    Ok(r) if this.options.schemes.contains(r.scheme()) => ValueSpec::Secret(r),
                    Ok(r) if this.options.external.iter().any(|s| s.as_str() == r.scheme()) => {
                        match ExternalRef::parse(text.as_str()) {
                            Ok(r) => ValueSpec::External(r),
                            Err(error) => {
                                this.push(path, Rule::BadExternalRef(error));
                                return;
                            }
                        }
                    }
                    // The shape of a reference (`user:password`), but not a
                    // scheme the host accepts: not repeated either.
                    Ok(_) => {
                        let known = this.options.schemes();
                        this.push(path, Rule::UnknownScheme { known });
                        return;
                    }
                    Err(_) => {
                        this.push(path, Rule::LiteralSecret);
                        return;
                    }
                }
            } else {
                ValueSpec::Plain(text.0.clone())
            };
            out.push(DeclaredValue { layer, path, value });
        };
        if let Some(t) = &p.default {
            add(self, Layer::Default, format!("{ppath}.default"), t);
        }
        for (index, (env, t)) in p.environments.iter().enumerate() {
            let (path, e) = self.key::<Environment>(&format!("{ppath}.environments"), index, env);
            if let Some(e) = e {
                add(self, Layer::Environment(e), path, t);
            }
        }
        for (index, (customer, c)) in p.customers.iter().enumerate() {
            let (cpath, cust) = self.key::<CustomerId>(&format!("{ppath}.customers"), index, customer);
            let Some(cust) = cust else {
                continue;
            };
            match c {
                CustomerDoc::Value(t) => add(self, Layer::Customer(cust), cpath, t),
                CustomerDoc::Layers(l) => {
                    if let Some(t) = &l.default {
                        add(self, Layer::Customer(cust.clone()), format!("{cpath}.default"), t);
                    }
                    for (index, (env, t)) in l.environments.iter().enumerate() {
                        let (path, e) = self.key::<Environment>(&format!("{cpath}.environments"), index, env);
                        if let Some(e) = e {
                            add(self, Layer::CustomerEnvironment(cust.clone(), e), path, t);
                        }
                    }
                }
            }
        }
        out
    }

    fn use_(
        &mut self,
        path: &str,
        u: &UseDoc,
        integration: &IntegrationId,
        connections: Declared<'_>,
    ) -> Option<DeclaredUse> {
        let reference = self.reference(path, u, integration);
        let target = match &reference {
            Some(reference) => self.declared(path, u, integration, reference, connections),
            None => None,
        };
        let env = u.env.as_ref().map(|entries| {
            let mut out = Vec::with_capacity(entries.len());
            for (k, e) in entries.iter().enumerate() {
                let epath = format!("{path}.env[{k}]");
                let from = self.ident(&format!("{epath}.from"), e.from.parse::<ParamName>());
                let to = self.ident(&format!("{epath}.to"), e.to.parse::<EnvVarName>());
                if let (Some(from), Some(c)) = (&from, target)
                    && !declares(c, from)
                {
                    self.push(
                        format!("{epath}.from"),
                        Rule::UnknownParam {
                            connection: c.name.clone(),
                            param: from.clone(),
                        },
                    );
                }
                if let (Some(from), Some(to)) = (from, to) {
                    out.push(EnvEntry { from, to });
                }
            }
            out
        });
        Some(DeclaredUse {
            path: path.to_owned(),
            reference: reference?,
            env,
        })
    }

    /// How a use names its connection: exactly one of `connection` (a name,
    /// maybe pinned to a scope) and `connectionConfig` (an ID, or a name).
    fn reference(&mut self, path: &str, u: &UseDoc, integration: &IntegrationId) -> Option<RefSpec> {
        let pinned = u.scope.map(|s| match s {
            ScopeDoc::Project => Scope::Project,
            ScopeDoc::Integration => Scope::Integration(integration.clone()),
        });
        let by_name = |n: ConnectionName| match &pinned {
            Some(scope) => RefSpec::Pinned(scope.clone(), n),
            None => RefSpec::Name(n),
        };
        match (&u.connection, &u.connection_config) {
            (Some(_), Some(_)) | (None, None) => {
                self.push(
                    path,
                    Rule::Misplaced(
                        "give exactly one of `connection` (a name) and `connectionConfig` (an ID)",
                    ),
                );
                None
            }
            (Some(name), None) => self
                .ident(&format!("{path}.connection"), name.parse::<ConnectionName>())
                .map(by_name),
            (None, Some(text)) => match text.parse::<ConnectionId>() {
                Ok(id) => {
                    if pinned.is_some() {
                        self.push(
                            format!("{path}.scope"),
                            Rule::Misplaced(
                                "`scope` pins a name; a Connection ID already names one connection",
                            ),
                        );
                    }
                    Some(RefSpec::Id(id))
                }
                Err(_) => self
                    .ident(
                        &format!("{path}.connectionConfig"),
                        text.parse::<ConnectionName>(),
                    )
                    .map(by_name),
            },
        }
    }

    /// Which declared connection a name reference means (rule 2 within the
    /// manifest, which declares the whole project); a reference by ID is
    /// looked up in the registry when the manifest is planned.
    fn declared<'c>(
        &mut self,
        path: &str,
        u: &UseDoc,
        integration: &IntegrationId,
        reference: &RefSpec,
        (connections, index): Declared<'c>,
    ) -> Option<&'c DeclaredConnection> {
        let (found, name, scope) = match reference {
            RefSpec::Name(n) => {
                let own = Scope::Integration(integration.clone());
                let found = find_declared(connections, index, &own, n)
                    .or_else(|| find_declared(connections, index, &Scope::Project, n));
                (found, n, None)
            }
            RefSpec::Pinned(scope, n) => (
                find_declared(connections, index, scope, n),
                n,
                Some(scope.clone()),
            ),
            RefSpec::Id(_) => return None,
        };
        if found.is_none() {
            self.push(
                format!("{path}.{}", ref_field(u)),
                Rule::UnknownConnection {
                    integration: integration.clone(),
                    name: name.clone(),
                    scope,
                },
            );
        }
        found
    }
}

fn ref_field(u: &UseDoc) -> &'static str {
    if u.connection.is_some() {
        "connection"
    } else {
        "connectionConfig"
    }
}

/// Declared connections by (scope, name), as positions in their list: a
/// reference is found in constant time, however many connections a
/// manifest declares.
pub(crate) type ConnectionIndex = HashMap<(Scope, ConnectionName), usize>;

/// Declared connections and their index.
type Declared<'a> = (&'a [DeclaredConnection], &'a ConnectionIndex);

/// The connection declared at `scope` as `name`, if any.
pub(crate) fn find_declared<'a>(
    connections: &'a [DeclaredConnection],
    index: &ConnectionIndex,
    scope: &Scope,
    name: &ConnectionName,
) -> Option<&'a DeclaredConnection> {
    index
        .get(&(scope.clone(), name.clone()))
        .and_then(|&at| connections.get(at))
}

/// Whether a mapping may take `param` from `c` (a declared parameter, or one
/// the managed OAuth application supplies).
fn declares(c: &DeclaredConnection, param: &ParamName) -> bool {
    c.params.iter().any(|p| &p.name == param) || c.auth.supplies(param.as_str())
}

fn spec_problem_path(path: &str, problem: &SpecProblem) -> String {
    match problem {
        SpecProblem::GlobalValueOnPerCustomer { param, .. }
        | SpecProblem::AppSuppliedParam { param }
        | SpecProblem::MustBeSecret { param }
        | SpecProblem::DuplicateParam { param } => format!("{path}.parameters.{param}"),
        _ => path.to_owned(),
    }
}

impl DeclaredConnection {
    /// The spec, with the secret values of references read at apply from
    /// `secret` (`None`: left empty, for checks that do not need them);
    /// references to external stores stay references.
    pub(crate) fn spec(
        &self,
        project: &ProjectId,
        mut secret: impl FnMut(&DeclaredValue) -> Option<SecretEntry>,
    ) -> Result<ConnectionSpec, crate::model::SpecError> {
        let builder = match &self.scope {
            Scope::Project => ConnectionSpec::project(project, &self.name),
            Scope::Integration(i) => ConnectionSpec::integration(project, i, &self.name),
        };
        let mut builder = builder
            .describe(self.description.clone())
            .target(self.target.clone())
            .auth(self.auth)
            .builder_access(self.builder);
        if let Some(t) = &self.connection_type {
            builder = builder.type_name(t);
        }
        if let Some(t) = &self.template {
            builder = builder.template_name(t);
        }
        for p in &self.params {
            let mut pb = if p.secret {
                Param::secret(&p.name)
            } else {
                Param::plain(&p.name)
            }
            .describe(p.description.clone());
            if p.requirement == Requirement::Optional {
                pb = pb.optional();
            }
            if let Tenancy::PerCustomer(by) = p.tenancy {
                pb = pb.per_customer(by);
            }
            for v in &p.values {
                let layer = v.layer.clone();
                pb = match &v.value {
                    ValueSpec::Plain(s) => pb.value(layer, s.clone()),
                    ValueSpec::External(r) => pb.value_ref(layer, r.clone()),
                    ValueSpec::Secret(_) => match secret(v) {
                        Some(SecretEntry::External(r)) => pb.value_ref(layer, (*r).clone()),
                        Some(SecretEntry::Stored(s)) => pb.value(layer, s.expose()),
                        None => pb.value(layer, ""),
                    },
                };
            }
            builder = builder.param(pb);
        }
        builder.build()
    }
}
