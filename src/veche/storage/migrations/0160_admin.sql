-- The admin API (Synapse's /_synapse/admin): rooms blocked or deleted by a server admin,
-- each user's server-notices room, and who quarantined a piece of media.
-- depends: 0110_remote_media

CREATE TABLE blocked_rooms (
    room_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    -- joins and invites refused
    blocked INTEGER NOT NULL DEFAULT 1,
    -- 1 once the room was deleted with purge: its history is no longer served to anyone.
    purged INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE server_notice_rooms (
    user_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL
);

ALTER TABLE media ADD COLUMN quarantined_by TEXT;
