//! The notification websocket intake against a stub channel API + websocket on 127.0.0.1:0.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use url::Url;
use wrapup_clock::ScaledClock;
use wrapup_connectors::attempt::discard_attempts;
use wrapup_connectors::genesys::notifications::{run, Notification, NotificationConfig, NotificationError};
use wrapup_connectors::genesys::{GenesysClient, GenesysConnection};
use wrapup_core::{EventKind, Secret};

type Script = Arc<dyn Fn(u32, WebSocket, Arc<Stub>) -> BoxFuture<'static, ()> + Send + Sync>;

struct Stub {
    addr: Mutex<String>,
    channels: AtomicU32,
    /// Websocket connections accepted, over all channels.
    connections: AtomicU32,
    /// Channel life announced in `expires`.
    expires_in: Option<Duration>,
    subscriptions: Mutex<Vec<(String, Vec<String>)>>,
    pings: AtomicU32,
    script: Script,
}

async fn token() -> Response {
    (StatusCode::OK, r#"{"access_token":"tok","token_type":"bearer","expires_in":86399}"#).into_response()
}

async fn create_channel(State(s): State<Arc<Stub>>) -> Response {
    let n = s.channels.fetch_add(1, Ordering::SeqCst) + 1;
    let addr = s.addr.lock().clone();
    Json(json!({"id": format!("ch-{n}"), "connectUri": format!("ws://{addr}/channels/ch-{n}"), "expires": s.expires_in.map(|d| (jiff::Timestamp::now() + d).to_string())}))
        .into_response()
}

async fn subscribe(State(s): State<Arc<Stub>>, Path(id): Path<String>, Json(body): Json<Vec<Value>>) -> Response {
    let topics: Vec<String> = body.iter().filter_map(|t| t["id"].as_str().map(str::to_string)).collect();
    let entities: Vec<Value> = topics.iter().map(|t| json!({"id": t, "state": "Permitted"})).collect();
    s.subscriptions.lock().push((id, topics));
    Json(json!({ "entities": entities })).into_response()
}

async fn socket(State(s): State<Arc<Stub>>, Path(id): Path<String>, ws: WebSocketUpgrade) -> Response {
    let n: u32 = id.trim_start_matches("ch-").parse().unwrap();
    s.connections.fetch_add(1, Ordering::SeqCst);
    ws.on_upgrade(move |socket| (s.script.clone())(n, socket, s.clone()))
}

async fn start(
    script: Script,
    configure: impl FnOnce(&mut NotificationConfig),
) -> (Arc<Stub>, mpsc::Receiver<Notification>) {
    start_with(script, None, configure).await
}

async fn start_with(
    script: Script,
    expires_in: Option<Duration>,
    configure: impl FnOnce(&mut NotificationConfig),
) -> (Arc<Stub>, mpsc::Receiver<Notification>) {
    let stub = Arc::new(Stub {
        addr: Mutex::new(String::new()),
        channels: AtomicU32::new(0),
        connections: AtomicU32::new(0),
        expires_in,
        subscriptions: Mutex::new(Vec::new()),
        pings: AtomicU32::new(0),
        script,
    });
    let app = Router::new()
        .route("/oauth/token", post(token))
        .route("/api/v2/notifications/channels", post(create_channel))
        .route("/api/v2/notifications/channels/{id}/subscriptions", post(subscribe))
        .route("/channels/{id}", get(socket))
        .with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *stub.addr.lock() = addr.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let conn = GenesysConnection::for_base_url(
        "ws-org",
        Url::parse(&format!("http://{addr}")).unwrap(),
        vec![("id".into(), Secret::new("secret"))],
    );
    let client = GenesysClient::new(conn, ScaledClock::system().shared(), discard_attempts()).unwrap();
    let mut config = NotificationConfig::new(vec![
        "v2.detail.events.conversation.{id}.user.end".into(),
        "v2.detail.events.conversation.{id}.acw".into(),
    ]);
    config.ping_interval = Duration::from_millis(100);
    config.backoff_base = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(50);
    configure(&mut config);
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run(client, config, tx));
    (stub, rx)
}

fn acw_frame(conversation: &str) -> String {
    json!({
        "topicName": format!("v2.detail.events.conversation.{conversation}.acw"),
        "version": "2",
        "eventBody": {"eventTime": 1000, "conversationId": conversation, "participantId": "p", "wrapupCode": "code"},
        "metadata": {"CorrelationId": "m"}
    })
    .to_string()
}

async fn send(socket: &mut WebSocket, text: &str) {
    socket.send(Message::Text(text.to_string().into())).await.unwrap();
}

/// Reads until the client goes away, counting pings and answering them like the platform does.
async fn answer_pings(mut socket: WebSocket, stub: Arc<Stub>) {
    while let Some(Ok(msg)) = socket.recv().await {
        if let Message::Text(t) = msg {
            if t.as_str().contains("ping") {
                stub.pings.fetch_add(1, Ordering::SeqCst);
                let pong = r#"{"topicName":"channel.metadata","eventBody":{"message":"pong"}}"#;
                if socket.send(Message::Text(pong.into())).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn next(rx: &mut mpsc::Receiver<Notification>) -> Notification {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a notification in time")
        .expect("open channel")
}

fn conversation_of(n: &Notification) -> &str {
    match n {
        Notification::Event(e) => &e.leg.conversation,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn events_flow_from_the_socket_into_the_channel() {
    let script: Script = Arc::new(|_, mut socket, stub| {
        Box::pin(async move {
            send(&mut socket, r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#)
                .await;
            send(&mut socket, "not json").await;
            send(&mut socket, &acw_frame("c-1")).await;
            let customer_end = json!({"topicName": "v2.detail.events.conversation.c-1.customer.end", "eventBody": {}});
            send(&mut socket, &customer_end.to_string()).await;
            send(&mut socket, r#"{"topicName":"v2.users.u.presence","eventBody":{}}"#).await;
            answer_pings(socket, stub).await;
        })
    });
    let (stub, mut rx) = start(script, |_| {}).await;
    let first = next(&mut rx).await;
    let Notification::Event(e) = &first else { panic!("{first:?}") };
    assert_eq!(e.leg.connection, "ws-org");
    assert_eq!(e.dedupe_key, "genesys:acw:c-1:p:1000");
    assert!(matches!(e.kind, EventKind::CodeRecorded { .. }));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(rx.try_recv().is_err(), "heartbeats, ignored topics and bad frames yield nothing");
    assert!(stub.pings.load(Ordering::SeqCst) >= 2);
    let subs = stub.subscriptions.lock().clone();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].0, "ch-1");
    assert_eq!(subs[0].1.len(), 2);
}

#[tokio::test]
async fn socket_closing_switches_channels_before_the_old_one_closes() {
    let script: Script = Arc::new(|n, mut socket, stub| {
        Box::pin(async move {
            if n == 1 {
                send(&mut socket, r#"{"topicName":"v2.system.socket_closing","eventBody":{"message":"closing"}}"#)
                    .await;
                // Still delivered: the old socket is drained after the switch.
                send(&mut socket, &acw_frame("c-old")).await;
            } else {
                send(&mut socket, &acw_frame("c-new")).await;
            }
            answer_pings(socket, stub).await;
        })
    });
    let (stub, mut rx) = start(script, |_| {}).await;
    let mut seen = vec![conversation_of(&next(&mut rx).await).to_string()];
    seen.push(conversation_of(&next(&mut rx).await).to_string());
    seen.sort();
    assert_eq!(seen, ["c-new", "c-old"]);
    assert_eq!(stub.channels.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_socket_the_platform_closes_is_replaced_and_the_blind_window_reported() {
    let script: Script = Arc::new(|n, mut socket, stub| {
        Box::pin(async move {
            send(&mut socket, &acw_frame(&format!("c-{n}"))).await;
            if n == 1 {
                let _ = socket.send(Message::Close(None)).await;
                return;
            }
            answer_pings(socket, stub).await;
        })
    });
    let (stub, mut rx) = start(script, |_| {}).await;
    assert_eq!(conversation_of(&next(&mut rx).await), "c-1");
    let gap = next(&mut rx).await;
    let Notification::Gap { from, to } = gap else { panic!("expected a gap, got {gap:?}") };
    assert!(from <= to);
    assert_eq!(conversation_of(&next(&mut rx).await), "c-2");
    assert_eq!(stub.channels.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_broken_socket_rejoins_its_channel_without_a_new_channel_or_subscription() {
    let script: Script = Arc::new(|_, mut socket, stub| {
        Box::pin(async move {
            let connection = stub.connections.load(Ordering::SeqCst);
            send(&mut socket, &acw_frame(&format!("c-{connection}"))).await;
            if connection == 1 {
                // The connection just breaks: no close frame.
                return;
            }
            answer_pings(socket, stub).await;
        })
    });
    let (stub, mut rx) = start(script, |_| {}).await;
    assert_eq!(conversation_of(&next(&mut rx).await), "c-1");
    assert!(matches!(next(&mut rx).await, Notification::Gap { .. }));
    assert_eq!(conversation_of(&next(&mut rx).await), "c-2");
    assert_eq!(stub.connections.load(Ordering::SeqCst), 2);
    assert_eq!(stub.channels.load(Ordering::SeqCst), 1, "the channel was rejoined");
    assert_eq!(stub.subscriptions.lock().len(), 1, "its subscriptions stayed with it");
}

#[tokio::test]
async fn a_silent_socket_is_presumed_dead_rejoined_once_then_replaced() {
    let script: Script = Arc::new(|n, mut socket, stub| {
        Box::pin(async move {
            if n == 1 {
                // Neither heartbeats nor pongs: hold the socket open and say nothing.
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(socket);
                return;
            }
            send(&mut socket, &acw_frame("c-2")).await;
            answer_pings(socket, stub).await;
        })
    });
    let (stub, mut rx) = start(script, |c| c.idle_timeout = Duration::from_millis(300)).await;
    // Silent, rejoined, silent again: a new channel.
    assert!(matches!(next(&mut rx).await, Notification::Gap { .. }));
    assert!(matches!(next(&mut rx).await, Notification::Gap { .. }));
    assert_eq!(conversation_of(&next(&mut rx).await), "c-2");
    assert_eq!(stub.channels.load(Ordering::SeqCst), 2);
    assert_eq!(stub.connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_channel_is_renewed_before_it_expires() {
    let script: Script = Arc::new(|n, mut socket, stub| {
        Box::pin(async move {
            if n == 2 {
                send(&mut socket, &acw_frame("c-2")).await;
            }
            answer_pings(socket, stub).await;
        })
    });
    let (stub, mut rx) =
        start_with(script, Some(Duration::from_secs(3)), |c| c.renew_before = Duration::from_millis(2500)).await;
    // Channel 1 expires in 3 s and is renewed 2.5 s before: channel 2 is up well before channel 1 would lapse,
    // and the switch is not a gap.
    let started = std::time::Instant::now();
    assert_eq!(conversation_of(&next(&mut rx).await), "c-2");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(stub.channels.load(Ordering::SeqCst) >= 2);
}

#[tokio::test]
async fn too_many_topics_are_refused_up_front() {
    let conn = GenesysConnection::for_base_url(
        "x",
        Url::parse("http://127.0.0.1:9").unwrap(),
        vec![("id".into(), Secret::new("secret"))],
    );
    let client = GenesysClient::new(conn, ScaledClock::system().shared(), discard_attempts()).unwrap();
    let (tx, _rx) = mpsc::channel(1);
    let topics = (0..1001).map(|i| format!("v2.detail.events.conversation.c{i}.acw")).collect();
    let err = run(client.clone(), NotificationConfig::new(topics), tx.clone()).await.unwrap_err();
    assert!(matches!(err, NotificationError::TooManyTopics { count: 1001 }));
    assert!(matches!(run(client, NotificationConfig::new(vec![]), tx).await, Err(NotificationError::NoTopics)));
}
