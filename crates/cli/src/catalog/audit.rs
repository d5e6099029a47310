//! `wrapup catalog audit`: who changed a connection's catalog, when and how. wrapup's own applies come from the
//! store's audit trail (the plan, each write and its answer); on Genesys they are merged, by time, with the
//! platform's audit trail of the Routing service (wrap-up codes and queues), which also shows changes made by hand
//! or by other tools. CXone has no public audit API for dispositions: only wrapup's records are shown.

use super::connection::{connection, Target};
use crate::serve::{load_config, open_store};
use anyhow::Context;
use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::Value;
use std::process::ExitCode;
use wrapup_catalog::api::GENESYS_AUDIT_DAYS;

#[derive(Debug, Clone, clap::Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub target: Target,
    /// How far back (`7d`, `24h`, …).
    #[arg(long, default_value = "7d")]
    pub since: String,
    /// Print the entries as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One entry of the merged trail.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub at: String,
    /// `wrapup` (the store's trail) or the platform's name.
    pub source: &'static str,
    pub actor: String,
    pub what: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

pub async fn run(args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(&args.target.config)?;
    let (conn, c) = connection(&config, args.target.connection.as_deref())?;
    let back = lookback(&args.since)?;
    let now = Timestamp::now();
    let since = now - back;
    let store = open_store(&config).await?;
    let lines = store.catalog_audit(&conn.name, since).await.context("reading the audit trail")?;
    let mut entries: Vec<(Timestamp, Entry)> = lines
        .iter()
        .filter(|l| l.kind != "intent")
        .map(|l| {
            (
                l.at,
                Entry {
                    at: l.at.to_string(),
                    source: "wrapup",
                    actor: l.actor.clone(),
                    what: what(&l.kind, &l.body),
                    details: details(&l.body),
                },
            )
        })
        .collect();
    let platform_name = if c.api.platform() == wrapup_core::Platform::Genesys { "genesys" } else { "cxone" };
    let note = match c.api.platform_audit(since, now).await {
        Ok(Some(found)) => {
            for a in found {
                let at: Timestamp = a.at.parse().unwrap_or(now);
                let what = format!("{} {} {:?}", a.action, a.entity_type, a.entity);
                entries.push((at, Entry { at: a.at, source: platform_name, actor: a.actor, what, details: a.changes }));
            }
            (now.duration_since(since) > SignedDuration::from_hours(24 * GENESYS_AUDIT_DAYS)).then(|| {
                format!("more than {GENESYS_AUDIT_DAYS} days: the platform's records came from its asynchronous audit query")
            })
        }
        Ok(None) => {
            Some("CXone has no public audit API for dispositions and skills: only wrapup's applies are listed".into())
        }
        Err(e) => Some(format!("the platform's audit trail could not be read: {e}")),
    };
    entries.sort_by_key(|(at, _)| *at);
    let entries: Vec<Entry> = entries.into_iter().map(|(_, e)| e).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "entries": entries, "note": note }))?);
    } else {
        for e in &entries {
            println!("{}  {:<7}  {}  {}", e.at, e.source, e.actor, e.what);
            for d in &e.details {
                println!("        {d}");
            }
        }
        if entries.is_empty() {
            println!("No catalog changes on connection {:?} since {since}.", conn.name);
        }
        if let Some(note) = note {
            eprintln!("note: {note}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn what(kind: &str, body: &Value) -> String {
    match kind {
        "begin" => {
            let source = body.get("source").and_then(Value::as_str).unwrap_or("?");
            let n = body.get("changes").and_then(Value::as_array).map_or(0, Vec::len);
            format!("apply begins ({source}, {n} change(s), plan {})", short(body.get("fingerprint")))
        }
        "end" => format!("apply ends: {}", body.get("status").and_then(Value::as_str).unwrap_or("?")),
        "result" => {
            let change = body.get("change").cloned().unwrap_or_default();
            let action = change.get("action").and_then(Value::as_str).unwrap_or("?");
            let object = ["code", "queue", "skill"]
                .iter()
                .find_map(|k| change.get(*k).and_then(Value::as_str).map(|v| format!("{k} {v:?}")))
                .unwrap_or_default();
            let answer = body.get("answer");
            let outcome = if answer.and_then(|a| a.get("ok")).and_then(Value::as_bool) == Some(true) {
                "done".to_string()
            } else {
                format!("failed: {}", answer.and_then(|a| a.get("error")).and_then(Value::as_str).unwrap_or("?"))
            };
            format!("{action} {object}: {outcome}")
        }
        other => other.to_string(),
    }
}

/// The before/after of a result line: field changes, codes assigned.
fn details(body: &Value) -> Vec<String> {
    let Some(change) = body.get("change") else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(from) = change.get("from").and_then(Value::as_str) {
        out.push(format!("renamed from {from:?}"));
    }
    for f in change.get("fields").and_then(Value::as_array).into_iter().flatten() {
        let show = |k: &str| f.get(k).and_then(Value::as_str).unwrap_or("unset").to_string();
        out.push(format!("{}: {} → {}", show("field"), show("from"), show("to")));
    }
    for key in ["codes", "dispositions"] {
        if let Some(list) = change.get(key).and_then(Value::as_array) {
            let names: Vec<String> = list.iter().filter_map(Value::as_str).map(|s| format!("{s:?}")).collect();
            out.push(format!("{key}: {}", names.join(", ")));
        }
    }
    out
}

fn short(v: Option<&Value>) -> String {
    v.and_then(Value::as_str).map_or("?".into(), |s| s.chars().take(12).collect())
}

/// `30d`, `12h`, `45m`: how far back to look.
fn lookback(text: &str) -> anyhow::Result<SignedDuration> {
    let bad = || anyhow::anyhow!("--since {text:?}: write a number of days, hours or minutes, e.g. `7d`, `12h`, `30m`");
    let (number, unit) = text.trim().split_at(text.trim().len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| bad())?;
    let hours = match unit {
        "d" => n.checked_mul(24).ok_or_else(bad)?,
        "h" => n,
        "m" => return Ok(SignedDuration::from_mins(n)),
        _ => return Err(bad()),
    };
    if !(0..=24 * 3650).contains(&hours) {
        return Err(bad());
    }
    Ok(SignedDuration::from_hours(hours))
}
