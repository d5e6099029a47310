//! How both stores put a leg, a ledger line and a catalog into rows and read them back: records and details as
//! JSON text, times in indexed columns as epoch milliseconds, `due_at` by one rule. The stores differ in their SQL
//! and their connections, not in what a row means.

use crate::{ClaimedLeg, LedgerEntry, OutcomeCounts, StoreError, StoreResult};
use jiff::Timestamp;
use sqlx::{ColumnIndex, Decode, Row, Type};
use wrapup_core::catalog::Catalog;
use wrapup_core::lifecycle::{LegRecord, LegState};
use wrapup_core::{Event, Outcome};

pub(crate) fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("unreadable {what} in the database: {e}"))
}

pub(crate) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(format!("cannot serialize {what}: {e}")))
}

pub(crate) fn parse_record(json: &str) -> StoreResult<LegRecord> {
    serde_json::from_str(json).map_err(|e| corrupt("leg record", e))
}

/// When a worker may next claim `leg` (see the stores' module docs), given its lease.
pub(crate) fn due_at(leg: &LegRecord, lease_until: Option<i64>) -> Option<i64> {
    match leg.state {
        LegState::Done => None,
        LegState::Open | LegState::Scheduled | LegState::Closing | LegState::Confirming => {
            let not_before = ms(leg.not_before);
            Some(lease_until.map_or(not_before, |l| l.max(not_before)))
        }
        LegState::Writing => Some(lease_until.unwrap_or_else(|| ms(leg.updated_at))),
    }
}

/// A text column of `row`.
fn text<'r, R>(row: &'r R, column: &'static str) -> StoreResult<String>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(row.try_get(column)?)
}

/// The `record` column, as a leg.
pub(crate) fn record<'r, R>(row: &'r R) -> StoreResult<LegRecord>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    parse_record(&text(row, "record")?)
}

/// The `record` and `version` columns.
pub(crate) fn claimed<'r, R>(row: &'r R) -> StoreResult<ClaimedLeg>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ClaimedLeg { leg: record(row)?, version: row.try_get("version")? })
}

/// A ledger line from its `at`, `kind` and `detail` columns.
pub(crate) fn ledger_entry<'r, R>(row: &'r R) -> StoreResult<LedgerEntry>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(LedgerEntry {
        at: text(row, "at")?.parse().map_err(|e| corrupt("ledger time", e))?,
        kind: text(row, "kind")?,
        detail: serde_json::from_str(&text(row, "detail")?).map_err(|e| corrupt("ledger detail", e))?,
    })
}

/// Adds one `outcome, n` row of a count grouped by outcome to `counts`.
pub(crate) fn add_outcome_count<'r, R>(counts: &mut OutcomeCounts, row: &'r R) -> StoreResult<()>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    Option<String>: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let outcome: Option<String> = row.try_get("outcome")?;
    let outcome = outcome.map(|s| Outcome::parse(&s).ok_or_else(|| corrupt("outcome", s))).transpose()?;
    let n: i64 = row.try_get("n")?;
    counts.insert(outcome, n.max(0) as u64);
    Ok(())
}

/// A cached catalog from its `catalog` and `fetched_at` columns.
pub(crate) fn cached_catalog<'r, R>(row: &'r R) -> StoreResult<(Catalog, Timestamp)>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok((
        serde_json::from_str(&text(row, "catalog")?).map_err(|e| corrupt("catalog", e))?,
        text(row, "fetched_at")?.parse().map_err(|e| corrupt("catalog fetch time", e))?,
    ))
}

/// One catalog audit line from a row of `catalog_audit`.
pub(crate) fn catalog_audit_line<'r, R>(row: &'r R) -> StoreResult<crate::CatalogAuditLine>
where
    R: Row,
    &'static str: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    let int = |column: &'static str| row.try_get::<i64, _>(column).map_err(|e| corrupt(column, e));
    Ok(crate::CatalogAuditLine {
        connection: text(row, "connection")?,
        apply_id: text(row, "apply_id")?,
        seq: int("seq")?,
        at: Timestamp::from_millisecond(int("at")?).map_err(|e| corrupt("catalog audit time", e))?,
        actor: text(row, "actor")?,
        kind: text(row, "kind")?,
        body: serde_json::from_str(&text(row, "body")?).map_err(|e| corrupt("catalog audit line", e))?,
    })
}

/// The detail of the ledger line recording one applied event, serialized straight from the event's fields.
#[derive(serde::Serialize)]
pub(crate) struct EventLine<'a> {
    event: &'static str,
    dedupe_key: &'a str,
    occurred_at: Timestamp,
    correlation_id: Option<&'a str>,
    note: &'a str,
    /// A CRM's decision: its code, source, idempotency key and arrival, for the leg's explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<&'a wrapup_core::lifecycle::ExternalDecision>,
    /// An operator's resolution from the review queue: who, when, which code, the note.
    #[serde(skip_serializing_if = "Option::is_none")]
    operator: Option<&'a wrapup_core::lifecycle::OperatorResolution>,
}

impl<'a> EventLine<'a> {
    pub(crate) fn of(event: &'a Event, note: &'a str) -> Self {
        EventLine {
            event: event.kind.name(),
            dedupe_key: &event.dedupe_key,
            occurred_at: event.occurred_at,
            correlation_id: event.correlation_id.as_deref(),
            note,
            decision: match &event.kind {
                wrapup_core::EventKind::DecisionArrived { decision } => Some(decision),
                _ => None,
            },
            operator: match &event.kind {
                wrapup_core::EventKind::OperatorResolved { resolution } => Some(resolution),
                _ => None,
            },
        }
    }
}

/// A JSON column read back: `None` stays `None`, text that does not parse is corrupt `what`.
pub(crate) fn from_json_opt<T: serde::de::DeserializeOwned>(
    text: Option<String>,
    what: &str,
) -> StoreResult<Option<T>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(what, e))).transpose()
}
