//! The conformance suite against [`PostgresStore`], plus checks of several stores (replicas) sharing one database.
//!
//! Needs a server: `WRAPUP_TEST_POSTGRES_URL` names a database the tests may connect to and create databases from
//! (CI: `postgres://postgres@127.0.0.1:5432/test`). Each test gets a database of its own, created with a unique name
//! and dropped afterwards, so tests run in parallel. Without the variable every test says it is skipped and passes.

use crate::conformance::{self, closed, coded, ended, key, t};
use jiff::SignedDuration;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use wrapup_core::{Event, LegKey, Outcome};
use wrapup_store::{Migrations, PostgresStore, Store};

const VAR: &str = "WRAPUP_TEST_POSTGRES_URL";
const LEASE: SignedDuration = SignedDuration::from_secs(30);

/// The server URL, or `None` after saying the test is skipped.
fn server_url() -> Option<String> {
    match std::env::var(VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipped: {VAR} is not set (PostgreSQL store tests need a database)");
            None
        }
    }
}

/// `url` with its database (the path) replaced by `database`, query kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let (scheme, rest) = base.split_once("://").expect("a URL with a scheme");
    let authority = rest.split('/').next().unwrap_or(rest);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{scheme}://{authority}/{database}{query}")
}

/// A database made for one test, dropped (best effort) when this is dropped, whether the test passed or not.
struct TestDatabase {
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    async fn create() -> Option<TestDatabase> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let server = server_url()?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let name = format!("wrapup_test_{}_{}_{nanos}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = admin_connection(&server).await;
        admin.execute(format!("CREATE DATABASE \"{name}\"").as_str()).await.expect("CREATE DATABASE");
        admin.close().await.ok();
        let url = with_database(&server, &name);
        Some(TestDatabase { server, name, url })
    }

    async fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url).await.unwrap()
    }
}

async fn admin_connection(server: &str) -> sqlx::PgConnection {
    let options: PgConnectOptions = server.parse().unwrap_or_else(|e| panic!("{VAR} is not a PostgreSQL URL: {e}"));
    options.connect().await.unwrap_or_else(|e| panic!("cannot connect to {VAR}: {e}"))
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with a runtime of its own can.
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            runtime.block_on(async {
                let mut admin = admin_connection(&server).await;
                // FORCE: the store's pool may still be closing its connections in the background.
                admin.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str()).await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("could not drop the test database {}", self.name);
        }
    }
}

/// A fresh store on a database of its own, with the guard that drops the database.
async fn fresh() -> Option<(PostgresStore, TestDatabase)> {
    let db = TestDatabase::create().await?;
    Some((db.store().await, db))
}

conformance_tests!(maybe: fresh().await);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_reconnect() {
    let Some(db) = TestDatabase::create().await else { return };
    // Connecting again also runs the migrator again, which must find the schema current.
    conformance::everything_survives_a_reopen(|| db.store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_database_never_hand_out_the_same_leg() {
    let Some(db) = TestDatabase::create().await else { return };
    let stores = [Arc::new(db.store().await), Arc::new(db.store().await)];
    const LEGS: usize = 300;
    let events: Vec<Event> = (0..LEGS).map(|n| ended(&key(n), 0, Some(60))).collect();
    stores[0].ingest(&events, t(0)).await.unwrap();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = stores[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("replica-{}-worker-{w}", w % 2);
            let mut mine = Vec::new();
            loop {
                let claimed = store.claim_due(t(1), 5, &owner, LEASE).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|c| c.leg.key));
            }
        }));
    }
    let mut seen = BTreeSet::new();
    for task in tasks {
        for k in task.await.unwrap() {
            assert!(seen.insert(k.clone()), "leg {k} was handed to two workers");
        }
    }
    assert_eq!(seen.len(), LEGS, "every leg was claimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_creating_the_same_legs_at_once_lose_no_event() {
    let Some(db) = TestDatabase::create().await else { return };
    let (a, b) = (Arc::new(db.store().await), Arc::new(db.store().await));
    const LEGS: usize = 120;
    // Each new leg from both replicas at once: one sends its end, the other its code. (No event in both: a shared
    // dedupe key would make the second call wait for the first one's commit, so the leg would not be created by both
    // at once.)
    let mut new = 0;
    for n in 0..LEGS {
        let (end, code) = ([ended(&key(n), 0, Some(600))], [coded(&key(n), 5, Some("agent"), false)]);
        let (x, y) = tokio::join!(a.ingest(&end, t(6)), b.ingest(&code, t(6)));
        new += [x.unwrap(), y.unwrap()].concat().iter().filter(|r| **r == wrapup_store::Ingested::New).count();
    }
    assert_eq!(new, 2 * LEGS, "each event is new");
    for n in 0..LEGS {
        let leg = a.get_leg(&key(n)).await.unwrap().expect("the leg exists");
        assert_eq!(leg.version, 2, "leg {n}: both events applied");
        assert!(leg.leg.ended_seen, "leg {n} lost its end event");
        assert_eq!(leg.leg.outcome, Some(Outcome::AgentWon), "leg {n} lost its code");
        let events = b.ledger(&key(n)).await.unwrap().iter().filter(|l| l.kind == "event").count();
        assert_eq!(events, 2, "leg {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_sweeping_at_once_expire_each_leg_once() {
    let Some(db) = TestDatabase::create().await else { return };
    let (a, b) = (Arc::new(db.store().await), Arc::new(db.store().await));
    const LEGS: usize = 700;
    let events: Vec<Event> = (0..LEGS).map(|n| ended(&key(n), 0, Some(10))).collect();
    a.ingest(&events, t(0)).await.unwrap();
    // An event closing one leg races the sweeps too: it ends the leg itself, so no sweep may expire it again.
    let sweep = |store: Arc<PostgresStore>| tokio::spawn(async move { store.expire_overdue(t(11)).await.unwrap() });
    let (x, y) = (sweep(a.clone()), sweep(b.clone()));
    b.ingest(&[closed(&key(0), 11)], t(11)).await.unwrap();
    let (x, y) = (x.await.unwrap(), y.await.unwrap());
    let xs: BTreeSet<LegKey> = x.into_iter().collect();
    let ys: BTreeSet<LegKey> = y.into_iter().collect();
    assert!(xs.is_disjoint(&ys), "a leg was expired by both sweeps");
    // Whatever a sweep left (a row it waited for and found changed) the next sweep finishes.
    let rest: BTreeSet<LegKey> = a.expire_overdue(t(11)).await.unwrap().into_iter().collect();
    assert_eq!(xs.len() + ys.len() + rest.len() + usize::from(!xs.contains(&key(0)) && !ys.contains(&key(0))), LEGS);
    for n in 0..LEGS {
        let outcome_lines = a.ledger(&key(n)).await.unwrap().iter().filter(|l| l.kind == "outcome").count();
        assert_eq!(outcome_lines, 1, "leg {n} ended once");
    }
    assert_eq!(a.outcome_counts("prod").await.unwrap().get(&Some(Outcome::Expired)), Some(&(LEGS as u64)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_a_periodic_job_until_its_lease_runs_out() {
    let Some(db) = TestDatabase::create().await else { return };
    let (a, b) = (db.store().await, db.store().await);
    let lease = SignedDuration::from_secs(10);
    assert!(a.lead("reconcile:prod", "a", t(0), lease).await.unwrap(), "a free job is taken");
    assert!(!b.lead("reconcile:prod", "b", t(5), lease).await.unwrap(), "held by a until t(10)");
    assert!(b.lead("reconcile:other", "b", t(5), lease).await.unwrap(), "jobs are leased one by one");
    assert!(a.lead("reconcile:prod", "a", t(8), lease).await.unwrap(), "the holder renews, until t(18)");
    assert!(!b.lead("reconcile:prod", "b", t(15), lease).await.unwrap(), "the renewal counts");
    assert!(b.lead("reconcile:prod", "b", t(18), lease).await.unwrap(), "a lease that ran out is taken over");
    assert!(!a.lead("reconcile:prod", "a", t(19), lease).await.unwrap(), "and the old holder no longer leads");

    // Many replicas asking at the same moment: exactly one leads.
    let store = Arc::new(db.store().await);
    let asks = (0..12).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.lead("poll:cx", &format!("r{i}"), t(100), lease).await.unwrap() })
    });
    let mut leaders = 0;
    for ask in asks.collect::<Vec<_>>() {
        leaders += usize::from(ask.await.unwrap());
    }
    assert_eq!(leaders, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_reporting_at_once_share_a_limit_and_never_hold_more_than_it() {
    use wrapup_store::CredentialUsage;
    let Some(db) = TestDatabase::create().await else { return };
    let store = Arc::new(db.store().await);
    let lease = std::time::Duration::from_secs(30);
    let idle = [CredentialUsage { limit: 300, footprint: 0 }, CredentialUsage { limit: 60, footprint: 0 }];
    // Alone, a replica holds both whole limits.
    assert_eq!(store.share_budget("prod", "a", &idle, lease).await.unwrap(), Some(vec![300, 60]));
    // Two more join, everyone reporting at once, round after round: the slices never add up to more than a limit,
    // and once the first has shrunk (its idle slice is handed on at once) all three hold a third.
    for round in 0..4 {
        let reports = ["a", "b", "c"].map(|owner| {
            let store = store.clone();
            tokio::spawn(async move { store.share_budget("prod", owner, &idle, lease).await.unwrap().unwrap() })
        });
        let mut sums = [0, 0];
        for report in reports {
            let shares = report.await.unwrap();
            sums[0] += shares[0];
            sums[1] += shares[1];
        }
        assert!(sums[0] <= 300 && sums[1] <= 60, "round {round}: {sums:?}");
        if round == 3 {
            assert_eq!(sums, [300, 60], "an idle limit is handed on in full");
        }
    }
    // A replica whose requests still fill its slice keeps it reserved when it shrinks: a newcomer gets only the rest.
    let busy = [CredentialUsage { limit: 300, footprint: 100 }, CredentialUsage { limit: 60, footprint: 20 }];
    for owner in ["a", "b", "c"] {
        store.share_budget("prod", owner, &busy, lease).await.unwrap();
    }
    assert_eq!(store.share_budget("prod", "d", &idle, lease).await.unwrap(), Some(vec![0, 0]));
    // Other connections are apart.
    assert_eq!(store.share_budget("other", "d", &idle, lease).await.unwrap(), Some(vec![300, 60]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_copied_to_postgres_keeps_every_leg_ledger_line_and_key() {
    use wrapup_store::{copy_sqlite_to_postgres, LedgerEntry, LegFilter, Save, SqliteStore};
    let Some(db) = TestDatabase::create().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("wrapup.db")).await.unwrap();
    const LEGS: usize = 1_500; // more than one page of each table
    for n in 0..LEGS {
        let k = key(n);
        sqlite.ingest(&[ended(&k, 0, Some(600))], t(0)).await.unwrap();
    }
    // Some legs worked on: one finished with ledger lines, one left leased by the (stopped) process.
    let claimed = sqlite.claim_due(t(1), 2, "old-process", LEASE).await.unwrap();
    let mut done = claimed[0].leg.clone();
    done.finish(Outcome::Applied, None, t(3));
    let lines = [LedgerEntry { at: t(3), kind: "note".into(), detail: serde_json::json!({"why": "copied"}) }];
    let save = Save {
        leg: &done,
        version: claimed[0].version,
        owner: "old-process",
        release: true,
        lines: &lines,
        stored_outcome: None,
    };
    sqlite.save(save).await.unwrap();
    sqlite.put_catalog("prod", &wrapup_core::catalog::Catalog::default(), t(4)).await.unwrap();
    sqlite.idempotent("prod", "key-1", &serde_json::json!({"first": true})).await.unwrap();

    let target = db.store().await;
    let mut pages = 0;
    let report = copy_sqlite_to_postgres(&sqlite, &target, |_| pages += 1).await.unwrap();
    assert_eq!(report.rows("legs"), LEGS as u64);
    assert!(pages >= 3, "progress after each page ({pages})");
    let all = LegFilter { limit: Some(10_000), ..LegFilter::default() };
    assert_eq!(target.list_legs(&all).await.unwrap(), sqlite.list_legs(&all).await.unwrap());
    for n in [0, 1, 2, LEGS - 1] {
        assert_eq!(target.ledger(&key(n)).await.unwrap(), sqlite.ledger(&key(n)).await.unwrap(), "leg {n}");
    }
    assert_eq!(target.outcome_counts("prod").await.unwrap(), sqlite.outcome_counts("prod").await.unwrap());
    assert_eq!(target.get_catalog("prod").await.unwrap(), sqlite.get_catalog("prod").await.unwrap());
    let (stored, first) = target.idempotent("prod", "key-1", &serde_json::json!({"second": true})).await.unwrap();
    assert!(!stored && first == serde_json::json!({"first": true}));
    // The stopped process's lease is gone: the leg is claimable at once, by anyone.
    let open = target.claim_due(t(2), 10, "new-process", LEASE).await.unwrap();
    assert!(open.iter().any(|c| c.leg.key == claimed[1].leg.key), "the leased leg was not handed out");
    // New rows continue after the copied ones.
    target.ingest(&[ended(&key(LEGS), 5, Some(600))], t(5)).await.unwrap();
    assert_eq!(target.ledger(&key(LEGS)).await.unwrap().len(), 1);
    // A second copy into a database that holds data is refused, and changes nothing.
    let refused = copy_sqlite_to_postgres(&sqlite, &target, |_| {}).await.unwrap_err();
    assert!(refused.to_string().contains("already holds"), "{refused}");
    assert_eq!(target.list_legs(&all).await.unwrap().len(), LEGS + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_connected_without_migrating_refuses_an_old_schema_until_it_is_migrated() {
    let Some(db) = TestDatabase::create().await else { return };
    let Err(refused) = PostgresStore::connect_with(&db.url, Migrations::Check).await else {
        panic!("a fresh database has no schema to accept")
    };
    assert!(refused.to_string().contains("wrapup migrate"), "{refused}");
    let before = PostgresStore::migrate(&db.url).await.unwrap();
    assert!(before.applied.is_empty() && !before.pending.is_empty(), "{before:?}");
    let again = PostgresStore::migrate(&db.url).await.unwrap();
    assert!(again.pending.is_empty() && again.applied == before.pending, "{again:?}");
    let store = PostgresStore::connect_with(&db.url, Migrations::Check).await.unwrap();
    store.ingest(&[ended(&key(1), 0, None)], t(0)).await.unwrap();
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_lease_keeps_a_leg_from_other_replicas_and_one_not_renewed_runs_out() {
    let Some(db) = TestDatabase::create().await else { return };
    let (a, b) = (db.store().await, db.store().await);
    a.ingest(&[ended(&key(1), 0, Some(600)), ended(&key(2), 0, Some(600))], t(0)).await.unwrap();
    let claimed = a.claim_due(t(1), 2, "a", LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2, "both legs go to a until t(31)");
    assert_eq!(b.renew_leases("b", &[key(1)], t(60)).await.unwrap(), 0, "b holds nothing to renew");
    assert_eq!(a.renew_leases("a", &[key(1)], t(55)).await.unwrap(), 1, "a renews the one it still works on");
    let taken = b.claim_due(t(40), 5, "b", LEASE).await.unwrap();
    assert_eq!(taken.iter().map(|c| c.leg.key.clone()).collect::<Vec<_>>(), vec![key(2)], "only the lapsed one");
    assert_eq!(a.renew_leases("a", &[key(1), key(2)], t(70)).await.unwrap(), 1, "key(2) is b's now");
    assert!(b.claim_due(t(60), 5, "b", LEASE).await.unwrap().is_empty(), "key(1) renewed until t(70)");
    let after = b.claim_due(t(71), 5, "b", LEASE).await.unwrap();
    assert!(after.iter().any(|c| c.leg.key == key(1)), "once a's renewal ran out, the leg is taken over");
}

#[tokio::test]
async fn a_connection_error_does_not_show_the_password() {
    let Some(server) = server_url() else { return };
    // A database that does not exist: the server answers with an error (with trust auth the password is ignored).
    let url = with_database(&server, "wrapup_no_such_database");
    let (scheme, rest) = url.split_once("://").unwrap();
    let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
    let url = format!("{scheme}://wrapup:s3cret-Pa55word@{rest}");
    let e = PostgresStore::connect(&url).await.expect_err("no such database").to_string();
    assert!(e.contains("cannot connect"), "{e}");
    assert!(!e.contains("s3cret-Pa55word"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_database_never_hand_out_the_same_delivery() {
    let Some(db) = TestDatabase::create().await else { return };
    let stores = [Arc::new(db.store().await), Arc::new(db.store().await)];
    const LEGS: usize = 200;
    let events: Vec<Event> =
        (0..LEGS).flat_map(|n| [ended(&key(n), 0, Some(60)), coded(&key(n), 1, Some("agent"), false)]).collect();
    stores[0].ingest(&events, t(1)).await.unwrap();
    // Both replicas route the same messages at once: each (message, sink) gets one row.
    let route = |store: Arc<PostgresStore>| async move {
        let messages = store.outbox_unrouted(1000).await.unwrap();
        let routes: Vec<wrapup_store::Route> = messages
            .iter()
            .map(|m| wrapup_store::Route {
                seq: m.seq,
                deliveries: vec![wrapup_store::NewDelivery {
                    sink: "crm".into(),
                    body: m.id.clone(),
                    expires_at: t(999),
                }],
            })
            .collect();
        store.outbox_route(&routes, t(2)).await.unwrap();
    };
    tokio::join!(route(stores[0].clone()), route(stores[1].clone()));
    let mut tasks = Vec::new();
    for w in 0..8 {
        let store = stores[w % 2].clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("replica-{}-sender-{w}", w % 2);
            let mut mine = Vec::new();
            loop {
                let claimed = store.outbox_claim("crm", t(3), 5, &owner, LEASE).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|d| d.seq));
            }
        }));
    }
    let mut seen = BTreeSet::new();
    for task in tasks {
        for seq in task.await.unwrap() {
            assert!(seen.insert(seq), "delivery {seq} was handed to two senders");
        }
    }
    assert_eq!(seen.len(), LEGS, "every delivery was claimed once");
}
