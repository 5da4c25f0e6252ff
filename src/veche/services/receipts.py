"""Read receipts and read markers."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from veche.server import register_stream_table
from veche.storage import sync as store

if TYPE_CHECKING:
    from veche.server import HomeServer

register_stream_table("receipts")
RECEIPT_TYPES = ("m.read", "m.read.private", "m.fully_read")


class ReceiptService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def set_receipt(
        self, room_id: str, user_id: str, receipt_type: str, event_id: str, thread_id: str | None
    ) -> None:
        if receipt_type == "m.fully_read":
            await self.hs.account_data.set(user_id, room_id, "m.fully_read", {"event_id": event_id})
            return
        with self.hs.stream.get_next() as pos:
            await self.hs.db.run(
                store.upsert_receipt, room_id, receipt_type, user_id, thread_id or "", event_id,
                int(time.time() * 1000), pos,
            )
        self.hs.notifier.notify([room_id])
