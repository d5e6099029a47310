//! The catalog audit trail in the store: `wrapup catalog apply` announces each write before sending it and records
//! its answer after, between a `begin` line (who ran it, the plan) and an `end` line.

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use wrapup_catalog::apply::Journal;
use wrapup_catalog::{Change, Plan};
use wrapup_store::{CatalogAuditLine, Store};

/// The longest a create of another run is waited for.
const RECOVERY_WINDOW: SignedDuration = SignedDuration::from_hours(24);

pub struct StoreJournal {
    store: Arc<dyn Store>,
    connection: String,
    apply_id: String,
    actor: String,
    source: &'static str,
    seq: AtomicI64,
}

impl StoreJournal {
    pub fn new(store: Arc<dyn Store>, connection: &str, source: &'static str) -> Self {
        let now = Timestamp::now();
        Self {
            store,
            connection: connection.to_string(),
            apply_id: format!("{}-{}", now.as_millisecond(), std::process::id()),
            actor: actor(),
            source,
            seq: AtomicI64::new(0),
        }
    }

    async fn append(&self, kind: &str, body: Value) -> Result<(), String> {
        let line = CatalogAuditLine {
            connection: self.connection.clone(),
            apply_id: self.apply_id.clone(),
            seq: self.seq.fetch_add(1, Ordering::SeqCst),
            at: Timestamp::now(),
            actor: self.actor.clone(),
            kind: kind.to_string(),
            body,
        };
        self.store.append_catalog_audit(&line).await.map_err(|e| e.to_string())
    }

    pub async fn begin(&self, plan: &Plan) -> Result<(), String> {
        let body = json!({
            "source": self.source,
            "fingerprint": plan.fingerprint,
            "counts": plan.counts(),
            "changes": plan.changes,
        });
        self.append("begin", body).await
    }

    pub async fn end(&self, status: &str) {
        if let Err(e) = self.append("end", json!({ "status": status })).await {
            eprintln!("warning: the end of this apply could not be written to the audit trail: {e}");
        }
    }
}

#[async_trait]
impl Journal for StoreJournal {
    async fn intent(&self, change: &Change) -> Result<(), String> {
        self.append("intent", json!({ "change": change })).await
    }

    async fn result(&self, change: &Change, answer: &Result<Option<String>, String>) {
        let answer = match answer {
            Ok(id) => json!({ "ok": true, "id": id }),
            Err(e) => json!({ "ok": false, "error": e }),
        };
        if let Err(e) = self.append("result", json!({ "change": change, "answer": answer })).await {
            eprintln!("warning: an answer could not be written to the audit trail: {e}");
        }
    }

    async fn recent_creates(&self, within: std::time::Duration) -> Vec<(String, Timestamp)> {
        let window = jiff::SignedDuration::try_from(within).unwrap_or(RECOVERY_WINDOW).min(RECOVERY_WINDOW);
        let since = Timestamp::now() - window;
        let lines = match self.store.catalog_audit(&self.connection, since).await {
            Ok(lines) => lines,
            Err(e) => {
                eprintln!("warning: the audit trail could not be read ({e}); other runs' creates are not waited for");
                return Vec::new();
            }
        };
        // Lower-cased code → (name, since when it may be about to show): an intent opens it, an answer with an id
        // moves it to the answer's time, a refusal closes it (nothing was made).
        let mut recent: BTreeMap<String, (String, Timestamp)> = BTreeMap::new();
        for line in lines.iter().filter(|l| l.apply_id != self.apply_id) {
            let Some(code) = created_code(&line.body) else { continue };
            let key = code.to_lowercase();
            let made = line.body.get("answer").and_then(|a| a.get("ok")).and_then(Value::as_bool) != Some(false);
            match line.kind.as_str() {
                "intent" | "result" if made => {
                    recent.insert(key, (code, line.at));
                }
                "result" => {
                    recent.remove(&key);
                }
                _ => {}
            }
        }
        recent.into_values().collect()
    }
}

fn created_code(body: &Value) -> Option<String> {
    let change = body.get("change")?;
    (change.get("action")?.as_str()? == "create").then(|| change.get("code")?.as_str().map(str::to_string))?
}

/// Who runs this: `user@host`, as far as the environment tells.
fn actor() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    format!("{user}@{host}")
}
