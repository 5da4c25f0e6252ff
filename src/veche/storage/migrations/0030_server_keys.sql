-- Other servers' signing keys (server-server API "Retrieving server keys"), kept until they
-- expire, and the last key response seen for each server, which this server serves again
-- as a notary (/_matrix/key/v2/query).
-- depends: 0021_drop_room_extremities

CREATE TABLE server_signature_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    verify_key TEXT NOT NULL,
    -- Current keys: valid until this (already capped at fetch time + 7 days); old keys: the
    -- time they expired, so they verify only what was signed before.
    valid_until_ts BIGINT NOT NULL,
    is_old BOOLEAN NOT NULL,
    fetched_ts BIGINT NOT NULL,
    -- The server the key was learned from: the key's owner, or a notary.
    from_server TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);

CREATE TABLE server_keys_json (
    server_name TEXT PRIMARY KEY,
    valid_until_ts BIGINT NOT NULL,
    fetched_ts BIGINT NOT NULL,
    key_json TEXT NOT NULL
);
