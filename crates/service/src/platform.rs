//! What the pipeline needs from a platform connection, independent of the platform.
//!
//! The worker reads a leg's current code (the gate), writes a code, and loads the catalog — nothing else. Each
//! platform connector is adapted to [`LegPlatform`] (see `genesys.rs`), so the worker, the catalog cache and the
//! summary are the same code for Genesys and CXone.

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;
use wrapup_connectors::error::PlatformError;
use wrapup_connectors::Precondition;
use wrapup_core::catalog::{Catalog, CodeEntry};
use wrapup_core::lifecycle::{GateReading, LegRecord};
use wrapup_core::Platform;

/// How urgent a call is: live legs by deadline first, then reconciliation, then backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// A leg in its window, ordered by `deadline`; `estimated` when that is the estimated end of an optional window
    /// (it orders the call but never drops it).
    Live {
        deadline: Option<Timestamp>,
        estimated: bool,
    },
    Reconcile,
    Backfill,
}

impl Urgency {
    /// The request budget's priority for a call of this urgency (every connector queues by it).
    pub fn priority(self) -> wrapup_connectors::budget::Priority {
        use wrapup_connectors::budget::Priority;
        match self {
            Urgency::Live { deadline: Some(d), estimated: true } => Priority::live_estimated(d),
            Urgency::Live { deadline, .. } => Priority::live(deadline),
            Urgency::Reconcile => Priority::reconcile(),
            Urgency::Backfill => Priority::backfill(),
        }
    }

    /// The urgency of a gate read, which is worth its call only if the write can follow it inside the window: a live
    /// deadline moves `reserve` (clock time) earlier, so a read that cannot leave that much room is dropped unsent
    /// (the budget drops a request whose deadline passes while it waits) instead of being granted at the edge of
    /// the window and then found too late to write. The order among legs is unchanged: every read moves alike.
    pub fn leaving_room(self, reserve: SignedDuration) -> Self {
        match self {
            Urgency::Live { deadline, estimated } => {
                Urgency::Live { deadline: deadline.map(|d| d.checked_sub(reserve).unwrap_or(d)), estimated }
            }
            other => other,
        }
    }

    /// The budget priority of a gate read on a connection with `budget` and `clock`: [`Self::leaving_room`] for
    /// the write that follows ([`write_reserve`]). One place for every adapter.
    pub fn gate_read_priority(
        self,
        clock: &wrapup_core::clock::SharedClock,
        budget: &wrapup_connectors::budget::Budget,
    ) -> wrapup_connectors::budget::Priority {
        self.leaving_room(clock.clock_duration(write_reserve(budget))).priority()
    }
}

/// Wall time a gate read keeps free before its deadline for the write after it. The write goes before every new
/// read ([`Priority::finishing`](wrapup_connectors::budget::Priority::finishing)), so it waits for about one permit
/// interval of the connection's budget; 100 ms more cover the round trips (the read's answer, the write's
/// precondition check). At most half a second: a `before_timeout` leg is due two deadline guards (one second) before
/// its deadline at the earliest, and its read must still have time to be granted.
pub fn write_reserve(budget: &wrapup_connectors::budget::Budget) -> std::time::Duration {
    (budget.permit_interval() + std::time::Duration::from_millis(100)).min(std::time::Duration::from_millis(500))
}

/// Counters of one connection's platform calls.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CallStats {
    pub total: u64,
    pub rate_limited: u64,
    /// OAuth token requests (included in `total`).
    pub token_requests: u64,
}

#[async_trait]
pub trait LegPlatform: Send + Sync + 'static {
    fn connection(&self) -> &str;
    fn platform(&self) -> Platform;
    /// The live catalog (codes and per-queue assignments), fetched from the platform.
    async fn fetch_catalog(&self) -> Result<Catalog, PlatformError>;
    /// The code currently on the leg, provisional included; `None` when no code is set.
    async fn read_code(&self, leg: &LegRecord, urgency: Urgency) -> Result<Option<String>, PlatformError>;
    /// The gate before a write: the code on the leg and whether its window can take a write. A write is sent only
    /// when this finds no code and the window open. The default reads the code only, for platforms
    /// whose windows end only with a code or at the deadline.
    async fn read_gate(&self, leg: &LegRecord, urgency: Urgency) -> Result<GateReading, PlatformError> {
        self.read_code(leg, urgency).await.map(GateReading::code_only)
    }
    /// The leg's participant attributes (custom data), for rules that match on them. The default: what the
    /// platform's events already carried.
    async fn read_attributes(
        &self,
        leg: &LegRecord,
        _urgency: Urgency,
    ) -> Result<std::collections::BTreeMap<String, String>, PlatformError> {
        Ok(leg.facts.attributes.clone())
    }
    /// Whether `code` (as [`Self::read_code`] returns it) is one the platform stamps by itself when the window times
    /// out (Genesys `ININ-WRAP-UP-TIMEOUT`): the window closing, not anyone's choice — `expired`, not `agent_won`.
    fn is_system_code(&self, _code: &str) -> bool {
        false
    }
    /// Writes `code` (with `notes`) to the leg — only if `still_wanted` holds once the request may be sent
    /// (after waiting for the budget); otherwise nothing is sent and the error class is `PreconditionFailed`.
    async fn write_code(
        &self,
        leg: &LegRecord,
        code: &CodeEntry,
        notes: Option<&str>,
        urgency: Urgency,
        still_wanted: &dyn Precondition,
    ) -> Result<(), PlatformError>;
    /// The connection's request budget, which replicas share through the store (`crate::shared_budget`); `None`
    /// for a platform that spends no budget of ours (test doubles).
    fn budget(&self) -> Option<wrapup_connectors::budget::Budget> {
        None
    }
    /// Calls made so far (every HTTP attempt, token requests included).
    fn stats(&self) -> CallStats;
}

pub type SharedPlatform = Arc<dyn LegPlatform>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_read_leaves_room_for_its_write_and_keeps_the_order() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |ms: i64| Some(t0 + SignedDuration::from_millis(ms));
        let reserve = SignedDuration::from_millis(300);
        let live = |deadline| Urgency::Live { deadline, estimated: false };
        assert_eq!(live(at(10_000)).leaving_room(reserve), live(at(9_700)));
        assert_eq!(live(None).leaving_room(reserve), live(None));
        assert_eq!(Urgency::Reconcile.leaving_room(reserve), Urgency::Reconcile);
        let (early, late) = (live(at(2_000)), live(at(3_000)));
        let deadline = |u: Urgency| u.priority().deadline;
        assert!(deadline(early.leaving_room(reserve)) < deadline(late.leaving_room(reserve)));
    }

    #[test]
    fn the_write_reserve_follows_the_budget() {
        use std::time::Duration;
        use wrapup_connectors::budget::Budget;
        // 300/min: a permit every 200 ms; two clients: every 100 ms; 60/min: capped.
        assert_eq!(write_reserve(&Budget::new(1, 300)), Duration::from_millis(300));
        assert_eq!(write_reserve(&Budget::new(2, 300)), Duration::from_millis(200));
        assert_eq!(write_reserve(&Budget::new(1, 60)), Duration::from_millis(500));
    }
}
