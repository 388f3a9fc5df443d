//! `.env` text.

use super::OutputError;
use crate::resolve::ResolvedEnv;

/// Quotes `value` for a `.env` file so that a POSIX shell (`set -a; . file`)
/// and the common dotenv readers give back exactly `value`:
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
    let bare = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+,=".contains(c);
    if !value.is_empty() && value.chars().all(bare) {
        return value.to_owned();
    }
    if !value.contains('\'') {
        return format!("'{value}'");
    }
    let mut out = String::with_capacity(value.len() + 8);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The variables as `.env` text: a comment naming the request, then for each
/// variable a comment with its provenance and a `NAME=value` line.
///
/// **The text contains secret values**: it is meant to be written to a file
/// the integration's process reads (mode 0600), not to a log.
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
    let mut out = format!("# {} ({})\n", env.request(), env.revision());
    for var in env {
        let value = var.value.expose();
        if value.contains('\0') {
            return Err(OutputError::NulByte {
                variable: var.name.clone(),
            });
        }
        out.push_str(&format!(
            "# {}\n{}={}\n",
            var.provenance,
            var.name,
            dotenv_quote(value)
        ));
    }
    Ok(out)
}
