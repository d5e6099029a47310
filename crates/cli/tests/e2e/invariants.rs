use crate::harness::{self, center, sandbox, SUPPORT_IMMEDIATE};
use wrapup_core::Outcome;
use wrapup_sandbox::config::{AcwMode, Dist};
use wrapup_sandbox::FaultProfile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_are_applied_inside_the_window_once_per_leg() {
    let env = harness::start(sandbox(center(AcwMode::MandatoryTimeout, Some(60_000))), SUPPORT_IMMEDIATE).await;
    let run = harness::run(env, 4).await;
    run.assert_no_violations();
    assert!(run.summary.outcomes.applied >= 5, "applied: {:?}", run.summary.outcomes);
    for t in run.truth.iter().filter(|t| t.acw_started_at.is_some()) {
        assert!(t.api_writes <= 1, "leg {} was written {} times", t.participant_id, t.api_writes);
    }
    // One gate read and one write per applied code, plus the catalog and the token.
    assert_eq!(run.write_requests(), run.summary.outcomes.applied);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_code_final_or_provisional_is_never_overwritten() {
    let mut c = center(AcwMode::MandatoryTimeout, Some(60_000));
    // Half the agents type a provisional code while talking; every agent codes at disconnect, at once.
    c.agent.provisional_during = 0.5;
    c.agent.provisional_delay = Dist::new(0.5, 1.0, 2.0);
    c.agent.at_disconnect = 1.0;
    c.agent.at_disconnect_delay = Dist::new(0.0, 0.0, 0.0);
    let env = harness::start(sandbox(c), SUPPORT_IMMEDIATE).await;
    let run = harness::run(env, 4).await;
    run.assert_no_violations();
    assert!(run.summary.outcomes.agent_won >= 5, "outcomes: {:?}", run.summary.outcomes);
    assert_eq!(run.write_requests(), 0, "no write is sent when the agent already coded");
    // An agent who picks the very code we decided can leave a leg labelled `applied` with no write of ours when the
    // agent's code event arrives while our write intent is saved: the event cannot tell whether our write went out,
    // and says so ("identical choice"). A gate read that finds the intended code is never taken for a write of ours
    // when none went out (`LegRecord::unsent_attempts`).
    for leg in run.legs.iter().filter(|l| l.outcome == Some(Outcome::Applied)) {
        let reason = leg.outcome_reason.as_deref().unwrap_or_default();
        assert!(reason.contains("identical choice"), "applied for another reason: {reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_events_give_one_write() {
    let mut s = sandbox(center(AcwMode::MandatoryTimeout, Some(60_000)));
    s.faults = FaultProfile {
        name: "duplicates".into(),
        event_duplicate_rate: 1.0,
        event_reorder_rate: 0.5,
        event_delay_rate: 0.3,
        event_delay_ms_max: 300,
        ..FaultProfile::calm()
    };
    let env = harness::start(s, SUPPORT_IMMEDIATE).await;
    let run = harness::run(env, 4).await;
    run.assert_no_violations();
    assert!(run.report.events.duplicated > 0, "the sandbox duplicated events");
    assert!(run.summary.outcomes.applied >= 5);
    assert_eq!(
        run.write_requests(),
        run.summary.outcomes.applied,
        "exactly one write per applied leg: {:?} {:?}",
        run.summary.outcomes,
        run.report.api.by_endpoint
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leg_no_rule_matches_is_recorded_as_no_rule() {
    let rules = r#"
[[rules]]
name = "sales only"
code = "Issue resolved"
[rules.when]
queue = "Sales"
"#;
    let env = harness::start(sandbox(center(AcwMode::MandatoryTimeout, Some(30_000))), rules).await;
    let run = harness::run(env, 3).await;
    run.assert_no_violations();
    assert!(run.summary.outcomes.no_rule >= 3);
    assert!(run
        .legs
        .iter()
        .filter(|l| l.is_done())
        .all(|l| l.outcome == Some(Outcome::NoRule) || l.outcome == Some(Outcome::Expired)));
    assert_eq!(run.write_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_not_assigned_to_the_queue_is_a_review_with_the_reason() {
    let rules = r#"
[[rules]]
name = "wrong code"
code = "Test code"
[rules.when]
queue = "Support"
"#;
    let env = harness::start(sandbox(center(AcwMode::MandatoryTimeout, Some(30_000))), rules).await;
    let run = harness::run(env, 3).await;
    run.assert_no_violations();
    let reviews: Vec<_> = run.legs.iter().filter(|l| l.outcome == Some(Outcome::Review)).collect();
    assert!(reviews.len() >= 3, "outcomes: {:?}", run.summary.outcomes);
    for leg in reviews {
        let reason = leg.outcome_reason.as_deref().unwrap_or_default();
        assert!(reason.contains("not assigned"), "reason: {reason}");
    }
    assert_eq!(run.write_requests(), 0, "an unresolvable code is never written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_rules_decide_and_never_write() {
    let rules = r#"
[[rules]]
name = "support in shadow"
code = "Issue resolved"
mode = "shadow"
[rules.when]
queue = "Support"
"#;
    let env = harness::start(sandbox(center(AcwMode::MandatoryTimeout, Some(30_000))), rules).await;
    let run = harness::run(env, 3).await;
    run.assert_no_violations();
    assert!(run.summary.outcomes.shadow >= 3);
    assert_eq!(run.write_requests(), 0);
    assert_eq!(run.calls_to("GET /api/v2/conversations"), 0, "shadow decisions read nothing from the leg either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refreshed_and_work_continues() {
    let mut s = sandbox(center(AcwMode::MandatoryTimeout, Some(60_000)));
    s.token_lifetime_secs = 1;
    let env = harness::start(s, SUPPORT_IMMEDIATE).await;
    let run = harness::run(env, 5).await;
    run.assert_no_violations();
    assert!(run.summary.token_requests >= 2, "tokens were refreshed: {} token requests", run.summary.token_requests);
    assert!(run.summary.outcomes.applied >= 5);
    assert_eq!(run.summary.outcomes.review, 0, "no leg failed on authentication");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_timeout_timing_lets_the_agent_code_first_and_fills_the_rest() {
    let mut c = center(AcwMode::MandatoryTimeout, Some(20_000));
    c.agent.late = 0.5;
    c.agent.late_delay = Dist::new(1.0, 5.0, 10.0);
    let rules = r#"
[[rules]]
name = "support before timeout"
code = "Issue resolved"
timing = { before_timeout = "5s" }
[rules.when]
queue = "Support"
"#;
    let env = harness::start(sandbox(c), rules).await;
    let run = harness::run(env, 5).await;
    run.assert_no_violations();
    let o = &run.summary.outcomes;
    assert!(o.agent_won >= 2 && o.applied >= 2, "outcomes: {o:?}");
    assert_eq!(run.report.violations.overwrites, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_honoured_no_call_before_retry_after() {
    let mut s = sandbox(center(AcwMode::MandatoryTimeout, Some(60_000)));
    s.faults = FaultProfile { name: "storms".into(), storm_rate: 0.04, storm_secs: 1, ..FaultProfile::calm() };
    let env = harness::start(s, SUPPORT_IMMEDIATE).await;
    let run = harness::run(env, 5).await;
    run.assert_no_violations();
    assert!(run.report.api.rate_limited > 0, "the sandbox raised 429 storms");
    assert_eq!(run.report.api.calls_before_retry_after, 0, "no request was sent before its Retry-After elapsed");
    assert!(run.summary.outcomes.applied >= 5, "work went on between storms: {:?}", run.summary.outcomes);
}
