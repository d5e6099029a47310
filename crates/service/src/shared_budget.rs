//! One request budget across replicas. The platform limits requests per OAuth client, so replicas sharing a
//! connection's clients must not each assume the whole limit: every second each replica reports its footprint in
//! each client's limit to the store and gets back the slice it may spend ([`Store::share_budget`]; how slices are
//! handed out, and why they never add up to more than the limit, is in the store's `budget_slices`). The slice is
//! the budget's for a few seconds only ([`LEASE`]): a replica that cannot reach the store stops spending before the
//! store hands its slice on. On the embedded SQLite store the process is alone and the budget stays whole.

use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use wrapup_connectors::budget::Budget;
use wrapup_store::{CredentialUsage, Store};

/// How often a replica reports.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// How long a slice lasts unless reported again: a few reports, so one slow report does not stall the replica, and
/// no more, since a replica that dies is assumed to have spent at its pace until then.
pub const LEASE: Duration = Duration::from_secs(3);

/// The slice runs out locally this much before the store's lease does (the local count starts before the store's
/// clock is read, so this only covers the two clocks' rates over one lease).
const MARGIN: Duration = Duration::from_millis(250);

/// How far ahead a replica on shared budgets claims legs: as many as its slices can begin within this time.
const CLAIM_AHEAD: Duration = Duration::from_secs(6);

/// How many legs a process should hold at once for `budgets`, when any of them is shared with replicas: what its
/// slices can begin within [`CLAIM_AHEAD`] (a leg costs a read and a write). Legs beyond that stay in
/// the store, in deadline order, for whichever replica has room: a replica holding more than its slice serves would
/// keep them from replicas whose slices go unspent, and would work them out of deadline order. `None`: no budget is
/// shared, hold as many as there are slots.
pub fn legs_worth_holding(budgets: impl Iterator<Item = Budget>) -> Option<usize> {
    let shares: Vec<u32> = budgets.flat_map(|b| b.status()).filter_map(|s| s.share).collect();
    if shares.is_empty() {
        return None;
    }
    // Nothing at all without a slice: a leg held by a replica that cannot spend would wait for nothing.
    let per_second = f64::from(shares.iter().sum::<u32>()) / 60.0;
    Some((per_second * CLAIM_AHEAD.as_secs_f64() / 2.0).ceil() as usize)
}

/// One connection's budget, shared with the replicas on the same store.
pub struct SharedBudget {
    pub connection: String,
    pub budget: Budget,
    pub store: Arc<dyn Store>,
    /// This process's name in the store (unique per process).
    pub owner: String,
}

impl SharedBudget {
    /// Reports this process's footprint and takes the slices the store answers. `Ok(false)`: the store is not
    /// shared, the budget stays whole.
    pub async fn report(&self) -> anyhow::Result<bool> {
        let started = Instant::now();
        let usage = self.usage();
        let Some(shares) = self.store.share_budget(&self.connection, &self.owner, &usage, LEASE).await? else {
            return Ok(false);
        };
        tracing::debug!(connection = %self.connection, owner = %self.owner, ?usage, ?shares, waiting = self.budget.waiting(), "Budget slices.");
        let until = started + LEASE - MARGIN;
        for (credential, share) in shares.into_iter().enumerate() {
            self.budget.set_share(credential, share, until);
            metrics::gauge!("wrapup_budget_share", "connection" => self.connection.clone(), "credential" => credential.to_string())
                .set(f64::from(share));
        }
        Ok(true)
    }

    fn usage(&self) -> Vec<CredentialUsage> {
        self.budget.usage().into_iter().map(|(limit, footprint)| CredentialUsage { limit, footprint }).collect()
    }

    /// Reports every [`REPORT_EVERY`] until `stop`, then hands the slices back (the store keeps reserving what this
    /// process's requests may still fill, and hands on the rest at once). A failed report only logs: the slices run
    /// out by themselves.
    pub async fn run(self, stop: crate::scheduler::Shutdown) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(REPORT_EVERY) => {}
                _ = stop.cancelled() => {
                    let usage = self.usage();
                    if let Err(e) = self.store.share_budget(&self.connection, &self.owner, &usage, Duration::ZERO).await {
                        tracing::warn!(connection = %self.connection, error = %e, "Could not hand back this replica's slice of the request budget; it runs out by itself.");
                    }
                    return;
                }
            }
            if let Err(e) = self.report().await {
                tracing::warn!(connection = %self.connection, error = %e, "Could not report to the store for a slice of the request budget; this replica stops spending once its slice runs out.");
            }
        }
    }
}
