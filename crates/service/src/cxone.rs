//! NICE CXone behind [`LegPlatform`], and the task that finds its ACW windows.
//!
//! A leg is one contact: `conversation` = masterContactId, `participant` = contactId; the agent who handled it is
//! `facts.user_id`. Calls per applied disposition: one gate read (`GET contacts/{id}/disposition`) and one write
//! (`POST agent-sessions/{sid}/interactions/{id}/disposition` through the agent's joined session, cached per agent
//! in [`AgentSessions`]; a join is one more call the first time an agent is seen, and after its session ended).
//!
//! On a skill whose agents may leave ACW without a disposition (`acwTypeId` 2 without `requireDisposition`), the
//! disposition read cannot tell an open window from a closed one (both answer 204), so the gate also reads the
//! agent's state last (`GET agents/{agentId}/states`): the window is open only while the agent is in ACW on this
//! contact. One call more on those skills, and the write then follows the freshest signal the platform offers.
//!
//! CXone pushes nothing, so [`run_detection`] asks: an [`AcwDetector`] (polling `contacts/active` +
//! `agents/states`, or long-polling every agent's session — `acw_detection` in the configuration) yields
//! `leg ended` / `leg closed` events, and a periodic `contacts/completed?updatedSince=` sweep yields the
//! disposition each finished contact ended with (the confirmation of our writes, and agents' own choices). A
//! contact the detector sees closing is not simply "closed": its window may have ended because the agent
//! dispositioned it, so it arrives as `leg_closed_unread`: the leg stops being writable at once (`closing`), and the
//! worker reads the disposition it ended with before recording the outcome.

use crate::app::AppState;
use crate::catalog::catalog_read;
use crate::platform::{CallStats, LegPlatform, Urgency};
use crate::scheduler::Shutdown;
use crate::worker::ConnectionRuntime;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use wrapup_config::AcwDetection;
use wrapup_connectors::budget::Priority;
use wrapup_connectors::cxone::acw::{AcwDetector, PollingDetector, SessionDetector, SessionDetectorConfig};
use wrapup_connectors::cxone::client::{build_catalog, endpoints};
use wrapup_connectors::cxone::events::{acw_timeouts, AcwTimeouts};
use wrapup_connectors::cxone::{rejection, AgentSessions, AgentStateRequest, CompletedQuery, CxoneClient, Rejection};
use wrapup_connectors::error::{ErrorClass, PlatformError};
use wrapup_connectors::Precondition;
use wrapup_core::catalog::{AcwPolicy, Catalog, CodeEntry};
use wrapup_core::lifecycle::{GateReading as Gate, LegRecord, Window};
use wrapup_core::Platform;

const WRITE_ENDPOINT: &str =
    "/inContactAPI/services/v27.0/agent-sessions/{sessionId}/interactions/{contactId}/disposition";

pub struct CxonePlatform {
    client: CxoneClient,
    sessions: AgentSessions,
    /// Moved to after a successful disposition only (`agent_state_after_write`).
    state_after_write: Option<AgentStateRequest>,
}

impl CxonePlatform {
    pub fn new(client: CxoneClient, state_after_write: Option<AgentStateRequest>) -> Self {
        let sessions = AgentSessions::new(client.clone());
        Self { client, sessions, state_after_write }
    }

    pub fn client(&self) -> &CxoneClient {
        &self.client
    }

    /// The joined agent sessions, shared by the write path and the session detector (one session per agent).
    pub fn sessions(&self) -> &AgentSessions {
        &self.sessions
    }
}

fn contact_id(leg: &LegRecord, endpoint: &'static str) -> Result<i64, PlatformError> {
    leg.key.participant.parse().map_err(|_| {
        PlatformError::transport(ErrorClass::Permanent, endpoint, "the leg's contact id is not a CXone contact id")
    })
}

/// The agent who handled the contact (whose session takes its disposition).
fn agent_of(leg: &LegRecord) -> Option<i64> {
    leg.facts.user_id.as_deref().and_then(|a| a.parse::<i64>().ok())
}

#[async_trait]
impl LegPlatform for CxonePlatform {
    fn connection(&self) -> &str {
        self.client.name()
    }

    fn platform(&self) -> Platform {
        Platform::Cxone
    }

    async fn fetch_catalog(&self) -> Result<Catalog, PlatformError> {
        // The client's own `catalog()` reads the same, but each read here is retried and bounded on its own.
        let (c, prio) = (&self.client, Priority::live(None));
        let clock = c.clock();
        let (dispositions, skills) = tokio::try_join!(
            catalog_read(clock.as_ref(), endpoints::DISPOSITIONS, || c.list_dispositions(prio)),
            catalog_read(clock.as_ref(), endpoints::SKILLS, || c.list_skills(prio)),
        )?;
        let skills: Vec<_> = skills.into_iter().filter(|s| s.is_active != Some(false)).collect();
        let assigned = futures::future::try_join_all(skills.iter().map(|s| {
            catalog_read(clock.as_ref(), endpoints::SKILL_DISPOSITIONS, move || c.skill_dispositions(s.id, prio))
        }))
        .await?;
        Ok(build_catalog(dispositions, skills.into_iter().zip(assigned)))
    }

    async fn read_code(&self, leg: &LegRecord, urgency: Urgency) -> Result<Option<String>, PlatformError> {
        let contact = contact_id(leg, "/inContactAPI/services/V27.0/contacts/{contactId}/disposition")?;
        // As on Genesys: the read is worth its call only if the write can still follow it inside the window.
        let priority = urgency.gate_read_priority(self.client.clock(), self.client.budget());
        if let (Urgency::Live { .. }, Some(agent)) = (urgency, agent_of(leg)) {
            // The write goes through the agent's session: join it (once per agent) *before* the gate read, so that
            // only the write itself stands between the read and the write landing — every request in that gap is
            // time in which the agent may disposition or leave ACW unseen.
            self.sessions.session(agent, priority).await?;
        }
        let current = self.client.get_contact_disposition(contact, priority).await?;
        Ok(current.map(|d| d.disposition_id.to_string()))
    }

    async fn read_gate(&self, leg: &LegRecord, urgency: Urgency) -> Result<Gate, PlatformError> {
        let code = self.read_code(leg, urgency).await?;
        let may_leave = leg.facts.acw.is_none_or(AcwPolicy::window_may_end_uncoded);
        let (true, None, Urgency::Live { .. }, Some(agent)) = (may_leave, &code, urgency, agent_of(leg)) else {
            return Ok(Gate::code_only(code));
        };
        let contact = contact_id(leg, endpoints::AGENT_STATE)?;
        // The disposition read is spent: this read finishes the gate ahead of other legs' first reads.
        let priority = urgency.gate_read_priority(self.client.clock(), self.client.budget()).finishing();
        let state = self.client.agent_state(agent, priority).await?;
        if state.is_some_and(|s| s.is_acw && s.contact_id == Some(contact)) {
            return Ok(Gate { code: None, window: Window::Open });
        }
        // The window is over. The agent may have dispositioned between the two reads (which ends ACW): read what
        // the contact ended with, so that the outcome says who coded it.
        let code = self.client.get_contact_disposition(contact, priority).await?;
        Ok(Gate { code: code.map(|d| d.disposition_id.to_string()), window: Window::Closed })
    }

    async fn write_code(
        &self,
        leg: &LegRecord,
        code: &CodeEntry,
        notes: Option<&str>,
        urgency: Urgency,
        still_wanted: &dyn Precondition,
    ) -> Result<(), PlatformError> {
        let contact = contact_id(leg, WRITE_ENDPOINT)?;
        let agent = agent_of(leg).ok_or_else(|| {
            PlatformError::transport(
                ErrorClass::Permanent,
                WRITE_ENDPOINT,
                "the contact's agent is unknown, and CXone takes a disposition only through that agent's session",
            )
        })?;
        let disposition = code.id.parse::<i64>().map_err(|_| {
            PlatformError::transport(ErrorClass::Permanent, WRITE_ENDPOINT, "the code id is not a CXone disposition id")
        })?;
        let written = self
            .sessions
            .post_disposition(
                agent,
                contact,
                disposition,
                notes,
                // The gate read is spent: the write finishes the leg ahead of other legs' reads.
                urgency.priority().finishing(),
                Some(still_wanted),
                self.state_after_write.as_ref(),
            )
            .await;
        match written {
            Ok(_) => Ok(()),
            // The contact closed, or was dispositioned, between the gate read and the write: the agent acted in
            // that instant. Not a failure to retry or to show a person: the leg ends with whatever it closed with.
            Err(mut e) if matches!(rejection(&e), Some(Rejection::ContactGone | Rejection::AlreadyDispositioned)) => {
                e.class = ErrorClass::WindowClosed;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn budget(&self) -> Option<wrapup_connectors::budget::Budget> {
        Some(self.client.budget().clone())
    }

    fn stats(&self) -> CallStats {
        let s = self.client.stats();
        CallStats { total: s.calls_total, rate_limited: s.rate_limited_total, token_requests: s.token_requests_total }
    }
}

/// How a CXone connection finds its ACW windows.
#[derive(Clone)]
pub struct DetectionSpec {
    pub platform: Arc<CxonePlatform>,
    pub acw_detection: AcwDetection,
    /// Between polls (`polling`).
    pub poll_interval: Duration,
    /// Between `contacts/completed` sweeps; zero: none.
    pub reconcile_every: Duration,
}

/// Runs ACW detection and the completed-contacts sweep of one connection until shutdown.
pub async fn run_detection(state: Arc<AppState>, runtime: Arc<ConnectionRuntime>, spec: DetectionSpec, stop: Shutdown) {
    // The skills' ACW timeouts give each leg its deadline; the detector needs them from the first event.
    let catalog = loop {
        match runtime.catalog.get().await {
            Ok(c) => break c,
            Err(_) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    };
    let acw = acw_timeouts(&catalog);
    let client = spec.platform.client().clone();
    let sweep = tokio::spawn(completed_sweep(
        state.clone(),
        runtime.clone(),
        client.clone(),
        spec.reconcile_every,
        stop.clone(),
    ));
    // One replica polls (or holds the agents' sessions) at a time: it renews the job before each batch; the others
    // ask again every period and take over once the holder's lease ran out.
    let job = format!("cxone-detection:{}", runtime.name);
    // A batch takes up to a poll interval, or a long poll of the joined sessions; the holder renews after each.
    let period = match spec.acw_detection {
        AcwDetection::Polling => spec.poll_interval,
        AcwDetection::Sessions => SESSION_LONG_POLL.max(spec.poll_interval),
    };
    while !stop.is_cancelled() {
        if !state.leases.leads(&job, period).await {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.cancelled() => break,
            }
            continue;
        }
        let Some(mut detector) = start_detector(&spec, &runtime, &client, &acw, &stop).await else { break };
        let mut backoff = Duration::from_millis(200);
        loop {
            let batch = tokio::select! {
                b = detector.next_batch() => b,
                _ = stop.cancelled() => break,
            };
            match batch {
                Ok(events) if events.is_empty() => {}
                Ok(events) => {
                    backoff = Duration::from_millis(200);
                    if !crate::websocket::store_batch(&state, &runtime.name, &events, &stop, "cxone").await {
                        sweep.abort();
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(connection = %runtime.name, detector = detector.name(), error = %e, "ACW detection failed; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.cancelled() => break,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
            if !state.leases.leads(&job, period).await {
                tracing::info!(connection = %runtime.name, "Another replica runs ACW detection now.");
                break;
            }
        }
    }
    sweep.abort();
}

/// How long a joined session's poll waits for the agent's next event.
const SESSION_LONG_POLL: Duration = Duration::from_secs(30);

/// The connection's ACW detector (polling, or a joined session per agent, retried until the agents can be listed);
/// `None` once stopped.
async fn start_detector(
    spec: &DetectionSpec,
    runtime: &ConnectionRuntime,
    client: &CxoneClient,
    acw: &AcwTimeouts,
    stop: &Shutdown,
) -> Option<Box<dyn AcwDetector>> {
    match spec.acw_detection {
        AcwDetection::Polling => Some(Box::new(PollingDetector::new(client.clone(), spec.poll_interval, acw.clone()))),
        AcwDetection::Sessions => loop {
            let config = SessionDetectorConfig { long_poll: SESSION_LONG_POLL, ..Default::default() };
            match SessionDetector::start(spec.platform.sessions().clone(), acw.clone(), config).await {
                Ok(d) => return Some(Box::new(d)),
                Err(e) => {
                    tracing::warn!(connection = %runtime.name, error = %e, "Could not list the agents to join; retrying.");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => return None,
                    }
                }
            }
        },
    }
}

/// Every `every`, reads the contacts completed since the previous sweep: their dispositions confirm our writes
/// (or show the agent's), and close legs whose closing the detector missed.
async fn completed_sweep(
    state: Arc<AppState>,
    runtime: Arc<ConnectionRuntime>,
    client: CxoneClient,
    every: Duration,
    stop: Shutdown,
) {
    if every.is_zero() {
        return;
    }
    // Start from "now minus a minute" on the platform's clock: closures before the service started belong to a
    // `wrapup reconcile` run.
    let since = state.clock.now().checked_sub(jiff::SignedDuration::from_secs(60)).unwrap_or(state.clock.now());
    let mut cursor = format!("{since:.3}");
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.cancelled() => return,
        }
        // Only the replica leading this job reads; one that takes it over reads from its own cursor, which is at
        // or before the last leader's (what it reads again is duplicates).
        if !state.leases.leads(&format!("cxone-sweep:{}", runtime.name), every).await {
            continue;
        }
        let query = CompletedQuery::UpdatedSince(cursor.clone());
        match wrapup_connectors::cxone::acw::reconcile(&client, &query, Priority::reconcile()).await {
            Ok((events, last_poll, _)) => {
                if !events.is_empty()
                    && !crate::websocket::store_batch(&state, &runtime.name, &events, &stop, "cxone_completed").await
                {
                    return;
                }
                if let Some(t) = last_poll {
                    cursor = t;
                }
            }
            Err(e) => {
                tracing::warn!(connection = %runtime.name, error = %e, "Reading completed contacts failed; retrying.")
            }
        }
    }
}
