use std::time::Duration;
use wrapup_core::lifecycle::LegRecord;
use wrapup_demo::summary::ConnectionSummary;
use wrapup_demo::{DemoEnv, EnvOptions};
use wrapup_sandbox::config::{AcwMode, AgentBehaviour, CenterConfig, Dist, MediaMix, QueueConfig};
use wrapup_sandbox::SandboxConfig;

/// Simulated seconds per wall second in these tests.
pub const SPEED: f64 = 10.0;

/// One queue, fast calls only, agents who never code unless a test says so.
pub fn center(mode: AcwMode, timeout_ms: Option<u64>) -> CenterConfig {
    CenterConfig {
        queues: vec![QueueConfig {
            name: "Support".into(),
            wrapup_prompt: mode,
            timeout_ms,
            codes: vec!["Issue resolved".into(), "Escalated".into()],
            weight: 1.0,
        }],
        unassigned_codes: vec!["Test code".into()],
        agents: 20,
        queues_per_agent: 1,
        arrival_rate_per_sec: 0.6,
        media_mix: MediaMix { calls: 1.0, messages: 0.0, emails: 0.0, callbacks: 0.0 },
        alert_time: Dist::new(0.5, 1.0, 2.0),
        talk_time: Dist::new(3.0, 6.0, 12.0),
        hold_probability: 0.0,
        hold_time: Dist::new(1.0, 1.0, 1.0),
        transfer_probability: 0.0,
        consult_probability: 0.0,
        agent: AgentBehaviour {
            provisional_during: 0.0,
            at_disconnect: 0.0,
            late: 0.0,
            change_after_api: 0.0,
            requests_acw: 1.0,
            ..AgentBehaviour::default()
        },
    }
}

pub fn sandbox(center: CenterConfig) -> SandboxConfig {
    SandboxConfig { seed: 11, preload: 0, rate_limit_per_minute: 6000, center, ..SandboxConfig::default() }
}

pub const SUPPORT_IMMEDIATE: &str = r#"
[[rules]]
name = "support"
code = "Issue resolved"
timing = "immediate"
[rules.when]
queue = "Support"
"#;

pub struct Run {
    pub summary: ConnectionSummary,
    pub legs: Vec<LegRecord>,
    pub report: wrapup_sandbox::Report,
    pub truth: Vec<wrapup_sandbox::LegTruth>,
}

pub async fn start(sandbox: SandboxConfig, rules: &str) -> DemoEnv {
    DemoEnv::start(EnvOptions {
        sandbox,
        rules: rules.to_string(),
        speed: SPEED,
        requests_per_minute: 6000,
        data_dir: None,
        cxone: None,
    })
    .await
    .expect("the sandbox and the service start")
}

/// Runs traffic for `secs` wall seconds, lets the service settle, and stops everything.
pub async fn run(env: DemoEnv, secs: u64) -> Run {
    env.sandbox.start_traffic();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    env.sandbox.stop_traffic();
    finish(env).await
}

pub async fn finish(env: DemoEnv) -> Run {
    let pending = env.settle_with_last_look(Duration::from_secs(10)).await.expect("settle");
    assert_eq!(pending, 0, "every closed window has an outcome in the service");
    let done = env.finish_with_truth().await.expect("finish");
    Run { summary: done.summary, legs: done.legs, report: done.report, truth: done.truth }
}

impl Run {
    /// Accepted or refused, every wrap-up write the sandbox received.
    pub fn write_requests(&self) -> u64 {
        self.report
            .api
            .by_endpoint
            .iter()
            .filter(|(k, _)| k.starts_with("POST ") && k.ends_with("/wrapup"))
            .flat_map(|(_, by_status)| by_status.values())
            .sum()
    }

    pub fn calls_to(&self, endpoint_prefix: &str) -> u64 {
        self.report
            .api
            .by_endpoint
            .iter()
            .filter(|(k, _)| k.starts_with(endpoint_prefix))
            .flat_map(|(_, by_status)| by_status.values())
            .sum()
    }

    pub fn assert_no_violations(&self) {
        let v = &self.summary.violations;
        assert_eq!(
            (v.overwrites, v.outside_window, v.duplicate_writes, v.lost),
            (0, 0, 0, 0),
            "violations: {:?}",
            self.summary.violation_details
        );
        assert_eq!(self.report.violations.overwrite_attempts, 0, "no write was even attempted over an agent code");
    }
}
