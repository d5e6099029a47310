//! The receiver's HTTP side: the listener that can go down and come back on the same port, the sink and hook
//! handlers, and the control surface.
//!
//! # Control surface (`/_control`, on both ports)
//!
//! | route | body / answer |
//! |---|---|
//! | `POST /_control/sinks/{name}` | `{"secret"?: "whsec_…", "behaviour"?: B}`: adds the sink (a secret is needed the first time), changes its secret or behaviour |
//! | `POST /_control/hooks/{name}` | the same, plus `"default"?: A \| null`, `"answers"?: {"<conversation>": A}`, `"clear_answers"?: true` |
//! | `GET /_control/received/{name}`, `GET /_control/sinks/{name}/received` | the sink's records (`Received`, JSON) |
//! | `GET /_control/hooks/{name}/received` | the hook's records |
//! | `DELETE /_control/received` | forgets every record |
//! | `POST /_control/down` | `{"for_ms"?: n}`: down (for `n` ms, else until `up`) |
//! | `POST /_control/up` | up again on the same port |
//! | `GET /_control/status` | `{"base_url", "control_url", "up", "sinks", "hooks"}` |
//!
//! `B` is a behaviour: `{"kind": "normal"}`, `{"kind": "fail", "status": 500, "times": 3}`,
//! `{"kind": "delay", "ms": 2000}`, `{"kind": "too_many", "retry_after_secs": 2, "times": 1}`, `{"kind": "gone"}`.
//! `A` is a hook answer: `{"code": "…", "notes"?: "…"}`. Use the control port ([`super::CrmReceiver::control_url`])
//! for `down` and `up`: the main port closes the connection that asked, and is unreachable to ask `up`.

use super::{Behaviour, CrmError, CrmReceiver, HookAnswer, Kind, Received, Shared};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

type St = Arc<Shared>;

/// Binds `addr` with `SO_REUSEADDR`, so that the port can be bound again right after the receiver went down
/// (its closed connections linger in `TIME_WAIT`).
pub(crate) fn bind(addr: SocketAddr) -> Result<TcpListener, CrmError> {
    let bind = || {
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    };
    bind().map_err(|source| CrmError::Bind { addr, source })
}

/// The main listener while it is up: a stop signal and the accept loop.
#[derive(Default)]
pub(crate) struct Listening {
    running: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Listening {
    pub(crate) fn is_up(&self) -> bool {
        self.running.is_some()
    }

    pub(crate) fn serve(&mut self, shared: St, listener: TcpListener) {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, app(shared), stopped));
        self.running = Some((stop, task));
    }

    /// Returns once the listening socket and every connection are closed.
    pub(crate) async fn stop(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(true);
            let _ = task.await;
        }
    }
}

/// Serves connections until stopped; then drops the listener and aborts every connection (their sockets close).
/// Connections are this loop's own tasks rather than `axum::serve`'s, which outlive the server: a kept-alive
/// connection would keep reaching a receiver that is supposed to be down.
async fn accept_loop(listener: TcpListener, app: Router, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            // The only change is to `true`; a dropped sender stops too.
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let service = hyper_util::service::TowerToHyperService::new(app.clone());
                    connections.spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "The CRM receiver could not accept a connection.");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Serves the control surface alone on its own port until the receiver shuts down.
pub(crate) fn serve_control(shared: St, listener: TcpListener) {
    let mut stop = shared.control_stop.subscribe();
    let app = control_routes().with_state(shared);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
}

fn app(shared: St) -> Router {
    Router::new()
        .route("/sinks/{name}", post(sink))
        .route("/hooks/{name}", post(hook))
        .merge(control_routes())
        .with_state(shared)
}

fn control_routes() -> Router<St> {
    Router::new()
        .route("/_control/status", get(status))
        .route("/_control/sinks/{name}", post(control_sink))
        .route("/_control/hooks/{name}", post(control_hook))
        .route("/_control/received/{name}", get(sink_records))
        .route("/_control/sinks/{name}/received", get(sink_records))
        .route("/_control/hooks/{name}/received", get(hook_records))
        .route("/_control/received", delete(clear_records))
        .route("/_control/down", post(control_down))
        .route("/_control/up", post(control_up))
}

async fn sink(State(st): State<St>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    receive(st, Kind::Sink, name, headers, body).await
}

async fn hook(State(st): State<St>, Path(name): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    receive(st, Kind::Hook, name, headers, body).await
}

/// What a verified request gets before (or instead of) its normal answer.
enum Step {
    Answer(StatusCode, Option<u64>),
    Delay(Duration),
    Proceed,
}

/// The behaviour's step for one verified request, spending one of its `times`.
fn spend(behaviour: &mut Behaviour) -> Step {
    let step = match behaviour {
        Behaviour::Normal => return Step::Proceed,
        Behaviour::Gone => return Step::Answer(StatusCode::GONE, None),
        Behaviour::Delay(d) => return Step::Delay(*d),
        Behaviour::Fail { times: 0, .. } | Behaviour::TooMany { times: 0, .. } => Step::Proceed,
        Behaviour::Fail { status, times } => {
            *times -= 1;
            Step::Answer(StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), None)
        }
        Behaviour::TooMany { retry_after_secs, times } => {
            *times -= 1;
            Step::Answer(StatusCode::TOO_MANY_REQUESTS, Some(*retry_after_secs))
        }
    };
    if matches!(behaviour, Behaviour::Fail { times: 0, .. } | Behaviour::TooMany { times: 0, .. }) {
        *behaviour = Behaviour::Normal;
    }
    step
}

/// Verify, record, behave, answer; the record is made at arrival and completed with the answer.
async fn receive(st: St, kind: Kind, name: String, headers: HeaderMap, body: Bytes) -> Response {
    let header = |n: &str| headers.get(n).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let (id, timestamp, signature) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let now = jiff::Timestamp::now();
    let (at, step) = {
        let mut state = st.state.lock();
        let checked = match state.endpoints(kind).get_mut(&name) {
            None => Err((StatusCode::NOT_FOUND, format!("no {kind} named {name}"))),
            Some(e) => e
                .secret
                .verify(
                    id.as_deref(),
                    timestamp.as_deref(),
                    signature.as_deref(),
                    &body,
                    now.as_second(),
                    st.tolerance_secs,
                )
                .map(|_| spend(&mut e.behaviour))
                .map_err(|r| (StatusCode::UNAUTHORIZED, r.to_string())),
        };
        let at = state.record(Received {
            seq: 0,
            kind,
            name: name.clone(),
            webhook_id: id,
            timestamp,
            signature,
            body: String::from_utf8_lossy(&body).into_owned(),
            json: json.clone(),
            verified: checked.is_ok(),
            refusal: checked.as_ref().err().map(|(_, why)| why.clone()),
            status: None,
            answer: None,
            at: now,
        });
        (at, checked)
    };
    st.bump();
    let (status, retry_after, answer) = match step {
        Err((status, why)) => (status, None, Some(json!({"error": why}))),
        Ok(Step::Answer(status, retry_after)) => (status, retry_after, None),
        Ok(step) => {
            if let Step::Delay(d) = step {
                tokio::time::sleep(d).await;
            }
            match kind {
                Kind::Sink => (StatusCode::OK, None, None),
                Kind::Hook => decide(&st, &name, json.as_ref()),
            }
        }
    };
    st.state.lock().answered(kind, &name, at, status.as_u16(), answer.clone());
    st.bump();
    let mut response = match answer {
        Some(body) => (status, axum::Json(body)).into_response(),
        None => status.into_response(),
    };
    if let Some(secs) = retry_after {
        response.headers_mut().insert("retry-after", secs.into());
    }
    response
}

/// A hook's answer for the leg in `body`: 200 with the code, 204 without a decision, 400 without a leg.
fn decide(st: &St, hook: &str, body: Option<&Value>) -> (StatusCode, Option<u64>, Option<Value>) {
    let field = |f: &str| body.and_then(|b| b.get(f)).and_then(Value::as_str);
    let Some(conversation) = field("conversation") else {
        return (
            StatusCode::BAD_REQUEST,
            None,
            Some(json!({"error": "the body is a JSON object with `conversation`"})),
        );
    };
    let state = st.state.lock();
    match state.decisions.get(hook).and_then(|d| d.for_leg(conversation, field("participant"))) {
        Some(a) => (StatusCode::OK, None, Some(serde_json::to_value(a).unwrap_or(Value::Null))),
        None => (StatusCode::NO_CONTENT, None, None),
    }
}

/// A behaviour as the control surface writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BehaviourSpec {
    Normal,
    Fail { status: u16, times: u32 },
    Delay { ms: u64 },
    TooMany { retry_after_secs: u64, times: u32 },
    Gone,
}

impl From<BehaviourSpec> for Behaviour {
    fn from(b: BehaviourSpec) -> Self {
        match b {
            BehaviourSpec::Normal => Behaviour::Normal,
            BehaviourSpec::Fail { status, times } => Behaviour::Fail { status, times },
            BehaviourSpec::Delay { ms } => Behaviour::Delay(Duration::from_millis(ms)),
            BehaviourSpec::TooMany { retry_after_secs, times } => Behaviour::TooMany { retry_after_secs, times },
            BehaviourSpec::Gone => Behaviour::Gone,
        }
    }
}

impl From<Behaviour> for BehaviourSpec {
    fn from(b: Behaviour) -> Self {
        match b {
            Behaviour::Normal => BehaviourSpec::Normal,
            Behaviour::Fail { status, times } => BehaviourSpec::Fail { status, times },
            Behaviour::Delay(d) => BehaviourSpec::Delay { ms: d.as_millis() as u64 },
            Behaviour::TooMany { retry_after_secs, times } => BehaviourSpec::TooMany { retry_after_secs, times },
            Behaviour::Gone => BehaviourSpec::Gone,
        }
    }
}

/// `Some` for a field that is present, even as `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointPatch {
    secret: Option<String>,
    behaviour: Option<BehaviourSpec>,
    #[serde(default, deserialize_with = "present")]
    default: Option<Option<HookAnswer>>,
    #[serde(default)]
    answers: std::collections::BTreeMap<String, HookAnswer>,
    #[serde(default)]
    clear_answers: bool,
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({"error": msg.to_string()}))).into_response()
}

fn crm_error(e: CrmError) -> Response {
    let status = match e {
        CrmError::Unknown { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, e)
}

async fn control_sink(State(st): State<St>, Path(name): Path<String>, body: Bytes) -> Response {
    control_endpoint(st, Kind::Sink, name, body)
}

async fn control_hook(State(st): State<St>, Path(name): Path<String>, body: Bytes) -> Response {
    control_endpoint(st, Kind::Hook, name, body)
}

fn control_endpoint(st: St, kind: Kind, name: String, body: Bytes) -> Response {
    let patch: EndpointPatch = match serde_json::from_slice(if body.is_empty() { b"{}" } else { &body }) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    if kind == Kind::Sink && (patch.default.is_some() || !patch.answers.is_empty() || patch.clear_answers) {
        return error(
            StatusCode::BAD_REQUEST,
            "a sink has no answers; `default`, `answers`, `clear_answers` are for hooks",
        );
    }
    let receiver = CrmReceiver { shared: st };
    let applied = (|| {
        match &patch.secret {
            Some(secret) => receiver.shared.set(kind, &name, secret)?,
            // A new endpoint needs a secret.
            None => _ = current(&receiver, kind, &name)?,
        }
        if let Some(b) = patch.behaviour {
            receiver.shared.set_behaviour(kind, &name, b.into())?;
        }
        if kind == Kind::Hook {
            if patch.clear_answers {
                receiver.clear_answers(&name)?;
            }
            if let Some(default) = patch.default {
                receiver.default_answer_with(&name, default)?;
            }
            for (conversation, answer) in patch.answers {
                receiver.answer_with(&name, &conversation, answer)?;
            }
        }
        Ok::<_, CrmError>(())
    })();
    match applied.and_then(|()| current(&receiver, kind, &name)) {
        Ok(b) => axum::Json(json!({"name": name, "kind": kind, "behaviour": BehaviourSpec::from(b)})).into_response(),
        Err(e) => crm_error(e),
    }
}

fn current(receiver: &CrmReceiver, kind: Kind, name: &str) -> Result<Behaviour, CrmError> {
    let mut state = receiver.shared.state.lock();
    state
        .endpoints(kind)
        .get(name)
        .map(|e| e.behaviour.clone())
        .ok_or_else(|| CrmError::Unknown { kind, name: name.into() })
}

async fn sink_records(State(st): State<St>, Path(name): Path<String>) -> Response {
    axum::Json(st.state.lock().of(Kind::Sink, &name)).into_response()
}

async fn hook_records(State(st): State<St>, Path(name): Path<String>) -> Response {
    axum::Json(st.state.lock().of(Kind::Hook, &name)).into_response()
}

async fn clear_records(State(st): State<St>) -> Response {
    CrmReceiver { shared: st }.clear_received();
    StatusCode::NO_CONTENT.into_response()
}

async fn status(State(st): State<St>) -> Response {
    let r = CrmReceiver { shared: st };
    axum::Json(json!({
        "base_url": r.base_url(),
        "control_url": r.control_url(),
        "up": r.is_up(),
        "sinks": r.sinks(),
        "hooks": r.hooks(),
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DownBody {
    for_ms: Option<u64>,
}

async fn control_down(State(st): State<St>, body: Bytes) -> Response {
    let down: DownBody = match serde_json::from_slice(if body.is_empty() { b"{}" } else { &body }) {
        Ok(d) => d,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let r = CrmReceiver { shared: st };
    // In a task of its own: asked on the main port, this connection is among those closed, and the handler with it.
    let going = tokio::spawn(async move {
        match down.for_ms {
            Some(ms) => r.down_for(Duration::from_millis(ms)).await,
            None => r.down().await,
        }
    });
    let _ = going.await;
    axum::Json(json!({"up": false})).into_response()
}

async fn control_up(State(st): State<St>) -> Response {
    match (CrmReceiver { shared: st }).up().await {
        Ok(()) => axum::Json(json!({"up": true})).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}
