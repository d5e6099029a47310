//! The per-token rate limit of both emulated platforms, in three switchable semantics.
//!
//! Genesys Cloud documents a limit (300 requests per minute per client-credentials token) and headers that describe
//! it (`inin-ratelimit-count`, `-allowed`, `-reset`), but not how the minute is counted; NICE CXone documents neither.
//! A client that is only right under one reading is not right, so the sandbox offers three ([`RateWindow`], per
//! platform: `rate_limit_window` in the config file, `--rate-limit-window`, `PUT /sandbox/v1/rate-limit`):
//!
//! - **`fixed`** (the default): a one-minute window that opens with the token, and again with the first request after
//!   a window has run out; at most `limit` requests are admitted per window.
//! - **`sliding`**: at most `limit` requests admitted in any 60 s ending now.
//! - **`token_bucket`**: a bucket of `limit` tokens, full when the token is issued, refilled continuously at
//!   `limit / 60` per second; a request takes one token or is refused.
//!
//! A refused request is not counted (it took nothing), so a client that keeps knocking is not locked out for longer.
//!
//! Every decision comes with the two numbers the Genesys headers carry ([`Admission`]):
//!
//! - `count`: how much of the limit is in use now, this request included when admitted — the requests of the current
//!   window (`fixed`), of the last 60 s (`sliding`), or the tokens missing from a full bucket, rounded up
//!   (`token_bucket`). It never exceeds the limit.
//! - `reset_secs`: whole seconds, rounded up and at least 1, until the count next falls — when the window ends and the
//!   count restarts at 0 (`fixed`), when the oldest counted request leaves the window (`sliding`), when the next
//!   token is back (`token_bucket`). So after `reset_secs` at least one more request is admitted, under every
//!   semantics; that is also the `Retry-After` of a refusal.
//!
//! Time is wall time (`tokio::time::Instant`), as on the real platforms, and never the simulation's clock.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::time::Instant;

/// Length of every window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// How a platform counts requests against its per-minute limit. See the module documentation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum RateWindow {
    /// A window of one minute from its first request; the count restarts when it ends.
    #[default]
    Fixed,
    /// The requests of the last 60 seconds.
    Sliding,
    /// A bucket of `limit` tokens refilled at `limit / 60` per second.
    TokenBucket,
}

/// A platform's limit as set: requests per minute per token (on CXone 0 is none) and how the minute is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: u32,
    pub window: RateWindow,
}

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Whether the request may proceed (else: 429).
    pub admitted: bool,
    /// `inin-ratelimit-count`: how much of the limit is in use, at most the limit.
    pub count: u32,
    /// `inin-ratelimit-reset` and a refusal's `Retry-After`: seconds until the count next falls (at least 1).
    pub reset_secs: u64,
}

/// One access token's state under the platform's semantics.
#[derive(Debug, Clone)]
pub struct TokenWindow {
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    Fixed { start: Instant, count: u32 },
    Sliding { admitted: VecDeque<Instant> },
    Bucket { tokens: f64, at: Instant },
}

impl State {
    fn new(kind: RateWindow, limit: u32, now: Instant) -> Self {
        match kind {
            RateWindow::Fixed => State::Fixed { start: now, count: 0 },
            RateWindow::Sliding => State::Sliding { admitted: VecDeque::new() },
            RateWindow::TokenBucket => State::Bucket { tokens: f64::from(limit), at: now },
        }
    }

    fn kind(&self) -> RateWindow {
        match self {
            State::Fixed { .. } => RateWindow::Fixed,
            State::Sliding { .. } => RateWindow::Sliding,
            State::Bucket { .. } => RateWindow::TokenBucket,
        }
    }
}

/// Whole seconds, rounded up, at least 1.
fn whole_secs(d: Duration) -> u64 {
    (d.as_secs_f64().ceil() as u64).max(1)
}

impl TokenWindow {
    /// The window of a token issued at `issued` (a full allowance).
    pub fn new(kind: RateWindow, limit: u32, issued: Instant) -> Self {
        Self { state: State::new(kind, limit, issued) }
    }

    /// Counts one request at `now` against `limit` under `kind`. A token whose semantics were switched since its
    /// last request starts afresh under the new ones.
    pub fn admit(&mut self, kind: RateWindow, limit: u32, now: Instant) -> Admission {
        if self.state.kind() != kind {
            self.state = State::new(kind, limit, now);
        }
        match &mut self.state {
            State::Fixed { start, count } => {
                if now.saturating_duration_since(*start) >= WINDOW {
                    *start = now;
                    *count = 0;
                }
                let admitted = *count < limit;
                if admitted {
                    *count += 1;
                }
                let reset = WINDOW.saturating_sub(now.saturating_duration_since(*start));
                Admission { admitted, count: (*count).min(limit), reset_secs: whole_secs(reset) }
            }
            State::Sliding { admitted: log } => {
                while log.front().is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW) {
                    log.pop_front();
                }
                let admitted = log.len() < limit as usize;
                if admitted {
                    log.push_back(now);
                }
                let reset = log.front().map_or(WINDOW, |oldest| (*oldest + WINDOW).saturating_duration_since(now));
                Admission { admitted, count: (log.len() as u32).min(limit), reset_secs: whole_secs(reset) }
            }
            State::Bucket { tokens, at } => {
                let capacity = f64::from(limit);
                let rate = capacity / WINDOW.as_secs_f64();
                *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * rate).min(capacity);
                *at = now;
                // A hair of slack so that rounding in the refill never refuses the token `reset_secs` promised.
                let admitted = *tokens >= 1.0 - 1e-9;
                if admitted {
                    *tokens = (*tokens - 1.0).max(0.0);
                }
                // The count is the missing tokens rounded up; it falls when the bucket climbs back to the next whole
                // number of missing tokens (1 / rate after a refusal, when one token is back).
                let missing = (capacity - *tokens).max(0.0);
                let count = (missing.ceil() as u32).min(limit);
                let to_fall = if count == 0 { 0.0 } else { (missing - (f64::from(count) - 1.0)) / rate };
                Admission { admitted, count, reset_secs: whole_secs(Duration::from_secs_f64(to_fall.max(0.0))) }
            }
        }
    }
}

/// Ground truth for "a 429 is honoured": whether a request at `now` came before the `Retry-After` its token was
/// last given (`(when, until)`) elapsed. Requests within 100 ms of the refusal were in flight before the client could
/// have read it, and the last 50 ms are the clock granularity of a whole-second `Retry-After`: neither counts.
pub fn before_retry_after(told: Option<(Instant, Instant)>, now: Instant) -> bool {
    told.is_some_and(|(given, until)| {
        now > given + Duration::from_millis(100) && now + Duration::from_millis(50) < until
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// Admits requests at the given offsets (ms) and returns each answer.
    fn run(kind: RateWindow, limit: u32, offsets: &[u64]) -> Vec<Admission> {
        let t0 = Instant::now();
        let mut w = TokenWindow::new(kind, limit, t0);
        offsets.iter().map(|ms| w.admit(kind, limit, at(t0, *ms))).collect()
    }

    #[test]
    fn a_fixed_window_admits_the_limit_then_refuses_until_it_ends() {
        let a = run(RateWindow::Fixed, 3, &[0, 10, 20, 30_000, 60_000]);
        assert_eq!(a.iter().map(|a| a.admitted).collect::<Vec<_>>(), [true, true, true, false, true]);
        assert_eq!(a.iter().map(|a| a.count).collect::<Vec<_>>(), [1, 2, 3, 3, 1]);
        // The fourth is told the window ends in 30 s; the fifth opens a new window of a full minute.
        assert_eq!(a[3].reset_secs, 30);
        assert_eq!(a[4].reset_secs, 60);
    }

    #[test]
    fn a_sliding_window_frees_each_request_a_minute_after_it() {
        let a = run(RateWindow::Sliding, 3, &[0, 10_000, 20_000, 30_000, 60_000, 60_500, 70_000]);
        assert_eq!(a.iter().map(|a| a.admitted).collect::<Vec<_>>(), [true, true, true, false, true, false, true],);
        // Refused at 30 s: the request of 0 s leaves the window in 30 s.
        assert_eq!((a[3].count, a[3].reset_secs), (3, 30));
        // At 60 s the first one left; the next to leave is the one of 10 s.
        assert_eq!((a[4].count, a[4].reset_secs), (3, 10));
        assert_eq!((a[5].count, a[5].reset_secs), (3, 10));
        assert_eq!(a[6].count, 3);
    }

    #[test]
    fn a_token_bucket_allows_a_full_burst_then_the_refill_rate() {
        // 60 per minute: one token per second.
        let mut offsets: Vec<u64> = vec![0; 60];
        offsets.extend([100, 1_050, 1_100, 2_500]);
        let a = run(RateWindow::TokenBucket, 60, &offsets);
        assert!(a[..60].iter().all(|a| a.admitted));
        assert_eq!((a[0].count, a[0].reset_secs), (1, 1));
        assert_eq!(a[59].count, 60);
        // Empty: refused, and told the next token is back within a second.
        assert!(!a[60].admitted);
        assert_eq!((a[60].count, a[60].reset_secs), (60, 1));
        // One token back after a second, none 100 ms later, one more by 2.5 s.
        assert!(a[61].admitted);
        assert!(!a[62].admitted);
        assert!(a[63].admitted);
    }

    #[test]
    fn after_reset_seconds_one_more_request_is_admitted_under_every_semantics() {
        for kind in [RateWindow::Fixed, RateWindow::Sliding, RateWindow::TokenBucket] {
            let t0 = Instant::now();
            let mut w = TokenWindow::new(kind, 10, t0);
            let mut now = t0;
            // Spend the whole allowance over 3 s, then knock until refused.
            let mut last = w.admit(kind, 10, now);
            while last.admitted {
                now += Duration::from_millis(300);
                last = w.admit(kind, 10, now);
            }
            let then = now + Duration::from_secs(last.reset_secs);
            assert!(w.admit(kind, 10, then).admitted, "{kind:?}: refused {}s after {last:?}", last.reset_secs);
        }
    }

    #[test]
    fn a_refused_request_is_not_counted() {
        // Knocking every 100 ms on a full sliding window does not push its reset back.
        let mut offsets = vec![0, 1, 2];
        offsets.extend((1..=600).map(|i| i * 100));
        let a = run(RateWindow::Sliding, 3, &offsets);
        let first_again = a.iter().skip(3).position(|a| a.admitted).map(|i| offsets[i + 3]);
        assert_eq!(first_again, Some(60_000));
    }

    #[test]
    fn switching_semantics_starts_the_token_afresh() {
        let t0 = Instant::now();
        let mut w = TokenWindow::new(RateWindow::Fixed, 2, t0);
        assert!(w.admit(RateWindow::Fixed, 2, t0).admitted);
        assert!(w.admit(RateWindow::Fixed, 2, t0).admitted);
        assert!(!w.admit(RateWindow::Fixed, 2, t0).admitted);
        assert!(w.admit(RateWindow::Sliding, 2, t0).admitted);
    }
}
