//! The NICE CXone API client: one per connection (one business unit, one API user's access key).
//!
//! Every call takes the shared call path ([`crate::call`]): budget (dropped unsent with
//! [`ErrorClass::DeadlinePassed`] if the deadline passes first), precondition, token, send, feed back, one 401
//! refresh, classify, record. What is CXone's own:
//!
//! - **Pacing.** CXone publishes no rate-limit headers, so the budget is paced by the configured requests per
//!   minute, and a 429 pauses it: for its `Retry-After` when the platform sends one, otherwise for an exponential
//!   backoff (1 s, 2 s, 4 s … 60 s) that resets on the next success.
//! - **Token**: `POST {auth}/auth/token`, client authenticated by HTTP Basic, `grant_type=password` with the access
//!   key id/secret as username/password; when a refresh token is at hand the refresh first tries
//!   `grant_type=refresh_token` and falls back to the password grant.
//! - **API base**, discovered once: the access token is a JWT whose payload carries `tenantId` (read without a
//!   signature check — the token came straight from the auth host over TLS and is only used to find our own
//!   tenant); `GET {auth}/.well-known/cxone-configuration?tenantId=` → `api_endpoint`. An explicit `api_base` in
//!   the connection skips it. Paths are `{api}/inContactAPI/services/v{N}.0/…` with the version NICE's own agent
//!   SDK uses for each endpoint ([`versions`]). A long poll adds its wait to the attempt's time limit.
//! - **Classification** with [`super::error::classify`] (status + reason phrase + `icStatusDescription` + error
//!   body); 304 is an answer, not a failure.
//!
//! Token and discovery requests go to the auth host, which has its own limits, so they do not draw on the API
//! budget; they are still counted. Secrets (access key secret, client secret, tokens) never appear in errors,
//! `Debug` output or logs.

use crate::attempt::SharedAttemptSink;
use crate::budget::{Priority, RateLimits};
pub use crate::call::ConfigError;
use crate::call::{join, Answer, AttemptOf, Client, Platform, Request, Response, Setup};
use crate::cxone::error::{classify, rejection, Rejection};
use crate::cxone::model::*;
use crate::error::{ErrorClass, PlatformError};
use crate::http::header_str;
use crate::token::Grant;
use base64::Engine;
use parking_lot::Mutex;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::time::Instant;
use url::Url;
use wrapup_core::clock::SharedClock;
use wrapup_core::Secret;

pub use crate::call::Precondition;

/// Default pacing: CXone publishes no global limit; this stays well below the throttles that are documented.
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 300;
/// Records per page of paged listings (`top`).
pub const PAGE_SIZE: usize = 100;
/// Stop paging after this many pages whatever the platform says.
const MAX_PAGES: usize = 1000;
/// Longest `get-next-event` wait the platform accepts.
pub const MAX_LONG_POLL: Duration = Duration::from_secs(60);
/// Ceiling of the backoff after a 429 without `Retry-After`.
const MAX_429_BACKOFF: Duration = Duration::from_secs(60);

/// API versions per endpoint, as NICE's agent SDK 25.1.2 sends them (`platforms/nice-cxone.md` §13); the rest use
/// the v23.0 of the published portal contract.
pub mod versions {
    pub const SESSIONS: &str = "v23.0";
    pub const DISPOSITION: &str = "v27.0";
    pub const CONTACT_DISPOSITION: &str = "v27.0";
    pub const SKILL_DISPOSITIONS: &str = "v12.0";
    pub const REPORTING: &str = "v23.0";
    pub const ADMIN: &str = "v23.0";
    pub const REALTIME: &str = "v23.0";
}

/// Path templates: the `endpoint` of attempts and errors (low-cardinality metric labels).
pub mod endpoints {
    pub const TOKEN: &str = "/auth/token";
    pub const DISCOVERY: &str = "/.well-known/cxone-configuration";
    pub const DISPOSITIONS: &str = "/inContactAPI/services/v23.0/dispositions";
    pub const SKILLS: &str = "/inContactAPI/services/v23.0/skills";
    pub const SKILL: &str = "/inContactAPI/services/v23.0/skills/{skillId}";
    pub const SKILL_DISPOSITIONS: &str = "/inContactAPI/services/v12.0/skills/{skillId}/dispositions";
    pub const DISPOSITION_BY_ID: &str = "/inContactAPI/services/v23.0/dispositions/{dispositionId}";
    pub const CONTACT_DISPOSITION: &str = "/inContactAPI/services/v27.0/contacts/{contactId}/disposition";
    pub const CONTACTS_ACTIVE: &str = "/inContactAPI/services/v23.0/contacts/active";
    pub const AGENT_STATES: &str = "/inContactAPI/services/v23.0/agents/states";
    pub const AGENT_STATE: &str = "/inContactAPI/services/v23.0/agents/{agentId}/states";
    pub const CONTACTS_COMPLETED: &str = "/inContactAPI/services/v23.0/contacts/completed";
    pub const AGENTS: &str = "/inContactAPI/services/v23.0/agents";
    pub const CONTACT: &str = "/inContactAPI/services/v23.0/contacts/{contactId}";
    pub const CONTACT_HIERARCHY: &str = "/inContactAPI/services/v23.0/contacts/{contactId}/hierarchy";
    pub const SESSION_START: &str = "/inContactAPI/services/v23.0/agent-sessions";
    pub const SESSION_JOIN: &str = "/inContactAPI/services/v23.0/agent-sessions/join";
    pub const SESSION_END: &str = "/inContactAPI/services/v23.0/agent-sessions/{sessionId}";
    pub const NEXT_EVENT: &str = "/inContactAPI/services/v23.0/agent-sessions/{sessionId}/get-next-event";
    pub const SESSION_STATE: &str = "/inContactAPI/services/v23.0/agent-sessions/{sessionId}/state";
    pub const DISPOSITION: &str =
        "/inContactAPI/services/v27.0/agent-sessions/{sessionId}/interactions/{contactId}/disposition";
}

/// One CXone business unit as configured.
#[derive(Debug, Clone)]
pub struct CxoneConnection {
    pub name: String,
    /// Auth and discovery host, e.g. `https://cxone.niceincontact.com` (FedRAMP: `https://cxone-gov.niceincontact.com`).
    pub auth_url: Url,
    /// The API user's access key (username and password of the password grant).
    pub access_key_id: String,
    pub access_key_secret: Secret,
    /// The registered application (client authentication of the token request).
    pub client_id: String,
    pub client_secret: Secret,
    /// API origin to use instead of discovering it (a sandbox, or a pinned cluster).
    pub api_base: Option<Url>,
    pub requests_per_minute: u32,
    pub request_timeout: Duration,
}

impl CxoneConnection {
    /// A connection with the default pacing and timeout, discovering its API base.
    pub fn new(name: impl Into<String>, auth_url: Url, access_key: (String, Secret), client: (String, Secret)) -> Self {
        Self {
            name: name.into(),
            auth_url,
            access_key_id: access_key.0,
            access_key_secret: access_key.1,
            client_id: client.0,
            client_secret: client.1,
            api_base: None,
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// Where the contact-ended signal of a session long poll stands.
#[derive(Debug, Clone, PartialEq)]
pub enum NextEvent {
    /// 200: events, and the session id to use from now on (it rotates with every answer).
    Events { session_id: String, body: Vec<u8> },
    /// 304: the wait elapsed with nothing new; poll again with the same id.
    NoEvents,
    /// 409 `Session Ended`: the session is over; join again.
    SessionEnded,
}

/// `POST agent-sessions/{id}/state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentStateRequest {
    Available,
    /// `reason` is an unavailable-code *name*; `None` for the default.
    Unavailable {
        reason: Option<String>,
    },
}

/// Which completed contacts to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletedQuery {
    /// Records updated since this `lastPollTime` (at most 30 days back).
    UpdatedSince(String),
    /// Contacts that started in `[start, end)` (ISO 8601; at most 30 days).
    Range { start: String, end: String },
}

impl Response {
    /// The body as JSON: `Null` for 204, 304 and an empty body.
    fn json(&self, endpoint: &'static str) -> Result<Value, PlatformError> {
        if self.status == 204 || self.status == 304 || self.is_blank() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| PlatformError {
            class: ErrorClass::Permanent,
            status: Some(self.status),
            code: Some("undecodable.response".into()),
            message: format!("the response body could not be decoded: {e}"),
            correlation_id: None,
            endpoint,
        })
    }
}

/// Where a CXone request goes: `{api}/inContactAPI/services/{version}/{path…}?{query}`, built at send time under
/// the discovered API base.
pub(crate) struct Target {
    version: &'static str,
    path: Vec<String>,
    query: Vec<(&'static str, String)>,
}

fn request<'a>(
    method: Method,
    endpoint: &'static str,
    version: &'static str,
    path: &[&str],
    priority: Priority,
) -> Request<'a, Target> {
    let target = Target { version, path: path.iter().map(|s| s.to_string()).collect(), query: Vec::new() };
    Request::new(method, endpoint, target, priority)
}

impl Request<'_, Target> {
    fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.target.query.push((name, value.into()));
        self
    }

    /// Names the contact the call is about, so its attempts land in that leg's ledger.
    fn for_contact(self, contact_id: i64) -> Self {
        self.for_leg(None, Some(&contact_id.to_string()))
    }
}

/// The CXone client of one connection. Cheap to clone; clones share budget, token and stats.
pub type CxoneClient = Client<Cxone>;

/// What the CXone client holds besides the shared call path: its hosts, keys, discovered tenant and API base, and
/// its memory of 429s.
pub struct Cxone {
    auth_url: Url,
    explicit_api_base: Option<Url>,
    access_key_id: String,
    access_key_secret: Secret,
    client_id: String,
    client_secret: Secret,
    /// The refresh token of the current grant, tried before the password grant.
    refresh_token: Mutex<Option<Secret>>,
    /// `tenantId` of the current access token.
    tenant_id: Mutex<Option<String>>,
    /// Discovered API base (single flight: the lock is held across discovery).
    api_base: tokio::sync::Mutex<Option<Url>>,
    /// 429s without `Retry-After` in a row, for the exponential pause.
    consecutive_429: AtomicU32,
    /// When the last pause for a 429 without `Retry-After` was set: a 429 to a request sent before it is the same
    /// throttling answering requests already in flight, not a reason to double the pause again.
    last_429_pause: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for CxoneClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CxoneClient")
            .field("connection", &self.name())
            .field("auth_url", &self.platform().auth_url.as_str())
            .finish()
    }
}

/// Decodes the `tenantId` claim of a JWT's payload. No signature check: see the module docs.
pub fn tenant_id_from_jwt(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    if payload.len() > 64 * 1024 {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let tenant = claims.get("tenantId")?.as_str()?.trim();
    (!tenant.is_empty() && tenant.len() <= 128).then(|| tenant.to_string())
}

impl CxoneClient {
    /// Builds the client. `clock` stamps attempts and bounds deadlines; `sink` receives every attempt.
    pub fn new(conn: CxoneConnection, clock: SharedClock, sink: SharedAttemptSink) -> Result<Self, ConfigError> {
        let mut urls = vec![("auth", conn.auth_url.clone())];
        urls.extend(conn.api_base.iter().map(|u| ("api", u.clone())));
        let setup = Setup {
            name: conn.name,
            urls,
            credentials: 1,
            requests_per_minute: conn.requests_per_minute,
            request_timeout: conn.request_timeout,
            clock,
            sink,
        };
        let platform = Cxone {
            auth_url: conn.auth_url,
            explicit_api_base: conn.api_base,
            access_key_id: conn.access_key_id,
            access_key_secret: conn.access_key_secret,
            client_id: conn.client_id,
            client_secret: conn.client_secret,
            refresh_token: Mutex::new(None),
            tenant_id: Mutex::new(None),
            api_base: tokio::sync::Mutex::new(None),
            consecutive_429: AtomicU32::new(0),
            last_429_pause: Mutex::new(None),
        };
        Client::build(setup, platform)
    }

    /// The tenant of the current token, once a token has been fetched.
    pub fn tenant_id(&self) -> Option<String> {
        self.platform().tenant_id.lock().clone()
    }

    /// The API origin calls go to (discovering it, and fetching a token for that, if needed).
    pub async fn api_base(&self) -> Result<Url, PlatformError> {
        let token = self.token(0).await?;
        self.resolve_api_base(&token).await
    }

    // ----- catalog ------------------------------------------------------------------------------------------------

    /// Every disposition of the business unit (all pages of `GET dispositions`).
    pub async fn list_dispositions(&self, priority: Priority) -> Result<Vec<Disposition>, PlatformError> {
        self.list_paged(endpoints::DISPOSITIONS, versions::ADMIN, &["dispositions"], priority, Disposition::from_value)
            .await
    }

    /// One skill with its ACW settings (`GET skills/{skillId}`).
    pub async fn get_skill(&self, skill_id: i64, priority: Priority) -> Result<Skill, PlatformError> {
        let endpoint = endpoints::SKILL;
        let id = skill_id.to_string();
        let call = request(Method::GET, endpoint, versions::ADMIN, &["skills", &id], priority);
        let body = self.execute(&call).await?.json(endpoint)?;
        Skill::from_value(result_set(&body).map(|o| Value::Object(o.clone())).as_ref().unwrap_or(&body))
            .ok_or_else(|| undecodable(endpoint, "the skill record has no skillId"))
    }

    /// Every skill (all pages of `GET skills`).
    pub async fn list_skills(&self, priority: Priority) -> Result<Vec<Skill>, PlatformError> {
        self.list_paged(endpoints::SKILLS, versions::ADMIN, &["skills"], priority, Skill::from_value).await
    }

    /// The dispositions assigned to a skill (`GET skills/{skillId}/dispositions`; 204 → none).
    pub async fn skill_dispositions(
        &self,
        skill_id: i64,
        priority: Priority,
    ) -> Result<Vec<Disposition>, PlatformError> {
        let id = skill_id.to_string();
        let path = ["skills", &id, "dispositions"];
        let version = versions::SKILL_DISPOSITIONS;
        self.list_paged(endpoints::SKILL_DISPOSITIONS, version, &path, priority, Disposition::from_value).await
    }

    /// The dispositions whose name contains `text` (`GET dispositions?searchString=`, every page): a lookup by name
    /// without listing the whole catalog.
    pub async fn search_dispositions(&self, text: &str, priority: Priority) -> Result<Vec<Disposition>, PlatformError> {
        let query = [("searchString", text.to_string())];
        let read_page = |b: &Value| listing(b, &["dispositions"], Disposition::from_value);
        let path = ["dispositions"];
        Ok(self.poll_paged(endpoints::DISPOSITIONS, versions::ADMIN, &path, &query, priority, read_page).await?.records)
    }

    /// One disposition (`GET dispositions/{dispositionId}`); `None` on 404.
    pub async fn get_disposition(&self, id: i64, priority: Priority) -> Result<Option<Disposition>, PlatformError> {
        let endpoint = endpoints::DISPOSITION_BY_ID;
        let id = id.to_string();
        let call = request(Method::GET, endpoint, versions::ADMIN, &["dispositions", &id], priority);
        let body = match self.execute(&call).await {
            Ok(resp) => resp.json(endpoint)?,
            Err(e) if e.status == Some(404) => return Ok(None),
            Err(e) => return Err(e),
        };
        let record = body.get("dispositions").and_then(|d| d.get(0)).unwrap_or(&body);
        Ok(Disposition::from_value(record))
    }

    /// Creates dispositions (`POST dispositions` with `{"dispositions": [...]}`). The platform answers per item
    /// (200, or 206 when some failed): for each item in order, its new id or the platform's error.
    pub async fn create_dispositions(
        &self,
        items: &[Value],
        priority: Priority,
    ) -> Result<Vec<Result<i64, String>>, PlatformError> {
        let endpoint = endpoints::DISPOSITIONS;
        let call = request(Method::POST, endpoint, versions::ADMIN, &["dispositions"], priority)
            .json(&json!({ "dispositions": items }))?;
        let body = self.execute(&call).await?.json(endpoint)?;
        let results = body.get("dispositionResults").and_then(Value::as_array).cloned().unwrap_or_default();
        if results.len() != items.len() {
            return Err(undecodable(endpoint, "the answer does not have one result per disposition"));
        }
        Ok(results
            .iter()
            .map(|r| {
                let id = r.get("dispositionId").and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok()));
                match (r.get("success").and_then(Value::as_bool), id) {
                    (Some(true), Some(id)) if id > 0 => Ok(id),
                    _ => Err(r.get("error").and_then(Value::as_str).unwrap_or("not created").to_string()),
                }
            })
            .collect())
    }

    /// Replaces a disposition's fields (`PUT dispositions/{dispositionId}` with a JSON body).
    pub async fn update_disposition(&self, id: i64, body: &Value, priority: Priority) -> Result<(), PlatformError> {
        let endpoint = endpoints::DISPOSITION_BY_ID;
        let id = id.to_string();
        let call = request(Method::PUT, endpoint, versions::ADMIN, &["dispositions", &id], priority).json(body)?;
        self.execute(&call).await.map(|_| ())
    }

    /// Updates a skill (`PUT skills/{skillId}` with `{"skill": {...}}`): its `dispositions` array, when sent,
    /// replaces the skill's assignment.
    pub async fn update_skill(&self, skill_id: i64, skill: &Value, priority: Priority) -> Result<(), PlatformError> {
        let endpoint = endpoints::SKILL;
        let id = skill_id.to_string();
        let call = request(Method::PUT, endpoint, versions::ADMIN, &["skills", &id], priority)
            .json(&json!({ "skill": skill }))?;
        let resp = self.execute(&call).await?;
        if resp.is_blank() {
            return Ok(());
        }
        let body = resp.json(endpoint)?;
        match body.get("success").and_then(Value::as_bool) {
            Some(false) => Err(PlatformError {
                class: ErrorClass::Permanent,
                status: Some(200),
                code: None,
                message: body.get("error").and_then(Value::as_str).unwrap_or("the skill was not updated").to_string(),
                correlation_id: None,
                endpoint,
            }),
            _ => Ok(()),
        }
    }

    /// The catalog: every disposition, every skill with the ids assigned to it and its ACW settings.
    /// Costs 2 + (active skills) calls (more with paging), made concurrently; the service caches it.
    pub async fn catalog(&self, priority: Priority) -> Result<wrapup_core::catalog::Catalog, PlatformError> {
        let (dispositions, skills) = tokio::try_join!(self.list_dispositions(priority), self.list_skills(priority))?;
        let skills: Vec<Skill> = skills.into_iter().filter(|s| s.is_active != Some(false)).collect();
        let assigned =
            futures::future::try_join_all(skills.iter().map(|s| self.skill_dispositions(s.id, priority))).await?;
        Ok(build_catalog(dispositions, skills.into_iter().zip(assigned)))
    }

    // ----- contacts -----------------------------------------------------------------------------------------------

    /// The gate read: the disposition recorded on a contact (`GET contacts/{contactId}/disposition`). `None` when
    /// there is none: 204, a body without a (non-zero) `dispositionId`, or a 404 that is about the disposition
    /// rather than the contact (the status codes are unconfirmed; `Invalid contactId` stays an error).
    pub async fn get_contact_disposition(
        &self,
        contact_id: i64,
        priority: Priority,
    ) -> Result<Option<ContactDisposition>, PlatformError> {
        let endpoint = endpoints::CONTACT_DISPOSITION;
        let id = contact_id.to_string();
        let call =
            request(Method::GET, endpoint, versions::CONTACT_DISPOSITION, &["contacts", &id, "disposition"], priority)
                .for_contact(contact_id);
        match self.execute(&call).await {
            Ok(resp) => Ok(ContactDisposition::from_value(&resp.json(endpoint)?)),
            Err(e) if e.status == Some(404) && rejection(&e) != Some(Rejection::ContactGone) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Active contacts changed since `updated_since` (`GET contacts/active`; 204 → none). Pass the returned
    /// `last_poll_time` next time.
    pub async fn contacts_active(
        &self,
        updated_since: Option<&str>,
        priority: Priority,
    ) -> Result<Polled<ContactRecord>, PlatformError> {
        let query: Vec<(&'static str, String)> =
            updated_since.map(|s| vec![("updatedSince", s.to_string())]).unwrap_or_default();
        self.poll_paged(
            endpoints::CONTACTS_ACTIVE,
            versions::REALTIME,
            &["contacts", "active"],
            &query,
            priority,
            |b| listing(b, &["activeContacts"], ContactRecord::from_value),
        )
        .await
    }

    /// Agent states changed since `updated_since` (`GET agents/states`).
    pub async fn agent_states(
        &self,
        updated_since: Option<&str>,
        priority: Priority,
    ) -> Result<Polled<AgentStateRecord>, PlatformError> {
        let query: Vec<(&'static str, String)> =
            updated_since.map(|s| vec![("updatedSince", s.to_string())]).unwrap_or_default();
        self.poll_paged(endpoints::AGENT_STATES, versions::REALTIME, &["agents", "states"], &query, priority, |b| {
            listing(b, &["agentStates"], AgentStateRecord::from_value)
        })
        .await
    }

    /// One agent's current state (`GET agents/{agentId}/states`): whether the agent is in ACW, and on which
    /// contact. `None` when the platform reports no state for the agent (204, or an empty list).
    pub async fn agent_state(
        &self,
        agent_id: i64,
        priority: Priority,
    ) -> Result<Option<AgentStateRecord>, PlatformError> {
        let endpoint = endpoints::AGENT_STATE;
        let id = agent_id.to_string();
        let call = request(Method::GET, endpoint, versions::REALTIME, &["agents", &id, "states"], priority);
        let body = self.execute(&call).await?.json(endpoint)?;
        Ok(listing(&body, &["agentStates"], AgentStateRecord::from_value)
            .records
            .into_iter()
            .find(|r| r.agent_id == agent_id))
    }

    /// Completed contacts (`GET contacts/completed`, all pages, oldest update first; 204 → none).
    pub async fn contacts_completed(
        &self,
        query: &CompletedQuery,
        priority: Priority,
    ) -> Result<Polled<ContactRecord>, PlatformError> {
        let mut q: Vec<(&'static str, String)> = match query {
            CompletedQuery::UpdatedSince(s) => vec![("updatedSince", s.clone())],
            CompletedQuery::Range { start, end } => vec![("startDate", start.clone()), ("endDate", end.clone())],
        };
        q.push(("orderBy", "lastUpdateTime asc".into()));
        self.poll_paged(
            endpoints::CONTACTS_COMPLETED,
            versions::REPORTING,
            &["contacts", "completed"],
            &q,
            priority,
            |b| listing(b, &["completedContacts"], ContactRecord::from_value),
        )
        .await
    }

    /// Every agent (all pages of `GET agents`).
    pub async fn list_agents(&self, priority: Priority) -> Result<Vec<Agent>, PlatformError> {
        self.list_paged(endpoints::AGENTS, versions::ADMIN, &["agents"], priority, Agent::from_value).await
    }

    /// One contact, active or completed (`GET contacts/{contactId}`; 204 → `None`).
    pub async fn get_contact(
        &self,
        contact_id: i64,
        priority: Priority,
    ) -> Result<Option<ContactRecord>, PlatformError> {
        let endpoint = endpoints::CONTACT;
        let id = contact_id.to_string();
        let call =
            request(Method::GET, endpoint, versions::REPORTING, &["contacts", &id], priority).for_contact(contact_id);
        let body = self.execute(&call).await?.json(endpoint)?;
        let Some(o) = result_set(&body) else { return Ok(None) };
        let list = listing(&body, &["activeContacts", "completedContacts", "contacts"], ContactRecord::from_value);
        Ok(list.records.into_iter().next().or_else(|| ContactRecord::from_value(&Value::Object(o.clone()))))
    }

    /// The master contact and children of a contact (`GET contacts/{contactId}/hierarchy`).
    pub async fn contact_hierarchy(&self, contact_id: i64, priority: Priority) -> Result<Hierarchy, PlatformError> {
        let endpoint = endpoints::CONTACT_HIERARCHY;
        let id = contact_id.to_string();
        let call = request(Method::GET, endpoint, versions::REPORTING, &["contacts", &id, "hierarchy"], priority)
            .for_contact(contact_id);
        let body = self.execute(&call).await?.json(endpoint)?;
        Hierarchy::from_value(&body).ok_or_else(|| undecodable(endpoint, "the hierarchy has no masterContactId"))
    }

    // ----- agent sessions -----------------------------------------------------------------------------------------

    /// Joins the running session of an agent (`POST agent-sessions/join` with `asAgentId`; needs Impersonate
    /// Agent). Returns the new session id. [`Rejection::AgentNotLoggedIn`] when the agent has no session.
    pub async fn join_session(&self, agent_id: i64, priority: Priority) -> Result<String, PlatformError> {
        let endpoint = endpoints::SESSION_JOIN;
        let call = request(Method::POST, endpoint, versions::SESSIONS, &["agent-sessions", "join"], priority)
            .json(&json!({ "asAgentId": agent_id }))?;
        session_id_of(endpoint, &self.execute(&call).await?)
    }

    /// Starts a session (`POST agent-sessions`), for `as_agent_id` when given (impersonation) on a station id.
    /// [`Rejection::SessionAlreadyStarted`] when one runs: join it instead.
    pub async fn start_session(
        &self,
        as_agent_id: Option<i64>,
        station_id: Option<&str>,
        priority: Priority,
    ) -> Result<String, PlatformError> {
        let endpoint = endpoints::SESSION_START;
        let mut body = json!({ "inactivityTimeout": 300, "inactivityForceLogout": false });
        if let Some(a) = as_agent_id {
            body["asAgentId"] = json!(a);
        }
        if let Some(s) = station_id {
            body["stationId"] = json!(s);
        }
        let call = request(Method::POST, endpoint, versions::SESSIONS, &["agent-sessions"], priority).json(&body)?;
        session_id_of(endpoint, &self.execute(&call).await?)
    }

    /// Ends a session (`DELETE agent-sessions/{sessionId}`; the options go both as query, as the swagger lists them,
    /// and as a JSON body, as the SDK sends them). Never force-logs the agent off or ends their contacts. The session
    /// cache never calls this: ending a joined session is the operator's decision.
    pub async fn end_session(&self, session_id: &str, priority: Priority) -> Result<(), PlatformError> {
        let endpoint = endpoints::SESSION_END;
        let call = request(Method::DELETE, endpoint, versions::SESSIONS, &["agent-sessions", session_id], priority)
            .query("forceLogoff", "false")
            .query("endContacts", "false")
            .query("ignorePersonalQueue", "false")
            .json(&json!({"forceLogoff": false, "endContacts": false, "ignorePersonalQueue": false}))?;
        self.execute(&call).await.map(|_| ())
    }

    /// Long-polls a session (`GET agent-sessions/{sessionId}/get-next-event?timeout=`, at most 60 s).
    pub async fn get_next_event(
        &self,
        session_id: &str,
        timeout: Duration,
        priority: Priority,
    ) -> Result<NextEvent, PlatformError> {
        let endpoint = endpoints::NEXT_EVENT;
        let wait = timeout.min(MAX_LONG_POLL);
        let mut call = request(
            Method::GET,
            endpoint,
            versions::SESSIONS,
            &["agent-sessions", session_id, "get-next-event"],
            priority,
        )
        .query("timeout", wait.as_secs().to_string());
        call.extra_timeout = wait;
        match self.execute(&call).await {
            Ok(resp) if resp.status == 304 || resp.status == 204 => Ok(NextEvent::NoEvents),
            Ok(resp) => {
                // The new id is read here so a body the event parser rejects still does not lose the rotation.
                let value = resp.json(endpoint)?;
                let session_id = value
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|s| !s.is_empty() && s.len() <= 512)
                    .unwrap_or(session_id)
                    .to_string();
                Ok(NextEvent::Events { session_id, body: resp.body })
            }
            Err(e) if e.status == Some(409) => Ok(NextEvent::SessionEnded),
            Err(e) => Err(e),
        }
    }

    /// Sets the agent's state through a session (`POST agent-sessions/{sessionId}/state`, 202). During a contact or
    /// ACW this sets the agent's *next* state.
    pub async fn set_agent_state(
        &self,
        session_id: &str,
        state: &AgentStateRequest,
        priority: Priority,
    ) -> Result<(), PlatformError> {
        let endpoint = endpoints::SESSION_STATE;
        let body = match state {
            AgentStateRequest::Available => json!({"state": "Available"}),
            AgentStateRequest::Unavailable { reason } => {
                json!({"state": "Unavailable", "reason": reason.clone().unwrap_or_default()})
            }
        };
        let call =
            request(Method::POST, endpoint, versions::SESSIONS, &["agent-sessions", session_id, "state"], priority)
                .json(&body)?;
        self.execute(&call).await.map(|_| ())
    }

    /// Dispositions a contact through an agent session
    /// (`POST agent-sessions/{sessionId}/interactions/{contactId}/disposition`, 200 = applied), sent only if
    /// `precondition` still holds once the request holds its budget permit. Read failures with [`rejection`]:
    /// [`Rejection::AlreadyDispositioned`], [`Rejection::InvalidDisposition`], [`Rejection::NotDisconnected`],
    /// [`Rejection::ContactGone`], [`Rejection::SessionGone`].
    #[allow(clippy::too_many_arguments)]
    pub async fn post_disposition_if(
        &self,
        session_id: &str,
        contact_id: i64,
        disposition_id: i64,
        notes: Option<&str>,
        priority: Priority,
        precondition: Option<&dyn Precondition>,
    ) -> Result<(), PlatformError> {
        let endpoint = endpoints::DISPOSITION;
        let cid = contact_id.to_string();
        let mut body = json!({ "primaryDispositionId": disposition_id });
        if let Some(n) = notes.filter(|n| !n.is_empty()) {
            body["primaryDispositionNotes"] = json!(n);
        }
        let mut call = request(
            Method::POST,
            endpoint,
            versions::DISPOSITION,
            &["agent-sessions", session_id, "interactions", &cid, "disposition"],
            priority,
        )
        .json(&body)?
        .for_contact(contact_id);
        call.precondition = precondition;
        self.execute(&call).await.map(|_| ())
    }

    // ----- request path -------------------------------------------------------------------------------------------

    /// `skip`/`top` paging until a short page (or `totalRecords`, or `MAX_PAGES`).
    /// Every record of a listing: the elements `read` accepts of the array named like the resource (the last path
    /// element: `skills` lists `skills`).
    async fn list_paged<T>(
        &self,
        endpoint: &'static str,
        version: &'static str,
        path: &[&str],
        priority: Priority,
        read: fn(&Value) -> Option<T>,
    ) -> Result<Vec<T>, PlatformError> {
        let list_name = path.last().copied().unwrap_or_default();
        let read_page = |b: &Value| listing(b, &[list_name], read);
        Ok(self.poll_paged(endpoint, version, path, &[], priority, read_page).await?.records)
    }

    async fn poll_paged<T>(
        &self,
        endpoint: &'static str,
        version: &'static str,
        path: &[&str],
        query: &[(&'static str, String)],
        priority: Priority,
        read: impl Fn(&Value) -> Polled<T>,
    ) -> Result<Polled<T>, PlatformError> {
        let mut out = Polled::default();
        for page in 0..MAX_PAGES {
            let mut call = request(Method::GET, endpoint, version, path, priority);
            call.target.query = query.to_vec();
            call = call.query("skip", (page * PAGE_SIZE).to_string()).query("top", PAGE_SIZE.to_string());
            out.requests += 1;
            let resp = self.execute(&call).await?;
            let body = resp.json(endpoint)?;
            // Raw element count, so unreadable records do not end paging early.
            let raw = result_set(&body)
                .map_or(0, |o| o.values().filter_map(Value::as_array).map(Vec::len).max().unwrap_or(0));
            let total = total_records(&body);
            let polled = read(&body);
            if out.last_poll_time.is_none() {
                out.last_poll_time = polled.last_poll_time;
            }
            out.records.extend(polled.records);
            let seen = (page + 1) * PAGE_SIZE;
            if raw < PAGE_SIZE || total.is_some_and(|t| t <= seen as i64) {
                break;
            }
        }
        Ok(out)
    }

    /// `{api}/inContactAPI/services/{version}/{path…}?{query}`; each path element is one encoded segment.
    fn url(&self, base: &Url, call: &Request<'_, Target>) -> Result<Url, PlatformError> {
        let target = &call.target;
        let mut segments = vec!["inContactAPI", "services", target.version];
        segments.extend(target.path.iter().map(String::as_str));
        let mut url = join(call.endpoint, base, &segments)?;
        if !target.query.is_empty() {
            url.query_pairs_mut().extend_pairs(target.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    /// The API base: the configured one, or the discovered one (single flight, cached).
    async fn resolve_api_base(&self, token: &Secret) -> Result<Url, PlatformError> {
        if let Some(b) = &self.platform().explicit_api_base {
            return Ok(b.clone());
        }
        let mut slot = self.platform().api_base.lock().await;
        if let Some(b) = slot.as_ref() {
            return Ok(b.clone());
        }
        let tenant = tenant_id_from_jwt(token.expose()).or_else(|| self.tenant_id()).ok_or_else(|| {
            PlatformError::transport(ErrorClass::Auth, endpoints::DISCOVERY, "the access token carries no tenantId")
        })?;
        let base = self.discover(&tenant).await?;
        *slot = Some(base.clone());
        Ok(base)
    }

    /// `GET {auth}/.well-known/cxone-configuration?tenantId=` → `api_endpoint`.
    async fn discover(&self, tenant: &str) -> Result<Url, PlatformError> {
        let endpoint = endpoints::DISCOVERY;
        let mut url = self.platform().auth_url.clone();
        url.set_path("/.well-known/cxone-configuration");
        url.query_pairs_mut().clear().append_pair("tenantId", tenant);
        let req = self.http().get(url).header(ACCEPT, "application/json");
        self.exchange(req, AttemptOf::auth_host(endpoint, "GET", false), None, |answer| {
            if !(200..300).contains(&answer.status) {
                return Err(Cxone::classify(endpoint, &answer));
            }
            serde_json::from_slice::<Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("api_endpoint").and_then(Value::as_str).map(str::to_string))
                .and_then(|s| Url::parse(s.trim()).ok())
                .filter(|u| matches!(u.scheme(), "https" | "http") && !u.cannot_be_a_base())
                .ok_or_else(|| undecodable(endpoint, "the configuration has no usable api_endpoint"))
        })
        .await
    }

    /// A token: the refresh grant when a refresh token is at hand (falling back to the password grant if it is
    /// refused), otherwise the password grant.
    async fn fetch_token(&self) -> Result<Grant, PlatformError> {
        let refresh = self.platform().refresh_token.lock().take();
        if let Some(rt) = refresh {
            match self.token_request(Some(&rt)).await {
                Ok(g) => return Ok(g),
                Err(e) if e.class.is_retryable() => return Err(e),
                Err(_) => {} // refused refresh token: log in again with the access key
            }
        }
        self.token_request(None).await
    }

    /// `POST {auth}/auth/token`, client authenticated by Basic, form-encoded grant.
    async fn token_request(&self, refresh: Option<&Secret>) -> Result<Grant, PlatformError> {
        let endpoint = endpoints::TOKEN;
        let platform = self.platform();
        let mut url = platform.auth_url.clone();
        url.set_path("/auth/token");
        url.set_query(None);
        let form = match refresh {
            Some(rt) => url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", rt.expose())
                .append_pair("client_id", &platform.client_id)
                .finish(),
            None => url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "password")
                .append_pair("username", &platform.access_key_id)
                .append_pair("password", platform.access_key_secret.expose())
                .finish(),
        };
        let req = self
            .http()
            .post(url)
            .basic_auth(&platform.client_id, Some(platform.client_secret.expose()))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form);
        let result = self
            .exchange(req, AttemptOf::auth_host(endpoint, "POST", true), None, |answer| {
                if (200..300).contains(&answer.status) {
                    return self.accept_grant(endpoint, answer.status, &answer.body);
                }
                // The auth host's refusals carry no `icStatusDescription` worth reading.
                let retry_after = header_str(&answer.headers, "retry-after");
                let mut e =
                    classify(endpoint, answer.status, answer.reason.as_deref(), None, retry_after, &answer.body);
                // A refused token request is an authentication problem, whatever its status.
                if matches!(e.class, ErrorClass::Permanent | ErrorClass::Forbidden { .. } | ErrorClass::Conflict) {
                    e.class = ErrorClass::Auth;
                }
                Err(e)
            })
            .await;
        if let Err(e) = &result {
            tracing::warn!(connection = self.name(), error = %e, "A CXone token request failed.");
        }
        result
    }

    fn accept_grant(&self, endpoint: &'static str, status: u16, body: &[u8]) -> Result<Grant, PlatformError> {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
        let Some(access) = text("access_token") else {
            return Err(PlatformError {
                class: ErrorClass::Auth,
                status: Some(status),
                code: None,
                message: "the token response has no access_token".into(),
                correlation_id: None,
                endpoint,
            });
        };
        let tenant = tenant_id_from_jwt(access).or_else(|| text("id_token").and_then(tenant_id_from_jwt));
        if tenant.is_some() {
            *self.platform().tenant_id.lock() = tenant;
        }
        *self.platform().refresh_token.lock() = text("refresh_token").map(Secret::new);
        // CXone tokens live 3600 s; be conservative when the field is missing or odd.
        let expires_in =
            v.get("expires_in").and_then(|e| e.as_u64().or_else(|| e.as_str()?.parse().ok())).unwrap_or(600);
        Ok(Grant { access_token: Secret::new(access), expires_in: Duration::from_secs(expires_in.clamp(1, 86_400)) })
    }
}

impl Platform for Cxone {
    type Target = Target;

    /// 304 is the long poll's "nothing new".
    fn is_success(status: u16) -> bool {
        (200..300).contains(&status) || status == 304
    }

    fn correlation_id(_: &HeaderMap) -> Option<String> {
        None
    }

    /// CXone sends no rate-limit headers: the budget hears only that the request was answered.
    fn rate_limits(_: &HeaderMap) -> RateLimits {
        RateLimits::default()
    }

    fn classify(endpoint: &'static str, answer: &Answer) -> PlatformError {
        let headers = &answer.headers;
        let (ic_status, retry_after) = (header_str(headers, "icStatusDescription"), header_str(headers, "retry-after"));
        classify(endpoint, answer.status, answer.reason.as_deref(), ic_status, retry_after, &answer.body)
    }

    async fn fetch_token(client: &CxoneClient, _: usize) -> Result<Grant, PlatformError> {
        client.fetch_token().await
    }

    async fn url(client: &CxoneClient, token: &Secret, request: &Request<'_, Target>) -> Result<Url, PlatformError> {
        let base = client.resolve_api_base(token).await?;
        client.url(&base, request)
    }

    /// Its `Retry-After`, or 1 s doubling per 429 in a row (at most 60 s). `None` when a request sent before the last
    /// such pause was set is answered 429: that pause already covers it (requests in flight when the platform
    /// started throttling all come back 429 at once, and counting each would turn one throttled second into a
    /// minute's stall).
    fn rate_limit_pause(&self, retry_after: Option<Duration>, _: RateLimits, sent_at: Instant) -> Option<Duration> {
        if let Some(ra) = retry_after {
            return Some(ra);
        }
        let mut last = self.last_429_pause.lock();
        if last.is_some_and(|at| sent_at < at) {
            return None;
        }
        *last = Some(Instant::now());
        let n = self.consecutive_429.fetch_add(1, Ordering::Relaxed).min(6);
        Some(Duration::from_secs(1u64 << n).min(MAX_429_BACKOFF))
    }

    fn succeeded(&self) {
        self.consecutive_429.store(0, Ordering::Relaxed);
    }
}

fn undecodable(endpoint: &'static str, what: &str) -> PlatformError {
    PlatformError {
        class: ErrorClass::Permanent,
        status: None,
        code: Some("undecodable.response".into()),
        message: what.to_string(),
        correlation_id: None,
        endpoint,
    }
}

fn session_id_of(endpoint: &'static str, resp: &Response) -> Result<String, PlatformError> {
    resp.json(endpoint)?
        .get("sessionId")
        .and_then(|s| s.as_str().map(str::to_string).or_else(|| s.as_i64().map(|i| i.to_string())))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty() && s.len() <= 512)
        .ok_or_else(|| undecodable(endpoint, "the answer has no sessionId"))
}

/// The catalog from what [`CxoneClient::catalog`] reads: active dispositions by id and name, and each skill with
/// the dispositions assigned to it and its ACW settings (inactive skills are left out by the caller).
pub fn build_catalog(
    dispositions: Vec<Disposition>,
    skills: impl IntoIterator<Item = (Skill, Vec<Disposition>)>,
) -> wrapup_core::catalog::Catalog {
    use wrapup_core::catalog::{Catalog, CodeEntry, QueueEntry};
    let codes = dispositions
        .into_iter()
        .filter(|d| d.is_active != Some(false))
        .map(|d| CodeEntry { id: d.id.to_string(), name: d.name })
        .collect();
    let queues = skills
        .into_iter()
        .map(|(skill, assigned)| QueueEntry {
            id: skill.id.to_string(),
            name: skill.name.clone(),
            code_ids: assigned.into_iter().map(|d| d.id.to_string()).collect(),
            acw_timeout_ms: skill.acw_timeout_ms(),
            acw: skill.acw_policy(),
            acw_mode: skill.acw_mode(),
        })
        .collect();
    Catalog { codes, queues }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", e(r#"{"alg":"RS256"}"#), e(payload))
    }

    #[test]
    fn the_tenant_is_read_from_the_token_payload() {
        let t = jwt(r#"{"tenantId":"11eb660f-aaaa","icBUId":4600,"exp":1}"#);
        assert_eq!(tenant_id_from_jwt(&t).as_deref(), Some("11eb660f-aaaa"));
        // Padded payloads are tolerated.
        let padded = format!("h.{}=.s", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"tenantId":"t"}"#));
        assert_eq!(tenant_id_from_jwt(&padded).as_deref(), Some("t"));
    }

    #[test]
    fn tokens_without_a_tenant_yield_none() {
        assert_eq!(tenant_id_from_jwt(&jwt(r#"{"sub":"user:1"}"#)), None);
        assert_eq!(tenant_id_from_jwt(&jwt(r#"{"tenantId":""}"#)), None);
        assert_eq!(tenant_id_from_jwt(&jwt(r#"{"tenantId":5}"#)), None);
        assert_eq!(tenant_id_from_jwt("opaque-token"), None);
        assert_eq!(tenant_id_from_jwt("a.!!!.c"), None);
        assert_eq!(tenant_id_from_jwt(&jwt("not json")), None);
    }

    #[test]
    fn debug_output_carries_no_secret() {
        let conn = CxoneConnection::new(
            "bu",
            Url::parse("https://cxone.example").unwrap(),
            ("KEYID".into(), Secret::new("KEYSECRET====")),
            ("app".into(), Secret::new("APPSECRET")),
        );
        let dbg = format!("{conn:?}");
        assert!(!dbg.contains("KEYSECRET") && !dbg.contains("APPSECRET"), "{dbg}");
        let client =
            CxoneClient::new(conn, wrapup_clock::ScaledClock::system().shared(), crate::attempt::discard_attempts());
        let dbg = format!("{:?}", client.unwrap());
        assert!(!dbg.contains("SECRET"), "{dbg}");
    }
}
