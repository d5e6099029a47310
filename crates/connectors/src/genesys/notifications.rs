//! The Notification API websocket: the second Genesys intake.
//!
//! [`run`] keeps one live channel for a set of topics and forwards what it carries into an `mpsc::Sender`:
//!
//! 1. `POST /api/v2/notifications/channels` → `{connectUri, id, expires}`;
//!    `POST …/channels/{id}/subscriptions` with the topics (at most 1,000 per channel);
//!    connect to `connectUri` (the URI the platform returned, never one we build).
//! 2. Read frames. `channel.metadata` frames (heartbeats, pongs) only prove the socket is alive; event frames go
//!    through [`events::parse_value`] and become [`Notification::Event`]s. Every `ping_interval` the client sends
//!    `{"message":"ping"}`; if nothing at all arrives for `idle_timeout` the socket is presumed dead.
//! 3. **Renewal, make before break.** A channel lives 24 h and the platform announces a server-side close with
//!    `v2.system.socket_closing`. Shortly before `expires` (`renew_before`), or on `socket_closing`, a *new* channel
//!    is created, subscribed and connected while the old socket is still read; then the old one is closed and
//!    drained for a moment. Events seen on both sockets in the overlap are duplicates with the same dedupe key, which
//!    intake collapses — duplicates are harmless, gaps are not.
//! 4. **Reconnect.** If the socket breaks or goes idle, the client reconnects to the *same* channel (it lives on,
//!    subscriptions included, until it expires) after a jittered exponential backoff: no channel or subscription
//!    call is spent. A new channel is built instead when the platform closed the socket itself (a close frame:
//!    another consumer took the channel, or it is being retired), answered `{"result":"404"}` (channel gone), the
//!    channel is about to be renewed anyway, reconnecting fails, or a reused channel dies young again. Messages
//!    sent while no socket was connected are lost (the platform does not replay them), so on reconnect a
//!    [`Notification::Gap`] names the blind window for the reconciler to sweep.
//!
//! The loop ends when the receiver is dropped. Platform calls go through the connection's [`GenesysClient`] at
//! `Live` priority, so they share its budget, tokens and attempt accounting.

use crate::budget::Priority;
use crate::error::PlatformError;
use crate::genesys::events::{self, Parsed};
use crate::genesys::GenesysClient;
use futures::{SinkExt, StreamExt};
use jiff::Timestamp;
use parking_lot::RwLock;
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wrapup_core::Event;

/// At most this many topics per channel (the platform answers 400 beyond).
pub const MAX_TOPICS_PER_CHANNEL: usize = 1000;
/// Largest frame accepted from the socket.
const MAX_FRAME_BYTES: usize = 1024 * 1024;
/// How long the old socket is still read after a switch to a new channel.
const DRAIN: Duration = Duration::from_secs(2);
/// A session shorter than this counts as a failure for the reconnect backoff.
const SHORT_SESSION: Duration = Duration::from_secs(30);

/// A notification channel (`POST /api/v2/notifications/channels`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub id: String,
    pub connect_uri: String,
    #[serde(default)]
    pub expires: Option<String>,
}

/// What the intake receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// A parsed event.
    Event(Event),
    /// No socket was connected from `from` to `to` (on the client's clock): events in that window may be lost.
    Gap { from: Timestamp, to: Timestamp },
}

/// Codes that count as the platform's own (shared with the catalog, which may refresh them).
pub type SystemCodes = Arc<RwLock<HashSet<String>>>;

/// How the websocket intake behaves.
#[derive(Debug, Clone)]
pub struct NotificationConfig {
    /// Concrete topics, e.g. `v2.detail.events.conversation.{id}.user.end` patterns resolved by the caller.
    pub topics: Vec<String>,
    /// Codes flagged `system` in `CodeRecorded`.
    pub system_code_ids: SystemCodes,
    /// How often the client sends `{"message":"ping"}`.
    pub ping_interval: Duration,
    /// No frame at all for this long → the socket is presumed dead.
    pub idle_timeout: Duration,
    /// Build the next channel this long before the current one `expires`.
    pub renew_before: Duration,
    /// Assumed channel life when `expires` is missing or unreadable.
    pub default_channel_life: Duration,
    /// Reconnect backoff: first delay and ceiling (jittered, doubling).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl NotificationConfig {
    pub fn new(topics: Vec<String>) -> Self {
        Self {
            topics,
            system_code_ids: Arc::default(),
            ping_interval: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            renew_before: Duration::from_secs(600),
            default_channel_life: Duration::from_secs(23 * 3600),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Why the websocket intake could not start or lost a session.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("no topics to subscribe to")]
    NoTopics,
    #[error("{count} topics exceed the {MAX_TOPICS_PER_CHANNEL} a channel can hold")]
    TooManyTopics { count: usize },
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error("the platform rejected topic subscriptions: {0}")]
    Rejected(String),
    #[error("the websocket failed: {0}")]
    WebSocket(String),
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One connected channel.
struct Live {
    channel: Channel,
    socket: Socket,
    renew_at: Instant,
}

/// A channel whose socket broke but which the platform still holds.
struct Reusable {
    channel: Channel,
    renew_at: Instant,
}

/// How a session ended.
enum End {
    /// The receiver is gone: stop.
    Stopped,
    /// The socket was lost at this moment; reconnect (to `reusable` if set).
    Lost { reason: String, reusable: Option<Reusable> },
}

/// Runs the websocket intake until `tx`'s receiver is dropped. Returns an error only for a configuration that can
/// never work (no topics, too many topics); everything else is retried.
pub async fn run(
    client: GenesysClient,
    config: NotificationConfig,
    tx: mpsc::Sender<Notification>,
) -> Result<(), NotificationError> {
    if config.topics.is_empty() {
        return Err(NotificationError::NoTopics);
    }
    if config.topics.len() > MAX_TOPICS_PER_CHANNEL {
        return Err(NotificationError::TooManyTopics { count: config.topics.len() });
    }
    let mut failures: u32 = 0;
    let mut down_since: Option<Timestamp> = None;
    let mut reuse: Option<Reusable> = None;
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        let reusing = reuse.is_some();
        let opened = match reuse.take() {
            Some(r) => match reconnect(r).await {
                Ok(live) => Ok(live),
                Err(e) => {
                    tracing::info!(connection = client.name(), error = %e, "Could not rejoin the notification channel; opening a new one.");
                    open(&client, &config).await
                }
            },
            None => open(&client, &config).await,
        };
        match opened {
            Ok(live) => {
                failures = 0;
                if let Some(from) = down_since.take() {
                    let gap = Notification::Gap { from, to: client.clock().now() };
                    if tx.send(gap).await.is_err() {
                        return Ok(());
                    }
                }
                tracing::info!(connection = client.name(), channel = %live.channel.id, "Notification channel connected.");
                let started = Instant::now();
                match session(&client, &config, &tx, live).await {
                    End::Stopped => return Ok(()),
                    End::Lost { reason, reusable } => {
                        tracing::warn!(connection = client.name(), reason = %reason, "Notification socket lost; reconnecting.");
                        metrics::counter!("wrapup_notification_reconnects_total", "connection" => client.name().to_string())
                            .increment(1);
                        down_since = Some(client.clock().now());
                        let young = started.elapsed() < SHORT_SESSION;
                        // A rejoined channel that dies young again is not worth a third try; nor is one that is
                        // due for renewal anyway.
                        reuse = reusable
                            .filter(|r| !(young && reusing) && r.renew_at > Instant::now() + config.backoff_max);
                        // A socket that dies young (a flapping proxy, a channel kicked by a second consumer) must
                        // not turn into a tight reconnect loop: back off as for a failed open.
                        if young {
                            failures += 1;
                            if sleep_or_stop(backoff(&config, failures), &tx).await {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            Err(e) => {
                failures += 1;
                let wait = backoff(&config, failures);
                tracing::warn!(
                    connection = client.name(),
                    error = %e,
                    retry_in_ms = wait.as_millis() as u64,
                    "Could not open a notification channel."
                );
                if down_since.is_none() {
                    down_since = Some(client.clock().now());
                }
                if sleep_or_stop(wait, &tx).await {
                    return Ok(());
                }
            }
        }
    }
}

/// Sleeps `wait`; true if the receiver went away meanwhile.
async fn sleep_or_stop(wait: Duration, tx: &mpsc::Sender<Notification>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => false,
        _ = tx.closed() => true,
    }
}

fn backoff(config: &NotificationConfig, failures: u32) -> Duration {
    let exp =
        config.backoff_base.saturating_mul(1u32.checked_shl(failures.saturating_sub(1).min(20)).unwrap_or(u32::MAX));
    let d = exp.min(config.backoff_max);
    let half = d / 2;
    half + half.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

/// Connects a new socket to a channel that is still alive (subscriptions stay with the channel).
async fn reconnect(r: Reusable) -> Result<Live, NotificationError> {
    let socket = connect(&r.channel.connect_uri).await?;
    Ok(Live { channel: r.channel, socket, renew_at: r.renew_at })
}

async fn connect(connect_uri: &str) -> Result<Socket, NotificationError> {
    let ws_config =
        WebSocketConfig::default().max_message_size(Some(MAX_FRAME_BYTES)).max_frame_size(Some(MAX_FRAME_BYTES));
    let (socket, _) = tokio_tungstenite::connect_async_with_config(connect_uri, Some(ws_config), false)
        .await
        .map_err(|e| NotificationError::WebSocket(e.to_string()))?;
    Ok(socket)
}

/// Creates, subscribes and connects a channel.
async fn open(client: &GenesysClient, config: &NotificationConfig) -> Result<Live, NotificationError> {
    let channel = client.create_notification_channel(Priority::live(None)).await?;
    let answer = client.subscribe_notification_topics(&channel.id, &config.topics, Priority::live(None)).await?;
    let rejected = rejected_topics(&answer);
    if !rejected.is_empty() {
        // Permitted topics still flow; a rejected one is an operator problem (permissions), not a reason to stop.
        tracing::error!(connection = client.name(), topics = %rejected.join(", "), "The platform rejected topic subscriptions.");
    }
    let socket = connect(&channel.connect_uri).await?;
    let life = channel
        .expires
        .as_deref()
        .and_then(|e| e.parse::<Timestamp>().ok())
        .map(|exp| client.clock().wall_duration(exp.duration_since(client.clock().now())))
        .unwrap_or(config.default_channel_life);
    let renew_at = Instant::now() + life.saturating_sub(config.renew_before);
    Ok(Live { channel, socket, renew_at })
}

/// Topics the subscription answer marks as not permitted.
fn rejected_topics(answer: &Value) -> Vec<String> {
    answer
        .get("entities")
        .and_then(Value::as_array)
        .map(|entities| {
            entities
                .iter()
                .filter(|e| e.get("state").and_then(Value::as_str).is_some_and(|s| s != "Permitted"))
                .filter_map(|e| e.get("id").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// What one frame means for the session.
enum FrameAction {
    Continue,
    Renew,
    /// The socket broke (or went silent); the channel may still be there.
    Lost(String),
    /// The platform ended the socket or the channel on purpose: do not rejoin it.
    Retired(String),
    Stopped,
}

async fn session(
    client: &GenesysClient,
    config: &NotificationConfig,
    tx: &mpsc::Sender<Notification>,
    mut live: Live,
) -> End {
    let mut ping = tokio::time::interval_at(Instant::now() + config.ping_interval, config.ping_interval);
    // After a stall (e.g. waiting for a renewal), send one ping, not a burst of the missed ones.
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_frame = Instant::now();
    loop {
        let idle_at = last_frame + config.idle_timeout;
        let action = tokio::select! {
            frame = live.socket.next() => {
                last_frame = Instant::now();
                match frame {
                    None => FrameAction::Lost("the socket closed".into()),
                    Some(Err(e)) => FrameAction::Lost(e.to_string()),
                    Some(Ok(msg)) => handle_message(client, config, tx, msg).await,
                }
            }
            _ = ping.tick() => {
                match live.socket.send(Message::text(r#"{"message":"ping"}"#)).await {
                    Ok(()) => FrameAction::Continue,
                    Err(e) => FrameAction::Lost(e.to_string()),
                }
            }
            _ = tokio::time::sleep_until(idle_at) => FrameAction::Lost("no frame within the idle timeout".into()),
            _ = tokio::time::sleep_until(live.renew_at) => FrameAction::Renew,
            _ = tx.closed() => FrameAction::Stopped,
        };
        match action {
            FrameAction::Continue => {}
            FrameAction::Stopped => {
                let _ = live.socket.close(None).await;
                return End::Stopped;
            }
            FrameAction::Lost(reason) => {
                let reusable = Some(Reusable { channel: live.channel, renew_at: live.renew_at });
                return End::Lost { reason, reusable };
            }
            FrameAction::Retired(reason) => return End::Lost { reason, reusable: None },
            FrameAction::Renew => match open(client, config).await {
                Ok(next) => {
                    tracing::info!(
                        connection = client.name(),
                        old = %live.channel.id,
                        new = %next.channel.id,
                        "Switched to a new notification channel."
                    );
                    let old = std::mem::replace(&mut live, next);
                    last_frame = Instant::now();
                    if let End::Stopped = drain(client, config, tx, old).await {
                        return End::Stopped;
                    }
                }
                Err(e) => {
                    // Keep reading the old socket; try again shortly (it may still have a minute or more).
                    tracing::warn!(connection = client.name(), error = %e, "Could not renew the notification channel.");
                    live.renew_at = Instant::now() + backoff(config, 1);
                }
            },
        }
    }
}

/// Closes a replaced socket, still forwarding whatever it delivers for a moment.
async fn drain(
    client: &GenesysClient,
    config: &NotificationConfig,
    tx: &mpsc::Sender<Notification>,
    mut old: Live,
) -> End {
    let _ = old.socket.send(Message::Close(None)).await;
    let until = Instant::now() + DRAIN;
    loop {
        let frame = tokio::select! {
            f = old.socket.next() => f,
            _ = tokio::time::sleep_until(until) => return drained(),
        };
        match frame {
            Some(Ok(msg)) => {
                if let FrameAction::Stopped = handle_message(client, config, tx, msg).await {
                    return End::Stopped;
                }
            }
            _ => return drained(),
        }
    }
}

/// The end of a replaced socket (whatever it is, the session goes on with the new one).
fn drained() -> End {
    End::Lost { reason: "drained".into(), reusable: None }
}

async fn handle_message(
    client: &GenesysClient,
    config: &NotificationConfig,
    tx: &mpsc::Sender<Notification>,
    msg: Message,
) -> FrameAction {
    let text = match &msg {
        Message::Text(t) => t.as_str(),
        Message::Close(_) => return FrameAction::Retired("the platform closed the socket".into()),
        // Pings are answered by tungstenite; binary frames are not part of the protocol.
        _ => return FrameAction::Continue,
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            reject(client, &format!("the frame is not valid JSON: {e}"));
            return FrameAction::Continue;
        }
    };
    match value.get("topicName").and_then(Value::as_str) {
        Some("channel.metadata") => return FrameAction::Continue,
        Some("v2.system.socket_closing") => return FrameAction::Renew,
        Some(_) => {}
        None => {
            // Channel-level answers: {"result":"404","message":…} means the channel is gone or replaced.
            if let Some(result) = value.get("result").and_then(Value::as_str) {
                if result != "200" {
                    return FrameAction::Retired(format!("the platform answered result {result}"));
                }
            }
            return FrameAction::Continue;
        }
    }
    let parsed = {
        let codes = config.system_code_ids.read();
        events::parse_value(client.name(), &value, &codes)
    };
    match parsed {
        Ok(parsed) => {
            for p in parsed {
                if let Parsed::Event(event) = p {
                    if tx.send(Notification::Event(event)).await.is_err() {
                        return FrameAction::Stopped;
                    }
                }
            }
        }
        Err(e) => reject(client, &e.to_string()),
    }
    FrameAction::Continue
}

fn reject(client: &GenesysClient, reason: &str) {
    tracing::warn!(connection = client.name(), reason, "A notification frame was rejected.");
    metrics::counter!("wrapup_notification_rejected_total", "connection" => client.name().to_string()).increment(1);
}
