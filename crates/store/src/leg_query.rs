//! The `list_legs`, `review_legs` and `attempt_counts` queries, written once for both backends: they differ only in how a parameter is
//! written, how a field of the JSON record is read, and a planner hint.

use crate::api::{LegFilter, ReviewFilter};
use crate::codec;

/// A bound value of the query, in order.
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// A text field of the leg's JSON record, by its path.
    fn field(self, path: &[&str]) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract(record, '$.{}')", path.join(".")),
            Dialect::Postgres => format!("(record::jsonb #>> '{{{}}}')", path.join(",")),
        }
    }
}

/// Collects the binds and writes each placeholder in the dialect's form.
struct Params {
    dialect: Dialect,
    binds: Vec<Bind>,
}

impl Params {
    fn add(&mut self, value: Bind) -> String {
        self.binds.push(value);
        match self.dialect {
            Dialect::Sqlite => "?".to_string(),
            Dialect::Postgres => format!("${}", self.binds.len()),
        }
    }

    /// ` AND (a = v OR b = v …)` over fields of the JSON record.
    fn any_field(&mut self, value: &str, paths: &[&[&str]]) -> String {
        let parts: Vec<String> = paths
            .iter()
            .map(|path| format!("{} = {}", self.dialect.field(path), self.add(Bind::Text(value.to_string()))))
            .collect();
        format!(" AND ({})", parts.join(" OR "))
    }
}

/// The SQL and its binds. Only fixed fragments are spliced in; every value is a bound parameter.
pub(crate) fn list_legs(filter: &LegFilter, dialect: Dialect, default_limit: u32) -> (String, Vec<Bind>) {
    let mut sql = String::from("SELECT record FROM legs WHERE 1 = 1");
    let mut p = Params { dialect, binds: Vec::new() };
    if let Some(connection) = &filter.connection {
        // SQLite: `+connection` keeps the planner on `legs_created` (newest first, stops at the limit) instead of
        // fetching every leg of the connection through `legs_outcome` and sorting them.
        let column = if dialect == Dialect::Sqlite { "+connection" } else { "connection" };
        sql.push_str(&format!(" AND {column} = {}", p.add(Bind::Text(connection.clone()))));
    }
    if let Some(outcome) = filter.outcome {
        sql.push_str(&format!(" AND outcome = {}", p.add(Bind::Text(outcome.as_str().into()))));
    }
    if filter.open_only {
        sql.push_str(" AND state <> 'done'");
    }
    if let Some(conversation) = &filter.conversation {
        sql.push_str(&format!(" AND conversation = {}", p.add(Bind::Text(conversation.clone()))));
    }
    if let Some(from) = filter.from {
        sql.push_str(&format!(" AND created_at >= {}", p.add(Bind::Int(codec::ms(from)))));
    }
    if let Some(to) = filter.to {
        sql.push_str(&format!(" AND created_at < {}", p.add(Bind::Int(codec::ms(to)))));
    }
    if let Some(queue) = &filter.queue {
        sql.push_str(&p.any_field(queue, &[&["facts", "queue_id"], &["facts", "queue_name"]]));
    }
    if let Some(code) = &filter.code {
        sql.push_str(&p.any_field(code, &[&["decision", "code_name"], &["intent", "code_id"], &["observed_code"]]));
    }
    if let Some(agent) = &filter.agent {
        sql.push_str(&p.any_field(agent, &[&["facts", "user_id"]]));
    }
    if let Some(after) = &filter.after {
        let created = p.add(Bind::Int(codec::ms(after.created_at)));
        let connection = p.add(Bind::Text(after.key.connection.clone()));
        let conversation = p.add(Bind::Text(after.key.conversation.clone()));
        let participant = p.add(Bind::Text(after.key.participant.clone()));
        sql.push_str(&format!(
            " AND (created_at, connection, conversation, participant) < ({created}, {connection}, {conversation}, {participant})"
        ));
    }
    let limit = p.add(Bind::Int(i64::from(filter.limit.unwrap_or(default_limit))));
    sql.push_str(&format!(
        " ORDER BY created_at DESC, connection DESC, conversation DESC, participant DESC LIMIT {limit}"
    ));
    (sql, p.binds)
}

/// The review queue: finished legs in `review` (and `expired` when asked) that no operator resolved or dismissed. A
/// leg an operator handed back to the worker (`written`) that ended without our code again waits again.
pub(crate) fn review_legs(filter: &ReviewFilter, dialect: Dialect) -> (String, Vec<Bind>) {
    let mut p = Params { dialect, binds: Vec::new() };
    let also = p.add(Bind::Text(if filter.include_expired { "expired" } else { "review" }.into()));
    let action = dialect.field(&["resolution", "action"]);
    let mut sql = format!(
        "SELECT record FROM legs WHERE state = 'done' AND outcome IN ('review', {also}) \
         AND coalesce({action}, 'written') = 'written'"
    );
    if let Some(connection) = &filter.connection {
        sql.push_str(&format!(" AND connection = {}", p.add(Bind::Text(connection.clone()))));
    }
    if let Some(after) = &filter.after {
        let created = p.add(Bind::Int(after.created_at_ms));
        let connection = p.add(Bind::Text(after.key.connection.clone()));
        let conversation = p.add(Bind::Text(after.key.conversation.clone()));
        let participant = p.add(Bind::Text(after.key.participant.clone()));
        sql.push_str(&format!(
            " AND (created_at, connection, conversation, participant) > ({created}, {connection}, {conversation}, {participant})"
        ));
    }
    let limit = p.add(Bind::Int(i64::from(filter.limit)));
    sql.push_str(&format!(" ORDER BY created_at, connection, conversation, participant LIMIT {limit}"));
    (sql, p.binds)
}

/// Binds `binds` to `sql`, in order.
pub(crate) fn bound<DB>(
    sql: &str,
    binds: Vec<Bind>,
) -> sqlx::query::Query<'_, DB, <DB as sqlx::Database>::Arguments<'_>>
where
    DB: sqlx::Database,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut query = sqlx::query(sql);
    for bind in binds {
        query = match bind {
            Bind::Text(t) => query.bind(t),
            Bind::Int(i) => query.bind(i),
        };
    }
    query
}

/// The attempt lines of each of `legs`, grouped by leg (`None` for no legs: nothing to ask).
pub(crate) fn attempt_counts(legs: &[wrapup_core::LegKey], dialect: Dialect) -> Option<(String, Vec<Bind>)> {
    if legs.is_empty() {
        return None;
    }
    let mut p = Params { dialect, binds: Vec::new() };
    let rows: Vec<String> = legs
        .iter()
        .map(|k| {
            let c = p.add(Bind::Text(k.connection.clone()));
            let v = p.add(Bind::Text(k.conversation.clone()));
            let a = p.add(Bind::Text(k.participant.clone()));
            format!("({c}, {v}, {a})")
        })
        .collect();
    let sql = format!(
        "SELECT connection, conversation, participant, count(*) FROM ledger WHERE kind = 'attempt' \
         AND (connection, conversation, participant) IN (VALUES {}) GROUP BY connection, conversation, participant",
        rows.join(", ")
    );
    Some((sql, p.binds))
}
