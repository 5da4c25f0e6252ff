-- Pushes and application-service events a process of many (src/veche/cluster/outbox.py)
-- owes: written in the event's transaction, deleted once sent. When the owner dies, another
-- process takes its rows over and sends them. A single process never writes here.
-- depends: 0110_remote_media

CREATE TABLE cluster_outbox (
    kind TEXT NOT NULL,          -- 'push' (target: the user) or 'appservice' (target: its id)
    target TEXT NOT NULL,
    event_id TEXT NOT NULL,
    owner TEXT NOT NULL,         -- the worker name that sends it
    payload TEXT NOT NULL,       -- JSON: what the sender needs, without reading anything
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (kind, target, event_id)
);
CREATE INDEX cluster_outbox_owner ON cluster_outbox (owner);
