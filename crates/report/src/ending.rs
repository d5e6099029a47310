//! What a leg ended with, read from its record alone: the code that stood on it and who chose it. `wrapup report`
//! counts usage and agreement from it, and `wrapup simulate` compares candidate decisions with it.

use std::collections::BTreeSet;
use wrapup_core::catalog::Catalog;
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::Outcome;

/// What is known of one connection beyond its legs: its cached catalog (to name codes by id) and the code ids or
/// names its platform stamps by itself at a timeout.
#[derive(Debug, Clone, Default)]
pub struct ConnectionView {
    pub catalog: Option<Catalog>,
    pub system_codes: BTreeSet<String>,
}

impl ConnectionView {
    /// The code's name in the cached catalog, or its id when the catalog does not know it.
    pub fn code_name(&self, id: &str) -> String {
        self.catalog.as_ref().and_then(|c| c.code_by_id(id)).map_or(id, |c| c.name.as_str()).to_string()
    }

    /// Whether the code is one the platform sets by itself (by id, or by its name in the catalog).
    pub fn is_system(&self, id: &str) -> bool {
        self.system_codes.contains(id)
            || self.catalog.as_ref().and_then(|c| c.code_by_id(id)).is_some_and(|c| self.system_codes.contains(&c.name))
    }

    /// A code name as the catalog spells it (rules may differ in case), or as written when the catalog lacks it.
    pub fn canonical(&self, name: &str) -> String {
        self.catalog.as_ref().and_then(|c| c.code_by_name(name)).map_or_else(|| name.to_string(), |c| c.name.clone())
    }
}

/// What a finished leg ended with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The leg has not finished.
    Unfinished,
    /// The leg never had an ACW window.
    NoWindow,
    /// An agent's code; `first`: the agent coded before any write of ours (`agent_won`).
    Agent { id: String, name: String, first: bool },
    /// Our code stood.
    Applied { id: String, name: String },
    /// The window ended without a business code: no code, or the platform's own (`system`: its id and name).
    Uncoded { system: Option<(String, String)> },
    /// Not known (e.g. a `review` leg whose final code was never reported).
    Unknown,
}

/// What the leg ended with, by its outcome, its write intent and the last code the platform reported on it.
pub fn ending(leg: &LegRecord, view: &ConnectionView) -> Ending {
    let Some(outcome) = leg.outcome.filter(|_| leg.is_done()) else { return Ending::Unfinished };
    let ours = |id: &str| leg.intent.as_ref().is_some_and(|i| i.code_id == id);
    let named = |id: &str| (id.to_string(), view.code_name(id));
    match outcome {
        Outcome::NoAcw => Ending::NoWindow,
        Outcome::Applied => match &leg.intent {
            Some(intent) => {
                let name = view.catalog.as_ref().and_then(|c| c.code_by_id(&intent.code_id)).map(|c| c.name.clone());
                Ending::Applied { id: intent.code_id.clone(), name: name.unwrap_or_else(|| intent.code_name.clone()) }
            }
            None => Ending::Unknown,
        },
        Outcome::Expired => {
            Ending::Uncoded { system: leg.observed_code.as_deref().filter(|id| view.is_system(id)).map(named) }
        }
        Outcome::AgentWon | Outcome::AgentChanged | Outcome::NoRule | Outcome::Shadow | Outcome::Review => {
            match leg.observed_code.as_deref() {
                Some(id) if view.is_system(id) => Ending::Uncoded { system: Some(named(id)) },
                Some(id) if ours(id) && !matches!(outcome, Outcome::AgentWon | Outcome::AgentChanged) => {
                    let (id, name) = named(id);
                    Ending::Applied { id, name }
                }
                Some(id) => {
                    let (id, name) = named(id);
                    Ending::Agent { id, name, first: outcome == Outcome::AgentWon }
                }
                None if leg.closed_at.is_some() && outcome != Outcome::AgentWon => Ending::Uncoded { system: None },
                None => Ending::Unknown,
            }
        }
    }
}
