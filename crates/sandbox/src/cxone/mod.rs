//! The NICE CXone emulator: a simulated business unit (BU) behind the real CXone paths, next to the Genesys org.
//!
//! Surface (see `docs/SANDBOX.md`, "NICE CXone"): OIDC discovery and `POST /auth/token` (`auth.rs`), and everything
//! under `/inContactAPI/services/v{N}.0/` (`api.rs`), matched case-insensitively with any version number, because
//! NICE's own SDK mixes `InContactAPI`/`incontactapi` and `v23.0`/`V27.0` in one session.
//!
//! State: one [`model::Bu`] behind its own `parking_lot::Mutex` in [`crate::Inner`]. It is a separate lock from the
//! Genesys `Org` because the two platforms share no state, only the clock, the fault profile and the traffic switch:
//! a CXone long poll or disposition never has to wait for a Genesys analytics query. The simulation (`sim.rs`) runs
//! on the same discrete-event engine as the Genesys one ([`crate::engine`]), so a seed and a clock determine the
//! BU. Ground truth (who coded each contact, every disposition write and what it violated) is kept on
//! the contact, next to the state the API shows.
//!
//! Time: simulated durations (talk, ACW, agent delays) run on the clock; network-ish ones (token lifetime, rate
//! window, long-poll timeout, hangs) are wall time.

pub mod api;
pub mod auth;
pub mod model;
pub mod sim;

use crate::config::Dist;
use serde::{Deserialize, Serialize};

pub use model::{Bu, CxMedia, CxoneCredentials, CxoneLegTruth, CxoneReport, CxoneWrite};

/// CXone part of the sandbox configuration (`[cxone]` in the TOML file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CxoneConfig {
    /// Whether the CXone BU runs traffic at all (its API answers either way).
    pub enabled: bool,
    /// Contacts already in ACW when the sandbox starts.
    pub preload: usize,
    /// `expires_in` of access tokens, wall seconds (CXone: 3600).
    pub token_lifetime_secs: u64,
    /// Requests per minute per access token, wall time; 0 = no limit (CXone publishes none).
    pub rate_limit_per_minute: u32,
    /// How that minute is counted: `fixed`, `sliding` or `token_bucket` (see `crate::rate_limit`).
    pub rate_limit_window: crate::rate_limit::RateWindow,
    pub behaviours: CxoneBehaviours,
    pub center: CxoneCenter,
}

impl Default for CxoneConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            preload: 0,
            token_lifetime_secs: 3600,
            rate_limit_per_minute: 0,
            rate_limit_window: crate::rate_limit::RateWindow::Fixed,
            behaviours: CxoneBehaviours::default(),
            center: CxoneCenter::default(),
        }
    }
}

/// Switches for what `platforms/nice-cxone.md` marks UNCONFIRMED. Defaults are the most likely reading; the
/// service must cope with either.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields, rename_all = "snake_case")]
pub struct CxoneBehaviours {
    /// A disposition on a contact that already has one. Default `overwrite` (the MAX UI lets agents change theirs).
    pub second_disposition: SecondDisposition,
    /// Whether a disposition POST ends ACW at once. Default `endsAcw` ("Save & Close" returns the agent to Available).
    pub disposition_ends_acw: DispositionEndsAcw,
    /// A disposition that exists but is not assigned to the contact's skill. Default `rejected` (400).
    pub disposition_not_on_skill: NotOnSkill,
    /// A disposition on a contact whose ACW is over (FinalState=True). Default `rejected` (404 `Invalid contactId`).
    pub closed_contact: ClosedContact,
    /// A pre-rotation session id on calls other than get-next-event. Default `accepted` (the portal says an old id
    /// on get-next-event returns a refresh collection, so old ids stay known).
    pub stale_session_id: StaleSessionId,
    /// `Retry-After` on 429. Default `sent`.
    pub retry_after: RetryAfter,
    /// A disposition created (`POST dispositions`) or renamed (`PUT dispositions/{id}`) with a name another
    /// disposition already has, case-insensitively. Default `allow`: the dangerous reading, where a blind retry of a
    /// create makes a second disposition of the same name.
    pub duplicate_disposition_names: DuplicateNames,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum DuplicateNames {
    #[default]
    Allow,
    /// The item fails (`POST`, per item) or the request is 400 (`PUT`): `Disposition name already exists`.
    Reject,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum SecondDisposition {
    #[default]
    Overwrite,
    /// 409 `Skill does not allow additional disposition`.
    #[serde(rename = "reject409")]
    Reject409,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum DispositionEndsAcw {
    #[default]
    EndsAcw,
    KeepsAcw,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum NotOnSkill {
    /// 400 `Invalid primaryDispositionId`.
    #[default]
    Rejected,
    Accepted,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum ClosedContact {
    /// 404 `Invalid contactId`.
    #[default]
    Rejected,
    Accepted,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum StaleSessionId {
    #[default]
    Accepted,
    /// 404 `Invalid sessionId`.
    Rejected,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub enum RetryAfter {
    #[default]
    Sent,
    Absent,
}

/// `acwTypeId` of a skill.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum AcwType {
    /// 1: no ACW; the contact closes when it disconnects.
    None,
    /// 2: ACW with dispositions; without `requireDisposition` it times out after `maxSecondsACW`.
    Disposition,
    /// 3: automatic wrap-up: a fixed ACW of `maxSecondsACW`.
    AutomaticWrapup,
}

impl AcwType {
    pub fn id(self) -> u8 {
        match self {
            AcwType::None => 1,
            AcwType::Disposition => 2,
            AcwType::AutomaticWrapup => 3,
        }
    }
}

/// One skill of the simulated BU.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SkillConfig {
    pub name: String,
    pub media: CxMedia,
    pub acw_type: AcwType,
    #[serde(default)]
    pub require_disposition: bool,
    /// `maxSecondsACW` (simulated seconds).
    #[serde(default)]
    pub max_seconds_acw: u32,
    #[serde(default)]
    pub allow_secondary_dispositions: bool,
    /// Names of the dispositions assigned to the skill (created in the catalog).
    #[serde(default)]
    pub dispositions: Vec<String>,
    /// Relative share of arrivals.
    #[serde(default = "crate::config::one")]
    pub weight: f64,
}

/// How CXone agents disposition their own contacts; each contact draws its agent's plan when it is routed.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CxoneAgentBehaviour {
    /// Probability the agent dispositions right after the disconnect.
    pub at_disconnect: f64,
    pub at_disconnect_delay: Dist,
    /// Probability the agent dispositions later in ACW (if not at disconnect).
    pub late: f64,
    pub late_delay: Dist,
    /// Probability the agent changes the disposition after an API write (only possible while ACW lasts).
    pub change_after_api: f64,
    pub change_delay: Dist,
    /// Skills without `requireDisposition`: an agent who does not disposition goes Available after this.
    pub skip_delay: Dist,
    /// Skills with `requireDisposition` (no timeout): the agent dispositions after this if nothing else did.
    pub give_in_delay: Dist,
    /// With `keepsAcw`: how long after an API disposition the agent ends ACW by going Available.
    pub finish_delay: Dist,
}

impl Default for CxoneAgentBehaviour {
    fn default() -> Self {
        Self {
            at_disconnect: 0.2,
            at_disconnect_delay: Dist::new(0.5, 3.0, 10.0),
            late: 0.15,
            late_delay: Dist::new(10.0, 30.0, 200.0),
            change_after_api: 0.03,
            change_delay: Dist::new(1.0, 5.0, 30.0),
            skip_delay: Dist::new(15.0, 45.0, 180.0),
            give_in_delay: Dist::new(60.0, 180.0, 900.0),
            finish_delay: Dist::new(2.0, 10.0, 60.0),
        }
    }
}

/// The simulated business unit.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CxoneCenter {
    pub skills: Vec<SkillConfig>,
    /// Dispositions in the catalog that no skill uses.
    pub unassigned_dispositions: Vec<String>,
    /// Dispositions the platform does not let you update (system dispositions): `PUT dispositions/{id}` answers
    /// 409 `DispositionId - '{id}' can not be updated`. The API shows nothing else different about them.
    pub system_dispositions: Vec<String>,
    pub agents: usize,
    pub skills_per_agent: usize,
    /// Contacts arriving per simulated second.
    pub arrival_rate_per_sec: f64,
    pub alert_time: Dist,
    pub talk_time: Dist,
    /// Probability a contact is transferred to another skill at the end of talk (new contactId, same master).
    pub transfer_probability: f64,
    /// Probability that an agent picks the contact's true outcome (`engine::outcome`); otherwise one of the
    /// skill's other dispositions.
    pub agent_accuracy: f64,
    pub agent: CxoneAgentBehaviour,
}

impl Default for CxoneCenter {
    fn default() -> Self {
        let s = |name: &str, media, acw_type, require: bool, max: u32, ds: &[&str], weight: f64| SkillConfig {
            name: name.into(),
            media,
            acw_type,
            require_disposition: require,
            max_seconds_acw: max,
            allow_secondary_dispositions: false,
            dispositions: ds.iter().map(|d| d.to_string()).collect(),
            weight,
        };
        // The disposition names are the Genesys center's wrap-up code names, so one rule set serves both platforms.
        Self {
            skills: vec![
                s(
                    "Sales Phone",
                    CxMedia::Voice,
                    AcwType::Disposition,
                    true,
                    120,
                    &["Sale completed", "No sale", "Follow-up required", "Wrong number"],
                    1.0,
                ),
                s(
                    "Support Phone",
                    CxMedia::Voice,
                    AcwType::Disposition,
                    false,
                    90,
                    &["Issue resolved", "Escalated", "Follow-up required", "Wrong number"],
                    1.0,
                ),
                s(
                    "Billing Chat",
                    CxMedia::Chat,
                    AcwType::Disposition,
                    true,
                    60,
                    &["Payment taken", "Refund issued", "Billing question answered"],
                    1.0,
                ),
                s(
                    "Retention Phone",
                    CxMedia::Voice,
                    AcwType::AutomaticWrapup,
                    false,
                    45,
                    &["Customer retained", "Customer cancelled", "No sale"],
                    1.0,
                ),
                s(
                    "Callback Work Items",
                    CxMedia::WorkItem,
                    AcwType::Disposition,
                    false,
                    90,
                    &["Callback completed", "No answer", "Left voicemail"],
                    1.0,
                ),
                s("Direct Line", CxMedia::Voice, AcwType::None, false, 0, &[], 0.25),
            ],
            unassigned_dispositions: vec!["Legacy - do not use".into(), "Test code".into()],
            system_dispositions: vec!["Legacy - do not use".into()],
            agents: 40,
            skills_per_agent: 2,
            arrival_rate_per_sec: 0.2,
            alert_time: Dist::new(1.0, 3.0, 15.0),
            talk_time: Dist::new(15.0, 90.0, 900.0),
            transfer_probability: 0.08,
            agent_accuracy: crate::config::DEFAULT_AGENT_ACCURACY,
            agent: CxoneAgentBehaviour::default(),
        }
    }
}
