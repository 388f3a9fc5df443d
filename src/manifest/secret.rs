//! Secret references and the sources that resolve them.
//!
//! A manifest never holds a secret. A secret parameter's value is a reference
//! `SCHEME:REST`: `env:NAME` (an environment variable of the process applying
//! the manifest), `file:PATH` (a file, relative to the manifest's folder), the
//! built-in `keep:existing` (the value is managed outside the manifest: keep
//! what the registry has), or a scheme the host registers with
//! [`SecretSources::register`] (a vault, a cloud secret manager).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::model::{MAX_VALUE_LEN, SecretValue};

/// The reference that keeps the registry's current value.
pub const KEEP: &str = "keep:existing";

/// A reference to a secret: `scheme:rest`. Not itself secret (it names where
/// the secret is), so it may appear in messages.
///
/// ```
/// use connective::manifest::SecretRef;
/// let r: SecretRef = "env:TWILIO_KEY".parse()?;
/// assert_eq!((r.scheme(), r.rest()), ("env", "TWILIO_KEY"));
/// assert!("sk_live_123".parse::<SecretRef>().is_err()); // a literal, not a reference
/// # Ok::<(), connective::manifest::NotAReference>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretRef {
    scheme: String,
    rest: String,
}

/// A text that is not a secret reference. Carries nothing of the text: it may
/// be a literal secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a secret reference (SCHEME:REST, the scheme of lower-case letters, digits, '+', '-' and '.')")]
pub struct NotAReference;

impl SecretRef {
    /// Parses `scheme:rest`: a scheme of 1 to 32 lower-case ASCII letters,
    /// digits, `+`, `-` and `.` starting with a letter, and a non-empty rest.
    pub fn parse(text: &str) -> Result<Self, NotAReference> {
        let (scheme, rest) = text.split_once(':').ok_or(NotAReference)?;
        let mut chars = scheme.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok =
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
        if !first_ok || !rest_ok || scheme.len() > 32 || rest.is_empty() {
            return Err(NotAReference);
        }
        Ok(SecretRef {
            scheme: scheme.to_owned(),
            rest: rest.to_owned(),
        })
    }

    /// The scheme (`env`, `file`, ...).
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// What follows the scheme (a variable name, a path, ...).
    pub fn rest(&self) -> &str {
        &self.rest
    }

    /// Whether this is `keep:existing`.
    pub fn is_keep(&self) -> bool {
        self.scheme == "keep"
    }
}

impl std::str::FromStr for SecretRef {
    type Err = NotAReference;
    fn from_str(s: &str) -> Result<Self, NotAReference> {
        SecretRef::parse(s)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scheme, self.rest)
    }
}

/// Where the reference was written: lets a source resolve relative names.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SourceContext {
    /// The folder of the manifest file, if it was loaded from a file.
    pub base_dir: Option<PathBuf>,
}

/// Why a source could not supply a secret. Never contains the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// Resolves references of one scheme into secret values.
///
/// ```
/// use connective::manifest::{SecretRef, SecretSource, SecretSources, SourceContext, SourceError};
/// use connective::model::SecretValue;
///
/// /// A stand-in for a vault client.
/// struct Vault;
/// impl SecretSource for Vault {
///     fn fetch(&self, r: &SecretRef, _: &SourceContext) -> Result<SecretValue, SourceError> {
///         match r.rest() {
///             "kv/twilio#key" => Ok(SecretValue::new("from-the-vault")),
///             other => Err(SourceError(format!("no secret at {other}"))),
///         }
///     }
/// }
/// let sources = SecretSources::standard().register("vault", Vault)?;
/// let value = sources.fetch(&"vault:kv/twilio#key".parse()?, &SourceContext::default())?;
/// assert_eq!(value.expose(), "from-the-vault");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait SecretSource: Send + Sync {
    /// The secret `reference` names.
    fn fetch(&self, reference: &SecretRef, context: &SourceContext) -> Result<SecretValue, SourceError>;
}

/// `env:NAME`: an environment variable of this process.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvSource;

impl SecretSource for EnvSource {
    fn fetch(&self, reference: &SecretRef, _: &SourceContext) -> Result<SecretValue, SourceError> {
        match std::env::var_os(reference.rest()) {
            None => Err(SourceError(format!(
                "environment variable {} is not set",
                reference.rest()
            ))),
            Some(v) => match v.into_string() {
                Ok(s) => Ok(SecretValue::new(s)),
                Err(_) => Err(SourceError(format!(
                    "environment variable {} is not valid UTF-8",
                    reference.rest()
                ))),
            },
        }
    }
}

/// `file:PATH`: a file's contents, one trailing line break removed. A relative
/// path is relative to the manifest's folder.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileSource;

impl SecretSource for FileSource {
    fn fetch(&self, reference: &SecretRef, context: &SourceContext) -> Result<SecretValue, SourceError> {
        let given = Path::new(reference.rest());
        let path = match &context.base_dir {
            Some(base) if given.is_relative() => base.join(given),
            _ => given.to_path_buf(),
        };
        let meta = std::fs::metadata(&path)
            .map_err(|e| SourceError(format!("cannot read {}: {e}", path.display())))?;
        if meta.len() > MAX_VALUE_LEN as u64 + 2 {
            return Err(SourceError(format!(
                "{} is {} bytes, at most {MAX_VALUE_LEN} allowed",
                path.display(),
                meta.len()
            )));
        }
        let bytes =
            std::fs::read(&path).map_err(|e| SourceError(format!("cannot read {}: {e}", path.display())))?;
        let mut text = String::from_utf8(bytes)
            .map_err(|_| SourceError(format!("{} is not valid UTF-8", path.display())))?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        Ok(SecretValue::new(text))
    }
}

/// The schemes a host accepts, each with its [`SecretSource`].
///
/// [`SecretSources::standard`] knows `env:` and `file:`; `keep:existing` is
/// built in and handled by the plan.
#[derive(Clone)]
pub struct SecretSources {
    schemes: BTreeMap<String, Arc<dyn SecretSource>>,
}

impl fmt::Debug for SecretSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretSources")
            .field("schemes", &self.schemes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for SecretSources {
    fn default() -> Self {
        Self::standard()
    }
}

/// A scheme that cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot register secret scheme {scheme:?}: {reason}")]
pub struct SchemeError {
    /// The scheme.
    pub scheme: String,
    /// Why.
    pub reason: &'static str,
}

impl SecretSources {
    /// `env:` and `file:`.
    pub fn standard() -> Self {
        let mut schemes: BTreeMap<String, Arc<dyn SecretSource>> = BTreeMap::new();
        schemes.insert("env".into(), Arc::new(EnvSource));
        schemes.insert("file".into(), Arc::new(FileSource));
        SecretSources { schemes }
    }

    /// No scheme at all (only `keep:existing`): for hosts that allow no
    /// secret to come from the applying process's environment or files.
    pub fn none() -> Self {
        SecretSources {
            schemes: BTreeMap::new(),
        }
    }

    /// Adds (or replaces) the source of `scheme`.
    pub fn register(
        mut self,
        scheme: &str,
        source: impl SecretSource + 'static,
    ) -> Result<Self, SchemeError> {
        if scheme == "keep" {
            return Err(SchemeError {
                scheme: scheme.into(),
                reason: "keep: is built in",
            });
        }
        if SecretRef::parse(&format!("{scheme}:x")).is_err() {
            return Err(SchemeError {
                scheme: scheme.into(),
                reason: "a scheme is 1 to 32 lower-case letters, digits, '+', '-' and '.', starting with a letter",
            });
        }
        self.schemes.insert(scheme.to_owned(), Arc::new(source));
        Ok(self)
    }

    /// Whether `scheme` is accepted (`keep` always is).
    pub fn knows(&self, scheme: &str) -> bool {
        scheme == "keep" || self.schemes.contains_key(scheme)
    }

    /// The accepted schemes, `keep` included, sorted.
    pub fn schemes(&self) -> Vec<String> {
        let mut out: Vec<String> = self.schemes.keys().cloned().collect();
        out.push("keep".into());
        out.sort();
        out
    }

    /// Fetches a secret (`keep:existing` is not fetched: the plan handles it).
    pub fn fetch(&self, reference: &SecretRef, context: &SourceContext) -> Result<SecretValue, SourceError> {
        match self.schemes.get(reference.scheme()) {
            Some(source) => source.fetch(reference, context),
            None if reference.is_keep() => Err(SourceError(
                "keep:existing is resolved against the registry by the plan".into(),
            )),
            None => Err(SourceError(format!(
                "no source for scheme {}",
                reference.scheme()
            ))),
        }
    }
}
