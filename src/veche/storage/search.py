"""The full-text index of room events behind /search (table made by migration 0010).

On SQLite, rows wait in event_search_pending (migration 0200) and go into the FTS5 index
PENDING_BATCH at a time, and all of them before a search (`flush_pending`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from veche.storage.database import Txn

# Event type -> the content key /search finds it by.
SEARCHABLE = {"m.room.message": "body", "m.room.name": "name", "m.room.topic": "topic"}
# Past this many matches a search is cut (newest or best first, as ordered).
MAX_MATCHES = 2000
# SQLite: rows waiting for the index are moved into it once this many were added here.
PENDING_BATCH = 256
_pending_added = 0  # rows added to event_search_pending by this process since its last move


def terms(search_term: str) -> list[str]:
    """The words of a search, without any query syntax of either database."""
    return [w.casefold() for w in re.findall(r"\w+", search_term)][:20]


def index_event(txn: Txn, event: dict[str, Any], stream_ordering: int) -> None:
    key = SEARCHABLE.get(event["type"])
    value = (event.get("content") or {}).get(key) if key else None
    if not isinstance(value, str) or not value:
        return
    # The event keeps its NUL (its JSON escapes it); the index gets a space, so the words on
    # either side are still found and PostgreSQL's tsvector can take it.
    value = value.replace("\x00", " ")
    args = (event["event_id"], event["room_id"], f"content.{key}", stream_ordering, value)
    if txn.dialect == "postgres":
        txn.write("INSERT INTO event_search (event_id, room_id, key, stream_ordering, vector)"
                    " VALUES (?, ?, ?, ?, to_tsvector('simple', ?)) ON CONFLICT DO NOTHING", args)
    else:
        global _pending_added
        txn.write("INSERT OR IGNORE INTO event_search_pending"
                  " (event_id, room_id, key, stream_ordering, value) VALUES (?, ?, ?, ?, ?)", args)
        _pending_added += 1
        if _pending_added >= PENDING_BATCH:
            flush_pending(txn)


def flush_pending(txn: Txn) -> None:
    """SQLite: move the rows waiting for the FTS5 index into it (one segment for all)."""
    global _pending_added
    if txn.dialect == "postgres":
        return
    txn.execute("INSERT INTO event_search (event_id, room_id, key, stream_ordering, value)"
                " SELECT event_id, room_id, key, stream_ordering, value FROM event_search_pending"
                " ORDER BY stream_ordering")
    txn.execute("DELETE FROM event_search_pending")
    _pending_added = 0


def unindex_event(txn: Txn, event_id: str) -> None:
    txn.execute("DELETE FROM event_search WHERE event_id = ?", (event_id,))
    if txn.dialect != "postgres":
        txn.execute("DELETE FROM event_search_pending WHERE event_id = ?", (event_id,))


def unindex_room(txn: Txn, room_id: str) -> None:
    txn.execute("DELETE FROM event_search WHERE room_id = ?", (room_id,))
    if txn.dialect != "postgres":
        txn.execute("DELETE FROM event_search_pending WHERE room_id = ?", (room_id,))


def search(
    txn: Txn, room_ids: Sequence[str], words: list[str], keys: Sequence[str], order_by: str,
) -> list[tuple[str, int, float]]:
    """(event_id, stream_ordering, rank) of events in `room_ids` whose `keys` contain every
    word (as a word prefix), best first (order_by "rank") or newest first ("recent")."""
    if not room_ids or not words or not keys:
        return []
    rooms, rargs = txn.in_list("room_id", list(room_ids))
    kinds, kargs = txn.in_list("key", list(keys))
    if txn.dialect == "postgres":
        query = " & ".join(f"{w}:*" for w in words)
        order = "rank DESC" if order_by == "rank" else "stream_ordering DESC"
        rows = txn.fetchall(
            "SELECT event_id, stream_ordering, ts_rank(vector, q) AS rank"
            " FROM event_search, to_tsquery('simple', ?) q"
            f" WHERE vector @@ q AND {rooms} AND {kinds} ORDER BY {order} LIMIT ?",
            [query, *rargs, *kargs, MAX_MATCHES])
    else:
        query = " ".join(f'"{w}"*' for w in words)
        order = "rank DESC" if order_by == "rank" else "CAST(stream_ordering AS INTEGER) DESC"
        rows = txn.fetchall(
            "SELECT event_id, stream_ordering, -bm25(event_search) AS rank FROM event_search"
            f" WHERE event_search MATCH ? AND {rooms} AND {kinds} ORDER BY {order} LIMIT ?",
            [query, *rargs, *kargs, MAX_MATCHES])
    return [(r[0], int(r[1]), float(r[2])) for r in rows]
