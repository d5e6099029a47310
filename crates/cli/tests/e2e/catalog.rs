//! `wrapup catalog export|plan|apply` against two sandbox orgs whose catalogs differ, on both platforms: the sandbox's
//! catalog truth (every code, every assignment, every write) says whether the orgs match afterwards and whether
//! anything was created twice.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use wrapup_clock::ScaledClock;
use wrapup_sandbox::{CatalogShape, FaultProfile, Platform, Sandbox, SandboxConfig, SandboxHandle};

async fn org(seed: u64, variant: u32, faults: FaultProfile) -> SandboxHandle {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = SandboxConfig {
        seed,
        traffic_autostart: false,
        faults,
        catalog: CatalogShape { variant, ..CatalogShape::default() },
        ..SandboxConfig::default()
    };
    Sandbox::start(cfg, listener, ScaledClock::system().shared()).await.unwrap()
}

/// A config with the org's Genesys connection (`genesys`) and CXone connection (`cxone`).
fn config(dir: &Path, name: &str, sb: &SandboxHandle) -> PathBuf {
    let (id, secret) = sb.credentials()[0].clone();
    let cx = sb.cxone_credentials();
    let text = format!(
        r#"data_dir = "data-{name}"
[[connections]]
name = "genesys"
kind = "genesys"
base_url = "{base}"
client_id = "{id}"
client_secret = "literal:{secret}"
[connections.intake]
api_key = "literal:k"

[[connections]]
name = "cxone"
kind = "cxone"
base_url = "{base}"
client_id = "{cid}"
client_secret = "literal:{csecret}"
access_key_id = "{kid}"
access_key_secret = "literal:{ksecret}"

[[rules]]
name = "resolved"
code = "Issue resolved"
"#,
        base = sb.base_url(),
        cid = cx.client_id,
        csecret = cx.client_secret,
        kid = cx.access_key_id,
        ksecret = cx.access_key_secret,
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

async fn wrapup(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(env!("CARGO_BIN_EXE_wrapup")).args(&args).output().unwrap())
        .await
        .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn text(out: &Output) -> String {
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Codes by name with their fields, and queues by name with their codes' names.
type ByName = (Vec<(String, serde_json::Value)>, Vec<(String, Vec<String>)>);

/// What must match between two orgs.
fn by_name(sb: &SandboxHandle, platform: Platform) -> ByName {
    let snap = sb.catalog_snapshot(platform);
    let mut codes: Vec<(String, serde_json::Value)> =
        snap.codes.iter().map(|c| (c.name.clone(), serde_json::to_value(&c.fields).unwrap())).collect();
    codes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut assignments: Vec<(String, Vec<String>)> = snap.assignments.clone().into_iter().collect();
    assignments.sort();
    (codes, assignments)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_catalog_planned_and_applied_to_another_org_makes_it_match_on_both_platforms() {
    let a = org(1, 0, FaultProfile::calm()).await;
    let b = org(2, 1, FaultProfile::calm()).await;
    let dir = tempfile::tempdir().unwrap();
    let (config_a, config_b) = (config(dir.path(), "a", &a), config(dir.path(), "b", &b));
    let (config_a, config_b) = (config_a.to_str().unwrap(), config_b.to_str().unwrap());

    for (connection, platform) in [("genesys", Platform::Genesys), ("cxone", Platform::Cxone)] {
        assert_ne!(by_name(&a, platform), by_name(&b, platform), "{connection}: the variant differs from the seed");
        let file = dir.path().join(format!("{connection}.toml"));
        let file_s = file.to_str().unwrap();
        let out =
            wrapup(args(&["catalog", "export", "--config", config_a, "--connection", connection, "--out", file_s]))
                .await;
        assert!(out.status.success(), "{}", text(&out));
        let exported = std::fs::read_to_string(&file).unwrap();
        assert!(!exported.contains("id ="), "ids never appear in the file:\n{exported}");
        let again = wrapup(args(&["catalog", "export", "--config", config_a, "--connection", connection])).await;
        assert_eq!(String::from_utf8_lossy(&again.stdout), exported, "two exports of one org are the same file");

        let plan = ["catalog", "plan", "--config", config_b, "--connection", connection, "--catalog", file_s];
        let planned = wrapup(args(&plan)).await;
        assert_eq!(planned.status.code(), Some(2), "{connection}: changes to make: {}", text(&planned));
        let shown = String::from_utf8_lossy(&planned.stdout).to_string();
        assert!(shown.contains("create code"), "{connection}: the codes the variant removed are created:\n{shown}");
        assert!(!shown.contains("Added by hand"), "{connection}: without prune, a code made by hand stays:\n{shown}");

        // Drift: reported by validate next to its other checks; an error only with --strict.
        let drift_config = dir.path().join(format!("b-{connection}-drift.toml"));
        let body = std::fs::read_to_string(config_b).unwrap();
        let body = body[..body.find("[[rules]]").unwrap()].replace(
            &format!("name = \"{connection}\"\n"),
            &format!("name = \"{connection}\"\ncatalog = {file_s:?}\n"),
        );
        std::fs::write(&drift_config, body).unwrap();
        let drift_config = drift_config.to_str().unwrap();
        let validated = wrapup(args(&["validate", "--config", drift_config])).await;
        let report = text(&validated);
        assert!(validated.status.success(), "{connection}: drift alone is not an error: {report}");
        assert!(report.contains("drift from") && report.contains("not on the platform"), "{connection}: {report}");
        let strict = wrapup(args(&["validate", "--strict", "--config", drift_config])).await;
        assert_eq!(strict.status.code(), Some(1), "{connection}: --strict: {}", text(&strict));

        let saved = dir.path().join(format!("{connection}-plan.json"));
        let mut save = args(&plan);
        save.extend(["--out".to_string(), saved.to_str().unwrap().to_string()]);
        assert_eq!(wrapup(save).await.status.code(), Some(2));

        let mut apply = args(&plan);
        apply[1] = "apply".into();
        apply.push("--yes".into());
        let applied = wrapup(apply).await;
        assert!(applied.status.success(), "{connection}: {}", text(&applied));
        let replanned = wrapup(args(&plan)).await;
        assert_eq!(replanned.status.code(), Some(0), "{connection}: nothing left: {}", text(&replanned));
        // The saved plan was made before the apply changed what it touches: refused.
        let stale = ["catalog", "apply", "--config", config_b, "--plan", saved.to_str().unwrap(), "--yes"];
        let stale = wrapup(args(&stale)).await;
        assert_eq!(stale.status.code(), Some(1), "{connection}: {}", text(&stale));
        assert!(text(&stale).contains("stale"), "{connection}: {}", text(&stale));
        let validated = text(&wrapup(args(&["validate", "--config", drift_config])).await);
        let drift: Vec<&str> = validated.lines().filter(|l| l.contains("drift from")).collect();
        assert!(
            drift.len() == 1 && drift[0].contains("\"Added by hand") && drift[0].contains("made by hand"),
            "{connection}: only the code made by hand in B is left as drift: {validated}"
        );

        // The audit trail: wrapup's apply, and on Genesys the platform's own records of the same changes.
        let audit =
            wrapup(args(&["catalog", "audit", "--config", config_b, "--connection", connection, "--json"])).await;
        assert!(audit.status.success(), "{}", text(&audit));
        let audit: serde_json::Value = serde_json::from_slice(&audit.stdout).unwrap();
        let entries = audit["entries"].as_array().unwrap();
        let from = |source: &str| entries.iter().filter(|e| e["source"] == source).count();
        assert!(from("wrapup") >= 3, "{connection}: begin, a result, end: {audit}");
        assert!(entries.iter().any(|e| e["what"].as_str().unwrap().starts_with("apply ends: converged")), "{audit}");
        match platform {
            Platform::Genesys => {
                assert!(from("genesys") >= 1, "the platform's trail is merged in: {audit}");
                // Beyond the realtime query's 14 days: the asynchronous audit query finds the same records.
                let long =
                    ["catalog", "audit", "--config", config_b, "--connection", connection, "--json", "--since", "30d"];
                let long = wrapup(args(&long)).await;
                let long: serde_json::Value = serde_json::from_slice(&long.stdout).unwrap();
                let platform_entries = |v: &serde_json::Value| {
                    v["entries"].as_array().unwrap().iter().filter(|e| e["source"] == "genesys").count()
                };
                assert_eq!(platform_entries(&long), from("genesys"), "{long}");
                assert!(long["note"].as_str().unwrap().contains("asynchronous"), "{long}");
            }
            _ => assert!(audit["note"].as_str().unwrap().contains("CXone has no public audit API"), "{audit}"),
        }

        let (mut codes_a, assigned_a) = by_name(&a, platform);
        let (codes_b, assigned_b) = by_name(&b, platform);
        // B keeps the code it made by hand (no prune); everything A has, B now has, by name and fields.
        let extra: Vec<_> = codes_b.iter().filter(|c| !codes_a.contains(c)).map(|c| c.0.clone()).collect();
        assert!(extra.iter().all(|n| n.starts_with("Added by hand")), "{connection}: {extra:?}");
        codes_a.retain(|c| !codes_b.contains(c));
        assert!(codes_a.is_empty(), "{connection}: missing in B: {codes_a:?}");
        // Genesys keeps no order among a queue's codes; a CXone skill's order is its priority.
        let ordered = |mut codes: Vec<String>| {
            if platform == Platform::Genesys {
                codes.sort();
            }
            codes
        };
        for (queue, codes) in &assigned_a {
            let b_codes = assigned_b.iter().find(|(q, _)| q == queue).map(|(_, c)| ordered(c.clone()));
            assert_eq!(b_codes, Some(ordered(codes.clone())), "{connection}: queue {queue} has A's codes");
        }
        assert_eq!(b.catalog_snapshot(platform).duplicate_names, 0, "{connection}: no code was created twice");
    }
    // Ids differ between the orgs; names match.
    let (sa, sb) = (a.catalog_snapshot(Platform::Genesys), b.catalog_snapshot(Platform::Genesys));
    let id = |s: &wrapup_sandbox::CatalogSnapshot, n: &str| s.code(n).unwrap().id.clone();
    assert_ne!(id(&sa, "Issue resolved"), id(&sb, "Issue resolved"));
    a.shutdown().await;
    b.shutdown().await;
}

/// Apply against a hostile org — 409s on a quarter of catalog writes, 5xx, requests that take effect but time out,
/// 429 storms, changes that show only 1.5 s later — killed part-way on each platform, then run again until it
/// converges: the second org ends up matching the first, nothing is created twice, and a plan afterwards is empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_killed_part_way_through_conflicts_throttling_and_late_reads_converges_without_duplicates() {
    let faults = FaultProfile {
        name: "catalog-hostile".into(),
        catalog_conflict_rate: 0.25,
        catalog_propagation_ms: 1_500,
        http_5xx_rate: 0.05,
        timeout_rate: 0.05,
        hang_ms: 1_500,
        storm_rate: 0.01,
        storm_secs: 1,
        ..FaultProfile::calm()
    };
    let a = org(3, 0, FaultProfile::calm()).await;
    let b = org(4, 2, faults).await;
    let dir = tempfile::tempdir().unwrap();
    let config_a = config(dir.path(), "a", &a);
    let config_b = config(dir.path(), "b", &b);
    // One attempt of a call may take 1 s: the hung requests time out (and may have landed).
    let body = std::fs::read_to_string(&config_b)
        .unwrap()
        .replace("[connections.intake]", "request_timeout_ms = 1000\n[connections.intake]");
    let body = body.replace("access_key_secret = ", "request_timeout_ms = 1000\naccess_key_secret = ");
    std::fs::write(&config_b, body).unwrap();
    let (config_a, config_b) = (config_a.to_str().unwrap(), config_b.to_str().unwrap());

    for (connection, platform) in [("genesys", Platform::Genesys), ("cxone", Platform::Cxone)] {
        let file = dir.path().join(format!("{connection}-hostile.toml"));
        let file_s = file.to_str().unwrap();
        let out =
            wrapup(args(&["catalog", "export", "--config", config_a, "--connection", connection, "--out", file_s]))
                .await;
        assert!(out.status.success(), "{}", text(&out));
        let apply = [
            "catalog",
            "apply",
            "--config",
            config_b,
            "--connection",
            connection,
            "--catalog",
            file_s,
            "--yes",
            "--settle-secs",
            "10",
        ];
        // The first run is killed once it has begun writing (the audit trail in B's store says so).
        let mut child = Command::new(env!("CARGO_BIN_EXE_wrapup"))
            .args(apply)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let began = b.catalog_changes_reach(platform, 2);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(30), began).await;
        let _ = child.kill();
        let first = child.wait_with_output().unwrap();
        let writes_before_rerun = b.catalog_changes().iter().filter(|c| c.platform == platform).count();
        assert!(
            writes_before_rerun >= 2,
            "{connection}: the first run had begun writing when it was killed: {}",
            text(&first)
        );

        let mut converged = None;
        for run in 1..=4 {
            let out = wrapup(args(&apply)).await;
            if out.status.success() {
                converged = Some(run);
                break;
            }
            eprintln!("{connection}: run {run} did not converge: {}", text(&out));
        }
        assert!(converged.is_some(), "{connection}: apply converges within four runs after the kill");
        let plan = ["catalog", "plan", "--config", config_b, "--connection", connection, "--catalog", file_s];
        let replanned = wrapup(args(&plan)).await;
        assert_eq!(replanned.status.code(), Some(0), "{connection}: nothing left: {}", text(&replanned));
        let snapshot = b.catalog_snapshot(platform);
        assert_eq!(snapshot.duplicate_names, 0, "{connection}: no code was created twice: {:?}", snapshot.codes);
        let (codes_a, _) = by_name(&a, platform);
        let (codes_b, _) = by_name(&b, platform);
        let missing: Vec<_> = codes_a.iter().filter(|c| !codes_b.contains(c)).collect();
        assert!(missing.is_empty(), "{connection}: B has every code of A with its fields: {missing:?}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// On a PostgreSQL store, a catalog command takes its slice of the connection's request budget like one more
/// replica, and hands it back when it is done: it does not spend the limit that running services already split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_apply_spends_a_slice_of_the_shared_budget_and_hands_it_back() {
    const VAR: &str = "WRAPUP_TEST_POSTGRES_URL";
    let Some(server) = std::env::var(VAR).ok().filter(|u| !u.is_empty()) else {
        eprintln!("skipped: {VAR} is not set (the shared budget lives in PostgreSQL)");
        return;
    };
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("wrapup_catalog_{}_{nanos}", std::process::id());
    let url = wrapup_store::PostgresStore::create_database(&server, &name).await.unwrap();
    let a = org(5, 0, FaultProfile::calm()).await;
    let b = org(6, 1, FaultProfile::calm()).await;
    let dir = tempfile::tempdir().unwrap();
    let config_a = config(dir.path(), "a", &a);
    let config_b = config(dir.path(), "b", &b);
    let body = std::fs::read_to_string(&config_b).unwrap();
    std::fs::write(
        &config_b,
        body.replacen("\n[[connections]]", &format!("\n[store]\nurl = {url:?}\n\n[[connections]]"), 1),
    )
    .unwrap();
    let (config_a, config_b) = (config_a.to_str().unwrap(), config_b.to_str().unwrap());
    let file = dir.path().join("genesys.toml");
    let file_s = file.to_str().unwrap();
    let out =
        wrapup(args(&["catalog", "export", "--config", config_a, "--connection", "genesys", "--out", file_s])).await;
    assert!(out.status.success(), "{}", text(&out));
    let apply = ["catalog", "apply", "--config", config_b, "--connection", "genesys", "--catalog", file_s, "--yes"];
    let applied = wrapup(args(&apply)).await;
    assert!(applied.status.success(), "{}", text(&applied));

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT owner, lease_until, reported_at FROM budget_slices WHERE connection = 'genesys'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "the apply reported as one owner of the budget: {rows:?}");
    let (owner, lease_until, reported_at) = &rows[0];
    assert!(owner.starts_with("wrapup-catalog-"), "{owner}");
    assert!(lease_until <= reported_at, "the slice was handed back when the command ended: {rows:?}");
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM catalog_audit WHERE connection = 'genesys'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(audit >= 3, "the audit trail is in PostgreSQL too");
    pool.close().await;
    a.shutdown().await;
    b.shutdown().await;
    wrapup_store::PostgresStore::drop_database(&server, &name).await.unwrap();
}
