//! How a decision is applied (timing, mode) and how a leg ends (outcome).

use jiff::SignedDuration;
use serde::{Deserialize, Serialize};

/// When to apply a decided code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Timing {
    /// As soon as the leg ends.
    Immediate,
    /// Give the agent the window; fill it `margin` before the platform's ACW timeout. Without a known timeout this
    /// behaves as `Immediate`.
    BeforeTimeout {
        #[serde(with = "duration_ms")]
        #[schema(value_type = i64)]
        margin: SignedDuration,
    },
    /// `delay` after the leg ends.
    After {
        #[serde(with = "duration_ms")]
        #[schema(value_type = i64)]
        delay: SignedDuration,
    },
}

impl Timing {
    pub fn kind(&self) -> &'static str {
        match self {
            Timing::Immediate => "immediate",
            Timing::BeforeTimeout { .. } => "before_timeout",
            Timing::After { .. } => "after",
        }
    }
}

/// Write the code, or only decide and record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    Shadow,
}

/// The one recorded ending of every leg that entered ACW.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Our write was accepted (and, when the platform says so, confirmed).
    Applied,
    /// A code was already there (agent or another writer) before we wrote; we did not write.
    AgentWon,
    /// We wrote, and later someone changed the code. Recorded, never fought.
    AgentChanged,
    /// No rule matched.
    NoRule,
    /// A shadow rule decided a code; nothing was written.
    Shadow,
    /// The window closed before we could act.
    Expired,
    /// The leg never had an ACW window (an agent-requested window the agent did not ask for, a skill without
    /// ACW): nothing could be written, and nothing was.
    NoAcw,
    /// Needs a person; the ledger says why.
    Review,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::Applied,
        Outcome::AgentWon,
        Outcome::AgentChanged,
        Outcome::NoRule,
        Outcome::Shadow,
        Outcome::Expired,
        Outcome::NoAcw,
        Outcome::Review,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::AgentWon => "agent_won",
            Outcome::AgentChanged => "agent_changed",
            Outcome::NoRule => "no_rule",
            Outcome::Shadow => "shadow",
            Outcome::Expired => "expired",
            Outcome::NoAcw => "no_acw",
            Outcome::Review => "review",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serde helper: a duration as integer milliseconds.
pub mod duration_ms {
    use jiff::SignedDuration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &SignedDuration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.as_millis() as i64)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SignedDuration, D::Error> {
        Ok(SignedDuration::from_millis(i64::deserialize(d)?))
    }
}
