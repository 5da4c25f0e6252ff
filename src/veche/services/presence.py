"""Presence: stored per user with a stream position; shown in /sync to users sharing a room.

A row is written only when the presence state or status message changes; activity is
tracked in memory (last_active_ago / currently_active are computed when read).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from veche.server import register_stream_table
from veche.storage import presence as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

register_stream_table("presence")
STATES = ("online", "offline", "unavailable")
ACTIVE_WINDOW_MS = 5 * 60_000


def now_ms() -> int:
    return int(time.time() * 1000)


class PresenceService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._last_active: dict[str, int] = {}
        # user -> (presence, status_msg) as last written, to skip writes that change nothing
        self._known: dict[str, tuple[str, str | None]] = {}

    async def set_state(
        self, user_id: str, presence: str, status_msg: Any = ..., *, from_sync: bool = False
    ) -> None:
        if presence == "online":
            self._last_active[user_id] = now_ms()
        known = self._known.get(user_id)
        if from_sync and known is not None and known[0] == presence:
            return

        def change(txn: Txn, pos: int) -> tuple[bool, tuple[str, str | None]]:
            row = store.get_presence(txn, user_id)
            if from_sync:
                if row is not None and row[1] == presence:
                    return False, (row[1], row[2])
                msg = row[2] if row is not None else None
            else:
                msg = None if status_msg is ... else status_msg
            store.set_presence(txn, user_id, presence, msg, self._last_active.get(user_id, 0), pos)
            return True, (presence, msg)

        with self.hs.stream.get_next() as pos:
            written, state = await self.hs.db.run(change, pos)
        self._known[user_id] = state
        if len(self._known) > 200_000:
            self._known.clear()
        if written:
            rooms = await self.hs.db.run(store.joined_room_ids, user_id)
            self.hs.notifier.notify([user_id, *rooms])

    def format(self, row: store.PresenceRow, now: int | None = None) -> dict[str, Any]:
        user_id, presence, status_msg, last_active, _ = row
        now = now or now_ms()
        last = max(self._last_active.get(user_id, 0), last_active or 0)
        content: dict[str, Any] = {"presence": presence}
        if last:
            content["last_active_ago"] = max(0, now - last)
            content["currently_active"] = presence == "online" and now - last < ACTIVE_WINDOW_MS
        if status_msg is not None:
            content["status_msg"] = status_msg
        return content

    async def get(self, user_id: str) -> dict[str, Any] | None:
        row = await self.hs.db.run(store.get_presence, user_id)
        if row is None:
            return None
        return self.format(row)
