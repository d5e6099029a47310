//! The end-of-run summary: per connection, what happened to every leg, judged against the sandbox's ground truth.
//!
//! Outcomes, latency and coverage come from the service's own store; calls from the platform client's counters;
//! violations from the sandbox, which saw every write. `lost` joins the two: a leg whose window the sandbox closed
//! but for which the service recorded no outcome.

use jiff::Timestamp;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use wrapup_core::catalog::Catalog;
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::rules::RuleSet;
use wrapup_core::{Mode, Outcome, Timing};
use wrapup_sandbox::report::{LegTruth, Report};

#[derive(Debug, Clone, Serialize, Default)]
pub struct Outcomes {
    pub applied: u64,
    pub agent_won: u64,
    pub agent_changed: u64,
    pub no_rule: u64,
    pub shadow: u64,
    pub expired: u64,
    pub no_acw: u64,
    pub review: u64,
    pub open: u64,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub samples: usize,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Violations {
    pub overwrites: u64,
    /// Write attempts on a leg outside its window: the two kinds below, and attempts the platform refused because
    /// the window had closed an instant before (the read-then-write race no conditional write can close).
    pub outside_window: u64,
    /// Writes the platform took outside the window.
    pub outside_window_landed: u64,
    /// Write attempts on legs that never had a window.
    pub outside_window_no_acw: u64,
    pub duplicate_writes: u64,
    pub lost: u64,
}

impl Violations {
    /// Broken promises: an agent's code written over, a write that landed outside a window or went to a leg that
    /// never had one, a second effective write, a lost leg. A refused attempt that raced a closing window is
    /// counted in `outside_window` but is not one: nothing was written.
    pub fn total(&self) -> u64 {
        self.overwrites + self.outside_window_landed + self.outside_window_no_acw + self.duplicate_writes + self.lost
    }
}

/// The platform calls of a run by what they were for, from the sandbox's count per endpoint. Fixed costs do not
/// grow with the number of legs (a token, the catalog, the sweeps that find lost events); per-leg calls do (gate
/// reads, writes, their retries, the agent sessions a write goes through).
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct CallSplit {
    pub token: u64,
    pub catalog: u64,
    /// Reconciler and detection sweeps, notification channels: work that runs whatever the traffic.
    pub sweeps: u64,
    pub per_leg: u64,
}

impl CallSplit {
    pub fn fixed(&self) -> u64 {
        self.token + self.catalog + self.sweeps
    }

    /// Splits the sandbox's `"METHOD /path/{template}"` → status → count table.
    pub fn of(by_endpoint: &BTreeMap<String, BTreeMap<String, u64>>) -> Self {
        let mut split = CallSplit::default();
        for (key, statuses) in by_endpoint {
            let n: u64 = statuses.values().sum();
            let path = key.split_once(' ').map_or(key.as_str(), |(_, p)| p).to_ascii_lowercase();
            let slot =
                if path.ends_with("/oauth/token") || path.ends_with("/auth/token") || path.contains("/.well-known/") {
                    &mut split.token
                } else if path.contains("/routing/") || path.ends_with("/dispositions") || path.contains("/skills") {
                    &mut split.catalog
                } else if ["/analytics/", "/notifications/", "contacts/active", "contacts/completed", "agents/states"]
                    .iter()
                    .any(|p| path.contains(p))
                    || path.ends_with("/get-next-event")
                    || path.ends_with("/agents")
                    || path.ends_with("/server-time")
                {
                    &mut split.sweeps
                } else {
                    &mut split.per_leg
                };
            *slot += n;
        }
        split
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionSummary {
    pub name: String,
    pub platform: String,
    pub legs: u64,
    pub outcomes: Outcomes,
    pub api_calls: u64,
    pub rate_limited: u64,
    /// OAuth token requests (included in `api_calls`).
    pub token_requests: u64,
    pub calls_per_applied: Option<f64>,
    /// The platform's count of calls, by what they were for.
    pub calls: CallSplit,
    /// Per-leg calls (gate reads, writes, retries) per applied code: the steady-state cost, without the fixed
    /// costs that a short run spreads over few legs.
    pub per_leg_calls_per_applied: Option<f64>,
    pub latency_ms: Latency,
    pub coverage: Option<f64>,
    /// Shadow decisions compared with the code the agent finally chose.
    pub shadow_agreement: Option<f64>,
    pub violations: Violations,
    /// `outcome` lines in the store's ledger: one per finished leg (compare with `legs - outcomes.open`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_outcome_lines: Option<u64>,
    /// The sum of this connection's `wrapup_outcomes_total` in the process's metrics (the same count again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_outcomes: Option<u64>,
    /// The sandbox's record of each violation (at most 20), for investigation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violation_details: Vec<wrapup_sandbox::report::Violation>,
    /// Legs lost, by id, for investigation (at most 20).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lost_legs: Vec<String>,
    /// What the demo's platform flow asked the lookup API of this connection, when it ran one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lookups: Option<crate::lookups::LookupSummary>,
}

/// What the CRM receiver's sink received during a run.
#[derive(Debug, Clone, Serialize, Default, PartialEq, Eq)]
pub struct CrmSummary {
    /// Every request, redeliveries and refused ones included.
    pub deliveries: u64,
    /// Distinct messages among the verified requests (by `webhook-id`).
    pub messages: u64,
    /// Requests whose signature did not verify (answered 401).
    pub unverified: u64,
    /// The outbox's deliveries to the sink, by state, when the run ended.
    pub outbox: OutboxCounts,
    /// Attempts the outbox will make again (the sink failed or was unreachable): `wrapup_outbox_deliveries_total`.
    pub retried: u64,
}

/// The outbox's deliveries to one sink, by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutboxCounts {
    pub delivered: u64,
    pub pending: u64,
    /// Dead letters: given up on after the sink's `max_age` (or refused for good).
    pub dead: u64,
}

impl CrmSummary {
    pub fn of(records: &[wrapup_sandbox::Received]) -> Self {
        let messages: std::collections::BTreeSet<&str> =
            records.iter().filter(|r| r.verified).filter_map(|r| r.webhook_id.as_deref()).collect();
        CrmSummary {
            deliveries: records.len() as u64,
            messages: messages.len() as u64,
            unverified: records.iter().filter(|r| !r.verified).count() as u64,
            outbox: OutboxCounts::default(),
            retried: 0,
        }
    }
}

/// Everything needed to summarise one connection.
pub struct Inputs<'a> {
    pub name: &'a str,
    pub platform: &'a str,
    pub legs: &'a [LegRecord],
    pub catalog: Option<&'a Catalog>,
    pub rules: &'a RuleSet,
    pub api_calls: u64,
    pub rate_limited: u64,
    pub token_requests: u64,
    pub clock_factor: f64,
    /// Only legs that ended after this (the service's start) count for latency: a leg that ended before the
    /// service ran measures the outage, not the service.
    pub latency_since: Timestamp,
    pub truth: &'a [LegTruth],
    pub report: &'a Report,
}

pub fn summarise(i: Inputs<'_>) -> ConnectionSummary {
    let mut outcomes = Outcomes::default();
    for leg in i.legs {
        match leg.outcome {
            Some(Outcome::Applied) => outcomes.applied += 1,
            Some(Outcome::AgentWon) => outcomes.agent_won += 1,
            Some(Outcome::AgentChanged) => outcomes.agent_changed += 1,
            Some(Outcome::NoRule) => outcomes.no_rule += 1,
            Some(Outcome::Shadow) => outcomes.shadow += 1,
            Some(Outcome::Expired) => outcomes.expired += 1,
            Some(Outcome::NoAcw) => outcomes.no_acw += 1,
            Some(Outcome::Review) => outcomes.review += 1,
            None => outcomes.open += 1,
        }
    }
    // Latency: leg end → our write accepted, for legs decided by an `immediate` rule. Both timestamps are on the
    // (possibly accelerated) shared clock; divide by its factor for wall milliseconds.
    let mut lat: Vec<f64> = i
        .legs
        .iter()
        .filter(|l| l.decision.as_ref().is_some_and(|d| d.timing == Timing::Immediate))
        .filter(|l| matches!(l.outcome, Some(Outcome::Applied | Outcome::AgentChanged)))
        .filter(|l| l.facts.ended_at.is_some_and(|e| e >= i.latency_since))
        .filter_map(|l| {
            let d = l.written_at?.duration_since(l.facts.ended_at?);
            Some(d.as_secs_f64().max(0.0) * 1000.0 / i.clock_factor)
        })
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let latency = Latency { p50: percentile(&lat, 0.50), p99: percentile(&lat, 0.99), samples: lat.len() };

    // Coverage: of the finished legs that an enforce rule with a usable code matches, the share that ended with a
    // meaningful code, ours or the agent's.
    let (mut covered, mut eligible) = (0u64, 0u64);
    // A leg that never had a window needed no code.
    for leg in i.legs.iter().filter(|l| l.is_done() && l.ended_seen && l.outcome != Some(Outcome::NoAcw)) {
        let mut facts = leg.facts.clone();
        if let (Some(cat), Some(q)) = (i.catalog, facts.queue_id.as_deref()) {
            if facts.queue_name.is_none() {
                facts.queue_name = cat.queue_by_id(q).map(|q| q.name.clone());
            }
        }
        // A rule whose code the catalog cannot use on this leg (unknown, or not assigned to its queue) is a
        // configuration error — the leg goes to `review` with that reason and `wrapup validate` names the rule —
        // not a leg the service failed to code: coverage measures the latter.
        let usable = |code: &str| i.catalog.is_none_or(|cat| cat.resolve(code, facts.queue_id.as_deref()).is_ok());
        let enforce = i.rules.evaluate(i.name, &facts).is_some_and(|m| m.mode == Mode::Enforce && usable(&m.code));
        if enforce {
            eligible += 1;
            if matches!(leg.outcome, Some(Outcome::Applied | Outcome::AgentWon | Outcome::AgentChanged)) {
                covered += 1;
            }
        }
    }

    // Shadow agreement: the shadow rule's code against the agent's final code (from the ground truth).
    let truth_by_leg: HashMap<(&str, &str), &LegTruth> =
        i.truth.iter().map(|t| ((t.conversation_id.as_str(), t.participant_id.as_str()), t)).collect();
    let (mut agree, mut compared) = (0u64, 0u64);
    for leg in i.legs.iter().filter(|l| l.outcome == Some(Outcome::Shadow)) {
        let Some(t) = truth_by_leg.get(&(leg.key.conversation.as_str(), leg.key.participant.as_str())) else {
            continue;
        };
        if let (Some(decided), Some(final_name)) = (leg.decision.as_ref(), t.final_code_name.as_deref()) {
            compared += 1;
            if decided.code_name.eq_ignore_ascii_case(final_name) {
                agree += 1;
            }
        }
    }

    // Lost: the sandbox closed a window that was open (ACW started) and the service has no outcome for the leg.
    let by_key: HashMap<(&str, &str), &LegRecord> =
        i.legs.iter().map(|l| ((l.key.conversation.as_str(), l.key.participant.as_str()), l)).collect();
    let mut lost_legs = Vec::new();
    for t in i.truth.iter().filter(|t| t.acw_started_at.is_some() && t.window_closed_at.is_some()) {
        let done = by_key.get(&(t.conversation_id.as_str(), t.participant_id.as_str())).is_some_and(|l| l.is_done());
        if !done {
            let closed = t.window_closed_at.as_deref().unwrap_or("?");
            lost_legs.push(format!("{}/{} (window closed {closed})", t.conversation_id, t.participant_id));
        }
    }
    let calls = CallSplit::of(&i.report.api.by_endpoint);
    let v = &i.report.violations;
    let violations = Violations {
        overwrites: v.overwrites,
        outside_window: v.outside_window,
        outside_window_landed: v.outside_window_landed,
        outside_window_no_acw: v.outside_window_no_acw,
        duplicate_writes: v.duplicate_writes,
        lost: lost_legs.len() as u64,
    };
    lost_legs.truncate(20);
    ConnectionSummary {
        name: i.name.to_string(),
        platform: i.platform.to_string(),
        legs: i.legs.len() as u64,
        calls_per_applied: (outcomes.applied > 0).then(|| round(i.api_calls as f64 / outcomes.applied as f64, 3)),
        per_leg_calls_per_applied: (outcomes.applied > 0)
            .then(|| round(calls.per_leg as f64 / outcomes.applied as f64, 3)),
        calls,
        outcomes,
        api_calls: i.api_calls,
        rate_limited: i.rate_limited,
        token_requests: i.token_requests,
        latency_ms: latency,
        coverage: (eligible > 0).then(|| round(covered as f64 / eligible as f64, 4)),
        shadow_agreement: (compared > 0).then(|| round(agree as f64 / compared as f64, 4)),
        violations,
        ledger_outcome_lines: None,
        metrics_outcomes: None,
        violation_details: v.details.iter().take(20).cloned().collect(),
        lost_legs,
        lookups: None,
    }
}

pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    Some(round(sorted[idx.min(sorted.len() - 1)], 2))
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// A human table of the summaries.
pub fn table(summaries: &[ConnectionSummary], elapsed_secs: f64) -> String {
    let mut out = String::new();
    for s in summaries {
        let o = &s.outcomes;
        let f = |x: Option<f64>| x.map(|v| format!("{v}")).unwrap_or_else(|| "-".into());
        out.push_str(&format!("connection {} ({}), {:.0} s\n", s.name, s.platform, elapsed_secs));
        let rows: BTreeMap<usize, (&str, String)> = [
            ("legs", s.legs.to_string()),
            ("applied", o.applied.to_string()),
            ("agent_won", o.agent_won.to_string()),
            ("agent_changed", o.agent_changed.to_string()),
            ("no_rule", o.no_rule.to_string()),
            ("shadow", o.shadow.to_string()),
            ("expired", o.expired.to_string()),
            ("no_acw (never had a window)", o.no_acw.to_string()),
            ("review", o.review.to_string()),
            ("open (window still open)", o.open.to_string()),
            (
                "finished: ledger outcome lines / metrics",
                format!(
                    "{} / {}",
                    s.ledger_outcome_lines.map_or("-".into(), |n| n.to_string()),
                    s.metrics_outcomes.map_or("-".into(), |n| n.to_string())
                ),
            ),
            ("api calls", s.api_calls.to_string()),
            (
                "  fixed: token / catalog / sweeps",
                format!("{} / {} / {}", s.calls.token, s.calls.catalog, s.calls.sweeps),
            ),
            ("  per leg: gate, write, retries", s.calls.per_leg.to_string()),
            ("calls per applied code", f(s.calls_per_applied)),
            ("  per-leg calls per applied code", f(s.per_leg_calls_per_applied)),
            ("latency p50 / p99 (ms)", format!("{} / {}", f(s.latency_ms.p50), f(s.latency_ms.p99))),
            ("coverage", f(s.coverage)),
            ("shadow agreement with agents", f(s.shadow_agreement)),
            ("violations: overwrites", s.violations.overwrites.to_string()),
            ("violations: landed outside window", s.violations.outside_window_landed.to_string()),
            ("violations: written with no window", s.violations.outside_window_no_acw.to_string()),
            ("late attempts refused (race)", s.violations.outside_window.to_string()),
            ("violations: duplicate writes", s.violations.duplicate_writes.to_string()),
            ("violations: lost", s.violations.lost.to_string()),
        ]
        .into_iter()
        .chain(s.lookups.iter().flat_map(lookup_rows))
        .enumerate()
        .collect();
        for (_, (k, v)) in rows {
            out.push_str(&format!("  {k:<36} {v:>12}\n"));
        }
    }
    out
}

/// The table rows of a connection's lookups.
fn lookup_rows(l: &crate::lookups::LookupSummary) -> Vec<(&'static str, String)> {
    let f = |x: Option<f64>| x.map(|v| format!("{v}")).unwrap_or_else(|| "-".into());
    let m = |x: Option<u64>| x.map_or("-".into(), |n| n.to_string());
    vec![
        ("lookups: answered / fallen back", format!("{} / {}", l.answered, l.fallen_back)),
        ("  the service counted", format!("{} / {}", m(l.metrics_answered), m(l.metrics_fallen_back))),
        ("  code ids resolved by name", l.codes_answered.to_string()),
        ("  failed", (l.failed + l.codes_disagreeing).to_string()),
        ("  lookup p50 / p99 (ms)", format!("{} / {}", f(l.p50_ms), f(l.p99_ms))),
    ]
}

/// The table line of the CRM receiver.
pub fn crm_table(crm: &CrmSummary) -> String {
    let o = crm.outbox;
    format!(
        "crm receiver (sink {:?})\n  {:<34} {:>14}\n  {:<34} {:>14}\n  {:<34} {:>14}\n",
        crate::CRM_SINK,
        "outbox: delivered / retried / dead",
        format!("{} / {} / {}", o.delivered, crm.retried, o.dead),
        "  pending when the run ended",
        o.pending,
        "received: msgs / requests / bad sig",
        format!("{} / {} / {}", crm.messages, crm.deliveries, crm.unverified)
    )
}

/// The sum of `wrapup_outcomes_total` for `connection` in a Prometheus text exposition.
pub fn metric_outcomes(exposition: &str, connection: &str) -> u64 {
    metric_sum(exposition, "wrapup_outcomes_total", &[("connection", connection)])
}

/// The sum of a counter's series that carry all of `labels`, in a Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    let prefix = format!("{name}{{");
    exposition
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter(|l| {
            let set = l.split_once('{').and_then(|(_, rest)| rest.rsplit_once('}')).map_or("", |(set, _)| set);
            labels.iter().all(|label| set.split(',').any(|part| part == label))
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.trim().parse::<f64>().ok()))
        .map(|v| v as u64)
        .sum()
}

/// Seconds between two timestamps.
pub fn secs_between(a: Timestamp, b: Timestamp) -> f64 {
    b.duration_since(a).as_secs_f64()
}
