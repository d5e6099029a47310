//! `wrapup report` and `GET /api/v1/report`: per connection, over a time range, from the store alone — outcomes and
//! coverage, usage by code (ours, agents', the platform's own) with the queues they came from, latency from a leg's
//! end to our code, platform calls per applied code, and the agreement of each shadow rule with agents
//! (docs/REPORT.md). The CLI and the admin API both call [`build`]; [`Tally`] is the pure part.

pub mod agreement;
pub mod ending;
pub mod platform_check;

pub use agreement::{Cell, Confusion};
pub use ending::{ending, ConnectionView, Ending};
pub use platform_check::{CodeCheck, PlatformCheck};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use wrapup_core::lifecycle::{DecisionSource, LegRecord};
use wrapup_core::{LegKey, Mode, Outcome, Platform};
use wrapup_store::{Store, StoreResult};

/// Legs read from the store at a time.
const PAGE: u32 = 500;

/// The time range of a report: legs created at or after `from` and before `to` (`None`: unbounded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

impl Window {
    /// The range a caller asked for: `since` (a duration back from `now`, or a time) or `from`, and `to`; each
    /// absent bound is open.
    pub fn parse(since: Option<&str>, from: Option<&str>, to: Option<&str>, now: Timestamp) -> Result<Window, String> {
        let time = |what: &str, text: &str| {
            text.parse::<Timestamp>()
                .map_err(|_| format!("{what} {text:?}: write an RFC 3339 time such as 2026-12-01T00:00:00Z"))
        };
        let from = match (since, from) {
            (Some(_), Some(_)) => return Err("give either since or from, not both".into()),
            (Some(s), None) => Some(self::since(s, now)?),
            (None, Some(f)) => Some(time("from", f)?),
            (None, None) => None,
        };
        let to = to.map(|t| time("to", t)).transpose()?;
        if let (Some(f), Some(t)) = (from, to) {
            if t <= f {
                return Err(format!("the range ends ({t}) before it starts ({f})"));
            }
        }
        Ok(Window { from, to })
    }

    pub fn contains(&self, at: Timestamp) -> bool {
        self.from.is_none_or(|f| at >= f) && self.to.is_none_or(|t| at < t)
    }
}

/// `since`: a duration back from `now` (`7d`, `12h`, `30m`, `45s`) or an RFC 3339 time.
pub fn since(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let bad = || format!("since {text:?}: write a duration such as 7d, 12h or 30m, or an RFC 3339 time");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let n: i64 = text[..split].parse().map_err(|_| bad())?;
    let secs = match &text[split..] {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(bad()),
    };
    let back = jiff::SignedDuration::from_secs(n.checked_mul(secs).ok_or_else(bad)?);
    now.checked_sub(back).map_err(|_| bad())
}

/// One connection to report on.
#[derive(Debug, Clone)]
pub struct ConnectionSpec {
    pub name: String,
    pub platform: Platform,
    /// Code ids or names the platform sets by itself (at a timeout).
    pub system_codes: std::collections::BTreeSet<String>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Report {
    /// The start of the range (RFC 3339); `null`: from the first leg.
    pub from: Option<String>,
    /// The end of the range (exclusive); `null`: up to the last leg.
    pub to: Option<String>,
    pub connections: Vec<ConnectionReport>,
}

/// One connection's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionReport {
    pub name: String,
    /// `genesys` or `cxone`.
    pub platform: String,
    /// Legs created in the range.
    pub legs: u64,
    pub outcomes: Outcomes,
    pub coverage: Coverage,
    pub usage: Vec<Usage>,
    pub latency: Latency,
    pub calls: Calls,
    pub shadow_agreement: Vec<RuleAgreement>,
    /// The usage figures checked against the platform's own counts (`null`: not asked for).
    pub platform_check: Option<PlatformCheck>,
    /// When the first leg of the range was recorded and the last change to any of them (for the platform check's
    /// interval; not part of the document).
    #[serde(skip)]
    pub span: Option<(Timestamp, Timestamp)>,
}

/// Legs per outcome; `open`: not finished.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

impl Outcomes {
    fn add(&mut self, outcome: Option<Outcome>) {
        *match outcome {
            Some(Outcome::Applied) => &mut self.applied,
            Some(Outcome::AgentWon) => &mut self.agent_won,
            Some(Outcome::AgentChanged) => &mut self.agent_changed,
            Some(Outcome::NoRule) => &mut self.no_rule,
            Some(Outcome::Shadow) => &mut self.shadow,
            Some(Outcome::Expired) => &mut self.expired,
            Some(Outcome::NoAcw) => &mut self.no_acw,
            Some(Outcome::Review) => &mut self.review,
            None => &mut self.open,
        } += 1;
    }
}

/// Of the finished legs that had a window, those that ended with a business code (ours or an agent's; not none,
/// not the platform's timeout code).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Coverage {
    pub legs: u64,
    pub with_business_code: u64,
    /// `with_business_code / legs` to 4 decimals; `null` without legs.
    pub rate: Option<f64>,
}

/// Who set a code that stood on a leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum By {
    /// wrapup wrote it.
    Wrapup,
    /// An agent chose it.
    Agent,
    /// The platform set it by itself (its timeout code).
    System,
}

/// A code by id and name (the name from the cached catalog; the id again when the catalog does not know it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CodeRef {
    pub id: String,
    pub name: String,
}

/// Legs that ended with one code set by one kind of writer, and the queues they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Usage {
    pub code: CodeRef,
    pub by: By,
    pub legs: u64,
    pub queues: Vec<QueueLegs>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueLegs {
    /// The queue (Genesys) or skill (CXone) name; its id when the catalog does not know it; `(none)` without one.
    pub queue: String,
    pub legs: u64,
}

/// From a leg's end to our code accepted by the platform, on the legs where it was (store clock, seconds).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Latency {
    pub count: u64,
    pub p50_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
    pub p99_seconds: Option<f64>,
}

/// Platform calls made for the range's legs (every attempt in their ledgers: gate reads, writes, read-backs,
/// attribute reads, their retries) per code of ours that stood.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Calls {
    pub platform_calls: u64,
    pub applied: u64,
    /// `platform_calls / applied` to 3 decimals; `null` when nothing was applied.
    pub per_applied_code: Option<f64>,
}

/// One shadow rule against agents: the legs it decided on which an agent then chose a code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleAgreement {
    pub rule: String,
    pub legs: u64,
    pub agreed: u64,
    pub rate: Option<f64>,
    /// Decided code × agent's code, legs per cell.
    pub matrix: Vec<Cell>,
}

/// The figures of one connection, a leg at a time. Pure: the legs, the calls in their ledgers and the
/// connection's view in; a [`ConnectionReport`] out.
#[derive(Debug, Default)]
pub struct Tally {
    legs: u64,
    outcomes: Outcomes,
    coverage: (u64, u64),
    usage: BTreeMap<(CodeRef, By), BTreeMap<String, u64>>,
    latencies: Vec<f64>,
    calls: u64,
    shadow: BTreeMap<String, Confusion>,
    span: Option<(Timestamp, Timestamp)>,
}

impl Tally {
    /// Counts one leg, with the platform calls its ledger records.
    pub fn add(&mut self, leg: &LegRecord, calls: u64, view: &ConnectionView) {
        self.legs += 1;
        self.calls += calls;
        let (first, last) = self.span.unwrap_or((leg.created_at, leg.updated_at));
        self.span = Some((first.min(leg.created_at), last.max(leg.updated_at).max(leg.created_at)));
        self.outcomes.add(leg.outcome.filter(|_| leg.is_done()));
        let ending = ending(leg, view);
        if !matches!(ending, Ending::Unfinished | Ending::NoWindow) {
            self.coverage.0 += 1;
            self.coverage.1 += u64::from(matches!(ending, Ending::Applied { .. } | Ending::Agent { .. }));
        }
        let used = match &ending {
            Ending::Applied { id, name } => Some((CodeRef { id: id.clone(), name: name.clone() }, By::Wrapup)),
            Ending::Agent { id, name, .. } => Some((CodeRef { id: id.clone(), name: name.clone() }, By::Agent)),
            Ending::Uncoded { system: Some((id, name)) } => {
                Some((CodeRef { id: id.clone(), name: name.clone() }, By::System))
            }
            _ => None,
        };
        if let Some(key) = used {
            *self.usage.entry(key).or_default().entry(queue(leg, view)).or_default() += 1;
        }
        if matches!(leg.outcome, Some(Outcome::Applied | Outcome::AgentChanged)) {
            if let (Some(written), Some(ended)) = (leg.written_at, leg.facts.ended_at) {
                self.latencies.push(written.duration_since(ended).as_secs_f64().max(0.0));
            }
        }
        if let (Some(decision), Ending::Agent { name: agent, .. }) = (&leg.decision, &ending) {
            if let (Mode::Shadow, DecisionSource::Rule { name, .. }) = (decision.mode, &decision.source) {
                self.shadow.entry(name.clone()).or_default().add(&view.canonical(&decision.code_name), agent);
            }
        }
    }

    pub fn finish(mut self, name: &str, platform: Platform) -> ConnectionReport {
        self.latencies.sort_by(f64::total_cmp);
        let at = |q| percentile(&self.latencies, q);
        ConnectionReport {
            name: name.to_string(),
            platform: platform.as_str().to_string(),
            legs: self.legs,
            coverage: Coverage {
                legs: self.coverage.0,
                with_business_code: self.coverage.1,
                rate: agreement::rate(self.coverage.1, self.coverage.0),
            },
            usage: self
                .usage
                .iter()
                .map(|((code, by), queues)| Usage {
                    code: code.clone(),
                    by: *by,
                    legs: queues.values().sum(),
                    queues: queues.iter().map(|(q, n)| QueueLegs { queue: q.clone(), legs: *n }).collect(),
                })
                .collect(),
            latency: Latency {
                count: self.latencies.len() as u64,
                p50_seconds: at(0.50),
                p90_seconds: at(0.90),
                p99_seconds: at(0.99),
            },
            calls: Calls {
                platform_calls: self.calls,
                applied: self.outcomes.applied,
                per_applied_code: (self.outcomes.applied > 0)
                    .then(|| (self.calls as f64 / self.outcomes.applied as f64 * 1000.0).round() / 1000.0),
            },
            shadow_agreement: self
                .shadow
                .iter()
                .map(|(rule, c)| RuleAgreement {
                    rule: rule.clone(),
                    legs: c.legs(),
                    agreed: c.agreed(),
                    rate: c.rate(),
                    matrix: c.cells(),
                })
                .collect(),
            outcomes: self.outcomes,
            platform_check: None,
            span: self.span,
        }
    }
}

/// The leg's queue by name, as the catalog names it.
fn queue(leg: &LegRecord, view: &ConnectionView) -> String {
    if let Some(name) = &leg.facts.queue_name {
        return name.clone();
    }
    match leg.facts.queue_id.as_deref() {
        Some(id) => view.catalog.as_ref().and_then(|c| c.queue_by_id(id)).map_or(id, |q| q.name.as_str()).to_string(),
        None => "(none)".to_string(),
    }
}

/// The nearest-rank percentile of sorted values, to 3 decimals.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let index = ((last as f64) * q).round() as usize;
    Some((sorted[index.min(last)] * 1000.0).round() / 1000.0)
}

/// Builds the report of `connections` over `window` from the store: every leg created in the range, a page at a
/// time, with the attempt lines of their ledgers counted a page at a time.
pub async fn build(store: &dyn Store, connections: &[ConnectionSpec], window: Window) -> StoreResult<Report> {
    let mut tallies: BTreeMap<&str, (Tally, ConnectionView, Platform)> = BTreeMap::new();
    for conn in connections {
        let catalog = store.get_catalog(&conn.name).await?.map(|(c, _)| c);
        let view = ConnectionView { catalog, system_codes: conn.system_codes.clone() };
        tallies.insert(conn.name.as_str(), (Tally::default(), view, conn.platform));
    }
    let mut after: Option<LegRecord> = None;
    'pages: loop {
        let page = store.legs_since(window.from, after.as_ref(), PAGE).await?;
        let keys: Vec<LegKey> = page.iter().map(|l| l.key.clone()).collect();
        let calls = store.attempt_counts(&keys).await?;
        for leg in &page {
            // Pages come oldest first: past the end of the range, nothing more is in it.
            if window.to.is_some_and(|to| leg.created_at >= to) {
                break 'pages;
            }
            let Some((tally, view, _)) = tallies.get_mut(leg.key.connection.as_str()) else { continue };
            tally.add(leg, calls.get(&leg.key).copied().unwrap_or(0), view);
        }
        match page.into_iter().last() {
            Some(last) => after = Some(last),
            None => break,
        }
    }
    Ok(Report {
        from: window.from.map(|t| t.to_string()),
        to: window.to.map(|t| t.to_string()),
        connections: tallies.into_iter().map(|(name, (t, _, platform))| t.finish(name, platform)).collect(),
    })
}

#[cfg(test)]
mod tests;
