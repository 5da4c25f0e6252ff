"""Room queries: timeline pagination, visibility history, aliases, directory, relations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import orjson

from veche.storage.database import Txn

Row = tuple[int, dict[str, Any]]


def _rows(raw: list[tuple[Any, ...]]) -> list[Row]:
    return [(int(so), orjson.loads(js)) for so, js in raw]


# --- timeline ------------------------------------------------------------------------------

def paginate(
    txn: Txn, room_id: str, from_pos: int, to_pos: int | None, direction: str, limit: int
) -> list[Row]:
    """Events of a room after (dir f) or up to and including (dir b) a stream position.

    A position sits between events: events with stream_ordering <= pos are "before" it.
    """
    if direction == "b":
        sql = "SELECT stream_ordering, json FROM events WHERE room_id = ? AND stream_ordering <= ?"
        args: list[Any] = [room_id, from_pos]
        if to_pos is not None:
            sql += " AND stream_ordering > ?"
            args.append(to_pos)
        sql += " ORDER BY stream_ordering DESC LIMIT ?"
    else:
        sql = "SELECT stream_ordering, json FROM events WHERE room_id = ? AND stream_ordering > ?"
        args = [room_id, from_pos]
        if to_pos is not None:
            sql += " AND stream_ordering <= ?"
            args.append(to_pos)
        sql += " ORDER BY stream_ordering ASC LIMIT ?"
    args.append(limit)
    return _rows(txn.fetchall(sql, args))


def get_event_row(txn: Txn, event_id: str) -> tuple[str, int, dict[str, Any]] | None:
    """(room_id, stream_ordering, event) of an event."""
    row = txn.fetchone(
        "SELECT room_id, stream_ordering, json FROM events WHERE event_id = ?", (event_id,)
    )
    if row is None:
        return None
    return row[0], int(row[1]), orjson.loads(row[2])


def get_event_rows(txn: Txn, event_ids: Sequence[str]) -> dict[str, Row]:
    out: dict[str, Row] = {}
    ids = list(dict.fromkeys(event_ids))
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("event_id", ids[i : i + 500])
        for event_id, so, js in txn.fetchall(
            f"SELECT event_id, stream_ordering, json FROM events WHERE {clause}", args
        ):
            out[event_id] = (int(so), orjson.loads(js))
    return out


def max_room_position(txn: Txn, room_id: str) -> int:
    return int(txn.fetchval(
        "SELECT MAX(stream_ordering) FROM events WHERE room_id = ?", (room_id,)
    ) or 0)


def visibility_history(
    txn: Txn, room_id: str, user_id: str
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(history_visibility changes, the user's membership changes) as (position, value)."""
    hv: list[tuple[int, str]] = []
    for so, js in txn.fetchall(
        "SELECT stream_ordering, json FROM events WHERE room_id = ?"
        " AND type = 'm.room.history_visibility' AND state_key = '' ORDER BY stream_ordering",
        (room_id,),
    ):
        value = orjson.loads(js).get("content", {}).get("history_visibility")
        hv.append((int(so), value if isinstance(value, str) else "shared"))
    members: list[tuple[int, str]] = []
    for so, js in txn.fetchall(
        "SELECT stream_ordering, json FROM events WHERE room_id = ?"
        " AND type = 'm.room.member' AND state_key = ? ORDER BY stream_ordering",
        (room_id, user_id),
    ):
        value = orjson.loads(js).get("content", {}).get("membership")
        members.append((int(so), value if isinstance(value, str) else "leave"))
    return hv, members


def state_ids_at(txn: Txn, room_id: str, pos: int, types: Sequence[str] | None = None) -> dict[tuple[str, str], str]:
    sql = (
        "SELECT type, state_key, MAX(stream_ordering) FROM events"
        " WHERE room_id = ? AND state_key IS NOT NULL AND stream_ordering <= ?"
    )
    args: list[Any] = [room_id, pos]
    if types is not None:
        clause, targs = txn.in_list("type", list(types))
        sql += f" AND {clause}"
        args += targs
    sql += " GROUP BY type, state_key"
    positions = [int(r[2]) for r in txn.fetchall(sql, args)]
    out: dict[tuple[str, str], str] = {}
    for i in range(0, len(positions), 500):
        clause, pargs = txn.in_list("stream_ordering", positions[i : i + 500])
        for t, sk, eid in txn.fetchall(
            f"SELECT type, state_key, event_id FROM events WHERE {clause}", pargs
        ):
            out[(t, sk)] = eid
    return out


def member_event_ids_at(txn: Txn, room_id: str, pos: int, user_ids: Sequence[str]) -> list[str]:
    """Event IDs of the given users' membership at a position."""
    out: list[str] = []
    users = list(user_ids)
    for i in range(0, len(users), 200):
        clause, args = txn.in_list("state_key", users[i : i + 200])
        positions = [int(r[0]) for r in txn.fetchall(
            "SELECT MAX(stream_ordering) FROM events WHERE room_id = ? AND type = 'm.room.member'"
            f" AND stream_ordering <= ? AND {clause} GROUP BY state_key",
            [room_id, pos, *args],
        )]
        if positions:
            pclause, pargs = txn.in_list("stream_ordering", positions)
            out += [r[0] for r in txn.fetchall(
                f"SELECT event_id FROM events WHERE {pclause}", pargs
            )]
    return out


def event_by_timestamp(txn: Txn, room_id: str, ts: int, direction: str) -> tuple[str, int] | None:
    if direction == "f":
        row = txn.fetchone(
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = ? AND origin_server_ts >= ?"
            " ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 1",
            (room_id, ts),
        )
    else:
        row = txn.fetchone(
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = ? AND origin_server_ts <= ?"
            " ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 1",
            (room_id, ts),
        )
    return (row[0], int(row[1])) if row else None


# --- membership -------------------------------------------------------------------------

def get_membership_row(txn: Txn, room_id: str, user_id: str) -> tuple[str, int, int] | None:
    """(membership, stream_ordering, forgotten)."""
    row = txn.fetchone(
        "SELECT membership, stream_ordering, forgotten FROM room_memberships"
        " WHERE room_id = ? AND user_id = ?",
        (room_id, user_id),
    )
    return (row[0], int(row[1]), int(row[2])) if row else None


def forget_room(txn: Txn, room_id: str, user_id: str) -> None:
    txn.execute(
        "UPDATE room_memberships SET forgotten = 1 WHERE room_id = ? AND user_id = ?",
        (room_id, user_id),
    )


def joined_rooms(txn: Txn, user_id: str) -> list[str]:
    return [r[0] for r in txn.fetchall(
        "SELECT room_id FROM room_memberships WHERE user_id = ? AND membership = 'join'"
        " ORDER BY stream_ordering",
        (user_id,),
    )]


def get_profile(txn: Txn, user_id: str) -> dict[str, Any] | None:
    row = txn.fetchone("SELECT displayname, avatar_url FROM users WHERE user_id = ?", (user_id,))
    if row is None:
        return None
    return {k: v for k, v in (("displayname", row[0]), ("avatar_url", row[1])) if v is not None}


# --- aliases ----------------------------------------------------------------------------

def get_alias(txn: Txn, alias: str) -> tuple[str, str] | None:
    """(room_id, creator) of an alias."""
    row = txn.fetchone("SELECT room_id, creator FROM room_aliases WHERE room_alias = ?", (alias,))
    return (row[0], row[1]) if row else None


def create_alias(txn: Txn, alias: str, room_id: str, creator: str) -> bool:
    """False if the alias is taken."""
    if get_alias(txn, alias) is not None:
        return False
    txn.execute(
        "INSERT INTO room_aliases (room_alias, room_id, creator) VALUES (?, ?, ?)",
        (alias, room_id, creator),
    )
    return True


def delete_alias(txn: Txn, alias: str) -> None:
    txn.execute("DELETE FROM room_aliases WHERE room_alias = ?", (alias,))


def aliases_for_room(txn: Txn, room_id: str) -> list[str]:
    return [r[0] for r in txn.fetchall(
        "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY room_alias", (room_id,)
    )]


def move_aliases(txn: Txn, old_room: str, new_room: str) -> list[str]:
    aliases = aliases_for_room(txn, old_room)
    txn.execute("UPDATE room_aliases SET room_id = ? WHERE room_id = ?", (new_room, old_room))
    return aliases


# --- directory --------------------------------------------------------------------------

def room_exists(txn: Txn, room_id: str) -> bool:
    return txn.fetchone("SELECT 1 FROM rooms WHERE room_id = ?", (room_id,)) is not None


def is_public(txn: Txn, room_id: str) -> bool | None:
    value = txn.fetchval("SELECT is_public FROM rooms WHERE room_id = ?", (room_id,))
    return None if value is None else bool(value)


def set_public(txn: Txn, room_id: str, public: bool) -> None:
    txn.execute("UPDATE rooms SET is_public = ? WHERE room_id = ?", (int(public), room_id))


def public_room_entries(txn: Txn) -> list[dict[str, Any]]:
    """Every published room as a publicRooms chunk entry, most joined members first."""
    rooms = [r[0] for r in txn.fetchall("SELECT room_id FROM rooms WHERE is_public = 1")]
    out = list(room_summaries(txn, rooms).values())
    for entry in out:
        for extra in ("allowed_room_ids", "encryption", "room_version"):
            entry.pop(extra, None)
    out.sort(key=lambda e: (-e["num_joined_members"], e["room_id"]))
    return out


_SUMMARY_STATE = ("m.room.name", "m.room.topic", "m.room.avatar", "m.room.canonical_alias",
                  "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
                  "m.room.create", "m.room.encryption")


def room_summaries(txn: Txn, rooms: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The spec's room summary (public rooms chunk, room type, allowed rooms, encryption and
    version) of each known room among `rooms`, from its current state."""
    if not rooms:
        return {}
    clause, args = txn.in_list("room_id", list(rooms))
    versions = dict(txn.fetchall(f"SELECT room_id, room_version FROM rooms WHERE {clause}", args))
    counts: dict[str, int] = {}
    for room_id, n in txn.fetchall(
        f"SELECT room_id, COUNT(*) FROM room_memberships WHERE membership = 'join' AND {clause}"
        " GROUP BY room_id",
        args,
    ):
        counts[room_id] = int(n)
    tclause, targs = txn.in_list("c.type", list(_SUMMARY_STATE))
    state: dict[str, dict[str, dict[str, Any]]] = {}
    for room_id, typ, js in txn.fetchall(
        "SELECT c.room_id, c.type, e.json FROM current_state c JOIN events e"
        f" ON e.event_id = c.event_id WHERE c.state_key = '' AND {tclause}"
        f" AND {clause.replace('room_id', 'c.room_id')}",
        [*targs, *args],
    ):
        content = orjson.loads(js).get("content") or {}
        state.setdefault(room_id, {})[typ] = content if isinstance(content, dict) else {}
    out = {}
    for room_id in rooms:
        if room_id not in versions:
            continue
        s = state.get(room_id, {})
        join_rules = s.get("m.room.join_rules", {})
        entry: dict[str, Any] = {
            "room_id": room_id,
            "num_joined_members": counts.get(room_id, 0),
            "world_readable": s.get("m.room.history_visibility", {}).get("history_visibility")
            == "world_readable",
            "guest_can_join": s.get("m.room.guest_access", {}).get("guest_access") == "can_join",
            "join_rule": join_rules.get("join_rule", "public"),
            "room_version": versions[room_id],
        }
        for typ, key, out_key in (
            ("m.room.name", "name", "name"), ("m.room.topic", "topic", "topic"),
            ("m.room.avatar", "url", "avatar_url"),
            ("m.room.canonical_alias", "alias", "canonical_alias"),
            ("m.room.create", "type", "room_type"),
            ("m.room.encryption", "algorithm", "encryption"),
        ):
            value = s.get(typ, {}).get(key)
            if isinstance(value, str) and value:
                entry[out_key] = value
        if entry.get("encryption") not in (None, "m.megolm.v1.aes-sha2"):
            del entry["encryption"]
        if not isinstance(entry["join_rule"], str):
            entry["join_rule"] = "public"
        allow = join_rules.get("allow")
        if entry["join_rule"] in ("restricted", "knock_restricted") and isinstance(allow, list):
            entry["allowed_room_ids"] = [
                a["room_id"] for a in allow if isinstance(a, dict)
                and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)]
        out[room_id] = entry
    return out


def space_children(txn: Txn, room_id: str) -> list[dict[str, Any]]:
    """The room's current m.space.child events (full events)."""
    return [orjson.loads(js) for (js,) in txn.fetchall(
        "SELECT e.json FROM current_state c JOIN events e ON e.event_id = c.event_id"
        " WHERE c.room_id = ? AND c.type = 'm.space.child'", (room_id,))]


# --- relations --------------------------------------------------------------------------

def relation_rows(
    txn: Txn, parent_ids: Sequence[str], rel_types: Sequence[str] | None = None,
) -> list[tuple[str, str, str, str, int, int, str]]:
    """Unredacted relations of events: (parent, rel_type, event_id, sender, ts, pos, type)."""
    out: list[tuple[str, str, str, str, int, int, str]] = []
    ids = list(dict.fromkeys(parent_ids))
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("relates_to_id", ids[i : i + 500])
        sql = (
            "SELECT relates_to_id, rel_type, event_id, sender, origin_server_ts,"
            f" stream_ordering, type FROM events WHERE {clause} AND redacted_by IS NULL"
            " AND rel_type IS NOT NULL"
        )
        if rel_types is not None:
            rclause, rargs = txn.in_list("rel_type", list(rel_types))
            sql += f" AND {rclause}"
            args = args + rargs
        for r in txn.fetchall(sql, args):
            out.append((r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6]))
    return out


class Relation(NamedTuple):
    parent: str
    rel_type: str
    event_id: str
    sender: str
    ts: int
    pos: int
    type: str
    room_id: str
    # What history visibility needs to judge the event: its type, and all of it for the
    # (rare) state events, whose membership or visibility content matters at their position.
    view: dict[str, Any]


def _visibility_view(etype: str, js: str | None) -> dict[str, Any]:
    return {"type": etype} if js is None else orjson.loads(js)


def relations_in_room(
    txn: Txn, parent_ids: Sequence[str], rel_types: Sequence[str]
) -> list[Relation]:
    """Unredacted relations of events sent in the event's own room (one sent elsewhere
    pointing at it is no relation of it)."""
    out: list[Relation] = []
    ids = list(dict.fromkeys(parent_ids))
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("c.relates_to_id", ids[i : i + 500])
        rclause, rargs = txn.in_list("c.rel_type", list(rel_types))
        for r in txn.fetchall(
            "SELECT c.relates_to_id, c.rel_type, c.event_id, c.sender, c.origin_server_ts,"
            " c.stream_ordering, c.type, c.room_id,"
            " CASE WHEN c.state_key IS NULL THEN NULL ELSE c.json END"
            " FROM events c JOIN events p ON p.event_id = c.relates_to_id"
            f" AND p.room_id = c.room_id WHERE {clause} AND {rclause}"
            " AND c.redacted_by IS NULL",
            args + rargs,
        ):
            out.append(Relation(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), r[6], r[7],
                                _visibility_view(r[6], r[8])))
    return out


def visibility_histories(
    txn: Txn, room_ids: Sequence[str], user_id: str
) -> dict[str, tuple[list[tuple[int, str]], list[tuple[int, str]], str | None]]:
    """visibility_history and current membership of several rooms in two queries:
    room -> (history_visibility changes, the user's membership changes, membership now)."""
    out: dict[str, tuple[list[tuple[int, str]], list[tuple[int, str]], str | None]] = {}
    rooms = list(dict.fromkeys(room_ids))
    for i in range(0, len(rooms), 500):
        chunk = rooms[i : i + 500]
        current: dict[str, str] = {}
        clause, args = txn.in_list("room_id", chunk)
        for room_id, membership in txn.fetchall(
            f"SELECT room_id, membership FROM room_memberships WHERE user_id = ? AND {clause}",
            [user_id, *args],
        ):
            current[room_id] = membership
        for room_id in chunk:
            out[room_id] = ([], [], current.get(room_id))
        for room_id, so, etype, js in txn.fetchall(
            f"SELECT room_id, stream_ordering, type, json FROM events WHERE {clause} AND ("
            "(type = 'm.room.history_visibility' AND state_key = '')"
            " OR (type = 'm.room.member' AND state_key = ?)) ORDER BY stream_ordering",
            [*args, user_id],
        ):
            hv, members, _ = out[room_id]
            content = orjson.loads(js).get("content", {})
            if etype == "m.room.member":
                value = content.get("membership")
                members.append((int(so), value if isinstance(value, str) else "leave"))
            else:
                value = content.get("history_visibility")
                hv.append((int(so), value if isinstance(value, str) else "shared"))
    return out


def thread_roots(
    txn: Txn, room_id: str, visible: Callable[[int, dict[str, Any]], bool] | None = None,
) -> list[tuple[str, int, list[str]]]:
    """(root, latest reply position, reply senders) of the room's threads, newest first;
    judged only on the replies `visible` (position, event) lets through."""
    groups: dict[str, tuple[int, set[str]]] = {}
    for root, so, sender, etype, js in txn.fetchall(
        "SELECT relates_to_id, stream_ordering, sender, type,"
        " CASE WHEN state_key IS NULL THEN NULL ELSE json END FROM events WHERE room_id = ?"
        " AND rel_type = 'm.thread' AND redacted_by IS NULL",
        (room_id,),
    ):
        if visible is not None and not visible(int(so), _visibility_view(etype, js)):
            continue
        latest, senders = groups.get(root, (0, set()))
        senders.add(sender)
        groups[root] = (max(latest, int(so)), senders)
    out = [(root, latest, sorted(senders)) for root, (latest, senders) in groups.items()]
    out.sort(key=lambda t: -t[1])
    return out


def is_admin(txn: Txn, user_id: str) -> bool:
    return bool(txn.fetchval("SELECT is_admin FROM users WHERE user_id = ?", (user_id,)))
