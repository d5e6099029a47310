//! Conversation reads and the wrap-up writes.
//!
//! The generic `Conversation` shows participants with flat `userId`/`queueId` and their communications (with
//! `afterCallWork`) under `calls[]`/`callbacks[]`/`emails[]`/`messages[]`; the media-specific conversations flatten
//! the communication onto the participant and use `user{}`/`queue{}` objects, without `afterCallWork`. Media routes
//! are registered per media as static segments (the router cannot hold `{media}` and `{conversationId}` at the same
//! position); the report folds them back into `{media}`.

use super::{accepted, json_ok, parse_body, query_pairs};
use crate::config::GetWrapupUnset;
use crate::engine::iso;
use crate::engine::Simulation;
use crate::genesys::model::{
    Conversation, Media, Org, Participant, Phase, PlatformError, Purpose, Wrapup, WrapupInput,
};
use crate::SharedState;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Map, Value};

pub fn routes() -> Router<SharedState> {
    let mut r = Router::new()
        .route("/conversations/{cid}", get(get_generic))
        .route("/conversations/{cid}/participants/{pid}", axum::routing::patch(patch_generic))
        .route("/conversations/{cid}/participants/{pid}/wrapup", get(get_wrapup_generic))
        .route("/conversations/{cid}/participants/{pid}/wrapupcodes", get(codes_generic));
    for m in Media::ALL {
        let base = format!("/conversations/{}", m.path());
        r = r
            .route(&format!("{base}/{{cid}}"), get(move |st, p| get_media(st, m, p)))
            .route(
                &format!("{base}/{{cid}}/participants/{{pid}}"),
                axum::routing::patch(move |st, p, b| patch_media(st, m, p, b)),
            )
            .route(
                &format!("{base}/{{cid}}/participants/{{pid}}/wrapup"),
                get(move |st, p, q| get_wrapup_media(st, m, p, q)),
            )
            .route(&format!("{base}/{{cid}}/participants/{{pid}}/wrapupcodes"), get(move |st, p| codes_media(st, m, p)))
            .route(
                &format!("{base}/{{cid}}/participants/{{pid}}/communications/{{commId}}/wrapup"),
                post(move |st, p, b| post_wrapup(st, m, p, b)).get(move |st, p, q| get_comm_wrapup(st, m, p, q)),
            );
    }
    r
}

fn state_of(p: &Participant, conv: &Conversation) -> &'static str {
    match p.phase {
        Phase::Alerting => "alerting",
        Phase::Connected => "connected",
        Phase::Acw | Phase::Done if conv.media == Media::Calls && conv.end.is_some() => "terminated",
        Phase::Acw | Phase::Done => "disconnected",
    }
}

fn wrapup_json(org: &Org, w: &Wrapup) -> Value {
    let mut v = Map::new();
    if let Some(c) = &w.code {
        v.insert("code".into(), json!(c));
        let name = w.name.clone().or_else(|| org.code_name(c).map(str::to_string));
        v.insert("name".into(), json!(name));
    }
    v.insert("notes".into(), json!(w.notes.clone().unwrap_or_default()));
    v.insert("tags".into(), json!(w.tags));
    if let Some(d) = w.duration_seconds {
        v.insert("durationSeconds".into(), json!(d));
    }
    if let Some(e) = w.end_time {
        v.insert("endTime".into(), json!(iso(e)));
    }
    v.insert("provisional".into(), json!(w.provisional));
    Value::Object(v)
}

/// The participant's wrap-up as conversation reads show it (a provisional one only when the org shows those).
fn shown_wrapup<'a>(org: &Org, p: &'a Participant) -> Option<&'a Wrapup> {
    let hidden = org.behaviours.conversation_provisional == crate::config::ConversationProvisional::Hidden;
    p.wrapup.as_ref().filter(|w| !(w.provisional && hidden))
}

fn put_opt(obj: &mut Map<String, Value>, k: &str, v: Option<Value>) {
    if let Some(v) = v {
        obj.insert(k.into(), v);
    }
}

/// The communication object of a participant (generic model).
fn communication_json(org: &Org, conv: &Conversation, p: &Participant) -> Value {
    let mut c = Map::new();
    c.insert("id".into(), json!(p.comm_id));
    c.insert("state".into(), json!(state_of(p, conv)));
    c.insert("initialState".into(), json!(if p.purpose == Purpose::Agent { "alerting" } else { "connected" }));
    c.insert("direction".into(), json!(conv.direction));
    c.insert("held".into(), json!(false));
    put_opt(&mut c, "disconnectType", p.disconnect_type.map(|d| json!(d)));
    if p.purpose == Purpose::Agent {
        c.insert("startAlertingTime".into(), json!(iso(p.start)));
    }
    put_opt(&mut c, "connectedTime", p.connected_at.map(|t| json!(iso(t))));
    put_opt(&mut c, "disconnectedTime", p.end.map(|t| json!(iso(t))));
    c.insert("provider".into(), json!("Edge"));
    if p.purpose == Purpose::Agent {
        put_opt(&mut c, "wrapup", shown_wrapup(org, p).map(|w| wrapup_json(org, w)));
        if let Some(state) = p.acw_state {
            let mut acw = Map::new();
            acw.insert("state".into(), json!(state.as_str()));
            put_opt(&mut acw, "startTime", p.acw_start.map(|t| json!(iso(t))));
            put_opt(&mut acw, "endTime", p.acw_end.map(|t| json!(iso(t))));
            c.insert("afterCallWork".into(), Value::Object(acw));
        }
        c.insert(
            "afterCallWorkRequired".into(),
            json!(p.prompt == Some(crate::config::AcwMode::AgentRequested) && p.wrapup_required),
        );
    }
    Value::Object(c)
}

/// Participant fields common to both models.
fn participant_common(org: &Org, p: &Participant, obj: &mut Map<String, Value>) {
    obj.insert("id".into(), json!(p.id));
    obj.insert("name".into(), json!(p.name));
    obj.insert("startTime".into(), json!(iso(p.start)));
    put_opt(obj, "connectedTime", p.connected_at.map(|t| json!(iso(t))));
    put_opt(obj, "endTime", p.end.map(|t| json!(iso(t))));
    obj.insert("purpose".into(), json!(p.purpose.as_str()));
    obj.insert("wrapupRequired".into(), json!(p.wrapup_required));
    if p.purpose == Purpose::Agent {
        put_opt(obj, "wrapupPrompt", p.prompt.map(|m| json!(m.participant_prompt())));
        put_opt(obj, "wrapupTimeoutMs", p.timeout_ms.map(|t| json!(t)));
    }
    if p.wrapup_skipped {
        obj.insert("wrapupSkipped".into(), json!(true));
    }
    put_opt(obj, "wrapup", shown_wrapup(org, p).map(|w| wrapup_json(org, w)));
    put_opt(obj, "startAcwTime", p.acw_start.map(|t| json!(iso(t))));
    put_opt(obj, "endAcwTime", p.acw_end.map(|t| json!(iso(t))));
    put_opt(obj, "consultParticipantId", p.consult_participant_id.as_ref().map(|c| json!(c)));
    obj.insert("attributes".into(), attributes(p));
}

/// The participant attributes the simulated center's flows set on agent legs: a customer `segment` and a `vip`
/// flag, derived from the participant's id (not from the simulation's random stream, which they must not shift).
fn attributes(p: &Participant) -> Value {
    if p.purpose != Purpose::Agent {
        return json!({});
    }
    let h = p.id.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let segment = ["gold", "silver", "bronze"][(h % 3) as usize];
    json!({"segment": segment, "vip": if h % 5 == 0 { "true" } else { "false" }})
}

fn divisions(org: &Org) -> Value {
    json!([{"division": {"id": org.division_id, "name": "Home", "selfUri": format!("/api/v2/authorization/divisions/{}", org.division_id)}, "entities": []}])
}

/// `GET /api/v2/conversations/{id}`.
pub fn conversation_json(org: &Org, conv: &Conversation) -> Value {
    let participants: Vec<Value> = conv
        .participants
        .iter()
        .map(|p| {
            let mut o = Map::new();
            participant_common(org, p, &mut o);
            if let Some(q) = p.queue.and_then(|q| org.queues.get(q)) {
                o.insert("queueId".into(), json!(q.id));
                o.insert("queueName".into(), json!(q.name));
            }
            if let Some(u) = &p.user_id {
                o.insert("userId".into(), json!(u));
                o.insert("userUri".into(), json!(format!("/api/v2/users/{u}")));
            }
            o.insert(conv.media.path().into(), json!([communication_json(org, conv, p)]));
            Value::Object(o)
        })
        .collect();
    let mut c = Map::new();
    c.insert("id".into(), json!(conv.id));
    c.insert("startTime".into(), json!(iso(conv.start)));
    put_opt(&mut c, "endTime", conv.end.map(|t| json!(iso(t))));
    c.insert("participants".into(), Value::Array(participants));
    c.insert("conversationIds".into(), json!([conv.id]));
    c.insert("maxParticipants".into(), json!(10));
    c.insert("recordingState".into(), json!("NONE"));
    c.insert("divisions".into(), divisions(org));
    c.insert("recentTransfers".into(), json!([]));
    c.insert("selfUri".into(), json!(format!("/api/v2/conversations/{}", conv.id)));
    Value::Object(c)
}

/// `GET /api/v2/conversations/{media}/{id}`.
pub fn media_conversation_json(org: &Org, conv: &Conversation) -> Value {
    let participants: Vec<Value> = conv
        .participants
        .iter()
        .map(|p| {
            let mut o = Map::new();
            participant_common(org, p, &mut o);
            o.insert("state".into(), json!(state_of(p, conv)));
            o.insert("direction".into(), json!(conv.direction));
            o.insert("held".into(), json!(false));
            put_opt(&mut o, "disconnectType", p.disconnect_type.map(|d| json!(d)));
            if p.purpose == Purpose::Agent {
                o.insert("startAlertingTime".into(), json!(iso(p.start)));
            }
            o.insert("provider".into(), json!("Edge"));
            if let Some(q) = p.queue.and_then(|q| org.queues.get(q)) {
                o.insert("queue".into(), json!({"id": q.id, "selfUri": format!("/api/v2/routing/queues/{}", q.id)}));
            }
            if let Some(u) = &p.user_id {
                o.insert("user".into(), json!({"id": u, "name": p.name, "selfUri": format!("/api/v2/users/{u}")}));
            }
            // Only `CallMediaParticipant` has `consultParticipantId`.
            if conv.media != Media::Calls {
                o.remove("consultParticipantId");
            }
            Value::Object(o)
        })
        .collect();
    let mut v = json!({
        "id": conv.id,
        "participants": participants,
        "otherMediaUris": [],
        "divisions": divisions(org),
        "selfUri": format!("/api/v2/conversations/{}/{}", conv.media.path(), conv.id),
    });
    // Only `CallConversation` has `recordingState` (callback, email and message conversations do not).
    if let (Media::Calls, Some(obj)) = (conv.media, v.as_object_mut()) {
        obj.insert("recordingState".into(), json!("NONE"));
    }
    v
}

/// The `eventBody` of `v2.users.{id}.conversations` / `v2.routing.queues.{id}.conversations` frames
/// (`ConversationEventTopicConversation`): the generic conversation without the REST-only fields (`startTime`,
/// `endTime`, `conversationIds`, `selfUri`; participant `startTime`, `queueName`, `userUri`, `wrapupSkipped`;
/// communication `startAlertingTime`; wrap-up `name`, `provisional`; division `name`). A provisional wrap-up is
/// not shown: the event model cannot mark it as such.
pub fn event_conversation_json(org: &Org, conv: &Conversation) -> Value {
    let mut v = conversation_json(org, conv);
    let Some(obj) = v.as_object_mut() else { return v };
    for k in ["startTime", "endTime", "conversationIds", "selfUri"] {
        obj.remove(k);
    }
    for d in obj.get_mut("divisions").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(div) = d.get_mut("division").and_then(Value::as_object_mut) {
            div.remove("name");
        }
    }
    for p in obj.get_mut("participants").and_then(Value::as_array_mut).into_iter().flatten() {
        let Some(p) = p.as_object_mut() else { continue };
        for k in ["startTime", "queueName", "userUri", "wrapupSkipped"] {
            p.remove(k);
        }
        strip_wrapup(p);
        for comm in p.get_mut(conv.media.path()).and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(c) = comm.as_object_mut() {
                c.remove("startAlertingTime");
                strip_wrapup(c);
            }
        }
    }
    v
}

/// The `eventBody` of the media variants of the queue topic (`v2.routing.queues.{id}.conversations.calls` etc.):
/// `QueueConversationCallEventTopicCallConversation` and its callback/email/message siblings — the media-specific
/// conversation (participants flattened, `user`/`queue` as `{id, name}`) without the REST-only fields (`selfUri`,
/// participant `startAlertingTime`, wrap-up `name`/`provisional`, division `name`). A provisional wrap-up is not
/// shown.
pub fn event_media_conversation_json(org: &Org, conv: &Conversation) -> Value {
    let mut v = media_conversation_json(org, conv);
    let Some(obj) = v.as_object_mut() else { return v };
    obj.remove("selfUri");
    for d in obj.get_mut("divisions").and_then(Value::as_array_mut).into_iter().flatten() {
        if let Some(div) = d.get_mut("division").and_then(Value::as_object_mut) {
            div.remove("name");
        }
    }
    for p in obj.get_mut("participants").and_then(Value::as_array_mut).into_iter().flatten() {
        let Some(p) = p.as_object_mut() else { continue };
        p.remove("startAlertingTime");
        for k in ["user", "queue"] {
            if let Some(r) = p.get_mut(k).and_then(Value::as_object_mut) {
                r.remove("selfUri");
            }
        }
        strip_wrapup(p);
    }
    v
}

/// Event models have no `provisional` flag: a provisional wrap-up is left out, a final one loses `name` and
/// `provisional`.
fn strip_wrapup(o: &mut Map<String, Value>) {
    let provisional = o.get("wrapup").and_then(|w| w.get("provisional")).and_then(Value::as_bool);
    match provisional {
        Some(true) => {
            o.remove("wrapup");
        }
        _ => {
            if let Some(w) = o.get_mut("wrapup").and_then(Value::as_object_mut) {
                w.remove("name");
                w.remove("provisional");
            }
        }
    }
}

async fn get_generic(State(st): State<SharedState>, Path(cid): Path<String>) -> Response {
    let org = st.org.lock();
    match org.conversations.get(&cid) {
        Some(conv) => json_ok(conversation_json(&org, conv)),
        None => PlatformError::not_found().into_response(),
    }
}

async fn get_media(State(st): State<SharedState>, m: Media, Path(cid): Path<String>) -> Response {
    let org = st.org.lock();
    match org.conversations.get(&cid).filter(|c| c.media == m) {
        Some(conv) => json_ok(media_conversation_json(&org, conv)),
        None => PlatformError::not_found().into_response(),
    }
}

async fn patch_generic(
    State(st): State<SharedState>,
    Path((cid, pid)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    patch(&st, None, &cid, &pid, &body)
}

async fn patch_media(
    State(st): State<SharedState>,
    m: Media,
    Path((cid, pid)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    patch(&st, Some(m), &cid, &pid, &body)
}

/// `PATCH …/participants/{pid}` (`MediaParticipantRequest`): only `wrapup` is harmless; any other property is an
/// action, forbidden once the participant has ended.
fn patch(st: &SharedState, media: Option<Media>, cid: &str, pid: &str, body: &Bytes) -> Response {
    let req: Map<String, Value> = match parse_body(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let now = st.clock.now();
    let mut org = st.org.lock();
    let ended = match org.find_participant(cid, pid, media) {
        Ok(p) => p.end.is_some(),
        Err(e) => return e.into_response(),
    };
    let others: Vec<&String> = req.keys().filter(|k| k.as_str() != "wrapup").collect();
    if !others.is_empty() {
        if ended {
            return PlatformError::conversation_forbidden(cid).into_response();
        }
        if req.get("state").and_then(Value::as_str) == Some("disconnected") {
            org.api_disconnect(cid, pid, now);
        }
    }
    if let Some(w) = req.get("wrapup") {
        let input: WrapupInput = match serde_json::from_value(w.clone()) {
            Ok(i) => i,
            Err(_) => return PlatformError::malformed().into_response(),
        };
        if let Err(e) = org.api_write_wrapup(cid, pid, media, None, input, now) {
            return e.into_response();
        }
        st.wake.notify_one();
    }
    accepted()
}

async fn post_wrapup(
    State(st): State<SharedState>,
    m: Media,
    Path((cid, pid, comm)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    // The body is optional; SDKs send the JSON literal `null` when it is omitted.
    let trimmed = body.trim_ascii();
    let input: WrapupInput = if trimmed.is_empty() || trimmed == b"null" {
        WrapupInput::default()
    } else {
        match parse_body(&body) {
            Ok(i) => i,
            Err(e) => return e.into_response(),
        }
    };
    let now = st.clock.now();
    let result = st.org.lock().api_write_wrapup(&cid, &pid, Some(m), Some(&comm), input, now);
    match result {
        Ok(()) => {
            st.wake.notify_one();
            accepted()
        }
        Err(e) => e.into_response(),
    }
}

fn provisional_flag(q: Option<String>) -> bool {
    query_pairs(q.as_deref()).iter().any(|(k, v)| k == "provisional" && v.eq_ignore_ascii_case("true"))
}

fn wrapup_answer(st: &SharedState, r: Result<Option<Value>, PlatformError>) -> Response {
    match r {
        Ok(Some(v)) => json_ok(v),
        Ok(None) => match st.org.lock().behaviours.get_wrapup_unset {
            GetWrapupUnset::Empty200 => json_ok(json!({})),
            GetWrapupUnset::NotFound => PlatformError::not_found().into_response(),
        },
        Err(e) => e.into_response(),
    }
}

async fn get_wrapup_generic(
    State(st): State<SharedState>,
    Path((cid, pid)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let r = st.org.lock().assigned_wrapup(&cid, &pid, None, None, provisional_flag(q));
    wrapup_answer(&st, r)
}

async fn get_wrapup_media(
    State(st): State<SharedState>,
    m: Media,
    Path((cid, pid)): Path<(String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let r = st.org.lock().assigned_wrapup(&cid, &pid, Some(m), None, provisional_flag(q));
    wrapup_answer(&st, r)
}

async fn get_comm_wrapup(
    State(st): State<SharedState>,
    m: Media,
    Path((cid, pid, comm)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let r = st.org.lock().assigned_wrapup(&cid, &pid, Some(m), Some(&comm), provisional_flag(q));
    wrapup_answer(&st, r)
}

async fn codes_generic(State(st): State<SharedState>, Path((cid, pid)): Path<(String, String)>) -> Response {
    match st.org.lock().participant_codes(&cid, &pid, None) {
        Ok(v) => json_ok(v),
        Err(e) => e.into_response(),
    }
}

async fn codes_media(State(st): State<SharedState>, m: Media, Path((cid, pid)): Path<(String, String)>) -> Response {
    match st.org.lock().participant_codes(&cid, &pid, Some(m)) {
        Ok(v) => json_ok(v),
        Err(e) => e.into_response(),
    }
}

impl Org {
    /// `PATCH` with `state: disconnected` on a live agent participant: the agent ends its part now.
    pub fn api_disconnect(&mut self, cid: &str, pid: &str, now: jiff::Timestamp) {
        let connected = self
            .conversations
            .get(cid)
            .and_then(|c| c.participant(pid))
            .is_some_and(|p| p.purpose == Purpose::Agent && p.phase == Phase::Connected);
        if connected {
            self.engine.schedule(
                now,
                crate::genesys::model::Action::Disconnect { cid: cid.to_string(), pid: pid.to_string() },
            );
            self.advance_to(now);
        }
    }
}
