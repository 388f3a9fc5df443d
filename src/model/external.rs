//! Secrets that live in the organization's secret store (HashiCorp Vault,
//! OpenBao, a cloud secret manager): references to them, which a secret
//! parameter's value layer may hold instead of a value, and the read view
//! resolution takes their current values from.
//!
//! A reference is not secret (it says where a secret is), so it is kept as
//! it is in records, manifests and messages. The value it names is fetched
//! and kept fresh by a cache outside the model (the `external` module,
//! feature `external-secrets`); resolution only reads that cache's
//! [`ExternalSecrets`] view, from memory.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
#[cfg(feature = "external-secrets")]
use std::sync::atomic::{AtomicU64, Ordering};

use smol_str::SmolStr;

use super::ident::{SecretVersion, StoreName};
use super::secret::SecretValue;
use super::token::Timestamp;

/// Where a secret lives in an external store: the store's name (as the host
/// configured it), a mount, a path, and optionally a pinned version. One
/// location holds one or more keys; an [`ExternalRef`] picks one.
///
/// For a KV version 2 engine (Vault, OpenBao) the mount is the engine's
/// mount (`secret`, `kv/team-a`) and the path the secret's path under it;
/// another store makes of them what its documentation says.
#[derive(Clone, Eq, PartialOrd, Ord)]
pub struct SecretLocation {
    store: StoreName,
    mount: SmolStr,
    path: SmolStr,
    version: Option<SecretVersion>,
    /// A hash of the fields above, computed once: a cache looks a location
    /// up on every resolution of a referenced value, and hashing four
    /// strings each time would cost more than the lookup itself.
    hash: u64,
}

impl PartialEq for SecretLocation {
    /// The hashes first: locations that differ mostly differ there.
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.store == other.store
            && self.mount == other.mount
            && self.path == other.path
            && self.version == other.version
    }
}

impl std::hash::Hash for SecretLocation {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// A reference to one key of a secret in an external store: what a secret
/// parameter's value layer holds when the value lives in the organization's
/// vault (see [`SecretEntry::External`]).
///
/// Its text form is `STORE:MOUNT/PATH#KEY`: the mount is the first segment
/// of the path; a mount of several segments is separated from the path by
/// a colon instead (`STORE:MOUNT:PATH#KEY`); `?version=N` before the `#`
/// pins a version. Mount and path segments are ASCII letters, digits and
/// `_ . - @ + = ,` separated by single slashes, never `.` or `..`; the key
/// uses the same characters.
///
/// ```
/// use connective::model::ExternalRef;
/// let r: ExternalRef = "vault:secret/crm/prod#password".parse()?;
/// assert_eq!((r.store().as_str(), r.mount(), r.path(), r.key()), ("vault", "secret", "crm/prod", "password"));
/// assert_eq!(r.version(), None);
///
/// let pinned: ExternalRef = "openbao:kv/team-a:crm?version=3#api_key".parse()?;
/// assert_eq!((pinned.mount(), pinned.path()), ("kv/team-a", "crm"));
/// assert_eq!(pinned.version().map(|v| v.as_str()), Some("3"));
/// assert_eq!(pinned.to_string(), "openbao:kv/team-a:crm?version=3#api_key");
///
/// // Nothing of the text is repeated by an error: it may be a misplaced secret.
/// let err = "vault:secret/crm".parse::<ExternalRef>().unwrap_err();
/// assert!(!err.to_string().contains("crm"), "{err}");
/// # Ok::<(), connective::model::ExternalRefError>(())
/// ```
pub struct ExternalRef {
    location: SecretLocation,
    key: SmolStr,
    /// The number of the crate's secret cache that attached itself to this
    /// reference (high 32 bits; 0: none yet) and the place of its key's
    /// answer there (low 32 bits), see [`ExternalRef::cache_index`]; not
    /// part of its identity, text or serialized form, and not visible
    /// outside the crate. One word, read with one load: resolution reads
    /// it for every referenced value.
    #[cfg(feature = "external-secrets")]
    cache: AtomicU64,
}

impl Clone for ExternalRef {
    /// A copy keeping the place the cache attached (the same key's).
    fn clone(&self) -> Self {
        ExternalRef {
            location: self.location.clone(),
            key: self.key.clone(),
            #[cfg(feature = "external-secrets")]
            cache: AtomicU64::new(self.cache.load(Ordering::Acquire)),
        }
    }
}

impl PartialEq for ExternalRef {
    fn eq(&self, other: &Self) -> bool {
        (&self.location, &self.key) == (&other.location, &other.key)
    }
}

impl Eq for ExternalRef {}

impl std::hash::Hash for ExternalRef {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (&self.location, &self.key).hash(state);
    }
}

impl PartialOrd for ExternalRef {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ExternalRef {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.location, &self.key).cmp(&(&other.location, &other.key))
    }
}

/// The part of an [`ExternalRef`] that is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefPart {
    /// The store's name (the scheme before the first `:`).
    Store,
    /// The mount.
    Mount,
    /// The path.
    Path,
    /// The version (`?version=N`).
    Version,
    /// The key (after `#`).
    Key,
}

impl fmt::Display for RefPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefPart::Store => "store name",
            RefPart::Mount => "mount",
            RefPart::Path => "path",
            RefPart::Version => "version",
            RefPart::Key => "key",
        })
    }
}

/// Why a text is not an [`ExternalRef`]. It never repeats the text: a
/// secret written where a reference belongs must not reach a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid external secret reference: its {part} {rule} (the form is STORE:MOUNT/PATH#KEY)")]
pub struct ExternalRefError {
    /// Which part is wrong.
    pub part: RefPart,
    /// What is wrong with it, in words.
    pub rule: &'static str,
}

impl ExternalRefError {
    fn new(part: RefPart, rule: &'static str) -> Self {
        ExternalRefError { part, rule }
    }
}

/// The longest mount, in bytes.
const MAX_MOUNT: usize = 128;
/// The longest path, in bytes.
const MAX_PATH: usize = 512;
/// The longest key, in bytes.
const MAX_KEY: usize = 128;

fn segment_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b'@' | b'+' | b'=' | b',')
}

/// Checks a mount's text (as in [`ExternalRef`]'s): slash-separated
/// segments, none empty, none `.` or `..`, every character allowed, at most
/// 128 bytes. The rule of the built-in vault client's AppRole mount and
/// namespace as well, which it puts in URLs and headers.
#[cfg(feature = "vault")]
pub(crate) fn check_mount(text: &str) -> Result<(), ExternalRefError> {
    check_segments(text, RefPart::Mount, MAX_MOUNT)
}

/// Checks slash-separated segments: none empty, none `.` or `..`, every
/// character allowed, at most `max` bytes.
fn check_segments(text: &str, part: RefPart, max: usize) -> Result<(), ExternalRefError> {
    if text.is_empty() {
        return Err(ExternalRefError::new(part, "is missing"));
    }
    if text.len() > max {
        return Err(ExternalRefError::new(
            part,
            match part {
                RefPart::Mount => "is longer than 128 bytes",
                _ => "is longer than 512 bytes",
            },
        ));
    }
    for segment in text.split('/') {
        if segment.is_empty() {
            return Err(ExternalRefError::new(
                part,
                "has an empty segment (two slashes, or one at an end)",
            ));
        }
        if segment == "." || segment == ".." {
            return Err(ExternalRefError::new(part, "has a `.` or `..` segment"));
        }
        if !segment.bytes().all(segment_char) {
            return Err(ExternalRefError::new(
                part,
                "has a character other than ASCII letters, digits, '_', '.', '-', '@', '+', '=', ',' and '/'",
            ));
        }
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), ExternalRefError> {
    if key.is_empty() {
        return Err(ExternalRefError::new(
            RefPart::Key,
            "is missing (write #KEY after the path)",
        ));
    }
    if key.len() > MAX_KEY {
        return Err(ExternalRefError::new(RefPart::Key, "is longer than 128 bytes"));
    }
    if !key.bytes().all(segment_char) {
        return Err(ExternalRefError::new(
            RefPart::Key,
            "has a character other than ASCII letters, digits, '_', '.', '-', '@', '+', '=' and ','",
        ));
    }
    Ok(())
}

impl SecretLocation {
    /// A location: `mount` and `path` checked as in [`ExternalRef`]'s text
    /// form.
    pub fn new(store: StoreName, mount: &str, path: &str) -> Result<Self, ExternalRefError> {
        check_segments(mount, RefPart::Mount, MAX_MOUNT)?;
        check_segments(path, RefPart::Path, MAX_PATH)?;
        Ok(SecretLocation {
            store,
            mount: SmolStr::new(mount),
            path: SmolStr::new(path),
            version: None,
            hash: 0,
        }
        .rehashed())
    }

    /// The same location pinned to `version`.
    pub fn with_version(mut self, version: SecretVersion) -> Self {
        self.version = Some(version);
        self.rehashed()
    }

    fn rehashed(mut self) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (&self.store, &self.mount, &self.path, &self.version).hash(&mut h);
        self.hash = h.finish();
        self
    }

    /// The store's name.
    pub fn store(&self) -> &StoreName {
        &self.store
    }

    /// The mount.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// The path under the mount.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The pinned version, if any (else the current one is meant).
    pub fn version(&self) -> Option<&SecretVersion> {
        self.version.as_ref()
    }
}

impl fmt::Display for SecretLocation {
    /// `STORE:MOUNT/PATH` (`STORE:MOUNT:PATH` for a mount of several
    /// segments), then `?version=N` if pinned.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.mount.contains('/') { ':' } else { '/' };
        write!(f, "{}:{}{sep}{}", self.store, self.mount, self.path)?;
        if let Some(v) = &self.version {
            write!(f, "?version={v}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SecretLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretLocation({self})")
    }
}

impl ExternalRef {
    /// Parses the text form (see the type's documentation).
    pub fn parse(text: &str) -> Result<Self, ExternalRefError> {
        let (store, rest) = text
            .split_once(':')
            .ok_or(ExternalRefError::new(RefPart::Store, "is missing (STORE:...)"))?;
        let store = StoreName::parse(store).map_err(|_| {
            ExternalRefError::new(
                RefPart::Store,
                "is not 1 to 32 lower-case letters, digits, '+', '-' and '.' starting with a letter",
            )
        })?;
        let (before, key) = rest.split_once('#').ok_or(ExternalRefError::new(
            RefPart::Key,
            "is missing (write #KEY after the path)",
        ))?;
        let (place, query) = match before.split_once('?') {
            Some((place, query)) => (place, Some(query)),
            None => (before, None),
        };
        let version = match query {
            None => None,
            Some(q) => {
                let v = q.strip_prefix("version=").ok_or(ExternalRefError::new(
                    RefPart::Version,
                    "is not written `?version=N` (the only query there is)",
                ))?;
                Some(SecretVersion::parse(v).map_err(|_| {
                    ExternalRefError::new(
                        RefPart::Version,
                        "is not 1 to 64 ASCII letters, digits, '-', '_' and '.'",
                    )
                })?)
            }
        };
        let (mount, path) = match place.split_once(':') {
            Some(split) => split,
            None => place
                .split_once('/')
                .ok_or(ExternalRefError::new(RefPart::Path, "is missing (MOUNT/PATH)"))?,
        };
        check_key(key)?;
        let mut location = SecretLocation::new(store, mount, path)?;
        if let Some(version) = version {
            location = location.with_version(version);
        }
        Ok(ExternalRef::unchecked(location, key))
    }

    /// A reference to `key` at `location`.
    pub fn new(location: SecretLocation, key: &str) -> Result<Self, ExternalRefError> {
        check_key(key)?;
        Ok(ExternalRef::unchecked(location, key))
    }

    /// A reference to `key` (checked by the caller) at `location`.
    fn unchecked(location: SecretLocation, key: &str) -> Self {
        ExternalRef {
            location,
            key: SmolStr::new(key),
            #[cfg(feature = "external-secrets")]
            cache: AtomicU64::new(0),
        }
    }

    /// Where the secret is.
    pub fn location(&self) -> &SecretLocation {
        &self.location
    }

    /// The store's name.
    pub fn store(&self) -> &StoreName {
        &self.location.store
    }

    /// The mount.
    pub fn mount(&self) -> &str {
        &self.location.mount
    }

    /// The path under the mount.
    pub fn path(&self) -> &str {
        &self.location.path
    }

    /// The key within the secret.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The pinned version, if any.
    pub fn version(&self) -> Option<&SecretVersion> {
        self.location.version.as_ref()
    }

    /// The place of this reference's key in the answers of the secret
    /// cache numbered `cache`, if that cache attached it with
    /// [`ExternalRef::cache_index_or_attach`].
    ///
    /// A reference in a record lives as long as the record, across
    /// resolutions: the crate's `SecretCache` keeps the place of the
    /// reference's answer here and skips its own index on the next lookup.
    /// Crate-private: a host's own [`ExternalSecrets`] keeps its state
    /// itself.
    #[cfg(feature = "external-secrets")]
    #[inline]
    pub(crate) fn cache_index(&self, cache: u64) -> Option<usize> {
        let attached = self.cache.load(Ordering::Acquire);
        // A cache number 0 or beyond 32 bits never attaches, so never matches
        // (0 is no cache's).
        (attached >> 32 == cache && cache != 0).then_some((attached & u64::from(u32::MAX)) as usize)
    }

    /// The place of the cache numbered `cache` (a number unique to the
    /// cache), attached first if no cache has attached one: `make` is
    /// called only then. `None` when another cache keeps the place, or
    /// when the cache's number or the place do not fit in 32 bits (the
    /// cache then finds the key itself at each lookup).
    #[cfg(feature = "external-secrets")]
    pub(crate) fn cache_index_or_attach(&self, cache: u64, make: impl FnOnce() -> usize) -> Option<usize> {
        if let Some(index) = self.cache_index(cache) {
            return Some(index);
        }
        if cache == 0 || cache > u64::from(u32::MAX) || self.cache.load(Ordering::Acquire) != 0 {
            return None;
        }
        let index = make();
        let packed = (cache << 32) | u64::try_from(index).ok().filter(|&i| i <= u64::from(u32::MAX))?;
        match self
            .cache
            .compare_exchange(0, packed, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Some(index),
            // Another thread attached first: its cache's place, if this
            // cache's (the same key's, so the same place).
            Err(_) => self.cache_index(cache),
        }
    }
}

impl FromStr for ExternalRef {
    type Err = ExternalRefError;
    fn from_str(s: &str) -> Result<Self, ExternalRefError> {
        ExternalRef::parse(s)
    }
}

impl TryFrom<&str> for ExternalRef {
    type Error = ExternalRefError;
    fn try_from(s: &str) -> Result<Self, ExternalRefError> {
        ExternalRef::parse(s)
    }
}

impl TryFrom<String> for ExternalRef {
    type Error = ExternalRefError;
    fn try_from(s: String) -> Result<Self, ExternalRefError> {
        ExternalRef::parse(&s)
    }
}

impl TryFrom<&String> for ExternalRef {
    type Error = ExternalRefError;
    fn try_from(s: &String) -> Result<Self, ExternalRefError> {
        ExternalRef::parse(s)
    }
}

impl From<&ExternalRef> for ExternalRef {
    fn from(r: &ExternalRef) -> Self {
        r.clone()
    }
}

impl fmt::Display for ExternalRef {
    /// The text form, which [`ExternalRef::parse`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.location, self.key)
    }
}

impl fmt::Debug for ExternalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExternalRef({self})")
    }
}

impl serde::Serialize for ExternalRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ExternalRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::de::from_str(d, ExternalRef::parse)
    }
}

/// Converts an argument into an [`ExternalRef`], deferring the error: the
/// parameter builder's `*_ref` methods take text or a parsed reference, and
/// a text that is not one is reported by the connection builder's `build()`.
pub trait IntoExternalRef {
    /// The reference, or why the text is not one.
    fn into_external_ref(self) -> Result<ExternalRef, ExternalRefError>;
}

impl<T> IntoExternalRef for T
where
    T: TryInto<ExternalRef>,
    T::Error: Into<ExternalRefError>,
{
    fn into_external_ref(self) -> Result<ExternalRef, ExternalRefError> {
        self.try_into().map_err(Into::into)
    }
}

impl From<std::convert::Infallible> for ExternalRefError {
    fn from(never: std::convert::Infallible) -> Self {
        match never {}
    }
}

/// What one value layer of a secret parameter holds: the secret itself
/// (kept by connective, sealed at rest by the durable stores), or a
/// reference to it in an external store (kept as a reference: nothing is
/// copied; resolution reads the current value from the host's
/// [`ExternalSecrets`]).
///
/// `Debug` shows a reference but never a stored value. Serialized, a stored
/// value is a string (through the installed
/// [`SecretCodec`](crate::model::SecretCodec), as before references
/// existed) and a reference is `{"external": "vault:secret/crm#password"}`.
#[derive(Clone)]
pub enum SecretEntry {
    /// The secret, kept by connective.
    Stored(SecretValue),
    /// A reference to the secret in an external store (shared: a
    /// parameter stays as small as it was for stored values, see
    /// `MAX_PARAMS`, and a resolution's provenance takes it without a copy).
    External(Arc<ExternalRef>),
}

impl SecretEntry {
    /// The reference, for an external entry.
    pub fn external(&self) -> Option<&ExternalRef> {
        match self {
            SecretEntry::External(r) => Some(r),
            SecretEntry::Stored(_) => None,
        }
    }

    /// Whether two entries hold the same: equal references, or stored
    /// secrets compared without exposing them (see [`SecretValue::same_as`]).
    pub fn same_as(&self, other: &SecretEntry) -> bool {
        match (self, other) {
            (SecretEntry::Stored(a), SecretEntry::Stored(b)) => a.same_as(b),
            (SecretEntry::External(a), SecretEntry::External(b)) => a == b,
            _ => false,
        }
    }
}

impl From<SecretValue> for SecretEntry {
    fn from(v: SecretValue) -> Self {
        SecretEntry::Stored(v)
    }
}

impl From<ExternalRef> for SecretEntry {
    fn from(r: ExternalRef) -> Self {
        SecretEntry::External(Arc::new(r))
    }
}

impl fmt::Debug for SecretEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretEntry::Stored(_) => f.write_str("Stored([REDACTED])"),
            SecretEntry::External(r) => write!(f, "External({r})"),
        }
    }
}

impl serde::Serialize for SecretEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            SecretEntry::Stored(v) => v.serialize(s),
            SecretEntry::External(r) => {
                let mut map = s.serialize_map(Some(1))?;
                map.serialize_entry("external", r)?;
                map.end()
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for SecretEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry;
        impl<'de> serde::de::Visitor<'de> for Entry {
            type Value = SecretEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sealed secret (a string) or {\"external\": REFERENCE}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretEntry, E> {
                use serde::de::IntoDeserializer;
                let d: serde::de::value::StrDeserializer<'_, E> = v.into_deserializer();
                serde::Deserialize::deserialize(d).map(SecretEntry::Stored)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SecretEntry, A::Error> {
                let mut found = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key != "external" {
                        return Err(serde::de::Error::unknown_field(&key, &["external"]));
                    }
                    if found.is_some() {
                        return Err(serde::de::Error::duplicate_field("external"));
                    }
                    found = Some(map.next_value::<ExternalRef>()?);
                }
                found
                    .map(SecretEntry::from)
                    .ok_or_else(|| serde::de::Error::missing_field("external"))
            }
        }
        d.deserialize_any(Entry)
    }
}

/// When and what an external store answered for a value resolution used:
/// part of the value's provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchInfo {
    /// The version the store said it served, if it says.
    pub version: Option<SecretVersion>,
    /// When the value was fetched (the last successful fetch).
    pub fetched_at: Timestamp,
    /// Since when the refreshes of this value have failed, when they do: the
    /// value is the last good one, served until the maximum staleness.
    pub failing_since: Option<Timestamp>,
}

impl FetchInfo {
    /// A fetch at `fetched_at` of `version`, its refreshes not failing.
    pub fn new(version: Option<SecretVersion>, fetched_at: Timestamp) -> Self {
        FetchInfo {
            version,
            fetched_at,
            failing_since: None,
        }
    }

    /// The same, with refreshes failing since `since`.
    pub fn failing_since(mut self, since: Timestamp) -> Self {
        self.failing_since = Some(since);
        self
    }
}

impl fmt::Display for FetchInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(v) = &self.version {
            write!(f, "version {v}, ")?;
        }
        write!(f, "fetched at {} (Unix time)", self.fetched_at)?;
        if let Some(since) = self.failing_since {
            write!(f, ", refreshes failing since {since}")?;
        }
        Ok(())
    }
}

/// A referenced secret's current value, as an [`ExternalSecrets`] view
/// holds it. `Debug` redacts the value.
#[derive(Debug, Clone)]
pub struct ExternalValue {
    /// The value.
    pub value: SecretValue,
    /// Where and when it was fetched (shared: a view builds it once per
    /// fetch, and resolution hands it on without a copy).
    pub fetch: Arc<FetchInfo>,
}

/// A referenced secret's value borrowed from a [`SecretsGeneration`]: no
/// copy, no reference count. `Debug` redacts the value.
#[derive(Debug, Clone, Copy)]
pub struct ExternalValueRef<'a> {
    /// The value.
    pub value: &'a SecretValue,
    /// Where and when it was fetched.
    pub fetch: &'a Arc<FetchInfo>,
}

impl ExternalValueRef<'_> {
    /// The value, owned (two reference counts).
    pub fn to_owned_value(self) -> ExternalValue {
        ExternalValue {
            value: self.value.clone(),
            fetch: Arc::clone(self.fetch),
        }
    }
}

/// The answers of an [`ExternalSecrets`] view at one moment, immutable
/// ([`ExternalSecrets::pin`]): a resolution holds one and borrows every
/// referenced value from it, so one reference count covers all its values
/// and a later refresh of the view changes none of them.
pub trait SecretsGeneration: Send + Sync {
    /// What [`ExternalSecrets::lookup`] answered for `reference` when this
    /// generation was current, borrowed; `None` when the generation does
    /// not know the reference (never looked up before it was made): ask
    /// the view.
    fn get(&self, reference: &ExternalRef) -> Option<Result<ExternalValueRef<'_>, ExternalFault>>;
}

/// Why an [`ExternalSecrets`] view has no value to give for a reference.
/// Never holds the value, nor a store's credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExternalFault {
    /// The host gave resolution no external secret cache (see
    /// [`ResolvePolicy::with_external_secrets`](crate::model::ResolvePolicy::with_external_secrets)).
    #[error("no external secret cache is configured")]
    NoCache,
    /// The cache has no store of the reference's name.
    #[error("no secret store named {store} is configured")]
    UnknownStore {
        /// The store the reference names.
        store: StoreName,
    },
    /// The value has not been fetched yet; the cache is fetching it.
    #[error("not fetched yet (the first fetch is under way)")]
    NotFetched,
    /// The store has no secret at the path (or not that version).
    #[error("the store has no secret at this path (or not this version)")]
    NotFound,
    /// The secret has no such key.
    #[error("the secret has no such key")]
    KeyMissing,
    /// The store refused to let the cache read the path.
    #[error("the store denies reading this path")]
    PermissionDenied,
    /// The store refused the cache's own credentials (an expired or revoked
    /// token, a refused login).
    #[error("the store refused the cache's credentials ({message})")]
    Unauthenticated {
        /// What the store said, bounded and redacted.
        message: String,
    },
    /// The store could not be reached or did not answer in time, and no
    /// good value was fetched before.
    #[error("the store is unavailable ({message})")]
    Unavailable {
        /// What happened.
        message: String,
    },
    /// The store answered something unusable (a value that is not text, or
    /// too large; a reference this store cannot read).
    #[error("the store's answer is unusable ({message})")]
    Invalid {
        /// What is wrong.
        message: String,
    },
    /// The last good value is older than the cache's maximum staleness: the
    /// refreshes since have failed, for `cause`.
    #[error(
        "the last good value, fetched at {fetched_at} (Unix time), is older than the maximum staleness; refreshing fails: {cause}"
    )]
    Stale {
        /// When the last good value was fetched.
        fetched_at: Timestamp,
        /// Why the refreshes fail.
        cause: Box<ExternalFault>,
    },
}

impl ExternalFault {
    /// The fault behind a [`ExternalFault::Stale`] one (itself otherwise).
    pub fn root(&self) -> &ExternalFault {
        match self {
            ExternalFault::Stale { cause, .. } => cause.root(),
            other => other,
        }
    }

    /// Whether the fault says something about the secret itself (it is not
    /// there, has no such key, may not be read, is unusable), rather than
    /// about reaching the store: a cache drops the value at once for these,
    /// and serves the last good one for the others until the maximum
    /// staleness.
    pub fn is_definitive(&self) -> bool {
        matches!(
            self,
            ExternalFault::NotFound
                | ExternalFault::KeyMissing
                | ExternalFault::PermissionDenied
                | ExternalFault::Invalid { .. }
        )
    }
}

/// The read view resolution takes referenced secrets from: an in-memory
/// cache the host keeps fresh (the `external` module's `SecretCache`,
/// feature `external-secrets`, or the host's own).
///
/// **Resolution calls [`ExternalSecrets::lookup`] on its hot path**, once
/// per referenced value it resolves (a view that [pins](ExternalSecrets::pin)
/// its answers is asked once per resolution, then its generation per
/// value): it must answer from memory, without I/O and without waiting on
/// a lock (an atomic load and a hash lookup). A
/// reference it has no value for is reported as a
/// [`Problem`](crate::resolve::Problem) of the resolution naming the
/// reference and the [`ExternalFault`], never the value.
///
/// **Generation.** [`ExternalSecrets::generation`] changes whenever an
/// answer of `lookup` may have changed (a value fetched, refreshed or
/// dropped; a value passing its maximum staleness). A host or a layer that
/// memoizes resolutions keys them on the snapshot's revision *and* this
/// generation, read before resolving, so a memoized answer is never served
/// after a referenced value changed.
pub trait ExternalSecrets: Send + Sync {
    /// The current value of `reference`, or why there is none.
    fn lookup(&self, reference: &ExternalRef) -> Result<ExternalValue, ExternalFault>;

    /// A number that changes whenever an answer of
    /// [`ExternalSecrets::lookup`] may have changed.
    fn generation(&self) -> u64;

    /// The view's current answers as one immutable [`SecretsGeneration`],
    /// taken by a resolution at its first referenced value and held by its
    /// answer. `None` (the default): resolution calls
    /// [`ExternalSecrets::lookup`] for each value and keeps a copy.
    fn pin(&self) -> Option<Arc<dyn SecretsGeneration>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_read_back_what_they_write() {
        for text in [
            "vault:secret/crm#password",
            "vault:secret/crm/prod/db#user.name",
            "openbao:kv/team-a:crm/prod?version=12#api-key",
            "aws-sm:eu-west-1/prod/db#password",
            "vault:secret/a@b+c=d,e#k",
        ] {
            let r: ExternalRef = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
            let json = serde_json::to_string(&r).unwrap();
            let back: ExternalRef = serde_json::from_str(&json).unwrap();
            assert_eq!(back, r);
        }
        // A one-segment mount may also be written with a colon.
        let r: ExternalRef = "vault:secret:crm#k".parse().unwrap();
        assert_eq!(r.to_string(), "vault:secret/crm#k");
    }

    #[cfg(feature = "external-secrets")]
    #[test]
    fn a_reference_keeps_the_place_of_the_first_cache_that_attaches_and_copies_keep_it() {
        let r: ExternalRef = "vault:secret/crm#k".parse().unwrap();
        assert_eq!(r.cache_index(7), None);
        let mut made = 0;
        assert_eq!(
            r.cache_index_or_attach(7, || {
                made += 1;
                41
            }),
            Some(41)
        );
        assert_eq!(r.cache_index_or_attach(7, || unreachable!("attached")), Some(41));
        assert_eq!(made, 1);
        assert_eq!(r.cache_index(7), Some(41));
        // Another cache reads nothing of it, and cannot attach.
        assert_eq!(r.cache_index(8), None);
        assert_eq!(r.cache_index_or_attach(8, || unreachable!("taken")), None);
        assert_eq!(r.clone().cache_index(7), Some(41), "a copy keeps the place");
        // A number or a place beyond 32 bits is never attached (nor matched).
        let wide: ExternalRef = "vault:secret/crm#k".parse().unwrap();
        assert_eq!(wide.cache_index_or_attach(1 << 32, || 3), None);
        assert_eq!(wide.cache_index_or_attach(0, || 3), None);
        assert_eq!(wide.cache_index_or_attach(9, || 1 << 32), None);
        assert_eq!(wide.cache_index(9), None);
        assert_eq!(
            wide.cache_index_or_attach(9, || u32::MAX as usize),
            Some(u32::MAX as usize)
        );
        assert_eq!(wide.cache_index(9), Some(u32::MAX as usize));
        assert_eq!(wide.cache_index(1 << 32 | 9), None);
    }

    #[test]
    fn malformed_references_are_refused_without_repeating_them() {
        for (text, part) in [
            ("secret/crm#k", RefPart::Store),
            ("Vault:secret/crm#k", RefPart::Store),
            ("vault:secret/crm", RefPart::Key),
            ("vault:secret/crm#", RefPart::Key),
            ("vault:secret#k", RefPart::Path),
            ("vault:secret/#k", RefPart::Path),
            ("vault:/crm#k", RefPart::Mount),
            ("vault:secret/../crm#k", RefPart::Path),
            ("vault:secret/a//b#k", RefPart::Path),
            ("vault:secret/hunter 2#k", RefPart::Path),
            ("vault:secret/crm#pass word", RefPart::Key),
            ("vault:secret/crm?v=1#k", RefPart::Version),
            ("vault:secret/crm?version=#k", RefPart::Version),
            ("vault:secret/crm#k#l", RefPart::Key),
        ] {
            let err = text.parse::<ExternalRef>().unwrap_err();
            assert_eq!(err.part, part, "{text}: {err}");
            assert!(!err.to_string().contains("hunter"), "{err}");
        }
        let long = format!("vault:secret/{}#k", "a".repeat(MAX_PATH + 1));
        assert_eq!(long.parse::<ExternalRef>().unwrap_err().part, RefPart::Path);
    }

    #[test]
    fn entries_serialize_stored_values_through_the_codec_and_references_as_text() {
        use crate::model::{PlaintextCodec, with_secret_codec};
        use std::sync::Arc;
        let stored = SecretEntry::Stored(SecretValue::new("s3cret"));
        let external = SecretEntry::from("vault:secret/crm#password".parse::<ExternalRef>().unwrap());
        // A reference needs no codec: it is not secret.
        assert_eq!(
            serde_json::to_value(&external).unwrap(),
            serde_json::json!({"external": "vault:secret/crm#password"})
        );
        assert!(serde_json::to_string(&stored).is_err());
        let json = with_secret_codec(Arc::new(PlaintextCodec), || {
            serde_json::to_string(&[&stored, &external]).unwrap()
        });
        assert_eq!(json, r#"["s3cret",{"external":"vault:secret/crm#password"}]"#);
        let back: Vec<SecretEntry> =
            with_secret_codec(Arc::new(PlaintextCodec), || serde_json::from_str(&json).unwrap());
        assert!(back[0].same_as(&stored) && back[1].same_as(&external));
        assert!(!back[0].same_as(&back[1]));
        // The reference is checked on the way in (rule 12).
        for bad in [r#"{"external":"vault:secret"}"#, r#"{"other":1}"#, r#"{}"#, "3"] {
            assert!(serde_json::from_str::<SecretEntry>(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{stored:?}"), "Stored([REDACTED])");
        assert_eq!(format!("{external:?}"), "External(vault:secret/crm#password)");
    }

    #[test]
    fn a_stale_fault_names_its_cause() {
        let fault = ExternalFault::Stale {
            fetched_at: Timestamp(1_000),
            cause: Box::new(ExternalFault::Unavailable {
                message: "cannot connect".into(),
            }),
        };
        assert!(matches!(fault.root(), ExternalFault::Unavailable { .. }));
        assert!(fault.to_string().contains("cannot connect"), "{fault}");
        assert!(!fault.is_definitive());
        assert!(ExternalFault::NotFound.is_definitive());
    }
}
