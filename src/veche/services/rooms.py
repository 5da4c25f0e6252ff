"""The core of a room: its version, a user's membership and power, resolving an ID or
alias, and sending messages, state and redactions (client-server API "Rooms",
"Sending events"). The other room concerns have their own services: history visibility,
room creation and upgrades, membership changes, state reads, the timeline, relations and
the directory."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from veche.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from veche.storage import events as ev_store
from veche.storage import rooms as store
from veche.storage.database import Txn
from veche.streams import RoomToken

if TYPE_CHECKING:
    from veche.core.room_versions import RoomVersion
    from veche.server import HomeServer

USER_ID_RE = re.compile(r"^@[^:\s]+:[^\s:/]+(:\d+)?$")
ALIAS_RE = re.compile(r"^#[^:\s]+:[^\s:/]+(:\d+)?$")
MAX_ID_LEN = 255


def check_user_id(user_id: Any, name: str = "user_id") -> str:
    if not isinstance(user_id, str):
        raise bad_json(f"{name} must be a string")
    if len(user_id) > MAX_ID_LEN or not USER_ID_RE.match(user_id):
        raise invalid_param(f"Invalid user ID: {user_id[:64]!r}")
    return user_id


def check_room_id(room_id: str) -> str:
    if not room_id.startswith("!") or len(room_id) > MAX_ID_LEN or len(room_id) < 2:
        raise invalid_param(f"Invalid room ID: {room_id[:64]!r}")
    return room_id


def check_alias(alias: Any) -> str:
    if not isinstance(alias, str):
        raise bad_json("alias must be a string")
    if len(alias) > MAX_ID_LEN or not ALIAS_RE.match(alias):
        raise invalid_param(f"Invalid room alias: {alias[:64]!r}")
    return alias


def str_field(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"{key} must be a string")
    return value


def dict_field(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise bad_json(f"{key} must be an object")
    return value


def reason_field(body: dict[str, Any]) -> str | None:
    return str_field(body, "reason")


def parse_room_token(raw: str | None) -> RoomToken | None:
    """A /messages, /context, /relations or /sync token as a point in a room's timeline."""
    return None if raw is None else RoomToken.parse(raw)


class RoomService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def room_version(self, room_id: str) -> RoomVersion:
        """The room's version, for the room endpoints: 404 for an unknown room, 403 for one a
        server admin deleted."""
        check_room_id(room_id)
        await self.hs.admin_rooms.check_not_purged(room_id)
        return await self.hs.events.room_version(room_id)

    async def membership(self, room_id: str, user_id: str) -> tuple[str, int] | None:
        row = await self.hs.db.run(store.get_membership_row, room_id, user_id)
        return (row[0], row[1]) if row else None

    async def require_joined(self, room_id: str, user_id: str) -> None:
        await self.room_version(room_id)
        m = await self.membership(room_id, user_id)
        if m is None or m[0] != "join":
            raise forbidden("You are not joined to this room")

    async def profile(self, user_id: str) -> dict[str, Any]:
        return await self.hs.db.run(store.get_profile, user_id) or {}

    async def power_state(self, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        return await self.hs.db.run(
            ev_store.get_current_state, room_id,
            [("m.room.create", ""), ("m.room.power_levels", "")],
        )

    async def user_level(self, room_id: str, user_id: str) -> tuple[int | float, dict[str, Any]]:
        from veche.core import auth as auth_rules

        rv = await self.room_version(room_id)
        state = await self.power_state(room_id)
        pl = state.get(("m.room.power_levels", ""), {}).get("content", {})
        return auth_rules.get_user_power_level(user_id, state, rv), pl

    async def can_send_state(self, room_id: str, user_id: str, event_type: str) -> bool:
        level, pl = await self.user_level(room_id, user_id)
        events = pl.get("events") if isinstance(pl.get("events"), dict) else {}
        needed = events.get(event_type, pl.get("state_default", 50 if pl else 0))
        try:
            return level >= int(needed)
        except (TypeError, ValueError):
            return False

    async def resolve_room(self, room_id_or_alias: str) -> str:
        if room_id_or_alias.startswith("#"):
            check_alias(room_id_or_alias)
            row = await self.hs.db.run(store.get_alias, room_id_or_alias)
            if row is None:
                raise not_found("Room alias not found")
            return row[0]
        if room_id_or_alias.startswith("!"):
            check_room_id(room_id_or_alias)
            return room_id_or_alias
        raise invalid_param("Expected a room ID or alias")

    async def require_accounts(self, user_ids: list[str]) -> None:
        """404 for a local user ID nobody has registered: an invite must not wait for a name."""
        local = [u for u in user_ids if u.split(":", 1)[1] == self.hs.server_name]

        def unknown(txn: Txn) -> list[str]:
            return [u for u in local if store.get_profile(txn, u) is None]

        missing = await self.hs.db.run(unknown) if local else []
        if missing:
            raise not_found(f"Unknown user {missing[0]}")

    async def event_sender(self, event_id: str) -> str | None:
        event = await self.hs.db.run(ev_store.get_event, event_id)
        sender = (event or {}).get("sender")
        return sender if isinstance(sender, str) else None

    # --- sending -------------------------------------------------------------------------
    async def send_message(
        self, user_id: str, device_id: str, room_id: str, event_type: str, txn_id: str,
        content: dict[str, Any],
    ) -> str:
        await self.room_version(room_id)
        self.hs.ratelimiter.check("message", user_id)
        event = await self.hs.events.send(
            room_id, user_id, event_type, content, txn_key=(device_id, txn_id)
        )
        self.hs.presence.user_active(user_id)
        return str(event["event_id"])

    async def send_state(
        self, user_id: str, room_id: str, event_type: str, state_key: str, content: dict[str, Any]
    ) -> str:
        await self.room_version(room_id)
        if event_type == "m.room.canonical_alias":
            await self._check_canonical_alias(room_id, content)
        if event_type == "m.room.member":
            check_user_id(state_key, "state_key")
        self.hs.ratelimiter.check("message", user_id)
        event = await self.hs.events.send(room_id, user_id, event_type, content, state_key)
        return str(event["event_id"])

    async def _check_canonical_alias(self, room_id: str, content: dict[str, Any]) -> None:
        aliases = []
        if "alias" in content and content["alias"] is not None:
            aliases.append(content["alias"])
        alt = content.get("alt_aliases", [])
        if not isinstance(alt, list):
            raise bad_json("alt_aliases must be a list")
        aliases += alt
        for alias in aliases:
            check_alias(alias)
            if alias.endswith(":" + self.hs.server_name):
                row = await self.hs.db.run(store.get_alias, alias)
                if row is None or row[0] != room_id:
                    raise MatrixError(400, "M_BAD_ALIAS", f"{alias} does not point to this room")

    async def redact(
        self, user_id: str, device_id: str, room_id: str, event_id: str, txn_id: str,
        body: dict[str, Any],
    ) -> str:
        reason = reason_field(body)
        await self.room_version(room_id)
        self.hs.ratelimiter.check("message", user_id)
        content: dict[str, Any] = {}
        if reason is not None:
            content["reason"] = reason
        event = await self.hs.events.send(
            room_id, user_id, "m.room.redaction", content, txn_key=(device_id, txn_id),
            redacts=event_id,
        )
        return str(event["event_id"])

