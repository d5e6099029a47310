//! One connection, set up for catalog work: its catalog API over the platform client, its call counts, and, on a
//! PostgreSQL store, its slice of the request budget the running services share.

use crate::serve::open_store;
use anyhow::{bail, Context};
use jiff::Timestamp;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use wrapup_catalog::api::CatalogApi;
use wrapup_clock::ScaledClock;
use wrapup_config::{Config, ConnectionConfig};
use wrapup_connectors::CallStats;
use wrapup_core::clock::SharedClock;
use wrapup_core::Platform;

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The configuration file (connections and their credentials; the rules, for the impact of removals).
    #[arg(long, short)]
    pub config: PathBuf,
    /// The connection; may be left out when the config has only one.
    #[arg(long)]
    pub connection: Option<String>,
}

/// A connection's catalog API and a way to read its call counts.
pub(crate) struct Connection {
    pub(crate) name: String,
    pub(crate) api: Box<dyn CatalogApi>,
    pub(crate) stats: Box<dyn Fn() -> CallStats + Send + Sync>,
    /// The client's request budget, to share with running services (see [`share_budget`]).
    budget: wrapup_connectors::Budget,
}

pub(crate) fn connection(config: &Config, name: Option<&str>) -> anyhow::Result<(ConnectionConfig, Connection)> {
    let conn = match name {
        Some(name) => config.connection(name).with_context(|| format!("no connection named {name:?} in the config"))?,
        None => match config.connections.as_slice() {
            [one] => one,
            _ => bail!("the config has several connections: say which with --connection"),
        },
    };
    let clock: SharedClock = Arc::new(ScaledClock::system());
    let connection = match conn.kind {
        Platform::Genesys => {
            let (_, client) = wrapup_service::build::connection_for(conn, clock)?;
            let client = client.context("a Genesys connection without a client")?;
            let stats_client = client.clone();
            let budget = client.budget().clone();
            let stats = Box::new(move || stats_client.stats());
            Connection { name: conn.name.clone(), api: Box::new(client), stats, budget }
        }
        Platform::Cxone => {
            let platform = wrapup_service::build::cxone_platform(conn, clock)?;
            let client = platform.client().clone();
            let stats_client = client.clone();
            let budget = client.budget().clone();
            let stats = Box::new(move || stats_client.stats());
            Connection { name: conn.name.clone(), api: Box::new(client), stats, budget }
        }
    };
    Ok((conn.clone(), connection))
}

/// A slice of the connection's request budget, held while a catalog command runs. [`BudgetSlice::release`] hands
/// it back to the services at once; a slice only dropped runs out by itself within seconds.
pub(crate) struct BudgetSlice {
    stop: wrapup_service::scheduler::Shutdown,
    reporter: Option<tokio::task::JoinHandle<()>>,
}

impl BudgetSlice {
    pub(crate) async fn release(mut self) {
        self.stop.cancel();
        if let Some(reporter) = self.reporter.take() {
            let _ = reporter.await;
        }
    }
}

impl Drop for BudgetSlice {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Hands a slice back, if there is one.
pub(crate) async fn release(slice: Option<BudgetSlice>) {
    if let Some(slice) = slice {
        slice.release().await;
    }
}

/// On a PostgreSQL store, the services running on it already split each OAuth client's per-minute limit among
/// themselves (`Store::share_budget`): a catalog command joins them as one more owner, so that it spends its slice
/// instead of the same limit a second time. On the embedded SQLite store there is nothing to join (the command and a
/// service on one host each keep the whole budget: docs/CATALOG.md). A store that cannot be reached is not an error:
/// the command runs on its own budget, and says so.
pub(crate) async fn share_budget(config: &Config, c: &Connection) -> Option<BudgetSlice> {
    if !matches!(config.store, wrapup_config::StoreConfig::Postgres { .. }) {
        return None;
    }
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(e) => {
            eprintln!(
                "warning: the store could not be reached ({e:#}); this command does not share the request budget"
            );
            return None;
        }
    };
    let shared = wrapup_service::shared_budget::SharedBudget {
        connection: c.name.clone(),
        budget: c.budget.clone(),
        store,
        owner: format!("wrapup-catalog-{}-{}", std::process::id(), Timestamp::now().as_millisecond()),
    };
    match shared.report().await {
        Ok(true) => {
            let stop = wrapup_service::scheduler::Shutdown::default();
            let reporter = Some(tokio::spawn(shared.run(stop.clone())));
            Some(BudgetSlice { stop, reporter })
        }
        Ok(false) => None,
        Err(e) => {
            eprintln!("warning: no slice of the shared request budget ({e:#}); this command spends its own");
            None
        }
    }
}

fn progress_bar(what: &'static str) -> indicatif::ProgressBar {
    let bar =
        if std::io::stderr().is_terminal() { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(what);
    bar
}

pub(crate) async fn read_live(c: &Connection) -> anyhow::Result<wrapup_catalog::LiveCatalog> {
    let what = if c.api.platform() == Platform::Genesys { "reading queues" } else { "reading skills" };
    let bar = progress_bar(what);
    let progress = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let live = c.api.read(&progress).await.with_context(|| format!("reading the live catalog of {:?}", c.name))?;
    bar.finish_and_clear();
    Ok(live)
}
