"""Server-side search of room events (spec: client-server API "Server Side Search").

Only what the server can read is found: encrypted rooms' messages are searched by clients.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.core.filters import RoomEventFilter, parse_room_event_filter
from veche.core.numbers import parse_count
from veche.errors import MatrixError, bad_json, invalid_param, missing_param
from veche.services.events import client_event
from veche.services.relations import bundle_aggregations
from veche.services.visibility import Visibility
from veche.storage import events as ev_store
from veche.storage import rooms as room_store
from veche.storage import search as store
from veche.storage.database import Txn
from veche.storage.history import TimelineRow
from veche.storage.readers import QueryTimeout

if TYPE_CHECKING:
    from veche.server import HomeServer

KEYS = ("content.body", "content.name", "content.topic")
DEFAULT_LIMIT, MAX_LIMIT = 10, 50
MAX_CONTEXT = 20


def _count(obj: dict[str, Any], name: str, default: int) -> int:
    value = obj.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_json(f"event_context.{name} must be a non-negative integer")
    return min(value, MAX_CONTEXT)


class SearchService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def search(self, user_id: str, body: dict[str, Any], next_batch: str | None
                     ) -> dict[str, Any]:
        categories = body.get("search_categories")
        if not isinstance(categories, dict):
            raise missing_param("search_categories is required") if categories is None else \
                bad_json("search_categories must be an object")
        criteria = categories.get("room_events")
        if criteria is None:
            return {"search_categories": {}}
        if not isinstance(criteria, dict):
            raise bad_json("room_events must be an object")
        return {"search_categories": {
            "room_events": await self._room_events(user_id, criteria, next_batch)}}

    async def _room_events(self, user_id: str, criteria: dict[str, Any],
                           next_batch: str | None) -> dict[str, Any]:
        term = criteria.get("search_term")
        if not isinstance(term, str):
            raise missing_param("search_term is required") if term is None else \
                bad_json("search_term must be a string")
        keys = criteria.get("keys", list(KEYS))
        if not isinstance(keys, list) or not keys or any(k not in KEYS for k in keys):
            raise bad_json(f"keys must be a non-empty list of {', '.join(KEYS)}")
        order_by = criteria.get("order_by", "rank")
        if order_by not in ("rank", "recent"):
            raise bad_json("order_by must be rank or recent")
        try:
            flt = parse_room_event_filter(criteria.get("filter") or {})
        except ValueError as e:
            raise bad_json(str(e)) from None
        context = criteria.get("event_context")
        if context is not None and not isinstance(context, dict):
            raise bad_json("event_context must be an object")
        if not isinstance(criteria.get("include_state", False), bool):
            raise bad_json("include_state must be a boolean")
        offset = 0 if next_batch is None else parse_count(next_batch)
        if offset is None:
            raise invalid_param("Invalid next_batch")
        limit = flt.limit_or(DEFAULT_LIMIT, MAX_LIMIT)
        words = store.terms(term)

        def find(txn: Txn) -> tuple[list[tuple[str, int, float]], dict[str, dict[str, Any]]]:
            rooms = [r for r in room_store.joined_rooms(txn, user_id) if flt.room_allowed(r)]
            matches = store.search(txn, rooms, words, keys, order_by)
            return matches, ev_store.get_events(txn, [m[0] for m in matches])

        limit_s = self.hs.config.limits.search_timeout_ms / 1000
        if self.hs.db.dialect == "sqlite":
            await self.hs.db.run(store.flush_pending)  # what waits for the index is found too
        try:
            matches, events = await self.hs.db.run_read(find, timeout=limit_s)
        except QueryTimeout:
            raise MatrixError(400, "M_UNKNOWN", f"The search took longer than {limit_s:g} s and"
                              " was stopped: search for more words, or in fewer rooms") from None
        found = [(rank, pos, events[eid]) for eid, pos, rank in matches
                 if eid in events and flt.matches(events[eid])]
        visibility: dict[str, Visibility] = {}

        def judge(txn: Txn) -> set[str]:
            by_room: dict[str, list[dict[str, Any]]] = {}
            for _rank, _pos, ev in found:
                by_room.setdefault(ev["room_id"], []).append(ev)
            visibility.update(Visibility.load_many(txn, sorted(by_room), user_id))
            return {e["event_id"] for room_id, evs in by_room.items()
                    for e in visibility[room_id].filter(txn, evs)}

        visible = await self.hs.db.run(judge) if found else set()
        hits = [(rank, pos, ev) for rank, pos, ev in found if ev["event_id"] in visible]
        page = hits[offset:offset + limit]
        results = []
        for rank, pos, ev in page:
            entry: dict[str, Any] = {"rank": rank, "result": client_event(ev)}
            if context is not None:
                entry["context"] = await self._context(user_id, ev, pos, context,
                                                       visibility[ev["room_id"]])
            results.append(entry)
        await bundle_aggregations(self.hs, [r["result"] for r in results], user_id, visibility)
        out: dict[str, Any] = {"count": len(hits), "highlights": words, "results": results}
        if offset + limit < len(hits):
            out["next_batch"] = str(offset + limit)
        if criteria.get("include_state"):
            out["state"] = {room_id: [client_event(e) for e in (await self.hs.db.run(
                ev_store.get_current_state, room_id)).values()]
                for room_id in sorted({ev["room_id"] for _, _, ev in page})}
        return out

    async def _context(self, user_id: str, ev: dict[str, Any], pos: int,
                       context: dict[str, Any], vis: Visibility) -> dict[str, Any]:
        before_n, after_n = _count(context, "before_limit", 5), _count(context, "after_limit", 5)
        include_profile = context.get("include_profile", False)
        if not isinstance(include_profile, bool):
            raise bad_json("event_context.include_profile must be a boolean")
        before, after, start, end = await self.hs.timeline.events_around(
            ev["room_id"], vis, RoomEventFilter.from_json(None), TimelineRow(ev["depth"], pos, ev),
            before_n, after_n)
        out: dict[str, Any] = {
            "start": start,
            "end": end,
            "events_before": [client_event(r.event) for r in before],
            "events_after": [client_event(r.event) for r in after],
        }
        if include_profile:
            senders = {r.event["sender"] for r in [*before, *after]} | {ev["sender"]}
            out["profile_info"] = {s: await self.hs.rooms.profile(s) for s in sorted(senders)}
        return out
