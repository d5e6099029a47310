//! The outbox against a receiver in the test: legs finish in the store, the outbox delivers their messages, the
//! receiver answers as each test tells it and records what arrived. Time is a manual clock the tests step; the
//! tests wait on what the receiver hears or on the store's state, never on the wall.

use super::{start, OutboxSettings};
use crate::intake_auth::{verify, WebhookRequest};
use crate::scheduler::Shutdown;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use wrapup_config::{SigningSecret, SinkConfig, SinkFilter};
use wrapup_core::clock::Clock;
use wrapup_core::lifecycle::WriteIntent;
use wrapup_core::{Event, EventKind, LegFacts, LegKey, Outcome};
use wrapup_store::{DeliveryFilter, DeliveryState, Resend, Save, SinkState, SqliteStore, Store};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug)]
struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    fn step(&self, d: SignedDuration) {
        let mut t = self.0.lock().unwrap();
        *t = t.checked_add(d).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
    fn wall_duration(&self, d: SignedDuration) -> Duration {
        Duration::try_from(d).unwrap_or(Duration::ZERO)
    }
    fn clock_duration(&self, d: Duration) -> SignedDuration {
        SignedDuration::try_from(d).unwrap()
    }
}

fn t0() -> Timestamp {
    "2026-03-01T12:00:00Z".parse().unwrap()
}

/// What the receiver answers next: the first of `script`, then `then` forever.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    Status(u16),
    RetryAfter(u64),
}

#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap().to_str().unwrap()
    }
}

struct Receiver {
    script: Mutex<std::collections::VecDeque<Answer>>,
    then: Mutex<Answer>,
    tx: mpsc::UnboundedSender<Received>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: String) -> Response {
    let answer = r.script.lock().unwrap().pop_front().unwrap_or(*r.then.lock().unwrap());
    let _ = r.tx.send(Received { headers, body });
    match answer {
        Answer::Ok => StatusCode::NO_CONTENT.into_response(),
        Answer::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Answer::RetryAfter(secs) => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", secs.to_string())]).into_response()
        }
    }
}

struct Harness {
    store: Arc<SqliteStore>,
    clock: Arc<ManualClock>,
    receiver: Arc<Receiver>,
    heard: mpsc::UnboundedReceiver<Received>,
    wake: Arc<Notify>,
    shutdown: Shutdown,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Waits (at most 10 s) for the outbox to record its next batch of attempts.
async fn next_record(recorded: &mut tokio::sync::watch::Receiver<u64>) {
    tokio::time::timeout(Duration::from_secs(10), recorded.changed())
        .await
        .expect("the outbox recorded nothing in 10 s")
        .expect("the outbox is running");
}

async fn harness(script: &[Answer], then: Answer, max_age: Duration) -> Harness {
    let (tx, heard) = mpsc::unbounded_channel();
    let receiver =
        Arc::new(Receiver { script: Mutex::new(script.iter().copied().collect()), then: Mutex::new(then), tx });
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let clock = Arc::new(ManualClock(Mutex::new(t0())));
    let sink = SinkConfig {
        name: "crm".into(),
        url: url.parse().unwrap(),
        secret: SigningSecret::parse(SECRET).unwrap(),
        filter: SinkFilter::default(),
        mapping: BTreeMap::from([("Sale".to_string(), "SOLD".to_string())]),
        max_age,
        timeout: Duration::from_secs(5),
        concurrency: 4,
    };
    let wake = Arc::new(Notify::new());
    let ring = wake.clone();
    store.watch_outcomes(Arc::new(move |_: &wrapup_store::OutcomeChange| ring.notify_one()));
    let shutdown = Shutdown::default();
    // The tests step the clock by minutes at a time: a lease that short would run out under an attempt in flight
    // and the message be sent twice (at least once, but these tests count exactly).
    let settings = OutboxSettings {
        poll: Duration::from_millis(20),
        lease: Duration::from_secs(86_400),
        ..OutboxSettings::default()
    };
    let outbox =
        start(store.clone(), clock.clone(), vec![sink], HashMap::new(), settings, wake.clone(), shutdown.clone());
    Harness { store, clock, receiver, heard, wake, shutdown, tasks: outbox.tasks }
}

impl Harness {
    /// The next request the receiver hears (a test that hears nothing in 10 s has failed).
    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(10), self.heard.recv())
            .await
            .expect("the receiver heard nothing")
            .unwrap()
    }

    /// Waits until the deliveries of the sink satisfy `cond`.
    async fn until(&self, what: &str, cond: impl Fn(&[wrapup_store::Delivery]) -> bool) -> Vec<wrapup_store::Delivery> {
        for _ in 0..1000 {
            let all = self.store.outbox_list(&DeliveryFilter::default()).await.unwrap();
            if cond(&all) {
                return all;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the store never showed: {what}");
    }

    /// Steps the clock 10 minutes at a time, each step waiting for another attempt, until `cond` holds.
    async fn drive(&self, what: &str, cond: impl Fn(&[wrapup_store::Delivery]) -> bool) -> Vec<wrapup_store::Delivery> {
        let attempts = |all: &[wrapup_store::Delivery]| all.iter().map(|d| d.attempts).sum::<u32>();
        for _ in 0..200 {
            let all = self.store.outbox_list(&DeliveryFilter::default()).await.unwrap();
            if cond(&all) {
                return all;
            }
            let before = attempts(&all);
            self.clock.step(SignedDuration::from_secs(600));
            self.until("another attempt", |now| attempts(now) > before || cond(now)).await;
        }
        panic!("stepping the clock never led to: {what}");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

fn key(n: usize) -> LegKey {
    LegKey::new("prod", format!("conv-{n}"), format!("part-{n}"))
}

fn ended(k: &LegKey) -> Event {
    Event {
        leg: k.clone(),
        dedupe_key: format!("{k}/end"),
        occurred_at: t0(),
        correlation_id: None,
        kind: EventKind::LegEnded {
            facts: Box::new(LegFacts {
                queue_id: Some("q1".into()),
                queue_name: Some("Sales".into()),
                ended_at: Some(t0()),
                acw_timeout_ms: Some(600_000),
                ..Default::default()
            }),
        },
    }
}

fn coded(k: &LegKey, code: &str, n: u32) -> Event {
    Event {
        leg: k.clone(),
        dedupe_key: format!("{k}/acw/{n}"),
        occurred_at: t0(),
        correlation_id: None,
        kind: EventKind::CodeRecorded { code_id: Some(code.into()), notes: None, system: false },
    }
}

/// The agent codes leg `k` before we do: one `leg.finished` (agent_won).
async fn agent_codes(store: &SqliteStore, k: &LegKey) {
    store.ingest(&[ended(k), coded(k, "agent-code", 1)], t0()).await.unwrap();
}

/// We apply "Sale" to leg `k`, then the agent changes it: `leg.finished` (applied), then `leg.outcome_changed`.
async fn applied_then_changed(store: &SqliteStore, k: &LegKey) {
    store.ingest(&[ended(k)], t0()).await.unwrap();
    let c = store.claim_due(t0(), 10, "w", SignedDuration::from_secs(30)).await.unwrap();
    let c = c.into_iter().find(|c| &c.leg.key == k).unwrap();
    let mut leg = c.leg.clone();
    leg.intent = Some(WriteIntent { code_id: "sale-id".into(), code_name: "Sale".into(), at: t0() });
    leg.written_at = Some(t0());
    leg.finish(Outcome::Applied, None, t0());
    let save = Save { leg: &leg, version: c.version, owner: "w", release: true, lines: &[], stored_outcome: None };
    store.save(save).await.unwrap();
    store.ingest(&[coded(k, "sale-id", 2), coded(k, "other-id", 3)], t0()).await.unwrap();
}

fn verifies(r: &Received) -> bool {
    let key = SigningSecret::parse(SECRET).unwrap();
    let request = WebhookRequest {
        id: r.headers.get("webhook-id").map(|v| v.as_bytes()),
        timestamp: r.headers.get("webhook-timestamp").map(|v| v.as_bytes()),
        signature: r.headers.get("webhook-signature").map(|v| v.as_bytes()),
        body: r.body.as_bytes(),
    };
    verify(key.key(), &request, Timestamp::now().as_second()).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finished_leg_is_delivered_signed_with_its_message_id() {
    let mut h = harness(&[], Answer::Ok, Duration::from_secs(3600)).await;
    agent_codes(&h.store, &key(1)).await;
    applied_then_changed(&h.store, &key(2)).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(h.next().await);
    }
    let messages = h.store.outbox_messages(None, 10).await.unwrap();
    assert_eq!(messages.len(), 3);
    for r in &got {
        assert!(verifies(r), "our own verifier accepts what we sign");
        assert_eq!(r.header("content-type"), "application/json");
        let m = messages.iter().find(|m| m.id == r.header("webhook-id")).expect("the webhook-id is the message id");
        assert_eq!(r.json()["data"]["conversation"], m.leg.conversation.as_str());
        assert_eq!(r.json()["version"], 1);
    }
    let applied = got.iter().map(Received::json).find(|b| b["data"]["outcome"] == "applied").unwrap();
    assert_eq!(applied["type"], "leg.finished");
    assert_eq!(applied["data"]["code"], serde_json::json!({"id": "sale-id", "name": "Sale", "source": "ours"}));
    assert_eq!(applied["data"]["disposition"], "SOLD", "the sink's mapping gives the code's value");
    assert_eq!(applied["data"]["queue"]["name"], "Sales");
    h.until("all delivered", |all| all.len() == 3 && all.iter().all(|d| d.state == DeliveryState::Delivered)).await;
    assert!(h.heard.try_recv().is_err(), "each message once");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_retried_after_its_retry_after_and_not_before() {
    let mut h = harness(&[Answer::RetryAfter(30)], Answer::Ok, Duration::from_secs(3600)).await;
    agent_codes(&h.store, &key(1)).await;
    let first = h.next().await;
    let pending = h.until("the 429 recorded", |all| all.iter().any(|d| d.attempts == 1)).await;
    assert_eq!(pending[0].last_status, Some(429));
    assert_eq!(pending[0].next_at, t0().checked_add(SignedDuration::from_secs(30)).unwrap());
    h.clock.step(SignedDuration::from_secs(29));
    h.wake.notify_one();
    // Nothing is due before the receiver's time: the store says so, and nothing was heard.
    assert!(h
        .store
        .outbox_claim("crm", h.clock.now(), 10, "probe", SignedDuration::from_secs(1))
        .await
        .unwrap()
        .is_empty());
    assert!(h.heard.try_recv().is_err());
    h.clock.step(SignedDuration::from_secs(1));
    let second = h.next().await;
    assert_eq!(first.header("webhook-id"), second.header("webhook-id"), "a retry is the same message");
    assert_eq!(first.body, second.body, "and the same bytes");
    assert!(verifies(&second));
    h.until("delivered", |all| all[0].state == DeliveryState::Delivered).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_down_for_a_while_receives_everything_when_it_is_back() {
    let mut h = harness(&[], Answer::Status(503), Duration::from_secs(24 * 3600)).await;
    for n in 0..5 {
        agent_codes(&h.store, &key(n)).await;
    }
    h.until("every message failed once", |all| all.len() == 5 && all.iter().all(|d| d.attempts >= 1)).await;
    // Still down for several more rounds.
    h.drive("three failed attempts each", |all| all.iter().all(|d| d.attempts >= 3)).await;
    assert!(h
        .store
        .outbox_list(&DeliveryFilter::default())
        .await
        .unwrap()
        .iter()
        .all(|d| d.state == DeliveryState::Pending));
    *h.receiver.then.lock().unwrap() = Answer::Ok;
    let all = h.drive("all delivered", |all| all.iter().all(|d| d.state == DeliveryState::Delivered)).await;
    assert_eq!(all.len(), 5);
    let mut ids = std::collections::BTreeSet::new();
    while let Ok(r) = h.heard.try_recv() {
        assert!(verifies(&r));
        ids.insert(r.header("webhook-id").to_string());
    }
    assert_eq!(ids.len(), 5, "every message arrived, retries under the same ids");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_disables_the_sink_and_its_messages_wait_for_it() {
    let mut h = harness(&[Answer::Status(410)], Answer::Ok, Duration::from_secs(3600)).await;
    agent_codes(&h.store, &key(1)).await;
    h.next().await;
    h.until("the sink disabled", |all| all.len() == 1 && all[0].last_status == Some(410)).await;
    let sinks = h.store.outbox_sinks().await.unwrap();
    assert_eq!(sinks[0].disabled_status, Some(410));
    agent_codes(&h.store, &key(2)).await;
    h.clock.step(SignedDuration::from_secs(600));
    h.until("both pending", |all| all.len() == 2 && all.iter().all(|d| d.state == DeliveryState::Pending)).await;
    assert!(h.heard.try_recv().is_err(), "a disabled sink is sent nothing");
    // An operator enables it again.
    let enabled = SinkState { name: "crm".into(), disabled_at: None, disabled_status: None, disabled_reason: None };
    h.store.outbox_set_sink(&enabled).await.unwrap();
    h.until("both delivered", |all| all.iter().all(|d| d.state == DeliveryState::Delivered)).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_undelivered_after_max_age_is_a_dead_letter_and_can_be_sent_again() {
    let mut h = harness(&[], Answer::Status(500), Duration::from_secs(3600)).await;
    agent_codes(&h.store, &key(1)).await;
    h.next().await;
    // Failing attempts until the hour is over.
    let all = h.drive("a dead letter", |all| all[0].state == DeliveryState::Dead).await;
    assert!(all[0].attempts >= 2 && all[0].last_status == Some(500));
    assert!(h.clock.now() > all[0].expires_at.checked_sub(SignedDuration::from_secs(600)).unwrap());
    *h.receiver.then.lock().unwrap() = Answer::Ok;
    let now = h.clock.now();
    let n = h
        .store
        .outbox_resend(&Resend::Dead { sink: None }, now, now.checked_add(SignedDuration::from_secs(3600)).unwrap())
        .await
        .unwrap();
    assert_eq!(n, 1);
    h.until("delivered after the retry", |all| all[0].state == DeliveryState::Delivered).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legs_agent_changed_never_overtakes_its_first_code() {
    // The first message fails twice; the leg's second message must wait for it.
    let mut h = harness(&[Answer::Status(503), Answer::Status(503)], Answer::Ok, Duration::from_secs(3600)).await;
    applied_then_changed(&h.store, &key(1)).await;
    h.drive("both delivered", |all| all.len() == 2 && all.iter().all(|d| d.state == DeliveryState::Delivered)).await;
    let mut heard = Vec::new();
    while let Ok(r) = h.heard.try_recv() {
        heard.push(r.json());
    }
    let kinds: Vec<&str> = heard.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["leg.finished", "leg.finished", "leg.finished", "leg.outcome_changed"]);
    assert_eq!(heard[3]["data"]["replaces"], "applied");
    assert_eq!(heard[3]["data"]["code"]["source"], "agent");
    h.until("both delivered", |all| all.iter().all(|d| d.state == DeliveryState::Delivered)).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_lists_deliveries_and_sinks_and_sends_messages_again() {
    // A receiver that answers 410: the sink is disabled, visible in the API, and enabled again from it.
    let (tx, mut heard) = mpsc::unbounded_channel();
    let receiver = Arc::new(Receiver {
        script: Mutex::new([Answer::Status(410)].into_iter().collect()),
        then: Mutex::new(Answer::Ok),
        tx,
    });
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let store = Arc::new(SqliteStore::open_in_memory().await.unwrap());
    let sink = SinkConfig {
        name: "crm".into(),
        url: url.parse().unwrap(),
        secret: SigningSecret::parse(SECRET).unwrap(),
        filter: SinkFilter::default(),
        mapping: BTreeMap::new(),
        max_age: Duration::from_secs(3600),
        timeout: Duration::from_secs(5),
        concurrency: 4,
    };
    let spec = crate::app::ServiceSpec {
        store: store.clone(),
        clock: wrapup_clock::ScaledClock::system().shared(),
        connections: Vec::new(),
        decision_hooks: Default::default(),
        admin_token: Some(wrapup_core::Secret::new("admin-token")),
        viewer_token: None,
        metrics_token: None,
        http: crate::edge::Limits::default(),
        scheduler: crate::scheduler::SchedulerSettings::default(),
        retry: crate::worker::RetryPolicy::default(),
        deadline_guard: Duration::from_millis(500),
        gate_freshness: Duration::from_secs(1),
        confirm_within: Duration::from_secs(5),
        exclusive_store: true,
        sinks: vec![sink],
        outbox: OutboxSettings { poll: Duration::from_millis(20), ..OutboxSettings::default() },
    };
    let handle = crate::app::start(spec, tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).await.unwrap();
    let base = handle.base_url();
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).bearer_auth("admin-token").send();
    let now = Timestamp::now();
    let k = key(1);
    let mut end = ended(&k);
    end.occurred_at = now;
    store.ingest(&[end, coded(&k, "agent-code", 1)], now).await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await.unwrap().unwrap();
    assert!(verifies(&gone));

    let mut recorded = handle.outbox_recorded.clone();
    let disabled = loop {
        recorded.mark_unchanged();
        let sinks: serde_json::Value = get("/api/v1/sinks").await.unwrap().json().await.unwrap();
        if !sinks["sinks"][0]["disabled"].is_null() {
            break sinks;
        }
        next_record(&mut recorded).await;
    };
    assert_eq!(disabled["sinks"][0]["disabled"]["status"], 410);
    assert_eq!(disabled["sinks"][0]["pending"], 1, "{disabled}");
    let unauthorized = http.get(format!("{base}/api/v1/sinks")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let listed: serde_json::Value = get("/api/v1/outbox?state=pending").await.unwrap().json().await.unwrap();
    assert_eq!(listed[0]["message_id"], gone.header("webhook-id"));
    assert_eq!(listed[0]["last_status"], 410);
    let bad = get("/api/v1/outbox?state=lost").await.unwrap();
    assert_eq!(bad.status(), 400);

    let enabled = http.post(format!("{base}/api/v1/sinks/crm/enable")).bearer_auth("admin-token").send().await.unwrap();
    assert_eq!(enabled.status(), 200);
    let delivered = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await.unwrap().unwrap();
    assert_eq!(delivered.header("webhook-id"), gone.header("webhook-id"));
    // Replayed: the same message, once more.
    loop {
        recorded.mark_unchanged();
        let rows = store.outbox_list(&DeliveryFilter::default()).await.unwrap();
        if rows[0].state == DeliveryState::Delivered {
            break;
        }
        next_record(&mut recorded).await;
    }
    let replay = http
        .post(format!("{base}/api/v1/outbox/replay"))
        .bearer_auth("admin-token")
        .json(&serde_json::json!({"since": now.checked_sub(SignedDuration::from_secs(60)).unwrap().to_string()}))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.json::<serde_json::Value>().await.unwrap()["resent"], 1);
    let again = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await.unwrap().unwrap();
    assert_eq!((again.header("webhook-id"), again.body.as_str()), (gone.header("webhook-id"), gone.body.as_str()));
    let unknown =
        http.post(format!("{base}/api/v1/outbox/retry?sink=nope")).bearer_auth("admin-token").send().await.unwrap();
    assert_eq!(unknown.status(), 404);
    handle.shutdown().await;
}
