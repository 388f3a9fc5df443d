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
pub struct Layers<T>(Slots<T>);

/// How [`Layers`] keeps its values: no allocation and no [`Layer`] of its
/// own for the common parameter that has only a default (memory per
/// connection is a performance target; a `Layers` of plain values is 24
/// bytes, of secrets 16). Always in its canonical form, so that the derived
/// equality is equality of the values in order: `Default` exactly when the
/// one value is the default, `Many` for anything else but none.
#[derive(Clone, PartialEq, Eq)]
enum Slots<T> {
    /// No value.
    Empty,
    /// Only a default value.
    Default(T),
    /// Two values or more, or one that is not the default, in the order
    /// given.
    #[allow(
        clippy::box_collection,
        reason = "a thin 8-byte pointer keeps the enum at the size of `T`"
    )]
    Many(Box<Vec<(Layer, T)>>),
}

/// The layer of [`Slots::Default`], for the accessors that lend a `&Layer`.
static DEFAULT_LAYER: Layer = Layer::Default;

impl<T> Default for Layers<T> {
    fn default() -> Self {
        Layers(Slots::Empty)
    }
}

impl<T> Layers<T> {
    /// Every layer and its value, in the order they were given
    /// (crate-internal for secrets).
    pub(crate) fn pairs(&self) -> impl Iterator<Item = (&Layer, &T)> {
        let (one, many) = match &self.0 {
            Slots::Empty => (None, &[][..]),
            Slots::Default(v) => (Some((&DEFAULT_LAYER, v)), &[][..]),
            Slots::Many(values) => (None, values.as_slice()),
        };
        one.into_iter().chain(many.iter().map(|(l, v)| (l, v)))
    }

    /// **Rule 3, the value precedence.** For environment `env` and customer
    /// `customer`, the first value present in this order wins:
    /// (customer, environment) override, customer override, environment
    /// override, default. Without a customer, customer layers never apply.
    ///
    /// This is the only place the order is written down.
    pub(crate) fn pick(&self, env: &Environment, customer: Option<&CustomerId>) -> Option<(&Layer, &T)> {
        let values = match &self.0 {
            Slots::Empty => return None,
            // The default applies to every (environment, customer).
            Slots::Default(v) => return Some((&DEFAULT_LAYER, v)),
            Slots::Many(values) => values,
        };
        let mut best: Option<(u8, &Layer, &T)> = None;
        for (layer, value) in values.iter() {
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
        match &self.0 {
            Slots::Empty => 0,
            Slots::Default(_) => 1,
            Slots::Many(values) => values.len(),
        }
    }

    /// Whether there is no value at all.
    pub fn is_empty(&self) -> bool {
        matches!(self.0, Slots::Empty)
    }

    /// The value of exactly `layer` (crate-internal for secrets).
    pub(crate) fn get_any(&self, layer: &Layer) -> Option<&T> {
        self.pairs().find(|(l, _)| *l == layer).map(|(_, v)| v)
    }

    /// The values in the order given, kept as they are.
    pub(super) fn from_vec(mut values: Vec<(Layer, T)>) -> Self {
        let slots = match values.len() {
            0 => Slots::Empty,
            1 if values[0].0 == Layer::Default => match values.pop() {
                Some((_, value)) => Slots::Default(value),
                None => Slots::Empty,
            },
            _ => Slots::Many(Box::new(values)),
        };
        Layers(slots)
    }

    /// Sets the value of `layer`, replacing any; returns whether one was
    /// replaced. A new layer comes after the others.
    pub(super) fn set(&mut self, layer: Layer, value: T) -> bool {
        match std::mem::replace(&mut self.0, Slots::Empty) {
            Slots::Empty => {
                *self = Layers::from_vec(vec![(layer, value)]);
                false
            }
            Slots::Default(_) if layer == Layer::Default => {
                self.0 = Slots::Default(value);
                true
            }
            Slots::Default(default) => {
                self.0 = Slots::Many(Box::new(vec![(Layer::Default, default), (layer, value)]));
                false
            }
            Slots::Many(mut values) => {
                let replaced = match values.iter_mut().find(|(l, _)| *l == layer) {
                    Some(slot) => {
                        slot.1 = value;
                        true
                    }
                    None => {
                        values.push((layer, value));
                        false
                    }
                };
                self.0 = Slots::Many(values);
                replaced
            }
        }
    }

    /// Removes the value of `layer`; returns whether there was one.
    pub(super) fn unset(&mut self, layer: &Layer) -> bool {
        match std::mem::replace(&mut self.0, Slots::Empty) {
            Slots::Empty => false,
            Slots::Default(_) if *layer == Layer::Default => true,
            kept @ Slots::Default(_) => {
                self.0 = kept;
                false
            }
            Slots::Many(mut values) => {
                let before = values.len();
                values.retain(|(l, _)| l != layer);
                let removed = values.len() != before;
                // Back to the canonical form.
                *self = Layers::from_vec(*values);
                removed
            }
        }
    }
}

/// Serialized as before the compact form: the `(layer, value)` pairs in the
/// order given.
impl<T: Serialize> Serialize for Layers<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.pairs())
    }
}

/// Reads what a list of (layer, value) pairs would give to
/// `Layers::from_vec`, without the list when there is one value (most
/// parameters of a stored record have just a default): no allocation then.
impl<'de, T: Deserialize<'de>> Deserialize<'de> for Layers<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Pairs<T>(std::marker::PhantomData<fn() -> T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Pairs<T> {
            type Value = Layers<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Layers<T>, A::Error> {
                let Some(first) = seq.next_element::<(Layer, T)>()? else {
                    return Ok(Layers(Slots::Empty));
                };
                let Some(second) = seq.next_element::<(Layer, T)>()? else {
                    return Ok(match first {
                        (Layer::Default, value) => Layers(Slots::Default(value)),
                        one => Layers::from_vec(vec![one]),
                    });
                };
                let mut values = Vec::with_capacity(4);
                values.extend([first, second]);
                while let Some(pair) = seq.next_element()? {
                    values.push(pair);
                }
                Ok(Layers::from_vec(values))
            }
        }
        d.deserialize_seq(Pairs(std::marker::PhantomData))
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

    /// The four kinds of layer over two environments and two customers.
    fn layer() -> impl proptest::strategy::Strategy<Value = Layer> {
        use proptest::prelude::*;
        let env = prop_oneof![Just(Environment::production()), Just(Environment::test())];
        let customer = prop_oneof![Just("c1"), Just("c2")].prop_map(|c| c.parse::<CustomerId>().unwrap());
        prop_oneof![
            Just(Layer::Default),
            env.clone().prop_map(Layer::Environment),
            customer.clone().prop_map(Layer::Customer),
            (customer, env).prop_map(|(c, e)| Layer::CustomerEnvironment(c, e)),
        ]
    }

    proptest::proptest! {
        /// The compact form holds what a plain list of (layer, value) pairs
        /// holds after the same sets and removals: the same pairs in the
        /// same order, the same answers by rule 3, the same serialization,
        /// and equality exactly when the pairs are equal.
        #[test]
        fn the_compact_form_agrees_with_a_list_of_pairs(
            ops in proptest::collection::vec((proptest::bool::ANY, layer(), 0u8..4), 0..40),
        ) {
            use proptest::{prop_assert, prop_assert_eq};
            let mut layers: Layers<PlainValue> = Layers::default();
            let mut model: Vec<(Layer, String)> = Vec::new();
            for (set, layer, value) in ops {
                let value = format!("v{value}");
                if set {
                    let had = model.iter().position(|(l, _)| *l == layer);
                    match had {
                        Some(i) => model[i].1 = value.clone(),
                        None => model.push((layer.clone(), value.clone())),
                    }
                    prop_assert_eq!(layers.set(layer, PlainValue::from(value)), had.is_some());
                } else {
                    let before = model.len();
                    model.retain(|(l, _)| *l != layer);
                    prop_assert_eq!(layers.unset(&layer), model.len() != before);
                }
                let pairs: Vec<(Layer, String)> =
                    layers.pairs().map(|(l, v)| (l.clone(), v.to_string())).collect();
                prop_assert_eq!(&pairs, &model);
                prop_assert_eq!(layers.len(), model.len());
                prop_assert_eq!(layers.is_empty(), model.is_empty());
                for env in [Environment::production(), Environment::test(), Environment::development()] {
                    for customer in [None, Some("c1".parse::<CustomerId>().unwrap())] {
                        let expected = model
                            .iter()
                            .filter_map(|(l, v)| l.rank(&env, customer.as_ref()).map(|r| (r, l, v.as_str())))
                            .min_by_key(|(r, _, _)| *r)
                            .map(|(_, l, v)| (v, l));
                        prop_assert_eq!(layers.value_for(&env, customer.as_ref()), expected);
                    }
                }
                let rebuilt = Layers::from_vec(
                    model.iter().map(|(l, v)| (l.clone(), PlainValue::from(v.as_str()))).collect(),
                );
                prop_assert!(rebuilt == layers, "canonical form");
                let json = serde_json::to_string(&layers).unwrap();
                prop_assert_eq!(&json, &serde_json::to_string(&model).unwrap());
                let back: Layers<PlainValue> = serde_json::from_str(&json).unwrap();
                prop_assert!(back == layers);
            }
        }

        /// Reading layers from a list of pairs gives what building them
        /// from the list read as a `Vec` gives (the same form, duplicates
        /// and all), and fails where that fails.
        #[test]
        fn reading_layers_agrees_with_reading_a_list(
            pairs in proptest::collection::vec((layer(), 0u8..4), 0..6),
            cut in proptest::num::usize::ANY,
        ) {
            use proptest::{prop_assert, prop_assert_eq};
            let pairs: Vec<(Layer, String)> =
                pairs.into_iter().map(|(l, v)| (l, format!("v{v}"))).collect();
            let json = serde_json::to_string(&pairs).unwrap();
            let read: Layers<PlainValue> = serde_json::from_str(&json).unwrap();
            let listed = Layers::from_vec(serde_json::from_str::<Vec<(Layer, PlainValue)>>(&json).unwrap());
            prop_assert!(read == listed);
            let read_pairs: Vec<(Layer, String)> =
                read.pairs().map(|(l, v)| (l.clone(), v.to_string())).collect();
            prop_assert_eq!(&read_pairs, &pairs);
            // Any prefix of the text (never a whole list) and a wrong value.
            let cut = &json[..cut % json.len()];
            prop_assert!(serde_json::from_str::<Layers<PlainValue>>(cut).is_err());
            let wrong = json.replacen("\"v", "7,\"v", 1);
            prop_assert_eq!(
                serde_json::from_str::<Layers<PlainValue>>(&wrong).map_err(|e| e.to_string()).err(),
                serde_json::from_str::<Vec<(Layer, PlainValue)>>(&wrong).map_err(|e| e.to_string()).err()
            );
        }
    }
}
