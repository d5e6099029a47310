-- The catalog audit trail: every `wrapup catalog apply` writes one line when it begins (who, the plan), one before
-- each write it sends (intent), one with each answer (result) and one when it ends. An intent without a result is
-- a write a killed run may have made: the next run looks for it before planning.
CREATE TABLE catalog_audit (
    connection TEXT    NOT NULL,
    apply_id   TEXT    NOT NULL,
    seq        BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('begin', 'intent', 'result', 'end')),
    body       TEXT    NOT NULL,
    PRIMARY KEY (apply_id, seq)
);
CREATE INDEX catalog_audit_by_connection ON catalog_audit (connection, at);
