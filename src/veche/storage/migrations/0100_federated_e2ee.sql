-- End-to-end encryption across servers: device lists sent to and kept from other servers,
-- and the to-device messages received from them.
-- depends: 0060_backfill

-- A local user's device list as last announced to other servers (m.device_list_update):
-- the stream_id of the newest update, and each device's (or, under device_id '', the
-- cross-signing keys') announced content, to find what changed next time.
CREATE TABLE device_list_outbound (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);
CREATE TABLE device_list_outbound_devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    content_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- Remote users' device lists: the origin's stream_id of the newest update applied,
-- whether the copy is stale (an update was missed: resync before use), and our stream
-- position when it was last known current (a join of the user after it may follow a time
-- when no room was shared and no update sent here: the list is then resynced).
CREATE TABLE remote_device_lists (
    user_id TEXT PRIMARY KEY,
    stream_id TEXT,
    stale INTEGER NOT NULL DEFAULT 1,
    synced_pos BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE remote_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT,
    display_name TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- m.direct_to_device message_ids already delivered, per origin (a retried transaction or
-- a resent EDU delivers nothing twice).
CREATE TABLE federation_to_device_seen (
    origin TEXT NOT NULL,
    message_id TEXT NOT NULL,
    received_ts BIGINT NOT NULL,
    PRIMARY KEY (origin, message_id)
);
