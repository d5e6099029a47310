//! Probes and metrics: `/health`, `/ready`, `/metrics`.

use crate::admin::ErrorBody;
use crate::app::AppState;
use crate::edge::bearer_matches;
use crate::intake::error;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, OnceLock};

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "probes",
    responses((status = 200, description = "Always `ok` while the process serves", body = String, content_type = "text/plain")))]
pub(crate) async fn health() -> &'static str {
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
#[utoipa::path(get, path = "/ready", tag = "probes", responses(
    (status = 200, description = "Ready for traffic", body = String, content_type = "text/plain"),
    (status = 503, description = "`store_unavailable`, `store_slow` or `catalog_loading`", body = ErrorBody),
))]
pub(crate) async fn ready(State(state): State<Arc<AppState>>) -> Response {
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

/// Prometheus metrics. With `[admin] metrics_token` set, it needs that token as a bearer token.
#[utoipa::path(get, path = "/metrics", tag = "probes", security((), ("metrics_token" = [])), responses(
    (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
    (status = 401, description = "`unauthenticated`", body = ErrorBody),
    (status = 503, description = "`no_metrics`", body = ErrorBody),
))]
pub(crate) async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
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
