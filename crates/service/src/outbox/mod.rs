//! The outbox's delivery: every final code, to every sink that wants it, signed, at least once.
//!
//! The store writes a message for each change of a leg's outcome in the commit that made it (`wrapup_store::outbox`).
//! Two kinds of task carry them out:
//!
//! - **the router** reads the messages not routed yet and, for each configured sink whose filter wants one, renders
//!   the body that sink gets — the stored message with the code's name completed from the catalog and the sink's
//!   `mapping` value as `data.disposition` — and stores it as a pending `(message, sink)` delivery. The body is
//!   frozen there: every retry and replay sends the same bytes under the same `webhook-id`.
//! - **one loop per sink** (`deliver.rs`) claims due deliveries with a lease (so replicas on PostgreSQL share the
//!   work and a dead replica's deliveries are taken over when the lease ends), POSTs each, signed per Standard
//!   Webhooks (`sign.rs`), and records the answer: 2xx delivered; 429 retried after `Retry-After`; 408, 5xx (not
//!   501), timeouts and refused connections retried with full-jitter exponential backoff; 410 disables the sink
//!   (persisted, so every replica stops, until `wrapup outbox retry --enable`); other answers, and anything still
//!   undelivered when the sink's `max_age` has passed since the message was written, become dead letters.
//!
//! The store never hands out a leg's later message while an earlier one is pending for that sink, so a sink sees a
//! leg's `leg.finished` before its `leg.outcome_changed`. Deliveries of different legs run concurrently, up to the
//! sink's `concurrency`. Both tasks wake when a commit changed an outcome (the store's outcome hook), when a
//! delivery becomes due, and every `poll` otherwise (for what other replicas wrote). A crash between a POST and its
//! record sends the message again: receivers deduplicate by `webhook-id`.

pub mod admin;
mod deliver;
pub mod sign;
#[cfg(test)]
mod tests;

use crate::worker::ConnectionRuntime;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use wrapup_config::SinkConfig;
use wrapup_core::clock::SharedClock;
use wrapup_store::{MessageBody, NewDelivery, OutboxMessage, Route, Store};

pub use deliver::{backoff, classify, Verdict};

/// Messages routed per store call.
const ROUTE_BATCH: u32 = 500;

/// How the outbox runs.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// The longest the loops wait without a wake-up before they look at the store again (work other replicas
    /// wrote, a manual clock stepped in tests).
    pub poll: Duration,
    /// How long a claimed delivery is leased (wall time), at least a sink's timeout and 30 s.
    pub lease: Duration,
    /// First retry delay ceiling; doubled per attempt (full jitter), up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            poll: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(600),
        }
    }
}

/// The running outbox: its wake-up, its tasks, and a counter of recorded attempts.
pub struct Outbox {
    pub wake: Arc<Notify>,
    pub tasks: Vec<JoinHandle<()>>,
    /// Bumped after each batch of delivery attempts is recorded in the store (a sink disabled included), so that a
    /// caller can wait for the store to change instead of polling it.
    pub recorded: tokio::sync::watch::Receiver<u64>,
}

/// What the loops share.
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub settings: OutboxSettings,
    pub owner: String,
    pub http: reqwest::Client,
    /// Rung after each route, so that sink loops claim at once.
    pub routed: Arc<Notify>,
    /// See [`Outbox::recorded`].
    pub recorded: tokio::sync::watch::Sender<u64>,
}

/// Starts the router and one loop per sink. `wake` is rung by the outcome hook after each commit that wrote a
/// message.
pub fn start(
    store: Arc<dyn Store>,
    clock: SharedClock,
    sinks: Vec<SinkConfig>,
    connections: HashMap<String, Arc<ConnectionRuntime>>,
    settings: OutboxSettings,
    wake: Arc<Notify>,
    shutdown: crate::scheduler::Shutdown,
) -> Outbox {
    let (recorded, recorded_rx) = tokio::sync::watch::channel(0);
    if sinks.is_empty() {
        return Outbox { wake, tasks: Vec::new(), recorded: recorded_rx };
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wrapup/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    let sinks: Vec<Arc<SinkConfig>> = sinks.into_iter().map(Arc::new).collect();
    let routed = Arc::new(Notify::new());
    let shared = Arc::new(Shared {
        store,
        clock,
        settings,
        owner: format!("outbox-{}", uuid::Uuid::now_v7()),
        http,
        routed: routed.clone(),
        recorded,
    });
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(run_router(shared.clone(), sinks.clone(), connections, wake.clone(), shutdown.clone())));
    for sink in sinks {
        tasks.push(tokio::spawn(deliver::run_sink(shared.clone(), sink, shutdown.clone())));
    }
    Outbox { wake, tasks, recorded: recorded_rx }
}

async fn run_router(
    shared: Arc<Shared>,
    sinks: Vec<Arc<SinkConfig>>,
    connections: HashMap<String, Arc<ConnectionRuntime>>,
    wake: Arc<Notify>,
    shutdown: crate::scheduler::Shutdown,
) {
    loop {
        let more = match route_once(&shared, &sinks, &connections).await {
            Ok(n) => n == ROUTE_BATCH as usize,
            Err(e) => {
                tracing::warn!(error = %e, "The outbox could not route messages; trying again.");
                false
            }
        };
        if more {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(shared.settings.poll) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Routes one batch of messages; returns how many.
async fn route_once(
    shared: &Shared,
    sinks: &[Arc<SinkConfig>],
    connections: &HashMap<String, Arc<ConnectionRuntime>>,
) -> Result<usize, wrapup_store::StoreError> {
    let messages = shared.store.outbox_unrouted(ROUTE_BATCH).await?;
    if messages.is_empty() {
        return Ok(0);
    }
    let routes: Vec<Route> = messages
        .iter()
        .map(|m| {
            let code_name = |id: &str| {
                connections
                    .get(&m.leg.connection)
                    .and_then(|c| c.catalog.cached())
                    .and_then(|cat| cat.code_by_id(id).map(|c| c.name.clone()))
            };
            Route { seq: m.seq, deliveries: sinks.iter().filter_map(|s| delivery_for(m, s, &code_name)).collect() }
        })
        .collect();
    shared.store.outbox_route(&routes, shared.clock.now()).await?;
    shared.routed.notify_waiters();
    Ok(messages.len())
}

/// The delivery of `message` to `sink`, if the sink wants it: the body it gets, and when it is given up.
pub fn delivery_for(
    message: &OutboxMessage,
    sink: &SinkConfig,
    code_name: &dyn Fn(&str) -> Option<String>,
) -> Option<NewDelivery> {
    let body = render(message, sink, code_name)?;
    let queue = body.data.queue.as_ref().and_then(|q| q.name.as_deref());
    if !sink.filter.wants(&message.leg.connection, message.outcome, queue) {
        return None;
    }
    let max_age = jiff::SignedDuration::try_from(sink.max_age).unwrap_or(jiff::SignedDuration::MAX);
    Some(NewDelivery {
        sink: sink.name.clone(),
        body: serde_json::to_string(&body).ok()?,
        expires_at: message.created_at.checked_add(max_age).unwrap_or(jiff::Timestamp::MAX),
    })
}

/// The message as `sink` gets it: the code's name completed from the catalog, and the sink's value for it.
fn render(
    message: &OutboxMessage,
    sink: &SinkConfig,
    code_name: &dyn Fn(&str) -> Option<String>,
) -> Option<MessageBody> {
    let mut body: MessageBody = match serde_json::from_value(message.body.clone()) {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(message = %message.id, error = %e, "An outbox message cannot be read; it is not delivered.");
            return None;
        }
    };
    if let Some(code) = body.data.code.as_mut() {
        if code.name.is_none() {
            code.name = code_name(&code.id);
        }
        body.data.disposition = code.name.as_ref().and_then(|n| sink.mapping.get(n).cloned());
    }
    Some(body)
}
