//! The lookup for platform-native flows against the sandbox's Genesys org: the ids it answers are the org's own.

use crate::harness::{self, sandbox_for, Side, SUPPORT_IMMEDIATE};
use serde_json::{json, Value};
use wrapup_sandbox::Platform;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_gets_the_orgs_own_code_ids_and_the_rule_decision_by_name() {
    let env = harness::start(Side::Genesys, sandbox_for(Side::Genesys, 60), SUPPORT_IMMEDIATE).await.env;
    let base = env.service.as_ref().expect("service").base_url();
    let key = env.config.connections[0].intake.api_key.as_ref().expect("the test config has an intake key");
    let key = key.expose().to_string();
    let http = reqwest::Client::new();
    // The lookup answers from the cached catalog: wait for its first load (the one that waits for the platform).
    for runtime in env.service.as_ref().expect("service").state.connections.values() {
        runtime.catalog.get().await.expect("the catalog loads");
    }
    let org = env.sandbox.catalog_snapshot(Platform::Genesys);
    let id_of = |name: &str| org.codes.iter().find(|c| c.name == name).expect("the org has the code").id.clone();
    let get = |query: &str, key: Option<&str>| {
        let mut req = http.get(format!("{base}/api/v1/lookup/genesys/codes?{query}"));
        if let Some(k) = key {
            req = req.header("x-wrapup-intake-key", k);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = get("name=Issue%20resolved&queue=Support", Some(&key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code_id"], json!(id_of("Issue resolved")));
    assert_eq!(body["code"], "Issue resolved");
    assert_eq!(body["queue"], "Support");
    // A code of the org that the queue does not allow, one the org does not have, and no key.
    let (status, body) = get("name=Test%20code&queue=Support", Some(&key)).await;
    assert_eq!((status, body["error"]["code"].clone()), (409, json!("not_assigned")));
    assert_eq!(get("name=Test%20code", Some(&key)).await.1["code_id"], json!(id_of("Test code")));
    let (status, body) = get("name=Nope", Some(&key)).await;
    assert_eq!((status, body["error"]["code"].clone()), (404, json!("unknown_code")));
    assert_eq!(get("name=Issue%20resolved", None).await.0, 401);

    let decide = |facts: Value| {
        let req = http.post(format!("{base}/api/v1/lookup/genesys/decision")).header("x-wrapup-intake-key", &key);
        async move {
            let r = req.json(&facts).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = decide(json!({"queue_name": "Support", "channel": "voice", "talk_ms": 61000})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"code": "Issue resolved", "code_id": id_of("Issue resolved"), "rule": "support",
            "rule_set_version": env.config.rules.version(), "fallback": false})
    );
    // The demo's connection has no fallback: a leg without a queue is decided by no rule.
    let (status, body) = decide(json!({"channel": "voice"})).await;
    assert_eq!(
        (status, body["fallback"].clone(), body["error"]["code"].clone()),
        (404, json!(false), json!("no_decision"))
    );
    let _ = env.finish().await;
}
