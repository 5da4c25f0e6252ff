-- Receiving from other servers: each origin's transactions with the answer given, so a
-- retried PUT /send gets the same answer and nothing is processed twice (kept a day); and
-- soft-failed events (server-server API "Soft failure": stored with their place in the
-- graph and the state at them, but no forward extremities, no current state, not shown to
-- clients).
-- depends: 0030_server_keys

CREATE TABLE received_transactions (
    origin TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    response TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);
CREATE INDEX received_transactions_ts ON received_transactions (received_ts);

CREATE TABLE soft_failed_events (event_id TEXT PRIMARY KEY);
