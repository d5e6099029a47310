//! Short in-process retries, bounded by a deadline.
//!
//! Durable retries (minutes to hours) are the leg state machine's business: it re-schedules the leg. This module is
//! for the seconds-scale case — a 503 or a 429 in the middle of a leg's work — where waiting a little inside the
//! same task is cheaper than a re-schedule. [`call_with_retry`] retries only [`ErrorClass::Retryable`] and
//! [`ErrorClass::RateLimited`] failures, waits a jittered exponential backoff (half fixed, half random, so
//! concurrent callers spread out), waits at least the platform's `Retry-After`, gives up when `Retry-After` exceeds
//! [`RetryPolicy::max_retry_after`], and never sleeps past the caller's deadline (a timestamp on the injected
//! [`Clock`], converted to wall time): if the next attempt could not start before the deadline, the last error is
//! returned at once.

use crate::error::{ErrorClass, PlatformError};
use jiff::Timestamp;
use rand::Rng;
use std::future::Future;
use std::time::Duration;
use wrapup_core::Clock;

/// How [`call_with_retry`] retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubles each time.
    pub base: Duration,
    /// Backoff ceiling.
    pub max_backoff: Duration,
    /// A `Retry-After` longer than this is not waited in-process; the error is returned instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Backoff before retry number `retry` (0-based): `d/2 + random(0..=d/2)` with `d = min(base * 2^retry, max)`.
    pub fn backoff(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let exp = self.base.saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX));
        let d = exp.min(self.max_backoff);
        let half = d / 2;
        half + half.mul_f64(rng.gen_range(0.0..=1.0))
    }
}

/// Runs `op` (given the 0-based attempt number) until it succeeds, fails with a non-retryable class, runs out of
/// attempts, or the next attempt could not start before `deadline`.
pub async fn call_with_retry<T, F, Fut>(
    clock: &dyn Clock,
    deadline: Option<Timestamp>,
    policy: &RetryPolicy,
    mut op: F,
) -> Result<T, PlatformError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, PlatformError>>,
{
    let max = policy.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        let err = match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        attempt += 1;
        if !err.class.is_retryable() || attempt >= max {
            return Err(err);
        }
        let mut wait = policy.backoff(attempt - 1, &mut rand::thread_rng());
        if let ErrorClass::RateLimited { retry_after: Some(ra) } = err.class {
            if ra > policy.max_retry_after {
                return Err(err);
            }
            wait = wait.max(ra);
        }
        if let Some(deadline) = deadline {
            let left = clock.wall_duration(deadline.duration_since(clock.now()));
            if wait >= left {
                return Err(err);
            }
        }
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::sync::atomic::{AtomicU32, Ordering};
    use wrapup_clock::ScaledClock;

    fn err(class: ErrorClass) -> PlatformError {
        PlatformError::transport(class, "/x", "boom")
    }

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let p = RetryPolicy::default();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for retry in 0..30 {
            let b = p.backoff(retry, &mut rng);
            let d = p.base.saturating_mul(1 << retry.min(20)).min(p.max_backoff);
            assert!(b >= d / 2 && b <= d, "retry {retry}: {b:?} not in [{:?}, {d:?}]", d / 2);
        }
    }

    proptest::proptest! {
        #[test]
        fn backoff_stays_within_half_and_full_of_the_capped_exponential(
            base_ms in 1u64..5_000,
            max_ms in 1u64..120_000,
            retry in 0u32..64,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let p = RetryPolicy {
                max_attempts: 5,
                base: Duration::from_millis(base_ms),
                max_backoff: Duration::from_millis(max_ms),
                max_retry_after: Duration::from_secs(60),
            };
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            let b = p.backoff(retry, &mut rng);
            let d = p.base.saturating_mul(1u32 << retry.min(20)).min(p.max_backoff);
            proptest::prop_assert!(b >= d / 2 && b <= d);
            proptest::prop_assert!(b <= p.max_backoff);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_errors_are_retried_until_success() {
        let clock = ScaledClock::system();
        let n = AtomicU32::new(0);
        let r = call_with_retry(&clock, None, &RetryPolicy::default(), |_| async {
            if n.fetch_add(1, Ordering::SeqCst) < 2 {
                Err(err(ErrorClass::Retryable))
            } else {
                Ok(42)
            }
        })
        .await;
        assert_eq!(r.unwrap(), 42);
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_errors_are_not_retried() {
        let clock = ScaledClock::system();
        let n = AtomicU32::new(0);
        let r: Result<(), _> = call_with_retry(&clock, None, &RetryPolicy::default(), |_| async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(err(ErrorClass::Permanent))
        })
        .await;
        assert_eq!(r.unwrap_err().class, ErrorClass::Permanent);
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_honoured() {
        let clock = ScaledClock::system();
        let n = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let r = call_with_retry(&clock, None, &RetryPolicy::default(), |_| async {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(err(ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(5)) }))
            } else {
                Ok(())
            }
        })
        .await;
        assert!(r.is_ok());
        assert!(start.elapsed() >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_is_started_past_the_deadline() {
        let clock = ScaledClock::system();
        let deadline = clock.now() + jiff::SignedDuration::from_secs(2);
        let n = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let r: Result<(), _> = call_with_retry(&clock, Some(deadline), &RetryPolicy::default(), |_| async {
            n.fetch_add(1, Ordering::SeqCst);
            Err(err(ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(3)) }))
        })
        .await;
        assert!(r.is_err());
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
