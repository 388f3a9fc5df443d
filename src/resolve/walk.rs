//! The walk over an integration's mappings (rules 1, 2 and 4), shared by
//! resolution and by the registry's mapping checks.

use std::collections::HashMap;

use indexmap::IndexMap;
use indexmap::map::Entry;

use super::env::VarHasher;
use super::{AppField, MappingKind, Problem, ResolvedVar, find_connection};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    Connection, ConnectionName, ConnectionUse, EnvMapping, EnvVarName, IntegrationId, ParamName, ParseError,
    ResolvePolicy,
};

/// The parameters a default-name mapping injects: the declared ones, then
/// the OAuth application's.
fn default_params(connection: &Connection) -> impl Iterator<Item = ParamName> + '_ {
    let app = connection
        .oauth_app()
        .is_some()
        .then(|| {
            AppField::ALL
                .iter()
                .filter_map(|f| f.param().parse::<ParamName>().ok())
        })
        .into_iter()
        .flatten();
    connection
        .spec()
        .params()
        .iter()
        .map(|p| p.name().clone())
        .chain(app)
}

/// What [`walk`] keeps for a claimed variable: it can name the connection and
/// parameter that claimed it, for a later entry that collides.
pub(super) trait Claimed {
    fn origin(&self) -> (ConnectionName, ParamName);
}

impl Claimed for ResolvedVar {
    fn origin(&self) -> (ConnectionName, ParamName) {
        (self.provenance.connection.clone(), self.provenance.param.clone())
    }
}

impl Claimed for (ConnectionName, ParamName) {
    fn origin(&self) -> (ConnectionName, ParamName) {
        self.clone()
    }
}

/// One planned variable: which connection and parameter it comes from.
pub(super) struct Slot<'s, V> {
    pub(super) connection: &'s Connection,
    pub(super) param: ParamName,
    pub(super) kind: MappingKind,
    pub(super) value: V,
}

/// Walks an integration's mappings in order (rules 1, 2 and 4): finds each
/// connection, names each variable (explicit or default), asks `value` for the
/// parameter's value (`Ok(None)`: leave the variable out), and checks reserved
/// names and collisions. Every problem is collected.
///
/// Each variable kept is turned into a `T` by `finish` as it is claimed, so
/// the map walked into is the one returned (no second map is built).
pub(super) fn walk<'s, V, T: Claimed>(
    snapshot: &'s ProjectSnapshot,
    policy: &ResolvePolicy,
    integration: &IntegrationId,
    uses: &[ConnectionUse],
    mut value: impl FnMut(&'s Connection, &ParamName, bool) -> Result<Option<V>, Problem>,
    mut finish: impl FnMut(&EnvVarName, Slot<'s, V>) -> T,
) -> (IndexMap<EnvVarName, T, VarHasher>, Vec<Problem>) {
    // Room for every variable up front: growing the map moves every entry.
    let capacity = uses
        .iter()
        .map(|u| match &u.env {
            EnvMapping::Explicit(entries) => entries.len(),
            EnvMapping::Defaults => 8,
        })
        .sum();
    let mut vars: IndexMap<EnvVarName, T, VarHasher> =
        IndexMap::with_capacity_and_hasher(capacity, VarHasher::default());
    // Variables whose value is missing still claim their name, so a second
    // entry producing it is reported too (every problem at once).
    let mut unvalued: HashMap<EnvVarName, (ConnectionName, ParamName)> = HashMap::new();
    let mut problems = Vec::new();
    for use_ in uses {
        let Some(found) = find_connection(snapshot, integration, &use_.reference) else {
            problems.push(Problem::NotVisible {
                reference: use_.reference.clone(),
                integration: integration.clone(),
            });
            continue;
        };
        let connection: &'s Connection = &found.value;
        let mut add = |name: EnvVarName, param: &ParamName, kind: MappingKind| {
            let explicit = kind == MappingKind::Explicit;
            let value = match value(connection, param, explicit) {
                Ok(Some(v)) => Some(v),
                Ok(None) => return,
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            };
            if let Err(error) = policy.reserved().check(&name) {
                problems.push(Problem::Reserved {
                    variable: name,
                    connection: connection.name().clone(),
                    param: param.clone(),
                    reason: match error {
                        ParseError::Reserved { reason, .. } => reason,
                        other => other.to_string(),
                    },
                });
                return;
            }
            // One hash of the name: the entry either holds the first claim
            // (a collision) or is where this one goes.
            let slot = match vars.entry(name) {
                Entry::Occupied(first) => {
                    let origin = first.get().origin();
                    (first.key().clone(), Some(origin))
                }
                Entry::Vacant(slot) => match unvalued.get(slot.key()) {
                    Some(origin) => (slot.into_key(), Some(origin.clone())),
                    None => match value {
                        Some(value) => {
                            let claimed = finish(
                                slot.key(),
                                Slot {
                                    connection,
                                    param: param.clone(),
                                    kind,
                                    value,
                                },
                            );
                            slot.insert(claimed);
                            return;
                        }
                        None => (slot.into_key(), None),
                    },
                },
            };
            match slot {
                (variable, Some(first)) => problems.push(Problem::Collision {
                    variable,
                    first,
                    second: (connection.name().clone(), param.clone()),
                }),
                (variable, None) => {
                    unvalued.insert(variable, (connection.name().clone(), param.clone()));
                }
            }
        };
        match &use_.env {
            EnvMapping::Explicit(entries) => {
                for entry in entries {
                    add(entry.to.clone(), &entry.from, MappingKind::Explicit);
                }
            }
            EnvMapping::Defaults => {
                for param in default_params(connection) {
                    let name = EnvVarName::default_for(policy.prefix(), connection.name(), &param);
                    add(name, &param, MappingKind::Default);
                }
            }
        }
    }
    (vars, problems)
}
