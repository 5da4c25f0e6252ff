-- Core schema: accounts, rooms, events, current state. Portable SQL (SQLite and PostgreSQL).
-- Every change visible to /sync carries a position from the one server-wide stream
-- (stream_id / stream_ordering); sync tokens are positions in that stream.

CREATE TABLE users (
    user_id TEXT PRIMARY KEY,
    password_hash TEXT,
    is_admin INTEGER NOT NULL DEFAULT 0,
    deactivated INTEGER NOT NULL DEFAULT 0,
    created_ts BIGINT NOT NULL,
    displayname TEXT,
    avatar_url TEXT
);

CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    created_ts BIGINT NOT NULL,
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Only a SHA-256 of each token is stored: tokens are 256-bit random secrets.
CREATE TABLE access_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    valid_until_ms BIGINT,
    refresh_token_hash TEXT
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- set once used: the old token stays valid until the new one is used (spec: /refresh)
    next_token_hash TEXT
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (user_id, device_id);

CREATE TABLE registration_tokens (
    token TEXT PRIMARY KEY,
    uses_allowed INTEGER,
    pending INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    expiry_time BIGINT
);

CREATE TABLE ui_auth_sessions (
    session_id TEXT PRIMARY KEY,
    created_ts BIGINT NOT NULL,
    uri TEXT NOT NULL,
    method TEXT NOT NULL,
    user_id TEXT,
    completed_json TEXT NOT NULL DEFAULT '[]',
    params_json TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE rooms (
    room_id TEXT PRIMARY KEY,
    room_version TEXT NOT NULL,
    creator TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    -- room directory visibility: 1 = published in /publicRooms
    is_public INTEGER NOT NULL DEFAULT 0
);

-- Every accepted event. Rooms on one server form a linear chain, so stream_ordering is both
-- the sync position and the order of the room's timeline; depth is the DAG depth.
CREATE TABLE events (
    stream_ordering BIGINT PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    room_id TEXT NOT NULL,
    depth BIGINT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT,
    sender TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    -- m.relates_to target and rel_type, for /relations, threads and bundled aggregations
    relates_to_id TEXT,
    rel_type TEXT,
    -- thread root this event belongs to (for threaded receipts and notification counts)
    thread_id TEXT,
    -- the event as served; replaced by its redacted form once redacted
    json TEXT NOT NULL,
    redacted_by TEXT
);
CREATE INDEX events_room_order ON events (room_id, stream_ordering);
CREATE INDEX events_room_state ON events (room_id, type, state_key, stream_ordering);
CREATE INDEX events_relations ON events (relates_to_id, rel_type);
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);

-- The room's current state: one row per (type, state_key).
CREATE TABLE current_state (
    room_id TEXT NOT NULL,
    type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (room_id, type, state_key)
);

-- Current membership of every user in every room (mirrors m.room.member current state).
CREATE TABLE room_memberships (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    membership TEXT NOT NULL,
    event_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    sender TEXT NOT NULL,
    forgotten INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, room_id)
);
CREATE INDEX room_memberships_room ON room_memberships (room_id, membership);

-- The newest event of each room: the prev_events of the next one.
CREATE TABLE room_extremities (
    room_id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL,
    depth BIGINT NOT NULL
);

-- Client transaction IDs, for idempotent PUT /send and unsigned.transaction_id.
CREATE TABLE event_txn_ids (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
CREATE INDEX event_txn_ids_event ON event_txn_ids (event_id);

CREATE TABLE room_aliases (
    room_alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

CREATE TABLE server_signing_keys (
    key_id TEXT PRIMARY KEY,
    verify_key TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
