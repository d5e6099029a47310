//! The clock wrapup runs on: tokio's monotonic time, optionally accelerated.
//!
//! [`ScaledClock`] maps tokio's monotonic clock onto a timestamp line that runs `factor` times faster than the wall:
//! with factor 1 it is the wall clock; the demo and the sandbox share one clock with factor > 1 so that a minute of
//! demo holds many ACW timeouts. Because it is built on `tokio::time::Instant`, `tokio::time::pause()` freezes it too.
//! It implements `wrapup_core::Clock`, the trait every component reads time through.

use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;
use std::time::Duration;
use wrapup_core::clock::{Clock, SharedClock};

/// A clock running `factor` times faster than tokio's monotonic clock, anchored at a timestamp.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    origin_instant: tokio::time::Instant,
    origin: Timestamp,
    factor: f64,
}

impl ScaledClock {
    /// The wall clock (factor 1, anchored at the system time now).
    pub fn system() -> Self {
        Self::new(Timestamp::now(), 1.0)
    }

    /// A clock starting at `origin` and running `factor` times faster than the wall. `factor` is clamped to > 0.
    pub fn new(origin: Timestamp, factor: f64) -> Self {
        let factor = if factor.is_finite() && factor > 0.0 { factor } else { 1.0 };
        Self { origin_instant: tokio::time::Instant::now(), origin, factor }
    }

    /// The speed-up factor.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// Convenience: an `Arc<dyn Clock>` of this clock.
    pub fn shared(self) -> SharedClock {
        Arc::new(self)
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Timestamp {
        let wall = self.origin_instant.elapsed();
        let scaled = SignedDuration::try_from(wall.mul_f64(self.factor)).unwrap_or(SignedDuration::MAX);
        self.origin.checked_add(scaled).unwrap_or(Timestamp::MAX)
    }

    fn wall_duration(&self, d: SignedDuration) -> Duration {
        if d.is_negative() || d.is_zero() {
            return Duration::ZERO;
        }
        Duration::try_from(d).unwrap_or(Duration::MAX).div_f64(self.factor)
    }

    fn clock_duration(&self, d: Duration) -> SignedDuration {
        SignedDuration::try_from(d.mul_f64(self.factor)).unwrap_or(SignedDuration::MAX)
    }
}

/// Sleeps (in tokio time) until `clock` reaches `at`. Returns at once if it already has.
pub async fn sleep_until(clock: &dyn Clock, at: Timestamp) {
    let wait = clock.wall_duration(at.duration_since(clock.now()));
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_scaled_clock_runs_faster_than_the_wall() {
        let origin: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let clock = ScaledClock::new(origin, 10.0);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(clock.now(), "2026-01-01T00:00:30Z".parse::<Timestamp>().unwrap());
        assert_eq!(clock.wall_duration(SignedDuration::from_secs(60)), Duration::from_secs(6));
    }
}
