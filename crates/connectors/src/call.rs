//! The one call path every platform request takes.
//!
//! A [`Client`] is one connection's client: the shared request budget, one token cache per credential, the HTTP
//! client, the attempt recorder and the clock, plus the platform's own state `P`. Every API request goes through
//! `Client::execute`:
//!
//! 1. **Budget.** Wait for a [`Permit`] at the request's [`Priority`]. A request whose deadline passes while it
//!    waits is dropped unsent with [`ErrorClass::DeadlinePassed`]: the work it was for is no longer useful, and
//!    sending it would spend budget other legs need.
//! 2. **Precondition**, if any, checked once the permit is held and before anything is sent.
//! 3. **Token and URL.** The permit's credential's token from its [`TokenCache`] (refreshed early, single flight),
//!    then the request's URL (which may need the token, e.g. to discover the API base). A failure gives the permit
//!    back; the platform may sideline the credential, and then another pooled credential serves the request.
//! 4. **Send** with the attempt's time limit and read the body size-limited ([`MAX_RESPONSE_BYTES`]).
//! 5. **Feed back** the answer and the platform's rate-limit headers to the budget through the permit; a
//!    rate-limited answer pauses the credential for as long as the platform decides.
//! 6. **401** → invalidate that token and send once more with a fresh one; a second 401 is [`ErrorClass::Auth`].
//! 7. **Classify** failures with the platform's classification and record the attempt (sink, stats, metrics).
//!
//! Token and discovery requests go to an auth host with its own limits, so they draw on no permit, but they take
//! the same send-and-record step (`Client::exchange`) and are counted like any attempt.
//!
//! What differs between platforms — how an answer classifies, which headers carry a correlation id and rate
//! limits, how a token is obtained, how a 429 pauses the budget — is the `Platform` trait. Each platform module
//! keeps its paths, JSON models and the meaning of its answers.

use crate::attempt::{ApiAttempt, AttemptRecorder, CallStats, SharedAttemptSink};
use crate::budget::{Budget, Permit, Priority, PriorityClass, RateLimits};
use crate::error::{ErrorClass, PlatformError};
use crate::http::{read_limited, BodyError, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
use crate::token::{Grant, TokenCache};
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;
use wrapup_core::clock::SharedClock;
use wrapup_core::Secret;

/// The shortest time limit of a live leg's request (see `Client::attempt_timeout`).
pub const LIVE_MIN_TIMEOUT: Duration = Duration::from_millis(250);

/// A condition a request must still meet when it is about to be sent (after waiting for the budget), e.g. "the
/// leg has not changed since we read it". Waiting for the budget can take long under load; this keeps a write from
/// going out on a decision the world has moved past.
#[async_trait::async_trait]
pub trait Precondition: Send + Sync {
    /// `Ok(())` to send; `Err(reason)` to drop the request unsent.
    async fn check(&self) -> Result<(), String>;
}

/// What differs between platforms on the call path. Implemented by the platform's state (URLs, credentials, its
/// rate-limit memory); the methods that send receive the whole client.
pub(crate) trait Platform: Sized + Send + Sync + 'static {
    /// Where a request goes, before the token is known.
    type Target: Send + Sync;

    /// Whether an API answer with this status is a success.
    fn is_success(status: u16) -> bool {
        (200..300).contains(&status)
    }

    /// The answer's correlation id, if the platform sends one.
    fn correlation_id(headers: &HeaderMap) -> Option<String>;

    /// The answer's rate-limit headers, as the budget understands them.
    fn rate_limits(headers: &HeaderMap) -> RateLimits;

    /// The failure an unsuccessful API answer means.
    fn classify(endpoint: &'static str, answer: &Answer) -> PlatformError;

    /// A new token for `credential` (the cache calls this once for all concurrent callers).
    fn fetch_token(
        client: &Client<Self>,
        credential: usize,
    ) -> impl Future<Output = Result<Grant, PlatformError>> + Send;

    /// The URL of a request sent with `token`.
    fn url(
        client: &Client<Self>,
        token: &Secret,
        request: &Request<'_, Self::Target>,
    ) -> impl Future<Output = Result<Url, PlatformError>> + Send;

    /// Takes `credential` out of rotation after its token could not be had; returns whether it did (and so whether
    /// another credential may serve the request).
    fn sideline(_client: &Client<Self>, _credential: usize, _error: &PlatformError) -> bool {
        false
    }

    /// How long a rate-limited answer to a request sent at `sent_at` pauses its credential; `None`: not at all.
    fn rate_limit_pause(&self, retry_after: Option<Duration>, limits: RateLimits, sent_at: Instant)
        -> Option<Duration>;

    /// An API request succeeded.
    fn succeeded(&self) {}
}

/// One connection's client for platform `P`. Cheap to clone; clones share budget, tokens and stats.
pub struct Client<P> {
    inner: Arc<Inner<P>>,
}

impl<P> Clone for Client<P> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

struct Inner<P> {
    http: reqwest::Client,
    budget: Budget,
    /// One per credential, in the budget's credential order.
    tokens: Vec<TokenCache>,
    recorder: AttemptRecorder,
    clock: SharedClock,
    request_timeout: Duration,
    platform: P,
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

/// What a client is built from, besides the platform's own state.
pub(crate) struct Setup {
    pub name: String,
    /// The URLs requests are built on, by what they are for (`base`, `login`, …); each must take a path.
    pub urls: Vec<(&'static str, Url)>,
    pub credentials: usize,
    pub requests_per_minute: u32,
    pub request_timeout: Duration,
    pub clock: SharedClock,
    pub sink: SharedAttemptSink,
}

/// An answer as it came back, body read.
pub(crate) struct Answer {
    pub status: u16,
    /// The reason phrase when the server sent one other than the canonical text for the status.
    pub reason: Option<String>,
    pub headers: HeaderMap,
    pub correlation_id: Option<String>,
    pub body: Vec<u8>,
    /// When the request was sent.
    pub sent_at: Instant,
}

/// A successful API answer.
pub(crate) struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub correlation_id: Option<String>,
}

impl Response {
    /// Whether the body is empty (or only whitespace).
    pub fn is_blank(&self) -> bool {
        self.body.iter().all(u8::is_ascii_whitespace)
    }

    /// The body as `T`. The platform answered 2xx with a body we cannot read: retrying reads the same body, so the
    /// failure is permanent.
    pub fn decode<T: DeserializeOwned>(&self, endpoint: &'static str) -> Result<T, PlatformError> {
        serde_json::from_slice(&self.body).map_err(|e| PlatformError {
            class: ErrorClass::Permanent,
            status: None,
            code: Some("undecodable.response".into()),
            message: format!("the response body could not be decoded: {e}"),
            correlation_id: self.correlation_id.clone(),
            endpoint,
        })
    }
}

/// One API request as a client sends it.
pub(crate) struct Request<'a, T> {
    pub method: Method,
    pub endpoint: &'static str,
    pub target: T,
    pub body: Option<Vec<u8>>,
    pub priority: Priority,
    /// The leg the request is about, so its attempts land in that leg's ledger.
    pub conversation_id: Option<String>,
    pub participant_id: Option<String>,
    /// Checked once the request holds a budget permit, just before it is sent.
    pub precondition: Option<&'a dyn Precondition>,
    /// Added to the connection's timeout (long polls).
    pub extra_timeout: Duration,
}

impl<'a, T> Request<'a, T> {
    pub fn new(method: Method, endpoint: &'static str, target: T, priority: Priority) -> Self {
        Request {
            method,
            endpoint,
            target,
            body: None,
            priority,
            conversation_id: None,
            participant_id: None,
            precondition: None,
            extra_timeout: Duration::ZERO,
        }
    }

    /// A JSON body, refused when it is larger than [`MAX_REQUEST_BYTES`].
    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Result<Self, PlatformError> {
        let endpoint = self.endpoint;
        let body = serde_json::to_vec(body).map_err(|e| {
            PlatformError::transport(
                ErrorClass::Permanent,
                endpoint,
                format!("the request body could not be encoded: {e}"),
            )
        })?;
        if body.len() > MAX_REQUEST_BYTES {
            return Err(PlatformError::transport(
                ErrorClass::Permanent,
                endpoint,
                format!("the request body exceeds {MAX_REQUEST_BYTES} bytes"),
            ));
        }
        self.body = Some(body);
        Ok(self)
    }

    /// Names the leg the request is about.
    pub fn for_leg(mut self, conversation_id: Option<&str>, participant_id: Option<&str>) -> Self {
        self.conversation_id = conversation_id.map(str::to_string);
        self.participant_id = participant_id.map(str::to_string);
        self
    }

    pub fn if_still(mut self, precondition: Option<&'a dyn Precondition>) -> Self {
        self.precondition = precondition;
        self
    }
}

/// What an attempt was, for the report.
pub(crate) struct AttemptOf<'a> {
    pub endpoint: &'static str,
    pub method: &'static str,
    pub conversation_id: Option<&'a str>,
    pub participant_id: Option<&'a str>,
    pub is_token: bool,
}

impl AttemptOf<'static> {
    /// A request to the auth host: a token request, or (`is_token` false) a discovery request.
    pub fn auth_host(endpoint: &'static str, method: &'static str, is_token: bool) -> Self {
        AttemptOf { endpoint, method, conversation_id: None, participant_id: None, is_token }
    }
}

impl<P> Client<P> {
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

    pub(crate) fn platform(&self) -> &P {
        &self.inner.platform
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }
}

// The bound gates only crate-internal methods; the trait itself is not part of the public API.
#[allow(private_bounds)]
impl<P: Platform> Client<P> {
    /// Builds the client.
    pub(crate) fn build(setup: Setup, platform: P) -> Result<Self, ConfigError> {
        let connection = &setup.name;
        if setup.credentials == 0 {
            return Err(ConfigError::NoCredentials { connection: connection.clone() });
        }
        if let Some((which, url)) = setup.urls.iter().find(|(_, url)| url.cannot_be_a_base()) {
            return Err(ConfigError::BadUrl { connection: connection.clone(), which, url: url.to_string() });
        }
        let http = reqwest::Client::builder()
            .timeout(setup.request_timeout)
            .connect_timeout(setup.request_timeout.min(Duration::from_secs(10)))
            // Platform redirects are not part of the contract; following one could send the token elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wrapup/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ConfigError::Http { connection: connection.clone(), source })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                budget: Budget::new(setup.credentials, setup.requests_per_minute),
                tokens: (0..setup.credentials).map(|_| TokenCache::new()).collect(),
                recorder: AttemptRecorder::new(setup.name, setup.sink),
                clock: setup.clock,
                request_timeout: setup.request_timeout,
                platform,
            }),
        })
    }

    /// The current token of `credential`, fetched when there is none or it is due for refresh.
    pub(crate) async fn token(&self, credential: usize) -> Result<Secret, PlatformError> {
        self.inner.tokens[credential].get(|| P::fetch_token(self, credential)).await
    }

    /// Budget → precondition → token and URL → send → feed back → (one 401 refresh) → classify. See the module docs.
    pub(crate) async fn execute(&self, request: &Request<'_, P::Target>) -> Result<Response, PlatformError> {
        let mut refreshed = false;
        let mut token_failures = 0;
        loop {
            let permit = self.acquire(request).await?;
            if let Some(p) = request.precondition {
                if let Err(reason) = p.check().await {
                    permit.unsent();
                    return Err(PlatformError::transport(ErrorClass::PreconditionFailed, request.endpoint, reason));
                }
            }
            let credential = permit.credential;
            let (token, url) = match self.prepare(credential, request).await {
                Ok(ready) => ready,
                Err(e) => {
                    permit.unsent();
                    token_failures += 1;
                    // With the credential sidelined, another pooled credential can still serve this request.
                    if P::sideline(self, credential, &e) && token_failures < self.inner.budget.credentials() {
                        continue;
                    }
                    return Err(e);
                }
            };
            match self.send(request, permit, url, &token).await {
                Err(e) if e.status == Some(401) && !refreshed => {
                    tracing::debug!(
                        connection = self.name(),
                        endpoint = request.endpoint,
                        "The platform refused the access token; refreshing it once."
                    );
                    self.inner.tokens[credential].invalidate(&token).await;
                    refreshed = true;
                }
                other => return other,
            }
        }
    }

    /// A permit for `request`; [`ErrorClass::DeadlinePassed`] if its deadline passes first, [`ErrorClass::Yielded`]
    /// if it begins a leg's work and the scheduler asks the leg to give way first (see [`crate::place`]).
    async fn acquire(&self, request: &Request<'_, P::Target>) -> Result<Permit, PlatformError> {
        let priority = request.priority;
        if priority.class != PriorityClass::Live || priority.finishing {
            return self.acquire_by_deadline(request).await;
        }
        crate::place::unless_asked(self.acquire_by_deadline(request)).await.unwrap_or_else(|| {
            Err(PlatformError::transport(
                ErrorClass::Yielded,
                request.endpoint,
                "the leg gave its place in the budget's queue to a leg with an earlier deadline",
            ))
        })
    }

    async fn acquire_by_deadline(&self, request: &Request<'_, P::Target>) -> Result<Permit, PlatformError> {
        let budget = &self.inner.budget;
        let Some(deadline) = request.priority.expires_at() else {
            return Ok(budget.acquire(request.priority).await);
        };
        let clock = &self.inner.clock;
        let wait = clock.wall_duration(deadline.duration_since(clock.now()));
        tokio::time::timeout(wait, budget.acquire(request.priority)).await.map_err(|_| {
            PlatformError::transport(
                ErrorClass::DeadlinePassed,
                request.endpoint,
                "the deadline passed while the request waited for the budget",
            )
        })
    }

    /// The token and the URL of a request: what must be in hand before a permit is spent.
    async fn prepare(
        &self,
        credential: usize,
        request: &Request<'_, P::Target>,
    ) -> Result<(Secret, Url), PlatformError> {
        let token = self.token(credential).await?;
        let url = P::url(self, &token, request).await?;
        Ok((token, url))
    }

    /// The time limit of one attempt: the connection's timeout (plus a long poll's wait), or for a live leg with a
    /// deadline a third of the wall time left (at least [`LIVE_MIN_TIMEOUT`], at most the connection's timeout). A
    /// request that hangs — the platform may have acted on it and only the answer is late — then leaves room to
    /// retry, and for the gate read that tells whether an unanswered write landed, inside the window.
    fn attempt_timeout(&self, request: &Request<'_, P::Target>) -> Duration {
        let base = self.inner.request_timeout + request.extra_timeout;
        let live_deadline = request
            .priority
            .expires_at()
            .filter(|_| request.priority.class == PriorityClass::Live && request.extra_timeout.is_zero());
        match live_deadline {
            Some(deadline) => {
                let clock = &self.inner.clock;
                let left = clock.wall_duration(deadline.duration_since(clock.now()));
                (left / 3).clamp(LIVE_MIN_TIMEOUT, base.max(LIVE_MIN_TIMEOUT))
            }
            None => base,
        }
    }

    /// One attempt with one token, paid for by `permit`.
    async fn send(
        &self,
        request: &Request<'_, P::Target>,
        permit: Permit,
        url: Url,
        token: &Secret,
    ) -> Result<Response, PlatformError> {
        let credential = permit.credential;
        let mut req = self
            .inner
            .http
            .request(request.method.clone(), url)
            .bearer_auth(token.expose())
            .header(ACCEPT, "application/json")
            .timeout(self.attempt_timeout(request));
        if let Some(body) = &request.body {
            req = req.header(CONTENT_TYPE, "application/json").body(body.clone());
        }
        let what = AttemptOf {
            endpoint: request.endpoint,
            method: method_name(&request.method),
            conversation_id: request.conversation_id.as_deref(),
            participant_id: request.participant_id.as_deref(),
            is_token: false,
        };
        let platform = &self.inner.platform;
        self.exchange(req, what, Some(permit), |answer| {
            if P::is_success(answer.status) {
                platform.succeeded();
                return Ok(Response {
                    status: answer.status,
                    body: answer.body,
                    correlation_id: answer.correlation_id,
                });
            }
            let e = P::classify(request.endpoint, &answer);
            if let ErrorClass::RateLimited { retry_after } = &e.class {
                let limits = P::rate_limits(&answer.headers);
                if let Some(pause) = platform.rate_limit_pause(*retry_after, limits, answer.sent_at) {
                    self.inner.budget.pause(credential, pause);
                }
            }
            Err(e)
        })
        .await
    }

    /// Sends one request and reports it as one attempt. A `permit` hears that the request was answered, with the
    /// answer's rate-limit headers, before the body is read. `read` turns the answer into the result.
    pub(crate) async fn exchange<T>(
        &self,
        req: RequestBuilder,
        what: AttemptOf<'_>,
        permit: Option<Permit>,
        read: impl FnOnce(Answer) -> Result<T, PlatformError>,
    ) -> Result<T, PlatformError> {
        let started = (self.inner.clock.now(), Instant::now());
        let (status, correlation_id, result) = match req.send().await {
            Err(e) => (None, None, Err(PlatformError::from_reqwest(what.endpoint, &e))),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                let correlation_id = P::correlation_id(&headers);
                if let Some(permit) = permit {
                    permit.answered(P::rate_limits(&headers));
                }
                let reason = reason_phrase(&resp);
                let result = match read_limited(resp, MAX_RESPONSE_BYTES).await {
                    Err(e) => Err(body_error(what.endpoint, status, correlation_id.clone(), e)),
                    Ok(body) => read(Answer {
                        status,
                        reason,
                        headers,
                        correlation_id: correlation_id.clone(),
                        body,
                        sent_at: started.1,
                    }),
                };
                (Some(status), correlation_id, result)
            }
        };
        let attempt = ApiAttempt {
            connection: self.name().to_string(),
            endpoint: what.endpoint,
            method: what.method,
            status,
            correlation_id,
            duration_ms: u64::try_from(started.1.elapsed().as_millis()).unwrap_or(u64::MAX),
            at: started.0,
            error_class: result.as_ref().err().map(|e| e.class.clone()),
            conversation_id: what.conversation_id.map(str::to_string),
            participant_id: what.participant_id.map(str::to_string),
        };
        tracing::debug!(
            connection = self.name(),
            endpoint = what.endpoint,
            method = what.method,
            status = ?status,
            duration_ms = attempt.duration_ms,
            "Platform call finished."
        );
        self.inner.recorder.record(attempt, what.is_token);
        result
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

/// The reason phrase when the server sent one other than the canonical text for the status (hyper keeps only
/// those).
fn reason_phrase(resp: &reqwest::Response) -> Option<String> {
    let r = resp.extensions().get::<hyper::ext::ReasonPhrase>()?;
    std::str::from_utf8(r.as_bytes()).ok().map(str::to_string)
}

fn body_error(endpoint: &'static str, status: u16, correlation_id: Option<String>, e: BodyError) -> PlatformError {
    let class = match e {
        // A response this large is not a response we expect; retrying will not shrink it.
        BodyError::TooLarge { .. } => ErrorClass::Permanent,
        BodyError::Read(_) => ErrorClass::Retryable,
    };
    PlatformError { class, status: Some(status), code: None, message: e.to_string(), correlation_id, endpoint }
}

/// `base` + percent-encoded path segments, query and fragment dropped. Ids come from events (untrusted): each is one
/// encoded segment, so an id cannot change the path, and empty ids are refused.
pub(crate) fn join(endpoint: &'static str, base: &Url, segments: &[&str]) -> Result<Url, PlatformError> {
    if segments.iter().any(|s| s.is_empty()) {
        return Err(PlatformError::transport(ErrorClass::Permanent, endpoint, "an id in the path is empty"));
    }
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut path = url.path_segments_mut().map_err(|_| {
            PlatformError::transport(ErrorClass::Permanent, endpoint, "the base URL cannot take a path")
        })?;
        path.pop_if_empty();
        path.extend(segments);
    }
    Ok(url)
}
