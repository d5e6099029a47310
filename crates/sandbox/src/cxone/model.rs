//! The business unit: skills, dispositions, agents, contacts, agent sessions, tokens, and the ground truth.
//!
//! Operations the API exposes are methods here (handlers in `api.rs` stay thin). A disposition write is judged
//! against the contact's state at the instant it arrives — open ACW or not, an agent's disposition already there,
//! earlier accepted API writes — and recorded in [`Bu::writes`] with what it violated.

use super::{AcwType, ClosedContact, CxoneBehaviours, CxoneCenter, CxoneConfig, DispositionEndsAcw, NotOnSkill};
use super::{SecondDisposition, StaleSessionId};
use crate::config::{CatalogShape, FaultProfile};
use crate::engine::catalog::{CatalogEntry, CatalogSnapshot, ChangeLog, Lagged, NamedCatalog, Platform};
use crate::engine::iso;
use crate::engine::truth::{ApiStats, Violations};
use crate::engine::{add_secs, random_uuid, Engine};
use crate::report::{ApiReport, CodedBy, EventReport, LegCounts, ViolationReport};
use jiff::Timestamp;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Media of a contact (`mediaTypeId` 4 Phone Call, 3 Chat, 6 Work Item).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CxMedia {
    Voice,
    Chat,
    WorkItem,
}

impl CxMedia {
    pub fn type_id(self) -> u8 {
        match self {
            CxMedia::Voice => 4,
            CxMedia::Chat => 3,
            CxMedia::WorkItem => 6,
        }
    }
    pub fn type_name(self) -> &'static str {
        match self {
            CxMedia::Voice => "Phone Call",
            CxMedia::Chat => "Chat",
            CxMedia::WorkItem => "Work Item",
        }
    }
    /// `Type` of the agent-session event describing a contact of this media.
    pub fn event_type(self) -> &'static str {
        match self {
            CxMedia::Voice => "CallContactEvent",
            CxMedia::Chat => "ChatContactEvent",
            CxMedia::WorkItem => "WorkItemContactEvent",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Skill {
    pub id: i64,
    pub name: String,
    pub media: CxMedia,
    pub acw_type: AcwType,
    pub require_disposition: bool,
    pub max_seconds_acw: u32,
    pub allow_secondary: bool,
    /// Assigned disposition ids, in priority order.
    pub dispositions: Vec<i64>,
    pub weight: f64,
    pub members: Vec<usize>,
    pub waiting: VecDeque<i64>,
}

impl Skill {
    /// Whether an ACW window opens after a contact of this skill.
    pub fn has_acw(&self) -> bool {
        self.acw_type != AcwType::None
    }
    /// Whether the platform ends ACW by itself (`AcwTimeout` is 0 when a disposition is required).
    pub fn acw_timeout(&self) -> Option<u32> {
        match self.acw_type {
            AcwType::None => None,
            AcwType::Disposition if self.require_disposition => None,
            _ => Some(self.max_seconds_acw.max(1)),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Disposition {
    pub id: i64,
    pub name: String,
    pub classification_id: i64,
    pub notes: String,
    pub last_updated: Timestamp,
    pub is_active: bool,
    pub is_preview: bool,
    /// A system disposition: `PUT` answers 409 `DispositionId - '{id}' can not be updated`.
    pub locked: bool,
}

impl Disposition {
    /// A new, active, unlocked disposition.
    pub fn new(id: i64, name: String, classification_id: i64, now: Timestamp) -> Self {
        Self {
            id,
            name,
            classification_id,
            notes: String::new(),
            last_updated: now,
            is_active: true,
            is_preview: false,
            locked: false,
        }
    }

    /// The disposition's fields for the change log and the catalog snapshot.
    pub fn fields(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "notes": self.notes, "classificationId": self.classification_id,
            "isPreviewDisposition": self.is_preview, "isActive": self.is_active, "locked": self.locked,
        })
    }
}

/// The parts of the BU a catalog write changes, as the lagged reads show them.
#[derive(Debug, Clone)]
pub struct DispositionCatalog {
    pub dispositions: BTreeMap<i64, Disposition>,
    pub skills: Vec<Skill>,
}

/// The ACW unavailable code every skill uses.
pub const ACW_STATE_ID: i64 = 4;
pub const ACW_STATE_NAME: &str = "ACW";

#[derive(Debug, Clone)]
pub struct Agent {
    pub id: i64,
    pub first_name: String,
    pub last_name: String,
    pub user_name: String,
    pub team_id: i64,
    pub skills: Vec<usize>,
    /// `Available`, `Unavailable`, `InboundContact`, `LoggedOut`.
    pub state: &'static str,
    pub out_reason: String,
    pub is_acw: bool,
    pub acw_timeout: Option<u32>,
    /// The contact the agent is handling (talking or in ACW).
    pub contact: Option<i64>,
    pub since: Timestamp,
    pub last_update: Timestamp,
    /// Whether routing may give this agent contacts (the API user may not).
    pub routable: bool,
    /// Whether the agent has its own session (simulated agents are logged in through MAX).
    pub logged_in: bool,
}

impl Agent {
    /// An agent on the first team, on no skill, logged out and not routable since `now`.
    fn logged_out(id: i64, first_name: String, last_name: String, user_name: String, now: Timestamp) -> Self {
        Self {
            id,
            first_name,
            last_name,
            user_name,
            team_id: 2_001_000,
            skills: Vec::new(),
            state: "LoggedOut",
            out_reason: String::new(),
            is_acw: false,
            acw_timeout: None,
            contact: None,
            since: now,
            last_update: now,
            routable: false,
            logged_in: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Queued,
    Routing,
    Active,
    /// `Disconnected`, `FinalState=False`.
    Acw,
    /// `Disconnected`, `FinalState=True`.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    Agent,
    Api,
}

#[derive(Debug, Clone)]
pub struct Dispo {
    pub primary: i64,
    pub secondary: Option<i64>,
    pub notes: String,
    pub by: Writer,
    pub by_agent: Option<i64>,
    pub at: Timestamp,
}

/// What the agent of a contact will do, drawn once when it is routed (so it does not depend on API timing).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Disposition by the agent: (seconds after ACW start, disposition id).
    pub code: Option<(f64, i64)>,
    pub skip: f64,
    pub give_in: (f64, Option<i64>),
    pub finish: f64,
    pub change_after_api: Option<(f64, i64)>,
    pub transfer: bool,
    /// Whether the agent picks the contact's true outcome, and the draw that picks another disposition when not.
    pub accurate: bool,
    pub other_pick: usize,
    /// The contact's true outcome and the agent's pick (disposition ids), once its talk time is known.
    pub true_code: Option<i64>,
    pub agent_pick: Option<i64>,
}

impl Plan {
    /// Sets the contact's true outcome from its talk time and puts the agent's pick in every disposition the agent
    /// will set. `dispositions`: the skill's, in their configured order.
    pub fn settle_outcome(&mut self, dispositions: &[i64], talk_secs: f64) {
        let Some(truth) = crate::engine::outcome::true_outcome(dispositions.len(), talk_secs) else { return };
        let pick = crate::engine::outcome::agent_pick(dispositions.len(), truth, self.accurate, self.other_pick);
        let d = dispositions[pick];
        if let Some((_, code)) = &mut self.code {
            *code = d;
        }
        if self.give_in.1.is_some() {
            self.give_in.1 = Some(d);
        }
        self.true_code = Some(dispositions[truth]);
        self.agent_pick = Some(d);
    }
}

#[derive(Debug, Clone, Default)]
pub struct Truth {
    pub deadline: Option<Timestamp>,
    pub closed_at: Option<Timestamp>,
    pub coded_by: Option<CodedBy>,
    pub api_writes: u32,
    pub agent_coded_before_api: bool,
    pub agent_changed_after_api: bool,
    pub change_scheduled: bool,
}

#[derive(Debug, Clone)]
pub struct Contact {
    pub id: i64,
    pub master_id: i64,
    pub parent: Option<i64>,
    pub skill: usize,
    pub agent: Option<usize>,
    pub media: CxMedia,
    pub phase: Phase,
    pub start: Timestamp,
    pub connected_at: Option<Timestamp>,
    pub acw_start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub last_update: Timestamp,
    /// `transferIndicatorId`: 0 None, 1 ReSkill, 2 ReAgent.
    pub transfer_indicator: u8,
    pub disposition: Option<Dispo>,
    pub truth: Truth,
    pub plan: Plan,
}

impl Contact {
    /// CXone `Status` of the contact's agent-session event.
    pub fn status(&self) -> &'static str {
        match self.phase {
            Phase::Queued | Phase::Routing => "Incoming",
            Phase::Active => "Active",
            Phase::Acw | Phase::Closed => "Disconnected",
        }
    }
    /// RTD `stateName` (sandbox numbering; CXone's full list is UNCONFIRMED).
    pub fn state(&self) -> (i64, &'static str) {
        match self.phase {
            Phase::Queued => (4, "InQueue"),
            Phase::Routing => (5, "Routing"),
            // The contact is not EndContact until ACW ends; ACW shows on the agent (`isACW`).
            Phase::Active | Phase::Acw => (6, "Active"),
            Phase::Closed => (13, "EndContact"),
        }
    }
}

/// One agent session (own or joined). Its id rotates on every get-next-event 200; old ids stay known.
#[derive(Debug)]
pub struct Session {
    pub id: String,
    pub agent: usize,
    pub events: VecDeque<Value>,
    /// Events held back by the reorder fault; they follow the next event pushed.
    pub held: Vec<Value>,
    pub ended: bool,
    pub notify: Arc<Notify>,
}

#[derive(Debug, Clone)]
pub struct CxToken {
    pub expires: Instant,
    pub revoked: bool,
    /// Its rate-limit window (`crate::rate_limit`).
    pub window: crate::rate_limit::TokenWindow,
    pub retry_after: Option<(Instant, Instant)>,
}

/// Credentials of the BU's API user and registered application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CxoneCredentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub client_id: String,
    pub client_secret: String,
    pub tenant_id: String,
    pub business_unit_id: i64,
    /// `icAgentId` of the API user.
    pub agent_id: i64,
    pub cluster: String,
    pub area: String,
}

/// One disposition write through the API, as the sandbox saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CxoneWrite {
    pub at: String,
    pub contact_id: i64,
    pub session_id: String,
    pub primary_disposition_id: Option<i64>,
    pub status: u16,
    pub reason: String,
    /// Whether the contact was in ACW (`Disconnected`, FinalState=False) when the write arrived.
    pub in_window: bool,
    /// `overwrite`, `outside_window`, `duplicate_write` (empty when none).
    pub violations: Vec<String>,
}

/// The truth about one contact (`GET /sandbox/v1/cxone/legs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CxoneLegTruth {
    pub contact_id: i64,
    pub master_contact_id: i64,
    pub parent_contact_id: Option<i64>,
    pub skill_id: i64,
    pub skill_name: String,
    pub agent_id: Option<i64>,
    pub media: CxMedia,
    pub acw_type_id: u8,
    pub require_disposition: bool,
    /// `queued`, `routing`, `active`, `acw`, `closed`.
    pub state: String,
    pub acw_started_at: Option<String>,
    /// When the platform ends ACW by itself; `None` if it never does.
    pub acw_deadline: Option<String>,
    pub closed_at: Option<String>,
    pub final_disposition_id: Option<i64>,
    pub final_disposition_name: Option<String>,
    pub coded_by: CodedBy,
    pub api_writes: u32,
    pub agent_coded_before_api: bool,
    pub agent_changed_after_api: bool,
    /// The contact's hidden true outcome (a disposition of its skill; see `engine::outcome`), set at its end.
    #[serde(default)]
    pub true_code: Option<i64>,
    #[serde(default)]
    pub true_code_name: Option<String>,
    /// The disposition the agent picks (the true outcome with the configured `agent_accuracy`).
    #[serde(default)]
    pub agent_pick: Option<i64>,
    #[serde(default)]
    pub agent_pick_name: Option<String>,
}

/// The CXone section of `GET /sandbox/v1/report` (same shapes as the Genesys sections). In violation details,
/// `conversationId` is the master contact id and `participantId` the contact id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CxoneReport {
    pub legs: LegCounts,
    pub violations: ViolationReport,
    pub api: ApiReport,
    /// get-next-event delivery: `delivered` events returned in 200s, `dropped`/`duplicated` by the fault profile.
    pub events: EventReport,
}

/// A CXone API error: status, the documented description (reason phrase, `icStatusDescription`, body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CxError {
    pub status: u16,
    pub text: String,
    pub retry_after: Option<u64>,
}

impl CxError {
    pub fn new(status: u16, text: impl Into<String>) -> Self {
        Self { status, text: text.into(), retry_after: None }
    }
}

/// One simulation step of the BU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Arrival,
    Connect(i64),
    Disconnect(i64),
    AgentDisposition(i64),
    AgentSkip(i64),
    AcwTimeout(i64),
    AgentFinish(i64),
    AgentChange(i64),
}

const MAX_WRITES: usize = 50_000;
/// Most events a session queues before dropping its oldest.
const MAX_SESSION_EVENTS: usize = 10_000;

/// Everything the emulated business unit holds.
pub struct Bu {
    pub creds: CxoneCredentials,
    pub enabled: bool,
    pub behaviours: CxoneBehaviours,
    pub faults: FaultProfile,
    pub storm_until: Option<Instant>,
    pub token_lifetime: std::time::Duration,
    pub rate_limit_per_minute: u32,
    pub rate_limit_window: crate::rate_limit::RateWindow,
    pub tokens: HashMap<String, CxToken>,
    pub refresh_tokens: HashSet<String>,
    pub skills: Vec<Skill>,
    pub dispositions: BTreeMap<i64, Disposition>,
    pub next_disposition_id: i64,
    pub agents: Vec<Agent>,
    pub agent_by_id: HashMap<i64, usize>,
    /// Index of the API user among `agents`.
    pub api_user: usize,
    pub contacts: BTreeMap<i64, Contact>,
    pub next_contact_id: i64,
    pub sessions: Vec<Session>,
    pub session_by_id: HashMap<String, usize>,
    pub center: CxoneCenter,
    /// Simulated time, scheduled actions, traffic and the simulation RNG (arrivals, contact ids, agent plans).
    pub engine: Engine<Action>,
    /// Fault RNG: kept apart so that faults (and session ids) never perturb the simulation.
    pub fault_rng: SmallRng,
    pub violations: Violations,
    /// get-next-event delivery counts (`delivered`, `dropped`, `duplicated`).
    pub events: EventReport,
    pub writes: Vec<CxoneWrite>,
    pub api: ApiStats,
    /// Ground truth: every successful catalog write.
    pub catalog_changes: ChangeLog,
    /// Catalog reads lag the writes by `faults.catalog_propagation_ms` (`crate::engine::catalog`).
    pub catalog_lag: Lagged<DispositionCatalog>,
}

fn key(rng: &mut SmallRng, n: usize) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Bu {
    /// Builds the BU (catalog, skills, agents, credentials) deterministically from the seed.
    pub fn new(cfg: &CxoneConfig, seed: u64, faults: FaultProfile, now: Timestamp) -> Self {
        Self::shaped(cfg, CatalogShape::default(), seed, faults, now)
    }

    /// [`Bu::new`] with the catalog shaped as `shape` says (generated skills and dispositions, a variant).
    pub fn shaped(cfg: &CxoneConfig, shape: CatalogShape, seed: u64, faults: FaultProfile, now: Timestamp) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0xc0_0e_5a_4d);
        let fault_rng = SmallRng::seed_from_u64(seed ^ 0xc0_0e_f4_17);
        let business_unit_id = 4_600_000 + rng.gen_range(0..99_999);
        let tenant_id = random_uuid(&mut rng);
        // Access key secrets end in `=` padding, so clients that forget to URL-encode the form fail as on CXone.
        let access_key_id = key(&mut rng, 38);
        let access_key_secret = key(&mut rng, 44);
        let client_id = format!("wrapup-sandbox@{business_unit_id}");
        let client_secret = key(&mut rng, 24);
        let created = now.checked_sub(jiff::SignedDuration::from_hours(24 * 30)).unwrap_or(now);

        let mut dispositions = BTreeMap::new();
        let mut by_name: HashMap<String, i64> = HashMap::new();
        let mut next_disposition_id = 2891;
        let system = &cfg.center.system_dispositions;
        let mut make = |name: &str, d: &mut BTreeMap<i64, Disposition>| -> i64 {
            if let Some(&id) = by_name.get(name) {
                return id;
            }
            let id = next_disposition_id;
            next_disposition_id += 1;
            let mut disposition = Disposition::new(id, name.into(), 1, created);
            disposition.locked = system.iter().any(|n| n.eq_ignore_ascii_case(name));
            d.insert(id, disposition);
            by_name.insert(name.into(), id);
            id
        };
        // The catalog by name: the configured one, perturbed by the variant, then the generated part (generated
        // skills have no agents and no arrivals).
        let mut named = NamedCatalog {
            containers: cfg.center.skills.iter().map(|s| (s.name.clone(), s.dispositions.clone())).collect(),
            unassigned: cfg.center.unassigned_dispositions.clone(),
            texts: BTreeMap::new(),
        };
        named.apply_variant(shape.variant, &cfg.center.system_dispositions);
        named.generate(shape.queues, shape.codes, |i| format!("Skill {:03}", i + 1));
        let configured = cfg.center.skills.len();
        let mut skills = Vec::new();
        for (i, (name, ds)) in named.containers.iter().enumerate() {
            let sc = cfg.center.skills.get(i);
            let ds = ds.iter().map(|n| make(n, &mut dispositions)).collect();
            let acw_type = sc.map_or(AcwType::Disposition, |s| s.acw_type);
            skills.push(Skill {
                id: 1_180_000 + 7 * i as i64 + 3,
                name: name.clone(),
                media: sc.map_or(CxMedia::Voice, |s| s.media),
                acw_type,
                require_disposition: sc.is_some_and(|s| s.require_disposition) && acw_type != AcwType::None,
                max_seconds_acw: sc.map_or(90, |s| s.max_seconds_acw),
                allow_secondary: sc.is_some_and(|s| s.allow_secondary_dispositions),
                dispositions: ds,
                weight: sc.map_or(0.0, |s| if s.weight.is_finite() { s.weight.max(0.0) } else { 0.0 }),
                members: Vec::new(),
                waiting: VecDeque::new(),
            });
        }
        for n in &named.unassigned {
            make(n, &mut dispositions);
        }
        for (name, text) in &named.texts {
            if let Some(d) = dispositions.values_mut().find(|d| &d.name == name) {
                d.notes = text.clone();
            }
        }
        let mut agents = Vec::new();
        let mut agent_by_id = HashMap::new();
        let per = cfg.center.skills_per_agent.clamp(1, configured.max(1));
        for i in 0..cfg.center.agents {
            let id = 30_100_000 + 11 * i as i64 + 1;
            let mut qs = Vec::new();
            if configured > 0 {
                for k in 0..per {
                    let s = (i + k) % configured;
                    if !qs.contains(&s) {
                        qs.push(s);
                        skills[s].members.push(i);
                    }
                }
            }
            agent_by_id.insert(id, i);
            let user_name = format!("agent{:02}@bu{business_unit_id}.sandbox", i + 1);
            let mut agent = Agent::logged_out(id, "Agent".into(), format!("{:02}", i + 1), user_name, now);
            agent.team_id += (i % 4) as i64;
            agent.skills = qs;
            // Simulated agents are logged in through MAX and take contacts.
            (agent.state, agent.routable, agent.logged_in) = ("Available", true, true);
            agents.push(agent);
        }
        // The API user: an agent record (it has an icAgentId) that routing never uses and that is logged out.
        let api_user = agents.len();
        let api_agent_id = 30_099_001;
        agent_by_id.insert(api_agent_id, api_user);
        let user_name = format!("wrapup.api@bu{business_unit_id}.sandbox");
        agents.push(Agent::logged_out(api_agent_id, "Wrapup".into(), "Integration".into(), user_name, now));
        Self {
            creds: CxoneCredentials {
                access_key_id,
                access_key_secret,
                client_id,
                client_secret,
                tenant_id,
                business_unit_id,
                agent_id: api_agent_id,
                cluster: "B32".into(),
                area: "na1".into(),
            },
            enabled: cfg.enabled,
            behaviours: cfg.behaviours,
            faults,
            storm_until: None,
            token_lifetime: std::time::Duration::from_secs(cfg.token_lifetime_secs.max(1)),
            rate_limit_per_minute: cfg.rate_limit_per_minute,
            rate_limit_window: cfg.rate_limit_window,
            tokens: HashMap::new(),
            refresh_tokens: HashSet::new(),
            skills,
            dispositions,
            next_disposition_id,
            agents,
            agent_by_id,
            api_user,
            contacts: BTreeMap::new(),
            next_contact_id: 712_876_049_780,
            sessions: Vec::new(),
            session_by_id: HashMap::new(),
            center: cfg.center.clone(),
            engine: Engine::new(rng, now, Action::Arrival),
            fault_rng,
            violations: Violations::default(),
            events: EventReport::default(),
            writes: Vec::new(),
            api: ApiStats::default(),
            catalog_changes: ChangeLog::default(),
            catalog_lag: Lagged::default(),
        }
    }

    /// The catalog as the reads show it at `now` (see `catalog_propagation_ms`).
    pub fn catalog_view(&self, now: Timestamp) -> (&BTreeMap<i64, Disposition>, &[Skill]) {
        match self.catalog_lag.view(now) {
            Some(c) => (&c.dispositions, &c.skills),
            None => (&self.dispositions, &self.skills),
        }
    }

    /// The catalog as it is now, if a write now has to be remembered for the lagged reads; call before the write.
    pub fn catalog_before_write(&self) -> Option<DispositionCatalog> {
        self.catalog_lag
            .needs_snapshot(self.faults.catalog_propagation_ms)
            .then(|| DispositionCatalog { dispositions: self.dispositions.clone(), skills: self.skills.clone() })
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
        before_catalog: Option<DispositionCatalog>,
        action: &str,
        object_type: &str,
        object_id: &str,
        object_name: &str,
        before: Value,
        after: Value,
    ) {
        let client_id = self.creds.client_id.clone();
        self.catalog_changes.record(
            now,
            Platform::Cxone,
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

    /// A skill's catalog settings and assigned disposition names (priority order), for the change log.
    pub fn skill_fields(&self, s: usize) -> Value {
        let sk = &self.skills[s];
        let names: Vec<&str> = sk.dispositions.iter().filter_map(|d| self.disposition_name(*d)).collect();
        json!({
            "acwTypeId": sk.acw_type.id(), "requireDisposition": sk.require_disposition,
            "allowSecondaryDisposition": sk.allow_secondary, "maxSecondsAcw": sk.max_seconds_acw,
            "dispositions": names,
        })
    }

    /// The authoritative catalog (ground truth, not the lagged view).
    pub fn catalog_snapshot(&self) -> CatalogSnapshot {
        let codes = self
            .dispositions
            .values()
            .map(|d| {
                let mut fields: BTreeMap<String, Value> =
                    d.fields().as_object().map(|o| o.clone().into_iter().collect()).unwrap_or_default();
                fields.remove("id");
                fields.remove("name");
                CatalogEntry { id: d.id.to_string(), name: d.name.clone(), fields }
            })
            .collect();
        let assignments = self
            .skills
            .iter()
            .map(|s| {
                let names = s.dispositions.iter().filter_map(|d| self.disposition_name(*d)).map(str::to_string);
                (s.name.clone(), names.collect())
            })
            .collect();
        CatalogSnapshot::new(Platform::Cxone, codes, assignments)
    }

    pub fn skill_by_id(&self, id: i64) -> Option<usize> {
        self.skills.iter().position(|s| s.id == id)
    }

    pub fn disposition_name(&self, id: i64) -> Option<&str> {
        self.dispositions.get(&id).map(|d| d.name.as_str())
    }

    // ---- sessions and events ----

    fn new_session_id(&mut self) -> String {
        let bytes: [u8; 16] = self.fault_rng.gen();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Starts a session for agent `a` (own start or join); queues the opening events.
    pub fn open_session(&mut self, a: usize, now: Timestamp) -> String {
        let id = self.new_session_id();
        let idx = self.sessions.len();
        self.sessions.push(Session {
            id: id.clone(),
            agent: a,
            events: VecDeque::new(),
            held: Vec::new(),
            ended: false,
            notify: Arc::new(Notify::new()),
        });
        self.session_by_id.insert(id.clone(), idx);
        let mut opening = vec![json!({"Type": "AgentSessionStart", "BusNo": self.creds.business_unit_id.to_string(),
            "AgentId": self.agents[a].id.to_string(), "SessionId": id})];
        opening.extend(self.refresh_collection(a, now));
        self.sessions[idx].events.extend(opening);
        id
    }

    /// The agent's state and every open contact, as a session sees them after a (re)join.
    pub fn refresh_collection(&self, a: usize, now: Timestamp) -> Vec<Value> {
        let mut out = vec![self.agent_state_event(a, now)];
        if let Some(c) = self.agents[a].contact.and_then(|c| self.contacts.get(&c)) {
            out.push(self.contact_event(c));
        }
        out
    }

    /// Resolves a session id: `(index, is_current)`.
    pub fn session(&self, sid: &str) -> Option<(usize, bool)> {
        let &i = self.session_by_id.get(sid)?;
        Some((i, self.sessions[i].id == sid))
    }

    /// A session usable for a non-polling call (404 `Invalid sessionId` otherwise).
    pub fn live_session(&self, sid: &str, text: &'static str) -> Result<usize, CxError> {
        match self.session(sid) {
            Some((i, current)) if !self.sessions[i].ended => {
                if !current && self.behaviours.stale_session_id == StaleSessionId::Rejected {
                    return Err(CxError::new(404, text));
                }
                Ok(i)
            }
            _ => Err(CxError::new(404, text)),
        }
    }

    /// Rotates the id of session `i` (old ids stay known); returns the new one.
    pub fn rotate(&mut self, i: usize) -> String {
        let id = self.new_session_id();
        self.session_by_id.insert(id.clone(), i);
        self.sessions[i].id = id.clone();
        id
    }

    /// Queues `ev` for every live session of agent `a`, through the event faults.
    pub fn emit(&mut self, a: usize, ev: Value) {
        let f = &self.faults;
        let (drop_p, dup_p, reorder_p) = (f.event_drop_rate, f.event_duplicate_rate, f.event_reorder_rate);
        for i in 0..self.sessions.len() {
            if self.sessions[i].agent != a || self.sessions[i].ended {
                continue;
            }
            let r = &mut self.fault_rng;
            let drop = drop_p > 0.0 && r.gen_bool(drop_p.min(1.0));
            let dup = dup_p > 0.0 && r.gen_bool(dup_p.min(1.0));
            let reorder = reorder_p > 0.0 && r.gen_bool(reorder_p.min(1.0));
            if drop {
                self.events.dropped += 1;
                continue;
            }
            let s = &mut self.sessions[i];
            if reorder {
                s.held.push(ev.clone());
                continue;
            }
            s.events.push_back(ev.clone());
            // A joined session nobody polls must not grow without bound: the oldest events go first.
            while s.events.len() > MAX_SESSION_EVENTS {
                s.events.pop_front();
            }
            if dup {
                self.events.duplicated += 1;
                s.events.push_back(ev.clone());
            }
            // Held-back events follow the one that overtook them.
            s.events.extend(s.held.drain(..));
            s.notify.notify_one();
        }
    }

    pub fn agent_state_event(&self, a: usize, _now: Timestamp) -> Value {
        let ag = &self.agents[a];
        json!({
            "Type": "AgentState",
            "CurrentState": ag.state,
            "CurrentOutReason": ag.out_reason,
            "StartTimeUTC": iso(ag.since),
            "NextStates": if ag.is_acw { json!([{"State": "Available", "OutReason": ""}]) } else { json!([]) },
            "IsAcw": if ag.is_acw { "True" } else { "False" },
            "NextIsAcw": "False",
            "AcwTimeout": ag.acw_timeout.map(|t| t.to_string()).unwrap_or_default(),
            "IISHost": "sandbox-iis", "VCHost": "sandbox-vc",
        })
    }

    pub fn contact_event(&self, c: &Contact) -> Value {
        let skill = &self.skills[c.skill];
        let agent_id = c.agent.map(|a| self.agents[a].id.to_string()).unwrap_or_default();
        let mut ev = json!({
            "Type": c.media.event_type(),
            "ContactID": c.id.to_string(),
            "MasterID": c.master_id.to_string(),
            "Status": c.status(),
            "OriginalState": "False",
            "Skill": skill.id.to_string(),
            "SkillId": skill.id.to_string(),
            "StartTimeUTC": iso(c.start),
            "LastStateChangeTimeUTC": iso(c.last_update),
            "StartTime": iso(c.start),
            "LastStateChangeTime": iso(c.last_update),
            "IsInbound": "True",
            "AllowDispositions": if skill.dispositions.is_empty() || !skill.has_acw() { "False" } else { "True" },
            "FinalState": if c.phase == Phase::Closed { "True" } else { "False" },
            "ParentContactId": c.parent.map(|p| p.to_string()).unwrap_or_default(),
            "ScreenPopUrl": "",
            "Timeout": "",
            "IISHost": "sandbox-iis", "VCHost": "sandbox-vc",
        });
        if let Some(o) = ev.as_object_mut() {
            match c.media {
                CxMedia::Voice => {
                    o.insert("CallType".into(), json!("Regular"));
                    o.insert("DNIS".into(), json!("8005550100"));
                    o.insert("ANI".into(), json!(format!("801555{:04}", c.id % 10_000)));
                    o.insert("DisconnectCode".into(), json!(if c.phase == Phase::Active { "NA" } else { "Succeeded" }));
                    o.insert("IsLogging".into(), json!("False"));
                    o.insert("IsLinked".into(), json!("False"));
                }
                CxMedia::WorkItem => {
                    o.insert("WorkItemId".into(), json!(format!("WI-{}", c.id)));
                    o.insert("WorkItemPayload".into(), json!("{}"));
                    o.insert("WorkItemType".into(), json!("Callback"));
                    o.insert("AgentId".into(), json!(agent_id));
                    o.insert("RefusalTimeout".into(), json!("45"));
                }
                CxMedia::Chat => {
                    o.insert("RoomId".into(), json!(format!("R{}", c.id)));
                }
            }
        }
        ev
    }

    /// Emits the contact's current event to its agent's sessions.
    pub fn emit_contact(&mut self, cid: i64) {
        let Some(c) = self.contacts.get(&cid) else { return };
        let Some(a) = c.agent else { return };
        let ev = self.contact_event(c);
        self.emit(a, ev);
    }

    pub fn emit_agent_state(&mut self, a: usize, now: Timestamp) {
        let ev = self.agent_state_event(a, now);
        self.emit(a, ev);
    }

    // ---- dispositions ----

    /// `POST agent-sessions/{sid}/interactions/{contactId}/disposition`, after the session was resolved.
    pub fn api_disposition(
        &mut self,
        session: usize,
        sid: &str,
        contact_raw: &str,
        input: &DispositionInput,
        now: Timestamp,
    ) -> Result<(), CxError> {
        let result = self.api_disposition_inner(session, contact_raw, input, now);
        if let Ok(cid) = contact_raw.parse::<i64>() {
            if self.contacts.contains_key(&cid) && self.writes.len() < MAX_WRITES {
                let (status, reason) = match &result {
                    Ok(_) => (200, "Success".to_string()),
                    Err((e, _)) => (e.status, e.text.clone()),
                };
                let (in_window, violations) = match &result {
                    Ok(v) | Err((_, v)) => v.clone(),
                };
                self.writes.push(CxoneWrite {
                    at: iso(now),
                    contact_id: cid,
                    session_id: sid.to_string(),
                    primary_disposition_id: input.primary,
                    status,
                    reason,
                    in_window,
                    violations,
                });
            }
        }
        result.map(|_| ()).map_err(|(e, _)| e)
    }

    #[allow(clippy::type_complexity)]
    fn api_disposition_inner(
        &mut self,
        session: usize,
        contact_raw: &str,
        input: &DispositionInput,
        now: Timestamp,
    ) -> Result<(bool, Vec<String>), (CxError, (bool, Vec<String>))> {
        let none = (false, Vec::new());
        let b = self.behaviours;
        let agent = self.sessions[session].agent;
        let invalid_contact = || CxError::new(404, "Invalid contactId");
        let cid: i64 = contact_raw.parse().map_err(|_| (invalid_contact(), none.clone()))?;
        let c = self.contacts.get(&cid).ok_or((invalid_contact(), none.clone()))?;
        if c.agent != Some(agent) {
            return Err((invalid_contact(), none));
        }
        // Field validation (400s), in the documented order.
        let skill = &self.skills[c.skill];
        let primary = match input.primary {
            Some(p) if self.dispositions.contains_key(&p) => p,
            _ => return Err((CxError::new(400, "Invalid primaryDispositionId"), none)),
        };
        if !skill.dispositions.contains(&primary) && b.disposition_not_on_skill == NotOnSkill::Rejected {
            return Err((CxError::new(400, "Invalid primaryDispositionId"), none));
        }
        if input.secondary_invalid || input.secondary.is_some_and(|s| !self.dispositions.contains_key(&s)) {
            return Err((CxError::new(400, "Invalid secondaryDispositionId"), none));
        }
        if input.commitment_invalid {
            return Err((CxError::new(400, "Invalid primaryCommitmentAmount"), none));
        }
        if input.callback_time_invalid {
            return Err((CxError::new(400, "Invalid primaryCallbackTime"), none));
        }
        if input.callback_number_invalid {
            return Err((CxError::new(400, "Invalid primaryCallbackNumber"), none));
        }
        if input.preview.is_some_and(|p| p != 0) {
            return Err((CxError::new(409, "Contact must be in a preview state to set a preview disposition"), none));
        }
        // The window.
        let phase = c.phase;
        let in_window = phase == Phase::Acw;
        let mut v = Vec::new();
        if !in_window {
            let c = self.contacts[&cid].clone();
            let refused = match phase {
                Phase::Queued | Phase::Routing | Phase::Active => {
                    Some(CxError::new(409, "Contact must be disconnected before dispositioning"))
                }
                Phase::Closed if b.closed_contact == ClosedContact::Rejected => Some(invalid_contact()),
                _ => None,
            };
            let never = phase == Phase::Closed && c.acw_start.is_none();
            let closed_at = c.truth.closed_at.filter(|_| !never);
            let (master, contact) = (c.master_id.to_string(), cid.to_string());
            self.violations.outside_window(&master, &contact, now, never, refused.is_none(), closed_at);
            v.push("outside_window".to_string());
            if let Some(e) = refused {
                return Err((e, (false, v)));
            }
        }
        let c = &self.contacts[&cid];
        let existing = c.disposition.as_ref().map(|d| d.by);
        let agent_code = existing == Some(Writer::Agent);
        if agent_code {
            self.violations.overwrite_attempts += 1;
        }
        if existing.is_some() && b.second_disposition == SecondDisposition::Reject409 {
            return Err((CxError::new(409, "Skill does not allow additional disposition"), (in_window, v)));
        }
        // Accepted — and, now and then, not kept.
        let drop = self.faults.unpersisted_write_rate;
        if drop > 0.0 && self.fault_rng.gen_bool(drop.clamp(0.0, 1.0)) {
            self.api.unpersisted_writes += 1;
            return Ok((in_window, v));
        }
        let c = &self.contacts[&cid];
        let duplicate = c.truth.api_writes > 0;
        let (master, contact) = (c.master_id.to_string(), cid.to_string());
        if agent_code {
            self.violations.overwrite(&master, &contact, now);
            v.push("overwrite".into());
        }
        if duplicate {
            self.violations.duplicate_write(&master, &contact, now);
            v.push("duplicate_write".into());
        }
        let agent_id = self.agents[agent].id;
        let Some(c) = self.contacts.get_mut(&cid) else { return Err((invalid_contact(), (in_window, v))) };
        c.truth.api_writes += 1;
        if agent_code && c.truth.api_writes == 1 {
            c.truth.agent_coded_before_api = true;
        }
        c.disposition = Some(Dispo {
            primary,
            secondary: input.secondary.filter(|&s| s != 0),
            notes: input.notes.clone().unwrap_or_default(),
            by: Writer::Api,
            by_agent: Some(agent_id),
            at: now,
        });
        c.truth.coded_by = Some(CodedBy::Api);
        c.last_update = now;
        let change = if !c.truth.change_scheduled { c.plan.change_after_api } else { None };
        let finish = c.plan.finish;
        if change.is_some() {
            c.truth.change_scheduled = true;
        }
        if in_window {
            match b.disposition_ends_acw {
                DispositionEndsAcw::EndsAcw => self.close_acw(cid, now),
                DispositionEndsAcw::KeepsAcw => {
                    self.engine.schedule(add_secs(now, finish), Action::AgentFinish(cid));
                }
            }
            if let Some((delay, _)) = change {
                self.engine.schedule(add_secs(now, delay), Action::AgentChange(cid));
            }
        }
        Ok((in_window, v))
    }

    /// Ends the ACW of contact `cid` (FinalState=True) and frees its agent.
    pub fn close_acw(&mut self, cid: i64, at: Timestamp) {
        let Some(c) = self.contacts.get_mut(&cid) else { return };
        if c.phase != Phase::Acw {
            return;
        }
        c.phase = Phase::Closed;
        c.end = Some(at);
        c.last_update = at;
        c.truth.closed_at = Some(at);
        let agent = c.agent;
        self.emit_contact(cid);
        if let Some(a) = agent {
            self.release_agent(a, at);
        }
    }

    /// The agent goes Available and takes the next waiting contact of one of its skills.
    pub fn release_agent(&mut self, a: usize, at: Timestamp) {
        let ag = &mut self.agents[a];
        ag.contact = None;
        ag.state = "Available";
        ag.out_reason.clear();
        ag.is_acw = false;
        ag.acw_timeout = None;
        ag.since = at;
        ag.last_update = at;
        self.emit_agent_state(a, at);
        self.on_agent_idle(a, at);
    }

    // ---- reads ----

    pub fn leg_truth(&self, c: &Contact) -> CxoneLegTruth {
        let s = &self.skills[c.skill];
        let final_id = c.disposition.as_ref().map(|d| d.primary);
        CxoneLegTruth {
            contact_id: c.id,
            master_contact_id: c.master_id,
            parent_contact_id: c.parent,
            skill_id: s.id,
            skill_name: s.name.clone(),
            agent_id: c.agent.map(|a| self.agents[a].id),
            media: c.media,
            acw_type_id: s.acw_type.id(),
            require_disposition: s.require_disposition,
            state: match c.phase {
                Phase::Queued => "queued",
                Phase::Routing => "routing",
                Phase::Active => "active",
                Phase::Acw => "acw",
                Phase::Closed => "closed",
            }
            .into(),
            acw_started_at: c.acw_start.map(iso),
            acw_deadline: c.truth.deadline.map(iso),
            closed_at: c.truth.closed_at.map(iso),
            final_disposition_id: final_id,
            final_disposition_name: final_id.and_then(|d| self.disposition_name(d)).map(str::to_string),
            coded_by: c.truth.coded_by.unwrap_or(CodedBy::None),
            api_writes: c.truth.api_writes,
            agent_coded_before_api: c.truth.agent_coded_before_api,
            agent_changed_after_api: c.truth.agent_changed_after_api,
            true_code: c.plan.true_code,
            true_code_name: c.plan.true_code.and_then(|d| self.disposition_name(d)).map(str::to_string),
            agent_pick: c.plan.agent_pick,
            agent_pick_name: c.plan.agent_pick.and_then(|d| self.disposition_name(d)).map(str::to_string),
        }
    }

    pub fn legs(&self) -> Vec<CxoneLegTruth> {
        self.contacts.values().map(|c| self.leg_truth(c)).collect()
    }

    pub fn report(&self) -> CxoneReport {
        let mut legs = LegCounts::default();
        for c in self.contacts.values() {
            legs.count(c.phase == Phase::Closed, c.truth.coded_by);
        }
        CxoneReport {
            legs,
            violations: self.violations.report(),
            api: self.api.report(str::to_string),
            events: self.events.clone(),
        }
    }
}

/// A disposition request, read leniently from the JSON body and/or the query string (numbers or strings).
#[derive(Debug, Clone, Default)]
pub struct DispositionInput {
    pub primary: Option<i64>,
    pub secondary: Option<i64>,
    pub secondary_invalid: bool,
    pub notes: Option<String>,
    pub commitment_invalid: bool,
    pub callback_time_invalid: bool,
    pub callback_number_invalid: bool,
    pub preview: Option<i64>,
}

/// Reads an integer given as a JSON number or a numeric string; `Err` when present but not an integer.
#[allow(clippy::result_unit_err)]
pub fn lenient_int(v: Option<&Value>) -> Result<Option<i64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or(()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        _ => Err(()),
    }
}

impl DispositionInput {
    /// From the merged parameters (query first, body wins); keys are matched case-insensitively.
    pub fn from_params(p: &serde_json::Map<String, Value>) -> Self {
        let get = |k: &str| p.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v);
        let mut d =
            DispositionInput { primary: lenient_int(get("primaryDispositionId")).ok().flatten(), ..Default::default() };
        match lenient_int(get("secondaryDispositionId")) {
            Ok(s) => d.secondary = s.filter(|&s| s != 0),
            Err(()) => d.secondary_invalid = true,
        }
        d.notes = get("primaryDispositionNotes").and_then(|v| v.as_str().map(str::to_string));
        d.commitment_invalid = match get("primaryCommitmentAmount") {
            None | Some(Value::Null) | Some(Value::Number(_)) => false,
            Some(Value::String(s)) => !s.trim().is_empty() && s.trim().parse::<f64>().is_err(),
            _ => true,
        };
        d.callback_time_invalid = match get("primaryCallbackTime") {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => !s.trim().is_empty() && s.trim().parse::<Timestamp>().is_err(),
            _ => true,
        };
        d.callback_number_invalid = match get("primaryCallbackNumber") {
            None | Some(Value::Null) => false,
            Some(Value::String(s)) => {
                let s = s.trim();
                !s.is_empty() && !s.chars().all(|ch| ch.is_ascii_digit() || "+-() ".contains(ch))
            }
            Some(Value::Number(_)) => false,
            _ => true,
        };
        d.preview = lenient_int(get("previewDispositionId")).unwrap_or(Some(-1));
        d
    }
}
