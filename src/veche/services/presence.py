"""Presence: stored per user with a stream position; shown in /sync to users sharing a room.

A row is written only when the presence state or status message changes; activity is
tracked in memory (last_active_ago / currently_active are computed when read). As in
Synapse, an online user who does nothing for a while (config presence.idle_after_ms) becomes
unavailable, and one whose clients stop syncing (presence.offline_after_ms) becomes offline;
syncing alone is not activity.

Local users' changes go to the servers sharing a room with them, and remote users' presence
comes from theirs (services/federation_edus.py); remote users never decay here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from veche.errors import forbidden, not_found
from veche.server import register_stream_table
from veche.storage import accounts as account_store
from veche.storage import presence as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)
register_stream_table("presence")
STATES = ("online", "offline", "unavailable")
ACTIVE_WINDOW_MS = 5 * 60_000
PING_INTERVAL_MS = 25 * 60_000  # Synapse forgets remote presence unheard of for 30 minutes


def now_ms() -> int:
    return int(time.time() * 1000)


class PresenceService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._last_active: dict[str, int] = {}
        # user -> (presence, status_msg) as last written, to skip writes that change nothing
        self._known: dict[str, tuple[str, str | None]] = {}
        # user -> number of /sync requests in flight, and when the last one ended
        self._syncing: dict[str, int] = {}
        self._last_sync: dict[str, int] = {}
        self._decaying = False

    # --- activity -------------------------------------------------------------------------
    def sync_started(self, user_id: str) -> None:
        self._syncing[user_id] = self._syncing.get(user_id, 0) + 1
        self._last_sync[user_id] = now_ms()
        self._start_decay()

    def sync_ended(self, user_id: str) -> None:
        left = self._syncing.get(user_id, 1) - 1
        if left > 0:
            self._syncing[user_id] = left
        else:
            self._syncing.pop(user_id, None)
        self._last_sync[user_id] = now_ms()

    def user_active(self, user_id: str) -> None:
        """The user did something (sent an event): they are active, and online if idle."""
        self._last_active[user_id] = now_ms()
        known = self._known.get(user_id)
        if known is not None and known[0] == "unavailable":
            self.hs.run_in_background(self.set_state(user_id, "online"))

    def _start_decay(self) -> None:
        if not self._decaying:
            self._decaying = True
            self.hs.run_in_background(self._decay_loop())

    async def _decay_loop(self) -> None:
        cfg = self.hs.config.presence
        every = min(cfg.idle_after_ms, cfg.offline_after_ms) / 1000 / 4
        # After a restart nobody is syncing yet: who was online gets the usual grace period.
        for user_id, presence, status_msg, _, _ in await self.hs.db.run(store.present_users):
            if not self._is_local(user_id):
                continue
            self._known.setdefault(user_id, (presence, status_msg))
            self._last_sync.setdefault(user_id, now_ms())
        last_ping = now_ms()
        while True:
            await asyncio.sleep(every)
            try:
                await self._decay(now_ms())
                if now_ms() - last_ping > PING_INTERVAL_MS:
                    last_ping = now_ms()
                    await self._ping_remotes()
            except Exception:  # keep decaying after a transient database error
                logger.exception("presence decay failed")

    def _is_local(self, user_id: str) -> bool:
        return user_id.endswith(":" + self.hs.server_name)

    async def _ping_remotes(self) -> None:
        """Remind other servers of who is still present here: they forget remote presence
        they stop hearing about."""
        if not self.hs.federation_edus.presence_federated():
            return
        for user_id, (presence, _) in list(self._known.items()):
            if presence != "offline":
                content = await self.get(user_id)
                if content is not None:
                    await self.hs.federation_edus.presence(user_id, content)

    async def _decay(self, now: int) -> None:
        cfg = self.hs.config.presence
        for user_id, (presence, _) in list(self._known.items()):
            if presence == "offline":
                continue
            syncing = bool(self._syncing.get(user_id))
            if not syncing and now - self._last_sync.get(user_id, 0) > cfg.offline_after_ms:
                await self.set_state(user_id, "offline", from_sync=True)
                self._last_sync.pop(user_id, None)
            elif presence == "online" and now - self._last_active.get(user_id, 0) > cfg.idle_after_ms:
                await self.set_state(user_id, "unavailable", from_sync=True)

    async def set_state(
        self, user_id: str, presence: str, status_msg: Any = ..., *, from_sync: bool = False
    ) -> None:
        known = self._known.get(user_id)
        if from_sync and known is not None and (
            known[0] == presence or (known[0] == "unavailable" and presence == "online")
        ):
            # Syncing is not activity: it brings an offline user online, but an idle (or
            # away) one stays unavailable until they do something.
            return
        if presence == "online":
            self._last_active[user_id] = now_ms()
        if presence != "offline":
            # Someone who sets a presence without syncing gets the same grace period.
            self._last_sync.setdefault(user_id, now_ms())
            self._start_decay()

        def change(txn: Txn, pos: int) -> tuple[bool, tuple[str, str | None]]:
            row = store.get_presence(txn, user_id)
            if from_sync and row is not None and row[1] == presence:
                return False, (row[1], row[2])
            # `...`: keep the status message the user set
            msg = (row[2] if row is not None else None) if status_msg is ... else status_msg
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
            if self._is_local(user_id):
                content = self.format((user_id, state[0], state[1], 0, 0))
                self.hs.run_in_background(self.hs.federation_edus.presence(user_id, content))

    async def set_remote(self, user_id: str, presence: str, status_msg: str | None,
                         last_active_ts: int) -> None:
        """A remote user's presence, as their server told it."""
        def change(txn: Txn, pos: int) -> bool:
            row = store.get_presence(txn, user_id)
            if row is not None and (row[1], row[2], row[3]) == (presence, status_msg, last_active_ts):
                return False
            store.set_presence(txn, user_id, presence, status_msg, last_active_ts, pos)
            return True

        with self.hs.stream.get_next() as pos:
            written = await self.hs.db.run(change, pos)
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

    async def status_for(self, requester_id: str, user_id: str) -> dict[str, Any]:
        """A user's presence as `requester_id` may see it: their own, or that of someone they
        share a room with."""
        if user_id != requester_id and not await self.hs.db.run(
                store.shares_room, requester_id, user_id):
            if not await self.hs.db.run(account_store.user_exists, user_id):
                raise not_found("Unknown user")
            raise forbidden("You are not allowed to see this user's presence")
        content = await self.get(user_id)
        if content is not None:
            return content
        if self._is_local(user_id) and not await self.hs.db.run(account_store.user_exists, user_id):
            raise not_found("Unknown user")
        return {"presence": "offline"}

    async def get(self, user_id: str) -> dict[str, Any] | None:
        row = await self.hs.db.run(store.get_presence, user_id)
        if row is None:
            return None
        return self.format(row)
