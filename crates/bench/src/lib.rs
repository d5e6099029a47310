//! `wrapup bench`: the sandbox and the service in this process, driven by a load, judged by the sandbox's ground
//! truth and the service's own counters. One module per scenario (issue 6):
//!
//! - [`efficiency`]: steady load well under the budget, measured after a warm-up; calls per applied code and
//!   leg-end → write latency. With `--platform cxone`, the same on the CXone business unit ([`cxone`]).
//! - [`saturation`]: about three times the load the budget allows; utilisation of the budget, share of 429s, and
//!   whether the legs coded were the ones with the earliest deadlines, under each way the sandbox can count its
//!   per-minute limit (`--window`), on Genesys or CXone (`--platform`).
//! - [`pooled`]: the saturation load on one org with one, then two OAuth clients; the throughput ratio.
//! - [`ingest`]: events/s the intake acknowledges durably, and the ack latency at a fixed rate, from a load
//!   generator on loopback; SQLite's own commit rate on the same disk as the reference.
//! - [`lookup`]: the latency of the lookup for platform flows (a rule decision) at a fixed rate, on loopback.
//! - [`memory`]: resident memory idle and with a large backlog of pending legs.
//! - [`naive`]: what a user would otherwise write (on each event: read the queue's codes, read the conversation,
//!   write) in the same sandbox, for comparison with `efficiency`.
//! - [`catalog`]: a catalog promotion (export, plan, apply) between two orgs of 300 queues and 200 codes, through
//!   the request budget; wall time, calls per change, 429 share, and the calls Terraform would need at least.
//!
//! Every scenario returns a [`Report`]: a flat JSON object with the named fields (`--json`) and a human table.
//! Numbers are measured, never assumed; the goals are printed next to them, and a missed goal is reported as such.

pub mod catalog;
pub mod cxone;
pub mod efficiency;
pub mod ingest;
pub mod lookup;
pub mod memory;
pub mod naive;
pub mod outbox;

pub mod pooled;
pub mod saturation;

use serde_json::{Map, Value};
use std::time::Duration;
use wrapup_demo::{DemoEnv, EnvOptions};
use wrapup_sandbox::{AcwMode, AgentBehaviour, CenterConfig, Dist, QueueConfig, SandboxConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Efficiency,
    Saturation,
    Pooled,
    Ingest,
    Lookup,
    Memory,
    Naive,
    Catalog,
    Outbox,
}

/// `--platform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchPlatform {
    Genesys,
    Cxone,
}

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Which scenario to run.
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Wall seconds of load (per phase, for scenarios with several phases). Default per scenario.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Offered load: agent legs per wall second (efficiency, naive; saturation and pooled derive theirs from the
    /// budget), or events per second for the ingest latency phase.
    #[arg(long)]
    pub rate: Option<f64>,
    /// The platform's limit and the service's budget, requests per minute per OAuth client (saturation, pooled,
    /// memory, catalog). Genesys' default is 300.
    #[arg(long, default_value_t = 300)]
    pub rate_limit: u32,
    /// Pending legs for the memory scenario.
    #[arg(long, default_value_t = 1_000_000)]
    pub legs: usize,
    /// Concurrent connections of the ingest load generator.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Events per intake request in the ingest scenario (EventBridge API destinations send one).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Which platform of the sandbox the service codes (efficiency, saturation), or the catalog is promoted on
    /// (catalog): the Genesys org or the CXone business unit.
    #[arg(long, value_enum, default_value_t = BenchPlatform::Genesys)]
    pub platform: BenchPlatform,
    /// How the sandbox counts its per-minute limit (saturation, pooled, catalog): a fixed window, a sliding window or a token
    /// bucket. The service is not told which.
    #[arg(long, value_enum, default_value_t = wrapup_sandbox::RateWindow::Fixed)]
    pub window: wrapup_sandbox::RateWindow,
    /// Seconds of traffic before the measured window (efficiency) [default: 12, see `bench::efficiency`].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Seed of the simulated center.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Wall milliseconds between reconciler passes. The default is the configuration's (a minute), so that calls
    /// per code are those of a deployment; the demo sweeps every 500 ms.
    #[arg(long, default_value_t = 60_000)]
    pub reconcile_every_ms: u64,
    /// Keep the service's store (SQLite, with every leg's ledger) in this directory instead of a temporary one, to
    /// look at how the run's legs ended afterwards (`sqlite3 DIR/wrapup.db`, or `wrapup serve` on it). Scenarios that
    /// start several services write the last one's.
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// `ingest`, `saturation`: keep the service's state in PostgreSQL instead of SQLite. The URL names a server and a
    /// database to connect to (`postgres://postgres@127.0.0.1:5432/postgres`, no password); the run creates a database
    /// of its own there and drops it afterwards.
    #[arg(long)]
    pub store: Option<String>,
    /// With `--store`: this many services on the one database. `ingest` spreads its load over them and runs the
    /// throughput phase against one of them first, then against all (`ratio_to_one_replica`); `saturation` has them
    /// share the one budget of the org's OAuth client.
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
}

impl BenchArgs {
    fn duration_or(&self, default: u64) -> Duration {
        Duration::from_secs(self.duration.unwrap_or(default).clamp(1, 3600))
    }
}

/// One scenario's result: named fields (flat or nested JSON) and the rows of the human table.
pub struct Report {
    pub scenario: &'static str,
    pub fields: Map<String, Value>,
    pub rows: Vec<(String, String)>,
}

impl Report {
    fn new(scenario: &'static str) -> Self {
        Self { scenario, fields: Map::new(), rows: Vec::new() }
    }

    /// A field for the JSON object.
    fn field(&mut self, name: &str, value: impl Into<Value>) {
        self.fields.insert(name.to_string(), value.into());
    }

    /// A row of the table.
    fn row(&mut self, label: impl Into<String>, value: impl std::fmt::Display) {
        self.rows.push((label.into(), value.to_string()));
    }

    pub fn to_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("scenario".into(), self.scenario.into());
        obj.extend(self.fields.clone());
        Value::Object(obj)
    }

    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = format!("bench {}\n", self.scenario);
        for (k, v) in &self.rows {
            out.push_str(&format!("  {k:<width$}  {v}\n"));
        }
        out
    }
}

/// Runs one scenario.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    RECONCILE_EVERY_MS.store(args.reconcile_every_ms, std::sync::atomic::Ordering::Relaxed);
    match args.scenario {
        Scenario::Efficiency => efficiency::run(args).await,
        Scenario::Saturation => saturation::run(args).await,
        Scenario::Pooled => pooled::run(args).await,
        Scenario::Ingest => ingest::run(args).await,
        Scenario::Lookup => lookup::run(args).await,
        Scenario::Memory => memory::run(args).await,
        Scenario::Naive => naive::run(args).await,
        Scenario::Catalog => catalog::run(args).await,
        Scenario::Outbox => outbox::run(args).await,
    }
}

/// Agents who never code by themselves: every leg waits for us (or the platform's timeout).
pub fn silent_agents() -> AgentBehaviour {
    AgentBehaviour {
        provisional_during: 0.0,
        at_disconnect: 0.0,
        late: 0.0,
        change_after_api: 0.0,
        requests_acw: 1.0,
        ..AgentBehaviour::default()
    }
}

/// A queue with the two codes every bench rule uses.
pub fn queue(name: &str, mode: AcwMode, timeout_ms: Option<u64>) -> QueueConfig {
    QueueConfig {
        name: name.into(),
        wrapup_prompt: mode,
        timeout_ms,
        codes: vec!["Resolved".into(), "Other".into()],
        weight: 1.0,
    }
}

/// A center of short interactions (seconds of talk, no hold, transfer or consult), so that a few hundred agents
/// produce tens of legs per second at speed 1.
pub fn short_center(queues: Vec<QueueConfig>, agents: usize, legs_per_sec: f64, agent: AgentBehaviour) -> CenterConfig {
    CenterConfig {
        queues,
        unassigned_codes: Vec::new(),
        agents,
        queues_per_agent: usize::MAX,
        arrival_rate_per_sec: legs_per_sec,
        alert_time: Dist::new(0.2, 0.5, 2.0),
        talk_time: Dist::new(1.0, 3.0, 10.0),
        hold_probability: 0.0,
        transfer_probability: 0.0,
        consult_probability: 0.0,
        agent,
        ..CenterConfig::default()
    }
}

/// The sandbox with a center and a rate limit; calm, no preload, clock speed 1 (latencies are wall time).
pub fn sandbox(center: CenterConfig, rate_limit: u32, clients: usize, seed: u64) -> SandboxConfig {
    SandboxConfig { seed, center, rate_limit_per_minute: rate_limit, clients, ..SandboxConfig::default() }
}

/// A sandbox whose CXone business unit runs `center` (its Genesys org idles), calm, seeded with `seed`.
pub fn cxone_sandbox(center: wrapup_sandbox::cxone::CxoneCenter, seed: u64) -> SandboxConfig {
    let idle = short_center(vec![queue("Idle", AcwMode::Mandatory, None)], 1, 0.0, silent_agents());
    let mut cfg = sandbox(idle, 300, 1, seed);
    cfg.cxone.center = center;
    cfg
}

/// Starts sandbox + service with [`RESOLVE_ALL`], clock speed 1, the CXone connection detecting ACW by polling every
/// `poll_ms` wall milliseconds within a budget of `requests_per_minute`.
pub async fn start_cxone(
    sandbox: SandboxConfig,
    poll_ms: u64,
    requests_per_minute: u32,
    args: &BenchArgs,
) -> anyhow::Result<DemoEnv> {
    start_with(EnvOptions {
        sandbox,
        rules: RESOLVE_ALL.to_string(),
        speed: 1.0,
        requests_per_minute: 300,
        data_dir: args.data_dir.clone(),
        cxone: Some(wrapup_demo::CxoneOptions {
            acw_detection: wrapup_demo::CxoneDetection::Polling,
            poll_interval_ms: poll_ms,
            requests_per_minute,
        }),
        store: None,
        lookup_fallback: None,
    })
    .await
}

/// Runs the sandbox's traffic for `warmup`, then for `measured`, stops it and lets the service settle (at most
/// 10 s); returns the measured window's start and end on the run's clock.
pub async fn measure(
    env: &DemoEnv,
    warmup: Duration,
    measured: Duration,
    label: &str,
    quiet: bool,
) -> anyhow::Result<(jiff::Timestamp, jiff::Timestamp)> {
    env.sandbox.start_traffic();
    run_for(warmup, &format!("{label}: warm-up"), quiet).await;
    let started_at = env.clock.now();
    run_for(measured, label, quiet).await;
    env.sandbox.stop_traffic();
    let stopped_at = env.clock.now();
    env.settle(Duration::from_secs(10)).await?;
    Ok((started_at, stopped_at))
}

/// `immediate` rule applying "Resolved" to every leg.
pub const RESOLVE_ALL: &str = "[[rules]]\nname = \"bench\"\ncode = \"Resolved\"\ntiming = \"immediate\"\n";

/// The reconciler's pace in bench runs (`--reconcile-every-ms`), wall milliseconds.
static RECONCILE_EVERY_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(60_000);

/// Starts sandbox + service with `opts` and the run's reconciler pace.
pub async fn start_with(opts: EnvOptions) -> anyhow::Result<DemoEnv> {
    let every = Duration::from_millis(RECONCILE_EVERY_MS.load(std::sync::atomic::Ordering::Relaxed));
    DemoEnv::start_with(opts, wrapup_demo::IntakeMode::EventBridge, every).await
}

/// Starts sandbox + service at speed 1 with the service's budget equal to the platform's limit.
pub async fn start_env(sandbox: SandboxConfig, rules: &str, args: &BenchArgs) -> anyhow::Result<DemoEnv> {
    start_env_on(sandbox, rules, args, None).await
}

/// [`start_env`] on the PostgreSQL database at `store`, or on SQLite.
pub async fn start_env_on(
    sandbox: SandboxConfig,
    rules: &str,
    args: &BenchArgs,
    store: Option<&BenchDatabase>,
) -> anyhow::Result<DemoEnv> {
    let rpm = sandbox.rate_limit_per_minute;
    start_with(EnvOptions {
        sandbox,
        rules: rules.to_string(),
        speed: 1.0,
        requests_per_minute: rpm,
        data_dir: args.data_dir.clone(),
        cxone: None,
        store: store.map(|d| d.url.clone()),
        lookup_fallback: None,
    })
    .await
}

/// A database of the run's own on the PostgreSQL server `--store` names, dropped by [`BenchDatabase::drop`].
pub struct BenchDatabase {
    server: String,
    name: String,
    pub url: String,
}

impl BenchDatabase {
    /// Creates the run's database when `--store` names a server.
    pub async fn create(args: &BenchArgs) -> anyhow::Result<Option<BenchDatabase>> {
        let Some(server) = &args.store else { return Ok(None) };
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.subsec_nanos();
        let name = format!("wrapup_bench_{}_{nanos}", std::process::id());
        let url = wrapup_store::PostgresStore::create_database(server, &name).await?;
        Ok(Some(BenchDatabase { server: server.clone(), name, url }))
    }

    /// Starts `count - 1` more services like `env`'s on this database, each with its own connections to it, as
    /// separate processes would have (`env`'s is the first replica).
    pub async fn start_replicas(
        &self,
        env: &DemoEnv,
        count: usize,
    ) -> anyhow::Result<Vec<wrapup_service::app::ServiceHandle>> {
        let mut replicas = Vec::new();
        for _ in 1..count.clamp(1, 16) {
            let store: std::sync::Arc<dyn wrapup_store::Store> =
                std::sync::Arc::new(wrapup_store::PostgresStore::connect(&self.url).await?);
            let spec = wrapup_service::build::spec_from_config(&env.config, store, env.clock.clone())?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            replicas.push(wrapup_service::app::start(spec, listener).await?);
        }
        Ok(replicas)
    }

    pub async fn drop(self) -> anyhow::Result<()> {
        wrapup_store::PostgresStore::drop_database(&self.server, &self.name).await?;
        Ok(())
    }
}

/// `q`-quantile of sorted values, rounded to 0.01.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Some(round(sorted[idx.min(sorted.len() - 1)], 2))
}

pub fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// `Some(x)` → `x`, `None` → `-` for tables.
pub fn show(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// This process's resident set (`VmRSS`) and its peak (`VmHWM`), in MiB, from `/proc/self/status`.
pub fn rss_mb() -> (Option<f64>, Option<f64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| round(kb / 1024.0, 1))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Waits while the wall clock runs `total`, printing a progress line to stderr unless `quiet`.
pub async fn run_for(total: Duration, what: &str, quiet: bool) {
    let started = std::time::Instant::now();
    while started.elapsed() < total {
        tokio::time::sleep(Duration::from_millis(1000).min(total.saturating_sub(started.elapsed()))).await;
        if !quiet {
            eprint!("\r[{what}] {:>4}/{} s", started.elapsed().as_secs(), total.as_secs());
        }
    }
    if !quiet {
        eprintln!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(scenario: Scenario, duration: u64) -> BenchArgs {
        BenchArgs {
            scenario,
            duration: Some(duration),
            json: true,
            rate: Some(10.0),
            rate_limit: 300,
            legs: 1_000,
            connections: 4,
            batch: 1,
            platform: BenchPlatform::Genesys,
            window: wrapup_sandbox::RateWindow::Fixed,
            warmup: Some(1),
            seed: 7,
            reconcile_every_ms: 60_000,
            data_dir: None,
            store: None,
            replicas: 1,
        }
    }

    /// Checks the report's shape only: benchmarks are not timed tests.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bench_efficiency_reports_the_named_fields() {
        let report = run(&args(Scenario::Efficiency, 3)).await.expect("the scenario runs");
        let json = report.to_json();
        assert_eq!(json["scenario"], "efficiency");
        for field in ["calls_per_applied", "legs_per_s", "api_calls", "outcomes", "goals"] {
            assert!(json.get(field).is_some(), "{field} is reported: {json}");
        }
        assert!(json["latency_ms"].get("p50").is_some() && json["latency_ms"].get("p99").is_some(), "{json}");
        assert!(json["outcomes"]["applied"].as_u64().is_some_and(|a| a > 0), "{json}");
        assert!(report.table().contains("calls per applied code"));
    }

    #[test]
    fn bench_saturation_measures_whole_minutes_after_a_warm_up_of_at_least_30_s() {
        use saturation::measured_window;
        let secs = |s| Duration::from_secs(s);
        assert_eq!(measured_window(secs(150)), (secs(30), secs(120)));
        assert_eq!(measured_window(secs(90)), (secs(30), secs(60)));
        assert_eq!(measured_window(secs(200)), (secs(80), secs(120)));
        // Shorter runs keep the old split: all but the first sixth, at most 10 s.
        assert_eq!(measured_window(secs(60)), (secs(10), secs(50)));
        assert_eq!(measured_window(secs(20)), (secs(3), secs(17)));
    }

    #[test]
    fn bench_admitted_calls_leave_out_429s_and_token_requests() {
        let api: wrapup_sandbox::report::ApiReport = serde_json::from_value(serde_json::json!({
            "total": 0, "rate_limited": 0,
            "by_endpoint": {
                "GET /api/v2/conversations/{cid}/participants/{pid}/wrapup": {"200": 5, "429": 2, "404": 1},
                "POST /oauth/token": {"200": 3},
                "POST /auth/token": {"200": 1},
                "GET /inContactAPI/services/v{N}.0/skills": {"200": 4, "429": 7}
            }
        }))
        .unwrap();
        assert_eq!(saturation::admitted(&api), 10);
    }

    #[test]
    fn bench_order_violations_count_a_later_deadline_served_over_a_reachable_earlier_one() {
        use jiff::{SignedDuration, Timestamp};
        use saturation::{order_violations, Missed, Served};
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0.checked_add(SignedDuration::from_secs(s)).unwrap();
        let a = |written: i64, deadline: i64| Served {
            chosen_at: at(written),
            written_at: at(written),
            deadline: at(deadline),
            queue: "A",
        };
        let b = |started: i64, deadline: i64| Missed {
            acw_started_at: at(started),
            deadline: at(deadline),
            closed_at: at(deadline),
            queue: "B",
        };
        // B (deadline 20) waited since 0 and was missed; A (deadline 40) was written at 5: a violation.
        assert_eq!(order_violations(&[a(5, 40)], &[b(0, 20)], at(0), at(60)), 1);
        // A's deadline is earlier than B's: no violation.
        assert_eq!(order_violations(&[a(5, 40)], &[b(0, 50)], at(0), at(60)), 0);
        // B had no reachable window left when A was written: no violation.
        assert_eq!(order_violations(&[a(5, 40)], &[b(0, 6)], at(0), at(60)), 0);
        // B entered ACW less than a second before A's write (A's gate read was already done): no violation.
        assert_eq!(order_violations(&[a(5, 40)], &[b(5, 20)], at(0), at(60)), 0);
        // A was written outside the measured window.
        assert_eq!(order_violations(&[a(5, 40)], &[b(0, 20)], at(6), at(60)), 0);
        // A's read was made before B arrived; its write waited for the window to reset: A was chosen fairly.
        let waited = Served { chosen_at: at(1), ..a(5, 40) };
        assert_eq!(order_violations(&[waited], &[b(2, 20)], at(0), at(60)), 0);
        assert_eq!(order_violations(&[a(5, 40)], &[b(2, 20)], at(0), at(60)), 1);
        // B's agent left its window at 5, before its (estimated) deadline: nothing could reach it after that.
        let left = Missed { closed_at: at(5), ..b(0, 20) };
        assert_eq!(order_violations(&[a(5, 40)], &[left], at(0), at(60)), 0);
        assert_eq!(order_violations(&[a(3, 40)], &[left], at(0), at(60)), 1);
    }

    /// The missed legs come from the sandbox's truth: a leg the service never claimed (no deadline in its store) still
    /// counts, and a leg that got our write or an agent's code does not.
    #[test]
    fn bench_missed_legs_come_from_the_sandbox_truth() {
        use wrapup_core::lifecycle::LegRecord;
        use wrapup_sandbox::{CodedBy, LegTruth, Media};
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let at = |s: i64| t0.checked_add(jiff::SignedDuration::from_secs(s)).unwrap();
        let truth = |c: &str, deadline: i64, coded_by: CodedBy, api_writes: u32| LegTruth {
            conversation_id: c.into(),
            participant_id: "p".into(),
            communication_id: "m".into(),
            media_type: Media::Calls,
            queue_id: None,
            queue_name: None,
            user_id: None,
            wrapup_prompt: None,
            wrapup_required: true,
            state: "done".into(),
            acw_started_at: Some(at(0).to_string()),
            acw_deadline: Some(at(deadline).to_string()),
            window_closed_at: Some(at(deadline).to_string()),
            final_code: None,
            final_code_name: None,
            coded_by,
            api_writes,
            agent_coded_before_api: false,
            agent_changed_after_api: false,
            true_code: None,
            true_code_name: None,
            agent_pick: None,
            agent_pick_name: None,
        };
        let truths = vec![
            truth("never-claimed", 20, CodedBy::SystemTimeout, 0),
            truth("ours", 40, CodedBy::Api, 1),
            truth("agent", 10, CodedBy::Agent, 0),
        ];
        let mut ours = LegRecord::new(wrapup_core::LegKey::new("genesys", "ours", "p"), at(0));
        ours.outcome = Some(wrapup_core::Outcome::Applied);
        ours.written_at = Some(at(5));
        // The service's store has no deadline for the leg it never claimed, and none for ours either: the truth's are
        // used.
        let ours = [ours];
        let (served, missed) = saturation::served_and_missed(&ours, &truths);
        assert_eq!(served.len(), 1);
        assert_eq!(served[0].deadline, at(40));
        assert_eq!(missed.len(), 1);
        assert_eq!(missed[0].deadline, at(20));
        assert_eq!(saturation::order_violations(&served, &missed, at(0), at(60)), 1);

        // A window without a platform timeout (OPTIONAL) is judged by the deadline the service estimated for it.
        let mut left = truth("left", 0, CodedBy::Skipped, 0);
        left.acw_deadline = None;
        left.window_closed_at = Some(at(30).to_string());
        let mut seen = LegRecord::new(wrapup_core::LegKey::new("genesys", "left", "p"), at(0));
        seen.estimated_deadline = Some(at(25));
        let (seen, left) = ([seen], [left]);
        let (_, missed) = saturation::served_and_missed(&seen, &left);
        assert_eq!(missed.len(), 1);
        assert_eq!((missed[0].deadline, missed[0].closed_at), (at(25), at(30)));
        // Unseen by the service, it has no deadline to be ordered by.
        assert!(saturation::served_and_missed(&[], &left).1.is_empty());
    }
}
