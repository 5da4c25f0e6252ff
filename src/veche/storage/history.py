"""A room's history in topological order, and what history visibility needs of the state at
each event.

The timeline of a room is its events that have a place in the graph and were accepted (not
outliers, not rejected), ordered by (depth, stream_ordering): depth places an event in the
graph, stream_ordering breaks ties and orders what arrived together. Points between events
are streams.RoomToken: topological (`t<depth>-<stream>`), or a stream position that bounds
by stream_ordering alone (a /sync token).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson

from veche.core.history_visibility import HISTORY_VISIBILITY, effective
from veche.storage.database import Txn
from veche.streams import RoomToken

StateKey = tuple[str, str]


class TimelineRow(NamedTuple):
    depth: int
    stream: int
    event: dict[str, Any]


_IN_TIMELINE = "hidden = 0"  # no outliers, rejected or soft-failed events
_COLUMNS = "depth, stream_ordering, json"


def _row(r: Sequence[Any]) -> TimelineRow:
    return TimelineRow(int(r[0]), int(r[1]), orjson.loads(r[2]))


def _bound(token: RoomToken, side: str) -> tuple[str, list[Any]]:
    """SQL for "at or before the point" (side "le") or "after it" ("gt")."""
    if token.depth is None:
        return ("stream_ordering <= ?" if side == "le" else "stream_ordering > ?"), [token.stream]
    if side == "le":
        # Written so the (room_id, depth, stream_ordering) index serves a range on depth.
        return ("depth <= ? AND (depth < ? OR stream_ordering <= ?)",
                [token.depth, token.depth, token.stream])
    return ("depth >= ? AND (depth > ? OR stream_ordering > ?)",
            [token.depth, token.depth, token.stream])


def paginate(
    txn: Txn, room_id: str, from_tok: RoomToken, to_tok: RoomToken | None, direction: str,
    limit: int,
) -> list[TimelineRow]:
    """Timeline events before `from_tok` (dir b, newest first) or after it (dir f, oldest
    first), not past `to_tok`."""
    back = direction == "b"
    clause, args = _bound(from_tok, "le" if back else "gt")
    sql = f"SELECT {_COLUMNS} FROM events WHERE room_id = ? AND {clause}"
    args = [room_id, *args]
    if to_tok is not None:
        to_clause, to_args = _bound(to_tok, "gt" if back else "le")
        sql += f" AND {to_clause}"
        args += to_args
    order = "DESC" if back else "ASC"
    sql += f" AND {_IN_TIMELINE} ORDER BY depth {order}, stream_ordering {order} LIMIT ?"
    args.append(limit)
    return [_row(r) for r in txn.fetchall(sql, args)]


def get_timeline_event(txn: Txn, event_id: str) -> tuple[str, TimelineRow] | None:
    """(room_id, row) of an event in its room's timeline; None for an unknown event, an
    outlier or a rejected event (never served)."""
    row = txn.fetchone(
        f"SELECT room_id, {_COLUMNS} FROM events WHERE event_id = ?"
        f" AND {_IN_TIMELINE}", (event_id,),
    )
    return None if row is None else (row[0], _row(row[1:]))


def get_timeline_events(txn: Txn, event_ids: Sequence[str]) -> dict[str, TimelineRow]:
    """get_timeline_event of several events (those in a timeline), by ID."""
    out: dict[str, TimelineRow] = {}
    ids = list(dict.fromkeys(event_ids))
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("event_id", ids[i : i + 500])
        for r in txn.fetchall(
            f"SELECT {_COLUMNS} FROM events WHERE {clause} AND {_IN_TIMELINE}", args
        ):
            row = _row(r)
            out[row.event["event_id"]] = row
    return out


def last_event_at(
    txn: Txn, room_id: str, token: RoomToken | None, max_stream: int | None
) -> str | None:
    """The room's last timeline event at or before `token` (and stream position
    `max_stream`): the state after it is the room's state at that point."""
    sql = "SELECT event_id FROM events WHERE room_id = ?"
    args: list[Any] = [room_id]
    if token is not None:
        clause, targs = _bound(token, "le")
        sql += f" AND {clause}"
        args += targs
    if max_stream is not None:
        sql += " AND stream_ordering <= ?"
        args.append(max_stream)
    row = txn.fetchone(
        f"{sql} AND {_IN_TIMELINE} ORDER BY depth DESC, stream_ordering DESC LIMIT 1", args
    )
    return row[0] if row else None


# --- state at events, a few keys at a time -------------------------------------------------

def state_group_keys(
    txn: Txn, groups: Iterable[int], keys: Sequence[StateKey]
) -> dict[int, dict[StateKey, str]]:
    """Only `keys` of the state each group stands for, as event IDs."""
    return {g: {k: eid for k, (eid, _) in state.items()}
            for g, state in _chain_keys(txn, groups, keys, False).items()}


def _chain_keys(
    txn: Txn, groups: Iterable[int], keys: Sequence[StateKey], with_json: bool
) -> dict[int, dict[StateKey, tuple[str, str | None]]]:
    """`keys` of the state of each group: (event ID, its JSON if `with_json`).

    Walks each group's delta chain down to its snapshot once (chains shared by several
    groups once in all) and reads just those keys of each delta: a few rows, where reading
    the whole state of a big room would be thousands.
    """
    wanted = list(dict.fromkeys(groups))
    if not wanted or not keys:
        return {g: {} for g in wanted}
    gclause, gargs = txn.in_list("id", wanted)
    kclause = " OR ".join(["(s.type = ? AND s.state_key = ?)"] * len(keys))
    kargs = [v for key in keys for v in key]
    events = " LEFT JOIN events e ON e.event_id = s.event_id" if with_json else ""
    prev: dict[int, int | None] = {}
    found: dict[int, dict[StateKey, tuple[str, str | None]]] = {}
    for gid, prev_group, etype, state_key, event_id, js in txn.fetchall(
        "WITH RECURSIVE chain (id, prev) AS ("
        f"  SELECT id, prev_group FROM state_groups WHERE {gclause}"
        "  UNION SELECT g.id, g.prev_group FROM state_groups g JOIN chain c ON g.id = c.prev)"
        f" SELECT c.id, c.prev, s.type, s.state_key, s.event_id, {'e.json' if with_json else 'NULL'}"
        f" FROM chain c LEFT JOIN state_groups_state s ON s.state_group = c.id AND ({kclause})"
        f"{events}",
        [*gargs, *kargs],
    ):
        prev[int(gid)] = None if prev_group is None else int(prev_group)
        if etype is not None:
            found.setdefault(int(gid), {})[(etype, state_key)] = (event_id, js)
    out: dict[int, dict[StateKey, tuple[str, str | None]]] = {}
    for group in wanted:
        state: dict[StateKey, tuple[str, str | None]] = {}
        at: int | None = group
        while at is not None and len(state) < len(keys):
            for key, value in found.get(at, {}).items():
                state.setdefault(key, value)  # the newest delta setting a key wins
            at = prev.get(at)
        out[group] = state
    return out


class Place(NamedTuple):
    """Where an event stands, as history visibility reads it."""

    depth: int
    stream: int
    placed: bool  # False for an outlier, a rejected or a soft-failed event: never served
    state_group: int | None  # before the event; None: the empty state


def places(txn: Txn, event_ids: Sequence[str]) -> dict[str, Place]:
    out: dict[str, Place] = {}
    ids = list(dict.fromkeys(event_ids))
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("e.event_id", ids[i : i + 500])
        for eid, depth, so, has_group, before, hidden in txn.fetchall(
            "SELECT e.event_id, e.depth, e.stream_ordering, g.event_id IS NOT NULL,"
            " g.state_group_before, e.hidden FROM events e"
            f" LEFT JOIN event_to_state_groups g ON g.event_id = e.event_id WHERE {clause}", args,
        ):
            out[eid] = Place(int(depth), int(so), bool(has_group) and not hidden,
                             None if before is None else int(before))
    return out


def visibility_at(
    txn: Txn, groups: Iterable[int], user_id: str
) -> dict[int, tuple[str, str | None]]:
    """Per state group: the history_visibility and the user's membership in that state."""
    hv_key, member_key = (HISTORY_VISIBILITY, ""), ("m.room.member", user_id)
    out: dict[int, tuple[str, str | None]] = {}
    for group, state in _chain_keys(txn, groups, [hv_key, member_key], True).items():
        hv, membership = (_content_value(state.get(k), field) for k, field in (
            (hv_key, "history_visibility"), (member_key, "membership")))
        out[group] = (effective(hv), membership)
    return out


def _content_value(entry: tuple[str, str | None] | None, field: str) -> str | None:
    if entry is None or entry[1] is None:
        return None
    content = orjson.loads(entry[1]).get("content")
    value = content.get(field) if isinstance(content, dict) else None
    return value if isinstance(value, str) else None


class ReaderMembership(NamedTuple):
    """A user's membership of a room as history visibility needs it, and the
    history_visibility values the room's accepted events ever set."""

    current: str | None  # their membership in the room's current state
    last_join: tuple[int, int] | None  # (depth, stream) of their latest accepted join
    ever: bool  # any accepted membership event of theirs in the room
    visibilities: frozenset[str]


def reader_memberships(
    txn: Txn, room_ids: Sequence[str], user_id: str
) -> dict[str, ReaderMembership]:
    out: dict[str, ReaderMembership] = {}
    rooms = list(dict.fromkeys(room_ids))
    for i in range(0, len(rooms), 500):
        chunk = rooms[i : i + 500]
        clause, args = txn.in_list("room_id", chunk)
        current = dict(txn.fetchall(
            f"SELECT room_id, membership FROM room_memberships WHERE user_id = ? AND {clause}",
            [user_id, *args],
        ))
        joins: dict[str, tuple[int, int]] = {}
        ever: set[str] = set()
        visibilities: dict[str, set[str]] = {}
        select = (
            "SELECT room_id, type, depth, stream_ordering, outlier, json FROM events"
            f" WHERE {clause} AND type = ? AND state_key = ?"
            " AND NOT EXISTS (SELECT 1 FROM rejections r WHERE r.event_id = events.event_id)"
        )  # twice, not one OR, which SQLite would answer by scanning the room
        for room_id, etype, depth, so, outlier, js in txn.fetchall(
            f"{select} UNION ALL {select}",
            [*args, "m.room.member", user_id, *args, HISTORY_VISIBILITY, ""],
        ):
            content = orjson.loads(js).get("content")
            content = content if isinstance(content, dict) else {}
            if etype == HISTORY_VISIBILITY:
                # Outliers too: state resolution may put one in the state of an event.
                visibilities.setdefault(room_id, set()).add(
                    effective(content.get("history_visibility")))
                continue
            if outlier:
                continue
            ever.add(room_id)
            if content.get("membership") == "join":
                joins[room_id] = max(joins.get(room_id, (0, 0)), (int(depth), int(so)))
        for room_id in chunk:
            out[room_id] = ReaderMembership(
                current.get(room_id), joins.get(room_id), room_id in ever,
                frozenset(visibilities.get(room_id, ())))
    return out
