//! `pooled`: one org, one then two OAuth clients, the same saturating load (three times what two clients allow).
//! With the budget pooled across credentials, the second client should double the applied codes per minute. Each
//! run is measured as `saturation` measures (whole minutes after the warm-up when it lasts 90 s or more).

use super::saturation::saturate;
use super::{round, BenchArgs, Report};

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let two_client_capacity = 2.0 * args.rate_limit as f64 / 2.0 / 60.0;
    let offered = args.rate.unwrap_or(3.0 * two_client_capacity);
    let duration = args.duration_or(super::saturation::DEFAULT_SECS);
    let one = saturate(args, duration, 1, offered, "pooled: 1 client").await?;
    let two = saturate(args, duration, 2, offered, "pooled: 2 clients").await?;
    let speedup =
        if one.applied_per_minute > 0.0 { round(two.applied_per_minute / one.applied_per_minute, 3) } else { 0.0 };
    let mut r = Report::new("pooled");
    r.field("duration_secs", duration.as_secs());
    r.field("window", serde_json::to_value(args.window)?);
    r.field("rate_limit_per_client", args.rate_limit);
    r.field("offered_legs_per_s", round(offered, 2));
    r.field("pool_speedup", speedup);
    for (name, m) in [("one_client", &one), ("two_clients", &two)] {
        r.field(
            name,
            serde_json::json!({
                "applied_per_minute": m.applied_per_minute, "utilisation": m.utilisation,
                "rate_limited_share": m.rate_limited_share, "api_calls": m.api_calls,
                "deadline_order_violations": m.deadline_order_violations, "sandbox_violations": m.sandbox_violations,
            }),
        );
    }
    r.field("goals", serde_json::json!({"pool_speedup_min": 1.9, "pool_speedup_met": speedup >= 1.9}));
    r.row("offered legs/s", round(offered, 2));
    for m in [&one, &two] {
        r.row(
            format!("{} client(s): applied/min (utilisation)", m.clients),
            format!("{} ({})", m.applied_per_minute, m.utilisation),
        );
        r.row(format!("{} client(s): 429 share", m.clients), m.rate_limited_share);
    }
    r.row("pool speedup (goal >= 1.9)", speedup);
    Ok(r)
}
