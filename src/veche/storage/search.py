"""The full-text index of room events behind /search (table made by migration 0010)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from veche.storage.database import Txn

# Event type -> the content key /search finds it by.
SEARCHABLE = {"m.room.message": "body", "m.room.name": "name", "m.room.topic": "topic"}
# Past this many matches a search is cut (newest or best first, as ordered).
MAX_MATCHES = 2000


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
        txn.write("INSERT INTO event_search (event_id, room_id, key, stream_ordering, value)"
                    " VALUES (?, ?, ?, ?, ?)", args)


def unindex_event(txn: Txn, event_id: str) -> None:
    txn.execute("DELETE FROM event_search WHERE event_id = ?", (event_id,))


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
