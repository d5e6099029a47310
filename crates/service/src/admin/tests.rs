//! The OpenAPI document: its snapshot, and that it and the router describe the same routes.

use super::*;
use crate::lookup::tests::{api_key, service, service_with};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use tower::ServiceExt;
use wrapup_core::Platform;

/// Where the snapshot of the document lives; `WRAPUP_UPDATE_SNAPSHOTS=1` rewrites it.
const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

fn rendered() -> String {
    serde_json::to_string_pretty(openapi()).unwrap() + "\n"
}

#[test]
fn the_document_matches_its_snapshot() {
    let now = rendered();
    if std::env::var_os("WRAPUP_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(SNAPSHOT, &now).unwrap();
    }
    let then = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        then == now,
        "the API changed: review the difference and run `WRAPUP_UPDATE_SNAPSHOTS=1 cargo nextest run -p wrapup-service \
         the_document_matches_its_snapshot` to record it in docs/openapi.json"
    );
}

#[test]
fn the_document_is_openapi_3_1_with_every_response_described() {
    let doc: serde_json::Value = serde_json::to_value(openapi()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 15, "{} paths", paths.len());
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{method} {path} has no responses"));
            assert!(!responses.is_empty(), "{method} {path}");
            assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {path} has no tag");
            for (status, r) in responses {
                // Every error answer is the one envelope (or, for the decision API's 409s, a body that carries it).
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &r["content"]["application/json"]["schema"];
                    assert!(!schema.is_null(), "{method} {path} {status} has no JSON body");
                }
            }
        }
    }
}

/// A value for each path parameter that the handlers accept as well-formed.
fn concrete(path: &str) -> String {
    path.replace("{connection}", "gen")
        .replace("{conversation}", "1b0c3a5e-3c8a-4b6e-9d2f-0a1b2c3d4e5f")
        .replace("{participant}", "2b0c3a5e-3c8a-4b6e-9d2f-0a1b2c3d4e5f")
        .replace("{message}", "msg_0")
        .replace("{name}", "crm")
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

#[tokio::test]
async fn every_route_in_the_document_is_served_and_no_other_method_is() {
    let handle = service(vec![("gen", Platform::Genesys, api_key(), None)]).await;
    let doc: serde_json::Value = serde_json::to_value(openapi()).unwrap();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let documented: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
        for method in METHODS {
            let request = Request::builder()
                .method(Method::from_bytes(method.to_uppercase().as_bytes()).unwrap())
                .uri(concrete(path))
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let response = router(handle.state.clone()).oneshot(request).await.unwrap();
            let status = response.status();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            if documented.contains(&method) {
                // Served by its handler: whatever it answers, it is not the router's own 404 (an empty body) or 405.
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert!(!(status == StatusCode::NOT_FOUND && body.is_empty()), "{method} {path} is not routed");
                checked += 1;
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} is served but not documented");
            }
        }
    }
    assert!(checked >= 17, "{checked} operations");
}

#[test]
fn the_router_is_built_only_from_documented_routes() {
    // The reverse direction: a route added with axum's own `.route(…)` would be served but not documented. Every
    // route goes through `routes!`, which puts it in both.
    let source = include_str!("mod.rs");
    assert!(!source.contains(concat!(".route", "(")), "admin/mod.rs adds a route outside the document");
}

#[tokio::test]
async fn a_viewer_reads_and_only_the_operator_acts() {
    let handle = service_with(vec![("gen", Platform::Genesys, api_key(), None)], |spec| {
        spec.admin_token = Some(wrapup_core::Secret::new("operator-token"));
        spec.viewer_token = Some(wrapup_core::Secret::new("viewer-token"));
    })
    .await;
    let status = |method: &str, path: &str, token: Option<&str>| {
        let mut request = Request::builder().method(method).uri(path).header("content-type", "application/json");
        if let Some(t) = token {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let request = request.body(Body::from(r#"{"since": "2026-01-01T00:00:00Z"}"#)).unwrap();
        let router = router(handle.state.clone());
        async move { router.oneshot(request).await.unwrap().status() }
    };
    for path in ["/api/v1/legs", "/api/v1/summary", "/api/v1/outbox", "/api/v1/sinks"] {
        assert_eq!(status("GET", path, None).await, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(status("GET", path, Some("wrong")).await, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(status("GET", path, Some("viewer-token")).await, StatusCode::OK, "{path}");
        assert_eq!(status("GET", path, Some("operator-token")).await, StatusCode::OK, "{path}");
    }
    for path in ["/api/v1/outbox/retry", "/api/v1/outbox/replay"] {
        assert_eq!(status("POST", path, None).await, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(status("POST", path, Some("viewer-token")).await, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(status("POST", path, Some("operator-token")).await, StatusCode::OK, "{path}");
    }
    // The document itself is public: it holds no data and no secret.
    assert_eq!(status("GET", "/api/v1/openapi.json", None).await, StatusCode::OK);
}

#[tokio::test]
async fn legs_are_listed_by_filter_and_paged_with_a_link_to_the_next_page() {
    let handle = service(vec![("gen", Platform::Genesys, api_key(), None)]).await;
    let t0: jiff::Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
    for n in 0..5u32 {
        let key = wrapup_core::LegKey::new("gen", format!("c{n}"), format!("p{n}"));
        let facts = wrapup_core::LegFacts { queue_id: Some(format!("q{}", n % 2)), ..Default::default() };
        let event = wrapup_core::Event {
            leg: key,
            dedupe_key: format!("end-{n}"),
            occurred_at: t0,
            correlation_id: None,
            kind: wrapup_core::EventKind::LegEnded { facts: Box::new(facts) },
        };
        handle.state.store.ingest(&[event], t0 + jiff::SignedDuration::from_secs(i64::from(n))).await.unwrap();
    }
    let get = |uri: String| {
        let router = router(handle.state.clone());
        async move {
            let response = router.oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
            let status = response.status();
            let link = response.headers().get("link").map(|v| v.to_str().unwrap().to_string());
            let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
            (status, link, serde_json::from_slice::<serde_json::Value>(&body).unwrap())
        }
    };
    let conversations = |legs: &serde_json::Value| -> Vec<String> {
        legs.as_array().unwrap().iter().map(|l| l["key"]["conversation"].as_str().unwrap().to_string()).collect()
    };
    let (status, link, page) = get("/api/v1/legs?queue=q0&limit=2".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(conversations(&page), ["c4", "c2"]);
    let link = link.expect("a full page links to the next");
    let next = link.trim_start_matches('<').split('>').next().unwrap().to_string();
    assert!(next.contains("queue=q0") && next.contains("limit=2"), "{next}");
    let (_, last_link, rest) = get(next).await;
    assert_eq!(conversations(&rest), ["c0"]);
    assert!(last_link.is_none(), "a short page is the last");
    let (status, _, error) = get("/api/v1/legs?cursor=not-a-cursor".into()).await;
    assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_cursor")));
    let (status, _, error) = get("/api/v1/legs?from=yesterday".into()).await;
    assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_query")));
    let (status, _, error) = get("/api/v1/legs?limit=0".into()).await;
    assert_eq!((status, error["error"]["code"].as_str()), (StatusCode::BAD_REQUEST, Some("bad_query")));
}
