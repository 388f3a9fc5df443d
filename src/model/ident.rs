//! Validated identifiers: parsed once, valid forever after.
//!
//! Every identifier of the public API is one of these newtypes. Each is cheap to
//! clone (short ones inline, copied without touching a shared counter; longer
//! ones shared, a clone takes a reference), compares and hashes as its text, and can only be
//! made through [`FromStr`], [`TryFrom<&str>`] or [`TryFrom<String>`], which check
//! the rules stated on the type and return a [`ParseError`] naming the rule broken.
//!
//! The identifiers every connection carries (its project, integration, name,
//! parameter names, and the environments and customers of its overrides) are
//! 16 bytes, inline up to 15 bytes (memory per connection is a performance
//! target); the others, variable names and actors above all, which are
//! often longer and are cloned into every answer and audit entry, are 24
//! bytes, inline up to 23.

use std::borrow::Borrow;
use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

use ecow::EcoString;
use smol_str::SmolStr;

/// Which kind of identifier a [`ParseError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentKind {
    /// [`ProjectId`].
    Project,
    /// [`IntegrationId`].
    Integration,
    /// [`ConnectionName`].
    ConnectionName,
    /// [`ConnectionId`].
    ConnectionId,
    /// [`ParamName`].
    ParamName,
    /// [`EnvVarName`].
    EnvVarName,
    /// [`Environment`].
    Environment,
    /// [`CustomerId`].
    Customer,
    /// [`StoreName`].
    StoreName,
    /// [`SecretVersion`].
    SecretVersion,
    /// [`TypeName`].
    TypeName,
    /// [`TemplateName`].
    TemplateName,
    /// [`ActorId`].
    Actor,
}

impl fmt::Display for IdentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentKind::Project => "project id",
            IdentKind::Integration => "integration id",
            IdentKind::ConnectionName => "connection name",
            IdentKind::ConnectionId => "connection id",
            IdentKind::ParamName => "parameter name",
            IdentKind::EnvVarName => "environment variable name",
            IdentKind::Environment => "environment",
            IdentKind::Customer => "customer id",
            IdentKind::StoreName => "secret store name",
            IdentKind::SecretVersion => "secret version",
            IdentKind::TypeName => "connection type name",
            IdentKind::TemplateName => "template name",
            IdentKind::Actor => "actor id",
        })
    }
}

/// Why a text is not a valid identifier.
///
/// The offending input is quoted (shortened to 64 characters); identifiers are
/// never secret.
///
/// ```
/// use connective::model::{ParseError, ProjectId};
/// let err = "acme corp".parse::<ProjectId>().unwrap_err();
/// assert!(matches!(err, ParseError::BadChar { position: 4, found: ' ', .. }));
/// assert_eq!(
///     err.to_string(),
///     "invalid project id \"acme corp\": character ' ' at position 4 is not allowed \
///      (letters, digits, '-', '_' and '.'; starting with a letter or digit)"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The text is empty.
    #[error("invalid {kind}: must not be empty")]
    Empty {
        /// Which identifier.
        kind: IdentKind,
    },
    /// The text is longer than the identifier allows.
    #[error("invalid {kind} {input:?}: {len} characters, at most {max} allowed")]
    TooLong {
        /// Which identifier.
        kind: IdentKind,
        /// The input, shortened.
        input: String,
        /// Its length in characters.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// A character is not allowed where it stands.
    #[error("invalid {kind} {input:?}: character {found:?} at position {position} is not allowed ({rule})")]
    BadChar {
        /// Which identifier.
        kind: IdentKind,
        /// The input, shortened.
        input: String,
        /// The character found.
        found: char,
        /// Its position, counted in characters from 0.
        position: usize,
        /// The rule, in words.
        rule: &'static str,
    },
    /// The identifier is well formed but reserved (e.g. a variable name the host
    /// reserves, see [`crate::model::ReservedNames`]).
    #[error("invalid {kind} {input:?}: reserved ({reason})")]
    Reserved {
        /// Which identifier.
        kind: IdentKind,
        /// The input, shortened.
        input: String,
        /// Why it is reserved.
        reason: String,
    },
}

impl ParseError {
    /// The kind of identifier that failed to parse.
    pub fn kind(&self) -> IdentKind {
        match self {
            ParseError::Empty { kind }
            | ParseError::TooLong { kind, .. }
            | ParseError::BadChar { kind, .. }
            | ParseError::Reserved { kind, .. } => *kind,
        }
    }
}

impl From<Infallible> for ParseError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

/// Shortens text quoted in a message to 64 characters (an identifier that
/// failed to parse, a value in a plan).
pub(crate) fn shorten(input: &str) -> String {
    const MAX: usize = 64;
    match input.char_indices().nth(MAX) {
        None => input.to_owned(),
        Some((cut, _)) => format!("{}…", &input[..cut]),
    }
}

/// A character rule: which characters are allowed first and after.
struct Rule {
    kind: IdentKind,
    max: usize,
    first: fn(char) -> bool,
    rest: fn(char) -> bool,
    words: &'static str,
}

impl Rule {
    /// Whether `input` may be this identifier, and if not why. Inlined into
    /// each identifier's `parse`, where the rule is a constant: an accepted
    /// input (every character ASCII, so one byte each) is checked byte by
    /// byte with the rule's own tests; anything else by [`Rule::refuse`].
    #[inline]
    fn check(&self, input: &str) -> Result<(), ParseError> {
        let accepted = match input.as_bytes() {
            [first, rest @ ..] => {
                input.len() <= self.max
                    && first.is_ascii()
                    && (self.first)(char::from(*first))
                    && rest.iter().all(|&b| b.is_ascii() && (self.rest)(char::from(b)))
            }
            [] => false,
        };
        if accepted { Ok(()) } else { self.refuse(input) }
    }

    /// [`Rule::check`] character by character, naming what is wrong.
    #[cold]
    fn refuse(&self, input: &str) -> Result<(), ParseError> {
        if input.is_empty() {
            return Err(ParseError::Empty { kind: self.kind });
        }
        for (position, ch) in input.chars().enumerate() {
            let ok = if position == 0 {
                (self.first)(ch)
            } else {
                (self.rest)(ch)
            };
            if !ok {
                return Err(ParseError::BadChar {
                    kind: self.kind,
                    input: shorten(input),
                    found: ch,
                    position,
                    rule: self.words,
                });
            }
        }
        // All allowed characters are ASCII, so bytes == characters here.
        if input.len() > self.max {
            return Err(ParseError::TooLong {
                kind: self.kind,
                input: shorten(input),
                len: input.len(),
                max: self.max,
            });
        }
        Ok(())
    }
}

fn slug_rest(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}
fn name_rest(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_')
}
fn env_rest(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_')
}
fn var_first(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn var_rest(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

const SLUG: &str = "letters, digits, '-', '_' and '.'; starting with a letter or digit";
const NAME: &str = "letters, digits, '-' and '_'; starting with a letter";
const ENV: &str = "lower-case letters, digits, '-' and '_'; starting with a lower-case letter";
const VAR: &str = "letters, digits and '_'; not starting with a digit";
const STORE: &str = "lower-case letters, digits, '+', '-' and '.'; starting with a lower-case letter";
fn store_rest(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
}
const ACTOR: &str = "letters, digits and '-', '_', '.', '@', '+', ':', '/'; starting with a letter or digit";

fn actor_rest(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+' | ':' | '/')
}

macro_rules! ident {
    (
        $(#[$meta:meta])*
        $name:ident, $kind:expr, $max:expr, $first:expr, $rest:expr, $words:expr, $text:ident
    ) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name($text);

        impl $name {
            const RULE: Rule = Rule {
                kind: $kind,
                max: $max,
                first: $first,
                rest: $rest,
                words: $words,
            };

            /// The most characters this identifier may have.
            pub const MAX_LEN: usize = $max;

            /// Parses and validates `input`.
            pub fn parse(input: &str) -> Result<Self, ParseError> {
                Self::RULE.check(input)?;
                Ok(Self($text::from(input)))
            }

            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ParseError;
            fn try_from(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl TryFrom<&String> for $name {
            type Error = ParseError;
            fn try_from(s: &String) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, ParseError> {
                Self::parse(&s)
            }
        }

        impl From<&$name> for $name {
            fn from(s: &$name) -> Self {
                s.clone()
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                crate::model::de::from_str(d, Self::parse)
            }
        }
    };
}

ident!(
    /// A project: a group of integrations owned together.
    ///
    /// 1 to 64 characters: ASCII letters, digits, `-`, `_` and `.`, starting
    /// with a letter or digit.
    ///
    /// ```
    /// use connective::model::ProjectId;
    /// let p: ProjectId = "acme-crm".parse()?;
    /// assert_eq!(p.as_str(), "acme-crm");
    /// assert!("-acme".parse::<ProjectId>().is_err());
    /// # Ok::<(), connective::model::ParseError>(())
    /// ```
    ProjectId, IdentKind::Project, 64, |c| c.is_ascii_alphanumeric(), slug_rest, SLUG, EcoString
);

ident!(
    /// An integration: one deployable unit inside a project.
    ///
    /// Same rules as [`ProjectId`].
    ///
    /// ```
    /// use connective::model::IntegrationId;
    /// assert!("order-sync".parse::<IntegrationId>().is_ok());
    /// ```
    IntegrationId, IdentKind::Integration, 64, |c| c.is_ascii_alphanumeric(), slug_rest, SLUG, EcoString
);

ident!(
    /// An end customer of a multi-tenant host platform.
    ///
    /// Same rules as [`ProjectId`].
    ///
    /// ```
    /// use connective::model::CustomerId;
    /// assert!("customer.42".parse::<CustomerId>().is_ok());
    /// ```
    CustomerId, IdentKind::Customer, 64, |c| c.is_ascii_alphanumeric(), slug_rest, SLUG, EcoString
);

ident!(
    /// A connection's name, unique per scope: 1 to 64 ASCII letters, digits, `-`
    /// and `_`, starting with a letter.
    ///
    /// ```
    /// use connective::model::ConnectionName;
    /// assert!("twilio".parse::<ConnectionName>().is_ok());
    /// assert!("2fa".parse::<ConnectionName>().is_err());
    /// ```
    ConnectionName, IdentKind::ConnectionName, 64, |c| c.is_ascii_alphabetic(), name_rest, NAME, EcoString
);

ident!(
    /// A connection type's name (`slack-oauth2`, `postgresql`, ...): same
    /// rules as [`ConnectionName`].
    ///
    /// ```
    /// use connective::model::TypeName;
    /// assert!("slack-oauth2".parse::<TypeName>().is_ok());
    /// assert!("slack oauth".parse::<TypeName>().is_err());
    /// ```
    TypeName, IdentKind::TypeName, 64, |c| c.is_ascii_alphabetic(), name_rest, NAME, EcoString
);

ident!(
    /// A connection template's name, unique in its project: same rules as
    /// [`ConnectionName`].
    ///
    /// ```
    /// use connective::model::TemplateName;
    /// assert!("acme-slack".parse::<TemplateName>().is_ok());
    /// ```
    TemplateName, IdentKind::TemplateName, 64, |c| c.is_ascii_alphabetic(), name_rest, NAME, EcoString
);

ident!(
    /// Who asked for a write or a read, as the host names it (a user, a
    /// service account): 1 to 128 ASCII letters, digits and `-`, `_`, `.`,
    /// `@`, `+`, `:`, `/`, starting with a letter or digit, so an e-mail
    /// address or a `service:deployer` name fits. Recorded in the audit trail.
    ///
    /// ```
    /// use connective::model::ActorId;
    /// assert!("alice@acme.example".parse::<ActorId>().is_ok());
    /// assert!("service:deployer".parse::<ActorId>().is_ok());
    /// assert!("alice smith".parse::<ActorId>().is_err());
    /// ```
    ActorId, IdentKind::Actor, 128, |c| c.is_ascii_alphanumeric(), actor_rest, ACTOR, SmolStr
);

ident!(
    /// A parameter's name within a connection (`ServiceURL`, `ConsumerKey`, ...):
    /// same rules as [`ConnectionName`].
    ///
    /// ```
    /// use connective::model::ParamName;
    /// assert!("ServiceURL".parse::<ParamName>().is_ok());
    /// ```
    ParamName, IdentKind::ParamName, 64, |c| c.is_ascii_alphabetic(), name_rest, NAME, EcoString
);

ident!(
    /// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 255
    /// characters.
    ///
    /// Names the host reserves are checked by
    /// [`ReservedNames`](crate::model::ReservedNames), not here.
    ///
    /// ```
    /// use connective::model::EnvVarName;
    /// assert!("TWILIO_API_KEY".parse::<EnvVarName>().is_ok());
    /// assert!("1PASSWORD".parse::<EnvVarName>().is_err());
    /// ```
    EnvVarName, IdentKind::EnvVarName, 255, var_first, var_rest, VAR, SmolStr
);

ident!(
    /// A deployment stage: `development`, `production`, `test`, ...
    ///
    /// 1 to 32 lower-case ASCII letters, digits, `-` and `_`, starting with a
    /// letter.
    ///
    /// ```
    /// use connective::model::Environment;
    /// assert_eq!(Environment::production().as_str(), "production");
    /// assert!("Prod".parse::<Environment>().is_err());
    /// ```
    Environment, IdentKind::Environment, 32, |c| c.is_ascii_lowercase(), env_rest, ENV, EcoString
);

ident!(
    /// The name under which a host configures an external secret store
    /// (`vault`, `openbao`, or a name of its own for a cloud secret manager):
    /// the scheme of an [`ExternalRef`](crate::model::ExternalRef).
    ///
    /// 1 to 32 lower-case ASCII letters, digits, `+`, `-` and `.`, starting
    /// with a letter (a URI scheme in lower case).
    ///
    /// ```
    /// use connective::model::StoreName;
    /// assert_eq!(StoreName::vault().as_str(), "vault");
    /// assert!("aws-sm".parse::<StoreName>().is_ok());
    /// assert!("Vault".parse::<StoreName>().is_err());
    /// ```
    StoreName, IdentKind::StoreName, 32, |c| c.is_ascii_lowercase(), store_rest, STORE, SmolStr
);

impl StoreName {
    /// `vault`: HashiCorp Vault's KV version 2.
    pub fn vault() -> Self {
        Self(SmolStr::new_static("vault"))
    }
    /// `openbao`: OpenBao's KV version 2.
    pub fn openbao() -> Self {
        Self(SmolStr::new_static("openbao"))
    }
}

ident!(
    /// A version of a secret in an external store, as the store names it
    /// (KV version 2 counts from 1; other stores use other names).
    ///
    /// 1 to 64 ASCII letters, digits, `-`, `_` and `.`, starting with a letter
    /// or digit.
    ///
    /// ```
    /// use connective::model::SecretVersion;
    /// assert!("3".parse::<SecretVersion>().is_ok());
    /// assert!("".parse::<SecretVersion>().is_err());
    /// ```
    SecretVersion, IdentKind::SecretVersion, 64, |c| c.is_ascii_alphanumeric(), slug_rest, SLUG, SmolStr
);

impl Environment {
    /// `development`.
    pub fn development() -> Self {
        Self(EcoString::inline("development"))
    }
    /// `production`.
    pub fn production() -> Self {
        Self(EcoString::inline("production"))
    }
    /// `test`: where Prismatic-style test credentials live.
    pub fn test() -> Self {
        Self(EcoString::inline("test"))
    }
}

impl EnvVarName {
    /// The default variable name for a parameter of a connection referenced
    /// without an explicit mapping: `PREFIX_CONNECTION_PARAM`, upper-cased, with
    /// `-` turned into `_` (no prefix: `CONNECTION_PARAM`).
    ///
    /// ```
    /// use connective::model::{EnvVarName, ConnectionName, ParamName};
    /// let prefix: EnvVarName = "CHOREO".parse()?;
    /// let name = EnvVarName::default_for(
    ///     Some(&prefix),
    ///     &"legacy-crm".parse::<ConnectionName>()?,
    ///     &"ServiceURL".parse::<ParamName>()?,
    /// );
    /// assert_eq!(name.as_str(), "CHOREO_LEGACY_CRM_SERVICEURL");
    /// # Ok::<(), connective::model::ParseError>(())
    /// ```
    pub fn default_for(
        prefix: Option<&EnvVarName>,
        connection: &ConnectionName,
        param: &ParamName,
    ) -> EnvVarName {
        let mut out = String::with_capacity(
            prefix.map_or(0, |p| p.0.len() + 1) + connection.0.len() + param.0.len() + 1,
        );
        if let Some(prefix) = prefix {
            out.push_str(&prefix.0);
            out.push('_');
        }
        for part in [&*connection.0, "_", &*param.0] {
            out.extend(part.chars().map(|c| match c {
                '-' => '_',
                c => c.to_ascii_uppercase(),
            }));
        }
        // A valid prefix, connection name and parameter name always make a valid
        // variable name: every character is [A-Z0-9_] and the first is a letter
        // or '_'. Only the length can exceed the limit; shorten deterministically.
        out.truncate(Self::MAX_LEN);
        EnvVarName(SmolStr::from(out))
    }
}

/// A connection's ID: stable, opaque, assigned by the registry on creation, local
/// to one registry. Its text form is a lower-case UUID (version 4).
///
/// ```
/// use connective::model::ConnectionId;
/// let id: ConnectionId = "0f6b8c1e-4d2a-4f3b-9a57-1c2d3e4f5a6b".parse()?;
/// assert_eq!(id.to_string(), "0f6b8c1e-4d2a-4f3b-9a57-1c2d3e4f5a6b");
/// assert!("twilio".parse::<ConnectionId>().is_err());
/// # Ok::<(), connective::model::ParseError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(u128);

impl ConnectionId {
    const RULE: &'static str = "a lower-case UUID: 8-4-4-4-12 hexadecimal digits";

    /// A new random ID (UUID version 4, from the operating system's generator).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        crate::model::random::fill(&mut bytes);
        let mut v = u128::from_be_bytes(bytes);
        // version 4, variant 10xx
        v = (v & !(0xf << 76)) | (0x4 << 76);
        v = (v & !(0x3 << 62)) | (0x2 << 62);
        ConnectionId(v)
    }

    /// Parses the UUID text form.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        // Lower-case hexadecimal digits and dashes where they belong, read
        // byte by byte; anything else is refused by `refuse`, which says why.
        let Ok(bytes) = <&[u8; 36]>::try_from(input.as_bytes()) else {
            return Self::refuse(input);
        };
        let mut value: u128 = 0;
        for (position, &b) in bytes.iter().enumerate() {
            let digit = match b {
                b'-' if matches!(position, 8 | 13 | 18 | 23) => continue,
                b'0'..=b'9' if !matches!(position, 8 | 13 | 18 | 23) => b - b'0',
                b'a'..=b'f' if !matches!(position, 8 | 13 | 18 | 23) => b - b'a' + 10,
                _ => return Self::refuse(input),
            };
            value = (value << 4) | u128::from(digit);
        }
        Ok(ConnectionId(value))
    }

    /// [`ConnectionId::parse`] character by character, naming what is
    /// wrong (and the value when nothing is).
    #[cold]
    fn refuse(input: &str) -> Result<Self, ParseError> {
        let kind = IdentKind::ConnectionId;
        if input.is_empty() {
            return Err(ParseError::Empty { kind });
        }
        let mut value: u128 = 0;
        let mut count = 0usize;
        for (position, ch) in input.chars().enumerate() {
            let dash = matches!(position, 8 | 13 | 18 | 23);
            let ok = if dash {
                ch == '-'
            } else {
                ch.is_ascii_digit() || ('a'..='f').contains(&ch)
            };
            if !ok || position >= 36 {
                if position >= 36 {
                    return Err(ParseError::TooLong {
                        kind,
                        input: shorten(input),
                        len: input.chars().count(),
                        max: 36,
                    });
                }
                return Err(ParseError::BadChar {
                    kind,
                    input: shorten(input),
                    found: ch,
                    position,
                    rule: Self::RULE,
                });
            }
            if !dash {
                value = (value << 4) | u128::from(ch.to_digit(16).unwrap_or(0));
            }
            count = position + 1;
        }
        if count != 36 {
            return Err(ParseError::BadChar {
                kind,
                input: shorten(input),
                found: '\u{0}',
                position: count,
                rule: "a lower-case UUID: 36 characters, 8-4-4-4-12 hexadecimal digits (input ends early)",
            });
        }
        Ok(ConnectionId(value))
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            (v >> 96) as u32,
            (v >> 80) as u16,
            (v >> 64) as u16,
            (v >> 48) as u16,
            v & 0xffff_ffff_ffff
        )
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectionId({self})")
    }
}

impl FromStr for ConnectionId {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}

impl TryFrom<&str> for ConnectionId {
    type Error = ParseError;
    fn try_from(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ConnectionId {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl serde::Serialize for ConnectionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ConnectionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::model::de::from_str(d, Self::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text near the rules' edges: their characters and a few others
    /// (non-ASCII among them), up to past the longest limit.
    fn near_identifiers() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::string::string_regex("[a-zA-Z0-9_.+@:/ é\u{1F600}-]{0,70}|[a-z]{60,260}").expect("regex")
    }

    proptest::proptest! {
        /// Every identifier's byte-wise check accepts and refuses exactly
        /// what the character-wise one does, with the same error.
        #[test]
        fn identifier_checks_agree_with_the_character_rules(input in near_identifiers()) {
            for rule in [
                ProjectId::RULE,
                IntegrationId::RULE,
                CustomerId::RULE,
                ConnectionName::RULE,
                TypeName::RULE,
                TemplateName::RULE,
                ActorId::RULE,
                ParamName::RULE,
                EnvVarName::RULE,
                Environment::RULE,
                StoreName::RULE,
                SecretVersion::RULE,
            ] {
                proptest::prop_assert_eq!(rule.check(&input), rule.refuse(&input));
            }
        }

        /// A connection ID read byte by byte is what the character-wise
        /// reading gives, for UUIDs and for every one-character change of one
        /// (another digit, a capital, a dash moved, a character more or less).
        #[test]
        fn connection_ids_parse_as_the_character_rules_say(
            id in proptest::num::u128::ANY,
            at in 0usize..37,
            ch in proptest::char::any(),
            cut in proptest::bool::ANY,
        ) {
            let text = ConnectionId(id).to_string();
            proptest::prop_assert_eq!(ConnectionId::parse(&text), Ok(ConnectionId(id)));
            proptest::prop_assert_eq!(ConnectionId::parse(&text), ConnectionId::refuse(&text));
            let mut changed: Vec<char> = text.chars().collect();
            if cut && at < changed.len() {
                changed.remove(at);
            } else if at < changed.len() {
                changed[at] = ch;
            } else {
                changed.push(ch);
            }
            for changed in [changed.iter().collect::<String>(), changed.iter().collect::<String>().to_uppercase()] {
                proptest::prop_assert_eq!(ConnectionId::parse(&changed), ConnectionId::refuse(&changed));
            }
        }
    }

    #[test]
    fn connection_id_round_trips_and_is_v4() {
        for _ in 0..100 {
            let id = ConnectionId::random();
            let text = id.to_string();
            assert_eq!(text.len(), 36);
            assert_eq!(&text[14..15], "4");
            assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
            assert_eq!(text.parse::<ConnectionId>().unwrap(), id);
        }
    }

    #[test]
    fn connection_id_rejects_upper_case_and_short_input() {
        let err = "0F6B8C1E-4d2a-4f3b-9a57-1c2d3e4f5a6b"
            .parse::<ConnectionId>()
            .unwrap_err();
        assert!(matches!(err, ParseError::BadChar { position: 1, .. }));
        let err = "0f6b8c1e-4d2a".parse::<ConnectionId>().unwrap_err();
        assert!(matches!(err, ParseError::BadChar { position: 13, .. }));
        let err = "0f6b8c1e-4d2a-4f3b-9a57-1c2d3e4f5a6b0"
            .parse::<ConnectionId>()
            .unwrap_err();
        assert!(matches!(err, ParseError::TooLong { max: 36, .. }));
    }

    #[test]
    fn too_long_and_non_ascii_inputs_are_rejected_without_panicking() {
        let long = "a".repeat(65);
        assert!(matches!(
            ProjectId::parse(&long),
            Err(ParseError::TooLong { len: 65, max: 64, .. })
        ));
        let err = ProjectId::parse("caf\u{e9}").unwrap_err();
        assert!(matches!(
            err,
            ParseError::BadChar {
                found: '\u{e9}',
                position: 3,
                ..
            }
        ));
        let err = ProjectId::parse(&"\u{e9}".repeat(200)).unwrap_err();
        assert!(err.to_string().len() < 400);
    }

    #[test]
    fn default_variable_names_follow_the_platform_rule() {
        let c: ConnectionName = "my-db".parse().unwrap();
        let p: ParamName = "HostName".parse().unwrap();
        assert_eq!(EnvVarName::default_for(None, &c, &p).as_str(), "MY_DB_HOSTNAME");
        let long: ConnectionName = format!("c{}", "x".repeat(63)).parse().unwrap();
        let prefix: EnvVarName = "P".repeat(255).parse().unwrap();
        let name = EnvVarName::default_for(Some(&prefix), &long, &p);
        assert_eq!(name.as_str().len(), 255);
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let ok: ProjectId = serde_json::from_str("\"acme\"").unwrap();
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"acme\"");
        assert!(serde_json::from_str::<ProjectId>("\"bad id\"").is_err());
    }
}
