//! Gauges an operator watches, refreshed from the store and the request budgets every few seconds:
//!
//! - `wrapup_open_legs{connection}`: legs not finished;
//! - `wrapup_review_legs{connection}`: legs waiting for a person (`review`, not resolved or dismissed: the review
//!   queue, docs/REVIEW.md);
//! - `wrapup_earliest_open_deadline_seconds{connection}`: how long until the earliest deadline among open legs
//!   closes (platform time; negative when it has passed; NaN when no open leg has a deadline);
//! - `wrapup_budget_permits{connection,credential}`: requests the credential's budget could start now (its even
//!   pace's bucket, or what the platform's rate-limit counters leave when that is less; 0 while paused).
//!
//! They are per process: on a store shared by replicas each reports the same store figures (read them with `max`),
//! and its own budget.

use crate::app::AppState;
use crate::scheduler::Shutdown;
use std::sync::Arc;
use std::time::Duration;
use wrapup_store::LegFilter;

/// How often the gauges are refreshed (wall time).
pub const EVERY: Duration = Duration::from_secs(5);
/// Open legs read to find the earliest deadline (the store lists newest first; a backlog beyond this is rare and
/// its oldest legs are then missed, which only makes the gauge optimistic).
const OPEN_LEGS_READ: u32 = 1000;

pub async fn run(state: Arc<AppState>, every: Duration, shutdown: Shutdown) {
    loop {
        refresh(&state).await;
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Reads the figures once and sets the gauges.
pub async fn refresh(state: &AppState) {
    let now = state.clock.now();
    for (name, runtime) in &state.connections {
        observe(state.store.as_ref(), name, runtime.platform.budget(), now).await;
    }
}

/// Sets one connection's gauges from `store` and its `budget`.
pub async fn observe(
    store: &dyn wrapup_store::Store,
    connection: &str,
    budget: Option<wrapup_connectors::budget::Budget>,
    now: jiff::Timestamp,
) {
    let name = connection.to_string();
    if let Ok(counts) = store.outcome_counts(connection).await {
        let open = counts.get(&None).copied().unwrap_or(0);
        metrics::gauge!("wrapup_open_legs", "connection" => name.clone()).set(open as f64);
    }
    // Resolved and dismissed legs keep their `review` outcome but no longer wait for anyone.
    if let Ok(review) = store.review_count(connection).await {
        metrics::gauge!("wrapup_review_legs", "connection" => name.clone()).set(review as f64);
    }
    let filter = LegFilter {
        connection: Some(name.clone()),
        open_only: true,
        limit: Some(OPEN_LEGS_READ),
        ..Default::default()
    };
    if let Ok(legs) = store.list_legs(&filter).await {
        let earliest = legs.iter().filter_map(|l| l.deadline).min();
        let gauge = metrics::gauge!("wrapup_earliest_open_deadline_seconds", "connection" => name.clone());
        match earliest {
            Some(deadline) => gauge.set(deadline.duration_since(now).as_secs_f64()),
            None => gauge.set(f64::NAN),
        }
    }
    if let Some(budget) = budget {
        for (credential, slot) in budget.status().into_iter().enumerate() {
            let mut room = slot.tokens.max(0.0);
            if let Some(counters) = slot.counters_room {
                room = room.min(counters.max(0.0));
            }
            if slot.paused_for.is_some() {
                room = 0.0;
            }
            metrics::gauge!("wrapup_budget_permits", "connection" => name.clone(), "credential" => credential.to_string())
                .set(room.floor());
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::lookup::tests::metric;
    use jiff::SignedDuration;
    use wrapup_core::{Event, EventKind, LegFacts, LegKey, Outcome};
    use wrapup_store::Store;

    #[tokio::test]
    async fn open_legs_the_review_queue_and_the_earliest_deadline_are_gauged_from_the_store() {
        // A store no worker works on: the legs stay as the test leaves them.
        let store = wrapup_store::SqliteStore::open_in_memory().await.unwrap();
        let now = jiff::Timestamp::now();
        let ended = |n: i64| Event {
            leg: LegKey::new("gauged", format!("conv-{n}"), "p"),
            dedupe_key: format!("end-{n}"),
            occurred_at: now,
            correlation_id: None,
            kind: EventKind::LegEnded {
                facts: Box::new(LegFacts {
                    ended_at: Some(now),
                    acw_timeout_ms: Some(30_000 + n as u64 * 10_000),
                    ..Default::default()
                }),
            },
        };
        store.ingest(&[ended(0), ended(1), ended(2)], now).await.unwrap();
        let claimed = store.claim_due(now, 1, "t", SignedDuration::from_secs(30)).await.unwrap().remove(0);
        let mut leg = claimed.leg;
        leg.finish(Outcome::Review, Some("for a person".into()), now);
        store.save_leg(&leg, claimed.version, "t", true).await.unwrap();

        crate::admin::metrics_handle().expect("the recorder installs");
        super::observe(&store, "gauged", None, now).await;
        assert_eq!(metric("wrapup_open_legs{connection=\"gauged\"}"), 2.0);
        assert_eq!(metric("wrapup_review_legs{connection=\"gauged\"}"), 1.0);
        let earliest = metric("wrapup_earliest_open_deadline_seconds{connection=\"gauged\"}");
        let expected = if leg.key.conversation == "conv-0" { 40.0 } else { 30.0 };
        assert!((earliest - expected).abs() < 0.01, "{earliest} vs {expected}");
    }
}
