//! The outbox end to end: the real `wrapup serve` under traffic, its one sink a receiver in Python that verifies
//! every request with the `standardwebhooks` reference library (`tests/outbox/receiver.py`). The sink is down
//! (503) while the service is SIGKILLed several times, then comes back: every finished leg's message must arrive,
//! verified, duplicates under one `webhook-id` with one body. Then the sink answers 410: `wrapup outbox sinks` shows
//! it disabled, and `wrapup outbox retry --enable` brings it back.
//!
//! Skipped (with a note) where `python3` or its `standardwebhooks` package is missing: `.ci/run` installs it from
//! tests/contract/requirements.txt.

use crate::harness::{self, free_port, Side};
use crate::restart::{busy_sandbox, config_text, genesys_intake, serve, settle};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

fn python_can_verify() -> bool {
    Command::new("python3")
        .args(["-c", "import standardwebhooks.webhooks"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Python receiver, killed when dropped.
struct Receiver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(dir: &Path, mode: &str) -> Receiver {
        let log = dir.join("received.jsonl");
        let mut child = Command::new("python3")
            .arg(repo_root().join("tests/outbox/receiver.py"))
            .args(["--secret", SECRET, "--mode", mode, "--log"])
            .arg(&log)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the receiver");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let port = serde_json::from_str::<serde_json::Value>(&first).expect("the receiver's first line")["port"]
            .as_u64()
            .unwrap() as u16;
        Receiver { child, port, log }
    }

    async fn mode(&self, mode: &str) {
        let url = format!("http://127.0.0.1:{}/control", self.port);
        let r = reqwest::Client::new().post(url).json(&serde_json::json!({ "mode": mode })).send().await.unwrap();
        assert!(r.status().is_success());
    }

    fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }
}

fn sink_config(port: u16) -> String {
    format!(
        "\n[[sinks]]\nname = \"crm\"\nurl = \"http://127.0.0.1:{port}/hooks\"\nsecret = \"literal:{SECRET}\"\n\
         timeout = \"2s\"\nmapping = {{ \"Issue resolved\" = \"RESOLVED\" }}\n"
    )
}

async fn wrapup(config: &Path, args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wrapup"))
        .args(args)
        .arg("--config")
        .arg(config)
        .arg("--json")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "wrapup {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finished_leg_reaches_a_standard_webhooks_receiver_through_kills_and_a_sink_that_was_down() {
    if !python_can_verify() {
        eprintln!("skipped: python3 with the `standardwebhooks` package is needed (pip install -r tests/contract/requirements.txt)");
        return;
    }
    let side = Side::Genesys;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), "down");
    let port = free_port();
    let key = "outbox-test-intake-key";
    let mut cfg = busy_sandbox(side, 41);
    cfg.event_targets.push(genesys_intake(port, key));
    let sb = harness::system_sandbox(cfg).await;
    let config = dir.path().join("wrapup.toml");
    std::fs::write(&config, config_text(side, &sb, port, key) + &sink_config(receiver.port)).unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let ready = format!("{base}/ready");
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);

    // Traffic while the sink is down, the service killed every second or so; then the sink comes back, and the
    // service is killed a few more times while it delivers the backlog.
    sb.start_traffic();
    let mut kills = 0;
    for round in 0..6 {
        if round == 3 {
            receiver.mode("ok").await;
        }
        let mut child = serve(&config, None);
        assert!(harness::until_up(&http, &ready, &mut child).await, "the service starts");
        tokio::time::sleep(Duration::from_millis(rng.gen_range(400..1200))).await;
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        kills += 1;
        if round == 3 {
            sb.stop_traffic();
        }
    }

    // A last, uninterrupted run settles the legs and delivers the rest.
    let mut child = serve(&config, None);
    assert!(harness::until_up(&http, &ready, &mut child).await);
    let settled = settle(side, &sb, &http, &base).await;
    assert_eq!(settled.missing, 0, "every closed window has an outcome");
    let finished: BTreeMap<(String, String), String> = settled
        .legs
        .iter()
        .filter(|l| l["state"] == "done")
        .map(|l| {
            let k = &l["key"];
            let key = (k["conversation"].as_str().unwrap().to_string(), k["participant"].as_str().unwrap().to_string());
            (key, l["outcome"].as_str().unwrap().to_string())
        })
        .collect();
    assert!(finished.len() >= 10, "enough legs finished to mean something: {}", finished.len());
    let started = Instant::now();
    loop {
        let pending: Vec<serde_json::Value> =
            http.get(format!("{base}/api/v1/outbox?state=pending")).send().await.unwrap().json().await.unwrap();
        let delivered_to = received_ok(&receiver);
        let all_there = finished.keys().all(|k| delivered_to.contains(k));
        if pending.is_empty() && all_there {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "not everything was delivered: {} pending, {} legs without a delivered message",
            pending.len(),
            finished.keys().filter(|k| !delivered_to.contains(*k)).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let received = receiver.received();
    assert!(received.iter().all(|r| r["verified"] == true), "everything we sent verifies with the reference library");
    assert!(received.iter().any(|r| r["answered"] == 503), "the sink was down for some of it");
    // Duplicates (retries, kills between a POST and its record) share a webhook-id and carry the same body.
    let mut bodies: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for r in &received {
        bodies.entry(r["webhook_id"].as_str().unwrap()).or_default().insert(r["body"].as_str().unwrap());
    }
    assert!(bodies.values().all(|b| b.len() == 1), "one body per webhook-id");
    // Every leg's ending arrived with the outcome the store holds (the last message of a leg that changed).
    for ((conversation, participant), outcome) in &finished {
        let last = received
            .iter()
            .filter(|r| r["answered"] == 204 && r["conversation"] == conversation.as_str())
            .filter(|r| r["participant"] == participant.as_str())
            .max_by_key(|r| r["type"] == "leg.outcome_changed")
            .expect("a delivered message");
        assert_eq!(last["outcome"], outcome.as_str(), "{conversation}/{participant}");
    }
    let applied: Vec<&serde_json::Value> = received.iter().filter(|r| r["outcome"] == "applied").collect();
    assert!(!applied.is_empty());
    let body: serde_json::Value = serde_json::from_str(applied[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["data"]["disposition"], "RESOLVED", "the sink's mapping");
    eprintln!(
        "outbox e2e: {kills} kills, {} legs finished, {} requests, {} distinct messages",
        finished.len(),
        received.len(),
        bodies.len()
    );

    // 410: the sink is disabled and shown so, and enabled again from the CLI.
    receiver.mode("gone").await;
    let replayed = wrapup(&config, &["outbox", "replay", "--since", "1h"]).await;
    assert!(replayed["resent"].as_u64().unwrap() >= finished.len() as u64);
    let started = Instant::now();
    loop {
        let sinks = wrapup(&config, &["outbox", "sinks"]).await;
        if sinks[0]["disabled"]["status"] == 410 {
            assert!(sinks[0]["pending"].as_u64().unwrap() > 0, "its messages wait for it");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the sink was not disabled: {sinks}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    receiver.mode("ok").await;
    let enabled = wrapup(&config, &["outbox", "retry", "--enable"]).await;
    assert_eq!(enabled["enabled"], serde_json::json!(["crm"]));
    let started = Instant::now();
    loop {
        let sinks = wrapup(&config, &["outbox", "sinks"]).await;
        if sinks[0]["pending"] == 0 && sinks[0]["disabled"].is_null() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the enabled sink did not catch up: {sinks}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    let _ = child.wait();
    sb.shutdown().await;
}

/// The legs the receiver accepted a message of (answered 204, verified).
fn received_ok(receiver: &Receiver) -> BTreeSet<(String, String)> {
    receiver
        .received()
        .iter()
        .filter(|r| r["answered"] == 204 && r["verified"] == true)
        .map(|r| {
            (r["conversation"].as_str().unwrap_or("").to_string(), r["participant"].as_str().unwrap_or("").to_string())
        })
        .collect()
}
