//! The result of resolution: variables, values and provenance.

use std::fmt;
use std::process::Command;
use std::sync::Arc;

use indexmap::IndexMap;

use super::ResolveRequest;
use crate::model::{
    AppField, AppOwner, ConnectionId, ConnectionName, EnteredBy, EnvVarName, ExternalRef, FetchInfo, Layer,
    ParamName, PlainValue, Revision, Scope, SecretValue, TemplateName, Timestamp,
};

/// A resolved value: plain text or a secret. Either shares the text the
/// snapshot holds (a clone takes a reference, or copies a short text).
#[derive(Clone)]
pub enum ResolvedValue {
    /// Plain text.
    Plain(PlainValue),
    /// A secret; read it with [`SecretValue::expose`].
    Secret(SecretValue),
}

impl ResolvedValue {
    /// The plain text, or `None` for a secret.
    pub fn as_plain(&self) -> Option<&str> {
        match self {
            ResolvedValue::Plain(s) => Some(s),
            ResolvedValue::Secret(_) => None,
        }
    }

    /// Whether the value is secret.
    pub fn is_secret(&self) -> bool {
        matches!(self, ResolvedValue::Secret(_))
    }

    /// The value, secret or not: an explicit exposure.
    pub fn expose(&self) -> &str {
        match self {
            ResolvedValue::Plain(s) => s,
            ResolvedValue::Secret(s) => s.expose(),
        }
    }
}

impl fmt::Debug for ResolvedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolvedValue::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            ResolvedValue::Secret(_) => f.write_str("Secret([REDACTED])"),
        }
    }
}

impl fmt::Display for ResolvedValue {
    /// Plain text as is; a secret as `[REDACTED]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolvedValue::Plain(s) => f.write_str(s),
            ResolvedValue::Secret(_) => f.write_str("[REDACTED]"),
        }
    }
}

/// Where a resolved value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueSource {
    /// A value layer of the parameter won (rule 3).
    Layer(Layer),
    /// The connection has no value of its own that applies: the template it
    /// was made from supplied it, from this layer of the template's field.
    Template {
        /// The template.
        template: TemplateName,
        /// Which of its value layers.
        layer: Layer,
    },
    /// The connection's OAuth application supplied it (rule 5).
    OAuthApp {
        /// Whose application.
        owner: AppOwner,
        /// Which field.
        field: AppField,
    },
    /// A value layer of the parameter (or, with `template`, of the template
    /// the connection was made from) won (rule 3), and it refers to a
    /// secret in an external store: the value is the store's, read from the
    /// host's cache.
    External {
        /// The layer that won.
        layer: Layer,
        /// The template whose field holds the reference, when the
        /// connection has no value of its own that applies.
        template: Option<TemplateName>,
        /// Which store, mount, path, key (and pinned version).
        reference: Arc<ExternalRef>,
        /// The version served and when it was fetched.
        fetch: Arc<FetchInfo>,
    },
    /// A current access token the host asked the OAuth runtime for: valid
    /// until `expires_at` (if the server said), not a deploy-time value.
    AccessToken {
        /// When the token expires.
        expires_at: Option<Timestamp>,
    },
}

impl ValueSource {
    /// The value layer that won, for a value of the parameter's own (stored
    /// or referenced).
    pub fn layer(&self) -> Option<&Layer> {
        match self {
            ValueSource::Layer(l)
            | ValueSource::External {
                layer: l,
                template: None,
                ..
            } => Some(l),
            ValueSource::Template { .. }
            | ValueSource::External {
                template: Some(_), ..
            }
            | ValueSource::OAuthApp { .. }
            | ValueSource::AccessToken { .. } => None,
        }
    }
}

impl fmt::Display for ValueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueSource::Layer(l) => write!(f, "{l}"),
            ValueSource::External {
                layer,
                template: None,
                reference,
                fetch,
            } => write!(f, "{layer}, from {reference} ({fetch})"),
            ValueSource::External {
                layer,
                template: Some(template),
                reference,
                fetch,
            } => write!(f, "template {template}, {layer}, from {reference} ({fetch})"),
            ValueSource::Template { template, layer } => write!(f, "template {template}, {layer}"),
            ValueSource::OAuthApp { owner, field } => write!(f, "{} of the {owner}", field.param()),
            ValueSource::AccessToken { expires_at: Some(at) } => {
                write!(f, "current OAuth access token, expires at {at} (Unix time)")
            }
            ValueSource::AccessToken { expires_at: None } => f.write_str("current OAuth access token"),
        }
    }
}

/// Where a resolved variable's name came from (as [`ValueSource`] says
/// where its value came from): an explicit `from`/`to` entry
/// ([`EnvMapping::Explicit`](crate::model::EnvMapping::Explicit)) or the
/// default `PREFIX_CONNECTION_PARAM` rule
/// ([`EnvMapping::Defaults`](crate::model::EnvMapping::Defaults)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NameSource {
    /// An explicit `from`/`to` entry.
    Explicit,
    /// The default name.
    Default,
}

/// Why a variable has its value (rule 7).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Provenance {
    /// The connection's ID.
    pub connection_id: ConnectionId,
    /// The connection's name.
    pub connection: ConnectionName,
    /// The connection's scope.
    pub scope: Scope,
    /// The parameter.
    pub param: ParamName,
    /// The value layer or OAuth application that supplied the value.
    pub source: ValueSource,
    /// Where the variable's name came from.
    pub name_source: NameSource,
    /// For a customer's value: who set it (the organization on the customer's
    /// behalf, or the customer itself).
    pub entered_by: Option<EnteredBy>,
}

impl fmt::Display for Provenance {
    /// `connection twilio (0f6b…, project scope), parameter ApiKey: environment production override`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connection {} ({}, {}), parameter {}: {}",
            self.connection, self.connection_id, self.scope, self.param, self.source
        )?;
        match self.entered_by {
            Some(EnteredBy::Customer) => f.write_str(" (entered by the customer)")?,
            Some(EnteredBy::Organization) => f.write_str(" (set by the organization)")?,
            None => {}
        }
        if self.name_source == NameSource::Default {
            f.write_str(" (default variable name)")?;
        }
        Ok(())
    }
}

/// One resolved variable.
#[derive(Debug, Clone)]
pub struct ResolvedVar {
    /// The variable's name.
    pub name: EnvVarName,
    /// Its value.
    pub value: ResolvedValue,
    /// Why it has this value.
    pub provenance: Provenance,
}

/// The variables an integration gets, in mapping order, each with its
/// provenance. `Debug` and `Display` redact secrets.
///
/// Cheap to clone: the variables are shared (a clone takes a reference), so
/// a registry can hand out a memoized answer again without copying it.
///
/// ```
/// # use connective::resolve::{ResolvedEnv, ResolveRequest};
/// # let env = ResolvedEnv::empty(ResolveRequest::parse("p", "i", "development")?);
/// let mut cmd = std::process::Command::new("true");
/// env.apply_to(&mut cmd); // secrets go straight into the child's environment
/// # Ok::<(), connective::model::ParseError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ResolvedEnv {
    revision: Revision,
    answer: Arc<Answer>,
}

/// What a [`ResolvedEnv`] shares between its copies.
#[derive(Debug, Clone)]
struct Answer {
    request: ResolveRequest,
    vars: IndexMap<EnvVarName, ResolvedVar, VarHasher>,
}

/// The hasher of a [`ResolvedEnv`]'s variables (foldhash, randomly seeded):
/// several times cheaper than SipHash on short names.
pub(crate) type VarHasher = hashbrown::DefaultHashBuilder;

impl ResolvedEnv {
    pub(crate) fn new(
        request: ResolveRequest,
        revision: Revision,
        vars: IndexMap<EnvVarName, ResolvedVar, VarHasher>,
    ) -> Self {
        ResolvedEnv {
            revision,
            answer: Arc::new(Answer { request, vars }),
        }
    }

    /// No variables (an integration without mappings).
    pub fn empty(request: ResolveRequest) -> Self {
        ResolvedEnv::new(request, Revision(0), IndexMap::default())
    }

    /// The same answer at `revision` (it holds there too).
    pub(crate) fn at(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }

    /// What was resolved.
    pub fn request(&self) -> &ResolveRequest {
        &self.answer.request
    }

    /// The store revision the answer reflects.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// How many variables.
    pub fn len(&self) -> usize {
        self.answer.vars.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.answer.vars.is_empty()
    }

    /// Whether `self` and `other` are copies of one answer (not merely
    /// equal): a memoized resolution hands out copies of the answer it
    /// keeps.
    pub fn shares_answer_with(&self, other: &ResolvedEnv) -> bool {
        Arc::ptr_eq(&self.answer, &other.answer)
    }

    /// One variable.
    pub fn get(&self, name: &str) -> Option<&ResolvedVar> {
        self.answer.vars.get(name)
    }

    /// The value of `name`, secret or not: an explicit exposure, handy in
    /// tests. Prefer [`ResolvedEnv::apply_to`] in production code.
    pub fn expose(&self, name: &str) -> Option<&str> {
        self.get(name).map(|v| v.value.expose())
    }

    /// Where `name`'s value came from (rule 7): connection, parameter, value
    /// layer or OAuth application. For the full story (the layers it beat,
    /// the connections it shadows) ask the registry:
    /// [`Registry::explain`](crate::registry::Registry::explain).
    pub fn provenance(&self, name: &str) -> Option<&Provenance> {
        self.get(name).map(|v| &v.provenance)
    }

    /// Every variable, in mapping order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &ResolvedVar> {
        self.answer.vars.values()
    }

    /// Sets every variable on `command`: the one place secrets reach a child
    /// process without the host handling them.
    pub fn apply_to(&self, command: &mut Command) {
        for var in self.iter() {
            command.env(var.name.as_str(), var.value.expose());
        }
    }

    /// Adds `var` after the others; `false` (and nothing added) if a
    /// variable of its name is there already (the OAuth runtime adds the
    /// access tokens this way). Copies the variables first if the answer is
    /// shared.
    #[cfg(feature = "oauth-runtime")]
    pub(crate) fn push(&mut self, var: ResolvedVar) -> bool {
        if self.answer.vars.contains_key(var.name.as_str()) {
            return false;
        }
        Arc::make_mut(&mut self.answer).vars.insert(var.name.clone(), var);
        true
    }

    /// Whether any value was read from an external secret store.
    pub(crate) fn has_external_values(&self) -> bool {
        self.iter()
            .any(|v| matches!(v.provenance.source, ValueSource::External { .. }))
    }

    /// The plain variables only, as name → value.
    pub fn plain_vars(&self) -> impl Iterator<Item = (&EnvVarName, &str)> {
        self.iter()
            .filter_map(|v| v.value.as_plain().map(|s| (&v.name, s)))
    }
}

impl<'a> IntoIterator for &'a ResolvedEnv {
    type Item = &'a ResolvedVar;
    type IntoIter = indexmap::map::Values<'a, EnvVarName, ResolvedVar>;
    fn into_iter(self) -> Self::IntoIter {
        self.answer.vars.values()
    }
}

impl fmt::Display for ResolvedEnv {
    /// A table: `NAME=value  # provenance`, secrets redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# {} ({})", self.request(), self.revision)?;
        for var in self.iter() {
            writeln!(f, "{}={}  # {}", var.name, var.value, var.provenance)?;
        }
        Ok(())
    }
}
