//! `--scenario lookup`: how long a platform flow waits for `POST /api/v1/lookup/{connection}/decision`, at a fixed
//! rate (`--rate`, default 1,000 lookups/s) for `--duration` seconds (default 15), from a load generator on loopback
//! in this process (the ingest scenario's raw HTTP/1.1 client, on `--connections` keep-alive connections, default
//! 64 — each on a fixed schedule). A lookup's latency counts from when it was *due*, so a stalled service shows as
//! latency, not as a lower rate. Every lookup is one a rule decides (a Support voice leg), answered from the cached
//! catalog; the goal is p99 well under 10 ms.

use super::ingest::RawConnection;
use super::{percentile, round, show, BenchArgs, Report};
use anyhow::Context;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wrapup_demo::EnvOptions;
use wrapup_sandbox::SandboxConfig;

const RULES: &str =
    "[[rules]]\nname = \"support voice\"\ncode = \"Issue resolved\"\n[rules.when]\nqueue = \"Support\"\n\
                     channel = \"voice\"\n";
const FACTS: &[u8] = br#"{"queue_name":"Support","channel":"voice","direction":"inbound","talk_ms":61000}"#;
/// The goal for the p99, in milliseconds.
const GOAL_P99_MS: f64 = 10.0;

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let duration = args.duration_or(15);
    let rate = args.rate.unwrap_or(1_000.0);
    let connections = args.connections.clamp(1, 1024);
    let sandbox = SandboxConfig { seed: args.seed, ..SandboxConfig::default() };
    let env = super::start_with(EnvOptions {
        sandbox,
        rules: RULES.to_string(),
        speed: 1.0,
        requests_per_minute: 300,
        data_dir: args.data_dir.clone(),
        cxone: None,
        store: None,
        lookup_fallback: None,
    })
    .await?;
    let service = env.service.as_ref().context("the service is not running")?;
    let key = env.config.connections[0].intake.api_key.as_ref().context("no intake key")?.expose().to_string();
    let addr: std::net::SocketAddr =
        service.base_url().trim_start_matches("http://").parse().context("the service's address")?;
    let runtime = service.state.connections.get(wrapup_demo::CONNECTION).context("no connection")?;
    let started = Instant::now();
    while !runtime.catalog.is_loaded() {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the catalog did not load within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let path = Arc::new(format!("/api/v1/lookup/{}/decision", wrapup_demo::CONNECTION));
    let key = Arc::new(key);
    if !args.json {
        eprintln!("[lookup] {rate} decisions/s on {connections} connections for {} s", duration.as_secs());
    }
    let interval = Duration::from_secs_f64(connections as f64 / rate.max(1.0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for index in 0..connections {
        let (path, key) = (path.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            let mut conn: Option<RawConnection> = None;
            // Spread the connections' schedules over one interval rather than all at its start.
            let mut due = Instant::now() + interval.mul_f64(index as f64 / connections as f64);
            while started.elapsed() < duration {
                tokio::time::sleep_until(due.into()).await;
                if conn.is_none() {
                    conn = RawConnection::connect(addr).await.ok();
                }
                let answered = match conn.as_mut() {
                    Some(c) => tokio::time::timeout(Duration::from_secs(10), c.post(&path, &key, FACTS)).await,
                    None => Ok(Err(std::io::Error::other("no connection"))),
                };
                latencies.push(due.elapsed().as_secs_f64() * 1000.0);
                match answered {
                    Ok(Ok(200)) => ok += 1,
                    Ok(Ok(_)) => errors += 1,
                    _ => {
                        errors += 1;
                        conn = None;
                    }
                }
                due += interval;
            }
            (ok, errors, latencies)
        }));
    }
    let (mut ok, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
    for t in tasks {
        let (o, e, l) = t.await.context("a load task failed")?;
        ok += o;
        errors += e;
        latencies.extend(l);
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let (p50, p99, max) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99), latencies.last().copied());
    let achieved = round(ok as f64 / secs, 0);
    let _ = env.finish().await;

    let mut r = Report::new("lookup");
    r.field("target_lookups_per_s", rate);
    r.field("lookups_per_s", achieved);
    r.field("lookups", ok);
    r.field("errors", errors);
    r.field("connections", connections);
    r.field("duration_s", round(secs, 1));
    r.field("latency_ms", serde_json::json!({"p50": p50, "p99": p99, "max": max.map(|m| round(m, 2))}));
    r.field("goal_met", p99.is_some_and(|p| p < GOAL_P99_MS) && errors == 0 && achieved >= rate * 0.95);
    r.row("lookups/s (target)", format!("{achieved} ({rate})"));
    r.row("lookups, errors", format!("{ok}, {errors}"));
    r.row(
        format!("latency ms p50 / p99 / max (goal p99 < {GOAL_P99_MS})"),
        format!("{} / {} / {}", show(p50), show(p99), show(max.map(|m| round(m, 2)))),
    );
    Ok(r)
}
