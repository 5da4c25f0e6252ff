-- A room's timeline in topological order, (depth, stream_ordering), as /messages, /context
-- and /relations read it (storage/history.py).
-- depends: 0021_drop_room_extremities

CREATE INDEX events_room_topological ON events (room_id, depth, stream_ordering);
