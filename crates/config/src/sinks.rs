//! `[[sinks]]`: where the outbox delivers every final code (docs/OUTBOX.md).

use crate::read::{duration_within, secret};
use crate::schema::{array, child, integer, items, named, non_empty_string, string, table, Cx, Field};
use crate::tree::Value;
use crate::SigningSecret;
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;
use wrapup_core::Outcome;

/// Default of `max_age`: how long a message is retried before it is a dead letter.
pub const DEFAULT_SINK_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Default of `timeout`: one delivery attempt, answer included.
pub const DEFAULT_SINK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of `concurrency`: deliveries in flight at once to one sink (each to a different leg).
pub const DEFAULT_SINK_CONCURRENCY: usize = 16;

/// One receiver of the outbox's messages.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Unique; what the delivery table, the metrics and `wrapup outbox` call it.
    pub name: String,
    pub url: Url,
    /// The Standard Webhooks key the messages are signed with (`whsec_<base64>`, by reference).
    pub secret: SigningSecret,
    pub filter: SinkFilter,
    /// Code name → the value the receiver knows it by, sent as `data.disposition`.
    pub mapping: BTreeMap<String, String>,
    /// A message not delivered within this of its creation is a dead letter.
    pub max_age: Duration,
    /// One attempt's time limit.
    pub timeout: Duration,
    pub concurrency: usize,
}

/// Which messages a sink wants; an empty list does not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkFilter {
    pub connections: Vec<String>,
    pub outcomes: Vec<Outcome>,
    /// Queue (skill) names.
    pub queues: Vec<String>,
}

impl SinkFilter {
    /// Whether a message of `connection` ending in `outcome` on `queue` (its name, when known) is wanted.
    pub fn wants(&self, connection: &str, outcome: Outcome, queue: Option<&str>) -> bool {
        (self.connections.is_empty() || self.connections.iter().any(|c| c == connection))
            && (self.outcomes.is_empty() || self.outcomes.contains(&outcome))
            && (self.queues.is_empty() || queue.is_some_and(|q| self.queues.iter().any(|w| w == q)))
    }
}

const SINK_KEYS: &[&str] = &["name", "url", "secret", "filter", "mapping", "max_age", "timeout", "concurrency"];
const FILTER_KEYS: &[&str] = &["connections", "outcomes", "queues"];
/// The longest `max_age`: a week.
const MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;

pub(crate) fn read_sink(cx: &mut Cx<'_>, f: &Field<'_>, connections: &[&str]) -> Option<SinkConfig> {
    let mut t = table(cx, f.node, &f.path, SINK_KEYS)?;
    let name = t.require(cx, "name").and_then(|f| non_empty_string(cx, &f).map(str::to_string));
    let url = t.require(cx, "url").and_then(|f| {
        let text = non_empty_string(cx, &f)?;
        match Url::parse(text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if u.password().is_some() {
                    cx.problem(&f.node.span, &f.path, "a sink URL must not hold a password (sign with `secret`)");
                    return None;
                }
                Some(u)
            }
            Ok(_) => {
                cx.problem(&f.node.span, &f.path, "a sink URL must be http:// or https:// with a host");
                None
            }
            Err(e) => {
                cx.problem(&f.node.span, &f.path, format!("not a URL: {e}"));
                None
            }
        }
    });
    let signing = t.require(cx, "secret").and_then(|f| {
        let s = secret(cx, &f)?;
        SigningSecret::parse(s.expose()).map_err(|m| cx.problem(&f.node.span, &f.path, m)).ok()
    });
    let filter = match t.get("filter") {
        Some(f) => read_filter(cx, &f, connections),
        None => Some(SinkFilter::default()),
    };
    let mapping = match t.get("mapping") {
        Some(f) => read_mapping(cx, &f),
        None => Some(BTreeMap::new()),
    };
    let max_age = match t.get("max_age") {
        Some(f) => duration_within(cx, &f, MAX_AGE_MS, "7 days (168h)").and_then(|d| positive(cx, &f, d)),
        None => Some(DEFAULT_SINK_MAX_AGE),
    };
    let timeout = match t.get("timeout") {
        Some(f) => duration_within(cx, &f, 5 * 60 * 1000, "5m").and_then(|d| positive(cx, &f, d)),
        None => Some(DEFAULT_SINK_TIMEOUT),
    };
    let concurrency = match t.get("concurrency") {
        Some(f) => integer(cx, &f, 1, 256).map(|n| n as usize),
        None => Some(DEFAULT_SINK_CONCURRENCY),
    };
    t.finish(cx);
    Some(SinkConfig {
        name: name?,
        url: url?,
        secret: signing?,
        filter: filter?,
        mapping: mapping?,
        max_age: max_age?,
        timeout: timeout?,
        concurrency: concurrency?,
    })
}

fn positive(cx: &mut Cx<'_>, f: &Field<'_>, d: jiff::SignedDuration) -> Option<Duration> {
    match Duration::try_from(d) {
        Ok(d) if !d.is_zero() => Some(d),
        _ => {
            cx.problem(&f.node.span, &f.path, "must be longer than zero");
            None
        }
    }
}

fn read_filter(cx: &mut Cx<'_>, f: &Field<'_>, connections: &[&str]) -> Option<SinkFilter> {
    let mut t = table(cx, f.node, &f.path, FILTER_KEYS)?;
    let conns = names(cx, t.get("connections")).and_then(|list| {
        let mut ok = true;
        for (name, item) in &list {
            if !connections.contains(&name.as_str()) {
                cx.problem(&item.node.span, &item.path, format!("no connection is named {name:?}"));
                ok = false;
            }
        }
        ok.then(|| list.into_iter().map(|(n, _)| n).collect())
    });
    let outcomes = match t.get("outcomes") {
        Some(f) => array(cx, &f, "an array of outcome names").and_then(|list| {
            if list.is_empty() {
                cx.problem(&f.node.span, &f.path, "an empty list matches nothing; leave the key out to match all");
                return None;
            }
            crate::schema::all_of(items(list, &f.path).map(|item| named::<Outcome>(cx, &item)))
        }),
        None => Some(Vec::new()),
    };
    let queues = names(cx, t.get("queues")).map(|l| l.into_iter().map(|(n, _)| n).collect());
    t.finish(cx);
    Some(SinkFilter { connections: conns?, outcomes: outcomes?, queues: queues? })
}

/// A non-empty list of names, each with where it is written.
fn names<'n>(cx: &mut Cx<'_>, f: Option<Field<'n>>) -> Option<Vec<(String, Field<'n>)>> {
    let Some(f) = f else { return Some(Vec::new()) };
    let list = array(cx, &f, "an array of strings")?;
    if list.is_empty() {
        cx.problem(&f.node.span, &f.path, "an empty list matches nothing; leave the key out to match all");
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    for item in items(list, &f.path) {
        match non_empty_string(cx, &item) {
            Some(s) => out.push((s.to_string(), item)),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_mapping(cx: &mut Cx<'_>, f: &Field<'_>) -> Option<BTreeMap<String, String>> {
    let Value::Table(entries) = &f.node.value else {
        cx.wrong_type(f.node, &f.path, "a table of code name = value");
        return None;
    };
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (key, node) in entries {
        let field = Field { node, path: child(&f.path, &key.name) };
        match string(cx, &field) {
            Some(v) if !v.trim().is_empty() && !key.name.trim().is_empty() => {
                out.insert(key.name.clone(), v.to_string());
            }
            Some(_) => {
                cx.problem(&node.span, &field.path, "a code name and its value must not be empty");
                ok = false;
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}
