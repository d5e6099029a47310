//! `wrapup serve` and `wrapup validate`.

use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use wrapup_clock::ScaledClock;
use wrapup_config::StoreConfig;
use wrapup_core::clock::SharedClock;
use wrapup_store::{Migrations, PostgresStore, SqliteStore, Store};

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The configuration file.
    #[arg(long, short)]
    pub config: PathBuf,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ServeArgs,
    /// Do not migrate the store's schema at start; refuse to start unless it is this build's (for deployments that
    /// migrate as a step of their own, with `wrapup migrate`).
    #[arg(long)]
    pub no_migrate: bool,
}

/// Loads and validates the configuration, printing every problem with its location.
pub fn load_config(path: &PathBuf) -> anyhow::Result<wrapup_config::Config> {
    wrapup_config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

pub async fn serve(args: &RunArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config.config)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let clock: SharedClock = Arc::new(ScaledClock::system());
    let migrations = if args.no_migrate { Migrations::Check } else { Migrations::Apply };
    let store = open_store_with(&config, migrations).await?;
    let listener =
        wrapup_service::edge::bind(config.listen).with_context(|| format!("listening on {}", config.listen))?;
    let admin = match config.admin_listen {
        Some(addr) => Some(wrapup_service::edge::bind(addr).with_context(|| format!("listening on {addr} (admin)"))?),
        None => None,
    };
    let spec = wrapup_service::build::spec_from_config(&config, store, clock)?;
    let service = wrapup_service::app::start_with_admin(spec, listener, admin).await?;
    tracing::info!(addr = %service.addr, "Serving; Ctrl-C stops.");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    tracing::info!("Stopping: finishing legs in flight.");
    service.shutdown().await;
    Ok(())
}

/// The store the configuration names: the embedded SQLite file in the data directory, or a PostgreSQL database
/// (migrated to the current schema on connect).
pub async fn open_store(config: &wrapup_config::Config) -> anyhow::Result<Arc<dyn Store>> {
    open_store_with(config, Migrations::Apply).await
}

async fn open_store_with(config: &wrapup_config::Config, migrations: Migrations) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match &config.store {
        StoreConfig::Sqlite => Arc::new(SqliteStore::open_with(&sqlite_path(config), migrations).await?),
        StoreConfig::Postgres { .. } => {
            let url = config.store.connect_url().context("the store's URL")?;
            let store = PostgresStore::connect_with(&url, migrations)
                .await
                .with_context(|| format!("connecting to the store {}", config.store.describe()))?;
            tracing::info!(store = %config.store.describe(), "Using the PostgreSQL store.");
            Arc::new(store)
        }
    })
}

fn sqlite_path(config: &wrapup_config::Config) -> PathBuf {
    config.data_dir.join("wrapup.db")
}

/// `wrapup migrate`: brings the configured store's schema to this build's, and says what it applied.
pub async fn migrate(args: &ServeArgs) -> anyhow::Result<()> {
    let config = load_config(&args.config)?;
    let before = match &config.store {
        StoreConfig::Sqlite => SqliteStore::migrate(&sqlite_path(&config)).await?,
        StoreConfig::Postgres { .. } => {
            let url = config.store.connect_url().context("the store's URL")?;
            PostgresStore::migrate(&url)
                .await
                .with_context(|| format!("migrating the store {}", config.store.describe()))?
        }
    };
    let store = config.store.describe();
    if before.pending.is_empty() {
        println!("{store}: the schema is current (migrations {:?}).", before.applied);
    } else {
        println!("{store}: applied migrations {:?} (it had {:?}).", before.pending, before.applied);
    }
    Ok(())
}

/// `wrapup validate`: the file first (every problem, with its location), then each connection's live catalog
/// against the codes the rules name. Exit status 0 only when nothing is wrong.
pub async fn validate(args: &ServeArgs) -> anyhow::Result<std::process::ExitCode> {
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
