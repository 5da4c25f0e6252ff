-- Backfill (services/backfill.py) and redactions that arrive before their targets.
-- Backfilled events are placed before the history this server already had, and no /sync
-- may serve them as new: they take stream orderings below zero, counted down from here.
-- depends: 0050_events_hidden

CREATE TABLE backfill_stream (pos BIGINT NOT NULL);
INSERT INTO backfill_stream (pos) VALUES (0);

-- A received redaction whose target is not here yet: applied when the target arrives.
CREATE TABLE pending_redactions (
    target_id TEXT NOT NULL,
    redaction_id TEXT NOT NULL,
    PRIMARY KEY (target_id, redaction_id)
);
