-- Server-side key backups (spec: "Server-side key backups").
-- depends: 0004_sync

-- One row per backup version a user created. A deleted version keeps its row (deleted = 1)
-- so that its number is never handed out again: clients remember version numbers.
CREATE TABLE room_key_backup_versions (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data_json TEXT NOT NULL,
    -- Bumped whenever the keys of this version change (the `etag` clients compare).
    etag BIGINT NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, version)
);

-- The encrypted session keys of one backup version.
CREATE TABLE room_key_backups (
    user_id TEXT NOT NULL,
    version BIGINT NOT NULL,
    room_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count BIGINT NOT NULL,
    is_verified INTEGER NOT NULL,
    session_data_json TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
