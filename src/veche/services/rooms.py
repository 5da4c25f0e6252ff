"""Rooms: creation, membership, state, timeline reads (/messages, /context), aliases,
the published room directory and room upgrades (client-server API "Rooms")."""

from __future__ import annotations

import bisect
import re
from typing import TYPE_CHECKING, Any

import orjson

from veche.core.filters import RoomEventFilter
from veche.core.numbers import parse_count
from veche.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from veche.services.events import client_event
from veche.services.relations import bundle_aggregations
from veche.storage import event_graph
from veche.storage import events as ev_store
from veche.storage import rooms as store
from veche.storage.database import Txn
from veche.streams import StreamToken

if TYPE_CHECKING:
    from veche.core.room_versions import RoomVersion
    from veche.server import HomeServer

USER_ID_RE = re.compile(r"^@[^:\s]+:[^\s:/]+(:\d+)?$")
ALIAS_RE = re.compile(r"^#[^:\s]+:[^\s:/]+(:\d+)?$")
MAX_ID_LEN = 255
# Invitees of one createRoom: enough for a team's room; more is a mass mailing.
MAX_CREATE_INVITES = 100

PRESETS: dict[str, dict[str, str]] = {
    "private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join"},
    "trusted_private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join"},
    "public_chat": {"join_rule": "public", "history_visibility": "shared", "guest_access": "forbidden"},
}
# State copied into the replacement room on upgrade (spec: "Room Upgrades", server behaviour).
UPGRADE_STATE = (
    "m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
    "m.room.guest_access", "m.room.history_visibility", "m.room.join_rules",
)
VISIBILITY_ORDER = {"joined": 0, "invited": 1, "shared": 2, "world_readable": 3}
MEMBERSHIPS = ("invite", "join", "knock", "leave", "ban")


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


def _str_field(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"{key} must be a string")
    return value


def _dict_field(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise bad_json(f"{key} must be an object")
    return value


def _reason(body: dict[str, Any]) -> str | None:
    return _str_field(body, "reason")


def default_power_levels(rv: RoomVersion, creator: str, preset: str) -> dict[str, Any]:
    infinite = bool(getattr(rv, "creators_have_infinite_power", False))
    return {
        "users": {} if infinite else {creator: 100},
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 150 if infinite else 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0 if preset in ("private_chat", "trusted_private_chat") else 50,
        "historical": 100,
        "notifications": {"room": 50},
    }


# --- history visibility ------------------------------------------------------------------

class Visibility:
    """Decides which events of one room a user may see (spec: "History visibility")."""

    def __init__(
        self, user_id: str, hv: list[tuple[int, str]], members: list[tuple[int, str]],
        current_membership: str | None,
    ) -> None:
        self.user_id = user_id
        self.hv = hv
        self.hv_pos = [p for p, _ in hv]
        self.members = members
        self.member_pos = [p for p, _ in members]
        self.joined_now = current_membership == "join"

    @staticmethod
    def _before(positions: list[int], values: list[tuple[int, str]], pos: int, default: str) -> str:
        i = bisect.bisect_left(positions, pos)
        return values[i - 1][1] if i else default

    def can_see(self, pos: int, event: dict[str, Any]) -> bool:
        vis = self._before(self.hv_pos, self.hv, pos, "shared")
        if event.get("type") == "m.room.history_visibility" and event.get("state_key") == "":
            new = (event.get("content") or {}).get("history_visibility", "shared")
            if VISIBILITY_ORDER.get(new, 2) > VISIBILITY_ORDER.get(vis, 2):
                vis = new
        membership = self._before(self.member_pos, self.members, pos, "leave")
        if event.get("type") == "m.room.member" and event.get("state_key") == self.user_id:
            membership = (event.get("content") or {}).get("membership", membership)
        if vis == "world_readable" or membership == "join":
            return True
        if vis == "shared" and self.joined_now:
            return True
        return vis == "invited" and membership == "invite"


def parse_token(raw: str | None) -> StreamToken | None:
    if raw is None:
        return None
    return StreamToken.parse(raw)


class RoomService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    # --- helpers ---------------------------------------------------------------------
    async def room_version(self, room_id: str) -> RoomVersion:
        check_room_id(room_id)
        return await self.hs.events.room_version(room_id)

    async def membership(self, room_id: str, user_id: str) -> tuple[str, int] | None:
        row = await self.hs.db.run(store.get_membership_row, room_id, user_id)
        return (row[0], row[1]) if row else None

    async def require_joined(self, room_id: str, user_id: str) -> None:
        await self.room_version(room_id)
        m = await self.membership(room_id, user_id)
        if m is None or m[0] != "join":
            raise forbidden("You are not joined to this room")

    async def _world_readable(self, room_id: str) -> bool:
        state = await self.hs.db.run(
            ev_store.get_current_state, room_id, [("m.room.history_visibility", "")]
        )
        ev = state.get(("m.room.history_visibility", ""))
        return bool(ev and ev.get("content", {}).get("history_visibility") == "world_readable")

    async def read_position(self, room_id: str, user_id: str) -> int | None:
        """The position up to which the user may read current/room state: None for "now"
        (joined or world-readable), else the position at which they left. 403 otherwise."""
        await self.room_version(room_id)
        m = await self.membership(room_id, user_id)
        if m is not None and m[0] == "join":
            return None
        if await self._world_readable(room_id):
            return None
        if m is not None and m[0] in ("leave", "ban"):
            return m[1]
        raise forbidden("You are not allowed to read this room")

    async def visibility(self, room_id: str, user_id: str) -> Visibility:
        def load(txn: Txn) -> Visibility:
            hv, members = store.visibility_history(txn, room_id, user_id)
            current = store.get_membership_row(txn, room_id, user_id)
            return Visibility(user_id, hv, members, current[0] if current else None)

        return await self.hs.db.run(load)

    async def check_can_peek(self, room_id: str, user_id: str) -> Visibility:
        """403 unless the user has been in the room or it is world-readable."""
        await self.room_version(room_id)
        vis = await self.visibility(room_id, user_id)
        if not vis.members and not await self._world_readable(room_id):
            raise forbidden("You are not allowed to read this room")
        return vis

    async def profile(self, user_id: str) -> dict[str, Any]:
        return await self.hs.db.run(store.get_profile, user_id) or {}

    async def _power_state(self, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
        return await self.hs.db.run(
            ev_store.get_current_state, room_id,
            [("m.room.create", ""), ("m.room.power_levels", "")],
        )

    async def user_level(self, room_id: str, user_id: str) -> tuple[int | float, dict[str, Any]]:
        from veche.core import auth as auth_rules

        rv = await self.room_version(room_id)
        state = await self._power_state(room_id)
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

    # --- room creation ---------------------------------------------------------------
    async def create_room(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        from veche.core.room_versions import KNOWN_ROOM_VERSIONS

        visibility = _str_field(body, "visibility") or "private"
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be public or private")
        preset = _str_field(body, "preset")
        if preset is None:
            preset = "public_chat" if visibility == "public" else "private_chat"
        if preset not in PRESETS:
            raise invalid_param(f"Unknown preset {preset[:40]!r}")
        name, topic = _str_field(body, "name"), _str_field(body, "topic")
        alias_name = _str_field(body, "room_alias_name")
        version = _str_field(body, "room_version") or self.hs.config.default_room_version
        if version not in KNOWN_ROOM_VERSIONS:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {version[:20]!r}")
        rv = KNOWN_ROOM_VERSIONS[version]
        creation = dict(_dict_field(body, "creation_content") or {})
        pl_override = _dict_field(body, "power_level_content_override")
        is_direct = body.get("is_direct", False)
        if not isinstance(is_direct, bool):
            raise bad_json("is_direct must be a boolean")
        invites = body.get("invite") or []
        if not isinstance(invites, list):
            raise bad_json("invite must be a list of user IDs")
        invites = list(dict.fromkeys(check_user_id(u, "invite") for u in invites))
        if len(invites) > MAX_CREATE_INVITES:
            raise invalid_param(f"At most {MAX_CREATE_INVITES} users can be invited at creation")
        invite_3pid = body.get("invite_3pid") or []
        if not isinstance(invite_3pid, list):
            raise bad_json("invite_3pid must be a list")
        if invite_3pid:
            raise invalid_param("Third-party invites are not supported by this server")
        initial = body.get("initial_state") or []
        if not isinstance(initial, list):
            raise bad_json("initial_state must be a list")
        initial_state: dict[tuple[str, str], dict[str, Any]] = {}
        for item in initial:
            if not isinstance(item, dict):
                raise bad_json("initial_state entries must be objects")
            etype, skey, content = item.get("type"), item.get("state_key", ""), item.get("content", {})
            if not isinstance(etype, str) or not isinstance(skey, str) or not isinstance(content, dict):
                raise bad_json("initial_state entries need a string type and state_key and an object content")
            if etype == "m.room.create":
                continue
            initial_state[(etype, skey)] = content
        if name is not None:
            initial_state.pop(("m.room.name", ""), None)
        if topic is not None:
            initial_state.pop(("m.room.topic", ""), None)

        alias = None
        if alias_name is not None:
            if not alias_name or any(c in alias_name for c in ":# \t\n"):
                raise invalid_param("Invalid room_alias_name")
            alias = f"#{alias_name}:{self.hs.server_name}"
            check_alias(alias)
            if await self.hs.db.run(store.get_alias, alias) is not None:
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")

        if invites:
            self.hs.ratelimiter.check("invite", user_id, len(invites))
            await self._require_accounts(invites)
        self.hs.ratelimiter.check("room_create", user_id)

        # 1. m.room.create
        creation.pop("creator", None)
        creation["room_version"] = rv.identifier
        infinite = bool(getattr(rv, "creators_have_infinite_power", False))
        if not getattr(rv, "room_id_is_create_event_hash", False) and rv.identifier in (
            "1", "2", "3", "4", "5", "6", "7", "8", "9", "10",
        ):
            creation["creator"] = user_id
        if infinite:
            extra = creation.get("additional_creators") or []
            if not isinstance(extra, list):
                raise bad_json("creation_content.additional_creators must be a list")
            extra = [check_user_id(u, "additional_creators") for u in extra]
            if preset == "trusted_private_chat":
                extra += invites
            extra = [u for u in dict.fromkeys(extra) if u != user_id]
            if extra:
                creation["additional_creators"] = extra
            else:
                creation.pop("additional_creators", None)
        create_event = await self.hs.events.create_room(user_id, rv, creation)
        room_id = create_event["room_id"]
        send = self.hs.events.send

        try:
            # 2. the creator joins
            await send(room_id, user_id, "m.room.member",
                       {"membership": "join", **await self.profile(user_id)}, user_id)
            # 3. power levels
            pl = initial_state.pop(("m.room.power_levels", ""), None)
            if pl is None:
                pl = default_power_levels(rv, user_id, preset)
                if preset == "trusted_private_chat" and not infinite:
                    for invitee in invites:
                        pl["users"][invitee] = 100
            if pl_override:
                pl = {**pl, **pl_override}
            await send(room_id, user_id, "m.room.power_levels", pl, "")
            # 4. canonical alias
            if alias is not None:
                if not await self.hs.db.run(store.create_alias, alias, room_id, user_id):
                    raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
                await send(room_id, user_id, "m.room.canonical_alias", {"alias": alias}, "")
            # 5. preset
            p = PRESETS[preset]
            for etype, content in (
                ("m.room.join_rules", {"join_rule": p["join_rule"]}),
                ("m.room.history_visibility", {"history_visibility": p["history_visibility"]}),
                ("m.room.guest_access", {"guest_access": p["guest_access"]}),
            ):
                if (etype, "") not in initial_state:
                    await send(room_id, user_id, etype, content, "")
            # 6. initial_state
            for (etype, skey), content in initial_state.items():
                await send(room_id, user_id, etype, content, skey)
            # 7. name and topic
            if name is not None:
                await send(room_id, user_id, "m.room.name", {"name": name}, "")
            if topic is not None:
                await send(room_id, user_id, "m.room.topic", {
                    "topic": topic,
                    "m.topic": {"m.text": [{"body": topic, "mimetype": "text/plain"}]},
                }, "")
        except MatrixError as e:
            if e.errcode in ("M_FORBIDDEN", "M_BAD_JSON"):
                raise MatrixError(400, "M_INVALID_ROOM_STATE", e.error) from None
            raise
        # 8. invites
        for invitee in invites:
            content: dict[str, Any] = {"membership": "invite", **await self.profile(invitee)}
            if is_direct:
                content["is_direct"] = True
            await send(room_id, user_id, "m.room.member", content, invitee)
        if visibility == "public":
            await self.hs.db.run(store.set_public, room_id, True)
        out: dict[str, Any] = {"room_id": room_id}
        if alias is not None:
            out["room_alias"] = alias
        return out

    async def _require_accounts(self, user_ids: list[str]) -> None:
        """404 for a local user ID nobody has registered: an invite must not wait for a name."""
        local = [u for u in user_ids if u.split(":", 1)[1] == self.hs.server_name]

        def unknown(txn: Txn) -> list[str]:
            return [u for u in local if store.get_profile(txn, u) is None]

        missing = await self.hs.db.run(unknown) if local else []
        if missing:
            raise not_found(f"Unknown user {missing[0]}")

    # --- membership ------------------------------------------------------------------
    async def _restricted_join_content(
        self, room_id: str, user_id: str, join_rules: dict[str, Any]
    ) -> dict[str, Any]:
        """join_authorised_via_users_server for a restricted room, or 403."""
        from veche.core import auth as auth_rules

        allow = join_rules.get("allow")
        allowed_rooms = [
            a.get("room_id") for a in (allow if isinstance(allow, list) else [])
            if isinstance(a, dict) and a.get("type") == "m.room_membership"
            and isinstance(a.get("room_id"), str)
        ]
        mine = set(await self.hs.db.run(ev_store.get_rooms_for_user, user_id))
        if not any(r in mine for r in allowed_rooms):
            raise forbidden("You are not allowed to join this room")
        rv = await self.room_version(room_id)
        state = await self._power_state(room_id)
        pl = state.get(("m.room.power_levels", ""), {}).get("content", {})
        invite_level = auth_rules.get_named_level(pl, "invite", 0)
        for member in await self.hs.db.run(ev_store.get_room_members, room_id):
            if not member.endswith(":" + self.hs.server_name):
                continue
            if auth_rules.get_user_power_level(member, state, rv) >= invite_level:
                return {"join_authorised_via_users_server": member}
        raise forbidden("No user in the room can authorise your join")

    async def join(self, user_id: str, room_id_or_alias: str, body: dict[str, Any]) -> str:
        reason = _reason(body)
        room_id = await self.resolve_room(room_id_or_alias)
        await self.room_version(room_id)
        self.hs.ratelimiter.check("join", user_id)
        content: dict[str, Any] = {"membership": "join", **await self.profile(user_id)}
        if reason is not None:
            content["reason"] = reason
        current = await self.membership(room_id, user_id)
        if current is None or current[0] not in ("join", "invite"):
            state = await self.hs.db.run(
                ev_store.get_current_state, room_id, [("m.room.join_rules", "")]
            )
            jr = state.get(("m.room.join_rules", ""), {}).get("content", {})
            if jr.get("join_rule") in ("restricted", "knock_restricted"):
                content.update(await self._restricted_join_content(room_id, user_id, jr))
        await self.hs.events.send(room_id, user_id, "m.room.member", content, user_id)
        return room_id

    async def knock(self, user_id: str, room_id_or_alias: str, body: dict[str, Any]) -> str:
        reason = _reason(body)
        room_id = await self.resolve_room(room_id_or_alias)
        await self.room_version(room_id)
        self.hs.ratelimiter.check("join", user_id)
        current = await self.membership(room_id, user_id)
        if current is not None and current[0] in ("join", "invite", "ban"):
            raise forbidden(f"You cannot knock while your membership is {current[0]}")
        content: dict[str, Any] = {"membership": "knock", **await self.profile(user_id)}
        if reason is not None:
            content["reason"] = reason
        await self.hs.events.send(room_id, user_id, "m.room.member", content, user_id)
        return room_id

    async def set_membership(
        self, sender: str, room_id: str, target: str, membership: str, body: dict[str, Any],
        *, unban: bool = False,
    ) -> None:
        """invite, leave, kick (leave of another user), ban and unban."""
        reason = _reason(body)
        await self.room_version(room_id)
        current = await self.membership(room_id, target)
        current_m = current[0] if current else None
        content: dict[str, Any] = {"membership": membership}
        if membership == "invite":
            self.hs.ratelimiter.check("invite", sender)
            await self._require_accounts([target])
            if current_m in ("join", "ban"):
                raise forbidden(f"{target} is {'already in' if current_m == 'join' else 'banned from'} the room")
            content.update(await self.profile(target))
        elif membership == "leave" and target != sender:
            if unban:
                if current_m != "ban":
                    raise forbidden(f"{target} is not banned")
            elif current_m not in ("join", "invite", "knock"):
                raise forbidden(f"{target} is not in the room")
        elif membership == "leave" and current_m is None:
            raise forbidden("You are not in this room")
        if reason is not None:
            content["reason"] = reason
        await self.hs.events.send(room_id, sender, "m.room.member", content, target)

    async def forget(self, user_id: str, room_id: str) -> None:
        await self.room_version(room_id)
        current = await self.membership(room_id, user_id)
        if current is None:
            raise not_found("You have never been in this room")
        if current[0] not in ("leave", "ban"):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        await self.hs.db.run(store.forget_room, room_id, user_id)

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
        reason = _reason(body)
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

    # --- state reads ---------------------------------------------------------------------
    async def state_ids(self, room_id: str, user_id: str) -> dict[tuple[str, str], str]:
        pos = await self.read_position(room_id, user_id)
        if pos is None:
            return await self.hs.db.run(ev_store.get_current_state_ids, room_id, None)
        return await self.hs.db.run(store.state_ids_at, room_id, pos, None)

    async def get_state(self, room_id: str, user_id: str) -> list[dict[str, Any]]:
        ids = await self.state_ids(room_id, user_id)
        events = await self.hs.db.run(ev_store.get_events, list(ids.values()))
        return [client_event(events[eid]) for eid in ids.values() if eid in events]

    async def get_state_event(
        self, room_id: str, user_id: str, event_type: str, state_key: str
    ) -> dict[str, Any]:
        ids = await self.state_ids(room_id, user_id)
        eid = ids.get((event_type, state_key))
        event = await self.hs.db.run(ev_store.get_event, eid) if eid else None
        if event is None:
            raise not_found("Event not found")
        return client_event(event)

    async def joined_members(self, room_id: str, user_id: str) -> dict[str, Any]:
        await self.require_joined(room_id, user_id)

        def load(txn: Txn) -> dict[str, Any]:
            rows = txn.fetchall(
                "SELECT m.user_id, e.json FROM room_memberships m JOIN events e"
                " ON e.event_id = m.event_id WHERE m.room_id = ? AND m.membership = 'join'",
                (room_id,),
            )
            out: dict[str, Any] = {}
            for uid, js in rows:
                content = orjson.loads(js).get("content") or {}
                entry = {}
                for key, out_key in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
                    if isinstance(content.get(key), str):
                        entry[out_key] = content[key]
                out[uid] = entry
            return out

        return await self.hs.db.run(load)

    async def members(
        self, room_id: str, user_id: str, at: str | None, membership: str | None,
        not_membership: str | None,
    ) -> list[dict[str, Any]]:
        for value in (membership, not_membership):
            if value is not None and value not in MEMBERSHIPS:
                raise invalid_param("Unknown membership")
        pos = await self.read_position(room_id, user_id)
        if at is not None:
            tok = StreamToken.parse(at).stream
            pos = tok if pos is None else min(pos, tok)

        def load(txn: Txn) -> list[dict[str, Any]]:
            if pos is None:
                ids = [eid for (t, _), eid in ev_store.get_current_state_ids(txn, room_id).items()
                       if t == "m.room.member"]
            else:
                ids = list(store.state_ids_at(txn, room_id, pos, ["m.room.member"]).values())
            return list(ev_store.get_events(txn, ids).values())

        out = []
        for ev in await self.hs.db.run(load):
            m = (ev.get("content") or {}).get("membership")
            if membership is not None and m != membership:
                continue
            if not_membership is not None and m == not_membership:
                continue
            out.append(client_event(ev))
        return out

    async def joined_rooms(self, user_id: str) -> list[str]:
        return await self.hs.db.run(store.joined_rooms, user_id)

    # --- timeline reads ------------------------------------------------------------------
    async def walk_timeline(
        self, room_id: str, vis: Visibility, flt: RoomEventFilter, from_pos: int,
        to_pos: int | None, direction: str, limit: int,
    ) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
        """Up to `limit` visible, matching events; and the next position (None: no more)."""
        found: list[tuple[int, dict[str, Any]]] = []
        pos = from_pos
        batch = max(limit + 1, 50)
        for _ in range(20):
            rows = await self.hs.db.run(store.paginate, room_id, pos, to_pos, direction, batch)
            for so, ev in rows:
                pos = so - 1 if direction == "b" else so
                if vis.can_see(so, ev) and flt.matches(ev):
                    found.append((so, ev))
                    if len(found) >= limit:
                        more = await self.hs.db.run(
                            store.paginate, room_id, pos, to_pos, direction, 1
                        )
                        return found, (pos if more else None)
            if len(rows) < batch:
                return found, None
        return found, pos

    async def events_around(
        self, room_id: str, vis: Visibility, flt: RoomEventFilter, pos: int, n_before: int,
        n_after: int,
    ) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, dict[str, Any]]], str, str]:
        """Visible events before (newest first) and after the one at `pos`, with the
        pagination tokens around them (for /context and /search's event_context)."""
        before, _ = (await self.walk_timeline(room_id, vis, flt, pos - 1, None, "b", n_before)
                     if n_before else ([], None))
        after, _ = (await self.walk_timeline(room_id, vis, flt, pos, None, "f", n_after)
                    if n_after else ([], None))
        start = StreamToken(max((before[-1][0] - 1) if before else pos - 1, 0))
        end = StreamToken(after[-1][0] if after else pos)
        return before, after, str(start), str(end)

    async def messages(
        self, room_id: str, user_id: str, from_tok: str | None, to_tok: str | None,
        direction: str, limit: int, flt: RoomEventFilter,
    ) -> dict[str, Any]:
        if direction not in ("b", "f"):
            raise invalid_param("dir must be b or f")
        start = parse_token(from_tok)
        to = parse_token(to_tok)
        vis = await self.check_can_peek(room_id, user_id)
        if flt.limit:
            limit = min(limit, flt.limit)
        if start is None:
            start = StreamToken(self.hs.stream.current if direction == "b" else 0)
        found, next_pos = await self.walk_timeline(
            room_id, vis, flt, start.stream, to.stream if to else None, direction, limit
        )
        chunk = [client_event(ev) for _, ev in found]
        await bundle_aggregations(self.hs, chunk, user_id, {room_id: vis})
        out: dict[str, Any] = {"chunk": chunk, "start": str(start)}
        if next_pos is not None:
            out["end"] = str(StreamToken(max(next_pos, 0), start.typing))
        if flt.lazy_load_members and found:
            out["state"] = await self._lazy_members(room_id, found)
        else:
            out["state"] = []
        return out

    async def _lazy_members(
        self, room_id: str, found: list[tuple[int, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        senders = sorted({ev["sender"] for _, ev in found})
        pos = max(so for so, _ in found)

        def load(txn: Txn) -> list[dict[str, Any]]:
            ids = store.member_event_ids_at(txn, room_id, pos, senders)
            return list(ev_store.get_events(txn, ids).values())

        return [client_event(ev) for ev in await self.hs.db.run(load)]

    async def get_event(self, room_id: str, user_id: str, event_id: str) -> dict[str, Any]:
        await self.room_version(room_id)
        row = await self.hs.db.run(store.get_event_row, event_id)
        if row is None or row[0] != room_id:
            raise not_found("Event not found")
        vis = await self.visibility(room_id, user_id)
        if not vis.can_see(row[1], row[2]):
            raise not_found("Event not found")
        ev = client_event(row[2])
        await bundle_aggregations(self.hs, [ev], user_id, {room_id: vis})
        return ev

    async def context(
        self, room_id: str, user_id: str, event_id: str, limit: int, flt: RoomEventFilter
    ) -> dict[str, Any]:
        await self.room_version(room_id)
        row = await self.hs.db.run(store.get_event_row, event_id)
        if row is None or row[0] != room_id:
            raise not_found("Event not found")
        vis = await self.visibility(room_id, user_id)
        _, pos, event = row
        if not vis.can_see(pos, event):
            raise not_found("Event not found")
        if flt.limit:
            limit = min(limit, flt.limit)
        n_before = limit // 2
        before, after, start, end = await self.events_around(
            room_id, vis, flt, pos, n_before, limit - n_before)
        main = client_event(event)
        before_c = [client_event(ev) for _, ev in before]
        after_c = [client_event(ev) for _, ev in after]
        await bundle_aggregations(self.hs, [main, *before_c, *after_c], user_id, {room_id: vis})
        state_pos = after[-1][0] if after else pos

        def load_state(txn: Txn) -> list[dict[str, Any]]:
            if flt.lazy_load_members:
                ids = list(store.state_ids_at(txn, room_id, state_pos, None).items())
                senders = {ev["sender"] for _, ev in [*before, (pos, event), *after]}
                keep = [eid for (t, sk), eid in ids if t != "m.room.member" or sk in senders]
            else:
                keep = list(store.state_ids_at(txn, room_id, state_pos, None).values())
            return list(ev_store.get_events(txn, keep).values())

        state = [client_event(ev) for ev in await self.hs.db.run(load_state)]
        return {
            "start": start,
            "end": end,
            "event": main,
            "events_before": before_c,
            "events_after": after_c,
            "state": state,
        }

    async def timestamp_to_event(
        self, room_id: str, user_id: str, ts: int, direction: str
    ) -> dict[str, Any]:
        if direction not in ("b", "f"):
            raise invalid_param("dir must be b or f")
        vis = await self.check_can_peek(room_id, user_id)

        def find(txn: Txn) -> tuple[str, int] | None:
            step_ts = ts
            for _ in range(50):
                hit = store.event_by_timestamp(txn, room_id, step_ts, direction)
                if hit is None:
                    return None
                row = store.get_event_row(txn, hit[0])
                if row is not None and vis.can_see(row[1], row[2]):
                    return hit
                step_ts = hit[1] + 1 if direction == "f" else hit[1] - 1
            return None

        hit = await self.hs.db.run(find)
        if hit is None:
            raise not_found("No event found")
        return {"event_id": hit[0], "origin_server_ts": hit[1]}

    # --- relations ---------------------------------------------------------------------
    async def relations(
        self, room_id: str, user_id: str, event_id: str, rel_type: str | None,
        event_type: str | None, from_tok: str | None, to_tok: str | None, direction: str,
        limit: int, recurse: bool,
    ) -> dict[str, Any]:
        if direction not in ("b", "f"):
            raise invalid_param("dir must be b or f")
        start, to = parse_token(from_tok), parse_token(to_tok)
        await self.room_version(room_id)
        row = await self.hs.db.run(store.get_event_row, event_id)
        vis = await self.visibility(room_id, user_id)
        if row is None or row[0] != room_id or not vis.can_see(row[1], row[2]):
            raise not_found("Event not found")

        def collect(txn: Txn) -> list[tuple[int, dict[str, Any]]]:
            ids: list[str] = []
            frontier = [event_id]
            seen = {event_id}
            for _depth in range(3 if recurse else 1):
                rows = store.relation_rows(txn, frontier, [rel_type] if rel_type else None)
                frontier = []
                for _parent, _rel, eid, _s, _ts, _pos, _t in rows:
                    if eid not in seen:
                        seen.add(eid)
                        frontier.append(eid)
                        ids.append(eid)
                if not frontier:
                    break
            return sorted(store.get_event_rows(txn, ids).values(), key=lambda r: r[0])

        rows = await self.hs.db.run(collect)
        rows = [(so, ev) for so, ev in rows if ev.get("room_id") == room_id
                and (event_type is None or ev.get("type") == event_type) and vis.can_see(so, ev)]
        if direction == "b":
            rows.reverse()
            if start is not None:
                rows = [r for r in rows if r[0] <= start.stream]
            if to is not None:
                rows = [r for r in rows if r[0] > to.stream]
        else:
            if start is not None:
                rows = [r for r in rows if r[0] > start.stream]
            if to is not None:
                rows = [r for r in rows if r[0] <= to.stream]
        page = rows[:limit]
        chunk = [client_event(ev) for _, ev in page]
        await bundle_aggregations(self.hs, chunk, user_id, {room_id: vis})
        out: dict[str, Any] = {"chunk": chunk}
        if len(rows) > limit:
            last = page[-1][0]
            out["next_batch"] = str(StreamToken(last - 1 if direction == "b" else last))
        if start is not None:
            out["prev_batch"] = str(start)
        if recurse:
            out["recursion_depth"] = 3
        return out

    async def threads(
        self, room_id: str, user_id: str, include: str, limit: int, from_tok: str | None
    ) -> dict[str, Any]:
        if include not in ("all", "participated"):
            raise invalid_param("include must be all or participated")
        before: int | None = None
        if from_tok is not None:
            before = parse_count(from_tok[1:]) if from_tok.startswith("t") else None
            if before is None:
                raise invalid_param("Invalid from token")
        vis = await self.check_can_peek(room_id, user_id)
        roots = await self.hs.db.run(store.thread_roots, room_id, vis.can_see)
        rows = await self.hs.db.run(store.get_event_rows, [r for r, _, _ in roots])
        chunk: list[dict[str, Any]] = []
        next_batch = None
        prev_latest = 0
        for root, latest, senders in roots:
            if before is not None and latest >= before:
                continue
            row = rows.get(root)
            if row is None or row[1].get("room_id") != room_id or not vis.can_see(*row):
                continue
            if include == "participated" and user_id not in senders and row[1].get("sender") != user_id:
                continue
            if len(chunk) >= limit:
                next_batch = f"t{prev_latest}"
                break
            chunk.append(client_event(row[1]))
            prev_latest = latest
        await bundle_aggregations(self.hs, chunk, user_id, {room_id: vis})
        out: dict[str, Any] = {"chunk": chunk}
        if next_batch is not None:
            out["next_batch"] = next_batch
        return out

    # --- aliases and directory -----------------------------------------------------------
    async def resolve_alias(self, alias: str) -> dict[str, Any]:
        check_alias(alias)
        row = await self.hs.db.run(store.get_alias, alias)
        if row is None:
            raise not_found("Room alias not found")
        return {"room_id": row[0], "servers": [self.hs.server_name]}

    async def create_alias(self, user_id: str, alias: str, room_id: Any) -> None:
        check_alias(alias)
        if not isinstance(room_id, str):
            raise bad_json("room_id must be a string")
        check_room_id(room_id)
        if not alias.endswith(":" + self.hs.server_name):
            raise invalid_param("Room alias must belong to this server")
        exists = await self.hs.db.run(store.room_exists, room_id)
        if not exists:
            raise not_found("Room not found")
        await self.require_joined(room_id, user_id)
        if not await self.hs.db.run(store.create_alias, alias, room_id, user_id):
            raise MatrixError(409, "M_UNKNOWN", "Room alias already exists")

    async def delete_alias(self, user_id: str, alias: str, is_admin: bool = False) -> None:
        check_alias(alias)
        row = await self.hs.db.run(store.get_alias, alias)
        if row is None:
            raise not_found("Room alias not found")
        room_id, creator = row
        if creator != user_id and not is_admin:
            m = await self.membership(room_id, user_id)
            if m is None or m[0] != "join" or not await self.can_send_state(
                room_id, user_id, "m.room.canonical_alias"
            ):
                raise forbidden("You may not delete this alias")
        await self.hs.db.run(store.delete_alias, alias)
        await self._drop_from_canonical_alias(room_id, user_id, alias)

    async def _drop_from_canonical_alias(self, room_id: str, user_id: str, alias: str) -> None:
        state = await self.hs.db.run(
            ev_store.get_current_state, room_id, [("m.room.canonical_alias", "")]
        )
        ev = state.get(("m.room.canonical_alias", ""))
        if ev is None:
            return
        content = dict(ev.get("content") or {})
        alt = content.get("alt_aliases")
        changed = False
        if content.get("alias") == alias:
            content.pop("alias")
            changed = True
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if changed:
            try:
                await self.hs.events.send(room_id, user_id, "m.room.canonical_alias", content, "")
            except MatrixError:
                pass

    async def room_aliases(self, room_id: str, user_id: str) -> list[str]:
        await self.room_version(room_id)
        m = await self.membership(room_id, user_id)
        if (m is None or m[0] != "join") and not await self._world_readable(room_id):
            raise forbidden("You are not in this room")
        return await self.hs.db.run(store.aliases_for_room, room_id)

    async def get_visibility(self, room_id: str) -> str:
        check_room_id(room_id)
        public = await self.hs.db.run(store.is_public, room_id)
        if public is None:
            raise not_found("Room not found")
        return "public" if public else "private"

    async def set_visibility(self, user_id: str, room_id: str, visibility: Any) -> None:
        if not isinstance(visibility, str):
            raise bad_json("visibility must be a string")
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be public or private")
        await self.get_visibility(room_id)
        await self.require_joined(room_id, user_id)
        if not await self.can_send_state(room_id, user_id, "m.room.canonical_alias"):
            raise forbidden("You may not change this room's directory visibility")
        await self.hs.db.run(store.set_public, room_id, visibility == "public")

    async def public_rooms(
        self, limit: int | None, since: str | None, search: str | None,
        room_types: list[Any] | None = None,
    ) -> dict[str, Any]:
        entries = await self.hs.db.run_read(store.public_room_entries)
        total = len(entries)
        if search:
            needle = search.casefold()
            entries = [e for e in entries if any(
                needle in str(e.get(k, "")).casefold()
                for k in ("name", "topic", "canonical_alias", "room_id")
            )]
        if room_types is not None:
            entries = [e for e in entries if e.get("room_type") in room_types]
        offset = 0
        if since is not None:
            parsed = parse_count(since[1:]) if since.startswith("o") else None
            if parsed is None:
                raise invalid_param("Invalid since token")
            offset = parsed
        end = len(entries) if limit is None else offset + limit
        out: dict[str, Any] = {"chunk": entries[offset:end], "total_room_count_estimate": total}
        if end < len(entries):
            out["next_batch"] = f"o{end}"
        if offset > 0:
            out["prev_batch"] = f"o{max(0, offset - (limit or offset))}"
        return out

    # --- upgrades ------------------------------------------------------------------------
    async def upgrade(self, user_id: str, room_id: str, body: dict[str, Any]) -> str:
        from veche.core.room_versions import KNOWN_ROOM_VERSIONS

        new_version = body.get("new_version")
        if new_version is None:
            raise MatrixError(400, "M_MISSING_PARAM", "Missing new_version")
        if not isinstance(new_version, str):
            raise bad_json("new_version must be a string")
        if new_version not in KNOWN_ROOM_VERSIONS:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", "Unsupported room version")
        additional = body.get("additional_creators") or []
        if not isinstance(additional, list):
            raise bad_json("additional_creators must be a list")
        additional = [check_user_id(u, "additional_creators") for u in additional]
        new_rv = KNOWN_ROOM_VERSIONS[new_version]
        await self.require_joined(room_id, user_id)
        if not await self.can_send_state(room_id, user_id, "m.room.tombstone"):
            raise forbidden("You may not upgrade this room")
        self.hs.ratelimiter.check("room_create", user_id)

        def load(txn: Txn) -> tuple[dict[tuple[str, str], dict[str, Any]], str | None, list[str]]:
            state = ev_store.get_current_state(txn, room_id)
            ext = event_graph.get_forward_extremities(txn, room_id)  # deepest first
            bans = [sk for (t, sk), ev in state.items() if t == "m.room.member"
                    and ev.get("content", {}).get("membership") == "ban"]
            return state, ext[0] if ext else None, bans

        state, last_event, bans = await self.hs.db.run(load)
        old_create = state.get(("m.room.create", ""), {}).get("content", {})
        infinite = bool(getattr(new_rv, "creators_have_infinite_power", False))
        creation: dict[str, Any] = {"room_version": new_version}
        predecessor: dict[str, Any] = {"room_id": room_id}
        if last_event is not None and not getattr(new_rv, "room_id_is_create_event_hash", False):
            predecessor["event_id"] = last_event
        creation["predecessor"] = predecessor
        for key in ("type", "m.federate"):
            if key in old_create:
                creation[key] = old_create[key]
        if new_version in ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10"):
            creation["creator"] = user_id
        creators = {user_id}
        if infinite:
            extra = [u for u in dict.fromkeys(additional) if u != user_id]
            if extra:
                creation["additional_creators"] = extra
            creators.update(extra)
        create_event = await self.hs.events.create_room(user_id, new_rv, creation)
        new_room = create_event["room_id"]
        send = self.hs.events.send
        await send(new_room, user_id, "m.room.member",
                   {"membership": "join", **await self.profile(user_id)}, user_id)

        old_pl = dict(state.get(("m.room.power_levels", ""), {}).get("content", {}))
        pl = dict(old_pl)
        users = {k: v for k, v in (pl.get("users") or {}).items()
                 if not (infinite and k in creators)}
        restore = None
        old_rv = await self.room_version(room_id)
        if not infinite and getattr(old_rv, "creators_have_infinite_power", False):
            users[user_id] = max(100, users.get(user_id, 0))
        elif not infinite:
            needed = max([100, *[v for v in (pl.get("events") or {}).values() if isinstance(v, int)],
                          *[v for k, v in pl.items() if isinstance(v, int)]])
            if users.get(user_id, pl.get("users_default", 0)) < needed:
                restore = {**pl, "users": dict(users)}
                users[user_id] = needed
        pl["users"] = users
        if infinite:
            events = dict(pl.get("events") or {})
            sd = pl.get("state_default", 50)
            if isinstance(sd, int) and events.get("m.room.tombstone", sd) <= sd:
                events["m.room.tombstone"] = max(150, sd + 1)
            pl["events"] = events
        await send(new_room, user_id, "m.room.power_levels", pl, "")
        for etype in UPGRADE_STATE:
            ev = state.get((etype, ""))
            if ev is not None and ev.get("content"):
                await send(new_room, user_id, etype, ev["content"], "")
        for banned in bans:
            try:
                await send(new_room, user_id, "m.room.member", {"membership": "ban"}, banned)
            except MatrixError:
                pass
        if restore is not None:
            await send(new_room, user_id, "m.room.power_levels", restore, "")
        # Aliases move to the new room; the canonical alias goes with them.
        await self.hs.db.run(store.move_aliases, room_id, new_room)
        canonical = state.get(("m.room.canonical_alias", ""), {}).get("content")
        if canonical:
            try:
                await send(new_room, user_id, "m.room.canonical_alias", canonical, "")
                await send(room_id, user_id, "m.room.canonical_alias", {}, "")
            except MatrixError:
                pass
        if await self.hs.db.run(store.is_public, room_id):
            await self.hs.db.run(store.set_public, new_room, True)
            await self.hs.db.run(store.set_public, room_id, False)
        await send(room_id, user_id, "m.room.tombstone", {
            "body": "This room has been replaced", "replacement_room": new_room,
        }, "")
        # Restrict the old room: nobody below moderator may speak or invite.
        try:
            users_default = old_pl.get("users_default", 0)
            level = max(50, (users_default if isinstance(users_default, int) else 0) + 1)
            restricted = {**old_pl, "events_default": level, "invite": level}
            await send(room_id, user_id, "m.room.power_levels", restricted, "")
        except MatrixError:
            pass
        return str(new_room)
