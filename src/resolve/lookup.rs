//! A mapped parameter's value for one request: the connection's OAuth
//! application (rule 5) or the winning value layer (rule 3), or the problem
//! that there is none.

use std::sync::Arc;

use super::{AppField, Problem, ResolvedValue, ValueSource};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    Connection, CustomerId, Environment, ExternalFault, ExternalRef, ExternalSecrets, Layer, ParamName,
    PlainValue, Requirement, SecretEntry, SecretValue, Tenancy, ValueOrigin, ValueRef, effective_value,
};

/// A value found: borrowed from the snapshot (resolution copies it,
/// onboarding only asks whether there is one), or read from the host's
/// cache of external secrets.
pub(super) enum Found<'s> {
    Plain(&'s PlainValue),
    Stored(&'s SecretValue),
    Fetched(SecretValue),
}

impl Found<'_> {
    /// The value, owned.
    pub(super) fn into_resolved(self) -> ResolvedValue {
        match self {
            Found::Plain(v) => ResolvedValue::Plain(v.clone()),
            Found::Stored(v) => ResolvedValue::Secret(v.clone()),
            Found::Fetched(v) => ResolvedValue::Secret(v),
        }
    }
}

/// A parameter's value for a request, or why there is none.
pub(super) enum Lookup<'s> {
    Found(Found<'s>, ValueSource),
    /// No value, and the parameter is optional.
    Absent,
}

// One call site, on resolution's hot path: kept inline as it was before it
// moved to its own module (a call costs about 2% of a resolve under
// callgrind, `benches/profile.rs`).
#[inline(always)]
pub(super) fn lookup<'s>(
    snapshot: &'s ProjectSnapshot,
    connection: &'s Connection,
    param: &ParamName,
    env: &Environment,
    customer: Option<&CustomerId>,
    explicit: bool,
    external: Option<&dyn ExternalSecrets>,
) -> Result<Lookup<'s>, Problem> {
    if let Some(owner) = connection.oauth_app()
        && let Some(field) = AppField::for_param(param.as_str())
    {
        let Some(app) = snapshot.app(owner) else {
            return Err(Problem::OAuthAppMissing {
                connection: connection.name().clone(),
                connection_id: connection.id(),
                owner: owner.clone(),
            });
        };
        let value = match field {
            AppField::ClientId => Found::Plain(app.value.client_id_value()),
            AppField::ClientSecret => Found::Stored(app.value.client_secret()),
            AppField::TokenUrl => Found::Plain(app.value.token_url_value()),
        };
        return Ok(Lookup::Found(
            value,
            ValueSource::OAuthApp {
                owner: owner.clone(),
                field,
            },
        ));
    }
    let Some(p) = connection.spec().param(param.as_str()) else {
        return Err(Problem::UnknownParam {
            connection: connection.name().clone(),
            connection_id: connection.id(),
            param: param.clone(),
        });
    };
    if matches!(p.tenancy(), Tenancy::PerCustomer(_)) && customer.is_none() {
        // An optional per-customer parameter under a default-name mapping has
        // no value without a customer, like any optional parameter without one.
        if !explicit && p.requirement() == Requirement::Optional {
            return Ok(Lookup::Absent);
        }
        return Err(Problem::CustomerRequired {
            connection: connection.name().clone(),
            connection_id: connection.id(),
            param: param.clone(),
        });
    }
    let template = match connection.spec().template() {
        None => None,
        Some(name) => match snapshot.template(name) {
            Some(t) => Some(&*t.value),
            // Without its template the connection has only its own values.
            None if p.values().has_value(env, customer) => None,
            None => {
                return Err(Problem::TemplateMissing {
                    connection: connection.name().clone(),
                    connection_id: connection.id(),
                    template: name.clone(),
                });
            }
        },
    };
    match effective_value(p, template, env, customer) {
        Some((origin, layer, value)) => {
            let value = match value {
                ValueRef::Plain(v) => Found::Plain(v),
                ValueRef::Secret(SecretEntry::Stored(v)) => Found::Stored(v),
                ValueRef::Secret(SecretEntry::External(reference)) => {
                    return external_value(connection, param, (origin, layer), reference, external);
                }
            };
            let source = match origin {
                ValueOrigin::Connection => ValueSource::Layer(layer.clone()),
                ValueOrigin::Template(name) => ValueSource::Template {
                    template: name.clone(),
                    layer: layer.clone(),
                },
            };
            Ok(Lookup::Found(value, source))
        }
        None if !explicit && p.requirement() == Requirement::Optional => Ok(Lookup::Absent),
        None => Err(Problem::MissingValue {
            connection: connection.name().clone(),
            connection_id: connection.id(),
            param: param.clone(),
            environment: env.clone(),
            customer: customer.cloned(),
        }),
    }
}

/// A value in an external store (the connection's or its template's, as
/// `origin` says), read from the host's cache in memory (no I/O); none there
/// is the resolution's problem.
fn external_value<'s>(
    connection: &Connection,
    param: &ParamName,
    (origin, layer): (ValueOrigin<'_>, &Layer),
    reference: &Arc<ExternalRef>,
    external: Option<&dyn ExternalSecrets>,
) -> Result<Lookup<'s>, Problem> {
    let found = match external {
        Some(view) => view.lookup(reference),
        None => Err(ExternalFault::NoCache),
    };
    match found {
        Ok(v) => Ok(Lookup::Found(
            Found::Fetched(v.value),
            ValueSource::External {
                layer: layer.clone(),
                template: match origin {
                    ValueOrigin::Connection => None,
                    ValueOrigin::Template(name) => Some(name.clone()),
                },
                reference: reference.clone(),
                fetch: v.fetch,
            },
        )),
        Err(fault) => Err(Problem::ExternalSecret {
            connection: connection.name().clone(),
            connection_id: connection.id(),
            param: param.clone(),
            reference: reference.clone(),
            fault,
        }),
    }
}
