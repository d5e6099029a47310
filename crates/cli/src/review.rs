//! `wrapup review list|show|resolve|dismiss`: working the review queue (docs/REVIEW.md) from a configuration.
//!
//! `list` and `show` read the store. `dismiss`, and `resolve` for a leg whose window is over, record the action in
//! the store directly (the same event, ledger line and outbox message as the admin API). A leg whose window may
//! still be open can only be written by a worker, through its one safe path: `resolve` then asks a running
//! service's admin API (`--url`, by default the config's `admin_listen` or `listen` address; the operator token from
//! `--token`, `WRAPUP_ADMIN_TOKEN` or the config) and refuses with an error when none answers — it never writes
//! to the platform itself. Data goes to stdout (a table, or `--json`), problems to stderr.

use crate::serve::load_config;
use anyhow::{bail, Context};
use jiff::Timestamp;
use std::process::ExitCode;
use std::sync::Arc;
use wrapup_config::Config;
use wrapup_core::lifecycle::review::{self, Refusal, DEFAULT_ACTOR};
use wrapup_core::lifecycle::{LegRecord, ResolutionAction, ReviewAction};
use wrapup_core::{Event, EventKind, LegKey};
use wrapup_service::review::{reason, ReviewAnswer, ReviewDetail, ReviewItem, ReviewPage, ReviewResult};
use wrapup_store::{ReviewCursor, ReviewFilter, Store};

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ReviewCommand {
    /// Legs that ended `review` (and `expired` with --include-expired) and wait for a person, oldest first.
    List(ListArgs),
    /// One leg: why it needs a person, and its ledger.
    Show(ShowArgs),
    /// Resolve a leg with a code (name or id): written through a running service while its window may be open,
    /// recorded as the operator's decision once it is over.
    Resolve(ResolveArgs),
    /// Take a leg out of the queue, with a note saying why.
    Dismiss(DismissArgs),
}

pub use crate::serve::ConfigAndJson as Common;

#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: Common,
    #[arg(long)]
    pub connection: Option<String>,
    #[arg(long)]
    pub include_expired: bool,
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Continue after a previous page (its `next_cursor`).
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LegArgs {
    pub connection: String,
    pub conversation: String,
    pub participant: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub leg: LegArgs,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Service {
    /// Who acts, for the ledger.
    #[arg(long, default_value = DEFAULT_ACTOR)]
    pub by: String,
    /// The running service's admin API, for a leg whose window may still be open (default: the config's
    /// `admin_listen`, else `listen`).
    #[arg(long)]
    pub url: Option<String>,
    /// The operator's bearer token for that API (default: `WRAPUP_ADMIN_TOKEN`, else the config's `[admin] token`).
    #[arg(long, env = "WRAPUP_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub leg: LegArgs,
    /// The code, by name or id.
    #[arg(long)]
    pub code: String,
    #[arg(long)]
    pub note: Option<String>,
    /// Record the code as the operator's decision and write nothing, even if the leg's window may still be open
    /// (the platform is out of reach; or the store is a finished demo's, whose clock ran ahead of this one).
    #[arg(long)]
    pub record: bool,
    #[command(flatten)]
    pub service: Service,
}

#[derive(Debug, Clone, clap::Args)]
pub struct DismissArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub leg: LegArgs,
    #[arg(long)]
    pub note: String,
    #[arg(long, default_value = DEFAULT_ACTOR)]
    pub by: String,
}

pub async fn run(command: &ReviewCommand) -> anyhow::Result<ExitCode> {
    let common = match command {
        ReviewCommand::List(a) => &a.common,
        ReviewCommand::Show(a) => &a.common,
        ReviewCommand::Resolve(a) => &a.common,
        ReviewCommand::Dismiss(a) => &a.common,
    };
    let config = load_config(&common.config)?;
    let store: Arc<dyn Store> = crate::serve::open_store(&config).await?;
    match command {
        ReviewCommand::List(a) => list(&config, store.as_ref(), a).await,
        ReviewCommand::Show(a) => {
            let key = leg_key(&config, &a.leg)?;
            let leg = load(store.as_ref(), &key).await?;
            let ledger = store.ledger(&key).await?;
            let detail = ReviewDetail { reason: reason(&leg), leg, ledger };
            if a.common.json {
                println!("{}", serde_json::to_string_pretty(&detail)?);
            } else {
                print_leg(&detail.leg);
                for line in &detail.ledger {
                    println!("  {}  {:<15} {}", line.at, line.kind, line.detail);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ReviewCommand::Resolve(a) => {
            let action = ReviewAction::Resolve { code: a.code.clone(), note: a.note.clone() };
            act(&config, store.as_ref(), &a.leg, action, &a.service, a.record, a.common.json).await
        }
        ReviewCommand::Dismiss(a) => {
            let action = ReviewAction::Dismiss { note: a.note.clone() };
            let service = Service { by: a.by.clone(), url: None, token: None };
            act(&config, store.as_ref(), &a.leg, action, &service, false, a.common.json).await
        }
    }
}

async fn list(config: &Config, store: &dyn Store, a: &ListArgs) -> anyhow::Result<ExitCode> {
    if let Some(c) = a.connection.as_deref().filter(|c| !config.connections.iter().any(|k| k.name == *c)) {
        bail!("the configuration has no connection named {c:?}");
    }
    let after = match a.cursor.as_deref() {
        Some(c) => Some(ReviewCursor::decode(c).context("--cursor is not a cursor `wrapup review list` printed")?),
        None => None,
    };
    let limit = a.limit.clamp(1, wrapup_service::review::MAX_LIMIT);
    let filter =
        ReviewFilter { connection: a.connection.clone(), include_expired: a.include_expired, after, limit: limit + 1 };
    let mut legs = store.review_legs(&filter).await?;
    let more = legs.len() > limit as usize;
    legs.truncate(limit as usize);
    let next_cursor = more.then(|| legs.last().map(|l| ReviewCursor::after(l).encode())).flatten();
    let page = ReviewPage {
        items: legs.into_iter().map(|leg| ReviewItem { reason: reason(&leg), leg }).collect(),
        next_cursor,
    };
    if a.common.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        for item in &page.items {
            print_leg(&item.leg);
        }
        eprintln!("{} leg(s) waiting for a person", page.items.len());
        if let Some(cursor) = &page.next_cursor {
            eprintln!("more: --cursor {cursor}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_leg(leg: &LegRecord) {
    let k = &leg.key;
    let outcome = leg.outcome.map_or("open", |o| o.as_str());
    let ended = leg.facts.ended_at.map(|t| t.to_string()).unwrap_or_default();
    println!("{} {} {}  {:<8} {}  {}", k.connection, k.conversation, k.participant, outcome, ended, reason(leg));
    if let Some(r) = &leg.resolution {
        let code = r.code.as_ref().map(|c| format!(" {}", c.name)).unwrap_or_default();
        let note = r.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
        println!("  {}{code} by {} at {}{note}", r.action.as_str(), r.by, r.at);
    }
}

/// The leg's key, its connection configured and its ids in their platform's shape.
fn leg_key(config: &Config, leg: &LegArgs) -> anyhow::Result<LegKey> {
    let Some(connection) = config.connections.iter().find(|c| c.name == leg.connection) else {
        bail!("the configuration has no connection named {:?}", leg.connection);
    };
    let key = LegKey::new(&leg.connection, &leg.conversation, &leg.participant);
    wrapup_core::ids::check_leg(connection.kind, &key).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(key)
}

async fn load(store: &dyn Store, key: &LegKey) -> anyhow::Result<LegRecord> {
    Ok(store.get_leg(key).await?.with_context(|| format!("no leg {key} in the store"))?.leg)
}

/// Records the action in the store, or — for a code the window may still take — hands it to the running service.
async fn act(
    config: &Config,
    store: &dyn Store,
    leg: &LegArgs,
    action: ReviewAction,
    service: &Service,
    record_only: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let key = leg_key(config, leg)?;
    let record = load(store, &key).await?;
    let catalog = match &action {
        ReviewAction::Resolve { .. } => store.get_catalog(&key.connection).await?.map(|(c, _)| c),
        ReviewAction::Dismiss { .. } => None,
    };
    let id = format!("rv_{}", uuid::Uuid::now_v7().simple());
    let now = Timestamp::now();
    // With --record, nothing is written, so whether a service could write does not matter: checked as if one could,
    // then marked to be recorded.
    let checked =
        review::check(&record, &action, &service.by, catalog.as_ref(), id.clone(), record_only, now).map(|mut r| {
            if record_only {
                r.may_write = false;
                r.record_only = true;
            }
            r
        });
    let answer = match checked {
        Err(Refusal::NeedsService) => through_service(config, &key, &action, service).await?,
        Err(refusal) => {
            bail!("{refusal} (leg {key}: {} {})", record.state.as_str(), record.outcome.map_or("", |o| o.as_str()))
        }
        Ok(resolution) => {
            let event = Event {
                leg: key.clone(),
                dedupe_key: format!("review:{id}"),
                occurred_at: now,
                correlation_id: None,
                kind: EventKind::OperatorResolved { resolution: Box::new(resolution) },
            };
            store.ingest(&[event], now).await?;
            let leg = load(store, &key).await?;
            let Some(done) = leg.resolution.as_ref().filter(|r| r.id == id) else {
                bail!(
                    "leg {key} changed meanwhile and was not resolved: it is {} {}",
                    leg.state.as_str(),
                    leg.outcome.map_or("", |o| o.as_str())
                );
            };
            let result = match done.action {
                ResolutionAction::Written => ReviewResult::Written,
                ResolutionAction::Recorded => ReviewResult::Recorded,
                ResolutionAction::Dismissed => ReviewResult::Dismissed,
            };
            ReviewAnswer { result, leg }
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{}", serde_json::to_value(answer.result)?.as_str().unwrap_or(""));
        print_leg(&answer.leg);
    }
    Ok(ExitCode::SUCCESS)
}

/// `POST /api/v1/review/{leg}/resolve` on the running service: the worker writes the code inside the window.
async fn through_service(
    config: &Config,
    key: &LegKey,
    action: &ReviewAction,
    service: &Service,
) -> anyhow::Result<ReviewAnswer> {
    let ReviewAction::Resolve { code, note } = action else {
        bail!("only a code is written through the service");
    };
    let base = match &service.url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", config.admin_listen.unwrap_or(config.listen)),
    };
    let token = service.token.clone().or_else(|| config.admin.token.as_ref().map(|t| t.expose().to_string()));
    let body =
        wrapup_service::review::ResolveBody { code: code.clone(), note: note.clone(), by: Some(service.by.clone()) };
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
    let mut request = client
        .post(format!("{base}/api/v1/review/{}/{}/{}/resolve", key.connection, key.conversation, key.participant))
        .json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.map_err(|e| {
        anyhow::anyhow!(
            "leg {key}'s window may still be open, so its code can only be written by a running wrapup service, and \
             none answered at {base} ({}); start `wrapup serve` with this configuration or pass --url",
            e.without_url()
        )
    })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        bail!("the service at {base} refused the resolution ({status}): {message}");
    }
    serde_json::from_str(&text).with_context(|| format!("the service at {base} answered something else: {text}"))
}
