//! `wrapup report`: per connection, over a time range, from the store alone — outcomes, coverage, usage by code,
//! latency, calls per applied code and shadow agreement (docs/REPORT.md). The figures come from `wrapup_report`,
//! which `GET /api/v1/report` calls too. On a Genesys connection the usage is then checked against the platform's
//! conversation aggregates (one query through the connection's client and budget) unless `--no-platform-check`.

use anyhow::Context;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use wrapup_core::Platform;
use wrapup_report::{ConnectionReport, ConnectionSpec, ConnectionView, PlatformCheck, Report, Window};

/// How long the platform check may take (its query retries transient failures) before the report goes without it.
const PLATFORM_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The configuration file: its connections, and its store, which is only read.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Legs recorded since then: a duration back from now (`7d`, `12h`, `30m`) or an RFC 3339 time. Default: every
    /// leg.
    #[arg(long, conflicts_with = "from")]
    pub since: Option<String>,
    /// Legs recorded at or after this RFC 3339 time.
    #[arg(long)]
    pub from: Option<String>,
    /// Legs recorded before this RFC 3339 time.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this connection.
    #[arg(long)]
    pub connection: Option<String>,
    /// Do not ask the platform for its own counts (Genesys aggregates by wrap-up code).
    #[arg(long)]
    pub no_platform_check: bool,
    /// Print the report as one JSON document instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `wrapup report`. Exit status 0 with a report.
pub async fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let config = crate::serve::load_config(&args.config)?;
    let now = jiff::Timestamp::now();
    let window = Window::parse(args.since.as_deref(), args.from.as_deref(), args.to.as_deref(), now)
        .map_err(|e| anyhow::anyhow!("--{e}"))?;
    if let Some(name) = &args.connection {
        anyhow::ensure!(config.connection(name).is_some(), "no connection named {name:?} in the config");
    }
    let specs: Vec<ConnectionSpec> = config
        .connections
        .iter()
        .filter(|c| args.connection.as_ref().is_none_or(|n| *n == c.name))
        .map(|c| ConnectionSpec { name: c.name.clone(), platform: c.kind, system_codes: system_codes(c) })
        .collect();
    let store = crate::simulate::open(&config, None).await?;
    let mut report = wrapup_report::build(store.as_ref(), &specs, window).await.context("reading the store")?;
    if !args.no_platform_check {
        for (conn, spec) in report.connections.iter_mut().zip(&specs) {
            let catalog = store.get_catalog(&spec.name).await?.map(|(c, _)| c);
            let view = ConnectionView { catalog, system_codes: spec.system_codes.clone() };
            let range = interval(conn, window, now);
            conn.platform_check = Some(platform_check(&config, conn, &view, range).await);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// The codes the connection's platform sets by itself: the configured ones, and Genesys's timeout code.
fn system_codes(conn: &wrapup_config::ConnectionConfig) -> std::collections::BTreeSet<String> {
    let mut codes: std::collections::BTreeSet<String> = conn.system_codes.iter().cloned().collect();
    if conn.kind == Platform::Genesys {
        codes.extend(wrapup_service::build::GENESYS_SYSTEM_CODES.iter().map(|s| s.to_string()));
    }
    codes
}

/// The platform query's interval: the report's range; an open start a minute before the first leg recorded, an
/// open end a minute after the later of now and the last change to a leg. The platform counts a leg when its
/// window closes, which is after its agent's part ended (within seconds of wrapup recording the leg, or later), so
/// every leg of an open range falls in the interval.
fn interval(
    report: &ConnectionReport,
    window: Window,
    now: jiff::Timestamp,
) -> Option<(jiff::Timestamp, jiff::Timestamp)> {
    let (first, last) = report.span?;
    let minute = jiff::SignedDuration::from_mins(1);
    let start = window.from.unwrap_or_else(|| first.checked_sub(minute).unwrap_or(first));
    let end = window.to.unwrap_or_else(|| last.max(now).checked_add(minute).unwrap_or(last));
    Some((start, end))
}

/// The connection's usage checked against the platform's own counts, or why it could not be.
async fn platform_check(
    config: &wrapup_config::Config,
    report: &ConnectionReport,
    view: &ConnectionView,
    range: Option<(jiff::Timestamp, jiff::Timestamp)>,
) -> PlatformCheck {
    if report.platform != Platform::Genesys.as_str() {
        return PlatformCheck::unavailable(
            "not available on CXone: it has no aggregate of dispositions by code to compare with",
        );
    }
    let Some((start, end)) = range else {
        return PlatformCheck::unavailable("no legs in the range: nothing to compare");
    };
    let c = match crate::catalog::connection::connection(config, Some(&report.name)) {
        Ok((_, c)) => c,
        Err(e) => return PlatformCheck::unavailable(format!("no client for the platform: {e:#}")),
    };
    let slice = crate::catalog::connection::share_budget(config, &c).await;
    let usage = tokio::time::timeout(PLATFORM_CHECK_TIMEOUT, c.api.usage(start, end)).await;
    crate::catalog::connection::release(slice).await;
    match usage {
        Ok(Ok(usage)) => PlatformCheck::compare(report, &usage.by_code, view, format!("{start}/{end}")),
        // The platform's answer is summarised, never echoed whole: it could carry what a log must not.
        Ok(Err(e)) => PlatformCheck::unavailable(format!("the platform did not answer the aggregates query: {e}")),
        Err(_) => PlatformCheck::unavailable(format!(
            "the platform did not answer the aggregates query within {} s",
            PLATFORM_CHECK_TIMEOUT.as_secs()
        )),
    }
}

fn opt(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v}"))
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{:.1}%", v * 100.0))
}

/// The report as tables for people.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "report from {} to {}",
        report.from.as_deref().unwrap_or("the first leg"),
        report.to.as_deref().unwrap_or("the last leg")
    );
    for c in &report.connections {
        let o = &c.outcomes;
        let _ = writeln!(out, "\nconnection {} ({}): {} leg(s)", c.name, c.platform, c.legs);
        let _ = writeln!(
            out,
            "  outcomes: applied {}, agent_won {}, agent_changed {}, no_rule {}, shadow {}, expired {}, no_acw {}, \
             review {}, open {}",
            o.applied, o.agent_won, o.agent_changed, o.no_rule, o.shadow, o.expired, o.no_acw, o.review, o.open
        );
        let cov = &c.coverage;
        let _ = writeln!(
            out,
            "  coverage: {} of {} finished leg(s) with a window ended with a business code ({})",
            cov.with_business_code,
            cov.legs,
            pct(cov.rate)
        );
        let l = &c.latency;
        let _ = writeln!(
            out,
            "  leg end → our code: p50 {} s, p90 {} s, p99 {} s ({} leg(s))",
            opt(l.p50_seconds),
            opt(l.p90_seconds),
            opt(l.p99_seconds),
            l.count
        );
        let k = &c.calls;
        let _ = writeln!(
            out,
            "  platform calls for these legs: {} for {} applied code(s): {} per applied code",
            k.platform_calls,
            k.applied,
            opt(k.per_applied_code)
        );
        if !c.usage.is_empty() {
            let width = c.usage.iter().map(|u| u.code.name.chars().count()).max().unwrap_or(4).max(4);
            let _ = writeln!(out, "  usage by code:");
            let _ = writeln!(out, "    {:<width$}  {:<7} {:>6}  queues", "code", "by", "legs");
            for u in &c.usage {
                let by =
                    serde_json::to_value(u.by).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                let queues: Vec<String> = u.queues.iter().map(|q| format!("{} {}", q.queue, q.legs)).collect();
                let _ = writeln!(out, "    {:<width$}  {by:<7} {:>6}  {}", u.code.name, u.legs, queues.join(", "));
            }
        }
        for r in &c.shadow_agreement {
            let _ = writeln!(
                out,
                "  shadow rule {:?}: agents agreed on {} of {} leg(s) ({})",
                r.rule,
                r.agreed,
                r.legs,
                pct(r.rate)
            );
            for cell in &r.matrix {
                let _ = writeln!(out, "    decided {:?} × agent {:?}: {}", cell.decided, cell.agent, cell.legs);
            }
        }
        if let Some(check) = &c.platform_check {
            let _ = writeln!(out, "  platform check: {}", check.note);
            if let Some(interval) = &check.interval {
                let _ = writeln!(out, "    interval {interval}");
            }
            for code in check.codes.iter().filter(|c| c.why.is_some()) {
                let _ = writeln!(
                    out,
                    "    {}: wrapup {}, platform {}: {}",
                    code.code.name,
                    code.wrapup_legs,
                    code.platform_legs,
                    code.why.as_deref().unwrap_or_default()
                );
            }
        }
    }
    out
}
