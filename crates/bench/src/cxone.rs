//! `efficiency --platform cxone`: the efficiency load on the sandbox's NICE CXone business unit instead of the
//! Genesys org (whose center runs no traffic here). Calls per applied disposition, split by what they are for, from
//! the sandbox's own per-endpoint counts of the CXone API, and leg-end → write latency.
//!
//! One skill (voice, ACW with dispositions, a disposition required so the platform never closes the window by
//! itself), the agents' default CXone behaviour (some disposition at disconnect or later, a few change ours), the
//! same short contacts, warm-up and measured window as the Genesys `efficiency`. ACW is detected by polling
//! (`contacts/active` + `agents/states`, every [`POLL_MS`]), the connection's default; the reconciler's
//! `contacts/completed` sweep runs every second, as configured for embedded runs.
//!
//! Where the calls go: a CXone write needs an agent session, joined once per agent (`agent-sessions/join`, with
//! `asAgentId`) and reused; before each write the gate read `GET contacts/{id}/disposition`. So the floor per
//! applied disposition is 2 calls plus one join per agent over the run, plus the detection polls and sweeps, which
//! are per second rather than per contact: their share falls as the load rises.

use super::efficiency::{latencies, WARMUP};
use super::{round, show, BenchArgs, Report};
use std::collections::BTreeMap;
use wrapup_sandbox::cxone::{AcwType, CxMedia, CxoneAgentBehaviour, CxoneCenter, SkillConfig};
use wrapup_sandbox::Dist;

/// Wall milliseconds between detection polls (the demo's).
pub const POLL_MS: u64 = 500;

/// What a CXone endpoint (the sandbox's report template) is spent on.
pub fn purpose(endpoint: &str) -> &'static str {
    let path = endpoint.split_once(".0/").map_or(endpoint, |(_, p)| p);
    match (endpoint.split(' ').next().unwrap_or(""), path) {
        ("GET", "contacts/{contactId}/disposition") => "gate_read",
        ("POST", "agent-sessions/{sessionId}/interactions/{contactId}/disposition") => "write",
        ("POST", "agent-sessions/join") | ("POST", "agent-sessions") => "session_join",
        (_, "contacts/active") | (_, "agents/states") | (_, "agent-sessions/{sessionId}/get-next-event") => {
            "detection_poll"
        }
        (_, "contacts/completed") => "completed_sweep",
        (_, "dispositions") | (_, "skills") | (_, "skills/{skillId}/dispositions") => "catalog",
        _ if endpoint.ends_with("/auth/token") => "token",
        _ => "other",
    }
}

pub async fn efficiency(args: &BenchArgs) -> anyhow::Result<Report> {
    let rate = args.rate.unwrap_or(super::efficiency::DEFAULT_RATE).clamp(0.1, 2_000.0);
    let duration = args.duration_or(20);
    let warmup = args.warmup.map_or(WARMUP, std::time::Duration::from_secs);
    // Ten times what two calls per contact need, plus the polls: the budget never paces the run.
    let rate_limit = (rate * 2.0 * 60.0 * 10.0).ceil() as u32 + 600;
    let center = CxoneCenter {
        skills: vec![SkillConfig {
            name: "Bench".into(),
            media: CxMedia::Voice,
            acw_type: AcwType::Disposition,
            require_disposition: true,
            max_seconds_acw: 0,
            allow_secondary_dispositions: false,
            dispositions: vec!["Resolved".into(), "Other".into()],
            weight: 1.0,
        }],
        unassigned_dispositions: Vec::new(),
        system_dispositions: Vec::new(),
        agents: ((rate * 12.0) as usize).max(50),
        skills_per_agent: 1,
        agent_accuracy: wrapup_sandbox::DEFAULT_AGENT_ACCURACY,
        arrival_rate_per_sec: rate,
        alert_time: Dist::new(0.2, 0.5, 2.0),
        talk_time: Dist::new(1.0, 3.0, 10.0),
        transfer_probability: 0.0,
        agent: CxoneAgentBehaviour::default(),
    };
    let env = super::start_cxone(super::cxone_sandbox(center, args.seed), POLL_MS, rate_limit, args).await?;
    let (started_at, stopped_at) = super::measure(&env, warmup, duration, "efficiency (cxone)", args.json).await?;
    let finished = env.finish_with_truth().await?;
    let cx = finished.cxone.ok_or_else(|| anyhow::anyhow!("the CXone connection did not run"))?;
    let s = &cx.summary;
    let secs = stopped_at.duration_since(started_at).as_secs_f64();
    let l = latencies(&cx.legs, started_at, stopped_at);
    let legs_per_s = round(l.ended as f64 / secs, 1);
    let mut by_purpose: BTreeMap<&str, u64> = BTreeMap::new();
    for (endpoint, statuses) in &cx.report.api.by_endpoint {
        *by_purpose.entry(purpose(endpoint)).or_default() += statuses.values().sum::<u64>();
    }
    let o = &s.outcomes;
    let per_applied = |n: u64| (o.applied > 0).then(|| round(n as f64 / o.applied as f64, 3));
    let sandbox_calls: u64 = by_purpose.values().sum();
    let agents_joined = by_purpose.get("session_join").copied().unwrap_or(0);

    let mut r = Report::new("efficiency");
    r.field("platform", "cxone");
    r.field("warmup_secs", warmup.as_secs());
    r.field("duration_secs", round(secs, 1));
    r.field("offered_legs_per_s", rate);
    r.field("legs_per_s", legs_per_s);
    r.field("budget_per_minute", rate_limit);
    r.field("poll_interval_ms", POLL_MS);
    r.field("calls_per_applied", s.calls_per_applied);
    r.field("latency_ms", serde_json::json!({"p50": l.p50, "p99": l.p99, "samples": l.samples}));
    r.field("latency_split_ms", l.split.clone());
    r.field("api_calls", s.api_calls);
    r.field("sandbox_api_calls", sandbox_calls);
    r.field("calls_by_purpose", serde_json::to_value(&by_purpose)?);
    r.field(
        "calls_per_applied_by_purpose",
        serde_json::to_value(by_purpose.iter().map(|(k, v)| (*k, per_applied(*v))).collect::<BTreeMap<_, _>>())?,
    );
    r.field("calls_by_endpoint", serde_json::to_value(&cx.report.api.by_endpoint)?);
    r.field("outcomes", serde_json::to_value(o)?);
    r.field("violations", serde_json::to_value(&s.violations)?);
    r.field(
        "goals",
        serde_json::json!({
            "calls_per_applied_max": 2.0, "latency_p99_ms_max": 50.0, "legs_per_s_min": 50.0,
            "calls_per_applied_met": s.calls_per_applied.is_some_and(|c| c <= 2.0),
            "latency_met": l.p99.is_some_and(|p| p <= 50.0) && legs_per_s >= 50.0,
        }),
    );
    r.row("platform", "cxone (polling detection)");
    r.row("wall seconds measured (after warm-up)", format!("{} ({} s warm-up)", round(secs, 1), warmup.as_secs()));
    r.row("legs ended per second (offered contacts/s)", format!("{legs_per_s} ({rate})"));
    r.row("applied / agent_won / agent_changed", format!("{} / {} / {}", o.applied, o.agent_won, o.agent_changed));
    r.row("expired / review / open", format!("{} / {} / {}", o.expired, o.review, o.open));
    r.row("calls per applied disposition (goal <= 2.0)", show(s.calls_per_applied));
    for (purpose, n) in &by_purpose {
        r.row(format!("  {purpose}"), format!("{n} ({} per applied)", show(per_applied(*n))));
    }
    r.row("agent sessions joined", agents_joined);
    r.row("latency p50 / p99 ms (goal p99 <= 50)", format!("{} / {} ({} legs)", show(l.p50), show(l.p99), l.samples));
    r.row(
        "  leg end -> decided p50 / p99 ms",
        format!("{} / {}", l.split["end_to_decided"]["p50"], l.split["end_to_decided"]["p99"]),
    );
    r.row(
        "  decided -> written p50 / p99 ms",
        format!("{} / {}", l.split["decided_to_written"]["p50"], l.split["decided_to_written"]["p99"]),
    );
    r.row("violations (sandbox)", s.violations.total());
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::purpose;

    #[test]
    fn cxone_endpoints_are_grouped_by_what_the_call_is_for() {
        let p = purpose;
        assert_eq!(p("GET /inContactAPI/services/v{N}.0/contacts/{contactId}/disposition"), "gate_read");
        assert_eq!(
            p("POST /inContactAPI/services/v{N}.0/agent-sessions/{sessionId}/interactions/{contactId}/disposition"),
            "write"
        );
        assert_eq!(p("POST /inContactAPI/services/v{N}.0/agent-sessions/join"), "session_join");
        assert_eq!(p("GET /inContactAPI/services/v{N}.0/contacts/active"), "detection_poll");
        assert_eq!(p("GET /inContactAPI/services/v{N}.0/agents/states"), "detection_poll");
        assert_eq!(p("GET /inContactAPI/services/v{N}.0/contacts/completed"), "completed_sweep");
        assert_eq!(p("GET /inContactAPI/services/v{N}.0/skills/{skillId}/dispositions"), "catalog");
        assert_eq!(p("POST /auth/token"), "token");
        assert_eq!(p("GET /inContactAPI/services/v{N}.0/server-time"), "other");
    }
}
