//! `GET /api/v1/events`: server-sent events for the dashboard's live figures.
//!
//! The stream sends an `outcomes` event ([`OutcomesEvent`]) when it opens and again whenever the counts change, and a
//! `heartbeat` comment in between so that proxies keep the connection. What wakes it is cheap: the store's outcome
//! hook ticks [`Live`] after every commit that changed an outcome, and a slow poll catches what no outcome change
//! reports (new legs, still open). Counts are read from the store at most once a second per stream however fast
//! outcomes change, and sent only when they differ from the last ones sent.
//!
//! The HTTP edge closes a request that takes longer than `request_timeout` (its answer included), so a stream ends
//! by itself a little before that, telling the browser to reconnect at once (`retry`); `EventSource` does. Streams are
//! capped ([`MAX_STREAMS`]): one over the cap is answered 503.

use crate::app::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use wrapup_core::Outcome;

/// Streams open at once, across every browser.
pub const MAX_STREAMS: usize = 32;
/// Least time between two store reads of one stream.
pub const MIN_READ_INTERVAL: Duration = Duration::from_secs(1);
/// Longest time between two store reads while nothing reports a change (new open legs report none).
pub const POLL_EVERY: Duration = Duration::from_secs(5);
/// Time between heartbeat comments.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// What a browser waits before it reconnects after a stream ended.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// The change signal and the cap on streams, shared by every stream.
pub struct Live {
    changes: watch::Sender<u64>,
    streams: Arc<Semaphore>,
}

impl Default for Live {
    fn default() -> Self {
        Self { changes: watch::Sender::new(0), streams: Arc::new(Semaphore::new(MAX_STREAMS)) }
    }
}

impl Live {
    /// Called after every commit that changed an outcome.
    pub fn outcome_changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees the next outcome change: what a caller waiting for a leg to finish waits on.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The `outcomes` event's data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutcomesEvent {
    pub connections: Vec<ConnectionOutcomes>,
}

/// One connection's legs by outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionOutcomes {
    pub name: String,
    pub platform: String,
    /// Every leg the store holds for the connection.
    pub legs: u64,
    /// Legs per outcome, every outcome listed (zero included), and `open` for legs not finished.
    pub outcomes: BTreeMap<String, u64>,
}

/// Every connection's counts, by name.
pub async fn read_outcomes(state: &AppState) -> Result<OutcomesEvent, wrapup_store::StoreError> {
    let mut names: Vec<&String> = state.connections.keys().collect();
    names.sort();
    let mut connections = Vec::with_capacity(names.len());
    for name in names {
        let counts = state.store.outcome_counts(name).await?;
        let mut outcomes: BTreeMap<String, u64> = Outcome::ALL.iter().map(|o| (o.as_str().to_string(), 0)).collect();
        outcomes.insert("open".to_string(), 0);
        for (outcome, n) in &counts {
            *outcomes.entry(outcome.map(|o| o.as_str()).unwrap_or("open").to_string()).or_default() += n;
        }
        let platform = state.connections[name].platform.platform().as_str().to_string();
        connections.push(ConnectionOutcomes { name: name.clone(), platform, legs: counts.values().sum(), outcomes });
    }
    Ok(OutcomesEvent { connections })
}

struct Stream {
    state: Arc<AppState>,
    changes: watch::Receiver<u64>,
    last_sent: Option<OutcomesEvent>,
    last_read: Option<Instant>,
    ends_at: Instant,
    opened: bool,
    _slot: OwnedSemaphorePermit,
}

impl Stream {
    /// The next event to send, or `None` when the stream's time is up.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.opened {
                tokio::select! {
                    changed = self.changes.changed() => if changed.is_err() {
                        // The service is going away: poll until the stream ends.
                        tokio::time::sleep(POLL_EVERY).await;
                    },
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                    _ = tokio::time::sleep_until(self.ends_at) => return None,
                }
            }
            if let Some(read) = self.last_read {
                tokio::select! {
                    _ = tokio::time::sleep_until(read + MIN_READ_INTERVAL) => {}
                    _ = tokio::time::sleep_until(self.ends_at) => return None,
                }
            }
            self.changes.borrow_and_update();
            self.last_read = Some(Instant::now());
            let Ok(now) = read_outcomes(&self.state).await else { continue };
            if self.last_sent.as_ref() == Some(&now) {
                continue;
            }
            let mut event = Event::default().event("outcomes").json_data(&now).ok()?;
            if !self.opened {
                event = event.retry(RECONNECT_AFTER);
                self.opened = true;
            }
            self.last_sent = Some(now);
            return Some(event);
        }
    }
}

/// Server-sent events for the dashboard: `event: outcomes` with every connection's counts when the stream opens and
/// whenever they change, a `: heartbeat` comment between. The request must accept `text/event-stream` (as
/// `EventSource` does). The stream ends a little before the server's request timeout; `EventSource` reconnects.
#[utoipa::path(get, path = "/api/v1/events", tag = "dashboard", security(("bearer" = []), ("dashboard_cookie" = [])), responses(
    (status = 200, description = "The stream; each `outcomes` event's data is this object", body = OutcomesEvent, content_type = "text/event-stream"),
    (status = 401, description = "`unauthenticated`", body = crate::admin::ErrorBody),
    (status = 406, description = "`not_acceptable`: the request does not accept `text/event-stream`", body = crate::admin::ErrorBody),
    (status = 503, description = "`too_many_streams`", body = crate::admin::ErrorBody),
))]
pub async fn stream(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(r) = crate::admin::authorized(&state, &headers) {
        return *r;
    }
    let accepts =
        headers.get_all(header::ACCEPT).iter().any(|v| v.to_str().is_ok_and(|v| v.contains("text/event-stream")));
    if !accepts {
        let message = "this is a server-sent event stream: send 'Accept: text/event-stream'";
        return crate::intake::error(StatusCode::NOT_ACCEPTABLE, "not_acceptable", message);
    }
    let Ok(slot) = state.dashboard.streams.clone().try_acquire_owned() else {
        return crate::edge::unavailable("too_many_streams", format!("{MAX_STREAMS} event streams are open already"));
    };
    // End before the edge would cut the answer off (see the module's doc).
    let lifetime = state.edge.limits.request_timeout.mul_f64(0.9);
    let stream = Stream {
        changes: state.dashboard.changes.subscribe(),
        state: state.clone(),
        last_sent: None,
        last_read: None,
        ends_at: Instant::now() + lifetime,
        opened: false,
        _slot: slot,
    };
    let events = futures::stream::unfold(stream, |mut s| async move {
        s.next().await.map(|e| (Ok::<_, std::convert::Infallible>(e), s))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(HEARTBEAT_EVERY).text("heartbeat")).into_response()
}
