//! What the pipeline needs from a platform connection, independent of the platform.
//!
//! The worker reads a leg's current code (the gate), writes a code, and loads the catalog — nothing else. Each
//! platform connector is adapted to [`LegPlatform`] (see `genesys.rs`), so the worker, the catalog cache and the
//! summary are the same code for Genesys and CXone.

use async_trait::async_trait;
use jiff::Timestamp;
use std::sync::Arc;
use wrapup_connectors::error::PlatformError;
use wrapup_connectors::Precondition;
use wrapup_core::catalog::{Catalog, CodeEntry};
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::Platform;

/// How urgent a call is: live legs by deadline first, then reconciliation, then backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Live { deadline: Option<Timestamp> },
    Reconcile,
    Backfill,
}

impl Urgency {
    /// The request budget's priority for a call of this urgency (every connector queues by it).
    pub fn priority(self) -> wrapup_connectors::budget::Priority {
        use wrapup_connectors::budget::Priority;
        match self {
            Urgency::Live { deadline } => Priority::live(deadline),
            Urgency::Reconcile => Priority::reconcile(),
            Urgency::Backfill => Priority::backfill(),
        }
    }
}

/// Counters of one connection's platform calls.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CallStats {
    pub total: u64,
    pub rate_limited: u64,
    /// OAuth token requests (included in `total`).
    pub token_requests: u64,
}

#[async_trait]
pub trait LegPlatform: Send + Sync + 'static {
    fn connection(&self) -> &str;
    fn platform(&self) -> Platform;
    /// The live catalog (codes and per-queue assignments), fetched from the platform.
    async fn fetch_catalog(&self) -> Result<Catalog, PlatformError>;
    /// The code currently on the leg, provisional included; `None` when no code is set.
    async fn read_code(&self, leg: &LegRecord, urgency: Urgency) -> Result<Option<String>, PlatformError>;
    /// Writes `code` (with `notes`) to the leg — only if `still_wanted` holds once the request may be sent
    /// (after waiting for the budget); otherwise nothing is sent and the error class is `PreconditionFailed`.
    async fn write_code(
        &self,
        leg: &LegRecord,
        code: &CodeEntry,
        notes: Option<&str>,
        urgency: Urgency,
        still_wanted: &dyn Precondition,
    ) -> Result<(), PlatformError>;
    /// Calls made so far (every HTTP attempt, token requests included).
    fn stats(&self) -> CallStats;
}

pub type SharedPlatform = Arc<dyn LegPlatform>;
