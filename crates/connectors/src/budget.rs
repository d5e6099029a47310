//! The request budget of one platform connection.
//!
//! A platform limits requests per credential (Genesys: 300 requests/minute per client-credentials token). All work
//! on a connection — live legs, the reconciler, backfills, catalog refreshes — shares one [`Budget`], so the limit
//! is respected as a whole and the most urgent work goes first.
//!
//! **Pooled credentials.** Each credential has its own `Slot`. A permit is handed out whenever *any* credential
//! has room; the permit names the credential to use, so two credentials double throughput.
//!
//! **Two sources of room.** A credential spends by one of two rules:
//!
//! - *The even pace*, when the platform has said nothing usable: a token bucket refilled at `limit / 60` per second
//!   with a small burst (`ceil(limit / 60)`, at most 10), so 300/min goes out as ~5 per second instead of 300 at
//!   once and a 59 s stall. It is also capped by our own answers: never more than `limit` requests answered in the
//!   last 60 s plus those in flight, which keeps it inside the limit under any way of counting the minute (a
//!   schedule with at most `limit` requests in every 60 s passes a fixed window, a sliding window and a token bucket
//!   of that size). Each request is dated by its *answer*, which comes after the platform counted it, so our minute
//!   never ends before the platform's. This is all CXone ever gets (it sends no rate-limit headers).
//! - *The platform's own counters*, once an answer carried them (Genesys `inin-ratelimit-allowed`, `-count`,
//!   `-reset`). How the platform counts its minute is not documented, so the budget assumes only what holds for a
//!   fixed window, a sliding window and a token bucket alike: `count` is how much of `allowed` was in use once this
//!   request was counted, each request counted adds one, and within `reset` of the answer the count has fallen at
//!   least once (the window ended, its oldest request left, a token came back). From that the slot keeps an *epoch*:
//!   the count of the newest request it can place, and when a fall is certain. The room is `allowed − count − in
//!   flight − unplaced + fallen`, and live legs may spend all of it at once instead of only the even pace: a
//!   backlog drains as fast as the platform takes it. While that room is used up and no fall is certain, nothing is
//!   sent (another client may share the credential, so our own minute proves nothing). Once a fall is certain,
//!   `fallen` is at least one, and grows with what every way of counting agrees on: a token bucket refills by
//!   `limit / 60` per second, a sliding window lets go of our own requests of a minute before, no count falls below
//!   zero. A request sent then — through that room, or the even pace — is the probe whose answer opens the next
//!   epoch.
//!
//! **Answers lag and overtake each other.** A request granted but not answered is in no count we have heard, so
//! every request in flight is subtracted: concurrent permits cannot overshoot, at the price of counting twice one
//! the platform had already counted when another answer left it, until its own answer corrects that. Which count is
//! newest? One from a request sent after the epoch's count was heard was counted after it: it replaces the epoch's
//! count and opens a new epoch, higher or lower — this is how the budget learns that the count fell. Any other
//! answer can only raise the count: a count no higher than the epoch's was counted before the epoch's highest, or
//! after a fall that made room for it, and the epoch's count covers it either way. A higher count raises the epoch's
//! when its request was sent during the epoch; sent before the epoch began, it may date from before a fall, so it
//! only takes its own place. Such answers, and those without headers (a timeout, a connection error: the platform
//! may have counted the request), are *unplaced*: each subtracts one until the epoch's count covers it, a later
//! epoch begins after it, or a minute has passed. The fall is certain at the latest `reset` heard in the epoch, so
//! that it comes after every request answered in it was counted.
//!
//! **A read and its write.** Work on a leg is a gate read, then a write that finishes it ([`Priority::finishing`]).
//! Spending a window's last request on a read strands its write until the count falls — up to a minute with a fixed
//! window, past many legs' deadlines — and the read was a call spent for nothing. So a live request that begins work
//! takes the counters' room only while it leaves a place for its own write and for the write of every read granted in
//! the last 2 s (`FOLLOW_UP`) whose write has not come yet (a read whose leg needs no write holds its place that long);
//! a read that goes at the even pace once the counters speak needs a place there for its write too. The one place
//! certain right after a fall goes to a read only when time alone will not make it two within a second; when it would,
//! the read waits for the second place rather than strand its write for the whole second that `reset` rounds up to.
//! Once less than half the limit is left, a read also waits 20 ms in the queue (`GATHER`): legs claimed together reach
//! the budget a few milliseconds apart, and when the room will not take them all, the earliest deadlines must get it,
//! not the first to arrive. A write may also go at the even pace while the counters show only our own requests (the
//! even pace is safe for them under any way of counting, and the counters, dated by when the platform counted, can lag
//! a fall it already allows).
//!
//! Callers report each permit's fate: [`Permit::answered`] with the headers, [`Permit::unsent`] when nothing went out;
//! a permit dropped without either counts as sent and answered without headers. A 429 pauses the credential for its
//! `Retry-After` ([`Budget::pause`]); no permit for that credential is issued before the pause elapses.
//!
//! **Priority queue.** Waiters are ordered by [`Priority`]: class (`Live` < `Reconcile` < `Backfill`), then requests
//! that finish work already begun (a leg's write after its gate read) before those that begin new work, then
//! deadline (earliest first, none last), then arrival. Work other than live legs only ever goes at the even pace
//! (a backfill must not spend a window's allowance that live legs arriving later in the window need), and only
//! while half the burst stays in the bucket — and, when the platform's counters are known, as much room in them:
//! that reserve is the live legs' share, so the reconciler never spends the request a live leg arriving an instant
//! later needs. Only the head of the queue may take capacity; everyone else waits for a notification. The head
//! sleeps until the earliest moment any credential has room (or until something changes: a grant, an answer, a new
//! pause, new headers, a cancelled waiter). Dropping an `acquire` future removes its waiter.
//!
//! Budget time is wall time (`tokio::time::Instant`): the platform's limit is real time even when the service's
//! clock is scaled, and `tokio::time::pause()` makes the budget deterministic in tests.

use jiff::Timestamp;
use parking_lot::Mutex;
use std::collections::{BTreeSet, VecDeque};
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

/// The rate-limit headers of one answer (Genesys `inin-ratelimit-allowed`, `-count`, `-reset`), those present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// The limit of the credential's window.
    pub allowed: Option<u32>,
    /// What the platform has counted in it, this request included.
    pub count: Option<u32>,
    /// Until the count falls (the window resets, its oldest request leaves, a token is back).
    pub reset: Option<Duration>,
}

/// The right to make one request with one credential. Report what became of it — [`Permit::answered`] or
/// [`Permit::unsent`] — so the budget knows how many requests are in flight; a permit dropped without either
/// counts as sent and answered without headers.
#[must_use = "report the request's answer with `answered`, or `unsent` if it never went out"]
pub struct Permit {
    /// Index of the credential (in connection order) whose window pays for this request.
    pub credential: usize,
    granted_at: Instant,
    budget: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Permit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Permit").field("credential", &self.credential).finish_non_exhaustive()
    }
}

impl Permit {
    /// The request was answered; `limits` are the answer's rate-limit headers (all `None` when it had none).
    pub fn answered(mut self, limits: RateLimits) {
        self.settle(true, limits);
    }

    /// The request never went out (its precondition failed, no token could be had): it cost nothing.
    pub fn unsent(mut self) {
        self.settle(false, RateLimits::default());
    }

    fn settle(&mut self, sent: bool, limits: RateLimits) {
        let Some(inner) = self.budget.take() else {
            return;
        };
        {
            let now = Instant::now();
            let mut st = inner.state.lock();
            if let Some(slot) = st.slots.get_mut(self.credential) {
                slot.settle(now, self.granted_at, sent, limits);
            }
        }
        inner.changed.notify_waiters();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        // Sent, as far as we know, but nothing came back that tells what the platform counted.
        self.settle(true, RateLimits::default());
    }
}

/// What the platform's headers have told about one credential's window: an *epoch* (see the module docs).
#[derive(Debug, Clone, Copy)]
struct Known {
    /// The highest `count` heard in this epoch.
    count: u32,
    /// When the request whose answer opened this epoch was granted.
    sent: Instant,
    /// When `count` was last heard (set or raised): a request granted later is counted after it.
    heard: Instant,
    /// By then, the count has fallen at least once since each request answered in this epoch was counted.
    until: Instant,
}

/// See `Slot::fallen`.
#[derive(Debug, Clone, Copy)]
struct Fallen {
    /// How far the count has certainly fallen.
    certain: f64,
    /// Whether two places are certain, or will be within [`SOON`] by time alone (our own requests of a minute
    /// before `until` leaving, a token bucket refilling). If not, waiting could take a minute, and a read may
    /// probe with the one certain place.
    two_soon: bool,
}

/// See [`Fallen::two_soon`].
const SOON: Duration = Duration::from_secs(1);

/// One answer of the last minute: when, and what its headers said, `(count, until)`, if anything.
#[derive(Debug, Clone, Copy)]
struct Answer {
    at: Instant,
    /// When its permit was granted.
    sent: Instant,
    heard: Option<(u32, Instant)>,
}

/// One credential's window.
#[derive(Debug, Clone)]
struct Slot {
    limit_per_minute: u32,
    tokens: f64,
    refilled_at: Instant,
    paused_until: Option<Instant>,
    known: Option<Known>,
    /// Permits granted and not yet reported.
    in_flight: u32,
    /// Answers of the last minute, oldest first.
    answers: VecDeque<Answer>,
    /// The slice of `limit_per_minute` this process may spend when replicas share the credential, and until when
    /// (see [`Budget::set_share`]); `None` when the process is the credential's only user.
    share: Option<(u32, Instant)>,
}

/// Longest pause we accept from headers, so one odd header cannot stall a credential for a day.
const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// Every way of counting a per-minute limit forgets a request within a minute of counting it.
const MINUTE: Duration = Duration::from_secs(60);

/// Which rule lets a request through (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// The room the platform's counters leave.
    Counters,
    /// The even pace.
    Pace,
}

impl Slot {
    fn new(limit_per_minute: u32, now: Instant) -> Self {
        let mut s = Slot {
            limit_per_minute: limit_per_minute.max(1),
            tokens: 0.0,
            refilled_at: now,
            paused_until: None,
            known: None,
            in_flight: 0,
            answers: VecDeque::new(),
            share: None,
        };
        s.tokens = s.burst();
        s
    }

    /// What this process may spend per minute: its share when replicas share the credential (nothing once the
    /// share's lease ran out), else the whole limit.
    fn pace_limit(&self) -> u32 {
        match self.share {
            Some((share, until)) if Instant::now() < until => share,
            Some(_) => 0,
            None => self.limit_per_minute,
        }
    }

    fn rate_per_sec(&self) -> f64 {
        f64::from(self.pace_limit().max(1)) / 60.0
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
        while self.answers.front().is_some_and(|a| now.saturating_duration_since(a.at) >= MINUTE) {
            self.answers.pop_front();
        }
    }

    /// Room a request of `class` needs. Work other than live legs leaves half the burst (rounded down) untouched:
    /// that reserve is the live legs' share, so a reconcile or backfill request never spends the request a live
    /// leg arriving an instant later would have needed.
    fn need(&self, class: PriorityClass) -> f64 {
        match class {
            PriorityClass::Live => 1.0,
            PriorityClass::Reconcile | PriorityClass::Backfill => 1.0 + (self.burst() / 2.0).floor(),
        }
    }

    /// What the platform's counters leave now, if it has told us anything.
    fn counters_room(&self, now: Instant) -> Option<f64> {
        let k = self.known?;
        Some(
            f64::from(self.limit_per_minute) - f64::from(k.count) - f64::from(self.in_flight) - self.unplaced(&k)
                + self.fallen(&k, now).certain,
        )
    }

    /// How far the count has certainly fallen since each request answered in the epoch was counted. Nothing before
    /// `until`; from then on at least one, and whatever every way of counting the minute agrees on: a token bucket
    /// has refilled by `limit / 60` per second since, a sliding window has let go of our own requests of the epoch's
    /// count that are now a minute old, and no count falls below zero (a fixed window falls to zero at once).
    fn fallen(&self, k: &Known, now: Instant) -> Fallen {
        if now < k.until {
            return Fallen { certain: 0.0, two_soon: false };
        }
        let bucket = 1.0 + (now.duration_since(k.until).as_secs_f64() * self.rate_per_sec()).floor();
        // Our requests that were in the epoch's count (sent within its minute, answered before it began) and left a
        // sliding window after the epoch's last answer was counted (so no answer of the epoch took their place).
        let since = k.until.checked_sub(MINUTE).unwrap_or(k.until);
        let in_count = self.answers.iter().filter(|a| a.sent >= since && a.at < k.sent);
        let (mut window, mut soon) = (0.0_f64, 0.0_f64);
        for a in in_count {
            if now.saturating_duration_since(a.at) >= MINUTE {
                window += 1.0;
            }
            if a.sent <= since + SOON {
                soon += 1.0;
            }
        }
        let certain = bucket.min(window.max(1.0)).min(f64::from(k.count));
        Fallen { certain, two_soon: certain >= 2.0 || (soon >= 2.0 && k.count >= 2) }
    }

    /// Requests answered in this epoch that its count may not hold: answered without headers, or with a higher
    /// count than the epoch's (counted after it, or before a fall). A lower or equal count was counted before the
    /// epoch's highest, or after the count fell and made room for it: either way the epoch's count covers it.
    fn unplaced(&self, k: &Known) -> f64 {
        // Answers are kept in the order they came, so the epoch's are at the back.
        let epoch = self.answers.iter().rev().take_while(|a| a.at >= k.sent);
        epoch.filter(|a| a.heard.is_none_or(|(c, _)| c > k.count)).count() as f64
    }

    /// What the even pace's other cap leaves: the limit minus our answers of the last minute and those in flight.
    fn minute_room(&self) -> f64 {
        f64::from(self.pace_limit()) - self.answers.len() as f64 - f64::from(self.in_flight)
    }

    /// Requests of ours that may still be in some count of the platform's minute: answered in the last minute, or
    /// in flight. A process never lets it exceed what it may spend per minute.
    fn footprint(&self) -> u32 {
        self.answers.len() as u32 + self.in_flight
    }

    /// Whether the counters show nothing but our own requests: no more counted than we sent in the last minute. A
    /// credential someone else also spends is left to its counters alone.
    fn alone(&self, k: &Known) -> bool {
        f64::from(k.count) <= self.answers.len() as f64 + f64::from(self.in_flight)
    }

    fn paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|p| p > now)
    }

    /// The rule that lets a request of `class` through now, if any (`counters` false: their room is spoken for;
    /// `begun`: reads still owed their writes). While the counters' epoch lasts and no fall is certain, they decide,
    /// with one exception: a live request that finishes work (a write after its paid gate read) may also go at the
    /// even pace when the counters show only our own requests, since the even pace is safe for our own requests
    /// under any way of counting the minute. Before any headers and once a fall is certain, the even pace may let a
    /// request through; a read, once the counters speak, only with a place left there for its write.
    fn route(&self, now: Instant, class: PriorityClass, counters: bool, finishing: bool, begun: f64) -> Option<Route> {
        if self.paused(now) {
            return None;
        }
        let need = self.need(class);
        // Other work goes at the even pace only, even when the counters leave more.
        let paced = class == PriorityClass::Live || self.tokens >= need;
        let pace = self.tokens >= need && self.minute_room() >= need;
        let by_counters = matches!(self.counters_room(now), Some(room) if counters && room >= need && paced);
        let live = class == PriorityClass::Live;
        match self.known {
            _ if by_counters => Some(Route::Counters),
            Some(k) if now < k.until && !(finishing && live && self.alone(&k)) => None,
            // Once the counters speak, a read goes at the even pace only with a place there for its write too (the
            // counters may have none), beyond those of the reads already begun.
            Some(_) if live && !finishing => (pace && self.minute_room() - begun >= 2.0).then_some(Route::Pace),
            _ => pace.then_some(Route::Pace),
        }
    }

    /// How much room a route leaves, to spread work across credentials.
    fn room(&self, now: Instant, route: Route) -> f64 {
        match route {
            Route::Counters => self.counters_room(now).unwrap_or(0.0),
            Route::Pace => self.tokens.min(self.minute_room()),
        }
    }

    fn grant(&mut self, route: Route, class: PriorityClass) {
        self.in_flight += 1;
        if route == Route::Pace || class != PriorityClass::Live {
            self.tokens -= 1.0;
        }
    }

    /// Earliest instant at which this slot may let a request of `class` through, assuming no other change (an
    /// answer or a cancelled permit wakes the queue anyway).
    fn ready_at(&self, now: Instant, class: PriorityClass, counters: bool, finishing: bool, begun: f64) -> Instant {
        let need = self.need(class);
        let bucket = now + Duration::from_secs_f64((need - self.tokens).max(0.0) / self.rate_per_sec());
        // A read once the counters speak needs the even pace's room for its write too (see `route`).
        let minute_need = match (self.known, class, finishing) {
            (Some(_), PriorityClass::Live, false) => 2.0 + begun,
            _ => need,
        };
        let minute = {
            let missing = (minute_need - self.minute_room()).ceil();
            if missing <= 0.0 {
                now
            } else {
                // The answers that must leave the minute first; those in flight free nothing until answered.
                self.answers.get(missing as usize - 1).map_or(now + MINUTE, |a| a.at + MINUTE)
            }
        };
        let pace = bucket.max(minute);
        let by_counters = |room: f64| match class {
            _ if room < need || !counters => None,
            PriorityClass::Live => Some(now),
            _ => Some(bucket),
        };
        let at = match (self.known, self.counters_room(now)) {
            (Some(k), Some(room)) if now < k.until => match by_counters(room) {
                Some(at) => at,
                None if finishing && class == PriorityClass::Live && self.alone(&k) => pace.min(k.until),
                None => k.until,
            },
            (Some(_), Some(room)) => by_counters(room).unwrap_or(pace),
            _ => pace,
        };
        match self.paused_until {
            Some(p) if p > at => p,
            _ => at,
        }
    }

    /// A permit granted at `granted_at` was reported: answered with `limits` (`sent`), or never sent.
    fn settle(&mut self, now: Instant, granted_at: Instant, sent: bool, limits: RateLimits) {
        self.refill(now);
        self.in_flight = self.in_flight.saturating_sub(1);
        if !sent {
            return;
        }
        let heard = self.learn(now, Some(granted_at), limits);
        self.answers.push_back(Answer { at: now, sent: granted_at, heard });
    }

    /// Takes in an answer's headers (see the module docs) and returns what they said, `(count, until)`.
    fn learn(&mut self, now: Instant, granted_at: Option<Instant>, l: RateLimits) -> Option<(u32, Instant)> {
        let allowed = l.allowed.filter(|a| *a > 0);
        if let Some(allowed) = allowed {
            self.limit_per_minute = allowed;
            self.tokens = self.tokens.min(self.burst());
        }
        // The counters of a shared credential count every replica's requests: their room is not this process's to
        // spend, only its slice is.
        if self.share.is_some() {
            return None;
        }
        let (Some(_), Some(count)) = (allowed, l.count) else {
            return None;
        };
        let until = now + l.reset.unwrap_or(Duration::from_secs(1)).min(MAX_PAUSE);
        let sent = granted_at.unwrap_or(now);
        match &mut self.known {
            Some(k) if sent < k.heard => {
                k.until = k.until.max(until);
                // A higher count from a request sent before the epoch began may date from before the count fell: it
                // does not raise the epoch's, it only takes its own place (see `unplaced`).
                if count > k.count && sent >= k.sent {
                    k.count = count;
                    k.heard = now;
                }
            }
            _ => {
                // Sent after the epoch's count was heard, so counted after it: its count is the newer truth.
                let mut k = Known { count, sent, heard: now, until };
                for (_, u) in self.answers.iter().rev().take_while(|a| a.at >= sent).filter_map(|a| a.heard) {
                    k.until = k.until.max(u);
                }
                self.known = Some(k);
            }
        }
        Some((count, until))
    }
}

/// How long a live request that begins work (a gate read) holds a place for the request that finishes it (the
/// write): long enough for the read's answer and the write's preparation, short enough that a read whose write never
/// comes (the agent had coded) does not hold it for long.
const FOLLOW_UP: Duration = Duration::from_secs(2);

/// How long a live request that begins work waits in the queue, once the counters' room runs short, so that the
/// requests of legs claimed with it are in the queue too and the earliest deadline goes first.
const GATHER: Duration = Duration::from_millis(20);

/// Whether the counters' room may go to a request (see `State::counters_open_to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Yes,
    /// Not before then.
    At(Instant),
    No,
}

struct State {
    slots: Vec<Slot>,
    waiters: BTreeSet<WaitKey>,
    seq: u64,
    /// When each live request that began work and is still owed its finishing request was granted, oldest first.
    begun: VecDeque<Instant>,
}

impl State {
    fn refill(&mut self, now: Instant) {
        for s in &mut self.slots {
            s.refill(now);
        }
        while self.begun.front().is_some_and(|t| now.saturating_duration_since(*t) >= FOLLOW_UP) {
            self.begun.pop_front();
        }
    }

    /// Whether the counters' room may go to `key`. A live request that begins work (a gate read) needs a place for
    /// itself and one for the request that will finish it (the write), beyond those held for work already begun:
    /// when a window runs out between a read and its write, the write waits for the next window and the read was a
    /// call spent for nothing. The exception is the probe once a fall is certain, with nothing begun: its answer
    /// tells how much room there is for its write. (The even pace needs no such reserve: finishing requests go
    /// first, and it frees a place every few hundred milliseconds.)
    ///
    /// Once less than half the limit is left, such a request also waits until it has been queued for [`GATHER`]:
    /// legs claimed together reach the queue a few milliseconds apart, and when the room will not take them all,
    /// the earliest deadlines must get it, not the first to arrive. (With room to spare, everyone gets a place and
    /// no one waits.) `queued` is when the request joined the queue.
    fn counters_open_to(&self, now: Instant, key: &WaitKey, queued: Instant) -> Open {
        if key.class != PriorityClass::Live || !key.begins {
            return Open::Yes;
        }
        let (mut spare, mut probe, mut limit) = (0.0, false, 0.0);
        for s in self.slots.iter().filter(|s| !s.paused(now)) {
            if let (Some(k), Some(room)) = (s.known, s.counters_room(now)) {
                let fallen = s.fallen(&k, now);
                spare += room.max(0.0);
                // The one certain place may go to a read only when time will not soon make it two.
                probe |= fallen.certain >= 1.0 && !fallen.two_soon && room >= 1.0;
                limit += f64::from(s.limit_per_minute);
            }
        }
        let spare = spare - self.begun.len() as f64;
        if spare < 2.0 && !(probe && self.begun.is_empty()) {
            return Open::No;
        }
        match queued + GATHER {
            gathered if spare < limit / 2.0 && gathered > now => Open::At(gathered),
            _ => Open::Yes,
        }
    }

    /// The credential that lets `key` through with the most room (spreads load across credentials).
    fn pick(&self, now: Instant, key: &WaitKey, queued: Instant) -> Option<(usize, Route)> {
        let counters = self.counters_open_to(now, key, queued) == Open::Yes;
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.route(now, key.class, counters, !key.begins, self.begun.len() as f64).map(|r| (i, r, s.room(now, r)))
            })
            .max_by(|a, b| a.2.total_cmp(&b.2))
            .map(|(i, r, _)| (i, r))
    }

    fn grant(&mut self, now: Instant, i: usize, route: Route, key: &WaitKey) {
        self.slots[i].grant(route, key.class);
        if key.class == PriorityClass::Live {
            if key.begins {
                self.begun.push_back(now);
            } else {
                self.begun.pop_front();
            }
        }
    }

    fn next_ready(&self, now: Instant, key: &WaitKey, queued: Instant) -> Instant {
        let open = self.counters_open_to(now, key, queued);
        let counters = open == Open::Yes;
        let begun = self.begun.len() as f64;
        let at = self.slots.iter().map(|s| s.ready_at(now, key.class, counters, !key.begins, begun)).min();
        let mut at = at.unwrap_or(now + Duration::from_secs(1));
        match (open, self.begun.front()) {
            (Open::At(gathered), _) => at = at.min(gathered),
            (Open::No, Some(oldest)) => at = at.min(*oldest + FOLLOW_UP),
            _ => {}
        }
        // Past `until`, the certain fall grows with time alone (a token back every `60 / limit` s).
        for s in self.slots.iter().filter(|s| s.known.is_some_and(|k| now >= k.until)) {
            at = at.min(now + Duration::from_secs_f64(1.0 / s.rate_per_sec()));
        }
        // Never a wake-up that is already due while nothing is ready: rounding must not make the head spin.
        at.max(now + Duration::from_millis(1))
    }
}

pub(crate) struct Inner {
    state: Mutex<State>,
    changed: Notify,
}

/// A snapshot of one credential's window, for diagnostics and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotStatus {
    pub limit_per_minute: u32,
    /// The even pace's bucket.
    pub tokens: f64,
    /// How long no permit is issued for this credential: a 429's pause, or a window its counters say is used up.
    pub paused_for: Option<Duration>,
    /// What the platform's counters leave now (`None` before any rate-limit headers).
    pub counters_room: Option<f64>,
    /// Permits granted and not yet reported.
    pub in_flight: u32,
    /// This process's slice of the limit when replicas share the credential (see [`Budget::set_share`]).
    pub share: Option<u32>,
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
        let slots = (0..credentials.max(1)).map(|_| Slot::new(requests_per_minute, now)).collect();
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(State { slots, waiters: BTreeSet::new(), seq: 0, begun: VecDeque::new() }),
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
        let per_minute: u32 = self.inner.state.lock().slots.iter().map(|s| s.pace_limit().max(1)).sum();
        Duration::from_secs(60) / per_minute.max(1)
    }

    /// The current window of each credential.
    pub fn status(&self) -> Vec<SlotStatus> {
        let now = Instant::now();
        let mut st = self.inner.state.lock();
        st.refill(now);
        st.slots
            .iter()
            .map(|s| {
                let counters_room = s.counters_room(now);
                let used_up = match (s.known, counters_room) {
                    (Some(k), Some(room)) if room < 1.0 && now < k.until => Some(k.until),
                    _ => None,
                };
                let until = s.paused_until.filter(|p| *p > now).max(used_up);
                SlotStatus {
                    limit_per_minute: s.limit_per_minute,
                    tokens: s.tokens,
                    paused_for: until.map(|p| p.saturating_duration_since(now)),
                    counters_room,
                    in_flight: s.in_flight,
                    share: s.share.map(|_| s.pace_limit()),
                }
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
        let queued = Instant::now();
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
                    if let Some((i, route)) = st.pick(now, &key, queued) {
                        st.grant(now, i, route, &key);
                        st.waiters.remove(&key);
                        guard.armed = false;
                        drop(st);
                        // The next waiter is now the head.
                        self.inner.changed.notify_waiters();
                        return Permit { credential: i, granted_at: now, budget: Some(self.inner.clone()) };
                    }
                    Some(st.next_ready(now, &key, queued))
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

    /// Limits this process to `share` requests per minute of `credential`'s limit until `until`, and to none after
    /// it unless renewed: replicas sharing one OAuth client each spend a slice of its limit, handed out by the store
    /// so that the slices never add up to more (see `wrapup_service::shared_budget`). From the first call on, the
    /// platform's counters no longer open room (they count every replica's requests); the even pace goes at the
    /// share, and its cap of a minute's requests is the share.
    pub fn set_share(&self, credential: usize, share: u32, until: Instant) {
        {
            let now = Instant::now();
            let mut st = self.inner.state.lock();
            let Some(slot) = st.slots.get_mut(credential) else {
                return;
            };
            slot.refill(now);
            slot.share = Some((share, until));
            slot.known = None;
            slot.tokens = slot.tokens.min(slot.burst());
        }
        self.inner.changed.notify_waiters();
    }

    /// Per credential: its whole limit per minute (configured, or as the platform's headers last said), and this
    /// process's footprint in it (requests answered in the last minute and in flight).
    pub fn usage(&self) -> Vec<(u32, u32)> {
        let now = Instant::now();
        let mut st = self.inner.state.lock();
        st.refill(now);
        st.slots.iter().map(|s| (s.limit_per_minute, s.footprint())).collect()
    }

    /// Takes in rate-limit headers that belong to no permit of this budget (for an answer to a request of ours,
    /// use [`Permit::answered`], which also knows when the request was sent). `allowed` becomes the credential's
    /// limit; `count` and `reset` join what the platform's counters say (see the module docs).
    pub fn observe(&self, credential: usize, allowed: Option<u32>, count: Option<u32>, reset: Option<Duration>) {
        {
            let now = Instant::now();
            let mut st = self.inner.state.lock();
            let Some(slot) = st.slots.get_mut(credential) else {
                return;
            };
            slot.refill(now);
            slot.learn(now, None, RateLimits { allowed, count, reset });
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

    /// A platform that counts like the sandbox (`wrapup_sandbox::rate_limit`, one of its three semantics) and
    /// answers with its headers, behind a network whose latency varies per request in each direction, so answers
    /// overtake each other and a request sent later may be counted earlier. `lost` of the answers never arrive (the
    /// request was counted, the client sees a timeout).
    struct Platform {
        kind: RateWindow,
        limit: u32,
        window: TokenWindow,
        rng: rand::rngs::StdRng,
        lost: f64,
        admitted: Vec<Instant>,
        refused: usize,
    }

    use rand::{Rng, SeedableRng};
    use wrapup_sandbox::rate_limit::{RateWindow, TokenWindow};

    impl Platform {
        fn new(kind: RateWindow, limit: u32, lost: f64, seed: u64) -> Arc<Mutex<Self>> {
            Arc::new(Mutex::new(Self {
                kind,
                limit,
                window: TokenWindow::new(kind, limit, Instant::now()),
                rng: rand::rngs::StdRng::seed_from_u64(seed),
                lost,
                admitted: Vec::new(),
                refused: 0,
            }))
        }

        fn latency(&mut self) -> Duration {
            Duration::from_micros(self.rng.gen_range(500..30_000))
        }
    }

    /// What a driven run saw.
    #[derive(Debug, Default)]
    struct Driven {
        /// Writes granted.
        writes: usize,
        /// Writes that waited more than 300 ms for their permit after their read was answered (the service gives a
        /// write about that much room before its deadline, `write_reserve`).
        stranded: usize,
    }

    /// `workers` tasks each work through legs — a gate read, then its write, as the service does — sending every
    /// request to `platform`, until `legs` were done or `for_` has passed. Legs arrive `arrivals_per_sec` (all at once
    /// when `None`); a lost answer comes back as a timeout `lost_after` later, and its leg stops there. A 429 pauses
    /// the credential for its reset, as the clients do.
    async fn drive_at(
        budget: &Budget,
        platform: &Arc<Mutex<Platform>>,
        workers: usize,
        legs: usize,
        for_: Duration,
        arrivals_per_sec: Option<f64>,
        lost_after: Duration,
    ) -> Driven {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stranded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (budget, platform, next) = (budget.clone(), platform.clone(), next.clone());
            let (stranded, writes) = (stranded.clone(), writes.clone());
            tasks.push(tokio::spawn(async move {
                'legs: loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= legs {
                        return;
                    }
                    if let Some(rate) = arrivals_per_sec {
                        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
                    }
                    for priority in [Priority::live(None), Priority::live(None).finishing()] {
                        let asked = Instant::now();
                        let permit = tokio::select! {
                            p = budget.acquire(priority) => p,
                            _ = tokio::time::sleep_until(start + for_) => return,
                        };
                        if priority.finishing {
                            writes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if asked.elapsed() > Duration::from_millis(300) {
                                stranded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                        let up = platform.lock().latency();
                        tokio::time::sleep(up).await;
                        let (answer, down, lost) = {
                            let mut p = platform.lock();
                            let (kind, limit) = (p.kind, p.limit);
                            let a = p.window.admit(kind, limit, Instant::now());
                            if a.admitted {
                                p.admitted.push(Instant::now());
                            } else {
                                p.refused += 1;
                            }
                            let chance = p.lost;
                            let lost = p.rng.gen_bool(chance);
                            (a, p.latency(), lost)
                        };
                        tokio::time::sleep(down).await;
                        let credential = permit.credential;
                        if lost {
                            tokio::time::sleep(lost_after).await;
                            drop(permit);
                            continue 'legs;
                        }
                        let reset = Duration::from_secs(answer.reset_secs);
                        let limits = RateLimits { allowed: Some(300), count: Some(answer.count), reset: Some(reset) };
                        permit.answered(limits);
                        if !answer.admitted {
                            budget.pause(credential, reset);
                            continue 'legs;
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let load = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::Relaxed);
        Driven { writes: load(&writes), stranded: load(&stranded) }
    }

    const SEMANTICS: [RateWindow; 3] = [RateWindow::Fixed, RateWindow::Sliding, RateWindow::TokenBucket];

    #[tokio::test(start_paused = true)]
    async fn a_backlog_drains_as_fast_as_the_platform_takes_it_without_a_429_under_every_semantics() {
        for kind in SEMANTICS {
            let budget = Budget::new(1, 300);
            let platform = Platform::new(kind, 300, 0.0, 7);
            let start = Instant::now();
            // 450 legs, 900 requests, waiting at once: the even pace would need 180 s.
            let run = drive_at(&budget, &platform, 32, 450, Duration::from_secs(600), None, Duration::ZERO).await;
            let took = start.elapsed();
            let p = platform.lock();
            assert_eq!(p.refused, 0, "{kind:?}: 429s");
            assert_eq!(p.admitted.len(), 900, "{kind:?}");
            assert_eq!(run.stranded, 0, "{kind:?}: writes left waiting for the next window");
            // The first minute's allowance goes at once (the even pace: 60 s) ...
            let first = p.admitted[299].duration_since(start);
            assert!(first < Duration::from_secs(2), "{kind:?}: the first 300 took {first:?}");
            // ... and the whole backlog about when the platform allows its third minute's worth.
            assert!(took < Duration::from_secs(125), "{kind:?}: 900 took {took:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn under_steady_overload_the_budget_spends_the_whole_limit_and_never_overshoots() {
        for kind in SEMANTICS {
            // Five minutes at 300/min, plus a token bucket's initial burst.
            let most = if kind == RateWindow::TokenBucket { 1_800.0 } else { 1_500.0 };
            for (lost, share) in [(0.0, 0.99), (0.03, 0.95)] {
                for seed in [1, 2] {
                    let budget = Budget::new(1, 300);
                    let platform = Platform::new(kind, 300, lost, seed);
                    let start = Instant::now();
                    // Three times the legs the limit allows arrive, 64 worked on at a time; a lost answer is a
                    // timeout 5 s after the request was counted.
                    let five_minutes = Duration::from_secs(300);
                    let run =
                        drive_at(&budget, &platform, 64, usize::MAX, five_minutes, Some(7.5), Duration::from_secs(5))
                            .await;
                    let p = platform.lock();
                    assert_eq!(p.refused, 0, "{kind:?}, {lost} lost: 429s");
                    let admitted = p.admitted.iter().filter(|t| t.duration_since(start) < five_minutes).count();
                    assert!(admitted as f64 >= share * most, "{kind:?}, {lost} lost: {admitted} admitted in 5 min");
                    // A read is granted only with a place for its write; the few that wait are those whose place a
                    // lost answer, or a count heard late, took.
                    assert!(run.stranded * 100 <= run.writes, "{kind:?}, {lost} lost: {run:?} writes stranded");
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_gate_read_waits_unless_its_write_fits_in_the_same_window() {
        let budget = Budget::new(1, 300);
        // Three left in this window, a minute to go.
        budget.observe(0, Some(300), Some(297), Some(Duration::from_secs(60)));
        let read = budget.acquire(Priority::live(None)).await;
        let start = Instant::now();
        // A second read would leave its write, or the first one's, for the next window.
        let b = budget.clone();
        let second = tokio::spawn(async move { b.acquire(Priority::live(None)).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!second.is_finished());
        read.answered(RateLimits { allowed: Some(300), count: Some(298), reset: Some(Duration::from_secs(59)) });
        let write = budget.acquire(Priority::live(None).finishing()).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        write.answered(RateLimits { allowed: Some(300), count: Some(299), reset: Some(Duration::from_secs(59)) });
        // One place is left, and a read alone would strand its write: the second read waits for the new window.
        let _ = second.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn when_the_room_runs_short_reads_arriving_together_go_by_deadline_not_by_arrival() {
        let budget = Budget::new(1, 300);
        // Room for two legs (a read and a write each).
        budget.observe(0, Some(300), Some(296), Some(Duration::from_secs(60)));
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut legs = Vec::new();
        // Three legs reach the queue a millisecond apart, the latest deadline first.
        for (name, secs) in [("late", 40), ("middle", 20), ("early", 10)] {
            let (b, order) = (budget.clone(), order.clone());
            legs.push(tokio::spawn(async move {
                let deadline = Some(t0 + jiff::SignedDuration::from_secs(secs));
                let read = b.acquire(Priority::live(deadline)).await;
                order.lock().push(name);
                drop(read);
                let _ = b.acquire(Priority::live(deadline).finishing()).await;
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(*order.lock(), ["early", "middle"]);
        for leg in legs {
            leg.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn permits_in_flight_count_against_the_room_the_headers_leave() {
        let budget = Budget::new(1, 300);
        // Ten left in this window, a minute to go.
        budget.observe(0, Some(300), Some(290), Some(Duration::from_secs(60)));
        let granted = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (b, granted) = (budget.clone(), granted.clone());
            tasks.push(tokio::spawn(async move {
                let p = b.acquire(Priority::live(None).finishing()).await;
                granted.lock().push(p);
            }));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        // No answer yet: exactly the ten, not one more, however many ask at once.
        assert_eq!(granted.lock().len(), 10);
        assert_eq!(budget.status()[0].in_flight, 10);
        // Their answers confirm the window is used up; nothing more before it resets.
        for (i, p) in granted.lock().drain(..).enumerate() {
            p.answered(RateLimits {
                allowed: Some(300),
                count: Some(291 + i as u32),
                reset: Some(Duration::from_secs(59)),
            });
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(granted.lock().is_empty());
        assert_eq!(budget.status()[0].counters_room, Some(0.0));
        for t in tasks {
            t.abort();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_unsent_permit_gives_its_place_back_and_a_lost_answer_keeps_it() {
        let budget = Budget::new(1, 300);
        budget.observe(0, Some(300), Some(298), Some(Duration::from_secs(60)));
        let a = budget.acquire(Priority::live(None).finishing()).await;
        let b = budget.acquire(Priority::live(None).finishing()).await;
        assert_eq!(budget.status()[0].counters_room, Some(0.0));
        a.unsent();
        assert_eq!(budget.status()[0].counters_room, Some(1.0));
        // An answer without headers: the platform may have counted it, and no count says so; its place stays taken.
        drop(b);
        assert_eq!(budget.status()[0].counters_room, Some(1.0));
        assert_eq!(budget.status()[0].in_flight, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lower_count_from_an_overtaken_answer_does_not_raise_the_room() {
        let budget = Budget::new(1, 300);
        let early = budget.acquire(Priority::live(None)).await;
        let late = budget.acquire(Priority::live(None)).await;
        let limits =
            |count| RateLimits { allowed: Some(300), count: Some(count), reset: Some(Duration::from_secs(60)) };
        // The later request was counted after the earlier one but answered first.
        late.answered(limits(250));
        early.answered(limits(249));
        assert_eq!(budget.status()[0].counters_room, Some(50.0));
    }

    #[tokio::test(start_paused = true)]
    async fn once_the_count_may_have_fallen_one_probe_goes_and_its_answer_opens_the_next_window() {
        let budget = Budget::new(1, 300);
        let first = budget.acquire(Priority::live(None)).await;
        first.answered(RateLimits { allowed: Some(300), count: Some(300), reset: Some(Duration::from_secs(20)) });
        let start = Instant::now();
        let probe = budget.acquire(Priority::live(None)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        // The probe's answer says a new window began: its whole allowance is there at once, for the probe's write
        // and 149 more legs, each a read and its write.
        probe.answered(RateLimits { allowed: Some(300), count: Some(1), reset: Some(Duration::from_secs(60)) });
        assert_eq!(budget.status()[0].counters_room, Some(299.0));
        let _ = budget.acquire(Priority::live(None).finishing()).await;
        let legs: Vec<_> = (0..149)
            .map(|_| {
                let b = budget.clone();
                tokio::spawn(async move {
                    let _ = b.acquire(Priority::live(None)).await;
                    let _ = b.acquire(Priority::live(None).finishing()).await;
                })
            })
            .collect();
        for leg in legs {
            leg.await.unwrap();
        }
        // Within a few gatherings of the queue (`GATHER`), not at the even pace's 60 s.
        let took = start.elapsed() - Duration::from_secs(20);
        assert!(took < Duration::from_millis(500), "took {took:?}");
        assert_eq!(budget.status()[0].counters_room, Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn other_work_keeps_the_even_pace_when_the_headers_leave_more() {
        let budget = Budget::new(1, 300);
        budget.observe(0, Some(300), Some(1), Some(Duration::from_secs(60)));
        let start = Instant::now();
        for _ in 0..23 {
            budget.acquire(Priority::backfill()).await.answered(RateLimits::default());
        }
        // The burst of 5 less the live reserve, then 5 per second: 20 more take about 4 s, not no time at all.
        let took = start.elapsed();
        assert!(took >= Duration::from_secs(3), "took {took:?}");
        // Live work is not held back by it.
        let start = Instant::now();
        for _ in 0..50 {
            let _ = budget.acquire(Priority::live(None)).await;
            let _ = budget.acquire(Priority::live(None).finishing()).await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
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

    #[tokio::test(start_paused = true)]
    async fn a_shared_credential_paces_at_its_share_and_stops_when_the_share_runs_out() {
        let budget = Budget::new(1, 300);
        let lease = Instant::now() + Duration::from_secs(20);
        budget.set_share(0, 60, lease);
        // One per second (a burst of one), not five: about 11 in 10 s.
        let n = granted_within(&budget, Duration::from_secs(10)).await;
        assert!((10..=12).contains(&n), "granted {n}");
        // The counters of a shared credential count the other replicas too: they open no room here.
        budget.observe(0, Some(300), Some(0), Some(Duration::from_secs(60)));
        assert_eq!(budget.status()[0].counters_room, None);
        assert_eq!(budget.usage(), vec![(300, n as u32 + 1)]);
        // Once the share's lease has run out nothing is granted, however long one waits, until it is renewed.
        tokio::time::sleep_until(lease).await;
        let b = budget.clone();
        let waiting = tokio::spawn(async move { b.acquire(Priority::live(None)).await });
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(!waiting.is_finished(), "a permit past the share's lease");
        assert_eq!(budget.status()[0].share, Some(0));
        budget.set_share(0, 60, Instant::now() + Duration::from_secs(20));
        let start = Instant::now();
        waiting.await.unwrap().answered(RateLimits::default());
        assert!(start.elapsed() <= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_share_never_lets_a_minute_hold_more_than_it() {
        let budget = Budget::new(1, 600);
        budget.set_share(0, 30, Instant::now() + Duration::from_secs(3600));
        let start = Instant::now();
        let mut granted = Vec::new();
        while start.elapsed() < Duration::from_secs(180) {
            budget.acquire(Priority::live(None)).await.answered(RateLimits::default());
            granted.push(start.elapsed());
        }
        for (i, t) in granted.iter().enumerate() {
            let in_minute = granted[i..].iter().take_while(|u| **u < *t + MINUTE).count();
            assert!(in_minute <= 30, "{in_minute} requests in the minute from {t:?}");
        }
    }
}
