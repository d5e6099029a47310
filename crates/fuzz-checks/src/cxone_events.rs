use serde_json::{json, Value};
use std::collections::HashMap;
use wrapup_connectors::cxone::events::{from_completed, from_realtime, parse_next_event, parse_next_event_value};
use wrapup_connectors::cxone::{AgentStateRecord, ContactRecord};

/// CXone agent-session `get-next-event` bodies: the raw bytes go to `parse_next_event`. Besides the raw body, the
/// same JSON is also tried as one element of an answer's `events` array, and as a polling record (active contact,
/// agent state, completed contact), so the fuzzer reaches the event and record readers without having to guess the
/// envelope first.
pub fn cxone_events(data: &[u8]) {
    let now = jiff::Timestamp::UNIX_EPOCH;
    let acw = [("1507".to_string(), 120_000u64)].into_iter().collect();
    let _ = parse_next_event("fuzz", Some(1), data, &acw, now);
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let _ = parse_next_event_value("fuzz", None, &json!({"sessionId": "s", "events": [value.clone()]}), &acw, now);
    let contacts: Vec<ContactRecord> = ContactRecord::from_value(&value).into_iter().collect();
    let states: Vec<AgentStateRecord> = AgentStateRecord::from_value(&value).into_iter().collect();
    let _ = from_realtime("fuzz", &HashMap::new(), &contacts, &states, &acw, now);
    let _ = from_completed("fuzz", &contacts, now);
}
