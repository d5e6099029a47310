//! Queue conversation topics (`v2.routing.queues.{queueId}.conversations`, and the media variants `.calls`,
//! `.callbacks`, `.emails`, `.messages`) → `wrapup_core::Event`s.
//!
//! These topics carry a whole conversation snapshot (`QueueConversationEventTopicConversation`,
//! `platforms/genesys-cloud.md` §5.2) every time anything in it changes, not a delta. Each snapshot is read as a
//! set of facts per agent participant, and every fact gets a dedupe key that does not depend on which snapshot
//! carried it, so the many snapshots of one conversation collapse in intake:
//!
//! | participant fact                                                              | event                          | dedupe key                              |
//! |-------------------------------------------------------------------------------|--------------------------------|-----------------------------------------|
//! | communication `disconnected`/`terminated` and `wrapupRequired` or ACW `pending` | `LegEnded` (facts as `user.end`) | `genesys:ws.ended:{cid}:{pid}`          |
//! | `wrapup.code` set and not provisional                                         | `CodeRecorded`                 | `genesys:ws.code:{cid}:{pid}:{code}`    |
//! | `afterCallWork.state == "skipped"` (or `wrapupSkipped`) and no code           | `CodeRecorded { code_id: None }` | `genesys:ws.skipped:{cid}:{pid}`      |
//!
//! A code the agent changes later is a new fact (a new key), so `agent_changed` still works. Participants that
//! are not agents, have not ended, or lack the times an event needs produce nothing.
//!
//! The media-variant topics may carry the media-specific model instead (`QueueConversationCallEventTopic…`: the
//! communication's fields on the participant, `user`/`queue` as objects). It is read too, with the topic's media,
//! but it names no communication id, so such a leg has no write path: subscribe to the generic topic to code.

use super::events::{as_i64, id_field, normalize_disconnect_type, string_field, EventError, Parsed};
use super::events::{media_of_path, WRAP_UP_TIMEOUT_CODE};
use jiff::Timestamp;
use serde_json::{Map, Value};
use std::collections::HashSet;
use wrapup_core::{Direction, Event, EventKind, LegFacts, LegKey, Platform};

const PREFIX: &str = "v2.routing.queues.";
/// The communication arrays of a participant, in the order they are searched, with their write-path media.
const COMMUNICATIONS: [&str; 4] = ["calls", "callbacks", "emails", "messages"];
/// Most participants read from one snapshot (a conversation has a handful; this only bounds hostile input).
const MAX_PARTICIPANTS: usize = 256;

/// `v2.routing.queues.{id}.conversations[.calls|.callbacks|.emails|.messages]` → the queue id.
pub fn queue_of_topic(topic: &str) -> Option<&str> {
    let rest = topic.strip_prefix(PREFIX)?;
    let (id, tail) = rest.split_once('.')?;
    let ok = match tail.strip_prefix("conversations") {
        Some("") => true,
        Some(media) => media.strip_prefix('.').is_some_and(|m| COMMUNICATIONS.contains(&m)),
        None => false,
    };
    (ok && !id.is_empty()).then_some(id)
}

/// The media of a media-variant topic (`….conversations.calls` → `calls`); `None` for the generic topic.
pub fn media_of_topic(topic: &str) -> Option<&'static str> {
    queue_of_topic(topic)?;
    let last = topic.rsplit('.').next()?;
    COMMUNICATIONS.into_iter().find(|m| *m == last)
}

/// The topic for a queue (the generic, all-media variant).
pub fn queue_topic(queue_id: &str) -> String {
    format!("{PREFIX}{queue_id}.conversations")
}

/// Parses one snapshot body into zero or more events (see the module docs). `topic_media` is the media of a
/// media-variant topic, whose snapshot may be the media-specific model (participants carrying their communication's
/// fields themselves, `user`/`queue` as objects, no communication id).
pub fn parse_snapshot(
    connection: &str,
    topic_media: Option<&'static str>,
    body: &Map<String, Value>,
    correlation_id: Option<String>,
    system_code_ids: &HashSet<String>,
) -> Result<Vec<Parsed>, EventError> {
    let cid = id_field(body, "id", "eventBody.id")?.ok_or(EventError::MissingField { field: "eventBody.id" })?;
    let participants = match body.get("participants") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(p)) => p,
        Some(_) => {
            return Err(EventError::InvalidField { field: "eventBody.participants", reason: "not an array".into() })
        }
    };
    let mut out = Vec::new();
    for p in participants.iter().take(MAX_PARTICIPANTS) {
        let Some(p) = p.as_object() else { continue };
        let purpose = p.get("purpose").and_then(Value::as_str).map(str::to_ascii_lowercase);
        if !matches!(purpose.as_deref(), Some("agent") | Some("user")) {
            continue;
        }
        let Some(pid) = id_field(p, "id", "eventBody.participants.id")? else { continue };
        let leg = LegKey::new(connection, cid.clone(), pid.clone());
        let event = |dedupe_key: String, occurred_at: Timestamp, kind: EventKind| {
            Parsed::Event(Event {
                leg: leg.clone(),
                dedupe_key,
                occurred_at,
                correlation_id: correlation_id.clone(),
                kind,
            })
        };
        let (media, comm, nested) = communication(p, topic_media);
        let acw_state = comm
            .and_then(|c| c.get("afterCallWork"))
            .and_then(Value::as_object)
            .and_then(|a| a.get("state"))
            .and_then(Value::as_str);
        let comm_state = comm.and_then(|c| c.get("state")).and_then(Value::as_str).map(str::to_ascii_lowercase);
        let ended = matches!(comm_state.as_deref(), Some("disconnected") | Some("terminated"));
        let wrapup_required = p.get("wrapupRequired").and_then(Value::as_bool).unwrap_or(false);

        if ended && (wrapup_required || acw_state == Some("pending")) {
            let ended_at = time(p, "endTime")
                .or_else(|| comm.and_then(|c| time(c, "disconnectedTime")))
                .or_else(|| time(p, "startAcwTime"));
            if let (Some(ended_at), Some(comm)) = (ended_at, comm) {
                let facts = leg_facts(p, comm, nested, media, ended_at)?;
                out.push(event(
                    format!("genesys:ws.ended:{cid}:{pid}"),
                    ended_at,
                    EventKind::LegEnded { facts: Box::new(facts) },
                ));
            }
        }

        let wrapup = p.get("wrapup").and_then(Value::as_object);
        let provisional = wrapup.and_then(|w| w.get("provisional")).and_then(Value::as_bool).unwrap_or(false);
        let code =
            wrapup.and_then(|w| id_field(w, "code", "eventBody.participants.wrapup.code").transpose()).transpose()?;
        let coded_at = || {
            wrapup
                .and_then(|w| time(w, "endTime"))
                .or_else(|| time(p, "endAcwTime"))
                .or_else(|| {
                    comm.and_then(|c| c.get("afterCallWork"))
                        .and_then(Value::as_object)
                        .and_then(|a| time(a, "endTime"))
                })
                .or_else(|| time(p, "endTime"))
        };
        match code {
            Some(code) if !provisional => {
                if let Some(at) = coded_at() {
                    let system = code == WRAP_UP_TIMEOUT_CODE || system_code_ids.contains(&code);
                    let notes = wrapup.and_then(|w| string_field(w, "notes"));
                    out.push(event(
                        format!("genesys:ws.code:{cid}:{pid}:{code}"),
                        at,
                        EventKind::CodeRecorded { code_id: Some(code), notes, system },
                    ));
                }
            }
            Some(_) => {}
            None => {
                let skipped =
                    acw_state == Some("skipped") || p.get("wrapupSkipped").and_then(Value::as_bool) == Some(true);
                if skipped {
                    if let Some(at) = coded_at() {
                        out.push(event(
                            format!("genesys:ws.skipped:{cid}:{pid}"),
                            at,
                            EventKind::CodeRecorded { code_id: None, notes: None, system: false },
                        ));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The participant's communication and its write-path media: the last one of the first non-empty media array
/// (`nested`), or, in the media-specific model, the participant itself with the topic's media.
fn communication<'a>(
    p: &'a Map<String, Value>,
    topic_media: Option<&'static str>,
) -> (Option<&'static str>, Option<&'a Map<String, Value>>, bool) {
    for media in COMMUNICATIONS {
        if let Some(Value::Array(list)) = p.get(media) {
            if let Some(c) = list.iter().rev().find_map(Value::as_object) {
                return (Some(media), Some(c), true);
            }
        }
    }
    if p.contains_key("state") {
        return (topic_media, Some(p), false);
    }
    (topic_media, None, false)
}

/// An id given flat (`userId`) or as an object (`user.id`, the media-specific model).
fn flat_or_nested_id(
    p: &Map<String, Value>,
    flat: &str,
    object: &str,
    field: &'static str,
) -> Result<Option<String>, EventError> {
    match id_field(p, flat, field)? {
        Some(id) => Ok(Some(id)),
        None => match p.get(object).and_then(Value::as_object) {
            Some(o) => id_field(o, "id", field),
            None => Ok(None),
        },
    }
}

fn leg_facts(
    p: &Map<String, Value>,
    comm: &Map<String, Value>,
    nested: bool,
    media: Option<&'static str>,
    ended_at: Timestamp,
) -> Result<LegFacts, EventError> {
    let (media, channel) = media_of_path(media.unwrap_or_default());
    let direction = match comm.get("direction").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
        Some("inbound") => Direction::Inbound,
        Some("outbound") => Direction::Outbound,
        _ => Direction::Unknown,
    };
    let disconnected = time(comm, "disconnectedTime").or_else(|| if nested { None } else { time(comm, "endTime") });
    let talk_ms = match (time(comm, "connectedTime"), disconnected) {
        (Some(from), Some(to)) if to >= from => u64::try_from(to.duration_since(from).as_millis()).ok(),
        _ => None,
    };
    Ok(LegFacts {
        platform: Some(Platform::Genesys),
        // The media-specific model has no communication id (its `id` is the participant's).
        communication_id: if nested { id_field(comm, "id", "eventBody.participants.communication.id")? } else { None },
        media: media.map(str::to_string),
        channel: Some(channel),
        direction,
        queue_id: flat_or_nested_id(p, "queueId", "queue", "eventBody.participants.queueId")?,
        queue_name: None,
        user_id: flat_or_nested_id(p, "userId", "user", "eventBody.participants.userId")?,
        disconnect_type: string_field(comm, "disconnectType").map(|d| normalize_disconnect_type(&d)),
        talk_ms,
        hold_ms: None,
        ended_at: Some(ended_at),
        acw_timeout_ms: p.get("wrapupTimeoutMs").and_then(as_i64).and_then(|i| u64::try_from(i).ok()),
        acw: p.get("wrapupPrompt").and_then(Value::as_str).and_then(crate::genesys::model::acw_policy),
        acw_estimate_ms: None,
        campaign_id: None,
        attributes: Default::default(),
    })
}

/// An RFC 3339 time field (or epoch milliseconds); anything else is treated as absent.
fn time(obj: &Map<String, Value>, key: &str) -> Option<Timestamp> {
    match obj.get(key)? {
        Value::String(s) if s.len() <= 64 => s.parse().ok(),
        v @ Value::Number(_) => as_i64(v).and_then(|ms| Timestamp::from_millisecond(ms).ok()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesys::events::parse_eventbridge;
    use proptest::prelude::*;
    use serde_json::json;
    use wrapup_core::Channel;

    const SYSTEM: &str = "7fb334b0-0e9e-11e4-9191-0800200c9a66";

    fn systems() -> HashSet<String> {
        [SYSTEM.to_string()].into_iter().collect()
    }

    fn agent(state: &str, acw: &str) -> Value {
        json!({
            "id": "p-agent", "purpose": "agent", "userId": "u-1", "queueId": "q-1",
            "wrapupRequired": true, "wrapupPrompt": "mandatory", "wrapupTimeoutMs": 30000,
            "startAcwTime": "2024-05-01T10:05:00.100Z", "endTime": "2024-05-01T10:05:00.100Z",
            "calls": [{"id": "comm-agent", "state": state, "direction": "inbound", "disconnectType": "transfer.consult",
                       "connectedTime": "2024-05-01T10:00:00.100Z", "disconnectedTime": "2024-05-01T10:05:00.100Z",
                       "afterCallWork": {"state": acw, "startTime": "2024-05-01T10:05:00.100Z"}}]
        })
    }

    fn frame(topic: &str, participants: Vec<Value>) -> Value {
        let mut all = vec![
            json!({"id": "p-cust", "purpose": "customer", "queueId": "q-1", "wrapupRequired": false,
                   "endTime": "2024-05-01T10:05:00.000Z",
                   "calls": [{"id": "comm-cust", "state": "terminated", "disconnectType": "endpoint"}]}),
            json!({"id": "p-acd", "purpose": "acd", "queueId": "q-1", "calls": [{"id": "comm-acd", "state": "terminated"}]}),
        ];
        all.extend(participants);
        json!({
            "topicName": topic, "version": "2",
            "eventBody": {"id": "c-1", "participants": all},
            "metadata": {"CorrelationId": "corr-9"}
        })
    }

    fn events(v: &Value) -> Vec<Event> {
        parse_eventbridge("prod", v.to_string().as_bytes(), &systems())
            .unwrap()
            .into_iter()
            .map(|p| match p {
                Parsed::Event(e) => e,
                other => panic!("expected events only, got {other:?}"),
            })
            .collect()
    }

    const TOPIC: &str = "v2.routing.queues.q-1.conversations";

    #[test]
    fn queue_topics_and_media_variants_are_recognised() {
        assert_eq!(queue_of_topic(TOPIC), Some("q-1"));
        for media in ["calls", "callbacks", "emails", "messages"] {
            assert_eq!(queue_of_topic(&format!("{TOPIC}.{media}")), Some("q-1"), "{media}");
        }
        for bad in [
            "v2.routing.queues.q-1.conversations.chats",
            "v2.routing.queues.q-1.conversationsx",
            "v2.routing.queues..conversations",
            "v2.routing.queues.q-1",
            "v2.users.u-1.conversations",
        ] {
            assert_eq!(queue_of_topic(bad), None, "{bad}");
        }
        assert_eq!(queue_topic("q-9"), "v2.routing.queues.q-9.conversations");
    }

    #[test]
    fn an_agent_in_acw_becomes_leg_ended_with_the_user_end_facts() {
        let evs = events(&frame(TOPIC, vec![agent("disconnected", "pending")]));
        assert_eq!(evs.len(), 1, "{evs:?}");
        let e = &evs[0];
        assert_eq!(e.leg, LegKey::new("prod", "c-1", "p-agent"));
        assert_eq!(e.dedupe_key, "genesys:ws.ended:c-1:p-agent");
        assert_eq!(e.correlation_id.as_deref(), Some("corr-9"));
        let at: Timestamp = "2024-05-01T10:05:00.100Z".parse().unwrap();
        assert_eq!(e.occurred_at, at);
        let EventKind::LegEnded { facts } = &e.kind else { panic!("not leg_ended: {e:?}") };
        assert_eq!(facts.platform, Some(Platform::Genesys));
        assert_eq!(facts.communication_id.as_deref(), Some("comm-agent"));
        assert_eq!((facts.media.as_deref(), facts.channel), (Some("calls"), Some(Channel::Voice)));
        assert_eq!(facts.direction, Direction::Inbound);
        assert_eq!(facts.queue_id.as_deref(), Some("q-1"));
        assert_eq!(facts.user_id.as_deref(), Some("u-1"));
        assert_eq!(facts.disconnect_type.as_deref(), Some("consult_transfer"), "same spelling as user.end");
        assert_eq!(facts.acw_timeout_ms, Some(30000));
        assert_eq!(facts.talk_ms, Some(300_000));
        assert_eq!(facts.ended_at, Some(at));
    }

    #[test]
    fn a_connected_agent_or_a_leg_without_wrapup_yields_nothing() {
        assert!(events(&frame(TOPIC, vec![agent("connected", "unknown")])).is_empty());
        let mut no_acw = agent("disconnected", "notApplicable");
        no_acw["wrapupRequired"] = json!(false);
        assert!(events(&frame(TOPIC, vec![no_acw])).is_empty());
        // wrapupRequired absent but the ACW is pending: still a leg to code.
        let mut pending = agent("terminated", "pending");
        pending.as_object_mut().unwrap().remove("wrapupRequired");
        assert_eq!(events(&frame(TOPIC, vec![pending])).len(), 1);
    }

    #[test]
    fn a_final_code_is_recorded_and_repeated_snapshots_share_keys() {
        let mut coded = agent("disconnected", "complete");
        coded["wrapup"] =
            json!({"code": "code-1", "notes": "n", "durationSeconds": 39, "endTime": "2024-05-01T10:05:39.000Z"});
        coded["endAcwTime"] = json!("2024-05-01T10:05:39.000Z");
        let first = events(&frame(&format!("{TOPIC}.calls"), vec![coded.clone()]));
        assert_eq!(first.len(), 2);
        assert!(matches!(first[0].kind, EventKind::LegEnded { .. }));
        assert_eq!(
            first[1].kind,
            EventKind::CodeRecorded { code_id: Some("code-1".into()), notes: Some("n".into()), system: false }
        );
        assert_eq!(first[1].dedupe_key, "genesys:ws.code:c-1:p-agent:code-1");
        assert_eq!(first[1].occurred_at, "2024-05-01T10:05:39Z".parse::<Timestamp>().unwrap());
        let again = events(&frame(TOPIC, vec![coded.clone()]));
        let keys = |v: &[Event]| v.iter().map(|e| e.dedupe_key.clone()).collect::<Vec<_>>();
        assert_eq!(keys(&first), keys(&again));
        // The agent changes the code later: a new fact, a new key.
        coded["wrapup"]["code"] = json!("code-2");
        assert_eq!(events(&frame(TOPIC, vec![coded]))[1].dedupe_key, "genesys:ws.code:c-1:p-agent:code-2");
    }

    #[test]
    fn provisional_codes_are_not_recorded_and_system_codes_are_flagged() {
        let mut provisional = agent("disconnected", "pending");
        provisional["wrapup"] = json!({"code": "code-1", "provisional": true});
        assert_eq!(events(&frame(TOPIC, vec![provisional])).len(), 1, "only leg_ended");
        for code in [SYSTEM, WRAP_UP_TIMEOUT_CODE] {
            let mut timed_out = agent("disconnected", "complete");
            timed_out["wrapup"] = json!({"code": code, "endTime": "2024-05-01T10:05:30.100Z"});
            let evs = events(&frame(TOPIC, vec![timed_out]));
            assert!(matches!(evs[1].kind, EventKind::CodeRecorded { system: true, .. }), "{code}: {evs:?}");
        }
    }

    #[test]
    fn a_skipped_acw_records_no_code() {
        let mut skipped = agent("disconnected", "skipped");
        skipped["endAcwTime"] = json!("2024-05-01T10:05:10.000Z");
        let evs = events(&frame(TOPIC, vec![skipped]));
        assert_eq!(evs.len(), 2);
        assert_eq!(evs[1].kind, EventKind::CodeRecorded { code_id: None, notes: None, system: false });
        assert_eq!(evs[1].dedupe_key, "genesys:ws.skipped:c-1:p-agent");
    }

    #[test]
    fn media_comes_from_the_communication_kind() {
        for (media, channel) in
            [("callbacks", Channel::Callback), ("emails", Channel::Email), ("messages", Channel::Message)]
        {
            let mut a = agent("disconnected", "pending");
            let comm = a["calls"].clone();
            a.as_object_mut().unwrap().remove("calls");
            a[media] = comm;
            let evs = events(&frame(TOPIC, vec![a]));
            let EventKind::LegEnded { facts } = &evs[0].kind else { panic!() };
            assert_eq!((facts.media.as_deref(), facts.channel), (Some(media), Some(channel)));
        }
    }

    #[test]
    fn the_media_specific_model_on_a_media_topic_is_read_too() {
        // `QueueConversationCallEventTopicCallConversation`: the communication's fields on the participant.
        let flat = json!({
            "id": "p-agent", "purpose": "agent", "user": {"id": "u-1"}, "queue": {"id": "q-1"},
            "state": "disconnected", "direction": "outbound", "disconnectType": "endpoint.dnd",
            "connectedTime": "2024-05-01T10:00:00.000Z", "endTime": "2024-05-01T10:01:00.000Z",
            "wrapupRequired": true, "wrapupTimeoutMs": 45000,
            "wrapup": {"code": "code-1", "endTime": "2024-05-01T10:01:30.000Z"}
        });
        let v = json!({"topicName": format!("{TOPIC}.callbacks"), "version": "2",
                       "eventBody": {"id": "c-1", "participants": [flat]}});
        let evs = events(&v);
        assert_eq!(evs.len(), 2, "{evs:?}");
        let EventKind::LegEnded { facts } = &evs[0].kind else { panic!() };
        assert_eq!((facts.media.as_deref(), facts.channel), (Some("callbacks"), Some(Channel::Callback)));
        assert_eq!(facts.communication_id, None, "the media-specific model has none");
        assert_eq!((facts.user_id.as_deref(), facts.queue_id.as_deref()), (Some("u-1"), Some("q-1")));
        assert_eq!(facts.direction, Direction::Outbound);
        assert_eq!(facts.disconnect_type.as_deref(), Some("dnd_endpoint"));
        assert_eq!(facts.talk_ms, Some(60_000));
        assert!(matches!(&evs[1].kind, EventKind::CodeRecorded { code_id: Some(c), .. } if c == "code-1"));
        assert_eq!(media_of_topic(&format!("{TOPIC}.emails")), Some("emails"));
        assert_eq!(media_of_topic(TOPIC), None);
        assert_eq!(media_of_topic("v2.users.u.conversations.calls"), None);
    }

    #[test]
    fn several_agents_of_one_snapshot_each_get_their_events() {
        let mut second = agent("terminated", "pending");
        second["id"] = json!("p-agent-2");
        let evs = events(&frame(TOPIC, vec![agent("disconnected", "pending"), second]));
        let legs: Vec<_> = evs.iter().map(|e| e.leg.participant.as_str()).collect();
        assert_eq!(legs, ["p-agent", "p-agent-2"]);
    }

    #[test]
    fn a_snapshot_without_a_conversation_id_is_refused() {
        let mut v = frame(TOPIC, vec![agent("disconnected", "pending")]);
        v["eventBody"].as_object_mut().unwrap().remove("id");
        assert!(matches!(
            parse_eventbridge("p", v.to_string().as_bytes(), &systems()),
            Err(EventError::MissingField { field: "eventBody.id" })
        ));
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            "[a-zA-Z0-9.:_-]{0,30}".prop_map(Value::String),
            prop_oneof![
                Just("disconnected"),
                Just("terminated"),
                Just("pending"),
                Just("skipped"),
                Just("agent"),
                Just("2024-05-01T10:05:00.100Z"),
                Just(SYSTEM),
            ]
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("id".to_string()),
                        Just("participants".to_string()),
                        Just("purpose".to_string()),
                        Just("calls".to_string()),
                        Just("emails".to_string()),
                        Just("state".to_string()),
                        Just("afterCallWork".to_string()),
                        Just("wrapup".to_string()),
                        Just("code".to_string()),
                        Just("wrapupRequired".to_string()),
                        Just("endTime".to_string()),
                        Just("provisional".to_string()),
                        "[a-zA-Z]{1,8}",
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
        fn random_snapshots_never_panic(body in arb_json()) {
            let v = json!({"topicName": TOPIC, "version": "2", "eventBody": body});
            let _ = parse_eventbridge("p", v.to_string().as_bytes(), &systems());
        }

        #[test]
        fn random_participants_never_panic(ps in prop::collection::vec(arb_json(), 0..4)) {
            let _ = parse_eventbridge("p", frame(TOPIC, ps).to_string().as_bytes(), &systems());
        }
    }
}
