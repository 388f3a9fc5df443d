//! Kubernetes output: the container `env`, Secret and ConfigMap are valid
//! Kubernetes objects (they survive serializing and deserializing into the
//! `k8s-openapi` types) and wire every variable to the right place.
#![cfg(feature = "kubernetes")]

use connective::fixture::Fixture;
use connective::model::Param;
use connective::output::kubernetes::{KubernetesOptions, PlainValues, to_kubernetes};
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret};

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
