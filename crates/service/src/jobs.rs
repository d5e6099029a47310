//! Periodic jobs when several processes share one store: each job (a connection's reconcile pass, its CXone
//! detection poll and completed-contacts sweep) is run by the one process that holds its lease in the store
//! ([`Store::lead`]), renewed every period; when the holder dies its lease runs out and another process takes the
//! job over. On the embedded SQLite store the process is alone and always leads.

use std::sync::Arc;
use std::time::Duration;
use wrapup_core::clock::SharedClock;
use wrapup_store::Store;

/// Asks the store whether this process runs a periodic job now.
pub struct JobLeases {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    /// This process's name in leases (unique per process).
    pub owner: String,
}

impl JobLeases {
    /// Whether this process runs `job`, which it (or whoever holds it) runs every `period`. Taking or renewing the
    /// lease is the answer; a store error counts as not leading (the job's next leader catches up: every job reads
    /// what happened since its last run, whoever ran it).
    pub async fn leads(&self, job: &str, period: Duration) -> bool {
        let lease = self.clock.clock_duration(lease_for(period));
        match self.store.lead(job, &self.owner, self.clock.now(), lease).await {
            Ok(leads) => leads,
            Err(e) => {
                tracing::warn!(job, error = %e, "Could not ask the store who runs this job; skipping this period.");
                false
            }
        }
    }
}

/// How long a job's lease lasts: three periods (a holder renews it every period, so one slow period does not lose
/// it, and a dead holder's job is taken over within three), and at least a second, for jobs without a period (a
/// pass only at start).
pub fn lease_for(period: Duration) -> Duration {
    (period * 3).max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_outlasts_a_few_periods() {
        assert_eq!(lease_for(Duration::from_secs(60)), Duration::from_secs(180));
        assert_eq!(lease_for(Duration::from_millis(200)), Duration::from_secs(1));
        assert_eq!(lease_for(Duration::ZERO), Duration::from_secs(1));
    }
}
