//! Bounded work for hostile sizes: a manifest's size, YAML node count, aliases
//! and nesting are limited, each limit is a typed error naming the setting,
//! and a host that loads its own large manifests raises them.

use connective::manifest::{Format, Limit, LoadOptions, Manifest, ManifestLimits, Rule};

fn too_large(result: Result<Manifest, connective::manifest::ManifestError>) -> (Limit, usize) {
    let err = result.expect_err("the manifest was accepted");
    match err.problems() {
        [p] => match p.rule {
            Rule::TooLarge { limit, max, .. } => (limit, max),
            ref other => panic!("{other}"),
        },
        other => panic!("{other:?}"),
    }
}

/// About 296,000 connections in 16 MB of YAML: a real, large project.
fn large_manifest() -> String {
    let mut text = String::with_capacity(16 << 20);
    text.push_str("project: acme\nconnections:\n");
    let mut i = 0;
    while text.len() < 16_000_000 {
        text.push_str(&format!("  - {{name: c{i:06}, target: {{external: s}}}}\n"));
        i += 1;
    }
    assert!(i > 290_000, "{i}");
    text
}

#[test]
fn a_legitimate_16_mb_manifest_loads_when_the_host_raises_the_limits() {
    let text = large_manifest();
    // The defaults refuse it, with the setting to raise.
    let (limit, max) = too_large(Manifest::parse(&text, Format::Yaml, "big.yaml"));
    assert_eq!((limit, max), (Limit::YamlNodes, 1_000_000));
    let err = Manifest::parse(&text, Format::Yaml, "big.yaml").unwrap_err();
    assert!(
        err.to_string()
            .contains("the manifest has more than 1000000 YAML nodes (ManifestLimits::max_yaml_nodes)"),
        "{err}"
    );
    let options = LoadOptions::new().limits(ManifestLimits::default().max_yaml_nodes(4_000_000));
    let m = Manifest::parse_with(&text, Format::Yaml, "big.yaml", &options).unwrap_or_else(|e| panic!("{e}"));
    assert!(m.document().connections.len() > 290_000);
}

#[test]
fn each_limit_is_a_typed_error_naming_its_setting() {
    let small = ManifestLimits::default()
        .max_bytes(1024)
        .max_yaml_nodes(100)
        .max_yaml_aliases(5)
        .max_depth(8);
    let options = LoadOptions::new().limits(small);
    let parse = |text: &str, format| Manifest::parse_with(text, format, "m", &options);
    let long = format!("project: acme\n# {}\n", "x".repeat(2000));
    for format in [Format::Yaml, Format::Json, Format::Toml] {
        assert_eq!(too_large(parse(&long, format)), (Limit::Bytes, 1024));
    }
    let many = format!(
        "project: acme\nconnections:\n{}",
        (0..40).map(|i| format!("- {{name: c{i}}}\n")).collect::<String>()
    );
    assert_eq!(too_large(parse(&many, Format::Yaml)), (Limit::YamlNodes, 100));
    let aliases = format!(
        "project: acme\nconnections:\n- {{name: c, description: &d text}}\n{}",
        (0..10)
            .map(|i| format!("- {{name: c{i}, description: *d}}\n"))
            .collect::<String>()
    );
    assert_eq!(too_large(parse(&aliases, Format::Yaml)).0, Limit::YamlAliases);
    // A valid manifest nests five levels deep here.
    let deep = "project: acme\nconnections:\n- name: c\n  parameters:\n    Url:\n      customers:\n        globex:\n          environments: {test: x}\n";
    assert!(parse(deep, Format::Yaml).is_ok());
    let shallow = LoadOptions::new().limits(small.max_depth(4));
    assert_eq!(
        too_large(Manifest::parse_with(deep, Format::Yaml, "m", &shallow)),
        (Limit::Depth, 4)
    );
    // A file is read only up to the limit, whatever it reports.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    std::fs::write(&path, &long).unwrap();
    assert_eq!(too_large(Manifest::load_with(&path, &options)).0, Limit::Bytes);
}

#[test]
fn an_alias_bomb_is_refused_by_the_defaults() {
    let mut text = String::from("project: acme\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let prev = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let err = Manifest::parse(&text, Format::Yaml, "bomb.yaml").unwrap_err();
    assert!(
        matches!(
            err.problems()[0].rule,
            Rule::TooLarge { .. } | Rule::Syntax { .. }
        ),
        "{err}"
    );
}

/// Runs `f` and fails if it takes longer than `limit`: work on a manifest
/// must grow with its size, not with its square.
fn within<T>(what: &str, limit: std::time::Duration, f: impl FnOnce() -> T) -> T {
    let start = std::time::Instant::now();
    let out = f();
    let took = start.elapsed();
    assert!(took < limit, "{what} took {took:?}, more than {limit:?}");
    out
}

/// Wide manifests well inside the default limits (a map of 200,000 keys;
/// 20,000 connections and as many references to them; one secret
/// parameter with 100,000 customers' values) load and plan in a few
/// seconds: keys, references and values are found by hash, not by
/// scanning everything declared before them (which took minutes, and
/// hours at the 16 MB limit).
#[test]
fn wide_manifests_load_and_plan_in_time_proportional_to_their_size() {
    use connective::manifest::SecretSources;
    use connective::registry::Registry;
    let limit = std::time::Duration::from_secs(30);
    let keys = 200_000;
    let json = format!(
        "{{\"project\": \"acme\", \"integrations\": {{{}}}}}",
        (0..keys)
            .map(|i| format!("\"i{i}\": {{}}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let toml = format!(
        "project = \"acme\"\n[integrations]\n{}",
        (0..keys).map(|i| format!("i{i} = {{}}\n")).collect::<String>()
    );
    let yaml = format!(
        "project: acme\nintegrations:\n{}",
        (0..keys).map(|i| format!("  i{i}: {{}}\n")).collect::<String>()
    );
    for (format, text) in [
        (Format::Json, &json),
        (Format::Toml, &toml),
        (Format::Yaml, &yaml),
    ] {
        let m = within(&format!("{keys} keys in {format:?}"), limit, || {
            Manifest::parse(text, format, "wide")
        });
        assert_eq!(
            m.unwrap_or_else(|e| panic!("{e}")).document().integrations.len(),
            keys
        );
    }
    // A key given twice is still found, however far apart.
    let twice = json.replacen("\"i0\"", "\"i199999\"", 1);
    assert!(Manifest::parse(&twice, Format::Json, "wide").is_err());

    let n = 20_000;
    let mut text = String::from("project: acme\nconnections:\n");
    for i in 0..n {
        text.push_str(&format!("- {{name: c{i}, parameters: {{P: {{default: x}}}}}}\n"));
    }
    text.push_str("integrations:\n");
    for k in 0..n / 1000 {
        text.push_str(&format!("  i{k}:\n    connections:\n"));
        for j in 0..1000 {
            text.push_str(&format!("    - {{connection: c{}}}\n", k * 1000 + j));
        }
    }
    let m = within(&format!("{n} connections and references"), limit, || {
        Manifest::parse(&text, Format::Yaml, "wide")
    });
    assert_eq!(
        m.unwrap_or_else(|e| panic!("{e}")).document().connections.len(),
        n
    );

    let customers = 100_000;
    let text = format!(
        "{{\"project\": \"acme\", \"connections\": [{{\"name\": \"c\", \"parameters\": {{\"S\": {{\"secret\": true, \
         \"optional\": true, \"customers\": {{{}}}}}}}}}]}}",
        (0..customers)
            .map(|i| format!("\"cu{i}\": \"keep:existing\""))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let m = Manifest::parse(&text, Format::Json, "wide").unwrap_or_else(|e| panic!("{e}"));
    let registry = Registry::in_memory();
    let plan = within(
        &format!("a plan of {customers} customers' secrets"),
        limit,
        || m.plan(&registry, &SecretSources::none()),
    );
    // Nothing to keep in an empty registry: every value is named.
    let err = plan.expect_err("keep:existing with nothing to keep");
    assert_eq!(err.problems().len(), customers);
}

/// `usize::MAX` as every limit is "no limit": the example manifests load
/// as with the defaults, in every format, and so do Choreo component
/// files (a file's size limit plus the byte that tells a larger file
/// overflowed: a panic, or a manifest read as empty).
#[test]
fn limits_without_bound_load_what_the_defaults_load() {
    use connective::manifest::ComponentConfig;
    let unbounded = ManifestLimits::default()
        .max_bytes(usize::MAX)
        .max_yaml_nodes(usize::MAX)
        .max_yaml_aliases(usize::MAX)
        .max_depth(usize::MAX);
    let options = LoadOptions::new().limits(unbounded);
    for file in ["acme.yaml", "acme.json", "acme.toml", "slack.yaml"] {
        let path = format!("examples/manifests/{file}");
        let want = Manifest::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let got = Manifest::load_with(&path, &options).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(got.document(), want.document(), "{file}");
        let text = std::fs::read_to_string(&path).unwrap();
        let format = match file.rsplit('.').next() {
            Some("json") => Format::Json,
            Some("toml") => Format::Toml,
            _ => Format::Yaml,
        };
        let parsed =
            Manifest::parse_with(&text, format, file, &options).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(parsed.document(), want.document(), "{file}");
    }
    for file in ["component.yaml", "component-config.yaml", "component-v1.0.yaml"] {
        let path = format!("examples/manifests/choreo/{file}");
        let want = ComponentConfig::load(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        let got = ComponentConfig::load_with(&path, &unbounded).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "{file}");
    }
}
