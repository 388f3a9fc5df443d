//! Properties checked against a small reference model written here with plain
//! vectors and maps: visibility never leaks across integrations, projects or
//! customers; precedence and value layering pick what the reference picks;
//! random sequences of writes from two replicas, some with stale versions,
//! never lose an update.

// The model names everything by its index into the constants below.
#![allow(clippy::needless_range_loop)]

use std::collections::HashMap;
use std::sync::Arc;

use connective::model::{
    Connection, ConnectionId, ConnectionName, ConnectionRef, ConnectionUse, CustomerId, EnvEntry, EnvMapping,
    Environment, IntegrationId, Layer, ParamName, ParamValues, ProjectId, Record, Version,
};
use connective::prelude::*;
use connective::resolve::{Problem, ValueSource};
use connective::store::{Batch, Expect, MemoryStore, Store, Write};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

const PROJECTS: [&str; 2] = ["p1", "p2"];
const INTEGRATIONS: [&str; 3] = ["i1", "i2", "i3"];
const NAMES: [&str; 3] = ["a", "b", "c"];
const PARAMS: [&str; 3] = ["X", "Y", "Z"];
const ENVS: [&str; 3] = ["development", "production", "test"];
/// Values exist for c1 and c2 only; c3 is a customer nobody set anything for.
const CUSTOMERS: [&str; 3] = ["c1", "c2", "c3"];
/// Explicit targets; `A_X` and `B_Y` are also default names, to collide with.
const VARS: [&str; 5] = ["V0", "V1", "V2", "A_X", "B_Y"];

fn id<T: std::str::FromStr>(text: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    text.parse().unwrap()
}

// ---------------------------------------------------------------------------
// The reference model.

/// A value layer, by index into the constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L {
    Default,
    Env(usize),
    Customer(usize),
    CustomerEnv(usize, usize),
}

/// The twelve layers a generated parameter may have, in a fixed order.
fn all_layers() -> Vec<L> {
    let mut out = vec![L::Default];
    out.extend((0..3).map(L::Env));
    out.extend((0..2).map(L::Customer));
    out.extend((0..2).flat_map(|c| (0..3).map(move |e| L::CustomerEnv(c, e))));
    out
}

impl L {
    fn layer(self) -> Layer {
        match self {
            L::Default => Layer::Default,
            L::Env(e) => Layer::Environment(id(ENVS[e])),
            L::Customer(c) => Layer::Customer(id(CUSTOMERS[c])),
            L::CustomerEnv(c, e) => Layer::CustomerEnvironment(id(CUSTOMERS[c]), id(ENVS[e])),
        }
    }
    fn customer(self) -> Option<usize> {
        match self {
            L::Customer(c) | L::CustomerEnv(c, _) => Some(c),
            _ => None,
        }
    }
    fn tag(self) -> String {
        match self {
            L::Default => "default".into(),
            L::Env(e) => format!("env:{}", ENVS[e]),
            L::Customer(c) => format!("customer:{}", CUSTOMERS[c]),
            L::CustomerEnv(c, e) => format!("customer:{}@{}", CUSTOMERS[c], ENVS[e]),
        }
    }
}

#[derive(Debug, Clone)]
struct RParam {
    idx: usize,
    secret: bool,
    optional: bool,
    per_customer: bool,
    layers: Vec<L>,
}

#[derive(Debug, Clone)]
struct RConn {
    id: ConnectionId,
    project: usize,
    scope: Option<usize>,
    name: usize,
    params: Vec<RParam>,
}

impl RConn {
    fn scope_tag(&self) -> &'static str {
        self.scope.map_or("project", |i| INTEGRATIONS[i])
    }
    /// Every value says whose it is: project, scope, connection, parameter,
    /// layer.
    fn value(&self, param: usize, layer: L) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            PROJECTS[self.project],
            self.scope_tag(),
            NAMES[self.name],
            PARAMS[param],
            layer.tag()
        )
    }
    fn scope(&self) -> Scope {
        self.scope
            .map_or(Scope::Project, |i| Scope::Integration(id(INTEGRATIONS[i])))
    }
}

#[derive(Debug, Clone)]
enum RRef {
    Name(usize),
    Id(ConnectionId),
}

#[derive(Debug, Clone)]
struct RUse {
    reference: RRef,
    /// `None`: default names.
    entries: Option<Vec<(usize, usize)>>,
}

#[derive(Debug, Clone)]
struct RMappings {
    project: usize,
    integration: usize,
    uses: Vec<RUse>,
}

struct Model {
    conns: Vec<RConn>,
    mappings: Vec<RMappings>,
}

impl Model {
    /// Rules 1 and 2, plainly: by name, the integration's own connection, else
    /// the project's; by ID, that connection if it is the project's or the
    /// integration's own.
    fn find(&self, project: usize, integration: usize, reference: &RRef) -> Option<&RConn> {
        match reference {
            RRef::Name(n) => self
                .conns
                .iter()
                .find(|c| c.project == project && c.scope == Some(integration) && c.name == *n)
                .or_else(|| {
                    self.conns
                        .iter()
                        .find(|c| c.project == project && c.scope.is_none() && c.name == *n)
                }),
            RRef::Id(wanted) => self.conns.iter().find(|c| {
                c.id == *wanted && c.project == project && (c.scope.is_none() || c.scope == Some(integration))
            }),
        }
    }

    /// Rule 3, plainly: (customer, environment), customer, environment, default.
    fn pick(param: &RParam, env: usize, customer: Option<usize>) -> Option<L> {
        let has = |l: L| param.layers.contains(&l).then_some(l);
        customer
            .and_then(|c| has(L::CustomerEnv(c, env)).or_else(|| has(L::Customer(c))))
            .or_else(|| has(L::Env(env)))
            .or_else(|| has(L::Default))
    }

    fn resolve(
        &self,
        project: usize,
        integration: usize,
        env: usize,
        customer: Option<usize>,
    ) -> Result<Vec<Var>, Vec<Problem>> {
        let Some(mappings) = self
            .mappings
            .iter()
            .find(|m| m.project == project && m.integration == integration)
        else {
            return Ok(Vec::new());
        };
        let mut vars = Vec::new();
        let mut claimed: HashMap<String, (ConnectionName, ParamName)> = HashMap::new();
        let mut problems = Vec::new();
        let customer_id = customer.map(|c| id::<CustomerId>(CUSTOMERS[c]));
        for u in &mappings.uses {
            let Some(conn) = self.find(project, integration, &u.reference) else {
                problems.push(Problem::NotVisible {
                    reference: match &u.reference {
                        RRef::Name(n) => ConnectionRef::Name(id(NAMES[*n])),
                        RRef::Id(i) => ConnectionRef::Id(*i),
                    },
                    integration: id(INTEGRATIONS[integration]),
                });
                continue;
            };
            let name: ConnectionName = id(NAMES[conn.name]);
            let entries: Vec<(usize, String)> = match &u.entries {
                Some(entries) => entries.iter().map(|(p, v)| (*p, VARS[*v].to_owned())).collect(),
                None => conn
                    .params
                    .iter()
                    .map(|p| {
                        (
                            p.idx,
                            format!("{}_{}", NAMES[conn.name].to_uppercase(), PARAMS[p.idx]),
                        )
                    })
                    .collect(),
            };
            let explicit = u.entries.is_some();
            for (p, var) in entries {
                let param_name: ParamName = id(PARAMS[p]);
                let value = match conn.params.iter().find(|q| q.idx == p) {
                    None => Err(Problem::UnknownParam {
                        connection: name.clone(),
                        connection_id: conn.id,
                        param: param_name.clone(),
                    }),
                    Some(q) if q.per_customer && customer.is_none() && !explicit && q.optional => continue,
                    Some(q) if q.per_customer && customer.is_none() => Err(Problem::CustomerRequired {
                        connection: name.clone(),
                        connection_id: conn.id,
                        param: param_name.clone(),
                    }),
                    Some(q) => match Self::pick(q, env, customer) {
                        Some(l) => Ok((q.secret, l)),
                        None if !explicit && q.optional => continue,
                        None => Err(Problem::MissingValue {
                            connection: name.clone(),
                            connection_id: conn.id,
                            param: param_name.clone(),
                            environment: id(ENVS[env]),
                            customer: customer_id.clone(),
                        }),
                    },
                };
                if let Err(problem) = &value {
                    problems.push(problem.clone());
                }
                if let Some(first) = claimed.get(&var) {
                    problems.push(Problem::Collision {
                        variable: id(&var),
                        first: first.clone(),
                        second: (name.clone(), param_name),
                    });
                    continue;
                }
                claimed.insert(var.clone(), (name.clone(), param_name.clone()));
                if let Ok((secret, layer)) = value {
                    vars.push(Var {
                        name: var,
                        value: conn.value(p, layer),
                        secret,
                        connection: conn.id,
                        scope: conn.scope(),
                        param: param_name,
                        layer: layer.layer(),
                    });
                }
            }
        }
        if problems.is_empty() {
            Ok(vars)
        } else {
            Err(problems)
        }
    }

    /// Rule 9: the integrations whose mappings resolve to `conn`.
    fn dependents(&self, conn: &RConn) -> Vec<IntegrationId> {
        let mut out: Vec<IntegrationId> = self
            .mappings
            .iter()
            .filter(|m| m.project == conn.project)
            .filter(|m| {
                m.uses.iter().any(|u| {
                    self.find(m.project, m.integration, &u.reference)
                        .is_some_and(|c| c.id == conn.id)
                })
            })
            .map(|m| id(INTEGRATIONS[m.integration]))
            .collect();
        out.sort();
        out
    }
}

/// One resolved variable, as the reference and the registry both describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Var {
    name: String,
    value: String,
    secret: bool,
    connection: ConnectionId,
    scope: Scope,
    param: ParamName,
    layer: Layer,
}

fn observed(env: &ResolvedEnv) -> Vec<Var> {
    env.iter()
        .map(|v| Var {
            name: v.name().to_string(),
            value: v.value().expose().to_owned(),
            secret: v.value().is_secret(),
            connection: v.provenance().connection_id,
            scope: v.provenance().scope.clone(),
            param: v.provenance().param.clone(),
            layer: match &v.provenance().source {
                ValueSource::Layer(l) => l.clone(),
                other => panic!("no OAuth application in these catalogs: {other}"),
            },
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Generated catalogs.

/// (param, secret, optional, per-customer, layer bits)
type GenParam = (usize, bool, bool, bool, u16);
/// (project, scope, name, params)
type GenConn = (usize, Option<usize>, usize, Vec<GenParam>);
/// How a generated mapping refers to a connection.
#[derive(Debug, Clone)]
enum GenRef {
    /// By name, to the k-th connection visible to the integration (mod count).
    VisibleName(usize),
    /// By ID, to the k-th connection visible to the integration (mod count).
    VisibleId(usize),
    /// By the name of the k-th generated connection, visible or not.
    NameOf(usize),
    /// By the ID of the k-th generated connection, visible or not.
    IdOf(usize),
    /// By a name, whether or not anything has it.
    Name(usize),
    /// By an ID nothing has.
    Dangling,
}
/// An explicit entry's parameter: the k-th of the connection's own (mod
/// count), or any parameter name.
type GenFrom = Result<usize, usize>;
/// (reference, explicit entries or default names)
type GenUse = (GenRef, Option<Vec<(GenFrom, usize)>>);
/// Connections, then per (project, integration) pair its mappings, if any.
type GenCatalog = (Vec<GenConn>, Vec<Option<Vec<GenUse>>>);

fn gen_catalog() -> impl Strategy<Value = GenCatalog> {
    // Half the parameters get a default value on top of random layers, so
    // that values are found often enough for the answers to be interesting.
    let param = (
        0..3usize,
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.2),
        any::<u16>(),
        any::<bool>(),
    )
        .prop_map(|(idx, secret, optional, per_customer, bits, default)| {
            (
                idx,
                secret,
                optional,
                per_customer,
                if default { bits | 1 } else { bits },
            )
        });
    let conn = (
        0..2usize,
        prop::option::of(0..3usize),
        0..3usize,
        prop::collection::vec(param, 1..=3),
    );
    prop::collection::vec(conn, 1..=10).prop_flat_map(|conns| {
        let n = conns.len();
        let reference = prop_oneof![
            6 => (0..n).prop_map(GenRef::VisibleName),
            6 => (0..n).prop_map(GenRef::VisibleId),
            1 => (0..n).prop_map(GenRef::NameOf),
            1 => (0..n).prop_map(GenRef::IdOf),
            1 => (0..3usize).prop_map(GenRef::Name),
            1 => Just(GenRef::Dangling),
        ];
        let from = prop_oneof![5 => (0..3usize).prop_map(Ok), 1 => (0..3usize).prop_map(Err)];
        let entries = prop::option::of(prop::collection::vec((from, 0..5usize), 1..=2));
        let uses = prop::collection::vec((reference, entries), 1..=3);
        (
            Just(conns),
            prop::collection::vec(prop::option::weighted(0.8, uses), 6),
        )
    })
}

/// Builds the reference model and a registry holding the same records. The
/// records go straight into the store, so mappings the registry would refuse
/// (invisible references, collisions) reach the resolver too.
fn world((gen_conns, gen_mappings): GenCatalog) -> (Model, Registry) {
    let layers = all_layers();
    let mut conns: Vec<RConn> = Vec::new();
    // Generated connection k is conns[kept[k]] (a duplicate (scope, name) is
    // dropped in favour of the first: names are unique per scope).
    let mut kept: Vec<usize> = Vec::new();
    for (project, scope, name, gen_params) in gen_conns {
        if let Some(k) = conns
            .iter()
            .position(|c| (c.project, c.scope, c.name) == (project, scope, name))
        {
            kept.push(k);
            continue;
        }
        kept.push(conns.len());
        let mut params: Vec<RParam> = Vec::new();
        for (idx, secret, optional, per_customer, bits) in gen_params {
            if params.iter().any(|p| p.idx == idx) {
                continue;
            }
            let layers = layers
                .iter()
                .enumerate()
                .filter(|(i, l)| bits & (1 << i) != 0 && (!per_customer || l.customer().is_some()))
                .map(|(_, l)| *l)
                .collect();
            params.push(RParam {
                idx,
                secret,
                optional,
                per_customer,
                layers,
            });
        }
        conns.push(RConn {
            id: ConnectionId::random(),
            project,
            scope,
            name,
            params,
        });
    }
    let mut mappings: Vec<RMappings> = Vec::new();
    for (pair, uses) in gen_mappings.into_iter().enumerate() {
        let Some(uses) = uses else { continue };
        let (project, integration) = (pair / 3, pair % 3);
        let visible: Vec<&RConn> = conns
            .iter()
            .filter(|c| c.project == project && (c.scope.is_none() || c.scope == Some(integration)))
            .collect();
        let uses = uses
            .into_iter()
            .map(|(reference, entries)| {
                let target = match reference {
                    GenRef::VisibleName(k) | GenRef::VisibleId(k) if !visible.is_empty() => {
                        Some(visible[k % visible.len()])
                    }
                    GenRef::NameOf(k) | GenRef::IdOf(k) => Some(&conns[kept[k]]),
                    _ => None,
                };
                let reference = match (reference, target) {
                    (GenRef::VisibleName(_) | GenRef::NameOf(_), Some(c)) => RRef::Name(c.name),
                    (GenRef::VisibleId(_) | GenRef::IdOf(_), Some(c)) => RRef::Id(c.id),
                    (GenRef::Name(n), _) => RRef::Name(n),
                    _ => RRef::Id(ConnectionId::random()),
                };
                let entries = entries.map(|entries| {
                    entries
                        .into_iter()
                        .map(|(from, var)| match (from, target) {
                            (Ok(k), Some(c)) => (c.params[k % c.params.len()].idx, var),
                            (Ok(k) | Err(k), _) => (k, var),
                        })
                        .collect()
                });
                RUse { reference, entries }
            })
            .collect();
        mappings.push(RMappings {
            project,
            integration,
            uses,
        });
    }

    let mut batch = Batch::new();
    for c in &conns {
        let builder = match c.scope {
            None => ConnectionSpec::project(PROJECTS[c.project], NAMES[c.name]),
            Some(i) => ConnectionSpec::integration(PROJECTS[c.project], INTEGRATIONS[i], NAMES[c.name]),
        };
        let spec = c
            .params
            .iter()
            .fold(builder, |b, p| {
                let mut param = if p.secret {
                    Param::secret(PARAMS[p.idx])
                } else {
                    Param::plain(PARAMS[p.idx])
                };
                if p.optional {
                    param = param.optional();
                }
                if p.per_customer {
                    param = param.per_customer(EnteredBy::Organization);
                }
                for l in &p.layers {
                    param = param.value(l.layer(), c.value(p.idx, *l));
                }
                b.param(param)
            })
            .build()
            .unwrap();
        let record = Record::Connection(Arc::new(Connection::new(c.id, spec, None)));
        batch.push(Write::put(record, Expect::Absent));
    }
    for m in &mappings {
        let uses = m
            .uses
            .iter()
            .map(|u| ConnectionUse {
                reference: match &u.reference {
                    RRef::Name(n) => ConnectionRef::Name(id(NAMES[*n])),
                    RRef::Id(i) => ConnectionRef::Id(*i),
                },
                env: match &u.entries {
                    None => EnvMapping::Defaults,
                    Some(entries) => EnvMapping::Explicit(
                        entries
                            .iter()
                            .map(|(p, v)| EnvEntry {
                                from: id(PARAMS[*p]),
                                to: id(VARS[*v]),
                            })
                            .collect(),
                    ),
                },
            })
            .collect();
        let record = Record::Mappings(Arc::new(
            Mappings::new(id(PROJECTS[m.project]), id(INTEGRATIONS[m.integration]), uses).unwrap(),
        ));
        batch.push(Write::put(record, Expect::Absent));
    }
    let store = MemoryStore::new();
    if !batch.writes.is_empty() {
        store.commit(&batch).unwrap();
    }
    let registry = Registry::builder().store(store).build().unwrap();
    (Model { conns, mappings }, registry)
}

/// Every request the universe allows: 2 projects × 3 integrations × 3
/// environments × (no customer, c1, c2, c3).
fn requests() -> Vec<(usize, usize, usize, Option<usize>)> {
    let mut out = Vec::new();
    for p in 0..2 {
        for i in 0..3 {
            for e in 0..3 {
                for c in [None, Some(0), Some(1), Some(2)] {
                    out.push((p, i, e, c));
                }
            }
        }
    }
    out
}

/// `cases` cases; a failure is kept next to this file
/// (`properties.proptest-regressions`) and replayed first on the next run.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(cases)
    }
}

fn request(p: usize, i: usize, e: usize, c: Option<usize>) -> ResolveRequest {
    let r = ResolveRequest::parse(PROJECTS[p], INTEGRATIONS[i], ENVS[e]).unwrap();
    match c {
        Some(c) => r.for_customer(CUSTOMERS[c]).unwrap(),
        None => r,
    }
}

/// Rules 1–4 at once: for every request, the registry resolves exactly the
/// variables, values, provenance and problems the reference does.
fn check_resolution(catalog: GenCatalog) -> Result<(), TestCaseError> {
    let (model, registry) = world(catalog);
    for (p, i, e, c) in requests() {
        let expected = model.resolve(p, i, e, c);
        let actual = registry
            .resolve(&request(p, i, e, c))
            .map(|env| observed(&env))
            .map_err(|e| e.problems);
        prop_assert_eq!(actual, expected, "request {}", request(p, i, e, c));
    }
    Ok(())
}

/// Rule 1 checked on the values themselves, without the reference: every value
/// resolved for a request was written for the request's project, for the
/// project or the requesting integration, and for no other customer.
fn check_no_leak(catalog: GenCatalog) -> Result<(), TestCaseError> {
    let (_, registry) = world(catalog);
    for (p, i, e, c) in requests() {
        let Ok(env) = registry.resolve(&request(p, i, e, c)) else {
            continue;
        };
        for var in &env {
            let value = var.value().expose();
            let parts: Vec<&str> = value.split('|').collect();
            prop_assert_eq!(parts[0], PROJECTS[p], "{} leaked into another project", value);
            prop_assert!(
                parts[1] == "project" || parts[1] == INTEGRATIONS[i],
                "{} leaked to {}",
                value,
                INTEGRATIONS[i]
            );
            if let Some(owner) = parts[4].strip_prefix("customer:") {
                let owner = owner.split('@').next().unwrap();
                prop_assert_eq!(
                    Some(owner),
                    c.map(|c| CUSTOMERS[c]),
                    "{} leaked to another customer",
                    value
                );
            }
            let connection = registry.connection(&id(PROJECTS[p]), var.provenance().connection_id);
            prop_assert!(
                connection.is_some_and(|c| connective::resolve::is_visible(&c.value, &id(INTEGRATIONS[i])))
            );
        }
    }
    Ok(())
}

/// Rules 1, 2 and 9 on the read-back side: what an integration can see, which
/// connection shadows which, and who depends on each connection.
fn check_listings(catalog: GenCatalog) -> Result<(), TestCaseError> {
    let (model, registry) = world(catalog);
    for p in 0..2 {
        for i in 0..3 {
            let shadow_of = |c: &RConn| {
                model
                    .conns
                    .iter()
                    .find(|o| c.scope.is_none() && o.project == p && o.scope == Some(i) && o.name == c.name)
                    .map(|o| o.id)
            };
            let mut expected: Vec<(ConnectionId, Option<ConnectionId>)> = model
                .conns
                .iter()
                .filter(|c| c.project == p && (c.scope.is_none() || c.scope == Some(i)))
                .map(|c| (c.id, shadow_of(c)))
                .collect();
            let mut actual: Vec<(ConnectionId, Option<ConnectionId>)> = registry
                .visible_connections(&id(PROJECTS[p]), &id(INTEGRATIONS[i]))
                .into_iter()
                .map(|v| (v.connection.value.id(), v.shadowed_by))
                .collect();
            expected.sort();
            actual.sort();
            prop_assert_eq!(actual, expected);
        }
    }
    for conn in &model.conns {
        let actual = registry.dependents(&id(PROJECTS[conn.project]), conn.id);
        prop_assert_eq!(actual, model.dependents(conn));
    }
    Ok(())
}

/// Rule 3 on one parameter: the layer `value_for` picks is the one the
/// reference picks, for every environment and customer.
fn check_layering(bits: u16) -> Result<(), TestCaseError> {
    let layers: Vec<L> = all_layers()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, l)| l)
        .collect();
    let param = RParam {
        idx: 0,
        secret: false,
        optional: false,
        per_customer: false,
        layers: layers.clone(),
    };
    let spec = layers
        .iter()
        .fold(Param::plain("X"), |p, l| p.value(l.layer(), l.tag()));
    let spec = ConnectionSpec::project("p1", "a").param(spec).build().unwrap();
    let ParamValues::Plain(values) = spec.params()[0].values() else {
        unreachable!()
    };
    for e in 0..3 {
        for c in [None, Some(0), Some(1), Some(2)] {
            let env: Environment = id(ENVS[e]);
            let customer = c.map(|c| id::<CustomerId>(CUSTOMERS[c]));
            let expected = Model::pick(&param, e, c);
            let actual = values.value_for(&env, customer.as_ref());
            prop_assert_eq!(actual.map(|(v, _)| v.to_owned()), expected.map(L::tag));
            prop_assert_eq!(actual.map(|(_, l)| l.clone()), expected.map(L::layer));
            let winner = values.winning_layer(&env, customer.as_ref()).cloned();
            prop_assert_eq!(winner, expected.map(L::layer));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn resolution_matches_the_reference_model(catalog in gen_catalog()) {
        check_resolution(catalog)?;
    }

    #[test]
    fn visibility_never_leaks_across_integrations_projects_or_customers(catalog in gen_catalog()) {
        check_no_leak(catalog)?;
    }

    #[test]
    fn listings_match_the_reference_model(catalog in gen_catalog()) {
        check_listings(catalog)?;
    }

    #[test]
    fn value_layering_picks_what_the_reference_picks(bits in any::<u16>()) {
        check_layering(bits)?;
    }
}

// ---------------------------------------------------------------------------
// Writes: two replicas on one store, each acting on what it last read.

#[derive(Debug, Clone)]
enum Op {
    /// Create connection `name` at project scope or in integration `scope`.
    Create {
        client: usize,
        scope: Option<usize>,
        name: usize,
        value: u8,
    },
    /// Update the `target`-th connection created so far.
    Update {
        client: usize,
        target: usize,
        value: u8,
        reread: bool,
    },
    /// Delete the `target`-th connection created so far.
    Delete {
        client: usize,
        target: usize,
        reread: bool,
    },
    /// Map parameter `param` of the base connection into `VAR` for `integration`.
    SetMappings {
        client: usize,
        integration: usize,
        param: usize,
        reread: bool,
    },
    /// Catch up and read everything.
    Read { client: usize },
}

fn gen_op() -> impl Strategy<Value = Op> {
    let client = 0..2usize;
    prop_oneof![
        2 => (client.clone(), prop::option::of(0..2usize), 0..3usize, any::<u8>())
            .prop_map(|(client, scope, name, value)| Op::Create { client, scope, name, value }),
        4 => (client.clone(), 0..8usize, any::<u8>(), prop::bool::weighted(0.3))
            .prop_map(|(client, target, value, reread)| Op::Update { client, target, value, reread }),
        1 => (client.clone(), 0..8usize, prop::bool::weighted(0.3))
            .prop_map(|(client, target, reread)| Op::Delete { client, target, reread }),
        2 => (client.clone(), 0..2usize, 0..4usize, prop::bool::weighted(0.3))
            .prop_map(|(client, integration, param, reread)| {
                Op::SetMappings { client, integration, param, reread }
            }),
        1 => client.prop_map(|client| Op::Read { client }),
    ]
}

/// The reference: every connection created, with its version (for a deleted
/// one, its tombstone's).
#[derive(Debug, Clone, PartialEq, Eq)]
struct RefConn {
    id: ConnectionId,
    scope: Option<usize>,
    name: usize,
    value: u8,
    version: u64,
    alive: bool,
}

#[derive(Debug, Default)]
struct RefWrites {
    conns: Vec<RefConn>,
    /// integration → (version, mapped parameter)
    mappings: HashMap<usize, (u64, usize)>,
}

/// What one client last read.
#[derive(Debug, Default, Clone)]
struct ClientView {
    conns: HashMap<ConnectionId, u64>,
    mappings: HashMap<usize, u64>,
}

const WRITE_PROJECT: &str = "acme";

fn conn_spec(scope: Option<usize>, name: usize, value: u8) -> ConnectionSpec {
    let builder = match scope {
        None => ConnectionSpec::project(WRITE_PROJECT, NAMES[name]),
        Some(i) => ConnectionSpec::integration(WRITE_PROJECT, INTEGRATIONS[i], NAMES[name]),
    };
    builder
        .param(Param::plain("Value").default(value.to_string()))
        .build()
        .unwrap()
}

fn base_spec() -> ConnectionSpec {
    (0..4)
        .fold(ConnectionSpec::project(WRITE_PROJECT, "base"), |b, k| {
            b.param(Param::plain(format!("P{k}")).default(format!("base-P{k}")))
        })
        .build()
        .unwrap()
}

fn base_mappings(integration: usize, param: usize) -> Mappings {
    Mappings::of(WRITE_PROJECT, INTEGRATIONS[integration])
        .by_name("base", [(format!("P{param}"), "VAR")])
        .build()
        .unwrap()
}

/// What a replica holds, after catching up, in the reference's terms.
fn read_back(registry: &Registry, reference: &RefWrites) -> RefWrites {
    registry.sync().unwrap();
    let project: ProjectId = id(WRITE_PROJECT);
    let conns = reference
        .conns
        .iter()
        .map(|r| match registry.connection(&project, r.id) {
            Some(c) => {
                let ParamValues::Plain(values) = c.value.spec().param("Value").unwrap().values() else {
                    unreachable!()
                };
                RefConn {
                    id: r.id,
                    scope: c
                        .value
                        .scope()
                        .integration()
                        .map(|i| INTEGRATIONS.iter().position(|x| i == x).unwrap()),
                    name: NAMES.iter().position(|n| c.value.name() == n).unwrap(),
                    value: values.get(&Layer::Default).unwrap().parse().unwrap(),
                    version: c.version.0,
                    alive: true,
                }
            }
            None => RefConn {
                version: r.version,
                value: r.value,
                alive: false,
                ..r.clone()
            },
        })
        .collect();
    let mut mappings = HashMap::new();
    for i in 0..2 {
        if let Some(m) = registry.mappings(&project, &id(INTEGRATIONS[i])) {
            let env = registry
                .resolve(&ResolveRequest::parse(WRITE_PROJECT, INTEGRATIONS[i], "production").unwrap())
                .unwrap();
            let value = env.get("VAR").unwrap().value().expose();
            let param: usize = value.strip_prefix("base-P").unwrap().parse().unwrap();
            mappings.insert(i, (m.version.0, param));
        }
    }
    RefWrites { conns, mappings }
}

fn refresh(view: &mut ClientView, registry: &Registry, reference: &RefWrites) {
    let state = read_back(registry, reference);
    view.conns = state
        .conns
        .iter()
        .filter(|c| c.alive)
        .map(|c| (c.id, c.version))
        .collect();
    view.mappings = state.mappings.iter().map(|(i, (v, _))| (*i, *v)).collect();
}

fn run_writes(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let replicas = [
        Registry::builder().shared_store(store.clone()).build().unwrap(),
        Registry::builder().shared_store(store).build().unwrap(),
    ];
    replicas[0].create_connection(base_spec()).unwrap();
    let mut reference = RefWrites::default();
    let mut views = [ClientView::default(), ClientView::default()];
    let project: ProjectId = id(WRITE_PROJECT);

    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Create {
                client,
                scope,
                name,
                value,
            } => {
                let result = replicas[client].create_connection(conn_spec(scope, name, value));
                let taken = reference
                    .conns
                    .iter()
                    .find(|c| c.alive && c.scope == scope && c.name == name);
                match (taken, result) {
                    (None, Ok((new_id, _))) => {
                        // A connection is stored under its (scope, name); the
                        // key's versions never repeat, not even after a delete.
                        let version = reference
                            .conns
                            .iter()
                            .filter(|c| c.scope == scope && c.name == name)
                            .map(|c| c.version)
                            .max()
                            .map_or(1, |v| v + 1);
                        reference.conns.push(RefConn {
                            id: new_id,
                            scope,
                            name,
                            value,
                            version,
                            alive: true,
                        });
                        views[client].conns.insert(new_id, version);
                    }
                    (Some(t), Err(RegistryError::NameTaken { existing, .. })) => {
                        prop_assert_eq!(existing, t.id, "step {}", step);
                    }
                    (t, r) => prop_assert!(false, "step {}: create with {:?} taken gave {:?}", step, t, r),
                }
            }
            Op::Update { .. } | Op::Delete { .. } if reference.conns.is_empty() => {}
            Op::Update {
                client,
                target,
                value,
                reread,
            } => {
                let slot = target % reference.conns.len();
                let target = reference.conns[slot].clone();
                if reread || !views[client].conns.contains_key(&target.id) {
                    refresh(&mut views[client], &replicas[client], &reference);
                }
                let read = views[client]
                    .conns
                    .get(&target.id)
                    .copied()
                    .unwrap_or(target.version);
                let result = replicas[client].update_connection(
                    target.id,
                    Version(read),
                    conn_spec(target.scope, target.name, value),
                );
                match result {
                    Ok(_) => {
                        prop_assert!(
                            target.alive && read == target.version,
                            "step {}: stale update accepted",
                            step
                        );
                        reference.conns[slot].version += 1;
                        reference.conns[slot].value = value;
                        views[client].conns.insert(target.id, target.version + 1);
                    }
                    Err(RegistryError::Conflict { expected, found, .. }) => {
                        prop_assert!(
                            target.alive && read != target.version,
                            "step {}: spurious conflict",
                            step
                        );
                        prop_assert_eq!(expected, Expect::Version(Version(read)));
                        prop_assert_eq!(found, Some(Version(target.version)));
                    }
                    Err(RegistryError::ConnectionNotFound { .. }) => {
                        prop_assert!(!target.alive, "step {}", step)
                    }
                    Err(other) => prop_assert!(false, "step {}: {}", step, other),
                }
            }
            Op::Delete {
                client,
                target,
                reread,
            } => {
                let slot = target % reference.conns.len();
                let target = reference.conns[slot].clone();
                if reread || !views[client].conns.contains_key(&target.id) {
                    refresh(&mut views[client], &replicas[client], &reference);
                }
                let read = views[client]
                    .conns
                    .get(&target.id)
                    .copied()
                    .unwrap_or(target.version);
                let result = replicas[client].delete_connection(
                    &project,
                    target.id,
                    Version(read),
                    DeleteMode::Refuse,
                );
                match result {
                    Ok(_) => {
                        prop_assert!(
                            target.alive && read == target.version,
                            "step {}: stale delete accepted",
                            step
                        );
                        reference.conns[slot].alive = false;
                        // The tombstone's version.
                        reference.conns[slot].version += 1;
                        views[client].conns.remove(&target.id);
                    }
                    Err(RegistryError::Conflict { expected, found, .. }) => {
                        prop_assert!(
                            target.alive && read != target.version,
                            "step {}: spurious conflict",
                            step
                        );
                        prop_assert_eq!(expected, Expect::Version(Version(read)));
                        prop_assert_eq!(found, Some(Version(target.version)));
                    }
                    Err(RegistryError::ConnectionNotFound { .. }) => {
                        prop_assert!(!target.alive, "step {}", step)
                    }
                    Err(other) => prop_assert!(false, "step {}: {}", step, other),
                }
            }
            Op::SetMappings {
                client,
                integration,
                param,
                reread,
            } => {
                if reread {
                    refresh(&mut views[client], &replicas[client], &reference);
                }
                let read = views[client].mappings.get(&integration).copied();
                let current = reference.mappings.get(&integration).map(|(v, _)| *v);
                let result =
                    replicas[client].set_mappings(base_mappings(integration, param), read.map(Version));
                match result {
                    Ok(_) => {
                        prop_assert_eq!(read, current, "step {}: stale mappings accepted", step);
                        let version = current.map_or(1, |v| v + 1);
                        reference.mappings.insert(integration, (version, param));
                        views[client].mappings.insert(integration, version);
                    }
                    Err(RegistryError::Conflict { expected, found, .. }) => {
                        prop_assert_ne!(read, current, "step {}: spurious conflict", step);
                        prop_assert_eq!(
                            expected,
                            read.map_or(Expect::Absent, |v| Expect::Version(Version(v)))
                        );
                        prop_assert_eq!(found, current.map(Version));
                    }
                    Err(other) => prop_assert!(false, "step {}: {}", step, other),
                }
            }
            Op::Read { client } => refresh(&mut views[client], &replicas[client], &reference),
        }
        // Every accepted write is reflected, every refused one left no trace,
        // on both replicas.
        for replica in &replicas {
            let state = read_back(replica, &reference);
            prop_assert_eq!(&state.conns, &reference.conns, "step {}", step);
            prop_assert_eq!(&state.mappings, &reference.mappings, "step {}", step);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    /// Rule 8: random writes from two replicas, some naming versions read long
    /// ago, never lose an update: each accepted write is reflected, each stale
    /// one is refused with a conflict naming both versions, and both replicas
    /// end where the reference ends.
    #[test]
    fn random_writes_with_stale_versions_never_lose_an_update(ops in prop::collection::vec(gen_op(), 1..40)) {
        run_writes(ops)?;
    }
}

#[test]
fn the_reference_model_is_not_trivial() {
    // A fixed catalog exercising shadowing, ID references, every layer kind and
    // a collision, checked both ways: a guard against a generator or reference
    // that only ever produces empty answers.
    let catalog = (
        vec![
            (
                0,
                None,
                0,
                vec![
                    (0, true, false, false, 0b1111_1111_1111u16),
                    (1, false, false, false, 0b1),
                ],
            ),
            (0, Some(0), 0, vec![(0, false, false, false, 0b10)]),
            (0, None, 1, vec![(0, false, false, true, 0b1000_0010_0000)]),
        ],
        vec![
            Some(vec![
                (GenRef::Name(0), None),
                (GenRef::IdOf(0), Some(vec![(Err(0), 0)])),
            ]),
            Some(vec![
                (GenRef::Name(0), Some(vec![(Err(0), 0), (Err(1), 1)])),
                (GenRef::NameOf(2), Some(vec![(Err(0), 2)])),
            ]),
            None,
            None,
            None,
            None,
        ],
    );
    let (model, registry) = world(catalog);
    let mut ok = 0;
    let mut problems = 0;
    for (p, i, e, c) in requests() {
        let expected = model.resolve(p, i, e, c);
        let actual = registry
            .resolve(&request(p, i, e, c))
            .map(|env| observed(&env))
            .map_err(|e| e.problems);
        assert_eq!(actual, expected);
        match expected {
            Ok(vars) if !vars.is_empty() => ok += 1,
            Err(_) => problems += 1,
            _ => {}
        }
    }
    assert!(
        ok > 0 && problems > 0,
        "{ok} resolutions with variables, {problems} with problems"
    );
    // i1 sees its own `a` by name (it shadows the project's) and the project's
    // `a` by ID, both in development.
    let env = registry.resolve(&request(0, 0, 0, None)).unwrap();
    assert_eq!(
        env.get("A_X").unwrap().value().expose(),
        "p1|i1|a|X|env:development"
    );
    assert_eq!(
        env.get("V0").unwrap().value().expose(),
        "p1|project|a|X|env:development"
    );
    // i2 sees the project's `a`; customer c2 in test gets its own value.
    let env = registry.resolve(&request(0, 1, 2, Some(1))).unwrap();
    assert_eq!(
        env.get("V0").unwrap().value().expose(),
        "p1|project|a|X|customer:c2@test"
    );
    assert_eq!(
        env.get("V2").unwrap().value().expose(),
        "p1|project|b|X|customer:c2@test"
    );
}
