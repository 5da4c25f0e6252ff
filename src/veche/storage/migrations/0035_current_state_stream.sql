-- /sync asks which entries of a room's current state changed within a window of stream
-- positions (a row's stream_ordering is when it became current), for every active room.
-- depends: 0021_drop_room_extremities

CREATE INDEX current_state_stream ON current_state (room_id, stream_ordering);
