//! `POST /api/v2/analytics/conversations/aggregates/query`: conversation aggregates computed from the simulated
//! center's agent legs.
//!
//! Body (`ConversationAggregationQuery`): `interval` (required, `start/end`), `metrics` (required, non-empty),
//! `granularity` (ISO-8601 duration such as `PT15M`, `PT1H`, `P1D`, `P1W`, `P1M`; absent = one bucket for the whole
//! interval), `groupBy`, `filter`, `timeZone` (absent, `UTC` or `Etc/UTC`; any other zone is a 400) and
//! `flattenMultivaluedDimensions` (accepted; every dimension here has a single value, so it changes nothing). Other
//! fields are ignored. Bad bodies are 400 `ErrorBody`s.
//!
//! **What is counted.** Only agent participants (the legs of `GET /sandbox/v1/legs`). Each metric of a leg is an
//! observation emitted at one instant and counted in the bucket holding that instant (`start <= t < end`):
//!
//! | Metric | Emitted at | Value |
//! |---|---|---|
//! | `nOffered` | the leg starts alerting | 1 |
//! | `nConnected` | the agent connects | 1 |
//! | `tTalk` | the agent's part ends | connected → end, minus hold (ms) |
//! | `tHeld` | the agent's part ends, if the leg was held | hold (ms) |
//! | `tAcw` | the ACW window closes (code, skip or timeout) | ACW start → ACW end (ms) |
//! | `tHandle` | the leg is done (ACW closed, or the part ended without ACW) | `tTalk + tHeld + tAcw` (ms) |
//!
//! Open legs therefore have `nOffered`/`nConnected` but no `tAcw`/`tHandle` yet. Counts render as `{"count": n}`,
//! durations as `{"max", "min", "count", "sum"}` in ms.
//!
//! **Dimensions** (for `groupBy` and `filter`): `wrapUpCode` (the leg's final code id, including the system timeout
//! code; absent while the leg has none: talking, in ACW, skipped, or ended without ACW), `queueId`, `userId`,
//! `mediaType` (`voice`, `callback`, `email`, `message`), `direction` (`inbound`, `outbound`), `conversationId`,
//! `purpose` (always `agent`), `divisionId`. All of a leg's observations carry its dimensions as they are *now* (a leg
//! coded later moves into its code's group). A leg without a value for a grouped dimension lands in a group whose
//! `group` object lacks that key (e.g. `{"queueId": "…"}` for the uncoded legs of a queue).
//!
//! **Filter**: `{type: and|or, predicates: [{type?: dimension, dimension, operator?: matches|exists|notExists, value}],
//! clauses: [filter…]}`; a leg is kept when the filter holds for it. Metric and property predicates are a 400.
//!
//! **Answer**: `{"results": [{"group": {…}, "data": [{"interval": "start/end", "metrics": [{"metric", "stats"}]}]}]}`
//! with groups sorted by their values in `groupBy` order (absent values first), buckets in time order, and metrics in
//! request order; buckets and metrics without observations are left out. With no observation at all the answer is `{}`
//! (as the details query leaves out `conversations`). A last bucket that overhangs the interval is cut at its end.

use super::{json_ok, parse_body};
use crate::engine::iso;
use crate::genesys::model::{Conversation, Org, Participant, Phase, PlatformError, Purpose};
use crate::SharedState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use jiff::{Span, Timestamp};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub fn routes() -> Router<SharedState> {
    Router::new().route("/analytics/conversations/aggregates/query", post(query))
}

/// Dimensions for `groupBy` and filters.
pub const DIMENSIONS: [&str; 8] =
    ["wrapUpCode", "queueId", "userId", "mediaType", "direction", "conversationId", "purpose", "divisionId"];

/// Metrics the sandbox computes.
pub const METRICS: [&str; 6] = ["nOffered", "nConnected", "tTalk", "tHeld", "tAcw", "tHandle"];

/// Most buckets one query may ask for.
const MAX_BUCKETS: usize = 10_000;

/// `start/end` (ISO-8601 instants, `start < end`).
pub fn parse_interval(s: &str) -> Option<(Timestamp, Timestamp)> {
    let (a, b) = s.split_once('/')?;
    let a: Timestamp = a.trim().parse().ok()?;
    let b: Timestamp = b.trim().parse().ok()?;
    (a < b).then_some((a, b))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AggregationQuery {
    interval: Option<String>,
    granularity: Option<String>,
    time_zone: Option<String>,
    #[serde(default)]
    group_by: Vec<String>,
    filter: Option<Filter>,
    metrics: Option<Vec<String>>,
    #[allow(dead_code)]
    flatten_multivalued_dimensions: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Filter {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    clauses: Vec<Filter>,
    #[serde(default)]
    predicates: Vec<Predicate>,
}

#[derive(Debug, Deserialize)]
struct Predicate {
    #[serde(rename = "type")]
    kind: Option<String>,
    dimension: Option<String>,
    operator: Option<String>,
    value: Option<String>,
}

fn invalid(field: &str, message: String) -> PlatformError {
    let mut e = PlatformError::bad_request(message);
    e.extra.details.push(json!({"errorCode": "invalid.value", "fieldName": field}));
    e
}

fn required(field: &str) -> PlatformError {
    let mut e = PlatformError::bad_request(format!("{field} is required."));
    e.extra.details.push(json!({"errorCode": "required", "fieldName": field}));
    e
}

impl Filter {
    fn validate(&self) -> Result<(), PlatformError> {
        match self.kind.as_deref() {
            Some("and") | Some("or") => {}
            Some(other) => return Err(invalid("filter.type", format!("Filter type [{other}] is not and or or."))),
            None => return Err(required("filter.type")),
        }
        for p in &self.predicates {
            match p.kind.as_deref() {
                None | Some("dimension") => {}
                Some(other) => {
                    return Err(invalid(
                        "filter.predicates.type",
                        format!("Predicate type [{other}] is not supported by the sandbox (only dimension)."),
                    ))
                }
            }
            let d = p.dimension.as_deref().ok_or_else(|| required("filter.predicates.dimension"))?;
            if !DIMENSIONS.contains(&d) {
                return Err(invalid(
                    "filter.predicates.dimension",
                    format!("Dimension [{d}] is not one of {}.", DIMENSIONS.join(", ")),
                ));
            }
            match p.operator.as_deref().unwrap_or("matches") {
                "matches" if p.value.is_none() => return Err(required("filter.predicates.value")),
                "matches" | "exists" | "notExists" => {}
                other => {
                    return Err(invalid(
                        "filter.predicates.operator",
                        format!("Operator [{other}] is not matches, exists or notExists."),
                    ))
                }
            }
        }
        self.clauses.iter().try_for_each(Filter::validate)
    }

    /// Whether the filter holds, with `dim` giving a dimension's value (`None` = absent). Validated filters only.
    fn eval(&self, dim: &dyn Fn(&str) -> Option<String>) -> bool {
        let mut results = self
            .predicates
            .iter()
            .map(|p| {
                let v = dim(p.dimension.as_deref().unwrap_or_default());
                match p.operator.as_deref().unwrap_or("matches") {
                    "exists" => v.is_some(),
                    "notExists" => v.is_none(),
                    _ => v.is_some() && v.as_deref() == p.value.as_deref(),
                }
            })
            .chain(self.clauses.iter().map(|c| c.eval(dim)));
        if self.kind.as_deref() == Some("or") {
            let all: Vec<bool> = results.collect();
            all.is_empty() || all.contains(&true)
        } else {
            results.all(|r| r)
        }
    }
}

/// The value of dimension `d` for agent leg `p` of `conv`.
fn leg_dim(org: &Org, conv: &Conversation, p: &Participant, d: &str) -> Option<String> {
    match d {
        "wrapUpCode" => p.wrapup.as_ref().filter(|w| !w.provisional).and_then(|w| w.code.clone()),
        "queueId" => p.queue.and_then(|q| org.queues.get(q)).map(|q| q.id.clone()),
        "userId" => p.user_id.clone(),
        "mediaType" => Some(conv.media.analytics_name().to_string()),
        "direction" => Some(conv.direction.to_string()),
        "conversationId" => Some(conv.id.clone()),
        "purpose" => Some(p.purpose.as_str().to_string()),
        "divisionId" => Some(org.division_id.clone()),
        _ => None,
    }
}

fn ms_between(a: Timestamp, b: Timestamp) -> u64 {
    (b.as_millisecond() - a.as_millisecond()).max(0) as u64
}

/// The observations of one agent leg: `(metric, emitted at, value)`.
fn observations(p: &Participant) -> Vec<(&'static str, Timestamp, u64)> {
    let mut out = vec![("nOffered", p.start, 1)];
    let Some(connected) = p.connected_at else {
        return out;
    };
    out.push(("nConnected", connected, 1));
    let Some(end) = p.end else {
        return out;
    };
    let interacting = ms_between(connected, end);
    let held = p.held_ms.min(interacting);
    let talk = interacting - held;
    out.push(("tTalk", end, talk));
    if held > 0 {
        out.push(("tHeld", end, held));
    }
    let acw = match (p.acw_start, p.acw_end) {
        (Some(s), Some(e)) => {
            let acw = ms_between(s, e);
            out.push(("tAcw", e, acw));
            acw
        }
        _ => 0,
    };
    if p.phase == Phase::Done {
        out.push(("tHandle", p.acw_end.unwrap_or(end), talk + held + acw));
    }
    out
}

/// Statistics of one metric in one bucket.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    count: u64,
    sum: u64,
    min: u64,
    max: u64,
}

impl Stats {
    fn add(&mut self, v: u64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        self.count += 1;
        self.sum += v;
    }

    fn json(&self, metric: &str) -> Value {
        if metric.starts_with('n') {
            json!({"count": self.count})
        } else {
            json!({"max": self.max, "min": self.min, "count": self.count, "sum": self.sum})
        }
    }
}

/// Bucket boundaries `[b0 = start, b1, …, bn = end]` for a granularity (UTC).
fn buckets(from: Timestamp, to: Timestamp, granularity: Option<&str>) -> Result<Vec<Timestamp>, PlatformError> {
    let Some(g) = granularity else {
        return Ok(vec![from, to]);
    };
    let bad = || invalid("granularity", format!("Granularity [{g}] is not a positive ISO-8601 duration."));
    if !g.starts_with(['P', 'p']) {
        return Err(bad());
    }
    let span: Span = g.parse().map_err(|_| bad())?;
    if !span.is_positive() {
        return Err(bad());
    }
    let start = from.to_zoned(jiff::tz::TimeZone::UTC);
    let mut out = vec![from];
    for i in 1.. {
        let step = span.checked_mul(i).map_err(|_| bad())?;
        let next = start.checked_add(step).map_err(|_| bad())?.timestamp();
        if next <= *out.last().unwrap_or(&from) {
            return Err(bad());
        }
        if next >= to {
            out.push(to);
            break;
        }
        out.push(next);
        if out.len() > MAX_BUCKETS {
            return Err(invalid(
                "granularity",
                format!("Granularity [{g}] splits the interval into more than {MAX_BUCKETS} buckets."),
            ));
        }
    }
    Ok(out)
}

impl Org {
    /// Runs an aggregates query (see the module docs).
    fn aggregates_query(&self, q: &AggregationQuery) -> Result<Value, PlatformError> {
        let interval = q.interval.as_deref().ok_or_else(|| required("interval"))?;
        let (from, to) = parse_interval(interval)
            .ok_or_else(|| PlatformError::new(400, "invalid.date", format!("Invalid interval [{interval}].")))?;
        let metrics = q.metrics.as_ref().filter(|m| !m.is_empty()).ok_or_else(|| required("metrics"))?;
        let mut wanted: Vec<&str> = Vec::new();
        for m in metrics {
            let Some(&known) = METRICS.iter().find(|k| **k == m.as_str()) else {
                return Err(invalid(
                    "metrics",
                    format!("Metric [{m}] is not supported by the sandbox (supported: {}).", METRICS.join(", ")),
                ));
            };
            if !wanted.contains(&known) {
                wanted.push(known);
            }
        }
        let mut group_by: Vec<&str> = Vec::new();
        for d in &q.group_by {
            let Some(&known) = DIMENSIONS.iter().find(|k| **k == d.as_str()) else {
                return Err(invalid(
                    "groupBy",
                    format!("Dimension [{d}] is not supported by the sandbox (supported: {}).", DIMENSIONS.join(", ")),
                ));
            };
            if !group_by.contains(&known) {
                group_by.push(known);
            }
        }
        match q.time_zone.as_deref() {
            None | Some("UTC") | Some("Etc/UTC") => {}
            Some(tz) => {
                return Err(invalid("timeZone", format!("The sandbox computes aggregates in UTC only, not [{tz}].")))
            }
        }
        if let Some(f) = &q.filter {
            f.validate()?;
        }
        let bounds = buckets(from, to, q.granularity.as_deref())?;

        // group values → bucket index → metric → stats
        type Buckets = BTreeMap<usize, BTreeMap<&'static str, Stats>>;
        let mut groups: BTreeMap<Vec<Option<String>>, Buckets> = BTreeMap::new();
        for conv in self.conversation_order.iter().filter_map(|id| self.conversations.get(id)) {
            for p in conv.participants.iter().filter(|p| p.purpose == Purpose::Agent) {
                let dim = |d: &str| leg_dim(self, conv, p, d);
                if q.filter.as_ref().is_some_and(|f| !f.eval(&dim)) {
                    continue;
                }
                let mut key = None;
                for (metric, at, value) in observations(p) {
                    if !wanted.contains(&metric) || at < from || at >= to {
                        continue;
                    }
                    // The bucket whose start is the last boundary <= at.
                    let b = bounds.partition_point(|x| *x <= at) - 1;
                    let key = key.get_or_insert_with(|| group_by.iter().map(|d| dim(d)).collect::<Vec<_>>());
                    groups.entry(key.clone()).or_default().entry(b).or_default().entry(metric).or_default().add(value);
                }
            }
        }

        let results: Vec<Value> = groups
            .into_iter()
            .map(|(key, data)| {
                let mut group = Map::new();
                for (d, v) in group_by.iter().zip(key) {
                    if let Some(v) = v {
                        group.insert((*d).to_string(), json!(v));
                    }
                }
                let data: Vec<Value> = data
                    .into_iter()
                    .map(|(b, stats)| {
                        let metrics: Vec<Value> = wanted
                            .iter()
                            .filter_map(|m| stats.get(m).map(|s| json!({"metric": m, "stats": s.json(m)})))
                            .collect();
                        json!({"interval": format!("{}/{}", iso(bounds[b]), iso(bounds[b + 1])), "metrics": metrics})
                    })
                    .collect();
                json!({"group": group, "data": data})
            })
            .collect();
        if results.is_empty() {
            return Ok(json!({}));
        }
        Ok(json!({ "results": results }))
    }
}

async fn query(State(st): State<SharedState>, body: Bytes) -> Response {
    let q: AggregationQuery = match parse_body(&body) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let result = st.org.lock().aggregates_query(&q);
    match result {
        Ok(v) => json_ok(v),
        Err(e) => e.into_response(),
    }
}
