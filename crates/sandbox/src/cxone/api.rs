//! The inContact REST surface: everything under `/inContactAPI/services/v{N}.0/`.
//!
//! axum's router matches paths case-sensitively, and NICE's clients vary the prefix's case and the version from call
//! to call, so this module is mounted as the router's fallback and routes by itself: it strips the prefix
//! case-insensitively, accepts any `v{N}.0`, and matches the remaining segments. That also lets it answer wrong
//! verbs with 405 and bad ids with CXone's 404 texts.
//!
//! Every request passes [`gate`] under one short lock of the BU: catch the simulation up, check the bearer token
//! (401 `Invalid or expired token`), count it in the token's wall-time rate window, draw the faults. Errors carry
//! CXone's description three ways: HTTP reason phrase, `icStatusDescription` header, and a
//! `{"error","error_description"}` body.

use super::model::{lenient_int, Bu, Contact, CxError, DispositionInput, Phase};
use crate::engine::faults::{draw_request_faults, RequestFault};
use crate::engine::iso;
use crate::engine::Simulation;
use crate::SharedState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Most seconds a get-next-event may wait.
const MAX_POLL_SECS: u64 = 60;

/// A response with CXone's description in the reason phrase and the `icStatusDescription` header.
pub fn cx_response(status: u16, text: &str, body: Option<Value>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = match body {
        Some(b) => (code, [(header::CONTENT_TYPE, "application/json")], b.to_string()).into_response(),
        None => code.into_response(),
    };
    if let Ok(r) = hyper::ext::ReasonPhrase::try_from(text.as_bytes().to_vec()) {
        resp.extensions_mut().insert(r);
    }
    if let Ok(v) = HeaderValue::from_str(text) {
        resp.headers_mut().insert("icStatusDescription", v);
    }
    resp
}

pub fn error_response(e: &CxError) -> Response {
    let mut resp = cx_response(e.status, &e.text, Some(json!({"error": e.text, "error_description": e.text})));
    if let Some(s) = e.retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    resp
}

fn ok(v: Value) -> Response {
    cx_response(200, "Success", Some(v))
}

fn accepted(v: Option<Value>) -> Response {
    cx_response(202, "Accepted", v)
}

type R = Result<Response, CxError>;

fn not_found() -> CxError {
    CxError::new(404, "resource not found")
}

/// Splits `/inContactAPI/services/v{N}.0/rest` (prefix case-insensitive); `None` if not an inContact path.
pub fn split_path(path: &str) -> Option<Result<Vec<String>, ()>> {
    const PREFIX: &str = "/incontactapi/services/";
    if path.len() < PREFIX.len() || !path[..PREFIX.len()].eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &path[PREFIX.len()..];
    let (version, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let v = version.strip_prefix(['v', 'V']).unwrap_or("");
    let (major, minor) = v.split_once('.').unwrap_or((v, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return Some(Err(()));
    }
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect();
    Some(Ok(segs))
}

/// The route a request matched: its report template and which handler runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    StartSession,
    JoinSession,
    EndSession,
    NextEvent,
    SetState,
    KeepAlive,
    EndContact,
    Disposition,
    ContactDisposition,
    Dispositions,
    CreateDispositions,
    DispositionById,
    UpdateDisposition,
    Skills,
    SkillById,
    UpdateSkill,
    SkillDispositions,
    Agents,
    AgentStates,
    AgentStateById,
    ActiveContacts,
    CompletedContacts,
    ContactById,
    Hierarchy,
    ServerTime,
}

/// Matches `segs`: `Ok(route, ids)`, or the error (404 unknown, 405 wrong verb).
fn route(method: &Method, segs: &[String]) -> Result<(Route, &'static str, Vec<String>), CxError> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let lit = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    let empty = s.iter().any(|x| x.is_empty());
    // (allowed methods, route, template)
    type Match = (&'static [(Method, Route)], &'static str, Vec<String>);
    let m: Option<Match> = match s.as_slice() {
        [a] if lit(a, "agent-sessions") => Some((&[(Method::POST, Route::StartSession)], "agent-sessions", vec![])),
        [a, b] if lit(a, "agent-sessions") && lit(b, "join") => {
            Some((&[(Method::POST, Route::JoinSession)], "agent-sessions/join", vec![]))
        }
        [a, sid] if lit(a, "agent-sessions") => {
            Some((&[(Method::DELETE, Route::EndSession)], "agent-sessions/{sessionId}", vec![sid.to_string()]))
        }
        [a, sid, b] if lit(a, "agent-sessions") && lit(b, "get-next-event") => Some((
            &[(Method::GET, Route::NextEvent)],
            "agent-sessions/{sessionId}/get-next-event",
            vec![sid.to_string()],
        )),
        [a, sid, b] if lit(a, "agent-sessions") && lit(b, "state") => {
            Some((&[(Method::POST, Route::SetState)], "agent-sessions/{sessionId}/state", vec![sid.to_string()]))
        }
        [a, sid, b] if lit(a, "agent-sessions") && lit(b, "keep-alive") => {
            Some((&[(Method::POST, Route::KeepAlive)], "agent-sessions/{sessionId}/keep-alive", vec![sid.to_string()]))
        }
        [a, sid, b, id, c] if lit(a, "agent-sessions") && lit(b, "interactions") && lit(c, "end") => Some((
            &[(Method::POST, Route::EndContact)],
            "agent-sessions/{sessionId}/interactions/{contactId}/end",
            vec![sid.to_string(), id.to_string()],
        )),
        [a, sid, b, id, c] if lit(a, "agent-sessions") && lit(b, "interactions") && lit(c, "disposition") => Some((
            &[(Method::POST, Route::Disposition)],
            "agent-sessions/{sessionId}/interactions/{contactId}/disposition",
            vec![sid.to_string(), id.to_string()],
        )),
        [a] if lit(a, "dispositions") => Some((
            &[(Method::GET, Route::Dispositions), (Method::POST, Route::CreateDispositions)],
            "dispositions",
            vec![],
        )),
        [a, id] if lit(a, "dispositions") => Some((
            &[(Method::GET, Route::DispositionById), (Method::PUT, Route::UpdateDisposition)],
            "dispositions/{dispositionId}",
            vec![id.to_string()],
        )),
        [a] if lit(a, "skills") => Some((&[(Method::GET, Route::Skills)], "skills", vec![])),
        [a, id] if lit(a, "skills") => Some((
            &[(Method::GET, Route::SkillById), (Method::PUT, Route::UpdateSkill)],
            "skills/{skillId}",
            vec![id.to_string()],
        )),
        [a, id, b] if lit(a, "skills") && lit(b, "dispositions") => {
            Some((&[(Method::GET, Route::SkillDispositions)], "skills/{skillId}/dispositions", vec![id.to_string()]))
        }
        [a] if lit(a, "agents") => Some((&[(Method::GET, Route::Agents)], "agents", vec![])),
        [a, b] if lit(a, "agents") && lit(b, "states") => {
            Some((&[(Method::GET, Route::AgentStates)], "agents/states", vec![]))
        }
        [a, id, b] if lit(a, "agents") && lit(b, "states") => {
            Some((&[(Method::GET, Route::AgentStateById)], "agents/{agentId}/states", vec![id.to_string()]))
        }
        [a, b] if lit(a, "contacts") && lit(b, "active") => {
            Some((&[(Method::GET, Route::ActiveContacts)], "contacts/active", vec![]))
        }
        [a, b] if lit(a, "contacts") && lit(b, "completed") => {
            Some((&[(Method::GET, Route::CompletedContacts)], "contacts/completed", vec![]))
        }
        [a, id] if lit(a, "contacts") => {
            Some((&[(Method::GET, Route::ContactById)], "contacts/{contactId}", vec![id.to_string()]))
        }
        [a, id, b] if lit(a, "contacts") && lit(b, "disposition") => Some((
            &[(Method::GET, Route::ContactDisposition)],
            "contacts/{contactId}/disposition",
            vec![id.to_string()],
        )),
        [a, id, b] if lit(a, "contacts") && lit(b, "hierarchy") => {
            Some((&[(Method::GET, Route::Hierarchy)], "contacts/{contactId}/hierarchy", vec![id.to_string()]))
        }
        [a] if lit(a, "server-time") => Some((&[(Method::GET, Route::ServerTime)], "server-time", vec![])),
        _ => None,
    };
    let Some((allowed, template, ids)) = m else { return Err(not_found()) };
    if empty {
        return Err(not_found());
    }
    match allowed.iter().find(|(am, _)| am == method) {
        Some((_, r)) => Ok((*r, template, ids)),
        None => Err(CxError::new(405, "Method Not Allowed")),
    }
}

/// What the gate decided for one request.
struct Pass {
    latency: Duration,
    hang: Option<Duration>,
}

/// Auth, rate limit and faults. Called with the BU locked. `storm` is how long a 429 storm starting now lasts in
/// wall time: its simulated length (`storm_secs`) through the clock, as on the Genesys side — a storm is the
/// platform's own event, so on an accelerated clock it is shorter in wall time, not longer than every ACW window.
fn gate(bu: &mut Bu, auth: Option<&str>, now: Instant, storm: Duration) -> Result<Pass, CxError> {
    let unauthorized = || CxError::new(401, "Invalid or expired token");
    let token = auth.and_then(|a| a.strip_prefix("Bearer ").or_else(|| a.strip_prefix("bearer "))).map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else { return Err(unauthorized()) };
    let limit = bu.rate_limit_per_minute;
    let send_retry_after = bu.behaviours.retry_after == super::RetryAfter::Sent;
    let Some(tok) = bu.tokens.get_mut(token) else { return Err(unauthorized()) };
    if tok.revoked || now >= tok.expires {
        return Err(unauthorized());
    }
    let early = crate::rate_limit::before_retry_after(tok.retry_after, now);
    // The token's window under the BU's semantics (`crate::rate_limit`); a limit of 0 is none, and CXone sends no
    // rate-limit headers, so only the refusal and its `Retry-After` are seen.
    let (over, reset) = match limit {
        0 => (false, 0),
        _ => {
            let a = tok.window.admit(bu.rate_limit_window, limit, now);
            (!a.admitted, a.reset_secs)
        }
    };
    if over && send_retry_after {
        tok.retry_after = Some((now, now + Duration::from_secs(reset)));
    }
    if early {
        bu.api.calls_before_retry_after += 1;
    }
    let too_many = |secs: u64| CxError {
        status: 429,
        text: "Api Rate Exceeded".into(),
        retry_after: send_retry_after.then_some(secs),
    };
    if over {
        return Err(too_many(reset));
    }
    match draw_request_faults(&bu.faults, &mut bu.storm_until, &mut bu.fault_rng, now, storm) {
        RequestFault::Serve { latency, hang } => Ok(Pass { latency, hang }),
        RequestFault::Storm { secs } => {
            told_to_wait(bu, token, now, secs, send_retry_after);
            Err(too_many(secs))
        }
        RequestFault::RevokeToken => {
            if let Some(t) = bu.tokens.get_mut(token) {
                t.revoked = true;
            }
            Err(unauthorized())
        }
        RequestFault::ServerError(status) => Err(match status {
            500 => CxError::new(500, "Internal Server Error"),
            502 => CxError::new(502, "Bad Gateway"),
            503 => CxError::new(503, "Service Unavailable"),
            _ => CxError::new(504, "Gateway Timeout"),
        }),
    }
}

fn told_to_wait(bu: &mut Bu, token: &str, now: Instant, secs: u64, sent: bool) {
    if let (true, Some(t)) = (sent, bu.tokens.get_mut(token)) {
        t.retry_after = Some((now, now + Duration::from_secs(secs)));
    }
}

/// The router's fallback: inContact paths are handled here, anything else is a bare 404 as before.
pub async fn dispatch(State(st): State<SharedState>, req: Request) -> Response {
    let Some(split) = split_path(req.uri().path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let method = req.method().clone();
    let routed = match split {
        Ok(segs) => route(&method, &segs),
        Err(()) => Err(not_found()),
    };
    let template = routed.as_ref().map(|r| r.1).unwrap_or("{unknown}");
    let key = format!("{} /inContactAPI/services/v{{N}}.0/{}", method.as_str(), template);
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).map(str::to_string);
    let decision = {
        let mut bu = st.bu.lock();
        bu.advance_to(st.clock.now());
        bu.api.total += 1;
        let storm = st.clock.wall_duration(jiff::SignedDuration::from_secs(bu.faults.storm_secs.max(1) as i64));
        gate(&mut bu, auth.as_deref(), Instant::now(), storm)
    };
    let resp = match (decision, routed) {
        (Err(e), _) => error_response(&e),
        (Ok(_), Err(e)) => error_response(&e),
        (Ok(pass), Ok((r, _, ids))) => {
            if !pass.latency.is_zero() {
                tokio::time::sleep(pass.latency).await;
            }
            let query = crate::genesys::api::query_pairs(req.uri().query());
            let body = axum::body::to_bytes(req.into_body(), crate::BODY_LIMIT).await.unwrap_or_default();
            let resp = match handle(&st, r, &ids, &query, &body).await {
                Ok(resp) => resp,
                Err(e) => error_response(&e),
            };
            if let Some(h) = pass.hang {
                tokio::time::sleep(h).await;
            }
            resp
        }
    };
    let status = resp.status().as_u16();
    let mut bu = st.bu.lock();
    if status == 429 {
        bu.api.rate_limited += 1;
    }
    *bu.api.by_endpoint.entry(key).or_default().entry(status).or_default() += 1;
    resp
}

/// Query parameters and a JSON object body (or a form body) merged; the body wins. Bodies arrive with any
/// Content-Type or none (NICE's SDK sends JSON as text/plain).
fn params(query: &[(String, String)], body: &[u8]) -> Map<String, Value> {
    let mut m: Map<String, Value> = query.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    if body.iter().all(u8::is_ascii_whitespace) {
        return m;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => m.extend(o),
        Ok(_) => {}
        Err(_) => {
            for (k, v) in url::form_urlencoded::parse(body) {
                m.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    m
}

fn param<'a>(p: &'a Map<String, Value>, k: &str) -> Option<&'a Value> {
    p.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v)
}

fn param_str(p: &Map<String, Value>, k: &str) -> Option<String> {
    match param(p, k)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        v => Some(v.to_string()),
    }
}

/// `skip`/`top` (400 `Invalid skip` / `Invalid top`).
fn paging(p: &Map<String, Value>) -> Result<(usize, usize), CxError> {
    let get = |k: &str, text: &'static str, default: usize| -> Result<usize, CxError> {
        match lenient_int(param(p, k)) {
            Ok(None) => Ok(default),
            Ok(Some(n)) if n >= 0 => Ok(n as usize),
            _ => Err(CxError::new(400, text)),
        }
    };
    let skip = get("skip", "Invalid skip", 0)?;
    let top = get("top", "Invalid top", 10_000)?;
    if top == 0 {
        return Err(CxError::new(400, "Invalid top"));
    }
    Ok((skip, top))
}

fn page<T: Clone>(items: &[T], skip: usize, top: usize) -> Vec<T> {
    items.iter().skip(skip).take(top).cloned().collect()
}

fn links(base: &str, path: &str, skip: usize, top: usize, total: usize) -> Value {
    let at = |s: usize| format!("{base}/inContactAPI/services/v32.0/{path}?skip={s}&top={top}");
    json!({
        "self": at(skip),
        "next": if skip + top < total { Value::String(at(skip + top)) } else { Value::Null },
        "previous": if skip > 0 { Value::String(at(skip.saturating_sub(top))) } else { Value::Null },
    })
}

fn parse_time(p: &Map<String, Value>, k: &str, text: &'static str) -> Result<Option<Timestamp>, CxError> {
    match param_str(p, k) {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => parse_ts(&s).map(Some).ok_or_else(|| CxError::new(400, text)),
    }
}

/// ISO 8601 with or without offset (no offset = UTC) or a bare date.
fn parse_ts(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Some(t);
    }
    if let Ok(dt) = s.parse::<jiff::civil::DateTime>() {
        return dt.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp());
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>() {
        return d.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp());
    }
    None
}

async fn handle(st: &SharedState, r: Route, ids: &[String], query: &[(String, String)], body: &[u8]) -> R {
    let p = params(query, body);
    if r == Route::NextEvent {
        return next_event(st, &ids[0], &p).await;
    }
    let now = st.clock.now();
    let mut bu = st.bu.lock();
    let bu = &mut *bu;
    let base = st.base_url().to_string();
    match r {
        Route::StartSession => start_session(bu, &p, now),
        Route::JoinSession => join_session(bu, &p, now),
        Route::EndSession => {
            let i = bu.live_session(&ids[0], "Invalid agent session.")?;
            let s = &mut bu.sessions[i];
            s.ended = true;
            s.events.push_back(json!({"Type": "AgentSessionEnd", "Success": "True", "Message": ""}));
            s.notify.notify_one();
            let a = s.agent;
            // The API user's own session logs it out; a joined session leaves the agent's own MAX session alone.
            if a == bu.api_user && !bu.sessions.iter().any(|s| s.agent == a && !s.ended) {
                bu.agents[a].logged_in = false;
                bu.agents[a].state = "LoggedOut";
                bu.agents[a].last_update = now;
            }
            Ok(accepted(None))
        }
        Route::NextEvent => Err(not_found()),
        Route::KeepAlive => {
            bu.live_session(&ids[0], "Invalid agent session.")?;
            Ok(accepted(None))
        }
        Route::SetState => set_state(bu, &ids[0], &p, now),
        Route::EndContact => {
            let i = bu.live_session(&ids[0], "Invalid agent session.")?;
            let a = bu.sessions[i].agent;
            let cid: i64 = ids[1].parse().map_err(|_| CxError::new(404, "Invalid contact ID."))?;
            let c =
                bu.contacts.get(&cid).filter(|c| c.agent == Some(a)).ok_or(CxError::new(404, "Invalid contact ID."))?;
            if c.phase != Phase::Active {
                return Err(CxError::new(409, "Cannot end the contact at this time."));
            }
            bu.disconnect(cid, now);
            Ok(accepted(None))
        }
        Route::Disposition => {
            let i = bu.live_session(&ids[0], "Invalid sessionId")?;
            let input = DispositionInput::from_params(&p);
            bu.api_disposition(i, &ids[0], &ids[1], &input, now)?;
            Ok(cx_response(200, "Success", None))
        }
        Route::ContactDisposition => {
            let c = contact(bu, &ids[0], "Invalid contactId")?;
            let Some(d) = &c.disposition else {
                return Ok(cx_response(204, "No disposition", None));
            };
            Ok(ok(json!({
                "contactId": c.id, "dispositionId": d.primary,
                "dispositionName": bu.disposition_name(d.primary),
                "secondaryDispositionId": d.secondary,
                "dispositionByAgendId": d.by_agent, "dispositionedByAgendId": d.by_agent,
                "notes": d.notes, "lastUpdated": iso(d.at),
            })))
        }
        Route::Dispositions => {
            let (skip, top) = paging(&p)?;
            let search = param_str(&p, "searchString").unwrap_or_default().to_lowercase();
            let (dispositions, _) = bu.catalog_view(now);
            let all: Vec<Value> = dispositions
                .values()
                .filter(|d| search.is_empty() || d.name.to_lowercase().contains(&search))
                .map(disposition_json)
                .collect();
            Ok(ok(json!({
                "businessUnitId": bu.creds.business_unit_id, "totalRecords": all.len(),
                "dispositions": page(&all, skip, top), "_links": links(&base, "dispositions", skip, top, all.len()),
            })))
        }
        Route::CreateDispositions => create_dispositions(bu, &p, now),
        Route::DispositionById => {
            let bad = || CxError::new(404, format!("Invalid dispositionId - '{}'", ids[0]));
            let id: i64 = ids[0].parse().map_err(|_| bad())?;
            let d = bu.catalog_view(now).0.get(&id).ok_or_else(bad)?;
            Ok(ok(disposition_json(d)))
        }
        Route::UpdateDisposition => update_disposition(bu, &ids[0], &p, now),
        Route::UpdateSkill => update_skill(bu, &ids[0], &p, now),
        Route::Skills => {
            let (skip, top) = paging(&p)?;
            let (dispositions, skills) = bu.catalog_view(now);
            let all: Vec<Value> = skills.iter().map(|s| skill_json(s, dispositions)).collect();
            Ok(ok(json!({
                "businessUnitId": bu.creds.business_unit_id, "totalRecords": all.len(),
                "skills": page(&all, skip, top), "_links": links(&base, "skills", skip, top, all.len()),
            })))
        }
        Route::SkillById => {
            let s = skill(bu, &ids[0])?;
            let (dispositions, skills) = bu.catalog_view(now);
            // Both shapes in NICE's specs: the skill object, and `{"skills":[…]}`.
            let mut v = skill_json(&skills[s], dispositions);
            let copy = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.insert("skills".into(), json!([copy]));
                o.insert("businessUnitId".into(), json!(bu.creds.business_unit_id));
            }
            Ok(ok(v))
        }
        Route::SkillDispositions => {
            let s = skill(bu, &ids[0])?;
            let (skip, top) = paging(&p)?;
            let (dispositions, skills) = bu.catalog_view(now);
            let sk = &skills[s];
            if sk.dispositions.is_empty() {
                return Ok(cx_response(204, "No dispositions assgined", None));
            }
            let all: Vec<Value> = sk
                .dispositions
                .iter()
                .enumerate()
                .filter_map(|(i, d)| dispositions.get(d).map(|d| (i, d)))
                .map(|(i, d)| {
                    json!({
                        "dispositionId": d.id, "dispositionName": d.name, "displayOrder": i + 1, "priority": i + 1,
                        "classification": "None", "reportingGroup": "", "systemOutcome": "Positive",
                        "requireCommitmentAmount": false, "requireRescheduleDate": false, "agentSpecific": false,
                        "isPreviewDisposition": d.is_preview, "isActive": d.is_active,
                    })
                })
                .collect();
            Ok(ok(
                json!({"skillId": sk.id, "skillName": sk.name, "totalRecords": all.len(), "dispositions": page(&all, skip, top)}),
            ))
        }
        Route::Agents => {
            let (skip, top) = paging(&p)?;
            let all: Vec<Value> = bu
                .agents
                .iter()
                .map(|a| {
                    json!({
                        "agentId": a.id, "firstName": a.first_name, "lastName": a.last_name, "userName": a.user_name,
                        "teamId": a.team_id, "teamName": format!("Team {}", a.team_id % 1000), "isActive": true,
                        "emailAddress": a.user_name, "businessUnitId": bu.creds.business_unit_id,
                        "skills": a.skills.iter().map(|&s| bu.skills[s].id).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Ok(ok(json!({
                "businessUnitId": bu.creds.business_unit_id, "totalRecords": all.len(),
                "agents": page(&all, skip, top), "_links": links(&base, "agents", skip, top, all.len()),
            })))
        }
        Route::AgentStates => {
            let since = parse_time(&p, "updatedSince", "Invalid updatedSince")?;
            let (skip, top) = paging(&p)?;
            let all: Vec<Value> = bu
                .agents
                .iter()
                .enumerate()
                .filter(|(_, a)| since.is_none_or_ge(a.last_update))
                .map(|(i, _)| agent_state_json(bu, i))
                .collect();
            Ok(ok(json!({
                "businessUnitId": bu.creds.business_unit_id, "lastPollTime": iso(now), "totalRecords": all.len(),
                "agentStates": page(&all, skip, top),
            })))
        }
        Route::AgentStateById => {
            let text = format!("Invalid agentId - {}", ids[0]);
            let id: i64 = ids[0].parse().map_err(|_| CxError::new(400, text.clone()))?;
            let i = bu.agents.iter().position(|a| a.id == id).ok_or_else(|| CxError::new(404, text))?;
            Ok(ok(json!({
                "businessUnitId": bu.creds.business_unit_id, "lastPollTime": iso(now),
                "agentStates": [agent_state_json(bu, i)],
            })))
        }
        Route::ActiveContacts => {
            let since = parse_time(&p, "updatedSince", "Invalid updatedSince")?;
            let (skip, top) = paging(&p)?;
            let skill_f = lenient_int(param(&p, "skillId")).map_err(|_| CxError::new(400, "Invalid skillId"))?;
            let agent_f = lenient_int(param(&p, "agentId")).map_err(|_| CxError::new(400, "Invalid agentId"))?;
            let media_f =
                lenient_int(param(&p, "mediaTypeId")).map_err(|_| CxError::new(400, "Invalid mediaTypeId"))?;
            let all: Vec<Value> = bu
                .contacts
                .values()
                .filter(|c| c.phase != Phase::Closed && since.is_none_or_ge(c.last_update))
                .filter(|c| skill_f.is_none_or_eq(bu.skills[c.skill].id))
                .filter(|c| agent_f.is_none_or_eq(c.agent.map(|a| bu.agents[a].id).unwrap_or(-1)))
                .filter(|c| media_f.is_none_or_eq(c.media.type_id() as i64))
                .map(|c| active_json(bu, c))
                .collect();
            if all.is_empty() {
                return Ok(cx_response(204, "No Content", None));
            }
            Ok(ok(json!({
                "totalRecords": all.len(), "businessUnitId": bu.creds.business_unit_id, "lastPollTime": iso(now),
                "activeContacts": page(&all, skip, top),
                "_links": links(&base, "contacts/active", skip, top, all.len()),
            })))
        }
        Route::CompletedContacts => completed(bu, &p, now, &base),
        Route::ContactById => {
            let text = format!("Invalid contactId - {}", ids[0]);
            let c = contact(bu, &ids[0], &text)?;
            Ok(ok(if c.phase == Phase::Closed { completed_json(bu, c) } else { active_json(bu, c) }))
        }
        Route::Hierarchy => {
            let text = format!("Invalid contactId - {}", ids[0]);
            let c = contact(bu, &ids[0], &text)?;
            let master = c.master_id;
            let children: Vec<Value> = bu
                .contacts
                .values()
                .filter(|x| x.master_id == master && x.id != master)
                .map(|x| json!({"contactId": x.id, "startTime": iso(x.start), "endTime": x.end.map(iso)}))
                .collect();
            Ok(ok(json!({"masterContactId": master, "childContacts": children})))
        }
        Route::ServerTime => Ok(ok(json!({"ServerTime": iso(now)}))),
    }
}

/// `Option` filters: `None` means "no filter".
trait Filter<T> {
    fn is_none_or_ge(&self, v: T) -> bool;
    fn is_none_or_eq(&self, v: T) -> bool;
}
impl<T: PartialOrd + Copy> Filter<T> for Option<T> {
    fn is_none_or_ge(&self, v: T) -> bool {
        self.is_none_or(|s| v >= s)
    }
    fn is_none_or_eq(&self, v: T) -> bool {
        self.is_none_or(|s| v == s)
    }
}

fn contact<'a>(bu: &'a Bu, raw: &str, text: &str) -> Result<&'a Contact, CxError> {
    raw.parse::<i64>().ok().and_then(|id| bu.contacts.get(&id)).ok_or_else(|| CxError::new(404, text))
}

fn skill(bu: &Bu, raw: &str) -> Result<usize, CxError> {
    raw.parse::<i64>()
        .ok()
        .and_then(|id| bu.skill_by_id(id))
        .ok_or_else(|| CxError::new(404, format!("Invalid skillId - '{raw}', does not exist")))
}

fn disposition_json(d: &super::model::Disposition) -> Value {
    json!({
        "dispositionId": d.id, "dispositionName": d.name, "notes": d.notes, "lastUpdated": iso(d.last_updated),
        "classificationId": d.classification_id, "classificationName": "None", "systemOutcome": "Positive",
        "isPreviewDisposition": d.is_preview, "isActive": d.is_active,
    })
}

fn skill_json(sk: &super::model::Skill, dispositions: &BTreeMap<i64, super::model::Disposition>) -> Value {
    let ds: Vec<Value> = sk
        .dispositions
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let d = dispositions.get(d);
            json!({
                "dispositionId": d.map(|d| d.id), "dispositionName": d.map(|d| d.name.clone()), "priority": i + 1,
                "isPreviewDisposition": d.is_some_and(|d| d.is_preview),
            })
        })
        .collect();
    json!({
        "skillId": sk.id, "skillName": sk.name, "mediaTypeId": sk.media.type_id(), "mediaTypeName": sk.media.type_name(),
        "isActive": true, "isOutbound": false, "campaignId": 0, "campaignName": "",
        "acwTypeId": sk.acw_type.id(), "requireDisposition": sk.require_disposition,
        "allowSecondaryDispositions": sk.allow_secondary, "allowSecondaryDisposition": sk.allow_secondary,
        "scriptDisposition": false, "useACW": sk.has_acw(), "useDisposition": !sk.dispositions.is_empty(),
        "stateIdACW": super::model::ACW_STATE_ID, "stateNameACW": super::model::ACW_STATE_NAME,
        "maxSecondsACW": sk.max_seconds_acw,
        "acwPostTimeoutStateId": 1, "acwPostTimeoutStateName": "Available",
        "dispositions": ds,
    })
}

fn agent_state_json(bu: &Bu, i: usize) -> Value {
    let a = &bu.agents[i];
    let c = a.contact.and_then(|c| bu.contacts.get(&c));
    let state_id = match a.state {
        "LoggedOut" => 0,
        "Available" => 1,
        "Unavailable" => 2,
        _ => 3,
    };
    json!({
        "agentId": a.id, "agentStateId": state_id, "agentStateName": a.state, "businessUnitId": bu.creds.business_unit_id,
        "contactId": c.map(|c| c.id), "isACW": a.is_acw, "isOutbound": false, "openContacts": usize::from(c.is_some()),
        "outStateId": if a.is_acw { super::model::ACW_STATE_ID } else { 0 }, "outStateDescription": a.out_reason,
        "skillId": c.map(|c| bu.skills[c.skill].id), "skillName": c.map(|c| bu.skills[c.skill].name.clone()),
        "mediaTypeId": c.map(|c| c.media.type_id()), "startDate": iso(a.since), "lastUpdateTime": iso(a.last_update),
        "teamId": a.team_id, "teamName": format!("Team {}", a.team_id % 1000), "firstName": a.first_name, "lastName": a.last_name,
        "stationId": null, "stationPhoneNumber": null,
    })
}

fn active_json(bu: &Bu, c: &Contact) -> Value {
    let s = &bu.skills[c.skill];
    let (state_id, state_name) = c.state();
    json!({
        "contactId": c.id, "masterContactId": c.master_id, "agentId": c.agent.map(|a| bu.agents[a].id),
        "skillId": s.id, "skillName": s.name, "mediaTypeId": c.media.type_id(), "mediaTypeName": c.media.type_name(),
        "mediaType": c.media.type_id(), "stateId": state_id, "stateName": state_name, "state": state_name,
        "contactStart": iso(c.start), "contactStartDate": iso(c.start), "agentStartDate": c.connected_at.map(iso),
        "lastUpdateTime": iso(c.last_update), "isOutbound": false, "isLogged": false, "isTakeover": false,
        "transferIndicatorId": c.transfer_indicator, "transferIndicatorName": transfer_name(c.transfer_indicator),
        "teamId": c.agent.map(|a| bu.agents[a].team_id), "campaignId": 0, "campaignName": "",
        "fromAddress": "8015550100", "toAddress": "8005550100", "fromAddr": "8015550100", "toAddr": "8005550100",
        "targetAgentId": null, "pointOfContactId": 0, "pointOfContactName": "",
    })
}

fn transfer_name(t: u8) -> &'static str {
    match t {
        1 => "ReSkill",
        2 => "ReAgent",
        _ => "None",
    }
}

fn completed_json(bu: &Bu, c: &Contact) -> Value {
    let s = &bu.skills[c.skill];
    let end = c.end.unwrap_or(c.last_update);
    let secs = |a: Option<Timestamp>, b: Option<Timestamp>| match (a, b) {
        (Some(a), Some(b)) => (b.as_second() - a.as_second()).max(0),
        _ => 0,
    };
    json!({
        "contactId": c.id, "masterContactId": c.master_id, "agentId": c.agent.map(|a| bu.agents[a].id),
        "skillId": s.id, "skillName": s.name, "mediaTypeId": c.media.type_id(), "mediaType": c.media.type_id(),
        "mediaTypeName": c.media.type_name(), "contactStart": iso(c.start), "contactStartDate": iso(c.start),
        "lastUpdateTime": iso(c.last_update), "dateContactWarehoused": iso(end), "dateACWWarehoused": c.acw_start.map(|_| iso(end)),
        "primaryDispositionId": c.disposition.as_ref().map(|d| d.primary).unwrap_or(0),
        "secondaryDispositionId": c.disposition.as_ref().and_then(|d| d.secondary).unwrap_or(0),
        "dispositionNotes": c.disposition.as_ref().map(|d| d.notes.clone()).unwrap_or_default(),
        "acwSeconds": secs(c.acw_start, c.end), "agentSeconds": secs(c.connected_at, c.acw_start.or(c.end)),
        "totalDurationSeconds": secs(Some(c.start), Some(end)), "inQueueSeconds": secs(Some(c.start), c.connected_at),
        "abandoned": false, "isOutbound": false, "isLogged": false, "isRefused": false, "isTakeover": false,
        "transferIndicatorId": c.transfer_indicator, "transferIndicatorName": transfer_name(c.transfer_indicator),
        "teamId": c.agent.map(|a| bu.agents[a].team_id), "campaignId": 0, "campaignName": "",
        "fromAddress": "8015550100", "toAddress": "8005550100", "fromAddr": "8015550100", "toAddr": "8005550100",
        "endReason": "Contact Hung Up",
    })
}

/// `GET contacts/completed` with CXone's date rules.
fn completed(bu: &Bu, p: &Map<String, Value>, now: Timestamp, base: &str) -> R {
    let start = parse_time(p, "startDate", "Invalid startDate")?;
    let end = parse_time(p, "endDate", "Invalid endDate")?;
    let since = parse_time(p, "updatedSince", "Invalid updatedSince ")?;
    let (skip, top) = paging(p)?;
    let thirty = jiff::SignedDuration::from_hours(24 * 30);
    if start.is_none() && end.is_none() && since.is_none() {
        return Err(CxError::new(400, "Invalid DateRange - No dates fields provided"));
    }
    if let Some(s) = since {
        if now.duration_since(s) > thirty {
            let raw = param_str(p, "updatedSince").unwrap_or_default();
            return Err(CxError::new(400, format!("Invalid updatedSince - '{raw}', must be 30 days or less")));
        }
    }
    let range = if start.is_some() || end.is_some() {
        // A missing end is now; a missing start is 30 days before the end.
        let e = end.unwrap_or(now);
        let s = start.unwrap_or_else(|| e.checked_sub(thirty).unwrap_or(e));
        if s >= e {
            return Err(CxError::new(400, "Invalid DateRange - startDate must be less than endDate"));
        }
        if e.duration_since(s) > thirty {
            return Err(CxError::new(400, "Invalid DateRange - Date Range must be 30 days or less"));
        }
        Some((s, e))
    } else {
        None
    };
    let order = param_str(p, "orderBy").unwrap_or_else(|| "lastUpdateTime asc".into());
    let mut items: Vec<&Contact> = bu
        .contacts
        .values()
        .filter(|c| c.phase == Phase::Closed)
        .filter(|c| range.is_none_or(|(s, e)| c.start >= s && c.start < e))
        .filter(|c| since.is_none_or_ge(c.last_update))
        .collect();
    let o = order.trim().to_ascii_lowercase();
    let (field, dir) = o.split_once(' ').map(|(f, d)| (f.trim(), d.trim())).unwrap_or((o.as_str(), "asc"));
    if !matches!(dir, "asc" | "desc") {
        return Err(CxError::new(400, "Invalid orderby arguments"));
    }
    match field {
        "lastupdatetime" => items.sort_by_key(|c| (c.last_update, c.id)),
        "contactid" => items.sort_by_key(|c| c.id),
        "contactstart" | "contactstartdate" => items.sort_by_key(|c| (c.start, c.id)),
        _ => return Err(CxError::new(400, "Invalid orderby arguments")),
    }
    if dir == "desc" {
        items.reverse();
    }
    if items.is_empty() {
        return Ok(cx_response(204, "No Contacts for the specified period", None));
    }
    let total = items.len();
    let records: Vec<Value> = items.iter().skip(skip).take(top).map(|c| completed_json(bu, c)).collect();
    Ok(ok(json!({
        "businessUnitId": bu.creds.business_unit_id, "lastPollTime": iso(now), "totalRecords": total,
        "completedContacts": records, "_links": links(base, "contacts/completed", skip, top, total),
    })))
}

fn start_session(bu: &mut Bu, p: &Map<String, Value>, now: Timestamp) -> R {
    let a = match lenient_int(param(p, "asAgentId")) {
        Ok(Some(id)) => *bu.agent_by_id.get(&id).ok_or(CxError::new(404, "Invalid Agent Id"))?,
        Ok(None) => bu.api_user,
        Err(()) => return Err(CxError::new(400, "Invalid asAgentId")),
    };
    if bu.agents[a].logged_in {
        return Err(CxError::new(409, "Cannot start a session at this time.  Agent session already started."));
    }
    let ag = &mut bu.agents[a];
    ag.logged_in = true;
    ag.state = "Unavailable";
    ag.since = now;
    ag.last_update = now;
    let sid = bu.open_session(a, now);
    Ok(accepted(Some(json!({"sessionId": sid}))))
}

fn join_session(bu: &mut Bu, p: &Map<String, Value>, now: Timestamp) -> R {
    let a = match lenient_int(param(p, "asAgentId")) {
        Ok(Some(id)) => *bu.agent_by_id.get(&id).ok_or(CxError::new(404, "Invalid Agent Id"))?,
        _ => return Err(CxError::new(400, "Invalid asAgentId")),
    };
    if !bu.agents[a].logged_in {
        return Err(CxError::new(409, "Agent session not started"));
    }
    let sid = bu.open_session(a, now);
    Ok(accepted(Some(json!({"sessionId": sid}))))
}

fn set_state(bu: &mut Bu, sid: &str, p: &Map<String, Value>, now: Timestamp) -> R {
    let i = bu.live_session(sid, "Invalid agent session Id.")?;
    let a = bu.sessions[i].agent;
    let state = param_str(p, "state").unwrap_or_default();
    let reason = param_str(p, "reason").unwrap_or_default();
    let available = if state.eq_ignore_ascii_case("Available") {
        true
    } else if state.eq_ignore_ascii_case("Unavailable") {
        false
    } else {
        return Err(CxError::new(400, "Invalid state request.  Use \"Available\" or \"Unavailable\"."));
    };
    let ag = &bu.agents[a];
    if ag.is_acw {
        // Leaving ACW for Available ends it (the contact closes without a disposition if none was given).
        if available {
            if let Some(cid) = ag.contact {
                if let Some(c) = bu.contacts.get_mut(&cid) {
                    if c.disposition.is_none() {
                        c.truth.coded_by = Some(crate::report::CodedBy::Skipped);
                    }
                }
                bu.close_acw(cid, now);
            }
        }
        return Ok(accepted(None));
    }
    if ag.contact.is_some() {
        // During a contact a state request only sets the next state.
        return Ok(accepted(None));
    }
    let ag = &mut bu.agents[a];
    ag.state = if available { "Available" } else { "Unavailable" };
    ag.out_reason = if available { String::new() } else { reason };
    ag.since = now;
    ag.last_update = now;
    bu.emit_agent_state(a, now);
    if available {
        bu.on_agent_idle(a, now);
    }
    Ok(accepted(None))
}

fn create_dispositions(bu: &mut Bu, p: &Map<String, Value>, now: Timestamp) -> R {
    let list = match param(p, "dispositions") {
        Some(Value::Array(a)) if !a.is_empty() => a.clone(),
        _ => return Err(CxError::new(400, "Invalid Dispositions - cannot be null or empty")),
    };
    if bu.catalog_conflict() {
        return Err(conflict());
    }
    let reject_duplicates = bu.behaviours.duplicate_disposition_names == super::DuplicateNames::Reject;
    let mut before_catalog = bu.catalog_before_write();
    let mut results = Vec::new();
    let mut errors = 0;
    for item in list {
        let name = item.get("dispositionName").and_then(Value::as_str).unwrap_or("").trim().to_string();
        let classification = lenient_int(item.get("classificationId"));
        let active = lenient_bool(item.get("isActive"));
        let preview = lenient_bool(item.get("isPreviewDisposition"));
        let error = if !valid_name(&name) {
            Some("Invalid dispositionName")
        } else if reject_duplicates && bu.dispositions.values().any(|d| d.name.eq_ignore_ascii_case(&name)) {
            Some("Disposition name already exists")
        } else if classification.is_err() {
            Some("Invalid classificationId")
        } else if active.is_err() {
            Some("Invalid isActive")
        } else if preview.is_err() {
            Some("Invalid isPreviewDisposition")
        } else {
            None
        };
        if let Some(e) = error {
            errors += 1;
            results.push(json!({"dispositionId": null, "success": false, "error": e}));
            continue;
        }
        let id = bu.next_disposition_id;
        bu.next_disposition_id += 1;
        let mut d = super::model::Disposition::new(id, name, classification.ok().flatten().unwrap_or(1), now);
        d.is_active = active.ok().flatten().unwrap_or(true);
        d.is_preview = preview.ok().flatten().unwrap_or(false);
        d.notes = item.get("notes").and_then(Value::as_str).unwrap_or("").to_string();
        let after = d.fields();
        let name = d.name.clone();
        bu.dispositions.insert(id, d);
        // Each created item is its own write; only the first needs the catalog from before the request.
        let before = before_catalog.take();
        bu.catalog_written(now, before, "create", "disposition", &id.to_string(), &name, Value::Null, after);
        results.push(json!({"dispositionId": id, "success": true, "error": null}));
    }
    let body = json!({"errorCount": errors, "dispositionResults": results});
    let n = results_len(&body);
    if errors > 0 && errors < n {
        return Ok(cx_response(206, "Partial Content", Some(body)));
    }
    Ok(ok(body))
}

/// A disposition name: 1 to 50 characters.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 50
}

/// A boolean as JSON `true`/`false` or the strings `"true"`/`"false"` (query-string form).
fn lenient_bool(v: Option<&Value>) -> Result<Option<bool>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        _ => Err(()),
    }
}

/// The `catalog_conflict_rate` fault's answer: the write changed nothing.
fn conflict() -> CxError {
    CxError::new(409, "Conflict: the resource was modified by another request")
}

/// `PUT dispositions/{dispositionId}`: JSON body (or, as in v23, query parameters) `dispositionName`,
/// `classificationId`, `isPreviewDisposition`, `isActive`, `notes`; absent fields keep their value.
fn update_disposition(bu: &mut Bu, raw: &str, p: &Map<String, Value>, now: Timestamp) -> R {
    let id: i64 = raw.parse().map_err(|_| CxError::new(404, format!("Invalid dispositionId - '{raw}'")))?;
    let Some(current) = bu.dispositions.get(&id) else {
        return Err(CxError::new(404, format!("Invalid dispositionId - '{raw}'")));
    };
    if current.locked {
        return Err(CxError::new(409, format!("DispositionId - '{raw}' can not be updated")));
    }
    let name = match param(p, "dispositionName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_name(s.trim()) => Some(s.trim().to_string()),
        Some(_) => return Err(CxError::new(400, "Invalid dispositionName")),
    };
    let classification =
        lenient_int(param(p, "classificationId")).map_err(|_| CxError::new(400, "Invalid classificationId"))?;
    let preview = lenient_bool(param(p, "isPreviewDisposition"))
        .map_err(|_| CxError::new(400, "Invalid isPreviewDisposition"))?;
    let active = lenient_bool(param(p, "isActive")).map_err(|_| CxError::new(400, "Invalid isActive"))?;
    let notes = match param(p, "notes") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(CxError::new(400, "Invalid notes")),
    };
    if let Some(n) = &name {
        let reject = bu.behaviours.duplicate_disposition_names == super::DuplicateNames::Reject;
        if reject && bu.dispositions.values().any(|d| d.id != id && d.name.eq_ignore_ascii_case(n)) {
            return Err(CxError::new(400, "Disposition name already exists"));
        }
    }
    if bu.catalog_conflict() {
        return Err(conflict());
    }
    let before_catalog = bu.catalog_before_write();
    let Some(d) = bu.dispositions.get_mut(&id) else {
        return Err(CxError::new(404, format!("Invalid dispositionId - '{raw}'")));
    };
    let before = d.fields();
    if let Some(n) = name {
        d.name = n;
    }
    if let Some(c) = classification {
        d.classification_id = c;
    }
    if let Some(b) = preview {
        d.is_preview = b;
    }
    if let Some(b) = active {
        d.is_active = b;
    }
    if let Some(n) = notes {
        d.notes = n;
    }
    d.last_updated = now;
    let (after, name) = (d.fields(), d.name.clone());
    bu.catalog_written(now, before_catalog, "update", "disposition", raw, &name, before, after);
    Ok(cx_response(200, "Success", None))
}

/// `PUT skills/{skillId}` with `{"skill": {requireDisposition, acwTypeId, allowSecondaryDisposition, maxSecondsAcw,
/// dispositions: [{dispositionId, priority}]}}`: absent fields keep their value; `dispositions`, when present,
/// replaces the skill's assignment, ordered by priority (then by position).
fn update_skill(bu: &mut Bu, raw: &str, p: &Map<String, Value>, now: Timestamp) -> R {
    let s = skill(bu, raw)?;
    let Some(Value::Object(body)) = param(p, "skill") else {
        return Err(CxError::new(400, "Invalid skill"));
    };
    let require =
        lenient_bool(param(body, "requireDisposition")).map_err(|_| CxError::new(400, "Invalid requireDisposition"))?;
    let acw_type = match lenient_int(param(body, "acwTypeId")) {
        Ok(None) => None,
        Ok(Some(1)) => Some(super::AcwType::None),
        Ok(Some(2)) => Some(super::AcwType::Disposition),
        Ok(Some(3)) => Some(super::AcwType::AutomaticWrapup),
        _ => return Err(CxError::new(400, "Invalid acwTypeId")),
    };
    let secondary = match param(body, "allowSecondaryDisposition") {
        Some(v) => lenient_bool(Some(v)),
        None => lenient_bool(param(body, "allowSecondaryDispositions")),
    }
    .map_err(|_| CxError::new(400, "Invalid allowSecondaryDisposition"))?;
    let max_secs = match lenient_int(param(body, "maxSecondsAcw")) {
        Ok(None) => None,
        Ok(Some(n)) if (0..=i64::from(u32::MAX)).contains(&n) => Some(n as u32),
        _ => return Err(CxError::new(400, "Invalid maxSecondsAcw")),
    };
    let assignment = match param(body, "dispositions") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => {
            let mut list: Vec<(i64, usize, i64)> = Vec::new();
            for (pos, item) in items.iter().enumerate() {
                let id = lenient_int(item.get("dispositionId")).ok().flatten();
                let Some(id) = id.filter(|id| bu.dispositions.contains_key(id)) else {
                    let shown = item.get("dispositionId").map(|v| v.to_string()).unwrap_or_default();
                    return Err(CxError::new(400, format!("Invalid dispositionId - {}", shown.trim_matches('"'))));
                };
                let priority = lenient_int(item.get("priority"))
                    .map_err(|_| CxError::new(400, "Invalid priority"))?
                    .unwrap_or(pos as i64 + 1);
                list.push((priority, pos, id));
            }
            list.sort();
            let mut ids: Vec<i64> = Vec::new();
            for (_, _, id) in list {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            Some(ids)
        }
        Some(_) => return Err(CxError::new(400, "Invalid dispositions")),
    };
    if bu.catalog_conflict() {
        return Err(CxError::new(409, "Invalid state.  Cannot update a running skill"));
    }
    let before_catalog = bu.catalog_before_write();
    let before = bu.skill_fields(s);
    let sk = &mut bu.skills[s];
    if let Some(t) = acw_type {
        sk.acw_type = t;
    }
    if let Some(r) = require {
        sk.require_disposition = r;
    }
    // No ACW, nothing to require (as when the BU is built).
    if sk.acw_type == super::AcwType::None {
        sk.require_disposition = false;
    }
    if let Some(b) = secondary {
        sk.allow_secondary = b;
    }
    if let Some(m) = max_secs {
        sk.max_seconds_acw = m;
    }
    if let Some(ids) = assignment {
        sk.dispositions = ids;
    }
    let (skill_id, name) = (sk.id, sk.name.clone());
    let after = bu.skill_fields(s);
    bu.catalog_written(now, before_catalog, "update", "skill", &skill_id.to_string(), &name, before, after);
    Ok(ok(json!({"success": true, "skillId": skill_id, "error": null})))
}

fn results_len(v: &Value) -> usize {
    v["dispositionResults"].as_array().map(Vec::len).unwrap_or(0)
}

/// `GET agent-sessions/{sid}/get-next-event?timeout=`: a real long poll (wall time), woken by new events.
async fn next_event(st: &SharedState, sid: &str, p: &Map<String, Value>) -> R {
    let timeout = match lenient_int(param(p, "timeout")) {
        Ok(None) => 0,
        Ok(Some(t)) if (0..=MAX_POLL_SECS as i64).contains(&t) => t as u64,
        _ => return Err(CxError::new(400, "Invalid Timeout. Value must be between 0-60.")),
    };
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut stop = st.shutdown.subscribe();
    loop {
        let notify = {
            let mut bu = st.bu.lock();
            let now = st.clock.now();
            bu.advance_to(now);
            let Some((i, current)) = bu.session(sid) else {
                return Err(CxError::new(404, "Invalid Session Id"));
            };
            if bu.sessions[i].ended {
                return Err(CxError::new(409, "Session Ended"));
            }
            let events: Vec<Value> = if current {
                let s = &mut bu.sessions[i];
                // Events held back by the reorder fault come out with the next poll that finds nothing newer, so
                // a held event is late, never lost.
                if s.events.is_empty() {
                    let held: Vec<Value> = s.held.drain(..).collect();
                    s.events.extend(held);
                }
                s.events.drain(..).collect()
            } else {
                // An old id: a refresh collection (agent state and open contacts), as the portal describes.
                let a = bu.sessions[i].agent;
                bu.refresh_collection(a, now)
            };
            if !events.is_empty() {
                bu.events.delivered += events.len() as u64;
                let new_id = bu.rotate(i);
                return Ok(ok(json!({"sessionId": new_id, "events": events})));
            }
            bu.sessions[i].notify.clone()
        };
        let now = Instant::now();
        if now >= deadline {
            return Ok(cx_response(304, "No Events", None));
        }
        // Re-check at least every 250 ms: events can also come from the clock moving (the simulation catches up).
        let wait = deadline.duration_since(now).min(Duration::from_millis(250));
        tokio::select! {
            _ = notify.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return Ok(cx_response(304, "No Events", None)),
        }
    }
}
