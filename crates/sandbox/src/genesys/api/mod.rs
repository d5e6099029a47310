//! The Genesys HTTP surface: `/oauth/token`, `/api/v2/*` and the notification websockets.
//!
//! Every `/api/v2` request passes one middleware (`api_gate`) that does, under a single short lock of the org:
//! catch the simulation up to the clock (so a handler sees exactly the state of "now", e.g. a timed-out ACW), check
//! the Bearer token (documented 401 bodies), count the request against the token's wall-time rate-limit window
//! (429 `too.many.requests` + `Retry-After`), and draw the request faults (`crate::engine::faults`). It then runs the handler inside a
//! task-local holding the `ININ-Correlation-Id`, so any [`PlatformError`] renders as an `ErrorBody` whose `contextId`
//! equals the header, stamps the `inin-ratelimit-*` headers, and counts the answer per endpoint *template* for the
//! report. Handler modules (`conversations`, `routing`, `users`, `analytics`, `aggregates`, `audit`) each export a
//! `routes()` function; adding an API family is adding a module and one `merge` line here.

pub mod aggregates;
pub mod analytics;
pub mod audit;
pub mod auth;
pub mod conversations;
pub mod notifications;
pub mod routing;
pub mod users;

use crate::engine::faults::{draw_request_faults, RequestFault};
use crate::engine::Simulation;
use crate::genesys::model::{Org, PlatformError};
use crate::SharedState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

tokio::task_local! {
    static CORRELATION: String;
}

/// The Genesys surface: `/api/v2` behind the gate, the token endpoint, and the notification websockets.
pub fn routes(state: SharedState) -> Router<SharedState> {
    let api = Router::new()
        .merge(conversations::routes())
        .merge(routing::routes())
        .merge(users::routes())
        .merge(analytics::routes())
        .merge(aggregates::routes())
        .merge(audit::routes())
        .merge(notifications::routes())
        .route_layer(middleware::from_fn_with_state(state, api_gate))
        .fallback(api_not_found);
    Router::new().nest("/api/v2", api).merge(auth::routes()).merge(notifications::socket_routes())
}

async fn api_not_found() -> Response {
    let corr = uuid::Uuid::new_v4().to_string();
    let mut resp = error_response(&PlatformError::not_found(), &corr);
    if let Ok(v) = HeaderValue::from_str(&corr) {
        resp.headers_mut().insert("ININ-Correlation-Id", v);
    }
    resp
}

/// Renders an `ErrorBody` with the given correlation id.
pub fn error_response(e: &PlatformError, correlation: &str) -> Response {
    let mut body = json!({
        "message": e.message,
        "code": e.code,
        "status": e.status,
        "messageParams": e.extra.params,
        "contextId": correlation,
        "details": e.extra.details,
        "errors": [],
    });
    if let (Some(m), Some(obj)) = (&e.extra.message_with_params, body.as_object_mut()) {
        obj.insert("messageWithParams".into(), json!(m));
    }
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if let Some(secs) = e.retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

impl IntoResponse for PlatformError {
    fn into_response(self) -> Response {
        let corr = CORRELATION.try_with(|c| c.clone()).unwrap_or_else(|_| uuid::Uuid::new_v4().to_string());
        error_response(&self, &corr)
    }
}

/// A JSON 200 response.
pub fn json_ok(v: serde_json::Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// Parses a JSON body; malformed JSON is the platform's 400 `bad.request`.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, PlatformError> {
    serde_json::from_slice(body).map_err(|_| PlatformError::malformed())
}

/// `application/json` 202 with an empty body (the wrap-up writes).
pub fn accepted() -> Response {
    StatusCode::ACCEPTED.into_response()
}

/// `inin-ratelimit-count`, `-allowed`, `-reset`.
type Limit = (u32, u32, u64);

/// What the gate decided for one request.
struct Gate {
    caller: Caller,
    limit: Option<Limit>,
    latency: Duration,
    hang: Option<Duration>,
}

/// Who is calling (request extension set by the gate for handlers that need it).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// Index of the OAuth client whose token was used.
    pub client: usize,
}

/// Maps a matched route to its report key, folding the media segment into `{media}`.
pub fn endpoint_key(raw: &str) -> String {
    let (method, matched) = raw.split_once(' ').unwrap_or(("", raw));
    let mut path = matched.to_string();
    for m in crate::genesys::model::Media::ALL {
        let prefix = format!("/api/v2/conversations/{}/", m.path());
        if path.starts_with(&prefix) {
            path = format!("/api/v2/conversations/{{media}}/{}", &path[prefix.len()..]);
            break;
        }
    }
    format!("{method} {path}")
}

/// Auth, rate limit and faults for one `/api/v2` request. Must be called with the org locked.
/// `storm` is how long a 429 storm starting now lasts in wall time (its simulated length through the clock).
fn gate(
    org: &mut Org,
    auth: Option<&str>,
    now: Instant,
    storm: Duration,
) -> Result<Gate, (PlatformError, Option<Limit>)> {
    let token = match auth.and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer "))) {
        Some(t) if !t.trim().is_empty() => t.trim(),
        _ => {
            return Err((
                PlatformError::new(
                    401,
                    "authentication.required",
                    "No authentication bearer token specified in authorization header.",
                ),
                None,
            ))
        }
    };
    let allowed = org.rate_limit_per_minute;
    let Some(tok) = org.tokens.get_mut(token) else {
        return Err((PlatformError::new(401, "bad.credentials", "Invalid login credentials."), None));
    };
    if tok.revoked {
        return Err((PlatformError::new(401, "bad.credentials", "Invalid login credentials."), None));
    }
    let caller = Caller { client: tok.client };
    let early = crate::rate_limit::before_retry_after(tok.retry_after, now);
    if now >= tok.expires {
        return Err((
            PlatformError::new(401, "credentials.expired", "The supplied credentials are expired and cannot be used."),
            None,
        ));
    }
    // The token's window, under the org's semantics (`crate::rate_limit`).
    let admission = tok.window.admit(org.rate_limit_window, allowed, now);
    if early {
        org.api.calls_before_retry_after += 1;
    }
    let reset = admission.reset_secs;
    let limit = Some((admission.count, allowed, reset));
    if !admission.admitted {
        let mut e = PlatformError::new(
            429,
            "too.many.requests",
            format!("Rate limit exceeded the maximum [{allowed}] requests within [60] seconds"),
        )
        .with_params(
            "Rate limit exceeded the maximum [{limit}] requests within [{duration}] seconds",
            &[("limit", &allowed.to_string()), ("duration", "60")],
        );
        e.retry_after = Some(reset);
        told_to_wait(org, token, now, reset);
        return Err((e, limit));
    }

    let storm_error = |secs: u64| {
        let mut e = PlatformError::new(
            429,
            "too.many.requests",
            "Rate limit exceeded the maximum [300] requests within [60] seconds",
        );
        e.retry_after = Some(secs);
        e
    };
    match draw_request_faults(&org.faults, &mut org.storm_until, &mut org.fault_rng, now, storm) {
        RequestFault::Serve { latency, hang } => Ok(Gate { caller, limit, latency, hang }),
        RequestFault::Storm { secs } => {
            told_to_wait(org, token, now, secs);
            Err((storm_error(secs), limit))
        }
        RequestFault::RevokeToken => {
            if let Some(tok) = org.tokens.get_mut(token) {
                tok.revoked = true;
            }
            Err((PlatformError::new(401, "bad.credentials", "Invalid login credentials."), limit))
        }
        RequestFault::ServerError(status) => {
            let e = match status {
                500 => {
                    PlatformError::new(500, "internal.server.error", "The server encountered an unexpected condition.")
                }
                502 => PlatformError::new(
                    502,
                    "bad.gateway",
                    "The server received an invalid response from an upstream server.",
                ),
                503 => PlatformError::new(
                    503,
                    "service.unavailable",
                    "Service Unavailable - The server is currently unavailable.",
                ),
                _ => PlatformError::new(504, "request.timeout", "The request timed out."),
            };
            Err((e, limit))
        }
    }
}

/// Remembers the `Retry-After` a token was given, for the `calls_before_retry_after` ground truth.
fn told_to_wait(org: &mut Org, token: &str, now: Instant, secs: u64) {
    if let Some(tok) = org.tokens.get_mut(token) {
        tok.retry_after = Some((now, now + Duration::from_secs(secs)));
    }
}

/// The `/api/v2` middleware (see the module docs).
async fn api_gate(State(st): State<SharedState>, req: Request, next: Next) -> Response {
    // Raw key; folded into templates (`{media}`) when the report is built.
    let key = format!(
        "{} {}",
        req.method().as_str(),
        req.extensions().get::<MatchedPath>().map(|m| m.as_str()).unwrap_or(req.uri().path())
    );
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).map(str::to_string);
    let decision = {
        let mut org = st.org.lock();
        org.advance_to(st.clock.now());
        org.api.total += 1;
        // Random bytes from the (locked) fault RNG: cheaper than a getrandom call per request.
        let corr = uuid::Builder::from_random_bytes(org.fault_rng.gen()).into_uuid().to_string();
        let storm = st.clock.wall_duration(jiff::SignedDuration::from_secs(org.faults.storm_secs.max(1) as i64));
        (corr, gate(&mut org, auth.as_deref(), Instant::now(), storm))
    };
    let (corr, decision) = decision;
    let (mut resp, limit) = match decision {
        Ok(g) => {
            if !g.latency.is_zero() {
                tokio::time::sleep(g.latency).await;
            }
            let mut req = req;
            req.extensions_mut().insert(g.caller);
            let resp = CORRELATION.scope(corr.clone(), next.run(req)).await;
            if let Some(h) = g.hang {
                // The request took effect; the answer comes too late for a typical client.
                tokio::time::sleep(h).await;
            }
            (resp, g.limit)
        }
        Err((e, limit)) => (error_response(&e, &corr), limit),
    };
    finish(&st, &mut resp, &corr, limit, key);
    resp
}

fn finish(st: &SharedState, resp: &mut Response<Body>, corr: &str, limit: Option<Limit>, key: String) {
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(corr) {
        h.insert("ININ-Correlation-Id", v);
    }
    if let Some((count, allowed, reset)) = limit {
        h.insert("inin-ratelimit-count", HeaderValue::from(count));
        h.insert("inin-ratelimit-allowed", HeaderValue::from(allowed));
        h.insert("inin-ratelimit-reset", HeaderValue::from(reset));
    }
    let status = resp.status().as_u16();
    let mut org = st.org.lock();
    if status == 429 {
        org.api.rate_limited += 1;
    }
    *org.api.by_endpoint.entry(key).or_default().entry(status).or_default() += 1;
}

/// Parses the raw query string into pairs (repeated keys kept, as `id=a&id=b`).
pub fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

/// Current correlation id (inside a handler), for handlers that build their own responses.
pub fn correlation_id() -> String {
    CORRELATION.try_with(|c| c.clone()).unwrap_or_default()
}
