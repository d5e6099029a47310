use wrapup_cli::demo::{self, DemoArgs};

/// The README's main command, short: codes are applied, agents win where they coded first, no violation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_applies_codes_lets_agents_win_and_reports_no_violation() {
    let args = DemoArgs {
        duration: 12,
        json: true,
        faults: "calm".into(),
        seed: 7,
        speed: Some(20.0),
        arrival_rate: Some(0.06),
        preload: 10,
        data_dir: None,
        quiet: true,
        intake: demo::IntakeMode::EventBridge,
        reconcile_every_ms: demo::DEFAULT_RECONCILE_EVERY_MS,
    };
    let result = demo::run(&args).await.expect("the demo runs");
    let json = result.to_json();
    let c = &json["connections"][0];
    assert_eq!(c["platform"], "genesys");
    assert!(c["outcomes"]["applied"].as_u64().unwrap() > 0, "{c}");
    assert!(c["outcomes"]["agent_won"].as_u64().unwrap() > 0, "{c}");
    for v in ["overwrites", "outside_window", "duplicate_writes", "lost"] {
        assert_eq!(c["violations"][v], 0, "{v}: {c}");
    }
    for field in ["legs", "api_calls", "calls_per_applied", "coverage"] {
        assert!(!c[field].is_null(), "{field} is reported: {c}");
    }
    assert!(c["latency_ms"]["p50"].is_number() || c["latency_ms"]["samples"] == 0, "{c}");
    assert_eq!(result.violations(), 0);
}
