//! Values read from a string without an owned copy of it.
//!
//! serde's `Cow<str>` always deserializes into a `String`; a type that
//! parses or copies its text anyway reads it through [`from_str`] instead,
//! which hands out the text where the format has it (the input itself for
//! `serde_json::from_str` when the string has no escapes), so reading a
//! stored record allocates only what the record keeps.

use std::fmt;
use std::marker::PhantomData;

/// Deserializes a string and makes a `T` of it with `make`; an error of
/// `make` is the deserializer's error with the same message.
pub(crate) fn from_str<'de, D, T, E>(d: D, make: impl FnOnce(&str) -> Result<T, E>) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    E: fmt::Display,
{
    d.deserialize_str(Make(make, PhantomData))
}

struct Make<F, T>(F, PhantomData<fn() -> T>);

impl<T, E: fmt::Display, F: FnOnce(&str) -> Result<T, E>> serde::de::Visitor<'_> for Make<F, T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<Er: serde::de::Error>(self, v: &str) -> Result<T, Er> {
        (self.0)(v).map_err(Er::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Parsed(String);

    impl<'de> serde::Deserialize<'de> for Parsed {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            from_str(d, |s| {
                if s.is_empty() {
                    Err("empty")
                } else {
                    Ok(Parsed(s.to_owned()))
                }
            })
        }
    }

    /// Borrowed, escaped (owned by the reader) and refused strings, and a
    /// value that is not a string.
    #[test]
    fn reads_borrowed_and_escaped_text_and_keeps_errors() {
        let plain: Parsed = serde_json::from_str(r#""abc""#).expect("plain");
        assert_eq!(plain.0, "abc");
        let escaped: Parsed = serde_json::from_str(r#""a\"b\u00e9""#).expect("escaped");
        assert_eq!(escaped.0, "a\"bé");
        let refused = serde_json::from_str::<Parsed>(r#""""#).err().expect("refused");
        assert!(refused.to_string().starts_with("empty"), "{refused}");
        let not_text = serde_json::from_str::<Parsed>("7").err().expect("not a string");
        assert!(not_text.to_string().contains("expected a string"), "{not_text}");
    }
}
