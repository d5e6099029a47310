//! `wrapup demo`: the sandbox, the service and traffic in one process, on a fresh SQLite, ending in a summary.
//!
//! The demo goes through the same path as a real deployment: it writes a configuration (connection, intake key,
//! the rules in `rules.toml`), validates it with the config crate, builds the service from it, and points the
//! sandbox's EventBridge-style event delivery at the service's `/intake/{connection}`. Sandbox and service share one
//! accelerated clock (`--speed`), so a demo minute holds many ACW timeouts while the platform's rate limit stays
//! per wall minute.
//!
//! The same embedding ([`DemoEnv`]) serves the end-to-end tests and the benchmarks (`wrapup-bench`): a sandbox and
//! a service wired together in this process, judged at the end by the sandbox's ground truth ([`summary`]).

pub mod lookups;
pub mod summary;

use crate::summary::ConnectionSummary;
use anyhow::Context;
use jiff::Timestamp;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wrapup_clock::ScaledClock;
use wrapup_core::clock::SharedClock;
use wrapup_core::Outcome;
use wrapup_sandbox::{
    ConversationProvisional, CrmOptions, CrmReceiver, EventTarget, FaultProfile, Sandbox, SandboxConfig,
};
use wrapup_service::app;
use wrapup_store::{LegFilter, PostgresStore, SqliteStore, Store};

/// The rules the demo runs (also a readable example of the rule format).
pub const DEMO_RULES: &str = include_str!("rules.toml");

/// The configuration a run with a data directory leaves in it, so that `report`, `simulate` and `review` can be
/// pointed at a finished demo with `--config <data dir>/wrapup.toml`.
pub const CONFIG_FILE: &str = "wrapup.toml";

/// Writes `text` to `path` readable by its owner only: the demo's configuration holds the sandbox's credentials
/// as literals.
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // A file left by an earlier run keeps its mode on open: narrow it first.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
    }
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Name of the demo's Genesys connection.
pub const CONNECTION: &str = "genesys";
/// Name of the demo's CXone connection.
pub const CXONE_CONNECTION: &str = "cxone";
/// Name of the CRM receiver's sink that the outbox will deliver to.
pub const CRM_SINK: &str = "crm";
/// The decision hook the demo's CRM receiver answers as, which rules name as `decide = { hook = "crm", … }`.
pub const CRM_HOOK: &str = "crm";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How long traffic runs, in wall seconds.
    #[arg(long, default_value_t = 30)]
    pub duration: u64,
    /// Print the summary as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Sandbox fault profile: calm or hostile.
    #[arg(long, default_value = "calm")]
    pub faults: String,
    /// Seed of the simulated center.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Simulated seconds per wall second [default: 20 with calm faults, 5 with hostile ones; see `demo_speed`].
    #[arg(long)]
    pub speed: Option<f64>,
    /// Conversations arriving per simulated second [default: 1.2 per wall second at the chosen speed].
    #[arg(long)]
    pub arrival_rate: Option<f64>,
    /// Agent legs already in ACW at start.
    #[arg(long, default_value_t = 10)]
    pub preload: usize,
    /// Keep the SQLite store (and its ledger) in this directory instead of a temporary one, with the run's
    /// configuration as `wrapup.toml` (for `wrapup simulate --config DIR/wrapup.toml` after the run).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
    /// No live progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// How the service hears about legs: EventBridge-style HTTP delivery, or only the Notification API websocket.
    #[arg(long, value_enum, default_value_t = IntakeMode::EventBridge)]
    pub intake: IntakeMode,
    /// Wall milliseconds between reconciler passes (analytics sweeps for legs whose events were lost); 0 = no
    /// periodic pass.
    #[arg(long, default_value_t = DEFAULT_RECONCILE_EVERY_MS)]
    pub reconcile_every_ms: u64,
    /// How the CXone connection finds ACW windows: polling (contacts/active + agents/states) or sessions (a joined
    /// session per agent, long-polling get-next-event).
    #[arg(long, value_enum, default_value_t = CxoneDetection::Polling)]
    pub cxone_acw_detection: CxoneDetection,
    /// Run the Genesys org only.
    #[arg(long)]
    pub no_cxone: bool,
    /// Open the dashboard in a browser when the service is up (its URL is printed either way).
    #[arg(long)]
    pub open: bool,
    /// After the traffic, keep the service (and its dashboard) up until Ctrl-C, then print the summary.
    #[arg(long)]
    pub hold: bool,
}

/// `--cxone-acw-detection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CxoneDetection {
    Polling,
    Sessions,
}

impl CxoneDetection {
    fn config_name(self) -> &'static str {
        match self {
            CxoneDetection::Polling => "polling",
            CxoneDetection::Sessions => "sessions",
        }
    }
}

/// The CXone business unit of an embedded run.
#[derive(Debug, Clone)]
pub struct CxoneOptions {
    pub acw_detection: CxoneDetection,
    /// Wall milliseconds between polls (`polling`).
    pub poll_interval_ms: u64,
    /// The connection's request budget. CXone publishes no limit (the sandbox enforces none by default); at the
    /// demo's accelerated clock a center's worth of contacts arrives each wall second.
    pub requests_per_minute: u32,
}

impl Default for CxoneOptions {
    fn default() -> Self {
        Self { acw_detection: CxoneDetection::Polling, poll_interval_ms: 500, requests_per_minute: 1200 }
    }
}

/// The demo's clock speed when none is given. ACW windows, talk times, agents' own actions and 429 storms run on the
/// accelerated clock, but network faults cannot: a request's latency, a hung request's timeout, a retry's backoff,
/// `Retry-After` (whole seconds), the budget's pacing, CXone's polling interval and the deadline guard are wall
/// time, so at N× each costs N times the share of a window it costs on a real platform. The one race no protocol
/// closes on either platform (no conditional write: an agent who codes in the instant between our gate read and our
/// write landing) grows with it too, since that instant is the write's own latency. Calm runs have none of these
/// faults and keep 20×; hostile runs default to 5× (measured in docs/RELIABILITY.md: at 10× one run in four to six
/// had one leg lost to that race or to stacked faults, at 5× none of the runs).
pub fn demo_speed(faults: &str) -> f64 {
    if faults == "hostile" {
        5.0
    } else {
        20.0
    }
}

/// One attempt of a platform call in embedded runs, in wall milliseconds. A connection's default (10 s) is minutes of
/// the accelerated clock: a hung answer (5 % of requests under the hostile profile) would hold a CXone detection
/// poll, or a leg without an ACW timeout, for longer than most windows. One second is ten to twenty seconds of the
/// platform's clock, the proportion the default keeps on a real one.
pub const DEMO_REQUEST_TIMEOUT_MS: u64 = 1_000;

/// Conversations per wall second the demo offers by default, whatever its speed (0.06 per simulated second at 20x).
pub const DEMO_ARRIVALS_PER_WALL_SEC: f64 = 1.2;

/// Reconciler pace of embedded runs, in wall milliseconds. The shared clock is accelerated (`--speed`), so ACW
/// windows last seconds of wall time: a sweep must come around well within one.
pub const DEFAULT_RECONCILE_EVERY_MS: u64 = 500;

/// What the demo ended with.
pub struct DemoResult {
    pub summaries: Vec<ConnectionSummary>,
    pub elapsed_secs: f64,
    pub crm: summary::CrmSummary,
}

impl DemoResult {
    pub fn violations(&self) -> u64 {
        self.summaries.iter().map(|s| s.violations.total()).sum()
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"duration_secs": self.elapsed_secs, "connections": self.summaries, "crm": self.crm})
    }

    /// The human summary: a table per connection, then the CRM receiver.
    pub fn table(&self) -> String {
        summary::table(&self.summaries, self.elapsed_secs) + &summary::crm_table(&self.crm)
    }
}

fn random_token() -> String {
    use rand::Rng;
    let bytes: [u8; 24] = rand::thread_rng().gen();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What an embedded run (the demo, the end-to-end tests) is made of.
pub struct EnvOptions {
    pub sandbox: SandboxConfig,
    /// `[[rules]]` tables in the configuration format.
    pub rules: String,
    /// Simulated seconds per wall second, shared by sandbox and service.
    pub speed: f64,
    /// The service's request budget per OAuth client.
    pub requests_per_minute: u32,
    /// Keep the store here instead of a temporary directory.
    pub data_dir: Option<std::path::PathBuf>,
    /// Also run the sandbox's CXone business unit and a CXone connection to it.
    pub cxone: Option<CxoneOptions>,
    /// Keep the service's state in this PostgreSQL database (a URL without a password) instead of SQLite in the
    /// data directory.
    pub store: Option<String>,
    /// The Genesys connection's `lookup.fallback_code` (what a decision lookup answers when no rule decides).
    pub lookup_fallback: Option<String>,
}

/// How the service hears about legs in an embedded run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IntakeMode {
    /// The sandbox POSTs EventBridge envelopes to the service's `/intake/{connection}` (the default).
    #[default]
    #[value(name = "eventbridge")]
    EventBridge,
    /// No event target at all: the service subscribes to every queue of the center over the Notification API
    /// websocket, and that is its only intake.
    #[value(name = "websocket")]
    WebsocketOnly,
}

/// A finished run: the summary and what it was computed from.
pub struct Finished {
    pub summary: ConnectionSummary,
    pub legs: Vec<wrapup_core::lifecycle::LegRecord>,
    pub truth: Vec<wrapup_sandbox::LegTruth>,
    pub report: wrapup_sandbox::Report,
    /// The CXone connection's, when it ran.
    pub cxone: Option<CxoneFinished>,
    /// The service's metrics at the end (Prometheus text), when it exports them.
    pub metrics: Option<String>,
    /// What the CRM receiver's sink received.
    pub crm: summary::CrmSummary,
}

/// A finished run's CXone side.
pub struct CxoneFinished {
    pub summary: ConnectionSummary,
    pub legs: Vec<wrapup_core::lifecycle::LegRecord>,
    pub truth: Vec<wrapup_sandbox::CxoneLegTruth>,
    pub report: wrapup_sandbox::CxoneReport,
}

/// The sandbox and the service, wired together in this process.
pub struct DemoEnv {
    pub sandbox: wrapup_sandbox::SandboxHandle,
    pub service: Option<app::ServiceHandle>,
    pub store: Arc<dyn Store>,
    /// The same store when it is SQLite, for what only SQLite reports (its write batching).
    pub sqlite: Option<SqliteStore>,
    pub clock: SharedClock,
    pub config: wrapup_config::Config,
    pub speed: f64,
    /// When the service started (legs that ended earlier do not count for latency).
    pub service_started: Timestamp,
    pub data_path: std::path::PathBuf,
    /// The CRM the run's messages go to: a [`CrmReceiver`] with the sink [`CRM_SINK`].
    pub crm: CrmReceiver,
    /// The `whsec_` secret of that sink.
    pub crm_sink_secret: String,
    /// When [`Self::settle`] last compared the sandbox's truth with the store.
    cutoff: std::sync::Mutex<Option<Timestamp>>,
    _temp: tempfile::TempDir,
}

impl DemoEnv {
    /// Starts the sandbox (traffic stopped) and the service built from a generated configuration.
    pub async fn start(opts: EnvOptions) -> anyhow::Result<DemoEnv> {
        Self::start_with_intake(opts, IntakeMode::default()).await
    }

    /// [`DemoEnv::start`] with a choice of intake.
    pub async fn start_with_intake(opts: EnvOptions, intake: IntakeMode) -> anyhow::Result<DemoEnv> {
        Self::start_with(opts, intake, Duration::from_millis(DEFAULT_RECONCILE_EVERY_MS)).await
    }

    /// [`DemoEnv::start_with_intake`] with the reconciler's pace (zero: only the pass at start).
    pub async fn start_with(
        opts: EnvOptions,
        intake: IntakeMode,
        reconcile_every: Duration,
    ) -> anyhow::Result<DemoEnv> {
        let clock: SharedClock = Arc::new(ScaledClock::new(Timestamp::now(), opts.speed));
        let temp = tempfile::tempdir().context("creating a temporary data directory")?;
        let data_path = match &opts.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                // Absolute: the configuration left in the directory reads `data_dir` relative to itself.
                std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?
            }
            None => temp.path().to_path_buf(),
        };
        let service_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the service")?;
        let service_url = format!("http://{}", service_listener.local_addr()?);
        let sandbox_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the sandbox")?;
        let intake_key = random_token();
        let mut sandbox_cfg = opts.sandbox;
        sandbox_cfg.traffic_autostart = false;
        sandbox_cfg.speed = opts.speed;
        sandbox_cfg.cxone.enabled = opts.cxone.is_some();
        let websocket = match intake {
            IntakeMode::EventBridge => {
                sandbox_cfg.event_targets.push(EventTarget {
                    url: format!("{service_url}/intake/{CONNECTION}"),
                    api_key_header: Some("x-wrapup-intake-key".into()),
                    api_key: Some(intake_key.clone()),
                });
                String::new()
            }
            IntakeMode::WebsocketOnly => {
                let queues: Vec<String> = sandbox_cfg.center.queues.iter().map(|q| format!("{:?}", q.name)).collect();
                format!("websocket = {{ enabled = true, queues = [{}] }}\n", queues.join(", "))
            }
        };
        // The service is told what this sandbox does (a deployment's operator learns it from their org).
        let shows_provisional = sandbox_cfg.behaviours.conversation_provisional == ConversationProvisional::Shown;
        let sandbox = Sandbox::start(sandbox_cfg, sandbox_listener, clock.clone()).await?;
        let cxone_connection = match &opts.cxone {
            None => String::new(),
            Some(cx) => {
                let c = sandbox.cxone_credentials();
                format!(
                    r#"
[[connections]]
name = "{CXONE_CONNECTION}"
kind = "cxone"
base_url = "{base_url}"
client_id = "{client_id}"
client_secret = "literal:{client_secret}"
access_key_id = "{key_id}"
access_key_secret = "literal:{key_secret}"
acw_detection = "{detection}"
poll_interval_ms = {poll}
requests_per_minute = {rpm}
reconcile_every_secs = 1
request_timeout_ms = {timeout}
"#,
                    base_url = sandbox.base_url(),
                    client_id = c.client_id,
                    client_secret = c.client_secret,
                    key_id = c.access_key_id,
                    key_secret = c.access_key_secret,
                    detection = cx.acw_detection.config_name(),
                    poll = cx.poll_interval_ms,
                    rpm = cx.requests_per_minute,
                    timeout = DEMO_REQUEST_TIMEOUT_MS,
                )
            }
        };
        let crm_sink_secret = wrapup_sandbox::WebhookSecret::generate().to_whsec();
        let crm_hook_secret = wrapup_sandbox::WebhookSecret::generate().to_whsec();
        let crm = CrmReceiver::start(CrmOptions {
            sinks: vec![(CRM_SINK.to_string(), crm_sink_secret.clone())],
            hooks: vec![(CRM_HOOK.to_string(), crm_hook_secret.clone())],
            ..CrmOptions::default()
        })
        .await
        .context("starting the CRM receiver")?;
        // The outbox delivers every finished leg's message to the receiver, signed with the sink's secret.
        let outbox_sinks = format!(
            "[[sinks]]\nname = {CRM_SINK:?}\nurl = {url:?}\nsecret = \"literal:{crm_sink_secret}\"\n",
            url = crm.sink_url(CRM_SINK),
        );
        // The Genesys connection takes CRM decisions, and rules may ask the receiver's hook.
        let decision_hooks = format!(
            "[[decision_hooks]]\nname = {CRM_HOOK:?}\nurl = {url:?}\nsecret = \"literal:{crm_hook_secret}\"\n",
            url = crm.hook_url(CRM_HOOK),
        );
        let lookup = match &opts.lookup_fallback {
            Some(code) => format!("\n[connections.lookup]\nfallback_code = {code:?}\n"),
            None => String::new(),
        };
        let credentials = sandbox.credentials();
        let (client_id, client_secret) = credentials.first().cloned().context("the sandbox has no client")?;
        let extra: Vec<String> = credentials
            .iter()
            .skip(1)
            .map(|(id, secret)| format!("{{ client_id = \"{id}\", client_secret = \"literal:{secret}\" }}"))
            .collect();
        let store_table = match &opts.store {
            Some(url) => format!("[store]\nurl = {url:?}\n"),
            None => String::new(),
        };
        let config_text = format!(
            r#"data_dir = {data_dir:?}
listen = "127.0.0.1:0"
{store_table}

[[connections]]
name = "{CONNECTION}"
kind = "genesys"
base_url = "{base_url}"
client_id = "{client_id}"
client_secret = "literal:{client_secret}"
extra_clients = [{extra}]
requests_per_minute = {rpm}
request_timeout_ms = {DEMO_REQUEST_TIMEOUT_MS}
conversation_shows_provisional = {shows_provisional}

[connections.intake]
api_key_header = "x-wrapup-intake-key"
api_key = "literal:{intake_key}"
{websocket}{lookup}
[connections.decisions]
{cxone_connection}
{outbox_sinks}
{decision_hooks}
{rules}"#,
            data_dir = data_path.display().to_string(),
            base_url = sandbox.base_url(),
            extra = extra.join(", "),
            rpm = opts.requests_per_minute,
            rules = opts.rules,
        );
        let config = wrapup_config::Config::parse(&config_text, "generated configuration")
            .map_err(|e| anyhow::anyhow!("the generated configuration is invalid:\n{e}"))?;
        if opts.data_dir.is_some() {
            write_private(&data_path.join(CONFIG_FILE), &config_text)?;
        }
        let (store, sqlite): (Arc<dyn Store>, _) = match &opts.store {
            Some(url) => (Arc::new(PostgresStore::connect(url).await?), None),
            None => {
                let sqlite = SqliteStore::open(&data_path.join("wrapup.db")).await?;
                (Arc::new(sqlite.clone()), Some(sqlite))
            }
        };
        let mut spec = wrapup_service::build::spec_from_config(&config, store.clone(), clock.clone())?;
        // The sandbox confirms a write with its event at once (or the demo's frequent sweeps do): read back sooner.
        spec.confirm_within = Duration::from_secs(1);
        for c in &mut spec.connections {
            if let Some(r) = &mut c.reconcile {
                // Seconds of wall time are minutes of the accelerated clock: sweep often, abandon a hung request
                // after a second, and look into a missing confirmation after two.
                r.settings.every = reconcile_every;
                r.settings.request_timeout = Duration::from_secs(1);
            }
        }
        let service = app::start(spec, service_listener).await?;
        // Like a deployment behind a readiness probe: traffic starts once every catalog is loaded. Until then each
        // leg would wait for the first load, and on the accelerated clock a slow first load under hostile faults
        // (a second of wall time) is twenty seconds of every ACW window.
        let ready = async {
            while !service.state.connections.values().all(|c| c.catalog.is_loaded()) {
                for c in service.state.connections.values() {
                    let _ = c.catalog.get().await;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), ready)
            .await
            .context("the service did not load its code catalogs within 30 s")?;
        if intake == IntakeMode::WebsocketOnly {
            // Messages published before the service's socket is up are lost (the platform does not replay them):
            // start only once it listens.
            let connected = async {
                while !websocket_connected(&sandbox) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), connected)
                .await
                .context("the service did not connect its notification websocket within 10 s")?;
        }
        let service_started = clock.now();
        Ok(DemoEnv {
            sandbox,
            service: Some(service),
            store,
            sqlite,
            clock,
            config,
            speed: opts.speed,
            service_started,
            data_path,
            crm,
            crm_sink_secret,
            cutoff: std::sync::Mutex::new(None),
            _temp: temp,
        })
    }

    /// All legs the service knows, of the demo's Genesys connection.
    pub async fn legs(&self) -> anyhow::Result<Vec<wrapup_core::lifecycle::LegRecord>> {
        self.legs_of(CONNECTION).await
    }

    /// All legs the service knows, of one connection.
    pub async fn legs_of(&self, connection: &str) -> anyhow::Result<Vec<wrapup_core::lifecycle::LegRecord>> {
        let all = LegFilter { connection: Some(connection.into()), limit: Some(u32::MAX), ..Default::default() };
        Ok(self.store.list_legs(&all).await?)
    }

    /// Waits (at most `max`) until the service recorded an outcome for every leg whose window the sandbox closed.
    /// Returns how many are still without one. The sandbox's truth is read again on every round (its windows keep
    /// closing while the service catches up), and the moment of the last read becomes the run's cutoff: a window
    /// that closes after it is judged as still open (see [`Self::finish_with_truth`]).
    pub async fn settle(&self, max: Duration) -> anyhow::Result<usize> {
        let with_cxone = self.config.connections.iter().any(|c| c.name == CXONE_CONNECTION);
        let settle = Instant::now();
        loop {
            let at = self.clock.now();
            let mut truths = vec![(CONNECTION, self.sandbox.legs())];
            if with_cxone {
                truths.push((CXONE_CONNECTION, cxone_truth_as_legs(&self.sandbox.cxone_legs())));
            }
            let mut pending = 0;
            for (connection, truth) in &truths {
                let done: std::collections::HashSet<(String, String)> = self
                    .legs_of(connection)
                    .await?
                    .into_iter()
                    .filter(|l| l.is_done())
                    .map(|l| (l.key.conversation, l.key.participant))
                    .collect();
                pending += truth
                    .iter()
                    .filter(|t| t.acw_started_at.is_some() && t.window_closed_at.is_some())
                    .filter(|t| !done.contains(&(t.conversation_id.clone(), t.participant_id.clone())))
                    .count();
            }
            *self.cutoff.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
            if pending == 0 || settle.elapsed() >= max {
                return Ok(pending);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`Self::settle`], then, for what is still without an outcome, one last look at each platform
    /// ([`app::AppState::last_look`]: a reconciler pass, a completed-contacts sweep) and a second wait. A leg still
    /// unknown after that is lost. Returns how many are.
    pub async fn settle_with_last_look(&self, max: Duration) -> anyhow::Result<usize> {
        let pending = self.settle(max).await?;
        let Some(service) = self.service.as_ref().filter(|_| pending > 0) else { return Ok(pending) };
        tracing::info!(pending, cutoff = %self.clock.now(), "Windows closed without an outcome yet; one last look.");
        let since =
            self.service_started.checked_sub(jiff::SignedDuration::from_secs(60)).unwrap_or(self.service_started);
        for e in service.state.last_look(since).await {
            tracing::warn!(error = %e, "The last look before the summary could not read everything.");
        }
        self.settle(max).await
    }

    /// Stops the service and the sandbox and summarises the run.
    pub async fn finish(self) -> anyhow::Result<ConnectionSummary> {
        Ok(self.finish_with_truth().await?.summary)
    }

    /// Stops the service, then reads the sandbox's ground truth (so every write the service made is in it), and
    /// summarises. A window the sandbox closed after the last [`Self::settle`] round (or after `finish` was called,
    /// without one) is not held against the service.
    pub async fn finish_with_truth(mut self) -> anyhow::Result<Finished> {
        // The last moment the truth was compared with the store, or now when nobody compared it.
        let cutoff = self.cutoff.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or_else(|| self.clock.now());
        let service = self.service.take().context("the service is not running")?;
        let conn = service.state.connections.get(CONNECTION).context("the demo connection is missing")?.clone();
        let cx_conn = service.state.connections.get(CXONE_CONNECTION).cloned();
        let catalog = conn.catalog.get().await.ok();
        let cx_catalog = match &cx_conn {
            Some(c) => c.catalog.get().await.ok(),
            None => None,
        };
        // Every finished leg's message reaches the CRM before the service stops (a sink that is down keeps them).
        let outbox = drain_outbox(service.state.store.as_ref(), Duration::from_secs(10)).await;
        let metrics = service.state.metrics.as_ref().map(|m| m.render());
        service.shutdown().await;
        let stats = conn.platform.stats();
        let report = self.sandbox.report();
        // Closed after the cutoff: the service had no chance to hear of it; count it as still open.
        let before_cutoff = |t: &mut wrapup_sandbox::LegTruth| {
            let closed_late =
                t.window_closed_at.as_deref().and_then(|c| c.parse::<Timestamp>().ok()).is_some_and(|c| c > cutoff);
            if closed_late {
                t.window_closed_at = None;
            }
        };
        let truth: Vec<_> = self
            .sandbox
            .legs()
            .into_iter()
            .map(|mut t| {
                before_cutoff(&mut t);
                t
            })
            .collect();
        let cxone = match cx_conn {
            None => None,
            Some(cx_conn) => {
                let cx_truth = self.sandbox.cxone_legs();
                let mut as_legs = cxone_truth_as_legs(&cx_truth);
                as_legs.iter_mut().for_each(before_cutoff);
                let cx_report = report.cxone.clone();
                let as_report = wrapup_sandbox::Report {
                    legs: cx_report.legs.clone(),
                    violations: cx_report.violations.clone(),
                    api: cx_report.api.clone(),
                    events: cx_report.events.clone(),
                    cxone: Default::default(),
                };
                let (summary, legs) = self
                    .summarise_connection(
                        (CXONE_CONNECTION, "cxone"),
                        cx_catalog.as_deref(),
                        cx_conn.platform.stats(),
                        (&as_legs, &as_report),
                        metrics.as_deref(),
                    )
                    .await?;
                Some(CxoneFinished { summary, legs, truth: cx_truth, report: cx_report })
            }
        };
        let (summary, legs) = self
            .summarise_connection(
                (CONNECTION, "genesys"),
                catalog.as_deref(),
                stats,
                (&truth, &report),
                metrics.as_deref(),
            )
            .await?;
        self.sandbox.shutdown().await;
        let mut crm = summary::CrmSummary::of(&self.crm.received(CRM_SINK));
        crm.outbox = outbox;
        crm.retried = metrics
            .as_deref()
            .map(|m| {
                summary::metric_sum(m, "wrapup_outbox_deliveries_total", &[("sink", CRM_SINK), ("result", "retried")])
            })
            .unwrap_or(0);
        self.crm.shutdown().await;
        Ok(Finished { summary, legs, truth, report, cxone, metrics, crm })
    }

    /// One connection's summary, judged by `judged_by` (the sandbox's truth and report in the Genesys shape), with
    /// the store's and the metrics' counts of finished legs; and the connection's legs.
    async fn summarise_connection(
        &self,
        (name, platform): (&str, &str),
        catalog: Option<&wrapup_core::catalog::Catalog>,
        stats: wrapup_service::platform::CallStats,
        judged_by: (&[wrapup_sandbox::LegTruth], &wrapup_sandbox::Report),
        metrics: Option<&str>,
    ) -> anyhow::Result<(ConnectionSummary, Vec<wrapup_core::lifecycle::LegRecord>)> {
        let legs = self.legs_of(name).await?;
        let mut summary = summary::summarise(summary::Inputs {
            name,
            platform,
            legs: &legs,
            catalog,
            rules: &self.config.rules,
            api_calls: stats.total,
            rate_limited: stats.rate_limited,
            token_requests: stats.token_requests,
            clock_factor: self.speed,
            latency_since: self.service_started,
            truth: judged_by.0,
            report: judged_by.1,
        });
        self.count_outcomes(&mut summary, metrics).await?;
        Ok((summary, legs))
    }

    /// Fills the summary's two other counts of finished legs: the store's `outcome` lines and the metrics'
    /// `wrapup_outcomes_total` (which counts this process's legs: one run per process, as in `wrapup demo`).
    async fn count_outcomes(&self, summary: &mut ConnectionSummary, metrics: Option<&str>) -> anyhow::Result<()> {
        summary.ledger_outcome_lines = Some(self.store.count_ledger_lines(&summary.name, "outcome").await?);
        summary.metrics_outcomes = metrics.map(|m| summary::metric_outcomes(m, &summary.name));
        Ok(())
    }
}

/// CXone contacts in the shape of Genesys leg truth (conversation = master contact, participant = contact), so
/// one summary judges both platforms.
pub fn cxone_truth_as_legs(truth: &[wrapup_sandbox::CxoneLegTruth]) -> Vec<wrapup_sandbox::LegTruth> {
    use wrapup_sandbox::cxone::CxMedia;
    truth
        .iter()
        .map(|t| wrapup_sandbox::LegTruth {
            conversation_id: t.master_contact_id.to_string(),
            participant_id: t.contact_id.to_string(),
            communication_id: String::new(),
            media_type: match t.media {
                CxMedia::Voice => wrapup_sandbox::Media::Calls,
                CxMedia::Chat | CxMedia::WorkItem => wrapup_sandbox::Media::Messages,
            },
            queue_id: Some(t.skill_id.to_string()),
            queue_name: Some(t.skill_name.clone()),
            user_id: t.agent_id.map(|a| a.to_string()),
            wrapup_prompt: Some(format!("acwTypeId={}", t.acw_type_id)),
            wrapup_required: t.require_disposition,
            state: t.state.clone(),
            acw_started_at: t.acw_started_at.clone(),
            acw_deadline: t.acw_deadline.clone(),
            window_closed_at: t.acw_started_at.as_ref().and(t.closed_at.clone()),
            final_code: t.final_disposition_id.map(|d| d.to_string()),
            final_code_name: t.final_disposition_name.clone(),
            coded_by: t.coded_by,
            api_writes: t.api_writes,
            agent_coded_before_api: t.agent_coded_before_api,
            agent_changed_after_api: t.agent_changed_after_api,
            true_code: t.true_code.map(|d| d.to_string()),
            true_code_name: t.true_code_name.clone(),
            agent_pick: t.agent_pick.map(|d| d.to_string()),
            agent_pick_name: t.agent_pick_name.clone(),
        })
        .collect()
}

/// Whether any notification channel of the sandbox has a socket connected.
pub fn websocket_connected(sandbox: &wrapup_sandbox::SandboxHandle) -> bool {
    sandbox.with_org(|o| {
        let hub = o.hub.clone();
        (0..o.clients.len()).flat_map(|c| hub.list(c)).any(|(id, _)| hub.is_connected(&id))
    })
}

/// Runs the demo to completion.
pub async fn run(args: &DemoArgs) -> anyhow::Result<DemoResult> {
    let faults = FaultProfile::named(&args.faults)
        .with_context(|| format!("unknown fault profile {:?} (try calm or hostile)", args.faults))?;
    let mut sandbox = SandboxConfig { seed: args.seed, preload: args.preload, faults, ..SandboxConfig::default() };
    let speed = args.speed.unwrap_or_else(|| demo_speed(&args.faults));
    anyhow::ensure!(speed.is_finite() && speed > 0.0, "--speed must be a positive number, not {speed}");
    sandbox.center.arrival_rate_per_sec = args.arrival_rate.unwrap_or(DEMO_ARRIVALS_PER_WALL_SEC / speed);
    let env = DemoEnv::start_with(
        EnvOptions {
            sandbox,
            rules: DEMO_RULES.to_string(),
            speed,
            requests_per_minute: 300,
            data_dir: args.data_dir.clone(),
            cxone: (!args.no_cxone)
                .then(|| CxoneOptions { acw_detection: args.cxone_acw_detection, ..CxoneOptions::default() }),
            store: None,
            lookup_fallback: Some(lookups::DEMO_FALLBACK_CODE.to_string()),
        },
        args.intake,
        Duration::from_millis(args.reconcile_every_ms),
    )
    .await?;
    if let Some(service) = &env.service {
        let url = format!("{}/dashboard", service.admin_url());
        eprintln!("Dashboard: {url}");
        if args.open {
            open_in_browser(&url);
        }
    }
    let (stop_lookups, lookups_stopped) = tokio::sync::watch::channel(false);
    let flow = lookup_client(&env)?.run(env.sandbox.clone(), lookups_stopped);
    let flow = tokio::spawn(flow);
    env.sandbox.start_traffic();
    let started = Instant::now();
    let total = Duration::from_secs(args.duration);
    while started.elapsed() < total {
        tokio::time::sleep(Duration::from_millis(500).min(total.saturating_sub(started.elapsed()))).await;
        if !args.quiet {
            if let Some(service) = &env.service {
                progress(service, started.elapsed(), total).await;
            }
        }
    }
    env.sandbox.stop_traffic();
    let _ = stop_lookups.send(true);
    let tally = flow.await.context("the lookup client failed")?;
    // Let the service catch up with every window the sandbox has closed (events in flight, legs being written).
    env.settle_with_last_look(Duration::from_secs(5)).await?;
    if !args.quiet {
        eprintln!();
    }
    if args.hold {
        eprintln!("The traffic is over; the service and its dashboard stay up. Ctrl-C ends the demo with its summary.");
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let finished = env.finish_with_truth().await?;
    let mut summary = finished.summary;
    let looked_up = lookups::LookupSummary::new(&tally, finished.metrics.as_deref(), CONNECTION);
    if !looked_up.consistent() {
        tracing::warn!(lookups = ?looked_up, "A demo lookup failed, or the service counted lookups otherwise.");
    }
    summary.lookups = Some(looked_up);
    let mut summaries = vec![summary];
    summaries.extend(finished.cxone.map(|c| c.summary));
    Ok(DemoResult { summaries, elapsed_secs: (elapsed * 10.0).round() / 10.0, crm: finished.crm })
}

/// Asks the desktop to open `url` (`xdg-open`, or `open` on macOS); says so when it cannot, the URL being printed.
fn open_in_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let opened = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = opened {
        eprintln!("Could not open a browser ({opener}: {e}); open {url} yourself.");
    }
}

/// The demo's platform flow, asking the Genesys connection's lookups with its intake key (the lookup's default).
fn lookup_client(env: &DemoEnv) -> anyhow::Result<lookups::LookupClient> {
    let service = env.service.as_ref().context("the service is not running")?;
    let connection = env.config.connections.iter().find(|c| c.name == CONNECTION).context("no Genesys connection")?;
    let key = connection.intake.api_key.as_ref().context("the demo's intake has no key")?;
    Ok(lookups::LookupClient {
        http: reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?,
        base_url: service.base_url(),
        connection: CONNECTION.to_string(),
        key_header: connection.intake.api_key_header.clone(),
        key: key.expose().to_string(),
    })
}

async fn progress(service: &app::ServiceHandle, elapsed: Duration, total: Duration) {
    let mut line = format!("[{:>3}/{} s]", elapsed.as_secs(), total.as_secs());
    for (name, conn) in &service.state.connections {
        let counts = service.state.store.outcome_counts(name).await.unwrap_or_default();
        let get = |o: Option<Outcome>| counts.get(&o).copied().unwrap_or(0);
        let legs: u64 = counts.values().sum();
        line.push_str(&format!(
            " {name}: legs {legs} applied {} agent_won {} expired {} review {} open {} calls {}",
            get(Some(Outcome::Applied)),
            get(Some(Outcome::AgentWon)),
            get(Some(Outcome::Expired)),
            get(Some(Outcome::Review)),
            get(None),
            conn.platform.stats().total
        ));
    }
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r{line}\x1b[K");
    let _ = err.flush();
}

/// Waits (at most `max`, wall time) until the outbox has routed every message and delivered or given up on every
/// delivery to [`CRM_SINK`]; answers the deliveries by state.
async fn drain_outbox(store: &dyn Store, max: Duration) -> summary::OutboxCounts {
    let started = std::time::Instant::now();
    loop {
        let unrouted = store.outbox_unrouted(1).await.map(|m| m.len()).unwrap_or(0);
        let counts = store.outbox_counts().await.unwrap_or_default();
        let of = |state: wrapup_store::DeliveryState| counts.get(&(CRM_SINK.to_string(), state)).copied().unwrap_or(0);
        let now = summary::OutboxCounts {
            delivered: of(wrapup_store::DeliveryState::Delivered),
            pending: of(wrapup_store::DeliveryState::Pending) + unrouted as u64,
            dead: of(wrapup_store::DeliveryState::Dead),
        };
        if now.pending == 0 || started.elapsed() >= max {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
