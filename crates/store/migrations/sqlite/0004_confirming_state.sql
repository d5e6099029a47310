-- A leg can be `confirming`: our write was answered 2xx and awaits the platform's confirmation (or a read-back).
-- SQLite cannot change a CHECK constraint in place, so the table is rebuilt with the same columns and indexes.
CREATE TABLE legs_new (
    connection   TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    participant  TEXT    NOT NULL,
    state        TEXT    NOT NULL CHECK (state IN ('open', 'scheduled', 'writing', 'closing', 'confirming', 'done')),
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
INSERT INTO legs_new (rowid, connection, conversation, participant, state, not_before, deadline, due_at, lease_owner,
                      lease_until, version, outcome, created_at, updated_at, record)
    SELECT rowid, connection, conversation, participant, state, not_before, deadline, due_at, lease_owner,
           lease_until, version, outcome, created_at, updated_at, record
    FROM legs;
DROP TABLE legs;
ALTER TABLE legs_new RENAME TO legs;

CREATE INDEX legs_due ON legs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX legs_claim_order ON legs (coalesce(deadline, 9223372036854775807), not_before, due_at)
    WHERE due_at IS NOT NULL;
CREATE INDEX legs_deadline ON legs (deadline) WHERE state IN ('open', 'scheduled');
CREATE INDEX legs_outcome ON legs (connection, outcome);
CREATE INDEX legs_created ON legs (created_at);
