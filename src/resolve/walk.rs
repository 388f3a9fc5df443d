//! The walk over an integration's mappings (rules 1, 2 and 4), shared by
//! resolution and by the registry's mapping checks.

use std::borrow::Cow;
use std::collections::HashMap;

use hashbrown::HashTable;

use super::env::name_hash;
use super::{AppField, NameSource, Problem, find_connection};
use crate::catalog::ProjectSnapshot;
use crate::model::{
    Connection, ConnectionName, ConnectionUse, EnvMapping, EnvVarName, IntegrationId, ParamName, ParseError,
    ResolvePolicy,
};

/// The parameters a default-name mapping injects: the declared ones, then
/// the OAuth application's.
fn default_params(connection: &Connection) -> impl Iterator<Item = Cow<'_, ParamName>> + '_ {
    let app = connection
        .oauth_app()
        .is_some()
        .then(|| {
            AppField::ALL
                .iter()
                .filter_map(|f| f.param().parse::<ParamName>().ok())
                .map(Cow::Owned)
        })
        .into_iter()
        .flatten();
    connection
        .spec()
        .params()
        .iter()
        .map(|p| Cow::Borrowed(p.name()))
        .chain(app)
}

/// One variable of a [`walk`]: its name, and the connection and parameter
/// it comes from, borrowed from the mappings and the snapshot walked (a
/// default name is made, so owned).
pub(super) struct Slot<'a, V> {
    pub(super) name: Cow<'a, EnvVarName>,
    pub(super) connection: &'a Connection,
    pub(super) param: Cow<'a, ParamName>,
    pub(super) kind: NameSource,
    pub(super) value: V,
}

impl<V> Slot<'_, V> {
    /// The connection and parameter that claimed the name, for a later entry
    /// that collides.
    fn origin(&self) -> (ConnectionName, ParamName) {
        (self.connection.name().clone(), self.param.clone().into_owned())
    }
}

/// The variables a [`walk`] claimed, in mapping order, and their index by
/// name (hashed by [`name_hash`]): what an answer keeps.
pub(super) struct Table<V> {
    pub(super) entries: Vec<V>,
    index: HashTable<usize>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            entries: Vec::new(),
            index: HashTable::new(),
        }
    }
}

impl<'a, V> Table<Slot<'a, V>> {
    fn with_capacity(capacity: usize) -> Self {
        Table {
            entries: Vec::with_capacity(capacity),
            index: HashTable::with_capacity(capacity),
        }
    }

    /// The variable `name`, whose hash is `hash`.
    pub(super) fn find(&self, hash: u64, name: &str) -> Option<&Slot<'a, V>> {
        let entries = &self.entries;
        self.index
            .find(hash, |&i| entries[i].name.as_str() == name)
            .map(|&i| &entries[i])
    }

    /// Adds `slot` (no variable of its name is there yet).
    fn push(&mut self, hash: u64, slot: Slot<'a, V>) {
        let Table { entries, index } = self;
        let i = entries.len();
        entries.push(slot);
        index.insert_unique(hash, i, |&j| name_hash(entries[j].name.as_str()));
    }
}

/// Walks an integration's mappings in order (rules 1, 2 and 4): finds each
/// connection, names each variable (explicit or default), asks `value` for the
/// parameter's value (`Ok(None)`: leave the variable out), and checks reserved
/// names and collisions ([`Claims::claim`]). Every problem is collected.
///
/// Nothing is copied: each variable kept borrows its name, connection and
/// parameter from `uses` and `snapshot`.
pub(super) fn walk<'a, V>(
    snapshot: &'a ProjectSnapshot,
    policy: &ResolvePolicy,
    integration: &IntegrationId,
    uses: &'a [ConnectionUse],
    mut value: impl FnMut(&'a Connection, &ParamName, bool) -> Result<Option<V>, Problem>,
) -> (Table<Slot<'a, V>>, Vec<Problem>) {
    let mut claims = Claims::for_uses(uses);
    for use_ in uses {
        let Some(found) = find_connection(snapshot, integration, &use_.reference) else {
            claims.problems.push(Problem::NotVisible {
                reference: use_.reference.clone(),
                integration: integration.clone(),
            });
            continue;
        };
        let connection: &'a Connection = &found.value;
        let mut add = |name: Cow<'a, EnvVarName>, param: Cow<'a, ParamName>, kind: NameSource| {
            let value = match value(connection, &param, kind == NameSource::Explicit) {
                Ok(Some(v)) => Some(v),
                Ok(None) => return,
                Err(problem) => {
                    claims.problems.push(problem);
                    None
                }
            };
            claims.claim(
                policy,
                Slot {
                    name,
                    connection,
                    param,
                    kind,
                    value,
                },
            );
        };
        match &use_.env {
            EnvMapping::Explicit(entries) => {
                for entry in entries {
                    add(
                        Cow::Borrowed(&entry.to),
                        Cow::Borrowed(&entry.from),
                        NameSource::Explicit,
                    );
                }
            }
            EnvMapping::Defaults => {
                for param in default_params(connection) {
                    let name = EnvVarName::default_for(policy.prefix(), connection.name(), &param);
                    add(Cow::Owned(name), param, NameSource::Default);
                }
            }
        }
    }
    (claims.vars, claims.problems)
}

/// The variables claimed so far in a [`walk`], and its problems.
struct Claims<'a, V> {
    vars: Table<Slot<'a, V>>,
    /// Variables whose value is missing still claim their name, so a second
    /// entry producing it is reported too (every problem at once).
    unvalued: HashMap<EnvVarName, (ConnectionName, ParamName)>,
    problems: Vec<Problem>,
}

impl<'a, V> Claims<'a, V> {
    /// Room for every variable of `uses` up front: growing the table moves
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
            vars: Table::with_capacity(capacity),
            unvalued: HashMap::new(),
            problems: Vec::new(),
        }
    }

    /// **Rule 4 for one variable.** Claims `slot`'s name (its value is
    /// `None` when it is missing: the problem is already recorded): refused
    /// if the policy reserves the name, a collision if an earlier entry
    /// produced it, else kept.
    fn claim(&mut self, policy: &ResolvePolicy, slot: Slot<'a, Option<V>>) {
        // One hash of the name: for the reserved-name check, the collision
        // probe and the answer's index.
        let text = slot.name.as_str();
        let hash = name_hash(text);
        if let Err(error) = policy.reserved().check_hashed(text, hash) {
            self.problems.push(Problem::Reserved {
                variable: slot.name.into_owned(),
                connection: slot.connection.name().clone(),
                param: slot.param.into_owned(),
                reason: match error {
                    ParseError::Reserved { reason, .. } => reason,
                    other => other.to_string(),
                },
            });
            return;
        }
        let first = match self.vars.find(hash, text) {
            Some(first) => Some(first.origin()),
            None => {
                let unvalued = if self.unvalued.is_empty() {
                    None
                } else {
                    self.unvalued.get(&*slot.name).cloned()
                };
                match (unvalued, slot.value) {
                    (Some(origin), _) => Some(origin),
                    (None, Some(value)) => {
                        self.vars.push(
                            hash,
                            Slot {
                                name: slot.name,
                                connection: slot.connection,
                                param: slot.param,
                                kind: slot.kind,
                                value,
                            },
                        );
                        return;
                    }
                    (None, None) => None,
                }
            }
        };
        let origin = (slot.connection.name().clone(), slot.param.into_owned());
        let variable = slot.name.into_owned();
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
