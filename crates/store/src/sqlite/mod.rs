//! [`Store`] on embedded SQLite (WAL), the default store: nothing to install, one file in the data directory.
//!
//! **Durability.** The database runs in WAL mode with `synchronous = FULL`: every commit fsyncs the WAL before it
//! returns, so when [`Store::ingest`] returns `Ok` the batch survives a crash or power loss (`NORMAL` would only
//! survive a process crash, and intake acknowledges events on the strength of this commit). The fsync is paid once per
//! batch, not per call: the frequent writes (intake, claims, saves, releases, ledger lines) of all callers waiting at
//! the same moment share one transaction, and each caller is answered after its commit ([`batch`]).
//!
//! **One writer.** SQLite allows one writer at a time, so exactly one connection writes: the writer thread's
//! ([`batch`]), a synchronous SQLite connection (rusqlite) on a thread of its own, with cached prepared statements.
//! Every write — the frequent ones and the rare ones (expiry, leases cleared at startup, catalog cache, idempotency
//! keys) — is an operation queued to it, so writers in this process never meet on SQLite's lock. Its transactions
//! start with `BEGIN IMMEDIATE`, so another process on the same file is serialized by the file lock (with
//! `busy_timeout`) rather than failing a lock upgrade halfway. Reads use a pool of sqlx connections and, thanks to
//! WAL, never wait for the writer. Migrations run on a connection of their own at open, before the writer starts.
//! (The writer was an sqlx connection until the fourth session; sqlx runs each statement on the connection's own
//! thread and hands it and every returned row across threads, and with the writes batched those hand-offs were most
//! of what limited intake; see docs/PERFORMANCE.md.)
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
//! **Batched intake.** A batch of events is recorded in one pass (`ingest.rs`): each event's dedupe key is looked
//! up and a new one inserted into the inbox, each touched leg is loaded once and folded through `apply_event` in
//! memory, written once, and each event gets its ledger line; all in the batch's one transaction.
//!
//! **Due legs.** The `due_at` column is when a worker may next claim a leg (NULL once done; `max(not_before,
//! lease_until)` for open/scheduled legs; `lease_until` for writing legs, which are reclaimed after a crash). Claiming
//! walks the claim-order index (deadline, not_before, due_at) and filters on that one column; [`Store::next_due`] is
//! one lookup in the `due_at` index. Times in indexed columns are integer
//! epoch milliseconds (truncated), the JSON record keeps full precision.

use crate::codec::{self, corrupt, to_json};
use crate::{
    ClaimedLeg, Ingested, LedgerEntry, LegFilter, Migrations, OutcomeCounts, OutcomeHook, Save, SchemaStatus, Store,
    StoreError, StoreResult,
};
// The row rules both stores share, for this module's parts.
pub(super) use crate::codec::{due_at, ms, parse_record};
use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use wrapup_core::catalog::Catalog;
use wrapup_core::lifecycle::{ExternalDecision, LegRecord};
use wrapup_core::{Event, LegKey};

mod batch;
mod ingest;
mod outbox;

pub use batch::WriteStats;
use batch::{Batcher, Op, OutboxAnswer, OutboxWork};

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a connection waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Page cache of the writer thread's connection, in KiB as SQLite wants it (negative). Other connections keep
/// SQLite's 2 MiB default.
pub(super) const WRITER_CACHE_KIB: &str = "-65536";
/// Reader connections of a file-backed store.
const READERS: u32 = 4;
/// `list_legs` without a limit returns at most this many legs (never the whole table).
pub const DEFAULT_LIST_LIMIT: u32 = 1000;
/// `expire_overdue` finishes legs this many per writer operation, so a large backlog never sits in memory at once
/// nor holds the writer for long.
const EXPIRE_CHUNK: i64 = 500;

/// The SQLite store. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    reader: SqlitePool,
    /// The frequent writes go through here, sharing commits (see [`batch`]).
    batcher: Batcher,
    /// The directory of a throwaway store, removed with the last handle.
    _temp: Option<Arc<tempfile::TempDir>>,
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
        Self::open_at(path, true, None, Migrations::Apply).await
    }

    /// [`SqliteStore::open`], with the schema migrated or only checked.
    pub async fn open_with(path: &Path, migrations: Migrations) -> StoreResult<SqliteStore> {
        Self::open_at(path, true, None, migrations).await
    }

    /// Migrates the database at `path` (creating it if needed) and returns its schema as it was before.
    pub async fn migrate(path: &Path) -> StoreResult<SchemaStatus> {
        let pool = SqlitePoolOptions::new().max_connections(1).connect_with(connect_options(path, true)?).await?;
        let before = SchemaStatus::of(&MIGRATOR, applied_versions(&pool).await?);
        MIGRATOR.run(&pool).await?;
        pool.close().await;
        Ok(before)
    }

    /// A private throwaway database (for tests): a file in a temporary directory, committed without fsync, removed
    /// when the last handle is dropped. (Not SQLite's `:memory:`: the writer thread needs a connection of its own
    /// to the same database.)
    pub async fn open_in_memory() -> StoreResult<SqliteStore> {
        let dir =
            tempfile::tempdir().map_err(|e| StoreError::Backend(format!("cannot create a temporary dir: {e}")))?;
        let path = dir.path().join("wrapup.db");
        Self::open_at(&path, false, Some(Arc::new(dir)), Migrations::Apply).await
    }

    async fn open_at(
        path: &Path,
        durable: bool,
        temp: Option<Arc<tempfile::TempDir>>,
        migrations: Migrations,
    ) -> StoreResult<SqliteStore> {
        let options = connect_options(path, durable)?;
        // Migrations run on a connection of their own before anything else writes; after that the writer thread
        // is the only writer, and these connections only read.
        let migrator = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await?;
        match migrations {
            Migrations::Apply => MIGRATOR.run(&migrator).await?,
            Migrations::Check => SchemaStatus::of(&MIGRATOR, applied_versions(&migrator).await?).require_current()?,
        }
        migrator.close().await;
        let reader = SqlitePoolOptions::new().max_connections(READERS).connect_with(options).await?;
        let batcher = Batcher::spawn(batch::open_writer(path, durable, BUSY_TIMEOUT)?)?;
        Ok(SqliteStore { reader, batcher, _temp: temp })
    }

    /// Closes all connections (waits for them to finish). Dropping the store also closes them, in the background.
    pub async fn close(self) {
        self.reader.close().await;
    }

    /// The reading connections (for [`crate::copy_sqlite_to_postgres`]).
    pub(crate) fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    /// Runs an outbox operation on the writer's thread (the database's one writer), answered after its commit.
    async fn outbox<T: Send + 'static>(
        &self,
        work: impl Fn(&rusqlite::Transaction<'_>) -> StoreResult<T> + Send + Sync + 'static,
    ) -> StoreResult<T> {
        let work: OutboxWork = Box::new(move |tx| work(tx).map(|v| Box::new(v) as OutboxAnswer));
        let answer = self.batcher.call(|reply| Op::Outbox { work, reply }).await?;
        answer.downcast::<T>().map(|b| *b).map_err(|_| StoreError::Backend("an outbox answer of another type".into()))
    }

    /// How many commits the frequent writes took, and how many operations they carried.
    pub fn write_stats(&self) -> WriteStats {
        self.batcher.stats()
    }
}

/// How every connection to the file at `path` is made (creating the file and its directory if needed).
fn connect_options(path: &Path, durable: bool) -> StoreResult<SqliteConnectOptions> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create directory {}: {e}", dir.display())))?;
    }
    Ok(SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: in WAL mode each commit fsyncs the WAL, which is what makes an acknowledgement durable.
        .synchronous(if durable { SqliteSynchronous::Full } else { SqliteSynchronous::Off })
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .pragma("temp_store", "memory"))
}

/// The migrations recorded as applied (none before the migrator first ran).
async fn applied_versions(pool: &SqlitePool) -> StoreResult<Vec<i64>> {
    let table: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'")
            .fetch_one(pool)
            .await?;
    if table == 0 {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?)
}

/// The legs `expire_overdue` finishes: open or scheduled, past their deadline (`?1`), and without a write intent (a
/// write may have been sent and landed; the worker reads the platform first). The `deadline` column orders work
/// ([`LegRecord::order_deadline`]); a leg with an estimated window end is not expired by it (its window may well be
/// open) but by its worker, which reads the window, or at its platform deadline when the worker is late.
const OVERDUE: &str = "state IN ('open', 'scheduled') AND deadline < ?1 AND json_extract(record, '$.intent') IS NULL \
                       AND json_extract(record, '$.estimated_deadline') IS NULL";

#[async_trait]
impl Store for SqliteStore {
    async fn ingest(&self, events: &[Event], now: Timestamp) -> StoreResult<Vec<Ingested>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.batcher.call(|reply| Op::Ingest { events: events.to_vec(), now, reply }).await
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
        let (now, lease_until, owner) = (ms(now), ms(lease_until), owner.to_string());
        self.batcher.call(|reply| Op::Claim { now, limit, owner, lease_until, reply }).await
    }

    async fn save(&self, save: Save<'_>) -> StoreResult<i64> {
        let (leg, owner, lines) = (Box::new(save.leg.clone()), save.owner.to_string(), save.lines.to_vec());
        let (version, release, stored_outcome) = (save.version, save.release, save.stored_outcome);
        self.batcher.call(|reply| Op::Save { leg, version, owner, release, lines, stored_outcome, reply }).await
    }

    fn watch_outcomes(&self, hook: OutcomeHook) {
        self.batcher.watch_outcomes(hook);
    }

    async fn release_all_leases(&self) -> StoreResult<u64> {
        self.batcher.call(|reply| Op::ReleaseAll { reply }).await
    }

    async fn release(&self, key: &LegKey, owner: &str) -> StoreResult<()> {
        let (key, owner) = (key.clone(), owner.to_string());
        self.batcher.call(|reply| Op::Release { key, owner, reply }).await
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
        row.as_ref().map(codec::claimed).transpose()
    }

    /// Newest (`created_at`) first; without `filter.limit`, at most [`DEFAULT_LIST_LIMIT`] legs.
    async fn list_legs(&self, filter: &LegFilter) -> StoreResult<Vec<LegRecord>> {
        let (sql, binds) = crate::leg_query::list_legs(filter, crate::leg_query::Dialect::Sqlite, DEFAULT_LIST_LIMIT);
        let rows = crate::leg_query::bound(&sql, binds).fetch_all(&self.reader).await?;
        rows.iter().map(codec::record).collect()
    }

    async fn legs_since(
        &self,
        since: Option<Timestamp>,
        after: Option<&LegRecord>,
        limit: u32,
    ) -> StoreResult<Vec<LegRecord>> {
        // `created_at >= ?` first so that the walk is a range on `legs_created`; the row value breaks ties.
        let mut sql = String::from("SELECT record FROM legs WHERE created_at >= ?");
        if after.is_some() {
            sql.push_str(" AND (created_at, connection, conversation, participant) > (?, ?, ?, ?)");
        }
        sql.push_str(" ORDER BY created_at, connection, conversation, participant LIMIT ?");
        let from = match (since, after) {
            (_, Some(leg)) => codec::ms(leg.created_at).max(since.map_or(i64::MIN, codec::ms)),
            (Some(since), None) => codec::ms(since),
            (None, None) => i64::MIN,
        };
        let mut query = sqlx::query(&sql).bind(from);
        if let Some(leg) = after {
            query = query
                .bind(codec::ms(leg.created_at))
                .bind(&leg.key.connection)
                .bind(&leg.key.conversation)
                .bind(&leg.key.participant);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.reader).await?;
        rows.iter().map(codec::record).collect()
    }

    async fn review_legs(&self, filter: &crate::ReviewFilter) -> StoreResult<Vec<LegRecord>> {
        let (sql, binds) = crate::leg_query::review_legs(filter, crate::leg_query::Dialect::Sqlite);
        let rows = crate::leg_query::bound(&sql, binds).fetch_all(&self.reader).await?;
        rows.iter().map(codec::record).collect()
    }

    async fn review_count(&self, connection: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM legs WHERE connection = ?1 AND outcome = 'review' AND state = 'done' \
             AND coalesce(json_extract(record, '$.resolution.action'), 'written') = 'written'",
        )
        .bind(connection)
        .fetch_one(&self.reader)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn expire_overdue(&self, now: Timestamp) -> StoreResult<Vec<LegKey>> {
        let mut expired = Vec::new();
        // Looked up on a reader first: the sweep runs twice a second, and taking the write lock only to find nothing
        // would make the writer thread wait for it.
        let any: Option<i64> = sqlx::query_scalar(&format!("SELECT 1 FROM legs WHERE {OVERDUE} LIMIT 1"))
            .bind(ms(now))
            .fetch_optional(&self.reader)
            .await?;
        if any.is_none() {
            return Ok(expired);
        }
        loop {
            let chunk = self.batcher.call(|reply| Op::Expire { now, reply }).await?;
            let count = chunk.len();
            expired.extend(chunk);
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

    async fn count_ledger_lines(&self, connection: &str, kind: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE connection = ?1 AND kind = ?2")
            .bind(connection)
            .bind(kind)
            .fetch_one(&self.reader)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn append_ledger(&self, key: &LegKey, entry: &LedgerEntry) -> StoreResult<()> {
        let (key, entry) = (key.clone(), entry.clone());
        self.batcher.call(|reply| Op::Ledger { key, entry, reply }).await
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
        rows.iter().map(codec::ledger_entry).collect()
    }

    async fn attempt_counts(&self, legs: &[LegKey]) -> StoreResult<std::collections::HashMap<LegKey, u64>> {
        let mut counts = std::collections::HashMap::new();
        // A bounded number of legs per query keeps it under every backend's limit on parameters.
        for chunk in legs.chunks(1000) {
            let Some((sql, binds)) = crate::leg_query::attempt_counts(chunk, crate::leg_query::Dialect::Sqlite) else {
                continue;
            };
            for row in crate::leg_query::bound(&sql, binds).fetch_all(&self.reader).await? {
                let key = LegKey::new(
                    sqlx::Row::try_get::<String, _>(&row, 0)?,
                    sqlx::Row::try_get::<String, _>(&row, 1)?,
                    sqlx::Row::try_get::<String, _>(&row, 2)?,
                );
                counts.insert(key, sqlx::Row::try_get::<i64, _>(&row, 3)?.max(0) as u64);
            }
        }
        Ok(counts)
    }

    /// Only outcomes that occur are present; `None` counts legs not finished.
    async fn outcome_counts(&self, connection: &str) -> StoreResult<OutcomeCounts> {
        let rows = sqlx::query("SELECT outcome, count(*) AS n FROM legs WHERE connection = ?1 GROUP BY outcome")
            .bind(connection)
            .fetch_all(&self.reader)
            .await?;
        let mut counts = OutcomeCounts::new();
        for row in &rows {
            codec::add_outcome_count(&mut counts, row)?;
        }
        Ok(counts)
    }

    async fn put_catalog(&self, connection: &str, catalog: &Catalog, fetched_at: Timestamp) -> StoreResult<()> {
        let (connection, catalog, fetched_at) =
            (connection.to_string(), to_json("catalog", catalog)?, fetched_at.to_string());
        self.batcher.call(|reply| Op::PutCatalog { connection, catalog, fetched_at, reply }).await
    }

    async fn get_catalog(&self, connection: &str) -> StoreResult<Option<(Catalog, Timestamp)>> {
        let row = sqlx::query("SELECT catalog, fetched_at FROM catalog_cache WHERE connection = ?1")
            .bind(connection)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(codec::cached_catalog).transpose()
    }

    async fn append_catalog_audit(&self, line: &crate::CatalogAuditLine) -> StoreResult<()> {
        let line = crate::CatalogAuditLine { ..line.clone() };
        let body = to_json("catalog audit line", &line.body)?;
        self.batcher.call(|reply| Op::CatalogAudit { line, body, reply }).await
    }

    async fn catalog_audit(&self, connection: &str, since: Timestamp) -> StoreResult<Vec<crate::CatalogAuditLine>> {
        let rows = sqlx::query(
            "SELECT connection, apply_id, seq, at, actor, kind, body FROM catalog_audit \
             WHERE connection = ?1 AND at >= ?2 ORDER BY at, apply_id, seq",
        )
        .bind(connection)
        .bind(since.as_millisecond())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(codec::catalog_audit_line).collect()
    }

    async fn legs_of_conversation(&self, connection: &str, conversation: &str) -> StoreResult<Vec<LegRecord>> {
        let rows = sqlx::query(
            "SELECT record FROM legs WHERE connection = ?1 AND conversation = ?2 ORDER BY participant LIMIT 1000",
        )
        .bind(connection)
        .bind(conversation)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(codec::record).collect()
    }

    async fn put_pending_decision(
        &self,
        connection: &str,
        conversation: &str,
        participant: Option<&str>,
        decision: &ExternalDecision,
    ) -> StoreResult<()> {
        let (connection, conversation) = (connection.to_string(), conversation.to_string());
        let participant = participant.unwrap_or_default().to_string();
        let (arrived_at, decision) = (ms(decision.arrived_at), to_json("pending decision", decision)?);
        self.batcher
            .call(|reply| Op::PendingDecision { connection, conversation, participant, arrived_at, decision, reply })
            .await
    }

    async fn pending_decision(&self, key: &LegKey) -> StoreResult<Option<ExternalDecision>> {
        // The participant's own sorts after the conversation's ('').
        let text: Option<String> = sqlx::query_scalar(
            "SELECT decision FROM pending_decisions WHERE connection = ?1 AND conversation = ?2 \
             AND participant IN (?3, '') ORDER BY participant DESC LIMIT 1",
        )
        .bind(&key.connection)
        .bind(&key.conversation)
        .bind(&key.participant)
        .fetch_optional(&self.reader)
        .await?;
        codec::from_json_opt(text, "pending decision")
    }

    async fn idempotency_answer(&self, connection: &str, key: &str) -> StoreResult<Option<serde_json::Value>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT response FROM idempotency WHERE connection = ?1 AND key = ?2")
                .bind(connection)
                .bind(key)
                .fetch_optional(&self.reader)
                .await?;
        codec::from_json_opt(text, "idempotent response")
    }

    /// Returns `(true, response)` when this call stored `response`, `(false, first)` when the key was used before.
    async fn idempotent(
        &self,
        connection: &str,
        key: &str,
        response: &serde_json::Value,
    ) -> StoreResult<(bool, serde_json::Value)> {
        let (connection, key) = (connection.to_string(), key.to_string());
        let response = to_json("idempotent response", response)?;
        let (stored, first) = self.batcher.call(|reply| Op::Idempotent { connection, key, response, reply }).await?;
        let first = serde_json::from_str(&first).map_err(|e| corrupt("idempotent response", e))?;
        Ok((stored, first))
    }

    async fn outbox_unrouted(&self, limit: u32) -> StoreResult<Vec<crate::OutboxMessage>> {
        self.outbox(move |tx| outbox::unrouted(tx, limit)).await
    }

    async fn outbox_route(&self, routes: &[crate::Route], now: Timestamp) -> StoreResult<()> {
        let routes = routes.to_vec();
        self.outbox(move |tx| outbox::route(tx, &routes, now)).await
    }

    async fn outbox_claim(
        &self,
        sink: &str,
        now: Timestamp,
        limit: u32,
        owner: &str,
        lease: SignedDuration,
    ) -> StoreResult<Vec<crate::Delivery>> {
        let until = now.checked_add(lease).map_err(|e| StoreError::Backend(format!("lease end out of range: {e}")))?;
        let (sink, owner) = (sink.to_string(), owner.to_string());
        self.outbox(move |tx| outbox::claim(tx, &sink, ms(now), limit, &owner, ms(until))).await
    }

    async fn outbox_record(&self, owner: &str, attempts: &[crate::Attempted]) -> StoreResult<u64> {
        let (owner, attempts) = (owner.to_string(), attempts.to_vec());
        self.outbox(move |tx| outbox::record(tx, &owner, &attempts)).await
    }

    async fn outbox_next_due(&self, sink: &str) -> StoreResult<Option<Timestamp>> {
        let sink = sink.to_string();
        self.outbox(move |tx| outbox::next_due(tx, &sink)).await
    }

    async fn outbox_list(&self, filter: &crate::DeliveryFilter) -> StoreResult<Vec<crate::Delivery>> {
        let filter = filter.clone();
        self.outbox(move |tx| outbox::list(tx, &filter)).await
    }

    async fn outbox_messages(&self, leg: Option<&LegKey>, limit: u32) -> StoreResult<Vec<crate::OutboxMessage>> {
        let leg = leg.cloned();
        self.outbox(move |tx| outbox::messages(tx, leg.as_ref(), limit)).await
    }

    async fn outbox_resend(&self, what: &crate::Resend, now: Timestamp, until: Timestamp) -> StoreResult<u64> {
        let what = what.clone();
        self.outbox(move |tx| outbox::resend(tx, &what, now, until)).await
    }

    async fn outbox_counts(&self) -> StoreResult<crate::DeliveryCounts> {
        self.outbox(outbox::counts).await
    }

    async fn outbox_sinks(&self) -> StoreResult<Vec<crate::SinkState>> {
        self.outbox(outbox::sinks).await
    }

    async fn outbox_set_sink(&self, state: &crate::SinkState) -> StoreResult<()> {
        let state = state.clone();
        self.outbox(move |tx| outbox::set_sink(tx, &state)).await
    }
}
