//! Decision hooks: a rule with `decide = { hook = "<name>", … }` has wrapup ask a CRM for the leg's code.
//!
//! The request is a signed POST (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`, the same
//! scheme intake verifies) of a versioned JSON body: the leg's key and the facts a rule matches on. The answer:
//! - `200` with `{"code": "<code name>", "notes": "…"}`: the code decides the leg (through the same gates as a rule's:
//!   it must be assigned to the leg's queue, and an agent's code always wins);
//! - `204` or `404`: the hook has no decision for this leg; the rule's fallback decides at once;
//! - `429` (with `Retry-After`), `5xx`, a timeout or no connection: asked again after a backoff while the rule's
//!   `wait` lasts, then the fallback decides;
//! - any other answer (a `4xx`, a `200` that is not such a body): refused; the fallback decides at once.
//!
//! One ask takes at most the hook's `timeout_ms`, and never longer than the leg's wait has left.

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::json;
use std::time::{Duration, Instant};
use wrapup_config::{DecisionHookConfig, SigningSecret};
use wrapup_core::failure::ErrorClass;
use wrapup_core::lifecycle::{Failure, HookAnswer, LegRecord};
use wrapup_core::rules::NOTES_MAX_CHARS;

/// The version of the request body (`version` in it); a change that breaks a reader bumps it.
pub const REQUEST_VERSION: u32 = 1;
/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// Longest code name accepted in an answer.
const MAX_CODE_CHARS: usize = 255;

/// One configured hook.
pub struct DecisionHook {
    pub name: String,
    url: reqwest::Url,
    secret: SigningSecret,
    timeout: Duration,
    http: reqwest::Client,
}

impl std::fmt::Debug for DecisionHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionHook").field("name", &self.name).field("url", &self.url.as_str()).finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    code: String,
    #[serde(default)]
    notes: Option<String>,
}

impl DecisionHook {
    pub fn new(config: &DecisionHookConfig) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client without TLS settings of its own builds");
        Self {
            name: config.name.clone(),
            url: config.url.clone(),
            secret: config.secret.clone(),
            timeout: config.timeout,
            http,
        }
    }

    /// The request body for `leg`.
    pub fn request_body(leg: &LegRecord, rule: Option<&str>) -> serde_json::Value {
        json!({
            "type": "decision.request",
            "version": REQUEST_VERSION,
            "connection": leg.key.connection,
            "conversation": leg.key.conversation,
            "participant": leg.key.participant,
            "rule": rule,
            "facts": leg.facts,
        })
    }

    /// Asks for `leg`'s code, taking at most `within` (wall time) or the hook's timeout, whichever is shorter.
    pub async fn ask(
        &self,
        leg: &LegRecord,
        rule: Option<&str>,
        within: Duration,
    ) -> Result<Option<HookAnswer>, Failure> {
        let started = Instant::now();
        let result = self.send(leg, rule, within.min(self.timeout)).await;
        let label = match &result {
            Ok(Some(_)) => "answered",
            Ok(None) => "no_decision",
            Err(f) if f.status.is_none() => "unreachable",
            Err(_) => "failed",
        };
        metrics::counter!("wrapup_decision_hook_requests_total", "hook" => self.name.clone(), "result" => label)
            .increment(1);
        metrics::histogram!("wrapup_decision_hook_duration_seconds", "hook" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        if let Err(f) = &result {
            tracing::warn!(hook = %self.name, leg = %leg.key, error = %f, "A decision hook did not answer with a code.");
        }
        result
    }

    async fn send(
        &self,
        leg: &LegRecord,
        rule: Option<&str>,
        timeout: Duration,
    ) -> Result<Option<HookAnswer>, Failure> {
        let body = serde_json::to_vec(&Self::request_body(leg, rule)).unwrap_or_default();
        let id = format!("dreq_{}", uuid::Uuid::now_v7().simple());
        let timestamp = Timestamp::now().as_second();
        let signature = crate::intake_auth::sign(self.secret.key(), &id, timestamp, &body);
        let fail = |class: ErrorClass, status: Option<u16>, message: String| Failure { class, status, message };
        let response = self
            .http
            .post(self.url.clone())
            .timeout(timeout)
            .header("content-type", "application/json")
            .header(crate::intake_auth::HEADER_ID, &id)
            .header(crate::intake_auth::HEADER_TIMESTAMP, timestamp.to_string())
            .header(crate::intake_auth::HEADER_SIGNATURE, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() { "did not answer in time" } else { "could not be reached" };
                fail(ErrorClass::Retryable, None, format!("decision hook {:?} {what}", self.name))
            })?;
        let status = response.status().as_u16();
        match status {
            200 => {}
            204 | 404 => return Ok(None),
            429 => {
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let message = format!("decision hook {:?} answered 429", self.name);
                return Err(fail(ErrorClass::RateLimited { retry_after }, Some(status), message));
            }
            408 | 500..=599 => {
                let message = format!("decision hook {:?} answered {status}", self.name);
                return Err(fail(ErrorClass::Retryable, Some(status), message));
            }
            _ => {
                let message = format!("decision hook {:?} answered {status}", self.name);
                return Err(fail(ErrorClass::Permanent, Some(status), message));
            }
        }
        let bytes = read_limited(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|m| fail(ErrorClass::Retryable, Some(status), format!("decision hook {:?}: {m}", self.name)))?;
        parse_answer(&bytes)
            .map(Some)
            .map_err(|why| fail(ErrorClass::Permanent, Some(status), format!("decision hook {:?}: {why}", self.name)))
    }
}

/// A hook's `200` body: `{"code": "<name>", "notes"?: "…"}`, the code trimmed and both within their bounds.
pub fn parse_answer(bytes: &[u8]) -> Result<HookAnswer, String> {
    let answer: Answer =
        serde_json::from_slice(bytes).map_err(|e| format!("the answer is not {{\"code\": …, \"notes\"?: …}}: {e}"))?;
    let code = answer.code.trim();
    if code.is_empty() || code.chars().count() > MAX_CODE_CHARS {
        return Err(format!("the code must be 1 to {MAX_CODE_CHARS} characters"));
    }
    if answer.notes.as_ref().is_some_and(|n| n.chars().count() > NOTES_MAX_CHARS) {
        return Err(format!("notes are longer than {NOTES_MAX_CHARS} characters"));
    }
    Ok(HookAnswer { code_name: code.to_string(), notes: answer.notes })
}

/// The body, refused beyond `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| "the answer broke off".to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
