//! The reconciler against a sandbox that loses events: legs whose `user.end` never arrives are found through the
//! analytics details query and coded inside their window; nothing is lost, nothing is written twice.

use crate::harness::{self, center, sandbox, Run, SUPPORT_IMMEDIATE};
use jiff::Timestamp;
use std::time::Duration;
use wrapup_core::Outcome;
use wrapup_sandbox::config::AcwMode;
use wrapup_sandbox::FaultProfile;

/// Runs traffic for `secs`, lets the service settle, and returns the run, how many legs the reconciler found, and a
/// moment by which every leg in ACW had been through at least two reconcile passes.
async fn run_counting_found(env: wrapup_demo::DemoEnv, secs: u64) -> (Run, usize, Timestamp) {
    env.sandbox.start_traffic();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    env.sandbox.stop_traffic();
    let pending = env.settle(Duration::from_secs(8)).await.expect("settle");
    assert_eq!(pending, 0, "every closed window has an outcome in the service");
    // Legs may still enter ACW as the last calls end: give those that did so far two more passes.
    let swept = env.clock.now();
    tokio::time::sleep(Duration::from_millis(3 * wrapup_demo::DEFAULT_RECONCILE_EVERY_MS)).await;
    // Those passes may have written to such legs: let every write they made reach its outcome before counting.
    let pending = env.settle(Duration::from_secs(8)).await.expect("settle");
    assert_eq!(pending, 0, "every closed window has an outcome in the service");
    let mut found = 0;
    for leg in env.legs().await.expect("legs") {
        let ledger = env.store.ledger(&leg.key).await.expect("ledger");
        if ledger.iter().any(|e| e.detail.get("reconciler").and_then(|k| k.as_str()) == Some("leg_ended")) {
            found += 1;
        }
    }
    let done = env.finish_with_truth().await.expect("finish");
    (Run { summary: done.summary, legs: done.legs, report: done.report, truth: done.truth }, found, swept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legs_whose_end_event_was_dropped_are_found_and_coded_in_their_window() {
    let mut s = sandbox(center(AcwMode::MandatoryTimeout, Some(60_000)));
    s.faults = FaultProfile { name: "drops".into(), event_drop_rate: 0.3, ..FaultProfile::calm() };
    let env = harness::start(s, SUPPORT_IMMEDIATE).await;
    let (run, found, swept) = run_counting_found(env, 4).await;
    run.assert_no_violations();
    assert!(run.report.events.dropped >= 3, "the sandbox dropped events: {:?}", run.report.events);
    assert!(found >= 1, "the reconciler found legs whose user.end was dropped");
    // Every leg that went into ACW is known, ended, and was coded by us (the agents never code here).
    let started_before = |t: &&wrapup_sandbox::LegTruth| {
        t.acw_started_at.as_deref().and_then(|a| a.parse::<Timestamp>().ok()).is_some_and(|a| a < swept)
    };
    let in_acw: Vec<_> = run.truth.iter().filter(started_before).collect();
    assert!(in_acw.len() >= 10, "enough legs to mean something: {}", in_acw.len());
    for t in &in_acw {
        let leg = run
            .legs
            .iter()
            .find(|l| l.key.conversation == t.conversation_id && l.key.participant == t.participant_id)
            .unwrap_or_else(|| panic!("leg {} is unknown to the service", t.participant_id));
        assert!(leg.ended_seen, "leg {} was never seen ending", t.participant_id);
        assert!(t.api_writes <= 1, "leg {} was written {} times", t.participant_id, t.api_writes);
        if t.window_closed_at.is_some() || leg.is_done() {
            assert_eq!(leg.outcome, Some(Outcome::Applied), "leg {}: {:?}", t.participant_id, leg.outcome_reason);
        }
    }
    assert_eq!(run.summary.coverage, Some(1.0), "outcomes: {:?}", run.summary.outcomes);
    assert_eq!(run.write_requests(), run.summary.outcomes.applied, "one write per applied leg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hostile_platform_breaks_no_invariant_and_loses_no_leg() {
    let mut s = sandbox(center(AcwMode::MandatoryTimeout, Some(60_000)));
    s.faults = FaultProfile::hostile();
    let env = harness::start(s, SUPPORT_IMMEDIATE).await;
    let (run, _, _) = run_counting_found(env, 4).await;
    run.assert_no_violations();
    assert!(run.summary.outcomes.applied >= 5, "work went on: {:?}", run.summary.outcomes);
    for t in run.truth.iter().filter(|t| t.acw_started_at.is_some()) {
        assert!(t.api_writes <= 1, "leg {} was written {} times", t.participant_id, t.api_writes);
    }
}
