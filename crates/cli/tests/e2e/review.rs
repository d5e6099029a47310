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

/// Ticks at every commit that changes a leg's outcome: what the loops below wait on between reads.
fn outcome_changes(env: &harness::Env) -> tokio::sync::watch::Receiver<u64> {
    env.env.service.as_ref().expect("the service runs").state.dashboard.subscribe()
}

/// The first leg in `review` whose window the sandbox still shows open (no code on it), waiting at most 30 s.
async fn review_leg_in_its_window(env: &harness::Env) -> LegRecord {
    let started = Instant::now();
    let mut changes = outcome_changes(env);
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
        // A leg ending in review is an outcome change; the bound re-reads the sandbox's windows now and then.
        let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
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

/// `wrapup review …` with `args`, as a user runs it: (exit code, stdout, stderr).
async fn wrapup_review(args: Vec<String>) -> (i32, String, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_wrapup")).arg("review").args(&args).output()
    })
    .await
    .unwrap()
    .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_lists_shows_and_dismisses_and_leaves_open_windows_to_a_running_service() {
    let dir = tempfile::tempdir().unwrap();
    let opts = wrapup_demo::EnvOptions {
        sandbox: sandbox_for(Side::Genesys, 300),
        rules: unusable_rule(),
        speed: harness::SPEED,
        requests_per_minute: 6000,
        data_dir: Some(dir.path().to_path_buf()),
        cxone: None,
        store: None,
        lookup_fallback: None,
    };
    let env = wrapup_demo::DemoEnv::start_with_intake(opts, wrapup_demo::IntakeMode::EventBridge).await.unwrap();
    let env = harness::Env { side: Side::Genesys, env };
    env.env.sandbox.start_traffic();
    let started = Instant::now();
    let mut changes = outcome_changes(&env);
    let reviews = loop {
        let legs = env.env.legs_of(wrapup_demo::CONNECTION).await.expect("legs");
        let reviews: Vec<LegRecord> = legs.into_iter().filter(|l| l.outcome == Some(Outcome::Review)).collect();
        if reviews.len() >= 2 {
            break reviews;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "two review legs did not come in 30 s");
        let _ = tokio::time::timeout(Duration::from_secs(30), changes.changed()).await;
    };
    env.env.sandbox.stop_traffic();
    env.quiesce(Duration::from_secs(20)).await;
    // The service is gone from here on; the legs' windows are still open (five minutes of platform time).
    env.finish().await;

    let config = dir.path().join(wrapup_demo::CONFIG_FILE).display().to_string();
    let with = |mut args: Vec<&str>, key: &LegRecord| {
        let k = &key.key;
        let mut all = vec![args.remove(0).to_string(), "--config".into(), config.clone()];
        all.extend([k.connection.clone(), k.conversation.clone(), k.participant.clone()]);
        all.extend(args.into_iter().map(str::to_string));
        all
    };
    let (code, out, err) = wrapup_review(vec!["list".into(), "--config".into(), config.clone(), "--json".into()]).await;
    assert_eq!(code, 0, "{err}");
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    let listed = page["items"].as_array().unwrap().len();
    assert!(listed >= 2, "{page}");

    let (a, b) = (&reviews[0], &reviews[1]);
    let (code, _, err) = wrapup_review(with(vec!["resolve", "--code", "Issue resolved"], a)).await;
    assert_ne!(code, 0, "an open window is not resolved without a service");
    assert!(err.contains("running wrapup service") && err.contains("none answered"), "{err}");

    let (code, out, err) =
        wrapup_review(with(vec!["dismiss", "--note", "a test call", "--by", "cli-operator"], b)).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("dismissed"), "{out}");
    let (code, out, err) = wrapup_review(with(vec!["show", "--json"], b)).await;
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["leg"]["resolution"]["action"], "dismissed");
    let line = shown["ledger"].as_array().unwrap().iter().find(|l| l["detail"]["event"] == "operator_resolved");
    assert_eq!(line.expect("the ledger line")["detail"]["operator"]["by"], "cli-operator");
    let (code, _, err) = wrapup_review(with(vec!["dismiss", "--note", "again"], b)).await;
    assert_ne!(code, 0);
    assert!(err.contains("already dismissed by cli-operator"), "{err}");

    let (_, out, _) = wrapup_review(vec!["list".into(), "--config".into(), config.clone(), "--json".into()]).await;
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), listed - 1, "the dismissed leg left the queue");
    let a_after = &page["items"].as_array().unwrap().iter().find(|i| i["leg"]["key"] == serde_json::json!(a.key));
    assert!(a_after.is_some_and(|i| i["leg"]["resolution"].is_null()), "the refused resolution changed nothing");

    // With --record the operator's code is recorded, and nothing is written, though the window may be open.
    let (code, out, err) =
        wrapup_review(with(vec!["resolve", "--code", "Issue resolved", "--record", "--by", "cli-operator"], a)).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("recorded"), "{out}");
    let (_, out, _) = wrapup_review(with(vec!["show", "--json"], a)).await;
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["leg"]["resolution"]["action"], "recorded");
    assert_eq!(shown["leg"]["resolution"]["code"]["name"], "Issue resolved");
    assert_eq!(shown["leg"]["state"], "done", "the leg was not handed back to a worker");
}
