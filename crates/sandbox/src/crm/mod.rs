//! A CRM for wrapup to talk to: a receiver of signed webhooks (the outbox's sinks) and a decision hook.
//!
//! wrapup sends two kinds of signed (Standard Webhooks) POSTs to other systems: each finished leg's message to the
//! outbox's sinks, and a leg's facts to a decision hook that answers a code. [`CrmReceiver`] plays the other end of
//! both, on one loopback port, for the tests, the demo and anyone trying wrapup offline:
//!
//! - `POST /sinks/{name}` — verifies the signature with the sink's secret ([`signature`], written independently of
//!   wrapup's own signer), answers as the sink's [`Behaviour`] says, and records the request ([`Received`]).
//! - `POST /hooks/{name}` — the same checks, then answers `200 {"code", "notes"}` with the code configured for the
//!   leg, the conversation or the hook ([`CrmReceiver::answer`], [`CrmReceiver::default_answer`]), or `204` when it
//!   has no decision.
//! - `/_control/...` — the same operations over HTTP for scripts (see [`http`]); also served on a second port that
//!   never goes down ([`CrmReceiver::control_url`]).
//!
//! **Verify first.** A request whose signature does not verify (or that names no known sink or hook) gets 401 (404)
//! whatever the behaviour, and is recorded with `verified: false`, so a test can assert that nothing arrived unsigned
//! or wrongly signed. Behaviours with a count (`Fail`, `TooMany`) are spent by verified requests only.
//!
//! **Down means unreachable.** [`CrmReceiver::down`] closes the listening socket and every open connection (a
//! request in flight gets its connection reset), so a sender sees connection refused, not an HTTP error;
//! [`CrmReceiver::up`] binds the same port again (`SO_REUSEADDR`), so configured URLs stay valid. It is the whole
//! receiver that goes down, every sink and hook on it: give a sink its own receiver to take it down alone.
//!
//! **Waiting without sleeping.** Every record (and every answer added to a record) bumps a `watch` counter;
//! [`CrmReceiver::wait_for`] re-checks its condition on each bump and fails with [`CrmError::WaitTimedOut`] after
//! the receiver's `wait_timeout`, so a test waits for what it needs and fails cleanly when it never comes.
//!
//! Timestamps are checked against the wall clock: the sender stamps its real time, whatever clock the simulation runs.

pub mod http;
pub mod signature;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub use signature::{Refusal, WebhookSecret, DEFAULT_TOLERANCE_SECS};

/// How a sink or hook answers the verified requests it receives. Changeable at any time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Behaviour {
    /// Sinks answer 200; hooks answer their decision.
    #[default]
    Normal,
    /// Answer `status` (e.g. 500) to the next `times` verified requests, then `Normal`.
    Fail { status: u16, times: u32 },
    /// Wait this long before answering normally (a hook that makes wrapup time out).
    Delay(Duration),
    /// Answer 429 with `Retry-After: retry_after_secs` to the next `times` verified requests, then `Normal`.
    TooMany { retry_after_secs: u64, times: u32 },
    /// Answer 410 to every verified request (a sender should stop sending).
    Gone,
}

/// Whether a record was sent to a sink or a hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Sink,
    Hook,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Sink => "sink",
            Kind::Hook => "hook",
        })
    }
}

/// One request the receiver got, whatever it answered.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    /// Arrival order over the whole receiver, from 0.
    pub seq: u64,
    pub kind: Kind,
    /// The sink's or hook's name (the last path segment).
    pub name: String,
    /// The raw `webhook-id`, `webhook-timestamp` and `webhook-signature` headers, as sent (to verify again elsewhere).
    pub webhook_id: Option<String>,
    pub timestamp: Option<String>,
    pub signature: Option<String>,
    /// The body as text (lossy UTF-8), and parsed when it is JSON.
    pub body: String,
    pub json: Option<serde_json::Value>,
    /// The signature verified with the endpoint's secret, within the timestamp tolerance.
    pub verified: bool,
    /// Why not, when not.
    pub refusal: Option<String>,
    /// The status answered; `None` while the answer is pending (a `Delay`), or when it never went out (the sender
    /// hung up, or the receiver went down, first).
    pub status: Option<u16>,
    /// A hook's answer body, when it answered one.
    pub answer: Option<serde_json::Value>,
    /// Wall time of arrival.
    pub at: jiff::Timestamp,
}

/// What a hook answers for a leg.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookAnswer {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

impl HookAnswer {
    pub fn code(code: impl Into<String>) -> Self {
        Self { code: code.into(), notes: None }
    }
}

/// How to start a receiver.
#[derive(Debug, Clone)]
pub struct CrmOptions {
    /// Where the sinks and hooks listen; loopback only (`127.0.0.1:0`: any free port).
    pub listen: SocketAddr,
    /// Where the control surface also listens (it stays up while the receiver is down); loopback only.
    pub control_listen: SocketAddr,
    /// Sinks at start: name and `whsec_` secret.
    pub sinks: Vec<(String, String)>,
    /// Hooks at start: name and `whsec_` secret.
    pub hooks: Vec<(String, String)>,
    /// How far `webhook-timestamp` may be from the wall clock, either way.
    pub tolerance: Duration,
    /// How long the `wait_*` helpers wait before they fail.
    pub wait_timeout: Duration,
}

impl Default for CrmOptions {
    fn default() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            listen: any,
            control_listen: any,
            sinks: Vec::new(),
            hooks: Vec::new(),
            tolerance: Duration::from_secs(DEFAULT_TOLERANCE_SECS as u64),
            wait_timeout: Duration::from_secs(10),
        }
    }
}

/// Errors of the receiver.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("the CRM receiver listens on loopback only, not {0}")]
    NotLoopback(SocketAddr),
    #[error("cannot bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("secret of {name}: {reason}")]
    BadSecret { name: String, reason: String },
    #[error("no {kind} named {name}")]
    Unknown { kind: Kind, name: String },
    #[error("waited {waited:?} for {what}; it never came ({seen} request(s) recorded)")]
    WaitTimedOut { what: String, waited: Duration, seen: usize },
}

/// A sink or a hook: its secret and behaviour.
struct Endpoint {
    secret: WebhookSecret,
    behaviour: Behaviour,
}

/// A hook's decisions, most specific first: per leg, per conversation, then the default.
#[derive(Default)]
struct Decisions {
    by_leg: HashMap<(String, String), HookAnswer>,
    by_conversation: HashMap<String, HookAnswer>,
    default: Option<HookAnswer>,
}

impl Decisions {
    fn for_leg(&self, conversation: &str, participant: Option<&str>) -> Option<&HookAnswer> {
        participant
            .and_then(|p| self.by_leg.get(&(conversation.to_string(), p.to_string())))
            .or_else(|| self.by_conversation.get(conversation))
            .or(self.default.as_ref())
    }
}

/// The records of one name (a sink, a hook, or a name nobody has), and the ids of its verified ones: kept apart
/// and counted as they come, so that waiting for the ten-thousandth message does not rescan every record.
#[derive(Default)]
struct Log {
    records: Vec<Received>,
    verified_ids: BTreeSet<String>,
}

#[derive(Default)]
struct State {
    sinks: BTreeMap<String, Endpoint>,
    hooks: BTreeMap<String, Endpoint>,
    decisions: BTreeMap<String, Decisions>,
    logs: BTreeMap<(Kind, String), Log>,
    next_seq: u64,
}

const NO_RECORDS: &Log = &Log { records: Vec::new(), verified_ids: BTreeSet::new() };

impl State {
    fn endpoints(&mut self, kind: Kind) -> &mut BTreeMap<String, Endpoint> {
        match kind {
            Kind::Sink => &mut self.sinks,
            Kind::Hook => &mut self.hooks,
        }
    }

    fn log(&self, kind: Kind, name: &str) -> &Log {
        self.logs.get(&(kind, name.to_string())).unwrap_or(NO_RECORDS)
    }

    fn of(&self, kind: Kind, name: &str) -> Vec<Received> {
        self.log(kind, name).records.clone()
    }

    /// Records a request, numbering it; returns where it is, to complete it with the answer.
    fn record(&mut self, mut r: Received) -> (u64, usize) {
        let seq = self.next_seq;
        self.next_seq += 1;
        r.seq = seq;
        let log = self.logs.entry((r.kind, r.name.clone())).or_default();
        if let (true, Some(id)) = (r.verified, &r.webhook_id) {
            log.verified_ids.insert(id.clone());
        }
        log.records.push(r);
        (seq, log.records.len() - 1)
    }

    fn answered(&mut self, kind: Kind, name: &str, (seq, index): (u64, usize), status: u16, answer: Option<Value>) {
        let record = self.logs.get_mut(&(kind, name.to_string())).and_then(|l| l.records.get_mut(index));
        // Not after `clear_received`, which may have put another record there.
        if let Some(r) = record.filter(|r| r.seq == seq) {
            r.status = Some(status);
            r.answer = answer;
        }
    }
}

/// What answers requests: shared by the handle, the HTTP handlers and the listener tasks.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Bumped on every record and every answer recorded.
    changed: watch::Sender<u64>,
    tolerance_secs: i64,
    wait_timeout: Duration,
    addr: SocketAddr,
    control_addr: SocketAddr,
    listener: tokio::sync::Mutex<http::Listening>,
    /// Counts `down`s, so that a `down_for` timer does not bring back a receiver taken down again since.
    downs: std::sync::atomic::AtomicU64,
    /// Whether the main listener is up, for [`CrmReceiver::wait_up`].
    up: watch::Sender<bool>,
    control_stop: watch::Sender<bool>,
}

impl Shared {
    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn set(&self, kind: Kind, name: &str, secret: &str) -> Result<(), CrmError> {
        let secret =
            WebhookSecret::parse(secret).map_err(|reason| CrmError::BadSecret { name: name.to_string(), reason })?;
        let mut st = self.state.lock();
        let endpoints = st.endpoints(kind);
        match endpoints.get_mut(name) {
            Some(e) => e.secret = secret,
            None => {
                endpoints.insert(name.to_string(), Endpoint { secret, behaviour: Behaviour::Normal });
            }
        }
        if kind == Kind::Hook {
            st.decisions.entry(name.to_string()).or_default();
        }
        Ok(())
    }

    fn set_behaviour(&self, kind: Kind, name: &str, behaviour: Behaviour) -> Result<(), CrmError> {
        let mut st = self.state.lock();
        let e = st.endpoints(kind).get_mut(name).ok_or_else(|| CrmError::Unknown { kind, name: name.into() })?;
        e.behaviour = behaviour;
        Ok(())
    }

    fn decisions<R>(&self, hook: &str, f: impl FnOnce(&mut Decisions) -> R) -> Result<R, CrmError> {
        let mut st = self.state.lock();
        let d = st.decisions.get_mut(hook).ok_or_else(|| CrmError::Unknown { kind: Kind::Hook, name: hook.into() })?;
        Ok(f(d))
    }

    /// Waits until `cond` holds for the records of one endpoint, at most `wait_timeout`.
    async fn wait_for(
        &self,
        kind: Kind,
        name: &str,
        what: &str,
        mut cond: impl FnMut(&Log) -> bool,
    ) -> Result<Vec<Received>, CrmError> {
        // Subscribed before the first look: a record made in between is a change this receiver has not seen.
        let mut changes = self.changed.subscribe();
        let waiting = async {
            loop {
                let met = {
                    let state = self.state.lock();
                    let log = state.log(kind, name);
                    cond(log).then(|| log.records.clone())
                };
                if let Some(records) = met {
                    return records;
                }
                if changes.changed().await.is_err() {
                    // The sender lives as long as `self`; unreachable, but never spin.
                    std::future::pending::<()>().await;
                }
            }
        };
        match tokio::time::timeout(self.wait_timeout, waiting).await {
            Ok(records) => Ok(records),
            Err(_) => Err(CrmError::WaitTimedOut {
                what: format!("{what} at {kind} {name}"),
                waited: self.wait_timeout,
                seen: self.state.lock().of(kind, name).len(),
            }),
        }
    }
}

/// A running receiver. Cheap to clone; [`CrmReceiver::shutdown`] stops it.
#[derive(Clone)]
pub struct CrmReceiver {
    shared: Arc<Shared>,
}

impl CrmReceiver {
    /// Binds `options.listen` and `options.control_listen` (loopback only) and serves in background tasks.
    pub async fn start(options: CrmOptions) -> Result<CrmReceiver, CrmError> {
        for addr in [options.listen, options.control_listen] {
            if !addr.ip().is_loopback() {
                return Err(CrmError::NotLoopback(addr));
            }
        }
        let listener = http::bind(options.listen)?;
        let addr = listener.local_addr().map_err(|source| CrmError::Bind { addr: options.listen, source })?;
        let control = http::bind(options.control_listen)?;
        let control_addr =
            control.local_addr().map_err(|source| CrmError::Bind { addr: options.control_listen, source })?;
        let (changed, _) = watch::channel(0);
        let (control_stop, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed,
            tolerance_secs: options.tolerance.as_secs() as i64,
            wait_timeout: options.wait_timeout,
            addr,
            control_addr,
            listener: tokio::sync::Mutex::new(http::Listening::default()),
            downs: Default::default(),
            up: watch::channel(true).0,
            control_stop,
        });
        for (name, secret) in &options.sinks {
            shared.set(Kind::Sink, name, secret)?;
        }
        for (name, secret) in &options.hooks {
            shared.set(Kind::Hook, name, secret)?;
        }
        http::serve_control(shared.clone(), control);
        shared.listener.lock().await.serve(shared.clone(), listener);
        tracing::info!(base_url = %format!("http://{addr}"), "The CRM receiver is listening.");
        Ok(CrmReceiver { shared })
    }

    /// `http://127.0.0.1:PORT`: sinks at `{base_url}/sinks/{name}`, hooks at `{base_url}/hooks/{name}`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The URL of a sink.
    pub fn sink_url(&self, sink: &str) -> String {
        format!("{}/sinks/{sink}", self.base_url())
    }

    /// The URL of a hook.
    pub fn hook_url(&self, hook: &str) -> String {
        format!("{}/hooks/{hook}", self.base_url())
    }

    /// `http://127.0.0.1:PORT` of the control surface that stays up while the receiver is down (its routes are
    /// also under [`Self::base_url`] while it is up).
    pub fn control_url(&self) -> String {
        format!("http://{}", self.shared.control_addr)
    }

    /// Adds a sink with its `whsec_` secret (or changes the secret of an existing one, keeping its behaviour).
    pub fn add_sink(&self, sink: &str, secret: &str) -> Result<(), CrmError> {
        self.shared.set(Kind::Sink, sink, secret)
    }

    /// Adds a hook with its `whsec_` secret (or changes the secret of an existing one, keeping its answers).
    pub fn add_hook(&self, hook: &str, secret: &str) -> Result<(), CrmError> {
        self.shared.set(Kind::Hook, hook, secret)
    }

    /// Names of the sinks and hooks.
    pub fn sinks(&self) -> Vec<String> {
        self.shared.state.lock().sinks.keys().cloned().collect()
    }

    pub fn hooks(&self) -> Vec<String> {
        self.shared.state.lock().hooks.keys().cloned().collect()
    }

    /// Changes how a sink answers from its next request on.
    pub fn set_sink_behaviour(&self, sink: &str, behaviour: Behaviour) -> Result<(), CrmError> {
        self.shared.set_behaviour(Kind::Sink, sink, behaviour)
    }

    /// Changes how a hook answers from its next request on.
    pub fn set_hook_behaviour(&self, hook: &str, behaviour: Behaviour) -> Result<(), CrmError> {
        self.shared.set_behaviour(Kind::Hook, hook, behaviour)
    }

    /// The hook answers `code` for every leg of `conversation` (unless a leg has its own answer).
    pub fn answer(&self, hook: &str, conversation: &str, code: &str) -> Result<(), CrmError> {
        self.answer_with(hook, conversation, HookAnswer::code(code))
    }

    /// [`Self::answer`] with notes.
    pub fn answer_with(&self, hook: &str, conversation: &str, answer: HookAnswer) -> Result<(), CrmError> {
        self.shared.decisions(hook, |d| {
            d.by_conversation.insert(conversation.to_string(), answer);
        })
    }

    /// The hook answers this for one leg (conversation and participant), before any conversation's answer.
    pub fn answer_leg(
        &self,
        hook: &str,
        conversation: &str,
        participant: &str,
        answer: HookAnswer,
    ) -> Result<(), CrmError> {
        self.shared.decisions(hook, |d| {
            d.by_leg.insert((conversation.to_string(), participant.to_string()), answer);
        })
    }

    /// What the hook answers for a leg it has no answer for; `None`: 204, no decision.
    pub fn default_answer(&self, hook: &str, code: Option<&str>) -> Result<(), CrmError> {
        self.default_answer_with(hook, code.map(HookAnswer::code))
    }

    /// [`Self::default_answer`] with notes.
    pub fn default_answer_with(&self, hook: &str, answer: Option<HookAnswer>) -> Result<(), CrmError> {
        self.shared.decisions(hook, |d| d.default = answer)
    }

    /// Forgets a hook's answers (per leg, per conversation and the default).
    pub fn clear_answers(&self, hook: &str) -> Result<(), CrmError> {
        self.shared.decisions(hook, |d| *d = Decisions::default())
    }

    /// Every request a sink received, in arrival order (verified or not).
    pub fn received(&self, sink: &str) -> Vec<Received> {
        self.shared.state.lock().of(Kind::Sink, sink)
    }

    /// Every request a hook received, in arrival order (verified or not).
    pub fn hook_requests(&self, hook: &str) -> Vec<Received> {
        self.shared.state.lock().of(Kind::Hook, hook)
    }

    /// Every request of the receiver, in arrival order (including those to unknown names).
    pub fn all_received(&self) -> Vec<Received> {
        let mut all: Vec<Received> =
            self.shared.state.lock().logs.values().flat_map(|l| l.records.iter().cloned()).collect();
        all.sort_by_key(|r| r.seq);
        all
    }

    /// The `webhook-id`s of the verified requests a sink received (a redelivery shares its message's id).
    pub fn distinct_ids(&self, sink: &str) -> BTreeSet<String> {
        self.shared.state.lock().log(Kind::Sink, sink).verified_ids.clone()
    }

    /// Forgets every record (not the sinks, hooks, behaviours or answers).
    pub fn clear_received(&self) {
        self.shared.state.lock().logs.clear();
        self.shared.bump();
    }

    /// Waits until `cond` holds for a sink's records; fails after the receiver's `wait_timeout`.
    pub async fn wait_for(&self, sink: &str, cond: impl FnMut(&[Received]) -> bool) -> Result<Vec<Received>, CrmError> {
        let mut cond = cond;
        self.shared.wait_for(Kind::Sink, sink, "a condition", |log| cond(&log.records)).await
    }

    /// Waits until `cond` holds for a hook's records; fails after the receiver's `wait_timeout`.
    pub async fn wait_for_hook(
        &self,
        hook: &str,
        cond: impl FnMut(&[Received]) -> bool,
    ) -> Result<Vec<Received>, CrmError> {
        let mut cond = cond;
        self.shared.wait_for(Kind::Hook, hook, "a condition", |log| cond(&log.records)).await
    }

    /// Waits until a sink has recorded at least `n` requests (verified or not).
    pub async fn wait_until_count(&self, sink: &str, n: usize) -> Result<Vec<Received>, CrmError> {
        self.shared.wait_for(Kind::Sink, sink, &format!("{n} request(s)"), |log| log.records.len() >= n).await
    }

    /// Waits until a sink has received at least `n` distinct verified messages (by `webhook-id`).
    pub async fn wait_until_distinct(&self, sink: &str, n: usize) -> Result<Vec<Received>, CrmError> {
        self.shared
            .wait_for(Kind::Sink, sink, &format!("{n} distinct message(s)"), |log| log.verified_ids.len() >= n)
            .await
    }

    /// Whether the receiver is listening.
    pub fn is_up(&self) -> bool {
        *self.shared.up.borrow()
    }

    /// Stops listening and closes every open connection; from its return on, connecting is refused.
    pub async fn down(&self) {
        self.shared.downs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.shared.listener.lock().await.stop().await;
        self.shared.up.send_replace(false);
        tracing::info!(base_url = %self.base_url(), "The CRM receiver is down.");
    }

    /// Listens again on the same port (a no-op when it is up).
    pub async fn up(&self) -> Result<(), CrmError> {
        let mut listening = self.shared.listener.lock().await;
        if !listening.is_up() {
            listening.serve(self.shared.clone(), http::bind(self.shared.addr)?);
            self.shared.up.send_replace(true);
            tracing::info!(base_url = %self.base_url(), "The CRM receiver is up again.");
        }
        Ok(())
    }

    /// [`Self::down`] now, [`Self::up`] after `d` (unless it was taken down again meanwhile).
    pub async fn down_for(&self, d: Duration) {
        self.down().await;
        let this = self.clone();
        let downs = self.shared.downs.load(std::sync::atomic::Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::time::sleep(d).await;
            if this.shared.downs.load(std::sync::atomic::Ordering::SeqCst) == downs {
                if let Err(e) = this.up().await {
                    tracing::error!(error = %e, "The CRM receiver could not come back up.");
                }
            }
        });
    }

    /// Waits until the receiver is up (`true`) or down (`false`); fails after the receiver's `wait_timeout`.
    pub async fn wait_up(&self, up: bool) -> Result<(), CrmError> {
        let mut state = self.shared.up.subscribe();
        let reached = tokio::time::timeout(self.shared.wait_timeout, state.wait_for(|u| *u == up)).await.is_ok();
        match reached {
            true => Ok(()),
            false => Err(CrmError::WaitTimedOut {
                what: format!("the receiver to be {}", if up { "up" } else { "down" }),
                waited: self.shared.wait_timeout,
                seen: 0,
            }),
        }
    }

    /// Stops both listeners and every connection.
    pub async fn shutdown(&self) {
        self.shared.downs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.shared.listener.lock().await.stop().await;
        self.shared.up.send_replace(false);
        let _ = self.shared.control_stop.send(true);
    }
}
