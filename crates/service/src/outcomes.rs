//! Counting how legs end, once each.
//!
//! The store reports every leg whose outcome a commit changed, whichever write changed it (an event at intake, a
//! worker's save, the expiry sweep) — see `Store::watch_outcomes`. This hook turns those reports into the
//! Prometheus counters, so that the sum of `wrapup_outcomes_total` of a connection equals the store's count of its
//! finished legs:
//!
//! - `wrapup_outcomes_total{connection,outcome}`: a leg's first ending;
//! - `wrapup_outcome_changes_total{connection,from,to}`: the one change of a finished leg's outcome (`applied` →
//!   `agent_changed`, or an event's ending overruled by our accepted write → `review`);
//! - `wrapup_codes_total{connection,code,source}`: the code a leg ended with, by name when the catalog knows it,
//!   and whose it is: `ours` (written by us), `agent` (anyone else), `system` (the platform's timeout code);
//! - `wrapup_code_latency_seconds{connection,source}`: from the leg's end to its code — our accepted write
//!   (`ours`), or the event that closed the window with someone else's code (`agent`, `system`) — in platform time.

use crate::worker::ConnectionRuntime;
use std::collections::HashMap;
use std::sync::Arc;
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::Outcome;
use wrapup_store::{OutcomeChange, OutcomeHook};

/// The hook to give the store, counting with the connections' platforms and catalogs.
pub fn hook(connections: HashMap<String, Arc<ConnectionRuntime>>) -> OutcomeHook {
    Arc::new(move |change: &OutcomeChange| count(&connections, change))
}

fn count(connections: &HashMap<String, Arc<ConnectionRuntime>>, change: &OutcomeChange) {
    let leg = &change.leg;
    let Some(to) = leg.outcome else { return };
    if change.from == Some(to) {
        // An operator's code recorded on a finished leg (the review queue): its outcome did not change.
        return;
    }
    let connection = leg.key.connection.clone();
    match change.from {
        None => {
            metrics::counter!("wrapup_outcomes_total", "connection" => connection.clone(), "outcome" => to.as_str())
                .increment(1)
        }
        Some(from) => metrics::counter!(
            "wrapup_outcome_changes_total",
            "connection" => connection.clone(),
            "from" => from.as_str(),
            "to" => to.as_str()
        )
        .increment(1),
    }
    if let Some((code, source)) = final_code(connections.get(&connection).map(|c| c.as_ref()), leg) {
        if change.from.is_none() {
            let coded_at = if source == "ours" { leg.written_at } else { leg.closed_at };
            if let (Some(end), Some(coded)) = (leg.facts.ended_at, coded_at) {
                let secs = coded.duration_since(end).as_secs_f64();
                if secs >= 0.0 {
                    metrics::histogram!("wrapup_code_latency_seconds", "connection" => connection.clone(), "source" => source)
                        .record(secs);
                }
            }
        }
        metrics::counter!("wrapup_codes_total", "connection" => connection, "code" => code, "source" => source)
            .increment(1);
    }
}

/// The code a finished leg holds, by name when the catalog knows it, and whose it is.
fn final_code(conn: Option<&ConnectionRuntime>, leg: &LegRecord) -> Option<(String, &'static str)> {
    let named = |id: &str| {
        conn.and_then(|c| c.catalog.cached())
            .and_then(|cat| cat.code_by_id(id).map(|c| c.name.clone()))
            .unwrap_or_else(|| id.to_string())
    };
    match leg.outcome? {
        Outcome::Applied => leg.intent.as_ref().map(|i| (i.code_name.clone(), "ours")),
        Outcome::AgentWon | Outcome::AgentChanged | Outcome::Review => {
            let code = leg.observed_code.as_deref()?;
            let ours = leg.intent.as_ref().is_some_and(|i| i.code_id == code) && leg.written_at.is_some();
            Some((named(code), if ours { "ours" } else { "agent" }))
        }
        Outcome::Expired => {
            let code = leg.observed_code.as_deref()?;
            let system = conn.is_some_and(|c| c.platform.is_system_code(code));
            Some((named(code), if system { "system" } else { "agent" }))
        }
        Outcome::NoRule | Outcome::Shadow | Outcome::NoAcw => None,
    }
}
