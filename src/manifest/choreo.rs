//! Choreo's and Devant's component configuration, imported into an
//! integration's [`Mappings`].
//!
//! A component (an integration, here) says which connections it uses in
//! `.choreo/component.yaml`:
//! - **schema version 1.1 and later**: `dependencies.connectionReferences`,
//!   each a connection `name` and a `resourceRef` naming what it reaches
//!   (`service:/project/component/v1/endpoint/PUBLIC`, `thirdparty:name/v1`,
//!   `database:server/db`). The platform injects every parameter under a
//!   fixed name, `CHOREO_<CONNECTION>_<PARAMETER>` (Devant:
//!   `DEVANT_<CONNECTION>_<PARAMETER>`): here, the connection is used with
//!   default variable names, which the registry's prefix must make the same.
//!   `configuration.env` entries with `valueFrom.connectionRef: {name, key}`
//!   add variables of the component's choosing;
//! - **schema version 1.0** (and the older `component-config.yaml`,
//!   `spec.outbound`): `dependencies.serviceReferences`, each a
//!   `connectionConfig` (the Connection ID) and `env: [{from, to}]`.
//!
//! Each connection is looked up in the registry the way resolution will
//! (rule 2: the integration's own connection of that name, else the
//! project's), so an import names every problem before anything is written;
//! the host then stores the result with
//! [`Registry::set_mappings`](crate::registry::Registry::set_mappings).
//!
//! ```
//! use connective::fixture::Fixture;
//! use connective::manifest::{ComponentConfig, ImportOptions};
//! use connective::model::Param;
//!
//! let fx = Fixture::project("acme")
//!     .prefix("CHOREO")
//!     .connection("hr-connection", |c| {
//!         c.platform_target("acme", "hr")
//!             .param(Param::plain("ServiceURL").default("https://hr.internal"))
//!     })
//!     .build()?;
//! let config = ComponentConfig::parse(
//!     "schemaVersion: 1.1\n\
//!      dependencies:\n  connectionReferences:\n\
//!      \x20   - name: hr-connection\n      resourceRef: service:/acme/hr/v1/ad088/PUBLIC\n",
//!     "component.yaml",
//! )?;
//! let import = config.mappings(fx.registry(), &"acme".parse()?, &"orders".parse()?, &ImportOptions::choreo())?;
//! fx.registry().set_mappings(import.mappings, None)?;
//! let env = fx.resolve("orders", "production")?;
//! assert_eq!(env.get("CHOREO_HR_CONNECTION_SERVICEURL").unwrap().value().expose(), "https://hr.internal");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, IgnoredAny, Visitor};

use super::error::redacted;
use super::{ManifestError, ManifestLimits, ManifestProblem, Rule};
use crate::model::{
    ConnectionId, ConnectionName, ConnectionRef, ConnectionUse, EnvEntry, EnvMapping, EnvVarName,
    IntegrationId, Mappings, ParamName, ProjectId, Target,
};
use crate::registry::Registry;

/// What a `resourceRef` of a connection reference names.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceRef {
    /// A platform service: `[service:][/project/]component/version[/endpoint][/visibility]`.
    Service {
        /// The project's handle, if given.
        project: Option<String>,
        /// The component's handle.
        component: String,
        /// The major version (`v1`).
        version: String,
        /// The endpoint, if given.
        endpoint: Option<String>,
        /// `PUBLIC`, `PROJECT` or `ORGANIZATION`, if given.
        visibility: Option<String>,
    },
    /// A third-party service: `thirdparty:name/version`.
    ThirdParty {
        /// The service's name.
        service: String,
        /// Its version (`v1`).
        version: String,
    },
    /// A managed database: `database:[server/]database`.
    Database {
        /// The server, if given.
        server: Option<String>,
        /// The database.
        database: String,
    },
}

fn handle(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

fn version(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(['v', 'V']) else {
        return false;
    };
    !rest.is_empty()
        && rest
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

const VISIBILITIES: [&str; 3] = ["PUBLIC", "PROJECT", "ORGANIZATION"];

impl ResourceRef {
    /// Parses a `resourceRef` as Choreo's own validator does.
    ///
    /// ```
    /// use connective::manifest::ResourceRef;
    /// let r = ResourceRef::parse("service:/HRProject/UserComponent/v1/ad088/PUBLIC").unwrap();
    /// assert!(matches!(r, ResourceRef::Service { ref component, .. } if component == "UserComponent"));
    /// assert!(ResourceRef::parse("database:mySqlDbServer/hotelDb").is_some());
    /// assert!(ResourceRef::parse("thirdparty:mttm/v1.1/extra").is_none());
    /// ```
    pub fn parse(text: &str) -> Option<ResourceRef> {
        if let Some(rest) = text.strip_prefix("thirdparty:") {
            let (service, version_) = rest.rsplit_once('/')?;
            let service_ok = !service.is_empty()
                && service
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c.is_whitespace() || matches!(c, '_' | '.' | '-'));
            return (service_ok && version(version_)).then(|| ResourceRef::ThirdParty {
                service: service.to_owned(),
                version: version_.to_owned(),
            });
        }
        if let Some(rest) = text.strip_prefix("database:") {
            let (server, database) = match rest.split_once('/') {
                Some((s, d)) => (Some(s), d),
                None => (None, rest),
            };
            return (server.is_none_or(handle) && handle(database)).then(|| ResourceRef::Database {
                server: server.map(str::to_owned),
                database: database.to_owned(),
            });
        }
        let rest = text.strip_prefix("service:").unwrap_or(text);
        let (project, rest) = match rest.strip_prefix('/') {
            Some(rest) => {
                let (p, rest) = rest.split_once('/')?;
                (Some(p), rest)
            }
            None => (None, rest),
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let (component, version_, endpoint, visibility) = match parts[..] {
            [c, v] => (c, v, None, None),
            [c, v, x] if VISIBILITIES.contains(&x) => (c, v, None, Some(x)),
            [c, v, e] => (c, v, Some(e), None),
            [c, v, e, x] if VISIBILITIES.contains(&x) => (c, v, Some(e), Some(x)),
            _ => return None,
        };
        let ok = project.is_none_or(handle)
            && handle(component)
            && version(version_)
            && endpoint.is_none_or(handle);
        ok.then(|| ResourceRef::Service {
            project: project.map(str::to_owned),
            component: component.to_owned(),
            version: version_.to_owned(),
            endpoint: endpoint.map(str::to_owned),
            visibility: visibility.map(str::to_owned),
        })
    }

    /// The kind of target a connection to this resource has.
    fn kind(&self) -> &'static str {
        match self {
            ResourceRef::Service { .. } => "platform service",
            ResourceRef::ThirdParty { .. } => "third-party service",
            ResourceRef::Database { .. } => "database",
        }
    }

    fn matches(&self, target: &Target) -> bool {
        matches!(
            (self, target),
            (ResourceRef::Service { .. }, Target::Platform(_))
                | (ResourceRef::ThirdParty { .. }, Target::External { .. })
                | (ResourceRef::Database { .. }, Target::Database { .. })
        )
    }
}

/// One `dependencies.connectionReferences` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionReference {
    /// The connection's name.
    pub name: String,
    /// What it reaches (`None`: not a valid `resourceRef`).
    pub resource_ref: Option<ResourceRef>,
}

/// One `serviceReferences` entry (schema version 1.0, `component-config.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServiceReference {
    /// The service identifier (`choreo:///org/project/component/endpoint/v1/PUBLIC`,
    /// `thirdparty:...`, `database:...`): informative only.
    pub name: String,
    /// The connection: a Connection ID of the registry imported into (or a
    /// connection name).
    pub connection_config: String,
    /// `from` parameter `to` variable entries.
    pub env: Vec<(String, String)>,
}

/// One `configuration.env` entry that takes a connection's value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionEnv {
    /// The variable.
    pub name: String,
    /// The connection reference's name.
    pub connection: String,
    /// The parameter (`key`).
    pub key: String,
}

/// How [`ComponentConfig::mappings`] imports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOptions {
    prefix: EnvVarName,
}

impl ImportOptions {
    /// Choreo: connection references inject `CHOREO_<CONNECTION>_<PARAMETER>`.
    pub fn choreo() -> Self {
        Self::with_prefix(EnvVarName::parse("CHOREO").unwrap_or_else(|_| unreachable!()))
    }

    /// Devant: `DEVANT_<CONNECTION>_<PARAMETER>`.
    pub fn devant() -> Self {
        Self::with_prefix(EnvVarName::parse("DEVANT").unwrap_or_else(|_| unreachable!()))
    }

    /// Another platform's prefix.
    pub fn with_prefix(prefix: EnvVarName) -> Self {
        ImportOptions { prefix }
    }

    /// The prefix of the platform's fixed variable names.
    pub fn prefix(&self) -> &EnvVarName {
        &self.prefix
    }
}

impl Default for ImportOptions {
    /// [`ImportOptions::choreo`].
    fn default() -> Self {
        Self::choreo()
    }
}

/// What an import gives: the mappings, and the `configuration.env` variables
/// it left to the host because they are not connection values (`value:`,
/// `configGroupRef`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ComponentImport {
    /// The integration's mappings, checked against the registry.
    pub mappings: Mappings,
    /// Variables of `configuration.env` that are not taken from a connection.
    pub skipped: Vec<String>,
}

/// A component configuration file: `.choreo/component.yaml` or
/// `component-config.yaml`.
#[derive(Debug, Clone)]
pub struct ComponentConfig {
    file: String,
    version: String,
    connection_references: Vec<ConnectionReference>,
    service_references: Vec<ServiceReference>,
    env: Vec<ConnectionEnv>,
    skipped: Vec<String>,
}

/// The versions of `component.yaml` read.
const VERSIONS: [&str; 3] = ["1.0", "1.1", "1.2"];

impl ComponentConfig {
    /// Reads a component configuration file within the default limits.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ManifestError> {
        Self::load_with(path, &ManifestLimits::default())
    }

    /// Reads a component configuration file within `limits` (at most
    /// `max_bytes` are read).
    pub fn load_with(path: impl AsRef<Path>, limits: &ManifestLimits) -> Result<Self, ManifestError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = super::read_bounded(path, &file, limits.max_bytes)?;
        Self::parse_with(&text, &file, limits)
    }

    /// Parses component configuration text; `file` names it in messages.
    pub fn parse(text: &str, file: &str) -> Result<Self, ManifestError> {
        Self::parse_with(text, file, &ManifestLimits::default())
    }

    /// [`ComponentConfig::parse`] within `limits`.
    pub fn parse_with(text: &str, file: &str, limits: &ManifestLimits) -> Result<Self, ManifestError> {
        let mut raw: RawConfig = super::parse_yaml(text, file, limits)?;
        let mut problems = Vec::new();
        let at = |path: &str, rule| ManifestProblem::at(path, rule);
        let (version, dependencies) = raw.version_and_dependencies(&mut problems);
        let legacy = version == "1.0" || version.starts_with("core.");
        let mut connection_references = Vec::new();
        for (i, c) in dependencies.connection_references.into_iter().enumerate() {
            let path = format!("dependencies.connectionReferences[{i}]");
            if legacy {
                problems.push(at(
                    &path,
                    Rule::Misplaced("connectionReferences need schemaVersion 1.1 or later"),
                ));
            }
            let resource_ref = ResourceRef::parse(&c.resource_ref);
            if resource_ref.is_none() {
                problems.push(at(&format!("{path}.resourceRef"), Rule::ResourceRef));
            }
            connection_references.push(ConnectionReference {
                name: c.name,
                resource_ref,
            });
        }
        let service_references = dependencies
            .service_references
            .into_iter()
            .map(|s| ServiceReference {
                name: s.name,
                connection_config: s.connection_config,
                env: s.env.into_iter().map(|e| (e.from, e.to)).collect(),
            })
            .collect();
        let mut env = Vec::new();
        let mut skipped = Vec::new();
        for (i, e) in raw
            .configuration
            .map(|c| c.env)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            match e.value_from.and_then(|v| v.connection_ref) {
                Some(r) => {
                    if legacy {
                        problems.push(at(
                            &format!("configuration.env[{i}]"),
                            Rule::Misplaced("configuration needs schemaVersion 1.1 or later"),
                        ));
                    }
                    env.push(ConnectionEnv {
                        name: e.name,
                        connection: r.name,
                        key: r.key,
                    });
                }
                None => skipped.push(e.name),
            }
        }
        if !problems.is_empty() {
            return Err(ManifestError::Invalid {
                file: file.to_owned(),
                problems,
            });
        }
        Ok(ComponentConfig {
            file: file.to_owned(),
            version,
            connection_references,
            service_references,
            env,
            skipped,
        })
    }

    /// `schemaVersion` (`1.0`, `1.1`, `1.2`), or `apiVersion` for a
    /// `component-config.yaml`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The connection references (1.1 and later).
    pub fn connection_references(&self) -> &[ConnectionReference] {
        &self.connection_references
    }

    /// The service references (1.0, `component-config.yaml`; kept in later
    /// versions for custom variable names).
    pub fn service_references(&self) -> &[ServiceReference] {
        &self.service_references
    }

    /// The `configuration.env` entries taken from a connection.
    pub fn connection_env(&self) -> &[ConnectionEnv] {
        &self.env
    }

    /// The integration's mappings this configuration asks for, checked
    /// against `registry`'s connections visible to `integration` of
    /// `project`: every reference must name a visible connection of the kind
    /// its `resourceRef` says, every key a parameter it has, and no variable
    /// may be produced twice or be reserved. Connection references use
    /// default variable names, so the registry's prefix must be
    /// `options`'s (`CHOREO` by default). Every problem is reported at once.
    pub fn mappings(
        &self,
        registry: &Registry,
        project: &ProjectId,
        integration: &IntegrationId,
        options: &ImportOptions,
    ) -> Result<ComponentImport, ManifestError> {
        let view = registry.view(project);
        let policy = &view.policy;
        let mut problems = Vec::new();
        if !self.connection_references.is_empty() && policy.prefix() != Some(options.prefix()) {
            problems.push(ManifestProblem::at(
                "dependencies.connectionReferences",
                Rule::DefaultPrefix {
                    expected: options.prefix().clone(),
                    found: policy.prefix().cloned(),
                },
            ));
        }
        let target_of = |reference: &ConnectionRef| {
            view.find_connection(integration, reference)
                .map(|c| c.value.spec().target().clone())
        };
        let (mut uses, names) = self.connection_uses(integration, target_of, &mut problems);
        uses.extend(self.service_uses(&mut problems));
        uses.extend(self.configuration_uses(&names, &mut problems));
        let mappings = match Mappings::new(project.clone(), integration.clone(), uses) {
            Ok(m) => Some(m),
            Err(e) => {
                for p in e.problems {
                    problems.push(ManifestProblem::at("", Rule::Spec(p)));
                }
                None
            }
        };
        if let Some(m) = &mappings {
            for p in view.check_mappings(m) {
                // Visibility was reported above with the reference's path.
                if !matches!(
                    p,
                    crate::resolve::Problem::NotVisible {
                        reference: ConnectionRef::Name(_),
                        ..
                    }
                ) {
                    problems.push(ManifestProblem::at("", Rule::Mapping(p)));
                }
            }
        }
        match mappings {
            Some(mappings) if problems.is_empty() => Ok(ComponentImport {
                mappings,
                skipped: self.skipped.clone(),
            }),
            _ => Err(ManifestError::Invalid {
                file: self.file.clone(),
                problems,
            }),
        }
    }

    /// `dependencies.connectionReferences`: each a use with default variable
    /// names of a connection `integration` can see (`target_of` says what it
    /// reaches), of the kind its `resourceRef` says. Also returns each
    /// reference's name as written and as parsed, for `configuration.env`.
    fn connection_uses(
        &self,
        integration: &IntegrationId,
        target_of: impl Fn(&ConnectionRef) -> Option<Target>,
        problems: &mut Vec<ManifestProblem>,
    ) -> (Vec<ConnectionUse>, HashMap<String, ConnectionName>) {
        let mut uses = Vec::new();
        let mut names: HashMap<String, ConnectionName> = HashMap::new();
        for (i, c) in self.connection_references.iter().enumerate() {
            let path = format!("dependencies.connectionReferences[{i}]");
            let name = match c.name.parse::<ConnectionName>() {
                Ok(n) => n,
                Err(e) => {
                    problems.push(ManifestProblem::at(
                        format!("{path}.name"),
                        Rule::Ident(redacted(e)),
                    ));
                    continue;
                }
            };
            let reference = ConnectionRef::Name(name.clone());
            match target_of(&reference) {
                None => problems.push(ManifestProblem::at(
                    format!("{path}.name"),
                    Rule::UnknownConnection {
                        integration: integration.clone(),
                        name: name.clone(),
                        scope: None,
                    },
                )),
                Some(target) => {
                    if let Some(r) = &c.resource_ref
                        && !r.matches(&target)
                    {
                        problems.push(ManifestProblem::at(
                            format!("{path}.resourceRef"),
                            Rule::TargetMismatch {
                                connection: name.clone(),
                                resource: r.kind(),
                                target: target.to_string(),
                            },
                        ));
                    }
                }
            }
            // The first reference written so names the connection.
            names.entry(c.name.clone()).or_insert_with(|| name.clone());
            uses.push(ConnectionUse {
                reference,
                env: EnvMapping::Defaults,
            });
        }
        (uses, names)
    }

    /// `dependencies.serviceReferences`: each a use with explicit entries,
    /// by Connection ID (or name).
    fn service_uses(&self, problems: &mut Vec<ManifestProblem>) -> Vec<ConnectionUse> {
        let mut push = |path: String, rule| problems.push(ManifestProblem::at(path, rule));
        let mut uses = Vec::new();
        for (i, s) in self.service_references.iter().enumerate() {
            let path = format!("dependencies.serviceReferences[{i}]");
            let reference = match s.connection_config.parse::<ConnectionId>() {
                Ok(id) => Some(ConnectionRef::Id(id)),
                Err(_) => match s.connection_config.parse::<ConnectionName>() {
                    Ok(n) => Some(ConnectionRef::Name(n)),
                    Err(e) => {
                        push(format!("{path}.connectionConfig"), Rule::Ident(redacted(e)));
                        None
                    }
                },
            };
            let mut entries = Vec::new();
            for (j, (from, to)) in s.env.iter().enumerate() {
                let epath = format!("{path}.env[{j}]");
                match (from.parse::<ParamName>(), to.parse::<EnvVarName>()) {
                    (Ok(from), Ok(to)) => entries.push(EnvEntry { from, to }),
                    (from, to) => {
                        if let Err(e) = from {
                            push(format!("{epath}.from"), Rule::Ident(redacted(e)));
                        }
                        if let Err(e) = to {
                            push(format!("{epath}.to"), Rule::Ident(redacted(e)));
                        }
                    }
                }
            }
            if let Some(reference) = reference {
                uses.push(ConnectionUse {
                    reference,
                    env: EnvMapping::Explicit(entries),
                });
            }
        }
        uses
    }

    /// `configuration.env`: one explicit use per connection of
    /// `dependencies.connectionReferences` (`names`: each as written, and
    /// parsed), in the order the connections first appear. Names and
    /// connections are found by hash: the cost is in proportion to the
    /// entries, not their square.
    fn configuration_uses(
        &self,
        names: &HashMap<String, ConnectionName>,
        problems: &mut Vec<ManifestProblem>,
    ) -> Vec<ConnectionUse> {
        let mut push = |path: String, rule| problems.push(ManifestProblem::at(path, rule));
        let mut by_connection: IndexMap<ConnectionName, Vec<EnvEntry>> = IndexMap::new();
        for (i, e) in self.env.iter().enumerate() {
            let path = format!("configuration.env[{i}]");
            let Some(name) = names.get(&e.connection) else {
                push(
                    format!("{path}.valueFrom.connectionRef.name"),
                    Rule::Misplaced("names no entry of dependencies.connectionReferences"),
                );
                continue;
            };
            let from = e.key.parse::<ParamName>();
            let to = e.name.parse::<EnvVarName>();
            match (from, to) {
                (Ok(from), Ok(to)) => by_connection
                    .entry(name.clone())
                    .or_default()
                    .push(EnvEntry { from, to }),
                (from, to) => {
                    if let Err(e) = from {
                        push(
                            format!("{path}.valueFrom.connectionRef.key"),
                            Rule::Ident(redacted(e)),
                        );
                    }
                    if let Err(e) = to {
                        push(format!("{path}.name"), Rule::Ident(redacted(e)));
                    }
                }
            }
        }
        by_connection
            .into_iter()
            .map(|(name, entries)| ConnectionUse {
                reference: ConnectionRef::Name(name),
                env: EnvMapping::Explicit(entries),
            })
            .collect()
    }
}

// The file's shape. Fields the import does not use (endpoints, ...) are
// ignored: the format is the platform's to extend.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    #[serde(default)]
    schema_version: Option<VersionText>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    dependencies: Option<Dependencies>,
    #[serde(default)]
    configuration: Option<Configuration>,
    #[serde(default)]
    spec: Option<Spec>,
    #[serde(default, rename = "endpoints")]
    _endpoints: Option<IgnoredAny>,
}

impl RawConfig {
    /// The file's version (`schemaVersion` of a component.yaml, `apiVersion`
    /// of a component-config.yaml) and its dependencies, where that version
    /// keeps them.
    fn version_and_dependencies(&mut self, problems: &mut Vec<ManifestProblem>) -> (String, Dependencies) {
        let at = |path: &str, rule| ManifestProblem::at(path, rule);
        match (&self.schema_version, &self.api_version) {
            (Some(v), None) => {
                if !VERSIONS.contains(&v.as_str()) {
                    problems.push(at(
                        "schemaVersion",
                        Rule::ComponentVersion {
                            found: if v.len() <= 8 { v.0.clone() } else { String::new() },
                        },
                    ));
                }
                (v.0.clone(), self.dependencies.take().unwrap_or_default())
            }
            (None, Some(api)) if api == "core.choreo.dev/v1beta1" => (
                api.clone(),
                self.spec.take().and_then(|s| s.outbound).unwrap_or_default(),
            ),
            (None, Some(_)) => {
                problems.push(at("apiVersion", Rule::ComponentVersion { found: String::new() }));
                (String::new(), Dependencies::default())
            }
            _ => {
                problems.push(at(
                    "",
                    Rule::Misplaced(
                        "give `schemaVersion` (component.yaml) or `apiVersion` (component-config.yaml)",
                    ),
                ));
                (String::new(), Dependencies::default())
            }
        }
    }
}

#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    outbound: Option<Dependencies>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Dependencies {
    #[serde(default)]
    connection_references: Vec<RawConnectionReference>,
    #[serde(default)]
    service_references: Vec<RawServiceReference>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConnectionReference {
    name: String,
    resource_ref: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawServiceReference {
    name: String,
    connection_config: String,
    #[serde(default)]
    env: Vec<RawEnvEntry>,
}

#[derive(Deserialize)]
struct RawEnvEntry {
    from: String,
    to: String,
}

#[derive(Deserialize)]
struct Configuration {
    #[serde(default)]
    env: Vec<RawConfigEnv>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfigEnv {
    name: String,
    #[serde(default, rename = "value")]
    _value: Option<IgnoredAny>,
    #[serde(default)]
    value_from: Option<ValueFrom>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValueFrom {
    #[serde(default)]
    connection_ref: Option<RawConnectionRef>,
    #[serde(default, rename = "configGroupRef")]
    _config_group_ref: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct RawConnectionRef {
    name: String,
    key: String,
}

/// `schemaVersion`, written as a number (`1.1`) or a string (`"1.0"`).
struct VersionText(String);

impl std::ops::Deref for VersionText {
    type Target = String;
    fn deref(&self) -> &String {
        &self.0
    }
}

impl<'de> Deserialize<'de> for VersionText {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = VersionText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a schema version such as 1.1")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<VersionText, E> {
                Ok(VersionText(v.to_owned()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<VersionText, E> {
                Ok(VersionText(format!("{v:?}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VersionText, E> {
                Ok(VersionText(format!("{v}.0")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<VersionText, E> {
                Ok(VersionText(format!("{v}.0")))
            }
        }
        d.deserialize_any(V)
    }
}
