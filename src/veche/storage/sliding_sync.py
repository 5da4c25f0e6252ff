"""Queries behind simplified sliding sync (services/sliding_sync/): its connections'
positions, and what the room list is sorted and filtered by."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from veche.storage.database import Txn


def _chunks(values: Sequence[str], size: int = 500) -> list[list[str]]:
    return [list(values[i : i + size]) for i in range(0, len(values), size)]


# --- connection positions ------------------------------------------------------------------

def get_position(
    txn: Txn, user_id: str, device_id: str, conn_id: str, pos: str
) -> tuple[int, int, dict[str, Any], int] | None:
    """(stream position, typing serial, state, created_ts) behind `pos` of the connection."""
    row = txn.fetchone(
        "SELECT stream_pos, typing_serial, state, created_ts FROM sliding_sync_positions"
        " WHERE pos = ? AND user_id = ? AND device_id = ? AND conn_id = ?",
        (pos, user_id, device_id, conn_id),
    )
    if row is None:
        return None
    return int(row[0]), int(row[1]), orjson.loads(row[2]), int(row[3])


def save_position(
    txn: Txn, user_id: str, device_id: str, conn_id: str, pos: str, stream_pos: int,
    typing_serial: int, state: dict[str, Any], now_ms: int, previous: str | None,
) -> None:
    """Record `pos`; the connection's positions other than it and `previous` (the one the
    request came from, kept in case its response is lost and the client retries) go."""
    txn.execute(
        "DELETE FROM sliding_sync_positions WHERE user_id = ? AND device_id = ? AND conn_id = ?"
        " AND pos <> ?", (user_id, device_id, conn_id, previous or ""),
    )
    txn.execute(
        "INSERT INTO sliding_sync_positions (pos, user_id, device_id, conn_id, stream_pos,"
        " typing_serial, state, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (pos, user_id, device_id, conn_id, stream_pos, typing_serial,
         orjson.dumps(state).decode(), now_ms),
    )


def delete_expired(txn: Txn, before_ts: int) -> None:
    txn.execute("DELETE FROM sliding_sync_positions WHERE created_ts < ?", (before_ts,))


# --- the room list ---------------------------------------------------------------------------

def latest_positions(
    txn: Txn, room_ids: Sequence[str], upto: int, types: Sequence[str] | None = None
) -> dict[str, int]:
    """room -> the stream position of its latest event up to `upto` (of `types` if given).
    One indexed look from the end per room (events_room_order), not a scan of the rooms'
    events: a big room costs no more than a small one."""
    out: dict[str, int] = {}
    type_clause = ""
    type_args: list[Any] = []
    if types is not None:
        clause, type_args = txn.in_list("e.type", list(types))
        type_clause = f" AND {clause}"
    for chunk in _chunks(room_ids, 300):
        values = ", ".join(["(?)"] * len(chunk))
        rows = txn.fetchall(
            "SELECT w.column1, (SELECT e.stream_ordering FROM events e WHERE e.room_id = w.column1"
            f" AND e.hidden = 0 AND e.stream_ordering <= ?{type_clause}"
            f" ORDER BY e.stream_ordering DESC LIMIT 1) FROM (VALUES {values}) w",
            [upto, *type_args, *chunk],
        )
        for room_id, pos in rows:
            if pos is not None:
                out[room_id] = int(pos)
    return out


def current_state_events(
    txn: Txn, room_ids: Sequence[str], types: Sequence[str], state_key: str | None = ""
) -> dict[str, dict[tuple[str, str], dict[str, Any]]]:
    """room -> (type, state_key) -> the event, of the rooms' current state of `types` (with
    `state_key`, or any if None)."""
    out: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
    for chunk in _chunks(room_ids):
        clause, args = txn.in_list("cs.room_id", chunk)
        type_clause, type_args = txn.in_list("cs.type", list(types))
        sql = ("SELECT cs.room_id, cs.type, cs.state_key, e.json FROM current_state cs"
               f" JOIN events e ON e.event_id = cs.event_id WHERE {clause} AND {type_clause}")
        params: list[Any] = [*args, *type_args]
        if state_key is not None:
            sql += " AND cs.state_key = ?"
            params.append(state_key)
        for room_id, typ, sk, raw in txn.fetchall(sql, params):
            out.setdefault(room_id, {})[(typ, sk)] = orjson.loads(raw)
    return out


def member_rows(txn: Txn, room_id: str, exclude: str, limit: int = 50) -> list[tuple[str, str, str]]:
    """(user_id, membership, event_id) of the room's members but `exclude`, oldest first."""
    return [(r[0], r[1], r[2]) for r in txn.fetchall(
        "SELECT user_id, membership, event_id FROM room_memberships WHERE room_id = ?"
        " AND user_id <> ? ORDER BY stream_ordering LIMIT ?", (room_id, exclude, limit),
    )]


# --- extensions ------------------------------------------------------------------------------

def account_data_rows(
    txn: Txn, user_id: str, after: int, upto: int
) -> list[tuple[str, str, dict[str, Any], int]]:
    """(room_id or "", type, content, stream_id) of the user's account data in (after, upto]."""
    return [(r[0], r[1], orjson.loads(r[2]), int(r[3])) for r in txn.fetchall(
        "SELECT room_id, type, content, stream_id FROM account_data WHERE user_id = ?"
        " AND stream_id > ? AND stream_id <= ?", (user_id, after, upto),
    )]


_RECEIPT_COLUMNS = "room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id"


def receipts_since(
    txn: Txn, room_ids: Sequence[str], after: int, upto: int
) -> list[tuple[Any, ...]]:
    """Receipts of the rooms with stream positions in (after, upto]."""
    out: list[tuple[Any, ...]] = []
    for chunk in _chunks(room_ids):
        clause, args = txn.in_list("room_id", chunk)
        out.extend(txn.fetchall(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE stream_id > ? AND stream_id <= ?"
            f" AND {clause}", [after, upto, *args]))
    return out


def receipts_first_seen(
    txn: Txn, user_id: str, room_ids: Sequence[str], event_ids: Sequence[str], upto: int
) -> list[tuple[Any, ...]]:
    """For rooms a client sees for the first time: the user's own receipts in them, and
    everyone's on the events it is shown."""
    out: list[tuple[Any, ...]] = []
    for chunk in _chunks(room_ids):
        clause, args = txn.in_list("room_id", chunk)
        out.extend(txn.fetchall(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE user_id = ? AND stream_id <= ?"
            f" AND {clause}", [user_id, upto, *args]))
    for chunk in _chunks(event_ids):
        clause, args = txn.in_list("event_id", chunk)
        out.extend(txn.fetchall(
            f"SELECT {_RECEIPT_COLUMNS} FROM receipts WHERE user_id <> ? AND stream_id <= ?"
            f" AND {clause}", [user_id, upto, *args]))
    return out


def rooms_with_own_receipts(
    txn: Txn, user_id: str, room_ids: Sequence[str], after: int, upto: int
) -> set[str]:
    """The rooms where the user moved a read receipt in (after, upto]."""
    out: set[str] = set()
    for chunk in _chunks(room_ids):
        clause, args = txn.in_list("room_id", chunk)
        out.update(r[0] for r in txn.fetchall(
            "SELECT DISTINCT room_id FROM receipts WHERE user_id = ? AND stream_id > ?"
            f" AND stream_id <= ? AND {clause}", [user_id, after, upto, *args]))
    return out
