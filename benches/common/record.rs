//! Criterion benchmarks whose per-iteration times are also kept here, so the
//! bench can print ratios between benchmarks measured in the same run.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, measurement::WallTime};

/// `(iterations, time)` per criterion call, by `group/name`.
type Samples = HashMap<String, Vec<(u64, Duration)>>;

static SAMPLES: Mutex<Option<Samples>> = Mutex::new(None);

/// Registers `name` in `group`, timing `routine` once per iteration (its output
/// is dropped inside the timed region), and remembers criterion's samples.
pub fn bench<O>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    name: &str,
    mut routine: impl FnMut() -> O,
) {
    let key = format!("{group_name}/{name}");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                drop(std::hint::black_box(routine()));
            }
            let elapsed = start.elapsed();
            push(&key, iters, elapsed);
            elapsed
        })
    });
}

/// Like [`bench`] for a routine that times itself: `routine(iters)` returns
/// the time of `iters` iterations.
pub fn bench_custom(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    name: &str,
    mut routine: impl FnMut(u64) -> Duration,
) {
    let key = format!("{group_name}/{name}");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let elapsed = routine(iters);
            push(&key, iters, elapsed);
            elapsed
        })
    });
}

fn push(key: &str, iters: u64, elapsed: Duration) {
    let mut guard = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    guard
        .get_or_insert_with(HashMap::new)
        .entry(key.to_string())
        .or_default()
        .push((iters, elapsed));
}

/// The median time per iteration, in nanoseconds, over the last `samples`
/// calls criterion made to `group/name` (its measurement phase; earlier calls are warm-up).
pub fn median_ns(key: &str, samples: usize) -> Option<f64> {
    let guard = SAMPLES.lock().unwrap_or_else(|e| e.into_inner());
    let all = guard.as_ref()?.get(key)?;
    let tail = &all[all.len().saturating_sub(samples)..];
    let mut per_iter: Vec<f64> = tail
        .iter()
        .filter(|(iters, _)| *iters > 0)
        .map(|(iters, d)| d.as_secs_f64() * 1e9 / *iters as f64)
        .collect();
    if per_iter.is_empty() {
        return None;
    }
    Some(super::median(&mut per_iter))
}
