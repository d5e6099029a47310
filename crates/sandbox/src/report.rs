//! Ground truth as data: the per-leg truth (`GET /sandbox/v1/legs`) and the summary report (`GET /sandbox/v1/report`).
//!
//! Tests and benchmarks assert on these, never on the emulated platform's own answers: the report says what really
//! happened to every leg and which invariant a client broke.

use crate::genesys::model::Media;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Who decided a leg's final code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodedBy {
    Agent,
    Api,
    SystemTimeout,
    Skipped,
    None,
}

/// The truth about one agent leg.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LegTruth {
    pub conversation_id: String,
    pub participant_id: String,
    pub communication_id: String,
    pub media_type: Media,
    pub queue_id: Option<String>,
    pub queue_name: Option<String>,
    pub user_id: Option<String>,
    /// Participant-side prompt (`mandatory`, `optional`, `timeout`, `forcedTimeout`, `agentRequested`).
    pub wrapup_prompt: Option<String>,
    pub wrapup_required: bool,
    /// `alerting`, `connected`, `acw`, `done`.
    pub state: String,
    pub acw_started_at: Option<String>,
    /// When the platform closes the window by itself; `None` if it never does.
    pub acw_deadline: Option<String>,
    /// `None` while the window is open (or never opened).
    pub window_closed_at: Option<String>,
    pub final_code: Option<String>,
    pub final_code_name: Option<String>,
    pub coded_by: CodedBy,
    /// Accepted API writes.
    pub api_writes: u32,
    pub agent_coded_before_api: bool,
    pub agent_changed_after_api: bool,
    /// The conversation's hidden true outcome (a code id of the leg's queue; see `engine::outcome`), set when the
    /// agent connects.
    #[serde(default)]
    pub true_code: Option<String>,
    #[serde(default)]
    pub true_code_name: Option<String>,
    /// The code the agent picks (the true outcome with the configured `agent_accuracy`), whether or not the agent
    /// gets to set it.
    #[serde(default)]
    pub agent_pick: Option<String>,
    #[serde(default)]
    pub agent_pick_name: Option<String>,
}

/// One recorded invariant violation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Violation {
    /// `overwrite`, `outside_window`, `duplicate_write`.
    pub kind: String,
    pub conversation_id: String,
    pub participant_id: String,
    pub at: String,
    /// `outside_window` only: how long (simulated ms) before the write the leg's window had closed; absent when the
    /// window never opened (or had not opened yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_close_ms: Option<i64>,
    /// `outside_window` only: the platform took the write anyway (it landed outside the window).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub landed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegCounts {
    pub total: u64,
    /// Not yet closed: alerting, talking or in ACW.
    pub open: u64,
    pub coded_by_agent: u64,
    pub coded_by_api: u64,
    pub system_timeout: u64,
    pub skipped: u64,
    /// Ended without an ACW window.
    pub no_acw: u64,
}

impl LegCounts {
    /// Counts one leg: `closed` once nothing about it can change any more (its window, if any, is over).
    pub fn count(&mut self, closed: bool, coded_by: Option<CodedBy>) {
        self.total += 1;
        let n = match (closed, coded_by) {
            (false, _) => &mut self.open,
            (true, Some(CodedBy::Agent)) => &mut self.coded_by_agent,
            (true, Some(CodedBy::Api)) => &mut self.coded_by_api,
            (true, Some(CodedBy::SystemTimeout)) => &mut self.system_timeout,
            (true, Some(CodedBy::Skipped)) => &mut self.skipped,
            (true, Some(CodedBy::None) | None) => &mut self.no_acw,
        };
        *n += 1;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViolationReport {
    pub overwrites: u64,
    pub overwrite_attempts: u64,
    /// Write attempts on a leg not in its window (each also below, by kind).
    pub outside_window: u64,
    /// Of those, writes the platform took (they landed outside the window).
    #[serde(default)]
    pub outside_window_landed: u64,
    /// Of those, attempts on legs that never had a window (no ACW at all).
    #[serde(default)]
    pub outside_window_no_acw: u64,
    pub duplicate_writes: u64,
    pub details: Vec<Violation>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiReport {
    pub total: u64,
    pub rate_limited: u64,
    /// Requests made with a token before the `Retry-After` that token was given had elapsed.
    #[serde(default)]
    pub calls_before_retry_after: u64,
    /// Writes the platform answered as accepted and did not keep (the `unpersisted_write_rate` fault).
    #[serde(default)]
    pub unpersisted_writes: u64,
    /// `"METHOD /path/{template}"` → status (as a string) → count.
    pub by_endpoint: BTreeMap<String, BTreeMap<String, u64>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventReport {
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub failed_deliveries: u64,
    /// Notification websocket: event frames written to a connected socket.
    #[serde(default)]
    pub ws_frames_sent: u64,
    /// Notification websocket: event frames lost (subscribed channel without a socket, or broken on that frame).
    #[serde(default)]
    pub ws_frames_dropped: u64,
    /// Notification websockets broken by the fault profile or on demand.
    #[serde(default)]
    pub ws_sockets_dropped: u64,
}

/// The summary report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub legs: LegCounts,
    pub violations: ViolationReport,
    pub api: ApiReport,
    pub events: EventReport,
    /// The NICE CXone business unit (same section shapes).
    #[serde(default)]
    pub cxone: crate::cxone::CxoneReport,
}
