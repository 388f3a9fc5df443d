//! Support shared by the suite's modules: identifiers every scenario uses,
//! the replica scenarios' CRM connection, manifests, the real readers of the
//! output formats, and the real OAuth server. `tests/process_env.rs` includes
//! it too.

#![allow(dead_code)] // Each binary uses some of these.

#[cfg(feature = "tracing")]
pub mod child;
pub mod crm;
#[cfg(all(feature = "manifest", unix))]
pub mod manifests;
#[cfg(feature = "oauth-runtime")]
#[path = "../../oauth-server/mod.rs"]
pub mod oauth_server;
#[cfg(feature = "vault")]
pub mod openbao;
#[cfg(all(feature = "postgres", feature = "test-kit"))]
pub mod pg_wire;
pub mod readers;
#[cfg(feature = "tracing")]
pub mod spans;

use connective::model::ProjectId;

/// The project most scenarios are about.
pub fn acme() -> ProjectId {
    "acme".parse().expect("a project id")
}
