//! The outbox on PostgreSQL: messages inserted in the transaction of the outcome changes they announce (intake,
//! a save, expiry), and deliveries claimed by any number of replicas with `FOR UPDATE SKIP LOCKED` and a lease.

use super::ms;
use crate::codec::{corrupt, to_json};
use crate::outbox::{
    message_of, recorded, Attempted, Delivery, DeliveryCounts, DeliveryFilter, DeliveryState, OutboxMessage, Resend,
    Route, SinkState, BLOCKED_BY_EARLIER, DEFAULT_OUTBOX_LIMIT,
};
use crate::{OutcomeChange, StoreResult};
use jiff::Timestamp;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};
use wrapup_core::{LegKey, Outcome};

/// Inserts the messages announcing `changes`, in order, with one statement.
pub(super) async fn insert_messages(tx: &mut Transaction<'_, Postgres>, changes: &[OutcomeChange]) -> StoreResult<()> {
    let messages: Vec<OutboxMessage> = changes.iter().filter_map(message_of).collect();
    if messages.is_empty() {
        return Ok(());
    }
    let mut cols: [Vec<String>; 7] = Default::default();
    let mut created = Vec::with_capacity(messages.len());
    for m in &messages {
        cols[0].push(m.id.clone());
        cols[1].push(m.leg.connection.clone());
        cols[2].push(m.leg.conversation.clone());
        cols[3].push(m.leg.participant.clone());
        cols[4].push(m.kind.clone());
        cols[5].push(m.outcome.as_str().to_string());
        cols[6].push(to_json("outbox message", &m.body)?);
        created.push(ms(m.created_at));
    }
    let [id, connection, conversation, participant, kind, outcome, body] = cols;
    sqlx::query(
        "INSERT INTO outbox (id, connection, conversation, participant, kind, outcome, created_at, body) \
         SELECT id, connection, conversation, participant, kind, outcome, created_at, body \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], \
                     $8::text[]) WITH ORDINALITY \
              AS m (id, connection, conversation, participant, kind, outcome, created_at, body, n) \
         ORDER BY n",
    )
    .bind(id)
    .bind(connection)
    .bind(conversation)
    .bind(participant)
    .bind(kind)
    .bind(outcome)
    .bind(created)
    .bind(body)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn time(ms: i64) -> StoreResult<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|e| corrupt("outbox time", e))
}

fn outcome(s: &str) -> StoreResult<Outcome> {
    Outcome::parse(s).ok_or_else(|| corrupt("outcome", s))
}

const MESSAGE_COLUMNS: &str = "seq, id, connection, conversation, participant, kind, outcome, created_at, body";

fn message(row: &PgRow) -> StoreResult<OutboxMessage> {
    let body: String = row.try_get("body")?;
    Ok(OutboxMessage {
        seq: row.try_get("seq")?,
        id: row.try_get("id")?,
        leg: LegKey::new(
            row.try_get::<String, _>("connection")?,
            row.try_get::<String, _>("conversation")?,
            row.try_get::<String, _>("participant")?,
        ),
        kind: row.try_get("kind")?,
        outcome: outcome(&row.try_get::<String, _>("outcome")?)?,
        created_at: time(row.try_get("created_at")?)?,
        body: serde_json::from_str(&body).map_err(|e| corrupt("outbox message", e))?,
    })
}

const DELIVERY_COLUMNS: &str = "d.seq, o.id, d.sink, d.connection, d.conversation, d.participant, o.kind, o.outcome, \
    o.created_at, d.state, d.attempts, d.next_at, d.expires_at, d.last_attempt_at, d.last_status, d.last_error, \
    d.delivered_at, d.body";

fn delivery(row: &PgRow) -> StoreResult<Delivery> {
    let state: String = row.try_get("state")?;
    let opt_time = |v: Option<i64>| v.map(time).transpose();
    Ok(Delivery {
        seq: row.try_get("seq")?,
        message_id: row.try_get("id")?,
        sink: row.try_get("sink")?,
        leg: LegKey::new(
            row.try_get::<String, _>("connection")?,
            row.try_get::<String, _>("conversation")?,
            row.try_get::<String, _>("participant")?,
        ),
        kind: row.try_get("kind")?,
        outcome: outcome(&row.try_get::<String, _>("outcome")?)?,
        created_at: time(row.try_get("created_at")?)?,
        state: DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state", &state))?,
        attempts: row.try_get::<i64, _>("attempts")?.clamp(0, i64::from(u32::MAX)) as u32,
        next_at: time(row.try_get("next_at")?)?,
        expires_at: time(row.try_get("expires_at")?)?,
        last_attempt_at: opt_time(row.try_get("last_attempt_at")?)?,
        last_status: row.try_get::<Option<i64>, _>("last_status")?.map(|s| s.clamp(0, 999) as u16),
        last_error: row.try_get("last_error")?,
        delivered_at: opt_time(row.try_get("delivered_at")?)?,
        body: row.try_get("body")?,
    })
}

pub(super) async fn unrouted(pool: &PgPool, limit: u32) -> StoreResult<Vec<OutboxMessage>> {
    let rows =
        sqlx::query(&format!("SELECT {MESSAGE_COLUMNS} FROM outbox WHERE routed_at IS NULL ORDER BY seq LIMIT $1"))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
    rows.iter().map(message).collect()
}

/// Replicas routing the same message insert the same rows: the first one's stay.
pub(super) async fn route(pool: &PgPool, routes: &[Route], now: Timestamp) -> StoreResult<()> {
    let mut tx = pool.begin().await?;
    for r in routes {
        for d in &r.deliveries {
            sqlx::query(
                "INSERT INTO outbox_deliveries (seq, sink, connection, conversation, participant, state, attempts, \
                 next_at, expires_at, body) \
                 SELECT seq, $2, connection, conversation, participant, 'pending', 0, $3, $4, $5 FROM outbox \
                 WHERE seq = $1 ON CONFLICT (seq, sink) DO NOTHING",
            )
            .bind(r.seq)
            .bind(&d.sink)
            .bind(ms(now))
            .bind(ms(d.expires_at))
            .bind(&d.body)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("UPDATE outbox SET routed_at = $2 WHERE seq = $1 AND routed_at IS NULL")
            .bind(r.seq)
            .bind(ms(now))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// One statement: rows another replica is claiming or recording are skipped, never waited for.
pub(super) async fn claim(
    pool: &PgPool,
    sink: &str,
    now: i64,
    limit: u32,
    owner: &str,
    lease_until: i64,
) -> StoreResult<Vec<Delivery>> {
    let mut tx = pool.begin().await?;
    let seqs: Vec<i64> = sqlx::query_scalar(&format!(
        "WITH picked AS MATERIALIZED ( \
             SELECT d.seq FROM outbox_deliveries d \
             WHERE d.sink = $3 AND d.state = 'pending' AND d.next_at <= $4 \
               AND (d.lease_until IS NULL OR d.lease_until <= $4) AND NOT {BLOCKED_BY_EARLIER} \
             ORDER BY d.seq LIMIT $5 FOR UPDATE SKIP LOCKED) \
         UPDATE outbox_deliveries SET lease_owner = $1, lease_until = $2 \
         FROM picked WHERE outbox_deliveries.seq = picked.seq AND outbox_deliveries.sink = $3 \
         RETURNING outbox_deliveries.seq"
    ))
    .bind(owner)
    .bind(lease_until)
    .bind(sink)
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await?;
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM outbox_deliveries d JOIN outbox o ON o.seq = d.seq \
         WHERE d.sink = $1 AND d.seq = ANY($2) ORDER BY d.seq"
    ))
    .bind(sink)
    .bind(&seqs)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    rows.iter().map(delivery).collect()
}

pub(super) async fn record(pool: &PgPool, owner: &str, attempts: &[Attempted]) -> StoreResult<u64> {
    let mut tx = pool.begin().await?;
    let mut n = 0;
    for a in attempts {
        let (state, next_at, delivered_at) = recorded(a);
        n += sqlx::query(
            "UPDATE outbox_deliveries SET attempts = attempts + 1, last_attempt_at = $1, last_status = $2, \
               last_error = $3, lease_owner = NULL, lease_until = NULL, state = $4, \
               next_at = coalesce($5, next_at), delivered_at = coalesce($6, delivered_at) \
             WHERE seq = $7 AND sink = $8 AND lease_owner = $9 AND state = 'pending'",
        )
        .bind(ms(a.at))
        .bind(a.status.map(i64::from))
        .bind(&a.error)
        .bind(state.as_str())
        .bind(next_at)
        .bind(delivered_at)
        .bind(a.seq)
        .bind(&a.sink)
        .bind(owner)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    }
    tx.commit().await?;
    Ok(n)
}

pub(super) async fn next_due(pool: &PgPool, sink: &str) -> StoreResult<Option<Timestamp>> {
    let at: Option<i64> = sqlx::query_scalar(&format!(
        "SELECT min(greatest(d.next_at, coalesce(d.lease_until, 0))) FROM outbox_deliveries d \
         WHERE d.sink = $1 AND d.state = 'pending' AND NOT {BLOCKED_BY_EARLIER}"
    ))
    .bind(sink)
    .fetch_one(pool)
    .await?;
    at.map(time).transpose()
}

pub(super) async fn list(pool: &PgPool, f: &DeliveryFilter) -> StoreResult<Vec<Delivery>> {
    let leg = f.leg.as_ref();
    let rows = sqlx::query(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM outbox_deliveries d JOIN outbox o ON o.seq = d.seq \
         WHERE ($1::text IS NULL OR d.sink = $1) AND ($2::text IS NULL OR d.state = $2) \
           AND ($3::bigint IS NULL OR o.created_at >= $3) AND ($4::text IS NULL OR o.id = $4) \
           AND ($5::text IS NULL OR (d.connection = $5 AND d.conversation = $6 AND d.participant = $7)) \
         ORDER BY d.seq DESC, d.sink LIMIT $8"
    ))
    .bind(&f.sink)
    .bind(f.state.map(DeliveryState::as_str))
    .bind(f.since.map(ms))
    .bind(&f.message_id)
    .bind(leg.map(|k| k.connection.clone()))
    .bind(leg.map(|k| k.conversation.clone()))
    .bind(leg.map(|k| k.participant.clone()))
    .bind(i64::from(f.limit.unwrap_or(DEFAULT_OUTBOX_LIMIT)))
    .fetch_all(pool)
    .await?;
    rows.iter().map(delivery).collect()
}

pub(super) async fn messages(pool: &PgPool, leg: Option<&LegKey>, limit: u32) -> StoreResult<Vec<OutboxMessage>> {
    let rows = match leg {
        Some(k) => {
            sqlx::query(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE connection = $1 AND conversation = $2 \
                 AND participant = $3 ORDER BY seq LIMIT $4"
            ))
            .bind(&k.connection)
            .bind(&k.conversation)
            .bind(&k.participant)
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query(&format!("SELECT {MESSAGE_COLUMNS} FROM outbox ORDER BY seq DESC LIMIT $1"))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        }
    };
    rows.iter().map(message).collect()
}

pub(super) async fn resend(pool: &PgPool, what: &Resend, now: Timestamp, until: Timestamp) -> StoreResult<u64> {
    let set = "UPDATE outbox_deliveries SET state = 'pending', attempts = 0, next_at = $1, expires_at = $2, \
               lease_owner = NULL, lease_until = NULL";
    let q = match what {
        Resend::Dead { sink } => {
            sqlx::query(&format!("{set} WHERE state = 'dead' AND ($3::text IS NULL OR sink = $3)"))
                .bind(ms(now))
                .bind(ms(until))
                .bind(sink.clone())
                .execute(pool)
                .await?
        }
        Resend::Message { id, sink } => {
            sqlx::query(&format!(
                "{set} WHERE seq = (SELECT seq FROM outbox WHERE id = $4) AND state <> 'pending' \
                 AND ($3::text IS NULL OR sink = $3)"
            ))
            .bind(ms(now))
            .bind(ms(until))
            .bind(sink.clone())
            .bind(id)
            .execute(pool)
            .await?
        }
        Resend::Delivered { since, sink } => {
            sqlx::query(&format!(
                "{set} WHERE state = 'delivered' AND delivered_at >= $4 AND ($3::text IS NULL OR sink = $3)"
            ))
            .bind(ms(now))
            .bind(ms(until))
            .bind(sink.clone())
            .bind(ms(*since))
            .execute(pool)
            .await?
        }
    };
    Ok(q.rows_affected())
}

pub(super) async fn counts(pool: &PgPool) -> StoreResult<DeliveryCounts> {
    let rows = sqlx::query("SELECT sink, state, count(*) AS n FROM outbox_deliveries GROUP BY sink, state")
        .fetch_all(pool)
        .await?;
    let mut out = DeliveryCounts::new();
    for row in rows {
        let state: String = row.try_get("state")?;
        let state = DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state", &state))?;
        out.insert((row.try_get("sink")?, state), row.try_get::<i64, _>("n")?.max(0) as u64);
    }
    Ok(out)
}

pub(super) async fn sinks(pool: &PgPool) -> StoreResult<Vec<SinkState>> {
    let rows =
        sqlx::query("SELECT name, disabled_at, disabled_status, disabled_reason FROM outbox_sinks ORDER BY name")
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|row| {
            Ok(SinkState {
                name: row.try_get("name")?,
                disabled_at: row.try_get::<Option<i64>, _>("disabled_at")?.map(time).transpose()?,
                disabled_status: row.try_get::<Option<i64>, _>("disabled_status")?.map(|s| s.clamp(0, 999) as u16),
                disabled_reason: row.try_get("disabled_reason")?,
            })
        })
        .collect()
}

pub(super) async fn set_sink(pool: &PgPool, s: &SinkState) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO outbox_sinks (name, disabled_at, disabled_status, disabled_reason) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (name) DO UPDATE SET disabled_at = excluded.disabled_at, \
           disabled_status = excluded.disabled_status, disabled_reason = excluded.disabled_reason",
    )
    .bind(&s.name)
    .bind(s.disabled_at.map(ms))
    .bind(s.disabled_status.map(i64::from))
    .bind(&s.disabled_reason)
    .execute(pool)
    .await?;
    Ok(())
}
