//! The body of [`Store::ingest`](crate::Store::ingest): one transaction per call (see the module docs of
//! [`super`]).

use super::leases::LedgerLines;
use super::{due_at, ms, parse_record, to_json};
use crate::{Ingested, OutcomeChange, StoreError, StoreResult};
use jiff::Timestamp;
use sqlx::{PgPool, Postgres, Row, Transaction};
use std::collections::{HashMap, HashSet};
use wrapup_core::lifecycle::{apply_event, outcome_line, LegRecord};
use wrapup_core::{Event, LegKey, Outcome};

/// A call that keeps losing races (another call creating one of its legs first, or a deadlock the server broke)
/// gives up after this many attempts. Each lost race leaves the leg existing, so the next attempt locks it instead.
const ATTEMPTS: usize = 5;

/// PostgreSQL's `deadlock_detected` and `serialization_failure`: the transaction was rolled back and may be retried.
const RETRYABLE: [&str; 2] = ["40P01", "40001"];

/// Records `events` and applies the new ones; returns one result per event and the outcome changes to report
/// after the commit.
pub(super) async fn ingest(
    pool: &PgPool,
    events: &[Event],
    now: Timestamp,
) -> StoreResult<(Vec<Ingested>, Vec<OutcomeChange>)> {
    for _ in 0..ATTEMPTS {
        let mut tx = pool.begin().await?;
        match attempt(&mut tx, events, now).await {
            Ok(Some(done)) => match tx.commit().await {
                Ok(()) => return Ok(done),
                Err(e) if retryable(&e) => continue,
                Err(e) => return Err(e.into()),
            },
            // Dropping the transaction rolls it back.
            Ok(None) => continue,
            Err(Failed::Db(e)) if retryable(&e) => continue,
            Err(Failed::Db(e)) => return Err(e.into()),
            Err(Failed::Store(e)) => return Err(e),
        }
    }
    Err(StoreError::Backend(format!("intake lost {ATTEMPTS} races in a row for the same legs; try again")))
}

fn retryable(e: &sqlx::Error) -> bool {
    e.as_database_error().and_then(|d| d.code()).is_some_and(|code| RETRYABLE.contains(&code.as_ref()))
}

/// A failed attempt: a database error (perhaps worth retrying) or anything else.
enum Failed {
    Db(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Failed {
    fn from(e: sqlx::Error) -> Self {
        Failed::Db(e)
    }
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Failed::Store(e)
    }
}

/// One attempt; `None` when another call created one of the legs after this one found it missing (retry).
async fn attempt(
    tx: &mut Transaction<'_, Postgres>,
    events: &[Event],
    now: Timestamp,
) -> Result<Option<(Vec<Ingested>, Vec<OutcomeChange>)>, Failed> {
    // 1. Inbox. The first occurrence of a key in the batch is a candidate; it is new if its insert goes through
    // (a key stored before, or by a concurrent call that commits first, is a duplicate). Inserted in key order so
    // that two calls sharing keys take their locks in the same order.
    let mut seen: HashSet<(&str, &str)> = HashSet::with_capacity(events.len());
    let candidates: Vec<&Event> = events.iter().filter(|e| seen.insert((&e.leg.connection, &e.dedupe_key))).collect();
    let mut inbox = InboxRows::default();
    for e in &candidates {
        inbox.push(e)?;
    }
    let stored: HashSet<(String, String)> = sqlx::query(
        "INSERT INTO inbox (connection, dedupe_key, conversation, participant, kind, occurred_at, received_at, \
         payload) \
         SELECT connection, dedupe_key, conversation, participant, kind, occurred_at, $7, payload \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $8::text[]) \
              AS event (connection, dedupe_key, conversation, participant, kind, occurred_at, payload) \
         ORDER BY connection, dedupe_key \
         ON CONFLICT (connection, dedupe_key) DO NOTHING \
         RETURNING connection, dedupe_key",
    )
    .bind(inbox.connection)
    .bind(inbox.dedupe_key)
    .bind(inbox.conversation)
    .bind(inbox.participant)
    .bind(inbox.kind)
    .bind(inbox.occurred_at)
    .bind(ms(now))
    .bind(inbox.payload)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("connection")?, row.try_get("dedupe_key")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    // Each stored key is claimed by its first occurrence in the batch only.
    let mut unclaimed: HashSet<(&str, &str)> = stored.iter().map(|(c, k)| (c.as_str(), k.as_str())).collect();
    let results: Vec<Ingested> = events
        .iter()
        .map(|e| match unclaimed.remove(&(e.leg.connection.as_str(), e.dedupe_key.as_str())) {
            true => Ingested::New,
            false => Ingested::Duplicate,
        })
        .collect();
    let new_events: Vec<&Event> =
        events.iter().zip(&results).filter(|(_, r)| **r == Ingested::New).map(|(e, _)| e).collect();
    if new_events.is_empty() {
        return Ok(Some((results, Vec::new())));
    }

    // 2. The legs these events touch, locked (in key order) and loaded as they are now.
    let mut order: Vec<&LegKey> = Vec::new();
    for e in &new_events {
        if !order.contains(&&e.leg) {
            order.push(&e.leg);
        }
    }
    let rows = sqlx::query(
        "SELECT connection, conversation, participant, version, lease_until, record FROM legs \
         WHERE (connection, conversation, participant) IN \
               (SELECT * FROM unnest($1::text[], $2::text[], $3::text[])) \
         ORDER BY connection, conversation, participant FOR UPDATE OF legs",
    )
    .bind(order.iter().map(|k| k.connection.clone()).collect::<Vec<_>>())
    .bind(order.iter().map(|k| k.conversation.clone()).collect::<Vec<_>>())
    .bind(order.iter().map(|k| k.participant.clone()).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    let mut legs: HashMap<LegKey, Touched> = HashMap::with_capacity(order.len());
    for row in rows {
        let key = LegKey::new(
            row.try_get::<String, _>("connection")?,
            row.try_get::<String, _>("conversation")?,
            row.try_get::<String, _>("participant")?,
        );
        let leg = parse_record(&row.try_get::<String, _>("record")?)?;
        let touched =
            Touched { version: row.try_get("version")?, lease_until: row.try_get("lease_until")?, leg: Some(leg) };
        legs.insert(key, touched);
    }
    let existed: HashSet<LegKey> = legs.keys().cloned().collect();
    for key in &order {
        legs.entry((*key).clone()).or_default();
    }

    // 3. Apply every new event in order; one `event` ledger line each, and the leg's outcome line when an event
    // ends it (or changes how it ended).
    let now_text = now.to_string();
    let mut lines = LedgerLines::default();
    let mut changes = Vec::new();
    for e in &new_events {
        let touched =
            legs.get_mut(&e.leg).ok_or_else(|| StoreError::Backend(format!("leg {} missing from the batch", e.leg)))?;
        let before = touched.leg.as_ref().and_then(|l| l.outcome);
        let resolved_before = crate::outbox::resolution_id(touched.leg.as_ref());
        let (leg, effect) = apply_event(touched.leg.take(), e, now);
        touched.version += 1;
        lines.push(
            &e.leg,
            now_text.clone(),
            "event",
            to_json("ledger detail", &crate::codec::EventLine::of(e, &effect.note))?,
        );
        if let Some((kind, detail)) = outcome_line(before, &leg) {
            lines.push(&e.leg, now_text.clone(), kind, to_json("ledger detail", &detail)?);
            changes.push(OutcomeChange { leg: leg.clone(), from: before });
        } else if crate::outbox::newly_recorded(resolved_before.as_deref(), &leg) {
            changes.push(OutcomeChange { leg: leg.clone(), from: before });
        }
        touched.leg = Some(leg);
    }

    // 4. Write each touched leg once, new ones in key order. An existing leg keeps its lease (a worker holding it
    // keeps it, and its next save is refused by the version bump); a new leg has none.
    let mut new_keys: Vec<&LegKey> = order.iter().copied().filter(|k| !existed.contains(*k)).collect();
    new_keys.sort();
    for key in order.iter().copied().filter(|k| existed.contains(*k)) {
        let (t, leg) = written(&legs, key)?;
        sqlx::query(
            "UPDATE legs SET state = $4, not_before = $5, deadline = $6, due_at = $7, version = $8, outcome = $9, \
             updated_at = $10, record = $11 \
             WHERE connection = $1 AND conversation = $2 AND participant = $3",
        )
        .bind(&key.connection)
        .bind(&key.conversation)
        .bind(&key.participant)
        .bind(leg.state.as_str())
        .bind(ms(leg.not_before))
        .bind(leg.order_deadline().map(ms))
        .bind(due_at(leg, t.lease_until))
        .bind(t.version)
        .bind(leg.outcome.map(Outcome::as_str))
        .bind(ms(leg.updated_at))
        .bind(to_json("leg record", leg)?)
        .execute(&mut **tx)
        .await?;
    }
    for key in new_keys {
        let (t, leg) = written(&legs, key)?;
        let inserted = sqlx::query(
            "INSERT INTO legs (connection, conversation, participant, state, not_before, deadline, due_at, version, \
             outcome, created_at, updated_at, record) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (connection, conversation, participant) DO NOTHING",
        )
        .bind(&key.connection)
        .bind(&key.conversation)
        .bind(&key.participant)
        .bind(leg.state.as_str())
        .bind(ms(leg.not_before))
        .bind(leg.order_deadline().map(ms))
        .bind(due_at(leg, None))
        .bind(t.version)
        .bind(leg.outcome.map(Outcome::as_str))
        .bind(ms(leg.created_at))
        .bind(ms(leg.updated_at))
        .bind(to_json("leg record", leg)?)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            // Another call created the leg since it was looked up: its events would be overwritten. Start over.
            return Ok(None);
        }
    }
    lines.insert(tx).await?;
    super::outbox::insert_messages(tx, &changes).await?;
    Ok(Some((results, changes)))
}

/// A leg touched by a call: as loaded (`version` 0 and no record when new), then as the events leave it.
#[derive(Default)]
struct Touched {
    version: i64,
    lease_until: Option<i64>,
    leg: Option<LegRecord>,
}

fn written<'a>(legs: &'a HashMap<LegKey, Touched>, key: &LegKey) -> StoreResult<(&'a Touched, &'a LegRecord)> {
    legs.get(key)
        .and_then(|t| t.leg.as_ref().map(|leg| (t, leg)))
        .ok_or_else(|| StoreError::Backend(format!("leg {key} missing from the batch")))
}

/// The inbox columns of a batch's candidate events, bound as arrays.
#[derive(Default)]
struct InboxRows {
    connection: Vec<String>,
    dedupe_key: Vec<String>,
    conversation: Vec<String>,
    participant: Vec<String>,
    kind: Vec<String>,
    occurred_at: Vec<i64>,
    payload: Vec<String>,
}

impl InboxRows {
    fn push(&mut self, e: &Event) -> StoreResult<()> {
        self.connection.push(e.leg.connection.clone());
        self.dedupe_key.push(e.dedupe_key.clone());
        self.conversation.push(e.leg.conversation.clone());
        self.participant.push(e.leg.participant.clone());
        self.kind.push(e.kind.name().to_string());
        self.occurred_at.push(ms(e.occurred_at));
        self.payload.push(to_json("event", e)?);
        Ok(())
    }
}
