//! The request budget of one platform connection.
//!
//! A platform limits requests per credential (Genesys: 300 requests/minute per client-credentials token). All work
//! on a connection — live legs, the reconciler, backfills, catalog refreshes — shares one [`Budget`], so the limit
//! is respected as a whole and the most urgent work goes first.
//!
//! **Pooled credentials.** Each credential has its own window ([`Slot`]): a token bucket refilled at
//! `limit / 60` per second with a small burst (`ceil(limit / 60)`, at most 10), so 300/min is paced as ~5 per
//! second instead of 300 at once and a 59 s stall. A permit is handed out whenever *any* credential has capacity;
//! the permit names the credential to use, so two credentials double throughput.
//!
//! **Following the platform.** After each response the caller feeds back the rate-limit headers
//! ([`Budget::observe`]): `allowed` becomes the credential's limit, and when `count` reaches `allowed` the credential
//! pauses until `reset`. A 429 pauses the credential for its `Retry-After` ([`Budget::pause`]); no permit for that
//! credential is issued before the pause elapses.
//!
//! **Priority queue.** Waiters are ordered by [`Priority`]: class (`Live` < `Reconcile` < `Backfill`), then requests
//! that finish work already begun (a leg's write after its gate read) before those that begin new work, then
//! deadline (earliest first, none last), then arrival. Work other than live legs only takes a token while half the burst
//! stays in the bucket: that reserve is the live legs' share, so the reconciler never spends the token a live leg
//! arriving an instant later needs. Only the head of the queue may take capacity; everyone else waits for
//! a notification. The head sleeps until the earliest moment any credential has a token (or until something changes:
//! a grant, a new pause, new headers, a cancelled waiter). Dropping an `acquire` future removes its waiter.
//!
//! Budget time is wall time (`tokio::time::Instant`): the platform's limit is real time even when the service's
//! clock is scaled, and `tokio::time::pause()` makes the budget deterministic in tests.

use jiff::Timestamp;
use parking_lot::Mutex;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Class of work, in order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PriorityClass {
    /// A leg in its ACW window.
    Live,
    /// The reconciler's sweeps.
    Reconcile,
    /// Bulk backfills and catalog work.
    Backfill,
}

/// The priority of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Priority {
    pub class: PriorityClass,
    /// The moment the work stops being useful (e.g. the leg's ACW deadline). Earlier goes first within a class.
    pub deadline: Option<Timestamp>,
    /// The request finishes work whose earlier requests were already paid for (a leg's write after its gate read):
    /// it goes before requests of its class that begin new work, whatever their deadlines. Otherwise a write waits
    /// behind the gate reads of legs that arrived later with earlier deadlines, its own deadline can pass in the
    /// queue, and the read it needed was a call spent for nothing. The work it finishes was chosen by deadline when
    /// it began, so a deadline order of work (not of single requests) is kept.
    pub finishing: bool,
    /// The deadline is an estimate (when an agent is likely to leave an optional window): it orders the request
    /// like any deadline, but the request is not dropped when it passes, because the work may still be useful.
    pub estimated: bool,
}

impl Priority {
    pub fn live(deadline: Option<Timestamp>) -> Self {
        Self { class: PriorityClass::Live, deadline, finishing: false, estimated: false }
    }
    /// A live request ordered by an estimated deadline (see [`Priority::estimated`]).
    pub fn live_estimated(deadline: Timestamp) -> Self {
        Self { estimated: true, ..Self::live(Some(deadline)) }
    }
    pub fn reconcile() -> Self {
        Self { class: PriorityClass::Reconcile, deadline: None, finishing: false, estimated: false }
    }
    pub fn backfill() -> Self {
        Self { class: PriorityClass::Backfill, deadline: None, finishing: false, estimated: false }
    }
    /// The moment after which the request is no longer worth sending: its deadline, unless that is an estimate.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.deadline.filter(|_| !self.estimated)
    }
    /// The same priority for a request that finishes work already begun (see [`Priority::finishing`]).
    pub fn finishing(self) -> Self {
        Self { finishing: true, ..self }
    }
}

/// Queue position: class, then finishing before beginning, then deadline (none last), then arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct WaitKey {
    class: PriorityClass,
    begins: bool,
    no_deadline: bool,
    deadline: Timestamp,
    seq: u64,
}

/// The right to make one request with one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Permit {
    /// Index of the credential (in connection order) whose window paid for this request.
    pub credential: usize,
}

/// One credential's window.
#[derive(Debug, Clone)]
struct Slot {
    limit_per_minute: u32,
    tokens: f64,
    refilled_at: Instant,
    paused_until: Option<Instant>,
}

/// Longest pause we accept from headers, so one odd header cannot stall a credential for a day.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

impl Slot {
    fn rate_per_sec(&self) -> f64 {
        f64::from(self.limit_per_minute.max(1)) / 60.0
    }

    fn burst(&self) -> f64 {
        (self.rate_per_sec().ceil()).clamp(1.0, 10.0)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec()).min(self.burst());
        self.refilled_at = now;
        if self.paused_until.is_some_and(|p| p <= now) {
            self.paused_until = None;
        }
    }

    /// Tokens a request of `class` needs in the bucket. Work other than live legs leaves half the burst (rounded
    /// down) untouched: that reserve is the live legs' share, so a reconcile or backfill request never spends the
    /// token a live leg arriving an instant later would have needed.
    fn need(&self, class: PriorityClass) -> f64 {
        match class {
            PriorityClass::Live => 1.0,
            PriorityClass::Reconcile | PriorityClass::Backfill => 1.0 + (self.burst() / 2.0).floor(),
        }
    }

    fn ready(&self, now: Instant, class: PriorityClass) -> bool {
        self.tokens >= self.need(class) && self.paused_until.is_none_or(|p| p <= now)
    }

    /// Earliest instant at which this slot will have the tokens `class` needs (assuming no other change).
    fn ready_at(&self, now: Instant, class: PriorityClass) -> Instant {
        let missing = (self.need(class) - self.tokens).max(0.0);
        let refill = now + Duration::from_secs_f64(missing / self.rate_per_sec());
        match self.paused_until {
            Some(p) if p > refill => p,
            _ => refill,
        }
    }
}

struct State {
    slots: Vec<Slot>,
    waiters: BTreeSet<WaitKey>,
    seq: u64,
}

impl State {
    fn refill(&mut self, now: Instant) {
        for s in &mut self.slots {
            s.refill(now);
        }
    }

    /// The ready credential with the most tokens (spreads load across credentials).
    fn pick(&self, now: Instant, class: PriorityClass) -> Option<usize> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.ready(now, class))
            .max_by(|a, b| a.1.tokens.total_cmp(&b.1.tokens))
            .map(|(i, _)| i)
    }

    fn next_ready(&self, now: Instant, class: PriorityClass) -> Instant {
        self.slots.iter().map(|s| s.ready_at(now, class)).min().unwrap_or(now + Duration::from_secs(1))
    }
}

struct Inner {
    state: Mutex<State>,
    changed: Notify,
}

/// A snapshot of one credential's window, for diagnostics and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotStatus {
    pub limit_per_minute: u32,
    pub tokens: f64,
    pub paused_for: Option<Duration>,
}

/// The shared request budget of one connection. Cheap to clone.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("Budget").field("credentials", &st.slots.len()).field("waiting", &st.waiters.len()).finish()
    }
}

impl Budget {
    /// A budget of `credentials` windows, each starting at `requests_per_minute` (at least 1) with a full burst.
    pub fn new(credentials: usize, requests_per_minute: u32) -> Self {
        let now = Instant::now();
        let slots = (0..credentials.max(1))
            .map(|_| {
                let mut s = Slot {
                    limit_per_minute: requests_per_minute.max(1),
                    tokens: 0.0,
                    refilled_at: now,
                    paused_until: None,
                };
                s.tokens = s.burst();
                s
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State { slots, waiters: BTreeSet::new(), seq: 0 }),
                changed: Notify::new(),
            }),
        }
    }

    /// Number of credentials pooled in this budget.
    pub fn credentials(&self) -> usize {
        self.inner.state.lock().slots.len()
    }

    /// Number of requests waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.inner.state.lock().waiters.len()
    }

    /// The mean time between permits when every credential runs at its limit (one minute over the summed limits).
    pub fn permit_interval(&self) -> Duration {
        let per_minute: u32 = self.inner.state.lock().slots.iter().map(|s| s.limit_per_minute.max(1)).sum();
        Duration::from_secs(60) / per_minute.max(1)
    }

    /// The current window of each credential.
    pub fn status(&self) -> Vec<SlotStatus> {
        let now = Instant::now();
        let mut st = self.inner.state.lock();
        st.refill(now);
        st.slots
            .iter()
            .map(|s| SlotStatus {
                limit_per_minute: s.limit_per_minute,
                tokens: s.tokens,
                paused_for: s.paused_until.map(|p| p.saturating_duration_since(now)),
            })
            .collect()
    }

    /// Waits for the right to make one request. Waiters are served strictly in [`Priority`] order.
    pub async fn acquire(&self, priority: Priority) -> Permit {
        let key = {
            let mut st = self.inner.state.lock();
            st.seq += 1;
            let key = WaitKey {
                class: priority.class,
                begins: !priority.finishing,
                no_deadline: priority.deadline.is_none(),
                deadline: priority.deadline.unwrap_or(Timestamp::MAX),
                seq: st.seq,
            };
            st.waiters.insert(key);
            key
        };
        let mut guard = WaiterGuard { inner: &self.inner, key, armed: true };
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            // Register interest before inspecting the state so a change in between is not missed.
            notified.as_mut().enable();
            let wake_at = {
                let now = Instant::now();
                let mut st = self.inner.state.lock();
                st.refill(now);
                if st.waiters.first() == Some(&key) {
                    if let Some(i) = st.pick(now, key.class) {
                        st.slots[i].tokens -= 1.0;
                        st.waiters.remove(&key);
                        guard.armed = false;
                        drop(st);
                        // The next waiter is now the head.
                        self.inner.changed.notify_waiters();
                        return Permit { credential: i };
                    }
                    Some(st.next_ready(now, key.class))
                } else {
                    None
                }
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Pauses a credential for `for_` (a 429's `Retry-After`): no permit for it is issued before then.
    pub fn pause(&self, credential: usize, for_: Duration) {
        let until = Instant::now() + for_.min(MAX_PAUSE);
        {
            let mut st = self.inner.state.lock();
            let Some(slot) = st.slots.get_mut(credential) else {
                return;
            };
            slot.paused_until = Some(slot.paused_until.map_or(until, |p| p.max(until)));
            // Whatever was in the bucket is no longer usable.
            slot.tokens = slot.tokens.min(0.0);
        }
        self.inner.changed.notify_waiters();
    }

    /// Follows the platform's rate-limit headers for a credential: `allowed` requests per window, `count` used so
    /// far, `reset` until the window resets.
    pub fn observe(&self, credential: usize, allowed: Option<u32>, count: Option<u32>, reset: Option<Duration>) {
        {
            let now = Instant::now();
            let mut st = self.inner.state.lock();
            let Some(slot) = st.slots.get_mut(credential) else {
                return;
            };
            slot.refill(now);
            if let Some(allowed) = allowed.filter(|a| *a > 0) {
                slot.limit_per_minute = allowed;
                slot.tokens = slot.tokens.min(slot.burst());
            }
            if let (Some(allowed), Some(count)) = (allowed, count) {
                let remaining = f64::from(allowed.saturating_sub(count));
                // Never burst past what the platform says is left in its window.
                slot.tokens = slot.tokens.min(remaining);
                if remaining < 1.0 {
                    let wait = reset.unwrap_or(Duration::from_secs(1)).min(MAX_PAUSE);
                    let until = now + wait;
                    slot.paused_until = Some(slot.paused_until.map_or(until, |p| p.max(until)));
                }
            }
        }
        self.inner.changed.notify_waiters();
    }
}

/// Removes a cancelled waiter from the queue (and lets the next one move up).
struct WaiterGuard<'a> {
    inner: &'a Inner,
    key: WaitKey,
    armed: bool,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.state.lock().waiters.remove(&self.key);
            self.inner.changed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn granted_within(budget: &Budget, window: Duration) -> usize {
        let start = Instant::now();
        let mut n = 0;
        loop {
            let _ = budget.acquire(Priority::live(None)).await;
            if start.elapsed() > window {
                return n;
            }
            n += 1;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_is_smoothed_not_burst() {
        let budget = Budget::new(1, 300);
        // 5 at once (the burst), then 5 per second: ~55 in 10 s, not 300.
        let n = granted_within(&budget, Duration::from_secs(10)).await;
        assert!((54..=56).contains(&n), "granted {n}");
    }

    #[tokio::test(start_paused = true)]
    async fn two_credentials_double_throughput() {
        let one = granted_within(&Budget::new(1, 300), Duration::from_secs(30)).await;
        let two = granted_within(&Budget::new(2, 300), Duration::from_secs(30)).await;
        assert!(two >= 2 * one - 2 && two <= 2 * one + 2, "one {one}, two {two}");
    }

    #[tokio::test(start_paused = true)]
    async fn reconcile_work_leaves_the_live_reserve_untouched() {
        // 300/min: a burst of 5; reconcile work may only take a token while 3 or more are left.
        let budget = Budget::new(1, 300);
        for _ in 0..3 {
            let _ = budget.acquire(Priority::reconcile()).await;
        }
        let start = Instant::now();
        // Two tokens are left, and they are the live legs' share: both live requests go at once...
        let _ = budget.acquire(Priority::live(None)).await;
        let _ = budget.acquire(Priority::live(None)).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        // ...while a reconcile request waits until the bucket holds 3 again (3 tokens at 5/s: 600 ms).
        let _ = budget.acquire(Priority::reconcile()).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(590) && waited <= Duration::from_millis(650), "waited {waited:?}");
        // Over time reconcile work still gets the whole rate when nothing live is waiting.
        let n = {
            let start = Instant::now();
            let mut n = 0;
            while start.elapsed() < Duration::from_secs(10) {
                let _ = budget.acquire(Priority::reconcile()).await;
                n += 1;
            }
            n
        };
        assert!((49..=52).contains(&n), "granted {n}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_credential_gets_no_permit_before_the_pause_elapses() {
        let budget = Budget::new(1, 300);
        budget.pause(0, Duration::from_secs(7));
        let start = Instant::now();
        let _ = budget.acquire(Priority::live(None)).await;
        assert!(start.elapsed() >= Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn with_one_credential_paused_the_other_keeps_serving() {
        let budget = Budget::new(2, 60);
        budget.pause(0, Duration::from_secs(60));
        let start = Instant::now();
        let p = budget.acquire(Priority::live(None)).await;
        assert_eq!(p.credential, 1);
        assert!(start.elapsed() < Duration::from_millis(10));
    }

    #[tokio::test(start_paused = true)]
    async fn headers_lower_the_limit_and_pause_an_exhausted_window() {
        let budget = Budget::new(1, 300);
        budget.observe(0, Some(180), Some(180), Some(Duration::from_secs(20)));
        let s = &budget.status()[0];
        assert_eq!(s.limit_per_minute, 180);
        assert_eq!(s.paused_for, Some(Duration::from_secs(20)));
        let start = Instant::now();
        let _ = budget.acquire(Priority::backfill()).await;
        assert!(start.elapsed() >= Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn live_work_with_the_earliest_deadline_goes_first() {
        let budget = Budget::new(1, 60); // one permit per second, burst 1
        let _ = budget.acquire(Priority::live(None)).await; // exhaust
        let order = Arc::new(Mutex::new(Vec::new()));
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let prios = [
            ("backfill", Priority::backfill()),
            ("reconcile", Priority::reconcile()),
            ("live-none", Priority::live(None)),
            ("live-late", Priority::live(Some(t0 + jiff::SignedDuration::from_secs(60)))),
            ("live-early", Priority::live(Some(t0 + jiff::SignedDuration::from_secs(10)))),
        ];
        let mut tasks = Vec::new();
        for (name, prio) in prios {
            let b = budget.clone();
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                let _ = b.acquire(prio).await;
                order.lock().push(name);
            }));
            tokio::task::yield_now().await;
        }
        assert_eq!(budget.waiting(), 5);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), ["live-early", "live-late", "live-none", "reconcile", "backfill"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_after_its_gate_read_goes_before_reads_with_earlier_deadlines() {
        let budget = Budget::new(1, 60); // one permit per second, burst 1
        let _ = budget.acquire(Priority::live(None)).await; // exhaust
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |s| Some(t0 + jiff::SignedDuration::from_secs(s));
        let order = Arc::new(Mutex::new(Vec::new()));
        let prios = [
            ("read-early", Priority::live(at(5))),
            ("write-late", Priority::live(at(40)).finishing()),
            ("read-earlier", Priority::live(at(2))),
            ("reconcile-finishing", Priority::reconcile().finishing()),
            ("write-mid", Priority::live(at(20)).finishing()),
        ];
        let mut tasks = Vec::new();
        for (name, prio) in prios {
            let (b, order) = (budget.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _ = b.acquire(prio).await;
                order.lock().push(name);
            }));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Writes first (by deadline among themselves), then reads by deadline; the class still comes first.
        assert_eq!(*order.lock(), ["write-mid", "write-late", "read-earlier", "read-early", "reconcile-finishing"]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever arrives while the budget is exhausted is served in priority order: class, then finishing
        /// before beginning, then earliest deadline (none last), then arrival.
        #[test]
        fn waiters_are_served_in_priority_order(
            reqs in proptest::collection::vec((0u8..3, proptest::bool::ANY, proptest::option::of(0i64..5)), 1..16)
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let order = rt.block_on(async {
                let budget = Budget::new(1, 60);
                let _ = budget.acquire(Priority::live(None)).await;
                let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
                let order = Arc::new(Mutex::new(Vec::new()));
                let mut tasks = Vec::new();
                for (i, (class, finishing, deadline)) in reqs.iter().copied().enumerate() {
                    let class = [PriorityClass::Live, PriorityClass::Reconcile, PriorityClass::Backfill][class as usize];
                    let deadline = deadline.map(|s| t0 + jiff::SignedDuration::from_secs(s));
                    let (b, order) = (budget.clone(), order.clone());
                    tasks.push(tokio::spawn(async move {
                        let _ = b.acquire(Priority { class, deadline, finishing, estimated: false }).await;
                        order.lock().push(i);
                    }));
                    tokio::task::yield_now().await;
                }
                for t in tasks {
                    t.await.unwrap();
                }
                let order = order.lock().clone();
                order
            });
            let mut expected: Vec<usize> = (0..reqs.len()).collect();
            expected.sort_by_key(|&i| (reqs[i].0, !reqs[i].1, reqs[i].2.is_none(), reqs[i].2, i));
            proptest::prop_assert_eq!(order, expected);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_does_not_block_the_queue() {
        let budget = Budget::new(1, 60);
        let _ = budget.acquire(Priority::live(None)).await;
        let b = budget.clone();
        let head = tokio::spawn(async move { b.acquire(Priority::live(None)).await });
        tokio::task::yield_now().await;
        let b = budget.clone();
        let second = tokio::spawn(async move { b.acquire(Priority::backfill()).await });
        tokio::task::yield_now().await;
        head.abort();
        let _ = head.await;
        let start = Instant::now();
        let _ = second.await.unwrap();
        assert!(start.elapsed() <= Duration::from_secs(1));
        assert_eq!(budget.waiting(), 0);
    }
}
