//! The leg worker: it carries out the moves of the leg's state machine, one leg at a time.
//!
//! The store is the queue: [`Scheduler`](crate::scheduler) claims due legs (earliest deadline first) with a lease,
//! and hands each to [`Worker::process`]. The worker feeds the leg's state machine
//! ([`wrapup_core::lifecycle::step`]) with `Due` and then with the answer of every platform call it asks for, and
//! carries out its effects: ledger lines (committed with the leg, [`Store::save`]), the save of the write-ahead
//! intent before the gate read, the gate read, the write, the read of a closed leg's final code, catalog refreshes.
//! It never decides anything about the leg itself.
//!
//! Every save carries the version the worker holds: if an event changed the leg meanwhile (the agent coded, the
//! window closed), the save is refused, the worker reloads the leg and the machine reconciles what it did with what
//! the event says ([`wrapup_core::lifecycle::after_conflict`]). That is how "agent wins" survives races with our own
//! worker. Between the gate read and the write nothing is saved: the write goes out only if the stored leg is still
//! the version the read licensed ([`Unchanged`]), and its lines are committed with the move that follows.
//!
//! Outcomes are counted by the store's outcome hook (see `app`), once per leg whatever ended it.

use crate::acw_estimate::AcwEstimates;
use crate::attempts;
use crate::catalog::CatalogCache;
use crate::platform::{SharedPlatform, Urgency};
use jiff::SignedDuration;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use wrapup_connectors::attempt::ApiAttempt;
use wrapup_connectors::error::PlatformError;
use wrapup_core::clock::SharedClock;
use wrapup_core::lifecycle::{self, after_conflict, Call, Ctx, Effect, Failure, Input, LegRecord, LegState};
use wrapup_core::rules::RuleSet;
use wrapup_core::Timing;
use wrapup_store::{ClaimedLeg, LedgerEntry, Save, Store, StoreError};

/// Moves of one leg per claim at most (a leg that keeps changing under the worker goes back to the queue).
const MAX_MOVES: usize = 16;

/// One platform connection as the worker sees it.
pub struct ConnectionRuntime {
    pub name: String,
    pub platform: SharedPlatform,
    pub catalog: CatalogCache,
    pub rules: Arc<RuleSet>,
    /// Estimated ends of windows an agent may leave (orders their work).
    pub acw_estimates: AcwEstimates,
    /// Where decisions from outside the rules come from on this connection.
    pub decisions: ExternalDecisions,
}

/// A connection's sources of external decisions.
#[derive(Debug, Clone, Default)]
pub struct ExternalDecisions {
    /// The connection takes CRM decisions: a leg being decided may have one kept for it in the store.
    pub takes_crm: bool,
    /// The decision hooks rules may ask, by name (shared by every connection).
    pub hooks: Arc<std::collections::HashMap<String, Arc<crate::decisions::hook::DecisionHook>>>,
}

/// Retry pacing, in wall time.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { base: Duration::from_millis(250), max: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// Full-jitter exponential backoff for the `attempt`-th retry (1-based), at least `floor`.
    pub fn delay(&self, attempt: u32, floor: Option<Duration>) -> Duration {
        let exp = self.base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16)).min(self.max);
        let jittered = exp.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        jittered.max(floor.unwrap_or_default())
    }
}

pub struct Worker {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub connections: std::collections::HashMap<String, Arc<ConnectionRuntime>>,
    pub owner: String,
    pub retry: RetryPolicy,
    /// No write is sent when the window closes within this much wall time: the request's own latency and the
    /// skew between our clock and the platform's would land it outside the window.
    pub deadline_guard: Duration,
    /// A gate read that took longer than this (wall time) is not trusted to license a write: it is read again.
    pub gate_freshness: Duration,
    /// How long (wall time) a write answered 2xx waits for the platform's confirmation before it is read back.
    pub confirm_within: Duration,
}

/// One claim of one leg: the leg as the worker holds it, its stored version and outcome, and the ledger lines of
/// moves not yet saved.
struct Held {
    leg: LegRecord,
    version: i64,
    stored_outcome: Option<wrapup_core::Outcome>,
    lines: Vec<LedgerEntry>,
    /// The leg when it was last saved or loaded (to reconcile a refused save).
    saved: LegRecord,
}

/// What a save told the worker.
enum Saved {
    Ok,
    /// An event changed the leg: the worker holds the reconciled leg now and starts again from `Due`.
    Overtaken,
    /// The store failed, or the leg is gone: give the leg back as it is.
    Failed,
}

impl Worker {
    /// How many legs to hold at once when a request budget is shared with replicas (see
    /// [`crate::shared_budget::legs_worth_holding`]); `None` when none is.
    pub fn legs_worth_holding(&self) -> Option<usize> {
        crate::shared_budget::legs_worth_holding(self.connections.values().filter_map(|c| c.platform.budget()))
    }

    /// Works on one claimed leg until it is done or waiting, then releases it. Never panics on platform or store
    /// failures: they are logged, recorded, and the lease is released so the leg is retried.
    pub async fn process(&self, claimed: ClaimedLeg) {
        let key = claimed.leg.key.clone();
        let span = tracing::debug_span!("leg", leg.id = %key, connection = %key.connection);
        let _enter = span.enter();
        let mut held = Held {
            stored_outcome: claimed.leg.outcome,
            saved: claimed.leg.clone(),
            leg: claimed.leg,
            version: claimed.version,
            lines: Vec::new(),
        };
        let Some(conn) = self.connections.get(&key.connection).cloned() else {
            let effects = lifecycle::unconfigured(&mut held.leg, self.clock.now());
            self.carry_out(&mut held, effects).await;
            return;
        };
        let mut input = Input::Due;
        for _ in 0..MAX_MOVES {
            let catalog = conn.catalog.get().await.map_err(|e| failure(&e));
            let mut pending = None;
            if held.leg.state == LegState::Open {
                // The estimates are read when a leg is decided (its estimated deadline is set then).
                conn.acw_estimates.refresh_if_stale(self.store.as_ref()).await;
                if conn.decisions.takes_crm && held.leg.ended_seen && held.leg.external.is_none() {
                    match self.store.pending_decision(&held.leg.key).await {
                        Ok(found) => pending = found,
                        // Deciding without it could write over what the CRM said: try again later.
                        Err(e) => {
                            tracing::warn!(error = %e, "Could not look up a CRM decision kept for the leg; trying later.");
                            return self.give_back(&held).await;
                        }
                    }
                }
            }
            let effects = {
                let backoff = |n: u32, floor: Option<Duration>| self.clock.clock_duration(self.retry.delay(n, floor));
                let is_system_code = |code: &str| conn.platform.is_system_code(code);
                let ctx = Ctx {
                    now: self.clock.now(),
                    connection: &conn.name,
                    catalog: catalog.as_deref(),
                    rules: &conn.rules,
                    acw_estimate: conn.acw_estimates.estimate(held.leg.facts.queue_id.as_deref()),
                    guard: self.clock.clock_duration(self.deadline_guard),
                    confirm_within: self.clock.clock_duration(self.confirm_within),
                    backoff: &backoff,
                    is_system_code: &is_system_code,
                    pending_decision: pending.as_ref(),
                };
                lifecycle::step(&mut held.leg, std::mem::replace(&mut input, Input::Due), &ctx)
            };
            let mut next = None;
            for effect in effects {
                match effect {
                    Effect::Ledger { kind, detail } => {
                        if kind == "decision" && detail.get("fallback").is_some() {
                            metrics::counter!("wrapup_decision_fallbacks_total", "connection" => conn.name.clone())
                                .increment(1);
                        }
                        held.lines.push(self.line(kind, detail))
                    }
                    Effect::RefreshCatalog => {
                        let _ = conn.catalog.refresh().await;
                    }
                    Effect::SaveBeforeCall => match self.save(&mut held, false).await {
                        Saved::Ok => {}
                        Saved::Overtaken => {
                            next = Some(Input::Due);
                            break;
                        }
                        Saved::Failed => return self.give_back(&held).await,
                    },
                    Effect::Release => {
                        match self.release(&mut held).await {
                            Saved::Ok | Saved::Failed => return,
                            Saved::Overtaken => next = Some(Input::Due),
                        }
                        break;
                    }
                    Effect::Call(call) => next = Some(self.call(&conn, &mut held, call).await),
                }
            }
            match next {
                Some(i) => input = i,
                None => return self.give_back(&held).await,
            }
        }
        self.give_back(&held).await;
    }

    /// Makes a platform call for the machine and turns its answer into the next input; the attempts go to the
    /// ledger lines.
    async fn call(&self, conn: &ConnectionRuntime, held: &mut Held, call: Call) -> Input {
        let leg = &held.leg;
        match call {
            Call::GateRead => {
                crate::chaos::point("worker.after_intent");
                let urgency = self.urgency(leg);
                let started = tokio::time::Instant::now();
                let (answer, calls) = attempts::collect(conn.platform.read_gate(leg, urgency)).await;
                // The answer describes the leg when the platform computed it; a slow one may be stale. Measured from
                // when the read was sent (its last attempt), not from when it began waiting for the budget: the
                // platform computes the answer on receipt, and a read that queued behind other legs is not stale.
                let stale = match calls.iter().rev().find(|a| a.method == "GET") {
                    Some(a) => Duration::from_millis(a.duration_ms) > self.gate_freshness,
                    None => started.elapsed() > self.gate_freshness,
                };
                self.attempt_lines(held, &calls);
                Input::GateRead { answer: answer.map_err(|e| failure(&e)), stale }
            }
            Call::Write { code, notes } => {
                crate::chaos::point("worker.after_gate");
                let urgency = self.urgency(leg);
                // Checked once the write holds its budget permit: nothing about the leg changed since the gate
                // read (no event arrived: the agent did not code, the window did not close), and the window is
                // still open.
                let unchanged = Unchanged { worker: self, leg, version: held.version };
                let (answer, calls) =
                    attempts::collect(conn.platform.write_code(leg, &code, notes.as_deref(), urgency, &unchanged))
                        .await;
                if answer.is_ok() {
                    crate::chaos::point("worker.after_write");
                }
                self.attempt_lines(held, &calls);
                Input::Written(answer.map_err(|e| failure(&e)))
            }
            Call::ReadFinalCode => {
                let (answer, calls) = attempts::collect(conn.platform.read_code(leg, Urgency::Reconcile)).await;
                self.attempt_lines(held, &calls);
                Input::FinalCode(answer.map_err(|e| failure(&e)))
            }
            Call::RefreshCatalog => {
                let _ = conn.catalog.refresh().await;
                Input::CatalogRefreshed
            }
            Call::AskHook { hook, rule, within } => {
                let Some(client) = conn.decisions.hooks.get(&hook) else {
                    let message = format!("decision hook {hook:?} is not configured");
                    let f = Failure { class: wrapup_core::failure::ErrorClass::Permanent, status: None, message };
                    return Input::HookAnswered { hook, answer: Err(f) };
                };
                let wall = self.clock.wall_duration(within);
                let answer = client.ask(leg, Some(&rule), wall).await;
                held.lines.push(self.line("hook", hook_line(&hook, &answer)));
                Input::HookAnswered { hook, answer }
            }
            Call::ReadAttributes => {
                let (answer, calls) = attempts::collect(conn.platform.read_attributes(leg, self.urgency(leg))).await;
                self.attempt_lines(held, &calls);
                Input::AttributesRead(answer.map_err(|e| failure(&e)))
            }
        }
    }

    /// The budget urgency of a live leg's calls: its deadline (less the guard, which keeps room for the request
    /// itself), or the estimated end of its window when that comes first (ordering only; never dropped by it).
    fn urgency(&self, leg: &LegRecord) -> Urgency {
        let guard = self.clock.clock_duration(self.deadline_guard);
        match (leg.deadline, leg.order_deadline()) {
            (hard, Some(order)) if Some(order) != hard => Urgency::Live { deadline: Some(order), estimated: true },
            (hard, _) => Urgency::Live { deadline: hard.map(|d| d.checked_sub(guard).unwrap_or(d)), estimated: false },
        }
    }

    fn line(&self, kind: &str, detail: serde_json::Value) -> LedgerEntry {
        LedgerEntry { at: self.clock.now(), kind: kind.to_string(), detail }
    }

    fn attempt_lines(&self, held: &mut Held, calls: &[ApiAttempt]) {
        for a in calls {
            held.lines.push(self.line("attempt", attempts::ledger_detail(a)));
        }
    }

    /// Saves the held leg with its pending lines (keeping the lease unless `release`).
    async fn save(&self, held: &mut Held, release: bool) -> Saved {
        let save = Save {
            leg: &held.leg,
            version: held.version,
            owner: &self.owner,
            release,
            lines: &held.lines,
            stored_outcome: held.stored_outcome,
        };
        match self.store.save(save).await {
            Ok(version) => {
                if held.leg.written_at.is_some() && held.saved.written_at.is_none() {
                    metrics::counter!("wrapup_codes_applied_total", "connection" => held.leg.key.connection.clone())
                        .increment(1);
                }
                held.version = version;
                held.stored_outcome = held.leg.outcome;
                held.lines.clear();
                held.saved = held.leg.clone();
                Saved::Ok
            }
            Err(StoreError::Conflict(_)) => self.overtaken(held).await,
            Err(e) => {
                tracing::warn!(leg = %held.leg.key, error = %e, "Could not save the leg; it will be retried.");
                Saved::Failed
            }
        }
    }

    /// An event changed the leg under the worker: reload it and let the machine reconcile the two.
    async fn overtaken(&self, held: &mut Held) -> Saved {
        let fresh = match self.store.get_leg(&held.leg.key).await {
            Ok(Some(fresh)) => fresh,
            _ => return Saved::Failed,
        };
        let (leg, dirty, lines) = after_conflict(&held.saved, &held.leg, fresh.leg.clone(), self.clock.now());
        // Of the overtaken moves' lines only the API attempts stay (they happened); the rest described changes the
        // event overtook (a decision, an ending), and the reconciliation's lines replace them.
        held.lines.retain(|l| l.kind == "attempt");
        for effect in lines {
            if let Effect::Ledger { kind, detail } = effect {
                held.lines.push(self.line(kind, detail));
            }
        }
        held.version = fresh.version;
        held.stored_outcome = fresh.leg.outcome;
        held.saved = fresh.leg;
        held.leg = leg;
        if dirty || !held.lines.is_empty() {
            // Persist what the reconciliation decided (and the lines) before anything else.
            return match Box::pin(self.save(held, false)).await {
                Saved::Ok => Saved::Overtaken,
                other => other,
            };
        }
        Saved::Overtaken
    }

    /// Saves and releases the leg (or only releases it when nothing changed).
    async fn release(&self, held: &mut Held) -> Saved {
        if held.leg == held.saved && held.lines.is_empty() {
            self.give_back(held).await;
            return Saved::Ok;
        }
        match self.save(held, true).await {
            Saved::Ok => Saved::Ok,
            Saved::Overtaken if held.leg.is_done() => {
                self.give_back(held).await;
                Saved::Ok
            }
            other => other,
        }
    }

    /// Releases the lease without saving (the leg is retried from what is stored).
    async fn give_back(&self, held: &Held) {
        let _ = self.store.release(&held.leg.key, &self.owner).await;
    }

    /// Carries out the effects of a move that makes no call (an unconfigured connection's leg).
    async fn carry_out(&self, held: &mut Held, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Ledger { kind, detail } => held.lines.push(self.line(kind, detail)),
                Effect::Release => {
                    let _ = self.release(held).await;
                    return;
                }
                _ => {}
            }
        }
        self.give_back(held).await;
    }
}

/// A connector's error as the state machine sees it.
/// The ledger line of one ask of a decision hook.
fn hook_line(hook: &str, answer: &Result<Option<wrapup_core::lifecycle::HookAnswer>, Failure>) -> serde_json::Value {
    match answer {
        Ok(Some(a)) => serde_json::json!({"hook": hook, "answer": "code", "code": a.code_name}),
        Ok(None) => serde_json::json!({"hook": hook, "answer": "no decision"}),
        Err(f) => {
            serde_json::json!({"hook": hook, "answer": "failed", "class": f.class.as_str(), "status": f.status, "error": f.message})
        }
    }
}

fn failure(e: &PlatformError) -> Failure {
    Failure { class: e.class.clone(), status: e.status, message: e.to_string() }
}

/// The write's precondition: the stored leg is still the version the worker gate-read, and its window is open. Any
/// event counts, even a repeated `leg ended`: the service may have been down or the platform's events late, so an
/// event arriving while the write waited is a reason to read the platform again rather than trust the older read
/// (a relaxed "no code event seen" check was tried; the kill-and-restart test then showed one overwrite in four runs).
struct Unchanged<'a> {
    worker: &'a Worker,
    leg: &'a LegRecord,
    version: i64,
}

#[async_trait::async_trait]
impl wrapup_connectors::Precondition for Unchanged<'_> {
    async fn check(&self) -> Result<(), String> {
        match self.worker.store.get_leg(&self.leg.key).await {
            Ok(Some(current)) if current.version == self.version => {}
            Ok(Some(_)) => {
                return Err("the leg changed (an event arrived) while the write waited for the budget".into())
            }
            Ok(None) => return Err("the leg is no longer in the store".into()),
            Err(e) => return Err(format!("the leg could not be re-read: {e}")),
        }
        // The time last, right before the request goes: the store's read can take a while on a busy shared database.
        let guard = self.worker.clock.clock_duration(self.worker.deadline_guard);
        let now = self.worker.clock.now();
        if self.leg.deadline.is_some_and(|d| d.checked_sub(guard).unwrap_or(d) <= now) {
            return Err("the ACW window closes before the write could land".into());
        }
        Ok(())
    }
}

/// The wall-clock latency from the leg's end to our accepted write, when both are known.
pub fn write_latency(leg: &LegRecord, clock_factor: f64) -> Option<Duration> {
    let (ended, written) = (leg.facts.ended_at?, leg.written_at?);
    let d: SignedDuration = written.duration_since(ended);
    if d.is_negative() {
        return Some(Duration::ZERO);
    }
    Some(Duration::try_from(d).ok()?.div_f64(clock_factor.max(f64::MIN_POSITIVE)))
}

/// The rule timing a leg was decided with, if any.
pub fn decided_timing(leg: &LegRecord) -> Option<Timing> {
    leg.decision.as_ref().map(|d| d.timing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{CallStats, LegPlatform};
    use jiff::Timestamp;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    use wrapup_clock::ScaledClock;
    use wrapup_connectors::error::ErrorClass;
    use wrapup_connectors::Precondition;
    use wrapup_core::catalog::{Catalog, CodeEntry};
    use wrapup_core::lifecycle::{Decision, DecisionSource, WriteIntent, MAX_CLOSING_READ_FAILURES};
    use wrapup_core::{Event, EventKind, LegFacts, LegKey, Platform};
    use wrapup_core::{Mode, Outcome};

    /// Answers gate reads from a script and counts writes (which a closing leg must never make). With `race`, the
    /// first write stores that event first (as if it arrived while the write waited) and honours the precondition.
    struct Scripted {
        reads: Mutex<VecDeque<Result<Option<String>, PlatformError>>>,
        writes: AtomicU32,
        race: Mutex<Option<(Arc<dyn Store>, Event)>>,
    }

    #[async_trait::async_trait]
    impl LegPlatform for Scripted {
        fn connection(&self) -> &str {
            "cx"
        }
        fn platform(&self) -> Platform {
            Platform::Cxone
        }
        async fn fetch_catalog(&self) -> Result<Catalog, PlatformError> {
            Ok(Catalog { codes: vec![CodeEntry { id: "7".into(), name: "Ours".into() }], queues: vec![] })
        }
        async fn read_code(&self, _: &LegRecord, _: Urgency) -> Result<Option<String>, PlatformError> {
            self.reads.lock().unwrap().pop_front().expect("an unexpected read")
        }
        async fn write_code(
            &self,
            _: &LegRecord,
            _: &CodeEntry,
            _: Option<&str>,
            _: Urgency,
            precondition: &dyn Precondition,
        ) -> Result<(), PlatformError> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            let race = self.race.lock().unwrap().take();
            if let Some((store, event)) = race {
                store.ingest(&[event], Timestamp::now()).await.unwrap();
            }
            precondition.check().await.map_err(|why| {
                PlatformError::transport(ErrorClass::PreconditionFailed, "POST", format!("not sent: {why}"))
            })
        }
        fn stats(&self) -> CallStats {
            CallStats::default()
        }
        fn is_system_code(&self, code: &str) -> bool {
            code == "sys"
        }
    }

    fn event(kind: EventKind, key: &str) -> Event {
        Event {
            leg: LegKey::new("cx", "1", "2"),
            dedupe_key: key.into(),
            occurred_at: Timestamp::now(),
            correlation_id: None,
            kind,
        }
    }

    /// A worker over an in-memory store holding one leg that was being written (intent "7") when its window was seen
    /// closing; `reads` is what the platform answers; `unsent` of the leg's one attempt is known not sent.
    async fn closing_leg(reads: Vec<Result<Option<String>, PlatformError>>, unsent: u32) -> (Worker, Arc<Scripted>) {
        let (worker, platform, mut leg, version) = leg_worker(reads).await;
        leg.state = LegState::Writing;
        leg.intent = Some(WriteIntent { code_id: "7".into(), code_name: "Ours".into(), at: worker.clock.now() });
        leg.attempts = 1;
        leg.unsent_attempts = unsent;
        worker.store.save_leg(&leg, version, "test", true).await.unwrap();
        worker.store.ingest(&[event(EventKind::LegClosedUnread, "closed")], worker.clock.now()).await.unwrap();
        (worker, platform)
    }

    /// A worker over an in-memory store with one ended leg, claimed by "test" (its record and version returned).
    async fn leg_worker(reads: Vec<Result<Option<String>, PlatformError>>) -> (Worker, Arc<Scripted>, LegRecord, i64) {
        let platform =
            Arc::new(Scripted { reads: Mutex::new(reads.into()), writes: AtomicU32::new(0), race: Mutex::new(None) });
        let store: Arc<dyn Store> = Arc::new(wrapup_store::SqliteStore::open_in_memory().await.unwrap());
        let clock = ScaledClock::new(Timestamp::now(), 1.0).shared();
        let facts = LegFacts { ended_at: Some(clock.now()), acw_timeout_ms: Some(60_000), ..Default::default() };
        store.ingest(&[event(EventKind::LegEnded { facts: Box::new(facts) }, "end")], clock.now()).await.unwrap();
        let lease = SignedDuration::from_secs(60);
        let stored = store.claim_due(clock.now(), 1, "test", lease).await.unwrap().remove(0);
        let catalog =
            CatalogCache::new(platform.clone(), store.clone(), clock.clone(), SignedDuration::from_secs(3600));
        let conn = ConnectionRuntime {
            name: "cx".into(),
            platform: platform.clone(),
            catalog,
            rules: Arc::new(RuleSet::new(vec![]).unwrap()),
            acw_estimates: AcwEstimates::new("cx", SignedDuration::from_secs(20)),
            decisions: Default::default(),
        };
        let worker = Worker {
            store,
            clock,
            connections: [("cx".to_string(), Arc::new(conn))].into(),
            owner: "w".into(),
            retry: RetryPolicy { base: Duration::from_millis(1), max: Duration::from_millis(2) },
            deadline_guard: Duration::from_millis(500),
            gate_freshness: Duration::from_secs(1),
            confirm_within: Duration::from_secs(1),
        };
        (worker, platform, stored.leg, stored.version)
    }

    /// Claims the leg as the scheduler would (waiting out a retry's backoff) and lets the worker process it.
    async fn run_once(worker: &Worker) -> LegRecord {
        let leg = run_claimed(worker).await;
        assert!(matches!(leg.state, LegState::Closing | LegState::Done), "a closing event stops the write at once");
        leg
    }

    async fn run_claimed(worker: &Worker) -> LegRecord {
        let key = LegKey::new("cx", "1", "2");
        let claimed = loop {
            let now = worker.clock.now();
            match worker.store.claim_due(now, 1, &worker.owner, SignedDuration::from_secs(60)).await.unwrap().pop() {
                Some(c) => break c,
                None => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        };
        worker.process(claimed).await;
        worker.store.get_leg(&key).await.unwrap().unwrap().leg
    }

    #[tokio::test]
    async fn a_closed_leg_ends_with_whatever_code_it_was_closed_with_and_is_never_written() {
        let cases = [
            (Some("7"), 0, Outcome::Applied),
            // Our code, but our one attempt is known not to have gone out: the agent chose it.
            (Some("7"), 1, Outcome::AgentWon),
            (Some("9"), 0, Outcome::AgentWon),
            (None, 0, Outcome::Expired),
        ];
        for (read, unsent, outcome) in cases {
            let (worker, platform) = closing_leg(vec![Ok(read.map(str::to_string))], unsent).await;
            let leg = run_once(&worker).await;
            assert_eq!(leg.outcome, Some(outcome), "read {read:?}, unsent {unsent}");
            assert_eq!(platform.writes.load(Ordering::SeqCst), 0);
        }
    }

    #[tokio::test]
    async fn our_code_found_after_a_write_that_never_went_out_is_the_agents_choice() {
        // The first write waits for the budget; meanwhile a repeated `leg ended` arrives, so the write is not sent.
        // The next gate read finds the code we meant to write: the agent chose it (no write of ours ever went out),
        // which must not be reported as `applied`.
        let (worker, platform, mut leg, version) = leg_worker(vec![Ok(None), Ok(Some("7".into()))]).await;
        let now = worker.clock.now();
        leg.state = LegState::Scheduled;
        leg.not_before = now;
        leg.decision = Some(Decision {
            source: DecisionSource::Rule { index: 0, name: "r".into(), version: "1".into() },
            code_name: "Ours".into(),
            notes: None,
            timing: Timing::Immediate,
            mode: Mode::Enforce,
            decided_at: now,
            fallback: None,
        });
        worker.store.save_leg(&leg, version, "test", true).await.unwrap();
        let again = event(EventKind::LegEnded { facts: Box::new(leg.facts.clone()) }, "end-again");
        *platform.race.lock().unwrap() = Some((worker.store.clone(), again));
        let mut leg = run_claimed(&worker).await;
        while !leg.is_done() {
            leg = run_claimed(&worker).await;
        }
        assert_eq!(leg.outcome, Some(Outcome::AgentWon), "{:?}", leg.outcome_reason);
        assert_eq!((leg.attempts, leg.unsent_attempts), (2, 1));
        assert_eq!(leg.written_at, None);
        assert_eq!(platform.writes.load(Ordering::SeqCst), 1, "one write was tried, and it was not sent");
    }

    #[tokio::test]
    async fn an_unreadable_closed_leg_is_read_again_later_and_then_given_to_a_person() {
        let failure = || Err(PlatformError::transport(ErrorClass::Retryable, "GET", "503"));
        let mut reads: Vec<_> = (0..MAX_CLOSING_READ_FAILURES).map(|_| failure()).collect();
        reads.push(Ok(None));
        let (worker, platform) = closing_leg(reads, 0).await;
        let leg = run_once(&worker).await;
        assert_eq!((leg.state, leg.outcome, leg.closing_read_failures), (LegState::Closing, None, 1));
        assert!(leg.not_before > leg.created_at, "the next read waits");
        let mut leg = leg;
        while !leg.is_done() {
            tokio::time::sleep(Duration::from_millis(3)).await;
            leg = run_once(&worker).await;
        }
        assert_eq!(leg.outcome, Some(Outcome::Review));
        assert_eq!(platform.writes.load(Ordering::SeqCst), 0);
    }
}
