//! A mapped parameter's value for one request: the connection's OAuth
//! application (rule 5) or the winning value layer (rule 3), or the problem
//! that there is none.

use super::{AppField, Problem, ResolveRequest, ResolvedValue, ValueSource};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    Connection, ExternalFault, ExternalSecrets, ParamName, ParamValues, Requirement, SecretEntry, Tenancy,
};

/// A parameter's value for a request, or why there is none.
pub(super) enum Lookup {
    Found(ResolvedValue, ValueSource),
    /// No value, and the parameter is optional.
    Absent,
}

// One call site, on resolution's hot path: kept inline as it was before it
// moved to its own module (a call costs about 2% of a resolve under
// callgrind, `benches/profile.rs`).
#[inline(always)]
pub(super) fn lookup(
    snapshot: &ProjectSnapshot,
    connection: &Connection,
    param: &ParamName,
    request: &ResolveRequest,
    explicit: bool,
    external: Option<&dyn ExternalSecrets>,
) -> Result<Lookup, Problem> {
    let env = &request.environment;
    let customer = request.customer.as_ref();
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
            AppField::ClientId => ResolvedValue::Plain(app.value.client_id().to_owned()),
            AppField::ClientSecret => ResolvedValue::Secret(app.value.client_secret().clone()),
            AppField::TokenUrl => ResolvedValue::Plain(app.value.token_url().to_owned()),
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
    let found = match p.values() {
        ParamValues::Plain(layers) => layers
            .pick(env, customer)
            .map(|(l, v)| (ResolvedValue::Plain(v.clone()), l)),
        ParamValues::Secret(layers) => match layers.pick(env, customer) {
            Some((l, SecretEntry::Stored(v))) => Some((ResolvedValue::Secret(v.clone()), l)),
            // A value in an external store: read from the host's cache, in
            // memory (no I/O); none there is this resolution's problem.
            Some((l, SecretEntry::External(reference))) => {
                let found = external
                    .ok_or(ExternalFault::NoCache)
                    .and_then(|view| view.lookup(reference));
                return match found {
                    Ok(v) => Ok(Lookup::Found(
                        ResolvedValue::Secret(v.value),
                        ValueSource::External {
                            layer: l.clone(),
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
                };
            }
            None => None,
        },
    };
    match found {
        Some((value, layer)) => Ok(Lookup::Found(value, ValueSource::Layer(layer.clone()))),
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
