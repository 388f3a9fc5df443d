//! Resolution speed: a first resolution of workload W against the copy-out
//! limit and a figment baseline, size independence (W with 1,000 vs
//! 1,000,000 other connections in the catalog), and a repeated resolution
//! (memoized) against the floor of an `Arc` clone.
//!
//! ```text
//! cargo bench --bench resolve
//! CONNECTIVE_BENCH_QUICK=1 cargo bench --bench resolve   # smoke run, 100,000 others
//! ```
//!
//! Prints criterion's statistics for every benchmark, then one `FIGURE` line
//! per target with the ratio of medians measured in this run.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::record::{bench, median_ns};
use common::{W_INTEGRATION, W_PROJECT, figure, fmt_ns, quick, w_connections, w_request, w_var};
use connective::prelude::Resolver;
use criterion::Criterion;
use figment::providers::Serialized;
use figment::{Figment, Profile};
use indexmap::IndexMap;

/// `connection → parameter → value`, one figment layer's data for a profile.
type Tables = BTreeMap<String, BTreeMap<String, String>>;

/// The obvious alternative a host would write today: one figment per layer
/// (project-scope connections, then the integration's own), each with a
/// `default` profile and a `production` profile holding the overrides.
struct FigmentHost {
    project: Figment,
    integration: Figment,
    /// `(variable, connection, parameter)`, in mapping order.
    mapping: Vec<(String, String, String)>,
}

impl FigmentHost {
    fn new() -> Self {
        let mut layers = [(Tables::new(), Tables::new()), (Tables::new(), Tables::new())];
        let mut mapping = Vec::new();
        for c in w_connections() {
            let (defaults, production) = &mut layers[usize::from(c.integration_scope)];
            for (param, _secret, default, prod) in &c.params {
                defaults
                    .entry(c.name.clone())
                    .or_default()
                    .insert(param.to_string(), default.clone());
                if let Some(prod) = prod {
                    production
                        .entry(c.name.clone())
                        .or_default()
                        .insert(param.to_string(), prod.clone());
                }
                mapping.push((w_var(&c.name, param), c.name.clone(), param.to_string()));
            }
        }
        let [project, integration] = layers.map(|(defaults, production)| {
            Figment::new()
                .merge(Serialized::from(defaults, Profile::Default))
                .merge(Serialized::from(production, "production"))
        });
        FigmentHost {
            project,
            integration,
            mapping,
        }
    }

    /// Project layer, then integration layer, environment profile selected;
    /// extracted once, then the 50 variables picked in mapping order.
    fn resolve(&self, environment: &str) -> IndexMap<String, String> {
        let figment = Figment::from(&self.project)
            .merge(&self.integration)
            .select(environment);
        let mut tables: HashMap<String, HashMap<String, String>> =
            figment.extract().expect("figment extract");
        self.mapping
            .iter()
            .map(|(var, connection, param)| {
                let value = tables
                    .get_mut(connection)
                    .and_then(|t| t.remove(param))
                    .expect("figment value");
                (var.clone(), value)
            })
            .collect()
    }
}

fn main() {
    let (warm_up, measure, samples) = if quick() {
        (Duration::from_millis(300), Duration::from_secs(1), 20)
    } else {
        (Duration::from_secs(1), Duration::from_secs(4), 60)
    };
    let mut c = Criterion::default()
        .warm_up_time(warm_up)
        .measurement_time(measure)
        .sample_size(samples)
        .configure_from_args();

    let others_large = common::large();
    eprintln!("building catalogs: W + 1,000 others, W + {others_large} others ...");
    let small = common::registry_with_w(1_000);
    let large = common::registry_with_w(others_large);
    let request = w_request();

    // The copy-out limit: cloning the final answer, prebuilt.
    let answer = common::w_answer(&small);
    assert_eq!(common::w_answer(&large), answer);
    let figment = FigmentHost::new();
    assert_eq!(
        figment.resolve("production"),
        answer,
        "the figment baseline produces the same 50 variables"
    );
    let _ = (W_PROJECT, W_INTEGRATION);
    // Repeated resolutions: a registry with a memo, asked once before.
    let memoized = common::registry_with_w_memo(1_000, 1_024);
    assert_eq!(common::w_answer(&memoized), answer);
    let kept = memoized.resolve(&request).expect("resolve");
    assert!(
        memoized
            .resolve(&request)
            .expect("resolve")
            .shares_answer_with(&kept)
    );
    let floor = Arc::new(answer.clone());

    let mut g = c.benchmark_group("resolve_w");
    bench(&mut g, "resolve_w", "copy_out_limit", || answer.clone());
    bench(&mut g, "resolve_w", "connective", || {
        small.resolve(&request).expect("resolve")
    });
    bench(&mut g, "resolve_w", "figment", || figment.resolve("production"));
    g.finish();

    let mut g = c.benchmark_group("repeated");
    bench(&mut g, "repeated", "memoized", || {
        memoized.resolve(&request).expect("resolve")
    });
    bench(&mut g, "repeated", "arc_clone_floor", || Arc::clone(&floor));
    g.finish();

    let mut g = c.benchmark_group("size_independence");
    bench(&mut g, "size_independence", "others_1k", || {
        small.resolve(&request).expect("resolve")
    });
    bench(&mut g, "size_independence", "others_large", || {
        large.resolve(&request).expect("resolve")
    });
    g.finish();
    c.final_summary();

    let get = |key: &str| median_ns(key, samples);
    println!();
    println!("# resolution figures (medians of criterion's samples in this run)");
    if let (Some(copy), Some(ours)) = (get("resolve_w/copy_out_limit"), get("resolve_w/connective")) {
        let ratio = ours / copy;
        figure(
            "resolve W first, median (no memo)",
            &format!("{} vs copy-out {}: {ratio:.2}x", fmt_ns(ours), fmt_ns(copy)),
            "<= 1.0x copy-out",
            ratio <= 1.0,
        );
        if let Some(fig) = get("resolve_w/figment") {
            let speedup = fig / ours;
            figure(
                "figment baseline (same 50 variables)",
                &format!("figment {}: connective is {speedup:.1}x faster", fmt_ns(fig)),
                "report",
                true,
            );
        }
    }
    if let (Some(kept), Some(floor)) = (get("repeated/memoized"), get("repeated/arc_clone_floor")) {
        figure(
            "repeated resolve W, median (memoized)",
            &format!("{} (Arc clone floor {})", fmt_ns(kept), fmt_ns(floor)),
            "<= 50 ns",
            kept <= 50.0,
        );
    }
    if let (Some(s), Some(l)) = (
        get("size_independence/others_1k"),
        get("size_independence/others_large"),
    ) {
        let ratio = l / s;
        figure(
            &format!("size independence (W with {others_large} vs 1,000 others)"),
            &format!("{} vs {}: {ratio:.2}x", fmt_ns(l), fmt_ns(s)),
            "<= 1.3x",
            ratio <= 1.3,
        );
    }
}
