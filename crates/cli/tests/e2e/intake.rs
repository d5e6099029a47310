use crate::harness::{self, sandbox_for, Side, SUPPORT_IMMEDIATE};
use serde_json::json;

// Genesys ids are UUIDs; intake refuses anything else.
const CONVERSATION: &str = "5d0e1c4a-0000-4000-8000-0000000000c1";
pub const PARTICIPANT: &str = "5d0e1c4a-0000-4000-8000-0000000000a1";
const SESSION: &str = "5d0e1c4a-0000-4000-8000-0000000000b1";
const QUEUE: &str = "5d0e1c4a-0000-4000-8000-0000000000d1";
const USER: &str = "5d0e1c4a-0000-4000-8000-0000000000e1";

pub fn envelope(topic_kind: &str) -> serde_json::Value {
    envelope_for(
        &format!("v2.detail.events.conversation.{{id}}.{topic_kind}"),
        &format!("v2.detail.events.conversation.{CONVERSATION}.{topic_kind}"),
    )
}

pub fn envelope_for(pattern: &str, topic: &str) -> serde_json::Value {
    json!({
        "version": "0",
        "id": "5d0e1c4a-0000-4000-8000-000000000001",
        "detail-type": pattern,
        "source": "aws.partner/genesys.com/cloud/org/test",
        "account": "123456789012",
        "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "topicName": topic,
            "version": "2",
            "eventBody": {
                "eventTime": 1767225600000u64, "conversationId": CONVERSATION, "participantId": PARTICIPANT,
                "sessionId": SESSION, "mediaType": "VOICE", "direction": "INBOUND", "disconnectType": "PEER",
                "queueId": QUEUE, "userId": USER, "interactingDurationMs": 1000, "heldDurationMs": 0
            },
            "metadata": {"CorrelationId": "corr-1"},
            "timestamp": "2026-01-01T00:00:00.000Z"
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_intake_input_gets_a_4xx_and_stores_nothing() {
    let env = harness::start(Side::Genesys, sandbox_for(Side::Genesys, 60), SUPPORT_IMMEDIATE).await.env;
    let base = env.service.as_ref().expect("service").base_url();
    let key = match &env.config.connections[0].intake.api_key {
        Some(k) => k.expose().to_string(),
        None => panic!("the test config has an intake key"),
    };
    let http = reqwest::Client::new();
    let url = format!("{base}/intake/genesys");
    let post = |url: String, key: Option<&str>, body: Vec<u8>| {
        let mut req = http.post(url).header("content-type", "application/json").body(body);
        if let Some(k) = key {
            req = req.header("x-wrapup-intake-key", k);
        }
        req.send()
    };
    let valid = serde_json::to_vec(&envelope("user.end")).unwrap();

    let cases: Vec<(&str, reqwest::Response, u16)> = vec![
        ("no key", post(url.clone(), None, valid.clone()).await.unwrap(), 401),
        ("wrong key", post(url.clone(), Some("not-the-key"), valid.clone()).await.unwrap(), 401),
        ("unknown connection", post(format!("{base}/intake/nope"), Some(&key), valid.clone()).await.unwrap(), 404),
        ("malformed JSON", post(url.clone(), Some(&key), b"{\"detail\": [".to_vec()).await.unwrap(), 400),
        ("not an envelope", post(url.clone(), Some(&key), b"{\"hello\": 1}".to_vec()).await.unwrap(), 400),
        (
            "unsupported topic",
            post(
                url.clone(),
                Some(&key),
                serde_json::to_vec(&envelope_for("v2.users.{id}.presence", "v2.users.u-1.presence")).unwrap(),
            )
            .await
            .unwrap(),
            422,
        ),
        (
            "a batch with one bad envelope",
            post(url.clone(), Some(&key), serde_json::to_vec(&json!([envelope("user.end"), {"x": 1}])).unwrap())
                .await
                .unwrap(),
            400,
        ),
        ("oversized", post(url.clone(), Some(&key), vec![b' '; 2 * 1024 * 1024]).await.unwrap(), 413),
    ];
    for (what, resp, want) in cases {
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        assert_eq!(status, want, "{what}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what} says why: {body}");
    }
    assert!(env.legs().await.unwrap().is_empty(), "nothing was stored");

    // The same valid event, twice: accepted once, then acknowledged as a duplicate.
    let first: serde_json::Value = post(url.clone(), Some(&key), valid.clone()).await.unwrap().json().await.unwrap();
    let second: serde_json::Value = post(url.clone(), Some(&key), valid).await.unwrap().json().await.unwrap();
    assert_eq!((first["accepted"].as_u64(), second["duplicates"].as_u64()), (Some(1), Some(1)));
    assert_eq!(env.legs().await.unwrap().len(), 1);
    let _ = env.finish().await;
}
