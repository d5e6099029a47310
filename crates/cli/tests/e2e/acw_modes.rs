//! Only inside the window, on every ACW mode: enforce rules on Genesys queues of each `wrapupPrompt` and on CXone
//! skills whose agents leave ACW without a disposition, judged by the ground truth's split of writes outside the
//! window (on legs that never had one, and writes the platform took anyway).

use crate::cxone::{cx_center, cx_run, cx_sandbox, cx_start, CxRun};
use crate::harness::{self, center, sandbox, Run};
use wrapup_core::Outcome;
use wrapup_demo::CxoneDetection;
use wrapup_sandbox::config::{AcwMode, CenterConfig, Dist, QueueConfig};
use wrapup_sandbox::cxone::ClosedContact;
use wrapup_sandbox::{ConversationProvisional, CxoneBehaviours};

/// One enforce rule that codes every leg of every queue at once, as a new user would write it.
const EVERY_LEG_AT_ONCE: &str = r#"
[[rules]]
name = "everything"
code = "Issue resolved"
timing = "immediate"
"#;

/// Every Genesys ACW mode, one queue each, all allowing "Issue resolved"; agents who code a share of legs at
/// disconnect, skip optional windows quickly, and ask for an agent-requested window half of the time.
fn all_modes() -> CenterConfig {
    let mut c = center(AcwMode::MandatoryTimeout, Some(30_000));
    let q = |name: &str, mode, timeout_ms| QueueConfig {
        name: name.into(),
        wrapup_prompt: mode,
        timeout_ms,
        codes: vec!["Issue resolved".into(), "Escalated".into()],
        weight: 1.0,
    };
    c.queues = vec![
        q("Mandatory", AcwMode::Mandatory, None),
        q("Timeout", AcwMode::MandatoryTimeout, Some(30_000)),
        q("Forced", AcwMode::MandatoryForcedTimeout, Some(30_000)),
        q("Optional", AcwMode::Optional, None),
        q("Requested", AcwMode::AgentRequested, Some(30_000)),
    ];
    c.queues_per_agent = 5;
    c.arrival_rate_per_sec = 1.0;
    c.agent.at_disconnect = 0.2;
    c.agent.at_disconnect_delay = Dist::new(0.0, 0.5, 1.0);
    c.agent.skip_delay = Dist::new(0.5, 2.0, 6.0);
    c.agent.requests_acw = 0.5;
    c
}

/// The Genesys run's ground truth: nothing written over an agent, twice, or lost; no write attempted on a leg
/// that never had a window and none that landed outside one. A write that reached a window closed an instant
/// before (the race no conditional write can close) is allowed only as a refused attempt on a leg the service
/// did not record as `applied`.
fn assert_only_inside_the_window(run: &Run) {
    let v = &run.report.violations;
    assert_eq!((v.overwrites, v.overwrite_attempts, v.duplicate_writes), (0, 0, 0), "{:?}", v.details);
    assert_eq!(run.summary.violations.lost, 0, "lost legs: {:?}", run.summary.lost_legs);
    assert_eq!(v.outside_window_no_acw, 0, "writes on legs without a window: {:?}", v.details);
    assert_eq!(v.outside_window_landed, 0, "writes that landed outside the window: {:?}", v.details);
    for late in v.details.iter().filter(|d| d.kind == "outside_window") {
        let leg = run.legs.iter().find(|l| l.key.participant == late.participant_id).expect("a leg we know");
        assert_ne!(leg.outcome, Some(Outcome::Applied), "a refused late write recorded as applied: {leg:?}");
    }
    let racing = v.details.iter().filter(|d| d.kind == "outside_window").count() as f64;
    assert!(racing <= (run.legs.len() as f64 / 100.0).max(1.0), "{racing} late writes of {} legs", run.legs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acw_mode_is_written_only_inside_its_window() {
    let mut s = sandbox(all_modes());
    // The strict reading: a late write is refused, so the race shows as a refusal rather than a landed write.
    s.behaviours.apply_after_acw = wrapup_sandbox::ApplyAfterAcw::Rejected;
    let env = harness::start(s, EVERY_LEG_AT_ONCE).await;
    let run = harness::run(env, 6).await;
    assert_only_inside_the_window(&run);
    let o = &run.summary.outcomes;
    assert!(o.no_acw >= 2, "agent-requested legs without a window are no_acw: {o:?}");
    assert!(o.applied >= 10, "outcomes: {o:?}");
    // Every leg that never had a window is `no_acw` in the service, and no write went to it.
    for t in run.truth.iter().filter(|t| t.state == "done" && !t.wrapup_required) {
        let leg = run.legs.iter().find(|l| l.key.participant == t.participant_id).expect("known");
        assert!(matches!(leg.outcome, Some(Outcome::NoAcw)), "{leg:?}");
        assert_eq!(t.api_writes, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_rule_on_an_optional_queue_never_writes_after_the_agent_left() {
    let mut c = all_modes();
    c.queues.retain(|q| q.wrapup_prompt == AcwMode::Optional);
    // Every agent leaves within 1–4 s; the rule waits 3 s: about half the windows are gone when it is due.
    c.agent.at_disconnect = 0.0;
    c.agent.skip_delay = Dist::new(1.0, 2.5, 4.0);
    let rules = r#"
[[rules]]
name = "optional later"
code = "Issue resolved"
timing = { after = "3s" }
"#;
    // The lenient reading: the platform would take a late write, so only the gate keeps it out.
    let env = harness::start(sandbox(c), rules).await;
    let run = harness::run(env, 5).await;
    assert_only_inside_the_window(&run);
    let o = &run.summary.outcomes;
    assert!(o.expired >= 3 && o.applied >= 3, "outcomes: {o:?}");
    // The agent's skip reaches the service either as the platform's event or through the gate read.
    for leg in run.legs.iter().filter(|l| l.outcome == Some(Outcome::Expired)) {
        let reason = leg.outcome_reason.as_deref().unwrap_or_default();
        assert!(reason.contains("left after-call work") || reason.contains("skipped"), "{reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisional_code_hidden_from_conversation_reads_is_still_never_overwritten() {
    let mut c = all_modes();
    c.queues.retain(|q| matches!(q.wrapup_prompt, AcwMode::Optional | AcwMode::AgentRequested));
    c.agent.requests_acw = 1.0;
    c.agent.provisional_during = 0.6;
    c.agent.provisional_delay = Dist::new(0.5, 1.0, 2.0);
    c.agent.late = 1.0;
    c.agent.late_delay = Dist::new(3.0, 4.0, 5.0);
    c.agent.skip_delay = Dist::new(20.0, 20.0, 20.0);
    let mut s = sandbox(c);
    s.behaviours.conversation_provisional = ConversationProvisional::Hidden;
    let env = harness::start(s, EVERY_LEG_AT_ONCE).await;
    let run = harness::run(env, 5).await;
    assert_only_inside_the_window(&run);
    assert!(run.summary.outcomes.agent_won >= 3, "outcomes: {:?}", run.summary.outcomes);
}

/// CXone: one skill whose agents leave ACW without a disposition (1–4 s), and a rule that waits for 3 s.
async fn cx_agents_leave_early(closed_contact: ClosedContact, detection: CxoneDetection) -> CxRun {
    let mut c = cx_center();
    c.agent.skip_delay = Dist::new(1.0, 2.5, 4.0);
    let mut s = cx_sandbox(c);
    s.cxone.behaviours = CxoneBehaviours { closed_contact, ..CxoneBehaviours::default() };
    let rules = r#"
[[rules]]
name = "support later"
code = "Issue resolved"
timing = { after = "3s" }
"#;
    let env = cx_start(s, rules, detection).await;
    let run = cx_run(env, 5).await;
    let v = &run.report.violations;
    assert_eq!((v.overwrites, v.duplicate_writes, v.outside_window_no_acw), (0, 0, 0), "{:?}", v.details);
    assert_eq!(v.outside_window_landed, 0, "dispositions that landed after ACW: {:?}", v.details);
    assert_eq!(run.summary.violations.lost, 0);
    let late = v.outside_window as f64;
    assert!(late <= (run.legs.len() as f64 / 100.0).max(1.0), "{late} late writes of {} contacts", run.legs.len());
    let o = &run.summary.outcomes;
    assert!(o.expired >= 3 && o.applied >= 2, "outcomes: {o:?}");
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cx_a_late_rule_never_writes_after_the_agent_left_acw_when_the_platform_would_refuse() {
    cx_agents_leave_early(ClosedContact::Rejected, CxoneDetection::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cx_a_late_rule_never_writes_after_the_agent_left_acw_when_the_platform_would_accept() {
    cx_agents_leave_early(ClosedContact::Accepted, CxoneDetection::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cx_a_late_rule_never_writes_after_the_agent_left_acw_sessions() {
    cx_agents_leave_early(ClosedContact::Accepted, CxoneDetection::Sessions).await;
}

/// A platform that answers 2xx to a share of writes and does not keep them: no leg is `applied` without our code on
/// it; a dropped write is written once more inside the window, and a leg whose second write is dropped too goes to
/// a person with the reason.
fn assert_unpersisted_writes_are_caught(
    legs: &[wrapup_core::lifecycle::LegRecord],
    ours: &[(String, bool)],
    dropped: u64,
) {
    assert!(dropped > 0, "the sandbox dropped some accepted writes");
    let coded_by_us: std::collections::HashMap<&str, bool> = ours.iter().map(|(p, api)| (p.as_str(), *api)).collect();
    let mut reviews = 0;
    for leg in legs {
        match leg.outcome {
            Some(Outcome::Applied) => assert_eq!(
                coded_by_us.get(leg.key.participant.as_str()),
                Some(&true),
                "applied without our code on the leg: {leg:?}"
            ),
            Some(Outcome::Review) => {
                let reason = leg.outcome_reason.as_deref().unwrap_or_default();
                assert!(reason.contains("persist"), "review for another reason: {reason}");
                reviews += 1;
            }
            _ => {}
        }
    }
    let rewritten = legs.iter().filter(|l| l.unpersisted_writes > 0 && l.outcome == Some(Outcome::Applied)).count();
    assert!(rewritten + reviews > 0, "some dropped write was noticed: {rewritten} rewritten, {reviews} reviews");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_the_platform_accepts_and_drops_is_never_recorded_as_applied() {
    let mut s = sandbox(center(AcwMode::MandatoryTimeout, Some(60_000)));
    s.faults = wrapup_sandbox::FaultProfile { unpersisted_write_rate: 0.4, ..wrapup_sandbox::FaultProfile::calm() };
    let env = harness::start(s, crate::harness::SUPPORT_IMMEDIATE).await;
    let run = harness::run(env, 5).await;
    let v = &run.report.violations;
    assert_eq!((v.overwrites, v.duplicate_writes, v.outside_window), (0, 0, 0), "{:?}", v.details);
    assert_eq!(run.summary.violations.lost, 0);
    let ours: Vec<(String, bool)> =
        run.truth.iter().map(|t| (t.participant_id.clone(), t.coded_by == wrapup_sandbox::CodedBy::Api)).collect();
    assert_unpersisted_writes_are_caught(&run.legs, &ours, run.report.api.unpersisted_writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cx_a_disposition_the_platform_accepts_and_drops_is_never_recorded_as_applied() {
    let mut s = cx_sandbox(cx_center());
    s.faults = wrapup_sandbox::FaultProfile { unpersisted_write_rate: 0.4, ..wrapup_sandbox::FaultProfile::calm() };
    let env = cx_start(s, crate::harness::SUPPORT_IMMEDIATE, CxoneDetection::Polling).await;
    let run = cx_run(env, 5).await;
    let v = &run.report.violations;
    assert_eq!((v.overwrites, v.duplicate_writes, v.outside_window), (0, 0, 0), "{:?}", v.details);
    assert_eq!(run.summary.violations.lost, 0);
    let ours: Vec<(String, bool)> =
        run.truth.iter().map(|t| (t.contact_id.to_string(), t.coded_by == wrapup_sandbox::CodedBy::Api)).collect();
    assert_unpersisted_writes_are_caught(&run.legs, &ours, run.report.api.unpersisted_writes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_participant_attributes_decides_from_the_attributes_the_platform_shows() {
    let rules = r#"
[[rules]]
name = "gold customers"
code = "Escalated"
[rules.when]
queue = "Support"
attributes = { segment = "gold" }

[[rules]]
name = "everyone else"
code = "Issue resolved"
[rules.when]
queue = "Support"
"#;
    let env = harness::start(sandbox(center(AcwMode::MandatoryTimeout, Some(60_000))), rules).await;
    let run = harness::run(env, 4).await;
    run.assert_no_violations();
    let decided: Vec<_> = run.legs.iter().filter(|l| l.decision.is_some()).collect();
    assert!(decided.len() >= 5, "legs decided: {}", decided.len());
    let (mut gold, mut others) = (0, 0);
    for leg in decided {
        assert!(leg.attributes_read, "the attributes were read before deciding: {leg:?}");
        let segment = leg.facts.attributes.get("segment").map(String::as_str);
        let code = leg.decision.as_ref().map(|d| d.code_name.as_str());
        match segment {
            Some("gold") => {
                gold += 1;
                assert_eq!(code, Some("Escalated"));
            }
            Some(_) => {
                others += 1;
                assert_eq!(code, Some("Issue resolved"));
            }
            None => panic!("no segment attribute on {leg:?}"),
        }
    }
    assert!(gold > 0 && others > 0, "both rules decided legs: {gold} gold, {others} others");
}
