//! A count that many threads add to without writing one shared cache line.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// How many stripes of its own a [`Striped`] count has: threads beyond it
/// (alive at once) share one more, the last.
pub(super) const OWN: usize = 16;

/// One stripe, alone on its cache line (128 bytes: adjacent-line
/// prefetchers pull lines in pairs).
#[derive(Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// A count split into stripes, summed when read. Each live thread leases
/// a stripe index of its own the first time it counts (the same index in
/// every count, returned when the thread exits), so adding is a load and a
/// store on a line no other thread writes: no locked instruction, no line
/// passed between threads. Threads beyond [`OWN`] add to a shared last
/// stripe with an atomic addition.
pub(super) struct Striped {
    /// [`OWN`] stripes, then the shared one.
    stripes: Box<[Stripe]>,
}

/// The next stripe index never leased.
static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Stripe indices returned by threads that exited, to lease again. The
/// mutex also orders the last addition of a thread before the first of the
/// next thread leasing its index.
static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

/// A thread's stripe index ([`OWN`]: the shared stripe), returned to
/// [`FREE`] when the thread exits.
struct Lease(usize);

impl Lease {
    fn take() -> Lease {
        let returned = FREE.lock().unwrap_or_else(PoisonError::into_inner).pop();
        Lease(returned.unwrap_or_else(|| {
            // Once past `OWN`, `NEXT` stops moving: it never wraps.
            match NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < OWN).then_some(n + 1)
            }) {
                Ok(n) => n,
                Err(_) => OWN,
            }
        }))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.0 < OWN {
            FREE.lock().unwrap_or_else(PoisonError::into_inner).push(self.0);
        }
    }
}

thread_local! {
    static LEASE: Lease = Lease::take();
}

/// The calling thread's stripe index (the shared one while the thread is
/// exiting and its lease is gone).
#[inline]
pub(super) fn mine() -> usize {
    LEASE.try_with(|lease| lease.0).unwrap_or(OWN)
}

impl Striped {
    pub(super) fn new() -> Self {
        Striped {
            stripes: (0..=OWN).map(|_| Stripe::default()).collect(),
        }
    }

    /// Adds one (on the calling thread's stripe).
    #[inline]
    pub(super) fn add_one(&self) {
        let i = mine();
        let Some(stripe) = self.stripes.get(i) else {
            return;
        };
        if i < OWN {
            // Only this thread writes this stripe: a plain increment.
            stripe
                .0
                .store(stripe.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        } else {
            stripe.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The sum over every stripe.
    pub(super) fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Held (written) by a test that keeps more threads alive at once than
/// there are stripes of their own, and (read) by tests that expect threads
/// alive at once to lease stripes of their own: tests run in parallel.
#[cfg(test)]
pub(super) static LEASES: std::sync::RwLock<()> = std::sync::RwLock::new(());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_count_on_stripes_of_their_own_and_nothing_is_lost() {
        let _all = LEASES.write().unwrap_or_else(PoisonError::into_inner);
        let count = Striped::new();
        let per_thread = 20_000;
        // More threads alive at once than there are stripes of their own,
        // in two rounds (the second leases what the first returned).
        for _ in 0..2 {
            let barrier = std::sync::Barrier::new(OWN + 4);
            let leased: Vec<usize> = std::thread::scope(|s| {
                let threads: Vec<_> = (0..OWN + 4)
                    .map(|_| {
                        s.spawn(|| {
                            for _ in 0..per_thread {
                                count.add_one();
                            }
                            let i = mine();
                            // Every thread holds its lease until all counted.
                            barrier.wait();
                            i
                        })
                    })
                    .collect();
                threads.into_iter().map(|t| t.join().unwrap()).collect()
            });
            // Threads alive at once never share a stripe of their own.
            let mut own: Vec<usize> = leased.iter().copied().filter(|&i| i < OWN).collect();
            let n = own.len();
            own.sort_unstable();
            own.dedup();
            assert_eq!(own.len(), n, "stripes {leased:?}");
        }
        assert_eq!(count.get(), 2 * (OWN as u64 + 4) * per_thread);
        assert!(std::mem::align_of::<Stripe>() >= 128);
    }
}
