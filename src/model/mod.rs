//! The data model: validated identifiers and records, pure data with serde.
//!
//! Nothing here does I/O or knows about other modules of the crate.

mod connection;
mod ident;
mod mapping;
mod oauth;
mod policy;
pub(crate) mod random;
mod record;
mod secret;

pub(crate) use connection::join;
pub use connection::{
    APP_PARAMS, AuthScheme, Connection, ConnectionBuilder, ConnectionSpec, EndpointVisibility, EnteredBy,
    IntoIdent, Layer, Layers, MAX_DESCRIPTION_LEN, MAX_PARAMS, MAX_TARGET_LEN, MAX_VALUE_LEN, OAuthClient,
    Param, ParamBuilder, ParamKind, ParamValues, PlatformTarget, Requirement, Scope, SpecError, SpecProblem,
    Target, Tenancy,
};
pub use ident::{
    ConnectionId, ConnectionName, CustomerId, EnvVarName, Environment, IdentKind, IntegrationId, ParamName,
    ParseError, ProjectId,
};
pub use mapping::{
    ConnectionRef, ConnectionUse, EnvMap, EnvMapping, MAX_ENTRIES, MAX_USES, Mappings, MappingsBuilder,
    MappingsError,
};
pub use oauth::{AppOwner, OAuthApp};
pub use policy::{ReservedNames, ResolvePolicy};
pub use record::{NameStripe, Record, RecordKey, ReferenceFence, Revision, Version, Versioned};
pub use secret::{PlaintextCodec, SecretCodec, SecretValue, with_secret_codec};
