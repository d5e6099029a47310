//! When an agent is likely to leave a window the platform does not close by itself.
//!
//! Optional and agent-requested ACW windows have no platform timeout, yet they end — when the agent leaves. Work
//! is ordered earliest deadline first (the store's claims, the request budget), so a leg without a deadline would
//! wait behind every leg with one and be left by its agent before it is reached. Each such leg therefore gets an
//! *estimated* deadline (`LegRecord::estimated_deadline`): its end plus a low quantile ([`QUANTILE`]) of the window
//! lengths observed on its queue, i.e. a moment by which only a fifth of that queue's agents have left. It orders
//! work and nothing else: an estimated deadline never stops a write (the window is read first) nor expires a leg.
//!
//! Observations are the windows that ended without our write (the agent coded or left, or the platform timed the
//! window out), from the end event's own time (`closed_at`) minus the leg's end. They are read from the store's
//! recent legs at most every [`REFRESH_EVERY`], so every replica sees the same history and a restart loses none.
//! Until a queue has [`MIN_SAMPLES`] of them, the connection's `acw_estimate_default_secs` stands in.

use jiff::SignedDuration;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;
use wrapup_core::catalog::AcwPolicy;
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::Outcome;
use wrapup_store::{LegFilter, Store};

/// The share of observed windows that end before the estimate: low, because the estimate is how soon a leg must
/// be reached, and a leg reached too early costs nothing.
pub const QUANTILE: f64 = 0.2;
/// Observed windows a queue needs before its own estimate replaces the default.
pub const MIN_SAMPLES: usize = 20;
/// How many of the connection's newest legs each refresh reads.
const RECENT_LEGS: u32 = 2_000;
/// Wall time between refreshes from the store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// The estimates of one connection.
pub struct AcwEstimates {
    connection: String,
    default: SignedDuration,
    state: Mutex<State>,
    refreshing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Queue id → its estimate, from the last refresh.
    by_queue: HashMap<String, SignedDuration>,
    refreshed: Option<Instant>,
}

impl AcwEstimates {
    pub fn new(connection: impl Into<String>, default: SignedDuration) -> Self {
        Self {
            connection: connection.into(),
            default,
            state: Mutex::new(State::default()),
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// The current estimate for a queue (the default when it has too few observations, or the queue is unknown).
    pub fn estimate(&self, queue_id: Option<&str>) -> SignedDuration {
        queue_id.and_then(|q| self.state.lock().by_queue.get(q).copied()).unwrap_or(self.default)
    }

    /// Reads the recent legs again when the estimates are older than [`REFRESH_EVERY`].
    pub async fn refresh_if_stale(&self, store: &dyn Store) {
        let fresh = |s: &State| s.refreshed.is_some_and(|at| at.elapsed() < REFRESH_EVERY);
        if fresh(&self.state.lock()) {
            return;
        }
        // One refresh at a time; the others go on with the estimates they have.
        let Ok(_guard) = self.refreshing.try_lock() else { return };
        let filter =
            LegFilter { connection: Some(self.connection.clone()), limit: Some(RECENT_LEGS), ..Default::default() };
        let legs = match store.list_legs(&filter).await {
            Ok(legs) => legs,
            Err(e) => {
                tracing::debug!(connection = %self.connection, error = %e, "Could not read recent legs for ACW estimates.");
                self.state.lock().refreshed = Some(Instant::now());
                return;
            }
        };
        let by_queue = estimates(&legs);
        let mut st = self.state.lock();
        st.by_queue = by_queue;
        st.refreshed = Some(Instant::now());
    }
}

/// Per queue with at least [`MIN_SAMPLES`] observed windows, the [`QUANTILE`] of their lengths.
pub fn estimates(legs: &[LegRecord]) -> HashMap<String, SignedDuration> {
    let mut samples: HashMap<&str, Vec<SignedDuration>> = HashMap::new();
    for leg in legs {
        if let Some((queue, length)) = observed_window(leg) {
            samples.entry(queue).or_default().push(length);
        }
    }
    samples
        .into_iter()
        .filter(|(_, v)| v.len() >= MIN_SAMPLES)
        .map(|(q, mut v)| {
            v.sort();
            let i = ((v.len() - 1) as f64 * QUANTILE).floor() as usize;
            (q.to_string(), v[i])
        })
        .collect()
}

/// How long a leg's window lasted, when it ended without a write of ours on a queue an agent may leave.
fn observed_window(leg: &LegRecord) -> Option<(&str, SignedDuration)> {
    if !matches!(leg.facts.acw, Some(AcwPolicy::Optional | AcwPolicy::AgentRequested)) {
        return None;
    }
    if !matches!(leg.outcome, Some(Outcome::AgentWon | Outcome::Expired | Outcome::NoRule | Outcome::Shadow)) {
        return None;
    }
    if leg.written_at.is_some() {
        return None;
    }
    let length = leg.closed_at?.duration_since(leg.facts.ended_at?);
    (!length.is_negative()).then_some((leg.facts.queue_id.as_deref()?, length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use wrapup_core::LegKey;

    fn leg(i: usize, queue: &str, acw: AcwPolicy, outcome: Outcome, secs: i64) -> LegRecord {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut l = LegRecord::new(LegKey::new("c", format!("conv{i}"), "p"), t0);
        l.facts.queue_id = Some(queue.into());
        l.facts.acw = Some(acw);
        l.facts.ended_at = Some(t0);
        l.closed_at = Some(t0 + SignedDuration::from_secs(secs));
        l.outcome = Some(outcome);
        l
    }

    #[test]
    fn a_queue_estimate_is_the_low_quantile_of_windows_agents_ended() {
        // 1..=30 s on an optional queue: the 20th percentile of 30 sorted values is the 6th (index 5.8 → 5).
        let legs: Vec<_> =
            (1..=30).map(|s| leg(s as usize, "opt", AcwPolicy::Optional, Outcome::AgentWon, s as i64)).collect();
        let e = estimates(&legs);
        assert_eq!(e.get("opt"), Some(&SignedDuration::from_secs(6)));
    }

    #[test]
    fn too_few_windows_mandatory_queues_and_our_own_writes_do_not_count() {
        let mut legs: Vec<_> =
            (0..MIN_SAMPLES - 1).map(|i| leg(i, "few", AcwPolicy::Optional, Outcome::Expired, 5)).collect();
        legs.extend((0..40).map(|i| leg(100 + i, "mand", AcwPolicy::Mandatory, Outcome::AgentWon, 5)));
        legs.extend((0..40).map(|i| leg(200 + i, "ours", AcwPolicy::Optional, Outcome::Applied, 5)));
        assert!(estimates(&legs).is_empty());
    }
}
