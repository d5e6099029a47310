//! Every HTTP attempt is counted.
//!
//! "Calls per applied code" is a first-class metric and every leg's ledger lists the API attempts made for it, so
//! each attempt — token requests and retries included — is reported exactly once, after it finished, in three
//! places: the connection's [`AttemptSink`] (the service writes it into the leg ledger, using the conversation and
//! participant ids carried on leg-scoped calls), the client's in-process [`CallStats`], and the `metrics` counter
//! `wrapup_platform_calls_total{connection,endpoint,status}`.

use crate::error::ErrorClass;
use jiff::Timestamp;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One HTTP attempt against a platform.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiAttempt {
    /// The connection's name.
    pub connection: String,
    /// Path template, e.g. `/api/v2/conversations/{conversationId}`; `/oauth/token` for token requests.
    pub endpoint: &'static str,
    pub method: &'static str,
    /// `None` when no response arrived (timeout, connection error).
    pub status: Option<u16>,
    /// `ININ-Correlation-Id` of the response.
    pub correlation_id: Option<String>,
    pub duration_ms: u64,
    /// When the attempt started, on the client's clock.
    pub at: Timestamp,
    /// Set when the attempt failed.
    pub error_class: Option<ErrorClass>,
    /// Conversation the call is about, for leg-scoped calls (ledger attribution).
    pub conversation_id: Option<String>,
    /// Participant the call is about, for leg-scoped calls.
    pub participant_id: Option<String>,
}

impl ApiAttempt {
    /// The status as a metrics label: the number, or `error` when no response arrived.
    pub fn status_label(&self) -> String {
        self.status.map(|s| s.to_string()).unwrap_or_else(|| "error".to_string())
    }
}

/// Receives every attempt. Must be cheap and must not block (called on the request path).
pub trait AttemptSink: Send + Sync {
    fn record(&self, attempt: &ApiAttempt);
}

impl<F> AttemptSink for F
where
    F: Fn(&ApiAttempt) + Send + Sync,
{
    fn record(&self, attempt: &ApiAttempt) {
        self(attempt)
    }
}

/// Shared sink handle.
pub type SharedAttemptSink = Arc<dyn AttemptSink>;

/// A sink that drops everything.
pub fn discard_attempts() -> SharedAttemptSink {
    Arc::new(|_: &ApiAttempt| {})
}

/// Counters of one client, readable with `stats()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Every attempt, token requests and retries included.
    pub calls_total: u64,
    /// Attempts answered with 429 (or the token endpoint's rate-limit answer).
    pub rate_limited_total: u64,
    /// Token requests (also counted in `calls_total`).
    pub token_requests_total: u64,
    /// Attempts by (endpoint template, status label).
    pub by_endpoint_status: BTreeMap<(String, String), u64>,
}

/// Thread-safe accumulator behind `stats()`; also forwards to the sink and the metrics registry.
pub(crate) struct AttemptRecorder {
    connection: String,
    sink: SharedAttemptSink,
    stats: Mutex<CallStats>,
}

impl AttemptRecorder {
    pub(crate) fn new(connection: String, sink: SharedAttemptSink) -> Self {
        Self { connection, sink, stats: Mutex::new(CallStats::default()) }
    }

    pub(crate) fn connection(&self) -> &str {
        &self.connection
    }

    pub(crate) fn record(&self, attempt: ApiAttempt, is_token: bool) {
        let status = attempt.status_label();
        {
            let mut s = self.stats.lock();
            s.calls_total += 1;
            if matches!(attempt.error_class, Some(ErrorClass::RateLimited { .. })) {
                s.rate_limited_total += 1;
            }
            if is_token {
                s.token_requests_total += 1;
            }
            *s.by_endpoint_status.entry((attempt.endpoint.to_string(), status.clone())).or_default() += 1;
        }
        metrics::histogram!(
            "wrapup_platform_call_duration_seconds",
            "connection" => self.connection.clone(),
            "endpoint" => attempt.endpoint,
            "method" => attempt.method,
        )
        .record(attempt.duration_ms as f64 / 1000.0);
        metrics::counter!(
            "wrapup_platform_calls_total",
            "connection" => self.connection.clone(),
            "endpoint" => attempt.endpoint,
            "status" => status,
        )
        .increment(1);
        self.sink.record(&attempt);
    }

    pub(crate) fn snapshot(&self) -> CallStats {
        self.stats.lock().clone()
    }
}
