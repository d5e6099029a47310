//! The request faults of the fault profile, drawn the same way for both platforms' APIs.
//!
//! Each platform's API gate checks auth and its rate limit, then asks [`draw_request_faults`] what happens to the
//! request, and renders the answer in its own error shapes. The draws come from the platform's fault RNG, in one
//! fixed order, so faults never perturb the simulation and a seed replays the same faults for the same requests.

use crate::config::FaultProfile;
use rand::rngs::SmallRng;
use rand::Rng;
use std::time::Duration;
use tokio::time::Instant;

/// What the fault profile does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFault {
    /// Refused with 429 and `Retry-After: secs`: a storm is on (or starts with this request).
    Storm { secs: u64 },
    /// The token is revoked from now on; refused with 401.
    RevokeToken,
    /// Refused with this 5xx status (500, 502, 503 or 504).
    ServerError(u16),
    /// Served after `latency`; with `hang`, the answer is held back that long after the request took effect.
    Serve { latency: Duration, hang: Option<Duration> },
}

/// Draws the faults for one request at wall time `now`. `storm_until` is the platform's storm state; `storm` is how
/// long a storm starting now lasts in wall time.
pub fn draw_request_faults(
    f: &FaultProfile,
    storm_until: &mut Option<Instant>,
    rng: &mut SmallRng,
    now: Instant,
    storm: Duration,
) -> RequestFault {
    // The calm path draws nothing.
    if !f.request_faults_active() && storm_until.is_none() {
        return RequestFault::Serve { latency: Duration::ZERO, hang: None };
    }
    if let Some(until) = *storm_until {
        if now < until {
            return RequestFault::Storm { secs: whole_secs(until.duration_since(now)) };
        }
        *storm_until = None;
    }
    if f.storm_rate > 0.0 && rng.gen_bool(f.storm_rate.clamp(0.0, 1.0)) {
        *storm_until = Some(now + storm);
        return RequestFault::Storm { secs: whole_secs(storm) };
    }
    if f.token_revocation_rate > 0.0 && rng.gen_bool(f.token_revocation_rate.clamp(0.0, 1.0)) {
        return RequestFault::RevokeToken;
    }
    if f.http_5xx_rate > 0.0 && rng.gen_bool(f.http_5xx_rate.clamp(0.0, 1.0)) {
        // An `i32` range: the type of the range decides how much of the stream a draw consumes, and seeds replay it.
        let status = match rng.gen_range(0i32..4) {
            0 => 500,
            1 => 502,
            2 => 503,
            _ => 504,
        };
        return RequestFault::ServerError(status);
    }
    let hang = (f.timeout_rate > 0.0 && rng.gen_bool(f.timeout_rate.clamp(0.0, 1.0)))
        .then(|| Duration::from_millis(f.hang_ms));
    let latency = if f.latency_ms_max > 0 {
        Duration::from_millis(rng.gen_range(f.latency_ms_min.min(f.latency_ms_max)..=f.latency_ms_max))
    } else {
        Duration::ZERO
    };
    RequestFault::Serve { latency, hang }
}

/// A `Retry-After` for `d`: whole seconds, rounded up, at least 1.
fn whole_secs(d: Duration) -> u64 {
    d.as_secs_f64().ceil().max(1.0) as u64
}
