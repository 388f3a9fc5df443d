//! A bounded, in-tree fuzz of the manifest loader (the long runs use the
//! cargo-fuzz target in `fuzz/`): arbitrary text and mutated sample manifests,
//! in every format, give a manifest or an error, never a panic; an accepted
//! manifest writes and reads back unchanged in every format.

use connective::manifest::{Format, Manifest, SecretSources};
use connective::registry::Registry;
use proptest::prelude::*;

const FORMATS: [Format; 3] = [Format::Yaml, Format::Toml, Format::Json];

fn samples() -> Vec<(Format, String)> {
    FORMATS
        .iter()
        .zip(["yaml", "toml", "json"])
        .map(|(f, ext)| {
            (
                *f,
                std::fs::read_to_string(format!("examples/manifests/acme.{ext}")).unwrap(),
            )
        })
        .collect()
}

/// The properties every input must keep.
fn check(text: &str, format: Format) {
    let Ok(manifest) = Manifest::parse(text, format, "fuzz") else {
        return;
    };
    let registry = Registry::in_memory();
    if let Ok(plan) = manifest.plan(&registry, &SecretSources::none()) {
        let _ = plan.apply(&registry);
    }
    for out in FORMATS {
        if let Ok(written) = manifest.document().to_text(out) {
            let back = Manifest::parse(&written, out, "round-trip")
                .unwrap_or_else(|e| panic!("{out:?} output does not load back: {e}\n{written}"));
            assert_eq!(back.document(), manifest.document(), "{out:?}:\n{written}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>(), f in 0usize..3) {
        check(&text, FORMATS[f]);
    }

    /// Small edits of a valid manifest reach deep into the loader.
    #[test]
    fn mutated_samples_never_panic(
        which in 0usize..3,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, "[ -~\n\t:{}\\[\\],#'\"&*!|>-]{0,3}"), 1..6),
    ) {
        let (format, mut text) = samples().swap_remove(which);
        for (at, cut, insert) in edits {
            let mut pos = at.index(text.len() + 1);
            while !text.is_char_boundary(pos) {
                pos -= 1;
            }
            let mut end = (pos + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end += 1;
            }
            text.replace_range(pos..end, &insert);
        }
        check(&text, format);
    }
}

#[test]
fn the_samples_themselves_pass_the_checks() {
    for (format, text) in samples() {
        check(&text, format);
        assert!(Manifest::parse(&text, format, "sample").is_ok());
    }
}

#[test]
fn deep_nesting_and_huge_inputs_are_refused_without_crashing() {
    let deep = format!(
        "project: acme\nconnections: {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(Manifest::parse(&deep, Format::Yaml, "deep.yaml").is_err());
    let deep = format!(
        "{{\"project\": \"acme\", \"connections\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(Manifest::parse(&deep, Format::Json, "deep.json").is_err());
    let deep = format!(
        "project = \"acme\"\nx = {}{}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert!(Manifest::parse(&deep, Format::Toml, "deep.toml").is_err());
    let huge = "#".repeat(connective::manifest::MAX_MANIFEST_LEN + 1);
    let err = Manifest::parse(&huge, Format::Yaml, "huge.yaml").unwrap_err();
    assert!(err.to_string().contains("at most 16777216 allowed"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Choreo's component configuration: arbitrary edits of the sample give a
    /// configuration or an error, and an import against a registry an error
    /// or mappings, never a panic.
    #[test]
    fn mutated_component_configurations_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0usize..4, "[ -~\n:{}\\[\\],/-]{0,3}"), 1..6),
        resource in "[ -~]{0,40}",
    ) {
        use connective::manifest::{ComponentConfig, ImportOptions, ResourceRef};
        let _ = ResourceRef::parse(&resource);
        let mut text = std::fs::read_to_string("examples/manifests/choreo/component.yaml").unwrap();
        for (at, cut, insert) in edits {
            let mut pos = at.index(text.len() + 1);
            while !text.is_char_boundary(pos) {
                pos -= 1;
            }
            let mut end = (pos + cut).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(pos..end, &insert);
        }
        if let Ok(config) = ComponentConfig::parse(&text, "component.yaml") {
            let registry = Registry::in_memory();
            let _ = config.mappings(&registry, &"acme".parse().unwrap(), &"orders".parse().unwrap(), &ImportOptions::choreo());
        }
    }
}
