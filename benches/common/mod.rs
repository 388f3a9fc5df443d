//! Fixtures shared by the benchmarks: workload W, filler catalogs and the
//! helpers that print figures with their targets.
//!
//! Workload W (issue 4): one integration (`acme/orders`) with 10 mapped
//! connections × 5 parameters → 50 variables; 2 secret parameters per
//! connection; 5 project-scope and 5 integration-scope connections; 2
//! environment overrides per connection (`ServiceURL` and `ApiKey` have a
//! `production` value besides their default). Resolved for `production`, so 20
//! variables come from an environment override and 30 from a default.
//!
//! Filler ("other connections"): projects of 1,000 connections each, 500
//! project-scope and 500 integration-scope spread over 10 integrations, each
//! with 5 short parameters (2 secret), one default value each, no mappings.

#![allow(dead_code)]

pub mod record;

use std::sync::Arc;
use std::time::Duration;

use connective::model::{
    AuthScheme, Connection, ConnectionId, ConnectionSpec, Param, ProjectId, Record, Target,
};
use connective::prelude::{Mappings, Registry, ResolveRequest, Resolver};
use connective::store::{Batch, Expect, MemoryStore, Store, Write};
use indexmap::IndexMap;

/// The project of workload W.
pub const W_PROJECT: &str = "acme";
/// The integration of workload W.
pub const W_INTEGRATION: &str = "orders";
/// Connections per filler project.
pub const PER_PROJECT: usize = 1_000;

/// Whether `CONNECTIVE_BENCH_QUICK` is set: smaller catalogs and shorter runs,
/// for a smoke test of the benchmarks (figures are then not the issue's).
pub fn quick() -> bool {
    std::env::var_os("CONNECTIVE_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// The "1,000,000" of the issue, or 100,000 in quick mode.
pub fn large() -> usize {
    if quick() { 100_000 } else { 1_000_000 }
}

/// One connection of W: `(scope integration or None, name, params as
/// (param, kind secret?, default, production override))`.
pub struct WConnection {
    pub integration_scope: bool,
    pub name: String,
    pub params: Vec<(&'static str, bool, String, Option<String>)>,
}

/// W's ten connections.
pub fn w_connections() -> Vec<WConnection> {
    (0..10)
        .map(|i| {
            let name = format!("svc{i:02}");
            WConnection {
                integration_scope: i % 2 == 1,
                params: vec![
                    (
                        "ServiceURL",
                        false,
                        format!("https://{name}.dev.example.com/api"),
                        Some(format!("https://{name}.example.com/api")),
                    ),
                    ("Region", false, "eu-west-1".to_string(), None),
                    ("Username", false, format!("orders-bot-{i}"), None),
                    (
                        "ApiKey",
                        true,
                        format!("dev-key-{name}-3f9a"),
                        Some(format!("live-key-{name}-81c2")),
                    ),
                    ("Password", true, format!("pw-{name}-77d1"), None),
                ],
                name,
            }
        })
        .collect()
}

/// The variable a parameter of W lands in: `SVC03_SERVICEURL`.
pub fn w_var(connection: &str, param: &str) -> String {
    format!("{}_{}", connection.to_uppercase(), param.to_uppercase())
}

fn w_spec(project: &str, c: &WConnection) -> ConnectionSpec {
    let mut b = if c.integration_scope {
        ConnectionSpec::integration(project, W_INTEGRATION, c.name.as_str())
    } else {
        ConnectionSpec::project(project, c.name.as_str())
    }
    .target(Target::external(c.name.as_str()))
    .auth(AuthScheme::ApiKey);
    for (param, secret, default, prod) in &c.params {
        let mut p = if *secret {
            Param::secret(*param)
        } else {
            Param::plain(*param)
        };
        p = p.default(default.as_str());
        if let Some(prod) = prod {
            p = p.env("production", prod.as_str());
        }
        b = b.param(p);
    }
    b.build().expect("W spec")
}

/// Adds W (connections and mappings) to `registry` through its public API.
pub fn add_w(registry: &Registry) {
    add_w_to(registry, W_PROJECT);
}

/// Adds a copy of W as project `project` (same integration, connections and
/// mappings), resolved by [`w_request_for`].
pub fn add_w_to(registry: &Registry, project: &str) {
    let conns = w_connections();
    let mut mappings = Mappings::of(project, W_INTEGRATION);
    for c in &conns {
        registry
            .create_connection(w_spec(project, c))
            .expect("create W connection");
        let entries: Vec<(&str, String)> = c.params.iter().map(|p| (p.0, w_var(&c.name, p.0))).collect();
        mappings = mappings.by_name(c.name.as_str(), entries);
    }
    registry
        .set_mappings(mappings.build().expect("W mappings"), None)
        .expect("set W mappings");
}

/// The request W is resolved for.
pub fn w_request() -> ResolveRequest {
    w_request_for(W_PROJECT)
}

/// The request a copy of W in `project` (see [`add_w_to`]) is resolved for.
pub fn w_request_for(project: &str) -> ResolveRequest {
    ResolveRequest::parse(project, W_INTEGRATION, "production").expect("request")
}

/// W's answer as plain text, `VAR → value`, in mapping order: what the copy-out
/// limit clones and what the figment baseline must reproduce.
pub fn w_answer(resolver: &impl Resolver) -> IndexMap<String, String> {
    let env = resolver.resolve(&w_request()).expect("resolve W");
    assert_eq!(env.len(), 50, "W resolves to 50 variables");
    env.iter()
        .map(|v| (v.name().to_string(), v.value().expose().to_string()))
        .collect()
}

/// One filler connection's spec: 5 short parameters, 2 of them secret.
pub fn filler_spec(project: &str, index: usize) -> ConnectionSpec {
    filler_spec_version(project, index, 0)
}

/// [`filler_spec`] with values that differ for each `variant` (same name and
/// scope: a write of it updates the connection in place).
pub fn filler_spec_version(project: &str, index: usize, variant: usize) -> ConnectionSpec {
    let name = format!("c{index:04}");
    let b = if index.is_multiple_of(2) {
        ConnectionSpec::project(project, name.as_str())
    } else {
        let integration = format!("int{}", index % 10);
        ConnectionSpec::integration(project, integration.as_str(), name.as_str())
    };
    b.target(Target::external("svc"))
        .auth(AuthScheme::ApiKey)
        .param(Param::plain("ServiceURL").default(format!("https://h{index}-{variant}.example")))
        .param(Param::plain("Region").default("eu-west-1"))
        .param(Param::plain("Username").default(format!("bot{index}")))
        .param(Param::secret("ApiKey").default(format!("k{index:06}")))
        .param(Param::secret("Password").default(format!("p{index:06}")))
        .build()
        .expect("filler spec")
}

/// The records of filler project `p` (`proj-000123`), `PER_PROJECT`
/// connections.
pub fn filler_project(p: usize) -> (ProjectId, Vec<Record>) {
    let project: ProjectId = format!("proj-{p:06}").parse().expect("project id");
    let records = (0..PER_PROJECT)
        .map(|i| {
            let spec = filler_spec(project.as_str(), i);
            Record::Connection(Arc::new(Connection::new(ConnectionId::random(), spec, None)))
        })
        .collect();
    (project, records)
}

/// A memory store holding `connections` filler connections (rounded up to
/// whole projects), committed one project per batch.
pub fn filler_store(connections: usize) -> MemoryStore {
    let store = MemoryStore::new();
    fill_store(&store, connections);
    store
}

/// Commits `connections` filler connections into `store`, one project per
/// batch.
pub fn fill_store(store: &dyn Store, connections: usize) {
    for p in 0..connections.div_ceil(PER_PROJECT) {
        let (_, records) = filler_project(p);
        let mut batch = Batch::new();
        for r in records {
            batch.push(Write::put(r, Expect::Absent));
        }
        store.commit(&batch).expect("commit filler");
    }
}

/// A registry over a memory store with `others` filler connections and W,
/// without a memo of resolutions.
pub fn registry_with_w(others: usize) -> Registry {
    registry_with_w_memo(others, 0)
}

/// [`registry_with_w`] with a memo of `memo` resolutions (`0`: none, so
/// every resolution is a first one, what the other benches measure).
pub fn registry_with_w_memo(others: usize, memo: usize) -> Registry {
    let registry = Registry::builder()
        .store(filler_store(others))
        .resolve_memo(memo)
        .build()
        .expect("registry");
    add_w(&registry);
    registry
}

/// Median of `values` (sorted in place).
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The `q`-quantile (0..=1) of `values` (sorted in place), nearest rank.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// Formats a duration given in nanoseconds.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// Prints one figure of the table: what, the measured value, the
/// target and whether it is met.
pub fn figure(what: &str, measured: &str, target: &str, met: bool) {
    println!(
        "FIGURE | {what} | {measured} | target {target} | {}",
        if met { "met" } else { "NOT MET" }
    );
}

/// Time a duration as nanoseconds.
pub fn ns(d: Duration) -> f64 {
    d.as_secs_f64() * 1e9
}

/// CPU seconds (user + system) of the whole process so far, every
/// thread's, exited ones included (`/proc/self/stat`, in clock ticks of
/// 10 ms; `NaN` where there is no such file). On a busy machine the CPU
/// time of a step compares where its wall time cannot.
pub fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // The fields after the command name, which is in parentheses; utime
    // and stime are fields 14 and 15 of the whole line.
    let Some(rest) = stat.rfind(')').and_then(|at| stat.get(at + 2..)) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    match (ticks(14), ticks(15)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}
