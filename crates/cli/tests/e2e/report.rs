//! `wrapup report` against a finished demo: its outcome counts and calls per applied code are the demo summary's,
//! its shadow agreement is what the sandbox's hidden truth says of the same legs, and on Genesys its usage by code
//! is what the platform's own aggregates count.

use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use wrapup_core::lifecycle::{DecisionSource, LegRecord};
use wrapup_core::Mode;
use wrapup_demo::{self as demo, CxoneOptions, DemoEnv, EnvOptions};
use wrapup_sandbox::{CodedBy, Dist, FaultProfile, SandboxConfig};

async fn report(config: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["report".to_string(), "--config".into(), config.display().to_string(), "--json".into()];
    args.extend(extra.iter().map(|a| a.to_string()));
    let out = tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_wrapup")).args(&args).output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "report failed: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"))
}

/// The demo's center, busier and quicker so that a few wall seconds finish enough legs, with agents who code more
/// often at once (so that shadow rules have legs to be judged on).
fn busy(mut sandbox: SandboxConfig) -> SandboxConfig {
    sandbox.center.agents = 80;
    sandbox.center.arrival_rate_per_sec = 0.5;
    sandbox.center.talk_time = Dist::new(20.0, 90.0, 400.0);
    sandbox.center.agent.at_disconnect = 0.5;
    sandbox.cxone.center.arrival_rate_per_sec = 0.5;
    sandbox.cxone.center.agent.at_disconnect = 0.5;
    sandbox
}

/// A demo-like run (both platforms, the demo's rules) left in `data`, traffic for `secs` wall seconds, drained.
async fn demo_env(data: &Path, seed: u64, secs: u64, cxone: bool, sandbox: SandboxConfig) -> DemoEnv {
    let sandbox = SandboxConfig { seed, faults: FaultProfile::named("calm").unwrap(), ..busy(sandbox) };
    let opts = EnvOptions {
        sandbox,
        rules: demo::DEMO_RULES.to_string(),
        speed: 30.0,
        requests_per_minute: 300,
        data_dir: Some(data.to_path_buf()),
        cxone: cxone.then(CxoneOptions::default),
        store: None,
        lookup_fallback: None,
    };
    let env = DemoEnv::start_with(
        opts,
        demo::IntakeMode::EventBridge,
        Duration::from_millis(demo::DEFAULT_RECONCILE_EVERY_MS),
    )
    .await
    .expect("the sandbox and the service start");
    env.sandbox.start_traffic();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    env.sandbox.stop_traffic();
    env.settle_with_last_look(Duration::from_secs(10)).await.expect("the service settles");
    env
}

/// Waits until every conversation of the sandbox is over and every leg in the store finished: nothing changes
/// the figures or the platform's counts any more.
async fn quiesce(env: &DemoEnv) {
    let started = std::time::Instant::now();
    loop {
        env.settle(Duration::from_secs(2)).await.expect("the service settles");
        let counts = env.store.outcome_counts(demo::CONNECTION).await.unwrap();
        let open = counts.get(&None).copied().unwrap_or(0);
        let talking = env.sandbox.legs().iter().filter(|t| t.state != "done").count();
        if open == 0 && talking == 0 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{open} open leg(s), {talking} conversation(s) going on");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn connection<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["connections"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("{name}"))
}

/// Per shadow rule: (legs an agent coded, legs where the agent's code was the rule's), from the sandbox's truth.
fn truth_agreement(
    legs: &[LegRecord],
    agent_code: &HashMap<String, (CodedBy, Option<String>, Option<String>)>,
) -> HashMap<String, (u64, u64)> {
    let mut by_rule: HashMap<String, (u64, u64)> = HashMap::new();
    for leg in legs {
        let Some(d) = leg.decision.as_ref().filter(|d| d.mode == Mode::Shadow) else { continue };
        // The report can only count legs whose agent code reached the service. A code the agent set after the
        // run's last sweep (CXone reports dispositions with completed contacts) is in the sandbox's truth but not
        // in the store: such legs are outside both figures, and every leg inside them must agree with the truth.
        if leg.observed_code.is_none() {
            continue;
        }
        let DecisionSource::Rule { name, .. } = &d.source else { continue };
        let Some((coded_by, final_name, pick_name)) = agent_code.get(&leg.key.participant) else { continue };
        if *coded_by != CodedBy::Agent {
            continue;
        }
        let final_name = final_name.as_deref().expect("an agent's code has a name");
        assert_eq!(Some(final_name), pick_name.as_deref(), "nothing was written: the agent's code is the agent's pick");
        let cell = by_rule.entry(name.clone()).or_default();
        cell.0 += 1;
        cell.1 += u64::from(final_name.eq_ignore_ascii_case(&d.code_name));
    }
    by_rule
}

fn report_agreement(conn: &Value) -> HashMap<String, (u64, u64)> {
    conn["shadow_agreement"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (r["rule"].as_str().unwrap().to_string(), (r["legs"].as_u64().unwrap(), r["agreed"].as_u64().unwrap()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_of_a_demo_agrees_with_its_summary_and_with_the_sandbox_truth() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let env = demo_env(&data, 17, 8, true, SandboxConfig { preload: 10, ..SandboxConfig::default() }).await;
    let finished = env.finish_with_truth().await.expect("the demo finishes");
    let config = data.join(demo::CONFIG_FILE);
    let report = report(&config, &["--no-platform-check"]).await;

    let cx = finished.cxone.as_ref().expect("the CXone side ran");
    let genesys_truth: HashMap<String, _> = finished
        .truth
        .iter()
        .map(|t| (t.participant_id.clone(), (t.coded_by, t.final_code_name.clone(), t.agent_pick_name.clone())))
        .collect();
    let cxone_truth: HashMap<String, _> = cx
        .truth
        .iter()
        .map(|t| (t.contact_id.to_string(), (t.coded_by, t.final_disposition_name.clone(), t.agent_pick_name.clone())))
        .collect();
    let sides = [(&finished.summary, &finished.legs, &genesys_truth), (&cx.summary, &cx.legs, &cxone_truth)];
    let mut shadow_legs = 0;
    for (summary, legs, truth) in sides {
        let conn = connection(&report, &summary.name);
        assert_eq!(conn["platform"], summary.platform);
        assert_eq!(conn["legs"], summary.legs, "{}", summary.name);
        let expected = serde_json::to_value(&summary.outcomes).unwrap();
        assert_eq!(conn["outcomes"], expected, "{}: the report's outcomes are the summary's", summary.name);
        assert!(summary.outcomes.applied > 0, "{}: the demo applied codes", summary.name);
        assert_eq!(conn["calls"]["applied"], summary.outcomes.applied);
        assert_eq!(
            conn["calls"]["platform_calls"], summary.calls.per_leg,
            "{}: the calls the ledgers record are the per-leg calls the platform counted",
            summary.name
        );
        assert_eq!(
            conn["calls"]["per_applied_code"].as_f64(),
            summary.per_leg_calls_per_applied,
            "{}: calls per applied code",
            summary.name
        );
        let from_truth = truth_agreement(legs, truth);
        assert_eq!(report_agreement(conn), from_truth, "{}: shadow agreement is the sandbox's truth", summary.name);
        shadow_legs += from_truth.values().map(|(legs, _)| legs).sum::<u64>();
    }
    assert!(shadow_legs > 0, "agents coded some legs a shadow rule decided");
    let genesys = connection(&report, &finished.summary.name);
    assert!(genesys["platform_check"].is_null(), "--no-platform-check");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_genesys_the_usage_by_code_is_what_the_platform_aggregates_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let mut sandbox = SandboxConfig::default();
    // An agent's change after our write can land between the report and the platform's count: none here.
    sandbox.center.agent.change_after_api = 0.0;
    let env = demo_env(&data, 23, 8, false, sandbox).await;
    quiesce(&env).await;
    let config = data.join(demo::CONFIG_FILE);
    // The sandbox is still up: the report asks its aggregates.
    let report = report(&config, &[]).await;
    let conn = connection(&report, demo::CONNECTION);
    let check = &conn["platform_check"];
    assert_eq!(check["available"], true, "{check}");
    assert_eq!(check["matches"], true, "{check}");
    let codes = check["codes"].as_array().unwrap();
    assert!(codes.len() >= 3, "{check}");
    let used: u64 = conn["usage"].as_array().unwrap().iter().map(|u| u["legs"].as_u64().unwrap()).sum();
    let counted: u64 = codes.iter().map(|c| c["platform_legs"].as_u64().unwrap()).sum();
    assert_eq!(used, counted);
    assert!(used > 10, "{conn}");

    // The admin API computes the same figures (it leaves the platform check to the CLI).
    let base = env.service.as_ref().expect("the service runs").base_url();
    let http = reqwest::Client::new();
    let get = |query: &str| {
        let (http, url) = (http.clone(), format!("{base}/api/v1/report{query}"));
        async move {
            let reply = http.get(url).send().await.unwrap();
            (reply.status().as_u16(), reply.json::<Value>().await.unwrap())
        }
    };
    let (status, api) = get("?connection=genesys").await;
    assert_eq!(status, 200, "{api}");
    let mut cli_conn = conn.clone();
    cli_conn["platform_check"] = Value::Null;
    assert_eq!(api["connections"], serde_json::json!([cli_conn]));
    assert_eq!((api["from"].clone(), api["to"].clone()), (Value::Null, Value::Null));
    let (status, body) = get("?since=1d&from=2026-01-01T00:00:00Z").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_range")), "{body}");
    let (status, body) = get("?connection=nope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_connection")), "{body}");

    // The run's invariants are the other tests' subject (at this clock speed, on a loaded machine, a write can race
    // a closing window); this one only stops the sandbox and the service.
    env.finish_with_truth().await.expect("the demo finishes");
}
