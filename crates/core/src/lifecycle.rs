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
//! `Applied` is final for scheduling; a later `code_recorded` with the same code confirms it, a different code turns
//! it into `AgentChanged` (recorded, never fought).
//!
//! The write-ahead *intent* makes crashes safe: the worker persists `Writing { intent }` before it calls the
//! platform. After a crash the next worker finds `Writing`, reads the leg's code, and if it is the intended code the
//! write had landed (outcome `Applied`, no second write); if another code is there, the agent won; if none, it may
//! write again (the first write never landed).

use crate::event::{Event, EventKind};
use crate::leg::{LegFacts, LegKey};
use crate::outcome::{Mode, Outcome, Timing};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

/// Where a leg stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
            LegState::Done => "done",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [LegState::Open, LegState::Scheduled, LegState::Writing, LegState::Closing, LegState::Done]
            .into_iter()
            .find(|x| x.as_str() == s)
    }
}

/// Who decided the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DecisionSource {
    Rule { index: usize, name: String, version: String },
    External { idempotency_key: String, requested_by: Option<String> },
}

/// What was decided for a leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub source: DecisionSource,
    /// The code by name, as the rule names it.
    pub code_name: String,
    pub notes: Option<String>,
    pub timing: Timing,
    pub mode: Mode,
    pub decided_at: Timestamp,
}

/// The code we are about to write (persisted before the write).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteIntent {
    pub code_id: String,
    pub code_name: String,
    pub at: Timestamp,
}

/// Everything the store keeps about a leg.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LegRecord {
    pub key: LegKey,
    pub facts: LegFacts,
    /// Whether the `leg_ended` event has been seen (facts are complete).
    pub ended_seen: bool,
    pub state: LegState,
    /// When the worker should next look at the leg.
    pub not_before: Timestamp,
    /// When the platform closes the window by itself, if it does. A write is never sent after it.
    pub deadline: Option<Timestamp>,
    /// When the leg's window is likely to end without the platform closing it (an agent leaving an optional or
    /// agent-requested window), estimated from the windows observed on its queue. It only orders work (earliest
    /// first); unlike `deadline` it never stops a write, because the window may well still be open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_deadline: Option<Timestamp>,
    /// When the window closed, as the platform reported it (the event that ended the leg), if an event did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    pub decision: Option<Decision>,
    pub intent: Option<WriteIntent>,
    /// When our write was accepted.
    pub written_at: Option<Timestamp>,
    pub outcome: Option<Outcome>,
    pub outcome_reason: Option<String>,
    /// The last code the platform reported on the leg (from events or our gate read).
    pub observed_code: Option<String>,
    /// Our accepted write was confirmed by the platform's event.
    pub confirmed: bool,
    /// Write intents made for this leg (each starts with a gate read).
    pub attempts: u32,
    /// How many of those `attempts` are known not to have put our code on the leg: no write request went out (the
    /// gate read failed or was too slow, the write's precondition failed) or the platform refused it. When a gate
    /// read finds the intent's code on the leg, it can be an earlier write of ours only if some attempt is not
    /// counted here; otherwise the agent chose that very code. Counted after the fact, so a crash between a write
    /// and its answer leaves the attempt uncounted (it may have landed).
    #[serde(default)]
    pub unsent_attempts: u32,
    /// Failed reads of a closing leg's final code (paces the next read; many in a row make it a `review`).
    #[serde(default)]
    pub closing_read_failures: u32,
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
            written_at: None,
            outcome: None,
            outcome_reason: None,
            observed_code: None,
            confirmed: false,
            attempts: 0,
            unsent_attempts: 0,
            closing_read_failures: 0,
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

    /// Recomputes the deadline from the facts (end time + ACW timeout), when both are known.
    pub fn refresh_deadline(&mut self) {
        if let (Some(end), Some(timeout)) = (self.facts.ended_at, self.facts.acw_timeout_ms) {
            self.deadline = end.checked_add(SignedDuration::from_millis(timeout as i64)).ok();
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

/// What applying an event did, for the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEffect {
    pub changed: bool,
    pub note: String,
}

/// Applies one (new, non-duplicate) event to a leg. Pure: the store calls it inside the transaction that records the
/// event, so a leg and its inbox never disagree.
pub fn apply_event(leg: Option<LegRecord>, event: &Event, now: Timestamp) -> (LegRecord, EventEffect) {
    let mut leg = leg.unwrap_or_else(|| LegRecord::new(event.leg.clone(), now));
    let effect = match &event.kind {
        EventKind::LegEnded { facts } => {
            let first = !leg.ended_seen;
            merge_facts(&mut leg.facts, facts);
            leg.ended_seen = true;
            leg.refresh_deadline();
            if first && leg.state == LegState::Open {
                leg.not_before = now;
            }
            effect(first, if first { "leg ended; ACW window open" } else { "leg ended again (facts merged)" })
        }
        EventKind::CodeRecorded { code_id, system, .. } => {
            leg.observed_code = code_id.clone();
            match (leg.state, code_id) {
                (LegState::Done, Some(code)) => match leg.outcome {
                    Some(Outcome::Applied) => {
                        let ours = leg.intent.as_ref().map(|i| &i.code_id) == Some(code);
                        if ours {
                            leg.confirmed = true;
                            effect(true, "our code confirmed by the platform")
                        } else {
                            leg.finish_again(
                                Outcome::AgentChanged,
                                format!("code changed after our write to {code}"),
                                now,
                            );
                            effect(true, "code changed after our write: agent_changed")
                        }
                    }
                    Some(Outcome::AgentChanged) => effect(false, "code recorded again after agent change"),
                    _ => effect(false, "code recorded on a finished leg"),
                },
                (LegState::Done, None) => effect(false, "window closed on a finished leg"),
                (LegState::Writing | LegState::Closing, Some(code))
                    if leg.intent.as_ref().map(|i| &i.code_id) == Some(code) =>
                {
                    leg.written_at.get_or_insert(event.occurred_at);
                    leg.confirmed = true;
                    // While writing we cannot tell our own write from an agent who chose the very same code; either
                    // way the leg holds the decided code, and the worker will not send another write (its
                    // precondition sees this change).
                    leg.finish(
                        Outcome::Applied,
                        Some(
                            "the platform reported the intended code (our write, or the agent's identical choice)"
                                .into(),
                        ),
                        now,
                    );
                    effect(true, "the platform reported the intended code")
                }
                (_, Some(_)) if *system => {
                    leg.finish(
                        Outcome::Expired,
                        Some("the platform's ACW timeout stamped its system code".into()),
                        now,
                    );
                    effect(true, "window closed by the platform's timeout: expired")
                }
                (_, Some(code)) => {
                    leg.finish(Outcome::AgentWon, Some(format!("code {code} recorded by someone else first")), now);
                    effect(true, "someone else coded the leg: agent_won")
                }
                (_, None) => {
                    leg.finish(Outcome::Expired, Some("the window closed without a code (skipped)".into()), now);
                    effect(true, "window closed without a code: expired")
                }
            }
        }
        EventKind::LegClosed => {
            if leg.is_done() {
                effect(false, "leg closed (already finished)")
            } else {
                leg.finish(Outcome::Expired, Some("the platform closed the window before we acted".into()), now);
                effect(true, "leg closed before we acted: expired")
            }
        }
        EventKind::LegClosedUnread => {
            if leg.is_done() {
                effect(false, "leg closed (already finished)")
            } else if leg.state == LegState::Closing {
                effect(false, "leg closed again (its final code is still to be read)")
            } else {
                leg.state = LegState::Closing;
                leg.not_before = now;
                effect(true, "window closed; the code it ended with will be read (no write from now on)")
            }
        }
    };
    if matches!(event.kind, EventKind::CodeRecorded { .. } | EventKind::LegClosed | EventKind::LegClosedUnread) {
        leg.closed_at.get_or_insert(event.occurred_at);
    }
    leg.updated_at = now;
    (leg, effect)
}

impl LegRecord {
    /// `Applied` → `AgentChanged` is the one change of a finished leg's outcome that is allowed.
    fn finish_again(&mut self, outcome: Outcome, reason: String, now: Timestamp) {
        if self.outcome == Some(Outcome::Applied) && outcome == Outcome::AgentChanged {
            self.outcome = Some(outcome);
            self.outcome_reason = Some(reason);
            self.updated_at = now;
        }
    }
}

fn effect(changed: bool, note: &str) -> EventEffect {
    EventEffect { changed, note: note.to_string() }
}

/// Fills facts that are missing in `into` from `from` (the first complete report wins; later ones only add).
fn merge_facts(into: &mut LegFacts, from: &LegFacts) {
    macro_rules! fill {
        ($($f:ident),*) => { $( if into.$f.is_none() { into.$f = from.$f.clone(); } )* };
    }
    fill!(
        platform,
        communication_id,
        media,
        channel,
        queue_id,
        queue_name,
        user_id,
        disconnect_type,
        talk_ms,
        hold_ms,
        ended_at,
        acw_timeout_ms,
        acw,
        campaign_id
    );
    if into.direction == crate::leg::Direction::Unknown {
        into.direction = from.direction;
    }
    for (k, v) in &from.attributes {
        into.attributes.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leg::Channel;

    fn t(s: &str) -> Timestamp {
        format!("2026-01-01T00:{s}Z").parse().unwrap()
    }

    fn ended(timeout: Option<u64>) -> Event {
        Event {
            leg: LegKey::new("c", "conv", "p"),
            dedupe_key: "end".into(),
            occurred_at: t("00:00"),
            correlation_id: None,
            kind: EventKind::LegEnded {
                facts: Box::new(LegFacts {
                    channel: Some(Channel::Voice),
                    ended_at: Some(t("00:00")),
                    acw_timeout_ms: timeout,
                    ..Default::default()
                }),
            },
        }
    }

    fn code(code: Option<&str>, system: bool) -> Event {
        Event {
            leg: LegKey::new("c", "conv", "p"),
            dedupe_key: format!("acw-{code:?}"),
            occurred_at: t("00:10"),
            correlation_id: None,
            kind: EventKind::CodeRecorded { code_id: code.map(str::to_string), notes: None, system },
        }
    }

    #[test]
    fn a_leg_ended_event_opens_a_leg_with_its_deadline() {
        let (leg, _) = apply_event(None, &ended(Some(30_000)), t("00:01"));
        assert_eq!(leg.state, LegState::Open);
        assert_eq!(leg.deadline, Some(t("00:30")));
        assert_eq!(leg.not_before, t("00:01"));
    }

    #[test]
    fn an_agent_code_before_our_write_is_agent_won() {
        let (leg, _) = apply_event(None, &ended(None), t("00:01"));
        let (leg, _) = apply_event(Some(leg), &code(Some("x"), false), t("00:02"));
        assert_eq!(leg.outcome, Some(Outcome::AgentWon));
    }

    #[test]
    fn a_code_event_before_the_end_event_still_wins_and_the_end_does_not_reopen() {
        let (leg, _) = apply_event(None, &code(Some("x"), false), t("00:01"));
        let (leg, _) = apply_event(Some(leg), &ended(None), t("00:02"));
        assert_eq!(leg.state, LegState::Done);
        assert_eq!(leg.outcome, Some(Outcome::AgentWon));
        assert!(leg.ended_seen);
    }

    #[test]
    fn the_system_timeout_code_is_expired_not_agent_won() {
        let (leg, _) = apply_event(None, &ended(Some(1000)), t("00:01"));
        let (leg, _) = apply_event(Some(leg), &code(Some("sys"), true), t("00:02"));
        assert_eq!(leg.outcome, Some(Outcome::Expired));
    }

    #[test]
    fn our_code_confirms_and_another_code_after_our_write_is_agent_changed() {
        let (mut leg, _) = apply_event(None, &ended(None), t("00:01"));
        leg.state = LegState::Writing;
        leg.intent = Some(WriteIntent { code_id: "ours".into(), code_name: "Ours".into(), at: t("00:02") });
        let (leg, _) = apply_event(Some(leg), &code(Some("ours"), false), t("00:03"));
        assert_eq!(leg.outcome, Some(Outcome::Applied));
        assert!(leg.confirmed);
        let (leg, _) = apply_event(Some(leg), &code(Some("theirs"), false), t("00:04"));
        assert_eq!(leg.outcome, Some(Outcome::AgentChanged));
    }

    fn closed_unread() -> Event {
        Event {
            leg: LegKey::new("c", "conv", "p"),
            dedupe_key: "closed".into(),
            occurred_at: t("00:05"),
            correlation_id: None,
            kind: EventKind::LegClosedUnread,
        }
    }

    #[test]
    fn a_closing_whose_code_is_unknown_blocks_writes_and_waits_for_the_code() {
        let (mut leg, _) = apply_event(None, &ended(Some(30_000)), t("00:01"));
        leg.state = LegState::Writing;
        leg.intent = Some(WriteIntent { code_id: "ours".into(), code_name: "Ours".into(), at: t("00:02") });
        let (leg, e) = apply_event(Some(leg), &closed_unread(), t("00:06"));
        assert!(e.changed);
        assert_eq!((leg.state, leg.outcome, leg.not_before), (LegState::Closing, None, t("00:06")));
        // A repeated closing changes nothing; the code it ended with decides: ours → applied.
        let (again, e) = apply_event(Some(leg.clone()), &closed_unread(), t("00:07"));
        assert!(!e.changed);
        assert_eq!(again.state, LegState::Closing);
        let (ours, _) = apply_event(Some(leg.clone()), &code(Some("ours"), false), t("00:08"));
        assert_eq!(ours.outcome, Some(Outcome::Applied));
        let (theirs, _) = apply_event(Some(leg.clone()), &code(Some("x"), false), t("00:08"));
        assert_eq!(theirs.outcome, Some(Outcome::AgentWon));
        let (none, _) = apply_event(Some(leg), &code(None, false), t("00:08"));
        assert_eq!(none.outcome, Some(Outcome::Expired));
    }

    #[test]
    fn a_closing_of_a_finished_leg_changes_nothing() {
        let (leg, _) = apply_event(None, &ended(None), t("00:01"));
        let (leg, _) = apply_event(Some(leg), &code(Some("x"), false), t("00:02"));
        let (leg, e) = apply_event(Some(leg), &closed_unread(), t("00:03"));
        assert!(!e.changed);
        assert_eq!((leg.state, leg.outcome), (LegState::Done, Some(Outcome::AgentWon)));
        assert_eq!(LegState::parse("closing"), Some(LegState::Closing));
    }

    #[test]
    fn before_timeout_timing_writes_margin_before_the_deadline() {
        let (leg, _) = apply_event(None, &ended(Some(60_000)), t("00:00"));
        let at = leg.write_time(Timing::BeforeTimeout { margin: SignedDuration::from_secs(10) }, t("00:01"));
        assert_eq!(at, t("00:50"));
        let at = leg.write_time(Timing::After { delay: SignedDuration::from_secs(5) }, t("00:01"));
        assert_eq!(at, t("00:05"));
        assert_eq!(leg.write_time(Timing::Immediate, t("00:01")), t("00:01"));
    }
}
