//! Parameters: one named field of a connection, plain or secret, required or
//! optional, global or per customer, with its value layers.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::description::check_description;
use super::external::{ExternalRef, ExternalRefError, IntoExternalRef, SecretEntry};
use super::ident::{CustomerId, Environment, ParamName, ParseError};
use super::layer::{Layer, Layers};
use super::problem::{IntoIdent, SpecProblem};
use super::secret::SecretValue;
use super::value::PlainValue;

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
    Plain(Layers<PlainValue>),
    /// Secret values: each layer holds the secret or a reference to it in
    /// an external store ([`SecretEntry`]).
    Secret(Layers<SecretEntry>),
}

impl fmt::Debug for ParamValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValues::Plain(l) => f.debug_tuple("Plain").field(l).finish(),
            ParamValues::Secret(l) => f.debug_tuple("Secret").field(l).finish(),
        }
    }
}

/// A value as stored, plain or secret (the secret, or a reference to it in
/// an external store), borrowed.
#[derive(Clone, Copy)]
pub enum ValueRef<'a> {
    /// Plain text.
    Plain(&'a PlainValue),
    /// A secret.
    Secret(&'a SecretEntry),
}

impl fmt::Debug for ValueRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValueRef::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            ValueRef::Secret(_) => f.write_str("Secret([REDACTED])"),
        }
    }
}

impl ParamValues {
    /// The value for (`env`, `customer`) by rule 3 ([`Layers::value_for`])
    /// and its layer.
    #[inline]
    pub fn pick(&self, env: &Environment, customer: Option<&CustomerId>) -> Option<(&Layer, ValueRef<'_>)> {
        match self {
            ParamValues::Plain(l) => l.pick(env, customer).map(|(l, v)| (l, ValueRef::Plain(v))),
            ParamValues::Secret(l) => l.pick(env, customer).map(|(l, v)| (l, ValueRef::Secret(v))),
        }
    }

    /// Whether a value for (`env`, `customer`) is there, without reading it.
    pub fn has_value(&self, env: &Environment, customer: Option<&CustomerId>) -> bool {
        match self {
            ParamValues::Plain(l) => l.winning_layer(env, customer).is_some(),
            ParamValues::Secret(l) => l.winning_layer(env, customer).is_some(),
        }
    }
}

/// One named field of a connection.
///
/// Compact (memory per connection is a performance target): the name, the
/// values, and one pointer to what most parameters leave at its default
/// (a description, optional, per customer); 56 bytes.
#[derive(Clone)]
pub struct Param {
    name: ParamName,
    values: ParamValues,
    /// `None` for a required, global parameter without a description.
    rare: Option<Box<Rare>>,
}

/// The attributes of a [`Param`] that most parameters leave at their
/// default, boxed behind one pointer.
#[derive(Clone, PartialEq, Eq)]
struct Rare {
    description: String,
    requirement: Requirement,
    tenancy: Tenancy,
}

impl Rare {
    /// `None` when everything is at its default.
    fn boxed(description: String, requirement: Requirement, tenancy: Tenancy) -> Option<Box<Rare>> {
        let default =
            description.is_empty() && requirement == Requirement::Required && tenancy == Tenancy::Global;
        (!default).then(|| {
            Box::new(Rare {
                description,
                requirement,
                tenancy,
            })
        })
    }
}

impl fmt::Debug for Param {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Param")
            .field("name", &self.name)
            .field("description", &self.description())
            .field("requirement", &self.requirement())
            .field("tenancy", &self.tenancy())
            .field("values", &self.values)
            .finish()
    }
}

/// A [`Param`] as serialized: the fields in this order, the description
/// left out when empty (as it always was).
#[derive(Serialize)]
#[serde(rename = "Param")]
struct ParamOut<'a> {
    name: &'a ParamName,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    requirement: Requirement,
    tenancy: Tenancy,
    values: &'a ParamValues,
}

/// A [`Param`] as deserialized (see [`ParamOut`]).
#[derive(Deserialize)]
#[serde(rename = "Param")]
struct ParamIn {
    name: ParamName,
    #[serde(default)]
    description: String,
    requirement: Requirement,
    tenancy: Tenancy,
    values: ParamValues,
}

impl Serialize for Param {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ParamOut {
            name: &self.name,
            description: self.description(),
            requirement: self.requirement(),
            tenancy: self.tenancy(),
            values: &self.values,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Param {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let f = ParamIn::deserialize(d)?;
        Ok(Param {
            name: f.name,
            values: f.values,
            rare: Rare::boxed(f.description, f.requirement, f.tenancy),
        })
    }
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
        self.rare.as_ref().map_or("", |r| r.description.as_str())
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
        self.rare
            .as_ref()
            .map_or(Requirement::Required, |r| r.requirement)
    }
    /// Global or per customer.
    pub fn tenancy(&self) -> Tenancy {
        self.rare.as_ref().map_or(Tenancy::Global, |r| r.tenancy)
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

    /// Sets the value of `layer`, validated as the builder would (see
    /// [`ConnectionSpec::set_value`](super::ConnectionSpec::set_value)).
    pub(super) fn set_value(&mut self, layer: Layer, value: String) -> Result<(), SpecProblem> {
        let mut problems = Vec::new();
        self.check_value(&layer, value.len(), &mut problems);
        if let Some(first) = problems.into_iter().next() {
            return Err(first);
        }
        match &mut self.values {
            ParamValues::Plain(l) => {
                l.set(layer, PlainValue::from(value));
            }
            ParamValues::Secret(l) => {
                l.set(layer, SecretEntry::Stored(SecretValue::new(value)));
            }
        }
        Ok(())
    }

    /// Sets `layer` to a reference to an external store, validated as the
    /// builder would (see
    /// [`ConnectionSpec::set_external`](super::ConnectionSpec::set_external)).
    pub(super) fn set_external(&mut self, layer: Layer, reference: ExternalRef) -> Result<(), SpecProblem> {
        let mut problems = Vec::new();
        self.check_value(&layer, 0, &mut problems);
        if let Some(first) = problems.into_iter().next() {
            return Err(first);
        }
        match &mut self.values {
            ParamValues::Plain(_) => {
                return Err(SpecProblem::ExternalOnPlain {
                    param: self.name.clone(),
                });
            }
            ParamValues::Secret(l) => {
                l.set(layer, SecretEntry::from(reference));
            }
        }
        Ok(())
    }

    /// Every layer holding a reference to an external store, and the
    /// reference, in the order given.
    pub fn external_refs(&self) -> impl Iterator<Item = (&Layer, &ExternalRef)> {
        let layers = match &self.values {
            ParamValues::Secret(l) => Some(l),
            ParamValues::Plain(_) => None,
        };
        layers
            .into_iter()
            .flat_map(|l| l.pairs())
            .filter_map(|(layer, entry)| entry.external().map(|r| (layer, r)))
    }

    /// **The checks of one value** of this parameter, however it comes in
    /// (the builder, deserialization, [`Param::set_value`]): at most
    /// [`MAX_VALUE_LEN`] bytes (`len`), and a per-customer parameter takes
    /// customer layers only.
    fn check_value(&self, layer: &Layer, len: usize, problems: &mut Vec<SpecProblem>) {
        if len > MAX_VALUE_LEN {
            problems.push(SpecProblem::TooLong {
                field: format!("params.{} ({layer})", self.name),
                len,
                max: MAX_VALUE_LEN,
            });
        }
        if matches!(self.tenancy(), Tenancy::PerCustomer(_)) && layer.customer().is_none() {
            problems.push(SpecProblem::GlobalValueOnPerCustomer {
                param: self.name.clone(),
                layer: layer.clone(),
            });
        }
    }

    /// Removes the value of `layer`; returns whether there was one.
    pub(super) fn remove_value(&mut self, layer: &Layer) -> bool {
        match &mut self.values {
            ParamValues::Plain(l) => l.unset(layer),
            ParamValues::Secret(l) => l.unset(layer),
        }
    }
}

/// The most bytes a parameter value may have.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

/// Builds a [`Param`]; errors surface in [`ConnectionBuilder::build`](super::ConnectionBuilder::build).
#[derive(Clone)]
pub struct ParamBuilder {
    name: Result<ParamName, ParseError>,
    kind: ParamKind,
    description: String,
    requirement: Requirement,
    tenancy: Tenancy,
    values: Vec<(PendingLayer, PendingValue)>,
}

/// A layer as given to a builder: parsed, or the field that failed and why.
type PendingLayer = Result<Layer, (&'static str, ParseError)>;

/// A value as given to a builder: text, or a reference to an external
/// store (parsed, or why the text is not one).
#[derive(Clone)]
enum PendingValue {
    Text(SecretValue),
    External(Result<ExternalRef, ExternalRefError>),
}

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

    /// Sets the value of `layer`, replacing one given before for it.
    pub(super) fn replace(mut self, layer: Layer, value: impl Into<String>) -> Self {
        self.values.retain(|(l, _)| l.as_ref() != Ok(&layer));
        self.layer(Ok(layer), value)
    }

    fn layer(mut self, layer: PendingLayer, value: impl Into<String>) -> Self {
        self.values
            .push((layer, PendingValue::Text(SecretValue::new(value))));
        self
    }

    /// Sets the default value to a reference to an external store (a secret
    /// parameter only): the value is the store's current one at resolution.
    ///
    /// ```
    /// use connective::model::{ConnectionSpec, Param};
    /// let spec = ConnectionSpec::project("acme", "crm")
    ///     .param(Param::secret("Password")
    ///         .default_ref("vault:secret/crm/dev#password")
    ///         .env_ref("production", "vault:secret/crm/prod#password"))
    ///     .build()?;
    /// let refs: Vec<String> = spec.params()[0].external_refs().map(|(_, r)| r.to_string()).collect();
    /// assert_eq!(refs, ["vault:secret/crm/dev#password", "vault:secret/crm/prod#password"]);
    /// # Ok::<(), connective::model::SpecError>(())
    /// ```
    pub fn default_ref(self, reference: impl IntoExternalRef) -> Self {
        self.layer_ref(Ok(Layer::Default), reference)
    }

    /// Sets the value for one environment to a reference to an external
    /// store (see [`ParamBuilder::default_ref`]).
    pub fn env_ref<E: IntoIdent<Environment>>(self, env: E, reference: impl IntoExternalRef) -> Self {
        let layer = env
            .into_ident()
            .map(Layer::Environment)
            .map_err(|e| ("environment", e));
        self.layer_ref(layer, reference)
    }

    /// Sets the value for one customer to a reference to an external store
    /// (see [`ParamBuilder::default_ref`]).
    pub fn customer_ref<C: IntoIdent<CustomerId>>(
        self,
        customer: C,
        reference: impl IntoExternalRef,
    ) -> Self {
        let layer = customer
            .into_ident()
            .map(Layer::Customer)
            .map_err(|e| ("customer", e));
        self.layer_ref(layer, reference)
    }

    /// Sets the value for one customer in one environment to a reference to
    /// an external store (see [`ParamBuilder::default_ref`]).
    pub fn customer_env_ref<C: IntoIdent<CustomerId>, E: IntoIdent<Environment>>(
        self,
        customer: C,
        env: E,
        reference: impl IntoExternalRef,
    ) -> Self {
        let layer = match (customer.into_ident(), env.into_ident()) {
            (Ok(c), Ok(e)) => Ok(Layer::CustomerEnvironment(c, e)),
            (Err(err), _) => Err(("customer", err)),
            (_, Err(err)) => Err(("environment", err)),
        };
        self.layer_ref(layer, reference)
    }

    /// Sets an already parsed layer to a reference to an external store.
    pub fn value_ref(self, layer: Layer, reference: impl IntoExternalRef) -> Self {
        self.layer_ref(Ok(layer), reference)
    }

    fn layer_ref(mut self, layer: PendingLayer, reference: impl IntoExternalRef) -> Self {
        self.values
            .push((layer, PendingValue::External(reference.into_external_ref())));
        self
    }

    /// Whether the name as given is `name`.
    pub(super) fn name_is(&self, name: &str) -> bool {
        self.name.as_ref().is_ok_and(|n| n.as_str() == name)
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
    pub(super) fn build(self, index: usize, problems: &mut Vec<SpecProblem>) -> Option<Param> {
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
        let mut layers: Vec<(Layer, SecretEntry)> = Vec::with_capacity(self.values.len());
        for (layer, value) in self.values {
            let layer = match layer {
                Ok(l) => l,
                Err((field, error)) => {
                    problems.push(SpecProblem::Ident {
                        field: format!("{label}.{field}"),
                        error,
                    });
                    continue;
                }
            };
            match value {
                PendingValue::Text(v) => layers.push((layer, SecretEntry::Stored(v))),
                PendingValue::External(Ok(r)) => layers.push((layer, SecretEntry::from(r))),
                PendingValue::External(Err(error)) => problems.push(SpecProblem::BadExternalRef {
                    field: format!("{label} ({layer})"),
                    error,
                }),
            }
        }
        let values = match self.kind {
            ParamKind::Plain => {
                let mut plain = Vec::with_capacity(layers.len());
                let mut external = false;
                for (l, v) in layers {
                    match v {
                        SecretEntry::Stored(v) => plain.push((l, PlainValue::from(v.expose()))),
                        SecretEntry::External(_) => external = true,
                    }
                }
                if external && let Some(name) = &name {
                    problems.push(SpecProblem::ExternalOnPlain { param: name.clone() });
                }
                ParamValues::Plain(Layers::from_vec(plain))
            }
            ParamKind::Secret => ParamValues::Secret(Layers::from_vec(layers)),
        };
        Some(Param {
            name: name?,
            values,
            rare: Rare::boxed(self.description, self.requirement, self.tenancy),
        })
    }
}

/// Each parameter's own rules, and names unique across parameters.
pub(super) fn check_params(params: &[Param], problems: &mut Vec<SpecProblem>) {
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

/// A set for duplicate checks: a scan of a list on the stack while it is
/// small (most specs have a handful of parameters, each with a value or
/// two: no allocation), hashed past that, so a hostile input costs linear
/// time.
enum Seen<'a, T> {
    Few(usize, [Option<&'a T>; FEW]),
    Many(std::collections::HashSet<&'a T>),
}

/// The most items [`Seen`] scans.
const FEW: usize = 16;

impl<'a, T: Eq + std::hash::Hash> Seen<'a, T> {
    fn with_capacity(n: usize) -> Self {
        if n <= FEW {
            Seen::Few(0, [None; FEW])
        } else {
            Seen::Many(std::collections::HashSet::with_capacity(n))
        }
    }

    /// Adds `item`; `false` if it was there already.
    fn insert(&mut self, item: &'a T) -> bool {
        match self {
            Seen::Few(len, items) if items[..*len].contains(&Some(item)) => false,
            Seen::Few(len, items) if *len < FEW => {
                items[*len] = Some(item);
                *len += 1;
                true
            }
            // More items than announced: hashed from here on.
            Seen::Few(_, items) => {
                let mut all: std::collections::HashSet<&'a T> = items.iter().flatten().copied().collect();
                all.insert(item);
                *self = Seen::Many(all);
                true
            }
            Seen::Many(s) => s.insert(item),
        }
    }
}

fn check_param(p: &Param, problems: &mut Vec<SpecProblem>) {
    check_description(
        || format!("params.{}.description", p.name),
        p.description(),
        problems,
    );
    match &p.values {
        ParamValues::Plain(l) => {
            check_values(p, l.len(), l.pairs().map(|(layer, v)| (layer, v.len())), problems)
        }
        ParamValues::Secret(l) => check_values(
            p,
            l.len(),
            l.pairs().map(|(layer, v)| match v {
                SecretEntry::Stored(v) => (layer, v.len()),
                // Bounded by the reference's own rules.
                SecretEntry::External(_) => (layer, 0),
            }),
            problems,
        ),
    }
}

/// Checks each of `p`'s `count` values (its layer and length), in order.
fn check_values<'a>(
    p: &Param,
    count: usize,
    values: impl Iterator<Item = (&'a Layer, usize)>,
    problems: &mut Vec<SpecProblem>,
) {
    let mut seen = Seen::with_capacity(count);
    for (layer, len) in values {
        p.check_value(layer, len, problems);
        if !seen.insert(layer) {
            problems.push(SpecProblem::DuplicateValue {
                param: p.name.clone(),
                layer: layer.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ConnectionSpec;

    fn params(builders: Vec<ParamBuilder>) -> Vec<Param> {
        builders
            .into_iter()
            .fold(ConnectionSpec::project("p", "n"), |b, p| b.param(p))
            .build()
            .unwrap()
            .params()
            .to_vec()
    }

    proptest::proptest! {
        /// The duplicate check answers as a hash set does, whatever number
        /// of items it was told to expect (fewer or more than it scans).
        #[test]
        fn seen_agrees_with_a_hash_set(
            items in proptest::collection::vec(0u8..24, 0..40),
            announced in 0usize..40,
        ) {
            let mut seen = Seen::with_capacity(announced);
            let mut set = std::collections::HashSet::new();
            for item in &items {
                proptest::prop_assert_eq!(seen.insert(item), set.insert(item));
            }
        }
    }

    #[test]
    fn rare_attributes_are_kept_apart_only_when_set() {
        let ps = params(vec![
            Param::plain("A").default("a"),
            Param::plain("B").optional(),
            Param::secret("C").per_customer(EnteredBy::Customer),
            Param::plain("D").describe("d"),
        ]);
        assert!(ps[0].rare.is_none());
        assert!(ps.iter().skip(1).all(|p| p.rare.is_some()));
        assert_eq!(
            (ps[0].description(), ps[0].requirement(), ps[0].tenancy()),
            ("", Requirement::Required, Tenancy::Global)
        );
        assert_eq!(ps[1].requirement(), Requirement::Optional);
        assert_eq!(ps[2].tenancy(), Tenancy::PerCustomer(EnteredBy::Customer));
        assert_eq!(ps[2].kind(), ParamKind::Secret);
        assert_eq!(ps[3].description(), "d");
        // Read back, each has the same attributes and the same form.
        for p in &ps {
            let json = serde_json::to_string(p).unwrap();
            let back: Param = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), json);
            assert_eq!(back.rare.is_some(), p.rare.is_some(), "{json}");
        }
    }

    #[test]
    fn a_parameter_read_back_passes_the_same_checks() {
        // A per-customer parameter with a global value is refused however it
        // comes in, with the same typed problem.
        let json = r#"{"project":"p","scope":"project","name":"n","target":{"external":{"service":"s"}},
            "auth":"none","params":[{"name":"T","requirement":"required",
            "tenancy":{"per_customer":"customer"},"values":{"plain":[["default","x"]]}}]}"#;
        let e = serde_json::from_str::<ConnectionSpec>(json).unwrap_err();
        assert!(e.to_string().contains("per-customer"), "{e}");
        let built = ConnectionSpec::project("p", "n")
            .param(Param::plain("T").per_customer(EnteredBy::Customer).default("x"))
            .build()
            .unwrap_err();
        assert!(matches!(
            built.problems[..],
            [SpecProblem::GlobalValueOnPerCustomer { .. }]
        ));
        let bad_name = r#"{"name":"9x","requirement":"required","tenancy":"global","values":{"plain":[]}}"#;
        assert!(serde_json::from_str::<Param>(bad_name).is_err());
    }

    #[test]
    fn debug_shows_attributes_and_never_a_value() {
        let ps = params(vec![
            Param::secret("S").describe("the key").default("sk_live_123"),
            Param::plain("U").optional().default("https://plain-value"),
        ]);
        let debug = format!("{ps:?}");
        assert!(debug.contains("the key") && debug.contains("Optional"), "{debug}");
        assert!(
            !debug.contains("sk_live_123") && !debug.contains("plain-value"),
            "{debug}"
        );
    }
}
