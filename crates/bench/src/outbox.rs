//! `--scenario outbox`: how many outbox messages per second the service delivers to a local sink.
//!
//! The store (SQLite, a file with `synchronous = FULL`, as deployed) holds `--legs` finished legs (default 20,000
//! when `--legs` is left at its default), each with its `leg.finished` message, written by intake as in
//! production. The outbox then starts with one sink on loopback (an axum receiver in this process that answers
//! 204 at once), `concurrency` = `--connections` (default 64, at most 256): the figure is messages delivered
//! (routed, signed, POSTed, recorded) per wall second, from the outbox's start until the store shows every delivery
//! done.

use super::{round, BenchArgs, Report};
use anyhow::Context;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wrapup_config::{SigningSecret, SinkConfig, SinkFilter};
use wrapup_core::{Event, EventKind, LegFacts, LegKey};
use wrapup_store::{DeliveryState, SqliteStore, Store};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let messages = if args.legs == 1_000_000 { 20_000 } else { args.legs.max(1) };
    let concurrency = args.connections.clamp(1, 256);
    let dir = tempfile::tempdir()?;
    let path = args.data_dir.clone().unwrap_or_else(|| dir.path().to_path_buf()).join("wrapup.db");
    let store = Arc::new(SqliteStore::open(&path).await?);
    let clock = wrapup_clock::ScaledClock::system().shared();

    // The sink: counts what it is sent.
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |_body: axum::body::Bytes| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Finished legs, each with its message, in intake-sized batches.
    if !args.json {
        eprintln!("[outbox] writing {messages} finished legs");
    }
    let now = jiff::Timestamp::now();
    for chunk in (0..messages).collect::<Vec<_>>().chunks(500) {
        let events: Vec<Event> = chunk
            .iter()
            .flat_map(|n| {
                let leg = LegKey::new("bench", format!("conv-{n}"), format!("part-{n}"));
                let ended = Event {
                    leg: leg.clone(),
                    dedupe_key: format!("{leg}/end"),
                    occurred_at: now,
                    correlation_id: None,
                    kind: EventKind::LegEnded {
                        facts: Box::new(LegFacts {
                            queue_name: Some("Support".into()),
                            ended_at: Some(now),
                            acw_timeout_ms: Some(60_000),
                            ..Default::default()
                        }),
                    },
                };
                let coded = Event {
                    leg: leg.clone(),
                    dedupe_key: format!("{leg}/acw"),
                    occurred_at: now,
                    correlation_id: None,
                    kind: EventKind::CodeRecorded { code_id: Some("agent-code".into()), notes: None, system: false },
                };
                [ended, coded]
            })
            .collect();
        store.ingest(&events, now).await?;
    }
    let written = store.outbox_messages(None, 1).await?;
    anyhow::ensure!(!written.is_empty(), "no outbox message was written");

    let sink = SinkConfig {
        name: "bench".into(),
        url: url.parse().context("the sink's URL")?,
        secret: SigningSecret::parse(SECRET).map_err(anyhow::Error::msg)?,
        filter: SinkFilter::default(),
        mapping: BTreeMap::from([("agent-code".to_string(), "AGENT".to_string())]),
        max_age: Duration::from_secs(3600),
        timeout: Duration::from_secs(10),
        concurrency,
    };
    if !args.json {
        eprintln!("[outbox] delivering to a local sink, {concurrency} in flight");
    }
    let shutdown = wrapup_service::scheduler::Shutdown::default();
    let wake = Arc::new(tokio::sync::Notify::new());
    let started = Instant::now();
    let outbox = wrapup_service::outbox::start(
        store.clone(),
        clock,
        vec![sink],
        HashMap::new(),
        wrapup_service::outbox::OutboxSettings::default(),
        wake.clone(),
        shutdown.clone(),
    );
    wake.notify_one();
    let delivered = loop {
        let counts = store.outbox_counts().await?;
        let delivered = counts.get(&("bench".to_string(), DeliveryState::Delivered)).copied().unwrap_or(0);
        if delivered as usize >= messages {
            break delivered;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "not delivered within 10 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = started.elapsed().as_secs_f64();
    shutdown.cancel();
    for t in outbox.tasks {
        let _ = t.await;
    }
    let per_sec = delivered as f64 / elapsed;
    let sent = received.load(Ordering::Relaxed);
    let mut report = Report::new("outbox");
    report.field("messages", delivered);
    report.field("requests", sent);
    report.field("concurrency", concurrency as u64);
    report.field("seconds", round(elapsed, 2));
    report.field("deliveries_per_sec", round(per_sec, 0));
    report.row("messages delivered", delivered);
    report.row("requests the sink answered", sent);
    report.row("in flight", concurrency);
    report.row("seconds", format!("{elapsed:.2}"));
    report.row("deliveries/s", format!("{per_sec:.0}"));
    Ok(report)
}
