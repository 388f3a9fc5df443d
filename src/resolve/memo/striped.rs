//! A count that many threads add to without writing one shared cache line.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How many stripes a [`Striped`] count has: threads beyond it share
/// stripes (still counted right, only no longer on lines of their own).
const STRIPES: usize = 16;

/// One stripe, alone on its cache line (128 bytes: adjacent-line
/// prefetchers pull lines in pairs).
#[derive(Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// A count split into stripes, one per thread (threads take stripes in
/// turn, the first time they count), summed when read. Adding touches only
/// the adding thread's stripe, so threads counting at once do not pass a
/// cache line between them.
pub(super) struct Striped {
    stripes: Box<[Stripe]>,
}

/// The next stripe a thread takes.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stripe (`usize::MAX` until it first counts).
    static MINE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The calling thread's stripe.
fn mine() -> usize {
    MINE.with(|mine| {
        let i = mine.get();
        if i != usize::MAX {
            return i;
        }
        let i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
        mine.set(i);
        i
    })
}

impl Striped {
    pub(super) fn new() -> Self {
        Striped {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }

    /// Adds one (on the calling thread's stripe).
    #[inline]
    pub(super) fn add_one(&self) {
        // `mine` is below `STRIPES`, the length.
        if let Some(stripe) = self.stripes.get(mine()) {
            stripe.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The sum over every stripe.
    pub(super) fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_count_on_stripes_of_their_own_and_nothing_is_lost() {
        let count = Striped::new();
        let per_thread = 10_000;
        let stripes: Vec<usize> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..per_thread {
                            count.add_one();
                        }
                        mine()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(count.get(), 4 * per_thread);
        // Four threads started one after another take four stripes (the
        // counter of stripes taken is global, so they are consecutive
        // modulo `STRIPES` unless other tests' threads interleave; at least
        // two differ either way).
        let mut distinct = stripes.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() >= 2, "stripes {stripes:?}");
        assert!(std::mem::align_of::<Stripe>() >= 128);
    }
}
