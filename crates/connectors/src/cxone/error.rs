//! CXone failures: the shared classification plus the platform's status text.
//!
//! CXone puts the meaning of a failure in its status *text*, not in a code: the HTTP reason phrase
//! (`HTTP/1.1 409 Contact must be disconnected before dispositioning`), the `icStatusDescription` header (older
//! versions: `InvalidContactId`, `InvalidAgentSession`), and sometimes a JSON body `{"error","error_description"}`
//! (newer Admin specs spell it `errorDescription` / `error_Description`). [`classify`] takes the class from the shared
//! table ([`crate::error::classify`], so retry behaviour is the same on every platform) and keeps the best text it
//! finds as the error's `code` (the reason phrase or header, verbatim) and `message`.
//!
//! [`rejection`] then reads that text into a [`Rejection`] — the distinctions the service acts on (already coded,
//! code not allowed on the skill, window not open yet, contact gone, session gone → rejoin). Texts are matched
//! case-insensitively and by their distinctive words, because spellings differ across API versions.
//!
//! One CXone-specific class change: 409 `Too many requests` (the persistent-contacts throttle) is rate limiting,
//! not a conflict.

use crate::error::{classify as classify_shared, ErrorClass, PlatformError};
use serde_json::Value;

/// The longest platform text kept in an error (bodies and headers are untrusted).
const MAX_TEXT_CHARS: usize = 300;

/// What a CXone rejection means for the caller. See [`rejection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// 409 `Contact must be disconnected before dispositioning`: the ACW window is not open yet.
    NotDisconnected,
    /// 409 `Skill does not allow additional disposition`: the contact already has a disposition (someone else won).
    AlreadyDispositioned,
    /// 400 `Invalid primaryDispositionId`: the code does not exist or is not assigned to the contact's skill.
    InvalidDisposition,
    /// 404 `Invalid contactId`: the contact is unknown to the session — most likely fully closed (window over).
    ContactGone,
    /// 404 `Invalid sessionId` / `Invalid agent session` / `InvalidAgentSession`, or 409 `Session Ended`: join again.
    SessionGone,
    /// 409 `Cannot start a session at this time.  Agent session already started.`: join instead of start.
    SessionAlreadyStarted,
    /// 404 `Invalid agentId` / 404 or 409 `Agent session not started`: the agent has no session to join.
    AgentNotLoggedIn,
    /// Any other rejection: decide by [`ErrorClass`].
    Other,
}

impl Rejection {
    /// Short stable label (metrics, ledger).
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::NotDisconnected => "not_disconnected",
            Rejection::AlreadyDispositioned => "already_dispositioned",
            Rejection::InvalidDisposition => "invalid_disposition",
            Rejection::ContactGone => "contact_gone",
            Rejection::SessionGone => "session_gone",
            Rejection::SessionAlreadyStarted => "session_already_started",
            Rejection::AgentNotLoggedIn => "agent_not_logged_in",
            Rejection::Other => "other",
        }
    }
}

fn clean(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let s: String = s.chars().filter(|c| !c.is_control()).take(MAX_TEXT_CHARS).collect();
    Some(s)
}

/// The error text of a JSON body, under any of the spellings CXone uses.
fn body_description(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    let text = |k: &str| map.get(k).and_then(Value::as_str).and_then(clean);
    let description = ["error_description", "errorDescription", "error_Description", "message", "Message"]
        .iter()
        .find_map(|k| text(k));
    (text("error"), description)
}

/// Classifies a non-success CXone response. `reason` is the HTTP reason phrase when it was not the canonical one
/// for the status; `ic_status` the `icStatusDescription` header.
pub fn classify(
    endpoint: &'static str,
    status: u16,
    reason: Option<&str>,
    ic_status: Option<&str>,
    retry_after: Option<&str>,
    body: &[u8],
) -> PlatformError {
    let mut e = classify_shared(endpoint, status, retry_after, None, body);
    let (error, description) = body_description(body);
    // The reason phrase is the best-evidenced carrier of the text, then the header, then the body.
    let text = reason.and_then(clean).or_else(|| ic_status.and_then(clean));
    e.code = text.clone().or(error);
    e.message = description.or(text).unwrap_or_else(|| format!("HTTP {status}"));
    if status == 409 && e.code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case("too many requests")) {
        e.class = ErrorClass::RateLimited { retry_after: crate::error::parse_retry_after(retry_after) };
    }
    e
}

/// What a failed CXone call means, read from its status and text. `None` for failures without a response.
pub fn rejection(e: &PlatformError) -> Option<Rejection> {
    let status = e.status?;
    // Both the short text (reason / header) and the body's description are searched: either may carry it.
    let text = format!("{} {}", e.code.as_deref().unwrap_or(""), e.message).to_ascii_lowercase();
    let squashed: String = text.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let has = |needle: &str| squashed.contains(needle);
    Some(match status {
        409 if has("mustbedisconnected") => Rejection::NotDisconnected,
        409 if has("additionaldisposition") => Rejection::AlreadyDispositioned,
        409 if has("sessionended") => Rejection::SessionGone,
        409 if has("sessionnotstarted") => Rejection::AgentNotLoggedIn,
        409 if has("alreadystarted") => Rejection::SessionAlreadyStarted,
        400 if has("primarydispositionid") || has("invaliddisposition") => Rejection::InvalidDisposition,
        // Before the session texts: "Invalid agentId - '7', Agent session not started" names a session too.
        404 if has("sessionnotstarted") || has("invalidagentid") => Rejection::AgentNotLoggedIn,
        404 if has("sessionid") || has("agentsession") => Rejection::SessionGone,
        404 if has("contactid") => Rejection::ContactGone,
        _ => Rejection::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn c(status: u16, reason: Option<&str>, header: Option<&str>, body: &str) -> PlatformError {
        classify("/x", status, reason, header, None, body.as_bytes())
    }

    #[test]
    fn disposition_rejections_are_told_apart_by_their_text() {
        let cases = [
            (409, "Contact must be disconnected before dispositioning", Rejection::NotDisconnected, "conflict"),
            (409, "Skill does not allow additional disposition", Rejection::AlreadyDispositioned, "conflict"),
            (400, "Invalid primaryDispositionId", Rejection::InvalidDisposition, "permanent"),
            (404, "Invalid contactId", Rejection::ContactGone, "permanent"),
            (404, "Invalid sessionId", Rejection::SessionGone, "permanent"),
            (404, "Invalid agent session.", Rejection::SessionGone, "permanent"),
            (409, "Session Ended", Rejection::SessionGone, "conflict"),
            (
                409,
                "Cannot start a session at this time.  Agent session already started.",
                Rejection::SessionAlreadyStarted,
                "conflict",
            ),
            (404, "Invalid agentId - '7', Agent session not started", Rejection::AgentNotLoggedIn, "permanent"),
            (409, "Agent session not started", Rejection::AgentNotLoggedIn, "conflict"),
            (400, "Invalid Timeout. Value must be between 0-60.", Rejection::Other, "permanent"),
        ];
        for (status, text, want, class) in cases {
            // The same text through each carrier: reason phrase, header, JSON body.
            for e in [
                c(status, Some(text), None, ""),
                c(status, None, Some(text), ""),
                c(status, None, None, &serde_json::json!({"error": "x", "error_description": text}).to_string()),
            ] {
                assert_eq!(rejection(&e), Some(want), "{status} {text}: {e}");
                assert_eq!(e.class.as_str(), class, "{status} {text}");
            }
        }
    }

    #[test]
    fn older_header_spellings_are_understood() {
        assert_eq!(rejection(&c(404, None, Some("InvalidAgentSession"), "")), Some(Rejection::SessionGone));
        assert_eq!(rejection(&c(404, None, Some("InvalidContactId"), "")), Some(Rejection::ContactGone));
    }

    #[test]
    fn the_reason_phrase_is_kept_verbatim_as_the_code() {
        let e = c(409, Some("Skill does not allow additional disposition"), Some("Other"), "");
        assert_eq!(e.code.as_deref(), Some("Skill does not allow additional disposition"));
        assert_eq!(
            e.to_string(),
            "platform call /x conflicted with the current state with status 409 (Skill does not allow additional \
             disposition): Skill does not allow additional disposition"
        );
    }

    #[test]
    fn throttling_is_rate_limiting_with_or_without_retry_after() {
        let e = classify("/x", 429, Some("Api Rate Exceeded"), None, Some("3"), b"");
        assert_eq!(e.class, ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(3)) });
        assert_eq!(c(429, None, None, "").class, ErrorClass::RateLimited { retry_after: None });
        assert_eq!(c(409, Some("Too many requests"), None, "").class, ErrorClass::RateLimited { retry_after: None });
    }

    #[test]
    fn other_statuses_follow_the_shared_table() {
        assert_eq!(c(401, Some("Invalid or expired token"), None, "").class, ErrorClass::Auth);
        assert!(matches!(c(403, None, None, "").class, ErrorClass::Forbidden { .. }));
        assert_eq!(c(503, None, None, "<html>").class, ErrorClass::Retryable);
        assert_eq!(rejection(&c(503, None, None, "")), Some(Rejection::Other));
        assert_eq!(rejection(&PlatformError::transport(ErrorClass::Retryable, "/x", "timeout")), None);
    }

    #[test]
    fn hostile_text_is_bounded_and_stripped_of_control_characters() {
        let long = format!("Invalid contactId\r\n{}", "a".repeat(10_000));
        let e = c(404, Some(&long), None, "");
        assert!(e.code.as_ref().unwrap().chars().count() <= MAX_TEXT_CHARS);
        assert!(!e.code.as_ref().unwrap().contains('\n'));
    }
}
