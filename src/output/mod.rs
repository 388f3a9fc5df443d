//! Outputs hosts deploy with: `.env` text in the [`Dialect`] of the program
//! that reads it (written atomically, mode 0600, by [`write_dotenv`]), a
//! serializable report of a resolution (for JSON and tables), and, with the
//! `kubernetes` feature, a container's `env` list with its Secret and
//! ConfigMap.
//!
//! Every function here that writes a secret value says so in its name or
//! documentation; the report redacts secrets unless asked not to.

mod dotenv;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
mod report;

pub use dotenv::{
    Dialect, UnknownDialect, Unrepresentable, WriteError, dotenv_quote, to_dotenv, to_dotenv_as, write_dotenv,
};
pub use report::{EnvReport, ReportVar, Secrets};

use crate::model::EnvVarName;

/// Why a resolved environment cannot be written out. Names the variable,
/// never its value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The value contains a NUL byte, which no process environment can hold.
    #[error("variable {variable} contains a NUL byte, which an environment cannot hold")]
    NulByte {
        /// The variable.
        variable: EnvVarName,
    },
    /// The `.env` dialect cannot carry the variable's value so that its
    /// reader gives it back unchanged.
    #[error("variable {variable} cannot be written for {dialect}: {reason}")]
    Unrepresentable {
        /// The variable.
        variable: EnvVarName,
        /// The dialect.
        dialect: Dialect,
        /// Why.
        reason: Unrepresentable,
    },
    /// The variable would be a Secret or ConfigMap key, but is longer than
    /// a key may be.
    #[error(
        "variable {variable} is longer than a kubernetes secret or config map key may be ({max} characters)"
    )]
    KeyTooLong {
        /// The variable.
        variable: EnvVarName,
        /// The most characters a key may have.
        max: usize,
    },
    /// A Kubernetes object name is not a valid DNS subdomain name.
    #[error(
        "invalid kubernetes object name {name:?}: at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
    )]
    ObjectName {
        /// The name given.
        name: String,
    },
}
