//! The Notification API websocket as a second Genesys intake.
//!
//! For a connection whose config enables it (`[connections.intake] websocket = { enabled = true, queues = [...] }`):
//!
//! 1. **Topics.** The configured queue *names* are resolved to ids through the connection's catalog cache (retried
//!    until the catalog loads; a name the catalog does not know is logged and skipped) and become one
//!    `v2.routing.queues.{id}.conversations` topic each. Topics are split into channels of at most
//!    [`MAX_TOPICS_PER_CHANNEL`]; more than [`MAX_CHANNELS`] channels is refused: the platform keeps
//!    [`PLATFORM_MAX_CHANNELS`] per user and app (one more evicts the least recently used), and every channel may
//!    briefly need a second one while it renews.
//! 2. **Channels.** Each channel runs [`notifications::run`] on the connection's own [`GenesysClient`] — the one
//!    the worker uses — so channel and subscription calls share the budget, the tokens and the attempt counts. That
//!    loop creates, subscribes, reconnects with backoff and renews before expiry or on `socket_closing`.
//! 3. **Intake.** Events from all channels go through one bounded queue into [`Store::ingest`](wrapup_store::Store::ingest) in small batches
//!    (the same deduplicating, durable path as `POST /intake/{connection}`; the snapshots of a conversation repeat
//!    most facts, and their dedupe keys collapse them), and each batch with something new wakes the claim loop.
//!    A batch the store refuses is retried (the socket cannot redeliver it) until it is stored or the service stops.
//! 4. **Gaps.** While no socket is connected the platform drops messages. Each reconnect reports the blind window;
//!    it is logged at warn level, counted (`wrapup_intake_gaps_total`, `wrapup_intake_gap_seconds_total`), and the
//!    connection's reconciler is asked for a pass.
//!
//! On shutdown the queue's receiver is dropped, which ends every channel loop (they close their sockets).
//!
//! Metrics: `wrapup_intake_events_total{connection, result = accepted|duplicate, intake = "websocket"}`.

use crate::app::AppState;
use crate::scheduler::Shutdown;
use crate::worker::ConnectionRuntime;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use wrapup_connectors::genesys::notifications::{self, Notification, NotificationConfig, MAX_TOPICS_PER_CHANNEL};
use wrapup_connectors::genesys::queue_topics::queue_topic;
use wrapup_connectors::genesys::GenesysClient;
use wrapup_core::catalog::Catalog;
use wrapup_core::{Event, Platform};
use wrapup_store::Ingested;

/// Channels per OAuth client and app the platform keeps (`platforms/genesys-cloud.md` §5.1); one more evicts the
/// least recently used.
pub const PLATFORM_MAX_CHANNELS: usize = 20;
/// Channels the intake plans for. Each channel loop briefly holds a second channel while it renews (make before
/// break), and loops started together renew together, so half the platform's limit is the most that can never
/// make the platform evict one of our live channels.
pub const MAX_CHANNELS: usize = PLATFORM_MAX_CHANNELS / 2;
/// Events per store transaction.
const BATCH: usize = 64;
/// Notifications buffered between the sockets and the store.
const QUEUE: usize = 1024;
/// How long a channel loop may take to close its socket on shutdown.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The websocket intake of one connection.
#[derive(Clone)]
pub struct WebsocketSpec {
    /// The connection's client (shared with the worker).
    pub client: GenesysClient,
    /// Queue names whose conversations are subscribed to.
    pub queues: Vec<String>,
    /// Code ids flagged `system` in `CodeRecorded`.
    pub system_code_ids: HashSet<String>,
    /// Reconnect backoff, first delay and ceiling.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// First and longest wait before resolving the queues again when the catalog is unavailable (doubling).
    pub resolve_retry: Duration,
    pub resolve_retry_max: Duration,
}

impl WebsocketSpec {
    pub fn new(client: GenesysClient, queues: Vec<String>, system_code_ids: HashSet<String>) -> Self {
        Self {
            client,
            queues,
            system_code_ids,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            resolve_retry: Duration::from_millis(500),
            resolve_retry_max: Duration::from_secs(30),
        }
    }
}

/// Why a websocket intake cannot be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("none of the configured queues ({0}) exists in the catalog")]
    NoQueues(String),
    #[error(
        "{topics} topics need {channels} channels, more than the {MAX_CHANNELS} that fit the platform's {PLATFORM_MAX_CHANNELS} with room to renew"
    )]
    TooManyChannels { topics: usize, channels: usize },
}

/// Queue names → topics, with the names the catalog does not know.
pub fn topics_for(catalog: &Catalog, names: &[String]) -> (Vec<String>, Vec<String>) {
    let mut topics = Vec::new();
    let mut unknown = Vec::new();
    let mut seen = HashSet::new();
    for name in names {
        match catalog.queue_by_name(name) {
            Some(q) => {
                if seen.insert(q.id.clone()) {
                    topics.push(queue_topic(&q.id));
                }
            }
            None => unknown.push(name.clone()),
        }
    }
    (topics, unknown)
}

/// Splits topics into channels of at most [`MAX_TOPICS_PER_CHANNEL`], refusing more than [`MAX_CHANNELS`].
pub fn plan_channels(topics: Vec<String>) -> Result<Vec<Vec<String>>, PlanError> {
    let channels = topics.len().div_ceil(MAX_TOPICS_PER_CHANNEL);
    if channels > MAX_CHANNELS {
        return Err(PlanError::TooManyChannels { topics: topics.len(), channels });
    }
    Ok(topics.chunks(MAX_TOPICS_PER_CHANNEL).map(<[String]>::to_vec).collect())
}

/// How often the replica that holds a connection's websocket intake renews its lease (and the others ask for it):
/// a dead holder's intake is taken over within three of these ([`crate::jobs::lease_for`]).
pub const HOLD_EVERY: Duration = Duration::from_secs(2);

/// Runs the websocket intake of `runtime`'s connection until `shutdown`, while this process holds it. The platform
/// keeps a few channels per OAuth client, so of several replicas sharing a store only one holds the intake at a time
/// (the job `websocket:{connection}`, [`crate::jobs::JobLeases`]); the others wait and take it over when the holder
/// dies. A replica that takes it over asks the reconciler for a pass, for what no socket heard in between.
pub async fn run(state: Arc<AppState>, runtime: Arc<ConnectionRuntime>, spec: WebsocketSpec, shutdown: Shutdown) {
    let job = format!("websocket:{}", runtime.name);
    let mut first = true;
    loop {
        while !state.leases.leads(&job, HOLD_EVERY).await {
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(HOLD_EVERY) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        if !first {
            tracing::info!(connection = %runtime.name, "This replica took over the websocket intake.");
            if let Some(reconciler) = state.reconcilers.get(&runtime.name) {
                reconciler.request_pass();
            }
        }
        first = false;
        // Held until shutdown, or until a renewal finds the lease gone (this process stalled past it).
        let held = Shutdown::default();
        let keeper = {
            let (state, job, held, shutdown) = (state.clone(), job.clone(), held.clone(), shutdown.clone());
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(HOLD_EVERY) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    if !state.leases.leads(&job, HOLD_EVERY).await {
                        tracing::warn!(job = %job, "This replica lost the websocket intake's lease; another takes it over.");
                        break;
                    }
                }
                held.cancel();
            })
        };
        run_channels(state.clone(), runtime.clone(), spec.clone(), held.clone()).await;
        keeper.abort();
        // Ended by itself (a configuration that can never work), or on shutdown: done. Only a lost lease loops.
        if shutdown.is_cancelled() || !held.is_cancelled() {
            return;
        }
    }
}

/// Runs the channels of `runtime`'s connection until `shutdown`.
async fn run_channels(state: Arc<AppState>, runtime: Arc<ConnectionRuntime>, spec: WebsocketSpec, shutdown: Shutdown) {
    let connection = runtime.name.clone();
    let Some(channels) = resolve(&runtime, &spec, &shutdown).await else {
        return;
    };
    let (tx, mut rx) = mpsc::channel::<Notification>(QUEUE);
    let system_codes: notifications::SystemCodes = Arc::new(parking_lot::RwLock::new(spec.system_code_ids.clone()));
    let mut loops = Vec::new();
    for topics in channels {
        let mut config = NotificationConfig::new(topics);
        config.system_code_ids = system_codes.clone();
        config.backoff_base = spec.backoff_base;
        config.backoff_max = spec.backoff_max;
        let client = spec.client.clone();
        let tx = tx.clone();
        let connection = connection.clone();
        loops.push(tokio::spawn(async move {
            if let Err(e) = notifications::run(client, config, tx).await {
                tracing::error!(connection = %connection, error = %e, "The websocket intake cannot run.");
            }
        }));
    }
    drop(tx);
    tracing::info!(connection = %connection, channels = loops.len(), "Websocket intake started.");
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            n = rx.recv() => n,
            _ = shutdown.cancelled() => None,
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        while let Some(n) = next.take() {
            match n {
                Notification::Event(e) => batch.push(e),
                Notification::Gap { from, to } => {
                    let secs = to.duration_since(from).as_secs_f64().max(0.0);
                    tracing::warn!(
                        connection = %connection,
                        from = %from,
                        to = %to,
                        seconds = secs,
                        "The notification socket was down; events in this window may be lost until reconciled."
                    );
                    metrics::counter!("wrapup_intake_gaps_total", "connection" => connection.clone()).increment(1);
                    metrics::counter!("wrapup_intake_gap_seconds_total", "connection" => connection.clone())
                        .increment(secs.round() as u64);
                    // The reconciler sweeps the platform's record for what the socket missed.
                    if let Some(reconciler) = state.reconcilers.get(&connection) {
                        reconciler.request_pass();
                    }
                }
            }
            if batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() && !store_batch(&state, &connection, &batch, &shutdown, "websocket").await {
            break;
        }
        batch.clear();
    }
    // Dropping the receiver ends every channel loop; they close their sockets.
    drop(rx);
    for mut l in loops {
        // A loop waiting on the platform (a channel being opened) notices only when that call returns.
        if tokio::time::timeout(STOP_GRACE, &mut l).await.is_err() {
            l.abort();
        }
    }
    tracing::info!(connection = %connection, "Websocket intake stopped.");
}

/// Resolves the queues to channel plans, retrying while the catalog is unavailable. `None` on shutdown or when
/// the configuration can never work.
async fn resolve(runtime: &ConnectionRuntime, spec: &WebsocketSpec, shutdown: &Shutdown) -> Option<Vec<Vec<String>>> {
    let connection = &runtime.name;
    let mut wait = spec.resolve_retry;
    loop {
        let catalog = tokio::select! {
            c = runtime.catalog.get() => c,
            _ = shutdown.cancelled() => return None,
        };
        let problem = match catalog {
            Ok(catalog) => {
                let (topics, unknown) = topics_for(&catalog, &spec.queues);
                if !unknown.is_empty() {
                    tracing::error!(
                        connection = %connection,
                        queues = %unknown.join(", "),
                        "Websocket intake: these queues are not in the catalog and are not subscribed."
                    );
                }
                if topics.is_empty() {
                    PlanError::NoQueues(spec.queues.join(", ")).to_string()
                } else {
                    match plan_channels(topics) {
                        Ok(plan) => return Some(plan),
                        Err(e) => {
                            tracing::error!(connection = %connection, error = %e, "The websocket intake cannot run.");
                            return None;
                        }
                    }
                }
            }
            Err(e) => format!("the catalog is unavailable: {e}"),
        };
        tracing::warn!(
            connection = %connection,
            problem = %problem,
            retry_in_ms = wait.as_millis() as u64,
            "Websocket intake waits for its queues."
        );
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return None,
        }
        wait = (wait * 2).min(spec.resolve_retry_max);
        // A queue created meanwhile only shows up in a fresh catalog.
        tokio::select! {
            _ = runtime.catalog.refresh() => {}
            _ = shutdown.cancelled() => return None,
        }
    }
}

/// Stores one batch, retrying store failures; false when the service stops first.
pub(crate) async fn store_batch(
    state: &AppState,
    connection: &str,
    batch: &[Event],
    shutdown: &Shutdown,
    intake: &'static str,
) -> bool {
    let platform = state.connections.get(connection).map_or(Platform::Genesys, |c| c.platform.platform());
    let batch = crate::intake::with_valid_ids(platform, connection, intake, batch);
    if batch.is_empty() {
        return true;
    }
    let mut wait = Duration::from_millis(100);
    loop {
        match state.store.ingest(&batch, state.clock.now()).await {
            Ok(results) => {
                let accepted = results.iter().filter(|r| **r == Ingested::New).count();
                let duplicates = results.len() - accepted;
                let count = |result: &'static str, n: usize| {
                    metrics::counter!(
                        "wrapup_intake_events_total",
                        "connection" => connection.to_string(),
                        "result" => result,
                        "intake" => intake
                    )
                    .increment(n as u64);
                };
                count("accepted", accepted);
                count("duplicate", duplicates);
                if accepted > 0 {
                    state.wake.notify_one();
                }
                return true;
            }
            Err(e) => {
                tracing::error!(connection = %connection, error = %e, events = batch.len(), "Could not store websocket events; retrying.");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.cancelled() => return false,
                }
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrapup_core::catalog::QueueEntry;

    fn catalog(names: &[&str]) -> Catalog {
        Catalog {
            codes: Vec::new(),
            queues: names
                .iter()
                .enumerate()
                .map(|(i, n)| QueueEntry {
                    id: format!("q-{i}"),
                    name: n.to_string(),
                    code_ids: Vec::new(),
                    acw_timeout_ms: None,
                    acw_mode: None,
                    acw: None,
                })
                .collect(),
        }
    }

    #[test]
    fn queue_names_become_topics_and_unknown_names_are_reported() {
        let c = catalog(&["Support", "Sales"]);
        let names = ["Sales".to_string(), "Nope".to_string(), "Sales".to_string(), "Support".to_string()];
        let (topics, unknown) = topics_for(&c, &names);
        assert_eq!(topics, ["v2.routing.queues.q-1.conversations", "v2.routing.queues.q-0.conversations"]);
        assert_eq!(unknown, ["Nope"]);
    }

    #[test]
    fn topics_are_split_into_channels_of_at_most_a_thousand_leaving_room_to_renew_under_twenty() {
        let topics = |n: usize| (0..n).map(|i| format!("t{i}")).collect::<Vec<_>>();
        assert_eq!(plan_channels(topics(1)).unwrap().len(), 1);
        let plan = plan_channels(topics(2500)).unwrap();
        assert_eq!(plan.iter().map(Vec::len).collect::<Vec<_>>(), [1000, 1000, 500]);
        assert_eq!(plan_channels(topics(10_000)).unwrap().len(), 10);
        assert_eq!(plan_channels(topics(10_001)), Err(PlanError::TooManyChannels { topics: 10_001, channels: 11 }));
    }
}
