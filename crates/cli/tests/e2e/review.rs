//! The review queue end to end: legs a rule cannot code (its code is not on the queue) wait for a person; an
//! operator's code for a leg still in its window is written by the worker, once and inside the window, as the
//! sandbox's truth shows; one for a leg whose window closed is recorded and announced in the outbox.

use crate::harness::{self, sandbox_for, Side, Traffic};
use std::time::{Duration, Instant};
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::Outcome;
use wrapup_sandbox::CodedBy;

/// Every Support leg is decided "Test code", which the queue does not have: `review`, nothing written.
fn unusable_rule() -> String {
    harness::rule("wrong code", "Test code", "Support", "")
}

/// The admin API's base URL and the operator token, if the demo's config sets one.
fn admin(env: &harness::Env) -> (String, Option<String>) {
    let service = env.env.service.as_ref().expect("the service runs");
    let base = service.admin_addr.map_or_else(|| service.base_url(), |a| format!("http://{a}"));
    (base, env.env.config.admin.token.as_ref().map(|t| t.expose().to_string()))
}

async fn resolve(env: &harness::Env, leg: &LegRecord, body: serde_json::Value) -> (u16, serde_json::Value) {
    let (base, token) = admin(env);
    let k = &leg.key;
    let mut request = reqwest::Client::new()
        .post(format!("{base}/api/v1/review/{}/{}/{}/resolve", k.connection, k.conversation, k.participant))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("the admin API answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

/// The first leg in `review` whose window the sandbox still shows open (no code on it), waiting at most 30 s.
async fn review_leg_in_its_window(env: &harness::Env) -> LegRecord {
    let started = Instant::now();
    loop {
        let truth = env.truth();
        let open = |leg: &LegRecord| {
            truth.iter().any(|t| {
                t.conversation_id == leg.key.conversation
                    && t.participant_id == leg.key.participant
                    && t.state == "acw"
                    && t.coded_by == CodedBy::None
            })
        };
        let legs = env.env.legs_of(wrapup_demo::CONNECTION).await.expect("legs");
        if let Some(leg) = legs.into_iter().find(|l| l.outcome == Some(Outcome::Review) && open(l)) {
            return leg;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no review leg in its window within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_code_for_a_leg_in_its_window_is_written_once_by_the_worker() {
    // A five-minute window (30 s of wall time): long enough for the operator to act inside it.
    let env = harness::start(Side::Genesys, sandbox_for(Side::Genesys, 300), &unusable_rule()).await;
    env.env.sandbox.start_traffic();
    let leg = review_leg_in_its_window(&env).await;
    env.env.sandbox.stop_traffic();
    let (status, answer) =
        resolve(&env, &leg, serde_json::json!({"code": "Issue resolved", "by": "e2e-operator", "note": "checked"}))
            .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "written", "{answer}");
    env.quiesce(Duration::from_secs(40)).await;
    let ledger = env.env.store.ledger(&leg.key).await.expect("the ledger");
    let line = ledger.iter().find(|l| l.detail["event"] == "operator_resolved").expect("the operator's ledger line");
    assert_eq!(line.detail["operator"]["by"], "e2e-operator");
    assert_eq!(line.detail["operator"]["code"]["name"], "Issue resolved");
    let resolved = env.env.store.get_leg(&leg.key).await.expect("store").expect("the leg").leg;
    assert_eq!(resolved.outcome, Some(Outcome::Applied), "{resolved:?}");

    let run = env.finish().await;
    let truth = run
        .truth
        .iter()
        .find(|t| t.conversation_id == leg.key.conversation && t.participant_id == leg.key.participant)
        .expect("the leg's truth");
    assert_eq!((truth.coded_by, truth.api_writes), (CodedBy::Api, 1), "exactly one write landed: {truth:?}");
    assert_eq!(truth.final_code_name.as_deref(), Some("Issue resolved"));
    // No write outside a window, no overwrite, no duplicate: the sandbox saw none.
    run.assert_invariants();
    assert_eq!(run.accepted_writes(), 1, "only the operator's leg was written: {:?}", run.report.api.by_endpoint);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_code_after_the_window_is_recorded_and_announced() {
    let env = harness::start(Side::Genesys, sandbox_for(Side::Genesys, 30), &unusable_rule()).await;
    env.traffic(Traffic::Conversations(3)).await;
    env.quiesce_until(Duration::from_secs(30), harness::Drain::WindowsClosed).await;
    let legs = env.env.legs_of(wrapup_demo::CONNECTION).await.expect("legs");
    let leg = legs.iter().find(|l| l.outcome == Some(Outcome::Review)).expect("a review leg").clone();
    let (status, answer) = resolve(&env, &leg, serde_json::json!({"code": "Issue resolved"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"], "recorded", "{answer}");
    assert_eq!(answer["leg"]["outcome"], "review", "the leg keeps its outcome");
    assert_eq!(answer["leg"]["resolution"]["by"], "operator");
    let messages = env.env.store.outbox_messages(Some(&leg.key), 10).await.expect("outbox");
    let resolved = messages.iter().find(|m| m.kind == "leg.resolved").expect("an outbox message for the resolution");
    assert_eq!(resolved.body["data"]["code"]["name"], "Issue resolved");
    assert_eq!(resolved.body["data"]["code"]["source"], "operator");
    let (status, again) = resolve(&env, &leg, serde_json::json!({"code": "Issue resolved"})).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("already_resolved")), "{again}");
    let run = env.finish().await;
    assert_eq!(run.accepted_writes(), 0, "nothing is written after a window");
    run.assert_invariants();
}
