//! `POST /intake/{connection}`: platform events in, durable before acknowledged.
//!
//! The order of checks is chosen so that nothing is stored unless everything is right: the connection must exist,
//! the request must be authenticated (an API key or a Standard Webhooks signature, see [`crate::intake_auth`]), the
//! body must fit the size limit and parse completely (a batch with one bad envelope is refused whole — the sender
//! retries it, and a partial accept would make that retry ambiguous).
//! Only then are the events written, in one transaction, and only after that commit does the sender get its 2xx
//! (the SQLite store shares that commit with whatever else is being written at the moment: see its write batcher).
//! Duplicates (same dedupe key) are acknowledged and have no effect.

use crate::app::AppState;
use crate::intake_auth::IntakeAuth;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;
use wrapup_connectors::genesys::events::{parse_eventbridge, EventError, Parsed};
use wrapup_store::Ingested;

/// How one connection's intake is authenticated and bounded.
#[derive(Debug, Clone)]
pub struct IntakeSettings {
    pub auth: IntakeAuth,
    pub max_body_bytes: usize,
    pub system_code_ids: std::collections::HashSet<String>,
}

/// A refusal, as the one JSON error envelope of the API.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

pub async fn post_events(
    State(state): State<Arc<AppState>>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(settings) = state.intake.get(&connection) else {
        return error(StatusCode::NOT_FOUND, "unknown_connection", format!("no connection named {connection:?}"));
    };
    if let Err(refusal) = settings.auth.check(&headers, &body, jiff::Timestamp::now().as_second()) {
        metrics::counter!("wrapup_intake_rejected_total", "reason" => refusal.reason).increment(1);
        return error(refusal.status, refusal.code, refusal.message);
    }
    if body.len() > settings.max_body_bytes {
        metrics::counter!("wrapup_intake_rejected_total", "reason" => "size").increment(1);
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body of {} bytes exceeds the limit of {} bytes", body.len(), settings.max_body_bytes),
        );
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
    // The leg's deadline from the cached catalog, so the store can order it by deadline from the start (never waits:
    // before the first catalog load the worker fills it when it decides the leg).
    if let Some(catalog) = state.connections.get(&connection).and_then(|c| c.catalog.cached()) {
        crate::catalog::fill_acw_timeouts(&mut events, &catalog);
    }
    let results = if events.is_empty() {
        Vec::new()
    } else {
        match state.store.ingest(&events, state.clock.now()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(connection = %connection, error = %e, "Could not store events; the sender must retry.");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "events could not be stored; retry",
                );
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
    (StatusCode::ACCEPTED, Json(json!({"accepted": accepted, "duplicates": duplicates, "ignored": ignored})))
        .into_response()
}
