//! Normalized platform events. Connectors parse platform payloads into these; intake dedupes and persists them.

use crate::leg::{LegFacts, LegKey};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One platform signal about one leg.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub leg: LegKey,
    /// Stable across redeliveries of the same platform event (e.g. topic + conversation + participant + eventTime):
    /// a second event with the same key is a duplicate and has no effect.
    pub dedupe_key: String,
    /// When the platform says it happened.
    pub occurred_at: Timestamp,
    /// The platform's correlation id for the event, if any (for the ledger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The agent's part ended; the ACW window opens (Genesys `user.end` with wrap-up required; CXone `Disconnected`
    /// with `FinalState=False`).
    LegEnded { facts: Box<LegFacts> },
    /// Someone recorded a code on the leg (Genesys `.acw` / `.wrapup` detail events; CXone disposition seen).
    /// `code_id` is the platform's code id; `None` when the window closed with no code (skipped).
    /// `system` is true when the platform stamped its own code (e.g. Genesys `ININ-WRAP-UP-TIMEOUT` at ACW timeout):
    /// that is the window closing, not a person's choice.
    CodeRecorded { code_id: Option<String>, notes: Option<String>, system: bool },
    /// The window is over, and nothing was recorded on the leg (an authoritative final record without a code).
    LegClosed,
    /// The window is over, and whether a code was recorded before it closed is not known (a real-time feed saw the
    /// contact end: the agent may have dispositioned it, or our write may have ended ACW). No write may be sent from
    /// now on; the worker reads the code the leg ended with and records that outcome.
    LegClosedUnread,
    /// A CRM decided the leg's code (`PUT /api/v1/decisions/…`). It decides a leg not yet written; a leg being
    /// written or finished keeps what it has.
    DecisionArrived { decision: Box<crate::lifecycle::ExternalDecision> },
    /// An operator resolved or dismissed the leg from the review queue (see `lifecycle::review`).
    OperatorResolved { resolution: Box<crate::lifecycle::OperatorResolution> },
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::LegEnded { .. } => "leg_ended",
            EventKind::CodeRecorded { .. } => "code_recorded",
            EventKind::LegClosed => "leg_closed",
            EventKind::LegClosedUnread => "leg_closed_unread",
            EventKind::DecisionArrived { .. } => "decision_arrived",
            EventKind::OperatorResolved { .. } => "operator_resolved",
        }
    }
}
