use wrapup_demo::{self as demo, DemoArgs};

/// The README's main command, short: on the Genesys org and on the CXone business unit alike, codes are applied,
/// agents win where they coded first, and nothing breaks an invariant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_applies_codes_lets_agents_win_and_reports_no_violation() {
    let args = DemoArgs {
        duration: 12,
        json: true,
        faults: "calm".into(),
        seed: 7,
        speed: Some(20.0),
        arrival_rate: None,
        preload: 10,
        data_dir: None,
        quiet: true,
        intake: demo::IntakeMode::EventBridge,
        reconcile_every_ms: demo::DEFAULT_RECONCILE_EVERY_MS,
        cxone_acw_detection: demo::CxoneDetection::Polling,
        no_cxone: false,
        open: false,
        hold: false,
    };
    let result = demo::run(&args).await.expect("the demo runs");
    let json = result.to_json();
    let connections = json["connections"].as_array().expect("connections");
    let platforms: Vec<&str> = connections.iter().filter_map(|c| c["platform"].as_str()).collect();
    assert_eq!(platforms, ["genesys", "cxone"], "{json}");
    for c in connections {
        assert!(c["outcomes"]["applied"].as_u64().unwrap() > 0, "{c}");
        assert!(c["outcomes"]["agent_won"].as_u64().unwrap() > 0, "{c}");
        for v in ["overwrites", "outside_window", "duplicate_writes", "lost"] {
            assert_eq!(c["violations"][v], 0, "{v}: {c}");
        }
        for field in ["legs", "api_calls", "calls_per_applied", "coverage"] {
            assert!(!c[field].is_null(), "{field} is reported: {c}");
        }
        assert!(c["latency_ms"]["p50"].is_number() || c["latency_ms"]["samples"] == 0, "{c}");
        // Every finished leg has exactly one outcome line, and is counted once in the metrics.
        let finished = c["legs"].as_u64().unwrap() - c["outcomes"]["open"].as_u64().unwrap();
        assert_eq!(c["ledger_outcome_lines"].as_u64(), Some(finished), "{c}");
        assert_eq!(c["metrics_outcomes"].as_u64(), Some(finished), "{c}");
    }
    // The demo's platform flow asked the Genesys lookup: rules answered most, the Retention legs fell back, and the
    // service counted what the client saw.
    let lookups = &connections[0]["lookups"];
    assert!(lookups["answered"].as_u64().unwrap() > 0, "{lookups}");
    assert!(lookups["fallen_back"].as_u64().unwrap() > 0, "{lookups}");
    assert_eq!(lookups["metrics_answered"], lookups["answered"], "{lookups}");
    assert_eq!(lookups["metrics_fallen_back"], lookups["fallen_back"], "{lookups}");
    assert_eq!((lookups["failed"].as_u64(), lookups["codes_disagreeing"].as_u64()), (Some(0), Some(0)), "{lookups}");
    assert!(connections[1]["lookups"].is_null(), "the flow plays Genesys only");
    assert_eq!(json["crm"]["unverified"], 0, "{json}");
    // The outbox told the CRM every finished leg's code (one message per ending, and per change of one), signed.
    let finished: u64 =
        connections.iter().map(|c| c["legs"].as_u64().unwrap() - c["outcomes"]["open"].as_u64().unwrap()).sum();
    let outbox = &json["crm"]["outbox"];
    assert_eq!((outbox["pending"].as_u64(), outbox["dead"].as_u64()), (Some(0), Some(0)), "{json}");
    assert!(outbox["delivered"].as_u64().unwrap() >= finished, "{finished} finished legs: {json}");
    assert_eq!(json["crm"]["messages"], outbox["delivered"], "each delivered message arrived: {json}");
    assert!(result.table().contains("lookups: answered / fallen back"));
    assert!(result.table().contains("outbox: delivered / retried / dead"));
    assert_eq!(result.violations(), 0);
}
