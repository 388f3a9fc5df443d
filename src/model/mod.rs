//! The data model: validated identifiers and records, pure data with serde.
//!
//! Nothing here does I/O or knows about other modules of the crate.

mod audit;
mod auth;
mod connection;
mod de;
mod description;
mod external;
mod ident;
mod layer;
mod mapping;
mod oauth;
mod param;
mod policy;
mod problem;
pub(crate) mod random;
mod record;
mod secret;
mod target;
mod template;
mod token;
mod types;
mod value;

pub use audit::{
    AuditAction, AuditChange, AuditEntry, AuditKind, AuditNote, AuditOperation, AuditPosition, AuditQuery,
    ReadField, ReadNote, SecretRead,
};
pub use auth::{
    AUTHORIZE_URL, AuthField, AuthScheme, CLIENT_ID, CLIENT_SECRET, FieldNeed, FieldSource, OAuthClient,
    SCOPES, TOKEN_URL,
};
pub use connection::{BuilderAccess, Connection, ConnectionBuilder, ConnectionSpec, MAX_PARAMS, Scope};
pub use description::MAX_DESCRIPTION_LEN;
#[cfg(feature = "vault")]
pub(crate) use external::check_mount;
pub use external::{
    ExternalFault, ExternalRef, ExternalRefError, ExternalSecrets, ExternalValue, ExternalValueRef,
    FetchInfo, IntoExternalRef, RefPart, SecretEntry, SecretLocation, SecretsGeneration,
};
#[cfg(feature = "manifest")]
pub(crate) use ident::shorten;
pub use ident::{
    ActorId, ConnectionId, ConnectionName, CustomerId, EnvVarName, Environment, IdentKind, IntegrationId,
    ParamName, ParseError, ProjectId, SecretVersion, StoreName, TemplateName, TypeName,
};
pub use layer::{Layer, Layers};
pub use mapping::{
    ConnectionRef, ConnectionUse, EnvEntry, EnvMapping, MAX_ENTRIES, MAX_USES, Mappings, MappingsBuilder,
    MappingsError,
};
pub use oauth::{APP_PARAMS, AppField, AppOwner, OAuthApp};
pub use param::{
    EnteredBy, MAX_VALUE_LEN, Param, ParamBuilder, ParamKind, ParamValues, Requirement, Tenancy, ValueRef,
};
pub(crate) use policy::env_name_hash;
pub use policy::{ReservedNames, ResolvePolicy};
pub(crate) use problem::join;
pub use problem::{IntoIdent, SpecError, SpecProblem};
pub use record::{NameStripe, Record, RecordKey, ReferenceFence, Revision, Version, Versioned};
pub use secret::{
    CodecError, PlaintextCodec, SecretCodec, SecretValue, with_secret_codec, with_secret_codec_reporting,
};
pub use target::{EndpointVisibility, MAX_TARGET_LEN, PlatformTarget, Target};
pub use template::{
    ConnectionTemplate, ConnectionTemplateBuilder, Overrides, Presentation, TemplateField,
    TemplateFieldBuilder, ValueOrigin, effective_value,
};
#[cfg(feature = "oauth-runtime")]
pub(crate) use token::valid_state_id;
pub use token::{
    AuthorizationOutcome, ConnectionStatus, CredentialKey, Health, HealthKind, MAX_NOTE_LEN, MAX_SCOPE_LEN,
    MAX_SCOPES, MAX_TOKEN_LEN, MAX_URI_LEN, PendingAuthorization, ReauthReason, RefreshLease, TestResult,
    Timestamp, TokenSet,
};
pub(crate) use types::visibility_allows;
pub use types::{
    ConnectionType, ConnectionTypeBuilder, DataKind, DataType, Field, FieldBuilder, MAX_CHOICE_LEN,
    MAX_CHOICES, MAX_LABEL_LEN, MAX_PATTERN_LEN, MAX_SCHEMES, Pattern, PatternError, ProjectType, TargetKind,
    TypeError, TypeLibrary, TypeProblem, TypeSubject, Validation, ValueProblem, Viewer, Visibility,
};
pub use value::PlainValue;
