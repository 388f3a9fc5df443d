//! Kubernetes objects for a resolved environment (feature `kubernetes`,
//! [`k8s-openapi`](k8s_openapi) types).
//!
//! A container's `env` list where every secret comes from a Secret through
//! `secretKeyRef`, and every plain value is either written literally or taken
//! from a ConfigMap through `configMapKeyRef`; plus the Secret and ConfigMap
//! themselves. Apply the objects with any client (`kube`, `kubectl apply -f`),
//! then put [`KubernetesEnv::env`] into the pod template.
//!
//! connective picks no Kubernetes version: like every library on
//! `k8s-openapi`, it leaves that to the binary, which enables one version
//! feature on its own dependency, e.g.
//! `k8s-openapi = { version = "0.29", features = ["latest"] }`.
//!
//! ```
//! use connective::fixture::Fixture;
//! use connective::model::Param;
//! use connective::output::kubernetes::{KubernetesOptions, PlainValues, to_kubernetes};
//!
//! let fx = Fixture::project("acme")
//!     .connection("twilio", |c| {
//!         c.param(Param::plain("ServiceURL").default("https://api.twilio.com"))
//!             .param(Param::secret("ApiKey").default("sk_live"))
//!     })
//!     .mappings("orders", |m| m.by_name("twilio", [("ServiceURL", "SMS_URL"), ("ApiKey", "SMS_KEY")]))
//!     .build()?;
//! let env = fx.resolve("orders", "production")?;
//! let out = to_kubernetes(&env, &KubernetesOptions::new("orders-connections")?)?;
//! assert_eq!(out.env[0].value.as_deref(), Some("https://api.twilio.com"));
//! let key_ref = out.env[1].value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
//! assert_eq!((key_ref.name.as_str(), key_ref.key.as_str()), ("orders-connections", "SMS_KEY"));
//! assert!(format!("{out:?}").find("sk_live").is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapKeySelector, EnvVar, EnvVarSource, Secret, SecretKeySelector,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::OutputError;
use crate::resolve::{ResolvedEnv, ResolvedValueRef};

/// Where plain values go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PlainValues {
    /// Written into the container's `env` as `value` (the default).
    #[default]
    Literal,
    /// Kept in a ConfigMap and referenced with `configMapKeyRef`.
    ConfigMap,
}

/// Names and placement of the objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesOptions {
    name: String,
    namespace: Option<String>,
    plain: PlainValues,
}

fn valid_object_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(ok_char)
        && alnum(name.chars().next())
        && alnum(name.chars().last())
}

impl KubernetesOptions {
    /// The Secret and the ConfigMap are both called `name` (a DNS subdomain
    /// name: lower-case letters, digits, `-` and `.`).
    pub fn new(name: &str) -> Result<Self, OutputError> {
        if !valid_object_name(name) {
            return Err(OutputError::ObjectName { name: name.into() });
        }
        Ok(KubernetesOptions {
            name: name.to_owned(),
            namespace: None,
            plain: PlainValues::Literal,
        })
    }

    /// Puts the objects in `namespace`.
    pub fn namespace(mut self, namespace: &str) -> Result<Self, OutputError> {
        if !valid_object_name(namespace) || namespace.contains('.') || namespace.len() > 63 {
            return Err(OutputError::ObjectName {
                name: namespace.into(),
            });
        }
        self.namespace = Some(namespace.to_owned());
        Ok(self)
    }

    /// Where plain values go.
    pub fn plain_values(mut self, plain: PlainValues) -> Self {
        self.plain = plain;
        self
    }
}

/// A container's `env` list and the objects it refers to.
///
/// **The Secret holds secret values** (base64 is no protection). This
/// type's `Debug` lists keys only.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub struct KubernetesEnv {
    /// The container's `env`, in mapping order.
    pub env: Vec<EnvVar>,
    /// The Secret with every secret value, if there is any.
    pub secret: Option<Secret>,
    /// The ConfigMap with the plain values, with [`PlainValues::ConfigMap`]
    /// and at least one plain value.
    pub config_map: Option<ConfigMap>,
}

impl fmt::Debug for KubernetesEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys =
            |m: Option<&BTreeMap<String, ByteString>>| m.map(|m| m.keys().cloned().collect::<Vec<_>>());
        f.debug_struct("KubernetesEnv")
            .field(
                "env",
                &self.env.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            )
            .field(
                "secret_keys",
                &keys(self.secret.as_ref().and_then(|s| s.data.as_ref())),
            )
            .field(
                "config_map_keys",
                &self
                    .config_map
                    .as_ref()
                    .and_then(|c| c.data.as_ref())
                    .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            )
            .finish()
    }
}

fn metadata(env: &ResolvedEnv, options: &KubernetesOptions) -> ObjectMeta {
    let request = env.request();
    let mut annotations = BTreeMap::from([
        ("connective/project".to_owned(), request.project.to_string()),
        (
            "connective/integration".to_owned(),
            request.integration.to_string(),
        ),
        (
            "connective/environment".to_owned(),
            request.environment.to_string(),
        ),
        ("connective/revision".to_owned(), env.revision().0.to_string()),
    ]);
    if let Some(c) = &request.customer {
        annotations.insert("connective/customer".to_owned(), c.to_string());
    }
    ObjectMeta {
        name: Some(options.name.clone()),
        namespace: options.namespace.clone(),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_owned(),
            "connective".to_owned(),
        )])),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

/// The most characters a Secret or ConfigMap key may have.
pub const MAX_KEY_LEN: usize = 253;

/// `value` as a container `env` entry's literal `value`, which the kubelet
/// expands: `$(NAME)` becomes the value of the container's variable `NAME`
/// (a secret, perhaps) and `$$` becomes `$`. Every `$` is doubled, so the
/// expansion gives back exactly `value`, as the EnvVar API documents
/// ("`$$(VAR_NAME)` will produce the string literal `$(VAR_NAME)`").
///
/// ```
/// use connective::output::kubernetes::escape_env_value;
/// assert_eq!(escape_env_value("https://x/$(SMS_KEY)"), "https://x/$$(SMS_KEY)");
/// assert_eq!(escape_env_value("no dollar"), "no dollar");
/// ```
pub fn escape_env_value(value: &str) -> String {
    value.replace('$', "$$")
}

/// The container `env` list, Secret and ConfigMap for `env`.
///
/// Variable names are valid keys of both objects (`[A-Za-z_][A-Za-z0-9_]*`)
/// up to [`MAX_KEY_LEN`] characters; a longer one that would become a key is
/// refused with [`OutputError::KeyTooLong`]. A literal plain value is escaped
/// with [`escape_env_value`], so the container sees it unchanged; values in
/// the Secret and the ConfigMap are not expanded by the kubelet and are kept
/// as they are.
pub fn to_kubernetes(env: &ResolvedEnv, options: &KubernetesOptions) -> Result<KubernetesEnv, OutputError> {
    let mut vars = Vec::with_capacity(env.len());
    let mut secret_data: BTreeMap<String, ByteString> = BTreeMap::new();
    let mut plain_data: BTreeMap<String, String> = BTreeMap::new();
    for var in env {
        let name = var.name().to_string();
        if var.value().expose().contains('\0') {
            return Err(OutputError::NulByte {
                variable: var.name().clone(),
            });
        }
        let becomes_key = var.value().is_secret() || options.plain == PlainValues::ConfigMap;
        if becomes_key && name.len() > MAX_KEY_LEN {
            return Err(OutputError::KeyTooLong {
                variable: var.name().clone(),
                max: MAX_KEY_LEN,
            });
        }
        let (value, value_from) = match (var.value(), options.plain) {
            (ResolvedValueRef::Secret(s), _) => {
                secret_data.insert(name.clone(), ByteString(s.expose().as_bytes().to_vec()));
                let selector = SecretKeySelector {
                    name: options.name.clone(),
                    key: name.clone(),
                    optional: None,
                };
                (
                    None,
                    Some(EnvVarSource {
                        secret_key_ref: Some(selector),
                        ..EnvVarSource::default()
                    }),
                )
            }
            (ResolvedValueRef::Plain(p), PlainValues::Literal) => (Some(escape_env_value(p)), None),
            (ResolvedValueRef::Plain(p), PlainValues::ConfigMap) => {
                plain_data.insert(name.clone(), p.to_string());
                let selector = ConfigMapKeySelector {
                    name: options.name.clone(),
                    key: name.clone(),
                    optional: None,
                };
                (
                    None,
                    Some(EnvVarSource {
                        config_map_key_ref: Some(selector),
                        ..EnvVarSource::default()
                    }),
                )
            }
        };
        vars.push(EnvVar {
            name,
            value,
            value_from,
        });
    }
    let secret = (!secret_data.is_empty()).then(|| Secret {
        metadata: metadata(env, options),
        type_: Some("Opaque".to_owned()),
        data: Some(secret_data),
        ..Secret::default()
    });
    let config_map = (!plain_data.is_empty()).then(|| ConfigMap {
        metadata: metadata(env, options),
        data: Some(plain_data),
        ..ConfigMap::default()
    });
    Ok(KubernetesEnv {
        env: vars,
        secret,
        config_map,
    })
}
