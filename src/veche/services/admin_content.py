"""Synapse's admin API for content: a user's media, deleting media (by ID, by age),
quarantine, registration tokens, event reports and server notices."""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from veche.errors import MatrixError, bad_json, invalid_param, not_found
from veche.services.accounts import REGISTRATION_TOKEN_RE
from veche.storage import accounts as account_store
from veche.storage import admin as store
from veche.storage import media as media_store

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

_TOKEN_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"


def _optional_int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise invalid_param(f"{key} must be a non-negative integer or null")
    return value


class AdminContent:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    # --- media ---------------------------------------------------------------------------
    async def user_media(self, user_id: str, start: int, limit: int, order_by: str | None,
                         direction: str | None) -> dict[str, Any]:
        if not user_id.endswith(":" + self.hs.server_name):
            raise invalid_param("Only local users have media here")
        if not await self.hs.db.run(account_store.user_exists, user_id):
            raise not_found("Unknown user")
        if order_by is not None and order_by not in store.MEDIA_ORDER:
            raise invalid_param(f"Unknown order_by {order_by[:40]!r}")
        if direction not in (None, "f", "b"):
            raise invalid_param("dir must be f or b")
        # Newest first unless asked otherwise (Synapse's default).
        backwards = direction == "b" if (order_by or direction) else True
        media, total = await self.hs.db.run(
            store.user_media, user_id, start, limit, order_by or "created_ts", backwards)
        out: dict[str, Any] = {"media": media, "total": total}
        if start + len(media) < total:
            out["next_token"] = start + len(media)
        return out

    async def delete_media(self, server_name: str, media_id: str) -> dict[str, Any]:
        if server_name != self.hs.server_name:
            raise invalid_param("Can only delete local media")
        if await self.hs.db.run(media_store.get_media, media_id) is None:
            raise not_found("Unknown media")
        await self.hs.media.delete([media_id])
        return {"deleted_media": [media_id], "total": 1}

    async def delete_media_before(self, before_ts: int, size_gt: int) -> dict[str, Any]:
        ids = await self.hs.db.run(store.local_media_before, before_ts, size_gt)
        for i in range(0, len(ids), 500):
            await self.hs.media.delete(ids[i:i + 500])
        return {"deleted_media": ids, "total": len(ids)}

    async def quarantine(self, admin_id: str, server_name: str, media_id: str,
                         quarantined: bool) -> None:
        """Quarantined media is served to nobody (404), local or cached from elsewhere."""
        if server_name != self.hs.server_name:
            if not await self.hs.db.run(media_store.set_remote_quarantined, server_name,
                                        media_id, quarantined):
                raise not_found("Unknown media")
            return
        if not await self.hs.db.run(store.quarantine, media_id,
                                    admin_id if quarantined else None):
            raise not_found("Unknown media")

    # --- registration tokens ---------------------------------------------------------------
    async def list_tokens(self, valid: bool | None, now_ms: int) -> dict[str, Any]:
        tokens = await self.hs.db.run(store.list_tokens)
        if valid is not None:
            tokens = [t for t in tokens if _token_valid(t, now_ms) == valid]
        return {"registration_tokens": tokens}

    async def get_token(self, token: str) -> dict[str, Any]:
        found = await self.hs.db.run(store.get_token, token)
        if found is None:
            raise not_found(f"No such registration token: {token[:64]}")
        return found

    async def create_token(self, body: dict[str, Any], now_ms: int) -> dict[str, Any]:
        token = body.get("token")
        if token is None:
            length = body.get("length", 16)
            if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= 64:
                raise invalid_param("length must be an integer from 1 to 64")
            token = "".join(secrets.choice(_TOKEN_CHARS) for _ in range(length))
        elif not isinstance(token, str) or not REGISTRATION_TOKEN_RE.match(token):
            raise invalid_param("token must be 1-64 characters of A-Z, a-z, 0-9 and ._~-")
        uses = _optional_int(body, "uses_allowed")
        expiry = _optional_int(body, "expiry_time")
        if expiry is not None and expiry < now_ms:
            raise invalid_param("expiry_time must not be in the past")
        if await self.hs.db.run(store.get_token, token) is not None:
            raise MatrixError(400, "M_INVALID_PARAM", f"Token already exists: {token}")
        await self.hs.accounts.create_registration_token(token, uses, expiry)
        return await self.get_token(token)

    async def update_token(self, token: str, body: dict[str, Any], now_ms: int
                           ) -> dict[str, Any]:
        fields = {k: _optional_int(body, k) for k in ("uses_allowed", "expiry_time") if k in body}
        if fields.get("expiry_time") is not None and fields["expiry_time"] < now_ms:  # type: ignore[operator]
            raise invalid_param("expiry_time must not be in the past")
        if not await self.hs.db.run(store.update_token, token, fields):
            raise not_found(f"No such registration token: {token[:64]}")
        return await self.get_token(token)

    async def delete_token(self, token: str) -> None:
        if not await self.hs.db.run(store.delete_token, token):
            raise not_found(f"No such registration token: {token[:64]}")

    # --- event reports -----------------------------------------------------------------------
    async def event_reports(self, start: int, limit: int, backwards: bool,
                            user_id: str | None, room_id: str | None, sender: str | None
                            ) -> dict[str, Any]:
        reports, total = await self.hs.db.run(
            store.list_event_reports, start, limit, backwards, user_id, room_id, sender)
        await self._with_room_names(reports)
        for r in reports:
            del r["event_json"]
        out: dict[str, Any] = {"event_reports": reports, "total": total}
        if start + len(reports) < total:
            out["next_token"] = start + len(reports)
        return out

    async def event_report(self, report_id: str) -> dict[str, Any]:
        report = await self.hs.db.run(store.get_event_report, report_id)
        if report is None:
            raise not_found("Event report not found")
        await self._with_room_names([report])
        return report

    async def delete_event_report(self, report_id: str) -> None:
        if not await self.hs.db.run(store.delete_event_report, report_id):
            raise not_found("Event report not found")

    async def _with_room_names(self, reports: list[dict[str, Any]]) -> None:
        from veche.storage import rooms as room_store

        rooms = sorted({r["room_id"] for r in reports if r["room_id"]})
        summaries = await self.hs.db.run(room_store.room_summaries, rooms)
        for r in reports:
            s = summaries.get(r["room_id"], {})
            r["name"], r["canonical_alias"] = s.get("name"), s.get("canonical_alias")

    # --- server notices ----------------------------------------------------------------------
    async def send_server_notice(self, body: dict[str, Any], txn: tuple[str, str] | None
                                 ) -> str:
        """Send a notice to a local user in their server-notices room (made, and the user
        invited, the first time; invited again after they left it)."""
        config = self.hs.config.server_notices
        if not config.system_mxid_localpart:
            raise MatrixError(400, "M_UNKNOWN", "Server notices are not enabled on this server")
        user_id, content = body.get("user_id"), body.get("content")
        if not isinstance(user_id, str):
            raise MatrixError(400, "M_MISSING_PARAM", "user_id is required")
        if not isinstance(content, dict):
            raise bad_json("content must be an object")
        event_type = body.get("type", "m.room.message")
        state_key = body.get("state_key")
        if not isinstance(event_type, str) or (state_key is not None
                                               and not isinstance(state_key, str)):
            raise bad_json("type and state_key must be strings")
        if not user_id.endswith(":" + self.hs.server_name):
            raise invalid_param("Server notices can only be sent to local users")
        user = await self.hs.db.run(account_store.get_user, user_id)
        if user is None or user["deactivated"]:
            raise not_found("Unknown user")
        system = await self._system_user()
        room_id = await self._notice_room(system, user_id)
        event = await self.hs.events.send(room_id, system, event_type, content, state_key,
                                          txn_key=txn)
        return str(event["event_id"])

    async def _system_user(self) -> str:
        config = self.hs.config.server_notices
        system = f"@{config.system_mxid_localpart}:{self.hs.server_name}"
        if not await self.hs.db.run(account_store.user_exists, system):
            await self.hs.accounts.create_user(config.system_mxid_localpart, None)
            if config.system_mxid_display_name:
                await self.hs.db.run(store.set_profile, system, "displayname",
                                     config.system_mxid_display_name)
        return system

    async def _notice_room(self, system: str, user_id: str) -> str:
        room_id = await self.hs.db.run(store.notice_room, user_id)
        if room_id is not None:
            membership = await self.hs.rooms.membership(room_id, user_id)
            if membership is not None and membership[0] in ("join", "invite"):
                return room_id
            try:
                await self.hs.membership.set_membership(
                    system, room_id, user_id, "invite", {})
                return room_id
            except MatrixError:  # e.g. the room is gone: make a new one
                logger.info("server notices: new room for %s", user_id)
        created = await self.hs.room_creation.create_room(system, {
            "preset": "private_chat", "name": self.hs.config.server_notices.room_name,
            "invite": [user_id],
            # Only the server speaks here (Synapse's notices rooms are the same).
            "power_level_content_override": {"users_default": -10, "events_default": 0},
        })
        room_id = str(created["room_id"])
        await self.hs.db.run(store.set_notice_room, user_id, room_id)
        await self.hs.account_data.update_tags(user_id, room_id, "m.server_notice", {})
        return room_id


def _token_valid(token: dict[str, Any], now_ms: int) -> bool:
    uses, expiry = token["uses_allowed"], token["expiry_time"]
    return (uses is None or token["completed"] + token["pending"] < uses) and (
        expiry is None or expiry > now_ms)
