//! Secret values, and the one explicit way to serialize them.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

/// The shared secret: `triomphe`'s `Arc` has no weak count, so each secret
/// a connection stores costs 8 bytes less than with the standard `Arc`
/// (memory per connection is a performance target).
type Shared = triomphe::Arc<SecretString>;

/// A secret parameter value (an API key, a password, an OAuth client secret).
///
/// It lives in a [`secrecy::SecretString`] (zeroized when the last copy is
/// dropped); `Debug` prints a redaction marker, there is no `Display` and no
/// `PartialEq`, and reading it takes an explicit [`SecretValue::expose`].
/// Copies share the one secret: a clone takes a reference, it does not copy
/// the text (so a resolution hands out the secrets a snapshot holds without
/// copying them). Serializing it fails unless the
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
pub struct SecretValue(Shared);

impl SecretValue {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(Shared::new(SecretString::from(value.into())))
    }

    /// Whether two values are copies of one secret (as opposed to equal
    /// secrets): for tests of sharing.
    pub fn shares_secret_with(&self, other: &SecretValue) -> bool {
        Shared::ptr_eq(&self.0, &other.0)
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
        SecretValue(Shared::new(s))
    }
}

impl From<SecretValue> for SecretString {
    /// The secret itself when this is its last copy, else a copy of it.
    fn from(s: SecretValue) -> Self {
        Shared::try_unwrap(s.0).unwrap_or_else(|shared| SecretString::from(shared.expose_secret()))
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
    fn seal(&self, secret: &SecretValue) -> Result<String, CodecError>;
    /// Opens a string made by [`SecretCodec::seal`].
    fn open(&self, sealed: &str) -> Result<SecretValue, CodecError>;
}

/// Why a [`SecretCodec`] could not seal or open a secret: the codec's own
/// error, kept typed. Serde passes on only its text; the first one of a
/// [`with_secret_codec_reporting`] scope comes back whole. It must never
/// hold a secret.
///
/// ```
/// use connective::model::CodecError;
/// #[derive(Debug, thiserror::Error, PartialEq)]
/// #[error("no key {0}")]
/// struct NoKey(String);
/// let e = CodecError::new(NoKey("k2".into()));
/// assert_eq!(e.to_string(), "no key k2");
/// assert_eq!(e.downcast_ref::<NoKey>(), Some(&NoKey("k2".into())));
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct CodecError(Box<dyn std::error::Error + Send + Sync>);

impl CodecError {
    /// Wraps a codec's error.
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        CodecError(Box::new(error))
    }

    /// The codec's error, if it is an `E`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref()
    }

    /// The codec's error as an `E`, or this error back if it is not one.
    pub fn downcast<E: std::error::Error + 'static>(self) -> Result<E, Self> {
        self.0.downcast().map(|e| *e).map_err(CodecError)
    }
}

/// A codec that stores secrets as they are. Only for tests and for exporting to
/// a place the caller already trusts with plaintext; never for a database.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlaintextCodec;

impl SecretCodec for PlaintextCodec {
    fn seal(&self, secret: &SecretValue) -> Result<String, CodecError> {
        Ok(secret.expose().to_owned())
    }
    fn open(&self, sealed: &str) -> Result<SecretValue, CodecError> {
        Ok(SecretValue::new(sealed))
    }
}

/// One [`with_secret_codec`] scope: its codec, and the first error the codec
/// reported in it.
struct Scope {
    codec: Arc<dyn SecretCodec>,
    first_error: Option<CodecError>,
}

thread_local! {
    static SCOPES: RefCell<Vec<Scope>> = const { RefCell::new(Vec::new()) };
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
    with_secret_codec_reporting(codec, f).0
}

/// Like [`with_secret_codec`], and also returns the first error `codec`
/// reported inside `f`, typed: serde passes on only its text.
///
/// ```
/// use std::sync::Arc;
/// use connective::model::{with_secret_codec_reporting, CodecError, SecretCodec, SecretValue};
/// #[derive(Debug, thiserror::Error)]
/// #[error("the vault is sealed")]
/// struct Sealed;
/// struct Vault;
/// impl SecretCodec for Vault {
///     fn seal(&self, _: &SecretValue) -> Result<String, CodecError> { Err(CodecError::new(Sealed)) }
///     fn open(&self, _: &str) -> Result<SecretValue, CodecError> { Err(CodecError::new(Sealed)) }
/// }
/// let (json, error) = with_secret_codec_reporting(Arc::new(Vault), || {
///     serde_json::to_string(&SecretValue::new("x"))
/// });
/// assert!(json.is_err());
/// assert!(error.unwrap().downcast_ref::<Sealed>().is_some());
/// ```
pub fn with_secret_codec_reporting<R>(
    codec: Arc<dyn SecretCodec>,
    f: impl FnOnce() -> R,
) -> (R, Option<CodecError>) {
    /// Ends the scope however `f` ends (a panic included).
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            SCOPES.with(|s| {
                s.borrow_mut().pop();
            });
        }
    }
    SCOPES.with(|s| {
        s.borrow_mut().push(Scope {
            codec,
            first_error: None,
        })
    });
    let pop = Pop;
    let result = f();
    let first_error = SCOPES.with(|s| {
        s.borrow_mut()
            .last_mut()
            .and_then(|scope| scope.first_error.take())
    });
    drop(pop);
    (result, first_error)
}

/// Runs `op` with the innermost scope's codec, or `None` outside any scope.
/// A failure is kept in the scope (the first one) and given back as text,
/// which is all serde can carry.
fn with_codec<T>(op: impl FnOnce(&dyn SecretCodec) -> Result<T, CodecError>) -> Option<Result<T, String>> {
    let codec = SCOPES.with(|s| s.borrow().last().map(|scope| Arc::clone(&scope.codec)))?;
    // Called without borrowing the scopes: a codec may serialize too.
    Some(op(&*codec).map_err(|error| {
        let text = error.to_string();
        SCOPES.with(|s| {
            if let Some(scope) = s.borrow_mut().last_mut() {
                scope.first_error.get_or_insert(error);
            }
        });
        text
    }))
}

const NO_CODEC: &str = "secret values are only serialized under an explicit SecretCodec \
                        (see connective::model::with_secret_codec)";

impl serde::Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match with_codec(|codec| codec.seal(self)) {
            Some(sealed) => s.serialize_str(&sealed.map_err(serde::ser::Error::custom)?),
            None => Err(serde::ser::Error::custom(NO_CODEC)),
        }
    }
}

impl<'de> serde::Deserialize<'de> for SecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::de::from_str(d, |text| match with_codec(|codec| codec.open(text)) {
            Some(opened) => opened,
            None => Err(NO_CODEC.to_owned()),
        })
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
    fn a_clone_shares_the_secret_and_the_last_copy_gives_it_back() {
        let s = SecretValue::new("sk_live_shared");
        let copy = s.clone();
        assert!(copy.shares_secret_with(&s));
        assert!(!SecretValue::new("sk_live_shared").shares_secret_with(&s));
        drop(s);
        let back: SecretString = copy.into();
        assert_eq!(back.expose_secret(), "sk_live_shared");
    }

    #[test]
    fn same_as_compares_contents() {
        assert!(SecretValue::new("a").same_as(&SecretValue::new("a")));
        assert!(!SecretValue::new("a").same_as(&SecretValue::new("ab")));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("refused {0}")]
    struct Refused(u8);

    /// Refuses everything with its own number.
    struct Refusing(u8);

    impl SecretCodec for Refusing {
        fn seal(&self, _: &SecretValue) -> Result<String, CodecError> {
            Err(CodecError::new(Refused(self.0)))
        }
        fn open(&self, _: &str) -> Result<SecretValue, CodecError> {
            Err(CodecError::new(Refused(self.0)))
        }
    }

    #[test]
    fn a_scope_reports_its_own_first_codec_error_typed() {
        let s = SecretValue::new("x");
        let (outer, error) = with_secret_codec_reporting(Arc::new(Refusing(1)), || {
            let (inner, error) =
                with_secret_codec_reporting(Arc::new(Refusing(2)), || serde_json::to_string(&[&s, &s]));
            assert!(inner.is_err());
            assert_eq!(
                error.and_then(|e| e.downcast::<Refused>().ok()).map(|r| r.0),
                Some(2)
            );
            serde_json::from_str::<SecretValue>("\"sealed\"")
        });
        // The codec's message, where the reader was.
        assert_eq!(outer.unwrap_err().to_string(), "refused 1 at line 1 column 8");
        assert_eq!(error.unwrap().downcast_ref::<Refused>().map(|r| r.0), Some(1));
        let (ok, error) = with_secret_codec_reporting(Arc::new(PlaintextCodec), || serde_json::to_string(&s));
        assert_eq!(ok.unwrap(), "\"x\"");
        assert!(error.is_none());
    }
}
