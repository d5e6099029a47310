//! The Notification API hub: channels, their topic subscriptions, and the one websocket per channel.
//!
//! A channel is created over REST (`POST /api/v2/notifications/channels`), subscribed to topics (`POST`/`PUT
//! …/subscriptions`) and read over a websocket at its `connectUri` (`/channels/{id}` on the sandbox's host). The org
//! publishes while holding its own lock; the hub has its own small lock (order: org, then hub; websocket handlers
//! take only the hub's), and a publish costs one map lookup when nobody listens. Frames are the platform's
//! `{topicName, version:"2", eventBody, metadata:{CorrelationId}}`; as on the platform, frames for a channel
//! without a connected socket are lost (no replay), and a second socket on a channel kicks the first.
//!
//! Topics the sandbox publishes: `v2.users.{userId}.conversations`, `v2.routing.queues.{queueId}.conversations`
//! (a conversation snapshot on every change of one of its participants) and
//! `v2.detail.events.conversation.{conversationId}.{user.end|customer.end|acd.end|acw|wrapup}` (the detail event
//! body). Other topics are answered `Rejected`.

use jiff::Timestamp;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use tokio::sync::mpsc;

/// Topics per channel, as on the platform.
pub const MAX_TOPICS: usize = 1000;

struct Channel {
    owner: usize,
    expires: Timestamp,
    topics: BTreeSet<String>,
    socket: Option<(u64, mpsc::UnboundedSender<String>)>,
}

/// All channels of the org.
#[derive(Default)]
pub struct Hub {
    state: Mutex<HubState>,
}

#[derive(Default)]
struct HubState {
    channels: HashMap<String, Channel>,
    /// Subscribers per topic (channel ids), so publishing needs no scan.
    by_topic: HashMap<String, BTreeSet<String>>,
    next_socket: u64,
}

/// Whether the sandbox publishes on `topic`.
pub fn supported(topic: &str) -> bool {
    let parts: Vec<&str> = topic.split('.').collect();
    match parts.as_slice() {
        ["v2", "users", id, "conversations"] | ["v2", "routing", "queues", id, "conversations"] => !id.is_empty(),
        ["v2", "detail", "events", "conversation", id, rest @ ..] => {
            !id.is_empty()
                && matches!(rest, ["user", "end"] | ["customer", "end"] | ["acd", "end"] | ["acw"] | ["wrapup"])
        }
        _ => false,
    }
}

impl Hub {
    /// Creates a channel for OAuth client `owner`; returns its id.
    pub fn create(&self, owner: usize, expires: Timestamp) -> String {
        let id = format!("streaming-0-{}", uuid::Uuid::new_v4().simple());
        self.state
            .lock()
            .channels
            .insert(id.clone(), Channel { owner, expires, topics: BTreeSet::new(), socket: None });
        id
    }

    pub fn exists(&self, id: &str) -> bool {
        self.state.lock().channels.contains_key(id)
    }

    /// Channels of OAuth client `owner`: (id, expires).
    pub fn list(&self, owner: usize) -> Vec<(String, Timestamp)> {
        let mut v: Vec<_> = self
            .state
            .lock()
            .channels
            .iter()
            .filter(|(_, c)| c.owner == owner)
            .map(|(id, c)| (id.clone(), c.expires))
            .collect();
        v.sort();
        v
    }

    /// Adds (or with `replace`, sets) topics; returns every requested topic with whether it was permitted, or
    /// `None` if the channel does not exist, or `Err` when the channel would exceed [`MAX_TOPICS`].
    pub fn subscribe(&self, id: &str, topics: &[String], replace: bool) -> Option<Result<Vec<(String, bool)>, ()>> {
        let mut st = self.state.lock();
        let HubState { channels, by_topic, .. } = &mut *st;
        let ch = channels.get_mut(id)?;
        let permitted: Vec<(String, bool)> = topics.iter().map(|t| (t.clone(), supported(t))).collect();
        let mut next: BTreeSet<String> = if replace { BTreeSet::new() } else { ch.topics.clone() };
        next.extend(permitted.iter().filter(|(_, ok)| *ok).map(|(t, _)| t.clone()));
        if next.len() > MAX_TOPICS {
            return Some(Err(()));
        }
        for t in &ch.topics {
            if let Some(s) = by_topic.get_mut(t) {
                s.remove(id);
            }
        }
        for t in &next {
            by_topic.entry(t.clone()).or_default().insert(id.to_string());
        }
        by_topic.retain(|_, s| !s.is_empty());
        ch.topics = next;
        Some(Ok(permitted))
    }

    pub fn topics(&self, id: &str) -> Option<Vec<String>> {
        self.state.lock().channels.get(id).map(|c| c.topics.iter().cloned().collect())
    }

    /// Attaches a socket to the channel, kicking any previous one (its receiver ends).
    pub fn connect(&self, id: &str) -> Option<(u64, mpsc::UnboundedReceiver<String>)> {
        let mut st = self.state.lock();
        st.next_socket += 1;
        let n = st.next_socket;
        let ch = st.channels.get_mut(id)?;
        let (tx, rx) = mpsc::unbounded_channel();
        ch.socket = Some((n, tx));
        Some((n, rx))
    }

    /// Detaches socket `n` if it is still the channel's socket.
    pub fn disconnect(&self, id: &str, n: u64) {
        if let Some(ch) = self.state.lock().channels.get_mut(id) {
            if ch.socket.as_ref().is_some_and(|(m, _)| *m == n) {
                ch.socket = None;
            }
        }
    }

    /// Whether any channel listens on `topic` (cheap; lets the org skip building bodies).
    pub fn wants(&self, topic: &str) -> bool {
        self.state.lock().by_topic.contains_key(topic)
    }

    /// Whether any channel has any subscription.
    pub fn active(&self) -> bool {
        !self.state.lock().by_topic.is_empty()
    }

    /// Sends one frame on `topic` to every connected subscriber.
    pub fn publish(&self, topic: &str, body: &Value) {
        let st = self.state.lock();
        let Some(subs) = st.by_topic.get(topic) else { return };
        let frame = json!({
            "topicName": topic,
            "version": "2",
            "eventBody": body,
            "metadata": {"CorrelationId": uuid::Uuid::new_v4().to_string()},
        })
        .to_string();
        for id in subs {
            if let Some((_, tx)) = st.channels.get(id).and_then(|c| c.socket.as_ref()) {
                let _ = tx.send(frame.clone());
            }
        }
    }
}
