-- One flag for "never shown to clients": outliers, rejected and soft-failed events are all
-- stored in `events` (the graph needs them) but no client reader may serve them; each
-- reader tests this column instead of three tables.
-- depends: 0040_federation_inbound 0045_federation_outbox 0025_topological_order

ALTER TABLE events ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0;
UPDATE events SET hidden = 1 WHERE outlier = 1
    OR event_id IN (SELECT event_id FROM rejections)
    OR event_id IN (SELECT event_id FROM soft_failed_events);
