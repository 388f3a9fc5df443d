//! The host's resolution settings: variable prefix and reserved names.

use std::fmt;

use super::ident::{EnvVarName, IdentKind, ParseError};

/// Environment variable names the host reserves (rule 4): exact names and name
/// prefixes. Matching is exact-case, as environments are.
///
/// The default reserves what a process needs from its own environment:
/// `PATH`, `HOME`, `USER`, `SHELL`, `PWD`, `HOSTNAME`, `LANG`, `TERM`,
/// `TMPDIR`, `IFS`, `LD_*`, `DYLD_*` and `LC_*`.
///
/// ```
/// use connective::model::{EnvVarName, ReservedNames};
/// let reserved = ReservedNames::default().with_name("PORT".parse()?);
/// assert!(reserved.check(&"LD_PRELOAD".parse()?).is_err());
/// assert!(reserved.check(&"PORT".parse()?).is_err());
/// assert!(reserved.check(&"TWILIO_URL".parse()?).is_ok());
/// # Ok::<(), connective::model::ParseError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ReservedNames {
    names: Vec<EnvVarName>,
    prefixes: Vec<String>,
    /// The length of the longest reserved name: a longer variable skips the
    /// comparisons (derived from `names`).
    longest: usize,
}

impl Default for ReservedNames {
    fn default() -> Self {
        let names = [
            "PATH", "HOME", "USER", "SHELL", "PWD", "HOSTNAME", "LANG", "TERM", "TMPDIR", "IFS",
        ];
        let names: Vec<EnvVarName> = names.iter().filter_map(|n| n.parse().ok()).collect();
        ReservedNames {
            longest: names.iter().map(|n| n.as_str().len()).max().unwrap_or(0),
            names,
            prefixes: vec!["LD_".into(), "DYLD_".into(), "LC_".into()],
        }
    }
}

impl ReservedNames {
    /// Nothing reserved.
    pub fn none() -> Self {
        ReservedNames {
            names: Vec::new(),
            prefixes: Vec::new(),
            longest: 0,
        }
    }

    /// Also reserves `name`.
    pub fn with_name(mut self, name: EnvVarName) -> Self {
        if !self.names.contains(&name) {
            self.longest = self.longest.max(name.as_str().len());
            self.names.push(name);
        }
        self
    }

    /// Also reserves every name starting with `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        if !self.prefixes.contains(&prefix) {
            self.prefixes.push(prefix);
        }
        self
    }

    /// Refuses a reserved name with [`ParseError::Reserved`].
    pub fn check(&self, name: &EnvVarName) -> Result<(), ParseError> {
        // Called for every resolved variable: lengths and first bytes rule
        // most names out before any bytes are compared in bulk.
        let text = name.as_str();
        let reason = if text.len() <= self.longest && self.names.iter().any(|n| n == name) {
            "the host reserves this name".to_string()
        } else if let Some(p) = self.prefixes.iter().find(|p| {
            p.as_bytes()
                .first()
                .is_none_or(|b| text.as_bytes().first() == Some(b))
                && text.starts_with(p.as_str())
        }) {
            format!("the host reserves names starting with {p}")
        } else {
            return Ok(());
        };
        Err(ParseError::Reserved {
            kind: IdentKind::EnvVarName,
            input: name.to_string(),
            reason,
        })
    }
}

impl fmt::Debug for ReservedNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReservedNames")
            .field(
                "names",
                &self.names.iter().map(EnvVarName::as_str).collect::<Vec<_>>(),
            )
            .field("prefixes", &self.prefixes)
            .finish()
    }
}

/// How a host turns connections into variables: the default-name prefix and
/// the reserved names.
///
/// ```
/// use connective::model::ResolvePolicy;
/// let policy = ResolvePolicy::default().with_prefix("CHOREO".parse()?);
/// assert_eq!(policy.prefix().unwrap().as_str(), "CHOREO");
/// # Ok::<(), connective::model::ParseError>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvePolicy {
    prefix: Option<EnvVarName>,
    reserved: ReservedNames,
}

impl ResolvePolicy {
    /// Sets the prefix of default variable names (`PREFIX_CONNECTION_PARAM`).
    pub fn with_prefix(mut self, prefix: EnvVarName) -> Self {
        self.prefix = Some(prefix);
        self
    }
    /// Replaces the reserved names.
    pub fn with_reserved(mut self, reserved: ReservedNames) -> Self {
        self.reserved = reserved;
        self
    }
    /// The prefix.
    pub fn prefix(&self) -> Option<&EnvVarName> {
        self.prefix.as_ref()
    }
    /// The reserved names.
    pub fn reserved(&self) -> &ReservedNames {
        &self.reserved
    }
}
