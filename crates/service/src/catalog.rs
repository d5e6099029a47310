//! The per-connection catalog cache.
//!
//! Rules name codes; the worker needs ids and per-queue assignments. The cache holds the last catalog fetched from
//! the platform (also persisted in the store, so a restart starts warm), refreshes it in the background when it is
//! older than its TTL — serving the older copy meanwhile: a refresh against a slow platform used to hold every
//! worker behind it for tens of seconds, and legs expired waiting — and on demand when the platform rejects a code
//! or a rule names a code the cached copy does not know. Refreshes are single-flight (one fetch however many
//! workers ask) and rate-limited by `min_refresh_interval`, so neither a bad rule nor a failing platform can turn
//! every leg into a catalog fetch.
//!
//! No fetch ever runs under the lock that [`CatalogCache::get`] takes (except the very first load, which every leg
//! needs anyway). An on-demand refresh used to hold it for the whole fetch — `2 + queues` requests, each with
//! retries and a 3 s attempt timeout — so one leg with a misconfigured code stalled the decisions and writes of every
//! other leg of the connection for seconds under a hostile platform, and `before_timeout` legs expired waiting.
//! Refreshers queue on their own lock instead; only the leg that asked waits for the platform.

use crate::platform::SharedPlatform;
use jiff::{SignedDuration, Timestamp};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use wrapup_connectors::error::PlatformError;
use wrapup_core::catalog::{AcwPolicy, Catalog};
use wrapup_core::clock::SharedClock;
use wrapup_core::{Event, EventKind};
use wrapup_store::Store;

#[derive(Clone)]
pub struct CatalogCache {
    inner: Arc<Inner>,
}

struct Inner {
    platform: SharedPlatform,
    store: Arc<dyn Store>,
    clock: SharedClock,
    ttl: SignedDuration,
    min_refresh_interval: SignedDuration,
    /// The catalog and when it was fetched. Held only for moments (never across a fetch, but for the first load).
    state: Mutex<Option<(Arc<Catalog>, Timestamp)>>,
    /// Single flight of on-demand refreshes: taken across the fetch, so concurrent askers wait for one fetch and
    /// then find its fresh result, while readers of `state` are served the cached copy meanwhile.
    refresh_flight: Mutex<()>,
    /// A background refresh is running (single flight).
    refreshing: AtomicBool,
    /// When the last refresh was started (successful or not), so a failing platform is not asked on every `get`.
    last_attempt: parking_lot::Mutex<Option<Timestamp>>,
    /// A catalog (fetched, or persisted by an earlier run) is in memory: legs can be decided without waiting.
    loaded: AtomicBool,
}

impl CatalogCache {
    pub fn new(platform: SharedPlatform, store: Arc<dyn Store>, clock: SharedClock, ttl: SignedDuration) -> Self {
        Self {
            inner: Arc::new(Inner {
                platform,
                store,
                clock,
                ttl,
                min_refresh_interval: SignedDuration::from_secs(5),
                state: Mutex::new(None),
                refresh_flight: Mutex::new(()),
                refreshing: AtomicBool::new(false),
                last_attempt: parking_lot::Mutex::new(None),
                loaded: AtomicBool::new(false),
            }),
        }
    }

    /// The catalog in memory, without waiting for anything: `None` before the first load (or while it runs). For
    /// intake, which must never wait on the platform before acknowledging.
    pub fn cached(&self) -> Option<Arc<Catalog>> {
        self.inner.state.try_lock().ok().and_then(|state| state.as_ref().map(|(catalog, _)| catalog.clone()))
    }

    /// Whether a catalog is in memory (what `/ready` reports: until then every leg waits for the first load).
    pub fn is_loaded(&self) -> bool {
        self.inner.loaded.load(Ordering::Relaxed)
    }

    /// The cached catalog. Only the very first load (nothing in memory or in the store) waits for the platform; a
    /// copy older than the TTL is served as it is while one background task fetches a fresh one (at most once per
    /// minimum refresh interval), so a slow or failing platform never holds up the legs that need the catalog.
    pub async fn get(&self) -> Result<Arc<Catalog>, PlatformError> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        let now = inner.clock.now();
        if state.is_none() {
            if let Ok(Some((catalog, at))) = inner.store.get_catalog(inner.platform.connection()).await {
                *state = Some((Arc::new(catalog), at));
                inner.loaded.store(true, Ordering::Relaxed);
            }
        }
        match &*state {
            Some((catalog, at)) if now.duration_since(*at) < inner.ttl => Ok(catalog.clone()),
            Some((catalog, _)) => {
                let catalog = catalog.clone();
                drop(state);
                self.refresh_in_background(now);
                Ok(catalog)
            }
            None => {
                *inner.last_attempt.lock() = Some(now);
                let fresh = inner.fetch(now).await?;
                *state = Some((fresh.clone(), now));
                inner.loaded.store(true, Ordering::Relaxed);
                Ok(fresh)
            }
        }
    }

    /// Refetches unless the cached copy is younger than the minimum refresh interval. Returns the catalog to use.
    /// Only callers of `refresh` wait for the fetch; [`Self::get`] keeps serving the cached copy meanwhile.
    pub async fn refresh(&self) -> Result<Arc<Catalog>, PlatformError> {
        let inner = &self.inner;
        let _flight = inner.refresh_flight.lock().await;
        let now = inner.clock.now();
        if let Some((catalog, at)) = &*inner.state.lock().await {
            if now.duration_since(*at) < inner.min_refresh_interval {
                return Ok(catalog.clone());
            }
        }
        *inner.last_attempt.lock() = Some(now);
        let fresh = inner.fetch(now).await?;
        let mut state = inner.state.lock().await;
        // A background refresh may have stored a newer copy while this one was fetched.
        if state.as_ref().is_none_or(|(_, at)| *at <= now) {
            *state = Some((fresh.clone(), now));
        }
        inner.loaded.store(true, Ordering::Relaxed);
        Ok(fresh)
    }

    fn refresh_in_background(&self, now: Timestamp) {
        let inner = self.inner.clone();
        {
            let mut last = inner.last_attempt.lock();
            if last.is_some_and(|l| now.duration_since(l) < inner.min_refresh_interval) {
                return;
            }
            if inner.refreshing.swap(true, Ordering::AcqRel) {
                return;
            }
            *last = Some(now);
        }
        tokio::spawn(async move {
            match inner.fetch(now).await {
                Ok(fresh) => *inner.state.lock().await = Some((fresh, now)),
                Err(e) => tracing::warn!(
                    connection = inner.platform.connection(),
                    error = %e,
                    "catalog refresh failed; serving the cached catalog"
                ),
            }
            inner.refreshing.store(false, Ordering::Release);
        });
    }
}

impl Inner {
    async fn fetch(&self, now: Timestamp) -> Result<Arc<Catalog>, PlatformError> {
        let catalog = self.platform.fetch_catalog().await?;
        if let Err(e) = self.store.put_catalog(self.platform.connection(), &catalog, now).await {
            tracing::warn!(connection = self.platform.connection(), error = %e, "could not persist the catalog cache");
        }
        tracing::info!(
            connection = self.platform.connection(),
            codes = catalog.codes.len(),
            queues = catalog.queues.len(),
            "Catalog loaded."
        );
        Ok(Arc::new(catalog))
    }
}

/// One attempt of a catalog read may take this long (wall time) before it is abandoned and retried.
const CATALOG_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// One read of a catalog load, with a few short retries, each attempt bounded by [`CATALOG_ATTEMPT_TIMEOUT`]: a
/// catalog takes several reads (codes, queues or skills, each one's assignments), and one transient failure or hung
/// answer among them must not fail (or stall) the whole load that every leg of the connection waits for.
/// How often the store's catalog audit trail is looked at for applies that ended.
pub const APPLIED_CHECK_EVERY: Duration = Duration::from_secs(5);

/// Refreshes the connection's cached catalog soon after a `wrapup catalog apply` (run anywhere, against the same
/// store) ends, rather than at the end of the TTL: legs coded right after a promotion use the new codes. Every replica
/// sharing the store watches, so each refreshes its own cache. The trail's times are wall time (the CLI writes them).
pub async fn refresh_after_applies(
    connection: String,
    cache: CatalogCache,
    store: Arc<dyn Store>,
    every: Duration,
    shutdown: crate::scheduler::Shutdown,
) {
    let mut seen = Timestamp::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
        seen = refresh_if_an_apply_ended(&connection, &cache, store.as_ref(), seen).await;
    }
}

/// One look at the trail since `seen`: refreshes the cache if an apply ended there. Returns where to look next time.
pub(crate) async fn refresh_if_an_apply_ended(
    connection: &str,
    cache: &CatalogCache,
    store: &dyn Store,
    seen: Timestamp,
) -> Timestamp {
    let lines = match store.catalog_audit(connection, seen).await {
        Ok(lines) => lines,
        Err(e) => {
            tracing::debug!(connection = %connection, error = %e, "Could not read the catalog audit trail.");
            return seen;
        }
    };
    let Some(last) = lines.iter().filter(|l| l.kind == "end").map(|l| l.at).max() else { return seen };
    match cache.refresh().await {
        Ok(catalog) => tracing::info!(
            connection = %connection,
            codes = catalog.codes.len(),
            "A catalog apply ended: the cached catalog was refreshed."
        ),
        Err(e) => {
            tracing::warn!(connection = %connection, error = %e, "A catalog apply ended, but the refresh failed; the TTL will retry.")
        }
    }
    last + SignedDuration::from_millis(1)
}

pub(crate) async fn catalog_read<T, F, Fut>(
    clock: &dyn wrapup_core::Clock,
    endpoint: &'static str,
    op: F,
) -> Result<T, PlatformError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, PlatformError>>,
{
    use wrapup_connectors::error::ErrorClass;
    use wrapup_connectors::retry::{call_with_retry, RetryPolicy};
    call_with_retry(clock, None, &RetryPolicy::default(), |_| {
        let attempt = op();
        async move {
            match tokio::time::timeout(CATALOG_ATTEMPT_TIMEOUT, attempt).await {
                Ok(r) => r,
                Err(_) => Err(PlatformError::transport(
                    ErrorClass::Retryable,
                    endpoint,
                    format!("no answer within {CATALOG_ATTEMPT_TIMEOUT:?}"),
                )),
            }
        }
    })
    .await
}

/// Fills what `leg ended` events do not carry (Genesys' `user.end` carries no ACW settings) from the queue's entry in
/// `catalog` — the ACW timeout and mode — and, for windows the platform does not time out, the connection's current
/// estimate of how long agents stay (`estimate`), so the leg enters the store with the deadline it is ordered by. The
/// store is the scheduler's priority queue, earliest deadline first, and a leg without a deadline sorts after every
/// leg with one: under saturation, fresh legs were claimed in arrival order, behind legs with later deadlines, until
/// a worker decided them. The worker fills the same fields from the same sources when it decides a leg; an event's
/// own values win.
pub fn fill_acw_facts(events: &mut [Event], catalog: &Catalog, estimate: impl Fn(Option<&str>) -> SignedDuration) {
    for event in events {
        let EventKind::LegEnded { facts } = &mut event.kind else { continue };
        let queue = facts.queue_id.as_deref().and_then(|q| catalog.queue_by_id(q));
        if facts.acw_timeout_ms.is_none() {
            facts.acw_timeout_ms = queue.and_then(|q| q.acw_timeout_ms);
        }
        if facts.acw.is_none() {
            facts.acw = queue.and_then(|q| q.acw);
        }
        let unbounded = matches!(facts.acw, Some(AcwPolicy::Optional | AcwPolicy::AgentRequested));
        if unbounded && facts.acw_estimate_ms.is_none() {
            facts.acw_estimate_ms = u64::try_from(estimate(facts.queue_id.as_deref()).as_millis()).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{CallStats, LegPlatform, Urgency};
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;
    use tokio::sync::Notify;
    use wrapup_clock::ScaledClock;
    use wrapup_connectors::Precondition;
    use wrapup_core::catalog::CodeEntry;
    use wrapup_core::lifecycle::LegRecord;
    use wrapup_core::Platform;

    /// A platform whose catalog fetches (after the first) hang until released.
    struct SlowCatalog {
        fetches: AtomicU32,
        release: Notify,
    }

    #[async_trait::async_trait]
    impl LegPlatform for SlowCatalog {
        fn connection(&self) -> &str {
            "slow"
        }
        fn platform(&self) -> Platform {
            Platform::Genesys
        }
        async fn fetch_catalog(&self) -> Result<Catalog, PlatformError> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst);
            if n > 0 {
                self.release.notified().await;
            }
            Ok(Catalog { codes: vec![CodeEntry { id: format!("id-{n}"), name: "Code".into() }], queues: vec![] })
        }
        async fn read_code(&self, _: &LegRecord, _: Urgency) -> Result<Option<String>, PlatformError> {
            Ok(None)
        }
        async fn write_code(
            &self,
            _: &LegRecord,
            _: &CodeEntry,
            _: Option<&str>,
            _: Urgency,
            _: &dyn Precondition,
        ) -> Result<(), PlatformError> {
            Ok(())
        }
        fn stats(&self) -> CallStats {
            CallStats::default()
        }
    }

    #[tokio::test]
    async fn a_slow_refresh_does_not_hold_up_legs_reading_the_catalog() {
        let platform = Arc::new(SlowCatalog { fetches: AtomicU32::new(0), release: Notify::new() });
        let store: Arc<dyn Store> = Arc::new(wrapup_store::SqliteStore::open_in_memory().await.unwrap());
        // Fast enough that the minimum refresh interval (5 s on this clock) passes within the test.
        let clock = ScaledClock::new(Timestamp::now(), 1000.0).shared();
        let cache = Arc::new(CatalogCache::new(platform.clone(), store, clock, SignedDuration::from_secs(3600)));
        assert_eq!(cache.get().await.unwrap().codes[0].id, "id-0");
        tokio::time::sleep(Duration::from_millis(20)).await;

        // A leg whose code did not resolve asks for a refresh; the platform hangs on it.
        let refresher = tokio::spawn({
            let cache = cache.clone();
            async move { cache.refresh().await.unwrap().codes[0].id.clone() }
        });
        while platform.fetches.load(Ordering::SeqCst) < 2 {
            tokio::task::yield_now().await;
        }
        // Every other leg is still served the cached copy at once.
        let served = tokio::time::timeout(Duration::from_millis(200), cache.get()).await;
        assert_eq!(served.expect("get waited for the refresh").unwrap().codes[0].id, "id-0");

        platform.release.notify_one();
        assert_eq!(refresher.await.unwrap(), "id-1");
        assert_eq!(cache.get().await.unwrap().codes[0].id, "id-1");
    }

    /// A clock that moves only when told (the cache's minimum refresh interval is on it).
    #[derive(Debug)]
    struct StepClock(parking_lot::Mutex<Timestamp>);

    impl wrapup_core::Clock for StepClock {
        fn now(&self) -> Timestamp {
            *self.0.lock()
        }
        fn wall_duration(&self, d: SignedDuration) -> Duration {
            d.unsigned_abs()
        }
        fn clock_duration(&self, d: Duration) -> SignedDuration {
            SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
        }
    }

    #[tokio::test]
    async fn the_end_of_a_catalog_apply_in_the_store_refreshes_the_cache() {
        let platform = Arc::new(SlowCatalog { fetches: AtomicU32::new(0), release: Notify::new() });
        platform.release.notify_one();
        let store: Arc<dyn Store> = Arc::new(wrapup_store::SqliteStore::open_in_memory().await.unwrap());
        let clock = Arc::new(StepClock(parking_lot::Mutex::new(Timestamp::now())));
        let cache = CatalogCache::new(platform.clone(), store.clone(), clock.clone(), SignedDuration::from_secs(3600));
        assert_eq!(cache.get().await.unwrap().codes[0].id, "id-0");
        // Past the cache's minimum interval between refreshes.
        *clock.0.lock() += SignedDuration::from_secs(60);
        let fetches = || platform.fetches.load(Ordering::SeqCst);
        let look = |seen| refresh_if_an_apply_ended("slow", &cache, store.as_ref(), seen);
        // The trail keeps milliseconds: start a second back, as the loop starts at its own start.
        let mut seen = Timestamp::now() - SignedDuration::from_secs(1);
        seen = look(seen).await;
        assert_eq!(fetches(), 1, "nothing ended: no refresh");
        let line = |kind: &str, seq| wrapup_store::CatalogAuditLine {
            connection: "slow".into(),
            apply_id: "a".into(),
            seq,
            at: Timestamp::now(),
            actor: "ops".into(),
            kind: kind.into(),
            body: serde_json::json!({}),
        };
        store.append_catalog_audit(&line("begin", 0)).await.unwrap();
        seen = look(seen).await;
        assert_eq!(fetches(), 1, "an apply that has not ended: no refresh");
        store.append_catalog_audit(&line("end", 1)).await.unwrap();
        seen = look(seen).await;
        assert_eq!(cache.get().await.unwrap().codes[0].id, "id-1", "the cache was refreshed after the apply ended");
        *clock.0.lock() += SignedDuration::from_secs(60);
        look(seen).await;
        assert_eq!(fetches(), 2, "one refresh per apply");
    }

    #[test]
    fn leg_ended_events_get_their_queues_acw_settings_so_the_store_orders_them_by_deadline() {
        use wrapup_core::catalog::AcwPolicy;
        use wrapup_core::catalog::QueueEntry;
        use wrapup_core::{LegFacts, LegKey};
        let queue = |id: &str, timeout: Option<u64>, acw: AcwPolicy| QueueEntry {
            id: id.into(),
            name: id.into(),
            code_ids: Vec::new(),
            acw_timeout_ms: timeout,
            acw_mode: None,
            acw: Some(acw),
        };
        let catalog = Catalog {
            codes: Vec::new(),
            queues: vec![queue("ten", Some(10_000), AcwPolicy::Mandatory), queue("open", None, AcwPolicy::Optional)],
        };
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let ended = |c: &str, queue: &str, own: Option<u64>| Event {
            leg: LegKey::new("g", c, "p"),
            dedupe_key: c.into(),
            occurred_at: t0,
            correlation_id: None,
            kind: EventKind::LegEnded {
                facts: Box::new(LegFacts {
                    queue_id: Some(queue.into()),
                    ended_at: Some(t0),
                    acw_timeout_ms: own,
                    ..LegFacts::default()
                }),
            },
        };
        let mut events = vec![
            ended("a", "ten", None),
            ended("b", "ten", Some(30_000)),
            ended("c", "open", None),
            ended("d", "unknown", None),
            Event { kind: EventKind::LegClosed, ..ended("e", "ten", None) },
        ];
        fill_acw_facts(&mut events, &catalog, |q| match q {
            Some("open") => SignedDuration::from_secs(7),
            _ => SignedDuration::from_secs(99),
        });
        let timeouts: Vec<_> = events
            .iter()
            .map(|e| match &e.kind {
                EventKind::LegEnded { facts } => facts.acw_timeout_ms,
                _ => None,
            })
            .collect();
        // The queue's timeout; the event's own value wins; untimed and unknown queues have none.
        assert_eq!(timeouts, [Some(10_000), Some(30_000), None, None, None]);
        // The leg the store makes from the first event has its deadline at once.
        let (leg, _) = wrapup_core::lifecycle::apply_event(None, &events[0], t0);
        assert_eq!(leg.deadline, Some(t0 + SignedDuration::from_secs(10)));
        assert_eq!(leg.estimated_deadline, None, "a window the platform times out needs no estimate");
        // A window the platform does not time out is ordered by the queue's estimate from the start.
        let (leg, _) = wrapup_core::lifecycle::apply_event(None, &events[2], t0);
        assert_eq!((leg.deadline, leg.facts.acw), (None, Some(AcwPolicy::Optional)));
        assert_eq!(leg.estimated_deadline, Some(t0 + SignedDuration::from_secs(7)));
        assert_eq!(leg.order_deadline(), leg.estimated_deadline);
    }
}
