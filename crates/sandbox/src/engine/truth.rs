//! Ground-truth counters both platforms keep: invariant violations by kind (with capped details) and API traffic.

use crate::engine::iso;
use crate::report::{ApiReport, Violation, ViolationReport};
use jiff::Timestamp;
use std::collections::{BTreeMap, HashMap};

/// Cap on stored violation details (counters keep counting).
const MAX_DETAILS: usize = 10_000;

/// Invariant-violation counters.
#[derive(Debug, Default, Clone)]
pub struct Violations {
    pub overwrites: u64,
    pub overwrite_attempts: u64,
    pub outside_window: u64,
    pub outside_window_landed: u64,
    pub outside_window_no_acw: u64,
    pub duplicate_writes: u64,
    pub details: Vec<Violation>,
}

impl Violations {
    /// A write over a code an agent had set.
    pub fn overwrite(&mut self, conversation_id: &str, participant_id: &str, at: Timestamp) {
        self.overwrites += 1;
        self.record(Violation::new("overwrite", conversation_id, participant_id, at));
    }

    /// A second effective write on the same leg.
    pub fn duplicate_write(&mut self, conversation_id: &str, participant_id: &str, at: Timestamp) {
        self.duplicate_writes += 1;
        self.record(Violation::new("duplicate_write", conversation_id, participant_id, at));
    }

    /// A write attempt on a leg not in its window: `never_opened` when the leg never had one, `landed` when the
    /// platform took the write anyway, `closed_at` when the window had closed.
    pub fn outside_window(
        &mut self,
        conversation_id: &str,
        participant_id: &str,
        at: Timestamp,
        never_opened: bool,
        landed: bool,
        closed_at: Option<Timestamp>,
    ) {
        self.outside_window += 1;
        self.outside_window_no_acw += u64::from(never_opened);
        self.outside_window_landed += u64::from(landed);
        self.record(Violation {
            after_close_ms: closed_at.map(|c| at.as_millisecond() - c.as_millisecond()),
            landed,
            ..Violation::new("outside_window", conversation_id, participant_id, at)
        });
    }

    fn record(&mut self, v: Violation) {
        if self.details.len() < MAX_DETAILS {
            self.details.push(v);
        }
    }

    pub fn report(&self) -> ViolationReport {
        ViolationReport {
            overwrites: self.overwrites,
            overwrite_attempts: self.overwrite_attempts,
            outside_window: self.outside_window,
            outside_window_landed: self.outside_window_landed,
            outside_window_no_acw: self.outside_window_no_acw,
            duplicate_writes: self.duplicate_writes,
            details: self.details.clone(),
        }
    }
}

impl Violation {
    fn new(kind: &str, conversation_id: &str, participant_id: &str, at: Timestamp) -> Self {
        Self {
            kind: kind.to_string(),
            conversation_id: conversation_id.to_string(),
            participant_id: participant_id.to_string(),
            at: iso(at),
            after_close_ms: None,
            landed: false,
        }
    }
}

/// API traffic counters for the report.
#[derive(Debug, Default, Clone)]
pub struct ApiStats {
    pub total: u64,
    pub rate_limited: u64,
    /// Requests a token made before the `Retry-After` it was given had elapsed (a client not honouring 429s).
    pub calls_before_retry_after: u64,
    /// Writes answered as accepted and not kept (`unpersisted_write_rate`).
    pub unpersisted_writes: u64,
    /// Raw endpoint key → status → count.
    pub by_endpoint: HashMap<String, BTreeMap<u16, u64>>,
}

impl ApiStats {
    /// The report section; `template` folds a raw endpoint key into the template it is reported under.
    pub fn report(&self, template: impl Fn(&str) -> String) -> ApiReport {
        let mut by_endpoint: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for (raw, statuses) in &self.by_endpoint {
            let entry = by_endpoint.entry(template(raw)).or_default();
            for (status, n) in statuses {
                *entry.entry(status.to_string()).or_default() += n;
            }
        }
        ApiReport {
            total: self.total,
            rate_limited: self.rate_limited,
            calls_before_retry_after: self.calls_before_retry_after,
            unpersisted_writes: self.unpersisted_writes,
            by_endpoint,
        }
    }
}
