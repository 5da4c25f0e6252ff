"""Storage for the events side of federation: received transactions, soft-failed events, and
the reads that serve other servers (walks of the graph, the state a server may see)."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from veche.storage.database import Txn

StateKey = tuple[str, str]
TRANSACTION_KEEP_MS = 24 * 3600 * 1000

# Events clients may be shown: not outliers, not rejected, not soft-failed.
CLIENT_VISIBLE = "e.hidden = 0"


# --- transactions ---------------------------------------------------------------------------

def get_received_transaction(txn: Txn, origin: str, txn_id: str) -> dict[str, Any] | None:
    raw = txn.fetchval(
        "SELECT response FROM received_transactions WHERE origin = ? AND txn_id = ?",
        (origin, txn_id))
    return orjson.loads(raw) if raw is not None else None


def store_received_transactions(
    txn: Txn, records: list[tuple[str, str, dict[str, Any], int]], *, forget_old: bool = True,
) -> None:
    """Each (origin, txn ID, response, received at) of `records`. `forget_old`: also delete
    the records past TRANSACTION_KEEP_MS (a scan of the table, done now and then rather than
    on every write)."""
    txn.write_many(
        "INSERT INTO received_transactions (origin, txn_id, response, received_ts)"
        " VALUES (?, ?, ?, ?) ON CONFLICT (origin, txn_id) DO NOTHING",
        [(origin, txn_id, orjson.dumps(response).decode(), ts)
         for origin, txn_id, response, ts in records])
    if forget_old and records:
        txn.execute("DELETE FROM received_transactions WHERE received_ts < ?",
                    (records[-1][3] - TRANSACTION_KEEP_MS,))


@dataclass(slots=True)
class GateFacts:
    """What decides whether a room takes a PDU from a server (services/federation_inbound.py)."""

    stored: bool
    stored_rejected: bool
    we_joined: bool  # this server has a joined member
    origin_joined: bool
    acl: dict[str, Any] | None  # the room's current m.room.server_acl event, if any


def pdu_gate_facts(txn: Txn, room_id: str, event_id: str, server_name: str,
                   origin: str) -> GateFacts:
    """GateFacts in one statement: a PDU per transaction is the common case, and each
    statement costs more than the little it reads."""
    joined = ("SELECT CASE WHEN EXISTS (SELECT 1 FROM room_memberships WHERE room_id = ?"
              " AND membership = 'join' AND substr(user_id, length(user_id) - ? + 1) = ?)"
              " THEN 1 ELSE 0 END")
    ours, theirs = ":" + server_name, ":" + origin
    row = txn.fetchone(
        "SELECT (SELECT CASE WHEN r.event_id IS NULL THEN 0 ELSE 1 END FROM events e"
        "  LEFT JOIN rejections r ON r.event_id = e.event_id WHERE e.event_id = ?),"
        f" ({joined}), ({joined}),"
        " (SELECT e.json FROM current_state c JOIN events e ON e.event_id = c.event_id"
        "  WHERE c.room_id = ? AND c.type = 'm.room.server_acl' AND c.state_key = '')",
        (event_id, room_id, len(ours), ours, room_id, len(theirs), theirs, room_id))
    assert row is not None
    stored, we, they, acl = row
    return GateFacts(stored is not None, bool(stored), bool(we), bool(they),
                     orjson.loads(acl) if acl is not None else None)


# --- soft failure ---------------------------------------------------------------------------

def mark_soft_failed(txn: Txn, event_id: str) -> None:
    txn.execute("INSERT INTO soft_failed_events (event_id) VALUES (?) ON CONFLICT DO NOTHING",
                (event_id,))


def is_soft_failed(txn: Txn, event_id: str) -> bool:
    return txn.fetchval("SELECT 1 FROM soft_failed_events WHERE event_id = ?", (event_id,)) is not None


# --- events as stored -----------------------------------------------------------------------

@dataclass(slots=True)
class StoredEvent:
    event: dict[str, Any]
    room_id: str
    depth: int
    rejected: bool
    outlier: bool
    soft_failed: bool


def get_stored_events(txn: Txn, event_ids: Sequence[str]) -> dict[str, StoredEvent]:
    out: dict[str, StoredEvent] = {}
    ids = list(dict.fromkeys(event_ids))
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("e.event_id", ids[i : i + 500])
        for event_id, room_id, depth, raw, outlier, rejected, soft in txn.fetchall(
            "SELECT e.event_id, e.room_id, e.depth, e.json, e.outlier, r.event_id, s.event_id"
            " FROM events e LEFT JOIN rejections r ON r.event_id = e.event_id"
            " LEFT JOIN soft_failed_events s ON s.event_id = e.event_id"
            f" WHERE {clause}", args,
        ):
            out[event_id] = StoredEvent(orjson.loads(raw), room_id, int(depth),
                                        rejected is not None, bool(outlier), soft is not None)
    return out


def get_stored_events_and_groups(
    txn: Txn, event_ids: Sequence[str], placed_ids: Sequence[str],
) -> tuple[dict[str, StoredEvent], dict[str, int]]:
    """`get_stored_events` of `event_ids` and the group after each of `placed_ids` that
    has a place in the graph (event_graph.get_state_groups_after), in one statement: a
    received PDU's auth events and prev events, few of each."""
    ids = list(dict.fromkeys(event_ids))
    placed = list(dict.fromkeys(placed_ids))
    if len(ids) > 500 or len(placed) > 500:
        from veche.storage.event_graph import get_state_groups_after

        return get_stored_events(txn, ids), get_state_groups_after(txn, placed)
    clause, args = txn.in_list("e.event_id", ids)
    placed_clause, placed_args = txn.in_list("event_id", placed)
    stored: dict[str, StoredEvent] = {}
    groups: dict[str, int] = {}
    for event_id, room_id, depth, raw, outlier, rejected, soft, group in txn.fetchall(
        "SELECT e.event_id, e.room_id, e.depth, e.json, e.outlier, r.event_id, s.event_id, NULL"
        " FROM events e LEFT JOIN rejections r ON r.event_id = e.event_id"
        " LEFT JOIN soft_failed_events s ON s.event_id = e.event_id"
        f" WHERE {clause}"
        " UNION ALL SELECT event_id, NULL, NULL, NULL, NULL, NULL, NULL, state_group"
        f" FROM event_to_state_groups WHERE {placed_clause}", [*args, *placed_args],
    ):
        if group is not None:
            groups[event_id] = int(group)
        else:
            stored[event_id] = StoredEvent(orjson.loads(raw), room_id, int(depth),
                                           rejected is not None, bool(outlier), soft is not None)
    return stored, groups


def get_prev_events(txn: Txn, event_ids: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {e: [] for e in event_ids}
    ids = list(out)
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("event_id", ids[i : i + 500])
        for event_id, prev in txn.fetchall(
                f"SELECT event_id, prev_event_id FROM event_edges WHERE {clause}", args):
            out[event_id].append(prev)
    return out


def walk_prev_events(
    txn: Txn, room_id: str, starts: Iterable[str], stop: Iterable[str], limit: int,
    min_depth: int = 0, include_starts: bool = True,
) -> list[StoredEvent]:
    """The room's events reached from `starts` through prev_events, deepest first, not past
    `stop` (nor including it), at most `limit`: the walk of /backfill (starts included)
    and /get_missing_events (starts excluded). Rejected events are not served, nor walked
    through."""
    stop_ids = set(stop)
    seen: set[str] = set(stop_ids)
    queue: list[tuple[int, str]] = []
    found: list[StoredEvent] = []

    def push(ids: Iterable[str]) -> None:
        fresh = [e for e in dict.fromkeys(ids) if e not in seen]
        seen.update(fresh)
        for event_id, stored in get_stored_events(txn, fresh).items():
            if stored.room_id == room_id and not stored.rejected and stored.depth >= min_depth:
                heapq.heappush(queue, (-stored.depth, event_id))
                events[event_id] = stored

    events: dict[str, StoredEvent] = {}
    if include_starts:
        push(starts)
    else:
        seen.update(starts)
        push(p for prevs in get_prev_events(txn, list(starts)).values() for p in prevs)
    while queue and len(found) < limit:
        _, event_id = heapq.heappop(queue)
        found.append(events.pop(event_id))
        push(get_prev_events(txn, [event_id])[event_id])
    return found


def events_by_timestamp(txn: Txn, room_id: str, ts: int, direction: str, limit: int,
                        after: tuple[int, int] | None = None) -> list[tuple[str, int, int]]:
    """Accepted, non-outlier events nearest to `ts` in direction `f` (at or after) or `b`
    (at or before), nearest first, at most `limit`: (event ID, origin_server_ts, stream
    ordering). `after`: the (origin_server_ts, stream ordering) of the last one of a
    previous batch, to go on past it."""
    op, order = (">", "ASC") if direction == "f" else ("<", "DESC")
    if after is None:
        where, args = f"e.origin_server_ts {op}= ?", [ts]
    else:
        where = (f"(e.origin_server_ts {op} ? OR (e.origin_server_ts = ?"
                 f" AND e.stream_ordering {op} ?))")
        args = [after[0], after[0], after[1]]
    rows = txn.fetchall(
        f"SELECT e.event_id, e.origin_server_ts, e.stream_ordering FROM events e"
        f" WHERE e.room_id = ? AND {where} AND {CLIENT_VISIBLE}"
        f" ORDER BY e.origin_server_ts {order}, e.stream_ordering {order} LIMIT ?",
        (room_id, *args, limit))
    return [(r[0], int(r[1]), int(r[2])) for r in rows]


# --- servers in rooms -----------------------------------------------------------------------

def server_has_joined_member(txn: Txn, room_id: str, server_name: str) -> bool:
    suffix = ":" + server_name
    return txn.fetchval(
        "SELECT 1 FROM room_memberships WHERE room_id = ? AND membership = 'join'"
        " AND substr(user_id, length(user_id) - ? + 1) = ? LIMIT 1",
        (room_id, len(suffix), suffix)) is not None


def server_member_keys(txn: Txn, room_id: str, server_name: str) -> list[StateKey]:
    """Membership keys of every user of `server_name` the room has ever had a member event
    for: the keys of the state a server visibility check reads."""
    suffix = ":" + server_name
    return [("m.room.member", r[0]) for r in txn.fetchall(
        "SELECT DISTINCT state_key FROM events WHERE room_id = ? AND type = 'm.room.member'"
        " AND substr(state_key, length(state_key) - ? + 1) = ?",
        (room_id, len(suffix), suffix))]
