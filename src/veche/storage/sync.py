"""Queries behind /sync: what changed in a user's rooms between two stream positions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from veche.storage.database import Txn


def membership_changes(txn: Txn, user_id: str, since: int, upto: int) -> list[tuple[str, str, int]]:
    """(room_id, membership, stream_ordering) of the user's memberships that changed."""
    return [tuple(r) for r in txn.fetchall(  # type: ignore[misc]
        "SELECT room_id, membership, stream_ordering FROM room_memberships"
        " WHERE user_id = ? AND stream_ordering > ? AND stream_ordering <= ?",
        (user_id, since, upto),
    )]


def current_memberships(txn: Txn, user_id: str) -> list[tuple[str, str, int]]:
    return [tuple(r) for r in txn.fetchall(  # type: ignore[misc]
        "SELECT room_id, membership, stream_ordering FROM room_memberships"
        " WHERE user_id = ? AND forgotten = 0", (user_id,),
    )]


def rooms_with_events(txn: Txn, room_ids: list[str], since: int, upto: int) -> set[str]:
    if not room_ids:
        return set()
    clause, args = txn.in_list("room_id", room_ids)
    return {r[0] for r in txn.fetchall(
        f"SELECT DISTINCT room_id FROM events WHERE stream_ordering > ? AND stream_ordering <= ?"
        f" AND hidden = 0 AND {clause}", [since, upto, *args],
    )}


def room_timeline(
    txn: Txn, room_id: str, since: int, upto: int, limit: int
) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    """The newest `limit` events in (since, upto], oldest first, and whether more were left out."""
    rows = txn.fetchall(
        "SELECT stream_ordering, json FROM events WHERE room_id = ? AND stream_ordering > ?"
        " AND stream_ordering <= ? AND hidden = 0 ORDER BY stream_ordering DESC LIMIT ?",
        (room_id, since, upto, limit + 1),
    )
    limited = len(rows) > limit
    return [(r[0], orjson.loads(r[1])) for r in reversed(rows[:limit])], limited


def txn_ids_for(txn: Txn, user_id: str, device_id: str, event_ids: list[str]) -> dict[str, str]:
    if not event_ids:
        return {}
    clause, args = txn.in_list("event_id", event_ids)
    return {r[0]: r[1] for r in txn.fetchall(
        f"SELECT event_id, txn_id FROM event_txn_ids WHERE user_id = ? AND device_id = ? AND {clause}",
        [user_id, device_id, *args],
    )}


def receipts_since(txn: Txn, room_ids: list[str], since: int, upto: int) -> list[tuple[Any, ...]]:
    if not room_ids:
        return []
    clause, args = txn.in_list("room_id", room_ids)
    return txn.fetchall(
        "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts"
        f" WHERE stream_id > ? AND stream_id <= ? AND {clause}", [since, upto, *args],
    )


def upsert_receipt(
    txn: Txn, room_id: str, receipt_type: str, user_id: str, thread_id: str, event_id: str,
    ts: int, stream_id: int,
) -> None:
    txn.execute(
        "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (room_id, receipt_type, user_id, thread_id)"
        " DO UPDATE SET event_id = excluded.event_id, ts = excluded.ts,"
        " stream_id = excluded.stream_id",
        (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id),
    )


def unread_count(txn: Txn, room_id: str, user_id: str, upto: int) -> int:
    """Messages from others after the user's newest read receipt (public or private)."""
    read_pos = txn.fetchval(
        "SELECT MAX(e.stream_ordering) FROM receipts r JOIN events e ON e.event_id = r.event_id"
        " WHERE r.room_id = ? AND r.user_id = ? AND r.receipt_type IN ('m.read', 'm.read.private')",
        (room_id, user_id),
    ) or 0
    own_pos = txn.fetchval(
        "SELECT MAX(stream_ordering) FROM events WHERE room_id = ? AND sender = ?",
        (room_id, user_id),
    ) or 0
    return int(txn.fetchval(
        "SELECT COUNT(*) FROM events WHERE room_id = ? AND stream_ordering > ?"
        " AND stream_ordering <= ? AND sender <> ? AND hidden = 0"
        " AND type IN ('m.room.message', 'm.room.encrypted', 'm.sticker')",
        (room_id, max(read_pos, own_pos), upto, user_id),
    ) or 0)


def set_account_data(
    txn: Txn, user_id: str, room_id: str, data_type: str, content: dict[str, Any], stream_id: int
) -> None:
    txn.execute(
        "INSERT INTO account_data (user_id, room_id, type, content, stream_id)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (user_id, room_id, type)"
        " DO UPDATE SET content = excluded.content, stream_id = excluded.stream_id",
        (user_id, room_id, data_type, orjson.dumps(content).decode(), stream_id),
    )


def get_account_data(txn: Txn, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
    raw = txn.fetchval(
        "SELECT content FROM account_data WHERE user_id = ? AND room_id = ? AND type = ?",
        (user_id, room_id, data_type),
    )
    return orjson.loads(raw) if raw is not None else None


def account_data_since(txn: Txn, user_id: str, since: int, upto: int) -> list[tuple[str, str, dict[str, Any]]]:
    return account_data_since_later(txn, user_id, since, upto)()


def account_data_since_later(
    txn: Txn, user_id: str, since: int, upto: int
) -> Callable[[], list[tuple[str, str, dict[str, Any]]]]:
    """`account_data_since` as a held read (`Txn.fetchall_later`)."""
    rows = txn.fetchall_later(
        "SELECT room_id, type, content FROM account_data WHERE user_id = ? AND stream_id > ?"
        " AND stream_id <= ?", (user_id, since, upto),
    )
    return lambda: [(r[0], r[1], orjson.loads(r[2])) for r in rows()]


def add_filter(txn: Txn, user_id: str, filter_json: dict[str, Any]) -> int:
    next_id = int(txn.fetchval(
        "SELECT COALESCE(MAX(filter_id), -1) + 1 FROM user_filters WHERE user_id = ?", (user_id,)
    ))
    txn.execute("INSERT INTO user_filters (user_id, filter_id, filter_json) VALUES (?, ?, ?)",
                (user_id, next_id, orjson.dumps(filter_json).decode()))
    return next_id


def get_filter(txn: Txn, user_id: str, filter_id: int) -> dict[str, Any] | None:
    raw = txn.fetchval("SELECT filter_json FROM user_filters WHERE user_id = ? AND filter_id = ?",
                       (user_id, filter_id))
    return orjson.loads(raw) if raw is not None else None


# --- batched queries for /sync ---------------------------------------------------------------

def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    return [values[i : i + size] for i in range(0, len(values), size)] or [[]]


def membership_rows(txn: Txn, user_id: str) -> list[tuple[str, str, int, str]]:
    """(room_id, membership, stream_ordering, event_id) of every room the user has not forgotten."""
    return [(r[0], r[1], int(r[2]), r[3]) for r in txn.fetchall(
        "SELECT room_id, membership, stream_ordering, event_id FROM room_memberships"
        " WHERE user_id = ? AND forgotten = 0", (user_id,),
    )]


def rooms_with_new_events(txn: Txn, room_ids: list[str], since: int, upto: int) -> set[str]:
    return rooms_with_new_events_later(txn, room_ids, since, upto)()


def rooms_with_new_events_later(
    txn: Txn, room_ids: list[str], since: int, upto: int
) -> Callable[[], set[str]]:
    """`rooms_with_new_events` as held reads (`Txn.fetchall_later`)."""
    if not room_ids or upto <= since:
        return set
    reads = []
    for chunk in _chunks(room_ids):
        clause, args = txn.in_list("room_id", chunk)
        reads.append(txn.fetchall_later(
            "SELECT DISTINCT room_id FROM events WHERE stream_ordering > ? AND stream_ordering <= ?"
            f" AND hidden = 0 AND {clause}", [since, upto, *args],
        ))
    return lambda: {r[0] for rows in reads for r in rows()}


def timeline_rows(
    txn: Txn, room_id: str, after: int, upto: int, limit: int
) -> list[tuple[int, dict[str, Any]]]:
    """Up to `limit` events in (after, upto], newest first."""
    return [(int(r[0]), orjson.loads(r[1])) for r in txn.fetchall(
        "SELECT stream_ordering, json FROM events WHERE room_id = ? AND stream_ordering > ?"
        " AND stream_ordering <= ? AND hidden = 0 ORDER BY stream_ordering DESC LIMIT ?",
        (room_id, after, upto, limit),
    )]


def state_group_at(txn: Txn, room_id: str, position: int) -> int | None:
    """The group of the state after the room's last event (with a place in its graph) at or
    before a stream position; None when there is none (no state yet)."""
    row = txn.fetchone(
        "SELECT g.state_group FROM events e JOIN event_to_state_groups g ON g.event_id = e.event_id"
        " WHERE e.room_id = ? AND e.stream_ordering <= ? AND e.hidden = 0"
        " ORDER BY e.stream_ordering DESC LIMIT 1",
        (room_id, position),
    )
    return int(row[0]) if row else None


def state_groups_before(txn: Txn, event_ids: list[str]) -> dict[str, int | None]:
    """event -> the group of the state just before it (None: empty, before the create
    event), for those of the events with a place in the graph."""
    out: dict[str, int | None] = {}
    for chunk in _chunks(event_ids):
        if not chunk:
            continue
        clause, args = txn.in_list("event_id", chunk)
        for event_id, group in txn.fetchall(
            f"SELECT event_id, state_group_before FROM event_to_state_groups WHERE {clause}", args,
        ):
            out[event_id] = None if group is None else int(group)
    return out


def current_state_changed(
    txn: Txn, windows: dict[str, tuple[int, int]]
) -> dict[str, dict[tuple[str, str], str]]:
    """room -> the entries of its current state that became current within its window
    (after, upto] of stream positions (a row's stream_ordering says when)."""
    out: dict[str, dict[tuple[str, str], str]] = {}
    rooms = list(windows)
    bounds = set(windows.values())
    for i in range(0, len(rooms), 300):
        chunk = rooms[i : i + 300]
        if len(bounds) == 1:  # an incremental sync's rooms share one window
            clause, args = txn.in_list("room_id", chunk)
            rows = txn.fetchall(
                "SELECT room_id, type, state_key, event_id FROM current_state"
                f" WHERE {clause} AND stream_ordering > ? AND stream_ordering <= ?",
                [*args, *next(iter(bounds))],
            )
        else:
            # A join with the windows as a VALUES list: PostgreSQL plans a long OR slowly.
            values = ", ".join(["(?, CAST(? AS BIGINT), CAST(? AS BIGINT))"] * len(chunk))
            rows = txn.fetchall(
                "SELECT c.room_id, c.type, c.state_key, c.event_id FROM current_state c"
                f" JOIN (VALUES {values}) w ON c.room_id = w.column1"
                " AND c.stream_ordering > w.column2 AND c.stream_ordering <= w.column3",
                [part for r in chunk for part in (r, *windows[r])],
            )
        for room_id, typ, sk, eid in rows:
            out.setdefault(room_id, {})[(typ, sk)] = eid
    return out


def txn_ids_for_events(txn: Txn, user_id: str, device_id: str, event_ids: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for chunk in _chunks(event_ids):
        if chunk:
            out.update(txn_ids_for(txn, user_id, device_id, chunk))
    return out


def receipts_for_rooms(
    txn: Txn, room_ids: list[str], since: int, upto: int
) -> list[tuple[Any, ...]]:
    return receipts_for_rooms_later(txn, room_ids, since, upto)()


def receipts_for_rooms_later(
    txn: Txn, room_ids: list[str], since: int, upto: int
) -> Callable[[], list[tuple[Any, ...]]]:
    """`receipts_for_rooms` as held reads (`Txn.fetchall_later`)."""
    if upto <= since:
        return list
    reads = []
    for chunk in _chunks(room_ids):
        if chunk:
            clause, args = txn.in_list("room_id", chunk)
            reads.append(txn.fetchall_later(
                "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts FROM receipts"
                f" WHERE stream_id > ? AND stream_id <= ? AND {clause}", [since, upto, *args],
            ))
    return lambda: [r for rows in reads for r in rows()]


def member_counts(txn: Txn, room_ids: list[str]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {r: {} for r in room_ids}
    for chunk in _chunks(room_ids):
        if not chunk:
            continue
        clause, args = txn.in_list("room_id", chunk)
        for room_id, membership, n in txn.fetchall(
            "SELECT room_id, membership, COUNT(*) FROM room_memberships"
            f" WHERE {clause} AND membership IN ('join', 'invite') GROUP BY room_id, membership",
            args,
        ):
            out[room_id][membership] = int(n)
    return out


def named_rooms(txn: Txn, room_ids: list[str]) -> set[str]:
    """Rooms with a non-empty m.room.name or m.room.canonical_alias."""
    out: set[str] = set()
    for chunk in _chunks(room_ids):
        if not chunk:
            continue
        clause, args = txn.in_list("cs.room_id", chunk)
        for room_id, raw in txn.fetchall(
            "SELECT cs.room_id, e.json FROM current_state cs JOIN events e ON e.event_id = cs.event_id"
            f" WHERE {clause} AND cs.state_key = '' AND cs.type IN ('m.room.name',"
            " 'm.room.canonical_alias')", args,
        ):
            content = orjson.loads(raw).get("content") or {}
            if content.get("name") or content.get("alias"):
                out.add(room_id)
    return out


def heroes(txn: Txn, room_id: str, user_id: str, limit: int = 5) -> list[str]:
    rows = txn.fetchall(
        "SELECT user_id, membership FROM room_memberships WHERE room_id = ? AND user_id <> ?"
        " ORDER BY stream_ordering LIMIT 50", (room_id, user_id),
    )
    active = [u for u, m in rows if m in ("join", "invite")]
    chosen = active or [u for u, m in rows if m in ("leave", "ban")]
    return sorted(chosen)[:limit]


def store_stream_reservation(txn: Txn, position: int) -> None:
    """Record that stream positions up to `position` may have been handed out."""
    txn.execute(
        "INSERT INTO stream_reservation (id, position) VALUES (1, ?)"
        " ON CONFLICT (id) DO UPDATE SET position = excluded.position", (position,),
    )
