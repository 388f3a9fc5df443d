//! Declarative manifests: loading, limits, secrets, plans and their apply, export, Choreo component configuration, the JSON Schema.

#[cfg(feature = "manifest")]
mod apply;
#[cfg(feature = "manifest")]
mod choreo;
#[cfg(feature = "manifest")]
mod fuzz;
#[cfg(feature = "manifest")]
mod limits;
#[cfg(feature = "manifest")]
mod load;
#[cfg(feature = "manifest")]
mod plan_apply;
#[cfg(feature = "schema")]
mod schema;
#[cfg(all(feature = "manifest", unix))]
mod secrets;
#[cfg(feature = "manifest")]
mod types;
