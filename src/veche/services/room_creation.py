"""Room creation and room upgrades (client-server API "Creation", "Room Upgrades")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.core.events import check_canonical_json, validate_content
from veche.errors import MatrixError, bad_json, forbidden, invalid_param
from veche.services.rooms import check_alias, check_user_id, dict_field, str_field
from veche.storage import event_graph
from veche.storage import events as ev_store
from veche.storage import rooms as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.core.room_versions import RoomVersion
    from veche.server import HomeServer

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



class RoomCreationService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def create_room(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        from veche.core.room_versions import KNOWN_ROOM_VERSIONS

        visibility = str_field(body, "visibility") or "private"
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be public or private")
        preset = str_field(body, "preset")
        if preset is None:
            preset = "public_chat" if visibility == "public" else "private_chat"
        if preset not in PRESETS:
            raise invalid_param(f"Unknown preset {preset[:40]!r}")
        name, topic = str_field(body, "name"), str_field(body, "topic")
        alias_name = str_field(body, "room_alias_name")
        version = str_field(body, "room_version") or self.hs.config.default_room_version
        if version not in KNOWN_ROOM_VERSIONS:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION", f"Unsupported room version {version[:20]!r}")
        rv = KNOWN_ROOM_VERSIONS[version]
        creation = dict(dict_field(body, "creation_content") or {})
        pl_override = dict_field(body, "power_level_content_override")
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

        for (etype, _), content in [*initial_state.items(),
                                    (("m.room.power_levels", ""), pl_override or {})]:
            try:  # refused before the room exists, rather than part-way through building it
                validate_content(etype, content)
                check_canonical_json(content, "content")
            except ValueError as e:
                raise MatrixError(400, "M_INVALID_ROOM_STATE", str(e)) from None
        remote_invites = {u for u in invites if u.split(":", 1)[1] != self.hs.server_name}
        if remote_invites and not self.hs.config.federation.enabled:
            raise forbidden(f"This server does not federate: {min(remote_invites)} is on another server")
        if invites:
            self.hs.ratelimiter.check("invite", user_id, len(invites))
            await self.hs.rooms.require_accounts(invites)
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
                       {"membership": "join", **await self.hs.rooms.profile(user_id)}, user_id)
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
            # The room exists but is not what was asked for: nobody may be left in it, and its
            # alias goes back to the pool.
            await self._abandon(room_id, user_id, alias)
            if e.errcode in ("M_FORBIDDEN", "M_BAD_JSON"):
                raise MatrixError(400, "M_INVALID_ROOM_STATE", e.error) from None
            raise
        # 8. invites
        for invitee in invites:
            content: dict[str, Any] = {"membership": "invite"}
            if is_direct:
                content["is_direct"] = True
            if invitee in remote_invites:
                # Their server countersigns it first (how Element starts a DM with them).
                # A failure reaches the client; the room stays, as with Synapse.
                await self.hs.remote_membership.invite(user_id, room_id, invitee, content)
                continue
            content.update(await self.hs.rooms.profile(invitee))
            await send(room_id, user_id, "m.room.member", content, invitee)
        if visibility == "public":
            await self.hs.db.run(store.set_public, room_id, True)
        out: dict[str, Any] = {"room_id": room_id}
        if alias is not None:
            out["room_alias"] = alias
        return out


    async def _abandon(self, room_id: str, user_id: str, alias: str | None) -> None:
        if alias is not None:
            entry = await self.hs.db.run(store.get_alias, alias)
            if entry is not None and entry[0] == room_id:
                await self.hs.db.run(store.delete_alias, alias)
        try:
            await self.hs.events.send(room_id, user_id, "m.room.member", {"membership": "leave"},
                                      user_id)
        except MatrixError:
            pass  # the creator never got to join

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
        await self.hs.rooms.require_joined(room_id, user_id)
        if not await self.hs.rooms.can_send_state(room_id, user_id, "m.room.tombstone"):
            raise forbidden("You may not upgrade this room")
        self.hs.ratelimiter.check("room_create", user_id)

        def load(txn: Txn) -> tuple[dict[tuple[str, str], dict[str, Any]], str | None, list[str]]:
            state = ev_store.get_current_state(txn, room_id)
            ext = event_graph.get_forward_extremities(txn, room_id)  # deepest first
            bans = [sk for (t, sk), ev in state.items() if t == "m.room.member"
                    and ev.get("content", {}).get("membership") == "ban"]
            return state, ext[0][0] if ext else None, bans

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
                   {"membership": "join", **await self.hs.rooms.profile(user_id)}, user_id)

        old_pl = dict(state.get(("m.room.power_levels", ""), {}).get("content", {}))
        pl = dict(old_pl)
        users = {k: v for k, v in (pl.get("users") or {}).items()
                 if not (infinite and k in creators)}
        restore = None
        old_rv = await self.hs.rooms.room_version(room_id)
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
