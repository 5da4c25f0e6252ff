"""Send-to-device messaging (spec: client-server API "Send-to-Device messaging").

Messages wait in their device's inbox, each with the stream position of the request that
sent it, and are deleted only once the device acknowledges them by syncing from a token
that came with them. /sync hands out at most DELIVERY_LIMIT per response; a response
that had to leave some behind records which it delivered, so a sync from its token
deletes exactly those, and takes a fresh stream position so the next token is a new one.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from veche.errors import MatrixError
from veche.server import register_stream_table
from veche.storage import federation_queue as queue
from veche.storage import remote_devices as remote_store
from veche.storage import to_device as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer
    from veche.services.sync import SyncContext, SyncFinisher

register_stream_table("device_inbox")
register_stream_table("to_device_positions")

DELIVERY_LIMIT = 100
# Recipient devices one request may address (after expanding "*").
MAX_RECIPIENTS = 10_000
EMPTY_CACHE_SIZE = 100_000
TXN_ID_LIFETIME_MS = 7 * 24 * 3600 * 1000


class ToDeviceService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        hs.sync.add_txn_provider(self._sync_provider)
        # Devices whose inbox a sync found empty, and no delivery since: their syncs read
        # nothing (most devices, most of the time). `_deliveries` counts deliveries per
        # device, so that a sync racing one (PostgreSQL) does not mark its device empty.
        self._empty: set[tuple[str, str]] = set()
        self._deliveries: dict[tuple[str, str], int] = {}
        # With several processes another one may deliver: every sync reads the inbox then.
        self._remember_empty = not hs.config.clustered

    async def send(
        self, sender: str, sender_device: str, event_type: str, txn_id: str,
        messages: dict[str, dict[str, dict[str, Any]]],
    ) -> None:
        """Queue `messages` ({user: {device or "*": content}}); a repeated txn_id is a no-op."""
        self.hs.ratelimiter.check("message", f"to_device:{sender}")
        local = {u: d for u, d in messages.items()
                 if u.partition(":")[2] == self.hs.server_name}
        remote = self._remote_edus(sender, event_type, messages)
        now = int(time.time() * 1000)

        def run(txn: Txn, pos: int) -> set[str]:
            if not store.add_txn(txn, sender, sender_device, txn_id, now):
                return set()
            # Queued with the transaction ID, so a retried request sends nothing twice.
            for destination, edu in remote.items():
                queue.enqueue_edu(txn, destination, edu, now)
            if remote:
                txn.call_after(lambda: self.hs.call_on_loop(self.hs.federation_sender.kick,
                                                            sorted(remote)))
            store.set_position(txn, sender, pos)
            if now % 100 == 0:  # now and then, forget old transaction IDs
                store.delete_old_txns(txn, now - TXN_ID_LIFETIME_MS)
            return self._deliver_txn(txn, pos, sender, event_type, local)

        with self.hs.stream.get_next() as pos:
            recipients = await self.hs.db.run(run, pos)
        if recipients:
            self.hs.notifier.notify(sorted(recipients))

    def _remote_edus(self, sender: str, event_type: str,
                     messages: dict[str, dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
        """destination -> the m.direct_to_device EDU with its users' messages."""
        if not self.hs.config.federation.enabled:
            return {}
        by_server: dict[str, dict[str, dict[str, Any]]] = {}
        for user_id, by_device in messages.items():
            server = user_id.partition(":")[2]
            if server and server != self.hs.server_name \
                    and self.hs.federation_client.allowed(server):
                by_server.setdefault(server, {})[user_id] = by_device
        return {server: {"edu_type": "m.direct_to_device", "content": {
            "sender": sender, "type": event_type, "message_id": secrets.token_urlsafe(16),
            "messages": msgs}} for server, msgs in by_server.items()}

    async def receive_remote(self, origin: str, content: dict[str, Any]) -> None:
        """An m.direct_to_device EDU: delivered to local devices once per message_id."""
        sender, event_type = content.get("sender"), content.get("type")
        message_id, messages = content.get("message_id"), content.get("messages")
        if not (isinstance(sender, str) and isinstance(event_type, str)
                and isinstance(message_id, str) and isinstance(messages, dict)):
            return
        if sender.partition(":")[2] != origin:
            return
        local = {u: d for u, d in messages.items()
                 if isinstance(u, str) and u.partition(":")[2] == self.hs.server_name
                 and isinstance(d, dict) and all(isinstance(c, dict) for c in d.values())}
        now = int(time.time() * 1000)

        def run(txn: Txn, pos: int) -> set[str]:
            if not remote_store.first_delivery(txn, origin, message_id, now):
                return set()
            if now % 100 == 0:
                remote_store.forget_deliveries(txn, now - TXN_ID_LIFETIME_MS)
            try:
                return self._deliver_txn(txn, pos, sender, event_type, local)
            except MatrixError:
                return set()  # too many recipients: nothing delivered, as for a client

        with self.hs.stream.get_next() as pos:
            recipients = await self.hs.db.run(run, pos)
        if recipients:
            self.hs.notifier.notify(sorted(recipients))

    def _deliver_txn(self, txn: Txn, pos: int, sender: str, event_type: str,
                     local: dict[str, dict[str, Any]]) -> set[str]:
        """Put messages for local users' devices ("*": all of them) in their inboxes at
        `pos`; the recipients."""
        rows: list[tuple[str, str, dict[str, Any]]] = []
        for user_id, by_device in local.items():
            if "*" in by_device:
                targets = {d: by_device["*"] for d in store.device_ids(txn, user_id)}
                targets.update({d: c for d, c in by_device.items() if d != "*" and d in targets})
            else:
                known = store.existing_devices(txn, user_id, sorted(by_device))
                targets = {d: c for d, c in by_device.items() if d in known}
            for device_id, content in targets.items():
                rows.append((user_id, device_id,
                             {"type": event_type, "sender": sender, "content": content}))
            if len(rows) > MAX_RECIPIENTS:
                raise MatrixError(413, "M_TOO_LARGE",
                                  f"At most {MAX_RECIPIENTS} devices per request")
        store.add_messages(txn, pos, rows)
        devices = {(u, d) for u, d, _ in rows}
        self._delivering(devices)
        txn.call_after(lambda: self._delivering(devices))
        return {u for u, _, _ in rows}

    def _delivering(self, devices: set[tuple[str, str]]) -> None:
        """Called in the delivering transaction and again once it committed."""
        self._empty.difference_update(devices)
        for key in devices:
            self._deliveries[key] = self._deliveries.get(key, 0) + 1

    def _sync_provider(self, txn: Txn, ctx: SyncContext) -> SyncFinisher:
        """The device's messages up to the sync's position, read in the sync's transaction
        (those the client acknowledged by coming back with `since` are deleted first)."""
        user_id, device_id = ctx.user_id, ctx.device_id
        upto = ctx.upto.stream
        key = (user_id, device_id)
        if key in self._empty:
            return _nothing
        deliveries = self._deliveries.get(key, 0)
        if ctx.since is not None:
            store.acknowledge(txn, user_id, device_id, ctx.since.stream)
        rows = store.pending(txn, user_id, device_id, upto, DELIVERY_LIMIT + 1)
        cut = len(rows) > DELIVERY_LIMIT
        rows = rows[:DELIVERY_LIMIT]
        if cut:
            store.record_partial_delivery(txn, user_id, device_id, upto, rows[-1][0])
        # Messages past `upto` (delivered since it was read) count too.
        has_any = bool(rows) or store.has_messages(txn, user_id, device_id)

        async def finish(ctx: SyncContext) -> bool:
            if not has_any and self._remember_empty and \
                    self._deliveries.get(key, 0) == deliveries:
                if len(self._empty) >= EMPTY_CACHE_SIZE:
                    self._empty.clear()
                self._empty.add(key)
            if cut:
                # A fresh position, so the next response's token differs from this one's even
                # if nothing else happens, and the record above keeps meaning one response.
                with self.hs.stream.get_next() as pos:
                    await self.hs.db.run(store.set_position, user_id, pos)
            ctx.result["to_device"] = {"events": [m for _, m in rows]}
            return bool(rows)
        return finish

    async def sync_section(
        self, user_id: str, device_id: str, since: int | None, upto: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """Sliding sync's to_device extension: (messages, next_batch). Messages stay until a
        request passes a `since` at or past them; a response cut short at `limit` ends its
        next_batch at its last message."""

        def run(txn: Txn) -> list[tuple[int, dict[str, Any]]]:
            if since is not None:
                store.acknowledge(txn, user_id, device_id, since)
            return store.pending(txn, user_id, device_id, upto, limit + 1)

        rows = await self.hs.db.run(run)
        if len(rows) > limit:
            rows = rows[:limit]
            return [m for _, m in rows], rows[-1][0]
        return [m for _, m in rows], upto


async def _nothing(ctx: SyncContext) -> bool:
    return False
