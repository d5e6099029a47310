//! `wrapup catalog export|plan|apply|audit`: a connection's code catalog as a file, by name (see `wrapup_catalog`).
//! `connection.rs` sets a connection up for catalog work, `journal.rs` keeps the audit trail in the store, `audit.rs`
//! lists it.
//!
//! Exit codes follow `terraform plan -detailed-exitcode`: `plan` exits 0 when there is nothing to change, 2 when
//! there is, 1 on an error; `apply` and `export` exit 0 on success and 1 otherwise.

mod audit;
pub(crate) mod connection;
mod journal;

pub use connection::Target;
pub(crate) use connection::{connection, read_live};

use crate::serve::{load_config, open_store};
use anyhow::{bail, Context};
use connection::{release, share_budget, Connection};
use jiff::{SignedDuration, Timestamp};
use journal::StoreJournal;
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use wrapup_catalog::apply::{apply, ApplyOptions, ApplyReport};
use wrapup_catalog::{plan, Plan, PlanContext};
use wrapup_config::{CatalogFile, Config, ConnectionConfig};
use wrapup_core::Platform;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum CatalogCommand {
    /// Write a connection's live catalog as a catalog file (codes and assignments by name, stable order).
    Export(ExportArgs),
    /// Show, by name, what `apply` would change to make the live catalog match a catalog file.
    Plan(PlanArgs),
    /// Make the live catalog match a catalog file (or carry out a saved plan).
    Apply(ApplyArgs),
    /// Who changed the catalog, when and how: wrapup's applies, merged on Genesys with the platform's audit trail.
    Audit(audit::AuditArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub target: Target,
    /// Write the file here instead of to standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: Target,
    /// The catalog file; defaults to the connection's `catalog` in the config.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Delete codes that rules name (with `prune = true` in the file).
    #[arg(long)]
    pub force: bool,
    /// How far back the usage of codes to be removed is counted.
    #[arg(long, default_value_t = 30)]
    pub usage_days: u32,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Save the plan here, for `apply --plan`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// A plan saved by `plan --out`: refused if the live catalog changed since.
    #[arg(long = "plan")]
    pub saved: Option<PathBuf>,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// How long to wait for the platform to show the changes (seconds).
    #[arg(long, default_value_t = 60)]
    pub settle_secs: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub report_json: bool,
}

pub async fn run(command: &CatalogCommand) -> ExitCode {
    let result = match command {
        CatalogCommand::Export(args) => export(args).await,
        CatalogCommand::Plan(args) => plan_command(args).await,
        CatalogCommand::Apply(args) => apply_command(args).await,
        CatalogCommand::Audit(args) => audit::run(args).await,
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(1)
    })
}

async fn export(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.target.config)?;
    let (_, c) = connection(&config, args.target.connection.as_deref())?;
    let slice = share_budget(&config, &c).await;
    let live = read_live(&c).await;
    release(slice).await;
    let live = live?;
    let text = live.to_file().to_toml();
    match &args.out {
        Some(path) => {
            std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "{}: {} codes and {} {} of connection {:?} ({} platform calls)",
                path.display(),
                live.codes.len(),
                live.queues.len(),
                if live.platform == Platform::Genesys { "queues" } else { "skills" },
                c.name,
                (c.stats)().calls_total
            );
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn catalog_file(args: &PlanArgs, conn: &ConnectionConfig) -> anyhow::Result<CatalogFile> {
    let path = args.catalog.clone().or_else(|| conn.catalog.clone()).with_context(|| {
        format!("no catalog file: pass --catalog, or set `catalog` on connection {:?} in the config", conn.name)
    })?;
    CatalogFile::load(&path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Lower-cased code name → the rules (of this connection) that name it.
fn rules_naming(config: &Config, conn: &ConnectionConfig) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rule in config.rules.rules() {
        if rule.applies_to(&conn.name, Some(conn.kind)) {
            map.entry(rule.code.to_lowercase()).or_default().push(rule.name.clone());
        }
    }
    map
}

/// The plan of `file` against the live catalog, with the usage of what it removes (one more query, only then), and
/// the live catalog it was made from.
async fn make_plan(
    config: &Config,
    conn: &ConnectionConfig,
    c: &Connection,
    file: &CatalogFile,
    args: &PlanArgs,
) -> anyhow::Result<(PlanContext, Plan, wrapup_catalog::LiveCatalog)> {
    let live = read_live(c).await?;
    let now = Timestamp::now();
    let mut cx = PlanContext {
        connection: conn.name.clone(),
        rules_naming: rules_naming(config, conn),
        usage: None,
        force: args.force,
        now,
    };
    let mut made = plan(file, &live, &cx)?;
    // Usage is one more query, worth it only when something is taken away.
    let removes = made.changes.iter().any(|c| match c {
        wrapup_catalog::Change::Delete { .. } | wrapup_catalog::Change::Unassign { .. } => true,
        wrapup_catalog::Change::SetSkill { removed, .. } => !removed.is_empty(),
        _ => false,
    });
    if removes {
        let since = now - SignedDuration::from_hours(24 * i64::from(args.usage_days.clamp(1, 30)));
        match c.api.usage(since, now).await {
            Ok(usage) => {
                cx.usage = Some(usage);
                made = plan(file, &live, &cx)?;
            }
            Err(e) => eprintln!("warning: the usage of codes could not be read ({e}); the plan shows rules only"),
        }
    }
    Ok((cx, made, live))
}

async fn plan_command(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.target.config)?;
    let (conn, c) = connection(&config, args.target.connection.as_deref())?;
    let file = catalog_file(args, &conn)?;
    let slice = share_budget(&config, &c).await;
    let made = make_plan(&config, &conn, &c, &file, args).await;
    release(slice).await;
    let (_, made, _) = made?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&made)?);
    } else {
        print!("{}", made.render());
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&made)?)
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("plan saved to {} (apply it with `wrapup catalog apply --plan {}`)", out.display(), out.display());
    }
    Ok(if made.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

async fn apply_command(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.plan.target.config)?;
    let saved: Option<Plan> = match &args.saved {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(serde_json::from_str(&text).with_context(|| format!("{} is not a saved plan", path.display()))?)
        }
        None => None,
    };
    let connection_name = args.plan.target.connection.clone().or_else(|| saved.as_ref().map(|p| p.connection.clone()));
    let (conn, c) = connection(&config, connection_name.as_deref())?;
    let slice = share_budget(&config, &c).await;
    let result = apply_on(args, &config, saved, &conn, &c).await;
    release(slice).await;
    result
}

/// `apply` once the connection is set up (and holds its slice of a shared budget).
async fn apply_on(
    args: &ApplyArgs,
    config: &Config,
    saved: Option<Plan>,
    conn: &ConnectionConfig,
    c: &Connection,
) -> anyhow::Result<ExitCode> {
    let (file, cx, shown, fresh) = match &saved {
        Some(p) => {
            let file = CatalogFile::parse(&p.desired, "the saved plan").map_err(|e| anyhow::anyhow!("{e}"))?;
            let cx = PlanContext {
                connection: conn.name.clone(),
                rules_naming: rules_naming(config, conn),
                usage: None,
                force: p.force,
                now: Timestamp::now(),
            };
            (file, cx, p.clone(), None)
        }
        None => {
            let file = catalog_file(&args.plan, conn)?;
            let (cx, made, live) = make_plan(config, conn, c, &file, &args.plan).await?;
            // Without --yes, the plan's read may be as old as the user's pause at the prompt: read again.
            (file, cx, made, args.yes.then_some(live))
        }
    };
    // With --report-json, standard output is the report alone.
    if args.report_json {
        eprint!("{}", shown.render());
    } else {
        print!("{}", shown.render());
    }
    if shown.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm()? {
        eprintln!("nothing applied");
        return Ok(ExitCode::from(1));
    }
    let store = open_store(config).await?;
    let journal = StoreJournal::new(store, &conn.name, if saved.is_some() { "saved plan" } else { "catalog file" });
    journal.begin(&shown).await.map_err(|e| anyhow::anyhow!("the audit trail could not be written: {e}"))?;
    let opts = ApplyOptions { settle_timeout: Duration::from_secs(args.settle_secs), ..ApplyOptions::default() };
    let started = std::time::Instant::now();
    let before = (c.stats)();
    let result = apply(c.api.as_ref(), &file, &cx, saved.as_ref(), fresh, &journal, &opts).await;
    let calls = (c.stats)().calls_total - before.calls_total;
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            journal.end(&format!("refused: {e}")).await;
            return Err(e.into());
        }
    };
    journal.end(if report.remaining == 0 && report.failed.is_empty() { "converged" } else { "incomplete" }).await;
    print_report(&report, calls, started.elapsed(), args.report_json)?;
    Ok(if report.remaining == 0 && report.failed.is_empty() && report.settled {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_report(report: &ApplyReport, calls: u64, elapsed: Duration, json: bool) -> anyhow::Result<()> {
    if json {
        let mut value = serde_json::to_value(report)?;
        value["calls"] = calls.into();
        value["elapsed_ms"] = (elapsed.as_millis() as u64).into();
        println!("{}", serde_json::to_string(&value)?);
        return Ok(());
    }
    println!(
        "\nApplied {} change(s) in {} pass(es), {:.1} s, {} platform call(s) (reads included); 429s waited out: {}, \
         409s re-planned: {}, transient failures retried: {}.",
        report.applied,
        report.passes,
        elapsed.as_secs_f64(),
        calls,
        report.rate_limited,
        report.conflicts,
        report.retried
    );
    if report.settled {
        println!("The platform shows every change (waited {} ms for it).", report.settle_ms);
    } else {
        println!("Not every change showed on the platform within the wait; run `wrapup catalog plan` to see.");
    }
    for f in &report.failed {
        println!("failed: {f}");
    }
    Ok(())
}

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("apply needs --yes when its input is not a terminal");
    }
    print!("\nApply these changes? Only 'yes' is accepted: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}
