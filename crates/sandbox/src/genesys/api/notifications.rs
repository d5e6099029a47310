//! Notification API: `/api/v2/notifications/channels[/{id}[/subscriptions]]` over REST and the channel websocket
//! at `/channels/{id}` (the `connectUri`). The hub (`crate::genesys::notifications`) holds the channels; this module only
//! translates HTTP and websocket traffic.
//!
//! On the socket: event frames, a `channel.metadata` heartbeat every [`HEARTBEAT`], and `{"message":"ping"}` is
//! answered with a `pong` metadata frame. A second socket on the same channel closes the first. Every [`TICK`] the
//! socket task also lets the hub send `v2.system.socket_closing` and expire channels (see `crate::genesys::notifications`).

use super::{json_ok, parse_body, Caller};
use crate::engine::iso;
use crate::genesys::model::PlatformError;
use crate::genesys::notifications::Outgoing;
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

/// Wall time between the hub's expiry checks while a socket is connected.
pub const TICK: Duration = Duration::from_millis(500);

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
    let hub = st.org.lock().hub.clone();
    let now = st.clock.now();
    hub.tick(now);
    let (id, expires) = hub.create(caller.client, now);
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
            crate::genesys::notifications::MAX_TOPICS
        ))
        .into_response(),
        Some(Ok(entries)) => {
            hub.renew(id, st.clock.now());
            listing(entries)
        }
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
    ws.on_upgrade(move |socket| serve_socket(st, hub, id, socket))
}

fn metadata(message: &str) -> Message {
    Message::Text(json!({"topicName": "channel.metadata", "eventBody": {"message": message}}).to_string().into())
}

async fn serve_socket(
    st: SharedState,
    hub: std::sync::Arc<crate::genesys::notifications::Hub>,
    id: String,
    mut socket: WebSocket,
) {
    let Some((n, mut rx)) = hub.connect(&id) else { return };
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(Outgoing::Frame(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                // The connection breaks (a fault): no close frame.
                Some(Outgoing::Drop) => break,
                // Another socket took the channel over, or the channel is gone.
                Some(Outgoing::Close) | None => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            },
            _ = tick.tick() => hub.tick(st.clock.now()),
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

#[cfg(test)]
mod tests {
    use crate::{Sandbox, SandboxConfig, SandboxHandle};
    use futures::StreamExt;
    use reqwest::StatusCode;
    use serde_json::{json, Value};
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::Message;
    use wrapup_clock::ScaledClock;

    struct Env {
        sb: SandboxHandle,
        http: reqwest::Client,
        token: String,
    }

    impl Env {
        async fn start() -> Env {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let cfg = SandboxConfig { traffic_autostart: false, ..SandboxConfig::default() };
            let sb = Sandbox::start(cfg, listener, ScaledClock::system().shared()).await.unwrap();
            let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            let (id, secret) = sb.credentials()[0].clone();
            let tok: Value = http
                .post(format!("{}/oauth/token", sb.base_url()))
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            Env { sb, http, token: tok["access_token"].as_str().unwrap().to_string() }
        }

        async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
            let mut req =
                self.http.request(method, format!("{}/api/v2{path}", self.sb.base_url())).bearer_auth(&self.token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status();
            (status, resp.json().await.unwrap_or(Value::Null))
        }

        async fn channel(&self) -> (String, String) {
            let (s, ch) = self.call(reqwest::Method::POST, "/notifications/channels", None).await;
            assert_eq!(s, 200, "{ch}");
            (ch["id"].as_str().unwrap().to_string(), ch["connectUri"].as_str().unwrap().to_string())
        }
    }

    /// The next text frame that is not a heartbeat, or how the socket ended.
    async fn next_event<S>(ws: &mut S) -> Result<Value, String>
    where
        S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
    {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
                Err(_) => return Err("timeout".into()),
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    if v["eventBody"]["message"] != "WebSocket Heartbeat" {
                        return Ok(v);
                    }
                }
                Ok(Some(Ok(Message::Close(_)))) => return Err("close".into()),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(format!("error: {e}")),
                Ok(None) => return Err("end".into()),
            }
        }
    }

    #[tokio::test]
    async fn channel_limits_and_subscription_errors_have_the_documented_statuses() {
        use reqwest::Method;
        let env = Env::start().await;
        let mut ids = Vec::new();
        for _ in 0..=crate::genesys::notifications::MAX_CHANNELS {
            ids.push(env.channel().await.0);
        }
        let (s, list) = env.call(Method::GET, "/notifications/channels", None).await;
        assert_eq!(s, 200);
        assert_eq!(list["entities"].as_array().unwrap().len(), crate::genesys::notifications::MAX_CHANNELS);
        let (s, _) = env.call(Method::HEAD, &format!("/notifications/channels/{}", ids[0]), None).await;
        assert_eq!(s, 404, "the 21st channel evicted the oldest");
        let (s, _) = env.call(Method::HEAD, &format!("/notifications/channels/{}", ids[20]), None).await;
        assert_eq!(s, 200);

        let subs = format!("/notifications/channels/{}/subscriptions", ids[20]);
        let too_many: Vec<Value> = (0..=crate::genesys::notifications::MAX_TOPICS)
            .map(|i| json!({"id": format!("v2.routing.queues.q{i}.conversations")}))
            .collect();
        let (s, e) = env.call(Method::POST, &subs, Some(Value::Array(too_many))).await;
        assert_eq!((s.as_u16(), e["code"].as_str()), (400, Some("bad.request")), "{e}");
        let (s, e) = env.call(Method::POST, &subs, Some(json!({"id": "not a list"}))).await;
        assert_eq!(s, 400, "{e}");
        let (s, ok) = env
            .call(Method::PUT, &subs, Some(json!([{"id": "v2.routing.queues.q-1.conversations"}, {"id": "v2.nope"}])))
            .await;
        assert_eq!(s, 200);
        let states: Vec<&str> =
            ok["entities"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["Permitted", "Rejected"]);
        assert!(ok["entities"][1]["rejectionReason"].is_string());
        let (s, _) = env.call(Method::DELETE, &subs, None).await;
        assert_eq!(s, 204);
        let (s, listed) = env.call(Method::GET, &subs, None).await;
        assert_eq!((s.as_u16(), listed["entities"].as_array().map(Vec::len)), (200, Some(0)));
        let (s, _) = env.call(Method::GET, "/notifications/channels/streaming-0-nope/subscriptions", None).await;
        assert_eq!(s, 404);
        let anonymous =
            env.http.post(format!("{}/api/v2/notifications/channels", env.sb.base_url())).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let unknown = env.sb.base_url().replacen("http", "ws", 1) + "/channels/streaming-0-nope";
        match tokio_tungstenite::connect_async(unknown.as_str()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
            other => panic!("no socket for an unknown channel: {:?}", other.map(|_| ())),
        }
        env.sb.shutdown().await;
    }

    #[tokio::test]
    async fn a_socket_gets_socket_closing_then_is_closed_at_expiry() {
        let env = Env::start().await;
        env.sb.with_org(|o| o.hub.set_channel_life(Some(jiff::SignedDuration::from_secs(2))));
        let (id, uri) = env.channel().await;
        let (mut ws, _) = tokio_tungstenite::connect_async(uri.as_str()).await.unwrap();
        let closing = next_event(&mut ws).await.unwrap();
        assert_eq!(closing["topicName"], "v2.system.socket_closing");
        assert_eq!(next_event(&mut ws).await, Err("close".into()));
        let (s, _) = env.call(reqwest::Method::HEAD, &format!("/notifications/channels/{id}"), None).await;
        assert_eq!(s, 404, "the expired channel is gone");
        env.sb.shutdown().await;
    }

    #[tokio::test]
    async fn the_fault_profiles_disconnect_rate_breaks_sockets_on_frames() {
        let env = Env::start().await;
        env.sb.set_faults(crate::FaultProfile { ws_disconnect_rate: 1.0, ..crate::FaultProfile::calm() });
        let (id, uri) = env.channel().await;
        let topic = "v2.routing.queues.q-1.conversations";
        let subs = format!("/notifications/channels/{id}/subscriptions");
        assert_eq!(env.call(reqwest::Method::POST, &subs, Some(json!([{"id": topic}]))).await.0, 200);
        let (mut ws, _) = tokio_tungstenite::connect_async(uri.as_str()).await.unwrap();
        futures::SinkExt::send(&mut ws, Message::text(r#"{"message":"ping"}"#)).await.unwrap();
        assert_eq!(next_event(&mut ws).await.unwrap()["eventBody"]["message"], "pong");
        env.sb.with_org(|o| o.hub.publish(topic, &json!({"id": "c-1", "participants": []})));
        assert_ne!(next_event(&mut ws).await.unwrap_err(), "timeout");
        let events = env.sb.report().events;
        assert_eq!((events.ws_sockets_dropped, events.ws_frames_dropped, events.ws_frames_sent), (1, 1, 0));
        assert!(crate::FaultProfile::hostile().ws_disconnect_rate > 0.0);
        env.sb.shutdown().await;
    }

    #[tokio::test]
    async fn a_forced_drop_breaks_the_socket_without_a_close_frame_and_is_counted() {
        let env = Env::start().await;
        let (_, uri) = env.channel().await;
        let (mut ws, _) = tokio_tungstenite::connect_async(uri.as_str()).await.unwrap();
        // The socket is attached once the server-side task runs; a ping round trip proves it.
        futures::SinkExt::send(&mut ws, Message::text(r#"{"message":"ping"}"#)).await.unwrap();
        assert_eq!(next_event(&mut ws).await.unwrap()["eventBody"]["message"], "pong");
        let dropped: Value = env
            .http
            .post(format!("{}/sandbox/v1/notifications/drop", env.sb.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(dropped["dropped"], 1);
        let ended = next_event(&mut ws).await.unwrap_err();
        assert_ne!(ended, "close", "a broken connection sends no close frame");
        assert_ne!(ended, "timeout");
        assert_eq!(env.sb.report().events.ws_sockets_dropped, 1);
        env.sb.shutdown().await;
    }
}
