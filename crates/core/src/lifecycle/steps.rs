//! The worker's moves on a leg, as pure transitions.
//!
//! A worker holds a claimed leg and feeds this module one [`Input`] at a time: `Due` when it takes the leg up, then
//! the answer of each platform call the previous move asked for. [`step`] changes the leg and returns the
//! [`Effect`]s to carry out, in order: ledger lines to save with the leg, a save that must be durable before the
//! next call (the write-ahead intent), the next platform call, a catalog refresh, or the release of the leg (saved,
//! back to the queue until `not_before`, or finished). The worker performs effects and nothing else: it never sets
//! a leg's state itself. Together with [`super::apply_event`] (platform events, applied at intake) these are all
//! the ways a leg changes.
//!
//! ```text
//!  Due ─ open ──(decide: catalog + rules)──> no_rule | shadow | no_acw | review                     ──> Release
//!          └─> scheduled ─(due)─> resolve code ─> writing (intent) ─ SaveBeforeCall ─ Call(GateRead)
//!  GateRead ─ a code ──────────────────────────> agent_won | applied (ours landed) | expired (system) ──> Release
//!           ─ window never / closed ────────────> no_acw | expired                                     ──> Release
//!           ─ open, no code, in time ───────────> Call(Write)          (no save between read and write)
//!  Written  ─ ok ───> confirming (event or read-back: applied; not kept: once more, then review)
//!           ─ refused: window over ─> closing ─> Call(ReadFinalCode) │ failure ─> retry/review
//!  FinalCode ─ ours ─> applied │ other ─> agent_won (agent_changed after our 2xx) │ none ─> expired │ failure ─> retry
//! ```
//!
//! Every finish appends exactly one `outcome` line (see [`outcome_line`]); the one change of a finished leg's
//! outcome (`applied` → `agent_changed`, or an event's ending overruled by our accepted write) appends an
//! `outcome_changed` line instead.

use super::{Decision, DecisionSource, ExternalDecision, LegRecord, LegState, WriteIntent};
use crate::catalog::{AcwPolicy, Catalog, CodeEntry};
use crate::failure::ErrorClass;
use crate::outcome::{Mode, Outcome, Timing};
use crate::rules::{DecideFrom, DecideSpec, Fallback, RuleMatch, RuleSet};
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use std::time::Duration;

/// Failed reads of a closed leg's final code before it becomes a `review` (with the retry backoff, minutes of a
/// platform that answers nothing).
pub const MAX_CLOSING_READ_FAILURES: u32 = 12;

/// A failed platform call, as the machine sees it: its class and a sentence for the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: ErrorClass,
    /// The HTTP status, when an answer arrived.
    pub status: Option<u16>,
    /// What went wrong, without secrets (the connector's error sentence).
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Whether the leg's window can take a write, as far as the gate read can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Open: the read showed it open, or the queue's mode keeps it open until a code or the deadline ends it.
    Open,
    /// It was open and is over (the agent left it, coded it, or the platform timed it out).
    Closed,
    /// The leg never had a window.
    Never,
}

/// What the gate read before a write found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateReading {
    /// The code on the leg, provisional included.
    pub code: Option<String>,
    pub window: Window,
}

impl GateReading {
    /// A read of the code only, on a leg whose window only a code or the deadline ends.
    pub fn code_only(code: Option<String>) -> Self {
        Self { code, window: Window::Open }
    }
}

/// The world a move is made in: what the worker knows besides the leg.
pub struct Ctx<'a> {
    pub now: Timestamp,
    pub connection: &'a str,
    /// The connection's code catalog, or why it could not be had.
    pub catalog: Result<&'a Catalog, &'a Failure>,
    pub rules: &'a RuleSet,
    /// The estimated length of an optional or agent-requested window on this leg's queue.
    pub acw_estimate: SignedDuration,
    /// Clock time before a deadline in which no write is sent (its own latency would land it outside the window).
    pub guard: SignedDuration,
    /// Clock time after a write answered 2xx within which the platform's own confirmation is awaited before the
    /// code is read back.
    pub confirm_within: SignedDuration,
    /// Clock time to wait before the `n`-th retry (1-based), at least `floor` (a `Retry-After`).
    pub backoff: &'a dyn Fn(u32, Option<Duration>) -> SignedDuration,
    /// Whether a code id is one the platform stamps by itself when a window times out.
    pub is_system_code: &'a dyn Fn(&str) -> bool,
    /// A CRM decision the store kept for this leg's conversation (or this leg) before the leg was known; the worker
    /// looks it up for a leg not decided yet, on connections that take CRM decisions.
    pub pending_decision: Option<&'a ExternalDecision>,
}

/// A decision hook's answer: the code by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookAnswer {
    pub code_name: String,
    pub notes: Option<String>,
}

/// Whether a leg waits for an external decision, or decides without one (and why).
enum Waiting {
    Yes,
    No { why: String },
}

/// What the worker tells the machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The worker holds the leg and it is due: make the next move.
    Due,
    /// The answer of the gate read. `stale`: it took so long that the leg may have changed since the platform
    /// computed it.
    GateRead { answer: Result<GateReading, Failure>, stale: bool },
    /// The answer of the write.
    Written(Result<(), Failure>),
    /// The answer of the read of a closed leg's final code.
    FinalCode(Result<Option<String>, Failure>),
    /// The catalog was refreshed (the context now carries the new one).
    CatalogRefreshed,
    /// The leg's participant attributes, read for rules that match on them.
    AttributesRead(Result<std::collections::BTreeMap<String, String>, Failure>),
    /// The answer of decision hook `hook`: a code, no decision (`None`), or a failure.
    HookAnswered { hook: String, answer: Result<Option<HookAnswer>, Failure> },
}

/// A platform call the worker is to make next; its answer is the next [`Input`].
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// The code on the leg and its window (answer: [`Input::GateRead`]).
    GateRead,
    /// Write `code` (answer: [`Input::Written`]); only if the leg is unchanged since the gate read when the request
    /// is about to go out, and its window still has room.
    Write { code: CodeEntry, notes: Option<String> },
    /// The code a closed leg ended with (answer: [`Input::FinalCode`]).
    ReadFinalCode,
    /// Refresh the catalog from the platform (answer: [`Input::CatalogRefreshed`]).
    RefreshCatalog,
    /// Read the leg's participant attributes (answer: [`Input::AttributesRead`]).
    ReadAttributes,
    /// Ask decision hook `hook` for the leg's code on behalf of rule `rule`, taking at most `within` (answer:
    /// [`Input::HookAnswered`]).
    AskHook { hook: String, rule: String, within: SignedDuration },
}

/// What the worker is to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// A line for the leg's ledger, saved with the leg.
    Ledger { kind: &'static str, detail: Value },
    /// Save the leg (and the lines so far) now, keeping the lease: the next call may only go out once this state is
    /// durable.
    SaveBeforeCall,
    /// Make this call and feed its answer back.
    Call(Call),
    /// Refresh the catalog in the background (a code the platform refused); no answer is awaited.
    RefreshCatalog,
    /// Save the leg (and the lines) and hand it back: it waits for `not_before` or an event, or it is done.
    Release,
}

/// One move: changes `leg` and returns what to do.
pub fn step(leg: &mut LegRecord, input: Input, ctx: &Ctx<'_>) -> Vec<Effect> {
    let mut m = Move { leg, ctx, out: Vec::new() };
    match input {
        Input::Due => m.due(),
        Input::GateRead { answer, stale } => m.gate(answer, stale),
        Input::Written(answer) => m.written(answer),
        Input::FinalCode(answer) => m.final_code(answer),
        Input::CatalogRefreshed => m.begin_write(true),
        Input::AttributesRead(Ok(attributes)) => {
            for (k, v) in attributes {
                m.leg.facts.attributes.entry(k).or_insert(v);
            }
            m.leg.attributes_read = true;
            m.due()
        }
        Input::AttributesRead(Err(f)) => m.platform_failure(&f, "reading the leg's attributes"),
        Input::HookAnswered { hook, answer } => m.hook_answered(&hook, answer),
    }
    m.out
}

/// The `outcome` (or `outcome_changed`) line for a leg whose outcome went from `before` to what it is now; `None`
/// when it did not change.
pub fn outcome_line(before: Option<Outcome>, leg: &LegRecord) -> Option<(&'static str, Value)> {
    let now = leg.outcome?;
    if before == Some(now) {
        return None;
    }
    let detail = json!({"outcome": now.as_str(), "reason": leg.outcome_reason});
    Some(match before {
        None => ("outcome", detail),
        Some(previous) => (
            "outcome_changed",
            json!({"outcome": now.as_str(), "replaces": previous.as_str(), "reason": leg.outcome_reason}),
        ),
    })
}

/// A leg of a connection the service does not run: a person has to look.
pub fn unconfigured(leg: &mut LegRecord, now: Timestamp) -> Vec<Effect> {
    let before = leg.outcome;
    let reason = format!("connection {:?} is not configured", leg.key.connection);
    leg.finish(Outcome::Review, Some(reason), now);
    let mut out: Vec<Effect> =
        outcome_line(before, leg).map(|(kind, detail)| Effect::Ledger { kind, detail }).into_iter().collect();
    out.push(Effect::Release);
    out
}

/// Takes a save that an event overtook: `mine` is the leg as this worker changed it from `before`, `fresh` the
/// stored leg the event made. Returns the leg to go on with and whether it differs from `fresh` (then it must be
/// saved), with the lines that explain the difference.
pub fn after_conflict(
    before: &LegRecord,
    mine: &LegRecord,
    fresh: LegRecord,
    now: Timestamp,
) -> (LegRecord, bool, Vec<Effect>) {
    let wrote = mine.written_at.is_some() && before.written_at.is_none();
    let mut leg = fresh;
    let stored_outcome = leg.outcome;
    let mut dirty = false;
    if !wrote && leg.attempts == mine.attempts && mine.unsent_attempts > leg.unsent_attempts {
        // We learned that this attempt did not put our code on the leg: keep that, and never send the attempt
        // after all (a new one starts with its own gate read).
        leg.unsent_attempts = mine.unsent_attempts;
        if leg.state == LegState::Writing {
            leg.state = LegState::Scheduled;
            leg.not_before = now;
        }
        dirty = true;
    }
    if wrote && !leg.is_done() {
        // The event that raced the write said nothing about a code (a repeated `leg ended`): our write stands.
        leg.written_at = mine.written_at;
        leg.attempts = mine.attempts;
        leg.finish(Outcome::Applied, mine.outcome_reason.clone(), now);
        dirty = true;
    } else if wrote && leg.outcome != Some(Outcome::Applied) {
        // Our write was accepted, yet an event ended the leg otherwise meanwhile: the agent coded (or the window
        // closed) in the instant between our gate read and our write.
        leg.written_at = mine.written_at;
        leg.overrule(Outcome::Review, "an agent code arrived while our write was in flight; check the leg", now);
        dirty = true;
    }
    let lines = outcome_line(stored_outcome, &leg).map(|(kind, detail)| Effect::Ledger { kind, detail });
    (leg, dirty, lines.into_iter().collect())
}

/// A move in progress: the leg, the context, and the effects so far.
struct Move<'a, 'c> {
    leg: &'a mut LegRecord,
    ctx: &'a Ctx<'c>,
    out: Vec<Effect>,
}

impl Move<'_, '_> {
    fn line(&mut self, kind: &'static str, detail: Value) {
        self.out.push(Effect::Ledger { kind, detail });
    }

    /// Ends the leg with its one `outcome` line, and releases it.
    fn finish(&mut self, outcome: Outcome, reason: &str) {
        let before = self.leg.outcome;
        self.leg.finish(outcome, Some(reason.to_string()), self.ctx.now);
        if let Some((kind, detail)) = outcome_line(before, self.leg) {
            self.line(kind, detail);
        }
        self.out.push(Effect::Release);
    }

    fn release(&mut self) {
        self.out.push(Effect::Release);
    }

    fn call(&mut self, call: Call) {
        self.out.push(Effect::Call(call));
    }

    /// Whether the window is closed, or closes too soon for a write to land inside it.
    fn too_late(&self) -> bool {
        self.leg.deadline.is_some_and(|d| d.checked_sub(self.ctx.guard).unwrap_or(d) <= self.ctx.now)
    }

    fn due(&mut self) {
        let now = self.ctx.now;
        if self.leg.is_done() {
            return self.release();
        }
        let overdue = self.too_late();
        match self.leg.state {
            LegState::Done => self.release(),
            // Before the deadline checks: a closing leg is past its window by definition; only its read is due.
            LegState::Closing if self.leg.not_before > now => self.release(),
            LegState::Closing => self.call(Call::ReadFinalCode),
            // No confirmation came in time: read our write back.
            LegState::Confirming if self.leg.not_before > now => self.release(),
            LegState::Confirming => self.call(Call::ReadFinalCode),
            LegState::Scheduled if overdue && self.leg.intent.is_some() => {
                // A write may have gone out (its answer lost): look before calling the leg expired. Past the
                // deadline the gate never licenses a write; the look is an attempt of its own, so that nothing it
                // finds can count the earlier one (which may have landed) as not sent.
                self.new_attempt();
                self.call(Call::GateRead);
            }
            LegState::Open | LegState::Scheduled if overdue => {
                self.finish(Outcome::Expired, "the ACW window closed before the code could be written")
            }
            LegState::Open => self.decide(),
            LegState::Scheduled if self.leg.not_before > now => self.release(),
            LegState::Scheduled => self.begin_write(false),
            // A write intent found on a claimed leg: a worker died or gave up after saving it, and its write may
            // have gone out. What follows is a new attempt (made durable first, so that each attempt sends at most
            // one write), and it starts with a read that recognises our own code.
            LegState::Writing => {
                self.new_attempt();
                self.call(Call::GateRead)
            }
        }
    }

    /// Open → `no_rule`, `shadow`, `no_acw`, `review`, or `scheduled` for the write (and on at once when due).
    fn decide(&mut self) {
        let now = self.ctx.now;
        if !self.leg.ended_seen {
            // Only a code event was seen so far; nothing to decide until the leg's end is known.
            return self.release();
        }
        let catalog = match self.ctx.catalog {
            Ok(c) => c,
            Err(f) => return self.platform_failure(&f.clone(), "loading the catalog"),
        };
        enrich(self.leg, catalog);
        if self.leg.facts.acw == Some(AcwPolicy::None) {
            return self.finish(Outcome::NoAcw, "the leg's queue has no after-call work: there is nothing to code");
        }
        if !self.leg.attributes_read && self.ctx.rules.needs_attributes(self.ctx.connection, self.leg.facts.platform) {
            // A rule matches on participant attributes, which the event that ended the leg does not carry.
            return self.call(Call::ReadAttributes);
        }
        let matched = self.ctx.rules.evaluate(self.ctx.connection, &self.leg.facts);
        let external = self.external_decision();
        let decision = match (&matched, external) {
            (Some(m), external) if m.mode == Mode::Shadow => {
                // Shadow mode measures the rule against agents: nothing is written, whoever decided.
                let decision = self.rule_decision(m, &m.code, None);
                self.record_decision(decision);
                let mut reason = format!("shadow rule {:?} would apply {:?}", m.rule_name, m.code);
                if let Some(e) = external {
                    reason.push_str(&format!(" (a decision from {} named {:?})", e.source, e.code_name));
                }
                return self.finish(Outcome::Shadow, &reason);
            }
            (_, Some(e)) => Decision {
                source: DecisionSource::External {
                    source: e.source.clone(),
                    idempotency_key: e.idempotency_key.clone(),
                    arrived_at: e.arrived_at,
                    rule: matched.as_ref().map(|m| m.rule_name.clone()),
                },
                code_name: e.code_name.clone(),
                notes: e.notes.clone(),
                timing: matched.as_ref().map_or(Timing::Immediate, |m| m.timing),
                mode: Mode::Enforce,
                decided_at: now,
                fallback: None,
            },
            (None, None) => return self.finish(Outcome::NoRule, "no rule matched this leg"),
            (Some(m), None) => match &m.decide {
                None => self.rule_decision(m, &m.code, None),
                Some(spec) => match self.await_external(&m.rule_name, spec) {
                    Waiting::Yes => return,
                    Waiting::No { why } => {
                        let code = match &spec.fallback {
                            Fallback::Rule => m.code.clone(),
                            Fallback::Code(name) => name.clone(),
                        };
                        self.rule_decision(m, &code, Some(why))
                    }
                },
            },
        };
        self.schedule(decision)
    }

    /// Records `decision` and schedules its write (at once when due).
    fn schedule(&mut self, decision: Decision) {
        let now = self.ctx.now;
        let timing = decision.timing;
        self.record_decision(decision);
        self.leg.state = LegState::Scheduled;
        if matches!(self.leg.facts.acw, Some(AcwPolicy::Optional | AcwPolicy::AgentRequested)) {
            // Intake set the estimate when its catalog knew the queue; otherwise it is set now.
            if self.leg.facts.acw_estimate_ms.is_none() {
                self.leg.facts.acw_estimate_ms = u64::try_from(self.ctx.acw_estimate.as_millis()).ok();
            }
            self.leg.refresh_deadline();
        }
        // A margin inside the deadline guard would never be written: keep at least two guards of room.
        let timing = match timing {
            Timing::BeforeTimeout { margin } => Timing::BeforeTimeout { margin: margin.max(self.ctx.guard * 2) },
            other => other,
        };
        self.leg.not_before = self.leg.write_time(timing, now);
        self.leg.updated_at = now;
        if self.leg.not_before <= now {
            self.begin_write(false)
        } else {
            self.release()
        }
    }

    /// The decision of rule `m` with `code` (its own, or its fallback's when `fallback` says why).
    fn rule_decision(&self, m: &RuleMatch, code: &str, fallback: Option<String>) -> Decision {
        Decision {
            source: DecisionSource::Rule {
                index: m.index,
                name: m.rule_name.clone(),
                version: self.ctx.rules.version().into(),
            },
            code_name: code.to_string(),
            notes: m.notes.clone(),
            timing: m.timing,
            mode: m.mode,
            decided_at: self.ctx.now,
            fallback,
        }
    }

    fn record_decision(&mut self, decision: Decision) {
        self.line("decision", serde_json::to_value(&decision).unwrap_or_default());
        self.leg.decision = Some(decision);
    }

    /// The external decision that decides this leg, if any: the one on the leg, or one the store kept for its
    /// conversation before the leg was known (adopted onto the leg, with a line that says where it came from). An
    /// expired one decides nothing.
    fn external_decision(&mut self) -> Option<ExternalDecision> {
        if self.leg.external.is_none() {
            let pending = self.ctx.pending_decision?.clone();
            self.line("external_decision", json!({"adopted": "sent before the leg was known", "decision": pending}));
            self.leg.external = Some(pending);
        }
        let decision = self.leg.external.clone()?;
        if decision.expires_at.is_some_and(|at| at <= self.ctx.now) {
            self.line(
                "note",
                json!({"external_decision": "expired before it could decide the leg", "decision": decision}),
            );
            self.leg.external = None;
            return None;
        }
        Some(decision)
    }

    /// A rule asks for an external decision: ask its hook, or wait for the CRM, until the rule's `wait` is over (and
    /// never later than leaves room for the write in the window).
    fn await_external(&mut self, rule: &str, spec: &DecideSpec) -> Waiting {
        let now = self.ctx.now;
        let ended = self.leg.facts.ended_at.unwrap_or(self.leg.created_at);
        let mut until = ended.checked_add(spec.wait).unwrap_or(ended);
        if let Some(deadline) = self.leg.deadline {
            until = until.min(deadline.checked_sub(self.ctx.guard * 3).unwrap_or(deadline));
        }
        if now >= until {
            let why = match (&spec.from, self.leg.hook_failures) {
                (DecideFrom::Crm, _) => "no CRM decision arrived in time".to_string(),
                (DecideFrom::Hook(h), 0) => format!("decision hook {h:?} did not answer in time"),
                (DecideFrom::Hook(h), n) => format!("decision hook {h:?} failed {n} time(s)"),
            };
            return Waiting::No { why };
        }
        match &spec.from {
            DecideFrom::Hook(hook) => {
                let within = until.duration_since(now);
                self.call(Call::AskHook { hook: hook.clone(), rule: rule.to_string(), within });
                Waiting::Yes
            }
            DecideFrom::Crm => {
                if self.leg.awaiting_decision_until != Some(until) {
                    self.leg.awaiting_decision_until = Some(until);
                    self.line("note", json!({"waiting": "for a CRM decision", "until": until}));
                }
                self.leg.not_before = until;
                self.leg.updated_at = now;
                self.release();
                Waiting::Yes
            }
        }
    }

    /// The rule's decision hook answered.
    fn hook_answered(&mut self, hook: &str, answer: Result<Option<HookAnswer>, Failure>) {
        let now = self.ctx.now;
        match answer {
            Ok(Some(a)) => {
                self.leg.external = Some(ExternalDecision {
                    code_name: a.code_name,
                    notes: a.notes,
                    source: format!("hook:{hook}"),
                    idempotency_key: None,
                    arrived_at: now,
                    expires_at: None,
                });
                self.decide()
            }
            Ok(None) => {
                // The hook has no decision for this leg: the fallback decides now rather than after the wait.
                self.line("note", json!({"hook": hook, "answer": "no decision"}));
                self.leg.awaiting_decision_until = Some(now);
                self.decide_without_external(&format!("decision hook {hook:?} had no decision"))
            }
            Err(f) if matches!(f.class, ErrorClass::Permanent | ErrorClass::Auth | ErrorClass::Forbidden { .. }) => {
                // Asking again would be refused again: the fallback decides now.
                self.leg.hook_failures += 1;
                self.leg.awaiting_decision_until = Some(now);
                self.decide_without_external(&format!("decision hook {hook:?} refused the request: {f}"))
            }
            Err(f) => {
                self.leg.hook_failures += 1;
                let wait = (self.ctx.backoff)(self.leg.hook_failures, rate_limit_floor(&f.class));
                self.line(
                    "note",
                    json!({"retry": format!("asking decision hook {hook:?}"), "class": f.class.as_str(),
                           "error": f.message, "retry_in_ms": wait.as_millis() as i64}),
                );
                self.leg.not_before = now.checked_add(wait).unwrap_or(now);
                self.leg.updated_at = now;
                self.release()
            }
        }
    }

    /// Decides with the rule's fallback at once (a hook said it has no decision).
    fn decide_without_external(&mut self, why: &str) {
        let Some(m) = self.ctx.rules.evaluate(self.ctx.connection, &self.leg.facts) else {
            return self.finish(Outcome::NoRule, "no rule matched this leg");
        };
        let code = match m.decide.as_ref().map(|d| &d.fallback) {
            Some(Fallback::Code(name)) => name.clone(),
            _ => m.code.clone(),
        };
        let decision = self.rule_decision(&m, &code, Some(why.to_string()));
        self.schedule(decision)
    }

    /// Scheduled and due → resolve the code and make the write intent durable before anything is read or sent.
    /// `refreshed`: the catalog was just refreshed after the code did not resolve.
    fn begin_write(&mut self, refreshed: bool) {
        let now = self.ctx.now;
        let Some(decision) = self.leg.decision.clone() else {
            self.leg.state = LegState::Open;
            return self.decide();
        };
        let catalog = match self.ctx.catalog {
            Ok(c) => c,
            Err(f) => return self.platform_failure(&f.clone(), "loading the catalog"),
        };
        let code = match catalog.resolve(&decision.code_name, self.leg.facts.queue_id.as_deref()) {
            Ok(code) => code.clone(),
            // The catalog may be older than the platform's: read it again once before giving up on the code.
            Err(_) if !refreshed => return self.call(Call::RefreshCatalog),
            Err(e) => return self.finish(Outcome::Review, &format!("the decided code cannot be used: {e}")),
        };
        self.leg.intent = Some(WriteIntent { code_id: code.id, code_name: code.name, at: now });
        self.leg.state = LegState::Writing;
        self.leg.attempts += 1;
        self.leg.updated_at = now;
        self.out.push(Effect::SaveBeforeCall);
        self.call(Call::GateRead);
    }

    /// The gate read answered: write, or end the leg with what the read found.
    fn gate(&mut self, answer: Result<GateReading, Failure>, stale: bool) {
        let Some(intent) = self.leg.intent.clone() else {
            self.leg.state = LegState::Scheduled;
            return self.begin_write(false);
        };
        let late = self.too_late();
        let reading = match answer {
            Ok(r) => r,
            Err(f) if late => {
                let reason = format!(
                    "the window closed and the platform could not be read to see whether our write landed: {f}"
                );
                return self.finish(Outcome::Review, &reason);
            }
            Err(f) => {
                self.leg.attempt_not_sent();
                return self.platform_failure(&f, "reading the leg's current code");
            }
        };
        self.leg.observed_code = reading.code.clone();
        self.leg.read_at = Some(self.ctx.now);
        match (reading.code, reading.window) {
            // Every gate read belongs to an attempt that has sent nothing yet (see `new_attempt`): our code here can
            // only be an earlier attempt's, and only if one of them may have landed.
            (Some(code), _) if code == intent.code_id && self.leg.ours_may_have_landed(true) => {
                // Only we write this leg's intent, and the intent is saved before every write: an earlier attempt
                // landed (we crashed or timed out before recording it). Do not write again.
                self.leg.written_at.get_or_insert(self.ctx.now);
                self.leg.confirmed = true;
                self.finish(Outcome::Applied, "an earlier write of ours had landed; not written again")
            }
            (Some(code), _) => self.code_not_ours(&code, "the leg already has code"),
            (None, Window::Never) => {
                self.leg.attempt_not_sent();
                self.finish(
                    Outcome::NoAcw,
                    "the leg never entered after-call work (an agent-requested window its agent did not ask for, or \
                     a queue without ACW): there is no window to write into",
                )
            }
            (None, Window::Closed) => {
                self.leg.attempt_not_sent();
                self.finish(Outcome::Expired, "the agent left after-call work without a code before our write")
            }
            (None, Window::Open) if stale && !late => {
                // The answer describes the leg when the platform computed it; a slow one may be stale (the agent
                // may have coded since). Only a fresh "no code" licenses a write.
                self.leg.attempt_not_sent();
                self.leg.state = LegState::Scheduled;
                self.leg.not_before = self.ctx.now;
                self.line("note", json!({"gate": "the gate read answered too slowly to trust; reading again"}));
                self.release()
            }
            (None, Window::Open) if late => {
                self.finish(Outcome::Expired, "the ACW window closed before the code could be written")
            }
            (None, Window::Open) => {
                let code = CodeEntry { id: intent.code_id, name: intent.code_name };
                let notes = self.leg.decision.as_ref().and_then(|d| d.notes.clone());
                self.call(Call::Write { code, notes })
            }
        }
    }

    /// The write answered.
    fn written(&mut self, answer: Result<(), Failure>) {
        let now = self.ctx.now;
        let name = self.leg.intent.as_ref().map(|i| i.code_name.clone()).unwrap_or_default();
        match answer {
            Ok(()) => {
                // Accepted is not yet applied: the platform confirms (its event) or a read-back shows our code.
                self.leg.written_at = Some(now);
                self.leg.state = LegState::Confirming;
                self.leg.not_before = now.checked_add(self.ctx.confirm_within).unwrap_or(now);
                self.leg.updated_at = now;
                self.line("note", json!({"write": format!("wrote {name}; waiting for the platform to confirm it")}));
                self.release()
            }
            Err(f) if f.class == ErrorClass::Permanent && f.status == Some(400) => {
                // Most likely the code is no longer valid for the leg (the catalog changed): refresh it and decide
                // again once; a second refusal is for a person.
                self.out.push(Effect::RefreshCatalog);
                self.leg.attempt_not_sent();
                if self.leg.attempts >= 2 {
                    return self.finish(Outcome::Review, &format!("the platform refused the code twice: {f}"));
                }
                self.leg.state = LegState::Scheduled;
                self.leg.not_before = now;
                self.release()
            }
            Err(f) if f.class == ErrorClass::WindowClosed => {
                // Refused because the agent closed or coded the leg in the instant before our write landed: read
                // what it ended with (agent_won, or expired if it was closed uncoded); never write again.
                self.line("note", json!({"write": "refused: the window is over", "error": f.message}));
                self.leg.attempt_not_sent();
                self.close_window();
                self.due()
            }
            Err(f) if f.class == ErrorClass::PreconditionFailed => {
                // An event changed the leg while the write waited: hand it back; the next round starts from what the
                // event says (and reads the platform again if the leg is still open).
                self.line("note", json!({"write": "not sent", "why": f.message}));
                self.leg.attempt_not_sent();
                self.leg.state = LegState::Scheduled;
                self.leg.not_before = now;
                self.release()
            }
            Err(f) => {
                if matches!(f.class, ErrorClass::RateLimited { .. } | ErrorClass::DeadlinePassed) {
                    // Refused before it was processed, or never sent: it did not land (a timeout or a 5xx may have).
                    self.leg.attempt_not_sent();
                }
                self.platform_failure(&f, "writing the code")
            }
        }
    }

    /// Closing: the code the leg ended with was read (or not). Confirming: our accepted write read back.
    fn final_code(&mut self, answer: Result<Option<String>, Failure>) {
        let now = self.ctx.now;
        let accepted = self.leg.written_at.is_some();
        match answer {
            Ok(Some(code)) if accepted && self.leg.intent.as_ref().is_some_and(|i| i.code_id == code) => {
                self.leg.confirmed = true;
                self.finish(Outcome::Applied, "our write read back from the platform")
            }
            Ok(Some(code)) if accepted && !(self.ctx.is_system_code)(&code) => {
                self.leg.observed_code = Some(code.clone());
                let name = self.code_name(&code);
                self.finish(Outcome::AgentChanged, &format!("code changed after our write to {name}"))
            }
            Ok(None) if accepted && self.leg.state == LegState::Confirming && self.leg.unpersisted_writes == 0 => {
                // The platform took the write and did not keep it: write it once more, inside the window (a new
                // attempt starts with its own gate read, which also tells whether the window is still open).
                self.leg.unpersisted_writes += 1;
                self.leg.written_at = None;
                self.leg.state = LegState::Scheduled;
                self.leg.not_before = now;
                self.line("note", json!({"write": "answered 2xx but not found on the leg; writing it once more"}));
                self.begin_write(false)
            }
            Ok(None) if accepted => self.finish(
                Outcome::Review,
                "the platform answered 2xx to our write, but the code was not on the leg when read back: it did not \
                 persist",
            ),
            Ok(Some(code))
                if self.leg.intent.as_ref().is_some_and(|i| i.code_id == code)
                    && self.leg.ours_may_have_landed(false) =>
            {
                // The intent is saved before every write and some attempt may have landed: ours did (or the agent
                // chose the very same code, which leaves the leg as decided either way).
                self.leg.written_at.get_or_insert(now);
                self.leg.confirmed = true;
                self.finish(Outcome::Applied, "the window closed with our code")
            }
            Ok(Some(code)) => {
                self.leg.observed_code = Some(code.clone());
                self.code_not_ours(&code, "the window closed with code")
            }
            Ok(None) => self.finish(Outcome::Expired, "the window closed without a code"),
            Err(f) => {
                let permanent =
                    matches!(f.class, ErrorClass::Permanent | ErrorClass::Auth | ErrorClass::Forbidden { .. });
                self.leg.closing_read_failures += 1;
                if permanent || self.leg.closing_read_failures >= MAX_CLOSING_READ_FAILURES {
                    let reason = format!("the window closed and the code it ended with could not be read: {f}");
                    return self.finish(Outcome::Review, &reason);
                }
                let wait = (self.ctx.backoff)(self.leg.closing_read_failures, rate_limit_floor(&f.class));
                self.leg.not_before = now.checked_add(wait).unwrap_or(now);
                self.leg.updated_at = now;
                self.line(
                    "note",
                    json!({"retry": "reading the closed leg's final code", "class": f.class.as_str(),
                           "error": f.message, "retry_in_ms": wait.as_millis() as i64}),
                );
                self.release()
            }
        }
    }

    /// The leg holds `code`, which is not ours: the platform's own timeout code is `expired` (the window closed);
    /// any other is `agent_won`, named from the catalog. `context` starts the reason ("… has code X").
    fn code_not_ours(&mut self, code: &str, context: &str) {
        if (self.ctx.is_system_code)(code) {
            return self.finish(Outcome::Expired, "the platform's ACW timeout stamped its system code");
        }
        let name = self.code_name(code);
        self.finish(Outcome::AgentWon, &format!("{context} {name}"))
    }

    /// A code's name from the catalog, or its id.
    fn code_name(&self, code: &str) -> String {
        self.ctx.catalog.ok().and_then(|c| c.code_by_id(code)).map_or(code, |c| c.name.as_str()).to_string()
    }

    /// A new attempt with the intent the leg has, made durable before its gate read: every gate read belongs to an
    /// attempt that has sent no write yet, so what it finds can only ever count that attempt as not sent.
    fn new_attempt(&mut self) {
        self.leg.state = LegState::Writing;
        self.leg.attempts += 1;
        self.leg.updated_at = self.ctx.now;
        self.out.push(Effect::SaveBeforeCall);
    }

    /// The window is over (the platform refused a write as too late): no write from here; its final code is read.
    fn close_window(&mut self) {
        self.leg.state = LegState::Closing;
        self.leg.not_before = self.ctx.now;
        self.leg.updated_at = self.ctx.now;
    }

    /// A classified failure of `doing`: retry later within the window, or end the leg with the reason.
    fn platform_failure(&mut self, f: &Failure, doing: &str) {
        let now = self.ctx.now;
        match &f.class {
            ErrorClass::Retryable
            | ErrorClass::Conflict
            | ErrorClass::PreconditionFailed
            | ErrorClass::RateLimited { .. } => {}
            ErrorClass::WindowClosed => {
                self.close_window();
                return self.release();
            }
            ErrorClass::Yielded => {
                // Nothing was sent: the leg goes back to the store as due as it was, and the scheduler works on the
                // more urgent leg first. An intent is kept, like after any read that did not happen.
                if self.leg.state == LegState::Writing {
                    self.leg.state = LegState::Scheduled;
                }
                self.leg.updated_at = now;
                self.line("note", json!({"note": format!("{doing} gave way to a leg with an earlier deadline")}));
                return self.release();
            }
            ErrorClass::DeadlinePassed => {
                return self.finish(
                    Outcome::Expired,
                    &format!("the ACW window closed while {doing} waited for the request budget"),
                )
            }
            ErrorClass::Forbidden { permission } => {
                let reason = match permission {
                    Some(p) => format!("{doing} was forbidden: the OAuth client lacks permission {p}"),
                    None => format!("{doing} was forbidden (403): {f}"),
                };
                return self.finish(Outcome::Review, &reason);
            }
            ErrorClass::Auth => return self.finish(Outcome::Review, &format!("{doing} failed authentication: {f}")),
            ErrorClass::Permanent => return self.finish(Outcome::Review, &format!("{doing} was rejected: {f}")),
        }
        let wait = (self.ctx.backoff)(self.leg.attempts.max(1), rate_limit_floor(&f.class));
        let at = now.checked_add(wait).unwrap_or(now);
        if self.leg.deadline.is_some_and(|d| at >= d) && self.leg.state != LegState::Writing {
            return self.finish(Outcome::Expired, &format!("the window closes before a retry is possible: {f}"));
        }
        // A leg in `writing` goes back to `scheduled` (intent kept): the next attempt starts with a gate read, which
        // tells whether an ambiguous write landed.
        if self.leg.state == LegState::Writing {
            self.leg.state = LegState::Scheduled;
        }
        self.leg.not_before = at;
        self.leg.updated_at = now;
        self.line(
            "note",
            json!({"retry": doing, "class": f.class.as_str(), "error": f.message, "retry_in_ms": wait.as_millis() as i64}),
        );
        self.release()
    }
}

/// The earliest a retry may go after a failure of `class`: a 429's `Retry-After` (one second when it sent none).
fn rate_limit_floor(class: &ErrorClass) -> Option<Duration> {
    match class {
        ErrorClass::RateLimited { retry_after } => Some(retry_after.unwrap_or(Duration::from_secs(1))),
        _ => None,
    }
}

/// Fills what the event did not carry from the catalog: queue name, ACW timeout and mode (and so the deadline).
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
