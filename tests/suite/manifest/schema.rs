//! The manifest's JSON Schema: the committed file is the one the crate
//! generates, and a real JSON Schema validator accepts every sample manifest
//! and refuses what the loader refuses for its shape.

use connective::manifest::{Format, Manifest, SCHEMA_PATH, schema, schema_text};

/// A manifest file as the JSON value a schema validator reads.
fn as_json(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    match Format::from_path(path).unwrap() {
        Format::Yaml => serde_saphyr_value(&text),
        Format::Toml => serde_json::to_value(text.parse::<toml::Table>().unwrap()).unwrap(),
        _ => serde_json::from_str(&text).unwrap(),
    }
}

fn serde_saphyr_value(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).unwrap()
}

fn samples() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir("examples/manifests")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| Format::from_path(p).is_some())
        .map(|p| p.display().to_string())
        .collect();
    out.sort();
    out
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let generated = schema_text();
    if std::env::var_os("CONNECTIVE_WRITE_SCHEMA").is_some() {
        std::fs::write(SCHEMA_PATH, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(SCHEMA_PATH).unwrap_or_default();
    assert!(
        committed == generated,
        "{SCHEMA_PATH} is out of date: run CONNECTIVE_WRITE_SCHEMA=1 cargo test --features schema --test manifest_schema"
    );
}

#[test]
fn every_sample_manifest_is_valid_against_the_schema() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let samples = samples();
    assert!(samples.len() >= 3, "{samples:?}");
    for path in samples {
        // Each sample loads, and the schema agrees.
        Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let doc = as_json(&path);
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{path}: {errors:?}");
    }
}

/// Breaks a valid document one way.
type Break = fn(&mut serde_json::Value);

#[test]
fn the_schema_refuses_what_the_loader_refuses_for_its_shape() {
    let validator = jsonschema::validator_for(&schema()).unwrap();
    let base = as_json("examples/manifests/acme.json");
    let broken: Vec<(&str, Break)> = vec![
        (
            "no project",
            (|j| drop(j.as_object_mut().unwrap().remove("project"))),
        ),
        ("an unknown field", (|j| j["connections"][0]["bogus"] = 1.into())),
        (
            "an unknown auth scheme",
            (|j| j["connections"][0]["auth"] = "magic".into()),
        ),
        (
            "a float value",
            (|j| j["connections"][0]["parameters"]["ServiceURL"]["default"] = 1.5.into()),
        ),
        (
            "a list of connections that is a map",
            (|j| j["connections"] = serde_json::json!({})),
        ),
        (
            "an env entry without `to`",
            (|j| j["integrations"]["orders"]["connections"][0]["env"][0] = serde_json::json!({"from": "X"})),
        ),
    ];
    assert!(validator.is_valid(&base));
    for (what, break_it) in broken {
        let mut j = base.clone();
        break_it(&mut j);
        assert!(!validator.is_valid(&j), "{what} passed the schema");
        let text = serde_json::to_string(&j).unwrap();
        assert!(
            Manifest::parse(&text, Format::Json, "x.json").is_err(),
            "{what} passed the loader"
        );
    }
}
