//! The HTTP edge against a hostile client: the real `wrapup serve` binary, spoken to over raw TCP so that every
//! request can be as wrong as a hostile client makes it (slow, truncated, contradictory, oversized). Each case
//! asserts the answer, that nothing was stored, and that `/health` still answers within a second; the service's
//! answers and logs are then scanned for every secret it holds. docs/RELIABILITY.md ("The HTTP edge") lists the
//! cases and what each gets.

use crate::harness::{self, free_port};
use crate::intake::{envelope, envelope_for, PARTICIPANT};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wrapup_sandbox::{SandboxConfig, SandboxHandle};

const INTAKE_KEY: &str = "EDGE-INTAKE-KEY-3b9d7f1e0a";
const ADMIN_TOKEN: &str = "EDGE-ADMIN-TOKEN-8e4c2a6d1f";
const METRICS_TOKEN: &str = "EDGE-METRICS-TOKEN-5a1f9c3e7b";
const SIGNING_SECRET: &str = "whsec_RURHRS1zaWduaW5nLWtleS05ZjNiMWQ3ZQ==";

/// The limits the suite runs with: short, so that the slow cases take a second, not the defaults' five.
const HEADER_TIMEOUT: Duration = Duration::from_millis(1000);
const BODY_TIMEOUT: Duration = Duration::from_millis(1000);
const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);
const MAX_BODY: usize = 64 * 1024;
const MAX_INTAKE: usize = 4;

async fn start_sandbox() -> SandboxHandle {
    harness::system_sandbox(SandboxConfig { preload: 0, ..SandboxConfig::default() }).await
}

/// `wrapup serve` with two Genesys connections — `gen` (API key) and `hooks` (Standard Webhooks) — an admin
/// token, a metrics token, and the admin API on an address of its own.
struct Served {
    process: harness::Served,
    addr: SocketAddr,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

fn config_text(port: u16, admin_port: u16, sandbox: &SandboxHandle, http: &str) -> String {
    let (client_id, _) = sandbox.credentials()[0].clone();
    format!(
        r#"data_dir = "data"
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin_port}"

[admin]
token = "env:T_ADMIN_TOKEN"
metrics_token = "env:T_METRICS_TOKEN"

[http]
{http}

[[connections]]
name = "gen"
kind = "genesys"
base_url = "{base}"
client_id = "{client_id}"
client_secret = "env:T_CLIENT_SECRET"

[connections.intake]
api_key = "env:T_INTAKE_KEY"
max_body_bytes = {MAX_BODY}

[[connections]]
name = "hooks"
kind = "genesys"
base_url = "{base}"
client_id = "{client_id}"
client_secret = "env:T_CLIENT_SECRET"

[connections.intake]
auth = "standard_webhooks"
signing_secret = "env:T_SIGNING_SECRET"
max_body_bytes = {MAX_BODY}

{rules}"#,
        base = sandbox.base_url(),
        rules = harness::SUPPORT,
    )
}

/// Starts the service, logging at `log_level`; `open_files`, when given, is the soft open-file limit it runs under.
async fn serve(sandbox: &SandboxHandle, http: &str, log_level: &str, open_files: Option<u64>) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let (port, admin_port) = (free_port(), free_port());
    std::fs::write(dir.path().join("wrapup.toml"), config_text(port, admin_port, sandbox, http)).unwrap();
    let (_, client_secret) = sandbox.credentials()[0].clone();
    let exe = env!("CARGO_BIN_EXE_wrapup");
    let mut cmd = match open_files {
        // `exec` keeps the pid: the file descriptors counted below are the service's.
        Some(n) => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("ulimit -n {n} && exec \"$0\" serve --config wrapup.toml"), exe]);
            c
        }
        None => {
            let mut c = Command::new(exe);
            c.args(["serve", "--config", "wrapup.toml"]);
            c
        }
    };
    cmd.current_dir(dir.path())
        .env("RUST_LOG", log_level)
        .env("NO_COLOR", "1")
        .env("T_CLIENT_SECRET", client_secret)
        .env("T_INTAKE_KEY", INTAKE_KEY)
        .env("T_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("T_METRICS_TOKEN", METRICS_TOKEN)
        .env("T_SIGNING_SECRET", SIGNING_SECRET);
    let process = harness::Served::start(&mut cmd, dir.path(), &format!("http://127.0.0.1:{port}/health")).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    Served { process, addr, admin, _dir: dir }
}

impl Served {
    fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops the service (SIGINT) and returns everything it wrote.
    async fn stop(self) -> Vec<u8> {
        self.process.stop().await
    }

    /// The legs the service stored, through the admin API.
    async fn stored(&self) -> usize {
        let reply = exchange(self.admin, &get("/api/v1/legs?limit=1000", &[("authorization", ADMIN_BEARER)]))
            .await
            .expect("the admin API answers");
        assert_eq!(reply.status, 200, "{}", reply.text());
        serde_json::from_slice::<Vec<Value>>(&reply.body).expect("legs are a JSON array").len()
    }

    /// What every case ends with: nothing stored, and `/health` answering within a second on a new connection.
    async fn assert_unharmed(&self, what: &str) {
        let started = Instant::now();
        let health = tokio::time::timeout(Duration::from_secs(1), exchange(self.addr, &get("/health", &[]))).await;
        let health = health.unwrap_or_else(|_| panic!("{what}: /health did not answer within 1 s"));
        assert_eq!(health.map(|r| r.status), Some(200), "{what}: /health");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(self.stored().await, 0, "{what}: nothing was stored");
    }
}

const ADMIN_BEARER: &str = "Bearer EDGE-ADMIN-TOKEN-8e4c2a6d1f";

/// One answer read off a socket.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// From the first byte written to the end of the answer.
    elapsed: Duration,
}

impl Reply {
    fn text(&self) -> String {
        format!("{}\n{}", self.head, String::from_utf8_lossy(&self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The API's error envelope: `{"error": {"code", "message"}}`, as JSON.
    fn envelope(&self) -> (String, String) {
        assert!(
            self.header("content-type").is_some_and(|c| c.starts_with("application/json")),
            "not JSON: {}",
            self.text()
        );
        let v: Value = serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()));
        let code = v["error"]["code"].as_str().unwrap_or_else(|| panic!("no error.code: {}", self.text()));
        let message = v["error"]["message"].as_str().unwrap_or_else(|| panic!("no error.message: {}", self.text()));
        assert!(!message.is_empty());
        (code.to_string(), message.to_string())
    }
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nhost: wrapup\r\nconnection: close\r\n");
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding"))
    {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn get(path: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    request("GET", path, headers, b"")
}

fn post(path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    request("POST", path, headers, body)
}

const KEY: (&str, &str) = ("x-wrapup-intake-key", INTAKE_KEY);
const JSON: (&str, &str) = ("content-type", "application/json");

/// Reads one answer's head (skipping nothing: a `100 Continue` is an answer here) and its body.
async fn read_reply<R: AsyncReadExt + Unpin>(r: &mut R, buf: &mut Vec<u8>, started: Instant) -> Option<Reply> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        match r.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    buf.drain(..head_end);
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut reply = Reply { status, head, body: Vec::new(), elapsed: Duration::ZERO };
    if status != 100 {
        let length = reply.header("content-length").and_then(|l| l.parse::<usize>().ok());
        loop {
            if length.is_some_and(|l| buf.len() >= l) {
                break;
            }
            let mut chunk = [0u8; 8192];
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let take = length.unwrap_or(buf.len()).min(buf.len());
        reply.body = buf.drain(..take).collect();
    }
    reply.elapsed = started.elapsed();
    Some(reply)
}

/// Sends `bytes` (from a task of its own, so that an early answer is read even while a large body is still being
/// written) and reads one answer; `None` when the connection closes first or nothing comes within 10 s.
async fn exchange(addr: SocketAddr, bytes: &[u8]) -> Option<Reply> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let (mut r, mut w) = stream.into_split();
    let bytes = bytes.to_vec();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&bytes).await;
        // Keep the write half open: closing it could end the request early for the server.
        tokio::time::sleep(Duration::from_secs(15)).await;
        drop(w);
    });
    let reply = tokio::time::timeout(Duration::from_secs(10), read_reply(&mut r, &mut Vec::new(), started)).await;
    writer.abort();
    reply.ok().flatten()
}

/// Everything the suite received, for the secret scan at the end.
#[derive(Default)]
struct Seen(Vec<u8>);

impl Seen {
    fn keep(&mut self, reply: &Reply) {
        self.0.extend_from_slice(reply.head.as_bytes());
        self.0.extend_from_slice(&reply.body);
    }
}

fn assert_no_secret(haystack: &[u8], place: &str) {
    let text = String::from_utf8_lossy(haystack);
    for (what, secret) in [
        ("intake key", INTAKE_KEY),
        ("admin token", ADMIN_TOKEN),
        ("metrics token", METRICS_TOKEN),
        ("signing secret", SIGNING_SECRET),
        ("signing key", SIGNING_SECRET.trim_start_matches("whsec_")),
    ] {
        assert!(!text.contains(secret), "the {what} leaked into {place}");
    }
}

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// The `user.end` envelope of the e2e intake tests, with its participant replaced.
fn with_participant(participant: &str) -> Vec<u8> {
    let mut v = envelope("user.end");
    v["detail"]["eventBody"]["participantId"] = json!(participant);
    body(&v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_their_refusal_store_nothing_and_leave_health_answering() {
    let sandbox = start_sandbox().await;
    let http = format!(
        "header_read_timeout_ms = {}\nbody_read_timeout_ms = {}\nidle_timeout_ms = {}\nrequest_timeout_ms = 5000\n\
         max_connections = 200\nmax_intake_requests = {MAX_INTAKE}\nmax_admin_requests = 8\nmax_health_requests = 8",
        HEADER_TIMEOUT.as_millis(),
        BODY_TIMEOUT.as_millis(),
        IDLE_TIMEOUT.as_millis()
    );
    // Debug logs: every line the service writes about these requests is scanned for secrets at the end.
    let served = serve(&sandbox, &http, "debug", None).await;
    let (addr, admin) = (served.addr, served.admin);
    let mut seen = Seen::default();
    let intake = "/intake/gen";
    let valid = body(&envelope("user.end"));
    let twenty_mib = vec![b' '; 20 << 20];
    let nested = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let huge_array = format!("[{}0]", "0,".repeat(30_000));
    let gzip = [0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x4b, 0x04, 0x00];
    let mut mismatched = envelope("user.end");
    mismatched["detail-type"] = json!("v2.detail.events.conversation.{id}.acw");
    let mut other_conversation = envelope("user.end");
    other_conversation["detail"]["topicName"] =
        json!("v2.detail.events.conversation.5d0e1c4a-0000-4000-8000-0000000000ff.user.end");
    let batch_too_big = Value::Array(vec![envelope("user.end"); 101]);
    let lowercase_admin = format!("bearer {ADMIN_TOKEN}");
    let lowercase_metrics = format!("bEaReR {METRICS_TOKEN}");

    // (what, where, request, status, error code or "" when the answer is not the API's)
    let cases: Vec<(&str, SocketAddr, Vec<u8>, u16, &str)> = vec![
        ("no key", addr, post(intake, &[JSON], &valid), 401, "unauthenticated"),
        ("wrong key", addr, post(intake, &[JSON, ("x-wrapup-intake-key", "nope")], &valid), 401, "unauthenticated"),
        (
            "a prefix of the key",
            addr,
            post(intake, &[JSON, ("x-wrapup-intake-key", &INTAKE_KEY[..INTAKE_KEY.len() - 1])], &valid),
            401,
            "unauthenticated",
        ),
        ("unknown connection", addr, post("/intake/nope", &[JSON, KEY], &valid), 404, "unknown_connection"),
        ("20 MiB without a key", addr, post(intake, &[JSON], &twenty_mib), 401, "unauthenticated"),
        ("20 MiB with the key", addr, post(intake, &[JSON, KEY], &twenty_mib), 413, "too_large"),
        (
            "chunked past the limit",
            addr,
            {
                let mut r = post(intake, &[JSON, KEY, ("transfer-encoding", "chunked")], b"");
                for _ in 0..(MAX_BODY / 4096 + 2) {
                    r.extend_from_slice(format!("1000\r\n{}\r\n", " ".repeat(4096)).as_bytes());
                }
                r.extend_from_slice(b"0\r\n\r\n");
                r
            },
            413,
            "too_large",
        ),
        (
            "gzip with the key",
            addr,
            post(intake, &[JSON, KEY, ("content-encoding", "gzip")], &gzip),
            415,
            "unsupported_encoding",
        ),
        (
            "gzip without a key",
            addr,
            post(intake, &[JSON, ("content-encoding", "gzip")], &gzip),
            401,
            "unauthenticated",
        ),
        ("10,000 levels of nesting", addr, post(intake, &[JSON, KEY], nested.as_bytes()), 400, "invalid_event"),
        ("an array of 30,001 numbers", addr, post(intake, &[JSON, KEY], huge_array.as_bytes()), 400, "invalid_event"),
        ("a batch of 101 envelopes", addr, post(intake, &[JSON, KEY], &body(&batch_too_big)), 413, "too_large"),
        ("NUL bytes in the body", addr, post(intake, &[JSON, KEY], b"{\"detail\":\0\0}"), 400, "invalid_event"),
        (
            "a NUL in an id",
            addr,
            post(intake, &[JSON, KEY], &with_participant(&format!("{PARTICIPANT}\u{0}"))),
            400,
            "invalid_event",
        ),
        ("an escape in an id", addr, post(intake, &[JSON, KEY], &with_participant("\u{1b}[2J")), 400, "invalid_event"),
        (
            "bidi and zero-width around a real id",
            addr,
            post(intake, &[JSON, KEY], &with_participant(&format!("\u{202e}{PARTICIPANT}\u{200b}"))),
            400,
            "invalid_id",
        ),
        (
            "an id that is a path",
            addr,
            post(intake, &[JSON, KEY], &with_participant("../../../../sandbox/v1/traffic/start")),
            400,
            "invalid_id",
        ),
        ("an id that is not a UUID", addr, post(intake, &[JSON, KEY], &with_participant("p-1")), 400, "invalid_id"),
        (
            "detail-type naming another topic",
            addr,
            post(intake, &[JSON, KEY], &body(&mismatched)),
            400,
            "invalid_event",
        ),
        (
            "a topic naming another conversation",
            addr,
            post(intake, &[JSON, KEY], &body(&other_conversation)),
            400,
            "invalid_event",
        ),
        (
            "an unsupported topic",
            addr,
            post(intake, &[JSON, KEY], &body(&envelope_for("v2.users.{id}.presence", "v2.users.u.presence"))),
            422,
            "invalid_event",
        ),
        ("path traversal in the path", addr, post("/intake/../api/v1/legs", &[JSON, KEY], &valid), 404, "not_found"),
        (
            "encoded traversal in the connection",
            addr,
            post("/intake/..%2F..%2Fapi%2Fv1%2Flegs", &[JSON, KEY], &valid),
            404,
            "unknown_connection",
        ),
        ("GET on intake", addr, get(intake, &[KEY]), 405, "method_not_allowed"),
        ("PUT on intake", addr, request("PUT", intake, &[JSON, KEY], &valid), 405, "method_not_allowed"),
        ("POST on /health", addr, post("/health", &[], b""), 405, "method_not_allowed"),
        (
            "DELETE on the legs",
            admin,
            request("DELETE", "/api/v1/legs", &[("authorization", ADMIN_BEARER)], b""),
            405,
            "method_not_allowed",
        ),
        (
            "the admin API on the intake address",
            addr,
            get("/api/v1/legs", &[("authorization", ADMIN_BEARER)]),
            404,
            "not_found",
        ),
        ("/metrics on the intake address", addr, get("/metrics", &[]), 404, "not_found"),
        ("an unknown path", admin, get("/api/v1/nothing", &[("authorization", ADMIN_BEARER)]), 404, "not_found"),
        (
            "a query the API cannot read",
            admin,
            get("/api/v1/legs?limit=lots", &[("authorization", ADMIN_BEARER)]),
            400,
            "bad_query",
        ),
        ("an admin call without the token", admin, get("/api/v1/legs", &[]), 401, "unauthenticated"),
        (
            "an admin call with another scheme",
            admin,
            get("/api/v1/legs", &[("authorization", &format!("Basic {ADMIN_TOKEN}"))]),
            401,
            "unauthenticated",
        ),
        (
            "a malformed leg id on the admin API",
            admin,
            get("/api/v1/legs/gen/c-1/p-1", &[("authorization", &lowercase_admin)]),
            400,
            "invalid_id",
        ),
        ("/metrics without its token", admin, get("/metrics", &[]), 401, "unauthenticated"),
        (
            "/metrics with the admin token",
            admin,
            get("/metrics", &[("authorization", ADMIN_BEARER)]),
            401,
            "unauthenticated",
        ),
        // hyper goes by the chunked coding (an empty body here), drops the length, and closes after the answer.
        (
            "Content-Length with chunked",
            addr,
            post(intake, &[JSON, KEY, ("content-length", "5"), ("transfer-encoding", "chunked")], b"0\r\n\r\n"),
            400,
            "invalid_event",
        ),
        (
            "an Expect the service does not know",
            addr,
            post(intake, &[JSON, KEY, ("expect", "200-ok")], &valid),
            417,
            "expectation_failed",
        ),
        // hyper refuses these before there is a request to route: an empty 400, and the connection closed.
        (
            "conflicting Content-Lengths",
            addr,
            post(intake, &[JSON, KEY, ("content-length", "5"), ("content-length", "6")], b"{}{}{}"),
            400,
            "",
        ),
        ("a head over 64 KiB", addr, post(intake, &[JSON, KEY, ("x-filler", &"f".repeat(70_000))], &valid), 431, ""),
        // Accepted, stores nothing: the schemes are case-insensitive.
        (
            "the admin token with a lowercase scheme",
            admin,
            get("/api/v1/summary", &[("authorization", &lowercase_admin)]),
            200,
            "",
        ),
        (
            "the metrics token with a mixed-case scheme",
            admin,
            get("/metrics", &[("authorization", &lowercase_metrics)]),
            200,
            "",
        ),
    ];
    for (what, at, bytes, want, code) in cases {
        let reply = exchange(at, &bytes).await.unwrap_or_else(|| panic!("{what}: no answer"));
        eprintln!("{what}: {} {:?} in {:?}", reply.status, String::from_utf8_lossy(&reply.body), reply.elapsed);
        assert_eq!(reply.status, want, "{what}: {}", reply.text());
        if !code.is_empty() {
            assert_eq!(reply.envelope().0, code, "{what}: {}", reply.text());
        }
        if want == 405 {
            assert!(reply.header("allow").is_some(), "{what}: a 405 says what is allowed");
        }
        seen.keep(&reply);
        served.assert_unharmed(what).await;
    }

    // An ordinary client that sends its whole body without waiting reads the refusal, not a reset: the service
    // goes on reading (and throwing away) a refused body for a while before it closes.
    let client = reqwest::Client::new();
    for (what, key, want) in
        [("20 MiB through a client, no key", None, 401), ("20 MiB through a client", Some(INTAKE_KEY), 413)]
    {
        let mut req = client.post(format!("http://{addr}{intake}")).body(twenty_mib.clone());
        if let Some(k) = key {
            req = req.header("x-wrapup-intake-key", k);
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(resp.status(), want, "{what}");
        seen.0.extend(resp.bytes().await.unwrap());
        served.assert_unharmed(what).await;
    }

    // Expect: 100-continue is answered 100 only once the headers passed their checks.
    for (what, headers, want) in [
        ("10 GB declared, no key", vec![JSON, ("content-length", "10000000000"), ("expect", "100-continue")], 401),
        (
            "10 GB declared, with the key",
            vec![JSON, KEY, ("content-length", "10000000000"), ("expect", "100-continue")],
            413,
        ),
        (
            "a stale signature",
            vec![
                JSON,
                ("content-length", "10"),
                ("expect", "100-continue"),
                ("webhook-id", "msg_1"),
                ("webhook-timestamp", "1000000000"),
                ("webhook-signature", "v1,AAAA"),
            ],
            401,
        ),
    ] {
        let path = if what.contains("signature") { "/intake/hooks" } else { intake };
        let reply = exchange(addr, &post(path, &headers, b"")).await.unwrap_or_else(|| panic!("{what}: no answer"));
        assert_eq!(reply.status, want, "{what}: the first answer is the refusal, not 100 Continue: {}", reply.text());
        assert!(reply.elapsed < Duration::from_millis(500), "{what}: at once ({:?})", reply.elapsed);
        seen.keep(&reply);
        served.assert_unharmed(what).await;
    }
    {
        // With the key, a small body: 100 first, then the body is read (and refused as not an event).
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let started = Instant::now();
        w.write_all(&post(intake, &[JSON, KEY, ("content-length", "12"), ("expect", "100-continue")], b""))
            .await
            .unwrap();
        let mut buf = Vec::new();
        let first = read_reply(&mut r, &mut buf, started).await.expect("an answer to the head");
        assert_eq!(first.status, 100, "{}", first.text());
        w.write_all(b"{\"hello\": 1}").await.unwrap();
        let last = read_reply(&mut r, &mut buf, started).await.expect("the final answer");
        assert_eq!((last.status, last.envelope().0.as_str()), (400, "invalid_event"), "{}", last.text());
        seen.keep(&last);
        served.assert_unharmed("Expect: 100-continue with the key").await;
    }

    // Standard Webhooks: stale, forged and replayed signatures.
    {
        use wrapup_service::intake_auth::sign;
        let key = wrapup_config::SigningSecret::parse(SIGNING_SECRET).unwrap();
        let now = jiff::Timestamp::now().as_second();
        let malformed = b"{\"not\": \"an event\"}".to_vec();
        let signed = |id: &str, ts: i64, body: &[u8]| {
            let sig = sign(key.key(), id, ts, body);
            post(
                "/intake/hooks",
                &[JSON, ("webhook-id", id), ("webhook-timestamp", &ts.to_string()), ("webhook-signature", &sig)],
                body,
            )
        };
        for (what, bytes, want, code) in [
            ("no signature headers", post("/intake/hooks", &[JSON], &valid), 401, "unauthenticated"),
            ("a signature ten minutes old", signed("msg_stale", now - 600, &valid), 401, "unauthenticated"),
            ("a signature ten minutes ahead", signed("msg_ahead", now + 600, &valid), 401, "unauthenticated"),
            (
                "a forged signature",
                post(
                    "/intake/hooks",
                    &[
                        JSON,
                        ("webhook-id", "msg_f"),
                        ("webhook-timestamp", &now.to_string()),
                        ("webhook-signature", "v1,Zm9yZ2Vk"),
                    ],
                    &valid,
                ),
                401,
                "unauthenticated",
            ),
            // Signed but not an event: refused after the signature, so its id is remembered...
            ("a signed body that is not an event", signed("msg_r", now, &malformed), 400, "invalid_event"),
            // ...and another body under the same id is a replay.
            ("a replayed webhook-id with another body", signed("msg_r", now, &valid), 409, "replayed_webhook_id"),
        ] {
            let reply = exchange(addr, &bytes).await.unwrap_or_else(|| panic!("{what}: no answer"));
            assert_eq!((reply.status, reply.envelope().0.as_str()), (want, code), "{what}: {}", reply.text());
            seen.keep(&reply);
            served.assert_unharmed(what).await;
        }
    }

    // Slow clients: each is cut off at its timeout, with a 408 when it sent part of a request.
    let slow = |bytes: Vec<u8>| async move {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let started = Instant::now();
        w.write_all(&bytes).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), read_reply(&mut r, &mut Vec::new(), started))
            .await
            .expect("the service closes a slow connection");
        drop(w);
        (reply, started.elapsed())
    };
    let (half_line, half_head, short_body, nothing) = tokio::join!(
        slow(b"POST /intake/gen HTTP/1.1\r\n".to_vec()),
        slow(format!("POST /intake/gen HTTP/1.1\r\nhost: w\r\nx-wrapup-intake-key: {INTAKE_KEY}\r\n").into_bytes()),
        slow(post(intake, &[JSON, KEY, ("content-length", "100")], b"{\"detail\"")),
        slow(Vec::new()),
    );
    for (what, (reply, elapsed), timeout, want) in [
        ("half a request line", half_line, HEADER_TIMEOUT, Some((408, "request_timeout"))),
        ("headers that never end", half_head, HEADER_TIMEOUT, Some((408, "request_timeout"))),
        ("a body shorter than its Content-Length", short_body, BODY_TIMEOUT, Some((408, "request_timeout"))),
        ("a connection that sends nothing", nothing, HEADER_TIMEOUT, None),
    ] {
        eprintln!("{what}: {:?} after {elapsed:?}", reply.as_ref().map(|r| r.status));
        match (reply, want) {
            (Some(reply), Some((status, code))) => {
                assert_eq!((reply.status, reply.envelope().0.as_str()), (status, code), "{what}: {}", reply.text());
                seen.keep(&reply);
            }
            (None, None) => {}
            (reply, _) => panic!("{what}: {reply:?}"),
        }
        assert!(
            elapsed >= timeout && elapsed < timeout + Duration::from_millis(900),
            "{what}: closed after {elapsed:?}"
        );
        served.assert_unharmed(what).await;
    }
    {
        // A keep-alive connection that goes quiet after an answer is closed after the idle timeout.
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut r, mut w) = stream.into_split();
        let started = Instant::now();
        w.write_all(b"GET /health HTTP/1.1\r\nhost: w\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        assert_eq!(read_reply(&mut r, &mut buf, started).await.map(|r| r.status), Some(200));
        let answered = Instant::now();
        let mut rest = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(10), r.read(&mut rest)).await;
        assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "closed, not answered: {closed:?}");
        let idle = answered.elapsed();
        eprintln!("an idle keep-alive connection: closed after {idle:?}");
        assert!(
            idle >= IDLE_TIMEOUT - Duration::from_millis(50) && idle < IDLE_TIMEOUT + Duration::from_millis(900),
            "{idle:?}"
        );
        drop(w);
        served.assert_unharmed("an idle keep-alive connection").await;
    }

    // Load shedding: with the intake's requests all in progress (slow bodies hold them), one more is answered 503
    // with Retry-After at once, while /health, /ready and the admin API answer.
    {
        let mut holders = Vec::new();
        for _ in 0..MAX_INTAKE {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&post(intake, &[JSON, KEY, ("content-length", "100")], b"{")).await.unwrap();
            holders.push(stream);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shed = exchange(addr, &post(intake, &[JSON, KEY], &valid)).await.expect("an answer");
        assert_eq!((shed.status, shed.envelope().0.as_str()), (503, "overloaded"), "{}", shed.text());
        assert_eq!(shed.header("retry-after"), Some("1"));
        assert!(shed.elapsed < Duration::from_millis(500), "{:?}", shed.elapsed);
        for path in ["/ready", "/health"] {
            // Both answer at once, and both say the service is fine: the shed is intake's alone.
            let reply = exchange(addr, &get(path, &[])).await.expect("a probe answer");
            assert_eq!(reply.status, 200, "{path}: {}", reply.text());
            assert!(reply.elapsed < Duration::from_secs(1), "{path}: {:?}", reply.elapsed);
        }
        assert_eq!(
            exchange(admin, &get("/api/v1/summary", &[("authorization", ADMIN_BEARER)])).await.map(|r| r.status),
            Some(200)
        );
        seen.keep(&shed);
        served.assert_unharmed("the intake at its cap").await;
        drop(holders);
    }

    // Every answer and every log line, for every secret.
    let logs = served.stop().await;
    assert!(String::from_utf8_lossy(&logs).contains("DEBUG"), "debug logs were captured");
    assert_no_secret(&logs, "the service's logs");
    assert_no_secret(&seen.0, "the answers");
    sandbox.shutdown().await;
}

/// The soft open-file limit of this process, raised to the hard one: the flood below needs a socket per
/// connection on this side too.
fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write one `rlimit` that lives for the call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    // `rlim_t` is u64 on Linux but not on every unix.
    #[allow(clippy::unnecessary_cast)]
    let soft = limit.rlim_cur as u64;
    soft
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Thousands of connections that each send `POST /intake/gen HTTP/1.1` and then nothing — what once filled the
/// service's file descriptors and took `/health` down — against a service whose open-file limit is 1,024: it stays
/// below that limit (at its connection cap, a new connection takes the place of an idle one), `/health` answers
/// within a second throughout, and every flood connection is closed within the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_leaves_health_answering_and_the_service_below_its_file_limit() {
    const SERVICE_OPEN_FILES: u64 = 1024;
    const FLOOD_HEADER_TIMEOUT: Duration = Duration::from_secs(3);
    let ours = raise_open_file_limit();
    let flood = 4_000.min(ours.saturating_sub(256) as usize);
    assert!(flood >= 2_000, "this process may open only {ours} files; the flood needs more");
    let sandbox = start_sandbox().await;
    // Asks for more connections than the limit allows: the service lowers the cap itself.
    let http = format!("header_read_timeout_ms = {}\nmax_connections = 4096", FLOOD_HEADER_TIMEOUT.as_millis());
    let served = serve(&sandbox, &http, "info", Some(SERVICE_OPEN_FILES)).await;
    let addr = served.addr;
    let before = open_fds(served.pid());

    let started = Instant::now();
    let mut closers = Vec::with_capacity(flood);
    let mut connect_failures = 0;
    for chunk in 0..flood.div_ceil(250) {
        let mut connecting = Vec::new();
        for _ in 0..250.min(flood - chunk * 250) {
            connecting.push(tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.ok()?;
                let connected = Instant::now();
                stream.write_all(b"POST /intake/gen HTTP/1.1\r\n").await.ok()?;
                Some((stream, connected))
            }));
        }
        for c in connecting {
            match c.await.unwrap() {
                Some((mut stream, connected)) => closers.push(tokio::spawn(async move {
                    // Until the service closes it (EOF, a 408, or a reset), with a bound.
                    let mut buf = [0u8; 512];
                    loop {
                        match tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf)).await {
                            Ok(Ok(0)) | Ok(Err(_)) => return Some(connected.elapsed()),
                            Ok(Ok(_)) => {}
                            Err(_) => return None,
                        }
                    }
                })),
                None => connect_failures += 1,
            }
        }
    }
    let opened = started.elapsed();

    // While the flood holds its connections: health within a second, the service below its limit.
    let mut most_fds = 0;
    for _ in 0..5 {
        let health = tokio::time::timeout(Duration::from_secs(1), exchange(addr, &get("/health", &[]))).await;
        assert_eq!(health.ok().flatten().map(|r| r.status), Some(200), "/health during the flood");
        most_fds = most_fds.max(open_fds(served.pid()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut held_longest = Duration::ZERO;
    let mut never_closed = 0;
    for c in closers {
        match c.await.unwrap() {
            Some(held) => held_longest = held_longest.max(held),
            None => never_closed += 1,
        }
    }
    let health = tokio::time::timeout(Duration::from_secs(1), exchange(addr, &get("/health", &[]))).await;
    assert_eq!(health.ok().flatten().map(|r| r.status), Some(200), "/health after the flood");
    let metrics = exchange(served.admin, &get("/metrics", &[("authorization", &format!("Bearer {METRICS_TOKEN}"))]))
        .await
        .expect("metrics");
    let metrics = String::from_utf8_lossy(&metrics.body).to_string();
    let logs = String::from_utf8_lossy(&served.stop().await).to_string();
    eprintln!(
        "flood: {flood} connections opened in {opened:?} ({connect_failures} failed to connect); service fds \
         {before} before, at most {most_fds} during (limit {SERVICE_OPEN_FILES}); longest held {held_longest:?}"
    );
    assert_eq!(never_closed, 0, "every flood connection was closed by the service");
    assert!(held_longest < FLOOD_HEADER_TIMEOUT + Duration::from_secs(2), "held for {held_longest:?}");
    if cfg!(target_os = "linux") {
        assert!(most_fds > 0 && (most_fds as u64) < SERVICE_OPEN_FILES, "{most_fds} open files");
    }
    assert!(logs.contains("max_connections is above what the open-file limit allows"), "the cap was lowered");
    assert!(!logs.contains("Could not accept a connection"), "no accept error");
    assert!(
        metrics.lines().any(|l| l.starts_with("wrapup_http_connections_closed_total{reason=\"evicted\"}")),
        "connections were evicted at the cap"
    );
    sandbox.shutdown().await;
}
