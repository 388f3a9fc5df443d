//! What the program prints for people: tables, plans, explanations, notes and
//! errors, coloured only on a terminal (`--color`, `NO_COLOR`), with control
//! characters of values escaped so that a value cannot move the cursor,
//! overwrite a line or change the terminal's state.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anstyle::{AnsiColor, Style};
use comfy_table::{Attribute, Cell, Table, presets};
use connective::manifest::{Applied, ComponentConfig, ComponentImport, Plan};
use connective::model::{ConnectionRef, EnvMapping, EnvVarName, Layer, ParamName, Revision};
use connective::resolve::{Explanation, LayerOutcome, NameSource, ResolveRequest, ResolvedEnv};

const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();
const GREEN: Style = AnsiColor::Green.on_default();
const YELLOW: Style = AnsiColor::Yellow.on_default();
const RED: Style = AnsiColor::Red.on_default();
const ERROR: Style = AnsiColor::Red.on_default().bold();
const NOTE: Style = AnsiColor::Cyan.on_default();

/// Values longer than this many characters are cut in tables.
const MAX_CELL: usize = 60;

/// Set when writing to stdout failed for another reason than a closed pipe.
static WRITE_FAILED: AtomicBool = AtomicBool::new(false);

/// Applies `--color` to everything printed, clap's help and errors included.
pub fn set_color(choice: clap::ColorChoice) {
    let choice = match choice {
        clap::ColorChoice::Always => anstream::ColorChoice::Always,
        clap::ColorChoice::Never => anstream::ColorChoice::Never,
        clap::ColorChoice::Auto => anstream::ColorChoice::Auto,
    };
    choice.write_global();
}

/// Whether stdout gets colours: a terminal, no `NO_COLOR`, or `--color always`.
fn stdout_colored() -> bool {
    anstream::AutoStream::choice(&std::io::stdout()) != anstream::ColorChoice::Never
}

/// Whether an earlier write to stdout failed (a full disk, not a closed pipe).
pub fn write_failed() -> bool {
    WRITE_FAILED.load(Ordering::Relaxed)
}

fn write_out(text: &str, styled: bool) {
    let result = if styled {
        anstream::stdout().write_all(text.as_bytes())
    } else {
        std::io::stdout().lock().write_all(text.as_bytes())
    };
    // A reader that stops early (`| head`) is no failure.
    if let Err(e) = result
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        WRITE_FAILED.store(true, Ordering::Relaxed);
    }
}

/// Text for people: styles are removed unless stdout gets colours.
fn out(text: &str) {
    write_out(text, true);
}

/// Text for programs (dotenv, JSON, manifests), byte for byte.
pub fn raw(text: &str) {
    write_out(text, false);
}

fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// `error: ...` on stderr.
pub fn error(message: &str) {
    let _ = writeln!(anstream::stderr(), "{} {message}", paint(ERROR, "error:"));
}

/// `note: ...` on stderr.
pub fn note(message: &str) {
    let _ = writeln!(anstream::stderr(), "{} {message}", paint(NOTE, "note:"));
}

/// `text` with every control character (CR, LF, TAB, ESC, DEL, C1) and every
/// bidirectional-text control written as an escape (`\r`, `\u{1b}`, ...), so
/// that what the terminal shows is what the value holds.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_bidi_control(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// [`escape`]d and cut to [`MAX_CELL`] characters.
fn cell_text(text: &str) -> String {
    let escaped = escape(text);
    if escaped.chars().count() <= MAX_CELL {
        escaped
    } else {
        let mut cut: String = escaped.chars().take(MAX_CELL - 1).collect();
        cut.push('…');
        cut
    }
}

fn scope_text(scope: &connective::model::Scope) -> String {
    match scope {
        connective::model::Scope::Project => "project".to_owned(),
        connective::model::Scope::Integration(i) => format!("integration {i}"),
    }
}

/// The variables of `env` as a table with their provenance; secrets redacted.
pub fn env_table(env: &ResolvedEnv) {
    let colored = stdout_colored();
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    if colored {
        table.enforce_styling();
    } else {
        table.force_no_tty();
    }
    let header = ["VARIABLE", "VALUE", "CONNECTION", "PARAMETER", "SOURCE"];
    table.set_header(header);
    for v in env.iter() {
        let p = &v.provenance();
        let value = Cell::new(cell_text(&v.value().to_string()));
        table.add_row([
            Cell::new(v.name().as_str()),
            if v.value().is_secret() {
                value.add_attribute(Attribute::Dim)
            } else {
                value
            },
            Cell::new(cell_text(&format!("{} ({})", p.connection, scope_text(&p.scope)))),
            Cell::new(p.param.as_str()),
            Cell::new(cell_text(&p.source.to_string())),
        ]);
    }
    // Two spaces between columns, none before the first.
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    let title = format!("# {} ({})", env.request(), env.revision());
    let mut text = if colored { paint(BOLD, &title) } else { title };
    text.push('\n');
    if env.is_empty() {
        text.push_str("(no variables)\n");
    } else {
        for (i, line) in table.lines().enumerate() {
            let line = line.trim_end();
            if i == 0 && colored {
                text.push_str(&paint(BOLD, line));
            } else {
                text.push_str(line);
            }
            text.push('\n');
        }
    }
    // The table carries its own styles, decided above.
    write_out(&text, false);
}

/// A plan, one line per connection and per integration's mappings.
pub fn plan(plan: &Plan) {
    let text = plan.to_string();
    let mut lines = text.lines();
    let mut painted = String::new();
    if let Some(first) = lines.next() {
        painted.push_str(&paint(BOLD, &escape(first)));
        painted.push('\n');
    }
    for line in lines {
        let style = match line.chars().next() {
            Some('+') => GREEN,
            Some('~') => YELLOW,
            Some('-') => RED,
            Some('=') => DIM,
            _ => Style::new(),
        };
        painted.push_str(&paint(style, &escape(line)));
        painted.push('\n');
    }
    out(&painted);
}

/// What `apply` did.
pub fn applied(plan: &Plan, applied: &Applied, in_memory: bool) {
    let mut text = String::new();
    if plan.is_empty() {
        text.push_str("nothing to apply\n");
    } else {
        text.push_str(&paint(GREEN, &format!("applied at {}", applied.report.revision)));
        text.push('\n');
    }
    for (scope, name, id) in &applied.created {
        text.push_str(&format!("  created connection {name} ({scope}) {id}\n"));
    }
    for r in &applied.report.rebindings {
        text.push_str(&format!("  note: {}\n", escape(&r.to_string())));
    }
    if in_memory {
        text.push_str(&paint(
            DIM,
            "(applied to a registry in memory: use --db FILE to keep it)",
        ));
        text.push('\n');
    }
    out(&text);
}

/// What `import` stored (at `revision`), or would store (a dry run).
pub fn imported(
    file: &Path,
    config: &ComponentConfig,
    import: &ComponentImport,
    revision: Option<Revision>,
    prefix: &EnvVarName,
) {
    let mappings = &import.mappings;
    let what = format!(
        "{} (schema {}) as the mappings of integration {} of project {}",
        file.display(),
        config.version(),
        mappings.integration(),
        mappings.project()
    );
    let mut text = match revision {
        Some(r) => paint(GREEN, &format!("imported {} at {r}", escape(&what))),
        None => format!("would import {} (dry run: nothing written)", escape(&what)),
    };
    text.push('\n');
    for used in mappings.uses() {
        match (&used.reference, &used.env) {
            (reference, EnvMapping::Explicit(entries)) => {
                for entry in entries {
                    text.push_str(&format!("  {}: {} -> {}\n", reference, entry.from, entry.to));
                }
            }
            (ConnectionRef::Name(name), _) => {
                // The default name of a parameter `X`, with `X` shown as a placeholder.
                let pattern = "X".parse::<ParamName>().map(|x| {
                    let sample = EnvVarName::default_for(Some(prefix), name, &x).to_string();
                    format!("{}<PARAMETER>", sample.trim_end_matches('X'))
                });
                match pattern {
                    Ok(pattern) => text.push_str(&format!(
                        "  connection named {name}: every parameter as {pattern}\n"
                    )),
                    Err(_) => text.push_str(&format!(
                        "  connection named {name}: every parameter under its default name\n"
                    )),
                }
            }
            (reference, _) => text.push_str(&format!(
                "  {reference}: every parameter under its default name\n"
            )),
        }
    }
    if !import.skipped.is_empty() {
        text.push_str(&format!(
            "  left to the platform (not connection values): {}\n",
            escape(&import.skipped.join(", "))
        ));
    }
    out(&text);
}

/// The whole story of one variable.
pub fn explanation(why: &Explanation, request: &ResolveRequest) {
    let p = &why.provenance;
    let mut text = format!(
        "{} = {}{}\n",
        paint(BOLD, &why.variable),
        escape(&why.value.to_string()),
        if why.value.is_secret() { " (secret)" } else { "" }
    );
    text.push_str(&format!(
        "  connection  {} ({}, {})\n",
        p.connection, p.connection_id, p.scope
    ));
    text.push_str(&format!("  parameter   {}\n", p.param));
    let naming = match p.name_source {
        NameSource::Explicit => "explicit mapping (from/to)",
        _ => "default variable name (PREFIX_CONNECTION_PARAM)",
    };
    text.push_str(&format!("  name        {naming}\n"));
    text.push_str(&format!("  value from  {}\n", p.source));
    for id in &why.shadows {
        text.push_str(&format!(
            "  shadows     project-scope connection {id} of the same name\n"
        ));
    }
    if !why.layers.is_empty() {
        text.push_str("  layers (order: customer+environment, customer, environment, default):\n");
        for considered in &why.layers {
            let (style, reason) = match considered.outcome {
                LayerOutcome::Won => (GREEN, "wins".to_owned()),
                LayerOutcome::Outranked => {
                    (Style::new(), "applies, but a more specific layer wins".to_owned())
                }
                _ => (DIM, not_applicable(&considered.layer, request)),
            };
            text.push_str(&format!(
                "    {}\n",
                paint(style, &format!("{}: {reason}", considered.layer))
            ));
        }
    }
    out(&text);
}

/// Why `layer` does not apply to `request`.
fn not_applicable(layer: &Layer, request: &ResolveRequest) -> String {
    match layer {
        Layer::Environment(e) | Layer::CustomerEnvironment(_, e) if e != &request.environment => {
            format!("not for environment {}", request.environment)
        }
        Layer::Customer(c) | Layer::CustomerEnvironment(c, _) if Some(c) != request.customer.as_ref() => {
            match &request.customer {
                Some(asked) => format!("not for customer {asked}"),
                None => "no customer asked for".to_owned(),
            }
        }
        _ => "does not apply".to_owned(),
    }
}

/// One line of `check`'s report.
pub fn check_line(ok: bool, text: &str) {
    let mark = if ok {
        paint(GREEN, "ok  ")
    } else {
        paint(RED, "FAIL")
    };
    out(&format!("{mark} {}\n", escape(text)));
}

/// A line for people.
pub fn line(text: &str) {
    out(&format!("{text}\n"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_leaves_printable_text_and_escapes_what_moves_the_cursor() {
        assert_eq!(escape("東京 café"), "東京 café");
        assert_eq!(escape("a\rb\nc\td"), "a\\rb\\nc\\td");
        assert_eq!(escape("\u{1b}[2J\u{7f}\u{85}"), "\\u{1b}[2J\\u{7f}\\u{85}");
        assert_eq!(escape("abc\u{202e}fed"), "abc\\u{202e}fed");
    }

    #[test]
    fn long_cells_are_cut_after_escaping() {
        let long = "x".repeat(100);
        let cut = cell_text(&long);
        assert_eq!(cut.chars().count(), MAX_CELL);
        assert!(cut.ends_with('…'));
        assert_eq!(cell_text("a\rb"), "a\\rb");
    }
}
