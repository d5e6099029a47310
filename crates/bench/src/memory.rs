//! `memory`: resident memory of the process (service + embedded sandbox + tokio), idle and with a large backlog of
//! pending legs in the store.
//!
//! 1. **idle**: sandbox (default center, no traffic) and service on an empty store, after a few seconds.
//! 2. **backlog**: `--legs` `user.end` events for the center's queues are written straight into a SQLite store (in
//!    batches of 500, as intake would after an outage), then the peak RSS is reset (`/proc/self/clear_refs`) and the
//!    service starts on that store with one `immediate` rule and a `--rate-limit` budget: every leg is due, far more
//!    than the budget can serve. RSS is sampled every 200 ms for `--duration`; the peak is `rss_mb`.
//!
//! The legs' conversations do not exist in the sandbox, so the legs the budget reaches end as `review` (404 on the
//! gate read); the rest stay pending, which is the point: the backlog lives in the store, not in memory.

use super::{round, rss_mb, start_env, BenchArgs, Report};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use wrapup_connectors::genesys::events::{parse_eventbridge, Parsed};
use wrapup_demo::EnvOptions;
use wrapup_sandbox::SandboxConfig;
use wrapup_store::{SqliteStore, Store};

fn sandbox(args: &BenchArgs) -> SandboxConfig {
    SandboxConfig { seed: args.seed, rate_limit_per_minute: args.rate_limit, ..SandboxConfig::default() }
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let duration = args.duration_or(20);
    let legs = args.legs.clamp(1, 10_000_000);

    // 1. Idle.
    let env = start_env(sandbox(args), super::RESOLVE_ALL, args).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (idle, _) = rss_mb();
    // Same seed, same ids: the second sandbox has the same queues.
    let queues: Vec<String> = env.sandbox.with_org(|o| o.queues.iter().map(|q| q.id.clone()).collect());
    env.finish().await?;

    // 2. The backlog, written before the service starts.
    let dir = tempfile::tempdir()?;
    let preload_started = Instant::now();
    {
        let store = SqliteStore::open(&dir.path().join("wrapup.db")).await?;
        let system = HashSet::new();
        let now = jiff::Timestamp::now();
        let mut batch = Vec::with_capacity(500);
        for n in 0..legs {
            let mut env = super::ingest::user_end(&format!("m-{n}"), now.as_millisecond());
            env["detail"]["eventBody"]["queueId"] = queues[n % queues.len().max(1)].clone().into();
            for p in parse_eventbridge(wrapup_demo::CONNECTION, &serde_json::to_vec(&env)?, &system)? {
                if let Parsed::Event(e) = p {
                    batch.push(e);
                }
            }
            if batch.len() >= 500 || n + 1 == legs {
                store.ingest(&batch, now).await?;
                batch.clear();
            }
            if !args.json && n % 50_000 == 0 {
                eprint!("\r[memory] writing the backlog: {n}/{legs}");
            }
        }
        store.close().await;
    }
    let preload_secs = preload_started.elapsed().as_secs_f64();
    if !args.json {
        eprintln!("\r[memory] backlog of {legs} legs written in {preload_secs:.1} s");
    }
    let (after_preload, _) = rss_mb();
    // Reset the peak (VmHWM) to the current RSS, so the peak below is the service's, not the loader's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let env = super::start_with(EnvOptions {
        sandbox: sandbox(args),
        rules: super::RESOLVE_ALL.to_string(),
        speed: 1.0,
        requests_per_minute: args.rate_limit,
        data_dir: Some(dir.path().to_path_buf()),
        cxone: None,
        store: None,
        lookup_fallback: None,
    })
    .await?;
    let started = Instant::now();
    let mut peak: f64 = 0.0;
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let (Some(now), _) = rss_mb() {
            peak = peak.max(now);
        }
        if !args.json && started.elapsed().as_millis() % 1000 < 200 {
            eprint!("\r[memory] {:>4}/{} s rss {peak} MiB", started.elapsed().as_secs(), duration.as_secs());
        }
    }
    if !args.json {
        eprintln!();
    }
    let (_, hwm) = rss_mb();
    let rss = peak.max(hwm.unwrap_or(0.0));
    let counts = env.store.outcome_counts(wrapup_demo::CONNECTION).await?;
    let pending = counts.get(&None).copied().unwrap_or(0);
    let finished: u64 = counts.iter().filter(|(k, _)| k.is_some()).map(|(_, v)| *v).sum();
    env.finish().await?;

    let mut r = Report::new("memory");
    r.field("legs", legs);
    r.field("duration_secs", duration.as_secs());
    r.field("idle_rss_mb", idle);
    r.field("rss_mb", rss);
    r.field("rss_after_loading_mb", after_preload);
    r.field("pending_at_end", pending);
    r.field("finished_during_run", finished);
    r.field("preload_secs", round(preload_secs, 1));
    r.field(
        "goals",
        serde_json::json!({
            "rss_mb_max": 256, "idle_rss_mb_max": 64,
            "rss_met": rss <= 256.0, "idle_met": idle.is_some_and(|i| i <= 64.0),
        }),
    );
    r.row("idle RSS MiB (goal <= 64)", super::show(idle));
    r.row(format!("peak RSS MiB with {legs} legs pending (goal <= 256)"), rss);
    r.row("RSS after writing the backlog (before the reset)", super::show(after_preload));
    r.row("legs still pending / finished during the run", format!("{pending} / {finished}"));
    r.row("backlog written in (s)", round(preload_secs, 1));
    Ok(r)
}
