//! Platform events applied to a leg: the part of the state machine that intake runs inside the transaction that
//! records the event, so a leg and its inbox never disagree.

use super::{ExternalDecision, LegRecord, LegState};
use crate::event::{Event, EventKind};
use crate::leg::LegFacts;
use crate::outcome::Outcome;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

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
                (LegState::Confirming, code) => confirm(&mut leg, code.as_deref(), *system, now),
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
        EventKind::LegClosed if leg.state == LegState::Confirming => confirm(&mut leg, None, false, now),
        EventKind::LegClosed => {
            if leg.is_done() {
                effect(false, "leg closed (already finished)")
            } else {
                leg.finish(Outcome::Expired, Some("the platform closed the window before we acted".into()), now);
                effect(true, "leg closed before we acted: expired")
            }
        }
        EventKind::DecisionArrived { decision } => accept_decision(&mut leg, decision, now),
        EventKind::OperatorResolved { resolution } => match super::review::apply(&mut leg, resolution, now) {
            Ok(super::ResolutionAction::Written) => {
                effect(true, "an operator resolved the leg; the worker writes the code inside the window")
            }
            Ok(super::ResolutionAction::Recorded) => {
                effect(true, "an operator resolved the leg; the code is recorded as the operator's decision")
            }
            Ok(super::ResolutionAction::Dismissed) => effect(true, "an operator dismissed the leg"),
            Err(refusal) => {
                EventEffect { changed: false, note: format!("an operator's resolution refused: {refusal}") }
            }
        },
        EventKind::LegClosedUnread => {
            if leg.is_done() {
                effect(false, "leg closed (already finished)")
            } else if leg.state == LegState::Confirming {
                // Our write ended the window, most likely; its confirmation (event or read-back) is still awaited.
                effect(false, "window closed after our write; waiting for its confirmation")
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

/// A CRM's decision for a leg: it decides the leg unless a write is under way or the leg is finished (then the leg
/// keeps what it has, and the caller answers with the leg's state). A leg decided by a rule but not yet written is
/// decided again, so the decision takes the rule's code's place under the rule's timing.
fn accept_decision(leg: &mut LegRecord, decision: &ExternalDecision, now: Timestamp) -> EventEffect {
    if leg.is_done() {
        return effect(false, "a CRM decision arrived after the leg had ended; the leg keeps its outcome");
    }
    if leg.resolution.as_ref().is_some_and(|r| r.action == super::ResolutionAction::Written) {
        // A person chose this leg's code from the review queue; it is being written.
        return effect(false, "a CRM decision arrived after an operator chose the leg's code; the leg keeps it");
    }
    if leg.intent.is_some() || !matches!(leg.state, LegState::Open | LegState::Scheduled) {
        return effect(
            false,
            "a CRM decision arrived while a write was under way; the leg keeps the code being written",
        );
    }
    leg.external = Some(decision.clone());
    if leg.state == LegState::Scheduled {
        leg.state = LegState::Open;
        leg.decision = None;
    }
    if leg.ended_seen {
        leg.not_before = now;
    }
    effect(true, "a CRM decision arrived; it decides the leg's code")
}

/// An event about the code of a leg whose write was answered 2xx and awaits confirmation.
fn confirm(leg: &mut LegRecord, code: Option<&str>, system: bool, now: Timestamp) -> EventEffect {
    let ours = leg.intent.as_ref().is_some_and(|i| Some(i.code_id.as_str()) == code);
    match code {
        Some(_) if ours => {
            leg.confirmed = true;
            leg.finish(Outcome::Applied, Some("the platform confirmed our code".into()), now);
            effect(true, "our write confirmed by the platform: applied")
        }
        Some(c) if system => {
            let reason =
                format!("our write was answered 2xx, but the platform's timeout stamped {c}: it did not persist");
            leg.finish(Outcome::Review, Some(reason), now);
            effect(true, "the window timed out over our accepted write: review")
        }
        Some(c) => {
            leg.finish(Outcome::AgentChanged, Some(format!("code changed after our write to {c}")), now);
            effect(true, "code changed after our write: agent_changed")
        }
        None => {
            let reason = "our write was answered 2xx, but the window closed without our code: it did not persist";
            leg.finish(Outcome::Review, Some(reason.into()), now);
            effect(true, "the window closed without our accepted write: review")
        }
    }
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
        acw_estimate_ms,
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
    use crate::leg::LegKey;
    use crate::lifecycle::WriteIntent;
    use crate::outcome::Timing;
    use jiff::SignedDuration;

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
