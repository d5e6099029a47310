//! The reconciler: finds legs whose events were lost.
//!
//! Events get lost: an EventBridge delivery that never arrives, a websocket that was down (a [`Gap`]). Every leg
//! that entered ACW must still end in one outcome (DESIGN §2.3), so per Genesys connection a loop sweeps the
//! platform's own record — `POST /api/v2/analytics/conversations/details/query` — on a schedule
//! (`reconcile_every_secs`), when the websocket intake reports a gap, and on demand (`wrapup reconcile`).
//!
//! One **pass**:
//!
//! 1. Query agent participants with a `wrapup` segment in conversations that started in `now − window … now`,
//!    page after page until the last ([`analytics::details_query`]). Every request is made at
//!    [`Priority::reconcile()`](wrapup_connectors::budget::Priority::reconcile): the budget serves every waiting
//!    live leg first, so the reconciler only ever uses what live work leaves. Each page gets a bounded number of
//!    attempts with a per-attempt timeout (a hung request must not stall the sweep).
//! 2. For each leg analytics shows ([`analytics::AnalyticsLeg`]), compare with the store:
//!    - the store never saw its end → ingest the `LegEnded` built from the analytics facts; the worker then decides
//!      and codes it with its real deadline (ACW start + the queue's timeout from the catalog);
//!    - a final code (or a window closed without one) the store does not know of → ingest the `CodeRecorded` (the
//!      `.acw` event was lost): an open leg becomes `agent_won` / `expired`, a leg confirming our write becomes
//!      `applied` or `agent_changed`.
//!      These go through [`Store::ingest`] like any event: deduplicated (the `reconcile:…` keys collapse repeated
//!      passes; a late real event merges harmlessly), durable, applied by `apply_event`, in the leg's ledger.
//!
//! A write whose confirmation never comes is not the reconciler's: the leg stays `confirming` and its worker reads
//! the code back (`wrapup_core::lifecycle`).
//!
//! Every finding is counted in `wrapup_reconcile_found_total{connection, kind}` and noted in the leg's ledger
//! (`{"reconciler": kind}`); the claim loop is woken so found legs are worked on at once.
//!
//! [`Gap`]: wrapup_connectors::genesys::notifications::Notification::Gap

use crate::platform::SharedPlatform;
use crate::scheduler::Shutdown;
use jiff::SignedDuration;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use wrapup_connectors::budget::Priority;
use wrapup_connectors::error::{ErrorClass, PlatformError};
use wrapup_connectors::genesys::analytics::{self, AcwStatus, AnalyticsLeg};
use wrapup_connectors::genesys::GenesysClient;
use wrapup_core::clock::SharedClock;
use wrapup_core::{Event, EventKind, LegKey, Outcome};
use wrapup_store::{Ingested, LedgerEntry, Store};

/// How a connection's reconciler runs.
#[derive(Debug, Clone)]
pub struct ReconcileSettings {
    /// Between periodic passes, in wall time; zero = only on demand (a gap, `wrapup reconcile`).
    pub every: Duration,
    /// How far back a pass looks (by conversation start), on the service's clock.
    pub window: SignedDuration,
    /// Wall-time limit of one request of the reconciler (an analytics page); a request that hangs longer is
    /// abandoned and retried.
    pub request_timeout: Duration,
    /// Attempts per analytics page before the pass gives up on it.
    pub attempts: u32,
    /// Most pages one pass reads (a guard against a runaway answer).
    pub max_pages: usize,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(60),
            window: SignedDuration::from_secs(3600),
            request_timeout: Duration::from_secs(10),
            attempts: 3,
            max_pages: 200,
        }
    }
}

/// A connection's reconciler as configured, before the service runs it.
#[derive(Clone)]
pub struct ReconcileSpec {
    pub client: GenesysClient,
    pub system_code_ids: HashSet<String>,
    pub settings: ReconcileSettings,
}

/// What one pass found, by kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct PassReport {
    pub connection: String,
    /// Pages read and conversations / agent legs they held.
    pub pages: usize,
    pub conversations: usize,
    pub legs_checked: usize,
    /// Legs whose `user.end` we never saw, now ingested.
    pub found_ended: u64,
    /// Final codes (agent's or the platform's timeout code) we never heard of, now ingested.
    pub found_codes: u64,
    /// Windows that closed without a code we never heard of.
    pub found_closed: u64,
    /// Our writes confirmed by the pass (analytics).
    pub confirmed: u64,
    /// Our writes the agent replaced afterwards.
    pub agent_changed: u64,
    /// Problems that cut the pass short or skipped a leg.
    pub errors: Vec<String>,
}

impl PassReport {
    pub fn found(&self) -> u64 {
        self.found_ended + self.found_codes + self.found_closed + self.confirmed + self.agent_changed
    }
}

/// Progress of a pass, for a progress bar.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub pages_done: usize,
    /// Known after the first page (`totalHits` / page size).
    pub pages_total: Option<usize>,
    pub legs_checked: usize,
}

/// The reconciler of one Genesys connection.
pub struct Reconciler {
    pub connection: String,
    pub client: GenesysClient,
    /// The same connection behind the worker's interface (for read-backs).
    pub platform: SharedPlatform,
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub system_code_ids: HashSet<String>,
    pub settings: ReconcileSettings,
    /// Woken after a pass found something (the claim loop), if any.
    pub wake: Option<Arc<Notify>>,
    /// Notified to run a pass now (a websocket gap, an operator).
    pub trigger: Arc<Notify>,
    /// When processes share the store: periodic passes run only in the one that leads this connection's reconcile
    /// job (a pass asked for through `trigger` runs anyway). `None`: every periodic pass runs.
    pub leases: Option<Arc<crate::jobs::JobLeases>>,
}

impl Reconciler {
    /// Asks for a pass as soon as possible (coalesced with one already asked for).
    pub fn request_pass(&self) {
        self.trigger.notify_one();
    }

    /// One pass (see the module docs). Errors of single requests are in the report; the pass itself only fails
    /// when the store does.
    pub async fn pass(&self, progress: &(dyn Fn(Progress) + Send + Sync)) -> anyhow::Result<PassReport> {
        let mut report = PassReport { connection: self.connection.clone(), ..Default::default() };
        let now = self.clock.now();
        let from = now.checked_sub(self.settings.window).unwrap_or(now);
        // A little past now: the interval's end is exclusive, and a conversation may start while we page.
        let to = now.checked_add(SignedDuration::from_secs(60)).unwrap_or(now);
        let mut settled: HashSet<LegKey> = HashSet::new();
        let mut state = Progress::default();
        let mut page_number = 1;
        loop {
            let query = analytics::details_query(from, to, page_number);
            let body =
                match self.with_attempts(|| self.client.analytics_details_query(&query, Priority::reconcile())).await {
                    Ok(b) => b,
                    Err(e) => {
                        report.errors.push(format!("analytics page {page_number}: {e}"));
                        break;
                    }
                };
            let page = match analytics::parse_details(&self.connection, &body, &self.system_code_ids) {
                Ok(p) => p,
                Err(e) => {
                    report.errors.push(format!("analytics page {page_number}: {e}"));
                    break;
                }
            };
            report.pages += 1;
            report.conversations += page.conversations;
            report.legs_checked += page.legs.len();
            if page.skipped > 0 {
                report.errors.push(format!("analytics page {page_number}: {} unreadable participants", page.skipped));
            }
            self.apply_page(&page.legs, &mut report, &mut settled).await?;
            state.pages_done = report.pages;
            state.pages_total = Some(page.total_hits.div_ceil(analytics::PAGE_SIZE).max(1));
            state.legs_checked = report.legs_checked;
            progress(state);
            let seen = (page_number - 1) * analytics::PAGE_SIZE + page.conversations;
            if page.conversations < analytics::PAGE_SIZE || seen >= page.total_hits {
                break;
            }
            if page_number >= self.settings.max_pages {
                report.errors.push(format!("stopped after {page_number} pages"));
                break;
            }
            page_number += 1;
        }
        if report.found() > 0 {
            if let Some(w) = &self.wake {
                w.notify_one();
            }
        }
        Ok(report)
    }

    /// Compares one page with the store and ingests what the store is missing.
    async fn apply_page(
        &self,
        legs: &[AnalyticsLeg],
        report: &mut PassReport,
        settled: &mut HashSet<LegKey>,
    ) -> anyhow::Result<()> {
        let mut events: Vec<(Event, Kind)> = Vec::new();
        for found in legs {
            let stored = self.store.get_leg(&found.leg).await?.map(|c| c.leg);
            let ended_seen = stored.as_ref().is_some_and(|l| l.ended_seen);
            if !ended_seen {
                events.push((found.leg_ended(), Kind::LegEnded));
            }
            let Some(code_event) = found.code_recorded() else { continue };
            let known = match (&stored, &code_event.kind) {
                (Some(l), EventKind::CodeRecorded { code_id, .. }) => match l.outcome {
                    // Only a confirmation (or a change) matters once we wrote.
                    Some(Outcome::Applied) => l.confirmed && l.observed_code == *code_id,
                    Some(Outcome::AgentChanged) => l.observed_code == *code_id,
                    Some(_) => true,
                    None => false,
                },
                _ => false,
            };
            if known {
                continue;
            }
            let kind = match (&stored, &found.acw) {
                (Some(l), _) if l.outcome == Some(Outcome::Applied) => Kind::Confirmation,
                (_, AcwStatus::ClosedWithoutCode { .. }) => Kind::WindowClosed,
                _ => Kind::CodeRecorded,
            };
            if kind == Kind::Confirmation {
                settled.insert(found.leg.clone());
            }
            events.push((code_event, kind));
        }
        self.ingest(events, report).await
    }

    /// Ingests what the pass found, counts it, and notes it in each leg's ledger.
    async fn ingest(&self, mut events: Vec<(Event, Kind)>, report: &mut PassReport) -> anyhow::Result<()> {
        // The analytics and read-back answers are the platform's, but the ids in them pass the same shape check as
        // every other intake before they name a leg.
        let platform = self.platform.platform();
        events.retain(|(event, _)| match wrapup_core::ids::check_event(platform, event) {
            Ok(()) => true,
            Err(e) => {
                report.errors.push(format!("an event found by the reconciler was dropped: {e}"));
                false
            }
        });
        if events.is_empty() {
            return Ok(());
        }
        let batch: Vec<Event> = events.iter().map(|(e, _)| e.clone()).collect();
        let results = self.store.ingest(&batch, self.clock.now()).await?;
        let mut legs_after: HashMap<LegKey, Option<Outcome>> = HashMap::new();
        for ((event, kind), result) in events.iter().zip(results) {
            if result != Ingested::New {
                continue;
            }
            let kind = match kind {
                Kind::Confirmation => {
                    let after = match legs_after.get(&event.leg) {
                        Some(o) => *o,
                        None => {
                            let o = self.store.get_leg(&event.leg).await?.and_then(|l| l.leg.outcome);
                            legs_after.insert(event.leg.clone(), o);
                            o
                        }
                    };
                    if after == Some(Outcome::AgentChanged) {
                        report.agent_changed += 1;
                        "agent_changed"
                    } else {
                        report.confirmed += 1;
                        "confirmed"
                    }
                }
                Kind::LegEnded => {
                    report.found_ended += 1;
                    "leg_ended"
                }
                Kind::CodeRecorded => {
                    report.found_codes += 1;
                    "code_recorded"
                }
                Kind::WindowClosed => {
                    report.found_closed += 1;
                    "window_closed"
                }
            };
            metrics::counter!("wrapup_reconcile_found_total", "connection" => self.connection.clone(), "kind" => kind)
                .increment(1);
            let entry = LedgerEntry {
                at: self.clock.now(),
                kind: "note".into(),
                detail: serde_json::json!({
                    "reconciler": kind,
                    "why": "found by the reconciler: the platform's event for this never reached the service",
                    "dedupe_key": event.dedupe_key,
                }),
            };
            if let Err(e) = self.store.append_ledger(&event.leg, &entry).await {
                tracing::warn!(leg = %event.leg, error = %e, "Could not append to the ledger.");
            }
        }
        Ok(())
    }

    /// Runs `call` up to `attempts` times, each bounded by the request timeout; waits out 429s and backs off after
    /// transient failures. Permanent failures end it at once.
    async fn with_attempts<T, F, Fut>(&self, call: F) -> Result<T, String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, PlatformError>>,
    {
        let mut last = String::new();
        for attempt in 1..=self.settings.attempts.max(1) {
            match tokio::time::timeout(self.settings.request_timeout, call()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    last = e.to_string();
                    let wait = match &e.class {
                        ErrorClass::RateLimited { retry_after } => retry_after.unwrap_or(Duration::from_secs(1)),
                        ErrorClass::Retryable | ErrorClass::Conflict => Duration::from_millis(200 * u64::from(attempt)),
                        _ => return Err(last),
                    };
                    tokio::time::sleep(wait).await;
                }
                Err(_) => last = format!("no answer within {:?}", self.settings.request_timeout),
            }
        }
        Err(last)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LegEnded,
    CodeRecorded,
    WindowClosed,
    Confirmation,
}

/// Runs `reconciler` until `shutdown`: a pass at start (legs that entered ACW while the service was down), then
/// every `settings.every`, and whenever a pass is requested.
pub async fn run(reconciler: Arc<Reconciler>, shutdown: Shutdown) {
    let every = reconciler.settings.every;
    let job = format!("reconcile:{}", reconciler.connection);
    // A pass asked for (a websocket gap seen by this process) runs whoever leads the periodic passes.
    let mut asked = false;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let leads = match &reconciler.leases {
            Some(leases) if !asked => leases.leads(&job, every).await,
            _ => true,
        };
        if leads {
            let pass = tokio::select! {
                r = reconciler.pass(&|_| {}) => r,
                _ = shutdown.cancelled() => return,
            };
            match pass {
                Ok(r) if r.found() > 0 || !r.errors.is_empty() => tracing::info!(
                    connection = %r.connection,
                    found_ended = r.found_ended,
                    found_codes = r.found_codes,
                    found_closed = r.found_closed,
                    confirmed = r.confirmed,
                    agent_changed = r.agent_changed,
                    errors = r.errors.len(),
                    first_error = r.errors.first().map(String::as_str).unwrap_or(""),
                    "Reconcile pass done."
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(connection = %reconciler.connection, error = %e, "The reconcile pass failed."),
            }
        }
        let periodic = async {
            if every.is_zero() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(every).await
            }
        };
        asked = tokio::select! {
            _ = periodic => false,
            _ = reconciler.trigger.notified() => true,
            _ = shutdown.cancelled() => return,
        };
    }
}
