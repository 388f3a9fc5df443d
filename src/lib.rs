//! Connections for integration platforms.
//!
//! `connective` keeps the *connections* that integrations use, decides which
//! connection an integration gets (integration scope shadows project scope),
//! shares OAuth applications the way Choreo/Devant do, and turns it all into the
//! environment variables a host injects, each with its provenance.
//!
//! # A guided tour
//!
//! **1. Identifiers are parsed once** ([`model`]). Every identifier is a
//! validated newtype; a bad one is a [`model::ParseError`] saying which rule
//! failed.
//!
//! ```
//! use connective::model::{ConnectionName, ParseError};
//! let err = "bad name".parse::<ConnectionName>().unwrap_err();
//! assert!(matches!(err, ParseError::BadChar { position: 3, .. }));
//! ```
//!
//! **2. Connections have a scope, a target, an auth scheme and ordered
//! parameters** whose values are layered: default, per environment, per
//! customer, per (customer, environment). Builders collect every problem and
//! report them together from `build()`.
//!
//! ```
//! use connective::prelude::*;
//! let spec = ConnectionSpec::integration("acme", "orders", "legacy-crm")
//!     .target(Target::external("legacy-crm"))
//!     .auth(AuthScheme::Basic)
//!     .param(Param::plain("ServiceURL").default("https://crm.example.com"))
//!     .param(Param::secret("Password").env("production", "p").env("test", "t"))
//!     .build()?;
//! assert_eq!(spec.scope(), &Scope::Integration("orders".parse()?));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **3. The [`registry::Registry`] is the front door for writes.** Each write is
//! validated, computed in memory (OAuth applications provisioned through an
//! [`oauth::OAuthProvisioner`]), committed atomically to a [`store::Store`] with
//! expected versions, and published to the lock-free [`catalog::Catalog`].
//!
//! ```
//! use connective::prelude::*;
//! let registry = Registry::in_memory();
//! let (id, _) = registry.create_connection(
//!     ConnectionSpec::project("acme", "inventory")
//!         .platform_target("acme", "inventory-api")
//!         .auth(AuthScheme::OAuth2(OAuthClient::Shared))
//!         .param(Param::plain("ServiceURL").default("https://internal/inventory"))
//!         .build()?,
//! )?;
//! // The project's shared OAuth application was provisioned with it.
//! let app = registry.oauth_app(&"acme".parse()?, &AppOwner::Project).unwrap();
//! assert_eq!(app.users, vec![id]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **4. Integrations map parameters to variables**, by connection name or
//! Connection ID, explicitly (`from`/`to`) or with default names
//! (`PREFIX_CONNECTION_PARAM`).
//!
//! **5. Resolution** ([`resolve`]) is a pure function of a catalog snapshot:
//! visibility → precedence → values → mapping. The result is a
//! [`resolve::ResolvedEnv`] whose every variable explains itself; `Display`
//! redacts secrets, and [`resolve::ResolvedEnv::apply_to`] hands them to a child
//! process without the host touching them. Every problem of a resolution is
//! reported at once.
//!
//! ```
//! use connective::fixture::Fixture;
//! use connective::model::Param;
//! let fx = Fixture::project("acme")
//!     .prefix("CHOREO")
//!     .connection("twilio", |c| c.param(Param::secret("ApiKey").default("k")))
//!     .mappings("orders", |m| m.by_name_defaults("twilio"))
//!     .build()?;
//! let env = fx.resolve("orders", "production")?;
//! let why = env.provenance("CHOREO_TWILIO_APIKEY").unwrap();
//! assert_eq!(why.to_string().split(": ").last(), Some("default value (default variable name)"));
//! # Ok::<(), connective::fixture::FixtureError>(())
//! ```
//!
//! **6. Tests stay short** with [`fixture::Fixture`], which also implements
//! [`resolve::Resolver`] so host code written against the trait can be unit
//! tested.
//!
//! # Design
//!
//! The API documentation cites the library's guarantees as "rule 1" to
//! "rule 12". They are stated, with the vocabulary, the layers and where each
//! rule lives in the code, in [`architecture`] (also `docs/architecture.md`
//! in the repository).
//!
//! # Features
//!
//! | feature | adds |
//! | --- | --- |
//! | *(default)* | everything above, with the in-memory store |
//! | `sqlite` | `SqliteStore`: one durable file |
//! | `async` | async forms of every write, `sync` and `follow` (tokio), and the `AsyncStore` trait |
//! | `postgres` | `PostgresStore`: many replicas on one database (`tokio-postgres`, a pool, rustls TLS; brings `async`) |
//! | `test-kit` | the `Store` conformance suite, for your own backend too (with `external-secrets`, the `SecretStore` one too) |
//! | `external-secrets` | `SecretStore` and `SecretCache`: secrets referenced in an external store (`vault:secret/crm#password`), resolved from a cache kept fresh in the background |
//! | `vault` | the built-in HashiCorp Vault / OpenBao KV version 2 client, token and AppRole (reqwest, rustls; brings `external-secrets`) |
//! | `manifest` | declarative YAML/TOML/JSON manifests: plan, apply, export |
//! | `kubernetes` | a container's `env`, Secret and ConfigMap as `k8s-openapi` types |
//! | `tracing` | spans on resolution and writes (identifiers only) |
//! | `cli` | the `connective` command-line program (a binary; the library's API does not change) |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[doc = include_str!("../docs/architecture.md")]
pub mod architecture {}
mod block_on;
pub mod catalog;
mod deadline;
#[cfg(feature = "external-secrets")]
pub mod external;
pub mod fixture;
#[cfg(feature = "manifest")]
pub mod manifest;
pub mod model;
pub mod oauth;
pub mod output;
pub mod registry;
pub mod resolve;
pub mod store;
#[cfg(feature = "test-kit")]
pub mod test_kit;

/// The names most hosts need, in one `use`.
pub mod prelude {
    pub use crate::model::{
        AppOwner, AuthScheme, ConnectionId, ConnectionSpec, ConnectionTemplate, ConnectionType, CustomerId,
        EnteredBy, EnvVarName, Environment, Field, IntegrationId, Mappings, OAuthClient, Param, ParamName,
        ProjectId, Scope, Target, TemplateField, Version, Visibility,
    };
    pub use crate::registry::{DeleteMode, Registry, RegistryError};
    pub use crate::resolve::{ResolveRequest, ResolvedEnv, Resolver};
}

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
