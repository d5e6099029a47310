//! The dashboard through the admin router, on a service started with a platform whose catalog is fixed (the
//! lookup's test harness); legs are put in the store as intake would.

use super::events::OutcomesEvent;
use super::CONTENT_SECURITY_POLICY;
use crate::app::ServiceHandle;
use crate::lookup::tests::{api_key, service, service_with};
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use wrapup_core::{Event, EventKind, LegFacts, LegKey, Platform};

const CONVERSATION: &str = "5d0f7c2e-8a41-4f3b-9d6e-2b7c1a9e4f10";
const PARTICIPANT: &str = "a3e1c9b2-6f4d-4e8a-b1c7-9d2f0e5a7b36";

async fn call(handle: &ServiceHandle, request: Request<Body>) -> Response {
    crate::admin::router(handle.state.clone()).oneshot(request).await.unwrap()
}

async fn text(response: Response) -> String {
    String::from_utf8(axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// A request as `EventSource` sends it.
fn events() -> Request<Body> {
    Request::get("/api/v1/events").header(header::ACCEPT, "text/event-stream").body(Body::empty()).unwrap()
}

fn header(response: &Response, name: header::HeaderName) -> &str {
    response.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

fn ended(key: &LegKey) -> Event {
    Event {
        leg: key.clone(),
        dedupe_key: format!("{key}/end"),
        occurred_at: jiff::Timestamp::now(),
        correlation_id: None,
        kind: EventKind::LegEnded {
            facts: Box::new(LegFacts {
                queue_name: Some("Support".into()),
                ended_at: Some(jiff::Timestamp::now()),
                acw_timeout_ms: Some(600_000),
                ..Default::default()
            }),
        },
    }
}

fn coded(key: &LegKey, code: &str) -> Event {
    Event {
        leg: key.clone(),
        dedupe_key: format!("{key}/code"),
        occurred_at: jiff::Timestamp::now(),
        correlation_id: None,
        kind: EventKind::CodeRecorded { code_id: Some(code.into()), notes: None, system: false },
    }
}

#[tokio::test]
async fn assets_are_served_with_their_content_type_a_cache_header_and_the_policy() {
    let handle = service(vec![("dash-assets", Platform::Genesys, api_key(), None)]).await;
    for (name, content_type) in [
        ("dashboard.css", "text/css; charset=utf-8"),
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ] {
        let response = call(&handle, get(&format!("/dashboard/assets/{name}"))).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert_eq!(header(&response, header::CONTENT_TYPE), content_type, "{name}");
        assert_eq!(header(&response, header::CACHE_CONTROL), "public, max-age=3600", "{name}");
        assert_eq!(header(&response, header::CONTENT_SECURITY_POLICY), CONTENT_SECURITY_POLICY, "{name}");
        assert_eq!(header(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{name}");
    }
    assert_eq!(call(&handle, get("/dashboard/assets/../Cargo.toml")).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(call(&handle, get("/dashboard/assets/nothing.js")).await.status(), StatusCode::NOT_FOUND);

    let page = call(&handle, get("/dashboard")).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&page, header::CONTENT_SECURITY_POLICY), CONTENT_SECURITY_POLICY);
    let body = text(page).await;
    assert!(!body.contains("/dashboard/logout"), "no token, no login to end");
    // The policy allows no inline script or style: the page has none.
    assert!(body.contains(r#"<script src="/dashboard/assets/dashboard.js?v="#), "{body}");
    assert!(!body.contains("<script>") && !body.contains("<style") && !body.contains(" style="), "{body}");
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
    handle.shutdown().await;
}

#[tokio::test]
async fn the_ledger_page_escapes_what_the_store_holds() {
    let handle = service(vec![("dash-ledger", Platform::Genesys, api_key(), None)]).await;
    let key = LegKey::new("dash-ledger", CONVERSATION, PARTICIPANT);
    let store = &handle.state.store;
    store.ingest(&[ended(&key), coded(&key, "<script>alert('code')</script>")], jiff::Timestamp::now()).await.unwrap();
    let note = wrapup_store::LedgerEntry {
        at: jiff::Timestamp::now(),
        kind: "note".into(),
        detail: serde_json::json!({"note": "<script>alert(\"note\")</script> & <b>bold</b>"}),
    };
    store.append_ledger(&key, &note).await.unwrap();

    let page = call(&handle, get(&format!("/dashboard/legs/dash-ledger/{CONVERSATION}/{PARTICIPANT}"))).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(header(&page, header::CONTENT_SECURITY_POLICY), CONTENT_SECURITY_POLICY);
    let body = text(page).await;
    assert!(!body.contains("<script>alert") && !body.contains("<b>bold"), "{body}");
    assert!(body.contains("&lt;script&gt;alert(&#39;code&#39;)&lt;/script&gt;"), "the code, escaped: {body}");
    assert!(
        body.contains("&lt;script&gt;alert(&quot;note&quot;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;"),
        "{body}"
    );
    assert!(body.contains(r#"<ol class="timeline">"#) && body.contains("<strong>note</strong>"), "{body}");

    // A leg the store does not have, a connection that does not exist, an id no event could carry.
    let missing = format!("/dashboard/legs/dash-ledger/{CONVERSATION}/{CONVERSATION}");
    assert_eq!(call(&handle, get(&missing)).await.status(), StatusCode::NOT_FOUND);
    let other = format!("/dashboard/legs/nowhere/{CONVERSATION}/{PARTICIPANT}");
    assert_eq!(call(&handle, get(&other)).await.status(), StatusCode::NOT_FOUND);
    let page = call(&handle, get("/dashboard/legs/dash-ledger/%3Cscript%3E/x")).await;
    assert_eq!(page.status(), StatusCode::BAD_REQUEST);
    assert!(!text(page).await.contains("<script>"));
    handle.shutdown().await;
}

#[tokio::test]
async fn the_review_queue_lists_legs_in_review_with_plain_forms() {
    // The leg is put in review before the service starts: its worker would otherwise take the leg first.
    let store: Arc<dyn wrapup_store::Store> = Arc::new(wrapup_store::SqliteStore::open_in_memory().await.unwrap());
    let key = LegKey::new("dash-review", CONVERSATION, PARTICIPANT);
    let now = jiff::Timestamp::now();
    store.ingest(&[ended(&key)], now).await.unwrap();
    let later = now.checked_add(jiff::SignedDuration::from_secs(3600)).unwrap();
    let claim = store.claim_due(later, 10, "t", jiff::SignedDuration::from_secs(30)).await.unwrap();
    let claim = claim.into_iter().find(|c| c.leg.key == key).expect("the leg is due");
    let mut leg = claim.leg.clone();
    leg.finish(wrapup_core::Outcome::Review, Some("the <platform> refused the write".into()), now);
    let save = wrapup_store::Save {
        leg: &leg,
        version: claim.version,
        owner: "t",
        release: true,
        lines: &[],
        stored_outcome: None,
    };
    store.save(save).await.unwrap();
    let handle =
        service_with(vec![("dash-review", Platform::Genesys, api_key(), None)], |spec| spec.store = store).await;

    let body = text(call(&handle, get("/dashboard/review")).await).await;
    let action = format!(r#"action="/api/v1/review/dash-review/{CONVERSATION}/{PARTICIPANT}/resolve""#);
    assert!(body.contains(&action), "{body}");
    assert!(body.contains(r#"/dismiss" class="card">"#), "{body}");
    assert!(body.contains("the &lt;platform&gt; refused the write"), "{body}");
    assert!(body.contains(r#"<label>Code <input name="code""#) && body.contains(r#"<input name="by""#), "{body}");
    let ledger =
        text(call(&handle, get(&format!("/dashboard/legs/dash-review/{CONVERSATION}/{PARTICIPANT}"))).await).await;
    assert!(ledger.contains(&action), "the ledger of a leg in review offers the actions too: {ledger}");
    handle.shutdown().await;
}

/// The next `outcomes` event of an event stream (skipping heartbeats), within `within`.
async fn next_outcomes(
    stream: &mut axum::body::BodyDataStream,
    buffer: &mut String,
    within: Duration,
) -> OutcomesEvent {
    tokio::time::timeout(within, async {
        loop {
            if let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                if block.lines().any(|l| l == "event: outcomes") {
                    let data = block.lines().find_map(|l| l.strip_prefix("data: ")).expect("data");
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = stream.next().await.expect("the stream stays open").unwrap();
            buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    })
    .await
    .expect("an outcomes event in time")
}

#[tokio::test]
async fn the_event_stream_sends_the_counts_at_once_and_again_when_a_leg_finishes() {
    let handle = service(vec![("dash-live", Platform::Genesys, api_key(), None)]).await;
    let refused = call(&handle, get("/api/v1/events")).await;
    assert_eq!(refused.status(), StatusCode::NOT_ACCEPTABLE, "a request that is not an EventSource's");
    let response = call(&handle, events()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, header::CONTENT_TYPE), "text/event-stream");
    let mut stream = response.into_body().into_data_stream();
    let mut buffer = String::new();
    let first = next_outcomes(&mut stream, &mut buffer, Duration::from_secs(5)).await;
    assert_eq!(first.connections.len(), 1);
    assert_eq!(first.connections[0].legs, 0);
    assert_eq!(first.connections[0].outcomes["agent_won"], 0);

    let key = LegKey::new("dash-live", CONVERSATION, PARTICIPANT);
    handle.state.store.ingest(&[ended(&key), coded(&key, "c-res")], jiff::Timestamp::now()).await.unwrap();
    // The outcome hook wakes the stream; it reads within a second of its last read, well before its slow poll.
    let next = next_outcomes(&mut stream, &mut buffer, super::events::POLL_EVERY - Duration::from_millis(500)).await;
    assert_eq!(next.connections[0].legs, 1);
    assert_eq!(next.connections[0].outcomes["agent_won"], 1);
    drop(stream);
    handle.shutdown().await;
}

#[tokio::test]
async fn event_streams_are_capped_and_a_closed_one_frees_its_place() {
    let handle = service(vec![("dash-cap", Platform::Genesys, api_key(), None)]).await;
    let mut open = Vec::new();
    for _ in 0..super::events::MAX_STREAMS {
        let response = call(&handle, events()).await;
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response);
    }
    let over = call(&handle, events()).await;
    assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(over).await.contains("too_many_streams"));
    drop(open.pop());
    assert_eq!(call(&handle, events()).await.status(), StatusCode::OK);
    handle.shutdown().await;
}

#[tokio::test]
async fn a_login_sets_a_cookie_the_admin_api_takes_and_actions_from_another_site_are_refused() {
    let connections = vec![("dash-auth", Platform::Genesys, api_key(), None)];
    let handle = service_with(connections, |spec| {
        spec.admin_token = Some(wrapup_core::Secret::new("operator-t0ken"));
        spec.viewer_token = Some(wrapup_core::Secret::new("viewer-t0ken"));
    })
    .await;
    let page = call(&handle, get("/dashboard")).await;
    assert_eq!((page.status(), header(&page, header::LOCATION)), (StatusCode::SEE_OTHER, "/dashboard/login"));
    assert_eq!(call(&handle, events()).await.status(), StatusCode::UNAUTHORIZED);

    let login = |token: &str, site: &str| {
        Request::post("/dashboard/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header("sec-fetch-site", site)
            .body(Body::from(format!("token={token}")))
            .unwrap()
    };
    let refused = call(&handle, login("wrong", "same-origin")).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.headers().get(header::SET_COOKIE).is_none());
    // Through the HTTP edge, whose error envelope leaves the dashboard's pages as they are.
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let refused =
        http.post(format!("{}/dashboard/login", handle.base_url())).form(&[("token", "wrong")]).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["content-type"], "text/html; charset=utf-8");
    assert!(refused.text().await.unwrap().contains("not one this server accepts"));
    assert_eq!(call(&handle, login("operator-t0ken", "cross-site")).await.status(), StatusCode::FORBIDDEN);

    let cookie_of = |response: &Response| {
        let set = header(response, header::SET_COOKIE).to_string();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.split("; ").any(|a| a == attribute), "{attribute} in {set}");
        }
        set.split(';').next().unwrap().to_string()
    };
    let viewer = call(&handle, login("viewer-t0ken", "same-origin")).await;
    assert_eq!((viewer.status(), header(&viewer, header::LOCATION)), (StatusCode::SEE_OTHER, "/dashboard"));
    let viewer = cookie_of(&viewer);
    let operator = cookie_of(&call(&handle, login("operator-t0ken", "same-origin")).await);
    assert!(!viewer.contains("viewer-t0ken"), "the token is encoded in the cookie: {viewer}");

    let with = |method: &str, uri: &str, cookie: &str, extra: Option<(&str, &str)>| {
        let mut request = Request::builder().method(method).uri(uri).header(header::COOKIE, cookie);
        if let Some((name, value)) = extra {
            request = request.header(name, value);
        }
        request.header(header::HOST, "127.0.0.1:8080").body(Body::empty()).unwrap()
    };
    let page = call(&handle, with("GET", "/dashboard", &viewer, None)).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(text(page).await.contains(r#"action="/dashboard/logout""#), "a login can be ended");
    let signed_out = call(&handle, Request::post("/dashboard/logout").body(Body::empty()).unwrap()).await;
    assert!(header(&signed_out, header::SET_COOKIE).contains("Max-Age=0"), "the cookie is cleared");
    assert_eq!(call(&handle, with("GET", "/api/v1/legs", &viewer, None)).await.status(), StatusCode::OK);
    let tampered = format!("{}x", operator);
    assert_eq!(call(&handle, with("GET", "/api/v1/legs", &tampered, None)).await.status(), StatusCode::UNAUTHORIZED);

    // An action (the operator's role): the viewer's cookie is not enough; the operator's is, from this site only.
    let action = "/api/v1/outbox/retry";
    let same = Some(("sec-fetch-site", "same-origin"));
    let response = call(&handle, with("POST", action, &viewer, same)).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(text(response).await.contains("\"forbidden\""));
    let status = call(&handle, with("POST", action, &operator, same)).await.status();
    assert!(status.is_success(), "{status}");
    for cross in [
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("origin", "http://127.0.0.1:8080.evil.example"),
    ] {
        let response = call(&handle, with("POST", action, &operator, Some(cross))).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{cross:?}");
        assert!(text(response).await.contains("\"cross_site\""), "{cross:?}");
    }
    let status =
        call(&handle, with("POST", action, &operator, Some(("origin", "http://127.0.0.1:8080")))).await.status();
    assert!(status.is_success(), "the page's own origin: {status}");
    handle.shutdown().await;
}
