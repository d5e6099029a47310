//! Time, injected.
//!
//! Every component reads "now" through a [`Clock`] so tests can pause time and the sandbox can compress it. The
//! clock the service runs on (`ScaledClock`, built on tokio's timer) lives in the `wrapup-clock` crate, so that this
//! one stays free of any runtime.
//!
//! Rate-limit windows are *not* scaled: a platform's request budget is real time, so budgets use wall time directly.

use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;
use std::time::Duration;

/// A source of simulated or real "now".
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current timestamp on this clock's line.
    fn now(&self) -> Timestamp;
    /// How much wall time (tokio time) passes while this clock advances by `d`.
    fn wall_duration(&self, d: SignedDuration) -> Duration;
    /// How much clock time passes while the wall advances by `d`.
    fn clock_duration(&self, d: Duration) -> SignedDuration;
}

/// Shared handle to a clock.
pub type SharedClock = Arc<dyn Clock>;
