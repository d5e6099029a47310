//! A connection's code catalog, platform-neutral: codes (name ↔ id) and which codes each queue/skill allows.
//!
//! Users name codes; ids are resolved per connection at run time from this view of the live catalog (invariant 5).
//! Connectors build it from the platform (Genesys wrap-up codes + queue assignments; CXone dispositions per skill);
//! the service caches it and refreshes it on a TTL and whenever the platform rejects a code.

use serde::{Deserialize, Serialize};

/// How a queue (Genesys) or skill (CXone) runs its ACW window, in the terms that decide whether and until when a
/// write can land. Platform settings map onto it in each connector (Genesys `acwSettings.wrapupPrompt`, CXone
/// `acwTypeId` + `requireDisposition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AcwPolicy {
    /// Every leg gets a window, and it ends only with a code (the agent's, ours, or the platform's own at its
    /// timeout). A gate read that finds no code before the deadline finds the window open.
    Mandatory,
    /// Every leg gets a window, but the agent may leave it without a code at any moment: whether it is still open
    /// must be read, not assumed.
    Optional,
    /// A leg gets a window only if its agent asked for one during the interaction; it may never open.
    AgentRequested,
    /// No leg of this queue ever gets a window (CXone skills without ACW).
    None,
}

impl AcwPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            AcwPolicy::Mandatory => "mandatory",
            AcwPolicy::Optional => "optional",
            AcwPolicy::AgentRequested => "agent_requested",
            AcwPolicy::None => "none",
        }
    }

    /// Whether a leg's window can end (or never start) without any code on it, so that the gate must read the
    /// window's state and not only the code.
    pub fn window_may_end_uncoded(self) -> bool {
        !matches!(self, AcwPolicy::Mandatory)
    }
}

/// One code of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeEntry {
    pub id: String,
    pub name: String,
}

/// One queue (Genesys) or skill (CXone) with the codes it allows and its ACW timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    pub id: String,
    pub name: String,
    /// Code ids assigned to this queue.
    pub code_ids: Vec<String>,
    /// The platform's ACW timeout for legs of this queue, when it closes the window by itself.
    pub acw_timeout_ms: Option<u64>,
    /// Platform ACW mode, verbatim (e.g. Genesys `MANDATORY_TIMEOUT`), for explanations.
    pub acw_mode: Option<String>,
    /// The ACW mode in the terms the worker acts on; `None` when the platform did not say (treated as the most
    /// cautious reading: the window's state is read before a write).
    #[serde(default)]
    pub acw: Option<AcwPolicy>,
}

/// Why a code name could not be resolved for a leg.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no code named {name:?} exists in the catalog of this connection")]
    UnknownCode { name: String },
    #[error("code {name:?} exists but is not assigned to queue {queue:?}")]
    NotAllowed { name: String, queue: String },
    #[error("queue {queue_id:?} is not in the catalog of this connection")]
    UnknownQueue { queue_id: String },
}

/// The catalog of one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    pub codes: Vec<CodeEntry>,
    pub queues: Vec<QueueEntry>,
}

impl Catalog {
    /// The code with exactly this name (names are matched case-sensitively first, then case-insensitively).
    pub fn code_by_name(&self, name: &str) -> Option<&CodeEntry> {
        self.codes
            .iter()
            .find(|c| c.name == name)
            .or_else(|| self.codes.iter().find(|c| c.name.eq_ignore_ascii_case(name)))
    }

    pub fn code_by_id(&self, id: &str) -> Option<&CodeEntry> {
        self.codes.iter().find(|c| c.id == id)
    }

    pub fn queue_by_id(&self, id: &str) -> Option<&QueueEntry> {
        self.queues.iter().find(|q| q.id == id)
    }

    pub fn queue_by_name(&self, name: &str) -> Option<&QueueEntry> {
        self.queues.iter().find(|q| q.name == name)
    }

    /// Resolves `name` to the code a leg of `queue_id` may use. Without a queue, any existing code resolves.
    pub fn resolve(&self, name: &str, queue_id: Option<&str>) -> Result<&CodeEntry, ResolveError> {
        let code = self.code_by_name(name).ok_or_else(|| ResolveError::UnknownCode { name: name.to_string() })?;
        if let Some(qid) = queue_id {
            let queue =
                self.queue_by_id(qid).ok_or_else(|| ResolveError::UnknownQueue { queue_id: qid.to_string() })?;
            if !queue.code_ids.iter().any(|id| id == &code.id) {
                return Err(ResolveError::NotAllowed { name: code.name.clone(), queue: queue.name.clone() });
            }
        }
        Ok(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog {
            codes: vec![
                CodeEntry { id: "c1".into(), name: "Sale".into() },
                CodeEntry { id: "c2".into(), name: "No sale".into() },
            ],
            queues: vec![QueueEntry {
                id: "q1".into(),
                name: "Sales".into(),
                code_ids: vec!["c1".into()],
                acw_timeout_ms: Some(30_000),
                acw_mode: Some("MANDATORY_TIMEOUT".into()),
                acw: Some(AcwPolicy::Mandatory),
            }],
        }
    }

    #[test]
    fn a_code_assigned_to_the_queue_resolves_to_its_id() {
        assert_eq!(catalog().resolve("Sale", Some("q1")).unwrap().id, "c1");
        assert_eq!(catalog().resolve("sale", Some("q1")).unwrap().id, "c1");
    }

    #[test]
    fn a_code_not_assigned_to_the_queue_does_not_resolve() {
        assert!(matches!(catalog().resolve("No sale", Some("q1")), Err(ResolveError::NotAllowed { .. })));
        assert!(matches!(catalog().resolve("Nope", None), Err(ResolveError::UnknownCode { .. })));
        assert!(matches!(catalog().resolve("Sale", Some("qx")), Err(ResolveError::UnknownQueue { .. })));
    }
}
