-- CRM decisions sent before their leg was known (`PUT /api/v1/decisions/...`): for one leg (`participant`) or for
-- every leg of the conversation (`participant` = ''). A leg decided later adopts the one that names it, else its
-- conversation's; a later decision for the same target replaces an earlier one.
CREATE TABLE pending_decisions (
    connection   TEXT   NOT NULL,
    conversation TEXT   NOT NULL,
    participant  TEXT   NOT NULL,
    arrived_at   BIGINT NOT NULL,
    decision     TEXT   NOT NULL,
    PRIMARY KEY (connection, conversation, participant)
);
