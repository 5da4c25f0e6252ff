"""Synapse's user admin API (/_synapse/admin/v2/users and friends): list, query, create and
modify local accounts, deactivate them, reset passwords, list devices. Server admins only;
the caller's admin status is checked by the HTTP layer through `AdminService.require_admin`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.errors import MatrixError, bad_json, invalid_param, not_found
from veche.services.accounts import MAX_AVATAR_URL_LEN, MAX_DISPLAYNAME_LEN, MAX_PASSWORD_LEN
from veche.storage import accounts as account_store
from veche.storage import admin as store

if TYPE_CHECKING:
    from veche.server import HomeServer

# Fields Synapse answers that Veche has no notion of, with the values they always have here.
_ABSENT: dict[str, Any] = {
    "is_guest": False, "erased": False, "shadow_banned": False, "user_type": None,
}
_DETAIL_ABSENT: dict[str, Any] = {
    **_ABSENT, "threepids": [], "external_ids": [], "appservice_id": None,
    "consent_server_notice_sent": None, "consent_version": None, "consent_ts": None,
}


def _bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is not None and not isinstance(value, bool):
        raise bad_json(f"{key} must be a boolean")
    return value


def _str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"{key} must be a string")
    return value


def _password(value: str) -> str:
    if not value or len(value) > MAX_PASSWORD_LEN:
        raise invalid_param(f"The password must be 1 to {MAX_PASSWORD_LEN} characters")
    return value


class AdminUsers:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    def _local(self, user_id: str) -> str:
        if not user_id.startswith("@") or not user_id.endswith(":" + self.hs.server_name):
            raise invalid_param("Only local users can be administered here")
        return user_id

    async def _existing(self, user_id: str) -> dict[str, Any]:
        user = await self.hs.db.run(store.get_user, self._local(user_id))
        if user is None:
            raise not_found("User not found")
        return user

    async def list_users(
        self, start: int, limit: int, *, name: str | None, user_id: str | None,
        deactivated: bool, admins: bool | None, order_by: str, backwards: bool,
        locked: bool = True,
    ) -> dict[str, Any]:
        if order_by not in store.USER_ORDER:
            raise invalid_param(f"Unknown order_by {order_by[:40]!r}")
        users, total = await self.hs.db.run(lambda txn: store.list_users(
            txn, self.hs.server_name, start, limit, name=name, user_id=user_id,
            deactivated=deactivated, admins=admins, order_by=order_by, backwards=backwards,
            locked=locked))
        out: dict[str, Any] = {"users": [{**u, **_ABSENT} for u in users], "total": total}
        if start + len(users) < total:
            out["next_token"] = str(start + len(users))
        return out

    async def get_user(self, user_id: str) -> dict[str, Any]:
        return {**await self._existing(user_id), **_DETAIL_ABSENT}

    async def put_user(self, user_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Create (201) or modify (200) an account, Synapse's PUT /v2/users/{user_id}."""
        self._local(user_id)
        password = _str(body, "password")
        logout = _bool(body, "logout_devices")
        displayname, avatar_url = _str(body, "displayname"), _str(body, "avatar_url")
        admin, deactivated, locked = (_bool(body, k) for k in ("admin", "deactivated", "locked"))
        for value, limit, key in ((displayname, MAX_DISPLAYNAME_LEN, "displayname"),
                                  (avatar_url, MAX_AVATAR_URL_LEN, "avatar_url")):
            if value is not None and len(value) > limit:
                raise invalid_param(f"{key} must be at most {limit} characters")
        if avatar_url and not avatar_url.startswith("mxc://"):
            raise invalid_param("avatar_url must be an mxc:// URI")
        for key in ("threepids", "external_ids"):
            value = body.get(key)
            if value is not None and not isinstance(value, list):
                raise bad_json(f"{key} must be a list")
            if value:
                raise invalid_param(f"{key} are not supported by this server")
        if password is not None:
            _password(password)
        existing = await self.hs.db.run(store.get_user, user_id)
        if existing is None:
            if deactivated:
                raise invalid_param("A new account cannot be deactivated")
            localpart = user_id[1:].split(":", 1)[0]
            await self.hs.accounts.create_user(localpart, password, admin=bool(admin))
            for field, value in (("displayname", displayname or localpart),
                                 ("avatar_url", avatar_url)):
                if value:
                    await self.hs.db.run(store.set_profile, user_id, field, value)
            if locked:
                await self.hs.db.run(account_store.set_moderation, user_id, "locked", True)
            return 201, await self.get_user(user_id)
        if existing["deactivated"] and deactivated is False:
            if password is None:
                raise invalid_param("Must provide a password to re-activate an account.")
            await self.hs.db.run(store.reactivate, user_id)
        if password is not None and not (deactivated and not existing["deactivated"]):
            await self.hs.accounts.change_password(
                user_id, password, logout_devices=logout is not False, keep_device=None)
        if admin is not None:
            await self.hs.db.run(store.set_admin, user_id, admin)
        for field, value in (("displayname", displayname), ("avatar_url", avatar_url)):
            if value is not None and value != (existing[field] or ""):
                await self.hs.accounts.set_profile_field(user_id, field, value or None)
        if locked is not None:
            await self.hs.db.run(account_store.set_moderation, user_id, "locked", locked)
            self.hs.auth.invalidate()
        if deactivated and not existing["deactivated"]:
            await self.hs.accounts.deactivate(user_id)
        return 200, await self.get_user(user_id)

    async def deactivate(self, user_id: str) -> None:
        """Deactivation clears the profile here too, which is all Synapse's `erase` adds."""
        user = await self._existing(user_id)
        if not user["deactivated"]:
            await self.hs.accounts.deactivate(user_id)

    async def reset_password(self, user_id: str, new_password: str, logout_devices: bool) -> None:
        user = await self._existing(user_id)
        if user["deactivated"]:
            raise MatrixError(400, "M_UNKNOWN", "The account is deactivated")
        await self.hs.accounts.change_password(
            user_id, _password(new_password), logout_devices=logout_devices, keep_device=None)

    async def set_admin(self, user_id: str, admin: bool) -> None:
        await self._existing(user_id)
        await self.hs.db.run(store.set_admin, user_id, admin)

    async def is_admin(self, user_id: str) -> bool:
        return bool((await self._existing(user_id))["admin"])

    async def joined_rooms(self, user_id: str) -> dict[str, Any]:
        from veche.storage import rooms as room_store

        await self._existing(user_id)
        rooms = sorted(await self.hs.db.run(room_store.joined_rooms, user_id))
        return {"joined_rooms": rooms, "total": len(rooms)}

    async def device(self, user_id: str, device_id: str) -> dict[str, Any]:
        for device in (await self.devices(user_id))["devices"]:
            if device["device_id"] == device_id:
                return device  # type: ignore[no-any-return]
        raise not_found("Unknown device")

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Log devices out (their tokens die); unknown ones are skipped, as Synapse does."""
        await self._existing(user_id)
        await self.hs.accounts.delete_devices(user_id, device_ids)

    async def devices(self, user_id: str) -> dict[str, Any]:
        await self._existing(user_id)
        devices = [
            {**{k: v for k, v in d.items() if v is not None or k != "display_name"},
             "user_id": user_id, "last_seen_user_agent": None, "dehydrated": False}
            for d in await self.hs.db.run(account_store.list_devices, user_id)]
        return {"devices": devices, "total": len(devices)}
