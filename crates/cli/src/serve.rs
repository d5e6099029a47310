//! `wrapup serve` and `wrapup migrate`, and how both open the configured store.

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
/// The arguments every command that reads a configuration and can print JSON takes (`outbox`, `review`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigAndJson {
    /// The configuration file (its store, its connections, its sinks, its admin address).
    #[arg(long, short)]
    pub config: PathBuf,
    /// Print JSON (the admin API's shapes).
    #[arg(long)]
    pub json: bool,
}

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
    eprintln!("Dashboard: {}/dashboard", service.admin_url());
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
