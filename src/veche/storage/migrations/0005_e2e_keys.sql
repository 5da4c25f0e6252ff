-- End-to-end encryption keys, device list changes and to-device messages.
-- depends: 0004_sync

-- The identity keys a device uploaded (signed by the device itself), as uploaded.
CREATE TABLE e2e_device_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

CREATE TABLE e2e_one_time_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- One fallback key per device and algorithm; handed out (and marked used) once the
-- one-time keys have run out, until the device uploads a new one.
CREATE TABLE e2e_fallback_keys (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id TEXT NOT NULL,
    key_json TEXT NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- master, self_signing and user_signing keys (without signatures made by others).
CREATE TABLE e2e_cross_signing_keys (
    user_id TEXT NOT NULL,
    key_type TEXT NOT NULL,
    public_key TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload: on a device key (key_id is the
-- device ID) or a cross-signing key (key_id is its public key).
CREATE TABLE e2e_signatures (
    user_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (user_id, key_id, signer_user_id, signer_key_id)
);

-- The newest stream position at which each user's devices or cross-signing keys changed.
-- Who shares a room with the user is worked out when someone syncs.
CREATE TABLE device_list_changes (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);
CREATE INDEX device_list_changes_stream ON device_list_changes (stream_id);

-- To-device messages waiting for their device, deleted once the device acknowledged them.
CREATE TABLE device_inbox (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    stream_id BIGINT NOT NULL,
    message_json TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id)
);

-- A /sync response that delivered only part of a device's inbox: the sync token it
-- answered (token_pos) and the newest message it delivered. A sync from that token
-- acknowledges exactly those.
CREATE TABLE device_inbox_deliveries (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    token_pos BIGINT NOT NULL,
    delivered_upto BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, token_pos)
);

-- The newest stream position each user's to-device traffic took. Inbox rows are deleted
-- once read, so this keeps the stream's high-water mark across restarts.
CREATE TABLE to_device_positions (
    user_id TEXT PRIMARY KEY,
    stream_id BIGINT NOT NULL
);

CREATE TABLE to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
