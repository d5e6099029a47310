//! Codes decided by a CRM: the decision API, and the decision hooks wrapup asks ([`hook`]).
//!
//! `PUT /api/v1/decisions/{connection}/{conversation}[/{participant}]` with an `Idempotency-Key` header and a JSON
//! body `{"code": "<code name>", "notes"?: "…", "source"?: "…", "expires_at"?: "<RFC 3339>"}`. Without a
//! participant the decision is for every agent leg of the conversation (on CXone: every contact of the master
//! contact). It takes precedence over a rule's code, never over the agent's: it goes through the same gates.
//!
//! The answer says what became of it:
//! - `202` `pending`: no leg of it is known yet; kept, and adopted by the leg(s) when they end (unless it expired).
//! - `200` `queued`: the leg is in its window and not written yet; the decision will be written under the matched
//!   rule's timing (at once without one).
//! - `200` `applied`: the leg already ended with this very code written by us.
//! - `409` with the leg's state and outcome: too late — `agent_code_present` (someone coded the leg),
//!   `window_closed` (it ended without our code), or `write_in_flight` (another code is being written).
//! - `4xx` with a reason, nothing stored: unknown connection (404) or one not taking decisions (404), refused
//!   authentication (401), no or a malformed `Idempotency-Key` (400), an id without its platform's shape (400), a
//!   body that is too large (413), not JSON (415/400) or not a decision (422), a code the connection's catalog does
//!   not have (422 `unknown_code`) or that is not assigned to the leg's queue (422 `code_not_on_queue`).
//!
//! **Idempotency.** The first answer to a key is stored with a fingerprint of the request (its target and body):
//! the same key with the same request gets that answer again (with `Idempotent-Replayed: true`), the same key with
//! another request a `409 idempotency_key_reused`. Keys are kept (at least 24 h; today, for good).
//!
//! **Ledger.** A decision for a known leg is one of its events (the inbox dedupes it by key), so its ledger line
//! shows the code, source, key and arrival; a kept one is adopted with an `external_decision` line. The store keeps
//! kept decisions in `pending_decisions`; the worker looks there when it decides a leg of a connection that takes
//! decisions (one read per decided leg).
//!
//! Authentication is per connection, like intake: `[connections.decisions] api_key`, or else the connection's intake
//! auth (API key or Standard Webhooks signatures).

pub mod hook;

use crate::app::AppState;
use crate::edge::error;
use crate::intake_auth::IntakeAuth;
use crate::worker::ConnectionRuntime;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wrapup_core::ids::{self, IdKind};
use wrapup_core::lifecycle::{DecisionSource, ExternalDecision, LegRecord, LegState};
use wrapup_core::rules::NOTES_MAX_CHARS;
use wrapup_core::{Event, EventKind, LegKey, Outcome};

/// How one connection's decisions are authenticated.
#[derive(Debug, Clone)]
pub struct DecisionSettings {
    pub auth: IntakeAuth,
}

/// The largest decision body accepted (a code name, notes and a source).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Longest `Idempotency-Key` accepted.
pub const MAX_KEY_CHARS: usize = 255;
/// Longest code name and `source` accepted.
pub const MAX_NAME_CHARS: usize = 255;

pub const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A decision as a CRM sends it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// The code name, trimmed.
    pub code: String,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
}

/// A CRM's decision for every leg of a conversation (docs/CRM.md). Needs an `Idempotency-Key` header.
#[utoipa::path(put, path = "/api/v1/decisions/{connection}/{conversation}", tag = "decisions",
    params(("connection" = String, Path), ("conversation" = String, Path),
        ("Idempotency-Key" = String, Header, description = "Unique per decision; a repeat gets the first answer")),
    request_body = DecisionBody, security(("connection_key" = [])), responses(
    (status = 200, description = "`queued` or `applied`, with each leg's state", body = Object),
    (status = 202, description = "`pending`: no leg is known yet; kept until one is", body = Object),
    (status = 400, description = "`missing_idempotency_key`, `bad_json`, `invalid_id` …", body = crate::admin::ErrorBody),
    (status = 401, description = "The connection's key is missing or wrong", body = crate::admin::ErrorBody),
    (status = 404, description = "`unknown_connection`, `not_enabled`", body = crate::admin::ErrorBody),
    (status = 409, description = "`agent_code_present`, `window_closed`, `write_in_flight`, `idempotency_key_reused`", body = Object),
    (status = 422, description = "`unknown_code`, `code_not_on_queue`", body = crate::admin::ErrorBody),
))]
pub async fn put_conversation(
    State(state): State<Arc<AppState>>,
    Path((connection, conversation)): Path<(String, String)>,
    request: Request,
) -> Response {
    answer(&state, &connection, &conversation, None, request).await
}

/// A CRM's decision for one leg (one participant of a conversation). Needs an `Idempotency-Key` header.
#[utoipa::path(put, path = "/api/v1/decisions/{connection}/{conversation}/{participant}", tag = "decisions",
    params(("connection" = String, Path), ("conversation" = String, Path), ("participant" = String, Path),
        ("Idempotency-Key" = String, Header, description = "Unique per decision; a repeat gets the first answer")),
    request_body = DecisionBody, security(("connection_key" = [])), responses(
    (status = 200, description = "`queued` or `applied`, with each leg's state", body = Object),
    (status = 202, description = "`pending`: no leg is known yet; kept until one is", body = Object),
    (status = 400, description = "`missing_idempotency_key`, `bad_json`, `invalid_id` …", body = crate::admin::ErrorBody),
    (status = 401, description = "The connection's key is missing or wrong", body = crate::admin::ErrorBody),
    (status = 404, description = "`unknown_connection`, `not_enabled`", body = crate::admin::ErrorBody),
    (status = 409, description = "`agent_code_present`, `window_closed`, `write_in_flight`, `idempotency_key_reused`", body = Object),
    (status = 422, description = "`unknown_code`, `code_not_on_queue`", body = crate::admin::ErrorBody),
))]
pub async fn put_leg(
    State(state): State<Arc<AppState>>,
    Path((connection, conversation, participant)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    answer(&state, &connection, &conversation, Some(&participant), request).await
}

fn count(connection: &str, result: &'static str) {
    metrics::counter!("wrapup_crm_decisions_total", "connection" => connection.to_string(), "result" => result)
        .increment(1);
}

fn refuse(connection: &str, status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    count(connection, "refused");
    error(status, code, message)
}

async fn answer(
    state: &AppState,
    connection: &str,
    conversation: &str,
    participant: Option<&str>,
    request: Request,
) -> Response {
    let Some(runtime) = state.connections.get(connection) else {
        return error(StatusCode::NOT_FOUND, "unknown_connection", format!("no connection named {connection:?}"));
    };
    let Some(settings) = state.decisions.get(connection) else {
        let message = format!("connection {connection:?} takes no CRM decisions (add [connections.decisions])");
        return error(StatusCode::NOT_FOUND, "decisions_not_enabled", message);
    };
    let timeout = state.edge.limits.body_read_timeout;
    let (parts, body) =
        match crate::json_request::read(&settings.auth, request, MAX_BODY_BYTES, timeout, "the decision").await {
            Ok(read) => read,
            Err(r) => return refuse(connection, r.status, r.code, r.message),
        };
    let key = match idempotency_key(&parts.headers) {
        Ok(key) => key,
        Err((code, message)) => return refuse(connection, StatusCode::BAD_REQUEST, code, message),
    };
    let platform = runtime.platform.platform();
    let checked = ids::check(platform, IdKind::Conversation, conversation)
        .and_then(|()| participant.map_or(Ok(()), |p| ids::check(platform, IdKind::Participant, p)));
    if let Err(e) = checked {
        return refuse(connection, StatusCode::BAD_REQUEST, "invalid_id", e.to_string());
    }
    let decision = match parse(&body) {
        Ok(d) => d,
        Err((status, code, message)) => return refuse(connection, status, code, message),
    };
    let fingerprint = fingerprint(conversation, participant, &body);
    match state.store.idempotency_answer(connection, &key).await {
        Ok(Some(stored)) => return replay(connection, &stored, &fingerprint),
        Ok(None) => {}
        Err(e) => return crate::edge::unavailable("store_unavailable", e.to_string()),
    }
    let outcome = decide(state, runtime, connection, conversation, participant, &key, decision).await;
    let (status, body) = match outcome {
        Ok(answered) => answered,
        Err(response) => return response,
    };
    // Stored after the fact: a concurrent first use of the key that stored its answer first wins, and this call
    // answers with that one (its effect was the same event, deduplicated by the key).
    let record = json!({"fingerprint": fingerprint, "status": status.as_u16(), "body": body});
    match state.store.idempotent(connection, &key, &record).await {
        Ok((true, _)) => {
            count(connection, result_label(&body));
            (status, Json(body)).into_response()
        }
        Ok((false, first)) => replay(connection, &first, &fingerprint),
        Err(e) => crate::edge::unavailable("store_unavailable", e.to_string()),
    }
}

/// The `Idempotency-Key`: required, 1 to [`MAX_KEY_CHARS`] visible ASCII characters.
fn idempotency_key(headers: &HeaderMap) -> Result<String, (&'static str, String)> {
    let Some(value) = headers.get(HEADER_IDEMPOTENCY_KEY) else {
        return Err(("idempotency_key_required", "send an Idempotency-Key header (one per decision)".into()));
    };
    let key = value.to_str().unwrap_or("").trim();
    if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.bytes().all(|b| b.is_ascii_graphic()) {
        let message = format!("the Idempotency-Key must be 1 to {MAX_KEY_CHARS} visible ASCII characters");
        return Err(("invalid_idempotency_key", message));
    }
    Ok(key.to_string())
}

/// Why a body is not a decision: the status, the error code and the reason.
pub type Problem = (StatusCode, &'static str, String);

/// A decision body: JSON, the known fields only, each within its bounds.
pub fn parse(body: &[u8]) -> Result<DecisionBody, Problem> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| (StatusCode::BAD_REQUEST, "invalid_json", format!("the body is not JSON: {e}")))?;
    let invalid = |message: String| (StatusCode::UNPROCESSABLE_ENTITY, "invalid_decision", message);
    let mut decision: DecisionBody = serde_json::from_value(value).map_err(|e| {
        invalid(format!("the body must be {{\"code\", \"notes\"?, \"source\"?, \"expires_at\"?}}: {e}"))
    })?;
    decision.code = decision.code.trim().to_string();
    if decision.code.is_empty() || decision.code.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(format!("code must be a code name of 1 to {MAX_NAME_CHARS} characters")));
    }
    if decision.notes.as_ref().is_some_and(|n| n.chars().count() > NOTES_MAX_CHARS) {
        return Err(invalid(format!("notes are longer than {NOTES_MAX_CHARS} characters")));
    }
    if let Some(source) = &decision.source {
        if source.trim().is_empty() || source.chars().count() > MAX_NAME_CHARS {
            return Err(invalid(format!("source must be 1 to {MAX_NAME_CHARS} characters")));
        }
    }
    Ok(decision)
}

/// What a key's first use asked for: its target and body.
fn fingerprint(conversation: &str, participant: Option<&str>, body: &[u8]) -> String {
    let mut hash = Sha256::new();
    hash.update(conversation.as_bytes());
    hash.update(b"/");
    hash.update(participant.unwrap_or("").as_bytes());
    hash.update(b"\n");
    hash.update(body);
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored answer to a key used before: again for the same request, 409 for another.
fn replay(connection: &str, stored: &Value, fingerprint: &str) -> Response {
    if stored["fingerprint"].as_str() != Some(fingerprint) {
        let message = "this Idempotency-Key was used for another decision; send a new key for a new decision";
        return refuse(connection, StatusCode::CONFLICT, "idempotency_key_reused", message);
    }
    count(connection, "replayed");
    let status = stored["status"].as_u64().and_then(|s| StatusCode::from_u16(s as u16).ok());
    let mut response = (status.unwrap_or(StatusCode::OK), Json(stored["body"].clone())).into_response();
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}

fn result_label(body: &Value) -> &'static str {
    match body["status"].as_str() {
        Some("pending") => "pending",
        Some("queued") => "queued",
        Some("applied") => "applied",
        _ => "too_late",
    }
}

/// Validates the code, records the decision (events for known legs, kept for the others) and says what became of
/// it.
async fn decide(
    state: &AppState,
    runtime: &ConnectionRuntime,
    connection: &str,
    conversation: &str,
    participant: Option<&str>,
    key: &str,
    body: DecisionBody,
) -> Result<(StatusCode, Value), Response> {
    if !runtime.catalog.is_loaded() {
        let message = format!("the code catalog of {connection} is still loading from the platform");
        return Err(crate::edge::unavailable("catalog_loading", message));
    }
    let catalog =
        runtime.catalog.get().await.map_err(|e| crate::edge::unavailable("catalog_unavailable", e.to_string()))?;
    let Some(code) = catalog.code_by_name(&body.code) else {
        let message = format!("no code named {:?} in the catalog of connection {connection:?}", body.code);
        return Err(refuse(connection, StatusCode::UNPROCESSABLE_ENTITY, "unknown_code", message));
    };
    let known = legs(state, connection, conversation, participant).await?;
    for leg in &known {
        if let Err(e) = catalog.resolve(&code.name, leg.facts.queue_id.as_deref()) {
            let message = format!("leg {}: {e}", leg.key.participant);
            return Err(refuse(connection, StatusCode::UNPROCESSABLE_ENTITY, "code_not_on_queue", message));
        }
    }
    let now = state.clock.now();
    let decision = ExternalDecision {
        code_name: code.name.clone(),
        notes: body.notes,
        source: body.source.unwrap_or_else(|| "crm".into()),
        idempotency_key: Some(key.to_string()),
        arrived_at: now,
        expires_at: body.expires_at,
    };
    let unavailable = |e: wrapup_store::StoreError| crate::edge::unavailable("store_unavailable", e.to_string());
    // A conversation's decision is also kept for its legs not known yet (a transfer's next agent); a leg's only
    // while its leg is unknown.
    let keep = participant.is_none() || known.is_empty();
    if keep {
        state
            .store
            .put_pending_decision(connection, conversation, participant, &decision)
            .await
            .map_err(unavailable)?;
    }
    // Looked up again after keeping it: a leg that ended meanwhile may have been decided without it.
    let known = if keep { legs(state, connection, conversation, participant).await? } else { known };
    if !known.is_empty() {
        let events: Vec<Event> = known.iter().map(|leg| decision_event(&leg.key, key, &decision)).collect();
        state.store.ingest(&events, now).await.map_err(unavailable)?;
        state.wake.notify_one();
    }
    let legs = legs(state, connection, conversation, participant).await?;
    Ok(outcome(connection, conversation, participant, &decision, &legs))
}

fn decision_event(leg: &LegKey, key: &str, decision: &ExternalDecision) -> Event {
    Event {
        leg: leg.clone(),
        dedupe_key: format!("decision:{key}:{}", leg.participant),
        occurred_at: decision.arrived_at,
        correlation_id: Some(key.to_string()),
        kind: EventKind::DecisionArrived { decision: Box::new(decision.clone()) },
    }
}

/// The leg (or the conversation's legs) as stored now.
async fn legs(
    state: &AppState,
    connection: &str,
    conversation: &str,
    participant: Option<&str>,
) -> Result<Vec<LegRecord>, Response> {
    let unavailable = |e: wrapup_store::StoreError| crate::edge::unavailable("store_unavailable", e.to_string());
    match participant {
        Some(p) => {
            let leg = state.store.get_leg(&LegKey::new(connection, conversation, p)).await.map_err(unavailable)?;
            Ok(leg.map(|c| c.leg).into_iter().collect())
        }
        None => state.store.legs_of_conversation(connection, conversation).await.map_err(unavailable),
    }
}

/// What became of `decision` on each leg, and the answer that sums it up.
fn outcome(
    connection: &str,
    conversation: &str,
    participant: Option<&str>,
    decision: &ExternalDecision,
    legs: &[LegRecord],
) -> (StatusCode, Value) {
    let ours = |leg: &LegRecord| {
        leg.external.as_ref().and_then(|e| e.idempotency_key.as_deref()) == decision.idempotency_key.as_deref()
            && leg.external.is_some()
    };
    let written_by_this = |leg: &LegRecord| {
        matches!(&leg.decision, Some(d) if matches!(&d.source, DecisionSource::External { idempotency_key, .. }
            if idempotency_key.as_deref() == decision.idempotency_key.as_deref()))
    };
    let per_leg: Vec<(&'static str, Value)> = legs
        .iter()
        .map(|leg| {
            let status = match (leg.state, leg.outcome) {
                (LegState::Done, Some(Outcome::Applied | Outcome::AgentChanged)) if written_by_this(leg) => "applied",
                (LegState::Done, Some(Outcome::AgentWon | Outcome::AgentChanged)) => "agent_code_present",
                (LegState::Done, _) => "window_closed",
                (LegState::Open | LegState::Scheduled, _) if ours(leg) => "queued",
                (LegState::Writing | LegState::Confirming, _) if written_by_this(leg) => "queued",
                (LegState::Closing, _) => "window_closed",
                _ => "write_in_flight",
            };
            let detail = json!({
                "participant": leg.key.participant,
                "status": status,
                "state": leg.state.as_str(),
                "outcome": leg.outcome.map(Outcome::as_str),
                "code": leg.intent.as_ref().map(|i| i.code_name.clone()).or_else(|| leg.decision.as_ref().map(|d| d.code_name.clone())),
                "reason": leg.outcome_reason,
            });
            (status, detail)
        })
        .collect();
    let mut body = json!({
        "connection": connection,
        "conversation": conversation,
        "participant": participant,
        "code": decision.code_name,
        "source": decision.source,
        "idempotency_key": decision.idempotency_key,
        "arrived_at": decision.arrived_at,
        "legs": per_leg.iter().map(|(_, d)| d.clone()).collect::<Vec<_>>(),
    });
    let statuses: Vec<&str> = per_leg.iter().map(|(s, _)| *s).collect();
    let (status, summary) = if statuses.is_empty() {
        (StatusCode::ACCEPTED, "pending")
    } else if statuses.contains(&"queued") {
        (StatusCode::OK, "queued")
    } else if statuses.contains(&"applied") {
        (StatusCode::OK, "applied")
    } else {
        let code = statuses.first().copied().unwrap_or("window_closed");
        body["error"] = json!({"code": code, "message": too_late_message(code)});
        (StatusCode::CONFLICT, code)
    };
    body["status"] = json!(summary);
    (status, body)
}

fn too_late_message(code: &str) -> &'static str {
    match code {
        "agent_code_present" => "the leg already has a code someone else chose; the agent's code is never overwritten",
        "write_in_flight" => "another code is being written on the leg; the decision came too late to change it",
        _ => "the leg's after-call work window is over; nothing can be written any more",
    }
}

#[cfg(test)]
mod tests;
