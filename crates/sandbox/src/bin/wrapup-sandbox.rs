//! Standalone `wrapup-sandbox` binary: the same entry point as `wrapup sandbox`, for running the emulator without
//! the rest of wrapup (and for the test that reads its first stdout line from a child process).

use clap::Parser;

#[derive(Parser)]
#[command(name = "wrapup-sandbox", about = "A local Genesys Cloud CX emulator with a simulated contact center.")]
struct Cli {
    #[command(flatten)]
    args: wrapup_sandbox::SandboxArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    wrapup_sandbox::run_cli(Cli::parse().args).await
}
