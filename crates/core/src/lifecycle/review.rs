//! The review queue: legs that need a person, and what a person decides about them.
//!
//! A leg that ended `review` (or, on request, `expired`) waits for an operator ([`awaits_person`]). The operator
//! either **resolves** it with a code or **dismisses** it with a note. [`check`] validates the request against the
//! leg and the connection's catalog (the code by name or id, assigned to the leg's queue) and turns it into an
//! [`OperatorResolution`], which reaches the leg as an event (`EventKind::OperatorResolved`) so that it is applied
//! in the store's transaction, against the leg as it is then, with its ledger line:
//!
//! - **written**: the leg's window may still be open ([`window_may_be_open`]: a `review` leg whose deadline is
//!   ahead, with no code seen and no close seen). The leg is handed back to the worker as `scheduled` with the
//!   operator's code as its decision, due at once: the worker writes it through the same path as every write (the
//!   gate read of the agent's code, the deadline guard, one write, confirmation), and the leg ends `applied`,
//!   `agent_won` or `expired` as usual (an `outcome_changed` from `review`). Only a requester that can wake a worker
//!   (a running service) may hand a leg back: otherwise the event changes nothing.
//! - **recorded**: the window is over. The leg keeps its outcome and gets the resolution (code, by, at, note): the
//!   operator's decision for reports, announced in the outbox with the operator's code as the final code.
//! - **dismissed**: the leg leaves the queue with the note.
//!
//! A leg handed back to the worker that ends in `review` (or `expired`) again waits for a person again; a recorded
//! or dismissed leg is done with the queue: a second resolution is refused.

use super::{Decision, DecisionSource, LegRecord, LegState};
use crate::catalog::Catalog;
use crate::outcome::{Mode, Outcome, Timing};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Longest note accepted.
pub const NOTE_MAX_CHARS: usize = 1_000;
/// Longest actor name (`by`) accepted.
pub const ACTOR_MAX_CHARS: usize = 100;
/// Longest code name or id accepted.
pub const CODE_MAX_CHARS: usize = 255;
/// The actor when the request names none.
pub const DEFAULT_ACTOR: &str = "operator";

/// What a person did about a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionAction {
    /// Handed back to the worker to write the operator's code inside the window.
    Written,
    /// Recorded as the operator's decision (the window was over).
    Recorded,
    /// Taken out of the queue with a note.
    Dismissed,
}

impl ResolutionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ResolutionAction::Written => "written",
            ResolutionAction::Recorded => "recorded",
            ResolutionAction::Dismissed => "dismissed",
        }
    }
}

/// A code as the catalog names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ResolvedCode {
    pub id: String,
    pub name: String,
}

/// A person's resolution of a leg, kept on the leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Resolution {
    /// Unique per request (the event's dedupe key ends with it).
    pub id: String,
    pub action: ResolutionAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ResolvedCode>,
    pub by: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The outcome the leg had when it was resolved.
    pub outcome: Outcome,
}

/// What an operator asks for a leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewAction {
    /// Resolve with a code, by name or id.
    Resolve { code: String, note: Option<String> },
    /// Take out of the queue; the note says why.
    Dismiss { note: String },
}

/// A checked request, carried to the leg by an `operator_resolved` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorResolution {
    pub id: String,
    /// The code to resolve with; `None` dismisses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ResolvedCode>,
    pub by: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The requester can have a worker write the code (a running service): a leg whose window may be open is
    /// handed back only then.
    pub may_write: bool,
    /// The operator records the code as their decision and wants nothing written, though the window may still be
    /// open (the platform is out of reach, or the store is a finished demo's whose clock ran ahead of this one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub record_only: bool,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the leg is not waiting for a person (state {state}, outcome {})", outcome.map_or("none", Outcome::as_str))]
    NotInReview { state: &'static str, outcome: Option<Outcome> },
    #[error("the leg was already {} by {by} at {at}", action.as_str())]
    AlreadyResolved { action: ResolutionAction, by: String, at: Timestamp },
    #[error("no code named or numbered {0:?} in the connection's catalog")]
    UnknownCode(String),
    #[error("{0}")]
    CodeNotOnQueue(String),
    #[error("the connection's code catalog is not known yet")]
    NoCatalog,
    #[error("a note is required (1 to {NOTE_MAX_CHARS} characters)")]
    NoteRequired,
    #[error("the note is longer than {NOTE_MAX_CHARS} characters")]
    NoteTooLong,
    #[error("the code must be 1 to {CODE_MAX_CHARS} characters")]
    InvalidCode,
    #[error("`by` must be 1 to {ACTOR_MAX_CHARS} characters without control characters")]
    InvalidActor,
    #[error("the leg's window may still be open: the code can only be written by a running service")]
    NeedsService,
}

/// Whether `leg` waits for a person: finished `review` (or `expired` when asked), and not resolved yet — or
/// handed back to the worker by an operator and ended there without a code of ours again.
pub fn awaits_person(leg: &LegRecord, include_expired: bool) -> bool {
    let wanted = match leg.outcome {
        Some(Outcome::Review) => true,
        Some(Outcome::Expired) => include_expired,
        _ => false,
    };
    wanted
        && leg.state == LegState::Done
        && leg.resolution.as_ref().is_none_or(|r| r.action == ResolutionAction::Written)
}

/// Whether an operator's code could still be written on `leg` at `now`: it ended `review` (not `expired`), no code
/// and no close of its window was seen, and its deadline (or, for a window the platform does not time out, the
/// estimated one) is ahead. Only the worker's gate read can tell for sure; this decides who tries.
pub fn window_may_be_open(leg: &LegRecord, now: Timestamp) -> bool {
    leg.outcome == Some(Outcome::Review)
        && leg.closed_at.is_none()
        && leg.observed_code.is_none()
        && leg.facts.acw != Some(crate::catalog::AcwPolicy::None)
        && leg.order_deadline().is_some_and(|d| d > now)
}

/// Checks an operator's request against `leg` as loaded and the connection's `catalog`, and makes the resolution
/// the leg's event carries. `id` must be unique per request. The event re-checks the leg as it is when applied.
pub fn check(
    leg: &LegRecord,
    action: &ReviewAction,
    by: &str,
    catalog: Option<&Catalog>,
    id: String,
    may_write: bool,
    now: Timestamp,
) -> Result<OperatorResolution, Refusal> {
    let by = by.trim();
    if by.is_empty() || by.chars().count() > ACTOR_MAX_CHARS || by.chars().any(char::is_control) {
        return Err(Refusal::InvalidActor);
    }
    let (code, note) = match action {
        ReviewAction::Resolve { code, note } => (Some(code.trim()), note.as_deref().map(str::trim)),
        ReviewAction::Dismiss { note } => (None, Some(note.trim())),
    };
    let note = note.filter(|n| !n.is_empty());
    if note.is_some_and(|n| n.chars().count() > NOTE_MAX_CHARS) {
        return Err(Refusal::NoteTooLong);
    }
    if code.is_none() && note.is_none() {
        return Err(Refusal::NoteRequired);
    }
    refuse_unless_waiting(leg)?;
    let code = match code {
        None => None,
        Some(c) if c.is_empty() || c.chars().count() > CODE_MAX_CHARS => return Err(Refusal::InvalidCode),
        Some(c) => Some(resolve_code(catalog.ok_or(Refusal::NoCatalog)?, c, leg)?),
    };
    if code.is_some() && window_may_be_open(leg, now) && !may_write {
        return Err(Refusal::NeedsService);
    }
    Ok(OperatorResolution {
        id,
        code,
        by: by.to_string(),
        at: now,
        note: note.map(str::to_string),
        may_write,
        record_only: false,
    })
}

fn refuse_unless_waiting(leg: &LegRecord) -> Result<(), Refusal> {
    if let Some(r) = leg.resolution.as_ref().filter(|r| r.action != ResolutionAction::Written) {
        return Err(Refusal::AlreadyResolved { action: r.action, by: r.by.clone(), at: r.at });
    }
    if !awaits_person(leg, true) {
        return Err(Refusal::NotInReview { state: leg.state.as_str(), outcome: leg.outcome });
    }
    Ok(())
}

/// The code named `code` (or with that id), assigned to the leg's queue when the leg has one.
fn resolve_code(catalog: &Catalog, code: &str, leg: &LegRecord) -> Result<ResolvedCode, Refusal> {
    let entry = catalog
        .code_by_name(code)
        .or_else(|| catalog.code_by_id(code))
        .ok_or_else(|| Refusal::UnknownCode(code.to_string()))?;
    let usable = catalog
        .resolve(&entry.name, leg.facts.queue_id.as_deref())
        .map_err(|e| Refusal::CodeNotOnQueue(e.to_string()))?;
    Ok(ResolvedCode { id: usable.id.clone(), name: usable.name.clone() })
}

/// Applies a resolution to the leg as it is now (inside the store's transaction): the action taken, or why none
/// was (the leg changed since the request was checked).
pub(super) fn apply(leg: &mut LegRecord, r: &OperatorResolution, now: Timestamp) -> Result<ResolutionAction, Refusal> {
    refuse_unless_waiting(leg)?;
    let outcome = leg.outcome.unwrap_or(Outcome::Review);
    let action = match &r.code {
        None => ResolutionAction::Dismissed,
        Some(_) if r.record_only => ResolutionAction::Recorded,
        Some(_) if window_may_be_open(leg, now) && !r.may_write => return Err(Refusal::NeedsService),
        Some(code) if window_may_be_open(leg, now) => {
            hand_back(leg, code, r, now);
            ResolutionAction::Written
        }
        Some(_) => ResolutionAction::Recorded,
    };
    leg.resolution = Some(Resolution {
        id: r.id.clone(),
        action,
        code: r.code.clone(),
        by: r.by.clone(),
        at: r.at,
        note: r.note.clone(),
        outcome,
    });
    leg.updated_at = now;
    Ok(action)
}

/// Gives the leg back to the worker with the operator's code as its decision, due at once. The leg keeps its
/// `review` outcome until the worker finishes it, so that its new ending is the one change of its outcome
/// (`outcome_changed`, replacing `review`). Attempt counts are kept: a gate read that finds an earlier attempt's
/// code still tells it from the agent's.
fn hand_back(leg: &mut LegRecord, code: &ResolvedCode, r: &OperatorResolution, now: Timestamp) {
    leg.state = LegState::Scheduled;
    leg.not_before = now;
    leg.decision = Some(Decision {
        source: DecisionSource::External {
            source: format!("operator:{}", r.by),
            idempotency_key: None,
            arrived_at: r.at,
            rule: None,
        },
        code_name: code.name.clone(),
        notes: None,
        timing: Timing::Immediate,
        mode: Mode::Enforce,
        decided_at: now,
        fallback: None,
    });
    leg.intent = None;
    leg.written_at = None;
    leg.confirmed = false;
    leg.read_at = None;
    leg.closing_read_failures = 0;
    leg.unpersisted_writes = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{CodeEntry, QueueEntry};
    use crate::leg::LegKey;

    fn t(s: &str) -> Timestamp {
        format!("2026-01-01T00:{s}Z").parse().unwrap()
    }

    fn catalog() -> Catalog {
        Catalog {
            codes: vec![
                CodeEntry { id: "c1".into(), name: "Sale".into() },
                CodeEntry { id: "c2".into(), name: "Elsewhere".into() },
            ],
            queues: vec![QueueEntry {
                id: "q1".into(),
                name: "Sales".into(),
                code_ids: vec!["c1".into()],
                acw_timeout_ms: None,
                acw_mode: None,
                acw: None,
            }],
        }
    }

    fn review_leg(deadline: Option<&str>) -> LegRecord {
        let mut leg = LegRecord::new(LegKey::new("c", "conv", "p"), t("00:00"));
        leg.ended_seen = true;
        leg.facts.queue_id = Some("q1".into());
        leg.facts.ended_at = Some(t("00:00"));
        leg.deadline = deadline.map(t);
        leg.attempts = 1;
        leg.finish(Outcome::Review, Some("the decided code cannot be used".into()), t("00:01"));
        leg
    }

    fn resolve(code: &str) -> ReviewAction {
        ReviewAction::Resolve { code: code.into(), note: None }
    }

    #[test]
    fn a_code_for_an_open_window_hands_the_leg_back_to_the_worker_keeping_its_outcome() {
        let mut leg = review_leg(Some("00:30"));
        let r = check(&leg, &resolve("Sale"), "ana", Some(&catalog()), "r1".into(), true, t("00:02")).unwrap();
        assert_eq!(apply(&mut leg, &r, t("00:02")), Ok(ResolutionAction::Written));
        assert_eq!((leg.state, leg.outcome, leg.not_before), (LegState::Scheduled, Some(Outcome::Review), t("00:02")));
        let decision = leg.decision.as_ref().unwrap();
        assert_eq!((decision.code_name.as_str(), decision.mode), ("Sale", Mode::Enforce));
        assert!(matches!(&decision.source, DecisionSource::External { source, .. } if source == "operator:ana"));
        assert_eq!(leg.attempts, 1, "earlier attempts still count at the gate");
        assert!(!awaits_person(&leg, true), "in the worker's hands");
        // A CRM's decision arriving now does not take the operator's place.
        let crm = super::super::ExternalDecision {
            code_name: "Other".into(),
            notes: None,
            source: "crm".into(),
            idempotency_key: Some("k".into()),
            arrived_at: t("00:03"),
            expires_at: None,
        };
        let event = crate::Event {
            leg: leg.key.clone(),
            dedupe_key: "crm".into(),
            occurred_at: t("00:03"),
            correlation_id: None,
            kind: crate::EventKind::DecisionArrived { decision: Box::new(crm) },
        };
        let (leg, effect) = super::super::apply_event(Some(leg), &event, t("00:03"));
        assert!(!effect.changed);
        assert_eq!(leg.decision.map(|d| d.code_name).as_deref(), Some("Sale"));
    }

    #[test]
    fn a_code_by_id_after_the_window_is_recorded_and_the_leg_keeps_its_outcome() {
        let mut leg = review_leg(Some("00:30"));
        let r = check(&leg, &resolve("c1"), "ana", Some(&catalog()), "r1".into(), false, t("00:40")).unwrap();
        assert_eq!(r.code, Some(ResolvedCode { id: "c1".into(), name: "Sale".into() }));
        assert_eq!(apply(&mut leg, &r, t("00:40")), Ok(ResolutionAction::Recorded));
        assert_eq!((leg.state, leg.outcome), (LegState::Done, Some(Outcome::Review)));
        assert_eq!(leg.resolution.as_ref().map(|r| (r.by.as_str(), r.outcome)), Some(("ana", Outcome::Review)));
        assert!(!awaits_person(&leg, true));
        let again = check(&leg, &resolve("Sale"), "bo", Some(&catalog()), "r2".into(), false, t("00:41"));
        assert!(matches!(again, Err(Refusal::AlreadyResolved { action: ResolutionAction::Recorded, .. })));
    }

    #[test]
    fn without_a_service_an_open_window_is_refused_rather_than_recorded() {
        let leg = review_leg(Some("00:30"));
        let r = check(&leg, &resolve("Sale"), "ana", Some(&catalog()), "r1".into(), false, t("00:02"));
        assert_eq!(r, Err(Refusal::NeedsService));
        // The window may have closed by the time the event applies: the event re-checks.
        let mut leg = review_leg(Some("00:30"));
        let r = OperatorResolution {
            id: "r".into(),
            code: Some(ResolvedCode { id: "c1".into(), name: "Sale".into() }),
            by: "ana".into(),
            at: t("00:02"),
            note: None,
            may_write: false,
            record_only: false,
        };
        assert_eq!(apply(&mut leg, &r, t("00:02")), Err(Refusal::NeedsService));
        assert_eq!(apply(&mut leg, &r, t("00:31")), Ok(ResolutionAction::Recorded));
    }

    #[test]
    fn codes_are_checked_against_the_catalog_and_the_queue() {
        let leg = review_leg(None);
        let check = |a: &ReviewAction| check(&leg, a, "ana", Some(&catalog()), "r".into(), true, t("00:02"));
        assert_eq!(check(&resolve("Nope")), Err(Refusal::UnknownCode("Nope".into())));
        assert!(matches!(check(&resolve("Elsewhere")), Err(Refusal::CodeNotOnQueue(_))));
        assert_eq!(check(&resolve("")), Err(Refusal::InvalidCode));
    }

    #[test]
    fn a_dismissal_needs_a_note_within_its_bounds_and_takes_the_leg_out_of_the_queue() {
        let mut leg = review_leg(None);
        let dismiss = |note: &str| ReviewAction::Dismiss { note: note.into() };
        let check =
            |leg: &LegRecord, a: &ReviewAction, by: &str| check(leg, a, by, None, "r".into(), false, t("00:02"));
        assert_eq!(check(&leg, &dismiss("  "), "ana"), Err(Refusal::NoteRequired));
        assert_eq!(check(&leg, &dismiss(&"x".repeat(NOTE_MAX_CHARS + 1)), "ana"), Err(Refusal::NoteTooLong));
        assert_eq!(check(&leg, &dismiss("spam call"), " "), Err(Refusal::InvalidActor));
        let r = check(&leg, &dismiss("spam call"), "ana").unwrap();
        assert!(awaits_person(&leg, false));
        assert_eq!(apply(&mut leg, &r, t("00:02")), Ok(ResolutionAction::Dismissed));
        assert!(!awaits_person(&leg, true));
        assert_eq!(leg.resolution.unwrap().note.as_deref(), Some("spam call"));
    }

    #[test]
    fn only_finished_review_and_on_request_expired_legs_wait_for_a_person() {
        let mut leg = review_leg(None);
        leg.outcome = Some(Outcome::Expired);
        assert!(!awaits_person(&leg, false) && awaits_person(&leg, true));
        leg.outcome = Some(Outcome::Applied);
        assert!(!awaits_person(&leg, true));
        let r = check(&leg, &resolve("Sale"), "ana", Some(&catalog()), "r".into(), true, t("00:02"));
        assert_eq!(r, Err(Refusal::NotInReview { state: "done", outcome: Some(Outcome::Applied) }));
    }
}
