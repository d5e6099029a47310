//! The life of a leg, as a pure state machine.
//!
//! A leg is created by the first event that mentions it and ends in exactly one [`Outcome`]. Events (from intake, in
//! any order, any number of times) and the worker's steps are the only inputs; both go through the functions here, so
//! the store can apply an event atomically with its dedupe record and the worker can never make a move the events
//! have already made impossible.
//!
//! ```text
//!            leg_ended                        worker: decided (enforce)             worker: intent saved
//!  (none) ─────────────> Open ───────────────────────────────────> Scheduled ─────────────────────> Writing
//!                          │  worker: no_rule / shadow / review          │                             │ 202 accepted
//!                          v                                             v                             v
//!                        Done <──── code_recorded (agent/system) ──── Done <──── write refused ─── Applied* (Done)
//!                          ^                                                                           │ code_recorded(other)
//!                          └────────────── deadline passed / leg_closed ──> Expired          AgentChanged (Done)
//! ```
//! A real-time feed that sees the window close without saying how (`leg_closed_unread`) moves any unfinished leg to
//! `Closing`: no write is sent from there; the worker reads the code the leg ended with (ours → `Applied`, another →
//! `AgentWon`, none → `Expired`), or a `code_recorded` event decides first.
//!
//! A write answered 2xx puts the leg in `Confirming`: the platform's event with our code (or, when none comes in
//! time, a read-back) makes it `Applied`; a read-back that finds nothing has the code written once more inside the
//! window, then it is a `review` (the platform took the write and did not keep it).
//!
//! `Applied` is final for scheduling; a later `code_recorded` with the same code confirms it, a different code turns
//! it into `AgentChanged` (recorded, never fought).
//!
//! The write-ahead *intent* makes crashes safe: the worker persists `Writing { intent }` before it calls the
//! platform. After a crash the next worker finds `Writing`, reads the leg's code, and if it is the intended code the
//! write had landed (outcome `Applied`, no second write); if another code is there, the agent won; if none, it may
//! write again (the first write never landed).

use crate::catalog::AcwPolicy;
use crate::leg::{LegFacts, LegKey};
use crate::outcome::{Mode, Outcome, Timing};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// Where a leg stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LegState {
    /// In ACW, not decided yet. Due for a decision at `not_before`.
    Open,
    /// Decided (enforce); due for the write at `not_before`.
    Scheduled,
    /// The write intent is persisted; the gate read / write is (or was, before a crash) in flight.
    Writing,
    /// The window closed, and the code it ended with is not known yet: never written from here; due for a read of
    /// the leg's final code, which decides the outcome (ours → `applied`, another → `agent_won`, none → `expired`).
    Closing,
    /// Our write was answered 2xx; it counts as `applied` once the platform shows our code (its event, or a read-back
    /// when none came by `not_before`). A platform can accept a write and not keep it.
    Confirming,
    /// Ended in `outcome`.
    Done,
}

impl LegState {
    pub fn as_str(self) -> &'static str {
        match self {
            LegState::Open => "open",
            LegState::Scheduled => "scheduled",
            LegState::Writing => "writing",
            LegState::Closing => "closing",
            LegState::Confirming => "confirming",
            LegState::Done => "done",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            LegState::Open,
            LegState::Scheduled,
            LegState::Writing,
            LegState::Closing,
            LegState::Confirming,
            LegState::Done,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }
}

/// Who decided the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecisionSource {
    Rule {
        index: usize,
        name: String,
        version: String,
    },
    /// A CRM's decision or a decision hook's answer ([`ExternalDecision`]); `rule` is the rule that matched the
    /// leg, if one did (its timing and mode apply; its code does not).
    External {
        source: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
        arrived_at: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
    },
}

/// A code decided outside the rule set: sent by a CRM (`PUT /api/v1/decisions/…`) or answered by a decision hook.
/// It takes precedence over a rule's code, never over the agent: it goes through the same gates as a rule's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ExternalDecision {
    /// The code by name.
    pub code_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// Who decided: the request's `source` (e.g. `crm`), or `hook:<name>`.
    pub source: String,
    /// The request's `Idempotency-Key` (a hook's answer has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub arrived_at: Timestamp,
    /// After this it no longer decides a leg that has not been decided yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// What was decided for a leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    pub source: DecisionSource,
    /// The code by name, as the rule names it.
    pub code_name: String,
    pub notes: Option<String>,
    pub timing: Timing,
    pub mode: Mode,
    pub decided_at: Timestamp,
    /// Why the rule's own code (or its named fallback) decided where the rule asked for an external decision: none
    /// came in time, the hook failed, or it had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
}

/// The code we are about to write (persisted before the write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WriteIntent {
    pub code_id: String,
    pub code_name: String,
    pub at: Timestamp,
}

// A record leaves out what is empty, zero or false: most legs never use most fields, and every leg is written a
// few times, read back and kept. Reading a record fills them back in from their defaults.
fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Everything the store keeps about a leg.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LegRecord {
    pub key: LegKey,
    pub facts: LegFacts,
    /// Whether the `leg_ended` event has been seen (facts are complete).
    pub ended_seen: bool,
    pub state: LegState,
    /// When the worker should next look at the leg.
    pub not_before: Timestamp,
    /// When the platform closes the window by itself, if it does. A write is never sent after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Timestamp>,
    /// When the leg's window is likely to end without the platform closing it (an agent leaving an optional or
    /// agent-requested window), estimated from the windows observed on its queue. It only orders work (earliest
    /// first); unlike `deadline` it never stops a write, because the window may well still be open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_deadline: Option<Timestamp>,
    /// When the window closed, as the platform reported it (the event that ended the leg), if an event did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<WriteIntent>,
    /// When the last gate read answered: by then this leg had been given a share of the request budget over others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<Timestamp>,
    /// When our write was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome_reason: Option<String>,
    /// The last code the platform reported on the leg (from events or our gate read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_code: Option<String>,
    /// Our accepted write was confirmed by the platform's event.
    #[serde(default, skip_serializing_if = "is_false")]
    pub confirmed: bool,
    /// Write intents made for this leg (each starts with a gate read).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// How many of those `attempts` are known not to have put our code on the leg: no write request went out (the
    /// gate read failed or was too slow, the write's precondition failed) or the platform refused it. When a gate
    /// read finds the intent's code on the leg, it can be an earlier write of ours only if some attempt is not
    /// counted here; otherwise the agent chose that very code. Counted after the fact, so a crash between a write
    /// and its answer leaves the attempt uncounted (it may have landed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unsent_attempts: u32,
    /// Failed reads of a closing leg's final code (paces the next read; many in a row make it a `review`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub closing_read_failures: u32,
    /// Writes answered 2xx that a read-back then did not find on the leg (one is written again, inside the window).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unpersisted_writes: u32,
    /// The leg's participant attributes were read from the platform (for rules that match on them).
    #[serde(default, skip_serializing_if = "is_false")]
    pub attributes_read: bool,
    /// A decision from outside the rules (a CRM, a hook), waiting to decide the leg or having decided it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalDecision>,
    /// Until when the leg waits for an external decision its rule asked for (then the rule's fallback decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_decision_until: Option<Timestamp>,
    /// Failed asks of the rule's decision hook (paces the next ask).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hook_failures: u32,
    /// What a person decided about the leg in the review queue (see [`review`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Resolution>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl LegRecord {
    /// Counts the current attempt as one that did not put our code on the leg (see `unsent_attempts`).
    pub fn attempt_not_sent(&mut self) {
        self.unsent_attempts = (self.unsent_attempts + 1).min(self.attempts);
    }

    /// Whether a write of ours may have landed on this leg. `current_unsent`: the caller made the current attempt
    /// itself and has not sent it yet, so only earlier attempts count.
    pub fn ours_may_have_landed(&self, current_unsent: bool) -> bool {
        self.attempts.saturating_sub(u32::from(current_unsent)) > self.unsent_attempts
    }

    /// A leg first heard of through `event` at `now`.
    pub fn new(key: LegKey, now: Timestamp) -> Self {
        LegRecord {
            key,
            facts: LegFacts::default(),
            ended_seen: false,
            state: LegState::Open,
            not_before: now,
            deadline: None,
            estimated_deadline: None,
            closed_at: None,
            decision: None,
            intent: None,
            read_at: None,
            written_at: None,
            outcome: None,
            outcome_reason: None,
            observed_code: None,
            confirmed: false,
            attempts: 0,
            unsent_attempts: 0,
            closing_read_failures: 0,
            unpersisted_writes: 0,
            attributes_read: false,
            external: None,
            awaiting_decision_until: None,
            hook_failures: 0,
            resolution: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == LegState::Done
    }

    /// Ends the leg with `outcome` (no-op if it already ended).
    pub fn finish(&mut self, outcome: Outcome, reason: impl Into<Option<String>>, now: Timestamp) {
        if self.is_done() {
            return;
        }
        self.state = LegState::Done;
        self.outcome = Some(outcome);
        self.outcome_reason = reason.into();
        self.updated_at = now;
    }

    /// The moment that orders this leg's work among others (earliest first): the sooner of the platform's deadline
    /// and the estimated end of the window.
    pub fn order_deadline(&self) -> Option<Timestamp> {
        match (self.deadline, self.estimated_deadline) {
            (Some(hard), Some(estimate)) => Some(hard.min(estimate)),
            (hard, estimate) => hard.or(estimate),
        }
    }

    /// Ends a finished leg differently: our accepted write raced an event that had ended it otherwise (the agent
    /// coded in the instant between our gate read and our write), which a person must look at. With
    /// `applied` → `agent_changed` (see `apply_event`) the only change of a finished leg's outcome.
    pub fn overrule(&mut self, outcome: Outcome, reason: &str, now: Timestamp) {
        self.state = LegState::Done;
        self.outcome = Some(outcome);
        self.outcome_reason = Some(reason.to_string());
        self.updated_at = now;
    }

    /// Recomputes the deadline from the facts (end time + ACW timeout), when both are known, and for a window the
    /// platform does not time out, the estimated deadline (end time + the service's estimate of the window).
    pub fn refresh_deadline(&mut self) {
        let Some(end) = self.facts.ended_at else { return };
        if let Some(timeout) = self.facts.acw_timeout_ms {
            self.deadline = end.checked_add(SignedDuration::from_millis(timeout as i64)).ok();
        }
        let unbounded = matches!(self.facts.acw, Some(AcwPolicy::Optional | AcwPolicy::AgentRequested));
        if let (true, Some(estimate)) = (unbounded, self.facts.acw_estimate_ms) {
            self.estimated_deadline = end.checked_add(SignedDuration::from_millis(estimate as i64)).ok();
        }
    }

    /// When an enforce decision with `timing` should be written.
    pub fn write_time(&self, timing: Timing, now: Timestamp) -> Timestamp {
        let ended = self.facts.ended_at.unwrap_or(now);
        let at = match timing {
            Timing::Immediate => now,
            Timing::After { delay } => ended.checked_add(delay).unwrap_or(now),
            Timing::BeforeTimeout { margin } => match self.deadline {
                Some(deadline) => deadline.checked_sub(margin).unwrap_or(now),
                None => now,
            },
        };
        at.max(now)
    }
}

mod events;
#[cfg(test)]
mod external_tests;
#[cfg(test)]
mod properties;
pub mod review;
mod steps;

pub use events::{apply_event, EventEffect};
pub use review::{OperatorResolution, Resolution, ResolutionAction, ReviewAction};
pub use steps::*;

#[cfg(test)]
mod record_tests {
    use super::*;
    use crate::{Direction, Platform};

    /// Records leave out empty fields, and a record written before they did (every field present, `null`, `0`,
    /// `false`) still reads as the same leg: databases keep records across versions.
    #[test]
    fn a_record_without_its_empty_fields_reads_like_one_with_them() {
        let t0: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
        let mut leg = LegRecord::new(LegKey::new("c", "conv", "part"), t0);
        leg.facts.platform = Some(Platform::Genesys);
        leg.facts.direction = Direction::Inbound;
        let slim = serde_json::to_value(&leg).unwrap();
        for absent in ["deadline", "decision", "intent", "outcome", "attempts", "confirmed", "unsent_attempts"] {
            assert!(slim.get(absent).is_none(), "{absent} is written: {slim}");
        }
        assert!(slim["facts"].get("queue_id").is_none() && slim["facts"].get("attributes").is_none(), "{slim}");

        let mut full = slim.clone();
        let record = full.as_object_mut().unwrap();
        for (key, value) in [
            ("deadline", serde_json::Value::Null),
            ("decision", serde_json::Value::Null),
            ("intent", serde_json::Value::Null),
            ("written_at", serde_json::Value::Null),
            ("outcome", serde_json::Value::Null),
            ("outcome_reason", serde_json::Value::Null),
            ("observed_code", serde_json::Value::Null),
            ("confirmed", false.into()),
            ("attempts", 0.into()),
        ] {
            record.insert(key.into(), value);
        }
        record["facts"].as_object_mut().unwrap().insert("queue_id".into(), serde_json::Value::Null);
        record["facts"].as_object_mut().unwrap().insert("attributes".into(), serde_json::json!({}));
        let read: LegRecord = serde_json::from_value(full).unwrap();
        assert_eq!(read, leg);
        assert_eq!(serde_json::from_value::<LegRecord>(slim).unwrap(), leg);
    }
}
