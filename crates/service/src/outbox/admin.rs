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
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use wrapup_store::{DeliveryFilter, DeliveryState, Resend, SinkState, Store};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// A sink's name.
    sink: Option<String>,
    /// `pending`, `delivered` or `dead`.
    state: Option<String>,
    /// Messages created at or after this instant (RFC 3339).
    since: Option<String>,
    /// One message's id (`msg_…`).
    message: Option<String>,
    /// At most this many deliveries (default 100, at most 1000).
    limit: Option<u32>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SinkQuery {
    /// Only this sink (default: every sink).
    sink: Option<String>,
}

/// Send again what was delivered since an instant.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ReplayBody {
    /// RFC 3339.
    since: String,
    /// Only this sink (default: every sink).
    sink: Option<String>,
}

/// How many deliveries were set to be sent again.
#[derive(Serialize, ToSchema)]
pub(crate) struct Resent {
    pub resent: u64,
}

/// A sink turned on again.
#[derive(Serialize, ToSchema)]
pub(crate) struct Enabled {
    pub enabled: String,
}

/// Each configured sink.
#[derive(Serialize, ToSchema)]
pub(crate) struct Sinks {
    pub sinks: Vec<SinkReport>,
}

/// A sink: where it delivers, whether it is disabled and why, and its deliveries by state.
#[derive(Debug, Serialize, ToSchema)]
pub struct SinkReport {
    pub name: String,
    /// The sink's URL without its query (which may hold a credential).
    pub url: String,
    pub disabled: Option<SinkDisabled>,
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
}

/// Why a sink is off: it answered `410 Gone`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SinkDisabled {
    #[schema(value_type = Option<String>, format = DateTime)]
    pub at: Option<Timestamp>,
    pub status: Option<u16>,
    pub reason: Option<String>,
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

/// Deliveries, newest message first.
#[utoipa::path(get, path = "/api/v1/outbox", tag = "outbox", params(ListQuery), security(("bearer" = [])), responses(
    (status = 200, description = "Deliveries", body = Vec<wrapup_store::Delivery>),
    (status = 400, description = "`bad_state`, `bad_since`", body = crate::admin::ErrorBody),
    (status = 401, description = "`unauthenticated`", body = crate::admin::ErrorBody),
    (status = 503, description = "`store_unavailable`", body = crate::admin::ErrorBody),
))]
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
            Json(Resent { resent: n }).into_response()
        }
        Err(e) => unavailable(e),
    }
}

/// Send one message again (operator).
#[utoipa::path(post, path = "/api/v1/outbox/{message}/retry", tag = "outbox",
    params(("message" = String, Path, description = "`msg_…`"), SinkQuery), security(("bearer" = [])), responses(
    (status = 200, description = "Deliveries set to be sent again", body = Resent),
    (status = 400, description = "`bad_message_id`", body = crate::admin::ErrorBody),
    (status = 401, description = "`unauthenticated`", body = crate::admin::ErrorBody),
    (status = 403, description = "`forbidden`: needs the operator token", body = crate::admin::ErrorBody),
    (status = 404, description = "`unknown_sink`", body = crate::admin::ErrorBody),
    (status = 503, description = "`store_unavailable`", body = crate::admin::ErrorBody),
))]
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

/// Send every dead letter again (operator).
#[utoipa::path(post, path = "/api/v1/outbox/retry", tag = "outbox", params(SinkQuery), security(("bearer" = [])), responses(
    (status = 200, description = "Deliveries set to be sent again", body = Resent),
    (status = 401, description = "`unauthenticated`", body = crate::admin::ErrorBody),
    (status = 403, description = "`forbidden`: needs the operator token", body = crate::admin::ErrorBody),
    (status = 404, description = "`unknown_sink`", body = crate::admin::ErrorBody),
    (status = 503, description = "`store_unavailable`", body = crate::admin::ErrorBody),
))]
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

/// Send again what was delivered since an instant (operator).
#[utoipa::path(post, path = "/api/v1/outbox/replay", tag = "outbox", request_body = ReplayBody, security(("bearer" = [])), responses(
    (status = 200, description = "Deliveries set to be sent again", body = Resent),
    (status = 400, description = "`bad_body`, `bad_since`", body = crate::admin::ErrorBody),
    (status = 401, description = "`unauthenticated`", body = crate::admin::ErrorBody),
    (status = 403, description = "`forbidden`: needs the operator token", body = crate::admin::ErrorBody),
    (status = 404, description = "`unknown_sink`", body = crate::admin::ErrorBody),
    (status = 503, description = "`store_unavailable`", body = crate::admin::ErrorBody),
))]
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

/// Each sink with its deliveries by state.
#[utoipa::path(get, path = "/api/v1/sinks", tag = "outbox", security(("bearer" = [])), responses(
    (status = 200, description = "The sinks", body = Sinks),
    (status = 401, description = "`unauthenticated`", body = crate::admin::ErrorBody),
    (status = 503, description = "`store_unavailable`", body = crate::admin::ErrorBody),
))]
pub(crate) async fn sinks(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = crate::admin::authorized(&state, &headers) {
        return *r;
    }
    match report(&state.sinks, state.store.as_ref()).await {
        Ok(sinks) => Json(Sinks { sinks }).into_response(),
        Err(e) => unavailable(e),
    }
}

/// Turn on again a sink that a `410 Gone` turned off (operator).
#[utoipa::path(post, path = "/api/v1/sinks/{name}/enable", tag = "outbox", params(("name" = String, Path)), security(("bearer" = [])), responses(
    (status = 200, description = "The sink is on", body = Enabled),
    (status = 401, description = "`unauthenticated`", body = crate::admin::ErrorBody),
    (status = 403, description = "`forbidden`: needs the operator token", body = crate::admin::ErrorBody),
    (status = 404, description = "`unknown_sink`", body = crate::admin::ErrorBody),
    (status = 503, description = "`store_unavailable`", body = crate::admin::ErrorBody),
))]
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
        Ok(()) => Json(Enabled { enabled: cleared.name }).into_response(),
        Err(e) => unavailable(e),
    }
}

/// Each configured sink: its URL (without its query), whether it is disabled and why, and its deliveries by state.
pub async fn report(
    sinks: &[wrapup_config::SinkConfig],
    store: &dyn Store,
) -> Result<Vec<SinkReport>, wrapup_store::StoreError> {
    let states = store.outbox_sinks().await?;
    let counts = store.outbox_counts().await?;
    Ok(sinks
        .iter()
        .map(|s| {
            let disabled = states.iter().find(|x| x.name == s.name && x.disabled_at.is_some());
            let n = |st: DeliveryState| counts.get(&(s.name.clone(), st)).copied().unwrap_or(0);
            let mut url = s.url.clone();
            url.set_query(None);
            SinkReport {
                name: s.name.clone(),
                url: url.to_string(),
                disabled: disabled.map(|x| SinkDisabled {
                    at: x.disabled_at,
                    status: x.disabled_status,
                    reason: x.disabled_reason.clone(),
                }),
                pending: n(DeliveryState::Pending),
                delivered: n(DeliveryState::Delivered),
                dead: n(DeliveryState::Dead),
            }
        })
        .collect())
}
