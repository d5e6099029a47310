//! Assembling the service: one store, one worker pool, one HTTP edge (intake + admin, on one address or two),
//! per-connection runtimes.
//!
//! [`start`] takes a fully built [`ServiceSpec`] (from a config file in `wrapup serve`, or programmatically in the
//! demo and tests) and a bound listener, so tests can run the whole service on port 0; [`start_with_admin`] takes
//! a second one for the admin API.

use crate::acw_estimate::AcwEstimates;
use crate::catalog::CatalogCache;
use crate::edge::Edge;
use crate::intake::IntakeSettings;
use crate::platform::SharedPlatform;
use crate::reconciler::{ReconcileSpec, Reconciler};
use crate::scheduler::{self, SchedulerSettings, Shutdown};
use crate::websocket::WebsocketSpec;
use crate::worker::{ConnectionRuntime, RetryPolicy, Worker};
use anyhow::Context;
use jiff::SignedDuration;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use wrapup_core::clock::SharedClock;
use wrapup_core::rules::RuleSet;
use wrapup_core::Secret;
use wrapup_store::Store;

/// One platform connection, ready to run.
pub struct ConnectionSpec {
    pub name: String,
    pub platform: SharedPlatform,
    pub rules: Arc<RuleSet>,
    /// `POST /intake/{name}` (Genesys); `None` where the platform pushes nothing (CXone).
    pub intake: Option<IntakeSettings>,
    /// The lookup for platform-native flows (`/api/v1/lookup/{name}/…`); `None`: not offered on this connection.
    pub lookup: Option<crate::lookup::LookupSettings>,
    /// CRM decisions (`/api/v1/decisions/{name}/…`); `None`: the connection takes none.
    pub decisions: Option<crate::decisions::DecisionSettings>,
    pub catalog_ttl: SignedDuration,
    /// Assumed length of optional / agent-requested windows until observed ones give an estimate (platform time).
    pub acw_estimate_default: SignedDuration,
    /// The Notification API websocket intake, when enabled.
    pub websocket: Option<WebsocketSpec>,
    /// The reconciler (Genesys connections).
    pub reconcile: Option<ReconcileSpec>,
    /// ACW detection and the completed-contacts sweep (CXone connections).
    pub cxone: Option<crate::cxone::DetectionSpec>,
}

/// Everything the service needs.
pub struct ServiceSpec {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub connections: Vec<ConnectionSpec>,
    /// The decision hooks rules may ask, by name.
    pub decision_hooks: HashMap<String, Arc<crate::decisions::hook::DecisionHook>>,
    /// The operator role's bearer token (reads and actions); see [`crate::admin::Role`].
    pub admin_token: Option<Secret>,
    /// The viewer role's bearer token (reads only).
    pub viewer_token: Option<Secret>,
    /// When set, `/metrics` requires it as a bearer token.
    pub metrics_token: Option<Secret>,
    /// The HTTP edge's timeouts and caps.
    pub http: crate::edge::Limits,
    pub scheduler: SchedulerSettings,
    pub retry: RetryPolicy,
    /// See [`Worker::deadline_guard`].
    pub deadline_guard: std::time::Duration,
    /// See [`Worker::gate_freshness`].
    pub gate_freshness: std::time::Duration,
    /// See [`Worker::confirm_within`].
    pub confirm_within: std::time::Duration,
    /// This process is the store's only user (embedded SQLite): leases found at startup were left by a previous
    /// run that died, and are cleared so its legs resume at once instead of after the lease expires.
    pub exclusive_store: bool,
    /// Where the outbox delivers every final code (none: messages are still written, and wait for a sink).
    pub sinks: Vec<wrapup_config::SinkConfig>,
    pub outbox: crate::outbox::OutboxSettings,
}

/// Shared by the HTTP handlers.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub clock: SharedClock,
    pub intake: HashMap<String, IntakeSettings>,
    /// Each connection's lookup settings, for the connections that offer it.
    pub lookup: HashMap<String, crate::lookup::LookupSettings>,
    /// Each connection's decision API settings, for the connections that take CRM decisions.
    pub decisions: HashMap<String, crate::decisions::DecisionSettings>,
    pub connections: HashMap<String, Arc<ConnectionRuntime>>,
    pub wake: Arc<Notify>,
    pub admin_token: Option<Secret>,
    pub viewer_token: Option<Secret>,
    pub metrics_token: Option<Secret>,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The edge's limits and permits (intake reads its body-read timeout here).
    pub edge: Arc<Edge>,
    /// Each connection's reconciler, to ask for a pass (e.g. after a websocket gap).
    pub reconcilers: HashMap<String, Arc<Reconciler>>,
    /// Each CXone connection's client, for a last completed-contacts sweep on demand ([`AppState::last_look`]).
    pub cxone_clients: HashMap<String, wrapup_connectors::cxone::CxoneClient>,
    /// Which periodic jobs this process runs, when processes share the store.
    pub leases: Arc<crate::jobs::JobLeases>,
    /// The outbox's sinks (`/api/v1/sinks`, the `max_age` a retried message gets).
    pub sinks: Vec<wrapup_config::SinkConfig>,
    /// Rung when there may be messages to route (a commit changed outcomes, an operator resent some).
    pub outbox_wake: Arc<Notify>,
    /// The dashboard's live updates: ticked by every outcome change, read by the event streams.
    pub dashboard: Arc<crate::dashboard::events::Live>,
}

impl AppState {
    /// One last look at every connection's platform, for a caller about to judge what the service recorded (the
    /// demo's summary, an operator before a report): a reconciler pass on each Genesys connection and a sweep of
    /// the contacts completed since `since` on each CXone one. A leg whose closing no feed reported ends in its
    /// outcome here instead of being counted lost. Errors are returned per connection; the look goes on.
    pub async fn last_look(&self, since: jiff::Timestamp) -> Vec<String> {
        let mut errors = Vec::new();
        for r in self.reconcilers.values() {
            match r.pass(&|_| {}).await {
                Ok(report) => errors.extend(report.errors.into_iter().map(|e| format!("{}: {e}", r.connection))),
                Err(e) => errors.push(format!("{}: {e:#}", r.connection)),
            }
        }
        for (name, client) in &self.cxone_clients {
            let query = wrapup_connectors::cxone::CompletedQuery::UpdatedSince(format!("{since:.3}"));
            let priority = wrapup_connectors::budget::Priority::reconcile();
            match wrapup_connectors::cxone::acw::reconcile(client, &query, priority).await {
                Ok((events, _, _)) if events.is_empty() => {}
                Ok((events, _, _)) => match self.store.ingest(&events, self.clock.now()).await {
                    Ok(_) => self.wake.notify_one(),
                    Err(e) => errors.push(format!("{name}: {e}")),
                },
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        errors
    }
}

/// A running service.
pub struct ServiceHandle {
    /// Intake and probes; the admin API too unless it has its own address.
    pub addr: SocketAddr,
    /// The admin API's own address, when it has one.
    pub admin_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    /// See [`crate::outbox::Outbox::recorded`].
    pub outbox_recorded: tokio::sync::watch::Receiver<u64>,
    shutdown: Shutdown,
    tasks: Vec<JoinHandle<()>>,
    /// Tasks that outlive `tasks`: the shares of shared budgets, which legs still in flight at shutdown spend.
    last: (Shutdown, Vec<JoinHandle<()>>),
}

impl ServiceHandle {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the admin API answers.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin_addr.unwrap_or(self.addr))
    }

    /// Stops accepting work, lets in-flight legs finish, and returns.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.last.0.cancel();
        for t in self.last.1 {
            let _ = t.await;
        }
    }
}

/// Starts the service on `listener`.
pub async fn start(spec: ServiceSpec, listener: tokio::net::TcpListener) -> anyhow::Result<ServiceHandle> {
    start_with_admin(spec, listener, None).await
}

/// Starts the service with intake and probes on `listener` and, when `admin` is given, the admin API and
/// `/metrics` on it only.
pub async fn start_with_admin(
    spec: ServiceSpec,
    listener: tokio::net::TcpListener,
    admin: Option<tokio::net::TcpListener>,
) -> anyhow::Result<ServiceHandle> {
    let addr = listener.local_addr().context("reading the listener's address")?;
    let admin_addr = admin.as_ref().map(|a| a.local_addr()).transpose().context("reading the admin address")?;
    if spec.exclusive_store {
        let cleared = spec.store.release_all_leases().await.context("clearing leases left by a previous run")?;
        if cleared > 0 {
            tracing::info!(legs = cleared, "Resuming legs a previous run was working on.");
        }
    }
    let wake = Arc::new(Notify::new());
    let mut connections = HashMap::new();
    let mut intake = HashMap::new();
    let mut lookup = HashMap::new();
    let mut decisions = HashMap::new();
    let hooks = Arc::new(spec.decision_hooks);
    let mut websockets = Vec::new();
    let mut reconcile_specs = Vec::new();
    let mut detections = Vec::new();
    let mut cxone_clients = HashMap::new();
    for c in spec.connections {
        if let Some(d) = c.cxone {
            cxone_clients.insert(c.name.clone(), d.platform.client().clone());
            detections.push((c.name.clone(), d));
        }
        if let Some(r) = c.reconcile {
            reconcile_specs.push((c.name.clone(), c.platform.clone(), r));
        }
        if let Some(ws) = c.websocket {
            websockets.push((c.name.clone(), ws));
        }
        let catalog = CatalogCache::new(c.platform.clone(), spec.store.clone(), spec.clock.clone(), c.catalog_ttl);
        let acw_estimates = AcwEstimates::new(c.name.clone(), c.acw_estimate_default);
        connections.insert(
            c.name.clone(),
            Arc::new(ConnectionRuntime {
                name: c.name.clone(),
                platform: c.platform,
                catalog,
                rules: c.rules,
                acw_estimates,
                decisions: crate::worker::ExternalDecisions { takes_crm: c.decisions.is_some(), hooks: hooks.clone() },
            }),
        );
        if let Some(settings) = c.decisions {
            decisions.insert(c.name.clone(), settings);
        }
        if let Some(settings) = c.lookup {
            lookup.insert(c.name.clone(), settings);
        }
        if let Some(settings) = c.intake {
            intake.insert(c.name, settings);
        }
    }
    let counting = crate::outcomes::hook(connections.clone());
    let outbox_wake = Arc::new(Notify::new());
    let ring = outbox_wake.clone();
    let live = Arc::new(crate::dashboard::events::Live::default());
    let tick = live.clone();
    // The commit that changed an outcome wrote its outbox message: the router routes it at once.
    spec.store.watch_outcomes(Arc::new(move |change: &wrapup_store::OutcomeChange| {
        counting(change);
        ring.notify_one();
        tick.outcome_changed();
    }));
    let owner = format!("wrapup-{}", uuid::Uuid::now_v7());
    let leases =
        Arc::new(crate::jobs::JobLeases { store: spec.store.clone(), clock: spec.clock.clone(), owner: owner.clone() });
    // Take this replica's slice of each shared budget before any work can spend it.
    let mut shared_budgets = Vec::new();
    for runtime in connections.values() {
        let Some(budget) = runtime.platform.budget() else { continue };
        let shared = crate::shared_budget::SharedBudget {
            connection: runtime.name.clone(),
            budget,
            store: spec.store.clone(),
            owner: owner.clone(),
        };
        match shared.report().await {
            Ok(false) => {}
            Ok(true) => shared_budgets.push(shared),
            Err(e) => {
                tracing::warn!(connection = %runtime.name, error = %e, "Could not take a slice of the request budget yet; spending nothing until the store answers.");
                for credential in 0..shared.budget.credentials() {
                    shared.budget.set_share(credential, 0, tokio::time::Instant::now());
                }
                shared_budgets.push(shared);
            }
        }
    }
    let worker = Arc::new(Worker {
        store: spec.store.clone(),
        clock: spec.clock.clone(),
        connections: connections.clone(),
        owner,
        retry: spec.retry,
        deadline_guard: spec.deadline_guard,
        gate_freshness: spec.gate_freshness,
        confirm_within: spec.confirm_within,
    });
    let reconcilers: HashMap<String, Arc<Reconciler>> = reconcile_specs
        .into_iter()
        .map(|(name, platform, r)| {
            let reconciler = Reconciler {
                connection: name.clone(),
                client: r.client,
                platform,
                store: spec.store.clone(),
                clock: spec.clock.clone(),
                system_code_ids: r.system_code_ids,
                settings: r.settings,
                wake: Some(wake.clone()),
                trigger: Arc::new(Notify::new()),
                leases: Some(leases.clone()),
            };
            (name, Arc::new(reconciler))
        })
        .collect();
    let state = Arc::new(AppState {
        store: spec.store.clone(),
        clock: spec.clock.clone(),
        intake,
        lookup,
        decisions,
        connections,
        wake: wake.clone(),
        admin_token: spec.admin_token,
        viewer_token: spec.viewer_token,
        metrics_token: spec.metrics_token,
        metrics: crate::admin::metrics_handle(),
        edge: Arc::new(Edge::new(spec.http)),
        reconcilers,
        cxone_clients,
        leases,
        sinks: spec.sinks.clone(),
        outbox_wake: outbox_wake.clone(),
        dashboard: live,
    });
    let shutdown = Shutdown::default();
    let listeners = match admin {
        None => vec![(listener, crate::admin::router(state.clone()))],
        Some(admin) => vec![
            (listener, crate::admin::intake_router(state.clone())),
            (admin, crate::admin::admin_router(state.clone())),
        ],
    };
    let worker_store = worker.store.clone();
    let server = crate::edge::serve(listeners, state.edge.clone(), shutdown.clone());
    let claim = tokio::spawn(scheduler::run_claim_loop(worker.clone(), spec.scheduler.clone(), wake, shutdown.clone()));
    let sweep = tokio::spawn(scheduler::run_expiry_sweep(worker, spec.scheduler.sweep_every, shutdown.clone()));
    let gauges = tokio::spawn(crate::gauges::run(state.clone(), crate::gauges::EVERY, shutdown.clone()));
    let mut tasks = vec![server, claim, sweep, gauges];
    let outbox = crate::outbox::start(
        spec.store.clone(),
        spec.clock.clone(),
        spec.sinks,
        state.connections.clone(),
        spec.outbox,
        outbox_wake,
        shutdown.clone(),
    );
    tasks.extend(outbox.tasks);
    let outbox_recorded = outbox.recorded;
    let last = Shutdown::default();
    let shares = shared_budgets.into_iter().map(|shared| tokio::spawn(shared.run(last.clone()))).collect();
    for (name, ws) in websockets {
        if let Some(runtime) = state.connections.get(&name).cloned() {
            tasks.push(tokio::spawn(crate::websocket::run(state.clone(), runtime, ws, shutdown.clone())));
        }
    }
    // Load each catalog now rather than when the first leg needs it (the first load is the one that waits), and
    // keep trying until it is in: `/ready` reports the service ready only then.
    for runtime in state.connections.values() {
        let runtime = runtime.clone();
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let mut wait = Duration::from_millis(200);
            while let Err(e) = runtime.catalog.get().await {
                tracing::warn!(connection = %runtime.name, error = %e, retry_in_ms = wait.as_millis() as u64, "The catalog could not be loaded yet.");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }));
    }
    for runtime in state.connections.values() {
        let cache = runtime.catalog.clone();
        let watch = crate::catalog::refresh_after_applies(
            runtime.name.clone(),
            cache,
            worker_store.clone(),
            crate::catalog::APPLIED_CHECK_EVERY,
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(watch));
    }
    for (name, detection) in detections {
        if let Some(runtime) = state.connections.get(&name).cloned() {
            tasks.push(tokio::spawn(crate::cxone::run_detection(state.clone(), runtime, detection, shutdown.clone())));
        }
    }
    for reconciler in state.reconcilers.values() {
        tasks.push(tokio::spawn(crate::reconciler::run(reconciler.clone(), shutdown.clone())));
    }
    match admin_addr {
        Some(admin) => tracing::info!(%addr, %admin, "wrapup is serving (the admin API on its own address)."),
        None => tracing::info!(%addr, "wrapup is serving."),
    }
    Ok(ServiceHandle { addr, admin_addr, state, outbox_recorded, shutdown, tasks, last: (last, shares) })
}
