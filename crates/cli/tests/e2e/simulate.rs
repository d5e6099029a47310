//! `wrapup simulate` against a finished demo's store: its own rules reproduce every decision it recorded, and a
//! changed rule shows exactly the legs it decides otherwise, the same way on every run.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use wrapup_demo::{self as demo, DemoArgs};

async fn simulate(config: &Path, rules: &Path, json: bool) -> (i32, String) {
    simulate_with(config, rules, if json { &["--json"] } else { &[] }).await
}

async fn simulate_with(config: &Path, rules: &Path, extra: &[&str]) -> (i32, String) {
    let mut args = vec![
        "simulate".to_string(),
        "--config".into(),
        config.display().to_string(),
        "--rules".into(),
        rules.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_wrapup")).args(&args).output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code().is_some(), "simulate was killed: {stderr}");
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap())
}

/// `connection/conversation/participant` of the legs for which `keep` holds.
fn legs(report: &Value, keep: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    report["leg_reports"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| keep(l))
        .map(|l| format!("{}/{}/{}", l["connection"], l["conversation"], l["participant"]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulating_a_demo_with_its_own_rules_reproduces_its_decisions_and_a_changed_rule_shows_its_legs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let args = DemoArgs {
        duration: 6,
        json: true,
        faults: "calm".into(),
        seed: 11,
        speed: Some(20.0),
        arrival_rate: None,
        preload: 10,
        data_dir: Some(data.clone()),
        quiet: true,
        intake: demo::IntakeMode::EventBridge,
        reconcile_every_ms: demo::DEFAULT_RECONCILE_EVERY_MS,
        cxone_acw_detection: demo::CxoneDetection::Polling,
        no_cxone: false,
        open: false,
        hold: false,
    };
    demo::run(&args).await.expect("the demo runs");
    let config = data.join(demo::CONFIG_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config).expect("the demo leaves its configuration").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the configuration holds the sandbox's secrets");
    }

    let own = dir.path().join("rules.toml");
    std::fs::write(&own, demo::DEMO_RULES).unwrap();
    let (status, out) = simulate(&config, &own, true).await;
    assert_eq!(status, 0, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let by_rule = legs(&report, |l| l["recorded"]["kind"] == "rule");
    assert!(by_rule.len() > 10, "the demo decided legs by rule: {}", report["vs_recorded"]);
    assert_eq!(report["vs_recorded"]["different"], 0, "{}", report["vs_recorded"]);
    let reproduced = legs(&report, |l| l["recorded"]["kind"] == "rule" && l["simulated"] == l["recorded"]);
    assert_eq!(reproduced, by_rule, "every leg decided by a rule: the same rule, the same code");
    let platforms: BTreeSet<String> =
        report["leg_reports"].as_array().unwrap().iter().map(|l| l["connection"].to_string()).collect();
    assert_eq!(platforms.len(), 2, "both connections' legs are replayed");

    // The same legs from a file of leg records give the same report.
    let store =
        wrapup_store::SqliteStore::open_with(&data.join("wrapup.db"), wrapup_store::Migrations::Check).await.unwrap();
    let records = wrapup_store::Store::legs_since(&store, None, None, u32::MAX).await.unwrap();
    store.close().await;
    let lines: Vec<String> = records.iter().map(|l| serde_json::to_string(l).unwrap()).collect();
    let events = dir.path().join("legs.jsonl");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let (status, from_file) =
        simulate_with(&config, &own, &["--json", "--events", &events.display().to_string()]).await;
    assert_eq!(status, 0, "{from_file}");
    assert_eq!(from_file, out, "the file's legs are the store's");

    // Billing gets another code: exactly the legs the billing rule decided change, and nothing else.
    let changed = dir.path().join("changed.toml");
    std::fs::write(&changed, demo::DEMO_RULES.replace("code = \"Billing question answered\"", "code = \"Escalated\""))
        .unwrap();
    let (status, out) = simulate(&config, &changed, true).await;
    assert_eq!(status, 0, "{out}");
    let changed_report: Value = serde_json::from_str(&out).unwrap();
    let billing = legs(&report, |l| l["recorded"]["rule"] == "billing");
    assert!(!billing.is_empty(), "the demo decided billing legs");
    assert_eq!(legs(&changed_report, |l| l["vs_recorded"] == "different"), billing);
    let billing_rule = changed_report["rules"].as_array().unwrap().iter().find(|r| r["name"] == "billing").unwrap();
    assert_eq!(billing_rule["vs_recorded"]["different"].as_u64(), Some(billing.len() as u64), "{billing_rule}");

    // The same input, the same bytes: the JSON and the tables.
    let (_, again) = simulate(&config, &changed, true).await;
    assert_eq!(again, out);
    let (_, table) = simulate(&config, &changed, false).await;
    let (_, table_again) = simulate(&config, &changed, false).await;
    assert_eq!(table, table_again);
    assert!(table.contains("legs decided differently from the store"), "{table}");

    // The same legs in PostgreSQL (`store copy`) give the same bytes: nothing depends on the backend's order.
    let Some(server) = std::env::var("WRAPUP_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        eprintln!("skipped the PostgreSQL part: WRAPUP_TEST_POSTGRES_URL is not set");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("wrapup_simulate_{}_{nanos}", std::process::id());
    let url = wrapup_store::PostgresStore::create_database(&server, &name).await.unwrap();
    let from = format!("sqlite://{}", data.join("wrapup.db").display());
    let copy = ["store", "copy", "--from", &from, "--to", &url].map(String::from);
    let copied =
        tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_wrapup")).args(copy).output().unwrap())
            .await
            .unwrap();
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let (status, from_postgres) = simulate_with(&config, &changed, &["--json", "--from", &url]).await;
    wrapup_store::PostgresStore::drop_database(&server, &name).await.unwrap();
    assert_eq!(status, 0, "{from_postgres}");
    assert_eq!(from_postgres, out, "PostgreSQL and SQLite give the same report");
}
