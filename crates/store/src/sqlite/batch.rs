//! The write batcher: every frequent write (intake's events, workers' claims, saves, releases and ledger lines)
//! shares a transaction with the others waiting at the same moment.
//!
//! **Why.** With `synchronous = FULL` a commit costs one fsync of the WAL, and this disk syncs only a few hundred to a
//! couple of thousand times a second, whatever the transaction holds. Intake already grouped its requests, but each
//! worker's save and each ledger line was its own commit, so one leg cost two or three fsyncs after its event's: the
//! workers' commits capped ingest (758 events/s on a disk that commits 14,000 events/s in batches). Now one task owns
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

use super::ingest::{ingest_batch, insert_ledger_rows, LedgerRow};
use super::{decode_record, load_current, ms, to_json};
use crate::{ClaimedLeg, Ingested, LedgerEntry, StoreError, StoreResult};
use jiff::Timestamp;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};
use wrapup_core::lifecycle::LegRecord;
use wrapup_core::{Event, LegKey, Outcome};

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
            Op::Release { reply, .. } | Op::Ledger { reply, .. } => drop(reply.send(Err(e))),
            Op::Claim { reply, .. } => drop(reply.send(Err(e))),
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

/// A handle to the batcher task of one store. The task ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct Batcher {
    tx: mpsc::Sender<Op>,
    counters: Arc<Counters>,
}

impl Batcher {
    pub fn spawn(writer: SqlitePool) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_OPS);
        let counters = Arc::<Counters>::default();
        tokio::spawn(run(writer, rx, counters.clone()));
        Self { tx, counters }
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

async fn run(writer: SqlitePool, mut rx: mpsc::Receiver<Op>, counters: Arc<Counters>) {
    // An operation that did not fit the previous batch opens the next one.
    let mut carried: Option<Op> = None;
    loop {
        let first = match carried.take() {
            Some(op) => op,
            None => match rx.recv().await {
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
        match execute(&writer, &ops).await {
            Ok(answers) => {
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters.operations.fetch_add(ops.len() as u64, Ordering::Relaxed);
                answer(ops, answers)
            }
            Err(e) if ops.len() == 1 => ops.into_iter().for_each(|op| op.fail(&e)),
            Err(_) => {
                // Find the operation that failed: each alone, in its own transaction.
                for op in ops {
                    let single = [op];
                    match execute(&writer, &single).await {
                        Ok(answers) => {
                            counters.commits.fetch_add(1, Ordering::Relaxed);
                            counters.operations.fetch_add(1, Ordering::Relaxed);
                            answer(single.into(), answers)
                        }
                        Err(e) => single.into_iter().for_each(|op| op.fail(&e)),
                    }
                }
            }
        }
    }
}

fn answer(ops: Vec<Op>, answers: Vec<Answer>) {
    for (op, answer) in ops.into_iter().zip(answers) {
        // A caller that gave up (its future dropped) just does not hear back.
        match (op, answer) {
            (Op::Ingest { reply, .. }, Answer::Ingest(r)) => drop(reply.send(Ok(r))),
            (Op::Save { reply, .. }, Answer::Save(r)) => drop(reply.send(r)),
            (Op::Release { reply, .. }, Answer::Release(r)) => drop(reply.send(r)),
            (Op::Ledger { reply, .. }, Answer::Ledger) => drop(reply.send(Ok(()))),
            (Op::Claim { reply, .. }, Answer::Claim(r)) => drop(reply.send(Ok(r))),
            (op, _) => op.fail(&StoreError::Backend("the store's writer mixed up its answers".into())),
        }
    }
}

/// Runs `ops` in one transaction and commits; answers in the order of `ops`. `Err` means nothing was committed.
async fn execute(writer: &SqlitePool, ops: &[Op]) -> StoreResult<Vec<Answer>> {
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let mut answers: Vec<Option<Answer>> = ops.iter().map(|_| None).collect();

    // 1. Events, all in one set-based pass; each caller gets its own slice of the results, in order.
    let all: Vec<Event> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Ingest { events, .. } => Some(events.iter().cloned()),
            _ => None,
        })
        .flatten()
        .collect();
    if !all.is_empty() {
        let now = ops.iter().filter_map(|op| if let Op::Ingest { now, .. } = op { Some(*now) } else { None }).max();
        let mut results = ingest_batch(&mut tx, &all, now.unwrap_or_else(Timestamp::now)).await?.into_iter();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Ingest { events, .. } = op {
                answers[i] = Some(Answer::Ingest(results.by_ref().take(events.len()).collect()));
            }
        }
    }

    // 2. Saves and releases, each refused (before it changes anything) when the caller no longer holds the leg.
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Save { leg, version, owner, release, .. } => {
                answers[i] = Some(Answer::Save(keep_refusal(save(&mut tx, leg, *version, owner, *release).await)?));
            }
            Op::Release { key, owner, .. } => {
                answers[i] = Some(Answer::Release(keep_refusal(release(&mut tx, key, owner).await)?));
            }
            _ => {}
        }
    }

    // 3. Ledger lines, in arrival order, in multi-row statements.
    let mut rows = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Ledger { key, entry, .. } = op {
            rows.push(LedgerRow::new(key, entry)?);
            answers[i] = Some(Answer::Ledger);
        }
    }
    insert_ledger_rows(&mut tx, &rows).await?;

    // 4. Claims last, so they see the leases just released.
    for (i, op) in ops.iter().enumerate() {
        if let Op::Claim { now, limit, owner, lease_until, .. } = op {
            answers[i] = Some(Answer::Claim(claim(&mut tx, *now, *limit, owner, *lease_until).await?));
        }
    }

    tx.commit().await?;
    answers.into_iter().map(|a| a.ok_or_else(|| StoreError::Backend("an operation got no answer".into()))).collect()
}

/// A refusal is the caller's answer; any other error aborts the batch.
fn keep_refusal<T>(result: StoreResult<T>) -> StoreResult<StoreResult<T>> {
    match result {
        Err(e @ (StoreError::Conflict(_) | StoreError::NotFound(_))) => Ok(Err(e)),
        Err(e) => Err(e),
        Ok(v) => Ok(Ok(v)),
    }
}

/// One statement when the save is accepted (the common case); a second one only to tell a refusal's kind. It returns
/// no row (the new version is the one it matched plus one), because sqlx hands each row across threads. The
/// `due_at` rule is [`super::due_at`]'s, in SQL, because the lease it depends on is the row's (SET expressions see
/// the row as it was).
async fn save(
    tx: &mut Transaction<'static, Sqlite>,
    leg: &LegRecord,
    version: i64,
    owner: &str,
    release: bool,
) -> StoreResult<i64> {
    let saved = sqlx::query(
        "UPDATE legs SET state = ?1, not_before = ?2, deadline = ?3, \
           lease_owner = CASE WHEN ?4 THEN NULL ELSE lease_owner END, \
           lease_until = CASE WHEN ?4 THEN NULL ELSE lease_until END, \
           due_at = CASE ?1 WHEN 'done' THEN NULL \
                            WHEN 'writing' THEN CASE WHEN ?4 OR lease_until IS NULL THEN ?5 ELSE lease_until END \
                            ELSE CASE WHEN ?4 OR lease_until IS NULL THEN ?2 ELSE max(?2, lease_until) END END, \
           outcome = ?6, updated_at = ?5, record = ?7, version = version + 1 \
         WHERE connection = ?8 AND conversation = ?9 AND participant = ?10 AND version = ?11 AND lease_owner = ?12",
    )
    .bind(leg.state.as_str())
    .bind(ms(leg.not_before))
    .bind(leg.deadline.map(ms))
    .bind(release)
    .bind(ms(leg.updated_at))
    .bind(leg.outcome.map(Outcome::as_str))
    .bind(to_json("leg record", leg)?)
    .bind(&leg.key.connection)
    .bind(&leg.key.conversation)
    .bind(&leg.key.participant)
    .bind(version)
    .bind(owner)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    match saved {
        1 => Ok(version + 1),
        _ if load_current(tx, &leg.key).await?.is_some() => Err(StoreError::Conflict(leg.key.to_string())),
        _ => Err(StoreError::NotFound(leg.key.to_string())),
    }
}

async fn release(tx: &mut Transaction<'static, Sqlite>, key: &LegKey, owner: &str) -> StoreResult<()> {
    let cur = load_current(tx, key).await?.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
    // Releasing a lease someone else holds (or nobody) changes nothing.
    if cur.lease_owner.as_deref() == Some(owner) {
        sqlx::query("UPDATE legs SET lease_owner = NULL, lease_until = NULL, due_at = ?1 WHERE rowid = ?2")
            .bind(super::due_at(&cur.record, None))
            .bind(cur.rowid)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// One statement: selecting and leasing cannot interleave with another claim, so a leg goes to one owner.
async fn claim(
    tx: &mut Transaction<'static, Sqlite>,
    now: i64,
    limit: u32,
    owner: &str,
    lease_until: i64,
) -> StoreResult<Vec<ClaimedLeg>> {
    let rows = sqlx::query(
        "UPDATE legs SET lease_owner = ?1, lease_until = ?2, due_at = ?2 \
         WHERE rowid IN (SELECT rowid FROM legs WHERE due_at <= ?3 \
                         ORDER BY coalesce(deadline, 9223372036854775807), not_before LIMIT ?4) \
         RETURNING version, record",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(&mut **tx)
    .await?;
    let mut claimed = rows
        .iter()
        .map(|row| Ok(ClaimedLeg { leg: decode_record(row)?, version: row.try_get("version")? }))
        .collect::<StoreResult<Vec<_>>>()?;
    // RETURNING has no defined order.
    claimed.sort_by_key(|c| (c.leg.deadline.is_none(), c.leg.deadline, c.leg.not_before));
    Ok(claimed)
}
