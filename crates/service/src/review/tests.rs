//! The review queue's routes on a service whose platform has a fixed catalog and keeps what is written to it. Legs
//! are made by events, as intake makes them; the worker decides them (`review`: the rule's code is not on the
//! leg's queue). The tests wait on the store's state, never a fixed time.

use super::*;
use crate::app::{ConnectionSpec, ServiceHandle, ServiceSpec};
use crate::platform::{CallStats, LegPlatform, Urgency};
use axum::body::Body;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use std::sync::Mutex;
use tower::ServiceExt;
use wrapup_connectors::error::PlatformError;
use wrapup_connectors::Precondition;
use wrapup_core::catalog::{Catalog, CodeEntry};
use wrapup_core::rules::RuleSet;
use wrapup_core::{LegFacts, Outcome, Platform, Secret};

const OPERATOR: &str = "operator-token";
const VIEWER: &str = "viewer-token";

/// A platform with the lookup tests' catalog that keeps the last code written to it (and counts the writes).
struct Keeping {
    name: String,
    written: Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl LegPlatform for Keeping {
    fn connection(&self) -> &str {
        &self.name
    }
    fn platform(&self) -> Platform {
        Platform::Genesys
    }
    async fn fetch_catalog(&self) -> Result<Catalog, PlatformError> {
        Ok(crate::lookup::tests::catalog())
    }
    async fn read_code(&self, _: &LegRecord, _: Urgency) -> Result<Option<String>, PlatformError> {
        Ok(self.written.lock().unwrap().last().cloned())
    }
    async fn write_code(
        &self,
        _: &LegRecord,
        code: &CodeEntry,
        _: Option<&str>,
        _: Urgency,
        _: &dyn Precondition,
    ) -> Result<(), PlatformError> {
        self.written.lock().unwrap().push(code.id.clone());
        Ok(())
    }
    fn stats(&self) -> CallStats {
        CallStats::default()
    }
}

struct Service {
    handle: ServiceHandle,
    platform: Arc<Keeping>,
}

async fn service(name: &str) -> Service {
    let store: Arc<dyn wrapup_store::Store> = Arc::new(wrapup_store::SqliteStore::open_in_memory().await.unwrap());
    let clock = wrapup_clock::ScaledClock::new(Timestamp::now(), 1.0).shared();
    // Gold customers get `Sale`, which the Support queue does not have: such a leg ends `review`.
    let rules: RuleSet =
        serde_json::from_value(json!([{"name": "vip", "code": "Sale", "when": {"attributes": {"tier": "gold"}}}]))
            .unwrap();
    let platform = Arc::new(Keeping { name: name.into(), written: Mutex::new(Vec::new()) });
    let spec = ServiceSpec {
        store,
        clock,
        connections: vec![ConnectionSpec {
            name: name.into(),
            platform: platform.clone(),
            rules: Arc::new(rules),
            intake: None,
            lookup: None,
            decisions: None,
            catalog_ttl: SignedDuration::from_secs(3600),
            acw_estimate_default: SignedDuration::from_secs(20),
            websocket: None,
            reconcile: None,
            cxone: None,
        }],
        decision_hooks: Default::default(),
        admin_token: Some(Secret::new(OPERATOR)),
        viewer_token: Some(Secret::new(VIEWER)),
        metrics_token: None,
        http: crate::edge::Limits::default(),
        scheduler: crate::scheduler::SchedulerSettings::default(),
        retry: crate::worker::RetryPolicy::default(),
        deadline_guard: Duration::from_millis(500),
        gate_freshness: Duration::from_secs(1),
        // Read back soon after a write, so that a written resolution ends within the request.
        confirm_within: Duration::from_millis(200),
        exclusive_store: true,
        sinks: Vec::new(),
        outbox: crate::outbox::OutboxSettings::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = crate::app::start(spec, listener).await.unwrap();
    for runtime in handle.state.connections.values() {
        runtime.catalog.get().await.expect("the catalog loads");
    }
    Service { handle, platform }
}

fn leg_key(connection: &str, n: u8) -> LegKey {
    LegKey::new(
        connection,
        format!("6f1e3a8c-2b4d-4e5f-8a9b-0c1d2e3f4a{n:02x}"),
        format!("0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c{n:02x}"),
    )
}

/// A Support leg of a gold customer whose agent part ended `ago` seconds ago (a 30 s window), decided by the
/// worker: the leg that waits for a person.
async fn review_leg(s: &Service, key: &LegKey, ago: i64) -> LegRecord {
    let state = &s.handle.state;
    let ended = state.clock.now().checked_sub(SignedDuration::from_secs(ago)).unwrap();
    let facts = LegFacts {
        platform: Some(Platform::Genesys),
        communication_id: Some("5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f".into()),
        media: Some("calls".into()),
        channel: Some(wrapup_core::Channel::Voice),
        queue_id: Some("q-sup".into()),
        ended_at: Some(ended),
        acw_timeout_ms: Some(30_000),
        attributes: [("tier".to_string(), "gold".to_string())].into(),
        ..Default::default()
    };
    let event = Event {
        leg: key.clone(),
        dedupe_key: format!("end/{key}"),
        occurred_at: ended,
        correlation_id: None,
        kind: EventKind::LegEnded { facts: Box::new(facts) },
    };
    let mut changes = state.dashboard.subscribe();
    state.store.ingest(&[event], state.clock.now()).await.unwrap();
    state.wake.notify_one();
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let leg = state.store.get_leg(key).await.unwrap().unwrap().leg;
        if leg.state == LegState::Done {
            return leg;
        }
        // The leg's ending is an outcome change: wait for the next one.
        let changed = tokio::time::timeout_at(until, changes.changed()).await;
        assert!(matches!(changed, Ok(Ok(()))), "the worker did not finish {key}: {leg:?}");
    }
}

async fn send(s: &Service, request: axum::http::Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let response = crate::admin::router(s.handle.state.clone()).oneshot(request).await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, headers, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn get(s: &Service, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = axum::http::Request::get(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let (status, _, body) = send(s, request.body(Body::empty()).unwrap()).await;
    (status, body)
}

async fn post(s: &Service, key: &LegKey, action: &str, body: impl Into<Body>, token: &str) -> (StatusCode, Value) {
    let request = axum::http::Request::post(format!("/api/v1/review/{key}/{action}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    let (status, _, body) = send(s, request).await;
    (status, body)
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn viewers_read_the_queue_and_operators_act_on_it() {
    let s = service("rv-auth").await;
    let key = leg_key("rv-auth", 1);
    let leg = review_leg(&s, &key, 0).await;
    assert_eq!(leg.outcome, Some(Outcome::Review));

    let (status, page) = get(&s, "/api/v1/review?connection=rv-auth", Some(VIEWER)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["leg"]["key"]["participant"], key.participant);
    assert!(page["items"][0]["reason"].as_str().unwrap().contains("Sale"), "{page}");
    assert_eq!(page["next_cursor"], Value::Null);
    let (status, detail) = get(&s, &format!("/api/v1/review/{key}"), Some(VIEWER)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(detail["ledger"].as_array().unwrap().iter().any(|l| l["kind"] == "outcome"), "{detail}");

    let body = json!({"code": "Resolved"}).to_string();
    let (status, answer) = post(&s, &key, "resolve", body.clone(), VIEWER).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::FORBIDDEN, "forbidden"));
    let (status, _) = get(&s, "/api/v1/review", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(s.handle.state.store.get_leg(&key).await.unwrap().unwrap().leg.resolution, None);
    s.handle.shutdown().await;
}

#[tokio::test]
async fn a_code_for_an_open_window_is_written_by_the_worker_once() {
    let s = service("rv-open").await;
    let key = leg_key("rv-open", 2);
    review_leg(&s, &key, 0).await;
    assert!(s.platform.written.lock().unwrap().is_empty(), "nothing written while the code could not be used");

    let body = json!({"code": "Resolved", "note": "customer confirmed", "by": "ana"}).to_string();
    let (status, answer) = post(&s, &key, "resolve", body, OPERATOR).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"], "written");
    assert_eq!((answer["leg"]["state"].as_str(), answer["leg"]["outcome"].as_str()), (Some("done"), Some("applied")));
    assert_eq!(*s.platform.written.lock().unwrap(), ["c-res"], "one write, of the operator's code");
    let ledger = s.handle.state.store.ledger(&key).await.unwrap();
    let line = ledger.iter().find(|l| l.detail["event"] == "operator_resolved").expect("the operator's line");
    assert_eq!(
        (line.detail["operator"]["by"].as_str(), line.detail["operator"]["note"].as_str()),
        (Some("ana"), Some("customer confirmed"))
    );
    let changed = ledger.iter().find(|l| l.kind == "outcome_changed").expect("review → applied");
    assert_eq!(changed.detail["replaces"], "review");
    // It is no longer in the queue, and acting on it again says where it stands.
    let (_, page) = get(&s, "/api/v1/review", Some(VIEWER)).await;
    assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
    let (status, again) = post(&s, &key, "dismiss", json!({"note": "dup"}).to_string(), OPERATOR).await;
    assert_eq!((status, error_code(&again)), (StatusCode::CONFLICT, "not_in_review"));
    assert!(again["error"]["message"].as_str().unwrap().contains("done (applied)"), "{again}");
    s.handle.shutdown().await;
}

#[tokio::test]
async fn a_code_for_a_closed_window_is_recorded_announced_and_not_taken_twice() {
    let s = service("rv-closed").await;
    let key = leg_key("rv-closed", 3);
    // Its window closed 30 s ago: the worker or the expiry sweep ends it first.
    let leg = review_leg(&s, &key, 60).await;
    assert!(matches!(leg.outcome, Some(Outcome::Review | Outcome::Expired)), "{leg:?}");
    let (_, page) = get(&s, "/api/v1/review?include_expired=true", Some(VIEWER)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");

    let (status, answer) = post(&s, &key, "resolve", json!({"code": "c-res"}).to_string(), OPERATOR).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["result"], "recorded");
    assert_eq!(answer["leg"]["outcome"], json!(leg.outcome.map(|o| o.as_str())), "the outcome is kept");
    assert_eq!(answer["leg"]["resolution"]["code"]["name"], "Resolved");
    assert_eq!(answer["leg"]["resolution"]["by"], "operator");
    assert!(s.platform.written.lock().unwrap().is_empty(), "nothing is written after the window");
    let messages = s.handle.state.store.outbox_messages(Some(&key), 10).await.unwrap();
    let resolved = messages.iter().find(|m| m.kind == "leg.resolved").expect("the outbox announces it");
    assert_eq!(resolved.body["data"]["code"]["id"], "c-res");
    assert_eq!(resolved.body["data"]["code"]["source"], "operator");

    let (status, again) = post(&s, &key, "resolve", json!({"code": "Resolved"}).to_string(), OPERATOR).await;
    assert_eq!((status, error_code(&again)), (StatusCode::CONFLICT, "already_resolved"), "{again}");
    let (_, page) = get(&s, "/api/v1/review?include_expired=true", Some(VIEWER)).await;
    assert!(page["items"].as_array().unwrap().is_empty(), "{page}");
    s.handle.shutdown().await;
}

#[tokio::test]
async fn a_form_dismissal_redirects_to_the_legs_page_and_pages_follow_the_cursor() {
    let s = service("rv-form").await;
    let (a, b) = (leg_key("rv-form", 4), leg_key("rv-form", 5));
    review_leg(&s, &a, 0).await;
    review_leg(&s, &b, 0).await;
    let (_, first) = get(&s, "/api/v1/review?limit=1", Some(VIEWER)).await;
    let cursor = first["next_cursor"].as_str().expect("a second page").to_string();
    let (_, second) = get(&s, &format!("/api/v1/review?limit=1&cursor={cursor}"), Some(VIEWER)).await;
    assert_eq!(second["next_cursor"], Value::Null);
    let keys: Vec<&Value> = [&first, &second].iter().map(|p| &p["items"][0]["leg"]["key"]["participant"]).collect();
    assert_ne!(keys[0], keys[1]);

    let request = axum::http::Request::post(format!("/api/v1/review/{a}/dismiss"))
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("note=test+call%2C+no+customer&by=ana"))
        .unwrap();
    let (status, headers, _) = send(&s, request).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let location = headers.get("location").unwrap().to_str().unwrap();
    assert_eq!(location, format!("/dashboard/legs/{a}"));
    let resolution = s.handle.state.store.get_leg(&a).await.unwrap().unwrap().leg.resolution.unwrap();
    assert_eq!((resolution.action, resolution.by.as_str()), (ResolutionAction::Dismissed, "ana"));
    assert_eq!(resolution.note.as_deref(), Some("test call, no customer"));
    let (_, page) = get(&s, "/api/v1/review", Some(VIEWER)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    s.handle.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_a_precise_refusal_and_change_nothing() {
    let s = service("rv-bad").await;
    let key = leg_key("rv-bad", 6);
    review_leg(&s, &key, 0).await;
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "resolve",
            json!({"code": "Resolved", "colour": 1}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        ("resolve", "{".into(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("resolve", json!({"code": "No such code"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "unknown_code"),
        ("resolve", json!({"code": "Sale"}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "code_not_on_queue"),
        (
            "resolve",
            json!({"code": "Resolved", "by": "x".repeat(101)}).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        ("dismiss", json!({"note": " "}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("dismiss", json!({"note": "x".repeat(1001)}).to_string(), StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
        ("dismiss", " ".repeat(MAX_BODY_BYTES + 1), StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
    ];
    for (action, body, want, code) in cases {
        let shown: String = body.chars().take(60).collect();
        let (status, answer) = post(&s, &key, action, body, OPERATOR).await;
        assert_eq!((status, error_code(&answer)), (want, code), "{action} {shown}: {answer}");
    }
    let bad_id = LegKey::new("rv-bad", "not-a-uuid", key.participant.clone());
    let (status, answer) = post(&s, &bad_id, "dismiss", json!({"note": "n"}).to_string(), OPERATOR).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::BAD_REQUEST, "invalid_id"));
    let unknown = leg_key("rv-bad", 7);
    let (status, answer) = post(&s, &unknown, "dismiss", json!({"note": "n"}).to_string(), OPERATOR).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::NOT_FOUND, "not_found"));
    let (status, answer) = get(&s, "/api/v1/review?cursor=zz", Some(VIEWER)).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::BAD_REQUEST, "bad_cursor"));
    let (status, answer) = get(&s, "/api/v1/review?colour=red", Some(VIEWER)).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::BAD_REQUEST, "bad_query"));
    let request = axum::http::Request::post(format!("/api/v1/review/{key}/dismiss"))
        .header("authorization", format!("Bearer {OPERATOR}"))
        .header("content-type", "text/plain")
        .body(Body::from("note"))
        .unwrap();
    assert_eq!(send(&s, request).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let leg = s.handle.state.store.get_leg(&key).await.unwrap().unwrap().leg;
    assert_eq!((leg.outcome, leg.resolution), (Some(Outcome::Review), None));
    s.handle.shutdown().await;
}
