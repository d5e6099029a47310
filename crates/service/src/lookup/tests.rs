//! The lookup through the intake router, on a service started with a platform whose catalog is fixed.

use super::*;
use crate::app::{ConnectionSpec, ServiceHandle, ServiceSpec};
use crate::intake_auth::{sign, StandardWebhooks};
use crate::platform::{CallStats, LegPlatform, Urgency};
use axum::body::Body;
use jiff::SignedDuration;
use tower::ServiceExt;
use wrapup_connectors::error::PlatformError;
use wrapup_connectors::Precondition;
use wrapup_core::catalog::{CodeEntry, QueueEntry};
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::rules::RuleSet;
use wrapup_core::Secret;

pub(crate) const KEY: &str = "lookup-key";
pub(crate) const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A platform that has a catalog and is never called for anything else.
pub(crate) struct FixedCatalog {
    name: String,
    platform: Platform,
}

#[async_trait::async_trait]
impl LegPlatform for FixedCatalog {
    fn connection(&self) -> &str {
        &self.name
    }
    fn platform(&self) -> Platform {
        self.platform
    }
    async fn fetch_catalog(&self) -> Result<Catalog, PlatformError> {
        Ok(catalog())
    }
    async fn read_code(&self, _: &LegRecord, _: Urgency) -> Result<Option<String>, PlatformError> {
        Ok(None)
    }
    async fn write_code(
        &self,
        _: &LegRecord,
        _: &CodeEntry,
        _: Option<&str>,
        _: Urgency,
        _: &dyn Precondition,
    ) -> Result<(), PlatformError> {
        Ok(())
    }
    fn stats(&self) -> CallStats {
        CallStats::default()
    }
}

pub(crate) fn catalog() -> Catalog {
    let code = |id: &str, name: &str| CodeEntry { id: id.into(), name: name.into() };
    let queue = |id: &str, name: &str, codes: &[&str]| QueueEntry {
        id: id.into(),
        name: name.into(),
        code_ids: codes.iter().map(|c| c.to_string()).collect(),
        acw_timeout_ms: Some(30_000),
        acw_mode: None,
        acw: None,
    };
    Catalog {
        codes: vec![code("c-res", "Resolved"), code("c-sale", "Sale"), code("c-oth", "Other")],
        queues: vec![queue("q-sup", "Support", &["c-res", "c-oth"]), queue("q-sales", "Sales", &["c-sale"])],
    }
}

fn rules() -> RuleSet {
    serde_json::from_value(json!([
        {"name": "vip", "code": "Sale", "when": {"attributes": {"tier": "gold"}}},
        {"name": "sales email", "code": "Sale", "mode": "shadow", "when": {"queue": "Sales", "channel": "email"}},
        {"name": "support voice", "code": "Resolved", "when": {"queue": "Support", "channel": "voice"}},
    ]))
    .unwrap()
}

/// One lookup connection per name: `(name, platform, auth, fallback)`.
pub(crate) async fn service(connections: Vec<(&str, Platform, IntakeAuth, Option<&str>)>) -> ServiceHandle {
    service_with(connections, |_| {}).await
}

/// [`service`], with the spec changed by `tweak` before the service starts.
pub(crate) async fn service_with(
    connections: Vec<(&str, Platform, IntakeAuth, Option<&str>)>,
    tweak: impl FnOnce(&mut ServiceSpec),
) -> ServiceHandle {
    let store: Arc<dyn wrapup_store::Store> = Arc::new(wrapup_store::SqliteStore::open_in_memory().await.unwrap());
    let clock = wrapup_clock::ScaledClock::new(jiff::Timestamp::now(), 1.0).shared();
    let rules = Arc::new(rules());
    let connections = connections
        .into_iter()
        .map(|(name, platform, auth, fallback)| ConnectionSpec {
            name: name.into(),
            platform: Arc::new(FixedCatalog { name: name.into(), platform }),
            rules: rules.clone(),
            intake: None,
            lookup: Some(LookupSettings { auth: auth.clone(), fallback_code: fallback.map(str::to_string) }),
            decisions: Some(crate::decisions::DecisionSettings { auth }),
            catalog_ttl: SignedDuration::from_secs(3600),
            acw_estimate_default: SignedDuration::from_secs(20),
            websocket: None,
            reconcile: None,
            cxone: None,
        })
        .collect();
    let mut spec = ServiceSpec {
        store,
        clock,
        connections,
        decision_hooks: Default::default(),
        admin_token: None,
        viewer_token: None,
        metrics_token: None,
        http: crate::edge::Limits::default(),
        scheduler: crate::scheduler::SchedulerSettings::default(),
        retry: crate::worker::RetryPolicy::default(),
        deadline_guard: std::time::Duration::from_millis(500),
        gate_freshness: std::time::Duration::from_secs(1),
        confirm_within: std::time::Duration::from_secs(5),
        exclusive_store: true,
        sinks: Vec::new(),
        outbox: crate::outbox::OutboxSettings::default(),
    };
    tweak(&mut spec);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let handle = crate::app::start(spec, listener).await.unwrap();
    // The first load is the one that waits: once every catalog answers, lookups are served from it.
    for runtime in handle.state.connections.values() {
        runtime.catalog.get().await.expect("the catalog loads");
    }
    handle
}

pub(crate) fn api_key() -> IntakeAuth {
    IntakeAuth::ApiKey { header: "x-wrapup-intake-key".into(), key: Secret::new(KEY) }
}

pub(crate) async fn send(handle: &ServiceHandle, request: axum::http::Request<Body>) -> (StatusCode, Value) {
    let response = crate::admin::intake_router(handle.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes))))
}

async fn get(handle: &ServiceHandle, uri: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut request = axum::http::Request::get(uri);
    if let Some(k) = key {
        request = request.header("x-wrapup-intake-key", k);
    }
    send(handle, request.body(Body::empty()).unwrap()).await
}

async fn decide(handle: &ServiceHandle, connection: &str, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = axum::http::Request::post(format!("/api/v1/lookup/{connection}/decision"))
        .header("x-wrapup-intake-key", KEY)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap();
    send(handle, request).await
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

pub(crate) fn metric(name_and_labels: &str) -> f64 {
    let rendered = crate::admin::metrics_handle().expect("a recorder").render();
    rendered.lines().find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn a_code_name_resolves_to_its_id_and_its_queue_assignment_is_checked() {
    let handle = service(vec![("lk-codes", Platform::Genesys, api_key(), None)]).await;
    let base = "/api/v1/lookup/lk-codes/codes";
    assert_eq!(
        get(&handle, &format!("{base}?name=Resolved"), Some(KEY)).await,
        (StatusCode::OK, json!({"code": "Resolved", "code_id": "c-res"}))
    );
    // Names match as rules' code names do (case-insensitively when no exact match), and are URL-decoded.
    assert_eq!(
        get(&handle, &format!("{base}?name=resolved&queue=Support"), Some(KEY)).await,
        (StatusCode::OK, json!({"code": "Resolved", "code_id": "c-res", "queue": "Support", "queue_id": "q-sup"}))
    );
    let (status, body) = get(&handle, &format!("{base}?name=Resolved&queue=Sales"), Some(KEY)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "not_assigned"));
    assert_eq!(body["error"]["message"], "code \"Resolved\" exists but is not assigned to queue \"Sales\"");
    let (status, body) = get(&handle, &format!("{base}?name=No%20such%20code"), Some(KEY)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown_code"));
    assert_eq!(body["error"]["message"], "no code named \"No such code\" in the catalog of connection \"lk-codes\"");
    let (status, body) = get(&handle, &format!("{base}?name=Resolved&queue=Billing"), Some(KEY)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown_queue"));
    for (query, fragment) in [
        ("", "the query needs name=<code name>"),
        ("?name=%20", "the query needs name=<code name>"),
        ("?name=Resolved&skill=Support", "skill= is for CXone connections"),
        ("?name=Resolved&queu=Support", "unknown field `queu`"),
    ] {
        let (status, body) = get(&handle, &format!("{base}{query}"), Some(KEY)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(fragment), "{query}: {body}");
    }
    handle.shutdown().await;
}

#[tokio::test]
async fn lookups_need_the_connections_credentials_and_an_existing_connection() {
    let handle = service(vec![("lk-auth", Platform::Genesys, api_key(), Some("Other"))]).await;
    for key in [None, Some("wrong"), Some("")] {
        let (status, body) = get(&handle, "/api/v1/lookup/lk-auth/codes?name=Resolved", key).await;
        assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "unauthenticated"), "{key:?}");
        assert_eq!(body["error"]["message"], "missing or wrong API key in header x-wrapup-intake-key");
    }
    let unsigned = axum::http::Request::post("/api/v1/lookup/lk-auth/decision")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(send(&handle, unsigned).await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = get(&handle, "/api/v1/lookup/nowhere/codes?name=Resolved", Some(KEY)).await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown_connection"));
    let (status, body) = decide(&handle, "nowhere", "{}").await;
    assert_eq!((status, error_code(&body)), (StatusCode::NOT_FOUND, "unknown_connection"));
    handle.shutdown().await;
}

#[tokio::test]
async fn a_signed_connection_verifies_the_signature_of_the_facts() {
    let key = wrapup_config::SigningSecret::parse(WHSEC).unwrap();
    let auth = IntakeAuth::StandardWebhooks(Arc::new(StandardWebhooks::new(key.clone())));
    let handle = service(vec![("lk-signed", Platform::Genesys, auth, None)]).await;
    let body = br#"{"queue_name":"Support","channel":"voice"}"#;
    let now = jiff::Timestamp::now().as_second();
    let request = |id: &str, signed: &[u8], sent: &'static [u8]| {
        axum::http::Request::post("/api/v1/lookup/lk-signed/decision")
            .header("webhook-id", id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", sign(key.key(), id, now, signed))
            .body(Body::from(sent))
            .unwrap()
    };
    let (status, answer) = send(&handle, request("msg_1", body, body)).await;
    assert_eq!((status, answer["code_id"].clone()), (StatusCode::OK, json!("c-res")));
    let (status, answer) = send(&handle, request("msg_2", body, br#"{"queue_name":"Sales"}"#)).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    handle.shutdown().await;
}

#[tokio::test]
async fn a_decision_names_the_code_its_id_the_rule_and_the_rule_set_version() {
    let handle = service(vec![("lk-decide", Platform::Genesys, api_key(), Some("Other"))]).await;
    let version = rules().version().to_string();
    assert_eq!(version.len(), 16);
    let fallbacks_before = metric("wrapup_lookup_fallbacks_total{connection=\"lk-decide\"}");
    let (status, body) =
        decide(&handle, "lk-decide", r#"{"queue_name":"Support","channel":"voice","talk_ms":42000}"#).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"code": "Resolved", "code_id": "c-res", "rule": "support voice", "rule_set_version": version,
                "fallback": false})
        )
    );
    // The queue by id: the rules see its name from the catalog.
    let (_, body) = decide(&handle, "lk-decide", r#"{"queue_id":"q-sup","channel":"voice","direction":null}"#).await;
    assert_eq!(body["rule"], "support voice");
    assert_eq!(metric("wrapup_lookup_fallbacks_total{connection=\"lk-decide\"}"), fallbacks_before);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_leg_no_rule_decides_gets_the_fallback_which_is_counted() {
    let handle = service(vec![
        ("lk-fallback", Platform::Genesys, api_key(), Some("Other")),
        ("lk-nofallback", Platform::Genesys, api_key(), None),
    ])
    .await;
    let version = rules().version().to_string();
    let counted = || metric("wrapup_lookup_fallbacks_total{connection=\"lk-fallback\"}");
    let before = counted();
    // No rule for chats on Support.
    let (status, body) = decide(&handle, "lk-fallback", r#"{"queue_name":"Support","channel":"chat"}"#).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"code": "Other", "code_id": "c-oth", "rule": null, "rule_set_version": version, "fallback": true,
                "reason": "no rule decides this leg"})
        )
    );
    // A rule decides a code the queue does not allow: the fallback, with the reason.
    let (_, body) = decide(&handle, "lk-fallback", r#"{"queue_name":"Support","attributes":{"tier":"gold"}}"#).await;
    assert_eq!(body["fallback"], true);
    assert_eq!(
        body["reason"],
        "rule \"vip\" decides code \"Sale\", which cannot be used: code \"Sale\" exists but is not assigned to queue \
         \"Support\""
    );
    assert_eq!(counted() - before, 2.0);
    assert!(metric("wrapup_lookups_total{connection=\"lk-fallback\",route=\"decision\",result=\"fallback\"}") >= 2.0);

    // Without a fallback: 404, and still an explicit `fallback: false` with the reason.
    let (status, body) = decide(&handle, "lk-nofallback", r#"{"queue_name":"Support","channel":"chat"}"#).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::NOT_FOUND,
            json!({"error": {"code": "no_decision", "message": "no rule decides this leg"}, "fallback": false})
        )
    );
    // A shadow rule is measured, never written: it does not decide a lookup either.
    let (status, body) = decide(&handle, "lk-nofallback", r#"{"queue_name":"Sales","channel":"email"}"#).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body["error"]["message"],
        "rule \"sales email\" decides this leg in shadow mode, which is never written"
    );
    // The fallback must be allowed on the leg's queue too.
    let (status, body) = decide(&handle, "lk-fallback", r#"{"queue_name":"Sales","channel":"chat"}"#).await;
    assert_eq!((status, error_code(&body)), (StatusCode::CONFLICT, "fallback_unusable"));
    handle.shutdown().await;
}

#[tokio::test]
async fn bad_facts_get_a_4xx_with_the_reason() {
    let handle = service(vec![("lk-bad", Platform::Genesys, api_key(), Some("Other"))]).await;
    let long = "x".repeat(MAX_TEXT_CHARS + 1);
    let cases: Vec<(String, StatusCode, &str, &str)> = vec![
        ("not json".into(), StatusCode::BAD_REQUEST, "invalid_json", "the body is not JSON"),
        ("[1]".into(), StatusCode::BAD_REQUEST, "invalid_facts", "must be a JSON object"),
        (r#"{"queue":"Support"}"#.into(), StatusCode::BAD_REQUEST, "unknown_fact", "unknown fact \"queue\"; accepted:"),
        (r#"{"channel":"fax"}"#.into(), StatusCode::BAD_REQUEST, "invalid_facts", "unknown variant `fax`"),
        (r#"{"talk_ms":-1}"#.into(), StatusCode::BAD_REQUEST, "invalid_facts", "talk_ms"),
        (r#"{"attributes":{"a":1}}"#.into(), StatusCode::BAD_REQUEST, "invalid_facts", "expected a string"),
        (r#"{"platform":"cxone"}"#.into(), StatusCode::BAD_REQUEST, "wrong_platform", "this connection is genesys"),
        (format!(r#"{{"queue_name":"{long}"}}"#), StatusCode::BAD_REQUEST, "invalid_facts", "queue_name is longer"),
        (r#"{"queue_name":"Billing"}"#.into(), StatusCode::UNPROCESSABLE_ENTITY, "unknown_queue", "\"Billing\""),
        (
            r#"{"queue_id":"q-sup","queue_name":"Sales"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_queue",
            "is the queue \"Support\", not \"Sales\"",
        ),
    ];
    for (body, status, code, fragment) in cases {
        let (got, answer) = decide(&handle, "lk-bad", body.clone()).await;
        assert_eq!((got, error_code(&answer)), (status, code), "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().contains(fragment), "{body}: {answer}");
    }
    let (status, answer) = decide(&handle, "lk-bad", vec![b' '; MAX_BODY_BYTES + 1]).await;
    assert_eq!((status, error_code(&answer)), (StatusCode::PAYLOAD_TOO_LARGE, "too_large"));
    let form = axum::http::Request::post("/api/v1/lookup/lk-bad/decision")
        .header("x-wrapup-intake-key", KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("queue_name=Support"))
        .unwrap();
    assert_eq!(send(&handle, form).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(metric("wrapup_lookups_total{connection=\"lk-bad\",route=\"decision\",result=\"refused\"}") >= 12.0);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_cxone_connection_answers_the_disposition_id_for_a_skill() {
    let handle = service(vec![("lk-cxone", Platform::Cxone, api_key(), None)]).await;
    assert_eq!(
        get(&handle, "/api/v1/lookup/lk-cxone/codes?name=Sale&skill=Sales", Some(KEY)).await,
        (StatusCode::OK, json!({"code": "Sale", "code_id": "c-sale", "skill": "Sales", "skill_id": "q-sales"}))
    );
    let (status, body) = get(&handle, "/api/v1/lookup/lk-cxone/codes?name=Sale&queue=Sales", Some(KEY)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("a CXone connection takes skill="));
    let (status, body) = decide(&handle, "lk-cxone", r#"{"queue_name":"Support","channel":"voice"}"#).await;
    assert_eq!(
        (status, body["code_id"].clone(), body["fallback"].clone()),
        (StatusCode::OK, json!("c-res"), json!(false))
    );
    handle.shutdown().await;
}
