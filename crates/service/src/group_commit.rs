//! Group commit for intake: concurrent requests share one store transaction.
//!
//! Intake answers 202 only after its events are committed, and SQLite with `synchronous=FULL` commits about as many
//! transactions per second as the disk syncs (hundreds), whatever their size — while one transaction of 500 events
//! costs little more than one of a single event. So every intake request hands its events to one committer task and
//! waits: the committer takes the first request, adds every request already waiting (up to [`MAX_EVENTS`]),
//! ingests them all in one `Store::ingest` call, and answers each request with its own slice of the results.
//!
//! Nothing about durability changes: no request is answered before the transaction holding its events committed.
//! Dedupe keys still work across requests of one group (the store applies the batch in order, so a second copy is a
//! duplicate). A store error fails every request of the group; each sender retries, as it would have alone. When
//! requests arrive one at a time the group is one request, so a lone sender waits for nothing.

use jiff::Timestamp;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use wrapup_core::Event;
use wrapup_store::{Ingested, Store, StoreError, StoreResult};

/// At most this many events go into one transaction.
pub const MAX_EVENTS: usize = 2_000;

struct Job {
    events: Vec<Event>,
    now: Timestamp,
    reply: oneshot::Sender<StoreResult<Vec<Ingested>>>,
}

/// A handle to the committer task of one store.
#[derive(Clone)]
pub struct GroupCommit {
    tx: mpsc::Sender<Job>,
}

impl GroupCommit {
    /// Starts the committer (on the current tokio runtime). It stops when the last handle is dropped.
    pub fn spawn(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(4_096);
        tokio::spawn(committer(store, rx));
        Self { tx }
    }

    /// Ingests `events` in the next group commit; returns once that transaction committed (or failed).
    pub async fn ingest(&self, events: Vec<Event>, now: Timestamp) -> StoreResult<Vec<Ingested>> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Job { events, now, reply })
            .await
            .map_err(|_| StoreError::Backend("the intake committer stopped".into()))?;
        answer.await.map_err(|_| StoreError::Backend("the intake committer stopped".into()))?
    }
}

async fn committer(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut total = jobs[0].events.len();
        while total < MAX_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    total += job.events.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let now = jobs.iter().map(|j| j.now).max().unwrap_or_else(Timestamp::now);
        let mut all = Vec::with_capacity(total);
        let mut sizes = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            sizes.push(job.events.len());
            all.extend(job.events);
            replies.push(job.reply);
        }
        match store.ingest(&all, now).await {
            Ok(results) if results.len() == all.len() => {
                let mut rest = results.into_iter();
                for (reply, n) in replies.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(rest.by_ref().take(n).collect()));
                }
            }
            Ok(results) => {
                let e = format!("the store answered {} results for {} events", results.len(), all.len());
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Backend(e.clone())));
                }
            }
            Err(e) => {
                let e = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Backend(e.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrapup_core::{EventKind, LegKey};

    fn event(conversation: &str, key: &str) -> Event {
        Event {
            leg: LegKey::new("c", conversation, "p"),
            dedupe_key: key.to_string(),
            occurred_at: Timestamp::UNIX_EPOCH,
            correlation_id: None,
            kind: EventKind::CodeRecorded { code_id: Some("x".into()), notes: None, system: false },
        }
    }

    #[tokio::test]
    async fn concurrent_requests_get_their_own_results_and_duplicates_across_them_are_duplicates() {
        let store: Arc<dyn Store> = Arc::new(wrapup_store::SqliteStore::open_in_memory().await.unwrap());
        let group = GroupCommit::spawn(store.clone());
        let now = Timestamp::UNIX_EPOCH;
        let (a, b) = tokio::join!(
            group.ingest(vec![event("c1", "k1"), event("c2", "k2")], now),
            group.ingest(vec![event("c1", "k1")], now),
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.len(), 2);
        assert_eq!(b.len(), 1);
        let new = a.iter().chain(&b).filter(|r| **r == Ingested::New).count();
        assert_eq!(new, 2, "k1 is stored once: {a:?} {b:?}");
    }
}
