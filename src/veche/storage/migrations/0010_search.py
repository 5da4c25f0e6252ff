"""Full-text search of room events (/search): SQLite FTS5, or a PostgreSQL tsvector with a
GIN index; filled from the events already stored. Encrypted events have no text to index."""

from yoyo import step

__depends__ = {"0009_stream_reservation"}

# (event type, content key) pairs that /search looks in.
KEYS = (("m.room.message", "body"), ("m.room.name", "name"), ("m.room.topic", "topic"))


def _postgres(conn) -> bool:
    return not type(conn).__module__.startswith("sqlite3")


def apply(conn) -> None:
    cur = conn.cursor()
    if _postgres(conn):
        cur.execute(
            "CREATE TABLE event_search (event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL,"
            " key TEXT NOT NULL, stream_ordering BIGINT NOT NULL, vector TSVECTOR NOT NULL)")
        cur.execute("CREATE INDEX event_search_vector ON event_search USING GIN (vector)")
        cur.execute("CREATE INDEX event_search_room ON event_search (room_id, stream_ordering)")
        for etype, key in KEYS:
            cur.execute(
                "INSERT INTO event_search (event_id, room_id, key, stream_ordering, vector)"
                " SELECT event_id, room_id, %s, stream_ordering,"
                "  to_tsvector('simple', (json::jsonb) -> 'content' ->> %s) FROM events"
                " WHERE type = %s AND redacted_by IS NULL"
                "  AND jsonb_typeof((json::jsonb) -> 'content' -> %s) = 'string'",
                (f"content.{key}", key, etype, key))
    else:
        cur.execute(
            "CREATE VIRTUAL TABLE event_search USING fts5(value, event_id UNINDEXED,"
            " room_id UNINDEXED, key UNINDEXED, stream_ordering UNINDEXED)")
        for etype, key in KEYS:
            cur.execute(
                "INSERT INTO event_search (value, event_id, room_id, key, stream_ordering)"
                " SELECT json_extract(json, '$.content.' || ?), event_id, room_id, ?,"
                "  stream_ordering FROM events WHERE type = ? AND redacted_by IS NULL"
                "  AND json_type(json, '$.content.' || ?) = 'text'",
                (key, f"content.{key}", etype, key))


def rollback(conn) -> None:
    conn.cursor().execute("DROP TABLE event_search")


steps = [step(apply, rollback)]
