//! `POST /api/v2/analytics/conversations/details/query`: conversation details for reconciliation.
//!
//! Conversations whose start lies in `interval` are rendered as analytics details (participants → sessions →
//! segments: `alert`, `interact`, `wrapup`; in-progress segments have no `segmentEnd`; a wrap-up segment carries
//! `wrapUpCode`/`wrapUpNote` once a final code exists), filtered by `conversationFilters` (dimensions
//! `conversationId`, `conversationEnd`, `divisionId`, `originatingDirection`) and `segmentFilters` (a filter holds
//! when one segment satisfies it; dimensions `segmentType`, `wrapUpCode`, `queueId`, `userId`, `purpose`,
//! `mediaType`, `direction`, `disconnectType`, `participantId`, `sessionId`, `conversationId`), with operators
//! `matches` (default), `exists`, `notExists`, `and`/`or` filters and nested `clauses`. Filters of one array are
//! ANDed. Ordered by `conversationStart` (or `conversationEnd`) `asc`/`desc`, paged (`pageSize` ≤ 100). As on the
//! platform, `conversations` is absent when nothing matches.

use super::{json_ok, parse_body};
use crate::engine::iso;
use crate::genesys::model::{AcwState, Conversation, Org, Participant, Phase, PlatformError, Purpose};
use crate::SharedState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub fn routes() -> Router<SharedState> {
    Router::new().route("/analytics/conversations/details/query", post(query))
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Query {
    interval: Option<String>,
    order: Option<String>,
    order_by: Option<String>,
    paging: Option<Paging>,
    #[serde(default)]
    conversation_filters: Vec<Filter>,
    #[serde(default)]
    segment_filters: Vec<Filter>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Paging {
    page_size: Option<usize>,
    page_number: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
struct Filter {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    clauses: Vec<Filter>,
    #[serde(default)]
    predicates: Vec<Predicate>,
}

#[derive(Debug, Deserialize)]
struct Predicate {
    dimension: Option<String>,
    operator: Option<String>,
    value: Option<Value>,
}

impl Filter {
    /// Evaluates the filter with `dim` giving a dimension's value (`None` = absent).
    fn eval(&self, dim: &dyn Fn(&str) -> Option<String>) -> bool {
        let results = self.predicates.iter().map(|p| p.eval(dim)).chain(self.clauses.iter().map(|c| c.eval(dim)));
        if self.kind.as_deref() == Some("or") {
            let mut any = false;
            let mut empty = true;
            for r in results {
                empty = false;
                any |= r;
            }
            any || empty
        } else {
            results.into_iter().all(|r| r)
        }
    }
}

impl Predicate {
    fn eval(&self, dim: &dyn Fn(&str) -> Option<String>) -> bool {
        let Some(d) = self.dimension.as_deref() else { return true };
        let v = dim(d);
        match self.operator.as_deref().unwrap_or("matches") {
            "exists" => v.is_some(),
            "notExists" => v.is_none(),
            _ => {
                let want = match &self.value {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => return false,
                };
                v.is_some_and(|v| v == want)
            }
        }
    }
}

/// One analytics segment with the context a segment filter can see.
struct Segment {
    kind: &'static str,
    start: Timestamp,
    end: Option<Timestamp>,
    disconnect_type: Option<&'static str>,
    queue_id: Option<String>,
    wrap_up_code: Option<String>,
    wrap_up_note: Option<String>,
}

fn analytics_disconnect_type(dt: &str) -> &'static str {
    match dt {
        "endpoint" => "endpoint",
        "client" => "client",
        "system" => "system",
        "transfer" => "transfer",
        "transfer.consult" => "consultTransfer",
        "peer" => "peer",
        "timeout" => "timeout",
        "error" => "error",
        _ => "other",
    }
}

fn segments(org: &Org, p: &Participant) -> Vec<Segment> {
    let queue_id = p.queue.and_then(|q| org.queues.get(q)).map(|q| q.id.clone());
    let dt = p.disconnect_type.map(analytics_disconnect_type);
    let mut out = Vec::new();
    match p.purpose {
        Purpose::Agent => {
            out.push(Segment {
                kind: "alert",
                start: p.start,
                end: p.connected_at.or(p.end),
                disconnect_type: None,
                queue_id: queue_id.clone(),
                wrap_up_code: None,
                wrap_up_note: None,
            });
            if let Some(c) = p.connected_at {
                out.push(Segment {
                    kind: "interact",
                    start: c,
                    end: p.end,
                    disconnect_type: dt,
                    queue_id: queue_id.clone(),
                    wrap_up_code: None,
                    wrap_up_note: None,
                });
            }
            if let Some(s) = p.acw_start {
                let code = p.wrapup.as_ref().filter(|w| !w.provisional);
                out.push(Segment {
                    kind: "wrapup",
                    start: s,
                    end: p.acw_end,
                    disconnect_type: p.acw_end.map(|_| "system").or(dt),
                    queue_id,
                    wrap_up_code: code.and_then(|w| w.code.clone()),
                    wrap_up_note: code.map(|w| w.notes.clone().unwrap_or_default()),
                });
            }
        }
        Purpose::Customer | Purpose::Acd => out.push(Segment {
            kind: "interact",
            start: p.start,
            end: p.end,
            disconnect_type: dt,
            queue_id,
            wrap_up_code: None,
            wrap_up_note: None,
        }),
    }
    out
}

fn segment_dim(conv: &Conversation, p: &Participant, s: &Segment, d: &str) -> Option<String> {
    match d {
        "segmentType" => Some(s.kind.to_string()),
        "wrapUpCode" => s.wrap_up_code.clone(),
        "wrapUpNote" => s.wrap_up_note.clone(),
        "queueId" => s.queue_id.clone(),
        "userId" => p.user_id.clone(),
        "purpose" => Some(p.purpose.as_str().to_string()),
        "mediaType" => Some(conv.media.analytics_name().to_string()),
        "direction" => Some(conv.direction.to_string()),
        "disconnectType" => s.disconnect_type.map(str::to_string),
        "participantId" => Some(p.id.clone()),
        "sessionId" => Some(p.comm_id.clone()),
        "conversationId" => Some(conv.id.clone()),
        _ => None,
    }
}

fn conversation_dim(org: &Org, conv: &Conversation, d: &str) -> Option<String> {
    match d {
        "conversationId" => Some(conv.id.clone()),
        "conversationEnd" => conv.end.map(iso),
        "conversationStart" => Some(iso(conv.start)),
        "divisionId" => Some(org.division_id.clone()),
        "originatingDirection" => Some(conv.direction.to_string()),
        _ => None,
    }
}

fn conversation_json(org: &Org, conv: &Conversation) -> Value {
    let participants: Vec<Value> = conv
        .participants
        .iter()
        .map(|p| {
            let segs: Vec<Value> = segments(org, p)
                .into_iter()
                .map(|s| {
                    let mut o = Map::new();
                    o.insert("segmentStart".into(), json!(iso(s.start)));
                    if let Some(e) = s.end {
                        o.insert("segmentEnd".into(), json!(iso(e)));
                    }
                    o.insert("segmentType".into(), json!(s.kind));
                    if let Some(d) = s.disconnect_type.filter(|_| s.end.is_some()) {
                        o.insert("disconnectType".into(), json!(d));
                    }
                    if let Some(q) = s.queue_id {
                        o.insert("queueId".into(), json!(q));
                    }
                    if let Some(c) = s.wrap_up_code {
                        o.insert("wrapUpCode".into(), json!(c));
                        o.insert("wrapUpNote".into(), json!(s.wrap_up_note.unwrap_or_default()));
                        o.insert("wrapUpTags".into(), json!([]));
                    }
                    Value::Object(o)
                })
                .collect();
            let mut session = Map::new();
            session.insert("mediaType".into(), json!(conv.media.analytics_name()));
            session.insert("sessionId".into(), json!(p.comm_id));
            session.insert("direction".into(), json!(conv.direction));
            if p.purpose == Purpose::Agent && p.phase == Phase::Done && p.wrapup_required {
                session.insert("acwSkipped".into(), json!(p.acw_state == Some(AcwState::Skipped)));
            }
            let mut metrics = Vec::new();
            if let (Some(s), Some(e)) = (p.acw_start, p.acw_end) {
                metrics.push(json!({"name": "tAcw", "value": (e.as_millisecond() - s.as_millisecond()).max(0), "emitDate": iso(e)}));
            }
            if let (Some(c), Some(e)) = (p.connected_at, p.end) {
                metrics.push(json!({"name": "tTalkComplete", "value": (e.as_millisecond() - c.as_millisecond()).max(0), "emitDate": iso(e)}));
            }
            session.insert("metrics".into(), Value::Array(metrics));
            session.insert("segments".into(), Value::Array(segs));
            let mut o = Map::new();
            o.insert("participantId".into(), json!(p.id));
            o.insert("participantName".into(), json!(p.name));
            o.insert("purpose".into(), json!(p.purpose.as_str()));
            if let Some(u) = &p.user_id {
                o.insert("userId".into(), json!(u));
            }
            o.insert("sessions".into(), json!([Value::Object(session)]));
            Value::Object(o)
        })
        .collect();
    let mut c = Map::new();
    c.insert("conversationId".into(), json!(conv.id));
    c.insert("conversationStart".into(), json!(iso(conv.start)));
    if let Some(e) = conv.end {
        c.insert("conversationEnd".into(), json!(iso(e)));
    }
    c.insert("originatingDirection".into(), json!(conv.direction));
    c.insert("divisionIds".into(), json!([org.division_id]));
    c.insert("participants".into(), Value::Array(participants));
    Value::Object(c)
}

fn parse_interval(s: &str) -> Option<(Timestamp, Timestamp)> {
    let (a, b) = s.split_once('/')?;
    let a: Timestamp = a.parse().ok()?;
    let b: Timestamp = b.parse().ok()?;
    (a < b).then_some((a, b))
}

impl Org {
    /// Runs a details query (see the module docs).
    fn details_query(&self, q: &Query) -> Result<Value, PlatformError> {
        let interval =
            q.interval.as_deref().ok_or_else(|| PlatformError::new(400, "bad.request", "interval is required."))?;
        let (from, to) = parse_interval(interval)
            .ok_or_else(|| PlatformError::new(400, "invalid.date", format!("Invalid interval [{interval}].")))?;
        let page_size = q.paging.as_ref().and_then(|p| p.page_size).unwrap_or(25);
        let page_number = q.paging.as_ref().and_then(|p| p.page_number).unwrap_or(1);
        if page_size == 0 || page_size > 100 || page_number == 0 {
            return Err(PlatformError::bad_request("paging.pageSize must be 1..100 and paging.pageNumber >= 1."));
        }
        let mut hits: Vec<&Conversation> = self
            .conversation_order
            .iter()
            .filter_map(|id| self.conversations.get(id))
            .filter(|c| c.start >= from && c.start < to)
            .filter(|c| q.conversation_filters.iter().all(|f| f.eval(&|d| conversation_dim(self, c, d))))
            .filter(|c| {
                q.segment_filters.iter().all(|f| {
                    c.participants
                        .iter()
                        .any(|p| segments(self, p).iter().any(|s| f.eval(&|d| segment_dim(c, p, s, d))))
                })
            })
            .collect();
        let by_end = q.order_by.as_deref() == Some("conversationEnd");
        hits.sort_by(|a, b| {
            let ka = if by_end { a.end.unwrap_or(Timestamp::MAX) } else { a.start };
            let kb = if by_end { b.end.unwrap_or(Timestamp::MAX) } else { b.start };
            ka.cmp(&kb).then_with(|| a.id.cmp(&b.id))
        });
        if q.order.as_deref() == Some("desc") {
            hits.reverse();
        }
        let total = hits.len();
        let page: Vec<Value> = hits
            .into_iter()
            .skip((page_number - 1).saturating_mul(page_size))
            .take(page_size)
            .map(|c| conversation_json(self, c))
            .collect();
        let mut out = Map::new();
        if !page.is_empty() {
            out.insert("conversations".into(), Value::Array(page));
        }
        out.insert("totalHits".into(), json!(total));
        Ok(Value::Object(out))
    }
}

async fn query(State(st): State<SharedState>, body: Bytes) -> Response {
    let q: Query = match parse_body(&body) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let result = st.org.lock().details_query(&q);
    match result {
        Ok(v) => json_ok(v),
        Err(e) => e.into_response(),
    }
}
