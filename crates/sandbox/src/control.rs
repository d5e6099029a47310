//! Ground truth and control, outside the platform's namespace and without auth: `/sandbox/v1/*`.
//!
//! `GET report|legs|config`, `POST traffic/start|stop`, `PUT traffic` (merge fields into the center config, e.g.
//! `{"arrival_rate_per_sec": 2.0}`), `PUT faults` (a profile name as a JSON string or `{"name": …}` with only a
//! name, or a full profile object), `PUT behaviours` (merge), `POST event-targets` (an `EventTarget`),
//! `POST notifications/drop` (break every notification websocket now; answers `{"dropped": n}`).
//! `PUT rate-limit` (`{"per_minute", "window"}`, each optional, and a `cxone` object of the same shape; answers the
//! limits now in force).
//! Catalogs: `GET catalog/changes` (every successful catalog write of both platforms), `GET catalog/genesys` and
//! `GET catalog/cxone` (the authoritative catalog with `duplicate_names`).
//! CXone: `GET cxone/legs|writes`, `PUT cxone/behaviours` (merge), or `PUT behaviours` with a `cxone` key; traffic
//! and faults apply to both platforms.

use crate::config::{Behaviours, CenterConfig, EventTarget, FaultProfile};
use crate::cxone::CxoneBehaviours;
use crate::engine::Simulation;
use crate::SharedState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/sandbox/v1/report", get(report))
        .route("/sandbox/v1/legs", get(legs))
        .route("/sandbox/v1/config", get(config))
        .route("/sandbox/v1/traffic/start", post(start))
        .route("/sandbox/v1/traffic/stop", post(stop))
        .route("/sandbox/v1/traffic", put(put_traffic))
        .route("/sandbox/v1/faults", put(put_faults))
        .route("/sandbox/v1/behaviours", put(put_behaviours))
        .route("/sandbox/v1/rate-limit", put(put_rate_limit))
        .route("/sandbox/v1/event-targets", post(add_target))
        .route("/sandbox/v1/notifications/drop", post(drop_sockets))
        .route("/sandbox/v1/catalog/changes", get(catalog_changes))
        .route("/sandbox/v1/catalog/{platform}", get(catalog_snapshot))
        .route("/sandbox/v1/cxone/legs", get(cxone_legs))
        .route("/sandbox/v1/cxone/writes", get(cxone_writes))
        .route("/sandbox/v1/cxone/behaviours", put(put_cxone_behaviours))
}

async fn catalog_changes(State(st): State<SharedState>) -> Response {
    axum::Json(st.catalog_changes()).into_response()
}

async fn catalog_snapshot(State(st): State<SharedState>, Path(platform): Path<String>) -> Response {
    match serde_json::from_value::<crate::Platform>(Value::String(platform)) {
        Ok(p) => axum::Json(st.catalog_snapshot(p)).into_response(),
        Err(_) => (StatusCode::NOT_FOUND, axum::Json(json!({"error": "platform is genesys or cxone"}))).into_response(),
    }
}

async fn cxone_legs(State(st): State<SharedState>) -> Response {
    axum::Json(st.cxone_legs()).into_response()
}

async fn cxone_writes(State(st): State<SharedState>) -> Response {
    let writes = st.bu.lock().writes.clone();
    axum::Json(writes).into_response()
}

/// Merges `patch` into the CXone switches.
fn merge_cxone(st: &SharedState, patch: Value) -> Result<CxoneBehaviours, String> {
    let mut bu = st.bu.lock();
    let mut base = serde_json::to_value(bu.behaviours).map_err(|e| e.to_string())?;
    merge(&mut base, patch).map_err(str::to_string)?;
    let b = serde_json::from_value::<CxoneBehaviours>(base).map_err(|e| e.to_string())?;
    bu.behaviours = b;
    Ok(b)
}

async fn put_cxone_behaviours(State(st): State<SharedState>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    match merge_cxone(&st, patch) {
        Ok(b) => axum::Json(b).into_response(),
        Err(e) => bad(e),
    }
}

async fn drop_sockets(State(st): State<SharedState>) -> Response {
    let hub = st.org.lock().hub.clone();
    axum::Json(json!({"dropped": hub.drop_sockets()})).into_response()
}

fn bad(msg: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": msg.to_string()}))).into_response()
}

async fn report(State(st): State<SharedState>) -> Response {
    axum::Json(st.report()).into_response()
}

async fn legs(State(st): State<SharedState>) -> Response {
    axum::Json(st.legs()).into_response()
}

async fn config(State(st): State<SharedState>) -> Response {
    let cx = {
        let bu = st.bu.lock();
        json!({
            "behaviours": bu.behaviours,
            "center": bu.center,
            "traffic": bu.engine.traffic_on(),
            "rate_limit_per_minute": bu.rate_limit_per_minute,
            "rate_limit_window": bu.rate_limit_window,
        })
    };
    let org = st.org.lock();
    axum::Json(json!({
        "faults": org.faults,
        "behaviours": org.behaviours,
        "center": org.center,
        "traffic": org.engine.traffic_on(),
        "rate_limit_per_minute": org.rate_limit_per_minute,
        "rate_limit_window": org.rate_limit_window,
        "cxone": cx,
    }))
    .into_response()
}

async fn start(State(st): State<SharedState>) -> Response {
    st.start_traffic();
    StatusCode::NO_CONTENT.into_response()
}

async fn stop(State(st): State<SharedState>) -> Response {
    st.stop_traffic();
    StatusCode::NO_CONTENT.into_response()
}

/// Merges the top-level keys of `patch` into `base` (both JSON objects).
fn merge(base: &mut Value, patch: Value) -> Result<(), &'static str> {
    let (Some(b), Value::Object(p)) = (base.as_object_mut(), patch) else {
        return Err("expected a JSON object");
    };
    for (k, v) in p {
        b.insert(k, v);
    }
    Ok(())
}

async fn put_traffic(State(st): State<SharedState>, body: Bytes) -> Response {
    let mut patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    // A `cxone` key changes the CXone BU's process parameters (skills and agents stay as set up).
    if let Some(p) = patch.as_object_mut().and_then(|o| o.remove("cxone")) {
        let mut bu = st.bu.lock();
        let mut base = match serde_json::to_value(&bu.center) {
            Ok(v) => v,
            Err(e) => return bad(e),
        };
        if let Err(e) = merge(&mut base, p) {
            return bad(e);
        }
        match serde_json::from_value::<crate::cxone::CxoneCenter>(base) {
            Ok(c) => {
                bu.center =
                    crate::cxone::CxoneCenter { skills: bu.center.skills.clone(), agents: bu.center.agents, ..c };
                if bu.engine.traffic_on() {
                    let now = st.clock.now();
                    bu.start_traffic(now);
                }
            }
            Err(e) => return bad(e),
        }
    }
    let mut org = st.org.lock();
    let mut base = match serde_json::to_value(&org.center) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    if let Err(e) = merge(&mut base, patch) {
        return bad(e);
    }
    match serde_json::from_value::<CenterConfig>(base) {
        Ok(c) => {
            // Queues and agents are set up at start; only the process parameters change at runtime.
            org.center = CenterConfig { queues: org.center.queues.clone(), agents: org.center.agents, ..c };
            // A rate raised from zero restarts the arrival process.
            if org.engine.traffic_on() {
                let now = st.clock.now();
                org.start_traffic(now);
            }
            drop(org);
            st.wake.notify_one();
            axum::Json(st.org.lock().center.clone()).into_response()
        }
        Err(e) => bad(e),
    }
}

async fn put_faults(State(st): State<SharedState>, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    let name_only = v.as_object().filter(|o| o.len() == 1).and_then(|o| o.get("name")).and_then(Value::as_str);
    let name = match &v {
        Value::String(n) => Some(n.as_str()),
        _ => name_only,
    };
    let profile = match name {
        Some(name) => match FaultProfile::named(name) {
            Some(p) => p,
            None => return bad(format!("unknown fault profile {name:?} (calm, hostile)")),
        },
        None => match serde_json::from_value::<FaultProfile>(v) {
            Ok(p) => p,
            Err(e) => return bad(e),
        },
    };
    st.set_faults(profile.clone());
    axum::Json(profile).into_response()
}

async fn put_behaviours(State(st): State<SharedState>, body: Bytes) -> Response {
    let mut patch: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    // A `cxone` key carries the CXone switches; the rest are Genesys's, answered as before.
    let cxone_patch = patch.as_object_mut().and_then(|o| o.remove("cxone"));
    let cxone = match cxone_patch {
        Some(p) => match merge_cxone(&st, p) {
            Ok(b) => Some(b),
            Err(e) => return bad(e),
        },
        None => None,
    };
    let mut org = st.org.lock();
    let mut base = match serde_json::to_value(org.behaviours) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    if let Err(e) = merge(&mut base, patch) {
        return bad(e);
    }
    match serde_json::from_value::<Behaviours>(base) {
        Ok(b) => {
            org.behaviours = b;
            let mut v = serde_json::to_value(b).unwrap_or_default();
            if let (Some(c), Some(o)) = (cxone, v.as_object_mut()) {
                o.insert("cxone".into(), serde_json::to_value(c).unwrap_or_default());
            }
            axum::Json(v).into_response()
        }
        Err(e) => bad(e),
    }
}

/// `PUT /sandbox/v1/rate-limit`: what to change; absent fields stay.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitPatch {
    per_minute: Option<u32>,
    window: Option<crate::rate_limit::RateWindow>,
    cxone: Option<Box<RateLimitPatch>>,
}

impl RateLimitPatch {
    fn apply(&self, to: crate::rate_limit::RateLimit) -> crate::rate_limit::RateLimit {
        crate::rate_limit::RateLimit {
            per_minute: self.per_minute.unwrap_or(to.per_minute),
            window: self.window.unwrap_or(to.window),
        }
    }
}

async fn put_rate_limit(State(st): State<SharedState>, body: Bytes) -> Response {
    let patch: RateLimitPatch = match serde_json::from_slice(&body) {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    if patch.cxone.as_ref().is_some_and(|c| c.cxone.is_some()) {
        return bad("`cxone` takes `per_minute` and `window` only");
    }
    if patch.per_minute == Some(0) {
        return bad("the Genesys limit is at least 1 request per minute (CXone takes 0 for none)");
    }
    st.set_rate_limit(patch.apply(st.rate_limit()));
    if let Some(c) = &patch.cxone {
        st.set_cxone_rate_limit(c.apply(st.cxone_rate_limit()));
    }
    let (g, c) = (st.rate_limit(), st.cxone_rate_limit());
    axum::Json(json!({"per_minute": g.per_minute, "window": g.window, "cxone": c})).into_response()
}

async fn add_target(State(st): State<SharedState>, body: Bytes) -> Response {
    match serde_json::from_slice::<EventTarget>(&body) {
        Ok(t) => {
            st.add_event_target(t);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => bad(e),
    }
}
