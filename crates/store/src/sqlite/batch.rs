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

use super::ingest::{chunk_sizes, ingest_batch, insert_ledger_rows, placeholders, LedgerRow};
use super::{decode_record, load_current, ms, to_json, update_leg};
use crate::{ClaimedLeg, Ingested, LedgerEntry, StoreError, StoreResult};
use jiff::Timestamp;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};
use std::collections::HashSet;
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

    // 2. Saves (set-based), then releases; each refused, before it changes anything, when the caller no longer
    // holds the leg.
    let saves: Vec<(usize, SaveRef)> = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match op {
            Op::Save { leg, version, owner, release, .. } => {
                Some((i, SaveRef { leg, version: *version, owner, release: *release }))
            }
            _ => None,
        })
        .collect();
    let refs: Vec<&SaveRef> = saves.iter().map(|(_, s)| s).collect();
    for ((i, _), result) in saves.iter().zip(save_all(&mut tx, &refs).await?) {
        answers[*i] = Some(Answer::Save(result));
    }
    for (i, op) in ops.iter().enumerate() {
        if let Op::Release { key, owner, .. } = op {
            answers[i] = Some(Answer::Release(keep_refusal(release(&mut tx, key, owner).await)?));
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

/// One save of a batch.
struct SaveRef<'a> {
    leg: &'a LegRecord,
    version: i64,
    owner: &'a str,
    release: bool,
}

/// Saves `saves` in order; one answer each. Per [`MAX_ROWS`](super::ingest::MAX_ROWS) saves, two statements that return no rows when every
/// save is accepted (the common case): one finds the refused saves (the leg is gone, its version moved, or the caller
/// lost the lease), one `UPDATE … FROM (VALUES …)` writes the rest. (Not one statement per save, nor `RETURNING`:
/// each statement and each returned row is a round trip to sqlx's connection thread, and those round trips were
/// most of a batch's time.) A second save of the same leg in one batch (a worker whose lease ran out, and the one
/// that took the leg over) is run after the others, alone, so it sees the first one's effect.
async fn save_all(tx: &mut Transaction<'static, Sqlite>, saves: &[&SaveRef<'_>]) -> StoreResult<Vec<StoreResult<i64>>> {
    let mut answers: Vec<Option<StoreResult<i64>>> = saves.iter().map(|_| None).collect();
    let mut keys = HashSet::with_capacity(saves.len());
    let (first, again): (Vec<usize>, Vec<usize>) = (0..saves.len()).partition(|&i| keys.insert(&saves[i].leg.key));
    let mut at = 0;
    for n in chunk_sizes(first.len()) {
        let chunk = &first[at..at + n];
        at += n;
        // Which of them are refused, and why.
        let sql = format!(
            "SELECT v.column1 AS i, l.rowid IS NULL AS missing FROM (VALUES {}) AS v \
             LEFT JOIN legs AS l ON l.connection = v.column2 AND l.conversation = v.column3 \
                                AND l.participant = v.column4 \
             WHERE l.rowid IS NULL OR l.version <> v.column5 OR l.lease_owner IS NOT v.column6",
            placeholders(n, 6)
        );
        let mut query = sqlx::query(&sql);
        for &i in chunk {
            let s = saves[i];
            query = query
                .bind(i as i64)
                .bind(&s.leg.key.connection)
                .bind(&s.leg.key.conversation)
                .bind(&s.leg.key.participant)
                .bind(s.version)
                .bind(s.owner);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let i = usize::try_from(row.try_get::<i64, _>("i")?).unwrap_or(usize::MAX);
            let key = saves.get(i).map(|s| s.leg.key.to_string()).unwrap_or_default();
            let refusal = if row.try_get("missing")? { StoreError::NotFound(key) } else { StoreError::Conflict(key) };
            if let Some(slot) = answers.get_mut(i) {
                *slot = Some(Err(refusal));
            }
        }
        let accepted: Vec<usize> = chunk.iter().copied().filter(|&i| answers[i].is_none()).collect();
        if accepted.is_empty() {
            continue;
        }
        // The `due_at` rule is [`super::due_at`]'s, in SQL, because the lease it depends on is the row's (SET
        // expressions see the row as it was). v: 1-3 key, 4 version, 5 owner, 6 release, 7 state, 8 not_before,
        // 9 deadline, 10 updated_at, 11 outcome, 12 record.
        let sql = format!(
            "UPDATE legs SET state = v.column7, not_before = v.column8, deadline = v.column9, \
               lease_owner = CASE WHEN v.column6 THEN NULL ELSE legs.lease_owner END, \
               lease_until = CASE WHEN v.column6 THEN NULL ELSE legs.lease_until END, \
               due_at = CASE v.column7 WHEN 'done' THEN NULL \
                 WHEN 'writing' THEN \
                   CASE WHEN v.column6 OR legs.lease_until IS NULL THEN v.column10 ELSE legs.lease_until END \
                 ELSE CASE WHEN v.column6 OR legs.lease_until IS NULL THEN v.column8 \
                           ELSE max(v.column8, legs.lease_until) END END, \
               outcome = v.column11, updated_at = v.column10, record = v.column12, version = legs.version + 1 \
             FROM (VALUES {}) AS v \
             WHERE legs.connection = v.column1 AND legs.conversation = v.column2 AND legs.participant = v.column3 \
               AND legs.version = v.column4 AND legs.lease_owner = v.column5",
            placeholders(accepted.len(), 12)
        );
        let mut query = sqlx::query(&sql);
        for &i in &accepted {
            let s = saves[i];
            let leg = s.leg;
            query = query
                .bind(&leg.key.connection)
                .bind(&leg.key.conversation)
                .bind(&leg.key.participant)
                .bind(s.version)
                .bind(s.owner)
                .bind(s.release)
                .bind(leg.state.as_str())
                .bind(ms(leg.not_before))
                .bind(leg.deadline.map(ms))
                .bind(ms(leg.updated_at))
                .bind(leg.outcome.map(Outcome::as_str))
                .bind(to_json("leg record", leg)?);
        }
        let written = query.execute(&mut **tx).await?.rows_affected();
        if written != accepted.len() as u64 {
            // Cannot happen inside this transaction; if it did, the batch is rolled back and each save run alone.
            return Err(StoreError::Backend(format!("{written} of {} checked saves were written", accepted.len())));
        }
        for i in accepted {
            answers[i] = Some(Ok(saves[i].version + 1));
        }
    }
    for i in again {
        let s = saves[i];
        answers[i] = Some(keep_refusal(save_alone(tx, s).await)?);
    }
    answers.into_iter().map(|a| a.ok_or_else(|| StoreError::Backend("a save got no answer".into()))).collect()
}

/// One save on its own: the leg is read, checked and written.
async fn save_alone(tx: &mut Transaction<'static, Sqlite>, s: &SaveRef<'_>) -> StoreResult<i64> {
    let cur = load_current(tx, &s.leg.key).await?.ok_or_else(|| StoreError::NotFound(s.leg.key.to_string()))?;
    if cur.version != s.version || cur.lease_owner.as_deref() != Some(s.owner) {
        return Err(StoreError::Conflict(s.leg.key.to_string()));
    }
    let lease = if s.release { (None, None) } else { (Some(s.owner), cur.lease_until) };
    update_leg(tx, cur.rowid, s.leg, lease).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteStore, Store};
    use jiff::SignedDuration;
    use wrapup_core::EventKind;
    use wrapup_core::LegFacts;

    fn ended(conversation: &str) -> Event {
        Event {
            leg: LegKey::new("c", conversation, "p"),
            dedupe_key: format!("end-{conversation}"),
            occurred_at: Timestamp::UNIX_EPOCH,
            correlation_id: None,
            kind: EventKind::LegEnded { facts: Box::new(LegFacts::default()) },
        }
    }

    #[tokio::test]
    async fn saves_in_one_statement_keep_each_ones_answer() {
        let store = SqliteStore::open_in_memory().await.unwrap();
        let now = Timestamp::UNIX_EPOCH;
        store.ingest(&[ended("a"), ended("b"), ended("c")], now).await.unwrap();
        let claimed = store.claim_due(now, 2, "w", SignedDuration::from_secs(60)).await.unwrap();
        let (a, b) = (&claimed[0], &claimed[1]);
        let mut unknown = a.leg.clone();
        unknown.key = LegKey::new("c", "nowhere", "p");
        let saves = [
            SaveRef { leg: &a.leg, version: a.version, owner: "w", release: false },
            // The same leg again in the batch: it sees the first save's version bump.
            SaveRef { leg: &a.leg, version: a.version, owner: "w", release: true },
            SaveRef { leg: &b.leg, version: b.version, owner: "someone else", release: true },
            SaveRef { leg: &unknown, version: 1, owner: "w", release: true },
            SaveRef { leg: &b.leg, version: b.version, owner: "w", release: true },
        ];
        let mut tx = store.writer.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let answers = save_all(&mut tx, &saves.iter().collect::<Vec<_>>()).await.unwrap();
        tx.commit().await.unwrap();
        assert!(matches!(answers[0], Ok(v) if v == a.version + 1), "{answers:?}");
        assert!(matches!(answers[1], Err(StoreError::Conflict(_))), "{answers:?}");
        assert!(matches!(answers[2], Err(StoreError::Conflict(_))), "{answers:?}");
        assert!(matches!(answers[3], Err(StoreError::NotFound(_))), "{answers:?}");
        // A refused save of `b` (wrong owner) does not spoil the right one after it, which runs alone (a repeat).
        assert!(matches!(answers[4], Ok(v) if v == b.version + 1), "{answers:?}");
        // `a` kept its lease (release: false), `b` released it.
        let a_now = store.get_leg(&a.leg.key).await.unwrap().unwrap();
        assert_eq!(a_now.version, a.version + 1);
        let again = store.claim_due(now, 10, "other", SignedDuration::from_secs(60)).await.unwrap();
        let keys: Vec<_> = again.iter().map(|c| c.leg.key.conversation.as_str()).collect();
        assert!(keys.contains(&"b") && !keys.contains(&"a"), "{keys:?}");
    }
}
