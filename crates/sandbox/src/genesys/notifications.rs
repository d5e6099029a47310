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
//! (a `ConversationEventTopicConversation` snapshot on every change of one of its participants), the queue topic's
//! media variants (`….conversations.calls|callbacks|emails|messages`: the media-specific snapshot,
//! `QueueConversationCallEventTopicCallConversation` etc., for conversations of that media) and
//! `v2.detail.events.conversation.{conversationId}.{user.end|customer.end|acd.end|acw|wrapup}` (the detail event
//! body). Other topics are answered `Rejected`.
//!
//! Limits and life, as documented (`platforms/genesys-cloud.md` §5.1): at most [`MAX_TOPICS`] per channel (more is
//! a 400) and [`MAX_CHANNELS`] per OAuth client (the next one evicts the least recently used, unconnected ones
//! first). A channel lives [`DEFAULT_CHANNEL_LIFE`] on the sandbox clock (so an accelerated clock shortens it in
//! wall time); subscribing again extends it. [`Hub::tick`] sends `v2.system.socket_closing` [`CLOSING_NOTICE`]
//! before expiry and closes and deletes the channel at expiry.
//!
//! Faults: every frame for a connected socket drops that socket without a close frame with probability
//! `FaultProfile::ws_disconnect_rate` (the frame is lost with it); [`Hub::drop_sockets`] does the same on demand
//! (`POST /sandbox/v1/notifications/drop`). Ground truth ([`NotificationStats`]): frames sent, frames lost (no
//! socket, or dropped with one), sockets dropped and kicked, channels evicted and expired.

use jiff::{SignedDuration, Timestamp};
use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;

/// Topics per channel, as on the platform.
pub const MAX_TOPICS: usize = 1000;
/// Channels per OAuth client, as on the platform.
pub const MAX_CHANNELS: usize = 20;
/// How long a channel lives (sandbox clock).
pub const DEFAULT_CHANNEL_LIFE: SignedDuration = SignedDuration::from_hours(24);
/// How long before expiry `v2.system.socket_closing` is sent (sandbox clock).
pub const CLOSING_NOTICE: SignedDuration = SignedDuration::from_secs(60);

/// What a socket task is told to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Send this text frame.
    Frame(String),
    /// Send a close frame and end (kicked by a second socket, channel evicted or expired).
    Close,
    /// End without a close frame (a fault: the connection just breaks).
    Drop,
}

/// Ground truth of the websocket delivery.
#[derive(Debug, Default)]
pub struct NotificationStats {
    /// Event frames handed to a connected socket.
    pub frames_sent: AtomicU64,
    /// Event frames lost: the subscribed channel had no socket, or its socket was dropped on that frame.
    pub frames_dropped: AtomicU64,
    /// Sockets broken by the fault profile or on demand.
    pub sockets_dropped: AtomicU64,
    /// Sockets closed because a second one connected to their channel.
    pub sockets_kicked: AtomicU64,
    pub channels_created: AtomicU64,
    pub channels_evicted: AtomicU64,
    pub channels_expired: AtomicU64,
}

struct Channel {
    owner: usize,
    expires: Timestamp,
    closing_sent: bool,
    /// Larger is more recent (created, subscribed or connected).
    last_used: u64,
    topics: BTreeSet<String>,
    socket: Option<(u64, mpsc::UnboundedSender<Outgoing>)>,
}

/// All channels of the org.
#[derive(Default)]
pub struct Hub {
    state: Mutex<HubState>,
    /// `FaultProfile::ws_disconnect_rate` (f64 bits), kept here so publishing needs no access to the profile.
    disconnect_rate: AtomicU64,
    /// Channel life in seconds of the sandbox clock; 0 means [`DEFAULT_CHANNEL_LIFE`].
    life_secs: AtomicU64,
    pub stats: NotificationStats,
}

struct HubState {
    channels: HashMap<String, Channel>,
    /// Subscribers per topic (channel ids), so publishing needs no scan.
    by_topic: HashMap<String, BTreeSet<String>>,
    next_socket: u64,
    /// Draws the disconnect fault (kept apart from the simulation's RNG).
    rng: SmallRng,
}

impl Default for HubState {
    fn default() -> Self {
        Self {
            channels: HashMap::new(),
            by_topic: HashMap::new(),
            next_socket: 0,
            rng: SmallRng::seed_from_u64(0x5eed_0005),
        }
    }
}

impl HubState {
    fn touch(&mut self) -> u64 {
        self.next_socket += 1;
        self.next_socket
    }

    /// Removes a channel with its subscriptions, closing its socket.
    fn remove(&mut self, id: &str) {
        if let Some(ch) = self.channels.remove(id) {
            for t in &ch.topics {
                if let Some(s) = self.by_topic.get_mut(t) {
                    s.remove(id);
                }
            }
            self.by_topic.retain(|_, s| !s.is_empty());
            if let Some((_, tx)) = ch.socket {
                let _ = tx.send(Outgoing::Close);
            }
        }
    }
}

/// Whether the sandbox publishes on `topic`.
pub fn supported(topic: &str) -> bool {
    let parts: Vec<&str> = topic.split('.').collect();
    match parts.as_slice() {
        ["v2", "users", id, "conversations"] | ["v2", "routing", "queues", id, "conversations"] => !id.is_empty(),
        ["v2", "routing", "queues", id, "conversations", media] => !id.is_empty() && MEDIA.contains(media),
        ["v2", "detail", "events", "conversation", id, rest @ ..] => {
            !id.is_empty()
                && matches!(rest, ["user", "end"] | ["customer", "end"] | ["acd", "end"] | ["acw"] | ["wrapup"])
        }
        _ => false,
    }
}

/// The media variants of the queue conversation topic (`….conversations.calls` etc.).
const MEDIA: [&str; 4] = ["calls", "callbacks", "emails", "messages"];

impl Hub {
    /// How long a channel lives from its creation or last subscription (sandbox clock).
    pub fn channel_life(&self) -> SignedDuration {
        match self.life_secs.load(Ordering::Relaxed) {
            0 => DEFAULT_CHANNEL_LIFE,
            secs => SignedDuration::from_secs(secs.min(i64::MAX as u64) as i64),
        }
    }

    /// Shortens (or restores, with `None`) the channel life, for tests of renewal and expiry.
    pub fn set_channel_life(&self, life: Option<SignedDuration>) {
        let secs = life.map(|l| l.as_secs().max(1) as u64).unwrap_or(0);
        self.life_secs.store(secs, Ordering::Relaxed);
    }

    /// The websocket disconnect fault: probability per frame that the socket breaks.
    pub fn set_disconnect_rate(&self, rate: f64) {
        let rate = if rate.is_finite() { rate.clamp(0.0, 1.0) } else { 0.0 };
        self.disconnect_rate.store(rate.to_bits(), Ordering::Relaxed);
    }

    /// Creates a channel for OAuth client `owner` at `now`; returns its id and expiry. The client's 21st channel
    /// evicts the least recently used one, unconnected channels first.
    pub fn create(&self, owner: usize, now: Timestamp) -> (String, Timestamp) {
        let id = format!("streaming-0-{}", uuid::Uuid::new_v4().simple());
        let expires = now.checked_add(self.channel_life()).unwrap_or(now);
        let mut st = self.state.lock();
        let mine = st.channels.values().filter(|c| c.owner == owner).count();
        if mine >= MAX_CHANNELS {
            let victim = st
                .channels
                .iter()
                .filter(|(_, c)| c.owner == owner)
                .min_by_key(|(_, c)| (c.socket.is_some(), c.last_used))
                .map(|(id, _)| id.clone());
            if let Some(v) = victim {
                st.remove(&v);
                self.stats.channels_evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let last_used = st.touch();
        st.channels.insert(
            id.clone(),
            Channel { owner, expires, closing_sent: false, last_used, topics: BTreeSet::new(), socket: None },
        );
        self.stats.channels_created.fetch_add(1, Ordering::Relaxed);
        (id, expires)
    }

    /// Extends the channel's life from `now` (a subscription renews it, as on the platform).
    pub fn renew(&self, id: &str, now: Timestamp) -> Option<Timestamp> {
        let life = self.channel_life();
        let mut st = self.state.lock();
        let last_used = st.touch();
        let ch = st.channels.get_mut(id)?;
        ch.expires = now.checked_add(life).unwrap_or(now);
        ch.closing_sent = false;
        ch.last_used = last_used;
        Some(ch.expires)
    }

    /// Sends `v2.system.socket_closing` to sockets whose channel expires within [`CLOSING_NOTICE`], and closes and
    /// deletes expired channels.
    pub fn tick(&self, now: Timestamp) {
        let mut st = self.state.lock();
        let expired: Vec<String> =
            st.channels.iter().filter(|(_, c)| c.expires <= now).map(|(id, _)| id.clone()).collect();
        for id in &expired {
            st.remove(id);
        }
        self.stats.channels_expired.fetch_add(expired.len() as u64, Ordering::Relaxed);
        for ch in st.channels.values_mut() {
            if ch.closing_sent || ch.expires.duration_since(now) > CLOSING_NOTICE {
                continue;
            }
            if let Some((_, tx)) = &ch.socket {
                ch.closing_sent = true;
                let frame = json!({"topicName": "v2.system.socket_closing", "version": "2",
                                   "eventBody": {"message": "The socket will close."}});
                let _ = tx.send(Outgoing::Frame(frame.to_string()));
            }
        }
    }

    /// Breaks every connected socket without a close frame; returns how many.
    pub fn drop_sockets(&self) -> usize {
        let mut st = self.state.lock();
        let mut n = 0;
        for ch in st.channels.values_mut() {
            if let Some((_, tx)) = ch.socket.take() {
                let _ = tx.send(Outgoing::Drop);
                n += 1;
            }
        }
        self.stats.sockets_dropped.fetch_add(n as u64, Ordering::Relaxed);
        n
    }

    /// Whether the channel has a socket.
    pub fn is_connected(&self, id: &str) -> bool {
        self.state.lock().channels.get(id).is_some_and(|c| c.socket.is_some())
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
        if next.len() > MAX_TOPICS || topics.len() > MAX_TOPICS {
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

    /// Attaches a socket to the channel, kicking any previous one (it is told to close).
    pub fn connect(&self, id: &str) -> Option<(u64, mpsc::UnboundedReceiver<Outgoing>)> {
        let mut st = self.state.lock();
        let n = st.touch();
        let ch = st.channels.get_mut(id)?;
        let (tx, rx) = mpsc::unbounded_channel();
        ch.last_used = n;
        if let Some((_, old)) = ch.socket.replace((n, tx)) {
            let _ = old.send(Outgoing::Close);
            self.stats.sockets_kicked.fetch_add(1, Ordering::Relaxed);
        }
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

    /// Sends one frame on `topic` to every connected subscriber. A subscriber without a socket loses it; a
    /// connected one loses its socket (and the frame) with the disconnect fault's probability. The org publishes
    /// the media variants of the queue topic itself (their body is the media-specific model).
    pub fn publish(&self, topic: &str, body: &Value) {
        let rate = f64::from_bits(self.disconnect_rate.load(Ordering::Relaxed));
        let mut st = self.state.lock();
        let HubState { channels, by_topic, rng, .. } = &mut *st;
        let Some(subs) = by_topic.get(topic) else { return };
        let frame = json!({
            "topicName": topic,
            "version": "2",
            "eventBody": body,
            "metadata": {"CorrelationId": uuid::Uuid::new_v4().to_string()},
        })
        .to_string();
        for id in subs {
            let Some(ch) = channels.get_mut(id) else { continue };
            let Some((_, tx)) = &ch.socket else {
                self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if rate > 0.0 && rng.gen_bool(rate) {
                let _ = tx.send(Outgoing::Drop);
                ch.socket = None;
                self.stats.sockets_dropped.fetch_add(1, Ordering::Relaxed);
                self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if tx.send(Outgoing::Frame(frame.clone())).is_ok() {
                self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    fn topic(q: &str) -> String {
        format!("v2.routing.queues.{q}.conversations")
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Outgoing>) -> Vec<Outgoing> {
        let mut out = Vec::new();
        while let Ok(o) = rx.try_recv() {
            out.push(o);
        }
        out
    }

    fn stats(h: &Hub) -> [u64; 7] {
        let s = &h.stats;
        [
            &s.frames_sent,
            &s.frames_dropped,
            &s.sockets_dropped,
            &s.sockets_kicked,
            &s.channels_created,
            &s.channels_evicted,
            &s.channels_expired,
        ]
        .map(|a| a.load(Ordering::Relaxed))
    }

    #[test]
    fn the_twenty_first_channel_evicts_the_least_recently_used_unconnected_one() {
        let h = Hub::default();
        let ids: Vec<String> = (0..MAX_CHANNELS).map(|_| h.create(0, t0()).0).collect();
        let (_, mut first) = h.connect(&ids[0]).unwrap();
        h.subscribe(&ids[1], &[topic("q")], false).unwrap().unwrap();
        h.renew(&ids[1], t0());
        let other_client = h.create(1, t0()).0;
        let newest = h.create(0, t0()).0;
        assert_eq!(h.list(0).len(), MAX_CHANNELS);
        assert!(h.exists(&ids[0]), "the connected channel is kept although it is the oldest");
        assert!(h.exists(&ids[1]), "a channel used since is kept");
        assert!(!h.exists(&ids[2]), "the least recently used unconnected channel is evicted");
        assert!(h.exists(&newest) && h.exists(&other_client));
        assert!(drain(&mut first).is_empty());
        assert_eq!(stats(&h)[5], 1);
    }

    #[test]
    fn a_channel_lives_a_day_and_a_subscription_extends_it() {
        let h = Hub::default();
        let (id, expires) = h.create(0, t0());
        assert_eq!(expires, t0().checked_add(SignedDuration::from_hours(24)).unwrap());
        let later = t0().checked_add(SignedDuration::from_hours(1)).unwrap();
        assert_eq!(h.renew(&id, later), Some(later.checked_add(SignedDuration::from_hours(24)).unwrap()));
        h.set_channel_life(Some(SignedDuration::from_secs(90)));
        assert_eq!(h.create(0, t0()).1, t0().checked_add(SignedDuration::from_secs(90)).unwrap());
    }

    #[test]
    fn more_than_a_thousand_topics_are_refused_and_change_nothing() {
        let h = Hub::default();
        let (id, _) = h.create(0, t0());
        h.subscribe(&id, &[topic("q")], false).unwrap().unwrap();
        let many: Vec<String> = (0..=MAX_TOPICS).map(|i| topic(&format!("q{i}"))).collect();
        assert_eq!(h.subscribe(&id, &many, true), Some(Err(())));
        assert_eq!(h.topics(&id).unwrap(), [topic("q")]);
        assert_eq!(h.subscribe("nope", &[], false), None);
    }

    #[test]
    fn frames_reach_connected_subscribers_and_are_counted_lost_otherwise() {
        let h = Hub::default();
        let (a, _) = h.create(0, t0());
        let (b, _) = h.create(0, t0());
        for c in [&a, &b] {
            h.subscribe(c, &[topic("q")], false).unwrap().unwrap();
        }
        let (_, mut rx) = h.connect(&a).unwrap();
        h.publish(&topic("q"), &json!({"id": "c-1"}));
        let got = drain(&mut rx);
        let [Outgoing::Frame(f)] = &got[..] else { panic!("{got:?}") };
        let v: Value = serde_json::from_str(f).unwrap();
        assert_eq!((v["topicName"].as_str(), v["eventBody"]["id"].as_str()), (Some(topic("q").as_str()), Some("c-1")));
        assert_eq!(stats(&h)[..2], [1, 1], "b had no socket");
    }

    #[test]
    fn media_variant_topics_are_supported_and_published_only_as_named() {
        // The org renders the media-specific body for `….conversations.calls` and publishes it there itself; the
        // hub sends a frame only to the topic it is given.
        let h = Hub::default();
        let (a, _) = h.create(0, t0());
        let calls = format!("{}.calls", topic("q"));
        let answer = h.subscribe(&a, &[calls.clone(), format!("{}.chats", topic("q"))], false).unwrap().unwrap();
        assert_eq!(answer.iter().map(|(_, ok)| *ok).collect::<Vec<_>>(), [true, false]);
        assert!(h.wants(&calls) && !h.wants(&topic("q")));
        let (_, mut rx) = h.connect(&a).unwrap();
        h.publish(&topic("q"), &json!({"id": "c-1", "participants": [{"id": "p", "calls": []}]}));
        h.publish(&calls, &json!({"id": "c-2", "participants": [{"id": "p", "state": "connected"}]}));
        let got = drain(&mut rx);
        let [Outgoing::Frame(f)] = &got[..] else { panic!("{got:?}") };
        let v: Value = serde_json::from_str(f).unwrap();
        assert_eq!((v["topicName"].as_str(), v["eventBody"]["id"].as_str()), (Some(calls.as_str()), Some("c-2")));
    }

    #[test]
    fn the_disconnect_fault_breaks_the_socket_and_loses_the_frame() {
        let h = Hub::default();
        let (a, _) = h.create(0, t0());
        h.subscribe(&a, &[topic("q")], false).unwrap().unwrap();
        let (_, mut rx) = h.connect(&a).unwrap();
        h.set_disconnect_rate(1.0);
        h.publish(&topic("q"), &json!({}));
        assert_eq!(drain(&mut rx), [Outgoing::Drop]);
        assert!(!h.is_connected(&a));
        assert_eq!(stats(&h)[..3], [0, 1, 1]);
        h.set_disconnect_rate(f64::NAN);
        let (_, mut rx) = h.connect(&a).unwrap();
        h.publish(&topic("q"), &json!({}));
        assert!(matches!(&drain(&mut rx)[..], [Outgoing::Frame(_)]), "NaN means no fault");
        assert_eq!(h.drop_sockets(), 1);
        assert_eq!(drain(&mut rx), [Outgoing::Drop]);
    }

    #[test]
    fn a_second_socket_kicks_the_first_and_the_first_ending_does_not_detach_the_second() {
        let h = Hub::default();
        let (a, _) = h.create(0, t0());
        let (n1, mut rx1) = h.connect(&a).unwrap();
        let (n2, _rx2) = h.connect(&a).unwrap();
        assert_eq!(drain(&mut rx1), [Outgoing::Close]);
        h.disconnect(&a, n1);
        assert!(h.is_connected(&a));
        h.disconnect(&a, n2);
        assert!(!h.is_connected(&a));
        assert_eq!(stats(&h)[3], 1);
    }

    #[test]
    fn socket_closing_comes_once_before_expiry_then_the_channel_is_closed_and_deleted() {
        let h = Hub::default();
        let (a, expires) = h.create(0, t0());
        h.subscribe(&a, &[topic("q")], false).unwrap().unwrap();
        let (_, mut rx) = h.connect(&a).unwrap();
        h.tick(t0());
        assert!(drain(&mut rx).is_empty());
        let near = expires.checked_sub(SignedDuration::from_secs(30)).unwrap();
        h.tick(near);
        h.tick(near);
        let got = drain(&mut rx);
        assert!(matches!(&got[..], [Outgoing::Frame(f)] if f.contains("v2.system.socket_closing")), "{got:?}");
        h.tick(expires);
        assert_eq!(drain(&mut rx), [Outgoing::Close]);
        assert!(!h.exists(&a) && !h.wants(&topic("q")));
        assert_eq!(stats(&h)[6], 1);
    }
}
