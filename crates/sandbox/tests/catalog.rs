//! Catalog writes on both platforms as a "catalog as code" tool uses them: CXone `PUT dispositions/{id}` and
//! `PUT skills/{id}`, the duplicate-name switch, the change log and snapshots, the catalog faults (conflicts,
//! propagation delay), the rate limit on catalog routes, and the catalog shapes (large, variants).

mod common;

use common::{quiet_config, split, start, Env};
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use wrapup_sandbox::cxone::DuplicateNames;
use wrapup_sandbox::{
    CatalogShape, CatalogSnapshot, CxoneBehaviours, FaultProfile, Platform, RateLimit, SandboxConfig,
};

const V: &str = "/inContactAPI/services/v27.0";
const CODES: &str = "/api/v2/routing/wrapupcodes";

struct Cx {
    env: Env,
    token: String,
}

async fn cx(cfg: SandboxConfig) -> Cx {
    let env = start(cfg).await;
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
    let v: Value = r.json().await.unwrap();
    let token = v["access_token"].as_str().unwrap().to_string();
    Cx { env, token }
}

impl Cx {
    async fn cx(&self, m: Method, path: &str, body: Option<Value>) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut rb = self.env.http.request(m, format!("{}{V}/{path}", self.env.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        split(rb.send().await.unwrap()).await
    }
    async fn get(&self, path: &str) -> Value {
        let (s, _, v) = self.cx(Method::GET, path, None).await;
        assert_eq!(s, 200, "{path}: {v}");
        v
    }
    /// Id of the CXone disposition named `name`.
    fn disposition(&self, name: &str) -> i64 {
        self.env.sb.with_bu(|bu| bu.dispositions.values().find(|d| d.name == name).unwrap().id)
    }
    fn skill(&self, name: &str) -> i64 {
        self.env.sb.with_bu(|bu| bu.skills.iter().find(|s| s.name == name).unwrap().id)
    }
    async fn create(&self, items: Value) -> (u16, Value) {
        let (s, _, v) = self.cx(Method::POST, "dispositions", Some(json!({ "dispositions": items }))).await;
        (s, v)
    }
}

#[tokio::test]
async fn cxone_put_disposition_changes_the_given_fields_and_keeps_the_others() {
    let c = cx(quiet_config()).await;
    let id = c.disposition("Wrong number");
    let (s, h, _) = c
        .cx(
            Method::PUT,
            &format!("dispositions/{id}"),
            Some(json!({"dispositionName": "Wrong number dialled", "notes": "misdial", "isActive": false})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(h["icStatusDescription"], "Success");
    let d = c.get(&format!("dispositions/{id}")).await;
    assert_eq!(d["dispositionName"], "Wrong number dialled");
    assert_eq!(d["notes"], "misdial");
    assert_eq!(d["isActive"], false);
    assert_eq!(d["classificationId"], 1, "absent fields keep their value");
    assert_eq!(d["isPreviewDisposition"], false);
    let listed = c.get("dispositions?searchString=dialled").await;
    assert_eq!(listed["dispositions"][0]["isActive"], false);
    // The v23 form: query parameters.
    let (s, _, _) = c.cx(Method::PUT, &format!("dispositions/{id}?classificationId=3&isActive=true"), None).await;
    assert_eq!(s, 200);
    let d = c.get(&format!("dispositions/{id}")).await;
    assert_eq!((d["classificationId"].as_i64(), d["isActive"].as_bool()), (Some(3), Some(true)));
    assert_eq!(d["dispositionName"], "Wrong number dialled");

    let (s, h, v) = c.cx(Method::PUT, "dispositions/999", Some(json!({"notes": "x"}))).await;
    assert_eq!(s, 404);
    assert_eq!(h["icStatusDescription"], "Invalid dispositionId - '999'");
    assert_eq!(v["error"], "Invalid dispositionId - '999'");
    for bad in [json!(""), json!("x".repeat(51))] {
        let (s, h, _) = c.cx(Method::PUT, &format!("dispositions/{id}"), Some(json!({"dispositionName": bad}))).await;
        assert_eq!(s, 400);
        assert_eq!(h["icStatusDescription"], "Invalid dispositionName");
    }
    let locked = c.disposition("Legacy - do not use");
    let (s, h, _) = c.cx(Method::PUT, &format!("dispositions/{locked}"), Some(json!({"notes": "x"}))).await;
    assert_eq!(s, 409);
    assert_eq!(h["icStatusDescription"], format!("DispositionId - '{locked}' can not be updated"));
    assert_eq!(c.get(&format!("dispositions/{locked}")).await["notes"], "");
}

#[tokio::test]
async fn cxone_duplicate_disposition_names_are_allowed_by_default_and_rejected_by_the_switch() {
    let c = cx(quiet_config()).await;
    let (s, v) = c.create(json!([{"dispositionName": "Sale completed", "isActive": false}])).await;
    assert_eq!(s, 200, "{v}");
    let dup = v["dispositionResults"][0]["dispositionId"].as_i64().unwrap();
    assert_eq!(c.get(&format!("dispositions/{dup}")).await["isActive"], false);
    let snap = c.env.sb.catalog_snapshot(Platform::Cxone);
    assert_eq!(snap.duplicate_names, 2, "two dispositions named Sale completed");

    c.env.sb.set_cxone_behaviours(CxoneBehaviours {
        duplicate_disposition_names: DuplicateNames::Reject,
        ..CxoneBehaviours::default()
    });
    let (s, v) = c.create(json!([{"dispositionName": "Brand new"}, {"dispositionName": "NO SALE"}])).await;
    assert_eq!(s, 206, "{v}");
    assert_eq!(v["errorCount"], 1);
    assert_eq!(v["dispositionResults"][0]["success"], true);
    assert_eq!(
        v["dispositionResults"][1],
        json!({"dispositionId": null, "success": false, "error": "Disposition name already exists"})
    );
    let id = c.disposition("Brand new");
    let (s, h, _) = c.cx(Method::PUT, &format!("dispositions/{id}"), Some(json!({"dispositionName": "no sale"}))).await;
    assert_eq!(s, 400);
    assert_eq!(h["icStatusDescription"], "Disposition name already exists");
}

#[tokio::test]
async fn cxone_put_skill_replaces_the_assignment_by_priority_and_keeps_absent_fields() {
    let c = cx(quiet_config()).await;
    let sid = c.skill("Sales Phone");
    let (a, b) = (c.disposition("Escalated"), c.disposition("No sale"));
    let body = json!({"skill": {"requireDisposition": false, "dispositions": [
        {"dispositionId": a, "priority": 2}, {"dispositionId": b, "priority": 1}]}});
    let (s, _, v) = c.cx(Method::PUT, &format!("skills/{sid}"), Some(body)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"success": true, "skillId": sid, "error": null}));
    let sk = c.get(&format!("skills/{sid}")).await;
    assert_eq!(sk["requireDisposition"], false);
    assert_eq!(sk["maxSecondsACW"], 120, "absent fields keep their value");
    assert_eq!(sk["acwTypeId"], 2);
    let ds: Vec<(i64, i64)> = sk["dispositions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["dispositionId"].as_i64().unwrap(), d["priority"].as_i64().unwrap()))
        .collect();
    assert_eq!(ds, vec![(b, 1), (a, 2)]);
    let list = c.get(&format!("skills/{sid}/dispositions")).await;
    assert_eq!(list["totalRecords"], 2);
    assert_eq!(list["dispositions"][0]["dispositionId"], b);
    assert_eq!(list["dispositions"][1]["displayOrder"], 2);
    // Settings only: the assignment stays.
    let (s, _, _) = c.cx(Method::PUT, &format!("skills/{sid}"), Some(json!({"skill": {"maxSecondsAcw": 30}}))).await;
    assert_eq!(s, 200);
    let sk = c.get(&format!("skills/{sid}")).await;
    assert_eq!((sk["maxSecondsACW"].as_i64(), sk["dispositions"].as_array().unwrap().len()), (Some(30), 2));
    // An empty array empties it.
    let (s, _, _) = c.cx(Method::PUT, &format!("skills/{sid}"), Some(json!({"skill": {"dispositions": []}}))).await;
    assert_eq!(s, 200);
    let (s, _, _) = c.cx(Method::GET, &format!("skills/{sid}/dispositions"), None).await;
    assert_eq!(s, 204);

    let bad = json!({"skill": {"dispositions": [{"dispositionId": a}, {"dispositionId": 999_999}]}});
    let (s, _, v) = c.cx(Method::PUT, &format!("skills/{sid}"), Some(bad)).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(c.env.sb.with_bu(|bu| bu.skills[0].dispositions.len()), 0, "a rejected PUT changes nothing");
    let (s, h, _) = c.cx(Method::PUT, "skills/12", Some(json!({"skill": {}}))).await;
    assert_eq!(s, 404);
    assert_eq!(h["icStatusDescription"], "Invalid skillId - '12', does not exist");
    let (s, _, _) = c.cx(Method::PUT, &format!("skills/{sid}"), Some(json!({"skill": {"acwTypeId": 7}}))).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn catalog_conflicts_answer_409_and_change_nothing_on_both_platforms() {
    let c = cx(quiet_config()).await;
    let before_g = c.env.sb.catalog_snapshot(Platform::Genesys);
    let before_c = c.env.sb.catalog_snapshot(Platform::Cxone);
    c.env.sb.set_faults(FaultProfile { catalog_conflict_rate: 1.0, ..FaultProfile::calm() });
    let g = &c.env;
    let (s, _, v) = g.send(Method::POST, CODES, json!({"name": "Conflicted"})).await;
    assert_eq!(s, 409);
    assert_eq!((v["status"].as_u64(), v["code"].as_str()), (Some(409), Some("conflict")), "{v}");
    assert!(v["message"].is_string() && v["contextId"].is_string());
    let code = before_g.code("No sale").unwrap().id.clone();
    assert_eq!(g.send(Method::PUT, &format!("{CODES}/{code}"), json!({"name": "x"})).await.0, 409);
    assert_eq!(g.send(Method::DELETE, &format!("{CODES}/{code}"), Value::Null).await.0, 409);
    let q = g.sb.with_org(|o| o.queues[0].id.clone());
    let path = format!("/api/v2/routing/queues/{q}/wrapupcodes");
    assert_eq!(g.send(Method::POST, &path, json!([{"id": code}])).await.0, 409);
    let first = g.sb.with_org(|o| o.queues[0].codes[0].clone());
    assert_eq!(g.send(Method::DELETE, &format!("{path}/{first}"), Value::Null).await.0, 409);
    // Invalid writes keep their own answers.
    assert_eq!(g.send(Method::POST, CODES, json!({"name": ""})).await.0, 400);

    let items = json!({"dispositions": [{"dispositionName": "Conflicted"}]});
    let (s, h, v) = c.cx(Method::POST, "dispositions", Some(items)).await;
    assert_eq!(s, 409, "{v}");
    assert!(h["icStatusDescription"].to_str().unwrap().starts_with("Conflict"));
    let id = c.disposition("No sale");
    assert_eq!(c.cx(Method::PUT, &format!("dispositions/{id}"), Some(json!({"notes": "x"}))).await.0, 409);
    let sid = c.skill("Sales Phone");
    let (s, h, _) = c.cx(Method::PUT, &format!("skills/{sid}"), Some(json!({"skill": {"dispositions": []}}))).await;
    assert_eq!(s, 409);
    assert_eq!(h["icStatusDescription"], "Invalid state.  Cannot update a running skill");

    assert_eq!(c.env.sb.catalog_snapshot(Platform::Genesys), before_g);
    assert_eq!(c.env.sb.catalog_snapshot(Platform::Cxone), before_c);
    assert!(c.env.sb.catalog_changes().is_empty());
}

#[tokio::test]
async fn catalog_writes_show_in_the_reads_only_after_the_propagation_delay() {
    let c = cx(quiet_config()).await;
    c.env.sb.set_faults(FaultProfile { catalog_propagation_ms: 2_000, ..FaultProfile::calm() });
    let g = &c.env;
    let (s, _, v) = g.send(Method::POST, CODES, json!({"name": "Late code"})).await;
    assert_eq!(s, 200);
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(g.get(&format!("{CODES}/{id}")).await.0, 404, "not visible yet");
    assert_eq!(g.get(&format!("{CODES}?name=Late%20code")).await.2["total"], 0);
    // The write is applied at once: the same name again is refused.
    assert_eq!(g.send(Method::POST, CODES, json!({"name": "late CODE"})).await.0, 400);
    let q = g.sb.with_org(|o| o.queues[0].id.clone());
    let path = format!("/api/v2/routing/queues/{q}/wrapupcodes");
    let n = g.get(&path).await.2["total"].as_u64().unwrap();
    assert_eq!(g.send(Method::POST, &path, json!([{"id": id}])).await.0, 200);
    assert_eq!(g.get(&path).await.2["total"].as_u64().unwrap(), n);

    let sid = c.skill("Sales Phone");
    let (s, _, _) = c.cx(Method::PUT, &format!("skills/{sid}"), Some(json!({"skill": {"dispositions": []}}))).await;
    assert_eq!(s, 200);
    let (s, v) = c.create(json!([{"dispositionName": "Late disposition"}])).await;
    assert_eq!(s, 200);
    let did = v["dispositionResults"][0]["dispositionId"].as_i64().unwrap();
    assert_eq!(c.cx(Method::GET, &format!("dispositions/{did}"), None).await.0, 404);
    assert_eq!(c.get(&format!("skills/{sid}")).await["dispositions"].as_array().unwrap().len(), 4);
    assert_eq!(c.get(&format!("skills/{sid}/dispositions")).await["totalRecords"], 4);

    c.env.clock.advance(1.5);
    assert_eq!(g.get(&format!("{CODES}/{id}")).await.0, 404, "1.5 s is not enough");
    c.env.clock.advance(0.6);
    assert_eq!(g.get(&format!("{CODES}/{id}")).await.0, 200);
    assert_eq!(g.get(&path).await.2["total"].as_u64().unwrap(), n + 1);
    assert_eq!(c.get(&format!("dispositions/{did}")).await["dispositionName"], "Late disposition");
    assert_eq!(c.cx(Method::GET, &format!("skills/{sid}/dispositions"), None).await.0, 204);
}

#[tokio::test]
async fn catalog_routes_are_rate_limited_like_every_other_route() {
    let c = cx(quiet_config()).await;
    let g = &c.env;
    g.sb.set_rate_limit(RateLimit { per_minute: 2, ..g.sb.rate_limit() });
    assert_eq!(g.send(Method::POST, CODES, json!({"name": "One"})).await.0, 200);
    assert_eq!(g.get(CODES).await.0, 200);
    let (s, h, v) = g.send(Method::POST, CODES, json!({"name": "Two"})).await;
    assert_eq!(s, 429);
    assert_eq!(v["code"], "too.many.requests");
    assert!(h.contains_key("retry-after"));
    assert!(g.sb.catalog_snapshot(Platform::Genesys).code("Two").is_none());

    c.env.sb.set_cxone_rate_limit(RateLimit { per_minute: 1, ..c.env.sb.cxone_rate_limit() });
    let id = c.disposition("No sale");
    assert_eq!(c.cx(Method::PUT, &format!("dispositions/{id}"), Some(json!({"notes": "a"}))).await.0, 200);
    let (s, h, _) = c.cx(Method::PUT, &format!("dispositions/{id}"), Some(json!({"notes": "b"}))).await;
    assert_eq!(s, 429);
    assert_eq!(h["icStatusDescription"], "Api Rate Exceeded");
    let sid = c.skill("Sales Phone");
    assert_eq!(c.cx(Method::PUT, &format!("skills/{sid}"), Some(json!({"skill": {}}))).await.0, 429);

    // The fault profile's 429 storms too, on both platforms.
    c.env.sb.set_cxone_rate_limit(RateLimit { per_minute: 0, ..c.env.sb.cxone_rate_limit() });
    g.sb.set_rate_limit(RateLimit { per_minute: 300, ..g.sb.rate_limit() });
    c.env.sb.set_faults(FaultProfile { storm_rate: 1.0, ..FaultProfile::calm() });
    assert_eq!(g.send(Method::POST, CODES, json!({"name": "Stormy"})).await.0, 429);
    let (s, _, _) = c.cx(Method::POST, "dispositions", Some(json!({"dispositions": [{"dispositionName": "x"}]}))).await;
    assert_eq!(s, 429);
}

#[tokio::test]
async fn every_successful_catalog_write_is_in_the_change_log_with_its_client_before_and_after() {
    let c = cx(quiet_config()).await;
    let g = &c.env;
    c.env.clock.advance(10.0);
    let (_, _, v) = g.send(Method::POST, CODES, json!({"name": "Logged", "description": "d1"})).await;
    let id = v["id"].as_str().unwrap().to_string();
    assert_eq!(g.send(Method::POST, CODES, json!({"name": "logged"})).await.0, 400, "failed writes are not logged");
    g.send(Method::PUT, &format!("{CODES}/{id}"), json!({"name": "Logged", "description": "d2"})).await;
    let q = g.sb.with_org(|o| o.queues[0].id.clone());
    let path = format!("/api/v2/routing/queues/{q}/wrapupcodes");
    assert_eq!(g.send(Method::POST, &path, json!([{"id": id}])).await.0, 200);
    assert_eq!(g.send(Method::DELETE, &format!("{path}/{id}"), Value::Null).await.0, 204);
    assert_eq!(g.send(Method::DELETE, &format!("{CODES}/{id}"), Value::Null).await.0, 204);
    let (_, v) = c.create(json!([{"dispositionName": "Logged too"}])).await;
    let did = v["dispositionResults"][0]["dispositionId"].as_i64().unwrap();
    c.cx(Method::PUT, &format!("dispositions/{did}"), Some(json!({"notes": "n"}))).await;
    let sid = c.skill("Billing Chat");
    c.cx(Method::PUT, &format!("skills/{sid}"), Some(json!({"skill": {"dispositions": [{"dispositionId": did}]}})))
        .await;

    let log = g.sb.catalog_changes();
    let kinds: Vec<(Platform, &str, &str)> =
        log.iter().map(|e| (e.platform, e.action.as_str(), e.object_type.as_str())).collect();
    assert_eq!(
        kinds,
        vec![
            (Platform::Genesys, "create", "wrapupCode"),
            (Platform::Genesys, "update", "wrapupCode"),
            (Platform::Genesys, "assign", "queue"),
            (Platform::Genesys, "unassign", "queue"),
            (Platform::Genesys, "delete", "wrapupCode"),
            (Platform::Cxone, "create", "disposition"),
            (Platform::Cxone, "update", "disposition"),
            (Platform::Cxone, "update", "skill"),
        ]
    );
    let client = g.sb.credentials()[0].0.clone();
    assert!(log[..5].iter().all(|e| e.client_id == client));
    assert!(log[5..].iter().all(|e| e.client_id == g.sb.cxone_credentials().client_id));
    assert_eq!(log[0].at, "2026-03-02T09:00:10.000Z");
    assert_eq!((log[0].before.clone(), log[0].after["description"].clone()), (Value::Null, json!("d1")));
    assert_eq!((log[1].before["description"].as_str(), log[1].after["description"].as_str()), (Some("d1"), Some("d2")));
    let sales_codes = log[2].before.as_array().unwrap().len();
    assert_eq!(log[2].after.as_array().unwrap().len(), sales_codes + 1);
    assert_eq!(log[2].after.as_array().unwrap().last().unwrap(), "Logged");
    assert_eq!(log[2].object_name, "Sales");
    assert_eq!(log[4].after, Value::Null);
    assert_eq!(log[7].after["dispositions"], json!(["Logged too"]));
    assert_eq!(log[7].before["dispositions"], json!(["Payment taken", "Refund issued", "Billing question answered"]));

    let over_http: Vec<Value> =
        g.http.get(format!("{}/sandbox/v1/catalog/changes", g.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(over_http.len(), 8);
    assert_eq!(over_http[7]["objectType"], "skill");
    let snap: CatalogSnapshot =
        g.http.get(format!("{}/sandbox/v1/catalog/cxone", g.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(snap, g.sb.catalog_snapshot(Platform::Cxone));
    assert_eq!(snap.assignments["Billing Chat"], vec!["Logged too".to_string()]);
    assert_eq!(snap.code("Logged too").unwrap().fields["notes"], "n");
    let g_snap = g.sb.catalog_snapshot(Platform::Genesys);
    assert_eq!(g_snap.duplicate_names, 0);
    assert!(g_snap.code("Logged").is_none());
    assert_eq!(g.http.get(format!("{}/sandbox/v1/catalog/nope", g.base)).send().await.unwrap().status(), 404);
}

/// A catalog by name only: code names with their text, and (container, code) pairs.
fn by_name(s: &CatalogSnapshot) -> (BTreeMap<String, Value>, BTreeSet<(String, String)>) {
    let text = if s.platform == Platform::Genesys { "description" } else { "notes" };
    let codes = s.codes.iter().map(|c| (c.name.clone(), c.fields[text].clone())).collect();
    let pairs = s.assignments.iter().flat_map(|(q, cs)| cs.iter().map(move |c| (q.clone(), c.clone()))).collect();
    (codes, pairs)
}

fn shaped(seed: u64, shape: CatalogShape) -> SandboxConfig {
    SandboxConfig { seed, catalog: shape, ..quiet_config() }
}

#[tokio::test]
async fn a_large_catalog_is_generated_deterministically_on_both_platforms_and_traffic_keeps_running() {
    let shape = CatalogShape { queues: 300, codes: 200, variant: 0 };
    let mut cfg = shaped(3, shape);
    cfg.traffic_autostart = true;
    cfg.center.arrival_rate_per_sec = 0.5;
    let c = cx(cfg).await;
    let g = &c.env;
    let (_, _, queues) = g.get("/api/v2/routing/queues?pageSize=500").await;
    assert_eq!(queues["total"], 305);
    let (_, _, codes) = g.get(&format!("{CODES}?pageSize=500")).await;
    assert_eq!(codes["total"], 216, "16 configured + 200 generated");
    let snap = g.sb.catalog_snapshot(Platform::Genesys);
    assert_eq!(snap.assignments["Queue 001"], vec!["Code 001", "Code 014"]);
    assert!(snap.code("Code 200").is_some());
    let q300 = &snap.assignments["Queue 300"];
    assert!((2..=6).contains(&q300.len()), "{q300:?}");
    let cx_snap = g.sb.catalog_snapshot(Platform::Cxone);
    assert_eq!(cx_snap.assignments.len(), 306);
    assert_eq!(cx_snap.assignments["Skill 001"], snap.assignments["Queue 001"]);
    assert_eq!(c.get("skills?top=1").await["totalRecords"], 306);
    assert_eq!(c.get("dispositions?top=1").await["totalRecords"], 216, "16 configured + 200 generated");

    // Another seed: the same catalog by name.
    let other = cx(shaped(4, shape)).await;
    assert_eq!(by_name(&other.env.sb.catalog_snapshot(Platform::Genesys)), by_name(&snap));
    assert_eq!(by_name(&other.env.sb.catalog_snapshot(Platform::Cxone)), by_name(&cx_snap));

    // Traffic runs on the configured queues and skills.
    for _ in 0..120 {
        c.env.clock.advance(5.0);
        c.env.sb.with_org(|_| ());
        c.env.sb.with_bu(|_| ());
    }
    let legs = g.sb.legs();
    assert!(legs.len() > 50, "{}", legs.len());
    assert!(legs.iter().all(|l| !l.queue_name.as_deref().unwrap_or("").starts_with("Queue ")));
    let cx_legs = g.sb.cxone_legs();
    assert!(cx_legs.len() > 50, "{}", cx_legs.len());
    assert!(cx_legs.iter().all(|l| !l.skill_name.starts_with("Skill ")));
}

#[tokio::test]
async fn a_catalog_variant_differs_by_name_as_documented_and_variant_zero_is_the_same_across_seeds() {
    let base = cx(shaped(1, CatalogShape::default())).await;
    let same = cx(shaped(2, CatalogShape::default())).await;
    let variant = cx(shaped(2, CatalogShape { variant: 1, ..CatalogShape::default() })).await;
    for platform in [Platform::Genesys, Platform::Cxone] {
        let a = base.env.sb.catalog_snapshot(platform);
        let b = same.env.sb.catalog_snapshot(platform);
        if platform == Platform::Genesys {
            assert_ne!(a.codes[0].id, b.codes[0].id, "code ids differ between seeds");
        }
        assert_eq!(by_name(&a), by_name(&b), "{platform:?}");

        let (codes_a, pairs_a) = by_name(&a);
        let (codes_v, pairs_v) = by_name(&variant.env.sb.catalog_snapshot(platform));
        let missing: Vec<&String> = codes_a.keys().filter(|n| !codes_v.contains_key(*n)).collect();
        let extra: Vec<&String> = codes_v.keys().filter(|n| !codes_a.contains_key(*n)).collect();
        assert_eq!(missing.len(), 2, "{platform:?}: {missing:?}");
        assert_eq!(extra, vec!["Added by hand 1"], "{platform:?}");
        let changed: Vec<&String> =
            codes_v.iter().filter(|(n, t)| codes_a.get(*n).is_some_and(|ta| ta != *t)).map(|(n, _)| n).collect();
        assert_eq!(changed.len(), 1, "{platform:?}");
        assert_eq!(codes_v[changed[0]], "Changed in variant 1");
        // Assignments: besides those of the two missing codes, exactly one removed and one added.
        let kept_a: BTreeSet<_> = pairs_a.iter().filter(|(_, c)| !missing.contains(&c)).cloned().collect();
        assert_eq!(kept_a.difference(&pairs_v).count(), 1, "{platform:?}");
        assert_eq!(pairs_v.difference(&kept_a).count(), 1, "{platform:?}");
        if platform == Platform::Cxone {
            assert!(codes_v.contains_key("Legacy - do not use"), "system dispositions are never perturbed");
        }
    }
}

#[test]
fn a_catalog_table_and_the_catalog_faults_parse_from_the_config_file() {
    let cfg: SandboxConfig = toml::from_str(
        "[catalog]\nqueues = 300\ncodes = 200\nvariant = 2\n\n[faults]\ncatalog_conflict_rate = 0.1\ncatalog_propagation_ms = 1500\n\n[cxone.behaviours]\nduplicate_disposition_names = \"reject\"\n",
    )
    .unwrap();
    assert_eq!(cfg.catalog, CatalogShape { queues: 300, codes: 200, variant: 2 });
    assert_eq!((cfg.faults.catalog_conflict_rate, cfg.faults.catalog_propagation_ms), (0.1, 1500));
    assert_eq!(cfg.cxone.behaviours.duplicate_disposition_names, DuplicateNames::Reject);
    assert_eq!(SandboxConfig::default().cxone.behaviours.duplicate_disposition_names, DuplicateNames::Allow);
    assert!(toml::from_str::<SandboxConfig>("[catalog]\nshape = 1\n").is_err());
}
