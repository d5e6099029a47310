//! CXone signals → `wrapup_core::Event`.
//!
//! Three sources feed the same events, so the service does not care how ACW was detected:
//!
//! | source                                                     | signal                                   | event        |
//! |------------------------------------------------------------|------------------------------------------|--------------|
//! | `get-next-event` body ([`parse_next_event`])               | contact event `Status=Disconnected`, `FinalState=False` | `LegEnded` (ACW opened) |
//! |                                                            | contact event `Disconnected`, `FinalState=True` | `LegClosedUnread` |
//! | `contacts/active` + `agents/states` ([`from_realtime`])    | agent `isACW` on a contact               | `LegEnded`   |
//! |                                                            | contact record in state `EndContact`     | `LegClosedUnread` |
//! | `contacts/completed` ([`from_completed`])                  | `primaryDispositionId` set               | `CodeRecorded` + `LegClosed` |
//! |                                                            | no disposition                           | `LegClosed`  |
//!
//! Contact event types: `CallContactEvent`, `WorkItemContactEvent`, `ChatContactEvent`, `EmailContactEvent`,
//! `DigitalContactEvent`, and `VoiceMailContactEvent` (which ends with `Discarded`). Every other event type, and
//! contact events in any other status, are ignored (counted, not errors).
//!
//! The leg is `(connection, masterContactId, contactId)`; the master defaults to the contact when absent (a contact
//! never transferred is its own master). Dedupe keys are `cxone:{kind}:{contactId}:{timestamp}` with the
//! platform's own timestamp of the change, so a redelivered event or a re-polled record collapses.
//!
//! Event bodies are untrusted: CXone sends every value as a string (`"True"`, `"1507"`), field names in
//! PascalCase. The parser reads `serde_json::Value` through [`super::model::fields`], checks sizes and counts first,
//! and never panics (a proptest feeds it random bytes and JSON; `fuzz/fuzz_targets/cxone_events.rs` fuzzes it).

use super::model::fields::{boolean, int, text};
use super::model::{AgentStateRecord, ContactRecord};
use jiff::Timestamp;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use wrapup_core::catalog::Catalog;
use wrapup_core::{Channel, Direction, Event, EventKind, LegFacts, LegKey, Platform};

/// Largest `get-next-event` body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most events read from one body.
pub const MAX_EVENTS: usize = 1000;

/// ACW timeouts by skill id (ms), for skills whose ACW the platform ends by itself. See [`acw_timeouts`].
pub type AcwTimeouts = HashMap<String, u64>;

/// The ACW timeouts of a catalog's skills.
pub fn acw_timeouts(catalog: &Catalog) -> AcwTimeouts {
    catalog.queues.iter().filter_map(|q| Some((q.id.clone(), q.acw_timeout_ms?))).collect()
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("the event body is {size} bytes, more than the {limit} accepted")]
    TooLarge { size: usize, limit: usize },
    #[error("the event body is not JSON: {0}")]
    NotJson(String),
    #[error("the event body is not a get-next-event answer (an object with an events array)")]
    NotAnAnswer,
}

/// A parsed `get-next-event` answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionBatch {
    /// The session id to use from now on, if the body carried one.
    pub session_id: Option<String>,
    pub events: Vec<Event>,
    /// Events read and deliberately ignored (other types, other statuses, unusable ids).
    pub ignored: usize,
}

/// The channel of a CXone media type id (1 email, 3 chat, 4 voice, 5 voice mail, 6 work item, 7 SMS, 8 social,
/// 9 digital).
pub fn channel_of_media(media_type_id: i64) -> Channel {
    match media_type_id {
        1 => Channel::Email,
        3 => Channel::Chat,
        4 => Channel::Voice,
        6 => Channel::WorkItem,
        7..=9 => Channel::Message,
        _ => Channel::Other,
    }
}

/// Media type id of a contact event type.
fn media_of_event_type(t: &str) -> Option<i64> {
    Some(match t {
        "CallContactEvent" => 4,
        "WorkItemContactEvent" => 6,
        "ChatContactEvent" => 3,
        "EmailContactEvent" => 1,
        "VoiceMailContactEvent" => 5,
        "DigitalContactEvent" => 9,
        _ => return None,
    })
}

fn dedupe(kind: &str, contact_id: i64, at: Option<&str>) -> String {
    match at {
        Some(at) => format!("cxone:{kind}:{contact_id}:{at}"),
        None => format!("cxone:{kind}:{contact_id}"),
    }
}

fn event(connection: &str, master: i64, contact: i64, key: String, at: Timestamp, kind: EventKind) -> Event {
    Event {
        leg: LegKey::new(connection, master.to_string(), contact.to_string()),
        dedupe_key: key,
        occurred_at: at,
        correlation_id: None,
        kind,
    }
}

/// Parses a `get-next-event` 200 body of `agent_id`'s session. `now` stands in for events without a timestamp.
pub fn parse_next_event(
    connection: &str,
    agent_id: Option<i64>,
    body: &[u8],
    acw: &AcwTimeouts,
    now: Timestamp,
) -> Result<SessionBatch, EventError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(EventError::TooLarge { size: body.len(), limit: MAX_BODY_BYTES });
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| EventError::NotJson(e.to_string()))?;
    parse_next_event_value(connection, agent_id, &value, acw, now)
}

/// [`parse_next_event`] on an already decoded body.
pub fn parse_next_event_value(
    connection: &str,
    agent_id: Option<i64>,
    value: &Value,
    acw: &AcwTimeouts,
    now: Timestamp,
) -> Result<SessionBatch, EventError> {
    let obj = value.as_object().ok_or(EventError::NotAnAnswer)?;
    let events = match obj.get("events").or_else(|| obj.get("Events")) {
        Some(Value::Array(a)) => a.as_slice(),
        None | Some(Value::Null) => &[],
        Some(_) => return Err(EventError::NotAnAnswer),
    };
    let mut batch =
        SessionBatch { session_id: text(obj, &["sessionId"]).filter(|s| s.len() <= 512), ..SessionBatch::default() };
    // An AgentState event in the same answer tells how long this ACW lasts (`AcwTimeout`, 0 when a disposition
    // is required), which beats the skill's configured value.
    let acw_timeout_from_agent = events.iter().take(MAX_EVENTS).filter_map(Value::as_object).find_map(|e| {
        (text(e, &["Type"]).as_deref() == Some("AgentState") && boolean(e, &["IsAcw"]) == Some(true))
            .then(|| int(e, &["AcwTimeout"]))
            .flatten()
    });
    for e in events.iter().take(MAX_EVENTS) {
        match e.as_object().and_then(|o| contact_event(connection, agent_id, o, acw, acw_timeout_from_agent, now)) {
            Some(ev) => batch.events.push(ev),
            None => batch.ignored += 1,
        }
    }
    batch.ignored += events.len().saturating_sub(MAX_EVENTS);
    Ok(batch)
}

/// One contact event → `LegEnded` / `LegClosedUnread`, or `None` (ignored).
fn contact_event(
    connection: &str,
    agent_id: Option<i64>,
    o: &Map<String, Value>,
    acw: &AcwTimeouts,
    acw_timeout_from_agent: Option<i64>,
    now: Timestamp,
) -> Option<Event> {
    let ty = text(o, &["Type"])?;
    let media = media_of_event_type(&ty)?;
    let status = text(o, &["Status"])?;
    let ended = status.eq_ignore_ascii_case("Disconnected") || (media == 5 && status.eq_ignore_ascii_case("Discarded"));
    if !ended {
        return None;
    }
    let contact_id = int(o, &["ContactID", "ContactId"]).filter(|i| *i > 0)?;
    let master = int(o, &["MasterID", "MasterId", "MasterContactId"]).filter(|i| *i > 0).unwrap_or(contact_id);
    let at_text = text(o, &["LastStateChangeTimeUTC", "LastStateChangeTime"]).filter(|s| s.len() <= 64);
    let at = at_text.as_deref().and_then(super::model::fields::parse_timestamp);
    // Unreadable timestamps are left out of the key, so the key stays stable across redeliveries.
    let key_at = at.map(|t| t.to_string());
    let occurred_at = at.unwrap_or(now);
    // FinalState missing is read as final: only an explicit "False" opens a window we may write into.
    if boolean(o, &["FinalState"]).unwrap_or(true) {
        let key = dedupe("leg_closed", contact_id, key_at.as_deref());
        // The feed says the contact ended, not whether it was dispositioned first: the code is read before the leg
        // is finished.
        return Some(event(connection, master, contact_id, key, occurred_at, EventKind::LegClosedUnread));
    }
    let skill = int(o, &["SkillId", "Skill"]).filter(|i| *i > 0).map(|i| i.to_string());
    let acw_timeout_ms = acw_timeout_from_agent
        .map(|s| u64::try_from(s).unwrap_or(0).saturating_mul(1000))
        .filter(|ms| *ms > 0)
        .or_else(|| skill.as_ref().and_then(|s| acw.get(s).copied()));
    let direction = match boolean(o, &["IsInbound"]) {
        Some(true) => Direction::Inbound,
        Some(false) => Direction::Outbound,
        None => Direction::Unknown,
    };
    let disconnect = text(o, &["DisconnectCode"]).filter(|d| !d.eq_ignore_ascii_case("NA"));
    let mut attributes = BTreeMap::new();
    for (field, name) in [
        ("CallType", "call_type"),
        ("ANI", "ani"),
        ("DNIS", "dnis"),
        ("AllowDispositions", "allow_dispositions"),
        ("WorkItemType", "work_item_type"),
        ("WorkItemId", "work_item_id"),
        ("ChannelType", "channel_type"),
        ("DFOContactId", "dfo_contact_id"),
        ("ExternalId", "external_id"),
    ] {
        if let Some(v) = text(o, &[field]).filter(|v| v.len() <= 256) {
            attributes.insert(name.to_string(), v);
        }
    }
    let facts = LegFacts {
        platform: Some(Platform::Cxone),
        media: Some(media.to_string()),
        channel: Some(channel_of_media(media)),
        direction,
        queue_id: skill,
        user_id: int(o, &["AgentId", "AgentID"]).filter(|i| *i > 0).or(agent_id).map(|i| i.to_string()),
        disconnect_type: disconnect.map(|d| d.to_ascii_lowercase()),
        ended_at: Some(occurred_at),
        acw_timeout_ms,
        attributes,
        ..LegFacts::default()
    };
    let key = dedupe("leg_ended", contact_id, key_at.as_deref());
    Some(event(connection, master, contact_id, key, occurred_at, EventKind::LegEnded { facts: Box::new(facts) }))
}

fn facts_of_record(
    r: &ContactRecord,
    agent_id: Option<i64>,
    acw: &AcwTimeouts,
    ended_at: Option<Timestamp>,
) -> LegFacts {
    let skill = r.skill_id.map(|s| s.to_string());
    LegFacts {
        platform: Some(Platform::Cxone),
        media: r.media_type_id.map(|m| m.to_string()),
        channel: r.media_type_id.map(channel_of_media),
        direction: match r.is_outbound {
            Some(true) => Direction::Outbound,
            Some(false) => Direction::Inbound,
            None => Direction::Unknown,
        },
        acw_timeout_ms: skill.as_ref().and_then(|s| acw.get(s).copied()),
        queue_id: skill,
        queue_name: r.skill_name.clone(),
        user_id: r.agent_id.or(agent_id).map(|a| a.to_string()),
        ended_at,
        campaign_id: r.campaign_id.map(|c| c.to_string()),
        ..LegFacts::default()
    }
}

fn ts(s: Option<&str>) -> Option<Timestamp> {
    s.and_then(super::model::fields::parse_timestamp)
}

/// Real-time polling results → events: an agent in ACW on a contact (`agents/states` `isACW` with `contactId`) is
/// that contact's `LegEnded` (facts from its `contacts/active` record when one is at hand in `known`); an active
/// record in state `EndContact` is `LegClosedUnread` (the code it ended with is read before the leg is finished).
pub fn from_realtime(
    connection: &str,
    known: &HashMap<i64, ContactRecord>,
    contacts: &[ContactRecord],
    states: &[AgentStateRecord],
    acw: &AcwTimeouts,
    now: Timestamp,
) -> Vec<Event> {
    let mut out = Vec::new();
    for r in contacts {
        if r.state_name.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("EndContact")) {
            let at = ts(r.last_update_time.as_deref());
            let key = dedupe("leg_closed", r.contact_id, at.map(|t| t.to_string()).as_deref());
            out.push(event(
                connection,
                r.master_contact_id,
                r.contact_id,
                key,
                at.unwrap_or(now),
                EventKind::LegClosedUnread,
            ));
        }
    }
    for s in states {
        let (true, Some(contact_id)) = (s.is_acw, s.contact_id) else { continue };
        let record = known.get(&contact_id).or_else(|| contacts.iter().find(|c| c.contact_id == contact_id));
        let fallback = ContactRecord {
            contact_id,
            master_contact_id: contact_id,
            agent_id: Some(s.agent_id),
            skill_id: s.skill_id,
            ..ContactRecord::default()
        };
        let r = record.unwrap_or(&fallback);
        // ACW started when the agent's state changed to it.
        let at = ts(s.start_date.as_deref()).or_else(|| ts(s.last_update_time.as_deref()));
        let mut facts = facts_of_record(r, Some(s.agent_id), acw, Some(at.unwrap_or(now)));
        if facts.queue_id.is_none() {
            facts.queue_id = s.skill_id.map(|k| k.to_string());
            facts.acw_timeout_ms = facts.queue_id.as_ref().and_then(|q| acw.get(q).copied());
        }
        if let Some(reason) = &s.out_state_description {
            facts.attributes.insert("acw_state".into(), reason.clone());
        }
        let key = dedupe("leg_ended", contact_id, at.map(|t| t.to_string()).as_deref());
        out.push(event(
            connection,
            r.master_contact_id,
            contact_id,
            key,
            at.unwrap_or(now),
            EventKind::LegEnded { facts: Box::new(facts) },
        ));
    }
    out
}

/// Completed contacts → events: `CodeRecorded` for a record with a primary disposition, then `LegClosed` for
/// every record (the contact is over).
pub fn from_completed(connection: &str, records: &[ContactRecord], now: Timestamp) -> Vec<Event> {
    let mut out = Vec::new();
    for r in records {
        let at = ts(r.last_update_time.as_deref());
        let at_key = at.map(|t| t.to_string());
        let occurred = at.unwrap_or(now);
        if let Some(code) = r.primary_disposition_id {
            out.push(event(
                connection,
                r.master_contact_id,
                r.contact_id,
                dedupe("code_recorded", r.contact_id, at_key.as_deref()),
                occurred,
                EventKind::CodeRecorded {
                    code_id: Some(code.to_string()),
                    notes: r.disposition_notes.clone(),
                    // CXone stamps no system code when ACW times out: a recorded disposition is a person's (or a
                    // writer's) choice.
                    system: false,
                },
            ));
        }
        out.push(event(
            connection,
            r.master_contact_id,
            r.contact_id,
            dedupe("leg_closed", r.contact_id, at_key.as_deref()),
            occurred,
            EventKind::LegClosed,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn now() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn call_event(status: &str, final_state: &str) -> Value {
        json!({"Type":"CallContactEvent","ContactID":"1569815","MasterID":"1569800","Status":status,
            "OriginalState":"False","CallType":"Regular","DNIS":"4000010001","ANI":"8013203200","Skill":"1507",
            "IsInbound":"True","StartTimeUTC":"2013-09-11T05:03:24.000Z","LastStateChangeTimeUTC":"2013-09-11T05:05:01.000Z",
            "ScreenPopUrl":"","DisconnectCode":"NA","IsLogging":"False","Timeout":"","AllowDispositions":"True",
            "Label":"","IsLinked":"False","TimeZones":"","FinalState":final_state,"OtherInformation":""})
    }

    fn parse(v: Value) -> SessionBatch {
        let acw: AcwTimeouts = [("1507".to_string(), 120_000)].into();
        parse_next_event("cx", Some(42), v.to_string().as_bytes(), &acw, now()).unwrap()
    }

    #[test]
    fn a_disconnected_contact_that_is_not_final_opens_the_window() {
        let b = parse(json!({"sessionId":"s2","events":[call_event("Disconnected","False")]}));
        assert_eq!(b.session_id.as_deref(), Some("s2"));
        assert_eq!(b.events.len(), 1);
        let e = &b.events[0];
        assert_eq!(e.leg, LegKey::new("cx", "1569800", "1569815"));
        assert_eq!(e.dedupe_key, "cxone:leg_ended:1569815:2013-09-11T05:05:01Z");
        assert_eq!(e.occurred_at.to_string(), "2013-09-11T05:05:01Z");
        let EventKind::LegEnded { facts } = &e.kind else { panic!("{e:?}") };
        assert_eq!(facts.platform, Some(Platform::Cxone));
        assert_eq!(facts.channel, Some(Channel::Voice));
        assert_eq!(facts.queue_id.as_deref(), Some("1507"));
        assert_eq!(facts.user_id.as_deref(), Some("42"));
        assert_eq!(facts.direction, Direction::Inbound);
        assert_eq!(facts.acw_timeout_ms, Some(120_000));
        assert_eq!(facts.disconnect_type, None);
        assert_eq!(facts.attributes.get("ani").map(String::as_str), Some("8013203200"));
    }

    #[test]
    fn the_final_disconnect_closes_the_leg_and_other_statuses_are_ignored() {
        let b = parse(json!({"sessionId":"s3","events":[
            call_event("Disconnected","True"), call_event("Active","False"),
            {"Type":"AgentSessionStart"}, {"Type":"AgentState","CurrentState":"Available"}, 7, null
        ]}));
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].kind, EventKind::LegClosedUnread);
        assert_eq!(b.events[0].dedupe_key, "cxone:leg_closed:1569815:2013-09-11T05:05:01Z");
        assert_eq!(b.ignored, 5);
    }

    #[test]
    fn work_items_and_chats_are_contacts_too_and_the_agent_state_gives_the_acw_timeout() {
        let b = parse(json!({"sessionId":"s4","events":[
            {"Type":"WorkItemContactEvent","ContactID":"9","Status":"Disconnected","FinalState":"False",
             "SkillId":"77","AgentId":"5","LastStateChangeTimeUTC":"2026-01-01T00:00:05Z"},
            {"Type":"ChatContactEvent","ContactID":"10","Status":"Disconnected","FinalState":"False"},
            {"Type":"AgentState","CurrentState":"Unavailable","IsAcw":"True","AcwTimeout":"30"}
        ]}));
        assert_eq!(b.events.len(), 2);
        let EventKind::LegEnded { facts } = &b.events[0].kind else { panic!() };
        assert_eq!(
            (facts.channel, facts.user_id.as_deref(), facts.acw_timeout_ms),
            (Some(Channel::WorkItem), Some("5"), Some(30_000))
        );
        // No timestamp: occurred now, key without a time (still stable).
        assert_eq!(b.events[1].dedupe_key, "cxone:leg_ended:10");
        assert_eq!(b.events[1].leg.conversation, "10");
    }

    #[test]
    fn redelivery_yields_the_same_dedupe_key() {
        let a = parse(json!({"events":[call_event("Disconnected","False")]}));
        let b = parse(json!({"sessionId":"other","events":[call_event("Disconnected","False")]}));
        assert_eq!(a.events[0].dedupe_key, b.events[0].dedupe_key);
        assert_eq!(a.session_id, None);
    }

    #[test]
    fn bodies_that_are_not_answers_are_refused() {
        let acw = AcwTimeouts::new();
        assert!(matches!(parse_next_event("cx", None, b"nope", &acw, now()), Err(EventError::NotJson(_))));
        assert_eq!(parse_next_event("cx", None, b"[]", &acw, now()), Err(EventError::NotAnAnswer));
        assert_eq!(parse_next_event("cx", None, br#"{"events":5}"#, &acw, now()), Err(EventError::NotAnAnswer));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(parse_next_event("cx", None, &big, &acw, now()), Err(EventError::TooLarge { .. })));
    }

    #[test]
    fn an_agent_in_acw_on_a_contact_is_that_contacts_leg_ended() {
        let contact = ContactRecord::from_value(&json!({"contactId": 11, "masterContactId": 10, "agentId": 5,
            "skillId": 1507, "mediaTypeId": 4, "isOutbound": false, "skillName": "Sales"}))
        .unwrap();
        let state = AgentStateRecord::from_value(&json!({"agentId": 5, "agentStateName": "Unavailable",
            "isACW": "True", "contactId": 11, "startDate": "2026-01-01T00:01:00Z", "outStateDescription": "ACW"}))
        .unwrap();
        let ended = ContactRecord::from_value(&json!({"contactId": 12, "stateName": "EndContact",
            "lastUpdateTime": "2026-01-01T00:02:00Z"}))
        .unwrap();
        let acw: AcwTimeouts = [("1507".to_string(), 60_000)].into();
        let known: HashMap<i64, ContactRecord> = [(11, contact)].into();
        let ev = from_realtime("cx", &known, &[ended], &[state], &acw, now());
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].kind, EventKind::LegClosedUnread);
        assert_eq!(ev[0].dedupe_key, "cxone:leg_closed:12:2026-01-01T00:02:00Z");
        assert_eq!(ev[1].leg, LegKey::new("cx", "10", "11"));
        assert_eq!(ev[1].dedupe_key, "cxone:leg_ended:11:2026-01-01T00:01:00Z");
        let EventKind::LegEnded { facts } = &ev[1].kind else { panic!() };
        assert_eq!(facts.queue_name.as_deref(), Some("Sales"));
        assert_eq!(facts.acw_timeout_ms, Some(60_000));
        assert_eq!(facts.direction, Direction::Inbound);
        assert_eq!(facts.channel, Some(Channel::Voice));
    }

    #[test]
    fn completed_contacts_record_the_code_and_close_the_leg() {
        let r = ContactRecord::from_value(
            &json!({"contactId": "20", "masterContactId": "19", "primaryDispositionId": "2896",
            "dispositionNotes": "ok", "lastUpdateTime": "2026-01-01T00:03:00.000Z"}),
        )
        .unwrap();
        let none = ContactRecord::from_value(&json!({"contactId": 21, "primaryDispositionId": 0})).unwrap();
        let ev = from_completed("cx", &[r, none], now());
        assert_eq!(ev.len(), 3);
        assert_eq!(
            ev[0].kind,
            EventKind::CodeRecorded { code_id: Some("2896".into()), notes: Some("ok".into()), system: false }
        );
        assert_eq!(ev[0].dedupe_key, "cxone:code_recorded:20:2026-01-01T00:03:00Z");
        assert_eq!(ev[1].kind, EventKind::LegClosed);
        assert_eq!(ev[2].leg, LegKey::new("cx", "21", "21"));
    }

    #[test]
    fn media_types_map_to_channels() {
        assert_eq!(channel_of_media(4), Channel::Voice);
        assert_eq!(channel_of_media(3), Channel::Chat);
        assert_eq!(channel_of_media(6), Channel::WorkItem);
        assert_eq!(channel_of_media(1), Channel::Email);
        assert_eq!(channel_of_media(8), Channel::Message);
        assert_eq!(channel_of_media(2), Channel::Other);
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            any::<f64>().prop_map(|f| json!(f)),
            prop_oneof![
                Just("True".to_string()),
                Just("False".to_string()),
                Just("Disconnected".to_string()),
                Just("CallContactEvent".to_string()),
                Just("2013-09-11T05:05:01.000Z".to_string()),
                "[0-9]{1,20}",
                ".{0,20}"
            ]
            .prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let keys = prop_oneof![
                Just("Type".to_string()),
                Just("Status".to_string()),
                Just("FinalState".to_string()),
                Just("ContactID".to_string()),
                Just("MasterID".to_string()),
                Just("events".to_string()),
                Just("sessionId".to_string()),
                Just("IsAcw".to_string()),
                Just("AcwTimeout".to_string()),
                Just("LastStateChangeTimeUTC".to_string()),
                "[a-zA-Z]{1,8}"
            ];
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(keys, inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_next_event("cx", Some(1), &bytes, &AcwTimeouts::new(), now());
        }

        #[test]
        fn random_json_never_panics(v in arb_json()) {
            let acw = AcwTimeouts::new();
            let _ = parse_next_event_value("cx", None, &v, &acw, now());
            let wrapped = json!({"sessionId": "s", "events": [v.clone()]});
            let _ = parse_next_event_value("cx", None, &wrapped, &acw, now());
            let contacts: Vec<ContactRecord> = ContactRecord::from_value(&v).into_iter().collect();
            let states: Vec<AgentStateRecord> = AgentStateRecord::from_value(&v).into_iter().collect();
            let _ = from_realtime("cx", &HashMap::new(), &contacts, &states, &acw, now());
            let _ = from_completed("cx", &contacts, now());
        }
    }
}
