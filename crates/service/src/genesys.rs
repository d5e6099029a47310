//! Genesys Cloud behind [`LegPlatform`]: the gate read, the write, and the catalog, on one [`GenesysClient`].
//!
//! Calls per applied code: one gate read (`GET …/participants/{pid}/wrapup?provisional=true`) and one write
//! (`POST …/communications/{commId}/wrapup`). The leg's queue, media type, communication id and ACW facts come from
//! the `user.end` event and the cached catalog, so nothing else is read on the hot path.

use crate::platform::{write_reserve, CallStats, LegPlatform, Urgency};
use async_trait::async_trait;
use std::time::Duration;
use wrapup_connectors::budget::Priority;
use wrapup_connectors::error::{ErrorClass, PlatformError};
use wrapup_connectors::genesys::client::endpoints;
use wrapup_connectors::genesys::model::WrapupInput;
use wrapup_connectors::genesys::GenesysClient;
use wrapup_connectors::retry::{call_with_retry, RetryPolicy};
use wrapup_connectors::Precondition;
use wrapup_core::catalog::{Catalog, CodeEntry, QueueEntry};
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::Platform;

pub struct GenesysPlatform {
    client: GenesysClient,
}

impl GenesysPlatform {
    pub fn new(client: GenesysClient) -> Self {
        Self { client }
    }

    pub fn client(&self) -> &GenesysClient {
        &self.client
    }
}

/// One attempt of a catalog read may take this long (wall time) before it is abandoned and retried.
const CATALOG_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// A catalog read with a few short retries, each attempt bounded by [`CATALOG_ATTEMPT_TIMEOUT`]: a catalog takes
/// `2 + queues` reads, and one transient failure or hung answer among them must not fail (or stall) the whole load
/// that every leg of the connection waits for.
async fn catalog_call<T, F, Fut>(client: &GenesysClient, endpoint: &'static str, op: F) -> Result<T, PlatformError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, PlatformError>>,
{
    call_with_retry(client.clock().as_ref(), None, &RetryPolicy::default(), |_| {
        let attempt = op();
        async move {
            match tokio::time::timeout(CATALOG_ATTEMPT_TIMEOUT, attempt).await {
                Ok(r) => r,
                Err(_) => Err(PlatformError::transport(
                    ErrorClass::Retryable,
                    endpoint,
                    format!("no answer within {CATALOG_ATTEMPT_TIMEOUT:?}"),
                )),
            }
        }
    })
    .await
}

const WRITE_ENDPOINT: &str =
    "/api/v2/conversations/{media}/{conversationId}/participants/{participantId}/communications/{communicationId}/wrapup";

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
        let codes = catalog_call(c, endpoints::WRAPUPCODES, || c.list_wrapupcodes(prio)).await?;
        let queues = catalog_call(c, endpoints::QUEUES, || c.list_queues(prio)).await?;
        let mut entries = Vec::with_capacity(queues.len());
        for q in queues {
            let assigned =
                catalog_call(c, endpoints::QUEUE_WRAPUPCODES, || c.list_queue_wrapupcodes(&q.id, prio)).await?;
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
                acw_mode: acw.wrapup_prompt,
            });
        }
        Ok(Catalog {
            codes: codes.into_iter().map(|c| CodeEntry { id: c.id, name: c.name }).collect(),
            queues: entries,
        })
    }

    async fn read_code(&self, leg: &LegRecord, urgency: Urgency) -> Result<Option<String>, PlatformError> {
        let k = &leg.key;
        let reserve = self.client.clock().clock_duration(write_reserve(self.client.budget()));
        let priority = urgency.leaving_room(reserve).priority();
        let current = self.client.get_participant_wrapup(&k.conversation, &k.participant, None, true, priority).await?;
        Ok(current.and_then(|w| w.code))
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
            .await?;
        Ok(())
    }

    fn stats(&self) -> CallStats {
        let s = self.client.stats();
        CallStats { total: s.calls_total, rate_limited: s.rate_limited_total, token_requests: s.token_requests_total }
    }
}
