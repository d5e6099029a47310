//! What CRMs send: a decision body (`PUT /api/v1/decisions/…`) and a decision hook's answer. Both are read from
//! the same bytes. The checks: neither parser panics; an accepted decision has a trimmed code of 1 to 255 characters,
//! notes and source within their bounds, and reads back the same from its own JSON; an accepted hook answer has a
//! trimmed code of 1 to 255 characters and notes within the bound; a decision is never accepted with fields other
//! than its four.

use serde_json::{json, Value};
use wrapup_core::rules::NOTES_MAX_CHARS;
use wrapup_service::decisions::{self, hook, MAX_NAME_CHARS};

pub fn crm_bodies(data: &[u8]) {
    if let Ok(d) = decisions::parse(data) {
        assert_eq!(d.code, d.code.trim(), "the code is trimmed");
        let chars = d.code.chars().count();
        assert!((1..=MAX_NAME_CHARS).contains(&chars), "code of {chars} characters accepted");
        assert!(d.notes.as_ref().is_none_or(|n| n.chars().count() <= NOTES_MAX_CHARS));
        assert!(d.source.as_ref().is_none_or(|s| !s.trim().is_empty() && s.chars().count() <= MAX_NAME_CHARS));
        let value: Value = serde_json::from_slice(data).expect("an accepted body is JSON");
        let fields = value.as_object().expect("an accepted body is an object");
        assert!(fields.keys().all(|k| ["code", "notes", "source", "expires_at"].contains(&k.as_str())), "{fields:?}");
        let again = json!({"code": d.code, "notes": d.notes, "source": d.source, "expires_at": d.expires_at});
        let reread = decisions::parse(again.to_string().as_bytes()).expect("its own JSON is a decision");
        assert_eq!(reread, d);
    }
    if let Ok(a) = hook::parse_answer(data) {
        assert_eq!(a.code_name, a.code_name.trim(), "the code is trimmed");
        let chars = a.code_name.chars().count();
        assert!((1..=255).contains(&chars), "code of {chars} characters accepted");
        assert!(a.notes.as_ref().is_none_or(|n| n.chars().count() <= NOTES_MAX_CHARS));
    }
}
