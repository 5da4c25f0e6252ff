"""Room queries: state by stream position, aliases, directory, relations (the timeline in
topological order is storage/history.py's)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import orjson

from veche.storage.database import Txn

Row = tuple[int, dict[str, Any]]


# --- timeline ------------------------------------------------------------------------------

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


def event_by_timestamp(txn: Txn, room_id: str, ts: int, direction: str) -> tuple[str, int] | None:
    if direction == "f":
        row = txn.fetchone(
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = ? AND origin_server_ts >= ?"
            " AND hidden = 0 ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 1",
            (room_id, ts),
        )
    else:
        row = txn.fetchone(
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = ? AND origin_server_ts <= ?"
            " AND hidden = 0 ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 1",
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


def public_room_entries(txn: Txn, federating_only: bool = False) -> list[dict[str, Any]]:
    """Every published room as a publicRooms chunk entry, most joined members first; with
    `federating_only`, not those whose create event says `m.federate: false` (the listing
    other servers get)."""
    rooms = [r[0] for r in txn.fetchall("SELECT room_id FROM rooms WHERE is_public = 1")]
    if federating_only and rooms:
        clause, args = txn.in_list("c.room_id", rooms)
        local = {room_id for room_id, js in txn.fetchall(
            "SELECT c.room_id, e.json FROM current_state c JOIN events e"
            " ON e.event_id = c.event_id WHERE c.type = 'm.room.create' AND c.state_key = ''"
            f" AND {clause}", args)
            if (orjson.loads(js).get("content") or {}).get("m.federate") is False}
        rooms = [r for r in rooms if r not in local]
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
    depth: int
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
    return relations_in_room_later(txn, parent_ids, rel_types)()


def relations_in_room_later(
    txn: Txn, parent_ids: Sequence[str], rel_types: Sequence[str]
) -> Callable[[], list[Relation]]:
    """`relations_in_room` as held reads (`Txn.fetchall_later`)."""
    reads = []
    ids = list(dict.fromkeys(parent_ids))
    for i in range(0, len(ids), 500):
        clause, args = txn.in_list("c.relates_to_id", ids[i : i + 500])
        rclause, rargs = txn.in_list("c.rel_type", list(rel_types))
        reads.append(txn.fetchall_later(
            "SELECT c.relates_to_id, c.rel_type, c.event_id, c.sender, c.origin_server_ts,"
            " c.depth, c.stream_ordering, c.type, c.room_id,"
            " CASE WHEN c.state_key IS NULL THEN NULL ELSE c.json END"
            f" FROM events c WHERE {clause} AND {rclause} AND c.redacted_by IS NULL"
            # A correlated lookup, not a join: SQLite would drive a join from the parents and
            # scan their room's events for each.
            " AND EXISTS (SELECT 1 FROM events p WHERE p.event_id = c.relates_to_id"
            " AND p.room_id = c.room_id)",
            args + rargs,
        ))
    return lambda: [
        Relation(r[0], r[1], r[2], r[3], int(r[4]), int(r[5]), int(r[6]), r[7], r[8],
                 _visibility_view(r[7], r[9]))
        for rows in reads for r in rows()]


class ThreadReply(NamedTuple):
    root: str
    event_id: str
    depth: int
    pos: int
    sender: str
    view: dict[str, Any]  # as Relation.view


def thread_replies(txn: Txn, room_id: str) -> list[ThreadReply]:
    """The room's unredacted thread replies."""
    return [ThreadReply(root, eid, int(depth), int(so), sender, _visibility_view(etype, js))
            for root, eid, depth, so, sender, etype, js in txn.fetchall(
        "SELECT relates_to_id, event_id, depth, stream_ordering, sender, type,"
        " CASE WHEN state_key IS NULL THEN NULL ELSE json END FROM events WHERE room_id = ?"
        " AND rel_type = 'm.thread' AND redacted_by IS NULL",
        (room_id,),
    )]


def is_admin(txn: Txn, user_id: str) -> bool:
    return bool(txn.fetchval("SELECT is_admin FROM users WHERE user_id = ?", (user_id,)))
