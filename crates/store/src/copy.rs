//! `wrapup store copy`: moves a deployment's embedded SQLite file into an empty PostgreSQL database, every row of
//! every table — events, legs, ledger lines, the catalog cache, idempotency keys, the outbox — in one PostgreSQL transaction, so
//! that the target has all of it or nothing. The source is read in one read transaction (a consistent snapshot);
//! stop the service first, since what it writes after the snapshot is not copied. Row ids are kept (a leg's ledger is
//! read in id order), and leases are dropped: they belong to the process that wrote the file, which is stopped.

use crate::codec::{due_at, parse_record};
use crate::{PostgresStore, SqliteStore, StoreError, StoreResult};
use sqlx::{Row, Sqlite, Transaction};

/// Rows per statement.
const PAGE: i64 = 1_000;

/// A value of one column.
enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

/// One table to copy: its name, its columns (all but the id, which goes first where there is one) and the column
/// the source pages by.
struct Table {
    name: &'static str,
    /// `Some(column)`: the table's id column in PostgreSQL, read from the SQLite rowid and kept.
    id: Option<&'static str>,
    columns: &'static [(&'static str, bool)],
}

const TEXT: bool = false;
const INT: bool = true;

const TABLES: &[Table] = &[
    Table {
        name: "inbox",
        id: Some("id"),
        columns: &[
            ("connection", TEXT),
            ("dedupe_key", TEXT),
            ("conversation", TEXT),
            ("participant", TEXT),
            ("kind", TEXT),
            ("occurred_at", INT),
            ("received_at", INT),
            ("payload", TEXT),
        ],
    },
    Table {
        name: "legs",
        id: Some("id"),
        columns: &[
            ("connection", TEXT),
            ("conversation", TEXT),
            ("participant", TEXT),
            ("state", TEXT),
            ("not_before", INT),
            ("deadline", INT),
            ("due_at", INT),
            ("lease_owner", TEXT),
            ("lease_until", INT),
            ("version", INT),
            ("outcome", TEXT),
            ("created_at", INT),
            ("updated_at", INT),
            ("record", TEXT),
        ],
    },
    Table {
        name: "ledger",
        id: Some("id"),
        columns: &[
            ("connection", TEXT),
            ("conversation", TEXT),
            ("participant", TEXT),
            ("at", TEXT),
            ("kind", TEXT),
            ("detail", TEXT),
        ],
    },
    Table {
        name: "catalog_cache",
        id: None,
        columns: &[("connection", TEXT), ("catalog", TEXT), ("fetched_at", TEXT)],
    },
    Table {
        name: "idempotency",
        id: None,
        columns: &[("connection", TEXT), ("key", TEXT), ("response", TEXT), ("created_at", INT)],
    },
    Table {
        name: "pending_decisions",
        id: None,
        columns: &[
            ("connection", TEXT),
            ("conversation", TEXT),
            ("participant", TEXT),
            ("arrived_at", INT),
            ("decision", TEXT),
        ],
    },
    Table {
        name: "catalog_audit",
        id: None,
        columns: &[
            ("connection", TEXT),
            ("apply_id", TEXT),
            ("seq", INT),
            ("at", INT),
            ("actor", TEXT),
            ("kind", TEXT),
            ("body", TEXT),
        ],
    },
    Table {
        name: "outbox",
        id: Some("seq"),
        columns: &[
            ("id", TEXT),
            ("connection", TEXT),
            ("conversation", TEXT),
            ("participant", TEXT),
            ("kind", TEXT),
            ("outcome", TEXT),
            ("created_at", INT),
            ("routed_at", INT),
            ("body", TEXT),
        ],
    },
    Table {
        name: "outbox_deliveries",
        id: None,
        columns: &[
            ("seq", INT),
            ("sink", TEXT),
            ("connection", TEXT),
            ("conversation", TEXT),
            ("participant", TEXT),
            ("state", TEXT),
            ("attempts", INT),
            ("next_at", INT),
            ("expires_at", INT),
            ("lease_owner", TEXT),
            ("lease_until", INT),
            ("last_attempt_at", INT),
            ("last_status", INT),
            ("last_error", TEXT),
            ("delivered_at", INT),
            ("body", TEXT),
        ],
    },
    Table {
        name: "outbox_sinks",
        id: None,
        columns: &[("name", TEXT), ("disabled_at", INT), ("disabled_status", INT), ("disabled_reason", TEXT)],
    },
];

/// Rows copied so far, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyProgress {
    pub table: &'static str,
    pub copied: u64,
    pub total: u64,
}

/// What a copy moved, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CopyReport {
    pub tables: Vec<TableCopied>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TableCopied {
    pub table: String,
    pub rows: u64,
}

impl CopyReport {
    pub fn rows(&self, table: &str) -> u64 {
        self.tables.iter().find(|t| t.table == table).map_or(0, |t| t.rows)
    }
}

/// Copies every row of `from` into `to`, which must hold no events, legs or ledger lines yet. `progress` is called
/// after each page.
pub async fn copy_sqlite_to_postgres(
    from: &SqliteStore,
    to: &PostgresStore,
    mut progress: impl FnMut(CopyProgress),
) -> StoreResult<CopyReport> {
    let mut target = to.pool().begin().await?;
    for table in ["inbox", "legs", "ledger"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}")).fetch_one(&mut *target).await?;
        if n > 0 {
            return Err(StoreError::Backend(format!(
                "the target database already holds {n} rows in `{table}`: copy only into a database that holds no \
                 wrapup data (a new one, migrated by `wrapup migrate`)"
            )));
        }
    }
    let mut source: Transaction<'_, Sqlite> = from.reader().begin().await?;
    let mut report = CopyReport::default();
    for table in TABLES {
        let total: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {}", table.name)).fetch_one(&mut *source).await?;
        let total = total as u64;
        let names: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let select = format!(
            "SELECT rowid AS copy_rowid, {} FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            names.join(", "),
            table.name
        );
        let mut insert_columns = Vec::new();
        insert_columns.extend(table.id);
        insert_columns.extend(&names);
        let insert_head = format!(
            "INSERT INTO {} ({}) {}",
            table.name,
            insert_columns.join(", "),
            if table.id.is_some() { "OVERRIDING SYSTEM VALUE " } else { "" }
        );
        let (mut after, mut copied) = (i64::MIN, 0_u64);
        loop {
            let rows = sqlx::query(&select).bind(after).bind(PAGE).fetch_all(&mut *source).await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("copy_rowid")?;
            let mut values = Vec::with_capacity(rows.len());
            for row in &rows {
                values.push(read_row(table, row)?);
            }
            let mut insert = sqlx::QueryBuilder::<sqlx::Postgres>::new(&insert_head);
            insert.push_values(values, |mut b, row| {
                for value in row {
                    match value {
                        Value::Int(v) => b.push_bind(v),
                        Value::Text(v) => b.push_bind(v),
                    };
                }
            });
            insert.build().execute(&mut *target).await?;
            copied += rows.len() as u64;
            progress(CopyProgress { table: table.name, copied, total });
        }
        if let Some(id) = table.id {
            // New rows continue after the copied ids.
            sqlx::query(&format!(
                "SELECT setval(pg_get_serial_sequence('{0}', '{id}'), coalesce(max({id}), 0) + 1, false) FROM {0}",
                table.name
            ))
            .execute(&mut *target)
            .await?;
        }
        // Nothing lost on the way: the target holds exactly the source's rows (it held none before).
        let held: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {}", table.name)).fetch_one(&mut *target).await?;
        if copied != total || held as u64 != total {
            return Err(StoreError::Backend(format!(
                "`{}`: the source has {total} rows, {copied} were read and the target holds {held}; nothing was \
                 committed",
                table.name
            )));
        }
        report.tables.push(TableCopied { table: table.name.to_string(), rows: copied });
    }
    source.rollback().await?;
    target.commit().await?;
    Ok(report)
}

/// One source row as the target's values: the id (the rowid) first where the table keeps it, then the columns. A
/// leg's lease is dropped and its `due_at` recomputed without it.
fn read_row(table: &Table, row: &sqlx::sqlite::SqliteRow) -> StoreResult<Vec<Value>> {
    let mut values = Vec::with_capacity(table.columns.len() + 1);
    if table.id.is_some() {
        values.push(Value::Int(Some(row.try_get("copy_rowid")?)));
    }
    let unleased_due_at = match table.name {
        "legs" => {
            let record: String = row.try_get("record")?;
            Some(due_at(&parse_record(&record)?, None))
        }
        _ => None,
    };
    for (column, int) in table.columns {
        let value = match (*column, unleased_due_at) {
            ("lease_owner", Some(_)) => Value::Text(None),
            ("lease_until", Some(_)) => Value::Int(None),
            ("due_at", Some(due)) => Value::Int(due),
            _ if *int => Value::Int(row.try_get(*column)?),
            _ => Value::Text(row.try_get(*column)?),
        };
        values.push(value);
    }
    Ok(values)
}
