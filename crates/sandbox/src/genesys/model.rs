//! The org: every piece of state the emulated platform holds, behind one lock.
//!
//! [`Org`] owns the catalog (codes, queues), the users, the conversations with their participants, the OAuth clients
//! and tokens, the simulation schedule and the ground truth. HTTP handlers (in `api/`) and the simulation loop (in
//! `sim.rs`) both lock `Shared::org` (a `parking_lot::Mutex`), do a small amount of work and release it; nothing
//! awaits while holding it. Operations that the platform exposes (read a conversation, write a wrap-up, list codes)
//! are methods here so that handlers stay thin and a second engineer can add analytics or notifications by reading
//! the same state.
//!
//! Ground truth is kept *on the participant* (`Participant::truth`), next to the state the platform shows, so a
//! write is judged against exactly what the platform would have seen at that instant: an agent's provisional code,
//! an open or closed ACW window, earlier accepted writes.

use crate::config::{AcwMode, Behaviours, FaultProfile, SandboxConfig};
use crate::engine::catalog::{
    generated_code_name, CatalogEntry, CatalogSnapshot, ChangeLog, Lagged, NamedCatalog, Platform,
};
use crate::engine::truth::{ApiStats, Violations};
use crate::engine::{add_secs, iso, random_uuid, Engine};
use crate::genesys::events::{EventStats, OutEvent};
use crate::report::{CodedBy, EventReport, LegCounts, LegTruth, Report};
use jiff::Timestamp;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

/// Id of the system code the platform stamps when a timed ACW expires (seen in real captures and analytics samples).
pub const SYSTEM_TIMEOUT_CODE_ID: &str = "7fb334b0-0e9e-11e4-9191-0800200c9a66";
/// Name of that system code.
pub const SYSTEM_TIMEOUT_CODE_NAME: &str = "ININ-WRAP-UP-TIMEOUT";

/// Epoch milliseconds, as detail events write `eventTime`.
pub fn epoch_ms(ts: Timestamp) -> i64 {
    ts.as_millisecond()
}

/// The media types the sandbox simulates (the `{media}` path segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Media {
    Calls,
    Callbacks,
    Emails,
    Messages,
}

impl Media {
    pub const ALL: [Media; 4] = [Media::Calls, Media::Callbacks, Media::Emails, Media::Messages];

    pub fn path(self) -> &'static str {
        match self {
            Media::Calls => "calls",
            Media::Callbacks => "callbacks",
            Media::Emails => "emails",
            Media::Messages => "messages",
        }
    }

    pub fn from_path(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.path() == s)
    }

    /// Detail-event `mediaType` (UPPER).
    pub fn event_name(self) -> &'static str {
        match self {
            Media::Calls => "VOICE",
            Media::Callbacks => "CALLBACK",
            Media::Emails => "EMAIL",
            Media::Messages => "MESSAGE",
        }
    }

    /// Analytics session `mediaType`.
    pub fn analytics_name(self) -> &'static str {
        match self {
            Media::Calls => "voice",
            Media::Callbacks => "callback",
            Media::Emails => "email",
            Media::Messages => "message",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Customer,
    Acd,
    Agent,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Customer => "customer",
            Purpose::Acd => "acd",
            Purpose::Agent => "agent",
        }
    }
}

/// Where a participant is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Alerting,
    Connected,
    /// Agent part ended, ACW window open.
    Acw,
    /// Ended; for agents, the ACW window (if any) is closed.
    Done,
}

/// Who set a wrap-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    Agent,
    Api,
    System,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcwState {
    Pending,
    Complete,
    Skipped,
    NotApplicable,
}

impl AcwState {
    pub fn as_str(self) -> &'static str {
        match self {
            AcwState::Pending => "pending",
            AcwState::Complete => "complete",
            AcwState::Skipped => "skipped",
            AcwState::NotApplicable => "notApplicable",
        }
    }
}

/// A participant's wrap-up.
#[derive(Debug, Clone)]
pub struct Wrapup {
    pub code: Option<String>,
    pub name: Option<String>,
    pub notes: Option<String>,
    pub tags: Vec<String>,
    pub duration_seconds: Option<i64>,
    pub end_time: Option<Timestamp>,
    pub provisional: bool,
    pub by: Writer,
}

impl Wrapup {
    /// The code an agent picked while still talking.
    pub fn agent_provisional(code: String) -> Self {
        Self {
            code: Some(code),
            name: None,
            notes: None,
            tags: Vec::new(),
            duration_seconds: None,
            end_time: None,
            provisional: true,
            by: Writer::Agent,
        }
    }
}

/// What the agent of a leg will do, drawn once when the leg is created (so it does not depend on API timing).
#[derive(Debug, Clone, Default)]
pub struct AgentPlan {
    /// Provisional code while talking: (seconds after connect, code id).
    pub provisional: Option<(f64, String)>,
    /// Final action in ACW, seconds after ACW start.
    pub final_action: FinalAction,
    /// Change of code after an API write: (seconds after the write, code id).
    pub change_after_api: Option<(f64, String)>,
    /// Whether an AGENT_REQUESTED leg gets ACW.
    pub requests_acw: bool,
    /// Whether the agent picks the leg's true outcome, and the draw that picks another code when not.
    pub accurate: bool,
    pub other_pick: usize,
    /// The leg's true outcome and the agent's pick (code ids), once the agent's connected time is known.
    pub true_code: Option<String>,
    pub agent_pick: Option<String>,
}

impl AgentPlan {
    /// Sets the leg's true outcome from how long its agent is connected, and puts the agent's pick in every code
    /// the agent will set (provisional, final). `codes`: the queue's code ids, in their configured order.
    pub fn settle_outcome(&mut self, codes: &[String], connected_secs: f64) {
        let Some(truth) = crate::engine::outcome::true_outcome(codes.len(), connected_secs) else { return };
        let pick = crate::engine::outcome::agent_pick(codes.len(), truth, self.accurate, self.other_pick);
        let code = codes[pick].clone();
        if let Some((_, c)) = &mut self.provisional {
            *c = code.clone();
        }
        if let FinalAction::Code(_, c) = &mut self.final_action {
            *c = code.clone();
        }
        self.true_code = Some(codes[truth].clone());
        self.agent_pick = Some(code);
    }
}

#[derive(Debug, Clone, Default)]
pub enum FinalAction {
    Code(f64, String),
    Skip(f64),
    #[default]
    Nothing,
}

/// Ground truth of one agent leg.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    pub deadline: Option<Timestamp>,
    pub window_closed_at: Option<Timestamp>,
    pub coded_by: Option<CodedBy>,
    pub api_writes: u32,
    /// Accepted non-provisional API writes (a provisional save is not an effective write).
    pub final_api_writes: u32,
    pub agent_coded_before_api: bool,
    pub agent_changed_after_api: bool,
    pub change_scheduled: bool,
}

#[derive(Debug, Clone)]
pub struct Participant {
    pub id: String,
    pub comm_id: String,
    pub purpose: Purpose,
    pub name: String,
    pub user_id: Option<String>,
    pub queue: Option<usize>,
    pub start: Timestamp,
    pub connected_at: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub disconnect_type: Option<&'static str>,
    pub held_ms: u64,
    pub phase: Phase,
    pub wrapup_required: bool,
    pub prompt: Option<AcwMode>,
    pub timeout_ms: Option<u64>,
    pub acw_start: Option<Timestamp>,
    pub acw_end: Option<Timestamp>,
    pub acw_state: Option<AcwState>,
    pub wrapup: Option<Wrapup>,
    pub wrapup_skipped: bool,
    pub consult_participant_id: Option<String>,
    /// Whether the agent stays INTERACTING until the forced timeout although the window closed.
    pub holds_agent_until_deadline: bool,
    pub truth: Truth,
    pub plan: AgentPlan,
}

impl Participant {
    pub fn new(id: String, comm_id: String, purpose: Purpose, start: Timestamp) -> Self {
        Self {
            id,
            comm_id,
            purpose,
            name: String::new(),
            user_id: None,
            queue: None,
            start,
            connected_at: None,
            end: None,
            disconnect_type: None,
            held_ms: 0,
            phase: Phase::Alerting,
            wrapup_required: false,
            prompt: None,
            timeout_ms: None,
            acw_start: None,
            acw_end: None,
            acw_state: None,
            wrapup: None,
            wrapup_skipped: false,
            consult_participant_id: None,
            holds_agent_until_deadline: false,
            truth: Truth::default(),
            plan: AgentPlan::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: String,
    pub media: Media,
    pub direction: &'static str,
    pub start: Timestamp,
    pub end: Option<Timestamp>,
    pub queue: usize,
    pub participants: Vec<Participant>,
}

impl Conversation {
    pub fn participant(&self, pid: &str) -> Option<&Participant> {
        self.participants.iter().find(|p| p.id == pid)
    }
    pub fn participant_mut(&mut self, pid: &str) -> Option<&mut Participant> {
        self.participants.iter_mut().find(|p| p.id == pid)
    }
}

#[derive(Debug, Clone)]
pub struct Code {
    pub id: String,
    pub name: String,
    pub description: String,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub created_by: String,
    pub modified_by: String,
}

#[derive(Debug, Clone)]
pub struct Queue {
    pub id: String,
    pub name: String,
    pub mode: AcwMode,
    pub timeout_ms: Option<u64>,
    /// Assigned code ids, in assignment order.
    pub codes: Vec<String>,
    pub weight: f64,
    pub created: Timestamp,
    pub members: Vec<usize>,
    /// Conversations waiting for an agent.
    pub waiting: VecDeque<String>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: String,
    pub name: String,
    pub queues: Vec<usize>,
    /// Legs keeping this agent INTERACTING (alerting, talking, in ACW, or held by a forced timeout).
    pub busy: u32,
    pub status_since: Timestamp,
}

#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub id: String,
    pub secret: String,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub client: usize,
    pub expires: Instant,
    pub revoked: bool,
    /// Its rate-limit window (`crate::rate_limit`).
    pub window: crate::rate_limit::TokenWindow,
    /// When this token was last told to wait, and until when (its last `Retry-After`).
    pub retry_after: Option<(Instant, Instant)>,
}

/// One simulation step, run at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Arrival,
    Connect { cid: String, pid: String },
    Provisional { cid: String, pid: String },
    Consult { cid: String, pid: String },
    Disconnect { cid: String, pid: String },
    AgentFinal { cid: String, pid: String },
    AgentSkip { cid: String, pid: String },
    Timeout { cid: String, pid: String },
    AgentChange { cid: String, pid: String },
}

/// A platform error (rendered as `ErrorBody` by the API layer).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct PlatformError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Rarely set parts, boxed to keep `Result<_, PlatformError>` small.
    pub extra: Box<ErrorExtra>,
    pub retry_after: Option<u64>,
}

/// `messageWithParams`, `messageParams` and `details` of an `ErrorBody`.
#[derive(Debug, Clone, Default)]
pub struct ErrorExtra {
    pub message_with_params: Option<String>,
    pub params: BTreeMap<String, String>,
    pub details: Vec<Value>,
}

impl PlatformError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), extra: Box::default(), retry_after: None }
    }
    pub fn with_params(mut self, template: &str, params: &[(&str, &str)]) -> Self {
        self.extra.message_with_params = Some(template.to_string());
        self.extra.params = params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self
    }
    pub fn not_found() -> Self {
        Self::new(404, "not.found", "The requested resource was not found.")
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "bad.request", message)
    }
    pub fn malformed() -> Self {
        Self::bad_request("The request could not be understood by the server due to malformed syntax.")
    }
    pub fn not_authorized() -> Self {
        Self::new(403, "not.authorized", "You are not authorized to perform the requested action.")
    }
    pub fn conversation_forbidden(cid: &str) -> Self {
        Self::new(403, "not.authorized", format!("Access to Conversation {cid} is forbidden."))
            .with_params("Access to {type} {id} is forbidden.", &[("id", cid), ("type", "Conversation")])
    }
}

/// The wrap-up a client asks for (`WrapupInput`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WrapupInput {
    pub code: Option<String>,
    pub name: Option<String>,
    pub notes: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub duration_seconds: Option<i64>,
    pub end_time: Option<Timestamp>,
    #[serde(default)]
    pub provisional: bool,
    #[serde(default)]
    pub disable_end_time_updates: bool,
}

/// Most audit records the org keeps (the oldest are dropped first).
pub const MAX_AUDIT_ENTRIES: usize = 10_000;

/// One `AuditLogMessage`: a catalog change made through the API (rendered and queried by `api/audit.rs`).
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: String,
    /// Insertion order (ties on `at` sort by it).
    pub seq: u64,
    pub at: Timestamp,
    /// The OAuth client whose token made the change.
    pub client_id: String,
    pub action: &'static str,
    pub entity_type: &'static str,
    pub entity_id: String,
    pub entity_name: String,
    /// `(property, oldValues, newValues)`.
    pub property_changes: Vec<(String, Vec<String>, Vec<String>)>,
    /// `entityChanges[]` items, already in their JSON shape.
    pub entity_changes: Vec<Value>,
}

/// The org's audit trail, bounded to [`MAX_AUDIT_ENTRIES`].
#[derive(Debug, Default)]
pub struct AuditLog {
    pub entries: VecDeque<AuditEntry>,
    pub seq: u64,
    /// Asynchronous audit queries (`POST /api/v2/audits/query`), by transaction id.
    pub jobs: std::collections::BTreeMap<String, AuditJob>,
}

/// One asynchronous audit query: its request, when it was submitted, and the records it matched then.
#[derive(Debug, Clone)]
pub struct AuditJob {
    pub submitted: Timestamp,
    /// The request as the caller sent it (echoed in the status).
    pub request: Value,
    /// `seq` of the matching records, in the query's sort order.
    pub hits: Vec<u64>,
}

impl AuditLog {
    /// Appends `e` (its `seq` is assigned here), dropping the oldest record beyond the bound.
    pub fn push(&mut self, mut e: AuditEntry) {
        self.seq += 1;
        e.seq = self.seq;
        self.entries.push_back(e);
        while self.entries.len() > MAX_AUDIT_ENTRIES {
            self.entries.pop_front();
        }
    }
}

/// Everything the platform holds.
pub struct Org {
    pub org_id: String,
    pub division_id: String,
    pub behaviours: Behaviours,
    pub faults: FaultProfile,
    pub rate_limit_per_minute: u32,
    pub rate_limit_window: crate::rate_limit::RateWindow,
    pub token_lifetime: std::time::Duration,
    pub clients: Vec<OAuthClient>,
    pub tokens: HashMap<String, Token>,
    pub codes: HashMap<String, Code>,
    pub queues: Vec<Queue>,
    pub queue_by_id: HashMap<String, usize>,
    pub users: Vec<User>,
    pub user_by_id: HashMap<String, usize>,
    pub conversations: HashMap<String, Conversation>,
    /// Conversation ids in creation order (legs report and analytics iterate in this order).
    pub conversation_order: Vec<String>,
    pub violations: Violations,
    pub api: ApiStats,
    pub event_stats: Arc<EventStats>,
    pub events_tx: Option<UnboundedSender<OutEvent>>,
    /// Notification API channels (websocket delivery).
    pub hub: Arc<crate::genesys::notifications::Hub>,
    pub center: crate::config::CenterConfig,
    /// Simulated time, scheduled actions, traffic and the simulation RNG (ids, arrivals, agent plans).
    pub engine: Engine<Action>,
    /// Fault RNG: kept apart so that faults never perturb the simulation.
    pub fault_rng: SmallRng,
    pub storm_until: Option<Instant>,
    /// Audit records of catalog changes made through the API.
    pub audit: AuditLog,
    /// Ground truth: every successful catalog write.
    pub catalog_changes: ChangeLog,
    /// Catalog reads lag the writes by `faults.catalog_propagation_ms` (`crate::engine::catalog`).
    pub catalog_lag: Lagged<CodeCatalog>,
}

/// The parts of the org a catalog write changes: the codes and each queue's assigned code ids (by queue index).
#[derive(Debug, Clone)]
pub struct CodeCatalog {
    pub codes: HashMap<String, Code>,
    pub assignments: Vec<Vec<String>>,
}

/// What the catalog reads show: the live org, or the catalog before the oldest write not yet visible.
pub enum CatalogView<'a> {
    Live(&'a Org),
    Lagged(&'a CodeCatalog),
}

impl CatalogView<'_> {
    pub fn code(&self, id: &str) -> Option<&Code> {
        match self {
            CatalogView::Live(o) => o.codes.get(id),
            CatalogView::Lagged(c) => c.codes.get(id),
        }
    }

    pub fn codes(&self) -> Vec<&Code> {
        match self {
            CatalogView::Live(o) => o.codes.values().collect(),
            CatalogView::Lagged(c) => c.codes.values().collect(),
        }
    }

    /// Code ids assigned to the queue at index `qi`.
    pub fn queue_codes(&self, qi: usize) -> &[String] {
        match self {
            CatalogView::Live(o) => o.queues.get(qi).map_or(&[], |q| q.codes.as_slice()),
            CatalogView::Lagged(c) => c.assignments.get(qi).map_or(&[], |a| a.as_slice()),
        }
    }
}

impl Org {
    /// Builds the org (catalog, queues, agents, clients) from the config, deterministically from the seed.
    pub fn new(cfg: &SandboxConfig, now: Timestamp, event_stats: Arc<EventStats>) -> Self {
        let mut rng = SmallRng::seed_from_u64(cfg.seed);
        let fault_rng = SmallRng::seed_from_u64(cfg.seed ^ 0x5eed_f417);
        let org_id = random_uuid(&mut rng);
        let division_id = random_uuid(&mut rng);
        let admin = random_uuid(&mut rng);
        let created = now.checked_sub(jiff::SignedDuration::from_hours(24 * 30)).unwrap_or(now);

        let mut codes: HashMap<String, Code> = HashMap::new();
        let mut code_by_name: HashMap<String, String> = HashMap::new();
        let mut make_code = |name: &str, codes: &mut HashMap<String, Code>, rng: &mut SmallRng| {
            if let Some(existing) = code_by_name.get(name) {
                return existing.clone();
            }
            let cid = random_uuid(rng);
            codes.insert(
                cid.clone(),
                Code {
                    id: cid.clone(),
                    name: name.to_string(),
                    description: String::new(),
                    created,
                    modified: created,
                    created_by: admin.clone(),
                    modified_by: admin.clone(),
                },
            );
            code_by_name.insert(name.to_string(), cid.clone());
            cid
        };
        // The catalog by name: the configured one, perturbed by the variant, then the generated part.
        let mut named = NamedCatalog {
            containers: cfg.center.queues.iter().map(|q| (q.name.clone(), q.codes.clone())).collect(),
            unassigned: cfg.center.unassigned_codes.clone(),
            texts: BTreeMap::new(),
        };
        named.apply_variant(cfg.catalog.variant, &[]);
        let configured = cfg.center.queues.len();
        let generated_codes: Vec<String> = (0..cfg.catalog.codes).map(generated_code_name).collect();
        named.generate(cfg.catalog.queues, cfg.catalog.codes, |i| format!("Queue {:03}", i + 1));
        // Generated ids come from their own RNG, so a large catalog leaves the seed's agents, credentials and
        // traffic as they are.
        let mut shape_rng = SmallRng::seed_from_u64(cfg.seed ^ 0xca7a_1065);
        let mut queues = Vec::new();
        let mut queue_by_id = HashMap::new();
        for (i, (name, code_names)) in named.containers.iter().enumerate() {
            let qc = cfg.center.queues.get(i);
            let qid = if qc.is_some() { random_uuid(&mut rng) } else { random_uuid(&mut shape_rng) };
            let codes_of_queue = code_names
                .iter()
                .map(|n| {
                    let r = if generated_codes.contains(n) { &mut shape_rng } else { &mut rng };
                    make_code(n, &mut codes, r)
                })
                .collect();
            queue_by_id.insert(qid.clone(), queues.len());
            queues.push(Queue {
                id: qid,
                name: name.clone(),
                mode: qc.map_or(AcwMode::Optional, |q| q.wrapup_prompt),
                timeout_ms: qc.and_then(|q| q.timeout_ms),
                codes: codes_of_queue,
                weight: qc.map_or(0.0, |q| if q.weight.is_finite() { q.weight.max(0.0) } else { 0.0 }),
                created,
                members: Vec::new(),
                waiting: VecDeque::new(),
            });
        }
        for name in &named.unassigned {
            let r = if generated_codes.contains(name) { &mut shape_rng } else { &mut rng };
            make_code(name, &mut codes, r);
        }
        for (name, text) in &named.texts {
            if let Some(c) = codes.values_mut().find(|c| &c.name == name) {
                c.description = text.clone();
            }
        }
        let mut users = Vec::new();
        let mut user_by_id = HashMap::new();
        // Agents are members of the configured queues only; generated queues have none (and no arrivals).
        let per_agent = cfg.center.queues_per_agent.clamp(1, configured.max(1));
        for i in 0..cfg.center.agents {
            let uid = random_uuid(&mut rng);
            let mut qs = Vec::new();
            if configured > 0 {
                for k in 0..per_agent {
                    let q = (i + k) % configured;
                    if !qs.contains(&q) {
                        qs.push(q);
                        queues[q].members.push(i);
                    }
                }
            }
            user_by_id.insert(uid.clone(), i);
            users.push(User { id: uid, name: format!("Agent {:02}", i + 1), queues: qs, busy: 0, status_since: now });
        }
        let clients = (0..cfg.clients.max(1))
            .map(|_| OAuthClient { id: random_uuid(&mut rng), secret: base64_secret(&mut rng) })
            .collect();
        Self {
            org_id,
            division_id,
            behaviours: cfg.behaviours,
            faults: cfg.faults.clone(),
            rate_limit_per_minute: cfg.rate_limit_per_minute.max(1),
            rate_limit_window: cfg.rate_limit_window,
            token_lifetime: std::time::Duration::from_secs(cfg.token_lifetime_secs.max(1)),
            clients,
            tokens: HashMap::new(),
            codes,
            queues,
            queue_by_id,
            users,
            user_by_id,
            conversations: HashMap::new(),
            conversation_order: Vec::new(),
            violations: Violations::default(),
            api: ApiStats::default(),
            event_stats,
            events_tx: None,
            hub: Arc::default(),
            center: cfg.center.clone(),
            engine: Engine::new(rng, now, Action::Arrival),
            fault_rng,
            storm_until: None,
            audit: AuditLog::default(),
            catalog_changes: ChangeLog::default(),
            catalog_lag: Lagged::default(),
        }
    }

    /// The catalog as the reads show it at `now` (see `catalog_propagation_ms`).
    pub fn catalog_view(&self, now: Timestamp) -> CatalogView<'_> {
        match self.catalog_lag.view(now) {
            Some(c) => CatalogView::Lagged(c),
            None => CatalogView::Live(self),
        }
    }

    /// The catalog as it is now, if a write now has to be remembered for the lagged reads; call before the write.
    pub fn catalog_before_write(&self) -> Option<CodeCatalog> {
        self.catalog_lag.needs_snapshot(self.faults.catalog_propagation_ms).then(|| CodeCatalog {
            codes: self.codes.clone(),
            assignments: self.queues.iter().map(|q| q.codes.clone()).collect(),
        })
    }

    /// Whether the `catalog_conflict_rate` fault refuses this catalog write (409, not applied).
    pub fn catalog_conflict(&mut self) -> bool {
        let p = self.faults.catalog_conflict_rate;
        p > 0.0 && self.fault_rng.gen_bool(p.clamp(0.0, 1.0))
    }

    /// Records a successful catalog write in the change log and for the lagged reads.
    #[allow(clippy::too_many_arguments)]
    pub fn catalog_written(
        &mut self,
        now: Timestamp,
        before_catalog: Option<CodeCatalog>,
        client: usize,
        action: &str,
        object_type: &str,
        object_id: &str,
        object_name: &str,
        before: Value,
        after: Value,
    ) {
        let client_id = self.clients.get(client).map(|c| c.id.clone()).unwrap_or_default();
        self.catalog_changes.record(
            now,
            Platform::Genesys,
            &client_id,
            action,
            object_type,
            object_id,
            object_name,
            before,
            after,
        );
        self.catalog_lag.written(now, self.faults.catalog_propagation_ms, before_catalog);
    }

    /// A code's fields for the change log.
    pub fn code_change_json(c: &Code) -> Value {
        json!({"id": c.id, "name": c.name, "description": c.description})
    }

    /// Names of the codes assigned to the queue at index `qi`, in assignment order.
    pub fn queue_code_names(&self, qi: usize) -> Vec<String> {
        self.queues
            .get(qi)
            .map(|q| q.codes.iter().filter_map(|c| self.codes.get(c)).map(|c| c.name.clone()).collect())
            .unwrap_or_default()
    }

    /// The authoritative catalog (ground truth, not the lagged view).
    pub fn catalog_snapshot(&self) -> CatalogSnapshot {
        let codes = self
            .codes
            .values()
            .map(|c| CatalogEntry {
                id: c.id.clone(),
                name: c.name.clone(),
                fields: [("description".to_string(), json!(c.description))].into_iter().collect(),
            })
            .collect();
        let assignments =
            (0..self.queues.len()).map(|i| (self.queues[i].name.clone(), self.queue_code_names(i))).collect();
        CatalogSnapshot::new(Platform::Genesys, codes, assignments)
    }

    pub fn code_name(&self, id: &str) -> Option<&str> {
        if id == SYSTEM_TIMEOUT_CODE_ID {
            return Some(SYSTEM_TIMEOUT_CODE_NAME);
        }
        self.codes.get(id).map(|c| c.name.as_str())
    }

    /// Sends a detail event `v2.detail.events.conversation.{id}.{kind}` to the delivery task.
    pub fn emit(&self, kind: &'static str, cid: &str, at: Timestamp, body: Value) {
        if self.hub.active() {
            let topic = format!("v2.detail.events.conversation.{cid}.{kind}");
            if self.hub.wants(&topic) {
                self.hub.publish(&topic, &body);
            }
        }
        if let Some(tx) = &self.events_tx {
            let _ = tx.send(OutEvent { kind, conversation_id: cid.to_string(), at, body });
        }
    }

    /// Publishes a snapshot of conversation `cid` on the user and queue conversation topics that have subscribers:
    /// the generic event body on `v2.users.{id}.conversations` and `v2.routing.queues.{id}.conversations`, the
    /// media-specific one on the queue topic's media variant (`….conversations.calls` for a call, etc.).
    pub fn notify_conversation(&self, cid: &str) {
        if !self.hub.active() {
            return;
        }
        let Some(conv) = self.conversations.get(cid) else { return };
        let mut topics = BTreeSet::new();
        let mut variants = BTreeSet::new();
        for p in &conv.participants {
            if let Some(u) = &p.user_id {
                topics.insert(format!("v2.users.{u}.conversations"));
            }
            if let Some(q) = p.queue.and_then(|q| self.queues.get(q)) {
                topics.insert(format!("v2.routing.queues.{}.conversations", q.id));
                variants.insert(format!("v2.routing.queues.{}.conversations.{}", q.id, conv.media.path()));
            }
        }
        let mut body = None;
        for t in topics.iter().filter(|t| self.hub.wants(t)) {
            let b = body.get_or_insert_with(|| crate::genesys::api::conversations::event_conversation_json(self, conv));
            self.hub.publish(t, b);
        }
        let mut media_body = None;
        for t in variants.iter().filter(|t| self.hub.wants(t)) {
            let b = media_body
                .get_or_insert_with(|| crate::genesys::api::conversations::event_media_conversation_json(self, conv));
            self.hub.publish(t, b);
        }
    }

    /// Applies a wrap-up write from the API (`POST …/communications/{commId}/wrapup` or `PATCH …/participants/{pid}`).
    ///
    /// Judges the write against the leg's state at this instant, records violations, and returns the platform's
    /// answer. On success the caller answers 202 with an empty body.
    pub fn api_write_wrapup(
        &mut self,
        cid: &str,
        pid: &str,
        media: Option<Media>,
        comm_id: Option<&str>,
        input: WrapupInput,
        now: Timestamp,
    ) -> Result<(), PlatformError> {
        let behaviours = self.behaviours;
        let conv = self.conversations.get(cid).ok_or_else(PlatformError::not_found)?;
        if media.is_some_and(|m| m != conv.media) {
            return Err(PlatformError::not_found());
        }
        let p = conv.participant(pid).ok_or_else(PlatformError::not_found)?;
        if comm_id.is_some_and(|c| c != p.comm_id) {
            return Err(PlatformError::not_found());
        }
        if p.purpose != Purpose::Agent {
            return Err(PlatformError::bad_request(format!("Participant {pid} does not take a wrap-up.")));
        }
        if behaviours.client_credentials_writes == crate::config::ClientCredentialsWrites::Forbidden {
            return Err(PlatformError::not_authorized());
        }
        // The code must exist; a provisional save may omit it.
        let code_name = match &input.code {
            Some(code) => match self.code_name(code) {
                Some(n) => Some(n.to_string()),
                None => {
                    let mut e =
                        PlatformError::new(400, "invalid.value", format!("The wrap-up code {code} does not exist."))
                            .with_params("The wrap-up code {code} does not exist.", &[("code", code)]);
                    e.extra.details.push(json!({"errorCode": "invalid.value", "fieldName": "code", "entityId": code}));
                    return Err(e);
                }
            },
            None if input.provisional => None,
            None => {
                return Err(PlatformError::bad_request("A wrap-up code is required unless the wrap-up is provisional."))
            }
        };
        if let (Some(code), Some(q)) = (&input.code, p.queue) {
            let queue = self.queues.get(q);
            let in_queue = queue.is_some_and(|q| q.codes.iter().any(|c| c == code));
            if !in_queue
                && code != SYSTEM_TIMEOUT_CODE_ID
                && behaviours.code_not_in_queue == crate::config::CodeNotInQueue::Rejected
            {
                let queue_id = queue.map(|q| q.id.as_str()).unwrap_or_default();
                return Err(PlatformError::bad_request(format!(
                    "The wrap-up code {code} is not valid for queue {queue_id}."
                ))
                .with_params(
                    "The wrap-up code {code} is not valid for queue {queueId}.",
                    &[("code", code), ("queueId", queue_id)],
                ));
            }
        }

        // The window.
        let phase = p.phase;
        let wrapup_required = p.wrapup_required;
        let in_window = phase == Phase::Acw;
        if !in_window {
            let reject = match phase {
                Phase::Alerting | Phase::Connected => !input.provisional,
                Phase::Done => behaviours.apply_after_acw == crate::config::ApplyAfterAcw::Rejected || !wrapup_required,
                Phase::Acw => false,
            };
            let never = phase == Phase::Done && !wrapup_required;
            let closed_at = self.conversations.get(cid).and_then(|c| c.participant(pid)).and_then(|p| p.acw_end);
            self.violations.outside_window(cid, pid, now, never, !reject, closed_at);
            if reject {
                let msg = match phase {
                    Phase::Done => format!("Participant {pid} is no longer in after-call work."),
                    _ => format!("Participant {pid} is not in after-call work."),
                };
                return Err(PlatformError::bad_request(msg));
            }
        }

        // Existing code (agent or other writer).
        let conv = self.conversations.get(cid).ok_or_else(PlatformError::not_found)?;
        let p = conv.participant(pid).ok_or_else(PlatformError::not_found)?;
        let existing = p.wrapup.as_ref().map(|w| (w.by, w.provisional));
        let agent_code_present = matches!(existing, Some((Writer::Agent, _)));
        if agent_code_present {
            self.violations.overwrite_attempts += 1;
        }
        if matches!(existing, Some((_, false)))
            && !input.provisional
            && behaviours.second_write == crate::config::SecondWrite::Reject
        {
            return Err(PlatformError::bad_request(format!("Participant {pid} already has a wrap-up code.")));
        }

        // Accepted — and, now and then, not kept.
        let drop = self.faults.unpersisted_write_rate;
        if !input.provisional && drop > 0.0 && self.fault_rng.gen_bool(drop.clamp(0.0, 1.0)) {
            self.api.unpersisted_writes += 1;
            return Ok(());
        }
        if agent_code_present {
            self.violations.overwrite(cid, pid, now);
        }
        let conv = self.conversations.get_mut(cid).ok_or_else(PlatformError::not_found)?;
        let p = conv.participant_mut(pid).ok_or_else(PlatformError::not_found)?;
        p.truth.api_writes += 1;
        // Duplicate *effective* writes: a final write after an earlier final one (provisional saves do not count).
        let duplicate = !input.provisional && p.truth.final_api_writes > 0;
        if !input.provisional {
            p.truth.final_api_writes += 1;
        }
        if agent_code_present && p.truth.api_writes == 1 {
            p.truth.agent_coded_before_api = true;
        }
        let provisional = input.provisional;
        let duration = input.duration_seconds.or_else(|| p.acw_start.map(|s| (now.as_second() - s.as_second()).max(0)));
        p.wrapup = Some(Wrapup {
            code: input.code.clone(),
            name: input.name.clone().or(code_name),
            notes: input.notes.clone(),
            tags: input.tags.clone(),
            duration_seconds: duration,
            end_time: if provisional { None } else { Some(input.end_time.unwrap_or(now)) },
            provisional,
            by: Writer::Api,
        });
        let schedule_change =
            if !provisional && !p.truth.change_scheduled { p.plan.change_after_api.clone() } else { None };
        if schedule_change.is_some() {
            p.truth.change_scheduled = true;
        }
        if !provisional {
            p.truth.coded_by = Some(CodedBy::Api);
        }
        if duplicate {
            self.violations.duplicate_write(cid, pid, now);
        }
        if !provisional {
            if in_window {
                self.close_window(cid, pid, now, AcwState::Complete);
            } else {
                self.emit_wrapup_events(cid, pid, now, false);
            }
            if let Some((delay, _)) = schedule_change {
                let at = add_secs(now, delay);
                self.engine.schedule(at, Action::AgentChange { cid: cid.to_string(), pid: pid.to_string() });
            }
        }
        self.notify_conversation(cid);
        Ok(())
    }

    /// Closes an open ACW window with the participant's current wrap-up (or skip) and frees the agent.
    pub fn close_window(&mut self, cid: &str, pid: &str, at: Timestamp, state: AcwState) {
        let Some(conv) = self.conversations.get_mut(cid) else {
            return;
        };
        let Some(p) = conv.participant_mut(pid) else {
            return;
        };
        if p.phase != Phase::Acw {
            return;
        }
        p.phase = Phase::Done;
        p.acw_end = Some(at);
        p.acw_state = Some(state);
        p.truth.window_closed_at = Some(at);
        if state == AcwState::Skipped {
            p.wrapup_skipped = true;
            p.truth.coded_by = Some(CodedBy::Skipped);
        }
        // Forced timeout: no early exit, the agent stays INTERACTING until the deadline.
        let hold = p.prompt == Some(AcwMode::MandatoryForcedTimeout) && p.truth.deadline.is_some_and(|d| d > at);
        p.holds_agent_until_deadline = hold;
        let user = p.user_id.clone();
        if !hold {
            if let Some(u) = user {
                self.release_agent(&u, at);
            }
        }
        self.emit_wrapup_events(cid, pid, at, true);
    }

    /// Emits `.wrapup` (when a final code is present) and, when `acw` is set, `.acw`.
    pub fn emit_wrapup_events(&self, cid: &str, pid: &str, at: Timestamp, acw: bool) {
        let Some(conv) = self.conversations.get(cid) else {
            return;
        };
        let Some(p) = conv.participant(pid) else {
            return;
        };
        let queue_id = p.queue.and_then(|q| self.queues.get(q)).map(|q| q.id.clone());
        let mut body = json!({
            "eventTime": epoch_ms(at),
            "conversationId": cid,
            "participantId": pid,
            "sessionId": p.comm_id,
            "mediaType": conv.media.event_name(),
            "provider": "Edge",
            "direction": conv.direction.to_uppercase(),
            "queueId": queue_id,
        });
        let code = p.wrapup.as_ref().filter(|w| !w.provisional);
        if let (Some(w), Some(obj)) = (code, body.as_object_mut()) {
            obj.insert("wrapupCode".into(), json!(w.code));
            obj.insert("wrapupNotes".into(), json!(w.notes.clone().unwrap_or_default()));
            let ms = p.acw_start.map(|s| (at.as_millisecond() - s.as_millisecond()).max(0)).unwrap_or(0);
            obj.insert("wrapupDurationMs".into(), json!(ms));
        }
        if code.is_some() {
            self.emit("wrapup", cid, at, body.clone());
        }
        if acw {
            if let Some(obj) = body.as_object_mut() {
                obj.insert("userId".into(), json!(p.user_id));
            }
            self.emit("acw", cid, at, body);
        }
    }

    /// One fewer leg keeps this agent busy; an idle agent takes the next waiting conversation.
    pub fn release_agent(&mut self, user_id: &str, at: Timestamp) {
        let Some(&u) = self.user_by_id.get(user_id) else {
            return;
        };
        let user = &mut self.users[u];
        user.busy = user.busy.saturating_sub(1);
        if user.busy == 0 {
            user.status_since = at;
            self.on_agent_idle(u, at);
        }
    }

    /// `GET /api/v2/users/{id}/routingstatus`.
    pub fn routing_status(&self, user_id: &str, now: Timestamp) -> Value {
        match self.user_by_id.get(user_id).map(|&u| &self.users[u]) {
            Some(u) => json!({
                "userId": u.id,
                "status": if u.busy > 0 { "INTERACTING" } else { "IDLE" },
                "startTime": iso(u.status_since),
            }),
            None => json!({"userId": user_id, "status": "OFF_QUEUE", "startTime": iso(now)}),
        }
    }

    /// The participant's wrap-up for `GET …/wrapup?provisional=`; `None` when nothing (visible) is set.
    pub fn assigned_wrapup(
        &self,
        cid: &str,
        pid: &str,
        media: Option<Media>,
        comm_id: Option<&str>,
        provisional: bool,
    ) -> Result<Option<Value>, PlatformError> {
        let p = self.find_participant(cid, pid, media)?;
        if comm_id.is_some_and(|c| c != p.comm_id) {
            return Err(PlatformError::not_found());
        }
        let Some(w) = p.wrapup.as_ref() else {
            return Ok(None);
        };
        if w.provisional && !provisional {
            return Ok(None);
        }
        let mut v = Map::new();
        if let Some(c) = &w.code {
            v.insert("code".into(), json!(c));
        }
        v.insert("notes".into(), json!(w.notes.clone().unwrap_or_default()));
        v.insert("tags".into(), json!(w.tags));
        if let Some(d) = w.duration_seconds {
            v.insert("durationSeconds".into(), json!(d));
        }
        if let Some(e) = w.end_time {
            v.insert("endTime".into(), json!(iso(e)));
        }
        Ok(Some(Value::Object(v)))
    }

    pub fn find_participant(&self, cid: &str, pid: &str, media: Option<Media>) -> Result<&Participant, PlatformError> {
        let conv = self.conversations.get(cid).ok_or_else(PlatformError::not_found)?;
        if media.is_some_and(|m| m != conv.media) {
            return Err(PlatformError::not_found());
        }
        conv.participant(pid).ok_or_else(PlatformError::not_found)
    }

    /// The codes available to a participant (its queue's codes) as a bare array.
    pub fn participant_codes(&self, cid: &str, pid: &str, media: Option<Media>) -> Result<Value, PlatformError> {
        let p = self.find_participant(cid, pid, media)?;
        let list: Vec<Value> = p
            .queue
            .and_then(|q| self.queues.get(q))
            .map(|q| q.codes.iter().filter_map(|c| self.codes.get(c)).map(|c| self.code_json(c)).collect())
            .unwrap_or_default();
        Ok(Value::Array(list))
    }

    pub fn code_json(&self, c: &Code) -> Value {
        json!({
            "id": c.id,
            "name": c.name,
            "division": {"id": self.division_id, "name": "Home", "selfUri": format!("/api/v2/authorization/divisions/{}", self.division_id)},
            "description": c.description,
            "dateCreated": iso(c.created),
            "dateModified": iso(c.modified),
            "createdBy": c.created_by,
            "modifiedBy": c.modified_by,
            "selfUri": format!("/api/v2/routing/wrapupcodes/{}", c.id),
        })
    }

    pub fn queue_json(&self, q: &Queue) -> Value {
        let mut acw = json!({"wrapupPrompt": q.mode.as_str()});
        if let (Some(t), Some(obj)) = (q.timeout_ms, acw.as_object_mut()) {
            obj.insert("timeoutMs".into(), json!(t));
        }
        json!({
            "id": q.id,
            "name": q.name,
            "division": {"id": self.division_id, "name": "Home", "selfUri": format!("/api/v2/authorization/divisions/{}", self.division_id)},
            "description": "",
            "dateCreated": iso(q.created),
            "dateModified": iso(q.created),
            "memberCount": q.members.len(),
            "acwSettings": acw,
            "selfUri": format!("/api/v2/routing/queues/{}", q.id),
        })
    }

    /// Builds the report from the current state.
    pub fn report(&self) -> Report {
        let mut legs = LegCounts::default();
        for conv in self.conversations.values() {
            for p in conv.participants.iter().filter(|p| p.purpose == Purpose::Agent) {
                legs.count(p.phase == Phase::Done, p.truth.coded_by);
            }
        }
        Report {
            legs,
            violations: self.violations.report(),
            api: self.api.report(crate::genesys::api::endpoint_key),
            events: {
                use std::sync::atomic::Ordering::Relaxed;
                let ws = &self.hub.stats;
                EventReport {
                    ws_frames_sent: ws.frames_sent.load(Relaxed),
                    ws_frames_dropped: ws.frames_dropped.load(Relaxed),
                    ws_sockets_dropped: ws.sockets_dropped.load(Relaxed),
                    ..self.event_stats.snapshot()
                }
            },
            cxone: crate::cxone::CxoneReport::default(),
        }
    }

    /// Ground truth of every agent leg, in creation order.
    pub fn legs(&self) -> Vec<LegTruth> {
        let mut out = Vec::new();
        for cid in &self.conversation_order {
            let Some(conv) = self.conversations.get(cid) else {
                continue;
            };
            for p in conv.participants.iter().filter(|p| p.purpose == Purpose::Agent) {
                out.push(self.leg_truth(conv, p));
            }
        }
        out
    }

    pub fn leg_truth(&self, conv: &Conversation, p: &Participant) -> LegTruth {
        let queue = p.queue.and_then(|q| self.queues.get(q));
        let final_code = p.wrapup.as_ref().filter(|w| !w.provisional).and_then(|w| w.code.clone());
        let coded_by = match (p.phase, p.truth.coded_by) {
            (_, Some(c)) => c,
            (Phase::Done, None) if !p.wrapup_required => CodedBy::None,
            _ => CodedBy::None,
        };
        LegTruth {
            conversation_id: conv.id.clone(),
            participant_id: p.id.clone(),
            communication_id: p.comm_id.clone(),
            media_type: conv.media,
            queue_id: queue.map(|q| q.id.clone()),
            queue_name: queue.map(|q| q.name.clone()),
            user_id: p.user_id.clone(),
            wrapup_prompt: p.prompt.map(|m| m.participant_prompt().to_string()),
            wrapup_required: p.wrapup_required,
            state: match p.phase {
                Phase::Alerting => "alerting",
                Phase::Connected => "connected",
                Phase::Acw => "acw",
                Phase::Done => "done",
            }
            .to_string(),
            acw_started_at: p.acw_start.map(iso),
            acw_deadline: p.truth.deadline.map(iso),
            window_closed_at: p.truth.window_closed_at.map(iso),
            final_code_name: final_code.as_deref().and_then(|c| self.code_name(c)).map(str::to_string),
            final_code,
            coded_by,
            api_writes: p.truth.api_writes,
            agent_coded_before_api: p.truth.agent_coded_before_api,
            agent_changed_after_api: p.truth.agent_changed_after_api,
            true_code_name: p.plan.true_code.as_deref().and_then(|c| self.code_name(c)).map(str::to_string),
            true_code: p.plan.true_code.clone(),
            agent_pick_name: p.plan.agent_pick.as_deref().and_then(|c| self.code_name(c)).map(str::to_string),
            agent_pick: p.plan.agent_pick.clone(),
        }
    }
}

fn base64_secret(rng: &mut SmallRng) -> String {
    use base64::Engine;
    let bytes: [u8; 30] = rng.gen();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
