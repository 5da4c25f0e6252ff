"""Room events, current state and membership."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson

from veche.storage import search
from veche.storage.database import Txn
from veche.storage.event_graph import EventContext, persist_event_graph

StateKey = tuple[str, str]


def get_room_version(txn: Txn, room_id: str) -> str | None:
    return txn.fetchval("SELECT room_version FROM rooms WHERE room_id = ?", (room_id,))  # type: ignore[no-any-return]


def insert_room(txn: Txn, room_id: str, room_version: str, creator: str, now_ms: int) -> None:
    txn.execute(
        "INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES (?, ?, ?, ?)",
        (room_id, room_version, creator, now_ms),
    )


def get_events(txn: Txn, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Stored events by ID (the PDU JSON, already pruned if redacted)."""
    out: dict[str, dict[str, Any]] = {}
    ids = list(dict.fromkeys(event_ids))
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("event_id", ids[i : i + 500])
        for event_id, raw in txn.fetchall(f"SELECT event_id, json FROM events WHERE {clause}", args):
            out[event_id] = orjson.loads(raw)
    return out


def get_event(txn: Txn, event_id: str) -> dict[str, Any] | None:
    raw = txn.fetchval("SELECT json FROM events WHERE event_id = ?", (event_id,))
    return orjson.loads(raw) if raw is not None else None


def get_event_position(txn: Txn, event_id: str) -> tuple[str, int] | None:
    """(room_id, stream_ordering) of an event."""
    row = txn.fetchone("SELECT room_id, stream_ordering FROM events WHERE event_id = ?", (event_id,))
    return (row[0], row[1]) if row else None


def get_current_state_ids(
    txn: Txn, room_id: str, keys: Iterable[StateKey] | None = None
) -> dict[StateKey, str]:
    """The room's current state (only `keys` of it, if given) as event IDs."""
    return get_current_state_ids_later(txn, room_id, keys)()


def get_current_state_ids_later(
    txn: Txn, room_id: str, keys: Iterable[StateKey] | None = None
) -> Callable[[], dict[StateKey, str]]:
    """`get_current_state_ids` as a held read (`Txn.fetchall_later`)."""
    if keys is None:
        rows = txn.fetchall_later(
            "SELECT type, state_key, event_id FROM current_state WHERE room_id = ?", (room_id,)
        )
        return lambda: {(t, sk): eid for t, sk, eid in rows()}
    by_type: dict[str, list[str]] = {}
    for t, sk in dict.fromkeys(keys):
        by_type.setdefault(t, []).append(sk)
    # A few keys of a big room's state: index probes, one SELECT per type in one statement.
    # (An OR of (type, state_key) pairs makes SQLite without statistics scan the room.)
    selects: list[str] = []
    args: list[Any] = []
    for t, state_keys in by_type.items():
        for i in range(0, len(state_keys), 100):
            chunk = state_keys[i : i + 100]
            selects.append(
                "SELECT type, state_key, event_id FROM current_state WHERE room_id = ?"
                f" AND type = ? AND state_key IN ({', '.join('?' * len(chunk))})")
            args += [room_id, t, *chunk]
    start = 0
    reads = []
    for i in range(0, len(selects), 50):
        part = selects[i : i + 50]
        n = sum(sql.count("?") for sql in part)
        reads.append(txn.fetchall_later(" UNION ALL ".join(part), args[start : start + n]))
        start += n
    return lambda: {(t, sk): eid for rows in reads for t, sk, eid in rows()}


def get_current_state(
    txn: Txn, room_id: str, keys: Iterable[StateKey] | None = None
) -> dict[StateKey, dict[str, Any]]:
    ids = get_current_state_ids(txn, room_id, keys)
    events = get_events(txn, list(ids.values()))
    return {k: events[eid] for k, eid in ids.items() if eid in events}


def get_event_for_txn_id(
    txn: Txn, user_id: str, device_id: str, txn_id: str, endpoint: str
) -> str | None:
    return get_event_for_txn_id_later(txn, user_id, device_id, txn_id, endpoint)()


def get_event_for_txn_id_later(
    txn: Txn, user_id: str, device_id: str, txn_id: str, endpoint: str
) -> Callable[[], str | None]:
    """`get_event_for_txn_id` as a held read (`Txn.fetchall_later`)."""
    rows = txn.fetchall_later(
        "SELECT event_id FROM event_txn_ids"
        " WHERE user_id = ? AND device_id = ? AND endpoint = ? AND txn_id = ?",
        (user_id, device_id, endpoint, txn_id),
    )
    return lambda: next((r[0] for r in rows()), None)


def get_membership(txn: Txn, room_id: str, user_id: str) -> tuple[str, str] | None:
    """(membership, event_id) of a user in a room."""
    row = txn.fetchone(
        "SELECT membership, event_id FROM room_memberships WHERE room_id = ? AND user_id = ?",
        (room_id, user_id),
    )
    return (row[0], row[1]) if row else None


def get_rooms_for_user(txn: Txn, user_id: str, memberships: Sequence[str] = ("join",)) -> list[str]:
    clause, args = txn.in_list("membership", memberships)
    return [
        r[0] for r in txn.fetchall(
            f"SELECT room_id FROM room_memberships WHERE user_id = ? AND {clause}",
            [user_id, *args],
        )
    ]


def get_room_members(txn: Txn, room_id: str, membership: str = "join") -> list[str]:
    return [
        r[0] for r in txn.fetchall(
            "SELECT user_id FROM room_memberships WHERE room_id = ? AND membership = ?",
            (room_id, membership),
        )
    ]


def _relation(event: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(relates_to_id, rel_type, thread_id) from content.m.relates_to."""
    content = event.get("content")
    rel = content.get("m.relates_to") if isinstance(content, dict) else None
    if not isinstance(rel, dict):
        return None, None, None
    target, rel_type = rel.get("event_id"), rel.get("rel_type")
    if not isinstance(target, str) or "\x00" in target:
        return None, None, None  # no event ID holds a NUL: this relates to nothing
    if not isinstance(rel_type, str) or "\x00" in rel_type:
        rel_type = None  # a plain reply (m.in_reply_to) has no rel_type
    thread_id = target if rel_type == "m.thread" else None
    return target, rel_type, thread_id


def thread_id_of(txn: Txn, event: dict[str, Any]) -> str | None:
    """The thread an event belongs to (None: the main timeline), as `store_event` records it:
    worked out from the event, so its persister need not read it back."""
    relates_to, _rel_type, thread_id = _relation(event)
    if thread_id is None and relates_to is not None:
        # An event relating to a thread reply (e.g. a reaction) belongs to that thread.
        thread_id = txn.fetchval("SELECT thread_id FROM events WHERE event_id = ?", (relates_to,))
    return thread_id


def store_event(
    txn: Txn, event: dict[str, Any], stream_ordering: int, context: EventContext,
    txn_key: tuple[str, str, str, str] | None = None,
) -> int | None:
    """Store an event and its place in the room's graph and state groups; returns the state
    group after it. Current state is the persist step's (services/persist.py)."""
    room_id, event_id = event["room_id"], event["event_id"]
    state_key = event.get("state_key")
    relates_to, rel_type, _ = _relation(event)
    thread_id = thread_id_of(txn, event)
    stored = {k: v for k, v in event.items() if k != "event_id"}
    stored["event_id"] = event_id
    txn.write(
        "INSERT INTO events (stream_ordering, event_id, room_id, depth, type, state_key, sender,"
        " origin_server_ts, relates_to_id, rel_type, thread_id, json, outlier, hidden)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            stream_ordering, event_id, room_id, event["depth"], event["type"], state_key,
            event["sender"], event["origin_server_ts"], relates_to, rel_type, thread_id,
            orjson.dumps(stored).decode(), int(context.outlier),
            int(context.outlier or context.rejected is not None or context.soft_failed),
        ),
    )
    group = persist_event_graph(txn, event, context)
    if txn_key is not None and not context.outlier and context.rejected is None:
        txn.write(
            "INSERT INTO event_txn_ids (user_id, device_id, txn_id, endpoint, event_id)"
            " VALUES (?, ?, ?, ?, ?)",
            (*txn_key, event_id),
        )
    return group


def write_state_delta(
    txn: Txn, room_id: str, changed: Mapping[StateKey, dict[str, Any]], removed: Iterable[StateKey],
    stream_ordering: int,
) -> None:
    """Move current state (and membership) by a difference: `changed` maps keys to their new
    events, `removed` keys leave the state. Each row's stream_ordering is the position at
    which it became current (that of the event whose persisting changed it), so readers of
    "what changed since" see a key a state resolution moved to an older event."""
    for (etype, state_key), event in changed.items():
        event_id = event["event_id"]
        txn.execute(
            "INSERT INTO current_state (room_id, type, state_key, event_id, stream_ordering)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (room_id, type, state_key) DO UPDATE"
            " SET event_id = excluded.event_id, stream_ordering = excluded.stream_ordering",
            (room_id, etype, state_key, event_id, stream_ordering),
        )
        if etype == "m.room.member":
            set_membership(txn, room_id, state_key, event["content"]["membership"], event_id,
                           stream_ordering, event["sender"])
    for etype, state_key in removed:
        txn.execute(
            "DELETE FROM current_state WHERE room_id = ? AND type = ? AND state_key = ?",
            (room_id, etype, state_key),
        )
        if etype == "m.room.member":
            txn.execute(
                "DELETE FROM room_memberships WHERE room_id = ? AND user_id = ?",
                (room_id, state_key),
            )


def apply_redaction(txn: Txn, target_id: str, redacted_json: dict[str, Any], redaction_id: str) -> None:
    txn.execute(
        "UPDATE events SET json = ?, redacted_by = ? WHERE event_id = ?",
        (orjson.dumps(redacted_json).decode(), redaction_id, target_id),
    )
    search.unindex_event(txn, target_id)


def set_membership(txn: Txn, room_id: str, user_id: str, membership: str, event_id: str,
                   stream_ordering: int, sender: str) -> None:
    """A user's membership row (also for a room this server holds no state of: an invite
    from another server, its rejection)."""
    txn.execute(
        "INSERT INTO room_memberships (user_id, room_id, membership, event_id,"
        " stream_ordering, sender, forgotten) VALUES (?, ?, ?, ?, ?, ?, 0)"
        " ON CONFLICT (user_id, room_id) DO UPDATE SET membership = excluded.membership,"
        " event_id = excluded.event_id, stream_ordering = excluded.stream_ordering,"
        " sender = excluded.sender, forgotten = 0",
        (user_id, room_id, membership, event_id, stream_ordering, sender))
