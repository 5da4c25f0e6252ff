-- Simplified sliding sync (services/sliding_sync/): the state of each connection (user,
-- device, conn_id) at each position it handed out, kept until the client moves past it, so
-- a request from the last or the one before (a retried request) continues after a restart
-- or on another worker. `state` is JSON: what each room and list last sent.
-- depends: 0110_remote_media

CREATE TABLE sliding_sync_positions (
    pos TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    conn_id TEXT NOT NULL,
    stream_pos BIGINT NOT NULL,
    typing_serial BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_ts BIGINT NOT NULL
);
CREATE INDEX sliding_sync_positions_conn ON sliding_sync_positions (user_id, device_id, conn_id);
