//! The wrap-up code catalog and queues: `/api/v2/routing/wrapupcodes`, `/api/v2/routing/queues`,
//! `/api/v2/routing/queues/{id}/wrapupcodes`.
//!
//! Listings use the platform's paging envelope (`entities, pageSize, pageNumber, total, pageCount, firstUri, selfUri,
//! nextUri, previousUri, lastUri`). There is no versioning: PUT is last-writer-wins, as on the platform.
//!
//! Every successful change (code create/update/delete, queue code add/remove) is recorded in the org's audit trail
//! with the OAuth client that made it (see `audit.rs`) and in the ground-truth change log. Two catalog faults apply
//! here: `catalog_conflict_rate` turns a write that would succeed into a 409 `conflict` that changes nothing, and
//! `catalog_propagation_ms` makes the reads below show the catalog as it was that long ago (`CatalogView`), while
//! the writes validate against the live catalog.

use super::{json_ok, parse_body, query_pairs, Caller};
use crate::config::DeleteStatus;
use crate::genesys::model::{CatalogView, Code, Org, PlatformError, SYSTEM_TIMEOUT_CODE_ID, SYSTEM_TIMEOUT_CODE_NAME};
use crate::SharedState;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use bytes::Bytes;
use serde_json::{json, Value};

/// Largest page the platform serves.
const MAX_PAGE_SIZE: usize = 500;

pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/routing/wrapupcodes", get(list_codes).post(create_code))
        .route("/routing/wrapupcodes/{id}", get(get_code).put(update_code).delete(delete_code))
        .route("/routing/queues", get(list_queues))
        .route("/routing/queues/{id}", get(get_queue))
        .route("/routing/queues/{id}/wrapupcodes", get(list_queue_codes).post(add_queue_codes))
        .route("/routing/queues/{id}/wrapupcodes/{code}", delete(remove_queue_code))
}

/// Paging and filter parameters common to the listings.
struct ListParams {
    page_size: usize,
    page_number: usize,
    name: Option<String>,
    sort_by: String,
    descending: bool,
    ids: Vec<String>,
}

fn list_params(q: Option<&str>) -> Result<ListParams, PlatformError> {
    let mut p = ListParams {
        page_size: 25,
        page_number: 1,
        name: None,
        sort_by: "name".into(),
        descending: false,
        ids: vec![],
    };
    for (k, v) in query_pairs(q) {
        let bad = || {
            PlatformError::new(
                400,
                "invalid.query.param.value",
                format!("Value [{v}] is not valid for query parameter [{k}]."),
            )
        };
        match k.as_str() {
            "pageSize" => p.page_size = v.parse().map_err(|_| bad())?,
            "pageNumber" => p.page_number = v.parse().map_err(|_| bad())?,
            "name" => p.name = Some(v),
            "sortBy" => match v.as_str() {
                "name" | "id" => p.sort_by = v,
                _ => return Err(bad()),
            },
            "sortOrder" => match v.to_ascii_lowercase().as_str() {
                "ascending" | "asc" => p.descending = false,
                "descending" | "desc" => p.descending = true,
                _ => return Err(bad()),
            },
            // Repeated (`id=a&id=b`) or comma-separated (`id=a,b`, as the SDKs send lists).
            "id" => p.ids.extend(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)),
            _ => {}
        }
    }
    if p.page_size == 0 || p.page_size > MAX_PAGE_SIZE || p.page_number == 0 {
        return Err(PlatformError::new(
            400,
            "invalid.query.param.value",
            "pageSize must be 1..500 and pageNumber >= 1.",
        ));
    }
    Ok(p)
}

/// `name` filter: a trailing `*` is a prefix match; otherwise a case-insensitive exact match.
fn name_matches(filter: &Option<String>, name: &str) -> bool {
    match filter {
        None => true,
        Some(f) => match f.strip_suffix('*') {
            Some(prefix) => name.to_lowercase().starts_with(&prefix.to_lowercase()),
            None => name.eq_ignore_ascii_case(f),
        },
    }
}

fn listing(base: &str, p: &ListParams, entities_all: Vec<Value>) -> Value {
    let total = entities_all.len();
    let page_count = total.div_ceil(p.page_size);
    let start = (p.page_number - 1).saturating_mul(p.page_size);
    let entities: Vec<Value> = entities_all.into_iter().skip(start).take(p.page_size).collect();
    let uri = |n: usize| format!("{base}?pageSize={}&pageNumber={n}", p.page_size);
    json!({
        "entities": entities,
        "pageSize": p.page_size,
        "pageNumber": p.page_number,
        "total": total,
        "pageCount": page_count,
        "firstUri": uri(1),
        "selfUri": uri(p.page_number),
        "lastUri": uri(page_count.max(1)),
        "nextUri": if p.page_number < page_count { Some(uri(p.page_number + 1)) } else { None },
        "previousUri": if p.page_number > 1 { Some(uri(p.page_number - 1)) } else { None },
    })
}

fn sorted_codes<'a>(view: &'a CatalogView<'a>, p: &ListParams, ids: Option<&[String]>) -> Vec<&'a Code> {
    let mut codes: Vec<&Code> = match ids {
        Some(ids) => ids.iter().filter_map(|id| view.code(id)).collect(),
        None => view.codes(),
    };
    codes.retain(|c| name_matches(&p.name, &c.name) && (p.ids.is_empty() || p.ids.contains(&c.id)));
    if p.sort_by == "id" {
        codes.sort_by(|a, b| a.id.cmp(&b.id));
    } else {
        codes.sort_by(|a, b| a.name.to_lowercase().cmp(&b.name.to_lowercase()).then(a.id.cmp(&b.id)));
    }
    if p.descending {
        codes.reverse();
    }
    codes
}

async fn list_codes(State(st): State<SharedState>, RawQuery(q): RawQuery) -> Response {
    let p = match list_params(q.as_deref()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let org = st.org.lock();
    let view = org.catalog_view(st.clock.now());
    let entities = sorted_codes(&view, &p, None).into_iter().map(|c| org.code_json(c)).collect();
    json_ok(listing("/api/v2/routing/wrapupcodes", &p, entities))
}

fn system_code_json(org: &Org) -> Value {
    let c = Code {
        id: SYSTEM_TIMEOUT_CODE_ID.into(),
        name: SYSTEM_TIMEOUT_CODE_NAME.into(),
        description: "Default Wrap-up Code".into(),
        created: jiff::Timestamp::UNIX_EPOCH,
        modified: jiff::Timestamp::UNIX_EPOCH,
        created_by: String::new(),
        modified_by: String::new(),
    };
    org.code_json(&c)
}

async fn get_code(State(st): State<SharedState>, Path(id): Path<String>) -> Response {
    let org = st.org.lock();
    if id == SYSTEM_TIMEOUT_CODE_ID {
        return json_ok(system_code_json(&org));
    }
    match org.catalog_view(st.clock.now()).code(&id) {
        Some(c) => json_ok(org.code_json(c)),
        None => PlatformError::not_found().into_response(),
    }
}

/// The `catalog_conflict_rate` fault's answer: the write changed nothing.
fn conflict() -> Response {
    PlatformError::new(409, "conflict", "The wrap-up code configuration was modified by another request. Try again.")
        .into_response()
}

#[derive(serde::Deserialize)]
struct CodeRequest {
    name: Option<String>,
    description: Option<String>,
}

fn validate_name(org: &Org, name: Option<&str>, except: Option<&str>) -> Result<String, PlatformError> {
    let name = name.map(str::trim).unwrap_or_default();
    if name.is_empty() {
        let mut e = PlatformError::new(400, "invalid.value", "The name of a wrap-up code is required.");
        e.extra.details.push(json!({"errorCode": "required", "fieldName": "name"}));
        return Err(e);
    }
    if org.codes.values().any(|c| c.name.eq_ignore_ascii_case(name) && Some(c.id.as_str()) != except) {
        return Err(PlatformError::bad_request(format!("A wrap-up code named [{name}] already exists."))
            .with_params("A wrap-up code named [{name}] already exists.", &[("name", name)]));
    }
    Ok(name.to_string())
}

async fn create_code(State(st): State<SharedState>, Extension(caller): Extension<Caller>, body: Bytes) -> Response {
    let req: CodeRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let now = st.clock.now();
    let mut org = st.org.lock();
    let name = match validate_name(&org, req.name.as_deref(), None) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    if org.catalog_conflict() {
        return conflict();
    }
    let before_catalog = org.catalog_before_write();
    let id = uuid::Uuid::new_v4().to_string();
    let by = org.clients.first().map(|c| c.id.clone()).unwrap_or_default();
    let code = Code {
        id: id.clone(),
        name,
        description: req.description.unwrap_or_default(),
        created: now,
        modified: now,
        created_by: by.clone(),
        modified_by: by,
    };
    let v = org.code_json(&code);
    let mut changes = vec![("name".to_string(), vec![], vec![code.name.clone()])];
    if !code.description.is_empty() {
        changes.push(("description".to_string(), vec![], vec![code.description.clone()]));
    }
    org.record_audit(now, caller.client, "Create", "WrapupCode", &id, &code.name, changes, vec![]);
    let after = Org::code_change_json(&code);
    let name = code.name.clone();
    org.codes.insert(id.clone(), code);
    org.catalog_written(now, before_catalog, caller.client, "create", "wrapupCode", &id, &name, Value::Null, after);
    json_ok(v)
}

async fn update_code(
    State(st): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let req: CodeRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let now = st.clock.now();
    let mut org = st.org.lock();
    if !org.codes.contains_key(&id) {
        return PlatformError::not_found().into_response();
    }
    let name = match validate_name(&org, req.name.as_deref(), Some(&id)) {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    if org.catalog_conflict() {
        return conflict();
    }
    let before_catalog = org.catalog_before_write();
    let by = org.clients.first().map(|c| c.id.clone()).unwrap_or_default();
    let Some(code) = org.codes.get_mut(&id) else {
        return PlatformError::not_found().into_response();
    };
    let before = Org::code_change_json(code);
    let mut changes = Vec::new();
    if code.name != name {
        changes.push(("name".to_string(), vec![code.name.clone()], vec![name.clone()]));
    }
    code.name = name;
    if let Some(d) = req.description {
        if code.description != d {
            changes.push(("description".to_string(), vec![code.description.clone()], vec![d.clone()]));
        }
        code.description = d;
    }
    code.modified = now;
    code.modified_by = by;
    let code = code.clone();
    org.record_audit(now, caller.client, "Update", "WrapupCode", &id, &code.name, changes, vec![]);
    let after = Org::code_change_json(&code);
    org.catalog_written(now, before_catalog, caller.client, "update", "wrapupCode", &id, &code.name, before, after);
    json_ok(org.code_json(&code))
}

fn deleted(org: &Org) -> Response {
    match org.behaviours.delete_status {
        DeleteStatus::Ok200 => StatusCode::OK.into_response(),
        DeleteStatus::NoContent204 => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn delete_code(
    State(st): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let now = st.clock.now();
    let mut org = st.org.lock();
    if !org.codes.contains_key(&id) {
        return PlatformError::not_found().into_response();
    }
    if org.catalog_conflict() {
        return conflict();
    }
    let before_catalog = org.catalog_before_write();
    let Some(code) = org.codes.remove(&id) else {
        return PlatformError::not_found().into_response();
    };
    for q in org.queues.iter_mut() {
        q.codes.retain(|c| c != &id);
    }
    let mut changes = vec![("name".to_string(), vec![code.name.clone()], vec![])];
    if !code.description.is_empty() {
        changes.push(("description".to_string(), vec![code.description.clone()], vec![]));
    }
    org.record_audit(now, caller.client, "Delete", "WrapupCode", &id, &code.name, changes, vec![]);
    let before = Org::code_change_json(&code);
    org.catalog_written(
        now,
        before_catalog,
        caller.client,
        "delete",
        "wrapupCode",
        &id,
        &code.name,
        before,
        Value::Null,
    );
    deleted(&org)
}

async fn list_queues(State(st): State<SharedState>, RawQuery(q): RawQuery) -> Response {
    let p = match list_params(q.as_deref()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let org = st.org.lock();
    let mut queues: Vec<_> = org
        .queues
        .iter()
        .filter(|q| name_matches(&p.name, &q.name) && (p.ids.is_empty() || p.ids.contains(&q.id)))
        .collect();
    if p.sort_by == "id" {
        queues.sort_by(|a, b| a.id.cmp(&b.id));
    } else {
        queues.sort_by(|a, b| a.name.cmp(&b.name));
    }
    if p.descending {
        queues.reverse();
    }
    let entities = queues.into_iter().map(|q| org.queue_json(q)).collect();
    json_ok(listing("/api/v2/routing/queues", &p, entities))
}

async fn get_queue(State(st): State<SharedState>, Path(id): Path<String>) -> Response {
    let org = st.org.lock();
    match org.queue_by_id.get(&id).and_then(|&i| org.queues.get(i)) {
        Some(q) => json_ok(org.queue_json(q)),
        None => PlatformError::not_found().into_response(),
    }
}

async fn list_queue_codes(State(st): State<SharedState>, Path(id): Path<String>, RawQuery(q): RawQuery) -> Response {
    let p = match list_params(q.as_deref()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let org = st.org.lock();
    let Some(&qi) = org.queue_by_id.get(&id) else {
        return PlatformError::not_found().into_response();
    };
    let view = org.catalog_view(st.clock.now());
    let entities = sorted_codes(&view, &p, Some(view.queue_codes(qi))).into_iter().map(|c| org.code_json(c)).collect();
    json_ok(listing(&format!("/api/v2/routing/queues/{id}/wrapupcodes"), &p, entities))
}

#[derive(serde::Deserialize)]
struct CodeRef {
    id: String,
}

async fn add_queue_codes(
    State(st): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let refs: Vec<CodeRef> = match parse_body(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if refs.len() > 100 {
        return PlatformError::new(400, "bad.request", "You can add at most 100 wrap-up codes to a queue per request.")
            .into_response();
    }
    let mut org = st.org.lock();
    let Some(&qi) = org.queue_by_id.get(&id) else {
        return PlatformError::not_found().into_response();
    };
    if let Some(missing) = refs.iter().find(|r| !org.codes.contains_key(&r.id)) {
        let mut e =
            PlatformError::new(400, "invalid.value", format!("The wrap-up code {} does not exist.", missing.id));
        e.extra.details.push(json!({"errorCode": "invalid.value", "fieldName": "id", "entityId": missing.id}));
        return e.into_response();
    }
    if org.catalog_conflict() {
        return conflict();
    }
    let before_catalog = org.catalog_before_write();
    let before = json!(org.queue_code_names(qi));
    let mut added = Vec::new();
    let mut new_ids = Vec::new();
    for r in refs {
        if !org.queues[qi].codes.contains(&r.id) {
            org.queues[qi].codes.push(r.id.clone());
            new_ids.push(r.id.clone());
        }
        if let Some(c) = org.codes.get(&r.id) {
            added.push(org.code_json(c));
        }
    }
    let now = st.clock.now();
    let queue_name = org.queues[qi].name.clone();
    let after = json!(org.queue_code_names(qi));
    org.catalog_written(now, before_catalog, caller.client, "assign", "queue", &id, &queue_name, before, after);
    if !new_ids.is_empty() {
        let entity_changes = new_ids.iter().map(|c| code_change(&org, c, vec![], vec![c.clone()])).collect();
        let changes = vec![("wrapupCodes".to_string(), vec![], new_ids)];
        org.record_audit(now, caller.client, "WrapupCodeAdd", "Queue", &id, &queue_name, changes, entity_changes);
    }
    json_ok(Value::Array(added))
}

/// An `entityChanges[]` item for wrap-up code `id` assigned to or removed from a queue.
fn code_change(org: &Org, id: &str, old: Vec<String>, new: Vec<String>) -> Value {
    let name = org.code_name(id).unwrap_or_default();
    json!({"entityId": id, "entityName": name, "entityType": "WrapupCode", "oldValues": old, "newValues": new})
}

async fn remove_queue_code(
    State(st): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((id, code)): Path<(String, String)>,
) -> Response {
    let mut org = st.org.lock();
    let Some(&qi) = org.queue_by_id.get(&id) else {
        return PlatformError::not_found().into_response();
    };
    if !org.queues[qi].codes.contains(&code) {
        return PlatformError::not_found().into_response();
    }
    if org.catalog_conflict() {
        return conflict();
    }
    let before_catalog = org.catalog_before_write();
    let before = json!(org.queue_code_names(qi));
    org.queues[qi].codes.retain(|c| c != &code);
    let now = st.clock.now();
    let after = json!(org.queue_code_names(qi));
    let name = org.queues[qi].name.clone();
    org.catalog_written(now, before_catalog, caller.client, "unassign", "queue", &id, &name, before, after);
    let entity_changes = vec![code_change(&org, &code, vec![code.clone()], vec![])];
    let queue_name = org.queues[qi].name.clone();
    let changes = vec![("wrapupCodes".to_string(), vec![code.clone()], vec![])];
    org.record_audit(now, caller.client, "WrapupCodeRemove", "Queue", &id, &queue_name, changes, entity_changes);
    deleted(&org)
}
