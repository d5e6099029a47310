//! `catalog`: a catalog promotion between two sandbox orgs of 300 generated queues (skills) and 200 generated codes,
//! through the request budget (issue: "a plan against a sandbox org of 300 queues and 200 codes applies inside the
//! request budget, 429 share ≤ 1 %, no failed change").
//!
//! - **Org A** (seed `--seed`): `CatalogShape { queues: 300, codes: 200, variant: 0 }`. Its live catalog is read with
//!   `CatalogApi::read` and turned into a file (`LiveCatalog::to_file`), as `wrapup catalog export` does, with
//!   `prune = true` so that the promotion also removes what A does not have.
//! - **Org B** (seed `--seed + 1`): `CatalogShape { queues: 300, codes: 150, variant: 1 }`. It lacks `Code 151`…
//!   `Code 200`; its generated queues take their codes modulo 150 instead of 200, so most of them miss some of A's
//!   assignments and hold others A does not have; and variant 1 perturbs the configured part (two codes missing, one
//!   code added by hand, one description changed, one assignment removed, one added). The plan creates, updates,
//!   deletes, assigns and unassigns: hundreds of changes.
//! - Both orgs run the sandbox's normal rate limit (`--rate-limit`, default 300 requests per minute per token,
//!   `--window` fixed by default), traffic off. The clients are built as the CLI builds them (a config connection →
//!   `wrapup_service::build`), so every call goes through the connection's request budget (backfill priority: the
//!   even pace, paused for a 429's `Retry-After`), with the budget equal to the limit.
//! - Measured: wall time of the export (read A), of read B + plan, of `apply` (which reads B again, writes, and reads
//!   every change back); the client's calls and 429s (`CallStats`) per step; calls ÷ changes; the share of 429s;
//!   failed changes; and afterwards, from the sandbox's catalog truth, whether B matches A by name (code names with
//!   their fields, and each queue's codes as a set; no duplicate names). On CXone a disposition only B has counts as
//!   removed when it is inactive: the platform has no delete, apply deactivates it.
//! - **Terraform, computed, not measured**: the Genesys provider manages one `genesyscloud_routing_wrapupcode` per
//!   code and one `genesyscloud_routing_queue` (with `wrapup_codes`) per queue. For the same changes it needs at least
//!   one read (refresh) per managed resource plus one write per changed resource: `codes + queues in the file +
//!   changed codes + changed queues`. That is a lower bound (a queue's refresh reads the queue and its codes, paged);
//!   we compare our calls with it. A second, tighter figure follows the provider's own update of a queue's codes
//!   (`updateQueueWrapupCodes` in `terraform-provider-genesyscloud`: it reads the queue's codes, sends one `DELETE` per
//!   removed code, and adds in chunks of 100): `terraform_update_path` = the refreshes + one write per changed code +
//!   per changed queue one read of its codes, one `DELETE` per code removed and one `POST` per 100 codes added; still
//!   a lower bound (no queue `PUT`, no read after each write). CXone has no Terraform provider; with `--platform cxone` the same bound is shown
//!   for a provider of the same shape (one resource per disposition, one per skill), as a yardstick only.

use super::{round, BenchArgs, BenchPlatform, Report};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;
use wrapup_catalog::api::CatalogApi;
use wrapup_catalog::apply::{apply, ApplyOptions, NoJournal};
use wrapup_catalog::{plan, Change, Plan, PlanContext};
use wrapup_clock::ScaledClock;
use wrapup_config::{CatalogFile, Config};
use wrapup_connectors::CallStats;
use wrapup_core::clock::SharedClock;
use wrapup_sandbox::{CatalogShape, Platform, RateLimit, Sandbox, SandboxConfig, SandboxHandle};

/// The org the catalog is exported from.
pub const SHAPE_A: CatalogShape = CatalogShape { queues: 300, codes: 200, variant: 0 };
/// The org it is promoted to (see the module docs).
pub const SHAPE_B: CatalogShape = CatalogShape { queues: 300, codes: 150, variant: 1 };

/// The 429 share the issue allows.
const MAX_429_SHARE: f64 = 0.01;

pub async fn run(args: &BenchArgs) -> anyhow::Result<Report> {
    let platform = match args.platform {
        BenchPlatform::Genesys => Platform::Genesys,
        BenchPlatform::Cxone => Platform::Cxone,
    };
    let quiet = args.json;
    let rpm = args.rate_limit;
    let a = org(args.seed, SHAPE_A, rpm, args.window).await?;
    let b = org(args.seed + 1, SHAPE_B, rpm, args.window).await?;
    let dir = tempfile::tempdir()?;
    let conn_a = connection(&a, platform, rpm, dir.path())?;
    let conn_b = connection(&b, platform, rpm, dir.path())?;

    // 1. Export A.
    let started = Instant::now();
    let live_a = conn_a.api.read(&progress("export: reading A", quiet)).await?;
    let export_ms = started.elapsed().as_millis() as u64;
    let export_calls = (conn_a.stats)();
    let mut file: CatalogFile = live_a.to_file();
    // A promotion: B is to become A, so what A lacks goes too (no rule names anything here: nothing is kept).
    file.prune = true;

    // 2. Read B and plan.
    let cx = PlanContext { connection: "b".into(), now: jiff::Timestamp::now(), ..PlanContext::default() };
    let started = Instant::now();
    let live_b = conn_b.api.read(&progress("plan: reading B", quiet)).await?;
    let planned = plan(&file, &live_b, &cx)?;
    let plan_ms = started.elapsed().as_millis() as u64;
    let plan_calls = (conn_b.stats)();

    // 3. Apply to B from the plan's read (as `wrapup catalog apply --yes` does): writes, then reads every touched
    // object back.
    if !quiet {
        eprintln!("[apply: {} changes to B ...]", planned.changes.len());
    }
    let sandbox_before = sandbox_calls(&b, platform);
    let started = Instant::now();
    let fresh = Some(live_b.clone());
    let applied = apply(conn_b.api.as_ref(), &file, &cx, None, fresh, &NoJournal, &ApplyOptions::default()).await?;
    let apply_ms = started.elapsed().as_millis() as u64;
    let after = (conn_b.stats)();
    let apply_calls = after.calls_total - plan_calls.calls_total;
    let apply_429 = after.rate_limited_total - plan_calls.rate_limited_total;
    let sandbox_apply = diff(&sandbox_calls(&b, platform), &sandbox_before);

    // 4. The sandbox's truth: does B now match A by name?
    let (snap_a, snap_b) = (a.catalog_snapshot(platform), b.catalog_snapshot(platform));
    let (by_name_a, mut by_name_b) = (by_name(&snap_a), by_name(&snap_b));
    // CXone cannot delete a disposition, only deactivate it (`delete_code`): one that only B has and that is
    // inactive is as gone as the platform allows, and is counted apart rather than as a mismatch.
    let deactivated_only_in_b: Vec<String> = by_name_b
        .0
        .iter()
        .filter(|(n, f)| !by_name_a.0.contains_key(*n) && f.get("isActive") == Some(&serde_json::Value::Bool(false)))
        .map(|(n, _)| n.clone())
        .collect();
    for n in &deactivated_only_in_b {
        by_name_b.0.remove(n);
    }
    let matches = by_name_a == by_name_b && snap_b.duplicate_names == 0;
    let mismatch = describe_mismatch(&by_name_a, &by_name_b);

    a.shutdown().await;
    b.shutdown().await;

    // Figures.
    let counts = planned.counts();
    let changes = planned.changes.len() as u64;
    let changed = changed_resources(&planned);
    let resources = (file.codes.len() + file.queues.len()) as u64;
    let tf_min = resources + changed.codes + changed.queues;
    let tf_path = resources + changed.codes + changed.queues + changed.unassigned + changed.assign_chunks;
    let plan_read_calls = plan_calls.calls_total;
    let reads_apply: u64 = sandbox_apply.iter().filter(|(k, _)| k.starts_with("GET ")).map(|(_, n)| n).sum();
    let writes_apply: u64 = sandbox_apply.iter().filter(|(k, _)| !k.starts_with("GET ")).map(|(_, n)| n).sum();
    let share = |limited: u64, calls: u64| if calls == 0 { 0.0 } else { round(limited as f64 / calls as f64, 4) };
    let apply_429_share = share(apply_429, apply_calls);
    let total_calls = after.calls_total;
    let total_429_share = share(after.rate_limited_total, total_calls);
    let ratio = |ours: u64| if tf_min == 0 { None } else { Some(round(ours as f64 / tf_min as f64, 2)) };
    let ratio_path = |ours: u64| if tf_path == 0 { None } else { Some(round(ours as f64 / tf_path as f64, 2)) };
    let per_change = |calls: u64| if changes == 0 { None } else { Some(round(calls as f64 / changes as f64, 2)) };
    let goal_met = applied.failed.is_empty() && apply_429_share <= MAX_429_SHARE && matches && applied.settled;
    let name = if platform == Platform::Genesys { "genesys" } else { "cxone" };
    let containers = if platform == Platform::Genesys { "queues" } else { "skills" };

    let mut r = Report::new("catalog");
    r.field("platform", name);
    r.field("rate_limit_per_minute", rpm);
    r.field("window", format!("{:?}", args.window).to_lowercase());
    r.field(
        "orgs",
        serde_json::json!({
            "a": {"seed": args.seed, "queues": SHAPE_A.queues, "codes": SHAPE_A.codes, "variant": SHAPE_A.variant,
                  "live_codes": live_a.codes.len(), "live_queues": live_a.queues.len()},
            "b": {"seed": args.seed + 1, "queues": SHAPE_B.queues, "codes": SHAPE_B.codes, "variant": SHAPE_B.variant,
                  "live_codes": live_b.codes.len(), "live_queues": live_b.queues.len()},
        }),
    );
    r.field("file", serde_json::json!({"codes": file.codes.len(), containers: file.queues.len(), "prune": file.prune}));
    r.field("plan_changes", changes);
    r.field("plan_counts", serde_json::to_value(counts)?);
    r.field("changed_codes", changed.codes);
    r.field(format!("changed_{containers}").as_str(), changed.queues);
    r.field("export_ms", export_ms);
    r.field("export_calls", export_calls.calls_total);
    r.field("read_plan_ms", plan_ms);
    r.field("read_plan_calls", plan_read_calls);
    r.field("apply_ms", apply_ms);
    r.field("apply_calls", apply_calls);
    r.field("apply_calls_sandbox", serde_json::json!({"reads": reads_apply, "writes": writes_apply}));
    r.field("apply_calls_by_endpoint", serde_json::to_value(&sandbox_apply)?);
    r.field("apply_429", apply_429);
    r.field("apply_429_share", apply_429_share);
    r.field("total_calls_b", total_calls);
    r.field("total_429_share_b", total_429_share);
    r.field("calls_per_change", per_change(apply_calls));
    r.field("calls_per_change_with_plan", per_change(plan_read_calls + apply_calls));
    r.field("apply_report", serde_json::to_value(&applied)?);
    r.field("failed_changes", applied.failed.len());
    r.field("matches", matches);
    r.field("duplicate_names_b", snap_b.duplicate_names);
    r.field("deactivated_only_in_b", deactivated_only_in_b.clone());
    r.field("mismatch", mismatch.clone());
    r.field(
        "terraform_lower_bound",
        serde_json::json!({
            "computed_not_measured": true,
            "resources": resources,
            "reads": resources,
            "writes": changed.codes + changed.queues,
            "calls": tf_min,
            "ours_apply_calls": apply_calls,
            "ratio_apply": ratio(apply_calls),
            "ours_plan_and_apply_calls": plan_read_calls + apply_calls,
            "ratio_plan_and_apply": ratio(plan_read_calls + apply_calls),
        }),
    );
    if platform == Platform::Genesys {
        r.field(
            "terraform_update_path",
            serde_json::json!({
                "computed_not_measured": true,
                "calls": tf_path,
                "queue_code_reads": changed.queues,
                "unassign_deletes": changed.unassigned,
                "assign_posts": changed.assign_chunks,
                "ratio_apply": ratio_path(apply_calls),
                "ratio_plan_and_apply": ratio_path(plan_read_calls + apply_calls),
            }),
        );
    }
    r.field(
        "goals",
        serde_json::json!({"max_429_share": MAX_429_SHARE, "failed_changes": 0, "matches": true, "met": goal_met}),
    );

    r.row("platform, limit", format!("{name}, {rpm} requests/min per token ({:?} window)", args.window));
    r.row(
        "org A -> org B",
        format!(
            "{} codes, {} {containers} -> {} codes, {} {containers} (B: codes 150, variant 1)",
            live_a.codes.len(),
            live_a.queues.len(),
            live_b.codes.len(),
            live_b.queues.len()
        ),
    );
    r.row(
        "plan: changes (create/update/delete; assign/unassign codes)",
        format!(
            "{changes} ({}/{}/{}; {}/{})",
            counts.create, counts.update, counts.delete, counts.assign, counts.unassign
        ),
    );
    r.row(format!("changed resources (codes + {containers})"), format!("{} + {}", changed.codes, changed.queues));
    r.row("export A: wall s, calls", format!("{:.1}, {}", export_ms as f64 / 1000.0, export_calls.calls_total));
    r.row("read B + plan: wall s, calls", format!("{:.1}, {plan_read_calls}", plan_ms as f64 / 1000.0));
    r.row(
        "apply: wall s, calls (sandbox: reads/writes)",
        format!("{:.1}, {apply_calls} ({reads_apply}/{writes_apply})", apply_ms as f64 / 1000.0),
    );
    r.row(
        "apply: passes, applied, failed",
        format!("{}, {}, {}", applied.passes, applied.applied, applied.failed.len()),
    );
    r.row("apply: settled (read-back wait ms)", format!("{} ({})", applied.settled, applied.settle_ms));
    r.row(
        "apply calls per change (with the plan's read)",
        format!("{:?} ({:?})", per_change(apply_calls), per_change(plan_read_calls + apply_calls)),
    );
    r.row("429s in apply (share; goal <= 1%)", format!("{apply_429} ({:.2}%)", apply_429_share * 100.0));
    r.row("B matches A by name", format!("{matches} (duplicate names {})", snap_b.duplicate_names));
    if !deactivated_only_in_b.is_empty() {
        r.row("  deactivated in B (CXone's delete), not in A", deactivated_only_in_b.join(", "));
    }
    if !mismatch.is_empty() {
        r.row("  mismatch", mismatch.join("; "));
    }
    for f in &applied.failed {
        r.row("  failed", f);
    }
    r.row(
        "Terraform lower bound (computed): reads + writes",
        format!("{resources} + {} = {tf_min}", changed.codes + changed.queues),
    );
    r.row(
        "ours / Terraform: apply (plan + apply)",
        format!("{} ({})", super::show(ratio(apply_calls)), super::show(ratio(plan_read_calls + apply_calls))),
    );
    if platform == Platform::Genesys {
        r.row(
            "Terraform's queue update path (computed), ours / it",
            format!(
                "{tf_path}: {} ({})",
                super::show(ratio_path(apply_calls)),
                super::show(ratio_path(plan_read_calls + apply_calls))
            ),
        );
    }
    r.row("goals met", goal_met);
    Ok(r)
}

/// A sandbox org with a generated catalog, the normal per-token rate limit on both platforms, traffic off.
async fn org(
    seed: u64,
    shape: CatalogShape,
    rpm: u32,
    window: wrapup_sandbox::RateWindow,
) -> anyhow::Result<SandboxHandle> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cfg = SandboxConfig {
        seed,
        traffic_autostart: false,
        rate_limit_per_minute: rpm,
        rate_limit_window: window,
        catalog: shape,
        ..SandboxConfig::default()
    };
    let clock: SharedClock = ScaledClock::system().shared();
    let sb = Sandbox::start(cfg, listener, clock).await?;
    // CXone publishes no limit and the sandbox's BU has none by default; give it the same one so the budget matters.
    sb.set_cxone_rate_limit(RateLimit { per_minute: rpm, window });
    Ok(sb)
}

/// A connection's catalog API and its call counts, built from a config connection exactly as `wrapup catalog` does.
struct Connection {
    api: Box<dyn CatalogApi>,
    stats: Box<dyn Fn() -> CallStats + Send + Sync>,
}

fn connection(sb: &SandboxHandle, platform: Platform, rpm: u32, dir: &std::path::Path) -> anyhow::Result<Connection> {
    let text = match platform {
        Platform::Genesys => {
            let (id, secret) = sb.credentials()[0].clone();
            format!(
                "[[connections]]\nname = \"org\"\nkind = \"genesys\"\nbase_url = \"{}\"\nclient_id = \"{id}\"\n\
                 client_secret = \"literal:{secret}\"\nrequests_per_minute = {rpm}\n[connections.intake]\n\
                 api_key = \"literal:k\"\n",
                sb.base_url()
            )
        }
        Platform::Cxone => {
            let c = sb.cxone_credentials();
            format!(
                "[[connections]]\nname = \"org\"\nkind = \"cxone\"\nbase_url = \"{}\"\nclient_id = \"{}\"\n\
                 client_secret = \"literal:{}\"\naccess_key_id = \"{}\"\naccess_key_secret = \"literal:{}\"\n\
                 requests_per_minute = {rpm}\n",
                sb.base_url(),
                c.client_id,
                c.client_secret,
                c.access_key_id,
                c.access_key_secret
            )
        }
    };
    let text = format!("data_dir = {:?}\n{text}", dir.display().to_string());
    let config = Config::parse(&text, "bench-catalog.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    let conn = &config.connections[0];
    let clock: SharedClock = Arc::new(ScaledClock::system());
    Ok(match platform {
        Platform::Genesys => {
            let (_, client) = wrapup_service::build::connection_for(conn, clock)?;
            let client = client.ok_or_else(|| anyhow::anyhow!("a Genesys connection without a client"))?;
            let stats = client.clone();
            Connection { api: Box::new(client), stats: Box::new(move || stats.stats()) }
        }
        Platform::Cxone => {
            let client = wrapup_service::build::cxone_platform(conn, clock)?.client().clone();
            let stats = client.clone();
            Connection { api: Box::new(client), stats: Box::new(move || stats.stats()) }
        }
    })
}

fn progress(what: &'static str, quiet: bool) -> impl Fn(usize, usize) + Send + Sync {
    move |done, total| {
        if !quiet && (done % 25 == 0 || done == total) {
            eprint!("\r[{what}] {done}/{total}");
            if done == total {
                eprintln!();
            }
        }
    }
}

/// The sandbox's own count of requests by `"METHOD /path"`, every status.
fn sandbox_calls(sb: &SandboxHandle, platform: Platform) -> BTreeMap<String, u64> {
    let api = match platform {
        Platform::Genesys => sb.report().api,
        Platform::Cxone => sb.cxone_report().api,
    };
    api.by_endpoint.into_iter().map(|(k, statuses)| (k, statuses.values().sum())).collect()
}

fn diff(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after.iter().map(|(k, n)| (k.clone(), n - before.get(k).copied().unwrap_or(0))).filter(|(_, n)| *n > 0).collect()
}

/// A catalog by name: code names with their fields, and each queue's (skill's) code names as a set (Genesys keeps
/// assignment order, which carries no meaning there; on CXone the order is the priority, so it is kept).
type ByName = (BTreeMap<String, BTreeMap<String, serde_json::Value>>, BTreeMap<String, Vec<String>>);

fn by_name(s: &wrapup_sandbox::CatalogSnapshot) -> ByName {
    let codes = s.codes.iter().map(|c| (c.name.clone(), c.fields.clone())).collect();
    let queues = s
        .assignments
        .iter()
        .map(|(q, codes)| {
            let mut codes = codes.clone();
            if s.platform == Platform::Genesys {
                codes.sort();
            }
            (q.clone(), codes)
        })
        .collect();
    (codes, queues)
}

/// Up to ten differences between A and B by name, for the report.
fn describe_mismatch(a: &ByName, b: &ByName) -> Vec<String> {
    let mut out = Vec::new();
    let names_a: BTreeSet<&String> = a.0.keys().collect();
    let names_b: BTreeSet<&String> = b.0.keys().collect();
    for n in names_a.difference(&names_b) {
        out.push(format!("code {n:?} missing in B"));
    }
    for n in names_b.difference(&names_a) {
        out.push(format!("code {n:?} only in B"));
    }
    for (n, fields) in &a.0 {
        if b.0.get(n).is_some_and(|f| f != fields) {
            out.push(format!("code {n:?}: fields {fields:?} in A, {:?} in B", b.0[n]));
        }
    }
    for (q, codes) in &a.1 {
        if b.1.get(q) != Some(codes) {
            out.push(format!("queue {q:?}: {codes:?} in A, {:?} in B", b.1.get(q)));
        }
    }
    out.truncate(10);
    out
}

struct Changed {
    codes: u64,
    queues: u64,
    /// Codes removed from queues (the Genesys API removes one per request).
    unassigned: u64,
    /// `POST`s of added codes at the provider's 100 per request.
    assign_chunks: u64,
}

/// Distinct codes and queues (skills) the plan writes: the resources Terraform would write.
fn changed_resources(p: &Plan) -> Changed {
    let mut codes = BTreeSet::new();
    let mut queues = BTreeSet::new();
    let (mut unassigned, mut assign_chunks) = (0, 0);
    for c in &p.changes {
        match c {
            Change::Create { code, .. } | Change::Update { code, .. } | Change::Delete { code, .. } => {
                codes.insert(code.to_lowercase());
            }
            Change::Assign { queue, codes, .. } => {
                queues.insert(queue.clone());
                assign_chunks += codes.len().div_ceil(100) as u64;
            }
            Change::Unassign { queue, codes, .. } => {
                queues.insert(queue.clone());
                unassigned += codes.len() as u64;
            }
            Change::SetSkill { skill, .. } => {
                queues.insert(skill.clone());
            }
        }
    }
    Changed { codes: codes.len() as u64, queues: queues.len() as u64, unassigned, assign_chunks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrapup_catalog::plan::Impact;

    #[test]
    fn bench_catalog_counts_each_changed_resource_once() {
        let p = Plan {
            version: 1,
            connection: "b".into(),
            platform: wrapup_core::Platform::Genesys,
            made_at: jiff::Timestamp::UNIX_EPOCH,
            desired: String::new(),
            force: false,
            changes: vec![
                Change::Create { code: "X".into(), fields: Default::default() },
                Change::Delete { code: "Y".into(), id: "y".into(), impact: Impact::default() },
                Change::Assign { queue: "Q".into(), queue_id: "q".into(), codes: vec!["X".into()] },
                Change::Unassign {
                    queue: "Q".into(),
                    queue_id: "q".into(),
                    codes: vec!["Z".into(), "W".into()],
                    impact: vec![],
                },
                Change::Assign { queue: "R".into(), queue_id: "r".into(), codes: vec!["X".into()] },
            ],
            kept: vec![],
            touched: vec![],
            fingerprint: String::new(),
        };
        let c = changed_resources(&p);
        assert_eq!((c.codes, c.queues, c.unassigned, c.assign_chunks), (2, 2, 2, 2));
    }
}
