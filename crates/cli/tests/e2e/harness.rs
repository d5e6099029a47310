//! One harness for both platforms: a [`Side`] names the platform a scenario runs on, and everything else — starting
//! the sandbox and the service, driving traffic, draining to quiescence, finishing with the ground truth and the
//! invariants judged on it — is the same code for both. CXone contacts are read in the Genesys leg shape
//! ([`wrapup_demo::cxone_truth_as_legs`]: conversation = master contact, participant = contact) and the CXone report
//! in the Genesys report shape, so one assertion covers both; what only CXone shows (its write log) is kept beside.
//!
//! A run ends in quiescence, not after a sleep: traffic stops, every conversation ends, and every leg that entered
//! ACW has an outcome in the service. Counts are then exact and derived from the sandbox's truth (every leg that
//! needed a code got ours, one write each), whatever the machine's speed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use wrapup_clock::ScaledClock;
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::Outcome;
use wrapup_demo::summary::ConnectionSummary;
use wrapup_demo::{CxoneDetection, CxoneOptions, DemoEnv, EnvOptions, IntakeMode};
use wrapup_sandbox::config::{AcwMode, AgentBehaviour, CenterConfig, Dist, MediaMix, QueueConfig};
use wrapup_sandbox::cxone::{AcwType, CxMedia, CxoneAgentBehaviour, CxoneCenter, SkillConfig};
use wrapup_sandbox::{CodedBy, CxoneReport, CxoneWrite, LegTruth, Report, Sandbox, SandboxConfig, SandboxHandle};

/// Simulated seconds per wall second in these tests.
pub const SPEED: f64 = 10.0;

/// The platform a scenario runs on. CXone names how the service finds its ACW windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Genesys,
    Cxone(CxoneDetection),
}

impl Side {
    /// CXone with polling detection, the connection's default.
    pub const CXONE: Side = Side::Cxone(CxoneDetection::Polling);
    /// CXone with a joined session per agent.
    pub const CXONE_SESSIONS: Side = Side::Cxone(CxoneDetection::Sessions);

    /// The service's connection to the side's platform.
    fn connection(self) -> &'static str {
        match self {
            Side::Genesys => wrapup_demo::CONNECTION,
            Side::Cxone(_) => wrapup_demo::CXONE_CONNECTION,
        }
    }

    /// The wrap-up write endpoint's path ending.
    fn write_suffix(self) -> &'static str {
        match self {
            Side::Genesys => "/wrapup",
            Side::Cxone(_) => "/disposition",
        }
    }
}

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
        agent_accuracy: wrapup_sandbox::DEFAULT_AGENT_ACCURACY,
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

/// One skill ("Support", voice, ACW with dispositions, not required, 60 s timeout), fast contacts only, agents who
/// never disposition unless a test says so.
pub fn cx_center() -> CxoneCenter {
    CxoneCenter {
        skills: vec![SkillConfig {
            name: "Support".into(),
            media: CxMedia::Voice,
            acw_type: AcwType::Disposition,
            require_disposition: false,
            max_seconds_acw: 60,
            allow_secondary_dispositions: false,
            dispositions: vec!["Issue resolved".into(), "Escalated".into()],
            weight: 1.0,
        }],
        unassigned_dispositions: vec!["Test code".into()],
        system_dispositions: Vec::new(),
        agents: 20,
        skills_per_agent: 1,
        arrival_rate_per_sec: 0.6,
        alert_time: Dist::new(0.5, 1.0, 2.0),
        talk_time: Dist::new(3.0, 6.0, 12.0),
        transfer_probability: 0.0,
        agent_accuracy: wrapup_sandbox::DEFAULT_AGENT_ACCURACY,
        agent: CxoneAgentBehaviour {
            at_disconnect: 0.0,
            late: 0.0,
            change_after_api: 0.0,
            // Agents never leave ACW without a disposition: the timeout closes undispositioned windows.
            skip_delay: Dist::new(600.0, 600.0, 600.0),
            ..CxoneAgentBehaviour::default()
        },
    }
}

/// A sandbox whose Genesys org runs `center`.
pub fn sandbox(center: CenterConfig) -> SandboxConfig {
    SandboxConfig { seed: 11, preload: 0, rate_limit_per_minute: 6000, center, ..SandboxConfig::default() }
}

/// A sandbox whose Genesys org is idle and whose CXone business unit runs `center_cfg`.
pub fn cx_sandbox(center_cfg: CxoneCenter) -> SandboxConfig {
    let mut genesys = center(AcwMode::MandatoryTimeout, Some(60_000));
    genesys.arrival_rate_per_sec = 0.0;
    let mut s = sandbox(genesys);
    s.cxone.center = center_cfg;
    s
}

/// The side's one queue or skill, its window closing by itself after `acw_secs`, agents who never code.
pub fn sandbox_for(side: Side, acw_secs: u64) -> SandboxConfig {
    match side {
        Side::Genesys => sandbox(center(AcwMode::MandatoryTimeout, Some(acw_secs * 1000))),
        Side::Cxone(_) => {
            let mut c = cx_center();
            c.skills[0].max_seconds_acw = acw_secs as u32;
            cx_sandbox(c)
        }
    }
}

/// One rule for the "Support"-like queue `queue`; `extra` holds its other keys (`mode`, `timing`).
pub fn rule(name: &str, code: &str, queue: &str, extra: &str) -> String {
    format!("[[rules]]\nname = {name:?}\ncode = {code:?}\n{extra}\n[rules.when]\nqueue = {queue:?}\n")
}

/// The one rule of the child-process tests: every "Support" leg gets "Issue resolved".
pub const SUPPORT: &str = r#"
[[rules]]
name = "support"
code = "Issue resolved"
[rules.when]
queue = "Support"
"#;

pub const SUPPORT_IMMEDIATE: &str = r#"
[[rules]]
name = "support"
code = "Issue resolved"
timing = "immediate"
[rules.when]
queue = "Support"
"#;

/// One test per line, `name => (side, other arguments)`, each calling `$scenario(side, …)`.
macro_rules! sides {
    ($scenario:ident: $($test:ident => ($($arg:expr),+)),+ $(,)?) => {
        mod $scenario {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$scenario($($arg),+).await;
                }
            )+
        }
    };
}
pub(crate) use sides;

/// How much traffic a run drives.
#[derive(Debug, Clone, Copy)]
pub enum Traffic {
    /// Until this many conversations (CXone: master contacts) are in the sandbox's truth: Genesys shows a
    /// conversation once it reaches an agent, CXone a contact once it arrives.
    Conversations(usize),
    /// For this long, wall time: for what is itself wall time (token lifetimes, storms, restarts).
    For(Duration),
}

/// How far a run drains before it is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Every conversation ended and every leg that entered ACW has an outcome.
    Decided,
    /// And every window has closed: for agents who act after our write (an outcome can still change until then).
    WindowsClosed,
}

/// The sandbox and the service, for one side.
pub struct Env {
    pub side: Side,
    pub env: DemoEnv,
}

/// Starts the sandbox and the service for `side`, with the EventBridge intake.
pub async fn start(side: Side, sandbox: SandboxConfig, rules: &str) -> Env {
    start_with(side, sandbox, rules, IntakeMode::EventBridge).await
}

pub async fn start_with(side: Side, sandbox: SandboxConfig, rules: &str, intake: IntakeMode) -> Env {
    let cxone = match side {
        Side::Genesys => None,
        Side::Cxone(acw_detection) => {
            Some(CxoneOptions { acw_detection, poll_interval_ms: 200, requests_per_minute: 6000 })
        }
    };
    let opts = EnvOptions {
        sandbox,
        rules: rules.to_string(),
        speed: SPEED,
        requests_per_minute: 6000,
        data_dir: None,
        cxone,
        store: None,
        lookup_fallback: None,
    };
    let env = DemoEnv::start_with(opts, intake, Duration::from_millis(wrapup_demo::DEFAULT_RECONCILE_EVERY_MS))
        .await
        .expect("the sandbox and the service start");
    Env { side, env }
}

/// Drives `traffic`, drains to quiescence and finishes with the ground truth.
pub async fn run(side: Side, sandbox: SandboxConfig, rules: &str, traffic: Traffic) -> Run {
    run_until(side, sandbox, rules, traffic, Drain::Decided).await
}

pub async fn run_until(side: Side, sandbox: SandboxConfig, rules: &str, traffic: Traffic, drain: Drain) -> Run {
    let env = start(side, sandbox, rules).await;
    env.traffic(traffic).await;
    env.quiesce_until(Duration::from_secs(20), drain).await;
    env.finish().await
}

impl Env {
    /// The side's legs in the sandbox, now.
    pub fn truth(&self) -> Vec<LegTruth> {
        truth_of(self.side, &self.env.sandbox)
    }

    /// Conversations in the side's truth.
    fn conversations(&self) -> usize {
        let truth = self.truth();
        let mut ids: Vec<&str> = truth.iter().map(|t| t.conversation_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    /// Runs traffic, then stops it.
    pub async fn traffic(&self, traffic: Traffic) {
        self.env.sandbox.start_traffic();
        match traffic {
            Traffic::Conversations(n) => {
                let started = Instant::now();
                while self.conversations() < n {
                    assert!(started.elapsed() < Duration::from_secs(30), "{n} conversations did not arrive in 30 s");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Traffic::For(d) => tokio::time::sleep(d).await,
        }
        self.env.sandbox.stop_traffic();
    }

    /// Waits until every conversation has ended and every leg that entered ACW has an outcome in the service;
    /// fails the test when that takes longer than `max`.
    pub async fn quiesce(&self, max: Duration) {
        self.quiesce_until(max, Drain::Decided).await;
    }

    /// [`Self::quiesce`], as far as `drain` says.
    pub async fn quiesce_until(&self, max: Duration, drain: Drain) {
        let started = Instant::now();
        loop {
            let truth = self.truth();
            let legs = self.env.legs_of(self.side.connection()).await.expect("legs");
            let done: std::collections::HashSet<(&str, &str)> = legs
                .iter()
                .filter(|l| l.is_done())
                .map(|l| (l.key.conversation.as_str(), l.key.participant.as_str()))
                .collect();
            // A leg the service left to its agent on a provisional code: the agent's final code is still to come.
            let agent_to_finish: std::collections::HashSet<(&str, &str)> = legs
                .iter()
                .filter(|l| l.outcome == Some(Outcome::AgentWon))
                .map(|l| (l.key.conversation.as_str(), l.key.participant.as_str()))
                .collect();
            let busy: Vec<&LegTruth> = match drain {
                Drain::Decided => {
                    truth.iter().filter(|t| !matches!(t.state.as_str(), "acw" | "done" | "closed")).collect()
                }
                Drain::WindowsClosed => {
                    truth.iter().filter(|t| !matches!(t.state.as_str(), "done" | "closed")).collect()
                }
            };
            fn key(t: &LegTruth) -> (&str, &str) {
                (t.conversation_id.as_str(), t.participant_id.as_str())
            }
            let undecided: Vec<&LegTruth> = truth
                .iter()
                .filter(|t| t.acw_started_at.is_some())
                .filter(|t| {
                    !done.contains(&key(t))
                        || agent_to_finish.contains(&key(t)) && t.state == "acw" && t.coded_by != CodedBy::Agent
                })
                .collect();
            if busy.is_empty() && undecided.is_empty() {
                return;
            }
            assert!(
                started.elapsed() < max,
                "no quiescence after {max:?} ({drain:?}): {} legs still busy, {} in ACW without an outcome: \
                 {undecided:#?}",
                busy.len(),
                undecided.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks that every closed window has an outcome, stops everything and reads the ground truth.
    pub async fn finish(self) -> Run {
        let Env { side, env } = self;
        let pending = env.settle_with_last_look(Duration::from_secs(10)).await.expect("settle");
        assert_eq!(pending, 0, "every closed window has an outcome in the service");
        let sandbox = env.sandbox.clone();
        let done = env.finish_with_truth().await.expect("finish");
        match side {
            Side::Genesys => Run {
                side,
                summary: done.summary,
                legs: done.legs,
                truth: done.truth,
                report: done.report,
                cx_writes: None,
            },
            Side::Cxone(_) => {
                let cx = done.cxone.expect("the CXone connection ran");
                let report = as_report(&cx.report);
                Run {
                    side,
                    summary: cx.summary,
                    legs: cx.legs,
                    truth: wrapup_demo::cxone_truth_as_legs(&cx.truth),
                    report,
                    cx_writes: Some(sandbox.cxone_writes()),
                }
            }
        }
    }
}

/// The side's legs in the sandbox, now (CXone contacts in the Genesys shape).
pub fn truth_of(side: Side, sandbox: &SandboxHandle) -> Vec<LegTruth> {
    match side {
        Side::Genesys => sandbox.legs(),
        Side::Cxone(_) => wrapup_demo::cxone_truth_as_legs(&sandbox.cxone_legs()),
    }
}

/// The side's report, now (CXone's in the Genesys shape).
pub fn report_of(side: Side, sandbox: &SandboxHandle) -> Report {
    match side {
        Side::Genesys => sandbox.report(),
        Side::Cxone(_) => as_report(&sandbox.cxone_report()),
    }
}

fn as_report(cx: &CxoneReport) -> Report {
    Report {
        legs: cx.legs.clone(),
        violations: cx.violations.clone(),
        api: cx.api.clone(),
        events: cx.events.clone(),
        cxone: CxoneReport::default(),
    }
}

/// What the sandbox recorded against the service: no write over an agent's code (nor an attempt), none outside a
/// window, no second effective write; on CXone, every accepted disposition inside its window and one per contact.
pub fn assert_no_violation(side: Side, report: &Report, cx_writes: Option<&[CxoneWrite]>) {
    let v = &report.violations;
    assert_eq!(
        (v.overwrites, v.overwrite_attempts, v.outside_window, v.duplicate_writes),
        (0, 0, 0, 0),
        "{side:?} violations: {:?}",
        v.details
    );
    let mut accepted: HashMap<i64, u32> = HashMap::new();
    for w in cx_writes.unwrap_or_default().iter().filter(|w| w.status == 200) {
        assert!(w.in_window, "an accepted write outside the window: {w:?}");
        *accepted.entry(w.contact_id).or_default() += 1;
    }
    assert!(accepted.values().all(|&n| n == 1), "a contact with two accepted writes: {cx_writes:?}");
}

/// A finished run of one side, judged by that side's ground truth.
pub struct Run {
    pub side: Side,
    pub summary: ConnectionSummary,
    pub legs: Vec<LegRecord>,
    /// The side's legs (CXone contacts in the Genesys shape).
    pub truth: Vec<LegTruth>,
    /// The side's report (CXone's in the Genesys shape).
    pub report: Report,
    /// CXone: every disposition write the sandbox received, accepted or refused.
    pub cx_writes: Option<Vec<CxoneWrite>>,
}

impl Run {
    /// Accepted or refused, every wrap-up write the sandbox received.
    pub fn write_requests(&self) -> u64 {
        let suffix = self.side.write_suffix();
        self.report
            .api
            .by_endpoint
            .iter()
            .filter(|(k, _)| k.starts_with("POST ") && k.ends_with(suffix))
            .flat_map(|(_, by_status)| by_status.values())
            .sum()
    }

    /// Requests whose `METHOD /path` contains `endpoint_part`.
    pub fn calls_to(&self, endpoint_part: &str) -> u64 {
        self.calls_where(|k| k.contains(endpoint_part))
    }

    /// Requests whose `METHOD /path` matches.
    pub fn calls_where(&self, endpoint: impl Fn(&str) -> bool) -> u64 {
        self.report
            .api
            .by_endpoint
            .iter()
            .filter(|(k, _)| endpoint(k))
            .flat_map(|(_, by_status)| by_status.values())
            .sum()
    }

    /// Writes the platform accepted, over all legs.
    pub fn accepted_writes(&self) -> u64 {
        self.truth.iter().map(|t| u64::from(t.api_writes)).sum()
    }

    /// Legs that entered ACW: those that needed a code.
    pub fn in_acw(&self) -> impl Iterator<Item = &LegTruth> {
        self.truth.iter().filter(|t| t.acw_started_at.is_some())
    }

    /// Legs that entered ACW and were coded by `who`.
    pub fn coded_by(&self, who: CodedBy) -> u64 {
        self.in_acw().filter(|t| t.coded_by == who).count() as u64
    }

    /// Legs the service finished with `outcome`.
    pub fn with_outcome(&self, outcome: Outcome) -> impl Iterator<Item = &LegRecord> {
        self.legs.iter().filter(move |l| l.outcome == Some(outcome))
    }

    /// The invariants, on the sandbox's ground truth: no agent code overwritten (not even attempted), no write
    /// outside a window, at most one effective write per leg, every leg that entered ACW with a recorded outcome,
    /// and each leg's outcome what the sandbox says happened to it ([`Self::assert_outcomes_agree_with_truth`]).
    pub fn assert_invariants(&self) {
        assert_no_violation(self.side, &self.report, self.cx_writes.as_deref());
        let s = &self.summary.violations;
        assert_eq!(
            (s.overwrites, s.outside_window, s.duplicate_writes, s.lost),
            (0, 0, 0, 0),
            "{:?}: {:?} {:?}",
            self.side,
            self.summary.violation_details,
            self.summary.lost_legs
        );
        let by_key: HashMap<(&str, &str), &LegRecord> =
            self.legs.iter().map(|l| ((l.key.conversation.as_str(), l.key.participant.as_str()), l)).collect();
        for t in self.in_acw() {
            assert!(t.api_writes <= 1, "leg {} was written {} times", t.participant_id, t.api_writes);
            let leg = by_key.get(&(t.conversation_id.as_str(), t.participant_id.as_str()));
            assert!(
                leg.is_some_and(|l| l.is_done()),
                "leg {} entered ACW and has no outcome: {leg:?}",
                t.participant_id
            );
        }
        self.assert_outcomes_agree_with_truth();
    }

    /// Each leg's outcome against who coded it in the sandbox: `applied` holds our code (written by us, or — the
    /// one admitted ambiguity, when the platform reported the intended code while our write was in flight — put
    /// there by its agent, who chose the very same code); `agent_won` was coded by its agent, never by us;
    /// `agent_changed` was written by us, then changed by its agent to another code; any other outcome was never
    /// written. Agents' changes after our write are only final once the windows have closed ([`Drain`]).
    pub fn assert_outcomes_agree_with_truth(&self) {
        let by_key: HashMap<(&str, &str), &LegRecord> =
            self.legs.iter().map(|l| ((l.key.conversation.as_str(), l.key.participant.as_str()), l)).collect();
        for t in self.in_acw() {
            let leg = by_key
                .get(&(t.conversation_id.as_str(), t.participant_id.as_str()))
                .unwrap_or_else(|| panic!("leg {} is unknown to the service", t.participant_id));
            let holds_ours =
                t.final_code.is_some() && t.final_code.as_deref() == leg.intent.as_ref().map(|i| i.code_id.as_str());
            let agrees = match leg.outcome {
                Some(Outcome::Applied) => {
                    holds_ours
                        && (t.coded_by == CodedBy::Api && t.api_writes == 1
                            || t.coded_by == CodedBy::Agent
                                && (t.agent_changed_after_api
                                    || leg.outcome_reason.as_deref().is_some_and(|r| r.contains("identical choice"))))
                }
                Some(Outcome::AgentWon) => t.coded_by == CodedBy::Agent && t.api_writes == 0,
                Some(Outcome::AgentChanged) => {
                    t.coded_by == CodedBy::Agent && t.agent_changed_after_api && t.api_writes == 1 && !holds_ours
                }
                _ => t.coded_by != CodedBy::Api && t.api_writes == 0,
            };
            assert!(agrees, "{:?}: the service's outcome disagrees with the sandbox: {leg:#?}\n{t:#?}", self.side);
        }
    }

    /// The invariants, and every leg that entered ACW finished as `outcome` with nothing of ours on it. Returns
    /// those legs (never none).
    pub fn assert_every_leg_ended_unwritten_as(&self, outcome: Outcome) -> Vec<&LegRecord> {
        self.assert_invariants();
        let needing = self.in_acw().count();
        assert!(needing > 0, "{:?}: no leg entered ACW", self.side);
        let ended: Vec<&LegRecord> = self.with_outcome(outcome).collect();
        assert_eq!(ended.len(), needing, "{:?}: every leg is {outcome:?}: {:?}", self.side, self.summary.outcomes);
        assert_eq!(self.coded_by(CodedBy::Api), 0, "nothing of ours on any leg: {:?}", self.report.legs);
        ended
    }

    /// The invariants, and every leg that entered ACW coded by us with one accepted write: what an `immediate`
    /// rule on every leg gives when no agent codes. Returns how many legs that is (never none).
    pub fn assert_every_leg_coded_by_us(&self) -> u64 {
        self.assert_invariants();
        let needing = self.in_acw().count() as u64;
        assert!(needing > 0, "{:?}: no leg entered ACW", self.side);
        let o = &self.summary.outcomes;
        assert_eq!(o.applied, needing, "{:?}: every leg that needed a code got ours: {o:?}", self.side);
        assert_eq!(self.coded_by(CodedBy::Api), needing, "the sandbox agrees: {:?}", self.report.legs);
        assert_eq!(self.accepted_writes(), needing, "one accepted write per leg");
        needing
    }
}

// The real `wrapup` binary as a child process, for what only a process shows (its logs, its files, its death).

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A sandbox on the system clock, as the child process's own clock is, with traffic stopped.
pub async fn system_sandbox(mut cfg: SandboxConfig) -> SandboxHandle {
    cfg.traffic_autostart = false;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    Sandbox::start(cfg, listener, ScaledClock::system().shared()).await.unwrap()
}

/// Polls `url` until it answers 2xx: `true` then, `false` when the child exited first. Panics after 20 s.
pub async fn until_up(http: &reqwest::Client, url: &str, child: &mut Child) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} did not answer within 20 s");
}

/// `wrapup serve` (or what `cmd` runs) with its stdout and stderr in files of `dir`.
pub struct Served {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Served {
    /// Spawns `cmd` and waits until `health_url` answers.
    pub async fn start(cmd: &mut Command, dir: &Path, health_url: &str) -> Served {
        let stdout = dir.join("serve.stdout");
        let stderr = dir.join("serve.stderr");
        let child = cmd
            .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .expect("the service starts");
        let mut served = Served { child, stdout, stderr };
        let up = until_up(&reqwest::Client::new(), health_url, &mut served.child).await;
        assert!(up, "the service did not come up: {}", std::fs::read_to_string(&served.stderr).unwrap_or_default());
        served
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the service the way an operator does (SIGINT) and returns everything it wrote.
    pub async fn stop(mut self) -> Vec<u8> {
        let _ = Command::new("kill").args(["-INT", &self.pid().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut out = std::fs::read(&self.stdout).unwrap();
        out.extend(std::fs::read(&self.stderr).unwrap());
        out
    }
}
