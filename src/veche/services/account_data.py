"""Per-user account data, global and per room (room tags are the m.tag room type)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.server import register_stream_table
from veche.storage import sync as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

register_stream_table("account_data")


class AccountDataService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def set(self, user_id: str, room_id: str, data_type: str, content: dict[str, Any]) -> None:
        with self.hs.stream.get_next() as pos:
            await self.hs.db.run(store.set_account_data, user_id, room_id, data_type, content, pos)
        self.hs.notifier.notify([user_id])

    async def get(self, user_id: str, room_id: str, data_type: str) -> dict[str, Any] | None:
        return await self.hs.db.run(store.get_account_data, user_id, room_id, data_type)

    async def update_tags(
        self, user_id: str, room_id: str, tag: str, value: dict[str, Any] | None
    ) -> None:
        """Set (value) or remove (None) one tag of a room, read-modify-write in one txn."""

        def change(txn: Txn, pos: int) -> None:
            content = store.get_account_data(txn, user_id, room_id, "m.tag") or {}
            old = content.get("tags")
            tags: dict[str, Any] = dict(old) if isinstance(old, dict) else {}
            if value is None:
                tags.pop(tag, None)
            else:
                tags[tag] = value
            store.set_account_data(txn, user_id, room_id, "m.tag", {"tags": tags}, pos)

        with self.hs.stream.get_next() as pos:
            await self.hs.db.run(change, pos)
        self.hs.notifier.notify([user_id])
