//! `ingest`: how many events per second the intake acknowledges durably (202 only after the SQLite commit), and
//! how long an acknowledgement takes at a fixed rate, from a load generator on loopback in this process.
//!
//! Phases, each on the running service (sandbox idle, a rule set that matches none of these legs, so every event
//! still makes a leg that a worker decides — `no_rule` — while intake runs):
//!
//! 1. **throughput**: `--connections` keep-alive connections POST `user.end` envelopes (`--batch` per request;
//!    EventBridge API destinations send one) back to back for `--duration` seconds → `events_per_s`, `ack_ms`.
//! 2. **latency at a rate** (`--rate`, default 5,000 events/s): each connection sends on a fixed schedule; a
//!    request's latency counts from when it was *due*, so a stalled intake shows as latency, not as a lower rate
//!    (no coordinated omission) → `ack_ms_at_rate`.
//! 3. **reference**: the same events straight into a fresh `SqliteStore` on the same disk, in batches of 500 and of
//!    1 → what SQLite here can commit (`sqlite_events_per_s`, `sqlite_commits_per_s`).
//!
//! The generator shares the two cores with the service: the figures are what one machine does with both on it.

use super::{percentile, round, show, BenchArgs, Report};
use crate::demo::EnvOptions;
use anyhow::Context;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wrapup_sandbox::SandboxConfig;
use wrapup_store::{SqliteStore, Store};

const NO_MATCH: &str =
    "[[rules]]\nname = \"nothing here\"\ncode = \"Resolved\"\ntiming = \"immediate\"\n[rules.when]\nqueue = \"Nowhere\"\n";

/// One `user.end` EventBridge envelope for a fresh leg.
pub fn user_end(conversation: &str, at_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "v2.detail.events.conversation.{id}.user.end",
        "source": "aws.partner/genesys.com/cloud/bench/wrapup-bench",
        "account": "000000000000",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "topicName": format!("v2.detail.events.conversation.{conversation}.user.end"),
            "version": "2",
            "eventBody": {
                "eventTime": at_ms, "conversationId": conversation, "participantId": "p-1", "sessionId": "s-1",
                "mediaType": "VOICE", "direction": "inbound", "queueId": "q-bench", "userId": "u-1",
                "interactingDurationMs": 30000, "disconnectType": "peer",
            },
            "metadata": {"CorrelationId": uuid::Uuid::new_v4().to_string()},
        }
    })
}

struct Generator {
    url: String,
    key: String,
    batch: usize,
    next: AtomicU64,
    run: String,
}

impl Generator {
    fn body(&self) -> Vec<u8> {
        let now = jiff::Timestamp::now().as_millisecond();
        let items: Vec<_> = (0..self.batch)
            .map(|_| user_end(&format!("c-{}-{}", self.run, self.next.fetch_add(1, Ordering::Relaxed)), now))
            .collect();
        let value = if self.batch == 1 { items.into_iter().next().unwrap_or_default() } else { items.into() };
        serde_json::to_vec(&value).unwrap_or_default()
    }

    /// Sends one request; `Ok(true)` on 202.
    async fn send(&self, client: &reqwest::Client) -> bool {
        let req = client.post(&self.url).header("x-wrapup-intake-key", &self.key).body(self.body());
        matches!(req.send().await, Ok(resp) if resp.status() == reqwest::StatusCode::ACCEPTED)
    }
}

struct Phase {
    events: u64,
    errors: u64,
    secs: f64,
    latencies_ms: Vec<f64>,
}

/// `connections` tasks for `duration`; with `rate` each sends on a schedule, else back to back.
async fn drive(gen: Arc<Generator>, connections: usize, duration: Duration, rate: Option<f64>) -> Phase {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let gen = gen.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
            let (mut ok, mut err, mut lat) = (0u64, 0u64, Vec::new());
            let interval = rate.map(|r| Duration::from_secs_f64(gen.batch as f64 * connections as f64 / r.max(1.0)));
            let mut due = Instant::now();
            while started.elapsed() < duration {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                } else {
                    due = Instant::now();
                }
                let sent = gen.send(&client).await;
                lat.push(due.elapsed().as_secs_f64() * 1000.0);
                if sent {
                    ok += gen.batch as u64;
                } else {
                    err += 1;
                }
                if let Some(iv) = interval {
                    due += iv;
                }
            }
            (ok, err, lat)
        }));
    }
    let mut phase = Phase { events: 0, errors: 0, secs: 0.0, latencies_ms: Vec::new() };
    for t in tasks {
        if let Ok((ok, err, lat)) = t.await {
            phase.events += ok;
            phase.errors += err;
            phase.latencies_ms.extend(lat);
        }
    }
    phase.secs = started.elapsed().as_secs_f64();
    phase.latencies_ms.sort_by(|a, b| a.total_cmp(b));
    phase
}

/// Events per second SQLite commits on this disk through the store, in batches of `batch`, for `duration`.
async fn sqlite_rate(dir: &std::path::Path, batch: usize, duration: Duration) -> anyhow::Result<f64> {
    let store = SqliteStore::open(&dir.join(format!("reference-{batch}.db"))).await?;
    let started = Instant::now();
    let (mut n, mut events) = (0u64, 0u64);
    let system = HashSet::new();
    while started.elapsed() < duration {
        let now = jiff::Timestamp::now();
        let mut batch_events = Vec::with_capacity(batch);
        for _ in 0..batch {
            n += 1;
            let env = serde_json::to_vec(&user_end(&format!("r-{n}"), now.as_millisecond()))?;
            for p in wrapup_connectors::genesys::events::parse_eventbridge(crate::demo::CONNECTION, &env, &system)? {
                if let wrapup_connectors::genesys::events::Parsed::Event(e) = p {
                    batch_events.push(e);
                }
            }
        }
        store.ingest(&batch_events, now).await?;
        events += batch_events.len() as u64;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    store.close().await;
    Ok(rate)
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let duration = args.duration_or(10);
    let rate = args.rate.unwrap_or(5_000.0);
    let connections = args.connections.clamp(1, 1024);
    let batch = args.batch.clamp(1, 100);
    let sandbox = SandboxConfig { seed: args.seed, ..SandboxConfig::default() };
    let env = super::start_with(EnvOptions {
        sandbox,
        rules: NO_MATCH.to_string(),
        speed: 1.0,
        requests_per_minute: 300,
        data_dir: None,
        cxone: None,
    })
    .await?;
    let service = env.service.as_ref().context("the service is not running")?;
    let key = env.config.connections[0].intake.api_key.as_ref().context("no intake key")?.expose().to_string();
    let gen = |run: &str| {
        Arc::new(Generator {
            url: format!("{}/intake/{}", service.base_url(), crate::demo::CONNECTION),
            key: key.clone(),
            batch,
            next: AtomicU64::new(0),
            run: run.to_string(),
        })
    };
    if !args.json {
        eprintln!(
            "[ingest] throughput: {connections} connections, {batch} event(s) per request, {} s",
            duration.as_secs()
        );
    }
    let max = drive(gen("max"), connections, duration, None).await;
    let at_rate_secs = Duration::from_secs((duration.as_secs() / 2).max(3));
    if !args.json {
        eprintln!("[ingest] latency at {rate} events/s for {} s", at_rate_secs.as_secs());
    }
    let paced = drive(gen("paced"), connections, at_rate_secs, Some(rate)).await;
    let legs = env.legs().await?.len();
    let data_path = env.data_path.clone();
    env.finish().await?;
    if !args.json {
        eprintln!("[ingest] reference: SQLite store on the same disk");
    }
    let reference_secs = Duration::from_secs(3);
    let sqlite_500 = sqlite_rate(&data_path, 500, reference_secs).await?;
    let sqlite_1 = sqlite_rate(&data_path, 1, reference_secs).await?;

    let events_per_s = round(max.events as f64 / max.secs, 0);
    let achieved = round(paced.events as f64 / paced.secs, 0);
    let (p50, p99) = (percentile(&paced.latencies_ms, 0.5), percentile(&paced.latencies_ms, 0.99));
    let (mp50, mp99) = (percentile(&max.latencies_ms, 0.5), percentile(&max.latencies_ms, 0.99));
    let mut r = Report::new("ingest");
    r.field("connections", connections);
    r.field("events_per_request", batch);
    r.field("duration_secs", duration.as_secs());
    r.field("events_per_s", events_per_s);
    r.field("ack_ms", serde_json::json!({"p50": mp50, "p99": mp99}));
    r.field("errors", max.errors + paced.errors);
    r.field("target_events_per_s", rate);
    r.field("achieved_events_per_s", achieved);
    r.field("ack_ms_at_rate", serde_json::json!({"p50": p50, "p99": p99, "samples": paced.latencies_ms.len()}));
    r.field("legs_stored", legs);
    r.field("sqlite_events_per_s", round(sqlite_500, 0));
    r.field("sqlite_commits_per_s", round(sqlite_1, 0));
    r.field("ratio_to_sqlite", round(events_per_s / sqlite_500.max(1.0), 3));
    r.field(
        "goals",
        serde_json::json!({
            "events_per_s_min": 20000, "ack_p99_ms_max_at_5000": 25.0,
            "events_per_s_met": events_per_s >= 20_000.0,
            "ack_met": p99.is_some_and(|p| p <= 25.0) && achieved >= rate * 0.95,
        }),
    );
    r.row("connections x events per request", format!("{connections} x {batch}"));
    r.row("events/s acknowledged (goal >= 20,000)", events_per_s);
    r.row("ack ms p50 / p99 at full load", format!("{} / {}", show(mp50), show(mp99)));
    r.row(
        format!("ack ms p50 / p99 at {rate}/s (goal p99 <= 25)"),
        format!("{} / {} (achieved {achieved}/s)", show(p50), show(p99)),
    );
    r.row("failed requests", max.errors + paced.errors);
    r.row("SQLite alone: events/s in batches of 500", round(sqlite_500, 0));
    r.row("SQLite alone: commits/s (batches of 1)", round(sqlite_1, 0));
    r.row("intake / SQLite batched", round(events_per_s / sqlite_500.max(1.0), 3));
    Ok(r)
}
