//! `POST /intake/{connection}`: platform events in, durable before acknowledged.
//!
//! The order of checks is chosen so that nothing is read that need not be, and nothing is stored unless everything
//! is right:
//!
//! 1. the connection must exist (404);
//! 2. the request must be authenticated from its headers alone (401; see [`crate::intake_auth`]): the API key, or
//!    for Standard Webhooks the presence, form and timestamp of the signature headers;
//! 3. a declared `Content-Length` above the connection's limit is refused at once (413), and a `Content-Encoding`
//!    other than identity too (415: a compressed body is never inflated);
//! 4. only then is the body read — which is also when hyper sends `100 Continue` to a client that asked for it —
//!    up to the limit (413 beyond it, for a body without a length) and within `body_read_timeout` (408);
//! 5. a Standard Webhooks signature is verified against the body (401, or 409 for a reused `webhook-id`);
//! 6. the body must parse completely (400/422; a batch with one bad envelope is refused whole — the sender retries
//!    it, and a partial accept would make that retry ambiguous), and every id in it must have its platform's shape
//!    (400 naming the field, [`wrapup_core::ids`]).
//!
//! Only then are the events written, in one transaction, and only after that commit does the sender get its 2xx
//! (the SQLite store shares that commit with whatever else is being written at the moment: see its write batcher).
//! Duplicates (same dedupe key) are acknowledged and have no effect.

use crate::app::AppState;
use crate::intake_auth::IntakeAuth;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use wrapup_connectors::genesys::events::{parse_eventbridge, EventError, Parsed};
use wrapup_core::Platform;
use wrapup_store::Ingested;

pub use crate::edge::error;

/// How one connection's intake is authenticated and bounded.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    pub auth: IntakeAuth,
    pub max_body_bytes: usize,
    pub system_code_ids: std::collections::HashSet<String>,
}

fn refuse(reason: &'static str, status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    metrics::counter!("wrapup_intake_rejected_total", "reason" => reason).increment(1);
    error(status, code, message)
}

fn too_large(size: impl std::fmt::Display, limit: usize) -> Response {
    refuse(
        "size",
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("body of {size} bytes exceeds the limit of {limit} bytes"),
    )
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    TooLarge,
    Timeout,
    Broken,
}

/// Reads `body` whole, refusing it as soon as it grows past `limit` or takes longer than `timeout`. `declared` is
/// its `Content-Length`, already checked against `limit`.
pub(crate) async fn read_body(
    body: Body,
    declared: Option<u64>,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, BodyError> {
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = bytes::BytesMut::with_capacity(declared.map_or(0, |d| (d as usize).min(limit)));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| BodyError::Broken)?;
            if buf.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(timeout, read).await.unwrap_or(Err(BodyError::Timeout))
}

/// What intake did with a batch.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IntakeAnswer {
    /// Events stored and applied to their legs.
    pub accepted: usize,
    /// Events stored before (a redelivery): nothing changed.
    pub duplicates: usize,
    /// Events that carry nothing wrapup acts on (other topics, other participants).
    pub ignored: usize,
}

/// Platform events for a connection: Genesys Cloud notifications (as EventBridge or a webhook delivers them) or
/// the CXone connector's events. Authenticated per connection (signature or API key, see docs/DEPLOYING.md).
#[utoipa::path(post, path = "/intake/{connection}", tag = "intake",
    params(("connection" = String, Path, description = "The connection's name from the config")),
    request_body(content = Object, description = "One platform event or a batch", content_type = "application/json"),
    security(("connection_key" = [])), responses(
    (status = 202, description = "Stored: nothing is lost from here on", body = IntakeAnswer),
    (status = 400, description = "`bad_body`, `bad_json`, `invalid_id` …", body = crate::admin::ErrorBody),
    (status = 401, description = "The connection's authentication failed", body = crate::admin::ErrorBody),
    (status = 404, description = "`unknown_connection`", body = crate::admin::ErrorBody),
    (status = 408, description = "The body did not arrive in time", body = crate::admin::ErrorBody),
    (status = 413, description = "Too large", body = crate::admin::ErrorBody),
    (status = 415, description = "Not JSON", body = crate::admin::ErrorBody),
    (status = 422, description = "A topic or event wrapup does not read", body = crate::admin::ErrorBody),
    (status = 503, description = "`store_unavailable`: send again after `Retry-After`", body = crate::admin::ErrorBody),
))]
pub async fn post_events(
    State(state): State<Arc<AppState>>,
    Path(connection): Path<String>,
    request: Request,
) -> Response {
    let Some(settings) = state.intake.get(&connection) else {
        return error(StatusCode::NOT_FOUND, "unknown_connection", format!("no connection named {connection:?}"));
    };
    let (parts, body) = request.into_parts();
    let headers: &HeaderMap = &parts.headers;
    let now_unix = jiff::Timestamp::now().as_second();
    if let Err(refusal) = settings.auth.check_headers(headers, now_unix) {
        return refuse(refusal.reason, refusal.status, refusal.code, refusal.message);
    }
    let limit = settings.max_body_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|d| *d > limit as u64) {
        return too_large(declared, limit);
    }
    if headers.get(header::CONTENT_ENCODING).is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity")) {
        return refuse(
            "encoding",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
            "compressed bodies are not accepted; send the events uncompressed",
        );
    }
    let body = match read_body(body, declared, limit, state.edge.limits.body_read_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => return too_large(format!("more than {limit}"), limit),
        Err(BodyError::Timeout) => {
            return refuse(
                "timeout",
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!("the body did not arrive within {} ms", state.edge.limits.body_read_timeout.as_millis()),
            )
        }
        Err(BodyError::Broken) => {
            return refuse("broken", StatusCode::BAD_REQUEST, "bad_body", "the body could not be read to its end")
        }
    };
    if let Err(refusal) = settings.auth.check_body(headers, &body, now_unix) {
        return refuse(refusal.reason, refusal.status, refusal.code, refusal.message);
    }
    let parsed = match parse_eventbridge(&connection, &body, &settings.system_code_ids) {
        Ok(parsed) => parsed,
        Err(e) => {
            metrics::counter!("wrapup_intake_rejected_total", "reason" => "invalid").increment(1);
            let status = match &e {
                EventError::UnsupportedTopic { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                EventError::InBatch { source, .. } if matches!(**source, EventError::UnsupportedTopic { .. }) => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                EventError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return error(status, "invalid_event", e.to_string());
        }
    };
    let platform = state.connections.get(&connection).map_or(Platform::Genesys, |c| c.platform.platform());
    let mut ignored = 0usize;
    let mut events: Vec<_> = parsed
        .into_iter()
        .filter_map(|p| match p {
            Parsed::Event(e) => Some(e),
            Parsed::Ignored { .. } => {
                ignored += 1;
                None
            }
        })
        .collect();
    if let Some(e) = events.iter().find_map(|e| wrapup_core::ids::check_event(platform, e).err()) {
        metrics::counter!("wrapup_intake_rejected_total", "reason" => "invalid_id").increment(1);
        let message = if events.len() > 1 { format!("an event of the batch: {e}") } else { e.to_string() };
        return error(StatusCode::BAD_REQUEST, "invalid_id", message);
    }
    // The leg's deadline from the cached catalog, so the store can order it by deadline from the start (never waits:
    // before the first catalog load the worker fills it when it decides the leg).
    if let Some(conn) = state.connections.get(&connection) {
        if let Some(catalog) = conn.catalog.cached() {
            crate::catalog::fill_acw_facts(&mut events, &catalog, |q| conn.acw_estimates.estimate(q));
        }
    }
    let results = if events.is_empty() {
        Vec::new()
    } else {
        match state.store.ingest(&events, state.clock.now()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(connection = %connection, error = %e, "Could not store events; the sender must retry.");
                return crate::edge::unavailable("store_unavailable", "events could not be stored; retry");
            }
        }
    };
    crate::chaos::point("intake.after_store");
    let accepted = results.iter().filter(|r| **r == Ingested::New).count();
    let duplicates = results.len() - accepted;
    for (result, n) in [("accepted", accepted), ("duplicate", duplicates)] {
        metrics::counter!("wrapup_intake_events_total", "connection" => connection.clone(), "result" => result, "intake" => "http")
            .increment(n as u64);
    }
    if accepted > 0 {
        state.wake.notify_one();
    }
    (StatusCode::ACCEPTED, Json(IntakeAnswer { accepted, duplicates, ignored })).into_response()
}

/// The events of a feed the service pulls (the websocket, CXone detection) whose ids have their platform's shape;
/// the others are dropped — there is no sender to answer 400 to — and logged and counted, without their values.
pub(crate) fn with_valid_ids<'a>(
    platform: Platform,
    connection: &str,
    intake: &'static str,
    events: &'a [wrapup_core::Event],
) -> std::borrow::Cow<'a, [wrapup_core::Event]> {
    if events.iter().all(|e| wrapup_core::ids::check_event(platform, e).is_ok()) {
        return std::borrow::Cow::Borrowed(events);
    }
    let kept = events
        .iter()
        .filter(|e| match wrapup_core::ids::check_event(platform, e) {
            Ok(()) => true,
            Err(problem) => {
                tracing::warn!(connection = %connection, intake, problem = %problem, "Dropped an event whose ids are malformed.");
                metrics::counter!("wrapup_intake_rejected_total", "reason" => "invalid_id").increment(1);
                false
            }
        })
        .cloned()
        .collect();
    std::borrow::Cow::Owned(kept)
}
