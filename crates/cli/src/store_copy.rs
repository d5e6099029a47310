//! `wrapup store copy --from sqlite://PATH --to postgres://…`: moves a deployment from its embedded SQLite file to a
//! PostgreSQL database (see `wrapup_store::copy_sqlite_to_postgres`), with a progress bar, and checks afterwards that
//! the target holds as many rows of each table as the source.

use anyhow::{bail, Context};
use std::path::PathBuf;
use wrapup_store::{copy_sqlite_to_postgres, Migrations, PostgresStore, SqliteStore};

#[derive(Debug, Clone, clap::Args)]
pub struct CopyArgs {
    /// The SQLite file to copy from (`sqlite://PATH` or a path). Stop the service that uses it first.
    #[arg(long)]
    pub from: String,
    /// The PostgreSQL database to copy into (`postgres://user@host:port/database`); it is migrated, and must hold no
    /// wrapup data yet.
    #[arg(long)]
    pub to: String,
    /// Print the rows copied per table as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: &CopyArgs) -> anyhow::Result<()> {
    let path = PathBuf::from(args.from.strip_prefix("sqlite://").unwrap_or(&args.from));
    if !path.is_file() {
        bail!("{} is not a file: --from names the SQLite store to copy (its data_dir's wrapup.db)", path.display());
    }
    if !args.to.starts_with("postgres://") && !args.to.starts_with("postgresql://") {
        bail!("--to must be a postgres:// URL");
    }
    let from = SqliteStore::open_with(&path, Migrations::Check).await.with_context(|| {
        format!("opening {} (run `wrapup migrate` on it first if its schema is older)", path.display())
    })?;
    let to = PostgresStore::connect(&args.to).await.context("connecting to the target database")?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} rows")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    if args.json {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let report = copy_sqlite_to_postgres(&from, &to, |p| {
        bar.set_message(p.table);
        bar.set_length(p.total);
        bar.set_position(p.copied);
    })
    .await
    .context("copying (nothing was written to the target)")?;
    bar.finish_and_clear();
    from.close().await;
    to.close().await;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for t in &report.tables {
            println!("{:>14}: {} rows", t.table, t.rows);
        }
        println!("Copied, and every table holds as many rows in the target as in the source.");
    }
    Ok(())
}
