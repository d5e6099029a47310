//! The real `wrapup serve` process, killed with SIGKILL mid-run and restarted on the same SQLite file.

use crate::harness::{center, sandbox, SUPPORT_IMMEDIATE};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wrapup_core::clock::ScaledClock;
use wrapup_sandbox::config::{AcwMode, Dist};
use wrapup_sandbox::{EventTarget, Sandbox};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_wrapup"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("wrapup serve starts")
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if http.get(format!("{base}/ready")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("wrapup serve did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_service_mid_run_and_restarting_it_never_writes_a_leg_twice() {
    // Wall-clock time: the child process runs on the system clock.
    let mut c = center(AcwMode::MandatoryTimeout, Some(30_000));
    c.arrival_rate_per_sec = 6.0;
    c.agents = 40;
    c.alert_time = Dist::new(0.1, 0.2, 0.5);
    c.talk_time = Dist::new(0.5, 1.0, 2.0);
    c.agent.at_disconnect = 0.2;
    c.agent.at_disconnect_delay = Dist::new(0.0, 0.2, 1.0);
    let port = free_port();
    let key = "restart-test-intake-key";
    let mut cfg = sandbox(c);
    cfg.traffic_autostart = false;
    cfg.event_targets.push(EventTarget {
        url: format!("http://127.0.0.1:{port}/intake/genesys"),
        api_key_header: Some("x-wrapup-intake-key".into()),
        api_key: Some(key.into()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sb = Sandbox::start(cfg, listener, ScaledClock::system().shared()).await.unwrap();
    let (id, secret) = sb.credentials()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wrapup.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "data"
listen = "127.0.0.1:{port}"
[[connections]]
name = "genesys"
kind = "genesys"
base_url = "{base}"
client_id = "{id}"
client_secret = "literal:{secret}"
requests_per_minute = 6000
[connections.intake]
api_key = "literal:{key}"
{SUPPORT_IMMEDIATE}"#,
            base = sb.base_url()
        ),
    )
    .unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");

    let mut child = serve(&config);
    wait_healthy(&http, &base).await;
    sb.start_traffic();
    let kills = 4;
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(900)).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        tokio::time::sleep(Duration::from_millis(200)).await;
        child = serve(&config);
        wait_healthy(&http, &base).await;
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    sb.stop_traffic();

    // Every window the sandbox closed, and every leg it ended, must end in an outcome.
    let start = Instant::now();
    let (missing, legs) = loop {
        let legs: Vec<serde_json::Value> =
            http.get(format!("{base}/api/v1/legs?limit=1000")).send().await.unwrap().json().await.unwrap();
        let done: std::collections::HashSet<(String, String)> = legs
            .iter()
            .filter(|l| l["state"] == "done")
            .map(|l| {
                (
                    l["key"]["conversation"].as_str().unwrap().to_string(),
                    l["key"]["participant"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let missing: Vec<_> = sb
            .legs()
            .into_iter()
            .filter(|t| t.acw_started_at.is_some() && t.state != "acw")
            .filter(|t| !done.contains(&(t.conversation_id.clone(), t.participant_id.clone())))
            .collect();
        if missing.is_empty() || start.elapsed() > Duration::from_secs(15) {
            break (missing, legs);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    child.kill().unwrap();
    let _ = child.wait();
    let report = sb.report();
    sb.shutdown().await;
    assert!(missing.is_empty(), "legs without an outcome after {kills} kills: {}", missing.len());
    assert_eq!(report.violations.duplicate_writes, 0, "{:?}", report.violations.details);
    assert_eq!(report.violations.overwrites, 0, "{:?}", report.violations.details);
    assert_eq!(report.violations.outside_window, 0, "{:?}", report.violations.details);
    let applied = legs.iter().filter(|l| l["outcome"] == "applied").count();
    assert!(applied >= 10, "work went on across restarts: {applied} applied");
}
