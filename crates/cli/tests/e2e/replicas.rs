//! Three `wrapup serve` replicas on one PostgreSQL database, behind a round-robin load balancer, under steady
//! Genesys traffic: replicas are SIGKILLed (and abort at crash points) at random and restarted, at least 30 times in
//! all, while the sandbox delivers every event through the balancer to whichever replica is alive. Afterwards the
//! sandbox's truth must show no second write, no overwrite, no write outside a window and every closed window
//! with an outcome, each explained by its ledger.
//!
//! Needs a server: `WRAPUP_TEST_POSTGRES_URL` (CI: `postgres://postgres@127.0.0.1:5432/test`) names a database to
//! create the run's own database from; without it the test says it is skipped.

use crate::harness::{self, free_port, Side};
use crate::restart::{self, assert_nothing_lost_or_doubled, KillRun, CRASH_POINTS};
use rand::{Rng, SeedableRng};
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wrapup_store::PostgresStore;

const VAR: &str = "WRAPUP_TEST_POSTGRES_URL";
const REPLICAS: usize = 3;

/// A round-robin TCP load balancer: each connection goes to the next replica that accepts one, as a balancer with
/// health checks would send it; a connection to a replica that dies breaks, and its sender retries.
async fn balance(listener: tokio::net::TcpListener, ports: Vec<u16>) {
    let next = Arc::new(AtomicUsize::new(0));
    while let Ok((mut inbound, _)) = listener.accept().await {
        let (ports, next) = (ports.clone(), next.clone());
        tokio::spawn(async move {
            let first = next.fetch_add(1, Ordering::Relaxed);
            for i in 0..ports.len() {
                let port = ports[(first + i) % ports.len()];
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
        });
    }
}

/// One replica: its own port and configuration file, the shared database.
struct Replica {
    config: std::path::PathBuf,
    ready: String,
    child: Option<Child>,
}

impl Replica {
    async fn start(&mut self, http: &reqwest::Client, crash_points: Option<&str>) -> bool {
        let mut child = restart::serve(&self.config, crash_points);
        let up = harness::until_up(http, &self.ready, &mut child).await;
        self.child = Some(child);
        up
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the replica died by itself (a crash point).
    fn crashed(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }
}

/// Runs Genesys traffic through the balancer while killing replicas `kills` times in all (SIGKILLs from outside
/// plus crash points), then lets three uninterrupted replicas settle. `None` without a database.
async fn replica_run(kills: u32, seed: u64) -> Option<ReplicaRun> {
    let Some(server) = std::env::var(VAR).ok().filter(|u| !u.is_empty()) else {
        eprintln!("skipped: {VAR} is not set (the replica test needs a PostgreSQL database)");
        return None;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let db_name = format!("wrapup_replicas_{}_{nanos}", std::process::id());
    let db_url = PostgresStore::create_database(&server, &db_name).await.expect("the run's database is created");
    let key = "replica-test-intake-key";
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb_port = lb.local_addr().unwrap().port();
    let mut cfg = restart::busy_sandbox(Side::Genesys, seed);
    cfg.event_targets.push(restart::genesys_intake(lb_port, key));
    let sb = harness::system_sandbox(cfg).await;
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = Vec::new();
    let mut ports = Vec::new();
    for i in 0..REPLICAS {
        let port = free_port();
        let config = dir.path().join(format!("replica-{i}")).join("wrapup.toml");
        std::fs::create_dir_all(config.parent().unwrap()).unwrap();
        // A reconcile pass every second, so that the run holds enough periods to count them.
        let text = restart::config_text(Side::Genesys, &sb, port, key)
            .replace("[connections.intake]", "reconcile_every_secs = 1\n[connections.intake]");
        assert!(text.contains("reconcile_every_secs = 1"), "the connection's table is where expected");
        std::fs::write(&config, format!("{text}\n[store]\nurl = \"{db_url}\"\n")).unwrap();
        replicas.push(Replica { config, ready: format!("http://127.0.0.1:{port}/ready"), child: None });
        ports.push(port);
    }
    let balancer = tokio::spawn(balance(lb, ports));
    let began = Instant::now();
    let http = reqwest::Client::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for r in &mut replicas {
        while !r.start(&http, Some(CRASH_POINTS)).await {}
    }

    let (mut external, mut self_crashes) = (0u32, 0u32);
    sb.start_traffic();
    while external + self_crashes < kills {
        // Each life lasts until the replicas together took a few more events: kills land while work goes on.
        let more = rng.gen_range(1..=6);
        let delivered = harness::report_of(Side::Genesys, &sb).events.delivered;
        until("the replicas take more events", || {
            harness::report_of(Side::Genesys, &sb).events.delivered >= delivered + more
        })
        .await;
        for r in &mut replicas {
            if r.crashed() {
                self_crashes += 1;
                r.kill();
                while !r.start(&http, Some(CRASH_POINTS)).await {
                    self_crashes += 1;
                }
            }
        }
        let victim = &mut replicas[rng.gen_range(0..REPLICAS)];
        victim.kill();
        external += 1;
        while !victim.start(&http, Some(CRASH_POINTS)).await {
            self_crashes += 1;
        }
    }
    sb.stop_traffic();

    // Three uninterrupted replicas settle everything; the balancer spreads the admin reads over them too.
    for r in &mut replicas {
        r.kill();
        assert!(r.start(&http, None).await, "a replica without crash points starts");
    }
    let started = Instant::now();
    let settled = restart::settle(Side::Genesys, &sb, &http, &format!("http://127.0.0.1:{lb_port}")).await;
    eprintln!("replica run settled in {:.1} s", started.elapsed().as_secs_f64());
    // Calm: once the last killed holder's lease ran out (three periods) a pass runs again; from then on, one of the
    // three replicas runs it each period. Timed over CALM_PASSES passes.
    let passes_now = || reconcile_queries(&harness::report_of(Side::Genesys, &sb));
    let first = passes_now() + 1;
    until("a reconcile pass runs after the restarts", || passes_now() >= first).await;
    let calm_from = Instant::now();
    let last = passes_now() + CALM_PASSES;
    until("more reconcile passes run", || passes_now() >= last).await;
    let calm_secs = calm_from.elapsed().as_secs_f64();
    for r in &mut replicas {
        r.kill();
    }
    let seconds = began.elapsed().as_secs_f64();
    balancer.abort();
    let report = harness::report_of(Side::Genesys, &sb);
    let passes = reconcile_queries(&report);
    sb.shutdown().await;
    PostgresStore::drop_database(&server, &db_name).await.ok();
    Some(ReplicaRun {
        calm_secs,
        seconds,
        reconcile_queries: passes,
        run: KillRun {
            side: Side::Genesys,
            kills: external,
            self_crashes,
            crash_points: Default::default(),
            legs: settled.legs.len(),
            applied: settled.legs.iter().filter(|l| l["outcome"] == "applied").count(),
            missing: settled.missing,
            unexplained: settled.unexplained,
            report,
            cx_writes: None,
        },
    })
}

/// How many reconcile passes (one a second when one replica runs them) are timed at the end, with three
/// uninterrupted replicas.
const CALM_PASSES: u64 = 5;

/// Polls `done` (a few times a second) until it holds; panics after a minute.
async fn until(what: &str, done: impl Fn() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < Duration::from_secs(60), "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reconcile queries the sandbox received (one per pass here: a pass's conversations fit one page).
fn reconcile_queries(report: &wrapup_sandbox::Report) -> u64 {
    report
        .api
        .by_endpoint
        .iter()
        .filter(|(k, _)| k.contains("/analytics/conversations/details/query"))
        .flat_map(|(_, by_status)| by_status.values())
        .sum()
}

struct ReplicaRun {
    run: KillRun,
    /// From the replicas' first start to the last one's end.
    seconds: f64,
    /// Reconcile passes over the whole run.
    reconcile_queries: u64,
    /// How long three uninterrupted replicas took for [`CALM_PASSES`] reconcile passes.
    calm_secs: f64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_database_killed_thirty_times_never_write_a_leg_twice() {
    let Some(ReplicaRun { run, seconds, reconcile_queries, calm_secs }) = replica_run(30, 11).await else { return };
    eprintln!(
        "replicas: {} SIGKILLs + {} crash-point aborts in {seconds:.1} s; {} legs, {} applied; {} events delivered; \
         {reconcile_queries} reconcile passes in all, {CALM_PASSES} in {calm_secs:.1} s of calm",
        run.kills, run.self_crashes, run.legs, run.applied, run.report.events.delivered,
    );
    assert_nothing_lost_or_doubled(&run);
    assert!(run.applied >= 10, "work went on across the kills: {} applied", run.applied);
    // One replica at a time runs the periodic reconcile pass (every second here): three replicas each running it,
    // plus a pass at every restart, would make about three times as many.
    let periods = seconds.ceil() as u64;
    assert!(
        reconcile_queries <= periods + 2,
        "{reconcile_queries} reconcile passes in {seconds:.1} s of 1 s periods: more than one replica ran them"
    );
    // A period is a second plus the pass itself; three replicas each running the job would fit about three passes
    // a second.
    assert!(
        calm_secs >= CALM_PASSES as f64 * 0.8,
        "{CALM_PASSES} reconcile passes of 1 s periods took {calm_secs:.1} s with three replicas up: more than one ran them"
    );
}
