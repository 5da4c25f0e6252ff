-- Push rules, notification counts, presence and content reports.
-- depends: 0002_sync

-- A user's own push rules and their changes to server-default rules, as one JSON document:
-- {"rules": [{"kind": ..., "rule_id": ..., ...}], "enabled": {"kind/rule_id": bool},
--  "actions": {"kind/rule_id": [...]}}; rules are in priority order within a kind.
CREATE TABLE push_rules (
    user_id TEXT PRIMARY KEY,
    rules_json TEXT NOT NULL
);

-- Unread notifications: one row per (user, event) whose push actions notify or highlight.
-- Rows up to a user's read receipt are deleted, so what remains is unread.
CREATE TABLE event_push_actions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    event_id TEXT NOT NULL,
    -- NULL for the main timeline, the thread root otherwise
    thread_id TEXT,
    notif INTEGER NOT NULL,
    highlight INTEGER NOT NULL,
    PRIMARY KEY (user_id, room_id, stream_ordering)
);

CREATE TABLE presence (
    user_id TEXT PRIMARY KEY,
    presence TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    stream_id BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_id);

CREATE TABLE content_reports (
    report_id TEXT PRIMARY KEY,
    reporter TEXT NOT NULL,
    room_id TEXT,
    event_id TEXT,
    target_user_id TEXT,
    reason TEXT,
    received_ts BIGINT NOT NULL
);
CREATE INDEX content_reports_ts ON content_reports (received_ts);
