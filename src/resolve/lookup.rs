//! A mapped parameter's value for one request: the connection's OAuth
//! application (rule 5) or the winning value layer (rule 3), or the problem
//! that there is none.

use std::sync::Arc;

use super::AppField;
use super::Problem;
use super::env::{Found, Source, Val};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    Connection, CustomerId, Environment, ExternalFault, ExternalRef, ExternalSecrets, Layer, ParamName,
    Requirement, SecretEntry, Tenancy, ValueOrigin, ValueRef, effective_value,
};

/// A parameter's value for a request, or why there is none.
pub(super) enum Lookup<'s> {
    /// The value and where it came from: borrowed from the snapshot (a value
    /// read from the host's cache of external secrets is the cache's).
    Found(Found<'s>),
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
            AppField::ClientId => Val::Plain(app.value.client_id_value()),
            AppField::ClientSecret => Val::Stored(app.value.client_secret()),
            AppField::TokenUrl => Val::Plain(app.value.token_url_value()),
        };
        return Ok(Lookup::Found(Found {
            value,
            source: Source::OAuthApp { owner, field },
        }));
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
                ValueRef::Plain(v) => Val::Plain(v),
                ValueRef::Secret(SecretEntry::Stored(v)) => Val::Stored(v),
                ValueRef::Secret(SecretEntry::External(reference)) => {
                    return external_value(connection, param, (origin, layer), reference, external);
                }
            };
            let source = match origin {
                ValueOrigin::Connection => Source::Layer(layer),
                ValueOrigin::Template(template) => Source::Template { template, layer },
            };
            Ok(Lookup::Found(Found { value, source }))
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
    (origin, layer): (ValueOrigin<'s>, &'s Layer),
    reference: &'s Arc<ExternalRef>,
    external: Option<&dyn ExternalSecrets>,
) -> Result<Lookup<'s>, Problem> {
    let found = match external {
        Some(view) => view.lookup(reference),
        None => Err(ExternalFault::NoCache),
    };
    match found {
        Ok(v) => Ok(Lookup::Found(Found {
            value: Val::Fetched(v.value),
            source: Source::External {
                layer,
                template: match origin {
                    ValueOrigin::Connection => None,
                    ValueOrigin::Template(name) => Some(name),
                },
                reference,
                fetch: v.fetch,
            },
        })),
        Err(fault) => Err(Problem::ExternalSecret {
            connection: connection.name().clone(),
            connection_id: connection.id(),
            param: param.clone(),
            reference: reference.clone(),
            fault,
        }),
    }
}
