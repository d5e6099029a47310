//! One retry classification for every platform failure.
//!
//! Every HTTP outcome that is not a success is turned into a [`PlatformError`] by [`classify`] here and nowhere
//! else, so the pipeline, the reconciler and the catalog loop all agree on what may be retried:
//!
//! | status / failure                      | class                         |
//! |---------------------------------------|-------------------------------|
//! | 5xx except 501, 408, timeout, connect | [`ErrorClass::Retryable`]     |
//! | 429 (and the token endpoint's 400 `invalid_request` "rate limit exceeded") | [`ErrorClass::RateLimited`] |
//! | 409                                   | [`ErrorClass::Conflict`]      |
//! | 401 (after one token refresh)         | [`ErrorClass::Auth`]          |
//! | 403                                   | [`ErrorClass::Forbidden`]     |
//! | 501, other 4xx (400, 404, …)          | [`ErrorClass::Permanent`]     |
//!
//! The error's `Display` is a sentence built only from the status, the platform's error code and message, the
//! endpoint *template* and the correlation id — never from request headers or bodies — so a token or client secret
//! cannot end up in a log line through it.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub use wrapup_core::failure::ErrorClass;

/// A classified platform failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlatformError {
    pub class: ErrorClass,
    /// HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// The platform's error code (Genesys `ErrorBody.code`, e.g. `not.found`; OAuth `error`).
    pub code: Option<String>,
    /// The platform's message or a description of the transport failure.
    pub message: String,
    /// `ININ-Correlation-Id` of the failed response (or `ErrorBody.contextId`).
    pub correlation_id: Option<String>,
    /// Path template of the call, e.g. `/api/v2/conversations/{conversationId}`.
    pub endpoint: &'static str,
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.class {
            ErrorClass::Retryable => "failed transiently",
            ErrorClass::RateLimited { .. } => "was rate limited",
            ErrorClass::Conflict => "conflicted with the current state",
            ErrorClass::Permanent => "was rejected",
            ErrorClass::Auth => "was not authenticated",
            ErrorClass::Forbidden { .. } => "was forbidden",
            ErrorClass::DeadlinePassed => "was not sent: its deadline passed while it waited for the request budget",
            ErrorClass::PreconditionFailed => "was not sent: its precondition no longer held",
            ErrorClass::Yielded => "was not sent: its leg gave way to a leg with an earlier deadline",
            ErrorClass::WindowClosed => "was refused: the leg's window is over or it is already coded",
        };
        write!(f, "platform call {} {what}", self.endpoint)?;
        if let Some(status) = self.status {
            write!(f, " with status {status}")?;
        }
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let ErrorClass::Forbidden { permission: Some(p) } = &self.class {
            write!(f, "; missing permission {p}")?;
        }
        if let ErrorClass::RateLimited { retry_after: Some(d) } = &self.class {
            write!(f, "; retry after {} s", d.as_secs_f64())?;
        }
        if let Some(c) = &self.correlation_id {
            write!(f, " [correlation id {c}]")?;
        }
        Ok(())
    }
}

impl PlatformError {
    /// A failure with no HTTP response (connect error, timeout, body too large, undecodable body).
    pub fn transport(class: ErrorClass, endpoint: &'static str, message: impl Into<String>) -> Self {
        Self { class, status: None, code: None, message: message.into(), correlation_id: None, endpoint }
    }

    /// Classifies a reqwest send/receive failure. The message deliberately omits the URL's query and any header.
    pub fn from_reqwest(endpoint: &'static str, e: &reqwest::Error) -> Self {
        let kind = if e.is_timeout() {
            "the request timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_body() || e.is_decode() {
            "the response body could not be read"
        } else {
            "the request failed in transport"
        };
        Self::transport(ErrorClass::Retryable, endpoint, kind)
    }
}

/// Genesys `ErrorBody` (the subset we use). Unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorBody {
    pub message: Option<String>,
    pub code: Option<String>,
    pub status: Option<u16>,
    pub message_with_params: Option<String>,
    pub message_params: Option<BTreeMap<String, serde_json::Value>>,
    pub context_id: Option<String>,
    // OAuth error shape from the login host.
    pub error: Option<String>,
    pub description: Option<String>,
    pub error_description: Option<String>,
}

/// The longest platform message we keep in an error (bodies are untrusted and may be large).
const MAX_MESSAGE_CHARS: usize = 500;

fn truncate(s: &str) -> String {
    if s.chars().count() <= MAX_MESSAGE_CHARS {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_MESSAGE_CHARS).collect();
        t.push('…');
        t
    }
}

/// Parses `Retry-After` as seconds (the only form Genesys sends); HTTP dates are not used by the platform.
pub fn parse_retry_after(value: Option<&str>) -> Option<Duration> {
    let v = value?.trim();
    let secs: f64 = v.parse().ok()?;
    if (0.0..86_400.0).contains(&secs) {
        Some(Duration::from_secs_f64(secs))
    } else {
        None
    }
}

/// Finds the missing permission in a 403 body: `messageParams` values first, then the message text after
/// "permission(s):" / "permissions assigned:".
fn missing_permission(body: &ErrorBody) -> Option<String> {
    let looks_like_permission = |s: &str| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() >= 2 && parts.iter().all(|p| !p.is_empty() && !p.contains(char::is_whitespace))
    };
    if let Some(params) = &body.message_params {
        for v in params.values() {
            if let Some(s) = v.as_str() {
                let s = s.trim();
                if looks_like_permission(s.split(',').next().unwrap_or("").trim()) {
                    return Some(s.to_string());
                }
            }
        }
    }
    let message = body.message.as_deref()?;
    let lower = message.to_ascii_lowercase();
    for marker in ["permission(s):", "permissions assigned:", "permissions:", "permission:"] {
        if let Some(at) = lower.find(marker) {
            let rest = message.get(at + marker.len()..)?.trim().trim_end_matches('.').trim();
            if !rest.is_empty() {
                return Some(truncate(rest));
            }
        }
    }
    None
}

/// Classifies a non-success response. `body` is the (size-limited) response body; it may be empty or not JSON.
pub fn classify(
    endpoint: &'static str,
    status: u16,
    retry_after: Option<&str>,
    correlation_id: Option<String>,
    body: &[u8],
) -> PlatformError {
    let parsed: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let description = parsed.description.clone().or_else(|| parsed.error_description.clone());
    let code = parsed.code.clone().or_else(|| parsed.error.clone());
    let message = parsed
        .message
        .clone()
        .or_else(|| description.clone())
        .map(|m| truncate(&m))
        .unwrap_or_else(|| format!("HTTP {status}"));
    let correlation_id = correlation_id.or_else(|| parsed.context_id.clone());
    let class = match status {
        429 => ErrorClass::RateLimited { retry_after: parse_retry_after(retry_after) },
        // The login host reports its own rate limit as 400 invalid_request "rate limit exceeded; …".
        400 if parsed.error.as_deref() == Some("invalid_request")
            && description.as_deref().is_some_and(|d| d.to_ascii_lowercase().starts_with("rate limit exceeded")) =>
        {
            ErrorClass::RateLimited { retry_after: parse_retry_after(retry_after) }
        }
        408 => ErrorClass::Retryable,
        409 => ErrorClass::Conflict,
        401 => ErrorClass::Auth,
        403 => ErrorClass::Forbidden { permission: missing_permission(&parsed) },
        501 => ErrorClass::Permanent,
        500..=599 => ErrorClass::Retryable,
        _ => ErrorClass::Permanent,
    };
    PlatformError { class, status: Some(status), code, message, correlation_id, endpoint }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(status: u16, body: &str, retry_after: Option<&str>) -> ErrorClass {
        classify("/x", status, retry_after, None, body.as_bytes()).class
    }

    #[test]
    fn statuses_are_classified_once_and_consistently() {
        assert_eq!(class_of(500, "", None), ErrorClass::Retryable);
        assert_eq!(class_of(502, "", None), ErrorClass::Retryable);
        assert_eq!(class_of(503, "{}", None), ErrorClass::Retryable);
        assert_eq!(class_of(504, "not json", None), ErrorClass::Retryable);
        assert_eq!(class_of(501, "", None), ErrorClass::Permanent);
        assert_eq!(class_of(408, "", None), ErrorClass::Retryable);
        assert_eq!(class_of(429, "", Some("7")), ErrorClass::RateLimited { retry_after: Some(Duration::from_secs(7)) });
        assert_eq!(class_of(429, "", None), ErrorClass::RateLimited { retry_after: None });
        assert_eq!(class_of(429, "", Some("soon")), ErrorClass::RateLimited { retry_after: None });
        assert_eq!(class_of(409, "", None), ErrorClass::Conflict);
        assert_eq!(class_of(400, r#"{"code":"bad.request"}"#, None), ErrorClass::Permanent);
        assert_eq!(class_of(404, r#"{"code":"not.found"}"#, None), ErrorClass::Permanent);
        assert_eq!(class_of(422, "", None), ErrorClass::Permanent);
        assert_eq!(class_of(401, "", None), ErrorClass::Auth);
        assert_eq!(class_of(403, "", None), ErrorClass::Forbidden { permission: None });
    }

    #[test]
    fn the_token_endpoint_rate_limit_is_rate_limiting() {
        let body = r#"{"error":"invalid_request","description":"rate limit exceeded; try later"}"#;
        assert!(matches!(class_of(400, body, None), ErrorClass::RateLimited { .. }));
        let other = r#"{"error":"invalid_request","description":"missing grant_type"}"#;
        assert_eq!(class_of(400, other, None), ErrorClass::Permanent);
    }

    #[test]
    fn a_403_names_the_missing_permission() {
        let body = r#"{"status":403,"code":"missing.permissions","message":"Unable to perform the requested action. You are missing the following permission(s): conversation:participant:wrapup","messageParams":{}}"#;
        assert_eq!(
            class_of(403, body, None),
            ErrorClass::Forbidden { permission: Some("conversation:participant:wrapup".into()) }
        );
        let params = r#"{"status":403,"code":"missing.permissions","message":"x","messageParams":{"permissions":"routing:queue:view"}}"#;
        assert_eq!(
            class_of(403, params, None),
            ErrorClass::Forbidden { permission: Some("routing:queue:view".into()) }
        );
        let not_perm = r#"{"status":403,"code":"not.authorized","message":"Access to Conversation abc is forbidden.","messageParams":{"id":"abc","type":"Conversation"}}"#;
        assert_eq!(class_of(403, not_perm, None), ErrorClass::Forbidden { permission: None });
    }

    #[test]
    fn display_is_a_sentence_with_code_and_correlation_id() {
        let e = classify(
            "/api/v2/conversations/{conversationId}",
            404,
            None,
            Some("corr-1".into()),
            br#"{"code":"not.found","message":"The requested resource was not found."}"#,
        );
        assert_eq!(
            e.to_string(),
            "platform call /api/v2/conversations/{conversationId} was rejected with status 404 (not.found): \
             The requested resource was not found. [correlation id corr-1]"
        );
    }

    #[test]
    fn the_context_id_stands_in_for_a_missing_correlation_header() {
        let e = classify("/x", 400, None, None, br#"{"code":"bad.request","contextId":"ctx-9"}"#);
        assert_eq!(e.correlation_id.as_deref(), Some("ctx-9"));
    }
}
