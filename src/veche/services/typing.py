"""Typing notifications: in memory, expiring, with a serial that is the typing part of sync tokens."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from veche.errors import forbidden
from veche.storage import events as event_store

if TYPE_CHECKING:
    from veche.server import HomeServer


class TypingService:
    MAX_TIMEOUT_MS = 120_000

    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        # Starts from the clock so tokens stay monotonic across restarts.
        self.serial = int(time.time() * 1000)
        self._typing: dict[str, dict[str, float]] = {}
        self._room_serial: dict[str, int] = {}

    async def set_own_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int) -> None:
        """A local user's typing notice: only in a room they are joined to."""
        membership = await self.hs.db.run(event_store.get_membership, room_id, user_id)
        if membership is None or membership[0] != "join":
            raise forbidden("You are not in this room")
        self.set_typing(room_id, user_id, typing, timeout_ms)
        await self.hs.federation_edus.typing(room_id, user_id, typing, timeout_ms)

    def set_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int) -> None:
        users = self._typing.setdefault(room_id, {})
        changed = (user_id in users) != typing
        if typing:
            users[user_id] = time.monotonic() + min(timeout_ms, self.MAX_TIMEOUT_MS) / 1000
            self.hs.run_in_background(self._expire_later(room_id, user_id, users[user_id]))
        else:
            users.pop(user_id, None)
        if changed:
            self._changed(room_id)

    async def _expire_later(self, room_id: str, user_id: str, until: float) -> None:
        import asyncio

        await asyncio.sleep(max(0.0, until - time.monotonic()) + 0.05)
        users = self._typing.get(room_id, {})
        if users.get(user_id) == until:
            del users[user_id]
            self._changed(room_id)

    def _changed(self, room_id: str) -> None:
        # Clock-based, so serials of processes sharing the work (veche.cluster) compare:
        # a client whose sync moves to another process neither misses nor repeats a notice.
        self.serial = max(self.serial + 1, int(time.time() * 1000))
        self._room_serial[room_id] = self.serial
        self.hs.notifier.notify([room_id])

    def changed_since(self, room_id: str, since_serial: int) -> bool:
        return self._room_serial.get(room_id, 0) > since_serial

    def event(self, room_id: str) -> dict[str, Any]:
        now = time.monotonic()
        users = [u for u, until in self._typing.get(room_id, {}).items() if until > now]
        return {"type": "m.typing", "content": {"user_ids": sorted(users)}}
