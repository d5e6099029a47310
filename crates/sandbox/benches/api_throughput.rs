//! Sandbox API throughput: how many `/api/v2` requests per second the sandbox answers on this machine.
//!
//! Starts the sandbox in-process on `127.0.0.1:0` with the rate limit lifted, gets a token, then drives a fixed mix
//! from N concurrent keep-alive connections (one HTTP/1.1 client per connection) for a fixed duration, after a
//! warm-up, and prints requests/s, p50/p99/max latency and the error count (`--json` for one JSON object).
//!
//! The mix is the service's read path: per 10 requests, 5 gate reads
//! (`GET /api/v2/conversations/{id}/participants/{pid}/wrapup?provisional=true`), 4 conversation reads
//! (`GET /api/v2/conversations/{id}`) and 1 catalog read (`GET /api/v2/routing/wrapupcodes`), spread over the
//! preloaded legs.
//!
//! ```text
//! cargo bench -p wrapup-sandbox --bench api_throughput -- --duration 10 [--connections 32] [--preload 500] [--json]
//! cargo bench -p wrapup-sandbox --bench api_throughput -- --serve 60   # serve only, for wrk (see docs/PERFORMANCE.md)
//! ```
//!
//! The client runs in the same process as the server and competes with it for the cores; `--serve` lets an
//! external load generator (wrk) drive the same sandbox instead.

use std::sync::Arc;
use std::time::{Duration, Instant};
use wrapup_sandbox::{Sandbox, SandboxConfig};

const USAGE: &str = "api_throughput [--duration SECS] [--warmup SECS] [--connections N] [--preload N] [--json] \
                     [--serve SECS]";

/// Caps that keep a mistyped flag from running away.
const MAX_DURATION_SECS: f64 = 600.0;
const MAX_CONNECTIONS: usize = 1024;

struct Args {
    duration: f64,
    warmup: f64,
    connections: usize,
    preload: usize,
    json: bool,
    serve: Option<f64>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args { duration: 10.0, warmup: 1.0, connections: 32, preload: 500, json: false, serve: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| anyhow::anyhow!("{name} needs a value\n{USAGE}"));
        match flag.as_str() {
            // `cargo bench` passes `--bench` to harness-less targets.
            "--bench" => {}
            "--duration" => a.duration = value("--duration")?.parse()?,
            "--warmup" => a.warmup = value("--warmup")?.parse()?,
            "--connections" => a.connections = value("--connections")?.parse()?,
            "--preload" => a.preload = value("--preload")?.parse()?,
            "--serve" => a.serve = Some(value("--serve")?.parse()?),
            "--json" => a.json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let secs_ok = |s: f64| s.is_finite() && (0.0..=MAX_DURATION_SECS).contains(&s);
    anyhow::ensure!(secs_ok(a.duration) && a.duration > 0.0, "--duration must be in (0, {MAX_DURATION_SECS}]");
    anyhow::ensure!(secs_ok(a.warmup), "--warmup must be in [0, {MAX_DURATION_SECS}]");
    anyhow::ensure!(a.serve.is_none_or(secs_ok), "--serve must be in [0, {MAX_DURATION_SECS}]");
    anyhow::ensure!((1..=MAX_CONNECTIONS).contains(&a.connections), "--connections must be 1..={MAX_CONNECTIONS}");
    anyhow::ensure!(a.preload >= 1, "--preload must be at least 1");
    Ok(a)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gate,
    Conversation,
    Catalog,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Gate, Kind::Conversation, Kind::Catalog];
    /// Per 10 requests: 5 gate reads, 4 conversation reads, 1 catalog read.
    const MIX: [Kind; 10] = [
        Kind::Gate,
        Kind::Conversation,
        Kind::Gate,
        Kind::Catalog,
        Kind::Gate,
        Kind::Conversation,
        Kind::Gate,
        Kind::Conversation,
        Kind::Gate,
        Kind::Conversation,
    ];
    fn name(self) -> &'static str {
        match self {
            Kind::Gate => "gate_read",
            Kind::Conversation => "conversation_read",
            Kind::Catalog => "catalog_read",
        }
    }
}

/// The paths one request kind uses, per leg.
struct Target {
    conversation: String,
    gate: String,
}

/// What one connection measured (latencies in microseconds, measured requests only).
#[derive(Default)]
struct WorkerStats {
    latencies: Vec<(Kind, u32)>,
    non_2xx: u64,
    transport_errors: u64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

/// User + system CPU seconds of this process so far (Linux `/proc/self/stat`, 100 ticks/s); `None` elsewhere.
fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After "pid (comm) ", field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

async fn token(http: &reqwest::Client, base: &str, id: &str, secret: &str) -> anyhow::Result<String> {
    let v: serde_json::Value = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    v["access_token"].as_str().map(str::to_string).ok_or_else(|| anyhow::anyhow!("no access_token in {v}"))
}

async fn worker(
    w: usize,
    base: Arc<str>,
    auth: Arc<str>,
    targets: Arc<Vec<Target>>,
    measure_from: Instant,
    end: Instant,
) -> WorkerStats {
    // One client per connection: one keep-alive HTTP/1.1 connection each, as a load generator opens them.
    let http = match reqwest::Client::builder().pool_max_idle_per_host(1).timeout(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(_) => return WorkerStats { transport_errors: 1, ..WorkerStats::default() },
    };
    let catalog = format!("{base}/api/v2/routing/wrapupcodes");
    let mut stats = WorkerStats::default();
    let mut i = w.wrapping_mul(7);
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let kind = Kind::MIX[i % Kind::MIX.len()];
        let t = &targets[(i.wrapping_mul(31) + w) % targets.len()];
        let url = match kind {
            Kind::Gate => &t.gate,
            Kind::Conversation => &t.conversation,
            Kind::Catalog => &catalog,
        };
        let result = http.get(url.as_str()).header(reqwest::header::AUTHORIZATION, &*auth).send().await;
        let ok = match result {
            Ok(r) => {
                let status = r.status();
                match r.bytes().await {
                    Ok(_) => Some(status.is_success()),
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        if started >= measure_from {
            let us = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
            stats.latencies.push((kind, us));
            match ok {
                Some(true) => {}
                Some(false) => stats.non_2xx += 1,
                None => stats.transport_errors += 1,
            }
        }
        i = i.wrapping_add(1);
    }
    stats
}

async fn run(args: Args) -> anyhow::Result<()> {
    let cfg = SandboxConfig { preload: args.preload, rate_limit_per_minute: 10_000_000, ..SandboxConfig::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let clock = wrapup_clock::ScaledClock::system().shared();
    let sb = Sandbox::start(cfg, listener, clock).await?;
    let base: Arc<str> = sb.base_url().into();
    let (id, secret) = sb.credentials().first().cloned().ok_or_else(|| anyhow::anyhow!("no OAuth client"))?;
    let setup = reqwest::Client::new();
    let tok = token(&setup, &base, &id, &secret).await?;
    let targets: Vec<Target> = sb
        .legs()
        .into_iter()
        .map(|l| Target {
            conversation: format!("{base}/api/v2/conversations/{}", l.conversation_id),
            gate: format!(
                "{base}/api/v2/conversations/{}/participants/{}/wrapup?provisional=true",
                l.conversation_id, l.participant_id
            ),
        })
        .collect();
    anyhow::ensure!(!targets.is_empty(), "the sandbox has no legs");

    if let Some(secs) = args.serve {
        // For an external load generator: the base URL, a token and 1,000 paths in the mix's order, then serve.
        let paths: Vec<String> = (0..1000usize)
            .map(|i| {
                let t = &targets[i.wrapping_mul(31) % targets.len()];
                match Kind::MIX[i % Kind::MIX.len()] {
                    Kind::Gate => t.gate.trim_start_matches(&*base).to_string(),
                    Kind::Conversation => t.conversation.trim_start_matches(&*base).to_string(),
                    Kind::Catalog => "/api/v2/routing/wrapupcodes".to_string(),
                }
            })
            .collect();
        println!("{}", serde_json::json!({"base_url": &*base, "access_token": tok, "paths": paths}));
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        sb.shutdown().await;
        return Ok(());
    }

    let auth: Arc<str> = format!("Bearer {tok}").into();
    let targets = Arc::new(targets);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let mut cpu_at_measure: Option<f64> = None;
    let tasks: Vec<_> = (0..args.connections)
        .map(|w| tokio::spawn(worker(w, base.clone(), auth.clone(), targets.clone(), measure_from, end)))
        .collect();
    tokio::time::sleep_until(measure_from.into()).await;
    if let Some(c) = process_cpu_secs() {
        cpu_at_measure = Some(c);
    }
    let mut all = WorkerStats::default();
    for t in tasks {
        let s = t.await?;
        all.latencies.extend(s.latencies);
        all.non_2xx += s.non_2xx;
        all.transport_errors += s.transport_errors;
    }
    let elapsed = end.saturating_duration_since(measure_from).as_secs_f64().max(f64::EPSILON);
    let cpu_cores = match (cpu_at_measure, process_cpu_secs()) {
        (Some(a), Some(b)) => Some(((b - a) / elapsed * 1000.0).round() / 1000.0),
        _ => None,
    };
    let api = sb.report();
    sb.shutdown().await;

    let total = all.latencies.len() as u64;
    let errors = all.non_2xx + all.transport_errors;
    let rps = total as f64 / elapsed;
    let mut lat: Vec<u32> = all.latencies.iter().map(|&(_, us)| us).collect();
    lat.sort_unstable();
    let by_kind: Vec<serde_json::Value> = Kind::ALL
        .iter()
        .map(|&k| {
            let mut l: Vec<u32> = all.latencies.iter().filter(|(kk, _)| *kk == k).map(|&(_, us)| us).collect();
            l.sort_unstable();
            serde_json::json!({
                "kind": k.name(),
                "requests": l.len(),
                "p50_ms": percentile(&l, 0.50),
                "p99_ms": percentile(&l, 0.99),
            })
        })
        .collect();
    let out = serde_json::json!({
        "requests_per_sec": rps.round(),
        "requests": total,
        "errors": errors,
        "non_2xx": all.non_2xx,
        "transport_errors": all.transport_errors,
        "p50_ms": percentile(&lat, 0.50),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": percentile(&lat, 1.0),
        "duration_secs": elapsed,
        "warmup_secs": args.warmup,
        "connections": args.connections,
        "preload": args.preload,
        "legs": targets.len(),
        "process_cpu_cores": cpu_cores,
        // Requests per CPU-second of this process (client and server together): stable under machine contention.
        "requests_per_process_cpu_sec": cpu_cores.filter(|c| *c > 0.0).map(|c| (rps / c).round()),
        "server_api_requests_total": serde_json::to_value(&api.api).ok().and_then(|v| v.get("total").cloned()),
        "by_kind": by_kind,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    });
    if args.json {
        println!("{out}");
    } else {
        println!(
            "sandbox API throughput: {rps:.0} req/s over {elapsed:.1} s from {} keep-alive connections (preload {}, {} legs)",
            args.connections,
            args.preload,
            targets.len()
        );
        println!("  requests {total}, errors {errors} (non-2xx {}, transport {})", all.non_2xx, all.transport_errors);
        println!(
            "  latency p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0)
        );
        for k in &by_kind {
            println!(
                "  {:<18} {:>8} requests, p50 {:.3} ms, p99 {:.3} ms",
                k["kind"].as_str().unwrap_or(""),
                k["requests"],
                k["p50_ms"].as_f64().unwrap_or(0.0),
                k["p99_ms"].as_f64().unwrap_or(0.0)
            );
        }
        if let Some(c) = cpu_cores.filter(|c| *c > 0.0) {
            println!(
                "  process CPU {c:.2} cores (load client and sandbox share this process and the machine): {:.0} \
                 requests per process CPU-second",
                rps / c
            );
        }
    }
    anyhow::ensure!(total > 0, "no request completed");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(args))
}
