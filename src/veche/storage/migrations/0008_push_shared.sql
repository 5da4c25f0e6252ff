-- Unread counts without a row per member per event.
-- depends: 0004_sync

-- The push actions of members who have the server-default rules and are not named in the
-- event: one row per event that notifies or highlights. It counts for every joined member
-- but the sender, from their join on; event_push_actions now holds only the members whose
-- actions differ from it (rows with notif = highlight = 0 cancel it for that member).
CREATE TABLE room_push_actions (
    room_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    sender TEXT NOT NULL,
    -- NULL for the main timeline, the thread root otherwise
    thread_id TEXT,
    notif INTEGER NOT NULL,
    highlight INTEGER NOT NULL,
    PRIMARY KEY (room_id, stream_ordering)
);

-- How far each member has read: thread_id '' for everything (an unthreaded receipt, or the
-- join), 'main' for the main timeline, or a thread root.
CREATE TABLE push_read_positions (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);
