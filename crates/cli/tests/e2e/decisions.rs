//! Codes decided by a CRM, against the sandbox's Genesys org: decisions sent before, during and after a leg's window
//! (each with its defined answer, a repeated key answering the same and a reused one refused), and rules that ask
//! the CRM receiver's decision hook. The agent still wins, and every leg's ledger says who decided.

use crate::harness::{self, Side};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use wrapup_core::lifecycle::DecisionSource;
use wrapup_core::{LegKey, Outcome};
use wrapup_sandbox::config::AcwMode;

/// Every "Support" leg waits up to 30 s for the CRM, then gets the rule's own code.
const WAIT_FOR_CRM: &str = r#"
[[rules]]
name = "support"
code = "Issue resolved"
decide = { crm = true, wait = "30s", fallback = "rule" }
[rules.when]
queue = "Support"
"#;

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    fn of(env: &harness::Env) -> Api {
        let service = env.env.service.as_ref().expect("service");
        let key = env.env.config.connections[0].intake.api_key.as_ref().expect("an intake key").expose().to_string();
        Api { http: reqwest::Client::new(), base: service.base_url(), key }
    }

    /// PUT a decision; the status, the body and whether it was a replay.
    async fn put(&self, target: &str, key: &str, body: &Value) -> (u16, Value, bool) {
        let response = self
            .http
            .put(format!("{}/api/v1/decisions/genesys/{target}", self.base))
            .header("x-wrapup-intake-key", &self.key)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("the service answers");
        let replayed = response.headers().get("idempotent-replayed").is_some();
        (response.status().as_u16(), response.json().await.expect("a JSON answer"), replayed)
    }
}

fn escalated() -> Value {
    json!({"code": "Escalated", "notes": "ticket closed in the CRM", "source": "crm-e2e"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_decisions_before_during_and_after_the_window_get_their_answers_and_the_agent_still_wins() {
    let mut center = harness::center(AcwMode::MandatoryTimeout, Some(60_000));
    // Some agents code as they hang up: a decision for their legs must not win.
    center.agent.at_disconnect = 0.3;
    let env = harness::start(Side::Genesys, harness::sandbox(center), WAIT_FOR_CRM).await;
    let api = Api::of(&env);
    let service = env.env.service.as_ref().expect("service");
    for runtime in service.state.connections.values() {
        runtime.catalog.get().await.expect("the catalog loads");
    }
    let store = service.state.store.clone();
    env.env.sandbox.start_traffic();

    // Before: for conversations whose agent is still talking, a decision for the whole conversation.
    let mut before: HashMap<String, u16> = HashMap::new();
    let started = Instant::now();
    while before.values().filter(|s| **s == 202).count() < 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "no conversation was caught before its end: {before:?}");
        for t in env.truth().into_iter().filter(|t| t.state == "connected") {
            if before.contains_key(&t.conversation_id) {
                continue;
            }
            let (status, body, _) =
                api.put(&t.conversation_id, &format!("before-{}", t.conversation_id), &escalated()).await;
            // The leg may have ended between the look and the PUT: then it is queued (or already too late).
            assert!(matches!(status, 202 | 200 | 409), "{status}: {body}");
            if status == 202 {
                assert_eq!(
                    (body["status"].as_str(), body["legs"].as_array().map(Vec::len)),
                    (Some("pending"), Some(0))
                );
            }
            before.insert(t.conversation_id.clone(), status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pending: HashSet<String> = before.iter().filter(|(_, s)| **s == 202).map(|(c, _)| c.clone()).collect();

    // During: legs waiting for the CRM in their window get a decision for the leg.
    let mut during: Vec<LegKey> = Vec::new();
    let started = Instant::now();
    while during.len() < 3 {
        assert!(started.elapsed() < Duration::from_secs(30), "no leg was seen waiting for the CRM: {during:?}");
        let waiting = env.env.legs_of("genesys").await.expect("legs").into_iter().filter(|l| {
            l.awaiting_decision_until.is_some()
                && l.external.is_none()
                && !l.is_done()
                && !before.contains_key(&l.key.conversation)
        });
        for leg in waiting {
            if during.contains(&leg.key) || during.len() >= 3 {
                continue;
            }
            let target = format!("{}/{}", leg.key.conversation, leg.key.participant);
            let key = format!("during-{}", leg.key.participant);
            let (status, body, replayed) = api.put(&target, &key, &escalated()).await;
            assert_eq!((status, body["status"].as_str(), replayed), (200, Some("queued"), false), "{body}");
            // The same key and request again: the same answer, marked as a replay.
            let (again, again_body, replayed) = api.put(&target, &key, &escalated()).await;
            assert_eq!((again, &again_body, replayed), (200, &body, true));
            // The same key for another decision: refused, and it changes nothing.
            let (reused, reused_body, _) = api.put(&target, &key, &json!({"code": "Issue resolved"})).await;
            assert_eq!((reused, reused_body["error"]["code"].as_str()), (409, Some("idempotency_key_reused")));
            during.push(leg.key.clone());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.env.sandbox.stop_traffic();
    env.quiesce(Duration::from_secs(30)).await;

    // After: every finished leg refuses a decision, saying why.
    let legs = env.env.legs_of("genesys").await.expect("legs");
    for leg in legs.iter().filter(|l| l.is_done()).take(8) {
        let target = format!("{}/{}", leg.key.conversation, leg.key.participant);
        let (status, body, _) = api.put(&target, &format!("after-{}", leg.key.participant), &escalated()).await;
        let expected = match leg.outcome {
            Some(Outcome::AgentWon) => "agent_code_present",
            Some(Outcome::Applied) if body["legs"][0]["status"] == "applied" => "applied",
            _ => "window_closed",
        };
        if expected == "applied" {
            // Already written with this very code by an earlier decision: the answer says so.
            assert_eq!(status, 200, "{body}");
        } else {
            assert_eq!((status, body["error"]["code"].as_str()), (409, Some(expected)), "{:?}: {body}", leg.outcome);
        }
    }

    // Who decided each leg, as its record and its ledger say.
    let truth = env.truth();
    let agent_coded = |key: &LegKey| {
        truth.iter().any(|t| {
            t.conversation_id == key.conversation
                && t.participant_id == key.participant
                && (t.agent_coded_before_api || t.coded_by == wrapup_sandbox::CodedBy::Agent)
        })
    };
    let mut by_crm = 0;
    let mut agent_won_over_crm = 0;
    for leg in &legs {
        let crm_sent = pending.contains(&leg.key.conversation) || during.contains(&leg.key);
        let ledger = store.ledger(&leg.key).await.expect("ledger");
        match (crm_sent, leg.outcome) {
            (true, Some(Outcome::AgentWon)) => agent_won_over_crm += 1,
            (true, Some(Outcome::Applied)) => {
                by_crm += 1;
                assert_eq!(leg.intent.as_ref().map(|i| i.code_name.as_str()), Some("Escalated"), "{leg:?}");
                let decision = leg.decision.as_ref().expect("a decision");
                assert!(
                    matches!(&decision.source, DecisionSource::External { source, idempotency_key: Some(_), rule: Some(r), .. }
                        if source == "crm-e2e" && r == "support"),
                    "{decision:?}"
                );
                // The decision's source, key and arrival are in the ledger: an event for a known leg, an adoption for
                // one kept before the leg ended.
                let explained = ledger.iter().any(|line| {
                    let d = match line.kind.as_str() {
                        "event" => &line.detail["decision"],
                        "external_decision" => &line.detail["decision"],
                        _ => return false,
                    };
                    d["source"] == "crm-e2e" && d["idempotency_key"].is_string() && d["arrived_at"].is_string()
                });
                assert!(explained, "the ledger of {} does not show the decision: {ledger:#?}", leg.key);
            }
            // The agent coded in the instant between our read and our write: a person looks (never a silent win).
            (true, Some(Outcome::Review)) if agent_coded(&leg.key) => agent_won_over_crm += 1,
            (true, other) => panic!("a leg the CRM decided ended {other:?}: {leg:?}\n{ledger:#?}"),
            (false, Some(Outcome::Applied)) => {
                // Nobody decided: the rule's own code, as its fallback.
                let decision = leg.decision.as_ref().expect("a decision");
                assert_eq!(decision.code_name, "Issue resolved");
                assert_eq!(decision.fallback.as_deref(), Some("no CRM decision arrived in time"));
            }
            (false, _) => {}
        }
    }
    assert!(by_crm >= 3, "at least the legs decided during their window were written with the CRM's code: {by_crm}");
    let _ = agent_won_over_crm;
    let run = env.finish().await;
    run.assert_invariants();
}

/// Every "Support" leg's code comes from the CRM receiver's hook, within 10 s, else the rule's own.
const ASK_THE_HOOK: &str = r#"
[[rules]]
name = "support"
code = "Issue resolved"
decide = { hook = "crm", wait = "10s", fallback = "rule" }
[rules.when]
queue = "Support"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_asks_the_crm_hook_signed_and_falls_back_when_it_has_no_decision() {
    let env = harness::start(Side::Genesys, harness::sandbox_for(Side::Genesys, 60), ASK_THE_HOOK).await;
    let crm = env.env.crm.clone();
    crm.default_answer(wrapup_demo::CRM_HOOK, Some("Escalated")).expect("the hook exists");
    env.traffic(harness::Traffic::Conversations(6)).await;
    env.quiesce(Duration::from_secs(30)).await;
    // Then the hook has no decision: the next legs get the rule's code at once.
    crm.default_answer(wrapup_demo::CRM_HOOK, None).expect("the hook exists");
    let first: HashSet<LegKey> = env.env.legs_of("genesys").await.expect("legs").into_iter().map(|l| l.key).collect();
    env.traffic(harness::Traffic::Conversations(10)).await;
    env.quiesce(Duration::from_secs(30)).await;

    let requests = crm.hook_requests(wrapup_demo::CRM_HOOK);
    assert!(requests.iter().all(|r| r.verified), "every ask is signed: {requests:#?}");
    let run = env.finish().await;
    run.assert_invariants();
    let applied: Vec<_> = run.with_outcome(Outcome::Applied).collect();
    assert_eq!(applied.len(), run.in_acw().count(), "every leg in ACW got a code");
    for leg in applied {
        let decision = leg.decision.as_ref().expect("a decision");
        if first.contains(&leg.key) {
            assert_eq!(decision.code_name, "Escalated", "{leg:?}");
            assert!(matches!(&decision.source, DecisionSource::External { source, .. } if source == "hook:crm"));
        } else {
            assert_eq!(decision.code_name, "Issue resolved", "{leg:?}");
            assert_eq!(decision.fallback.as_deref(), Some("decision hook \"crm\" had no decision"));
        }
    }
    assert_eq!(requests.len(), run.in_acw().count(), "one ask per leg");
}
