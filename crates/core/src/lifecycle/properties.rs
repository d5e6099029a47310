//! Property tests of the whole state machine: random interleavings of platform events (applied to the stored leg,
//! as intake does) and worker moves (on the worker's copy, saved with the version it holds and reconciled when an
//! event overtook it, as the worker does), against a model of the platform that knows what is really on the leg.

use super::*;
use crate::catalog::{AcwPolicy, Catalog, CodeEntry, QueueEntry};
use crate::event::{Event, EventKind};
use crate::failure::ErrorClass;
use crate::leg::{LegFacts, LegKey};
use crate::outcome::{Outcome, Timing};
use crate::rules::{Rule, RuleSet};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;
use std::time::Duration;

const OURS: &str = "c-ours";
const THEIRS: &str = "c-theirs";
const SYSTEM: &str = "c-system";

/// One thing that happens next.
#[derive(Debug, Clone)]
enum Act {
    /// The agent saves a code: on the platform at once, its event maybe later (`delivered`).
    AgentCodes { delivered: bool },
    /// The window closes uncoded (skip / platform timeout with its system code), with an event or not.
    WindowCloses { system: bool, delivered: bool },
    /// A platform event is delivered again (or late).
    Redelivered,
    /// The worker makes its next move; `answer` picks how the platform answers the call it asked for.
    Worker { answer: u8 },
    /// Time passes (seconds).
    Tick(u8),
    /// The worker crashes: its copy and pending lines are lost, and the leg is claimed afresh later. With
    /// `after_send`, a write it was about to make reached the platform and landed first.
    Crash { after_send: bool },
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        1 => any::<bool>().prop_map(|delivered| Act::AgentCodes { delivered }),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(system, delivered)| Act::WindowCloses { system, delivered }),
        1 => Just(Act::Redelivered),
        8 => any::<u8>().prop_map(|answer| Act::Worker { answer }),
        2 => (0u8..20).prop_map(Act::Tick),
        1 => any::<bool>().prop_map(|after_send| Act::Crash { after_send }),
    ]
}

/// What is really on the leg at the platform.
#[derive(Debug, Clone, Default)]
struct Platform {
    /// The final code, and whether we wrote it.
    code: Option<(String, bool)>,
    closed: bool,
    /// Write requests that reached the platform, by attempt number.
    writes: Vec<u32>,
    /// Attempts whose write may have landed (accepted, or its answer lost); a refused one did not.
    maybe_landed: Vec<u32>,
}

/// The store's leg, the worker's copy, and everything the properties look at.
struct World {
    now: Timestamp,
    stored: LegRecord,
    version: i64,
    held: Option<Held>,
    platform: Platform,
    events: Vec<Event>,
    /// Committed ledger lines (kinds).
    lines: Vec<&'static str>,
    /// Outcomes the stored leg went through.
    outcomes: Vec<Outcome>,
    catalog: Catalog,
    rules: RuleSet,
}

struct Held {
    leg: LegRecord,
    saved: LegRecord,
    version: i64,
    lines: Vec<&'static str>,
    pending: Option<Call>,
}

fn t0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

impl World {
    fn new(policy: AcwPolicy, timeout_secs: Option<u64>) -> Self {
        let catalog = Catalog {
            codes: [OURS, THEIRS, SYSTEM].map(|c| CodeEntry { id: c.into(), name: c.into() }).to_vec(),
            queues: vec![QueueEntry {
                id: "q".into(),
                name: "Q".into(),
                code_ids: vec![OURS.into(), THEIRS.into()],
                acw_timeout_ms: timeout_secs.map(|s| s * 1000),
                acw_mode: None,
                acw: Some(policy),
            }],
        };
        let rules = RuleSet::new(vec![Rule {
            name: "r".into(),
            when: Default::default(),
            code: OURS.into(),
            notes: None,
            timing: Timing::Immediate,
            mode: Default::default(),
            platform: None,
            connection: None,
            decide: None,
        }])
        .unwrap();
        let facts = LegFacts { queue_id: Some("q".into()), ended_at: Some(t0()), ..Default::default() };
        let ended = Event {
            leg: LegKey::new("c", "conv", "p"),
            dedupe_key: "end".into(),
            occurred_at: t0(),
            correlation_id: None,
            kind: EventKind::LegEnded { facts: Box::new(facts) },
        };
        let (stored, _) = apply_event(None, &ended, t0());
        World {
            now: t0(),
            stored,
            version: 1,
            held: None,
            platform: Platform::default(),
            events: vec![ended],
            lines: Vec::new(),
            outcomes: Vec::new(),
            catalog,
            rules,
        }
    }

    fn deliver(&mut self, kind: EventKind) {
        let e = Event {
            leg: self.stored.key.clone(),
            dedupe_key: format!("e{}", self.events.len()),
            occurred_at: self.now,
            correlation_id: None,
            kind,
        };
        self.apply(&e);
        self.events.push(e);
    }

    /// What intake does: apply the event to the stored leg, with its outcome line.
    fn apply(&mut self, e: &Event) {
        let before = self.stored.outcome;
        let (leg, _) = apply_event(Some(self.stored.clone()), e, self.now);
        self.stored = leg;
        self.version += 1;
        self.lines.push("event");
        if let Some((kind, _)) = outcome_line(before, &self.stored) {
            self.lines.push(kind);
            self.outcomes.push(self.stored.outcome.unwrap());
        }
    }

    fn step(&mut self, a: Act) {
        match a {
            Act::AgentCodes { delivered } => {
                if self.platform.closed {
                    return;
                }
                self.platform.code = Some((THEIRS.into(), false));
                self.platform.closed = true;
                if delivered {
                    self.deliver(EventKind::CodeRecorded { code_id: Some(THEIRS.into()), notes: None, system: false });
                }
            }
            Act::WindowCloses { system, delivered } => {
                if self.platform.closed {
                    return;
                }
                self.platform.closed = true;
                if system {
                    self.platform.code = Some((SYSTEM.into(), false));
                }
                if delivered {
                    let code_id = system.then(|| SYSTEM.to_string());
                    self.deliver(EventKind::CodeRecorded { code_id, notes: None, system });
                }
            }
            Act::Redelivered => {
                if let Some(e) = self.events.last().cloned() {
                    // A redelivery is a duplicate (intake ignores it); a late copy of the end is a new event.
                    let mut again = self.events[0].clone();
                    again.dedupe_key = format!("again{}", self.events.len());
                    self.apply(&again);
                    self.events.push(again);
                    let _ = e;
                }
            }
            Act::Tick(s) => self.now = self.now.checked_add(SignedDuration::from_secs(i64::from(s))).unwrap(),
            Act::Crash { after_send } => {
                if let Some(held) = self.held.take() {
                    if let (true, Some(call @ Call::Write { .. })) = (after_send, held.pending.clone()) {
                        // The write went out and landed; the answer dies with the process.
                        let _ = self.answer(&held, call, 6);
                    }
                }
            }
            Act::Worker { answer } => self.worker(answer),
        }
    }

    fn worker(&mut self, answer: u8) {
        let mut held = match self.held.take() {
            Some(h) => h,
            None => {
                // Claimed afresh (a crashed worker's copy is gone; its lease ran out).
                if self.stored.is_done() {
                    return;
                }
                Held {
                    leg: self.stored.clone(),
                    saved: self.stored.clone(),
                    version: self.version,
                    lines: Vec::new(),
                    pending: None,
                }
            }
        };
        let input = match held.pending.take() {
            None => Input::Due,
            Some(call) => self.answer(&held, call, answer),
        };
        let backoff = |n: u32, _: Option<Duration>| SignedDuration::from_millis(250 * i64::from(n));
        let is_system = |c: &str| c == SYSTEM;
        let ctx = Ctx {
            now: self.now,
            connection: "c",
            catalog: Ok(&self.catalog),
            rules: &self.rules,
            acw_estimate: SignedDuration::from_secs(10),
            guard: SignedDuration::from_millis(500),
            confirm_within: SignedDuration::from_secs(2),
            backoff: &backoff,
            is_system_code: &is_system,
            pending_decision: None,
        };
        let effects = step(&mut held.leg, input, &ctx);
        for effect in effects {
            match effect {
                Effect::Ledger { kind, .. } => held.lines.push(kind),
                Effect::RefreshCatalog => {}
                Effect::SaveBeforeCall | Effect::Release => {
                    let release = effect == Effect::Release;
                    if !self.save(&mut held) {
                        // Overtaken: reconciled and saved; go on from Due.
                        held.pending = None;
                        if !self.stored.is_done() {
                            self.held = Some(held);
                        }
                        return;
                    }
                    if release {
                        return;
                    }
                }
                Effect::Call(call) => {
                    // A write is a request to the platform only if its precondition holds (nothing changed since).
                    held.pending = Some(call);
                    self.held = Some(held);
                    return;
                }
            }
        }
        self.held = Some(held);
    }

    /// Saves the worker's copy if nothing overtook it; otherwise reconciles (and saves that). Returns whether the
    /// worker's own save went through.
    fn save(&mut self, held: &mut Held) -> bool {
        if held.version == self.version {
            self.commit(held);
            return true;
        }
        let (leg, dirty, lines) = after_conflict(&held.saved, &held.leg, self.stored.clone(), self.now);
        // As the worker does: of the overtaken moves' lines only API attempts stay (the model makes none).
        held.lines.retain(|k| *k == "attempt");
        held.leg = leg;
        held.version = self.version;
        held.saved = self.stored.clone();
        for l in lines {
            if let Effect::Ledger { kind, .. } = l {
                held.lines.push(kind);
            }
        }
        if dirty {
            self.commit(held);
        } else {
            held.lines.clear();
        }
        false
    }

    fn commit(&mut self, held: &mut Held) {
        let before = self.stored.outcome;
        self.stored = held.leg.clone();
        self.version += 1;
        self.lines.append(&mut held.lines);
        if self.stored.outcome != before {
            self.outcomes.push(self.stored.outcome.unwrap());
        }
        held.saved = held.leg.clone();
        held.version = self.version;
    }

    /// The platform's answer to `call`, chosen by `answer`.
    fn answer(&mut self, held: &Held, call: Call, answer: u8) -> Input {
        let fail = |class: ErrorClass| Failure { class, status: None, message: "x".into() };
        match call {
            Call::GateRead => {
                let stale = answer % 16 == 15;
                let answer = match answer % 8 {
                    0 => Err(fail(ErrorClass::Retryable)),
                    1 => Err(fail(ErrorClass::RateLimited { retry_after: None })),
                    // The leg gave its place in the budget's queue away: the read was never sent.
                    2 => Err(fail(ErrorClass::Yielded)),
                    _ => {
                        let window = if self.platform.closed { Window::Closed } else { Window::Open };
                        Ok(GateReading { code: self.platform.code.as_ref().map(|c| c.0.clone()), window })
                    }
                };
                // Now and then the read took so long that its answer cannot be trusted.
                Input::GateRead { answer, stale }
            }
            Call::Write { code, .. } => {
                // The precondition: the stored leg is still the version the worker holds, the window has room.
                if held.version != self.version {
                    return Input::Written(Err(fail(ErrorClass::PreconditionFailed)));
                }
                assert!(
                    held.leg.observed_code.is_none(),
                    "a write licensed on a leg whose gate read saw a code: {:?}",
                    held.leg
                );
                let attempt = held.leg.attempts;
                assert!(!self.platform.writes.contains(&attempt), "a second write request in attempt {attempt}");
                self.platform.writes.push(attempt);
                match answer % 6 {
                    // Lost answers: the write may or may not have landed.
                    0 => {
                        self.platform.maybe_landed.push(attempt);
                        if answer.is_multiple_of(12) && !self.platform.closed {
                            self.platform.code = Some((code.id.clone(), true));
                            self.platform.closed = true;
                        }
                        Input::Written(Err(fail(ErrorClass::Retryable)))
                    }
                    _ if self.platform.closed => Input::Written(Err(fail(ErrorClass::WindowClosed))),
                    // Accepted and not kept (a platform that answers 2xx and drops the write).
                    5 => Input::Written(Ok(())),
                    _ => {
                        self.platform.maybe_landed.push(attempt);
                        self.platform.code = Some((code.id.clone(), true));
                        self.platform.closed = true;
                        Input::Written(Ok(()))
                    }
                }
            }
            Call::ReadFinalCode => match answer % 4 {
                0 => Input::FinalCode(Err(fail(ErrorClass::Retryable))),
                _ => Input::FinalCode(Ok(self.platform.code.as_ref().map(|c| c.0.clone()))),
            },
            Call::RefreshCatalog => Input::CatalogRefreshed,
            Call::ReadAttributes => Input::AttributesRead(Ok(Default::default())),
            Call::AskHook { .. } => unreachable!("the model's rule asks no decision hook"),
        }
    }
}

/// A queue's ACW mode and timeout.
fn queue() -> impl Strategy<Value = (AcwPolicy, Option<u64>)> {
    (
        prop_oneof![Just(AcwPolicy::Mandatory), Just(AcwPolicy::Optional), Just(AcwPolicy::AgentRequested)],
        prop_oneof![Just(None), Just(Some(30u64)), Just(Some(5))],
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn the_machine_keeps_its_promises_under_any_interleaving(
        (policy, timeout) in queue(),
        acts in proptest::collection::vec(act(), 1..60),
    ) {
        let mut w = World::new(policy, timeout);
        for a in acts {
            w.step(a);
            // An attempt whose write may have landed is never counted as one that did not, whatever a later read
            // answers: some attempt always stays uncounted.
            if !w.platform.maybe_landed.is_empty() {
                prop_assert!(
                    w.stored.ours_may_have_landed(false),
                    "a write that may have landed counted as not sent: {:?} (may have landed {:?})",
                    w.stored, w.platform.maybe_landed
                );
            }
        }
        // Drive the worker to quiescence: the platform answers everything, and time runs past any deadline.
        for i in 0..200u32 {
            if w.stored.is_done() && w.held.is_none() {
                break;
            }
            if i % 10 == 9 {
                w.step(Act::Tick(19));
            }
            w.step(Act::Worker { answer: 2 + (i % 3) as u8 });
        }
        prop_assert!(w.stored.is_done(), "the leg never ended: {:?}", w.stored);
        // Exactly one `outcome` line; changes of a finished leg's outcome are `outcome_changed` lines.
        let outcome_lines = w.lines.iter().filter(|k| **k == "outcome").count();
        prop_assert_eq!(outcome_lines, 1, "lines {:?}", w.lines);
        let changes = w.lines.iter().filter(|k| **k == "outcome_changed").count();
        prop_assert_eq!(changes + 1, w.outcomes.len(), "outcomes {:?}, lines {:?}", w.outcomes, w.lines);
        // A finished leg changes its outcome only to agent_changed (after applied) or review (our write raced).
        for pair in w.outcomes.windows(2) {
            let ok = matches!(pair, [Outcome::Applied, Outcome::AgentChanged] | [_, Outcome::Review]);
            prop_assert!(ok, "outcome went {:?}", pair);
        }
        // At most one write request per attempt, and never a second write once one landed.
        let landed_ours = w.platform.code.as_ref().is_some_and(|c| c.1);
        if landed_ours {
            prop_assert!(w.platform.writes.len() <= w.stored.attempts as usize);
        }
        // `applied` only when our code is really on the leg (a 2xx the platform did not keep is not enough).
        if w.stored.outcome == Some(Outcome::Applied) {
            prop_assert!(w.platform.code.as_ref().is_some_and(|c| c.0 == OURS), "applied without our code: {:?}", w.platform);
        }
        // Our code on the platform, and the leg says applied or agent_changed or review — never agent_won.
        if w.platform.code.as_ref().is_some_and(|c| c.1) && w.stored.outcome == Some(Outcome::AgentWon) {
            prop_assert!(false, "our own code labelled the agent's: {:?}", w.stored);
        }
    }
}
