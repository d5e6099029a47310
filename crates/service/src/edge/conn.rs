//! One HTTP/1 connection, watched: what it is doing decides when it is closed.
//!
//! A connection is always in one of four states, and each has its own deadline (see [`Watch::deadline`]):
//!
//! | state | closed when | answer |
//! |---|---|---|
//! | new, no complete request head yet | `header_read_timeout` after it was accepted | 408 if it sent anything, else none |
//! | between requests, part of the next head received | `header_read_timeout` after that head's first byte | none |
//! | between requests, nothing received | `idle_timeout` after the last answer | none (an idle keep-alive close) |
//! | a request in progress | `request_timeout + header_read_timeout` after its head | none (the handler answers at `request_timeout`; the rest is for writing the answer to a slow reader) |
//!
//! The state is kept in a [`Watch`], updated by the socket (a read while no request is in progress starts a head)
//! and by the per-connection service (a request starts when hyper hands over its head, and ends when the answer's
//! body is dropped — written, or abandoned). Those updates are a few field writes under an uncontended lock: no
//! timer and no task wake-up per request. One reaper task ([`reap`]) looks at every connection's deadline a few
//! times a second ([`reap_every`]) and tells the task of a connection past it to close; so a connection is closed
//! at most one tick after its deadline.

use super::{Limits, MAX_HEAD_BYTES};
use crate::scheduler::Shutdown;
use axum::body::Body;
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tower::ServiceExt;

/// What a connection is doing, for its deadline.
#[derive(Debug)]
struct WatchState {
    /// Requests whose answer is not yet written (more than one only if a client pipelines).
    in_flight: u32,
    /// When `in_flight` last changed; when the connection was accepted, before that.
    since: Instant,
    /// The first byte of the next head, read while no request was in progress.
    head_started: Option<Instant>,
    /// Requests answered on this connection.
    served: u64,
}

/// Why a connection's deadline is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    FirstHead,
    Head,
    Idle,
    Request,
}

/// Why a connection is told to close (kept in [`Watch::close`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Close {
    Open = 0,
    Evicted,
    HeaderTimeout,
    Idle,
    RequestTimeout,
}

impl Close {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Close::Evicted,
            2 => Close::HeaderTimeout,
            3 => Close::Idle,
            4 => Close::RequestTimeout,
            _ => Close::Open,
        }
    }

    fn of(phase: Phase) -> Self {
        match phase {
            Phase::FirstHead | Phase::Head => Close::HeaderTimeout,
            Phase::Idle => Close::Idle,
            Phase::Request => Close::RequestTimeout,
        }
    }

    /// The `reason` label of `wrapup_http_connections_closed_total`.
    fn label(self) -> &'static str {
        match self {
            Close::Open => "closed",
            Close::Evicted => "evicted",
            Close::HeaderTimeout => "header_timeout",
            Close::Idle => "idle",
            Close::RequestTimeout => "request_timeout",
        }
    }
}

/// The shared state of one connection.
pub(crate) struct Watch {
    accepted: Instant,
    state: Mutex<WatchState>,
    /// A [`Close`]: set once, by the reaper or by an eviction.
    close: AtomicU8,
    closing: Notify,
}

impl Watch {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            accepted: now,
            state: Mutex::new(WatchState { in_flight: 0, since: now, head_started: None, served: 0 }),
            close: AtomicU8::new(Close::Open as u8),
            closing: Notify::new(),
        }
    }

    /// Tells the connection's task to close, for `why` (the first reason given wins).
    fn tell_to_close(&self, why: Close) {
        if self.close.compare_exchange(Close::Open as u8, why as u8, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.closing.notify_one();
        }
    }

    fn closing_for(&self) -> Close {
        Close::from_u8(self.close.load(Ordering::Acquire))
    }

    /// When the connection must be closed if nothing changes, and why.
    pub(crate) fn deadline(&self, limits: &Limits) -> (Instant, Phase) {
        let s = self.state.lock();
        if s.in_flight > 0 {
            (s.since + limits.request_timeout + limits.header_read_timeout, Phase::Request)
        } else if s.served == 0 {
            (self.accepted + limits.header_read_timeout, Phase::FirstHead)
        } else if let Some(t) = s.head_started {
            (t + limits.header_read_timeout, Phase::Head)
        } else {
            (s.since + limits.idle_timeout, Phase::Idle)
        }
    }

    /// Whether a new connection sent part of its first request (for the 408). After a first answer, bytes between
    /// requests may also be the rest of a refused body being thrown away ([`Lingering`]): no 408 for those.
    fn first_head_in_progress(&self) -> bool {
        let s = self.state.lock();
        s.served == 0 && s.in_flight == 0 && s.head_started.is_some()
    }

    fn on_bytes_read(&self) {
        let mut s = self.state.lock();
        if s.in_flight == 0 && s.head_started.is_none() {
            s.head_started = Some(Instant::now());
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        let mut s = self.state.lock();
        s.in_flight += 1;
        s.since = Instant::now();
        s.head_started = None;
        InFlight(self.clone())
    }

    /// Idle: no request in progress (a candidate for eviction). Never-served connections first, see [`Connections`].
    fn idle(&self) -> Option<bool> {
        if self.closing_for() != Close::Open {
            return None;
        }
        let s = self.state.lock();
        (s.in_flight == 0).then_some(s.served == 0)
    }
}

/// A request in progress; dropping it (the answer written, or the connection gone) ends it.
pub(crate) struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut s = self.0.state.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.served += 1;
        s.since = Instant::now();
        s.head_started = None;
    }
}

/// The open connections of every listener, oldest first.
pub(crate) struct Connections {
    max: usize,
    open: Mutex<BTreeMap<u64, Arc<Watch>>>,
    next_id: AtomicU64,
    /// Signalled when the last connection closes (for shutdown).
    empty: Notify,
    /// Signalled whenever a connection closes (for [`Connections::room`]).
    closed: Notify,
}

/// Connections that may be open beyond the cap for a moment: the ones evicted whose tasks have not ended yet.
const EVICTION_SLACK: usize = 64;

impl Connections {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            empty: Notify::new(),
            closed: Notify::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.open.lock().len()
    }

    /// Admits a new connection. At the cap, the oldest idle connection that never completed a request is evicted
    /// to make room (else the oldest idle one): a flood of connections that never send a request cannot keep a
    /// health probe or a real sender out. `None` when every connection is busy with a request.
    fn admit(&self) -> Option<(u64, Arc<Watch>)> {
        let mut open = self.open.lock();
        if open.len() >= self.max {
            if open.len() >= self.max + EVICTION_SLACK {
                return None;
            }
            let mut oldest_idle = None;
            let mut victim = None;
            for watch in open.values() {
                match watch.idle() {
                    Some(true) => {
                        victim = Some(watch.clone());
                        break;
                    }
                    Some(false) if oldest_idle.is_none() => oldest_idle = Some(watch.clone()),
                    _ => {}
                }
            }
            victim.or(oldest_idle)?.tell_to_close(Close::Evicted);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(Watch::new());
        open.insert(id, watch.clone());
        metrics::gauge!("wrapup_http_connections").set(open.len() as f64);
        Some((id, watch))
    }

    fn remove(&self, id: u64) {
        let mut open = self.open.lock();
        open.remove(&id);
        metrics::gauge!("wrapup_http_connections").set(open.len() as f64);
        if open.is_empty() {
            self.empty.notify_waiters();
        }
        drop(open);
        self.closed.notify_waiters();
    }

    /// Waits while the connections evicted to make room have not closed yet (the cap plus [`EVICTION_SLACK`] is
    /// reached). The accept loop waits here instead of accepting a connection it would have to refuse: in a burst,
    /// the newcomers wait in the kernel's backlog for the moment it takes the evicted connections' tasks to end,
    /// and a health probe among them is served rather than dropped.
    pub(crate) async fn room(&self) {
        loop {
            let closed = self.closed.notified();
            if self.len() < self.max + EVICTION_SLACK {
                return;
            }
            closed.await;
        }
    }

    /// Waits until every connection has closed, or `limit` passed.
    pub(crate) async fn drained(&self, limit: Duration) {
        let wait = async {
            loop {
                let notified = self.empty.notified();
                if self.len() == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

/// How often the reaper looks: a tenth of the shortest of the header and idle timeouts, between 10 and 250 ms.
pub(crate) fn reap_every(limits: &Limits) -> Duration {
    (limits.header_read_timeout.min(limits.idle_timeout) / 10)
        .clamp(Duration::from_millis(10), Duration::from_millis(250))
}

/// Tells every connection past its deadline to close, every [`reap_every`], until the service stops.
pub(crate) async fn reap(connections: Arc<Connections>, limits: Limits, stop: Shutdown) {
    let mut tick = tokio::time::interval(reap_every(&limits));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        connections.reap_once(&limits, Instant::now());
    }
}

impl Connections {
    fn reap_once(&self, limits: &Limits, now: Instant) {
        for watch in self.open.lock().values() {
            let (deadline, phase) = watch.deadline(limits);
            if deadline <= now {
                watch.tell_to_close(Close::of(phase));
            }
        }
    }
}

/// The socket, telling the watch when bytes arrive.
struct WatchedStream {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for WatchedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.on_bytes_read();
        }
        result
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An answer's body that ends its request when it is dropped, i.e. once hyper has written it (or given up).
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Bytes of a refused request's body read and thrown away, at most (see [`Lingering`]).
pub(crate) const LINGER_BYTES: usize = 64 << 20;

/// A request's body that, when dropped unread (a refusal answered before the body was wanted), goes on being read
/// and thrown away for a while, as nginx's lingering close does: a client that does not wait for `100 Continue`
/// is still writing its body when the refusal goes out, and a connection closed under it would answer with a reset
/// that can destroy the refusal before the client reads it. Never for a request that sent `Expect: 100-continue`
/// — reading its body would send the `100 Continue` the refusal exists to withhold. Bounded by [`LINGER_BYTES`] and
/// `for_at_most`; the reaper closes the connection at its header timeout in any case (the bytes count as the start
/// of the next head).
struct Lingering {
    inner: Option<Incoming>,
    for_at_most: Option<Duration>,
}

impl HttpBody for Lingering {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }
    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(|b| b.size_hint()).unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let (Some(mut body), Some(limit)) = (self.inner.take(), self.for_at_most) else { return };
        if body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let mut left = LINGER_BYTES;
            let drain = async {
                while let Some(Ok(frame)) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                    left = left.saturating_sub(frame.data_ref().map_or(0, |d| d.len()));
                    if left == 0 {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(limit, drain).await;
        });
    }
}

/// Accepts `stream` into `connections` and serves it with `router` until it closes, times out, is evicted or the
/// service stops. Returns at once (dropping the socket) when no room can be made.
pub(crate) fn spawn(
    stream: TcpStream,
    router: Router,
    connections: Arc<Connections>,
    limits: &Limits,
    shutdown: Shutdown,
) {
    let Some((id, watch)) = connections.admit() else {
        metrics::counter!("wrapup_http_connections_closed_total", "reason" => "refused").increment(1);
        return;
    };
    let linger = limits.header_read_timeout;
    tokio::spawn(async move {
        let reason = drive(stream, router, watch, linger, shutdown).await;
        metrics::counter!("wrapup_http_connections_closed_total", "reason" => reason).increment(1);
        connections.remove(id);
    });
}

async fn drive(stream: TcpStream, router: Router, watch: Arc<Watch>, linger: Duration, stop: Shutdown) -> &'static str {
    // Answers go out in one write each; Nagle would only hold the last segment back.
    let _ = stream.set_nodelay(true);
    let service = {
        let watch = watch.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = watch.begin();
            let router = router.clone();
            let for_at_most = (!request.headers().contains_key(hyper::header::EXPECT)).then_some(linger);
            let request = request.map(|inner| Body::new(Lingering { inner: Some(inner), for_at_most }));
            async move {
                let response = match router.oneshot(request).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| Body::new(Tracked { body, _in_flight: in_flight })))
            }
        })
    };
    // No timer for hyper: every deadline is the reaper's, which costs nothing per request.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.max_header_size(MAX_HEAD_BYTES).keep_alive(true);
    let io = TokioIo::new(WatchedStream { inner: stream, watch: watch.clone() });
    let mut conn = builder.serve_connection(io, service);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = &mut conn => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "An HTTP connection ended with an error.");
                }
                return Close::Open.label();
            }
            _ = watch.closing.notified() => {
                let why = watch.closing_for();
                if why == Close::HeaderTimeout && watch.first_head_in_progress() {
                    request_timeout_answer(conn.into_parts().io.into_inner().inner).await;
                }
                return why.label();
            }
            _ = stop.cancelled(), if !stopping => {
                // Idle connections close now; one with a request in progress once it is answered.
                stopping = true;
                std::pin::Pin::new(&mut conn).graceful_shutdown();
            }
        }
    }
}

/// A client that sent part of a request and then too little: tell it why the connection closes.
async fn request_timeout_answer(mut stream: TcpStream) {
    let body = super::error_body("request_timeout", "the request's head did not arrive in time");
    let head = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            ..Limits::default()
        }
    }

    #[test]
    fn each_state_of_a_connection_has_its_deadline() {
        let l = limits();
        let watch = Arc::new(Watch::new());
        let (deadline, phase) = watch.deadline(&l);
        assert_eq!((deadline, phase), (watch.accepted + l.header_read_timeout, Phase::FirstHead));
        // Bytes of the first head do not extend the first deadline.
        watch.on_bytes_read();
        assert_eq!(watch.deadline(&l), (watch.accepted + l.header_read_timeout, Phase::FirstHead));
        assert!(watch.first_head_in_progress());
        let request = watch.begin();
        let (deadline, phase) = watch.deadline(&l);
        assert_eq!(phase, Phase::Request);
        assert!(deadline >= watch.accepted + l.request_timeout + l.header_read_timeout);
        drop(request);
        let (idle_deadline, phase) = watch.deadline(&l);
        assert_eq!(phase, Phase::Idle);
        assert!(idle_deadline >= watch.accepted + l.idle_timeout);
        // The next head's first byte starts the header timeout (a close without a 408: see Lingering).
        watch.on_bytes_read();
        let (deadline, phase) = watch.deadline(&l);
        assert_eq!(phase, Phase::Head);
        assert!(deadline < idle_deadline, "{deadline:?} vs {idle_deadline:?}");
        assert!(!watch.first_head_in_progress());
    }

    #[test]
    fn at_the_cap_a_new_connection_takes_the_place_of_one_that_never_completed_a_request() {
        let connections = Connections::new(3);
        let (_, served) = connections.admit().unwrap();
        drop(served.begin());
        let (_, busy) = connections.admit().unwrap();
        let _request = busy.begin();
        let (_, never_served) = connections.admit().unwrap();
        let (_, fourth) = connections.admit().unwrap();
        let evicted = |w: &Watch| w.closing_for() == Close::Evicted;
        assert!(evicted(&never_served));
        assert!(!evicted(&served) && !evicted(&busy));
        // With none that never completed a request, the oldest idle one; never one with a request in progress.
        drop(fourth.begin());
        let (_, _fifth) = connections.admit().unwrap();
        assert!(evicted(&served));
        assert!(!evicted(&busy) && !evicted(&fourth));
    }

    #[test]
    fn the_reaper_closes_each_connection_past_its_deadline_for_its_reason() {
        let l = limits();
        let connections = Connections::new(10);
        let (_, fresh) = connections.admit().unwrap();
        let (_, idle) = connections.admit().unwrap();
        drop(idle.begin());
        let (_, busy) = connections.admit().unwrap();
        let _request = busy.begin();
        connections.reap_once(&l, Instant::now());
        assert!([&fresh, &idle, &busy].iter().all(|w| w.closing_for() == Close::Open), "nothing is due yet");
        connections.reap_once(&l, Instant::now() + l.header_read_timeout);
        assert_eq!(fresh.closing_for(), Close::HeaderTimeout);
        assert_eq!(idle.closing_for(), Close::Open);
        connections.reap_once(&l, Instant::now() + l.idle_timeout);
        assert_eq!(idle.closing_for(), Close::Idle);
        assert_eq!(busy.closing_for(), Close::Open);
        connections.reap_once(&l, Instant::now() + l.request_timeout + l.header_read_timeout);
        assert_eq!(busy.closing_for(), Close::RequestTimeout);
        // The first reason given stays.
        fresh.tell_to_close(Close::Evicted);
        assert_eq!(fresh.closing_for(), Close::HeaderTimeout);
        assert_eq!(reap_every(&l), Duration::from_millis(250));
        let short = Limits { header_read_timeout: Duration::from_millis(1000), ..l };
        assert_eq!(reap_every(&short), Duration::from_millis(100));
    }

    #[tokio::test]
    async fn the_accept_loop_waits_for_evicted_connections_to_close_instead_of_refusing_newcomers() {
        let connections = Arc::new(Connections::new(16));
        let ids: Vec<u64> = (0..16 + EVICTION_SLACK).map(|_| connections.admit().unwrap().0).collect();
        let room = tokio::spawn({
            let connections = connections.clone();
            async move { connections.room().await }
        });
        tokio::task::yield_now().await;
        assert!(!room.is_finished(), "no room while the evicted connections are still open");
        connections.remove(ids[0]);
        tokio::time::timeout(Duration::from_secs(5), room).await.expect("room once one closed").unwrap();
    }

    #[test]
    fn when_every_connection_is_busy_a_new_one_is_refused() {
        let connections = Connections::new(2);
        let mut requests = Vec::new();
        for _ in 0..2 {
            let (_, watch) = connections.admit().unwrap();
            requests.push(watch.begin());
        }
        assert!(connections.admit().is_none());
        requests.pop();
        assert!(connections.admit().is_some(), "a connection whose request ended can be replaced");
    }
}
