//! The outbox's admin routes (same auth as the rest of the admin API):
//!
//! - `GET /api/v1/outbox?sink=&state=&since=&message=&limit=`: deliveries, newest message first;
//! - `POST /api/v1/outbox/{message}/retry?sink=`: send one message again;
//! - `POST /api/v1/outbox/retry?sink=`: send every dead letter again;
//! - `POST /api/v1/outbox/replay` with `{"since": "<RFC 3339>", "sink": "…"?}`: send again what was delivered since;
//! - `GET /api/v1/sinks`: each sink, whether it is disabled, its deliveries by state;
//! - `POST /api/v1/sinks/{name}/enable`: turn a sink a 410 disabled on again.

use crate::app::AppState;
use crate::intake::error;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use wrapup_store::{DeliveryFilter, DeliveryState, Resend, SinkState, Store};

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    sink: Option<String>,
    state: Option<String>,
    since: Option<String>,
    message: Option<String>,
    limit: Option<u32>,
}

#[derive(Deserialize)]
pub(crate) struct SinkQuery {
    sink: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ReplayBody {
    since: String,
    sink: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string())
}

fn check_sink(state: &AppState, sink: Option<&str>) -> Result<(), Box<Response>> {
    match sink {
        Some(name) if !state.sinks.iter().any(|s| s.name == name) => {
            Err(Box::new(error(StatusCode::NOT_FOUND, "unknown_sink", format!("no sink named {name:?}"))))
        }
        _ => Ok(()),
    }
}

/// When a resent message is given up: its sink's `max_age` from now (the longest, for every sink).
fn until(state: &AppState, sink: Option<&str>, now: Timestamp) -> Timestamp {
    let age = state
        .sinks
        .iter()
        .filter(|s| sink.is_none_or(|n| n == s.name))
        .map(|s| s.max_age)
        .max()
        .unwrap_or(wrapup_config::DEFAULT_SINK_MAX_AGE);
    now.checked_add(SignedDuration::try_from(age).unwrap_or(SignedDuration::from_hours(24))).unwrap_or(Timestamp::MAX)
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Err(r) = crate::admin::authorized(&state, &headers) {
        return *r;
    }
    let delivery_state = match q.state.as_deref().map(DeliveryState::parse) {
        Some(None) => return error(StatusCode::BAD_REQUEST, "bad_state", "state is pending, delivered or dead"),
        Some(s) => s,
        None => None,
    };
    let since = match q.since.as_deref().map(str::parse::<Timestamp>).transpose() {
        Ok(s) => s,
        Err(_) => return error(StatusCode::BAD_REQUEST, "bad_since", "since is an RFC 3339 time"),
    };
    let filter = DeliveryFilter {
        sink: q.sink,
        state: delivery_state,
        since,
        message_id: q.message,
        leg: None,
        limit: Some(q.limit.unwrap_or(100).min(1000)),
    };
    match state.store.outbox_list(&filter).await {
        Ok(rows) => Json(rows).into_response(),
        Err(e) => unavailable(e),
    }
}

async fn resend(state: &AppState, what: Resend, sink: Option<&str>) -> Response {
    let now = state.clock.now();
    match state.store.outbox_resend(&what, now, until(state, sink, now)).await {
        Ok(n) => {
            state.outbox_wake.notify_one();
            Json(json!({"resent": n})).into_response()
        }
        Err(e) => unavailable(e),
    }
}

pub(crate) async fn retry_one(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SinkQuery>,
) -> Response {
    if let Err(r) = crate::admin::authorize(&state, &headers, crate::admin::Role::Operator)
        .and_then(|_| check_sink(&state, q.sink.as_deref()))
    {
        return *r;
    }
    if !id.starts_with("msg_") || id.len() > 64 {
        return error(StatusCode::BAD_REQUEST, "bad_message_id", "a message id is `msg_…`");
    }
    resend(&state, Resend::Message { id, sink: q.sink.clone() }, q.sink.as_deref()).await
}

pub(crate) async fn retry_dead(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<SinkQuery>,
) -> Response {
    if let Err(r) = crate::admin::authorize(&state, &headers, crate::admin::Role::Operator)
        .and_then(|_| check_sink(&state, q.sink.as_deref()))
    {
        return *r;
    }
    resend(&state, Resend::Dead { sink: q.sink.clone() }, q.sink.as_deref()).await
}

pub(crate) async fn replay(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Json<ReplayBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err(r) = crate::admin::authorize(&state, &headers, crate::admin::Role::Operator) {
        return *r;
    }
    let Ok(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "bad_body", "the body is {\"since\": \"<RFC 3339>\", \"sink\": \"…\"?}");
    };
    if let Err(r) = check_sink(&state, body.sink.as_deref()) {
        return *r;
    }
    let Ok(since) = body.since.parse::<Timestamp>() else {
        return error(StatusCode::BAD_REQUEST, "bad_since", "since is an RFC 3339 time");
    };
    resend(&state, Resend::Delivered { since, sink: body.sink.clone() }, body.sink.as_deref()).await
}

pub(crate) async fn sinks(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = crate::admin::authorized(&state, &headers) {
        return *r;
    }
    match report(&state.sinks, state.store.as_ref()).await {
        Ok(rows) => Json(json!({"sinks": rows})).into_response(),
        Err(e) => unavailable(e),
    }
}

pub(crate) async fn enable(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = crate::admin::authorize(&state, &headers, crate::admin::Role::Operator)
        .and_then(|_| check_sink(&state, Some(&name)))
    {
        return *r;
    }
    let cleared = SinkState { name, disabled_at: None, disabled_status: None, disabled_reason: None };
    match state.store.outbox_set_sink(&cleared).await {
        Ok(()) => Json(json!({"enabled": cleared.name})).into_response(),
        Err(e) => unavailable(e),
    }
}

/// Each configured sink: its URL (without its query), whether it is disabled and why, and its deliveries by state.
pub async fn report(
    sinks: &[wrapup_config::SinkConfig],
    store: &dyn Store,
) -> Result<Vec<serde_json::Value>, wrapup_store::StoreError> {
    let states = store.outbox_sinks().await?;
    let counts = store.outbox_counts().await?;
    Ok(sinks
        .iter()
        .map(|s| {
            let disabled = states.iter().find(|x| x.name == s.name && x.disabled_at.is_some());
            let n = |st: DeliveryState| counts.get(&(s.name.clone(), st)).copied().unwrap_or(0);
            let mut url = s.url.clone();
            url.set_query(None);
            json!({
                "name": s.name,
                "url": url.as_str(),
                "disabled": disabled.map(|x| json!({"at": x.disabled_at, "status": x.disabled_status, "reason": x.disabled_reason})),
                "pending": n(DeliveryState::Pending),
                "delivered": n(DeliveryState::Delivered),
                "dead": n(DeliveryState::Dead),
            })
        })
        .collect())
}
