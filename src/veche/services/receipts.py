"""Read receipts and read markers.

A read receipt also clears the user's unread notifications up to its event (all of them
for an unthreaded receipt, one thread's for a threaded one).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from veche.errors import MatrixError, forbidden
from veche.server import register_stream_table
from veche.storage import events as event_store
from veche.storage import sync as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

register_stream_table("receipts")
RECEIPT_TYPES = ("m.read", "m.read.private", "m.fully_read")


class ReceiptService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def set_own_receipt(
        self, room_id: str, user_id: str, receipt_type: str, event_id: str, thread_id: str | None
    ) -> None:
        """A local user's receipt: only in a room they are joined to, for an event of it."""
        membership = await self.hs.db.run(event_store.get_membership, room_id, user_id)
        if membership is None or membership[0] != "join":
            raise forbidden("You are not in this room")
        pos = await self.hs.db.run(event_store.get_event_position, event_id)
        if pos is None or pos[0] != room_id:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown event")
        await self.set_receipt(room_id, user_id, receipt_type, event_id, thread_id)
        if receipt_type == "m.read":  # the only kind other servers are told of
            await self.hs.federation_edus.read_receipt(room_id, user_id, event_id, thread_id)

    async def set_receipt(
        self, room_id: str, user_id: str, receipt_type: str, event_id: str, thread_id: str | None
    ) -> None:
        if receipt_type == "m.fully_read":
            if thread_id is not None:
                raise MatrixError(400, "M_INVALID_PARAM", "m.fully_read cannot be threaded")
            await self.hs.account_data.set(user_id, room_id, "m.fully_read", {"event_id": event_id})
            return
        with self.hs.stream.get_next() as pos:
            changed = await self.hs.db.run(
                self._set_receipt_txn, room_id, receipt_type, user_id, thread_id, event_id,
                int(time.time() * 1000), pos,
            )
        if changed:
            self.hs.notifier.notify([room_id, user_id])

    def _set_receipt_txn(
        self, txn: Txn, room_id: str, receipt_type: str, user_id: str, thread_id: str | None,
        event_id: str, ts: int, pos: int,
    ) -> bool:
        target = event_store.get_event_position(txn, event_id)
        if target is None:
            return False
        current = txn.fetchval(
            "SELECT e.stream_ordering FROM receipts r JOIN events e ON e.event_id = r.event_id"
            " WHERE r.room_id = ? AND r.receipt_type = ? AND r.user_id = ? AND r.thread_id = ?",
            (room_id, receipt_type, user_id, thread_id or ""),
        )
        if current is not None and current > target[1]:
            return False  # receipts only move forwards
        store.upsert_receipt(txn, room_id, receipt_type, user_id, thread_id or "", event_id, ts, pos)
        self.hs.push.mark_read(txn, user_id, room_id, target[1], thread_id)
        return True
