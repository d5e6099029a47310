//! The wrapup sandbox: a local emulator of Genesys Cloud CX and NICE CXone with a simulated contact center per
//! platform and ground truth.
//!
//! The two platforms sit side by side: [`genesys`] (an org) and [`cxone`] (a business unit), each with its own
//! state under its own lock, its own HTTP surface and its own simulation, both simulations running on one
//! discrete-event [`engine`] (simulated time, scheduled actions, traffic, seeded draws, request faults, ground-truth
//! counters). What they share beyond that is the injected clock, the fault profile and the traffic switch.
//!
//! It is a library (tests and the demo embed it with [`Sandbox::start`] on a `127.0.0.1:0` listener) and a CLI
//! ([`run_cli`], exposed as `wrapup sandbox`). Three tasks run per sandbox:
//!
//! - the **HTTP server**: both platforms' REST surfaces with their real paths, bodies, status codes, error bodies
//!   and headers, plus ground truth and control under `/sandbox/v1/` ([`control`]);
//! - the **simulation loop**: sleeps until the next scheduled action of either platform on the injected clock (or
//!   until an API write schedules something), then advances both; every API request also catches its platform up to
//!   "now" first, so answers are exact to the clock, not to the loop's wake-ups;
//! - the **event dispatcher** (`genesys/events.rs`): EventBridge envelopes to every target, at least once, with
//!   faults.
//!
//! Both platforms limit each access token per minute, counted as `fixed`, `sliding` or `token_bucket`
//! ([`rate_limit`]). Every simulation draw comes from RNGs seeded with `SandboxConfig::seed`, so a seed and a clock
//! determine both centers.

pub mod cli;
pub mod config;
pub mod control;
pub mod crm;
pub mod cxone;
pub mod engine;
pub mod genesys;
pub mod rate_limit;
pub mod report;

pub use cli::{run_cli, SandboxArgs};
pub use config::CatalogShape;
pub use config::{
    AcwMode, AgentBehaviour, ApplyAfterAcw, Behaviours, CenterConfig, ClientCredentialsWrites, CodeNotInQueue,
    ConversationProvisional, DeleteStatus, Dist, EventTarget, FaultProfile, GetWrapupUnset, MediaMix, QueueConfig,
    SandboxConfig, SecondWrite, DEFAULT_AGENT_ACCURACY,
};
pub use crm::{Behaviour, CrmError, CrmOptions, CrmReceiver, HookAnswer, Received, WebhookSecret};
pub use cxone::{CxoneBehaviours, CxoneConfig, CxoneCredentials, CxoneLegTruth, CxoneReport, CxoneWrite};
pub use engine::catalog::{CatalogChange, CatalogEntry, CatalogSnapshot, Platform};
pub use genesys::model::{Media, SYSTEM_TIMEOUT_CODE_ID, SYSTEM_TIMEOUT_CODE_NAME};
pub use rate_limit::{RateLimit, RateWindow};
pub use report::{CodedBy, LegTruth, Report, Violation};

use axum::extract::DefaultBodyLimit;
use axum::Router;
use engine::Simulation;
use genesys::events::{self, EventStats, Targets};
use genesys::model::Org;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use wrapup_core::clock::SharedClock;

/// Maximum request body size (both platforms' bodies here are small JSON documents).
pub const BODY_LIMIT: usize = 256 * 1024;

/// State shared by the server, the loops and the handle.
pub struct Inner {
    pub org: Arc<Mutex<Org>>,
    /// The CXone business unit, under its own lock (see `cxone/mod.rs` for why it is not inside `Org`).
    pub bu: Arc<Mutex<cxone::Bu>>,
    pub clock: SharedClock,
    /// Wakes the simulation loop when something was scheduled out of band.
    pub wake: Notify,
    pub targets: Targets,
    pub http: reqwest::Client,
    pub stats: Arc<EventStats>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    base_url: String,
}

/// What handlers get as axum state.
pub type SharedState = Arc<Inner>;

impl Inner {
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn report(&self) -> Report {
        let mut report = {
            let mut org = self.org.lock();
            org.advance_to(self.clock.now());
            org.report()
        };
        report.cxone = self.cxone_report();
        report
    }

    pub fn cxone_report(&self) -> CxoneReport {
        let mut bu = self.bu.lock();
        bu.advance_to(self.clock.now());
        bu.report()
    }

    pub fn cxone_legs(&self) -> Vec<CxoneLegTruth> {
        let mut bu = self.bu.lock();
        bu.advance_to(self.clock.now());
        bu.legs()
    }

    pub fn legs(&self) -> Vec<LegTruth> {
        let mut org = self.org.lock();
        org.advance_to(self.clock.now());
        org.legs()
    }

    pub fn start_traffic(&self) {
        self.org.lock().start_traffic(self.clock.now());
        self.bu.lock().start_traffic(self.clock.now());
        self.wake.notify_one();
    }

    pub fn stop_traffic(&self) {
        self.org.lock().stop_traffic();
        self.bu.lock().stop_traffic();
    }

    pub fn set_faults(&self, f: FaultProfile) {
        {
            let mut bu = self.bu.lock();
            bu.faults = f.clone();
            bu.storm_until = None;
        }
        let mut org = self.org.lock();
        org.hub.set_disconnect_rate(f.ws_disconnect_rate);
        org.faults = f;
        org.storm_until = None;
    }

    /// Every successful catalog write of both platforms, in simulated-time order (Genesys first on ties).
    pub fn catalog_changes(&self) -> Vec<CatalogChange> {
        let mut all: Vec<CatalogChange> = self.org.lock().catalog_changes.entries.iter().cloned().collect();
        all.extend(self.bu.lock().catalog_changes.entries.iter().cloned());
        all.sort_by(|a, b| a.at.cmp(&b.at));
        all
    }

    /// A platform's authoritative catalog (what the reads show once every write has propagated).
    pub fn catalog_snapshot(&self, platform: Platform) -> CatalogSnapshot {
        match platform {
            Platform::Genesys => self.org.lock().catalog_snapshot(),
            Platform::Cxone => self.bu.lock().catalog_snapshot(),
        }
    }

    pub fn add_event_target(&self, t: EventTarget) {
        self.targets.add(t, self.http.clone(), self.stats.clone());
    }

    pub fn rate_limit(&self) -> RateLimit {
        let org = self.org.lock();
        RateLimit { per_minute: org.rate_limit_per_minute, window: org.rate_limit_window }
    }

    pub fn set_rate_limit(&self, limit: RateLimit) {
        let mut org = self.org.lock();
        org.rate_limit_per_minute = limit.per_minute.max(1);
        org.rate_limit_window = limit.window;
    }

    pub fn cxone_rate_limit(&self) -> RateLimit {
        let bu = self.bu.lock();
        RateLimit { per_minute: bu.rate_limit_per_minute, window: bu.rate_limit_window }
    }

    pub fn set_cxone_rate_limit(&self, limit: RateLimit) {
        let mut bu = self.bu.lock();
        bu.rate_limit_per_minute = limit.per_minute;
        bu.rate_limit_window = limit.window;
    }
}

/// Errors starting a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot read the listener's address: {0}")]
    Listener(#[from] std::io::Error),
    #[error("cannot build the HTTP client for event delivery: {0}")]
    Http(#[from] reqwest::Error),
}

/// The sandbox entry point.
pub struct Sandbox;

impl Sandbox {
    /// Builds the org from `cfg`, then serves on `listener` in background tasks until [`SandboxHandle::shutdown`].
    pub async fn start(
        cfg: SandboxConfig,
        listener: tokio::net::TcpListener,
        clock: SharedClock,
    ) -> anyhow::Result<SandboxHandle> {
        let addr = listener.local_addr().map_err(SandboxError::Listener)?;
        let base_url = format!("http://{addr}");
        let stats = Arc::new(EventStats::default());
        let now = clock.now();
        let mut org = Org::new(&cfg, now, stats.clone());
        org.hub.set_disconnect_rate(cfg.faults.ws_disconnect_rate);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        org.events_tx = Some(tx);
        org.preload(cfg.preload, now, cfg.preload_events);
        if cfg.traffic_autostart {
            org.start_traffic(now);
        }
        let mut bu = cxone::Bu::shaped(&cfg.cxone, cfg.catalog, cfg.seed, cfg.faults.clone(), now);
        bu.preload(cfg.cxone.preload, now);
        if cfg.traffic_autostart {
            bu.start_traffic(now);
        }
        let bu = Arc::new(Mutex::new(bu));
        let org = Arc::new(Mutex::new(org));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(SandboxError::Http)?;
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            org: org.clone(),
            bu,
            clock: clock.clone(),
            wake: Notify::new(),
            targets: Targets::default(),
            http,
            stats,
            shutdown,
            tasks: Mutex::new(Vec::new()),
            base_url,
        });
        for t in cfg.event_targets {
            inner.add_event_target(t);
        }
        let dispatcher = tokio::spawn(events::dispatcher(rx, org.clone(), inner.targets.clone()));
        let sim = tokio::spawn(sim_loop(inner.clone()));
        let app = router(inner.clone());
        let mut stop = inner.shutdown.subscribe();
        let server = tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "The sandbox HTTP server failed.");
            }
        });
        inner.tasks.lock().extend([server, sim, dispatcher]);
        tracing::info!(base_url = %inner.base_url, seed = cfg.seed, "Sandbox is serving.");
        Ok(SandboxHandle { inner })
    }
}

/// Both platforms and the sandbox's own control routes.
fn router(state: SharedState) -> Router {
    Router::new()
        .merge(genesys::api::routes(state.clone()))
        .merge(cxone::auth::routes())
        .merge(control::routes())
        // CXone's `/inContactAPI/...` is routed by hand (case-insensitive prefix, any version); other paths stay 404.
        .fallback(cxone::api::dispatch)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Sleeps until the next scheduled action (on the injected clock), a wake-up, or shutdown; then advances the org.
async fn sim_loop(inner: SharedState) {
    let mut stop = inner.shutdown.subscribe();
    loop {
        // Both platforms advance here; the loop wakes for whichever is due first.
        let next_org = {
            let mut org = inner.org.lock();
            org.advance_to(inner.clock.now());
            org.engine.next_due()
        };
        let next_bu = {
            let mut bu = inner.bu.lock();
            bu.advance_to(inner.clock.now());
            bu.engine.next_due()
        };
        let next = match (next_org, next_bu) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let wait = match next {
            Some(at) => inner.clock.wall_duration(at.duration_since(inner.clock.now())),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.wake.notified() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
}

/// A running sandbox. Cheap to clone.
#[derive(Clone)]
pub struct SandboxHandle {
    inner: SharedState,
}

impl SandboxHandle {
    /// `http://127.0.0.1:PORT`; also the login host (`POST {base_url}/oauth/token`).
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    /// `(client_id, client_secret)` of every OAuth client of the org.
    pub fn credentials(&self) -> Vec<(String, String)> {
        self.inner.org.lock().clients.iter().map(|c| (c.id.clone(), c.secret.clone())).collect()
    }

    /// The ground-truth report (same as `GET /sandbox/v1/report`).
    pub fn report(&self) -> Report {
        self.inner.report()
    }

    /// Truth of every agent leg (same as `GET /sandbox/v1/legs`).
    pub fn legs(&self) -> Vec<LegTruth> {
        self.inner.legs()
    }

    pub fn set_faults(&self, f: FaultProfile) {
        self.inner.set_faults(f)
    }

    pub fn set_behaviours(&self, b: Behaviours) {
        self.inner.org.lock().behaviours = b;
    }

    /// The Genesys org's rate limit per token (same as `GET /sandbox/v1/config`).
    pub fn rate_limit(&self) -> RateLimit {
        self.inner.rate_limit()
    }

    /// Changes the Genesys org's rate limit (at least 1 per minute). Existing tokens keep their window under a new
    /// limit; under new semantics their window starts afresh at their next request.
    pub fn set_rate_limit(&self, limit: RateLimit) {
        self.inner.set_rate_limit(limit)
    }

    /// The CXone business unit's rate limit per token (`per_minute` 0: none).
    pub fn cxone_rate_limit(&self) -> RateLimit {
        self.inner.cxone_rate_limit()
    }

    /// Changes the CXone business unit's rate limit, as [`Self::set_rate_limit`] does for Genesys (0: none).
    pub fn set_cxone_rate_limit(&self, limit: RateLimit) {
        self.inner.set_cxone_rate_limit(limit)
    }

    /// The CXone API user's credentials, tenant and business unit (discovery: `{base_url}/.well-known/...`).
    pub fn cxone_credentials(&self) -> CxoneCredentials {
        self.inner.bu.lock().creds.clone()
    }

    /// The CXone ground-truth report (same as `GET /sandbox/v1/report`'s `cxone`).
    pub fn cxone_report(&self) -> CxoneReport {
        self.inner.cxone_report()
    }

    /// Truth of every CXone contact (same as `GET /sandbox/v1/cxone/legs`).
    pub fn cxone_legs(&self) -> Vec<CxoneLegTruth> {
        self.inner.cxone_legs()
    }

    /// Every disposition write the CXone API received (same as `GET /sandbox/v1/cxone/writes`).
    pub fn cxone_writes(&self) -> Vec<CxoneWrite> {
        self.inner.bu.lock().writes.clone()
    }

    pub fn set_cxone_behaviours(&self, b: CxoneBehaviours) {
        self.inner.bu.lock().behaviours = b;
    }

    /// Every successful catalog write of both platforms (same as `GET /sandbox/v1/catalog/changes`): codes and
    /// dispositions created, updated or deleted, queue codes assigned or unassigned, skills updated; with the
    /// simulated time, the platform, the OAuth client, the object, before and after.
    pub fn catalog_changes(&self) -> Vec<CatalogChange> {
        self.inner.catalog_changes()
    }

    /// Waits until `platform` has recorded at least `count` catalog changes (as counted by [`Self::catalog_changes`]).
    pub async fn catalog_changes_reach(&self, platform: Platform, count: usize) {
        let recorded = match platform {
            Platform::Genesys => self.inner.org.lock().catalog_changes.recorded.clone(),
            Platform::Cxone => self.inner.bu.lock().catalog_changes.recorded.clone(),
        };
        loop {
            let notified = recorded.notified();
            tokio::pin!(notified);
            // Registered before the count is read, so a change in between is not missed.
            notified.as_mut().enable();
            let recorded_so_far = match platform {
                Platform::Genesys => self.inner.org.lock().catalog_changes.entries.len(),
                Platform::Cxone => self.inner.bu.lock().catalog_changes.entries.len(),
            };
            if recorded_so_far >= count {
                return;
            }
            notified.await;
        }
    }

    /// A platform's authoritative catalog: codes with ids, names and fields, assignments by queue or skill name, and
    /// `duplicate_names` (same as `GET /sandbox/v1/catalog/{genesys|cxone}`).
    pub fn catalog_snapshot(&self, platform: Platform) -> CatalogSnapshot {
        self.inner.catalog_snapshot(platform)
    }

    /// Runs `f` with the CXone business unit locked, after catching its simulation up to the clock.
    pub fn with_bu<R>(&self, f: impl FnOnce(&mut cxone::Bu) -> R) -> R {
        let mut bu = self.inner.bu.lock();
        bu.advance_to(self.inner.clock.now());
        f(&mut bu)
    }

    pub fn add_event_target(&self, t: EventTarget) {
        self.inner.add_event_target(t)
    }

    /// Breaks every connected notification websocket (no close frame), as a network fault would; returns how many
    /// (same as `POST /sandbox/v1/notifications/drop`).
    pub fn drop_notification_sockets(&self) -> usize {
        let hub = self.inner.org.lock().hub.clone();
        hub.drop_sockets()
    }

    pub fn start_traffic(&self) {
        self.inner.start_traffic()
    }

    pub fn stop_traffic(&self) {
        self.inner.stop_traffic()
    }

    /// Runs `f` with the org locked, after catching the simulation up to the clock (for tests and embedders that
    /// need more than the report, e.g. catalog ids).
    pub fn with_org<R>(&self, f: impl FnOnce(&mut Org) -> R) -> R {
        let mut org = self.inner.org.lock();
        org.advance_to(self.inner.clock.now());
        f(&mut org)
    }

    /// Stops serving (in-flight requests finish) and waits for the background tasks.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *self.inner.tasks.lock());
        for (i, mut t) in tasks.into_iter().enumerate() {
            // The server drains in-flight requests and the simulation loop stops at once; the dispatcher (last)
            // waits on a channel the org still holds, so it is aborted rather than drained.
            if i == 2 {
                t.abort();
            }
            if tokio::time::timeout(Duration::from_secs(5), &mut t).await.is_err() {
                t.abort();
            }
        }
    }
}
