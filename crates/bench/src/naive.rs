//! `naive`: the approach a user would otherwise write, against the same sandbox load as the service.
//!
//! The naive client is an EventBridge target that, on each `user.end` event, reads the queue's codes
//! (`GET /api/v2/routing/queues/{id}/wrapupcodes`), reads the conversation (`GET /api/v2/conversations/{id}`) and
//! writes the code (`POST …/communications/{commId}/wrapup`) — no dedupe, no budget, no gate read, no retry. It
//! acknowledges events at once. One token for the whole run (a generous reading: many scripts fetch one per call).
//!
//! The load: a center with one queue of each ACW mode (see [`all_modes_center`]) at 1×, 2× and 3× the legs per
//! second the budget can code at two calls per code, one `immediate` rule coding every leg. For each load the
//! service runs, then the naive client, with the same seed and center; after the load stops each gets
//! [`DRAIN`] before the sandbox's truth is read.
//!
//! Both sides are judged by the truth alone, with one measure ([`Judged`]): coverage is the share of legs whose
//! window opened and closed during the run that ended with a meaningful code (an agent's or one written through
//! the API — not the platform's timeout code, not a skipped window); calls per applied code divides every platform
//! call by the codes written; violations are agent codes written over, writes that landed outside a window, writes
//! to legs that never had one, and second effective writes.

use super::{percentile, queue, round, run_for, sandbox, short_center, BenchArgs, Report};
use axum::extract::State;
use axum::routing::post;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wrapup_clock::ScaledClock;
use wrapup_core::clock::SharedClock;
use wrapup_sandbox::report::ViolationReport;
use wrapup_sandbox::{AcwMode, AgentBehaviour, CodedBy, EventTarget, LegTruth, Sandbox, SandboxConfig};

#[derive(Default)]
struct Counters {
    calls: AtomicU64,
    rate_limited: AtomicU64,
    failed: AtomicU64,
    writes_accepted: AtomicU64,
}

struct Naive {
    base: String,
    token: String,
    http: reqwest::Client,
    counters: Counters,
    clock: SharedClock,
    latencies_ms: std::sync::Mutex<Vec<f64>>,
}

impl Naive {
    async fn call(&self, req: reqwest::RequestBuilder) -> Option<reqwest::Response> {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        let resp = req.bearer_auth(&self.token).send().await.ok()?;
        if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        if !resp.status().is_success() {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(resp)
    }

    async fn handle(&self, body: serde_json::Value) {
        let detail = &body["detail"];
        if !detail["topicName"].as_str().is_some_and(|t| t.ends_with(".user.end")) {
            return;
        }
        let ev = &detail["eventBody"];
        let (Some(cid), Some(pid), Some(comm), Some(queue)) = (
            ev["conversationId"].as_str(),
            ev["participantId"].as_str(),
            ev["sessionId"].as_str(),
            ev["queueId"].as_str(),
        ) else {
            return;
        };
        let media = match ev["mediaType"].as_str().unwrap_or_default().to_ascii_uppercase().as_str() {
            "VOICE" => "calls",
            "CALLBACK" => "callbacks",
            "EMAIL" => "emails",
            "MESSAGE" => "messages",
            _ => return,
        };
        let codes = self.call(self.http.get(format!("{}/api/v2/routing/queues/{queue}/wrapupcodes", self.base))).await;
        let Some(codes) = codes else { return };
        let Ok(codes) = codes.json::<serde_json::Value>().await else { return };
        let Some(code) = codes["entities"].as_array().and_then(|e| e.iter().find(|c| c["name"] == "Resolved")).cloned()
        else {
            return;
        };
        if self.call(self.http.get(format!("{}/api/v2/conversations/{cid}", self.base))).await.is_none() {
            return;
        }
        let url =
            format!("{}/api/v2/conversations/{media}/{cid}/participants/{pid}/communications/{comm}/wrapup", self.base);
        let write = serde_json::json!({"code": code["id"], "name": code["name"]});
        if self.call(self.http.post(url).json(&write)).await.is_some() {
            self.counters.writes_accepted.fetch_add(1, Ordering::Relaxed);
            if let Some(ended) = ev["eventTime"].as_i64().and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok()) {
                let ms = self.clock.now().duration_since(ended).as_secs_f64() * 1000.0;
                if let Ok(mut l) = self.latencies_ms.lock() {
                    l.push(ms.max(0.0));
                }
            }
        }
    }
}

async fn receive(State(naive): State<Arc<Naive>>, body: axum::body::Bytes) -> axum::http::StatusCode {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&body) {
        tokio::spawn(async move { naive.handle(value).await });
    }
    axum::http::StatusCode::OK
}

/// What a naive run measured: the sandbox's truth and report when it ended, and the client's own counters.
pub struct NaiveRun {
    pub truth: Vec<LegTruth>,
    pub report: wrapup_sandbox::Report,
    pub calls: u64,
    pub rate_limited: u64,
    pub latency_p50: Option<f64>,
    pub latency_p99: Option<f64>,
}

/// Runs the naive client against a sandbox built from `cfg` for `duration`.
pub async fn run_naive(mut cfg: SandboxConfig, duration: Duration, quiet: bool) -> anyhow::Result<NaiveRun> {
    let clock: SharedClock = Arc::new(ScaledClock::new(jiff::Timestamp::now(), 1.0));
    let naive_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let naive_url = format!("http://{}/events", naive_listener.local_addr()?);
    cfg.traffic_autostart = false;
    cfg.speed = 1.0;
    cfg.event_targets = vec![EventTarget { url: naive_url, api_key_header: None, api_key: None }];
    let sandbox = Sandbox::start(cfg, tokio::net::TcpListener::bind("127.0.0.1:0").await?, clock.clone()).await?;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let (id, secret) = sandbox.credentials().first().cloned().ok_or_else(|| anyhow::anyhow!("no client"))?;
    let token: serde_json::Value = http
        .post(format!("{}/oauth/token", sandbox.base_url()))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .json()
        .await?;
    let naive = Arc::new(Naive {
        base: sandbox.base_url().to_string(),
        token: token["access_token"].as_str().unwrap_or_default().to_string(),
        http,
        counters: Counters::default(),
        clock: clock.clone(),
        latencies_ms: Default::default(),
    });
    naive.counters.calls.fetch_add(1, Ordering::Relaxed); // the token request
    let app = axum::Router::new().route("/events", post(receive)).with_state(naive.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(naive_listener, app).await;
    });
    sandbox.start_traffic();
    run_for(duration, "naive", quiet).await;
    sandbox.stop_traffic();
    tokio::time::sleep(DRAIN).await;
    let report = sandbox.report();
    let truth = sandbox.legs();
    sandbox.shutdown().await;
    server.abort();
    let mut lat = naive.latencies_ms.lock().map(|l| l.clone()).unwrap_or_default();
    lat.sort_by(|a, b| a.total_cmp(b));
    let c = &naive.counters;
    Ok(NaiveRun {
        calls: c.calls.load(Ordering::Relaxed),
        rate_limited: c.rate_limited.load(Ordering::Relaxed),
        latency_p50: percentile(&lat, 0.5),
        latency_p99: percentile(&lat, 0.99),
        truth,
        report,
    })
}

/// How one side of a comparison did, judged by the sandbox's truth alone (the same measure for both sides).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Judged {
    /// Legs whose window opened and closed during the run.
    pub needed: u64,
    /// Of those, legs that ended with a meaningful code (the agent's or one written through the API).
    pub covered: u64,
    pub coverage: Option<f64>,
    /// Codes written through the API (final, accepted).
    pub applied: u64,
    pub api_calls: u64,
    pub calls_per_applied: Option<f64>,
    pub rate_limited: u64,
    pub overwrites: u64,
    pub landed_outside_window: u64,
    pub written_with_no_window: u64,
    /// Write attempts outside a window the platform refused (the naive client's 400s; the service's races).
    pub outside_window_attempts: u64,
    pub duplicate_writes: u64,
}

impl Judged {
    pub fn of(truth: &[LegTruth], violations: &ViolationReport, api_calls: u64, rate_limited: u64) -> Self {
        let needed: Vec<&LegTruth> =
            truth.iter().filter(|t| t.acw_started_at.is_some() && t.window_closed_at.is_some()).collect();
        let covered = needed.iter().filter(|t| matches!(t.coded_by, CodedBy::Agent | CodedBy::Api)).count() as u64;
        let applied = truth.iter().filter(|t| t.coded_by == CodedBy::Api).count() as u64;
        let v = violations;
        Judged {
            needed: needed.len() as u64,
            covered,
            coverage: (!needed.is_empty()).then(|| round(covered as f64 / needed.len() as f64, 4)),
            applied,
            api_calls,
            calls_per_applied: (applied > 0).then(|| round(api_calls as f64 / applied as f64, 3)),
            rate_limited,
            overwrites: v.overwrites,
            landed_outside_window: v.outside_window_landed,
            written_with_no_window: v.outside_window_no_acw,
            outside_window_attempts: v.outside_window,
            duplicate_writes: v.duplicate_writes,
        }
    }

    fn violations(&self) -> u64 {
        self.overwrites + self.landed_outside_window + self.written_with_no_window + self.duplicate_writes
    }
}

/// A center with one queue of each ACW mode and agents who behave as in a real center: some code at disconnect or
/// later (a few type a provisional code first), optional windows are left after seconds, agent-requested windows
/// are asked for half of the time, mandatory ones are coded by a waiting agent within a minute.
pub fn all_modes_center(agents: usize, legs_per_sec: f64) -> wrapup_sandbox::CenterConfig {
    let queues = vec![
        queue("Mandatory", AcwMode::Mandatory, None),
        queue("Timeout", AcwMode::MandatoryTimeout, Some(30_000)),
        queue("Forced", AcwMode::MandatoryForcedTimeout, Some(30_000)),
        queue("Optional", AcwMode::Optional, None),
        queue("Requested", AcwMode::AgentRequested, Some(30_000)),
    ];
    let agent = AgentBehaviour {
        skip_delay: wrapup_sandbox::Dist::new(2.0, 8.0, 30.0),
        give_in_delay: wrapup_sandbox::Dist::new(10.0, 25.0, 60.0),
        ..AgentBehaviour::default()
    };
    short_center(queues, agents, legs_per_sec, agent)
}

/// After the load stops, both sides get this long (wall time, clock speed 1) before the truth is read.
const DRAIN: Duration = Duration::from_secs(5);

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let duration = args.duration_or(60);
    let mut r = Report::new("naive");
    r.field("duration_secs", duration.as_secs());
    r.field("budget_per_minute", args.rate_limit);
    r.row(format!("all ACW modes, {} req/min, {} s per run", args.rate_limit, duration.as_secs()), "service | naive");
    let mut loads = Vec::new();
    for multiple in [1.0, 2.0, 3.0] {
        // `multiple` times the legs per second the budget can code at two calls per code.
        let offered = multiple * args.rate_limit as f64 / 2.0 / 60.0;
        let agents = ((offered * 40.0) as usize).max(50);
        let cfg = sandbox(all_modes_center(agents, offered), args.rate_limit, 1, args.seed);
        let label = format!("naive: service at {multiple}x the budget");
        let env = super::start_env(cfg.clone(), super::RESOLVE_ALL, args).await?;
        env.sandbox.start_traffic();
        run_for(duration, &label, args.json).await;
        env.sandbox.stop_traffic();
        tokio::time::sleep(DRAIN).await;
        // Judged at the same moment as the naive run: the service's shutdown below lets legs in flight finish.
        let (truth, report) = (env.sandbox.legs(), env.sandbox.report());
        let calls = env.service.as_ref().map(|s| s.state.connections.values().map(|c| c.platform.stats()));
        let (api_calls, rate_limited) =
            calls.into_iter().flatten().fold((0, 0), |(n, r), c| (n + c.total, r + c.rate_limited));
        let ours = Judged::of(&truth, &report.violations, api_calls, rate_limited);
        let done = env.finish_with_truth().await?;
        let naive = run_naive(cfg, duration, args.json).await?;
        let theirs = Judged::of(&naive.truth, &naive.report.violations, naive.calls, naive.rate_limited);
        r.row(format!("{multiple}x ({:.2} legs/s) coverage", offered), pair(ours.coverage, theirs.coverage));
        r.row("  calls per applied code", pair(ours.calls_per_applied, theirs.calls_per_applied));
        r.row(
            "  codes applied / legs needing one",
            format!("{} / {} | {} / {}", ours.applied, ours.needed, theirs.applied, theirs.needed),
        );
        r.row("  429s", format!("{} | {}", ours.rate_limited, theirs.rate_limited));
        let lat = &done.summary.latency_ms;
        r.row(
            "  leg end to write p50 / p99 ms",
            format!(
                "{} / {} | {} / {}",
                super::show(lat.p50),
                super::show(lat.p99),
                super::show(naive.latency_p50),
                super::show(naive.latency_p99)
            ),
        );
        r.row(
            "  violations (overwrite, landed late, no window, duplicate)",
            format!(
                "{} ({}, {}, {}, {}) | {} ({}, {}, {}, {})",
                ours.violations(),
                ours.overwrites,
                ours.landed_outside_window,
                ours.written_with_no_window,
                ours.duplicate_writes,
                theirs.violations(),
                theirs.overwrites,
                theirs.landed_outside_window,
                theirs.written_with_no_window,
                theirs.duplicate_writes
            ),
        );
        r.row(
            "  refused late attempts",
            format!("{} | {}", ours.outside_window_attempts, theirs.outside_window_attempts),
        );
        loads.push(serde_json::json!({
            "multiple": multiple, "offered_legs_per_s": round(offered, 3),
            "service": ours, "naive": theirs,
            "service_outcomes": done.summary.outcomes,
            "latency_ms": {"service": done.summary.latency_ms,
                           "naive": {"p50": naive.latency_p50, "p99": naive.latency_p99}},
        }));
    }
    r.field("loads", loads);
    Ok(r)
}

fn pair(a: Option<f64>, b: Option<f64>) -> String {
    format!("{} | {}", super::show(a), super::show(b))
}
