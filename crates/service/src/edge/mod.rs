//! The HTTP edge: what stands between the internet and the handlers.
//!
//! The intake must be reachable from the platform's side (an EventBridge API destination calls a public URL), so
//! everything here assumes a hostile client. The service serves HTTP/1.1 itself, one task per connection on
//! hyper's connection API (`conn.rs`), rather than through `axum::serve`, because that is where the limits that do
//! not depend on a handler live:
//!
//! - **Timeouts per connection state** (`conn.rs`): a request head must arrive within `header_read_timeout` (a
//!   new connection that sent part of its first request gets a 408), a keep-alive connection is closed after `idle_timeout` without a
//!   request, and a request — its answer included — may take `request_timeout` (plus `header_read_timeout` for a
//!   slow reader). A connection that sends nothing, half a request line or a short body cannot stay open. One
//!   reaper task enforces them all, so a request costs no timer of its own at this level.
//! - **A cap on connections**, across all listeners, kept below the process's open-file limit
//!   ([`connection_cap`]). At the cap a new connection takes the place of the oldest idle one — one that never
//!   completed a request first — so a flood of idle connections cannot keep a health probe out; only when every
//!   connection has a request in progress is a new one closed at once. While evicted connections are still closing
//!   (a burst), the accept loop waits for them instead of accepting what it would have to refuse. Since `max_connections` must exceed the sum
//!   of the per-class request caps below (the configuration refuses anything else), some connection is always idle.
//! - **Caps on requests in progress per route class** ([`RouteClass`]: intake, admin, health), each a semaphore
//!   taken without waiting: one request over the cap is answered `503` with `Retry-After` at once. Requests in
//!   progress are the queue in front of the store, so this is also the load shedding when the store is saturated:
//!   intake backs off (EventBridge retries a 503) while `/health` and `/ready`, with permits of their own and no
//!   unbounded store wait (`/ready` bounds its store check), keep answering.
//! - **Ambiguous lengths** are hyper's: conflicting `Content-Length`s are a 400; with both `Content-Length` and
//!   `Transfer-Encoding: chunked` the chunked coding wins, the length is dropped and the connection is closed after
//!   the answer (RFC 9112 §6.3), so nothing can be smuggled in behind the body.
//! - **`Expect`**: only `100-continue` is understood (417 otherwise), and hyper sends the `100 Continue` only when a
//!   handler starts reading the body — intake does that after the request passed its header checks, so a refused
//!   request gets its 401/413 instead of an invitation to upload.
//! - **One error envelope**: every error answer that reaches the router and is not already JSON (the framework's
//!   own 400/404/405/413/415 rejections) — or a page of the dashboard, which answers people in HTML — is rewritten into `{"error": {"code", "message"}}` ([`guard`]). What hyper
//!   refuses before there is a request (a malformed request line, conflicting `Content-Length`s, a head over
//!   [`MAX_HEAD_BYTES`]) it answers itself with an empty 400 or 431 and closes the connection.
//!
//! The figures and the reasons for the defaults are in docs/RELIABILITY.md ("The HTTP edge").

mod conn;

use crate::scheduler::Shutdown;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use conn::Connections;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use wrapup_core::Secret;

/// The edge's limits (`[http]` in the configuration).
pub type Limits = wrapup_config::HttpLimits;

/// Largest request head (request line and headers) read; hyper answers 431 beyond it. EventBridge sends a few
/// hundred bytes of headers; 64 KiB also bounds what an idle connection can make the service buffer.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// What a shed request is told to wait, in seconds.
pub const RETRY_AFTER_SECS: u64 = 1;
/// File descriptors kept for everything but client connections: the store's files, connections to the platforms,
/// the websocket, logs.
pub const RESERVED_FDS: u64 = 256;

/// Which cap a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// `/intake/…`: platform events; `/api/v1/lookup/…`: the platform's flows; `/api/v1/decisions/…`: CRMs.
    Intake,
    /// `/health`, `/ready`: probes.
    Health,
    /// Everything else: the admin API, `/metrics`, unknown paths.
    Admin,
}

impl RouteClass {
    pub fn of(path: &str) -> Self {
        if path.starts_with("/intake/") || path.starts_with("/api/v1/lookup/") || path.starts_with("/api/v1/decisions/")
        {
            RouteClass::Intake
        } else if path == "/health" || path == "/ready" {
            RouteClass::Health
        } else {
            RouteClass::Admin
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Intake => "intake",
            RouteClass::Health => "health",
            RouteClass::Admin => "admin",
        }
    }
}

/// The limits and the per-class permits, shared by every listener.
pub struct Edge {
    pub limits: Limits,
    intake: Semaphore,
    admin: Semaphore,
    health: Semaphore,
}

impl Edge {
    pub fn new(limits: Limits) -> Self {
        Self {
            intake: Semaphore::new(limits.max_intake_requests),
            admin: Semaphore::new(limits.max_admin_requests),
            health: Semaphore::new(limits.max_health_requests),
            limits,
        }
    }

    fn permits(&self, class: RouteClass) -> &Semaphore {
        match class {
            RouteClass::Intake => &self.intake,
            RouteClass::Admin => &self.admin,
            RouteClass::Health => &self.health,
        }
    }
}

/// The API's one error envelope, as text.
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({"error": {"code": code, "message": message}}).to_string()
}

/// A refusal in the API's one error envelope.
pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, axum::Json(serde_json::json!({"error": {"code": code, "message": message.into()}}))).into_response()
}

/// A 503 that tells the sender when to come back.
pub fn unavailable(code: &str, message: impl Into<String>) -> Response {
    let mut response = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// The credentials of `Authorization: Bearer <token>`. The scheme is matched without regard to case and may be
/// followed by more than one space (RFC 9110 §11.1, §11.4).
pub fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let space = value.iter().position(|b| *b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = &rest[rest.iter().position(|b| *b != b' ')?..];
    Some(token)
}

/// Whether the request carries `expected` as its bearer token (compared in constant time).
pub fn bearer_matches(headers: &HeaderMap, expected: &Secret) -> bool {
    bearer_token(headers).is_some_and(|t| bool::from(t.ct_eq(expected.expose().as_bytes())))
}

/// Middleware on every route: `Expect`, the class's permit, the request timeout, and the error envelope.
pub async fn guard(State(edge): State<Arc<Edge>>, request: Request, next: Next) -> Response {
    if let Some(expect) = request.headers().get(header::EXPECT) {
        if !expect.as_bytes().eq_ignore_ascii_case(b"100-continue") {
            return error(
                StatusCode::EXPECTATION_FAILED,
                "expectation_failed",
                "only Expect: 100-continue is supported",
            );
        }
    }
    let class = RouteClass::of(request.uri().path());
    let Ok(_permit) = edge.permits(class).try_acquire() else {
        metrics::counter!("wrapup_http_shed_total", "class" => class.as_str()).increment(1);
        return unavailable("overloaded", format!("too many {} requests in progress; retry", class.as_str()));
    };
    match tokio::time::timeout(edge.limits.request_timeout, next.run(request)).await {
        Ok(response) => envelope(response).await,
        Err(_) => {
            metrics::counter!("wrapup_http_request_timeouts_total", "class" => class.as_str()).increment(1);
            unavailable("request_timeout", "the request took longer than the service allows; retry")
        }
    }
}

/// An error answer that is neither JSON nor a dashboard page (one of the framework's own) in the API's envelope,
/// with its text as the message; the status and the other headers (`Allow`, `Retry-After`) are kept.
async fn envelope(response: Response) -> Response {
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE).map(|c| c.as_bytes()).unwrap_or_default();
    let is_ours = content_type.starts_with(b"application/json") || content_type.starts_with(b"text/html");
    if !(status.is_client_error() || status.is_server_error()) || is_ours {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // The framework's rejections are one line; anything longer is cut rather than buffered.
    let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        t => t.to_string(),
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    };
    let body = error_body(code, &message);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// `configured`, lowered to what the open-file limit leaves after [`RESERVED_FDS`].
pub fn connection_cap(configured: usize) -> usize {
    match open_file_limit() {
        Some(limit) => {
            let room = usize::try_from(limit.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX).max(16);
            if configured > room {
                tracing::warn!(
                    max_connections = configured,
                    open_file_limit = limit,
                    using = room,
                    "max_connections is above what the open-file limit allows (raise it with `ulimit -n`); using less."
                );
                return room;
            }
            configured
        }
        None => configured,
    }
}

/// The soft `RLIMIT_NOFILE`, when there is one.
#[cfg(unix)]
fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one `rlimit` into the struct it is given, which lives for the call.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    // `rlim_t` is u64 on Linux but not on every unix.
    #[allow(clippy::unnecessary_cast)]
    let soft = limit.rlim_cur as u64;
    (ok && limit.rlim_cur != libc::RLIM_INFINITY).then_some(soft)
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<u64> {
    None
}

/// How many connections the kernel may hold for the service before it accepts them. The standard library's (and
/// tokio's) 128 overflows in a burst of a few hundred connections while the process is busy; the kernel caps this
/// at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 1024;

/// A listener on `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `TcpListener::bind` sets it).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves each router on its listener until `shutdown`, then lets connections finish (bounded by the request
/// timeout) and returns.
pub fn serve(listeners: Vec<(TcpListener, Router)>, edge: Arc<Edge>, shutdown: Shutdown) -> JoinHandle<()> {
    let limits = edge.limits;
    let connections = Arc::new(Connections::new(connection_cap(limits.max_connections)));
    tokio::spawn(async move {
        let mut accepting = Vec::new();
        for (listener, router) in listeners {
            let router = router.layer(axum::middleware::from_fn_with_state(edge.clone(), guard));
            accepting.push(tokio::spawn(accept(listener, router, connections.clone(), limits, shutdown.clone())));
        }
        // The reaper outlives the listeners: connections still open at shutdown keep their deadlines.
        let reaper_stop = Shutdown::default();
        let reaper = tokio::spawn(conn::reap(connections.clone(), limits, reaper_stop.clone()));
        for a in accepting {
            let _ = a.await;
        }
        connections.drained(limits.request_timeout + limits.header_read_timeout).await;
        reaper_stop.cancel();
        let _ = reaper.await;
    })
}

async fn accept(listener: TcpListener, router: Router, connections: Arc<Connections>, limits: Limits, stop: Shutdown) {
    loop {
        let accepted = tokio::select! {
            accepted = async {
                connections.room().await;
                listener.accept().await
            } => accepted,
            _ = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => conn::spawn(stream, router.clone(), connections.clone(), &limits, stop.clone()),
            // The connection died between SYN and accept: nothing to do.
            Err(e)
                if matches!(e.kind(), std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset) => {}
            Err(e) => {
                // Out of file descriptors or memory: the cap should prevent it; wait rather than spin.
                tracing::warn!(error = %e, open = connections.len(), "Could not accept a connection.");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        h
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for ok in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k"] {
            assert_eq!(bearer_token(&headers(ok)), Some(&b"t0k"[..]), "{ok}");
        }
        for bad in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "Token t0k"] {
            assert_eq!(bearer_token(&headers(bad)), None, "{bad}");
        }
        let secret = Secret::new("t0k");
        assert!(bearer_matches(&headers("bearer t0k"), &secret));
        assert!(!bearer_matches(&headers("bearer t0"), &secret));
        assert!(!bearer_matches(&headers("bearer t0k0"), &secret));
        assert!(!bearer_matches(&HeaderMap::new(), &secret));
    }

    #[test]
    fn routes_fall_into_their_class() {
        assert_eq!(RouteClass::of("/intake/prod"), RouteClass::Intake);
        assert_eq!(RouteClass::of("/health"), RouteClass::Health);
        assert_eq!(RouteClass::of("/ready"), RouteClass::Health);
        assert_eq!(RouteClass::of("/healthz"), RouteClass::Admin);
        assert_eq!(RouteClass::of("/metrics"), RouteClass::Admin);
        assert_eq!(RouteClass::of("/api/v1/legs"), RouteClass::Admin);
        assert_eq!(RouteClass::of("/api/v1/lookup/prod/codes"), RouteClass::Intake);
        assert_eq!(RouteClass::of("/intake"), RouteClass::Admin);
    }

    #[test]
    fn the_connection_cap_stays_below_the_open_file_limit() {
        let cap = connection_cap(usize::MAX);
        match open_file_limit() {
            Some(limit) => assert!((cap as u64) < limit, "{cap} vs {limit}"),
            None => assert_eq!(cap, usize::MAX),
        }
        assert_eq!(connection_cap(16), 16);
    }
}
