-- A transaction ID is scoped to a device and an endpoint (spec "Transaction identifiers"): a
-- client may use the same ID to send in two rooms, or to send and to redact. `endpoint` is the
-- request's path without the ID, as in Synapse; rows from before it get '' and stay retries of
-- themselves only.
-- depends: 0170_pending_redactions_age

CREATE TABLE event_txn_ids_scoped (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, endpoint, txn_id)
);
INSERT INTO event_txn_ids_scoped (user_id, device_id, endpoint, txn_id, event_id)
    SELECT user_id, device_id, '', txn_id, event_id FROM event_txn_ids;
DROP TABLE event_txn_ids;
ALTER TABLE event_txn_ids_scoped RENAME TO event_txn_ids;
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);
