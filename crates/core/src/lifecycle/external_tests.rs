//! External decisions: a CRM's decision (an event), one kept for the conversation before the leg was known, and a
//! rule that waits for a CRM or asks a decision hook, then falls back.

use super::*;
use crate::catalog::{Catalog, CodeEntry, QueueEntry};
use crate::event::{Event, EventKind};
use crate::failure::ErrorClass;
use crate::leg::{LegFacts, LegKey};
use crate::rules::{DecideFrom, DecideSpec, Fallback, Rule, RuleSet};
use crate::{Mode, Outcome, Timing};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).unwrap()
}

fn catalog() -> Catalog {
    Catalog {
        codes: ["Rule code", "CRM code", "Fallback code", "Elsewhere"]
            .map(|c| CodeEntry { id: format!("id-{c}"), name: c.into() })
            .to_vec(),
        queues: vec![QueueEntry {
            id: "q".into(),
            name: "Q".into(),
            code_ids: ["Rule code", "CRM code", "Fallback code"].map(|c| format!("id-{c}")).to_vec(),
            acw_timeout_ms: Some(60_000),
            acw_mode: None,
            acw: Some(crate::catalog::AcwPolicy::Mandatory),
        }],
    }
}

fn rules(decide: Option<DecideSpec>, timing: Timing, mode: Mode) -> RuleSet {
    RuleSet::new(vec![Rule {
        name: "r".into(),
        when: Default::default(),
        code: "Rule code".into(),
        notes: None,
        timing,
        mode,
        platform: None,
        connection: None,
        decide,
    }])
    .unwrap()
}

fn crm(wait_secs: i64, fallback: Fallback) -> Option<DecideSpec> {
    Some(DecideSpec { from: DecideFrom::Crm, wait: SignedDuration::from_secs(wait_secs), fallback })
}

fn ended_leg() -> LegRecord {
    let facts = LegFacts { queue_id: Some("q".into()), ended_at: Some(at(0)), ..Default::default() };
    let event = event(EventKind::LegEnded { facts: Box::new(facts) }, "end");
    apply_event(None, &event, at(0)).0
}

fn event(kind: EventKind, key: &str) -> Event {
    Event { leg: LegKey::new("c", "conv", "p"), dedupe_key: key.into(), occurred_at: at(0), correlation_id: None, kind }
}

fn crm_decision(code: &str, arrived: Timestamp) -> ExternalDecision {
    ExternalDecision {
        code_name: code.into(),
        notes: Some("from the CRM".into()),
        source: "crm".into(),
        idempotency_key: Some("k1".into()),
        arrived_at: arrived,
        expires_at: None,
    }
}

fn arrived(leg: LegRecord, decision: ExternalDecision, now: Timestamp) -> (LegRecord, EventEffect) {
    apply_event(Some(leg), &event(EventKind::DecisionArrived { decision: Box::new(decision) }, "decision"), now)
}

/// Runs one move at `now` with `rules` and, optionally, a decision kept for the conversation.
fn run(
    leg: &mut LegRecord,
    input: Input,
    rules: &RuleSet,
    now: Timestamp,
    pending: Option<&ExternalDecision>,
) -> Vec<Effect> {
    let catalog = catalog();
    let backoff = |n: u32, _: Option<Duration>| SignedDuration::from_secs(i64::from(n));
    let no = |_: &str| false;
    let ctx = Ctx {
        now,
        connection: "c",
        catalog: Ok(&catalog),
        rules,
        acw_estimate: SignedDuration::from_secs(10),
        guard: SignedDuration::from_secs(1),
        confirm_within: SignedDuration::from_secs(2),
        backoff: &backoff,
        is_system_code: &no,
        pending_decision: pending,
    };
    step(leg, input, &ctx)
}

fn intent_code(leg: &LegRecord) -> Option<&str> {
    leg.intent.as_ref().map(|i| i.code_name.as_str())
}

fn called(effects: &[Effect]) -> Option<&Call> {
    effects.iter().find_map(|e| match e {
        Effect::Call(c) => Some(c),
        _ => None,
    })
}

#[test]
fn a_rule_that_waits_for_the_crm_waits_then_writes_the_crm_code_under_its_timing() {
    let rules = rules(crm(20, Fallback::Rule), Timing::Immediate, Mode::Enforce);
    let mut leg = ended_leg();
    let effects = run(&mut leg, Input::Due, &rules, at(1), None);
    assert_eq!((leg.state, leg.not_before, leg.awaiting_decision_until), (LegState::Open, at(20), Some(at(20))));
    assert!(effects.contains(&Effect::Release), "{effects:?}");
    // Woken again before the decision: no second "waiting" line.
    let again = run(&mut leg, Input::Due, &rules, at(2), None);
    assert!(!again.iter().any(|e| matches!(e, Effect::Ledger { kind: "note", .. })), "{again:?}");

    let (mut leg, effect) = arrived(leg, crm_decision("CRM code", at(5)), at(5));
    assert!(effect.changed);
    assert_eq!(leg.not_before, at(5), "the waiting leg is due at once");
    let effects = run(&mut leg, Input::Due, &rules, at(5), None);
    assert_eq!(intent_code(&leg), Some("CRM code"));
    assert_eq!(called(&effects), Some(&Call::GateRead));
    let decision = leg.decision.as_ref().unwrap();
    assert!(
        matches!(&decision.source, DecisionSource::External { source, idempotency_key: Some(k), rule: Some(r), .. }
        if source == "crm" && k == "k1" && r == "r"),
        "{decision:?}"
    );
    assert_eq!(decision.notes.as_deref(), Some("from the CRM"));
}

#[test]
fn without_a_crm_decision_in_time_the_fallback_decides() {
    for (fallback, code) in [(Fallback::Rule, "Rule code"), (Fallback::Code("Fallback code".into()), "Fallback code")] {
        let rules = rules(crm(20, fallback), Timing::Immediate, Mode::Enforce);
        let mut leg = ended_leg();
        run(&mut leg, Input::Due, &rules, at(1), None);
        run(&mut leg, Input::Due, &rules, at(20), None);
        assert_eq!(intent_code(&leg), Some(code));
        let decision = leg.decision.as_ref().unwrap();
        assert_eq!(decision.fallback.as_deref(), Some("no CRM decision arrived in time"));
        assert!(matches!(decision.source, DecisionSource::Rule { .. }));
    }
}

#[test]
fn the_wait_ends_early_enough_to_leave_the_write_room_in_the_window() {
    // A 60 s window and a 120 s wait: the wait ends three guards before the deadline.
    let rules = rules(crm(120, Fallback::Rule), Timing::Immediate, Mode::Enforce);
    let mut leg = ended_leg();
    run(&mut leg, Input::Due, &rules, at(1), None);
    assert_eq!(leg.not_before, at(57));
}

#[test]
fn a_crm_decision_takes_the_place_of_a_scheduled_rule_code_and_keeps_the_rule_timing() {
    let timing = Timing::BeforeTimeout { margin: SignedDuration::from_secs(10) };
    let rules = rules(None, timing, Mode::Enforce);
    let mut leg = ended_leg();
    run(&mut leg, Input::Due, &rules, at(1), None);
    assert_eq!((leg.state, leg.not_before), (LegState::Scheduled, at(50)));
    let (mut leg, effect) = arrived(leg, crm_decision("CRM code", at(3)), at(3));
    assert!(effect.changed);
    assert_eq!(leg.state, LegState::Open);
    run(&mut leg, Input::Due, &rules, at(3), None);
    assert_eq!((leg.state, leg.not_before), (LegState::Scheduled, at(50)), "the rule's timing still applies");
    run(&mut leg, Input::Due, &rules, at(50), None);
    assert_eq!(intent_code(&leg), Some("CRM code"));
}

#[test]
fn a_crm_decision_never_changes_a_leg_being_written_or_finished() {
    let rules = rules(None, Timing::Immediate, Mode::Enforce);
    let mut leg = ended_leg();
    run(&mut leg, Input::Due, &rules, at(1), None);
    assert_eq!(leg.state, LegState::Writing);
    let (writing, effect) = arrived(leg.clone(), crm_decision("CRM code", at(2)), at(2));
    assert!(!effect.changed);
    assert_eq!((writing.external.as_ref(), intent_code(&writing)), (None, Some("Rule code")));

    let agent =
        event(EventKind::CodeRecorded { code_id: Some("id-Elsewhere".into()), notes: None, system: false }, "a");
    let (done, _) = apply_event(Some(ended_leg()), &agent, at(2));
    let (after, effect) = arrived(done, crm_decision("CRM code", at(3)), at(3));
    assert!(!effect.changed);
    assert_eq!((after.outcome, after.external), (Some(Outcome::AgentWon), None));
}

#[test]
fn a_decision_kept_for_the_conversation_is_adopted_with_a_line_that_says_so() {
    let rules = rules(None, Timing::Immediate, Mode::Enforce);
    let pending = crm_decision("CRM code", at(-30));
    let mut leg = ended_leg();
    let effects = run(&mut leg, Input::Due, &rules, at(1), Some(&pending));
    assert_eq!(intent_code(&leg), Some("CRM code"));
    assert_eq!(leg.external.as_ref(), Some(&pending));
    assert!(effects.iter().any(|e| matches!(e, Effect::Ledger { kind: "external_decision", .. })), "{effects:?}");
}

#[test]
fn an_expired_decision_decides_nothing() {
    let rules = rules(None, Timing::Immediate, Mode::Enforce);
    let mut pending = crm_decision("CRM code", at(-30));
    pending.expires_at = Some(at(0));
    let mut leg = ended_leg();
    run(&mut leg, Input::Due, &rules, at(1), Some(&pending));
    assert_eq!(intent_code(&leg), Some("Rule code"));
}

#[test]
fn a_crm_decision_without_a_matching_rule_is_written_and_a_shadow_rule_stays_shadow() {
    let no_rules = RuleSet::default();
    let mut leg = ended_leg();
    leg.external = Some(crm_decision("CRM code", at(0)));
    run(&mut leg, Input::Due, &no_rules, at(1), None);
    assert_eq!(intent_code(&leg), Some("CRM code"));

    let shadow = rules(None, Timing::Immediate, Mode::Shadow);
    let mut leg = ended_leg();
    leg.external = Some(crm_decision("CRM code", at(0)));
    run(&mut leg, Input::Due, &shadow, at(1), None);
    assert_eq!((leg.outcome, leg.intent.as_ref()), (Some(Outcome::Shadow), None));
}

#[test]
fn a_decision_hook_is_asked_within_the_wait_and_its_answer_decides() {
    let spec = DecideSpec {
        from: DecideFrom::Hook("crm".into()),
        wait: SignedDuration::from_secs(10),
        fallback: Fallback::Rule,
    };
    let rules = rules(Some(spec), Timing::Immediate, Mode::Enforce);
    let mut leg = ended_leg();
    let effects = run(&mut leg, Input::Due, &rules, at(1), None);
    let ask = Call::AskHook { hook: "crm".into(), rule: "r".into(), within: SignedDuration::from_secs(9) };
    assert_eq!(called(&effects), Some(&ask));
    let answer = Ok(Some(HookAnswer { code_name: "CRM code".into(), notes: None }));
    let effects = run(&mut leg, Input::HookAnswered { hook: "crm".into(), answer }, &rules, at(2), None);
    assert_eq!(intent_code(&leg), Some("CRM code"));
    assert_eq!(called(&effects), Some(&Call::GateRead));
    assert!(
        matches!(&leg.decision.as_ref().unwrap().source, DecisionSource::External { source, .. } if source == "hook:crm")
    );
}

#[test]
fn a_hook_without_a_decision_falls_back_at_once_and_a_failing_one_is_retried_until_the_wait_ends() {
    let spec = DecideSpec {
        from: DecideFrom::Hook("crm".into()),
        wait: SignedDuration::from_secs(10),
        fallback: Fallback::Code("Fallback code".into()),
    };
    let rules = rules(Some(spec), Timing::Immediate, Mode::Enforce);
    let mut leg = ended_leg();
    run(&mut leg, Input::Due, &rules, at(1), None);
    run(&mut leg, Input::HookAnswered { hook: "crm".into(), answer: Ok(None) }, &rules, at(2), None);
    assert_eq!(intent_code(&leg), Some("Fallback code"));
    assert_eq!(leg.decision.as_ref().unwrap().fallback.as_deref(), Some("decision hook \"crm\" had no decision"));

    let mut leg = ended_leg();
    run(&mut leg, Input::Due, &rules, at(1), None);
    let failed = || Err(Failure { class: ErrorClass::Retryable, status: Some(503), message: "hook 503".into() });
    run(&mut leg, Input::HookAnswered { hook: "crm".into(), answer: failed() }, &rules, at(2), None);
    assert_eq!((leg.state, leg.not_before, leg.hook_failures), (LegState::Open, at(3), 1));
    let effects = run(&mut leg, Input::Due, &rules, at(3), None);
    assert!(matches!(called(&effects), Some(Call::AskHook { .. })), "asked again: {effects:?}");
    run(&mut leg, Input::HookAnswered { hook: "crm".into(), answer: failed() }, &rules, at(4), None);
    run(&mut leg, Input::Due, &rules, at(10), None);
    assert_eq!(intent_code(&leg), Some("Fallback code"));
    assert_eq!(leg.decision.as_ref().unwrap().fallback.as_deref(), Some("decision hook \"crm\" failed 2 time(s)"));
}
