//! The CXone client against a tiny scripted platform on 127.0.0.1:0 (auth host, discovery and API on one port),
//! and — in `cxone/sandbox_contract.rs` — against the CXone emulator of `wrapup-sandbox`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use wrapup_clock::ScaledClock;
use wrapup_connectors::attempt::ApiAttempt;
use wrapup_connectors::cxone::acw::{reconcile, AcwDetector, PollingDetector, SessionDetector, SessionDetectorConfig};
use wrapup_connectors::cxone::events::AcwTimeouts;
use wrapup_connectors::cxone::{
    rejection, AgentSessions, CompletedQuery, CxoneClient, CxoneConnection, NextEvent, Rejection,
};
use wrapup_connectors::{ErrorClass, Priority};
use wrapup_core::{EventKind, Secret};

const KEY_SECRET: &str = "AKSECRET+/abc====";
const CLIENT_SECRET: &str = "app-client-secret";
const TENANT: &str = "11eb660f-tenant";

/// One scripted answer, with an optional non-canonical reason phrase (how CXone states why).
#[derive(Clone)]
struct Reply {
    status: u16,
    reason: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply { status, reason: None, headers: vec![], body: body.to_string() }
}

fn refuse(status: u16, reason: &'static str) -> Reply {
    Reply {
        status,
        reason: Some(reason),
        headers: vec![("icStatusDescription", reason.to_string())],
        body: String::new(),
    }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path_and_query: String,
    auth: Option<String>,
    body: String,
}

#[derive(Default)]
struct Platform {
    token_requests: AtomicU32,
    token_forms: Mutex<Vec<String>>,
    token_auth: Mutex<Vec<String>>,
    token_reply: Mutex<Option<Reply>>,
    discoveries: Mutex<Vec<String>>,
    /// Bearer tokens answered with 401.
    rejected: Mutex<Vec<String>>,
    /// (path substring, reply): the first matching entry answers, once.
    script: Mutex<VecDeque<(&'static str, Reply)>>,
    /// (path substring, reply): answers every matching request when the script has nothing.
    routes: Mutex<Vec<(&'static str, Reply)>>,
    seen: Mutex<Vec<Seen>>,
    base: Mutex<String>,
}

impl Platform {
    fn push(&self, path: &'static str, r: Reply) {
        self.script.lock().push_back((path, r));
    }
    fn route(&self, path: &'static str, r: Reply) {
        self.routes.lock().push((path, r));
    }
    fn api_calls(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

fn jwt(claims: &str) -> String {
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!("{}.{}.signature", e(r#"{"alg":"RS256","typ":"JWT"}"#), e(claims))
}

async fn token(State(p): State<Arc<Platform>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = p.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
    p.token_forms.lock().push(String::from_utf8_lossy(&body).to_string());
    p.token_auth.lock().push(headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string());
    if let Some(r) = p.token_reply.lock().clone() {
        return into_response(r);
    }
    let access = jwt(&format!(r#"{{"tenantId":"{TENANT}","icBUId":4600,"n":{n}}}"#));
    let body = serde_json::json!({"access_token": access, "token_type": "Bearer", "expires_in": 3600,
        "refresh_token": format!("refresh-{n}"), "id_token": jwt(r#"{"tenantId":"x"}"#)});
    (StatusCode::OK, body.to_string()).into_response()
}

async fn discovery(State(p): State<Arc<Platform>>, uri: Uri) -> Response {
    p.discoveries.lock().push(uri.query().unwrap_or("").to_string());
    let base = p.base.lock().clone();
    let body = serde_json::json!({"private": false, "area": "na1", "api_endpoint": base, "tenantId": TENANT});
    (StatusCode::OK, body.to_string()).into_response()
}

async fn api(State(p): State<Arc<Platform>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let path_and_query = uri.path_and_query().map(|p| p.to_string()).unwrap_or_default();
    p.seen.lock().push(Seen {
        method,
        path_and_query: path_and_query.clone(),
        auth: auth.clone(),
        body: String::from_utf8_lossy(&body).to_string(),
    });
    let token = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
    if p.rejected.lock().iter().any(|t| t == token) {
        return into_response(refuse(401, "Invalid or expired token"));
    }
    let path = uri.path().to_string();
    let scripted = {
        let mut script = p.script.lock();
        let at = script.iter().position(|(pat, _)| path.contains(pat));
        at.and_then(|i| script.remove(i)).map(|(_, r)| r)
    };
    let r = scripted
        .or_else(|| p.routes.lock().iter().find(|(pat, _)| path.contains(pat)).map(|(_, r)| r.clone()))
        .unwrap_or_else(|| reply(200, "{}"));
    into_response(r)
}

fn into_response(r: Reply) -> Response {
    let mut headers = HeaderMap::new();
    for (k, v) in &r.headers {
        headers.insert(*k, HeaderValue::from_str(v).unwrap());
    }
    let mut resp = (StatusCode::from_u16(r.status).unwrap(), headers, r.body).into_response();
    if let Some(reason) = r.reason {
        resp.extensions_mut().insert(hyper::ext::ReasonPhrase::try_from(reason.as_bytes()).unwrap());
    }
    resp
}

struct Harness {
    platform: Arc<Platform>,
    client: CxoneClient,
    attempts: Arc<Mutex<Vec<ApiAttempt>>>,
}

async fn start(configure: impl FnOnce(&mut CxoneConnection)) -> Harness {
    let platform = Arc::new(Platform::default());
    let app = Router::new()
        .route("/auth/token", post(token))
        .route("/.well-known/cxone-configuration", get(discovery))
        .fallback(api)
        .with_state(platform.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    *platform.base.lock() = format!("http://{addr}");
    let mut conn = CxoneConnection::new(
        "test-bu",
        Url::parse(&format!("http://{addr}")).unwrap(),
        ("AKID".into(), Secret::new(KEY_SECRET)),
        ("app-client".into(), Secret::new(CLIENT_SECRET)),
    );
    conn.requests_per_minute = 6000;
    conn.request_timeout = Duration::from_secs(10);
    configure(&mut conn);
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let sink = attempts.clone();
    let client = CxoneClient::new(
        conn,
        ScaledClock::system().shared(),
        Arc::new(move |a: &ApiAttempt| sink.lock().push(a.clone())),
    )
    .unwrap();
    Harness { platform, client, attempts }
}

fn live() -> Priority {
    Priority::live(None)
}

#[tokio::test]
async fn the_token_comes_from_the_password_grant_and_the_api_base_from_the_tenant() {
    let h = start(|_| {}).await;
    h.platform.push("/skills/1507", reply(200, r#"{"skills":[{"skillId":1507,"skillName":"Sales","acwTypeId":2,"requireDisposition":false,"maxSecondsACW":"45"}]}"#));
    let skill = h.client.get_skill(1507, live()).await.unwrap();
    assert_eq!((skill.id, skill.name.as_str(), skill.acw_timeout_ms()), (1507, "Sales", Some(45_000)));
    // Password grant with the access key, URL-encoded; the application authenticates by Basic.
    assert_eq!(
        h.platform.token_forms.lock()[0],
        "grant_type=password&username=AKID&password=AKSECRET%2B%2Fabc%3D%3D%3D%3D"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("app-client:{CLIENT_SECRET}"));
    assert_eq!(h.platform.token_auth.lock()[0], format!("Basic {basic}"));
    assert_eq!(h.platform.discoveries.lock().as_slice(), [format!("tenantId={TENANT}")]);
    assert_eq!(h.client.tenant_id().as_deref(), Some(TENANT));
    let calls = h.platform.api_calls();
    assert_eq!(calls[0].path_and_query, "/inContactAPI/services/v23.0/skills/1507");
    assert!(calls[0].auth.as_deref().unwrap().starts_with("Bearer ey"));
    // A second call reuses token and discovered base.
    h.client.get_skill(1507, live()).await.unwrap_err();
    assert_eq!(h.platform.token_requests.load(Ordering::SeqCst), 1);
    assert_eq!(h.platform.discoveries.lock().len(), 1);
    let stats = h.client.stats();
    assert_eq!((stats.calls_total, stats.token_requests_total), (4, 1));
    let endpoints: Vec<&str> = h.attempts.lock().iter().map(|a| a.endpoint).collect();
    assert_eq!(
        endpoints,
        [
            "/auth/token",
            "/.well-known/cxone-configuration",
            "/inContactAPI/services/v23.0/skills/{skillId}",
            "/inContactAPI/services/v23.0/skills/{skillId}"
        ]
    );
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_with_the_refresh_grant() {
    let h = start(|_| {}).await;
    h.client.skill_dispositions(1, live()).await.unwrap();
    let first = h.platform.api_calls()[0].auth.clone().unwrap();
    h.platform.rejected.lock().push(first.trim_start_matches("Bearer ").to_string());
    h.platform.push("/dispositions", reply(200, r#"{"dispositions":[{"dispositionId":5,"dispositionName":"Sale"}]}"#));
    let got = h.client.skill_dispositions(1, live()).await.unwrap();
    assert_eq!(got[0].name, "Sale");
    assert_eq!(h.platform.token_requests.load(Ordering::SeqCst), 2);
    assert_eq!(
        h.platform.token_forms.lock()[1],
        "grant_type=refresh_token&refresh_token=refresh-1&client_id=app-client"
    );
    // A token refused twice is an auth failure, not a loop.
    h.platform
        .rejected
        .lock()
        .extend((1..=10).map(|n| jwt(&format!(r#"{{"tenantId":"{TENANT}","icBUId":4600,"n":{n}}}"#))));
    let e = h.client.skill_dispositions(1, live()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Auth);
    assert_eq!(h.platform.token_requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_refused_login_is_an_auth_error_without_secrets() {
    let h = start(|_| {}).await;
    *h.platform.token_reply.lock() =
        Some(reply(400, r#"{"error":"invalid_grant","error_description":"bad access key"}"#));
    let e = h.client.list_agents(live()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::Auth);
    let text = format!("{e} {e:?}");
    assert!(text.contains("bad access key"), "{text}");
    assert!(!text.contains(KEY_SECRET) && !text.contains(CLIENT_SECRET) && !text.contains("AKSECRET"), "{text}");
}

#[tokio::test]
async fn a_disposition_is_posted_as_json_through_the_session() {
    let h = start(|_| {}).await;
    h.client.post_disposition_if("sess-1", 712876049780, 2896, Some("resolved"), live(), None).await.unwrap();
    let call = &h.platform.api_calls()[0];
    assert_eq!(call.method, Method::POST);
    assert_eq!(
        call.path_and_query,
        "/inContactAPI/services/v27.0/agent-sessions/sess-1/interactions/712876049780/disposition"
    );
    let body: serde_json::Value = serde_json::from_str(&call.body).unwrap();
    assert_eq!(body, serde_json::json!({"primaryDispositionId": 2896, "primaryDispositionNotes": "resolved"}));
    let a = h.attempts.lock().last().cloned().unwrap();
    assert_eq!((a.participant_id.as_deref(), a.status), (Some("712876049780"), Some(200)));
}

#[tokio::test]
async fn every_disposition_rejection_is_told_apart_from_the_reason_phrase() {
    let h = start(|_| {}).await;
    let cases = [
        (409, "Contact must be disconnected before dispositioning", Rejection::NotDisconnected, "conflict"),
        (409, "Skill does not allow additional disposition", Rejection::AlreadyDispositioned, "conflict"),
        (400, "Invalid primaryDispositionId", Rejection::InvalidDisposition, "permanent"),
        (404, "Invalid contactId", Rejection::ContactGone, "permanent"),
        (404, "Invalid sessionId", Rejection::SessionGone, "permanent"),
    ];
    for (status, text, want, class) in cases {
        // Reason phrase only (no header, no body): the text must come through hyper's ReasonPhrase.
        h.platform.push("/disposition", Reply { status, reason: Some(text), headers: vec![], body: String::new() });
        let e = h.client.post_disposition_if("s", 1, 2, None, live(), None).await.unwrap_err();
        assert_eq!(rejection(&e), Some(want), "{e}");
        assert_eq!(e.class.as_str(), class);
        assert_eq!(e.code.as_deref(), Some(text));
    }
    // The header alone carries it too.
    h.platform.push("/disposition", reply(404, "").header("icStatusDescription", "InvalidContactId"));
    let e = h.client.post_disposition_if("s", 1, 2, None, live(), None).await.unwrap_err();
    assert_eq!(rejection(&e), Some(Rejection::ContactGone));
}

#[tokio::test]
async fn a_precondition_that_no_longer_holds_keeps_the_write_unsent() {
    struct No;
    #[async_trait::async_trait]
    impl wrapup_connectors::Precondition for No {
        async fn check(&self) -> Result<(), String> {
            Err("the leg changed".into())
        }
    }
    let h = start(|_| {}).await;
    let e = h.client.post_disposition_if("s", 1, 2, None, live(), Some(&No)).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::PreconditionFailed);
    assert!(h.platform.api_calls().is_empty());
}

#[tokio::test(start_paused = false)]
async fn a_429_pauses_the_budget_for_retry_after_or_a_growing_backoff() {
    let h = start(|_| {}).await;
    h.platform.push("/agents", refuse(429, "Api Rate Exceeded").header("Retry-After", "3"));
    let e = h.client.list_agents(live()).await.unwrap_err();
    assert_eq!(e.class, ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(3)) });
    let paused = h.client.budget().status()[0].paused_for.unwrap();
    assert!(paused > Duration::from_millis(2500) && paused <= Duration::from_secs(3), "{paused:?}");
    assert_eq!(h.client.stats().rate_limited_total, 1);

    // Without Retry-After: 1 s, then 2 s for the next one in a row.
    let h = start(|_| {}).await;
    h.platform.push("/agents", refuse(429, "Too Many Requests"));
    h.client.list_agents(live()).await.unwrap_err();
    let first = h.client.budget().status()[0].paused_for.unwrap();
    assert!(first <= Duration::from_secs(1) && first > Duration::from_millis(500), "{first:?}");
    h.platform.push("/agents", refuse(429, "Too Many Requests"));
    let t = std::time::Instant::now();
    h.client.list_agents(live()).await.unwrap_err();
    assert!(t.elapsed() >= Duration::from_millis(500), "the second call waited for the pause");
    let second = h.client.budget().status()[0].paused_for.unwrap();
    assert!(second > Duration::from_millis(1500), "{second:?}");
}

#[tokio::test]
async fn empty_answers_mean_nothing_rather_than_errors() {
    let h = start(|_| {}).await;
    h.platform.push("/dispositions", reply(204, ""));
    assert!(h.client.skill_dispositions(9, live()).await.unwrap().is_empty());
    h.platform.push("/disposition", reply(204, ""));
    assert_eq!(h.client.get_contact_disposition(5, live()).await.unwrap(), None);
    h.platform.push("/disposition", reply(200, r#"{"dispositionId":0}"#));
    assert_eq!(h.client.get_contact_disposition(5, live()).await.unwrap(), None);
    h.platform.push("/disposition", refuse(404, "No disposition found"));
    assert_eq!(h.client.get_contact_disposition(5, live()).await.unwrap(), None);
    h.platform.push(
        "/disposition",
        reply(200, r#"{"dispositionId":"7","dispositionName":"Sale","dispositionedByAgendId":"42"}"#),
    );
    let d = h.client.get_contact_disposition(5, live()).await.unwrap().unwrap();
    assert_eq!((d.disposition_id, d.by_agent_id.as_deref()), (7, Some("42")));
    h.platform.push("/disposition", refuse(404, "Invalid contactId"));
    let e = h.client.get_contact_disposition(5, live()).await.unwrap_err();
    assert_eq!(rejection(&e), Some(Rejection::ContactGone));
    h.platform.push("/completed", reply(204, ""));
    let p = h
        .client
        .contacts_completed(&CompletedQuery::UpdatedSince("2026-01-01T00:00:00Z".into()), live())
        .await
        .unwrap();
    assert!(p.records.is_empty());
    let paths: Vec<String> = h.platform.api_calls().iter().map(|s| s.path_and_query.clone()).collect();
    assert!(
        paths.contains(&"/inContactAPI/services/v12.0/skills/9/dispositions?skip=0&top=100".to_string()),
        "{paths:?}"
    );
    assert!(paths.contains(&"/inContactAPI/services/v27.0/contacts/5/disposition".to_string()), "{paths:?}");
    assert!(paths.last().unwrap().starts_with("/inContactAPI/services/v23.0/contacts/completed?updatedSince=2026-01-01T00%3A00%3A00Z&orderBy=lastUpdateTime+asc&skip=0&top=100"), "{paths:?}");
}

#[tokio::test]
async fn listings_are_read_page_by_page() {
    let h = start(|_| {}).await;
    let page = |from: usize, n: usize| {
        let items: Vec<serde_json::Value> = (from..from + n)
            .map(|i| serde_json::json!({"dispositionId": i + 1, "dispositionName": format!("d{i}")}))
            .collect();
        reply(200, &serde_json::json!({"totalRecords": 150, "dispositions": items}).to_string())
    };
    h.platform.push("/dispositions", page(0, 100));
    h.platform.push("/dispositions", page(100, 50));
    let all = h.client.list_dispositions(live()).await.unwrap();
    assert_eq!(all.len(), 150);
    let calls = h.platform.api_calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[1].path_and_query.ends_with("skip=100&top=100"));
}

#[tokio::test]
async fn get_next_event_rotates_the_session_and_tells_no_events_and_session_ended() {
    let h = start(|_| {}).await;
    h.platform.push("/get-next-event", reply(200, r#"{"sessionId":"s2","events":[]}"#));
    h.platform.push("/get-next-event", reply(304, ""));
    h.platform.push("/get-next-event", refuse(409, "Session Ended"));
    let t = Duration::from_secs(1);
    let NextEvent::Events { session_id, .. } = h.client.get_next_event("s1", t, live()).await.unwrap() else {
        panic!()
    };
    assert_eq!(session_id, "s2");
    assert_eq!(h.client.get_next_event("s2", t, live()).await.unwrap(), NextEvent::NoEvents);
    assert_eq!(h.client.get_next_event("s2", t, live()).await.unwrap(), NextEvent::SessionEnded);
    assert_eq!(
        h.platform.api_calls()[0].path_and_query,
        "/inContactAPI/services/v23.0/agent-sessions/s1/get-next-event?timeout=1"
    );
}

#[tokio::test]
async fn the_session_cache_joins_once_follows_rotation_and_rejoins_once_when_the_session_is_gone() {
    let h = start(|_| {}).await;
    h.platform.push("/join", reply(202, r#"{"sessionId":"j1"}"#));
    h.platform.push("/get-next-event", reply(200, r#"{"sessionId":"j1-r1","events":[]}"#));
    let sessions = AgentSessions::new(h.client.clone());
    // Concurrent first uses share one join.
    let (a, b) = tokio::join!(sessions.session(7, live()), sessions.session(7, live()));
    assert_eq!((a.unwrap(), b.unwrap()), ("j1".to_string(), "j1".to_string()));
    let join = h.platform.api_calls().into_iter().find(|s| s.path_and_query.contains("join")).unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(&join.body).unwrap(), serde_json::json!({"asAgentId": 7}));
    sessions.next_event(7, Duration::from_secs(1), live()).await.unwrap();
    assert_eq!(sessions.current(7).as_deref(), Some("j1-r1"));

    // The write uses the rotated id; a stale-session refusal joins again and retries once.
    h.platform.push("/disposition", refuse(404, "Invalid sessionId"));
    h.platform.push("/join", reply(202, r#"{"sessionId":"j2"}"#));
    let used = Arc::new(Mutex::new(Vec::new()));
    let client = h.client.clone();
    let u = used.clone();
    sessions
        .with_session(7, live(), move |sid| {
            u.lock().push(sid.clone());
            let client = client.clone();
            async move { client.post_disposition_if(&sid, 1, 2, None, live(), None).await }
        })
        .await
        .unwrap();
    assert_eq!(used.lock().as_slice(), ["j1-r1", "j2"]);
    assert_eq!(sessions.joins(), 2);

    // Gone twice in a row: the second failure is returned, not retried again.
    h.platform.push("/disposition", refuse(404, "Invalid sessionId"));
    h.platform.push("/join", reply(202, r#"{"sessionId":"j3"}"#));
    h.platform.push("/disposition", refuse(404, "Invalid sessionId"));
    let client = h.client.clone();
    let e = sessions
        .with_session(7, live(), move |sid| {
            let client = client.clone();
            async move { client.post_disposition_if(&sid, 1, 2, None, live(), None).await }
        })
        .await
        .unwrap_err();
    assert_eq!(rejection(&e), Some(Rejection::SessionGone));
    assert_eq!(sessions.joins(), 3);

    // A long poll answered "Session Ended" joins again and polls the new session.
    h.platform.push("/get-next-event", refuse(409, "Session Ended"));
    h.platform.push("/join", reply(202, r#"{"sessionId":"j4"}"#));
    h.platform.push("/get-next-event", reply(200, r#"{"sessionId":"j4-r1","events":[]}"#));
    assert!(sessions.next_event(7, Duration::from_secs(1), live()).await.unwrap().is_some());
    assert_eq!(sessions.current(7).as_deref(), Some("j4-r1"));
    // A rotation reported for an id that is no longer current does not overwrite the newer one.
    sessions.rotate(7, "j1", "stale".into());
    assert_eq!(sessions.current(7).as_deref(), Some("j4-r1"));
}

#[tokio::test]
async fn polling_finds_an_agent_in_acw_and_follows_last_poll_time() {
    let h = start(|_| {}).await;
    h.platform.push(
        "/contacts/active",
        reply(
            200,
            r#"{"resultSet":{"lastPollTime":"2026-01-01T00:00:10Z","activeContacts":[
        {"contactId":11,"masterContactId":10,"agentId":5,"skillId":1507,"mediaTypeId":4,"stateName":"Active"}]}}"#,
        ),
    );
    h.platform.push(
        "/agents/states",
        reply(
            200,
            r#"{"lastPollTime":"2026-01-01T00:00:11Z","agentStates":[
        {"agentId":5,"agentStateName":"Unavailable","isACW":true,"contactId":11,"startDate":"2026-01-01T00:00:09Z"}]}"#,
        ),
    );
    h.platform.push("/contacts/active", reply(204, ""));
    h.platform.push(
        "/agents/states",
        reply(
            200,
            r#"{"lastPollTime":"2026-01-01T00:00:21Z","agentStates":[
        {"agentId":5,"isACW":"True","contactId":11,"startDate":"2026-01-01T00:00:09Z"}]}"#,
        ),
    );
    let acw: AcwTimeouts = [("1507".to_string(), 30_000)].into();
    let mut d = PollingDetector::new(h.client.clone(), Duration::from_millis(10), acw);
    let batch = d.next_batch().await.unwrap();
    assert_eq!(batch.len(), 1);
    assert_eq!((batch[0].leg.conversation.as_str(), batch[0].leg.participant.as_str()), ("10", "11"));
    let EventKind::LegEnded { facts } = &batch[0].kind else { panic!() };
    assert_eq!(facts.acw_timeout_ms, Some(30_000));
    // Reported again: not emitted twice.
    assert!(d.next_batch().await.unwrap().is_empty());
    assert_eq!(d.calls(), 4);
    let paths: Vec<String> = h.platform.api_calls().iter().map(|s| s.path_and_query.clone()).collect();
    assert!(paths[2].contains("updatedSince=2026-01-01T00%3A00%3A10Z"), "{paths:?}");
    assert!(paths[3].contains("updatedSince=2026-01-01T00%3A00%3A11Z"), "{paths:?}");
}

#[tokio::test]
async fn the_session_detector_finds_a_contact_entering_acw() {
    let h = start(|_| {}).await;
    h.platform.push("/agents", reply(200, r#"{"agents":[{"agentId":5,"isActive":true}]}"#));
    h.platform.route("/join", reply(202, r#"{"sessionId":"s5"}"#));
    h.platform.push(
        "/get-next-event",
        reply(
            200,
            r#"{"sessionId":"s5-1","events":[
        {"Type":"CallContactEvent","ContactID":"11","MasterID":"10","Status":"Disconnected","FinalState":"False",
         "Skill":"1507","LastStateChangeTimeUTC":"2026-01-01T00:00:09.000Z"}]}"#,
        ),
    );
    h.platform.route("/get-next-event", reply(304, ""));
    let sessions = AgentSessions::new(h.client.clone());
    let mut d =
        SessionDetector::start(sessions.clone(), AcwTimeouts::new(), SessionDetectorConfig::default()).await.unwrap();
    assert_eq!(d.agents(), 1);
    let batch = tokio::time::timeout(Duration::from_secs(5), d.next_batch()).await.unwrap().unwrap();
    assert_eq!(batch[0].dedupe_key, "cxone:leg_ended:11:2026-01-01T00:00:09Z");
    let EventKind::LegEnded { facts } = &batch[0].kind else { panic!() };
    assert_eq!(facts.user_id.as_deref(), Some("5"));
    assert_eq!(sessions.current(5).as_deref().map(|s| s.starts_with("s5")), Some(true));
    assert!(d.calls() >= 3, "listing + join + poll: {}", d.calls());
}

#[tokio::test]
async fn reconcile_turns_completed_contacts_into_codes_and_closes() {
    let h = start(|_| {}).await;
    h.platform.push(
        "/contacts/completed",
        reply(
            200,
            r#"{"lastPollTime":"2026-01-02T00:00:00Z","completedContacts":[
        {"contactId":"20","masterContactId":"19","primaryDispositionId":"2896","lastUpdateTime":"2026-01-01T00:03:00Z"},
        {"contactId":21,"primaryDispositionId":0}]}"#,
        ),
    );
    let (events, last, requests) =
        reconcile(&h.client, &CompletedQuery::UpdatedSince("2026-01-01T00:00:00Z".into()), Priority::reconcile())
            .await
            .unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].kind.name(), "code_recorded");
    assert_eq!((last.as_deref(), requests), (Some("2026-01-02T00:00:00Z"), 1));
}

#[path = "cxone/sandbox_contract.rs"]
mod sandbox_contract;

#[tokio::test]
async fn the_write_path_moves_the_agent_only_after_the_disposition_was_applied() {
    let h = start(|_| {}).await;
    h.platform.route("/join", reply(202, r#"{"sessionId":"w1"}"#));
    let sessions = AgentSessions::new(h.client.clone());
    let available = wrapup_connectors::cxone::AgentStateRequest::Available;
    let applied = sessions.post_disposition(5, 11, 2896, None, live(), None, Some(&available)).await.unwrap();
    assert_eq!(applied.state_move, Some(Ok(())));
    let paths: Vec<String> = h.platform.api_calls().iter().map(|s| s.path_and_query.clone()).collect();
    assert_eq!(
        paths,
        [
            "/inContactAPI/services/v23.0/agent-sessions/join",
            "/inContactAPI/services/v27.0/agent-sessions/w1/interactions/11/disposition",
            "/inContactAPI/services/v23.0/agent-sessions/w1/state",
        ]
    );
    assert_eq!(h.platform.api_calls()[2].body, r#"{"state":"Available"}"#);

    // A refused write never moves the agent.
    h.platform.push("/disposition", refuse(409, "Contact must be disconnected before dispositioning"));
    let e = sessions.post_disposition(5, 12, 2896, None, live(), None, Some(&available)).await.unwrap_err();
    assert_eq!(rejection(&e), Some(Rejection::NotDisconnected));
    assert!(!h.platform.api_calls().last().unwrap().path_and_query.ends_with("/state"));

    // A failed state move is reported, the write still counts as applied.
    h.platform.push("/state", refuse(409, "Invalid State."));
    let applied = sessions.post_disposition(5, 13, 2896, None, live(), None, Some(&available)).await.unwrap();
    assert!(matches!(applied.state_move, Some(Err(_))));
}
