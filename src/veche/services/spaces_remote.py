"""Asking other servers about space rooms this server is not in (server-server API
"Spaces": `GET /_matrix/federation/v1/hierarchy/{roomId}`), for the client /hierarchy walk.

Each answer (or failure) is kept a short while, as the spec asks; a walk asks about at most
MAX_ROOMS_ASKED rooms, each of at most MAX_VIA servers from its link's `via`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from veche.federation.errors import FederationError, path

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

CACHE_S, FAILURE_CACHE_S = 60.0, 10.0
CACHE_SIZE = 5000
MAX_ROOMS_ASKED = 20
MAX_VIA = 3
TIMEOUT_S = 10

Summary = dict[str, Any]
Answer = tuple[Summary, list[dict[str, Any]], list[Summary], list[str]]


def _summary(value: Any) -> Summary | None:
    """A room summary from another server, with the fields the walk relies on."""
    if not isinstance(value, dict) or not isinstance(value.get("room_id"), str):
        return None
    out = {k: v for k, v in value.items() if k != "children_state"}
    out["join_rule"] = value.get("join_rule") if isinstance(value.get("join_rule"), str) else "public"
    out["world_readable"] = value.get("world_readable") is True
    out["guest_can_join"] = value.get("guest_can_join") is True
    n = value.get("num_joined_members")
    out["num_joined_members"] = n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 0
    allowed = value.get("allowed_room_ids")
    out["allowed_room_ids"] = [r for r in allowed if isinstance(r, str)] \
        if isinstance(allowed, list) else []
    if not out["allowed_room_ids"]:
        del out["allowed_room_ids"]
    return out


def _links(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [{"type": "m.space.child", "state_key": e["state_key"], "content": e["content"],
             "sender": e.get("sender") if isinstance(e.get("sender"), str) else "",
             "origin_server_ts": e["origin_server_ts"]}
            for e in value[:1000]
            if isinstance(e, dict) and e.get("type") == "m.space.child"
            and isinstance(e.get("state_key"), str) and isinstance(e.get("content"), dict)
            and isinstance(e.get("origin_server_ts"), int)]


def parse_answer(room_id: str, body: Any) -> Answer | None:
    if not isinstance(body, dict):
        return None
    room = _summary(body.get("room"))
    if room is None or room["room_id"] != room_id:
        return None
    children = [s for s in map(_summary, body.get("children") or []) if s is not None] \
        if isinstance(body.get("children"), list) else []
    hidden = body.get("inaccessible_children")
    hidden = [r for r in hidden if isinstance(r, str)] if isinstance(hidden, list) else []
    return room, _links(body["room"].get("children_state")), children, hidden


class SpaceFetcher:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._cache: dict[tuple[str, bool], tuple[float, Answer | None]] = {}

    def walk(self, suggested_only: bool) -> RemoteRooms:
        return RemoteRooms(self, suggested_only)

    async def fetch(self, room_id: str, via: list[str], suggested_only: bool) -> Answer | None:
        cached = self._cache.get((room_id, suggested_only))
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        answer = None
        servers = [s for s in dict.fromkeys(via) if isinstance(s, str) and s
                   and s != self.hs.server_name][:MAX_VIA]
        for server in servers:
            target = path("/_matrix/federation/v1/hierarchy/{}", room_id,
                          query={"suggested_only": "true" if suggested_only else "false"})
            try:
                body = await self.hs.federation_client.get_json(server, target, timeout_s=TIMEOUT_S)
            except FederationError as e:
                logger.info("hierarchy of %s from %s: %s", room_id, server, e)
                continue
            answer = parse_answer(room_id, body)
            if answer is not None:
                break
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        ttl = CACHE_S if answer is not None else FAILURE_CACHE_S
        self._cache[(room_id, suggested_only)] = (time.monotonic() + ttl, answer)
        return answer


class RemoteRooms:
    """What other servers told one walk: rooms with their links (`full`), rooms seen only
    as another's child (`partial`), and which rooms were asked about."""

    def __init__(self, fetcher: SpaceFetcher, suggested_only: bool) -> None:
        self.fetcher, self.suggested_only = fetcher, suggested_only
        self.full: dict[str, tuple[Summary, list[dict[str, Any]]]] = {}
        self.partial: dict[str, Summary] = {}
        self.asked: set[str] = set()
        self.hidden: set[str] = set()

    async def ask(self, missing: dict[str, list[str]]) -> bool:
        """Ask about rooms (concurrently); whether anything new was asked."""
        if not self.fetcher.hs.config.federation.enabled:
            return False
        rooms = [r for r in missing if r not in self.asked][:MAX_ROOMS_ASKED - len(self.asked)]
        if not rooms:
            return False
        self.asked.update(rooms)
        answers = await asyncio.gather(*(
            self.fetcher.fetch(r, missing[r], self.suggested_only) for r in rooms))
        for room_id, answer in zip(rooms, answers, strict=True):
            if answer is None:
                continue
            room, links, children, hidden = answer
            self.full[room_id] = (room, links)
            self.hidden.update(hidden)
            for child in children:
                self.partial.setdefault(child["room_id"], child)
        return True
