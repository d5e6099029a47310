//! One sink's delivery loop: claim what is due, POST it signed, record the answer.

use super::Shared;
use jiff::{SignedDuration, Timestamp};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use wrapup_config::SinkConfig;
use wrapup_store::{AttemptResult, Attempted, Delivery, SinkState};

/// What an answer (or its absence) means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again: after `Retry-After` when the receiver said, else after a backoff.
    Retry {
        after: Option<Duration>,
    },
    /// The receiver retired this endpoint (410): the sink is disabled.
    Gone,
    /// It will not get better by itself (a 4xx other than 408/429, 501): a dead letter at once.
    Refused,
}

/// One retry classification for the outbox, like the connectors': 2xx delivered; 429 after `Retry-After`; 408,
/// 5xx except 501, and no answer retried; 410 disables; other 4xx and 501 refused.
pub fn classify(status: Option<u16>, retry_after: Option<Duration>) -> Verdict {
    match status {
        Some(s) if (200..300).contains(&s) => Verdict::Delivered,
        Some(429) => Verdict::Retry { after: retry_after },
        Some(410) => Verdict::Gone,
        Some(408) | None => Verdict::Retry { after: None },
        Some(501) => Verdict::Refused,
        Some(s) if s >= 500 => Verdict::Retry { after: None },
        Some(_) => Verdict::Refused,
    }
}

/// Full-jitter exponential backoff after `attempts` failed attempts: uniform in `[0, min(max, base · 2^attempts)]`.
pub fn backoff(attempts: u32, base: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempts.min(20)).min(max);
    ceiling.mul_f64(rng.gen_range(0.0..=1.0))
}

pub(super) async fn run_sink(shared: Arc<Shared>, sink: Arc<SinkConfig>, shutdown: crate::scheduler::Shutdown) {
    let name = sink.name.clone();
    let mut in_flight: JoinSet<Attempted> = JoinSet::new();
    let mut finished: Vec<Attempted> = Vec::new();
    let mut disabled = false;
    let mut checked_disabled: Option<Instant> = None;
    let mut gauges_at: Option<Instant> = None;
    loop {
        // Whether the sink is disabled (persisted, so a replica or an operator may have changed it).
        if checked_disabled.is_none_or(|at| at.elapsed() >= shared.settings.poll) {
            match shared.store.outbox_sinks().await {
                Ok(states) => {
                    disabled = states.iter().any(|s| s.name == name && s.disabled_at.is_some());
                    metrics::gauge!("wrapup_outbox_sink_disabled", "sink" => name.clone()).set(if disabled {
                        1.0
                    } else {
                        0.0
                    });
                }
                Err(e) => tracing::warn!(sink = %name, error = %e, "Could not read the sink's state."),
            }
            checked_disabled = Some(Instant::now());
        }
        if gauges_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
            if let Ok(counts) = shared.store.outbox_counts().await {
                let pending = counts.get(&(name.clone(), wrapup_store::DeliveryState::Pending)).copied().unwrap_or(0);
                metrics::gauge!("wrapup_outbox_pending", "sink" => name.clone()).set(pending as f64);
            }
            gauges_at = Some(Instant::now());
        }
        let free = sink.concurrency.saturating_sub(in_flight.len());
        // The answers that came in are recorded together, in the commit of the next claim: a row is leased until
        // recorded, so the claim cannot take it again, and a leg's next message waits for it.
        let answers = std::mem::take(&mut finished);
        // A 410 among them disables the sink: claiming alongside would send again what it just refused.
        disabled |= answers.iter().any(|a| a.status == Some(410));
        // Claim in groups rather than one slot at a time (each claim is a commit), unless nothing is in flight.
        let worth_claiming = !disabled && free > 0 && (in_flight.is_empty() || free >= (sink.concurrency / 4).max(1));
        let lease = shared.clock.clock_duration(shared.settings.lease.max(sink.timeout + Duration::from_secs(30)));
        let lease = if lease.is_negative() { SignedDuration::from_secs(60) } else { lease };
        let (gone, claimed) = tokio::join!(record(&shared, &sink, answers), async {
            if worth_claiming {
                Some(shared.store.outbox_claim(&name, shared.clock.now(), free as u32, &shared.owner, lease).await)
            } else {
                None
            }
        });
        disabled |= gone;
        let mut filled = false;
        match claimed {
            Some(Ok(claimed)) => {
                filled = claimed.len() == free;
                for d in claimed {
                    let (shared, sink) = (shared.clone(), sink.clone());
                    in_flight.spawn(async move { attempt(&shared, &sink, d).await });
                }
            }
            Some(Err(e)) => tracing::warn!(sink = %name, error = %e, "Could not claim deliveries."),
            None => {}
        }
        // Sleep until something may be due: a delivery done, a new route, the earliest retry, or the poll. When
        // the claim took all it asked for, more is due at once: the next answer is the wake-up.
        let mut wait = shared.settings.poll;
        if worth_claiming && !filled {
            if let Ok(Some(at)) = shared.store.outbox_next_due(&name).await {
                wait = wait.min(shared.clock.wall_duration(at.duration_since(shared.clock.now())));
            }
        }
        if wait.is_zero() && in_flight.len() < sink.concurrency {
            continue;
        }
        tokio::select! {
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                finished.extend(done.ok());
                while let Some(done) = in_flight.try_join_next() {
                    finished.extend(done.ok());
                }
            }
            _ = shared.routed.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // What is in flight at shutdown finishes and is recorded; anything cut off is claimed again when its lease ends.
    while let Some(done) = in_flight.join_next().await {
        finished.extend(done.ok());
    }
    record(&shared, &sink, finished).await;
}

/// Records attempts in one store call; disables the sink when the receiver answered 410 (then answers `true`).
async fn record(shared: &Shared, sink: &SinkConfig, attempts: Vec<Attempted>) -> bool {
    if attempts.is_empty() {
        return false;
    }
    for a in &attempts {
        let result = match &a.result {
            AttemptResult::Delivered => "delivered",
            AttemptResult::Retry(_) if a.status == Some(410) => "disabled",
            AttemptResult::Retry(_) => "retried",
            AttemptResult::Dead => "dead",
        };
        metrics::counter!("wrapup_outbox_deliveries_total", "sink" => sink.name.clone(), "result" => result)
            .increment(1);
        if a.result == AttemptResult::Dead {
            metrics::counter!("wrapup_outbox_dead_letters_total", "sink" => sink.name.clone()).increment(1);
            tracing::error!(sink = %sink.name, seq = a.seq, status = ?a.status, error = ?a.error, "An outbox message is a dead letter: `wrapup outbox retry` sends it again.");
        }
    }
    let gone = attempts.iter().find(|a| a.status == Some(410));
    if let Some(a) = gone {
        let state = SinkState {
            name: sink.name.clone(),
            disabled_at: Some(a.at),
            disabled_status: Some(410),
            disabled_reason: Some("the receiver answered 410 Gone".into()),
        };
        match shared.store.outbox_set_sink(&state).await {
            Ok(()) => {
                metrics::gauge!("wrapup_outbox_sink_disabled", "sink" => sink.name.clone()).set(1.0);
                tracing::error!(sink = %sink.name, "The sink answered 410 Gone and is disabled; `wrapup outbox retry --enable` turns it on again.");
            }
            Err(e) => tracing::warn!(sink = %sink.name, error = %e, "Could not persist the disabled sink."),
        }
    }
    if let Err(e) = shared.store.outbox_record(&shared.owner, &attempts).await {
        tracing::warn!(sink = %sink.name, attempts = attempts.len(), error = %e, "Could not record delivery attempts; they are sent again when their lease ends.");
    }
    shared.recorded.send_modify(|n| *n += 1);
    gone.is_some()
}

/// One POST of a delivery, and what it came to.
async fn attempt(shared: &Shared, sink: &SinkConfig, d: Delivery) -> Attempted {
    // The receiver checks the timestamp against its own clock (±5 minutes): the wall, not the service's clock.
    let unix = Timestamp::now().as_second();
    let mut request = shared.http.post(sink.url.clone()).timeout(sink.timeout);
    for (name, value) in super::sign::headers(&sink.secret, &d.message_id, unix, d.body.as_bytes()) {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let sent = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(d.body.clone()).send().await;
    metrics::histogram!("wrapup_outbox_delivery_seconds", "sink" => sink.name.clone())
        .record(started.elapsed().as_secs_f64());
    let now = shared.clock.now();
    let (status, retry_after, error) = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = wrapup_connectors::error::parse_retry_after(
                response.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()),
            );
            let error = (!response.status().is_success()).then(|| format!("HTTP {status}"));
            (Some(status), retry_after, error)
        }
        // Never the URL's query or the body: only what kind of failure it was.
        Err(e) => (None, None, Some(describe(&e))),
    };
    let result = match classify(status, retry_after) {
        Verdict::Delivered => AttemptResult::Delivered,
        Verdict::Refused => AttemptResult::Dead,
        // The delivery stays pending for when the sink is enabled again.
        Verdict::Gone => AttemptResult::Retry(now),
        Verdict::Retry { after } => {
            let wait = after.unwrap_or_else(|| {
                backoff(d.attempts, shared.settings.base_backoff, shared.settings.max_backoff, &mut rand::thread_rng())
            });
            let at = now.checked_add(shared.clock.clock_duration(wait)).unwrap_or(Timestamp::MAX);
            if at > d.expires_at {
                AttemptResult::Dead
            } else {
                AttemptResult::Retry(at)
            }
        }
    };
    Attempted { seq: d.seq, sink: sink.name.clone(), at: now, status, error, result }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_request() {
        "the request failed".into()
    } else {
        "no answer".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn answers_are_classified_once() {
        let after = Some(Duration::from_secs(7));
        assert_eq!(classify(Some(200), None), Verdict::Delivered);
        assert_eq!(classify(Some(204), None), Verdict::Delivered);
        assert_eq!(classify(Some(429), after), Verdict::Retry { after });
        assert_eq!(classify(Some(410), None), Verdict::Gone);
        assert_eq!(classify(Some(503), after), Verdict::Retry { after: None });
        assert_eq!(classify(Some(408), None), Verdict::Retry { after: None });
        assert_eq!(classify(None, None), Verdict::Retry { after: None });
        assert_eq!(classify(Some(501), None), Verdict::Refused);
        assert_eq!(classify(Some(400), None), Verdict::Refused);
        assert_eq!(classify(Some(401), None), Verdict::Refused);
    }

    #[test]
    fn backoff_is_jittered_under_a_doubling_ceiling() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let (base, max) = (Duration::from_secs(1), Duration::from_secs(600));
        for attempts in 0..40 {
            let ceiling = base.saturating_mul(1u32 << attempts.min(20)).min(max);
            for _ in 0..50 {
                assert!(backoff(attempts, base, max, &mut rng) <= ceiling);
            }
        }
        let spread: Vec<Duration> = (0..50).map(|_| backoff(5, base, max, &mut rng)).collect();
        assert!(
            spread.iter().any(|d| *d < Duration::from_secs(16)) && spread.iter().any(|d| *d > Duration::from_secs(16))
        );
    }
}
