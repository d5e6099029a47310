//! Event delivery: detail events wrapped in Amazon EventBridge envelopes, POSTed to every target, at least once.
//!
//! The org pushes [`OutEvent`]s into an unbounded channel while holding its lock (cheap, never blocks). The
//! dispatcher task turns each into an envelope (serialized once), applies the event faults of the current
//! [`FaultProfile`](crate::config::FaultProfile) — drop, duplicate (same envelope id twice, as a redelivery would),
//! delay and reorder (held back on a timer so later events overtake it) — and hands the bytes to one worker per
//! target. A worker delivers in order and retries non-2xx answers and connection errors with exponential backoff
//! (bounded: [`MAX_ATTEMPTS`]); an event it gives up on counts as a failed delivery. Delays are wall time.

use crate::config::EventTarget;
use crate::engine::iso;
use crate::genesys::model::Org;
use crate::report::EventReport;
use bytes::Bytes;
use jiff::Timestamp;
use parking_lot::Mutex;
use rand::Rng;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Attempts per event and target before giving up.
pub const MAX_ATTEMPTS: u32 = 6;

/// A detail event produced by the org.
#[derive(Debug, Clone)]
pub struct OutEvent {
    /// Topic suffix: `user.end`, `customer.end`, `acd.end`, `acw`, `wrapup`.
    pub kind: &'static str,
    pub conversation_id: String,
    pub at: Timestamp,
    pub body: Value,
}

/// Delivery counters.
#[derive(Debug, Default)]
pub struct EventStats {
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub failed_deliveries: AtomicU64,
}

impl EventStats {
    pub fn snapshot(&self) -> EventReport {
        EventReport {
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            failed_deliveries: self.failed_deliveries.load(Ordering::Relaxed),
            ..EventReport::default()
        }
    }
}

/// The EventBridge envelope of a detail event.
pub fn envelope(org_id: &str, ev: &OutEvent) -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": format!("v2.detail.events.conversation.{{id}}.{}", ev.kind),
        "source": format!("aws.partner/genesys.com/cloud/{org_id}/wrapup-sandbox"),
        "account": "000000000000",
        "time": format!("{:.0}", ev.at),
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "topicName": format!("v2.detail.events.conversation.{}.{}", ev.conversation_id, ev.kind),
            "version": "2",
            "eventBody": ev.body,
            "metadata": {"CorrelationId": uuid::Uuid::new_v4().to_string()},
            "timestamp": iso(ev.at),
        }
    })
}

/// The set of target workers; targets can be added at runtime.
#[derive(Clone, Default)]
pub struct Targets {
    workers: Arc<Mutex<Vec<mpsc::UnboundedSender<Bytes>>>>,
}

impl Targets {
    /// Starts a worker for `target`.
    pub fn add(&self, target: EventTarget, client: reqwest::Client, stats: Arc<EventStats>) {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(target_worker(target, client, stats, rx));
        self.workers.lock().push(tx);
    }

    fn send(&self, bytes: &Bytes) -> usize {
        let workers = self.workers.lock();
        for w in workers.iter() {
            let _ = w.send(bytes.clone());
        }
        workers.len()
    }

    fn is_empty(&self) -> bool {
        self.workers.lock().is_empty()
    }
}

/// A draw with probability `p`; rates outside 0..=1 (or NaN, from a hand-written config) are clamped to it.
fn chance(r: &mut rand::rngs::SmallRng, p: f64) -> bool {
    p > 0.0 && r.gen_bool(p.min(1.0))
}

/// Reads events from the org, applies faults, fans out to the targets.
pub async fn dispatcher(mut rx: mpsc::UnboundedReceiver<OutEvent>, org: Arc<Mutex<Org>>, targets: Targets) {
    while let Some(ev) = rx.recv().await {
        if targets.is_empty() {
            continue;
        }
        // Draw the faults for this event under the lock, from the fault RNG (never the simulation's).
        let (org_id, drop, dup, hold) = {
            let mut o = org.lock();
            let f = o.faults.clone();
            let r = &mut o.fault_rng;
            let drop = chance(r, f.event_drop_rate);
            let dup = chance(r, f.event_duplicate_rate);
            let reorder = chance(r, f.event_reorder_rate);
            let delay = chance(r, f.event_delay_rate);
            let max = f.event_delay_ms_max.max(if reorder { 200 } else { 0 });
            let hold = if (reorder || delay) && max > 0 { Some(r.gen_range(1..=max)) } else { None };
            (o.org_id.clone(), drop, dup, hold)
        };
        let stats = org.lock().event_stats.clone();
        if drop {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let bytes = match serde_json::to_vec(&envelope(&org_id, &ev)) {
            Ok(b) => Bytes::from(b),
            Err(_) => continue,
        };
        if dup {
            stats.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        let copies = if dup { 2 } else { 1 };
        match hold {
            Some(ms) => {
                let targets = targets.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    for _ in 0..copies {
                        targets.send(&bytes);
                    }
                });
            }
            None => {
                for _ in 0..copies {
                    targets.send(&bytes);
                }
            }
        }
    }
}

async fn target_worker(
    target: EventTarget,
    client: reqwest::Client,
    stats: Arc<EventStats>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
) {
    while let Some(body) = rx.recv().await {
        let mut backoff = Duration::from_millis(100);
        let mut ok = false;
        for attempt in 1..=MAX_ATTEMPTS {
            let mut req = client.post(&target.url).header("content-type", "application/json").body(body.clone());
            if let (Some(h), Some(k)) = (&target.api_key_header, &target.api_key) {
                req = req.header(h.as_str(), k.as_str());
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    ok = true;
                    break;
                }
                Ok(resp) => {
                    tracing::debug!(status = %resp.status(), attempt, url = %target.url, "Event target refused an event.")
                }
                Err(e) => {
                    tracing::debug!(error = %e, attempt, url = %target.url, "Event delivery failed.")
                }
            }
            if attempt < MAX_ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        if ok {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
        } else {
            stats.failed_deliveries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(url = %target.url, "Gave up delivering an event after {MAX_ATTEMPTS} attempts.");
        }
    }
}
