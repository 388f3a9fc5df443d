//! Connection status: what each outcome makes of it, and storing it.

use std::sync::Arc;
use std::time::Duration;

use crate::model::{
    ConnectionStatus, CredentialKey, Health, ReauthReason, Record, RecordKey, TestResult, Timestamp,
};
use crate::store::{Batch, Expect, StoreError, Write};

use super::{Config, OAuthRuntime};

/// What happened to a connection's credentials.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// Tokens were obtained (or a test passed).
    Active,
    /// A failure that may pass.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// A failure a person must fix by authorizing again.
    Reauthorize(ReauthReason),
}

/// A random factor in [1/2, 1]: "equal jitter", so retries of many
/// connections spread out but none comes much sooner than its backoff.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    crate::model::random::fill(&mut b);
    let r = u32::from(u16::from_le_bytes(b));
    // Half of `d`, plus up to another half: `d.mul_f64` would overflow for
    // the longest waits (a host's `Duration::MAX` cap).
    let half = d / 2;
    let extra = Duration::try_from_secs_f64(half.as_secs_f64() * f64::from(r) / f64::from(u16::MAX))
        .map_or(half, |e| e.min(half));
    half.saturating_add(extra)
}

/// The wait before attempt `attempts + 1`: `base` doubled per failed attempt,
/// at most `cap`, jittered, and never below the server's `Retry-After`.
pub(crate) fn backoff(
    base: Duration,
    cap: Duration,
    attempts: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base
        .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
        .min(cap);
    jitter(exp).max(retry_after.unwrap_or(Duration::ZERO))
}

/// The health after `outcome`, given the health before (rule 11: transient
/// failures never make a connection need re-authorization).
pub(crate) fn next_health(old: &Health, outcome: &Outcome, now: Timestamp, config: &Config) -> Health {
    match outcome {
        Outcome::Active => Health::Active,
        Outcome::Transient { message, retry_after } => {
            let (since, attempts) = match old {
                Health::Failing { since, attempts, .. } => (*since, attempts.saturating_add(1)),
                _ => (now, 1),
            };
            let wait = backoff(config.retry_base, config.retry_cap, attempts, *retry_after);
            Health::Failing {
                since,
                last_error: message.clone(),
                attempts,
                next_retry: now.plus(wait),
            }
        }
        Outcome::Reauthorize(reason) => {
            let since = match old {
                Health::NeedsReauthorization { since, reason: r } if r == reason => *since,
                _ => now,
            };
            Health::NeedsReauthorization {
                since,
                reason: *reason,
            }
        }
    }
}

impl OAuthRuntime {
    /// Records `outcome` (and a test result) as `key`'s status, expecting the
    /// version it read; re-reads and tries again on a conflict. Returns the
    /// status written (or that would have been, if the store failed or the
    /// connection is gone).
    ///
    /// Nothing is written for a deleted connection: not when this registry
    /// no longer has it, and not when the status it read was deleted
    /// meanwhile (only deleting its connection deletes a status), so an
    /// outcome arriving after a delete, on any replica, leaves no status
    /// behind.
    pub(crate) async fn record_outcome(
        &self,
        key: &CredentialKey,
        outcome: &Outcome,
        test: Option<TestResult>,
    ) -> Result<ConnectionStatus, StoreError> {
        let store_key = RecordKey::Status(key.clone());
        let mut known = self.records().status(key);
        let mut last_err = None;
        for _ in 0..4 {
            let gone = self.inner.host.connection(&key.project, key.connection).is_none();
            let now = Timestamp::now();
            let (old_health, old_changed, old_test, expect) = match &known {
                Some(s) => (
                    s.value.health().clone(),
                    s.value.changed_at(),
                    s.value.last_test().cloned(),
                    Expect::Version(s.version),
                ),
                None => (Health::Untested, now, None, Expect::Absent),
            };
            let health = next_health(&old_health, outcome, now, &self.inner.config);
            let changed_at = if health.kind() == old_health.kind() && expect != Expect::Absent {
                old_changed
            } else {
                now
            };
            let status = ConnectionStatus::new(key.clone(), health.clone(), changed_at)
                .with_test(test.clone().or(old_test));
            if gone || known.as_ref().is_some_and(|k| *k.value == status) {
                return Ok(status);
            }
            let record = Record::Status(Arc::new(status.clone()));
            let mut batch = Batch::new();
            batch.push(Write::put(record.clone(), expect));
            match self.inner.seam.commit(batch).await {
                Ok(c) => {
                    if let Some(v) = c.versions.first() {
                        self.records().apply(&store_key, *v, Some(&record));
                    }
                    return Ok(status);
                }
                Err(StoreError::Conflict { .. }) => {
                    match self.inner.seam.get(store_key.clone()).await {
                        Ok(Some((v, r))) => self.records().apply(&store_key, v, Some(&r)),
                        // Deleted under us: its connection was.
                        Ok(None) if expect != Expect::Absent => return Ok(status),
                        _ => {}
                    }
                    known = self.records().status(key);
                }
                Err(e) => {
                    last_err = Some(e);
                    break;
                }
            }
        }
        Err(last_err.unwrap_or_else(|| StoreError::Unavailable {
            backend: self.inner.seam.store.backend(),
            message: format!("the status of {key} kept conflicting"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_back_off_and_never_need_a_person() {
        let config = Config::default();
        let mut h = Health::Active;
        let mut waits = Vec::new();
        for i in 0..6 {
            let now = Timestamp(1_000_000 + i);
            h = next_health(
                &h,
                &Outcome::Transient {
                    message: "HTTP 503".into(),
                    retry_after: None,
                },
                now,
                &config,
            );
            let Health::Failing {
                since,
                attempts,
                next_retry,
                ..
            } = &h
            else {
                panic!("failing expected, got {h:?}");
            };
            assert_eq!(*since, Timestamp(1_000_000));
            assert_eq!(*attempts, i as u32 + 1);
            waits.push(next_retry.since(now));
        }
        // Doubling with jitter in [1/2, 1]: attempt n waits 100..200 ms * 2^(n-1).
        for (n, w) in waits.iter().enumerate() {
            let full = config.retry_base * (1 << n);
            assert!(
                *w >= full / 2 - Duration::from_millis(1) && *w <= full,
                "attempt {n}: {w:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_a_floor_and_the_cap_holds() {
        let w = backoff(
            Duration::from_millis(100),
            Duration::from_secs(1),
            1,
            Some(Duration::from_secs(7)),
        );
        assert_eq!(w, Duration::from_secs(7));
        let w = backoff(Duration::from_millis(100), Duration::from_secs(1), 30, None);
        assert!(w <= Duration::from_secs(1));
    }

    #[test]
    fn the_longest_waits_a_host_can_set_are_jittered_without_overflow() {
        for attempts in [1, 2, 40] {
            let w = backoff(Duration::MAX, Duration::MAX, attempts, None);
            assert!(w >= Duration::MAX / 2, "{w:?}");
        }
        let w = backoff(Duration::MAX, Duration::MAX, 1, Some(Duration::MAX));
        assert_eq!(w, Duration::MAX);
    }
}
