//! [`Store`] on PostgreSQL, for several `wrapup serve` replicas sharing one database.
//!
//! **Schema.** The tables and columns of the SQLite store (`migrations/postgres/`, run at [`PostgresStore::connect`]
//! by sqlx's migrator, which holds an advisory lock while it runs so replicas starting together migrate once):
//! `inbox` unique by `(connection, dedupe_key)`; `legs` keyed by `(connection, conversation, participant)` with the
//! full record as JSON text in `record` and copies of what queries filter and sort on (`state`, `not_before`,
//! `deadline` = [`LegRecord::order_deadline`], `due_at`, the lease, `version`, `outcome`); the append-only `ledger`;
//! `catalog_cache`; `idempotency`. Times in indexed columns are epoch milliseconds (truncated); the JSON and the
//! ledger's text times keep full precision.
//!
//! **Durability.** Every call is one transaction committed before it returns (there is no batching across callers),
//! so when [`Store::ingest`] returns `Ok` its events are committed; how durable a commit is, is the server's
//! `synchronous_commit`, which must stay `on` (its default).
//!
//! **Claims, leases and versions.** Every change to a leg's content (an event applied, a worker's save, expiry)
//! bumps `version`. Claiming only sets the lease (`lease_owner`, `lease_until`) and does not bump the version: the
//! lease keeps other workers away, the version tells a worker that the leg changed under it. A save must present
//! the version it read *and* still be the lease owner (`lease_owner = owner`; `lease_until` is not compared with a
//! clock: a lease that ran out matters once another worker claims the leg, and that claim replaces `lease_owner`).
//! Owner names must be unique per worker. An event leaves the lease alone and bumps the version, so the worker
//! holding the leg gets [`StoreError::Conflict`], reloads and decides again. A save is one `UPDATE … WHERE version =
//! $v AND lease_owner = $owner`: under READ COMMITTED a save racing an event waits for the event's row lock and then
//! re-checks its `WHERE` against the committed row, so it is refused, never lost.
//!
//! **The claim query.** `due_at` is when a worker may next claim a leg (NULL once done; `greatest(not_before,
//! lease_until)` for open/scheduled/closing/confirming legs; `lease_until` for writing legs, which are reclaimed
//! after a crash). A claim is one statement:
//!
//! ```sql
//! WITH picked AS MATERIALIZED (
//!     SELECT id FROM legs WHERE due_at <= $now
//!     ORDER BY coalesce(deadline, 9223372036854775807), not_before LIMIT $limit
//!     FOR UPDATE SKIP LOCKED)
//! UPDATE legs SET lease_owner = $owner, lease_until = $until, due_at = $until
//! FROM picked WHERE legs.id = picked.id RETURNING version, record
//! ```
//!
//! `SKIP LOCKED` passes over rows another transaction holds (another claim, a save, an event being applied), so
//! claimers in any number of processes never wait for each other and never take the same leg: a row is leased only
//! by the transaction that locked it, and one that another claim leased and committed in the meantime is re-checked
//! (`due_at` is now the new lease's end) and dropped. The CTE is materialized so the locking subquery runs once.
//! Legs without a deadline sort last; `RETURNING` has no order, so the claimed legs are sorted again in memory.
//!
//! **Intake** (`ingest.rs`): one transaction per call. New dedupe keys are inserted with `ON CONFLICT DO NOTHING`
//! (a concurrent call inserting the same key waits for the other and then sees it as a duplicate); the touched legs
//! are locked with `SELECT … FOR UPDATE`, folded through `apply_event` in memory and written once each, with one
//! `event` ledger line per event (and the leg's `outcome` line when an event ends it). Locks are taken in one order
//! (inbox keys, then legs by key) so concurrent calls do not deadlock. A leg that does not exist yet cannot be
//! locked; if another call creates it first, this call's insert finds it, the transaction is rolled back and run
//! again (now finding and locking the leg).
//!
//! **Outcome hook.** Every write that can end a leg (intake, a save, expiry) collects the [`OutcomeChange`]s of its
//! transaction and reports them to the hook after the commit, once each.
//!
//! **Expiry and `release_all_leases`** lock the rows they change in key order, like intake, and wait for rows
//! another transaction holds (then re-check them), so two replicas sweeping together expire each leg once.

use crate::codec::{self, corrupt, to_json};
use crate::{
    ClaimedLeg, Ingested, LedgerEntry, LegFilter, Migrations, OutcomeChange, OutcomeCounts, OutcomeHook, Save,
    SchemaStatus, Store, StoreError, StoreResult, DEFAULT_LIST_LIMIT,
};
// The row rules both stores share, for this module's parts.
pub(super) use crate::codec::{due_at, ms, parse_record};
use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use wrapup_core::catalog::Catalog;
use wrapup_core::lifecycle::{ExternalDecision, LegRecord};
use wrapup_core::{Event, LegKey};

mod budget;
mod ingest;
mod leases;
mod outbox;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per store (per process).
const MAX_CONNECTIONS: u32 = 16;
/// How long a call waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);
/// `expire_overdue` finishes legs this many per transaction, so a large backlog never sits in memory at once nor
/// holds its row locks for long.
const EXPIRE_CHUNK: i64 = 500;

/// The PostgreSQL store. Cheap to clone (a pool and the hook); all methods take `&self`.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    hook: SharedHook,
}

/// The outcome hook, read after each commit that changed an outcome.
type SharedHook = Arc<RwLock<Option<OutcomeHook>>>;

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("pool", &self.pool).finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and migrates it. Errors
    /// never contain the URL's password.
    pub async fn connect(url: &str) -> StoreResult<PostgresStore> {
        Self::connect_with(url, Migrations::Apply).await
    }

    /// [`PostgresStore::connect`], with the schema migrated or only checked.
    pub async fn connect_with(url: &str, migrations: Migrations) -> StoreResult<PostgresStore> {
        let pool = pool(url, MAX_CONNECTIONS).await?;
        match migrations {
            Migrations::Apply => {
                MIGRATOR.run(&pool).await.map_err(|e| redacted(url, "migration failed", &e))?;
            }
            Migrations::Check => SchemaStatus::of(&MIGRATOR, applied_versions(&pool).await?).require_current()?,
        }
        Ok(PostgresStore { pool, hook: SharedHook::default() })
    }

    /// Migrates the database at `url` and returns its schema as it was before. The migrator holds an advisory lock
    /// while it runs, so replicas starting meanwhile wait instead of migrating too.
    pub async fn migrate(url: &str) -> StoreResult<SchemaStatus> {
        let pool = pool(url, 1).await?;
        let before = SchemaStatus::of(&MIGRATOR, applied_versions(&pool).await?);
        MIGRATOR.run(&pool).await.map_err(|e| redacted(url, "migration failed", &e))?;
        pool.close().await;
        Ok(before)
    }

    /// Creates the database `name` on the server of `server_url` (connecting to the database that URL names) and
    /// returns the URL of the new one. For harnesses that give each run a database of its own.
    pub async fn create_database(server_url: &str, name: &str) -> StoreResult<String> {
        on_server(server_url, &format!("CREATE DATABASE \"{}\"", name.replace('"', "")), "create the database").await?;
        let mut url = url::Url::parse(server_url).map_err(|e| redacted(server_url, "invalid PostgreSQL URL", &e))?;
        url.set_path(name);
        Ok(url.to_string())
    }

    /// Drops the database `name` on the server of `server_url`, even with connections still open to it.
    pub async fn drop_database(server_url: &str, name: &str) -> StoreResult<()> {
        let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", name.replace('"', ""));
        on_server(server_url, &sql, "drop the database").await
    }

    /// The connection pool (for [`crate::copy_sqlite_to_postgres`]).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes all connections (waits for them to finish). Dropping the store also closes them, in the background.
    pub async fn close(self) {
        self.pool.close().await;
    }

    /// Reports the outcome changes of a committed transaction to the hook.
    fn report(&self, changes: &[OutcomeChange]) {
        if changes.is_empty() {
            return;
        }
        let hook = self.hook.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(hook) = hook {
            changes.iter().for_each(|c| hook(c));
        }
    }
}

async fn pool(url: &str, connections: u32) -> StoreResult<PgPool> {
    let options = PgConnectOptions::from_str(url).map_err(|e| redacted(url, "invalid PostgreSQL URL", &e))?;
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(|e| redacted(url, "cannot connect to PostgreSQL", &e))
}

/// Runs one statement that cannot run in a transaction (`CREATE`/`DROP DATABASE`) on its own connection.
async fn on_server(server_url: &str, sql: &str, what: &str) -> StoreResult<()> {
    let pool = pool(server_url, 1).await?;
    let done = sqlx::query(sql).execute(&pool).await.map_err(|e| redacted(server_url, &format!("cannot {what}"), &e));
    pool.close().await;
    done.map(|_| ())
}

fn redacted(url: &str, what: &str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Backend(redact_password(url, &format!("{what}: {e}")))
}

/// The migrations recorded as applied (none before the migrator first ran).
async fn applied_versions(pool: &PgPool) -> StoreResult<Vec<i64>> {
    let table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(pool).await?;
    if !table {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?)
}

/// `message` with the password of `url` (as written, and percent-decoded) replaced by `***`. sqlx's errors do not
/// quote the URL today; this keeps it so should one ever do.
fn redact_password(url: &str, message: &str) -> String {
    let Some(password) = url_password(url) else { return message.to_string() };
    let mut redacted = message.replace(password, "***");
    let decoded = percent_decode(password);
    if !decoded.is_empty() {
        redacted = redacted.replace(&decoded, "***");
    }
    redacted
}

/// The password part of `scheme://user:password@host/…`, if any (not empty).
fn url_password(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The legs `expire_overdue` finishes: open or scheduled, past their deadline (`$1`), without a write intent (a
/// write may have been sent and landed; the worker reads the platform first) and without an estimated window end
/// (its window may well be open; its worker reads it, or the platform deadline expires it when the worker is
/// late). `->>` is NULL both for a missing key and for JSON `null`.
const OVERDUE: &str = "state IN ('open', 'scheduled') AND deadline < $1 AND (record::jsonb ->> 'intent') IS NULL \
                       AND (record::jsonb ->> 'estimated_deadline') IS NULL";

#[async_trait]
impl Store for PostgresStore {
    async fn ingest(&self, events: &[Event], now: Timestamp) -> StoreResult<Vec<Ingested>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (results, changes) = ingest::ingest(&self.pool, events, now).await?;
        self.report(&changes);
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
        leases::claim(&self.pool, ms(now), limit, owner, ms(lease_until)).await
    }

    async fn save(&self, save: Save<'_>) -> StoreResult<i64> {
        let version = leases::save(&self.pool, &save).await?;
        if save.leg.outcome.is_some() && save.leg.outcome != save.stored_outcome {
            self.report(&[OutcomeChange { leg: save.leg.clone(), from: save.stored_outcome }]);
        }
        Ok(version)
    }

    fn watch_outcomes(&self, hook: OutcomeHook) {
        *self.hook.write().unwrap_or_else(|e| e.into_inner()) = Some(hook);
    }

    async fn renew_leases(&self, owner: &str, keys: &[LegKey], until: Timestamp) -> StoreResult<u64> {
        leases::renew(&self.pool, owner, keys, ms(until)).await
    }

    async fn release_all_leases(&self) -> StoreResult<u64> {
        leases::release_all(&self.pool).await
    }

    async fn release(&self, key: &LegKey, owner: &str) -> StoreResult<()> {
        leases::release(&self.pool, key, owner).await
    }

    async fn get_leg(&self, key: &LegKey) -> StoreResult<Option<ClaimedLeg>> {
        let row = sqlx::query(
            "SELECT version, record FROM legs WHERE connection = $1 AND conversation = $2 AND participant = $3",
        )
        .bind(&key.connection)
        .bind(&key.conversation)
        .bind(&key.participant)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(codec::claimed).transpose()
    }

    /// Newest (`created_at`) first; without `filter.limit`, at most [`DEFAULT_LIST_LIMIT`] legs.
    async fn list_legs(&self, filter: &LegFilter) -> StoreResult<Vec<LegRecord>> {
        let (sql, binds) = crate::leg_query::list_legs(filter, crate::leg_query::Dialect::Postgres, DEFAULT_LIST_LIMIT);
        let rows = crate::leg_query::bound(&sql, binds).fetch_all(&self.pool).await?;
        rows.iter().map(codec::record).collect()
    }

    async fn legs_since(
        &self,
        since: Option<Timestamp>,
        after: Option<&LegRecord>,
        limit: u32,
    ) -> StoreResult<Vec<LegRecord>> {
        // `created_at >= $1` first so that the walk is a range on `legs_created`; the row value breaks ties.
        let mut sql = String::from("SELECT record FROM legs WHERE created_at >= $1");
        if after.is_some() {
            sql.push_str(" AND (created_at, connection, conversation, participant) > ($2, $3, $4, $5)");
        }
        sql.push_str(" ORDER BY created_at, connection, conversation, participant LIMIT ");
        sql.push_str(if after.is_some() { "$6" } else { "$2" });
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
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
        rows.iter().map(codec::record).collect()
    }

    async fn review_legs(&self, filter: &crate::ReviewFilter) -> StoreResult<Vec<LegRecord>> {
        let (sql, binds) = crate::leg_query::review_legs(filter, crate::leg_query::Dialect::Postgres);
        let rows = crate::leg_query::bound(&sql, binds).fetch_all(&self.pool).await?;
        rows.iter().map(codec::record).collect()
    }

    async fn review_count(&self, connection: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM legs WHERE connection = $1 AND outcome = 'review' AND state = 'done' \
             AND coalesce(record::jsonb #>> '{resolution,action}', 'written') = 'written'",
        )
        .bind(connection)
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn expire_overdue(&self, now: Timestamp) -> StoreResult<Vec<LegKey>> {
        let mut expired = Vec::new();
        loop {
            let (chunk, changes) = leases::expire(&self.pool, now, EXPIRE_CHUNK).await?;
            self.report(&changes);
            let count = chunk.len();
            expired.extend(chunk);
            if (count as i64) < EXPIRE_CHUNK {
                return Ok(expired);
            }
        }
    }

    /// The earliest time a leg becomes claimable: its `not_before`, or the end of another worker's lease on it.
    async fn next_due(&self) -> StoreResult<Option<Timestamp>> {
        let due: Option<i64> =
            sqlx::query_scalar("SELECT due_at FROM legs WHERE due_at IS NOT NULL ORDER BY due_at LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        due.map(|ms| Timestamp::from_millisecond(ms).map_err(|e| corrupt("due time", e))).transpose()
    }

    async fn append_ledger(&self, key: &LegKey, entry: &LedgerEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO ledger (connection, conversation, participant, at, kind, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.connection)
        .bind(&key.conversation)
        .bind(&key.participant)
        .bind(entry.at.to_string())
        .bind(&entry.kind)
        .bind(to_json("ledger detail", &entry.detail)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn ledger(&self, key: &LegKey) -> StoreResult<Vec<LedgerEntry>> {
        let rows = sqlx::query(
            "SELECT at, kind, detail FROM ledger \
             WHERE connection = $1 AND conversation = $2 AND participant = $3 ORDER BY id",
        )
        .bind(&key.connection)
        .bind(&key.conversation)
        .bind(&key.participant)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(codec::ledger_entry).collect()
    }

    async fn attempt_counts(&self, legs: &[LegKey]) -> StoreResult<std::collections::HashMap<LegKey, u64>> {
        let mut counts = std::collections::HashMap::new();
        // A bounded number of legs per query keeps it under every backend's limit on parameters.
        for chunk in legs.chunks(1000) {
            let Some((sql, binds)) = crate::leg_query::attempt_counts(chunk, crate::leg_query::Dialect::Postgres)
            else {
                continue;
            };
            for row in crate::leg_query::bound(&sql, binds).fetch_all(&self.pool).await? {
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
        let rows = sqlx::query("SELECT outcome, count(*) AS n FROM legs WHERE connection = $1 GROUP BY outcome")
            .bind(connection)
            .fetch_all(&self.pool)
            .await?;
        let mut counts = OutcomeCounts::new();
        for row in &rows {
            codec::add_outcome_count(&mut counts, row)?;
        }
        Ok(counts)
    }

    async fn count_ledger_lines(&self, connection: &str, kind: &str) -> StoreResult<u64> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger WHERE connection = $1 AND kind = $2")
            .bind(connection)
            .bind(kind)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    async fn put_catalog(&self, connection: &str, catalog: &Catalog, fetched_at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO catalog_cache (connection, catalog, fetched_at) VALUES ($1, $2, $3) \
             ON CONFLICT (connection) DO UPDATE SET catalog = excluded.catalog, fetched_at = excluded.fetched_at",
        )
        .bind(connection)
        .bind(to_json("catalog", catalog)?)
        .bind(fetched_at.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get_catalog(&self, connection: &str) -> StoreResult<Option<(Catalog, Timestamp)>> {
        let row = sqlx::query("SELECT catalog, fetched_at FROM catalog_cache WHERE connection = $1")
            .bind(connection)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(codec::cached_catalog).transpose()
    }

    async fn append_catalog_audit(&self, line: &crate::CatalogAuditLine) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO catalog_audit (connection, apply_id, seq, at, actor, kind, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&line.connection)
        .bind(&line.apply_id)
        .bind(line.seq)
        .bind(ms(line.at))
        .bind(&line.actor)
        .bind(&line.kind)
        .bind(to_json("catalog audit line", &line.body)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn catalog_audit(&self, connection: &str, since: Timestamp) -> StoreResult<Vec<crate::CatalogAuditLine>> {
        let rows = sqlx::query(
            "SELECT connection, apply_id, seq, at, actor, kind, body FROM catalog_audit \
             WHERE connection = $1 AND at >= $2 ORDER BY at, apply_id, seq",
        )
        .bind(connection)
        .bind(ms(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(codec::catalog_audit_line).collect()
    }

    async fn share_budget(
        &self,
        connection: &str,
        owner: &str,
        usage: &[crate::CredentialUsage],
        lease: Duration,
    ) -> StoreResult<Option<Vec<u32>>> {
        budget::share_budget(&self.pool, connection, owner, usage, lease).await.map(Some)
    }

    /// One statement: the insert takes a job nobody held; the conditional update takes one whose lease ran out or
    /// renews the owner's own. Concurrent callers serialize on the row, and the one that finds it held gets no row.
    async fn lead(&self, job: &str, owner: &str, now: Timestamp, lease: SignedDuration) -> StoreResult<bool> {
        let until = now.checked_add(lease).map_err(|e| StoreError::Backend(format!("lease end: {e}")))?;
        let led = sqlx::query(
            "INSERT INTO jobs (job, owner, lease_until) VALUES ($1, $2, $4) \
             ON CONFLICT (job) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until \
             WHERE jobs.owner = excluded.owner OR jobs.lease_until <= $3",
        )
        .bind(job)
        .bind(owner)
        .bind(ms(now))
        .bind(ms(until))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(led == 1)
    }

    /// Returns `(true, response)` when this call stored `response`, `(false, first)` when the key was used before.
    /// A concurrent call with the same key waits for the first to commit (`ON CONFLICT DO NOTHING`), then reads it.
    async fn legs_of_conversation(&self, connection: &str, conversation: &str) -> StoreResult<Vec<LegRecord>> {
        let rows = sqlx::query(
            "SELECT record FROM legs WHERE connection = $1 AND conversation = $2 ORDER BY participant LIMIT 1000",
        )
        .bind(connection)
        .bind(conversation)
        .fetch_all(&self.pool)
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
        sqlx::query(
            "INSERT INTO pending_decisions (connection, conversation, participant, arrived_at, decision) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (connection, conversation, participant) DO UPDATE SET \
             arrived_at = excluded.arrived_at, decision = excluded.decision",
        )
        .bind(connection)
        .bind(conversation)
        .bind(participant.unwrap_or_default())
        .bind(ms(decision.arrived_at))
        .bind(to_json("pending decision", decision)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn pending_decision(&self, key: &LegKey) -> StoreResult<Option<ExternalDecision>> {
        // The participant's own sorts after the conversation's ('').
        let text: Option<String> = sqlx::query_scalar(
            "SELECT decision FROM pending_decisions WHERE connection = $1 AND conversation = $2 \
             AND participant IN ($3, '') ORDER BY participant DESC LIMIT 1",
        )
        .bind(&key.connection)
        .bind(&key.conversation)
        .bind(&key.participant)
        .fetch_optional(&self.pool)
        .await?;
        codec::from_json_opt(text, "pending decision")
    }

    async fn idempotency_answer(&self, connection: &str, key: &str) -> StoreResult<Option<serde_json::Value>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT response FROM idempotency WHERE connection = $1 AND key = $2")
                .bind(connection)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        codec::from_json_opt(text, "idempotent response")
    }

    async fn idempotent(
        &self,
        connection: &str,
        key: &str,
        response: &serde_json::Value,
    ) -> StoreResult<(bool, serde_json::Value)> {
        let stored = sqlx::query(
            "INSERT INTO idempotency (connection, key, response, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (connection, key) DO NOTHING",
        )
        .bind(connection)
        .bind(key)
        .bind(to_json("idempotent response", response)?)
        .bind(ms(Timestamp::now()))
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1;
        if stored {
            return Ok((true, response.clone()));
        }
        let first: String = sqlx::query_scalar("SELECT response FROM idempotency WHERE connection = $1 AND key = $2")
            .bind(connection)
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok((false, serde_json::from_str(&first).map_err(|e| corrupt("idempotent response", e))?))
    }

    async fn outbox_unrouted(&self, limit: u32) -> StoreResult<Vec<crate::OutboxMessage>> {
        outbox::unrouted(&self.pool, limit).await
    }

    async fn outbox_route(&self, routes: &[crate::Route], now: Timestamp) -> StoreResult<()> {
        outbox::route(&self.pool, routes, now).await
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
        outbox::claim(&self.pool, sink, ms(now), limit, owner, ms(until)).await
    }

    async fn outbox_record(&self, owner: &str, attempts: &[crate::Attempted]) -> StoreResult<u64> {
        outbox::record(&self.pool, owner, attempts).await
    }

    async fn outbox_next_due(&self, sink: &str) -> StoreResult<Option<Timestamp>> {
        outbox::next_due(&self.pool, sink).await
    }

    async fn outbox_list(&self, filter: &crate::DeliveryFilter) -> StoreResult<Vec<crate::Delivery>> {
        outbox::list(&self.pool, filter).await
    }

    async fn outbox_messages(&self, leg: Option<&LegKey>, limit: u32) -> StoreResult<Vec<crate::OutboxMessage>> {
        outbox::messages(&self.pool, leg, limit).await
    }

    async fn outbox_resend(&self, what: &crate::Resend, now: Timestamp, until: Timestamp) -> StoreResult<u64> {
        outbox::resend(&self.pool, what, now, until).await
    }

    async fn outbox_counts(&self) -> StoreResult<crate::DeliveryCounts> {
        outbox::counts(&self.pool).await
    }

    async fn outbox_sinks(&self) -> StoreResult<Vec<crate::SinkState>> {
        outbox::sinks(&self.pool).await
    }

    async fn outbox_set_sink(&self, state: &crate::SinkState) -> StoreResult<()> {
        outbox::set_sink(&self.pool, state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_found_in_the_url_and_redacted_as_written_and_decoded() {
        let url = "postgres://wrapup:p%40ss:word@db.example:5432/wrapup?sslmode=require";
        assert_eq!(url_password(url), Some("p%40ss:word"));
        let message = format!("failed at {url} with p@ss:word");
        let redacted = redact_password(url, &message);
        assert!(!redacted.contains("p%40ss") && !redacted.contains("p@ss"), "{redacted}");
        assert!(redacted.contains("wrapup:***@db.example"), "{redacted}");
    }

    #[test]
    fn a_url_without_a_password_is_left_alone() {
        for url in ["postgres://postgres@127.0.0.1:5432/test", "postgres://host/db", "postgres://u:@h/db"] {
            assert_eq!(url_password(url), None, "{url}");
            assert_eq!(redact_password(url, "an error"), "an error");
        }
    }

    #[tokio::test]
    async fn an_invalid_url_is_refused_without_showing_the_password() {
        // (A refused connection is retried until the acquire timeout; the integration tests check the error of a
        // server that answers.)
        let e = PostgresStore::connect("postgres://wrapup:hunter2secret@h:x/db").await.expect_err("bad port");
        let e = e.to_string();
        assert!(e.contains("invalid PostgreSQL URL") && !e.contains("hunter2secret"), "{e}");
    }
}
