//! Secret values, and the one explicit way to serialize them.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

/// A secret parameter value (an API key, a password, an OAuth client secret).
///
/// It lives in a [`secrecy::SecretString`] (zeroized on drop); `Debug` prints a
/// redaction marker, there is no `Display` and no `PartialEq`, and reading it
/// takes an explicit [`SecretValue::expose`]. Serializing it fails unless the
/// caller installs a [`SecretCodec`] with [`with_secret_codec`] (what the durable
/// stores do to seal secrets at rest).
///
/// ```
/// use connective::model::SecretValue;
/// let key = SecretValue::new("sk_live_123");
/// assert_eq!(format!("{key:?}"), "SecretValue([REDACTED])");
/// assert_eq!(key.expose(), "sk_live_123");
/// assert!(serde_json::to_string(&key).is_err());
/// ```
#[derive(Clone)]
pub struct SecretValue(SecretString);

impl SecretValue {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(SecretString::from(value.into()))
    }

    /// Reads the secret. Every call site of this is a place a secret leaves the
    /// library on purpose.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Compares two secrets without exposing either to the caller.
    pub fn same_as(&self, other: &SecretValue) -> bool {
        let (a, b) = (self.expose().as_bytes(), other.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl From<SecretString> for SecretValue {
    fn from(s: SecretString) -> Self {
        SecretValue(s)
    }
}

impl From<SecretValue> for SecretString {
    fn from(s: SecretValue) -> Self {
        s.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue([REDACTED])")
    }
}

/// Turns secrets into text to store and back: the explicit opt-in for
/// serializing a [`SecretValue`]. The durable stores implement it with an AEAD;
/// [`PlaintextCodec`] exists for tests that want to see the raw form.
pub trait SecretCodec: Send + Sync {
    /// Seals a secret into a storable string.
    fn seal(&self, secret: &SecretValue) -> Result<String, String>;
    /// Opens a string made by [`SecretCodec::seal`].
    fn open(&self, sealed: &str) -> Result<SecretValue, String>;
}

/// A codec that stores secrets as they are. Only for tests and for exporting to
/// a place the caller already trusts with plaintext; never for a database.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlaintextCodec;

impl SecretCodec for PlaintextCodec {
    fn seal(&self, secret: &SecretValue) -> Result<String, String> {
        Ok(secret.expose().to_owned())
    }
    fn open(&self, sealed: &str) -> Result<SecretValue, String> {
        Ok(SecretValue::new(sealed))
    }
}

thread_local! {
    static CODEC: RefCell<Vec<Arc<dyn SecretCodec>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `codec` installed on this thread, so that serializing or
/// deserializing a [`SecretValue`] inside `f` seals or opens it with `codec`.
///
/// ```
/// use std::sync::Arc;
/// use connective::model::{with_secret_codec, PlaintextCodec, SecretValue};
/// let s = SecretValue::new("hunter2");
/// let json = with_secret_codec(Arc::new(PlaintextCodec), || serde_json::to_string(&s))?;
/// assert_eq!(json, "\"hunter2\"");
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn with_secret_codec<R>(codec: Arc<dyn SecretCodec>, f: impl FnOnce() -> R) -> R {
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            CODEC.with(|c| {
                c.borrow_mut().pop();
            });
        }
    }
    CODEC.with(|c| c.borrow_mut().push(codec));
    let _pop = Pop;
    f()
}

fn current_codec() -> Option<Arc<dyn SecretCodec>> {
    CODEC.with(|c| c.borrow().last().cloned())
}

const NO_CODEC: &str = "secret values are only serialized under an explicit SecretCodec \
                        (see connective::model::with_secret_codec)";

impl serde::Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match current_codec() {
            Some(codec) => {
                let sealed = codec.seal(self).map_err(serde::ser::Error::custom)?;
                s.serialize_str(&sealed)
            }
            None => Err(serde::ser::Error::custom(NO_CODEC)),
        }
    }
}

impl<'de> serde::Deserialize<'de> for SecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match current_codec() {
            Some(codec) => codec.open(&text).map_err(serde::de::Error::custom),
            None => Err(serde::de::Error::custom(NO_CODEC)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_scope_ends_even_on_panic_free_early_return() {
        let s = SecretValue::new("x");
        let r: Result<String, _> = with_secret_codec(Arc::new(PlaintextCodec), || serde_json::to_string(&s));
        assert!(r.is_ok());
        assert!(serde_json::to_string(&s).is_err());
    }

    #[test]
    fn same_as_compares_contents() {
        assert!(SecretValue::new("a").same_as(&SecretValue::new("a")));
        assert!(!SecretValue::new("a").same_as(&SecretValue::new("ab")));
    }
}
