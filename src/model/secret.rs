//! Secret values, and the one explicit way to serialize them.

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

use secrecy::zeroize::Zeroize;

/// The shared secret: the text itself in the shared cell when it is short
/// (one allocation of 24 bytes), else the cell holds a
/// [`secrecy::SecretString`] (two allocations, 24 bytes and the text).
/// `triomphe`'s `Arc` has no weak count: each cell is 8 bytes smaller than
/// with the standard `Arc` (memory per connection is a performance target).
#[derive(Clone)]
enum Shared {
    Short(triomphe::Arc<ShortSecret>),
    Long(triomphe::Arc<SecretString>),
}

/// A secret of at most [`ShortSecret::MAX`] bytes, kept in place in its
/// shared cell: a `secrecy` secret type of its own (it implements
/// [`ExposeSecret`] and [`ZeroizeOnDrop`](secrecy::zeroize::ZeroizeOnDrop)),
/// because `secrecy`'s own wrappers box their content, which would cost a
/// second allocation per short secret. Zeroized when dropped (when the
/// last copy of its shared cell is), like a [`secrecy::SecretString`];
/// never moved once in its cell, never printed (no `Debug`), read only
/// through [`ExposeSecret::expose_secret`].
struct ShortSecret {
    len: u8,
    bytes: [u8; ShortSecret::MAX],
}

impl ShortSecret {
    /// The most bytes a short secret holds (16 bytes with its length).
    const MAX: usize = 15;
}

impl ExposeSecret<str> for ShortSecret {
    fn expose_secret(&self) -> &str {
        // The bytes were a `str`'s, cut at its end: always UTF-8.
        let text = self.bytes.get(..usize::from(self.len)).unwrap_or_default();
        std::str::from_utf8(text).unwrap_or_default()
    }
}

/// Dropping a [`ShortSecret`] zeroizes it (see its `Drop`).
impl secrecy::zeroize::ZeroizeOnDrop for ShortSecret {}

impl ShortSecret {
    /// Zeroes the secret (what dropping it does).
    fn wipe(&mut self) {
        self.bytes.zeroize();
        self.len.zeroize();
    }
}

impl Drop for ShortSecret {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl Shared {
    /// A shared cell holding `text`; a short text is copied straight into
    /// its cell (no copy on the stack) and `text` zeroized.
    fn new(mut text: String) -> Shared {
        match Shared::short(&text) {
            Some(short) => {
                text.as_mut_str().zeroize();
                short
            }
            None => Shared::Long(triomphe::Arc::new(SecretString::from(text))),
        }
    }

    /// A short secret's cell holding `text`, if `text` is short.
    fn short(text: &str) -> Option<Shared> {
        let len = u8::try_from(text.len())
            .ok()
            .filter(|&l| usize::from(l) <= ShortSecret::MAX)?;
        let mut cell = triomphe::UniqueArc::new(ShortSecret {
            len,
            bytes: [0; ShortSecret::MAX],
        });
        cell.bytes.get_mut(..text.len())?.copy_from_slice(text.as_bytes());
        Some(Shared::Short(cell.shareable()))
    }

    fn expose(&self) -> &str {
        match self {
            Shared::Short(s) => s.expose_secret(),
            Shared::Long(s) => s.expose_secret(),
        }
    }
}

/// A secret parameter value (an API key, a password, an OAuth client secret).
///
/// It lives in a [`secrecy::SecretString`], or, up to 15 bytes, in place in
/// its shared cell (one allocation instead of two), zeroized likewise when
/// the last copy is dropped; `Debug` prints a redaction marker, there is no
/// `Display` and no `PartialEq`, and reading it takes an explicit
/// [`SecretValue::expose`].
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
        SecretValue(Shared::new(value.into()))
    }

    /// A secret copied from `text`: a short one straight into its cell,
    /// without the `String` [`SecretValue::new`] takes (and zeroizes);
    /// for text the caller wipes itself (an opened sealed value).
    #[cfg(any(feature = "seal", test))]
    pub(crate) fn copied_from(text: &str) -> Self {
        SecretValue(
            Shared::short(text).unwrap_or_else(|| Shared::Long(triomphe::Arc::new(SecretString::from(text)))),
        )
    }

    /// Whether two values are copies of one secret (as opposed to equal
    /// secrets): for tests of sharing.
    pub fn shares_secret_with(&self, other: &SecretValue) -> bool {
        match (&self.0, &other.0) {
            (Shared::Short(a), Shared::Short(b)) => triomphe::Arc::ptr_eq(a, b),
            (Shared::Long(a), Shared::Long(b)) => triomphe::Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Reads the secret. Every call site of this is a place a secret leaves the
    /// library on purpose.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The secret's length in bytes (for the checks of a parameter's
    /// values), without reading it as text.
    pub(crate) fn len(&self) -> usize {
        match &self.0 {
            Shared::Short(s) => usize::from(s.len),
            Shared::Long(s) => s.expose_secret().len(),
        }
    }

    /// Compares two secrets without exposing either to the caller.
    pub fn same_as(&self, other: &SecretValue) -> bool {
        let (a, b) = (self.expose().as_bytes(), other.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl From<SecretString> for SecretValue {
    /// Takes the secret (a short one is copied into its cell, and `s`
    /// zeroized as it is dropped).
    fn from(s: SecretString) -> Self {
        SecretValue(Shared::short(s.expose_secret()).unwrap_or_else(|| Shared::Long(triomphe::Arc::new(s))))
    }
}

impl From<SecretValue> for SecretString {
    /// The secret itself when this is the last copy of a long one, else a
    /// copy of it.
    fn from(s: SecretValue) -> Self {
        match s.0 {
            Shared::Long(long) => triomphe::Arc::try_unwrap(long)
                .unwrap_or_else(|shared| SecretString::from(shared.expose_secret())),
            Shared::Short(short) => SecretString::from(short.expose_secret()),
        }
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

    /// A secret copied from text holds what one made from a `String` does,
    /// short (in its cell) or long.
    #[test]
    fn a_secret_copied_from_text_is_the_secret_made_from_it() {
        for text in [
            "",
            "k000000",
            "exactly-15-byte",
            "sixteen-bytes-16",
            &"é".repeat(40),
        ] {
            let (copied, made) = (SecretValue::copied_from(text), SecretValue::new(text));
            assert_eq!(copied.expose(), text);
            assert_eq!(
                matches!(copied.0, Shared::Short(_)),
                matches!(made.0, Shared::Short(_)),
                "{} bytes",
                text.len()
            );
        }
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

    /// Texts on both sides of the short form's limit (15 bytes), some
    /// with a character of several bytes across it.
    const AROUND_THE_LIMIT: [&str; 8] = [
        "",
        "k",
        "k000001",
        "fifteen bytes!!",
        "sixteen bytes!!!",
        "thirteen byte\u{e9}",
        "fourteen bytes\u{e9}",
        "a much longer secret than that: sk_live_0123456789",
    ];

    #[test]
    fn short_and_long_secrets_read_back_as_they_were() {
        for text in AROUND_THE_LIMIT {
            let value = SecretValue::new(text);
            assert_eq!(value.expose(), text);
            assert_eq!(value.len(), text.len());
            assert_eq!(matches!(value.0, Shared::Short(_)), text.len() <= 15, "{text:?}");
            let from_secrecy = SecretValue::from(SecretString::from(text));
            assert_eq!(from_secrecy.expose(), text);
            assert_eq!(matches!(from_secrecy.0, Shared::Short(_)), text.len() <= 15);
            let back: SecretString = value.into();
            assert_eq!(back.expose_secret(), text);
        }
    }

    #[test]
    fn short_and_long_clones_share_their_secret() {
        for text in AROUND_THE_LIMIT {
            let s = SecretValue::new(text);
            let copy = s.clone();
            assert!(copy.shares_secret_with(&s), "{text:?}");
            assert!(!SecretValue::new(text).shares_secret_with(&s), "{text:?}");
            assert!(copy.same_as(&s));
            drop(s);
            assert_eq!(copy.expose(), text);
        }
        let (short, long) = (SecretValue::new("a"), SecretValue::new("a".repeat(16)));
        assert!(!short.shares_secret_with(&long) && !long.shares_secret_with(&short));
    }

    #[test]
    fn a_short_secret_is_wiped_and_in_one_cell() {
        // The short form's point: the text in the cell (16 bytes, with the
        // cell's count 24), so a secret of up to 15 bytes is one allocation.
        assert_eq!(std::mem::size_of::<ShortSecret>(), 16);
        assert_eq!(std::mem::size_of::<SecretValue>(), 16);
        let Shared::Short(mut cell) = SecretValue::new("p000001").0 else {
            panic!("a short secret");
        };
        let short = triomphe::Arc::get_mut(&mut cell).expect("one copy");
        short.wipe();
        assert_eq!((short.len, short.bytes), (0, [0; ShortSecret::MAX]));
        assert_eq!(short.expose_secret(), "");
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
