//! The report's figures on a store built leg by leg, counted exactly.

use super::*;
use jiff::SignedDuration;
use std::collections::BTreeSet;
use wrapup_core::catalog::{Catalog, CodeEntry, QueueEntry};
use wrapup_core::lifecycle::{Decision, WriteIntent};
use wrapup_core::{Event, EventKind, LegFacts, LegKey, Timing};
use wrapup_store::{LedgerEntry, Save, SqliteStore};

const CONN: &str = "prod";
const TIMEOUT_CODE: &str = "c-timeout";

fn t(secs: i64) -> Timestamp {
    let base: Timestamp = "2026-03-01T12:00:00Z".parse().unwrap();
    base.checked_add(SignedDuration::from_secs(secs)).unwrap()
}

fn key(n: usize) -> LegKey {
    LegKey::new(CONN, format!("conv-{n}"), format!("part-{n}"))
}

fn event(key: &LegKey, what: &str, at: i64, kind: EventKind) -> Event {
    Event { leg: key.clone(), dedupe_key: format!("{key}/{what}/{at}"), occurred_at: t(at), correlation_id: None, kind }
}

fn ended(key: &LegKey, at: i64) -> Event {
    let facts = LegFacts {
        queue_id: Some("q1".into()),
        ended_at: Some(t(at)),
        acw_timeout_ms: Some(600_000),
        ..Default::default()
    };
    event(key, "end", at, EventKind::LegEnded { facts: Box::new(facts) })
}

fn coded(key: &LegKey, at: i64, code: &str, system: bool) -> Event {
    event(key, "acw", at, EventKind::CodeRecorded { code_id: Some(code.into()), notes: None, system })
}

fn catalog() -> Catalog {
    let code = |id: &str, name: &str| CodeEntry { id: id.into(), name: name.into() };
    Catalog {
        codes: vec![code("c-sale", "Sale"), code("c-no", "No sale"), code(TIMEOUT_CODE, "ININ-WRAP-UP-TIMEOUT")],
        queues: vec![QueueEntry {
            id: "q1".into(),
            name: "Sales".into(),
            code_ids: vec!["c-sale".into(), "c-no".into()],
            acw_timeout_ms: Some(600_000),
            acw_mode: None,
            acw: None,
        }],
    }
}

fn decision(rule: &str, code: &str, mode: Mode, at: i64) -> Decision {
    Decision {
        source: DecisionSource::Rule { index: 0, name: rule.into(), version: "v1".into() },
        code_name: code.into(),
        notes: None,
        timing: Timing::Immediate,
        mode,
        decided_at: t(at),
        fallback: None,
    }
}

/// Claims the leg `key` and saves it finished as `outcome`, with `decision`, our write accepted at `written`
/// (seconds), and `attempts` attempt lines in its ledger.
async fn finish(
    store: &SqliteStore,
    key: &LegKey,
    outcome: Outcome,
    decision: Decision,
    written: Option<(i64, &str)>,
    attempts: usize,
) {
    let claimed = store.claim_due(t(1_000), 100, "w", SignedDuration::from_secs(30)).await.unwrap();
    for other in claimed.iter().filter(|c| &c.leg.key != key) {
        store.release(&other.leg.key, "w").await.unwrap();
    }
    let c = claimed.into_iter().find(|c| &c.leg.key == key).expect("the leg is due");
    let mut leg = c.leg;
    leg.decision = Some(decision);
    if let Some((at, code)) = written {
        leg.intent = Some(WriteIntent { code_id: code.into(), code_name: "sale".into(), at: t(at) });
        leg.written_at = Some(t(at));
        leg.attempts = 1;
    }
    leg.finish(outcome, None, t(1_000));
    let line = LedgerEntry { at: t(1_000), kind: "attempt".into(), detail: serde_json::json!({"status": 200}) };
    let lines = vec![line; attempts];
    store
        .save(Save { leg: &leg, version: c.version, owner: "w", release: true, lines: &lines, stored_outcome: None })
        .await
        .unwrap();
}

fn spec() -> Vec<ConnectionSpec> {
    vec![ConnectionSpec {
        name: CONN.into(),
        platform: Platform::Genesys,
        system_codes: BTreeSet::from(["ININ-WRAP-UP-TIMEOUT".to_string()]),
    }]
}

/// Seven legs in the range: two applied, one coded by its agent first, two decided by a shadow rule (the agent
/// agreeing on one), one expired with the platform's timeout code, one still open; and one leg after the range.
async fn built_store() -> SqliteStore {
    let store = SqliteStore::open_in_memory().await.unwrap();
    store.put_catalog(CONN, &catalog(), t(0)).await.unwrap();
    let ends: Vec<Event> = (1..=7).map(|n| ended(&key(n), n as i64 * 10)).collect();
    store.ingest(&ends, t(100)).await.unwrap();
    store.ingest(&[ended(&key(8), 900)], t(900)).await.unwrap();

    let sale = |at| decision("sales", "Sale", Mode::Enforce, at);
    finish(&store, &key(1), Outcome::Applied, sale(10), Some((12, "c-sale")), 2).await;
    finish(&store, &key(2), Outcome::Applied, sale(20), Some((24, "c-sale")), 3).await;
    store.ingest(&[coded(&key(3), 31, "c-no", false)], t(101)).await.unwrap();
    // A shadow rule's code is compared with the code the agent ends the leg with, which comes later.
    let shadow = |at| decision("sales (shadow)", "sale", Mode::Shadow, at);
    finish(&store, &key(4), Outcome::Shadow, shadow(40), None, 0).await;
    finish(&store, &key(5), Outcome::Shadow, shadow(50), None, 0).await;
    store.ingest(&[coded(&key(4), 45, "c-no", false), coded(&key(5), 55, "c-sale", false)], t(102)).await.unwrap();
    let closed = event(&key(6), "closed", 66, EventKind::LegClosed);
    store.ingest(&[coded(&key(6), 65, TIMEOUT_CODE, true), closed], t(103)).await.unwrap();
    // Leg 7 stays open.
    store
}

fn sale() -> CodeRef {
    CodeRef { id: "c-sale".into(), name: "Sale".into() }
}

#[tokio::test]
async fn a_built_store_gives_exact_figures() {
    let store = built_store().await;
    let window = Window { from: Some(t(0)), to: Some(t(500)) };
    let report = build(&store, &spec(), window).await.unwrap();
    assert_eq!(report.from.as_deref(), Some("2026-03-01T12:00:00Z"));
    assert_eq!(report.connections.len(), 1);
    let c = &report.connections[0];
    assert_eq!((c.name.as_str(), c.platform.as_str(), c.legs), (CONN, "genesys", 7));
    let expected = Outcomes { applied: 2, agent_won: 1, shadow: 2, expired: 1, open: 1, ..Outcomes::default() };
    assert_eq!(c.outcomes, expected);
    assert_eq!(c.coverage, Coverage { legs: 6, with_business_code: 5, rate: Some(0.8333) });

    let sales = |legs| vec![QueueLegs { queue: "Sales".into(), legs }];
    let no_sale = CodeRef { id: "c-no".into(), name: "No sale".into() };
    let timeout = CodeRef { id: TIMEOUT_CODE.into(), name: "ININ-WRAP-UP-TIMEOUT".into() };
    let usage = vec![
        Usage { code: no_sale, by: By::Agent, legs: 2, queues: sales(2) },
        Usage { code: sale(), by: By::Wrapup, legs: 2, queues: sales(2) },
        Usage { code: sale(), by: By::Agent, legs: 1, queues: sales(1) },
        Usage { code: timeout, by: By::System, legs: 1, queues: sales(1) },
    ];
    assert_eq!(c.usage, usage);
    // Leg end → our code accepted: 2 s and 4 s.
    assert_eq!(c.latency, Latency { count: 2, p50_seconds: Some(4.0), p90_seconds: Some(4.0), p99_seconds: Some(4.0) });
    assert_eq!(c.calls, Calls { platform_calls: 5, applied: 2, per_applied_code: Some(2.5) });
    let agreement = vec![RuleAgreement {
        rule: "sales (shadow)".into(),
        legs: 2,
        agreed: 1,
        rate: Some(0.5),
        matrix: vec![
            Cell { decided: "Sale".into(), agent: "No sale".into(), legs: 1 },
            Cell { decided: "Sale".into(), agent: "Sale".into(), legs: 1 },
        ],
    }];
    assert_eq!(c.shadow_agreement, agreement);
    assert_eq!(c.platform_check, None);
}

#[tokio::test]
async fn the_range_and_the_connections_select_the_legs() {
    let store = built_store().await;
    let all = build(&store, &spec(), Window::default()).await.unwrap();
    assert_eq!((all.from.as_deref(), all.to.as_deref(), all.connections[0].legs), (None, None, 8));
    let late = build(&store, &spec(), Window { from: Some(t(500)), to: None }).await.unwrap();
    assert_eq!(late.connections[0].legs, 1);
    assert_eq!(late.connections[0].outcomes.open, 1);
    let none = build(&store, &[], Window::default()).await.unwrap();
    assert!(none.connections.is_empty());
}

#[tokio::test]
async fn the_platform_check_names_each_code_that_differs_and_why() {
    let store = built_store().await;
    let report = build(&store, &spec(), Window::default()).await.unwrap();
    let view = ConnectionView { catalog: Some(catalog()), system_codes: BTreeSet::new() };
    let c = &report.connections[0];
    let same: BTreeMap<String, u64> =
        [("c-no", 2), ("c-sale", 3), (TIMEOUT_CODE, 1)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let check = PlatformCheck::compare(c, &same, &view, "a/b".into());
    assert!(check.matches, "{check:?}");
    assert_eq!(check.codes.len(), 3);

    let differ: BTreeMap<String, u64> =
        [("c-no", 2), ("c-sale", 4), ("c-other", 1)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let check = PlatformCheck::compare(c, &differ, &view, "a/b".into());
    assert!(!check.matches);
    let why: Vec<(&str, u64, u64, bool)> =
        check.codes.iter().map(|c| (c.code.id.as_str(), c.wrapup_legs, c.platform_legs, c.why.is_some())).collect();
    assert_eq!(
        why,
        vec![("c-no", 2, 2, false), ("c-other", 0, 1, true), ("c-sale", 3, 4, true), (TIMEOUT_CODE, 1, 0, true)]
    );
    assert!(check.codes[2].why.as_deref().unwrap().starts_with("the platform counts 1 more"));
    assert!(check.codes[3].why.as_deref().unwrap().starts_with("wrapup counts 1 more"));
}

#[test]
fn a_range_is_since_or_from_and_to() {
    let now: Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
    let w = Window::parse(Some("7d"), None, None, now).unwrap();
    assert_eq!((w.from.map(|t| t.to_string()), w.to), (Some("2026-11-30T12:00:00Z".into()), None));
    let w = Window::parse(None, Some("2026-12-01T00:00:00Z"), Some("2026-12-02T00:00:00Z"), now).unwrap();
    assert!(w.contains("2026-12-01T00:00:00Z".parse().unwrap()));
    assert!(!w.contains("2026-12-02T00:00:00Z".parse().unwrap()), "the end is exclusive");
    assert!(Window::parse(Some("7d"), Some("2026-12-01T00:00:00Z"), None, now).is_err());
    assert!(Window::parse(None, Some("2026-12-02T00:00:00Z"), Some("2026-12-01T00:00:00Z"), now).is_err());
    assert!(Window::parse(Some("7 days"), None, None, now).is_err());
    assert!(Window::parse(None, None, Some("yesterday"), now).is_err());
}
