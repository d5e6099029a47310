//! The outbox on SQLite: messages inserted by the writer thread in the transaction of the outcome changes they
//! announce (see `batch.rs`), and every other outbox operation run by the same thread (the one writer).

use super::{ms, to_json};
use crate::codec::corrupt;
use crate::outbox::{
    message_of, recorded, Attempted, Delivery, DeliveryCounts, DeliveryFilter, DeliveryState, OutboxMessage, Resend,
    Route, SinkState, BLOCKED_BY_EARLIER, DEFAULT_OUTBOX_LIMIT,
};
use crate::{OutcomeChange, StoreResult};
use jiff::Timestamp;
use rusqlite::{params, Row, Transaction};
use wrapup_core::{LegKey, Outcome};

/// Inserts the message announcing `change`.
pub(super) fn insert_message(tx: &Transaction<'_>, change: &OutcomeChange) -> StoreResult<()> {
    let Some(m) = message_of(change) else { return Ok(()) };
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (id, connection, conversation, participant, kind, outcome, created_at, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    stmt.execute(params![
        m.id,
        m.leg.connection,
        m.leg.conversation,
        m.leg.participant,
        m.kind,
        m.outcome.as_str(),
        ms(m.created_at),
        to_json("outbox message", &m.body)?,
    ])?;
    Ok(())
}

fn time(ms: i64) -> StoreResult<Timestamp> {
    Timestamp::from_millisecond(ms).map_err(|e| corrupt("outbox time", e))
}

fn outcome(s: &str) -> StoreResult<Outcome> {
    Outcome::parse(s).ok_or_else(|| corrupt("outcome", s))
}

const MESSAGE_COLUMNS: &str = "seq, id, connection, conversation, participant, kind, outcome, created_at, body";

fn message(row: &Row<'_>) -> StoreResult<OutboxMessage> {
    let body: String = row.get(8)?;
    Ok(OutboxMessage {
        seq: row.get(0)?,
        id: row.get(1)?,
        leg: LegKey::new(row.get::<_, String>(2)?, row.get::<_, String>(3)?, row.get::<_, String>(4)?),
        kind: row.get(5)?,
        outcome: outcome(&row.get::<_, String>(6)?)?,
        created_at: time(row.get(7)?)?,
        body: serde_json::from_str(&body).map_err(|e| corrupt("outbox message", e))?,
    })
}

const DELIVERY_COLUMNS: &str = "d.seq, o.id, d.sink, d.connection, d.conversation, d.participant, o.kind, o.outcome, \
    o.created_at, d.state, d.attempts, d.next_at, d.expires_at, d.last_attempt_at, d.last_status, d.last_error, \
    d.delivered_at, d.body";

fn delivery(row: &Row<'_>) -> StoreResult<Delivery> {
    let state: String = row.get(9)?;
    let opt_time = |v: Option<i64>| v.map(time).transpose();
    Ok(Delivery {
        seq: row.get(0)?,
        message_id: row.get(1)?,
        sink: row.get(2)?,
        leg: LegKey::new(row.get::<_, String>(3)?, row.get::<_, String>(4)?, row.get::<_, String>(5)?),
        kind: row.get(6)?,
        outcome: outcome(&row.get::<_, String>(7)?)?,
        created_at: time(row.get(8)?)?,
        state: DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state", &state))?,
        attempts: row.get::<_, i64>(10)?.clamp(0, i64::from(u32::MAX)) as u32,
        next_at: time(row.get(11)?)?,
        expires_at: time(row.get(12)?)?,
        last_attempt_at: opt_time(row.get(13)?)?,
        last_status: row.get::<_, Option<i64>>(14)?.map(|s| s.clamp(0, 999) as u16),
        last_error: row.get(15)?,
        delivered_at: opt_time(row.get(16)?)?,
        body: row.get(17)?,
    })
}

pub(super) fn unrouted(tx: &Transaction<'_>, limit: u32) -> StoreResult<Vec<OutboxMessage>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE routed_at IS NULL ORDER BY seq LIMIT ?1"
    ))?;
    let mut rows = stmt.query(params![i64::from(limit)])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(message(row)?);
    }
    Ok(out)
}

pub(super) fn route(tx: &Transaction<'_>, routes: &[Route], now: Timestamp) -> StoreResult<()> {
    let mut insert = tx.prepare_cached(
        "INSERT OR IGNORE INTO outbox_deliveries (seq, sink, connection, conversation, participant, state, \
         attempts, next_at, expires_at, body) \
         SELECT seq, ?2, connection, conversation, participant, 'pending', 0, ?3, ?4, ?5 FROM outbox WHERE seq = ?1",
    )?;
    let mut mark = tx.prepare_cached("UPDATE outbox SET routed_at = ?2 WHERE seq = ?1 AND routed_at IS NULL")?;
    for r in routes {
        for d in &r.deliveries {
            insert.execute(params![r.seq, d.sink, ms(now), ms(d.expires_at), d.body])?;
        }
        mark.execute(params![r.seq, ms(now)])?;
    }
    Ok(())
}

pub(super) fn claim(
    tx: &Transaction<'_>,
    sink: &str,
    now: i64,
    limit: u32,
    owner: &str,
    lease_until: i64,
) -> StoreResult<Vec<Delivery>> {
    let seqs: Vec<i64> = {
        let mut stmt = tx.prepare_cached(&format!(
            "UPDATE outbox_deliveries SET lease_owner = ?1, lease_until = ?2 \
             WHERE rowid IN (SELECT d.rowid FROM outbox_deliveries d \
                 WHERE d.sink = ?3 AND d.state = 'pending' AND d.next_at <= ?4 \
                   AND (d.lease_until IS NULL OR d.lease_until <= ?4) AND NOT {BLOCKED_BY_EARLIER} \
                 ORDER BY d.seq LIMIT ?5) \
             RETURNING seq"
        ))?;
        let rows = stmt.query_map(params![owner, lease_until, sink, now, i64::from(limit)], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut one = tx.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM outbox_deliveries d JOIN outbox o ON o.seq = d.seq \
         WHERE d.seq = ?1 AND d.sink = ?2"
    ))?;
    let mut out = Vec::with_capacity(seqs.len());
    for seq in seqs {
        let mut rows = one.query(params![seq, sink])?;
        if let Some(row) = rows.next()? {
            out.push(delivery(row)?);
        }
    }
    out.sort_by_key(|d| d.seq);
    Ok(out)
}

pub(super) fn record(tx: &Transaction<'_>, owner: &str, attempts: &[Attempted]) -> StoreResult<u64> {
    let mut stmt = tx.prepare_cached(
        "UPDATE outbox_deliveries SET attempts = attempts + 1, last_attempt_at = ?1, last_status = ?2, \
           last_error = ?3, lease_owner = NULL, lease_until = NULL, state = ?4, next_at = coalesce(?5, next_at), \
           delivered_at = coalesce(?6, delivered_at) \
         WHERE seq = ?7 AND sink = ?8 AND lease_owner = ?9 AND state = 'pending'",
    )?;
    let mut n = 0;
    for a in attempts {
        let (state, next_at, delivered_at) = recorded(a);
        n += stmt.execute(params![
            ms(a.at),
            a.status.map(i64::from),
            a.error,
            state.as_str(),
            next_at,
            delivered_at,
            a.seq,
            a.sink,
            owner
        ])? as u64;
    }
    Ok(n)
}

pub(super) fn next_due(tx: &Transaction<'_>, sink: &str) -> StoreResult<Option<Timestamp>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT min(max(d.next_at, coalesce(d.lease_until, 0))) FROM outbox_deliveries d \
         WHERE d.sink = ?1 AND d.state = 'pending' AND NOT {BLOCKED_BY_EARLIER}"
    ))?;
    let at: Option<i64> = stmt.query_row(params![sink], |r| r.get(0))?;
    at.map(time).transpose()
}

pub(super) fn list(tx: &Transaction<'_>, f: &DeliveryFilter) -> StoreResult<Vec<Delivery>> {
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT {DELIVERY_COLUMNS} FROM outbox_deliveries d JOIN outbox o ON o.seq = d.seq \
         WHERE (?1 IS NULL OR d.sink = ?1) AND (?2 IS NULL OR d.state = ?2) AND (?3 IS NULL OR o.created_at >= ?3) \
           AND (?4 IS NULL OR o.id = ?4) \
           AND (?5 IS NULL OR (d.connection = ?5 AND d.conversation = ?6 AND d.participant = ?7)) \
         ORDER BY d.seq DESC, d.sink LIMIT ?8"
    ))?;
    let leg = f.leg.as_ref();
    let mut rows = stmt.query(params![
        f.sink,
        f.state.map(DeliveryState::as_str),
        f.since.map(ms),
        f.message_id,
        leg.map(|k| &k.connection),
        leg.map(|k| &k.conversation),
        leg.map(|k| &k.participant),
        i64::from(f.limit.unwrap_or(DEFAULT_OUTBOX_LIMIT)),
    ])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(delivery(row)?);
    }
    Ok(out)
}

pub(super) fn messages(tx: &Transaction<'_>, leg: Option<&LegKey>, limit: u32) -> StoreResult<Vec<OutboxMessage>> {
    let mut out = Vec::new();
    match leg {
        Some(k) => {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM outbox WHERE connection = ?1 AND conversation = ?2 \
                 AND participant = ?3 ORDER BY seq LIMIT ?4"
            ))?;
            let mut rows = stmt.query(params![k.connection, k.conversation, k.participant, i64::from(limit)])?;
            while let Some(row) = rows.next()? {
                out.push(message(row)?);
            }
        }
        None => {
            let mut stmt =
                tx.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM outbox ORDER BY seq DESC LIMIT ?1"))?;
            let mut rows = stmt.query(params![i64::from(limit)])?;
            while let Some(row) = rows.next()? {
                out.push(message(row)?);
            }
        }
    }
    Ok(out)
}

pub(super) fn resend(tx: &Transaction<'_>, what: &Resend, now: Timestamp, until: Timestamp) -> StoreResult<u64> {
    let set = "UPDATE outbox_deliveries SET state = 'pending', attempts = 0, next_at = ?1, expires_at = ?2, \
               lease_owner = NULL, lease_until = NULL";
    let n = match what {
        Resend::Dead { sink } => tx.execute(
            &format!("{set} WHERE state = 'dead' AND (?3 IS NULL OR sink = ?3)"),
            params![ms(now), ms(until), sink],
        )?,
        Resend::Message { id, sink } => tx.execute(
            &format!(
                "{set} WHERE seq = (SELECT seq FROM outbox WHERE id = ?4) AND state != 'pending' \
                 AND (?3 IS NULL OR sink = ?3)"
            ),
            params![ms(now), ms(until), sink, id],
        )?,
        Resend::Delivered { since, sink } => tx.execute(
            &format!("{set} WHERE state = 'delivered' AND delivered_at >= ?4 AND (?3 IS NULL OR sink = ?3)"),
            params![ms(now), ms(until), sink, ms(*since)],
        )?,
    };
    Ok(n as u64)
}

pub(super) fn counts(tx: &Transaction<'_>) -> StoreResult<DeliveryCounts> {
    let mut stmt = tx.prepare_cached("SELECT sink, state, count(*) FROM outbox_deliveries GROUP BY sink, state")?;
    let mut rows = stmt.query([])?;
    let mut out = DeliveryCounts::new();
    while let Some(row) = rows.next()? {
        let state: String = row.get(1)?;
        let state = DeliveryState::parse(&state).ok_or_else(|| corrupt("delivery state", &state))?;
        out.insert((row.get(0)?, state), row.get::<_, i64>(2)?.max(0) as u64);
    }
    Ok(out)
}

pub(super) fn sinks(tx: &Transaction<'_>) -> StoreResult<Vec<SinkState>> {
    let mut stmt = tx
        .prepare_cached("SELECT name, disabled_at, disabled_status, disabled_reason FROM outbox_sinks ORDER BY name")?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(SinkState {
            name: row.get(0)?,
            disabled_at: row.get::<_, Option<i64>>(1)?.map(time).transpose()?,
            disabled_status: row.get::<_, Option<i64>>(2)?.map(|s| s.clamp(0, 999) as u16),
            disabled_reason: row.get(3)?,
        });
    }
    Ok(out)
}

pub(super) fn set_sink(tx: &Transaction<'_>, s: &SinkState) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO outbox_sinks (name, disabled_at, disabled_status, disabled_reason) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name) DO UPDATE SET disabled_at = excluded.disabled_at, \
           disabled_status = excluded.disabled_status, disabled_reason = excluded.disabled_reason",
        params![s.name, s.disabled_at.map(ms), s.disabled_status.map(i64::from), s.disabled_reason],
    )?;
    Ok(())
}
