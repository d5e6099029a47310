//! `efficiency`: a steady load well under the budget. How many platform calls each applied code costs, and how long
//! from a leg's end to our accepted write for an `immediate` rule, with the sandbox adding no latency of its own.
//!
//! The center has one queue of each ACW mode ([`all_modes_center`](super::naive::all_modes_center): mandatory,
//! mandatory with timeout, forced timeout, optional, agent-requested), agents with a realistic behaviour (some pick
//! a provisional code while talking, some code at disconnect, a few change our code, optional windows are left
//! after seconds, half the agent-requested windows are never asked for), short talk times and no
//! hold/transfer/consult, so that at clock speed 1 a few hundred agents produce the requested legs per second. The
//! budget is set to ten times what two calls per leg need, so it never paces the run. `coverage` is the sandbox's:
//! of the legs whose window opened and closed, the share that ended with a meaningful code (ours or the agent's).
//!
//! **Steady state.** Traffic runs for [`WARMUP`] (`--warmup`) before the measured window of `--duration` seconds opens: a
//! conversation ends its agent leg only after its alert and talk time (up to 12 s), so in the first seconds fewer
//! legs end than arrive (a 20 s run offered 50/s saw 42.5 legs/s end). `legs_per_s` and the latency figures count
//! only legs that ended inside the measured window; calls per applied code is over the whole run (its fixed costs
//! — token, catalog — spread over more legs, as in a deployment).
//!
//! **Offered load.** The goal is p99 at ≥ 50 legs/s *ending*. Arrivals are random (Poisson), so offering exactly 50
//! gives a measured rate under 50 in about half the windows; the default offers 55 conversations/s and the goal is
//! judged on the measured rate, which is reported next to the offered one.

use super::{percentile, round, sandbox, show, start_env, BenchArgs, Report};
use jiff::Timestamp;
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::{Outcome, Timing};

/// Traffic before the measured window: the longest alert (2 s) plus the longest talk (10 s) of `short_center`.
pub const WARMUP: std::time::Duration = std::time::Duration::from_secs(12);

/// Conversations per second offered when `--rate` is not given (see the module documentation).
pub const DEFAULT_RATE: f64 = 55.0;

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    if args.platform == super::BenchPlatform::Cxone {
        return super::cxone::efficiency(args).await;
    }
    let rate = args.rate.unwrap_or(DEFAULT_RATE).clamp(0.1, 2_000.0);
    let duration = args.duration_or(20);
    let rate_limit = (rate * 2.0 * 60.0 * 10.0).ceil() as u32;
    // Busy per leg ≈ alert + talk + a short ACW: ~4 s; keep the center far from running out of agents.
    let agents = ((rate * 12.0) as usize).max(50);
    let center = super::naive::all_modes_center(agents, rate);
    let env = start_env(sandbox(center, rate_limit, 1, args.seed), super::RESOLVE_ALL, args).await?;
    let warmup = args.warmup.map_or(WARMUP, std::time::Duration::from_secs);
    let (started_at, stopped_at) = super::measure(&env, warmup, duration, "efficiency", args.json).await?;
    let finished = env.finish_with_truth().await?;
    let s = &finished.summary;
    let judged = super::naive::Judged::of(&finished.truth, &finished.report.violations, s.api_calls, s.rate_limited);
    let secs = stopped_at.duration_since(started_at).as_secs_f64();
    let l = latencies(&finished.legs, started_at, stopped_at);
    let (ended, p50, p99) = (l.ended, l.p50, l.p99);
    let o = &s.outcomes;
    let coded = o.applied + o.agent_changed + o.agent_won;
    let calls_per_coded = (coded > 0).then(|| round(s.api_calls as f64 / coded as f64, 3));
    let legs_per_s = round(ended as f64 / secs, 1);

    let mut r = Report::new("efficiency");
    r.field("warmup_secs", warmup.as_secs());
    r.field("duration_secs", round(secs, 1));
    r.field("offered_legs_per_s", rate);
    r.field("legs_per_s", legs_per_s);
    r.field("budget_per_minute", rate_limit);
    r.field("calls_per_applied", s.calls_per_applied);
    r.field("calls_per_coded_leg", calls_per_coded);
    r.field("per_leg_calls_per_applied", s.per_leg_calls_per_applied);
    r.field("calls", serde_json::to_value(&s.calls)?);
    r.field("coverage", judged.coverage);
    r.field("latency_ms", serde_json::json!({"p50": p50, "p99": p99, "samples": l.samples}));
    r.field("latency_split_ms", l.split.clone());
    r.field("api_calls", s.api_calls);
    r.field("calls_by_endpoint", serde_json::to_value(&finished.report.api.by_endpoint)?);
    r.field("token_requests", s.token_requests);
    r.field("rate_limited", s.rate_limited);
    r.field("outcomes", serde_json::to_value(o)?);
    r.field("violations", serde_json::to_value(&s.violations)?);
    r.field("violation_details", serde_json::to_value(&s.violation_details)?);
    r.field(
        "goals",
        serde_json::json!({
            "calls_per_applied_max": 2.0, "latency_p99_ms_max": 50.0, "legs_per_s_min": 50.0,
            "calls_per_applied_met": s.calls_per_applied.is_some_and(|c| c <= 2.0),
            "latency_met": p99.is_some_and(|p| p <= 50.0) && legs_per_s >= 50.0,
        }),
    );
    r.row("wall seconds measured (after warm-up)", format!("{} ({} s warm-up)", round(secs, 1), warmup.as_secs()));
    r.row("legs ended per second (offered conv/s)", format!("{legs_per_s} ({rate})"));
    r.row("budget (requests/min)", rate_limit);
    r.row("legs seen by the service", s.legs);
    r.row("applied / agent_won / agent_changed", format!("{} / {} / {}", o.applied, o.agent_won, o.agent_changed));
    r.row("expired / no_acw / review / open", format!("{} / {} / {} / {}", o.expired, o.no_acw, o.review, o.open));
    r.row("api calls (token requests)", format!("{} ({})", s.api_calls, s.token_requests));
    r.row("calls per applied code (goal <= 2.0)", show(s.calls_per_applied));
    r.row("  per-leg calls (gate, write, retries) per applied code", show(s.per_leg_calls_per_applied));
    r.row("calls per coded leg (ours or agent's)", show(calls_per_coded));
    r.row("coverage (legs with a meaningful code / legs that needed one)", show(judged.coverage));
    r.row("latency p50 / p99 ms (goal p99 <= 50)", format!("{} / {} ({} legs)", show(p50), show(p99), l.samples));
    r.row(
        "  leg end -> decided p50 / p99 ms",
        format!("{} / {}", l.split["end_to_decided"]["p50"], l.split["end_to_decided"]["p99"]),
    );
    r.row(
        "  decided -> written p50 / p99 ms",
        format!("{} / {}", l.split["decided_to_written"]["p50"], l.split["decided_to_written"]["p99"]),
    );
    for (endpoint, by_status) in &finished.report.api.by_endpoint {
        r.row(format!("  calls {endpoint}"), format!("{by_status:?}"));
    }
    r.row("429 answers", s.rate_limited);
    r.row("violations (sandbox)", s.violations.total());
    Ok(r)
}

/// Leg-end → write latency of the legs that ended in `[from, to]`.
pub struct Latencies {
    /// Legs that ended in the window.
    pub ended: usize,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub samples: usize,
    /// Where the latency goes: leg end → decided (event delivery or detection, intake commit, claim) and decided →
    /// written (catalog, write intent, gate read, write); p50/p99 of each.
    pub split: serde_json::Value,
}

/// Wall ms (speed 1) from leg end to our accepted write, for legs decided by an `immediate` rule that we wrote.
pub fn latencies(legs: &[LegRecord], from: Timestamp, to: Timestamp) -> Latencies {
    let in_window = |l: &&LegRecord| l.facts.ended_at.is_some_and(|e| e >= from && e <= to);
    let written = || {
        legs.iter()
            .filter(in_window)
            .filter(|l| l.decision.as_ref().is_some_and(|d| d.timing == Timing::Immediate))
            .filter(|l| matches!(l.outcome, Some(Outcome::Applied | Outcome::AgentChanged)))
    };
    let ms = |d: jiff::SignedDuration| d.as_secs_f64().max(0.0) * 1000.0;
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v
    };
    let quantiles = |v: Vec<f64>| {
        let v = sorted(v);
        serde_json::json!({"p50": percentile(&v, 0.5), "p99": percentile(&v, 0.99)})
    };
    let lat = sorted(written().filter_map(|l| Some(ms(l.written_at?.duration_since(l.facts.ended_at?)))).collect());
    let to_decided = quantiles(
        written().filter_map(|l| Some(ms(l.decision.as_ref()?.decided_at.duration_since(l.facts.ended_at?)))).collect(),
    );
    let to_written = quantiles(
        written().filter_map(|l| Some(ms(l.written_at?.duration_since(l.decision.as_ref()?.decided_at)))).collect(),
    );
    Latencies {
        ended: legs.iter().filter(in_window).count(),
        p50: percentile(&lat, 0.50),
        p99: percentile(&lat, 0.99),
        samples: lat.len(),
        split: serde_json::json!({"end_to_decided": to_decided, "decided_to_written": to_written}),
    }
}
