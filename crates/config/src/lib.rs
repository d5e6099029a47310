//! wrapup's configuration file: one TOML document with the data directory, the listen address, the admin token,
//! the platform connections and the rules.
//!
//! # How it is read
//!
//! The text is parsed into a tree of values that all carry their byte span (`tree`), then walked by hand (`read`)
//! against the schema below. The walk never stops at the first problem: it records each one — syntax, unknown keys,
//! wrong types, missing keys, values out of range, bad regexes, durations and templates, duplicate names, dangling
//! references, unresolvable secrets — with `file:line:column` and the key path (`rules[2].when.talk_ms`), and
//! carries on with the next key. Only a document without a single problem becomes a [`Config`]. Unknown keys are
//! refused everywhere (a misspelt key silently ignored is a rule that silently does not apply).
//!
//! Secrets are references (`env:NAME`, `file:PATH`, or `literal:VALUE` for tests and demos), resolved at load time
//! into [`Secret`]s; see [`SecretSource`]. No error message ever contains a secret's value.
//!
//! # Format
//!
//! ```toml
//! data_dir = "./wrapup-data"            # default "./wrapup-data"; relative to the config file's directory
//!
//! listen = "127.0.0.1:8080"             # default; intake, health (and the admin API unless admin_listen)
//! admin_listen = "127.0.0.1:8081"       # optional; the admin API and /metrics on their own address
//!
//! [store]                               # optional; default: the embedded SQLite database in data_dir
//! url = "postgres://wrapup@db.internal:5432/wrapup"   # or "sqlite"; any number of replicas share one PostgreSQL
//! password = "env:WRAPUP_DB_PASSWORD"   # optional reference; a password written in the URL is refused
//!
//! [admin]
//! token = "env:WRAPUP_ADMIN_TOKEN"      # optional; the operator role: reads and review/outbox actions
//! viewer_token = "env:WRAPUP_VIEWER_TOKEN"    # optional; the viewer role: reads only
//! metrics_token = "env:WRAPUP_METRICS_TOKEN"  # optional; when set, /metrics requires it
//!
//! [http]                                # optional; the HTTP edge's limits (see docs/RELIABILITY.md)
//! header_read_timeout_ms = 5000         # a request's head must arrive within this
//! body_read_timeout_ms = 10000          # and its body within this, once the headers passed their checks
//! idle_timeout_ms = 10000               # a keep-alive connection with no request is closed after this
//! request_timeout_ms = 30000            # longest a request may take, answer included
//! max_connections = 1024                # open connections; at the cap the oldest idle one makes room
//! max_intake_requests = 256             # requests in progress per route class; more are answered 503
//! max_admin_requests = 32
//! max_health_requests = 64
//!
//! [[connections]]
//! name = "prod"                         # unique; what rules' `connection` and the ledger refer to
//! kind = "genesys"                      # "genesys" or "cxone" (see the CXone keys below)
//! region = "eu_west_1"                  # exactly one of `region` or `base_url` (e.g. the sandbox)
//! client_id = "env:GENESYS_CLIENT_ID"   # a reference, or written plainly (an id is not a secret)
//! client_secret = "env:GENESYS_CLIENT_SECRET"
//! requests_per_minute = 300             # default 300: the per-token budget
//! extra_clients = [{ client_id = "…", client_secret = "env:…" }]  # optional; pooled budget
//! system_codes = ["ININ-WRAP-UP-TIMEOUT"]  # optional; extra code ids/names the platform stamps itself
//! catalog_ttl_secs = 300                # default 300
//! catalog = "catalog/prod-genesys.toml" # optional: the catalog file (`wrapup catalog`); relative to this file;
//!                                       # `wrapup validate` reports drift between it and the live catalog
//! request_timeout_ms = 10000            # default 10000: one attempt of a platform call (wall time); live legs
//!                                       # with a deadline use less (a third of the time left)
//! reconcile_every_secs = 60             # default 60; 0 = only on demand (`wrapup reconcile`, websocket gaps)
//! reconcile_window_secs = 3600          # default 3600: how far back each reconcile pass looks
//! acw_estimate_default_secs = 20        # default 20: assumed length of optional / agent-requested ACW windows
//!                                       # until observed ones give an estimate (orders work only)
//! conversation_shows_provisional = false  # Genesys; default false: also read `…/wrapup?provisional=true`
//!
//! [connections.intake]                  # optional; all keys have defaults
//! api_key_header = "x-wrapup-intake-key"
//! api_key = "env:WRAPUP_INTAKE_KEY"     # optional; when set, intake requires it
//! auth = "api_key"                      # default; or "standard_webhooks" (signed requests, no api_key)
//! signing_secret = "env:WRAPUP_WEBHOOK_SECRET"  # with "standard_webhooks" only: `whsec_<base64>`
//! max_body_bytes = 1048576
//! websocket = { enabled = false, queues = ["Support"] }
//!
//! [connections.lookup]                  # optional: the lookup for platform-native flows (docs/FLOWS.md)
//! fallback_code = "Other"               # optional; the code a decision lookup answers when no rule decides
//! api_key = "env:WRAPUP_LOOKUP_KEY"     # optional for Genesys (default: the intake's auth); required for CXone
//! api_key_header = "x-wrapup-lookup-key"  # default "x-wrapup-intake-key"
//!
//! [connections.decisions]               # optional: take CRM decisions (docs/CRM.md); may be empty on Genesys
//! api_key = "env:WRAPUP_DECISIONS_KEY"  # optional for Genesys (default: the intake's auth); required for CXone
//! api_key_header = "x-wrapup-crm-key"   # default "x-wrapup-intake-key"
//!
//! [[decision_hooks]]                    # optional: CRMs rules may ask for a code (docs/CRM.md)
//! name = "orders"                       # unique; what a rule's `decide.hook` names
//! url = "https://crm.internal/wrapup/decide"
//! secret = "env:ORDERS_HOOK_SECRET"     # a Standard Webhooks secret (`whsec_<base64>`) the requests are signed with
//! timeout_ms = 3000                     # default 3000
//!
//! [[rules]]
//! name = "short abandoned calls"        # unique
//! code = "Abandoned"                    # the code *name*
//! notes = "auto: {{channel}} {{talk_seconds}}s"   # optional template
//! timing = "immediate"                  # default; or { before_timeout = "10s" } or { after = "30s" }
//! mode = "enforce"                      # default; or "shadow"
//! platform = "genesys"                  # optional limit
//! connection = "prod"                   # optional limit; must name a connection
//! decide = { crm = true, wait = "20s", fallback = "rule" }  # optional: wait for a CRM's decision; or
//!                                       # { hook = "orders", wait = "5s" }; fallback "rule" (default) or a code name
//! [rules.when]                          # optional; every matcher present must hold
//! channel = "voice"                     # or { one_of = ["voice", "callback"] }
//! direction = "inbound"
//! queue = { one_of = ["Support", "Sales"] }       # string matchers: "x" | { equals | one_of | regex | exists }
//! disconnect_type = { regex = "peer|client" }     # regexes match the whole value
//! campaign = { exists = false }
//! talk_ms = { lt = 5000 }               # numeric: lt, lte, gt, gte, eq (combinable), or a bare number for eq
//! hold_ms = { gte = 1000, lt = 60000 }
//! acw_timeout_ms = { gt = 0 }
//! attributes = { vip = { exists = false }, tier = "gold" }
//!
//! [[sinks]]                             # optional: the outbox's receivers (docs/OUTBOX.md)
//! name = "crm"                          # unique
//! url = "https://crm.example.com/hooks/wrapup"
//! secret = "env:WRAPUP_CRM_SECRET"      # `whsec_<base64>`: messages are signed per Standard Webhooks
//! filter = { connections = ["prod"], outcomes = ["applied", "agent_won"], queues = ["Sales"] }  # optional
//! mapping = { "Sale" = "SOLD", "No Sale" = "NOT_SOLD" }  # optional: code name → `data.disposition`
//! max_age = "24h"                       # default 24h (at most 168h): retried until then, then a dead letter
//! timeout = "10s"                       # default 10s: one attempt
//! concurrency = 16                      # default 16: deliveries in flight at once (one per leg)
//! ```
//!
//! A documented example lives in `examples/wrapup.example.toml`.

mod catalog_check;
mod catalog_file;
mod duration;
mod error;
mod read;
mod region;
mod schema;
mod secrets;
mod signing;
mod sinks;
mod tree;

pub use catalog_check::{check_catalog, check_catalogs, check_lookup_fallbacks, CatalogProblem, CatalogProblemKind};
pub use catalog_file::{CatalogFile, CodeFields, CodeSpec, QueueSpec, CXONE_NAME_MAX};
pub use error::{ConfigError, ConfigErrors, Location};
pub use region::{genesys_domain, GENESYS_REGIONS};
pub use secrets::{SecretSource, SystemSecrets};
pub use signing::{SigningSecret, SIGNING_KEY_BYTES, SIGNING_SECRET_PREFIX};
pub use sinks::{SinkConfig, SinkFilter, DEFAULT_SINK_CONCURRENCY, DEFAULT_SINK_MAX_AGE, DEFAULT_SINK_TIMEOUT};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use url::Url;
use wrapup_core::{Platform, RuleSet, Secret};

/// The whole configuration, validated and with secrets resolved.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the embedded SQLite database lives.
    pub data_dir: PathBuf,
    /// Which database keeps the legs, their ledgers and the inbox.
    pub store: StoreConfig,
    /// Address of the intake and health endpoints, and of the admin API unless `admin_listen` is set.
    pub listen: SocketAddr,
    /// When set, the admin API and `/metrics` are served here only (so they need not be reachable from where the
    /// platform's events come from).
    pub admin_listen: Option<SocketAddr>,
    pub admin: AdminConfig,
    pub http: HttpLimits,
    pub connections: Vec<ConnectionConfig>,
    /// The decision hooks rules may ask (`[[decision_hooks]]`).
    pub decision_hooks: Vec<DecisionHookConfig>,
    pub rules: RuleSet,
    /// Where each rule (by index) is written, for problems found later (e.g. against a live catalog).
    rule_locations: Vec<Location>,
    /// Where the outbox delivers every final code (`[[sinks]]`).
    pub sinks: Vec<SinkConfig>,
}

/// Where wrapup keeps its state (`[store]`).
#[derive(Debug, Clone, Default, PartialEq)]
pub enum StoreConfig {
    /// The embedded SQLite database `wrapup.db` in `data_dir`: one process.
    #[default]
    Sqlite,
    /// A PostgreSQL database, which any number of `wrapup serve` replicas can share. The URL holds no password
    /// (the config file is not a secret store); `password`, a reference, is added when connecting.
    Postgres { url: Url, password: Option<Secret> },
}

impl StoreConfig {
    /// The URL to connect with, the password included. Never log it; [`StoreConfig::describe`] is for messages.
    pub fn connect_url(&self) -> Option<String> {
        let Self::Postgres { url, password } = self else { return None };
        let mut url = url.clone();
        if let Some(p) = password {
            // Only fails for URLs that cannot have a password (no host), which the reader refuses.
            let _ = url.set_password(Some(p.expose()));
        }
        Some(url.to_string())
    }

    /// What the store is, for logs and errors: the URL without a password.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite => "SQLite in the data directory".into(),
            Self::Postgres { url, .. } => url.to_string(),
        }
    }
}

/// The admin API.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// The operator role's bearer token: reads and actions (review, outbox). When either token is set, every
    /// admin route requires one of them.
    pub token: Option<Secret>,
    /// The viewer role's bearer token: reads only; an action with it is refused (403).
    pub viewer_token: Option<Secret>,
    /// When set, `/metrics` requires it as a bearer token (a scraper need not hold the admin token).
    pub metrics_token: Option<Secret>,
}

/// The HTTP edge's timeouts and limits (`[http]`). The defaults and why they are what they are:
/// docs/RELIABILITY.md, "The HTTP edge".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's head (request line and headers) must arrive within this of its first byte; a new connection
    /// must deliver its first head within this of being accepted.
    pub header_read_timeout: std::time::Duration,
    /// A body must arrive within this, counted from when the handler starts reading it.
    pub body_read_timeout: std::time::Duration,
    /// A keep-alive connection with no request in progress is closed after this.
    pub idle_timeout: std::time::Duration,
    /// The longest a request may take, from its head to its answer (a slow reader of the answer included).
    pub request_timeout: std::time::Duration,
    /// Open connections across all listeners.
    pub max_connections: usize,
    /// Requests in progress at once, per route class; one more is answered 503 with `Retry-After`.
    pub max_intake_requests: usize,
    pub max_admin_requests: usize,
    pub max_health_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: std::time::Duration::from_millis(DEFAULT_HEADER_READ_TIMEOUT_MS),
            body_read_timeout: std::time::Duration::from_millis(DEFAULT_BODY_READ_TIMEOUT_MS),
            idle_timeout: std::time::Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS),
            request_timeout: std::time::Duration::from_millis(DEFAULT_HTTP_REQUEST_TIMEOUT_MS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_intake_requests: DEFAULT_MAX_INTAKE_REQUESTS,
            max_admin_requests: DEFAULT_MAX_ADMIN_REQUESTS,
            max_health_requests: DEFAULT_MAX_HEALTH_REQUESTS,
        }
    }
}

impl HttpLimits {
    /// Requests that may be in progress at once, all classes together.
    pub fn max_requests(&self) -> usize {
        self.max_intake_requests + self.max_admin_requests + self.max_health_requests
    }
}

/// One platform connection (a Genesys org or a CXone business unit).
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    pub name: String,
    pub kind: Platform,
    pub endpoint: Endpoint,
    /// The primary client first, then `extra_clients`; their budgets are pooled.
    pub clients: Vec<ClientCredentials>,
    /// Requests per minute per client.
    pub requests_per_minute: u32,
    /// Code ids or names the platform stamps by itself (in addition to the built-in ones).
    pub system_codes: Vec<String>,
    pub catalog_ttl: std::time::Duration,
    /// The catalog file of this connection (see [`CatalogFile`]), resolved against the config file's directory.
    pub catalog: Option<std::path::PathBuf>,
    /// The longest one attempt of a platform call may take (wall time) before it is abandoned and retried.
    pub request_timeout: std::time::Duration,
    /// How often the reconciler sweeps the platform's analytics for legs whose events were lost (wall time);
    /// zero turns the periodic sweep off.
    pub reconcile_every: std::time::Duration,
    /// How far back (by conversation start) each reconcile pass looks.
    pub reconcile_window: std::time::Duration,
    pub intake: IntakeConfig,
    /// The lookup for platform-native flows (`[connections.lookup]`).
    pub lookup: LookupConfig,
    /// CRM decisions (`PUT /api/v1/decisions/{connection}/…`), when the connection takes them
    /// (`[connections.decisions]`).
    pub decisions: Option<DecisionsConfig>,
    /// Genesys: whether a conversation read shows an agent's provisional (unsaved) wrap-up code. The public
    /// contract does not say; with `false` (the default) a gate that reads the conversation to see the ACW window
    /// also reads the participant's wrap-up with `provisional=true` before writing, one call more, so that an
    /// agent's provisional choice is never written over.
    pub conversation_shows_provisional: bool,
    /// How long an optional or agent-requested ACW window is assumed to last on a queue until enough windows were
    /// observed there to estimate it; orders work only (see `LegRecord::estimated_deadline`).
    pub acw_estimate_default: std::time::Duration,
    /// What only a CXone connection has (`kind = "cxone"`): the API user's access key and how ACW is detected.
    pub cxone: Option<CxoneSettings>,
}

/// The CXone part of a connection. `client_id`/`client_secret` are the registered application; the access key
/// (`access_key_id`/`access_key_secret`) is the API user's, which must have "Impersonate Agent" to write through
/// agents' sessions.
#[derive(Debug, Clone)]
pub struct CxoneSettings {
    pub access_key_id: String,
    pub access_key_secret: Secret,
    pub acw_detection: AcwDetection,
    /// Wall time between two polls of `contacts/active` + `agents/states` (`acw_detection = "polling"`).
    pub poll_interval: std::time::Duration,
    /// After a successful disposition only, move the agent to this state (`"Available"`), or not at all.
    pub agent_state_after_write: Option<String>,
}

/// How a CXone connection learns that a contact entered ACW (`acw_detection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcwDetection {
    /// `contacts/active` + `agents/states` every `poll_interval` (the default: see docs/PLATFORMS.md).
    #[default]
    Polling,
    /// A joined session per agent, long-polling `get-next-event`.
    Sessions,
}

/// Auth and discovery host of CXone (commercial cloud); FedRAMP is `https://cxone-gov.niceincontact.com`.
pub const CXONE_AUTH_URL: &str = "https://cxone.niceincontact.com/";

/// Where a connection's API and OAuth endpoints are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The configured region, when the endpoint came from one.
    pub region: Option<String>,
    /// e.g. `https://api.mypurecloud.ie/`.
    pub api_base: Url,
    /// e.g. `https://login.mypurecloud.ie/`; equal to `api_base` for a `base_url` (the sandbox serves both).
    pub login_base: Url,
}

/// OAuth client credentials.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// An identifier, not a secret; it may still be given by reference.
    pub client_id: String,
    pub client_secret: Secret,
}

/// How events for a connection come in.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    pub api_key_header: String,
    /// When set, intake requests must carry it in `api_key_header`.
    pub api_key: Option<Secret>,
    pub max_body_bytes: usize,
    pub websocket: WebsocketIntake,
    /// How intake requests are authenticated.
    pub auth: IntakeAuth,
}

/// How intake requests prove where they come from (`connections.intake.auth`).
#[derive(Debug, Clone, Default)]
pub enum IntakeAuth {
    /// `auth = "api_key"` (the default): a shared key in `api_key_header`, as EventBridge API destinations send it.
    #[default]
    ApiKey,
    /// `auth = "standard_webhooks"`: every request is signed per the Standard Webhooks specification
    /// (`webhook-id`, `webhook-timestamp`, `webhook-signature`) with `signing_secret`.
    StandardWebhooks { signing_secret: SigningSecret },
}

/// The lookup for platform-native flows of one connection (`[connections.lookup]`): Genesys Architect data actions
/// and CXone Studio REST actions ask it for a code's id or a rule decision.
#[derive(Debug, Clone, Default)]
pub struct LookupConfig {
    /// The code *name* a decision lookup answers (with `fallback: true`) when no rule decides the leg or the decided
    /// code cannot be used; without one such a lookup answers 404.
    pub fallback_code: Option<String>,
    /// A key of the lookup's own, `(header, key)`: a flow cannot sign Standard Webhooks requests, and a CXone
    /// connection has no intake. Without one, a Genesys connection's lookups authenticate like its intake, and a
    /// CXone connection has no lookup.
    pub api_key: Option<(String, Secret)>,
}

/// How a connection takes CRM decisions (`[connections.decisions]`; its presence turns them on).
#[derive(Debug, Clone, Default)]
pub struct DecisionsConfig {
    /// A key of the decision API's own, `(header, key)`. Without one, a Genesys connection's decisions authenticate
    /// like its intake (an API key or Standard Webhooks signatures); a CXone connection needs one.
    pub api_key: Option<(String, Secret)>,
}

/// A decision hook (`[[decision_hooks]]`): a CRM endpoint wrapup asks for a leg's code when a rule says
/// `decide = { hook = "<name>", … }`. Requests are signed per Standard Webhooks with `secret`.
#[derive(Debug, Clone)]
pub struct DecisionHookConfig {
    pub name: String,
    pub url: Url,
    pub secret: SigningSecret,
    /// The longest one ask may take (less when the leg's window leaves less room).
    pub timeout: std::time::Duration,
}

pub const DEFAULT_DECISION_HOOK_TIMEOUT_MS: u64 = 3_000;

/// The Genesys Notification API websocket as an intake.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebsocketIntake {
    pub enabled: bool,
    /// Queue names whose conversations are subscribed to.
    pub queues: Vec<String>,
}

pub const DEFAULT_DATA_DIR: &str = "./wrapup-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 300;
pub const DEFAULT_CATALOG_TTL_SECS: u64 = 300;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_RECONCILE_EVERY_SECS: u64 = 60;
/// CXone `acw_detection = "polling"`: wall milliseconds between polls.
pub const DEFAULT_CXONE_POLL_INTERVAL_MS: u64 = 2_000;
pub const DEFAULT_RECONCILE_WINDOW_SECS: u64 = 3600;
pub const DEFAULT_ACW_ESTIMATE_SECS: u64 = 20;
pub const DEFAULT_INTAKE_KEY_HEADER: &str = "x-wrapup-intake-key";
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 10_000;
pub const DEFAULT_HTTP_REQUEST_TIMEOUT_MS: u64 = 30_000;
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_MAX_INTAKE_REQUESTS: usize = 256;
pub const DEFAULT_MAX_ADMIN_REQUESTS: usize = 32;
pub const DEFAULT_MAX_HEALTH_REQUESTS: usize = 64;

impl Config {
    /// Reads and validates the file at `path`, resolving secrets from the process environment and file system.
    /// Relative `file:` secret paths and a relative `data_dir` are taken relative to the file's directory.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = error::read_text(path, "config file")?;
        let base = path.parent().unwrap_or(Path::new(""));
        Self::parse_with(&text, &origin, base, &SystemSecrets)
    }

    /// Validates `text` (named `origin` in messages), resolving secrets from the process environment; relative
    /// paths stay relative to the working directory.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        Self::parse_with(text, origin, Path::new(""), &SystemSecrets)
    }

    /// Validates `text`, resolving secrets through `secrets` and relative paths against `base_dir`.
    pub fn parse_with(
        text: &str,
        origin: &str,
        base_dir: &Path,
        secrets: &dyn SecretSource,
    ) -> Result<Config, ConfigErrors> {
        read::read(text, origin, base_dir, secrets)
    }

    /// This configuration with the rules of the file at `path` in place of its own: a file of `[[rules]]` in this
    /// format (a whole config file works too; only its rules are read), checked as the config's rules are — every
    /// problem with `file:line:column` — against this configuration's connections and decision hooks. `wrapup
    /// simulate` replays recorded legs through it, and [`check_catalogs`] checks it like the config's own.
    pub fn with_rules_file(&self, path: impl AsRef<Path>) -> Result<Config, ConfigErrors> {
        let path = path.as_ref();
        let text = error::read_text(path, "rules file")?;
        self.with_rules_text(&text, &path.display().to_string())
    }

    /// [`Config::with_rules_file`] for a text named `origin` in messages.
    pub fn with_rules_text(&self, text: &str, origin: &str) -> Result<Config, ConfigErrors> {
        let (rules, rule_locations) = read::read_rules(text, origin, self, &SystemSecrets)?;
        Ok(Config { rules, rule_locations, ..self.clone() })
    }

    pub fn connection(&self, name: &str) -> Option<&ConnectionConfig> {
        self.connections.iter().find(|c| c.name == name)
    }

    /// Where rule number `index` is written.
    pub fn rule_location(&self, index: usize) -> Option<&Location> {
        self.rule_locations.get(index)
    }
}

#[cfg(test)]
mod tests;
