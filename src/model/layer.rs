//! Value layers (rule 3): a default and overrides per environment, per
//! customer and per customer in an environment, and the one order in which
//! they win.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::external::{ExternalRef, SecretEntry};
use super::ident::{CustomerId, Environment};
use super::value::PlainValue;

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
    /// Every layer and its value, in the order they were given
    /// (crate-internal for secrets).
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&Layer, &T)> {
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
    pub(super) fn from_vec(values: Vec<(Layer, T)>) -> Self {
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
    pub(super) fn set(&mut self, layer: Layer, value: T) -> bool {
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
    pub(super) fn unset(&mut self, layer: &Layer) -> bool {
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

impl Layers<PlainValue> {
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
        self.get_any(layer).map(PlainValue::as_str)
    }
}

impl Layers<SecretEntry> {
    /// The reference to an external store that `layer` holds, if it holds
    /// one (stored secrets have no accessor: they leave the library only
    /// through resolution).
    pub fn external(&self, layer: &Layer) -> Option<&ExternalRef> {
        self.get_any(layer).and_then(SecretEntry::external)
    }
}

impl<T> fmt::Debug for Layers<T> {
    /// Lists the layers only: values, plain or secret, are not printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.layers()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConnectionSpec, Param, ParamValues};

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
}
