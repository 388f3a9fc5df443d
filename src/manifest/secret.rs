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
    /// digits, `+`, `-` and `.` starting with a letter, and a non-empty rest
    /// that does not start with `//`: a URL (`postgresql://admin:pw@db`) is
    /// a value, not a reference. `keep:` is only `keep:existing`.
    ///
    /// Whether the scheme is one the host accepts is decided when a manifest
    /// is loaded ([`LoadOptions::sources`](super::LoadOptions::sources)):
    /// `user:password` has the shape of a reference, but no host registers a
    /// `user` scheme, so the manifest refuses it without repeating it.
    ///
    /// ```
    /// use connective::manifest::SecretRef;
    /// assert!("postgresql://admin:pw@db/x".parse::<SecretRef>().is_err());
    /// assert!("keep:everything".parse::<SecretRef>().is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, NotAReference> {
        let (scheme, rest) = text.split_once(':').ok_or(NotAReference)?;
        let mut chars = scheme.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok =
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'));
        if !first_ok
            || !rest_ok
            || scheme.len() > 32
            || rest.is_empty()
            || rest.starts_with("//")
            || (scheme == "keep" && rest != "existing")
        {
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

/// `env:NAME`: an environment variable of the process applying the manifest,
/// if the host allows that name.
///
/// Who writes a manifest is not always who applies it (a CI job with cloud
/// credentials in its environment applies what developers commit), so `env:`
/// reads only what the host allows:
/// - by default ([`EnvSource::default`]), names starting with
///   [`EnvSource::DEFAULT_PREFIX`] (`CONNECTIVE_SECRET_`), the way Terraform
///   reads only `TF_VAR_*`;
/// - [`EnvSource::with_prefix`] another prefix, [`EnvSource::allow`] a list of
///   names, [`EnvSource::any`] every name (for a host that trusts its
///   manifests' authors with its whole environment).
///
/// Whatever the host allows, the crate's own settings are never read: names
/// starting with `CONNECTIVE_` outside `CONNECTIVE_SECRET_` (the sealing key
/// `CONNECTIVE_SEAL_KEY` among them), and the PostgreSQL client's credentials
/// `PGPASSWORD` and `PGPASSFILE` ([`EnvSource::is_protected`]).
///
/// ```
/// use connective::manifest::EnvSource;
/// let default = EnvSource::default();
/// assert!(default.allows("CONNECTIVE_SECRET_TWILIO_KEY"));
/// assert!(!default.allows("AWS_SECRET_ACCESS_KEY"));
/// assert!(EnvSource::any().allows("TWILIO_KEY"));
/// assert!(!EnvSource::any().allows("CONNECTIVE_SEAL_KEY"));
/// assert!(!EnvSource::allow(["PGPASSWORD"]).allows("PGPASSWORD"));
/// ```
#[derive(Debug, Clone)]
pub struct EnvSource {
    allowed: EnvAllowed,
}

#[derive(Debug, Clone)]
enum EnvAllowed {
    Prefix(String),
    Names(std::collections::BTreeSet<String>),
    Any,
}

impl Default for EnvSource {
    /// Names starting with [`EnvSource::DEFAULT_PREFIX`].
    fn default() -> Self {
        EnvSource::with_prefix(Self::DEFAULT_PREFIX)
    }
}

impl EnvSource {
    /// The prefix of the names `env:` reads by default.
    pub const DEFAULT_PREFIX: &'static str = "CONNECTIVE_SECRET_";

    /// Reads names starting with `prefix` (an empty prefix allows every name).
    pub fn with_prefix(prefix: impl Into<String>) -> Self {
        EnvSource {
            allowed: EnvAllowed::Prefix(prefix.into()),
        }
    }

    /// Reads exactly these names.
    pub fn allow<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EnvSource {
            allowed: EnvAllowed::Names(names.into_iter().map(Into::into).collect()),
        }
    }

    /// Reads every name (but the protected ones).
    pub fn any() -> Self {
        EnvSource {
            allowed: EnvAllowed::Any,
        }
    }

    /// Whether `name` is one of the crate's own settings, which `env:` never
    /// reads: `CONNECTIVE_*` outside `CONNECTIVE_SECRET_*`, `PGPASSWORD`,
    /// `PGPASSFILE`.
    pub fn is_protected(name: &str) -> bool {
        (name.starts_with("CONNECTIVE_") && !name.starts_with(Self::DEFAULT_PREFIX))
            || matches!(name, "PGPASSWORD" | "PGPASSFILE")
    }

    /// Whether `env:NAME` may read `name`.
    pub fn allows(&self, name: &str) -> bool {
        !Self::is_protected(name)
            && match &self.allowed {
                EnvAllowed::Prefix(p) => name.starts_with(p.as_str()),
                EnvAllowed::Names(names) => names.contains(name),
                EnvAllowed::Any => true,
            }
    }

    fn describe(&self) -> String {
        match &self.allowed {
            EnvAllowed::Prefix(p) => format!("names starting with {p}"),
            EnvAllowed::Names(n) => format!("{} listed names", n.len()),
            EnvAllowed::Any => "every name but the crate's own settings".into(),
        }
    }
}

impl SecretSource for EnvSource {
    fn fetch(&self, reference: &SecretRef, _: &SourceContext) -> Result<SecretValue, SourceError> {
        let name = reference.rest();
        if crate::model::EnvVarName::parse(name).is_err() {
            return Err(SourceError(
                "not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)".into(),
            ));
        }
        if Self::is_protected(name) {
            return Err(SourceError(format!(
                "environment variable {name} is one of the crate's own settings and is never read"
            )));
        }
        if !self.allows(name) {
            return Err(SourceError(format!(
                "environment variable {name} is not one the host allows (it allows {})",
                self.describe()
            )));
        }
        match std::env::var_os(name) {
            None => Err(SourceError(format!("environment variable {name} is not set"))),
            Some(v) if v.len() > MAX_VALUE_LEN => Err(SourceError(format!(
                "environment variable {name} is {} bytes, at most {MAX_VALUE_LEN} allowed",
                v.len()
            ))),
            Some(v) => match v.into_string() {
                Ok(s) => Ok(SecretValue::new(s)),
                Err(_) => Err(SourceError(format!(
                    "environment variable {name} is not valid UTF-8"
                ))),
            },
        }
    }
}

/// `file:PATH`: a file's contents, one trailing line break removed, read from
/// under a folder: the host's ([`FileSource::under`]) or, by default, the
/// manifest's own.
///
/// The path is confined to that folder and the read is bounded:
/// - `PATH` is relative, without `..` (an absolute path or a `..` is refused
///   before anything is opened);
/// - symbolic links are followed only if they stay under the folder (the path
///   is made canonical and must still start with the folder's canonical
///   path), and the file opened must be the one checked (same device and
///   inode; opened without following a last symbolic link);
/// - only a regular file is read: not a FIFO (which would block), a device
///   (`/dev/urandom` never ends) or a directory;
/// - at most [`MAX_VALUE_LEN`](crate::model::MAX_VALUE_LEN) bytes plus a line
///   break are read, whatever size the file reports (a file in `/proc` says 0).
///
/// A manifest parsed from text has no folder: its `file:` references need a
/// host folder (`FileSource::under`).
#[derive(Debug, Clone, Default)]
pub struct FileSource {
    root: Option<PathBuf>,
}

impl FileSource {
    /// Reads from under the manifest's folder.
    pub fn new() -> Self {
        FileSource::default()
    }

    /// Reads from under `root`, wherever the manifest is.
    pub fn under(root: impl Into<PathBuf>) -> Self {
        FileSource {
            root: Some(root.into()),
        }
    }

    /// The host's folder, if it set one.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }
}

/// `rest` as a path confined to a folder: relative, no `..`, not empty.
fn confined(rest: &str) -> Result<&Path, &'static str> {
    use std::path::Component;
    let path = Path::new(rest);
    if rest.contains('\0') {
        return Err("contains a NUL character");
    }
    let mut normal = 0;
    for c in path.components() {
        match c {
            Component::Normal(_) => normal += 1,
            Component::CurDir => {}
            Component::ParentDir => return Err("may not contain `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("must be a relative path"),
        }
    }
    if normal == 0 {
        return Err("names no file");
    }
    Ok(path)
}

impl SecretSource for FileSource {
    fn fetch(&self, reference: &SecretRef, context: &SourceContext) -> Result<SecretValue, SourceError> {
        let shown = reference.to_string();
        let fail = |why: String| SourceError(why);
        let relative = confined(reference.rest()).map_err(|why| fail(format!("the path {why}")))?;
        let root = self.root.as_ref().or(context.base_dir.as_ref()).ok_or_else(|| {
            fail("there is no folder to read it from (the manifest was not loaded from a file; a host sets one with FileSource::under)".into())
        })?;
        let root = std::fs::canonicalize(root)
            .map_err(|e| fail(format!("the folder secrets are read from cannot be opened: {e}")))?;
        let path = std::fs::canonicalize(root.join(relative))
            .map_err(|e| fail(format!("cannot read {}: {e}", relative.display())))?;
        if !path.starts_with(&root) {
            return Err(fail(format!(
                "{shown} leads outside the folder secrets are read from"
            )));
        }
        let checked = std::fs::metadata(&path).map_err(|e| fail(format!("cannot read {shown}: {e}")))?;
        if !checked.is_file() {
            return Err(fail(format!("{shown} is not a regular file")));
        }
        let file = open_no_follow(&path).map_err(|e| fail(format!("cannot read {shown}: {e}")))?;
        let opened = file
            .metadata()
            .map_err(|e| fail(format!("cannot read {shown}: {e}")))?;
        if !opened.is_file() || !same_file(&checked, &opened) {
            return Err(fail(format!("{shown} changed while it was being opened")));
        }
        // One line break may follow the value; one more byte tells a value
        // that is too long.
        let limit = MAX_VALUE_LEN + 2;
        let mut bytes = Vec::with_capacity(opened.len().min(limit as u64 + 1) as usize);
        std::io::Read::read_to_end(&mut std::io::Read::take(file, limit as u64 + 1), &mut bytes)
            .map_err(|e| fail(format!("cannot read {shown}: {e}")))?;
        if bytes.ends_with(b"\n") {
            bytes.pop();
            if bytes.ends_with(b"\r") {
                bytes.pop();
            }
        }
        if bytes.len() > MAX_VALUE_LEN {
            return Err(fail(format!(
                "{shown} holds more than {MAX_VALUE_LEN} bytes, the most a value may have"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|_| fail(format!("{shown} is not valid UTF-8")))?;
        Ok(SecretValue::new(text))
    }
}

/// Opens `path` for reading without following a symbolic link in its last
/// component and without waiting for a writer (were it swapped for a FIFO
/// after the check).
#[cfg(unix)]
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
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
    /// `env:` ([`EnvSource::default`]: names starting with
    /// `CONNECTIVE_SECRET_`) and `file:` ([`FileSource::default`]: under the
    /// manifest's folder). Replace either with [`SecretSources::register`],
    /// e.g. `register("env", EnvSource::allow(["TWILIO_KEY"]))`.
    pub fn standard() -> Self {
        let mut schemes: BTreeMap<String, Arc<dyn SecretSource>> = BTreeMap::new();
        schemes.insert("env".into(), Arc::new(EnvSource::default()));
        schemes.insert("file".into(), Arc::new(FileSource::default()));
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
