//! The demo's platform flow: a client of the lookup API that asks what an Architect data action would.
//!
//! While traffic runs it watches the sandbox's legs and, for two legs in three whose agent part has ended, asks the
//! decision lookup with the facts a flow has at hand (queue name, channel, direction), then resolves the answered
//! code's name on the leg's queue with the codes lookup — the two answers must agree on the id. Legs no rule
//! covers (the demo's Retention voice calls, and the Retention emails whose rule names a code that queue does not
//! allow) get the connection's fallback code, as a real flow would, so a newcomer sees both kinds of answer.
//!
//! What the client saw is tallied here ([`LookupTally`]); the summary puts it next to the service's own counters
//! (`wrapup_lookups_total`, `wrapup_lookup_fallbacks_total`), which must say the same.

use serde::Serialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wrapup_sandbox::{LegTruth, Media, SandboxHandle};

/// The code a decision lookup falls back to in the demo: assigned to the Retention queue, where the fallbacks
/// happen.
pub const DEMO_FALLBACK_CODE: &str = "No sale";

/// Of this many ended legs, all but one are looked up.
pub const SAMPLE_OUT_OF: u64 = 3;

/// How often the client looks for newly ended legs, like flows finishing one after another.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// What the client asked and was answered.
#[derive(Debug, Clone, Default)]
pub struct LookupTally {
    pub decisions: u64,
    /// 200 with `fallback: false`: a rule decided.
    pub answered: u64,
    /// 200 with `fallback: true`.
    pub fallen_back: u64,
    /// Codes lookups answered 200.
    pub codes_answered: u64,
    /// Codes lookups whose id differed from the decision's.
    pub codes_disagreeing: u64,
    /// Anything else: another status, a transport error, an answer without the expected fields.
    pub failed: u64,
    /// Wall milliseconds per lookup, both routes.
    pub latencies_ms: Vec<f64>,
}

/// Where and how the client asks.
#[derive(Debug, Clone)]
pub struct LookupClient {
    pub http: reqwest::Client,
    /// The service's base URL (the intake listener, where the lookup routes are).
    pub base_url: String,
    pub connection: String,
    pub key_header: String,
    pub key: String,
}

impl LookupClient {
    /// Runs until `stop` turns true, then returns what it saw.
    pub async fn run(self, sandbox: SandboxHandle, mut stop: watch::Receiver<bool>) -> LookupTally {
        let mut tally = LookupTally::default();
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            let ended: Vec<LegTruth> = sandbox
                .legs()
                .into_iter()
                .filter(|l| l.acw_started_at.is_some() && l.queue_name.is_some())
                .filter(|l| seen.insert(l.participant_id.clone()))
                .collect();
            for leg in ended.iter().filter(|l| sampled(&l.participant_id)) {
                self.look_up(leg, &mut tally).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = stop.wait_for(|s| *s) => return tally,
            }
        }
    }

    /// A decision, then the codes lookup of the answered name on the leg's queue.
    async fn look_up(&self, leg: &LegTruth, tally: &mut LookupTally) {
        let queue = leg.queue_name.clone().unwrap_or_default();
        let facts = json!({"queue_name": queue, "channel": channel(leg.media_type), "direction": "inbound"});
        tally.decisions += 1;
        let url = format!("{}/api/v1/lookup/{}/decision", self.base_url, self.connection);
        let decided = self.ask(self.http.post(url).json(&facts), tally).await;
        let (Some(code), Some(code_id), Some(fallback)) = (
            decided.as_ref().and_then(|d| d["code"].as_str()),
            decided.as_ref().and_then(|d| d["code_id"].as_str()),
            decided.as_ref().and_then(|d| d["fallback"].as_bool()),
        ) else {
            tally.failed += 1;
            return;
        };
        if fallback {
            tally.fallen_back += 1;
        } else {
            tally.answered += 1;
        }
        let url = format!("{}/api/v1/lookup/{}/codes", self.base_url, self.connection);
        let resolved = self.ask(self.http.get(url).query(&[("name", code), ("queue", &queue)]), tally).await;
        match resolved.as_ref().and_then(|r| r["code_id"].as_str()) {
            Some(id) => {
                tally.codes_answered += 1;
                if id != code_id {
                    tally.codes_disagreeing += 1;
                }
            }
            None => tally.failed += 1,
        }
    }

    /// Sends one lookup with the key; the JSON of a 200, else `None`.
    async fn ask(&self, request: reqwest::RequestBuilder, tally: &mut LookupTally) -> Option<Value> {
        let started = Instant::now();
        let response = request.header(self.key_header.as_str(), self.key.as_str()).send().await;
        tally.latencies_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        match response {
            Ok(r) if r.status() == 200 => r.json::<Value>().await.ok(),
            Ok(r) => {
                tracing::warn!(status = %r.status(), "A demo lookup was not answered 200.");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "A demo lookup failed.");
                None
            }
        }
    }
}

/// Whether the flow runs for this leg: chosen by its id (which the seed gives), so a seed asks about the same legs
/// whatever the timing.
fn sampled(participant_id: &str) -> bool {
    let hash =
        participant_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    hash % SAMPLE_OUT_OF != 0
}

/// The channel a flow names for a leg's media (the rules' `channel` fact).
fn channel(media: Media) -> &'static str {
    match media {
        Media::Calls => "voice",
        Media::Callbacks => "callback",
        Media::Emails => "email",
        Media::Messages => "message",
    }
}

/// The lookups of one connection in the summary: what the client saw, and what the service counted.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct LookupSummary {
    pub decisions: u64,
    pub answered: u64,
    pub fallen_back: u64,
    pub codes_answered: u64,
    pub codes_disagreeing: u64,
    pub failed: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The service's `wrapup_lookups_total{route="decision",result="answered"}` (rule decisions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_answered: Option<u64>,
    /// The service's `wrapup_lookup_fallbacks_total`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_fallen_back: Option<u64>,
}

impl LookupSummary {
    /// The tally, with the counters of `connection` from the service's metrics when there are any.
    pub fn new(tally: &LookupTally, metrics: Option<&str>, connection: &str) -> Self {
        let mut lat = tally.latencies_ms.clone();
        lat.sort_by(|a, b| a.total_cmp(b));
        LookupSummary {
            decisions: tally.decisions,
            answered: tally.answered,
            fallen_back: tally.fallen_back,
            codes_answered: tally.codes_answered,
            codes_disagreeing: tally.codes_disagreeing,
            failed: tally.failed,
            p50_ms: crate::summary::percentile(&lat, 0.50),
            p99_ms: crate::summary::percentile(&lat, 0.99),
            metrics_answered: metrics.map(|m| {
                crate::summary::metric_sum(
                    m,
                    "wrapup_lookups_total",
                    &[("connection", connection), ("route", "decision"), ("result", "answered")],
                )
            }),
            metrics_fallen_back: metrics
                .map(|m| crate::summary::metric_sum(m, "wrapup_lookup_fallbacks_total", &[("connection", connection)])),
        }
    }

    /// The client and the service agree on every count, and every answer was usable.
    pub fn consistent(&self) -> bool {
        self.failed == 0
            && self.codes_disagreeing == 0
            && self.metrics_answered.is_none_or(|m| m == self.answered)
            && self.metrics_fallen_back.is_none_or(|m| m == self.fallen_back)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "\
# TYPE wrapup_lookups_total counter
wrapup_lookups_total{connection=\"genesys\",route=\"decision\",result=\"answered\"} 7
wrapup_lookups_total{connection=\"genesys\",route=\"codes\",result=\"answered\"} 9
wrapup_lookups_total{connection=\"genesys\",route=\"decision\",result=\"fallback\"} 2
wrapup_lookups_total{connection=\"genesys-dev\",route=\"decision\",result=\"answered\"} 100
wrapup_lookup_fallbacks_total{connection=\"genesys\"} 2
";

    fn tally(answered: u64, fallen_back: u64) -> LookupTally {
        LookupTally {
            decisions: answered + fallen_back,
            answered,
            fallen_back,
            codes_answered: answered + fallen_back,
            latencies_ms: vec![0.4, 0.2, 0.9],
            ..LookupTally::default()
        }
    }

    #[test]
    fn the_summary_reads_the_services_counters_of_its_connection_only() {
        let s = LookupSummary::new(&tally(7, 2), Some(EXPOSITION), "genesys");
        assert_eq!((s.metrics_answered, s.metrics_fallen_back), (Some(7), Some(2)));
        assert_eq!((s.p50_ms, s.p99_ms), (Some(0.4), Some(0.9)));
        assert!(s.consistent());
    }

    #[test]
    fn a_count_the_service_does_not_share_or_a_failed_lookup_is_inconsistent() {
        assert!(!LookupSummary::new(&tally(6, 2), Some(EXPOSITION), "genesys").consistent());
        let failed = LookupTally { failed: 1, ..tally(7, 2) };
        assert!(!LookupSummary::new(&failed, Some(EXPOSITION), "genesys").consistent());
        assert!(LookupSummary::new(&tally(3, 0), None, "genesys").consistent(), "no metrics: nothing to compare");
    }
}
