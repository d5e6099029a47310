//! The claim loop and the expiry sweep.
//!
//! The store is the priority queue (earliest ACW deadline first). The loop claims as many due legs as it has free
//! worker slots, so legs wait in the store — ordered — rather than in memory, and the platform budget's own queue
//! only ever orders the few legs in flight. It sleeps until the next leg is due, or until intake signals new work.
//! When every slot is busy, a due leg with an earlier deadline than a leg still waiting for the budget takes that
//! leg's slot, so the cap on legs in flight never reorders deadlines.
//! A separate sweep finishes legs whose window closed (`expired`) even when no worker touched them.

use crate::worker::Worker;
use jiff::{SignedDuration, Timestamp};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util_shim::CancellationToken;
use wrapup_connectors::place::{self, Place};
use wrapup_core::LegKey;
use wrapup_store::ClaimedLeg;

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
    let clock = worker.clock.clone();
    let lease = SignedDuration::try_from(settings.lease).unwrap_or(SignedDuration::from_secs(120));
    let lease = clock.clock_duration(Duration::try_from(lease).unwrap_or_default());
    let claims =
        Claims { worker, slots: Arc::new(Semaphore::new(settings.max_in_flight)), in_flight: Arc::default(), lease };
    let renewals = tokio::spawn(renew_leases(
        claims.worker.clone(),
        claims.in_flight.clone(),
        claims.lease,
        settings.lease / 3,
        shutdown.clone(),
    ));
    while !shutdown.is_cancelled() {
        let slots = claims.slots.available_permits();
        let held = settings.max_in_flight.saturating_sub(slots);
        let free = match claims.worker.legs_worth_holding() {
            Some(cap) => slots.min(cap.saturating_sub(held)),
            None => slots,
        };
        if free == 0 && slots > 0 {
            // Holding what this replica's slice of a shared budget can begin soon: the rest stays in the store for
            // the replicas with room. Look again as legs finish and slices change, and let urgent work take the place
            // of a leg waiting with a later deadline.
            tokio::select! {
                _ = wake.notified() => claims.make_way().await,
                _ = tokio::time::sleep(HELD_ENOUGH_POLL) => {}
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        if free == 0 {
            // Every slot is busy: wait for one to free up rather than polling the store, but let new work (and, now
            // and then, work whose time came) take the slot of a leg that waits for the budget with a later deadline.
            tokio::select! {
                permit = claims.slots.acquire() => drop(permit),
                _ = wake.notified() => claims.make_way().await,
                _ = tokio::time::sleep(MAKE_WAY_EVERY) => claims.make_way().await,
                _ = shutdown.cancelled() => {}
            }
            continue;
        }
        let mut claimed_any = false;
        match claims.worker.store.claim_due(clock.now(), free as u32, &claims.worker.owner, claims.lease).await {
            Ok(legs) => {
                for claimed in legs {
                    let Ok(permit) = claims.slots.clone().acquire_owned().await else { break };
                    claimed_any |= claims.start(claimed, permit);
                }
            }
            Err(e) => tracing::warn!(error = %e, "Claiming due legs failed; retrying shortly."),
        }
        if claimed_any && claims.slots.available_permits() > 0 {
            continue;
        }
        let sleep = match claims.worker.store.next_due().await {
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
    // Let in-flight legs finish (each ends with a save or a release); their leases are renewed until then.
    let _ = claims.slots.acquire_many(settings.max_in_flight as u32).await;
    renewals.abort();
}

/// Every `every` (wall time), extends the leases of the legs this process works on by `lease`, so that the lease can
/// be short on a store shared by replicas: a live worker keeps its legs, a dead one's are taken over once its last
/// renewal runs out. Runs until the claim loop ends (it outlives `shutdown` while in-flight legs finish).
async fn renew_leases(
    worker: Arc<Worker>,
    in_flight: Arc<Mutex<HashMap<LegKey, Arc<Place>>>>,
    lease: SignedDuration,
    every: Duration,
    shutdown: CancellationToken,
) {
    let every = every.max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let keys: Vec<LegKey> = in_flight.lock().keys().cloned().collect();
        if keys.is_empty() {
            continue;
        }
        let until = worker.clock.now().checked_add(lease).unwrap_or(Timestamp::MAX);
        if let Err(e) = worker.store.renew_leases(&worker.owner, &keys, until).await {
            // A lease that runs out costs this process the leg (its next save is refused), never a second writer.
            tracing::warn!(error = %e, legs = keys.len(), shutting_down = shutdown.is_cancelled(), "Could not renew the leases of legs in flight.");
        }
    }
}

/// With every slot busy, how often the loop looks for due work more urgent than a leg waiting for the budget, besides
/// when intake announces new work (legs also fall due by time: a delayed rule, a retry).
const MAKE_WAY_EVERY: Duration = Duration::from_secs(1);

/// How often a replica holding all the legs its budget slice can begin soon looks whether it may take more.
const HELD_ENOUGH_POLL: Duration = Duration::from_millis(200);

/// The legs this process works on: one slot each, and each one's place in the request budget's queue.
struct Claims {
    worker: Arc<Worker>,
    slots: Arc<Semaphore>,
    in_flight: Arc<Mutex<HashMap<LegKey, Arc<Place>>>>,
    lease: SignedDuration,
}

impl Claims {
    /// Works on `claimed` in a task of its own, holding `permit` until it is done; `false` if this process already
    /// works on that leg.
    fn start(&self, claimed: ClaimedLeg, permit: OwnedSemaphorePermit) -> bool {
        let key = claimed.leg.key.clone();
        let place = Place::new(claimed.leg.order_deadline());
        if self.in_flight.lock().insert(key.clone(), place.clone()).is_some() {
            return false;
        }
        let (worker, in_flight) = (self.worker.clone(), self.in_flight.clone());
        tokio::spawn(async move {
            // Boxed: a leg's work is a large future (kilobytes), and a task is moved a few times while it is spawned.
            place::hold(place, Box::pin(worker.process(claimed))).await;
            in_flight.lock().remove(&key);
            drop(permit);
        });
        true
    }

    /// Every slot is busy. If the most urgent due leg in the store has an earlier deadline than a leg that waits for
    /// the budget to begin its work, the waiting leg gives way (it goes back to the store unsent, see
    /// [`wrapup_connectors::place`]) and the urgent one takes its slot. Otherwise the claimed leg goes back at once.
    /// Without this, the legs claimed before a burst of urgent ones would take a fixed window's whole reset.
    async fn make_way(&self) {
        let latest_waiting = {
            let in_flight = self.in_flight.lock();
            in_flight
                .values()
                .filter(|p| p.waiting())
                .max_by(|a, b| deadline_order(a.deadline(), b.deadline()))
                .cloned()
        };
        let Some(latest_waiting) = latest_waiting else { return };
        let worker = &self.worker;
        let claimed = match worker.store.claim_due(worker.clock.now(), 1, &worker.owner, self.lease).await {
            Ok(mut legs) => match legs.pop() {
                Some(leg) => leg,
                None => return,
            },
            Err(e) => return tracing::warn!(error = %e, "Claiming due legs failed; retrying shortly."),
        };
        if latest_waiting.yields_to(claimed.leg.order_deadline()) && latest_waiting.give_way() {
            metrics::counter!("wrapup_legs_gave_way_total").increment(1);
            // The leg that gave way frees its slot once it has saved itself back to the store.
            if let Ok(permit) = self.slots.clone().acquire_owned().await {
                if self.start(claimed, permit) {
                    return;
                }
            }
            return;
        }
        if !self.in_flight.lock().contains_key(&claimed.leg.key) {
            let _ = worker.store.release(&claimed.leg.key, &worker.owner).await;
        }
    }
}

/// Deadlines in the order the store claims them: earliest first, none last.
fn deadline_order(a: Option<Timestamp>, b: Option<Timestamp>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.cmp(&b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acw_estimate::AcwEstimates;
    use crate::catalog::CatalogCache;
    use crate::platform::{CallStats, LegPlatform, Urgency};
    use crate::worker::{ConnectionRuntime, RetryPolicy};
    use wrapup_clock::ScaledClock;
    use wrapup_connectors::error::{ErrorClass, PlatformError};
    use wrapup_connectors::Precondition;
    use wrapup_core::catalog::{Catalog, CodeEntry};
    use wrapup_core::lifecycle::LegRecord;
    use wrapup_core::outcome::{Mode, Timing};
    use wrapup_core::rules::{Rule, RuleSet};
    use wrapup_core::{Event, EventKind, LegFacts, Outcome, Platform};
    use wrapup_store::Store;

    /// A platform whose budget is spent for the first gate read: it waits until `open` is notified (as for a
    /// permit, so it can be asked to give way). Every other read goes at once and finds our code where it was
    /// written, and every write lands.
    struct Spent {
        open: Notify,
        first_waits: std::sync::atomic::AtomicBool,
        writes: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl LegPlatform for Spent {
        fn connection(&self) -> &str {
            "c"
        }
        fn platform(&self) -> Platform {
            Platform::Genesys
        }
        async fn fetch_catalog(&self) -> Result<Catalog, PlatformError> {
            Ok(Catalog { codes: vec![CodeEntry { id: "7".into(), name: "Ours".into() }], queues: vec![] })
        }
        async fn read_code(&self, leg: &LegRecord, _: Urgency) -> Result<Option<String>, PlatformError> {
            if self.writes.lock().contains(&leg.key.conversation) {
                return Ok(Some("7".into()));
            }
            if self.first_waits.swap(false, std::sync::atomic::Ordering::SeqCst) {
                let permit = place::unless_asked(self.open.notified()).await;
                if permit.is_none() {
                    return Err(PlatformError::transport(ErrorClass::Yielded, "GET", "gave way"));
                }
            }
            Ok(None)
        }
        async fn write_code(
            &self,
            leg: &LegRecord,
            _: &CodeEntry,
            _: Option<&str>,
            _: Urgency,
            _: &dyn Precondition,
        ) -> Result<(), PlatformError> {
            self.writes.lock().push(leg.key.conversation.clone());
            Ok(())
        }
        fn stats(&self) -> CallStats {
            CallStats::default()
        }
    }

    /// One slot, a rule that codes every leg at once, and the claim loop running over an in-memory store.
    async fn one_slot() -> (Arc<Worker>, Arc<Spent>, Arc<Notify>, Shutdown) {
        let store: Arc<dyn Store> = Arc::new(wrapup_store::SqliteStore::open_in_memory().await.unwrap());
        one_slot_on(store, SchedulerSettings { max_in_flight: 1, ..Default::default() }).await
    }

    /// [`one_slot`] over `store`, with `settings`.
    async fn one_slot_on(
        store: Arc<dyn Store>,
        settings: SchedulerSettings,
    ) -> (Arc<Worker>, Arc<Spent>, Arc<Notify>, Shutdown) {
        let platform = Arc::new(Spent { open: Notify::new(), first_waits: true.into(), writes: Mutex::default() });
        let clock = ScaledClock::new(Timestamp::now(), 1.0).shared();
        let rules = RuleSet::new(vec![Rule {
            name: "all".into(),
            when: Default::default(),
            code: "Ours".into(),
            notes: None,
            timing: Timing::Immediate,
            mode: Mode::Enforce,
            platform: None,
            connection: None,
            decide: None,
        }])
        .unwrap();
        let conn = ConnectionRuntime {
            name: "c".into(),
            platform: platform.clone(),
            catalog: CatalogCache::new(platform.clone(), store.clone(), clock.clone(), SignedDuration::from_secs(3600)),
            rules: Arc::new(rules),
            acw_estimates: AcwEstimates::new("c", SignedDuration::from_secs(20)),
            decisions: Default::default(),
        };
        let worker = Arc::new(Worker {
            store,
            clock,
            connections: [("c".to_string(), Arc::new(conn))].into(),
            owner: "w".into(),
            retry: RetryPolicy { base: Duration::from_millis(1), max: Duration::from_millis(2) },
            deadline_guard: Duration::from_millis(500),
            gate_freshness: Duration::from_secs(5),
            confirm_within: Duration::from_millis(20),
        });
        let (wake, shutdown) = (Arc::new(Notify::new()), Shutdown::default());
        tokio::spawn(run_claim_loop(worker.clone(), settings, wake.clone(), shutdown.clone()));
        (worker, platform, wake, shutdown)
    }

    /// A leg `conversation` ends now with a window of `timeout_secs`; intake wakes the loop.
    async fn ends(worker: &Worker, wake: &Notify, conversation: &str, timeout_secs: u64) {
        let now = worker.clock.now();
        let facts = LegFacts { ended_at: Some(now), acw_timeout_ms: Some(timeout_secs * 1000), ..Default::default() };
        let event = Event {
            leg: LegKey::new("c", conversation, "p"),
            dedupe_key: format!("end:{conversation}"),
            occurred_at: now,
            correlation_id: None,
            kind: EventKind::LegEnded { facts: Box::new(facts) },
        };
        worker.store.ingest(&[event], now).await.unwrap();
        wake.notify_one();
    }

    async fn leg(worker: &Worker, conversation: &str) -> LegRecord {
        worker.store.get_leg(&LegKey::new("c", conversation, "p")).await.unwrap().unwrap().leg
    }

    /// Waits (in wall time, a few milliseconds at a time) until `done` holds.
    async fn until(what: &str, mut done: impl AsyncFnMut() -> bool) {
        for _ in 0..1_000 {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("never happened: {what}");
    }

    #[tokio::test]
    async fn a_leg_waiting_for_the_budget_gives_its_slot_to_a_leg_with_an_earlier_deadline() {
        let (worker, platform, wake, shutdown) = one_slot().await;
        ends(&worker, &wake, "late", 60).await;
        until("the late leg waits for the budget", async || leg(&worker, "late").await.attempts == 1).await;
        ends(&worker, &wake, "urgent", 10).await;
        until("the urgent leg is done", async || leg(&worker, "urgent").await.is_done()).await;
        until("the late leg is written", async || leg(&worker, "late").await.is_done()).await;
        shutdown.cancel();

        assert_eq!(*platform.writes.lock(), ["urgent", "late"], "the earlier deadline was written first");
        let late = leg(&worker, "late").await;
        assert_eq!(late.outcome, Some(Outcome::Applied));
        assert_eq!((late.attempts, late.unsent_attempts), (2, 1), "the attempt that gave way sent nothing");
        let ledger = worker.store.ledger(&late.key).await.unwrap();
        assert!(ledger.iter().any(|l| l.detail.to_string().contains("gave way")), "{ledger:?}");
        assert_eq!(leg(&worker, "urgent").await.attempts, 1);
    }

    #[tokio::test]
    async fn a_leg_waiting_for_the_budget_keeps_its_slot_against_a_later_deadline() {
        let (worker, platform, wake, shutdown) = one_slot().await;
        ends(&worker, &wake, "early", 10).await;
        until("the early leg waits for the budget", async || leg(&worker, "early").await.attempts == 1).await;
        ends(&worker, &wake, "later", 60).await;
        // The loop looks (on intake's wake and once a second) and puts the later leg back.
        tokio::time::sleep(MAKE_WAY_EVERY + Duration::from_millis(200)).await;
        let later = leg(&worker, "later").await;
        assert_eq!((later.state, later.attempts), (wrapup_core::lifecycle::LegState::Open, 0), "never begun");
        platform.open.notify_waiters();
        until("both legs are written", async || leg(&worker, "later").await.is_done()).await;
        shutdown.cancel();

        assert_eq!(*platform.writes.lock(), ["early", "later"]);
        assert_eq!(leg(&worker, "early").await.attempts, 1, "it never gave way");
    }

    /// On a store shared by replicas the lease is short; the loop renews it while the leg is worked on, so another
    /// replica cannot take a leg from a live worker (here: one waiting for the budget for three leases' time).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_leg_worked_on_longer_than_its_lease_keeps_it_on_a_shared_store() {
        let Some(server) = std::env::var("WRAPUP_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
            eprintln!("skipped: WRAPUP_TEST_POSTGRES_URL is not set (this test needs a PostgreSQL database)");
            return;
        };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("wrapup_scheduler_{}_{nanos}", std::process::id());
        let url = wrapup_store::PostgresStore::create_database(&server, &name).await.unwrap();
        let store: Arc<dyn Store> = Arc::new(wrapup_store::PostgresStore::connect(&url).await.unwrap());
        // Under the loop's own once-a-second look for due work, which would re-lease the leg as a side effect.
        let lease = Duration::from_millis(800);
        let settings = SchedulerSettings { max_in_flight: 1, lease, ..Default::default() };
        let (worker, platform, wake, shutdown) = one_slot_on(store.clone(), settings).await;
        ends(&worker, &wake, "held", 60).await;
        until("the leg waits for the budget", async || leg(&worker, "held").await.attempts == 1).await;
        // Another replica keeps trying for five leases' time; it must never get the leg.
        let trying = std::time::Instant::now();
        while trying.elapsed() < lease * 5 {
            let other = store.claim_due(worker.clock.now(), 5, "another replica", SignedDuration::from_secs(15)).await;
            assert!(other.unwrap().is_empty(), "the lease ran out while the leg was worked on");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        platform.open.notify_waiters();
        until("the leg is written", async || leg(&worker, "held").await.is_done()).await;
        shutdown.cancel();
        assert_eq!(*platform.writes.lock(), ["held"]);
        wrapup_store::PostgresStore::drop_database(&server, &name).await.ok();
    }
}
