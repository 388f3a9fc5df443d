//! Kubernetes output: the container `env`, Secret and ConfigMap are valid
//! Kubernetes objects (the k8s-openapi types round-trip them, and
//! `kubernetes-validate` checks them against the real OpenAPI schemas of
//! Kubernetes 1.33 and 1.37), wire every variable to the right place, and
//! carry every plain value through the kubelet's `$(VAR)` expansion
//! unchanged.

use std::collections::HashMap;
use std::process::Command;

use connective::fixture::Fixture;
use connective::model::Param;
use connective::output::OutputError;
use connective::output::kubernetes::{
    KubernetesEnv, KubernetesOptions, MAX_KEY_LEN, PlainValues, escape_env_value, to_kubernetes,
};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Secret};
use proptest::prelude::*;

fn fixture() -> Fixture {
    Fixture::project("acme")
        .connection("twilio", |c| {
            c.param(Param::plain("ServiceURL").default("https://api.twilio.com"))
                .param(Param::secret("ApiKey").env("production", "sk_live_42\nwith newline"))
        })
        .connection("db", |c| {
            c.param(Param::plain("Host").default("db.internal"))
                .param(Param::secret("Password").customer("globex", "pw-globex"))
        })
        .mappings("orders", |m| {
            m.by_name("twilio", [("ServiceURL", "SMS_URL"), ("ApiKey", "SMS_KEY")])
                .by_name("db", [("Host", "DB_HOST"), ("Password", "DB_PASSWORD")])
        })
        .build()
        .expect("fixture")
}

fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> (T, serde_json::Value) {
    let json = serde_json::to_value(value).expect("serializes");
    let back: T = serde_json::from_value(json.clone()).expect("deserializes into the k8s-openapi type");
    (back, json)
}

#[test]
fn secrets_come_from_a_secret_and_plain_values_are_literal() {
    let fx = fixture();
    let env = fx
        .resolve_for("orders", "production", "globex")
        .expect("resolves");
    let out = to_kubernetes(
        &env,
        &KubernetesOptions::new("orders-env")
            .unwrap()
            .namespace("prod")
            .unwrap(),
    )
    .expect("objects");

    let container = Container {
        name: "orders".into(),
        image: Some("example/orders:1".into()),
        env: Some(out.env.clone()),
        ..Container::default()
    };
    let (back, json) = round_trip(&container);
    assert_eq!(back, container);
    let env_json = &json["env"];
    assert_eq!(
        env_json[0],
        serde_json::json!({"name": "SMS_URL", "value": "https://api.twilio.com"})
    );
    assert_eq!(
        env_json[1],
        serde_json::json!({"name": "SMS_KEY", "valueFrom": {"secretKeyRef": {"name": "orders-env", "key": "SMS_KEY"}}})
    );
    assert_eq!(env_json[3]["valueFrom"]["secretKeyRef"]["key"], "DB_PASSWORD");

    let secret = out.secret.as_ref().expect("a secret");
    let (back, json) = round_trip(secret);
    assert_eq!(&back, secret);
    assert_eq!(json["apiVersion"], "v1");
    assert_eq!(json["kind"], "Secret");
    assert_eq!(json["type"], "Opaque");
    assert_eq!(json["metadata"]["name"], "orders-env");
    assert_eq!(json["metadata"]["namespace"], "prod");
    assert_eq!(json["metadata"]["annotations"]["connective/customer"], "globex");
    let data = back.data.expect("data");
    assert_eq!(data["SMS_KEY"].0, b"sk_live_42\nwith newline");
    assert_eq!(data["DB_PASSWORD"].0, b"pw-globex");
    assert_eq!(data.len(), 2, "only secrets go into the Secret");
    assert!(out.config_map.is_none(), "literal plain values need no ConfigMap");
}

#[test]
fn plain_values_can_come_from_a_config_map() {
    let fx = fixture();
    let env = fx
        .resolve_for("orders", "production", "globex")
        .expect("resolves");
    let options = KubernetesOptions::new("orders-env")
        .unwrap()
        .plain_values(PlainValues::ConfigMap);
    let out = to_kubernetes(&env, &options).expect("objects");
    let cm: &ConfigMap = out.config_map.as_ref().expect("a config map");
    let (back, json) = round_trip(cm);
    assert_eq!(&back, cm);
    assert_eq!(json["kind"], "ConfigMap");
    assert_eq!(
        json["data"],
        serde_json::json!({"SMS_URL": "https://api.twilio.com", "DB_HOST": "db.internal"})
    );
    let (_, container) = round_trip(&Container {
        name: "orders".into(),
        env: Some(out.env.clone()),
        ..Container::default()
    });
    assert_eq!(
        container["env"][0]["valueFrom"],
        serde_json::json!({"configMapKeyRef": {"name": "orders-env", "key": "SMS_URL"}})
    );
    let secret: &Secret = out.secret.as_ref().expect("a secret");
    assert_eq!(secret.data.as_ref().map(|d| d.len()), Some(2));
}

#[test]
fn debug_lists_keys_never_secret_values() {
    let fx = fixture();
    let env = fx
        .resolve_for("orders", "production", "globex")
        .expect("resolves");
    let out = to_kubernetes(&env, &KubernetesOptions::new("orders-env").unwrap()).expect("objects");
    let debug = format!("{out:?}");
    assert!(debug.contains("SMS_KEY"), "{debug}");
    for secret in ["sk_live_42", "pw-globex"] {
        assert!(!debug.contains(secret), "{debug}");
    }
}

#[test]
fn object_names_must_be_dns_subdomain_names() {
    for bad in ["", "Orders", "orders_env", "-orders", "orders-", &"a".repeat(254)] {
        let err = KubernetesOptions::new(bad).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid kubernetes object name"),
            "{err}"
        );
    }
    assert!(KubernetesOptions::new("orders.env-1").is_ok());
    assert!(KubernetesOptions::new("ok").unwrap().namespace("a.b").is_err());
}

/// The kubelet's expansion of a container `env` entry's `value` (Kubernetes'
/// `third_party/forked/golang/expansion`), restated: `$$` is one `$`,
/// `$(NAME)` is `NAME`'s value if `lookup` knows it and stays as written
/// otherwise, an unclosed `$(` and any other `$` stay as written.
fn kubelet_expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' || i + 1 == bytes.len() {
            let next = input[i..].chars().next().expect("a char");
            out.push(next);
            i += next.len_utf8();
            continue;
        }
        match bytes[i + 1] {
            b'$' => {
                out.push('$');
                i += 2;
            }
            b'(' => match input[i + 2..].find(')') {
                Some(end) => {
                    let name = &input[i + 2..i + 2 + end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => out.push_str(&input[i..i + 3 + end]),
                    }
                    i += 3 + end;
                }
                None => {
                    out.push_str("$(");
                    i += 2;
                }
            },
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    out
}

/// What the container's process sees: each `env` entry in order, a literal
/// `value` expanded against the entries before it (and `service` variables),
/// a reference taken from the Secret or ConfigMap as stored.
fn container_sees(out: &KubernetesEnv, service: &HashMap<&str, &str>) -> HashMap<String, String> {
    let mut seen: HashMap<String, String> = HashMap::new();
    let secret = out
        .secret
        .as_ref()
        .and_then(|s| s.data.clone())
        .unwrap_or_default();
    let config = out
        .config_map
        .as_ref()
        .and_then(|c| c.data.clone())
        .unwrap_or_default();
    for var in &out.env {
        let value = match (&var.value, &var.value_from) {
            (Some(v), None) => {
                let lookup = |name: &str| {
                    seen.get(name)
                        .cloned()
                        .or_else(|| service.get(name).map(|v| v.to_string()))
                };
                kubelet_expand(v, &lookup)
            }
            (None, Some(from)) => {
                if let Some(s) = &from.secret_key_ref {
                    String::from_utf8(secret[&s.key].0.clone()).expect("utf-8")
                } else {
                    config[&from.config_map_key_ref.as_ref().expect("a reference").key].clone()
                }
            }
            other => panic!("an env entry with {other:?}"),
        };
        seen.insert(var.name.clone(), value);
    }
    seen
}

/// Kubernetes' own test vectors for its expansion, with its mapping
/// (`VAR_A`=A, `VAR_B`=B, `VAR_C`=C, `VAR_REF`=`$(VAR_A)`, `VAR_EMPTY` empty).
#[test]
fn the_expansion_model_agrees_with_kubernetes_own_vectors() {
    let context: HashMap<&str, &str> = HashMap::from([
        ("VAR_A", "A"),
        ("VAR_B", "B"),
        ("VAR_C", "C"),
        ("VAR_REF", "$(VAR_A)"),
        ("VAR_EMPTY", ""),
    ]);
    let lookup = |name: &str| context.get(name).map(|v| v.to_string());
    let vectors = [
        ("$(VAR_A)", "A"),
        ("$(VAR_A)-$(VAR_A)", "A-A"),
        ("$(VAR_A)-1", "A-1"),
        ("___$(VAR_B)___", "___B___"),
        ("___$(VAR_C)", "___C"),
        ("$(VAR_A)_$(VAR_B)_$(VAR_C)", "A_B_C"),
        ("$$(VAR_B)_$(VAR_A)", "$(VAR_B)_A"),
        ("$$(VAR_A)_$$(VAR_B)", "$(VAR_A)_$(VAR_B)"),
        ("f000-$$VAR_A", "f000-$VAR_A"),
        ("foo\\$(VAR_C)bar", "foo\\Cbar"),
        ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
        ("foo\\\\\\\\$(VAR_A)bar", "foo\\\\\\\\Abar"),
        ("$(VAR_A$(VAR_B))", "$(VAR_A$(VAR_B))"),
        ("$(VAR_A$(VAR_B)", "$(VAR_A$(VAR_B)"),
        ("$(VAR_REF)", "$(VAR_A)"),
        ("%%$(VAR_REF)--$(VAR_REF)%%", "%%$(VAR_A)--$(VAR_A)%%"),
        ("foo$(VAR_EMPTY)bar", "foobar"),
        ("foo$(VAR_Awhoops!", "foo$(VAR_Awhoops!"),
        ("f00__(VAR_A)__", "f00__(VAR_A)__"),
        ("$?_boo_$!", "$?_boo_$!"),
        ("$VAR_A", "$VAR_A"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
        ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
        ("$$$$$$$(GOOD_ODDS)", "$$$$(GOOD_ODDS)"),
        ("$$$$$$$(VAR_A)", "$$$A"),
        ("$VAR_A)", "$VAR_A)"),
        ("${VAR_A}", "${VAR_A}"),
        ("$(VAR_B)_______$(A", "B_______$(A"),
        ("$(VAR_C)_______$(", "C_______$("),
        ("$(VAR_A)foobarzab$", "Afoobarzab$"),
        ("foo-\\$(VAR_A", "foo-\\$(VAR_A"),
        ("--$($($($($--", "--$($($($($--"),
        ("$($($($($--foo$(", "$($($($($--foo$("),
        ("foo0--$($($($(", "foo0--$($($($("),
        ("$(foo$$var)", "$(foo$$var)"),
        ("\n", "\n"),
    ];
    for (input, expected) in vectors {
        assert_eq!(kubelet_expand(input, &lookup), expected, "{input:?}");
    }
}

#[test]
fn a_plain_value_naming_a_secret_variable_reaches_the_container_literally() {
    let fx = Fixture::project("acme")
        .connection("twilio", |c| {
            c.param(Param::secret("ApiKey").default("sk_live_42"))
                .param(Param::plain("ServiceURL").default("https://x/$(SMS_KEY)"))
                .param(Param::plain("Price").default("$$5 or $(HOME) or $"))
        })
        .mappings("orders", |m| {
            m.by_name(
                "twilio",
                [
                    ("ApiKey", "SMS_KEY"),
                    ("ServiceURL", "SMS_URL"),
                    ("Price", "PRICE"),
                ],
            )
        })
        .build()
        .expect("fixture");
    let env = fx.resolve("orders", "production").expect("resolves");
    let out = to_kubernetes(&env, &KubernetesOptions::new("orders-env").unwrap()).expect("objects");
    assert_eq!(out.env[1].value.as_deref(), Some("https://x/$$(SMS_KEY)"));
    let seen = container_sees(&out, &HashMap::from([("HOME", "/root")]));
    assert_eq!(
        seen["SMS_URL"], "https://x/$(SMS_KEY)",
        "the secret leaked into a plain variable"
    );
    assert_eq!(seen["PRICE"], "$$5 or $(HOME) or $");
    assert_eq!(seen["SMS_KEY"], "sk_live_42");

    // ConfigMap values are not expanded, so they are kept as they are.
    let options = KubernetesOptions::new("orders-env")
        .unwrap()
        .plain_values(PlainValues::ConfigMap);
    let out = to_kubernetes(&env, &options).expect("objects");
    let data = out
        .config_map
        .as_ref()
        .and_then(|c| c.data.as_ref())
        .expect("data");
    assert_eq!(data["SMS_URL"], "https://x/$(SMS_KEY)");
    assert_eq!(
        container_sees(&out, &HashMap::new())["SMS_URL"],
        "https://x/$(SMS_KEY)"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever `$`, parentheses and names a value holds, the container sees it
    /// unchanged, even when every name it mentions is a variable.
    #[test]
    fn any_escaped_value_expands_to_itself(value in "[$()A-Z_a-z\\\\ é]{0,24}") {
        let vars: HashMap<&str, &str> =
            HashMap::from([("A", "secret-a"), ("B_", "secret-b"), ("", "empty-name"), ("$", "dollar")]);
        let lookup = |name: &str| vars.get(name).map(|v| v.to_string());
        prop_assert_eq!(kubelet_expand(&escape_env_value(&value), &lookup), value);
    }
}

#[test]
fn a_name_longer_than_a_secret_key_is_refused_naming_it() {
    let long = format!("K{}", "_".repeat(MAX_KEY_LEN));
    let fits = format!("K{}", "_".repeat(MAX_KEY_LEN - 1));
    let fx = Fixture::project("acme")
        .connection("svc", |c| {
            c.param(Param::secret("Token").default("t0k3n"))
                .param(Param::plain("Url").default("https://svc"))
        })
        .mappings("long-secret", |m| m.by_name("svc", [("Token", long.as_str())]))
        .mappings("fits", |m| m.by_name("svc", [("Token", fits.as_str())]))
        .mappings("long-plain", |m| m.by_name("svc", [("Url", long.as_str())]))
        .build()
        .expect("fixture");
    let options = KubernetesOptions::new("svc-env").unwrap();
    let err = to_kubernetes(&fx.resolve("long-secret", "production").unwrap(), &options).unwrap_err();
    assert!(matches!(&err, OutputError::KeyTooLong { variable, max: 253 } if variable.as_str() == long));
    assert_eq!(
        err.to_string(),
        format!(
            "variable {long} is longer than a kubernetes secret or config map key may be (253 characters)"
        )
    );
    assert!(!err.to_string().contains("t0k3n"));

    let out = to_kubernetes(&fx.resolve("fits", "production").unwrap(), &options).expect("253 fits");
    assert!(out.secret.unwrap().data.unwrap().contains_key(&fits));

    // A literal plain value makes no key; in a ConfigMap it does.
    let plain = fx.resolve("long-plain", "production").unwrap();
    assert!(to_kubernetes(&plain, &options).is_ok());
    let err = to_kubernetes(&plain, &options.clone().plain_values(PlainValues::ConfigMap)).unwrap_err();
    assert!(matches!(err, OutputError::KeyTooLong { .. }), "{err}");
}

/// Runs `kubernetes-validate --strict` for Kubernetes `version` on `files`.
fn kubernetes_validate(
    tool: &std::path::Path,
    version: &str,
    files: &[std::path::PathBuf],
) -> (bool, String) {
    let out = Command::new(tool)
        .args(["--strict", "--kubernetes-version", version])
        .args(files)
        .output()
        .expect("kubernetes-validate runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_objects_pass_kubernetes_validate_for_1_33_and_1_37() {
    let Some(tool) = crate::support::readers::kubernetes_validate() else {
        return;
    };
    let fx = fixture();
    let env = fx
        .resolve_for("orders", "production", "globex")
        .expect("resolves");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = Vec::new();
    for plain in [PlainValues::Literal, PlainValues::ConfigMap] {
        let options = KubernetesOptions::new("orders-env")
            .unwrap()
            .namespace("prod")
            .unwrap()
            .plain_values(plain);
        let out = to_kubernetes(&env, &options).expect("objects");
        let pod = Pod {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("orders".into()),
                namespace: Some("prod".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "orders".into(),
                    image: Some("example/orders:1".into()),
                    env: Some(out.env.clone()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        };
        let mut write = |name: String, json: serde_json::Value| {
            let path = dir.path().join(name);
            std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
            files.push(path);
        };
        write(format!("pod-{plain:?}.json"), serde_json::to_value(&pod).unwrap());
        write(
            format!("secret-{plain:?}.json"),
            serde_json::to_value(out.secret.as_ref().unwrap()).unwrap(),
        );
        if let Some(cm) = &out.config_map {
            write(
                format!("config-map-{plain:?}.json"),
                serde_json::to_value(cm).unwrap(),
            );
        }
    }
    assert_eq!(files.len(), 5);
    for version in ["1.33.0", "1.37.0"] {
        let (ok, text) = kubernetes_validate(&tool, version, &files);
        assert!(ok, "kubernetes {version}:\n{text}");
    }

    // The validator does refuse a broken object (an env value that is not a string).
    let bad = dir.path().join("bad.json");
    let mut pod: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    pod["spec"]["containers"][0]["env"][0]["value"] = serde_json::json!(5);
    std::fs::write(&bad, pod.to_string()).unwrap();
    let (ok, text) = kubernetes_validate(&tool, "1.37.0", &[bad]);
    assert!(!ok, "a broken pod passed:\n{text}");
}
