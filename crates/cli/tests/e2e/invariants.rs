//! The invariants under the scenarios every platform has: one test per side (`…::genesys`, `…::cxone`, and
//! `…::cxone_sessions` where CXone's session detection changes what is exercised), each a fixed amount of traffic
//! drained to quiescence and judged with exact counts from the sandbox's truth.

use crate::harness::{
    self, center, cx_center, cx_sandbox, sandbox, sandbox_for, Run, Side, Traffic, SUPPORT_IMMEDIATE,
};
use std::time::Duration;
use wrapup_core::Outcome;
use wrapup_sandbox::config::{AcwMode, Dist};
use wrapup_sandbox::cxone::{NotOnSkill, RetryAfter};
use wrapup_sandbox::{CodedBy, CxoneBehaviours, FaultProfile};

/// Conversations a run drives when nothing in the scenario is wall time.
const CONVERSATIONS: usize = 10;

async fn codes_are_applied_inside_the_window_once_per_leg(side: Side) {
    let run = harness::run(side, sandbox_for(side, 60), SUPPORT_IMMEDIATE, Traffic::Conversations(CONVERSATIONS)).await;
    let needing = run.assert_every_leg_coded_by_us();
    assert_eq!(run.write_requests(), needing, "one write per leg, none refused: {:?}", run.report.api.by_endpoint);
}
harness::sides!(codes_are_applied_inside_the_window_once_per_leg: genesys => (Side::Genesys), cxone => (Side::CXONE));

async fn duplicated_and_reordered_events_give_one_write(side: Side) {
    // Genesys: EventBridge deliveries. CXone: polling and the completed sweep both report every contact, and the
    // session events (detection with sessions, or the sessions joined for the writes) are duplicated and reordered.
    let mut s = sandbox_for(side, 60);
    s.faults = FaultProfile {
        name: "duplicates".into(),
        event_duplicate_rate: 1.0,
        event_reorder_rate: 0.5,
        event_delay_rate: 0.3,
        event_delay_ms_max: 300,
        ..FaultProfile::calm()
    };
    let run = harness::run(side, s, SUPPORT_IMMEDIATE, Traffic::Conversations(CONVERSATIONS)).await;
    let needing = run.assert_every_leg_coded_by_us();
    if side != Side::CXONE {
        assert!(run.report.events.duplicated > 0, "the sandbox duplicated events: {:?}", run.report.events);
    }
    assert_eq!(run.write_requests(), needing, "exactly one write per leg: {:?}", run.report.api.by_endpoint);
}
harness::sides!(duplicated_and_reordered_events_give_one_write:
    genesys => (Side::Genesys), cxone => (Side::CXONE), cxone_sessions => (Side::CXONE_SESSIONS));

async fn a_leg_no_rule_matches_is_recorded_as_no_rule(side: Side) {
    let rules = harness::rule("sales only", "Issue resolved", "Sales", "");
    let run = harness::run(side, sandbox_for(side, 30), &rules, Traffic::Conversations(CONVERSATIONS)).await;
    run.assert_every_leg_ended_unwritten_as(Outcome::NoRule);
    assert_eq!(run.write_requests(), 0, "no write was even sent");
}
harness::sides!(a_leg_no_rule_matches_is_recorded_as_no_rule: genesys => (Side::Genesys), cxone => (Side::CXONE));

/// A rule whose code exists but is not assigned to the queue (CXone: not on the skill) sends every leg to a person
/// with the reason, and nothing is written, whichever way the platform would take such a write.
async fn a_code_not_assigned_to_the_queue_is_a_review_naming_it(side: Side, cxone_reading: NotOnSkill) {
    let rules = harness::rule("wrong code", "Test code", "Support", "");
    let mut s = sandbox_for(side, 30);
    s.cxone.behaviours = CxoneBehaviours { disposition_not_on_skill: cxone_reading, ..CxoneBehaviours::default() };
    let run = harness::run(side, s, &rules, Traffic::Conversations(CONVERSATIONS)).await;
    for leg in run.assert_every_leg_ended_unwritten_as(Outcome::Review) {
        let reason = leg.outcome_reason.as_deref().unwrap_or_default();
        assert!(reason.contains("Test code") && reason.contains("not assigned"), "reason: {reason}");
    }
    assert_eq!(run.write_requests(), 0, "an unresolvable code is never written");
}

harness::sides!(a_code_not_assigned_to_the_queue_is_a_review_naming_it:
    genesys => (Side::Genesys, NotOnSkill::default()),
    cxone_when_the_platform_refuses_it => (Side::CXONE, NotOnSkill::Rejected),
    cxone_when_the_platform_would_accept_it => (Side::CXONE, NotOnSkill::Accepted));

async fn shadow_rules_decide_and_never_write(side: Side) {
    let rules = harness::rule("support in shadow", "Issue resolved", "Support", "mode = \"shadow\"");
    let run = harness::run(side, sandbox_for(side, 30), &rules, Traffic::Conversations(CONVERSATIONS)).await;
    run.assert_every_leg_ended_unwritten_as(Outcome::Shadow);
    assert_eq!(run.write_requests(), 0);
    // Neither a gate read nor a write: a shadow decision reads nothing from the leg.
    let leg_reads = match side {
        Side::Genesys => run.calls_to("GET /api/v2/conversations"),
        Side::Cxone(_) => run.calls_where(|k| k.ends_with("/disposition")),
    };
    assert_eq!(leg_reads, 0, "{:?}", run.report.api.by_endpoint);
}
harness::sides!(shadow_rules_decide_and_never_write: genesys => (Side::Genesys), cxone => (Side::CXONE));

async fn an_expired_token_is_refreshed_and_work_continues(side: Side) {
    let mut s = sandbox_for(side, 60);
    s.token_lifetime_secs = 1;
    s.cxone.token_lifetime_secs = 1;
    // Wall time: tokens expire each wall second whatever the traffic.
    let run = harness::run(side, s, SUPPORT_IMMEDIATE, Traffic::For(Duration::from_secs(3))).await;
    run.assert_every_leg_coded_by_us();
    let least = if side == Side::Genesys { 2 } else { 3 };
    assert!(
        run.summary.token_requests >= least,
        "tokens were refreshed: {} token requests",
        run.summary.token_requests
    );
    assert_eq!(run.summary.outcomes.review, 0, "no leg failed on authentication");
}
harness::sides!(an_expired_token_is_refreshed_and_work_continues: genesys => (Side::Genesys), cxone => (Side::CXONE));

/// 429 storms: no request before its `Retry-After` (CXone: or, without one, before the backoff), every leg with
/// an outcome the sandbox agrees with, and work going on between storms. A window can close while the service
/// waits out a storm: such a leg is `expired` (or goes to a person), never written late.
async fn a_429_is_honoured(side: Side, retry_after: RetryAfter) {
    let mut s = sandbox_for(side, 60);
    s.faults = FaultProfile { name: "storms".into(), storm_rate: 0.04, storm_secs: 1, ..FaultProfile::calm() };
    s.cxone.behaviours = CxoneBehaviours { retry_after, ..CxoneBehaviours::default() };
    // Wall time: a storm's Retry-After is whole wall seconds, and storms need requests to start.
    let run = harness::run(side, s, SUPPORT_IMMEDIATE, Traffic::For(Duration::from_secs(4))).await;
    run.assert_invariants();
    let o = &run.summary.outcomes;
    assert_eq!(o.applied + o.expired + o.review, run.in_acw().count() as u64, "outcomes: {o:?}");
    assert_eq!(o.applied, run.coded_by(CodedBy::Api), "outcomes: {o:?}, sandbox: {:?}", run.report.legs);
    assert!(o.applied >= 5, "work went on between storms: {o:?}");
    assert!(run.report.api.rate_limited > 0, "the sandbox raised 429 storms");
    assert_eq!(run.report.api.calls_before_retry_after, 0, "no request was sent before its Retry-After elapsed");
}

harness::sides!(a_429_is_honoured:
    genesys => (Side::Genesys, RetryAfter::Sent),
    cxone_with_retry_after => (Side::CXONE, RetryAfter::Sent),
    cxone_without_retry_after => (Side::CXONE, RetryAfter::Absent));

/// Where agents code some legs themselves: those are `agent_won`, every other leg that entered ACW got our code.
fn assert_agents_won_and_we_filled_the_rest(run: &Run) {
    run.assert_invariants();
    let o = &run.summary.outcomes;
    assert_eq!(o.applied + o.agent_won, run.in_acw().count() as u64, "every leg is one or the other: {o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_code_final_or_provisional_is_never_overwritten() {
    let mut c = center(AcwMode::MandatoryTimeout, Some(60_000));
    // Half the agents type a provisional code while talking; every agent codes at disconnect, at once.
    c.agent.provisional_during = 0.5;
    c.agent.provisional_delay = Dist::new(0.5, 1.0, 2.0);
    c.agent.at_disconnect = 1.0;
    c.agent.at_disconnect_delay = Dist::new(0.0, 0.0, 0.0);
    let run = harness::run(Side::Genesys, sandbox(c), SUPPORT_IMMEDIATE, Traffic::Conversations(CONVERSATIONS)).await;
    assert_agents_won_and_we_filled_the_rest(&run);
    assert_eq!(run.coded_by(CodedBy::Agent), run.in_acw().count() as u64, "every agent coded: {:?}", run.report.legs);
    assert!(run.summary.outcomes.agent_won >= 5, "outcomes: {:?}", run.summary.outcomes);
    assert_eq!(run.write_requests(), 0, "no write is sent when the agent already coded");
    // An agent who picks the very code we decided can leave a leg labelled `applied` with no write of ours when the
    // agent's code event arrives while our write intent is saved: the event cannot tell whether our write went out,
    // and says so ("identical choice"). A gate read that finds the intended code is never taken for a write of ours
    // when none went out (`LegRecord::unsent_attempts`).
    for leg in run.with_outcome(Outcome::Applied) {
        let reason = leg.outcome_reason.as_deref().unwrap_or_default();
        assert!(reason.contains("identical choice"), "applied for another reason: {reason}");
    }
}

/// Agents who code some legs themselves, and a rule that waits for them until shortly before the timeout: each leg
/// its agent coded is theirs, every other leg gets our code. Genesys: half the agents code 1–10 s into a 20 s
/// window, the rule waits until 5 s before it closes. CXone: half the agents disposition at once when the contact
/// ends, a fifth later in the 60 s window, the rule waits until 50 s before it closes.
async fn before_timeout_timing_lets_the_agent_code_first_and_fills_the_rest(side: Side) {
    let (s, before_timeout, least_agent_won) = match side {
        Side::Genesys => {
            let mut c = center(AcwMode::MandatoryTimeout, Some(20_000));
            c.agent.late = 0.5;
            c.agent.late_delay = Dist::new(1.0, 5.0, 10.0);
            (sandbox(c), "5s", 2)
        }
        Side::Cxone(_) => {
            let mut c = cx_center();
            c.agent.at_disconnect = 0.5;
            c.agent.at_disconnect_delay = Dist::new(0.0, 0.0, 0.0);
            c.agent.late = 0.4;
            c.agent.late_delay = Dist::new(1.0, 10.0, 40.0);
            (cx_sandbox(c), "50s", 3)
        }
    };
    let timing = format!("timing = {{ before_timeout = {before_timeout:?} }}");
    let rules = harness::rule("support before timeout", "Issue resolved", "Support", &timing);
    let run = harness::run(side, s, &rules, Traffic::Conversations(CONVERSATIONS)).await;
    assert_agents_won_and_we_filled_the_rest(&run);
    let o = &run.summary.outcomes;
    assert!(o.agent_won >= least_agent_won && o.applied >= 2, "outcomes: {o:?}");
}
harness::sides!(before_timeout_timing_lets_the_agent_code_first_and_fills_the_rest:
    genesys => (Side::Genesys), cxone => (Side::CXONE), cxone_sessions => (Side::CXONE_SESSIONS));
