"""Reading a room's state and members, and the rooms a user is joined to (client-server
API "Getting events for a room": state, members, joined_members, joined_rooms)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from veche.errors import invalid_param, not_found
from veche.services.events import client_event
from veche.storage import event_graph as graph
from veche.storage import events as ev_store
from veche.storage import history
from veche.storage import rooms as store
from veche.storage.database import Txn
from veche.streams import RoomToken

if TYPE_CHECKING:
    from veche.server import HomeServer

MEMBERSHIPS = ("invite", "join", "knock", "leave", "ban")


class RoomStateService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def state_ids(self, room_id: str, user_id: str) -> dict[tuple[str, str], str]:
        pos = await self.hs.visibility.read_position(room_id, user_id)
        if pos is None:
            return await self.hs.db.run(ev_store.get_current_state_ids, room_id, None)
        return await self.hs.db.run(_state_when_left, room_id, user_id)

    async def get_state(self, room_id: str, user_id: str) -> list[dict[str, Any]]:
        ids = await self.state_ids(room_id, user_id)
        events = await self.hs.db.run(ev_store.get_events, list(ids.values()))
        return [client_event(events[eid]) for eid in ids.values() if eid in events]

    async def get_state_event(
        self, room_id: str, user_id: str, event_type: str, state_key: str
    ) -> dict[str, Any]:
        ids = await self.state_ids(room_id, user_id)
        eid = ids.get((event_type, state_key))
        event = await self.hs.db.run(ev_store.get_event, eid) if eid else None
        if event is None:
            raise not_found("Event not found")
        return client_event(event)

    async def joined_members(self, room_id: str, user_id: str) -> dict[str, Any]:
        await self.hs.rooms.require_joined(room_id, user_id)

        def load(txn: Txn) -> dict[str, Any]:
            rows = txn.fetchall(
                "SELECT m.user_id, e.json FROM room_memberships m JOIN events e"
                " ON e.event_id = m.event_id WHERE m.room_id = ? AND m.membership = 'join'",
                (room_id,),
            )
            out: dict[str, Any] = {}
            for uid, js in rows:
                content = orjson.loads(js).get("content") or {}
                entry = {}
                for key, out_key in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
                    if isinstance(content.get(key), str):
                        entry[out_key] = content[key]
                out[uid] = entry
            return out

        return await self.hs.db.run(load)

    async def members(
        self, room_id: str, user_id: str, at: str | None, membership: str | None,
        not_membership: str | None,
    ) -> list[dict[str, Any]]:
        for value in (membership, not_membership):
            if value is not None and value not in MEMBERSHIPS:
                raise invalid_param("Unknown membership")
        token = RoomToken.parse(at) if at is not None else None
        pos = await self.hs.visibility.read_position(room_id, user_id)

        def load(txn: Txn) -> list[dict[str, Any]]:
            if token is not None:
                # The state after the last event at the token (and before the user left).
                last = history.last_event_at(txn, room_id, token, pos)
                state = (graph.get_state_ids_after(txn, last) if last else None) or {}
                ids = [eid for (t, _), eid in state.items() if t == "m.room.member"]
            elif pos is None:
                ids = [eid for (t, _), eid in ev_store.get_current_state_ids(txn, room_id).items()
                       if t == "m.room.member"]
            else:
                ids = [eid for (t, _), eid in _state_when_left(txn, room_id, user_id).items()
                       if t == "m.room.member"]
            return list(ev_store.get_events(txn, ids).values())

        out = []
        for ev in await self.hs.db.run(load):
            m = (ev.get("content") or {}).get("membership")
            if membership is not None and m != membership:
                continue
            if not_membership is not None and m == not_membership:
                continue
            out.append(client_event(ev))
        return out

    async def joined_rooms(self, user_id: str) -> list[str]:
        return await self.hs.db.run(store.joined_rooms, user_id)


def _state_when_left(txn: Txn, room_id: str, user_id: str) -> dict[tuple[str, str], str]:
    """The room's state after the user's leave or ban: the last they may read of it."""
    membership = ev_store.get_membership(txn, room_id, user_id)
    return (graph.get_state_ids_after(txn, membership[1]) or {}) if membership else {}
