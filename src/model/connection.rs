//! Connections: a scope, a target, an auth scheme and ordered parameters;
//! the spec a host asks for, its builder and its checks, and the stored
//! record with its Connection ID.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::auth::{AuthField, AuthScheme, FieldNeed};
use super::description::{Text, check_description};
use super::ident::{
    ConnectionId, ConnectionName, IntegrationId, ParamName, ParseError, ProjectId, TemplateName, TypeName,
    shorten,
};
use super::layer::Layer;
use super::oauth::AppOwner;
use super::param::{Param, ParamBuilder, ParamKind, Requirement, Tenancy, check_params};
use super::problem::{IntoIdent, SpecError, SpecProblem, ident_or_problem, label_of};
use super::target::{Target, check_target};
use super::template::ConnectionTemplate;
use super::types::{ConnectionType, DataKind};

/// Who may use a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every integration of the project (Prismatic: a *reusable* connection).
    Project,
    /// That one integration only (Prismatic: *integration-specific*).
    Integration(IntegrationId),
}

impl Scope {
    /// The integration, for an integration-scope connection.
    pub fn integration(&self) -> Option<&IntegrationId> {
        match self {
            Scope::Project => None,
            Scope::Integration(i) => Some(i),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Project => f.write_str("project scope"),
            Scope::Integration(i) => write!(f, "integration scope ({i})"),
        }
    }
}

/// The most parameters a connection may have.
pub const MAX_PARAMS: usize = 256;

/// **The checks of a connection spec**, beyond its identifiers (which their
/// types check when they are parsed): lengths and counts, the rules of each
/// parameter's values, and what the auth scheme and target need. The builder,
/// deserialization (of a spec and of a stored connection) and every other way
/// a spec is made run exactly this; `problems` gets every problem found.
fn check_spec_body(
    description: &str,
    target: Option<&Target>,
    auth: AuthScheme,
    params: &[Param],
    extras: Option<&Extras>,
    problems: &mut Vec<SpecProblem>,
) {
    check_description(|| "description".into(), description, problems);
    if let Some(x) = extras
        && x.template.is_some()
        && x.connection_type.is_none()
    {
        problems.push(SpecProblem::TemplateWithoutType);
    }
    if let Some(target) = target {
        check_target(target, problems);
    }
    if params.len() > MAX_PARAMS {
        problems.push(SpecProblem::TooManyParams {
            count: params.len(),
            max: MAX_PARAMS,
        });
    }
    check_params(params, problems);
    if let Some(target) = target {
        check_auth_and_target(auth, target, params, problems);
    }
}

/// Whether customers' own flows in the host's embedded builder may use a
/// connection (Prismatic's embedded workflow builder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BuilderAccess {
    /// Not offered to customers' flows (the default).
    #[default]
    Hidden,
    /// Offered to the flows customers build, within its scope.
    Available,
}

/// What few connections have: a description, a type, a template, builder
/// access, and for a stored [`Connection`] its managed OAuth application.
/// Boxed behind one pointer (memory per connection is a performance target).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Extras {
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    description: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connection_type: Option<TypeName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    template: Option<TemplateName>,
    #[serde(default, skip_serializing_if = "is_hidden")]
    builder: BuilderAccess,
    /// [`Connection::oauth_app`]: set by [`Connection::new`] alone (a
    /// spec's own builder and fields have none), serialized by
    /// [`Connection`], never as part of the spec.
    #[serde(skip)]
    oauth_app: Option<AppOwner>,
}

fn is_hidden(b: &BuilderAccess) -> bool {
    *b == BuilderAccess::Hidden
}

impl Extras {
    /// `None` when everything is at its default.
    fn boxed(
        description: Text,
        connection_type: Option<TypeName>,
        template: Option<TemplateName>,
        builder: BuilderAccess,
    ) -> Option<Box<Extras>> {
        let empty = description.is_empty() && connection_type.is_none() && template.is_none();
        (!empty || builder != BuilderAccess::Hidden).then(|| {
            Box::new(Extras {
                description,
                connection_type,
                template,
                builder,
                oauth_app: None,
            })
        })
    }

    fn is_default(&self) -> bool {
        *self == Extras::default()
    }
}

/// What a host asks for: a connection before it has an ID. Built and validated
/// by [`ConnectionSpec::project`] / [`ConnectionSpec::integration`].
///
/// **Every spec is valid.** Each way to get one runs the same checks: the
/// builder, deserialization (a spec sent as JSON, or a stored
/// [`Connection`] read back), and the edits [`ConnectionSpec::set_value`] and
/// [`ConnectionSpec::remove_value`]. So a registry can trust a spec whatever
/// path it took; an invalid one is refused where it comes in, with a
/// [`SpecError`] listing every problem (through serde, as the deserializer's
/// error).
///
/// ```
/// use connective::model::ConnectionSpec;
/// let json = r#"{"project": "acme", "scope": "project", "name": "crm",
///     "target": {"external": {"service": "crm"}}, "auth": "api_key", "params": []}"#;
/// let err = serde_json::from_str::<ConnectionSpec>(json).unwrap_err();
/// assert!(err.to_string().contains("needs at least one secret parameter"), "{err}");
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "SpecFields")]
pub struct ConnectionSpec {
    project: ProjectId,
    scope: Scope,
    name: ConnectionName,
    target: Target,
    auth: AuthScheme,
    params: Box<[Param]>,
    /// The description, type, template and builder access, serialized as
    /// fields of their own.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    extras: Option<Box<Extras>>,
}

/// A serialized [`ConnectionSpec`] before its checks run.
#[derive(Deserialize)]
#[serde(rename = "ConnectionSpec")]
struct SpecFields {
    project: ProjectId,
    scope: Scope,
    name: ConnectionName,
    #[serde(default)]
    description: Text,
    target: Target,
    auth: AuthScheme,
    params: Box<[Param]>,
    #[serde(default)]
    connection_type: Option<TypeName>,
    #[serde(default)]
    template: Option<TemplateName>,
    #[serde(default)]
    builder: BuilderAccess,
}

impl TryFrom<SpecFields> for ConnectionSpec {
    type Error = SpecError;
    fn try_from(f: SpecFields) -> Result<Self, SpecError> {
        ConnectionSpec {
            project: f.project,
            scope: f.scope,
            name: f.name,
            target: f.target,
            auth: f.auth,
            params: f.params,
            extras: Extras::boxed(f.description, f.connection_type, f.template, f.builder),
        }
        .checked()
    }
}

impl ConnectionSpec {
    /// Starts a project-scope connection (used by every integration of the
    /// project).
    ///
    /// ```
    /// use connective::model::{AuthScheme, ConnectionSpec, Param, Target};
    /// let spec = ConnectionSpec::project("acme", "twilio")
    ///     .target(Target::external("twilio"))
    ///     .auth(AuthScheme::ApiKey)
    ///     .param(Param::plain("ServiceURL").default("https://api.twilio.com"))
    ///     .param(Param::secret("ApiKey").env("production", "sk_live").env("development", "sk_test"))
    ///     .build()?;
    /// assert_eq!(spec.params().len(), 2);
    /// # Ok::<(), connective::model::SpecError>(())
    /// ```
    pub fn project<P: IntoIdent<ProjectId>, N: IntoIdent<ConnectionName>>(
        project: P,
        name: N,
    ) -> ConnectionBuilder {
        ConnectionBuilder::new(project.into_ident(), Ok(Scope::Project), name.into_ident())
    }

    /// Starts an integration-scope connection (used by that integration only).
    pub fn integration<P: IntoIdent<ProjectId>, I: IntoIdent<IntegrationId>, N: IntoIdent<ConnectionName>>(
        project: P,
        integration: I,
        name: N,
    ) -> ConnectionBuilder {
        ConnectionBuilder::new(
            project.into_ident(),
            integration.into_ident().map(Scope::Integration),
            name.into_ident(),
        )
    }

    /// The project.
    pub fn project_id(&self) -> &ProjectId {
        &self.project
    }
    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }
    /// The name, unique per scope.
    pub fn name(&self) -> &ConnectionName {
        &self.name
    }
    /// The description.
    pub fn description(&self) -> &str {
        self.extras.as_ref().map_or("", |x| x.description.as_str())
    }
    /// What the connection reaches.
    pub fn target(&self) -> &Target {
        &self.target
    }
    /// How it authenticates.
    pub fn auth(&self) -> AuthScheme {
        self.auth
    }
    /// The declared parameters, in order (a managed OAuth application's
    /// parameters are not among them; see [`AppField`](super::AppField)).
    pub fn params(&self) -> &[Param] {
        &self.params
    }
    /// A declared parameter by name.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name().as_str() == name)
    }
    /// The connection type it follows, if any: the registry checks the
    /// connection against it on every write.
    pub fn connection_type(&self) -> Option<&TypeName> {
        self.extras.as_ref()?.connection_type.as_ref()
    }
    /// The template it was made from, if any: values of the template's
    /// fields come from the template.
    pub fn template(&self) -> Option<&TemplateName> {
        self.extras.as_ref()?.template.as_ref()
    }
    /// Whether customers' own flows may use it.
    pub fn builder_access(&self) -> BuilderAccess {
        self.extras.as_ref().map_or(BuilderAccess::Hidden, |x| x.builder)
    }

    /// The spec, if it passes the checks every constructor runs.
    fn checked(self) -> Result<Self, SpecError> {
        let mut problems = Vec::new();
        check_spec_body(
            self.description(),
            Some(&self.target),
            self.auth,
            &self.params,
            self.extras.as_deref(),
            &mut problems,
        );
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(SpecError::of(&self, problems))
        }
    }

    /// Sets one value of a declared parameter, validated as the builder would:
    /// a customer entering its own value, an organization setting a customer's
    /// value on its behalf, an operator changing a production override.
    ///
    /// ```
    /// use connective::model::{ConnectionSpec, EnteredBy, Layer, Param};
    /// let mut spec = ConnectionSpec::project("acme", "slack")
    ///     .param(Param::secret("BotToken").per_customer(EnteredBy::Customer))
    ///     .build()?;
    /// spec.set_value(&"BotToken".parse()?, Layer::Customer("globex".parse()?), "xoxb-1")?;
    /// assert!(spec.set_value(&"BotToken".parse()?, Layer::Default, "x").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_value(
        &mut self,
        param: &ParamName,
        layer: Layer,
        value: impl Into<String>,
    ) -> Result<(), SpecProblem> {
        match self.params.iter_mut().find(|p| p.name() == param) {
            Some(p) => p.set_value(layer, value.into()),
            None => Err(SpecProblem::UnknownParam { param: param.clone() }),
        }
    }

    /// Sets one value of a declared secret parameter to a reference to an
    /// external store (see [`ExternalRef`](super::ExternalRef)), validated
    /// as the builder would: nothing of the secret is copied, resolution
    /// reads the store's current value.
    ///
    /// ```
    /// use connective::model::{ConnectionSpec, Layer, Param};
    /// let mut spec = ConnectionSpec::project("acme", "crm")
    ///     .param(Param::secret("Password").default("dev-password"))
    ///     .param(Param::plain("ServiceURL").default("https://crm"))
    ///     .build()?;
    /// let prod = Layer::Environment("production".parse()?);
    /// spec.set_external(&"Password".parse()?, prod.clone(), "vault:secret/crm#password".parse()?)?;
    /// assert!(spec.set_external(&"ServiceURL".parse()?, prod, "vault:secret/crm#url".parse()?).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_external(
        &mut self,
        param: &ParamName,
        layer: Layer,
        reference: super::ExternalRef,
    ) -> Result<(), SpecProblem> {
        match self.params.iter_mut().find(|p| p.name() == param) {
            Some(p) => p.set_external(layer, reference),
            None => Err(SpecProblem::UnknownParam { param: param.clone() }),
        }
    }

    /// Removes one value of a declared parameter; returns whether it had one.
    pub fn remove_value(&mut self, param: &ParamName, layer: &Layer) -> Result<bool, SpecProblem> {
        match self.params.iter_mut().find(|p| p.name() == param) {
            Some(p) => Ok(p.remove_value(layer)),
            None => Err(SpecProblem::UnknownParam { param: param.clone() }),
        }
    }
}

/// Builds a [`ConnectionSpec`]. Every problem is reported at once by
/// [`ConnectionBuilder::build`].
#[derive(Debug, Clone)]
pub struct ConnectionBuilder {
    project: Result<ProjectId, ParseError>,
    scope: Result<Scope, ParseError>,
    name: Result<ConnectionName, ParseError>,
    description: String,
    target: Result<Target, (&'static str, ParseError)>,
    auth: AuthScheme,
    params: Vec<ParamBuilder>,
    connection_type: Option<Result<TypeName, ParseError>>,
    template: Option<Result<TemplateName, ParseError>>,
    builder: BuilderAccess,
    /// Problems of [`ConnectionBuilder::value`] calls, reported by `build`.
    deferred: Vec<SpecProblem>,
}

impl ConnectionBuilder {
    fn new(
        project: Result<ProjectId, ParseError>,
        scope: Result<Scope, ParseError>,
        name: Result<ConnectionName, ParseError>,
    ) -> Self {
        ConnectionBuilder {
            project,
            scope,
            name,
            description: String::new(),
            target: Ok(Target::External {
                service: Box::default(),
            }),
            auth: AuthScheme::None,
            params: Vec::new(),
            connection_type: None,
            template: None,
            builder: BuilderAccess::Hidden,
            deferred: Vec::new(),
        }
    }

    /// Sets the description.
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Sets the target (default: an unnamed external service).
    pub fn target(mut self, target: Target) -> Self {
        self.target = Ok(target);
        self
    }

    /// Targets a platform integration, parsing its identifiers.
    pub fn platform_target<P: IntoIdent<ProjectId>, I: IntoIdent<IntegrationId>>(
        mut self,
        project: P,
        integration: I,
    ) -> Self {
        self.target = match (project.into_ident(), integration.into_ident()) {
            (Ok(p), Ok(i)) => Ok(Target::platform(p, i)),
            (Err(e), _) => Err(("target.project", e)),
            (_, Err(e)) => Err(("target.integration", e)),
        };
        self
    }

    /// Sets the auth scheme (default: none).
    pub fn auth(mut self, auth: AuthScheme) -> Self {
        self.auth = auth;
        self
    }

    /// Appends a parameter.
    pub fn param(mut self, param: ParamBuilder) -> Self {
        self.params.push(param);
        self
    }

    /// Names the connection type the connection follows (checked by the
    /// registry on every write), without declaring anything; see
    /// [`ConnectionBuilder::of_type`] to declare its fields too.
    pub fn type_name<T: IntoIdent<TypeName>>(mut self, name: T) -> Self {
        self.connection_type = Some(name.into_ident());
        self
    }

    /// Names the template the connection is made from (checked by the
    /// registry on every write), without declaring anything; see
    /// [`ConnectionBuilder::of_template`] to declare the type's fields too.
    pub fn template_name<T: IntoIdent<TemplateName>>(mut self, name: T) -> Self {
        self.template = Some(name.into_ident());
        self
    }

    /// Follows `connection_type`: names it, takes its auth scheme, and
    /// declares each of its fields not declared yet as the field says
    /// (secret or plain, required or optional, global or per customer, its
    /// default as the default value).
    ///
    /// ```
    /// use connective::model::{ConnectionSpec, ConnectionType, Field, Target, TargetKind};
    /// let postgres = ConnectionType::builder("postgresql").target(TargetKind::Database)
    ///     .field(Field::string("HostName")).field(Field::integer("Port").default("5432"))
    ///     .field(Field::string("Username")).field(Field::secret("Password"))
    ///     .field(Field::string("DatabaseName")).build()?;
    /// let spec = ConnectionSpec::project("acme", "warehouse")
    ///     .target(Target::database("postgresql"))
    ///     .of_type(&postgres)
    ///     .value("HostName", connective::model::Layer::Default, "db.internal")
    ///     .build()?;
    /// assert_eq!(spec.connection_type().unwrap().as_str(), "postgresql");
    /// assert_eq!(spec.params().len(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn of_type(self, connection_type: &ConnectionType) -> Self {
        self.declare(connection_type, None)
    }

    /// Follows `template` of `connection_type`, as [`ConnectionBuilder::of_type`]
    /// does, and names the template: the fields it fills get no value of
    /// their own (their values come from the template).
    pub fn of_template(mut self, connection_type: &ConnectionType, template: &ConnectionTemplate) -> Self {
        self.template = Some(Ok(template.name().clone()));
        self.declare(connection_type, Some(template))
    }

    fn declare(mut self, ty: &ConnectionType, template: Option<&ConnectionTemplate>) -> Self {
        self.connection_type = Some(Ok(ty.name().clone()));
        self.auth = ty.auth();
        for field in ty.fields() {
            let declared = self.params.iter().any(|p| p.name_is(field.name().as_str()));
            if declared {
                continue;
            }
            let mut p = match field.param_kind() {
                ParamKind::Plain => Param::plain(field.name()),
                ParamKind::Secret => Param::secret(field.name()),
            };
            if field.requirement() == Requirement::Optional {
                p = p.optional();
            }
            if let Tenancy::PerCustomer(by) = field.tenancy() {
                p = p.per_customer(by);
            }
            let filled = template.is_some_and(|t| t.field(field.name().as_str()).is_some());
            if let Some(default) = field.default_value()
                && !filled
            {
                p = p.default(default);
            }
            self.params.push(p);
        }
        self
    }

    /// Sets one value of a declared parameter (e.g. one [`ConnectionBuilder::of_type`]
    /// declared), replacing the one given for that layer before (a type's
    /// default); a parameter not declared is reported by
    /// [`ConnectionBuilder::build`].
    pub fn value<N: IntoIdent<ParamName>>(
        mut self,
        param: N,
        layer: Layer,
        value: impl Into<String>,
    ) -> Self {
        match param.into_ident() {
            Ok(name) => match self.params.iter().position(|p| p.name_is(name.as_str())) {
                Some(i) => {
                    let p = self.params.remove(i);
                    self.params.insert(i, p.replace(layer, value));
                }
                None => self.deferred.push(SpecProblem::UnknownParam { param: name }),
            },
            Err(error) => self.deferred.push(SpecProblem::Ident {
                field: "value.param".into(),
                error,
            }),
        }
        self
    }

    /// Offers the connection to customers' own flows in the embedded
    /// builder, or not.
    pub fn builder_access(mut self, access: BuilderAccess) -> Self {
        self.builder = access;
        self
    }

    /// Validates everything and returns the spec, or every problem found.
    pub fn build(self) -> Result<ConnectionSpec, SpecError> {
        let mut problems = Vec::new();
        let label = label_of(&self.name);
        let project_label = label_of(&self.project);
        let scope_label = match &self.scope {
            Ok(scope) => scope.to_string(),
            Err(_) => match label_of::<Scope>(&self.scope) {
                given if given.is_empty() => String::new(),
                given => format!("integration scope ({given})"),
            },
        };
        let project = ident_or_problem(self.project, "project", &mut problems);
        let scope = ident_or_problem(self.scope, "scope.integration", &mut problems);
        let name = ident_or_problem(self.name, "name", &mut problems);
        let target = self
            .target
            .map_err(|(field, error)| {
                problems.push(SpecProblem::Ident {
                    field: field.into(),
                    error,
                })
            })
            .ok();
        let params: Vec<Param> = self
            .params
            .into_iter()
            .enumerate()
            .filter_map(|(index, builder)| builder.build(index, &mut problems))
            .collect();
        problems.extend(self.deferred);
        let connection_type = self
            .connection_type
            .and_then(|t| ident_or_problem(t, "connection_type", &mut problems));
        let template = self
            .template
            .and_then(|t| ident_or_problem(t, "template", &mut problems));
        let extras = Extras::boxed(
            Text::new(self.description.clone()),
            connection_type,
            template,
            self.builder,
        );
        check_spec_body(
            &self.description,
            target.as_ref(),
            self.auth,
            &params,
            extras.as_deref(),
            &mut problems,
        );
        match (project, scope, name, target) {
            (Some(project), Some(scope), Some(name), Some(target)) if problems.is_empty() => {
                Ok(ConnectionSpec {
                    project,
                    scope,
                    name,
                    target,
                    auth: self.auth,
                    params: params.into_boxed_slice(),
                    extras,
                })
            }
            _ => Err(SpecError {
                project: project_label,
                scope: scope_label,
                connection: label,
                problems,
            }),
        }
    }
}

fn check_auth_and_target(
    auth: AuthScheme,
    target: &Target,
    params: &[Param],
    problems: &mut Vec<SpecProblem>,
) {
    if auth.managed_oauth().is_some() && !matches!(target, Target::Platform(_)) {
        problems.push(SpecProblem::ManagedOAuthNeedsPlatform {
            target: shorten(&target.to_string()),
        });
    }
    for p in params {
        if auth.supplies(p.name().as_str()) {
            problems.push(SpecProblem::AppSuppliedParam {
                param: p.name().clone(),
            });
        }
    }
    if matches!(auth, AuthScheme::ApiKey | AuthScheme::Basic)
        && !params.iter().any(|p| p.kind() == ParamKind::Secret)
    {
        problems.push(SpecProblem::NeedsSecret { scheme: auth });
    }
    let on_connection = auth.fields().iter().filter(|f| f.on_connection());
    check_declared(None, on_connection, params, problems);
    if let Target::Database { engine } = target {
        let what = format!("a {engine} database connection");
        check_declared(Some(&what), AuthField::DATABASE.iter(), params, problems);
    }
}

/// **The fields an auth scheme or a database target needs**, on a
/// connection: each declared, secret exactly when its kind is, and required
/// when the scheme needs it so.
fn check_declared<'a>(
    what: Option<&str>,
    needs: impl Iterator<Item = &'a AuthField>,
    params: &[Param],
    problems: &mut Vec<SpecProblem>,
) {
    for need in needs {
        match params.iter().find(|p| p.name().as_str() == need.param) {
            None => problems.push(SpecProblem::MissingParam {
                what: what.unwrap_or(need.needed_by).to_owned(),
                param: need.param,
            }),
            Some(p) => {
                let secret = need.kind == DataKind::Secret;
                if secret && p.kind() != ParamKind::Secret {
                    problems.push(SpecProblem::MustBeSecret {
                        param: p.name().clone(),
                    });
                } else if !secret && p.kind() == ParamKind::Secret {
                    problems.push(SpecProblem::MustBePlain {
                        param: p.name().clone(),
                    });
                }
                if need.need == FieldNeed::Required && p.requirement() != Requirement::Required {
                    problems.push(SpecProblem::MustBeRequired {
                        param: p.name().clone(),
                    });
                }
            }
        }
    }
}

/// A stored connection: a spec with its ID and, for a managed OAuth
/// connection, the application it refers to (never a copy of its secret).
///
/// Serialized as one map: the ID, the spec's fields, then `oauth_app` if any.
#[derive(Debug, Clone)]
pub struct Connection {
    id: ConnectionId,
    /// The spec, with the application (rare) in its boxed extras: a
    /// connection is one pointer smaller (memory per connection is a
    /// performance target).
    spec: ConnectionSpec,
}

impl Serialize for Connection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        /// What `Connection` was serialized as before the application moved
        /// into the spec's extras.
        #[derive(Serialize)]
        #[serde(rename = "Connection")]
        struct Out<'a> {
            id: ConnectionId,
            #[serde(flatten)]
            spec: &'a ConnectionSpec,
            #[serde(skip_serializing_if = "Option::is_none")]
            oauth_app: Option<&'a AppOwner>,
        }
        Out {
            id: self.id,
            spec: &self.spec,
            oauth_app: self.oauth_app(),
        }
        .serialize(s)
    }
}

/// Reads what `Connection`'s `Serialize` writes. Written out instead of
/// derived with `#[serde(flatten)]`, which buffers every record in a generic
/// tree before reading it (about half the time of a store's cold start).
impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The fields of [`Connection`] and of its [`ConnectionSpec`] side by
        /// side, with the same attributes.
        #[derive(Deserialize)]
        #[serde(rename = "Connection")]
        struct Flat {
            id: ConnectionId,
            project: ProjectId,
            scope: Scope,
            name: ConnectionName,
            #[serde(default)]
            description: Text,
            target: Target,
            auth: AuthScheme,
            params: Box<[Param]>,
            #[serde(default)]
            connection_type: Option<TypeName>,
            #[serde(default)]
            template: Option<TemplateName>,
            #[serde(default)]
            builder: BuilderAccess,
            #[serde(default)]
            oauth_app: Option<AppOwner>,
        }
        let f = Flat::deserialize(d)?;
        // A stored record passes the same checks as a new spec.
        let spec = ConnectionSpec {
            project: f.project,
            scope: f.scope,
            name: f.name,
            target: f.target,
            auth: f.auth,
            params: f.params,
            extras: Extras::boxed(f.description, f.connection_type, f.template, f.builder),
        }
        .checked()
        .map_err(serde::de::Error::custom)?;
        Ok(Connection::new(f.id, spec, f.oauth_app))
    }
}

impl Connection {
    /// Assembles a record. The registry is the one place that decides
    /// `oauth_app`; stores only round-trip it.
    pub fn new(id: ConnectionId, mut spec: ConnectionSpec, oauth_app: Option<AppOwner>) -> Self {
        match (&mut spec.extras, oauth_app) {
            (Some(extras), owner) => {
                extras.oauth_app = owner;
                if extras.is_default() {
                    spec.extras = None;
                }
            }
            (None, None) => {}
            (None, Some(owner)) => {
                spec.extras = Some(Box::new(Extras {
                    oauth_app: Some(owner),
                    ..Extras::default()
                }));
            }
        }
        Connection { id, spec }
    }
    /// The Connection ID.
    pub fn id(&self) -> ConnectionId {
        self.id
    }
    /// The spec.
    pub fn spec(&self) -> &ConnectionSpec {
        &self.spec
    }
    /// The project.
    pub fn project(&self) -> &ProjectId {
        &self.spec.project
    }
    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.spec.scope
    }
    /// The name.
    pub fn name(&self) -> &ConnectionName {
        &self.spec.name
    }
    /// The managed OAuth application this connection uses, if any.
    pub fn oauth_app(&self) -> Option<&AppOwner> {
        self.spec.extras.as_deref()?.oauth_app.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EnteredBy, Environment, MAX_VALUE_LEN, OAuthClient, ParamValues, PlatformTarget};

    #[test]
    fn compact_sizes() {
        // Every connection carries these (memory per connection is a
        // performance target): a regression in one shows here first.
        use crate::model::{Layers, PlainValue, SecretEntry};
        use std::mem::size_of;
        assert_eq!(size_of::<ParamName>(), 16);
        assert_eq!(size_of::<ConnectionName>(), 16);
        assert_eq!(size_of::<ProjectId>(), 16);
        assert_eq!(size_of::<Scope>(), 24);
        assert_eq!(size_of::<PlatformTarget>(), 64);
        assert_eq!(size_of::<Target>(), 24);
        assert_eq!(size_of::<SecretEntry>(), 16);
        // A default-only `Layers` is its value, without a `Layer`.
        assert_eq!(size_of::<Layers<PlainValue>>(), size_of::<PlainValue>());
        assert_eq!(size_of::<Layers<SecretEntry>>(), size_of::<SecretEntry>());
        assert_eq!(size_of::<ParamValues>(), 24);
        // The name, the values and one pointer (72 before the compact
        // values and the boxed rare attributes).
        assert_eq!(size_of::<Param>(), 48);
        // 160 before: parameters in a `Box<[Param]>`, the application in
        // the boxed extras.
        assert_eq!(size_of::<Connection>(), 128);
    }

    #[test]
    fn build_reports_every_problem() {
        let err = ConnectionSpec::integration("acme", "bad id", "9lives")
            .target(Target::database("postgresql"))
            .auth(AuthScheme::OAuth2(OAuthClient::Shared))
            .param(Param::plain("HostName").env("Prod", "h"))
            .param(Param::plain("HostName"))
            .param(
                Param::secret("Token")
                    .per_customer(EnteredBy::Customer)
                    .default("x"),
            )
            .build()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("scope.integration"), "{text}");
        assert!(text.contains("name: invalid connection name"), "{text}");
        assert!(text.contains("params.HostName.environment"), "{text}");
        assert!(text.contains("declared more than once"), "{text}");
        assert!(text.contains("per-customer"), "{text}");
        assert!(text.contains("managed oauth application"), "{text}");
        assert!(text.contains("needs parameter Port"), "{text}");
        assert!(!text.contains('x') || !text.contains("\"x\""));
    }

    #[test]
    fn a_connection_reads_back_what_it_writes() {
        let spec = ConnectionSpec::integration("p", "i", "n")
            .describe("the one")
            .target(Target::platform("q".parse().unwrap(), "j".parse().unwrap()))
            .param(Param::plain("A").default("d").env("production", "e"))
            .build()
            .unwrap();
        let id = ConnectionId::random();
        for owner in [None, Some(AppOwner::Integration("i".parse().unwrap()))] {
            let c = Connection::new(id, spec.clone(), owner.clone());
            let json = serde_json::to_value(&c).unwrap();
            // One flat map: the ID, the spec's fields, the application.
            assert_eq!(json["id"], serde_json::to_value(id).unwrap());
            assert_eq!(json["name"], "n");
            assert_eq!(json.get("oauth_app").is_some(), owner.is_some());
            let back: Connection = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(serde_json::to_value(&back).unwrap(), json);
            assert_eq!(back.oauth_app(), owner.as_ref());
        }
        // Unknown fields are ignored, as before; a missing one is named.
        let mut json = serde_json::to_value(Connection::new(id, spec, None)).unwrap();
        json["later"] = serde_json::json!(1);
        assert!(serde_json::from_value::<Connection>(json.clone()).is_ok());
        json.as_object_mut().unwrap().remove("target");
        let e = serde_json::from_value::<Connection>(json).unwrap_err();
        assert!(e.to_string().contains("missing field `target`"), "{e}");
    }

    #[test]
    fn the_application_belongs_to_the_connection_not_to_its_spec() {
        let owner = AppOwner::Integration("i".parse().unwrap());
        let plain = ConnectionSpec::integration("p", "i", "n").build().unwrap();
        let described = ConnectionSpec::integration("p", "i", "n")
            .describe("d")
            .build()
            .unwrap();
        for spec in [plain, described] {
            let had_extras = spec.extras.is_some();
            let c = Connection::new(ConnectionId::random(), spec, Some(owner.clone()));
            assert_eq!(c.oauth_app(), Some(&owner));
            // The spec's own serialized form never has it.
            let json = serde_json::to_value(c.spec()).unwrap();
            assert!(json.get("oauth_app").is_none(), "{json}");
            // A connection made again from the spec has what it is given.
            let again = Connection::new(c.id(), c.spec().clone(), None);
            assert_eq!(again.oauth_app(), None);
            assert_eq!(again.spec().extras.is_some(), had_extras);
            assert_eq!(again.spec().description(), c.spec().description());
        }
    }

    #[test]
    fn setting_and_removing_values_keeps_the_compact_form_consistent() {
        let mut spec = ConnectionSpec::project("p", "n")
            .param(Param::plain("A").default("d"))
            .build()
            .unwrap();
        let a: ParamName = "A".parse().unwrap();
        let prod = Environment::production();
        let value = |spec: &ConnectionSpec, env: &Environment| match spec.params()[0].values() {
            ParamValues::Plain(l) => l.value_for(env, None).map(|(v, _)| v.to_string()),
            ParamValues::Secret(_) => unreachable!(),
        };
        spec.set_value(&a, Layer::Environment(prod.clone()), "e").unwrap();
        spec.set_value(&a, Layer::Default, "d2").unwrap();
        assert_eq!(value(&spec, &prod).as_deref(), Some("e"));
        assert_eq!(value(&spec, &Environment::development()).as_deref(), Some("d2"));
        assert!(spec.remove_value(&a, &Layer::Default).unwrap());
        assert!(!spec.remove_value(&a, &Layer::Default).unwrap());
        assert_eq!(value(&spec, &Environment::development()), None);
        assert!(spec.remove_value(&a, &Layer::Environment(prod.clone())).unwrap());
        assert_eq!(spec.params()[0].layers().len(), 0);
        // A default set on an empty parameter goes back to its own slot.
        spec.set_value(&a, Layer::Default, "d3").unwrap();
        spec.set_value(&a, Layer::Environment(prod.clone()), "e3")
            .unwrap();
        let order: Vec<Layer> = spec.params()[0].layers().into_iter().cloned().collect();
        assert_eq!(order, [Layer::Default, Layer::Environment(prod)]);
    }

    #[test]
    fn edits_keep_a_spec_valid() {
        // set_value and remove_value are the only ways to change a spec: any
        // sequence of them, accepted or refused, leaves one that passes the
        // checks every constructor runs.
        let mut spec = ConnectionSpec::project("p", "n")
            .param(Param::plain("A").default("d"))
            .param(Param::secret("S").per_customer(EnteredBy::Customer))
            .build()
            .unwrap();
        let layers = [
            Layer::Default,
            Layer::Environment(Environment::production()),
            Layer::Customer("c".parse().unwrap()),
            Layer::CustomerEnvironment("c".parse().unwrap(), Environment::test()),
        ];
        let names: [ParamName; 3] = ["A".parse().unwrap(), "S".parse().unwrap(), "X".parse().unwrap()];
        let long = "v".repeat(MAX_VALUE_LEN + 1);
        let mut step = 0usize;
        for name in &names {
            for layer in &layers {
                for value in ["x", long.as_str()] {
                    step += 1;
                    let remove = step.is_multiple_of(3);
                    let refused = if remove {
                        spec.remove_value(name, layer).is_err()
                    } else {
                        spec.set_value(name, layer.clone(), value).is_err()
                    };
                    let should_refuse = name.as_str() == "X"
                        || (!remove
                            && (value.len() > MAX_VALUE_LEN
                                || (name.as_str() == "S" && layer.customer().is_none())));
                    assert_eq!(refused, should_refuse, "{name} {layer} step {step}");
                    assert!(spec.clone().checked().is_ok(), "{name} {layer} step {step}");
                }
            }
        }
    }

    #[test]
    fn debug_never_prints_values() {
        let spec = ConnectionSpec::project("p", "n")
            .param(Param::plain("U").default("plain-value-123"))
            .param(Param::secret("S").default("secret-value-456"))
            .build()
            .unwrap();
        let debug = format!("{spec:?}");
        assert!(!debug.contains("secret-value-456"));
        assert!(!debug.contains("plain-value-123"));
    }
    /// Two connections, one using every optional field and one as plain as
    /// they come, the way the stores write them (secrets through a codec).
    fn golden_connections() -> Vec<Connection> {
        let rich = ConnectionSpec::integration("acme", "orders", "crm")
            .describe("the CRM")
            .platform_target("billing", "invoices")
            .auth(AuthScheme::Custom)
            .type_name("crm-type")
            .template_name("crm-template")
            .builder_access(BuilderAccess::Available)
            .param(
                Param::plain("ServiceURL")
                    .describe("where it lives")
                    .env("production", "https://crm.example.com/api/v2/long-enough")
                    .default("https://dev")
                    .customer("globex", "https://globex")
                    .customer_env("globex", "test", "https://globex-test"),
            )
            .param(Param::plain("Region").optional().default("eu-west-1"))
            .param(
                Param::plain("Tenant")
                    .per_customer(EnteredBy::Organization)
                    .customer("globex", "g"),
            )
            .param(
                Param::secret("ApiKey")
                    .per_customer(EnteredBy::Customer)
                    .customer("globex", "sk_globex"),
            )
            .param(
                Param::secret("Password")
                    .default("pw-dev")
                    .env_ref("production", "vault:secret/crm/prod#password"),
            )
            .param(Param::secret("Empty").optional())
            .build()
            .unwrap();
        let plain = ConnectionSpec::project("acme", "c0001")
            .target(Target::external("svc"))
            .auth(AuthScheme::ApiKey)
            .param(Param::plain("ServiceURL").default("https://h1-0.example"))
            .param(Param::secret("ApiKey").default("k000001"))
            .build()
            .unwrap();
        let id = |n: u8| ConnectionId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).unwrap();
        vec![
            Connection::new(
                id(7),
                rich,
                Some(AppOwner::Integration("orders".parse().unwrap())),
            ),
            Connection::new(id(8), plain, None),
        ]
    }

    /// The stored form, byte for byte as before the compact in-memory
    /// layout (the stores' rows and every manifest depend on it).
    const GOLDEN: &str = concat!(
        r#"{"id":"00000000-0000-4000-8000-000000000007","project":"acme","scope":{"integration":"orders"},"name":"crm","target":{"platform":{"project":"billing","integration":"invoices","endpoint":null,"visibility":"project"}},"auth":"custom","params":[{"name":"ServiceURL","description":"where it lives","requirement":"required","tenancy":"global","values":{"plain":[[{"environment":"production"},"https://crm.example.com/api/v2/long-enough"],["default","https://dev"],[{"customer":"globex"},"https://globex"],[{"customer_environment":["globex","test"]},"https://globex-test"]]}},{"name":"Region","requirement":"optional","tenancy":"global","values":{"plain":[["default","eu-west-1"]]}},{"name":"Tenant","requirement":"required","tenancy":{"per_customer":"organization"},"values":{"plain":[[{"customer":"globex"},"g"]]}},{"name":"ApiKey","requirement":"required","tenancy":{"per_customer":"customer"},"values":{"secret":[[{"customer":"globex"},"sk_globex"]]}},{"name":"Password","requirement":"required","tenancy":"global","values":{"secret":[["default","pw-dev"],[{"environment":"production"},{"external":"vault:secret/crm/prod#password"}]]}},{"name":"Empty","requirement":"optional","tenancy":"global","values":{"secret":[]}}],"description":"the CRM","connection_type":"crm-type","template":"crm-template","builder":"available","oauth_app":{"integration":"orders"}}"#,
        "\n",
        r#"{"id":"00000000-0000-4000-8000-000000000008","project":"acme","scope":"project","name":"c0001","target":{"external":{"service":"svc"}},"auth":"api_key","params":[{"name":"ServiceURL","requirement":"required","tenancy":"global","values":{"plain":[["default","https://h1-0.example"]]}},{"name":"ApiKey","requirement":"required","tenancy":"global","values":{"secret":[["default","k000001"]]}}]}"#
    );

    #[test]
    fn connections_serialize_byte_for_byte_as_before() {
        use crate::model::{PlaintextCodec, with_secret_codec};
        let codec = std::sync::Arc::new(PlaintextCodec);
        let mut written = Vec::new();
        for c in golden_connections() {
            let json = with_secret_codec(codec.clone(), || serde_json::to_string(&c)).unwrap();
            let back: Connection = with_secret_codec(codec.clone(), || serde_json::from_str(&json)).unwrap();
            let again = with_secret_codec(codec.clone(), || serde_json::to_string(&back)).unwrap();
            assert_eq!(again, json);
            written.push(json);
        }
        assert_eq!(
            written,
            GOLDEN.lines().collect::<Vec<_>>(),
            "{}",
            written.join("\n")
        );
    }
}
