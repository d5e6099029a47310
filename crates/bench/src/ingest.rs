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
//! The generator shares the two cores with the service: the figures are what one machine does with both on it. It
//! therefore writes its requests as plain text on raw keep-alive connections ([`RawConnection`]) instead of using
//! an HTTP client library. `store_operations_per_commit` shows the store's write batching at full load.

use super::{percentile, round, show, BenchArgs, Report};
use anyhow::Context;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wrapup_demo::EnvOptions;
use wrapup_sandbox::SandboxConfig;
use wrapup_store::{SqliteStore, Store};

const NO_MATCH: &str =
    "[[rules]]\nname = \"nothing here\"\ncode = \"Resolved\"\ntiming = \"immediate\"\n[rules.when]\nqueue = \"Nowhere\"\n";

// Genesys ids are UUIDs, and intake refuses anything else; one participant, session, queue and user for all legs.
const PARTICIPANT: &str = "00000000-0000-4000-8000-0000000000a1";
const SESSION: &str = "00000000-0000-4000-8000-0000000000b1";
const QUEUE: &str = "00000000-0000-4000-8000-0000000000c1";
const USER: &str = "00000000-0000-4000-8000-0000000000d1";

/// One `user.end` EventBridge envelope for a fresh leg (`conversation` must be a UUID).
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
                "eventTime": at_ms, "conversationId": conversation, "participantId": PARTICIPANT,
                "sessionId": SESSION, "mediaType": "VOICE", "direction": "inbound", "queueId": QUEUE, "userId": USER,
                "interactingDurationMs": 30000, "disconnectType": "peer",
            },
            "metadata": {"CorrelationId": uuid::Uuid::new_v4().to_string()},
        }
    })
}

/// The same envelope as [`user_end`], written straight as text: the generator shares the two cores with the service,
/// so it should spend as little as it can (building a `serde_json::Value` per event cost it more than the service
/// spent parsing it).
fn user_end_text(conversation: &str, at_ms: i64) -> String {
    format!(
        concat!(
            r#"{{"version":"0","id":"{id}","detail-type":"v2.detail.events.conversation.{{id}}.user.end","#,
            r#""source":"aws.partner/genesys.com/cloud/bench/wrapup-bench","account":"000000000000","#,
            r#""time":"2026-01-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{{"#,
            r#""topicName":"v2.detail.events.conversation.{conv}.user.end","version":"2","eventBody":{{"#,
            r#""eventTime":{at},"conversationId":"{conv}","participantId":"{PARTICIPANT}","sessionId":"{SESSION}","#,
            r#""mediaType":"VOICE","direction":"inbound","queueId":"{QUEUE}","userId":"{USER}","#,
            r#""interactingDurationMs":30000,"disconnectType":"peer"}},"metadata":{{"CorrelationId":"{corr}"}}}}}}"#
        ),
        id = uuid::Uuid::new_v4(),
        conv = conversation,
        at = at_ms,
        corr = uuid::Uuid::new_v4(),
        PARTICIPANT = PARTICIPANT,
        SESSION = SESSION,
        QUEUE = QUEUE,
        USER = USER,
    )
}

/// The `n`th conversation of phase `run`, as a Genesys id (a UUID).
fn conversation_id(run: u32, n: u64) -> String {
    format!("{run:08x}-0000-4000-8000-{:012x}", n & 0xffff_ffff_ffff)
}

struct Generator {
    /// The services to send to: connection `i` goes to `addrs[i % len]`.
    addrs: Vec<std::net::SocketAddr>,
    path: String,
    key: String,
    batch: usize,
    next: AtomicU64,
    /// Tells the phases' conversations apart.
    run: u32,
}

impl Generator {
    fn body(&self) -> String {
        let now = jiff::Timestamp::now().as_millisecond();
        let mut items = (0..self.batch)
            .map(|_| user_end_text(&conversation_id(self.run, self.next.fetch_add(1, Ordering::Relaxed)), now));
        if self.batch == 1 {
            items.next().unwrap_or_default()
        } else {
            format!("[{}]", items.collect::<Vec<_>>().join(","))
        }
    }

    /// Sends one request on `conn`, connection `index` (connecting first when there is none, or after a failure);
    /// `true` on 202.
    async fn send(&self, index: usize, conn: &mut Option<RawConnection>) -> bool {
        if conn.is_none() {
            *conn = RawConnection::connect(self.addrs[index % self.addrs.len()]).await.ok();
        }
        let Some(c) = conn.as_mut() else { return false };
        let body = self.body();
        let post = c.post(&self.path, &self.key, body.as_bytes());
        match tokio::time::timeout(Duration::from_secs(30), post).await {
            Ok(Ok(status)) => status == 202,
            _ => {
                *conn = None;
                false
            }
        }
    }
}

/// A minimal HTTP/1.1 keep-alive client: one request at a time on one connection, answers with a `Content-Length`
/// body (what the service sends). reqwest cost the generator about as much CPU per request as the service spent
/// handling it, on the same two cores; a real sender runs elsewhere.
pub(crate) struct RawConnection {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    request: Vec<u8>,
    line: String,
}

impl RawConnection {
    pub(crate) async fn connect(addr: std::net::SocketAddr) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: tokio::io::BufReader::new(stream), request: Vec::new(), line: String::new() })
    }

    /// POSTs `body`; returns the status code once the whole answer is read.
    pub(crate) async fn post(&mut self, path: &str, key: &str, body: &[u8]) -> std::io::Result<u16> {
        use std::io::{Error, ErrorKind, Write};
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let bad = |what: &str| Error::new(ErrorKind::InvalidData, what.to_string());
        self.request.clear();
        write!(
            self.request,
            "POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\nx-wrapup-intake-key: {key}\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        )?;
        self.request.extend_from_slice(body);
        self.stream.get_mut().write_all(&self.request).await?;
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "the service closed the connection"));
        }
        let status: u16 = self.line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("status line"))?;
        let mut length = None;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Err(Error::new(ErrorKind::UnexpectedEof, "the answer ended in its headers"));
            }
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>().map_err(|_| bad("content-length"))?);
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    return Err(bad("chunked answers are not supported by this generator"));
                }
            }
        }
        let mut rest = vec![0; length.ok_or_else(|| bad("no content-length"))?];
        self.stream.read_exact(&mut rest).await?;
        Ok(status)
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
    for index in 0..connections {
        let gen = gen.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = None;
            let (mut ok, mut err, mut lat) = (0u64, 0u64, Vec::new());
            let interval = rate.map(|r| Duration::from_secs_f64(gen.batch as f64 * connections as f64 / r.max(1.0)));
            let mut due = Instant::now();
            while started.elapsed() < duration {
                if interval.is_some() {
                    tokio::time::sleep_until(due.into()).await;
                } else {
                    due = Instant::now();
                }
                let sent = gen.send(index, &mut conn).await;
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
            for p in wrapup_connectors::genesys::events::parse_eventbridge(wrapup_demo::CONNECTION, &env, &system)? {
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
    let database = super::BenchDatabase::create(args).await?;
    let env = super::start_with(EnvOptions {
        sandbox,
        rules: NO_MATCH.to_string(),
        speed: 1.0,
        requests_per_minute: 300,
        data_dir: args.data_dir.clone(),
        cxone: None,
        store: database.as_ref().map(|d| d.url.clone()),
        lookup_fallback: None,
    })
    .await?;
    let service = env.service.as_ref().context("the service is not running")?;
    let key = env.config.connections[0].intake.api_key.as_ref().context("no intake key")?.expose().to_string();
    let addr: std::net::SocketAddr =
        service.base_url().trim_start_matches("http://").parse().context("the service's address")?;
    let replicas = match &database {
        Some(database) => database.start_replicas(&env, args.replicas).await?,
        None => Vec::new(),
    };
    let mut addrs = vec![addr];
    for r in &replicas {
        addrs.push(r.base_url().trim_start_matches("http://").parse().context("a replica's address")?);
    }
    let gen = |run: u32, addrs: &[std::net::SocketAddr]| {
        Arc::new(Generator {
            addrs: addrs.to_vec(),
            path: format!("/intake/{}", wrapup_demo::CONNECTION),
            key: key.clone(),
            batch,
            next: AtomicU64::new(0),
            run,
        })
    };
    if !args.json {
        eprintln!(
            "[ingest] throughput: {connections} connections, {batch} event(s) per request, {} s",
            duration.as_secs()
        );
    }
    let one = if addrs.len() > 1 {
        if !args.json {
            eprintln!("[ingest] throughput against one of the {} replicas first", addrs.len());
        }
        Some(drive(gen(3, &addrs[..1]), connections, duration, None).await)
    } else {
        None
    };
    let writes_before = env.sqlite.as_ref().map(|s| s.write_stats());
    let max = drive(gen(1, &addrs), connections, duration, None).await;
    let writes = env.sqlite.as_ref().map(|s| s.write_stats());
    let (commits, operations) = match (writes_before, writes) {
        (Some(before), Some(after)) => (after.commits - before.commits, after.operations - before.operations),
        _ => (0, 0),
    };
    let at_rate_secs = Duration::from_secs((duration.as_secs() / 2).max(3));
    if !args.json {
        eprintln!("[ingest] latency at {rate} events/s for {} s", at_rate_secs.as_secs());
    }
    let paced = drive(gen(2, &addrs), connections, at_rate_secs, Some(rate)).await;
    let legs = env.legs().await?.len();
    let env_is_sqlite = env.sqlite.is_some();
    let data_path = env.data_path.clone();
    for r in replicas {
        r.shutdown().await;
    }
    env.finish().await?;
    let on_postgres = database.is_some();
    if let Some(database) = database {
        database.drop().await?;
    }
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
    r.field("store", if on_postgres { "postgres" } else { "sqlite" });
    r.field("replicas", addrs.len());
    if let Some(one) = &one {
        let one_rate = round(one.events as f64 / one.secs, 0);
        r.field("events_per_s_one_replica", one_rate);
        r.field("ratio_to_one_replica", round(events_per_s / one_rate.max(1.0), 3));
    }
    if env_is_sqlite {
        r.field("store_commits_per_s", round(commits as f64 / max.secs, 0));
        r.field("store_operations_per_commit", round(operations as f64 / commits.max(1) as f64, 1));
    }
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
    r.row(
        "store commits/s, operations per commit (full load)",
        format!("{} / {}", round(commits as f64 / max.secs, 0), round(operations as f64 / commits.max(1) as f64, 1)),
    );
    r.row("SQLite alone: events/s in batches of 500", round(sqlite_500, 0));
    r.row("SQLite alone: commits/s (batches of 1)", round(sqlite_1, 0));
    r.row("intake / SQLite batched", round(events_per_s / sqlite_500.max(1.0), 3));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_envelope_is_the_json_one() {
        let mut text: serde_json::Value = serde_json::from_str(&user_end_text("c-1", 42)).unwrap();
        let mut json = user_end("c-1", 42);
        for v in [&mut text, &mut json] {
            v["id"] = "-".into();
            v["detail"]["metadata"]["CorrelationId"] = "-".into();
        }
        assert_eq!(text, json);
    }

    #[test]
    fn generated_conversations_are_genesys_ids() {
        for (run, n) in [(1, 0), (2, 7), (u32::MAX, u64::MAX)] {
            let id = conversation_id(run, n);
            assert!(wrapup_core::ids::is_uuid(&id), "{id}");
        }
        assert_ne!(conversation_id(1, 5), conversation_id(2, 5));
    }
}
