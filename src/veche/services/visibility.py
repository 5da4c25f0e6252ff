"""History visibility (client-server API "Room History Visibility"): which events of a room
a user may see, judged by the room's state at each event (its state group), and up to where
they may read its state."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from veche.core.history_visibility import may_see
from veche.errors import forbidden
from veche.storage import events as ev_store
from veche.storage import history
from veche.storage.database import Txn
from veche.storage.history import Place, ReaderMembership, TimelineRow

if TYPE_CHECKING:
    from veche.server import HomeServer


class Visibility:
    """Decides which events of one room a user may see.

    Per event, from the state just before it: its history_visibility and the user's
    membership there (the spec's "state of the room at that event"). "shared" history is
    visible to a user who joined at any point after the event: one joined now, or whose
    latest join lies after the event in the room's topological order.
    """

    def __init__(self, room_id: str, user_id: str, reader: ReaderMembership) -> None:
        self.room_id = room_id
        self.user_id = user_id
        self.joined_now = reader.current == "join"
        self.last_join = reader.last_join
        self.ever_member = reader.ever
        # No event of the room can be hidden from a member when every history_visibility
        # the room ever had is "shared" or "world_readable" (the common case); then no state
        # need be looked up. (Not so for others: before its first history_visibility event
        # a room's history is "shared", hidden from those who never joined.)
        self.sees_all = self.joined_now and reader.visibilities <= {"world_readable", "shared"}

    @classmethod
    def load(cls, txn: Txn, room_id: str, user_id: str) -> Visibility:
        return cls.load_many(txn, [room_id], user_id)[room_id]

    @classmethod
    def load_many(cls, txn: Txn, room_ids: Sequence[str], user_id: str) -> dict[str, Visibility]:
        return {room_id: cls(room_id, user_id, reader) for room_id, reader
                in history.reader_memberships(txn, room_ids, user_id).items()}

    def visible(
        self, txn: Txn, events: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[bool]:
        """For each (event_id, event) (the event's type, state_key and content suffice),
        whether the user may see it. Unknown, outlier and rejected events are not visible."""
        places = history.places(txn, [eid for eid, _ in events])
        if self.sees_all:
            return [eid in places and places[eid].placed for eid, _ in events]
        return self._judge(txn, [(event, places.get(eid)) for eid, event in events])

    def visible_rows(self, txn: Txn, rows: Sequence[TimelineRow]) -> list[bool]:
        """visible() of events of the room's timeline (never outliers nor rejected)."""
        if self.sees_all:
            return [True] * len(rows)
        return self.visible(txn, [(r.event["event_id"], r.event) for r in rows])

    def filter(self, txn: Txn, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The full events among `events` the user may see."""
        mask = self.visible(txn, [(e["event_id"], e) for e in events])
        return [e for e, ok in zip(events, mask, strict=True) if ok]

    def _judge(
        self, txn: Txn, events: Sequence[tuple[Mapping[str, Any], Place | None]]
    ) -> list[bool]:
        groups = {p.state_group for _, p in events if p is not None and p.placed}
        states = history.visibility_at(txn, [g for g in groups if g is not None], self.user_id)
        user_id, joined_now, last_join = self.user_id, self.joined_now, self.last_join
        out = []
        for event, place in events:
            if place is None or not place.placed:
                out.append(False)
                continue
            visibility, membership = (states.get(place.state_group, ("shared", None))
                                      if place.state_group is not None else ("shared", None))
            if visibility == "world_readable" or membership == "join":
                out.append(True)  # the common case, whatever the event
                continue
            joined_after = joined_now or (
                last_join is not None and last_join > (place.depth, place.stream))
            out.append(may_see(user_id, event, visibility, membership, joined_after))
        return out


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
        return await self.hs.db.run(Visibility.load, room_id, user_id)

    async def can_see(self, vis: Visibility, event_id: str, event: Mapping[str, Any]) -> bool:
        (ok,) = await self.hs.db.run(vis.visible, [(event_id, event)])
        return ok

    async def check_can_peek(self, room_id: str, user_id: str) -> Visibility:
        """403 unless the user has been in the room or it is world-readable."""
        await self.hs.rooms.room_version(room_id)
        vis = await self.visibility(room_id, user_id)
        if not vis.ever_member and not await self.world_readable(room_id):
            raise forbidden("You are not allowed to read this room")
        return vis
