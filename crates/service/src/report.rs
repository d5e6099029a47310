//! `GET /api/v1/report`: the report of `wrapup report` (docs/REPORT.md), from the store alone, for viewers. The
//! figures are computed by `wrapup_report`, the same code the CLI calls; the platform check is the CLI's only (it
//! asks the platform, and a dashboard's request must not spend the connection's budget).

use crate::admin::ErrorBody;
use crate::app::AppState;
use crate::intake::error;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::IntoParams;
use wrapup_report::{ConnectionSpec, Report, Window};

/// The longest a query parameter may be (a time, a duration, a connection name).
const MAX_PARAM: usize = 200;

/// The range and the connection of a report; every parameter is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// A duration back from now (`7d`, `12h`, `30m`) or an RFC 3339 time; not with `from`.
    pub since: Option<String>,
    /// The start of the range (RFC 3339).
    pub from: Option<String>,
    /// The end of the range, exclusive (RFC 3339).
    pub to: Option<String>,
    /// Only this connection.
    pub connection: Option<String>,
}

/// The connections of the running service to report on: all, or the one named.
pub fn specs(state: &AppState, only: Option<&str>) -> Vec<ConnectionSpec> {
    let mut specs: Vec<ConnectionSpec> = state
        .connections
        .iter()
        .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
        .map(|(name, conn)| ConnectionSpec {
            name: name.clone(),
            platform: conn.platform.platform(),
            system_codes: state
                .intake
                .get(name)
                .map(|i| i.system_code_ids.iter().cloned().collect())
                .unwrap_or_default(),
        })
        .collect();
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    specs
}

/// Per connection, over the legs recorded in the range: outcomes, coverage, usage by code, latency, calls per
/// applied code and shadow agreement per rule (docs/REPORT.md). `platform_check` is always `null` here.
#[utoipa::path(get, path = "/api/v1/report", tag = "report", params(ReportQuery), security(("bearer" = [])), responses(
    (status = 200, description = "The report", body = Report),
    (status = 400, description = "`bad_query` or `bad_range`", body = ErrorBody),
    (status = 401, description = "`unauthenticated`", body = ErrorBody),
    (status = 404, description = "`unknown_connection`", body = ErrorBody),
    (status = 503, description = "`store_unavailable`", body = ErrorBody),
))]
pub async fn get_report(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = crate::admin::authorized(&state, &headers) {
        return *r;
    }
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_query", e.body_text()),
    };
    let params = [&q.since, &q.from, &q.to, &q.connection];
    if params.iter().any(|p| p.as_ref().is_some_and(|p| p.len() > MAX_PARAM)) {
        return error(StatusCode::BAD_REQUEST, "bad_query", format!("a parameter is longer than {MAX_PARAM} bytes"));
    }
    let window = match Window::parse(q.since.as_deref(), q.from.as_deref(), q.to.as_deref(), state.clock.now()) {
        Ok(w) => w,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_range", e),
    };
    if let Some(name) = q.connection.as_deref().filter(|n| !state.connections.contains_key(*n)) {
        return error(StatusCode::NOT_FOUND, "unknown_connection", format!("no connection named {name:?}"));
    }
    let specs = specs(&state, q.connection.as_deref());
    match wrapup_report::build(state.store.as_ref(), &specs, window).await {
        Ok(report) => Json(report).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    }
}
