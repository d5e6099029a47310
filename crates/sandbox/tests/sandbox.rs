//! Integration tests of the sandbox over HTTP on 127.0.0.1, with a manual clock.

mod common;

use common::{quiet_config, start};
use reqwest::Method;
use serde_json::{json, Value};
use wrapup_sandbox::{
    ApplyAfterAcw, Behaviours, ClientCredentialsWrites, CodedBy, GetWrapupUnset, RateLimit, RateWindow, SandboxConfig,
    SecondWrite, SYSTEM_TIMEOUT_CODE_ID,
};

fn preloaded(n: usize) -> SandboxConfig {
    SandboxConfig { preload: n, ..quiet_config() }
}

fn assert_error_body(v: &Value, status: u16, code: &str) {
    assert_eq!(v["status"], status, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].is_string(), "{v}");
    assert!(v["contextId"].is_string(), "{v}");
    assert!(v["details"].is_array() && v["errors"].is_array(), "{v}");
    assert!(v["messageParams"].is_object(), "{v}");
}

#[tokio::test]
async fn token_endpoint_issues_bearer_tokens_and_rejects_bad_clients_and_grants() {
    let env = start(quiet_config()).await;
    let (id, secret) = env.sb.credentials()[0].clone();
    let url = format!("{}/oauth/token", env.base);
    let ok: Value = env
        .http
        .post(&url)
        .basic_auth(&id, Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["token_type"], "bearer");
    assert_eq!(ok["expires_in"], 86_399);
    assert!(ok["access_token"].as_str().unwrap().len() > 20);

    let bad_secret = env.http.post(&url).basic_auth(&id, Some("nope")).form(&[("grant_type", "client_credentials")]);
    let r = bad_secret.send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "invalid_client");

    let r =
        env.http.post(&url).basic_auth(&id, Some(&secret)).form(&[("grant_type", "password")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "unauthorized_client");
    assert!(v["description"].as_str().unwrap().contains("password grant type"));

    let r = env.http.post(&url).basic_auth(&id, Some(&secret)).form(&[("x", "y")]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn api_calls_without_valid_credentials_get_the_documented_401_bodies() {
    let env = start(SandboxConfig { token_lifetime_secs: 1, ..quiet_config() }).await;
    let url = format!("{}/api/v2/routing/wrapupcodes", env.base);

    let (s, h, v) = common::split(env.http.get(&url).send().await.unwrap()).await;
    assert_eq!(s, 401);
    assert_error_body(&v, 401, "authentication.required");
    assert_eq!(h["inin-correlation-id"].to_str().unwrap(), v["contextId"].as_str().unwrap());

    let (s, _, v) = common::split(env.http.get(&url).bearer_auth("forged").send().await.unwrap()).await;
    assert_eq!(s, 401);
    assert_error_body(&v, 401, "bad.credentials");

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, _, v) = env.get("/api/v2/routing/wrapupcodes").await;
    assert_eq!(s, 401);
    assert_error_body(&v, 401, "credentials.expired");
    env.sb.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_retry_after_and_counts_it() {
    let env = start(SandboxConfig { rate_limit_per_minute: 5, ..quiet_config() }).await;
    for i in 1..=5 {
        let (s, h, _) = env.get("/api/v2/routing/queues").await;
        assert_eq!(s, 200);
        assert_eq!(h["inin-ratelimit-count"].to_str().unwrap(), i.to_string());
        assert_eq!(h["inin-ratelimit-allowed"].to_str().unwrap(), "5");
        assert!(h.contains_key("inin-ratelimit-reset"));
        assert!(h.contains_key("inin-correlation-id"));
    }
    let (s, h, v) = env.get("/api/v2/routing/queues").await;
    assert_eq!(s, 429);
    assert_error_body(&v, 429, "too.many.requests");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // Another token has its own budget.
    let fresh = env.new_token().await;
    let r = env.http.get(format!("{}/api/v2/routing/queues", env.base)).bearer_auth(fresh).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let report = env.sb.report();
    assert_eq!(report.api.rate_limited, 1);
    assert_eq!(report.api.total, 9, "7 API calls and 2 token requests");
    assert_eq!(report.api.by_endpoint["POST /oauth/token"]["200"], 2);
    assert_eq!(report.api.by_endpoint["GET /api/v2/routing/queues"]["429"], 1);
    assert_eq!(report.api.calls_before_retry_after, 0, "the 429 itself is not an early call");
    // A client that ignores Retry-After and asks again (after the in-flight grace) is caught.
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let (s, _, _) = env.get("/api/v2/routing/queues").await;
    assert_eq!(s, 429);
    assert_eq!(env.sb.report().api.calls_before_retry_after, 1);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn each_rate_limit_window_stamps_its_own_count_and_reset() {
    // 3 per minute. A fixed or sliding window frees its first request a minute after it; a token bucket gets a token
    // back every 20 s, so its count falls 20 s after a request, and a refusal waits for that token only.
    for (window, fall) in [(RateWindow::Fixed, 60), (RateWindow::Sliding, 60), (RateWindow::TokenBucket, 20)] {
        let env = start(SandboxConfig { rate_limit_per_minute: 3, rate_limit_window: window, ..quiet_config() }).await;
        let header = |h: &reqwest::header::HeaderMap, name: &str| -> u64 { h[name].to_str().unwrap().parse().unwrap() };
        for i in 1..=3 {
            let (s, h, _) = env.get("/api/v2/routing/queues").await;
            assert_eq!(s, 200, "{window:?}");
            assert_eq!(header(&h, "inin-ratelimit-count"), i, "{window:?}");
            assert_eq!(header(&h, "inin-ratelimit-allowed"), 3, "{window:?}");
            assert!((fall - 1..=fall).contains(&header(&h, "inin-ratelimit-reset")), "{window:?}: {h:?}");
        }
        let (s, h, _) = env.get("/api/v2/routing/queues").await;
        assert_eq!(s, 429, "{window:?}");
        assert_eq!(header(&h, "inin-ratelimit-count"), 3, "{window:?}");
        assert!((fall - 1..=fall).contains(&header(&h, "retry-after")), "{window:?}: {h:?}");
        assert_eq!(header(&h, "retry-after"), header(&h, "inin-ratelimit-reset"), "{window:?}");
        env.sb.shutdown().await;
    }
}

#[tokio::test]
async fn the_rate_limit_and_its_window_can_be_changed_at_runtime() {
    let env = start(quiet_config()).await;
    let control = format!("{}/sandbox/v1", env.base);
    let body = json!({"per_minute": 2, "window": "sliding", "cxone": {"per_minute": 5, "window": "token_bucket"}});
    let r = env.http.put(format!("{control}/rate-limit")).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, body);
    let cfg: Value = env.http.get(format!("{control}/config")).send().await.unwrap().json().await.unwrap();
    assert_eq!((cfg["rate_limit_per_minute"].clone(), cfg["rate_limit_window"].clone()), (json!(2), json!("sliding")));
    assert_eq!(cfg["cxone"]["rate_limit_window"], "token_bucket");
    assert_eq!(env.sb.cxone_rate_limit(), RateLimit { per_minute: 5, window: RateWindow::TokenBucket });
    // The token issued at start now counts under the new semantics, from nothing.
    assert_eq!(env.get("/api/v2/routing/queues").await.0, 200);
    assert_eq!(env.get("/api/v2/routing/queues").await.0, 200);
    assert_eq!(env.get("/api/v2/routing/queues").await.0, 429);
    // Only what is given changes.
    let r = env.http.put(format!("{control}/rate-limit")).json(&json!({"per_minute": 10})).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!((v["per_minute"].clone(), v["window"].clone()), (json!(10), json!("sliding")));
    for bad in [json!({"window": "hourly"}), json!({"per_minute": 0}), json!({"burst": 3})] {
        let r = env.http.put(format!("{control}/rate-limit")).json(&bad).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
    assert_eq!(env.sb.rate_limit(), RateLimit { per_minute: 10, window: RateWindow::Sliding });
    env.sb.shutdown().await;
}

#[tokio::test]
async fn unknown_resources_are_404_not_found() {
    let env = start(quiet_config()).await;
    for path in [
        "/api/v2/conversations/00000000-0000-0000-0000-000000000000",
        "/api/v2/conversations/calls/00000000-0000-0000-0000-000000000000",
        "/api/v2/routing/wrapupcodes/00000000-0000-0000-0000-000000000000",
        "/api/v2/routing/queues/nope",
        "/api/v2/nothing/here",
    ] {
        let (s, _, v) = env.get(path).await;
        assert_eq!(s, 404, "{path}");
        assert_error_body(&v, 404, "not.found");
    }
    env.sb.shutdown().await;
}

#[tokio::test]
async fn a_preloaded_leg_shows_pending_acw_and_an_api_write_completes_it() {
    let env = start(preloaded(5)).await;
    let leg = env.leg_on("Support");
    assert_eq!(leg.state, "acw");
    assert_eq!(leg.wrapup_prompt.as_deref(), Some("timeout"));
    assert!(leg.acw_deadline.is_some());

    let (s, h, conv) = env.get(&format!("/api/v2/conversations/{}", leg.conversation_id)).await;
    assert_eq!(s, 200);
    assert!(h.contains_key("inin-correlation-id"));
    let agent = conv["participants"].as_array().unwrap().iter().find(|p| p["purpose"] == "agent").unwrap();
    assert_eq!(agent["wrapupRequired"], true);
    assert_eq!(agent["wrapupPrompt"], "timeout");
    assert_eq!(agent["wrapupTimeoutMs"], 60_000);
    assert!(agent["startAcwTime"].is_string() && agent["endAcwTime"].is_null());
    assert_eq!(agent["userId"], leg.user_id.clone().unwrap());
    assert_eq!(agent["queueId"], leg.queue_id.clone().unwrap());
    let media = common::media_path(leg.media_type);
    let comm = &agent[media][0];
    assert_eq!(comm["id"], leg.communication_id);
    assert_eq!(comm["afterCallWork"]["state"], "pending");
    assert!(comm["state"] == "disconnected" || comm["state"] == "terminated");

    // Media-specific view: user/queue objects, no afterCallWork.
    let (s, _, mconv) = env.get(&format!("/api/v2/conversations/{media}/{}", leg.conversation_id)).await;
    assert_eq!(s, 200);
    let magent = mconv["participants"].as_array().unwrap().iter().find(|p| p["purpose"] == "agent").unwrap();
    assert_eq!(magent["user"]["id"], leg.user_id.clone().unwrap());
    assert_eq!(magent["queue"]["id"], leg.queue_id.clone().unwrap());
    assert!(magent.get("afterCallWork").is_none());

    // Codes available to the participant: a bare array.
    let (s, _, codes) = env
        .get(&format!("/api/v2/conversations/{}/participants/{}/wrapupcodes", leg.conversation_id, leg.participant_id))
        .await;
    assert_eq!(s, 200);
    assert!(codes.as_array().unwrap().len() >= 2);

    let user = leg.user_id.clone().unwrap();
    let (_, _, rs) = env.get(&format!("/api/v2/users/{user}/routingstatus")).await;
    assert_eq!(rs["status"], "INTERACTING");

    let code = env.code_for(&leg);
    let (s, body) = env.write(&leg, &code).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body, Value::Null);

    let (_, _, w) = env
        .get(&format!("/api/v2/conversations/{}/participants/{}/wrapup", leg.conversation_id, leg.participant_id))
        .await;
    assert_eq!(w["code"], code);
    assert_eq!(w["notes"], "by test");
    assert!(w["endTime"].is_string());

    let (_, _, conv) = env.get(&format!("/api/v2/conversations/{}", leg.conversation_id)).await;
    let agent = conv["participants"].as_array().unwrap().iter().find(|p| p["purpose"] == "agent").unwrap();
    assert_eq!(agent[media][0]["afterCallWork"]["state"], "complete");
    assert!(agent["endAcwTime"].is_string());

    let (_, _, rs) = env.get(&format!("/api/v2/users/{user}/routingstatus")).await;
    assert_eq!(rs["status"], "IDLE");

    let truth = env.leg(&leg.participant_id);
    assert_eq!(truth.coded_by, CodedBy::Api);
    assert_eq!(truth.api_writes, 1);
    assert_eq!(truth.final_code.as_deref(), Some(code.as_str()));
    assert!(truth.window_closed_at.is_some());
    let report = env.sb.report();
    assert_eq!(report.legs.coded_by_api, 1);
    assert_eq!(report.violations.overwrites + report.violations.outside_window + report.violations.duplicate_writes, 0);
    assert_eq!(
        report.api.by_endpoint
            ["POST /api/v2/conversations/{media}/{cid}/participants/{pid}/communications/{commId}/wrapup"]["202"],
        1
    );
    env.sb.shutdown().await;
}

#[tokio::test]
async fn a_write_with_an_unknown_code_is_a_400_with_a_clear_error_body() {
    let env = start(preloaded(1)).await;
    let leg = env.sb.legs()[0].clone();
    let (s, v) = env.write(&leg, "11111111-2222-3333-4444-555555555555").await;
    assert_eq!(s, 400);
    assert_error_body(&v, 400, "invalid.value");
    assert!(v["message"].as_str().unwrap().contains("11111111-2222-3333-4444-555555555555"));
    assert_eq!(env.leg(&leg.participant_id).api_writes, 0);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn patch_with_only_wrapup_is_accepted_and_other_fields_on_an_ended_leg_are_403() {
    let env = start(preloaded(1)).await;
    let leg = env.sb.legs()[0].clone();
    let path = format!("/api/v2/conversations/{}/participants/{}", leg.conversation_id, leg.participant_id);
    let (s, _, v) =
        env.send(Method::PATCH, &path, json!({"state": "disconnected", "wrapup": {"code": env.code_for(&leg)}})).await;
    assert_eq!(s, 403);
    assert_error_body(&v, 403, "not.authorized");
    assert_eq!(v["messageParams"]["type"], "Conversation");
    assert_eq!(v["messageWithParams"], "Access to {type} {id} is forbidden.");
    assert_eq!(env.leg(&leg.participant_id).api_writes, 0);

    let media_path = format!(
        "/api/v2/conversations/{}/{}/participants/{}",
        leg.media_type.path(),
        leg.conversation_id,
        leg.participant_id
    );
    let (s, _, _) = env.send(Method::PATCH, &media_path, json!({"wrapup": {"code": env.code_for(&leg)}})).await;
    assert_eq!(s, 202);
    assert_eq!(env.leg(&leg.participant_id).coded_by, CodedBy::Api);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn each_acw_mode_closes_its_window_as_the_platform_does() {
    let env = start(preloaded(5)).await;
    let sales = env.leg_on("Sales"); // MANDATORY
    let support = env.leg_on("Support"); // MANDATORY_TIMEOUT 60 s
    let billing = env.leg_on("Billing"); // MANDATORY_FORCED_TIMEOUT 45 s
    let retention = env.leg_on("Retention"); // OPTIONAL
    let callbacks = env.leg_on("Callbacks"); // AGENT_REQUESTED 30 s (preloaded legs asked for ACW)
    assert_eq!(sales.wrapup_prompt.as_deref(), Some("mandatory"));
    assert!(sales.acw_deadline.is_none());
    assert_eq!(billing.wrapup_prompt.as_deref(), Some("forcedTimeout"));
    assert_eq!(retention.wrapup_prompt.as_deref(), Some("optional"));
    assert_eq!(callbacks.wrapup_prompt.as_deref(), Some("agentRequested"));

    // Forced timeout: an early code closes the window but the agent stays INTERACTING until the deadline.
    let (s, _) = env.write(&billing, &env.code_for(&billing)).await;
    assert_eq!(s, 202);
    let user = billing.user_id.clone().unwrap();
    let (_, _, rs) = env.get(&format!("/api/v2/users/{user}/routingstatus")).await;
    assert_eq!(rs["status"], "INTERACTING");

    env.clock.advance(70.0);
    let support = env.leg(&support.participant_id);
    assert_eq!(support.coded_by, CodedBy::SystemTimeout);
    assert_eq!(support.final_code.as_deref(), Some(SYSTEM_TIMEOUT_CODE_ID));
    assert_eq!(support.final_code_name.as_deref(), Some("ININ-WRAP-UP-TIMEOUT"));
    assert_eq!(env.leg(&callbacks.participant_id).coded_by, CodedBy::SystemTimeout);
    let (_, _, rs) = env.get(&format!("/api/v2/users/{user}/routingstatus")).await;
    assert_eq!(rs["status"], "IDLE");
    assert_eq!(env.leg(&billing.participant_id).coded_by, CodedBy::Api);

    // MANDATORY never times out; OPTIONAL is skipped by the agent (skip delay 1000 s in the quiet config).
    env.clock.advance(2000.0);
    let sales_now = env.leg(&sales.participant_id);
    assert_eq!(sales_now.state, "acw");
    assert!(sales_now.window_closed_at.is_none());
    let retention_now = env.leg(&retention.participant_id);
    assert_eq!(retention_now.coded_by, CodedBy::Skipped);
    let (_, _, conv) = env.get(&format!("/api/v2/conversations/{}", retention.conversation_id)).await;
    let agent = conv["participants"].as_array().unwrap().iter().find(|p| p["purpose"] == "agent").unwrap();
    assert_eq!(agent["wrapupSkipped"], true);
    assert_eq!(agent[retention.media_type.path()][0]["afterCallWork"]["state"], "skipped");

    let r = env.sb.report();
    assert_eq!(r.legs.total, 5);
    assert_eq!(r.legs.open, 1);
    assert_eq!(r.legs.system_timeout, 2);
    assert_eq!(r.legs.skipped, 1);
    assert_eq!(r.legs.coded_by_api, 1);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn live_traffic_walks_legs_through_alerting_connected_acw_and_done() {
    let mut cfg = quiet_config();
    cfg.center.arrival_rate_per_sec = 0.05;
    cfg.center.agent.requests_acw = 0.0;
    cfg.traffic_autostart = true;
    let env = start(cfg).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..400 {
        env.clock.advance(5.0);
        for l in env.sb.legs() {
            seen.insert(l.state.clone());
        }
    }
    for s in ["alerting", "connected", "acw", "done"] {
        assert!(seen.contains(s), "never saw {s}: {seen:?}");
    }
    let r = env.sb.report();
    assert!(r.legs.total > 20, "{r:?}");
    // AGENT_REQUESTED without a request ends without ACW.
    assert!(r.legs.no_acw > 0, "{r:?}");
    assert!(r.legs.system_timeout > 0, "{r:?}");
    assert!(r.legs.skipped > 0, "{r:?}");
    for l in env.sb.legs().iter().filter(|l| l.coded_by == CodedBy::None && l.state == "done") {
        assert_eq!(l.wrapup_prompt.as_deref(), Some("agentRequested"));
        assert!(!l.wrapup_required);
    }
    env.sb.shutdown().await;
}

#[tokio::test]
async fn writing_over_an_agents_provisional_code_is_an_overwrite() {
    let mut cfg = preloaded(10);
    cfg.center.agent.provisional_during = 1.0;
    cfg.center.agent.late_delay = wrapup_sandbox::Dist::new(500.0, 500.0, 500.0);
    let env = start(cfg).await;
    let leg = env.leg_on("Sales");
    let (s, _, w) = env
        .get(&format!(
            "/api/v2/conversations/{}/participants/{}/wrapup?provisional=true",
            leg.conversation_id, leg.participant_id
        ))
        .await;
    assert_eq!(s, 200);
    assert!(w["code"].is_string(), "the agent's provisional code is visible: {w}");
    let (_, _, w) = env
        .get(&format!("/api/v2/conversations/{}/participants/{}/wrapup", leg.conversation_id, leg.participant_id))
        .await;
    assert_eq!(w, json!({}), "not visible without provisional=true");

    let (s, _) = env.write(&leg, &env.code_for(&leg)).await;
    assert_eq!(s, 202);
    let truth = env.leg(&leg.participant_id);
    assert!(truth.agent_coded_before_api);
    let r = env.sb.report();
    assert_eq!(r.violations.overwrites, 1);
    assert_eq!(r.violations.overwrite_attempts, 1);
    assert_eq!(r.violations.details[0].kind, "overwrite");
    env.sb.shutdown().await;
}

#[tokio::test]
async fn second_writes_overwrite_or_are_rejected_by_switch() {
    let env = start(preloaded(2)).await;
    let legs = env.sb.legs();
    let (a, b) = (&legs[0], &legs[1]);
    assert_eq!(env.write(a, &env.code_for(a)).await.0, 202);
    // Default: overwrite (202) and a duplicate write on record.
    assert_eq!(env.write(a, &env.code_for(a)).await.0, 202);
    let r = env.sb.report();
    assert_eq!(r.violations.duplicate_writes, 1);
    assert_eq!(env.leg(&a.participant_id).api_writes, 2);

    env.sb.set_behaviours(Behaviours { second_write: SecondWrite::Reject, ..Behaviours::default() });
    assert_eq!(env.write(b, &env.code_for(b)).await.0, 202);
    let (s, v) = env.write(b, &env.code_for(b)).await;
    assert_eq!(s, 400);
    assert_error_body(&v, 400, "bad.request");
    assert_eq!(env.leg(&b.participant_id).api_writes, 1);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn writes_outside_the_window_are_counted_and_follow_the_after_acw_switch() {
    let mut cfg = preloaded(5);
    cfg.center.arrival_rate_per_sec = 1.0;
    let env = start(cfg).await;
    // A timed-out leg: window closed.
    env.clock.advance(70.0);
    let closed = env.sb.legs().into_iter().find(|l| l.coded_by == CodedBy::SystemTimeout).unwrap();
    assert_eq!(env.write(&closed, &env.code_for(&closed)).await.0, 202, "default: accepted");
    assert_eq!(env.sb.report().violations.outside_window, 1);
    assert_eq!(env.leg(&closed.participant_id).coded_by, CodedBy::Api);

    env.sb.set_behaviours(Behaviours { apply_after_acw: ApplyAfterAcw::Rejected, ..Behaviours::default() });
    let other = env
        .sb
        .legs()
        .into_iter()
        .find(|l| l.coded_by == CodedBy::SystemTimeout && l.participant_id != closed.participant_id)
        .unwrap();
    assert_eq!(env.write(&other, &env.code_for(&other)).await.0, 400);
    assert_eq!(env.sb.report().violations.outside_window, 2);

    // A live leg (agent still talking): too early.
    env.sb.start_traffic();
    env.clock.advance(30.0);
    let live = env.sb.legs().into_iter().find(|l| l.state == "connected" || l.state == "alerting").unwrap();
    let (s, v) = env.write(&live, &env.code_for(&live)).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(env.sb.report().violations.outside_window, 3);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn client_credentials_writes_can_be_forbidden() {
    let env = start(preloaded(1)).await;
    env.sb.set_behaviours(Behaviours {
        client_credentials_writes: ClientCredentialsWrites::Forbidden,
        ..Behaviours::default()
    });
    let leg = env.sb.legs()[0].clone();
    let (s, v) = env.write(&leg, &env.code_for(&leg)).await;
    assert_eq!(s, 403);
    assert_error_body(&v, 403, "not.authorized");
    env.sb.shutdown().await;
}

#[tokio::test]
async fn get_wrapup_when_unset_follows_its_switch() {
    let env = start(preloaded(1)).await;
    let leg = env.sb.legs()[0].clone();
    let path = format!(
        "/api/v2/conversations/{}/{}/participants/{}/wrapup",
        leg.media_type.path(),
        leg.conversation_id,
        leg.participant_id
    );
    let (s, _, v) = env.get(&path).await;
    assert_eq!((s, v), (200, json!({})));
    env.sb.set_behaviours(Behaviours { get_wrapup_unset: GetWrapupUnset::NotFound, ..Behaviours::default() });
    let (s, _, v) = env.get(&path).await;
    assert_eq!(s, 404);
    assert_error_body(&v, 404, "not.found");
    env.sb.shutdown().await;
}

#[tokio::test]
async fn control_api_switches_behaviours_and_faults_at_runtime() {
    let env = start(preloaded(1)).await;
    let r = env
        .http
        .put(format!("{}/sandbox/v1/behaviours", env.base))
        .json(&json!({"second_write": "reject", "get_wrapup_unset": "notFound"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b = env.sb.with_org(|o| o.behaviours);
    assert_eq!(b.second_write, SecondWrite::Reject);
    assert_eq!(b.get_wrapup_unset, GetWrapupUnset::NotFound);

    let r = env.http.put(format!("{}/sandbox/v1/faults", env.base)).json(&json!("hostile")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.sb.with_org(|o| o.faults.name.clone()), "hostile");
    let r =
        env.http.put(format!("{}/sandbox/v1/faults", env.base)).json(&json!({"name": "calm"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.sb.with_org(|o| o.faults.http_5xx_rate), 0.0);

    let r = env
        .http
        .put(format!("{}/sandbox/v1/traffic", env.base))
        .json(&json!({"arrival_rate_per_sec": 3.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(env.sb.with_org(|o| o.center.arrival_rate_per_sec), 3.5);

    let report: Value =
        env.http.get(format!("{}/sandbox/v1/report", env.base)).send().await.unwrap().json().await.unwrap();
    for k in ["legs", "violations", "api", "events"] {
        assert!(report[k].is_object(), "{report}");
    }
    assert_eq!(report["legs"]["total"], 1);
    let legs: Value = env.http.get(format!("{}/sandbox/v1/legs", env.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(legs[0]["codedBy"], "none");
    assert!(legs[0]["acwStartedAt"].is_string());
    env.sb.shutdown().await;
}

#[tokio::test]
async fn hostile_faults_produce_5xx_and_429_storms() {
    let env = start(quiet_config()).await;
    env.sb.set_faults(wrapup_sandbox::FaultProfile { http_5xx_rate: 0.5, ..wrapup_sandbox::FaultProfile::calm() });
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..60 {
        let (s, _, v) = env.get("/api/v2/routing/queues").await;
        if s >= 500 {
            assert!(v["code"].is_string());
        }
        *statuses.entry(s).or_insert(0) += 1;
    }
    assert!(statuses.get(&200).copied().unwrap_or(0) > 5, "{statuses:?}");
    assert!(statuses.keys().any(|s| *s >= 500), "{statuses:?}");

    env.sb.set_faults(wrapup_sandbox::FaultProfile {
        storm_rate: 1.0,
        storm_secs: 30,
        ..wrapup_sandbox::FaultProfile::calm()
    });
    let (s, h, _) = env.get("/api/v2/routing/queues").await;
    assert_eq!(s, 429);
    assert!(h.contains_key("retry-after"));
    env.sb.set_faults(wrapup_sandbox::FaultProfile::calm());
    let (s, _, _) = env.get("/api/v2/routing/queues").await;
    assert_eq!(s, 200);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn the_catalog_lists_pages_sorts_filters_and_edits_codes_and_queue_assignments() {
    let env = start(quiet_config()).await;
    let (s, _, all) = env.get("/api/v2/routing/wrapupcodes").await;
    assert_eq!(s, 200);
    let total = all["total"].as_u64().unwrap();
    assert_eq!(total, 16);
    assert_eq!(all["pageSize"], 25);
    assert_eq!(all["pageNumber"], 1);
    assert_eq!(all["pageCount"], 1);
    for k in ["firstUri", "selfUri", "lastUri"] {
        assert!(all[k].is_string(), "{k}");
    }
    let names: Vec<String> =
        all["entities"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort_by_key(|n| n.to_lowercase());
    assert_eq!(names, sorted);
    let first = &all["entities"][0];
    for k in
        ["id", "name", "division", "description", "dateCreated", "dateModified", "createdBy", "modifiedBy", "selfUri"]
    {
        assert!(!first[k].is_null(), "missing {k}");
    }

    let (_, _, page) = env.get("/api/v2/routing/wrapupcodes?pageSize=5&pageNumber=2&sortOrder=descending").await;
    assert_eq!(page["entities"].as_array().unwrap().len(), 5);
    assert_eq!(page["pageCount"], 4);
    assert!(page["nextUri"].is_string() && page["previousUri"].is_string());
    assert_eq!(page["entities"][0]["name"], sorted[sorted.len() - 6].as_str());

    let (_, _, exact) = env.get("/api/v2/routing/wrapupcodes?name=sale%20completed").await;
    assert_eq!(exact["total"], 1);
    let (_, _, prefix) = env.get("/api/v2/routing/wrapupcodes?name=Follow*").await;
    assert_eq!(prefix["total"], 1);
    let (s, _, v) = env.get("/api/v2/routing/wrapupcodes?pageSize=abc").await;
    assert_eq!(s, 400);
    assert_error_body(&v, 400, "invalid.query.param.value");

    let (s, _, created) = env.send(Method::POST, "/api/v2/routing/wrapupcodes", json!({"name": "Brand new"})).await;
    assert_eq!(s, 200);
    let id = created["id"].as_str().unwrap().to_string();
    let (s, _, _) = env.send(Method::POST, "/api/v2/routing/wrapupcodes", json!({"name": "brand NEW"})).await;
    assert_eq!(s, 400);
    let (s, _, v) = env.send(Method::POST, "/api/v2/routing/wrapupcodes", json!({"description": "x"})).await;
    assert_eq!(s, 400);
    assert_error_body(&v, 400, "invalid.value");
    let (s, _, renamed) =
        env.send(Method::PUT, &format!("/api/v2/routing/wrapupcodes/{id}"), json!({"name": "Renamed"})).await;
    assert_eq!(s, 200);
    assert_eq!(renamed["name"], "Renamed");

    // Queues and their codes.
    let (_, _, queues) = env.get("/api/v2/routing/queues?pageSize=100").await;
    assert_eq!(queues["total"], 5);
    let support = queues["entities"].as_array().unwrap().iter().find(|q| q["name"] == "Support").unwrap().clone();
    assert_eq!(support["acwSettings"]["wrapupPrompt"], "MANDATORY_TIMEOUT");
    assert_eq!(support["acwSettings"]["timeoutMs"], 60_000);
    let qid = support["id"].as_str().unwrap();
    let (_, _, q) = env.get(&format!("/api/v2/routing/queues/{qid}")).await;
    assert_eq!(q["acwSettings"], support["acwSettings"]);

    let too_many: Vec<Value> = (0..101).map(|_| json!({"id": id})).collect();
    let (s, _, _) = env.send(Method::POST, &format!("/api/v2/routing/queues/{qid}/wrapupcodes"), json!(too_many)).await;
    assert_eq!(s, 400);
    let (s, _, added) =
        env.send(Method::POST, &format!("/api/v2/routing/queues/{qid}/wrapupcodes"), json!([{"id": id}])).await;
    assert_eq!(s, 200);
    assert_eq!(added[0]["id"], id.as_str());
    let (_, _, qcodes) = env.get(&format!("/api/v2/routing/queues/{qid}/wrapupcodes")).await;
    assert_eq!(qcodes["total"], 5);
    let (s, _, _) =
        env.send(Method::DELETE, &format!("/api/v2/routing/queues/{qid}/wrapupcodes/{id}"), json!(null)).await;
    assert_eq!(s, 204);
    let (s, _, _) =
        env.send(Method::DELETE, &format!("/api/v2/routing/queues/{qid}/wrapupcodes/{id}"), json!(null)).await;
    assert_eq!(s, 404);

    let (s, _, _) = env.send(Method::DELETE, &format!("/api/v2/routing/wrapupcodes/{id}"), json!(null)).await;
    assert_eq!(s, 204);
    let (s, _, _) = env.get(&format!("/api/v2/routing/wrapupcodes/{id}")).await;
    assert_eq!(s, 404);
    let (s, _, sys) = env.get(&format!("/api/v2/routing/wrapupcodes/{SYSTEM_TIMEOUT_CODE_ID}")).await;
    assert_eq!(s, 200);
    assert_eq!(sys["name"], "ININ-WRAP-UP-TIMEOUT");
    env.sb.shutdown().await;
}

/// Runs a center for a simulated hour and returns its legs.
async fn simulated_hour(seed: u64) -> Vec<wrapup_sandbox::LegTruth> {
    let mut cfg = SandboxConfig { seed, ..SandboxConfig::default() };
    cfg.center.arrival_rate_per_sec = 0.2;
    let env = start(cfg).await;
    for _ in 0..360 {
        env.clock.advance(10.0);
        env.sb.with_org(|_| ());
    }
    let legs = env.sb.legs();
    env.sb.shutdown().await;
    legs
}

#[tokio::test]
async fn the_same_seed_and_clock_give_the_same_center() {
    let a = simulated_hour(7).await;
    let b = simulated_hour(7).await;
    assert!(a.len() > 300, "{}", a.len());
    assert_eq!(a, b);
    let c = simulated_hour(8).await;
    assert_ne!(a, c);
    // The default center exercises every ending.
    for by in [CodedBy::Agent, CodedBy::SystemTimeout, CodedBy::Skipped] {
        assert!(a.iter().any(|l| l.coded_by == by), "{by:?}");
    }
    assert!(a.iter().any(|l| l.state == "done" && !l.wrapup_required), "some legs end without ACW");
    // Transfers and consults put several agent legs into one conversation.
    let mut per_conv = std::collections::HashMap::new();
    for l in &a {
        *per_conv.entry(&l.conversation_id).or_insert(0) += 1;
    }
    assert!(per_conv.values().any(|&n| n > 1));
}

/// A local event target that records what it receives and refuses the first `fail_first` POSTs with 503.
async fn receiver(
    fail_first: usize,
) -> (String, std::sync::Arc<parking_lot::Mutex<Vec<(axum::http::HeaderMap, Value)>>>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let got = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::new(AtomicUsize::new(0));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            let seen = seen.clone();
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) < fail_first {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                sink.lock().push((headers, serde_json::from_slice(&body).unwrap()));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

async fn wait_for(got: &parking_lot::Mutex<Vec<(axum::http::HeaderMap, Value)>>, n: usize) {
    for _ in 0..100 {
        if got.lock().len() >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("only {} events arrived", got.lock().len());
}

#[tokio::test]
async fn events_arrive_as_eventbridge_envelopes_with_the_api_key_and_are_retried() {
    let (url, got) = receiver(1).await;
    let mut cfg = preloaded(1);
    cfg.event_targets.push(wrapup_sandbox::EventTarget {
        url,
        api_key_header: Some("x-api-key".into()),
        api_key: Some("sekret".into()),
    });
    let env = start(cfg).await;
    // The preloaded leg's customer.end and user.end (the first POST is refused and retried).
    wait_for(&got, 2).await;
    let leg = env.sb.legs()[0].clone();
    let (h, ev) = got
        .lock()
        .iter()
        .find(|(_, e)| e["detail-type"] == "v2.detail.events.conversation.{id}.user.end")
        .cloned()
        .unwrap();
    assert_eq!(h["x-api-key"], "sekret");
    assert_eq!(ev["version"], "0");
    assert!(ev["id"].is_string() && ev["time"].is_string() && ev["account"].is_string() && ev["region"].is_string());
    assert!(ev["source"].as_str().unwrap().starts_with("aws.partner/genesys.com/cloud/"));
    assert!(ev["resources"].is_array());
    let d = &ev["detail"];
    assert_eq!(d["topicName"], format!("v2.detail.events.conversation.{}.user.end", leg.conversation_id));
    assert_eq!(d["version"], "2");
    assert!(d["metadata"]["CorrelationId"].is_string());
    assert!(d["timestamp"].is_string());
    let b = &d["eventBody"];
    assert!(b["eventTime"].is_i64());
    assert_eq!(b["conversationId"], leg.conversation_id);
    assert_eq!(b["participantId"], leg.participant_id);
    assert_eq!(b["sessionId"], leg.communication_id);
    assert_eq!(b["userId"], leg.user_id.clone().unwrap());
    assert_eq!(b["queueId"], leg.queue_id.clone().unwrap());
    assert!(b["divisionId"].is_string());
    assert!(["VOICE", "CALLBACK", "EMAIL", "MESSAGE"].contains(&b["mediaType"].as_str().unwrap()));
    assert!(b["disconnectType"].as_str().unwrap().chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    assert!(b["interactingDurationMs"].is_u64() && b["heldDurationMs"].is_u64());

    let code = env.code_for(&leg);
    assert_eq!(env.write(&leg, &code).await.0, 202);
    wait_for(&got, 4).await;
    let events = got.lock().clone();
    let acw =
        events.iter().map(|(_, e)| e).find(|e| e["detail-type"] == "v2.detail.events.conversation.{id}.acw").unwrap();
    let b = &acw["detail"]["eventBody"];
    assert_eq!(b["wrapupCode"], code.as_str());
    assert_eq!(b["wrapupNotes"], "by test");
    assert!(b["wrapupDurationMs"].is_i64());
    assert_eq!(b["userId"], leg.user_id.clone().unwrap());
    let wrapup = events
        .iter()
        .map(|(_, e)| e)
        .find(|e| e["detail-type"] == "v2.detail.events.conversation.{id}.wrapup")
        .unwrap();
    assert_eq!(wrapup["detail"]["eventBody"]["wrapupCode"], code.as_str());
    let r = env.sb.report();
    assert_eq!(r.events.delivered, 4);
    assert_eq!(r.events.failed_deliveries, 0);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn event_faults_drop_and_duplicate_events() {
    let (url, got) = receiver(0).await;
    let mut cfg = preloaded(40);
    cfg.faults = wrapup_sandbox::FaultProfile {
        event_drop_rate: 0.3,
        event_duplicate_rate: 0.3,
        ..wrapup_sandbox::FaultProfile::calm()
    };
    cfg.event_targets.push(wrapup_sandbox::EventTarget { url, api_key_header: None, api_key: None });
    let env = start(cfg).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = env.sb.report();
    assert!(r.events.dropped > 0 && r.events.duplicated > 0, "{:?}", r.events);
    assert_eq!(r.events.dropped + r.events.delivered - r.events.duplicated, 80, "{:?}", r.events);
    let ids: Vec<String> = got.lock().iter().map(|(_, e)| e["id"].as_str().unwrap().to_string()).collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert!(unique.len() < ids.len(), "duplicates are redeliveries of the same envelope id");
    env.sb.shutdown().await;
}

#[test]
fn cli_flags_override_the_config_file() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: wrapup_sandbox::SandboxArgs,
    }
    let dir = std::env::temp_dir().join(format!("wrapup-sandbox-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sandbox.toml");
    std::fs::write(&file, "seed = 3\npreload = 9\nfaults = \"calm\"\n[behaviours]\nsecond_write = \"reject\"\n")
        .unwrap();
    let cli = Cli::parse_from([
        "x",
        "--config",
        file.to_str().unwrap(),
        "--preload",
        "4",
        "--faults",
        "hostile",
        "--event-target",
        "http://127.0.0.1:1/e",
        "--event-api-key",
        "k",
    ]);
    let cfg = wrapup_sandbox::cli::config_from_args(&cli.args).unwrap();
    assert_eq!(cfg.seed, 3);
    assert_eq!(cfg.preload, 4);
    assert_eq!(cfg.faults.name, "hostile");
    assert_eq!(cfg.behaviours.second_write, SecondWrite::Reject);
    assert_eq!(cfg.event_targets[0].api_key.as_deref(), Some("k"));
    assert_eq!(cli.args.listen, "127.0.0.1:8089");
    std::fs::remove_dir_all(&dir).ok();

    let by_name: SandboxConfig = toml::from_str("faults = \"hostile\"").unwrap();
    assert_eq!(by_name.faults, wrapup_sandbox::FaultProfile::hostile());
    let table: SandboxConfig = toml::from_str("[faults]\nname = \"custom\"\nhttp_5xx_rate = 0.5").unwrap();
    assert_eq!(table.faults.http_5xx_rate, 0.5);
    assert!(toml::from_str::<SandboxConfig>("no_such_field = 1").is_err());
}

#[tokio::test]
async fn analytics_details_query_finds_legs_in_acw_and_coded_legs_by_segment_filters() {
    let env = start(preloaded(5)).await;
    let legs = env.sb.legs();
    let coded = legs[0].clone();
    let code = env.code_for(&coded);
    assert_eq!(env.write(&coded, &code).await.0, 202);
    let interval = "2026-03-02T00:00:00.000Z/2026-03-03T00:00:00.000Z";
    let q = |filters: Value| json!({"interval": interval, "order": "desc", "paging": {"pageSize": 25, "pageNumber": 1}, "segmentFilters": filters});
    let path = "/api/v2/analytics/conversations/details/query";

    let (s, _, all) = env.send(Method::POST, path, q(json!([]))).await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(all["totalHits"], 5);
    let conv = &all["conversations"][0];
    assert!(conv["conversationStart"].is_string() && conv["divisionIds"].is_array());
    let agent = conv["participants"].as_array().unwrap().iter().find(|p| p["purpose"] == "agent").unwrap();
    let segs = agent["sessions"][0]["segments"].as_array().unwrap();
    assert_eq!(segs.last().unwrap()["segmentType"], "wrapup");

    // Legs in ACW without a code: a wrapup segment with no wrapUpCode.
    let pending = json!([{"type": "and", "predicates": [
        {"type": "dimension", "dimension": "purpose", "operator": "matches", "value": "agent"},
        {"type": "dimension", "dimension": "segmentType", "operator": "matches", "value": "wrapup"},
        {"type": "dimension", "dimension": "wrapUpCode", "operator": "notExists"}]}]);
    let (_, _, v) = env.send(Method::POST, path, q(pending)).await;
    assert_eq!(v["totalHits"], 4);

    let by_code = json!([{"type": "and", "predicates": [{"dimension": "wrapUpCode", "value": code}]}]);
    let (_, _, v) = env.send(Method::POST, path, q(by_code)).await;
    assert_eq!(v["totalHits"], 1);
    assert_eq!(v["conversations"][0]["conversationId"], coded.conversation_id);

    let none = json!({"interval": "2020-01-01T00:00:00Z/2020-01-02T00:00:00Z"});
    let (_, _, v) = env.send(Method::POST, path, none).await;
    assert_eq!(v, json!({"totalHits": 0}));
    let (s, _, v) = env.send(Method::POST, path, json!({"paging": {"pageSize": 5, "pageNumber": 1}})).await;
    assert_eq!(s, 400);
    assert_error_body(&v, 400, "bad.request");
    env.sb.shutdown().await;
}

#[tokio::test]
async fn a_hung_request_still_takes_effect() {
    let env = start(preloaded(1)).await;
    env.sb.set_faults(wrapup_sandbox::FaultProfile {
        timeout_rate: 1.0,
        hang_ms: 300,
        ..wrapup_sandbox::FaultProfile::calm()
    });
    let leg = env.sb.legs()[0].clone();
    let started = std::time::Instant::now();
    let (s, _) = env.write(&leg, &env.code_for(&leg)).await;
    assert_eq!(s, 202);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(env.leg(&leg.participant_id).coded_by, CodedBy::Api);

    env.sb.set_faults(wrapup_sandbox::FaultProfile {
        token_revocation_rate: 1.0,
        ..wrapup_sandbox::FaultProfile::calm()
    });
    let (s, _, v) = env.get("/api/v2/routing/queues").await;
    assert_eq!(s, 401);
    assert_error_body(&v, 401, "bad.credentials");
    env.sb.set_faults(wrapup_sandbox::FaultProfile::calm());
    let (s, _, _) = env.get("/api/v2/routing/queues").await;
    assert_eq!(s, 401, "a revoked token stays revoked");
    env.sb.shutdown().await;
}

#[tokio::test]
async fn the_cli_prints_its_credentials_as_the_first_stdout_line_and_serves() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wrapup-sandbox"))
        .args(["--listen", "127.0.0.1:0", "--seed", "5", "--preload", "3", "--clients", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line =
        tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let base = info["base_url"].as_str().unwrap();
    assert!(base.starts_with("http://127.0.0.1:"));
    assert_eq!(info["clients"].as_array().unwrap().len(), 2);
    assert_eq!(info["control_url"], format!("{base}/sandbox/v1"));
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/oauth/token"))
        .basic_auth(info["client_id"].as_str().unwrap(), info["client_secret"].as_str())
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = http.get(format!("{base}/sandbox/v1/report")).send().await.unwrap().json().await.unwrap();
    assert!(report["legs"]["total"].as_u64().unwrap() >= 3);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn with_a_scaled_clock_the_center_runs_and_sends_events_on_its_own() {
    let (url, got) = receiver(0).await;
    let mut cfg = SandboxConfig::default();
    cfg.center.arrival_rate_per_sec = 0.5;
    cfg.event_targets.push(wrapup_sandbox::EventTarget { url, api_key_header: None, api_key: None });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let clock = wrapup_clock::ScaledClock::new("2026-03-02T09:00:00Z".parse().unwrap(), 600.0).shared();
    let sb = wrapup_sandbox::Sandbox::start(cfg, listener, clock).await.unwrap();
    // No API calls: only the simulation loop moves the center (1.5 s wall = 15 simulated minutes).
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let kinds: std::collections::BTreeSet<String> =
        got.lock().iter().map(|(_, e)| e["detail-type"].as_str().unwrap().to_string()).collect();
    for k in ["acd.end", "user.end", "customer.end", "acw", "wrapup"] {
        assert!(kinds.contains(&format!("v2.detail.events.conversation.{{id}}.{k}")), "no {k}: {kinds:?}");
    }
    let r = sb.report();
    assert!(r.legs.total > 100, "{:?}", r.legs);
    assert_eq!(r.violations.overwrites + r.violations.duplicate_writes + r.violations.outside_window, 0);
    sb.shutdown().await;
}

#[tokio::test]
async fn a_naive_writer_under_hostile_faults_leaves_a_consistent_report() {
    let (url, _got) = receiver(0).await;
    let mut cfg = SandboxConfig { preload: 30, rate_limit_per_minute: 100_000, ..SandboxConfig::default() };
    cfg.faults = wrapup_sandbox::FaultProfile {
        hang_ms: 200,
        token_revocation_rate: 0.0,
        ..wrapup_sandbox::FaultProfile::hostile()
    };
    cfg.center.arrival_rate_per_sec = 0.5;
    cfg.event_targets.push(wrapup_sandbox::EventTarget { url, api_key_header: None, api_key: None });
    let env = start(cfg).await;
    let mut statuses = std::collections::BTreeMap::new();
    for round in 0..15 {
        env.clock.advance(40.0);
        let legs = env.sb.legs();
        // Writes without reading first, twice on some legs, sometimes too early: everything a bad script does.
        for leg in legs.iter().filter(|l| l.state != "done").take(8) {
            let (s, _) = env.write(leg, &env.code_for(leg)).await;
            *statuses.entry(s).or_insert(0u32) += 1;
            if round % 3 == 0 {
                let (s, _) = env.write(leg, &env.code_for(leg)).await;
                *statuses.entry(s).or_insert(0u32) += 1;
            }
        }
    }
    let r = env.sb.report();
    let l = &r.legs;
    assert_eq!(l.total, l.open + l.coded_by_agent + l.coded_by_api + l.system_timeout + l.skipped + l.no_acw, "{l:?}");
    assert!(statuses.contains_key(&202), "{statuses:?}");
    assert!(statuses.keys().any(|s| *s >= 500), "{statuses:?}");
    assert!(r.violations.outside_window > 0 && r.violations.duplicate_writes > 0, "{:?}", r.violations);
    assert!(r.violations.overwrite_attempts >= r.violations.overwrites);
    let accepted: u64 = env.sb.legs().iter().map(|l| u64::from(l.api_writes)).sum();
    assert!(accepted >= r.violations.duplicate_writes);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn agents_code_their_own_legs_and_sometimes_change_the_code_after_an_api_write() {
    let mut cfg = preloaded(5);
    cfg.center.agent.change_after_api = 1.0;
    cfg.center.agent.change_delay = wrapup_sandbox::Dist::new(10.0, 10.0, 10.0);
    let env = start(cfg).await;
    let leg = env.leg_on("Sales");
    let api_code = env.code_for(&leg);
    assert_eq!(env.write(&leg, &api_code).await.0, 202);
    env.clock.advance(15.0);
    let truth = env.leg(&leg.participant_id);
    assert_eq!(truth.coded_by, CodedBy::Agent);
    assert!(truth.agent_changed_after_api);
    assert!(!truth.agent_coded_before_api);
    assert_eq!(truth.api_writes, 1);
    // A change after the write is the agent's right, not a violation.
    assert_eq!(env.sb.report().violations.overwrites, 0);

    let mut cfg = preloaded(5);
    cfg.center.agent.at_disconnect = 1.0;
    cfg.center.agent.at_disconnect_delay = wrapup_sandbox::Dist::new(8.0, 8.0, 8.0);
    let env2 = start(cfg).await;
    env2.clock.advance(10.0);
    let legs = env2.sb.legs();
    assert!(legs.iter().all(|l| l.coded_by == CodedBy::Agent && l.final_code.is_some()), "{legs:?}");
    // Writing over the agent's final code: attempted and, with the default overwrite switch, an overwrite.
    let l = &legs[0];
    assert_eq!(env2.write(l, &env2.code_for(l)).await.0, 202);
    let v = env2.sb.report().violations;
    assert_eq!((v.overwrite_attempts, v.overwrites, v.outside_window), (1, 1, 1));
    env.sb.shutdown().await;
    env2.sb.shutdown().await;
}

#[tokio::test]
async fn a_code_outside_the_legs_queue_follows_its_switch() {
    let env = start(preloaded(2)).await;
    let legs = env.sb.legs();
    let unassigned =
        env.sb.with_org(|o| o.codes.values().find(|c| c.name == "Test code").map(|c| c.id.clone()).unwrap());
    assert_eq!(env.write(&legs[0], &unassigned).await.0, 202, "default: accepted");
    env.sb.set_behaviours(Behaviours {
        code_not_in_queue: wrapup_sandbox::CodeNotInQueue::Rejected,
        ..Behaviours::default()
    });
    let (s, v) = env.write(&legs[1], &unassigned).await;
    assert_eq!(s, 400);
    assert_eq!(v["messageParams"]["queueId"], legs[1].queue_id.clone().unwrap());
    env.sb.shutdown().await;
}

#[tokio::test]
async fn notification_channels_deliver_subscribed_topics_over_the_websocket() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let env = start(preloaded(1)).await;
    let leg = env.sb.legs()[0].clone();
    let qid = leg.queue_id.clone().unwrap();

    let (s, _, ch) = env.send(Method::POST, "/api/v2/notifications/channels", json!(null)).await;
    assert_eq!(s, 200);
    let id = ch["id"].as_str().unwrap().to_string();
    let connect = ch["connectUri"].as_str().unwrap().to_string();
    assert!(connect.starts_with("ws://127.0.0.1:") && connect.ends_with(&id), "{connect}");
    assert!(ch["expires"].is_string());

    let topics = json!([
        {"id": format!("v2.routing.queues.{qid}.conversations")},
        {"id": format!("v2.detail.events.conversation.{}.acw", leg.conversation_id)},
        {"id": "v2.bogus.topic"},
    ]);
    let (s, _, subs) =
        env.send(Method::POST, &format!("/api/v2/notifications/channels/{id}/subscriptions"), topics).await;
    assert_eq!(s, 200);
    let states: Vec<&str> = subs["entities"].as_array().unwrap().iter().map(|e| e["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["Permitted", "Permitted", "Rejected"]);
    let (s, _, listed) = env.get(&format!("/api/v2/notifications/channels/{id}/subscriptions")).await;
    assert_eq!(s, 200);
    assert_eq!(listed["entities"].as_array().unwrap().len(), 2);
    let (_, _, channels) = env.get("/api/v2/notifications/channels").await;
    assert_eq!(channels["entities"][0]["id"], id.as_str());
    let (s, _, _) = env.send(Method::HEAD, &format!("/api/v2/notifications/channels/{id}"), json!(null)).await;
    assert_eq!(s, 200);
    let (s, _, _) = env.send(Method::HEAD, "/api/v2/notifications/channels/streaming-0-nope", json!(null)).await;
    assert_eq!(s, 404);

    let (mut ws, _) = tokio_tungstenite::connect_async(connect.as_str()).await.unwrap();
    ws.send(Message::Text(r#"{"message":"ping"}"#.into())).await.unwrap();
    let pong = next_json(&mut ws).await;
    assert_eq!(pong["topicName"], "channel.metadata");
    assert_eq!(pong["eventBody"]["message"], "pong");

    let code = env.code_for(&leg);
    assert_eq!(env.write(&leg, &code).await.0, 202);
    let mut frames = Vec::new();
    for _ in 0..2 {
        frames.push(next_json(&mut ws).await);
    }
    let acw = frames.iter().find(|f| f["topicName"].as_str().unwrap().ends_with(".acw")).unwrap();
    assert_eq!(acw["version"], "2");
    assert_eq!(acw["eventBody"]["wrapupCode"], code.as_str());
    assert!(acw["metadata"]["CorrelationId"].is_string());
    let snap = frames.iter().find(|f| f["topicName"].as_str().unwrap().starts_with("v2.routing.queues.")).unwrap();
    assert_eq!(snap["eventBody"]["id"], leg.conversation_id);
    let agent = snap["eventBody"]["participants"].as_array().unwrap().iter().find(|p| p["purpose"] == "agent").unwrap();
    assert_eq!(agent["wrapup"]["code"], code.as_str());

    // A second socket on the channel closes the first.
    let (_ws2, _) = tokio_tungstenite::connect_async(connect.as_str()).await.unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok());
    env.sb.shutdown().await;
}

/// The next websocket frame as JSON (5 s at most).
async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>>
        + Unpin,
{
    use futures::StreamExt;
    let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    serde_json::from_str::<Value>(msg.to_text().unwrap()).unwrap()
}

/// FNV-1a: a digest that does not depend on the standard library's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Runs both platforms' simulations for an hour of simulated time on seed 42, with preloaded legs, transfers,
/// consults, unpersisted writes and API writes on every open window, and digests their ground truth.
fn seeded_run_digest() -> (u64, u64) {
    use wrapup_sandbox::cxone::model::DispositionInput;
    use wrapup_sandbox::cxone::Bu;
    use wrapup_sandbox::engine::Simulation;
    use wrapup_sandbox::genesys::model::{Org, WrapupInput};

    let start: jiff::Timestamp = "2026-03-02T09:00:00Z".parse().unwrap();
    let mut cfg = SandboxConfig { seed: 42, preload: 6, ..SandboxConfig::default() };
    cfg.center.transfer_probability = 0.2;
    cfg.center.consult_probability = 0.2;
    cfg.faults.unpersisted_write_rate = 0.2;
    cfg.cxone.preload = 4;
    cfg.cxone.center.transfer_probability = 0.2;
    let mut org = Org::new(&cfg, start, Default::default());
    org.preload(cfg.preload, start, true);
    org.start_traffic(start);
    let mut bu = Bu::new(&cfg.cxone, cfg.seed, cfg.faults.clone(), start);
    bu.preload(cfg.cxone.preload, start);
    bu.start_traffic(start);
    let sessions: Vec<(usize, String)> = (0..cfg.cxone.center.agents)
        .map(|a| {
            let sid = bu.open_session(a, start);
            (bu.session(&sid).unwrap().0, sid)
        })
        .collect();

    for step in 1..=3600 {
        let now = start.checked_add(jiff::SignedDuration::from_secs(step)).unwrap();
        org.advance_to(now);
        bu.advance_to(now);
        if step % 7 != 0 {
            continue;
        }
        for leg in org.legs().into_iter().filter(|l| l.state == "acw") {
            let code = org.queues.iter().find(|q| Some(&q.id) == leg.queue_id.as_ref()).map(|q| q.codes[0].clone());
            let input = WrapupInput { code, ..WrapupInput::default() };
            let _ = org.api_write_wrapup(&leg.conversation_id, &leg.participant_id, None, None, input, now);
        }
        for leg in bu.legs().into_iter().filter(|l| l.state == "acw") {
            let Some(&(session, ref sid)) = sessions.iter().find(|(_, sid)| {
                bu.agents[bu.sessions[bu.session(sid).unwrap().0].agent].id == leg.agent_id.unwrap_or_default()
            }) else {
                continue;
            };
            let skill = bu.skill_by_id(leg.skill_id).unwrap();
            let input =
                DispositionInput { primary: bu.skills[skill].dispositions.first().copied(), ..Default::default() };
            let _ = bu.api_disposition(session, sid, &leg.contact_id.to_string(), &input, now);
        }
    }
    let genesys = serde_json::to_vec(&(org.legs(), org.report())).unwrap();
    let cxone = serde_json::to_vec(&(bu.legs(), bu.report(), &bu.writes)).unwrap();
    let (g, c) = (org.report(), bu.report());
    assert!(g.legs.coded_by_api > 50 && g.legs.coded_by_agent > 50 && g.api.unpersisted_writes > 0, "{:?}", g.legs);
    assert!(c.legs.coded_by_api > 50 && c.legs.coded_by_agent > 10 && c.api.unpersisted_writes > 0, "{:?}", c.legs);
    (fnv1a(&genesys), fnv1a(&cxone))
}

#[test]
fn a_seed_determines_both_simulations_to_the_last_draw() {
    // Digests of the run: a change that adds, drops or reorders a draw changes them. They last changed when agents
    // began to code by each leg's true outcome (what they pick, not what is drawn: the draws stayed where they were).
    let (genesys, cxone) = seeded_run_digest();
    assert_eq!((genesys, cxone), (0x7cef_0516_635d_5118, 0xa895_71f1_7750_f162), "{genesys:#018x} {cxone:#018x}");
}

/// Agents on both platforms code a leg's true outcome as often as `agent_accuracy` says, and the true outcome
/// follows the talk time (checked on Genesys, where the leg reports it).
#[test]
fn agents_pick_the_true_outcome_with_the_configured_accuracy() {
    use wrapup_sandbox::cxone::Bu;
    use wrapup_sandbox::engine::Simulation;
    use wrapup_sandbox::genesys::model::Org;

    let run = |accuracy: f64| {
        let start: jiff::Timestamp = "2026-03-02T09:00:00Z".parse().unwrap();
        let mut cfg = SandboxConfig { seed: 7, ..SandboxConfig::default() };
        cfg.center.agent_accuracy = accuracy;
        cfg.center.arrival_rate_per_sec = 0.5;
        cfg.cxone.center.agent_accuracy = accuracy;
        let mut org = Org::new(&cfg, start, Default::default());
        org.start_traffic(start);
        let mut bu = Bu::new(&cfg.cxone, cfg.seed, cfg.faults.clone(), start);
        bu.start_traffic(start);
        let end = start.checked_add(jiff::SignedDuration::from_hours(3)).unwrap();
        org.advance_to(end);
        bu.advance_to(end);
        let genesys: Vec<(String, String, String)> = org
            .legs()
            .into_iter()
            .filter(|l| l.coded_by == CodedBy::Agent)
            .map(|l| (l.final_code.unwrap(), l.agent_pick.unwrap(), l.true_code.unwrap()))
            .collect();
        let cxone: Vec<(i64, i64, i64)> = bu
            .legs()
            .into_iter()
            .filter(|l| l.coded_by == CodedBy::Agent)
            .map(|l| (l.final_disposition_id.unwrap(), l.agent_pick.unwrap(), l.true_code.unwrap()))
            .collect();
        (org, genesys, cxone)
    };
    let share = |hits: usize, of: usize| hits as f64 / of as f64;

    let (org, genesys, cxone) = run(0.85);
    assert!(genesys.len() > 200 && cxone.len() > 200, "{} {}", genesys.len(), cxone.len());
    // Without API writes, what an agent sets is the agent's pick.
    assert!(genesys.iter().all(|(set, pick, _)| set == pick));
    assert!(cxone.iter().all(|(set, pick, _)| set == pick));
    let g = share(genesys.iter().filter(|(_, pick, truth)| pick == truth).count(), genesys.len());
    let c = share(cxone.iter().filter(|(_, pick, truth)| pick == truth).count(), cxone.len());
    assert!((0.78..0.92).contains(&g) && (0.78..0.92).contains(&c), "genesys {g}, cxone {c}");
    // The true outcome is the queue's last code under a minute of talk, its second from five minutes, else its first.
    for conv in org.conversations.values() {
        for p in conv.participants.iter().filter(|p| p.plan.true_code.is_some()) {
            let (Some(connected), Some(end), Some(q)) = (p.connected_at, p.end, p.queue) else { continue };
            let talk = end.duration_since(connected).as_secs_f64();
            let codes = &org.queues[q].codes;
            let expected = if talk < 60.0 {
                codes.last()
            } else if talk >= 300.0 {
                codes.get(1)
            } else {
                codes.first()
            };
            assert_eq!(p.plan.true_code.as_ref(), expected, "talk {talk} s on {}", org.queues[q].name);
        }
    }

    let (_, genesys, cxone) = run(1.0);
    assert!(genesys.iter().all(|(_, pick, truth)| pick == truth) && cxone.iter().all(|(_, pick, truth)| pick == truth));
    let (_, genesys, cxone) = run(0.0);
    assert!(genesys.iter().all(|(_, pick, truth)| pick != truth) && cxone.iter().all(|(_, pick, truth)| pick != truth));
}
