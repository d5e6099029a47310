//! The body of [`Store::ingest`](crate::Store::ingest), and the multi-row statement helpers it shares with the
//! write batcher.

use super::{decode_record, due_at, ms, to_json};
use crate::{Ingested, LedgerEntry, StoreError, StoreResult};
use jiff::Timestamp;
use sqlx::{Row, Sqlite, Transaction};
use std::collections::{HashMap, HashSet};
use wrapup_core::lifecycle::{apply_event, LegRecord};
use wrapup_core::{Event, LegKey, Outcome};

/// The body of [`Store::ingest`], set-based: rows travel in multi-row statements (`VALUES (?, …), (?, …)`), so a
/// batch of 500 costs a few dozen statements instead of four per event. Legs are loaded once, every new event is
/// applied in order in memory with `apply_event`, and each touched leg is written once, its version advanced by the
/// number of events applied to it. (Passing the batch as one JSON array through `json_each` costs more: SQLite then
/// spends a third of the time parsing JSON.)
pub(super) async fn ingest_batch(
    tx: &mut Transaction<'static, Sqlite>,
    events: &[Event],
    now: Timestamp,
) -> StoreResult<Vec<Ingested>> {
    // 1. Inbox. First the keys already stored (usually none), then only the new events are inserted. (Not `INSERT … ON
    // CONFLICT DO NOTHING RETURNING`: sqlx hands every returned row across threads one at a time, and that hand-off
    // cost more than the insert; this way a batch of new events returns no rows at all.)
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(events.len());
    let mut at = 0;
    for n in chunk_sizes(events.len()) {
        let sql = format!(
            "SELECT i.connection, i.dedupe_key FROM (VALUES {}) AS w \
             JOIN inbox AS i ON i.connection = w.column1 AND i.dedupe_key = w.column2",
            placeholders(n, 2)
        );
        let mut query = sqlx::query(&sql);
        for e in &events[at..at + n] {
            query = query.bind(&e.leg.connection).bind(&e.dedupe_key);
        }
        let stored = query.fetch_all(&mut **tx).await?;
        for row in &stored {
            let (connection, key): (&str, &str) = (row.try_get("connection")?, row.try_get("dedupe_key")?);
            // Borrow the batch's own strings so `seen` outlives the rows.
            if let Some(e) = events[at..at + n].iter().find(|e| e.leg.connection == connection && e.dedupe_key == key) {
                seen.insert((&e.leg.connection, &e.dedupe_key));
            }
        }
        at += n;
    }
    // A key stored before, or met earlier in this batch, is a duplicate.
    let results: Vec<Ingested> = events
        .iter()
        .map(|e| if seen.insert((&e.leg.connection, &e.dedupe_key)) { Ingested::New } else { Ingested::Duplicate })
        .collect();
    let inserted: Vec<&Event> =
        events.iter().zip(&results).filter(|(_, r)| **r == Ingested::New).map(|(e, _)| e).collect();
    let payloads = inserted.iter().map(|e| to_json("event", e)).collect::<StoreResult<Vec<_>>>()?;
    let mut at = 0;
    for n in chunk_sizes(inserted.len()) {
        let sql = format!(
            "INSERT INTO inbox (connection, dedupe_key, conversation, participant, kind, occurred_at, received_at, \
             payload) VALUES {}",
            placeholders(n, 8)
        );
        let mut query = sqlx::query(&sql);
        for (e, payload) in inserted[at..at + n].iter().zip(&payloads[at..at + n]) {
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
        query.execute(&mut **tx).await?;
        at += n;
    }
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
    let now_text = now.to_string();
    let mut ledger = Vec::with_capacity(new_events.len());
    for e in &new_events {
        let touched =
            legs.get_mut(&e.leg).ok_or_else(|| StoreError::Backend(format!("leg {} missing from the batch", e.leg)))?;
        let (leg, effect) = apply_event(touched.leg.take(), e, now);
        touched.leg = Some(leg);
        touched.version += 1;
        let detail = event_entry(e, &effect.note, now).detail;
        ledger.push(LedgerRow {
            key: &e.leg,
            at: now_text.clone(),
            kind: "event",
            detail: to_json("ledger detail", &detail)?,
        });
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
    insert_ledger_rows(tx, &ledger).await?;
    Ok(results)
}

/// One ledger line ready to insert (`at` as RFC 3339 text, `detail` as JSON text).
pub(super) struct LedgerRow<'a> {
    pub key: &'a LegKey,
    pub at: String,
    pub kind: &'a str,
    pub detail: String,
}

impl<'a> LedgerRow<'a> {
    pub fn new(key: &'a LegKey, entry: &'a LedgerEntry) -> StoreResult<Self> {
        Ok(LedgerRow {
            key,
            at: entry.at.to_string(),
            kind: &entry.kind,
            detail: to_json("ledger detail", &entry.detail)?,
        })
    }
}

/// Appends `rows` to the ledger in order, in multi-row statements.
pub(super) async fn insert_ledger_rows(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[LedgerRow<'_>],
) -> StoreResult<()> {
    let mut at = 0;
    for n in chunk_sizes(rows.len()) {
        let sql = format!(
            "INSERT INTO ledger (connection, conversation, participant, at, kind, detail) VALUES {}",
            placeholders(n, 6)
        );
        let mut query = sqlx::query(&sql);
        for row in &rows[at..at + n] {
            query = query
                .bind(&row.key.connection)
                .bind(&row.key.conversation)
                .bind(&row.key.participant)
                .bind(row.at.as_str())
                .bind(row.kind)
                .bind(row.detail.as_str());
        }
        query.execute(&mut **tx).await?;
        at += n;
    }
    Ok(())
}

/// Rows per multi-row statement at most. A batch is cut into statements of this many rows and one of the rest, so
/// each statement kind has at most this many texts, all kept prepared by the writer connection (its statement cache
/// is sized for them: `WRITER_STATEMENTS`). Cutting 31 rows into 16 + 8 + 4 + 2 + 1, as an earlier version did to
/// keep fewer texts, cost five round trips to sqlx's connection thread instead of one, and those round trips are
/// what a batch spends most of its time on.
pub(super) const MAX_ROWS: usize = 64;

pub(super) fn chunk_sizes(mut rows: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = rows.min(MAX_ROWS);
        rows -= size;
        (size > 0).then_some(size)
    })
}

/// `(?, ?), (?, ?)` for `rows` rows of `columns` parameters.
pub(super) fn placeholders(rows: usize, columns: usize) -> String {
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
