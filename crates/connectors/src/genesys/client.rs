//! The Genesys Cloud API client: one per connection.
//!
//! Every call takes the shared call path ([`crate::call`]): budget, precondition, token, send, feed back, one 401
//! refresh, classify, record. What is Genesys's own:
//!
//! - **Token**: `POST {login}/oauth/token`, Basic auth, `grant_type=client_credentials`, one token per OAuth client
//!   of the connection; all clients' windows feed the one [`Budget`](crate::budget::Budget).
//! - **Feedback**: the `inin-ratelimit-*` headers of every answer go to the budget; a 429 pauses the credential for
//!   its `Retry-After` (else the window's reset, else 1 s). A credential whose token request fails is sidelined so
//!   pooled work flows to the others.
//! - **Classification**: [`crate::error::classify`] reads Genesys's `ErrorBody`; `ININ-Correlation-Id` is kept.
//!
//! No call retries on its own beyond the one 401 refresh: short retries are the caller's choice through
//! [`crate::retry::call_with_retry`], durable ones the leg state machine's.

use crate::attempt::SharedAttemptSink;
use crate::budget::{Priority, RateLimits};
pub use crate::call::ConfigError;
use crate::call::{join, Answer, AttemptOf, Client, Platform, Request, Setup};
use crate::error::{classify, ErrorClass, PlatformError};
use crate::genesys::model::*;
use crate::genesys::DEFAULT_REQUESTS_PER_MINUTE;
use crate::http::{header_str, header_u32};
use crate::token::Grant;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::time::Instant;
use url::Url;
use wrapup_core::clock::SharedClock;
use wrapup_core::Secret;

pub use crate::call::{Precondition, LIVE_MIN_TIMEOUT};

/// Media path segments that have a `POST …/communications/{commId}/wrapup` endpoint.
pub const WRITE_MEDIA: [&str; 8] =
    ["calls", "callbacks", "emails", "messages", "cobrowsesessions", "screenshares", "socials", "videos"];

/// Media path segments accepted by `GET /api/v2/conversations/{media}/…/participants/{pid}/wrapup`.
const READ_MEDIA: [&str; 5] = ["calls", "callbacks", "emails", "messages", "cobrowsesessions"];

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
    pub const WRAPUPCODE: &str = "/api/v2/routing/wrapupcodes/{codeId}";
    pub const QUEUE_WRAPUPCODE: &str = "/api/v2/routing/queues/{queueId}/wrapupcodes/{codeId}";
    pub const ANALYTICS_AGGREGATES_QUERY: &str = "/api/v2/analytics/conversations/aggregates/query";
    pub const AUDIT_REALTIME_QUERY: &str = "/api/v2/audits/query/realtime";
    pub const AUDIT_QUERY: &str = "/api/v2/audits/query";
    pub const AUDIT_QUERY_STATUS: &str = "/api/v2/audits/query/{transactionId}";
    pub const AUDIT_QUERY_RESULTS: &str = "/api/v2/audits/query/{transactionId}/results";
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

/// The Genesys Cloud client of one connection. Cheap to clone; clones share budget, tokens and stats.
pub type GenesysClient = Client<Genesys>;

/// What the Genesys client holds besides the shared call path: its hosts and OAuth clients.
pub struct Genesys {
    base_url: Url,
    login_url: Url,
    /// `(client id, client secret)` per credential, in the budget's order.
    credentials: Vec<(String, Secret)>,
}

impl std::fmt::Debug for GenesysClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Client ids are not secret but are not needed here either; secrets and tokens are never printed.
        f.debug_struct("GenesysClient")
            .field("connection", &self.name())
            .field("base_url", &self.platform().base_url.as_str())
            .field("credentials", &self.platform().credentials.len())
            .finish()
    }
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
        let setup = Setup {
            name: conn.name,
            urls: vec![("base", conn.base_url.clone()), ("login", conn.login_url.clone())],
            credentials: conn.credentials.len(),
            requests_per_minute: conn.requests_per_minute,
            request_timeout: conn.request_timeout,
            clock,
            sink,
        };
        let platform = Genesys { base_url: conn.base_url, login_url: conn.login_url, credentials: conn.credentials };
        Client::build(setup, platform)
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
        let call =
            Request::new(Method::GET, endpoint, url, priority).for_leg(Some(conversation_id), Some(participant_id));
        let resp = match self.execute(&call).await {
            Ok(r) => r,
            Err(e) if e.status == Some(404) && e.code.as_deref().is_none_or(|c| c == "not.found") => return Ok(None),
            Err(e) => return Err(e),
        };
        if resp.is_blank() {
            return Ok(None);
        }
        let assigned: Option<AssignedWrapup> = resp.decode(endpoint)?;
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
        let call =
            self.request(Method::GET, endpoint, &segs, priority)?.for_leg(Some(conversation_id), Some(participant_id));
        let resp = self.execute(&call).await?;
        // The contract is a bare array; accept a listing too rather than fail on a wrapper.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Codes {
            Bare(Vec<WrapupCode>),
            Listing(EntityListing<WrapupCode>),
        }
        Ok(match resp.decode::<Codes>(endpoint)? {
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
        let call = self
            .request(Method::POST, endpoint, &segs, priority)?
            .json(input)?
            .for_leg(Some(conversation_id), Some(participant_id))
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
        let call = self
            .request(Method::GET, endpoint, &["api", "v2", "conversations", conversation_id], priority)?
            .for_leg(Some(conversation_id), None);
        self.execute(&call).await?.decode(endpoint)
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
        let call =
            self.request(Method::POST, endpoint, &["api", "v2", "routing", "wrapupcodes"], priority)?.json(request)?;
        self.execute(&call).await?.decode(endpoint)
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
            let call = Request::new(Method::POST, endpoint, url.clone(), priority).json(&refs)?;
            let resp = self.execute(&call).await?;
            if !resp.is_blank() {
                added.extend(resp.decode::<Vec<WrapupCode>>(endpoint)?);
            }
        }
        Ok(added)
    }

    /// One wrap-up code (`GET /api/v2/routing/wrapupcodes/{codeId}`); `None` on 404.
    pub async fn get_wrapupcode(&self, code_id: &str, priority: Priority) -> Result<Option<WrapupCode>, PlatformError> {
        let endpoint = endpoints::WRAPUPCODE;
        let call = self.request(Method::GET, endpoint, &["api", "v2", "routing", "wrapupcodes", code_id], priority)?;
        match self.execute(&call).await {
            Ok(resp) => resp.decode(endpoint).map(Some),
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The codes whose name is `name` (case-insensitive: `GET /api/v2/routing/wrapupcodes?name=`). A `*` in the
    /// name is the platform's wildcard, so such a name is matched on the full listing instead.
    pub async fn find_wrapupcodes(&self, name: &str, priority: Priority) -> Result<Vec<WrapupCode>, PlatformError> {
        if name.contains('*') {
            let all = self.list_wrapupcodes(priority).await?;
            return Ok(all.into_iter().filter(|c| c.name.eq_ignore_ascii_case(name)).collect());
        }
        let endpoint = endpoints::WRAPUPCODES;
        let mut url = self.api_url(endpoint, &["api", "v2", "routing", "wrapupcodes"])?;
        url.query_pairs_mut().append_pair("name", name).append_pair("pageSize", PAGE_SIZE);
        let call = Request::new(Method::GET, endpoint, url, priority);
        let listing: EntityListing<WrapupCode> = self.execute(&call).await?.decode(endpoint)?;
        Ok(listing.entities.into_iter().filter(|c| c.name.eq_ignore_ascii_case(name)).collect())
    }

    /// Replaces a wrap-up code's name, description and division (`PUT /api/v2/routing/wrapupcodes/{codeId}`; the
    /// platform keeps no version: the last writer wins).
    pub async fn update_wrapupcode(
        &self,
        code_id: &str,
        request: &WrapupCodeRequest,
        priority: Priority,
    ) -> Result<WrapupCode, PlatformError> {
        let endpoint = endpoints::WRAPUPCODE;
        let segs = ["api", "v2", "routing", "wrapupcodes", code_id];
        let call = self.request(Method::PUT, endpoint, &segs, priority)?.json(request)?;
        self.execute(&call).await?.decode(endpoint)
    }

    /// Deletes a wrap-up code (`DELETE /api/v2/routing/wrapupcodes/{codeId}`); it also leaves every queue.
    pub async fn delete_wrapupcode(&self, code_id: &str, priority: Priority) -> Result<(), PlatformError> {
        let endpoint = endpoints::WRAPUPCODE;
        let segs = ["api", "v2", "routing", "wrapupcodes", code_id];
        let call = self.request(Method::DELETE, endpoint, &segs, priority)?;
        self.execute(&call).await.map(|_| ())
    }

    /// Removes one code from a queue (`DELETE /api/v2/routing/queues/{queueId}/wrapupcodes/{codeId}`).
    pub async fn remove_queue_wrapupcode(
        &self,
        queue_id: &str,
        code_id: &str,
        priority: Priority,
    ) -> Result<(), PlatformError> {
        let endpoint = endpoints::QUEUE_WRAPUPCODE;
        let segs = ["api", "v2", "routing", "queues", queue_id, "wrapupcodes", code_id];
        let call = self.request(Method::DELETE, endpoint, &segs, priority)?;
        self.execute(&call).await.map(|_| ())
    }

    /// `POST /api/v2/analytics/conversations/aggregates/query` with a `ConversationAggregationQuery`, raw answer.
    pub async fn analytics_aggregates_query(
        &self,
        query: &serde_json::Value,
        priority: Priority,
    ) -> Result<serde_json::Value, PlatformError> {
        let endpoint = endpoints::ANALYTICS_AGGREGATES_QUERY;
        let segs = ["api", "v2", "analytics", "conversations", "aggregates", "query"];
        let call = self.request(Method::POST, endpoint, &segs, priority)?.json(query)?;
        self.execute(&call).await?.decode(endpoint)
    }

    /// `POST /api/v2/audits/query/realtime` with an `AuditRealtimeQueryRequest`, raw answer (one page).
    pub async fn audit_realtime_query(
        &self,
        query: &serde_json::Value,
        priority: Priority,
    ) -> Result<serde_json::Value, PlatformError> {
        let endpoint = endpoints::AUDIT_REALTIME_QUERY;
        let segs = ["api", "v2", "audits", "query", "realtime"];
        let call = self.request(Method::POST, endpoint, &segs, priority)?.json(query)?;
        self.execute(&call).await?.decode(endpoint)
    }

    /// Submits an asynchronous audit query (`POST /api/v2/audits/query`); the raw status (`id`, `state`).
    pub async fn audit_query_submit(
        &self,
        query: &serde_json::Value,
        priority: Priority,
    ) -> Result<serde_json::Value, PlatformError> {
        let endpoint = endpoints::AUDIT_QUERY;
        let call = self.request(Method::POST, endpoint, &["api", "v2", "audits", "query"], priority)?.json(query)?;
        self.execute(&call).await?.decode(endpoint)
    }

    /// The status of an asynchronous audit query (`GET /api/v2/audits/query/{transactionId}`).
    pub async fn audit_query_status(&self, id: &str, priority: Priority) -> Result<serde_json::Value, PlatformError> {
        let endpoint = endpoints::AUDIT_QUERY_STATUS;
        let call = self.request(Method::GET, endpoint, &["api", "v2", "audits", "query", id], priority)?;
        self.execute(&call).await?.decode(endpoint)
    }

    /// One page of an asynchronous audit query's results (`GET …/{transactionId}/results?cursor=&pageSize=500`).
    pub async fn audit_query_results(
        &self,
        id: &str,
        cursor: Option<&str>,
        priority: Priority,
    ) -> Result<serde_json::Value, PlatformError> {
        let endpoint = endpoints::AUDIT_QUERY_RESULTS;
        let mut url = self.api_url(endpoint, &["api", "v2", "audits", "query", id, "results"])?;
        url.query_pairs_mut().append_pair("pageSize", "500");
        if let Some(c) = cursor {
            url.query_pairs_mut().append_pair("cursor", c);
        }
        let call = Request::new(Method::GET, endpoint, url, priority);
        self.execute(&call).await?.decode(endpoint)
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
        let call = self.request(Method::POST, endpoint, &segs, priority)?.json(query)?;
        self.execute(&call).await?.decode(endpoint)
    }

    /// `POST /api/v2/notifications/channels` → `{connectUri, id, expires}`.
    pub async fn create_notification_channel(
        &self,
        priority: Priority,
    ) -> Result<crate::genesys::notifications::Channel, PlatformError> {
        let endpoint = endpoints::NOTIFICATION_CHANNELS;
        let call = self.request(Method::POST, endpoint, &["api", "v2", "notifications", "channels"], priority)?;
        self.execute(&call).await?.decode(endpoint)
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
        let segs = ["api", "v2", "notifications", "channels", channel_id, "subscriptions"];
        let resp = self.execute(&self.request(Method::POST, endpoint, &segs, priority)?.json(&refs)?).await?;
        if resp.is_blank() {
            return Ok(serde_json::Value::Null);
        }
        resp.decode(endpoint)
    }

    // ----- request path ------------------------------------------------------------------------------------------

    /// `base_url` + percent-encoded path segments (see [`join`]).
    fn api_url(&self, endpoint: &'static str, segments: &[&str]) -> Result<Url, PlatformError> {
        join(endpoint, &self.platform().base_url, segments)
    }

    /// A request to `base_url` + `segments`.
    fn request<'a>(
        &self,
        method: Method,
        endpoint: &'static str,
        segments: &[&str],
        priority: Priority,
    ) -> Result<Request<'a, Url>, PlatformError> {
        Ok(Request::new(method, endpoint, self.api_url(endpoint, segments)?, priority))
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
            let call = Request::new(Method::GET, endpoint, url, priority);
            let listing: EntityListing<T> = self.execute(&call).await?.decode(endpoint)?;
            let empty = listing.entities.is_empty();
            out.extend(listing.entities);
            let page_count = listing.page_count.unwrap_or(page);
            if empty || page >= page_count || page >= MAX_PAGES {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// `POST {login}/oauth/token` for one credential. Token requests do not draw on the API budget (the login host
    /// has its own limit) but are counted as attempts.
    async fn fetch_token(&self, credential: usize) -> Result<Grant, PlatformError> {
        let endpoint = endpoints::TOKEN;
        let (client_id, secret) = &self.platform().credentials[credential];
        let url = join(endpoint, &self.platform().login_url, &["oauth", "token"])
            .map_err(|_| PlatformError::transport(ErrorClass::Auth, endpoint, "the login URL cannot take a path"))?;
        let req = self
            .http()
            .post(url)
            .basic_auth(client_id, Some(secret.expose()))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body("grant_type=client_credentials");
        let result = self
            .exchange(req, AttemptOf::auth_host(endpoint, "POST", true), None, |answer| {
                if !(200..300).contains(&answer.status) {
                    let mut e = Genesys::classify(endpoint, &answer);
                    // A refused token request is an authentication problem, whatever its status.
                    if matches!(e.class, ErrorClass::Permanent | ErrorClass::Forbidden { .. }) {
                        e.class = ErrorClass::Auth;
                    }
                    return Err(e);
                }
                match serde_json::from_slice::<TokenResponse>(&answer.body) {
                    Ok(t) if !t.access_token.is_empty() => Ok(Grant {
                        access_token: Secret::new(t.access_token),
                        // Genesys always sends expires_in (86399 by default); be conservative without it.
                        expires_in: Duration::from_secs(t.expires_in.unwrap_or(600)),
                    }),
                    _ => Err(PlatformError {
                        class: ErrorClass::Auth,
                        status: Some(answer.status),
                        code: None,
                        message: "the token response has no access_token".into(),
                        correlation_id: answer.correlation_id,
                        endpoint,
                    }),
                }
            })
            .await;
        if let Err(e) = &result {
            tracing::warn!(connection = self.name(), client_id = %client_id, error = %e, "A token request failed.");
        }
        result
    }
}

impl Platform for Genesys {
    type Target = Url;

    fn correlation_id(headers: &HeaderMap) -> Option<String> {
        header_str(headers, "inin-correlation-id").map(str::to_string)
    }

    fn rate_limits(headers: &HeaderMap) -> RateLimits {
        RateLimits {
            allowed: header_u32(headers, "inin-ratelimit-allowed"),
            count: header_u32(headers, "inin-ratelimit-count"),
            reset: header_u32(headers, "inin-ratelimit-reset").map(|s| Duration::from_secs(u64::from(s))),
        }
    }

    fn classify(endpoint: &'static str, answer: &Answer) -> PlatformError {
        let retry_after = header_str(&answer.headers, "retry-after");
        classify(endpoint, answer.status, retry_after, answer.correlation_id.clone(), &answer.body)
    }

    async fn fetch_token(client: &GenesysClient, credential: usize) -> Result<Grant, PlatformError> {
        client.fetch_token(credential).await
    }

    async fn url(_: &GenesysClient, _: &Secret, request: &Request<'_, Url>) -> Result<Url, PlatformError> {
        Ok(request.target.clone())
    }

    /// Takes a credential whose token request failed out of rotation for a while, so pooled work flows to the
    /// others: for the login host's `Retry-After` when it rate-limits us, and for a minute when it refuses the
    /// credential outright — but only while another credential is still in rotation, so that when every
    /// credential is refused calls fail fast with [`ErrorClass::Auth`] instead of stalling in the queue.
    fn sideline(client: &GenesysClient, credential: usize, e: &PlatformError) -> bool {
        let pause = match &e.class {
            ErrorClass::RateLimited { retry_after } => retry_after.unwrap_or(Duration::from_secs(5)),
            ErrorClass::Auth => {
                let others_in_rotation =
                    client.budget().status().iter().enumerate().any(|(i, s)| i != credential && s.paused_for.is_none());
                if !others_in_rotation {
                    return false;
                }
                Duration::from_secs(60)
            }
            _ => return false,
        };
        client.budget().pause(credential, pause);
        true
    }

    /// A 429 pauses the credential for its `Retry-After`, else until its window resets, else for a second.
    fn rate_limit_pause(&self, retry_after: Option<Duration>, limits: RateLimits, _: Instant) -> Option<Duration> {
        Some(retry_after.or(limits.reset).unwrap_or(Duration::from_secs(1)))
    }
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
