"""Simplified sliding sync (MSC4186): a client asks for windows (`ranges`) of sorted,
filtered lists of its rooms and for rooms by name (`room_subscriptions`), and gets, for
each, what it lacks since its connection's position `pos`.

A connection is (user, device, `conn_id`); each response hands out a new `pos` whose state
(connection.py: what each room and list sent) is stored in the database, so a restart or
another worker continues it. The position a request came from is kept too, so a client
whose response was lost may send it again. An unknown or expired `pos` answers
M_UNKNOWN_POS, and the client starts over.

A request whose response would hold nothing new waits (long-poll, `timeout`) for the
notifier to wake it on the user or one of their joined rooms.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from veche.core.sliding_sync import (
    RoomConfig,
    SlidingSyncRequest,
    in_ranges,
    list_ops,
    sort_rooms,
)
from veche.errors import MatrixError
from veche.services.sliding_sync import extensions
from veche.services.sliding_sync.connection import ConnectionState, Position
from veche.services.sliding_sync.room_data import RoomsContext, room_txn
from veche.services.sliding_sync.room_list import user_rooms_txn
from veche.storage import sliding_sync as store
from veche.storage import sync as sync_store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer
    from veche.services.auth import Requester

# A connection unused this long is forgotten (as in Synapse): its client starts over.
CONNECTION_LIFETIME_MS = 7 * 24 * 3600 * 1000


@dataclass
class _Computed:
    result: dict[str, Any]
    state: ConnectionState
    joined: list[str]
    scope: extensions.Scope
    news: bool


class SlidingSyncService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def sync(
        self, req: Requester, request: SlidingSyncRequest, pos: str | None, timeout_ms: int
    ) -> dict[str, Any]:
        conn_id = request.conn_id or ""
        position = await self._load(req, conn_id, pos)
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            counter = self.hs.notifier.counter
            upto, typing = self.hs.stream.current, self.hs.typing.serial
            computed = await self.hs.db.run(self._compute_txn, req, request, position, upto, typing)
            await self._bundle(computed.result["rooms"], req.user_id)
            typing_since = position.typing if position.typing <= typing else 0
            section, news = await extensions.compute(
                self.hs, req.user_id, req.device_id, request.extensions, position.since,
                typing_since, upto, computed.scope)
            computed.result["extensions"] = section
            # What the extensions sent, for rooms the user is still in.
            computed.state.extensions = {
                name: {r: p for r, p in sent.items() if r in computed.scope.joined}
                for name, sent in computed.scope.sent.items()}
            remaining = deadline - time.monotonic()
            if computed.news or news or position.pos is None or remaining <= 0:
                break
            if not await self.hs.notifier.wait([req.user_id, *computed.joined], counter, remaining):
                break
        new_pos = secrets.token_hex(8)
        await self.hs.db.run(store.save_position, req.user_id, req.device_id, conn_id, new_pos,
                             upto, typing, computed.state.to_json(), int(time.time() * 1000),
                             position.pos)
        return {"pos": new_pos, **computed.result}

    async def _load(self, req: Requester, conn_id: str, pos: str | None) -> Position:
        now = int(time.time() * 1000)
        if pos is None:
            await self.hs.db.run(store.delete_expired, now - CONNECTION_LIFETIME_MS)
            return Position(None, 0, 0, ConnectionState())
        # Positions are hex: anything else (a NUL PostgreSQL cannot hold) is no position.
        row = None if len(pos) > 64 or not pos.isalnum() else await self.hs.db.run(
            store.get_position, req.user_id, req.device_id, conn_id, pos)
        if row is None or row[3] < now - CONNECTION_LIFETIME_MS:
            raise MatrixError(400, "M_UNKNOWN_POS", "Unknown or expired position: start over")
        stream, typing, state, _ = row
        return Position(pos, stream, typing, ConnectionState.from_json(state))

    def _compute_txn(
        self, txn: Txn, req: Requester, request: SlidingSyncRequest, position: Position,
        upto: int, typing: int,
    ) -> _Computed:
        user_id = req.user_id
        spaces = {s for lst in request.lists.values() for s in lst.filters.spaces or ()}
        rooms = user_rooms_txn(txn, user_id, upto, position.since, spaces)
        prev = position.state
        state = ConnectionState(rooms=dict(prev.rooms))
        scope = extensions.Scope(joined=set(rooms.joined), previously=prev.extensions)
        configs: dict[str, RoomConfig] = {}
        lists_out: dict[str, Any] = {}
        news = False
        for name, lst in request.lists.items():
            ordered = [f.room_id for f in sort_rooms(
                [f for f in rooms.facts.values() if lst.filters.accepts(f)])]
            window = in_ranges(ordered, lst.ranges)
            for room_id in window:
                configs[room_id] = configs[room_id].combine(lst.room) if room_id in configs \
                    else lst.room
                scope.lists_of_room.setdefault(room_id, set()).add(name)
            lists_out[name] = {"count": len(ordered), "ops": list_ops(ordered, lst.ranges)}
            state.lists[name] = (len(ordered), window)
            news = news or prev.lists.get(name) != state.lists[name]
        for room_id, config in request.room_subscriptions.items():
            if room_id not in rooms.memberships:
                continue  # a room the user is not in (nor invited to): nothing to show
            configs[room_id] = configs[room_id].combine(config) if room_id in configs else config
            scope.subscribed.add(room_id)

        rc = RoomsContext(user_id, req.device_id, upto, typing, position.since,
                          int(time.time() * 1000))
        # Which of the joined rooms sent before had events since, or a read receipt of the
        # user's (read elsewhere: its notification counts changed, which Veche, unlike
        # Synapse, sends): one query each per distinct position (usually one).
        by_since: dict[int, list[str]] = {}
        for room_id in configs:
            before = prev.rooms.get(room_id)
            if before is not None and rooms.memberships[room_id].membership == "join":
                by_since.setdefault(before.since, []).append(room_id)
        with_events: set[str] = set()
        for since, ids in by_since.items():
            with_events |= sync_store.rooms_with_new_events(txn, ids, since, upto)
            with_events |= store.rooms_with_own_receipts(txn, user_id, ids, since, upto)
        known = {r for ids in by_since.values() for r in ids}
        rooms_out: dict[str, Any] = {}
        for room_id, config in configs.items():
            entry, sent = room_txn(self.hs, txn, rc, room_id, rooms.memberships[room_id],
                                   rooms.facts[room_id], config, prev.rooms.get(room_id),
                                   room_id in with_events if room_id in known else None)
            state.rooms[room_id] = sent
            if entry is not None:
                rooms_out[room_id] = entry
                if entry.get("initial") or entry.get("unstable_expanded_timeline"):
                    scope.first_seen.add(room_id)
                scope.timeline_events[room_id] = [e["event_id"] for e in entry["timeline"]]
        # Rooms the user has left for good are forgotten, so a rejoin comes whole.
        for room_id in list(state.rooms):
            if room_id not in rooms.memberships:
                del state.rooms[room_id]
        result: dict[str, Any] = {"lists": lists_out, "rooms": rooms_out} if lists_out \
            else {"rooms": rooms_out}  # no lists asked for: none answered (as Synapse)
        return _Computed(result, state, rooms.joined, scope, news or bool(rooms_out))

    async def _bundle(self, rooms: dict[str, Any], user_id: str) -> None:
        events = [e for entry in rooms.values() for e in entry.get("timeline", ())]
        if events:
            from veche.services.relations import bundle_aggregations

            await bundle_aggregations(self.hs, events, user_id)
