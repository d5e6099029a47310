-- The outbox: one message per change of a leg's outcome (its first ending, and the one change of a finished leg's
-- outcome), inserted in the transaction that made the change, so a final code is never recorded without being
-- announced. `body` is the versioned message (docs/schemas/outbox-message.v1.json) as JSON text. `routed_at` is set
-- once the delivery loop has given the message a row per sink that wants it.
CREATE TABLE outbox (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    connection   TEXT    NOT NULL,
    conversation TEXT    NOT NULL,
    participant  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    routed_at    BIGINT,
    body         TEXT    NOT NULL
);
CREATE INDEX outbox_unrouted ON outbox (seq) WHERE routed_at IS NULL;
CREATE INDEX outbox_by_leg ON outbox (connection, conversation, participant, seq);
CREATE INDEX outbox_by_time ON outbox (created_at);

-- One row per (message, sink): the body as sent to that sink (signed as is, so a retry or a replay sends the same
-- bytes), and where its delivery stands. `dead` rows are the dead letters. A pending row is claimed with a lease.
CREATE TABLE outbox_deliveries (
    seq             BIGINT NOT NULL REFERENCES outbox (seq),
    sink            TEXT    NOT NULL,
    connection      TEXT    NOT NULL,
    conversation    TEXT    NOT NULL,
    participant     TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_at         BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_attempt_at BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    delivered_at    BIGINT,
    body            TEXT    NOT NULL,
    PRIMARY KEY (seq, sink)
);
-- Claims walk a sink's pending rows oldest message first and stop at their limit.
CREATE INDEX outbox_deliveries_pending ON outbox_deliveries (sink, seq) WHERE state = 'pending';
CREATE INDEX outbox_deliveries_pending_by_leg
    ON outbox_deliveries (sink, connection, conversation, participant, seq) WHERE state = 'pending';
CREATE INDEX outbox_deliveries_by_state ON outbox_deliveries (state, sink, seq);

-- A sink the receiver retired (410 Gone) stays disabled, across restarts and replicas, until an operator enables it.
CREATE TABLE outbox_sinks (
    name            TEXT    PRIMARY KEY,
    disabled_at     BIGINT,
    disabled_status BIGINT,
    disabled_reason TEXT
);
