//! `wrapup reconcile`: one reconciler pass over every connection of a configuration, against its store.
//!
//! The store is the configuration's (`data_dir/wrapup.db`); a `wrapup serve` may be running on it (SQLite WAL lets
//! both work): the legs this pass finds are ingested like events, and the service's claim loop picks them up within
//! half a second. Progress goes to stderr (a bar on a terminal, nothing otherwise; no colours under `NO_COLOR`), the
//! findings to stdout (a table, or `--json`). Exit status 0 when every pass ran without error, 1 otherwise.

use crate::serve::load_config;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jiff::SignedDuration;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::sync::Notify;
use wrapup_clock::ScaledClock;
use wrapup_core::clock::SharedClock;
use wrapup_service::reconciler::{PassReport, Reconciler};
use wrapup_store::Store;

#[derive(Debug, Clone, clap::Args)]
pub struct ReconcileArgs {
    /// The configuration file (its connections and its data directory).
    #[arg(long, short)]
    pub config: PathBuf,
    /// How far back to look, by conversation start (e.g. `2h`, `30m`, `PT90M`); default: each connection's
    /// `reconcile_window_secs`.
    #[arg(long, value_parser = parse_since)]
    pub since: Option<SignedDuration>,
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_since(s: &str) -> Result<SignedDuration, String> {
    let d: SignedDuration = s.trim().parse().map_err(|e| format!("{s:?} is not a duration (e.g. 2h, 30m): {e}"))?;
    if d.is_negative() || d.is_zero() {
        return Err(format!("{s:?} must be a positive duration"));
    }
    Ok(d)
}

pub async fn run(args: &ReconcileArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.config)?;
    if config.store == wrapup_config::StoreConfig::Sqlite {
        let db = config.data_dir.join("wrapup.db");
        anyhow::ensure!(
            db.exists(),
            "no store at {} (run `wrapup serve` with this configuration first, or check data_dir)",
            db.display()
        );
    }
    let store: Arc<dyn Store> = crate::serve::open_store(&config).await?;
    let clock: SharedClock = Arc::new(ScaledClock::system());
    let mut reports = Vec::new();
    let mut failed = false;
    for conn in &config.connections {
        if conn.kind == wrapup_core::Platform::Cxone {
            let since = args
                .since
                .unwrap_or(SignedDuration::try_from(conn.reconcile_window).unwrap_or(SignedDuration::from_hours(1)));
            let report = cxone_pass(conn, &store, &clock, since).await?;
            failed |= !report.errors.is_empty();
            reports.push(report);
            continue;
        }
        let (platform, client) = wrapup_service::build::connection_for(conn, clock.clone())
            .with_context(|| format!("connection {:?}", conn.name))?;
        let Some(client) = client else {
            eprintln!("connection {:?}: no reconciler for this platform yet; skipped", conn.name);
            continue;
        };
        let mut settings = wrapup_service::build::reconcile_settings(conn);
        if let Some(since) = args.since {
            settings.window = since;
        }
        let mut system_code_ids: std::collections::HashSet<String> =
            wrapup_service::build::GENESYS_SYSTEM_CODES.iter().map(|s| s.to_string()).collect();
        system_code_ids.extend(conn.system_codes.iter().cloned());
        let reconciler = Reconciler {
            connection: conn.name.clone(),
            client,
            platform,
            store: store.clone(),
            clock: clock.clone(),
            system_code_ids,
            settings,
            wake: None,
            trigger: Arc::new(Notify::new()),
            // One pass asked for by an operator: it runs whoever leads the periodic ones.
            leases: None,
        };
        let bar = progress_bar(&conn.name);
        let report = reconciler
            .pass(&|p| {
                if let Some(total) = p.pages_total {
                    bar.set_length(total as u64);
                }
                bar.set_position(p.pages_done as u64);
                bar.set_message(format!("{} legs checked", p.legs_checked));
            })
            .await
            .with_context(|| format!("connection {:?}: the reconcile pass failed", conn.name))?;
        bar.finish_and_clear();
        failed |= !report.errors.is_empty();
        reports.push(report);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "connections": reports }))?);
    } else {
        print!("{}", table(&reports));
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// One pass over a CXone business unit: the contacts completed in the window (`contacts/completed`, by start
/// date; at most 30 days, the platform's limit) with the disposition each ended with. Their events go through the
/// normal intake path: a missed agent disposition becomes `agent_won`, a missed closing `expired`, and our own
/// writes are confirmed.
async fn cxone_pass(
    conn: &wrapup_config::ConnectionConfig,
    store: &Arc<dyn Store>,
    clock: &SharedClock,
    since: SignedDuration,
) -> anyhow::Result<PassReport> {
    use wrapup_connectors::cxone::CompletedQuery;
    use wrapup_core::EventKind;
    let platform = wrapup_service::build::cxone_platform(conn, clock.clone())?;
    let bar = progress_bar(&conn.name);
    let now = clock.now();
    let since = since.min(SignedDuration::from_hours(30 * 24));
    let start = now.checked_sub(since).unwrap_or(now);
    let query = CompletedQuery::Range { start: format!("{start:.3}"), end: format!("{now:.3}") };
    let mut report = PassReport { connection: conn.name.clone(), ..Default::default() };
    let priority = wrapup_connectors::budget::Priority::backfill();
    match wrapup_connectors::cxone::acw::reconcile(platform.client(), &query, priority).await {
        Ok((events, _, requests)) => {
            report.pages = requests as usize;
            report.conversations =
                events.iter().map(|e| &e.leg.participant).collect::<std::collections::HashSet<_>>().len();
            report.legs_checked = report.conversations;
            bar.set_length(1);
            bar.set_position(1);
            let results = store.ingest(&events, clock.now()).await.context("storing the completed contacts")?;
            for (e, r) in events.iter().zip(results) {
                if r != wrapup_store::Ingested::New {
                    continue;
                }
                match e.kind {
                    EventKind::CodeRecorded { .. } => report.found_codes += 1,
                    EventKind::LegClosed | EventKind::LegClosedUnread => report.found_closed += 1,
                    EventKind::LegEnded { .. } => report.found_ended += 1,
                    // The platform's reports carry no CRM decisions.
                    EventKind::DecisionArrived { .. } | EventKind::OperatorResolved { .. } => {}
                }
            }
        }
        Err(e) => report.errors.push(e.to_string()),
    }
    bar.finish_and_clear();
    Ok(report)
}

/// A bar on stderr when it is a terminal; hidden otherwise. `NO_COLOR` drops the colours.
fn progress_bar(connection: &str) -> ProgressBar {
    let tty = std::io::stderr().is_terminal();
    let bar = ProgressBar::with_draw_target(
        Some(1),
        if tty { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let template = if no_color {
        "{prefix} [{bar:30}] {pos}/{len} pages, {msg}"
    } else {
        "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} pages, {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("reconciling {connection}"));
    bar
}

/// The findings, one block per connection.
pub fn table(reports: &[PassReport]) -> String {
    let mut out = String::new();
    for r in reports {
        out.push_str(&format!("connection {}\n", r.connection));
        for (k, v) in [
            ("analytics pages", r.pages as u64),
            ("conversations", r.conversations as u64),
            ("agent legs checked", r.legs_checked as u64),
            ("found: legs whose end was missed", r.found_ended),
            ("found: codes that were missed", r.found_codes),
            ("found: windows closed uncoded", r.found_closed),
            ("our writes confirmed", r.confirmed),
            ("our writes changed by the agent", r.agent_changed),
            ("errors", r.errors.len() as u64),
        ] {
            out.push_str(&format!("  {k:<34} {v:>8}\n"));
        }
        for e in r.errors.iter().take(20) {
            out.push_str(&format!("  error: {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_friendly_and_iso_durations_and_refuses_the_rest() {
        assert_eq!(parse_since("2h").unwrap(), SignedDuration::from_hours(2));
        assert_eq!(parse_since("30m").unwrap(), SignedDuration::from_mins(30));
        assert_eq!(parse_since("PT90M").unwrap(), SignedDuration::from_mins(90));
        assert!(parse_since("0s").is_err());
        assert!(parse_since("-5m").is_err());
        assert!(parse_since("soon").is_err());
    }
}
