-- wrapup store, SQLite schema v1.
--
-- Times in indexed columns are integer epoch milliseconds (numeric comparisons, compact indexes); the JSON columns
-- keep full-precision RFC 3339 timestamps. A PostgreSQL implementation keeps its own folder (migrations/postgres/).

-- Every accepted event, unique by (connection, dedupe_key). `payload` is the normalized `Event` as JSON.
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY,
    connection   TEXT    NOT NULL,
    dedupe_key   TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    participant  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    occurred_at  INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    payload      TEXT    NOT NULL,
    UNIQUE (connection, dedupe_key)
);

-- One row per leg. `record` is the full `LegRecord` as JSON; the other columns are copies of what queries filter
-- and sort on, written together with it.
--
-- `due_at` is when a worker may next claim the leg: NULL once done; for open/scheduled legs
-- max(not_before, lease_until); for writing legs lease_until (or at once without a lease). Claiming is then a range
-- on one column and `next_due` is one index lookup.
CREATE TABLE legs (
    connection   TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    participant  TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('open', 'scheduled', 'writing', 'done')),
    not_before   INTEGER NOT NULL,
    deadline     INTEGER,
    due_at       INTEGER,
    lease_owner  TEXT,
    lease_until  INTEGER,
    version      INTEGER NOT NULL,
    outcome      TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    record       TEXT    NOT NULL,
    PRIMARY KEY (connection, conversation, participant)
);

-- claim_due / next_due: the legs a worker may take now.
CREATE INDEX legs_due ON legs (due_at) WHERE due_at IS NOT NULL;
-- claim_due order: earliest deadline first, legs without a deadline last, then not_before.
CREATE INDEX legs_claim_order ON legs (coalesce(deadline, 9223372036854775807), not_before) WHERE due_at IS NOT NULL;
-- expire_overdue: unfinished, not writing, past the deadline.
CREATE INDEX legs_deadline ON legs (deadline) WHERE state IN ('open', 'scheduled');
-- outcome_counts (covering) and list_legs filters.
CREATE INDEX legs_outcome ON legs (connection, outcome);
-- list_legs: newest first.
CREATE INDEX legs_created ON legs (created_at);

-- Append-only explanation of each leg. Ids only grow (rows are never deleted), so `ORDER BY id` is append order.
CREATE TABLE ledger (
    id           INTEGER PRIMARY KEY,
    connection   TEXT NOT NULL,
    conversation TEXT NOT NULL,
    participant  TEXT NOT NULL,
    at           TEXT NOT NULL,
    kind         TEXT NOT NULL,
    detail       TEXT NOT NULL
);
CREATE INDEX ledger_leg ON ledger (connection, conversation, participant, id);

-- The last catalog fetched per connection.
CREATE TABLE catalog_cache (
    connection TEXT PRIMARY KEY,
    catalog    TEXT NOT NULL,
    fetched_at TEXT NOT NULL
);

-- First response per (connection, idempotency key) of the external decision API.
CREATE TABLE idempotency (
    connection TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    response   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (connection, key)
);
