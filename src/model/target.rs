//! What a connection reaches: a platform integration, a managed database or
//! a third-party service.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::auth::AuthField;
use super::ident::{IntegrationId, ProjectId};
use super::problem::SpecProblem;

/// Who may call a platform integration's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EndpointVisibility {
    /// Integrations of the same project.
    Project,
    /// Integrations of the same organization.
    Organization,
    /// Anyone.
    Public,
}

/// A platform integration a connection reaches (possibly in another project).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlatformTarget {
    /// The target's project.
    pub project: ProjectId,
    /// The target integration.
    pub integration: IntegrationId,
    /// The endpoint's name or path, if the integration has several.
    pub endpoint: Option<String>,
    /// Who may call the endpoint.
    pub visibility: EndpointVisibility,
}

/// What a connection reaches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Target {
    /// Another integration on the platform. Boxed: a [`PlatformTarget`] is
    /// 64 bytes and would make every target, which every connection carries,
    /// that large; boxed, a target is 24 (memory per connection is a performance target).
    Platform(Box<PlatformTarget>),
    /// A managed database; the connection carries `HostName`, `Port`,
    /// `Username`, `Password` (secret) and `DatabaseName`.
    Database {
        /// The engine, e.g. `postgresql`, `mysql` (a `Box<str>`: a target is
        /// 24 bytes, see [`Target::database`] and [`Target::engine`]).
        engine: Box<str>,
    },
    /// A third-party service; its URLs per environment are parameters.
    External {
        /// The service, e.g. `twilio` (a `Box<str>`: a target is 24 bytes,
        /// see [`Target::external`] and [`Target::service`]).
        service: Box<str>,
    },
}

impl Target {
    /// A platform integration target with project visibility and no named
    /// endpoint.
    pub fn platform(project: ProjectId, integration: IntegrationId) -> Self {
        Target::Platform(Box::new(PlatformTarget {
            project,
            integration,
            endpoint: None,
            visibility: EndpointVisibility::Project,
        }))
    }

    /// A third-party service.
    pub fn external(service: impl Into<String>) -> Self {
        Target::External {
            service: service.into().into_boxed_str(),
        }
    }

    /// The service, for a third-party service target.
    ///
    /// ```
    /// use connective::model::Target;
    /// assert_eq!(Target::external("twilio").service(), Some("twilio"));
    /// assert_eq!(Target::database("mysql").service(), None);
    /// ```
    pub fn service(&self) -> Option<&str> {
        match self {
            Target::External { service } => Some(service),
            _ => None,
        }
    }

    /// The engine, for a managed database target.
    ///
    /// ```
    /// use connective::model::Target;
    /// assert_eq!(Target::database("mysql").engine(), Some("mysql"));
    /// assert_eq!(Target::external("twilio").engine(), None);
    /// ```
    pub fn engine(&self) -> Option<&str> {
        match self {
            Target::Database { engine } => Some(engine),
            _ => None,
        }
    }

    /// A managed database.
    pub fn database(engine: impl Into<String>) -> Self {
        Target::Database {
            engine: engine.into().into_boxed_str(),
        }
    }

    /// The parameters a database connection must declare (the names of
    /// [`AuthField::DATABASE`](super::AuthField::DATABASE)).
    pub const DATABASE_PARAMS: [&'static str; 5] = [
        AuthField::DATABASE[0].param,
        AuthField::DATABASE[1].param,
        AuthField::DATABASE[2].param,
        AuthField::DATABASE[3].param,
        AuthField::DATABASE[4].param,
    ];
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Platform(t) => write!(f, "platform integration {}/{}", t.project, t.integration),
            Target::Database { engine } => write!(f, "{engine} database"),
            Target::External { service } => write!(f, "external service {service}"),
        }
    }
}

/// The most bytes of a target's text: an external service's name, a database
/// engine, a platform endpoint.
pub const MAX_TARGET_LEN: usize = 256;

/// A target's text: bounded, and without control characters (it is printed
/// in messages and plans).
pub(super) fn check_target(target: &Target, problems: &mut Vec<SpecProblem>) {
    let (field, text) = match target {
        Target::External { service } => ("target.service", Some(&**service)),
        Target::Database { engine } => ("target.engine", Some(&**engine)),
        Target::Platform(p) => ("target.endpoint", p.endpoint.as_deref()),
    };
    let Some(text) = text else { return };
    if text.len() > MAX_TARGET_LEN {
        problems.push(SpecProblem::TooLong {
            field: field.into(),
            len: text.len(),
            max: MAX_TARGET_LEN,
        });
    } else if text.chars().any(char::is_control) {
        problems.push(SpecProblem::ControlCharacter { field: field.into() });
    }
}
