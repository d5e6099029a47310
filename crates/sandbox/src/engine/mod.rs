//! The discrete-event engine both platform simulations run on (`crate::genesys`, `crate::cxone`).
//!
//! An [`Engine`] holds a platform's simulated time (`sim_now`), its heap of scheduled actions ordered by simulated
//! time and then by insertion sequence, the traffic switch with its one pending arrival, and the seeded RNG every
//! simulation draw comes from. A platform implements [`Simulation`] (what one action does); the provided
//! [`Simulation::advance_to`] runs every action due at or before `now`, each *at its own timestamp* (not at the time
//! the loop woke up), so a platform evolves identically for a seed whatever the loop's wake-up jitter.
//!
//! Determinism rests on two rules the platforms keep: only the simulation and setup draw from [`Engine::rng`] (API
//! traffic and faults draw from a separate fault RNG), and each leg draws its agent's whole plan when it is created,
//! so API traffic changes what a platform *shows* but never the random stream.
//!
//! What the platforms also share around the engine: request faults ([`faults`]), ground-truth counters
//! ([`truth`]) and the catalog change log, snapshots, propagation delay and shapes ([`catalog`]).

pub mod catalog;
pub mod faults;
pub mod outcome;
pub mod truth;

use crate::config::Dist;
use jiff::Timestamp;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BinaryHeap;

/// One action scheduled at `at`; `seq` keeps actions due at the same instant in the order they were scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Scheduled<A> {
    at: Timestamp,
    seq: u64,
    action: A,
}

impl<A: Eq> Ord for Scheduled<A> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // BinaryHeap is a max-heap: the earliest (then lowest seq) must compare greatest.
        other.at.cmp(&self.at).then_with(|| other.seq.cmp(&self.seq))
    }
}

impl<A: Eq> PartialOrd for Scheduled<A> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Simulated time, scheduled actions, traffic and the simulation RNG of one platform.
pub struct Engine<A> {
    /// Simulation RNG: ids, arrivals, agent plans. Only the simulation and setup draw from it.
    pub rng: SmallRng,
    /// Whether each agent picks the true outcome (`outcome.rs`): a stream of its own, so that adding it left every
    /// other draw of a seed where it was.
    outcome_rng: SmallRng,
    heap: BinaryHeap<Scheduled<A>>,
    seq: u64,
    sim_now: Timestamp,
    traffic_on: bool,
    /// Whether an arrival is scheduled: arrivals chain (each schedules the next), and a chain ends when it finds the
    /// traffic off, so restarting the traffic must not start a second chain.
    arrival_pending: bool,
    /// The platform's arrival action.
    arrival: A,
}

impl<A: Clone + Eq> Engine<A> {
    /// An engine at simulated time `now`, traffic off; `arrival` is the action that brings a new contact in.
    pub fn new(rng: SmallRng, now: Timestamp, arrival: A) -> Self {
        // Seeded from a copy of the simulation stream, which is left as it was.
        let outcome_rng = SmallRng::seed_from_u64(rng.clone().gen::<u64>() ^ 0x0070_7574_636f_6d65);
        Self {
            rng,
            outcome_rng,
            heap: BinaryHeap::new(),
            seq: 0,
            sim_now: now,
            traffic_on: false,
            arrival_pending: false,
            arrival,
        }
    }

    /// Whether an agent picks the true outcome, with probability `accuracy` (from the outcome stream).
    pub fn picks_true_outcome(&mut self, accuracy: f64) -> bool {
        let u: f64 = self.outcome_rng.gen_range(0.0..1.0);
        u < accuracy
    }

    /// The simulation has been advanced up to here.
    pub fn sim_now(&self) -> Timestamp {
        self.sim_now
    }

    pub fn schedule(&mut self, at: Timestamp, action: A) {
        self.seq += 1;
        self.heap.push(Scheduled { at, seq: self.seq, action });
    }

    /// When the next action is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.heap.peek().map(|s| s.at)
    }

    /// Takes the next action due at or before `now`, with its time; simulated time moves to that time.
    fn pop_due(&mut self, now: Timestamp) -> Option<(Timestamp, A)> {
        if self.heap.peek().is_none_or(|s| s.at > now) {
            return None;
        }
        let s = self.heap.pop()?;
        self.sim_now = self.sim_now.max(s.at);
        Some((s.at, s.action))
    }

    pub fn traffic_on(&self) -> bool {
        self.traffic_on
    }

    pub fn start_traffic(&mut self, now: Timestamp) {
        self.traffic_on = true;
        if !self.arrival_pending {
            self.arrival_pending = true;
            self.schedule(now, self.arrival.clone());
        }
    }

    pub fn stop_traffic(&mut self) {
        self.traffic_on = false;
    }

    /// At an arrival: whether arrivals go on at `rate` per simulated second. When they do not, the chain ends here.
    pub fn arrivals_go_on(&mut self, rate: f64) -> bool {
        let on = self.traffic_on && rate > 0.0 && rate.is_finite();
        if !on {
            self.arrival_pending = false;
        }
        on
    }

    /// Schedules the arrival after the one at `at`, an exponential gap at `rate` per simulated second.
    pub fn schedule_next_arrival(&mut self, at: Timestamp, rate: f64) {
        let gap = self.draw(Dist::new(0.0, 1.0 / rate, 100.0 / rate));
        self.schedule(add_secs(at, gap), self.arrival.clone());
    }

    /// A duration in simulated seconds from `d`.
    pub fn draw(&mut self, d: Dist) -> f64 {
        let u: f64 = self.rng.gen_range(0.0..1.0);
        let x = -d.mean.max(0.0) * (1.0 - u).ln();
        x.clamp(d.min.min(d.max), d.max.max(d.min))
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        let u: f64 = self.rng.gen_range(0.0..1.0);
        u < p
    }

    /// Whether something happens (probability `p`), and after how long (`d`); both are drawn either way, so the
    /// stream does not depend on the outcome.
    pub fn chance_after(&mut self, p: f64, d: Dist) -> (bool, f64) {
        let happens = self.chance(p);
        (happens, self.draw(d))
    }

    /// An index picked with probability proportional to its weight; `None` when the weights do not add up to a
    /// positive finite total. Weights must not be negative.
    pub fn pick_weighted(&mut self, weights: &[f64]) -> Option<usize> {
        let total: f64 = weights.iter().sum();
        if !(total > 0.0 && total.is_finite()) {
            return None;
        }
        let mut x = self.rng.gen_range(0.0..total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return Some(i);
            }
            x -= w;
        }
        // Rounding left `x` past the last weight: the last index that can be drawn at all.
        weights.iter().rposition(|&w| w > 0.0)
    }

    /// A random UUID (v4 layout) from the simulation RNG, so ids are the same for a seed.
    pub fn new_id(&mut self) -> String {
        random_uuid(&mut self.rng)
    }
}

/// A platform simulation on an [`Engine`]: what one scheduled action does.
pub trait Simulation {
    type Action: Clone + Eq;

    /// Runs one action at its own time `at`.
    fn run(&mut self, at: Timestamp, action: Self::Action);

    fn engine_mut(&mut self) -> &mut Engine<Self::Action>;

    /// New contacts per simulated second, as configured now.
    fn arrival_rate(&self) -> f64;

    /// Brings one new contact in at `at` and routes it (or queues it when nobody is free).
    fn arrive(&mut self, at: Timestamp);

    /// The arrival action: one new contact, then the next arrival after an exponential gap, while traffic runs.
    fn arrival(&mut self, at: Timestamp) {
        let rate = self.arrival_rate();
        if self.engine_mut().arrivals_go_on(rate) {
            self.arrive(at);
            self.engine_mut().schedule_next_arrival(at, rate);
        }
    }

    /// Runs every scheduled action due at or before `now`.
    fn advance_to(&mut self, now: Timestamp) {
        while let Some((at, action)) = self.engine_mut().pop_due(now) {
            self.run(at, action);
        }
        let engine = self.engine_mut();
        engine.sim_now = engine.sim_now.max(now);
    }

    fn start_traffic(&mut self, now: Timestamp) {
        self.engine_mut().start_traffic(now);
    }

    fn stop_traffic(&mut self) {
        self.engine_mut().stop_traffic();
    }
}

/// A random UUID (v4 layout) from `rng`.
pub fn random_uuid(rng: &mut SmallRng) -> String {
    uuid::Builder::from_random_bytes(rng.gen()).into_uuid().to_string()
}

/// ISO-8601 with milliseconds and `Z`, as both platforms' REST APIs write timestamps.
pub fn iso(ts: Timestamp) -> String {
    format!("{ts:.3}")
}

/// `at + secs` (simulated seconds, fractional).
pub fn add_secs(at: Timestamp, secs: f64) -> Timestamp {
    let d = jiff::SignedDuration::try_from_secs_f64(secs.max(0.0)).unwrap_or(jiff::SignedDuration::ZERO);
    at.checked_add(d).unwrap_or(at)
}
