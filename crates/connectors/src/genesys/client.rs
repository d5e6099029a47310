//! The Genesys Cloud API client: one per connection.
//!
//! Every call takes the same path:
//!
//! 1. **Budget.** Wait for a [`Permit`](crate::budget::Permit) from the connection's shared [`Budget`] at the call's
//!    [`Priority`]. The permit names the credential whose window paid for the request.
//! 2. **Token.** Take that credential's token from its [`TokenCache`] (fetched with
//!    `POST {login}/oauth/token`, Basic auth, `grant_type=client_credentials`; refreshed early, single flight).
//! 3. **Send**, with the connection's timeout, and read the body up to [`MAX_RESPONSE_BYTES`].
//! 4. **Feed back** the answer and its `inin-ratelimit-*` headers to the budget through the permit (a request that
//!    never went out gives its permit back); a 429 pauses the credential for its `Retry-After`.
//! 5. **401** → invalidate that token and retry the call once (new permit, fresh token). A second 401 is
//!    [`ErrorClass::Auth`].
//! 6. **Classify** any failure once ([`crate::error::classify`]) and report the attempt to the sink, the client's
//!    stats and the `wrapup_platform_calls_total` counter.
//!
//! No call retries on its own beyond the one 401 refresh: short retries are the caller's choice through
//! [`crate::retry::call_with_retry`], durable ones the leg state machine's.

use crate::attempt::{ApiAttempt, AttemptRecorder, CallStats, SharedAttemptSink};
use crate::budget::{Budget, Permit, Priority, PriorityClass, RateLimits};
use crate::error::{classify, ErrorClass, PlatformError};
use crate::genesys::model::*;
use crate::genesys::DEFAULT_REQUESTS_PER_MINUTE;
use crate::http::{header_str, header_u32, read_limited, BodyError, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use crate::token::{Grant, TokenCache};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use url::Url;
use wrapup_core::clock::SharedClock;
use wrapup_core::Secret;

/// Media path segments that have a `POST …/communications/{commId}/wrapup` endpoint.
pub const WRITE_MEDIA: [&str; 8] =
    ["calls", "callbacks", "emails", "messages", "cobrowsesessions", "screenshares", "socials", "videos"];

/// Media path segments accepted by `GET /api/v2/conversations/{media}/…/participants/{pid}/wrapup`.
const READ_MEDIA: [&str; 5] = ["calls", "callbacks", "emails", "messages", "cobrowsesessions"];

/// The shortest time limit of a live leg's request (see `GenesysClient::live_timeout`).
pub const LIVE_MIN_TIMEOUT: Duration = Duration::from_millis(250);

/// Catalog listings are read 100 per page; stop after this many pages whatever `pageCount` says.
const MAX_PAGES: u32 = 1000;
const PAGE_SIZE: &str = "100";
/// At most this many codes per `POST /api/v2/routing/queues/{queueId}/wrapupcodes`.
const QUEUE_CODES_CHUNK: usize = 100;

/// Path templates, used as the `endpoint` of attempts and errors (low-cardinality metric labels).
pub mod endpoints {
    pub const TOKEN: &str = "/oauth/token";
    pub const PARTICIPANT_WRAPUP: &str = "/api/v2/conversations/{conversationId}/participants/{participantId}/wrapup";
    pub const MEDIA_PARTICIPANT_WRAPUP: &str =
        "/api/v2/conversations/{media}/{conversationId}/participants/{participantId}/wrapup";
    pub const PARTICIPANT_WRAPUPCODES: &str =
        "/api/v2/conversations/{conversationId}/participants/{participantId}/wrapupcodes";
    pub const POST_WRAPUP: &str =
        "/api/v2/conversations/{media}/{conversationId}/participants/{participantId}/communications/{communicationId}/wrapup";
    pub const CONVERSATION: &str = "/api/v2/conversations/{conversationId}";
    pub const WRAPUPCODES: &str = "/api/v2/routing/wrapupcodes";
    pub const QUEUES: &str = "/api/v2/routing/queues";
    pub const QUEUE_WRAPUPCODES: &str = "/api/v2/routing/queues/{queueId}/wrapupcodes";
    pub const ANALYTICS_DETAILS_QUERY: &str = "/api/v2/analytics/conversations/details/query";
    pub const NOTIFICATION_CHANNELS: &str = "/api/v2/notifications/channels";
    pub const NOTIFICATION_SUBSCRIPTIONS: &str = "/api/v2/notifications/channels/{channelId}/subscriptions";
}

/// One Genesys org as configured.
#[derive(Debug, Clone)]
pub struct GenesysConnection {
    pub name: String,
    /// API base, e.g. `https://api.mypurecloud.com` or `http://127.0.0.1:PORT`.
    pub base_url: Url,
    /// Token host: `https://login.X` for region `api.X`; the same as `base_url` for a sandbox.
    pub login_url: Url,
    /// `(client id, client secret)` of one or more OAuth clients of the same org; their budgets are pooled.
    pub credentials: Vec<(String, Secret)>,
    /// Per client token.
    pub requests_per_minute: u32,
    pub request_timeout: Duration,
}

impl GenesysConnection {
    /// A connection to a Genesys region (`us_east_1`, `eu-west-1`, …). `None` for an unknown region.
    pub fn for_region(name: impl Into<String>, region: &str, credentials: Vec<(String, Secret)>) -> Option<Self> {
        let api = crate::genesys::region_api_host(region)?;
        let base_url = Url::parse(&format!("https://{api}")).ok()?;
        let login_url = Url::parse(&format!("https://{}", crate::genesys::login_host(api))).ok()?;
        Some(Self::with_urls(name, base_url, login_url, credentials))
    }

    /// A connection to an explicit base URL (a sandbox): tokens are requested from the same host.
    pub fn for_base_url(name: impl Into<String>, base_url: Url, credentials: Vec<(String, Secret)>) -> Self {
        Self::with_urls(name, base_url.clone(), base_url, credentials)
    }

    fn with_urls(name: impl Into<String>, base_url: Url, login_url: Url, credentials: Vec<(String, Secret)>) -> Self {
        Self {
            name: name.into(),
            base_url,
            login_url,
            credentials,
            requests_per_minute: DEFAULT_REQUESTS_PER_MINUTE,
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// Why a client could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("connection {connection} has no credentials")]
    NoCredentials { connection: String },
    #[error("connection {connection}: {which} URL {url} cannot be used as a base URL")]
    BadUrl { connection: String, which: &'static str, url: String },
    #[error("connection {connection}: the HTTP client could not be built")]
    Http {
        connection: String,
        #[source]
        source: reqwest::Error,
    },
}

struct Credential {
    client_id: String,
    secret: Secret,
    tokens: TokenCache,
}

struct Inner {
    base_url: Url,
    login_url: Url,
    http: reqwest::Client,
    credentials: Vec<Credential>,
    budget: Budget,
    recorder: AttemptRecorder,
    clock: SharedClock,
    request_timeout: Duration,
}

/// The Genesys Cloud client of one connection. Cheap to clone; clones share budget, tokens and stats.
#[derive(Clone)]
pub struct GenesysClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GenesysClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Client ids are not secret but are not needed here either; secrets and tokens are never printed.
        f.debug_struct("GenesysClient")
            .field("connection", &self.inner.recorder.connection())
            .field("base_url", &self.inner.base_url.as_str())
            .field("credentials", &self.inner.credentials.len())
            .finish()
    }
}

/// A successful response.
struct Response {
    body: Vec<u8>,
    correlation_id: Option<String>,
}

/// One request as the client sends it.
struct Call<'a> {
    method: Method,
    endpoint: &'static str,
    url: Url,
    body: Option<Vec<u8>>,
    priority: Priority,
    conversation_id: Option<&'a str>,
    participant_id: Option<&'a str>,
    /// Checked once the request holds a budget permit, just before it is sent.
    precondition: Option<&'a dyn Precondition>,
}

impl<'a> Call<'a> {
    fn new(method: Method, endpoint: &'static str, url: Url, priority: Priority) -> Self {
        Call {
            method,
            endpoint,
            url,
            body: None,
            priority,
            conversation_id: None,
            participant_id: None,
            precondition: None,
        }
    }

    fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    /// Names the leg the call is about, so its attempts land in that leg's ledger.
    fn for_leg(mut self, conversation_id: &'a str, participant_id: Option<&'a str>) -> Self {
        self.conversation_id = Some(conversation_id);
        self.participant_id = participant_id;
        self
    }

    fn if_still(mut self, precondition: Option<&'a dyn Precondition>) -> Self {
        self.precondition = precondition;
        self
    }
}

/// A condition a request must still meet when it is about to be sent (after waiting for the budget), e.g. "the
/// leg has not changed since we read it". Waiting for the budget can take long under load; this keeps a write from
/// going out on a decision the world has moved past.
#[async_trait::async_trait]
pub trait Precondition: Send + Sync {
    /// `Ok(())` to send; `Err(reason)` to drop the request unsent.
    async fn check(&self) -> Result<(), String>;
}

/// What an attempt was, for the report.
#[derive(Clone, Copy)]
struct AttemptOf<'a> {
    endpoint: &'static str,
    method: &'static str,
    conversation_id: Option<&'a str>,
    participant_id: Option<&'a str>,
    is_token: bool,
}

/// When an attempt started: on the client's clock (for the ledger) and on the monotonic clock (for its duration).
#[derive(Clone, Copy)]
struct Started {
    at: jiff::Timestamp,
    instant: tokio::time::Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Serialize)]
struct IdRef<'a> {
    id: &'a str,
}

impl GenesysClient {
    /// Builds the client. `clock` stamps attempts and bounds deadlines; `sink` receives every attempt.
    pub fn new(conn: GenesysConnection, clock: SharedClock, sink: SharedAttemptSink) -> Result<Self, ConfigError> {
        if conn.credentials.is_empty() {
            return Err(ConfigError::NoCredentials { connection: conn.name });
        }
        for (which, url) in [("base", &conn.base_url), ("login", &conn.login_url)] {
            if url.cannot_be_a_base() {
                return Err(ConfigError::BadUrl { connection: conn.name.clone(), which, url: url.to_string() });
            }
        }
        let http = reqwest::Client::builder()
            .timeout(conn.request_timeout)
            .connect_timeout(conn.request_timeout.min(Duration::from_secs(10)))
            // Platform redirects are not part of the contract; following one could send the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wrapup/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ConfigError::Http { connection: conn.name.clone(), source })?;
        let budget = Budget::new(conn.credentials.len(), conn.requests_per_minute);
        let request_timeout = conn.request_timeout;
        let credentials = conn
            .credentials
            .into_iter()
            .map(|(client_id, secret)| Credential { client_id, secret, tokens: TokenCache::new() })
            .collect();
        Ok(Self {
            inner: Arc::new(Inner {
                base_url: conn.base_url,
                login_url: conn.login_url,
                http,
                credentials,
                budget,
                recorder: AttemptRecorder::new(conn.name, sink),
                clock,
                request_timeout,
            }),
        })
    }

    /// The connection's name.
    pub fn name(&self) -> &str {
        self.inner.recorder.connection()
    }

    /// The connection's shared request budget.
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

    // ----- typed calls -------------------------------------------------------------------------------------------

    /// The participant's current wrap-up (`provisional=true` includes one the agent has typed but not saved), read
    /// on the media-specific path when `media` has one, else on the generic path.
    /// `None` when no code is set — whether the platform answers with an empty body, `{}`, a wrap-up without
    /// `code`, or 404 `not.found`.
    pub async fn get_participant_wrapup(
        &self,
        conversation_id: &str,
        participant_id: &str,
        media: Option<&str>,
        provisional: bool,
        priority: Priority,
    ) -> Result<Option<AssignedWrapup>, PlatformError> {
        // Media without a media-specific read (screenshares, socials, videos) use the generic path.
        let (endpoint, mut url) = match media.filter(|m| READ_MEDIA.contains(m)) {
            Some(m) => {
                let endpoint = endpoints::MEDIA_PARTICIPANT_WRAPUP;
                let segs = ["api", "v2", "conversations", m, conversation_id, "participants", participant_id, "wrapup"];
                (endpoint, self.api_url(endpoint, &segs)?)
            }
            None => {
                let endpoint = endpoints::PARTICIPANT_WRAPUP;
                let segs = ["api", "v2", "conversations", conversation_id, "participants", participant_id, "wrapup"];
                (endpoint, self.api_url(endpoint, &segs)?)
            }
        };
        if provisional {
            url.query_pairs_mut().append_pair("provisional", "true");
        }
        let call = Call::new(Method::GET, endpoint, url, priority).for_leg(conversation_id, Some(participant_id));
        let resp = match self.execute(&call).await {
            Ok(r) => r,
            Err(e) if e.status == Some(404) && e.code.as_deref().is_none_or(|c| c == "not.found") => return Ok(None),
            Err(e) => return Err(e),
        };
        if resp.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let assigned: Option<AssignedWrapup> = decode(endpoint, &resp)?;
        Ok(assigned.filter(|a| a.code.as_deref().is_some_and(|c| !c.trim().is_empty())))
    }

    /// The codes the participant may be wrapped up with (`GET …/participants/{pid}/wrapupcodes`, a bare array).
    pub async fn get_participant_wrapupcodes(
        &self,
        conversation_id: &str,
        participant_id: &str,
        priority: Priority,
    ) -> Result<Vec<WrapupCode>, PlatformError> {
        let endpoint = endpoints::PARTICIPANT_WRAPUPCODES;
        let segs = ["api", "v2", "conversations", conversation_id, "participants", participant_id, "wrapupcodes"];
        let call = Call::new(Method::GET, endpoint, self.api_url(endpoint, &segs)?, priority)
            .for_leg(conversation_id, Some(participant_id));
        let resp = self.execute(&call).await?;
        // The contract is a bare array; accept a listing too rather than fail on a wrapper.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Codes {
            Bare(Vec<WrapupCode>),
            Listing(EntityListing<WrapupCode>),
        }
        Ok(match decode::<Codes>(endpoint, &resp)? {
            Codes::Bare(v) => v,
            Codes::Listing(l) => l.entities,
        })
    }

    /// Writes a wrap-up (`POST /api/v2/conversations/{media}/{cid}/participants/{pid}/communications/{commId}/wrapup`,
    /// 202 with an empty body).
    pub async fn post_wrapup(
        &self,
        media: &str,
        conversation_id: &str,
        participant_id: &str,
        communication_id: &str,
        input: &WrapupInput,
        priority: Priority,
    ) -> Result<Accepted, PlatformError> {
        self.post_wrapup_if(media, conversation_id, participant_id, communication_id, input, priority, None).await
    }

    /// [`Self::post_wrapup`], sent only if `precondition` still holds once the request has its budget permit;
    /// otherwise [`ErrorClass::PreconditionFailed`] and nothing is sent.
    #[allow(clippy::too_many_arguments)]
    pub async fn post_wrapup_if(
        &self,
        media: &str,
        conversation_id: &str,
        participant_id: &str,
        communication_id: &str,
        input: &WrapupInput,
        priority: Priority,
        precondition: Option<&dyn Precondition>,
    ) -> Result<Accepted, PlatformError> {
        let endpoint = endpoints::POST_WRAPUP;
        check_media(endpoint, media, &WRITE_MEDIA)?;
        let segs = [
            "api",
            "v2",
            "conversations",
            media,
            conversation_id,
            "participants",
            participant_id,
            "communications",
            communication_id,
            "wrapup",
        ];
        let call = Call::new(Method::POST, endpoint, self.api_url(endpoint, &segs)?, priority)
            .with_body(encode(endpoint, input)?)
            .for_leg(conversation_id, Some(participant_id))
            .if_still(precondition);
        let resp = self.execute(&call).await?;
        Ok(Accepted { correlation_id: resp.correlation_id })
    }

    /// The generic conversation (`GET /api/v2/conversations/{conversationId}`).
    pub async fn get_conversation(
        &self,
        conversation_id: &str,
        priority: Priority,
    ) -> Result<Conversation, PlatformError> {
        let endpoint = endpoints::CONVERSATION;
        let call = Call::new(
            Method::GET,
            endpoint,
            self.api_url(endpoint, &["api", "v2", "conversations", conversation_id])?,
            priority,
        )
        .for_leg(conversation_id, None);
        decode(endpoint, &self.execute(&call).await?)
    }

    /// Every wrap-up code of the org (all pages of `GET /api/v2/routing/wrapupcodes`).
    pub async fn list_wrapupcodes(&self, priority: Priority) -> Result<Vec<WrapupCode>, PlatformError> {
        let endpoint = endpoints::WRAPUPCODES;
        self.list_all(endpoint, &["api", "v2", "routing", "wrapupcodes"], priority).await
    }

    /// Every queue of the org with its `acwSettings` (all pages of `GET /api/v2/routing/queues`).
    pub async fn list_queues(&self, priority: Priority) -> Result<Vec<Queue>, PlatformError> {
        self.list_all(endpoints::QUEUES, &["api", "v2", "routing", "queues"], priority).await
    }

    /// The codes assigned to a queue (all pages of `GET /api/v2/routing/queues/{queueId}/wrapupcodes`).
    pub async fn list_queue_wrapupcodes(
        &self,
        queue_id: &str,
        priority: Priority,
    ) -> Result<Vec<WrapupCode>, PlatformError> {
        let segs = ["api", "v2", "routing", "queues", queue_id, "wrapupcodes"];
        self.list_all(endpoints::QUEUE_WRAPUPCODES, &segs, priority).await
    }

    /// Creates a wrap-up code (`POST /api/v2/routing/wrapupcodes`).
    pub async fn create_wrapupcode(
        &self,
        request: &WrapupCodeRequest,
        priority: Priority,
    ) -> Result<WrapupCode, PlatformError> {
        let endpoint = endpoints::WRAPUPCODES;
        let call = Call::new(
            Method::POST,
            endpoint,
            self.api_url(endpoint, &["api", "v2", "routing", "wrapupcodes"])?,
            priority,
        )
        .with_body(encode(endpoint, request)?);
        decode(endpoint, &self.execute(&call).await?)
    }

    /// Assigns codes to a queue (`POST /api/v2/routing/queues/{queueId}/wrapupcodes`, 100 per request). Returns the
    /// codes the platform reports as assigned. Stops at the first failed chunk (earlier chunks stay applied; the
    /// operation is idempotent, so re-running it is safe).
    pub async fn add_queue_wrapupcodes(
        &self,
        queue_id: &str,
        code_ids: &[String],
        priority: Priority,
    ) -> Result<Vec<WrapupCode>, PlatformError> {
        let endpoint = endpoints::QUEUE_WRAPUPCODES;
        let url = self.api_url(endpoint, &["api", "v2", "routing", "queues", queue_id, "wrapupcodes"])?;
        let mut added = Vec::new();
        for chunk in code_ids.chunks(QUEUE_CODES_CHUNK) {
            let refs: Vec<IdRef<'_>> = chunk.iter().map(|id| IdRef { id }).collect();
            let call = Call::new(Method::POST, endpoint, url.clone(), priority).with_body(encode(endpoint, &refs)?);
            let resp = self.execute(&call).await?;
            if !resp.body.iter().all(u8::is_ascii_whitespace) {
                added.extend(decode::<Vec<WrapupCode>>(endpoint, &resp)?);
            }
        }
        Ok(added)
    }

    /// `POST /api/v2/analytics/conversations/details/query` with a `ConversationQuery` body, returning the raw
    /// `AnalyticsConversationQueryResponse`.
    pub async fn analytics_details_query(
        &self,
        query: &serde_json::Value,
        priority: Priority,
    ) -> Result<serde_json::Value, PlatformError> {
        let endpoint = endpoints::ANALYTICS_DETAILS_QUERY;
        let segs = ["api", "v2", "analytics", "conversations", "details", "query"];
        let call = Call::new(Method::POST, endpoint, self.api_url(endpoint, &segs)?, priority)
            .with_body(encode(endpoint, query)?);
        decode(endpoint, &self.execute(&call).await?)
    }

    /// `POST /api/v2/notifications/channels` → `{connectUri, id, expires}`.
    pub async fn create_notification_channel(
        &self,
        priority: Priority,
    ) -> Result<crate::genesys::notifications::Channel, PlatformError> {
        let endpoint = endpoints::NOTIFICATION_CHANNELS;
        let call = Call::new(
            Method::POST,
            endpoint,
            self.api_url(endpoint, &["api", "v2", "notifications", "channels"])?,
            priority,
        );
        decode(endpoint, &self.execute(&call).await?)
    }

    /// `POST /api/v2/notifications/channels/{channelId}/subscriptions` with `[{"id": topic}, …]`. Returns the raw
    /// response (`{entities:[{id, state, rejectionReason, …}]}`).
    pub async fn subscribe_notification_topics(
        &self,
        channel_id: &str,
        topics: &[String],
        priority: Priority,
    ) -> Result<serde_json::Value, PlatformError> {
        let endpoint = endpoints::NOTIFICATION_SUBSCRIPTIONS;
        let refs: Vec<IdRef<'_>> = topics.iter().map(|id| IdRef { id }).collect();
        let call = Call::new(
            Method::POST,
            endpoint,
            self.api_url(endpoint, &["api", "v2", "notifications", "channels", channel_id, "subscriptions"])?,
            priority,
        )
        .with_body(encode(endpoint, &refs)?);
        let resp = self.execute(&call).await?;
        if resp.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        decode(endpoint, &resp)
    }

    // ----- request path ------------------------------------------------------------------------------------------

    /// `base_url` + percent-encoded path segments. Ids come from events (untrusted): each is one encoded segment,
    /// so an id cannot change the path, and empty ids are refused.
    fn api_url(&self, endpoint: &'static str, segments: &[&str]) -> Result<Url, PlatformError> {
        if segments.iter().any(|s| s.is_empty()) {
            return Err(PlatformError::transport(ErrorClass::Permanent, endpoint, "an id in the path is empty"));
        }
        join(&self.inner.base_url, segments)
            .ok_or_else(|| PlatformError::transport(ErrorClass::Permanent, endpoint, "the base URL cannot take a path"))
    }

    async fn list_all<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        segments: &[&str],
        priority: Priority,
    ) -> Result<Vec<T>, PlatformError> {
        let base = self.api_url(endpoint, segments)?;
        let mut out = Vec::new();
        let mut page: u32 = 1;
        loop {
            let mut url = base.clone();
            url.query_pairs_mut().append_pair("pageSize", PAGE_SIZE).append_pair("pageNumber", &page.to_string());
            let call = Call::new(Method::GET, endpoint, url, priority);
            let listing: EntityListing<T> = decode(endpoint, &self.execute(&call).await?)?;
            let empty = listing.entities.is_empty();
            out.extend(listing.entities);
            let page_count = listing.page_count.unwrap_or(page);
            if empty || page >= page_count || page >= MAX_PAGES {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// Budget → token → send → feed back → (one 401 refresh) → classify. See the module docs.
    async fn execute(&self, call: &Call<'_>) -> Result<Response, PlatformError> {
        let mut refreshed = false;
        let mut token_failures = 0;
        loop {
            // A request whose deadline passes while it waits for the budget is dropped from the queue unsent: the
            // work it was for is no longer useful, and sending it would spend budget other legs need.
            let deadline_passed = || {
                PlatformError::transport(
                    ErrorClass::DeadlinePassed,
                    call.endpoint,
                    "the deadline passed while the request waited for the budget",
                )
            };
            let permit = match call.priority.expires_at() {
                Some(deadline) => {
                    let clock = &self.inner.clock;
                    let wait = clock.wall_duration(deadline.duration_since(clock.now()));
                    match tokio::time::timeout(wait, self.inner.budget.acquire(call.priority)).await {
                        Ok(permit) => permit,
                        Err(_) => return Err(deadline_passed()),
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
            let credential = &self.inner.credentials[permit.credential];
            let token = match credential.tokens.get(|| self.fetch_token(permit.credential)).await {
                Ok(token) => token,
                Err(e) => {
                    let failed = permit.credential;
                    permit.unsent();
                    token_failures += 1;
                    // With the credential sidelined, another pooled credential can still serve this call.
                    if self.sideline(failed, &e) && token_failures < self.inner.credentials.len() {
                        continue;
                    }
                    return Err(e);
                }
            };
            match self.send(call, permit, &token).await {
                Err(e) if e.status == Some(401) && !refreshed => {
                    tracing::debug!(
                        connection = self.name(),
                        endpoint = call.endpoint,
                        "The platform refused the access token; refreshing it once."
                    );
                    credential.tokens.invalidate(&token).await;
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    /// Takes a credential whose token request failed out of rotation for a while, so pooled work flows to the
    /// others: for the login host's `Retry-After` when it rate-limits us, and for a minute when it refuses the
    /// credential outright — but only while another credential is still in rotation, so that when every
    /// credential is refused calls fail fast with [`ErrorClass::Auth`] instead of stalling in the queue.
    /// Returns whether the credential was sidelined.
    fn sideline(&self, credential: usize, e: &PlatformError) -> bool {
        let pause = match &e.class {
            ErrorClass::RateLimited { retry_after } => retry_after.unwrap_or(Duration::from_secs(5)),
            ErrorClass::Auth => {
                let others_in_rotation = self
                    .inner
                    .budget
                    .status()
                    .iter()
                    .enumerate()
                    .any(|(i, s)| i != credential && s.paused_for.is_none());
                if !others_in_rotation {
                    return false;
                }
                Duration::from_secs(60)
            }
            _ => return false,
        };
        self.inner.budget.pause(credential, pause);
        true
    }

    /// The time limit of one attempt for a live leg: a third of the wall time left before its deadline (at least
    /// [`LIVE_MIN_TIMEOUT`], at most the connection's timeout). A request that hangs — the platform may have acted
    /// on it and only the answer is late — then leaves room to retry, and for the gate read that tells whether an
    /// unanswered write landed, inside the window. Other work keeps the connection's timeout.
    fn live_timeout(&self, priority: Priority) -> Option<Duration> {
        let deadline = priority.expires_at().filter(|_| priority.class == PriorityClass::Live)?;
        let clock = &self.inner.clock;
        let left = clock.wall_duration(deadline.duration_since(clock.now()));
        Some((left / 3).clamp(LIVE_MIN_TIMEOUT, self.inner.request_timeout.max(LIVE_MIN_TIMEOUT)))
    }

    /// One attempt with one token, paid for by `permit` (whose answer, headers and all, goes back to the budget).
    async fn send(&self, call: &Call<'_>, permit: Permit, token: &Secret) -> Result<Response, PlatformError> {
        let credential = permit.credential;
        let started = self.started();
        let mut req = self
            .inner
            .http
            .request(call.method.clone(), call.url.clone())
            .bearer_auth(token.expose())
            .header(ACCEPT, "application/json");
        if let Some(body) = &call.body {
            req = req.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        if let Some(timeout) = self.live_timeout(call.priority) {
            req = req.timeout(timeout);
        }
        let (status, correlation_id, result) = match req.send().await {
            Err(e) => (None, None, Err(PlatformError::from_reqwest(call.endpoint, &e))),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let correlation_id = header_str(&headers, "inin-correlation-id").map(str::to_string);
                let reset = header_u32(&headers, "inin-ratelimit-reset").map(|s| Duration::from_secs(u64::from(s)));
                permit.answered(RateLimits {
                    allowed: header_u32(&headers, "inin-ratelimit-allowed"),
                    count: header_u32(&headers, "inin-ratelimit-count"),
                    reset,
                });
                let result = match read_limited(resp, MAX_RESPONSE_BYTES).await {
                    Err(e) => Err(body_error(call.endpoint, status, correlation_id.clone(), e)),
                    Ok(body) if (200..300).contains(&status) => {
                        Ok(Response { body, correlation_id: correlation_id.clone() })
                    }
                    Ok(body) => {
                        let e = classify(
                            call.endpoint,
                            status,
                            header_str(&headers, "retry-after"),
                            correlation_id.clone(),
                            &body,
                        );
                        if let ErrorClass::RateLimited { retry_after } = &e.class {
                            self.inner
                                .budget
                                .pause(credential, retry_after.or(reset).unwrap_or(Duration::from_secs(1)));
                        }
                        Err(e)
                    }
                };
                (Some(status), correlation_id, result)
            }
        };
        let what = AttemptOf {
            endpoint: call.endpoint,
            method: method_name(&call.method),
            conversation_id: call.conversation_id,
            participant_id: call.participant_id,
            is_token: false,
        };
        self.record(what, started, status, correlation_id, &result);
        result
    }

    /// `POST {login}/oauth/token` for one credential. Token requests do not draw on the API budget (the login host
    /// has its own limit) but are counted as attempts.
    async fn fetch_token(&self, credential: usize) -> Result<Grant, PlatformError> {
        let endpoint = endpoints::TOKEN;
        let cred = &self.inner.credentials[credential];
        let url = join(&self.inner.login_url, &["oauth", "token"])
            .ok_or_else(|| PlatformError::transport(ErrorClass::Auth, endpoint, "the login URL cannot take a path"))?;
        let started = self.started();
        let sent = self
            .inner
            .http
            .post(url)
            .basic_auth(&cred.client_id, Some(cred.secret.expose()))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body("grant_type=client_credentials")
            .send()
            .await;
        let (status, correlation_id, result) = match sent {
            Err(e) => (None, None, Err(PlatformError::from_reqwest(endpoint, &e))),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let correlation_id = header_str(&headers, "inin-correlation-id").map(str::to_string);
                let result = match read_limited(resp, MAX_RESPONSE_BYTES).await {
                    Err(e) => Err(body_error(endpoint, status, correlation_id.clone(), e)),
                    Ok(body) if (200..300).contains(&status) => {
                        match serde_json::from_slice::<TokenResponse>(&body) {
                            Ok(t) if !t.access_token.is_empty() => Ok(Grant {
                                access_token: Secret::new(t.access_token),
                                // Genesys always sends expires_in (86399 by default); be conservative without it.
                                expires_in: Duration::from_secs(t.expires_in.unwrap_or(600)),
                            }),
                            _ => Err(PlatformError {
                                class: ErrorClass::Auth,
                                status: Some(status),
                                code: None,
                                message: "the token response has no access_token".into(),
                                correlation_id: correlation_id.clone(),
                                endpoint,
                            }),
                        }
                    }
                    Ok(body) => {
                        let mut e = classify(
                            endpoint,
                            status,
                            header_str(&headers, "retry-after"),
                            correlation_id.clone(),
                            &body,
                        );
                        // A refused token request is an authentication problem, whatever its status.
                        if matches!(e.class, ErrorClass::Permanent | ErrorClass::Forbidden { .. }) {
                            e.class = ErrorClass::Auth;
                        }
                        Err(e)
                    }
                };
                (Some(status), correlation_id, result)
            }
        };
        if let Err(e) = &result {
            tracing::warn!(connection = self.name(), client_id = %cred.client_id, error = %e, "A token request failed.");
        }
        let what = AttemptOf { endpoint, method: "POST", conversation_id: None, participant_id: None, is_token: true };
        self.record(what, started, status, correlation_id, &result);
        result
    }

    /// Reports one finished attempt (sink, stats, metrics).
    fn record<T>(
        &self,
        what: AttemptOf<'_>,
        started: Started,
        status: Option<u16>,
        correlation_id: Option<String>,
        result: &Result<T, PlatformError>,
    ) {
        let attempt = ApiAttempt {
            connection: self.name().to_string(),
            endpoint: what.endpoint,
            method: what.method,
            status,
            correlation_id,
            duration_ms: u64::try_from(started.instant.elapsed().as_millis()).unwrap_or(u64::MAX),
            at: started.at,
            error_class: result.as_ref().err().map(|e| e.class.clone()),
            conversation_id: what.conversation_id.map(str::to_string),
            participant_id: what.participant_id.map(str::to_string),
        };
        tracing::debug!(
            connection = self.name(),
            endpoint = what.endpoint,
            method = what.method,
            status = ?attempt.status,
            duration_ms = attempt.duration_ms,
            "Platform call finished."
        );
        self.inner.recorder.record(attempt, what.is_token);
    }

    fn started(&self) -> Started {
        Started { at: self.inner.clock.now(), instant: tokio::time::Instant::now() }
    }
}

fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    }
}

fn join(base: &Url, segments: &[&str]) -> Option<Url> {
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url.path_segments_mut().ok()?;
        path.pop_if_empty();
        path.extend(segments);
    }
    Some(url)
}

fn check_media(endpoint: &'static str, media: &str, allowed: &[&str]) -> Result<(), PlatformError> {
    if allowed.contains(&media) {
        Ok(())
    } else {
        Err(PlatformError::transport(
            ErrorClass::Permanent,
            endpoint,
            format!("media type {media:?} has no such endpoint (expected one of {})", allowed.join(", ")),
        ))
    }
}

fn body_error(endpoint: &'static str, status: u16, correlation_id: Option<String>, e: BodyError) -> PlatformError {
    let class = match e {
        // A response this large is not a wrap-up API response; retrying will not shrink it.
        BodyError::TooLarge { .. } => ErrorClass::Permanent,
        BodyError::Read(_) => ErrorClass::Retryable,
    };
    PlatformError { class, status: Some(status), code: None, message: e.to_string(), correlation_id, endpoint }
}

fn encode<T: Serialize + ?Sized>(endpoint: &'static str, value: &T) -> Result<Vec<u8>, PlatformError> {
    let body = serde_json::to_vec(value).map_err(|e| {
        PlatformError::transport(ErrorClass::Permanent, endpoint, format!("the request body could not be encoded: {e}"))
    })?;
    if body.len() > MAX_REQUEST_BYTES {
        return Err(PlatformError::transport(
            ErrorClass::Permanent,
            endpoint,
            format!("the request body exceeds {MAX_REQUEST_BYTES} bytes"),
        ));
    }
    Ok(body)
}

fn decode<T: DeserializeOwned>(endpoint: &'static str, resp: &Response) -> Result<T, PlatformError> {
    serde_json::from_slice(&resp.body).map_err(|e| PlatformError {
        // The platform answered 2xx with a body we cannot read: retrying reads the same body.
        class: ErrorClass::Permanent,
        status: None,
        code: Some("undecodable.response".into()),
        message: format!("the response body could not be decoded: {e}"),
        correlation_id: resp.correlation_id.clone(),
        endpoint,
    })
}
