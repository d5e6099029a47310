//! Genesys Cloud behind [`LegPlatform`]: the gate read, the write, and the catalog, on one [`GenesysClient`].
//!
//! Calls per applied code: one gate read and one write (`POST …/communications/{commId}/wrapup`). The leg's queue,
//! media type, communication id and ACW facts come from the `user.end` event and the cached catalog, so nothing else
//! is read on the hot path.
//!
//! The gate read depends on the queue's ACW mode, because `user.end` says nothing about the window:
//! - `MANDATORY`, `MANDATORY_TIMEOUT`, `MANDATORY_FORCED_TIMEOUT`: every leg gets a window that only a code (or the
//!   timeout, which the deadline covers) ends, so the code is all the gate needs:
//!   `GET …/participants/{pid}/wrapup?provisional=true`.
//! - `OPTIONAL` (the agent may leave without a code), `AGENT_REQUESTED` (the window opens only if the agent asked),
//!   or a mode the catalog does not know: `GET /api/v2/conversations/{id}`, whose participant shows the window
//!   (`wrapupRequired`, `startAcwTime`/`endAcwTime`, `afterCallWork.state`, `wrapupSkipped`) and the code. A leg that
//!   never had a window is `no_acw`, one whose window is over is read as closed, and neither is written. Whether
//!   that read shows a *provisional* code is not documented; unless the connection says it does
//!   (`conversation_shows_provisional`), an open window without a visible code is also read with
//!   `…/wrapup?provisional=true` before the write.

use crate::catalog::catalog_read;
use crate::platform::{CallStats, LegPlatform, Urgency};
use async_trait::async_trait;
use wrapup_connectors::budget::Priority;
use wrapup_connectors::error::{ErrorClass, PlatformError};
use wrapup_connectors::genesys::client::endpoints;
use wrapup_connectors::genesys::model::{acw_policy, AcwWindow, WrapupInput};
use wrapup_connectors::genesys::GenesysClient;
use wrapup_connectors::Precondition;
use wrapup_core::catalog::{AcwPolicy, Catalog, CodeEntry, QueueEntry};
use wrapup_core::lifecycle::{GateReading as Gate, LegRecord, Window};
use wrapup_core::Platform;

pub struct GenesysPlatform {
    client: GenesysClient,
    /// Code ids (and names) the platform stamps by itself at ACW timeout.
    system_codes: std::collections::HashSet<String>,
    /// Whether a conversation read shows provisional codes (then it alone is the gate of windows that may end
    /// uncoded).
    conversation_shows_provisional: bool,
}

impl GenesysPlatform {
    /// A platform whose system codes are the built-in ones plus `extra_system_codes` (the connection's
    /// `system_codes`).
    pub fn new(client: GenesysClient, extra_system_codes: &[String]) -> Self {
        let mut system_codes: std::collections::HashSet<String> =
            crate::build::GENESYS_SYSTEM_CODES.iter().map(|s| s.to_string()).collect();
        system_codes.extend(extra_system_codes.iter().cloned());
        Self { client, system_codes, conversation_shows_provisional: false }
    }

    /// Trusts conversation reads to show agents' provisional codes (see the module docs).
    pub fn with_conversation_showing_provisional(mut self, shows: bool) -> Self {
        self.conversation_shows_provisional = shows;
        self
    }

    /// The gate of a leg whose window may end without a code: the conversation read, and the provisional read when
    /// the window is open and the conversation is not trusted to show provisional codes.
    async fn read_window(&self, leg: &LegRecord, urgency: Urgency) -> Result<Gate, PlatformError> {
        let k = &leg.key;
        let priority = urgency.gate_read_priority(self.client.clock(), self.client.budget());
        let conversation = self.client.get_conversation(&k.conversation, priority).await?;
        let Some(p) = conversation.participant(&k.participant) else {
            return Err(PlatformError::transport(
                ErrorClass::Permanent,
                endpoints::CONVERSATION,
                "the conversation has no participant with the leg's id",
            ));
        };
        let shown = p.wrapup.as_ref().and_then(|w| w.code.clone()).filter(|c| !c.trim().is_empty());
        match p.acw_window() {
            AcwWindow::Never => Ok(Gate { code: None, window: Window::Never }),
            // A window whose end the event announced but the read does not show yet is not written: read again.
            AcwWindow::NotEnded => Err(PlatformError::transport(
                ErrorClass::Retryable,
                endpoints::CONVERSATION,
                "the platform does not show the agent's communication as ended yet",
            )),
            AcwWindow::Closed => {
                let saved = p.wrapup.as_ref().filter(|w| w.provisional != Some(true)).and_then(|w| w.code.clone());
                Ok(Gate { code: saved, window: Window::Closed })
            }
            AcwWindow::Open if shown.is_some() || self.conversation_shows_provisional => {
                Ok(Gate { code: shown, window: Window::Open })
            }
            AcwWindow::Open => {
                // The first read is spent: this one finishes the gate ahead of other legs' first reads.
                let current = self
                    .client
                    .get_participant_wrapup(&k.conversation, &k.participant, None, true, priority.finishing())
                    .await?;
                Ok(Gate { code: current.and_then(|w| w.code), window: Window::Open })
            }
        }
    }

    pub fn client(&self) -> &GenesysClient {
        &self.client
    }
}

const WRITE_ENDPOINT: &str =
    "/api/v2/conversations/{media}/{conversationId}/participants/{participantId}/communications/{communicationId}/wrapup";

/// A 400 saying the participant is not in after-call work any more means the agent (or the ACW timeout) ended the
/// window in the instant before our write: the leg's final code is to be read, not the write retried. The exact
/// wording of the real platform's error is unconfirmed (docs/platforms); this matches the sandbox's, and anything
/// else (e.g. "not in after-call work" before the window opened) stays a plain 400.
fn window_closed(mut e: PlatformError) -> PlatformError {
    let msg = e.message.to_ascii_lowercase();
    if e.status == Some(400) && msg.contains("no longer in after-call work") {
        e.class = ErrorClass::WindowClosed;
    }
    e
}

#[async_trait]
impl LegPlatform for GenesysPlatform {
    fn connection(&self) -> &str {
        self.client.name()
    }

    fn platform(&self) -> Platform {
        Platform::Genesys
    }

    async fn fetch_catalog(&self) -> Result<Catalog, PlatformError> {
        let prio = Priority::live(None);
        let c = &self.client;
        let (codes, queues) = tokio::try_join!(
            catalog_read(c.clock().as_ref(), endpoints::WRAPUPCODES, || c.list_wrapupcodes(prio)),
            catalog_read(c.clock().as_ref(), endpoints::QUEUES, || c.list_queues(prio)),
        )?;
        // Each queue's assignments are read concurrently (all through the one budget): a hung or failed read of one
        // queue costs the load its own retry, not the sum of every queue's.
        let assignments = futures::future::try_join_all(queues.iter().map(|q| {
            catalog_read(c.clock().as_ref(), endpoints::QUEUE_WRAPUPCODES, move || {
                c.list_queue_wrapupcodes(&q.id, prio)
            })
        }))
        .await?;
        let mut entries = Vec::with_capacity(queues.len());
        for (q, assigned) in queues.into_iter().zip(assignments) {
            let acw = q.acw_settings.unwrap_or_default();
            // The platform only closes the window by itself in the time-boxed modes.
            let timed = matches!(
                acw.wrapup_prompt.as_deref(),
                Some("MANDATORY_TIMEOUT") | Some("MANDATORY_FORCED_TIMEOUT") | Some("AGENT_REQUESTED")
            );
            entries.push(QueueEntry {
                id: q.id,
                name: q.name,
                code_ids: assigned.into_iter().map(|c| c.id).collect(),
                acw_timeout_ms: if timed { acw.timeout_ms } else { None },
                acw: acw.wrapup_prompt.as_deref().and_then(acw_policy),
                acw_mode: acw.wrapup_prompt,
            });
        }
        Ok(Catalog {
            codes: codes.into_iter().map(|c| CodeEntry { id: c.id, name: c.name }).collect(),
            queues: entries,
        })
    }

    fn is_system_code(&self, code: &str) -> bool {
        self.system_codes.contains(code)
    }

    async fn read_code(&self, leg: &LegRecord, urgency: Urgency) -> Result<Option<String>, PlatformError> {
        let k = &leg.key;
        let priority = urgency.gate_read_priority(self.client.clock(), self.client.budget());
        let current = self.client.get_participant_wrapup(&k.conversation, &k.participant, None, true, priority).await?;
        Ok(current.and_then(|w| w.code))
    }

    async fn read_attributes(
        &self,
        leg: &LegRecord,
        urgency: Urgency,
    ) -> Result<std::collections::BTreeMap<String, String>, PlatformError> {
        let k = &leg.key;
        let conversation = self.client.get_conversation(&k.conversation, urgency.priority()).await?;
        Ok(conversation.participant(&k.participant).map(|p| p.attributes.clone()).unwrap_or_default())
    }

    async fn read_gate(&self, leg: &LegRecord, urgency: Urgency) -> Result<Gate, PlatformError> {
        if leg.facts.acw == Some(AcwPolicy::Mandatory) {
            return self.read_code(leg, urgency).await.map(Gate::code_only);
        }
        self.read_window(leg, urgency).await
    }

    async fn write_code(
        &self,
        leg: &LegRecord,
        code: &CodeEntry,
        notes: Option<&str>,
        urgency: Urgency,
        still_wanted: &dyn Precondition,
    ) -> Result<(), PlatformError> {
        let (Some(media), Some(comm)) = (leg.facts.media.as_deref(), leg.facts.communication_id.as_deref()) else {
            return Err(PlatformError::transport(
                ErrorClass::Permanent,
                WRITE_ENDPOINT,
                "the leg's media type or communication id is unknown, so there is no write path for it",
            ));
        };
        let input = WrapupInput {
            code: Some(code.id.clone()),
            name: Some(code.name.clone()),
            notes: notes.map(str::to_string),
            ..Default::default()
        };
        let k = &leg.key;
        self.client
            .post_wrapup_if(
                media,
                &k.conversation,
                &k.participant,
                comm,
                &input,
                // The gate read is spent: the write finishes the leg ahead of other legs' reads.
                urgency.priority().finishing(),
                Some(still_wanted),
            )
            .await
            .map(|_| ())
            .map_err(window_closed)
    }

    fn budget(&self) -> Option<wrapup_connectors::budget::Budget> {
        Some(self.client.budget().clone())
    }

    fn stats(&self) -> CallStats {
        let s = self.client.stats();
        CallStats { total: s.calls_total, rate_limited: s.rate_limited_total, token_requests: s.token_requests_total }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, message: &str) -> PlatformError {
        let mut e = PlatformError::transport(ErrorClass::Permanent, WRITE_ENDPOINT, message);
        e.status = Some(status);
        e
    }

    #[test]
    fn only_a_refusal_for_a_closed_window_becomes_window_closed() {
        let closed = window_closed(refused(400, "Participant p is no longer in after-call work."));
        assert_eq!(closed.class, ErrorClass::WindowClosed);
        for other in [
            refused(400, "Participant p is not in after-call work."),
            refused(400, "The wrap-up code c is not valid for queue q."),
            refused(404, "Participant p is no longer in after-call work."),
        ] {
            assert_eq!(window_closed(other).class, ErrorClass::Permanent);
        }
    }
}
