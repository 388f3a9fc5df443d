//! A mapped parameter's value for one request: the connection's OAuth
//! application (rule 5) or the winning value layer (rule 3), or the problem
//! that there is none.

use std::sync::{Arc, OnceLock};

use super::AppField;
use super::Problem;
use super::env::{Fetch, Found, Source, Val};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    Connection, CustomerId, Environment, ExternalFault, ExternalRef, ExternalSecrets, Layer, ParamName,
    Requirement, SecretEntry, SecretsGeneration, Tenancy, ValueOrigin, ValueRef, effective_value,
};

/// The generation of the host's cache of external secrets a resolution
/// reads its referenced values from: pinned at the first one (a resolution
/// without any pins nothing), held by the answer, which borrows the values
/// from it.
pub(super) type Pinned = OnceLock<Option<Arc<dyn SecretsGeneration>>>;

/// Where a resolution reads referenced values: the host's view of its
/// cache, and the generation of it the answer holds.
#[derive(Clone, Copy)]
pub(super) struct External<'v, 's> {
    pub(super) view: Option<&'v dyn ExternalSecrets>,
    pub(super) pinned: &'s Pinned,
}

impl<'s> External<'_, 's> {
    /// The value of `reference`: borrowed from the pinned generation when it
    /// has one, else (a reference never looked up before the generation was
    /// made or not fetched yet, a view that pins nothing) read from the
    /// view, owned.
    fn lookup(&self, reference: &ExternalRef) -> Result<(Val<'s>, Fetch<'s>), ExternalFault> {
        let Some(view) = self.view else {
            return Err(ExternalFault::NoCache);
        };
        let pinned: &'s Option<Arc<dyn SecretsGeneration>> = self.pinned.get_or_init(|| view.pin());
        if let Some(generation) = pinned {
            match generation.get(reference) {
                Some(Ok(found)) => return Ok((Val::Secret(found.value), Fetch::Pinned(found.fetch))),
                // Not fetched yet: the view's lookup waits for the first
                // fetch as the cache's settings say.
                None | Some(Err(ExternalFault::NotFetched)) => {}
                Some(Err(fault)) => return Err(fault),
            }
        }
        let found = view.lookup(reference)?;
        Ok((Val::Fetched(found.value), Fetch::Owned(found.fetch)))
    }
}

/// A parameter's value for a request, or why there is none.
pub(super) enum Lookup<'s> {
    /// The value and where it came from: borrowed from the snapshot (a
    /// referenced value, from the generation of the host's cache the
    /// resolution pinned).
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
    external: External<'_, 's>,
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
            AppField::ClientSecret => Val::Secret(app.value.client_secret()),
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
                ValueRef::Secret(SecretEntry::Stored(v)) => Val::Secret(v),
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
///
/// Inline, like [`lookup`]: a value the pinned generation has is a probe of
/// it and a borrow; the rest (the first value, which pins the generation;
/// a fault; a value the generation lacks) is [`external_value_slow`].
#[inline(always)]
fn external_value<'s>(
    connection: &Connection,
    param: &ParamName,
    (origin, layer): (ValueOrigin<'s>, &'s Layer),
    reference: &'s Arc<ExternalRef>,
    external: External<'_, 's>,
) -> Result<Lookup<'s>, Problem> {
    if let Some(Some(generation)) = external.pinned.get()
        && let Some(Ok(found)) = generation.get(reference)
    {
        return Ok(found_external(
            (origin, layer),
            reference,
            Val::Secret(found.value),
            Fetch::Pinned(found.fetch),
        ));
    }
    external_value_slow(connection, param, (origin, layer), reference, external)
}

#[inline(never)]
fn external_value_slow<'s>(
    connection: &Connection,
    param: &ParamName,
    (origin, layer): (ValueOrigin<'s>, &'s Layer),
    reference: &'s Arc<ExternalRef>,
    external: External<'_, 's>,
) -> Result<Lookup<'s>, Problem> {
    match external.lookup(reference) {
        Ok((value, fetch)) => Ok(found_external((origin, layer), reference, value, fetch)),
        Err(fault) => Err(Problem::ExternalSecret {
            connection: connection.name().clone(),
            connection_id: connection.id(),
            param: param.clone(),
            reference: reference.clone(),
            fault,
        }),
    }
}

#[inline(always)]
fn found_external<'s>(
    (origin, layer): (ValueOrigin<'s>, &'s Layer),
    reference: &'s Arc<ExternalRef>,
    value: Val<'s>,
    fetch: Fetch<'s>,
) -> Lookup<'s> {
    Lookup::Found(Found {
        value,
        source: Source::External {
            layer,
            template: match origin {
                ValueOrigin::Connection => None,
                ValueOrigin::Template(name) => Some(name),
            },
            reference,
            fetch,
        },
    })
}
