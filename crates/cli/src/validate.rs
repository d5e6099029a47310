//! `wrapup validate`: the file first (every problem, with its location), then each connection's live catalog
//! against the codes the rules name, and, where a connection names a catalog file, the live catalog against it
//! (drift).

use crate::serve::ServeArgs;
use std::sync::Arc;
use wrapup_clock::ScaledClock;
use wrapup_core::clock::SharedClock;

#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub config: ServeArgs,
    /// Exit non-zero on drift between a live catalog and its catalog file too (by default drift is reported only).
    #[arg(long)]
    pub strict: bool,
}

/// `wrapup validate`: the file first (every problem, with its location), then each connection's live catalog
/// against the codes the rules name. Exit status 0 only when nothing is wrong.
pub async fn validate(validate_args: &ValidateArgs) -> anyhow::Result<std::process::ExitCode> {
    let args = &validate_args.config;
    let config = match wrapup_config::Config::load(&args.config) {
        Ok(c) => c,
        Err(errors) => {
            println!("{errors}");
            return Ok(std::process::ExitCode::from(1));
        }
    };
    let clock: SharedClock = Arc::new(ScaledClock::system());
    let mut problems = 0usize;
    // Every connection's catalog first: one rule may serve several (a Genesys queue and a CXone skill), so a name
    // is missing only if no connection the rule runs on knows it.
    let mut catalogs = Vec::new();
    for conn in &config.connections {
        let platform = match wrapup_service::build::platform_for(conn, clock.clone()) {
            Ok(p) => p,
            Err(e) => {
                println!("connection {:?}: {e:#}", conn.name);
                problems += 1;
                continue;
            }
        };
        match platform.fetch_catalog().await {
            Ok(catalog) => {
                // The websocket intake subscribes by queue name: a name the catalog lacks is a queue never heard of.
                let ws = &conn.intake.websocket;
                let unknown_ws_queues =
                    if ws.enabled { wrapup_service::websocket::topics_for(&catalog, &ws.queues).1 } else { Vec::new() };
                for q in &unknown_ws_queues {
                    println!("connection {:?}: websocket intake queue {q:?} does not exist", conn.name);
                }
                problems += unknown_ws_queues.len();
                eprintln!(
                    "connection {:?}: catalog has {} codes and {} queues",
                    conn.name,
                    catalog.codes.len(),
                    catalog.queues.len()
                );
                catalogs.push((conn.name.as_str(), catalog));
            }
            Err(e) => {
                println!("connection {:?}: could not load the live catalog: {e}", conn.name);
                problems += 1;
            }
        }
    }
    let loaded: Vec<(&str, &wrapup_core::catalog::Catalog)> = catalogs.iter().map(|(n, c)| (*n, c)).collect();
    let found = wrapup_config::check_catalogs(&config, &loaded);
    for p in &found {
        println!("{p}");
    }
    problems += found.len();
    let fallbacks = wrapup_config::check_lookup_fallbacks(&config, &loaded);
    for p in &fallbacks {
        println!("{p}");
    }
    problems += fallbacks.len();
    let drifts = check_drift(&config).await;
    problems += drifts.problems;
    if validate_args.strict {
        problems += drifts.drift;
    } else if drifts.drift > 0 {
        eprintln!("{} drift(s) between live catalogs and their files (--strict makes drift an error)", drifts.drift);
    }
    if problems == 0 {
        eprintln!(
            "{}: valid ({} rules, {} connections)",
            args.config.display(),
            config.rules.len(),
            config.connections.len()
        );
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        Ok(std::process::ExitCode::from(1))
    }
}

#[derive(Default)]
struct DriftCount {
    drift: usize,
    problems: usize,
}

/// Each connection that names a catalog file: its live catalog against the file.
async fn check_drift(config: &wrapup_config::Config) -> DriftCount {
    let mut count = DriftCount::default();
    for conn in config.connections.iter() {
        let Some(path) = &conn.catalog else { continue };
        let file = match wrapup_config::CatalogFile::load(path) {
            Ok(file) => file,
            Err(errors) => {
                println!("{errors}");
                count.problems += errors.len();
                continue;
            }
        };
        let live = match crate::catalog::connection(config, Some(&conn.name)) {
            Ok((_, c)) => crate::catalog::read_live(&c).await,
            Err(e) => Err(e),
        };
        let result = live.and_then(|live| wrapup_catalog::drift::drift(&file, &live).map_err(anyhow::Error::from));
        match result {
            Ok(lines) => {
                for line in &lines {
                    println!("connection {:?}: drift from {}: {line}", conn.name, path.display());
                }
                count.drift += lines.len();
            }
            Err(e) => {
                println!("connection {:?}: catalog file {}: {e:#}", conn.name, path.display());
                count.problems += 1;
            }
        }
    }
    count
}
