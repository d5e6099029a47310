//! Attributing platform calls to the leg they were made for.
//!
//! The connector reports every HTTP attempt to its sink from inside the caller's future. The worker runs each leg's
//! platform calls inside [`collect`], which installs a task-local buffer; the sink ([`sink`]) pushes into it, and
//! the worker writes the buffered attempts into that leg's ledger. Calls made outside a worker (catalog refreshes)
//! are counted by the connector's stats but belong to no leg.

use std::cell::RefCell;
use std::future::Future;
use wrapup_connectors::attempt::{ApiAttempt, SharedAttemptSink};

tokio::task_local! {
    static ATTEMPTS: RefCell<Vec<ApiAttempt>>;
}

/// Runs `fut`, returning its output and every platform attempt it made.
pub async fn collect<F: Future>(fut: F) -> (F::Output, Vec<ApiAttempt>) {
    ATTEMPTS
        .scope(RefCell::new(Vec::new()), async move {
            let out = fut.await;
            let attempts = ATTEMPTS.with(|a| std::mem::take(&mut *a.borrow_mut()));
            (out, attempts)
        })
        .await
}

/// The sink to give a connector: buffers attempts for the leg being worked on, if any.
pub fn sink() -> SharedAttemptSink {
    std::sync::Arc::new(|attempt: &ApiAttempt| {
        let _ = ATTEMPTS.try_with(|a| a.borrow_mut().push(attempt.clone()));
    })
}

/// The ledger form of an attempt (no secrets: endpoint template, status, correlation id, timing).
pub fn ledger_detail(a: &ApiAttempt) -> serde_json::Value {
    serde_json::json!({
        "method": a.method,
        "endpoint": a.endpoint,
        "status": a.status,
        "correlation_id": a.correlation_id,
        "duration_ms": a.duration_ms,
        "error_class": a.error_class.as_ref().map(|c| c.as_str()),
    })
}
