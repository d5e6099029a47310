//! How a failed platform call is classified, platform-neutrally: what the caller may do about it.
//!
//! The connectors classify every failure once into an [`ErrorClass`] (see `wrapup_connectors::error`); the leg's
//! state machine decides from the class alone what a failed read or write means for the leg.

use std::time::Duration;

/// What the caller may do about a failed platform call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum ErrorClass {
    /// Transient: 5xx (except 501), 408, timeouts, connection errors. Retrying later may succeed.
    Retryable,
    /// 429: slow down. `retry_after` is the platform's `Retry-After`, when it sent one.
    RateLimited { retry_after: Option<Duration> },
    /// 409: the resource changed under us.
    Conflict,
    /// Any other 4xx (and 501): retrying the same request will fail the same way.
    Permanent,
    /// 401 that survived one token refresh, or a token request the login host refused.
    Auth,
    /// 403; `permission` is the missing permission when the platform names it.
    Forbidden { permission: Option<String> },
    /// Not sent: the request's deadline passed while it waited for the request budget. The work it was for is
    /// no longer useful (e.g. the leg's ACW window closed), so spending a request on it would only cost budget.
    DeadlinePassed,
    /// Not sent: the caller's precondition no longer held when the request was about to go out.
    PreconditionFailed,
    /// Not sent: the request would have begun a leg's work, and the leg gave its place in the request budget's queue
    /// to a leg with an earlier deadline. The leg is due again as it was.
    Yielded,
    /// The platform refused a write because the leg's window is over or someone else already coded it (CXone
    /// `Invalid contactId` after ACW, `Skill does not allow additional disposition`): nothing to retry; what the leg
    /// ended with is to be read.
    WindowClosed,
}

impl ErrorClass {
    /// Short stable label (metrics, ledger).
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Retryable => "retryable",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Permanent => "permanent",
            ErrorClass::Auth => "auth",
            ErrorClass::Forbidden { .. } => "forbidden",
            ErrorClass::DeadlinePassed => "deadline_passed",
            ErrorClass::PreconditionFailed => "precondition_failed",
            ErrorClass::Yielded => "yielded",
            ErrorClass::WindowClosed => "window_closed",
        }
    }

    /// Whether a short in-process retry is worth it.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ErrorClass::Retryable | ErrorClass::RateLimited { .. })
    }
}
