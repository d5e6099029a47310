//! [`Store`] on embedded SQLite (WAL), the default store: nothing to install, one file in the data directory.
//!
//! **Durability.** The database runs in WAL mode with `synchronous = FULL`: every commit fsyncs the WAL before it
//! returns, so when [`Store::ingest`] returns `Ok` the batch survives a crash or power loss (`NORMAL` would only
//! survive a process crash, and intake acknowledges events on the strength of this commit). The fsync is paid once per
//! batch, not per event: intake batches events and commits them in one transaction.
//!
//! **One writer.** SQLite allows one writer at a time. Writes go through a pool of one connection, so writers in this
//! process queue on the pool instead of spinning on `SQLITE_BUSY`, and every read-then-write transaction starts with
//! `BEGIN IMMEDIATE`, so another process on the same file is serialized by the file lock (with `busy_timeout`) rather
//! than failing a lock upgrade halfway. Reads use a separate pool and, thanks to WAL, never wait for the writer.
//! An in-memory store has a single connection for both (each in-memory connection would be its own database).
//!
//! **Claims, leases and versions.** Every change to a leg's content (an event applied, a worker's save, expiry)
//! bumps `version`. Claiming only sets the lease (`lease_owner`, `lease_until`) and does not bump the version: the
//! lease is what keeps other workers away, the version is what tells a worker that the leg changed under it. A save
//! must present the version it read *and* still be the lease owner; it does not compare `lease_until` with a clock
//! (the store has none here, and the caller's `updated_at` is its own clock): a lease that ran out only matters once
//! another worker claims the leg, and that claim replaces `lease_owner`, so the late worker's save is refused. Owner
//! names must therefore be unique per worker (e.g. a UUID per task). Applying an event leaves the lease alone but
//! bumps the version, so the worker holding the leg gets [`StoreError::Conflict`], reloads and decides again.
//!
//! **Batched intake.** [`Store::ingest`] is set-based: a batch of events becomes a few multi-row statements (inbox
//! rows with `ON CONFLICT DO NOTHING RETURNING`, one lookup of the touched legs, one upsert of them, the ledger
//! lines), each leg is folded through `apply_event` in memory, and the whole batch commits once.
//!
//! **Due legs.** The `due_at` column is when a worker may next claim a leg (NULL once done; `max(not_before,
//! lease_until)` for open/scheduled legs; `lease_until` for writing legs, which are reclaimed after a crash). Claiming
//! walks the claim-order index (deadline, not_before, due_at) and filters on that one column; [`Store::next_due`] is
//! one lookup in the `due_at` index. Times in indexed columns are integer
//! epoch milliseconds (truncated), the JSON record keeps full precision.

use crate::{ClaimedLeg, Ingested, LedgerEntry, LegFilter, OutcomeCounts, Store, StoreError, StoreResult};
use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use wrapup_core::catalog::Catalog;
use wrapup_core::lifecycle::{apply_event, LegRecord, LegState};
use wrapup_core::{Event, LegKey, Outcome};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache of the writer connection, in KiB as SQLite wants it (negative). Readers keep SQLite's 2 MiB default.
const WRITER_CACHE_KIB: &str = "-65536";
/// Reader connections of a file-backed store.
const READERS: u32 = 4;
/// `list_legs` without a limit returns at most this many legs (never the whole table).
pub const DEFAULT_LIST_LIMIT: u32 = 1000;
/// `expire_overdue` finishes legs in transactions of this many, so a large backlog never sits in memory at once.
const EXPIRE_CHUNK: i64 = 500;

/// The SQLite store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Backend(format!("migration failed: {e}"))
    }
}

impl SqliteStore {
    /// Opens (creating the file and its directory if needed) and migrates the database at `path`.
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Backend(format!("cannot create directory {}: {e}", dir.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: in WAL mode each commit fsyncs the WAL, which is what makes an acknowledgement durable.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Statement journals (multi-row upserts need them) stay in memory instead of temp files.
            .pragma("temp_store", "memory");
        // The writer gets a larger page cache: ingest looks legs up by key all over the table.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().pragma("cache_size", WRITER_CACHE_KIB))
            .await?;
        MIGRATOR.run(&writer).await?;
        let reader = SqlitePoolOptions::new().max_connections(READERS).connect_with(options).await?;
        Ok(SqliteStore { writer, reader })
    }

    /// A private in-memory database (for tests): gone when the store is dropped.
    pub async fn open_in_memory() -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?.busy_timeout(BUSY_TIMEOUT).foreign_keys(true);
        // One connection that never closes: another connection, or this one reopened, would be an empty database.
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { writer: pool.clone(), reader: pool })
    }

    /// Closes all connections (waits for them to finish). Dropping the store also closes them, in the background.
    pub async fn close(self) {
        self.reader.close().await;
        self.writer.close().await;
    }

    async fn write_tx(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("unreadable {what} in the database: {e}"))
}

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("cannot serialize {what}: {e}")))
}

fn decode_record(row: &SqliteRow) -> StoreResult<LegRecord> {
    let json: String = row.try_get("record")?;
    serde_json::from_str(&json).map_err(|e| corrupt("leg record", e))
}

/// When a worker may next claim `leg` (see the module docs), given its lease.
fn due_at(leg: &LegRecord, lease_until: Option<i64>) -> Option<i64> {
    match leg.state {
        LegState::Done => None,
        LegState::Open | LegState::Scheduled | LegState::Closing => {
            let not_before = ms(leg.not_before);
            Some(lease_until.map_or(not_before, |l| l.max(not_before)))
        }
        LegState::Writing => Some(lease_until.unwrap_or_else(|| ms(leg.updated_at))),
    }
}

/// The state of a leg row as a transaction found it.
struct Current {
    rowid: i64,
    version: i64,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
    record: LegRecord,
}

async fn load_current(tx: &mut Transaction<'static, Sqlite>, key: &LegKey) -> StoreResult<Option<Current>> {
    let row = sqlx::query(
        "SELECT rowid, version, lease_owner, lease_until, record FROM legs \
         WHERE connection = ?1 AND conversation = ?2 AND participant = ?3",
    )
    .bind(&key.connection)
    .bind(&key.conversation)
    .bind(&key.participant)
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|row| {
        Ok(Current {
            rowid: row.try_get("rowid")?,
            version: row.try_get("version")?,
            lease_owner: row.try_get("lease_owner")?,
            lease_until: row.try_get("lease_until")?,
            record: decode_record(&row)?,
        })
    })
    .transpose()
}

/// Writes `leg`'s content to an existing row, bumping its version, with the given lease.
async fn update_leg(
    tx: &mut Transaction<'static, Sqlite>,
    rowid: i64,
    leg: &LegRecord,
    lease: (Option<&str>, Option<i64>),
) -> StoreResult<i64> {
    let version: i64 = sqlx::query_scalar(
        "UPDATE legs SET state = ?1, not_before = ?2, deadline = ?3, due_at = ?4, lease_owner = ?5, \
         lease_until = ?6, outcome = ?7, updated_at = ?8, record = ?9, version = version + 1 \
         WHERE rowid = ?10 RETURNING version",
    )
    .bind(leg.state.as_str())
    .bind(ms(leg.not_before))
    .bind(leg.deadline.map(ms))
    .bind(due_at(leg, lease.1))
    .bind(lease.0)
    .bind(lease.1)
    .bind(leg.outcome.map(Outcome::as_str))
    .bind(ms(leg.updated_at))
    .bind(to_json("leg record", leg)?)
    .bind(rowid)
    .fetch_one(&mut **tx)
    .await?;
    Ok(version)
}

async fn insert_ledger(tx: &mut Transaction<'static, Sqlite>, key: &LegKey, entry: &LedgerEntry) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO ledger (connection, conversation, participant, at, kind, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(&key.connection)
    .bind(&key.conversation)
    .bind(&key.participant)
    .bind(entry.at.to_string())
    .bind(&entry.kind)
    .bind(to_json("ledger detail", &entry.detail)?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, events: &[Event], now: Timestamp) -> StoreResult<Vec<Ingested>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.write_tx().await?;
        let results = ingest_batch(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(results)
    }

    async fn claim_due(
        &self,
        now: Timestamp,
        limit: u32,
        owner: &str,
        lease: SignedDuration,
    ) -> StoreResult<Vec<ClaimedLeg>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let lease_until =
            now.checked_add(lease).map_err(|e| StoreError::Backend(format!("lease end out of range: {e}")))?;
        // One statement (in its own write transaction on the single writer connection): selecting and leasing cannot
        // interleave with another claim, so a leg goes to one owner.
        let rows = sqlx::query(
            "UPDATE legs SET lease_owner = ?1, lease_until = ?2, due_at = ?2 \
             WHERE rowid IN (SELECT rowid FROM legs WHERE due_at <= ?3 \
                             ORDER BY coalesce(deadline, 9223372036854775807), not_before LIMIT ?4) \
             RETURNING version, record",
        )
        .bind(owner)
        .bind(ms(lease_until))
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.writer)
        .await?;
        let mut claimed = rows
            .iter()
            .map(|row| Ok(ClaimedLeg { leg: decode_record(row)?, version: row.try_get("version")? }))
            .collect::<StoreResult<Vec<_>>>()?;
        // RETURNING has no defined order.
        claimed.sort_by_key(|c| (c.leg.deadline.is_none(), c.leg.deadline, c.leg.not_before));
        Ok(claimed)
    }

    async fn save_leg(&self, leg: &LegRecord, version: i64, owner: &str, release: bool) -> StoreResult<i64> {
        let mut tx = self.write_tx().await?;
        let cur = load_current(&mut tx, &leg.key).await?.ok_or_else(|| StoreError::NotFound(leg.key.to_string()))?;
        if cur.version != version || cur.lease_owner.as_deref() != Some(owner) {
            return Err(StoreError::Conflict(leg.key.to_string()));
        }
        let lease = if release { (None, None) } else { (Some(owner), cur.lease_until) };
        let new_version = update_leg(&mut tx, cur.rowid, leg, lease).await?;
        tx.commit().await?;
        Ok(new_version)
    }

    async fn release_all_leases(&self) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        // Same rule as `due_at()` without a lease: open/scheduled legs at `not_before`, writing legs at once.
        let done = sqlx::query(
            "UPDATE legs SET lease_owner = NULL, lease_until = NULL, \
             due_at = CASE state WHEN 'done' THEN NULL WHEN 'writing' THEN updated_at ELSE not_before END \
             WHERE lease_owner IS NOT NULL",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn release(&self, key: &LegKey, owner: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        let cur = load_current(&mut tx, key).await?.ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        // Releasing a lease someone else holds (or nobody) changes nothing.
        if cur.lease_owner.as_deref() == Some(owner) {
            sqlx::query("UPDATE legs SET lease_owner = NULL, lease_until = NULL, due_at = ?1 WHERE rowid = ?2")
                .bind(due_at(&cur.record, None))
                .bind(cur.rowid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn get_leg(&self, key: &LegKey) -> StoreResult<Option<ClaimedLeg>> {
        let row = sqlx::query(
            "SELECT version, record FROM legs WHERE connection = ?1 AND conversation = ?2 AND participant = ?3",
        )
        .bind(&key.connection)
        .bind(&key.conversation)
        .bind(&key.participant)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| Ok(ClaimedLeg { leg: decode_record(&row)?, version: row.try_get("version")? })).transpose()
    }

    /// Newest (`created_at`) first; without `filter.limit`, at most [`DEFAULT_LIST_LIMIT`] legs.
    async fn list_legs(&self, filter: &LegFilter) -> StoreResult<Vec<LegRecord>> {
        // Only fixed fragments are spliced in; every value is a bound parameter.
        let mut sql = String::from("SELECT record FROM legs WHERE 1 = 1");
        if filter.connection.is_some() {
            // `+connection`: keep the planner on `legs_created` (newest first, stops at the limit) instead of
            // fetching every leg of the connection through `legs_outcome` and sorting them.
            sql.push_str(" AND +connection = ?");
        }
        if filter.outcome.is_some() {
            sql.push_str(" AND outcome = ?");
        }
        if filter.open_only {
            sql.push_str(" AND state <> 'done'");
        }
        sql.push_str(" ORDER BY created_at DESC, rowid DESC LIMIT ?");
        let mut query = sqlx::query(&sql);
        if let Some(connection) = &filter.connection {
            query = query.bind(connection);
        }
        if let Some(outcome) = filter.outcome {
            query = query.bind(outcome.as_str());
        }
        let limit = filter.limit.unwrap_or(DEFAULT_LIST_LIMIT);
        let rows = query.bind(i64::from(limit)).fetch_all(&self.reader).await?;
        rows.iter().map(decode_record).collect()
    }

    async fn expire_overdue(&self, now: Timestamp) -> StoreResult<Vec<LegKey>> {
        let mut expired = Vec::new();
        loop {
            let mut tx = self.write_tx().await?;
            let rows = sqlx::query(
                "SELECT rowid, lease_owner, lease_until, record FROM legs \
                 WHERE state IN ('open', 'scheduled') AND deadline < ?1 \
                 AND json_extract(record, '$.intent') IS NULL LIMIT ?2",
            )
            .bind(ms(now))
            .bind(EXPIRE_CHUNK)
            .fetch_all(&mut *tx)
            .await?;
            let count = rows.len();
            for row in rows {
                let rowid: i64 = row.try_get("rowid")?;
                let lease_owner: Option<String> = row.try_get("lease_owner")?;
                let lease_until: Option<i64> = row.try_get("lease_until")?;
                let mut leg = decode_record(&row)?;
                let reason = "the ACW window closed before we acted";
                leg.finish(Outcome::Expired, Some(reason.to_string()), now);
                // A worker holding the lease keeps it until it releases; its save is refused by the version bump.
                update_leg(&mut tx, rowid, &leg, (lease_owner.as_deref(), lease_until)).await?;
                let entry = LedgerEntry {
                    at: now,
                    kind: "outcome".into(),
                    detail: serde_json::json!({
                        "outcome": Outcome::Expired.as_str(),
                        "reason": reason,
                    }),
                };
                insert_ledger(&mut tx, &leg.key, &entry).await?;
                expired.push(leg.key);
            }
            tx.commit().await?;
            if (count as i64) < EXPIRE_CHUNK {
                return Ok(expired);
            }
        }
    }

    /// The earliest time a leg becomes claimable: its `not_before`, or the end of another worker's lease on it.
    async fn next_due(&self) -> StoreResult<Option<Timestamp>> {
        // Not `min(due_at)`: this form provably walks the partial index `legs_due`.
        let due: Option<i64> =
            sqlx::query_scalar("SELECT due_at FROM legs WHERE due_at IS NOT NULL ORDER BY due_at LIMIT 1")
                .fetch_optional(&self.reader)
                .await?;
        due.map(|ms| Timestamp::from_millisecond(ms).map_err(|e| corrupt("due time", e))).transpose()
    }

    async fn append_ledger(&self, key: &LegKey, entry: &LedgerEntry) -> StoreResult<()> {
        let mut tx = self.writer.begin().await?;
        insert_ledger(&mut tx, key, entry).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ledger(&self, key: &LegKey) -> StoreResult<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT at, kind, detail FROM ledger \
             WHERE connection = ?1 AND conversation = ?2 AND participant = ?3 ORDER BY id",
        )
        .bind(&key.connection)
        .bind(&key.conversation)
        .bind(&key.participant)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let at: String = row.try_get("at")?;
                let detail: String = row.try_get("detail")?;
                Ok(LedgerEntry {
                    at: at.parse().map_err(|e| corrupt("ledger time", e))?,
                    kind: row.try_get("kind")?,
                    detail: serde_json::from_str(&detail).map_err(|e| corrupt("ledger detail", e))?,
                })
            })
            .collect()
    }

    /// Only outcomes that occur are present; `None` counts legs not finished.
    async fn outcome_counts(&self, connection: &str) -> StoreResult<OutcomeCounts> {
        let rows = sqlx::query("SELECT outcome, count(*) AS n FROM legs WHERE connection = ?1 GROUP BY outcome")
            .bind(connection)
            .fetch_all(&self.reader)
            .await?;
        let mut counts = OutcomeCounts::new();
        for row in rows {
            let outcome: Option<String> = row.try_get("outcome")?;
            let outcome = outcome.map(|s| Outcome::parse(&s).ok_or_else(|| corrupt("outcome", s))).transpose()?;
            let n: i64 = row.try_get("n")?;
            counts.insert(outcome, n.max(0) as u64);
        }
        Ok(counts)
    }

    async fn put_catalog(&self, connection: &str, catalog: &Catalog, fetched_at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO catalog_cache (connection, catalog, fetched_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (connection) DO UPDATE SET catalog = excluded.catalog, fetched_at = excluded.fetched_at",
        )
        .bind(connection)
        .bind(to_json("catalog", catalog)?)
        .bind(fetched_at.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn get_catalog(&self, connection: &str) -> StoreResult<Option<(Catalog, Timestamp)>> {
        let row = sqlx::query("SELECT catalog, fetched_at FROM catalog_cache WHERE connection = ?1")
            .bind(connection)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            let catalog: String = row.try_get("catalog")?;
            let fetched_at: String = row.try_get("fetched_at")?;
            Ok((
                serde_json::from_str(&catalog).map_err(|e| corrupt("catalog", e))?,
                fetched_at.parse().map_err(|e| corrupt("catalog fetch time", e))?,
            ))
        })
        .transpose()
    }

    /// Returns `(true, response)` when this call stored `response`, `(false, first)` when the key was used before.
    async fn idempotent(
        &self,
        connection: &str,
        key: &str,
        response: &serde_json::Value,
    ) -> StoreResult<(bool, serde_json::Value)> {
        let mut tx = self.write_tx().await?;
        let stored = sqlx::query(
            "INSERT INTO idempotency (connection, key, response, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (connection, key) DO NOTHING",
        )
        .bind(connection)
        .bind(key)
        .bind(to_json("idempotent response", response)?)
        .bind(ms(Timestamp::now()))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if stored {
            tx.commit().await?;
            return Ok((true, response.clone()));
        }
        let first: String = sqlx::query_scalar("SELECT response FROM idempotency WHERE connection = ?1 AND key = ?2")
            .bind(connection)
            .bind(key)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        let first = serde_json::from_str(&first).map_err(|e| corrupt("idempotent response", e))?;
        Ok((false, first))
    }
}

/// The body of [`Store::ingest`], set-based: rows travel in multi-row statements (`VALUES (?, …), (?, …)`), so a
/// batch of 500 costs a few dozen statements instead of four per event. Legs are loaded once, every new event is
/// applied in order in memory with `apply_event`, and each touched leg is written once, its version advanced by the
/// number of events applied to it. (Passing the batch as one JSON array through `json_each` costs more: SQLite then
/// spends a third of the time parsing JSON.)
async fn ingest_batch(
    tx: &mut Transaction<'static, Sqlite>,
    events: &[Event],
    now: Timestamp,
) -> StoreResult<Vec<Ingested>> {
    // 1. Inbox. RETURNING yields only the rows inserted; of several copies of one key in the batch, the first is.
    let payloads = events.iter().map(|e| to_json("event", e)).collect::<StoreResult<Vec<_>>>()?;
    let mut fresh = HashSet::with_capacity(events.len());
    let mut at = 0;
    for n in chunk_sizes(events.len()) {
        let sql = format!(
            "INSERT INTO inbox (connection, dedupe_key, conversation, participant, kind, occurred_at, received_at, \
             payload) VALUES {} ON CONFLICT (connection, dedupe_key) DO NOTHING RETURNING connection, dedupe_key",
            placeholders(n, 8)
        );
        let mut query = sqlx::query(&sql);
        for (e, payload) in events[at..at + n].iter().zip(&payloads[at..at + n]) {
            query = query
                .bind(&e.leg.connection)
                .bind(&e.dedupe_key)
                .bind(&e.leg.conversation)
                .bind(&e.leg.participant)
                .bind(e.kind.name())
                .bind(ms(e.occurred_at))
                .bind(ms(now))
                .bind(payload.as_str());
        }
        for row in query.fetch_all(&mut **tx).await? {
            fresh.insert((row.try_get::<String, _>("connection")?, row.try_get::<String, _>("dedupe_key")?));
        }
        at += n;
    }
    let results: Vec<Ingested> = events
        .iter()
        .map(|e| {
            // `remove`: a later copy of the same key in this batch is a duplicate.
            if fresh.remove(&(e.leg.connection.clone(), e.dedupe_key.clone())) {
                Ingested::New
            } else {
                Ingested::Duplicate
            }
        })
        .collect();
    let new_events: Vec<&Event> =
        events.iter().zip(&results).filter(|(_, r)| **r == Ingested::New).map(|(e, _)| e).collect();
    if new_events.is_empty() {
        return Ok(results);
    }

    // 2. The legs these events touch, as they are now.
    let mut legs: HashMap<&LegKey, Touched> = HashMap::new();
    let mut order: Vec<&LegKey> = Vec::new();
    for e in &new_events {
        if !legs.contains_key(&e.leg) {
            legs.insert(&e.leg, Touched::default());
            order.push(&e.leg);
        }
    }
    let mut at = 0;
    for n in chunk_sizes(order.len()) {
        let sql = format!(
            "SELECT l.connection, l.conversation, l.participant, l.version, l.lease_until, l.record \
             FROM (VALUES {}) AS w \
             JOIN legs AS l ON l.connection = w.column1 AND l.conversation = w.column2 \
                           AND l.participant = w.column3",
            placeholders(n, 3)
        );
        let mut query = sqlx::query(&sql);
        for k in &order[at..at + n] {
            query = query.bind(&k.connection).bind(&k.conversation).bind(&k.participant);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let key = LegKey::new(
                row.try_get::<String, _>("connection")?,
                row.try_get::<String, _>("conversation")?,
                row.try_get::<String, _>("participant")?,
            );
            if let Some(touched) = legs.get_mut(&key) {
                touched.version = row.try_get("version")?;
                touched.lease_until = row.try_get("lease_until")?;
                touched.leg = Some(decode_record(&row)?);
            }
        }
        at += n;
    }

    // 3. Apply every new event in order.
    let mut ledger = Vec::with_capacity(new_events.len());
    for e in &new_events {
        let touched =
            legs.get_mut(&e.leg).ok_or_else(|| StoreError::Backend(format!("leg {} missing from the batch", e.leg)))?;
        let (leg, effect) = apply_event(touched.leg.take(), e, now);
        touched.leg = Some(leg);
        touched.version += 1;
        let detail = event_entry(e, &effect.note, now).detail;
        ledger.push((&e.leg, to_json("ledger detail", &detail)?));
    }

    // 4. Write each touched leg once. An existing leg keeps its lease (a worker holding it keeps it, and its next
    // save is refused by the version bump); a new leg has none.
    let touched: Vec<(&LegRecord, &Touched, String)> = order
        .iter()
        .filter_map(|k| legs.get(k))
        .filter_map(|t| t.leg.as_ref().map(|leg| (leg, t)))
        .map(|(leg, t)| Ok((leg, t, to_json("leg record", leg)?)))
        .collect::<StoreResult<_>>()?;
    let mut at = 0;
    for n in chunk_sizes(touched.len()) {
        let sql = format!(
            "INSERT INTO legs (connection, conversation, participant, state, not_before, deadline, due_at, version, \
             outcome, created_at, updated_at, record) VALUES {} \
             ON CONFLICT (connection, conversation, participant) DO UPDATE SET \
               state = excluded.state, not_before = excluded.not_before, deadline = excluded.deadline, \
               due_at = excluded.due_at, version = excluded.version, outcome = excluded.outcome, \
               updated_at = excluded.updated_at, record = excluded.record",
            placeholders(n, 12)
        );
        let mut query = sqlx::query(&sql);
        for (leg, t, record) in &touched[at..at + n] {
            query = query
                .bind(&leg.key.connection)
                .bind(&leg.key.conversation)
                .bind(&leg.key.participant)
                .bind(leg.state.as_str())
                .bind(ms(leg.not_before))
                .bind(leg.deadline.map(ms))
                .bind(due_at(leg, t.lease_until))
                .bind(t.version)
                .bind(leg.outcome.map(Outcome::as_str))
                .bind(ms(leg.created_at))
                .bind(ms(leg.updated_at))
                .bind(record.as_str());
        }
        query.execute(&mut **tx).await?;
        at += n;
    }

    // 5. One `event` ledger line per applied event, in order.
    let now_text = now.to_string();
    let mut at = 0;
    for n in chunk_sizes(ledger.len()) {
        let sql = format!(
            "INSERT INTO ledger (connection, conversation, participant, at, kind, detail) VALUES {}",
            placeholders(n, 6)
        );
        let mut query = sqlx::query(&sql);
        for (key, detail) in &ledger[at..at + n] {
            query = query
                .bind(&key.connection)
                .bind(&key.conversation)
                .bind(&key.participant)
                .bind(now_text.as_str())
                .bind("event")
                .bind(detail.as_str());
        }
        query.execute(&mut **tx).await?;
        at += n;
    }
    Ok(results)
}

/// Rows per multi-row statement, largest first. A batch is cut greedily into these sizes, so only a few statement
/// texts exist per table and all of them stay in the connection's prepared-statement cache.
const CHUNKS: [usize; 7] = [64, 32, 16, 8, 4, 2, 1];

fn chunk_sizes(mut rows: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = CHUNKS.iter().copied().find(|&c| c <= rows)?;
        rows -= size;
        Some(size)
    })
}

/// `(?, ?), (?, ?)` for `rows` rows of `columns` parameters.
fn placeholders(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// A leg touched by an ingest batch: as loaded (`version` 0 and no record when new), then as the events leave it.
#[derive(Default)]
struct Touched {
    version: i64,
    lease_until: Option<i64>,
    leg: Option<LegRecord>,
}

/// The ledger line recording one applied event.
fn event_entry(event: &Event, note: &str, now: Timestamp) -> LedgerEntry {
    LedgerEntry {
        at: now,
        kind: "event".into(),
        detail: serde_json::json!({
            "event": event.kind.name(),
            "dedupe_key": event.dedupe_key,
            "occurred_at": event.occurred_at,
            "correlation_id": event.correlation_id,
            "note": note,
        }),
    }
}
