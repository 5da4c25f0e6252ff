"""SQLite: searchable text waiting to go into the FTS5 index (storage/search.py). FTS5
writes a new index segment at every commit that added a row, ~0.1 ms of CPU for a
transaction that persists one event; rows wait here (a plain insert) and go into the index
many at a time, and before any search. PostgreSQL's GIN index batches its own updates."""

from typing import Any

from yoyo import step

__depends__ = {"0190_rate_buckets"}


def _postgres(conn: Any) -> bool:
    return not type(conn).__module__.startswith("sqlite3")


def apply(conn: Any) -> None:
    if not _postgres(conn):
        conn.cursor().execute(
            "CREATE TABLE event_search_pending (event_id TEXT PRIMARY KEY, room_id TEXT NOT NULL,"
            " key TEXT NOT NULL, stream_ordering BIGINT NOT NULL, value TEXT NOT NULL)")


def rollback(conn: Any) -> None:
    if not _postgres(conn):
        conn.cursor().execute("DROP TABLE event_search_pending")


steps = [step(apply, rollback)]
