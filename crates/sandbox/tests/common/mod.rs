//! Test harness: a sandbox on 127.0.0.1:0 driven by a manual clock, and a small typed client.

#![allow(dead_code)]

use jiff::{SignedDuration, Timestamp};
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use wrapup_core::clock::Clock;
use wrapup_sandbox::{AgentBehaviour, CenterConfig, Dist, Sandbox, SandboxConfig, SandboxHandle};

/// A clock that moves only when the test says so.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self(Mutex::new("2026-03-02T09:00:00Z".parse().unwrap())))
    }
    pub fn advance(&self, secs: f64) {
        let mut t = self.0.lock();
        *t = t.checked_add(SignedDuration::from_secs_f64(secs)).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock()
    }
    fn wall_duration(&self, _d: SignedDuration) -> Duration {
        // Time only moves by `advance`; the loop needs no precise wake-ups because every request catches up first.
        Duration::from_millis(50)
    }
    fn clock_duration(&self, d: Duration) -> SignedDuration {
        SignedDuration::try_from(d).unwrap()
    }
}

/// Agents that never code by themselves (tests switch individual behaviours on).
pub fn passive_agents() -> AgentBehaviour {
    AgentBehaviour {
        provisional_during: 0.0,
        at_disconnect: 0.0,
        late: 0.0,
        change_after_api: 0.0,
        requests_acw: 1.0,
        skip_delay: Dist::new(1000.0, 1000.0, 1000.0),
        give_in_delay: Dist::new(100_000.0, 100_000.0, 100_000.0),
        ..AgentBehaviour::default()
    }
}

/// A quiet center: no arrivals, no transfers or consults, passive agents.
pub fn quiet_config() -> SandboxConfig {
    SandboxConfig {
        traffic_autostart: false,
        center: CenterConfig {
            transfer_probability: 0.0,
            consult_probability: 0.0,
            agent: passive_agents(),
            ..CenterConfig::default()
        },
        ..SandboxConfig::default()
    }
}

pub struct Env {
    pub sb: SandboxHandle,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    pub base: String,
    pub token: String,
}

pub async fn start(cfg: SandboxConfig) -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let clock = ManualClock::new();
    let sb = Sandbox::start(cfg, listener, clock.clone()).await.unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let base = sb.base_url();
    let mut env = Env { sb, clock, http, base, token: String::new() };
    env.token = env.new_token().await;
    env
}

impl Env {
    pub async fn new_token(&self) -> String {
        let (id, secret) = self.sb.credentials()[0].clone();
        let resp = self
            .http
            .post(format!("{}/oauth/token", self.base))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    pub async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let resp = self.http.get(format!("{}{}", self.base, path)).bearer_auth(&self.token).send().await.unwrap();
        split(resp).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let resp = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        split(resp).await
    }

    /// `POST …/communications/{commId}/wrapup` for a leg.
    pub async fn write(&self, leg: &wrapup_sandbox::LegTruth, code: &str) -> (u16, Value) {
        let path = format!(
            "/api/v2/conversations/{}/{}/participants/{}/communications/{}/wrapup",
            media_path(leg.media_type),
            leg.conversation_id,
            leg.participant_id,
            leg.communication_id
        );
        let (s, _, v) =
            self.send(reqwest::Method::POST, &path, serde_json::json!({"code": code, "notes": "by test"})).await;
        (s, v)
    }

    /// Id of a code of the leg's queue.
    pub fn code_for(&self, leg: &wrapup_sandbox::LegTruth) -> String {
        let q = leg.queue_id.clone().unwrap();
        self.sb.with_org(|o| o.queues[o.queue_by_id[&q]].codes[0].clone())
    }

    pub fn leg(&self, pid: &str) -> wrapup_sandbox::LegTruth {
        self.sb.legs().into_iter().find(|l| l.participant_id == pid).unwrap()
    }

    /// The first preloaded leg on the queue called `queue`.
    pub fn leg_on(&self, queue: &str) -> wrapup_sandbox::LegTruth {
        self.sb.legs().into_iter().find(|l| l.queue_name.as_deref() == Some(queue)).unwrap()
    }
}

pub fn media_path(m: wrapup_sandbox::Media) -> &'static str {
    m.path()
}

pub async fn split(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let v = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    (status, headers, v)
}
