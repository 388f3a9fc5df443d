//! A registry's project back to a manifest document.

use std::fmt;
use std::sync::Arc;

use super::doc::{
    AuthDoc, BuilderDoc, ClientDoc, ConnectionDoc, CustomerDoc, CustomerLayersDoc, DataTypeDoc, Document,
    EnteredByDoc, EnvEntryDoc, FieldDoc, FieldVisibilityDoc, IntegrationDoc, ParamDoc, PlatformDoc, ScopeDoc,
    TargetDoc, TargetKindDoc, TemplateDoc, TemplateFieldDoc, Text, TypeDoc, UniqueMap, UseDoc, VERSION,
    VisibilityDoc,
};
use super::{Format, KEEP, SecretRef};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    AuthScheme, Connection, ConnectionName, ConnectionRef, EndpointVisibility, EnteredBy, EnvMapping,
    IntegrationId, Layer, OAuthClient, Param, ParamName, ParamValues, ProjectId, Requirement, Scope,
    SecretEntry, Target, Tenancy, join,
};
use crate::model::{
    BuilderAccess, ConnectionTemplate, ConnectionType, DataType, Field, Overrides, Presentation, TargetKind,
    TemplateName, Visibility,
};
use crate::registry::Registry;
use crate::resolve::find_connection;

/// One secret value being exported: whose (a connection's or a
/// template's), which parameter and layer.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SecretSlot<'a> {
    /// The project.
    pub project: &'a ProjectId,
    /// The connection or template holding it.
    pub holder: SecretHolder<'a>,
    /// The parameter (a template's field).
    pub param: &'a ParamName,
    /// The value layer.
    pub layer: &'a Layer,
}

/// Whose secret value a [`SecretSlot`] is.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum SecretHolder<'a> {
    /// A connection.
    Connection {
        /// Its scope.
        scope: &'a Scope,
        /// Its name.
        name: &'a ConnectionName,
    },
    /// A template.
    Template(&'a TemplateName),
}

type Namer = Arc<dyn Fn(&SecretSlot<'_>) -> String + Send + Sync>;

/// How [`export`] writes secret values. Plaintext is never an option.
#[derive(Clone, Default)]
pub struct ExportOptions {
    namer: Option<Namer>,
}

impl fmt::Debug for ExportOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportOptions")
            .field(
                "secrets",
                &if self.namer.is_some() {
                    "references"
                } else {
                    "keep:existing"
                },
            )
            .finish()
    }
}

impl ExportOptions {
    /// Every secret value as `keep:existing` (the default): applying the
    /// export keeps what the registry has.
    pub fn keep() -> Self {
        ExportOptions::default()
    }

    /// Every secret value as the reference `namer` gives (e.g. a vault path of
    /// the host's convention). The text must be a reference (`scheme:rest`).
    pub fn references(namer: impl Fn(&SecretSlot<'_>) -> String + Send + Sync + 'static) -> Self {
        ExportOptions {
            namer: Some(Arc::new(namer)),
        }
    }

    /// Every secret value as `env:NAME`, `NAME` being
    /// `PREFIX_[INTEGRATION_]CONNECTION_PARAM[_CUSTOMER][_ENVIRONMENT]` for
    /// a connection's and `PREFIX_TEMPLATE_TEMPLATE_FIELD[_ENVIRONMENT]` for
    /// a template's, upper-cased with other characters turned into `_`.
    ///
    /// ```
    /// use connective::manifest::{export, ExportOptions};
    /// use connective::fixture::Fixture;
    /// use connective::model::Param;
    /// let fx = Fixture::project("acme")
    ///     .connection("twilio", |c| c.param(Param::secret("ApiKey").env("production", "k")))
    ///     .build()?;
    /// let doc = export(fx.registry(), &"acme".parse()?, &ExportOptions::env_references("ACME"))?;
    /// let text = doc.to_text(connective::manifest::Format::Yaml)?;
    /// assert!(text.contains("env:ACME_TWILIO_APIKEY_PRODUCTION"), "{text}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn env_references(prefix: &str) -> Self {
        let prefix = prefix.to_owned();
        ExportOptions::references(move |slot| {
            let mut parts: Vec<String> = Vec::new();
            if !prefix.is_empty() {
                parts.push(prefix.clone());
            }
            match slot.holder {
                SecretHolder::Connection { scope, name } => {
                    if let Scope::Integration(i) = scope {
                        parts.push(i.to_string());
                    }
                    parts.push(name.to_string());
                }
                SecretHolder::Template(t) => {
                    parts.push("template".to_owned());
                    parts.push(t.to_string());
                }
            }
            parts.push(slot.param.to_string());
            match slot.layer {
                Layer::Default => {}
                Layer::Environment(e) => parts.push(e.to_string()),
                Layer::Customer(c) => parts.push(c.to_string()),
                Layer::CustomerEnvironment(c, e) => {
                    parts.push(c.to_string());
                    parts.push(e.to_string());
                }
            }
            let name: String = parts
                .join("_")
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_uppercase()
                    } else {
                        '_'
                    }
                })
                .collect();
            format!("env:{name}")
        })
    }
}

/// A reference of an integration's mappings that finds no connection: its
/// connection was deleted with [`DeleteMode::Force`](crate::registry::DeleteMode::Force)
/// (see [`ExportError::DanglingReferences`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DanglingReference {
    /// The integration whose mappings hold the reference.
    pub integration: IntegrationId,
    /// The reference: a Connection ID, or a name.
    pub reference: ConnectionRef,
}

impl fmt::Display for DanglingReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "integration {} refers to {}", self.integration, self.reference)
    }
}

/// Exporting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The host's namer gave something that is not a secret reference (the
    /// text is not repeated: it might be the secret).
    #[error("the secret reference for {connection}.{param} ({layer}) is not a reference (scheme:rest)")]
    NotAReference {
        /// The connection.
        connection: ConnectionName,
        /// The parameter.
        param: ParamName,
        /// The layer, described.
        layer: String,
    },
    /// The host's namer gave something that is not a secret reference for
    /// a template's secret (the text is not repeated).
    #[error(
        "the secret reference for template {template} field {field} ({layer}) is not a reference (scheme:rest)"
    )]
    TemplateNotAReference {
        /// The template.
        template: TemplateName,
        /// The field.
        field: ParamName,
        /// The layer, described.
        layer: String,
    },
    /// Mappings of the project refer to connections it no longer has (a
    /// connection deleted with [`DeleteMode::Force`](crate::registry::DeleteMode::Force)
    /// while they used it). A manifest cannot say such a reference (it
    /// names connections it declares, and a Connection ID means nothing to
    /// another registry), so nothing is exported; every one is listed, to
    /// re-point or remove before exporting again.
    #[error(
        "project {project} cannot be exported: mappings refer to connections it no longer has (deleted with DeleteMode::Force): {}; set those mappings to a connection of the project, or remove them, and export again",
        join(references)
    )]
    DanglingReferences {
        /// The project.
        project: ProjectId,
        /// Every dangling reference, by integration, in mapping order.
        references: Vec<DanglingReference>,
    },
    /// The document cannot be written in the format.
    #[error("cannot write the manifest as {format:?}: {message}")]
    Format {
        /// The format.
        format: Format,
        /// Why.
        message: String,
    },
}

/// The manifest of `project` as `registry` holds it: connections (project
/// scope first, then by integration, each by name) and every integration's
/// mappings. Secret values are written as `options` says, never as
/// plaintext; OAuth applications are the registry's business and are not
/// exported. References by Connection ID become names, pinned to their scope
/// (`scope: project`), so the document applies to any registry.
///
/// What `export` writes, [`Manifest`](super::Manifest) loads and plans back
/// (a round trip). A project whose mappings refer to a connection that is
/// gone (a forced delete) is therefore refused with
/// [`ExportError::DanglingReferences`], listing every such reference.
pub fn export(
    registry: &Registry,
    project: &ProjectId,
    options: &ExportOptions,
) -> Result<Document, ExportError> {
    let snapshot = registry
        .snapshot(project)
        .unwrap_or_else(|| Arc::new(ProjectSnapshot::empty(project.clone())));
    let mut connections: Vec<&Connection> = snapshot.connections().map(|c| &*c.value).collect();
    connections.sort_by(|a, b| (a.scope(), a.name()).cmp(&(b.scope(), b.name())));
    let mut types: Vec<&ConnectionType> = snapshot
        .project_types()
        .map(|t| &**t.value.definition())
        .collect();
    types.sort_by(|a, b| a.name().cmp(b.name()));
    let mut templates: Vec<&ConnectionTemplate> = snapshot.templates().map(|t| &*t.value).collect();
    templates.sort_by(|a, b| a.name().cmp(b.name()));
    // The host's types the project's connections and templates follow
    // (those no project type of the same name shadows).
    let host = registry.catalog().policy().types();
    let mut host_types: Vec<&ConnectionType> = connections
        .iter()
        .filter_map(|c| c.spec().connection_type())
        .chain(templates.iter().map(|t| t.connection_type()))
        .filter(|name| snapshot.project_type(name).is_none())
        .filter_map(|name| host.get(name.as_str()).map(|t| &**t))
        .collect();
    host_types.sort_by(|a, b| a.name().cmp(b.name()));
    host_types.dedup_by(|a, b| a.name() == b.name());
    let mut doc = Document {
        version: Some(Text::from(VERSION)),
        project: project.to_string(),
        types: types
            .into_iter()
            .map(|t| (t.name().to_string(), type_doc(t)))
            .collect(),
        host_types: host_types
            .into_iter()
            .map(|t| (t.name().to_string(), type_doc(t)))
            .collect(),
        templates: templates
            .into_iter()
            .map(|t| Ok((t.name().to_string(), template_doc(project, t, options)?)))
            .collect::<Result<_, ExportError>>()?,
        connections: Vec::with_capacity(connections.len()),
        integrations: UniqueMap::new(),
    };
    for c in connections {
        doc.connections.push(connection_doc(project, c, options)?);
    }
    let mut mappings: Vec<_> = snapshot.all_mappings().map(|m| &*m.value).collect();
    mappings.sort_by(|a, b| a.integration().cmp(b.integration()));
    let mut dangling = Vec::new();
    for m in mappings {
        let mut uses = Vec::with_capacity(m.uses().len());
        for u in m.uses() {
            let mut doc = UseDoc::default();
            // The connection the reference finds (rules 1 and 2), as the
            // loader finds it among the connections the document declares.
            let Some(c) = find_connection(&snapshot, m.integration(), &u.reference) else {
                // Dangling after a forced delete.
                dangling.push(DanglingReference {
                    integration: m.integration().clone(),
                    reference: u.reference.clone(),
                });
                continue;
            };
            match &u.reference {
                ConnectionRef::Name(n) => doc.connection = Some(n.to_string()),
                ConnectionRef::Id(_) => {
                    doc.connection = Some(c.value.name().to_string());
                    doc.scope = Some(match c.value.scope() {
                        Scope::Project => ScopeDoc::Project,
                        Scope::Integration(_) => ScopeDoc::Integration,
                    });
                }
            }
            doc.env = match &u.env {
                EnvMapping::Defaults => None,
                EnvMapping::Explicit(entries) => Some(
                    entries
                        .iter()
                        .map(|e| EnvEntryDoc {
                            from: e.from.to_string(),
                            to: e.to.to_string(),
                        })
                        .collect(),
                ),
            };
            uses.push(doc);
        }
        doc.integrations
            .insert(m.integration().to_string(), IntegrationDoc { connections: uses });
    }
    if !dangling.is_empty() {
        return Err(ExportError::DanglingReferences {
            project: project.clone(),
            references: dangling,
        });
    }
    Ok(doc)
}

fn connection_doc(
    project: &ProjectId,
    c: &Connection,
    options: &ExportOptions,
) -> Result<ConnectionDoc, ExportError> {
    let spec = c.spec();
    let (auth, client) = auth_doc(spec.auth());
    let target = match spec.target() {
        Target::External { service } if service.is_empty() => None,
        Target::External { service } => Some(TargetDoc::External(service.to_string())),
        Target::Database { engine } => Some(TargetDoc::Database(engine.to_string())),
        Target::Platform(p) => Some(TargetDoc::Platform(PlatformDoc {
            project: (&p.project != project).then(|| p.project.to_string()),
            integration: p.integration.to_string(),
            endpoint: p.endpoint.clone(),
            visibility: match p.visibility {
                EndpointVisibility::Project => None,
                EndpointVisibility::Organization => Some(VisibilityDoc::Organization),
                EndpointVisibility::Public => Some(VisibilityDoc::Public),
            },
        })),
    };
    let mut parameters = UniqueMap::new();
    for p in spec.params() {
        parameters.insert(p.name().to_string(), param_doc(project, c, p, options)?);
    }
    Ok(ConnectionDoc {
        name: c.name().to_string(),
        integration: c.scope().integration().map(|i| i.to_string()),
        description: spec.description().to_owned(),
        target,
        auth,
        client,
        connection_type: spec.connection_type().map(ToString::to_string),
        template: spec.template().map(ToString::to_string),
        builder: match spec.builder_access() {
            BuilderAccess::Available => Some(BuilderDoc::Available),
            _ => None,
        },
        parameters,
    })
}

/// An auth scheme as a manifest writes it.
fn auth_doc(auth: AuthScheme) -> (AuthDoc, Option<ClientDoc>) {
    match auth {
        AuthScheme::None => (AuthDoc::None, None),
        AuthScheme::ApiKey => (AuthDoc::ApiKey, None),
        AuthScheme::Basic => (AuthDoc::Basic, None),
        AuthScheme::OAuth2(OAuthClient::Shared) => (AuthDoc::Oauth2, None),
        AuthScheme::OAuth2(OAuthClient::Dedicated) => (AuthDoc::Oauth2, Some(ClientDoc::Dedicated)),
        AuthScheme::OAuth2(OAuthClient::Supplied) => (AuthDoc::Oauth2, Some(ClientDoc::Supplied)),
        AuthScheme::Custom => (AuthDoc::Custom, None),
    }
}

/// A label as written: none when it is the name (the default).
fn label_doc(label: &str, name: &str) -> Option<String> {
    (label != name).then(|| label.to_owned())
}

fn type_doc(t: &ConnectionType) -> TypeDoc {
    let (auth, client) = auth_doc(t.auth());
    TypeDoc {
        label: label_doc(t.label(), t.name().as_str()),
        description: t.description().to_owned(),
        auth,
        client,
        target: match t.target() {
            TargetKind::Platform => Some(TargetKindDoc::Platform),
            TargetKind::Database => Some(TargetKindDoc::Database),
            TargetKind::External => Some(TargetKindDoc::External),
            _ => None,
        },
        fields: t
            .fields()
            .iter()
            .map(|f| (f.name().to_string(), field_doc(f)))
            .collect(),
    }
}

fn field_doc(f: &Field) -> FieldDoc {
    let validation = f.validation();
    FieldDoc {
        label: label_doc(f.label(), f.name().as_str()),
        description: f.description().to_owned(),
        data_type: match f.data_type() {
            DataType::Secret => DataTypeDoc::Secret,
            DataType::Url => DataTypeDoc::Url,
            DataType::Integer => DataTypeDoc::Integer,
            DataType::Boolean => DataTypeDoc::Boolean,
            DataType::Picklist(choices) => DataTypeDoc::Picklist(choices.clone()),
            DataType::Text => DataTypeDoc::Text,
            _ => DataTypeDoc::String,
        },
        optional: f.requirement() == Requirement::Optional,
        per_customer: match f.tenancy() {
            Tenancy::Global => None,
            Tenancy::PerCustomer(EnteredBy::Organization) => Some(EnteredByDoc::Organization),
            Tenancy::PerCustomer(EnteredBy::Customer) => Some(EnteredByDoc::Customer),
        },
        visibility: match f.visibility() {
            Visibility::Customer => Some(FieldVisibilityDoc::Customer),
            Visibility::Programmatic => Some(FieldVisibilityDoc::Programmatic),
            _ => None,
        },
        default: f.default_value().map(Text::from),
        example: f.example().map(Text::from),
        pattern: validation.pattern.as_ref().map(|p| p.as_str().to_owned()),
        min: validation.min,
        max: validation.max,
        schemes: validation.schemes.clone(),
    }
}

/// A template as a manifest writes it; a stored secret as the reference
/// `options` names for it (by default `keep:existing`), never its value.
fn template_doc(
    project: &ProjectId,
    t: &ConnectionTemplate,
    options: &ExportOptions,
) -> Result<TemplateDoc, ExportError> {
    let fields = t
        .fields()
        .iter()
        .map(|f| {
            let values: Vec<(Layer, Text)> = match f.values() {
                ParamValues::Plain(layers) => layers
                    .iter()
                    .map(|(layer, value)| (layer.clone(), Text::from(value)))
                    .collect(),
                ParamValues::Secret(layers) => layers
                    .pairs()
                    .map(|(layer, entry)| {
                        let slot = SecretSlot {
                            project,
                            holder: SecretHolder::Template(t.name()),
                            param: f.name(),
                            layer,
                        };
                        Ok((layer.clone(), Text::from(secret_text(entry, options, slot)?)))
                    })
                    .collect::<Result<_, ExportError>>()?,
            };
            let mut doc = TemplateFieldDoc {
                secret: matches!(f.values(), ParamValues::Secret(_)),
                hidden: f.presentation() == Presentation::Hidden,
                overridable: f.overrides() == Overrides::Allowed,
                ..TemplateFieldDoc::default()
            };
            for (layer, text) in values {
                match layer {
                    Layer::Environment(e) => {
                        doc.environments.insert(e.to_string(), text);
                    }
                    // A template has default and environment values only.
                    _ => doc.default = Some(text),
                }
            }
            Ok((f.name().to_string(), doc))
        })
        .collect::<Result<_, ExportError>>()?;
    Ok(TemplateDoc {
        connection_type: t.connection_type().to_string(),
        label: label_doc(t.label(), t.name().as_str()),
        description: t.description().to_owned(),
        fields,
    })
}

fn param_doc(
    project: &ProjectId,
    c: &Connection,
    p: &Param,
    options: &ExportOptions,
) -> Result<ParamDoc, ExportError> {
    let mut doc = ParamDoc {
        secret: matches!(p.values(), ParamValues::Secret(_)),
        optional: p.requirement() == Requirement::Optional,
        description: p.description().to_owned(),
        per_customer: match p.tenancy() {
            Tenancy::Global => None,
            Tenancy::PerCustomer(EnteredBy::Organization) => Some(EnteredByDoc::Organization),
            Tenancy::PerCustomer(EnteredBy::Customer) => Some(EnteredByDoc::Customer),
        },
        ..ParamDoc::default()
    };
    // Customers in order of first appearance; one value alone stays short.
    let mut customers: Vec<(String, CustomerLayersDoc)> = Vec::new();
    fn entry(customers: &mut Vec<(String, CustomerLayersDoc)>, name: String) -> &mut CustomerLayersDoc {
        let i = match customers.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                customers.push((name, CustomerLayersDoc::default()));
                customers.len() - 1
            }
        };
        &mut customers[i].1
    }
    for (layer, text) in param_values(project, c, p, options)? {
        match layer {
            Layer::Default => doc.default = Some(text),
            Layer::Environment(e) => {
                doc.environments.insert(e.to_string(), text);
            }
            Layer::Customer(cust) => {
                entry(&mut customers, cust.to_string()).default = Some(text);
            }
            Layer::CustomerEnvironment(cust, e) => {
                entry(&mut customers, cust.to_string())
                    .environments
                    .insert(e.to_string(), text);
            }
        }
    }
    for (name, layers) in customers {
        let value = match layers {
            CustomerLayersDoc {
                default: Some(text),
                environments,
            } if environments.is_empty() => CustomerDoc::Value(text),
            other => CustomerDoc::Layers(other),
        };
        doc.customers.insert(name, value);
    }
    Ok(doc)
}

/// A parameter's values as the manifest writes them, in order: plain values
/// as they are, references to external stores as they are, stored secrets
/// as the reference `options` names for each (by default `keep:existing`),
/// never their value.
fn param_values(
    project: &ProjectId,
    c: &Connection,
    p: &Param,
    options: &ExportOptions,
) -> Result<Vec<(Layer, Text)>, ExportError> {
    let layers = match p.values() {
        ParamValues::Plain(layers) => {
            return Ok(layers
                .iter()
                .map(|(layer, value)| (layer.clone(), Text::from(value)))
                .collect());
        }
        ParamValues::Secret(layers) => layers,
    };
    let mut values = Vec::with_capacity(layers.len());
    for (layer, entry) in layers.pairs() {
        let slot = SecretSlot {
            project,
            holder: SecretHolder::Connection {
                scope: c.scope(),
                name: c.name(),
            },
            param: p.name(),
            layer,
        };
        values.push((layer.clone(), Text::from(secret_text(entry, options, slot)?)));
    }
    Ok(values)
}

/// One secret value as the manifest writes it: a reference to an external
/// store as it is (it is not secret, and applies back as the same
/// reference), a stored secret as the reference `options` names for `slot`
/// (by default `keep:existing`), never the value.
fn secret_text(
    entry: &SecretEntry,
    options: &ExportOptions,
    slot: SecretSlot<'_>,
) -> Result<String, ExportError> {
    let namer = match (entry, &options.namer) {
        (SecretEntry::External(r), _) => return Ok(r.to_string()),
        (SecretEntry::Stored(_), None) => return Ok(KEEP.to_owned()),
        (SecretEntry::Stored(_), Some(namer)) => namer,
    };
    let text = namer(&slot);
    if SecretRef::parse(&text).is_ok() {
        return Ok(text);
    }
    Err(match slot.holder {
        SecretHolder::Connection { name, .. } => ExportError::NotAReference {
            connection: name.clone(),
            param: slot.param.clone(),
            layer: slot.layer.to_string(),
        },
        SecretHolder::Template(template) => ExportError::TemplateNotAReference {
            template: template.clone(),
            field: slot.param.clone(),
            layer: slot.layer.to_string(),
        },
    })
}

impl Document {
    /// The document as text in `format`.
    pub fn to_text(&self, format: Format) -> Result<String, ExportError> {
        let fail = |message: String| ExportError::Format { format, message };
        match format {
            Format::Yaml => serde_saphyr::to_string(self).map_err(|e| fail(e.to_string())),
            Format::Toml => toml::to_string_pretty(self).map_err(|e| fail(e.to_string())),
            Format::Json => serde_json::to_string_pretty(self)
                .map(|mut s| {
                    s.push('\n');
                    s
                })
                .map_err(|e| fail(e.to_string())),
        }
    }
}
