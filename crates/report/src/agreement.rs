//! Agreement of decided codes with agents' codes: a confusion matrix (decided code × agent's code, legs per cell)
//! and the rate on its diagonal. `wrapup report` counts it for the shadow rules that ran; `wrapup simulate` for
//! candidate rules.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One cell of a confusion matrix: legs on which `decided` was decided and the agent chose `agent` (code names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Cell {
    pub decided: String,
    pub agent: String,
    pub legs: u64,
}

/// Decided code × agent's code, counted leg by leg.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confusion {
    cells: BTreeMap<(String, String), u64>,
}

impl Confusion {
    pub fn add(&mut self, decided: &str, agent: &str) {
        *self.cells.entry((decided.to_string(), agent.to_string())).or_default() += 1;
    }

    /// Legs counted.
    pub fn legs(&self) -> u64 {
        self.cells.values().sum()
    }

    /// Legs on which the agent chose the decided code.
    pub fn agreed(&self) -> u64 {
        self.cells.iter().filter(|((d, a), _)| d == a).map(|(_, n)| n).sum()
    }

    /// `agreed / legs` to 4 decimals; `None` without legs.
    pub fn rate(&self) -> Option<f64> {
        rate(self.agreed(), self.legs())
    }

    /// The cells, sorted by decided code then agent's code.
    pub fn cells(&self) -> Vec<Cell> {
        self.cells.iter().map(|((d, a), n)| Cell { decided: d.clone(), agent: a.clone(), legs: *n }).collect()
    }
}

/// `part / whole` to 4 decimals; `None` when `whole` is 0.
pub fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0)
}
