"""Spaces and room summaries (spec: client-server API "Spaces" and "Room summaries"):
the depth-first walk of m.space.child links behind /hierarchy, and /room_summary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.core.numbers import parse_count
from veche.errors import forbidden, invalid_param, not_found
from veche.storage import events as ev_store
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


class SpaceService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

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

        def walk(txn: Txn) -> list[dict[str, Any]]:
            access = _Access(_memberships(txn, user_id))
            root = store.room_summaries(txn, [room_id]).get(room_id)
            if root is None or not access.allows(root):
                raise forbidden("You may not see this room")
            rooms: list[dict[str, Any]] = []
            seen: set[str] = set()
            # A space's children are summarised in one query when it is expanded.
            summaries: dict[str, dict[str, Any]] = {room_id: root}
            stack: list[tuple[str, int]] = [(room_id, 0)]
            while stack and len(rooms) < MAX_ROOMS_WALKED:
                current, depth = stack.pop()
                if current in seen:
                    continue
                seen.add(current)
                summary = summaries.get(current)
                if summary is None or not access.allows(summary):
                    continue
                children = (_children(store.space_children(txn, current), suggested_only)
                            if summary.get("room_type") == "m.space" else [])
                rooms.append({**summary, "children_state": [_stripped(c) for c in children]})
                if depth < depth_limit:
                    fresh = [c["state_key"] for c in children if c["state_key"] not in summaries]
                    summaries.update(store.room_summaries(txn, fresh))
                    stack.extend((c["state_key"], depth + 1) for c in reversed(children))
            return rooms

        rooms = await self.hs.db.run_read(walk)
        out: dict[str, Any] = {"rooms": rooms[offset:offset + limit]}
        if offset + limit < len(rooms):
            out["next_batch"] = f"{offset + limit}.{shape}"
        return out

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
