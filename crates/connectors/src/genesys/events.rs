//! Genesys events → `wrapup_core::Event`.
//!
//! Input is untrusted bytes from the EventBridge-over-HTTP intake, a relaying webhook, or the notification
//! websocket. [`parse_eventbridge`] accepts:
//!
//! - one EventBridge envelope `{"detail-type": …, "detail": {topicName, version, eventBody, metadata}}`;
//! - a JSON array of envelopes (a batch, at most [`MAX_BATCH`]);
//! - a bare notification frame `{topicName, version, eventBody, metadata}` (the websocket's shape), alone or in a
//!   batch.
//!
//! Topics (`platforms/genesys-cloud.md` §5.2), matched on the concrete `detail.topicName` (falling back to the
//! `detail-type` pattern):
//!
//! | topic                                              | result                                          |
//! |----------------------------------------------------|-------------------------------------------------|
//! | `v2.detail.events.conversation.{id}.user.end`      | `LegEnded` with [`LegFacts`] from the body      |
//! | `v2.detail.events.conversation.{id}.acw`, `.wrapup`| `CodeRecorded` (`wrapupCode`, `wrapupNotes`)    |
//! | other documented conversation detail events        | [`Parsed::Ignored`] (accepted, nothing to do)   |
//! | `v2.routing.queues.{id}.conversations[.media]`      | zero or more events, see [`queue_topics`]       |
//! | anything else                                      | [`EventError::UnsupportedTopic`]                |
//!
//! The leg is `(connection, conversationId, participantId)`; the dedupe key is
//! `genesys:{kind}:{conversationId}:{participantId}:{eventTime}`, so a redelivered event collapses while `.acw` and
//! `.wrapup` for the same leg stay distinct. A batch is all-or-nothing: the first bad element fails it with its
//! index ([`EventError::InBatch`]), so the sender's retry and dead-lettering apply to the batch it sent.
//!
//! The parser works on `serde_json::Value` with explicit field access and never panics (serde_json bounds nesting
//! depth; sizes and counts are checked first); a proptest feeds it random bytes and random JSON.

use super::queue_topics;
use jiff::Timestamp;
use serde_json::{Map, Value};
use std::collections::HashSet;
use wrapup_core::{Channel, Direction, Event, EventKind, LegFacts, LegKey, Platform};

/// Largest accepted body (an EventBridge event is at most 256 KiB; a batch of them a few).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most events accepted in one batch.
pub const MAX_BATCH: usize = 100;
/// The system code Genesys stamps when a timed ACW window expires.
pub const WRAP_UP_TIMEOUT_CODE: &str = "ININ-WRAP-UP-TIMEOUT";

const TOPIC_PREFIX: &str = "v2.detail.events.conversation.";
/// Longest id or topic we accept (ids are UUIDs; this only bounds hostile input).
const MAX_ID_CHARS: usize = 256;

/// One element of a parsed body.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A normalized event for intake.
    Event(Event),
    /// A known topic that needs no action (e.g. `.customer.end`); acknowledge and drop.
    Ignored { topic: String },
}

/// Why a body was refused. Each variant is one problem, stated for the operator (and the sender's logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event body is {size} bytes, more than the {limit} accepted")]
    TooLarge { size: usize, limit: usize },
    #[error("the batch holds {count} events, more than the {limit} accepted")]
    TooManyEvents { count: usize, limit: usize },
    #[error("the event body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the event is neither an EventBridge envelope nor a notification frame")]
    NotAnEvent,
    #[error("the event has no {field}")]
    MissingField { field: &'static str },
    #[error("the event's {field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("topic {topic} is not supported")]
    UnsupportedTopic { topic: String },
    #[error("event {index} of the batch: {source}")]
    InBatch { index: usize, source: Box<EventError> },
}

/// Parses an EventBridge envelope, a batch of them, or a bare notification frame. See the module docs.
pub fn parse_eventbridge(
    connection: &str,
    body: &[u8],
    system_code_ids: &HashSet<String>,
) -> Result<Vec<Parsed>, EventError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(EventError::TooLarge { size: body.len(), limit: MAX_BODY_BYTES });
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| EventError::MalformedJson(e.to_string()))?;
    match value {
        Value::Array(items) => {
            if items.len() > MAX_BATCH {
                return Err(EventError::TooManyEvents { count: items.len(), limit: MAX_BATCH });
            }
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    parse_value(connection, item, system_code_ids)
                        .map_err(|e| EventError::InBatch { index, source: Box::new(e) })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|parsed| parsed.into_iter().flatten().collect())
        }
        other => parse_value(connection, &other, system_code_ids),
    }
}

/// Parses one already-decoded envelope or frame (used by the websocket intake, which decodes frames itself). A
/// detail event yields one element; a queue conversation snapshot yields one per fact it carries (possibly none).
pub fn parse_value(
    connection: &str,
    value: &Value,
    system_code_ids: &HashSet<String>,
) -> Result<Vec<Parsed>, EventError> {
    let obj = value.as_object().ok_or(EventError::NotAnEvent)?;
    let (frame, pattern) = match obj.get("detail") {
        Some(Value::Object(detail)) => match obj.get("detail-type") {
            None | Some(Value::Null) => (detail, None),
            Some(Value::String(p)) => (detail, Some(p.as_str())),
            Some(_) => return Err(invalid("detail-type", "not a string")),
        },
        Some(_) => return Err(invalid("detail", "not an object")),
        None if obj.contains_key("topicName") => (obj, None),
        None => return Err(EventError::NotAnEvent),
    };
    let topic = match frame.get("topicName") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(invalid("topicName", "not a string")),
        None => pattern.ok_or(EventError::MissingField { field: "detail.topicName" })?,
    };
    // An envelope whose two names of the event disagree is refused rather than read by one of them: which one the
    // sender meant is unknowable, and an EventBridge rule filters on `detail-type`.
    if let Some(pattern) = pattern {
        if !topic_matches_pattern(topic, pattern) {
            return Err(invalid("detail-type", "names another topic than detail.topicName"));
        }
    }
    let correlation_id = frame
        .get("metadata")
        .and_then(Value::as_object)
        .and_then(|m| m.get("CorrelationId"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.chars().count() <= MAX_ID_CHARS)
        .map(str::to_string);
    if queue_topics::queue_of_topic(topic).is_some() {
        let media = queue_topics::media_of_topic(topic);
        return queue_topics::parse_snapshot(connection, media, event_body(frame)?, correlation_id, system_code_ids);
    }
    let (topic_id, kind) = classify_topic(topic)?;
    if kind == TopicKind::Ignored {
        return Ok(vec![Parsed::Ignored { topic: bounded(topic) }]);
    }
    let body = event_body(frame)?;

    let conversation_id = match id_field(body, "conversationId", "eventBody.conversationId")? {
        // A concrete topic names the conversation too; the two must be the same one.
        Some(c) if topic_id.is_some_and(|id| id != "{id}" && id != c) => {
            return Err(invalid("detail.topicName", "names another conversation than eventBody.conversationId"));
        }
        Some(c) => c,
        // The concrete topic names the conversation; the EventBridge pattern's `{id}` does not.
        None => match topic_id {
            Some(id) if id != "{id}" => check_id(id, "eventBody.conversationId")?.to_string(),
            _ => return Err(EventError::MissingField { field: "eventBody.conversationId" }),
        },
    };
    let participant_id = id_field(body, "participantId", "eventBody.participantId")?
        .ok_or(EventError::MissingField { field: "eventBody.participantId" })?;
    let event_time_ms = match body.get("eventTime") {
        None | Some(Value::Null) => return Err(EventError::MissingField { field: "eventBody.eventTime" }),
        // Detail events carry epoch milliseconds; a relay may have rewritten it as an RFC 3339 string.
        Some(v) => as_i64(v)
            .or_else(|| v.as_str().and_then(|s| s.parse::<Timestamp>().ok()).map(|t| t.as_millisecond()))
            .ok_or_else(|| invalid("eventBody.eventTime", "neither epoch milliseconds nor an RFC 3339 time"))?,
    };
    let occurred_at =
        Timestamp::from_millisecond(event_time_ms).map_err(|_| invalid("eventBody.eventTime", "out of range"))?;

    let leg = LegKey::new(connection, conversation_id.clone(), participant_id.clone());
    let dedupe_key = format!("genesys:{}:{conversation_id}:{participant_id}:{event_time_ms}", kind.as_str());
    let kind = match kind {
        TopicKind::UserEnd => EventKind::LegEnded { facts: Box::new(leg_facts(body, occurred_at)?) },
        // `Ignored` returned above; listing it here keeps the match total without a panic path.
        TopicKind::Acw | TopicKind::Wrapup | TopicKind::Ignored => {
            let code_id = string_field(body, "wrapupCode");
            let system = code_id.as_deref().is_some_and(|c| c == WRAP_UP_TIMEOUT_CODE || system_code_ids.contains(c));
            EventKind::CodeRecorded { code_id, notes: string_field(body, "wrapupNotes"), system }
        }
    };
    Ok(vec![Parsed::Event(Event { leg, dedupe_key, occurred_at, correlation_id, kind })])
}

fn event_body(frame: &Map<String, Value>) -> Result<&Map<String, Value>, EventError> {
    match frame.get("eventBody") {
        Some(Value::Object(b)) => Ok(b),
        Some(_) => Err(invalid("eventBody", "not an object")),
        None => Err(EventError::MissingField { field: "eventBody" }),
    }
}

/// A media path segment (`calls`, `callbacks`, `emails`, `messages`) → (write-path media, channel).
pub(crate) fn media_of_path(media: &str) -> (Option<&'static str>, Channel) {
    match media {
        "calls" => (Some("calls"), Channel::Voice),
        "callbacks" => (Some("callbacks"), Channel::Callback),
        "emails" => (Some("emails"), Channel::Email),
        "messages" => (Some("messages"), Channel::Message),
        _ => (None, Channel::Other),
    }
}

/// A REST / conversation-topic disconnect type (`transfer.consult`, `endpoint.dnd`) → the detail-event spelling the
/// `user.end` parser produces (`consult_transfer`, `dnd_endpoint`), so rules see one vocabulary whatever the intake.
pub(crate) fn normalize_disconnect_type(raw: &str) -> String {
    let lower = raw.to_ascii_lowercase();
    let mapped = match lower.as_str() {
        "transfer.conference" => "conference_transfer",
        "transfer.consult" => "consult_transfer",
        "transfer.forward" => "forward_transfer",
        "transfer.noanswer" => "no_answer_transfer",
        "transfer.notavailable" => "not_available_transfer",
        "transfer.dnd" | "transfer.donotdisturb" => "dnd_transfer",
        "endpoint.dnd" | "endpoint.donotdisturb" => "dnd_endpoint",
        other => return other.replace('.', "_"),
    };
    mapped.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TopicKind {
    UserEnd,
    Acw,
    Wrapup,
    Ignored,
}

impl TopicKind {
    fn as_str(self) -> &'static str {
        match self {
            TopicKind::UserEnd => "user.end",
            TopicKind::Acw => "acw",
            TopicKind::Wrapup => "wrapup",
            TopicKind::Ignored => "ignored",
        }
    }
}

/// Conversation detail-event suffixes. Only the first three carry work; the rest are documented topics an
/// EventBridge rule or subscription may also deliver, accepted and ignored.
const SUFFIXES: [(&str, TopicKind); 17] = [
    (".user.end", TopicKind::UserEnd),
    (".acw", TopicKind::Acw),
    (".wrapup", TopicKind::Wrapup),
    (".customer.end", TopicKind::Ignored),
    (".acd.end", TopicKind::Ignored),
    (".acd.start", TopicKind::Ignored),
    (".user.start", TopicKind::Ignored),
    (".customer.start", TopicKind::Ignored),
    (".flow.start", TopicKind::Ignored),
    (".flow.end", TopicKind::Ignored),
    (".flow.outcome", TopicKind::Ignored),
    (".voicemail.start", TopicKind::Ignored),
    (".voicemail.end", TopicKind::Ignored),
    (".attributes", TopicKind::Ignored),
    (".contact", TopicKind::Ignored),
    (".outbound", TopicKind::Ignored),
    (".attribute", TopicKind::Ignored),
];

/// Whether `topic` (concrete, `v2.detail.events.conversation.<id>.user.end`) is an instance of `pattern` (an
/// EventBridge `detail-type`, `v2.detail.events.conversation.{id}.user.end`): the same segments, where the
/// pattern's `{id}` stands for any one non-empty segment.
pub fn topic_matches_pattern(topic: &str, pattern: &str) -> bool {
    let mut topic_segments = topic.split('.');
    let mut pattern_segments = pattern.split('.');
    loop {
        match (topic_segments.next(), pattern_segments.next()) {
            (None, None) => return true,
            (Some(t), Some("{id}")) if !t.is_empty() => {}
            (Some(t), Some(p)) if t == p => {}
            _ => return false,
        }
    }
}

/// `v2.detail.events.conversation.{id}.<suffix>` → (id, kind).
fn classify_topic(topic: &str) -> Result<(Option<&str>, TopicKind), EventError> {
    let unsupported = || EventError::UnsupportedTopic { topic: bounded(topic) };
    let rest = topic.strip_prefix(TOPIC_PREFIX).ok_or_else(unsupported)?;
    for (suffix, kind) in SUFFIXES {
        if let Some(id) = rest.strip_suffix(suffix) {
            if id.is_empty() || id.contains('.') {
                return Err(unsupported());
            }
            return Ok((Some(id), kind));
        }
    }
    Err(unsupported())
}

fn leg_facts(body: &Map<String, Value>, ended_at: Timestamp) -> Result<LegFacts, EventError> {
    let (media, channel) = match body.get("mediaType").and_then(Value::as_str).map(str::to_ascii_uppercase).as_deref() {
        Some("VOICE") => (Some("calls"), Channel::Voice),
        Some("CALLBACK") => (Some("callbacks"), Channel::Callback),
        Some("EMAIL") => (Some("emails"), Channel::Email),
        Some("MESSAGE") => (Some("messages"), Channel::Message),
        // These media have a wrap-up write path but no channel of their own.
        Some("COBROWSE") => (Some("cobrowsesessions"), Channel::Other),
        Some("SCREENSHARE") => (Some("screenshares"), Channel::Other),
        Some("VIDEO") => (Some("videos"), Channel::Other),
        // Web chat v1 was retired; there is no chat write path.
        Some("CHAT") => (None, Channel::Chat),
        _ => (None, Channel::Other),
    };
    let direction = match body.get("direction").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
        Some("inbound") => Direction::Inbound,
        Some("outbound") => Direction::Outbound,
        _ => Direction::Unknown,
    };
    Ok(LegFacts {
        platform: Some(Platform::Genesys),
        communication_id: id_field(body, "sessionId", "eventBody.sessionId")?,
        media: media.map(str::to_string),
        channel: Some(channel),
        direction,
        queue_id: id_field(body, "queueId", "eventBody.queueId")?,
        queue_name: None,
        user_id: id_field(body, "userId", "eventBody.userId")?,
        disconnect_type: string_field(body, "disconnectType").map(|d| d.to_ascii_lowercase()),
        talk_ms: body.get("interactingDurationMs").and_then(as_u64),
        hold_ms: body.get("heldDurationMs").and_then(as_u64),
        ended_at: Some(ended_at),
        acw_timeout_ms: ["wrapupTimeoutMs", "acwTimeoutMs"].iter().find_map(|k| body.get(*k).and_then(as_u64)),
        acw: string_field(body, "wrapupPrompt").and_then(|p| crate::genesys::model::acw_policy(&p)),
        acw_estimate_ms: None,
        campaign_id: id_field(body, "outboundCampaignId", "eventBody.outboundCampaignId")?,
        attributes: Default::default(),
    })
}

fn invalid(field: &'static str, reason: &str) -> EventError {
    EventError::InvalidField { field, reason: reason.to_string() }
}

/// A bounded copy of an untrusted string for error messages.
fn bounded(s: &str) -> String {
    if s.chars().count() <= MAX_ID_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_ID_CHARS).collect();
        t.push('…');
        t
    }
}

pub(crate) fn check_id<'a>(id: &'a str, field: &'static str) -> Result<&'a str, EventError> {
    if id.chars().count() > MAX_ID_CHARS {
        return Err(invalid(field, "too long"));
    }
    if id.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(id)
}

/// An id field: absent, null or empty → `None`; a non-string or a hostile value → error.
pub(crate) fn id_field(
    body: &Map<String, Value>,
    key: &str,
    field: &'static str,
) -> Result<Option<String>, EventError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(check_id(s, field)?.to_string())),
        Some(_) => Err(invalid(field, "not a string")),
    }
}

/// A free-text field: a non-empty string, else `None`.
pub(crate) fn string_field(body: &Map<String, Value>, key: &str) -> Option<String> {
    body.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
}

pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    as_i64(v).and_then(|i| u64::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn systems() -> HashSet<String> {
        ["7fb334b0-0e9e-11e4-9191-0800200c9a66".to_string()].into_iter().collect()
    }

    fn envelope(suffix: &str, body: Value) -> Value {
        json!({
            "version": "0",
            "id": "4cbedb0f-4dfd-4c8e-9e57-0acded092527",
            "detail-type": format!("v2.detail.events.conversation.{{id}}.{suffix}"),
            "source": "aws.partner/genesys.com/cloud/org/suffix",
            "account": "123456789",
            "time": "2021-06-25T15:11:52Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "topicName": format!("v2.detail.events.conversation.c-1.{suffix}"),
                "version": "2",
                "eventBody": body,
                "metadata": { "CorrelationId": "corr-1" },
                "timestamp": "2021-06-25T15:11:52.435Z"
            }
        })
    }

    fn user_end_body() -> Value {
        json!({
            "eventTime": 1_765_551_750_107_i64, "conversationId": "c-1", "participantId": "p-1", "sessionId": "s-1",
            "disconnectType": "CONSULT_TRANSFER", "mediaType": "VOICE", "direction": "INBOUND", "provider": "Edge",
            "userId": "u-1", "queueId": "q-1", "divisionId": "d-1",
            "interactingDurationMs": 125_000, "heldDurationMs": 5_000, "alertingDurationMs": 3_000
        })
    }

    fn parse(v: &Value) -> Result<Vec<Parsed>, EventError> {
        parse_eventbridge("prod", v.to_string().as_bytes(), &systems())
    }

    fn one_event(v: &Value) -> Event {
        match parse(v).unwrap().pop().unwrap() {
            Parsed::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[test]
    fn user_end_becomes_leg_ended_with_facts() {
        let e = one_event(&envelope("user.end", user_end_body()));
        assert_eq!(e.leg, LegKey::new("prod", "c-1", "p-1"));
        assert_eq!(e.dedupe_key, "genesys:user.end:c-1:p-1:1765551750107");
        assert_eq!(e.correlation_id.as_deref(), Some("corr-1"));
        assert_eq!(e.occurred_at, Timestamp::from_millisecond(1_765_551_750_107).unwrap());
        let EventKind::LegEnded { facts } = e.kind else { panic!("not leg_ended") };
        assert_eq!(facts.platform, Some(Platform::Genesys));
        assert_eq!(facts.communication_id.as_deref(), Some("s-1"));
        assert_eq!(facts.media.as_deref(), Some("calls"));
        assert_eq!(facts.channel, Some(Channel::Voice));
        assert_eq!(facts.direction, Direction::Inbound);
        assert_eq!(facts.queue_id.as_deref(), Some("q-1"));
        assert_eq!(facts.user_id.as_deref(), Some("u-1"));
        assert_eq!(facts.disconnect_type.as_deref(), Some("consult_transfer"));
        assert_eq!(facts.talk_ms, Some(125_000));
        assert_eq!(facts.hold_ms, Some(5_000));
        assert_eq!(facts.ended_at, Some(e.occurred_at));
        assert_eq!(facts.acw_timeout_ms, None);
    }

    #[test]
    fn media_types_map_to_write_paths_and_channels() {
        for (media_type, media, channel) in [
            ("VOICE", Some("calls"), Channel::Voice),
            ("CALLBACK", Some("callbacks"), Channel::Callback),
            ("EMAIL", Some("emails"), Channel::Email),
            ("MESSAGE", Some("messages"), Channel::Message),
            ("SCREENMONITORING", None, Channel::Other),
        ] {
            let mut body = user_end_body();
            body["mediaType"] = json!(media_type);
            body["disconnectType"] = json!("PEER");
            body["wrapupTimeoutMs"] = json!(30000);
            let EventKind::LegEnded { facts } = one_event(&envelope("user.end", body)).kind else { panic!() };
            assert_eq!((facts.media.as_deref(), facts.channel), (media, Some(channel)), "{media_type}");
            assert_eq!(facts.disconnect_type.as_deref(), Some("peer"));
            assert_eq!(facts.acw_timeout_ms, Some(30000));
        }
    }

    #[test]
    fn acw_and_wrapup_become_code_recorded_and_stay_distinct() {
        let body = json!({"eventTime": 1000, "conversationId": "c-1", "participantId": "p-1", "userId": "u-1",
                          "queueId": "q-1", "wrapupCode": "code-1", "wrapupNotes": "hi", "wrapupDurationMs": 39000});
        let acw = one_event(&envelope("acw", body.clone()));
        let wrapup = one_event(&envelope("wrapup", body));
        assert_eq!(
            acw.kind,
            EventKind::CodeRecorded { code_id: Some("code-1".into()), notes: Some("hi".into()), system: false }
        );
        assert_eq!(acw.kind, wrapup.kind);
        assert_ne!(acw.dedupe_key, wrapup.dedupe_key);
    }

    #[test]
    fn system_codes_are_flagged() {
        for code in ["ININ-WRAP-UP-TIMEOUT", "7fb334b0-0e9e-11e4-9191-0800200c9a66"] {
            let body = json!({"eventTime": 1000, "conversationId": "c-1", "participantId": "p-1", "wrapupCode": code});
            let EventKind::CodeRecorded { system, .. } = one_event(&envelope("acw", body)).kind else { panic!() };
            assert!(system, "{code}");
        }
        let skipped = json!({"eventTime": 1000, "conversationId": "c-1", "participantId": "p-1"});
        assert_eq!(
            one_event(&envelope("wrapup", skipped)).kind,
            EventKind::CodeRecorded { code_id: None, notes: None, system: false }
        );
    }

    #[test]
    fn customer_and_acd_end_are_ignored() {
        for suffix in ["customer.end", "acd.end"] {
            let parsed = parse(&envelope(suffix, json!({"eventTime": 1}))).unwrap();
            assert!(matches!(&parsed[..], [Parsed::Ignored { .. }]), "{suffix}");
        }
    }

    #[test]
    fn unknown_topics_are_unsupported() {
        let mut v = envelope("acw", json!({}));
        for (topic, pattern) in [
            ("v2.users.u-1.conversations", "v2.users.{id}.conversations"),
            ("v2.detail.events.conversation.c-1.something.new", "v2.detail.events.conversation.{id}.something.new"),
        ] {
            v["detail"]["topicName"] = json!(topic);
            v["detail-type"] = json!(pattern);
            assert!(matches!(parse(&v), Err(EventError::UnsupportedTopic { .. })), "{topic}");
        }
    }

    #[test]
    fn a_bare_notification_frame_is_accepted() {
        let frame = json!({"topicName": "v2.detail.events.conversation.c-9.acw", "version": "2",
                           "eventBody": {"eventTime": 5, "participantId": "p-9", "wrapupCode": "x"},
                           "metadata": {"CorrelationId": "m"}});
        let e = one_event(&frame);
        // conversationId missing from the body: taken from the concrete topic.
        assert_eq!(e.leg, LegKey::new("prod", "c-9", "p-9"));
    }

    #[test]
    fn batches_parse_in_order_and_fail_with_the_index() {
        let batch = json!([envelope("user.end", user_end_body()), envelope("customer.end", json!({}))]);
        let parsed = parse(&batch).unwrap();
        assert!(matches!(&parsed[..], [Parsed::Event(_), Parsed::Ignored { .. }]));
        // The topic names conversation c-1, so what this body lacks is the participant.
        let bad = json!([envelope("user.end", user_end_body()), envelope("acw", json!({"eventTime": 1}))]);
        assert_eq!(
            parse(&bad).unwrap_err(),
            EventError::InBatch {
                index: 1,
                source: Box::new(EventError::MissingField { field: "eventBody.participantId" })
            }
        );
        let too_many = Value::Array(vec![json!({}); MAX_BATCH + 1]);
        assert!(matches!(parse(&too_many), Err(EventError::TooManyEvents { .. })));
        assert!(parse(&json!([])).unwrap().is_empty());
    }

    #[test]
    fn malformed_input_gets_a_clear_error() {
        let s = systems();
        assert!(matches!(parse_eventbridge("p", b"{not json", &s), Err(EventError::MalformedJson(_))));
        assert_eq!(parse_eventbridge("p", b"42", &s), Err(EventError::NotAnEvent));
        assert_eq!(parse_eventbridge("p", b"{}", &s), Err(EventError::NotAnEvent));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(parse_eventbridge("p", &big, &s), Err(EventError::TooLarge { .. })));
        let mut v = envelope("user.end", user_end_body());
        let mut iso = envelope("user.end", user_end_body());
        iso["detail"]["eventBody"]["eventTime"] = json!("2025-12-12T15:02:30.107Z");
        assert_eq!(one_event(&iso).dedupe_key, "genesys:user.end:c-1:p-1:1765551750107");
        v["detail"]["eventBody"]["eventTime"] = json!("yesterday");
        assert!(matches!(parse(&v), Err(EventError::InvalidField { field: "eventBody.eventTime", .. })));
        v["detail"]["eventBody"] = json!([1, 2]);
        assert!(matches!(parse(&v), Err(EventError::InvalidField { field: "eventBody", .. })));
        v["detail"].as_object_mut().unwrap().remove("eventBody");
        assert_eq!(parse(&v), Err(EventError::MissingField { field: "eventBody" }));
        let mut w = envelope("user.end", user_end_body());
        w["detail"]["eventBody"]["participantId"] = json!(17);
        assert!(matches!(parse(&w), Err(EventError::InvalidField { field: "eventBody.participantId", .. })));
    }

    #[test]
    fn a_detail_type_that_names_another_topic_is_refused() {
        let mut v = envelope("user.end", user_end_body());
        v["detail-type"] = json!("v2.detail.events.conversation.{id}.acw");
        assert_eq!(parse(&v), Err(invalid("detail-type", "names another topic than detail.topicName")));
        v["detail-type"] = json!("v2.routing.queues.{id}.conversations");
        assert!(matches!(parse(&v), Err(EventError::InvalidField { field: "detail-type", .. })));
        v["detail-type"] = json!(7);
        assert!(matches!(parse(&v), Err(EventError::InvalidField { field: "detail-type", .. })));
        // The concrete topic as detail-type, or none at all, agree.
        v["detail-type"] = json!("v2.detail.events.conversation.c-1.user.end");
        assert!(parse(&v).is_ok());
        v.as_object_mut().unwrap().remove("detail-type");
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn a_topic_naming_another_conversation_than_the_body_is_refused() {
        let mut v = envelope("user.end", user_end_body());
        v["detail"]["topicName"] = json!("v2.detail.events.conversation.c-2.user.end");
        assert!(matches!(parse(&v), Err(EventError::InvalidField { field: "detail.topicName", .. })));
    }

    #[test]
    fn topics_match_patterns_segment_by_segment() {
        let m = topic_matches_pattern;
        assert!(m("v2.detail.events.conversation.c.acw", "v2.detail.events.conversation.{id}.acw"));
        assert!(m("v2.routing.queues.q.conversations.calls", "v2.routing.queues.{id}.conversations.calls"));
        assert!(!m("v2.detail.events.conversation.c.acw", "v2.detail.events.conversation.{id}.acw.x"));
        assert!(!m("v2.detail.events.conversation..acw", "v2.detail.events.conversation.{id}.acw"));
        assert!(!m("v2.detail.events.conversation.a.b.acw", "v2.detail.events.conversation.{id}.acw"));
        assert!(!m("v2.detail.events.conversation.c.acw", "v2.detail.events.conversation.{id}.wrapup"));
    }

    #[test]
    fn redeliveries_share_a_dedupe_key() {
        let a = one_event(&envelope("user.end", user_end_body()));
        let mut again = envelope("user.end", user_end_body());
        again["id"] = json!("another-eventbridge-id");
        again["detail"]["metadata"]["CorrelationId"] = json!("corr-2");
        assert_eq!(a.dedupe_key, one_event(&again).dedupe_key);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)),
            "[a-zA-Z0-9.{}_-]{0,40}".prop_map(Value::String),
            prop_oneof![
                Just("v2.detail.events.conversation.c-1.user.end"),
                Just("v2.detail.events.conversation.c-1.acw"),
                Just("v2.detail.events.conversation.{id}.wrapup"),
                Just("ININ-WRAP-UP-TIMEOUT"),
            ]
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("detail".to_string()),
                        Just("detail-type".to_string()),
                        Just("topicName".to_string()),
                        Just("eventBody".to_string()),
                        Just("metadata".to_string()),
                        Just("eventTime".to_string()),
                        Just("conversationId".to_string()),
                        Just("participantId".to_string()),
                        Just("mediaType".to_string()),
                        Just("wrapupCode".to_string()),
                        "[a-z]{1,8}",
                    ],
                    inner,
                    0..8
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_eventbridge("p", &bytes, &systems());
        }

        #[test]
        fn random_json_never_panics(v in arb_json()) {
            let _ = parse_eventbridge("p", v.to_string().as_bytes(), &systems());
        }

        #[test]
        fn random_event_bodies_never_panic(body in arb_json(), suffix in prop_oneof![Just("user.end"), Just("acw"), Just("wrapup")]) {
            let _ = parse(&envelope(suffix, body.clone()));
            let _ = parse(&json!([envelope(suffix, body)]));
        }
    }
}
