//! Crash points, for the kill tests.
//!
//! The crash-safety promise is about the worst moments: after events are durable but before the sender heard 2xx,
//! after the write intent is saved, between the gate read and the write, between an accepted write and its
//! record. Killing a process from outside rarely lands exactly there, so the service can kill *itself* there:
//! `WRAPUP_CRASH_POINTS="worker.after_write=0.05,intake.after_store=0.02"` makes each named point abort the process
//! (no destructors, no flush — like SIGKILL) with that probability. Unset (always, outside tests) it costs one
//! relaxed load per point.

use std::sync::OnceLock;

/// Every crash point, for documentation and validation of the variable.
pub const POINTS: [&str; 4] = ["intake.after_store", "worker.after_intent", "worker.after_gate", "worker.after_write"];

static ARMED: OnceLock<Vec<(&'static str, f64)>> = OnceLock::new();

fn armed() -> &'static [(&'static str, f64)] {
    ARMED.get_or_init(|| {
        let Ok(spec) = std::env::var("WRAPUP_CRASH_POINTS") else { return Vec::new() };
        spec.split(',')
            .filter_map(|item| {
                let (name, p) = item.trim().split_once('=')?;
                let point = POINTS.iter().find(|known| **known == name.trim())?;
                let p: f64 = p.trim().parse().ok()?;
                (p > 0.0).then_some((*point, p.min(1.0)))
            })
            .collect()
    })
}

/// Aborts the process with the probability armed for `name` (never, unless `WRAPUP_CRASH_POINTS` arms it).
pub fn point(name: &'static str) {
    let points = armed();
    if points.is_empty() {
        return;
    }
    if let Some((_, p)) = points.iter().find(|(n, _)| *n == name) {
        if rand::random::<f64>() < *p {
            eprintln!("wrapup: crash point {name} reached; aborting (WRAPUP_CRASH_POINTS)");
            std::process::abort();
        }
    }
}
