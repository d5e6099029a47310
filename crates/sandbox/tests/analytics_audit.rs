//! Conversation aggregates (`POST /api/v2/analytics/conversations/aggregates/query`) against the ground truth, and the
//! audit trail of catalog changes (`POST /api/v2/audits/query/realtime`).

mod common;

use common::{quiet_config, start, Env};
use jiff::Timestamp;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use wrapup_sandbox::{LegTruth, SandboxConfig};

const AGG: &str = "/api/v2/analytics/conversations/aggregates/query";
const AUDIT: &str = "/api/v2/audits/query/realtime";
const DAY: &str = "2026-03-02T00:00:00Z/2026-03-03T00:00:00Z";

fn ms(iso: &str) -> i64 {
    iso.parse::<Timestamp>().unwrap().as_millisecond()
}

fn assert_error_body(v: &Value, status: u16, code: &str) {
    assert_eq!(v["status"], status, "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].is_string() && v["contextId"].is_string(), "{v}");
    assert!(v["details"].is_array() && v["errors"].is_array(), "{v}");
}

/// A center with traffic, run for a simulated hour (09:00 → 10:00 on 2026-03-02).
async fn busy_center() -> Env {
    let mut cfg = SandboxConfig { seed: 11, ..SandboxConfig::default() };
    cfg.center.arrival_rate_per_sec = 0.2;
    let env = start(cfg).await;
    for _ in 0..360 {
        env.clock.advance(10.0);
        env.sb.with_org(|_| ());
    }
    env
}

/// Count/sum/min/max as the API renders them.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Stats {
    count: u64,
    sum: i64,
    min: i64,
    max: i64,
}

impl Stats {
    fn add(&mut self, v: i64) {
        if self.count == 0 {
            self.min = v;
            self.max = v;
        }
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.count += 1;
        self.sum += v;
    }
    fn of(stats: &Value) -> Self {
        Self {
            count: stats["count"].as_u64().unwrap(),
            sum: stats["sum"].as_i64().unwrap_or(0),
            min: stats["min"].as_i64().unwrap_or(0),
            max: stats["max"].as_i64().unwrap_or(0),
        }
    }
}

/// `(group key, interval) → metric → stats` of an answer, with the group key built from `dims` (`None` = absent).
type Table = BTreeMap<(Vec<Option<String>>, String), BTreeMap<String, Stats>>;

fn table(v: &Value, dims: &[&str]) -> Table {
    let mut out = Table::new();
    for r in v["results"].as_array().unwrap() {
        let group = r["group"].as_object().unwrap();
        assert!(group.keys().all(|k| dims.contains(&k.as_str())), "{group:?}");
        let key: Vec<Option<String>> =
            dims.iter().map(|d| group.get(*d).map(|x| x.as_str().unwrap().to_string())).collect();
        for d in r["data"].as_array().unwrap() {
            let metrics = d["metrics"].as_array().unwrap();
            assert!(!metrics.is_empty());
            let m = metrics.iter().map(|m| (m["metric"].as_str().unwrap().to_string(), Stats::of(&m["stats"])));
            let prev = out.insert((key.clone(), d["interval"].as_str().unwrap().to_string()), m.collect());
            assert!(prev.is_none(), "a group and interval appear once");
        }
    }
    out
}

async fn agg(env: &Env, body: Value) -> Value {
    let (s, _, v) = env.send(Method::POST, AGG, body).await;
    assert_eq!(s, 200, "{v}");
    v
}

#[tokio::test]
async fn aggregates_by_queue_and_code_match_the_legs_ground_truth() {
    let env = busy_center().await;
    let legs = env.sb.legs();
    assert!(legs.len() > 300, "{}", legs.len());
    let v = agg(
        &env,
        json!({"interval": DAY, "groupBy": ["queueId", "wrapUpCode"], "metrics": ["nConnected", "tAcw", "tHandle"]}),
    )
    .await;

    // Expected, from the legs' truth: nConnected per leg that connected; tAcw per closed window; tHandle per done leg
    // = talk (minus hold) + hold + ACW, read off the participants.
    let handle: BTreeMap<String, i64> = env.sb.with_org(|o| {
        let mut h = BTreeMap::new();
        for c in o.conversations.values() {
            for p in &c.participants {
                if let (Some(con), Some(end)) = (p.connected_at, p.end) {
                    let acw = match (p.acw_start, p.acw_end) {
                        (Some(s), Some(e)) => e.as_millisecond() - s.as_millisecond(),
                        _ => 0,
                    };
                    h.insert(p.id.clone(), end.as_millisecond() - con.as_millisecond() + acw);
                }
            }
        }
        h
    });
    let mut want: BTreeMap<Vec<Option<String>>, BTreeMap<&str, Stats>> = BTreeMap::new();
    for l in &legs {
        let key = vec![l.queue_id.clone(), l.final_code.clone()];
        let e = want.entry(key).or_default();
        if l.state != "alerting" {
            e.entry("nConnected").or_default().add(1);
        }
        if let (Some(s), Some(c)) = (&l.acw_started_at, &l.window_closed_at) {
            e.entry("tAcw").or_default().add(ms(c) - ms(s));
        }
        if l.state == "done" {
            e.entry("tHandle").or_default().add(handle[&l.participant_id]);
        }
    }
    want.retain(|_, m| !m.is_empty());
    let got = table(&v, &["queueId", "wrapUpCode"]);
    assert_eq!(got.len(), want.len(), "one result per (queue, code) group");
    for ((key, interval), metrics) in &got {
        assert_eq!(interval, "2026-03-02T00:00:00.000Z/2026-03-03T00:00:00.000Z");
        let w = &want[key];
        assert_eq!(metrics.len(), w.len(), "{key:?}: {metrics:?} vs {w:?}");
        for (m, s) in metrics {
            let mut expected = w[m.as_str()];
            if m == "nConnected" {
                // Counts render only `count`.
                expected.sum = 0;
                expected.min = 0;
                expected.max = 0;
            }
            assert_eq!(*s, expected, "{key:?} {m}");
        }
    }
    // Legs in ACW (and legs skipped or without ACW) have no wrapUpCode: their group lacks the key.
    assert!(legs.iter().any(|l| l.state == "acw"));
    assert!(got.keys().any(|(k, _)| k[1].is_none()));
    // The system timeout code is a group like any other.
    assert!(got.keys().any(|(k, _)| k[1].as_deref() == Some(wrapup_sandbox::SYSTEM_TIMEOUT_CODE_ID)));

    // Deterministic order: sorted by group values in groupBy order, absent values first; stats as the doc shows.
    let keys: Vec<_> = got.keys().map(|(k, _)| k.clone()).collect();
    let listed: Vec<Vec<Option<String>>> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| ["queueId", "wrapUpCode"].iter().map(|d| r["group"][*d].as_str().map(str::to_string)).collect())
        .collect();
    assert_eq!(listed, keys);
    let first = &v["results"][0]["data"][0]["metrics"][0];
    assert_eq!(first["metric"], "nConnected");
    assert_eq!(first["stats"].as_object().unwrap().keys().collect::<Vec<_>>(), vec!["count"]);
    let acw = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["data"][0]["metrics"].as_array().unwrap().clone())
        .find(|m| m["metric"] == "tAcw")
        .unwrap();
    let mut keys: Vec<&String> = acw["stats"].as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["count", "max", "min", "sum"]);

    // The same query twice gives the same answer.
    let again = agg(
        &env,
        json!({"interval": DAY, "groupBy": ["queueId", "wrapUpCode"], "metrics": ["nConnected", "tAcw", "tHandle"]}),
    )
    .await;
    assert_eq!(v, again);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn granularity_buckets_metrics_by_when_they_were_emitted() {
    let env = busy_center().await;
    env.sb.stop_traffic();
    let legs = env.sb.legs();
    let hour = "2026-03-02T09:00:00Z/2026-03-02T10:00:00Z";
    let v =
        agg(&env, json!({"interval": hour, "granularity": "PT10M", "metrics": ["tAcw", "nConnected", "tTalk"]})).await;
    let got = table(&v, &[]);
    assert_eq!(v["results"].as_array().unwrap().len(), 1, "no groupBy: one group");
    assert_eq!(v["results"][0]["group"], json!({}));
    let intervals: Vec<&String> = got.keys().map(|(_, i)| i).collect();
    assert!(intervals.len() >= 5, "{intervals:?}");
    for (k, i) in intervals.iter().enumerate() {
        let (a, b) = i.split_once('/').unwrap();
        assert_eq!(ms(b) - ms(a), 600_000, "{i}");
        assert_eq!((ms(a) - ms("2026-03-02T09:00:00Z")) % 600_000, 0, "{i}");
        if k > 0 {
            assert!(ms(a) > ms(intervals[k - 1].split_once('/').unwrap().0), "buckets in time order");
        }
    }
    // Per bucket, tAcw counts the windows that closed in it (truth: window_closed_at).
    let mut closed: BTreeMap<i64, u64> = BTreeMap::new();
    for l in &legs {
        if let (Some(_), Some(c)) = (&l.acw_started_at, &l.window_closed_at) {
            let c = ms(c);
            let start = ms("2026-03-02T09:00:00Z");
            if c >= start && c < ms("2026-03-02T10:00:00Z") {
                *closed.entry(start + (c - start) / 600_000 * 600_000).or_default() += 1;
            }
        }
    }
    let by_bucket: BTreeMap<i64, u64> = got
        .iter()
        .filter_map(|((_, i), m)| m.get("tAcw").map(|s| (ms(i.split_once('/').unwrap().0), s.count)))
        .collect();
    assert_eq!(by_bucket, closed);

    // Buckets add up to the unbucketed answer.
    let whole = table(&agg(&env, json!({"interval": hour, "metrics": ["tAcw", "nConnected", "tTalk"]})).await, &[]);
    assert_eq!(whole.len(), 1);
    let total = whole.values().next().unwrap();
    for m in ["tAcw", "nConnected", "tTalk"] {
        let count: u64 = got.values().filter_map(|x| x.get(m)).map(|s| s.count).sum();
        let sum: i64 = got.values().filter_map(|x| x.get(m)).map(|s| s.sum).sum();
        let max = got.values().filter_map(|x| x.get(m)).map(|s| s.max).max().unwrap();
        assert_eq!((count, sum, max), (total[m].count, total[m].sum, total[m].max), "{m}");
    }

    // A last bucket that overhangs the interval is cut at its end; P1D over two days is one bucket per day.
    let v = agg(&env, json!({"interval": "2026-03-02T09:00:00Z/2026-03-02T09:25:00Z", "granularity": "PT10M", "metrics": ["nOffered"]})).await;
    let last = v["results"][0]["data"].as_array().unwrap().last().unwrap()["interval"].clone();
    assert_eq!(last, "2026-03-02T09:20:00.000Z/2026-03-02T09:25:00.000Z");
    let v = agg(
        &env,
        json!({"interval": "2026-03-01T00:00:00Z/2026-03-03T00:00:00Z", "granularity": "P1D", "metrics": ["nOffered"]}),
    )
    .await;
    let data = v["results"][0]["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "nothing happened on March 1st");
    assert_eq!(data[0]["interval"], "2026-03-02T00:00:00.000Z/2026-03-03T00:00:00.000Z");
    assert_eq!(data[0]["metrics"][0]["stats"]["count"].as_u64().unwrap(), legs.len() as u64);

    // Nothing in the interval: an empty object.
    let v = agg(&env, json!({"interval": "2020-01-01T00:00:00Z/2020-01-02T00:00:00Z", "metrics": ["tAcw"]})).await;
    assert_eq!(v, json!({}));
    env.sb.shutdown().await;
}

#[tokio::test]
async fn filters_select_legs_by_dimension() {
    let env = busy_center().await;
    env.sb.stop_traffic();
    let legs = env.sb.legs();
    let queues: Vec<String> = {
        let mut q: Vec<String> = legs.iter().filter_map(|l| l.queue_id.clone()).collect();
        q.sort();
        q.dedup();
        q
    };
    assert!(queues.len() >= 3);
    let count = |pred: &dyn Fn(&LegTruth) -> bool| legs.iter().filter(|l| pred(l)).count() as u64;
    let offered = |v: &Value| -> BTreeMap<Vec<Option<String>>, u64> {
        table(v, &["queueId", "mediaType"]).into_iter().map(|((k, _), m)| (k, m["nOffered"].count)).collect()
    };
    let body = |filter: Value| json!({"interval": DAY, "groupBy": ["queueId", "mediaType"], "metrics": ["nOffered"], "filter": filter});

    // and: one queue, voice only.
    let v = agg(
        &env,
        body(json!({"type": "and", "predicates": [
            {"type": "dimension", "dimension": "queueId", "operator": "matches", "value": queues[0]},
            {"dimension": "mediaType", "value": "voice"}]})),
    )
    .await;
    let got = offered(&v);
    assert_eq!(got.len(), 1, "{got:?}");
    let calls = wrapup_sandbox::Media::Calls;
    assert_eq!(
        got[&vec![Some(queues[0].clone()), Some("voice".into())]],
        count(&|l| l.queue_id.as_ref() == Some(&queues[0]) && l.media_type == calls)
    );

    // or over two queues, through a clause.
    let v = agg(
        &env,
        body(json!({"type": "and", "clauses": [{"type": "or", "predicates": [
            {"dimension": "queueId", "value": queues[1]}, {"dimension": "queueId", "value": queues[2]}]}]})),
    )
    .await;
    let total: u64 = offered(&v).values().sum();
    assert_eq!(total, count(&|l| l.queue_id.as_ref() == Some(&queues[1]) || l.queue_id.as_ref() == Some(&queues[2])));
    assert!(offered(&v).keys().all(|k| k[0] == Some(queues[1].clone()) || k[0] == Some(queues[2].clone())));

    // exists / notExists on the code.
    for (op, coded) in [("exists", true), ("notExists", false)] {
        let v = agg(
            &env,
            json!({"interval": DAY, "groupBy": ["wrapUpCode"], "metrics": ["nOffered"],
                   "filter": {"type": "and", "predicates": [{"dimension": "wrapUpCode", "operator": op}]}}),
        )
        .await;
        let got = table(&v, &["wrapUpCode"]);
        let total: u64 = got.values().map(|m| m["nOffered"].count).sum();
        assert_eq!(total, count(&|l| l.final_code.is_some() == coded), "{op}");
        assert!(got.keys().all(|(k, _)| k[0].is_some() == coded), "{op}");
    }

    // A filter nothing matches.
    let v = agg(&env, body(json!({"type": "and", "predicates": [{"dimension": "userId", "value": "nobody"}]}))).await;
    assert_eq!(v, json!({}));
    env.sb.shutdown().await;
}

#[tokio::test]
async fn a_leg_moves_into_its_code_group_when_coded_and_gets_its_acw_time() {
    let env = start(SandboxConfig { preload: 4, ..quiet_config() }).await;
    let legs = env.sb.legs();
    let leg = legs[0].clone();
    let code = env.code_for(&leg);
    let body = json!({"interval": DAY, "groupBy": ["queueId", "wrapUpCode"], "metrics": ["nConnected", "tAcw"]});
    let before = table(&agg(&env, body.clone()).await, &["queueId", "wrapUpCode"]);
    assert!(before.keys().all(|(k, _)| k[1].is_none()), "nothing coded yet");
    assert!(before.values().all(|m| !m.contains_key("tAcw")), "no window closed yet");

    env.clock.advance(7.5);
    assert_eq!(env.write(&leg, &code).await.0, 202);
    let after = table(&agg(&env, body).await, &["queueId", "wrapUpCode"]);
    let key =
        (vec![leg.queue_id.clone(), Some(code.clone())], "2026-03-02T00:00:00.000Z/2026-03-03T00:00:00.000Z".into());
    let coded = &after[&key];
    assert_eq!(coded["nConnected"].count, 1);
    let truth = env.leg(&leg.participant_id);
    let acw = ms(truth.window_closed_at.as_deref().unwrap()) - ms(truth.acw_started_at.as_deref().unwrap());
    assert!(acw >= 7_500, "{acw}");
    assert_eq!(coded["tAcw"], Stats { count: 1, sum: acw, min: acw, max: acw });
    let connected: u64 = after.values().map(|m| m["nConnected"].count).sum();
    assert_eq!(connected, 4);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn bad_aggregate_bodies_are_400_error_bodies() {
    let env = start(quiet_config()).await;
    let ok = json!({"interval": DAY, "metrics": ["tAcw"]});
    assert_eq!(env.send(Method::POST, AGG, ok.clone()).await.0, 200);
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases = [
        ("no interval", json!({"metrics": ["tAcw"]}), "bad.request"),
        ("no metrics", json!({"interval": DAY}), "bad.request"),
        ("empty metrics", with("metrics", json!([])), "bad.request"),
        ("unknown metric", with("metrics", json!(["tBogus"])), "bad.request"),
        ("metrics not a list", with("metrics", json!("tAcw")), "bad.request"),
        ("bad interval", with("interval", json!("yesterday")), "invalid.date"),
        ("reversed interval", with("interval", json!("2026-03-03T00:00:00Z/2026-03-02T00:00:00Z")), "invalid.date"),
        ("granularity not ISO", with("granularity", json!("1h")), "bad.request"),
        ("zero granularity", with("granularity", json!("PT0S")), "bad.request"),
        ("negative granularity", with("granularity", json!("-PT1H")), "bad.request"),
        ("too many buckets", with("granularity", json!("PT1S")), "bad.request"),
        ("time zone", with("timeZone", json!("Europe/Paris")), "bad.request"),
        ("unknown groupBy", with("groupBy", json!(["flavour"])), "bad.request"),
        (
            "filter without type",
            with("filter", json!({"predicates": [{"dimension": "queueId", "value": "x"}]})),
            "bad.request",
        ),
        ("filter type", with("filter", json!({"type": "xor", "predicates": []})), "bad.request"),
        (
            "unknown dimension",
            with("filter", json!({"type": "and", "predicates": [{"dimension": "color", "value": "x"}]})),
            "bad.request",
        ),
        (
            "operator",
            with(
                "filter",
                json!({"type": "and", "predicates": [{"dimension": "queueId", "operator": "like", "value": "x"}]}),
            ),
            "bad.request",
        ),
        (
            "matches without value",
            with("filter", json!({"type": "and", "predicates": [{"dimension": "queueId"}]})),
            "bad.request",
        ),
        (
            "metric predicate",
            with("filter", json!({"type": "and", "predicates": [{"type": "metric", "metric": "tAcw"}]})),
            "bad.request",
        ),
        ("nested clause", with("filter", json!({"type": "and", "clauses": [{"type": "nope"}]})), "bad.request"),
    ];
    for (what, body, code) in cases {
        let (s, _, v) = env.send(Method::POST, AGG, body).await;
        assert_eq!(s, 400, "{what}: {v}");
        assert_error_body(&v, 400, code);
    }
    let resp =
        env.http.post(format!("{}{AGG}", env.base)).bearer_auth(&env.token).body("{not json").send().await.unwrap();
    assert_eq!(resp.status(), 400);
    // UTC is accepted under both names.
    for tz in ["UTC", "Etc/UTC"] {
        assert_eq!(env.send(Method::POST, AGG, with("timeZone", json!(tz))).await.0, 200);
    }
    env.sb.shutdown().await;
}

/// A token of OAuth client number `i`.
async fn token_of(env: &Env, i: usize) -> String {
    let (id, secret) = env.sb.credentials()[i].clone();
    let resp = env
        .http
        .post(format!("{}/oauth/token", env.base))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    resp.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_string()
}

async fn audits(env: &Env, body: Value) -> Value {
    let (s, _, v) = env.send(Method::POST, AUDIT, body).await;
    assert_eq!(s, 200, "{v}");
    v
}

fn actions(v: &Value) -> Vec<String> {
    v["entities"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn catalog_changes_are_audited_with_the_client_that_made_them() {
    let mut env = start(SandboxConfig { clients: 2, ..quiet_config() }).await;
    let creds = env.sb.credentials();
    let (client0, client1) = (creds[0].0.clone(), creds[1].0.clone());
    let token0 = env.token.clone();
    let token1 = token_of(&env, 1).await;
    let (_, _, queues) = env.get("/api/v2/routing/queues?name=Sales").await;
    let qid = queues["entities"][0]["id"].as_str().unwrap().to_string();
    let org_id = env.sb.with_org(|o| o.org_id.clone());

    let (s, _, created) = env
        .send(Method::POST, "/api/v2/routing/wrapupcodes", json!({"name": "Audit me", "description": "first"}))
        .await;
    assert_eq!(s, 200);
    let id = created["id"].as_str().unwrap().to_string();
    env.clock.advance(1.0);
    env.token = token1.clone();
    let (s, _, _) =
        env.send(Method::PUT, &format!("/api/v2/routing/wrapupcodes/{id}"), json!({"name": "Audited"})).await;
    assert_eq!(s, 200);
    env.token = token0.clone();
    env.clock.advance(1.0);
    let path = format!("/api/v2/routing/queues/{qid}/wrapupcodes");
    assert_eq!(env.send(Method::POST, &path, json!([{"id": id}])).await.0, 200);
    // Adding it again changes nothing and records nothing.
    assert_eq!(env.send(Method::POST, &path, json!([{"id": id}])).await.0, 200);
    env.clock.advance(1.0);
    assert_eq!(env.send(Method::DELETE, &format!("{path}/{id}"), json!(null)).await.0, 204);
    env.clock.advance(1.0);
    assert_eq!(env.send(Method::DELETE, &format!("/api/v2/routing/wrapupcodes/{id}"), json!(null)).await.0, 204);
    // Failures record nothing.
    assert_eq!(env.send(Method::DELETE, &format!("/api/v2/routing/wrapupcodes/{id}"), json!(null)).await.0, 404);
    assert_eq!(env.send(Method::POST, "/api/v2/routing/wrapupcodes", json!({"name": "Wrong number"})).await.0, 400);

    let v = audits(
        &env,
        json!({"interval": DAY, "serviceName": "Routing", "sort": [{"name": "Timestamp", "sortOrder": "ascending"}]}),
    )
    .await;
    assert_eq!(v["total"], 5, "{v}");
    assert_eq!(
        (v["pageNumber"].clone(), v["pageSize"].clone(), v["pageCount"].clone()),
        (json!(1), json!(25), json!(1))
    );
    assert_eq!(actions(&v), ["Create", "Update", "WrapupCodeAdd", "WrapupCodeRemove", "Delete"]);
    let e = v["entities"].as_array().unwrap();
    for (i, x) in e.iter().enumerate() {
        assert_eq!(x["serviceName"], "Routing");
        assert_eq!(x["level"], "USER");
        assert_eq!(x["status"], "SUCCESS");
        assert_eq!(x["userHomeOrgId"], org_id.as_str());
        assert_eq!(x["remoteIp"], json!(["127.0.0.1"]));
        assert!(x["id"].as_str().is_some_and(|s| s.len() == 36));
        assert!(x.get("user").is_none(), "client credentials have no user");
        let expected_client = if i == 1 { &client1 } else { &client0 };
        assert_eq!(x["client"]["id"], expected_client.as_str());
        assert_eq!(ms(x["eventDate"].as_str().unwrap()), ms("2026-03-02T09:00:00Z") + 1000 * i as i64);
    }
    assert_eq!(e[0]["entityType"], "WrapupCode");
    assert_eq!(
        e[0]["entity"],
        json!({"id": id, "name": "Audit me", "selfUri": format!("/api/v2/routing/wrapupcodes/{id}")})
    );
    assert_eq!(
        e[0]["propertyChanges"],
        json!([{"property": "name", "oldValues": [], "newValues": ["Audit me"]},
               {"property": "description", "oldValues": [], "newValues": ["first"]}])
    );
    assert_eq!(e[1]["entity"]["name"], "Audited");
    assert_eq!(
        e[1]["propertyChanges"],
        json!([{"property": "name", "oldValues": ["Audit me"], "newValues": ["Audited"]}])
    );
    assert_eq!(e[2]["entityType"], "Queue");
    assert_eq!(e[2]["entity"], json!({"id": qid, "name": "Sales", "selfUri": format!("/api/v2/routing/queues/{qid}")}));
    assert_eq!(e[2]["propertyChanges"], json!([{"property": "wrapupCodes", "oldValues": [], "newValues": [id]}]));
    assert_eq!(
        e[2]["entityChanges"],
        json!([{"entityId": id, "entityName": "Audited", "entityType": "WrapupCode", "oldValues": [], "newValues": [id]}])
    );
    assert_eq!(e[3]["entityType"], "Queue");
    assert_eq!(e[3]["propertyChanges"], json!([{"property": "wrapupCodes", "oldValues": [id], "newValues": []}]));
    assert_eq!(e[3]["entityChanges"][0]["oldValues"], json!([id]));
    assert_eq!(e[4]["entityType"], "WrapupCode");
    assert_eq!(
        e[4]["propertyChanges"],
        json!([{"property": "name", "oldValues": ["Audited"], "newValues": []},
               {"property": "description", "oldValues": ["first"], "newValues": []}])
    );

    // Default order: newest first.
    let v = audits(&env, json!({"interval": DAY})).await;
    assert_eq!(actions(&v), ["Delete", "WrapupCodeRemove", "WrapupCodeAdd", "Update", "Create"]);

    // The service mapping lists exactly what is recorded; ?expand=user is accepted.
    let (s, _, m) = env.get("/api/v2/audits/query/realtime/servicemapping").await;
    assert_eq!(s, 200);
    assert_eq!(
        m,
        json!({"services": [{"name": "Routing", "entities": [
            {"name": "Queue", "actions": ["WrapupCodeAdd", "WrapupCodeRemove"]},
            {"name": "WrapupCode", "actions": ["Create", "Update", "Delete"]}]}]})
    );
    let (s, _, _) = env.send(Method::POST, &format!("{AUDIT}?expand=user"), json!({"interval": DAY})).await;
    assert_eq!(s, 200);
    env.sb.shutdown().await;
}

#[tokio::test]
async fn audit_queries_filter_sort_and_page() {
    let env = start(SandboxConfig { clients: 2, ..quiet_config() }).await;
    let client0 = env.sb.credentials()[0].0.clone();
    let (_, _, queues) = env.get("/api/v2/routing/queues?name=Support").await;
    let qid = queues["entities"][0]["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for i in 0..4 {
        let (s, _, c) =
            env.send(Method::POST, "/api/v2/routing/wrapupcodes", json!({"name": format!("Paged {i}")})).await;
        assert_eq!(s, 200);
        ids.push(c["id"].as_str().unwrap().to_string());
        env.clock.advance(60.0);
    }
    let refs: Vec<Value> = ids.iter().map(|i| json!({"id": i})).collect();
    assert_eq!(env.send(Method::POST, &format!("/api/v2/routing/queues/{qid}/wrapupcodes"), json!(refs)).await.0, 200);
    env.clock.advance(60.0);
    assert_eq!(env.send(Method::DELETE, &format!("/api/v2/routing/wrapupcodes/{}", ids[0]), json!(null)).await.0, 204);

    let f = |filters: Value| json!({"interval": DAY, "filters": filters});
    let v = audits(&env, f(json!([{"property": "EntityType", "value": "Queue"}]))).await;
    assert_eq!(actions(&v), ["WrapupCodeAdd"]);
    assert_eq!(v["entities"][0]["entityChanges"].as_array().unwrap().len(), 4, "one entity change per code added");
    assert_eq!(v["entities"][0]["propertyChanges"][0]["newValues"], json!(ids));
    let v = audits(&env, f(json!([{"property": "Action", "value": "Create"}]))).await;
    assert_eq!(v["total"], 4);
    let v =
        audits(&env, f(json!([{"property": "Action", "value": "Create"}, {"property": "Action", "value": "Delete"}])))
            .await;
    assert_eq!(v["total"], 5, "same property: ORed");
    let v = audits(
        &env,
        f(json!([{"property": "EntityType", "value": "WrapupCode"}, {"property": "EntityId", "value": ids[0]}])),
    )
    .await;
    assert_eq!(actions(&v), ["Delete", "Create"], "different properties: ANDed");
    let v = audits(&env, f(json!([{"property": "ClientId", "value": client0}]))).await;
    assert_eq!(v["total"], 6);
    let v = audits(&env, f(json!([{"property": "ClientId", "value": env.sb.credentials()[1].0}]))).await;
    assert_eq!(v["total"], 0);
    let v = audits(&env, f(json!([{"property": "UserId", "value": "someone"}]))).await;
    assert_eq!(v["total"], 0);
    let v = audits(&env, json!({"interval": DAY, "serviceName": "Architect"})).await;
    assert_eq!(v["total"], 0);
    // The interval bounds eventDate: the first two creations only.
    let v = audits(&env, json!({"interval": "2026-03-02T09:00:00Z/2026-03-02T09:02:00Z"})).await;
    assert_eq!(v["total"], 2);

    // Paging.
    let page = |n: u64| json!({"interval": DAY, "pageSize": 4, "pageNumber": n, "sort": [{"name": "Timestamp", "sortOrder": "ascending"}]});
    let p1 = audits(&env, page(1)).await;
    assert_eq!((p1["total"].clone(), p1["pageCount"].clone(), p1["pageSize"].clone()), (json!(6), json!(2), json!(4)));
    assert_eq!(actions(&p1), ["Create", "Create", "Create", "Create"]);
    let p2 = audits(&env, page(2)).await;
    assert_eq!(actions(&p2), ["WrapupCodeAdd", "Delete"]);
    assert_eq!(p2["pageNumber"], 2);
    let p3 = audits(&env, page(3)).await;
    assert_eq!(p3["entities"], json!([]));

    // Bad bodies.
    for body in [
        json!({}),
        json!({"interval": "nope"}),
        json!({"interval": DAY, "pageSize": 0}),
        json!({"interval": DAY, "pageSize": 501}),
        json!({"interval": DAY, "pageNumber": 0}),
        json!({"interval": DAY, "filters": [{"property": "Colour", "value": "x"}]}),
        json!({"interval": DAY, "filters": [{"property": "Action"}]}),
        json!({"interval": DAY, "sort": [{"name": "Name"}]}),
        json!({"interval": DAY, "sort": [{"name": "Timestamp", "sortOrder": "sideways"}]}),
        json!({"interval": DAY, "filters": "Action"}),
    ] {
        let (s, _, v) = env.send(Method::POST, AUDIT, body.clone()).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(v["code"] == "bad.request" || v["code"] == "invalid.date", "{v}");
        assert_error_body(&v, 400, v["code"].as_str().unwrap());
    }
    env.sb.shutdown().await;
}

#[tokio::test]
async fn the_audit_trail_is_bounded() {
    let env = start(quiet_config()).await;
    let n = wrapup_sandbox::genesys::model::MAX_AUDIT_ENTRIES + 5;
    env.sb.with_org(|o| {
        let at = o.engine.sim_now();
        for i in 0..n {
            o.record_audit(at, 0, "Create", "WrapupCode", &format!("code-{i}"), "x", vec![], vec![]);
        }
        assert_eq!(o.audit.entries.len(), wrapup_sandbox::genesys::model::MAX_AUDIT_ENTRIES);
        assert_eq!(o.audit.entries.front().unwrap().entity_id, "code-5", "the oldest are dropped");
    });
    let v = audits(&env, json!({"interval": DAY, "pageSize": 1})).await;
    assert_eq!(v["total"], wrapup_sandbox::genesys::model::MAX_AUDIT_ENTRIES);
    assert_eq!(v["entities"][0]["entity"]["id"], format!("code-{}", n - 1), "newest first, ties in recording order");
    env.sb.shutdown().await;
}

#[tokio::test]
async fn the_asynchronous_audit_query_runs_then_pages_its_results_by_cursor() {
    let env = start(quiet_config()).await;
    for i in 0..3 {
        let (s, _, _) =
            env.send(Method::POST, "/api/v2/routing/wrapupcodes", json!({"name": format!("Async {i}")})).await;
        assert_eq!(s, 200);
        env.clock.advance(1.0);
    }
    let body = json!({"interval": DAY, "serviceName": "Routing", "filters": [{"property": "Action", "value": "Create"}],
                      "sort": [{"name": "Timestamp", "sortOrder": "ascending"}]});
    let (s, _, job) = env.send(Method::POST, "/api/v2/audits/query", body).await;
    assert_eq!(s, 200, "{job}");
    assert_eq!(job["state"], "Queued");
    assert_eq!(job["interval"], DAY);
    let id = job["id"].as_str().unwrap().to_string();
    let (s, _, status) = env.get(&format!("/api/v2/audits/query/{id}")).await;
    assert_eq!((s, status["state"].as_str()), (200, Some("Running")));
    let (s, _, _) = env.get(&format!("/api/v2/audits/query/{id}/results")).await;
    assert_eq!(s, 400, "no results before the job succeeded");
    // A change made after submission is not in the job's results.
    env.send(Method::POST, "/api/v2/routing/wrapupcodes", json!({"name": "Too late"})).await;
    env.clock.advance(1.0);
    let (_, _, status) = env.get(&format!("/api/v2/audits/query/{id}")).await;
    assert_eq!(status["state"], "Succeeded");
    let (s, _, first) = env.get(&format!("/api/v2/audits/query/{id}/results?pageSize=2")).await;
    assert_eq!(s, 200, "{first}");
    let names = |v: &Value| -> Vec<String> {
        v["entities"].as_array().unwrap().iter().map(|e| e["entity"]["name"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(names(&first), ["Async 0", "Async 1"]);
    let cursor = first["cursor"].as_str().unwrap().to_string();
    let (_, _, second) = env.get(&format!("/api/v2/audits/query/{id}/results?pageSize=2&cursor={cursor}")).await;
    assert_eq!(names(&second), ["Async 2"]);
    assert!(second.get("cursor").is_none(), "the last page has no cursor: {second}");
    assert_eq!(env.get("/api/v2/audits/query/nope").await.0, 404);
}
