//! Loading manifests: the same document in YAML, TOML and JSON; every problem
//! reported at once with the file, the path inside it and the rule broken; a
//! literal secret refused without being repeated.

use connective::manifest::{Format, Manifest, ManifestError, Rule};

fn yaml(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, Format::Yaml, "acme.yaml")
}

fn err_text(r: Result<Manifest, ManifestError>) -> String {
    match r {
        Ok(_) => panic!("the manifest was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_sample_manifest_is_the_same_document_in_yaml_toml_and_json() {
    let yaml = Manifest::load("examples/manifests/acme.yaml").unwrap_or_else(|e| panic!("{e}"));
    for file in ["examples/manifests/acme.toml", "examples/manifests/acme.json"] {
        let other = Manifest::load(file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.document(), yaml.document(), "{file}");
    }
    let doc = yaml.document();
    assert_eq!(doc.project, "acme");
    let names: Vec<&str> = doc.connections.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["twilio", "inventory", "warehouse", "salesforce", "legacy-crm"]
    );
    // Parameters keep document order, and numbers keep their text.
    let warehouse = &doc.connections[2];
    let params: Vec<&str> = warehouse.parameters.iter().map(|(k, _)| k).collect();
    assert_eq!(
        params,
        ["HostName", "Port", "Username", "Password", "DatabaseName"]
    );
    assert_eq!(
        warehouse
            .parameters
            .get("Port")
            .unwrap()
            .default
            .as_ref()
            .unwrap()
            .as_str(),
        "5432"
    );
}

#[test]
fn an_invalid_identifier_names_file_path_and_rule() {
    let text = err_text(yaml(
        "project: acme\nconnections:\n  - name: a\n  - name: b\n  - name: c\n    parameters:\n      ServiceURL:\n        environments: { Prod: x }\n",
    ));
    assert_eq!(
        text,
        "acme.yaml: connections[2].parameters.ServiceURL.environments.#1: invalid environment: the character at \
         position 0 is not allowed (lower-case letters, digits, '-' and '_'; starting with a lower-case letter); \
         the text is not repeated here"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = yaml(
        "project: 'ac me'\nconnections:\n  - name: 9lives\n  - name: ok\n    integration: 'bad id'\n    parameters:\n      \"bad!\": {}\n\
         integrations:\n  orders:\n    connections:\n      - connection: nowhere\n",
    )
    .unwrap_err();
    let paths: Vec<&str> = err.problems().iter().map(|p| p.location.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "project",
            "connections[0].name",
            "connections[1].integration",
            "connections[1].parameters.#1",
            "integrations.orders.connections[0].connection",
        ]
    );
    let text = err.to_string();
    assert!(text.starts_with("acme.yaml: 5 problems\n"), "{text}");
    assert!(
        text.contains("acme.yaml: integrations.orders.connections[0].connection: integration orders can see no connection named nowhere"),
        "{text}"
    );
}

#[test]
fn a_literal_secret_is_refused_where_it_is_and_never_repeated() {
    let cases = [
        (
            Format::Yaml,
            "project: acme\nconnections:\n  - name: twilio\n    parameters:\n      ApiKey:\n        secret: true\n        environments: { production: sk_live_4eC39HqLyjWDarjtT1zdp7dc }\n",
        ),
        (
            Format::Toml,
            "project = \"acme\"\n[[connections]]\nname = \"twilio\"\n[connections.parameters.ApiKey]\nsecret = true\nenvironments = { production = \"sk_live_4eC39HqLyjWDarjtT1zdp7dc\" }\n",
        ),
        (
            Format::Json,
            r#"{"project": "acme", "connections": [{"name": "twilio", "parameters": {"ApiKey": {"secret": true, "environments": {"production": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"}}}}]}"#,
        ),
    ];
    for (format, text) in cases {
        let err = Manifest::parse(text, format, "acme").unwrap_err();
        let [problem] = err.problems() else {
            panic!("{err}")
        };
        assert!(matches!(problem.rule, Rule::LiteralSecret), "{err}");
        assert_eq!(
            problem.location.path,
            "connections[0].parameters.ApiKey.environments.production"
        );
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("sk_live"), "{format:?} leaked: {shown}");
    }
    // A number is a literal too, and is not repeated either.
    let err = Manifest::parse(
        r#"{"project": "acme", "connections": [{"name": "x", "parameters": {"Pin": {"secret": true, "default": 918273}}}]}"#,
        Format::Json,
        "acme.json",
    )
    .unwrap_err();
    assert!(matches!(err.problems()[0].rule, Rule::LiteralSecret));
    assert!(!format!("{err} {err:?}").contains("918273"));
}

#[test]
fn a_secret_in_the_wrong_field_is_not_repeated_by_the_parser() {
    let err = Manifest::parse(
        "project = \"acme\"\n[[connections]]\nname = \"x\"\n[connections.parameters.K]\nsecret = \"sk_live_abcdef\"\n",
        Format::Toml,
        "acme.toml",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("acme.toml: connections[0].parameters.K.secret (line 5 column 10): invalid type"),
        "{text}"
    );
    assert!(!text.contains("sk_live"), "{text}");
    let err = Manifest::parse(
        r#"{"project": "acme", "connections": [{"name": "x", "parameters": {"K": {"optional": "sk_live_abcdef"}}}]}"#,
        Format::Json,
        "acme.json",
    )
    .unwrap_err();
    assert!(!err.to_string().contains("sk_live"), "{err}");
}

#[test]
fn shape_errors_point_at_the_field_with_line_and_column() {
    let text = err_text(yaml("project: acme\nconnections:\n  - name: x\n    bogus: 1\n"));
    assert_eq!(
        text,
        "acme.yaml: connections[0] (line 4 column 5): unknown field (not repeated here), expected one of name, \
         integration, description, target, auth, client, type, template, builder, parameters"
    );
    let text = err_text(yaml("project: acme\nconnections: [\n"));
    assert!(
        text.starts_with("acme.yaml: connections (line 2 column 14): "),
        "{text}"
    );
    let text = err_text(Manifest::parse(
        "project = \"acme\"\nx = [\n",
        Format::Toml,
        "acme.toml",
    ));
    assert!(text.starts_with("acme.toml: line 2 column 6: "), "{text}");
}

#[test]
fn a_key_given_twice_is_refused_in_every_format() {
    let text = err_text(yaml(
        "project: acme\nconnections:\n  - name: x\n    parameters:\n      K: {default: a}\n      K: {default: b}\n",
    ));
    assert!(
        text.contains("connections[0].parameters (line 5 column 7)"),
        "{text}"
    );
    assert!(text.contains("the key #2 is given more than once"), "{text}");
    // serde_json alone would keep the last one silently.
    let text = err_text(Manifest::parse(
        r#"{"project": "acme", "connections": [{"name": "x", "parameters": {"K": {}, "K": {}}}]}"#,
        Format::Json,
        "acme.json",
    ));
    assert!(text.contains("the key #2 is given more than once"), "{text}");
}

#[test]
fn floats_must_be_quoted_but_integers_and_yaml_text_are_kept() {
    let text = err_text(Manifest::parse(
        "project = \"acme\"\n[[connections]]\nname = \"x\"\n[connections.parameters.V]\ndefault = 1.10\n",
        Format::Toml,
        "acme.toml",
    ));
    assert!(text.contains("connections[0].parameters.V.default"), "{text}");
    assert!(text.contains("quote it"), "{text}");
    let m = yaml("project: acme\nconnections:\n  - name: x\n    parameters:\n      V: {default: 1.10}\n      N: {default: 0042}\n")
        .unwrap();
    let params = &m.document().connections[0].parameters;
    assert_eq!(
        params.get("V").unwrap().default.as_ref().unwrap().as_str(),
        "1.10"
    );
    assert_eq!(
        params.get("N").unwrap().default.as_ref().unwrap().as_str(),
        "0042"
    );
}

#[test]
fn model_rules_are_checked_with_the_connection_path() {
    let err = yaml(
        "project: acme\nconnections:\n  - name: db\n    target: { database: postgresql }\n    parameters:\n      HostName: { default: h }\n\
         \x20 - name: inv\n    target: { external: inventory }\n    auth: oauth2\n    client: shared\n\
         \x20 - name: key\n    auth: api-key\n    client: dedicated\n",
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("acme.yaml: connections[0]: a postgresql database connection needs parameter Port"),
        "{text}"
    );
    assert!(
        text.contains("acme.yaml: connections[1]: a managed oauth application only serves platform"),
        "{text}"
    );
    assert!(
        text.contains("acme.yaml: connections[2].client: `client` only applies to `auth: oauth2`"),
        "{text}"
    );
    assert!(
        text.contains("acme.yaml: connections[2]: a api-key connection needs at least one secret parameter"),
        "{text}"
    );
}

#[test]
fn mappings_must_name_declared_connections_and_parameters() {
    let base = "project: acme\nconnections:\n  - name: crm\n    integration: billing\n    parameters:\n      URL: {default: u}\n  - name: sms\n    parameters:\n      URL: {default: u}\nintegrations:\n  orders:\n    connections:\n";
    // `crm` belongs to integration billing: invisible to orders.
    let text = err_text(yaml(&format!("{base}      - connection: crm\n")));
    assert!(text.contains("integrations.orders.connections[0].connection: integration orders can see no connection named crm"), "{text}");
    let text = err_text(yaml(&format!(
        "{base}      - connection: sms\n        env: [{{from: Nope, to: X}}]\n"
    )));
    assert!(
        text.contains("integrations.orders.connections[0].env[0].from: connection sms has no parameter Nope"),
        "{text}"
    );
    let text = err_text(yaml(&format!(
        "{base}      - connection: sms\n        scope: integration\n"
    )));
    assert!(
        text.contains("can see no connection named sms at integration scope (orders)"),
        "{text}"
    );
    let text = err_text(yaml(&format!(
        "{base}      - connection: sms\n        connectionConfig: sms\n"
    )));
    assert!(
        text.contains("give exactly one of `connection` (a name) and `connectionConfig` (an ID)"),
        "{text}"
    );
    let text = err_text(yaml(&format!(
        "{base}      - connection: sms\n        env: [{{from: URL, to: 1BAD}}]\n"
    )));
    assert!(
        text.contains("integrations.orders.connections[0].env[0].to: invalid environment variable name"),
        "{text}"
    );
    // Choreo's connectionConfig accepts a name too.
    assert!(yaml(&format!("{base}      - connectionConfig: sms\n")).is_ok());
}

#[test]
fn unsupported_versions_and_unknown_formats_are_refused() {
    let text = err_text(yaml("version: 2\nproject: acme\n"));
    assert_eq!(
        text,
        "acme.yaml: version: unsupported manifest version \"2\" (this crate reads version 1)"
    );
    let err = Manifest::load("examples/manifests/secrets/README.md").unwrap_err();
    assert!(matches!(err, ManifestError::UnknownFormat { .. }), "{err}");
    let err = Manifest::load("examples/manifests/missing.yaml").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("cannot read manifest examples/manifests/missing.yaml: "),
        "{err}"
    );
}
