"""Push rules and the rows unread notification counts come from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from veche.storage.database import Txn

EMPTY_RULES: dict[str, Any] = {"rules": [], "enabled": {}, "actions": {}}


def get_user_rules(txn: Txn, user_id: str) -> dict[str, Any]:
    raw = txn.fetchval("SELECT rules_json FROM push_rules WHERE user_id = ?", (user_id,))
    if raw is None:
        return {"rules": [], "enabled": {}, "actions": {}}
    return orjson.loads(raw)  # type: ignore[no-any-return]


def get_many_user_rules(txn: Txn, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    ids = list(user_ids)
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("user_id", ids[i : i + 500])
        for uid, raw in txn.fetchall(f"SELECT user_id, rules_json FROM push_rules WHERE {clause}", args):
            out[uid] = orjson.loads(raw)
    return out


def set_user_rules(txn: Txn, user_id: str, doc: dict[str, Any]) -> None:
    txn.execute(
        "INSERT INTO push_rules (user_id, rules_json) VALUES (?, ?)"
        " ON CONFLICT (user_id) DO UPDATE SET rules_json = excluded.rules_json",
        (user_id, orjson.dumps(doc).decode()),
    )


def add_push_actions(txn: Txn, rows: list[tuple[str, str, int, str, str | None, int, int]]) -> None:
    """Rows of (user_id, room_id, stream_ordering, event_id, thread_id, notif, highlight)."""
    txn.write_many(
        "INSERT INTO event_push_actions (user_id, room_id, stream_ordering, event_id, thread_id,"
        " notif, highlight) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        rows,
    )


def add_room_push_action(
    txn: Txn, room_id: str, stream_ordering: int, sender: str, thread_id: str | None,
    notif: int, highlight: int,
) -> None:
    txn.write(
        "INSERT INTO room_push_actions (room_id, stream_ordering, sender, thread_id, notif,"
        " highlight) VALUES (?, ?, ?, ?, ?, ?)",
        (room_id, stream_ordering, sender, thread_id, notif, highlight),
    )


def mark_read(txn: Txn, user_id: str, room_id: str, upto: int, thread_id: str | None) -> None:
    """The user has read up to `upto`: everything (thread_id None), the main timeline
    ('main') or one thread."""
    txn.write(
        "INSERT INTO push_read_positions (user_id, room_id, thread_id, stream_ordering)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET"
        " stream_ordering = CASE WHEN excluded.stream_ordering > push_read_positions.stream_ordering"
        " THEN excluded.stream_ordering ELSE push_read_positions.stream_ordering END",
        (user_id, room_id, thread_id or "", upto),
    )
    sql = "DELETE FROM event_push_actions WHERE user_id = ? AND room_id = ? AND stream_ordering <= ?"
    args: list[Any] = [user_id, room_id, upto]
    if thread_id == "main":
        sql += " AND thread_id IS NULL"
    elif thread_id is not None:
        sql += " AND thread_id = ?"
        args.append(thread_id)
    txn.write(sql, args)


def unread_counts(
    txn: Txn, user_id: str, room_ids: Sequence[str], after: int = -1, upto: int | None = None,
) -> dict[str, dict[str | None, tuple[int, int]]]:
    """room_id -> thread_id (None: main timeline) -> (notification_count, highlight_count),
    counting the unread events at stream positions in (after, upto]."""
    out: dict[str, dict[str | None, tuple[int, int]]] = {}
    window = " AND {0}stream_ordering > ?" + (" AND {0}stream_ordering <= ?" if upto is not None else "")
    bounds = [after] if upto is None else [after, upto]

    def add(rows: list[tuple[Any, ...]]) -> None:
        for room_id, thread_id, notif, highlight in rows:
            n, h = out.setdefault(room_id, {}).get(thread_id, (0, 0))
            out[room_id][thread_id] = (n + int(notif or 0), h + int(highlight or 0))

    ids = list(room_ids)
    reads = []
    for i in range(0, len(ids), 500):
        # Two independent reads, held: one round trip on PostgreSQL.
        clause, args = txn.in_list("s.room_id", ids[i : i + 500])
        reads.append(txn.fetchall_later(
            "SELECT s.room_id, s.thread_id, SUM(s.notif), SUM(s.highlight)"
            " FROM room_push_actions s"
            " LEFT JOIN push_read_positions a"
            "  ON a.user_id = ? AND a.room_id = s.room_id AND a.thread_id = ''"
            " LEFT JOIN push_read_positions t"
            "  ON t.user_id = ? AND t.room_id = s.room_id AND t.thread_id = COALESCE(s.thread_id, 'main')"
            f" WHERE {clause} AND s.sender <> ?{window.format('s.')}"
            " AND s.stream_ordering > COALESCE(a.stream_ordering, -1)"
            " AND s.stream_ordering > COALESCE(t.stream_ordering, -1)"
            " AND NOT EXISTS (SELECT 1 FROM event_push_actions e WHERE e.user_id = ?"
            "  AND e.room_id = s.room_id AND e.stream_ordering = s.stream_ordering)"
            " GROUP BY s.room_id, s.thread_id",
            [user_id, user_id, *args, user_id, *bounds, user_id],
        ))
        clause, args = txn.in_list("room_id", ids[i : i + 500])
        reads.append(txn.fetchall_later(
            "SELECT room_id, thread_id, SUM(notif), SUM(highlight) FROM event_push_actions"
            f" WHERE user_id = ? AND {clause}{window.format('')} GROUP BY room_id, thread_id",
            [user_id, *args, *bounds],
        ))
    for rows in reads:
        add(rows())
    return out


def joined_members_with_events(txn: Txn, room_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(user_id, member event content) of the room's joined members."""
    return [(uid, orjson.loads(raw).get("content") or {}) for uid, raw in txn.fetchall(
        "SELECT m.user_id, e.json FROM room_memberships m JOIN events e ON e.event_id = m.event_id"
        " WHERE m.room_id = ? AND m.membership = 'join'", (room_id,),
    )]
