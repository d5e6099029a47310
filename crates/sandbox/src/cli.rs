//! `wrapup sandbox`: run the sandbox as a process.
//!
//! Configuration is layered: defaults, then the optional TOML file (`--config`), then flags. The first line on
//! stdout is one JSON object (`base_url`, `client_id`, `client_secret`, `clients`, `control_url`, `cxone`: the
//! CXone login, see [`cxone_line`], and with `--crm` `crm`: the CRM receiver, see [`crm_line`]), flushed at once so a parent process can read it; logs go to stderr. Serves until Ctrl-C.

use crate::config::{EventTarget, FaultProfile, SandboxConfig};
use crate::crm::{CrmOptions, CrmReceiver, WebhookSecret};
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
    /// Also run the CRM receiver (signed webhook sinks and decision hooks, see docs/SANDBOX.md); without
    /// `--crm-sink`/`--crm-hook` it has a sink and a hook named `crm`, with secrets from the seed.
    #[arg(long)]
    pub crm: bool,
    /// Address of the CRM receiver (loopback only; implies --crm).
    #[arg(long)]
    pub crm_listen: Option<String>,
    /// A sink of the CRM receiver, `NAME=whsec_…` (repeatable; implies --crm).
    #[arg(long = "crm-sink", value_name = "NAME=SECRET")]
    pub crm_sinks: Vec<String>,
    /// A decision hook of the CRM receiver, `NAME=whsec_…` (repeatable; implies --crm).
    #[arg(long = "crm-hook", value_name = "NAME=SECRET")]
    pub crm_hooks: Vec<String>,
}

impl SandboxArgs {
    fn wants_crm(&self) -> bool {
        self.crm || self.crm_listen.is_some() || !self.crm_sinks.is_empty() || !self.crm_hooks.is_empty()
    }
}

/// The CRM receiver's options from the flags (`None` without any CRM flag); `seed` makes the default secrets.
pub fn crm_options_from_args(args: &SandboxArgs, seed: u64) -> anyhow::Result<Option<CrmOptions>> {
    if !args.wants_crm() {
        return Ok(None);
    }
    let mut options = CrmOptions::default();
    if let Some(listen) = &args.crm_listen {
        options.listen = listen.parse().with_context(|| format!("--crm-listen {listen:?} is not an address"))?;
    }
    let pairs = |flag: &str, values: &[String]| -> anyhow::Result<Vec<(String, String)>> {
        values
            .iter()
            .map(|v| match v.split_once('=') {
                Some((name, secret)) if !name.is_empty() => Ok((name.to_string(), secret.to_string())),
                _ => bail!("{flag} takes NAME=whsec_…, not {v:?}"),
            })
            .collect()
    };
    options.sinks = pairs("--crm-sink", &args.crm_sinks)?;
    options.hooks = pairs("--crm-hook", &args.crm_hooks)?;
    if options.sinks.is_empty() && options.hooks.is_empty() {
        options.sinks.push(("crm".into(), WebhookSecret::from_seed(seed, "sink").to_whsec()));
        options.hooks.push(("crm".into(), WebhookSecret::from_seed(seed, "hook").to_whsec()));
    }
    Ok(Some(options))
}

/// The CRM part of the first line: where the receiver is, and each sink's and hook's URL and secret.
pub fn crm_line(crm: &CrmReceiver, options: &CrmOptions) -> serde_json::Value {
    let endpoints = |list: &[(String, String)], url: &dyn Fn(&str) -> String| {
        list.iter()
            .map(|(name, secret)| serde_json::json!({"name": name, "url": url(name), "secret": secret}))
            .collect::<Vec<_>>()
    };
    serde_json::json!({
        "base_url": crm.base_url(),
        "control_url": crm.control_url(),
        "sinks": endpoints(&options.sinks, &|n| crm.sink_url(n)),
        "hooks": endpoints(&options.hooks, &|n| crm.hook_url(n)),
    })
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
    let crm_options = crm_options_from_args(&args, cfg.seed)?;
    let listener =
        tokio::net::TcpListener::bind(&args.listen).await.with_context(|| format!("binding {}", args.listen))?;
    let clock = ScaledClock::new(jiff::Timestamp::now(), cfg.speed).shared();
    let handle = Sandbox::start(cfg, listener, clock).await?;
    let crm = match &crm_options {
        Some(options) => Some(CrmReceiver::start(options.clone()).await.context("starting the CRM receiver")?),
        None => None,
    };
    let creds = handle.credentials();
    let (client_id, client_secret) = creds.first().cloned().unwrap_or_default();
    let mut line = serde_json::json!({
        "base_url": handle.base_url(),
        "client_id": client_id,
        "client_secret": client_secret,
        "clients": creds.iter().map(|(id, secret)| serde_json::json!({"client_id": id, "client_secret": secret})).collect::<Vec<_>>(),
        "control_url": format!("{}/sandbox/v1", handle.base_url()),
        "cxone": cxone_line(&handle),
    });
    if let (Some(crm), Some(options)) = (&crm, &crm_options) {
        line["crm"] = crm_line(crm, options);
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    tracing::info!("Shutting the sandbox down.");
    if let Some(crm) = crm {
        crm.shutdown().await;
    }
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
