//! The leg worker: decide → resolve → gate read → write → record, one leg at a time.
//!
//! The store is the queue: [`Scheduler`](crate::scheduler) claims due legs (earliest ACW deadline first) with a
//! lease, and hands each to [`Worker::process`]. A leg moves through the states of
//! [`wrapup_core::lifecycle`] inside one call where it can (an `immediate` rule goes from `open` to `done` without
//! another claim), and every move is saved with the version the worker holds: if an event changed the leg meanwhile
//! (the agent coded, the window closed), the save is refused, the worker reloads the leg and re-decides from what
//! the events say. That is how "agent wins" survives races with our own worker.
//!
//! The write is guarded twice:
//! 1. *Write-ahead intent*: `writing` + the intended code id are saved **before** the platform call, so a crash
//!    between the write and the record is recognised on restart (the gate read then shows our code: `applied`,
//!    no second write).
//! 2. *Gate read*: immediately before writing, the leg's current code (provisional included) is read; any code that
//!    is not ours means someone else chose: `agent_won`, no write.
//!
//! Failures are classified once (by the connector): transient ones and 429s reschedule the leg with jittered
//! backoff (never before `Retry-After`), within its deadline; a 403 or an unknown code is a `review` outcome with
//! the reason; a deadline that passes is `expired`.

use crate::acw_estimate::AcwEstimates;
use crate::attempts;
use crate::catalog::CatalogCache;
use crate::platform::{Gate, SharedPlatform, Urgency, Window};
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use wrapup_connectors::attempt::ApiAttempt;
use wrapup_connectors::error::{ErrorClass, PlatformError};
use wrapup_core::catalog::{AcwPolicy, Catalog, CodeEntry, ResolveError};
use wrapup_core::clock::SharedClock;
use wrapup_core::lifecycle::{Decision, DecisionSource, LegRecord, LegState, WriteIntent};
use wrapup_core::rules::RuleSet;
use wrapup_core::{Mode, Outcome, Timing};
use wrapup_store::{ClaimedLeg, LedgerEntry, Store, StoreError};

/// Failed reads of a closed leg's final code before it becomes a `review` (with the retry policy's backoff, minutes
/// of a platform that answers nothing).
const MAX_CLOSING_READ_FAILURES: u32 = 12;

/// One platform connection as the worker sees it.
pub struct ConnectionRuntime {
    pub name: String,
    pub platform: SharedPlatform,
    pub catalog: CatalogCache,
    pub rules: Arc<RuleSet>,
    /// Estimated ends of windows an agent may leave (orders their work).
    pub acw_estimates: AcwEstimates,
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
}

/// What the current step wants done with the leg.
enum Next {
    /// Save and keep working on it now.
    Continue,
    /// Save and hand it back to the queue.
    Release,
}

impl Worker {
    /// Works on one claimed leg until it is done or waiting, then releases it. Never panics on platform or store
    /// failures: they are logged, recorded, and the lease is released so the leg is retried.
    pub async fn process(&self, claimed: ClaimedLeg) {
        let key = claimed.leg.key.clone();
        let Some(conn) = self.connections.get(&key.connection).cloned() else {
            let mut leg = claimed.leg;
            let reason = format!("connection {:?} is not configured", key.connection);
            leg.finish(Outcome::Review, Some(reason.clone()), self.clock.now());
            self.ledger(&leg, "outcome", serde_json::json!({"outcome": "review", "reason": reason})).await;
            let _ = self.store.save_leg(&leg, claimed.version, &self.owner, true).await;
            return;
        };
        let (mut leg, mut version) = (claimed.leg, claimed.version);
        let span = tracing::debug_span!("leg", leg.id = %key, connection = %key.connection);
        let _enter = span.enter();
        // Set when a reload left a change that must be saved even if the next step changes nothing.
        let mut dirty = false;
        // The outcome as last stored: a new outcome goes to the ledger only once it is saved, so the explanation
        // never shows an ending that an event overruled before it was stored.
        let mut stored_outcome = leg.outcome;
        // Whether this call made the leg's current write intent and has not sent it: then only earlier attempts can
        // have put our code on the leg (see `LegRecord::unsent_attempts`).
        let mut intent_here = false;
        for _round in 0..8 {
            let before = leg.clone();
            let next = match self.step(&conn, &mut leg, version, intent_here).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(leg = %key, error = %e, "Leg step failed; it will be retried.");
                    let _ = self.store.release(&key, &self.owner).await;
                    return;
                }
            };
            // `begin_write` made an intent; any other step that leaves `writing` has sent it or given it up.
            intent_here = leg.state == LegState::Writing && leg.intent != before.intent;
            if leg == before && !dirty && matches!(next, Next::Release) {
                let _ = self.store.release(&key, &self.owner).await;
                return;
            }
            dirty = false;
            let release = matches!(next, Next::Release) || leg.is_done();
            match self.store.save_leg(&leg, version, &self.owner, release).await {
                Ok(v) => {
                    version = v;
                    if leg.outcome != stored_outcome {
                        self.record_outcome(&leg).await;
                        stored_outcome = leg.outcome;
                    }
                    if release {
                        return;
                    }
                }
                Err(StoreError::Conflict(_)) => {
                    // An event changed the leg under us. Reload and reconsider from what it says now.
                    intent_here = false;
                    match self.store.get_leg(&key).await {
                        Ok(Some(fresh)) => {
                            let wrote = leg.written_at.is_some() && before.written_at.is_none();
                            let mine = std::mem::replace(&mut leg, fresh.leg);
                            version = fresh.version;
                            stored_outcome = leg.outcome;
                            if !wrote && leg.attempts == mine.attempts && mine.unsent_attempts > leg.unsent_attempts {
                                // We learned that this attempt did not put our code on the leg: keep that, and
                                // never send the attempt after all (a new one starts with its own gate read).
                                leg.unsent_attempts = mine.unsent_attempts;
                                if leg.state == LegState::Writing {
                                    leg.state = LegState::Scheduled;
                                    leg.not_before = self.clock.now();
                                }
                                dirty = true;
                            }
                            if wrote && !leg.is_done() {
                                // The event that raced the write said nothing about a code (a repeated `leg
                                // ended`): our write stands, on the fresh record.
                                leg.written_at = mine.written_at;
                                leg.attempts = mine.attempts;
                                leg.finish(Outcome::Applied, mine.outcome_reason.clone(), self.clock.now());
                                dirty = true;
                            } else if wrote && !matches!(leg.outcome, Some(Outcome::Applied)) {
                                // Our write was accepted, yet an event finished the leg differently meanwhile:
                                // the agent coded in the instant between our gate read and our write.
                                let reason = "an agent code arrived while our write was in flight; check the leg";
                                leg.state = LegState::Writing;
                                leg.outcome = None;
                                leg.finish(Outcome::Review, Some(reason.to_string()), self.clock.now());
                                dirty = true;
                            }
                            if leg.is_done() && !wrote {
                                let _ = self.store.release(&key, &self.owner).await;
                                return;
                            }
                        }
                        _ => {
                            let _ = self.store.release(&key, &self.owner).await;
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(leg = %key, error = %e, "Could not save the leg; it will be retried.");
                    let _ = self.store.release(&key, &self.owner).await;
                    return;
                }
            }
        }
        let _ = self.store.release(&key, &self.owner).await;
    }

    /// One move of the leg. `version` is the stored version of `leg` as this worker last saved or loaded it.
    /// `intent_here` — see [`Self::gate_and_write`].
    async fn step(
        &self,
        conn: &ConnectionRuntime,
        leg: &mut LegRecord,
        version: i64,
        intent_here: bool,
    ) -> Result<Next, StoreError> {
        let now = self.clock.now();
        if leg.is_done() {
            return Ok(Next::Release);
        }
        let overdue = self.too_late(leg, now);
        match leg.state {
            LegState::Done => Ok(Next::Release),
            // Before the deadline checks: a closing leg is past its window by definition, and only its read is due.
            LegState::Closing if leg.not_before > now => Ok(Next::Release),
            LegState::Closing => self.read_final_code(conn, leg).await,
            LegState::Scheduled if overdue && leg.intent.is_some() => {
                // A write may have gone out (its answer lost): look before calling the leg expired. With
                // `overdue`, the gate path never writes.
                leg.state = LegState::Writing;
                self.gate_and_write(conn, leg, true, version, false).await
            }
            LegState::Open | LegState::Scheduled if overdue => {
                self.finish(leg, Outcome::Expired, "the ACW window closed before the code could be written").await;
                Ok(Next::Release)
            }
            LegState::Open => self.decide(conn, leg, now).await,
            LegState::Scheduled if leg.not_before > now => Ok(Next::Release),
            LegState::Scheduled => self.begin_write(conn, leg, now).await,
            LegState::Writing => self.gate_and_write(conn, leg, overdue, version, intent_here).await,
        }
    }

    /// Open → decided: `no_rule`, `shadow`, `review`, or `scheduled` for the write.
    async fn decide(&self, conn: &ConnectionRuntime, leg: &mut LegRecord, now: Timestamp) -> Result<Next, StoreError> {
        if !leg.ended_seen {
            // Only a code event was seen so far; nothing to decide until the leg's end is known.
            return Ok(Next::Release);
        }
        let catalog = match conn.catalog.get().await {
            Ok(c) => c,
            Err(e) => return Ok(self.platform_failure(leg, &e, "loading the catalog").await),
        };
        enrich(leg, &catalog);
        if leg.facts.acw == Some(AcwPolicy::None) {
            self.finish(leg, Outcome::NoAcw, "the leg's queue has no after-call work: there is nothing to code").await;
            return Ok(Next::Release);
        }
        let Some(m) = conn.rules.evaluate(&conn.name, &leg.facts) else {
            self.finish(leg, Outcome::NoRule, "no rule matched this leg").await;
            return Ok(Next::Release);
        };
        let decision = Decision {
            source: DecisionSource::Rule {
                index: m.index,
                name: m.rule_name.clone(),
                version: conn.rules.version().into(),
            },
            code_name: m.code.clone(),
            notes: m.notes.clone(),
            timing: m.timing,
            mode: m.mode,
            decided_at: now,
        };
        self.ledger(leg, "decision", serde_json::to_value(&decision).unwrap_or_default()).await;
        leg.decision = Some(decision);
        if m.mode == Mode::Shadow {
            let reason = format!("shadow rule {:?} would apply {:?}", m.rule_name, m.code);
            self.finish(leg, Outcome::Shadow, &reason).await;
            return Ok(Next::Release);
        }
        leg.state = LegState::Scheduled;
        conn.acw_estimates.estimate_for(self.store.as_ref(), leg).await;
        // A margin inside the deadline guard would never be written: keep at least two guards of room.
        let timing = match m.timing {
            Timing::BeforeTimeout { margin } => {
                let room = self.clock.clock_duration(self.deadline_guard * 2);
                Timing::BeforeTimeout { margin: margin.max(room) }
            }
            other => other,
        };
        leg.not_before = leg.write_time(timing, now);
        leg.updated_at = now;
        Ok(if leg.not_before <= now { Next::Continue } else { Next::Release })
    }

    /// Scheduled and due → resolve the code and persist the write intent (before any write).
    async fn begin_write(
        &self,
        conn: &ConnectionRuntime,
        leg: &mut LegRecord,
        now: Timestamp,
    ) -> Result<Next, StoreError> {
        let Some(decision) = leg.decision.clone() else {
            leg.state = LegState::Open;
            return Ok(Next::Continue);
        };
        let code = match self.resolve(conn, leg, &decision.code_name).await {
            Ok(code) => code,
            Err(Some(reason)) => {
                self.finish(leg, Outcome::Review, &reason).await;
                return Ok(Next::Release);
            }
            Err(None) => return Ok(Next::Release),
        };
        leg.intent = Some(WriteIntent { code_id: code.id, code_name: code.name, at: now });
        leg.state = LegState::Writing;
        leg.attempts += 1;
        leg.updated_at = now;
        Ok(Next::Continue)
    }

    /// Resolves a code name for this leg; on a miss, refreshes the catalog once. `Err(Some(reason))` is a review
    /// outcome; `Err(None)` a transient failure (the leg was rescheduled).
    async fn resolve(
        &self,
        conn: &ConnectionRuntime,
        leg: &mut LegRecord,
        name: &str,
    ) -> Result<CodeEntry, Option<String>> {
        let queue = leg.facts.queue_id.clone();
        let catalog = match conn.catalog.get().await {
            Ok(c) => c,
            Err(e) => {
                self.platform_failure(leg, &e, "loading the catalog").await;
                return Err(None);
            }
        };
        match catalog.resolve(name, queue.as_deref()) {
            Ok(code) => Ok(code.clone()),
            Err(first) => {
                let refreshed = conn.catalog.refresh().await.unwrap_or(catalog);
                refreshed.resolve(name, queue.as_deref()).cloned().map_err(|e| Some(resolve_reason(&e, &first)))
            }
        }
    }

    /// Writing: gate read, then the write. Also the crash-recovery path (a leg found in `writing`).
    ///
    /// `intent_here`: this worker made the current intent just before and has not sent it. A code equal to the
    /// intent's is taken for an earlier write of ours that landed only if one may have
    /// ([`LegRecord::ours_may_have_landed`]); otherwise it is the agent's choice.
    async fn gate_and_write(
        &self,
        conn: &ConnectionRuntime,
        leg: &mut LegRecord,
        overdue: bool,
        version: i64,
        intent_here: bool,
    ) -> Result<Next, StoreError> {
        let Some(intent) = leg.intent.clone() else {
            leg.state = LegState::Scheduled;
            return Ok(Next::Continue);
        };
        crate::chaos::point("worker.after_intent");
        // The budget orders live legs by this deadline and drops a request still waiting when it passes: the guard
        // keeps room for the request itself to land inside the window.
        let guard = self.clock.clock_duration(self.deadline_guard);
        let urgency = match (leg.deadline, leg.order_deadline()) {
            // An estimated window end earlier than the platform's deadline orders the calls; the deadline still
            // bounds them (`too_late`, the precondition).
            (hard, Some(order)) if Some(order) != hard => Urgency::Live { deadline: Some(order), estimated: true },
            (hard, _) => Urgency::Live { deadline: hard.map(|d| d.checked_sub(guard).unwrap_or(d)), estimated: false },
        };
        let read_started = tokio::time::Instant::now();
        let (read, calls) = attempts::collect(conn.platform.read_gate(leg, urgency)).await;
        // The gate read's attempts are written to the ledger after the write (or on the way out): nothing slower
        // than the precondition check may stand between the read and the write.
        // The answer describes the leg when the platform computed it; a slow answer may be stale (the agent may
        // have coded since). Only a fresh "no code" licenses a write.
        // Measured from when the read was sent (its last attempt), not from when it began waiting for the budget:
        // the platform computes the answer on receipt, and a read that queued behind other legs is not stale.
        let stale = match calls.iter().rev().find(|a| a.method == "GET") {
            Some(a) => Duration::from_millis(a.duration_ms) > self.gate_freshness,
            None => read_started.elapsed() > self.gate_freshness,
        };
        let Gate { code: current, window } = match read {
            Ok(gate) => gate,
            Err(e) if overdue => {
                self.record_attempts(leg, &calls).await;
                let reason = format!(
                    "the window closed and the platform could not be read to see whether our write landed: {e}"
                );
                self.finish(leg, Outcome::Review, &reason).await;
                return Ok(Next::Release);
            }
            Err(e) => {
                self.record_attempts(leg, &calls).await;
                leg.attempt_not_sent();
                return Ok(self.platform_failure(leg, &e, "reading the leg's current code").await);
            }
        };
        leg.observed_code = current.clone();
        // Checked once, after the gate read: waiting for the request budget may have used up the window.
        let late = overdue || self.too_late(leg, self.clock.now());
        if current.is_some() || stale || late || window != Window::Open {
            self.record_attempts(leg, &calls).await;
        }
        match (current, window) {
            (Some(code), _) if code == intent.code_id && leg.ours_may_have_landed(intent_here) => {
                // Only we write this leg's intent, and the intent is saved before every write: an earlier attempt
                // landed (we crashed or timed out before recording it). Do not write again.
                leg.written_at.get_or_insert(self.clock.now());
                self.finish(leg, Outcome::Applied, "an earlier write of ours had landed; not written again").await;
                return Ok(Next::Release);
            }
            (Some(code), _) => {
                self.finish_with_code_not_ours(conn, leg, code, "the leg already has code").await;
                return Ok(Next::Release);
            }
            (None, Window::Never) => {
                leg.attempt_not_sent();
                let reason = "the leg never entered after-call work (an agent-requested window its agent did not \
                              ask for, or a queue without ACW): there is no window to write into";
                self.finish(leg, Outcome::NoAcw, reason).await;
                return Ok(Next::Release);
            }
            (None, Window::Closed) => {
                leg.attempt_not_sent();
                self.finish(leg, Outcome::Expired, "the agent left after-call work without a code before our write")
                    .await;
                return Ok(Next::Release);
            }
            (None, _) if stale && !late => {
                leg.attempt_not_sent();
                leg.state = LegState::Scheduled;
                leg.not_before = self.clock.now();
                self.ledger(
                    leg,
                    "note",
                    serde_json::json!({"gate": "the gate read answered too slowly to trust; reading again"}),
                )
                .await;
                return Ok(Next::Release);
            }
            (None, _) if late => {
                self.finish(leg, Outcome::Expired, "the ACW window closed before the code could be written").await;
                return Ok(Next::Release);
            }
            (None, _) => {}
        }
        crate::chaos::point("worker.after_gate");
        let code = CodeEntry { id: intent.code_id.clone(), name: intent.code_name.clone() };
        let notes = leg.decision.as_ref().and_then(|d| d.notes.clone());
        // Checked once the write holds its budget permit: nothing about the leg changed since the gate read (no
        // event arrived: the agent did not code, the window did not close), and the window is still open.
        let unchanged = Unchanged { worker: self, leg, version };
        let gate_calls = calls;
        let (write, calls) =
            attempts::collect(conn.platform.write_code(leg, &code, notes.as_deref(), urgency, &unchanged)).await;
        self.record_attempts(leg, &gate_calls).await;
        self.record_attempts(leg, &calls).await;
        match write {
            Ok(()) => {
                crate::chaos::point("worker.after_write");
                let now = self.clock.now();
                leg.written_at = Some(now);
                metrics::counter!("wrapup_codes_applied_total", "connection" => conn.name.clone()).increment(1);
                let reason = format!("wrote {}", intent.code_name);
                self.finish(leg, Outcome::Applied, &reason).await;
                Ok(Next::Release)
            }
            Err(e) if e.class == ErrorClass::Permanent && e.status == Some(400) => {
                // Most likely the code is no longer valid for the leg (catalog changed): refresh and decide again
                // once; a second refusal is for a person.
                let _ = conn.catalog.refresh().await;
                leg.attempt_not_sent();
                if leg.attempts >= 2 {
                    self.finish(leg, Outcome::Review, &format!("the platform refused the code twice: {e}")).await;
                } else {
                    leg.state = LegState::Scheduled;
                    leg.not_before = self.clock.now();
                }
                Ok(Next::Release)
            }
            Err(e) if e.class == ErrorClass::WindowClosed => {
                // Refused because the agent closed or coded the leg in the instant before our write landed: read
                // what it ended with (agent_won, or expired if it was closed uncoded); never write again.
                self.ledger(
                    leg,
                    "note",
                    serde_json::json!({"write": "refused: the window is over", "error": e.to_string()}),
                )
                .await;
                leg.attempt_not_sent();
                to_closing(leg, self.clock.now());
                Ok(Next::Continue)
            }
            Err(e) if e.class == ErrorClass::PreconditionFailed => {
                // An event changed the leg while the write waited: hand it back; the next round starts from what
                // the event says (and reads the platform again if the leg is still open).
                self.ledger(leg, "note", serde_json::json!({"write": "not sent", "why": e.message})).await;
                leg.attempt_not_sent();
                leg.state = LegState::Scheduled;
                leg.not_before = self.clock.now();
                Ok(Next::Release)
            }
            Err(e) => {
                if matches!(e.class, ErrorClass::RateLimited { .. }) {
                    // Refused before it was processed: it did not land. (A timeout or a 5xx may have.)
                    leg.attempt_not_sent();
                }
                Ok(self.platform_failure(leg, &e, "writing the code").await)
            }
        }
    }

    /// Closing: the window is over; read the code the leg ended with and record whose it is. Never writes.
    async fn read_final_code(&self, conn: &ConnectionRuntime, leg: &mut LegRecord) -> Result<Next, StoreError> {
        let (read, calls) = attempts::collect(conn.platform.read_code(leg, Urgency::Reconcile)).await;
        self.record_attempts(leg, &calls).await;
        let now = self.clock.now();
        match read {
            Ok(Some(code))
                if leg.intent.as_ref().is_some_and(|i| i.code_id == code) && leg.ours_may_have_landed(false) =>
            {
                // The intent is saved before every write and some attempt may have landed: ours did (or the agent
                // chose the very same code, which leaves the leg as decided either way).
                leg.written_at.get_or_insert(now);
                self.finish(leg, Outcome::Applied, "the window closed with our code").await;
            }
            Ok(Some(code)) => {
                leg.observed_code = Some(code.clone());
                self.finish_with_code_not_ours(conn, leg, code, "the window closed with code").await;
            }
            Ok(None) => self.finish(leg, Outcome::Expired, "the window closed without a code").await,
            Err(e) => {
                let permanent =
                    matches!(e.class, ErrorClass::Permanent | ErrorClass::Auth | ErrorClass::Forbidden { .. });
                leg.closing_read_failures += 1;
                if permanent || leg.closing_read_failures >= MAX_CLOSING_READ_FAILURES {
                    let reason = format!("the window closed and the code it ended with could not be read: {e}");
                    self.finish(leg, Outcome::Review, &reason).await;
                    return Ok(Next::Release);
                }
                let wait = self.retry.delay(leg.closing_read_failures, rate_limit_floor(&e.class));
                leg.not_before = now.checked_add(self.clock.clock_duration(wait)).unwrap_or(now);
                leg.updated_at = now;
                self.ledger(
                    leg,
                    "note",
                    serde_json::json!({"retry": "reading the closed leg's final code", "class": e.class.as_str(),
                        "error": e.to_string(), "retry_in_ms": wait.as_millis() as u64}),
                )
                .await;
            }
        }
        Ok(Next::Release)
    }

    /// The leg holds `code`, which is not ours: the platform's own timeout code is `expired` (the window closed);
    /// any other is `agent_won`, named from the catalog. `context` starts the reason ("… has code X").
    async fn finish_with_code_not_ours(
        &self,
        conn: &ConnectionRuntime,
        leg: &mut LegRecord,
        code: String,
        context: &str,
    ) {
        if conn.platform.is_system_code(&code) {
            self.finish(leg, Outcome::Expired, "the platform's ACW timeout stamped its system code").await;
            return;
        }
        let name = conn.catalog.get().await.ok().and_then(|c| c.code_by_id(&code).map(|c| c.name.clone()));
        self.finish(leg, Outcome::AgentWon, &format!("{context} {}", name.unwrap_or(code))).await;
    }

    /// Whether the window is closed, or closes too soon for a write to land inside it.
    fn too_late(&self, leg: &LegRecord, now: Timestamp) -> bool {
        let guard = self.clock.clock_duration(self.deadline_guard);
        leg.deadline.is_some_and(|d| d.checked_sub(guard).unwrap_or(d) <= now)
    }

    /// Maps a classified failure to the leg's next step.
    async fn platform_failure(&self, leg: &mut LegRecord, e: &PlatformError, doing: &str) -> Next {
        let now = self.clock.now();
        match &e.class {
            ErrorClass::Retryable
            | ErrorClass::Conflict
            | ErrorClass::PreconditionFailed
            | ErrorClass::RateLimited { .. } => {}
            ErrorClass::WindowClosed => {
                to_closing(leg, now);
                return Next::Release;
            }
            ErrorClass::DeadlinePassed => {
                self.finish(
                    leg,
                    Outcome::Expired,
                    &format!("the ACW window closed while {doing} waited for the request budget"),
                )
                .await;
                return Next::Release;
            }
            ErrorClass::Forbidden { permission } => {
                let reason = match permission {
                    Some(p) => format!("{doing} was forbidden: the OAuth client lacks permission {p}"),
                    None => format!("{doing} was forbidden (403): {e}"),
                };
                self.finish(leg, Outcome::Review, &reason).await;
                return Next::Release;
            }
            ErrorClass::Auth => {
                self.finish(leg, Outcome::Review, &format!("{doing} failed authentication: {e}")).await;
                return Next::Release;
            }
            ErrorClass::Permanent => {
                self.finish(leg, Outcome::Review, &format!("{doing} was rejected: {e}")).await;
                return Next::Release;
            }
        };
        let retries = leg.attempts.max(1);
        let wait = self.retry.delay(retries, rate_limit_floor(&e.class));
        let at = now.checked_add(self.clock.clock_duration(wait)).unwrap_or(now);
        if let Some(deadline) = leg.deadline {
            if at >= deadline && leg.state != LegState::Writing {
                self.finish(leg, Outcome::Expired, &format!("the window closes before a retry is possible: {e}")).await;
                return Next::Release;
            }
        }
        // A leg in `writing` goes back to `scheduled` (intent kept): the next attempt starts with a gate read,
        // which tells whether an ambiguous write landed.
        if leg.state == LegState::Writing {
            leg.state = LegState::Scheduled;
        }
        leg.not_before = at;
        leg.updated_at = now;
        self.ledger(
            leg,
            "note",
            serde_json::json!({"retry": doing, "class": e.class.as_str(), "error": e.to_string(), "retry_in_ms": wait.as_millis() as u64}),
        )
        .await;
        Next::Release
    }

    /// Ends the leg in memory; the outcome is recorded (ledger, metric) once the save that stores it succeeds.
    async fn finish(&self, leg: &mut LegRecord, outcome: Outcome, reason: &str) {
        leg.finish(outcome, Some(reason.to_string()), self.clock.now());
    }

    async fn record_outcome(&self, leg: &LegRecord) {
        let Some(outcome) = leg.outcome else { return };
        metrics::counter!("wrapup_outcomes_total", "connection" => leg.key.connection.clone(), "outcome" => outcome.as_str())
            .increment(1);
        let detail = serde_json::json!({"outcome": outcome.as_str(), "reason": leg.outcome_reason});
        self.ledger(leg, "outcome", detail).await;
    }

    async fn record_attempts(&self, leg: &LegRecord, calls: &[ApiAttempt]) {
        for a in calls {
            self.ledger(leg, "attempt", attempts::ledger_detail(a)).await;
        }
    }

    async fn ledger(&self, leg: &LegRecord, kind: &str, detail: serde_json::Value) {
        let entry = LedgerEntry { at: self.clock.now(), kind: kind.to_string(), detail };
        if let Err(e) = self.store.append_ledger(&leg.key, &entry).await {
            tracing::warn!(leg = %leg.key, error = %e, "Could not append to the ledger.");
        }
    }
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
        if self.worker.too_late(self.leg, self.worker.clock.now()) {
            return Err("the ACW window closes before the write could land".into());
        }
        match self.worker.store.get_leg(&self.leg.key).await {
            Ok(Some(current)) if current.version == self.version => Ok(()),
            Ok(Some(_)) => Err("the leg changed (an event arrived) while the write waited for the budget".into()),
            Ok(None) => Err("the leg is no longer in the store".into()),
            Err(e) => Err(format!("the leg could not be re-read: {e}")),
        }
    }
}

/// The earliest a retry may go after a failure of `class`: a 429's `Retry-After` (one second when it sent none).
fn rate_limit_floor(class: &ErrorClass) -> Option<Duration> {
    match class {
        ErrorClass::RateLimited { retry_after } => Some(retry_after.unwrap_or(Duration::from_secs(1))),
        _ => None,
    }
}

/// The window is over (the platform refused the write as too late): no write from here, the final code is read at
/// once.
fn to_closing(leg: &mut LegRecord, now: Timestamp) {
    leg.state = LegState::Closing;
    leg.not_before = now;
    leg.updated_at = now;
}

/// Fills what the event did not carry from the catalog: queue name, ACW timeout (and so the deadline).
pub fn enrich(leg: &mut LegRecord, catalog: &Catalog) {
    if let Some(queue) = leg.facts.queue_id.as_deref().and_then(|q| catalog.queue_by_id(q)) {
        if leg.facts.queue_name.is_none() {
            leg.facts.queue_name = Some(queue.name.clone());
        }
        if leg.facts.acw_timeout_ms.is_none() {
            leg.facts.acw_timeout_ms = queue.acw_timeout_ms;
        }
        if leg.facts.acw.is_none() {
            leg.facts.acw = queue.acw;
        }
        leg.refresh_deadline();
    }
}

fn resolve_reason(e: &ResolveError, _first: &ResolveError) -> String {
    format!("the decided code cannot be used: {e}")
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
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;
    use wrapup_connectors::Precondition;
    use wrapup_core::clock::ScaledClock;
    use wrapup_core::{Event, EventKind, LegFacts, LegKey, Platform};

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
        };
        let worker = Worker {
            store,
            clock,
            connections: [("cx".to_string(), Arc::new(conn))].into(),
            owner: "w".into(),
            retry: RetryPolicy { base: Duration::from_millis(1), max: Duration::from_millis(2) },
            deadline_guard: Duration::from_millis(500),
            gate_freshness: Duration::from_secs(1),
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
