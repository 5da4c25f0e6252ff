"""Server administration (client-server API "Server Administration" and "Account
moderation"): who may administer, whois, and locking and suspending local accounts. The
admin API of Synapse (/_synapse/admin) is in admin_users.py, admin_rooms.py and
admin_content.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.errors import forbidden, not_found
from veche.storage import accounts as store
from veche.storage import rooms as room_store

if TYPE_CHECKING:
    from veche.server import HomeServer


class AdminService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def require_admin(self, user_id: str) -> None:
        if not await self.hs.db.run(room_store.is_admin, user_id):
            raise forbidden("You are not a server admin")

    async def _local_user(self, user_id: str) -> None:
        if not user_id.endswith(":" + self.hs.server_name) or await self.hs.db.run(
                store.get_moderation, user_id) is None:
            raise not_found("No such user on this server")

    async def whois(self, requester_id: str, user_id: str) -> dict[str, Any]:
        """A local user's devices and their last connections: for admins, and for the user."""
        await self._local_user(user_id)
        if user_id != requester_id and not await self.hs.db.run(room_store.is_admin, requester_id):
            raise forbidden("Only server admins may look up other users")
        out: dict[str, Any] = {}
        for d in await self.hs.db.run(store.list_devices, user_id):
            connection = {k: v for k, v in (("ip", d["last_seen_ip"]),
                                            ("last_seen", d["last_seen_ts"])) if v is not None}
            out[d["device_id"]] = {"sessions": [{"connections": [connection] if connection else []}]}
        return {"user_id": user_id, "devices": out}

    async def moderation(self, admin_id: str, user_id: str) -> tuple[bool, bool]:
        """(locked, suspended) of a local user."""
        await self.require_admin(admin_id)
        await self._local_user(user_id)
        locked, suspended = await self.hs.db.run(store.get_moderation, user_id)
        return bool(locked), bool(suspended)

    async def set_moderation(self, admin_id: str, user_id: str, flag: str, value: bool) -> None:
        await self.require_admin(admin_id)
        await self._local_user(user_id)
        await self.hs.db.run(store.set_moderation, user_id, flag, value)
        self.hs.auth.invalidate()  # cached sessions carry the old state
