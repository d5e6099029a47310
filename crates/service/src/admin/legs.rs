//! Legs, one leg with its ledger, and the per-connection summary.

use crate::admin::{authorized, ErrorBody};
use crate::app::AppState;
use crate::intake::error;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::{LegKey, Outcome};
use wrapup_store::{LedgerEntry, LegCursor, LegFilter};

/// The most legs one page holds.
pub const MAX_PAGE: u32 = 1000;
/// A page's size when the request does not say.
pub const DEFAULT_PAGE: u32 = 100;
/// Longest filter value accepted (an id, a name, a cursor).
const MAX_FILTER_CHARS: usize = 512;

/// Which legs to list; every filter narrows the list. Newest first; the next page's URL is in the `Link` header.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LegQuery {
    /// A connection's name from the config.
    connection: Option<String>,
    /// `applied`, `agent_won`, `agent_changed`, `no_rule`, `shadow`, `expired`, `no_acw` or `review`.
    outcome: Option<String>,
    /// Only legs not finished yet.
    #[serde(default)]
    open: bool,
    /// The platform's conversation (Genesys) or contact (CXone) id.
    conversation: Option<String>,
    /// A queue's (Genesys) or skill's (CXone) id or name.
    queue: Option<String>,
    /// A code's name or id: decided by wrapup, or set by the agent or the platform.
    code: Option<String>,
    /// The agent's user id.
    agent: Option<String>,
    /// Legs created at or after this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<Timestamp>,
    /// Legs created before this instant (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<Timestamp>,
    /// The `cursor` of the previous page's `Link: <…>; rel="next"`.
    cursor: Option<String>,
    /// Legs per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

impl LegQuery {
    fn filter(self) -> Result<LegFilter, Box<Response>> {
        let bad = |code: &str, msg: String| Box::new(error(StatusCode::BAD_REQUEST, code, msg));
        for (name, value) in [
            ("connection", &self.connection),
            ("conversation", &self.conversation),
            ("queue", &self.queue),
            ("code", &self.code),
            ("agent", &self.agent),
            ("cursor", &self.cursor),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_FILTER_CHARS) {
                return Err(bad("bad_query", format!("{name} is longer than {MAX_FILTER_CHARS} bytes")));
            }
        }
        let outcome = match self.outcome.as_deref() {
            None => None,
            Some(s) => Some(Outcome::parse(s).ok_or_else(|| bad("bad_outcome", format!("unknown outcome {s:?}")))?),
        };
        let after = match self.cursor.as_deref() {
            None => None,
            Some(c) => {
                Some(decode_cursor(c).ok_or_else(|| bad("bad_cursor", "the cursor is not one this API gave".into()))?)
            }
        };
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(bad("bad_query", format!("limit must be 1 to {MAX_PAGE}")));
        }
        Ok(LegFilter {
            connection: self.connection,
            outcome,
            open_only: self.open,
            conversation: self.conversation,
            queue: self.queue,
            code: self.code,
            agent: self.agent,
            from: self.from,
            to: self.to,
            after,
            limit: Some(limit),
        })
    }
}

/// A cursor is the last leg's creation time and key, opaque to clients (URL-safe base64 of a JSON array).
fn encode_cursor(c: &LegCursor) -> String {
    let raw =
        serde_json::json!([c.created_at.as_millisecond(), c.key.connection, c.key.conversation, c.key.participant]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.to_string())
}

fn decode_cursor(s: &str) -> Option<LegCursor> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).ok()?;
    let (ms, connection, conversation, participant): (i64, String, String, String) =
        serde_json::from_slice(&raw).ok()?;
    Some(LegCursor {
        created_at: Timestamp::from_millisecond(ms).ok()?,
        key: LegKey::new(connection, conversation, participant),
    })
}

/// The query string of the next page: the request's own parameters with the new cursor.
fn next_link(raw_query: Option<&str>, cursor: &str) -> String {
    let kept: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.unwrap_or("").as_bytes())
        .filter(|(k, _)| k != "cursor")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    out.extend_pairs(kept);
    out.append_pair("cursor", cursor);
    format!("</api/v1/legs?{}>; rel=\"next\"", out.finish())
}

/// Legs, newest first, narrowed by the filters. A full page carries `Link: <…>; rel="next"`.
#[utoipa::path(get, path = "/api/v1/legs", tag = "legs", params(LegQuery), security(("bearer" = [])), responses(
    (status = 200, description = "The page's legs", body = Vec<LegRecord>,
        headers(("Link" = String, description = "`</api/v1/legs?…&cursor=…>; rel=\"next\"` when more legs may follow"))),
    (status = 400, description = "`bad_query`, `bad_outcome` or `bad_cursor`", body = ErrorBody),
    (status = 401, description = "`unauthenticated`", body = ErrorBody),
    (status = 503, description = "`store_unavailable`", body = ErrorBody),
))]
pub(crate) async fn list_legs(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    query: Result<Query<LegQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let filter = match query.map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))) {
        Ok(Query(q)) => match q.filter() {
            Ok(f) => f,
            Err(r) => return *r,
        },
        Err(r) => return *r,
    };
    let limit = filter.limit.unwrap_or(DEFAULT_PAGE) as usize;
    let legs = match state.store.list_legs(&filter).await {
        Ok(legs) => legs,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    };
    let next = (legs.len() == limit).then(|| legs.last().map(LegCursor::of)).flatten();
    let mut response = Json(legs).into_response();
    if let Some(cursor) = next {
        let link = next_link(uri.query(), &encode_cursor(&cursor));
        if let Ok(value) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}

/// One leg and its ledger: every event, decision, platform call and outcome, in order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LegWithLedger {
    pub leg: LegRecord,
    pub ledger: Vec<LedgerEntry>,
}

/// One leg with its ledger.
#[utoipa::path(get, path = "/api/v1/legs/{connection}/{conversation}/{participant}", tag = "legs",
    params(("connection" = String, Path), ("conversation" = String, Path), ("participant" = String, Path)),
    security(("bearer" = [])), responses(
    (status = 200, description = "The leg and its ledger", body = LegWithLedger),
    (status = 400, description = "`invalid_id`: an id no platform event could carry", body = ErrorBody),
    (status = 401, description = "`unauthenticated`", body = ErrorBody),
    (status = 404, description = "`unknown_connection` or `not_found`", body = ErrorBody),
    (status = 503, description = "`store_unavailable`", body = ErrorBody),
))]
pub(crate) async fn get_leg(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((connection, conversation, participant)): Path<(String, String, String)>,
) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let key = match leg_key(&state, connection, conversation, participant) {
        Ok(key) => key,
        Err(r) => return *r,
    };
    let leg = match state.store.get_leg(&key).await {
        Ok(Some(l)) => l.leg,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", format!("no leg {key}")),
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    };
    let ledger = match state.store.ledger(&key).await {
        Ok(l) => l,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
    };
    Json(LegWithLedger { leg, ledger }).into_response()
}

/// Each connection's legs by outcome, and the platform calls this process made for it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Summary {
    pub connections: Vec<ConnectionSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConnectionSummary {
    pub name: String,
    /// `genesys` or `cxone`.
    pub platform: String,
    /// Legs by outcome; `open` counts the legs not finished yet.
    pub outcomes: BTreeMap<String, u64>,
    /// Platform calls this process made for the connection since it started.
    pub api_calls: u64,
}

/// Legs by outcome per connection.
#[utoipa::path(get, path = "/api/v1/summary", tag = "legs", security(("bearer" = [])), responses(
    (status = 200, description = "Each connection's counts", body = Summary),
    (status = 401, description = "`unauthenticated`", body = ErrorBody),
    (status = 503, description = "`store_unavailable`", body = ErrorBody),
))]
pub(crate) async fn summary(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let mut names: Vec<&String> = state.connections.keys().collect();
    names.sort();
    let mut connections = Vec::new();
    for name in names {
        let conn = &state.connections[name];
        let counts = match state.store.outcome_counts(name).await {
            Ok(c) => c,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", e.to_string()),
        };
        let outcomes = counts.iter().map(|(o, n)| (o.map(|o| o.as_str()).unwrap_or("open").to_string(), *n)).collect();
        connections.push(ConnectionSummary {
            name: name.clone(),
            platform: conn.platform.platform().as_str().to_string(),
            outcomes,
            api_calls: conn.platform.stats().total,
        });
    }
    Json(Summary { connections }).into_response()
}

/// A leg's key from a route's path, for a configured connection. The same shape rule as intake: a key no event
/// could have stored is refused (`400 invalid_id`) before the store is asked.
pub(crate) fn leg_key(
    state: &AppState,
    connection: String,
    conversation: String,
    participant: String,
) -> Result<LegKey, Box<Response>> {
    let Some(platform) = state.connections.get(&connection).map(|c| c.platform.platform()) else {
        let message = format!("no connection named {connection:?}");
        return Err(Box::new(error(StatusCode::NOT_FOUND, "unknown_connection", message)));
    };
    let key = LegKey::new(connection, conversation, participant);
    wrapup_core::ids::check_leg(platform, &key)
        .map_err(|e| Box::new(error(StatusCode::BAD_REQUEST, "invalid_id", e.to_string())))?;
    Ok(key)
}
