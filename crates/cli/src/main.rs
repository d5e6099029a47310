//! The `wrapup` binary: parse the command line, dispatch to a subcommand module.

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use wrapup_bench as bench;
use wrapup_cli::{catalog, logging, outbox, reconcile, report, review, serve, simulate, store_copy, validate};
use wrapup_demo as demo;

#[derive(Parser)]
#[command(name = "wrapup", version, about = "Meaningful wrap-up codes for every contact-center interaction.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sandbox + service + traffic on embedded SQLite, ending in a summary.
    Demo(demo::DemoArgs),
    /// Run the service with a configuration file.
    Serve(serve::RunArgs),
    /// Bring the configured store's schema to this build's (`serve` does it at start unless --no-migrate).
    Migrate(serve::ServeArgs),
    /// Work on a store as a whole: `store copy` moves a deployment from SQLite to PostgreSQL.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Check a configuration file (its codes against each connection's live catalog, and drift from catalog files).
    Validate(validate::ValidateArgs),
    /// The code catalog as a file, by name: `export` a connection's, `plan` a file against one, `apply` it.
    #[command(subcommand)]
    Catalog(catalog::CatalogCommand),
    /// Replay recorded legs through candidate rules, offline: what they would have decided, against what the store
    /// decided and what agents chose, per rule (docs/SIMULATE.md).
    Simulate(simulate::SimulateArgs),
    /// Outcomes, coverage, usage by code, latency, calls per applied code and shadow agreement per rule, from the
    /// store, per connection; on Genesys checked against the platform's aggregates (docs/REPORT.md).
    Report(report::ReportArgs),
    /// The outbox's deliveries to the sinks: `list`, `retry` dead letters, `replay` what was delivered, `sinks`.
    #[command(subcommand)]
    Outbox(outbox::OutboxCommand),
    /// Print the OpenAPI 3.1 document of the service's HTTP API (the one `/api/v1/openapi.json` serves).
    Openapi,
    /// The review queue: `list` and `show` the legs that need a person, `resolve` one with a code, `dismiss` one
    /// with a note (docs/REVIEW.md).
    #[command(subcommand)]
    Review(review::ReviewCommand),
    /// One reconciler pass over every connection: find legs whose events were lost, confirm our writes.
    Reconcile(reconcile::ReconcileArgs),
    /// Run the Genesys Cloud sandbox (a local emulator with a simulated contact center).
    Sandbox(wrapup_sandbox::SandboxArgs),
    /// Benchmark scenarios (sandbox + service in this process): efficiency, saturation, pooled, ingest, lookup, memory,
    /// naive.
    Bench(bench::BenchArgs),
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy every event, leg, ledger line and cached catalog of a SQLite store into an empty PostgreSQL database.
    Copy(store_copy::CopyArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Demo(args) => {
                logging::init("warn");
                let result = demo::run(&args).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&result.to_json())?);
                } else {
                    print!("{}", result.table());
                }
                if result.violations() > 0 {
                    eprintln!("error: the sandbox reports {} invariant violation(s)", result.violations());
                    return Ok(ExitCode::from(1));
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Serve(args) => {
                logging::init("info");
                serve::serve(&args).await.map(|_| ExitCode::SUCCESS)
            }
            Command::Migrate(args) => {
                logging::init("warn");
                serve::migrate(&args).await.map(|_| ExitCode::SUCCESS)
            }
            Command::Store(StoreCommand::Copy(args)) => {
                logging::init("warn");
                store_copy::run(&args).await.map(|_| ExitCode::SUCCESS)
            }
            Command::Validate(args) => {
                logging::init("warn");
                validate::validate(&args).await
            }
            Command::Catalog(command) => {
                logging::init("warn");
                Ok(catalog::run(&command).await)
            }
            Command::Simulate(args) => {
                logging::init("warn");
                simulate::run(&args).await
            }
            Command::Report(args) => {
                logging::init("warn");
                report::run(&args).await
            }
            Command::Outbox(command) => {
                logging::init("warn");
                outbox::run(&command).await
            }
            Command::Openapi => {
                println!("{}", serde_json::to_string_pretty(wrapup_service::admin::openapi())?);
                Ok(ExitCode::SUCCESS)
            }
            Command::Review(command) => {
                logging::init("warn");
                review::run(&command).await
            }
            Command::Reconcile(args) => {
                logging::init("warn");
                reconcile::run(&args).await
            }
            Command::Bench(args) => {
                logging::init("warn");
                let report = bench::run(&args).await?;
                if args.json {
                    println!("{}", serde_json::to_string(&report.to_json())?);
                } else {
                    print!("{}", report.table());
                }
                Ok(ExitCode::SUCCESS)
            }
            Command::Sandbox(args) => {
                logging::init("info");
                wrapup_sandbox::run_cli(args).await.map(|_| ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
