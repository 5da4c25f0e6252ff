"""Spaces and room summaries (spec: client-server API "Spaces" and "Room summaries"):
the depth-first walk of m.space.child links behind /hierarchy, and /room_summary.

A child room this server is not in is asked of the servers in its link's `via`
(federation /hierarchy, services/spaces_remote.py); the walk is then done again with what
they said, until nothing more can be learnt. Other servers' /hierarchy is served here too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.core.numbers import parse_count
from veche.core.server_acl import SERVER_ACL, server_allowed
from veche.errors import forbidden, invalid_param, not_found
from veche.services.spaces_remote import RemoteRooms, SpaceFetcher
from veche.storage import events as ev_store
from veche.storage import federation_events as fstore
from veche.storage import rooms as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

DEFAULT_LIMIT, MAX_LIMIT = 50, 100
DEFAULT_DEPTH, MAX_DEPTH = 10, 50
# A space tree is walked afresh for each page; past this many rooms the walk stops.
MAX_ROOMS_WALKED = 1000


def _valid_order(content: dict[str, Any]) -> str | None:
    order = content.get("order")
    if isinstance(order, str) and len(order) <= 50 and all(" " <= c <= "~" for c in order):
        return order
    return None


def child_sort_key(event: dict[str, Any]) -> tuple[int, str, int, str]:
    """The spec's order of a space's children: a valid `order` first (lexicographic), then
    the child event's origin_server_ts, then the room ID."""
    order = _valid_order(event["content"])
    return (0 if order is not None else 1, order or "", int(event.get("origin_server_ts", 0)),
            event["state_key"])


def _children(events: list[dict[str, Any]], suggested_only: bool) -> list[dict[str, Any]]:
    out = []
    for ev in events:
        content = ev.get("content")
        if not isinstance(content, dict):
            continue
        via = content.get("via")
        # A child without a non-empty `via` is a removed link.
        if not isinstance(via, list) or not via or not ev.get("state_key"):
            continue
        if suggested_only and content.get("suggested") is not True:
            continue
        out.append(ev)
    return sorted(out, key=child_sort_key)


def _stripped(ev: dict[str, Any]) -> dict[str, Any]:
    return {"type": ev["type"], "state_key": ev["state_key"], "content": ev["content"],
            "sender": ev["sender"], "origin_server_ts": ev["origin_server_ts"]}


class _Access:
    """What a user may see of rooms: theirs, invited, or open to them by join rule or history."""

    def __init__(self, memberships: dict[str, str]) -> None:
        self.memberships = memberships

    def allows(self, summary: dict[str, Any]) -> bool:
        if self.memberships.get(summary["room_id"]) in ("join", "invite"):
            return True
        if summary["join_rule"] in ("public", "knock", "knock_restricted"):
            return True
        if summary["world_readable"]:
            return True
        return summary["join_rule"] == "restricted" and any(
            self.memberships.get(r) == "join" for r in summary.get("allowed_room_ids", []))


def _memberships(txn: Txn, user_id: str | None) -> dict[str, str]:
    if user_id is None:
        return {}
    return {room_id: m for m in ("join", "invite")
            for room_id in ev_store.get_rooms_for_user(txn, user_id, (m,))}


class _Walk:
    """One depth-first walk; `missing` collects the rooms linked with `via` that neither
    this server nor what other servers told (`remote`) knows."""

    def __init__(self, txn: Txn, root: str, access: _Access, remote: RemoteRooms,
                 depth_limit: int, suggested_only: bool) -> None:
        self.txn, self.root, self.access, self.remote = txn, root, access, remote
        self.depth_limit, self.suggested_only = depth_limit, suggested_only
        self.missing: dict[str, list[str]] = {}

    def run(self) -> list[dict[str, Any]]:
        rooms: list[dict[str, Any]] = []
        seen: set[str] = set()
        summaries = store.room_summaries(self.txn, [self.root])
        stack: list[tuple[str, int, list[str]]] = [(self.root, 0, [])]
        while stack and len(rooms) < MAX_ROOMS_WALKED:
            current, depth, via = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            summary = summaries.get(current)
            children_state: list[dict[str, Any]] | None = None
            if summary is None:
                if current in self.remote.hidden:
                    continue
                full = self.remote.full.get(current)
                partial = self.remote.partial.get(current)
                if full is not None:
                    summary, children_state = full
                elif partial is not None and (current in self.remote.asked
                                              or depth >= self.depth_limit
                                              or partial.get("room_type") != "m.space"):
                    # All that is needed of it, or all that could be learnt.
                    summary, children_state = partial, []
                else:
                    if via and current not in self.remote.asked:
                        self.missing[current] = via
                    continue
            if summary is None or not self.access.allows(summary):
                continue
            if children_state is None:
                children_state = (store.space_children(self.txn, current)
                                  if summary.get("room_type") == "m.space" else [])
            children = _children(children_state, self.suggested_only)
            rooms.append({**summary, "children_state": [_stripped(c) for c in children]})
            if depth < self.depth_limit:
                fresh = [c["state_key"] for c in children if c["state_key"] not in summaries]
                summaries.update(store.room_summaries(self.txn, fresh))
                stack.extend((c["state_key"], depth + 1, c["content"]["via"])
                             for c in reversed(children))
        return rooms


class SpaceService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.remote = SpaceFetcher(hs)

    async def hierarchy(self, user_id: str, room_id: str, *, limit: int | None,
                        max_depth: int | None, suggested_only: bool,
                        from_token: str | None) -> dict[str, Any]:
        limit = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        depth_limit = min(DEFAULT_DEPTH if max_depth is None else max_depth, MAX_DEPTH)
        shape = f"{depth_limit}.{int(suggested_only)}"
        offset = 0
        if from_token is not None:
            head, _, rest = from_token.partition(".")
            parsed = parse_count(head)
            if rest != shape or parsed is None:
                raise invalid_param("from does not belong to this max_depth and suggested_only")
            offset = parsed

        remote = self.remote.walk(suggested_only)

        def walk(txn: Txn) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
            access = _Access(_memberships(txn, user_id))
            root = store.room_summaries(txn, [room_id]).get(room_id)
            if root is None or not access.allows(root):
                raise forbidden("You may not see this room")
            w = _Walk(txn, room_id, access, remote, depth_limit, suggested_only)
            return w.run(), w.missing

        while True:
            rooms, missing = await self.hs.db.run_read(walk)
            if not missing or not await remote.ask(missing):
                break
        out: dict[str, Any] = {"rooms": rooms[offset:offset + limit]}
        if offset + limit < len(rooms):
            out["next_batch"] = f"{offset + limit}.{shape}"
        return out

    async def serve_hierarchy(self, origin: str, room_id: str,
                              suggested_only: bool) -> dict[str, Any]:
        return await self.hs.db.run_read(serve_hierarchy, origin, room_id, suggested_only)

    async def summary(self, user_id: str | None, room_id_or_alias: str) -> dict[str, Any]:
        room_id = await self.hs.rooms.resolve_room(room_id_or_alias)

        def load(txn: Txn) -> dict[str, Any] | None:
            summary = store.room_summaries(txn, [room_id]).get(room_id)
            if summary is None or not _Access(_memberships(txn, user_id)).allows(summary):
                return None
            if user_id is not None:
                membership = ev_store.get_membership(txn, room_id, user_id)
                summary["membership"] = membership[0] if membership else "leave"
            return summary

        summary = await self.hs.db.run(load)
        if summary is None:
            raise not_found("Room not found or not visible to you")
        return summary


class _ServerAccess(_Access):
    """What another server may see of rooms: those it has a user in, and those open to its
    users (public, knockable, world-readable, or restricted to a room it is in)."""

    def __init__(self, txn: Txn, origin: str) -> None:
        super().__init__({})
        self.txn, self.origin = txn, origin

    def allows(self, summary: dict[str, Any]) -> bool:
        room_id = summary["room_id"]
        acl = ev_store.get_current_state(self.txn, room_id, [(SERVER_ACL, "")]).get((SERVER_ACL, ""))
        if not server_allowed(self.origin, acl.get("content") if acl else None):
            return False
        if summary["join_rule"] in ("public", "knock", "knock_restricted") or summary["world_readable"]:
            return True
        if fstore.server_has_joined_member(self.txn, room_id, self.origin):
            return True
        return summary["join_rule"] == "restricted" and any(
            fstore.server_has_joined_member(self.txn, r, self.origin)
            for r in summary.get("allowed_room_ids", []))


def serve_hierarchy(txn: Txn, origin: str, room_id: str, suggested_only: bool) -> dict[str, Any]:
    """The federation /hierarchy answer: the room with its children links, and each child
    this server knows, or its ID when `origin` may not see it. None when the room is unknown
    here or hidden from `origin`."""
    access = _ServerAccess(txn, origin)
    root = store.room_summaries(txn, [room_id]).get(room_id)
    if root is None or not access.allows(root):
        raise not_found("Room not found or not visible to your server")
    links = (_children(store.space_children(txn, room_id), suggested_only)
             if root.get("room_type") == "m.space" else [])
    known = store.room_summaries(txn, [c["state_key"] for c in links])
    children, inaccessible = [], []
    for link in links:
        child = known.get(link["state_key"])
        if child is None:
            continue  # not known here: the asking server has to ask elsewhere
        if access.allows(child):
            children.append(child)
        else:
            inaccessible.append(child["room_id"])
    return {"room": {**root, "children_state": [_stripped(c) for c in links]},
            "children": children, "inaccessible_children": inaccessible}
