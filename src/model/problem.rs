//! What is wrong with a connection spec or mappings, and the plumbing that
//! defers an identifier's parse error to the builder's `build()`.

use std::fmt;

use super::auth::AuthScheme;
use super::external::ExternalRefError;
use super::ident::{ParamName, ParseError};
use super::layer::Layer;

/// Converts an argument into a validated identifier, deferring the error.
///
/// Implemented for `&str`, `String` and the identifier itself, so builders take
/// either text or an already parsed identifier; a text that fails to parse is
/// reported by the builder's `build()` with the field it was given for.
pub trait IntoIdent<T> {
    /// The identifier, or why the text is not one.
    fn into_ident(self) -> Result<T, ParseError>;
}

impl<T, S> IntoIdent<T> for S
where
    S: TryInto<T>,
    S::Error: Into<ParseError>,
{
    fn into_ident(self) -> Result<T, ParseError> {
        self.try_into().map_err(Into::into)
    }
}

/// One problem of a connection spec. [`SpecError`] lists them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpecProblem {
    /// A field is not a valid identifier.
    #[error("{field}: {error}")]
    Ident {
        /// The field, e.g. `params.ServiceURL.environment`.
        field: String,
        /// Why.
        error: ParseError,
    },
    /// A text field is too long.
    #[error("{field} is {len} bytes, at most {max} allowed")]
    TooLong {
        /// The field.
        field: String,
        /// Its length.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// Two parameters share a name.
    #[error("parameter {param} is declared more than once")]
    DuplicateParam {
        /// The parameter.
        param: ParamName,
    },
    /// A parameter has two values for one layer.
    #[error("parameter {param} has two values for the {layer}")]
    DuplicateValue {
        /// The parameter.
        param: ParamName,
        /// The layer.
        layer: Layer,
    },
    /// A per-customer parameter was given a global value.
    #[error("parameter {param} is per-customer and cannot have a {layer}")]
    GlobalValueOnPerCustomer {
        /// The parameter.
        param: ParamName,
        /// The global layer.
        layer: Layer,
    },
    /// A parameter name is taken by the managed OAuth application.
    #[error("parameter {param} is supplied by the connection's oauth application and cannot be declared")]
    AppSuppliedParam {
        /// The parameter.
        param: ParamName,
    },
    /// A managed OAuth application only serves platform targets.
    #[error(
        "a managed oauth application only serves platform integration targets, not {target}; use OAuthClient::Supplied"
    )]
    ManagedOAuthNeedsPlatform {
        /// The target, described.
        target: String,
    },
    /// A required parameter of the target or auth kind is missing.
    #[error("{what} needs parameter {param}")]
    MissingParam {
        /// The target or auth kind, as "a postgresql database connection".
        what: String,
        /// The parameter.
        param: &'static str,
    },
    /// The parameter is not declared.
    #[error("parameter {param} is not declared")]
    UnknownParam {
        /// The parameter.
        param: ParamName,
    },
    /// A parameter that must be secret is plain.
    #[error("parameter {param} must be secret")]
    MustBeSecret {
        /// The parameter.
        param: ParamName,
    },
    /// A parameter that must be plain is secret.
    #[error("parameter {param} must be plain, not secret")]
    MustBePlain {
        /// The parameter.
        param: ParamName,
    },
    /// A parameter that must be required is optional.
    #[error("parameter {param} must be required")]
    MustBeRequired {
        /// The parameter.
        param: ParamName,
    },
    /// A template is named without the connection type it is of.
    #[error("a connection made from a template must name the template's connection type")]
    TemplateWithoutType,
    /// The auth scheme needs a secret parameter.
    #[error("a {scheme} connection needs at least one secret parameter")]
    NeedsSecret {
        /// The scheme.
        scheme: AuthScheme,
    },
    /// A text field holds a control character (a line break, an escape).
    #[error("{field} contains a control character")]
    ControlCharacter {
        /// The field.
        field: String,
    },
    /// A value given as a reference to an external store is not one.
    #[error("{field}: {error}")]
    BadExternalRef {
        /// The field, e.g. `params.Password (environment production override)`.
        field: String,
        /// Why (the text is not repeated).
        error: ExternalRefError,
    },
    /// A plain parameter was given a reference to an external store: only
    /// secret parameters take them.
    #[error("parameter {param} is plain: only secret parameters take external secret references")]
    ExternalOnPlain {
        /// The parameter.
        param: ParamName,
    },
    /// Too many of something a list holds (an integration's connections,
    /// its explicit env entries).
    #[error("{count} {field}, at most {max} allowed")]
    TooMany {
        /// What was counted, e.g. `connections`.
        field: String,
        /// How many were given.
        count: usize,
        /// The most allowed.
        max: usize,
    },
    /// Too many parameters.
    #[error("{count} parameters, at most {max} allowed")]
    TooManyParams {
        /// How many were given.
        count: usize,
        /// The most allowed.
        max: usize,
    },
}

/// A connection spec that failed validation, with every problem found, and
/// the connection's scope and project.
///
/// ```
/// use connective::model::{ConnectionSpec, Param};
/// let err = ConnectionSpec::project("acme", "crm")
///     .param(Param::plain("Region"))
///     .param(Param::plain("Region"))
///     .build()
///     .unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid connection \"crm\" (project scope) of project acme: parameter Region is declared more than once",
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid connection {connection:?}{}{}: {}",
    within(scope, "(", ")"),
    within(project, "of project ", ""),
    join(problems)
)]
#[non_exhaustive]
pub struct SpecError {
    /// The project as given (shortened; empty if none was).
    pub project: String,
    /// The connection's scope as given, described ("project scope",
    /// "integration scope (orders)"; empty if unknown).
    pub scope: String,
    /// The connection's name as given (shortened).
    pub connection: String,
    /// Every problem, in field order.
    pub problems: Vec<SpecProblem>,
}

impl SpecError {
    /// The error for `problems` of a spec that exists (already validated
    /// identifiers).
    pub(crate) fn of(spec: &super::ConnectionSpec, problems: Vec<SpecProblem>) -> SpecError {
        SpecError {
            project: spec.project_id().to_string(),
            scope: spec.scope().to_string(),
            connection: spec.name().to_string(),
            problems,
        }
    }
}

/// ` {open}{text}{close}`, or nothing for an empty `text`.
fn within(text: &str, open: &str, close: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" {open}{text}{close}")
    }
}

/// An identifier given to a builder as text, for an error message: the
/// identifier, or the text given (shortened) if it is not one, or nothing if
/// it was empty.
pub(crate) fn label_of<T: fmt::Display>(parsed: &Result<T, ParseError>) -> String {
    match parsed {
        Ok(ident) => ident.to_string(),
        Err(
            ParseError::TooLong { input, .. }
            | ParseError::BadChar { input, .. }
            | ParseError::Reserved { input, .. },
        ) => super::ident::shorten(input),
        Err(_) => String::new(),
    }
}

/// The identifier, or `None` after recording why `field` is not one.
pub(crate) fn ident_or_problem<T>(
    parsed: Result<T, ParseError>,
    field: impl Into<String>,
    problems: &mut Vec<SpecProblem>,
) -> Option<T> {
    parsed
        .map_err(|error| {
            problems.push(SpecProblem::Ident {
                field: field.into(),
                error,
            })
        })
        .ok()
}

pub(crate) fn join<T: fmt::Display>(items: &[T]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&item.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::model::{ConnectionSpec, Param};

    #[test]
    fn a_spec_error_names_the_connection_its_scope_and_project() {
        let err = ConnectionSpec::integration("acme", "orders", "crm")
            .param(Param::plain("Region"))
            .param(Param::plain("Region"))
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid connection \"crm\" (integration scope (orders)) of project acme: \
             parameter Region is declared more than once"
        );
        assert_eq!(
            (err.project.as_str(), err.scope.as_str()),
            ("acme", "integration scope (orders)")
        );
    }

    #[test]
    fn a_spec_error_names_what_was_given_when_it_is_not_an_identifier() {
        let err = ConnectionSpec::integration("acme corp", "orders!", "crm")
            .build()
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(
                "invalid connection \"crm\" (integration scope (orders!)) of project acme corp: "
            ),
            "{text}"
        );
        let err = ConnectionSpec::project("", "crm").build().unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("invalid connection \"crm\" (project scope): "),
            "{text}"
        );
    }
}
