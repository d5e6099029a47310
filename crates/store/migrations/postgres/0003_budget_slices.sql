-- Replicas sharing one OAuth client split its per-minute limit: one row per (connection, credential, replica) with
-- the slice it may spend (`share`, requests per minute), its footprint at its last report (requests answered in the
-- last minute and in flight), until when it may spend (`lease_until`) and when it reported (`reported_at`), both
-- epoch ms on the database's clock. How slices are handed out: src/budget_slices.rs.
CREATE TABLE budget_slices (
    connection  TEXT    NOT NULL,
    credential  INTEGER NOT NULL,
    owner       TEXT    NOT NULL,
    share       INTEGER NOT NULL,
    footprint   INTEGER NOT NULL,
    lease_until BIGINT  NOT NULL,
    reported_at BIGINT  NOT NULL,
    PRIMARY KEY (connection, credential, owner)
);
