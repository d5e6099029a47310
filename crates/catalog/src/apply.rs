//! Carrying a plan out, safely, on a platform that throttles, conflicts and shows changes late.
//!
//! - **Order**: the plan's (codes before assignments, removals last). A code created in this pass is assigned by the
//!   id the platform answered.
//! - **429**: nothing was applied; the request is sent again once the budget lets it (the client's budget already
//!   pauses the credential for the platform's `Retry-After`).
//! - **5xx and timeouts**: an idempotent request (PUT, DELETE, a queue's codes, a skill) is sent again after a
//!   backoff. A create is never sent blind: it may have landed, so the code is looked up by name first, for as long
//!   as the platform may take to show a change.
//! - **409**: that one object is read again and its change planned again against what the platform now holds.
//! - **Propagation**: after the writes, every touched object is read back until it shows its change (bounded); only
//!   then is the apply reported done.
//! - **Journal**: every write is announced before it is sent and its answer recorded after (the audit trail), so a
//!   run killed between the two leaves a trace: the next run waits for an unresolved create to show up before it
//!   plans, instead of creating the code a second time.
//!
//! Apply converges: each pass plans from a fresh read, and a plan whose changes have all landed is empty.

use crate::api::CatalogApi;
use crate::live::{LiveCatalog, LiveCode};
use crate::plan::{fingerprint, overlay, plan, Change, Plan, PlanContext, PlanError};
use async_trait::async_trait;
use jiff::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use wrapup_config::{CatalogFile, CodeFields};
use wrapup_connectors::{ErrorClass, PlatformError};
use wrapup_core::Platform;

/// How an apply retries and waits.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Plan-and-write passes at most (a pass after the first happens only when something was unsure or conflicted).
    pub max_passes: u32,
    /// Attempts of one write (429s, transient failures, conflicts) before it counts as failed.
    pub attempts: u32,
    /// How long the platform may take to show a change (read-back, and the lookup of an unsure create).
    pub settle_timeout: Duration,
    /// First pause between read-backs; doubles up to two seconds.
    pub poll: Duration,
    /// First backoff after a transient failure; doubles up to eight seconds.
    pub backoff: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            max_passes: 5,
            attempts: 8,
            settle_timeout: Duration::from_secs(60),
            poll: Duration::from_millis(250),
            backoff: Duration::from_millis(500),
        }
    }
}

/// Where apply announces its writes and records their answers (the store's audit trail in the CLI).
#[async_trait]
pub trait Journal: Send + Sync {
    /// A write is about to be sent; an `Err` (the trail cannot be written) stops it from being sent.
    async fn intent(&self, change: &Change) -> Result<(), String>;
    /// Its answer: `Ok(id)` (the created code's id, if any) or the error.
    async fn result(&self, change: &Change, answer: &Result<Option<String>, String>);
    /// Creates of other runs that the platform may not show yet: announced without an answer, or answered with an
    /// id, less than `within` ago. Each as (code name, since when: the answer's time, or the announcement's).
    async fn recent_creates(&self, within: Duration) -> Vec<(String, Timestamp)>;
}

/// A journal that keeps nothing (tests, `--dry-run`-like uses).
pub struct NoJournal;

#[async_trait]
impl Journal for NoJournal {
    async fn intent(&self, _: &Change) -> Result<(), String> {
        Ok(())
    }
    async fn result(&self, _: &Change, _: &Result<Option<String>, String>) {}
    async fn recent_creates(&self, _: Duration) -> Vec<(String, Timestamp)> {
        Vec::new()
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyReport {
    pub passes: u32,
    /// Changes that landed (and were read back).
    pub applied: u32,
    /// Changes that could not be made, with the reason.
    pub failed: Vec<String>,
    /// 409s met (each re-read and re-planned).
    pub conflicts: u32,
    /// 429s met (each waited out).
    pub rate_limited: u32,
    /// Transient failures retried.
    pub retried: u32,
    /// Creates whose answer was lost (or another run's not yet shown), found by looking the code up by name.
    pub unsure_creates: u32,
    /// Whether every change was read back from the platform before the timeout.
    pub settled: bool,
    /// Time spent waiting for the platform to show the changes.
    pub settle_ms: u64,
    /// Changes still outstanding when apply stopped (empty when it converged).
    pub remaining: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("reading the live catalog failed: {0}")]
    Read(PlatformError),
    #[error(
        "the saved plan is stale: the live catalog changed since it was made (objects it touches differ); make a new plan"
    )]
    StalePlan,
    #[error("the saved plan is for connection {plan:?}, not {connection:?}")]
    WrongConnection { plan: String, connection: String },
    #[error("the saved plan has format version {0}; this build reads version {v}", v = crate::plan::PLAN_VERSION)]
    PlanVersion(u32),
    #[error("the saved plan holds an unreadable catalog file: {0}")]
    PlanFile(String),
}

/// What one write came to.
enum Outcome {
    /// Landed; for a create, the new id.
    Done(Option<String>),
    /// Not made (a permanent refusal, or attempts used up).
    Failed(String),
    /// Needs a fresh plan (the object is gone, or an id it needs is not known yet).
    Replan,
}

/// Applies `file` (or exactly `saved`, if its fingerprint still holds) to the live catalog behind `api`. `fresh` is
/// a read made just before (the one a plan shown to the user came from), saving a second read of the whole catalog;
/// a saved plan is always checked against a new read.
pub async fn apply(
    api: &dyn CatalogApi,
    file: &CatalogFile,
    cx: &PlanContext,
    saved: Option<&Plan>,
    fresh: Option<LiveCatalog>,
    journal: &dyn Journal,
    opts: &ApplyOptions,
) -> Result<ApplyReport, ApplyError> {
    let mut report = ApplyReport::default();
    if let Some(saved) = saved {
        if saved.version != crate::plan::PLAN_VERSION {
            return Err(ApplyError::PlanVersion(saved.version));
        }
        if saved.connection != cx.connection {
            return Err(ApplyError::WrongConnection {
                plan: saved.connection.clone(),
                connection: cx.connection.clone(),
            });
        }
    }
    let recent = recover(api, journal, opts, &mut report).await;
    // Codes this run created (with the id the platform answered) or may have created (`None`): a later pass, planned
    // from a read that does not show them yet, must not create them again.
    let mut created: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut live = match fresh {
        // A read made before creates of another run showed may lack them: read again after waiting for them.
        Some(live) if saved.is_none() && recent == 0 => live,
        _ => read(api).await?,
    };
    let mut current = match saved {
        Some(saved) => {
            if fingerprint(&live, &saved.touched) != saved.fingerprint {
                return Err(ApplyError::StalePlan);
            }
            saved.clone()
        }
        None => plan(file, &live, cx)?,
    };
    loop {
        if current.is_empty() {
            report.settled = true;
            break;
        }
        if report.passes == opts.max_passes {
            break;
        }
        report.passes += 1;
        let mut ids: BTreeMap<String, String> =
            live.codes.iter().map(|c| (c.name.to_lowercase(), c.id.clone())).collect();
        let mut expectations = Vec::new();
        let mut replan = false;
        for change in &current.changes {
            match execute(api, file, &live, &mut ids, &mut created, change, journal, opts, &mut report).await {
                Outcome::Done(new_id) => {
                    report.applied += 1;
                    expectations.push(expectation(change, &ids, new_id));
                }
                Outcome::Failed(reason) => report.failed.push(reason),
                Outcome::Replan => replan = true,
            }
        }
        let started = std::time::Instant::now();
        let settled = settle(api, &mut expectations, opts).await;
        report.settle_ms += started.elapsed().as_millis() as u64;
        if !settled {
            replan = true;
        }
        if !replan || !report.failed.is_empty() {
            report.settled = settled && report.failed.is_empty();
            if !replan {
                current.changes.clear();
            }
            break;
        }
        live = read(api).await?;
        current = plan(file, &live, cx)?;
    }
    report.remaining = current.changes.len();
    Ok(report)
}

async fn read(api: &dyn CatalogApi) -> Result<LiveCatalog, ApplyError> {
    api.read(&|_, _| {}).await.map_err(ApplyError::Read)
}

/// Before planning: creates of another run (killed, or just finished) may not show in reads yet, and a plan from such
/// a read would make them a second time. Wait for each, up to the settle timeout from when it was made. Returns how
/// many there were.
async fn recover(api: &dyn CatalogApi, journal: &dyn Journal, opts: &ApplyOptions, report: &mut ApplyReport) -> usize {
    let recent = journal.recent_creates(opts.settle_timeout).await;
    for (name, since) in &recent {
        let deadline = *since + jiff::SignedDuration::try_from(opts.settle_timeout).unwrap_or_default();
        let mut pause = opts.poll;
        while Timestamp::now() < deadline {
            if matches!(api.find_code(name).await, Ok(found) if !found.is_empty()) {
                report.unsure_creates += 1;
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }
    recent.len()
}

/// One write, with its retries; journaled.
#[allow(clippy::too_many_arguments)]
async fn execute(
    api: &dyn CatalogApi,
    file: &CatalogFile,
    live: &LiveCatalog,
    ids: &mut BTreeMap<String, String>,
    created: &mut BTreeMap<String, Option<String>>,
    change: &Change,
    journal: &dyn Journal,
    opts: &ApplyOptions,
    report: &mut ApplyReport,
) -> Outcome {
    if let Change::Create { code, .. } = change {
        match created.get(&code.to_lowercase()) {
            // Made by an earlier pass, and not shown yet by the read this pass was planned from.
            Some(Some(id)) => {
                ids.insert(code.to_lowercase(), id.clone());
                return Outcome::Done(Some(id.clone()));
            }
            Some(None) => {
                if let Some(found) = wait_for_code(api, code, opts).await {
                    ids.insert(code.to_lowercase(), found.id.clone());
                    created.insert(code.to_lowercase(), Some(found.id.clone()));
                    return Outcome::Done(Some(found.id));
                }
            }
            None => {}
        }
    }
    let mut backoff = opts.backoff;
    // The change as it stands after re-reads (a 409 re-plans it against the object's fresh state).
    let mut change = change.clone();
    for attempt in 1..=opts.attempts {
        let sent = match send(api, live, ids, &change).await {
            Ok(sent) => sent,
            Err(outcome) => return outcome,
        };
        if let Err(e) = journal.intent(&change).await {
            return Outcome::Failed(format!(
                "{}: not sent, the audit trail could not be written: {e}",
                describe(&change)
            ));
        }
        let answer = sent.await;
        let unsure_create = matches!(change, Change::Create { .. })
            && matches!(&answer, Err(e) if matches!(e.class, ErrorClass::Retryable | ErrorClass::DeadlinePassed));
        // An unsure create stays unanswered in the trail until the code is found: a run killed while looking for
        // it leaves an open intent, which the next run waits for.
        if !unsure_create {
            journal.result(&change, &answer.clone().map_err(|e| e.to_string())).await;
        }
        let error = match answer {
            Ok(id) => {
                if let (Change::Create { code, .. }, Some(id)) = (&change, &id) {
                    ids.insert(code.to_lowercase(), id.clone());
                    created.insert(code.to_lowercase(), Some(id.clone()));
                }
                if let Change::Update { code, id, .. } = &change {
                    ids.insert(code.to_lowercase(), id.clone());
                }
                return Outcome::Done(id);
            }
            Err(e) => e,
        };
        let last = attempt == opts.attempts;
        match &error.class {
            ErrorClass::RateLimited { retry_after } => {
                report.rate_limited += 1;
                if !last {
                    tokio::time::sleep(retry_after.unwrap_or(backoff).min(Duration::from_secs(60))).await;
                    backoff = (backoff * 2).min(Duration::from_secs(8));
                }
            }
            // CXone answers 409 for a disposition it never lets anyone update: no re-read changes that.
            ErrorClass::Conflict if error.message.contains("can not be updated") => {
                return Outcome::Failed(format!("{}: {error}", describe(&change)));
            }
            ErrorClass::Conflict => {
                report.conflicts += 1;
                match replan_one(api, file, live, ids, &change).await {
                    Ok(Some(again)) => change = again,
                    Ok(None) => return Outcome::Done(created_id(&change, ids)),
                    Err(outcome) => return outcome,
                }
            }
            ErrorClass::Retryable | ErrorClass::DeadlinePassed => {
                report.retried += 1;
                if let Change::Create { code, .. } = &change {
                    // It may have landed: look before sending it again.
                    report.unsure_creates += 1;
                    created.insert(code.to_lowercase(), None);
                    if let Some(found) = wait_for_code(api, code, opts).await {
                        ids.insert(code.to_lowercase(), found.id.clone());
                        created.insert(code.to_lowercase(), Some(found.id.clone()));
                        journal.result(&change, &Ok(Some(found.id.clone()))).await;
                        return Outcome::Done(Some(found.id));
                    }
                    journal.result(&change, &Err(format!("{error}; not found by name afterwards"))).await;
                }
                if !last {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(8));
                }
            }
            _ => {
                // A refused create may be one that an unsure earlier attempt (or another run) already made.
                if let Change::Create { code, .. } = &change {
                    if let Some(found) = wait_for_code(api, code, opts).await {
                        ids.insert(code.to_lowercase(), found.id.clone());
                        return Outcome::Done(Some(found.id));
                    }
                }
                return Outcome::Failed(format!("{}: {error}", describe(&change)));
            }
        }
    }
    Outcome::Failed(format!("{}: gave up after {} attempts", describe(&change), opts.attempts))
}

type Sent<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<String>, PlatformError>> + Send + 'a>>;

/// The request for `change`, with the ids it needs; `Err(Replan)` when one is not known.
async fn send<'a>(
    api: &'a dyn CatalogApi,
    live: &'a LiveCatalog,
    ids: &BTreeMap<String, String>,
    change: &'a Change,
) -> Result<Sent<'a>, Outcome> {
    let resolve = |names: &[String]| -> Result<Vec<String>, Outcome> {
        names.iter().map(|n| ids.get(&n.to_lowercase()).cloned().ok_or(Outcome::Replan)).collect()
    };
    Ok(match change {
        Change::Create { code, fields } => Box::pin(async move { api.create_code(code, fields, live).await.map(Some) }),
        Change::Update { code, id, target, .. } => {
            Box::pin(async move { api.update_code(id, code, target, live).await.map(|_| None) })
        }
        Change::Delete { id, .. } => {
            let Some(code) = live.code_by_id(id).cloned() else { return Err(Outcome::Done(None)) };
            Box::pin(async move { api.delete_code(&code).await.map(|_| None) })
        }
        Change::Assign { queue_id, codes, .. } => {
            let code_ids = resolve(codes)?;
            Box::pin(async move { api.assign(queue_id, &code_ids).await.map(|_| None) })
        }
        Change::Unassign { queue_id, codes, .. } => {
            let code_ids: Vec<String> = codes.iter().filter_map(|n| live.code(n).map(|c| c.id.clone())).collect();
            Box::pin(async move {
                for id in &code_ids {
                    match api.unassign(queue_id, id).await {
                        // Already gone: what we wanted.
                        Err(e) if e.status == Some(404) => {}
                        other => other?,
                    }
                }
                Ok(None)
            })
        }
        Change::SetSkill { skill_id, dispositions, require_disposition, .. } => {
            let code_ids = resolve(dispositions)?;
            let require = *require_disposition;
            Box::pin(async move { api.set_skill(skill_id, &code_ids, require).await.map(|_| None) })
        }
    })
}

/// After a 409: the object read again and its change planned again. `Ok(None)`: nothing left to do.
async fn replan_one(
    api: &dyn CatalogApi,
    file: &CatalogFile,
    live: &LiveCatalog,
    ids: &BTreeMap<String, String>,
    change: &Change,
) -> Result<Option<Change>, Outcome> {
    let read_failed =
        |e: PlatformError| Outcome::Failed(format!("{}: re-reading after a conflict: {e}", describe(change)));
    match change {
        Change::Create { code, .. } => match api.find_code(code).await.map_err(read_failed)?.first() {
            Some(_) => Ok(None),
            None => Ok(Some(change.clone())),
        },
        Change::Update { code, id, from, .. } => {
            let Some(fresh) = api.get_code(id).await.map_err(read_failed)? else {
                return Err(Outcome::Replan);
            };
            let want = file.code(code).map(|c| c.fields.clone()).unwrap_or_default();
            let target = overlay(&fresh.fields, &want);
            if fresh.name == *code && fresh.fields == target {
                return Ok(None);
            }
            Ok(Some(Change::Update {
                code: code.clone(),
                id: id.clone(),
                from: from.clone(),
                fields: Vec::new(),
                target,
            }))
        }
        Change::Delete { id, .. } => match api.get_code(id).await.map_err(read_failed)? {
            None => Ok(None),
            Some(c) if live.platform == Platform::Cxone && c.fields.active == Some(false) => Ok(None),
            Some(_) => Ok(Some(change.clone())),
        },
        Change::Assign { queue, queue_id, codes } => {
            let (have, _) = api.queue_codes(queue_id).await.map_err(read_failed)?;
            let missing: Vec<String> = codes
                .iter()
                .filter(|n| ids.get(&n.to_lowercase()).is_none_or(|id| !have.contains(id)))
                .cloned()
                .collect();
            if missing.is_empty() {
                return Ok(None);
            }
            Ok(Some(Change::Assign { queue: queue.clone(), queue_id: queue_id.clone(), codes: missing }))
        }
        Change::Unassign { queue, queue_id, codes, impact } => {
            let (have, _) = api.queue_codes(queue_id).await.map_err(read_failed)?;
            let left: Vec<String> =
                codes.iter().filter(|n| live.code(n).is_some_and(|c| have.contains(&c.id))).cloned().collect();
            if left.is_empty() {
                return Ok(None);
            }
            Ok(Some(Change::Unassign {
                queue: queue.clone(),
                queue_id: queue_id.clone(),
                codes: left,
                impact: impact.clone(),
            }))
        }
        Change::SetSkill { skill_id, dispositions, require_disposition, .. } => {
            let (have, require) = api.queue_codes(skill_id).await.map_err(read_failed)?;
            let want: Option<Vec<String>> = dispositions.iter().map(|n| ids.get(&n.to_lowercase()).cloned()).collect();
            if want.as_ref() == Some(&have) && require_disposition.is_none_or(|r| Some(r) == require) {
                return Ok(None);
            }
            Ok(Some(change.clone()))
        }
    }
}

fn created_id(change: &Change, ids: &BTreeMap<String, String>) -> Option<String> {
    match change {
        Change::Create { code, .. } => ids.get(&code.to_lowercase()).cloned(),
        _ => None,
    }
}

/// Looks `name` up until it shows or the settle timeout passes.
async fn wait_for_code(api: &dyn CatalogApi, name: &str, opts: &ApplyOptions) -> Option<LiveCode> {
    let started = std::time::Instant::now();
    let mut pause = opts.poll;
    loop {
        if let Ok(found) = api.find_code(name).await {
            if let Some(code) = found.into_iter().next() {
                return Some(code);
            }
        }
        if started.elapsed() >= opts.settle_timeout {
            return None;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// What the platform must show once a change has landed.
#[derive(Debug, Clone)]
enum Expect {
    Code { id: Option<String>, name: String, fields: Option<CodeFields> },
    Gone { id: String },
    QueueHas { queue_id: String, code_ids: Vec<String> },
    QueueLacks { queue_id: String, code_ids: Vec<String> },
    Skill { skill_id: String, code_ids: Vec<String>, require: Option<bool> },
}

fn expectation(change: &Change, ids: &BTreeMap<String, String>, new_id: Option<String>) -> Expect {
    let id_of = |n: &String| ids.get(&n.to_lowercase()).cloned();
    match change {
        Change::Create { code, .. } => Expect::Code { id: new_id, name: code.clone(), fields: None },
        Change::Update { code, id, target, .. } => {
            Expect::Code { id: Some(id.clone()), name: code.clone(), fields: Some(target.clone()) }
        }
        Change::Delete { id, .. } => Expect::Gone { id: id.clone() },
        Change::Assign { queue_id, codes, .. } => {
            Expect::QueueHas { queue_id: queue_id.clone(), code_ids: codes.iter().filter_map(id_of).collect() }
        }
        Change::Unassign { queue_id, codes, .. } => {
            Expect::QueueLacks { queue_id: queue_id.clone(), code_ids: codes.iter().filter_map(id_of).collect() }
        }
        Change::SetSkill { skill_id, dispositions, require_disposition, .. } => Expect::Skill {
            skill_id: skill_id.clone(),
            code_ids: dispositions.iter().filter_map(id_of).collect(),
            require: *require_disposition,
        },
    }
}

/// Reads every expectation back until all hold or the settle timeout passes. `true` when all hold.
async fn settle(api: &dyn CatalogApi, expectations: &mut Vec<Expect>, opts: &ApplyOptions) -> bool {
    let started = std::time::Instant::now();
    let mut pause = opts.poll;
    loop {
        let mut open = Vec::new();
        // One read per object and round, however many changes it had (a queue with codes added and removed).
        let mut reads = Reads::default();
        for e in expectations.drain(..) {
            if !holds(api, &e, &mut reads).await {
                open.push(e);
            }
        }
        *expectations = open;
        if expectations.is_empty() {
            return true;
        }
        if started.elapsed() >= opts.settle_timeout {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// A queue's (skill's) code ids and `requireDisposition`, as [`CatalogApi::queue_codes`] answers.
type QueueCodes = (Vec<String>, Option<bool>);

/// Objects read in one round of read-back (`None`: the read failed).
#[derive(Default)]
struct Reads {
    codes: BTreeMap<String, Option<Option<LiveCode>>>,
    queues: BTreeMap<String, Option<QueueCodes>>,
}

impl Reads {
    async fn code(&mut self, api: &dyn CatalogApi, id: &str) -> Result<Option<LiveCode>, ()> {
        if !self.codes.contains_key(id) {
            self.codes.insert(id.to_string(), api.get_code(id).await.ok());
        }
        self.codes[id].clone().ok_or(())
    }

    async fn queue(&mut self, api: &dyn CatalogApi, id: &str) -> Result<QueueCodes, ()> {
        if !self.queues.contains_key(id) {
            self.queues.insert(id.to_string(), api.queue_codes(id).await.ok());
        }
        self.queues[id].clone().ok_or(())
    }
}

async fn holds(api: &dyn CatalogApi, e: &Expect, reads: &mut Reads) -> bool {
    match e {
        Expect::Code { id: Some(id), name, fields } => match reads.code(api, id).await {
            Ok(Some(c)) => c.name == *name && fields.as_ref().is_none_or(|f| c.fields == *f),
            _ => false,
        },
        Expect::Code { id: None, name, .. } => matches!(api.find_code(name).await, Ok(found) if !found.is_empty()),
        Expect::Gone { id } => match reads.code(api, id).await {
            Ok(None) => true,
            Ok(Some(c)) => api.platform() == Platform::Cxone && c.fields.active == Some(false),
            Err(_) => false,
        },
        Expect::QueueHas { queue_id, code_ids } => {
            matches!(reads.queue(api, queue_id).await, Ok((have, _)) if code_ids.iter().all(|id| have.contains(id)))
        }
        Expect::QueueLacks { queue_id, code_ids } => {
            matches!(reads.queue(api, queue_id).await, Ok((have, _)) if code_ids.iter().all(|id| !have.contains(id)))
        }
        Expect::Skill { skill_id, code_ids, require } => match reads.queue(api, skill_id).await {
            Ok((have, r)) => have == *code_ids && require.is_none_or(|want| Some(want) == r),
            Err(_) => false,
        },
    }
}

/// A change in a few words, for failures.
pub fn describe(change: &Change) -> String {
    match change {
        Change::Create { code, .. } => format!("create code {code:?}"),
        Change::Update { code, from: Some(from), .. } => format!("rename code {from:?} to {code:?}"),
        Change::Update { code, .. } => format!("update code {code:?}"),
        Change::Delete { code, .. } => format!("delete code {code:?}"),
        Change::Assign { queue, .. } => format!("assign codes to queue {queue:?}"),
        Change::Unassign { queue, .. } => format!("unassign codes from queue {queue:?}"),
        Change::SetSkill { skill, .. } => format!("set the dispositions of skill {skill:?}"),
    }
}
