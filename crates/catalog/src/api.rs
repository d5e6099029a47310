//! What catalog work needs from a platform, and its two implementations over the connectors' clients. Every call
//! goes through the client's call path (request budget, token, one retry classification) at backfill priority, so
//! catalog work never takes budget from live legs.

use crate::live::{LiveCatalog, LiveCode, LiveQueue};
use crate::plan::Usage;
use async_trait::async_trait;
use futures::{stream, StreamExt, TryStreamExt};
use jiff::Timestamp;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use wrapup_config::CodeFields;
use wrapup_connectors::cxone::{CompletedQuery, CxoneClient, Disposition};
use wrapup_connectors::genesys::{EntityRef, GenesysClient, WrapupCode, WrapupCodeRequest};
use wrapup_connectors::{call_with_retry, ErrorClass, PlatformError, Priority, RetryPolicy};
use wrapup_core::clock::SharedClock;
use wrapup_core::Platform;

/// Queues (skills) whose codes are read at once when the whole catalog is read.
const READ_CONCURRENCY: usize = 4;

/// Reads retry 429s and transient failures themselves, call by call (`read`); writes do not (apply
/// decides what may be sent again).
///
/// Progress of a long read: `(done, total)` queue listings.
pub type Progress<'a> = &'a (dyn Fn(usize, usize) + Send + Sync);

#[async_trait]
pub trait CatalogApi: Send + Sync {
    fn platform(&self) -> Platform;

    /// The whole catalog: every code, every queue (skill) with its codes.
    async fn read(&self, progress: Progress<'_>) -> Result<LiveCatalog, PlatformError>;

    /// The codes named `name` (case-insensitive).
    async fn find_code(&self, name: &str) -> Result<Vec<LiveCode>, PlatformError>;

    /// One code by id; `None` when the platform does not know it (yet).
    async fn get_code(&self, id: &str) -> Result<Option<LiveCode>, PlatformError>;

    /// The ids of one queue's (skill's) codes, in priority order on CXone, and its `requireDisposition`.
    async fn queue_codes(&self, id: &str) -> Result<(Vec<String>, Option<bool>), PlatformError>;

    /// Creates a code; its id, or `None` when the platform accepted it without saying which.
    async fn create_code(&self, name: &str, fields: &CodeFields, live: &LiveCatalog) -> Result<String, PlatformError>;

    /// Replaces a code's name and fields (`fields` holds every field).
    async fn update_code(
        &self,
        id: &str,
        name: &str,
        fields: &CodeFields,
        live: &LiveCatalog,
    ) -> Result<(), PlatformError>;

    /// Removes a code from the org (CXone has no delete: the disposition is deactivated).
    async fn delete_code(&self, code: &LiveCode) -> Result<(), PlatformError>;

    /// Genesys: adds codes to a queue.
    async fn assign(&self, queue_id: &str, code_ids: &[String]) -> Result<(), PlatformError>;

    /// Genesys: removes a code from a queue.
    async fn unassign(&self, queue_id: &str, code_id: &str) -> Result<(), PlatformError>;

    /// CXone: replaces a skill's dispositions (in priority order) and sets `requireDisposition`.
    async fn set_skill(
        &self,
        skill_id: &str,
        code_ids: &[String],
        require_disposition: Option<bool>,
    ) -> Result<(), PlatformError>;

    /// How often each code was used since `since`, from the platform's own records.
    async fn usage(&self, since: Timestamp, until: Timestamp) -> Result<Usage, PlatformError>;

    /// The platform's own audit trail of catalog changes in `[since, until)`, oldest first; `None` when the
    /// platform has no such API (CXone).
    async fn platform_audit(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Option<Vec<PlatformAudit>>, PlatformError>;
}

/// One change in the platform's own audit trail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlatformAudit {
    pub at: String,
    /// The OAuth client (or user) that made it.
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity: String,
    /// `property: old → new`, one per changed property.
    pub changes: Vec<String>,
}

/// How far back the Genesys realtime audit query reaches; longer windows take the asynchronous query.
pub const GENESYS_AUDIT_DAYS: i64 = 14;

/// Status polls of an asynchronous audit query before giving up (about two minutes).
const ASYNC_AUDIT_POLLS: u32 = 30;

/// A read, retried through the connectors' one retry loop (429s wait the platform's `Retry-After`, transient failures
/// a jittered backoff); there is no deadline, so the clock only times the waits.
async fn read<T, F, Fut>(clock: &SharedClock, mut op: F) -> Result<T, PlatformError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, PlatformError>>,
{
    let policy = RetryPolicy { max_attempts: 8, base: Duration::from_millis(500), ..RetryPolicy::default() };
    call_with_retry(clock.as_ref(), None, &policy, |_| op()).await
}

fn priority() -> Priority {
    Priority::backfill()
}

/// `read_one` for every queue (skill) id, [`READ_CONCURRENCY`] at a time, answers in the ids' order; `progress`
/// hears of each as it finishes.
async fn each_queue<I, T, F, Fut>(ids: Vec<I>, progress: Progress<'_>, read_one: F) -> Result<Vec<T>, PlatformError>
where
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = Result<T, PlatformError>>,
{
    let total = ids.len();
    progress(0, total);
    let done = &std::sync::atomic::AtomicUsize::new(0);
    let read_one = &read_one;
    stream::iter(ids)
        .map(|id| async move {
            let answer = read_one(id).await?;
            progress(done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1, total);
            Ok::<_, PlatformError>(answer)
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await
}

fn unsupported(endpoint: &'static str, what: &str) -> PlatformError {
    PlatformError::transport(ErrorClass::Permanent, endpoint, format!("{what} is not an operation of this platform"))
}

// ----- Genesys Cloud ---------------------------------------------------------------------------------------------

#[async_trait]
impl CatalogApi for GenesysClient {
    fn platform(&self) -> Platform {
        Platform::Genesys
    }

    async fn read(&self, progress: Progress<'_>) -> Result<LiveCatalog, PlatformError> {
        let (codes, queues) = tokio::try_join!(
            read(self.clock(), || self.list_wrapupcodes(priority())),
            read(self.clock(), || self.list_queues(priority()))
        )?;
        let ids: Vec<String> = queues.iter().map(|q| q.id.clone()).collect();
        let assigned: Vec<Vec<WrapupCode>> = each_queue(ids, progress, |id: String| async move {
            read(self.clock(), || self.list_queue_wrapupcodes(&id, priority())).await
        })
        .await?;
        let mut divisions: BTreeMap<String, String> = BTreeMap::new();
        let refs = codes.iter().map(|c| &c.division).chain(queues.iter().map(|q| &q.division));
        for d in refs.flatten() {
            if let (Some(id), Some(name)) = (&d.id, &d.name) {
                divisions.insert(name.clone(), id.clone());
            }
        }
        Ok(LiveCatalog {
            platform: Platform::Genesys,
            codes: codes.iter().map(genesys_code).collect(),
            queues: queues
                .iter()
                .zip(assigned)
                .map(|(q, codes)| LiveQueue {
                    id: q.id.clone(),
                    name: q.name.clone(),
                    code_ids: codes.into_iter().map(|c| c.id).collect(),
                    require_disposition: None,
                })
                .collect(),
            divisions: divisions.into_iter().collect(),
        })
    }

    async fn find_code(&self, name: &str) -> Result<Vec<LiveCode>, PlatformError> {
        Ok(read(self.clock(), || self.find_wrapupcodes(name, priority())).await?.iter().map(genesys_code).collect())
    }

    async fn get_code(&self, id: &str) -> Result<Option<LiveCode>, PlatformError> {
        Ok(read(self.clock(), || self.get_wrapupcode(id, priority())).await?.as_ref().map(genesys_code))
    }

    async fn queue_codes(&self, id: &str) -> Result<(Vec<String>, Option<bool>), PlatformError> {
        let codes = read(self.clock(), || self.list_queue_wrapupcodes(id, priority())).await?;
        Ok((codes.into_iter().map(|c| c.id).collect(), None))
    }

    async fn create_code(&self, name: &str, fields: &CodeFields, live: &LiveCatalog) -> Result<String, PlatformError> {
        let request = genesys_request(name, fields, live);
        Ok(self.create_wrapupcode(&request, priority()).await?.id)
    }

    async fn update_code(
        &self,
        id: &str,
        name: &str,
        fields: &CodeFields,
        live: &LiveCatalog,
    ) -> Result<(), PlatformError> {
        self.update_wrapupcode(id, &genesys_request(name, fields, live), priority()).await.map(|_| ())
    }

    async fn delete_code(&self, code: &LiveCode) -> Result<(), PlatformError> {
        self.delete_wrapupcode(&code.id, priority()).await
    }

    async fn assign(&self, queue_id: &str, code_ids: &[String]) -> Result<(), PlatformError> {
        self.add_queue_wrapupcodes(queue_id, code_ids, priority()).await.map(|_| ())
    }

    async fn unassign(&self, queue_id: &str, code_id: &str) -> Result<(), PlatformError> {
        self.remove_queue_wrapupcode(queue_id, code_id, priority()).await
    }

    async fn set_skill(&self, _: &str, _: &[String], _: Option<bool>) -> Result<(), PlatformError> {
        Err(unsupported("/api/v2/routing/queues/{queueId}", "replacing a skill's dispositions"))
    }

    /// One aggregates query grouped by wrap-up code and queue, counting handled legs (`tHandle`).
    async fn usage(&self, since: Timestamp, until: Timestamp) -> Result<Usage, PlatformError> {
        let query = json!({
            "interval": format!("{since}/{until}"),
            "groupBy": ["wrapUpCode", "queueId"],
            "metrics": ["tHandle"],
        });
        let answer = read(self.clock(), || self.analytics_aggregates_query(&query, priority())).await?;
        let mut usage = Usage { days: days_between(since, until), ..Usage::default() };
        for result in answer.get("results").and_then(Value::as_array).into_iter().flatten() {
            let group = result.get("group");
            let code = group.and_then(|g| g.get("wrapUpCode")).and_then(Value::as_str);
            let queue = group.and_then(|g| g.get("queueId")).and_then(Value::as_str);
            let count: u64 = result
                .get("data")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|d| d.get("metrics").and_then(Value::as_array).cloned().unwrap_or_default())
                .filter(|m| m.get("metric").and_then(Value::as_str) == Some("tHandle"))
                .filter_map(|m| m.get("stats")?.get("count")?.as_u64())
                .sum();
            if let Some(code) = code {
                *usage.by_code.entry(code.to_string()).or_default() += count;
                if let Some(queue) = queue {
                    *usage.by_queue_code.entry((queue.to_string(), code.to_string())).or_default() += count;
                }
            }
        }
        Ok(usage)
    }

    /// The Routing service's audit records of wrap-up codes and queues: the realtime query when the window is within
    /// the 14 days it serves, the asynchronous query (submit, wait until it succeeds, page through) otherwise.
    async fn platform_audit(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<Option<Vec<PlatformAudit>>, PlatformError> {
        let mut query = json!({
            "interval": format!("{since}/{until}"),
            "serviceName": "Routing",
            "filters": [
                { "property": "EntityType", "value": "WrapupCode" },
                { "property": "EntityType", "value": "Queue" },
            ],
            "sort": [{ "name": "Timestamp", "sortOrder": "ascending" }],
        });
        let mut out = Vec::new();
        if until.duration_since(since) <= jiff::SignedDuration::from_hours(24 * GENESYS_AUDIT_DAYS) {
            query["pageSize"] = json!(500);
            for page in 1..=100u32 {
                query["pageNumber"] = json!(page);
                let answer = read(self.clock(), || self.audit_realtime_query(&query, priority())).await?;
                let entities = answer.get("entities").and_then(Value::as_array).cloned().unwrap_or_default();
                out.extend(entities.iter().map(genesys_audit));
                let pages = answer.get("pageCount").and_then(Value::as_u64).unwrap_or(1);
                if entities.is_empty() || u64::from(page) >= pages {
                    break;
                }
            }
            return Ok(Some(out));
        }
        // Submitting is not a read (a retry would start a second job), so it is sent once.
        let job = self.audit_query_submit(&query, priority()).await?;
        let id = job.get("id").and_then(Value::as_str).unwrap_or_default().to_string();
        let mut pause = std::time::Duration::from_millis(250);
        for _ in 0..ASYNC_AUDIT_POLLS {
            let status = read(self.clock(), || self.audit_query_status(&id, priority())).await?;
            match status.get("state").and_then(Value::as_str) {
                Some("Succeeded") => {
                    let mut cursor: Option<String> = None;
                    for _ in 0..1000 {
                        let page =
                            read(self.clock(), || self.audit_query_results(&id, cursor.as_deref(), priority())).await?;
                        let entities = page.get("entities").and_then(Value::as_array).cloned().unwrap_or_default();
                        out.extend(entities.iter().map(genesys_audit));
                        cursor = page.get("cursor").and_then(Value::as_str).map(str::to_string);
                        if cursor.is_none() || entities.is_empty() {
                            return Ok(Some(out));
                        }
                    }
                    return Ok(Some(out));
                }
                Some("Failed") | Some("Cancelled") => {
                    return Err(PlatformError::transport(
                        ErrorClass::Permanent,
                        "/api/v2/audits/query/{transactionId}",
                        "the platform's audit query did not succeed",
                    ))
                }
                _ => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(std::time::Duration::from_secs(5));
                }
            }
        }
        Err(PlatformError::transport(
            ErrorClass::Retryable,
            "/api/v2/audits/query/{transactionId}",
            "the platform's audit query was still running when wrapup stopped waiting",
        ))
    }
}

fn genesys_audit(v: &Value) -> PlatformAudit {
    let text =
        |p: &[&str]| p.iter().try_fold(v, |acc, k| acc.get(k)).and_then(Value::as_str).unwrap_or_default().to_string();
    let actor = match (text(&["user", "name"]), text(&["user", "id"]), text(&["client", "id"])) {
        (name, _, _) if !name.is_empty() => format!("user {name}"),
        (_, id, _) if !id.is_empty() => format!("user {id}"),
        (_, _, client) => format!("client {client}"),
    };
    let values = |c: &Value, k: &str| {
        c.get(k).and_then(Value::as_array).map_or(String::new(), |a| {
            a.iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), |s| format!("{s:?}")))
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    let changes = v
        .get("propertyChanges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            let property = c.get("property").and_then(Value::as_str).unwrap_or("?");
            format!("{property}: [{}] → [{}]", values(c, "oldValues"), values(c, "newValues"))
        })
        .collect();
    let entity = match text(&["entity", "name"]) {
        name if !name.is_empty() => name,
        _ => text(&["entity", "id"]),
    };
    PlatformAudit {
        at: text(&["eventDate"]),
        actor,
        action: text(&["action"]),
        entity_type: text(&["entityType"]),
        entity,
        changes,
    }
}

fn genesys_code(c: &WrapupCode) -> LiveCode {
    LiveCode {
        id: c.id.clone(),
        name: c.name.clone(),
        fields: CodeFields {
            description: Some(c.description.clone().unwrap_or_default()),
            division: c.division.as_ref().and_then(|d| d.name.clone()),
            ..CodeFields::default()
        },
    }
}

fn genesys_request(name: &str, fields: &CodeFields, live: &LiveCatalog) -> WrapupCodeRequest {
    WrapupCodeRequest {
        name: name.to_string(),
        description: fields.description.clone(),
        division: fields.division.as_deref().and_then(|d| live.division_id(d)).map(|id| EntityRef {
            id: Some(id.to_string()),
            name: None,
            self_uri: None,
        }),
    }
}

fn days_between(since: Timestamp, until: Timestamp) -> u32 {
    (until.duration_since(since).as_secs() / 86_400).max(0) as u32
}

// ----- NICE CXone ------------------------------------------------------------------------------------------------

const CX_DISPOSITIONS: &str = "/inContactAPI/services/v23.0/dispositions";

#[async_trait]
impl CatalogApi for CxoneClient {
    fn platform(&self) -> Platform {
        Platform::Cxone
    }

    async fn read(&self, progress: Progress<'_>) -> Result<LiveCatalog, PlatformError> {
        let (dispositions, skills) = tokio::try_join!(
            read(self.clock(), || self.list_dispositions(priority())),
            read(self.clock(), || self.list_skills(priority()))
        )?;
        let ids: Vec<i64> = skills.iter().map(|s| s.id).collect();
        let assigned: Vec<Vec<Disposition>> = each_queue(ids, progress, |id: i64| async move {
            read(self.clock(), || self.skill_dispositions(id, priority())).await
        })
        .await?;
        Ok(LiveCatalog {
            platform: Platform::Cxone,
            codes: dispositions.iter().map(cxone_code).collect(),
            queues: skills
                .iter()
                .zip(assigned)
                .map(|(s, list)| LiveQueue {
                    id: s.id.to_string(),
                    name: s.name.clone(),
                    code_ids: list.into_iter().map(|d| d.id.to_string()).collect(),
                    require_disposition: s.require_disposition,
                })
                .collect(),
            divisions: Vec::new(),
        })
    }

    async fn find_code(&self, name: &str) -> Result<Vec<LiveCode>, PlatformError> {
        let found = read(self.clock(), || self.search_dispositions(name, priority())).await?;
        Ok(found.iter().filter(|d| d.name.eq_ignore_ascii_case(name)).map(cxone_code).collect())
    }

    async fn get_code(&self, id: &str) -> Result<Option<LiveCode>, PlatformError> {
        let Ok(id) = id.parse::<i64>() else { return Ok(None) };
        Ok(read(self.clock(), || self.get_disposition(id, priority())).await?.as_ref().map(cxone_code))
    }

    async fn queue_codes(&self, id: &str) -> Result<(Vec<String>, Option<bool>), PlatformError> {
        let skill_id = cx_id(id, "/inContactAPI/services/v23.0/skills/{skillId}")?;
        let (skill, list) = tokio::try_join!(
            read(self.clock(), || self.get_skill(skill_id, priority())),
            read(self.clock(), || self.skill_dispositions(skill_id, priority()))
        )?;
        Ok((list.into_iter().map(|d| d.id.to_string()).collect(), skill.require_disposition))
    }

    async fn create_code(&self, name: &str, fields: &CodeFields, _: &LiveCatalog) -> Result<String, PlatformError> {
        let item = cxone_body(name, fields);
        let mut results = self.create_dispositions(&[item], priority()).await?;
        match results.pop() {
            Some(Ok(id)) => Ok(id.to_string()),
            Some(Err(message)) => Err(PlatformError {
                class: ErrorClass::Permanent,
                status: Some(206),
                code: None,
                message,
                correlation_id: None,
                endpoint: CX_DISPOSITIONS,
            }),
            None => Err(PlatformError::transport(ErrorClass::Permanent, CX_DISPOSITIONS, "no result for the item")),
        }
    }

    async fn update_code(
        &self,
        id: &str,
        name: &str,
        fields: &CodeFields,
        _: &LiveCatalog,
    ) -> Result<(), PlatformError> {
        let id = cx_id(id, CX_DISPOSITIONS)?;
        self.update_disposition(id, &cxone_body(name, fields), priority()).await
    }

    async fn delete_code(&self, code: &LiveCode) -> Result<(), PlatformError> {
        let fields = CodeFields { active: Some(false), ..code.fields.clone() };
        self.update_code(&code.id, &code.name, &fields, &empty_cxone()).await
    }

    async fn assign(&self, _: &str, _: &[String]) -> Result<(), PlatformError> {
        Err(unsupported(CX_DISPOSITIONS, "adding single dispositions to a skill"))
    }

    async fn unassign(&self, _: &str, _: &str) -> Result<(), PlatformError> {
        Err(unsupported(CX_DISPOSITIONS, "removing single dispositions from a skill"))
    }

    async fn set_skill(
        &self,
        skill_id: &str,
        code_ids: &[String],
        require_disposition: Option<bool>,
    ) -> Result<(), PlatformError> {
        let endpoint = "/inContactAPI/services/v23.0/skills/{skillId}";
        let skill_id = cx_id(skill_id, endpoint)?;
        let dispositions = code_ids
            .iter()
            .enumerate()
            .map(|(i, id)| Ok(json!({ "dispositionId": cx_id(id, endpoint)?, "priority": i + 1 })))
            .collect::<Result<Vec<Value>, PlatformError>>()?;
        let mut skill = json!({ "dispositions": dispositions });
        if let Some(r) = require_disposition {
            skill["requireDisposition"] = json!(r);
        }
        self.update_skill(skill_id, &skill, priority()).await
    }

    /// Completed contacts of the window (at most 30 days, as the platform allows), by primary disposition and skill.
    async fn usage(&self, since: Timestamp, until: Timestamp) -> Result<Usage, PlatformError> {
        let query = CompletedQuery::Range { start: since.to_string(), end: until.to_string() };
        let records = read(self.clock(), || self.contacts_completed(&query, priority())).await?.records;
        let mut usage = Usage { days: days_between(since, until), ..Usage::default() };
        for r in records {
            if let Some(code) = r.primary_disposition_id.filter(|id| *id > 0).map(|id| id.to_string()) {
                *usage.by_code.entry(code.clone()).or_default() += 1;
                if let Some(skill) = r.skill_id {
                    *usage.by_queue_code.entry((skill.to_string(), code)).or_default() += 1;
                }
            }
        }
        Ok(usage)
    }

    /// CXone publishes no audit API for dispositions and skills: only wrapup's own records exist.
    async fn platform_audit(&self, _: Timestamp, _: Timestamp) -> Result<Option<Vec<PlatformAudit>>, PlatformError> {
        Ok(None)
    }
}

fn empty_cxone() -> LiveCatalog {
    LiveCatalog { platform: Platform::Cxone, codes: Vec::new(), queues: Vec::new(), divisions: Vec::new() }
}

fn cx_id(id: &str, endpoint: &'static str) -> Result<i64, PlatformError> {
    id.parse()
        .map_err(|_| PlatformError::transport(ErrorClass::Permanent, endpoint, format!("{id:?} is not a CXone id")))
}

fn cxone_code(d: &Disposition) -> LiveCode {
    LiveCode {
        id: d.id.to_string(),
        name: d.name.clone(),
        fields: CodeFields {
            classification: d.classification.as_deref().and_then(|c| c.trim().parse().ok()),
            active: Some(d.is_active.unwrap_or(true)),
            notes: Some(d.notes.clone().unwrap_or_default()),
            ..CodeFields::default()
        },
    }
}

/// The platform replaces the whole disposition, so every field is sent.
fn cxone_body(name: &str, fields: &CodeFields) -> Value {
    json!({
        "dispositionName": name,
        "classificationId": fields.classification.unwrap_or(0),
        "isPreviewDisposition": false,
        "isActive": fields.active.unwrap_or(true),
        "notes": fields.notes.clone().unwrap_or_default(),
    })
}
