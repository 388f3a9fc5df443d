//! The result of resolution: variables, values and provenance.

use std::borrow::Borrow;
use std::fmt;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use super::ResolveRequest;
use super::lookup::Pinned;
use super::memo::Stripe;
use super::walk::{Slot, Table};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    AppField, AppOwner, Connection, ConnectionId, ConnectionName, EnteredBy, EnvVarName, ExternalRef,
    FetchInfo, Layer, ParamName, PlainValue, Revision, Scope, SecretValue, TemplateName, Tenancy, Timestamp,
};

/// A resolved value, owned: plain text or a secret. Either shares the text
/// the snapshot holds (a clone takes a reference, or copies a short text).
/// A [`ResolvedEnv`] lends its values as [`ResolvedValueRef`]s.
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

/// A resolved value as a [`ResolvedEnv`] holds it: borrowed from the
/// project snapshot the answer keeps (or from the answer itself), so reading
/// one takes no reference count. `Debug` and `Display` redact a secret.
#[derive(Clone, Copy)]
pub enum ResolvedValueRef<'a> {
    /// Plain text.
    Plain(&'a PlainValue),
    /// A secret; read it with [`SecretValue::expose`].
    Secret(&'a SecretValue),
}

impl<'a> ResolvedValueRef<'a> {
    /// The plain text, or `None` for a secret.
    pub fn as_plain(self) -> Option<&'a str> {
        match self {
            ResolvedValueRef::Plain(s) => Some(s),
            ResolvedValueRef::Secret(_) => None,
        }
    }

    /// Whether the value is secret.
    pub fn is_secret(self) -> bool {
        matches!(self, ResolvedValueRef::Secret(_))
    }

    /// The value, secret or not: an explicit exposure.
    pub fn expose(self) -> &'a str {
        match self {
            ResolvedValueRef::Plain(s) => s,
            ResolvedValueRef::Secret(s) => s.expose(),
        }
    }

    /// The value, owned (it shares the text: a reference count, or a copy
    /// of a short plain text).
    pub fn to_value(self) -> ResolvedValue {
        match self {
            ResolvedValueRef::Plain(s) => ResolvedValue::Plain(s.clone()),
            ResolvedValueRef::Secret(s) => ResolvedValue::Secret(s.clone()),
        }
    }
}

impl<'a> From<&'a ResolvedValue> for ResolvedValueRef<'a> {
    fn from(value: &'a ResolvedValue) -> Self {
        match value {
            ResolvedValue::Plain(s) => ResolvedValueRef::Plain(s),
            ResolvedValue::Secret(s) => ResolvedValueRef::Secret(s),
        }
    }
}

impl fmt::Debug for ResolvedValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolvedValueRef::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            ResolvedValueRef::Secret(_) => f.write_str("Secret([REDACTED])"),
        }
    }
}

impl fmt::Display for ResolvedValueRef<'_> {
    /// Plain text as is; a secret as `[REDACTED]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolvedValueRef::Plain(s) => f.write_str(s),
            ResolvedValueRef::Secret(_) => f.write_str("[REDACTED]"),
        }
    }
}

/// A variable's value as resolution finds it: borrowed from what the answer
/// holds (the snapshot, or the generation of the host's cache of external
/// secrets it pinned), or read from that cache when the generation did not
/// have it (owned).
pub(super) enum Val<'s> {
    Plain(&'s PlainValue),
    Secret(&'s SecretValue),
    Fetched(SecretValue),
}

impl Val<'_> {
    fn as_ref(&self) -> ResolvedValueRef<'_> {
        match self {
            Val::Plain(v) => ResolvedValueRef::Plain(v),
            Val::Secret(v) => ResolvedValueRef::Secret(v),
            Val::Fetched(v) => ResolvedValueRef::Secret(v),
        }
    }
}

/// Where a variable's value came from, borrowed from the snapshot: what a
/// [`ValueSource`] says, made only when provenance is asked for.
pub(super) enum Source<'s> {
    Layer(&'s Layer),
    Template {
        template: &'s TemplateName,
        layer: &'s Layer,
    },
    OAuthApp {
        owner: &'s AppOwner,
        field: AppField,
    },
    External {
        layer: &'s Layer,
        template: Option<&'s TemplateName>,
        reference: &'s Arc<ExternalRef>,
        /// The cache's, not the snapshot's.
        fetch: Fetch<'s>,
    },
}

/// When and what the host's cache fetched, for a referenced value: as the
/// value, borrowed from the pinned generation or owned.
pub(super) enum Fetch<'s> {
    Pinned(&'s Arc<FetchInfo>),
    Owned(Arc<FetchInfo>),
}

impl Fetch<'_> {
    fn shared(&self) -> Arc<FetchInfo> {
        match self {
            Fetch::Pinned(fetch) => Arc::clone(fetch),
            Fetch::Owned(fetch) => Arc::clone(fetch),
        }
    }
}

impl<'s> Source<'s> {
    /// [`ValueSource::layer`].
    fn layer(&self) -> Option<&'s Layer> {
        match self {
            Source::Layer(l)
            | Source::External {
                layer: l,
                template: None,
                ..
            } => Some(l),
            Source::Template { .. }
            | Source::External {
                template: Some(_), ..
            }
            | Source::OAuthApp { .. } => None,
        }
    }

    fn to_value_source(&self) -> ValueSource {
        match self {
            Source::Layer(l) => ValueSource::Layer((*l).clone()),
            Source::Template { template, layer } => ValueSource::Template {
                template: (*template).clone(),
                layer: (*layer).clone(),
            },
            Source::OAuthApp { owner, field } => ValueSource::OAuthApp {
                owner: (*owner).clone(),
                field: *field,
            },
            Source::External {
                layer,
                template,
                reference,
                fetch,
            } => ValueSource::External {
                layer: (*layer).clone(),
                template: template.cloned(),
                reference: Arc::clone(reference),
                fetch: fetch.shared(),
            },
        }
    }
}

/// A value and where it came from, as resolution finds them.
pub(super) struct Found<'s> {
    pub(super) value: Val<'s>,
    pub(super) source: Source<'s>,
}

/// One variable of an answer: references into the snapshot (the
/// connection, the mapping entry's names, the value and its layer), from
/// which its provenance is made on request.
pub(super) type Var<'s> = Slot<'s, Found<'s>>;

impl<'s> Var<'s> {
    fn value_ref(&self) -> ResolvedValueRef<'_> {
        self.value.value.as_ref()
    }

    /// For a customer's value: who set it (rule 7).
    fn entered_by(&self) -> Option<EnteredBy> {
        match self.value.source.layer() {
            Some(layer) if layer.customer().is_some() => {
                match self
                    .connection
                    .spec()
                    .param(self.param.as_str())
                    .map(|p| p.tenancy())
                {
                    Some(Tenancy::PerCustomer(by)) => Some(by),
                    _ => Some(EnteredBy::Organization),
                }
            }
            _ => None,
        }
    }

    pub(super) fn provenance(&self) -> Provenance {
        let connection: &Connection = self.connection;
        Provenance {
            connection_id: connection.id(),
            connection: connection.name().clone(),
            scope: connection.scope().clone(),
            param: self.param.clone().into_owned(),
            source: self.value.source.to_value_source(),
            name_source: self.kind,
            entered_by: self.entered_by(),
        }
    }

    /// The value, owned.
    pub(super) fn to_value(&self) -> ResolvedValue {
        self.value_ref().to_value()
    }
}

/// The variables of an answer, in mapping order, with their index by name.
pub(super) type Vars<'s> = Table<Var<'s>>;

/// What an answer's variables borrow from: the snapshot (none for an empty
/// answer), and the generation of the host's cache of external secrets
/// pinned at the first referenced value (one reference count for all).
struct Owner {
    snapshot: Option<Held>,
    external: Pinned,
}

/// How an answer keeps the snapshot it borrows from.
pub(crate) enum Held {
    /// By the snapshot's own reference count.
    Whole(Arc<ProjectSnapshot>),
    /// By the resolving thread's stripe of it (see
    /// [`SnapshotHandles`](super::memo::SnapshotHandles)): threads resolving
    /// against one snapshot then write no reference count in common.
    Stripe(Arc<Stripe>),
}

impl Borrow<ProjectSnapshot> for Held {
    #[inline]
    fn borrow(&self) -> &ProjectSnapshot {
        match self {
            Held::Whole(snapshot) => snapshot,
            Held::Stripe(stripe) => stripe.snapshot(),
        }
    }
}

impl From<Arc<ProjectSnapshot>> for Held {
    fn from(snapshot: Arc<ProjectSnapshot>) -> Self {
        Held::Whole(snapshot)
    }
}

impl From<Arc<Stripe>> for Held {
    fn from(stripe: Arc<Stripe>) -> Self {
        Held::Stripe(stripe)
    }
}

self_cell::self_cell!(
    /// An answer's variables and what they borrow from.
    struct Cell {
        owner: Owner,
        #[covariant]
        dependent: Vars,
    }
);

/// The hash of a variable's name in an answer's index: the one the
/// reserved-name check uses, so the walk hashes each name once.
pub(super) fn name_hash(name: &str) -> u64 {
    crate::model::env_name_hash(name)
}

/// A variable added to an answer after resolution (the OAuth runtime's
/// access tokens): owned, not borrowed from the snapshot.
#[derive(Clone)]
pub(crate) struct OwnedVar {
    pub(crate) name: EnvVarName,
    pub(crate) value: ResolvedValue,
    pub(crate) provenance: Provenance,
}

/// One resolved variable, as a [`ResolvedEnv`] lends it: its name, its
/// value and its provenance. Borrowed from the answer (copying one copies a
/// reference); the provenance is made when asked for.
#[derive(Clone, Copy)]
pub struct ResolvedVar<'a>(VarRef<'a>);

#[derive(Clone, Copy)]
enum VarRef<'a> {
    Resolved(&'a Var<'a>),
    Added(&'a OwnedVar),
}

impl<'a> ResolvedVar<'a> {
    /// The variable's name.
    pub fn name(self) -> &'a EnvVarName {
        match self.0 {
            VarRef::Resolved(v) => &v.name,
            VarRef::Added(v) => &v.name,
        }
    }

    /// Its value (`Display` and `Debug` redact a secret).
    pub fn value(self) -> ResolvedValueRef<'a> {
        match self.0 {
            VarRef::Resolved(v) => v.value_ref(),
            VarRef::Added(v) => (&v.value).into(),
        }
    }

    /// Its value, secret or not: an explicit exposure.
    pub fn expose(self) -> &'a str {
        self.value().expose()
    }

    /// Whether its value is secret.
    pub fn is_secret(self) -> bool {
        self.value().is_secret()
    }

    /// Why it has this value (rule 7), made from what the answer holds.
    pub fn provenance(self) -> Provenance {
        match self.0 {
            VarRef::Resolved(v) => v.provenance(),
            VarRef::Added(v) => v.provenance.clone(),
        }
    }

    /// The ID of the connection its value came from (as in
    /// [`Provenance::connection_id`], without making the provenance).
    pub fn connection_id(self) -> ConnectionId {
        match self.0 {
            VarRef::Resolved(v) => v.connection.id(),
            VarRef::Added(v) => v.provenance.connection_id,
        }
    }

    /// The name of the connection its value came from.
    pub fn connection(self) -> &'a ConnectionName {
        match self.0 {
            VarRef::Resolved(v) => v.connection.name(),
            VarRef::Added(v) => &v.provenance.connection,
        }
    }

    /// The scope of the connection its value came from.
    pub fn scope(self) -> &'a Scope {
        match self.0 {
            VarRef::Resolved(v) => v.connection.scope(),
            VarRef::Added(v) => &v.provenance.scope,
        }
    }

    /// The connection's parameter its value came from.
    pub fn param(self) -> &'a ParamName {
        match self.0 {
            VarRef::Resolved(v) => &v.param,
            VarRef::Added(v) => &v.provenance.param,
        }
    }

    /// Where its name came from.
    pub fn name_source(self) -> NameSource {
        match self.0 {
            VarRef::Resolved(v) => v.kind,
            VarRef::Added(v) => v.provenance.name_source,
        }
    }

    /// Whether its value was read from an external secret store.
    fn is_external(self) -> bool {
        match self.0 {
            VarRef::Resolved(v) => matches!(v.value.source, Source::External { .. }),
            VarRef::Added(v) => matches!(v.provenance.source, ValueSource::External { .. }),
        }
    }
}

impl fmt::Debug for ResolvedVar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedVar")
            .field("name", self.name())
            .field("value", &self.value())
            .field("provenance", &self.provenance())
            .finish()
    }
}

/// The variables an integration gets, in mapping order, each with its
/// provenance. `Debug` and `Display` redact secrets.
///
/// An answer holds the project snapshot it was resolved on (one reference
/// count) and borrows every name, value and provenance from it: resolving
/// copies no text and takes no reference count per variable. Keeping an
/// answer keeps that snapshot alive. Values referenced in an external store
/// are borrowed the same way from the generation of the host's cache the
/// resolution pinned at its first one
/// ([`ExternalSecrets::pin`](crate::model::ExternalSecrets::pin)): one
/// reference count for all of them, and a later refresh of the cache
/// changes nothing in the answer.
///
/// Cheap to clone: the variables are shared (a clone takes a reference), so
/// a registry can hand out a memoized answer again without copying it.
///
/// ```
/// use connective::fixture::Fixture;
/// use connective::model::Param;
/// let fx = Fixture::project("acme")
///     .connection("crm", |c| {
///         c.param(Param::plain("Url").default("https://crm.example.com"))
///             .param(Param::secret("Token").default("t0k"))
///     })
///     .mappings("orders", |m| m.by_name("crm", [("Url", "CRM_URL"), ("Token", "CRM_TOKEN")]))
///     .build()?;
/// let env = fx.resolve("orders", "production")?;
/// assert_eq!(env.len(), 2);
/// assert_eq!(env.expose("CRM_URL"), Some("https://crm.example.com"));
/// assert!(env.get("CRM_TOKEN").unwrap().value().is_secret());
/// assert_eq!(env.provenance("CRM_TOKEN").unwrap().param.as_str(), "Token");
/// assert!(!env.to_string().contains("t0k")); // `Display` redacts secrets
///
/// let mut cmd = std::process::Command::new("true");
/// env.apply_to(&mut cmd); // secrets go straight into the child's environment
/// # Ok::<(), connective::fixture::FixtureError>(())
/// ```
#[derive(Clone)]
pub struct ResolvedEnv {
    revision: Revision,
    answer: SharedAnswer,
    /// Variables added after resolution (the OAuth runtime's access tokens).
    added: Option<Arc<Vec<OwnedVar>>>,
}

/// What a [`ResolvedEnv`] shares between its copies.
struct Answer {
    request: ResolveRequest,
    vars: Cell,
}

/// How a [`ResolvedEnv`] shares its [`Answer`].
#[derive(Clone)]
enum SharedAnswer {
    /// By the answer's own reference count.
    Whole(Arc<Answer>),
    /// By a thread's stripe of a kept answer (see [`AnswerStripes`]).
    Stripe(Arc<AnswerStripe>),
}

impl SharedAnswer {
    #[inline]
    fn get(&self) -> &Answer {
        match self {
            SharedAnswer::Whole(answer) => answer,
            SharedAnswer::Stripe(stripe) => &stripe.0,
        }
    }

    fn whole(&self) -> Arc<Answer> {
        match self {
            SharedAnswer::Whole(answer) => Arc::clone(answer),
            SharedAnswer::Stripe(stripe) => Arc::clone(&stripe.0),
        }
    }
}

/// A reference to an answer alone on its cache lines (two: adjacent-line
/// prefetchers pull lines in pairs), for one thread.
#[repr(align(128))]
struct AnswerStripe(Arc<Answer>);

/// The stripes of one kept answer, one per stripe index a thread leases:
/// copies handed out on a thread share the answer by that thread's
/// stripe, so threads asking for one kept answer write no reference count
/// in common. Each stripe is made on its first use.
pub(crate) struct AnswerStripes(Box<[OnceLock<Arc<AnswerStripe>>]>);

impl AnswerStripes {
    /// `count` stripes, none made yet.
    pub(crate) fn new(count: usize) -> Self {
        AnswerStripes((0..count).map(|_| OnceLock::new()).collect())
    }
}

impl ResolvedEnv {
    /// An answer whose variables `vars` finds in `snapshot` and, for
    /// referenced values, in the generation of the host's cache it pins
    /// (both kept by the answer), or `vars`'s error.
    pub(super) fn build<E>(
        request: ResolveRequest,
        revision: Revision,
        snapshot: Held,
        vars: impl for<'s> FnOnce(&'s ProjectSnapshot, &'s Pinned) -> Result<Vars<'s>, E>,
    ) -> Result<Self, E> {
        let owner = Owner {
            snapshot: Some(snapshot),
            external: Pinned::new(),
        };
        let vars = Cell::try_new(owner, |owner| match &owner.snapshot {
            Some(snapshot) => vars(snapshot.borrow(), &owner.external),
            None => Ok(Vars::default()),
        })?;
        Ok(ResolvedEnv {
            revision,
            answer: SharedAnswer::Whole(Arc::new(Answer { request, vars })),
            added: None,
        })
    }

    /// No variables (an integration without mappings).
    pub fn empty(request: ResolveRequest) -> Self {
        ResolvedEnv {
            revision: Revision(0),
            answer: SharedAnswer::Whole(Arc::new(Answer {
                request,
                vars: Cell::new(
                    Owner {
                        snapshot: None,
                        external: Pinned::new(),
                    },
                    |_| Vars::default(),
                ),
            })),
            added: None,
        }
    }

    /// The same answer at `revision` (it holds there too).
    pub(crate) fn at(mut self, revision: Revision) -> Self {
        self.revision = revision;
        self
    }

    /// A copy of this answer sharing it by stripe `index` of `stripes`
    /// (the last one for an index beyond them), which must be this
    /// answer's: made from it on first use.
    #[inline]
    pub(crate) fn on_stripe(&self, stripes: &AnswerStripes, index: usize) -> ResolvedEnv {
        let Some(cell) = stripes.0.get(index).or_else(|| stripes.0.last()) else {
            return self.clone();
        };
        let stripe = cell.get_or_init(|| Arc::new(AnswerStripe(self.answer.whole())));
        ResolvedEnv {
            revision: self.revision,
            answer: SharedAnswer::Stripe(Arc::clone(stripe)),
            added: self.added.clone(),
        }
    }

    fn vars(&self) -> &Vars<'_> {
        self.answer.get().vars.borrow_dependent()
    }

    /// The stripe this copy shares its answer by, if on one (its address).
    #[cfg(test)]
    pub(crate) fn stripe_address(&self) -> Option<usize> {
        match &self.answer {
            SharedAnswer::Stripe(stripe) => Some(Arc::as_ptr(stripe) as usize),
            SharedAnswer::Whole(_) => None,
        }
    }

    fn added(&self) -> &[OwnedVar] {
        self.added.as_deref().map_or(&[], Vec::as_slice)
    }

    /// What was resolved.
    pub fn request(&self) -> &ResolveRequest {
        &self.answer.get().request
    }

    /// The store revision the answer reflects.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// How many variables.
    pub fn len(&self) -> usize {
        self.vars().entries.len() + self.added().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `self` and `other` are copies of one answer (not merely
    /// equal): a memoized resolution hands out copies of the answer it
    /// keeps.
    pub fn shares_answer_with(&self, other: &ResolvedEnv) -> bool {
        std::ptr::eq(self.answer.get(), other.answer.get())
    }

    /// One variable.
    pub fn get(&self, name: &str) -> Option<ResolvedVar<'_>> {
        if let Some(var) = self.vars().find(name_hash(name), name) {
            return Some(ResolvedVar(VarRef::Resolved(var)));
        }
        self.added()
            .iter()
            .find(|v| v.name.as_str() == name)
            .map(|v| ResolvedVar(VarRef::Added(v)))
    }

    /// The value of `name`, secret or not: an explicit exposure, handy in
    /// tests. Prefer [`ResolvedEnv::apply_to`] in production code.
    pub fn expose(&self, name: &str) -> Option<&str> {
        self.get(name).map(ResolvedVar::expose)
    }

    /// Where `name`'s value came from (rule 7): connection, parameter, value
    /// layer or OAuth application. For the full story (the layers it beat,
    /// the connections it shadows) ask the registry:
    /// [`Registry::explain`](crate::registry::Registry::explain).
    pub fn provenance(&self, name: &str) -> Option<Provenance> {
        self.get(name).map(ResolvedVar::provenance)
    }

    /// Every variable, in mapping order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            vars: self.vars().entries.iter(),
            added: self.added().iter(),
        }
    }

    /// Sets every variable on `command`: the one place secrets reach a child
    /// process without the host handling them.
    pub fn apply_to(&self, command: &mut Command) {
        for var in self.iter() {
            command.env(var.name().as_str(), var.expose());
        }
    }

    /// Adds `var` after the others; `false` (and nothing added) if a
    /// variable of its name is there already (the OAuth runtime adds the
    /// access tokens this way).
    #[cfg(feature = "oauth-runtime")]
    pub(crate) fn push(&mut self, var: OwnedVar) -> bool {
        if self.get(var.name.as_str()).is_some() {
            return false;
        }
        Arc::make_mut(self.added.get_or_insert_with(Default::default)).push(var);
        true
    }

    /// Whether any value was read from an external secret store.
    pub(crate) fn has_external_values(&self) -> bool {
        self.iter().any(ResolvedVar::is_external)
    }

    /// The plain variables only, as name → value.
    pub fn plain_vars(&self) -> impl Iterator<Item = (&EnvVarName, &str)> {
        self.iter()
            .filter_map(|v| v.value().as_plain().map(|s| (v.name(), s)))
    }
}

/// The variables of a [`ResolvedEnv`], in mapping order
/// ([`ResolvedEnv::iter`]).
#[derive(Clone)]
pub struct Iter<'a> {
    vars: std::slice::Iter<'a, Var<'a>>,
    added: std::slice::Iter<'a, OwnedVar>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = ResolvedVar<'a>;

    fn next(&mut self) -> Option<ResolvedVar<'a>> {
        match self.vars.next() {
            Some(v) => Some(ResolvedVar(VarRef::Resolved(v))),
            None => self.added.next().map(|v| ResolvedVar(VarRef::Added(v))),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.vars.len() + self.added.len();
        (n, Some(n))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl fmt::Debug for Iter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Iter").field("remaining", &self.len()).finish()
    }
}

impl<'a> IntoIterator for &'a ResolvedEnv {
    type Item = ResolvedVar<'a>;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl fmt::Debug for ResolvedEnv {
    /// The request, the revision and every variable with its provenance,
    /// secrets redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedEnv")
            .field("request", self.request())
            .field("revision", &self.revision)
            .field("vars", &self.iter().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Display for ResolvedEnv {
    /// A table: `NAME=value  # provenance`, secrets redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "# {} ({})", self.request(), self.revision)?;
        for var in self.iter() {
            writeln!(f, "{}={}  # {}", var.name(), var.value(), var.provenance())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::Fixture;
    use crate::model::{EnteredBy, Param, ResolvePolicy};
    use crate::resolve::{ProjectView, Resolver};

    const SECRET: &str = "sk_live_abcdefghijklmnopqrstuvwxyz";

    /// Explicit and default-name mappings, an integration-scope connection,
    /// environment and customer layers.
    fn fixture() -> Fixture {
        Fixture::project("acme")
            .connection("crm", |c| {
                c.param(
                    Param::plain("Url")
                        .default("https://dev.example.com/a/rather/long/address")
                        .env("production", "https://prod.example.com"),
                )
                .param(Param::secret("ApiKey").default(SECRET))
            })
            .integration_connection("orders", "sms", |c| {
                c.param(
                    Param::plain("From")
                        .optional()
                        .per_customer(EnteredBy::Customer)
                        .customer("globex", "+200"),
                )
                .param(Param::secret("Token").default("tok-sms"))
            })
            .mappings("orders", |m| {
                m.by_name("crm", [("ApiKey", "CRM_KEY"), ("Url", "CRM_URL")])
                    .by_name_defaults("sms")
            })
            .build()
            .unwrap()
    }

    fn request(customer: Option<&str>) -> ResolveRequest {
        let r = ResolveRequest::parse("acme", "orders", "production").unwrap();
        match customer {
            Some(c) => r.for_customer(c).unwrap(),
            None => r,
        }
    }

    #[test]
    fn every_variable_is_found_by_its_name_in_mapping_order() {
        let fx = fixture();
        let env = fx.registry().resolve(&request(Some("globex"))).unwrap();
        let names: Vec<&str> = env.iter().map(|v| v.name().as_str()).collect();
        assert_eq!(names, ["CRM_KEY", "CRM_URL", "SMS_FROM", "SMS_TOKEN"]);
        assert_eq!(env.len(), 4);
        assert_eq!(env.iter().len(), 4);
        for var in &env {
            let found = env.get(var.name().as_str()).expect("indexed");
            assert_eq!(found.name(), var.name());
            assert_eq!(found.expose(), var.expose());
            assert_eq!(found.provenance(), var.provenance());
        }
        assert!(env.get("CRM").is_none());
        assert!(env.get("crm_key").is_none());
        assert_eq!(env.expose("CRM_URL"), Some("https://prod.example.com"));
        assert_eq!(env.expose("SMS_FROM"), Some("+200"));
        assert_eq!(
            env.plain_vars().map(|(n, v)| (n.as_str(), v)).collect::<Vec<_>>(),
            [("CRM_URL", "https://prod.example.com"), ("SMS_FROM", "+200")]
        );
    }

    #[test]
    fn provenance_is_made_from_what_the_answer_borrows() {
        let fx = fixture();
        let env = fx.registry().resolve(&request(Some("globex"))).unwrap();
        let crm = fx.id("crm", None).unwrap();
        let sms = fx.id("sms", Some("orders")).unwrap();
        let url = env.get("CRM_URL").unwrap();
        assert_eq!(
            url.provenance(),
            Provenance {
                connection_id: crm,
                connection: "crm".parse().unwrap(),
                scope: Scope::Project,
                param: "Url".parse().unwrap(),
                source: ValueSource::Layer(Layer::Environment("production".parse().unwrap())),
                name_source: NameSource::Explicit,
                entered_by: None,
            }
        );
        assert_eq!(
            (
                url.connection_id(),
                url.connection().as_str(),
                url.param().as_str()
            ),
            (crm, "crm", "Url")
        );
        let from = env.get("SMS_FROM").unwrap();
        assert_eq!(
            from.provenance(),
            Provenance {
                connection_id: sms,
                connection: "sms".parse().unwrap(),
                scope: Scope::Integration("orders".parse().unwrap()),
                param: "From".parse().unwrap(),
                source: ValueSource::Layer(Layer::Customer("globex".parse().unwrap())),
                name_source: NameSource::Default,
                entered_by: Some(EnteredBy::Customer),
            }
        );
        assert_eq!(from.name_source(), NameSource::Default);
        // The same as the full explanation says.
        for var in &env {
            let why = fx
                .registry()
                .explain(env.request(), var.name().as_str())
                .unwrap()
                .unwrap();
            assert_eq!(why.provenance, var.provenance());
            assert_eq!(why.value.expose(), var.expose());
        }
    }

    /// The fixture's current snapshot, and a view of it.
    fn current_view(
        fx: &Fixture,
    ) -> (
        Arc<ProjectSnapshot>,
        ProjectView<Arc<ProjectSnapshot>, &ResolvePolicy>,
    ) {
        let snapshot = fx.registry().snapshot(fx.project_id()).unwrap();
        let view = ProjectView {
            snapshot: Arc::clone(&snapshot),
            policy: fx.registry().catalog().policy(),
        };
        (snapshot, view)
    }

    #[test]
    fn an_answer_keeps_its_snapshot_by_one_reference_count() {
        let fx = fixture();
        let (snapshot, view) = current_view(&fx);
        let before = Arc::strong_count(&snapshot);
        let env = view.resolve(&request(None)).unwrap();
        assert_eq!(env.len(), 3, "no customer, no SMS_FROM");
        assert_eq!(
            Arc::strong_count(&snapshot),
            before + 1,
            "one count for the answer"
        );
        let copy = env.clone();
        assert_eq!(Arc::strong_count(&snapshot), before + 1, "its copies share it");
        drop((env, copy));
        assert_eq!(Arc::strong_count(&snapshot), before);
    }

    #[test]
    fn copies_on_stripes_share_the_answer_and_keep_it_as_long_as_any_lives() {
        let fx = fixture();
        let (snapshot, view) = current_view(&fx);
        let before = Arc::strong_count(&snapshot);
        let kept = view.resolve(&request(None)).unwrap();
        let stripes = AnswerStripes::new(3);
        let (a, a_again, b) = (
            kept.on_stripe(&stripes, 0),
            kept.on_stripe(&stripes, 0),
            kept.on_stripe(&stripes, 1),
        );
        // Beyond the stripes: the last one.
        let c = kept.on_stripe(&stripes, 7);
        let stripe = |env: &ResolvedEnv| match &env.answer {
            SharedAnswer::Stripe(s) => Arc::as_ptr(s),
            SharedAnswer::Whole(_) => panic!("not on a stripe"),
        };
        assert_eq!(stripe(&a), stripe(&a_again), "one stripe per index");
        assert_ne!(stripe(&a), stripe(&b), "two indices, two stripes");
        assert_eq!(stripe(&c), Arc::as_ptr(stripes.0[2].get().unwrap()));
        for copy in [&a, &b, &c] {
            assert!(copy.shares_answer_with(&kept) && kept.shares_answer_with(copy));
            assert_eq!(copy.revision(), kept.revision());
            assert_eq!(copy.expose("CRM_URL"), kept.expose("CRM_URL"));
        }
        // The answer (and so its snapshot) lives while any copy or stripe does.
        drop((kept, a, a_again, stripes));
        assert_eq!(Arc::strong_count(&snapshot), before + 1, "copies b and c keep it");
        drop((b, c));
        assert_eq!(Arc::strong_count(&snapshot), before, "nothing keeps it");
    }

    #[test]
    fn an_answer_outlives_the_snapshot_a_write_replaces() {
        let fx = fixture();
        let registry = fx.registry();
        let old = registry.catalog().resolve(&request(None)).unwrap();
        let crm = fx.id("crm", None).unwrap();
        let version = registry.connection(fx.project_id(), crm).unwrap().version;
        let spec = crate::model::ConnectionSpec::project("acme", "crm")
            .param(Param::plain("Url").default("https://new.example.com"))
            .param(Param::secret("ApiKey").default("rotated"))
            .build()
            .unwrap();
        registry.update_connection(crm, version, spec).unwrap();
        let new = registry.catalog().resolve(&request(None)).unwrap();
        assert_eq!(new.expose("CRM_URL"), Some("https://new.example.com"));
        assert_eq!(old.expose("CRM_URL"), Some("https://prod.example.com"));
        assert_eq!(old.expose("CRM_KEY"), Some(SECRET));
        assert_eq!(
            old.provenance("CRM_URL").unwrap().source,
            ValueSource::Layer(Layer::Environment("production".parse().unwrap()))
        );
    }

    #[test]
    fn debug_and_display_redact_every_secret() {
        let fx = fixture();
        let env = fx.registry().resolve(&request(Some("globex"))).unwrap();
        let var = env.get("CRM_KEY").unwrap();
        assert!(var.is_secret());
        let said = format!(
            "{env} {env:?} {var:?} {:?} {} {:?} {:?}",
            var.value(),
            var.value(),
            env.iter(),
            var.value().to_value()
        );
        for secret in [SECRET, "tok-sms"] {
            assert!(!said.contains(secret), "{secret} leaked: {said}");
        }
        assert!(said.contains("[REDACTED]"));
        assert!(
            said.contains("https://prod.example.com"),
            "plain values are shown"
        );
        assert_eq!(var.expose(), SECRET);
    }
}
