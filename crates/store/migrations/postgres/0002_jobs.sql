-- Periodic jobs (a connection's reconcile pass, its detection poll) run by one replica at a time: the row's owner
-- holds the job until `lease_until` (epoch ms) and renews it each period; once the lease ran out another replica
-- takes the job over (`Store::lead`).
CREATE TABLE jobs (
    job         TEXT   PRIMARY KEY,
    owner       TEXT   NOT NULL,
    lease_until BIGINT NOT NULL
);
