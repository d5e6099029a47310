//! The reconciler against a sandbox that loses events: legs whose `user.end` never arrives are found through the
//! analytics details query and coded inside their window; nothing is lost, nothing is written twice.

use crate::harness::{self, sandbox_for, Env, Run, Side, Traffic, SUPPORT_IMMEDIATE};
use std::time::Duration;
use wrapup_core::Outcome;
use wrapup_sandbox::FaultProfile;

/// Drives `traffic` to quiescence and returns the run and how many legs the reconciler found.
async fn run_counting_found(env: Env, traffic: Traffic) -> (Run, usize) {
    env.traffic(traffic).await;
    env.quiesce(Duration::from_secs(20)).await;
    let mut found = 0;
    for leg in env.env.legs().await.expect("legs") {
        let ledger = env.env.store.ledger(&leg.key).await.expect("ledger");
        if ledger.iter().any(|e| e.detail.get("reconciler").and_then(|k| k.as_str()) == Some("leg_ended")) {
            found += 1;
        }
    }
    (env.finish().await, found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legs_whose_end_event_was_dropped_are_found_and_coded_in_their_window() {
    let mut s = sandbox_for(Side::Genesys, 60);
    s.faults = FaultProfile { name: "drops".into(), event_drop_rate: 0.3, ..FaultProfile::calm() };
    let env = harness::start(Side::Genesys, s, SUPPORT_IMMEDIATE).await;
    let (run, found) = run_counting_found(env, Traffic::Conversations(20)).await;
    let needing = run.assert_every_leg_coded_by_us();
    assert!(run.report.events.dropped >= 3, "the sandbox dropped events: {:?}", run.report.events);
    assert!(found >= 1, "the reconciler found legs whose user.end was dropped");
    // Every leg that went into ACW is known, ended, and was coded by us (the agents never code here).
    for t in run.in_acw() {
        let leg = run
            .legs
            .iter()
            .find(|l| l.key.conversation == t.conversation_id && l.key.participant == t.participant_id)
            .unwrap_or_else(|| panic!("leg {} is unknown to the service", t.participant_id));
        assert!(leg.ended_seen, "leg {} was never seen ending", t.participant_id);
        assert_eq!(leg.outcome, Some(Outcome::Applied), "leg {}: {:?}", t.participant_id, leg.outcome_reason);
    }
    assert_eq!(run.summary.coverage, Some(1.0), "outcomes: {:?}", run.summary.outcomes);
    assert_eq!(run.write_requests(), needing, "one write per applied leg");
}

async fn the_hostile_platform_breaks_no_invariant_and_loses_no_leg(side: Side) {
    let mut s = sandbox_for(side, 60);
    s.faults = FaultProfile::hostile();
    let env = harness::start(side, s, SUPPORT_IMMEDIATE).await;
    // Wall time: the hostile profile's faults (latency, hangs, storms, revoked tokens) are.
    let (run, _) = run_counting_found(env, Traffic::For(Duration::from_secs(4))).await;
    run.assert_invariants();
    assert!(run.summary.outcomes.applied >= 5, "work went on: {:?}", run.summary.outcomes);
}
harness::sides!(the_hostile_platform_breaks_no_invariant_and_loses_no_leg:
    genesys => (Side::Genesys), cxone => (Side::CXONE));
