use std::process::Command;
use wrapup_clock::ScaledClock;
use wrapup_sandbox::{Sandbox, SandboxConfig};

/// `wrapup validate` checks the file, then every rule's code against the live catalog, with locations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_reports_codes_missing_from_the_live_catalog_with_their_location() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cfg = SandboxConfig { traffic_autostart: false, ..SandboxConfig::default() };
    let sandbox = Sandbox::start(cfg, listener, ScaledClock::system().shared()).await.unwrap();
    let (id, secret) = sandbox.credentials()[0].clone();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, rules: &str| {
        let path = dir.path().join(name);
        let text = format!(
            r#"data_dir = "data"
[[connections]]
name = "sandbox"
kind = "genesys"
base_url = "{}"
client_id = "{id}"
client_secret = "literal:{secret}"
[connections.intake]
api_key = "literal:k"
{rules}"#,
            sandbox.base_url()
        );
        std::fs::write(&path, text).unwrap();
        path
    };
    let good = write(
        "good.toml",
        "[[rules]]\nname = \"support\"\ncode = \"Issue resolved\"\n[rules.when]\nqueue = \"Support\"\n",
    );
    let bad = write(
        "bad.toml",
        "[[rules]]\nname = \"support\"\ncode = \"Issue resolved\"\n[rules.when]\nqueue = \"Support\"\n\n\
         [[rules]]\nname = \"sales\"\ncode = \"No such code\"\n[rules.when]\nqueue = \"Sales\"\n\n\
         [[rules]]\nname = \"billing\"\ncode = \"Issue resolved\"\n[rules.when]\nqueue = \"Billing\"\n",
    );
    let run = |path: &std::path::Path| {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_wrapup")).arg("validate").arg("--config").arg(&path).output().unwrap()
        })
    };
    let ok = run(&good).await.unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stdout));
    let out = run(&bad).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("bad.toml:16:") && stdout.contains("bad.toml:22:"),
        "the unknown code is located: {stdout}"
    );
    assert!(stdout.contains("No such code"), "{stdout}");
    assert!(stdout.contains("not assigned") || stdout.contains("Billing"), "the unassigned code is named: {stdout}");
    assert!(!stdout.contains(&secret) && !String::from_utf8_lossy(&out.stderr).contains(&secret));

    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "data_dir = 1\n[[connections]]\nname = \"x\"\nkind = \"genesys\"\nbogus = true\n").unwrap();
    let out = run(&broken).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("broken.toml:1:") && stdout.contains("broken.toml:5:"), "every problem: {stdout}");
    sandbox.shutdown().await;
}

/// `wrapup migrate` brings the store's schema to this build's; `serve --no-migrate` refuses a store that lacks it.
#[test]
fn serve_without_migrating_refuses_an_unmigrated_store_and_migrate_fixes_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wrapup.toml");
    std::fs::write(&config, "data_dir = \"data\"\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let wrapup = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_wrapup")).args(args).output().unwrap();
    let config = config.to_str().unwrap();

    let refused = wrapup(&["serve", "--no-migrate", "--config", config]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("wrapup migrate"), "{stderr}");

    let migrated = wrapup(&["migrate", "--config", config]);
    let stdout = String::from_utf8_lossy(&migrated.stdout);
    assert!(migrated.status.success() && stdout.contains("applied migrations"), "{stdout}");
    let again = wrapup(&["migrate", "--config", config]);
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(again.status.success() && stdout.contains("the schema is current"), "{stdout}");
}

/// `wrapup store copy` moves what a run left in its SQLite file into a new PostgreSQL database, every leg and ledger
/// line (checked by the command before it commits), and refuses a second copy into the now non-empty database.
#[test]
fn store_copy_moves_a_demo_run_from_sqlite_to_postgres() {
    const VAR: &str = "WRAPUP_TEST_POSTGRES_URL";
    let wrapup = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_wrapup")).args(args).output().unwrap();
    let refused = wrapup(&["store", "copy", "--from", "/nowhere/wrapup.db", "--to", "postgres://127.0.0.1/x"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("is not a file"), "{stderr}");
    let Some(server) = std::env::var(VAR).ok().filter(|u| !u.is_empty()) else {
        eprintln!("skipped: {VAR} is not set (copying into PostgreSQL needs a database)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let demo = wrapup(&["demo", "--duration", "4", "--json", "--data-dir", data]);
    assert!(demo.status.success(), "{}", String::from_utf8_lossy(&demo.stderr));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("wrapup_copy_{}_{nanos}", std::process::id());
    let url = runtime.block_on(wrapup_store::PostgresStore::create_database(&server, &name)).unwrap();
    let from = format!("sqlite://{data}/wrapup.db");

    let copied = wrapup(&["store", "copy", "--json", "--from", &from, "--to", &url]);
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));
    let report: serde_json::Value = serde_json::from_slice(&copied.stdout).unwrap();
    let rows = |table: &str| {
        report["tables"].as_array().unwrap().iter().find(|t| t["table"] == table).unwrap()["rows"].as_u64().unwrap()
    };
    assert!(rows("legs") > 0 && rows("ledger") > rows("legs") && rows("inbox") > 0, "{report}");
    let again = wrapup(&["store", "copy", "--from", &from, "--to", &url]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && stderr.contains("already holds"), "{stderr}");
    runtime.block_on(wrapup_store::PostgresStore::drop_database(&server, &name)).unwrap();
}
