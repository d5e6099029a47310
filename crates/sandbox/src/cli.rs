//! `wrapup sandbox`: run the sandbox as a process.
//!
//! Configuration is layered: defaults, then the optional TOML file (`--config`), then flags. The first line on
//! stdout is one JSON object (`base_url`, `client_id`, `client_secret`, `clients`, `control_url`, and `cxone`: the
//! CXone login, see [`cxone_line`]), flushed at once so a parent process can read it; logs go to stderr. Serves until Ctrl-C.

use crate::config::{EventTarget, FaultProfile, SandboxConfig};
use crate::Sandbox;
use anyhow::{bail, Context};
use std::io::Write;
use std::path::PathBuf;
use wrapup_clock::ScaledClock;

/// Flags of `wrapup sandbox`.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub listen: String,
    /// Seed of the simulation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Agent legs already in ACW at start.
    #[arg(long)]
    pub preload: Option<usize>,
    /// Simulated seconds per wall second.
    #[arg(long)]
    pub speed: Option<f64>,
    /// Fault profile: calm or hostile.
    #[arg(long)]
    pub faults: Option<String>,
    /// Requests per minute per token.
    #[arg(long)]
    pub rate_limit: Option<u32>,
    /// How the per-minute limit is counted, on both platforms: fixed, sliding or token_bucket (see docs/SANDBOX.md).
    #[arg(long, value_enum)]
    pub rate_limit_window: Option<crate::rate_limit::RateWindow>,
    /// Number of OAuth clients.
    #[arg(long)]
    pub clients: Option<usize>,
    /// Where to POST events (repeatable).
    #[arg(long = "event-target")]
    pub event_targets: Vec<String>,
    /// Header carrying the API key on event POSTs.
    #[arg(long)]
    pub event_api_key_header: Option<String>,
    /// API key sent on event POSTs.
    #[arg(long)]
    pub event_api_key: Option<String>,
    /// TOML file with a SandboxConfig.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Builds the configuration from the file and the flags.
pub fn config_from_args(args: &SandboxArgs) -> anyhow::Result<SandboxConfig> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
        }
        None => SandboxConfig::default(),
    };
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    if let Some(p) = args.preload {
        cfg.preload = p;
    }
    if let Some(s) = args.speed {
        if !(s.is_finite() && s > 0.0) {
            bail!("--speed must be a positive number");
        }
        cfg.speed = s;
    }
    if let Some(f) = &args.faults {
        cfg.faults = FaultProfile::named(f).with_context(|| format!("unknown fault profile {f:?} (calm, hostile)"))?;
    }
    if let Some(r) = args.rate_limit {
        cfg.rate_limit_per_minute = r;
    }
    if let Some(w) = args.rate_limit_window {
        cfg.rate_limit_window = w;
        cfg.cxone.rate_limit_window = w;
    }
    if let Some(c) = args.clients {
        cfg.clients = c.max(1);
    }
    for url in &args.event_targets {
        cfg.event_targets.push(EventTarget {
            url: url.clone(),
            api_key_header: args
                .event_api_key_header
                .clone()
                .or_else(|| args.event_api_key.as_ref().map(|_| "x-api-key".into())),
            api_key: args.event_api_key.clone(),
        });
    }
    Ok(cfg)
}

/// The CXone part of the first line: where to log in and with what.
pub fn cxone_line(handle: &crate::SandboxHandle) -> serde_json::Value {
    let c = handle.cxone_credentials();
    let base = handle.base_url();
    serde_json::json!({
        "base_url": base,
        "discovery_url": format!("{base}/.well-known/openid-configuration"),
        "cxone_configuration_url": format!("{base}/.well-known/cxone-configuration?tenantId={}", c.tenant_id),
        "token_url": format!("{base}/auth/token"),
        "api_base_url": format!("{base}/inContactAPI/services/v32.0"),
        "access_key_id": c.access_key_id,
        "access_key_secret": c.access_key_secret,
        "client_id": c.client_id,
        "client_secret": c.client_secret,
        "tenant_id": c.tenant_id,
        "business_unit_id": c.business_unit_id,
        "agent_id": c.agent_id,
    })
}

/// Runs the sandbox until Ctrl-C.
pub async fn run_cli(args: SandboxArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let cfg = config_from_args(&args)?;
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let clock = ScaledClock::new(jiff::Timestamp::now(), cfg.speed).shared();
    let handle = Sandbox::start(cfg, listener, clock).await?;
    let creds = handle.credentials();
    let (client_id, client_secret) = creds.first().cloned().unwrap_or_default();
    let line = serde_json::json!({
        "base_url": handle.base_url(),
        "client_id": client_id,
        "client_secret": client_secret,
        "clients": creds.iter().map(|(id, secret)| serde_json::json!({"client_id": id, "client_secret": secret})).collect::<Vec<_>>(),
        "control_url": format!("{}/sandbox/v1", handle.base_url()),
        "cxone": cxone_line(&handle),
    });
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    tracing::info!("Shutting the sandbox down.");
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SandboxArgs,
    }

    #[test]
    fn the_rate_limit_window_flag_sets_both_platforms() {
        let cli = Cli::parse_from(["sandbox", "--rate-limit-window", "token_bucket", "--rate-limit", "600"]);
        let cfg = config_from_args(&cli.args).unwrap();
        assert_eq!(cfg.rate_limit_window, crate::RateWindow::TokenBucket);
        assert_eq!(cfg.cxone.rate_limit_window, crate::RateWindow::TokenBucket);
        assert_eq!(cfg.rate_limit_per_minute, 600);
        assert!(Cli::try_parse_from(["sandbox", "--rate-limit-window", "hourly"]).is_err());
        let default = config_from_args(&Cli::parse_from(["sandbox"]).args).unwrap();
        assert_eq!(default.rate_limit_window, crate::RateWindow::Fixed);
    }

    #[test]
    fn the_config_file_takes_a_window_per_platform() {
        let cfg: SandboxConfig =
            toml::from_str("rate_limit_window = \"sliding\"\n[cxone]\nrate_limit_window = \"token_bucket\"\n").unwrap();
        assert_eq!(cfg.rate_limit_window, crate::RateWindow::Sliding);
        assert_eq!(cfg.cxone.rate_limit_window, crate::RateWindow::TokenBucket);
        assert!(toml::from_str::<SandboxConfig>("rate_limit_window = \"hourly\"").is_err());
    }
}
