//! Detecting that a CXone contact entered ACW, two ways, plus the reconcile sweep.
//!
//! CXone has no public "contact ended" webhook, so ACW is found by asking. Two strategies, behind one trait
//! ([`AcwDetector`]), each yielding batches of core [`Event`]s:
//!
//! - **Polling** ([`PollingDetector`]): every interval, `GET contacts/active?updatedSince=` and
//!   `GET agents/states?updatedSince=`, each following its own `lastPollTime`. An agent reported `isACW` on a
//!   contact is that contact's `LegEnded`; a contact reported in `EndContact` is `LegClosedUnread`, and so is the
//!   contact an agent was in ACW on when the agent is next reported out of ACW or in ACW on another contact (a
//!   contact that closed leaves `contacts/active`, so its agent's state is the signal that comes in time). Two
//!   requests per interval whatever the traffic; detection latency is up to one interval.
//! - **Agent sessions** ([`SessionDetector`]): join every agent's session (agents from `GET agents`) and long-poll
//!   `get-next-event` on each, following the rotating id ([`AgentSessions`]). A `CallContactEvent` (or work item,
//!   chat…) `Disconnected` with `FinalState=False` is `LegEnded` within a second. About one request per agent per
//!   long-poll timeout when idle, plus one per answer; the joined sessions are the ones the write needs anyway.
//!
//! Both count the requests they issue ([`AcwDetector::calls`]: pages, joins and long polls; token refreshes are in
//! the client's stats), so the service can report calls per applied disposition for each strategy. The session
//! detector counts the joins and polls of its [`AgentSessions`] since it started; when the write path shares that
//! cache (it should: one joined session per agent), joins the write triggers are counted there too.
//!
//! [`reconcile`] reads `contacts/completed?updatedSince=` and yields `CodeRecorded` / `LegClosed` for every
//! contact that finished, so a missed signal still ends in an outcome.

use crate::budget::Priority;
use crate::cxone::client::{CompletedQuery, CxoneClient};
use crate::cxone::error::{rejection, Rejection};
use crate::cxone::events::{from_completed, from_realtime, parse_next_event, AcwTimeouts};
use crate::cxone::model::ContactRecord;
use crate::cxone::sessions::AgentSessions;
use crate::error::PlatformError;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use wrapup_core::{Event, EventKind};

/// Contacts remembered between polls (facts for a later ACW report, and which LegEnded were already emitted).
const MAX_REMEMBERED: usize = 100_000;

/// A source of ACW events.
#[async_trait::async_trait]
pub trait AcwDetector: Send {
    /// Short name for metrics (`polling`, `sessions`).
    fn name(&self) -> &'static str;
    /// Waits for and returns the next batch (possibly empty after a quiet interval).
    async fn next_batch(&mut self) -> Result<Vec<Event>, PlatformError>;
    /// Requests issued so far.
    fn calls(&self) -> u64;
}

/// Real-time polling of `contacts/active` + `agents/states`. See the module docs.
pub struct PollingDetector {
    client: CxoneClient,
    interval: Duration,
    priority: Priority,
    acw: AcwTimeouts,
    contacts_since: Option<String>,
    agents_since: Option<String>,
    /// Active contacts seen, by id, for the facts of a later ACW report.
    known: HashMap<i64, ContactRecord>,
    /// Contacts whose LegEnded was emitted (an agent can be reported in ACW on the same contact twice).
    emitted: HashSet<i64>,
    /// Agent id → the contact (and its master) the agent was last reported in ACW on.
    in_acw: HashMap<i64, (i64, i64)>,
    started: bool,
    calls: u64,
}

impl PollingDetector {
    pub fn new(client: CxoneClient, interval: Duration, acw: AcwTimeouts) -> Self {
        Self {
            client,
            interval,
            priority: Priority::live(None),
            acw,
            contacts_since: None,
            agents_since: None,
            known: HashMap::new(),
            emitted: HashSet::new(),
            in_acw: HashMap::new(),
            started: false,
            calls: 0,
        }
    }

    /// Replaces the skills' ACW timeouts (after a catalog refresh).
    pub fn set_acw_timeouts(&mut self, acw: AcwTimeouts) {
        self.acw = acw;
    }

    /// One poll now, without waiting for the interval.
    pub async fn poll_once(&mut self) -> Result<Vec<Event>, PlatformError> {
        // Both reads at once: a poll takes one round trip, not two.
        let (contacts, states) = tokio::join!(
            self.client.contacts_active(self.contacts_since.as_deref(), self.priority),
            self.client.agent_states(self.agents_since.as_deref(), self.priority),
        );
        self.calls += u64::from(contacts.as_ref().map_or(1, |p| p.requests));
        self.calls += u64::from(states.as_ref().map_or(1, |p| p.requests));
        let (contacts, states) = (contacts?, states?);
        // Advance only after both reads succeeded, so a failed round is read again in full next time.
        if contacts.last_poll_time.is_some() {
            self.contacts_since = contacts.last_poll_time.clone();
        }
        if states.last_poll_time.is_some() {
            self.agents_since = states.last_poll_time.clone();
        }
        let now = self.client.clock().now();
        let mut events =
            from_realtime(self.client.name(), &self.known, &contacts.records, &states.records, &self.acw, now);
        events.extend(left_acw(
            self.client.name(),
            &mut self.in_acw,
            &self.known,
            &contacts.records,
            &states.records,
            now,
        ));
        if self.known.len() + contacts.records.len() > MAX_REMEMBERED {
            self.known.clear();
        }
        for r in contacts.records {
            self.known.insert(r.contact_id, r);
        }
        if self.emitted.len() > MAX_REMEMBERED {
            self.emitted.clear();
        }
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            let Ok(contact) = e.leg.participant.parse::<i64>() else { continue };
            match e.kind {
                EventKind::LegEnded { .. } if !self.emitted.insert(contact) => continue,
                EventKind::LegClosed | EventKind::LegClosedUnread => {
                    self.emitted.remove(&contact);
                    self.known.remove(&contact);
                }
                _ => {}
            }
            out.push(e);
        }
        Ok(out)
    }
}

/// `LegClosedUnread` for each contact whose agent was reported in ACW on it and is now reported out of ACW, or in
/// ACW on another contact; updates `in_acw` from `states`.
fn left_acw(
    connection: &str,
    in_acw: &mut HashMap<i64, (i64, i64)>,
    known: &HashMap<i64, ContactRecord>,
    contacts: &[ContactRecord],
    states: &[crate::cxone::model::AgentStateRecord],
    now: jiff::Timestamp,
) -> Vec<Event> {
    let mut out = Vec::new();
    for s in states {
        let current = s.contact_id.filter(|_| s.is_acw);
        if let Some(&(contact, master)) = in_acw.get(&s.agent_id) {
            if current != Some(contact) {
                let at = s.last_update_time.as_deref().and_then(|t| t.parse::<jiff::Timestamp>().ok());
                out.push(Event {
                    leg: wrapup_core::LegKey::new(connection, master.to_string(), contact.to_string()),
                    dedupe_key: format!("cxone:acw_left:{contact}"),
                    occurred_at: at.unwrap_or(now),
                    correlation_id: None,
                    kind: EventKind::LegClosedUnread,
                });
                in_acw.remove(&s.agent_id);
            }
        }
        if let Some(contact) = current {
            let master = known
                .get(&contact)
                .or_else(|| contacts.iter().find(|c| c.contact_id == contact))
                .map_or(contact, |r| r.master_contact_id);
            in_acw.insert(s.agent_id, (contact, master));
        }
    }
    if in_acw.len() > MAX_REMEMBERED {
        in_acw.clear();
    }
    out
}

#[async_trait::async_trait]
impl AcwDetector for PollingDetector {
    fn name(&self) -> &'static str {
        "polling"
    }

    async fn next_batch(&mut self) -> Result<Vec<Event>, PlatformError> {
        if self.started {
            tokio::time::sleep(self.interval).await;
        }
        self.started = true;
        self.poll_once().await
    }

    fn calls(&self) -> u64 {
        self.calls
    }
}

/// How the session detector behaves.
#[derive(Debug, Clone)]
pub struct SessionDetectorConfig {
    /// `get-next-event` wait (at most 60 s).
    pub long_poll: Duration,
    /// Wait before trying again to join an agent who has no session (logged out).
    pub idle_retry: Duration,
    /// Wait after any other failure of an agent's loop.
    pub error_backoff: Duration,
    pub priority: Priority,
}

impl Default for SessionDetectorConfig {
    fn default() -> Self {
        Self {
            long_poll: Duration::from_secs(30),
            idle_retry: Duration::from_secs(30),
            error_backoff: Duration::from_secs(5),
            priority: Priority::live(None),
        }
    }
}

/// Long-polls a joined session of every agent. See the module docs. Dropping it stops every agent's loop.
pub struct SessionDetector {
    sessions: AgentSessions,
    rx: mpsc::Receiver<Vec<Event>>,
    tasks: JoinSet<()>,
    /// Requests outside the cache (the agent listing).
    calls: u64,
    joins_at_start: u64,
    polls_at_start: u64,
}

impl SessionDetector {
    /// Lists the agents (one paged call) and starts one long-poll loop per active agent.
    pub async fn start(
        sessions: AgentSessions,
        acw: AcwTimeouts,
        config: SessionDetectorConfig,
    ) -> Result<Self, PlatformError> {
        let agents = sessions.client().list_agents(config.priority).await?;
        let ids = agents.into_iter().filter(|a| a.is_active != Some(false)).map(|a| a.agent_id).collect::<Vec<_>>();
        // The listing's pages are not reported by `list_agents`: one request per started page of 100 agents.
        let pages = (ids.len() / crate::cxone::client::PAGE_SIZE + 1) as u64;
        let mut d = Self::for_agents(sessions, ids, acw, config);
        d.calls = pages;
        Ok(d)
    }

    /// Starts loops for the given agents only.
    pub fn for_agents(
        sessions: AgentSessions,
        agents: Vec<i64>,
        acw: AcwTimeouts,
        config: SessionDetectorConfig,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let mut tasks = JoinSet::new();
        let acw = Arc::new(acw);
        let (joins_at_start, polls_at_start) = (sessions.joins(), sessions.polls());
        for agent in agents {
            tasks.spawn(agent_loop(sessions.clone(), agent, acw.clone(), config.clone(), tx.clone()));
        }
        Self { sessions, rx, tasks, calls: 0, joins_at_start, polls_at_start }
    }

    /// Agents being polled.
    pub fn agents(&self) -> usize {
        self.tasks.len()
    }
}

async fn agent_loop(
    sessions: AgentSessions,
    agent: i64,
    acw: Arc<AcwTimeouts>,
    config: SessionDetectorConfig,
    tx: mpsc::Sender<Vec<Event>>,
) {
    let client = sessions.client().clone();
    loop {
        match sessions.next_event(agent, config.long_poll, config.priority).await {
            Ok(Some(body)) => {
                let now = client.clock().now();
                match parse_next_event(client.name(), Some(agent), &body, &acw, now) {
                    Ok(batch) if !batch.events.is_empty() => {
                        if tx.send(batch.events).await.is_err() {
                            return; // the detector was dropped
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(connection = client.name(), agent_id = agent, error = %e,
                        "An agent-session event body could not be read; it was skipped."),
                }
            }
            Ok(None) => {}
            Err(e) => {
                let wait = match rejection(&e) {
                    Some(Rejection::AgentNotLoggedIn) => config.idle_retry,
                    _ if e.status == Some(404) => config.idle_retry,
                    _ => config.error_backoff,
                };
                tracing::debug!(connection = client.name(), agent_id = agent, error = %e,
                    "An agent's long poll failed; trying again later.");
                tokio::time::sleep(wait).await;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

#[async_trait::async_trait]
impl AcwDetector for SessionDetector {
    fn name(&self) -> &'static str {
        "sessions"
    }

    async fn next_batch(&mut self) -> Result<Vec<Event>, PlatformError> {
        let Some(mut out) = self.rx.recv().await else {
            return Ok(Vec::new());
        };
        while let Ok(more) = self.rx.try_recv() {
            out.extend(more);
        }
        Ok(out)
    }

    fn calls(&self) -> u64 {
        self.calls
            + self.sessions.joins().saturating_sub(self.joins_at_start)
            + self.sessions.polls().saturating_sub(self.polls_at_start)
    }
}

/// Reads completed contacts since `since` (a previous `lastPollTime`), or over a start/end range, and returns
/// their events with the `lastPollTime` to pass next time and the requests it took.
pub async fn reconcile(
    client: &CxoneClient,
    query: &CompletedQuery,
    priority: Priority,
) -> Result<(Vec<Event>, Option<String>, u32), PlatformError> {
    let polled = client.contacts_completed(query, priority).await?;
    let events = from_completed(client.name(), &polled.records, client.clock().now());
    Ok((events, polled.last_poll_time, polled.requests))
}
