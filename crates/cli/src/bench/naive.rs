//! `naive`: the approach a user would otherwise write, against the same sandbox load as the service.
//!
//! The naive client is an EventBridge target that, on each `user.end` event, reads the queue's codes
//! (`GET /api/v2/routing/queues/{id}/wrapupcodes`), reads the conversation (`GET /api/v2/conversations/{id}`) and
//! writes the code (`POST …/communications/{commId}/wrapup`) — no dedupe, no budget, no gate read, no retry. It
//! acknowledges events at once. One token for the whole run (a generous reading: many scripts fetch one per call).
//!
//! Two comparisons, each a service run and a naive run with the same seed, center and load:
//! - `efficiency` load (`--rate` legs/s, default 50; budget ten times what two calls per leg need);
//! - `saturation` load (three times what `--rate-limit`, default 300/min, allows for two calls per code).
//!
//! Both are judged by the sandbox's ground truth: codes applied by the API, calls, 429s, overwrites of an agent's
//! code, writes outside the window, duplicate writes.

use super::saturation::saturate;
use super::{percentile, queue, round, run_for, sandbox, short_center, silent_agents, BenchArgs, Report};
use axum::extract::State;
use axum::routing::post;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wrapup_core::clock::{ScaledClock, SharedClock};
use wrapup_sandbox::{AcwMode, AgentBehaviour, CodedBy, EventTarget, Sandbox, SandboxConfig};

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

/// What a naive run measured, from its own counters and the sandbox's truth.
pub struct NaiveRun {
    pub calls: u64,
    pub rate_limited: u64,
    pub failed: u64,
    pub applied: u64,
    pub overwrites: u64,
    pub outside_window: u64,
    pub duplicate_writes: u64,
    pub legs: u64,
    pub latency_p50: Option<f64>,
    pub latency_p99: Option<f64>,
}

impl NaiveRun {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "api_calls": self.calls, "rate_limited": self.rate_limited, "failed_calls": self.failed,
            "applied": self.applied,
            "calls_per_applied": (self.applied > 0).then(|| round(self.calls as f64 / self.applied as f64, 3)),
            "rate_limited_share": if self.calls > 0 { round(self.rate_limited as f64 / self.calls as f64, 4) } else { 0.0 },
            "violations": {"overwrites": self.overwrites, "outside_window": self.outside_window,
                           "duplicate_writes": self.duplicate_writes},
            "latency_ms": {"p50": self.latency_p50, "p99": self.latency_p99},
            "legs": self.legs,
        })
    }
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
    tokio::time::sleep(Duration::from_secs(2)).await;
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
        failed: c.failed.load(Ordering::Relaxed),
        applied: truth.iter().filter(|t| t.coded_by == CodedBy::Api).count() as u64,
        overwrites: report.violations.overwrites,
        outside_window: report.violations.outside_window,
        duplicate_writes: report.violations.duplicate_writes,
        legs: truth.len() as u64,
        latency_p50: percentile(&lat, 0.5),
        latency_p99: percentile(&lat, 0.99),
    })
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let duration = args.duration_or(20);
    let mut r = Report::new("naive");
    r.field("duration_secs", duration.as_secs());

    // Efficiency load: the service, then the naive client, same seed and center.
    let rate = args.rate.unwrap_or(50.0).clamp(0.1, 2_000.0);
    let ample = (rate * 2.0 * 60.0 * 10.0).ceil() as u32;
    let agents = ((rate * 12.0) as usize).max(50);
    let center = short_center(vec![queue("Bench", AcwMode::Mandatory, None)], agents, rate, AgentBehaviour::default());
    let cfg = sandbox(center, ample, 1, args.seed);
    let env = super::start_env(cfg.clone(), super::RESOLVE_ALL).await?;
    env.sandbox.start_traffic();
    run_for(duration, "naive: service at the efficiency load", args.json).await;
    env.sandbox.stop_traffic();
    env.settle(Duration::from_secs(10)).await?;
    let ours = env.finish().await?;
    let theirs = run_naive(cfg, duration, args.json).await?;
    let service_eff = serde_json::json!({
        "api_calls": ours.api_calls, "applied": ours.outcomes.applied, "calls_per_applied": ours.calls_per_applied,
        "rate_limited": ours.rate_limited, "violations": ours.violations, "latency_ms": ours.latency_ms,
        "legs": ours.legs,
    });
    r.field(
        "efficiency_load",
        serde_json::json!({"legs_per_s": rate, "budget_per_minute": ample,
        "service": service_eff, "naive": theirs.json()}),
    );
    r.row(format!("efficiency load ({rate} legs/s, {ample} req/min)"), "service | naive");
    r.row("  api calls", format!("{} | {}", ours.api_calls, theirs.calls));
    r.row("  codes applied", format!("{} | {}", ours.outcomes.applied, theirs.applied));
    r.row(
        "  calls per applied",
        format!(
            "{} | {}",
            super::show(ours.calls_per_applied),
            super::show(theirs.json()["calls_per_applied"].as_f64())
        ),
    );
    r.row("  agent codes overwritten", format!("{} | {}", ours.violations.overwrites, theirs.overwrites));
    r.row(
        "  duplicate writes / outside window",
        format!(
            "{} / {} | {} / {}",
            ours.violations.duplicate_writes,
            ours.violations.outside_window,
            theirs.duplicate_writes,
            theirs.outside_window
        ),
    );
    r.row(
        "  latency p50 / p99 ms",
        format!(
            "{} / {} | {} / {}",
            super::show(ours.latency_ms.p50),
            super::show(ours.latency_ms.p99),
            super::show(theirs.latency_p50),
            super::show(theirs.latency_p99)
        ),
    );

    // Saturation load at the platform's limit.
    let capacity = args.rate_limit as f64 / 2.0 / 60.0;
    let offered = 3.0 * capacity;
    let sat = saturate(args, args.duration_or(60), 1, offered, "naive: service at the saturation load").await?;
    let agents = ((offered * 40.0) as usize).max(50);
    let queues = vec![
        queue("Ten", AcwMode::MandatoryTimeout, Some(10_000)),
        queue("Twenty", AcwMode::MandatoryTimeout, Some(20_000)),
        queue("Forty", AcwMode::MandatoryTimeout, Some(40_000)),
    ];
    let cfg = sandbox(short_center(queues, agents, offered, silent_agents()), args.rate_limit, 1, args.seed);
    let sat_duration = args.duration_or(60);
    let theirs = run_naive(cfg, sat_duration, args.json).await?;
    let minutes = sat_duration.as_secs_f64() / 60.0;
    r.field(
        "saturation_load",
        serde_json::json!({"legs_per_s": round(offered, 2), "budget_per_minute": args.rate_limit,
        "service": {"applied_per_minute": sat.applied_per_minute, "utilisation": sat.utilisation,
                    "rate_limited_share": sat.rate_limited_share, "api_calls": sat.api_calls,
                    "sandbox_violations": sat.sandbox_violations},
        "naive": theirs.json(), "naive_applied_per_minute": round(theirs.applied as f64 / minutes, 1)}),
    );
    r.row(format!("saturation load ({:.2} legs/s, {} req/min)", offered, args.rate_limit), "service | naive");
    r.row(
        "  applied per minute",
        format!("{} | {}", sat.applied_per_minute, round(theirs.applied as f64 / minutes, 1)),
    );
    r.row("  429 share of calls", format!("{} | {}", sat.rate_limited_share, theirs.json()["rate_limited_share"]));
    r.row("  api calls", format!("{} | {}", sat.api_calls, theirs.calls));
    Ok(r)
}
