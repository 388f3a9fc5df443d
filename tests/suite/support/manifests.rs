//! Manifests for the manifest modules (and `tests/process_env.rs`): the
//! sample, plan-and-apply, resolution as a list, a small manifest, and the
//! folders `file:` references are tested in.

use std::path::Path;

use connective::manifest::{
    Format, LoadOptions, Manifest, SecretRef, SecretSource, SecretSources, SourceContext,
};
use connective::prelude::*;

pub const SAMPLE: &str = "examples/manifests/acme.yaml";

pub fn sample() -> Manifest {
    Manifest::load(SAMPLE).unwrap_or_else(|e| panic!("{e}"))
}

pub fn apply(m: &Manifest, registry: &Registry) {
    let plan = m
        .plan(registry, &SecretSources::standard())
        .unwrap_or_else(|e| panic!("{e}"));
    plan.apply(registry).unwrap_or_else(|e| panic!("{e}"));
}

pub fn resolve(
    registry: &Registry,
    integration: &str,
    env: &str,
    customer: Option<&str>,
) -> Vec<(String, String)> {
    let mut req = ResolveRequest::parse("acme", integration, env).unwrap();
    if let Some(c) = customer {
        req = req.for_customer(c).unwrap();
    }
    let env = registry.resolve(&req).unwrap_or_else(|e| panic!("{e}"));
    env.iter()
        .map(|v| (v.name().to_string(), v.value().expose().to_owned()))
        .collect()
}

pub fn small(value_ref: &str, url: &str) -> Manifest {
    small_with(value_ref, url, &LoadOptions::new())
}

pub fn small_with(value_ref: &str, url: &str, options: &LoadOptions) -> Manifest {
    Manifest::parse_with(
        &format!(
            "project: acme\nconnections:\n  - name: api\n    auth: api-key\n    parameters:\n      URL: {{default: '{url}'}}\n      Key: {{secret: true, default: '{value_ref}'}}\nintegrations:\n  orders:\n    connections:\n      - connection: api\n        env: [{{from: URL, to: API_URL}}, {{from: Key, to: API_KEY}}]\n"
        ),
        Format::Yaml,
        "small.yaml",
        options,
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

pub fn reference(text: &str) -> SecretRef {
    text.parse().unwrap()
}

pub fn in_folder(dir: &Path) -> SourceContext {
    let mut c = SourceContext::default();
    c.base_dir = Some(dir.to_path_buf());
    c
}

/// A folder holding a manifest's secrets, beside one holding a file it must
/// not reach.
pub struct Folders {
    _tmp: tempfile::TempDir,
    pub manifest: std::path::PathBuf,
    pub outside: std::path::PathBuf,
}

pub fn folders() -> Folders {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("repo");
    let outside = tmp.path().join("elsewhere");
    std::fs::create_dir_all(manifest.join("secrets")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(manifest.join("secrets/key.txt"), "the-key\n").unwrap();
    std::fs::write(outside.join("private.txt"), "not-for-the-manifest").unwrap();
    Folders {
        _tmp: tmp,
        manifest,
        outside,
    }
}

pub fn refused(source: &dyn SecretSource, text: &str, context: &SourceContext, why: &str) {
    let err = source
        .fetch(&reference(text), context)
        .err()
        .unwrap_or_else(|| panic!("{text} was read"));
    assert!(err.to_string().contains(why), "{text}: {err} lacks {why:?}");
    assert!(!err.to_string().contains("not-for-the-manifest"), "{err}");
}
