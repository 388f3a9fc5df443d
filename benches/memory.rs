//! Memory per connection (issues 4 and 14) at 1,000,000 connections with 5 short
//! parameters each (1,000 projects of 1,000, see `common`), counted by a
//! global allocator that adds up the bytes live (this bench binary only).
//!
//! Bytes are counted as requested (`Layout::size`); each figure also shows
//! what the blocks take in glibc's heap (`malloc_usable_size` of each block
//! plus its 8-byte chunk header), which is larger: glibc rounds a block up
//! to a multiple of 16 bytes, at least 32.
//!
//! Two figures: the catalog alone (what every replica holds in memory,
//! whatever the store) and a whole in-memory registry (catalog plus
//! [`MemoryStore`], which shares the records with the catalog). The registry
//! figure counts the store's change feed full (100,000 changes, the
//! default); a third line shows the registry with a feed of one batch.
//!
//! ```text
//! cargo bench --bench memory
//! CONNECTIVE_BENCH_QUICK=1 cargo bench --bench memory   # 100,000 connections
//! ```

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use common::{PER_PROJECT, figure, filler_project};
use connective::catalog::Catalog;
use connective::model::{ResolvePolicy, Revision, Version};
use connective::prelude::{Registry, Resolver};
use connective::store::MemoryStore;

/// Counts the bytes and blocks live.
struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// The usable sizes of the live blocks (0 where the C library cannot say).
static USABLE: AtomicIsize = AtomicIsize::new(0);

#[cfg(all(target_os = "linux", target_env = "gnu"))]
unsafe extern "C" {
    fn malloc_usable_size(ptr: *mut std::ffi::c_void) -> usize;
}

/// The usable size of the block at `p`, which the system allocator gave.
fn usable(p: *mut u8) -> isize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `p` is a live block of the system allocator (glibc's malloc).
    return unsafe { malloc_usable_size(p.cast()) } as isize;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = p;
        0
    }
}

// SAFETY: every call is forwarded to the system allocator unchanged; only
// counters are updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            USABLE.fetch_add(usable(p), Ordering::Relaxed);
            let now = BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
            BLOCKS.fetch_add(1, Ordering::Relaxed);
            PEAK.fetch_max(now.max(0) as usize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        USABLE.fetch_sub(usable(ptr), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) };
        BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            USABLE.fetch_add(usable(p), Ordering::Relaxed);
            BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let before = usable(ptr);
        // SAFETY: forwarded as is.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            USABLE.fetch_add(usable(p) - before, Ordering::Relaxed);
            BYTES.fetch_add(new_size as isize - layout.size() as isize, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> (isize, isize) {
    (BYTES.load(Ordering::Relaxed), BLOCKS.load(Ordering::Relaxed))
}

/// The bytes the live blocks take in glibc's heap: usable sizes and an
/// 8-byte chunk header each.
fn heap() -> isize {
    USABLE.load(Ordering::Relaxed) + 8 * BLOCKS.load(Ordering::Relaxed)
}

/// What `heap` grew by since `before`, per connection, as text.
fn heap_per(before: isize, n: usize) -> String {
    if USABLE.load(Ordering::Relaxed) == 0 {
        return String::new();
    }
    format!(", {:.0} in glibc's heap", (heap() - before) as f64 / n as f64)
}

fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` and friends: nothing to list.
        return;
    }
    let n = common::large();
    let projects = n.div_ceil(PER_PROJECT);

    // 1. The catalog alone.
    let (b0, k0) = live();
    let h0 = heap();
    let catalog = {
        let records: Vec<_> = (0..projects)
            .flat_map(|p| filler_project(p).1)
            .map(|r| (Version(1), r))
            .collect();
        Catalog::from_records(ResolvePolicy::default(), Revision(1), records)
    };
    let (b1, k1) = live();
    let in_heap = heap_per(h0, n);
    assert_eq!(catalog.projects().len(), projects);
    let per = (b1 - b0) as f64 / n as f64;
    let blocks = (k1 - k0) as f64 / n as f64;
    figure(
        &format!("memory per connection, catalog, {n} connections x 5 short parameters"),
        &format!("{per:.0} bytes ({blocks:.1} allocations{in_heap})"),
        "<= 500 bytes",
        per <= 500.0,
    );
    drop(catalog);

    // 2. A whole in-memory registry: memory store + catalog. The default
    // store keeps the last 100,000 changes in its feed (here the last 100
    // batches of 1,000 puts); the figure counts them. The same again with a
    // feed of one batch shows what the feed costs.
    registry_figure(n, projects, "", MemoryStore::new());
    registry_figure(
        n,
        projects,
        ", change feed of one batch",
        MemoryStore::with_feed_capacity(1),
    );

    memo_figure();
    print_sizes();
}

/// The sizes of the types every connection carries (not a figure: what the
/// bytes per connection are made of, for the README's record).
fn print_sizes() {
    use connective::model::{
        Connection, ConnectionName, Param, ParamName, ParamValues, PlainValue, ProjectId, Scope, SecretEntry,
        Target,
    };
    use std::mem::size_of;
    println!(
        "sizes | Connection {} (in its Arc {}) | Param {} | ParamName {} | ParamValues {} | PlainValue {} | \
         SecretEntry {} | Target {} | Scope {} | ProjectId {} | ConnectionName {}",
        size_of::<Connection>(),
        size_of::<Connection>() + 16,
        size_of::<Param>(),
        size_of::<ParamName>(),
        size_of::<ParamValues>(),
        size_of::<PlainValue>(),
        size_of::<SecretEntry>(),
        size_of::<Target>(),
        size_of::<Scope>(),
        size_of::<ProjectId>(),
        size_of::<ConnectionName>(),
    );
}

/// The memo of resolutions: W resolved for twice as many customers as the
/// memo keeps; the bytes it holds per answer, and that it keeps no more than
/// its capacity.
fn memo_figure() {
    const CAPACITY: usize = 1_000;
    let registry = common::registry_with_w_memo(0, CAPACITY);
    let base = common::w_request();
    let (b0, _) = live();
    for c in 0..2 * CAPACITY {
        let request = base
            .clone()
            .for_customer(format!("customer-{c}"))
            .expect("customer");
        drop(registry.resolve(&request).expect("resolve"));
    }
    let (b1, _) = live();
    let stats = registry.resolve_memo_stats();
    let per = (b1 - b0) as f64 / stats.entries.max(1) as f64;
    figure(
        &format!(
            "memory of the resolve memo, W (50 variables) for {} customers",
            2 * CAPACITY
        ),
        &format!(
            "{} answers kept of capacity {} ({} evicted), {per:.0} bytes an answer",
            stats.entries, stats.capacity, stats.evictions
        ),
        "bounded by the capacity",
        stats.entries <= stats.capacity,
    );
}

/// Fills `store` with `n` connections, builds a registry over it and prints
/// its bytes per connection.
fn registry_figure(n: usize, projects: usize, label: &str, store: MemoryStore) {
    let (b0, k0) = live();
    let h0 = heap();
    let rss0 = rss_bytes();
    common::fill_store(&store, n);
    let registry = Registry::builder().store(store).build().expect("registry");
    let (b1, k1) = live();
    let in_heap = heap_per(h0, n);
    let rss1 = rss_bytes();
    assert_eq!(registry.catalog().projects().len(), projects);
    let per = (b1 - b0) as f64 / n as f64;
    let blocks = (k1 - k0) as f64 / n as f64;
    let rss = match (rss0, rss1) {
        (Some(a), Some(b)) => format!(", RSS +{:.0} bytes", (b.saturating_sub(a)) as f64 / n as f64),
        _ => String::new(),
    };
    figure(
        &format!("memory per connection, registry (memory store + catalog{label}), {n} connections"),
        &format!("{per:.0} bytes ({blocks:.1} allocations{in_heap}{rss})"),
        "<= 500 bytes",
        per <= 500.0,
    );
    drop(registry);
}
