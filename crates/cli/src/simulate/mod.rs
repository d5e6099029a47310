//! `wrapup simulate`: replays the legs a store recorded through a candidate rule set, offline — no platform call —
//! and reports what the rules would have decided against what the store decided and what happened (docs/SIMULATE.md).
//!
//! This module reads: the configuration (connections, decision hooks, the store), the candidate rules (through the
//! config reader, so every problem has its `file:line:column`), each connection's cached catalog, and the legs,
//! a page at a time. [`replay`] does the rest without I/O.

pub mod replay;

use anyhow::Context;
use replay::{ConnectionView, Decided, Report, Simulation, VsRecorded};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use wrapup_store::{Migrations, PostgresStore, SqliteStore, Store};

/// Legs read from the store at a time.
const PAGE: u32 = 500;

/// Legs whose decision changed that the table lists (the JSON lists every leg).
const TABLE_LEGS: usize = 50;

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The configuration file: its connections and decision hooks are what the rules may name, and its store is
    /// read unless --from names another.
    #[arg(long, short)]
    pub config: PathBuf,
    /// The candidate rules: a TOML file of `[[rules]]` in the configuration's format (a whole configuration file
    /// works too: only its rules are read).
    #[arg(long)]
    pub rules: PathBuf,
    /// The store to read instead of the configuration's: a SQLite file (or a data directory holding
    /// `wrapup.db`), or a `postgres://` URL. It is only read.
    #[arg(long, conflicts_with = "events")]
    pub from: Option<String>,
    /// Read the legs from this file instead of a store: one leg record per line, as the store keeps it and
    /// `GET /api/v1/legs` returns it (JSON lines). The catalogs still come from the configuration's store when it
    /// has one.
    #[arg(long)]
    pub events: Option<PathBuf>,
    /// Only legs recorded since then: a duration back from now (`7d`, `12h`, `30m`) or an RFC 3339 time. The
    /// default is every leg.
    #[arg(long)]
    pub since: Option<String>,
    /// Print the report as one JSON document (every leg included) instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Exit non-zero when the candidate rules have problems against a cached catalog.
    #[arg(long)]
    pub strict: bool,
}

/// `wrapup simulate`. Exit status 0 with a report; 1 when the rules cannot be read (or, with `--strict`, have
/// catalog problems).
pub async fn run(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let config = crate::serve::load_config(&args.config)?;
    let candidate = match config.with_rules_file(&args.rules) {
        Ok(c) => c,
        Err(errors) => {
            println!("{errors}");
            return Ok(ExitCode::from(1));
        }
    };
    let since = args.since.as_deref().map(|s| since(s, jiff::Timestamp::now())).transpose()?;
    let store = match &args.events {
        None => Some(open(&config, args.from.as_deref()).await?),
        // The legs come from the file; the configuration's store, if there is one, still has the catalogs.
        Some(_) => open(&config, None).await.ok(),
    };

    let mut views = BTreeMap::new();
    let mut problems = Vec::new();
    for conn in &config.connections {
        let catalog = match &store {
            Some(store) => store.get_catalog(&conn.name).await?.map(|(c, _)| c),
            None => None,
        };
        if catalog.is_none() {
            problems.push(format!(
                "connection {:?}: no cached catalog in the store; its codes are not checked and agents' codes show as ids",
                conn.name
            ));
        }
        let mut system_codes: std::collections::BTreeSet<String> = conn.system_codes.iter().cloned().collect();
        if conn.kind == wrapup_core::Platform::Genesys {
            system_codes.extend(wrapup_service::build::GENESYS_SYSTEM_CODES.iter().map(|s| s.to_string()));
        }
        views.insert(conn.name.clone(), ConnectionView { catalog, system_codes });
    }
    let loaded: Vec<(&str, &wrapup_core::catalog::Catalog)> =
        views.iter().filter_map(|(n, v)| v.catalog.as_ref().map(|c| (n.as_str(), c))).collect();
    let found = wrapup_config::check_catalogs(&candidate, &loaded);
    let strict_failure = args.strict && !found.is_empty();
    problems.extend(found.iter().map(ToString::to_string));

    let mut simulation = Simulation::new(&candidate.rules, &views);
    match (&args.events, &store) {
        (Some(path), _) => {
            let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            for (n, line) in std::io::BufRead::lines(std::io::BufReader::new(file)).enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let leg: wrapup_core::lifecycle::LegRecord = serde_json::from_str(&line)
                    .with_context(|| format!("{}:{}: not a leg record", path.display(), n + 1))?;
                if since.is_none_or(|s| leg.created_at.as_millisecond() >= s.as_millisecond()) {
                    simulation.add(&leg);
                }
            }
        }
        (None, Some(store)) => {
            let mut after = None;
            loop {
                let page = store.legs_since(since, after.as_ref(), PAGE).await.context("reading the recorded legs")?;
                for leg in &page {
                    simulation.add(leg);
                }
                match page.into_iter().last() {
                    Some(last) => after = Some(last),
                    None => break,
                }
            }
        }
        (None, None) => anyhow::bail!("no store to read the legs from"),
    }
    let report = simulation.finish(args.since.clone(), problems);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(if strict_failure { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `--since`: a duration back from `now` (`7d`, `12h`, `30m`, `45s`) or an RFC 3339 time (as `wrapup report` reads it).
pub fn since(text: &str, now: jiff::Timestamp) -> anyhow::Result<jiff::Timestamp> {
    wrapup_report::since(text, now).map_err(|e| anyhow::anyhow!("--{e}"))
}

/// The store to read, opened without migrating it: simulation never changes a store.
pub(crate) async fn open(config: &wrapup_config::Config, from: Option<&str>) -> anyhow::Result<Arc<dyn Store>> {
    let check = Migrations::Check;
    let sqlite = |path: PathBuf| async move {
        let path = if path.is_dir() { path.join("wrapup.db") } else { path };
        // Opening creates a missing file; a simulation must not leave an empty store behind.
        anyhow::ensure!(path.is_file(), "no store at {}", path.display());
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open_with(&path, check)
                .await
                .with_context(|| format!("opening the store {}", path.display()))?,
        );
        Ok(store)
    };
    match from {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::connect_with(url, check).await.context("connecting to the --from store")?))
        }
        Some(path) => sqlite(PathBuf::from(path)).await,
        None => match &config.store {
            wrapup_config::StoreConfig::Sqlite => sqlite(config.data_dir.join("wrapup.db")).await,
            wrapup_config::StoreConfig::Postgres { .. } => {
                let url = config.store.connect_url().context("the store's URL")?;
                let store = PostgresStore::connect_with(&url, check)
                    .await
                    .with_context(|| format!("connecting to the store {}", config.store.describe()))?;
                Ok(Arc::new(store))
            }
        },
    }
}

fn decided(d: &Decided) -> String {
    match d {
        Decided::Rule { rule, code, mode, asks_crm } => {
            let mut s = format!("{rule:?} → {code:?}");
            if *mode == wrapup_core::Mode::Shadow {
                s.push_str(" (shadow)");
            }
            if *asks_crm {
                s.push_str(" (asks a CRM)");
            }
            s
        }
        Decided::Crm { source, code } => format!("{source} → {code:?}"),
        Decided::NoRule => "no rule".into(),
        Decided::NotDecided => "not decided".into(),
    }
}

fn rate(a: &replay::Agreement) -> String {
    a.rate.map_or_else(|| "-".into(), |r| format!("{:.1}%", r * 100.0))
}

/// The report as tables for people.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let v = &report.verdicts;
    let r = &report.vs_recorded;
    let _ = writeln!(
        out,
        "rules {} against {} recorded leg(s){}",
        report.rules_version,
        report.legs,
        report.since.as_ref().map(|s| format!(" since {s}")).unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "decisions vs the store's: {} same, {} different, {} legs the store never decided",
        r.same, r.different, r.not_decided
    );
    let _ = writeln!(
        out,
        "vs what happened: same as agent {}, different from agent {} (blocked by the agent {}), would fill uncoded {}, \
         same as applied {}, changed from applied {}, crm decided {}, no rule {}, no window {}, unfinished {}, unknown {}",
        v.same_as_agent,
        v.different_from_agent,
        report.blocked_by_agent,
        v.would_fill_uncoded,
        v.same_as_applied,
        v.changed_from_applied,
        v.crm_decided,
        v.no_rule,
        v.no_window,
        v.unfinished,
        v.unknown
    );
    if report.attributes_unread > 0 {
        let _ = writeln!(
            out,
            "{} leg(s) never had their participant attributes read, which a candidate rule matches on",
            report.attributes_unread
        );
    }
    let _ = writeln!(out);
    let width = report.rules.iter().map(|r| r.name.chars().count()).max().unwrap_or(4).max(4);
    let _ = writeln!(
        out,
        "{:<width$}  {:>5}  {:>6} {:>5}  {:>5} {:>5} {:>5} {:>5} {:>5} {:>7} {:>4} {:>8}  {:>5} {:>5}",
        "rule",
        "legs",
        "agree",
        "of",
        "same",
        "diff",
        "fill",
        "kept",
        "chg",
        "blocked",
        "crm",
        "unusable",
        "=rec",
        "≠rec"
    );
    for rule in &report.rules {
        let c = &rule.verdicts;
        let _ = writeln!(
            out,
            "{:<width$}  {:>5}  {:>6} {:>5}  {:>5} {:>5} {:>5} {:>5} {:>5} {:>7} {:>4} {:>8}  {:>5} {:>5}",
            rule.name,
            rule.legs,
            rate(&rule.agreement),
            rule.agreement.legs,
            c.same_as_agent,
            c.different_from_agent,
            c.would_fill_uncoded,
            c.same_as_applied,
            c.changed_from_applied,
            rule.blocked_by_agent,
            c.crm_decided,
            rule.unusable_code,
            rule.vs_recorded.same,
            rule.vs_recorded.different,
        );
    }
    let confusion: Vec<_> = report.rules.iter().filter(|r| !r.confusion.is_empty()).collect();
    if !confusion.is_empty() {
        let _ = writeln!(out, "\nagreement with agents (decided code × agent's code: legs)");
        for rule in confusion {
            let cells: Vec<String> =
                rule.confusion.iter().map(|c| format!("{:?} × {:?}: {}", c.decided, c.agent, c.legs)).collect();
            let _ = writeln!(out, "  {}: {}", rule.name, cells.join(", "));
        }
    }
    let changed: Vec<_> = report.leg_reports.iter().filter(|l| l.vs_recorded == VsRecorded::Different).collect();
    if !changed.is_empty() {
        let _ = writeln!(out, "\nlegs decided differently from the store ({}):", changed.len());
        for leg in changed.iter().take(TABLE_LEGS) {
            let _ = writeln!(
                out,
                "  {}/{}/{} ({}): {} → now {}",
                leg.connection,
                leg.conversation,
                leg.participant,
                leg.queue.as_deref().unwrap_or("no queue"),
                decided(&leg.recorded),
                decided(&leg.simulated)
            );
        }
        if changed.len() > TABLE_LEGS {
            let _ = writeln!(out, "  … and {} more (--json lists every leg)", changed.len() - TABLE_LEGS);
        }
    }
    if !report.catalog_problems.is_empty() {
        let _ = writeln!(out, "\ncatalog problems of the candidate rules:");
        for p in &report.catalog_problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_back_from_now_or_a_time() {
        let now: jiff::Timestamp = "2026-12-07T12:00:00Z".parse().unwrap();
        assert_eq!(since("7d", now).unwrap().to_string(), "2026-11-30T12:00:00Z");
        assert_eq!(since("90m", now).unwrap().to_string(), "2026-12-07T10:30:00Z");
        assert_eq!(since("2026-12-01T00:00:00Z", now).unwrap().to_string(), "2026-12-01T00:00:00Z");
        assert!(since("7 days", now).is_err());
        assert!(since("d", now).is_err());
    }
}
