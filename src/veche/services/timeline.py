"""Reading a room's timeline: /messages, /context, a single event and
timestamp_to_event, all through the reader's history visibility (client-server API
"Getting events for a room")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.core.filters import RoomEventFilter
from veche.errors import invalid_param, not_found
from veche.services.events import client_event
from veche.services.relations import bundle_aggregations
from veche.services.rooms import parse_token
from veche.services.visibility import Visibility
from veche.storage import events as ev_store
from veche.storage import rooms as store
from veche.storage.database import Txn
from veche.streams import StreamToken

if TYPE_CHECKING:
    from veche.server import HomeServer


class TimelineService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def walk_timeline(
        self, room_id: str, vis: Visibility, flt: RoomEventFilter, from_pos: int,
        to_pos: int | None, direction: str, limit: int,
    ) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
        """Up to `limit` visible, matching events; and the next position (None: no more)."""
        found: list[tuple[int, dict[str, Any]]] = []
        pos = from_pos
        batch = max(limit + 1, 50)
        for _ in range(20):
            rows = await self.hs.db.run(store.paginate, room_id, pos, to_pos, direction, batch)
            for so, ev in rows:
                pos = so - 1 if direction == "b" else so
                if vis.can_see(so, ev) and flt.matches(ev):
                    found.append((so, ev))
                    if len(found) >= limit:
                        more = await self.hs.db.run(
                            store.paginate, room_id, pos, to_pos, direction, 1
                        )
                        return found, (pos if more else None)
            if len(rows) < batch:
                return found, None
        return found, pos

    async def events_around(
        self, room_id: str, vis: Visibility, flt: RoomEventFilter, pos: int, n_before: int,
        n_after: int,
    ) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, dict[str, Any]]], str, str]:
        """Visible events before (newest first) and after the one at `pos`, with the
        pagination tokens around them (for /context and /search's event_context)."""
        before, _ = (await self.walk_timeline(room_id, vis, flt, pos - 1, None, "b", n_before)
                     if n_before else ([], None))
        after, _ = (await self.walk_timeline(room_id, vis, flt, pos, None, "f", n_after)
                    if n_after else ([], None))
        start = StreamToken(max((before[-1][0] - 1) if before else pos - 1, 0))
        end = StreamToken(after[-1][0] if after else pos)
        return before, after, str(start), str(end)

    async def messages(
        self, room_id: str, user_id: str, from_tok: str | None, to_tok: str | None,
        direction: str, limit: int, flt: RoomEventFilter,
    ) -> dict[str, Any]:
        if direction not in ("b", "f"):
            raise invalid_param("dir must be b or f")
        start = parse_token(from_tok)
        to = parse_token(to_tok)
        vis = await self.hs.visibility.check_can_peek(room_id, user_id)
        if flt.limit:
            limit = min(limit, flt.limit)
        if start is None:
            start = StreamToken(self.hs.stream.current if direction == "b" else 0)
        found, next_pos = await self.walk_timeline(
            room_id, vis, flt, start.stream, to.stream if to else None, direction, limit
        )
        chunk = [client_event(ev) for _, ev in found]
        await bundle_aggregations(self.hs, chunk, user_id, {room_id: vis})
        out: dict[str, Any] = {"chunk": chunk, "start": str(start)}
        if next_pos is not None:
            out["end"] = str(StreamToken(max(next_pos, 0), start.typing))
        if flt.lazy_load_members and found:
            out["state"] = await self._lazy_members(room_id, found)
        else:
            out["state"] = []
        return out

    async def _lazy_members(
        self, room_id: str, found: list[tuple[int, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        senders = sorted({ev["sender"] for _, ev in found})
        pos = max(so for so, _ in found)

        def load(txn: Txn) -> list[dict[str, Any]]:
            ids = store.member_event_ids_at(txn, room_id, pos, senders)
            return list(ev_store.get_events(txn, ids).values())

        return [client_event(ev) for ev in await self.hs.db.run(load)]

    async def get_event(self, room_id: str, user_id: str, event_id: str) -> dict[str, Any]:
        await self.hs.rooms.room_version(room_id)
        row = await self.hs.db.run(store.get_event_row, event_id)
        if row is None or row[0] != room_id:
            raise not_found("Event not found")
        vis = await self.hs.visibility.visibility(room_id, user_id)
        if not vis.can_see(row[1], row[2]):
            raise not_found("Event not found")
        ev = client_event(row[2])
        await bundle_aggregations(self.hs, [ev], user_id, {room_id: vis})
        return ev

    async def context(
        self, room_id: str, user_id: str, event_id: str, limit: int, flt: RoomEventFilter
    ) -> dict[str, Any]:
        await self.hs.rooms.room_version(room_id)
        row = await self.hs.db.run(store.get_event_row, event_id)
        if row is None or row[0] != room_id:
            raise not_found("Event not found")
        vis = await self.hs.visibility.visibility(room_id, user_id)
        _, pos, event = row
        if not vis.can_see(pos, event):
            raise not_found("Event not found")
        if flt.limit:
            limit = min(limit, flt.limit)
        n_before = limit // 2
        before, after, start, end = await self.events_around(
            room_id, vis, flt, pos, n_before, limit - n_before)
        main = client_event(event)
        before_c = [client_event(ev) for _, ev in before]
        after_c = [client_event(ev) for _, ev in after]
        await bundle_aggregations(self.hs, [main, *before_c, *after_c], user_id, {room_id: vis})
        state_pos = after[-1][0] if after else pos

        def load_state(txn: Txn) -> list[dict[str, Any]]:
            if flt.lazy_load_members:
                ids = list(store.state_ids_at(txn, room_id, state_pos, None).items())
                senders = {ev["sender"] for _, ev in [*before, (pos, event), *after]}
                keep = [eid for (t, sk), eid in ids if t != "m.room.member" or sk in senders]
            else:
                keep = list(store.state_ids_at(txn, room_id, state_pos, None).values())
            return list(ev_store.get_events(txn, keep).values())

        state = [client_event(ev) for ev in await self.hs.db.run(load_state)]
        return {
            "start": start,
            "end": end,
            "event": main,
            "events_before": before_c,
            "events_after": after_c,
            "state": state,
        }

    async def timestamp_to_event(
        self, room_id: str, user_id: str, ts: int, direction: str
    ) -> dict[str, Any]:
        if direction not in ("b", "f"):
            raise invalid_param("dir must be b or f")
        vis = await self.hs.visibility.check_can_peek(room_id, user_id)

        def find(txn: Txn) -> tuple[str, int] | None:
            step_ts = ts
            for _ in range(50):
                hit = store.event_by_timestamp(txn, room_id, step_ts, direction)
                if hit is None:
                    return None
                row = store.get_event_row(txn, hit[0])
                if row is not None and vis.can_see(row[1], row[2]):
                    return hit
                step_ts = hit[1] + 1 if direction == "f" else hit[1] - 1
            return None

        hit = await self.hs.db.run(find)
        if hit is None:
            raise not_found("No event found")
        return {"event_id": hit[0], "origin_server_ts": hit[1]}

