use serde_json::{json, Value};
use std::collections::HashSet;
use wrapup_connectors::genesys::events::parse_value;

const TOPICS: &[&str] = &[
    "v2.detail.events.conversation.c-1.user.end",
    "v2.detail.events.conversation.c-1.acw",
    "v2.detail.events.conversation.c-1.wrapup",
    "v2.detail.events.conversation.c-1.customer.end",
    "v2.routing.queues.q-1.conversations",
];

/// Notification API websocket frames: the text of a frame is decoded to JSON, then handed to `parse_value`. Besides
/// the raw frame, the same JSON is also tried as the `eventBody` of each supported topic, so that the fuzzer reaches
/// the body readers without having to guess a topic name first.
pub fn websocket_frame(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
    let codes: HashSet<String> = ["ININ-WRAP-UP-TIMEOUT".to_string()].into();
    let _ = parse_value("fuzz", &value, &codes);
    if let Some(selector) = data.first() {
        let topic = TOPICS[*selector as usize % TOPICS.len()];
        let _ = parse_value("fuzz", &json!({"topicName": topic, "eventBody": value}), &codes);
        let envelope = json!({"detail-type": topic, "detail": {"topicName": topic, "eventBody": value}});
        let _ = parse_value("fuzz", &envelope, &codes);
    }
}
