//! connective
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod catalog;
pub mod model;
pub mod oauth;
pub mod registry;
pub mod resolve;
pub mod store;

/// The names most hosts need, in one `use`.
pub mod prelude {
    pub use crate::model::{
        AppOwner, AuthScheme, ConnectionId, ConnectionSpec, CustomerId, EnteredBy, EnvVarName, Environment,
        IntegrationId, Mappings, OAuthClient, Param, ParamName, ProjectId, Scope, Target, Version,
    };
    pub use crate::registry::{DeleteMode, Registry, RegistryError};
    pub use crate::resolve::{ResolveRequest, ResolvedEnv, Resolver};
}
