//! Deadlines from durations a caller gives: a host may pass
//! `Duration::MAX` for "no limit" (a flush, a wait, a staleness or lease
//! setting), which `Instant + Duration` turns into a panic. Here it is a
//! deadline far enough away never to come instead.

use std::time::{Duration, Instant};

/// How far away a deadline past the clock's range is put: a century.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `wait` from now; a century from now if the clock cannot count that far.
pub(crate) fn after(wait: Duration) -> Instant {
    later(Instant::now(), wait)
}

/// `wait` after `from`; a century after it if the clock cannot count that
/// far (and `from` itself, unreachably, if it cannot count a century).
pub(crate) fn later(from: Instant, wait: Duration) -> Instant {
    from.checked_add(wait)
        .or_else(|| from.checked_add(FAR))
        .unwrap_or(from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_the_clock_cannot_count_is_a_century() {
        let now = Instant::now();
        assert_eq!(later(now, Duration::from_secs(5)), now + Duration::from_secs(5));
        assert_eq!(later(now, Duration::MAX), now + FAR);
        assert!(after(Duration::MAX) > now + FAR / 2);
        assert!(after(Duration::ZERO) >= now);
    }
}
