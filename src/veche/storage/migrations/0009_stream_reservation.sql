-- The stream positions reserved so far (one row): sync tokens never pass it, and after a
-- restart positions start above it, so no token is ever handed out twice.
-- depends: 0004_sync

CREATE TABLE stream_reservation (
    id INTEGER PRIMARY KEY,
    position BIGINT NOT NULL
);
