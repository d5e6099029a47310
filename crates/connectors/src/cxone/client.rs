//! The NICE CXone API client: one per connection (one business unit, one API user's access key).
//!
//! Every call takes the same path as the Genesys client's:
//!
//! 1. **Budget.** Wait for a permit from the connection's [`Budget`] at the call's [`Priority`] (dropped unsent
//!    with [`ErrorClass::DeadlinePassed`] if the deadline passes first). CXone publishes no rate-limit headers, so
//!    the budget is paced by the configured requests per minute, and a 429 pauses it: for its `Retry-After` when
//!    the platform sends one, otherwise for an exponential backoff (1 s, 2 s, 4 s … 60 s) that resets on the next
//!    success.
//! 2. **Precondition**, if any, checked once the permit is held and before anything is sent.
//! 3. **Token** from the [`TokenCache`]: `POST {auth}/auth/token`, client authenticated by HTTP Basic,
//!    `grant_type=password` with the access key id/secret as username/password; when a refresh token is at hand
//!    the refresh first tries `grant_type=refresh_token` and falls back to the password grant. Refreshed early and
//!    single flight by the cache.
//! 4. **API base**, discovered once: the access token is a JWT whose payload carries `tenantId` (read without a
//!    signature check — the token came straight from the auth host over TLS and is only used to find our own
//!    tenant); `GET {auth}/.well-known/cxone-configuration?tenantId=` → `api_endpoint`. An explicit `api_base` in
//!    the connection skips it. Paths are `{api}/inContactAPI/services/v{N}.0/…` with the version NICE's own agent
//!    SDK uses for each endpoint ([`versions`]).
//! 5. **Send** with the connection's timeout (a long poll adds its own wait), read the body size-limited.
//! 6. **401** → invalidate that token, retry once with a fresh one; a second 401 is [`ErrorClass::Auth`].
//! 7. **Classify** failures with [`super::error::classify`] (status + reason phrase + `icStatusDescription` +
//!    error body) and record every attempt — token and discovery requests included — to the sink and stats.
//!
//! Token and discovery requests go to the auth host, which has its own limits, so they do not draw on the API
//! budget; they are still counted. Secrets (access key secret, client secret, tokens) never appear in errors,
//! `Debug` output or logs.

use crate::attempt::{ApiAttempt, AttemptRecorder, CallStats, SharedAttemptSink};
use crate::budget::{Budget, Permit, Priority, PriorityClass, RateLimits};
use crate::cxone::error::{classify, rejection, Rejection};
use crate::cxone::model::*;
use crate::error::{ErrorClass, PlatformError};
use crate::genesys::Precondition;
use crate::http::{header_str, read_limited, BodyError, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use crate::token::{Grant, TokenCache};
use base64::Engine;
use parking_lot::Mutex;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use wrapup_core::clock::SharedClock;
use wrapup_core::Secret;

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

/// Why a client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("connection {connection}: {which} URL {url} cannot be used as a base URL")]
    BadUrl { connection: String, which: &'static str, url: String },
    #[error("connection {connection}: the HTTP client could not be built")]
    Http {
        connection: String,
        #[source]
        source: reqwest::Error,
    },
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

/// A successful answer.
struct Response {
    status: u16,
    body: Vec<u8>,
}

impl Response {
    fn json(&self, endpoint: &'static str) -> Result<Value, PlatformError> {
        if self.status == 204 || self.status == 304 || self.body.iter().all(u8::is_ascii_whitespace) {
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

/// One request as the client sends it. The URL is built at send time, under the discovered API base.
struct Call<'a> {
    method: Method,
    endpoint: &'static str,
    version: &'static str,
    path: Vec<String>,
    query: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    priority: Priority,
    contact_id: Option<String>,
    precondition: Option<&'a dyn Precondition>,
    /// Added to the connection's timeout (long polls).
    extra_timeout: Duration,
}

impl<'a> Call<'a> {
    fn new(method: Method, endpoint: &'static str, version: &'static str, path: &[&str], priority: Priority) -> Self {
        Call {
            method,
            endpoint,
            version,
            path: path.iter().map(|s| s.to_string()).collect(),
            query: Vec::new(),
            body: None,
            priority,
            contact_id: None,
            precondition: None,
            extra_timeout: Duration::ZERO,
        }
    }

    fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    fn with_json(mut self, value: &Value) -> Result<Self, PlatformError> {
        let body = serde_json::to_vec(value).map_err(|e| {
            PlatformError::transport(
                ErrorClass::Permanent,
                self.endpoint,
                format!("the body could not be encoded: {e}"),
            )
        })?;
        if body.len() > MAX_REQUEST_BYTES {
            return Err(PlatformError::transport(
                ErrorClass::Permanent,
                self.endpoint,
                format!("the request body exceeds {MAX_REQUEST_BYTES} bytes"),
            ));
        }
        self.body = Some(body);
        Ok(self)
    }

    /// Names the contact the call is about, so its attempts land in that leg's ledger.
    fn for_contact(mut self, contact_id: i64) -> Self {
        self.contact_id = Some(contact_id.to_string());
        self
    }
}

struct Inner {
    auth_url: Url,
    explicit_api_base: Option<Url>,
    access_key_id: String,
    access_key_secret: Secret,
    client_id: String,
    client_secret: Secret,
    http: reqwest::Client,
    tokens: TokenCache,
    /// The refresh token of the current grant, tried before the password grant.
    refresh_token: Mutex<Option<Secret>>,
    /// `tenantId` of the current access token.
    tenant_id: Mutex<Option<String>>,
    /// Discovered API base (single flight: the lock is held across discovery).
    api_base: tokio::sync::Mutex<Option<Url>>,
    budget: Budget,
    recorder: AttemptRecorder,
    clock: SharedClock,
    request_timeout: Duration,
    /// 429s without `Retry-After` in a row, for the exponential pause.
    consecutive_429: AtomicU32,
    /// When the last pause for a 429 without `Retry-After` was set: a 429 to a request sent before it is the same
    /// throttling answering requests already in flight, not a reason to double the pause again.
    last_429_pause: parking_lot::Mutex<Option<tokio::time::Instant>>,
}

/// The CXone client of one connection. Cheap to clone; clones share budget, token and stats.
#[derive(Clone)]
pub struct CxoneClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CxoneClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CxoneClient")
            .field("connection", &self.inner.recorder.connection())
            .field("auth_url", &self.inner.auth_url.as_str())
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

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "OTHER",
    }
}

fn body_error(endpoint: &'static str, status: u16, e: BodyError) -> PlatformError {
    let class = match e {
        BodyError::TooLarge { .. } => ErrorClass::Permanent,
        BodyError::Read(_) => ErrorClass::Retryable,
    };
    PlatformError { class, status: Some(status), code: None, message: e.to_string(), correlation_id: None, endpoint }
}

/// The reason phrase when the server sent one other than the canonical text for the status (hyper keeps only
/// those).
fn reason_phrase(resp: &reqwest::Response) -> Option<String> {
    let r = resp.extensions().get::<hyper::ext::ReasonPhrase>()?;
    std::str::from_utf8(r.as_bytes()).ok().map(str::to_string)
}

impl CxoneClient {
    /// Builds the client. `clock` stamps attempts and bounds deadlines; `sink` receives every attempt.
    pub fn new(conn: CxoneConnection, clock: SharedClock, sink: SharedAttemptSink) -> Result<Self, ConfigError> {
        for (which, url) in [("auth", Some(&conn.auth_url)), ("api", conn.api_base.as_ref())] {
            if let Some(url) = url.filter(|u| u.cannot_be_a_base()) {
                return Err(ConfigError::BadUrl { connection: conn.name.clone(), which, url: url.to_string() });
            }
        }
        let http = reqwest::Client::builder()
            .timeout(conn.request_timeout)
            .connect_timeout(conn.request_timeout.min(Duration::from_secs(10)))
            // Redirects are not part of the contract; following one could send the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wrapup/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ConfigError::Http { connection: conn.name.clone(), source })?;
        Ok(Self {
            inner: Arc::new(Inner {
                auth_url: conn.auth_url,
                explicit_api_base: conn.api_base,
                access_key_id: conn.access_key_id,
                access_key_secret: conn.access_key_secret,
                client_id: conn.client_id,
                client_secret: conn.client_secret,
                http,
                tokens: TokenCache::new(),
                refresh_token: Mutex::new(None),
                tenant_id: Mutex::new(None),
                api_base: tokio::sync::Mutex::new(None),
                budget: Budget::new(1, conn.requests_per_minute),
                recorder: AttemptRecorder::new(conn.name, sink),
                clock,
                request_timeout: conn.request_timeout,
                consecutive_429: AtomicU32::new(0),
                last_429_pause: parking_lot::Mutex::new(None),
            }),
        })
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        self.inner.recorder.connection()
    }

    /// The connection's request budget.
    pub fn budget(&self) -> &Budget {
        &self.inner.budget
    }

    /// The clock attempts are stamped with.
    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Counters of every attempt made by this client so far.
    pub fn stats(&self) -> CallStats {
        self.inner.recorder.snapshot()
    }

    /// The tenant of the current token, once a token has been fetched.
    pub fn tenant_id(&self) -> Option<String> {
        self.inner.tenant_id.lock().clone()
    }

    /// The API origin calls go to (discovering it, and fetching a token for that, if needed).
    pub async fn api_base(&self) -> Result<Url, PlatformError> {
        let token = self.inner.tokens.get(|| self.fetch_token()).await?;
        self.resolve_api_base(&token).await
    }

    // ----- catalog ------------------------------------------------------------------------------------------------

    /// Every disposition of the business unit (all pages of `GET dispositions`).
    pub async fn list_dispositions(&self, priority: Priority) -> Result<Vec<Disposition>, PlatformError> {
        self.list_paged(endpoints::DISPOSITIONS, versions::ADMIN, &["dispositions"], &[], priority, |b| {
            listing(b, &["dispositions"], Disposition::from_value).records
        })
        .await
    }

    /// One skill with its ACW settings (`GET skills/{skillId}`).
    pub async fn get_skill(&self, skill_id: i64, priority: Priority) -> Result<Skill, PlatformError> {
        let endpoint = endpoints::SKILL;
        let id = skill_id.to_string();
        let call = Call::new(Method::GET, endpoint, versions::ADMIN, &["skills", &id], priority);
        let body = self.execute(&call).await?.json(endpoint)?;
        Skill::from_value(result_set(&body).map(|o| Value::Object(o.clone())).as_ref().unwrap_or(&body))
            .ok_or_else(|| undecodable(endpoint, "the skill record has no skillId"))
    }

    /// Every skill (all pages of `GET skills`).
    pub async fn list_skills(&self, priority: Priority) -> Result<Vec<Skill>, PlatformError> {
        self.list_paged(endpoints::SKILLS, versions::ADMIN, &["skills"], &[], priority, |b| {
            listing(b, &["skills"], Skill::from_value).records
        })
        .await
    }

    /// The dispositions assigned to a skill (`GET skills/{skillId}/dispositions`; 204 → none).
    pub async fn skill_dispositions(
        &self,
        skill_id: i64,
        priority: Priority,
    ) -> Result<Vec<Disposition>, PlatformError> {
        let id = skill_id.to_string();
        self.list_paged(
            endpoints::SKILL_DISPOSITIONS,
            versions::SKILL_DISPOSITIONS,
            &["skills", &id, "dispositions"],
            &[],
            priority,
            |b| listing(b, &["dispositions"], Disposition::from_value).records,
        )
        .await
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
        let call = Call::new(
            Method::GET,
            endpoint,
            versions::CONTACT_DISPOSITION,
            &["contacts", &id, "disposition"],
            priority,
        )
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
        let call = Call::new(Method::GET, endpoint, versions::REALTIME, &["agents", &id, "states"], priority);
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
        self.list_paged(endpoints::AGENTS, versions::ADMIN, &["agents"], &[], priority, |b| {
            listing(b, &["agents"], Agent::from_value).records
        })
        .await
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
            Call::new(Method::GET, endpoint, versions::REPORTING, &["contacts", &id], priority).for_contact(contact_id);
        let body = self.execute(&call).await?.json(endpoint)?;
        let Some(o) = result_set(&body) else { return Ok(None) };
        let list = listing(&body, &["activeContacts", "completedContacts", "contacts"], ContactRecord::from_value);
        Ok(list.records.into_iter().next().or_else(|| ContactRecord::from_value(&Value::Object(o.clone()))))
    }

    /// The master contact and children of a contact (`GET contacts/{contactId}/hierarchy`).
    pub async fn contact_hierarchy(&self, contact_id: i64, priority: Priority) -> Result<Hierarchy, PlatformError> {
        let endpoint = endpoints::CONTACT_HIERARCHY;
        let id = contact_id.to_string();
        let call = Call::new(Method::GET, endpoint, versions::REPORTING, &["contacts", &id, "hierarchy"], priority)
            .for_contact(contact_id);
        let body = self.execute(&call).await?.json(endpoint)?;
        Hierarchy::from_value(&body).ok_or_else(|| undecodable(endpoint, "the hierarchy has no masterContactId"))
    }

    // ----- agent sessions -----------------------------------------------------------------------------------------

    /// Joins the running session of an agent (`POST agent-sessions/join` with `asAgentId`; needs Impersonate
    /// Agent). Returns the new session id. [`Rejection::AgentNotLoggedIn`] when the agent has no session.
    pub async fn join_session(&self, agent_id: i64, priority: Priority) -> Result<String, PlatformError> {
        let endpoint = endpoints::SESSION_JOIN;
        let call = Call::new(Method::POST, endpoint, versions::SESSIONS, &["agent-sessions", "join"], priority)
            .with_json(&json!({ "asAgentId": agent_id }))?;
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
        let call =
            Call::new(Method::POST, endpoint, versions::SESSIONS, &["agent-sessions"], priority).with_json(&body)?;
        session_id_of(endpoint, &self.execute(&call).await?)
    }

    /// Ends a session (`DELETE agent-sessions/{sessionId}`; the options go both as query, as the swagger lists them,
    /// and as a JSON body, as the SDK sends them). Never force-logs the agent off or ends their contacts. The session
    /// cache never calls this: ending a joined session is the operator's decision.
    pub async fn end_session(&self, session_id: &str, priority: Priority) -> Result<(), PlatformError> {
        let endpoint = endpoints::SESSION_END;
        let call = Call::new(Method::DELETE, endpoint, versions::SESSIONS, &["agent-sessions", session_id], priority)
            .query("forceLogoff", "false")
            .query("endContacts", "false")
            .query("ignorePersonalQueue", "false")
            .with_json(&json!({"forceLogoff": false, "endContacts": false, "ignorePersonalQueue": false}))?;
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
        let mut call = Call::new(
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
            Call::new(Method::POST, endpoint, versions::SESSIONS, &["agent-sessions", session_id, "state"], priority)
                .with_json(&body)?;
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
        let mut call = Call::new(
            Method::POST,
            endpoint,
            versions::DISPOSITION,
            &["agent-sessions", session_id, "interactions", &cid, "disposition"],
            priority,
        )
        .with_json(&body)?
        .for_contact(contact_id);
        call.precondition = precondition;
        self.execute(&call).await.map(|_| ())
    }

    // ----- request path -------------------------------------------------------------------------------------------

    /// `skip`/`top` paging until a short page (or `totalRecords`, or `MAX_PAGES`).
    async fn list_paged<T>(
        &self,
        endpoint: &'static str,
        version: &'static str,
        path: &[&str],
        query: &[(&'static str, String)],
        priority: Priority,
        read: impl Fn(&Value) -> Vec<T>,
    ) -> Result<Vec<T>, PlatformError> {
        Ok(self
            .poll_paged(endpoint, version, path, query, priority, |b| Polled {
                records: read(b),
                last_poll_time: None,
                requests: 0,
            })
            .await?
            .records)
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
            let mut call = Call::new(Method::GET, endpoint, version, path, priority);
            call.query = query.to_vec();
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
    fn url(&self, base: &Url, call: &Call<'_>) -> Result<Url, PlatformError> {
        if call.path.iter().any(|s| s.is_empty()) {
            return Err(PlatformError::transport(ErrorClass::Permanent, call.endpoint, "an id in the path is empty"));
        }
        let mut url = base.clone();
        url.set_query(None);
        url.set_fragment(None);
        {
            let mut segs = url.path_segments_mut().map_err(|_| {
                PlatformError::transport(ErrorClass::Permanent, call.endpoint, "the API base cannot take a path")
            })?;
            segs.pop_if_empty();
            segs.extend(["inContactAPI", "services", call.version]);
            segs.extend(call.path.iter());
        }
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(call.query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        Ok(url)
    }

    async fn execute(&self, call: &Call<'_>) -> Result<Response, PlatformError> {
        let mut refreshed = false;
        loop {
            let permit = match call.priority.expires_at() {
                Some(deadline) => {
                    let clock = &self.inner.clock;
                    let wait = clock.wall_duration(deadline.duration_since(clock.now()));
                    match tokio::time::timeout(wait, self.inner.budget.acquire(call.priority)).await {
                        Ok(p) => p,
                        Err(_) => {
                            return Err(PlatformError::transport(
                                ErrorClass::DeadlinePassed,
                                call.endpoint,
                                "the deadline passed while the request waited for the budget",
                            ))
                        }
                    }
                }
                None => self.inner.budget.acquire(call.priority).await,
            };
            if let Some(p) = call.precondition {
                if let Err(reason) = p.check().await {
                    permit.unsent();
                    return Err(PlatformError::transport(ErrorClass::PreconditionFailed, call.endpoint, reason));
                }
            }
            let (token, url) = match self.prepare(call).await {
                Ok(ready) => ready,
                Err(e) => {
                    permit.unsent();
                    return Err(e);
                }
            };
            match self.send(call, permit, url, &token).await {
                Err(e) if e.status == Some(401) && !refreshed => {
                    tracing::debug!(
                        connection = self.name(),
                        endpoint = call.endpoint,
                        "The platform refused the access token; refreshing it once."
                    );
                    self.inner.tokens.invalidate(&token).await;
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    /// The token and the URL of a call: what must be in hand before a permit is spent.
    async fn prepare(&self, call: &Call<'_>) -> Result<(Secret, Url), PlatformError> {
        let token = self.inner.tokens.get(|| self.fetch_token()).await?;
        let base = self.resolve_api_base(&token).await?;
        let url = self.url(&base, call)?;
        Ok((token, url))
    }

    /// The time limit of one attempt: the connection's (plus a long poll's wait), or for a live leg with a
    /// deadline a third of the time left (at least 250 ms), so a hung write leaves room for a retry and a gate read.
    fn attempt_timeout(&self, call: &Call<'_>) -> Duration {
        let base = self.inner.request_timeout + call.extra_timeout;
        match call
            .priority
            .expires_at()
            .filter(|_| call.priority.class == PriorityClass::Live && call.extra_timeout.is_zero())
        {
            Some(deadline) => {
                let clock = &self.inner.clock;
                let left = clock.wall_duration(deadline.duration_since(clock.now()));
                (left / 3).clamp(Duration::from_millis(250), base.max(Duration::from_millis(250)))
            }
            None => base,
        }
    }

    /// One attempt, paid for by `permit`. CXone sends no rate-limit headers, so the budget hears only that the
    /// request was answered (and a 429's pause).
    async fn send(&self, call: &Call<'_>, permit: Permit, url: Url, token: &Secret) -> Result<Response, PlatformError> {
        let credential = permit.credential;
        let started = (self.inner.clock.now(), tokio::time::Instant::now());
        let mut req = self
            .inner
            .http
            .request(call.method.clone(), url)
            .bearer_auth(token.expose())
            .header(ACCEPT, "application/json")
            .timeout(self.attempt_timeout(call));
        if let Some(body) = &call.body {
            req = req.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        let (status, result) = match req.send().await {
            Err(e) => (None, Err(PlatformError::from_reqwest(call.endpoint, &e))),
            Ok(resp) => {
                let status = resp.status().as_u16();
                permit.answered(RateLimits::default());
                let reason = reason_phrase(&resp);
                let headers = resp.headers().clone();
                let result = match read_limited(resp, MAX_RESPONSE_BYTES).await {
                    Err(e) => Err(body_error(call.endpoint, status, e)),
                    Ok(body) if (200..300).contains(&status) || status == 304 => {
                        self.inner.consecutive_429.store(0, Ordering::Relaxed);
                        Ok(Response { status, body })
                    }
                    Ok(body) => {
                        let e = classify(
                            call.endpoint,
                            status,
                            reason.as_deref(),
                            header_str(&headers, "icStatusDescription"),
                            header_str(&headers, "retry-after"),
                            &body,
                        );
                        if let ErrorClass::RateLimited { retry_after } = &e.class {
                            if let Some(pause) = self.rate_limit_pause(*retry_after, started.1) {
                                self.inner.budget.pause(credential, pause);
                            }
                        }
                        Err(e)
                    }
                };
                (Some(status), result)
            }
        };
        self.record(call.endpoint, method_name(&call.method), call.contact_id.clone(), started, status, &result, false);
        result
    }

    /// How long a 429 to a request sent at `sent_at` pauses the budget: its `Retry-After`, or 1 s doubling per 429
    /// in a row (at most 60 s). `None` when a request sent before the last such pause was set is answered 429: that
    /// pause already covers it (requests in flight when the platform started throttling all come back 429 at once,
    /// and counting each would turn one throttled second into a minute's stall).
    fn rate_limit_pause(&self, retry_after: Option<Duration>, sent_at: tokio::time::Instant) -> Option<Duration> {
        if let Some(ra) = retry_after {
            return Some(ra);
        }
        let mut last = self.inner.last_429_pause.lock();
        if last.is_some_and(|at| sent_at < at) {
            return None;
        }
        *last = Some(tokio::time::Instant::now());
        let n = self.inner.consecutive_429.fetch_add(1, Ordering::Relaxed).min(6);
        Some(Duration::from_secs(1u64 << n).min(MAX_429_BACKOFF))
    }

    /// The API base: the configured one, or the discovered one (single flight, cached).
    async fn resolve_api_base(&self, token: &Secret) -> Result<Url, PlatformError> {
        if let Some(b) = &self.inner.explicit_api_base {
            return Ok(b.clone());
        }
        let mut slot = self.inner.api_base.lock().await;
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
        let mut url = self.inner.auth_url.clone();
        url.set_path("/.well-known/cxone-configuration");
        url.query_pairs_mut().clear().append_pair("tenantId", tenant);
        let started = (self.inner.clock.now(), tokio::time::Instant::now());
        let (status, result) = match self.inner.http.get(url).header(ACCEPT, "application/json").send().await {
            Err(e) => (None, Err(PlatformError::from_reqwest(endpoint, &e))),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let reason = reason_phrase(&resp);
                let headers = resp.headers().clone();
                let result = match read_limited(resp, MAX_RESPONSE_BYTES).await {
                    Err(e) => Err(body_error(endpoint, status, e)),
                    Ok(body) if (200..300).contains(&status) => serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("api_endpoint").and_then(Value::as_str).map(str::to_string))
                        .and_then(|s| Url::parse(s.trim()).ok())
                        .filter(|u| matches!(u.scheme(), "https" | "http") && !u.cannot_be_a_base())
                        .ok_or_else(|| undecodable(endpoint, "the configuration has no usable api_endpoint")),
                    Ok(body) => Err(classify(
                        endpoint,
                        status,
                        reason.as_deref(),
                        header_str(&headers, "icStatusDescription"),
                        header_str(&headers, "retry-after"),
                        &body,
                    )),
                };
                (Some(status), result)
            }
        };
        self.record(endpoint, "GET", None, started, status, &result, false);
        result
    }

    /// A token: the refresh grant when a refresh token is at hand (falling back to the password grant if it is
    /// refused), otherwise the password grant.
    async fn fetch_token(&self) -> Result<Grant, PlatformError> {
        let refresh = self.inner.refresh_token.lock().take();
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
        let inner = &self.inner;
        let mut url = inner.auth_url.clone();
        url.set_path("/auth/token");
        url.set_query(None);
        let form = match refresh {
            Some(rt) => url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "refresh_token")
                .append_pair("refresh_token", rt.expose())
                .append_pair("client_id", &inner.client_id)
                .finish(),
            None => url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "password")
                .append_pair("username", &inner.access_key_id)
                .append_pair("password", inner.access_key_secret.expose())
                .finish(),
        };
        let started = (inner.clock.now(), tokio::time::Instant::now());
        let sent = inner
            .http
            .post(url)
            .basic_auth(&inner.client_id, Some(inner.client_secret.expose()))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(form)
            .send()
            .await;
        let (status, result) = match sent {
            Err(e) => (None, Err(PlatformError::from_reqwest(endpoint, &e))),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let reason = reason_phrase(&resp);
                let headers = resp.headers().clone();
                let result = match read_limited(resp, MAX_RESPONSE_BYTES).await {
                    Err(e) => Err(body_error(endpoint, status, e)),
                    Ok(body) if (200..300).contains(&status) => self.accept_grant(endpoint, status, &body),
                    Ok(body) => {
                        let mut e = classify(
                            endpoint,
                            status,
                            reason.as_deref(),
                            None,
                            header_str(&headers, "retry-after"),
                            &body,
                        );
                        // A refused token request is an authentication problem, whatever its status.
                        if matches!(
                            e.class,
                            ErrorClass::Permanent | ErrorClass::Forbidden { .. } | ErrorClass::Conflict
                        ) {
                            e.class = ErrorClass::Auth;
                        }
                        Err(e)
                    }
                };
                (Some(status), result)
            }
        };
        if let Err(e) = &result {
            tracing::warn!(connection = self.name(), error = %e, "A CXone token request failed.");
        }
        self.record(endpoint, "POST", None, started, status, &result, true);
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
            *self.inner.tenant_id.lock() = tenant;
        }
        *self.inner.refresh_token.lock() = text("refresh_token").map(Secret::new);
        // CXone tokens live 3600 s; be conservative when the field is missing or odd.
        let expires_in =
            v.get("expires_in").and_then(|e| e.as_u64().or_else(|| e.as_str()?.parse().ok())).unwrap_or(600);
        Ok(Grant { access_token: Secret::new(access), expires_in: Duration::from_secs(expires_in.clamp(1, 86_400)) })
    }

    #[allow(clippy::too_many_arguments)]
    fn record<T>(
        &self,
        endpoint: &'static str,
        method: &'static str,
        contact_id: Option<String>,
        started: (jiff::Timestamp, tokio::time::Instant),
        status: Option<u16>,
        result: &Result<T, PlatformError>,
        is_token: bool,
    ) {
        let attempt = ApiAttempt {
            connection: self.name().to_string(),
            endpoint,
            method,
            status,
            correlation_id: None,
            duration_ms: u64::try_from(started.1.elapsed().as_millis()).unwrap_or(u64::MAX),
            at: started.0,
            error_class: result.as_ref().err().map(|e| e.class.clone()),
            conversation_id: None,
            participant_id: contact_id,
        };
        tracing::debug!(
            connection = self.name(),
            endpoint,
            method,
            status = ?status,
            duration_ms = attempt.duration_ms,
            "Platform call finished."
        );
        self.inner.recorder.record(attempt, is_token);
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
