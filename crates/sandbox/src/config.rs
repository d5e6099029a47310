//! Configuration of the sandbox: the simulated center, the faults and the switches for UNCONFIRMED platform behaviour.
//!
//! Everything is plain serde data with realistic defaults, so a `SandboxConfig::default()` is a usable contact center
//! (five queues, one per ACW mode, forty agents) and a TOML file only needs to name what it changes. Durations in
//! the *simulation* (talk time, ACW timeouts, agent delays) are simulated time and run through the injected clock;
//! durations that model the network (request hangs, latency, event delays, token lifetime, rate-limit windows) are
//! wall time, because a client's timeout and a platform's rate limit are wall time too.

use serde::{Deserialize, Serialize};

/// The whole sandbox configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// Seed of the simulation RNG (ids, arrivals, agent behaviour). Same seed + same clock = same center.
    pub seed: u64,
    /// Agent legs already in ACW when the sandbox starts.
    pub preload: usize,
    /// Whether `user.end` events are sent for preloaded legs at start (as if they had just ended).
    pub preload_events: bool,
    /// Time factor for the CLI's clock (simulated seconds per wall second). Library users inject their own clock.
    pub speed: f64,
    /// Requests per minute per access token (wall-time window, not scaled).
    pub rate_limit_per_minute: u32,
    /// How that minute is counted: `fixed`, `sliding` or `token_bucket` (see `crate::rate_limit`).
    pub rate_limit_window: crate::rate_limit::RateWindow,
    /// Access-token lifetime in wall seconds (`expires_in`).
    pub token_lifetime_secs: u64,
    /// Number of OAuth clients of the one org (their tokens each get their own rate-limit budget).
    pub clients: usize,
    /// A profile name (`"calm"`, `"hostile"`) or a full profile table.
    #[serde(deserialize_with = "faults_by_name_or_table")]
    pub faults: FaultProfile,
    pub behaviours: Behaviours,
    pub center: CenterConfig,
    pub event_targets: Vec<EventTarget>,
    /// Start the arrival process at once (both platforms).
    pub traffic_autostart: bool,
    /// The NICE CXone business unit.
    pub cxone: crate::cxone::CxoneConfig,
    /// Catalog shapes for tests of catalog tools, on both platforms.
    pub catalog: CatalogShape,
}

/// The shape of both platforms' catalogs (`[catalog]` in the TOML file). With every field 0 the catalogs are the
/// configured ones (`center.queues`, `cxone.center.skills` and their unassigned codes).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogShape {
    /// Generated queues (`Queue 001`…, Genesys) and skills (`Skill 001`…, CXone) added after the configured ones.
    /// They have no agents and no arrivals: traffic stays on the configured queues and skills.
    pub queues: usize,
    /// Generated codes (`Code 001`…) added to both catalogs; each generated queue or skill gets two to six of them.
    pub codes: usize,
    /// 0: the catalog as configured. K > 0: the configured catalog perturbed deterministically from K (two codes
    /// missing, one added by hand, one description or notes changed, one assignment removed, one added), the same
    /// way whatever the seed.
    pub variant: u32,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            preload: 0,
            preload_events: true,
            speed: 1.0,
            rate_limit_per_minute: 300,
            rate_limit_window: crate::rate_limit::RateWindow::Fixed,
            token_lifetime_secs: 86_399,
            clients: 1,
            faults: FaultProfile::calm(),
            behaviours: Behaviours::default(),
            center: CenterConfig::default(),
            event_targets: Vec::new(),
            traffic_autostart: true,
            cxone: crate::cxone::CxoneConfig::default(),
            catalog: CatalogShape::default(),
        }
    }
}

fn faults_by_name_or_table<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FaultProfile, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NameOrTable {
        Name(String),
        Table(Box<FaultProfile>),
    }
    match NameOrTable::deserialize(d)? {
        NameOrTable::Name(n) => FaultProfile::named(&n)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown fault profile {n:?} (calm, hostile)"))),
        NameOrTable::Table(t) => Ok(*t),
    }
}

/// Where events are POSTed (an EventBridge API destination, or the service's intake directly).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EventTarget {
    pub url: String,
    /// Header carrying the API key (EventBridge API destinations use an API-key connection), e.g. `x-api-key`.
    #[serde(default)]
    pub api_key_header: Option<String>,
    #[serde(default)]
    pub api_key: Option<String>,
}

/// Faults injected on the REST surface and on event delivery. All rates are probabilities in 0..=1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FaultProfile {
    pub name: String,
    /// Share of API requests answered with a 5xx (500/502/503/504) without effect.
    pub http_5xx_rate: f64,
    /// Share of API requests that take effect but whose response is held back `hang_ms` (longer than a client timeout).
    pub timeout_rate: f64,
    /// Wall milliseconds a "timed out" request hangs before answering.
    pub hang_ms: u64,
    /// Added wall latency per API request, uniform in `latency_ms_min..=latency_ms_max`.
    pub latency_ms_min: u64,
    pub latency_ms_max: u64,
    /// Probability per API request that a 429 storm starts (every request of every token gets 429 for a while).
    pub storm_rate: f64,
    /// Simulated seconds a 429 storm lasts. A storm is the platform's own event, like an ACW window, so it scales with
    /// the clock (at 20x, 5 s is 250 ms of wall time); its `Retry-After` announces the remaining *wall* time, rounded
    /// up to whole seconds as the header requires, so a client that honours it still waits at least 1 s.
    pub storm_secs: u64,
    /// Probability per API request that the caller's token is revoked (this and later requests get 401).
    pub token_revocation_rate: f64,
    /// Share of events never delivered.
    pub event_drop_rate: f64,
    /// Share of events delivered twice.
    pub event_duplicate_rate: f64,
    /// Share of events held back so that later events overtake them.
    pub event_reorder_rate: f64,
    /// Share of events delivered late, and the maximum extra wall delay.
    pub event_delay_rate: f64,
    pub event_delay_ms_max: u64,
    /// Probability per notification frame that the websocket carrying it breaks (the frame is lost with it).
    pub ws_disconnect_rate: f64,
    /// Share of wrap-up writes (Genesys) and dispositions (CXone) that pass every check and are answered as accepted
    /// (202 / 200) but are not kept: the leg shows no code afterwards and no event follows. A platform that accepts
    /// and drops a write is the trap a client must verify its writes against.
    pub unpersisted_write_rate: f64,
    /// Share of catalog writes (codes, dispositions, queue and skill assignments) that would succeed but are answered
    /// 409 and not applied, as a platform does when another writer got there first.
    pub catalog_conflict_rate: f64,
    /// Simulated milliseconds before a successful catalog write shows in the catalog reads (listings and GETs). The
    /// write is applied at once: validation (e.g. a second create of the same name) already sees it.
    pub catalog_propagation_ms: u64,
}

impl Default for FaultProfile {
    fn default() -> Self {
        Self::calm()
    }
}

impl FaultProfile {
    /// No faults at all.
    pub fn calm() -> Self {
        Self {
            name: "calm".into(),
            http_5xx_rate: 0.0,
            timeout_rate: 0.0,
            hang_ms: 10_000,
            latency_ms_min: 0,
            latency_ms_max: 0,
            storm_rate: 0.0,
            storm_secs: 5,
            token_revocation_rate: 0.0,
            event_drop_rate: 0.0,
            event_duplicate_rate: 0.0,
            event_reorder_rate: 0.0,
            event_delay_rate: 0.0,
            event_delay_ms_max: 0,
            ws_disconnect_rate: 0.0,
            unpersisted_write_rate: 0.0,
            catalog_conflict_rate: 0.0,
            catalog_propagation_ms: 0,
        }
    }

    /// A bad day at the platform: 10 % 5xx, 5 % hangs, occasional 429 storms and token revocations, 5 % of events
    /// dropped, 5 % duplicated, some reordered and delayed, and a notification websocket that breaks on 1 % of
    /// frames.
    pub fn hostile() -> Self {
        Self {
            name: "hostile".into(),
            http_5xx_rate: 0.10,
            timeout_rate: 0.05,
            hang_ms: 10_000,
            latency_ms_min: 5,
            latency_ms_max: 50,
            storm_rate: 0.002,
            storm_secs: 5,
            token_revocation_rate: 0.001,
            event_drop_rate: 0.05,
            event_duplicate_rate: 0.05,
            event_reorder_rate: 0.05,
            event_delay_rate: 0.10,
            event_delay_ms_max: 2_000,
            ws_disconnect_rate: 0.01,
            unpersisted_write_rate: 0.0,
            catalog_conflict_rate: 0.0,
            catalog_propagation_ms: 0,
        }
    }

    /// Whether any fault applies to API requests (the gate skips fault draws otherwise).
    pub fn request_faults_active(&self) -> bool {
        self.http_5xx_rate > 0.0
            || self.timeout_rate > 0.0
            || self.latency_ms_max > 0
            || self.storm_rate > 0.0
            || self.token_revocation_rate > 0.0
    }

    /// A profile by name (`calm`, `hostile`).
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "calm" => Some(Self::calm()),
            "hostile" => Some(Self::hostile()),
            _ => None,
        }
    }
}

/// Switches for behaviour the public contract leaves UNCONFIRMED (see platforms/genesys-cloud.md). Defaults are the
/// most likely reading; the service must cope with either.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct Behaviours {
    /// A wrap-up write on a leg that already has a final code. Default `overwrite` (202, the new code wins).
    pub second_write: SecondWrite,
    /// Whether a client-credentials token may write an agent's wrap-up. Default `allowed`.
    pub client_credentials_writes: ClientCredentialsWrites,
    /// `GET …/wrapup` when nothing is set. Default `empty200` (200 with `{}`).
    pub get_wrapup_unset: GetWrapupUnset,
    /// A wrap-up write after the ACW window closed (coded, skipped or timed out). Default `accepted` (202, the
    /// participant's wrap-up is updated).
    pub apply_after_acw: ApplyAfterAcw,
    /// A write naming an existing code that is not assigned to the leg's queue. Default `accepted`.
    pub code_not_in_queue: CodeNotInQueue,
    /// Status of a successful `DELETE` on the catalog. Default `no_content204`.
    pub delete_status: DeleteStatus,
    /// Whether conversation reads (`GET /api/v2/conversations/{id}` and the media-specific ones) show an agent's
    /// provisional wrap-up on the participant. The `Wrapup` model has a `provisional` field, so default `shown`.
    pub conversation_provisional: ConversationProvisional,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum ConversationProvisional {
    #[default]
    Shown,
    /// Only `GET …/wrapup?provisional=true` shows it.
    Hidden,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum SecondWrite {
    #[default]
    Overwrite,
    Reject,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum ClientCredentialsWrites {
    #[default]
    Allowed,
    Forbidden,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum GetWrapupUnset {
    #[default]
    #[serde(rename = "empty200")]
    Empty200,
    #[serde(rename = "notFound")]
    NotFound,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum ApplyAfterAcw {
    #[default]
    Accepted,
    Rejected,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum CodeNotInQueue {
    #[default]
    Accepted,
    Rejected,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum DeleteStatus {
    #[serde(rename = "ok200")]
    Ok200,
    #[default]
    #[serde(rename = "noContent204")]
    NoContent204,
}

/// Queue `acwSettings.wrapupPrompt`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AcwMode {
    Mandatory,
    Optional,
    MandatoryTimeout,
    MandatoryForcedTimeout,
    AgentRequested,
}

impl AcwMode {
    /// Queue-side spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AcwMode::Mandatory => "MANDATORY",
            AcwMode::Optional => "OPTIONAL",
            AcwMode::MandatoryTimeout => "MANDATORY_TIMEOUT",
            AcwMode::MandatoryForcedTimeout => "MANDATORY_FORCED_TIMEOUT",
            AcwMode::AgentRequested => "AGENT_REQUESTED",
        }
    }

    /// Participant-side `wrapupPrompt` spelling (camelCase).
    pub fn participant_prompt(self) -> &'static str {
        match self {
            AcwMode::Mandatory => "mandatory",
            AcwMode::Optional => "optional",
            AcwMode::MandatoryTimeout => "timeout",
            AcwMode::MandatoryForcedTimeout => "forcedTimeout",
            AcwMode::AgentRequested => "agentRequested",
        }
    }

    /// Whether the platform closes the window by itself after `timeoutMs`.
    pub fn has_timeout(self) -> bool {
        matches!(self, AcwMode::MandatoryTimeout | AcwMode::MandatoryForcedTimeout | AcwMode::AgentRequested)
    }
}

/// One queue of the simulated center.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub name: String,
    pub wrapup_prompt: AcwMode,
    /// ACW timeout (simulated ms); used by the timed modes.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Names of the codes assigned to this queue (created in the catalog).
    pub codes: Vec<String>,
    /// Relative share of arrivals.
    #[serde(default = "one")]
    pub weight: f64,
}

/// How often a simulated agent picks the true outcome, unless configured.
pub const DEFAULT_AGENT_ACCURACY: f64 = 0.85;

pub(crate) fn one() -> f64 {
    1.0
}

/// A duration distribution in simulated seconds: exponential around `mean`, clamped to `min..=max`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Dist {
    pub min: f64,
    pub mean: f64,
    pub max: f64,
}

impl Dist {
    pub const fn new(min: f64, mean: f64, max: f64) -> Self {
        Self { min, mean, max }
    }
}

/// Share of arrivals per media type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MediaMix {
    pub calls: f64,
    pub messages: f64,
    pub emails: f64,
    pub callbacks: f64,
}

impl Default for MediaMix {
    fn default() -> Self {
        Self { calls: 0.6, messages: 0.2, emails: 0.1, callbacks: 0.1 }
    }
}

/// How agents code their own legs. Each leg draws its agent's plan once, when it is created, so the plan does not
/// depend on when API requests arrive.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AgentBehaviour {
    /// Probability the agent picks a provisional code while still talking.
    pub provisional_during: f64,
    /// Delay after connect of that provisional code (simulated seconds).
    pub provisional_delay: Dist,
    /// Probability the agent codes (final) at or just after disconnect.
    pub at_disconnect: f64,
    pub at_disconnect_delay: Dist,
    /// Probability the agent codes late in ACW (if not at disconnect).
    pub late: f64,
    pub late_delay: Dist,
    /// Probability the agent changes the code after an API write (the window may be closed by then).
    pub change_after_api: f64,
    pub change_delay: Dist,
    /// On OPTIONAL queues, when the agent does not code: delay before skipping.
    pub skip_delay: Dist,
    /// On MANDATORY queues without timeout, when nothing else codes the leg: the agent gives in and codes after this.
    pub give_in_delay: Dist,
    /// On AGENT_REQUESTED queues: probability the agent asks for ACW (else the leg ends without ACW).
    pub requests_acw: f64,
}

impl Default for AgentBehaviour {
    fn default() -> Self {
        Self {
            provisional_during: 0.10,
            provisional_delay: Dist::new(5.0, 60.0, 600.0),
            at_disconnect: 0.25,
            at_disconnect_delay: Dist::new(0.5, 3.0, 10.0),
            late: 0.15,
            late_delay: Dist::new(10.0, 40.0, 300.0),
            change_after_api: 0.03,
            change_delay: Dist::new(2.0, 20.0, 120.0),
            skip_delay: Dist::new(2.0, 15.0, 60.0),
            give_in_delay: Dist::new(60.0, 180.0, 900.0),
            requests_acw: 0.5,
        }
    }
}

/// The simulated contact center.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CenterConfig {
    pub queues: Vec<QueueConfig>,
    /// Codes in the catalog that no queue uses.
    pub unassigned_codes: Vec<String>,
    pub agents: usize,
    /// Queues each agent is a member of.
    pub queues_per_agent: usize,
    /// Conversations arriving per simulated second.
    pub arrival_rate_per_sec: f64,
    pub media_mix: MediaMix,
    pub alert_time: Dist,
    pub talk_time: Dist,
    /// Probability a leg has hold time, and its distribution.
    pub hold_probability: f64,
    pub hold_time: Dist,
    /// Probability the agent transfers the customer to another agent at the end of talk.
    pub transfer_probability: f64,
    /// Probability the agent consults another agent during talk (a second agent leg).
    pub consult_probability: f64,
    /// Probability that an agent picks the conversation's true outcome (`engine::outcome`); otherwise one of the
    /// queue's other codes.
    pub agent_accuracy: f64,
    pub agent: AgentBehaviour,
}

impl Default for CenterConfig {
    fn default() -> Self {
        let q = |name: &str, mode, timeout_ms: Option<u64>, codes: &[&str]| QueueConfig {
            name: name.into(),
            wrapup_prompt: mode,
            timeout_ms,
            codes: codes.iter().map(|c| c.to_string()).collect(),
            weight: 1.0,
        };
        Self {
            queues: vec![
                q(
                    "Sales",
                    AcwMode::Mandatory,
                    None,
                    &["Sale completed", "No sale", "Follow-up required", "Wrong number"],
                ),
                q(
                    "Support",
                    AcwMode::MandatoryTimeout,
                    Some(60_000),
                    &["Issue resolved", "Escalated", "Follow-up required", "Wrong number"],
                ),
                q(
                    "Billing",
                    AcwMode::MandatoryForcedTimeout,
                    Some(45_000),
                    &["Payment taken", "Refund issued", "Billing question answered"],
                ),
                q("Retention", AcwMode::Optional, None, &["Customer retained", "Customer cancelled", "No sale"]),
                q(
                    "Callbacks",
                    AcwMode::AgentRequested,
                    Some(30_000),
                    &["Callback completed", "No answer", "Left voicemail"],
                ),
            ],
            unassigned_codes: vec!["Legacy - do not use".into(), "Test code".into()],
            agents: 40,
            queues_per_agent: 2,
            arrival_rate_per_sec: 0.1,
            media_mix: MediaMix::default(),
            alert_time: Dist::new(1.0, 4.0, 20.0),
            talk_time: Dist::new(20.0, 240.0, 1800.0),
            hold_probability: 0.2,
            hold_time: Dist::new(5.0, 45.0, 300.0),
            transfer_probability: 0.08,
            consult_probability: 0.05,
            agent_accuracy: DEFAULT_AGENT_ACCURACY,
            agent: AgentBehaviour::default(),
        }
    }
}
