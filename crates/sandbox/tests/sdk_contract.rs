//! Regression tests for the mismatches the Genesys Python SDK contract test (`tests/contract`) found.

mod common;

use common::{quiet_config, start};
use reqwest::Method;
use serde_json::{json, Value};
use wrapup_sandbox::{CenterConfig, MediaMix, SandboxConfig};

fn mixed_media(preload: usize) -> SandboxConfig {
    let mut cfg = quiet_config();
    cfg.preload = preload;
    cfg.center = CenterConfig {
        media_mix: MediaMix { calls: 0.25, messages: 0.25, emails: 0.25, callbacks: 0.25 },
        ..cfg.center
    };
    cfg
}

/// `CallbackConversation`, `EmailConversation` and `MessageConversation` have no `recordingState`; only
/// `CallConversation` has it.
#[tokio::test]
async fn only_call_conversations_carry_recording_state() {
    let env = start(mixed_media(20)).await;
    let mut seen = std::collections::BTreeSet::new();
    for leg in env.sb.legs() {
        let media = leg.media_type.path();
        let (s, _, v) = env.get(&format!("/api/v2/conversations/{media}/{}", leg.conversation_id)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v.get("recordingState").is_some(), media == "calls", "{media}: {v}");
        assert!(v["otherMediaUris"].is_array() && v["selfUri"].is_string(), "{v}");
        seen.insert(media);
    }
    assert_eq!(seen.len(), 4, "every media type was checked: {seen:?}");
    env.sb.shutdown().await;
}

/// SDKs send the JSON literal `null` for an omitted (optional) `WrapupInput`: it is an absent body, not malformed.
#[tokio::test]
async fn a_null_wrapup_body_is_an_absent_body() {
    let env = start(SandboxConfig { preload: 3, ..quiet_config() }).await;
    let leg = env.sb.legs().into_iter().find(|l| l.state == "acw").unwrap();
    let path = format!(
        "/api/v2/conversations/{}/{}/participants/{}/communications/{}/wrapup",
        leg.media_type.path(),
        leg.conversation_id,
        leg.participant_id,
        leg.communication_id
    );
    let (s, _, v) = env.send(Method::POST, &path, Value::Null).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["code"], "bad.request");
    assert_eq!(v["message"], "A wrap-up code is required unless the wrap-up is provisional.");
    // Real garbage is still malformed.
    let resp = env
        .http
        .post(format!("{}{path}", env.base))
        .bearer_auth(&env.token)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    let (s, _, v) = common::split(resp).await;
    assert_eq!(s, 400);
    assert!(v["message"].as_str().unwrap().contains("malformed"), "{v}");
    assert_eq!(env.leg(&leg.participant_id).api_writes, 0);
    env.sb.shutdown().await;
}

/// A provisional save followed by the final code is one effective write; a second final write is a duplicate.
#[tokio::test]
async fn provisional_saves_are_not_duplicate_writes() {
    let env = start(SandboxConfig { preload: 3, ..quiet_config() }).await;
    let leg = env.sb.legs().into_iter().find(|l| l.state == "acw").unwrap();
    let code = env.code_for(&leg);
    let path = format!(
        "/api/v2/conversations/{}/{}/participants/{}/communications/{}/wrapup",
        leg.media_type.path(),
        leg.conversation_id,
        leg.participant_id,
        leg.communication_id
    );
    let (s, _, _) = env.send(Method::POST, &path, json!({"code": code, "provisional": true})).await;
    assert_eq!(s, 202);
    let (s, _, _) = env.send(Method::POST, &path, json!({"code": code, "provisional": true})).await;
    assert_eq!(s, 202);
    let (s, _) = env.write(&leg, &code).await;
    assert_eq!(s, 202);
    let r = env.sb.report();
    assert_eq!(r.violations.duplicate_writes, 0, "{:?}", r.violations);
    assert_eq!(env.leg(&leg.participant_id).api_writes, 3);

    let (s, _) = env.write(&leg, &code).await;
    assert_eq!(s, 202);
    let r = env.sb.report();
    assert_eq!(r.violations.duplicate_writes, 1, "{:?}", r.violations);
    assert!(r.violations.details.iter().any(|d| d.kind == "duplicate_write"));
    env.sb.shutdown().await;
}

/// `id` filters accept the comma-separated form the SDKs send (`id=a,b`) as well as repeated keys.
#[tokio::test]
async fn code_id_filters_accept_comma_separated_lists() {
    let env = start(quiet_config()).await;
    let (_, _, all) = env.get("/api/v2/routing/wrapupcodes?pageSize=100").await;
    let mut ids: Vec<String> =
        all["entities"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
    ids.sort();
    let two = &ids[..2];
    for q in [format!("id={},{}", two[0], two[1]), format!("id={}&id={}", two[0], two[1])] {
        let (s, _, v) = env.get(&format!("/api/v2/routing/wrapupcodes?pageSize=100&{q}")).await;
        assert_eq!(s, 200, "{v}");
        let mut got: Vec<&str> = v["entities"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
        got.sort();
        assert_eq!(got, [two[0].as_str(), two[1].as_str()], "{q}");
        assert_eq!(v["total"], 2);
    }
    env.sb.shutdown().await;
}

/// Conversation topic frames carry `ConversationEventTopicConversation`, not the REST `Conversation`.
#[tokio::test]
async fn conversation_event_bodies_have_only_event_model_fields() {
    let env = start(SandboxConfig { preload: 5, ..quiet_config() }).await;
    let leg = env.sb.legs().into_iter().find(|l| l.state == "acw").unwrap();
    // A provisional code is not shown (the event model cannot mark it); a final one is, without name/provisional.
    let path = format!(
        "/api/v2/conversations/{}/{}/participants/{}/communications/{}/wrapup",
        leg.media_type.path(),
        leg.conversation_id,
        leg.participant_id,
        leg.communication_id
    );
    let code = env.code_for(&leg);
    let (s, _, _) = env.send(Method::POST, &path, json!({"code": code, "provisional": true})).await;
    assert_eq!(s, 202);
    let body = |env: &common::Env| {
        env.sb.with_org(|o| {
            wrapup_sandbox::genesys::api::conversations::event_conversation_json(
                o,
                &o.conversations[&leg.conversation_id],
            )
        })
    };
    let v = body(&env);
    let media = leg.media_type.path();
    let agent = |v: &Value| v["participants"].as_array().unwrap().iter().find(|p| p["purpose"] == "agent").cloned();
    assert!(agent(&v).unwrap().get("wrapup").is_none(), "{v}");

    let (s, _) = env.write(&leg, &code).await;
    assert_eq!(s, 202);
    let v = body(&env);
    for k in ["startTime", "endTime", "conversationIds", "selfUri"] {
        assert!(v.get(k).is_none(), "{k}: {v}");
    }
    assert_eq!(v["id"], leg.conversation_id);
    assert!(v["maxParticipants"].is_number() && v["recordingState"].is_string());
    let div = &v["divisions"][0]["division"];
    assert!(div["id"].is_string() && div.get("name").is_none(), "{div}");
    for p in v["participants"].as_array().unwrap() {
        for k in ["startTime", "queueName", "userUri", "wrapupSkipped"] {
            assert!(p.get(k).is_none(), "{k}: {p}");
        }
        assert!(p["id"].is_string() && p["purpose"].is_string(), "{p}");
        let comm = &p[media][0];
        assert!(comm["id"].is_string() && comm.get("startAlertingTime").is_none(), "{comm}");
    }
    let a = agent(&v).unwrap();
    assert_eq!(a["wrapup"]["code"], code);
    assert!(a["wrapup"].get("name").is_none() && a["wrapup"].get("provisional").is_none(), "{a}");
    assert!(a[media][0]["wrapup"].get("provisional").is_none(), "{a}");
    assert_eq!(a[media][0]["afterCallWork"]["state"], "complete");
    assert!(a["endAcwTime"].is_string() && a["userId"].is_string() && a["queueId"].is_string(), "{a}");
    env.sb.shutdown().await;
}

/// `GET /api/v2/routing/queues` honours `id` too (`RoutingApi.get_routing_queues(id=[…])`).
#[tokio::test]
async fn queue_listings_filter_by_id() {
    let env = start(quiet_config()).await;
    let (_, _, all) = env.get("/api/v2/routing/queues?pageSize=100").await;
    let ids: Vec<&str> = all["entities"].as_array().unwrap().iter().map(|q| q["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 5);
    let (s, _, v) = env.get(&format!("/api/v2/routing/queues?id={},{}", ids[0], ids[3])).await;
    assert_eq!(s, 200, "{v}");
    let got: Vec<&str> = v["entities"].as_array().unwrap().iter().map(|q| q["id"].as_str().unwrap()).collect();
    assert_eq!(got, [ids[0], ids[3]]);
    assert_eq!(v["total"], 2);
    env.sb.shutdown().await;
}

/// A consult leg: `consultParticipantId` is on the generic participant and on `CallMediaParticipant` only.
#[tokio::test]
async fn consult_participant_id_only_on_call_media_participants() {
    let mut cfg = mixed_media(0);
    cfg.traffic_autostart = true;
    cfg.center.arrival_rate_per_sec = 1.0;
    cfg.center.consult_probability = 1.0;
    cfg.center.talk_time = wrapup_sandbox::Dist::new(20.0, 20.0, 20.0);
    let env = start(cfg).await;
    let mut checked = std::collections::BTreeSet::new();
    for _ in 0..120 {
        env.clock.advance(1.0);
        let (_, _, _) = env.get("/api/v2/users/nobody/routingstatus").await; // catch the simulation up
        let consults: Vec<(String, wrapup_sandbox::Media)> = env.sb.with_org(|o| {
            o.conversations
                .values()
                .filter(|c| c.participants.iter().any(|p| p.consult_participant_id.is_some()))
                .map(|c| (c.id.clone(), c.media))
                .collect()
        });
        for (cid, media) in consults {
            let (_, _, generic) = env.get(&format!("/api/v2/conversations/{cid}")).await;
            assert!(generic["participants"].as_array().unwrap().iter().any(|p| p["consultParticipantId"].is_string()));
            let (_, _, v) = env.get(&format!("/api/v2/conversations/{}/{cid}", media.path())).await;
            let has = v["participants"].as_array().unwrap().iter().any(|p| p.get("consultParticipantId").is_some());
            assert_eq!(has, media == wrapup_sandbox::Media::Calls, "{media:?}: {v}");
            checked.insert(media.path());
        }
        if checked.len() >= 2 && checked.contains("calls") {
            break;
        }
    }
    assert!(checked.contains("calls") && checked.len() >= 2, "consults seen on {checked:?}");
    env.sb.shutdown().await;
}

/// The media variant of the queue topic gets the media-specific event body (flattened participants).
#[tokio::test]
async fn queue_media_variant_bodies_are_the_media_specific_event_model() {
    let env = start(mixed_media(20)).await;
    for leg in env.sb.legs().into_iter().filter(|l| l.state == "acw") {
        let code = env.code_for(&leg);
        let (s, _) = env.write(&leg, &code).await;
        assert_eq!(s, 202);
        let v = env.sb.with_org(|o| {
            wrapup_sandbox::genesys::api::conversations::event_media_conversation_json(
                o,
                &o.conversations[&leg.conversation_id],
            )
        });
        assert!(v.get("selfUri").is_none(), "{v}");
        assert_eq!(v.get("recordingState").is_some(), leg.media_type == wrapup_sandbox::Media::Calls, "{v}");
        assert!(v["divisions"][0]["division"].get("name").is_none(), "{v}");
        let a = v["participants"].as_array().unwrap().iter().find(|p| p["id"] == leg.participant_id).unwrap();
        for k in ["startAlertingTime", "calls", "callbacks", "emails", "messages", "userId", "queueId"] {
            assert!(a.get(k).is_none(), "{k}: {a}");
        }
        assert_eq!(a["user"]["id"], leg.user_id.clone().unwrap());
        assert!(a["user"].get("selfUri").is_none() && a["queue"].get("selfUri").is_none(), "{a}");
        assert_eq!(a["wrapup"]["code"], code);
        assert!(a["wrapup"].get("provisional").is_none() && a["wrapup"].get("name").is_none(), "{a}");
        assert!(a["state"].is_string() && a["endAcwTime"].is_string(), "{a}");
    }
    env.sb.shutdown().await;
}
