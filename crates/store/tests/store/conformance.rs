//! The store conformance suite: what every [`Store`] implementation must do, as generic async functions.
//!
//! Each case takes a fresh, empty store (or, for durability, a way to open the same storage again) and panics on
//! failure. An implementation's test module instantiates every case with `conformance_tests!`
//! so each one is its own test, or calls [`run_all`].

use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use wrapup_core::catalog::{Catalog, CodeEntry, QueueEntry};
use wrapup_core::lifecycle::review::ResolvedCode;
use wrapup_core::lifecycle::{apply_event, LegRecord, LegState, OperatorResolution, ResolutionAction, WriteIntent};
use wrapup_core::{Event, EventKind, LegFacts, LegKey, Outcome};
use wrapup_store::{
    AttemptResult, Attempted, ClaimedLeg, DeliveryFilter, DeliveryState, Ingested, LedgerEntry, LegCursor, LegFilter,
    NewDelivery, OutcomeChange, Resend, ReviewCursor, ReviewFilter, Route, Save, SinkState, Store, StoreError,
};

// ---- fixtures ---------------------------------------------------------------------------------------------------

const LEASE: SignedDuration = SignedDuration::from_secs(30);

/// A fixed instant plus `secs` seconds (sub-millisecond part included, to check precision is kept).
pub fn t(secs: i64) -> Timestamp {
    let base: Timestamp = "2026-03-01T12:00:00.000123456Z".parse().unwrap();
    base.checked_add(SignedDuration::from_secs(secs)).unwrap()
}

pub fn key(n: usize) -> LegKey {
    LegKey::new("prod", format!("conv-{n}"), format!("part-{n}"))
}

/// The ACW window opens at `t(at)`, closing by itself `timeout` seconds later (if any).
pub fn ended(key: &LegKey, at: i64, timeout: Option<u64>) -> Event {
    Event {
        leg: key.clone(),
        dedupe_key: format!("{key}/end/{at}"),
        occurred_at: t(at),
        correlation_id: Some(format!("corr-{key}")),
        kind: EventKind::LegEnded {
            facts: Box::new(LegFacts {
                queue_id: Some("q1".into()),
                ended_at: Some(t(at)),
                acw_timeout_ms: timeout.map(|s| s * 1000),
                ..Default::default()
            }),
        },
    }
}

pub fn coded(key: &LegKey, at: i64, code: Option<&str>, system: bool) -> Event {
    Event {
        leg: key.clone(),
        dedupe_key: format!("{key}/acw/{at}"),
        occurred_at: t(at),
        correlation_id: None,
        kind: EventKind::CodeRecorded { code_id: code.map(str::to_string), notes: None, system },
    }
}

pub fn closed(key: &LegKey, at: i64) -> Event {
    Event {
        leg: key.clone(),
        dedupe_key: format!("{key}/closed/{at}"),
        occurred_at: t(at),
        correlation_id: None,
        kind: EventKind::LegClosed,
    }
}

/// What the store must hold after applying `events` at `now`: the fold of `apply_event`.
fn expected(events: &[Event], now: Timestamp) -> LegRecord {
    let mut leg = None;
    for e in events {
        leg = Some(apply_event(leg, e, now).0);
    }
    leg.expect("at least one event")
}

async fn leg_of<S: Store>(store: &S, key: &LegKey) -> ClaimedLeg {
    store.get_leg(key).await.unwrap().unwrap_or_else(|| panic!("leg {key} should exist"))
}

/// `next_due` is `want`, up to the store's time resolution (indexed times may be truncated to milliseconds, never
/// rounded up: a sleeper wakes at most that much early, never late).
async fn assert_next_due<S: Store>(store: &S, want: Timestamp) {
    let due = store.next_due().await.unwrap().expect("a leg is due");
    let early = want.duration_since(due);
    assert!(early >= SignedDuration::ZERO && early < SignedDuration::from_millis(1), "next_due {due}, want {want}");
}

fn keys(claimed: &[ClaimedLeg]) -> Vec<LegKey> {
    claimed.iter().map(|c| c.leg.key.clone()).collect()
}

fn catalog() -> Catalog {
    Catalog {
        codes: vec![CodeEntry { id: "c1".into(), name: "Sale".into() }],
        queues: vec![QueueEntry {
            id: "q1".into(),
            name: "Sales".into(),
            code_ids: vec!["c1".into()],
            acw_timeout_ms: Some(30_000),
            acw_mode: Some("MANDATORY_TIMEOUT".into()),
            acw: Some(wrapup_core::catalog::AcwPolicy::Mandatory),
        }],
    }
}

// ---- intake -----------------------------------------------------------------------------------------------------

pub async fn a_redelivered_event_is_a_duplicate_across_batches<S: Store>(store: S) {
    let k = key(1);
    let first = store.ingest(&[ended(&k, 0, Some(60))], t(1)).await.unwrap();
    assert_eq!(first, vec![Ingested::New]);
    let again = store.ingest(&[ended(&k, 0, Some(60)), closed(&k, 5)], t(2)).await.unwrap();
    assert_eq!(again, vec![Ingested::Duplicate, Ingested::New]);
    let leg = leg_of(&store, &k).await;
    assert_eq!(leg.version, 2, "a duplicate does not touch the leg");
    let kinds: Vec<String> = store.ledger(&k).await.unwrap().into_iter().map(|l| l.kind).collect();
    assert_eq!(kinds, ["event", "event", "outcome"], "two events, and the ending the second one made");
}

pub async fn a_duplicate_within_one_batch_is_a_duplicate<S: Store>(store: S) {
    let k = key(1);
    let e = ended(&k, 0, Some(60));
    let results = store.ingest(&[e.clone(), e.clone(), coded(&k, 3, Some("c1"), false), e], t(1)).await.unwrap();
    assert_eq!(results, vec![Ingested::New, Ingested::Duplicate, Ingested::New, Ingested::Duplicate]);
    assert_eq!(leg_of(&store, &k).await.version, 2);
}

pub async fn the_same_dedupe_key_on_another_connection_is_new<S: Store>(store: S) {
    let a = LegKey::new("prod", "conv", "p");
    let b = LegKey::new("dev", "conv", "p");
    let mut eb = ended(&b, 0, None);
    eb.dedupe_key = ended(&a, 0, None).dedupe_key;
    let results = store.ingest(&[ended(&a, 0, None), eb], t(1)).await.unwrap();
    assert_eq!(results, vec![Ingested::New, Ingested::New]);
}

pub async fn ingested_events_leave_the_leg_as_apply_event_does<S: Store>(store: S) {
    let k = key(1);
    let other = key(2);
    let batch1 = [ended(&k, 0, Some(60)), ended(&other, 0, None)];
    let batch2 = [coded(&k, 10, Some("agent-code"), false)];
    store.ingest(&batch1, t(1)).await.unwrap();
    let after_first = leg_of(&store, &k).await;
    assert_eq!(after_first.leg, expected(&batch1[..1], t(1)));
    assert_eq!(after_first.version, 1);
    assert_eq!(after_first.leg.deadline, Some(t(60)));

    store.ingest(&batch2, t(11)).await.unwrap();
    let want = apply_event(Some(after_first.leg), &batch2[0], t(11)).0;
    let after_second = leg_of(&store, &k).await;
    assert_eq!(after_second.leg, want, "the whole record round-trips exactly");
    assert_eq!(after_second.leg.outcome, Some(Outcome::AgentWon));
    assert_eq!(after_second.version, 2);

    let ledger = store.ledger(&k).await.unwrap();
    assert_eq!(ledger.len(), 3);
    assert_eq!(ledger[0].kind, "event");
    assert_eq!(ledger[0].at, t(1));
    assert_eq!(ledger[0].detail["event"], "leg_ended");
    assert_eq!(ledger[0].detail["dedupe_key"], batch1[0].dedupe_key);
    assert_eq!(ledger[0].detail["correlation_id"], format!("corr-{k}"));
    assert_eq!(ledger[0].detail["occurred_at"], serde_json::json!(batch1[0].occurred_at));
    assert_eq!(ledger[0].detail["note"], "leg ended; ACW window open");
    assert_eq!(ledger[1].detail["event"], "code_recorded");
    assert_eq!((ledger[2].kind.as_str(), &ledger[2].detail["outcome"]), ("outcome", &serde_json::json!("agent_won")));
}

pub async fn events_in_one_batch_see_each_other<S: Store>(store: S) {
    let k = key(1);
    let events = [ended(&k, 0, Some(60)), coded(&k, 5, Some("sys"), true), closed(&k, 6)];
    store.ingest(&events, t(7)).await.unwrap();
    let leg = leg_of(&store, &k).await;
    assert_eq!(leg.leg, expected(&events, t(7)));
    assert_eq!(leg.leg.outcome, Some(Outcome::Expired));
    assert_eq!(leg.version, 3);
}

pub async fn reordered_events_end_where_apply_event_says<S: Store>(store: S) {
    let k = key(1);
    // The agent's code arrives before the leg's end event.
    let events = [coded(&k, 10, Some("agent-code"), false), ended(&k, 0, Some(60))];
    store.ingest(&events[..1], t(11)).await.unwrap();
    store.ingest(&events[1..], t(11)).await.unwrap();
    let leg = leg_of(&store, &k).await;
    assert_eq!(leg.leg, expected(&events, t(11)));
    assert_eq!(leg.leg.outcome, Some(Outcome::AgentWon));
    assert!(leg.leg.ended_seen, "the late end event still merges its facts");
    assert_eq!(leg.leg.facts.queue_id.as_deref(), Some("q1"));
    assert!(store.claim_due(t(100), 10, "w", LEASE).await.unwrap().is_empty(), "a finished leg is never claimed");
}

pub async fn an_empty_batch_is_fine<S: Store>(store: S) {
    assert!(store.ingest(&[], t(0)).await.unwrap().is_empty());
}

// ---- claiming ---------------------------------------------------------------------------------------------------

pub async fn claims_take_the_earliest_deadline_first_and_legs_without_one_last<S: Store>(store: S) {
    // key(1): no deadline, due at t(0). key(2): deadline t(90). key(3): deadline t(40). key(4): deadline t(40), due
    // later than key(3). key(5): not due yet.
    store
        .ingest(&[ended(&key(1), 0, None), ended(&key(2), 0, Some(90)), ended(&key(3), 0, Some(40))], t(0))
        .await
        .unwrap();
    store.ingest(&[ended(&key(4), 0, Some(40))], t(1)).await.unwrap();
    store.ingest(&[ended(&key(5), 0, Some(10))], t(20)).await.unwrap();
    let claimed = store.claim_due(t(5), 10, "w", LEASE).await.unwrap();
    assert_eq!(keys(&claimed), vec![key(3), key(4), key(2), key(1)]);

    // The limit takes the front of that order.
    let store2 = store;
    for k in [key(1), key(2), key(3), key(4)] {
        store2.release(&k, "w").await.unwrap();
    }
    let claimed = store2.claim_due(t(5), 2, "w2", LEASE).await.unwrap();
    assert_eq!(keys(&claimed), vec![key(3), key(4)]);
}

pub async fn a_leg_is_not_claimed_before_its_not_before<S: Store>(store: S) {
    store.ingest(&[ended(&key(1), 0, None)], t(10)).await.unwrap();
    assert!(store.claim_due(t(9), 10, "w", LEASE).await.unwrap().is_empty());
    assert_next_due(&store, t(10)).await;
    let claimed = store.claim_due(t(10), 10, "w", LEASE).await.unwrap();
    assert_eq!(keys(&claimed), vec![key(1)]);
}

pub async fn claiming_sets_a_lease_but_keeps_the_version<S: Store>(store: S) {
    let k = key(1);
    store.ingest(&[ended(&k, 0, None)], t(0)).await.unwrap();
    let before = leg_of(&store, &k).await;
    let claimed = store.claim_due(t(1), 10, "w", LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].version, before.version);
    assert_eq!(claimed[0].leg, before.leg, "claiming does not change the record");
    assert_eq!(leg_of(&store, &k).await.version, before.version);
    assert!(
        store.claim_due(t(2), 10, "other", LEASE).await.unwrap().is_empty(),
        "a leased leg is not claimed by another worker"
    );
    // A leased leg becomes due when its lease ends.
    assert_next_due(&store, t(31)).await;
}

pub async fn concurrent_workers_never_get_the_same_leg<S: Store>(store: S) {
    let store = Arc::new(store);
    const LEGS: usize = 200;
    let events: Vec<Event> = (0..LEGS).map(|n| ended(&key(n), 0, Some(60))).collect();
    store.ingest(&events, t(0)).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim_due(t(1), 7, &owner, LEASE).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(keys(&claimed));
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for task in tasks {
        for k in task.await.unwrap() {
            total += 1;
            assert!(seen.insert(k.clone()), "leg {k} was claimed twice");
        }
    }
    assert_eq!(total, LEGS);
    assert_eq!(seen.len(), LEGS);
}

pub async fn events_racing_with_workers_are_never_lost<S: Store>(store: S) {
    // Workers keep rescheduling legs while the agents' codes arrive; every code must win, whatever the interleaving:
    // a save based on a version from before an event is refused.
    let store = Arc::new(store);
    const LEGS: usize = 100;
    let ends: Vec<Event> = (0..LEGS).map(|n| ended(&key(n), 0, Some(600))).collect();
    store.ingest(&ends, t(0)).await.unwrap();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (store, done) = (store.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let (mut saved, mut conflicts) = (0, 0);
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let claimed = store.claim_due(t(1), 5, &owner, LEASE).await.unwrap();
                if claimed.is_empty() && finished {
                    return (saved, conflicts);
                }
                for c in claimed {
                    let mut leg = c.leg;
                    leg.state = LegState::Open;
                    leg.attempts += 1;
                    match store.save_leg(&leg, c.version, &owner, true).await {
                        Ok(_) => saved += 1,
                        Err(StoreError::Conflict(_)) => {
                            conflicts += 1;
                            store.release(&leg.key, &owner).await.unwrap();
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for chunk in (0..LEGS).collect::<Vec<_>>().chunks(7) {
        let codes: Vec<Event> = chunk.iter().map(|&n| coded(&key(n), 5, Some("agent"), false)).collect();
        store.ingest(&codes, t(1)).await.unwrap();
        tokio::task::yield_now().await;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    for n in 0..LEGS {
        let leg = leg_of(&*store, &key(n)).await.leg;
        assert_eq!(leg.outcome, Some(Outcome::AgentWon), "leg {n} lost its event");
        assert_eq!(leg.state, LegState::Done);
    }
    assert!(store.claim_due(t(1), 10, "w", LEASE).await.unwrap().is_empty());
}

pub async fn an_expired_lease_lets_another_worker_claim<S: Store>(store: S) {
    let k = key(1);
    store.ingest(&[ended(&k, 0, Some(600))], t(0)).await.unwrap();
    let a = store.claim_due(t(1), 1, "a", LEASE).await.unwrap();
    assert_eq!(a.len(), 1);
    assert!(store.claim_due(t(30), 1, "b", LEASE).await.unwrap().is_empty());
    let b = store.claim_due(t(31), 1, "b", LEASE).await.unwrap();
    assert_eq!(keys(&b), vec![k.clone()]);
    // The first worker's late save is refused; the new owner's goes through.
    let mut leg = a[0].leg.clone();
    leg.state = LegState::Scheduled;
    let late = store.save_leg(&leg, a[0].version, "a", true).await;
    assert!(matches!(late, Err(StoreError::Conflict(_))), "{late:?}");
    let v = store.save_leg(&leg, b[0].version, "b", true).await.unwrap();
    assert_eq!(v, b[0].version + 1);
}

pub async fn a_writing_leg_is_reclaimed_after_its_lease_expires<S: Store>(store: S) {
    let k = key(1);
    store.ingest(&[ended(&k, 0, Some(600))], t(0)).await.unwrap();
    let claimed = store.claim_due(t(1), 1, "crashed", LEASE).await.unwrap();
    let mut leg = claimed[0].leg.clone();
    leg.state = LegState::Writing;
    leg.not_before = t(500);
    leg.intent = Some(WriteIntent { code_id: "c1".into(), code_name: "Sale".into(), at: t(2) });
    leg.updated_at = t(2);
    let v = store.save_leg(&leg, claimed[0].version, "crashed", false).await.unwrap();
    // The worker dies holding the lease (taken at t(1) for 30 s).
    assert!(store.claim_due(t(30), 1, "rescuer", LEASE).await.unwrap().is_empty());
    let rescued = store.claim_due(t(31), 1, "rescuer", LEASE).await.unwrap();
    assert_eq!(rescued.len(), 1, "writing legs ignore not_before once the lease is gone");
    assert_eq!(rescued[0].version, v);
    assert_eq!(rescued[0].leg.state, LegState::Writing);
    assert_eq!(rescued[0].leg.intent, leg.intent, "the write intent survives");
}

pub async fn leases_left_by_a_crashed_run_are_cleared_at_startup<S: Store>(store: S) {
    let (open, writing) = (key(1), key(2));
    store.ingest(&[ended(&open, 0, Some(600)), ended(&writing, 0, Some(600))], t(0)).await.unwrap();
    let claimed = store.claim_due(t(1), 2, "crashed-run", LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let w = claimed.iter().find(|c| c.leg.key == writing).unwrap();
    let mut leg = w.leg.clone();
    leg.state = LegState::Writing;
    leg.intent = Some(WriteIntent { code_id: "c1".into(), code_name: "Sale".into(), at: t(2) });
    leg.updated_at = t(2);
    store.save_leg(&leg, w.version, "crashed-run", false).await.unwrap();
    // Still leased: nobody else can take them for the lease's 30 s.
    assert!(store.claim_due(t(3), 2, "next-run", LEASE).await.unwrap().is_empty());
    assert_eq!(store.release_all_leases().await.unwrap(), 2);
    let mut rescued = keys(&store.claim_due(t(3), 2, "next-run", LEASE).await.unwrap());
    rescued.sort();
    assert_eq!(rescued, vec![open, writing], "both legs are claimable at once, the write intent included");
    assert_eq!(store.release_all_leases().await.unwrap(), 2, "only leased legs are counted");
}

pub async fn an_overdue_leg_with_a_write_intent_is_left_to_its_worker<S: Store>(store: S) {
    let k = key(1);
    store.ingest(&[ended(&k, 0, Some(60))], t(0)).await.unwrap();
    let claimed = store.claim_due(t(1), 1, "w", LEASE).await.unwrap();
    let mut leg = claimed[0].leg.clone();
    // A write went out and its answer was lost (a timeout): back to `scheduled`, intent kept, retry later.
    leg.state = LegState::Scheduled;
    leg.intent = Some(WriteIntent { code_id: "c1".into(), code_name: "Sale".into(), at: t(2) });
    leg.not_before = t(100);
    store.save_leg(&leg, claimed[0].version, "w", true).await.unwrap();
    assert!(store.expire_overdue(t(61)).await.unwrap().is_empty(), "the write may have landed: not expired blindly");
    assert_eq!(leg_of(&store, &k).await.leg.state, LegState::Scheduled);
}

// ---- saving -----------------------------------------------------------------------------------------------------

pub async fn a_save_returns_the_next_version_and_release_frees_the_leg<S: Store>(store: S) {
    let k = key(1);
    store.ingest(&[ended(&k, 0, Some(600))], t(0)).await.unwrap();
    let c = store.claim_due(t(1), 1, "w", LEASE).await.unwrap().remove(0);
    let mut leg = c.leg.clone();
    leg.state = LegState::Scheduled;
    leg.not_before = t(5);
    leg.updated_at = t(2);
    let v1 = store.save_leg(&leg, c.version, "w", false).await.unwrap();
    assert_eq!(v1, c.version + 1);
    // Kept lease (until t(31)): still ours, and the next save with the new version works.
    assert!(store.claim_due(t(20), 1, "other", LEASE).await.unwrap().is_empty());
    let v2 = store.save_leg(&leg, v1, "w", true).await.unwrap();
    assert_eq!(v2, v1 + 1);
    let stored = leg_of(&store, &k).await;
    assert_eq!(stored.leg, leg);
    assert_eq!(stored.version, v2);
    // Released: due again at its (new) not_before, for anyone.
    assert_next_due(&store, t(5)).await;
    assert!(store.claim_due(t(4), 1, "other", LEASE).await.unwrap().is_empty());
    assert_eq!(store.claim_due(t(5), 1, "other", LEASE).await.unwrap().len(), 1);
}

pub async fn a_save_commits_its_ledger_lines_with_the_leg_and_a_refused_one_commits_none<S: Store>(store: S) {
    let k = key(1);
    store.ingest(&[ended(&k, 0, Some(600))], t(0)).await.unwrap();
    let c = store.claim_due(t(1), 1, "w", LEASE).await.unwrap().remove(0);
    let line = |n: i64| LedgerEntry { at: t(n), kind: "note".into(), detail: serde_json::json!({"n": n}) };
    let mut leg = c.leg.clone();
    leg.state = LegState::Scheduled;
    let lines = [line(1), line(2)];
    let save = Save { leg: &leg, version: c.version, owner: "w", release: false, lines: &lines, stored_outcome: None };
    let v = store.save(save).await.unwrap();
    // An event overtakes the worker: its next save is refused, and its lines are not written either.
    store.ingest(&[coded(&k, 3, Some("agent"), false)], t(3)).await.unwrap();
    leg.finish(Outcome::Review, Some("x".into()), t(4));
    let refused = [line(4)];
    let save = Save { leg: &leg, version: v, owner: "w", release: true, lines: &refused, stored_outcome: None };
    assert!(matches!(store.save(save).await, Err(StoreError::Conflict(_))));
    let kinds: Vec<String> = store.ledger(&k).await.unwrap().into_iter().map(|l| l.kind).collect();
    assert_eq!(kinds, ["event", "note", "note", "event", "outcome"]);
}

pub async fn every_ending_is_reported_once_to_the_outcome_hook<S: Store>(store: S) {
    type Seen = Vec<(String, Option<Outcome>, Outcome)>;
    let seen: Arc<std::sync::Mutex<Seen>> = Arc::default();
    let sink = seen.clone();
    store.watch_outcomes(Arc::new(move |c: &OutcomeChange| {
        let to = c.leg.outcome.expect("a change has an outcome");
        sink.lock().unwrap().push((c.leg.key.conversation.clone(), c.from, to));
    }));
    // An event ends one leg; a worker's save ends another, then the same leg's agent changes our code; the sweep
    // expires a third. Saves that do not change the outcome report nothing.
    let (a, b, e) = (key(1), key(2), key(3));
    store.ingest(&[ended(&a, 0, Some(600)), ended(&b, 0, Some(600)), ended(&e, 0, Some(5))], t(0)).await.unwrap();
    store.ingest(&[coded(&a, 1, Some("agent"), false)], t(1)).await.unwrap();
    let c = store.claim_due(t(2), 10, "w", LEASE).await.unwrap().into_iter().find(|c| c.leg.key == b).unwrap();
    let mut leg = c.leg.clone();
    leg.intent = Some(WriteIntent { code_id: "ours".into(), code_name: "Ours".into(), at: t(2) });
    leg.written_at = Some(t(2));
    leg.finish(Outcome::Applied, None, t(2));
    let save = Save { leg: &leg, version: c.version, owner: "w", release: true, lines: &[], stored_outcome: None };
    store.save(save).await.unwrap();
    store.ingest(&[coded(&b, 3, Some("ours"), false), coded(&b, 4, Some("theirs"), false)], t(4)).await.unwrap();
    store.expire_overdue(t(10)).await.unwrap();
    store.ingest(&[closed(&a, 11)], t(11)).await.unwrap();
    let mut got = seen.lock().unwrap().clone();
    got.sort_by_key(|(conv, from, _)| (conv.clone(), from.is_some()));
    let conv = |k: &LegKey| k.conversation.clone();
    assert_eq!(
        got,
        vec![
            (conv(&a), None, Outcome::AgentWon),
            (conv(&b), None, Outcome::Applied),
            (conv(&b), Some(Outcome::Applied), Outcome::AgentChanged),
            (conv(&e), None, Outcome::Expired),
        ]
    );
    // Each leg's ledger has exactly one `outcome` line.
    for k in [&a, &b, &e] {
        let outcome_lines = store.ledger(k).await.unwrap().iter().filter(|l| l.kind == "outcome").count();
        let expected = if k == &b { 0 } else { 1 };
        assert_eq!(outcome_lines, expected, "{k}: the worker's own line comes with its save, not from the store");
    }
}

pub async fn a_save_after_an_event_arrived_is_a_conflict<S: Store>(store: S) {
    let k = key(1);
    store.ingest(&[ended(&k, 0, Some(600))], t(0)).await.unwrap();
    let c = store.claim_due(t(1), 1, "w", LEASE).await.unwrap().remove(0);
    store.ingest(&[coded(&k, 2, Some("agent"), false)], t(2)).await.unwrap();
    let mut leg = c.leg.clone();
    leg.state = LegState::Scheduled;
    let r = store.save_leg(&leg, c.version, "w", true).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    // The event kept the worker's lease: the worker reloads and may save on the fresh version.
    assert!(store.claim_due(t(3), 1, "other", LEASE).await.unwrap().is_empty());
    let fresh = leg_of(&store, &k).await;
    assert_eq!(fresh.version, c.version + 1);
    assert_eq!(fresh.leg.outcome, Some(Outcome::AgentWon));
    store.save_leg(&fresh.leg, fresh.version, "w", true).await.unwrap();
}

pub async fn a_save_by_a_worker_without_the_lease_is_a_conflict<S: Store>(store: S) {
    let k = key(1);
    store.ingest(&[ended(&k, 0, Some(600))], t(0)).await.unwrap();
    let unleased = leg_of(&store, &k).await;
    let r = store.save_leg(&unleased.leg, unleased.version, "nobody", true).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    let c = store.claim_due(t(1), 1, "w", LEASE).await.unwrap().remove(0);
    let r = store.save_leg(&c.leg, c.version, "intruder", true).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    // Releasing someone else's lease changes nothing.
    store.release(&k, "intruder").await.unwrap();
    assert!(store.claim_due(t(2), 1, "intruder", LEASE).await.unwrap().is_empty());
    store.release(&k, "w").await.unwrap();
    assert_eq!(store.claim_due(t(2), 1, "intruder", LEASE).await.unwrap().len(), 1);
    assert_eq!(leg_of(&store, &k).await.version, c.version, "releasing does not change the leg");
}

pub async fn saving_or_reading_an_unknown_leg<S: Store>(store: S) {
    let leg = LegRecord::new(key(9), t(0));
    let r = store.save_leg(&leg, 1, "w", true).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert!(store.get_leg(&key(9)).await.unwrap().is_none());
    assert!(store.ledger(&key(9)).await.unwrap().is_empty());
    assert_eq!(store.next_due().await.unwrap(), None);
}

// ---- expiry -----------------------------------------------------------------------------------------------------

pub async fn overdue_open_and_scheduled_legs_expire_but_writing_legs_are_left<S: Store>(store: S) {
    let open = key(1);
    let scheduled = key(2);
    let writing = key(3);
    let not_yet = key(4);
    let no_deadline = key(5);
    store
        .ingest(
            &[
                ended(&open, 0, Some(30)),
                ended(&scheduled, 0, Some(30)),
                ended(&writing, 0, Some(30)),
                ended(&not_yet, 0, Some(300)),
                ended(&no_deadline, 0, None),
            ],
            t(0),
        )
        .await
        .unwrap();
    for c in store.claim_due(t(1), 10, "w", LEASE).await.unwrap() {
        let mut leg = c.leg;
        if leg.key == scheduled {
            leg.state = LegState::Scheduled;
        } else if leg.key == writing {
            leg.state = LegState::Writing;
        }
        store.save_leg(&leg, c.version, "w", true).await.unwrap();
    }
    let before = leg_of(&store, &open).await;
    let expired: BTreeSet<LegKey> = store.expire_overdue(t(31)).await.unwrap().into_iter().collect();
    assert_eq!(expired, BTreeSet::from([open.clone(), scheduled.clone()]));
    let after = leg_of(&store, &open).await;
    assert_eq!(after.version, before.version + 1);
    assert_eq!(after.leg.state, LegState::Done);
    assert_eq!(after.leg.outcome, Some(Outcome::Expired));
    assert_eq!(after.leg.outcome_reason.as_deref(), Some("the ACW window closed before we acted"));
    let last = store.ledger(&open).await.unwrap().pop().unwrap();
    assert_eq!(last.kind, "outcome");
    assert_eq!(last.at, t(31));
    assert_eq!(last.detail["outcome"], "expired");
    assert_eq!(leg_of(&store, &writing).await.leg.state, LegState::Writing);
    assert!(store.expire_overdue(t(31)).await.unwrap().is_empty(), "expiry happens once");
}

pub async fn expiry_refuses_the_save_of_the_worker_holding_the_leg<S: Store>(store: S) {
    let k = key(1);
    store.ingest(&[ended(&k, 0, Some(30))], t(0)).await.unwrap();
    let c = store.claim_due(t(1), 1, "w", LEASE).await.unwrap().remove(0);
    assert_eq!(store.expire_overdue(t(31)).await.unwrap(), vec![k.clone()]);
    let r = store.save_leg(&c.leg, c.version, "w", true).await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
}

pub async fn many_overdue_legs_all_expire<S: Store>(store: S) {
    let events: Vec<Event> = (0..1234).map(|n| ended(&key(n), 0, Some(10))).collect();
    for batch in events.chunks(500) {
        store.ingest(batch, t(0)).await.unwrap();
    }
    assert_eq!(store.expire_overdue(t(11)).await.unwrap().len(), 1234);
    let counts = store.outcome_counts("prod").await.unwrap();
    assert_eq!(counts.get(&Some(Outcome::Expired)), Some(&1234));
    assert_eq!(store.next_due().await.unwrap(), None);
}

// ---- ledger, reports, catalog, idempotency --------------------------------------------------------------------

pub async fn the_ledger_reads_back_in_append_order<S: Store>(store: S) {
    let k = key(1);
    let other = key(2);
    store.ingest(&[ended(&k, 0, None)], t(0)).await.unwrap();
    for (i, kind) in ["decision", "attempt", "attempt", "outcome"].iter().enumerate() {
        let entry = LedgerEntry {
            // Out-of-order times: the ledger is in append order, not time order.
            at: t(10 - i as i64),
            kind: kind.to_string(),
            detail: serde_json::json!({ "n": i, "nested": { "ok": true } }),
        };
        store.append_ledger(&k, &entry).await.unwrap();
        store.append_ledger(&other, &entry).await.unwrap();
    }
    let ledger = store.ledger(&k).await.unwrap();
    let kinds: Vec<&str> = ledger.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["event", "decision", "attempt", "attempt", "outcome"]);
    assert_eq!(ledger[2].detail, serde_json::json!({ "n": 1, "nested": { "ok": true } }));
    assert_eq!(ledger[4].at, t(7));
    assert_eq!(store.ledger(&other).await.unwrap().len(), 4);
    // The attempt lines per leg, in one query: both legs have two; a leg without any, or unknown, is left out.
    let counts = store.attempt_counts(&[k.clone(), other.clone(), key(3)]).await.unwrap();
    assert_eq!(counts.len(), 2, "{counts:?}");
    assert_eq!((counts[&k], counts[&other]), (2, 2));
    assert!(store.attempt_counts(&[]).await.unwrap().is_empty());
    // More legs than one query takes.
    let many: Vec<LegKey> = (0..2500).map(key).collect();
    assert_eq!(store.attempt_counts(&many).await.unwrap().len(), 2);
}

pub async fn outcome_counts_count_finished_and_open_legs_per_connection<S: Store>(store: S) {
    let dev = LegKey::new("dev", "c", "p");
    store
        .ingest(
            &[
                ended(&key(1), 0, None),
                ended(&key(2), 0, None),
                coded(&key(2), 1, Some("agent"), false),
                coded(&key(3), 1, Some("agent"), false),
                closed(&key(4), 1),
                ended(&dev, 0, None),
            ],
            t(2),
        )
        .await
        .unwrap();
    let counts = store.outcome_counts("prod").await.unwrap();
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![(None, 1), (Some(Outcome::AgentWon), 2), (Some(Outcome::Expired), 1)]
    );
    assert_eq!(store.outcome_counts("dev").await.unwrap().get(&None), Some(&1));
    assert!(store.outcome_counts("none").await.unwrap().is_empty());
}

pub async fn list_legs_filters_and_puts_the_newest_first<S: Store>(store: S) {
    for n in 0..5 {
        store.ingest(&[ended(&key(n), 0, None)], t(n as i64)).await.unwrap();
    }
    store.ingest(&[closed(&key(1), 9)], t(9)).await.unwrap();
    store.ingest(&[ended(&LegKey::new("dev", "c", "p"), 0, None)], t(10)).await.unwrap();
    let all = store.list_legs(&LegFilter::default()).await.unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[0].key.connection, "dev");
    let prod: Vec<LegKey> = store
        .list_legs(&LegFilter { connection: Some("prod".into()), ..Default::default() })
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.key)
        .collect();
    assert_eq!(prod, vec![key(4), key(3), key(2), key(1), key(0)]);
    let open = store
        .list_legs(&LegFilter {
            connection: Some("prod".into()),
            open_only: true,
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(open.iter().map(|l| l.key.clone()).collect::<Vec<_>>(), vec![key(4), key(3)]);
    let expired = store.list_legs(&LegFilter { outcome: Some(Outcome::Expired), ..Default::default() }).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].key, key(1));
}

pub async fn list_legs_narrows_by_queue_agent_code_conversation_and_time_and_pages_by_cursor<S: Store>(store: S) {
    // Six legs, two per creation time: queue q1/q2 and agent u0/u1 alternate; leg 2 gets the agent's code "sales".
    for n in 0..6 {
        let mut event = ended(&key(n), 0, None);
        if let EventKind::LegEnded { facts } = &mut event.kind {
            facts.queue_id = Some(format!("q{}", 1 + n % 2));
            facts.queue_name = Some(format!("Queue {}", 1 + n % 2));
            facts.user_id = Some(format!("u{}", n % 2));
        }
        store.ingest(&[event], t(n as i64 / 2)).await.unwrap();
    }
    store.ingest(&[coded(&key(2), 1, Some("sales"), false)], t(5)).await.unwrap();
    let list = |filter: LegFilter| {
        let store = &store;
        async move { store.list_legs(&filter).await.unwrap().into_iter().map(|l| l.key).collect::<Vec<_>>() }
    };
    let q2 = list(LegFilter { queue: Some("q2".into()), ..Default::default() }).await;
    assert_eq!(q2, vec![key(5), key(3), key(1)]);
    assert_eq!(list(LegFilter { queue: Some("Queue 2".into()), ..Default::default() }).await, q2, "by name too");
    assert_eq!(list(LegFilter { agent: Some("u0".into()), ..Default::default() }).await, vec![key(4), key(2), key(0)]);
    assert_eq!(list(LegFilter { code: Some("sales".into()), ..Default::default() }).await, vec![key(2)]);
    assert_eq!(list(LegFilter { conversation: Some("conv-3".into()), ..Default::default() }).await, vec![key(3)]);
    let middle = LegFilter { from: Some(t(1)), to: Some(t(2)), ..Default::default() };
    assert_eq!(list(middle).await, vec![key(3), key(2)]);
    let both = LegFilter { queue: Some("q1".into()), agent: Some("u1".into()), ..Default::default() };
    assert!(list(both).await.is_empty(), "filters combine");
    // Pages of two: every leg once, in order, though two legs share each creation time.
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page =
            store.list_legs(&LegFilter { after: after.clone(), limit: Some(2), ..Default::default() }).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().map(LegCursor::of);
        walked.extend(page.into_iter().map(|l| l.key));
    }
    assert_eq!(walked, (0..6).rev().map(key).collect::<Vec<_>>());
}

pub async fn legs_since_walks_a_time_range_oldest_first_in_pages<S: Store>(store: S) {
    // Two legs share each creation time, on two connections, so that the key breaks the ties.
    for n in 0..6 {
        store.ingest(&[ended(&key(n), 0, None)], t(n as i64 / 2)).await.unwrap();
        store.ingest(&[ended(&LegKey::new("dev", format!("c{n}"), "p"), 0, None)], t(n as i64 / 2)).await.unwrap();
    }
    let mut walked = Vec::new();
    let mut after: Option<LegRecord> = None;
    loop {
        let page = store.legs_since(Some(t(1)), after.as_ref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last().cloned() else { break };
        walked.extend(page.into_iter().map(|l| (l.created_at, l.key)));
        after = Some(last);
    }
    let mut want: Vec<(Timestamp, LegKey)> = (2..6)
        .flat_map(|n| [(t(n as i64 / 2), key(n)), (t(n as i64 / 2), LegKey::new("dev", format!("c{n}"), "p"))])
        .collect();
    want.sort();
    assert_eq!(walked, want, "every leg from t(1) on, once, by creation time then key");
    let all = store.legs_since(None, None, 100).await.unwrap();
    assert_eq!(all.len(), 12);
    assert_eq!(all[0].key, LegKey::new("dev", "c0", "p"));
}

pub async fn the_catalog_cache_round_trips<S: Store>(store: S) {
    assert!(store.get_catalog("prod").await.unwrap().is_none());
    store.put_catalog("prod", &catalog(), t(0)).await.unwrap();
    assert_eq!(store.get_catalog("prod").await.unwrap(), Some((catalog(), t(0))));
    let mut newer = catalog();
    newer.codes.push(CodeEntry { id: "c2".into(), name: "No sale".into() });
    store.put_catalog("prod", &newer, t(60)).await.unwrap();
    assert_eq!(store.get_catalog("prod").await.unwrap(), Some((newer, t(60))));
    assert!(store.get_catalog("dev").await.unwrap().is_none());
}

pub async fn an_idempotency_key_returns_the_first_response<S: Store>(store: S) {
    let first = serde_json::json!({ "status": 202, "leg": "a" });
    let second = serde_json::json!({ "status": 202, "leg": "b" });
    assert_eq!(store.idempotent("prod", "k1", &first).await.unwrap(), (true, first.clone()));
    assert_eq!(store.idempotent("prod", "k1", &second).await.unwrap(), (false, first.clone()));
    assert_eq!(
        store.idempotent("dev", "k1", &second).await.unwrap(),
        (true, second.clone()),
        "keys are per connection"
    );
}

pub async fn pending_decisions_are_found_for_their_leg_or_its_conversation<S: Store>(store: S) {
    let decision = |code: &str, at: i64| wrapup_core::lifecycle::ExternalDecision {
        code_name: code.into(),
        notes: None,
        source: "crm".into(),
        idempotency_key: Some(format!("k-{code}")),
        arrived_at: Timestamp::from_millisecond(t(at).as_millisecond()).unwrap(),
        expires_at: None,
    };
    let leg = |p: &str| LegKey::new("prod", "conv-1", p);
    assert_eq!(store.pending_decision(&leg("a")).await.unwrap(), None);
    store.put_pending_decision("prod", "conv-1", None, &decision("Conversation", 1)).await.unwrap();
    assert_eq!(store.pending_decision(&leg("a")).await.unwrap(), Some(decision("Conversation", 1)));
    store.put_pending_decision("prod", "conv-1", Some("b"), &decision("Leg b", 2)).await.unwrap();
    assert_eq!(store.pending_decision(&leg("b")).await.unwrap(), Some(decision("Leg b", 2)), "its own first");
    assert_eq!(store.pending_decision(&leg("a")).await.unwrap(), Some(decision("Conversation", 1)));
    store.put_pending_decision("prod", "conv-1", None, &decision("Later", 3)).await.unwrap();
    assert_eq!(store.pending_decision(&leg("a")).await.unwrap(), Some(decision("Later", 3)), "a later one replaces");
    assert_eq!(store.pending_decision(&LegKey::new("dev", "conv-1", "a")).await.unwrap(), None, "per connection");

    // The legs of a conversation, and idempotency answers read without storing.
    store.ingest(&[ended(&leg("a"), 0, Some(60)), ended(&leg("b"), 0, Some(60))], t(1)).await.unwrap();
    store.ingest(&[ended(&LegKey::new("prod", "conv-2", "a"), 0, Some(60))], t(1)).await.unwrap();
    let legs = store.legs_of_conversation("prod", "conv-1").await.unwrap();
    assert_eq!(legs.iter().map(|l| l.key.participant.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(store.legs_of_conversation("dev", "conv-1").await.unwrap().is_empty());
    assert_eq!(store.idempotency_answer("prod", "k").await.unwrap(), None);
    store.idempotent("prod", "k", &serde_json::json!({"status": 200})).await.unwrap();
    assert_eq!(store.idempotency_answer("prod", "k").await.unwrap(), Some(serde_json::json!({"status": 200})));
}

pub async fn the_catalog_audit_trail_reads_back_per_connection_in_order<S: Store>(store: S) {
    // The trail keeps milliseconds.
    let line = |connection: &str, apply: &str, seq: i64, at: Timestamp, kind: &str| wrapup_store::CatalogAuditLine {
        connection: connection.into(),
        apply_id: apply.into(),
        seq,
        at: Timestamp::from_millisecond(at.as_millisecond()).unwrap(),
        actor: "ops@host".into(),
        kind: kind.into(),
        body: serde_json::json!({ "seq": seq }),
    };
    let lines = [
        line("prod", "a1", 0, t(1), "begin"),
        line("prod", "a1", 1, t(2), "intent"),
        line("dev", "a2", 0, t(2), "begin"),
        line("prod", "a1", 2, t(3), "result"),
        line("prod", "a1", 3, t(4), "end"),
    ];
    for l in &lines {
        store.append_catalog_audit(l).await.unwrap();
    }
    let prod = store.catalog_audit("prod", t(0)).await.unwrap();
    assert_eq!(prod, vec![lines[0].clone(), lines[1].clone(), lines[3].clone(), lines[4].clone()]);
    assert_eq!(store.catalog_audit("prod", t(3)).await.unwrap().len(), 2, "since is inclusive");
    assert_eq!(store.catalog_audit("dev", t(0)).await.unwrap(), vec![lines[2].clone()]);
    assert!(store.append_catalog_audit(&lines[0]).await.is_err(), "a line is written once");
}

// ---- the outbox ---------------------------------------------------------------------------------------------------

/// The messages of `k`: (type, outcome, replaces, code id, code source).
async fn messages_of<S: Store>(
    store: &S,
    k: &LegKey,
) -> Vec<(String, String, Option<String>, Option<String>, Option<String>)> {
    let field = |b: &serde_json::Value, path: &[&str]| {
        let mut v = b;
        for p in path {
            v = &v[*p];
        }
        v.as_str().map(str::to_string)
    };
    store
        .outbox_messages(Some(k), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| {
            assert!(m.id.starts_with("msg_"), "{}", m.id);
            assert_eq!(m.body["version"], 1);
            assert_eq!(field(&m.body, &["data", "conversation"]).as_deref(), Some(k.conversation.as_str()));
            (
                m.kind,
                m.outcome.as_str().to_string(),
                field(&m.body, &["data", "replaces"]),
                field(&m.body, &["data", "code", "id"]),
                field(&m.body, &["data", "code", "source"]),
            )
        })
        .collect()
}

pub async fn every_outcome_change_writes_one_outbox_message_in_its_commit<S: Store>(store: S) {
    let (a, b, e, d) = (key(1), key(2), key(3), key(4));
    store
        .ingest(
            &[ended(&a, 0, Some(600)), ended(&b, 0, Some(600)), ended(&e, 0, Some(5)), ended(&d, 0, Some(600))],
            t(0),
        )
        .await
        .unwrap();
    assert!(store.outbox_messages(None, 100).await.unwrap().is_empty(), "an open leg announces nothing");
    store.ingest(&[coded(&a, 1, Some("agent"), false)], t(1)).await.unwrap();
    let claimed = store.claim_due(t(2), 10, "w", LEASE).await.unwrap();
    let c = claimed.iter().find(|c| c.leg.key == b).unwrap();
    let mut leg = c.leg.clone();
    leg.intent = Some(WriteIntent { code_id: "ours".into(), code_name: "Ours".into(), at: t(2) });
    leg.written_at = Some(t(2));
    leg.finish(Outcome::Applied, None, t(2));
    let save = Save { leg: &leg, version: c.version, owner: "w", release: true, lines: &[], stored_outcome: None };
    store.save(save).await.unwrap();
    store.ingest(&[coded(&b, 3, Some("ours"), false), coded(&b, 4, Some("theirs"), false)], t(4)).await.unwrap();
    store.expire_overdue(t(10)).await.unwrap();
    // A refused save announces nothing: the event that overtook the worker announced the leg's ending.
    let c = claimed.iter().find(|c| c.leg.key == d).unwrap();
    store.ingest(&[coded(&d, 5, Some("agent"), false)], t(5)).await.unwrap();
    let mut leg = c.leg.clone();
    leg.finish(Outcome::Review, Some("x".into()), t(6));
    let save = Save { leg: &leg, version: c.version, owner: "w", release: true, lines: &[], stored_outcome: None };
    assert!(matches!(store.save(save).await, Err(StoreError::Conflict(_))));
    // Closing an already finished leg changes nothing, and announces nothing.
    store.ingest(&[closed(&a, 11)], t(11)).await.unwrap();

    let s = |x: &str| Some(x.to_string());
    let finished = "leg.finished".to_string();
    assert_eq!(
        messages_of(&store, &a).await,
        vec![(finished.clone(), "agent_won".into(), None, s("agent"), s("agent"))]
    );
    assert_eq!(
        messages_of(&store, &b).await,
        vec![
            (finished.clone(), "applied".into(), None, s("ours"), s("ours")),
            ("leg.outcome_changed".into(), "agent_changed".into(), s("applied"), s("theirs"), s("agent")),
        ]
    );
    assert_eq!(messages_of(&store, &e).await, vec![(finished.clone(), "expired".into(), None, None, None)]);
    assert_eq!(messages_of(&store, &d).await, vec![(finished, "agent_won".into(), None, s("agent"), s("agent"))]);
    let all = store.outbox_messages(None, 100).await.unwrap();
    assert_eq!(all.len(), 5);
    let ids: BTreeSet<&str> = all.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids.len(), 5, "message ids are unique");
    let b_msgs = store.outbox_messages(Some(&b), 10).await.unwrap();
    assert_eq!(b_msgs[0].body["data"]["code"]["name"], "Ours");
    assert_eq!(b_msgs[0].body["data"]["queue"]["id"], "q1");
    assert!(b_msgs[0].seq < b_msgs[1].seq);
}

/// Ends the legs `keys` (their windows open at `t(0)` for 600 s) in `review` through a worker's save.
async fn in_review<S: Store>(store: &S, keys: &[LegKey]) {
    let events: Vec<Event> = keys.iter().map(|k| ended(k, 0, Some(600))).collect();
    store.ingest(&events, t(0)).await.unwrap();
    for c in store.claim_due(t(1), 100, "w", LEASE).await.unwrap() {
        let mut leg = c.leg.clone();
        leg.finish(Outcome::Review, Some("the decided code cannot be used".into()), t(1));
        let save = Save { leg: &leg, version: c.version, owner: "w", release: true, lines: &[], stored_outcome: None };
        store.save(save).await.unwrap();
    }
}

/// An operator's resolution of `k` as an event (`code`: resolve with it, else dismiss).
fn operator(k: &LegKey, id: &str, code: Option<&str>, may_write: bool, at: i64) -> Event {
    let resolution = OperatorResolution {
        id: id.into(),
        code: code.map(|c| ResolvedCode { id: format!("{c}-id"), name: c.into() }),
        by: "ana".into(),
        at: t(at),
        note: Some("checked with the customer".into()),
        may_write,
        record_only: false,
    };
    Event {
        leg: k.clone(),
        dedupe_key: format!("review:{id}"),
        occurred_at: t(at),
        correlation_id: None,
        kind: EventKind::OperatorResolved { resolution: Box::new(resolution) },
    }
}

async fn queue<S: Store>(store: &S, filter: ReviewFilter) -> Vec<String> {
    store.review_legs(&filter).await.unwrap().into_iter().map(|l| l.key.conversation).collect()
}

pub async fn the_review_queue_pages_waiting_legs_oldest_first_and_drops_resolved_ones<S: Store>(store: S) {
    let keys: Vec<LegKey> = (1..=4).map(key).collect();
    in_review(&store, &keys).await;
    let other = LegKey::new("dev", "conv-9", "part-9");
    in_review(&store, std::slice::from_ref(&other)).await;
    let late = key(5);
    store.ingest(&[ended(&late, 0, Some(5))], t(0)).await.unwrap();
    store.expire_overdue(t(10)).await.unwrap();
    let prod =
        |include_expired, after, limit| ReviewFilter { connection: Some("prod".into()), include_expired, after, limit };
    assert_eq!(queue(&store, prod(false, None, 10)).await, ["conv-1", "conv-2", "conv-3", "conv-4"]);
    assert_eq!(queue(&store, prod(true, None, 10)).await, ["conv-1", "conv-2", "conv-3", "conv-4", "conv-5"]);
    let everywhere = ReviewFilter { connection: None, include_expired: false, after: None, limit: 10 };
    assert_eq!(queue(&store, everywhere).await.len(), 5);

    // Pages continue after the last leg of the previous one, through an opaque cursor.
    let first = store.review_legs(&prod(true, None, 2)).await.unwrap();
    let cursor = ReviewCursor::decode(&ReviewCursor::after(first.last().unwrap()).encode()).unwrap();
    assert_eq!(queue(&store, prod(true, Some(cursor), 2)).await, ["conv-3", "conv-4"]);
    assert_eq!(ReviewCursor::decode("not a cursor"), None);

    // Recorded and dismissed legs leave the queue; a leg handed back to the worker is not waiting either.
    store.ingest(&[operator(&keys[0], "r1", Some("Sale"), false, 700)], t(700)).await.unwrap();
    store.ingest(&[operator(&keys[1], "r2", None, false, 700)], t(700)).await.unwrap();
    store.ingest(&[operator(&keys[2], "r3", Some("Sale"), true, 2)], t(2)).await.unwrap();
    assert_eq!(queue(&store, prod(true, None, 10)).await, ["conv-4", "conv-5"]);
    assert_eq!(store.review_count("prod").await.unwrap(), 1, "review legs only, not resolved, not handed back");
    assert_eq!(store.review_count("dev").await.unwrap(), 1);
    let handed = leg_of(&store, &keys[2]).await.leg;
    assert_eq!((handed.state, handed.outcome), (LegState::Scheduled, Some(Outcome::Review)));
    let dismissed = leg_of(&store, &keys[1]).await.leg.resolution.unwrap();
    assert_eq!(
        (dismissed.action, dismissed.note.as_deref()),
        (ResolutionAction::Dismissed, Some("checked with the customer"))
    );
    // The ledger says who did what.
    let line = store.ledger(&keys[0]).await.unwrap().into_iter().last().unwrap();
    assert_eq!(line.detail["operator"]["by"], "ana");
    assert_eq!(line.detail["operator"]["code"]["name"], "Sale");
}

pub async fn resolutions_are_announced_in_the_outbox_in_their_commit<S: Store>(store: S) {
    let (recorded, handed, lapsed) = (key(1), key(2), key(3));
    in_review(&store, &[recorded.clone(), handed.clone(), lapsed.clone()]).await;
    let hook_saw = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = hook_saw.clone();
    store.watch_outcomes(Arc::new(move |c: &OutcomeChange| {
        seen.lock().unwrap().push((c.leg.key.conversation.clone(), c.from, c.leg.outcome))
    }));
    // After the window: recorded, the outcome kept, announced with the operator's code.
    store.ingest(&[operator(&recorded, "r1", Some("Sale"), false, 700)], t(700)).await.unwrap();
    // A second resolution changes nothing and announces nothing.
    store.ingest(&[operator(&recorded, "r1b", Some("Sale"), false, 701)], t(701)).await.unwrap();
    assert_eq!(leg_of(&store, &recorded).await.leg.resolution.unwrap().id, "r1");
    // Inside the window: handed back; the worker's ending replaces `review`.
    store.ingest(&[operator(&handed, "r2", Some("Sale"), true, 2)], t(2)).await.unwrap();
    store.ingest(&[operator(&lapsed, "r3", Some("Sale"), true, 2)], t(2)).await.unwrap();
    let claimed = store.claim_due(t(3), 10, "w2", LEASE).await.unwrap();
    let c = claimed.iter().find(|c| c.leg.key == handed).expect("the handed back leg is due");
    let mut leg = c.leg.clone();
    leg.intent = Some(WriteIntent { code_id: "Sale-id".into(), code_name: "Sale".into(), at: t(3) });
    leg.written_at = Some(t(3));
    leg.finish(Outcome::Applied, None, t(3));
    let save =
        Save { leg: &leg, version: c.version, owner: "w2", release: true, lines: &[], stored_outcome: c.leg.outcome };
    store.save(save).await.unwrap();
    // One the worker did not reach in time expires: that too is its change from `review`.
    if let Some(c) = claimed.iter().find(|c| c.leg.key == lapsed) {
        store.release(&c.leg.key, "w2").await.unwrap();
    }
    store.expire_overdue(t(700)).await.unwrap();

    let s = |x: &str| Some(x.to_string());
    let finished = "leg.finished".to_string();
    assert_eq!(
        messages_of(&store, &recorded).await,
        vec![
            (finished.clone(), "review".into(), None, None, None),
            ("leg.resolved".into(), "review".into(), None, s("Sale-id"), s("operator")),
        ]
    );
    assert_eq!(
        messages_of(&store, &handed).await,
        vec![
            (finished.clone(), "review".into(), None, None, None),
            ("leg.outcome_changed".into(), "applied".into(), s("review"), s("Sale-id"), s("ours")),
        ]
    );
    assert_eq!(
        messages_of(&store, &lapsed).await,
        vec![
            (finished, "review".into(), None, None, None),
            ("leg.outcome_changed".into(), "expired".into(), s("review"), None, None),
        ]
    );
    let resolved = store.outbox_messages(Some(&recorded), 10).await.unwrap().pop().unwrap();
    assert_eq!(resolved.body["data"]["resolution"]["by"], "ana");
    assert_eq!(resolved.body["data"]["resolution"]["action"], "recorded");
    let ledger = store.ledger(&lapsed).await.unwrap();
    assert_eq!(ledger.iter().filter(|l| l.kind == "outcome").count(), 0, "the saves of this test wrote none");
    assert_eq!(ledger.iter().filter(|l| l.kind == "outcome_changed").count(), 1);
    let mut saw = hook_saw.lock().unwrap().clone();
    saw.sort();
    let (review, applied, expired) = (Some(Outcome::Review), Some(Outcome::Applied), Some(Outcome::Expired));
    assert_eq!(
        saw,
        vec![("conv-1".into(), review, review), ("conv-2".into(), review, applied), ("conv-3".into(), review, expired)]
    );
}

/// Routes every unrouted message to `sinks` (bodies are the message ids), expiring at `t(1000)`.
async fn route_all<S: Store>(store: &S, sinks: &[&str], now: Timestamp) -> usize {
    let messages = store.outbox_unrouted(100).await.unwrap();
    let routes: Vec<Route> = messages
        .iter()
        .map(|m| Route {
            seq: m.seq,
            deliveries: sinks
                .iter()
                .map(|s| NewDelivery { sink: s.to_string(), body: m.id.clone(), expires_at: t(1000) })
                .collect(),
        })
        .collect();
    store.outbox_route(&routes, now).await.unwrap();
    messages.len()
}

/// Ends leg `b` as `applied` by a worker, then has the agent change it: two messages in order.
async fn applied_then_changed<S: Store>(store: &S, b: &LegKey, at: i64) {
    store.ingest(&[ended(b, at, Some(600))], t(at)).await.unwrap();
    let c = store.claim_due(t(at), 10, "w", LEASE).await.unwrap().into_iter().find(|c| &c.leg.key == b).unwrap();
    let mut leg = c.leg.clone();
    leg.intent = Some(WriteIntent { code_id: "ours".into(), code_name: "Ours".into(), at: t(at) });
    leg.written_at = Some(t(at));
    leg.finish(Outcome::Applied, None, t(at));
    let save = Save { leg: &leg, version: c.version, owner: "w", release: true, lines: &[], stored_outcome: None };
    store.save(save).await.unwrap();
    store
        .ingest(&[coded(b, at + 1, Some("ours"), false), coded(b, at + 2, Some("theirs"), false)], t(at + 2))
        .await
        .unwrap();
}

fn attempted(seq: i64, sink: &str, at: i64, result: AttemptResult) -> Attempted {
    Attempted { seq, sink: sink.into(), at: t(at), status: Some(500), error: Some("boom".into()), result }
}

pub async fn outbox_deliveries_reach_a_sink_in_order_per_leg<S: Store>(store: S) {
    let (a, b) = (key(1), key(2));
    applied_then_changed(&store, &b, 0).await;
    store.ingest(&[ended(&a, 0, Some(600)), coded(&a, 1, Some("agent"), false)], t(3)).await.unwrap();
    // Not routed yet: nothing to claim.
    assert!(store.outbox_claim("crm", t(5), 10, "o1", LEASE).await.unwrap().is_empty());
    assert_eq!(route_all(&store, &["crm", "audit"], t(5)).await, 3);
    assert_eq!(route_all(&store, &["crm"], t(5)).await, 0, "routed once");
    let b_msgs = store.outbox_messages(Some(&b), 10).await.unwrap();
    let (first, second) = (b_msgs[0].seq, b_msgs[1].seq);

    // The leg's agent_changed waits for its first message; the other leg's goes along.
    let got = store.outbox_claim("crm", t(5), 10, "o1", LEASE).await.unwrap();
    let seqs: Vec<i64> = got.iter().map(|d| d.seq).collect();
    assert_eq!(seqs.len(), 2);
    assert!(seqs.contains(&first) && !seqs.contains(&second), "{seqs:?}");
    assert!(got.iter().all(|d| d.state == DeliveryState::Pending && d.body.starts_with("msg_")));
    assert!(store.outbox_claim("crm", t(5), 10, "o2", LEASE).await.unwrap().is_empty(), "leased to o1");
    // The other sink is independent.
    assert_eq!(store.outbox_claim("audit", t(5), 10, "o2", LEASE).await.unwrap().len(), 2);

    // A failed attempt is retried later: until then the later message still waits.
    let retry = attempted(first, "crm", 6, AttemptResult::Retry(t(20)));
    assert_eq!(store.outbox_record("o1", std::slice::from_ref(&retry)).await.unwrap(), 1);
    assert_eq!(store.outbox_record("o2", &[retry]).await.unwrap(), 0, "only the lease holder records");
    assert!(store.outbox_claim("crm", t(10), 10, "o1", LEASE).await.unwrap().is_empty());
    assert_eq!(
        store.outbox_next_due("crm").await.unwrap(),
        Some(Timestamp::from_millisecond(t(20).as_millisecond()).unwrap())
    );
    let again = store.outbox_claim("crm", t(20), 10, "o1", LEASE).await.unwrap();
    assert_eq!(again.iter().map(|d| (d.seq, d.attempts)).collect::<Vec<_>>(), vec![(first, 1)]);
    assert_eq!(again[0].last_status, Some(500));
    // Delivered: now the later message is due.
    let ok = Attempted { status: Some(204), error: None, ..attempted(first, "crm", 21, AttemptResult::Delivered) };
    store.outbox_record("o1", &[ok]).await.unwrap();
    let next = store.outbox_claim("crm", t(21), 10, "o1", LEASE).await.unwrap();
    assert_eq!(next.iter().map(|d| d.seq).collect::<Vec<_>>(), vec![second]);
    // A dead letter is listed as one.
    store.outbox_record("o1", &[attempted(second, "crm", 22, AttemptResult::Dead)]).await.unwrap();
    let dead = store
        .outbox_list(&DeliveryFilter {
            sink: Some("crm".into()),
            state: Some(DeliveryState::Dead),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        dead.iter().map(|d| (d.seq, d.message_id.clone())).collect::<Vec<_>>(),
        vec![(second, b_msgs[1].id.clone())]
    );
    let delivered = store
        .outbox_list(&DeliveryFilter {
            leg: Some(b.clone()),
            state: Some(DeliveryState::Delivered),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].delivered_at, Some(Timestamp::from_millisecond(t(21).as_millisecond()).unwrap()));
    assert!(store.outbox_next_due("crm").await.unwrap().is_some(), "leg a's crm delivery is still leased");
}

pub async fn dead_letters_and_delivered_messages_can_be_sent_again<S: Store>(store: S) {
    let b = key(2);
    applied_then_changed(&store, &b, 0).await;
    route_all(&store, &["crm"], t(5)).await;
    let msgs = store.outbox_messages(Some(&b), 10).await.unwrap();
    let first = store.outbox_claim("crm", t(5), 10, "o", LEASE).await.unwrap().remove(0);
    store.outbox_record("o", &[attempted(first.seq, "crm", 6, AttemptResult::Dead)]).await.unwrap();
    let second = store.outbox_claim("crm", t(6), 10, "o", LEASE).await.unwrap().remove(0);
    assert_eq!(second.seq, msgs[1].seq, "a dead letter no longer holds back its leg's next message");
    store.outbox_record("o", &[attempted(second.seq, "crm", 7, AttemptResult::Delivered)]).await.unwrap();

    // Dead letters back to pending, with a new deadline; the count per state follows.
    assert_eq!(store.outbox_resend(&Resend::Dead { sink: Some("other".into()) }, t(8), t(900)).await.unwrap(), 0);
    assert_eq!(store.outbox_resend(&Resend::Dead { sink: None }, t(8), t(900)).await.unwrap(), 1);
    let counts = store.outbox_counts().await.unwrap();
    assert_eq!(counts.get(&("crm".to_string(), DeliveryState::Pending)), Some(&1));
    assert_eq!(counts.get(&("crm".to_string(), DeliveryState::Delivered)), Some(&1));
    let again = store.outbox_claim("crm", t(8), 10, "o", LEASE).await.unwrap();
    assert_eq!(again.iter().map(|d| (d.seq, d.attempts)).collect::<Vec<_>>(), vec![(first.seq, 0)]);
    assert_eq!(again[0].expires_at, Timestamp::from_millisecond(t(900).as_millisecond()).unwrap());
    store.outbox_record("o", &[attempted(first.seq, "crm", 9, AttemptResult::Delivered)]).await.unwrap();

    // Replay: what was delivered since a time is pending again, with the same message id and body.
    assert_eq!(store.outbox_resend(&Resend::Delivered { since: t(9), sink: None }, t(10), t(900)).await.unwrap(), 1);
    let replayed = store.outbox_claim("crm", t(10), 10, "o", LEASE).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!((replayed[0].seq, replayed[0].body.as_str()), (first.seq, msgs[0].id.as_str()));
    // One message by id.
    let by_id = Resend::Message { id: msgs[1].id.clone(), sink: Some("crm".into()) };
    assert_eq!(store.outbox_resend(&by_id, t(11), t(900)).await.unwrap(), 1);

    // A sink's disabled state is persisted, and enabling clears it.
    assert!(store.outbox_sinks().await.unwrap().is_empty());
    let disabled = SinkState {
        name: "crm".into(),
        disabled_at: Some(Timestamp::from_millisecond(t(12).as_millisecond()).unwrap()),
        disabled_status: Some(410),
        disabled_reason: Some("410 Gone".into()),
    };
    store.outbox_set_sink(&disabled).await.unwrap();
    assert_eq!(store.outbox_sinks().await.unwrap(), vec![disabled]);
    let enabled = SinkState { name: "crm".into(), disabled_at: None, disabled_status: None, disabled_reason: None };
    store.outbox_set_sink(&enabled).await.unwrap();
    assert_eq!(store.outbox_sinks().await.unwrap(), vec![enabled]);
}

// ---- durability -------------------------------------------------------------------------------------------------

/// `open` must open the *same* storage every time (a file, a database), starting empty the first time.
pub async fn everything_survives_a_reopen<S, F, Fut>(open: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    let k = key(1);
    let entry = LedgerEntry { at: t(3), kind: "decision".into(), detail: serde_json::json!({ "code": "Sale" }) };
    let response = serde_json::json!({ "ok": true });
    let written = {
        let store = open().await;
        store.ingest(&[ended(&k, 0, Some(60))], t(1)).await.unwrap();
        let c = store.claim_due(t(2), 1, "w", LEASE).await.unwrap().remove(0);
        let mut leg = c.leg;
        leg.state = LegState::Scheduled;
        leg.updated_at = t(3);
        store.save_leg(&leg, c.version, "w", false).await.unwrap();
        store.append_ledger(&k, &entry).await.unwrap();
        store.put_catalog("prod", &catalog(), t(4)).await.unwrap();
        store.idempotent("prod", "k", &response).await.unwrap();
        // A finished leg's message, routed and leased.
        store.ingest(&[ended(&key(2), 0, Some(60)), coded(&key(2), 1, Some("agent"), false)], t(1)).await.unwrap();
        route_all(&store, &["crm"], t(2)).await;
        assert_eq!(store.outbox_claim("crm", t(2), 10, "o", LEASE).await.unwrap().len(), 1);
        leg_of(&store, &k).await
    };
    let store = open().await;
    assert_eq!(leg_of(&store, &k).await, written);
    assert_eq!(
        store.ingest(&[ended(&k, 0, Some(60))], t(5)).await.unwrap(),
        vec![Ingested::Duplicate],
        "the inbox survives"
    );
    let ledger = store.ledger(&k).await.unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[1], entry);
    assert_eq!(store.get_catalog("prod").await.unwrap(), Some((catalog(), t(4))));
    assert_eq!(store.idempotent("prod", "k", &serde_json::json!(1)).await.unwrap(), (false, response));
    // The outbox survives: the message, its delivery and its lease.
    assert_eq!(store.outbox_messages(Some(&key(2)), 10).await.unwrap().len(), 1);
    assert!(store.outbox_unrouted(10).await.unwrap().is_empty());
    assert!(store.outbox_claim("crm", t(3), 10, "other", LEASE).await.unwrap().is_empty());
    assert_eq!(store.outbox_claim("crm", t(33), 10, "other", LEASE).await.unwrap().len(), 1);
    // The lease survives too.
    assert!(store.claim_due(t(10), 1, "other", LEASE).await.unwrap().is_empty());
    assert_eq!(store.claim_due(t(32), 1, "other", LEASE).await.unwrap().len(), 1);
}

/// Instantiates every case (except durability, which needs reopenable storage) as its own `#[tokio::test]`, each
/// with a fresh store from `$make` (an expression, evaluated inside an async test).
///
/// `conformance_tests!(maybe: $make)` is for a store that needs something the machine may not have (a database
/// server): `$make` evaluates to an `Option<(store, guard)>`; `None` skips the case (the maker says why), and the
/// guard is dropped after the case, even when it fails (e.g. to drop the case's database).
macro_rules! conformance_tests {
    (maybe: $make:expr) => {
        conformance_tests!(@list maybe $make);
    };
    (@cases plain $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                crate::conformance::$case($make).await;
            }
        )*
    };
    (@cases maybe $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some((store, _guard)) = $make else { return };
                crate::conformance::$case(store).await;
            }
        )*
    };
    ($make:expr) => {
        conformance_tests!(@list plain $make);
    };
    (@list $how:ident $make:expr) => {
        conformance_tests!(@cases $how $make;
            a_redelivered_event_is_a_duplicate_across_batches,
            a_duplicate_within_one_batch_is_a_duplicate,
            the_same_dedupe_key_on_another_connection_is_new,
            ingested_events_leave_the_leg_as_apply_event_does,
            events_in_one_batch_see_each_other,
            reordered_events_end_where_apply_event_says,
            an_empty_batch_is_fine,
            claims_take_the_earliest_deadline_first_and_legs_without_one_last,
            a_leg_is_not_claimed_before_its_not_before,
            claiming_sets_a_lease_but_keeps_the_version,
            concurrent_workers_never_get_the_same_leg,
            events_racing_with_workers_are_never_lost,
            an_expired_lease_lets_another_worker_claim,
            a_writing_leg_is_reclaimed_after_its_lease_expires,
            leases_left_by_a_crashed_run_are_cleared_at_startup,
            an_overdue_leg_with_a_write_intent_is_left_to_its_worker,
            a_save_returns_the_next_version_and_release_frees_the_leg,
            a_save_commits_its_ledger_lines_with_the_leg_and_a_refused_one_commits_none,
            every_ending_is_reported_once_to_the_outcome_hook,
            a_save_after_an_event_arrived_is_a_conflict,
            a_save_by_a_worker_without_the_lease_is_a_conflict,
            saving_or_reading_an_unknown_leg,
            overdue_open_and_scheduled_legs_expire_but_writing_legs_are_left,
            expiry_refuses_the_save_of_the_worker_holding_the_leg,
            many_overdue_legs_all_expire,
            the_ledger_reads_back_in_append_order,
            pending_decisions_are_found_for_their_leg_or_its_conversation,
            outcome_counts_count_finished_and_open_legs_per_connection,
            list_legs_filters_and_puts_the_newest_first,
            list_legs_narrows_by_queue_agent_code_conversation_and_time_and_pages_by_cursor,
            legs_since_walks_a_time_range_oldest_first_in_pages,
            the_catalog_cache_round_trips,
            an_idempotency_key_returns_the_first_response,
            the_catalog_audit_trail_reads_back_per_connection_in_order,
            every_outcome_change_writes_one_outbox_message_in_its_commit,
            outbox_deliveries_reach_a_sink_in_order_per_leg,
            dead_letters_and_delivered_messages_can_be_sent_again,
            the_review_queue_pages_waiting_legs_oldest_first_and_drops_resolved_ones,
            resolutions_are_announced_in_the_outbox_in_their_commit,
        );
    };
}

/// Runs every case in turn, each on a fresh store from `make`; durability is [`everything_survives_a_reopen`].
pub async fn run_all<S, F, Fut>(make: F)
where
    S: Store,
    F: Fn() -> Fut,
    Fut: Future<Output = S>,
{
    a_redelivered_event_is_a_duplicate_across_batches(make().await).await;
    a_duplicate_within_one_batch_is_a_duplicate(make().await).await;
    the_same_dedupe_key_on_another_connection_is_new(make().await).await;
    ingested_events_leave_the_leg_as_apply_event_does(make().await).await;
    events_in_one_batch_see_each_other(make().await).await;
    reordered_events_end_where_apply_event_says(make().await).await;
    an_empty_batch_is_fine(make().await).await;
    claims_take_the_earliest_deadline_first_and_legs_without_one_last(make().await).await;
    a_leg_is_not_claimed_before_its_not_before(make().await).await;
    claiming_sets_a_lease_but_keeps_the_version(make().await).await;
    concurrent_workers_never_get_the_same_leg(make().await).await;
    events_racing_with_workers_are_never_lost(make().await).await;
    an_expired_lease_lets_another_worker_claim(make().await).await;
    a_writing_leg_is_reclaimed_after_its_lease_expires(make().await).await;
    leases_left_by_a_crashed_run_are_cleared_at_startup(make().await).await;
    an_overdue_leg_with_a_write_intent_is_left_to_its_worker(make().await).await;
    a_save_returns_the_next_version_and_release_frees_the_leg(make().await).await;
    a_save_commits_its_ledger_lines_with_the_leg_and_a_refused_one_commits_none(make().await).await;
    every_ending_is_reported_once_to_the_outcome_hook(make().await).await;
    a_save_after_an_event_arrived_is_a_conflict(make().await).await;
    a_save_by_a_worker_without_the_lease_is_a_conflict(make().await).await;
    saving_or_reading_an_unknown_leg(make().await).await;
    overdue_open_and_scheduled_legs_expire_but_writing_legs_are_left(make().await).await;
    expiry_refuses_the_save_of_the_worker_holding_the_leg(make().await).await;
    many_overdue_legs_all_expire(make().await).await;
    the_ledger_reads_back_in_append_order(make().await).await;
    outcome_counts_count_finished_and_open_legs_per_connection(make().await).await;
    list_legs_filters_and_puts_the_newest_first(make().await).await;
    list_legs_narrows_by_queue_agent_code_conversation_and_time_and_pages_by_cursor(make().await).await;
    legs_since_walks_a_time_range_oldest_first_in_pages(make().await).await;
    the_catalog_cache_round_trips(make().await).await;
    an_idempotency_key_returns_the_first_response(make().await).await;
    the_catalog_audit_trail_reads_back_per_connection_in_order(make().await).await;
    every_outcome_change_writes_one_outbox_message_in_its_commit(make().await).await;
    outbox_deliveries_reach_a_sink_in_order_per_leg(make().await).await;
    dead_letters_and_delivered_messages_can_be_sent_again(make().await).await;
    the_review_queue_pages_waiting_legs_oldest_first_and_drops_resolved_ones(make().await).await;
    resolutions_are_announced_in_the_outbox_in_their_commit(make().await).await;
}
