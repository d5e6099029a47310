//! The Notification API websocket as the only intake: no EventBridge target, every event a queue conversation
//! snapshot over the sandbox's channel socket.

use crate::harness::{self, center, sandbox, Side, SUPPORT_IMMEDIATE};
use std::time::Duration;
use wrapup_demo::IntakeMode;
use wrapup_sandbox::config::{AcwMode, Dist};

/// The sum of a Prometheus counter's samples whose labels contain all of `labels`.
fn counter(rendered: &str, name: &str, labels: &[&str]) -> f64 {
    rendered
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_only_intake_applies_codes_lets_agents_win_and_survives_a_socket_drop() {
    let mut c = center(AcwMode::MandatoryTimeout, Some(60_000));
    // A third of the agents type a provisional code while talking and finish it well into the window: they must
    // win. Every leg's window closes by a later change (the agent's final code or the timeout), so a snapshot lost
    // while the socket is down is always followed by another one carrying the same facts.
    c.agent.provisional_during = 0.35;
    c.agent.provisional_delay = Dist::new(0.5, 1.0, 2.0);
    c.agent.late_delay = Dist::new(15.0, 20.0, 30.0);
    let mut s = sandbox(c);
    s.event_targets.clear();
    let env = harness::start_with(Side::Genesys, s, SUPPORT_IMMEDIATE, IntakeMode::WebsocketOnly).await;
    let metrics = env.env.service.as_ref().and_then(|s| s.state.metrics.clone());
    let sb = env.env.sandbox.clone();

    // Wall time: the socket is dropped while traffic goes on around it.
    assert!(wrapup_demo::websocket_connected(&sb), "the service's socket is up once started");
    sb.start_traffic();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sb.drop_notification_sockets(), 1, "one channel, one socket");
    let rejoined = async {
        while !wrapup_demo::websocket_connected(&sb) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(3), rejoined).await.expect("the service reconnects");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    sb.stop_traffic();
    env.quiesce(Duration::from_secs(20)).await;
    let run = env.finish().await;

    run.assert_invariants();
    assert_eq!(run.report.events.delivered, 0, "no EventBridge delivery at all");
    assert!(run.report.events.ws_frames_sent > 0, "{:?}", run.report.events);
    assert_eq!(run.report.events.ws_sockets_dropped, 1);
    let o = &run.summary.outcomes;
    assert_eq!(o.applied + o.agent_won, run.in_acw().count() as u64, "every leg was coded, by us or its agent: {o:?}");
    assert!(o.applied >= 3, "outcomes: {o:?}");
    assert!(o.agent_won >= 1, "outcomes: {o:?}");
    assert_eq!(run.write_requests(), run.accepted_writes(), "no write refused or repeated");
    assert_eq!(run.accepted_writes(), run.coded_by(wrapup_sandbox::CodedBy::Api), "one write per leg we coded");
    assert!(run.truth.iter().all(|t| !t.agent_coded_before_api), "no write landed on a leg an agent had coded");
    // The drop was survived by rejoining the same channel: no new channel or subscription was paid for.
    let calls = |endpoint: &str| run.report.api.by_endpoint.get(endpoint).map(|s| s.values().sum::<u64>());
    assert_eq!(calls("POST /api/v2/notifications/channels"), Some(1), "{:?}", run.report.api.by_endpoint);
    assert_eq!(calls("POST /api/v2/notifications/channels/{id}/subscriptions"), Some(1));
    if let Some(m) = metrics {
        let rendered = m.render();
        assert!(counter(&rendered, "wrapup_intake_gaps_total", &["connection=\"genesys\""]) >= 1.0, "{rendered}");
        let ws = ["connection=\"genesys\"", "intake=\"websocket\"", "result=\"accepted\""];
        assert!(counter(&rendered, "wrapup_intake_events_total", &ws) > 0.0, "{rendered}");
    }
}

/// `wrapup validate` names a websocket intake queue the live catalog does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_websocket_queues_missing_from_the_catalog() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = wrapup_sandbox::SandboxConfig { traffic_autostart: false, ..Default::default() };
    let sandbox =
        wrapup_sandbox::Sandbox::start(cfg, listener, wrapup_clock::ScaledClock::system().shared()).await.unwrap();
    let (id, secret) = sandbox.credentials()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, queues: &str| {
        let path = dir.path().join(name);
        let text = format!(
            "data_dir = \"data\"\n[[connections]]\nname = \"sandbox\"\nkind = \"genesys\"\nbase_url = \"{}\"\n\
             client_id = \"{id}\"\nclient_secret = \"literal:{secret}\"\n[connections.intake]\napi_key = \"literal:k\"\n\
             websocket = {{ enabled = true, queues = [{queues}] }}\n",
            sandbox.base_url()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let run = |path: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_wrapup"))
                .arg("validate")
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap()
        })
    };
    let ok = run(write("good.toml", "\"Support\", \"Sales\"")).await.unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let bad = run(write("bad.toml", "\"Support\", \"Nowhere\"")).await.unwrap();
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("websocket intake queue \"Nowhere\" does not exist"), "{stdout}");
    assert!(!stdout.contains("\"Support\""), "{stdout}");
    sandbox.shutdown().await;
}

/// On a store shared by replicas one of them at a time holds the websocket intake (the platform keeps a few channels
/// per OAuth client): a second replica opens no channel while the first holds it, and takes the intake over once the
/// first stops, so that events keep arriving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_holds_the_websocket_intake_and_another_takes_it_over() {
    const VAR: &str = "WRAPUP_TEST_POSTGRES_URL";
    let Some(server) = std::env::var(VAR).ok().filter(|u| !u.is_empty()) else {
        eprintln!("skipped: {VAR} is not set (replicas sharing the websocket intake need a PostgreSQL database)");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("wrapup_ws_{}_{nanos}", std::process::id());
    let url = wrapup_store::PostgresStore::create_database(&server, &name).await.unwrap();
    let mut s = sandbox(center(AcwMode::MandatoryTimeout, Some(60_000)));
    s.event_targets.clear();
    let opts = wrapup_demo::EnvOptions {
        sandbox: s,
        rules: SUPPORT_IMMEDIATE.to_string(),
        speed: harness::SPEED,
        requests_per_minute: 6000,
        data_dir: None,
        cxone: None,
        store: Some(url.clone()),
        lookup_fallback: None,
    };
    let every = Duration::from_millis(wrapup_demo::DEFAULT_RECONCILE_EVERY_MS);
    let mut env = wrapup_demo::DemoEnv::start_with(opts, IntakeMode::WebsocketOnly, every).await.unwrap();
    let sb = env.sandbox.clone();
    let channels = || {
        let api = sb.report().api;
        api.by_endpoint.get("POST /api/v2/notifications/channels").map_or(0, |s| s.values().sum::<u64>())
    };
    let connected = |within: Duration| {
        let sb = sb.clone();
        async move {
            let up = async {
                while !wrapup_demo::websocket_connected(&sb) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(within, up).await.is_ok()
        }
    };
    assert!(connected(Duration::from_secs(5)).await, "the first replica holds the intake");

    let store: std::sync::Arc<dyn wrapup_store::Store> =
        std::sync::Arc::new(wrapup_store::PostgresStore::connect(&url).await.unwrap());
    let spec = wrapup_service::build::spec_from_config(&env.config, store.clone(), env.clock.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = wrapup_service::app::start(spec, listener).await.unwrap();
    // Several of the holder's renewals (every 2 s): the second replica waits and opens nothing.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(channels(), 1, "only the holder opened a channel: {:?}", sb.report().api.by_endpoint);

    // The holder stops; its lease (6 s) runs out and the second replica opens its own channel.
    env.service.take().unwrap().shutdown().await;
    assert!(connected(Duration::from_secs(15)).await, "the second replica takes the intake over");
    assert_eq!(channels(), 2);
    sb.start_traffic();
    let first_legs = async {
        while sb.legs().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), first_legs).await.expect("the sandbox makes traffic");
    sb.stop_traffic();
    let heard = async {
        while store.list_legs(&wrapup_store::LegFilter::default()).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), heard).await.expect("events reach the store through the new holder");
    second.shutdown().await;
    drop(env);
    drop(store);
    wrapup_store::PostgresStore::drop_database(&server, &name).await.unwrap();
}
