//! A leg: the unit that gets a code. On Genesys, one agent participant of a conversation; on CXone, one contact.
//!
//! [`LegFacts`] are the platform-neutral facts a rule can match on. Connectors fill them from event payloads (and,
//! where the payload is not enough, from one API read), so the rule engine never sees a platform type.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Which platform a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Genesys,
    Cxone,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Genesys => "genesys",
            Platform::Cxone => "cxone",
        }
    }
}

/// The normalized channel of a leg (Genesys media type, CXone media/channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Voice,
    Callback,
    Email,
    Message,
    Chat,
    WorkItem,
    Other,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Voice => "voice",
            Channel::Callback => "callback",
            Channel::Email => "email",
            Channel::Message => "message",
            Channel::Chat => "chat",
            Channel::WorkItem => "workitem",
            Channel::Other => "other",
        }
    }
}

/// Direction of the interaction.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, PartialOrd, Ord, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
    #[default]
    Unknown,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Unknown => "unknown",
        }
    }
}

/// Identifies one leg within one platform connection.
///
/// Genesys: `conversation` = conversationId, `participant` = participantId.
/// CXone: `conversation` = masterContactId, `participant` = contactId.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, PartialOrd, Ord)]
pub struct LegKey {
    pub connection: String,
    pub conversation: String,
    pub participant: String,
}

impl LegKey {
    pub fn new(connection: impl Into<String>, conversation: impl Into<String>, participant: impl Into<String>) -> Self {
        Self { connection: connection.into(), conversation: conversation.into(), participant: participant.into() }
    }
}

impl std::fmt::Display for LegKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.connection, self.conversation, self.participant)
    }
}

/// Everything known about a leg when its agent part ends. Platform-neutral; what a rule matches on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema, Default)]
pub struct LegFacts {
    /// `None` only in hand-built test values; connectors always set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Genesys: communicationId (needed for the write path); CXone: unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub communication_id: Option<String>,
    /// Platform media path segment, e.g. Genesys `calls`, `callbacks`, `emails`, `messages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_id: Option<String>,
    /// Queue (Genesys) or skill (CXone) name, resolved from the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Normalized lower-case disconnect type, e.g. `peer`, `client`, `transfer`, `system`, `timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disconnect_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub talk_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_ms: Option<u64>,
    /// When the agent's part ended (ACW opened), on the platform's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    /// How long the platform keeps the ACW window open, if it closes it by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acw_timeout_ms: Option<u64>,
    /// How the leg's queue runs its ACW window (from the catalog, or from the platform's own report of the leg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acw: Option<crate::catalog::AcwPolicy>,
    /// For windows the platform does not time out (optional, agent-requested): how long the service expects the
    /// agent to stay, learnt from the queue's recent legs. It orders work (see `LegRecord::estimated_deadline`) and
    /// never stops a write; set by the service, at intake when it can, else when it decides the leg.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acw_estimate_ms: Option<u64>,
    /// Outbound campaign id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// Participant / contact attributes (custom data).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}
