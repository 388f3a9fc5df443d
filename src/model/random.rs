//! Randomness from the operating system.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Fills `buf` from the operating system's generator. Identifiers only need
/// uniqueness, so if the generator is unavailable this falls back to std's
/// randomly keyed SipHash over a counter and the clock rather than panicking.
/// Secrets use [`try_fill`] instead, which reports the failure.
pub(crate) fn fill(buf: &mut [u8]) {
    if try_fill(buf).is_ok() {
        return;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    for chunk in buf.chunks_mut(8) {
        let mut h = state.build_hasher();
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        let bytes = h.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// Fills `buf` from the operating system's generator, or says it could not.
pub(crate) fn try_fill(buf: &mut [u8]) -> Result<(), getrandom::Error> {
    getrandom::fill(buf)
}
