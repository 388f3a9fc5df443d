//! The manifest format as a JSON Schema, for editors and validators.

use super::Document;

/// Where the repository keeps the schema [`schema_text`] writes, for editors
/// to point at (`# yaml-language-server: $schema=...`).
pub const SCHEMA_PATH: &str = "schema/manifest.schema.json";

/// The JSON Schema (draft 2020-12) of a manifest [`Document`]: the shape of
/// the file, the same for YAML, TOML and JSON. What the schema cannot say
/// (identifier rules, secret references, references between mappings and
/// connections) is checked by [`Manifest::parse`](super::Manifest::parse).
///
/// ```
/// let schema = connective::manifest::schema();
/// assert_eq!(schema["title"], "connective manifest");
/// assert!(schema["properties"]["connections"].is_object());
/// ```
pub fn schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Document);
    schema.insert("title".into(), "connective manifest".into());
    schema.into()
}

/// [`schema`] as pretty-printed JSON with a final line break: the text of
/// `schema/manifest.schema.json`.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    text.push('\n');
    text
}
