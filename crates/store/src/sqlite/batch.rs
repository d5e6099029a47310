//! The write batcher: every frequent write (intake's events, workers' claims, saves, releases and ledger lines)
//! shares a transaction with the others waiting at the same moment.
//!
//! **Why.** With `synchronous = FULL` a commit costs one fsync of the WAL, and this disk syncs only a few hundred to a
//! couple of thousand times a second, whatever the transaction holds. Intake already grouped its requests, but each
//! worker's save and each ledger line was its own commit, so one leg cost two or three fsyncs after its event's: the
//! workers' commits capped ingest (758 events/s on a disk that commits 14,000 events/s in batches). Now one thread owns
//! the writer connection; it takes the first waiting operation and every other one already queued (up to
//! [`MAX_OPS`] / [`MAX_EVENTS`]), runs them in one `BEGIN IMMEDIATE` transaction, commits once and only then answers
//! each caller. The next batch forms while this one syncs, so the batch grows with the load.
//!
//! **Same meaning as one transaction per call.** Every caller still gets its answer only after the commit that holds
//! its write, so durability is unchanged. The operations of one batch were all in flight at once, so any order among
//! them is an order they could have had; the batcher runs the events first (a save then sees their version bump and
//! is refused, as it would be had the events committed a moment earlier), then saves, releases, ledger lines and
//! claims. A refused save or release (`Conflict`, `NotFound`) is decided before it changes anything and is just that
//! caller's answer. Any other error rolls the batch back, and each operation is then run alone in its own
//! transaction, so one bad operation cannot fail the others.

use super::ingest::ingest_batch;
use super::{ms, parse_record, to_json};
use crate::{ClaimedLeg, Ingested, LedgerEntry, OutcomeChange, OutcomeHook, StoreError, StoreResult};
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::{Event, LegKey, Outcome};

/// An outbox operation's body.
pub(super) type OutboxWork = Box<dyn Fn(&Transaction<'_>) -> StoreResult<OutboxAnswer> + Send + Sync>;
/// An outbox operation's answer, which its caller downcasts.
pub(super) type OutboxAnswer = Box<dyn std::any::Any + Send>;

/// At most this many operations share a transaction.
pub const MAX_OPS: usize = 1_024;
/// At most this many intake events share a transaction (a large transaction delays every caller in it).
pub const MAX_EVENTS: usize = 2_000;

/// One write, with where its answer goes.
pub(super) enum Op {
    Ingest {
        events: Vec<Event>,
        now: Timestamp,
        reply: oneshot::Sender<StoreResult<Vec<Ingested>>>,
    },
    Save {
        leg: Box<LegRecord>,
        version: i64,
        owner: String,
        release: bool,
        /// Committed with the leg, or not at all.
        lines: Vec<LedgerEntry>,
        stored_outcome: Option<Outcome>,
        reply: oneshot::Sender<StoreResult<i64>>,
    },
    Release {
        key: LegKey,
        owner: String,
        reply: oneshot::Sender<StoreResult<()>>,
    },
    Ledger {
        key: LegKey,
        entry: LedgerEntry,
        reply: oneshot::Sender<StoreResult<()>>,
    },
    Claim {
        now: i64,
        limit: u32,
        owner: String,
        lease_until: i64,
        reply: oneshot::Sender<StoreResult<Vec<ClaimedLeg>>>,
    },
    /// The rare writes, so that this thread is the database's only writer (another connection writing would make
    /// one of the two sleep in SQLite's busy handler). Expiry finishes at most `EXPIRE_CHUNK` legs per operation.
    Expire {
        now: Timestamp,
        reply: oneshot::Sender<StoreResult<Vec<LegKey>>>,
    },
    ReleaseAll {
        reply: oneshot::Sender<StoreResult<u64>>,
    },
    PutCatalog {
        connection: String,
        catalog: String,
        fetched_at: String,
        reply: oneshot::Sender<StoreResult<()>>,
    },
    Idempotent {
        connection: String,
        key: String,
        response: String,
        reply: oneshot::Sender<StoreResult<(bool, String)>>,
    },
    /// An outbox operation (`outbox.rs`): run on the writer's transaction, answered after its commit. `Fn`, not
    /// `FnOnce`: a batch that fails is run again one operation at a time.
    Outbox {
        work: OutboxWork,
        reply: oneshot::Sender<StoreResult<OutboxAnswer>>,
    },
    CatalogAudit {
        line: crate::CatalogAuditLine,
        /// `line.body` as JSON text.
        body: String,
        reply: oneshot::Sender<StoreResult<()>>,
    },
    PendingDecision {
        connection: String,
        conversation: String,
        /// `''`: every leg of the conversation.
        participant: String,
        arrived_at: i64,
        decision: String,
        reply: oneshot::Sender<StoreResult<()>>,
    },
}

impl Op {
    fn events(&self) -> usize {
        match self {
            Op::Ingest { events, .. } => events.len(),
            _ => 0,
        }
    }

    fn fail(self, e: &StoreError) {
        let e = StoreError::Backend(e.to_string());
        match self {
            Op::Ingest { reply, .. } => drop(reply.send(Err(e))),
            Op::Save { reply, .. } => drop(reply.send(Err(e))),
            Op::Release { reply, .. }
            | Op::Ledger { reply, .. }
            | Op::PutCatalog { reply, .. }
            | Op::CatalogAudit { reply, .. }
            | Op::PendingDecision { reply, .. } => drop(reply.send(Err(e))),
            Op::Claim { reply, .. } => drop(reply.send(Err(e))),
            Op::Expire { reply, .. } => drop(reply.send(Err(e))),
            Op::ReleaseAll { reply } => drop(reply.send(Err(e))),
            Op::Idempotent { reply, .. } => drop(reply.send(Err(e))),
            Op::Outbox { reply, .. } => drop(reply.send(Err(e))),
        }
    }
}

/// The answer to one operation of a batch, held until the batch commits.
enum Answer {
    Ingest(Vec<Ingested>),
    Save(StoreResult<i64>),
    Release(StoreResult<()>),
    Ledger,
    Claim(Vec<ClaimedLeg>),
    Outbox(OutboxAnswer),
    Expire(Vec<LegKey>),
    ReleaseAll(u64),
    PutCatalog,
    Idempotent((bool, String)),
    CatalogAudit,
    PendingDecision,
}

/// What the batcher has done since the store opened: the product's figure is operations per commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Transactions committed by the batcher.
    pub commits: u64,
    /// Operations answered from those commits (events count as one operation per intake call).
    pub operations: u64,
}

#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    operations: AtomicU64,
}

/// A handle to the writer thread of one store. The thread ends when the last handle is dropped.
#[derive(Clone)]
pub(super) struct Batcher {
    tx: mpsc::Sender<Op>,
    counters: Arc<Counters>,
    hook: SharedHook,
}

/// The outcome hook, set once the store is open (the writer reads it after each commit).
type SharedHook = Arc<std::sync::RwLock<Option<OutcomeHook>>>;

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("stats", &self.stats()).finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the writer thread on `conn` (see [`open_writer`]).
    pub fn spawn(conn: Connection) -> StoreResult<Self> {
        let (tx, rx) = mpsc::channel(4 * MAX_OPS);
        let counters = Arc::<Counters>::default();
        let hook = SharedHook::default();
        let (thread_counters, thread_hook) = (counters.clone(), hook.clone());
        std::thread::Builder::new()
            .name("wrapup-store-writer".into())
            .spawn(move || run(conn, rx, thread_counters, thread_hook))
            .map_err(|e| StoreError::Backend(format!("cannot start the store's writer thread: {e}")))?;
        Ok(Self { tx, counters, hook })
    }

    pub fn watch_outcomes(&self, hook: OutcomeHook) {
        *self.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    pub fn stats(&self) -> WriteStats {
        WriteStats {
            commits: self.counters.commits.load(Ordering::Relaxed),
            operations: self.counters.operations.load(Ordering::Relaxed),
        }
    }

    /// Queues an operation made with `make` (given its reply channel) and waits for its answer.
    pub async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Op) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Backend("the store's writer stopped".into());
        self.tx.send(make(reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// Opens the writer's own connection to the database file (already created and migrated through sqlx). `durable`:
/// `synchronous = FULL` (every commit fsyncs the WAL); off only for the throwaway stores of tests.
pub(super) fn open_writer(path: &std::path::Path, durable: bool, busy: std::time::Duration) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "cache_size", super::WRITER_CACHE_KIB)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Op>, counters: Arc<Counters>, hook: SharedHook) {
    let answer = |ops, done: Executed| answer(ops, done, &counters, &hook);
    // An operation that did not fit the previous batch opens the next one.
    let mut carried: Option<Op> = None;
    loop {
        let first = match carried.take() {
            Some(op) => op,
            None => match rx.blocking_recv() {
                Some(op) => op,
                None => return,
            },
        };
        let mut events = first.events();
        let mut ops = vec![first];
        while ops.len() < MAX_OPS {
            let Ok(op) = rx.try_recv() else { break };
            if events + op.events() > MAX_EVENTS {
                carried = Some(op);
                break;
            }
            events += op.events();
            ops.push(op);
        }
        match execute(&mut conn, &ops) {
            Ok(done) => answer(ops, done),
            Err(e) if ops.len() == 1 => ops.into_iter().for_each(|op| op.fail(&e)),
            Err(_) => {
                // Find the operation that failed: each alone, in its own transaction.
                for op in ops {
                    let single = vec![op];
                    match execute(&mut conn, &single) {
                        Ok(done) => answer(single, done),
                        Err(e) => single.into_iter().for_each(|op| op.fail(&e)),
                    }
                }
            }
        }
    }
}

/// What a committed transaction did: one answer per operation, and the outcomes it changed.
struct Executed {
    answers: Vec<Answer>,
    changes: Vec<OutcomeChange>,
}

/// Answers the operations of a committed transaction, counts it, and reports its outcome changes to the hook.
fn answer(ops: Vec<Op>, done: Executed, counters: &Counters, hook: &SharedHook) {
    counters.commits.fetch_add(1, Ordering::Relaxed);
    counters.operations.fetch_add(ops.len() as u64, Ordering::Relaxed);
    if !done.changes.is_empty() {
        let hook = hook.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(hook) = hook {
            done.changes.iter().for_each(|c| hook(c));
        }
    }
    for (op, answer) in ops.into_iter().zip(done.answers) {
        // A caller that gave up (its future dropped) just does not hear back.
        match (op, answer) {
            (Op::Ingest { reply, .. }, Answer::Ingest(r)) => drop(reply.send(Ok(r))),
            (Op::Save { reply, .. }, Answer::Save(r)) => drop(reply.send(r)),
            (Op::Release { reply, .. }, Answer::Release(r)) => drop(reply.send(r)),
            (Op::Ledger { reply, .. }, Answer::Ledger) => drop(reply.send(Ok(()))),
            (Op::Claim { reply, .. }, Answer::Claim(r)) => drop(reply.send(Ok(r))),
            (Op::Expire { reply, .. }, Answer::Expire(r)) => drop(reply.send(Ok(r))),
            (Op::ReleaseAll { reply }, Answer::ReleaseAll(r)) => drop(reply.send(Ok(r))),
            (Op::PutCatalog { reply, .. }, Answer::PutCatalog) => drop(reply.send(Ok(()))),
            (Op::CatalogAudit { reply, .. }, Answer::CatalogAudit) => drop(reply.send(Ok(()))),
            (Op::PendingDecision { reply, .. }, Answer::PendingDecision) => drop(reply.send(Ok(()))),
            (Op::Idempotent { reply, .. }, Answer::Idempotent(r)) => drop(reply.send(Ok(r))),
            (Op::Outbox { reply, .. }, Answer::Outbox(r)) => drop(reply.send(Ok(r))),
            (op, _) => op.fail(&StoreError::Backend("the store's writer mixed up its answers".into())),
        }
    }
}

/// Runs `ops` in one transaction and commits; answers in the order of `ops`. `Err` means nothing was committed.
fn execute(conn: &mut Connection, ops: &[Op]) -> StoreResult<Executed> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut answers: Vec<Option<Answer>> = ops.iter().map(|_| None).collect();
    let mut changes = Vec::new();

    // 1. Events, all in one pass; each caller gets its own slice of the results, in order.
    let all: Vec<&Event> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Ingest { events, .. } => Some(events.iter()),
            _ => None,
        })
        .flatten()
        .collect();
    if !all.is_empty() {
        let now = ops.iter().filter_map(|op| if let Op::Ingest { now, .. } = op { Some(*now) } else { None }).max();
        let mut results = ingest_batch(&tx, &all, now.unwrap_or_else(Timestamp::now), &mut changes)?.into_iter();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Ingest { events, .. } = op {
                answers[i] = Some(Answer::Ingest(results.by_ref().take(events.len()).collect()));
            }
        }
    }

    // 2. Saves and releases, in arrival order, each refused (before it changes anything) when the caller no longer
    // holds the leg. A refusal is that caller's answer; any other error aborts the batch.
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Save { leg, version, owner, release, lines, stored_outcome, .. } => {
                let saved = keep_refusal(save(&tx, leg, *version, owner, *release))?;
                if saved.is_ok() {
                    for line in lines {
                        insert_ledger(&tx, &leg.key, line)?;
                    }
                    if leg.outcome.is_some() && leg.outcome != *stored_outcome {
                        changes.push(OutcomeChange { leg: (**leg).clone(), from: *stored_outcome });
                    }
                }
                answers[i] = Some(Answer::Save(saved));
            }
            Op::Release { key, owner, .. } => {
                answers[i] = Some(Answer::Release(keep_refusal(release(&tx, key, owner))?));
            }
            _ => {}
        }
    }

    // 3. Ledger lines, in arrival order.
    for (i, op) in ops.iter().enumerate() {
        if let Op::Ledger { key, entry, .. } = op {
            insert_ledger(&tx, key, entry)?;
            answers[i] = Some(Answer::Ledger);
        }
    }

    // 4. The rare writes, then claims last, so they see the leases just released.
    for (i, op) in ops.iter().enumerate() {
        if let Some(answer) = rare_write(&tx, op, &mut changes)? {
            answers[i] = Some(answer);
        }
    }
    for (i, op) in ops.iter().enumerate() {
        if let Op::Claim { now, limit, owner, lease_until, .. } = op {
            answers[i] = Some(Answer::Claim(claim(&tx, *now, *limit, owner, *lease_until)?));
        }
    }

    // Each outcome change is announced in the commit that made it.
    for change in &changes {
        super::outbox::insert_message(&tx, change)?;
    }
    tx.commit()?;
    let answers = answers
        .into_iter()
        .map(|a| a.ok_or_else(|| StoreError::Backend("an operation got no answer".into())))
        .collect::<StoreResult<_>>()?;
    Ok(Executed { answers, changes })
}

/// The answer to `op` if it is one of the rare writes.
fn rare_write(tx: &Transaction<'_>, op: &Op, changes: &mut Vec<OutcomeChange>) -> StoreResult<Option<Answer>> {
    Ok(Some(match op {
        Op::Expire { now, .. } => Answer::Expire(expire(tx, *now, changes)?),
        Op::ReleaseAll { .. } => Answer::ReleaseAll(release_all(tx)?),
        Op::PutCatalog { connection, catalog, fetched_at, .. } => {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO catalog_cache (connection, catalog, fetched_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (connection) DO UPDATE SET catalog = excluded.catalog, fetched_at = excluded.fetched_at",
            )?;
            stmt.execute(params![connection, catalog, fetched_at])?;
            Answer::PutCatalog
        }
        Op::CatalogAudit { line, body, .. } => {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO catalog_audit (connection, apply_id, seq, at, actor, kind, body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            stmt.execute(params![
                line.connection,
                line.apply_id,
                line.seq,
                line.at.as_millisecond(),
                line.actor,
                line.kind,
                body
            ])?;
            Answer::CatalogAudit
        }
        Op::Idempotent { connection, key, response, .. } => {
            Answer::Idempotent(idempotent(tx, connection, key, response)?)
        }
        Op::PendingDecision { connection, conversation, participant, arrived_at, decision, .. } => {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO pending_decisions (connection, conversation, participant, arrived_at, decision) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (connection, conversation, participant) DO UPDATE SET \
                 arrived_at = excluded.arrived_at, decision = excluded.decision",
            )?;
            stmt.execute(params![connection, conversation, participant, arrived_at, decision])?;
            Answer::PendingDecision
        }
        Op::Outbox { work, .. } => Answer::Outbox(work(tx)?),
        _ => return Ok(None),
    }))
}

/// `due_at` of a leg without a lease, as [`super::due_at`] computes it: none once done, a writing leg at once (its
/// `updated_at`), others at `not_before`.
const DUE_WITHOUT_LEASE: &str = "CASE state WHEN 'done' THEN NULL WHEN 'writing' THEN updated_at ELSE not_before END";

/// A refusal is the caller's answer; any other error aborts the batch.
fn keep_refusal<T>(result: StoreResult<T>) -> StoreResult<StoreResult<T>> {
    match result {
        Err(e @ (StoreError::Conflict(_) | StoreError::NotFound(_))) => Ok(Err(e)),
        Err(e) => Err(e),
        Ok(v) => Ok(Ok(v)),
    }
}

fn exists(tx: &Transaction<'_>, key: &LegKey) -> StoreResult<bool> {
    let mut stmt =
        tx.prepare_cached("SELECT 1 FROM legs WHERE connection = ?1 AND conversation = ?2 AND participant = ?3")?;
    Ok(stmt.exists(params![key.connection, key.conversation, key.participant])?)
}

/// One statement when the save is accepted (the common case); a second one only to tell a refusal's kind. The
/// new version is the one matched plus one. The `due_at` rule is [`super::due_at`]'s, in SQL, because the lease
/// it depends on is the row's (SET expressions see the row as it was).
fn save(tx: &Transaction<'_>, leg: &LegRecord, version: i64, owner: &str, release: bool) -> StoreResult<i64> {
    let mut stmt = tx.prepare_cached(
        "UPDATE legs SET state = ?1, not_before = ?2, deadline = ?3, \
           lease_owner = CASE WHEN ?4 THEN NULL ELSE lease_owner END, \
           lease_until = CASE WHEN ?4 THEN NULL ELSE lease_until END, \
           due_at = CASE ?1 WHEN 'done' THEN NULL \
                            WHEN 'writing' THEN CASE WHEN ?4 OR lease_until IS NULL THEN ?5 ELSE lease_until END \
                            ELSE CASE WHEN ?4 OR lease_until IS NULL THEN ?2 ELSE max(?2, lease_until) END END, \
           outcome = ?6, updated_at = ?5, record = ?7, version = version + 1 \
         WHERE connection = ?8 AND conversation = ?9 AND participant = ?10 AND version = ?11 AND lease_owner = ?12",
    )?;
    let written = stmt.execute(params![
        leg.state.as_str(),
        ms(leg.not_before),
        leg.order_deadline().map(ms),
        release,
        ms(leg.updated_at),
        leg.outcome.map(Outcome::as_str),
        to_json("leg record", leg)?,
        leg.key.connection,
        leg.key.conversation,
        leg.key.participant,
        version,
        owner,
    ])?;
    match written {
        1 => Ok(version + 1),
        _ if exists(tx, &leg.key)? => Err(StoreError::Conflict(leg.key.to_string())),
        _ => Err(StoreError::NotFound(leg.key.to_string())),
    }
}

/// Releasing a lease someone else holds (or nobody) changes nothing.
fn release(tx: &Transaction<'_>, key: &LegKey, owner: &str) -> StoreResult<()> {
    let mut stmt = tx.prepare_cached(&format!(
        "UPDATE legs SET lease_owner = NULL, lease_until = NULL, due_at = {DUE_WITHOUT_LEASE} \
         WHERE connection = ?1 AND conversation = ?2 AND participant = ?3 AND lease_owner = ?4"
    ))?;
    let released = stmt.execute(params![key.connection, key.conversation, key.participant, owner])?;
    if released == 0 && !exists(tx, key)? {
        return Err(StoreError::NotFound(key.to_string()));
    }
    Ok(())
}

pub(super) fn insert_ledger(tx: &Transaction<'_>, key: &LegKey, entry: &LedgerEntry) -> StoreResult<()> {
    let detail = to_json("ledger detail", &entry.detail)?;
    insert_ledger_line(tx, key, &entry.at.to_string(), &entry.kind, &detail)
}

pub(super) fn insert_ledger_line(
    tx: &Transaction<'_>,
    key: &LegKey,
    at: &str,
    kind: &str,
    detail: &str,
) -> StoreResult<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO ledger (connection, conversation, participant, at, kind, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    stmt.execute(params![key.connection, key.conversation, key.participant, at, kind, detail])?;
    Ok(())
}

/// One statement: selecting and leasing cannot interleave with another claim, so a leg goes to one owner.
fn claim(tx: &Transaction<'_>, now: i64, limit: u32, owner: &str, lease_until: i64) -> StoreResult<Vec<ClaimedLeg>> {
    let mut stmt = tx.prepare_cached(
        "UPDATE legs SET lease_owner = ?1, lease_until = ?2, due_at = ?2 \
         WHERE rowid IN (SELECT rowid FROM legs WHERE due_at <= ?3 \
                         ORDER BY coalesce(deadline, 9223372036854775807), not_before LIMIT ?4) \
         RETURNING version, record",
    )?;
    let mut rows = stmt.query(params![owner, lease_until, now, i64::from(limit)])?;
    let mut claimed = Vec::new();
    while let Some(row) = rows.next()? {
        let record: String = row.get(1)?;
        claimed.push(ClaimedLeg { leg: parse_record(&record)?, version: row.get(0)? });
    }
    // RETURNING has no defined order.
    claimed.sort_by_key(|c| (c.leg.order_deadline().is_none(), c.leg.order_deadline(), c.leg.not_before));
    Ok(claimed)
}

/// Finishes up to `EXPIRE_CHUNK` legs whose deadline passed with `expired`. Legs with a write intent (a write may
/// have been sent and landed) are left to their worker, which reads the platform first. A worker holding a lease
/// keeps it until it releases; its save is refused by the version bump.
fn expire(tx: &Transaction<'_>, now: Timestamp, changes: &mut Vec<OutcomeChange>) -> StoreResult<Vec<LegKey>> {
    let mut select =
        tx.prepare_cached(&format!("SELECT rowid, lease_until, record FROM legs WHERE {} LIMIT ?2", super::OVERDUE))?;
    let rows = select
        .query_map(params![ms(now), super::EXPIRE_CHUNK], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?, row.get::<_, String>(2)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut update = tx.prepare_cached(
        "UPDATE legs SET state = ?1, not_before = ?2, deadline = ?3, due_at = ?4, outcome = ?5, updated_at = ?6, \
         record = ?7, version = version + 1 WHERE rowid = ?8",
    )?;
    let reason = "the ACW window closed before we acted";
    let detail = serde_json::json!({"outcome": Outcome::Expired.as_str(), "reason": reason}).to_string();
    let at = now.to_string();
    let mut expired = Vec::with_capacity(rows.len());
    for (rowid, lease_until, record) in rows {
        let mut leg = parse_record(&record)?;
        // A leg an operator handed back to the worker still holds its `review`: this is then its change.
        let before = leg.outcome;
        leg.finish(Outcome::Expired, Some(reason.to_string()), now);
        update.execute(params![
            leg.state.as_str(),
            ms(leg.not_before),
            leg.order_deadline().map(ms),
            super::due_at(&leg, lease_until),
            leg.outcome.map(Outcome::as_str),
            ms(leg.updated_at),
            to_json("leg record", &leg)?,
            rowid,
        ])?;
        match wrapup_core::lifecycle::outcome_line(before, &leg) {
            Some(("outcome", _)) | None => insert_ledger_line(tx, &leg.key, &at, "outcome", &detail)?,
            Some((kind, line)) => insert_ledger_line(tx, &leg.key, &at, kind, &to_json("ledger detail", &line)?)?,
        }
        expired.push(leg.key.clone());
        changes.push(OutcomeChange { leg, from: before });
    }
    Ok(expired)
}

fn release_all(tx: &Transaction<'_>) -> StoreResult<u64> {
    let done = tx.execute(
        &format!(
            "UPDATE legs SET lease_owner = NULL, lease_until = NULL, due_at = {DUE_WITHOUT_LEASE} \
             WHERE lease_owner IS NOT NULL"
        ),
        [],
    )?;
    Ok(done as u64)
}

/// `(true, response)` when this call stored `response`, `(false, first response)` when the key was used before.
fn idempotent(tx: &Transaction<'_>, connection: &str, key: &str, response: &str) -> StoreResult<(bool, String)> {
    let stored = tx.execute(
        "INSERT INTO idempotency (connection, key, response, created_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (connection, key) DO NOTHING",
        params![connection, key, response, ms(Timestamp::now())],
    )? == 1;
    if stored {
        return Ok((true, response.to_string()));
    }
    let first: String = tx.query_row(
        "SELECT response FROM idempotency WHERE connection = ?1 AND key = ?2",
        params![connection, key],
        |row| row.get(0),
    )?;
    Ok((false, first))
}

/// Loads a leg's version, lease end and record, if it exists.
pub(super) fn load(tx: &Transaction<'_>, key: &LegKey) -> StoreResult<Option<(i64, Option<i64>, LegRecord)>> {
    let mut stmt = tx.prepare_cached(
        "SELECT version, lease_until, record FROM legs WHERE connection = ?1 AND conversation = ?2 AND participant = ?3",
    )?;
    let row = stmt
        .query_row(params![key.connection, key.conversation, key.participant], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?, row.get::<_, String>(2)?))
        })
        .optional()?;
    row.map(|(version, lease_until, record)| Ok((version, lease_until, parse_record(&record)?))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteStore, Store};
    use jiff::SignedDuration;
    use wrapup_core::{EventKind, LegFacts};

    fn ended(conversation: &str) -> Event {
        Event {
            leg: LegKey::new("c", conversation, "p"),
            dedupe_key: format!("end-{conversation}"),
            occurred_at: Timestamp::UNIX_EPOCH,
            correlation_id: None,
            kind: EventKind::LegEnded { facts: Box::new(LegFacts::default()) },
        }
    }

    fn save_op(leg: &LegRecord, version: i64, owner: &str, release: bool) -> Op {
        let (reply, _) = oneshot::channel();
        Op::Save {
            leg: Box::new(leg.clone()),
            version,
            owner: owner.into(),
            release,
            lines: Vec::new(),
            stored_outcome: leg.outcome,
            reply,
        }
    }

    #[test]
    fn the_writer_connection_syncs_every_commit() {
        // Intake acknowledges on the strength of the writer's commit: FULL (2) makes each commit fsync the WAL.
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("w.db"), true, std::time::Duration::from_secs(1)).unwrap();
        let sync: i64 = conn.pragma_query_value(None, "synchronous", |r| r.get(0)).unwrap();
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!((sync, mode.as_str()), (2, "wal"));
    }

    #[tokio::test]
    async fn saves_of_one_batch_keep_each_ones_answer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wrapup.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let now = Timestamp::UNIX_EPOCH;
        store.ingest(&[ended("a"), ended("b"), ended("c")], now).await.unwrap();
        let claimed = store.claim_due(now, 2, "w", SignedDuration::from_secs(60)).await.unwrap();
        let (a, b) = (&claimed[0], &claimed[1]);
        let mut unknown = a.leg.clone();
        unknown.key = LegKey::new("c", "nowhere", "p");
        let ops = [
            save_op(&a.leg, a.version, "w", false),
            // The same leg again in the batch: it sees the first save's version bump.
            save_op(&a.leg, a.version, "w", true),
            save_op(&b.leg, b.version, "someone else", true),
            save_op(&unknown, 1, "w", true),
            // A refused save of `b` (wrong owner) does not spoil the right one after it.
            save_op(&b.leg, b.version, "w", true),
        ];
        let mut conn = open_writer(&path, true, std::time::Duration::from_secs(1)).unwrap();
        let answers: Vec<_> = execute(&mut conn, &ops)
            .unwrap()
            .answers
            .into_iter()
            .map(|a| match a {
                Answer::Save(r) => r,
                _ => panic!("not a save's answer"),
            })
            .collect();
        assert!(matches!(answers[0], Ok(v) if v == a.version + 1), "{answers:?}");
        assert!(matches!(answers[1], Err(StoreError::Conflict(_))), "{answers:?}");
        assert!(matches!(answers[2], Err(StoreError::Conflict(_))), "{answers:?}");
        assert!(matches!(answers[3], Err(StoreError::NotFound(_))), "{answers:?}");
        assert!(matches!(answers[4], Ok(v) if v == b.version + 1), "{answers:?}");
        // `a` kept its lease (release: false), `b` released it.
        assert_eq!(store.get_leg(&a.leg.key).await.unwrap().unwrap().version, a.version + 1);
        let again = store.claim_due(now, 10, "other", SignedDuration::from_secs(60)).await.unwrap();
        let keys: Vec<_> = again.iter().map(|c| c.leg.key.conversation.as_str()).collect();
        assert!(keys.contains(&"b") && !keys.contains(&"a"), "{keys:?}");
    }
}
