//! The Genesys client against a tiny scripted platform on 127.0.0.1:0.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use url::Url;
use wrapup_clock::ScaledClock;
use wrapup_connectors::attempt::ApiAttempt;
use wrapup_connectors::genesys::{GenesysClient, GenesysConnection, WrapupInput};
use wrapup_connectors::{call_with_retry, ErrorClass, Priority, RetryPolicy};
use wrapup_core::Secret;

const SECRET: &str = "s3cr3t-client-secret";

/// One scripted answer.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply { status, headers: vec![], body: body.to_string() }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    method: Method,
    path_and_query: String,
    auth: Option<String>,
    body: String,
}

#[derive(Default)]
struct Platform {
    token_requests: AtomicU32,
    token_delay: Mutex<Duration>,
    expires_in: Mutex<u64>,
    token_reply: Mutex<Option<Reply>>,
    /// Bearer tokens answered with 401.
    rejected: Mutex<HashSet<String>>,
    reject_all: Mutex<bool>,
    script: Mutex<VecDeque<Reply>>,
    default_reply: Mutex<Option<Reply>>,
    seen: Mutex<Vec<Seen>>,
    token_auth: Mutex<Vec<String>>,
    /// Client ids the login host refuses.
    bad_clients: Mutex<HashSet<String>>,
}

impl Platform {
    fn push(&self, r: Reply) {
        self.script.lock().push_back(r);
    }
    fn api_calls(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

async fn token(State(p): State<Arc<Platform>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = p.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    p.token_auth.lock().push(headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string());
    assert_eq!(&body[..], b"grant_type=client_credentials");
    let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    let client_id = basic
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split(':').next().map(str::to_string))
        .unwrap_or_default();
    if p.bad_clients.lock().contains(&client_id) {
        return into_response(reply(401, r#"{"error":"invalid_client","description":"bad client credentials"}"#));
    }
    let delay = *p.token_delay.lock();
    tokio::time::sleep(delay).await;
    if let Some(r) = p.token_reply.lock().clone() {
        return into_response(r);
    }
    let expires_in = match *p.expires_in.lock() {
        0 => 86399,
        e => e,
    };
    let body = format!(r#"{{"access_token":"tok-{n}","token_type":"bearer","expires_in":{expires_in}}}"#);
    (StatusCode::OK, body).into_response()
}

async fn api(State(p): State<Arc<Platform>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    p.seen.lock().push(Seen {
        at: Instant::now(),
        method,
        path_and_query: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        auth: auth.clone(),
        body: String::from_utf8_lossy(&body).to_string(),
    });
    let token = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
    if *p.reject_all.lock() || p.rejected.lock().contains(token) {
        return into_response(
            reply(401, r#"{"status":401,"code":"bad.credentials","message":"Invalid login credentials."}"#)
                .header("ININ-Correlation-Id", "corr-401"),
        );
    }
    let r = p.script.lock().pop_front().or_else(|| p.default_reply.lock().clone()).unwrap_or_else(|| reply(200, "{}"));
    into_response(r)
}

fn into_response(r: Reply) -> Response {
    let mut headers = HeaderMap::new();
    for (k, v) in &r.headers {
        headers.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    (StatusCode::from_u16(r.status).unwrap(), headers, r.body).into_response()
}

struct Harness {
    platform: Arc<Platform>,
    client: GenesysClient,
    attempts: Arc<Mutex<Vec<ApiAttempt>>>,
}

async fn start(credentials: usize, configure: impl FnOnce(&mut GenesysConnection)) -> Harness {
    let platform = Arc::new(Platform::default());
    let app = Router::new().route("/oauth/token", post(token)).fallback(api).with_state(platform.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let base = Url::parse(&format!("http://{addr}")).unwrap();
    let creds = (0..credentials).map(|i| (format!("client-{i}"), Secret::new(SECRET))).collect();
    let mut conn = GenesysConnection::for_base_url("test-org", base, creds);
    conn.request_timeout = Duration::from_secs(10);
    configure(&mut conn);
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let sink_attempts = attempts.clone();
    let client = GenesysClient::new(
        conn,
        ScaledClock::system().shared(),
        Arc::new(move |a: &ApiAttempt| sink_attempts.lock().push(a.clone())),
    )
    .unwrap();
    Harness { platform, client, attempts }
}

fn live() -> Priority {
    Priority::live(None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_token_request() {
    // A generous budget, so the 20 calls are in flight together rather than paced.
    let h = start(1, |c| c.requests_per_minute = 6000).await;
    *h.platform.token_delay.lock() = Duration::from_millis(150);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = h.client.clone();
        tasks.push(tokio::spawn(
            async move { c.get_participant_wrapup(&format!("c-{i}"), "p", None, true, live()).await },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), None);
    }
    assert_eq!(h.platform.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(h.platform.api_calls().len(), 20);
    assert!(h.platform.api_calls().iter().all(|s| s.auth.as_deref() == Some("Bearer tok-1")));
    // Basic auth with client id and secret, as the login host expects.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("client-0:{SECRET}"));
    assert_eq!(h.platform.token_auth.lock()[0], format!("Basic {basic}"));
    let stats = h.client.stats();
    assert_eq!(stats.calls_total, 21);
    assert_eq!(stats.token_requests_total, 1);
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries_the_call() {
    let h = start(1, |_| {}).await;
    h.platform.rejected.lock().insert("tok-1".into());
    h.platform.push(reply(200, r#"{"code":"code-1","notes":"n"}"#));
    let got = h.client.get_participant_wrapup("c", "p", Some("calls"), true, live()).await.unwrap();
    assert_eq!(got.unwrap().code.as_deref(), Some("code-1"));
    assert_eq!(h.platform.token_requests.load(Ordering::SeqCst), 2);
    let calls = h.platform.api_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].auth.as_deref(), Some("Bearer tok-2"));
    assert_eq!(calls[1].path_and_query, "/api/v2/conversations/calls/c/participants/p/wrapup?provisional=true");
    let attempts = h.attempts.lock().clone();
    let statuses: Vec<_> = attempts.iter().map(|a| (a.endpoint, a.status)).collect();
    assert_eq!(
        statuses,
        [
            ("/oauth/token", Some(200)),
            ("/api/v2/conversations/{media}/{conversationId}/participants/{participantId}/wrapup", Some(401)),
            ("/oauth/token", Some(200)),
            ("/api/v2/conversations/{media}/{conversationId}/participants/{participantId}/wrapup", Some(200)),
        ]
    );
    assert_eq!(attempts[1].correlation_id.as_deref(), Some("corr-401"));
    let stats = h.client.stats();
    assert_eq!(stats.calls_total, 4);
    let by = |endpoint: &str, status: &str| {
        stats.by_endpoint_status.get(&(endpoint.to_string(), status.to_string())).copied()
    };
    let wrapup = "/api/v2/conversations/{media}/{conversationId}/participants/{participantId}/wrapup";
    assert_eq!(by(wrapup, "401"), Some(1));
    assert_eq!(by(wrapup, "200"), Some(1));
    assert_eq!(by("/oauth/token", "200"), Some(2));
    assert_eq!(attempts[3].conversation_id.as_deref(), Some("c"));
    assert_eq!(attempts[3].participant_id.as_deref(), Some("p"));
}

#[tokio::test]
async fn a_second_401_is_an_auth_error_without_a_third_attempt() {
    let h = start(1, |_| {}).await;
    *h.platform.reject_all.lock() = true;
    let err = h.client.get_conversation("c", live()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Auth);
    assert_eq!(err.status, Some(401));
    assert_eq!(h.platform.api_calls().len(), 2);
    assert_eq!(h.platform.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn after_a_429_no_call_is_made_before_retry_after_elapses() {
    let h = start(1, |_| {}).await;
    h.platform.push(
        reply(429, r#"{"status":429,"code":"too.many.requests","message":"Rate limit exceeded the maximum [300] requests within [60] seconds"}"#)
            .header("Retry-After", "1"),
    );
    let err = h.client.get_conversation("c", live()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(1)) });
    assert_eq!(err.code.as_deref(), Some("too.many.requests"));
    assert_eq!(h.client.stats().rate_limited_total, 1);
    // The very next call waits in the budget until the credential's pause is over.
    h.client.get_conversation("c", live()).await.unwrap();
    let calls = h.platform.api_calls();
    assert!(calls[1].at.duration_since(calls[0].at) >= Duration::from_millis(990), "{:?}", calls[1].at - calls[0].at);
}

#[tokio::test]
async fn call_with_retry_rides_out_a_429_and_a_503() {
    let h = start(1, |_| {}).await;
    h.platform.push(reply(503, r#"{"status":503,"code":"service.unavailable"}"#));
    h.platform.push(reply(429, "").header("Retry-After", "1"));
    h.platform.push(reply(200, r#"{"id":"c","participants":[]}"#));
    let clock = ScaledClock::system();
    let started = Instant::now();
    let conv = call_with_retry(&clock, None, &RetryPolicy::default(), |_| h.client.get_conversation("c", live()))
        .await
        .unwrap();
    assert_eq!(conv.id, "c");
    assert_eq!(h.platform.api_calls().len(), 3);
    assert!(started.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn every_reading_of_an_unset_wrapup_is_none() {
    let h = start(1, |_| {}).await;
    h.platform.push(reply(200, ""));
    h.platform.push(reply(200, "{}"));
    h.platform.push(reply(200, "null"));
    h.platform.push(reply(200, r#"{"notes":"typing…","tags":[]}"#));
    h.platform
        .push(reply(404, r#"{"status":404,"code":"not.found","message":"The requested resource was not found."}"#));
    h.platform.push(reply(
        200,
        r#"{"code":"7fb334b0","notes":"","durationSeconds":39,"endTime":"2022-04-20T14:48:33.626Z"}"#,
    ));
    for _ in 0..5 {
        assert_eq!(h.client.get_participant_wrapup("c", "p", None, true, live()).await.unwrap(), None);
    }
    let set = h.client.get_participant_wrapup("c", "p", None, true, live()).await.unwrap().unwrap();
    assert_eq!(set.code.as_deref(), Some("7fb334b0"));
    assert_eq!(set.duration_seconds, Some(39));
    // Media without a media-specific read use the generic path.
    h.platform.push(reply(200, "{}"));
    assert_eq!(h.client.get_participant_wrapup("c", "p", Some("videos"), false, live()).await.unwrap(), None);
    let last = h.platform.api_calls().pop().unwrap();
    assert_eq!(last.path_and_query, "/api/v2/conversations/c/participants/p/wrapup");
    // Other 404s and 4xx are errors, not "unset".
    h.platform.push(reply(404, r#"{"status":404,"code":"conversation.gone"}"#));
    assert_eq!(
        h.client.get_participant_wrapup("c", "p", None, true, live()).await.unwrap_err().class,
        ErrorClass::Permanent
    );
}

#[tokio::test]
async fn wrapup_is_posted_to_the_media_path_and_202_is_accepted() {
    let h = start(1, |_| {}).await;
    h.platform.push(reply(202, "").header("ININ-Correlation-Id", "corr-202"));
    let input = WrapupInput { code: Some("code-1".into()), notes: Some("auto".into()), ..Default::default() };
    let accepted = h.client.post_wrapup("calls", "c/1", "p", "comm", &input, live()).await.unwrap();
    assert_eq!(accepted.correlation_id.as_deref(), Some("corr-202"));
    let call = &h.platform.api_calls()[0];
    assert_eq!(call.method, Method::POST);
    // Ids are single path segments, whatever they contain.
    assert_eq!(call.path_and_query, "/api/v2/conversations/calls/c%2F1/participants/p/communications/comm/wrapup");
    assert_eq!(call.body, r#"{"code":"code-1","notes":"auto"}"#);
    let err = h.client.post_wrapup("chats", "c", "p", "comm", &input, live()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent);
    assert_eq!(h.platform.api_calls().len(), 1, "an unknown media type is refused before any call");
}

#[tokio::test]
async fn participant_wrapupcodes_are_a_bare_array() {
    let h = start(1, |_| {}).await;
    h.platform.push(reply(200, r#"[{"id":"a","name":"Sale"},{"id":"b","name":"No sale","description":"x"}]"#));
    let codes = h.client.get_participant_wrapupcodes("c", "p", live()).await.unwrap();
    assert_eq!(codes.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["Sale", "No sale"]);
    assert_eq!(h.platform.api_calls()[0].path_and_query, "/api/v2/conversations/c/participants/p/wrapupcodes");
}

#[tokio::test]
async fn catalog_listings_read_every_page() {
    let h = start(1, |_| {}).await;
    for page in 1..=3 {
        h.platform.push(reply(
            200,
            &format!(r#"{{"entities":[{{"id":"q{page}","name":"Queue {page}","acwSettings":{{"wrapupPrompt":"MANDATORY_TIMEOUT","timeoutMs":30000}}}}],"pageSize":100,"pageNumber":{page},"total":3,"pageCount":3}}"#),
        ));
    }
    let queues = h.client.list_queues(Priority::reconcile()).await.unwrap();
    assert_eq!(queues.len(), 3);
    assert_eq!(queues[2].acw_settings.as_ref().unwrap().timeout_ms, Some(30000));
    let paths: Vec<_> = h.platform.api_calls().into_iter().map(|s| s.path_and_query).collect();
    assert_eq!(
        paths,
        [
            "/api/v2/routing/queues?pageSize=100&pageNumber=1",
            "/api/v2/routing/queues?pageSize=100&pageNumber=2",
            "/api/v2/routing/queues?pageSize=100&pageNumber=3",
        ]
    );
}

#[tokio::test]
async fn queue_codes_are_added_in_chunks_of_100() {
    let h = start(1, |_| {}).await;
    *h.platform.default_reply.lock() = Some(reply(200, "[]"));
    let ids: Vec<String> = (0..250).map(|i| format!("code-{i}")).collect();
    h.client.add_queue_wrapupcodes("q", &ids, Priority::backfill()).await.unwrap();
    let sizes: Vec<usize> = h
        .platform
        .api_calls()
        .iter()
        .map(|s| serde_json::from_str::<Vec<serde_json::Value>>(&s.body).unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 50]);
}

#[tokio::test]
async fn rate_limit_headers_steer_the_budget() {
    let h = start(1, |_| {}).await;
    h.platform.push(
        reply(200, r#"{"id":"c"}"#)
            .header("inin-ratelimit-allowed", "120")
            .header("inin-ratelimit-count", "120")
            .header("inin-ratelimit-reset", "30"),
    );
    h.client.get_conversation("c", live()).await.unwrap();
    let status = &h.client.budget().status()[0];
    assert_eq!(status.limit_per_minute, 120);
    assert!(status.paused_for.is_some_and(|d| d > Duration::from_secs(28)));
}

#[tokio::test]
async fn oversized_responses_are_refused() {
    let h = start(1, |_| {}).await;
    h.platform.push(reply(200, &"x".repeat(wrapup_connectors::http::MAX_RESPONSE_BYTES + 1)));
    let err = h.client.get_conversation("c", live()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Permanent);
    assert!(err.message.contains("exceeds"));
}

#[tokio::test]
async fn a_403_names_the_missing_permission() {
    let h = start(1, |_| {}).await;
    h.platform.push(reply(
        403,
        r#"{"status":403,"code":"missing.permissions","message":"Unable to perform the requested action. You are missing the following permission(s): conversation:participant:wrapup","messageParams":{},"contextId":"ctx"}"#,
    ));
    let err = h.client.post_wrapup("calls", "c", "p", "m", &WrapupInput::default(), live()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Forbidden { permission: Some("conversation:participant:wrapup".into()) });
    assert!(err.to_string().contains("missing permission conversation:participant:wrapup"));
}

#[tokio::test]
async fn secrets_and_tokens_never_show_in_debug_display_or_errors() {
    let h = start(2, |_| {}).await;
    let debug_client = format!("{:?}", h.client);
    assert!(!debug_client.contains(SECRET));
    let conn = GenesysConnection::for_base_url(
        "x",
        Url::parse("http://127.0.0.1:1").unwrap(),
        vec![("id".into(), Secret::new(SECRET))],
    );
    assert!(!format!("{conn:?}").contains(SECRET));

    // A refused token request: the error names the problem, not the credential.
    *h.platform.token_reply.lock() = Some(reply(
        400,
        r#"{"error":"unauthorized_client","description":"client is not authorized to use the client_credential grant type"}"#,
    ));
    let err = h.client.get_conversation("c", live()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Auth);
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("unauthorized_client"), "{text}");
    }
    // Both credentials were refused: one is sidelined, the last one stays in rotation (fail fast, no stall).
    let paused = h.client.budget().status().iter().filter(|s| s.paused_for.is_some()).count();
    assert_eq!(paused, 1);

    // An API error after a successful token: the token is not in the error either.
    *h.platform.token_reply.lock() = None;
    h.platform
        .push(reply(400, r#"{"status":400,"code":"bad.request","message":"The request could not be understood"}"#));
    let err = h.client.get_conversation("c", live()).await.unwrap_err();
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("tok-"), "{text}");
        assert!(!text.contains(SECRET), "{text}");
    }
}

#[tokio::test]
async fn the_token_endpoints_rate_limit_is_classified_as_rate_limiting() {
    let h = start(1, |_| {}).await;
    *h.platform.token_reply.lock() =
        Some(reply(400, r#"{"error":"invalid_request","description":"rate limit exceeded; retry later"}"#));
    let err = h.client.get_conversation("c", live()).await.unwrap_err();
    assert!(matches!(err.class, ErrorClass::RateLimited { .. }), "{err}");
    assert_eq!(h.client.stats().rate_limited_total, 1);
}

#[tokio::test]
async fn connection_failures_are_retryable() {
    // Nothing listens on this port once the listener is dropped.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let conn = GenesysConnection::for_base_url("x", base, vec![("id".into(), Secret::new(SECRET))]);
    let client =
        GenesysClient::new(conn, ScaledClock::system().shared(), wrapup_connectors::attempt::discard_attempts())
            .unwrap();
    let err = client.get_conversation("c", live()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Retryable);
    assert_eq!(err.status, None);
    assert_eq!(client.stats().calls_total, 1);
}

#[tokio::test]
async fn two_credentials_spread_calls_over_both_tokens() {
    let h = start(2, |c| c.requests_per_minute = 60).await;
    // Burst 1 per credential: the first two calls go out at once, one per credential.
    let started = Instant::now();
    let (a, b) = tokio::join!(h.client.get_conversation("a", live()), h.client.get_conversation("b", live()));
    a.unwrap();
    b.unwrap();
    assert!(started.elapsed() < Duration::from_millis(800));
    let tokens: HashSet<_> = h.platform.api_calls().into_iter().filter_map(|s| s.auth).collect();
    assert_eq!(tokens.len(), 2);
}

#[tokio::test]
async fn tokens_are_refreshed_before_they_expire() {
    let h = start(1, |_| {}).await;
    // 61 s of life: refreshed 60 s before expiry, i.e. after 1 s.
    *h.platform.expires_in.lock() = 61;
    h.client.get_conversation("c", live()).await.unwrap();
    h.client.get_conversation("c", live()).await.unwrap();
    assert_eq!(h.platform.token_requests.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.client.get_conversation("c", live()).await.unwrap();
    assert_eq!(h.platform.token_requests.load(Ordering::SeqCst), 2);
    let auths: Vec<_> = h.platform.api_calls().into_iter().filter_map(|s| s.auth).collect();
    assert_eq!(auths, ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]);
}

#[tokio::test]
async fn a_refused_credential_is_sidelined_and_the_pool_keeps_serving() {
    let h = start(2, |_| {}).await;
    h.platform.bad_clients.lock().insert("client-0".into());
    for i in 0..6 {
        h.client.get_conversation(&format!("c-{i}"), live()).await.unwrap();
    }
    // client-0 was tried once, then taken out of rotation; every call went out with client-1's token.
    let token_auths = h.platform.token_auth.lock().clone();
    assert_eq!(token_auths.len(), 2);
    assert_eq!(h.platform.api_calls().len(), 6);
    assert!(h.client.budget().status()[0].paused_for.is_some());
}

#[tokio::test]
async fn a_lone_refused_credential_fails_fast_with_an_auth_error() {
    let h = start(1, |_| {}).await;
    h.platform.bad_clients.lock().insert("client-0".into());
    let err = h.client.get_conversation("c", live()).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::Auth);
    assert_eq!(err.code.as_deref(), Some("invalid_client"));
    assert!(h.client.budget().status()[0].paused_for.is_none());
    assert!(h.platform.api_calls().is_empty());
}

#[path = "genesys/notifications.rs"]
mod notifications;

#[path = "genesys/sandbox_contract.rs"]
mod sandbox_contract;

#[path = "genesys/queue_snapshot_contract.rs"]
mod queue_snapshot_contract;

#[tokio::test]
async fn a_request_whose_deadline_passes_in_the_budget_queue_is_not_sent() {
    let h = start(1, |_| {}).await;
    h.platform.push(
        reply(429, r#"{"status":429,"code":"too.many.requests","message":"slow down"}"#).header("Retry-After", "1"),
    );
    let _ = h.client.get_conversation("c", live()).await.unwrap_err();
    // The credential is paused for a second; this call's deadline comes first.
    let deadline = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(200);
    let err = h.client.get_participant_wrapup("c", "p", None, true, Priority::live(Some(deadline))).await.unwrap_err();
    assert_eq!(err.class, ErrorClass::DeadlinePassed);
    assert_eq!(h.platform.api_calls().len(), 1, "the late request never reached the platform");
}
