//! Secrets never leak: the real `wrapup` binary runs with distinctive secret values (OAuth client secret, intake
//! key or Standard Webhooks signing secret, admin token), against the sandbox with the hostile fault profile so that
//! error paths (5xx, hangs, token revocations, 429 storms) run too, and everything it emits is scanned for them:
//! debug-level logs on stdout and stderr, the SQLite files, `/metrics`, `/api/v1/summary`, the legs and their
//! ledgers, the admin API's and intake's error responses, and `wrapup validate`'s output.

use crate::harness::{self, free_port};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use wrapup_sandbox::config::AcwMode;
use wrapup_sandbox::{EventTarget, FaultProfile, SandboxConfig, SandboxHandle};

const ADMIN_TOKEN: &str = "ADMIN-TOKEN-5e1f0c9a7d3b4a";
const INTAKE_KEY: &str = "INTAKE-KEY-8c2d6e4f1a9b0c";
const SIGNING_SECRET: &str = "whsec_U0VDUkVULXNpZ25pbmcta2V5LTRmN2U5YTJj";

/// A secret to look for, and the forms it could leak in.
struct Needle {
    what: &'static str,
    forms: Vec<String>,
}

/// Standard base64 with padding (the form of HTTP Basic credentials).
fn b64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            let c = if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] } else { b'=' };
            out.push(c as char);
        }
    }
    out
}

fn needles(client_id: &str, client_secret: &str) -> Vec<Needle> {
    vec![
        // The token request carries the client secret as HTTP Basic credentials.
        Needle {
            what: "client secret",
            forms: vec![client_secret.into(), b64(&format!("{client_id}:{client_secret}"))],
        },
        Needle { what: "intake key", forms: vec![INTAKE_KEY.into()] },
        Needle { what: "admin token", forms: vec![ADMIN_TOKEN.into()] },
        Needle {
            what: "signing secret",
            forms: vec![SIGNING_SECRET.into(), SIGNING_SECRET.trim_start_matches("whsec_").into()],
        },
    ]
}

fn assert_absent(haystack: &[u8], needles: &[Needle], place: &str) {
    let text = String::from_utf8_lossy(haystack);
    for n in needles {
        for form in &n.forms {
            if let Some(at) = text.find(form.as_str()) {
                let from = text[..at].char_indices().rev().nth(200).map_or(0, |(i, _)| i);
                panic!("the {} leaked into {place}: …{}…", n.what, &text[from..(at + form.len()).min(text.len())]);
            }
        }
    }
}

#[test]
fn the_leak_scanner_finds_every_form_of_a_secret() {
    assert_eq!((b64("abc"), b64("ab:c"), b64("a")), ("YWJj".into(), "YWI6Yw==".into(), "YQ==".into()));
    let needles = needles("id-1", "the-client-secret");
    for planted in
        [format!("x {ADMIN_TOKEN} y"), format!("Basic {}", b64("id-1:the-client-secret")), "a the-client-secret".into()]
    {
        let found = std::panic::catch_unwind(|| assert_absent(planted.as_bytes(), &needles, "a test string"));
        assert!(found.is_err(), "{planted}");
    }
    assert_absent(b"nothing secret here: id-1, INTAKE-KEY", &needles, "a test string");
}

async fn start_sandbox(faults: FaultProfile, preload: usize, target: Option<EventTarget>) -> SandboxHandle {
    let mut cfg = SandboxConfig {
        seed: 23,
        preload,
        preload_events: true,
        rate_limit_per_minute: 6000,
        faults,
        center: harness::center(AcwMode::MandatoryTimeout, Some(20_000)),
        ..SandboxConfig::default()
    };
    cfg.center.arrival_rate_per_sec = 1.0;
    cfg.event_targets.extend(target);
    harness::system_sandbox(cfg).await
}

/// `wrapup serve` as a child process with debug logs to files.
struct Served {
    process: harness::Served,
    base: String,
}

fn config_text(port: u16, sandbox: &SandboxHandle, client_id: &str, intake: &str) -> String {
    format!(
        r#"data_dir = "data"
listen = "127.0.0.1:{port}"

[admin]
token = "env:T_ADMIN_TOKEN"

[[connections]]
name = "genesys"
kind = "genesys"
base_url = "{base}"
client_id = "{client_id}"
client_secret = "env:T_CLIENT_SECRET"
requests_per_minute = 3000

[connections.intake]
{intake}

{rules}"#,
        base = sandbox.base_url(),
        rules = harness::SUPPORT,
    )
}

fn wrapup(dir: &Path, client_secret: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wrapup"));
    cmd.current_dir(dir)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .env("T_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("T_CLIENT_SECRET", client_secret)
        .env("T_INTAKE_KEY", INTAKE_KEY)
        .env("T_SIGNING_SECRET", SIGNING_SECRET);
    cmd
}

async fn serve(dir: &Path, port: u16, client_secret: &str) -> Served {
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = wrapup(dir, client_secret);
    cmd.args(["serve", "--config", "wrapup.toml"]);
    Served { process: harness::Served::start(&mut cmd, dir, &format!("{base}/health")).await, base }
}

impl Served {
    /// Stops the service the way an operator does (SIGINT), and returns everything it wrote.
    async fn stop(self) -> Vec<u8> {
        self.process.stop().await
    }
}

fn database_files(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir.join("data")).unwrap() {
        all.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    all
}

async fn list_legs(http: &reqwest::Client, base: &str) -> Vec<serde_json::Value> {
    serde_json::from_slice(&admin_get(http, base, "/api/v1/legs?limit=1000").await).expect("the legs list is JSON")
}

/// The conversations of the legs the service knows that this file posted (see [`POSTED_PREFIX`]).
/// The conversations this file's tests post start with it; the sandbox's own are random UUIDs.
const POSTED_PREFIX: &str = "7d2a0c1e-0000-4000-8000-";

async fn posted_conversations(http: &reqwest::Client, base: &str) -> Vec<String> {
    let legs = list_legs(http, base).await;
    let names = legs.iter().filter_map(|l| l["key"]["conversation"].as_str());
    names.filter(|c| c.starts_with(POSTED_PREFIX)).map(str::to_string).collect()
}

/// `GET`s `path` with the admin token, asserts 200 and returns the body.
async fn admin_get(http: &reqwest::Client, base: &str, path: &str) -> Vec<u8> {
    let resp = http.get(format!("{base}{path}")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    resp.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leak_into_logs_ledger_metrics_or_error_responses_even_under_hostile_faults() {
    let port = free_port();
    let target = EventTarget {
        url: format!("http://127.0.0.1:{port}/intake/genesys"),
        api_key_header: Some("x-wrapup-intake-key".into()),
        api_key: Some(INTAKE_KEY.into()),
    };
    let sandbox = start_sandbox(FaultProfile::hostile(), 6, Some(target)).await;
    let (client_id, client_secret) = sandbox.credentials()[0].clone();
    let needles = needles(&client_id, &client_secret);
    let dir = tempfile::tempdir().unwrap();
    let intake = "api_key_header = \"x-wrapup-intake-key\"\napi_key = \"env:T_INTAKE_KEY\"";
    std::fs::write(dir.path().join("wrapup.toml"), config_text(port, &sandbox, &client_id, intake)).unwrap();

    let served = serve(dir.path(), port, &client_secret).await;
    let base = served.base.clone();
    let http = reqwest::Client::new();
    sandbox.start_traffic();

    // The admin API refuses requests without the bearer token, or with a wrong one, and says why without echoing.
    let mut responses: Vec<(String, Vec<u8>)> = Vec::new();
    for path in ["/api/v1/legs", "/api/v1/summary", "/api/v1/legs/genesys/c/p"] {
        for token in [None, Some("wrong-token"), Some(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1])] {
            let mut req = http.get(format!("{base}{path}"));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{path} with {token:?}");
            responses.push((format!("admin {path} with {token:?}"), resp.bytes().await.unwrap().to_vec()));
        }
    }
    // Intake refusals: no key, wrong key, a prefix of the key, bad bodies with the right key, unknown connection.
    let intake = |key: Option<&str>, body: &'static [u8], connection: &str| {
        let mut req = http.post(format!("{base}/intake/{connection}")).body(body);
        if let Some(k) = key {
            req = req.header("x-wrapup-intake-key", k);
        }
        req.send()
    };
    let prefix = &INTAKE_KEY[..INTAKE_KEY.len() - 2];
    for (what, key, body, connection, status) in [
        ("no key", None, &b"{}"[..], "genesys", 401),
        ("wrong key", Some("nope"), b"{}", "genesys", 401),
        ("key prefix", Some(prefix), b"{}", "genesys", 401),
        ("malformed", Some(INTAKE_KEY), b"{\"detail\": [", "genesys", 400),
        ("not an event", Some(INTAKE_KEY), b"{\"x\": 1}", "genesys", 400),
        ("unknown connection", Some(INTAKE_KEY), b"{}", "nope", 404),
    ] {
        let resp = intake(key, body, connection).await.unwrap();
        assert_eq!(resp.status(), status, "{what}");
        responses.push((format!("intake {what}"), resp.bytes().await.unwrap().to_vec()));
    }

    // Traffic under hostile faults, then everything the API shows.
    tokio::time::sleep(Duration::from_secs(15)).await;
    sandbox.stop_traffic();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let legs: Vec<serde_json::Value> =
        serde_json::from_slice(&admin_get(&http, &base, "/api/v1/legs?limit=1000").await)
            .expect("the legs list is JSON");
    assert!(legs.len() >= 5, "traffic reached the service: {} legs", legs.len());
    responses.push(("/api/v1/legs".into(), serde_json::to_vec(&legs).unwrap()));
    let mut with_ledger = 0;
    for leg in &legs {
        let key = &leg["key"];
        let path = format!(
            "/api/v1/legs/{}/{}/{}",
            key["connection"].as_str().unwrap(),
            key["conversation"].as_str().unwrap(),
            key["participant"].as_str().unwrap()
        );
        let body = admin_get(&http, &base, &path).await;
        let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
        with_ledger += usize::from(value["ledger"].as_array().is_some_and(|l| !l.is_empty()));
        responses.push((path, body));
    }
    assert!(with_ledger > 0, "some legs have a ledger to scan");
    responses.push(("/api/v1/summary".into(), admin_get(&http, &base, "/api/v1/summary").await));
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().bytes().await.unwrap().to_vec();
    assert!(String::from_utf8_lossy(&metrics).contains("wrapup_"), "metrics are exported");
    responses.push(("/metrics".into(), metrics));

    let logs = served.stop().await;
    let log_text = String::from_utf8_lossy(&logs);
    assert!(log_text.contains("DEBUG"), "debug logs were captured ({} bytes)", logs.len());
    assert_absent(&logs, &needles, "the service's stdout/stderr");
    for (place, body) in &responses {
        assert_absent(body, &needles, place);
    }
    assert_absent(&database_files(dir.path()), &needles, "the SQLite files");

    // `wrapup validate`, on the good file and on one where secrets sit in the wrong places. The platform is calm
    // again: validate's outcome must not depend on a hang drawn by the fault profile.
    sandbox.set_faults(FaultProfile::calm());
    let out = wrapup(dir.path(), &client_secret).args(["validate", "--config", "wrapup.toml"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_absent(&[out.stdout, out.stderr].concat(), &needles, "validate's output");
    let misplaced = config_text(port, &sandbox, &client_id, &format!("api_key = \"{INTAKE_KEY}\""))
        .replace("env:T_ADMIN_TOKEN", ADMIN_TOKEN)
        .replace("env:T_CLIENT_SECRET", &client_secret)
        .replace("requests_per_minute = 3000", &format!("requests_per_minute = \"{client_secret}\""));
    std::fs::write(dir.path().join("misplaced.toml"), misplaced).unwrap();
    let out = wrapup(dir.path(), &client_secret).args(["validate", "--config", "misplaced.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert_absent(&[out.stdout, out.stderr].concat(), &needles, "validate's refusal of misplaced secrets");
    sandbox.shutdown().await;
}

/// The Standard Webhooks intake over HTTP, against the real binary: signed requests are stored, everything else
/// is refused with a reason and stores nothing, and the signing secret appears nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_intake_stores_only_signed_requests_and_never_shows_its_secret() {
    use wrapup_service::intake_auth::sign;
    let sandbox = start_sandbox(FaultProfile::calm(), 0, None).await;
    let (client_id, client_secret) = sandbox.credentials()[0].clone();
    let needles = needles(&client_id, &client_secret);
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let intake = "auth = \"standard_webhooks\"\nsigning_secret = \"env:T_SIGNING_SECRET\"";
    std::fs::write(dir.path().join("wrapup.toml"), config_text(port, &sandbox, &client_id, intake)).unwrap();
    let served = serve(dir.path(), port, &client_secret).await;
    let base = served.base.clone();
    let http = reqwest::Client::new();
    let key = wrapup_config::SigningSecret::parse(SIGNING_SECRET).unwrap();
    let now = jiff::Timestamp::now().as_second();
    let event = |conversation: &str| {
        serde_json::to_vec(&serde_json::json!({
            "topicName": format!("v2.detail.events.conversation.{conversation}.user.end"),
            "version": "2",
            "eventBody": {
                "eventTime": now * 1000, "conversationId": conversation,
                "participantId": "7d2a0c1e-0000-4000-8000-0000000000a1", "sessionId": "7d2a0c1e-0000-4000-8000-0000000000b1",
                "mediaType": "VOICE", "direction": "INBOUND", "disconnectType": "PEER",
                "queueId": "7d2a0c1e-0000-4000-8000-0000000000d1", "userId": "7d2a0c1e-0000-4000-8000-0000000000e1",
                "interactingDurationMs": 1000, "heldDurationMs": 0
            }
        }))
        .unwrap()
    };
    let post = |id: Option<&str>, ts: Option<i64>, sig: Option<String>, body: Vec<u8>| {
        let mut req = http.post(format!("{base}/intake/genesys")).body(body);
        if let Some(id) = id {
            req = req.header("webhook-id", id);
        }
        if let Some(ts) = ts {
            req = req.header("webhook-timestamp", ts.to_string());
        }
        if let Some(sig) = sig {
            req = req.header("webhook-signature", sig);
        }
        req.send()
    };
    let other = wrapup_config::SigningSecret::parse("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
    // Genesys conversation ids are UUIDs.
    const SIGNED: &str = "7d2a0c1e-0000-4000-8000-000000000001";
    let body = event(SIGNED);
    let good = sign(key.key(), "msg_1", now, &body);
    let mut responses = Vec::new();
    for (what, resp, want, says) in [
        ("no headers", post(None, None, None, body.clone()).await, 401, "missing header webhook-id"),
        (
            "wrong secret",
            post(Some("msg_1"), Some(now), Some(sign(other.key(), "msg_1", now, &body)), body.clone()).await,
            401,
            "no v1 signature",
        ),
        (
            "tampered body",
            post(Some("msg_1"), Some(now), Some(good.clone()), event("7d2a0c1e-0000-4000-8000-000000000002")).await,
            401,
            "no v1",
        ),
        (
            "ten minutes old",
            post(Some("msg_1"), Some(now - 600), Some(sign(key.key(), "msg_1", now - 600, &body)), body.clone()).await,
            401,
            "behind",
        ),
        (
            "ten minutes ahead",
            post(Some("msg_1"), Some(now + 600), Some(sign(key.key(), "msg_1", now + 600, &body)), body.clone()).await,
            401,
            "ahead of",
        ),
        ("no signature", post(Some("msg_1"), Some(now), None, body.clone()).await, 401, "webhook-signature"),
    ] {
        let resp = resp.unwrap();
        assert_eq!(resp.status(), want, "{what}");
        let bytes = resp.bytes().await.unwrap().to_vec();
        assert!(String::from_utf8_lossy(&bytes).contains(says), "{what}: {}", String::from_utf8_lossy(&bytes));
        responses.push(bytes);
    }
    assert_eq!(posted_conversations(&http, &base).await, Vec::<String>::new(), "nothing refused was stored");

    // Valid, with a stale signature beside the good one: stored. The same delivery again: a duplicate.
    let stale = sign(other.key(), "msg_1", now, &body);
    let resp = post(Some("msg_1"), Some(now), Some(format!("{stale} {good}")), body.clone()).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["accepted"], 1);
    let resp = post(Some("msg_1"), Some(now), Some(good.clone()), body.clone()).await.unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["duplicates"], 1);
    // The same id with another (validly signed) body: refused.
    let other_body = event("7d2a0c1e-0000-4000-8000-000000000003");
    let resp =
        post(Some("msg_1"), Some(now), Some(sign(key.key(), "msg_1", now, &other_body)), other_body).await.unwrap();
    assert_eq!(resp.status(), 409);
    responses.push(resp.bytes().await.unwrap().to_vec());
    assert_eq!(posted_conversations(&http, &base).await, [SIGNED]);

    let logs = served.stop().await;
    assert_absent(&logs, &needles, "the service's stdout/stderr");
    for body in &responses {
        assert_absent(body, &needles, "an intake refusal");
    }
    assert_absent(&database_files(dir.path()), &needles, "the SQLite files");
    sandbox.shutdown().await;
}
