//! The walk over an integration's mappings (rules 1, 2 and 4), shared by
//! resolution and by the registry's mapping checks.

use std::collections::HashMap;

use indexmap::IndexMap;
use indexmap::map::Entry;

use super::env::VarHasher;
use super::{AppField, NameSource, Problem, ResolvedVar, find_connection};
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
    pub(super) kind: NameSource,
    pub(super) value: V,
}

/// Walks an integration's mappings in order (rules 1, 2 and 4): finds each
/// connection, names each variable (explicit or default), asks `value` for the
/// parameter's value (`Ok(None)`: leave the variable out), and checks reserved
/// names and collisions ([`Claims::claim`]). Every problem is collected.
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
    let mut claims = Claims::for_uses(uses);
    for use_ in uses {
        let Some(found) = find_connection(snapshot, integration, &use_.reference) else {
            claims.problems.push(Problem::NotVisible {
                reference: use_.reference.clone(),
                integration: integration.clone(),
            });
            continue;
        };
        let connection: &'s Connection = &found.value;
        let mut add = |name: EnvVarName, param: &ParamName, kind: NameSource| {
            let value = match value(connection, param, kind == NameSource::Explicit) {
                Ok(Some(v)) => Some(v),
                Ok(None) => return,
                Err(problem) => {
                    claims.problems.push(problem);
                    None
                }
            };
            let slot = Slot {
                connection,
                param: param.clone(),
                kind,
                value,
            };
            claims.claim(policy, name, slot, &mut finish);
        };
        match &use_.env {
            EnvMapping::Explicit(entries) => {
                for entry in entries {
                    add(entry.to.clone(), &entry.from, NameSource::Explicit);
                }
            }
            EnvMapping::Defaults => {
                for param in default_params(connection) {
                    let name = EnvVarName::default_for(policy.prefix(), connection.name(), &param);
                    add(name, &param, NameSource::Default);
                }
            }
        }
    }
    (claims.vars, claims.problems)
}

/// The variables claimed so far in a [`walk`], and its problems.
struct Claims<T> {
    vars: IndexMap<EnvVarName, T, VarHasher>,
    /// Variables whose value is missing still claim their name, so a second
    /// entry producing it is reported too (every problem at once).
    unvalued: HashMap<EnvVarName, (ConnectionName, ParamName)>,
    problems: Vec<Problem>,
}

impl<T: Claimed> Claims<T> {
    /// Room for every variable of `uses` up front: growing the map moves
    /// every entry.
    fn for_uses(uses: &[ConnectionUse]) -> Self {
        let capacity = uses
            .iter()
            .map(|u| match &u.env {
                EnvMapping::Explicit(entries) => entries.len(),
                EnvMapping::Defaults => 8,
            })
            .sum();
        Claims {
            vars: IndexMap::with_capacity_and_hasher(capacity, VarHasher::default()),
            unvalued: HashMap::new(),
            problems: Vec::new(),
        }
    }

    /// **Rule 4 for one variable.** Claims `name` for `slot` (whose value is
    /// `None` when it is missing: the problem is already recorded): refused
    /// if the policy reserves the name, a collision if an earlier entry
    /// produced it, else kept as `finish` makes it.
    fn claim<'s, V>(
        &mut self,
        policy: &ResolvePolicy,
        name: EnvVarName,
        slot: Slot<'s, Option<V>>,
        finish: &mut impl FnMut(&EnvVarName, Slot<'s, V>) -> T,
    ) {
        let connection = slot.connection;
        if let Err(error) = policy.reserved().check(&name) {
            self.problems.push(Problem::Reserved {
                variable: name,
                connection: connection.name().clone(),
                param: slot.param,
                reason: match error {
                    ParseError::Reserved { reason, .. } => reason,
                    other => other.to_string(),
                },
            });
            return;
        }
        // One hash of the name: the entry either holds the first claim (a
        // collision) or is where this one goes.
        let (variable, first) = match self.vars.entry(name) {
            Entry::Occupied(first) => {
                let origin = first.get().origin();
                (first.key().clone(), Some(origin))
            }
            Entry::Vacant(entry) => match (self.unvalued.get(entry.key()), slot.value) {
                (Some(origin), _) => (entry.into_key(), Some(origin.clone())),
                (None, Some(value)) => {
                    let claimed = finish(
                        entry.key(),
                        Slot {
                            connection,
                            param: slot.param,
                            kind: slot.kind,
                            value,
                        },
                    );
                    entry.insert(claimed);
                    return;
                }
                (None, None) => (entry.into_key(), None),
            },
        };
        let origin = (connection.name().clone(), slot.param);
        match first {
            Some(first) => self.problems.push(Problem::Collision {
                variable,
                first,
                second: origin,
            }),
            None => {
                self.unvalued.insert(variable, origin);
            }
        }
    }
}
