use std::collections::HashSet;
use wrapup_connectors::genesys::events::{parse_eventbridge, Parsed};

/// `POST /intake/{connection}` bodies: an EventBridge envelope, a batch of them, or a bare notification frame.
/// Any bytes must give events or an error, never a panic; what is accepted must survive a round trip through JSON
/// (it is what the store persists).
pub fn intake_envelope(data: &[u8]) {
    let codes: HashSet<String> = ["ININ-WRAP-UP-TIMEOUT".to_string()].into();
    if let Ok(parsed) = parse_eventbridge("fuzz", data, &codes) {
        for p in parsed {
            if let Parsed::Event(event) = p {
                let json = serde_json::to_string(&event).expect("an accepted event serializes");
                let back: wrapup_core::Event = serde_json::from_str(&json).expect("and reads back");
                assert_eq!(back, event);
            }
        }
    }
}
