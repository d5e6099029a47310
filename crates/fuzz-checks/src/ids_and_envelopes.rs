use serde_json::Value;
use std::collections::HashSet;
use wrapup_connectors::genesys::events::{parse_eventbridge, Parsed};
use wrapup_core::ids::{self, IdKind};
use wrapup_core::Platform;

const KINDS: [IdKind; 7] = [
    IdKind::Conversation,
    IdKind::Participant,
    IdKind::Communication,
    IdKind::Queue,
    IdKind::User,
    IdKind::Campaign,
    IdKind::Code,
];

/// The shape rule for platform ids (`wrapup_core::ids`) and the envelope checks that come with it at intake.
///
/// The first byte picks what the rest is:
/// - even: an id, checked for every kind on both platforms against an oracle written independently of the rule (a
///   UUID by its groups, a CXone id by a round trip through an integer); whatever is accepted is plain ASCII
///   letters, digits, `-` and `_` only (so no control, bidirectional, zero-width or lookalike character, and no
///   separator, gets through);
/// - odd: an intake body through `parse_eventbridge`, then every event through `ids::check_event`, as intake does;
///   an accepted envelope's `detail-type` agrees with its `detail.topicName`, and a concrete topic's conversation
///   with the body's `conversationId`.
pub fn ids_and_envelopes(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        one_id(&String::from_utf8_lossy(rest));
    } else {
        body(rest);
    }
}

fn uuid_oracle(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
}

fn code_name_oracle(s: &str) -> bool {
    let mut chars = s.chars();
    s.len() <= ids::MAX_CODE_NAME_CHARS
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn numeric_oracle(s: &str) -> bool {
    s.parse::<u64>().is_ok_and(|n| n <= i64::MAX as u64 && n.to_string() == s)
}

fn one_id(s: &str) {
    for platform in [Platform::Genesys, Platform::Cxone] {
        for kind in KINDS {
            let accepted = ids::check(platform, kind, s).is_ok();
            let expected = match (platform, kind) {
                (Platform::Genesys, IdKind::Code) => uuid_oracle(s) || code_name_oracle(s),
                (Platform::Genesys, _) => uuid_oracle(s),
                (Platform::Cxone, IdKind::Communication) => false,
                (Platform::Cxone, _) => numeric_oracle(s),
            };
            assert_eq!(accepted, expected, "{platform:?} {kind:?} {s:?}");
            if accepted {
                assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{s:?}");
            } else if let Err(e) = ids::check(platform, kind, s) {
                // The refusal names the field; it never carries the value (it is ASCII; a value that is not cannot
                // be in it).
                assert_eq!(e.field, kind.field(platform));
                assert!(s.is_ascii() || !e.to_string().contains(s));
            }
        }
    }
}

/// The objects of a body that carry an envelope (`detail`), alone or in a batch.
fn envelopes(v: &Value) -> Vec<&serde_json::Map<String, Value>> {
    match v {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(o) => vec![o],
        _ => Vec::new(),
    }
}

fn body(rest: &[u8]) {
    let codes: HashSet<String> = ["ININ-WRAP-UP-TIMEOUT".to_string()].into();
    let Ok(parsed) = parse_eventbridge("fuzz", rest, &codes) else { return };
    for p in &parsed {
        if let Parsed::Event(event) = p {
            if ids::check_event(Platform::Genesys, event).is_ok() {
                assert!(uuid_oracle(&event.leg.conversation) && uuid_oracle(&event.leg.participant), "{event:?}");
            }
        }
    }
    // Accepted: every envelope's names of its event agree.
    let value: Value = serde_json::from_slice(rest).expect("an accepted body is JSON");
    for envelope in envelopes(&value) {
        let Some(Value::Object(detail)) = envelope.get("detail") else { continue };
        let Some(Value::String(topic)) = detail.get("topicName") else { continue };
        if let Some(Value::String(pattern)) = envelope.get("detail-type") {
            let t: Vec<&str> = topic.split('.').collect();
            let p: Vec<&str> = pattern.split('.').collect();
            let agree = t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| t == p || (*p == "{id}" && !t.is_empty()));
            assert!(agree, "accepted with detail-type {pattern:?} and topicName {topic:?}");
        }
        let concrete = topic.strip_prefix("v2.detail.events.conversation.").and_then(|r| r.split('.').next());
        let stated = detail.get("eventBody").and_then(|b| b.get("conversationId")).and_then(Value::as_str);
        if let (Some(concrete), Some(stated)) = (concrete, stated) {
            if concrete != "{id}" && !stated.is_empty() {
                assert_eq!(concrete, stated, "accepted with a topic naming another conversation");
            }
        }
    }
}
