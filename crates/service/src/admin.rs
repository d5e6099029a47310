//! The HTTP surface: intake, health, metrics, and the admin API (legs and their explanations). The routes are
//! grouped so that the admin API can listen on an address of its own (`admin_listen`); the limits in front of all
//! of them are in [`crate::edge`].

use crate::app::AppState;
use crate::edge::bearer_matches;
use crate::intake::{self, error};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use std::sync::{Arc, OnceLock};
use wrapup_core::{LegKey, Outcome};
use wrapup_store::LegFilter;

/// Everything on one address: intake, probes, metrics and the admin API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().merge(intake_routes()).merge(admin_routes()).with_state(state)
}

/// What must be reachable from the platform's side: intake, the lookup for flows, and the probes (for a load balancer in front).
pub fn intake_router(state: Arc<AppState>) -> Router {
    intake_routes().with_state(state)
}

/// What need not be: the admin API and `/metrics`, with the probes too (`admin_listen`).
pub fn admin_router(state: Arc<AppState>) -> Router {
    admin_routes().route("/health", get(health)).route("/ready", get(ready)).with_state(state)
}

fn intake_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/intake/{connection}", post(intake::post_events))
        .route("/api/v1/lookup/{connection}/codes", get(crate::lookup::get_code))
        .route("/api/v1/lookup/{connection}/decision", post(crate::lookup::post_decision))
        .route("/api/v1/decisions/{connection}/{conversation}", put(crate::decisions::put_conversation))
        .route("/api/v1/decisions/{connection}/{conversation}/{participant}", put(crate::decisions::put_leg))
        .route("/health", get(health))
        .route("/ready", get(ready))
}

fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/legs", get(list_legs))
        .route("/api/v1/legs/{connection}/{conversation}/{participant}", get(get_leg))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/outbox", get(crate::outbox::admin::list))
        .route("/api/v1/outbox/retry", post(crate::outbox::admin::retry_dead))
        .route("/api/v1/outbox/replay", post(crate::outbox::admin::replay))
        .route("/api/v1/outbox/{message}/retry", post(crate::outbox::admin::retry_one))
        .route("/api/v1/sinks", get(crate::outbox::admin::sinks))
        .route("/api/v1/sinks/{name}/enable", post(crate::outbox::admin::enable))
}

async fn health() -> &'static str {
    "ok"
}

/// How long `/ready` waits for the store before it answers that the store is too slow: a probe must get an
/// answer, and a store that takes longer than this is not ready for traffic.
pub const READY_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// The process-wide Prometheus recorder (installed once; later calls reuse it).
pub fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
            // A flow waits on each lookup: its buckets are around the few milliseconds it is meant to take.
            const LOOKUP_BUCKETS: [f64; 10] = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];
            // A platform call, a hook's answer or a sink's: tens of milliseconds to the request timeout.
            const CALL_BUCKETS: [f64; 10] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
            // Leg end to code, in platform seconds: at once, within a rule's delay, or by an ACW timeout.
            const CODE_BUCKETS: [f64; 11] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full("wrapup_lookup_duration_seconds".into()), &LOOKUP_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("wrapup_platform_call_duration_seconds".into()), &CALL_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("wrapup_decision_hook_duration_seconds".into()), &CALL_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("wrapup_code_latency_seconds".into()), &CODE_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full("wrapup_outbox_delivery_seconds".into()), &CALL_BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

/// Ready when the store answers and every connection has a catalog: before that, each leg waits for the first
/// catalog load, so a deployment (or the demo) should not send traffic yet.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    match tokio::time::timeout(READY_STORE_TIMEOUT, state.store.next_due()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
        Err(_) => return crate::edge::unavailable("store_slow", "the store did not answer within a second"),
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

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.metrics_token {
        if !bearer_matches(&headers, token) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "/metrics needs 'Authorization: Bearer <token>'",
            );
        }
    }
    match &state.metrics {
        Some(h) => h.render().into_response(),
        None => error(StatusCode::SERVICE_UNAVAILABLE, "no_metrics", "no metrics recorder is installed"),
    }
}

/// What a bearer token may do on the admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads: legs, ledgers, summary, review queue, reports, the outbox.
    Viewer,
    /// Reads and actions: resolving review items, retrying and replaying the outbox, enabling a sink.
    Operator,
}

/// A read: any configured token will do (or none, when no token is configured).
pub(crate) fn authorized(state: &AppState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    authorize(state, headers, Role::Viewer)
}

/// Whether the request's bearer token holds `needed`. With no token configured the admin API is open (it then
/// belongs on a private `admin_listen` address); with any token configured, every admin route needs one, and an
/// action needs the operator's.
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap, needed: Role) -> Result<(), Box<Response>> {
    if state.admin_token.is_none() && state.viewer_token.is_none() {
        return Ok(());
    }
    let held = if state.admin_token.as_ref().is_some_and(|t| bearer_matches(headers, t)) {
        Role::Operator
    } else if state.viewer_token.as_ref().is_some_and(|t| bearer_matches(headers, t)) {
        Role::Viewer
    } else {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "the admin API needs 'Authorization: Bearer <token>'",
        )));
    };
    if needed == Role::Operator && held == Role::Viewer {
        return Err(Box::new(error(StatusCode::FORBIDDEN, "forbidden", "this action needs the operator token")));
    }
    Ok(())
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
    // The same shape rule as intake: a key no event could have stored is refused before the store is asked.
    let Some(platform) = state.connections.get(&connection).map(|c| c.platform.platform()) else {
        return error(StatusCode::NOT_FOUND, "unknown_connection", format!("no connection named {connection:?}"));
    };
    let key = LegKey::new(connection, conversation, participant);
    if let Err(e) = wrapup_core::ids::check_leg(platform, &key) {
        return error(StatusCode::BAD_REQUEST, "invalid_id", e.to_string());
    }
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
