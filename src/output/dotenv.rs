//! `.env` text, in the dialect of the program that reads it.
//!
//! There is no `.env` standard: each reader has its own grammar. A
//! [`Dialect`] writes what one reader gives back byte for byte, or refuses
//! a value that reader cannot be given, with [`OutputError::Unrepresentable`]
//! naming the variable (never the value).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::OutputError;
use crate::resolve::ResolvedEnv;

/// The reader a `.env` file is written for.
///
/// Each dialect is checked against the real reader, on the same corpus of
/// tricky values (quotes, `$`, `${...}`, backslashes, line breaks, carriage
/// returns, tabs, `#`, `=`, leading and trailing spaces, unicode) and on
/// generated ones: what it writes reads back byte-identical, and what it
/// cannot carry it refuses.
///
/// | dialect | reader (version tested) | refuses |
/// | --- | --- | --- |
/// | [`Shell`](Dialect::Shell) | bash 5.2, `set -a; . FILE` | nothing |
/// | [`Compose`](Dialect::Compose) | Docker Compose v2.40 `env_file` (compose-go 2.9) | nothing |
/// | [`PythonDotenv`](Dialect::PythonDotenv) | python-dotenv 1.2 `dotenv_values`/`load_dotenv` (interpolation on, their default) | `${...}`, which it expands |
/// | [`NodeDotenv`](Dialect::NodeDotenv) | node `dotenv` 18 `config`/`parse`, default and `fast` parser | a value no quote of its grammar can carry |
/// | [`Dotenvy`](Dialect::Dotenvy) | Rust `dotenvy` 0.15 | nothing |
/// | [`DockerEnvFile`](Dialect::DockerEnvFile) | the docker CLI's `--env-file` parser, as Compose 2.40 runs it for `format: raw` | line breaks, a final carriage return, lines over 65,535 bytes |
/// | [`Portable`](Dialect::Portable) | all of the first five, one text | whatever one of them cannot read the same |
///
/// Every dialect refuses a NUL byte ([`OutputError::NulByte`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Dialect {
    /// A POSIX shell sourcing the file: `set -a; . ./app.env`. Values are
    /// left bare, single-quoted, or double-quoted with `\`, `"`, `$` and
    /// `` ` `` escaped.
    #[default]
    Shell,
    /// Docker Compose v2's `env_file` (its default format): double quotes
    /// with `\\`, `\"`, `\$`, `\n` and `\r` escapes.
    Compose,
    /// python-dotenv: double quotes with `\\`, `\"`, `\n` and `\r` escapes.
    /// It expands `${NAME}` and `${NAME:-default}` inside any quotes, with no
    /// escape, so such a value is refused.
    PythonDotenv,
    /// node's `dotenv`: it turns every carriage return of the file into a
    /// line feed and unescapes nothing but `\n` and `\r` in double quotes,
    /// so a value is left bare or put in whichever of `'`, `` ` `` and `"`
    /// it does not contain; a value that fits none is refused.
    NodeDotenv,
    /// Rust's `dotenvy`: double quotes with `\\`, `\"`, `\$` and `\n`
    /// escapes.
    Dotenvy,
    /// docker's `--env-file` reader (also Compose's `env_file` with
    /// `format: raw`): `NAME=value` lines taken as they are, no quoting.
    /// A value with a line break (which would end the line and start a new
    /// variable), ending with a carriage return (which it drops), or making
    /// a line longer than its 65,535-byte limit is refused.
    DockerEnvFile,
    /// One text that bash, Compose, python-dotenv, node's `dotenv` and
    /// `dotenvy` all read the same: bare, single-quoted or double-quoted,
    /// with no escape at all. Refuses a carriage return, `${...}`, and a
    /// value that needs an escape (a `'` together with `"`, `$`, `` ` `` or
    /// `\`; `\\` or `\'`; a final `\`). Not read the same by docker's
    /// `--env-file` reader, which takes quotes literally.
    Portable,
}

impl Dialect {
    /// Every dialect.
    pub const ALL: [Dialect; 7] = [
        Dialect::Shell,
        Dialect::Compose,
        Dialect::PythonDotenv,
        Dialect::NodeDotenv,
        Dialect::Dotenvy,
        Dialect::DockerEnvFile,
        Dialect::Portable,
    ];

    /// The dialect's name: `shell`, `compose`, `python-dotenv`,
    /// `node-dotenv`, `dotenvy`, `docker-env-file` or `portable`
    /// ([`FromStr`] parses it back).
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Shell => "shell",
            Dialect::Compose => "compose",
            Dialect::PythonDotenv => "python-dotenv",
            Dialect::NodeDotenv => "node-dotenv",
            Dialect::Dotenvy => "dotenvy",
            Dialect::DockerEnvFile => "docker-env-file",
            Dialect::Portable => "portable",
        }
    }

    /// `value` as this dialect writes it after `NAME=`, or why it cannot.
    ///
    /// ```
    /// use connective::output::{Dialect, Unrepresentable};
    /// assert_eq!(Dialect::Shell.quote("it's $HOME"), Ok(r#""it's \$HOME""#.to_owned()));
    /// assert_eq!(Dialect::Compose.quote("a\nb"), Ok(r#""a\nb""#.to_owned()));
    /// assert_eq!(Dialect::PythonDotenv.quote("${HOME}"), Err(Unrepresentable::Interpolation));
    /// assert_eq!(Dialect::DockerEnvFile.quote("x\nFOO=injected"), Err(Unrepresentable::LineBreak));
    /// ```
    pub fn quote(self, value: &str) -> Result<String, Unrepresentable> {
        if value.contains('\0') {
            return Err(Unrepresentable::Nul);
        }
        match self {
            Dialect::Shell => Ok(dotenv_quote(value)),
            Dialect::Compose => Ok(bare(value).unwrap_or_else(|| {
                escaped(value, |c| match c {
                    '\\' => Some("\\\\"),
                    '"' => Some("\\\""),
                    '$' => Some("\\$"),
                    '\n' => Some("\\n"),
                    '\r' => Some("\\r"),
                    _ => None,
                })
            })),
            Dialect::PythonDotenv => {
                if python_interpolates(value) {
                    return Err(Unrepresentable::Interpolation);
                }
                Ok(bare(value).unwrap_or_else(|| {
                    escaped(value, |c| match c {
                        '\\' => Some("\\\\"),
                        '"' => Some("\\\""),
                        '\n' => Some("\\n"),
                        '\r' => Some("\\r"),
                        _ => None,
                    })
                }))
            }
            Dialect::NodeDotenv => node_quote(value),
            Dialect::Dotenvy => Ok(bare(value).unwrap_or_else(|| {
                escaped(value, |c| match c {
                    '\\' => Some("\\\\"),
                    '"' => Some("\\\""),
                    '$' => Some("\\$"),
                    '\n' => Some("\\n"),
                    _ => None,
                })
            })),
            Dialect::DockerEnvFile => {
                if value.contains('\n') {
                    Err(Unrepresentable::LineBreak)
                } else if value.ends_with('\r') {
                    Err(Unrepresentable::FinalCarriageReturn)
                } else {
                    Ok(value.to_owned())
                }
            }
            Dialect::Portable => portable_quote(value),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a [`Dialect`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown .env dialect (expected one of shell, compose, python-dotenv, node-dotenv, dotenvy, docker-env-file, portable)"
)]
pub struct UnknownDialect;

impl FromStr for Dialect {
    type Err = UnknownDialect;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dialect::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or(UnknownDialect)
    }
}

/// Why a [`Dialect`] cannot carry a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Unrepresentable {
    /// A NUL byte, which no environment can hold.
    #[error("it contains a NUL byte, which an environment cannot hold")]
    Nul,
    /// A line break, which ends the line for a reader without quoting (and
    /// would start another variable).
    #[error("it contains a line break, which this reader takes as the end of the variable")]
    LineBreak,
    /// A carriage return at the end, which the reader drops.
    #[error("it ends with a carriage return, which this reader drops")]
    FinalCarriageReturn,
    /// A carriage return, which the reader turns into a line feed unless an
    /// escape carries it.
    #[error("it contains a carriage return, which this reader reads as a line feed")]
    CarriageReturn,
    /// `${NAME}` or `${NAME:-default}`, which the reader expands whatever
    /// the quotes.
    #[error("it contains ${{...}}, which this reader expands and cannot be told not to")]
    Interpolation,
    /// No quoting of the reader's grammar carries it unchanged.
    #[error("no quoting this reader understands carries it unchanged")]
    NoQuoting,
    /// The `NAME=value` line is longer than the reader reads.
    #[error("its line is longer than the 65535 bytes this reader reads")]
    LineTooLong,
}

/// The longest line docker's `--env-file` reader takes (Go's
/// `bufio.Scanner` limit, less the line feed).
const DOCKER_MAX_LINE: usize = 64 * 1024 - 1;

/// `value` unquoted, if every reader reads it bare: non-empty and only
/// `A-Z a-z 0-9 _ - . / : @ % + , =` (no `~`, which bash expands).
fn bare(value: &str) -> Option<String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+,=".contains(c);
    (!value.is_empty() && value.chars().all(ok)).then(|| value.to_owned())
}

/// `value` in double quotes, each character `escape` names replaced.
fn escaped(value: &str, escape: impl Fn(char) -> Option<&'static str>) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    out.push('"');
    for c in value.chars() {
        match escape(c) {
            Some(e) => out.push_str(e),
            None => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether python-dotenv's interpolation (`\$\{([^}:]*)(?::-([^}]*))?\}`)
/// finds a match in `value`.
fn python_interpolates(value: &str) -> bool {
    let bytes = value.as_bytes();
    (0..bytes.len().saturating_sub(1)).any(|start| {
        if &bytes[start..start + 2] != b"${" {
            return false;
        }
        let rest = &bytes[start + 2..];
        let name_end = rest.iter().position(|b| *b == b'}' || *b == b':');
        match name_end.map(|i| (rest[i], &rest[i + 1..])) {
            Some((b'}', _)) => true,
            Some((_, after)) => after.first() == Some(&b'-') && after[1..].contains(&b'}'),
            None => false,
        }
    })
}

/// Whether node's `dotenv` reads `value` bare: no `#` or line break, no
/// white space at either end (JavaScript's `trim`, which also takes U+FEFF),
/// not starting with a quote.
fn node_bare(value: &str) -> bool {
    let space = |c: char| c.is_whitespace() || c == '\u{feff}';
    !value.is_empty()
        && !value.contains(['#', '\n', '\r'])
        && !value.starts_with(space)
        && !value.ends_with(space)
        && !value.starts_with(['\'', '"', '`'])
}

fn node_quote(value: &str) -> Result<String, Unrepresentable> {
    if node_bare(value) {
        return Ok(value.to_owned());
    }
    // Inside quotes a backslash before the closing quote escapes it.
    let final_backslash = value.ends_with('\\');
    if !value.contains('\r') && !final_backslash {
        for q in ['\'', '`'] {
            if !value.contains(q) {
                return Ok(format!("{q}{value}{q}"));
            }
        }
    }
    // Double quotes turn `\n` and `\r` into line breaks: the only way to
    // carry a carriage return, and no way to carry a literal `\n` or `\r`.
    let escapes_clash = value.contains("\\n") || value.contains("\\r");
    if !value.contains('"') && !final_backslash && !escapes_clash {
        return Ok(format!("\"{}\"", value.replace('\r', "\\r")));
    }
    Err(if value.contains('\r') {
        Unrepresentable::CarriageReturn
    } else {
        Unrepresentable::NoQuoting
    })
}

fn portable_quote(value: &str) -> Result<String, Unrepresentable> {
    if let Some(bare) = bare(value) {
        return Ok(bare);
    }
    if value.contains('\r') {
        return Err(Unrepresentable::CarriageReturn);
    }
    if python_interpolates(value) {
        return Err(Unrepresentable::Interpolation);
    }
    // Single quotes: literal for all five, as long as python-dotenv finds no
    // `\\` or `\'` to unescape and no reader sees the closing quote escaped.
    if !value.contains('\'') && !value.contains("\\\\") && !value.ends_with('\\') {
        return Ok(format!("'{value}'"));
    }
    // Double quotes with nothing any of them would expand or unescape.
    if !value.contains(['"', '\\', '$', '`']) {
        return Ok(format!("\"{value}\""));
    }
    Err(Unrepresentable::NoQuoting)
}

/// Quotes `value` for a `.env` file that a POSIX shell reads
/// (`set -a; . file`), which gives back exactly `value`
/// ([`Dialect::Shell`]):
/// - left bare if it is non-empty and only has `A-Z a-z 0-9 _ - . / : @ % + , =`;
/// - else in single quotes if it has no `'` (nothing is special inside them,
///   line breaks included);
/// - else in double quotes, with `\`, `"`, `$` and `` ` `` escaped by a
///   backslash.
///
/// ```
/// use connective::output::dotenv_quote;
/// assert_eq!(dotenv_quote("https://api.example.com/v1"), "https://api.example.com/v1");
/// assert_eq!(dotenv_quote("two words"), "'two words'");
/// assert_eq!(dotenv_quote("it's $HOME"), r#""it's \$HOME""#);
/// ```
pub fn dotenv_quote(value: &str) -> String {
    if let Some(bare) = bare(value) {
        return bare;
    }
    if !value.contains('\'') {
        return format!("'{value}'");
    }
    escaped(value, |c| match c {
        '\\' => Some("\\\\"),
        '"' => Some("\\\""),
        '$' => Some("\\$"),
        '`' => Some("\\`"),
        _ => None,
    })
}

/// The variables as `.env` text for a POSIX shell ([`Dialect::Shell`]); see
/// [`to_dotenv_as`].
///
/// ```
/// use connective::fixture::Fixture;
/// use connective::model::Param;
/// let fx = Fixture::project("acme")
///     .connection("crm", |c| c.param(Param::plain("Greeting").default("hello world")))
///     .mappings("orders", |m| m.by_name("crm", [("Greeting", "GREETING")]))
///     .build()?;
/// let text = connective::output::to_dotenv(&fx.resolve("orders", "production")?)?;
/// assert!(text.contains("\nGREETING='hello world'\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn to_dotenv(env: &ResolvedEnv) -> Result<String, OutputError> {
    to_dotenv_as(env, Dialect::Shell)
}

/// The variables as `.env` text in `dialect`: a comment naming the request,
/// then for each variable a comment with its provenance and a `NAME=value`
/// line. A value the dialect cannot carry is refused with
/// [`OutputError::Unrepresentable`] (or [`OutputError::NulByte`]), naming
/// the variable.
///
/// **The text contains secret values**: it is meant to be written to a file
/// the integration's process reads ([`write_dotenv`] makes it mode 0600),
/// not to a log.
///
/// ```
/// use connective::fixture::Fixture;
/// use connective::model::Param;
/// use connective::output::{Dialect, OutputError, to_dotenv_as};
/// let fx = Fixture::project("acme")
///     .connection("crm", |c| c.param(Param::secret("Token").default("x\nFOO=injected")))
///     .mappings("orders", |m| m.by_name("crm", [("Token", "CRM_TOKEN")]))
///     .build()?;
/// let env = fx.resolve("orders", "production")?;
/// assert!(to_dotenv_as(&env, Dialect::Compose)?.contains("\nCRM_TOKEN=\"x\\nFOO=injected\"\n"));
/// let err = to_dotenv_as(&env, Dialect::DockerEnvFile).unwrap_err();
/// assert!(matches!(&err, OutputError::Unrepresentable { variable, .. } if variable.as_str() == "CRM_TOKEN"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn to_dotenv_as(env: &ResolvedEnv, dialect: Dialect) -> Result<String, OutputError> {
    let mut out = format!("# {} ({})\n", env.request(), env.revision());
    for var in env {
        let quoted = dialect
            .quote(var.value().expose())
            .map_err(|reason| match reason {
                Unrepresentable::Nul => OutputError::NulByte {
                    variable: var.name().clone(),
                },
                reason => OutputError::Unrepresentable {
                    variable: var.name().clone(),
                    dialect,
                    reason,
                },
            })?;
        let line_len = var.name().as_str().len() + 1 + quoted.len();
        if dialect == Dialect::DockerEnvFile && line_len > DOCKER_MAX_LINE {
            return Err(OutputError::Unrepresentable {
                variable: var.name().clone(),
                dialect,
                reason: Unrepresentable::LineTooLong,
            });
        }
        out.push_str(&format!("# {}\n{}={}\n", var.provenance(), var.name(), quoted));
    }
    Ok(out)
}

/// Why [`write_dotenv`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The dialect cannot carry a value; nothing was written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The file could not be written; the previous file, if any, is intact.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file (or its temporary file) that failed.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// Writes the variables as `.env` text in `dialect` to `path`, atomically
/// and readable by the owner only: the text goes to a new temporary file in
/// the same folder, created with mode 0600, flushed to disk, then renamed
/// over `path` (replacing a file or a symbolic link there, never writing
/// through one), and the folder is flushed. A reader sees the old file or
/// the whole new one, never a part; on failure `path` is untouched.
///
/// ```
/// use connective::fixture::Fixture;
/// use connective::model::Param;
/// use connective::output::{Dialect, write_dotenv};
/// let fx = Fixture::project("acme")
///     .connection("crm", |c| c.param(Param::secret("Token").default("t0k3n")))
///     .mappings("orders", |m| m.by_name("crm", [("Token", "CRM_TOKEN")]))
///     .build()?;
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("orders.env");
/// write_dotenv(&path, &fx.resolve("orders", "production")?, Dialect::Portable)?;
/// assert!(std::fs::read_to_string(&path)?.contains("\nCRM_TOKEN=t0k3n\n"));
/// # #[cfg(unix)] {
/// use std::os::unix::fs::PermissionsExt;
/// assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
/// # }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_dotenv(path: impl AsRef<Path>, env: &ResolvedEnv, dialect: Dialect) -> Result<(), WriteError> {
    let path = path.as_ref();
    let text = to_dotenv_as(env, dialect)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        io(path)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path names no file",
        ))
    })?;
    let (temp, mut file) = create_temp(dir, file_name).map_err(io(dir))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(&temp))
        .and_then(|()| {
            drop(file);
            std::fs::rename(&temp, path).map_err(io(path))
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    // The rename is durable once the folder's entry is.
    #[cfg(unix)]
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
}

/// Turns an I/O error about `path` into a [`WriteError`].
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A new file `.NAME.RANDOM.tmp` in `dir`, mode 0600, that did not exist.
fn create_temp(dir: &Path, file_name: &std::ffi::OsStr) -> std::io::Result<(PathBuf, File)> {
    let mut attempts = 0;
    loop {
        let suffix = getrandom::u64().map_err(std::io::Error::other)?;
        let mut name = std::ffi::OsString::from(".");
        name.push(file_name);
        name.push(format!(".{suffix:016x}.tmp"));
        let temp = dir.join(name);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&temp) {
            Ok(file) => {
                // Exactly 0600, whatever the umask.
                #[cfg(unix)]
                file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
                return Ok((temp, file));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_interpolation_is_matched_as_its_regex_does() {
        for hit in [
            "${A}",
            "x${A}y",
            "${A:-b}",
            "${:-}",
            "${}",
            "$${A}",
            "${A:-${B}",
            "${ ${A}",
        ] {
            assert!(python_interpolates(hit), "{hit}");
        }
        for miss in ["$A", "${", "${A", "${A:b}", "${A:}", "}${", "$ {A}", "{A}", ""] {
            assert!(!python_interpolates(miss), "{miss}");
        }
    }

    #[test]
    fn dialect_names_parse_back() {
        for d in Dialect::ALL {
            assert_eq!(d.name().parse::<Dialect>(), Ok(d));
            assert_eq!(d.to_string(), d.name());
        }
        assert_eq!("bash".parse::<Dialect>(), Err(UnknownDialect));
    }

    #[test]
    fn every_dialect_refuses_nul() {
        for d in Dialect::ALL {
            assert_eq!(d.quote("a\0b"), Err(Unrepresentable::Nul), "{d}");
        }
    }
}
