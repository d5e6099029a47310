//! The platform behaviours the public contract leaves open (UNCONFIRMED in platforms/genesys-cloud.md) are switches
//! of the sandbox; the service must keep every invariant under either reading.

use crate::harness::{self, center, sandbox, Drain, Side, Traffic, SUPPORT_IMMEDIATE};
use wrapup_core::Outcome;
use wrapup_sandbox::config::{
    AcwMode, ApplyAfterAcw, ClientCredentialsWrites, CodeNotInQueue, Dist, GetWrapupUnset, SecondWrite,
};
use wrapup_sandbox::Behaviours;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strict_reading_of_every_switch_keeps_the_invariants() {
    let mut c = center(AcwMode::MandatoryTimeout, Some(30_000));
    c.agent.at_disconnect = 0.3;
    // Agents who code do so as the call ends, before any request of ours. One coding a few milliseconds later, while
    // our write is in flight, is the read-then-write race no protocol closes on these platforms (no conditional
    // write; docs/RELIABILITY.md measures it): under a loaded CI machine it would make this test about that race,
    // not about what it checks.
    c.agent.at_disconnect_delay = Dist::new(0.0, 0.0, 0.0);
    c.agent.change_after_api = 0.3;
    c.agent.change_delay = Dist::new(1.0, 2.0, 5.0);
    let mut s = sandbox(c);
    s.behaviours = Behaviours {
        second_write: SecondWrite::Reject,
        get_wrapup_unset: GetWrapupUnset::NotFound,
        apply_after_acw: ApplyAfterAcw::Rejected,
        code_not_in_queue: CodeNotInQueue::Rejected,
        ..Behaviours::default()
    };
    // Agents change our code after it is written, until their window closes: judge only then.
    let run =
        harness::run_until(Side::Genesys, s, SUPPORT_IMMEDIATE, Traffic::Conversations(15), Drain::WindowsClosed).await;
    run.assert_invariants();
    let o = &run.summary.outcomes;
    let needing = run.in_acw().count() as u64;
    assert_eq!(o.applied + o.agent_changed + o.agent_won, needing, "every leg was coded, by us or by its agent: {o:?}");
    assert!(o.applied + o.agent_changed >= 3 && o.agent_won >= 1, "outcomes: {o:?}");
    assert_eq!(o.review, 0, "{o:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_that_forbids_client_credentials_writes_gives_review_naming_the_refusal() {
    let mut s = sandbox(center(AcwMode::MandatoryTimeout, Some(30_000)));
    s.behaviours =
        Behaviours { client_credentials_writes: ClientCredentialsWrites::Forbidden, ..Behaviours::default() };
    let run = harness::run(Side::Genesys, s, SUPPORT_IMMEDIATE, Traffic::Conversations(10)).await;
    let reviews = run.assert_every_leg_ended_unwritten_as(Outcome::Review);
    for leg in &reviews {
        let reason = leg.outcome_reason.as_deref().unwrap_or_default();
        assert!(reason.contains("forbidden"), "reason: {reason}");
    }
    assert_eq!(run.write_requests(), reviews.len() as u64, "one refused write per leg, never retried blindly");
}
