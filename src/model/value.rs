//! Plain parameter values: immutable text that every copy shares.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use smol_str::SmolStr;

/// A plain (not secret) parameter value: immutable text, cheap to clone.
///
/// Up to 23 bytes it is kept inline and a clone is a copy; a longer value
/// is shared, and a clone takes a reference to the same text. So a
/// resolution hands out the values a snapshot holds without copying them.
/// It reads as a `&str` (`Deref`), compares with strings, and serializes
/// as a string.
///
/// ```
/// use connective::model::PlainValue;
/// let url = PlainValue::from("https://crm.example.com/api/v2");
/// let copy = url.clone(); // shares the text
/// assert_eq!(copy, "https://crm.example.com/api/v2");
/// assert!(copy.starts_with("https://"));
/// assert_eq!(copy.to_string(), url.as_str());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PlainValue(SmolStr);

impl PlainValue {
    /// The text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Whether two values share one text (or are both inline): a clone of
    /// the other, as opposed to an equal copy. For tests of sharing.
    pub fn shares_text_with(&self, other: &PlainValue) -> bool {
        self.0.is_heap_allocated() == other.0.is_heap_allocated()
            && (!self.0.is_heap_allocated() || std::ptr::eq(self.as_str().as_ptr(), other.as_str().as_ptr()))
    }
}

impl Deref for PlainValue {
    type Target = str;
    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for PlainValue {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

impl Borrow<str> for PlainValue {
    fn borrow(&self) -> &str {
        self.0.as_str()
    }
}

impl From<&str> for PlainValue {
    fn from(s: &str) -> Self {
        PlainValue(SmolStr::new(s))
    }
}

impl From<String> for PlainValue {
    fn from(s: String) -> Self {
        PlainValue(SmolStr::from(s))
    }
}

impl From<&String> for PlainValue {
    fn from(s: &String) -> Self {
        PlainValue(SmolStr::new(s))
    }
}

impl From<PlainValue> for String {
    fn from(v: PlainValue) -> Self {
        v.0.into()
    }
}

impl PartialEq<str> for PlainValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for PlainValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for PlainValue {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<PlainValue> for str {
    fn eq(&self, other: &PlainValue) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<PlainValue> for &str {
    fn eq(&self, other: &PlainValue) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<PlainValue> for String {
    fn eq(&self, other: &PlainValue) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Debug for PlainValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for PlainValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for PlainValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for PlainValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::de::from_str(d, |text| {
            Ok::<_, std::convert::Infallible>(PlainValue::from(text))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_shares_a_long_text_and_copies_a_short_one() {
        let long = PlainValue::from("https://svc00.example.com/api/v1/orders");
        let copy = long.clone();
        assert!(copy.shares_text_with(&long));
        assert!(!PlainValue::from(long.as_str()).shares_text_with(&long));
        let short = PlainValue::from("eu-west-1");
        assert!(short.clone().shares_text_with(&short));
        assert_eq!(short, "eu-west-1");
    }

    #[test]
    fn serializes_as_a_string() {
        let v = PlainValue::from("x y");
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"x y\"");
        let back: PlainValue = serde_json::from_str("\"x y\"").unwrap();
        assert_eq!(back, v);
    }
}
