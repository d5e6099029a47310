//! The decision API through the intake router, on a service whose platform has a fixed catalog (see the lookup's
//! tests). What a decision does to a leg in its window is tested end to end against the sandbox.

use super::*;
use crate::lookup::tests::{api_key, send, service, KEY};
use axum::body::Body;
use tower::ServiceExt;
use wrapup_core::{LegFacts, Platform};

const CONV: &str = "6f1e3a8c-2b4d-4e5f-8a9b-0c1d2e3f4a5b";
const PART: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";

fn put(connection: &str, path: &str, key: Option<&str>, body: impl Into<Body>) -> axum::http::Request<Body> {
    let mut request = axum::http::Request::put(format!("/api/v1/decisions/{connection}/{path}"))
        .header("x-wrapup-intake-key", KEY)
        .header("content-type", "application/json");
    if let Some(key) = key {
        request = request.header(HEADER_IDEMPOTENCY_KEY, key);
    }
    request.body(body.into()).unwrap()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn bad_requests_get_a_precise_4xx_and_store_nothing() {
    let handle = service(vec![("dc-bad", Platform::Genesys, api_key(), None)]).await;
    let store = handle.state.store.clone();
    let good = json!({"code": "Resolved"}).to_string();
    let cases: Vec<(axum::http::Request<Body>, StatusCode, &str)> = vec![
        (put("nope", CONV, Some("k"), good.clone()), StatusCode::NOT_FOUND, "unknown_connection"),
        (put("dc-bad", CONV, None, good.clone()), StatusCode::BAD_REQUEST, "idempotency_key_required"),
        (put("dc-bad", CONV, Some("a key"), good.clone()), StatusCode::BAD_REQUEST, "invalid_idempotency_key"),
        (put("dc-bad", "not-a-uuid", Some("k"), good.clone()), StatusCode::BAD_REQUEST, "invalid_id"),
        (put("dc-bad", &format!("{CONV}/42"), Some("k"), good.clone()), StatusCode::BAD_REQUEST, "invalid_id"),
        (put("dc-bad", CONV, Some("k"), "{"), StatusCode::BAD_REQUEST, "invalid_json"),
        (
            put("dc-bad", CONV, Some("k"), r#"{"code": "Resolved", "colour": 1}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_decision",
        ),
        (put("dc-bad", CONV, Some("k"), r#"{"code": " "}"#), StatusCode::UNPROCESSABLE_ENTITY, "invalid_decision"),
        (
            put("dc-bad", CONV, Some("k"), r#"{"code": "Resolved", "expires_at": "soon"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_decision",
        ),
        (
            put("dc-bad", CONV, Some("k"), r#"{"code": "No such code"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_code",
        ),
        (put("dc-bad", CONV, Some("k"), vec![b' '; MAX_BODY_BYTES + 1]), StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
    ];
    for (request, status, code) in cases {
        let uri = request.uri().to_string();
        let (got, body) = send(&handle, request).await;
        assert_eq!((got, error_code(&body)), (status, code), "{uri}: {body}");
    }
    // Unauthenticated: refused before the body is read.
    let mut unauthenticated = put("dc-bad", CONV, Some("k"), good.clone());
    unauthenticated.headers_mut().insert("x-wrapup-intake-key", HeaderValue::from_static("wrong"));
    assert_eq!(send(&handle, unauthenticated).await.0, StatusCode::UNAUTHORIZED);
    // Not JSON by its type.
    let mut text = put("dc-bad", CONV, Some("k"), good);
    text.headers_mut().insert("content-type", HeaderValue::from_static("text/plain"));
    assert_eq!(send(&handle, text).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let leg = LegKey::new("dc-bad", CONV, PART);
    assert_eq!(store.pending_decision(&leg).await.unwrap(), None, "nothing kept");
    assert_eq!(store.idempotency_answer("dc-bad", "k").await.unwrap(), None, "no key used");
    handle.shutdown().await;
}

#[tokio::test]
async fn a_decision_before_its_leg_is_kept_and_a_key_answers_once_per_request() {
    let handle = service(vec![("dc-early", Platform::Genesys, api_key(), None)]).await;
    let body = json!({"code": "resolved", "notes": "ticket 42 closed", "source": "zendesk"}).to_string();
    let (status, first) = send(&handle, put("dc-early", CONV, Some("k-1"), body.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!((first["status"].as_str(), first["code"].as_str()), (Some("pending"), Some("Resolved")));
    let kept = handle.state.store.pending_decision(&LegKey::new("dc-early", CONV, PART)).await.unwrap().unwrap();
    assert_eq!((kept.code_name.as_str(), kept.source.as_str()), ("Resolved", "zendesk"));
    assert_eq!(kept.idempotency_key.as_deref(), Some("k-1"));

    // The same key and request: the first answer, marked as a replay; nothing new is kept.
    let response = crate::admin::intake_router(handle.state.clone())
        .oneshot(put("dc-early", CONV, Some("k-1"), body.clone()))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers().get("idempotent-replayed").map(|v| v.as_bytes()), Some(&b"true"[..]));
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), first);
    // The same key with another body, or for another target: 409, and the kept decision is unchanged.
    let other = json!({"code": "Other"}).to_string();
    let (status, body409) = send(&handle, put("dc-early", CONV, Some("k-1"), other)).await;
    assert_eq!((status, error_code(&body409)), (StatusCode::CONFLICT, "idempotency_key_reused"));
    let (status, _) = send(&handle, put("dc-early", &format!("{CONV}/{PART}"), Some("k-1"), body)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let still = handle.state.store.pending_decision(&LegKey::new("dc-early", CONV, PART)).await.unwrap().unwrap();
    assert_eq!(still, kept);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_decision_too_late_or_for_a_code_the_queue_lacks_says_why() {
    let handle = service(vec![("dc-late", Platform::Genesys, api_key(), None)]).await;
    let store = handle.state.store.clone();
    let key = LegKey::new("dc-late", CONV, PART);
    let now = handle.state.clock.now();
    let event = |kind: EventKind, dedupe: &str| Event {
        leg: key.clone(),
        dedupe_key: dedupe.into(),
        occurred_at: now,
        correlation_id: None,
        kind,
    };
    // An agent coded the leg; it is also known to be on the Sales queue.
    let facts = LegFacts { queue_id: Some("q-sales".into()), ended_at: Some(now), ..Default::default() };
    store
        .ingest(
            &[
                event(EventKind::CodeRecorded { code_id: Some("c-sale".into()), notes: None, system: false }, "a"),
                event(EventKind::LegEnded { facts: Box::new(facts) }, "b"),
            ],
            now,
        )
        .await
        .unwrap();
    let (status, body) =
        send(&handle, put("dc-late", &format!("{CONV}/{PART}"), Some("k-2"), json!({"code": "Resolved"}).to_string()))
            .await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, "code_not_on_queue"), "{body}");
    let (status, body) =
        send(&handle, put("dc-late", &format!("{CONV}/{PART}"), Some("k-3"), json!({"code": "Sale"}).to_string()))
            .await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "agent_code_present"), "{body}");
    assert_eq!(body["legs"][0]["outcome"], "agent_won");
    let leg = store.get_leg(&key).await.unwrap().unwrap().leg;
    assert_eq!((leg.outcome, leg.external), (Some(Outcome::AgentWon), None), "the agent's code stands");
    handle.shutdown().await;
}
