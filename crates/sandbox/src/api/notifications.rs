//! Notification API: `/api/v2/notifications/channels[/{id}[/subscriptions]]` over REST and the channel websocket
//! at `/channels/{id}` (the `connectUri`). The hub (`crate::notifications`) holds the channels; this module only
//! translates HTTP and websocket traffic.
//!
//! On the socket: event frames, a `channel.metadata` heartbeat every [`HEARTBEAT`], and `{"message":"ping"}` is
//! answered with a `pong` metadata frame. A second socket on the same channel closes the first.

use super::{json_ok, parse_body, Caller};
use crate::model::{iso, PlatformError};
use crate::SharedState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, head, post};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;

/// Wall time between heartbeats on an idle socket.
pub const HEARTBEAT: Duration = Duration::from_secs(30);

/// Channel lifetime (simulated time), as on the platform.
const CHANNEL_LIFETIME_HOURS: i64 = 24;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/notifications/channels", post(create).get(list))
        .route("/notifications/channels/{id}", head(exists))
        .route("/notifications/channels/{id}/subscriptions", get(subscriptions).post(add).put(replace).delete(clear))
}

/// The websocket endpoint, outside `/api/v2` (the channel id is the credential, as on the platform).
pub fn socket_routes() -> Router<SharedState> {
    Router::new().route("/channels/{id}", get(socket))
}

fn channel_json(st: &SharedState, id: &str, expires: jiff::Timestamp) -> Value {
    let ws_base = st.base_url().replacen("http", "ws", 1);
    json!({"connectUri": format!("{ws_base}/channels/{id}"), "id": id, "expires": iso(expires)})
}

async fn create(State(st): State<SharedState>, Extension(caller): Extension<Caller>) -> Response {
    let expires = st.clock.now() + jiff::SignedDuration::from_hours(CHANNEL_LIFETIME_HOURS);
    let hub = st.org.lock().hub.clone();
    let id = hub.create(caller.client, expires);
    json_ok(channel_json(&st, &id, expires))
}

async fn list(State(st): State<SharedState>, Extension(caller): Extension<Caller>) -> Response {
    let hub = st.org.lock().hub.clone();
    let entities: Vec<Value> =
        hub.list(caller.client).into_iter().map(|(id, exp)| channel_json(&st, &id, exp)).collect();
    json_ok(json!({"entities": entities}))
}

async fn exists(State(st): State<SharedState>, Path(id): Path<String>) -> Response {
    let hub = st.org.lock().hub.clone();
    if hub.exists(&id) {
        StatusCode::OK.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

fn listing(entries: Vec<(String, bool)>) -> Response {
    let entities: Vec<Value> = entries
        .into_iter()
        .map(|(topic, ok)| {
            if ok {
                json!({"id": topic, "state": "Permitted", "selfUri": format!("/api/v2/notifications/availabletopics/{topic}")})
            } else {
                json!({"id": topic, "state": "Rejected", "rejectionReason": "The sandbox does not publish this topic.",
                       "missingPermissions": []})
            }
        })
        .collect();
    json_ok(json!({"entities": entities}))
}

async fn subscriptions(State(st): State<SharedState>, Path(id): Path<String>) -> Response {
    let hub = st.org.lock().hub.clone();
    match hub.topics(&id) {
        Some(t) => listing(t.into_iter().map(|t| (t, true)).collect()),
        None => PlatformError::not_found().into_response(),
    }
}

#[derive(serde::Deserialize)]
struct TopicRef {
    id: String,
}

fn subscribe(st: &SharedState, id: &str, body: &Bytes, replace: bool) -> Response {
    let refs: Vec<TopicRef> = match parse_body(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let topics: Vec<String> = refs.into_iter().map(|r| r.id).collect();
    let hub = st.org.lock().hub.clone();
    match hub.subscribe(id, &topics, replace) {
        None => PlatformError::not_found().into_response(),
        Some(Err(())) => PlatformError::bad_request(format!(
            "A channel may have at most {} topics.",
            crate::notifications::MAX_TOPICS
        ))
        .into_response(),
        Some(Ok(entries)) => listing(entries),
    }
}

async fn add(State(st): State<SharedState>, Path(id): Path<String>, body: Bytes) -> Response {
    subscribe(&st, &id, &body, false)
}

async fn replace(State(st): State<SharedState>, Path(id): Path<String>, body: Bytes) -> Response {
    subscribe(&st, &id, &body, true)
}

async fn clear(State(st): State<SharedState>, Path(id): Path<String>) -> Response {
    let hub = st.org.lock().hub.clone();
    match hub.subscribe(&id, &[], true) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => PlatformError::not_found().into_response(),
    }
}

async fn socket(State(st): State<SharedState>, Path(id): Path<String>, ws: WebSocketUpgrade) -> Response {
    let hub = st.org.lock().hub.clone();
    if !hub.exists(&id) {
        return PlatformError::not_found().into_response();
    }
    ws.on_upgrade(move |socket| serve_socket(hub, id, socket))
}

fn metadata(message: &str) -> Message {
    Message::Text(json!({"topicName": "channel.metadata", "eventBody": {"message": message}}).to_string().into())
}

async fn serve_socket(hub: std::sync::Arc<crate::notifications::Hub>, id: String, mut socket: WebSocket) {
    let Some((n, mut rx)) = hub.connect(&id) else { return };
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                // Another socket took the channel over.
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            },
            _ = heartbeat.tick() => {
                if socket.send(metadata("WebSocket Heartbeat")).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    let ping = serde_json::from_str::<Value>(t.as_str()).ok().is_some_and(|v| v["message"] == "ping");
                    if ping && socket.send(metadata("pong")).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    hub.disconnect(&id, n);
}
