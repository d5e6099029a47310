//! The websocket intake's reading of queue conversation snapshots against the sandbox's EventBridge detail events
//! for the same legs: a leg must look the same to the rules whichever intake reported it.

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use url::Url;
use wrapup_clock::ScaledClock;
use wrapup_connectors::attempt::discard_attempts;
use wrapup_connectors::genesys::events::{parse_eventbridge, Parsed};
use wrapup_connectors::genesys::notifications::{self, Notification, NotificationConfig};
use wrapup_connectors::genesys::queue_topics::queue_topic;
use wrapup_connectors::genesys::{GenesysClient, GenesysConnection};
use wrapup_connectors::Priority;
use wrapup_core::{EventKind, LegFacts, LegKey, Secret};
use wrapup_sandbox::{Dist, EventTarget, Sandbox, SandboxConfig, SYSTEM_TIMEOUT_CODE_ID};

type Bodies = Arc<Mutex<Vec<Vec<u8>>>>;

async fn collect(State(bodies): State<Bodies>, body: Bytes) -> &'static str {
    bodies.lock().push(body.to_vec());
    "ok"
}

#[derive(Default)]
struct Seen {
    ended: HashMap<LegKey, LegFacts>,
    /// Final codes per leg, with the system flag.
    codes: HashMap<LegKey, HashSet<(Option<String>, bool)>>,
}

impl Seen {
    fn add(&mut self, e: wrapup_core::Event) {
        match e.kind {
            EventKind::LegEnded { facts } => {
                self.ended.insert(e.leg, *facts);
            }
            EventKind::CodeRecorded { code_id, system, .. } => {
                self.codes.entry(e.leg).or_default().insert((code_id, system));
            }
            EventKind::LegClosed
            | EventKind::LegClosedUnread
            | EventKind::DecisionArrived { .. }
            | EventKind::OperatorResolved { .. } => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_snapshots_give_the_same_legs_and_codes_as_the_detail_events() {
    let bodies: Bodies = Arc::default();
    let intake = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let intake_url = format!("http://{}/events", intake.local_addr().unwrap());
    let app = Router::new().route("/events", post(collect)).with_state(bodies.clone());
    tokio::spawn(async move { axum::serve(intake, app).await.unwrap() });

    let mut cfg = SandboxConfig {
        seed: 5,
        traffic_autostart: false,
        rate_limit_per_minute: 6000,
        event_targets: vec![EventTarget { url: intake_url, api_key_header: None, api_key: None }],
        ..Default::default()
    };
    cfg.center.arrival_rate_per_sec = 0.5;
    cfg.center.talk_time = Dist::new(5.0, 10.0, 20.0);
    cfg.center.agent.at_disconnect = 0.5;
    cfg.center.agent.at_disconnect_delay = Dist::new(1.0, 2.0, 5.0);
    let clock = ScaledClock::new(jiff::Timestamp::now(), 20.0).shared();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sandbox = Sandbox::start(cfg, listener, clock.clone()).await.unwrap();
    let sandbox_clock = clock.clone();
    let creds = sandbox.credentials().into_iter().map(|(id, s)| (id, Secret::new(s))).collect();
    let conn = GenesysConnection::for_base_url("sandbox", Url::parse(&sandbox.base_url()).unwrap(), creds);
    let client = GenesysClient::new(conn, clock, discard_attempts()).unwrap();

    let queues = client.list_queues(Priority::reconcile()).await.unwrap();
    let topics: Vec<String> = queues.iter().map(|q| queue_topic(&q.id)).collect();
    let config = NotificationConfig::new(topics);
    config.system_code_ids.write().insert(SYSTEM_TIMEOUT_CODE_ID.to_string());
    let (tx, mut rx) = mpsc::channel(1024);
    let socket = tokio::spawn(notifications::run(client, config, tx));
    // Traffic starts once the socket is up, so both intakes see every leg from its start.
    for _ in 0..100 {
        if sandbox.report().api.by_endpoint.keys().any(|k| k.contains("subscriptions")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    sandbox.start_traffic();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sandbox.stop_traffic();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut ws = Seen::default();
    while let Ok(n) = rx.try_recv() {
        if let Notification::Event(e) = n {
            ws.add(e);
        }
    }
    drop(rx);
    // Detail events are read after the socket's, and a moment later, so that both have seen every leg that ended
    // before the socket was drained.
    let drained_at = sandbox_clock.now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let system: HashSet<String> = [SYSTEM_TIMEOUT_CODE_ID.to_string()].into_iter().collect();
    let mut eb = Seen::default();
    for body in bodies.lock().iter() {
        for p in parse_eventbridge("sandbox", body, &system).unwrap() {
            if let Parsed::Event(e) = p {
                eb.add(e);
            }
        }
    }

    assert!(ws.ended.len() >= 5, "only {} legs ended over the websocket", ws.ended.len());
    for (leg, w) in &ws.ended {
        let e = eb.ended.get(leg).unwrap_or_else(|| panic!("{leg:?} ended over the websocket only"));
        let same = |f: &LegFacts| {
            (
                f.platform,
                f.communication_id.clone(),
                f.media.clone(),
                f.channel,
                f.direction,
                f.queue_id.clone(),
                f.user_id.clone(),
                f.disconnect_type.clone(),
                f.ended_at,
            )
        };
        assert_eq!(same(w), same(e), "{leg:?}");
        // The snapshot also carries the participant's ACW timeout, which the detail event leaves to the catalog.
        let queue = queues.iter().find(|q| Some(&q.id) == w.queue_id.as_ref()).unwrap();
        let timed = queue.acw_settings.as_ref().and_then(|a| a.timeout_ms);
        if w.acw_timeout_ms.is_some() {
            assert_eq!(w.acw_timeout_ms, timed, "{leg:?}");
        }
    }
    // Every leg that needs a code and ended over EventBridge also ended over the websocket.
    let ws_legs: HashSet<&LegKey> = ws.ended.keys().collect();
    let needing_acw: HashSet<(String, String)> = sandbox
        .legs()
        .into_iter()
        .filter(|t| t.acw_started_at.is_some())
        .map(|t| (t.conversation_id, t.participant_id))
        .collect();
    let settled = drained_at - jiff::SignedDuration::from_secs(20);
    let checked = eb
        .ended
        .iter()
        .filter(|(_, f)| f.ended_at.is_some_and(|t| t < settled))
        .filter(|(k, _)| needing_acw.contains(&(k.conversation.clone(), k.participant.clone())));
    for (leg, _) in checked {
        assert!(ws_legs.contains(leg), "{leg:?} ended over EventBridge only");
    }
    assert!(!ws.codes.is_empty(), "codes were recorded over the websocket");
    for (leg, codes) in &ws.codes {
        let detail = eb.codes.get(leg).unwrap_or_else(|| panic!("{leg:?} coded over the websocket only"));
        assert!(codes.is_subset(detail), "{leg:?}: websocket {codes:?}, detail events {detail:?}");
    }
    socket.abort();
    sandbox.shutdown().await;
}
