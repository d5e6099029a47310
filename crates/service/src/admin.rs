//! The HTTP surface: intake, health, metrics, and the admin API (legs and their explanations).

use crate::app::AppState;
use crate::intake::{self, error};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, OnceLock};
use subtle::ConstantTimeEq;
use wrapup_core::{LegKey, Outcome};
use wrapup_store::LegFilter;

/// The largest intake body any connection may configure; each connection's own limit is checked in the handler.
pub const MAX_INTAKE_BODY: usize = 16 * 1024 * 1024;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/intake/{connection}", post(intake::post_events))
        .layer(DefaultBodyLimit::max(MAX_INTAKE_BODY))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/v1/legs", get(list_legs))
        .route("/api/v1/legs/{connection}/{conversation}/{participant}", get(get_leg))
        .route("/api/v1/summary", get(summary))
        .with_state(state)
}

/// The process-wide Prometheus recorder (installed once; later calls reuse it).
pub fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> = OnceLock::new();
    HANDLE.get_or_init(|| metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().ok()).clone()
}

/// Ready when the store answers and every connection has a catalog: before that, each leg waits for the first
/// catalog load, so a deployment (or the demo) should not send traffic yet.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if let Err(e) = state.store.next_due().await {
        return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string());
    }
    let mut loading: Vec<&str> =
        state.connections.iter().filter(|(_, c)| !c.catalog.is_loaded()).map(|(n, _)| n.as_str()).collect();
    if loading.is_empty() {
        return (StatusCode::OK, "ready").into_response();
    }
    loading.sort_unstable();
    let msg = format!("the code catalog of {} is still loading from the platform", loading.join(", "));
    error(StatusCode::SERVICE_UNAVAILABLE, "catalog_loading", msg)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(h) => h.render().into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "no_metrics", "no metrics recorder is installed"),
    }
}

fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let Some(token) = &state.admin_token else { return Ok(()) };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !presented.is_empty() && bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes())) {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the admin API needs 'Authorization: Bearer <token>'",
        )))
    }
}

#[derive(Deserialize)]
struct LegQuery {
    connection: Option<String>,
    outcome: Option<String>,
    #[serde(default)]
    open: bool,
    limit: Option<u32>,
}

async fn list_legs(State(state): State<Arc<AppState>>, headers: HeaderMap, Query(q): Query<LegQuery>) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let outcome = match q.outcome.as_deref().map(Outcome::parse) {
        Some(None) => return error(StatusCode::BAD_REQUEST, "bad_outcome", "unknown outcome"),
        Some(o) => o,
        None => None,
    };
    let filter = LegFilter {
        connection: q.connection,
        outcome,
        open_only: q.open,
        limit: Some(q.limit.unwrap_or(100).min(1000)),
    };
    match state.store.list_legs(&filter).await {
        Ok(legs) => Json(legs).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    }
}

async fn get_leg(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((connection, conversation, participant)): Path<(String, String, String)>,
) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let key = LegKey::new(connection, conversation, participant);
    let leg = match state.store.get_leg(&key).await {
        Ok(Some(l)) => l.leg,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", format!("no leg {key}")),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    };
    let ledger = state.store.ledger(&key).await.unwrap_or_default();
    Json(json!({"leg": leg, "ledger": ledger})).into_response()
}

async fn summary(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let mut out = Vec::new();
    for (name, conn) in &state.connections {
        let counts = state.store.outcome_counts(name).await.unwrap_or_default();
        let outcomes: serde_json::Map<String, serde_json::Value> =
            counts.iter().map(|(o, n)| (o.map(|o| o.as_str()).unwrap_or("open").to_string(), json!(n))).collect();
        out.push(json!({"name": name, "platform": conn.platform.platform().as_str(), "outcomes": outcomes,
            "api_calls": conn.platform.stats().total}));
    }
    Json(json!({"connections": out})).into_response()
}
