//! One write into a large catalog (issues 4 and 14): `Registry::update_connection` on
//! a memory store holding 1,000,000 connections (1,000 projects of 1,000)
//! against one holding 1,000 (one project of 1,000). Each timed write replaces
//! one connection's spec; successive writes go to different projects (in the
//! 1,000-connection catalog, to different connections of its one project), so
//! the large catalog pays for cold caches as a host would.
//!
//! ```text
//! cargo bench --bench write
//! CONNECTIVE_BENCH_QUICK=1 cargo bench --bench write   # smoke run, 100,000 connections
//! ```

mod common;

use std::time::{Duration, Instant};

use common::record::{bench_custom, median_ns};
use common::{PER_PROJECT, figure, filler_spec_version, fmt_ns, quick};
use connective::model::{ConnectionId, ConnectionSpec, ProjectId, Version};
use connective::prelude::Registry;
use criterion::Criterion;

/// The connections a bench rewrites, each with the version it is at.
struct Targets {
    registry: Registry,
    slots: Vec<(ProjectId, ConnectionId, usize, Version)>,
    next: usize,
    flip: bool,
}

impl Targets {
    fn new(connections: usize) -> Self {
        let registry = Registry::builder()
            .store(common::filler_store(connections))
            .build()
            .expect("registry");
        let mut slots = Vec::new();
        // Up to 4,096 targets: one per project, round-robin over connections.
        let projects = registry.catalog().projects();
        let per_project = 4_096usize.div_ceil(projects.len()).min(PER_PROJECT);
        for round in 0..per_project {
            for project in &projects {
                let snapshot = registry.snapshot(project).expect("snapshot");
                let name = format!("c{round:04}");
                let c = snapshot
                    .connections()
                    .find(|c| c.value.name().as_str() == name)
                    .expect("filler connection");
                slots.push((project.clone(), c.value.id(), round, c.version));
            }
        }
        Targets {
            registry,
            slots,
            next: 0,
            flip: false,
        }
    }

    /// Times `iters` writes; the specs are built before the clock starts.
    fn run(&mut self, iters: u64) -> Duration {
        self.flip = !self.flip;
        let n = self.slots.len();
        let specs: Vec<(usize, ConnectionSpec)> = (0..iters as usize)
            .map(|k| {
                let slot = (self.next + k) % n;
                let (project, _, index, _) = &self.slots[slot];
                // Alternate between two values so every write changes something.
                (
                    slot,
                    filler_spec_version(project.as_str(), *index, usize::from(self.flip)),
                )
            })
            .collect();
        let start = Instant::now();
        for (slot, spec) in specs {
            let (_, id, _, version) = &mut self.slots[slot];
            self.registry
                .update_connection(*id, *version, spec)
                .expect("update");
            version.0 += 1;
        }
        let elapsed = start.elapsed();
        self.next = (self.next + iters as usize) % n;
        elapsed
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
    let large = common::large();
    eprintln!("building catalogs: 1,000 and {large} connections ...");
    let mut small = Targets::new(1_000);
    let mut big = Targets::new(large);

    let mut g = c.benchmark_group("write");
    bench_custom(&mut g, "write", "catalog_1k", |iters| small.run(iters));
    bench_custom(&mut g, "write", "catalog_large", |iters| big.run(iters));
    g.finish();
    c.final_summary();

    println!();
    println!("# issue 14 figures (medians of criterion's samples in this run)");
    if let (Some(s), Some(l)) = (
        median_ns("write/catalog_1k", samples),
        median_ns("write/catalog_large", samples),
    ) {
        let ratio = l / s;
        figure(
            &format!("one write into a {large}-connection catalog (memory store), median"),
            &fmt_ns(l),
            "<= 20 µs",
            l <= 20_000.0,
        );
        figure(
            &format!("write {large} / 1,000 connections"),
            &format!("{} vs {}: {ratio:.2}x", fmt_ns(l), fmt_ns(s)),
            "<= 1.5x",
            ratio <= 1.5,
        );
    }
}
