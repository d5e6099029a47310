//! One joined agent session per agent, following its rotating id.
//!
//! A disposition can only be written through an agent session of the agent who handled the contact. wrapup joins
//! the agent's running session (`POST agent-sessions/join` with `asAgentId`) instead of starting one, so it never
//! logs an agent in or out. The cache keeps one session id per agent:
//!
//! - **Rotation.** Every `get-next-event` answer carries a new session id; [`AgentSessions::next_event`] stores it,
//!   and every later call (the write included) uses the newest id. Whether the platform still accepts an older id
//!   is unconfirmed, so both readings are handled: if it refuses one, the call fails as [`Rejection::SessionGone`]
//!   and is retried with the id that replaced it.
//! - **Rejoin.** `404 Invalid sessionId` or `409 Session Ended` means the session is gone: the call joins again and
//!   is retried **once**. Like token invalidation, a rejoin only happens if the failed id is still the cached one,
//!   so N concurrent failures cause one join, and a failure with an id that has already rotated away just retries
//!   with the current id. Joins for one agent are single flight.
//! - **No locking across calls.** A long poll may be in flight for up to a minute; a write for the same agent must
//!   not wait for it, so the cache holds ids, not sessions: the write uses the same id the poll was sent with.

use crate::budget::Priority;
use crate::call::Precondition;
use crate::cxone::client::{AgentStateRequest, CxoneClient, NextEvent};
use crate::cxone::error::{rejection, Rejection};
use crate::error::PlatformError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Slot {
    current: Mutex<Option<String>>,
    /// Held while joining, so one join serves every concurrent caller of that agent.
    joining: tokio::sync::Mutex<()>,
}

/// The agent-session cache of one connection. Cheap to clone.
#[derive(Clone)]
pub struct AgentSessions {
    client: CxoneClient,
    slots: Arc<Mutex<HashMap<i64, Arc<Slot>>>>,
    joins: Arc<AtomicU64>,
    polls: Arc<AtomicU64>,
}

impl std::fmt::Debug for AgentSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentSessions").field("agents", &self.slots.lock().len()).finish()
    }
}

/// A disposition the platform accepted (200).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The agent-state move requested after the write: `None` if none was asked for.
    pub state_move: Option<Result<(), PlatformError>>,
}

/// Whether a failure means the session id is no longer usable.
pub fn is_session_gone(e: &PlatformError) -> bool {
    rejection(e) == Some(Rejection::SessionGone)
}

impl AgentSessions {
    pub fn new(client: CxoneClient) -> Self {
        Self { client, slots: Arc::default(), joins: Arc::default(), polls: Arc::default() }
    }

    /// The client sessions are joined with.
    pub fn client(&self) -> &CxoneClient {
        &self.client
    }

    /// Joins attempted so far (first joins and rejoins, failed ones included).
    pub fn joins(&self) -> u64 {
        self.joins.load(Ordering::Relaxed)
    }

    /// `get-next-event` requests sent through [`Self::next_event`] so far.
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::Relaxed)
    }

    fn slot(&self, agent_id: i64) -> Arc<Slot> {
        self.slots.lock().entry(agent_id).or_default().clone()
    }

    /// The cached session id of an agent, if any.
    pub fn current(&self, agent_id: i64) -> Option<String> {
        self.slots.lock().get(&agent_id).and_then(|s| s.current.lock().clone())
    }

    /// Records a rotation: `new` replaces `old` if `old` is still the cached id (a rejoin in between wins).
    pub fn rotate(&self, agent_id: i64, old: &str, new: String) {
        let slot = self.slot(agent_id);
        let mut cur = slot.current.lock();
        if cur.as_deref() == Some(old) {
            *cur = Some(new);
        }
    }

    /// Forgets an agent's session (e.g. the agent logged out).
    pub fn forget(&self, agent_id: i64) {
        self.slots.lock().remove(&agent_id);
    }

    /// The agent's session id, joining if there is none.
    pub async fn session(&self, agent_id: i64, priority: Priority) -> Result<String, PlatformError> {
        if let Some(id) = self.current(agent_id) {
            return Ok(id);
        }
        self.rejoin(agent_id, None, priority).await
    }

    /// Joins again unless the cached id already differs from `failed` (then that id is returned). `failed = None`
    /// joins only if there is no id at all.
    pub async fn rejoin(
        &self,
        agent_id: i64,
        failed: Option<&str>,
        priority: Priority,
    ) -> Result<String, PlatformError> {
        let slot = self.slot(agent_id);
        let _joining = slot.joining.lock().await;
        {
            let cur = slot.current.lock();
            if let Some(id) = cur.as_deref() {
                if Some(id) != failed {
                    return Ok(id.to_string());
                }
            }
        }
        self.joins.fetch_add(1, Ordering::Relaxed);
        let id = self.client.join_session(agent_id, priority).await?;
        tracing::debug!(connection = self.client.name(), agent_id, "Joined the agent's session.");
        *slot.current.lock() = Some(id.clone());
        Ok(id)
    }

    /// Runs `f` with the agent's current session id; if it fails because the session is gone, joins again (or
    /// takes the id that replaced it) and runs `f` once more.
    pub async fn with_session<T, F, Fut>(&self, agent_id: i64, priority: Priority, mut f: F) -> Result<T, PlatformError>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T, PlatformError>>,
    {
        let sid = self.session(agent_id, priority).await?;
        match f(sid.clone()).await {
            Err(e) if is_session_gone(&e) => {
                tracing::debug!(
                    connection = self.client.name(),
                    agent_id,
                    error = %e,
                    "The agent session is gone; joining again once."
                );
                let fresh = self.rejoin(agent_id, Some(&sid), priority).await?;
                f(fresh).await
            }
            other => other,
        }
    }

    /// The write: dispositions `contact_id` through `agent_id`'s session (joining or rejoining once as needed), sent
    /// only if `precondition` holds once the request holds its budget permit. If it is applied and `then` is given,
    /// moves the agent's state afterwards through the same session — data first, availability second, never the
    /// reverse. A failed state move does not undo or fail the write; it is returned in [`Applied::state_move`].
    #[allow(clippy::too_many_arguments)]
    pub async fn post_disposition(
        &self,
        agent_id: i64,
        contact_id: i64,
        disposition_id: i64,
        notes: Option<&str>,
        priority: Priority,
        precondition: Option<&dyn Precondition>,
        then: Option<&AgentStateRequest>,
    ) -> Result<Applied, PlatformError> {
        let client = &self.client;
        self.with_session(agent_id, priority, |sid| async move {
            client.post_disposition_if(&sid, contact_id, disposition_id, notes, priority, precondition).await
        })
        .await?;
        let state_move =
            match then {
                None => None,
                Some(state) => Some(
                    self.with_session(agent_id, priority, |s| async move {
                        client.set_agent_state(&s, state, priority).await
                    })
                    .await,
                ),
            };
        if let Some(Err(e)) = &state_move {
            tracing::warn!(connection = client.name(), agent_id, contact_id, error = %e,
                "The disposition was applied but the agent's state could not be moved.");
        }
        Ok(Applied { state_move })
    }

    /// One long poll of the agent's session: follows the rotated id, and on `Session Ended` / `Invalid sessionId`
    /// joins again once and polls with the new session. Returns the event body, or `None` when the wait elapsed.
    pub async fn next_event(
        &self,
        agent_id: i64,
        timeout: Duration,
        priority: Priority,
    ) -> Result<Option<Vec<u8>>, PlatformError> {
        let mut sid = self.session(agent_id, priority).await?;
        let mut rejoined = false;
        loop {
            self.polls.fetch_add(1, Ordering::Relaxed);
            let gone = match self.client.get_next_event(&sid, timeout, priority).await {
                Ok(NextEvent::Events { session_id, body }) => {
                    self.rotate(agent_id, &sid, session_id);
                    return Ok(Some(body));
                }
                Ok(NextEvent::NoEvents) => return Ok(None),
                Ok(NextEvent::SessionEnded) => session_ended(),
                Err(e) if is_session_gone(&e) => e,
                Err(e) => return Err(e),
            };
            if rejoined {
                return Err(gone);
            }
            rejoined = true;
            sid = self.rejoin(agent_id, Some(&sid), priority).await?;
        }
    }
}

/// `409 Session Ended` as an error, for when a freshly joined session ends again at once.
fn session_ended() -> PlatformError {
    PlatformError {
        class: crate::error::ErrorClass::Conflict,
        status: Some(409),
        code: Some("Session Ended".into()),
        message: "Session Ended".into(),
        correlation_id: None,
        endpoint: crate::cxone::client::endpoints::NEXT_EVENT,
    }
}
