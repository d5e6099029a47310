//! `wrapup outbox list|retry|replay|sinks`: operating the outbox (docs/OUTBOX.md) on a configuration's store.
//!
//! A running `wrapup serve` picks up what these commands change within its poll interval (one second): a
//! retried dead letter, a replayed message, a sink enabled again. Data goes to stdout (a table, or `--json`),
//! problems to stderr.

use crate::serve::load_config;
use jiff::{SignedDuration, Timestamp};
use std::process::ExitCode;
use std::sync::Arc;
use wrapup_config::Config;
use wrapup_store::{Delivery, DeliveryFilter, DeliveryState, Resend, SinkState, Store};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum OutboxCommand {
    /// Deliveries, newest message first: what each sink got, is waiting for, or gave up on (dead letters).
    List(ListArgs),
    /// Send dead letters (or one message) again, with a new `max_age`; `--enable` turns disabled sinks on again.
    Retry(RetryArgs),
    /// Send again what was delivered since a time (same `webhook-id`, same body): for a receiver that lost data.
    Replay(ReplayArgs),
    /// The configured sinks, whether each is disabled, and their deliveries by state.
    Sinks(SinksArgs),
}

pub use crate::serve::ConfigAndJson as Common;

#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub sink: Option<String>,
    /// pending, delivered or dead.
    #[arg(long, value_parser = parse_state)]
    pub state: Option<DeliveryState>,
    /// Messages written since: a time (RFC 3339) or a duration ago (`2h`, `30m`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<Since>,
    /// A message id (`msg_…`).
    #[arg(long)]
    pub message: Option<String>,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RetryArgs {
    #[command(flatten)]
    pub common: Common,
    /// The message to send again (`msg_…`).
    #[arg(conflicts_with = "dead")]
    pub message: Option<String>,
    /// Every dead letter (of `--sink`, or of all sinks).
    #[arg(long)]
    pub dead: bool,
    #[arg(long)]
    pub sink: Option<String>,
    /// Enable the sink (`--sink`, or every disabled one) that a 410 disabled.
    #[arg(long)]
    pub enable: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub common: Common,
    /// Deliveries made since: a time (RFC 3339) or a duration ago (`2h`, `30m`).
    #[arg(long, value_parser = parse_since)]
    pub since: Since,
    #[arg(long)]
    pub sink: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SinksArgs {
    #[command(flatten)]
    pub common: Common,
}

/// A point in time, or a duration before now.
#[derive(Debug, Clone, Copy)]
pub enum Since {
    At(Timestamp),
    Ago(SignedDuration),
}

impl Since {
    pub fn resolve(self, now: Timestamp) -> Timestamp {
        match self {
            Since::At(t) => t,
            Since::Ago(d) => now.checked_sub(d).unwrap_or(Timestamp::MIN),
        }
    }
}

fn parse_since(s: &str) -> Result<Since, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(Since::At(t));
    }
    match s.trim().parse::<SignedDuration>() {
        Ok(d) if d.is_positive() => Ok(Since::Ago(d)),
        _ => Err(format!("{s:?} is neither a time (2026-03-01T12:00:00Z) nor a duration ago (2h, 30m)")),
    }
}

fn parse_state(s: &str) -> Result<DeliveryState, String> {
    DeliveryState::parse(s).ok_or_else(|| format!("{s:?} is not a state: pending, delivered or dead"))
}

pub async fn run(command: &OutboxCommand) -> anyhow::Result<ExitCode> {
    let common = match command {
        OutboxCommand::List(a) => &a.common,
        OutboxCommand::Retry(a) => &a.common,
        OutboxCommand::Replay(a) => &a.common,
        OutboxCommand::Sinks(a) => &a.common,
    };
    let config = load_config(&common.config)?;
    let store: Arc<dyn Store> = crate::serve::open_store(&config).await?;
    let now = Timestamp::now();
    match command {
        OutboxCommand::List(a) => {
            let filter = DeliveryFilter {
                sink: a.sink.clone(),
                state: a.state,
                since: a.since.map(|s| s.resolve(now)),
                message_id: a.message.clone(),
                leg: None,
                limit: Some(a.limit),
            };
            let rows = store.outbox_list(&filter).await?;
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", table(&rows));
            }
        }
        OutboxCommand::Retry(a) => {
            check_sink(&config, a.sink.as_deref())?;
            let mut report = serde_json::Map::new();
            if a.enable {
                let mut enabled = Vec::new();
                for s in store.outbox_sinks().await? {
                    if s.disabled_at.is_some() && a.sink.as_ref().is_none_or(|want| *want == s.name) {
                        let cleared = SinkState {
                            name: s.name.clone(),
                            disabled_at: None,
                            disabled_status: None,
                            disabled_reason: None,
                        };
                        store.outbox_set_sink(&cleared).await?;
                        enabled.push(s.name);
                    }
                }
                report.insert("enabled".into(), enabled.into());
            }
            let what = match (&a.message, a.dead) {
                (Some(id), _) => Some(Resend::Message { id: id.clone(), sink: a.sink.clone() }),
                (None, true) => Some(Resend::Dead { sink: a.sink.clone() }),
                (None, false) if a.enable => None,
                (None, false) => anyhow::bail!("name a message (`msg_…`), or --dead, or --enable"),
            };
            if let Some(what) = what {
                let n = store.outbox_resend(&what, now, until(&config, a.sink.as_deref(), now)).await?;
                report.insert("resent".into(), n.into());
            }
            print_report(a.common.json, &report);
        }
        OutboxCommand::Replay(a) => {
            check_sink(&config, a.sink.as_deref())?;
            let what = Resend::Delivered { since: a.since.resolve(now), sink: a.sink.clone() };
            let n = store.outbox_resend(&what, now, until(&config, a.sink.as_deref(), now)).await?;
            let mut report = serde_json::Map::new();
            report.insert("resent".into(), n.into());
            print_report(a.common.json, &report);
        }
        OutboxCommand::Sinks(a) => {
            let rows = wrapup_service::outbox::admin::report(&config.sinks, store.as_ref()).await?;
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in &rows {
                    println!(
                        "{:<16} {:<9} pending {:>6}  delivered {:>8}  dead {:>6}  {}",
                        r.name,
                        if r.disabled.is_none() { "enabled" } else { "DISABLED" },
                        r.pending,
                        r.delivered,
                        r.dead,
                        r.url
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn check_sink(config: &Config, sink: Option<&str>) -> anyhow::Result<()> {
    if let Some(name) = sink {
        anyhow::ensure!(config.sinks.iter().any(|s| s.name == name), "no sink is named {name:?} in the configuration");
    }
    Ok(())
}

/// When a resent message is given up: its sink's `max_age` from now (the longest, for every sink).
fn until(config: &Config, sink: Option<&str>, now: Timestamp) -> Timestamp {
    let age = config
        .sinks
        .iter()
        .filter(|s| sink.is_none_or(|n| n == s.name))
        .map(|s| s.max_age)
        .max()
        .unwrap_or(wrapup_config::DEFAULT_SINK_MAX_AGE);
    now.checked_add(SignedDuration::try_from(age).unwrap_or(SignedDuration::from_hours(24))).unwrap_or(Timestamp::MAX)
}

fn print_report(json: bool, report: &serde_json::Map<String, serde_json::Value>) {
    if json {
        println!("{}", serde_json::Value::Object(report.clone()));
    } else {
        for (k, v) in report {
            println!("{k}: {v}");
        }
    }
}

fn table(rows: &[Delivery]) -> String {
    let mut out = format!(
        "{:<34} {:<12} {:<9} {:>3} {:>4} {:<14} {:<20} {}\n",
        "MESSAGE", "SINK", "STATE", "TRY", "LAST", "OUTCOME", "CREATED", "LEG"
    );
    for d in rows {
        out.push_str(&format!(
            "{:<34} {:<12} {:<9} {:>3} {:>4} {:<14} {:<20} {}\n",
            d.message_id,
            d.sink,
            d.state.as_str(),
            d.attempts,
            d.last_status.map_or("-".to_string(), |s| s.to_string()),
            d.outcome.as_str(),
            format!("{:.0}", d.created_at),
            d.leg
        ));
    }
    out
}
