//! Integration tests of the NICE CXone emulator over HTTP on 127.0.0.1, with a manual clock.

mod common;

use common::{quiet_config, split, start, Env};
use reqwest::Method;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wrapup_sandbox::cxone::{
    ClosedContact, CxoneAgentBehaviour, DispositionEndsAcw, NotOnSkill, RetryAfter, SecondDisposition, StaleSessionId,
};
use wrapup_sandbox::{CodedBy, CxoneBehaviours, CxoneLegTruth, Dist, FaultProfile, SandboxConfig};

const V: &str = "/inContactAPI/services/v27.0";

/// CXone agents who never act by themselves (tests switch behaviours on).
fn passive() -> CxoneAgentBehaviour {
    CxoneAgentBehaviour {
        at_disconnect: 0.0,
        late: 0.0,
        change_after_api: 0.0,
        skip_delay: Dist::new(5000.0, 5000.0, 5000.0),
        give_in_delay: Dist::new(50_000.0, 50_000.0, 50_000.0),
        finish_delay: Dist::new(30.0, 30.0, 30.0),
        ..CxoneAgentBehaviour::default()
    }
}

/// No traffic, passive agents, no transfers, `n` contacts already in ACW.
fn cx_config(n: usize) -> SandboxConfig {
    let mut cfg = quiet_config();
    cfg.cxone.preload = n;
    cfg.cxone.center.transfer_probability = 0.0;
    cfg.cxone.center.agent = passive();
    cfg
}

struct Cx {
    env: Env,
    token: String,
}

async fn cx(cfg: SandboxConfig) -> Cx {
    let env = start(cfg).await;
    let token = password_token(&env).await["access_token"].as_str().unwrap().to_string();
    Cx { env, token }
}

async fn password_token(env: &Env) -> Value {
    let c = env.sb.cxone_credentials();
    let r = env
        .http
        .post(format!("{}/auth/token", env.base))
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[("grant_type", "password"), ("username", &c.access_key_id), ("password", &c.access_key_secret)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Event values are strings: `"ContactID": "712876049781"`.
fn id_is(v: &Value, id: i64) -> bool {
    v.as_str().and_then(|s| s.parse::<i64>().ok()) == Some(id)
}

fn jwt_claims(t: &str) -> Value {
    use base64::Engine;
    let parts: Vec<&str> = t.split('.').collect();
    assert_eq!(parts.len(), 3, "{t}");
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap()
}

impl Cx {
    async fn get(&self, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self.env.http.get(format!("{}{}", self.env.base, path)).bearer_auth(&self.token).send().await.unwrap();
        split(r).await
    }
    async fn send(&self, m: Method, path: &str, body: Option<Value>) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut rb = self.env.http.request(m, format!("{}{}", self.env.base, path)).bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        split(rb.send().await.unwrap()).await
    }
    /// Raw HTTP/1.1 (no Content-Type): returns the status line and the whole response.
    async fn raw(&self, method: &str, path: &str, body: &str) -> (String, String) {
        let addr = self.env.base.trim_start_matches("http://").to_string();
        let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{body}",
            self.token,
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        (out.lines().next().unwrap_or_default().to_string(), out)
    }
    async fn join(&self, agent: i64) -> String {
        let (s, _, v) =
            self.send(Method::POST, &format!("{V}/agent-sessions/join"), Some(json!({"asAgentId": agent}))).await;
        assert_eq!(s, 202, "{v}");
        v["sessionId"].as_str().unwrap().to_string()
    }
    async fn poll(&self, sid: &str, timeout: u64) -> (u16, Value) {
        let (s, _, v) = self.get(&format!("{V}/agent-sessions/{sid}/get-next-event?timeout={timeout}")).await;
        (s, v)
    }
    async fn dispose(&self, sid: &str, contact: i64, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send(Method::POST, &format!("{V}/agent-sessions/{sid}/interactions/{contact}/disposition"), Some(body))
            .await
    }
    fn legs(&self) -> Vec<CxoneLegTruth> {
        self.env.sb.cxone_legs()
    }
    fn leg(&self, id: i64) -> CxoneLegTruth {
        self.legs().into_iter().find(|l| l.contact_id == id).unwrap()
    }
    /// A contact in ACW on a skill with dispositions, and one of that skill's disposition ids.
    fn acw_leg(&self, skip: usize) -> (CxoneLegTruth, i64) {
        let l = self.legs().into_iter().filter(|l| l.state == "acw").nth(skip).unwrap();
        let d = self.env.sb.with_bu(|bu| bu.skills[bu.skill_by_id(l.skill_id).unwrap()].dispositions[0]);
        (l, d)
    }
    fn behave(&self, b: CxoneBehaviours) {
        self.env.sb.set_cxone_behaviours(b);
    }
}

#[tokio::test]
async fn the_password_grant_accepts_basic_and_post_client_auth_and_issues_jwts_with_the_bu_claims() {
    let c = cx(cx_config(0)).await;
    let creds = c.env.sb.cxone_credentials();
    let v = password_token(&c.env).await;
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3600);
    assert_eq!(v["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    let access = jwt_claims(v["access_token"].as_str().unwrap());
    assert_eq!(access["tenantId"], creds.tenant_id);
    assert_eq!(access["icBUId"], creds.business_unit_id);
    assert!(access["icClusterId"].is_string() && access["sub"].is_string());
    assert!(access["exp"].as_i64().unwrap() - access["iat"].as_i64().unwrap() == 3600);
    let id = jwt_claims(v["id_token"].as_str().unwrap());
    assert_eq!(id["icAgentId"], creds.agent_id.to_string());
    assert!(id.get("tenant").is_none(), "a tenant claim switches NICE's SDK to UserHub mode");
    assert!(creds.access_key_secret.ends_with('='), "secrets need URL-encoding as on CXone");

    // client_secret_post.
    let url = format!("{}/auth/token", c.env.base);
    let form = [
        ("grant_type", "password"),
        ("username", creds.access_key_id.as_str()),
        ("password", creds.access_key_secret.as_str()),
        ("client_id", creds.client_id.as_str()),
        ("client_secret", creds.client_secret.as_str()),
    ];
    let r = c.env.http.post(&url).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let refreshed: Value = r.json().await.unwrap();

    // Bad key secret, bad client, unknown grant.
    let bad = [("grant_type", "password"), ("username", creds.access_key_id.as_str()), ("password", "nope")];
    let r =
        c.env.http.post(&url).basic_auth(&creds.client_id, Some(&creds.client_secret)).form(&bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
    let r = c.env.http.post(&url).basic_auth(&creds.client_id, Some("wrong")).form(&form[..3]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .env
        .http
        .post(&url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &creds.client_id),
            ("client_secret", &creds.client_secret),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");

    // Refresh grant.
    let rt = refreshed["refresh_token"].as_str().unwrap();
    let r = c
        .env
        .http
        .post(&url)
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", &creds.client_id),
            ("scope", "openid"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let r = c
        .env
        .http
        .get(format!("{}{V}/skills", c.env.base))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn tokens_expire_after_expires_in_wall_seconds() {
    let mut cfg = cx_config(0);
    cfg.cxone.token_lifetime_secs = 1;
    let c = cx(cfg).await;
    assert_eq!(c.get(&format!("{V}/skills")).await.0, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (s, h, v) = c.get(&format!("{V}/skills")).await;
    assert_eq!(s, 401);
    assert_eq!(h["icStatusDescription"], "Invalid or expired token");
    assert_eq!(v["error_description"], "Invalid or expired token");
    let (line, _) = c.raw("GET", &format!("{V}/skills"), "").await;
    assert_eq!(line, "HTTP/1.1 401 Invalid or expired token");
}

#[tokio::test]
async fn discovery_points_at_the_sandbox_and_unknown_tenants_are_404() {
    let c = cx(cx_config(0)).await;
    let base = &c.env.base;
    let v: Value =
        c.env.http.get(format!("{base}/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["token_endpoint"], format!("{base}/auth/token"));
    assert_eq!(v["issuer"], base.as_str());
    assert!(v["token_endpoint_auth_methods_supported"].as_array().unwrap().contains(&json!("client_secret_post")));
    let tenant = c.env.sb.cxone_credentials().tenant_id;
    let r = c.env.http.get(format!("{base}/.well-known/cxone-configuration?tenantId={tenant}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["api_endpoint"], base.as_str());
    assert!(!v["api_endpoint"].as_str().unwrap().ends_with('/'));
    assert_eq!(v["tenantId"], tenant);
    assert!(v["area"].is_string() && v["cluster"].is_string() && v["domain"].is_string());
    let r = c.env.http.get(format!("{base}/.well-known/cxone-configuration?tenantId=nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn the_prefix_is_case_insensitive_any_version_works_and_wrong_verbs_are_405() {
    let c = cx(cx_config(0)).await;
    for p in [
        "/InContactAPI/services/V27.0/skills",
        "/incontactapi/services/v2.0/skills",
        "/inContactapi/SERVICES/v33.0/skills",
    ] {
        let (s, h, v) = c.get(p).await;
        assert_eq!(s, 200, "{p}");
        assert_eq!(h["icStatusDescription"], "Success");
        assert!(v["skills"].as_array().unwrap().len() >= 5);
    }
    assert_eq!(c.get("/inContactAPI/services/vx/skills").await.0, 404);
    assert_eq!(c.get(&format!("{V}/nothing-here")).await.0, 404);
    assert_eq!(c.send(Method::DELETE, &format!("{V}/skills"), None).await.0, 405);
    assert_eq!(c.get(&format!("{V}/agent-sessions")).await.0, 405);
    // Genesys paths keep answering as before; unknown paths outside both are plain 404s.
    assert_eq!(c.env.http.get(format!("{}/nowhere", c.env.base)).send().await.unwrap().status(), 404);
    let r = c.env.http.get(format!("{}{V}/skills", c.env.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn sessions_start_join_rotate_and_end_with_409_session_ended() {
    let c = cx(cx_config(1)).await;
    let (s, _, v) =
        c.send(Method::POST, &format!("{V}/agent-sessions"), Some(json!({"stationPhoneNumber": "4000"}))).await;
    assert_eq!(s, 202, "{v}");
    let own = v["sessionId"].as_str().unwrap().to_string();
    let (s, h, _) = c.send(Method::POST, &format!("{V}/agent-sessions"), Some(json!({}))).await;
    assert_eq!(s, 409);
    assert_eq!(h["icStatusDescription"], "Cannot start a session at this time.  Agent session already started.");

    let leg = c.legs()[0].clone();
    let sid = c.join(leg.agent_id.unwrap()).await;
    let (s, v) = c.poll(&sid, 0).await;
    assert_eq!(s, 200);
    let new = v["sessionId"].as_str().unwrap().to_string();
    assert_ne!(new, sid, "the session id rotates on every 200");
    let events = v["events"].as_array().unwrap();
    assert_eq!(events[0]["Type"], "AgentSessionStart");
    let st = events.iter().find(|e| e["Type"] == "AgentState").unwrap();
    assert_eq!(st["IsAcw"], "True");
    assert_eq!(st["CurrentState"], "Unavailable");
    let ce = events.iter().find(|e| id_is(&e["ContactID"], leg.contact_id)).unwrap();
    assert_eq!(ce["Status"], "Disconnected");
    assert_eq!(ce["FinalState"], "False");
    assert_eq!(ce["MasterID"], leg.master_contact_id.to_string());
    assert_eq!(c.poll(&new, 0).await.0, 304);
    // An old id gets a refresh collection (and a new id).
    let (s, v) = c.poll(&sid, 0).await;
    assert_eq!(s, 200);
    assert!(v["events"].as_array().unwrap().iter().any(|e| e["Type"] == "AgentState"));

    assert_eq!(c.poll(&new, 61).await.0, 400);
    assert_eq!(c.poll("nope", 0).await.0, 404);
    let (line, _) = c.raw("GET", &format!("{V}/agent-sessions/nope/get-next-event?timeout=0"), "").await;
    assert_eq!(line, "HTTP/1.1 404 Invalid Session Id");
    // DELETE with a JSON body and no Content-Type, as NICE's SDK sends it.
    let (line, _) = c
        .raw(
            "DELETE",
            &format!("{V}/agent-sessions/{new}"),
            r#"{"forceLogoff":false,"endContacts":false,"ignorePersonalQueue":false}"#,
        )
        .await;
    assert_eq!(line, "HTTP/1.1 202 Accepted");
    let (line, _) = c.raw("GET", &format!("{V}/agent-sessions/{new}/get-next-event?timeout=0"), "").await;
    assert_eq!(line, "HTTP/1.1 409 Session Ended");
    assert_eq!(c.send(Method::DELETE, &format!("{V}/agent-sessions/{new}"), None).await.0, 404);
    assert_eq!(c.send(Method::DELETE, &format!("{V}/agent-sessions/{own}"), None).await.0, 202);
    // Joining needs a known, logged-in agent.
    assert_eq!(c.send(Method::POST, &format!("{V}/agent-sessions/join"), Some(json!({"asAgentId": 1}))).await.0, 404);
}

#[tokio::test]
async fn long_polls_wait_out_their_timeout_and_wake_on_new_events() {
    let c = cx(cx_config(1)).await;
    let (leg, d) = c.acw_leg(0);
    let sid = c.join(leg.agent_id.unwrap()).await;
    let (_, v) = c.poll(&sid, 0).await;
    let sid = v["sessionId"].as_str().unwrap().to_string();

    let t0 = std::time::Instant::now();
    assert_eq!(c.poll(&sid, 1).await.0, 304);
    assert!(t0.elapsed() >= Duration::from_millis(950), "{:?}", t0.elapsed());

    let t0 = std::time::Instant::now();
    let poller = {
        let (http, base, token, sid) = (c.env.http.clone(), c.env.base.clone(), c.token.clone(), sid.clone());
        tokio::spawn(async move {
            let r = http
                .get(format!("{base}{V}/agent-sessions/{sid}/get-next-event?timeout=20"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            split(r).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A disposition from a second (stale-accepted) id ends ACW, which emits events to the waiting poll.
    let (s, _, v) = c.dispose(&sid, leg.contact_id, json!({"primaryDispositionId": d})).await;
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = poller.await.unwrap();
    assert_eq!(s, 200);
    assert!(t0.elapsed() < Duration::from_secs(5));
    let events = v["events"].as_array().unwrap();
    assert!(events.iter().any(|e| id_is(&e["ContactID"], leg.contact_id) && e["FinalState"] == "True"), "{v}");
}

#[tokio::test]
async fn every_disposition_error_has_its_documented_text_in_reason_header_and_body() {
    let mut cfg = cx_config(3);
    cfg.cxone.center.arrival_rate_per_sec = 0.5;
    let c = cx(cfg).await;
    let (leg, d) = c.acw_leg(0);
    let sid = c.join(leg.agent_id.unwrap()).await;
    let path = format!("{V}/agent-sessions/{sid}/interactions/{}/disposition", leg.contact_id);
    let other_skill_disposition = c.env.sb.with_bu(|bu| {
        let s = bu.skill_by_id(leg.skill_id).unwrap();
        *bu.dispositions.keys().find(|k| !bu.skills[s].dispositions.contains(k)).unwrap()
    });
    let cases = [
        (json!({}), 400, "Invalid primaryDispositionId"),
        (json!({"primaryDispositionId": 1}), 400, "Invalid primaryDispositionId"),
        (json!({"primaryDispositionId": other_skill_disposition}), 400, "Invalid primaryDispositionId"),
        (json!({"primaryDispositionId": d, "secondaryDispositionId": 5}), 400, "Invalid secondaryDispositionId"),
        (json!({"primaryDispositionId": d, "primaryCommitmentAmount": "lots"}), 400, "Invalid primaryCommitmentAmount"),
        (json!({"primaryDispositionId": d, "primaryCallbackTime": "tomorrow"}), 400, "Invalid primaryCallbackTime"),
        (json!({"primaryDispositionId": d, "primaryCallbackNumber": "call me"}), 400, "Invalid primaryCallbackNumber"),
        (
            json!({"primaryDispositionId": d, "previewDispositionId": 7}),
            409,
            "Contact must be in a preview state to set a preview disposition",
        ),
    ];
    for (body, status, text) in cases {
        let (s, h, v) = c.send(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(s, status, "{body}");
        assert_eq!(h["icStatusDescription"], text, "{body}");
        assert_eq!(v["error_description"], text);
        assert_eq!(v["error"], text);
    }
    let (line, _) = c.raw("POST", &path, "{}").await;
    assert_eq!(line, "HTTP/1.1 400 Invalid primaryDispositionId");
    assert_eq!(c.dispose("nope", leg.contact_id, json!({"primaryDispositionId": d})).await.0, 404);
    let (line, _) = c.raw("POST", &format!("{V}/agent-sessions/nope/interactions/1/disposition"), "{}").await;
    assert_eq!(line, "HTTP/1.1 404 Invalid sessionId");
    for bad in ["123", "abc"] {
        let (line, _) = c.raw("POST", &format!("{V}/agent-sessions/{sid}/interactions/{bad}/disposition"), "{}").await;
        assert_eq!(line, "HTTP/1.1 404 Invalid contactId");
    }
    // Another agent's contact is not on this session.
    let (other, od) = c.acw_leg(1);
    assert_eq!(c.dispose(&sid, other.contact_id, json!({"primaryDispositionId": od})).await.0, 404);
    assert_eq!(
        c.env.sb.cxone_report().violations.outside_window,
        0,
        "rejected-by-validation writes are not window violations"
    );

    // Success: 200 Success, the contact closes (endsAcw), a second write is 404 Invalid contactId (closed).
    let (line, _) = c
        .raw("POST", &path, &json!({"primaryDispositionId": d, "primaryDispositionNotes": "by test"}).to_string())
        .await;
    assert_eq!(line, "HTTP/1.1 200 Success");
    let l = c.leg(leg.contact_id);
    assert_eq!(l.state, "closed");
    assert_eq!(l.coded_by, CodedBy::Api);
    assert_eq!(l.final_disposition_id, Some(d));
    let (line, _) = c.raw("POST", &path, &json!({"primaryDispositionId": d}).to_string()).await;
    assert_eq!(line, "HTTP/1.1 404 Invalid contactId");

    // A contact still talking: 409.
    c.env.sb.start_traffic();
    let mut active = None;
    for _ in 0..60 {
        c.env.clock.advance(5.0);
        active = c.legs().into_iter().find(|l| l.state == "active" && l.agent_id.is_some());
        if active.is_some() {
            break;
        }
    }
    let active = active.expect("an active contact");
    let sid2 = c.join(active.agent_id.unwrap()).await;
    let dd = c.env.sb.with_bu(|bu| bu.skills[bu.skill_by_id(active.skill_id).unwrap()].dispositions.first().copied());
    let (line, _) = c
        .raw(
            "POST",
            &format!("{V}/agent-sessions/{sid2}/interactions/{}/disposition", active.contact_id),
            &json!({"primaryDispositionId": dd.unwrap_or(2891)}).to_string(),
        )
        .await;
    if dd.is_some() {
        assert_eq!(line, "HTTP/1.1 409 Contact must be disconnected before dispositioning");
    }
    let r = c.env.sb.cxone_report();
    assert_eq!(r.violations.outside_window, 1 + u64::from(dd.is_some()));
    assert!(c.env.sb.cxone_writes().iter().any(|w| w.status == 200 && w.in_window));
}

#[tokio::test]
async fn dispositions_are_read_from_json_without_content_type_query_strings_and_numbers_as_strings() {
    let c = cx(cx_config(3)).await;
    for (i, style) in ["raw-json", "query", "strings"].into_iter().enumerate() {
        let (leg, d) = c.acw_leg(0);
        let sid = c.join(leg.agent_id.unwrap()).await;
        let base = format!("{V}/agent-sessions/{sid}/interactions/{}/disposition", leg.contact_id);
        let line = match style {
            "raw-json" => c.raw("POST", &base, &format!(r#"{{"primaryDispositionId": {d}}}"#)).await.0,
            "query" => c.raw("POST", &format!("{base}?primaryDispositionId={d}&primaryDispositionNotes=via%20query"), "").await.0,
            _ => c.raw("POST", &base, &format!(r#"{{"primaryDispositionId": "{d}", "secondaryDispositionId": "0", "primaryCommitmentAmount": "12.5"}}"#)).await.0,
        };
        assert_eq!(line, "HTTP/1.1 200 Success", "{style}");
        assert_eq!(c.leg(leg.contact_id).final_disposition_id, Some(d), "{style}");
        assert_eq!(c.env.sb.cxone_report().legs.coded_by_api, i as u64 + 1);
    }
    let (s, _, v) = c.get(&format!("{V}/contacts/{}/disposition", c.legs()[0].contact_id)).await;
    assert_eq!(s, 200);
    assert!(v["dispositionName"].is_string());
}

#[tokio::test]
async fn catalog_lists_page_and_answer_204_and_404_as_documented() {
    let c = cx(cx_config(0)).await;
    let (s, _, v) = c.get(&format!("{V}/dispositions?skip=1&top=2")).await;
    assert_eq!(s, 200);
    assert_eq!(v["dispositions"].as_array().unwrap().len(), 2);
    let total = v["totalRecords"].as_u64().unwrap();
    assert!(total >= 15, "{v}");
    assert!(v["_links"]["next"].is_string());
    let (_, _, all) = c.get(&format!("{V}/dispositions")).await;
    assert_eq!(all["dispositions"][1], v["dispositions"][0]);
    let names: Vec<&str> =
        all["dispositions"].as_array().unwrap().iter().map(|d| d["dispositionName"].as_str().unwrap()).collect();
    for n in [
        "Sale completed",
        "Issue resolved",
        "Payment taken",
        "Customer retained",
        "Callback completed",
        "Legacy - do not use",
    ] {
        assert!(names.contains(&n), "{n}");
    }
    assert_eq!(c.get(&format!("{V}/dispositions?skip=-1")).await.0, 400);
    let (_, h, _) = c.get(&format!("{V}/dispositions?top=x")).await;
    assert_eq!(h["icStatusDescription"], "Invalid top");
    let id = all["dispositions"][0]["dispositionId"].as_i64().unwrap();
    assert_eq!(c.get(&format!("{V}/dispositions/{id}")).await.2["dispositionId"], id);
    let (s, h, _) = c.get(&format!("{V}/dispositions/999")).await;
    assert_eq!(s, 404);
    assert_eq!(h["icStatusDescription"], "Invalid dispositionId - '999'");

    let (_, _, skills) = c.get(&format!("{V}/skills?top=2")).await;
    assert_eq!(skills["skills"].as_array().unwrap().len(), 2);
    let (_, _, skills) = c.get(&format!("{V}/skills")).await;
    let sales = &skills["skills"][0];
    assert_eq!(sales["acwTypeId"], 2);
    assert_eq!(sales["requireDisposition"], true);
    let sid = sales["skillId"].as_i64().unwrap();
    let (s, _, v) = c.get(&format!("{V}/skills/{sid}")).await;
    assert_eq!(s, 200);
    for f in
        ["acwTypeId", "requireDisposition", "maxSecondsACW", "stateIdACW", "allowSecondaryDispositions", "dispositions"]
    {
        assert!(!v[f].is_null(), "{f}: {v}");
    }
    let (s, _, v) = c.get(&format!("{V}/skills/{sid}/dispositions")).await;
    assert_eq!(s, 200);
    assert_eq!(v["dispositions"][0]["displayOrder"], 1);
    let none =
        skills["skills"].as_array().unwrap().iter().find(|s| s["acwTypeId"] == 1).unwrap()["skillId"].as_i64().unwrap();
    let (line, _) = c.raw("GET", &format!("{V}/skills/{none}/dispositions"), "").await;
    assert_eq!(line, "HTTP/1.1 204 No dispositions assgined");
    let (s, h, _) = c.get(&format!("{V}/skills/12")).await;
    assert_eq!(s, 404);
    assert_eq!(h["icStatusDescription"], "Invalid skillId - '12', does not exist");

    let (_, _, agents) = c.get(&format!("{V}/agents?top=5&skip=2")).await;
    assert_eq!(agents["agents"].as_array().unwrap().len(), 5);
    assert!(agents["totalRecords"].as_u64().unwrap() > 40);

    // Creating dispositions.
    let (s, _, v) = c
        .send(
            Method::POST,
            &format!("{V}/dispositions"),
            Some(json!({"dispositions": [{"dispositionName": "Sandbox new", "classificationId": 1}]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["errorCount"], 0);
    let new = v["dispositionResults"][0]["dispositionId"].as_i64().unwrap();
    assert_eq!(c.get(&format!("{V}/dispositions/{new}")).await.2["dispositionName"], "Sandbox new");
    let (s, _, _) = c
        .send(
            Method::POST,
            &format!("{V}/dispositions"),
            Some(json!({"dispositions": [{"dispositionName": "Sandbox two"}, {"dispositionName": ""}]})),
        )
        .await;
    assert_eq!(s, 206);
    let (s, h, _) = c.send(Method::POST, &format!("{V}/dispositions"), Some(json!({"dispositions": []}))).await;
    assert_eq!(s, 400);
    assert_eq!(h["icStatusDescription"], "Invalid Dispositions - cannot be null or empty");

    // Nothing active in a quiet BU.
    let (line, _) = c.raw("GET", &format!("{V}/contacts/active"), "").await;
    assert!(line.starts_with("HTTP/1.1 204"), "{line}");
}

#[tokio::test]
async fn realtime_reads_show_acw_contacts_and_agents_and_filter_by_updated_since() {
    let c = cx(cx_config(2)).await;
    let (s, _, v) = c.get(&format!("{V}/contacts/active")).await;
    assert_eq!(s, 200);
    let list = v["activeContacts"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let leg = c.legs()[0].clone();
    let rec = list.iter().find(|r| r["contactId"] == leg.contact_id).unwrap();
    assert_eq!(rec["masterContactId"], leg.master_contact_id);
    assert_eq!(rec["agentId"], leg.agent_id.unwrap());
    assert!(rec["mediaTypeId"].is_number() && rec["stateName"].is_string() && rec["lastUpdateTime"].is_string());
    let poll = v["lastPollTime"].as_str().unwrap().to_string();

    let (s, _, v) = c.get(&format!("{V}/agents/states")).await;
    assert_eq!(s, 200);
    let a =
        v["agentStates"].as_array().unwrap().iter().find(|a| a["agentId"] == leg.agent_id.unwrap()).unwrap().clone();
    assert_eq!(a["isACW"], true);
    assert_eq!(a["contactId"], leg.contact_id);
    assert_eq!(a["agentStateName"], "Unavailable");
    assert!(v["lastPollTime"].is_string());
    assert_eq!(c.get(&format!("{V}/agents/states?updatedSince=garbage")).await.0, 400);

    c.env.clock.advance(10.0);
    let (line, _) = c.raw("GET", &format!("{V}/contacts/active?updatedSince={}", jiff_plus(&poll, 1)), "").await;
    assert!(line.starts_with("HTTP/1.1 204"), "{line}");
    let (s, _, v) = c.get(&format!("{V}/contacts/{}", leg.contact_id)).await;
    assert_eq!(s, 200);
    assert_eq!(v["contactId"], leg.contact_id);
    let (s, h, _) = c.get(&format!("{V}/contacts/42")).await;
    assert_eq!(s, 404);
    assert_eq!(h["icStatusDescription"], "Invalid contactId - 42");
}

fn jiff_plus(ts: &str, secs: i64) -> String {
    let t: jiff::Timestamp = ts.parse().unwrap();
    format!("{:.3}", t.checked_add(jiff::SignedDuration::from_secs(secs)).unwrap())
}

#[tokio::test]
async fn completed_contacts_follow_the_30_day_rules_and_page() {
    let c = cx(cx_config(3)).await;
    let now = c.env.clock_now();
    let q = |s: &str| format!("{V}/contacts/completed?{s}");
    let (line, _) = c.raw("GET", &q("updatedSince=2026-03-01T00:00:00Z"), "").await;
    assert_eq!(line, "HTTP/1.1 204 No Contacts for the specified period");
    for (query, text) in [
        ("", "Invalid DateRange - No dates fields provided"),
        (
            "startDate=2026-01-01T00:00:00Z&endDate=2026-03-01T00:00:00Z",
            "Invalid DateRange - Date Range must be 30 days or less",
        ),
        (
            "startDate=2026-03-02T00:00:00Z&endDate=2026-03-01T00:00:00Z",
            "Invalid DateRange - startDate must be less than endDate",
        ),
        ("startDate=yesterday", "Invalid startDate"),
        ("startDate=2026-03-01T00:00:00Z&endDate=soon", "Invalid endDate"),
        ("updatedSince=nope", "Invalid updatedSince "),
        ("updatedSince=2026-01-01T00:00:00Z", "Invalid updatedSince - '2026-01-01T00:00:00Z', must be 30 days or less"),
        ("updatedSince=2026-03-01T00:00:00Z&top=0", "Invalid top"),
        ("updatedSince=2026-03-01T00:00:00Z&skip=x", "Invalid skip"),
        ("updatedSince=2026-03-01T00:00:00Z&orderBy=colour%20asc", "Invalid orderby arguments"),
    ] {
        let (s, h, _) = c.get(&q(query)).await;
        assert_eq!(s, 400, "{query}");
        // HTTP header parsing trims the trailing space of `Invalid updatedSince `.
        assert_eq!(h["icStatusDescription"].to_str().unwrap(), text.trim_end(), "{query}");
    }
    // Close all three, then read them back.
    for _ in 0..3 {
        let (leg, d) = c.acw_leg(0);
        let sid = c.join(leg.agent_id.unwrap()).await;
        assert_eq!(
            c.dispose(&sid, leg.contact_id, json!({"primaryDispositionId": d, "primaryDispositionNotes": "n"})).await.0,
            200
        );
    }
    c.env.clock.advance(1.0);
    let (s, _, v) = c.get(&q("startDate=2026-03-01T00:00:00Z&endDate=2026-03-03T00:00:00Z&top=2")).await;
    assert_eq!(s, 200, "{now}");
    assert_eq!(v["totalRecords"], 3);
    assert_eq!(v["completedContacts"].as_array().unwrap().len(), 2);
    let r = &v["completedContacts"][0];
    for f in [
        "contactId",
        "masterContactId",
        "primaryDispositionId",
        "dispositionNotes",
        "acwSeconds",
        "lastUpdateTime",
        "skillId",
        "agentId",
    ] {
        assert!(!r[f].is_null(), "{f}: {r}");
    }
    assert_eq!(r["dispositionNotes"], "n");
    let (_, _, v2) = c.get(&q("startDate=2026-03-01T00:00:00Z&endDate=2026-03-03T00:00:00Z&top=2&skip=2")).await;
    assert_eq!(v2["completedContacts"].as_array().unwrap().len(), 1);
    let poll = v["lastPollTime"].as_str().unwrap().to_string();
    c.env.clock.advance(5.0);
    let (line, _) = c.raw("GET", &q(&format!("updatedSince={}", jiff_plus(&poll, 1))), "").await;
    assert_eq!(line, "HTTP/1.1 204 No Contacts for the specified period");
}

trait ClockNow {
    fn clock_now(&self) -> String;
}
impl ClockNow for Env {
    fn clock_now(&self) -> String {
        use wrapup_core::clock::Clock;
        self.clock.now().to_string()
    }
}

#[tokio::test]
async fn transfers_make_a_new_contact_id_under_the_same_master() {
    let mut cfg = cx_config(0);
    cfg.cxone.center.transfer_probability = 1.0;
    cfg.cxone.center.arrival_rate_per_sec = 0.2;
    let c = cx(cfg).await;
    c.env.sb.start_traffic();
    let mut child = None;
    for _ in 0..120 {
        c.env.clock.advance(5.0);
        child = c.legs().into_iter().find(|l| l.parent_contact_id.is_some());
        if child.is_some() {
            break;
        }
    }
    let child = child.expect("a transferred contact");
    let parent = c.leg(child.parent_contact_id.unwrap());
    assert_ne!(child.contact_id, parent.contact_id);
    assert_eq!(child.master_contact_id, parent.master_contact_id);
    assert_eq!(parent.master_contact_id, parent.contact_id);
    let (s, _, v) = c.get(&format!("{V}/contacts/{}/hierarchy", child.contact_id)).await;
    assert_eq!(s, 200);
    assert_eq!(v["masterContactId"], parent.contact_id);
    assert!(v["childContacts"].as_array().unwrap().iter().any(|x| x["contactId"] == child.contact_id));
}

#[tokio::test]
async fn agents_who_disposition_first_make_a_later_write_an_overwrite_or_a_closed_contact() {
    let mut cfg = cx_config(2);
    cfg.cxone.center.agent.at_disconnect = 1.0;
    cfg.cxone.center.agent.at_disconnect_delay = Dist::new(2.0, 2.0, 2.0);
    let c = cx(cfg).await;
    let legs = c.legs();
    let sids = [c.join(legs[0].agent_id.unwrap()).await, c.join(legs[1].agent_id.unwrap()).await];
    c.env.clock.advance(10.0);
    let after = c.legs();
    assert!(after.iter().all(|l| l.coded_by == CodedBy::Agent && l.state == "closed"), "{after:?}");
    let d = after[0].final_disposition_id.unwrap();
    // Default: the closed contact is gone (404), and the attempt counts as outside the window.
    let (s, h, _) = c.dispose(&sids[0], legs[0].contact_id, json!({"primaryDispositionId": d})).await;
    assert_eq!(s, 404);
    assert_eq!(h["icStatusDescription"], "Invalid contactId");
    // Accepted on a closed contact: an overwrite of the agent's disposition, outside the window.
    c.behave(CxoneBehaviours { closed_contact: ClosedContact::Accepted, ..CxoneBehaviours::default() });
    let d1 = after[1].final_disposition_id.unwrap();
    assert_eq!(c.dispose(&sids[1], legs[1].contact_id, json!({"primaryDispositionId": d1})).await.0, 200);
    let r = c.env.sb.cxone_report();
    assert_eq!(r.violations.outside_window, 2);
    assert_eq!(r.violations.overwrites, 1);
    assert_eq!(r.violations.overwrite_attempts, 1);
    assert_eq!(r.legs.coded_by_agent, 1);
    assert_eq!(r.legs.coded_by_api, 1);
    let l = c.leg(legs[1].contact_id);
    assert!(l.agent_coded_before_api);
    assert!(r
        .violations
        .details
        .iter()
        .any(|v| v.kind == "overwrite" && v.participant_id == legs[1].contact_id.to_string()));
}

#[tokio::test]
async fn each_switch_changes_the_answer_as_documented() {
    let c = cx(cx_config(5)).await;
    // keepsAcw: the contact stays in ACW after our write; a second write is a duplicate (overwrite switch)…
    c.behave(CxoneBehaviours { disposition_ends_acw: DispositionEndsAcw::KeepsAcw, ..CxoneBehaviours::default() });
    let (leg, d) = c.acw_leg(0);
    let sid = c.join(leg.agent_id.unwrap()).await;
    assert_eq!(c.dispose(&sid, leg.contact_id, json!({"primaryDispositionId": d})).await.0, 200);
    assert_eq!(c.leg(leg.contact_id).state, "acw");
    assert_eq!(c.dispose(&sid, leg.contact_id, json!({"primaryDispositionId": d})).await.0, 200);
    assert_eq!(c.env.sb.cxone_report().violations.duplicate_writes, 1);
    // …or a 409 with reject409.
    c.behave(CxoneBehaviours {
        disposition_ends_acw: DispositionEndsAcw::KeepsAcw,
        second_disposition: SecondDisposition::Reject409,
        ..CxoneBehaviours::default()
    });
    let (s, h, _) = c.dispose(&sid, leg.contact_id, json!({"primaryDispositionId": d})).await;
    assert_eq!(s, 409);
    assert_eq!(h["icStatusDescription"], "Skill does not allow additional disposition");
    assert_eq!(c.env.sb.cxone_report().violations.duplicate_writes, 1);
    // The agent leaves ACW after finish_delay (30 s).
    c.env.clock.advance(31.0);
    assert_eq!(c.leg(leg.contact_id).state, "closed");

    // Disposition not on the contact's skill: accepted.
    c.behave(CxoneBehaviours { disposition_not_on_skill: NotOnSkill::Accepted, ..CxoneBehaviours::default() });
    let (leg, _) = c.acw_leg(0);
    let foreign = c.env.sb.with_bu(|bu| {
        let s = bu.skill_by_id(leg.skill_id).unwrap();
        *bu.dispositions.keys().find(|k| !bu.skills[s].dispositions.contains(k)).unwrap()
    });
    let sid = c.join(leg.agent_id.unwrap()).await;
    assert_eq!(c.dispose(&sid, leg.contact_id, json!({"primaryDispositionId": foreign})).await.0, 200);

    // Stale session ids: accepted by default, 404 Invalid sessionId when rejected.
    let (leg, d) = c.acw_leg(0);
    let old = c.join(leg.agent_id.unwrap()).await;
    let (_, v) = c.poll(&old, 0).await;
    assert_ne!(v["sessionId"], old);
    c.behave(CxoneBehaviours { stale_session_id: StaleSessionId::Rejected, ..CxoneBehaviours::default() });
    let (s, h, _) = c.dispose(&old, leg.contact_id, json!({"primaryDispositionId": d})).await;
    assert_eq!(s, 404);
    assert_eq!(h["icStatusDescription"], "Invalid sessionId");
    let current = v["sessionId"].as_str().unwrap();
    assert_eq!(c.dispose(current, leg.contact_id, json!({"primaryDispositionId": d})).await.0, 200);
    c.behave(CxoneBehaviours::default());
    let (leg, d) = c.acw_leg(0);
    let old = c.join(leg.agent_id.unwrap()).await;
    c.poll(&old, 0).await;
    assert_eq!(c.dispose(&old, leg.contact_id, json!({"primaryDispositionId": d})).await.0, 200);

    // Through the control API: PUT /sandbox/v1/behaviours with a `cxone` key, and PUT /sandbox/v1/cxone/behaviours.
    let r = c
        .env
        .http
        .put(format!("{}/sandbox/v1/behaviours", c.env.base))
        .json(&json!({"cxone": {"second_disposition": "reject409"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["cxone"]["second_disposition"], "reject409");
    assert_eq!(v["second_write"], "overwrite");
    let r = c
        .env
        .http
        .put(format!("{}/sandbox/v1/cxone/behaviours", c.env.base))
        .json(&json!({"retry_after": "absent", "disposition_ends_acw": "keepsAcw"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["retry_after"], "absent");
    assert_eq!(v["second_disposition"], "reject409");
    let r = c
        .env
        .http
        .put(format!("{}/sandbox/v1/cxone/behaviours", c.env.base))
        .json(&json!({"retry_after": "maybe"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(c.env.sb.with_bu(|bu| bu.behaviours.retry_after), RetryAfter::Absent);
}

#[tokio::test]
async fn faults_hit_cxone_requests_and_retry_after_follows_its_switch() {
    let c = cx(cx_config(1)).await;
    c.env.sb.set_faults(FaultProfile { http_5xx_rate: 1.0, ..FaultProfile::calm() });
    let (s, h, _) = c.get(&format!("{V}/skills")).await;
    assert!((500..=504).contains(&s));
    assert!(h.contains_key("icStatusDescription"));
    c.env.sb.set_faults(FaultProfile { storm_rate: 1.0, storm_secs: 3, ..FaultProfile::calm() });
    let (s, h, v) = c.get(&format!("{V}/skills")).await;
    assert_eq!(s, 429);
    // A storm lasts `storm_secs` of the platform's clock; `Retry-After` is what is left of it in wall time, in whole
    // seconds (at least 1). The test's manual clock maps any simulated span to 50 ms of wall time.
    assert_eq!(h["retry-after"], "1");
    assert_eq!(v["error_description"], "Api Rate Exceeded");
    c.env.sb.set_faults(FaultProfile::calm());
    c.behave(CxoneBehaviours { retry_after: RetryAfter::Absent, ..CxoneBehaviours::default() });
    c.env.sb.set_faults(FaultProfile { storm_rate: 1.0, ..FaultProfile::calm() });
    let (s, h, _) = c.get(&format!("{V}/skills")).await;
    assert_eq!(s, 429);
    assert!(!h.contains_key("retry-after"));
    c.env.sb.set_faults(FaultProfile { token_revocation_rate: 1.0, ..FaultProfile::calm() });
    assert_eq!(c.get(&format!("{V}/skills")).await.0, 401);
    c.env.sb.set_faults(FaultProfile::calm());
    assert_eq!(c.get(&format!("{V}/skills")).await.0, 401, "a revoked token stays revoked");
    let r = c.env.sb.cxone_report();
    assert!(r.api.rate_limited >= 2);
    assert!(r.api.by_endpoint["GET /inContactAPI/services/v{N}.0/skills"]["429"] >= 2);
}

#[tokio::test]
async fn a_cxone_rate_limit_refuses_with_api_rate_exceeded_and_sends_no_rate_limit_headers() {
    let mut cfg = cx_config(0);
    cfg.cxone.rate_limit_per_minute = 2;
    cfg.cxone.rate_limit_window = wrapup_sandbox::RateWindow::Sliding;
    let c = cx(cfg).await;
    for _ in 0..2 {
        let (s, h, _) = c.get(&format!("{V}/skills")).await;
        assert_eq!(s, 200);
        assert!(h.keys().all(|k| !k.as_str().starts_with("inin-ratelimit")), "{h:?}");
    }
    let (s, h, v) = c.get(&format!("{V}/skills")).await;
    assert_eq!(s, 429);
    assert_eq!(v["error_description"], "Api Rate Exceeded");
    // The first request leaves the sliding window a minute after it was counted.
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "{h:?}");
    assert!(h.keys().all(|k| !k.as_str().starts_with("inin-ratelimit")), "{h:?}");
}

#[tokio::test]
async fn get_next_event_faults_drop_and_duplicate_events() {
    let c = cx(cx_config(2)).await;
    let legs = c.legs();
    c.env.sb.set_faults(FaultProfile { event_drop_rate: 1.0, ..FaultProfile::calm() });
    let sid = c.join(legs[0].agent_id.unwrap()).await;
    let (_, v) = c.poll(&sid, 0).await;
    let sid = v["sessionId"].as_str().unwrap().to_string();
    let d = c.acw_leg(0).1;
    let (leg0, d0) =
        (legs[0].clone(), if c.acw_leg(0).0.contact_id == legs[0].contact_id { d } else { c.acw_leg(1).1 });
    assert_eq!(c.dispose(&sid, leg0.contact_id, json!({"primaryDispositionId": d0})).await.0, 200);
    assert_eq!(c.poll(&sid, 0).await.0, 304, "every event was dropped");
    assert!(c.env.sb.cxone_report().events.dropped >= 2);

    c.env.sb.set_faults(FaultProfile { event_duplicate_rate: 1.0, ..FaultProfile::calm() });
    let leg1 = legs[1].clone();
    let sid = c.join(leg1.agent_id.unwrap()).await;
    let (_, v) = c.poll(&sid, 0).await;
    let sid = v["sessionId"].as_str().unwrap().to_string();
    let d1 = c.env.sb.with_bu(|bu| bu.skills[bu.skill_by_id(leg1.skill_id).unwrap()].dispositions[0]);
    assert_eq!(c.dispose(&sid, leg1.contact_id, json!({"primaryDispositionId": d1})).await.0, 200);
    let (s, v) = c.poll(&sid, 0).await;
    assert_eq!(s, 200);
    let finals: Vec<&Value> = v["events"].as_array().unwrap().iter().filter(|e| e["FinalState"] == "True").collect();
    assert_eq!(finals.len(), 2, "{v}");
    let r = c.env.sb.cxone_report();
    assert!(r.events.duplicated >= 2 && r.events.delivered >= 4);
}

#[tokio::test]
async fn the_report_and_legs_endpoints_carry_the_cxone_truth() {
    let c = cx(cx_config(1)).await;
    let v: Value =
        c.env.http.get(format!("{}/sandbox/v1/report", c.env.base)).send().await.unwrap().json().await.unwrap();
    for k in ["legs", "violations", "api", "events"] {
        assert!(v[k].is_object(), "genesys {k}");
        assert!(v["cxone"][k].is_object(), "cxone {k}");
    }
    assert_eq!(v["cxone"]["legs"]["total"], 1);
    assert_eq!(v["cxone"]["legs"]["open"], 1);
    let legs: Value =
        c.env.http.get(format!("{}/sandbox/v1/cxone/legs", c.env.base)).send().await.unwrap().json().await.unwrap();
    let l = &legs[0];
    for f in
        ["contactId", "masterContactId", "skillId", "agentId", "media", "state", "acwStartedAt", "codedBy", "apiWrites"]
    {
        assert!(!l[f].is_null(), "{f}: {l}");
    }
    assert_eq!(l["state"], "acw");
    let line = wrapup_sandbox::cli::cxone_line(&c.env.sb);
    let creds = c.env.sb.cxone_credentials();
    assert_eq!(line["access_key_id"], creds.access_key_id);
    assert_eq!(line["business_unit_id"], creds.business_unit_id);
    assert_eq!(line["tenant_id"], creds.tenant_id);
    assert!(line["discovery_url"].as_str().unwrap().ends_with("/.well-known/openid-configuration"));
}

#[tokio::test]
async fn the_default_center_makes_many_acw_windows_and_some_agent_dispositions_in_a_demo_length_run() {
    // 30 wall seconds at speed 20 = 600 simulated seconds.
    let mut cfg = SandboxConfig { traffic_autostart: true, ..SandboxConfig::default() };
    cfg.center.arrival_rate_per_sec = 0.0;
    let c = cx(cfg).await;
    for _ in 0..120 {
        c.env.clock.advance(5.0);
    }
    let legs = c.legs();
    let windows = legs.iter().filter(|l| l.acw_started_at.is_some()).count();
    let agent = legs.iter().filter(|l| l.coded_by == CodedBy::Agent).count();
    assert!(legs.len() >= 60, "{} contacts", legs.len());
    assert!(windows >= 40, "{windows} ACW windows");
    assert!(agent >= 5 && agent < windows, "{agent} agent dispositions of {windows}");
    assert!(legs.iter().any(|l| l.media == wrapup_sandbox::cxone::CxMedia::WorkItem));
    assert!(legs.iter().any(|l| l.media == wrapup_sandbox::cxone::CxMedia::Chat));
}

#[test]
fn the_cxone_section_of_a_config_file_parses_with_defaults_for_the_rest() {
    let cfg: SandboxConfig = toml::from_str(
        "[cxone]\npreload = 2\ntoken_lifetime_secs = 60\n[cxone.behaviours]\nsecond_disposition = \"reject409\"\n\
         disposition_ends_acw = \"keepsAcw\"\n[cxone.center]\narrival_rate_per_sec = 0.5\n",
    )
    .unwrap();
    assert_eq!(cfg.cxone.preload, 2);
    assert_eq!(cfg.cxone.behaviours.second_disposition, SecondDisposition::Reject409);
    assert_eq!(cfg.cxone.behaviours.retry_after, RetryAfter::Sent);
    assert_eq!(cfg.cxone.center.skills.len(), 6);
    assert_eq!(cfg.center, SandboxConfig::default().center);
}

#[tokio::test]
async fn acw_ends_by_timeout_by_going_available_and_contacts_can_be_ended_by_the_agent_api() {
    let c = cx(cx_config(5)).await;
    let legs = c.legs();
    let by_skill = |name: &str| legs.iter().find(|l| l.skill_name == name).cloned();
    // Support Phone (not required, 90 s) and Retention Phone (automatic wrap-up, 45 s) time out undispositioned.
    let support = by_skill("Support Phone").unwrap();
    let retention = by_skill("Retention Phone").unwrap();
    assert!(support.acw_deadline.is_some() && retention.acw_deadline.is_some());
    // Sales Phone requires a disposition: no deadline.
    let sales = by_skill("Sales Phone").unwrap();
    assert!(sales.acw_deadline.is_none());
    // Going Available during ACW ends it without a disposition.
    let sid = c.join(sales.agent_id.unwrap()).await;
    let (s, _, _) =
        c.send(Method::POST, &format!("{V}/agent-sessions/{sid}/state"), Some(json!({"state": "Available"}))).await;
    assert_eq!(s, 202);
    let l = c.leg(sales.contact_id);
    assert_eq!((l.state.as_str(), l.coded_by), ("closed", CodedBy::Skipped));
    let (s, h, _) =
        c.send(Method::POST, &format!("{V}/agent-sessions/{sid}/state"), Some(json!({"state": "Busy"}))).await;
    assert_eq!(s, 400);
    assert_eq!(h["icStatusDescription"], "Invalid state request.  Use \"Available\" or \"Unavailable\".");

    c.env.clock.advance(100.0);
    for l in [support, retention] {
        let l = c.leg(l.contact_id);
        assert_eq!((l.state.as_str(), l.coded_by), ("closed", CodedBy::SystemTimeout), "{l:?}");
        assert_eq!(l.final_disposition_id, None);
    }
    let r = c.env.sb.cxone_report();
    // Support, Retention and the work item (90 s, not required); Billing Chat requires a disposition and waits.
    assert_eq!(r.legs.system_timeout, 3);
    assert_eq!(r.legs.skipped, 1);

    // Ending an active contact through the agent API starts its ACW.
    c.env.sb.start_traffic();
    let mut active = None;
    for _ in 0..60 {
        c.env.clock.advance(3.0);
        active = c.legs().into_iter().find(|l| l.state == "active" && l.acw_type_id != 1);
        if active.is_some() {
            break;
        }
    }
    c.env.sb.stop_traffic();
    let active = active.expect("an active contact");
    let sid = c.join(active.agent_id.unwrap()).await;
    let end = format!("{V}/agent-sessions/{sid}/interactions/{}/end", active.contact_id);
    assert_eq!(c.send(Method::POST, &end, None).await.0, 202);
    assert_eq!(c.leg(active.contact_id).state, "acw");
    let (s, h, _) = c.send(Method::POST, &end, None).await;
    assert_eq!(s, 409);
    assert_eq!(h["icStatusDescription"], "Cannot end the contact at this time.");
}

#[tokio::test]
async fn reordered_events_come_late_but_are_never_lost() {
    let c = cx(cx_config(1)).await;
    let (leg, d) = c.acw_leg(0);
    c.env.sb.set_faults(FaultProfile { event_reorder_rate: 1.0, ..FaultProfile::calm() });
    let sid = c.join(leg.agent_id.unwrap()).await;
    let (_, v) = c.poll(&sid, 0).await;
    let sid = v["sessionId"].as_str().unwrap().to_string();
    assert_eq!(c.dispose(&sid, leg.contact_id, json!({"primaryDispositionId": d})).await.0, 200);
    let (s, v) = c.poll(&sid, 0).await;
    assert_eq!(s, 200);
    assert!(v["events"].as_array().unwrap().iter().any(|e| e["FinalState"] == "True"), "{v}");
}
