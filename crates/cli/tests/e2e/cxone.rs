//! What only NICE CXone has: agent sessions that the platform rotates and ends under the service. The scenarios both
//! platforms share run for CXone in `invariants.rs`, `acw_modes.rs` and `restart.rs`.

use crate::harness::{self, cx_center, cx_sandbox, Side, SUPPORT_IMMEDIATE};
use std::time::Duration;
use wrapup_demo::DemoEnv;
use wrapup_sandbox::cxone::StaleSessionId;
use wrapup_sandbox::CxoneBehaviours;

/// Ends every agent session the service joined (as `DELETE agent-sessions/{sid}` does); returns how many.
fn end_joined_sessions(env: &DemoEnv) -> usize {
    env.sandbox.with_bu(|bu| {
        let mut ended = 0;
        for s in bu.sessions.iter_mut().filter(|s| !s.ended) {
            s.ended = true;
            s.events.push_back(serde_json::json!({"Type": "AgentSessionEnd", "Success": "True", "Message": ""}));
            s.notify.notify_one();
            ended += 1;
        }
        ended
    })
}

async fn rotated_and_ended_sessions_are_followed_and_writes_continue(side: Side) {
    let mut s = cx_sandbox(cx_center());
    // A pre-rotation session id is refused: every write must carry the newest id.
    s.cxone.behaviours = CxoneBehaviours { stale_session_id: StaleSessionId::Rejected, ..CxoneBehaviours::default() };
    let env = harness::start(side, s, SUPPORT_IMMEDIATE).await;
    // Wall time: sessions are ended at moments of the run, with traffic going on around them.
    env.env.sandbox.start_traffic();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ended_first = end_joined_sessions(&env.env);
    let cut = env.env.clock.now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ended_second = end_joined_sessions(&env.env);
    tokio::time::sleep(Duration::from_secs(1)).await;
    env.env.sandbox.stop_traffic();
    env.quiesce(Duration::from_secs(20)).await;
    let run = env.finish().await;
    assert!(ended_first > 0 && ended_second > 0, "sessions were ended mid-run: {ended_first}, {ended_second}");
    run.assert_every_leg_coded_by_us();
    assert_eq!(run.summary.outcomes.review, 0, "no contact failed on a gone session: {:?}", run.summary.outcomes);
    let writes = run.cx_writes.as_ref().expect("CXone writes");
    let after_end =
        writes.iter().filter(|w| w.status == 200 && w.at.parse::<jiff::Timestamp>().is_ok_and(|at| at > cut)).count();
    assert!(after_end >= 2, "the service rejoined and wrote after the sessions ended: {writes:?}");
    if side == Side::CXONE_SESSIONS {
        assert!(run.calls_to("get-next-event") > 0, "the session detector long-polled");
    }
}
harness::sides!(rotated_and_ended_sessions_are_followed_and_writes_continue:
    polling => (Side::CXONE), sessions => (Side::CXONE_SESSIONS));
