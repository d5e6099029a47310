-- wrapup store, PostgreSQL schema v1: the same tables and columns as the SQLite schema (migrations/sqlite/).
--
-- Times in indexed columns are epoch milliseconds (BIGINT, truncated); the JSON text columns (`record`, `payload`,
-- `detail`, `catalog`) and the text times (`ledger.at`, `catalog_cache.fetched_at`) keep full-precision RFC 3339
-- timestamps. JSON is stored as TEXT written by serde_json and read back by it, so a record round-trips exactly.

-- Every accepted event, unique by (connection, dedupe_key). `payload` is the normalized `Event` as JSON.
CREATE TABLE inbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection   TEXT   NOT NULL,
    dedupe_key   TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    participant  TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    occurred_at  BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    payload      TEXT   NOT NULL,
    UNIQUE (connection, dedupe_key)
);

-- One row per leg. `record` is the full `LegRecord` as JSON; the other columns are copies of what queries filter
-- and sort on, written together with it. `id` only names a row in short statements (claims, expiry) and breaks ties
-- in `list_legs`; the leg's identity is the primary key.
--
-- `due_at` is when a worker may next claim the leg: NULL once done; for open/scheduled/closing/confirming legs
-- greatest(not_before, lease_until); for writing legs lease_until (or at once without a lease). Claiming is then a
-- range on one column and `next_due` is one index lookup.
CREATE TABLE legs (
    id           BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    connection   TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    participant  TEXT   NOT NULL,
    state        TEXT   NOT NULL
        CHECK (state IN ('open', 'scheduled', 'writing', 'closing', 'confirming', 'done')),
    not_before   BIGINT NOT NULL,
    deadline     BIGINT,
    due_at       BIGINT,
    lease_owner  TEXT,
    lease_until  BIGINT,
    version      BIGINT NOT NULL,
    outcome      TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    record       TEXT   NOT NULL,
    PRIMARY KEY (connection, conversation, participant)
);

-- next_due: the earliest due leg.
CREATE INDEX legs_due ON legs (due_at) WHERE due_at IS NOT NULL;
-- claim_due order: earliest deadline first, legs without a deadline last, then not_before; due_at in the index so
-- legs that are not due are skipped without fetching their rows.
CREATE INDEX legs_claim_order ON legs ((coalesce(deadline, 9223372036854775807)), not_before, due_at)
    WHERE due_at IS NOT NULL;
-- expire_overdue: unfinished, not writing, past the deadline.
CREATE INDEX legs_deadline ON legs (deadline) WHERE state IN ('open', 'scheduled');
-- outcome_counts and list_legs filters.
CREATE INDEX legs_outcome ON legs (connection, outcome);
-- list_legs: newest first.
CREATE INDEX legs_created ON legs (created_at, id);

-- Append-only explanation of each leg. Ids only grow (rows are never deleted), so `ORDER BY id` is the order in
-- which the lines were inserted.
CREATE TABLE ledger (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connection   TEXT NOT NULL,
    conversation TEXT NOT NULL,
    participant  TEXT NOT NULL,
    at           TEXT NOT NULL,
    kind         TEXT NOT NULL,
    detail       TEXT NOT NULL
);
CREATE INDEX ledger_leg ON ledger (connection, conversation, participant, id);
-- count_ledger_lines.
CREATE INDEX ledger_kind ON ledger (connection, kind);

-- The last catalog fetched per connection.
CREATE TABLE catalog_cache (
    connection TEXT PRIMARY KEY,
    catalog    TEXT NOT NULL,
    fetched_at TEXT NOT NULL
);

-- First response per (connection, idempotency key) of the external decision API.
CREATE TABLE idempotency (
    connection TEXT   NOT NULL,
    key        TEXT   NOT NULL,
    response   TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (connection, key)
);
