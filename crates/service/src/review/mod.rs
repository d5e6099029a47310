//! The review queue on the admin API: the legs that need a person, and an operator's resolve or dismiss.
//!
//! - `GET /api/v1/review?connection=&include_expired=&limit=&cursor=` (viewer): legs that ended `review` (and
//!   `expired` with `include_expired=true`) and wait for a person, oldest first, with why they need one; a page
//!   ends with `next_cursor` (opaque; `null` on the last page).
//! - `GET /api/v1/review/{connection}/{conversation}/{participant}` (viewer): one leg, its reason and its ledger.
//! - `POST …/resolve` (operator) `{"code": "<name or id>", "note"?, "by"?}`: `written` when the leg's window may
//!   still be open — the leg goes back to the worker, which writes the code through its one safe path (gate read
//!   of the agent's code, deadline guard, one write, confirmation); the answer waits a moment for the leg to end
//!   and shows it as it stands — or `recorded` when the window is over: the operator's decision, on the leg and
//!   in the outbox (`leg.resolved`).
//! - `POST …/dismiss` (operator) `{"note", "by"?}`: the leg leaves the queue with the note.
//!
//! Both actions take JSON or `application/x-www-form-urlencoded` bodies (plain HTML forms); a form is answered
//! `303 See Other` to the leg's dashboard page. Bodies are at most [`MAX_BODY_BYTES`], with no unknown fields.
//! The rules are `wrapup_core::lifecycle::review`'s; every action is a ledger line (who, when, what, the note).
//! [`act`] is the one way in, for other surfaces (the dashboard) too.

use crate::admin::{authorize, authorized, ErrorBody, Role};
use crate::app::AppState;
use crate::edge::{error, unavailable};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use utoipa::{IntoParams, ToSchema};
use wrapup_core::lifecycle::review::{self, Refusal, DEFAULT_ACTOR};
use wrapup_core::lifecycle::{LegRecord, LegState, ResolutionAction, ReviewAction};
use wrapup_core::{Event, EventKind, LegKey};
use wrapup_store::{LedgerEntry, ReviewCursor, ReviewFilter, StoreError};

/// The largest resolve or dismiss body accepted.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// A page holds at most this many legs (and this many without `limit`: [`DEFAULT_LIMIT`]).
pub const MAX_LIMIT: u32 = 500;
pub const DEFAULT_LIMIT: u32 = 50;
/// How long a `written` answer waits for the worker to finish the leg before it answers with the leg's state.
pub const WRITE_WAIT: Duration = Duration::from_secs(3);

/// One leg waiting for a person.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewItem {
    /// The leg as `GET /api/v1/legs` shows it.
    pub leg: LegRecord,
    /// Why it needs a person.
    pub reason: String,
}

/// A page of the queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewPage {
    pub items: Vec<ReviewItem>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// One leg of the queue with its explanation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewDetail {
    pub leg: LegRecord,
    pub reason: String,
    pub ledger: Vec<LedgerEntry>,
}

/// `GET /api/v1/review` query.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReviewQuery {
    /// A connection's name from the config.
    pub connection: Option<String>,
    /// `expired` legs too, not only `review`.
    #[serde(default)]
    pub include_expired: bool,
    /// Legs per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// `POST …/resolve` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// The code's name, or its id on the leg's platform.
    pub code: String,
    #[serde(default)]
    pub note: Option<String>,
    /// Who resolves (default `operator`).
    #[serde(default)]
    pub by: Option<String>,
}

/// `POST …/dismiss` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DismissBody {
    pub note: String,
    #[serde(default)]
    pub by: Option<String>,
}

/// What became of an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewResult {
    /// Handed to the worker, which writes the code inside the window (the leg shows how it ended, or its state).
    Written,
    /// Recorded as the operator's decision (the window was over).
    Recorded,
    Dismissed,
}

/// The answer to resolve and dismiss.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReviewAnswer {
    pub result: ReviewResult,
    pub leg: LegRecord,
}

/// Why a leg is in the queue.
pub fn reason(leg: &LegRecord) -> String {
    let ended = leg.outcome.map_or("unfinished", |o| o.as_str());
    leg.outcome_reason.clone().unwrap_or_else(|| format!("the leg ended {ended}"))
}

fn store_down(e: StoreError) -> Response {
    unavailable("store_unavailable", e.to_string())
}

/// The legs that wait for a person, oldest first, with why.
#[utoipa::path(get, path = "/api/v1/review", operation_id = "list_review", tag = "review", params(ReviewQuery), security(("bearer" = [])), responses(
    (status = 200, description = "A page of the queue", body = ReviewPage),
    (status = 400, description = "`bad_query` or `bad_cursor`", body = ErrorBody),
    (status = 401, description = "`unauthenticated`", body = ErrorBody),
    (status = 404, description = "`unknown_connection`", body = ErrorBody),
    (status = 503, description = "`store_unavailable`", body = ErrorBody),
))]
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<ReviewQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let Ok(Query(q)) = query else {
        let message = "the query takes connection=, include_expired=true|false, limit=, cursor=";
        return error(StatusCode::BAD_REQUEST, "bad_query", message);
    };
    if let Some(c) = q.connection.as_deref().filter(|c| !state.connections.contains_key(*c)) {
        return error(StatusCode::NOT_FOUND, "unknown_connection", format!("no connection named {c:?}"));
    }
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match ReviewCursor::decode(c) {
            Some(cursor) => Some(cursor),
            None => return error(StatusCode::BAD_REQUEST, "bad_cursor", "cursor is not one this API gave"),
        },
    };
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    // One more than asked tells whether another page follows.
    let filter = ReviewFilter { connection: q.connection, include_expired: q.include_expired, after, limit: limit + 1 };
    let mut legs = match state.store.review_legs(&filter).await {
        Ok(legs) => legs,
        Err(e) => return store_down(e),
    };
    let more = legs.len() > limit as usize;
    legs.truncate(limit as usize);
    let next_cursor = more.then(|| legs.last().map(|l| ReviewCursor::after(l).encode())).flatten();
    let items = legs.into_iter().map(|leg| ReviewItem { reason: reason(&leg), leg }).collect();
    Json(ReviewPage { items, next_cursor }).into_response()
}

/// One leg of the queue: why it needs a person, and its ledger.
#[utoipa::path(get, path = "/api/v1/review/{connection}/{conversation}/{participant}", operation_id = "show_review_item", tag = "review",
    params(("connection" = String, Path), ("conversation" = String, Path), ("participant" = String, Path)),
    security(("bearer" = [])), responses(
    (status = 200, description = "The leg, why it needs a person, its ledger", body = ReviewDetail),
    (status = 400, description = "`invalid_id`", body = ErrorBody),
    (status = 401, description = "`unauthenticated`", body = ErrorBody),
    (status = 404, description = "`unknown_connection` or `not_found`", body = ErrorBody),
    (status = 503, description = "`store_unavailable`", body = ErrorBody),
))]
pub(crate) async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((connection, conversation, participant)): Path<(String, String, String)>,
) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let key = match crate::admin::leg_key(&state, connection, conversation, participant) {
        Ok(key) => key,
        Err(r) => return *r,
    };
    let leg = match load(&state, &key).await {
        Ok(leg) => leg,
        Err(r) => return *r,
    };
    match state.store.ledger(&key).await {
        Ok(ledger) => Json(ReviewDetail { reason: reason(&leg), leg, ledger }).into_response(),
        Err(e) => store_down(e),
    }
}

/// Resolve a leg with a code: written by the worker while its window may be open, else recorded.
#[utoipa::path(post, path = "/api/v1/review/{connection}/{conversation}/{participant}/resolve", operation_id = "resolve_review_item", tag = "review",
    params(("connection" = String, Path), ("conversation" = String, Path), ("participant" = String, Path)),
    request_body(content((ResolveBody = "application/json"), (ResolveBody = "application/x-www-form-urlencoded"))),
    security(("bearer" = [])), responses(
    (status = 200, description = "`written` (with the leg as it ended, or its state) or `recorded`", body = ReviewAnswer),
    (status = 303, description = "A form's answer: the leg's dashboard page",
        headers(("Location" = String, description = "`/dashboard/legs/{connection}/{conversation}/{participant}`"))),
    (status = 400, description = "`invalid_id` or `broken_body`", body = ErrorBody),
    (status = 401, description = "`unauthenticated`", body = ErrorBody),
    (status = 403, description = "`forbidden`: a viewer's token", body = ErrorBody),
    (status = 404, description = "`unknown_connection` or `not_found`", body = ErrorBody),
    (status = 409, description = "`not_in_review`, `already_resolved` or `window_open`, with the leg's state", body = ErrorBody),
    (status = 413, description = "`too_large`", body = ErrorBody),
    (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
    (status = 422, description = "`invalid_body`, `unknown_code` or `code_not_on_queue`", body = ErrorBody),
    (status = 503, description = "`store_unavailable`, `catalog_unavailable` or `catalog_loading`", body = ErrorBody),
))]
pub(crate) async fn resolve(
    State(state): State<Arc<AppState>>,
    Path((connection, conversation, participant)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    post(&state, (connection, conversation, participant), request, |body: ResolveBody| {
        (ReviewAction::Resolve { code: body.code, note: body.note }, body.by)
    })
    .await
}

/// Take a leg out of the queue with a note.
#[utoipa::path(post, path = "/api/v1/review/{connection}/{conversation}/{participant}/dismiss", operation_id = "dismiss_review_item", tag = "review",
    params(("connection" = String, Path), ("conversation" = String, Path), ("participant" = String, Path)),
    request_body(content((DismissBody = "application/json"), (DismissBody = "application/x-www-form-urlencoded"))),
    security(("bearer" = [])), responses(
    (status = 200, description = "`dismissed`, with the leg", body = ReviewAnswer),
    (status = 303, description = "A form's answer: the leg's dashboard page",
        headers(("Location" = String, description = "`/dashboard/legs/{connection}/{conversation}/{participant}`"))),
    (status = 400, description = "`invalid_id` or `broken_body`", body = ErrorBody),
    (status = 401, description = "`unauthenticated`", body = ErrorBody),
    (status = 403, description = "`forbidden`: a viewer's token", body = ErrorBody),
    (status = 404, description = "`unknown_connection` or `not_found`", body = ErrorBody),
    (status = 409, description = "`not_in_review`, `already_resolved` or `window_open`, with the leg's state", body = ErrorBody),
    (status = 413, description = "`too_large`", body = ErrorBody),
    (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
    (status = 422, description = "`invalid_body`, `unknown_code` or `code_not_on_queue`", body = ErrorBody),
    (status = 503, description = "`store_unavailable`, `catalog_unavailable` or `catalog_loading`", body = ErrorBody),
))]
pub(crate) async fn dismiss(
    State(state): State<Arc<AppState>>,
    Path((connection, conversation, participant)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    post(&state, (connection, conversation, participant), request, |body: DismissBody| {
        (ReviewAction::Dismiss { note: body.note }, body.by)
    })
    .await
}

/// How the body came: a form is answered with a redirect to the leg's page.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
}

async fn post<B: serde::de::DeserializeOwned>(
    state: &AppState,
    (connection, conversation, participant): (String, String, String),
    request: Request,
    into_action: impl FnOnce(B) -> (ReviewAction, Option<String>),
) -> Response {
    let (parts, body) = request.into_parts();
    if let Err(r) = authorize(state, &parts.headers, Role::Operator) {
        return *r;
    }
    let key = match crate::admin::leg_key(state, connection, conversation, participant) {
        Ok(key) => key,
        Err(r) => return *r,
    };
    let (kind, bytes) = match read(state, &parts.headers, body).await {
        Ok(read) => read,
        Err(r) => return *r,
    };
    let parsed: Result<B, String> = match kind {
        BodyKind::Json => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        BodyKind::Form => serde_urlencoded::from_bytes(&bytes).map_err(|e| e.to_string()),
    };
    let (action, by) = match parsed {
        Ok(body) => into_action(body),
        Err(e) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", format!("the body is not valid: {e}"))
        }
    };
    let by = by.filter(|b| !b.trim().is_empty()).unwrap_or_else(|| DEFAULT_ACTOR.to_string());
    match act(state, &key, action, &by).await {
        Ok(answer) if kind == BodyKind::Form => {
            let location = format!("/dashboard/legs/{}/{}/{}", key.connection, key.conversation, key.participant);
            let mut response = StatusCode::SEE_OTHER.into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            drop(answer);
            response
        }
        Ok(answer) => Json(answer).into_response(),
        Err(r) => r,
    }
}

/// The body, within [`MAX_BODY_BYTES`] and the edge's body timeout, as JSON or a form.
async fn read(
    state: &AppState,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<(BodyKind, axum::body::Bytes), Box<Response>> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    let kind = match media.as_deref() {
        Some("application/json") | None => BodyKind::Json,
        Some("application/x-www-form-urlencoded") => BodyKind::Form,
        Some(_) => {
            let message = "send application/json or application/x-www-form-urlencoded";
            return Err(Box::new(error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)));
        }
    };
    let too_large = || {
        let message = format!("the body exceeds the limit of {MAX_BODY_BYTES} bytes");
        Box::new(error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message))
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|d| d > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let timeout = state.edge.limits.body_read_timeout;
    match crate::intake::read_body(body, declared, MAX_BODY_BYTES, timeout).await {
        Ok(bytes) => Ok((kind, bytes)),
        Err(crate::intake::BodyError::TooLarge) => Err(too_large()),
        Err(crate::intake::BodyError::Timeout) => {
            Err(Box::new(error(StatusCode::REQUEST_TIMEOUT, "timeout", "the body did not arrive in time")))
        }
        Err(crate::intake::BodyError::Broken) => {
            Err(Box::new(error(StatusCode::BAD_REQUEST, "broken_body", "the body could not be read")))
        }
    }
}

async fn load(state: &AppState, key: &LegKey) -> Result<LegRecord, Box<Response>> {
    match state.store.get_leg(key).await {
        Ok(Some(claimed)) => Ok(claimed.leg),
        Ok(None) => Err(Box::new(error(StatusCode::NOT_FOUND, "not_found", format!("no leg {key}")))),
        Err(e) => Err(Box::new(store_down(e))),
    }
}

/// Resolves or dismisses the leg `key` as `by`: checks the request against the leg and the connection's catalog,
/// applies it to the leg in the store (one transaction with its ledger line and, for a recorded code, its outbox
/// message), and — when the leg went back to the worker to write the code — wakes the worker and waits up to
/// [`WRITE_WAIT`] for the leg to end. The key must be checked ([`leg_key`] does). Refusals are responses in the
/// API's error envelope: 404 (no such leg), 409 (not waiting for a person, already resolved, or changed meanwhile,
/// with the leg's state), 422 (a code the catalog or the leg's queue does not have, a missing or long note, a bad
/// `by`), 503 (store or catalog unavailable).
pub(crate) async fn act(
    state: &AppState,
    key: &LegKey,
    action: ReviewAction,
    by: &str,
) -> Result<ReviewAnswer, Response> {
    let runtime = state.connections.get(&key.connection).ok_or_else(|| {
        error(StatusCode::NOT_FOUND, "unknown_connection", format!("no connection named {:?}", key.connection))
    })?;
    let leg = load(state, key).await.map_err(|r| *r)?;
    let catalog = match &action {
        ReviewAction::Dismiss { .. } => None,
        ReviewAction::Resolve { .. } => {
            Some(runtime.catalog.get().await.map_err(|e| unavailable("catalog_unavailable", e.to_string()))?)
        }
    };
    let now = state.clock.now();
    let id = format!("rv_{}", uuid::Uuid::now_v7().simple());
    let resolution = review::check(&leg, &action, by, catalog.as_deref(), id.clone(), true, now)
        .map_err(|refusal| refused(&leg, &refusal))?;
    let event = Event {
        leg: key.clone(),
        dedupe_key: format!("review:{id}"),
        occurred_at: now,
        correlation_id: None,
        kind: EventKind::OperatorResolved { resolution: Box::new(resolution) },
    };
    state.store.ingest(&[event], now).await.map_err(store_down)?;
    let mut leg = load(state, key).await.map_err(|r| *r)?;
    let action = match leg.resolution.as_ref().filter(|r| r.id == id) {
        Some(r) => r.action,
        // The leg changed between the check and the event (the agent coded, the window closed, another operator):
        // the event changed nothing.
        None => {
            let refusal = review::check(&leg, &action, by, catalog.as_deref(), id, true, state.clock.now())
                .err()
                .unwrap_or(Refusal::NotInReview { state: leg.state.as_str(), outcome: leg.outcome });
            return Err(refused(&leg, &refusal));
        }
    };
    metrics::counter!("wrapup_review_actions_total", "connection" => key.connection.clone(), "result" => action.as_str())
        .increment(1);
    tracing::info!(leg.id = %key, by, result = action.as_str(), "review item acted on");
    let result = match action {
        ResolutionAction::Written => {
            state.wake.notify_one();
            leg = wait_for_end(state, key, leg).await;
            ReviewResult::Written
        }
        ResolutionAction::Recorded => ReviewResult::Recorded,
        ResolutionAction::Dismissed => ReviewResult::Dismissed,
    };
    Ok(ReviewAnswer { result, leg })
}

/// The leg once the worker finished it, or as it stands after [`WRITE_WAIT`].
async fn wait_for_end(state: &AppState, key: &LegKey, mut leg: LegRecord) -> LegRecord {
    let deadline = tokio::time::Instant::now() + WRITE_WAIT;
    while leg.state != LegState::Done && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
        match state.store.get_leg(key).await {
            Ok(Some(claimed)) => leg = claimed.leg,
            _ => break,
        }
    }
    leg
}

fn refused(leg: &LegRecord, refusal: &Refusal) -> Response {
    let (status, code) = match refusal {
        Refusal::NotInReview { .. } => (StatusCode::CONFLICT, "not_in_review"),
        Refusal::AlreadyResolved { .. } => (StatusCode::CONFLICT, "already_resolved"),
        Refusal::NeedsService => (StatusCode::CONFLICT, "window_open"),
        Refusal::UnknownCode(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_code"),
        Refusal::CodeNotOnQueue(_) => (StatusCode::UNPROCESSABLE_ENTITY, "code_not_on_queue"),
        Refusal::NoCatalog => return unavailable("catalog_loading", refusal.to_string()),
        Refusal::NoteRequired | Refusal::NoteTooLong | Refusal::InvalidCode | Refusal::InvalidActor => {
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
        }
    };
    let outcome = leg.outcome.map_or("none", |o| o.as_str());
    let message = match status {
        StatusCode::CONFLICT => format!("{refusal} — leg {} is {} ({outcome})", leg.key, leg.state.as_str()),
        _ => refusal.to_string(),
    };
    error(status, code, message)
}

#[cfg(test)]
mod tests;
