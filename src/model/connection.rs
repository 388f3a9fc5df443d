//! Connections: scope, target, auth scheme and ordered parameters with layered
//! values.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::ident::{
    ConnectionId, ConnectionName, CustomerId, Environment, IntegrationId, ParamName, ParseError, ProjectId,
    shorten,
};
use super::oauth::AppOwner;
use super::secret::SecretValue;

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

/// Who may call a platform integration's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndpointVisibility {
    /// Integrations of the same project.
    Project,
    /// Integrations of the same organization.
    Organization,
    /// Anyone.
    Public,
}

/// A platform integration a connection reaches (possibly in another project).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlatformTarget {
    /// The target's project.
    pub project: ProjectId,
    /// The target integration.
    pub integration: IntegrationId,
    /// The endpoint's name or path, if the integration has several.
    pub endpoint: Option<String>,
    /// Who may call the endpoint.
    pub visibility: EndpointVisibility,
}

/// What a connection reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Target {
    /// Another integration on the platform. Boxed: a [`PlatformTarget`] is
    /// 80 bytes and would make every target, which every connection carries,
    /// that large; boxed, a target is 32 (memory per connection is a performance target).
    Platform(Box<PlatformTarget>),
    /// A managed database; the connection carries `HostName`, `Port`,
    /// `Username`, `Password` (secret) and `DatabaseName`.
    Database {
        /// The engine, e.g. `postgresql`, `mysql`.
        engine: String,
    },
    /// A third-party service; its URLs per environment are parameters.
    External {
        /// The service, e.g. `twilio`.
        service: String,
    },
}

impl Target {
    /// A platform integration target with project visibility and no named
    /// endpoint.
    pub fn platform(project: ProjectId, integration: IntegrationId) -> Self {
        Target::Platform(Box::new(PlatformTarget {
            project,
            integration,
            endpoint: None,
            visibility: EndpointVisibility::Project,
        }))
    }

    /// A third-party service.
    pub fn external(service: impl Into<String>) -> Self {
        Target::External {
            service: service.into(),
        }
    }

    /// A managed database.
    pub fn database(engine: impl Into<String>) -> Self {
        Target::Database {
            engine: engine.into(),
        }
    }

    /// The parameters a database connection must declare.
    pub const DATABASE_PARAMS: [&'static str; 5] =
        ["HostName", "Port", "Username", "Password", "DatabaseName"];
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Platform(t) => write!(f, "platform integration {}/{}", t.project, t.integration),
            Target::Database { engine } => write!(f, "{engine} database"),
            Target::External { service } => write!(f, "external service {service}"),
        }
    }
}

/// Where an OAuth 2.0 client-credentials connection gets its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OAuthClient {
    /// The shared application: the project's for a project-scope connection,
    /// the integration's for an integration-scope one.
    Shared,
    /// An application of this connection alone.
    Dedicated,
    /// The connection's own parameters carry the client (client ID, secret,
    /// token URL), as for a third-party OAuth provider.
    Supplied,
}

/// How a connection authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuthScheme {
    /// No authentication.
    None,
    /// An API key (a secret parameter).
    ApiKey,
    /// User name and password (a secret parameter).
    Basic,
    /// OAuth 2.0 client credentials.
    OAuth2(OAuthClient),
    /// Whatever fields the registrant defines.
    Custom,
}

impl AuthScheme {
    /// Whether the platform manages this connection's OAuth application.
    pub fn managed_oauth(&self) -> Option<OAuthClient> {
        match self {
            AuthScheme::OAuth2(c @ (OAuthClient::Shared | OAuthClient::Dedicated)) => Some(*c),
            _ => None,
        }
    }
}

impl fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthScheme::None => "no-auth",
            AuthScheme::ApiKey => "api-key",
            AuthScheme::Basic => "basic-auth",
            AuthScheme::OAuth2(OAuthClient::Shared) => "oauth2 (shared application)",
            AuthScheme::OAuth2(OAuthClient::Dedicated) => "oauth2 (dedicated application)",
            AuthScheme::OAuth2(OAuthClient::Supplied) => "oauth2 (supplied client)",
            AuthScheme::Custom => "custom",
        })
    }
}

/// One value layer of a parameter. Also the provenance of a resolved value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// The value for every environment and customer.
    Default,
    /// The value for one environment.
    Environment(Environment),
    /// The value for one customer, in every environment.
    Customer(CustomerId),
    /// The value for one customer in one environment.
    CustomerEnvironment(CustomerId, Environment),
}

impl Layer {
    /// Whether the layer is for one customer.
    pub fn customer(&self) -> Option<&CustomerId> {
        match self {
            Layer::Customer(c) | Layer::CustomerEnvironment(c, _) => Some(c),
            _ => None,
        }
    }

    /// Whether the layer applies when resolving for `env` and `customer`.
    pub fn applies(&self, env: &Environment, customer: Option<&CustomerId>) -> bool {
        self.rank(env, customer).is_some()
    }

    /// Rank in rule 3's order (0 wins), if the layer applies to (env, customer).
    fn rank(&self, env: &Environment, customer: Option<&CustomerId>) -> Option<u8> {
        match self {
            Layer::CustomerEnvironment(c, e) => (Some(c) == customer && e == env).then_some(0),
            Layer::Customer(c) => (Some(c) == customer).then_some(1),
            Layer::Environment(e) => (e == env).then_some(2),
            Layer::Default => Some(3),
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::Default => f.write_str("default value"),
            Layer::Environment(e) => write!(f, "environment {e} override"),
            Layer::Customer(c) => write!(f, "customer {c} override"),
            Layer::CustomerEnvironment(c, e) => write!(f, "customer {c} in environment {e} override"),
        }
    }
}

/// A parameter's values: a default and overrides, at most one per [`Layer`].
#[derive(Clone, PartialEq, Eq)]
pub struct Layers<T> {
    /// The default value, when it was the first value given: most parameters
    /// have only a default, and keep it here without an allocation or a
    /// [`Layer`] of its own.
    default: Option<T>,
    /// Every other value in the order given (the default too, if it came
    /// after another value). `None` when there is none.
    #[allow(
        clippy::box_collection,
        reason = "a thin 8-byte pointer; `None` for most parameters"
    )]
    others: Option<Box<Vec<(Layer, T)>>>,
}

/// The layer of [`Layers::default`], for the accessors that lend a `&Layer`.
static DEFAULT_LAYER: Layer = Layer::Default;

impl<T> Default for Layers<T> {
    fn default() -> Self {
        Layers {
            default: None,
            others: None,
        }
    }
}

impl<T> Layers<T> {
    /// Every layer and its value, in the order they were given.
    fn pairs(&self) -> impl Iterator<Item = (&Layer, &T)> {
        self.default
            .iter()
            .map(|v| (&DEFAULT_LAYER, v))
            .chain(self.others.iter().flat_map(|o| o.iter().map(|(l, v)| (l, v))))
    }

    /// **Rule 3, the value precedence.** For environment `env` and customer
    /// `customer`, the first value present in this order wins:
    /// (customer, environment) override, customer override, environment
    /// override, default. Without a customer, customer layers never apply.
    ///
    /// This is the only place the order is written down.
    pub(crate) fn pick(&self, env: &Environment, customer: Option<&CustomerId>) -> Option<(&Layer, &T)> {
        let mut best: Option<(u8, &Layer, &T)> = None;
        for (layer, value) in self.pairs() {
            if let Some(rank) = layer.rank(env, customer)
                && best.is_none_or(|(r, _, _)| rank < r)
            {
                best = Some((rank, layer, value));
            }
        }
        best.map(|(_, l, v)| (l, v))
    }

    /// Which layer would win for (`env`, `customer`), by rule 3 (see
    /// [`Layers::value_for`]).
    pub fn winning_layer(&self, env: &Environment, customer: Option<&CustomerId>) -> Option<&Layer> {
        self.pick(env, customer).map(|(l, _)| l)
    }

    /// The layers that have a value, in the order they were given.
    pub fn layers(&self) -> impl Iterator<Item = &Layer> {
        self.pairs().map(|(l, _)| l)
    }

    /// How many values there are.
    pub fn len(&self) -> usize {
        usize::from(self.default.is_some()) + self.others.as_ref().map_or(0, |o| o.len())
    }

    /// Whether there is no value at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value of exactly `layer` (crate-internal for secrets).
    pub(crate) fn get_any(&self, layer: &Layer) -> Option<&T> {
        self.pairs().find(|(l, _)| *l == layer).map(|(_, v)| v)
    }

    /// The values in the order given, kept as they are (the default goes to
    /// its own slot only when it comes first).
    fn from_vec(values: Vec<(Layer, T)>) -> Self {
        let mut out = Layers::default();
        let mut values = values.into_iter().peekable();
        if let Some((_, value)) = values.next_if(|(l, _)| *l == Layer::Default) {
            out.default = Some(value);
        }
        let others: Vec<_> = values.collect();
        if !others.is_empty() {
            out.others = Some(Box::new(others));
        }
        out
    }

    /// Sets the value of `layer`, replacing any; returns whether one was
    /// replaced.
    fn set(&mut self, layer: Layer, value: T) -> bool {
        if layer == Layer::Default
            && let Some(slot) = &mut self.default
        {
            *slot = value;
            return true;
        }
        if let Some(slot) = self
            .others
            .as_mut()
            .and_then(|o| o.iter_mut().find(|(l, _)| *l == layer))
        {
            slot.1 = value;
            return true;
        }
        if layer == Layer::Default && self.is_empty() {
            self.default = Some(value);
        } else {
            self.others.get_or_insert_default().push((layer, value));
        }
        false
    }

    /// Removes the value of `layer`; returns whether there was one.
    fn unset(&mut self, layer: &Layer) -> bool {
        if *layer == Layer::Default && self.default.take().is_some() {
            return true;
        }
        let Some(others) = &mut self.others else {
            return false;
        };
        let before = others.len();
        others.retain(|(l, _)| l != layer);
        let removed = others.len() != before;
        if others.is_empty() {
            self.others = None;
        }
        removed
    }
}

/// Serialized as before the compact form: the `(layer, value)` pairs in the
/// order given.
impl<T: Serialize> Serialize for Layers<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.pairs())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Layers<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<(Layer, T)>::deserialize(d).map(Layers::from_vec)
    }
}

impl Layers<String> {
    /// The plain value for (`env`, `customer`) and the layer it came from.
    ///
    /// **Rule 3:** the first value present in this order wins: (customer,
    /// environment) override, customer override, environment override, default.
    /// Secret values have no such accessor: they leave the library only through
    /// resolution.
    ///
    /// ```
    /// use connective::model::{ConnectionSpec, Environment, Layer, Param, ParamValues};
    /// let spec = ConnectionSpec::project("acme", "crm")
    ///     .param(Param::plain("ServiceURL").default("https://dev").env("production", "https://prod"))
    ///     .build()?;
    /// let ParamValues::Plain(url) = spec.params()[0].values() else { unreachable!() };
    /// let (value, layer) = url.value_for(&Environment::production(), None).unwrap();
    /// assert_eq!(value, "https://prod");
    /// assert_eq!(layer, &Layer::Environment(Environment::production()));
    /// # Ok::<(), connective::model::SpecError>(())
    /// ```
    pub fn value_for(&self, env: &Environment, customer: Option<&CustomerId>) -> Option<(&str, &Layer)> {
        self.pick(env, customer).map(|(l, v)| (v.as_str(), l))
    }

    /// Every layer and its plain value, in the order they were given.
    pub fn iter(&self) -> impl Iterator<Item = (&Layer, &str)> {
        self.pairs().map(|(l, v)| (l, v.as_str()))
    }

    /// The plain value of exactly `layer`.
    pub fn get(&self, layer: &Layer) -> Option<&str> {
        self.get_any(layer).map(String::as_str)
    }
}

impl<T> fmt::Debug for Layers<T> {
    /// Lists the layers only: values, plain or secret, are not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.layers()).finish()
    }
}

/// Whether a parameter is plain or secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// Readable text (a URL, a host name).
    Plain,
    /// A secret: write-only through the API, out only through resolution.
    Secret,
}

/// Whether a parameter must have a value when it is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requirement {
    /// Must resolve to a value.
    Required,
    /// May be absent; default-name mappings then skip it.
    Optional,
}

/// Who sets a per-customer value (Prismatic's two per-customer kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnteredBy {
    /// The organization sets each customer's value on its behalf.
    Organization,
    /// The customer enters its own value.
    Customer,
}

/// Whether a parameter has one value for everybody or one per customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tenancy {
    /// One value (per environment) for every customer; customer overrides are
    /// still allowed.
    Global,
    /// Only customer layers: there is no global value.
    PerCustomer(EnteredBy),
}

/// A parameter's values, plain or secret.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamValues {
    /// Plain text values.
    Plain(Layers<String>),
    /// Secret values.
    Secret(Layers<SecretValue>),
}

impl fmt::Debug for ParamValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValues::Plain(l) => f.debug_tuple("Plain").field(l).finish(),
            ParamValues::Secret(l) => f.debug_tuple("Secret").field(l).finish(),
        }
    }
}

/// A description: usually empty, so 8 bytes and no allocation when it is.
/// Serialized as a plain string.
#[derive(Clone, Default, PartialEq, Eq)]
#[allow(
    clippy::box_collection,
    reason = "a thin 8-byte pointer; `None` for most descriptions"
)]
struct Text(Option<Box<String>>);

impl Text {
    fn new(text: String) -> Self {
        Text((!text.is_empty()).then(|| Box::new(text)))
    }

    fn as_str(&self) -> &str {
        self.0.as_deref().map_or("", String::as_str)
    }

    fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Text {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Text::new)
    }
}

/// One named field of a connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Param {
    name: ParamName,
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    description: Text,
    requirement: Requirement,
    tenancy: Tenancy,
    values: ParamValues,
}

impl Param {
    /// Starts a plain parameter.
    ///
    /// ```
    /// use connective::model::Param;
    /// let url = Param::plain("ServiceURL")
    ///     .default("https://dev.example.com")
    ///     .env("production", "https://example.com");
    /// # let _ = url;
    /// ```
    pub fn plain<N: IntoIdent<ParamName>>(name: N) -> ParamBuilder {
        ParamBuilder::new(name.into_ident(), ParamKind::Plain)
    }

    /// Starts a secret parameter.
    pub fn secret<N: IntoIdent<ParamName>>(name: N) -> ParamBuilder {
        ParamBuilder::new(name.into_ident(), ParamKind::Secret)
    }

    /// The name.
    pub fn name(&self) -> &ParamName {
        &self.name
    }
    /// The description.
    pub fn description(&self) -> &str {
        self.description.as_str()
    }
    /// Plain or secret.
    pub fn kind(&self) -> ParamKind {
        match self.values {
            ParamValues::Plain(_) => ParamKind::Plain,
            ParamValues::Secret(_) => ParamKind::Secret,
        }
    }
    /// Required or optional.
    pub fn requirement(&self) -> Requirement {
        self.requirement
    }
    /// Global or per customer.
    pub fn tenancy(&self) -> Tenancy {
        self.tenancy
    }
    /// The values.
    pub fn values(&self) -> &ParamValues {
        &self.values
    }
    /// The layers that have a value, without the values.
    pub fn layers(&self) -> Vec<&Layer> {
        match &self.values {
            ParamValues::Plain(l) => l.layers().collect(),
            ParamValues::Secret(l) => l.layers().collect(),
        }
    }
}

/// Converts an argument into a validated identifier, deferring the error.
///
/// Implemented for `&str`, `String` and the identifier itself, so builders take
/// either text or an already parsed identifier; a text that fails to parse is
/// reported by the builder's `build()` with the field it was given for.
pub trait IntoIdent<T> {
    /// The identifier, or why the text is not one.
    fn into_ident(self) -> Result<T, ParseError>;
}

impl<T, S> IntoIdent<T> for S
where
    S: TryInto<T>,
    S::Error: Into<ParseError>,
{
    fn into_ident(self) -> Result<T, ParseError> {
        self.try_into().map_err(Into::into)
    }
}

/// The most bytes a parameter value may have.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// The most bytes a description may have.
pub const MAX_DESCRIPTION_LEN: usize = 4 * 1024;
/// The most parameters a connection may have.
pub const MAX_PARAMS: usize = 256;

/// Builds a [`Param`]; errors surface in [`ConnectionBuilder::build`].
#[derive(Clone)]
pub struct ParamBuilder {
    name: Result<ParamName, ParseError>,
    kind: ParamKind,
    description: String,
    requirement: Requirement,
    tenancy: Tenancy,
    values: Vec<(PendingLayer, SecretValue)>,
}

/// A layer as given to a builder: parsed, or the field that failed and why.
type PendingLayer = Result<Layer, (&'static str, ParseError)>;

impl fmt::Debug for ParamBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParamBuilder")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("values", &self.values.len())
            .finish_non_exhaustive()
    }
}

impl ParamBuilder {
    fn new(name: Result<ParamName, ParseError>, kind: ParamKind) -> Self {
        ParamBuilder {
            name,
            kind,
            description: String::new(),
            requirement: Requirement::Required,
            tenancy: Tenancy::Global,
            values: Vec::new(),
        }
    }

    /// Sets the description.
    pub fn describe(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Marks the parameter optional (parameters are required by default).
    pub fn optional(mut self) -> Self {
        self.requirement = Requirement::Optional;
        self
    }

    /// Marks the parameter per-customer: it has no global value, and each
    /// customer's value is set by `entered_by`.
    pub fn per_customer(mut self, entered_by: EnteredBy) -> Self {
        self.tenancy = Tenancy::PerCustomer(entered_by);
        self
    }

    /// Sets the default value.
    pub fn default(self, value: impl Into<String>) -> Self {
        self.layer(Ok(Layer::Default), value)
    }

    /// Sets the value for one environment.
    pub fn env<E: IntoIdent<Environment>>(self, env: E, value: impl Into<String>) -> Self {
        let layer = env
            .into_ident()
            .map(Layer::Environment)
            .map_err(|e| ("environment", e));
        self.layer(layer, value)
    }

    /// Sets the value for one customer, in every environment.
    pub fn customer<C: IntoIdent<CustomerId>>(self, customer: C, value: impl Into<String>) -> Self {
        let layer = customer
            .into_ident()
            .map(Layer::Customer)
            .map_err(|e| ("customer", e));
        self.layer(layer, value)
    }

    /// Sets the value for one customer in one environment.
    pub fn customer_env<C: IntoIdent<CustomerId>, E: IntoIdent<Environment>>(
        self,
        customer: C,
        env: E,
        value: impl Into<String>,
    ) -> Self {
        let layer = match (customer.into_ident(), env.into_ident()) {
            (Ok(c), Ok(e)) => Ok(Layer::CustomerEnvironment(c, e)),
            (Err(err), _) => Err(("customer", err)),
            (_, Err(err)) => Err(("environment", err)),
        };
        self.layer(layer, value)
    }

    /// Sets the value of an already parsed layer.
    pub fn value(self, layer: Layer, value: impl Into<String>) -> Self {
        self.layer(Ok(layer), value)
    }

    fn layer(mut self, layer: PendingLayer, value: impl Into<String>) -> Self {
        self.values.push((layer, SecretValue::new(value)));
        self
    }

    /// The name as given (for error paths).
    fn label(&self, index: usize) -> String {
        match &self.name {
            Ok(n) => format!("params.{n}"),
            Err(_) => format!("params[{index}]"),
        }
    }

    /// The parameter with every value given (duplicates and over-long values
    /// included: [`check_params`] reports them), after recording why an
    /// identifier given as text is not one.
    fn build(self, index: usize, problems: &mut Vec<SpecProblem>) -> Option<Param> {
        let label = self.label(index);
        let name = match self.name {
            Ok(n) => Some(n),
            Err(error) => {
                problems.push(SpecProblem::Ident {
                    field: format!("{label}.name"),
                    error,
                });
                None
            }
        };
        let mut layers: Vec<(Layer, SecretValue)> = Vec::with_capacity(self.values.len());
        for (layer, value) in self.values {
            match layer {
                Ok(l) => layers.push((l, value)),
                Err((field, error)) => problems.push(SpecProblem::Ident {
                    field: format!("{label}.{field}"),
                    error,
                }),
            }
        }
        let values = match self.kind {
            ParamKind::Plain => ParamValues::Plain(Layers::from_vec(
                layers
                    .into_iter()
                    .map(|(l, v)| (l, v.expose().to_owned()))
                    .collect(),
            )),
            ParamKind::Secret => ParamValues::Secret(Layers::from_vec(layers)),
        };
        Some(Param {
            name: name?,
            description: Text::new(self.description),
            requirement: self.requirement,
            tenancy: self.tenancy,
            values,
        })
    }
}

/// The most bytes of a target's text: an external service's name, a database
/// engine, a platform endpoint.
pub const MAX_TARGET_LEN: usize = 256;

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
    problems: &mut Vec<SpecProblem>,
) {
    if description.len() > MAX_DESCRIPTION_LEN {
        problems.push(SpecProblem::TooLong {
            field: "description".into(),
            len: description.len(),
            max: MAX_DESCRIPTION_LEN,
        });
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

/// A target's text: bounded, and without control characters (it is printed
/// in messages and plans).
fn check_target(target: &Target, problems: &mut Vec<SpecProblem>) {
    let (field, text) = match target {
        Target::External { service } => ("target.service", Some(service.as_str())),
        Target::Database { engine } => ("target.engine", Some(engine.as_str())),
        Target::Platform(p) => ("target.endpoint", p.endpoint.as_deref()),
    };
    let Some(text) = text else { return };
    if text.len() > MAX_TARGET_LEN {
        problems.push(SpecProblem::TooLong {
            field: field.into(),
            len: text.len(),
            max: MAX_TARGET_LEN,
        });
    } else if text.chars().any(char::is_control) {
        problems.push(SpecProblem::ControlCharacter { field: field.into() });
    }
}

/// Each parameter's own rules, and names unique across parameters.
fn check_params(params: &[Param], problems: &mut Vec<SpecProblem>) {
    let mut seen = Seen::with_capacity(params.len());
    for p in params {
        if !seen.insert(&p.name) {
            problems.push(SpecProblem::DuplicateParam {
                param: p.name.clone(),
            });
            continue;
        }
        check_param(p, problems);
    }
}

/// A set for duplicate checks: a scan while it is small (most specs have a
/// handful of parameters, each with a value or two), hashed past that, so a
/// hostile input costs linear time.
enum Seen<'a, T> {
    Few(Vec<&'a T>),
    Many(std::collections::HashSet<&'a T>),
}

impl<'a, T: Eq + std::hash::Hash> Seen<'a, T> {
    const FEW: usize = 16;

    fn with_capacity(n: usize) -> Self {
        if n <= Self::FEW {
            Seen::Few(Vec::with_capacity(n))
        } else {
            Seen::Many(std::collections::HashSet::with_capacity(n))
        }
    }

    /// Adds `item`; `false` if it was there already.
    fn insert(&mut self, item: &'a T) -> bool {
        match self {
            Seen::Few(v) if v.contains(&item) => false,
            Seen::Few(v) => {
                v.push(item);
                true
            }
            Seen::Many(s) => s.insert(item),
        }
    }
}

fn check_param(p: &Param, problems: &mut Vec<SpecProblem>) {
    let label = format!("params.{}", p.name);
    if p.description.as_str().len() > MAX_DESCRIPTION_LEN {
        problems.push(SpecProblem::TooLong {
            field: format!("{label}.description"),
            len: p.description.as_str().len(),
            max: MAX_DESCRIPTION_LEN,
        });
    }
    let values: Vec<(&Layer, usize)> = match &p.values {
        ParamValues::Plain(l) => l.pairs().map(|(layer, v)| (layer, v.len())).collect(),
        ParamValues::Secret(l) => l.pairs().map(|(layer, v)| (layer, v.expose().len())).collect(),
    };
    let mut seen = Seen::with_capacity(values.len());
    for (layer, len) in values {
        if len > MAX_VALUE_LEN {
            problems.push(SpecProblem::TooLong {
                field: format!("{label} ({layer})"),
                len,
                max: MAX_VALUE_LEN,
            });
        }
        if matches!(p.tenancy, Tenancy::PerCustomer(_)) && layer.customer().is_none() {
            problems.push(SpecProblem::GlobalValueOnPerCustomer {
                param: p.name.clone(),
                layer: layer.clone(),
            });
        }
        if !seen.insert(layer) {
            problems.push(SpecProblem::DuplicateValue {
                param: p.name.clone(),
                layer: layer.clone(),
            });
        }
    }
}

/// One problem of a connection spec. [`SpecError`] lists them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecProblem {
    /// A field is not a valid identifier.
    #[error("{field}: {error}")]
    Ident {
        /// The field, e.g. `params.ServiceURL.environment`.
        field: String,
        /// Why.
        error: ParseError,
    },
    /// A text field is too long.
    #[error("{field} is {len} bytes, at most {max} allowed")]
    TooLong {
        /// The field.
        field: String,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// Two parameters share a name.
    #[error("parameter {param} is declared more than once")]
    DuplicateParam {
        /// The parameter.
        param: ParamName,
    },
    /// A parameter has two values for one layer.
    #[error("parameter {param} has two values for the {layer}")]
    DuplicateValue {
        /// The parameter.
        param: ParamName,
        /// The layer.
        layer: Layer,
    },
    /// A per-customer parameter was given a global value.
    #[error("parameter {param} is per-customer and cannot have a {layer}")]
    GlobalValueOnPerCustomer {
        /// The parameter.
        param: ParamName,
        /// The global layer.
        layer: Layer,
    },
    /// A parameter name is taken by the managed OAuth application.
    #[error("parameter {param} is supplied by the connection's oauth application and cannot be declared")]
    AppSuppliedParam {
        /// The parameter.
        param: ParamName,
    },
    /// A managed OAuth application only serves platform targets.
    #[error(
        "a managed oauth application only serves platform integration targets, not {target}; use OAuthClient::Supplied"
    )]
    ManagedOAuthNeedsPlatform {
        /// The target, described.
        target: String,
    },
    /// A required parameter of the target or auth kind is missing.
    #[error("a {what} connection needs parameter {param}")]
    MissingParam {
        /// The target or auth kind.
        what: String,
        /// The parameter.
        param: &'static str,
    },
    /// The parameter is not declared.
    #[error("parameter {param} is not declared")]
    UnknownParam {
        /// The parameter.
        param: ParamName,
    },
    /// A parameter that must be secret is plain.
    #[error("parameter {param} must be secret")]
    MustBeSecret {
        /// The parameter.
        param: ParamName,
    },
    /// The auth scheme needs a secret parameter.
    #[error("a {scheme} connection needs at least one secret parameter")]
    NeedsSecret {
        /// The scheme.
        scheme: AuthScheme,
    },
    /// A text field holds a control character (a line break, an escape).
    #[error("{field} contains a control character")]
    ControlCharacter {
        /// The field.
        field: String,
    },
    /// Too many parameters.
    #[error("{count} parameters, at most {max} allowed")]
    TooManyParams {
        /// How many were given.
        count: usize,
        /// The most allowed.
        max: usize,
    },
}

/// A connection spec that failed validation, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid connection {connection:?}: {}", join(problems))]
pub struct SpecError {
    /// The connection's name as given (shortened).
    pub connection: String,
    /// Every problem, in field order.
    pub problems: Vec<SpecProblem>,
}

/// The identifier, or `None` after recording why `field` is not one.
pub(crate) fn ident_or_problem<T>(
    parsed: Result<T, ParseError>,
    field: impl Into<String>,
    problems: &mut Vec<SpecProblem>,
) -> Option<T> {
    parsed
        .map_err(|error| {
            problems.push(SpecProblem::Ident {
                field: field.into(),
                error,
            })
        })
        .ok()
}

pub(crate) fn join<T: fmt::Display>(items: &[T]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&item.to_string());
    }
    out
}

/// The parameters a managed OAuth application supplies to each of its
/// connections, as Choreo names them.
pub const APP_PARAMS: [&str; 3] = ["ConsumerKey", "ConsumerSecret", "TokenURL"];

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
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    description: Text,
    target: Target,
    auth: AuthScheme,
    params: Box<[Param]>,
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
}

impl TryFrom<SpecFields> for ConnectionSpec {
    type Error = SpecError;
    fn try_from(f: SpecFields) -> Result<Self, SpecError> {
        ConnectionSpec {
            project: f.project,
            scope: f.scope,
            name: f.name,
            description: f.description,
            target: f.target,
            auth: f.auth,
            params: f.params,
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
        self.description.as_str()
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
    /// parameters are not among them; see [`APP_PARAMS`]).
    pub fn params(&self) -> &[Param] {
        &self.params
    }
    /// A declared parameter by name.
    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|p| p.name.as_str() == name)
    }

    /// The spec, if it passes the checks every constructor runs.
    fn checked(self) -> Result<Self, SpecError> {
        let mut problems = Vec::new();
        check_spec_body(
            self.description.as_str(),
            Some(&self.target),
            self.auth,
            &self.params,
            &mut problems,
        );
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(SpecError {
                connection: self.name.to_string(),
                problems,
            })
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
        let value = value.into();
        let Some(p) = self.params.iter_mut().find(|p| &p.name == param) else {
            return Err(SpecProblem::UnknownParam { param: param.clone() });
        };
        if value.len() > MAX_VALUE_LEN {
            return Err(SpecProblem::TooLong {
                field: format!("params.{param} ({layer})"),
                len: value.len(),
                max: MAX_VALUE_LEN,
            });
        }
        if matches!(p.tenancy, Tenancy::PerCustomer(_)) && layer.customer().is_none() {
            return Err(SpecProblem::GlobalValueOnPerCustomer {
                param: param.clone(),
                layer,
            });
        }
        match &mut p.values {
            ParamValues::Plain(l) => {
                l.set(layer, value);
            }
            ParamValues::Secret(l) => {
                l.set(layer, SecretValue::new(value));
            }
        }
        Ok(())
    }

    /// Removes one value of a declared parameter; returns whether it had one.
    pub fn remove_value(&mut self, param: &ParamName, layer: &Layer) -> Result<bool, SpecProblem> {
        let Some(p) = self.params.iter_mut().find(|p| &p.name == param) else {
            return Err(SpecProblem::UnknownParam { param: param.clone() });
        };
        Ok(match &mut p.values {
            ParamValues::Plain(l) => l.unset(layer),
            ParamValues::Secret(l) => l.unset(layer),
        })
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
                service: String::new(),
            }),
            auth: AuthScheme::None,
            params: Vec::new(),
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

    /// Validates everything and returns the spec, or every problem found.
    pub fn build(self) -> Result<ConnectionSpec, SpecError> {
        let mut problems = Vec::new();
        let label = match &self.name {
            Ok(n) => n.to_string(),
            Err(
                ParseError::TooLong { input, .. }
                | ParseError::BadChar { input, .. }
                | ParseError::Reserved { input, .. },
            ) => shorten(input),
            Err(_) => String::new(),
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
        check_spec_body(
            &self.description,
            target.as_ref(),
            self.auth,
            &params,
            &mut problems,
        );
        match (project, scope, name, target) {
            (Some(project), Some(scope), Some(name), Some(target)) if problems.is_empty() => {
                Ok(ConnectionSpec {
                    project,
                    scope,
                    name,
                    description: Text::new(self.description),
                    target,
                    auth: self.auth,
                    params: params.into_boxed_slice(),
                })
            }
            _ => Err(SpecError {
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
    if auth.managed_oauth().is_some() {
        if !matches!(target, Target::Platform(_)) {
            problems.push(SpecProblem::ManagedOAuthNeedsPlatform {
                target: shorten(&target.to_string()),
            });
        }
        for p in params {
            if APP_PARAMS.contains(&p.name.as_str()) {
                problems.push(SpecProblem::AppSuppliedParam {
                    param: p.name.clone(),
                });
            }
        }
    }
    if matches!(auth, AuthScheme::ApiKey | AuthScheme::Basic)
        && !params.iter().any(|p| p.kind() == ParamKind::Secret)
    {
        problems.push(SpecProblem::NeedsSecret { scheme: auth });
    }
    if let Target::Database { engine } = target {
        for required in Target::DATABASE_PARAMS {
            match params.iter().find(|p| p.name.as_str() == required) {
                None => problems.push(SpecProblem::MissingParam {
                    what: format!("{engine} database"),
                    param: required,
                }),
                Some(p) if required == "Password" && p.kind() != ParamKind::Secret => {
                    problems.push(SpecProblem::MustBeSecret {
                        param: p.name.clone(),
                    })
                }
                Some(_) => {}
            }
        }
    }
}

/// A stored connection: a spec with its ID and, for a managed OAuth
/// connection, the application it refers to (never a copy of its secret).
///
/// Serialized as one map: the ID, the spec's fields, then `oauth_app` if any.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    id: ConnectionId,
    #[serde(flatten)]
    spec: ConnectionSpec,
    /// Boxed: most connections have none, and `AppOwner` is 32 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    oauth_app: Option<Box<AppOwner>>,
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
            oauth_app: Option<Box<AppOwner>>,
        }
        let f = Flat::deserialize(d)?;
        // A stored record passes the same checks as a new spec.
        let spec = ConnectionSpec {
            project: f.project,
            scope: f.scope,
            name: f.name,
            description: f.description,
            target: f.target,
            auth: f.auth,
            params: f.params,
        }
        .checked()
        .map_err(serde::de::Error::custom)?;
        Ok(Connection {
            id: f.id,
            spec,
            oauth_app: f.oauth_app,
        })
    }
}

impl Connection {
    /// Assembles a record. The registry is the one place that decides
    /// `oauth_app`; stores only round-trip it.
    pub fn new(id: ConnectionId, spec: ConnectionSpec, oauth_app: Option<AppOwner>) -> Self {
        Connection {
            id,
            spec,
            oauth_app: oauth_app.map(Box::new),
        }
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
        self.oauth_app.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_sizes() {
        // Every connection carries these (memory per connection is a performance target).
        assert_eq!(std::mem::size_of::<PlatformTarget>(), 80);
        assert_eq!(std::mem::size_of::<Target>(), 32);
        assert_eq!(std::mem::size_of::<Param>(), 72);
        assert_eq!(std::mem::size_of::<Connection>(), 160);
    }

    #[test]
    fn precedence_is_customer_env_then_customer_then_env_then_default() {
        let p = Param::plain("X")
            .default("d")
            .env("production", "e")
            .customer("c1", "c")
            .customer_env("c1", "production", "ce");
        let spec = ConnectionSpec::project("p", "n").param(p).build().unwrap();
        let ParamValues::Plain(layers) = spec.params()[0].values() else {
            panic!()
        };
        let prod = Environment::production();
        let dev = Environment::development();
        let c1: CustomerId = "c1".parse().unwrap();
        let c2: CustomerId = "c2".parse().unwrap();
        assert_eq!(layers.value_for(&prod, Some(&c1)).unwrap().0, "ce");
        assert_eq!(layers.value_for(&dev, Some(&c1)).unwrap().0, "c");
        assert_eq!(layers.value_for(&prod, Some(&c2)).unwrap().0, "e");
        assert_eq!(layers.value_for(&prod, None).unwrap().0, "e");
        assert_eq!(layers.value_for(&dev, None).unwrap().0, "d");
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
    fn layers_keep_the_order_given_and_serialize_as_pairs() {
        let prod = Environment::production();
        let spec = ConnectionSpec::project("p", "n")
            .param(Param::plain("A").default("d"))
            .param(Param::plain("B").env("production", "e").default("d"))
            .build()
            .unwrap();
        let layers = |i: usize| match spec.params()[i].values() {
            ParamValues::Plain(l) => l.layers().cloned().collect::<Vec<_>>(),
            ParamValues::Secret(_) => unreachable!(),
        };
        assert_eq!(layers(0), [Layer::Default]);
        assert_eq!(layers(1), [Layer::Environment(prod.clone()), Layer::Default]);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            json["params"][1]["values"]["plain"],
            serde_json::json!([[{"environment": "production"}, "e"], ["default", "d"]])
        );
        assert_eq!(
            json["params"][0]["values"]["plain"],
            serde_json::json!([["default", "d"]])
        );
        let back: ConnectionSpec = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
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
}
