//! The claim loop and the expiry sweep.
//!
//! The store is the priority queue (earliest ACW deadline first). The loop claims as many due legs as it has free
//! worker slots, so legs wait in the store — ordered — rather than in memory, and the platform budget's own queue
//! only ever orders the few legs in flight. It sleeps until the next leg is due, or until intake signals new work.
//! A separate sweep finishes legs whose window closed (`expired`) even when no worker touched them.

use crate::worker::Worker;
use jiff::SignedDuration;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util_shim::CancellationToken;
use wrapup_core::LegKey;

/// A minimal cancellation token (a `watch` channel), so we need no extra dependency.
pub mod tokio_util_shim {
    use tokio::sync::watch;

    #[derive(Clone)]
    pub struct CancellationToken {
        tx: std::sync::Arc<watch::Sender<bool>>,
        rx: watch::Receiver<bool>,
    }

    impl Default for CancellationToken {
        fn default() -> Self {
            let (tx, rx) = watch::channel(false);
            Self { tx: std::sync::Arc::new(tx), rx }
        }
    }

    impl CancellationToken {
        pub fn cancel(&self) {
            let _ = self.tx.send(true);
        }
        pub fn is_cancelled(&self) -> bool {
            *self.rx.borrow()
        }
        pub async fn cancelled(&self) {
            let mut rx = self.rx.clone();
            while !*rx.borrow_and_update() {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

pub use tokio_util_shim::CancellationToken as Shutdown;

#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// Legs worked on at once.
    pub max_in_flight: usize,
    /// Lease given to a claimed leg, in wall time.
    pub lease: Duration,
    /// How often the expiry sweep runs, in wall time.
    pub sweep_every: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self { max_in_flight: 64, lease: Duration::from_secs(120), sweep_every: Duration::from_millis(500) }
    }
}

/// Runs the claim loop until `shutdown`; in-flight legs finish before it returns.
pub async fn run_claim_loop(
    worker: Arc<Worker>,
    settings: SchedulerSettings,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(settings.max_in_flight));
    let in_flight: Arc<Mutex<HashSet<LegKey>>> = Arc::default();
    let clock = worker.clock.clone();
    let lease = SignedDuration::try_from(settings.lease).unwrap_or(SignedDuration::from_secs(120));
    let lease = clock.clock_duration(Duration::try_from(lease).unwrap_or_default());
    while !shutdown.is_cancelled() {
        let free = slots.available_permits();
        if free == 0 {
            // Every slot is busy: wait for one to free up rather than polling the store.
            tokio::select! {
                permit = slots.acquire() => drop(permit),
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        let mut claimed_any = false;
        {
            match worker.store.claim_due(clock.now(), free as u32, &worker.owner, lease).await {
                Ok(legs) => {
                    for claimed in legs {
                        let key = claimed.leg.key.clone();
                        if !in_flight.lock().insert(key.clone()) {
                            continue; // already being worked on in this process
                        }
                        claimed_any = true;
                        let Ok(permit) = slots.clone().acquire_owned().await else { break };
                        let (worker, in_flight) = (worker.clone(), in_flight.clone());
                        tokio::spawn(async move {
                            worker.process(claimed).await;
                            in_flight.lock().remove(&key);
                            drop(permit);
                        });
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Claiming due legs failed; retrying shortly."),
            }
        }
        if claimed_any && slots.available_permits() > 0 {
            continue;
        }
        let sleep = match worker.store.next_due().await {
            Ok(Some(at)) => clock.wall_duration(at.duration_since(clock.now())).min(Duration::from_millis(500)),
            _ => Duration::from_millis(500),
        };
        let sleep = sleep.max(Duration::from_millis(1));
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    // Let in-flight legs finish (each ends with a save or a release).
    let _ = slots.acquire_many(settings.max_in_flight as u32).await;
}

/// Finishes legs whose window closed, until `shutdown`.
pub async fn run_expiry_sweep(worker: Arc<Worker>, every: Duration, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        match worker.store.expire_overdue(worker.clock.now()).await {
            // Counted by the store's outcome hook, like every ending.
            Ok(expired) if !expired.is_empty() => {
                tracing::debug!(count = expired.len(), "Expired legs whose window closed.");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "The expiry sweep failed; retrying."),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}
