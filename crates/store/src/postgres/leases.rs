//! The workers' writes: claims, saves, releases, and the expiry sweep (see the module docs of [`super`]).

use super::{due_at, ms, parse_record, to_json, OVERDUE};
use crate::{ClaimedLeg, OutcomeChange, Save, StoreError, StoreResult};
use jiff::Timestamp;
use sqlx::{PgPool, Postgres, Row, Transaction};
use wrapup_core::{LegKey, Outcome};

/// `due_at` of a leg without a lease, as [`super::due_at`] computes it: none once done, a writing leg at once (its
/// `updated_at`), others at `not_before`.
const DUE_WITHOUT_LEASE: &str = "CASE state WHEN 'done' THEN NULL WHEN 'writing' THEN updated_at ELSE not_before END";

/// One statement (see the module docs): the rows are locked, skipping those another transaction holds, and leased
/// by the transaction that locked them.
pub(super) async fn claim(
    pool: &PgPool,
    now: i64,
    limit: u32,
    owner: &str,
    lease_until: i64,
) -> StoreResult<Vec<ClaimedLeg>> {
    let rows = sqlx::query(
        "WITH picked AS MATERIALIZED ( \
             SELECT id FROM legs WHERE due_at <= $3 \
             ORDER BY coalesce(deadline, 9223372036854775807), not_before LIMIT $4 \
             FOR UPDATE SKIP LOCKED) \
         UPDATE legs SET lease_owner = $1, lease_until = $2, due_at = $2 \
         FROM picked WHERE legs.id = picked.id \
         RETURNING legs.version, legs.record",
    )
    .bind(owner)
    .bind(lease_until)
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok(ClaimedLeg {
                version: row.try_get("version")?,
                leg: parse_record(&row.try_get::<String, _>("record")?)?,
            })
        })
        .collect::<StoreResult<Vec<_>>>()?;
    // RETURNING has no defined order.
    claimed.sort_by_key(|c| (c.leg.order_deadline().is_none(), c.leg.order_deadline(), c.leg.not_before));
    Ok(claimed)
}

/// The save's row and its ledger lines in one transaction. One statement when the save is accepted; a second one
/// only to tell a refusal's kind. The new version is the one matched plus one. The `due_at` rule is
/// [`super::due_at`]'s, in SQL, because the lease it depends on is the row's (SET expressions see the row as it was).
pub(super) async fn save(pool: &PgPool, save: &Save<'_>) -> StoreResult<i64> {
    let leg = save.leg;
    let mut tx = pool.begin().await?;
    let written = sqlx::query(
        "UPDATE legs SET state = $1, not_before = $2, deadline = $3, \
           lease_owner = CASE WHEN $4 THEN NULL ELSE lease_owner END, \
           lease_until = CASE WHEN $4 THEN NULL ELSE lease_until END, \
           due_at = CASE $1 WHEN 'done' THEN NULL \
                            WHEN 'writing' THEN CASE WHEN $4 OR lease_until IS NULL THEN $5 ELSE lease_until END \
                            ELSE CASE WHEN $4 OR lease_until IS NULL THEN $2 ELSE greatest($2, lease_until) END END, \
           outcome = $6, updated_at = $5, record = $7, version = version + 1 \
         WHERE connection = $8 AND conversation = $9 AND participant = $10 AND version = $11 AND lease_owner = $12",
    )
    .bind(leg.state.as_str())
    .bind(ms(leg.not_before))
    .bind(leg.order_deadline().map(ms))
    .bind(save.release)
    .bind(ms(leg.updated_at))
    .bind(leg.outcome.map(Outcome::as_str))
    .bind(to_json("leg record", leg)?)
    .bind(&leg.key.connection)
    .bind(&leg.key.conversation)
    .bind(&leg.key.participant)
    .bind(save.version)
    .bind(save.owner)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if written != 1 {
        let found = exists(&mut tx, &leg.key).await?;
        tx.rollback().await?;
        return Err(if found {
            StoreError::Conflict(leg.key.to_string())
        } else {
            StoreError::NotFound(leg.key.to_string())
        });
    }
    if !save.lines.is_empty() {
        let mut lines = LedgerLines::default();
        for line in save.lines {
            lines.push(&leg.key, line.at.to_string(), &line.kind, to_json("ledger detail", &line.detail)?);
        }
        lines.insert(&mut tx).await?;
    }
    if leg.outcome.is_some() && leg.outcome != save.stored_outcome {
        let change = OutcomeChange { leg: leg.clone(), from: save.stored_outcome };
        super::outbox::insert_messages(&mut tx, std::slice::from_ref(&change)).await?;
    }
    tx.commit().await?;
    Ok(save.version + 1)
}

async fn exists(tx: &mut Transaction<'_, Postgres>, key: &LegKey) -> StoreResult<bool> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM legs WHERE connection = $1 AND conversation = $2 AND participant = $3")
            .bind(&key.connection)
            .bind(&key.conversation)
            .bind(&key.participant)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(found.is_some())
}

/// Releasing a lease someone else holds (or nobody) changes nothing.
/// One statement over the keys as three parallel arrays. `due_at` moves with the lease by [`super::due_at`]'s rule
/// (a writing leg is due when its lease ends, others at the later of `not_before` and the lease's end).
pub(super) async fn renew(pool: &PgPool, owner: &str, keys: &[LegKey], until: i64) -> StoreResult<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    let column = |f: fn(&LegKey) -> &String| keys.iter().map(|k| f(k).clone()).collect::<Vec<String>>();
    let renewed = sqlx::query(
        "UPDATE legs SET lease_until = $2, \
           due_at = CASE state WHEN 'done' THEN NULL WHEN 'writing' THEN $2 ELSE greatest(not_before, $2) END \
         FROM unnest($3::text[], $4::text[], $5::text[]) AS k(connection, conversation, participant) \
         WHERE legs.connection = k.connection AND legs.conversation = k.conversation \
           AND legs.participant = k.participant AND legs.lease_owner = $1",
    )
    .bind(owner)
    .bind(until)
    .bind(column(|k| &k.connection))
    .bind(column(|k| &k.conversation))
    .bind(column(|k| &k.participant))
    .execute(pool)
    .await?
    .rows_affected();
    Ok(renewed)
}

pub(super) async fn release(pool: &PgPool, key: &LegKey, owner: &str) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    let released = sqlx::query(&format!(
        "UPDATE legs SET lease_owner = NULL, lease_until = NULL, due_at = {DUE_WITHOUT_LEASE} \
         WHERE connection = $1 AND conversation = $2 AND participant = $3 AND lease_owner = $4"
    ))
    .bind(&key.connection)
    .bind(&key.conversation)
    .bind(&key.participant)
    .bind(owner)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if released == 0 && !exists(&mut tx, key).await? {
        return Err(StoreError::NotFound(key.to_string()));
    }
    tx.commit().await?;
    Ok(())
}

/// Rows locked in key order first, like intake locks them, so this cannot deadlock with an ingest.
pub(super) async fn release_all(pool: &PgPool) -> StoreResult<u64> {
    let done = sqlx::query(&format!(
        "UPDATE legs SET lease_owner = NULL, lease_until = NULL, due_at = {DUE_WITHOUT_LEASE} \
         WHERE id IN (SELECT id FROM legs WHERE lease_owner IS NOT NULL \
                      ORDER BY connection, conversation, participant FOR UPDATE)"
    ))
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Finishes up to `chunk` legs whose deadline passed with `expired`, in one transaction, and returns them with the
/// outcome changes to report once it committed. A worker holding a lease keeps it until it releases; its save is
/// refused by the version bump. Rows are locked in key order (as intake locks them); a row another transaction
/// holds is waited for and re-checked, so a leg an event just ended, or another sweep just expired, is left out.
pub(super) async fn expire(
    pool: &PgPool,
    now: Timestamp,
    chunk: i64,
) -> StoreResult<(Vec<LegKey>, Vec<OutcomeChange>)> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(&format!(
        "SELECT id, lease_until, record FROM legs WHERE {OVERDUE} \
         ORDER BY connection, conversation, participant LIMIT $2 FOR UPDATE"
    ))
    .bind(ms(now))
    .bind(chunk)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok((Vec::new(), Vec::new()));
    }
    let reason = "the ACW window closed before we acted";
    let detail = serde_json::json!({"outcome": Outcome::Expired.as_str(), "reason": reason}).to_string();
    let at = now.to_string();
    let mut lines = LedgerLines::default();
    let mut expired = Vec::with_capacity(rows.len());
    let mut changes = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get("id")?;
        let lease_until: Option<i64> = row.try_get("lease_until")?;
        let mut leg = parse_record(&row.try_get::<String, _>("record")?)?;
        // A leg an operator handed back to the worker still holds its `review`: this is then its change.
        let before = leg.outcome;
        leg.finish(Outcome::Expired, Some(reason.to_string()), now);
        sqlx::query(
            "UPDATE legs SET state = $1, not_before = $2, deadline = $3, due_at = $4, outcome = $5, updated_at = $6, \
             record = $7, version = version + 1 WHERE id = $8",
        )
        .bind(leg.state.as_str())
        .bind(ms(leg.not_before))
        .bind(leg.order_deadline().map(ms))
        .bind(due_at(&leg, lease_until))
        .bind(leg.outcome.map(Outcome::as_str))
        .bind(ms(leg.updated_at))
        .bind(to_json("leg record", &leg)?)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        match wrapup_core::lifecycle::outcome_line(before, &leg) {
            Some(("outcome", _)) | None => lines.push(&leg.key, at.clone(), "outcome", detail.clone()),
            Some((kind, line)) => lines.push(&leg.key, at.clone(), kind, to_json("ledger detail", &line)?),
        }
        expired.push(leg.key.clone());
        changes.push(OutcomeChange { leg, from: before });
    }
    lines.insert(&mut tx).await?;
    super::outbox::insert_messages(&mut tx, &changes).await?;
    tx.commit().await?;
    Ok((expired, changes))
}

/// Ledger lines to insert with one statement, in the order pushed (their ids follow that order).
#[derive(Default)]
pub(super) struct LedgerLines {
    connection: Vec<String>,
    conversation: Vec<String>,
    participant: Vec<String>,
    at: Vec<String>,
    kind: Vec<String>,
    detail: Vec<String>,
}

impl LedgerLines {
    pub fn push(&mut self, key: &LegKey, at: String, kind: &str, detail: String) {
        self.connection.push(key.connection.clone());
        self.conversation.push(key.conversation.clone());
        self.participant.push(key.participant.clone());
        self.at.push(at);
        self.kind.push(kind.to_string());
        self.detail.push(detail);
    }

    pub async fn insert(self, tx: &mut Transaction<'_, Postgres>) -> StoreResult<()> {
        if self.connection.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO ledger (connection, conversation, participant, at, kind, detail) \
             SELECT connection, conversation, participant, at, kind, detail \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) \
                  WITH ORDINALITY AS line (connection, conversation, participant, at, kind, detail, n) \
             ORDER BY n",
        )
        .bind(self.connection)
        .bind(self.conversation)
        .bind(self.participant)
        .bind(self.at)
        .bind(self.kind)
        .bind(self.detail)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
