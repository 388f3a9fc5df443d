//! Connection templates: values of a type pre-filled for every connection
//! made from the template, which may hide them and lock them.
//!
//! A connection made from a template refers to it
//! ([`ConnectionSpec::template`](super::ConnectionSpec::template)); it does
//! not copy its values. So changing a template's value changes what every
//! connection made from it resolves to, and the provenance says the value
//! came from the template (rule 7). A connection's own value for a field
//! wins over the template's, and is allowed only where the template's field
//! allows overriding it ([`Overrides`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::description::Text;
use super::external::{ExternalRef, ExternalRefError, IntoExternalRef, SecretEntry};
use super::ident::{CustomerId, Environment, ParamName, ParseError, ProjectId, TemplateName, TypeName};
use super::layer::{Layer, Layers};
use super::param::{MAX_VALUE_LEN, Param, ParamKind, ParamValues, ValueRef};
use super::problem::IntoIdent;
use super::secret::SecretValue;
use super::types::{TypeError, TypeProblem, TypeSubject};
use super::value::PlainValue;

/// Where a connection's value came from: its own value layers, or the
/// template it was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueOrigin<'a> {
    /// The connection's own value.
    Connection,
    /// The template's value.
    Template(&'a TemplateName),
}

/// **Rule 3 for a connection made from a template.** For environment `env`
/// and customer `customer`, the connection's own value of `param` wins if it
/// has one that applies (by rule 3 over its layers); if not, the template's
/// value does (by rule 3 over the template's default and environment
/// values). Only a field the template allows overriding can have a value of
/// its own (the registry refuses the others), so a locked field always
/// resolves to the template's value.
///
/// This is the only place the order between the two is written down.
pub fn effective_value<'a>(
    param: &'a Param,
    template: Option<&'a ConnectionTemplate>,
    env: &Environment,
    customer: Option<&CustomerId>,
) -> Option<(ValueOrigin<'a>, &'a Layer, ValueRef<'a>)> {
    if let Some((layer, value)) = param.values().pick(env, customer) {
        return Some((ValueOrigin::Connection, layer, value));
    }
    let template = template?;
    let field = template.field(param.name().as_str())?;
    let (layer, value) = field.values.pick(env, customer)?;
    Some((ValueOrigin::Template(&template.name), layer, value))
}

/// Whether a template's field is shown to the people making or configuring
/// a connection from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Presentation {
    /// Shown (the value, or for a secret whether it is set).
    #[default]
    Shown,
    /// Hidden: listings leave the field out for every person; only the
    /// host's code sees it (e.g. the organization's OAuth client).
    Hidden,
}

/// Whether a connection made from the template may set its own value for a
/// field the template fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Overrides {
    /// No: the template's value is the only one (writes setting one are
    /// refused).
    #[default]
    Locked,
    /// Yes: a connection's own value, where it has one for the environment
    /// and customer, wins over the template's.
    Allowed,
}

/// One field a template fills: its values (default and per environment),
/// whether it is hidden, whether connections may override it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TemplateField {
    name: ParamName,
    values: ParamValues,
    #[serde(default, skip_serializing_if = "is_shown")]
    presentation: Presentation,
    #[serde(default)]
    overrides: Overrides,
}

fn is_shown(p: &Presentation) -> bool {
    *p == Presentation::Shown
}

impl TemplateField {
    /// Starts a plain field.
    pub fn plain<N: IntoIdent<ParamName>>(name: N) -> TemplateFieldBuilder {
        TemplateFieldBuilder::new(name.into_ident(), ParamKind::Plain)
    }
    /// Starts a secret field.
    pub fn secret<N: IntoIdent<ParamName>>(name: N) -> TemplateFieldBuilder {
        TemplateFieldBuilder::new(name.into_ident(), ParamKind::Secret)
    }
    /// The field (a parameter of the connections).
    pub fn name(&self) -> &ParamName {
        &self.name
    }
    /// Plain or secret.
    pub fn kind(&self) -> ParamKind {
        match self.values {
            ParamValues::Plain(_) => ParamKind::Plain,
            ParamValues::Secret(_) => ParamKind::Secret,
        }
    }
    /// The values.
    pub fn values(&self) -> &ParamValues {
        &self.values
    }
    /// Shown or hidden.
    pub fn presentation(&self) -> Presentation {
        self.presentation
    }
    /// Whether connections may override it.
    pub fn overrides(&self) -> Overrides {
        self.overrides
    }
    /// The layers that have a value, without the values.
    pub fn layers(&self) -> Vec<&Layer> {
        match &self.values {
            ParamValues::Plain(l) => l.layers().collect(),
            ParamValues::Secret(l) => l.layers().collect(),
        }
    }
}

/// Builds a [`TemplateField`].
#[derive(Clone)]
pub struct TemplateFieldBuilder {
    name: Result<ParamName, ParseError>,
    kind: ParamKind,
    values: Vec<(Result<Layer, ParseError>, PendingValue)>,
    presentation: Presentation,
    overrides: Overrides,
}

/// A value given to a [`TemplateFieldBuilder`], checked by `build`.
#[derive(Clone)]
enum PendingValue {
    Text(SecretValue),
    External(Result<ExternalRef, ExternalRefError>),
}

impl fmt::Debug for TemplateFieldBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TemplateFieldBuilder")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("values", &self.values.len())
            .finish_non_exhaustive()
    }
}

impl TemplateFieldBuilder {
    fn new(name: Result<ParamName, ParseError>, kind: ParamKind) -> Self {
        TemplateFieldBuilder {
            name,
            kind,
            values: Vec::new(),
            presentation: Presentation::Shown,
            overrides: Overrides::Locked,
        }
    }
    /// Sets the value for every environment.
    pub fn default(mut self, value: impl Into<String>) -> Self {
        self.values
            .push((Ok(Layer::Default), PendingValue::Text(SecretValue::new(value))));
        self
    }
    /// Sets the value for one environment.
    pub fn env<E: IntoIdent<Environment>>(mut self, env: E, value: impl Into<String>) -> Self {
        self.values.push((
            env.into_ident().map(Layer::Environment),
            PendingValue::Text(SecretValue::new(value)),
        ));
        self
    }
    /// Sets the value for every environment to a reference to a secret in
    /// an external store (a secret field only), e.g. the organization's
    /// OAuth client secret kept in its vault: connections made from the
    /// template resolve to the store's current value, and the provenance
    /// names the template and the reference.
    ///
    /// ```
    /// use connective::model::{ConnectionTemplate, TemplateField};
    /// let template = ConnectionTemplate::builder("acme", "acme-slack", "slack-oauth2")
    ///     .field(TemplateField::secret("ClientSecret")
    ///         .default_ref("vault:secret/slack#client_secret")
    ///         .env_ref("production", "openbao:kv/prod:slack#client_secret")
    ///         .hidden())
    ///     .build()?;
    /// let field = template.field("ClientSecret").unwrap();
    /// assert_eq!(field.layers().len(), 2);
    /// # Ok::<(), connective::model::TypeError>(())
    /// ```
    pub fn default_ref(mut self, reference: impl IntoExternalRef) -> Self {
        self.values.push((
            Ok(Layer::Default),
            PendingValue::External(reference.into_external_ref()),
        ));
        self
    }
    /// Sets the value for one environment to a reference to a secret in an
    /// external store (see [`TemplateFieldBuilder::default_ref`]).
    pub fn env_ref<E: IntoIdent<Environment>>(mut self, env: E, reference: impl IntoExternalRef) -> Self {
        self.values.push((
            env.into_ident().map(Layer::Environment),
            PendingValue::External(reference.into_external_ref()),
        ));
        self
    }
    /// Hides the field from people ([`Presentation::Hidden`]).
    pub fn hidden(mut self) -> Self {
        self.presentation = Presentation::Hidden;
        self
    }
    /// Lets connections override the field ([`Overrides::Allowed`]; locked
    /// by default).
    pub fn overridable(mut self) -> Self {
        self.overrides = Overrides::Allowed;
        self
    }

    fn build(self, index: usize, problems: &mut Vec<TypeProblem>) -> Option<TemplateField> {
        let name = match self.name {
            Ok(n) => n,
            Err(error) => {
                problems.push(TypeProblem::Ident {
                    field: format!("fields[{index}].name"),
                    error,
                });
                return None;
            }
        };
        let mut layers = Vec::with_capacity(self.values.len());
        for (layer, value) in self.values {
            let layer = match layer {
                Ok(l) => l,
                Err(error) => {
                    problems.push(TypeProblem::Ident {
                        field: format!("fields.{name}.environment"),
                        error,
                    });
                    continue;
                }
            };
            match value {
                PendingValue::Text(v) => layers.push((layer, SecretEntry::Stored(v))),
                PendingValue::External(Ok(r)) => layers.push((layer, SecretEntry::from(r))),
                PendingValue::External(Err(error)) => problems.push(TypeProblem::BadExternalRef {
                    field: name.clone(),
                    layer,
                    error,
                }),
            }
        }
        let values = match self.kind {
            ParamKind::Plain => {
                let mut plain = Vec::with_capacity(layers.len());
                for (l, v) in layers {
                    match v {
                        SecretEntry::Stored(v) => plain.push((l, PlainValue::from(v.expose()))),
                        SecretEntry::External(_) => {
                            problems.push(TypeProblem::ExternalOnPlain { field: name.clone() });
                        }
                    }
                }
                ParamValues::Plain(Layers::from_vec(plain))
            }
            ParamKind::Secret => ParamValues::Secret(Layers::from_vec(layers)),
        };
        Some(TemplateField {
            name,
            values,
            presentation: self.presentation,
            overrides: self.overrides,
        })
    }
}

/// A template of a connection type: "Acme's Slack app" pre-fills the
/// organization's client ID and secret (hidden, locked), so a connection
/// made from it asks only for the rest.
///
/// **Every template is valid** on its own (labels, bounded values, at most
/// one value per layer, default and environment values only); that it fits
/// its type is checked by the registry on every write
/// ([`ConnectionType::check_template`](super::ConnectionType::check_template)).
///
/// ```
/// use connective::model::{ConnectionTemplate, TemplateField};
/// let template = ConnectionTemplate::builder("acme", "acme-slack", "slack-oauth2")
///     .label("Acme's Slack app")
///     .field(TemplateField::plain("ClientID").default("acme-client").hidden())
///     .field(TemplateField::secret("ClientSecret").default("acme-secret").hidden())
///     .field(TemplateField::plain("Scopes").default("chat:write").overridable())
///     .build()?;
/// assert_eq!(template.fields().len(), 3);
/// assert!(!format!("{template:?}").contains("acme-secret"));
/// # Ok::<(), connective::model::TypeError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "TemplateFields")]
pub struct ConnectionTemplate {
    project: ProjectId,
    name: TemplateName,
    label: String,
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    description: Text,
    connection_type: TypeName,
    fields: Box<[TemplateField]>,
}

/// A serialized [`ConnectionTemplate`] before its checks run.
#[derive(Deserialize)]
#[serde(rename = "ConnectionTemplate")]
struct TemplateFields {
    project: ProjectId,
    name: TemplateName,
    label: String,
    #[serde(default)]
    description: Text,
    connection_type: TypeName,
    fields: Box<[TemplateField]>,
}

impl TryFrom<TemplateFields> for ConnectionTemplate {
    type Error = TypeError;
    fn try_from(f: TemplateFields) -> Result<Self, TypeError> {
        ConnectionTemplate {
            project: f.project,
            name: f.name,
            label: f.label,
            description: f.description,
            connection_type: f.connection_type,
            fields: f.fields,
        }
        .checked()
    }
}

impl ConnectionTemplate {
    /// Starts a template of type `connection_type` in `project`.
    pub fn builder<P: IntoIdent<ProjectId>, N: IntoIdent<TemplateName>, T: IntoIdent<TypeName>>(
        project: P,
        name: N,
        connection_type: T,
    ) -> ConnectionTemplateBuilder {
        ConnectionTemplateBuilder {
            project: project.into_ident(),
            name: name.into_ident(),
            connection_type: connection_type.into_ident(),
            label: None,
            description: String::new(),
            fields: Vec::new(),
        }
    }

    /// The project.
    pub fn project(&self) -> &ProjectId {
        &self.project
    }
    /// The name, unique in the project.
    pub fn name(&self) -> &TemplateName {
        &self.name
    }
    /// The label shown to people.
    pub fn label(&self) -> &str {
        &self.label
    }
    /// The description.
    pub fn description(&self) -> &str {
        self.description.as_str()
    }
    /// The type it fills.
    pub fn connection_type(&self) -> &TypeName {
        &self.connection_type
    }
    /// The fields it fills, in order.
    pub fn fields(&self) -> &[TemplateField] {
        &self.fields
    }
    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&TemplateField> {
        self.fields.iter().find(|f| f.name.as_str() == name)
    }

    /// Sets one value of a field, checked as the builder would (an operator
    /// changing the organization's client ID for production).
    pub fn set_value(
        &mut self,
        field: &ParamName,
        layer: Layer,
        value: impl Into<String>,
    ) -> Result<(), TypeError> {
        let value = value.into();
        let mut problems = Vec::new();
        check_template_value(field, &layer, value.len(), &mut problems);
        let Some(f) = self.fields.iter_mut().find(|f| &f.name == field) else {
            problems.push(TypeProblem::UnknownField { field: field.clone() });
            return Err(self.error(problems));
        };
        if !problems.is_empty() {
            return Err(self.error(problems));
        }
        match &mut f.values {
            ParamValues::Plain(l) => {
                l.set(layer, PlainValue::from(value));
            }
            ParamValues::Secret(l) => {
                l.set(layer, SecretEntry::Stored(SecretValue::new(value)));
            }
        }
        Ok(())
    }

    /// Sets one value of a secret field to a reference to an external
    /// store, checked as the builder would (the organization moving its
    /// client secret into its vault).
    pub fn set_ref(
        &mut self,
        field: &ParamName,
        layer: Layer,
        reference: impl IntoExternalRef,
    ) -> Result<(), TypeError> {
        let mut problems = Vec::new();
        let reference = match reference.into_external_ref() {
            Ok(r) => Some(r),
            Err(error) => {
                problems.push(TypeProblem::BadExternalRef {
                    field: field.clone(),
                    layer: layer.clone(),
                    error,
                });
                None
            }
        };
        let len = reference.as_ref().map_or(0, |r| r.to_string().len());
        check_template_value(field, &layer, len, &mut problems);
        let Some(f) = self.fields.iter_mut().find(|f| &f.name == field) else {
            problems.push(TypeProblem::UnknownField { field: field.clone() });
            return Err(self.error(problems));
        };
        match (&mut f.values, reference) {
            (ParamValues::Secret(l), Some(r)) if problems.is_empty() => {
                l.set(layer, SecretEntry::from(r));
                Ok(())
            }
            (ParamValues::Plain(_), _) => {
                problems.push(TypeProblem::ExternalOnPlain { field: field.clone() });
                Err(self.error(problems))
            }
            _ => Err(self.error(problems)),
        }
    }

    fn error(&self, problems: Vec<TypeProblem>) -> TypeError {
        TypeError {
            type_name: self.connection_type.to_string(),
            subject: TypeSubject::Template(self.name.to_string()),
            problems,
        }
    }

    fn checked(self) -> Result<Self, TypeError> {
        let mut problems = Vec::new();
        check_template(
            &self.label,
            self.description.as_str(),
            &self.fields,
            &mut problems,
        );
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(self.error(problems))
        }
    }
}

/// One template value: bounded, and for everybody (default or an
/// environment), never for one customer.
fn check_template_value(field: &ParamName, layer: &Layer, len: usize, problems: &mut Vec<TypeProblem>) {
    if len > MAX_VALUE_LEN {
        problems.push(TypeProblem::TooLong {
            what: format!("the value of template field {field} ({layer})"),
            len,
            max: MAX_VALUE_LEN,
        });
    }
    if layer.customer().is_some() {
        problems.push(TypeProblem::CustomerValueInTemplate {
            field: field.clone(),
            layer: layer.clone(),
        });
    }
}

/// **The checks of a template** on its own.
fn check_template(label: &str, description: &str, fields: &[TemplateField], problems: &mut Vec<TypeProblem>) {
    super::types::check_heading(label, description, fields.len(), problems);
    for (i, f) in fields.iter().enumerate() {
        if fields[..i].iter().any(|g| g.name == f.name) {
            problems.push(TypeProblem::DuplicateField {
                field: f.name.clone(),
            });
            continue;
        }
        let pairs: Vec<(&Layer, usize)> = match &f.values {
            ParamValues::Plain(l) => l.pairs().map(|(l, v)| (l, v.len())).collect(),
            ParamValues::Secret(l) => l
                .pairs()
                .map(|(l, v)| match v {
                    SecretEntry::Stored(v) => (l, v.expose().len()),
                    SecretEntry::External(r) => (l, r.to_string().len()),
                })
                .collect(),
        };
        for (j, (layer, len)) in pairs.iter().enumerate() {
            check_template_value(&f.name, layer, *len, problems);
            if pairs[..j].iter().any(|(other, _)| other == layer) {
                problems.push(TypeProblem::TooMany {
                    what: format!("values of template field {} for the {layer}", f.name),
                    count: 2,
                    max: 1,
                });
            }
        }
    }
}

/// Builds a [`ConnectionTemplate`]; every problem is reported at once by
/// [`ConnectionTemplateBuilder::build`].
#[derive(Debug, Clone)]
pub struct ConnectionTemplateBuilder {
    project: Result<ProjectId, ParseError>,
    name: Result<TemplateName, ParseError>,
    connection_type: Result<TypeName, ParseError>,
    label: Option<String>,
    description: String,
    fields: Vec<TemplateFieldBuilder>,
}

impl ConnectionTemplateBuilder {
    /// Sets the label (default: the name).
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
    /// Sets the description.
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }
    /// Appends a field.
    pub fn field(mut self, field: TemplateFieldBuilder) -> Self {
        self.fields.push(field);
        self
    }

    /// Validates everything and returns the template, or every problem.
    pub fn build(self) -> Result<ConnectionTemplate, TypeError> {
        let mut problems = Vec::new();
        let type_label = self
            .connection_type
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        fn ident<T>(r: Result<T, ParseError>, field: &str, problems: &mut Vec<TypeProblem>) -> Option<T> {
            r.map_err(|error| {
                problems.push(TypeProblem::Ident {
                    field: field.into(),
                    error,
                })
            })
            .ok()
        }
        let project = ident(self.project, "project", &mut problems);
        let name: Option<TemplateName> = ident(self.name, "name", &mut problems);
        let connection_type: Option<TypeName> = ident(self.connection_type, "connection_type", &mut problems);
        let fields: Vec<TemplateField> = self
            .fields
            .into_iter()
            .enumerate()
            .filter_map(|(i, f)| f.build(i, &mut problems))
            .collect();
        let label = self
            .label
            .unwrap_or_else(|| name.as_ref().map(ToString::to_string).unwrap_or_default());
        check_template(&label, &self.description, &fields, &mut problems);
        match (project, name, connection_type) {
            (Some(project), Some(name), Some(connection_type)) if problems.is_empty() => {
                Ok(ConnectionTemplate {
                    project,
                    name,
                    label,
                    description: Text::new(self.description),
                    connection_type,
                    fields: fields.into_boxed_slice(),
                })
            }
            (_, name, _) => Err(TypeError {
                type_name: type_label,
                subject: TypeSubject::Template(name.map(|n| n.to_string()).unwrap_or_default()),
                problems,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_hold_values_for_everybody_only() {
        let err = ConnectionTemplate::builder("acme", "t", "slack")
            .field(TemplateField::plain("A").default("x").default("y"))
            .field(TemplateField::plain("A"))
            .field(TemplateField::plain("B").env("Prod", "x"))
            .build()
            .unwrap_err();
        assert!(
            err.problems
                .iter()
                .any(|p| matches!(p, TypeProblem::DuplicateField { .. }))
        );
        assert!(
            err.problems
                .iter()
                .any(|p| matches!(p, TypeProblem::TooMany { count: 2, .. }))
        );
        assert!(
            err.problems
                .iter()
                .any(|p| matches!(p, TypeProblem::Ident { .. }))
        );
        let mut t = ConnectionTemplate::builder("acme", "t", "slack")
            .field(TemplateField::secret("S").default("old-secret"))
            .build()
            .unwrap();
        let s: ParamName = "S".parse().unwrap();
        let e = t
            .set_value(&s, Layer::Customer("globex".parse().unwrap()), "x")
            .unwrap_err();
        assert!(matches!(
            e.problems[0],
            TypeProblem::CustomerValueInTemplate { .. }
        ));
        t.set_value(&s, Layer::Environment(Environment::production()), "new-secret")
            .unwrap();
        assert_eq!(t.field("S").unwrap().layers().len(), 2);
        assert!(!format!("{t:?} {e}").contains("secret\""));
    }

    #[test]
    fn a_template_reads_back_what_it_writes() {
        let t = ConnectionTemplate::builder("acme", "t", "slack")
            .label("Acme Slack")
            .field(
                TemplateField::plain("ClientID")
                    .default("c")
                    .env("production", "p")
                    .hidden(),
            )
            .field(TemplateField::plain("Scopes").default("x").overridable())
            .build()
            .unwrap();
        let json = serde_json::to_value(&t).unwrap();
        let back: ConnectionTemplate = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
        assert_eq!(
            back.field("ClientID").unwrap().presentation(),
            Presentation::Hidden
        );
        assert_eq!(back.field("Scopes").unwrap().overrides(), Overrides::Allowed);
        let mut bad = json;
        bad["fields"][0]["values"]["plain"] = serde_json::json!([[{"customer": "globex"}, "x"]]);
        assert!(serde_json::from_value::<ConnectionTemplate>(bad).is_err());
    }
}
