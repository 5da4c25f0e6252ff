"""Typing, receipts and presence shared with other servers (server-server API "Typing
Notifications", "Receipts", "Presence").

- A local user's typing notice goes to every other server with a member joined to the room,
  best-effort (FederationSender.send_ephemeral: kept in memory, dropped when stale or when
  the send fails); a remote notice expires on its own.
- A local user's public read receipt (m.read) goes to the same servers, through the durable
  queue.
- A local user's presence goes to every server sharing a room with them, through the durable
  queue, when [presence] federate is on (services/presence.py also reminds them now and
  then of who is still online). When someone joins a room, the presence of who is present
  is sent on: a local joiner's to the room's other servers, the room's local users' to a
  remote joiner's server.
- Presence from another server is taken for its own users sharing a room with a local user.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from veche.core.identifiers import server_name_of
from veche.storage import federation_events as fstore
from veche.storage import federation_queue as queue
from veche.storage import presence as presence_store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

PRESENCE_STATES = ("online", "offline", "unavailable")


def now_ms() -> int:
    return int(time.time() * 1000)


class FederationEdus:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    def _enabled(self) -> bool:
        return self.hs.config.federation.enabled

    async def _room_hosts(self, room_id: str) -> set[str]:
        return await self.hs.federation_sender.room_hosts(room_id)

    # --- outbound -------------------------------------------------------------------------

    async def typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int) -> None:
        if not self._enabled():
            return
        content = {"room_id": room_id, "user_id": user_id, "typing": typing}
        if typing:
            content["timeout"] = timeout_ms
        sender = self.hs.federation_sender
        for destination in await self._room_hosts(room_id):
            sender.send_ephemeral(destination, "m.typing", content, key=("m.typing", room_id, user_id))

    async def read_receipt(self, room_id: str, user_id: str, event_id: str,
                           thread_id: str | None) -> None:
        if not self._enabled():
            return
        data: dict[str, Any] = {"ts": now_ms()}
        if thread_id is not None:
            data["thread_id"] = thread_id
        content = {room_id: {"m.read": {user_id: {"event_ids": [event_id], "data": data}}}}
        for destination in await self._room_hosts(room_id):
            await self.hs.federation_sender.queue_edu(destination, "m.receipt", content)

    def presence_federated(self) -> bool:
        return self._enabled() and self.hs.config.presence.federate

    async def presence(self, user_id: str, content: Mapping[str, Any]) -> None:
        """Send a local user's presence (`content` as /presence shows it) to the servers
        sharing a room with them."""
        if not self.presence_federated():
            return
        push = self._push(user_id, content)
        destinations = await self.hs.db.run(self._hosts_sharing, user_id)
        for destination in sorted(destinations):
            await self.hs.federation_sender.queue_edu(destination, "m.presence", {"push": [push]})

    @staticmethod
    def _push(user_id: str, content: Mapping[str, Any]) -> dict[str, Any]:
        push = {"user_id": user_id, "presence": content["presence"],
                # Required by the spec: a user never active was last active at the epoch.
                "last_active_ago": content.get("last_active_ago", now_ms()),
                "currently_active": bool(content.get("currently_active", False))}
        if content.get("status_msg") is not None:
            push["status_msg"] = content["status_msg"]
        return push

    async def member_joined(self, room_id: str, user_id: str) -> None:
        if not self.presence_federated():
            return
        rows = await self.hs.db.run(presence_store.present_members, room_id)
        local = [r for r in rows if server_name_of(r[0]) == self.hs.server_name]
        if server_name_of(user_id) == self.hs.server_name:
            local = [r for r in local if r[0] == user_id]
            destinations = await self._room_hosts(room_id)
        else:
            destinations = {server_name_of(user_id)} - {self.hs.server_name}
        for i in range(0, len(local), 50):
            push = [self._push(r[0], self.hs.presence.format(r)) for r in local[i:i + 50]]
            for destination in sorted(destinations):
                await self.hs.federation_sender.queue_edu(destination, "m.presence", {"push": push})

    def _hosts_sharing(self, txn: Txn, user_id: str) -> set[str]:
        hosts: set[str] = set()
        for room_id in presence_store.joined_room_ids(txn, user_id):
            hosts |= queue.joined_servers(txn, room_id)
        hosts.discard(self.hs.server_name)
        return hosts

    # --- inbound --------------------------------------------------------------------------

    async def receive_presence(self, origin: str, content: Mapping[str, Any]) -> None:
        push = content.get("push")
        if not self.presence_federated() or not isinstance(push, list):
            return
        for entry in push[:1000]:
            if not isinstance(entry, dict):
                continue
            user_id, state = entry.get("user_id"), entry.get("presence")
            if not isinstance(user_id, str) or state not in PRESENCE_STATES:
                continue
            # A server speaks only for its own users.
            if server_name_of(user_id) != origin:
                continue
            if not await self.hs.db.run(self._shares_room_with_local, user_id):
                continue
            ago = entry.get("last_active_ago")
            last_active = now_ms() - ago if isinstance(ago, int) and 0 <= ago <= now_ms() else 0
            status_msg = entry.get("status_msg")
            await self.hs.presence.set_remote(
                user_id, state, status_msg if isinstance(status_msg, str) else None, last_active)

    def _shares_room_with_local(self, txn: Txn, user_id: str) -> bool:
        return any(fstore.server_has_joined_member(txn, room_id, self.hs.server_name)
                   for room_id in presence_store.joined_room_ids(txn, user_id))
