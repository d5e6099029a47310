//! The audit trail of the wrap-up catalog: `POST /api/v2/audits/query/realtime` and
//! `GET /api/v2/audits/query[/realtime]/servicemapping`.
//!
//! Every successful catalog change made through the API is recorded as an `AuditLogMessage` (service `Routing`, level
//! `USER`, status `SUCCESS`, `client.id` = the OAuth client whose token made the change, `remoteIp` = `127.0.0.1`, no
//! `user` because client-credentials tokens have none):
//!
//! | Request | `entityType` | `action` | `propertyChanges` / `entityChanges` |
//! |---|---|---|---|
//! | `POST /routing/wrapupcodes` | `WrapupCode` | `Create` | `name` (and `description` when not empty): `[]` → `[new]` |
//! | `PUT /routing/wrapupcodes/{id}` | `WrapupCode` | `Update` | each of `name`, `description` that changed: `[old]` → `[new]` |
//! | `DELETE /routing/wrapupcodes/{id}` | `WrapupCode` | `Delete` | `name` (and `description` when not empty): `[old]` → `[]` |
//! | `POST /routing/queues/{id}/wrapupcodes` | `Queue` | `WrapupCodeAdd` | `wrapupCodes`: `[]` → `[added ids]`; one `entityChanges` item per code added |
//! | `DELETE /routing/queues/{id}/wrapupcodes/{codeId}` | `Queue` | `WrapupCodeRemove` | `wrapupCodes`: `[id]` → `[]`; one `entityChanges` item |
//!
//! The action strings of the queue assignment come from the `ActionEnum` of the SDKs' `AuditTopicAuditLogMessage`
//! (which lists `WrapupCodeAdd`/`WrapupCodeRemove` next to `Add`/`Remove`); which one the platform uses for queue
//! assignment is not confirmed by a captured audit. A `POST` that adds nothing new records nothing; deleting a code
//! records only the `WrapupCode` `Delete` (not one removal per queue it was assigned to). Failed requests are not
//! recorded. The trail keeps the last [`MAX_AUDIT_ENTRIES`](crate::genesys::model::MAX_AUDIT_ENTRIES) records.
//!
//! The realtime query: `interval` (required, `start/end`, records with `start <= eventDate < end`), `serviceName`
//! (optional; any other service than `Routing` matches nothing), `filters` (`property` one of `EntityType`,
//! `EntityId`, `Action`, `UserId`, `ClientId`, `TrusteeOrganizationId`; exact, case-sensitive `value`; filters on the
//! same property are ORed, different properties ANDed; `UserId` and `TrusteeOrganizationId` match nothing here), `sort`
//! (`[{name: "Timestamp", sortOrder: "ascending"|"descending"}]`, default descending, ties in recording order),
//! `pageNumber` (1), `pageSize` (25, at most 500). `?expand=user` is accepted (there is no user to expand). Answers
//! `{entities, pageSize, pageNumber, total, pageCount}`; bad bodies are 400 `ErrorBody`s. The platform says the
//! realtime query serves only 14 days for some services; the sandbox does not enforce that.
//!
//! The asynchronous query, for longer intervals: `POST /api/v2/audits/query` takes the same body without paging and
//! answers 200 `{id, state: "Queued", startDate, interval, serviceName, filters, sort}`; the job matches the records
//! of that moment. `GET /api/v2/audits/query/{id}` answers the same object, `Running` until
//! [`ASYNC_QUERY_SIM_MS`] of simulated time after submission, then `Succeeded`. `GET …/{id}/results?cursor=&pageSize=`
//! (25 by default, at most 500) answers `{id, pageSize, cursor, entities}`, `cursor` absent on the last page; before
//! the job succeeded it is a 400 `bad.request`; an unknown id is a 404.

use super::aggregates::parse_interval;
use super::{json_ok, parse_body};
use crate::engine::iso;
use crate::genesys::model::{AuditEntry, AuditJob, Org, PlatformError};
use crate::SharedState;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{json, Value};

/// The only service the sandbox audits.
pub const SERVICE: &str = "Routing";

/// Entity types and the actions recorded for them (the service mapping).
pub const ENTITIES: [(&str, &[&str]); 2] =
    [("Queue", &["WrapupCodeAdd", "WrapupCodeRemove"]), ("WrapupCode", &["Create", "Update", "Delete"])];

const FILTER_PROPERTIES: [&str; 6] =
    ["EntityType", "EntityId", "Action", "UserId", "ClientId", "TrusteeOrganizationId"];

const MAX_PAGE_SIZE: i64 = 500;

/// Simulated milliseconds an asynchronous audit query runs before it succeeds.
pub const ASYNC_QUERY_SIM_MS: i64 = 1_000;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/audits/query", post(submit_job))
        .route("/audits/query/{id}", get(job_status))
        .route("/audits/query/{id}/results", get(job_results))
        .route("/audits/query/realtime", post(query))
        .route("/audits/query/realtime/servicemapping", get(service_mapping))
        .route("/audits/query/servicemapping", get(service_mapping))
}

impl Org {
    /// Records a successful catalog change made by OAuth client number `client` at `at`.
    #[allow(clippy::too_many_arguments)]
    pub fn record_audit(
        &mut self,
        at: Timestamp,
        client: usize,
        action: &'static str,
        entity_type: &'static str,
        entity_id: &str,
        entity_name: &str,
        property_changes: Vec<(String, Vec<String>, Vec<String>)>,
        entity_changes: Vec<Value>,
    ) {
        let client_id = self.clients.get(client).map(|c| c.id.clone()).unwrap_or_default();
        self.audit.push(AuditEntry {
            id: uuid::Uuid::new_v4().to_string(),
            seq: 0,
            at,
            client_id,
            action,
            entity_type,
            entity_id: entity_id.to_string(),
            entity_name: entity_name.to_string(),
            property_changes,
            entity_changes,
        });
    }

    /// The `AuditLogMessage` of a record.
    pub fn audit_json(&self, e: &AuditEntry) -> Value {
        let self_uri = match e.entity_type {
            "Queue" => format!("/api/v2/routing/queues/{}", e.entity_id),
            _ => format!("/api/v2/routing/wrapupcodes/{}", e.entity_id),
        };
        let changes: Vec<Value> = e
            .property_changes
            .iter()
            .map(|(p, old, new)| json!({"property": p, "oldValues": old, "newValues": new}))
            .collect();
        json!({
            "id": e.id,
            "userHomeOrgId": self.org_id,
            "client": {"id": e.client_id, "selfUri": format!("/api/v2/oauth/clients/{}", e.client_id)},
            "remoteIp": ["127.0.0.1"],
            "serviceName": SERVICE,
            "level": "USER",
            "eventDate": iso(e.at),
            "action": e.action,
            "entity": {"id": e.entity_id, "name": e.entity_name, "selfUri": self_uri},
            "entityType": e.entity_type,
            "status": "SUCCESS",
            "propertyChanges": changes,
            "context": {},
            "entityChanges": e.entity_changes,
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RealtimeQuery {
    interval: Option<String>,
    service_name: Option<String>,
    #[serde(default)]
    filters: Vec<QueryFilter>,
    #[serde(default)]
    sort: Vec<QuerySort>,
    page_number: Option<i64>,
    page_size: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct QueryFilter {
    property: Option<String>,
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QuerySort {
    name: Option<String>,
    sort_order: Option<String>,
}

fn invalid(field: &str, message: String) -> PlatformError {
    let mut e = PlatformError::bad_request(message);
    e.extra.details.push(json!({"errorCode": "invalid.value", "fieldName": field}));
    e
}

/// What a record exposes to a filter.
fn property<'a>(e: &'a AuditEntry, p: &str) -> Option<&'a str> {
    match p {
        "EntityType" => Some(e.entity_type),
        "EntityId" => Some(&e.entity_id),
        "Action" => Some(e.action),
        "ClientId" => Some(&e.client_id),
        _ => None,
    }
}

impl Org {
    /// Runs a realtime audit query (see the module docs).
    fn audit_query(&self, q: &RealtimeQuery) -> Result<Value, PlatformError> {
        let page_size = q.page_size.unwrap_or(25);
        let page_number = q.page_number.unwrap_or(1);
        if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
            return Err(invalid("pageSize", format!("pageSize must be 1..{MAX_PAGE_SIZE}.")));
        }
        if page_number < 1 {
            return Err(invalid("pageNumber", "pageNumber must be >= 1.".into()));
        }
        let hits = self.audit_matches(q)?;
        let total = hits.len();
        let page_size = page_size as usize;
        let entities: Vec<Value> = hits
            .into_iter()
            .skip((page_number as usize - 1).saturating_mul(page_size))
            .take(page_size)
            .map(|e| self.audit_json(e))
            .collect();
        Ok(json!({
            "entities": entities,
            "pageSize": page_size,
            "pageNumber": page_number,
            "total": total,
            "pageCount": total.div_ceil(page_size),
        }))
    }

    /// The records a query's interval, service and filters select, in its sort order.
    fn audit_matches(&self, q: &RealtimeQuery) -> Result<Vec<&AuditEntry>, PlatformError> {
        let interval = q.interval.as_deref().ok_or_else(|| {
            let mut e = PlatformError::bad_request("interval is required.");
            e.extra.details.push(json!({"errorCode": "required", "fieldName": "interval"}));
            e
        })?;
        let (from, to) = parse_interval(interval)
            .ok_or_else(|| PlatformError::new(400, "invalid.date", format!("Invalid interval [{interval}].")))?;
        // Filters grouped by property: ORed within a property, ANDed across.
        let mut by_property: Vec<(&str, Vec<&str>)> = Vec::new();
        for f in &q.filters {
            let p = f.property.as_deref().unwrap_or_default();
            if !FILTER_PROPERTIES.contains(&p) {
                return Err(invalid(
                    "filters.property",
                    format!("Filter property [{p}] is not one of {}.", FILTER_PROPERTIES.join(", ")),
                ));
            }
            let Some(v) = f.value.as_deref() else {
                return Err(invalid("filters.value", format!("Filter on [{p}] needs a value.")));
            };
            match by_property.iter_mut().find(|(k, _)| *k == p) {
                Some((_, vs)) => vs.push(v),
                None => by_property.push((p, vec![v])),
            }
        }
        let mut descending = true;
        for s in &q.sort {
            if s.name.as_deref() != Some("Timestamp") {
                return Err(invalid("sort.name", "The only sort name is [Timestamp].".into()));
            }
            descending = match s.sort_order.as_deref() {
                None | Some("descending") => true,
                Some("ascending") => false,
                Some(o) => {
                    return Err(invalid("sort.sortOrder", format!("sortOrder [{o}] is not ascending or descending.")))
                }
            };
        }
        let service_ok = q.service_name.as_deref().is_none_or(|s| s == SERVICE);
        let mut hits: Vec<&AuditEntry> = self
            .audit
            .entries
            .iter()
            .filter(|_| service_ok)
            .filter(|e| e.at >= from && e.at < to)
            .filter(|e| by_property.iter().all(|(p, vs)| property(e, p).is_some_and(|v| vs.contains(&v))))
            .collect();
        hits.sort_by(|a, b| a.at.cmp(&b.at).then(a.seq.cmp(&b.seq)));
        if descending {
            hits.reverse();
        }
        Ok(hits)
    }

    fn job_state(&self, job: &AuditJob, now: Timestamp) -> &'static str {
        if now.duration_since(job.submitted).as_millis() >= i128::from(ASYNC_QUERY_SIM_MS) {
            "Succeeded"
        } else {
            "Running"
        }
    }

    fn job_json(&self, id: &str, job: &AuditJob, state: &str) -> Value {
        let mut v = json!({ "id": id, "state": state, "startDate": iso(job.submitted) });
        for key in ["interval", "serviceName", "filters", "sort"] {
            if let Some(x) = job.request.get(key) {
                v[key] = x.clone();
            }
        }
        v
    }
}

/// `?expand=user` needs no handling: client-credentials records have no user to expand.
async fn query(State(st): State<SharedState>, body: Bytes) -> Response {
    let q: RealtimeQuery = match parse_body(&body) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let result = st.org.lock().audit_query(&q);
    match result {
        Ok(v) => json_ok(v),
        Err(e) => e.into_response(),
    }
}

async fn submit_job(State(st): State<SharedState>, body: Bytes) -> Response {
    let q: RealtimeQuery = match parse_body(&body) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let now = st.clock.now();
    let mut org = st.org.lock();
    let hits = match org.audit_matches(&q) {
        Ok(hits) => hits.iter().map(|e| e.seq).collect(),
        Err(e) => return e.into_response(),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let job = AuditJob { submitted: now, request, hits };
    let answer = org.job_json(&id, &job, "Queued");
    org.audit.jobs.insert(id, job);
    json_ok(answer)
}

fn unknown_job(id: &str) -> Response {
    PlatformError::new(404, "not.found", format!("Audit query [{id}] was not found.")).into_response()
}

async fn job_status(State(st): State<SharedState>, Path(id): Path<String>) -> Response {
    let now = st.clock.now();
    let org = st.org.lock();
    match org.audit.jobs.get(&id) {
        Some(job) => json_ok(org.job_json(&id, job, org.job_state(job, now))),
        None => unknown_job(&id),
    }
}

async fn job_results(State(st): State<SharedState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let now = st.clock.now();
    let org = st.org.lock();
    let Some(job) = org.audit.jobs.get(&id) else { return unknown_job(&id) };
    if org.job_state(job, now) != "Succeeded" {
        return PlatformError::bad_request(format!("Audit query [{id}] has not finished.")).into_response();
    }
    let mut page_size: i64 = 25;
    let mut cursor: usize = 0;
    for (k, v) in super::query_pairs(q.as_deref()) {
        let parsed = v.parse::<i64>();
        match (k.as_str(), parsed) {
            ("pageSize", Ok(n)) if (1..=MAX_PAGE_SIZE).contains(&n) => page_size = n,
            ("cursor", Ok(n)) if n >= 0 => cursor = n as usize,
            ("pageSize" | "cursor", _) => {
                return invalid(&k, format!("Value [{v}] is not valid for [{k}].")).into_response();
            }
            _ => {}
        }
    }
    let page = page_size as usize;
    // Records dropped from the bounded trail since the job ran are left out.
    let entities: Vec<Value> = job
        .hits
        .iter()
        .skip(cursor)
        .take(page)
        .filter_map(|seq| org.audit.entries.iter().find(|e| e.seq == *seq))
        .map(|e| org.audit_json(e))
        .collect();
    let mut answer = json!({ "id": id, "pageSize": page_size, "entities": entities });
    if cursor + page < job.hits.len() {
        answer["cursor"] = json!((cursor + page).to_string());
    }
    json_ok(answer)
}

async fn service_mapping() -> Response {
    let entities: Vec<Value> =
        ENTITIES.iter().map(|(name, actions)| json!({"name": name, "actions": actions})).collect();
    json_ok(json!({"services": [{"name": SERVICE, "entities": entities}]}))
}
