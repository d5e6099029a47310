//! `saturation`: offered load about three times what the budget allows. Does the service use the whole budget
//! (`utilisation`), stay clear of the platform's limit (`rate_limited_share`), and spend the budget on the legs with
//! the earliest deadlines (`deadline_order_violations`)?
//!
//! The center has three MANDATORY_TIMEOUT queues (ACW timeouts 10 s, 20 s and 40 s, equal shares) so deadlines do
//! not follow arrival order, and agents who never code by themselves: every leg is ours to code or it times out.
//! One `immediate` rule codes every leg. Clock speed 1.
//!
//! - `utilisation` = applied codes per minute ÷ (budget per minute ÷ 2 calls per code), over the load window minus a
//!   warm-up (token, catalog load, the backlog forming).
//! - `deadline_order_violations`: applied legs A written at `t` while some leg B with an earlier deadline had been
//!   in ACW since at least 1 s before `t`, still had at least 1 s of writable window after `t` (its deadline minus
//!   the service's 500 ms guard), and then closed without any code of ours (the platform's timeout stamped it).
//!   That is a code spent on a later deadline while an earlier one was both known and still reachable. The 1 s
//!   margins keep the two calls of one code (gate read, write) from counting against legs that arrived between
//!   them. B is taken from the sandbox's truth, not from the service's store: a leg the service never claimed has
//!   no deadline in the store (the `user.end` event carries no ACW timeout; the service learns it from the
//!   catalog when it decides the leg), so a metric over the store's records alone missed exactly the legs that
//!   waited longest. A's write time is the service's (when the write was accepted); both clocks are the run's one
//!   shared clock.

use super::{queue, round, run_for, sandbox, short_center, silent_agents, start_env, BenchArgs, Report};
use jiff::{SignedDuration, Timestamp};
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::Outcome;
use wrapup_sandbox::{AcwMode, CodedBy, LegTruth};

/// What one saturated run measured.
pub struct Saturated {
    pub clients: usize,
    pub offered_legs_per_s: f64,
    pub budget_per_minute: f64,
    pub window_secs: f64,
    pub applied_in_window: usize,
    pub applied_per_minute: f64,
    pub utilisation: f64,
    pub api_calls: u64,
    pub rate_limited: u64,
    pub rate_limited_share: f64,
    pub deadline_order_violations: usize,
    pub applied: u64,
    pub expired: u64,
    pub review: u64,
    pub legs: u64,
    pub calls_per_applied: Option<f64>,
    pub sandbox_violations: u64,
    pub calls_by_endpoint: serde_json::Value,
}

/// Runs the saturation load on an org with `clients` OAuth clients, offering `offered` legs per second.
pub async fn saturate(args: &BenchArgs, clients: usize, offered: f64, label: &str) -> anyhow::Result<Saturated> {
    let duration = args.duration_or(60);
    let warmup = std::time::Duration::from_secs((duration.as_secs() / 6).clamp(1, 10));
    let agents = ((offered * 40.0) as usize).max(50);
    let queues = vec![
        queue("Ten", AcwMode::MandatoryTimeout, Some(10_000)),
        queue("Twenty", AcwMode::MandatoryTimeout, Some(20_000)),
        queue("Forty", AcwMode::MandatoryTimeout, Some(40_000)),
    ];
    let center = short_center(queues, agents, offered, silent_agents());
    let env = start_env(sandbox(center, args.rate_limit, clients, args.seed), super::RESOLVE_ALL).await?;
    let started_at = env.clock.now();
    env.sandbox.start_traffic();
    run_for(duration, label, args.json).await;
    env.sandbox.stop_traffic();
    let stopped_at = env.clock.now();
    env.settle(std::time::Duration::from_secs(2)).await?;
    let finished = env.finish_with_truth().await?;
    let s = &finished.summary;
    let from = started_at.checked_add(SignedDuration::try_from(warmup)?)?;
    let window_secs = stopped_at.duration_since(from).as_secs_f64();
    let applied_in_window = finished
        .legs
        .iter()
        .filter(|l| l.outcome == Some(Outcome::Applied))
        .filter(|l| l.written_at.is_some_and(|w| w >= from && w <= stopped_at))
        .count();
    let applied_per_minute = applied_in_window as f64 * 60.0 / window_secs;
    let budget = clients as f64 * args.rate_limit as f64;
    Ok(Saturated {
        clients,
        offered_legs_per_s: offered,
        budget_per_minute: budget,
        window_secs: round(window_secs, 1),
        applied_in_window,
        applied_per_minute: round(applied_per_minute, 1),
        utilisation: round(applied_per_minute / (budget / 2.0), 3),
        api_calls: s.api_calls,
        rate_limited: s.rate_limited,
        rate_limited_share: if s.api_calls > 0 { round(s.rate_limited as f64 / s.api_calls as f64, 4) } else { 0.0 },
        deadline_order_violations: {
            let (served, missed) = served_and_missed(&finished.legs, &finished.truth);
            order_violations(&served, &missed, started_at, stopped_at)
        },
        applied: s.outcomes.applied,
        expired: s.outcomes.expired,
        review: s.outcomes.review,
        legs: s.legs,
        calls_per_applied: s.calls_per_applied,
        sandbox_violations: s.violations.total(),
        calls_by_endpoint: serde_json::to_value(&finished.report.api.by_endpoint)?,
    })
}

/// A leg the service coded: when its write was accepted, and the leg's ACW deadline.
#[derive(Debug, Clone, Copy)]
pub struct Served {
    pub written_at: Timestamp,
    pub deadline: Timestamp,
}

/// A leg whose window the platform closed without a code from us or an agent: when its ACW began, and its deadline.
#[derive(Debug, Clone, Copy)]
pub struct Missed {
    pub acw_started_at: Timestamp,
    pub deadline: Timestamp,
}

/// The legs the service applied (write time from its store, deadline from the sandbox when known) and the legs the
/// sandbox closed uncoded (from its truth, whether or not the service ever looked at them).
pub fn served_and_missed(legs: &[LegRecord], truth: &[LegTruth]) -> (Vec<Served>, Vec<Missed>) {
    let at = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<Timestamp>().ok());
    let deadlines: std::collections::HashMap<(&str, &str), Timestamp> = truth
        .iter()
        .filter_map(|t| Some(((t.conversation_id.as_str(), t.participant_id.as_str()), at(&t.acw_deadline)?)))
        .collect();
    let served = legs
        .iter()
        .filter(|l| l.outcome == Some(Outcome::Applied))
        .filter_map(|l| {
            let truth = deadlines.get(&(l.key.conversation.as_str(), l.key.participant.as_str())).copied();
            Some(Served { written_at: l.written_at?, deadline: truth.or(l.deadline)? })
        })
        .collect();
    let missed = truth
        .iter()
        .filter(|t| t.api_writes == 0 && t.window_closed_at.is_some())
        .filter(|t| matches!(t.coded_by, CodedBy::SystemTimeout | CodedBy::Skipped | CodedBy::None))
        .filter_map(|t| Some(Missed { acw_started_at: at(&t.acw_started_at)?, deadline: at(&t.acw_deadline)? }))
        .collect();
    (served, missed)
}

/// See the module documentation: writes in `[from, to]` that a missed leg with an earlier, still reachable deadline
/// should have had.
pub fn order_violations(served: &[Served], missed: &[Missed], from: Timestamp, to: Timestamp) -> usize {
    let second = SignedDuration::from_secs(1);
    let guard = SignedDuration::from_millis(500);
    served
        .iter()
        .filter(|a| a.written_at >= from && a.written_at <= to)
        .filter(|a| {
            missed.iter().any(|b| {
                let t = a.written_at;
                b.deadline < a.deadline
                    && b.acw_started_at.checked_add(second).is_ok_and(|x| x <= t)
                    && b.deadline.checked_sub(guard).is_ok_and(|x| x.checked_sub(second).is_ok_and(|y| y >= t))
            })
        })
        .count()
}

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let capacity = args.rate_limit as f64 / 2.0 / 60.0;
    let offered = args.rate.unwrap_or(3.0 * capacity);
    let m = saturate(args, 1, offered, "saturation").await?;
    let mut r = Report::new("saturation");
    r.field("duration_secs", args.duration_or(60).as_secs());
    r.field("budget_per_minute", m.budget_per_minute);
    r.field("offered_legs_per_s", round(m.offered_legs_per_s, 2));
    r.field("offered_over_capacity", round(m.offered_legs_per_s / capacity, 2));
    r.field("window_secs", m.window_secs);
    r.field("applied_per_minute", m.applied_per_minute);
    r.field("utilisation", m.utilisation);
    r.field("rate_limited_share", m.rate_limited_share);
    r.field("deadline_order_violations", m.deadline_order_violations);
    r.field("api_calls", m.api_calls);
    r.field("rate_limited", m.rate_limited);
    r.field("calls_per_applied", m.calls_per_applied);
    r.field(
        "outcomes",
        serde_json::json!({"legs": m.legs, "applied": m.applied, "expired": m.expired, "review": m.review}),
    );
    r.field("sandbox_violations", m.sandbox_violations);
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
    r.row("budget (requests/min)", m.budget_per_minute);
    r.row(
        "offered legs/s (x capacity)",
        format!("{:.2} ({:.2}x)", m.offered_legs_per_s, m.offered_legs_per_s / capacity),
    );
    r.row("measured window (s, after warm-up)", m.window_secs);
    r.row("applied codes per minute", format!("{} (budget / 2 = {})", m.applied_per_minute, m.budget_per_minute / 2.0));
    r.row("utilisation (goal >= 0.95)", m.utilisation);
    r.row(
        "429 share of calls (goal <= 0.01)",
        format!("{} ({} of {})", m.rate_limited_share, m.rate_limited, m.api_calls),
    );
    r.row("deadline order violations (goal 0)", m.deadline_order_violations);
    r.row("legs / applied / expired / review", format!("{} / {} / {} / {}", m.legs, m.applied, m.expired, m.review));
    r.row("calls per applied code", super::show(m.calls_per_applied));
    r.row("violations (sandbox)", m.sandbox_violations);
    Ok(r)
}
