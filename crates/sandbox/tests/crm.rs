//! The CRM receiver: signatures, behaviours, down and up, hook answers, waiting without sleeping, the control
//! surface.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use wrapup_sandbox::crm::{Behaviour, CrmError, CrmOptions, CrmReceiver, HookAnswer, Kind, WebhookSecret};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn receiver() -> CrmReceiver {
    let r =
        CrmReceiver::start(CrmOptions { wait_timeout: Duration::from_secs(5), ..CrmOptions::default() }).await.unwrap();
    r.add_sink("crm", SECRET).unwrap();
    r.add_hook("decide", SECRET).unwrap();
    r
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap()
}

/// A signed POST as a Standard Webhooks sender makes it, stamped now.
async fn post_signed(client: &reqwest::Client, url: &str, secret: &str, id: &str, body: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(body).unwrap();
    let ts = jiff::Timestamp::now().as_second();
    let signature = WebhookSecret::parse(secret).unwrap().sign(id, ts, &body);
    client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn leg(conversation: &str, participant: &str) -> Value {
    json!({"connection": "genesys", "conversation": conversation, "participant": participant, "queue": "Support"})
}

#[tokio::test]
async fn the_specification_example_is_accepted_as_sent() {
    // The example of the Standard Webhooks reference libraries is from 2021: widen the tolerance to accept it.
    let r = CrmReceiver::start(CrmOptions {
        tolerance: Duration::from_secs(100 * 365 * 86_400),
        sinks: vec![("crm".into(), SECRET.into())],
        ..CrmOptions::default()
    })
    .await
    .unwrap();
    let resp = http()
        .post(r.sink_url("crm"))
        .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
        .header("webhook-timestamp", "1614265330")
        .header("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        .body(r#"{"test": 2432232314}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got = r.received("crm");
    assert_eq!(got.len(), 1);
    assert!(got[0].verified, "{:?}", got[0]);
    assert_eq!(got[0].webhook_id.as_deref(), Some("msg_p5jXN8AQM9LWM0D4loKWxJek"));
    assert_eq!(got[0].json, Some(json!({"test": 2432232314u64})));
    assert_eq!(got[0].status, Some(200));
    r.shutdown().await;
}

#[tokio::test]
async fn unsigned_wrongly_signed_stale_and_misaddressed_requests_are_refused_and_recorded() {
    let r = receiver().await;
    let c = http();
    let body = json!({"leg": 1});
    let other = WebhookSecret::generate().to_whsec();
    assert_eq!(post_signed(&c, &r.sink_url("crm"), &other, "msg_wrong_key", &body).await.status(), 401);
    assert_eq!(c.post(r.sink_url("crm")).json(&body).send().await.unwrap().status(), 401);
    let stale = jiff::Timestamp::now().as_second() - 301;
    let bytes = serde_json::to_vec(&body).unwrap();
    let signature = WebhookSecret::parse(SECRET).unwrap().sign("msg_stale", stale, &bytes);
    let resp = c
        .post(r.sink_url("crm"))
        .header("webhook-id", "msg_stale")
        .header("webhook-timestamp", stale.to_string())
        .header("webhook-signature", signature)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(post_signed(&c, &format!("{}/sinks/nobody", r.base_url()), SECRET, "msg_x", &body).await.status(), 404);
    assert_eq!(post_signed(&c, &r.sink_url("crm"), SECRET, "msg_good", &body).await.status(), 200);

    let got = r.received("crm");
    let verdicts: Vec<(bool, Option<u16>)> = got.iter().map(|g| (g.verified, g.status)).collect();
    assert_eq!(verdicts, [(false, Some(401)), (false, Some(401)), (false, Some(401)), (true, Some(200))]);
    assert!(got[1].refusal.as_deref().unwrap().contains("webhook-id"), "{:?}", got[1]);
    assert!(got[2].refusal.as_deref().unwrap().contains("301 s"), "{:?}", got[2]);
    assert_eq!(r.distinct_ids("crm").into_iter().collect::<Vec<_>>(), ["msg_good"]);
    let unknown: Vec<_> = r.all_received().into_iter().filter(|g| g.name == "nobody").collect();
    assert_eq!((unknown.len(), unknown[0].verified, unknown[0].status), (1, false, Some(404)));
}

#[tokio::test]
async fn a_failing_sink_fails_the_next_verified_requests_then_recovers() {
    let r = receiver().await;
    let c = http();
    r.set_sink_behaviour("crm", Behaviour::Fail { status: 503, times: 2 }).unwrap();
    // An unsigned request does not spend a failure.
    assert_eq!(c.post(r.sink_url("crm")).body("{}").send().await.unwrap().status(), 401);
    let mut statuses = Vec::new();
    for i in 0..3 {
        statuses.push(post_signed(&c, &r.sink_url("crm"), SECRET, "msg_1", &json!({"try": i})).await.status());
    }
    assert_eq!(statuses, [503, 503, 200]);
    // Every delivery is recorded; the redeliveries share the message's id.
    assert_eq!(r.received("crm").iter().filter(|g| g.verified).count(), 3);
    assert_eq!(r.distinct_ids("crm").len(), 1);
}

#[tokio::test]
async fn too_many_answers_429_with_retry_after_and_gone_answers_410_always() {
    let r = receiver().await;
    let c = http();
    r.set_sink_behaviour("crm", Behaviour::TooMany { retry_after_secs: 7, times: 1 }).unwrap();
    let resp = post_signed(&c, &r.sink_url("crm"), SECRET, "msg_1", &json!({})).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(post_signed(&c, &r.sink_url("crm"), SECRET, "msg_1", &json!({})).await.status(), 200);
    r.set_sink_behaviour("crm", Behaviour::Gone).unwrap();
    for id in ["msg_2", "msg_3", "msg_4"] {
        assert_eq!(post_signed(&c, &r.sink_url("crm"), SECRET, id, &json!({})).await.status(), 410);
    }
    let statuses: Vec<_> = r.received("crm").iter().map(|g| g.status).collect();
    assert_eq!(statuses, [Some(429), Some(200), Some(410), Some(410), Some(410)]);
}

#[tokio::test]
async fn a_delayed_answer_is_recorded_at_arrival_and_completed_when_sent() {
    let r = receiver().await;
    r.set_sink_behaviour("crm", Behaviour::Delay(Duration::from_millis(300))).unwrap();
    let started = Instant::now();
    let (url, c) = (r.sink_url("crm"), http());
    let sending = tokio::spawn(async move { post_signed(&c, &url, SECRET, "msg_slow", &json!({})).await.status() });
    let pending = r.wait_for("crm", |g| g.len() == 1).await.unwrap();
    assert_eq!(pending[0].status, None, "recorded before it is answered");
    assert_eq!(sending.await.unwrap(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let done = r.wait_for("crm", |g| g.first().is_some_and(|g| g.status.is_some())).await.unwrap();
    assert_eq!(done[0].status, Some(200));
}

#[tokio::test]
async fn down_refuses_connections_and_up_listens_again_on_the_same_port() {
    let r = receiver().await;
    let addr = r.base_url().trim_start_matches("http://").to_string();
    let c = http();
    // A connection kept alive before going down must not keep reaching the receiver.
    assert_eq!(post_signed(&c, &r.sink_url("crm"), SECRET, "msg_1", &json!({})).await.status(), 200);
    r.down().await;
    assert!(!r.is_up());
    let refused = tokio::net::TcpStream::connect(&addr).await.unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let body = serde_json::to_vec(&json!({})).unwrap();
    assert!(c.post(r.sink_url("crm")).body(body).send().await.is_err(), "the kept-alive connection is closed too");
    // The control port stays up and reports it.
    let status: Value =
        c.get(format!("{}/_control/status", r.control_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(status["up"], false);

    r.up().await.unwrap();
    assert_eq!(r.base_url(), format!("http://{addr}"));
    assert_eq!(post_signed(&c, &r.sink_url("crm"), SECRET, "msg_2", &json!({})).await.status(), 200);
    assert_eq!(r.distinct_ids("crm").len(), 2);

    // Down for a while comes back by itself, on the same port.
    r.down_for(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    r.wait_up(true).await.unwrap();
    assert_eq!(post_signed(&c, &r.sink_url("crm"), SECRET, "msg_3", &json!({})).await.status(), 200);
    r.shutdown().await;
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

#[tokio::test]
async fn a_hook_answers_per_leg_per_conversation_by_default_or_not_at_all() {
    let r = receiver().await;
    let c = http();
    let url = r.hook_url("decide");
    r.answer("decide", "conv-a", "Sale").unwrap();
    r.answer_leg("decide", "conv-a", "agent-2", HookAnswer { code: "Transfer".into(), notes: Some("second".into()) })
        .unwrap();
    let resp = post_signed(&c, &url, SECRET, "h1", &leg("conv-a", "agent-1")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"code": "Sale"}));
    let resp = post_signed(&c, &url, SECRET, "h2", &leg("conv-a", "agent-2")).await;
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"code": "Transfer", "notes": "second"}));
    assert_eq!(post_signed(&c, &url, SECRET, "h3", &leg("conv-b", "agent-1")).await.status(), 204);
    r.default_answer("decide", Some("Other")).unwrap();
    let resp = post_signed(&c, &url, SECRET, "h4", &leg("conv-b", "agent-1")).await;
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"code": "Other"}));
    r.default_answer("decide", None).unwrap();
    assert_eq!(post_signed(&c, &url, SECRET, "h5", &leg("conv-b", "agent-1")).await.status(), 204);
    assert_eq!(post_signed(&c, &url, SECRET, "h6", &json!({"no": "leg"})).await.status(), 400);
    assert_eq!(c.post(&url).json(&leg("conv-a", "agent-1")).send().await.unwrap().status(), 401);

    let got = r.hook_requests("decide");
    assert_eq!(got.len(), 7);
    assert!(got.iter().all(|g| g.kind == Kind::Hook));
    assert_eq!(got[0].answer, Some(json!({"code": "Sale"})));
    assert_eq!(got[0].json.as_ref().unwrap()["participant"], "agent-1");
    assert!(r.received("decide").is_empty(), "hooks and sinks are apart");
}

#[tokio::test]
async fn a_slow_hook_lets_its_caller_time_out_and_a_failing_one_fails() {
    let r = receiver().await;
    r.answer("decide", "conv-a", "Sale").unwrap();
    r.set_hook_behaviour("decide", Behaviour::Delay(Duration::from_secs(3))).unwrap();
    let impatient = reqwest::Client::builder().timeout(Duration::from_millis(100)).build().unwrap();
    let body = serde_json::to_vec(&leg("conv-a", "agent-1")).unwrap();
    let ts = jiff::Timestamp::now().as_second();
    let sig = WebhookSecret::parse(SECRET).unwrap().sign("h1", ts, &body);
    let sent = impatient
        .post(r.hook_url("decide"))
        .header("webhook-id", "h1")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(body)
        .send()
        .await;
    assert!(sent.unwrap_err().is_timeout());
    let got = r.wait_for_hook("decide", |g| !g.is_empty()).await.unwrap();
    assert!(got[0].verified);

    let c = http();
    r.set_hook_behaviour("decide", Behaviour::Fail { status: 500, times: 1 }).unwrap();
    assert_eq!(post_signed(&c, &r.hook_url("decide"), SECRET, "h2", &leg("conv-a", "p")).await.status(), 500);
    r.set_hook_behaviour("decide", Behaviour::TooMany { retry_after_secs: 1, times: 1 }).unwrap();
    assert_eq!(post_signed(&c, &r.hook_url("decide"), SECRET, "h3", &leg("conv-a", "p")).await.status(), 429);
    assert_eq!(post_signed(&c, &r.hook_url("decide"), SECRET, "h4", &leg("conv-a", "p")).await.status(), 200);
}

#[tokio::test]
async fn waiting_counts_messages_once_and_fails_cleanly_when_they_never_come() {
    let r = CrmReceiver::start(CrmOptions {
        wait_timeout: Duration::from_millis(200),
        sinks: vec![("crm".into(), SECRET.into())],
        ..CrmOptions::default()
    })
    .await
    .unwrap();
    let (url, c) = (r.sink_url("crm"), http());
    let sending = tokio::spawn(async move {
        for id in ["m1", "m2", "m2", "m3"] {
            post_signed(&c, &url, SECRET, id, &json!({"id": id})).await;
        }
    });
    let got = r.wait_until_distinct("crm", 3).await.unwrap();
    assert!(got.len() >= 4);
    sending.await.unwrap();
    assert_eq!(r.wait_until_count("crm", 4).await.unwrap().len(), 4);
    match r.wait_until_count("crm", 5).await {
        Err(CrmError::WaitTimedOut { seen, .. }) => assert_eq!(seen, 4),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn the_control_surface_configures_reads_and_takes_the_receiver_down() {
    let r = CrmReceiver::start(CrmOptions::default()).await.unwrap();
    let c = http();
    let control = |path: &str| format!("{}/_control/{path}", r.control_url());
    // Unknown sinks need a secret to be created.
    let resp = c.post(control("sinks/crm")).json(&json!({"behaviour": {"kind": "gone"}})).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let resp = c
        .post(control("sinks/crm"))
        .json(&json!({"secret": SECRET, "behaviour": {"kind": "fail", "status": 502, "times": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["behaviour"], json!({"kind": "fail", "status": 502, "times": 1}));
    assert_eq!(post_signed(&c, &r.sink_url("crm"), SECRET, "m1", &json!({})).await.status(), 502);
    assert_eq!(post_signed(&c, &r.sink_url("crm"), SECRET, "m1", &json!({})).await.status(), 200);
    let records: Value = c.get(control("received/crm")).send().await.unwrap().json().await.unwrap();
    assert_eq!(records.as_array().unwrap().len(), 2);
    assert_eq!(records[1]["webhook_id"], "m1");
    assert_eq!(records[1]["verified"], true);
    assert_eq!(records[1]["status"], 200);

    let hook =
        json!({"secret": SECRET, "default": {"code": "Other"}, "answers": {"conv-a": {"code": "Sale", "notes": "n"}}});
    assert_eq!(c.post(control("hooks/decide")).json(&hook).send().await.unwrap().status(), 200);
    let resp = post_signed(&c, &r.hook_url("decide"), SECRET, "h1", &leg("conv-a", "p")).await;
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"code": "Sale", "notes": "n"}));
    assert_eq!(
        c.post(control("hooks/decide"))
            .json(&json!({"default": null, "clear_answers": true}))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(post_signed(&c, &r.hook_url("decide"), SECRET, "h2", &leg("conv-a", "p")).await.status(), 204);
    let hooks: Value = c.get(control("hooks/decide/received")).send().await.unwrap().json().await.unwrap();
    assert_eq!(hooks.as_array().unwrap().len(), 2);
    let bad = c.post(control("sinks/crm")).json(&json!({"behaviour": {"kind": "explode"}})).send().await.unwrap();
    assert_eq!(bad.status(), 400);

    assert_eq!(c.post(control("down")).send().await.unwrap().status(), 200);
    assert!(tokio::net::TcpStream::connect(r.base_url().trim_start_matches("http://")).await.is_err());
    assert_eq!(c.post(control("up")).send().await.unwrap().status(), 200);
    assert_eq!(post_signed(&c, &r.sink_url("crm"), SECRET, "m2", &json!({})).await.status(), 200);
    assert_eq!(c.delete(control("received")).send().await.unwrap().status(), 204);
    assert!(r.all_received().is_empty());
}

#[tokio::test]
async fn only_loopback_addresses_are_accepted() {
    let options = CrmOptions { listen: "0.0.0.0:0".parse().unwrap(), ..CrmOptions::default() };
    assert!(matches!(CrmReceiver::start(options).await, Err(CrmError::NotLoopback(_))));
}

#[tokio::test]
async fn the_cli_with_crm_prints_the_receiver_and_its_secrets_in_the_first_line() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wrapup-sandbox"))
        .args(["--listen", "127.0.0.1:0", "--seed", "5", "--crm"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let crm = &info["crm"];
    assert!(crm["base_url"].as_str().unwrap().starts_with("http://127.0.0.1:"), "{info}");
    let sink = &crm["sinks"][0];
    assert_eq!(sink["name"], "crm");
    let secret = sink["secret"].as_str().unwrap();
    assert_eq!(secret, WebhookSecret::from_seed(5, "sink").to_whsec(), "the seed gives the secret");
    let c = http();
    assert_eq!(post_signed(&c, sink["url"].as_str().unwrap(), secret, "m1", &json!({})).await.status(), 200);
    let control = crm["control_url"].as_str().unwrap();
    let records: Value = c.get(format!("{control}/_control/received/crm")).send().await.unwrap().json().await.unwrap();
    assert_eq!(records[0]["verified"], true);
    let hook = &crm["hooks"][0];
    assert_eq!(
        post_signed(&c, hook["url"].as_str().unwrap(), hook["secret"].as_str().unwrap(), "h1", &leg("c", "p"))
            .await
            .status(),
        204
    );
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_are_each_recorded_and_counted_once_per_message() {
    let r = receiver().await;
    let mut senders = Vec::new();
    for s in 0..8 {
        let (url, c) = (r.sink_url("crm"), http());
        senders.push(tokio::spawn(async move {
            for i in 0..50 {
                // Every message twice, as an at-least-once sender may.
                for _ in 0..2 {
                    let status =
                        post_signed(&c, &url, SECRET, &format!("msg_{s}_{i}"), &json!({"i": i})).await.status();
                    assert_eq!(status, 200);
                }
            }
        }));
    }
    let got = r.wait_until_distinct("crm", 400).await.unwrap();
    assert!(got.len() >= 400);
    for s in senders {
        s.await.unwrap();
    }
    assert_eq!(r.wait_until_count("crm", 800).await.unwrap().len(), 800);
    assert_eq!(r.distinct_ids("crm").len(), 400);
    let all = r.all_received();
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "in arrival order");
}
