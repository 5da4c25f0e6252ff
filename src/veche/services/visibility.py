"""History visibility (client-server API "History visibility"): which events of a room a
user may see, and up to where they may read its state."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from veche.errors import forbidden
from veche.storage import events as ev_store
from veche.storage import rooms as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

VISIBILITY_ORDER = {"joined": 0, "invited": 1, "shared": 2, "world_readable": 3}


class Visibility:
    """Decides which events of one room a user may see (spec: "History visibility")."""

    def __init__(
        self, user_id: str, hv: list[tuple[int, str]], members: list[tuple[int, str]],
        current_membership: str | None,
    ) -> None:
        self.user_id = user_id
        self.hv = hv
        self.hv_pos = [p for p, _ in hv]
        self.members = members
        self.member_pos = [p for p, _ in members]
        self.joined_now = current_membership == "join"

    @staticmethod
    def _before(positions: list[int], values: list[tuple[int, str]], pos: int, default: str) -> str:
        i = bisect.bisect_left(positions, pos)
        return values[i - 1][1] if i else default

    def can_see(self, pos: int, event: dict[str, Any]) -> bool:
        vis = self._before(self.hv_pos, self.hv, pos, "shared")
        if event.get("type") == "m.room.history_visibility" and event.get("state_key") == "":
            new = (event.get("content") or {}).get("history_visibility", "shared")
            if VISIBILITY_ORDER.get(new, 2) > VISIBILITY_ORDER.get(vis, 2):
                vis = new
        membership = self._before(self.member_pos, self.members, pos, "leave")
        if event.get("type") == "m.room.member" and event.get("state_key") == self.user_id:
            membership = (event.get("content") or {}).get("membership", membership)
        if vis == "world_readable" or membership == "join":
            return True
        if vis == "shared" and self.joined_now:
            return True
        return vis == "invited" and membership == "invite"



class HistoryVisibilityService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def world_readable(self, room_id: str) -> bool:
        state = await self.hs.db.run(
            ev_store.get_current_state, room_id, [("m.room.history_visibility", "")]
        )
        ev = state.get(("m.room.history_visibility", ""))
        return bool(ev and ev.get("content", {}).get("history_visibility") == "world_readable")

    async def read_position(self, room_id: str, user_id: str) -> int | None:
        """The position up to which the user may read current/room state: None for "now"
        (joined or world-readable), else the position at which they left. 403 otherwise."""
        await self.hs.rooms.room_version(room_id)
        m = await self.hs.rooms.membership(room_id, user_id)
        if m is not None and m[0] == "join":
            return None
        if await self.world_readable(room_id):
            return None
        if m is not None and m[0] in ("leave", "ban"):
            return m[1]
        raise forbidden("You are not allowed to read this room")

    async def visibility(self, room_id: str, user_id: str) -> Visibility:
        def load(txn: Txn) -> Visibility:
            hv, members = store.visibility_history(txn, room_id, user_id)
            current = store.get_membership_row(txn, room_id, user_id)
            return Visibility(user_id, hv, members, current[0] if current else None)

        return await self.hs.db.run(load)

    async def check_can_peek(self, room_id: str, user_id: str) -> Visibility:
        """403 unless the user has been in the room or it is world-readable."""
        await self.hs.rooms.room_version(room_id)
        vis = await self.visibility(room_id, user_id)
        if not vis.members and not await self.world_readable(room_id):
            raise forbidden("You are not allowed to read this room")
        return vis

