//! The conformance suite against [`SqliteStore`], in memory and on files, plus SQLite-specific checks.

use crate::conformance::{self, ended, key, t};
use jiff::SignedDuration;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use wrapup_core::Event;
use wrapup_store::{Ingested, Migrations, SqliteStore, Store};

async fn in_memory() -> SqliteStore {
    SqliteStore::open_in_memory().await.unwrap()
}

conformance_tests!(in_memory().await);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_conformance_suite_passes_on_file_backed_stores() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        let path = dir.path().join(format!("case-{}", n.fetch_add(1, Ordering::Relaxed))).join("wrapup.db");
        async move { SqliteStore::open(&path).await.unwrap() }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_backed_store_keeps_everything_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("nested/dir/wrapup.db");
    conformance::everything_survives_a_reopen(|| {
        let path = path.clone();
        async move { SqliteStore::open(&path).await.unwrap() }
    })
    .await;
}

#[tokio::test]
async fn a_file_backed_store_writes_ahead() {
    // WAL is a property of the file, so a fresh connection sees it. (`synchronous = FULL` is per connection and set
    // in `SqliteStore::open`.)
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrapup.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let mut conn =
        <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut conn).await.unwrap();
    assert_eq!(mode, "wal");
    store.close().await;
}

#[tokio::test]
async fn reopening_an_existing_database_does_not_rerun_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrapup.db");
    let store = SqliteStore::open(&path).await.unwrap();
    store.ingest(&[ended(&key(1), 0, None)], t(0)).await.unwrap();
    store.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(store.get_leg(&key(1)).await.unwrap().is_some());
    store.close().await;
}

#[tokio::test]
async fn a_store_opened_without_migrating_refuses_an_old_schema_until_it_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrapup.db");
    let Err(refused) = SqliteStore::open_with(&path, Migrations::Check).await else {
        panic!("a fresh file has no schema to accept")
    };
    assert!(refused.to_string().contains("wrapup migrate"), "{refused}");
    let before = SqliteStore::migrate(&path).await.unwrap();
    assert!(before.applied.is_empty() && !before.pending.is_empty(), "{before:?}");
    let again = SqliteStore::migrate(&path).await.unwrap();
    assert!(again.pending.is_empty() && again.applied == before.pending, "{again:?}");
    let store = SqliteStore::open_with(&path, Migrations::Check).await.unwrap();
    store.ingest(&[ended(&key(1), 0, None)], t(0)).await.unwrap();
    store.close().await;
}

/// Intake throughput on a file-backed store, batches of 500 durable commits. A measurement, not a pass/fail check:
/// `cargo test --release -p wrapup-store -- --ignored --nocapture ingest_throughput`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ingest_throughput() {
    const LEGS: usize = 50_000;
    const BATCH: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db")).await.unwrap();
    // Each leg: its end event, then its code event (a new leg, then an update of an existing one).
    let ends: Vec<Event> = (0..LEGS).map(|n| ended(&key(n), 0, Some(60))).collect();
    let codes: Vec<Event> = (0..LEGS).map(|n| conformance::coded(&key(n), 10, Some("c1"), false)).collect();
    for (what, events) in [("new legs", &ends), ("existing legs", &codes)] {
        let started = Instant::now();
        for batch in events.chunks(BATCH) {
            let results = store.ingest(batch, t(1)).await.unwrap();
            assert!(results.iter().all(|r| *r == Ingested::New));
        }
        let elapsed = started.elapsed();
        eprintln!(
            "ingest ({what}): {} events in batches of {BATCH} in {elapsed:.2?}: {:.0} events/s",
            events.len(),
            events.len() as f64 / elapsed.as_secs_f64()
        );
    }
    store.close().await;
}

/// Claim latency with many pending legs of which few are due. A measurement:
/// `cargo test --release -p wrapup-store -- --ignored --nocapture claim_latency`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn claim_latency_with_many_pending_legs() {
    const LEGS: usize = 200_000;
    const BATCH: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("bench.db")).await.unwrap();
    // Batch i arrives at t(i): its legs are due from then on; deadlines are spread over 15 minutes.
    let events: Vec<Event> = (0..LEGS).map(|n| ended(&key(n), 0, Some(30 + (n as u64 * 7) % 900))).collect();
    for (i, batch) in events.chunks(BATCH).enumerate() {
        store.ingest(batch, t(i as i64)).await.unwrap();
    }
    let started = Instant::now();
    let mut claimed = 0;
    for _ in 0..20 {
        claimed += store.claim_due(t(10), 50, "w", SignedDuration::from_secs(30)).await.unwrap().len();
    }
    let claim = started.elapsed() / 20;
    let started = Instant::now();
    let due = store.next_due().await.unwrap();
    let next_due = started.elapsed();
    eprintln!(
        "{LEGS} pending legs, {} due: claim_due(50) {claim:.2?} per call ({claimed} claimed), next_due {next_due:.2?} \
         ({due:?})",
        11 * BATCH
    );
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_share_commits_and_each_gets_its_own_answer() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("wrapup.db")).await.unwrap());
    const LEGS: usize = 200;
    let ends: Vec<Event> = (0..LEGS).map(|n| ended(&key(n), 0, Some(600))).collect();
    store.ingest(&ends, t(0)).await.unwrap();
    let lease = SignedDuration::from_secs(30);
    let claimed = store.claim_due(t(1), LEGS as u32, "w", lease).await.unwrap();
    assert_eq!(claimed.len(), LEGS);
    let before = store.write_stats();
    // At once: a save per leg (every tenth with a stale version, so refused), a ledger line per leg, and two intake
    // calls that share one dedupe key (stored once).
    let mut tasks = Vec::new();
    for (n, c) in claimed.into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let version = if n % 10 == 0 { c.version - 1 } else { c.version };
            let saved = store.save_leg(&c.leg, version, "w", true).await;
            let entry = wrapup_store::LedgerEntry { at: t(2), kind: "note".into(), detail: serde_json::json!(n) };
            store.append_ledger(&c.leg.key, &entry).await.unwrap();
            (n, saved)
        }));
    }
    let code = [conformance::coded(&key(LEGS), 1, Some("x"), false)];
    let (a, b) = tokio::join!(store.ingest(&code, t(1)), store.ingest(&code, t(1)));
    let mut new = 0;
    for r in a.unwrap().into_iter().chain(b.unwrap()) {
        new += usize::from(r == Ingested::New);
    }
    assert_eq!(new, 1, "the same event in two concurrent calls is stored once");
    for task in tasks {
        let (n, saved) = task.await.unwrap();
        match saved {
            Ok(_) => assert!(n % 10 != 0, "leg {n}: a stale version was saved"),
            Err(wrapup_store::StoreError::Conflict(_)) => assert!(n % 10 == 0, "leg {n}: a good save was refused"),
            Err(e) => panic!("leg {n}: {e}"),
        }
        let ledger = store.ledger(&key(n)).await.unwrap();
        assert_eq!(ledger.last().map(|e| e.detail.clone()), Some(serde_json::json!(n)));
    }
    let after = store.write_stats();
    let operations = after.operations - before.operations;
    let commits = after.commits - before.commits;
    assert_eq!(operations, 2 * LEGS as u64 + 2);
    assert!(commits < operations, "{commits} commits for {operations} operations: nothing was shared");
}
