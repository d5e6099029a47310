//! The lookup for platform-native flows: a Genesys Architect data action or a CXone Studio REST action asks, while
//! the interaction is still in the flow, which code id to set — so the flow names codes, never ids, and one flow
//! works in every org (invariant 5).
//!
//! - `GET /api/v1/lookup/{connection}/codes?name=…[&queue=…|&skill=…]`: the id of the code with that name in this
//!   connection's catalog; with a queue (Genesys) or skill (CXone) by name, also that the code is assigned there.
//! - `POST /api/v1/lookup/{connection}/decision` with a leg's facts ([`LegFacts`], the type the rules match on): the
//!   rule set's decision — code, id, rule, rule-set version — or, when no rule decides or the decided code cannot be
//!   used on the leg's queue, the connection's `lookup.fallback_code` with `fallback: true`. Every fallback is counted
//!   (`wrapup_lookup_fallbacks_total`) and logged as a warning: a flow running on its fallback is a rule set that
//!   does not cover the traffic, which someone should hear about. Without a fallback such a lookup answers 404.
//!
//! Both are answered from the cached catalog and the rule set in memory: no platform call and no store access, so a
//! flow waits for nothing but this process. Until the first catalog is in, they answer 503 with `Retry-After`.
//!
//! They are on the intake listener (the platform calls them, as it calls intake) and authenticated per connection
//! like intake ([`crate::intake_auth`]): the connection's `lookup.api_key`, or else its intake auth. The order of
//! checks is intake's: connection, headers, declared length, body (bounded in size and time), signature, then the
//! input, every problem a 4xx in the error envelope with the reason.
//!
//! A shadow rule decides nothing here: it is being measured against agents and must not be written, whoever writes.

use crate::app::AppState;
use crate::edge::error;
use crate::intake_auth::IntakeAuth;
use crate::worker::ConnectionRuntime;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Instant;
use wrapup_core::catalog::Catalog;
use wrapup_core::{LegFacts, Mode, Platform};

/// How one connection's lookups are authenticated, and what a decision lookup falls back to.
#[derive(Debug, Clone)]
pub struct LookupSettings {
    pub auth: IntakeAuth,
    /// The code *name* answered when no rule decides.
    pub fallback_code: Option<String>,
}

/// The largest decision body accepted: a leg's facts are a few hundred bytes, attributes included.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest text fact (queue, media, disconnect type, campaign, attribute name) accepted.
pub const MAX_TEXT_CHARS: usize = 256;
/// Longest attribute value accepted.
pub const MAX_ATTRIBUTE_CHARS: usize = 2048;
/// Most attributes accepted on one leg.
pub const MAX_ATTRIBUTES: usize = 100;

/// The facts a flow may send: the fields of [`LegFacts`] a rule can match on or that locate the leg's queue. The
/// others (ids of the leg's communication, times the service derives) mean nothing before the leg is in the store.
const FACT_FIELDS: &[&str] = &[
    "platform",
    "media",
    "channel",
    "direction",
    "queue_id",
    "queue_name",
    "user_id",
    "disconnect_type",
    "talk_ms",
    "hold_ms",
    "acw_timeout_ms",
    "campaign_id",
    "attributes",
];

/// A refusal, counted as `refused` on a known connection.
fn refuse(
    connection: &str,
    route: &'static str,
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
) -> Response {
    count(connection, route, "refused");
    error(status, code, message)
}

fn count(connection: &str, route: &'static str, result: &'static str) {
    metrics::counter!("wrapup_lookups_total", "connection" => connection.to_string(), "route" => route, "result" => result)
        .increment(1);
}

fn observe(route: &'static str, started: Instant) {
    metrics::histogram!("wrapup_lookup_duration_seconds", "route" => route).record(started.elapsed().as_secs_f64());
}

/// The connection and its lookup settings, or the 404 that says which is missing.
#[allow(clippy::result_large_err)]
fn connection<'s>(
    state: &'s AppState,
    name: &str,
) -> Result<(&'s Arc<ConnectionRuntime>, &'s LookupSettings), Response> {
    let Some(runtime) = state.connections.get(name) else {
        return Err(error(StatusCode::NOT_FOUND, "unknown_connection", format!("no connection named {name:?}")));
    };
    let Some(settings) = state.lookup.get(name) else {
        return Err(error(
            StatusCode::NOT_FOUND,
            "lookup_not_enabled",
            format!("connection {name:?} has no lookup (a CXone connection needs connections.lookup.api_key)"),
        ));
    };
    Ok((runtime, settings))
}

/// The catalog in memory, or 503 until the first load: a lookup never waits for the platform.
#[allow(clippy::result_large_err)]
async fn catalog(runtime: &ConnectionRuntime) -> Result<Arc<Catalog>, Response> {
    if !runtime.catalog.is_loaded() {
        return Err(crate::edge::unavailable(
            "catalog_loading",
            format!("the code catalog of {} is still loading from the platform", runtime.name),
        ));
    }
    // Loaded: `get` takes its lock for a moment and serves the cached copy (a stale one is refreshed behind it).
    runtime.catalog.get().await.map_err(|e| crate::edge::unavailable("catalog_unavailable", e.to_string()))
}

/// What `codes` accepts.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CodesQuery {
    /// The code's name, exactly as in the catalog.
    pub name: Option<String>,
    /// Genesys: the queue's name or id the code must be assigned to.
    pub queue: Option<String>,
    /// CXone: the skill's name or id the disposition must be assigned to.
    pub skill: Option<String>,
}

/// A code's id by its name (and queue or skill), from the cached catalog, for a platform flow.
#[utoipa::path(get, path = "/api/v1/lookup/{connection}/codes", tag = "lookup",
    params(("connection" = String, Path), CodesQuery), security(("connection_key" = [])), responses(
    (status = 200, description = "`{code, code_id}` and, with a queue or skill, `{queue, queue_id}` or `{skill, skill_id}`", body = Object),
    (status = 400, description = "A bad query", body = crate::admin::ErrorBody),
    (status = 401, description = "The connection's key is missing or wrong", body = crate::admin::ErrorBody),
    (status = 404, description = "`unknown_connection`, `unknown_code`, `code_not_on_queue` …", body = crate::admin::ErrorBody),
    (status = 503, description = "The catalog is still loading", body = crate::admin::ErrorBody),
))]
pub async fn get_code(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    query: Result<Query<CodesQuery>, QueryRejection>,
) -> Response {
    let started = Instant::now();
    let (runtime, settings) = match connection(&state, &name) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let response = answer_code(&name, runtime, settings, &headers, query).await;
    observe("codes", started);
    response
}

async fn answer_code(
    connection: &str,
    runtime: &ConnectionRuntime,
    settings: &LookupSettings,
    headers: &HeaderMap,
    query: Result<Query<CodesQuery>, QueryRejection>,
) -> Response {
    const ROUTE: &str = "codes";
    let now_unix = jiff::Timestamp::now().as_second();
    if let Err(r) = settings.auth.check(headers, b"", now_unix) {
        return refuse(connection, ROUTE, r.status, r.code, r.message);
    }
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            let message = format!("{}; accepted: name, and queue (Genesys) or skill (CXone)", e.body_text());
            return refuse(connection, ROUTE, StatusCode::BAD_REQUEST, "bad_query", message);
        }
    };
    let Some(code_name) = query.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) else {
        return refuse(connection, ROUTE, StatusCode::BAD_REQUEST, "missing_name", "the query needs name=<code name>");
    };
    let platform = runtime.platform.platform();
    let (where_word, where_name) = match (platform, query.queue.as_deref(), query.skill.as_deref()) {
        (Platform::Genesys, _, Some(_)) => {
            let message = "skill= is for CXone connections; a Genesys connection takes queue=";
            return refuse(connection, ROUTE, StatusCode::BAD_REQUEST, "bad_query", message);
        }
        (Platform::Cxone, Some(_), _) => {
            let message = "queue= is for Genesys connections; a CXone connection takes skill=";
            return refuse(connection, ROUTE, StatusCode::BAD_REQUEST, "bad_query", message);
        }
        (Platform::Genesys, q, None) => ("queue", q),
        (Platform::Cxone, None, s) => ("skill", s),
    };
    let catalog = match catalog(runtime).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let Some(code) = catalog.code_by_name(code_name) else {
        count(connection, ROUTE, "not_found");
        let message = format!("no code named {code_name:?} in the catalog of connection {connection:?}");
        return error(StatusCode::NOT_FOUND, "unknown_code", message);
    };
    let mut answer = json!({"code": code.name, "code_id": code.id});
    if let Some(wanted) = where_name {
        let Some(queue) = catalog.queue_by_name(wanted) else {
            count(connection, ROUTE, "not_found");
            let message = format!("no {where_word} named {wanted:?} in the catalog of connection {connection:?}");
            return error(StatusCode::NOT_FOUND, &format!("unknown_{where_word}"), message);
        };
        if !queue.code_ids.contains(&code.id) {
            count(connection, ROUTE, "not_assigned");
            let message = format!("code {:?} exists but is not assigned to {where_word} {:?}", code.name, queue.name);
            return error(StatusCode::CONFLICT, "not_assigned", message);
        }
        answer[where_word] = json!(queue.name);
        answer[format!("{where_word}_id")] = json!(queue.id);
    }
    count(connection, ROUTE, "answered");
    Json(answer).into_response()
}

/// The code the rules decide for a leg's facts as a flow knows them (docs/FLOWS.md).
#[utoipa::path(post, path = "/api/v1/lookup/{connection}/decision", tag = "lookup",
    params(("connection" = String, Path)),
    request_body(content = Object, description = "The leg's facts: queue, media, direction, durations, attributes", content_type = "application/json"),
    security(("connection_key" = [])), responses(
    (status = 200, description = "The decided code, the rule, and whether a fallback decided", body = Object),
    (status = 400, description = "A bad body", body = crate::admin::ErrorBody),
    (status = 401, description = "The connection's key is missing or wrong", body = crate::admin::ErrorBody),
    (status = 404, description = "`unknown_connection`, `no_decision` …", body = crate::admin::ErrorBody),
    (status = 413, description = "Too large", body = crate::admin::ErrorBody),
    (status = 503, description = "The catalog is still loading", body = crate::admin::ErrorBody),
))]
pub async fn post_decision(State(state): State<Arc<AppState>>, Path(name): Path<String>, request: Request) -> Response {
    let started = Instant::now();
    let (runtime, settings) = match connection(&state, &name) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let response = answer_decision(&state, &name, runtime, settings, request).await;
    observe("decision", started);
    response
}

async fn answer_decision(
    state: &AppState,
    connection: &str,
    runtime: &ConnectionRuntime,
    settings: &LookupSettings,
    request: Request,
) -> Response {
    const ROUTE: &str = "decision";
    let timeout = state.edge.limits.body_read_timeout;
    let body = match crate::json_request::read(&settings.auth, request, MAX_BODY_BYTES, timeout, "the facts").await {
        Ok((_, body)) => body,
        Err(r) => return refuse(connection, ROUTE, r.status, r.code, r.message),
    };
    let platform = runtime.platform.platform();
    let facts = match parse_facts(&body, platform) {
        Ok(f) => f,
        Err((status, code, message)) => return refuse(connection, ROUTE, status, code, message),
    };
    let catalog = match catalog(runtime).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let facts = match complete_facts(facts, &catalog) {
        Ok(f) => f,
        Err(message) => return refuse(connection, ROUTE, StatusCode::UNPROCESSABLE_ENTITY, "unknown_queue", message),
    };
    decide(connection, runtime, settings, &catalog, &facts)
}

type Problem = (StatusCode, &'static str, String);

/// The body as [`LegFacts`]: a JSON object of the accepted fields only, each of its type and within its bounds.
/// `direction` may be left out (`unknown`, which no `direction` matcher matches), as on the platform's own events.
pub fn parse_facts(body: &[u8], platform: Platform) -> Result<LegFacts, Problem> {
    let bad = |code: &'static str, message: String| (StatusCode::BAD_REQUEST, code, message);
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad("invalid_json", format!("the body is not JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(bad("invalid_facts", "the body must be a JSON object of the leg's facts".into()));
    };
    if let Some(unknown) = fields.keys().find(|k| !FACT_FIELDS.contains(&k.as_str())) {
        let message = format!("unknown fact {unknown:?}; accepted: {}", FACT_FIELDS.join(", "));
        return Err(bad("unknown_fact", message));
    }
    // A JSON null is an absent fact (what a flow sends for an unset variable).
    fields.retain(|_, v| !v.is_null());
    fields.entry("direction").or_insert_with(|| json!("unknown"));
    let facts: LegFacts = match serde_json::from_value(Value::Object(fields.clone())) {
        Ok(facts) => facts,
        Err(e) => {
            // serde_json does not say which field a value error is in: find it by reading the fields one by one.
            let culprit = fields.iter().find_map(|(name, value)| {
                let alone = json!({ name.as_str(): value, "direction": fields["direction"] });
                serde_json::from_value::<LegFacts>(alone).err().map(|e| format!("{name}: {e}"))
            });
            let message = culprit.unwrap_or_else(|| e.to_string());
            return Err(bad("invalid_facts", format!("a fact does not have its type: {message}")));
        }
    };
    if facts.platform.is_some_and(|p| p != platform) {
        let message = format!(
            "platform is {:?}, but this connection is {}",
            facts.platform.map(|p| p.as_str()).unwrap_or_default(),
            platform.as_str()
        );
        return Err(bad("wrong_platform", message));
    }
    let texts = [
        ("media", &facts.media),
        ("queue_id", &facts.queue_id),
        ("queue_name", &facts.queue_name),
        ("user_id", &facts.user_id),
        ("disconnect_type", &facts.disconnect_type),
        ("campaign_id", &facts.campaign_id),
    ];
    for (field, text) in texts {
        if text.as_ref().is_some_and(|t| t.chars().count() > MAX_TEXT_CHARS) {
            return Err(bad("invalid_facts", format!("{field} is longer than {MAX_TEXT_CHARS} characters")));
        }
    }
    if facts.attributes.len() > MAX_ATTRIBUTES {
        return Err(bad("invalid_facts", format!("more than {MAX_ATTRIBUTES} attributes")));
    }
    for (name, value) in &facts.attributes {
        if name.is_empty() || name.chars().count() > MAX_TEXT_CHARS {
            return Err(bad("invalid_facts", format!("attribute names must be 1 to {MAX_TEXT_CHARS} characters")));
        }
        if value.chars().count() > MAX_ATTRIBUTE_CHARS {
            return Err(bad(
                "invalid_facts",
                format!("attribute {name:?} is longer than {MAX_ATTRIBUTE_CHARS} characters"),
            ));
        }
    }
    Ok(LegFacts { platform: Some(platform), ..facts })
}

/// The leg's queue from the catalog, as the worker completes a leg's facts before deciding it: the name the rules
/// match on, the id its code must be assigned to, the ACW timeout when the flow did not say.
pub fn complete_facts(mut facts: LegFacts, catalog: &Catalog) -> Result<LegFacts, String> {
    let queue = match (facts.queue_id.as_deref(), facts.queue_name.as_deref()) {
        (None, None) => return Ok(facts),
        (Some(id), name) => {
            let queue = catalog
                .queue_by_id(id)
                .ok_or_else(|| format!("queue_id {id:?} is not in the catalog of this connection"))?;
            if let Some(name) = name.filter(|n| *n != queue.name) {
                return Err(format!("queue_id {id:?} is the queue {:?}, not {name:?}", queue.name));
            }
            queue
        }
        (None, Some(name)) => catalog
            .queue_by_name(name)
            .ok_or_else(|| format!("queue_name {name:?} is not in the catalog of this connection"))?,
    };
    facts.queue_id = Some(queue.id.clone());
    facts.queue_name = Some(queue.name.clone());
    facts.acw_timeout_ms = facts.acw_timeout_ms.or(queue.acw_timeout_ms);
    facts.acw = facts.acw.or(queue.acw);
    Ok(facts)
}

/// The rule set's answer for `facts`, or the fallback.
fn decide(
    connection: &str,
    runtime: &ConnectionRuntime,
    settings: &LookupSettings,
    catalog: &Catalog,
    facts: &LegFacts,
) -> Response {
    let version = runtime.rules.version();
    let queue_id = facts.queue_id.as_deref();
    let reason = match runtime.rules.evaluate(connection, facts) {
        None => "no rule decides this leg".to_string(),
        Some(m) if m.mode == Mode::Shadow => {
            format!("rule {:?} decides this leg in shadow mode, which is never written", m.rule_name)
        }
        Some(m) => match catalog.resolve(&m.code, queue_id) {
            Ok(code) => {
                count(connection, "decision", "answered");
                return Json(json!({
                    "code": code.name, "code_id": code.id, "rule": m.rule_name, "rule_set_version": version,
                    "fallback": false,
                }))
                .into_response();
            }
            Err(e) => format!("rule {:?} decides code {:?}, which cannot be used: {}", m.rule_name, m.code, e),
        },
    };
    let Some(fallback) = settings.fallback_code.as_deref() else {
        count(connection, "decision", "not_found");
        let body = json!({"error": {"code": "no_decision", "message": reason}, "fallback": false});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    match catalog.resolve(fallback, queue_id) {
        Ok(code) => {
            count(connection, "decision", "fallback");
            metrics::counter!("wrapup_lookup_fallbacks_total", "connection" => connection.to_string()).increment(1);
            tracing::warn!(
                connection = %connection, queue = facts.queue_name.as_deref().unwrap_or(""), code = %code.name,
                reason = %reason, rule_set_version = %version,
                "A lookup fell back to the connection's fallback code: the rules do not cover this leg."
            );
            Json(json!({
                "code": code.name, "code_id": code.id, "rule": null, "rule_set_version": version, "fallback": true,
                "reason": reason,
            }))
            .into_response()
        }
        Err(e) => {
            count(connection, "decision", "not_found");
            tracing::warn!(connection = %connection, reason = %reason, problem = %e, "A lookup could not even use the fallback code.");
            let message = format!("{reason}; and the fallback code cannot be used either: {}", e);
            let body = json!({"error": {"code": "fallback_unusable", "message": message}, "fallback": false});
            (StatusCode::CONFLICT, Json(body)).into_response()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
