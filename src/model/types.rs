//! Connection types: the field schema a connection follows (labels, data
//! types, rules, who sees each field), and the checks of a connection and of
//! a template against their type.
//!
//! A type is defined once: per project as a record ([`ProjectType`]), or per
//! host in a [`TypeLibrary`] the host puts in its policy. A connection names
//! its type ([`ConnectionSpec::connection_type`](super::ConnectionSpec::connection_type));
//! the registry checks it against the type on every write and reports every
//! problem at once ([`TypeError`]).

use std::fmt;
use std::sync::Arc;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::auth::{AuthField, AuthScheme, FieldNeed};
use super::connection::ConnectionSpec;
use super::description::{MAX_DESCRIPTION_LEN, Text};
use super::external::{ExternalRefError, SecretEntry};
use super::ident::{ParamName, ParseError, ProjectId, TemplateName, TypeName};
use super::layer::Layer;
use super::param::{EnteredBy, MAX_VALUE_LEN, ParamKind, ParamValues, Requirement, Tenancy};
use super::problem::{IntoIdent, join};
use super::target::Target;
use super::template::{ConnectionTemplate, Overrides};

/// The most bytes of a label (of a type, a field, a template).
pub const MAX_LABEL_LEN: usize = 128;
/// The most bytes of a validation pattern's source.
pub const MAX_PATTERN_LEN: usize = 1024;
/// The most choices of a picklist.
pub const MAX_CHOICES: usize = 256;
/// The most bytes of one picklist choice, of an example, of a URL scheme.
pub const MAX_CHOICE_LEN: usize = 256;
/// The most URL schemes a field may allow.
pub const MAX_SCHEMES: usize = 16;

/// The kind of data a field holds, without its details: what an error says
/// a value should have been, and what an auth scheme declares it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DataKind {
    /// One line of text.
    String,
    /// A secret (a password, an API key, a client secret).
    Secret,
    /// An absolute URL.
    Url,
    /// A whole number.
    Integer,
    /// `true` or `false`.
    Boolean,
    /// One of a list of choices.
    Picklist,
    /// Text of several lines.
    Text,
}

impl fmt::Display for DataKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataKind::String => "string",
            DataKind::Secret => "secret",
            DataKind::Url => "URL",
            DataKind::Integer => "integer",
            DataKind::Boolean => "boolean",
            DataKind::Picklist => "picklist",
            DataKind::Text => "multi-line text",
        })
    }
}

impl DataKind {
    /// The kind with its indefinite article, for messages ("an integer",
    /// "a URL").
    fn with_article(self) -> &'static str {
        match self {
            DataKind::String => "a string",
            DataKind::Secret => "a secret",
            DataKind::Url => "a URL",
            DataKind::Integer => "an integer",
            DataKind::Boolean => "a boolean",
            DataKind::Picklist => "a picklist",
            DataKind::Text => "a multi-line text",
        }
    }
}

/// A field's data type.
///
/// ```
/// use connective::model::{DataKind, DataType};
/// let region = DataType::picklist(["eu", "us"]);
/// assert_eq!(region.kind(), DataKind::Picklist);
/// assert_eq!(serde_json::to_string(&region)?, r#"{"picklist":["eu","us"]}"#);
/// assert_eq!(serde_json::to_string(&DataType::Url)?, r#""url""#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DataType {
    /// One line of text.
    String,
    /// A secret: stored as a secret parameter, never listed.
    Secret,
    /// An absolute URL, parsed by the `url` crate; `http` and `https` unless
    /// the field's validation names other schemes.
    Url,
    /// A whole number (64-bit).
    Integer,
    /// `true` or `false`.
    Boolean,
    /// One of these choices, in the order shown.
    Picklist(Vec<String>),
    /// Text of several lines.
    Text,
}

impl DataType {
    /// A picklist of `choices`.
    pub fn picklist<S: Into<String>>(choices: impl IntoIterator<Item = S>) -> Self {
        DataType::Picklist(choices.into_iter().map(Into::into).collect())
    }

    /// The kind, without the details.
    pub fn kind(&self) -> DataKind {
        match self {
            DataType::String => DataKind::String,
            DataType::Secret => DataKind::Secret,
            DataType::Url => DataKind::Url,
            DataType::Integer => DataKind::Integer,
            DataType::Boolean => DataKind::Boolean,
            DataType::Picklist(_) => DataKind::Picklist,
            DataType::Text => DataKind::Text,
        }
    }

    /// Whether values of this type are secret.
    pub fn is_secret(&self) -> bool {
        matches!(self, DataType::Secret)
    }
}

/// A regular expression a field's values must match whole, compiled once
/// with bounded size (the `regex` crate: matching takes time linear in the
/// value, whatever the pattern). Serialized as its source.
///
/// ```
/// use connective::model::Pattern;
/// let sid = Pattern::new("AC[0-9a-f]{32}")?;
/// assert!(sid.matches(&format!("AC{}", "0".repeat(32))));
/// assert!(!sid.matches("xAC00")); // the whole value must match
/// assert!(Pattern::new("(unclosed").is_err());
/// # Ok::<(), connective::model::PatternError>(())
/// ```
#[derive(Clone)]
pub struct Pattern {
    source: Box<str>,
    regex: regex::Regex,
}

/// Why a text is not a usable [`Pattern`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The source is longer than [`MAX_PATTERN_LEN`].
    #[error("the pattern is {len} bytes, at most {max} allowed")]
    TooLong {
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The regular expression does not compile, or compiles too large.
    #[error("the pattern is not a usable regular expression: {reason}")]
    Invalid {
        /// The compiler's reason (about the pattern, never a value).
        reason: String,
    },
}

impl Pattern {
    /// The most memory a compiled pattern may take.
    const SIZE_LIMIT: usize = 256 * 1024;
    /// The most memory a pattern's lazy DFA may take while matching.
    const DFA_LIMIT: usize = 1024 * 1024;
    /// The deepest nesting of groups and repetitions.
    const NEST_LIMIT: u32 = 32;

    /// Compiles `source`, which a value must match whole.
    pub fn new(source: &str) -> Result<Self, PatternError> {
        if source.len() > MAX_PATTERN_LEN {
            return Err(PatternError::TooLong {
                len: source.len(),
                max: MAX_PATTERN_LEN,
            });
        }
        let regex = regex::RegexBuilder::new(&format!(r"\A(?:{source})\z"))
            .size_limit(Self::SIZE_LIMIT)
            .dfa_size_limit(Self::DFA_LIMIT)
            .nest_limit(Self::NEST_LIMIT)
            .build()
            .map_err(|e| PatternError::Invalid {
                reason: match e {
                    regex::Error::CompiledTooBig(limit) => {
                        format!("it compiles to more than {limit} bytes")
                    }
                    // The syntax error's text quotes the pattern, never a value.
                    other => other
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                },
            })?;
        Ok(Pattern {
            source: source.into(),
            regex,
        })
    }

    /// The source, as given.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether `value` matches whole.
    pub fn matches(&self, value: &str) -> bool {
        self.regex.is_match(value)
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.source)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for Pattern {}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.source)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::de::from_str(d, Pattern::new)
    }
}

/// The rules a field's values follow beyond their data type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validation {
    /// A pattern the whole value matches (strings, secrets, URLs, text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Pattern>,
    /// The smallest value allowed (integers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// The largest value allowed (integers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// The URL schemes allowed, lower case (URLs; none given: `http` and
    /// `https`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemes: Vec<String>,
}

impl Validation {
    fn is_empty(&self) -> bool {
        *self == Validation::default()
    }
}

/// Who may see and set a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Visibility {
    /// The organization only: its people see and set it; customers never see
    /// it.
    #[default]
    Organization,
    /// The customer too: it sees the field and sets its own value in the
    /// configuration wizard.
    Customer,
    /// The host's own code only: set through the API, shown to no person.
    Programmatic,
}

impl fmt::Display for Visibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Visibility::Organization => "organization only",
            Visibility::Customer => "customer",
            Visibility::Programmatic => "programmatic only",
        })
    }
}

/// Who is looking at a connection: what a listing for them may contain
/// ([`Field::visible_to`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Viewer {
    /// The organization's people.
    Organization,
    /// One customer, in its configuration wizard.
    Customer(super::ident::CustomerId),
    /// The host's own code.
    Program,
}

/// One field of a connection type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "FieldFields")]
pub struct Field {
    name: ParamName,
    label: String,
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    description: Text,
    data_type: DataType,
    requirement: Requirement,
    tenancy: Tenancy,
    visibility: Visibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    example: Option<String>,
    #[serde(default, skip_serializing_if = "Validation::is_empty")]
    validation: Validation,
}

/// A serialized [`Field`] before its own checks run.
#[derive(Deserialize)]
#[serde(rename = "Field")]
struct FieldFields {
    name: ParamName,
    label: String,
    #[serde(default)]
    description: Text,
    data_type: DataType,
    requirement: Requirement,
    tenancy: Tenancy,
    #[serde(default)]
    visibility: Visibility,
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    example: Option<String>,
    #[serde(default)]
    validation: Validation,
}

impl TryFrom<FieldFields> for Field {
    type Error = TypeError;
    fn try_from(f: FieldFields) -> Result<Self, TypeError> {
        let field = Field {
            name: f.name,
            label: f.label,
            description: f.description,
            data_type: f.data_type,
            requirement: f.requirement,
            tenancy: f.tenancy,
            visibility: f.visibility,
            default: f.default,
            example: f.example,
            validation: f.validation,
        };
        let mut problems = Vec::new();
        field.check(&mut problems);
        if problems.is_empty() {
            Ok(field)
        } else {
            Err(TypeError {
                type_name: String::new(),
                subject: TypeSubject::Definition,
                problems,
            })
        }
    }
}

impl Field {
    /// Starts a field of `data_type`. Its label is its name until one is
    /// given.
    pub fn of_type<N: IntoIdent<ParamName>>(name: N, data_type: DataType) -> FieldBuilder {
        FieldBuilder {
            name: name.into_ident(),
            label: None,
            description: String::new(),
            data_type,
            requirement: Requirement::Required,
            tenancy: Tenancy::Global,
            visibility: Visibility::Organization,
            default: None,
            example: None,
            validation: Validation::default(),
            pattern: None,
        }
    }
    /// Starts a one-line text field.
    pub fn string<N: IntoIdent<ParamName>>(name: N) -> FieldBuilder {
        Field::of_type(name, DataType::String)
    }
    /// Starts a secret field.
    pub fn secret<N: IntoIdent<ParamName>>(name: N) -> FieldBuilder {
        Field::of_type(name, DataType::Secret)
    }
    /// Starts a URL field.
    pub fn url<N: IntoIdent<ParamName>>(name: N) -> FieldBuilder {
        Field::of_type(name, DataType::Url)
    }
    /// Starts an integer field.
    pub fn integer<N: IntoIdent<ParamName>>(name: N) -> FieldBuilder {
        Field::of_type(name, DataType::Integer)
    }
    /// Starts a boolean field.
    pub fn boolean<N: IntoIdent<ParamName>>(name: N) -> FieldBuilder {
        Field::of_type(name, DataType::Boolean)
    }
    /// Starts a picklist field.
    pub fn picklist<N: IntoIdent<ParamName>, S: Into<String>>(
        name: N,
        choices: impl IntoIterator<Item = S>,
    ) -> FieldBuilder {
        Field::of_type(name, DataType::picklist(choices))
    }
    /// Starts a multi-line text field.
    pub fn text<N: IntoIdent<ParamName>>(name: N) -> FieldBuilder {
        Field::of_type(name, DataType::Text)
    }

    /// The name: the connection's parameter of this field.
    pub fn name(&self) -> &ParamName {
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
    /// The data type.
    pub fn data_type(&self) -> &DataType {
        &self.data_type
    }
    /// Required or optional.
    pub fn requirement(&self) -> Requirement {
        self.requirement
    }
    /// Global or per customer.
    pub fn tenancy(&self) -> Tenancy {
        self.tenancy
    }
    /// Who may see and set it.
    pub fn visibility(&self) -> Visibility {
        self.visibility
    }
    /// The value a new connection of the type starts with (never for a
    /// secret).
    pub fn default_value(&self) -> Option<&str> {
        self.default.as_deref()
    }
    /// An example value, shown as a hint.
    pub fn example(&self) -> Option<&str> {
        self.example.as_deref()
    }
    /// The rules beyond the data type.
    pub fn validation(&self) -> &Validation {
        &self.validation
    }
    /// The kind of parameter the field is stored as.
    pub fn param_kind(&self) -> ParamKind {
        if self.data_type.is_secret() {
            ParamKind::Secret
        } else {
            ParamKind::Plain
        }
    }

    /// **Field visibility**: whether `viewer` may see this field (and so
    /// whether a listing for them may contain it). The host's code sees
    /// every field; the organization every field but programmatic ones; a
    /// customer only customer fields.
    pub fn visible_to(&self, viewer: &Viewer) -> bool {
        visibility_allows(self.visibility, viewer)
    }

    /// **The check of one value** of this field: its data type, then its
    /// validation. The problem never holds the value.
    ///
    /// ```
    /// use connective::model::{Field, ValueProblem};
    /// let port = Field::integer("Port").range(1, 65535).build_field()?;
    /// assert_eq!(port.check_value("5432"), Ok(()));
    /// assert_eq!(port.check_value("five"), Err(ValueProblem::NotInteger));
    /// assert_eq!(port.check_value("70000"), Err(ValueProblem::OutOfRange { min: Some(1), max: Some(65535) }));
    /// # Ok::<(), connective::model::TypeError>(())
    /// ```
    pub fn check_value(&self, value: &str) -> Result<(), ValueProblem> {
        match &self.data_type {
            DataType::String if value.contains(['\n', '\r']) => return Err(ValueProblem::NotOneLine),
            DataType::String | DataType::Secret | DataType::Text => {}
            DataType::Url => {
                let url = url::Url::parse(value).map_err(|_| ValueProblem::NotUrl)?;
                let allowed: &[&str] = &["http", "https"];
                let scheme = url.scheme();
                let ok = if self.validation.schemes.is_empty() {
                    allowed.contains(&scheme)
                } else {
                    self.validation.schemes.iter().any(|s| s == scheme)
                };
                if !ok {
                    return Err(ValueProblem::SchemeNotAllowed {
                        allowed: if self.validation.schemes.is_empty() {
                            allowed.iter().map(|s| (*s).to_owned()).collect()
                        } else {
                            self.validation.schemes.clone()
                        },
                    });
                }
            }
            DataType::Integer => {
                let n: i64 = value.parse().map_err(|_| ValueProblem::NotInteger)?;
                let (min, max) = (self.validation.min, self.validation.max);
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    return Err(ValueProblem::OutOfRange { min, max });
                }
            }
            DataType::Boolean => {
                if value != "true" && value != "false" {
                    return Err(ValueProblem::NotBoolean);
                }
            }
            DataType::Picklist(choices) => {
                if !choices.iter().any(|c| c == value) {
                    return Err(ValueProblem::NotAChoice);
                }
            }
        }
        if let Some(pattern) = &self.validation.pattern
            && !pattern.matches(value)
        {
            return Err(ValueProblem::NoMatch {
                pattern: pattern.as_str().to_owned(),
            });
        }
        Ok(())
    }

    /// The field's own rules: label, texts, validation fitting the data
    /// type, a default that passes [`Field::check_value`].
    fn check(&self, problems: &mut Vec<TypeProblem>) {
        let name = &self.name;
        check_label(Some(name), &self.label, problems);
        if self.description.as_str().len() > MAX_DESCRIPTION_LEN {
            problems.push(TypeProblem::TooLong {
                what: format!("the description of field {name}"),
                len: self.description.as_str().len(),
                max: MAX_DESCRIPTION_LEN,
            });
        }
        let kind = self.data_type.kind();
        let v = &self.validation;
        let mut misfit = |rule: &'static str| {
            problems.push(TypeProblem::RuleDoesNotFit {
                field: name.clone(),
                rule,
                kind,
            })
        };
        if v.pattern.is_some()
            && !matches!(
                kind,
                DataKind::String | DataKind::Secret | DataKind::Url | DataKind::Text
            )
        {
            misfit("pattern");
        }
        if (v.min.is_some() || v.max.is_some()) && kind != DataKind::Integer {
            misfit("range");
        }
        if !v.schemes.is_empty() && kind != DataKind::Url {
            misfit("url schemes");
        }
        if let (Some(min), Some(max)) = (v.min, v.max)
            && min > max
        {
            problems.push(TypeProblem::EmptyRange {
                field: name.clone(),
                min,
                max,
            });
        }
        if v.schemes.len() > MAX_SCHEMES {
            problems.push(TypeProblem::TooMany {
                what: format!("url schemes of field {name}"),
                count: v.schemes.len(),
                max: MAX_SCHEMES,
            });
        }
        for scheme in &v.schemes {
            let valid = scheme.len() <= MAX_CHOICE_LEN
                && scheme.starts_with(|c: char| c.is_ascii_lowercase())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
            if !valid {
                problems.push(TypeProblem::BadScheme { field: name.clone() });
            }
        }
        if let DataType::Picklist(choices) = &self.data_type {
            if choices.is_empty() {
                problems.push(TypeProblem::NoChoices { field: name.clone() });
            }
            if choices.len() > MAX_CHOICES {
                problems.push(TypeProblem::TooMany {
                    what: format!("choices of field {name}"),
                    count: choices.len(),
                    max: MAX_CHOICES,
                });
            }
            for (i, choice) in choices.iter().enumerate() {
                if choice.is_empty() || choice.len() > MAX_CHOICE_LEN || choice.chars().any(char::is_control)
                {
                    problems.push(TypeProblem::BadChoice {
                        field: name.clone(),
                        index: i,
                    });
                } else if choices[..i].contains(choice) {
                    problems.push(TypeProblem::DuplicateChoice {
                        field: name.clone(),
                        index: i,
                    });
                }
            }
        }
        if let Some(default) = &self.default {
            if self.data_type.is_secret() {
                problems.push(TypeProblem::SecretDefault { field: name.clone() });
            } else if default.len() > MAX_VALUE_LEN {
                problems.push(TypeProblem::TooLong {
                    what: format!("the default of field {name}"),
                    len: default.len(),
                    max: MAX_VALUE_LEN,
                });
            } else if let Err(why) = self.check_value(default) {
                problems.push(TypeProblem::BadDefault {
                    field: name.clone(),
                    why,
                });
            }
        }
        if let Some(example) = &self.example
            && (example.len() > MAX_CHOICE_LEN || example.chars().any(char::is_control))
        {
            problems.push(TypeProblem::BadExample { field: name.clone() });
        }
        if self.tenancy == Tenancy::PerCustomer(EnteredBy::Customer)
            && self.visibility != Visibility::Customer
        {
            problems.push(TypeProblem::CustomerCannotSee {
                field: name.clone(),
                visibility: self.visibility,
            });
        }
    }
}

/// **Field visibility, the one rule**: whether a field of `visibility` may
/// be shown to `viewer`.
pub(crate) fn visibility_allows(visibility: Visibility, viewer: &Viewer) -> bool {
    match viewer {
        Viewer::Program => true,
        Viewer::Organization => visibility != Visibility::Programmatic,
        Viewer::Customer(_) => visibility == Visibility::Customer,
    }
}

/// A label: 1 to [`MAX_LABEL_LEN`] bytes, no control characters.
/// What a type and a template are both checked for before their fields: the
/// label, the description's length and how many fields there are.
pub(super) fn check_heading(label: &str, description: &str, fields: usize, problems: &mut Vec<TypeProblem>) {
    check_label(None, label, problems);
    if description.len() > MAX_DESCRIPTION_LEN {
        problems.push(TypeProblem::TooLong {
            what: "the description".into(),
            len: description.len(),
            max: MAX_DESCRIPTION_LEN,
        });
    }
    if fields > super::connection::MAX_PARAMS {
        problems.push(TypeProblem::TooMany {
            what: "fields".into(),
            count: fields,
            max: super::connection::MAX_PARAMS,
        });
    }
}

fn check_label(field: Option<&ParamName>, label: &str, problems: &mut Vec<TypeProblem>) {
    if label.is_empty() || label.len() > MAX_LABEL_LEN || label.chars().any(char::is_control) {
        problems.push(TypeProblem::BadLabel {
            field: field.cloned(),
            len: label.len(),
        });
    }
}

/// Builds a [`Field`]; problems surface in [`ConnectionTypeBuilder::build`]
/// (or [`FieldBuilder::build_field`]).
#[derive(Debug, Clone)]
pub struct FieldBuilder {
    name: Result<ParamName, ParseError>,
    label: Option<String>,
    description: String,
    data_type: DataType,
    requirement: Requirement,
    tenancy: Tenancy,
    visibility: Visibility,
    default: Option<String>,
    example: Option<String>,
    validation: Validation,
    /// A pattern source not compiled yet.
    pattern: Option<String>,
}

impl FieldBuilder {
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
    /// Marks the field optional (fields are required by default).
    pub fn optional(mut self) -> Self {
        self.requirement = Requirement::Optional;
        self
    }
    /// Makes the field per-customer: no global value, each customer's set
    /// by `entered_by` (a customer-entered field must be visible to the
    /// customer).
    pub fn per_customer(mut self, entered_by: EnteredBy) -> Self {
        self.tenancy = Tenancy::PerCustomer(entered_by);
        self
    }
    /// Sets who may see and set the field (default: the organization only).
    pub fn visibility(mut self, visibility: Visibility) -> Self {
        self.visibility = visibility;
        self
    }
    /// Sets the value a new connection starts with (not for secrets).
    pub fn default(mut self, value: impl Into<String>) -> Self {
        self.default = Some(value.into());
        self
    }
    /// Sets an example value, shown as a hint.
    pub fn example(mut self, value: impl Into<String>) -> Self {
        self.example = Some(value.into());
        self
    }
    /// Values must match `pattern` whole.
    pub fn pattern(mut self, pattern: impl Into<String>) -> Self {
        self.pattern = Some(pattern.into());
        self
    }
    /// Integers must lie in `min..=max`.
    pub fn range(mut self, min: i64, max: i64) -> Self {
        self.validation.min = Some(min);
        self.validation.max = Some(max);
        self
    }
    /// Integers must be at least `min`.
    pub fn min(mut self, min: i64) -> Self {
        self.validation.min = Some(min);
        self
    }
    /// Integers must be at most `max`.
    pub fn max(mut self, max: i64) -> Self {
        self.validation.max = Some(max);
        self
    }
    /// URLs must use one of `schemes` (default: `http` and `https`).
    pub fn schemes<S: Into<String>>(mut self, schemes: impl IntoIterator<Item = S>) -> Self {
        self.validation.schemes = schemes.into_iter().map(Into::into).collect();
        self
    }

    /// The field with every problem recorded.
    fn build_into(self, index: usize, problems: &mut Vec<TypeProblem>) -> Option<Field> {
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
        let mut validation = self.validation;
        if let Some(source) = self.pattern {
            match Pattern::new(&source) {
                Ok(p) => validation.pattern = Some(p),
                Err(error) => problems.push(TypeProblem::BadPattern {
                    field: name.clone(),
                    error,
                }),
            }
        }
        let field = Field {
            label: self.label.unwrap_or_else(|| name.to_string()),
            name,
            description: Text::new(self.description),
            data_type: self.data_type,
            requirement: self.requirement,
            tenancy: self.tenancy,
            visibility: self.visibility,
            default: self.default,
            example: self.example,
            validation,
        };
        field.check(problems);
        Some(field)
    }

    /// The field alone, checked (a type's checks across fields run in
    /// [`ConnectionTypeBuilder::build`]).
    pub fn build_field(self) -> Result<Field, TypeError> {
        let mut problems = Vec::new();
        let field = self.build_into(0, &mut problems);
        match field {
            Some(f) if problems.is_empty() => Ok(f),
            _ => Err(TypeError {
                type_name: String::new(),
                subject: TypeSubject::Definition,
                problems,
            }),
        }
    }
}

/// What kind of target a type's connections reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TargetKind {
    /// Any target.
    #[default]
    Any,
    /// A platform integration.
    Platform,
    /// A managed database: the type declares [`Target::DATABASE_PARAMS`].
    Database,
    /// A third-party service.
    External,
}

impl TargetKind {
    /// Whether `target` is of this kind.
    pub fn admits(self, target: &Target) -> bool {
        match self {
            TargetKind::Any => true,
            TargetKind::Platform => matches!(target, Target::Platform(_)),
            TargetKind::Database => matches!(target, Target::Database { .. }),
            TargetKind::External => matches!(target, Target::External { .. }),
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TargetKind::Any => "any target",
            TargetKind::Platform => "a platform integration",
            TargetKind::Database => "a database",
            TargetKind::External => "an external service",
        })
    }
}

/// A connection type: "Slack OAuth 2.0", "PostgreSQL", "Twilio API key".
/// Its fields are the parameters its connections have, with labels, data
/// types, rules and who sees them.
///
/// **Every type is valid**: the builder and deserialization run the same
/// checks, including that the fields its auth scheme and target need are
/// there ([`AuthScheme::fields`]).
///
/// ```
/// use connective::model::{AuthScheme, ConnectionType, EnteredBy, Field, OAuthClient, Visibility};
/// let slack = ConnectionType::builder("slack-oauth2")
///     .label("Slack OAuth 2.0")
///     .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
///     .field(Field::url("AuthorizeURL").label("Authorize URL").default("https://slack.com/oauth/v2/authorize"))
///     .field(Field::url("TokenURL").label("Token URL").default("https://slack.com/api/oauth.v2.access"))
///     .field(Field::string("ClientID").label("Client ID"))
///     .field(Field::secret("ClientSecret").label("Client secret"))
///     .field(Field::string("Scopes").label("Scopes").default("chat:write"))
///     .field(Field::string("Channel").label("Channel").per_customer(EnteredBy::Customer)
///         .visibility(Visibility::Customer).pattern("#[a-z0-9-]+"))
///     .build()?;
/// assert_eq!(slack.fields().len(), 6);
///
/// // The auth scheme's fields are required: without them there is no type.
/// let err = ConnectionType::builder("broken").auth(AuthScheme::OAuth2(OAuthClient::Supplied)).build().unwrap_err();
/// assert!(err.to_string().contains("needs field AuthorizeURL"), "{err}");
/// # Ok::<(), connective::model::TypeError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TypeFields")]
pub struct ConnectionType {
    name: TypeName,
    label: String,
    #[serde(default, skip_serializing_if = "Text::is_empty")]
    description: Text,
    auth: AuthScheme,
    #[serde(default)]
    target: TargetKind,
    fields: Box<[Field]>,
}

/// A serialized [`ConnectionType`] before its checks run.
#[derive(Deserialize)]
#[serde(rename = "ConnectionType")]
struct TypeFields {
    name: TypeName,
    label: String,
    #[serde(default)]
    description: Text,
    auth: AuthScheme,
    #[serde(default)]
    target: TargetKind,
    fields: Box<[Field]>,
}

impl TryFrom<TypeFields> for ConnectionType {
    type Error = TypeError;
    fn try_from(f: TypeFields) -> Result<Self, TypeError> {
        ConnectionType {
            name: f.name,
            label: f.label,
            description: f.description,
            auth: f.auth,
            target: f.target,
            fields: f.fields,
        }
        .checked()
    }
}

impl ConnectionType {
    /// Starts a type.
    pub fn builder<N: IntoIdent<TypeName>>(name: N) -> ConnectionTypeBuilder {
        ConnectionTypeBuilder {
            name: name.into_ident(),
            label: None,
            description: String::new(),
            auth: AuthScheme::None,
            target: TargetKind::Any,
            fields: Vec::new(),
        }
    }

    /// The name.
    pub fn name(&self) -> &TypeName {
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
    /// The auth scheme of its connections.
    pub fn auth(&self) -> AuthScheme {
        self.auth
    }
    /// The kind of target of its connections.
    pub fn target(&self) -> TargetKind {
        self.target
    }
    /// The fields, in the order a wizard shows them.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }
    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name.as_str() == name)
    }

    fn checked(self) -> Result<Self, TypeError> {
        let mut problems = Vec::new();
        check_type(
            &self.label,
            self.description.as_str(),
            self.auth,
            self.target,
            &self.fields,
            &mut problems,
        );
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(TypeError {
                type_name: self.name.to_string(),
                subject: TypeSubject::Definition,
                problems,
            })
        }
    }

    /// **A connection against its type**, every problem at once: the auth
    /// scheme and target kind, each parameter a field of the type stored as
    /// the field says (secret or plain, required or optional, global or per
    /// customer), every required field declared, every value of the right
    /// data type and passing the field's validation, and, for a connection
    /// made from `template`, no value for a field the template locks.
    pub fn check_connection(
        &self,
        spec: &ConnectionSpec,
        template: Option<&ConnectionTemplate>,
    ) -> Result<(), TypeError> {
        let mut problems = Vec::new();
        if spec.connection_type() != Some(&self.name) {
            problems.push(TypeProblem::OtherType {
                found: spec.connection_type().cloned(),
            });
        }
        if spec.auth() != self.auth {
            problems.push(TypeProblem::AuthMismatch {
                expected: self.auth,
                found: spec.auth(),
            });
        }
        if !self.target.admits(spec.target()) {
            problems.push(TypeProblem::TargetMismatch {
                expected: self.target,
            });
        }
        if let Some(t) = template
            && t.connection_type() != &self.name
        {
            problems.push(TypeProblem::TemplateOfOtherType {
                template: t.name().clone(),
                its_type: t.connection_type().clone(),
            });
        }
        for p in spec.params() {
            let Some(field) = self.field(p.name().as_str()) else {
                problems.push(TypeProblem::UnknownField {
                    field: p.name().clone(),
                });
                continue;
            };
            if p.kind() != field.param_kind() {
                problems.push(TypeProblem::KindMismatch {
                    field: field.name.clone(),
                    expected: field.param_kind(),
                });
            }
            if p.requirement() != field.requirement {
                problems.push(TypeProblem::RequirementMismatch {
                    field: field.name.clone(),
                    expected: field.requirement,
                });
            }
            if p.tenancy() != field.tenancy {
                problems.push(TypeProblem::TenancyMismatch {
                    field: field.name.clone(),
                    expected: field.tenancy,
                });
            }
            let locked = template
                .and_then(|t| t.field(p.name().as_str()))
                .is_some_and(|tf| tf.overrides() == Overrides::Locked);
            if locked && !p.layers().is_empty() {
                problems.push(TypeProblem::LockedByTemplate {
                    field: field.name.clone(),
                });
            }
            check_values(field, p.values(), &mut problems);
        }
        for field in self.fields.iter() {
            if field.requirement == Requirement::Required && spec.param(field.name.as_str()).is_none() {
                problems.push(TypeProblem::MissingField {
                    field: field.name.clone(),
                    kind: field.data_type.kind(),
                });
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TypeError {
                type_name: self.name.to_string(),
                subject: TypeSubject::Connection(spec.name().to_string()),
                problems,
            })
        }
    }

    /// **A template against its type**, every problem at once: the type's
    /// name, each template field a field of the type, stored as it says,
    /// its values of the right data type and validation.
    pub fn check_template(&self, template: &ConnectionTemplate) -> Result<(), TypeError> {
        let mut problems = Vec::new();
        if template.connection_type() != &self.name {
            problems.push(TypeProblem::TemplateOfOtherType {
                template: template.name().clone(),
                its_type: template.connection_type().clone(),
            });
        }
        for tf in template.fields() {
            let Some(field) = self.field(tf.name().as_str()) else {
                problems.push(TypeProblem::UnknownField {
                    field: tf.name().clone(),
                });
                continue;
            };
            if tf.kind() != field.param_kind() {
                problems.push(TypeProblem::KindMismatch {
                    field: field.name.clone(),
                    expected: field.param_kind(),
                });
            }
            check_values(field, tf.values(), &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(TypeError {
                type_name: self.name.to_string(),
                subject: TypeSubject::Template(template.name().to_string()),
                problems,
            })
        }
    }
}

/// Every value of a parameter against its field.
fn check_values(field: &Field, values: &ParamValues, problems: &mut Vec<TypeProblem>) {
    let mut one = |layer: &Layer, value: &str| {
        if let Err(why) = field.check_value(value) {
            problems.push(TypeProblem::BadValue {
                field: field.name.clone(),
                layer: layer.clone(),
                expected: field.data_type.kind(),
                why,
            });
        }
    };
    match values {
        ParamValues::Plain(layers) => layers.pairs().for_each(|(l, v)| one(l, v)),
        // Checked, never shown: the problem does not hold the value.
        // A reference to an external store is checked when its value is
        // fetched, not here: connective does not hold the value.
        ParamValues::Secret(layers) => layers.pairs().for_each(|(l, v)| {
            if let SecretEntry::Stored(v) = v {
                one(l, v.expose());
            }
        }),
    }
}

/// **The checks of a type definition**: label and description, each
/// field's rules, field names unique, and the fields the auth scheme and the
/// target kind need.
fn check_type(
    label: &str,
    description: &str,
    auth: AuthScheme,
    target: TargetKind,
    fields: &[Field],
    problems: &mut Vec<TypeProblem>,
) {
    check_heading(label, description, fields.len(), problems);
    for (i, f) in fields.iter().enumerate() {
        if fields[..i].iter().any(|g| g.name == f.name) {
            problems.push(TypeProblem::DuplicateField {
                field: f.name.clone(),
            });
        }
    }
    let declared = |need: &AuthField, problems: &mut Vec<TypeProblem>| match fields
        .iter()
        .find(|f| f.name.as_str() == need.param)
    {
        None => problems.push(TypeProblem::NeedsField {
            what: need.needed_by,
            field: need.param,
            kind: need.kind,
        }),
        Some(f) => {
            if f.data_type.kind() != need.kind {
                problems.push(TypeProblem::NeededFieldKind {
                    field: f.name.clone(),
                    expected: need.kind,
                });
            }
            if need.need == FieldNeed::Required && f.requirement != Requirement::Required {
                problems.push(TypeProblem::NeededFieldOptional {
                    field: f.name.clone(),
                });
            }
        }
    };
    for need in auth.fields().iter().filter(|f| f.on_connection()) {
        declared(need, problems);
    }
    if target == TargetKind::Database {
        for need in &AuthField::DATABASE {
            declared(need, problems);
        }
    }
    for f in fields {
        if auth.supplies(f.name.as_str()) {
            problems.push(TypeProblem::AppSuppliedField {
                field: f.name.clone(),
            });
        }
    }
    if matches!(auth, AuthScheme::ApiKey | AuthScheme::Basic)
        && !fields.iter().any(|f| f.data_type.is_secret())
    {
        problems.push(TypeProblem::NeedsSecret { scheme: auth });
    }
    for f in fields {
        f.check(problems);
    }
}

/// Builds a [`ConnectionType`]; every problem is reported at once by
/// [`ConnectionTypeBuilder::build`].
#[derive(Debug, Clone)]
pub struct ConnectionTypeBuilder {
    name: Result<TypeName, ParseError>,
    label: Option<String>,
    description: String,
    auth: AuthScheme,
    target: TargetKind,
    fields: Vec<FieldBuilder>,
}

impl ConnectionTypeBuilder {
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
    /// Sets the auth scheme (default: none); its fields must be among the
    /// type's ([`AuthScheme::fields`]).
    pub fn auth(mut self, auth: AuthScheme) -> Self {
        self.auth = auth;
        self
    }
    /// Sets the kind of target (default: any).
    pub fn target(mut self, target: TargetKind) -> Self {
        self.target = target;
        self
    }
    /// Appends a field.
    pub fn field(mut self, field: FieldBuilder) -> Self {
        self.fields.push(field);
        self
    }

    /// Validates everything and returns the type, or every problem found.
    pub fn build(self) -> Result<ConnectionType, TypeError> {
        let mut problems = Vec::new();
        let label_name = match &self.name {
            Ok(n) => n.to_string(),
            Err(_) => String::new(),
        };
        let name = match self.name {
            Ok(n) => Some(n),
            Err(error) => {
                problems.push(TypeProblem::Ident {
                    field: "name".into(),
                    error,
                });
                None
            }
        };
        let mut fields = Vec::with_capacity(self.fields.len());
        let mut field_problems = Vec::new();
        for (i, builder) in self.fields.into_iter().enumerate() {
            // Each field's own checks run again in `check_type`, so they
            // are kept out of this list.
            if let Some(f) = builder.build_into(i, &mut field_problems) {
                fields.push(f);
            }
        }
        problems.extend(
            field_problems
                .into_iter()
                .filter(|p| matches!(p, TypeProblem::Ident { .. } | TypeProblem::BadPattern { .. })),
        );
        let label = self.label.unwrap_or_else(|| label_name.clone());
        check_type(
            &label,
            &self.description,
            self.auth,
            self.target,
            &fields,
            &mut problems,
        );
        match name {
            Some(name) if problems.is_empty() => Ok(ConnectionType {
                name,
                label,
                description: Text::new(self.description),
                auth: self.auth,
                target: self.target,
                fields: fields.into_boxed_slice(),
            }),
            _ => Err(TypeError {
                type_name: label_name,
                subject: TypeSubject::Definition,
                problems,
            }),
        }
    }
}

/// A project's connection type, as a record: the type and its project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectType {
    project: ProjectId,
    #[serde(flatten)]
    definition: Arc<ConnectionType>,
}

impl ProjectType {
    /// `definition` as a type of `project`.
    pub fn new(project: ProjectId, definition: ConnectionType) -> Self {
        ProjectType {
            project,
            definition: Arc::new(definition),
        }
    }
    /// The project.
    pub fn project(&self) -> &ProjectId {
        &self.project
    }
    /// The type.
    pub fn definition(&self) -> &Arc<ConnectionType> {
        &self.definition
    }
    /// The type's name.
    pub fn name(&self) -> &TypeName {
        &self.definition.name
    }
}

/// The host's own connection types, defined once for every project: part of
/// the host's policy ([`ResolvePolicy::with_types`](super::ResolvePolicy::with_types)),
/// so every replica configured alike knows them. A project's type of the
/// same name is the one its connections get (the more specific wins, as in
/// rule 2). Cheap to clone.
///
/// ```
/// use connective::model::{ConnectionType, Field, TypeLibrary};
/// let library = TypeLibrary::new([
///     ConnectionType::builder("webhook").label("Webhook").field(Field::url("URL")).build()?,
/// ])?;
/// assert!(library.get("webhook").is_some());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TypeLibrary(Arc<IndexMap<TypeName, Arc<ConnectionType>>>);

impl TypeLibrary {
    /// A library of `types`; refused if two share a name.
    pub fn new(types: impl IntoIterator<Item = ConnectionType>) -> Result<Self, TypeError> {
        let mut map = IndexMap::new();
        let mut problems = Vec::new();
        for t in types {
            if map.contains_key(&t.name) {
                problems.push(TypeProblem::DuplicateType { name: t.name.clone() });
            } else {
                map.insert(t.name.clone(), Arc::new(t));
            }
        }
        if problems.is_empty() {
            Ok(TypeLibrary(Arc::new(map)))
        } else {
            Err(TypeError {
                type_name: String::new(),
                subject: TypeSubject::Library,
                problems,
            })
        }
    }

    /// A type by name.
    pub fn get(&self, name: &str) -> Option<&Arc<ConnectionType>> {
        self.0.get(name)
    }

    /// Every type, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ConnectionType>> {
        self.0.values()
    }

    /// How many types.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for TypeLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// Why one value does not fit its field. Never holds the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueProblem {
    /// A one-line string holds a line break.
    #[error("not one line of text")]
    NotOneLine,
    /// Not an absolute URL.
    #[error("not an absolute URL")]
    NotUrl,
    /// A URL of a scheme the field does not allow.
    #[error("not a URL of scheme {}", allowed.join(", "))]
    SchemeNotAllowed {
        /// The schemes allowed.
        allowed: Vec<String>,
    },
    /// Not a whole number.
    #[error("not an integer")]
    NotInteger,
    /// A number out of the field's range.
    #[error("out of range ({}..={})", min.map_or(String::new(), |m| m.to_string()), max.map_or(String::new(), |m| m.to_string()))]
    OutOfRange {
        /// The smallest allowed.
        min: Option<i64>,
        /// The largest allowed.
        max: Option<i64>,
    },
    /// Not `true` or `false`.
    #[error("not true or false")]
    NotBoolean,
    /// Not one of the picklist's choices.
    #[error("not one of the field's choices")]
    NotAChoice,
    /// Does not match the field's pattern.
    #[error("does not match pattern {pattern:?}")]
    NoMatch {
        /// The pattern.
        pattern: String,
    },
}

/// What a [`TypeError`] is about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypeSubject {
    /// The type's own definition.
    Definition,
    /// A host's library of types.
    Library,
    /// A connection of the type (its name).
    Connection(String),
    /// A template of the type (its name).
    Template(String),
}

/// One problem of a type, or of a connection or template against its type.
/// [`TypeError`] lists them all. None holds a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeProblem {
    /// An identifier given as text is not one.
    #[error("{field}: {error}")]
    Ident {
        /// Where.
        field: String,
        /// Why.
        error: ParseError,
    },
    /// A label is empty, too long or holds a control character.
    #[error("the label{} must be 1 to {MAX_LABEL_LEN} bytes without control characters ({len} given)", field.as_ref().map_or(String::new(), |f| format!(" of field {f}")))]
    BadLabel {
        /// The field, or `None` for the type's (or template's) own label.
        field: Option<ParamName>,
        /// Its length.
        len: usize,
    },
    /// A text is too long.
    #[error("{what} is {len} bytes, at most {max} allowed")]
    TooLong {
        /// Which text.
        what: String,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// Too many of something.
    #[error("{count} {what}, at most {max} allowed")]
    TooMany {
        /// What.
        what: String,
        /// How many.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// Two fields share a name.
    #[error("field {field} is declared more than once")]
    DuplicateField {
        /// The field.
        field: ParamName,
    },
    /// Two types of one library share a name.
    #[error("type {name} is defined more than once")]
    DuplicateType {
        /// The type.
        name: TypeName,
    },
    /// A validation rule that does not apply to the field's data type.
    #[error("field {field}: a {rule} rule does not apply to {} field", .kind.with_article())]
    RuleDoesNotFit {
        /// The field.
        field: ParamName,
        /// The rule.
        rule: &'static str,
        /// The field's kind.
        kind: DataKind,
    },
    /// A range whose minimum is above its maximum.
    #[error("field {field}: range {min}..={max} is empty")]
    EmptyRange {
        /// The field.
        field: ParamName,
        /// The minimum.
        min: i64,
        /// The maximum.
        max: i64,
    },
    /// A pattern that does not compile.
    #[error("field {field}: {error}")]
    BadPattern {
        /// The field.
        field: ParamName,
        /// Why.
        error: PatternError,
    },
    /// A URL scheme that is not one.
    #[error(
        "field {field}: a url scheme is a lower-case letter followed by letters, digits, '+', '-' or '.'"
    )]
    BadScheme {
        /// The field.
        field: ParamName,
    },
    /// A picklist without choices.
    #[error("field {field}: a picklist needs at least one choice")]
    NoChoices {
        /// The field.
        field: ParamName,
    },
    /// A picklist choice that is empty, too long or holds a control character.
    #[error("field {field}: choice {index} must be 1 to {MAX_CHOICE_LEN} bytes without control characters")]
    BadChoice {
        /// The field.
        field: ParamName,
        /// Its position.
        index: usize,
    },
    /// A picklist choice given twice.
    #[error("field {field}: choice {index} repeats an earlier one")]
    DuplicateChoice {
        /// The field.
        field: ParamName,
        /// Its position.
        index: usize,
    },
    /// A secret field with a default (a type is listed to people).
    #[error("field {field} is secret and cannot have a default")]
    SecretDefault {
        /// The field.
        field: ParamName,
    },
    /// A default that does not fit its own field.
    #[error("the default of field {field} is {why}")]
    BadDefault {
        /// The field.
        field: ParamName,
        /// Why.
        why: ValueProblem,
    },
    /// An example that is too long or holds a control character.
    #[error("the example of field {field} must be at most {MAX_CHOICE_LEN} bytes without control characters")]
    BadExample {
        /// The field.
        field: ParamName,
    },
    /// A field the customer enters that the customer may not see.
    #[error("field {field} is entered by the customer but its visibility is {visibility}")]
    CustomerCannotSee {
        /// The field.
        field: ParamName,
        /// Its visibility.
        visibility: Visibility,
    },
    /// A field the auth scheme or target needs is missing.
    #[error("{what} needs field {field} ({kind})")]
    NeedsField {
        /// The auth scheme or target.
        what: &'static str,
        /// The field.
        field: &'static str,
        /// Its kind.
        kind: DataKind,
    },
    /// A field the auth scheme or target needs has another data type.
    #[error("field {field} must be {} field", .expected.with_article())]
    NeededFieldKind {
        /// The field.
        field: ParamName,
        /// The kind it must have.
        expected: DataKind,
    },
    /// A field the auth scheme or target needs is optional.
    #[error("field {field} must be required")]
    NeededFieldOptional {
        /// The field.
        field: ParamName,
    },
    /// A field the managed OAuth application supplies.
    #[error("field {field} is supplied by the connection's oauth application and cannot be declared")]
    AppSuppliedField {
        /// The field.
        field: ParamName,
    },
    /// The scheme needs a secret field.
    #[error("a {scheme} type needs at least one secret field")]
    NeedsSecret {
        /// The scheme.
        scheme: AuthScheme,
    },
    /// The connection names another type, or none.
    #[error("the connection follows {}", found.as_ref().map_or(String::from("no type"), |t| format!("type {t}")))]
    OtherType {
        /// The type it names.
        found: Option<TypeName>,
    },
    /// The connection's auth scheme is not the type's.
    #[error("the type's auth scheme is {expected}, not {found}")]
    AuthMismatch {
        /// The type's.
        expected: AuthScheme,
        /// The connection's.
        found: AuthScheme,
    },
    /// The connection's target is not of the type's kind.
    #[error("the type's connections reach {expected}")]
    TargetMismatch {
        /// The type's kind of target.
        expected: TargetKind,
    },
    /// The template is of another type.
    #[error("template {template} is of type {its_type}")]
    TemplateOfOtherType {
        /// The template.
        template: TemplateName,
        /// Its type.
        its_type: TypeName,
    },
    /// A parameter that is not a field of the type.
    #[error("{field} is not a field of the type")]
    UnknownField {
        /// The parameter.
        field: ParamName,
    },
    /// A required field the connection does not declare.
    #[error("required field {field} ({kind}) is not declared")]
    MissingField {
        /// The field.
        field: ParamName,
        /// Its kind.
        kind: DataKind,
    },
    /// Secret where the field is plain, or the reverse.
    #[error("field {field} must be stored as a {} parameter", match expected { ParamKind::Plain => "plain", ParamKind::Secret => "secret" })]
    KindMismatch {
        /// The field.
        field: ParamName,
        /// What it must be.
        expected: ParamKind,
    },
    /// Required where the field is optional, or the reverse.
    #[error("field {field} must be {}", match expected { Requirement::Required => "required", Requirement::Optional => "optional" })]
    RequirementMismatch {
        /// The field.
        field: ParamName,
        /// What it must be.
        expected: Requirement,
    },
    /// Global where the field is per customer, or the reverse.
    #[error("field {field} must be {}", match expected { Tenancy::Global => "global", Tenancy::PerCustomer(EnteredBy::Customer) => "per-customer, entered by the customer", Tenancy::PerCustomer(EnteredBy::Organization) => "per-customer, entered by the organization" })]
    TenancyMismatch {
        /// The field.
        field: ParamName,
        /// What it must be.
        expected: Tenancy,
    },
    /// A value of the wrong data type, or failing the field's validation.
    #[error("field {field} ({layer}) must be {}: {why}", .expected.with_article())]
    BadValue {
        /// The field.
        field: ParamName,
        /// The value's layer.
        layer: Layer,
        /// The field's data kind.
        expected: DataKind,
        /// Why the value does not fit.
        why: ValueProblem,
    },
    /// A value for a field the connection's template locks.
    #[error("field {field} is set by the connection's template, which does not allow overriding it")]
    LockedByTemplate {
        /// The field.
        field: ParamName,
    },
    /// A template value that is not a reference to an external store (the
    /// text is not repeated: it may be a misplaced secret).
    #[error("template field {field} ({layer}) is not an external secret reference: {error}")]
    BadExternalRef {
        /// The field.
        field: ParamName,
        /// The value's layer.
        layer: Layer,
        /// Why.
        error: ExternalRefError,
    },
    /// A reference to an external store for a plain template field: only
    /// secret fields take them.
    #[error("template field {field} is plain: only secret fields take external secret references")]
    ExternalOnPlain {
        /// The field.
        field: ParamName,
    },
    /// A template value for a customer: templates hold values for everybody.
    #[error(
        "template field {field} cannot have a {layer}: a template holds default and environment values only"
    )]
    CustomerValueInTemplate {
        /// The field.
        field: ParamName,
        /// The layer.
        layer: Layer,
    },
}

/// A type, or a connection or template against its type, with every
/// problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", describe(type_name, subject), join(problems))]
pub struct TypeError {
    /// The type's name as given (empty when unknown).
    pub type_name: String,
    /// What was checked.
    pub subject: TypeSubject,
    /// Every problem.
    pub problems: Vec<TypeProblem>,
}

fn describe(type_name: &str, subject: &TypeSubject) -> String {
    match subject {
        TypeSubject::Definition => format!("invalid connection type {type_name:?}"),
        TypeSubject::Library => "invalid type library".to_owned(),
        TypeSubject::Connection(c) => format!("connection {c:?} does not fit type {type_name}"),
        TypeSubject::Template(t) => format!("template {t} does not fit type {type_name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OAuthClient, Param};

    fn postgres() -> ConnectionType {
        ConnectionType::builder("postgresql")
            .label("PostgreSQL")
            .target(TargetKind::Database)
            .field(Field::string("HostName").label("Host"))
            .field(Field::integer("Port").range(1, 65535).default("5432"))
            .field(Field::string("Username"))
            .field(Field::secret("Password"))
            .field(Field::string("DatabaseName"))
            .field(Field::picklist("SslMode", ["disable", "require", "verify-full"]).optional())
            .build()
            .unwrap()
    }

    #[test]
    fn a_connection_of_a_type_reports_every_problem_naming_each_field() {
        let ty = postgres();
        let spec = ConnectionSpec::project("acme", "warehouse")
            .target(Target::database("postgresql"))
            .param(Param::plain("HostName").default("db\ninternal"))
            .param(Param::plain("Port").default("five").env("production", "70000"))
            .param(Param::plain("Username").default("u"))
            .param(Param::secret("Password").default("hunter2-secret"))
            .param(Param::plain("DatabaseName").default("w"))
            .param(Param::plain("SslMode").optional().default("sometimes"))
            .param(Param::secret("Extra").default("x"))
            .build()
            .unwrap();
        let err = ty.check_connection(&spec, None).unwrap_err();
        let text = err.to_string();
        let bad = |f: &str| {
            err.problems
                .iter()
                .filter(|p| matches!(p, TypeProblem::BadValue { field, .. } if field == f))
                .count()
        };
        assert_eq!(bad("HostName"), 1, "{text}");
        assert_eq!(bad("Port"), 2, "{text}");
        assert_eq!(bad("SslMode"), 1, "{text}");
        assert!(
            err.problems
                .iter()
                .any(|p| matches!(p, TypeProblem::UnknownField { field } if field == "Extra"))
        );
        let spec = ConnectionSpec::project("acme", "warehouse")
            .target(Target::database("postgresql"))
            .param(Param::secret("SslMode").optional())
            .of_type(&ty)
            .build()
            .unwrap();
        let err = ty.check_connection(&spec, None).unwrap_err();
        assert!(err.problems.iter().any(
            |p| matches!(p, TypeProblem::KindMismatch { field, expected: ParamKind::Plain } if field == "SslMode")
        ));
        assert!(
            text.contains(
                "field Port (environment production override) must be an integer: out of range (1..=65535)"
            ),
            "{text}"
        );
        assert!(!text.contains("hunter2-secret") && !text.contains("sometimes") && !text.contains("70000\""));
    }

    #[test]
    fn a_secret_value_is_checked_but_never_shown() {
        let ty = ConnectionType::builder("twilio")
            .auth(AuthScheme::ApiKey)
            .field(Field::secret("ApiKey").pattern("sk_[a-z]+_[0-9a-f]{8}"))
            .build()
            .unwrap();
        let spec = |key: &str| {
            ConnectionSpec::project("acme", "twilio")
                .type_name("twilio")
                .auth(AuthScheme::ApiKey)
                .param(Param::secret("ApiKey").default(key))
                .build()
                .unwrap()
        };
        assert!(ty.check_connection(&spec("sk_live_0123abcd"), None).is_ok());
        let err = ty.check_connection(&spec("NOT-A-KEY-s3cr3t"), None).unwrap_err();
        assert!(!err.to_string().contains("s3cr3t"));
        assert!(!format!("{err:?}").contains("s3cr3t"));
    }

    #[test]
    fn definitions_are_checked_whole() {
        let err = ConnectionType::builder("bad")
            .label("x".repeat(MAX_LABEL_LEN + 1))
            .auth(AuthScheme::OAuth2(OAuthClient::Supplied))
            .field(Field::integer("TokenURL"))
            .field(Field::string("A").range(1, 2).schemes(["https"]))
            .field(Field::integer("B").range(3, 1).default("2"))
            .field(Field::picklist("C", ["a", "a", ""]))
            .field(Field::secret("D").default("x"))
            .field(Field::string("E").pattern("(").per_customer(EnteredBy::Customer))
            .field(Field::string("A"))
            .build()
            .unwrap_err();
        let has = |f: &dyn Fn(&TypeProblem) -> bool| err.problems.iter().any(f);
        assert!(has(&|p| matches!(p, TypeProblem::BadLabel { field: None, .. })));
        assert!(has(&|p| matches!(
            p,
            TypeProblem::NeedsField {
                field: "AuthorizeURL",
                ..
            }
        )));
        assert!(has(&|p| matches!(
            p,
            TypeProblem::NeededFieldKind {
                expected: DataKind::Url,
                ..
            }
        )));
        assert!(has(&|p| matches!(
            p,
            TypeProblem::RuleDoesNotFit { rule: "range", .. }
        )));
        assert!(has(&|p| matches!(
            p,
            TypeProblem::RuleDoesNotFit {
                rule: "url schemes",
                ..
            }
        )));
        assert!(has(&|p| matches!(p, TypeProblem::EmptyRange { .. })));
        assert!(has(&|p| matches!(
            p,
            TypeProblem::BadDefault {
                why: ValueProblem::OutOfRange { .. },
                ..
            }
        )));
        assert!(has(&|p| matches!(
            p,
            TypeProblem::DuplicateChoice { index: 1, .. }
        )));
        assert!(has(&|p| matches!(p, TypeProblem::BadChoice { index: 2, .. })));
        assert!(has(&|p| matches!(p, TypeProblem::SecretDefault { .. })));
        assert!(has(&|p| matches!(p, TypeProblem::BadPattern { .. })));
        assert!(has(&|p| matches!(p, TypeProblem::CustomerCannotSee { .. })));
        assert!(has(&|p| matches!(p, TypeProblem::DuplicateField { .. })));
    }

    #[test]
    fn types_round_trip_through_serde_with_the_same_checks() {
        let ty = postgres();
        let json = serde_json::to_value(&ty).unwrap();
        let back: ConnectionType = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, ty);
        let mut broken = json.clone();
        broken["fields"][1]["default"] = serde_json::json!("99999");
        let e = serde_json::from_value::<ConnectionType>(broken).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        let mut broken = json;
        broken["fields"].as_array_mut().unwrap().remove(0);
        let e = serde_json::from_value::<ConnectionType>(broken).unwrap_err();
        assert!(e.to_string().contains("needs field HostName"), "{e}");
    }

    #[test]
    fn urls_are_parsed_and_their_schemes_checked() {
        let f = Field::url("U").build_field().unwrap();
        assert!(f.check_value("https://example.com/x").is_ok());
        assert_eq!(f.check_value("example.com"), Err(ValueProblem::NotUrl));
        assert!(matches!(
            f.check_value("ftp://example.com"),
            Err(ValueProblem::SchemeNotAllowed { .. })
        ));
        let f = Field::url("U").schemes(["postgres"]).build_field().unwrap();
        assert!(f.check_value("postgres://db/x").is_ok());
        assert!(f.check_value("https://db/x").is_err());
    }

    #[test]
    fn patterns_are_bounded() {
        assert!(matches!(
            Pattern::new(&"a".repeat(MAX_PATTERN_LEN + 1)),
            Err(PatternError::TooLong { .. })
        ));
        // Compiles far past the size limit: refused, not built.
        assert!(matches!(
            Pattern::new("[a-z]{1000}{1000}"),
            Err(PatternError::Invalid { .. })
        ));
        assert!(Pattern::new(&"(".repeat(40)).is_err());
        // Linear-time matching on a long value.
        let p = Pattern::new("(a+)+b").unwrap();
        let started = std::time::Instant::now();
        assert!(!p.matches(&"a".repeat(MAX_VALUE_LEN)));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn visibility_decides_who_sees_a_field() {
        let field = |v| Field::string("F").visibility(v).build_field().unwrap();
        let customer = Viewer::Customer("globex".parse().unwrap());
        let org = field(Visibility::Organization);
        let cust = field(Visibility::Customer);
        let prog = field(Visibility::Programmatic);
        assert!(!org.visible_to(&customer) && org.visible_to(&Viewer::Organization));
        assert!(cust.visible_to(&customer) && cust.visible_to(&Viewer::Organization));
        assert!(!prog.visible_to(&customer) && !prog.visible_to(&Viewer::Organization));
        assert!(prog.visible_to(&Viewer::Program));
    }
}
