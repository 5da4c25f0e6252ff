-- A redaction waiting for a target that never comes must not wait for ever: when it began
-- waiting (milliseconds; 0 for rows from before this column, stamped at the next cleanup),
-- so storage/backfill.py can drop those waiting longer than the age limit.
-- depends: 0160_admin

ALTER TABLE pending_redactions ADD COLUMN received_ts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX pending_redactions_received ON pending_redactions (received_ts);
