//! The document types: what a manifest file says, field for field.
//!
//! These are plain serde types, the same for YAML, TOML and JSON. Identifiers are
//! kept as text here and validated by [`Manifest::from_document`](super::Manifest::from_document),
//! which reports every problem with its path; secret values are kept as the
//! reference text the file gives (`env:NAME`, `file:PATH`, ...).

use std::fmt;
use std::hash::BuildHasher;
use std::marker::PhantomData;

use hashbrown::{DefaultHashBuilder, HashTable};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The manifest format version this crate reads and writes.
pub const VERSION: &str = "1";

/// A whole manifest: one project's connections and its integrations' mappings.
///
/// ```yaml
/// version: 1
/// project: acme
/// connections:
///   - name: twilio
///     target: { external: twilio }
///     auth: api-key
///     parameters:
///       ServiceURL: { default: "https://api.twilio.com" }
///       ApiKey: { secret: true, environments: { production: "env:TWILIO_KEY" } }
/// integrations:
///   orders:
///     connections:
///       - connection: twilio
///         env:
///           - { from: ServiceURL, to: SMS_URL }
///           - { from: ApiKey, to: SMS_KEY }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// The format version (`1`); optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Text>,
    /// The project every connection and integration belongs to.
    pub project: String,
    /// The project's connection types, by name: the field schemas its
    /// connections and templates follow.
    #[serde(default, skip_serializing_if = "UniqueMap::is_empty")]
    pub types: UniqueMap<TypeDoc>,
    /// The host's connection types (a registry's
    /// [`ResolvePolicy::with_types`](crate::model::ResolvePolicy::with_types))
    /// that the project's connections and templates follow, by name, as
    /// export writes them: the document then says what every field is. Not
    /// written on apply; a registry whose host type of the name differs, or
    /// that has none, refuses the manifest.
    #[serde(default, rename = "hostTypes", skip_serializing_if = "UniqueMap::is_empty")]
    pub host_types: UniqueMap<TypeDoc>,
    /// The project's connection templates, by name.
    #[serde(default, skip_serializing_if = "UniqueMap::is_empty")]
    pub templates: UniqueMap<TemplateDoc>,
    /// The project's connections, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<ConnectionDoc>,
    /// Each integration's mappings, by integration.
    #[serde(default, skip_serializing_if = "UniqueMap::is_empty")]
    pub integrations: UniqueMap<IntegrationDoc>,
}

/// One connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionDoc {
    /// The name, unique per scope.
    pub name: String,
    /// Makes the connection integration-scope: only this integration sees it
    /// (Prismatic: *integration-specific*). Without it the connection is
    /// project-scope (Prismatic: *reusable*).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What the connection reaches (default: an unnamed external service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetDoc>,
    /// How it authenticates (default: `none`).
    #[serde(default, skip_serializing_if = "AuthDoc::is_none")]
    pub auth: AuthDoc,
    /// For `auth: oauth2`: where the client comes from (default: `shared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientDoc>,
    /// The connection type it follows (one of `types`, or the host's),
    /// checked by the registry on every write.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub connection_type: Option<String>,
    /// The template it is made from (one of `templates`): the fields the
    /// template fills take the template's values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Whether customers' own flows in the embedded builder may use it
    /// (default: `hidden`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<BuilderDoc>,
    /// The parameters, in order, by name.
    #[serde(default, skip_serializing_if = "UniqueMap::is_empty")]
    pub parameters: UniqueMap<ParamDoc>,
}

/// Whether customers' own flows in the embedded builder may use a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum BuilderDoc {
    /// Not offered to customers' flows.
    Hidden,
    /// Offered to the flows customers build, within the connection's scope.
    Available,
}

/// A connection type: the fields its connections have, with their rules.
///
/// ```yaml
/// types:
///   twilio-api-key:
///     label: Twilio API key
///     auth: api-key
///     target: external
///     fields:
///       AccountSID: { label: Account SID, pattern: "AC[0-9a-f]{32}", visibility: customer }
///       ApiKey: { type: secret, label: API key, visibility: customer }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TypeDoc {
    /// The label shown to people (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// How its connections authenticate (default: `none`); the scheme's
    /// fields must be among `fields`.
    #[serde(default, skip_serializing_if = "AuthDoc::is_none")]
    pub auth: AuthDoc,
    /// For `auth: oauth2`: where the client comes from (default: `shared`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientDoc>,
    /// What kind of target its connections reach (default: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetKindDoc>,
    /// The fields, in the order a wizard shows them, by name.
    #[serde(default, skip_serializing_if = "UniqueMap::is_empty")]
    pub fields: UniqueMap<FieldDoc>,
}

/// The kind of target a type's connections reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum TargetKindDoc {
    /// Any target.
    Any,
    /// A platform integration.
    Platform,
    /// A managed database.
    Database,
    /// A third-party service.
    External,
}

/// One field of a connection type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FieldDoc {
    /// The label shown to people (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The data type (default: `string`).
    #[serde(default, rename = "type", skip_serializing_if = "DataTypeDoc::is_string")]
    pub data_type: DataTypeDoc,
    /// Whether the field may be left without a value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
    /// Makes the field per-customer, entered by the organization or the
    /// customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_customer: Option<EnteredByDoc>,
    /// Who sees and sets it (default: `organization`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<FieldVisibilityDoc>,
    /// The value a connection of the type starts with (not for secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Text>,
    /// An example value, shown to people (not for secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub example: Option<Text>,
    /// A regular expression the whole value matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The smallest value allowed (integers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// The largest value allowed (integers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// The URL schemes allowed (URLs; default: `http` and `https`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemes: Vec<String>,
}

/// A field's data type: a name, or `{ picklist: [choices] }`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum DataTypeDoc {
    /// One line of text.
    #[default]
    String,
    /// A secret: its values in connections and templates are references.
    Secret,
    /// An absolute URL.
    Url,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// One of these choices, in the order shown.
    Picklist(Vec<String>),
    /// Text of several lines.
    Text,
}

impl DataTypeDoc {
    fn is_string(&self) -> bool {
        *self == DataTypeDoc::String
    }
}

/// Who may see and set a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum FieldVisibilityDoc {
    /// The organization's people only.
    Organization,
    /// The customer too, in the configuration wizard.
    Customer,
    /// The host's own code only.
    Programmatic,
}

/// A template of a connection type: values it pre-fills, hidden or not,
/// locked or overridable.
///
/// As for parameters, a secret field's values are references (`env:NAME`,
/// `file:PATH`, `keep:existing`, ...), never the secret itself.
///
/// ```yaml
/// templates:
///   acme-slack:
///     type: slack-oauth2
///     label: Acme's Slack app
///     fields:
///       ClientID: { default: acme-client, hidden: true }
///       ClientSecret: { secret: true, default: "env:SLACK_SECRET", hidden: true }
///       Scopes: { default: "chat:write", overridable: true }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateDoc {
    /// The type it fills.
    #[serde(rename = "type")]
    pub connection_type: String,
    /// The label shown to people (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The fields it fills, by name.
    #[serde(default, skip_serializing_if = "UniqueMap::is_empty")]
    pub fields: UniqueMap<TemplateFieldDoc>,
}

/// One field a template fills.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TemplateFieldDoc {
    /// Whether the field is secret (its values are then references).
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
    /// The value for every environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Text>,
    /// Values per environment.
    #[serde(default, skip_serializing_if = "UniqueMap::is_empty")]
    pub environments: UniqueMap<Text>,
    /// Hides the field from people (only the host's code sees it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub hidden: bool,
    /// Lets connections made from the template set their own value (by
    /// default the field is locked to the template's value).
    #[serde(default, skip_serializing_if = "is_false")]
    pub overridable: bool,
}

/// What a connection reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum TargetDoc {
    /// Another integration of the platform.
    Platform(PlatformDoc),
    /// A managed database engine (`postgresql`, `mysql`, ...).
    Database(String),
    /// A third-party service (`twilio`, ...).
    External(String),
}

/// A platform integration target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct PlatformDoc {
    /// The target's project (default: the manifest's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// The target integration.
    pub integration: String,
    /// The endpoint, if the integration has several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Who may call the endpoint (default: `project`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<VisibilityDoc>,
}

/// Who may call a platform endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum VisibilityDoc {
    /// Integrations of the same project.
    Project,
    /// Integrations of the same organization.
    Organization,
    /// Anyone.
    Public,
}

/// How a connection authenticates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AuthDoc {
    /// No authentication.
    #[default]
    None,
    /// An API key (a secret parameter).
    ApiKey,
    /// User name and password.
    Basic,
    /// OAuth 2.0 client credentials; see [`ConnectionDoc::client`].
    Oauth2,
    /// Fields the registrant defines.
    Custom,
}

impl AuthDoc {
    fn is_none(&self) -> bool {
        *self == AuthDoc::None
    }
}

/// Where an OAuth 2.0 connection's client comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum ClientDoc {
    /// The project's (or integration's) shared application.
    Shared,
    /// An application of this connection alone.
    Dedicated,
    /// The connection's own parameters carry the client.
    Supplied,
}

/// Who enters a per-customer value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum EnteredByDoc {
    /// The organization, on the customer's behalf.
    Organization,
    /// The customer.
    Customer,
}

/// One parameter: kind, schema and layered values.
///
/// For a secret parameter every value is a reference (`env:NAME`,
/// `file:PATH`, `keep:existing` or a scheme the host registers), never the
/// secret itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ParamDoc {
    /// Whether the parameter is secret.
    #[serde(default, skip_serializing_if = "is_false")]
    pub secret: bool,
    /// Whether the parameter may be left without a value.
    #[serde(default, skip_serializing_if = "is_false")]
    pub optional: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Makes the parameter per-customer (no global value), entered by the
    /// organization or the customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_customer: Option<EnteredByDoc>,
    /// The value for every environment and customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Text>,
    /// Values per environment.
    #[serde(default, skip_serializing_if = "UniqueMap::is_empty")]
    pub environments: UniqueMap<Text>,
    /// Values per customer: one value, or a default and values per environment.
    #[serde(default, skip_serializing_if = "UniqueMap::is_empty")]
    pub customers: UniqueMap<CustomerDoc>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A customer's values of one parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema), schemars(untagged))]
pub enum CustomerDoc {
    /// One value in every environment (`globex: "value"`).
    Value(Text),
    /// A value for every environment and values per environment.
    Layers(CustomerLayersDoc),
}

/// A customer's values when they differ by environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct CustomerLayersDoc {
    /// The customer's value in every environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Text>,
    /// The customer's value per environment.
    #[serde(default, skip_serializing_if = "UniqueMap::is_empty")]
    pub environments: UniqueMap<Text>,
}

impl Serialize for CustomerDoc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CustomerDoc::Value(t) => t.serialize(s),
            CustomerDoc::Layers(l) => l.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for CustomerDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CustomerDoc;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value, or a map with `default` and `environments`")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CustomerDoc, A::Error> {
                CustomerLayersDoc::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(CustomerDoc::Layers)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CustomerDoc, E> {
                TextVisitor.visit_str(v).map(CustomerDoc::Value)
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<CustomerDoc, E> {
                TextVisitor.visit_string(v).map(CustomerDoc::Value)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CustomerDoc, E> {
                TextVisitor.visit_i64(v).map(CustomerDoc::Value)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CustomerDoc, E> {
                TextVisitor.visit_u64(v).map(CustomerDoc::Value)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<CustomerDoc, E> {
                TextVisitor.visit_f64(v).map(CustomerDoc::Value)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<CustomerDoc, E> {
                TextVisitor.visit_bool(v).map(CustomerDoc::Value)
            }
        }
        d.deserialize_any(V)
    }
}

/// An integration's mappings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct IntegrationDoc {
    /// The connections it uses, in order.
    #[serde(default)]
    pub connections: Vec<UseDoc>,
}

/// One connection an integration uses: a reference and its `env` entries, in
/// the shape of Choreo's component configuration.
///
/// The reference is `connection: NAME` (the most specific visible connection
/// of that name, rule 2) or Choreo's `connectionConfig: ID` (a Connection ID of
/// the registry the manifest is applied to; a name is accepted there too).
/// `scope: project` or `scope: integration` pins a name to that scope's
/// connection. Without `env`, every parameter gets its default variable name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UseDoc {
    /// The connection's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// Choreo's Connection ID reference (or a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_config: Option<String>,
    /// Pins a name reference to one scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeDoc>,
    /// `from` parameter `to` variable entries; absent: default names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvEntryDoc>>,
}

/// A scope a reference is pinned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "camelCase")]
pub enum ScopeDoc {
    /// The project-scope connection of that name.
    Project,
    /// The integration's own connection of that name.
    Integration,
}

/// One `from`/`to` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnvEntryDoc {
    /// The parameter.
    pub from: String,
    /// The environment variable.
    pub to: String,
}

/// A scalar value as text. Numbers and booleans are accepted and kept as
/// their text (`Port: 5432`); floating-point numbers must be quoted, so that
/// `1.10` stays `1.10`.
///
/// `Debug` does not print the text: a manifest with a literal secret by
/// mistake must not leak it through a log line.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text(pub String);

impl Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(s.to_owned())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(s)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text({} bytes)", self.0.len())
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
        Ok(Text(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Text, E> {
        // The number itself is not repeated: it could be a secret.
        Err(E::custom(
            "a floating-point number: quote it, so that its text is kept exactly",
        ))
    }
}

thread_local! {
    /// Set while a self-describing format whose `deserialize_str` refuses
    /// numbers (JSON) is read: scalars are then read with `deserialize_any`.
    static ANY_SCALARS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with scalars read through `deserialize_any` (for JSON).
pub(crate) fn with_any_scalars<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ANY_SCALARS.with(|c| c.set(self.0));
        }
    }
    let _reset = Reset(ANY_SCALARS.with(|c| c.replace(true)));
    f()
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // YAML hands a plain scalar over as its exact text when asked for a
        // string; TOML forwards to its typed value (handled by the visitor);
        // JSON is read with `deserialize_any` (see `with_any_scalars`).
        if ANY_SCALARS.with(|c| c.get()) {
            d.deserialize_any(TextVisitor)
        } else {
            d.deserialize_str(TextVisitor)
        }
    }
}

/// A map that keeps its entries in document order and refuses a key given
/// twice (whatever the format's own rule). Keys are indexed by hash, so
/// reading or building a map of `n` entries costs in proportion to `n`,
/// however many entries a file gives.
#[derive(Clone)]
pub struct UniqueMap<V> {
    entries: Vec<(String, V)>,
    /// Positions in `entries`, by the hash of their key.
    index: HashTable<usize>,
    hasher: DefaultHashBuilder,
}

impl<V> Default for UniqueMap<V> {
    fn default() -> Self {
        UniqueMap {
            entries: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }
}

impl<V: PartialEq> PartialEq for UniqueMap<V> {
    /// The same entries in the same order.
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<V: Eq> Eq for UniqueMap<V> {}

impl<V> UniqueMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }
    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// The entries, in document order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &V)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        let hash = self.hasher.hash_one(key);
        self.index
            .find(hash, |&i| self.entries[i].0 == key)
            .map(|&i| &self.entries[i].1)
    }
    /// Appends an entry; returns `false` (and changes nothing) if `key` is
    /// already there.
    pub fn insert(&mut self, key: impl Into<String>, value: V) -> bool {
        let key = key.into();
        let hash = self.hasher.hash_one(key.as_str());
        let (entries, hasher) = (&self.entries, &self.hasher);
        match self.index.entry(
            hash,
            |&i| entries[i].0 == key,
            |&i| hasher.hash_one(entries[i].0.as_str()),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                slot.insert(self.entries.len());
                self.entries.push((key, value));
                true
            }
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for UniqueMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K: Into<String>, V> FromIterator<(K, V)> for UniqueMap<V> {
    /// Later duplicates are dropped.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = UniqueMap::new();
        for (k, v) in iter {
            map.insert(k, v);
        }
        map
    }
}

impl<V: Serialize> Serialize for UniqueMap<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for UniqueMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = UniqueMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMap<V>, A::Error> {
                let mut out = UniqueMap::new();
                while let Some(key) = map.next_key_seed(KeySeed)? {
                    if out.get(&key).is_some() {
                        // The key is not repeated: a text given where a key
                        // belongs may be a secret (the location says where).
                        return Err(de::Error::custom(format_args!(
                            "the key #{} is given more than once (the text is not repeated here)",
                            out.len() + 1
                        )));
                    }
                    let value = map.next_value()?;
                    out.insert(key, value);
                }
                Ok(out)
            }
        }
        d.deserialize_map(MapVisitor(PhantomData))
    }
}

/// Map keys as text (YAML may hand `8080:` over as a number).
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(TextVisitor).map(|t| t.0)
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Text {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Text".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A value as text; integers and booleans are kept as their text. A secret parameter's value is a reference: env:NAME, file:PATH, keep:existing or a scheme the host registers.",
            "type": ["string", "integer", "boolean"]
        })
    }
}

#[cfg(feature = "schema")]
impl<V: schemars::JsonSchema> schemars::JsonSchema for UniqueMap<V> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Map_of_{}", V::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": generator.subschema_for::<V>()
        })
    }
}
