//! `saturation`: offered load about three times what the budget allows. Does the service use the whole budget
//! (`utilisation`), stay clear of the platform's limit (`rate_limited_share`), and spend the budget on the legs with
//! the earliest deadlines (`deadline_order_violations`)? `--window fixed|sliding|token_bucket` picks how the sandbox
//! counts its per-minute limit (see docs/SANDBOX.md); the service is not told which.
//!
//! The Genesys center has a queue of every ACW mode, equal shares: MANDATORY_TIMEOUT at 10 s and 40 s,
//! MANDATORY_FORCED_TIMEOUT at 20 s (so deadlines do not follow arrival order), MANDATORY without a timeout,
//! OPTIONAL (agents leave the window uncoded after 5–60 s, so those legs end at a moment the service can only
//! estimate), and AGENT_REQUESTED with a 30 s timeout (half the agents ask for ACW; the other legs never have a
//! window and must cost no write). Agents never code by themselves: every leg with a window is ours to code, or it
//! times out or is left. One `immediate` rule codes every leg. Clock speed 1.
//!
//! - The measured window: the budget spends what the platform's window allows when it allows it (a backlog drains at
//!   once, then nothing until the count falls), so a rate over part of a minute would measure where the window
//!   boundary fell, not the budget. Runs of 90 s or more (the default is 150 s) measure the last whole minutes after
//!   at least 30 s of warm-up (token, catalog load, the backlog forming, the first window's allowance spent as the
//!   load arrives); shorter runs measure all but the first sixth (at most 10 s) and are only indicative.
//! - `utilisation` = `spent_share` = requests the platform admitted in the measured window (every endpoint but the
//!   token's, every status but 429) ÷ its limit over that window. Not every admitted call buys a code on a center of
//!   all modes (a leg that never had a window costs its gate read), so codes per minute and `coverage` stand beside
//!   it: coverage is the share of legs whose window opened and closed during the run that ended with a meaningful
//!   code (see `naive::Judged`); at three times the load the budget can code it cannot exceed about a third.
//! - `deadline_order_violations`: applied legs A (written in the run) chosen at `t` — when A's gate read answered,
//!   which is when the budget had given A its share — while some leg B with an earlier deadline had been in ACW since
//!   at least 1 s before `t`, could still be coded for at least 1 s after `t` (its window closed no sooner than its
//!   deadline minus the service's 500 ms guard, plus 1 s), and then closed without any code of ours (the platform's
//!   timeout stamped it, or its agent left). That is a code spent on a later deadline while an earlier one was both
//!   known and still reachable. Judging by the write's time instead would count, at every reset of a fixed window,
//!   the writes that waited for it after reads made before B existed. A leg's deadline is the one the service orders
//!   it by: the platform's ACW timeout, or the deadline the service estimated for a window its agent may leave
//!   (OPTIONAL, AGENT_REQUESTED) where that is sooner or the only one. The 1 s margins leave room for B's own read and
//!   write. B is taken from the sandbox's truth, not from the service's store: a leg the service never claimed
//!   would be missing from a metric over the store's records alone, and those are the legs that waited longest. A's
//!   times are the service's; both clocks are the run's one shared clock.
//!
//! With `--platform cxone` the same load runs on the sandbox's CXone business unit instead ([`saturate_cxone`]):
//! three skills whose ACW times out after 10, 20 and 40 s without a disposition requirement, silent agents, ACW
//! detected by polling every [`CXONE_POLL_MS`], the business unit limited to `--rate-limit` per minute per token
//! under `--window`, and the service's CXone budget set to the same. CXone sends no rate-limit headers, so the
//! budget keeps its even pace there. Its calls are not only codes (a session join per agent, the detection polls),
//! so its `utilisation` is `spent_share`, with the applied codes per minute beside it.

use super::{
    queue, round, run_for, sandbox, short_center, silent_agents, start_env_on, BenchArgs, BenchPlatform, Report,
};
use jiff::{SignedDuration, Timestamp};
use std::time::Duration;
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::Outcome;
use wrapup_demo::cxone_truth_as_legs;
use wrapup_sandbox::cxone::{AcwType, CxMedia, CxoneAgentBehaviour, CxoneCenter, SkillConfig};
use wrapup_sandbox::report::{ApiReport, ViolationReport};
use wrapup_sandbox::{AcwMode, CodedBy, Dist, LegTruth, RateWindow};

/// The default length of a saturation run, wall seconds: two measured minutes after 30 s of warm-up.
pub const DEFAULT_SECS: u64 = 150;

/// Wall milliseconds between CXone detection polls (two calls each: active contacts, agent states).
pub const CXONE_POLL_MS: u64 = 2_000;

/// What one saturated run measured.
pub struct Saturated {
    /// Services spending the budget (replicas on one database).
    pub services: usize,
    pub clients: usize,
    pub platform: &'static str,
    pub window: RateWindow,
    pub offered_legs_per_s: f64,
    pub budget_per_minute: f64,
    pub warmup_secs: f64,
    pub window_secs: f64,
    pub applied_in_window: usize,
    pub applied_per_minute: f64,
    pub utilisation: f64,
    pub spent_share: f64,
    pub api_calls: u64,
    pub rate_limited: u64,
    pub rate_limited_share: f64,
    pub deadline_order_violations: usize,
    /// Up to ten of them: the write, and the missed leg of earliest deadline it went ahead of.
    pub order_violation_examples: serde_json::Value,
    /// Truth-judged: legs whose window opened and closed during the run that ended with a meaningful code.
    pub coverage: crate::naive::Judged,
    pub applied: u64,
    pub expired: u64,
    pub review: u64,
    pub legs: u64,
    pub calls_per_applied: Option<f64>,
    pub sandbox_violations: u64,
    pub violations: wrapup_demo::summary::Violations,
    pub calls_by_endpoint: serde_json::Value,
}

/// The warm-up and the measured window of a run of `duration` (see the module docs).
pub fn measured_window(duration: Duration) -> (Duration, Duration) {
    if duration >= Duration::from_secs(90) {
        let measured = Duration::from_secs((duration.as_secs() - 30) / 60 * 60);
        (duration - measured, measured)
    } else {
        let warmup = Duration::from_secs((duration.as_secs() / 6).clamp(1, 10));
        (warmup, duration.saturating_sub(warmup))
    }
}

/// Requests the platform admitted past its rate limit: every status but 429, token requests left out.
pub fn admitted(api: &ApiReport) -> u64 {
    api.by_endpoint
        .iter()
        .filter(|(endpoint, _)| !endpoint.ends_with("/oauth/token") && !endpoint.ends_with("/auth/token"))
        .flat_map(|(_, statuses)| statuses.iter())
        .filter(|(status, _)| status.as_str() != "429")
        .map(|(_, n)| n)
        .sum()
}

/// The Genesys load's queues: one of every ACW mode (see the module docs).
fn queues() -> Vec<wrapup_sandbox::QueueConfig> {
    vec![
        queue("Ten", AcwMode::MandatoryTimeout, Some(10_000)),
        queue("Twenty", AcwMode::MandatoryForcedTimeout, Some(20_000)),
        queue("Forty", AcwMode::MandatoryTimeout, Some(40_000)),
        queue("Mandatory", AcwMode::Mandatory, None),
        queue("Optional", AcwMode::Optional, None),
        queue("Requested", AcwMode::AgentRequested, Some(30_000)),
    ]
}

/// Agents who never code: they leave OPTIONAL windows uncoded after 5–60 s, and ask for ACW on half the
/// AGENT_REQUESTED legs.
fn all_modes_agents() -> wrapup_sandbox::AgentBehaviour {
    wrapup_sandbox::AgentBehaviour { skip_delay: Dist::new(5.0, 20.0, 60.0), requests_acw: 0.5, ..silent_agents() }
}

/// Runs the saturation load for `duration` on an org with `clients` OAuth clients, offering `offered` legs per
/// second, the sandbox counting its limit as `--window` says.
pub async fn saturate(
    args: &BenchArgs,
    duration: Duration,
    clients: usize,
    offered: f64,
    label: &str,
) -> anyhow::Result<Saturated> {
    let (warmup, measured) = measured_window(duration);
    let agents = ((offered * 40.0) as usize).max(50);
    let center = short_center(queues(), agents, offered, all_modes_agents());
    let mut cfg = sandbox(center, args.rate_limit, clients, args.seed);
    cfg.rate_limit_window = args.window;
    let database = super::BenchDatabase::create(args).await?;
    let env = start_env_on(cfg, super::RESOLVE_ALL, args, database.as_ref()).await?;
    // More services on the same database and org: the sandbox delivers events to the first, and every one of them
    // claims legs from the store and spends the org's one budget.
    let replicas = match &database {
        Some(database) => database.start_replicas(&env, args.replicas).await?,
        None => Vec::new(),
    };
    let started_at = env.clock.now();
    env.sandbox.start_traffic();
    run_for(warmup, &format!("{label}: warm-up"), args.json).await;
    let from = env.clock.now();
    let admitted_before = admitted(&env.sandbox.report().api);
    run_for(measured, label, args.json).await;
    env.sandbox.stop_traffic();
    let stopped_at = env.clock.now();
    let admitted_in_window = admitted(&env.sandbox.report().api) - admitted_before;
    env.settle(Duration::from_secs(2)).await?;
    let services = replicas.len() + 1;
    for replica in replicas {
        replica.shutdown().await;
    }
    let finished = env.finish_with_truth().await?;
    if let Some(database) = database {
        database.drop().await?;
    }
    let measured = Measured {
        platform: "genesys",
        services,
        clients,
        budget: clients as f64 * args.rate_limit as f64,
        offered,
        times: [started_at, from, stopped_at],
        admitted_in_window,
    };
    measured.judge(
        args,
        &finished.summary,
        &finished.legs,
        &finished.truth,
        &finished.report.violations,
        &finished.report.api,
    )
}

/// The saturation load on the sandbox's CXone business unit (see the module docs).
pub async fn saturate_cxone(args: &BenchArgs, duration: Duration, offered: f64) -> anyhow::Result<Saturated> {
    let (warmup, measured) = measured_window(duration);
    let skill = |name: &str, secs: u32| SkillConfig {
        name: name.into(),
        media: CxMedia::Voice,
        acw_type: AcwType::Disposition,
        require_disposition: false,
        max_seconds_acw: secs,
        allow_secondary_dispositions: false,
        dispositions: vec!["Resolved".into(), "Other".into()],
        weight: 1.0,
    };
    let never = Dist::new(3_600.0, 3_600.0, 3_600.0);
    let center = CxoneCenter {
        skills: vec![skill("Ten", 10), skill("Twenty", 20), skill("Forty", 40)],
        unassigned_dispositions: Vec::new(),
        system_dispositions: Vec::new(),
        agents: ((offered * 40.0) as usize).max(50),
        skills_per_agent: 3,
        arrival_rate_per_sec: offered,
        alert_time: Dist::new(0.2, 0.5, 2.0),
        talk_time: Dist::new(1.0, 3.0, 10.0),
        transfer_probability: 0.0,
        agent_accuracy: wrapup_sandbox::DEFAULT_AGENT_ACCURACY,
        // Agents who never disposition nor leave ACW by themselves: every contact is ours or times out.
        agent: CxoneAgentBehaviour {
            at_disconnect: 0.0,
            late: 0.0,
            change_after_api: 0.0,
            skip_delay: never,
            give_in_delay: never,
            ..CxoneAgentBehaviour::default()
        },
    };
    let mut cfg = super::cxone_sandbox(center, args.seed);
    cfg.cxone.rate_limit_per_minute = args.rate_limit;
    cfg.cxone.rate_limit_window = args.window;
    let env = super::start_cxone(cfg, CXONE_POLL_MS, args.rate_limit, args).await?;
    let started_at = env.clock.now();
    env.sandbox.start_traffic();
    run_for(warmup, "saturation (cxone): warm-up", args.json).await;
    let from = env.clock.now();
    let admitted_before = admitted(&env.sandbox.cxone_report().api);
    run_for(measured, "saturation (cxone)", args.json).await;
    env.sandbox.stop_traffic();
    let stopped_at = env.clock.now();
    let admitted_in_window = admitted(&env.sandbox.cxone_report().api) - admitted_before;
    env.settle(Duration::from_secs(5)).await?;
    let finished = env.finish_with_truth().await?;
    let cx = finished.cxone.ok_or_else(|| anyhow::anyhow!("the CXone connection did not run"))?;
    let measured = Measured {
        platform: "cxone",
        services: 1,
        clients: 1,
        budget: args.rate_limit as f64,
        offered,
        times: [started_at, from, stopped_at],
        admitted_in_window,
    };
    let truth = cxone_truth_as_legs(&cx.truth);
    measured.judge(args, &cx.summary, &cx.legs, &truth, &cx.report.violations, &cx.report.api)
}

/// What a run measured while it ran; [`Measured::judge`] adds what the store and the sandbox's truth say after it.
struct Measured {
    platform: &'static str,
    /// Services spending the budget (replicas on one database).
    services: usize,
    clients: usize,
    budget: f64,
    offered: f64,
    /// The run's start, the measured window's start and its end.
    times: [Timestamp; 3],
    admitted_in_window: u64,
}

impl Measured {
    fn judge(
        self,
        args: &BenchArgs,
        s: &wrapup_demo::summary::ConnectionSummary,
        legs: &[LegRecord],
        truth: &[LegTruth],
        violations: &ViolationReport,
        api: &ApiReport,
    ) -> anyhow::Result<Saturated> {
        let [started_at, from, stopped_at] = self.times;
        let window_secs = stopped_at.duration_since(from).as_secs_f64();
        let applied_in_window = applied_between(legs, from, stopped_at);
        let applied_per_minute = applied_in_window as f64 * 60.0 / window_secs;
        let spent_share = round(self.admitted_in_window as f64 / (self.budget * window_secs / 60.0), 3);
        let (served, missed) = served_and_missed(legs, truth);
        // One service counts its own calls; replicas' calls are counted where they all arrive, at the platform.
        let (api_calls, rate_limited, calls_per_applied) = match self.services {
            1 => (s.api_calls, s.rate_limited, s.calls_per_applied),
            _ => {
                let total: u64 = api.by_endpoint.values().flat_map(|statuses| statuses.values()).sum();
                let limited: u64 = api.by_endpoint.values().filter_map(|statuses| statuses.get("429")).sum();
                let per_applied = (s.outcomes.applied > 0).then(|| round(total as f64 / s.outcomes.applied as f64, 2));
                (total, limited, per_applied)
            }
        };
        Ok(Saturated {
            services: self.services,
            clients: self.clients,
            platform: self.platform,
            window: args.window,
            offered_legs_per_s: self.offered,
            budget_per_minute: self.budget,
            warmup_secs: round(from.duration_since(started_at).as_secs_f64(), 1),
            window_secs: round(window_secs, 1),
            applied_in_window,
            applied_per_minute: round(applied_per_minute, 1),
            utilisation: spent_share,
            spent_share,
            api_calls,
            rate_limited,
            rate_limited_share: share(rate_limited, api_calls),
            deadline_order_violations: order_violations(&served, &missed, started_at, stopped_at),
            order_violation_examples: examples(&served, &missed, started_at, stopped_at),
            coverage: crate::naive::Judged::of(truth, violations, s.api_calls, s.rate_limited),
            applied: s.outcomes.applied,
            expired: s.outcomes.expired,
            review: s.outcomes.review,
            legs: s.legs,
            calls_per_applied,
            sandbox_violations: s.violations.total(),
            violations: s.violations.clone(),
            calls_by_endpoint: serde_json::to_value(&api.by_endpoint)?,
        })
    }
}

fn examples(served: &[Served], missed: &[Missed], from: Timestamp, to: Timestamp) -> serde_json::Value {
    let pairs = order_violation_pairs(served, missed, from, to);
    let shown: Vec<_> =
        pairs.iter().take(10).map(|(a, b)| serde_json::json!({"written": a, "passed_over": b})).collect();
    serde_json::Value::Array(shown)
}

fn applied_between(legs: &[LegRecord], from: Timestamp, to: Timestamp) -> usize {
    legs.iter()
        .filter(|l| l.outcome == Some(Outcome::Applied))
        .filter(|l| l.written_at.is_some_and(|w| w >= from && w <= to))
        .count()
}

fn share(part: u64, total: u64) -> f64 {
    if total > 0 {
        round(part as f64 / total as f64, 4)
    } else {
        0.0
    }
}

/// A leg the service coded: when its write was accepted, and the leg's ACW deadline.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Served<'a> {
    /// When its gate read answered: the budget had chosen this leg by then.
    pub chosen_at: Timestamp,
    pub written_at: Timestamp,
    pub deadline: Timestamp,
    /// The leg's queue, for the examples of a violation.
    pub queue: &'a str,
}

/// A leg whose window closed without a code from us or an agent: when its ACW began, the deadline it was ordered
/// by (the platform's timeout, else the service's estimate), and when the window really closed.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Missed<'a> {
    pub acw_started_at: Timestamp,
    pub deadline: Timestamp,
    pub closed_at: Timestamp,
    pub queue: &'a str,
}

/// The legs the service applied (write time from its store; deadline from the sandbox when the platform has one,
/// else the service's estimate) and the legs the sandbox closed uncoded (from its truth, whether or not the service
/// ever looked at them; an estimated deadline needs the service to have seen the leg).
pub fn served_and_missed<'a>(legs: &'a [LegRecord], truth: &'a [LegTruth]) -> (Vec<Served<'a>>, Vec<Missed<'a>>) {
    let at = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<Timestamp>().ok());
    let estimated: std::collections::HashMap<(&str, &str), Timestamp> = legs
        .iter()
        .filter_map(|l| Some(((l.key.conversation.as_str(), l.key.participant.as_str()), l.estimated_deadline?)))
        .collect();
    // The platform's deadline, or the service's estimate where that is sooner (an agent-requested window with a
    // timeout is ordered by when its agent is likely to leave) or the only one.
    let deadline_of = |t: &LegTruth| {
        let estimate = estimated.get(&(t.conversation_id.as_str(), t.participant_id.as_str())).copied();
        match (at(&t.acw_deadline), estimate) {
            (Some(hard), Some(estimate)) => Some(hard.min(estimate)),
            (hard, estimate) => hard.or(estimate),
        }
    };
    let deadlines: std::collections::HashMap<(&str, &str), Timestamp> = truth
        .iter()
        .filter_map(|t| Some(((t.conversation_id.as_str(), t.participant_id.as_str()), deadline_of(t)?)))
        .collect();
    let served = legs
        .iter()
        .filter(|l| l.outcome == Some(Outcome::Applied))
        .filter_map(|l| {
            let deadline = deadlines.get(&(l.key.conversation.as_str(), l.key.participant.as_str())).copied();
            Some(Served {
                chosen_at: l.read_at.or(l.written_at)?,
                written_at: l.written_at?,
                deadline: deadline.or(l.order_deadline())?,
                queue: l.facts.queue_name.as_deref().unwrap_or("?"),
            })
        })
        .collect();
    let missed = truth
        .iter()
        .filter(|t| t.api_writes == 0 && t.window_closed_at.is_some())
        .filter(|t| matches!(t.coded_by, CodedBy::SystemTimeout | CodedBy::Skipped | CodedBy::None))
        .filter_map(|t| {
            Some(Missed {
                acw_started_at: at(&t.acw_started_at)?,
                deadline: deadline_of(t)?,
                closed_at: at(&t.window_closed_at)?,
                queue: t.queue_name.as_deref().unwrap_or("?"),
            })
        })
        .collect();
    (served, missed)
}

/// See the module documentation: writes in `[from, to]` that a missed leg with an earlier, still reachable deadline
/// should have had.
pub fn order_violations(served: &[Served], missed: &[Missed], from: Timestamp, to: Timestamp) -> usize {
    order_violation_pairs(served, missed, from, to).len()
}

/// Each write counted by [`order_violations`], with the missed leg of earliest deadline it went ahead of.
pub fn order_violation_pairs<'a>(
    served: &[Served<'a>],
    missed: &[Missed<'a>],
    from: Timestamp,
    to: Timestamp,
) -> Vec<(Served<'a>, Missed<'a>)> {
    let second = SignedDuration::from_secs(1);
    let guard = SignedDuration::from_millis(500);
    served
        .iter()
        .filter(|a| a.written_at >= from && a.written_at <= to)
        .filter_map(|a| {
            let t = a.chosen_at;
            let passed_over = missed.iter().filter(|b| {
                let writable_until = b.deadline.min(b.closed_at);
                b.deadline < a.deadline
                    && b.acw_started_at.checked_add(second).is_ok_and(|x| x <= t)
                    && writable_until.checked_sub(guard).is_ok_and(|x| x.checked_sub(second).is_ok_and(|y| y >= t))
            });
            passed_over.min_by_key(|b| b.deadline).map(|b| (*a, *b))
        })
        .collect()
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let duration = args.duration_or(DEFAULT_SECS);
    let m = match args.platform {
        BenchPlatform::Genesys => {
            let capacity = args.rate_limit as f64 / 2.0 / 60.0;
            saturate(args, duration, 1, args.rate.unwrap_or(3.0 * capacity), "saturation").await?
        }
        BenchPlatform::Cxone if args.store.is_some() => {
            anyhow::bail!("saturation with --store runs on the Genesys org only (leave out --platform cxone)")
        }
        // Two calls per code as on Genesys, though a CXone code costs a little more (joins, polls).
        BenchPlatform::Cxone => {
            let capacity = args.rate_limit as f64 / 2.0 / 60.0;
            saturate_cxone(args, duration, args.rate.unwrap_or(3.0 * capacity)).await?
        }
    };
    let capacity = args.rate_limit as f64 / 2.0 / 60.0;
    let mut r = Report::new("saturation");
    r.field("platform", m.platform);
    r.field("replicas", m.services);
    r.field("store", if args.store.is_some() { "postgres" } else { "sqlite" });
    r.field("window", serde_json::to_value(m.window)?);
    r.field("duration_secs", duration.as_secs());
    r.field("budget_per_minute", m.budget_per_minute);
    r.field("offered_legs_per_s", round(m.offered_legs_per_s, 2));
    r.field("offered_over_capacity", round(m.offered_legs_per_s / capacity, 2));
    r.field("warmup_secs", m.warmup_secs);
    r.field("window_secs", m.window_secs);
    r.field("applied_per_minute", m.applied_per_minute);
    r.field("utilisation", m.utilisation);
    r.field("spent_share", m.spent_share);
    r.field("rate_limited_share", m.rate_limited_share);
    r.field("deadline_order_violations", m.deadline_order_violations);
    r.field("order_violation_examples", m.order_violation_examples.clone());
    r.field("coverage", serde_json::to_value(&m.coverage)?);
    r.field("api_calls", m.api_calls);
    r.field("rate_limited", m.rate_limited);
    r.field("calls_per_applied", m.calls_per_applied);
    r.field(
        "outcomes",
        serde_json::json!({"legs": m.legs, "applied": m.applied, "expired": m.expired, "review": m.review}),
    );
    r.field("sandbox_violations", m.sandbox_violations);
    r.field("violations", serde_json::to_value(&m.violations)?);
    r.field("calls_by_endpoint", m.calls_by_endpoint.clone());
    r.field(
        "goals",
        serde_json::json!({
            "utilisation_min": 0.95, "rate_limited_share_max": 0.01, "deadline_order_violations_max": 0,
            "utilisation_met": m.utilisation >= 0.95,
            "rate_limited_share_met": m.rate_limited_share <= 0.01,
            "deadline_order_met": m.deadline_order_violations == 0,
        }),
    );
    let window = serde_json::to_value(m.window)?;
    r.row("platform / rate-limit window", format!("{} / {}", m.platform, window.as_str().unwrap_or("?")));
    r.row("budget (requests/min)", m.budget_per_minute);
    r.row(
        "services sharing it",
        format!("{} on {}", m.services, if args.store.is_some() { "PostgreSQL" } else { "SQLite" }),
    );
    r.row(
        "offered legs/s (x capacity)",
        format!("{:.2} ({:.2}x)", m.offered_legs_per_s, m.offered_legs_per_s / capacity),
    );
    r.row("measured window (s, after warm-up s)", format!("{} (after {})", m.window_secs, m.warmup_secs));
    r.row("applied codes per minute", format!("{} (budget / 2 = {})", m.applied_per_minute, m.budget_per_minute / 2.0));
    r.row("utilisation: share of the limit spent (goal >= 0.95)", m.utilisation);
    r.row(
        "429 share of calls (goal <= 0.01)",
        format!("{} ({} of {})", m.rate_limited_share, m.rate_limited, m.api_calls),
    );
    r.row("deadline order violations (goal 0)", m.deadline_order_violations);
    r.row(
        "coverage: legs coded meaningfully / legs whose window closed",
        format!("{} ({} / {})", super::show(m.coverage.coverage), m.coverage.covered, m.coverage.needed),
    );
    r.row("legs / applied / expired / review", format!("{} / {} / {} / {}", m.legs, m.applied, m.expired, m.review));
    r.row("calls per applied code", super::show(m.calls_per_applied));
    let v = &m.violations;
    r.row(
        "violations (sandbox): overwrites / outside window / duplicates / lost",
        format!("{} / {} / {} / {}", v.overwrites, v.outside_window, v.duplicate_writes, v.lost),
    );
    Ok(r)
}
