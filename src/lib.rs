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
//! (`PREFIX_CONNECTION_PARAM`, the prefix being the host's). The registry
//! checks mappings against what the integration can see, and a refusal lists
//! every problem, each naming its connection, parameter or variable.
//!
//! ```
//! use connective::prelude::*;
//! let registry = Registry::builder().prefix("CHOREO".parse()?).build()?;
//! let (crm, _) = registry.create_connection(
//!     ConnectionSpec::project("acme", "crm")
//!         .param(Param::plain("Url").default("https://crm.example.com"))
//!         .param(Param::secret("Token").default("t0k"))
//!         .build()?,
//! )?;
//! registry.set_mappings(Mappings::of("acme", "orders").by_id(crm, [("Url", "CRM_URL")]).build()?, None)?;
//! registry.set_mappings(Mappings::of("acme", "billing").by_name_defaults("crm").build()?, None)?;
//! let billing = registry.resolve(&ResolveRequest::parse("acme", "billing", "production")?)?;
//! assert_eq!(billing.expose("CHOREO_CRM_URL"), Some("https://crm.example.com"));
//! assert!(billing.get("CHOREO_CRM_TOKEN").is_some());
//!
//! // A typo is refused, naming what is wrong.
//! let err = registry
//!     .set_mappings(Mappings::of("acme", "audit").by_name("crm", [("URL", "CRM_URL")]).build()?, None)
//!     .unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     format!("invalid mappings for integration audit of project acme: connection crm ({crm}) has no parameter URL"),
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
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
//! **7. "Why did integration X get this value?"** [`registry::Registry::explain`]
//! tells the whole story of one variable: the connection and parameter it
//! came from, the value layer that won, the layers it beat or that did not
//! apply, and the project connection an integration's own one shadows (rule
//! 2). Its `Display` is meant for people (a secret stays redacted).
//!
//! ```
//! use connective::fixture::Fixture;
//! use connective::model::Param;
//! use connective::resolve::ResolveRequest;
//! let fx = Fixture::project("acme")
//!     .connection("crm", |c| c.param(Param::plain("Url").default("https://crm.example.com")))
//!     .integration_connection("orders", "crm", |c| {
//!         c.param(Param::plain("Url").default("https://dev-crm").env("production", "https://crm-for-orders"))
//!     })
//!     .mappings("orders", |m| m.by_name("crm", [("Url", "CRM_URL")]))
//!     .build()?;
//! let request = ResolveRequest::parse("acme", "orders", "production")?;
//! let why = fx.registry().explain(&request, "CRM_URL")?.expect("orders gets CRM_URL");
//! let (own, shared) = (fx.id("crm", Some("orders"))?, fx.id("crm", None)?);
//! assert_eq!(why.to_string(), format!("\
//! CRM_URL = https://crm-for-orders
//!   from connection crm ({own}, integration scope (orders)), parameter Url: environment production override
//!   shadows project-scope connection {shared} of the same name
//!   default value: outranked by a more specific layer
//!   environment production override: won
//! "));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **8. Every write names the version it read** (rule 8): a write based on a
//! stale read is refused as a conflict instead of overwriting what somebody
//! else wrote; read again and retry.
//!
//! ```
//! use connective::prelude::*;
//! use connective::model::Layer;
//! let registry = Registry::in_memory();
//! let project: ProjectId = "acme".parse()?;
//! let (crm, _) = registry.create_connection(
//!     ConnectionSpec::project("acme", "crm").param(Param::plain("Url").default("https://crm.example.com")).build()?,
//! )?;
//! let read = registry.connection(&project, crm).expect("just created").version;
//! let url: ParamName = "Url".parse()?;
//! let production = Layer::Environment(Environment::production());
//! registry.set_value(&project, crm, read, &url, production.clone(), "https://crm.example.com/prod")?;
//! // A second writer still holding the old version is refused.
//! let err = registry.set_value(&project, crm, read, &url, production, "https://elsewhere").unwrap_err();
//! assert!(matches!(err, RegistryError::Conflict { .. }));
//! assert_eq!(
//!     err.to_string(),
//!     "conflict on connection crm (project scope) of project acme: expected version v1, found version v2",
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! **9. Records live in a [`store::Store`].** [`registry::Registry::in_memory`]
//! keeps them in a [`store::MemoryStore`]; a host that must survive a restart
//! gives the builder a durable store: `store::SqliteStore` (feature
//! `sqlite`) for one machine, `store::PostgresStore` (feature `postgres`)
//! for replicas sharing a database. Durable stores seal secrets with a
//! `store::seal::KeyRing` the host loads from its secret manager.
//!
//! ```
//! # #[cfg(feature = "sqlite")] {
//! use connective::prelude::*;
//! use connective::store::SqliteStore;
//! use connective::store::seal::{KeyRing, SealKey};
//! let dir = tempfile::tempdir()?;
//! let key = SealKey::generate("2026-01")?; // a host loads its own, e.g. SealKey::from_base64
//! let open = || -> Result<Registry, Box<dyn std::error::Error>> {
//!     let store = SqliteStore::open(dir.path().join("connections.db"), KeyRing::new(key.clone()))?;
//!     Ok(Registry::builder().store(store).build()?)
//! };
//! open()?.create_connection(
//!     ConnectionSpec::project("acme", "crm").param(Param::secret("Token").default("t0k")).build()?,
//! )?;
//! // Opened again, as after a restart: the connection is there.
//! let registry = open()?;
//! assert_eq!(registry.visible_connections(&"acme".parse()?, &"orders".parse()?).len(), 1);
//! # }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The examples in the repository run these paths end to end:
//! `examples/quickstart.rs`, `examples/sqlite.rs` and `examples/postgres.rs`.
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
//! | `seal` | `store::seal`: secret values sealed with XChaCha20-Poly1305 under a `KeyRing` (the durable stores bring it; for your own backend) |
//! | `oauth-runtime` | `oauth::runtime`: authorization code with PKCE, tokens that refresh themselves, client credentials for shared applications, connection status and testers (tokio, reqwest with rustls, `oauth2`) |
//! | `test-kit` | the `Store` conformance suite, for your own backend too (with `external-secrets`, the `SecretStore` one too), and a throwaway PostgreSQL server for tests |
//! | `external-secrets` | `SecretStore` and `SecretCache`: secrets referenced in an external store (`vault:secret/crm#password`), resolved from a cache kept fresh in the background |
//! | `vault` | the built-in HashiCorp Vault / OpenBao KV version 2 client, token and AppRole (reqwest, rustls; brings `external-secrets`) |
//! | `manifest` | declarative YAML/TOML/JSON manifests: plan, apply, export; Choreo/Devant `component.yaml` import |
//! | `schema` | a JSON Schema of the manifest format, for editors and validators (brings `manifest`) |
//! | `kubernetes` | a container's `env`, Secret and ConfigMap as `k8s-openapi` types |
//! | `tracing` | spans on resolution, writes and the OAuth runtime (identifiers only) |
//! | `cli` | the `connective` command-line program (a binary; the library's API does not change) |
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[doc = include_str!("../docs/architecture.md")]
pub mod architecture {}
mod block_on;
pub mod catalog;
mod deadline;
// The docs of `external`, `oauth`, `registry`, `store` and `test_kit` link to
// items of features that may be off (Vault, the OAuth runtime, the async API,
// PostgreSQL, manifests): in a build without them those links cannot resolve.
// With every feature (docs.rs, and `.ci/run`'s `cargo doc --all-features`
// under `-D warnings`) every link resolves and is checked.
#[cfg(feature = "external-secrets")]
#[cfg_attr(not(feature = "vault"), allow(rustdoc::broken_intra_doc_links))]
pub mod external;
pub mod fixture;
#[cfg(feature = "manifest")]
pub mod manifest;
pub mod model;
#[cfg_attr(not(feature = "oauth-runtime"), allow(rustdoc::broken_intra_doc_links))]
pub mod oauth;
pub mod output;
#[cfg_attr(
    not(all(feature = "async", feature = "postgres", feature = "manifest")),
    allow(rustdoc::broken_intra_doc_links)
)]
pub mod registry;
pub mod resolve;
#[cfg_attr(
    not(all(feature = "async", feature = "postgres")),
    allow(rustdoc::broken_intra_doc_links)
)]
pub mod store;
#[cfg(feature = "test-kit")]
#[cfg_attr(
    not(all(feature = "async", feature = "postgres")),
    allow(rustdoc::broken_intra_doc_links)
)]
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
