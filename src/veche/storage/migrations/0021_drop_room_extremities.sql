-- The room's newest event is now the deepest of its forward extremities
-- (event_forward_extremities, made by 0020): the one-row-per-room table is gone.
-- depends: 0020_event_graph

DROP TABLE room_extremities;
