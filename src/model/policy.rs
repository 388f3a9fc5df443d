//! The host's resolution settings: variable prefix and reserved names.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, LazyLock};

use hashbrown::{DefaultHashBuilder, HashTable};

use super::external::ExternalSecrets;
use super::ident::{EnvVarName, IdentKind, ParseError};
use super::types::TypeLibrary;

/// Environment variable names the host reserves (rule 4): exact names and name
/// prefixes. Matching is exact-case, as environments are.
///
/// The default reserves three kinds of names:
/// - what a process needs from its own environment: [`ReservedNames::PROCESS`]
///   (`PATH`, `HOME`, ...) and names starting with `LD_`, `DYLD_` or `LC_`;
/// - what bash refuses, ignores or changes when a `.env` file is sourced
///   into it: [`ReservedNames::SHELL`] (`UID`, `RANDOM`, `SECONDS`, `_`, ...) and
///   names starting with `BASH_`;
/// - what makes a shell or an interpreter run code or load it from
///   elsewhere: [`ReservedNames::CODE`] (`BASH_ENV`, `ENV`, `PROMPT_COMMAND`,
///   `NODE_OPTIONS`, `PYTHONSTARTUP`, `PERL5OPT`, ...).
///
/// ```
/// use connective::model::{EnvVarName, ReservedNames};
/// let reserved = ReservedNames::default().with_name("PORT".parse()?);
/// assert!(reserved.check(&"LD_PRELOAD".parse()?).is_err());
/// assert!(reserved.check(&"NODE_OPTIONS".parse()?).is_err());
/// assert!(reserved.check(&"PORT".parse()?).is_err());
/// assert!(reserved.check(&"TWILIO_URL".parse()?).is_ok());
/// # Ok::<(), connective::model::ParseError>(())
/// ```
#[derive(Clone)]
pub struct ReservedNames {
    names: Vec<(EnvVarName, Why)>,
    prefixes: Vec<(String, Why)>,
    /// The first bytes of `prefixes`, a bit each (derived from `prefixes`;
    /// every bit for an empty prefix): most names start with none of them,
    /// and their check skips the prefixes.
    prefix_starts: [u64; 4],
    /// Positions in `names` by name (derived from `names`): the check runs
    /// for every resolved variable, and a scan of the default list costs
    /// more than the rest of the variable's resolution.
    /// Hashed by [`env_name_hash`], the hash resolution computes once per
    /// variable for its own index too.
    index: HashTable<usize>,
}

/// The hasher of variable names (foldhash, seeded at random once per
/// process).
static ENV_NAME_HASHER: LazyLock<DefaultHashBuilder> = LazyLock::new(Default::default);

/// The hash of a variable's name that [`ReservedNames`] indexes by: one
/// hasher for the whole process, so resolution hashes a name once for the
/// reserved-name check and for its answer's index.
pub(crate) fn env_name_hash(name: &str) -> u64 {
    ENV_NAME_HASHER.hash_one(name)
}

impl PartialEq for ReservedNames {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names && self.prefixes == other.prefixes
    }
}

impl Eq for ReservedNames {}

/// Why a name is reserved, for the error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Host,
    Shell,
    Code,
}

impl Why {
    fn name(self) -> &'static str {
        match self {
            Why::Host => "the host reserves this name",
            Why::Shell => "bash treats this name as special (read-only, or it changes the value)",
            Why::Code => "this name makes a shell or an interpreter run or load code",
        }
    }

    fn prefix(self, prefix: &str) -> String {
        match self {
            Why::Host => format!("the host reserves names starting with {prefix}"),
            Why::Shell => format!("bash treats names starting with {prefix} as special"),
            Why::Code => format!("names starting with {prefix} make programs load code"),
        }
    }
}

impl ReservedNames {
    /// Names a process needs from its own environment, reserved by default.
    pub const PROCESS: &'static [&'static str] = &[
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD", "HOSTNAME", "LANG", "TERM", "TMPDIR",
        "IFS",
    ];

    /// Names bash refuses (read-only), drops or changes when a `.env` file is
    /// sourced with `set -a; . FILE`, reserved by default, with every name
    /// starting with `BASH_`. Measured with bash 5.2: each name was assigned a
    /// text, a number and a path, and kept here if bash refused the assignment
    /// or the shell or a child process saw anything else.
    pub const SHELL: &'static [&'static str] = &[
        "BASHOPTS",
        "BASHPID",
        "SHELLOPTS",
        "UID",
        "EUID",
        "PPID",
        "GROUPS",
        "FUNCNAME",
        "LINENO",
        "RANDOM",
        "SRANDOM",
        "SECONDS",
        "EPOCHSECONDS",
        "EPOCHREALTIME",
        "HISTCMD",
        "OPTIND",
        "PIPESTATUS",
        "DIRSTACK",
        "SHLVL",
        "COMP_WORDBREAKS",
        "_",
    ];

    /// Names that make a shell or an interpreter run code, or load it from a
    /// path the value names, reserved by default: shell start-up files and
    /// prompts (`BASH_ENV`, `ENV`, `PROMPT_COMMAND`, `PS0`..`PS4`), and the
    /// option and module-path variables of node, Python, Perl, Ruby, Java and
    /// glibc.
    pub const CODE: &'static [&'static str] = &[
        "ENV",
        "PROMPT_COMMAND",
        "PS0",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "NODE_OPTIONS",
        "NODE_PATH",
        "NODE_REPL_EXTERNAL_MODULE",
        "PYTHONSTARTUP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONINSPECT",
        "PYTHONBREAKPOINT",
        "PYTHONWARNINGS",
        "PYTHONUSERBASE",
        "PYTHONEXECUTABLE",
        "PERL5OPT",
        "PERL5LIB",
        "PERLLIB",
        "PERL5DB",
        "RUBYOPT",
        "RUBYLIB",
        "JAVA_TOOL_OPTIONS",
        "JDK_JAVA_OPTIONS",
        "_JAVA_OPTIONS",
        "CLASSPATH",
        "GCONV_PATH",
    ];
}

impl Default for ReservedNames {
    fn default() -> Self {
        let mut names = Vec::new();
        for (list, why) in [
            (Self::PROCESS, Why::Host),
            (Self::SHELL, Why::Shell),
            (Self::CODE, Why::Code),
        ] {
            names.extend(
                list.iter()
                    .filter_map(|n| n.parse::<EnvVarName>().ok())
                    .map(|n| (n, why)),
            );
        }
        let mut out = ReservedNames::none();
        for (name, why) in names {
            out.add(name, why);
        }
        for (prefix, why) in [
            ("LD_", Why::Host),
            ("DYLD_", Why::Host),
            ("LC_", Why::Host),
            // `BASH_ENV` runs a file; the others bash owns.
            ("BASH_", Why::Shell),
        ] {
            out.add_prefix(prefix.into(), why);
        }
        out
    }
}

impl ReservedNames {
    /// Nothing reserved.
    pub fn none() -> Self {
        ReservedNames {
            names: Vec::new(),
            prefixes: Vec::new(),
            prefix_starts: [0; 4],
            index: HashTable::new(),
        }
    }

    /// The position of `name`, whose [`env_name_hash`] is `hash`, in `names`.
    fn position(&self, hash: u64, name: &str) -> Option<usize> {
        self.index
            .find(hash, |&i| self.names[i].0.as_str() == name)
            .copied()
    }

    /// Adds `name` unless it is there already.
    fn add(&mut self, name: EnvVarName, why: Why) {
        let hash = env_name_hash(name.as_str());
        if self.position(hash, name.as_str()).is_some() {
            return;
        }
        let i = self.names.len();
        self.names.push((name, why));
        let names = &self.names;
        self.index
            .insert_unique(hash, i, |&j| env_name_hash(names[j].0.as_str()));
    }

    /// Adds `prefix` unless it is there already.
    fn add_prefix(&mut self, prefix: String, why: Why) {
        if self.prefixes.iter().any(|(p, _)| *p == prefix) {
            return;
        }
        match prefix.as_bytes().first() {
            Some(&b) => self.prefix_starts[usize::from(b >> 6)] |= 1 << (b & 63),
            None => self.prefix_starts = [u64::MAX; 4],
        }
        self.prefixes.push((prefix, why));
    }

    /// Whether a reserved prefix may start `text`: its first byte is the
    /// first byte of one (or a prefix is empty).
    fn may_have_prefix(&self, text: &str) -> bool {
        match text.as_bytes().first() {
            Some(&b) => self.prefix_starts[usize::from(b >> 6)] & (1 << (b & 63)) != 0,
            None => self.prefix_starts != [0; 4],
        }
    }

    /// Also reserves `name`.
    pub fn with_name(mut self, name: EnvVarName) -> Self {
        self.add(name, Why::Host);
        self
    }

    /// Also reserves every name starting with `prefix`.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        let prefix = prefix.into();
        self.add_prefix(prefix, Why::Host);
        self
    }

    /// The reserved names.
    pub fn names(&self) -> impl Iterator<Item = &EnvVarName> {
        self.names.iter().map(|(n, _)| n)
    }

    /// The reserved prefixes.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.prefixes.iter().map(|(p, _)| p.as_str())
    }

    /// Refuses a reserved name with [`ParseError::Reserved`].
    pub fn check(&self, name: &EnvVarName) -> Result<(), ParseError> {
        self.check_hashed(name.as_str(), env_name_hash(name.as_str()))
    }

    /// [`ReservedNames::check`] of `text`, whose [`env_name_hash`] is `hash`
    /// (resolution has it already).
    pub(crate) fn check_hashed(&self, text: &str, hash: u64) -> Result<(), ParseError> {
        // Called for every resolved variable: one hash probe for the names,
        // and one bit of the first byte rules the prefixes out for most.
        let reason = if let Some(i) = self.position(hash, text) {
            self.names[i].1.name().to_string()
        } else if !self.may_have_prefix(text) {
            return Ok(());
        } else if let Some((p, why)) = self.prefixes.iter().find(|(p, _)| text.starts_with(p.as_str())) {
            why.prefix(p)
        } else {
            return Ok(());
        };
        Err(ParseError::Reserved {
            kind: IdentKind::EnvVarName,
            input: text.to_owned(),
            reason,
        })
    }
}

impl fmt::Debug for ReservedNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReservedNames")
            .field("names", &self.names().map(EnvVarName::as_str).collect::<Vec<_>>())
            .field("prefixes", &self.prefixes().collect::<Vec<_>>())
            .finish()
    }
}

/// How a host turns connections into variables: the default-name prefix,
/// the reserved names, and where values referenced in an external secret
/// store are read from.
///
/// ```
/// use connective::model::ResolvePolicy;
/// let policy = ResolvePolicy::default().with_prefix("CHOREO".parse()?);
/// assert_eq!(policy.prefix().unwrap().as_str(), "CHOREO");
/// # Ok::<(), connective::model::ParseError>(())
/// ```
#[derive(Clone, Default)]
pub struct ResolvePolicy {
    prefix: Option<EnvVarName>,
    reserved: ReservedNames,
    external: Option<Arc<dyn ExternalSecrets>>,
    types: TypeLibrary,
}

impl fmt::Debug for ResolvePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvePolicy")
            .field("prefix", &self.prefix)
            .field("reserved", &self.reserved)
            .field("external_secrets", &self.external.is_some())
            .field("types", &self.types)
            .finish()
    }
}

/// Equal prefixes, reserved names and host types, and the same external secret view
/// (the same instance) or none.
impl PartialEq for ResolvePolicy {
    fn eq(&self, other: &Self) -> bool {
        self.prefix == other.prefix
            && self.reserved == other.reserved
            && self.types == other.types
            && match (&self.external, &other.external) {
                (None, None) => true,
                (Some(a), Some(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
                _ => false,
            }
    }
}

impl Eq for ResolvePolicy {}

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
    /// Sets the host's own connection types, known to every project
    /// ([`TypeLibrary`]).
    pub fn with_types(mut self, types: TypeLibrary) -> Self {
        self.types = types;
        self
    }
    /// The host's own connection types.
    pub fn types(&self) -> &TypeLibrary {
        &self.types
    }
    /// The prefix.
    pub fn prefix(&self) -> Option<&EnvVarName> {
        self.prefix.as_ref()
    }
    /// The reserved names.
    pub fn reserved(&self) -> &ReservedNames {
        &self.reserved
    }
    /// Reads values that parameters reference in external secret stores
    /// from `view` (an in-memory cache the host keeps fresh, such as the
    /// `external` module's `SecretCache`). Without one, a referenced value
    /// fails to resolve with
    /// [`ExternalFault::NoCache`](super::ExternalFault::NoCache).
    pub fn with_external_secrets(mut self, view: Arc<dyn ExternalSecrets>) -> Self {
        self.external = Some(view);
        self
    }
    /// Where referenced values are read from, if the host said.
    pub fn external_secrets(&self) -> Option<&dyn ExternalSecrets> {
        self.external.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> EnvVarName {
        s.parse().unwrap()
    }

    #[test]
    fn prefixes_are_checked_whatever_their_first_byte() {
        let reserved = ReservedNames::default().with_prefix("ACME_").with_prefix("Z");
        for refused in [
            "LD_PRELOAD",
            "DYLD_INSERT_LIBRARIES",
            "LC_ALL",
            "BASH_ENV",
            "ACME_KEY",
            "ZED",
            "PATH",
        ] {
            assert!(reserved.check(&name(refused)).is_err(), "{refused} is reserved");
        }
        for allowed in ["LDX", "ACME", "AC_ME", "SVC00_SERVICEURL", "CRM_URL", "L", "z"] {
            assert!(
                reserved.check(&name(allowed)).is_ok(),
                "{allowed} is not reserved"
            );
        }
        // The hash resolution passes in is the one the index was built with.
        for text in ["PATH", "ACME_KEY", "CRM_URL"] {
            assert_eq!(
                reserved.check_hashed(text, env_name_hash(text)).is_ok(),
                reserved.check(&name(text)).is_ok()
            );
        }
    }

    #[test]
    fn an_empty_prefix_reserves_every_name() {
        let reserved = ReservedNames::none().with_prefix("");
        assert!(reserved.check(&name("ANYTHING")).is_err());
        assert!(ReservedNames::none().check(&name("ANYTHING")).is_ok());
    }
}
