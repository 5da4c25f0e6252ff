"""Reading a room's timeline: /messages, /context, a single event and
timestamp_to_event, all through the reader's history visibility (client-server API
"Getting events for a room"), in topological order (storage/history.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.core.filters import RoomEventFilter
from veche.errors import invalid_param, not_found
from veche.services.events import client_event
from veche.services.relations import bundle_aggregations
from veche.services.rooms import parse_room_token
from veche.services.visibility import Visibility
from veche.storage import event_graph as graph
from veche.storage import events as ev_store
from veche.storage import history
from veche.storage import rooms as store
from veche.storage.database import Txn
from veche.storage.history import TimelineRow
from veche.streams import RoomToken

if TYPE_CHECKING:
    from veche.server import HomeServer


def after(row: TimelineRow, direction: str) -> RoomToken:
    """The point just past `row` going in `direction`: pagination goes on from there."""
    return RoomToken.past(row.depth, row.stream, direction)


class TimelineService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def walk_timeline(
        self, room_id: str, vis: Visibility, flt: RoomEventFilter, start: RoomToken,
        to: RoomToken | None, direction: str, limit: int,
    ) -> tuple[list[TimelineRow], RoomToken | None]:
        """Up to `limit` visible, matching events; and the point to go on from (None: no more)."""

        def walk(txn: Txn) -> tuple[list[TimelineRow], RoomToken | None]:
            found: list[TimelineRow] = []
            pos = start
            batch = max(limit + 1, 50)
            for _ in range(20):
                rows = history.paginate(txn, room_id, pos, to, direction, batch)
                candidates = [r for r in rows if flt.matches(r.event)]
                mask = vis.visible_rows(txn, candidates)
                seen = {id(r) for r, ok in zip(candidates, mask, strict=True) if ok}
                for i, row in enumerate(rows):
                    if id(row) in seen:
                        found.append(row)
                        if len(found) >= limit:
                            pos = after(row, direction)
                            more = i + 1 < len(rows) or history.paginate(
                                txn, room_id, pos, to, direction, 1)
                            return found, (pos if more else None)
                if len(rows) < batch:
                    return found, None
                pos = after(rows[-1], direction)
            return found, pos

        return await self.hs.db.run(walk)

    async def events_around(
        self, room_id: str, vis: Visibility, flt: RoomEventFilter, anchor: TimelineRow,
        n_before: int, n_after: int,
    ) -> tuple[list[TimelineRow], list[TimelineRow], str, str]:
        """Visible events before (newest first) and after `anchor`, with the pagination
        tokens around them (for /context and /search's event_context)."""
        before, _ = (await self.walk_timeline(
            room_id, vis, flt, after(anchor, "b"), None, "b", n_before) if n_before else ([], None))
        after_, _ = (await self.walk_timeline(
            room_id, vis, flt, after(anchor, "f"), None, "f", n_after) if n_after else ([], None))
        start = after(before[-1] if before else anchor, "b")
        end = after(after_[-1] if after_ else anchor, "f")
        return before, after_, str(start), str(end)

    async def messages(
        self, room_id: str, user_id: str, from_tok: str | None, to_tok: str | None,
        direction: str, limit: int, flt: RoomEventFilter,
    ) -> dict[str, Any]:
        if direction not in ("b", "f"):
            raise invalid_param("dir must be b or f")
        start = parse_room_token(from_tok)
        to = parse_room_token(to_tok)
        vis = await self.hs.visibility.check_can_peek(room_id, user_id)
        if flt.limit:
            limit = min(limit, flt.limit)
        if start is None:
            # Backwards from everything readable now; forwards from before the first event.
            start = RoomToken(self.hs.stream.current) if direction == "b" else RoomToken(0, 0)
        found, next_pos = await self.walk_timeline(room_id, vis, flt, start, to, direction, limit)
        if direction == "b":
            # History from other servers before what is here, within this page's depths:
            # fetched (services/backfill.py), then the page is read again.
            low = next_pos.depth if next_pos is not None and next_pos.depth is not None else 0
            if await self.hs.backfill.maybe_backfill(room_id, low, start.depth):
                found, next_pos = await self.walk_timeline(
                    room_id, vis, flt, start, to, direction, limit)
        chunk = [client_event(r.event) for r in found]
        await bundle_aggregations(self.hs, chunk, user_id, {room_id: vis})
        out: dict[str, Any] = {"chunk": chunk, "start": from_tok or str(start)}
        if next_pos is not None:
            out["end"] = str(next_pos)
        if flt.lazy_load_members and found:
            out["state"] = await self._lazy_members(found)
        else:
            out["state"] = []
        return out

    async def _lazy_members(self, found: list[TimelineRow]) -> list[dict[str, Any]]:
        """The senders' member events in the state after the chunk's latest event."""
        senders = sorted({r.event["sender"] for r in found})
        last = max(found, key=lambda r: (r.depth, r.stream)).event["event_id"]

        def load(txn: Txn) -> list[dict[str, Any]]:
            groups = graph.get_state_groups(txn, last)
            if groups is None or groups[1] is None:
                return []
            keys = [("m.room.member", s) for s in senders]
            state = history.state_group_keys(txn, [groups[1]], keys)[groups[1]]
            return list(ev_store.get_events(txn, list(state.values())).values())

        return [client_event(ev) for ev in await self.hs.db.run(load)]

    async def _visible_event(self, room_id: str, user_id: str, event_id: str
                             ) -> tuple[Visibility, TimelineRow]:
        """The event and the reader's visibility; 404 unless it is in the room's timeline and
        the reader may see it."""
        await self.hs.rooms.room_version(room_id)

        def load(txn: Txn) -> tuple[Visibility, TimelineRow] | None:
            found = history.get_timeline_event(txn, event_id)
            if found is None or found[0] != room_id:
                return None
            vis = Visibility.load(txn, room_id, user_id)
            return (vis, found[1]) if vis.visible_rows(txn, [found[1]])[0] else None

        loaded = await self.hs.db.run(load)
        if loaded is None:
            raise not_found("Event not found")
        return loaded

    async def get_event(self, room_id: str, user_id: str, event_id: str) -> dict[str, Any]:
        vis, row = await self._visible_event(room_id, user_id, event_id)
        ev = client_event(row.event)
        await bundle_aggregations(self.hs, [ev], user_id, {room_id: vis})
        return ev

    async def context(
        self, room_id: str, user_id: str, event_id: str, limit: int, flt: RoomEventFilter
    ) -> dict[str, Any]:
        vis, anchor = await self._visible_event(room_id, user_id, event_id)
        if flt.limit:
            limit = min(limit, flt.limit)
        n_before = limit // 2
        before, after_, start, end = await self.events_around(
            room_id, vis, flt, anchor, n_before, limit - n_before)
        main = client_event(anchor.event)
        before_c = [client_event(r.event) for r in before]
        after_c = [client_event(r.event) for r in after_]
        await bundle_aggregations(self.hs, [main, *before_c, *after_c], user_id, {room_id: vis})
        # The spec's "state of the room at the last event returned": the state after it.
        last = (after_[-1] if after_ else anchor).event["event_id"]

        def load_state(txn: Txn) -> list[dict[str, Any]]:
            ids = graph.get_state_ids_after(txn, last) or {}
            if flt.lazy_load_members:
                senders = {r.event["sender"] for r in [*before, anchor, *after_]}
                keep = [eid for (t, sk), eid in ids.items() if t != "m.room.member" or sk in senders]
            else:
                keep = list(ids.values())
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
                found = history.get_timeline_event(txn, hit[0])
                if found is not None and vis.visible_rows(txn, [found[1]])[0]:
                    return hit
                step_ts = hit[1] + 1 if direction == "f" else hit[1] - 1
            return None

        hit = await self.hs.db.run(find)
        if hit is None:
            raise not_found("No event found")
        return {"event_id": hit[0], "origin_server_ts": hit[1]}
