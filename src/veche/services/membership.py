"""Room membership: join, knock, invite, leave, kick, ban, unban and forget, and the
authorising user of a join to a restricted room (client-server API "Room membership")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from veche.errors import MatrixError, forbidden, not_found
from veche.services.rooms import check_alias, check_room_id, reason_field
from veche.storage import events as ev_store
from veche.storage import rooms as store

if TYPE_CHECKING:
    from veche.server import HomeServer


class MembershipService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def _restricted_join_content(
        self, room_id: str, user_id: str, join_rules: dict[str, Any]
    ) -> dict[str, Any] | None:
        """join_authorised_via_users_server for a restricted room; None when the user may
        join but no user of this server may vouch for it; 403 when the user may not."""
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
        rv = await self.hs.rooms.room_version(room_id)
        state = await self.hs.rooms.power_state(room_id)
        pl = state.get(("m.room.power_levels", ""), {}).get("content", {})
        invite_level = auth_rules.get_named_level(pl, "invite", 0)
        for member in await self.hs.db.run(ev_store.get_room_members, room_id):
            if not member.endswith(":" + self.hs.server_name):
                continue
            if auth_rules.get_user_power_level(member, state, rv) >= invite_level:
                return {"join_authorised_via_users_server": member}
        return None

    def _remote(self, some_id: str) -> bool:
        """Whether a user ID or alias is another server's (and federation is on)."""
        return self.hs.config.federation.enabled and \
            some_id.split(":", 1)[-1] != self.hs.server_name

    async def join(self, user_id: str, room_id_or_alias: str, body: dict[str, Any],
                   servers: list[str] | None = None) -> str:
        """`servers`: where the client says the room may be joined through (server_name)."""
        reason = reason_field(body)
        room_id, given = await self._resolve_for_federation(room_id_or_alias, servers)
        await self.hs.admin_rooms.check_joinable(room_id)
        if await self._through_remote("join", user_id, room_id, given, reason):
            return room_id
        await self.hs.rooms.room_version(room_id)
        self.hs.ratelimiter.check("join", user_id)
        content = await self._content("join", user_id, reason)
        current = await self.hs.rooms.membership(room_id, user_id)
        if current is None or current[0] not in ("join", "invite"):
            state = await self.hs.db.run(
                ev_store.get_current_state, room_id, [("m.room.join_rules", "")]
            )
            jr = state.get(("m.room.join_rules", ""), {}).get("content", {})
            if jr.get("join_rule") in ("restricted", "knock_restricted"):
                via = await self._restricted_join_content(room_id, user_id, jr)
                if via is None:
                    # As Synapse does: a server in the room with a user who may invite
                    # makes the join (make_join / send_join), though this one is in it too.
                    remote = self.hs.remote_membership
                    candidates = await remote.candidate_servers(room_id, user_id, given) \
                        if self.hs.config.federation.enabled else []
                    if not candidates:
                        raise forbidden("No user in the room can authorise your join")
                    await remote.join(user_id, room_id, candidates, content)
                    return room_id
                content.update(via)
        await self.hs.events.send(room_id, user_id, "m.room.member", content, user_id)
        return room_id

    async def _through_remote(self, membership: str, user_id: str, room_id: str,
                              given: list[str], reason: str | None) -> bool:
        """Join or knock through a server in the room when this one is not; False when this
        server is in the room (or nobody else can be asked): the local path goes on."""
        remote = self.hs.remote_membership
        if not self.hs.config.federation.enabled or await remote.is_resident(room_id):
            return False
        candidates = await remote.candidate_servers(room_id, user_id, given)
        if not candidates:
            return False
        self.hs.ratelimiter.check("join", user_id)
        content = await self._content(membership, user_id, reason)
        act = remote.join if membership == "join" else remote.knock
        await act(user_id, room_id, candidates, content)
        return True

    async def _content(self, membership: str, user_id: str, reason: str | None) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": membership, **await self.hs.rooms.profile(user_id)}
        if reason is not None:
            content["reason"] = reason
        return content

    async def _resolve_for_federation(self, room_id_or_alias: str, servers: list[str] | None
                                      ) -> tuple[str, list[str]]:
        """The room ID, and the servers a remote alias names besides those given."""
        given = list(servers or [])
        if room_id_or_alias.startswith("#") and self._remote(room_id_or_alias):
            check_alias(room_id_or_alias)
            room_id, alias_servers = await self.hs.remote_membership.query_alias(room_id_or_alias)
            return room_id, given + alias_servers
        return await self.hs.rooms.resolve_room(room_id_or_alias), given

    async def knock(self, user_id: str, room_id_or_alias: str, body: dict[str, Any],
                    servers: list[str] | None = None) -> str:
        reason = reason_field(body)
        room_id, given = await self._resolve_for_federation(room_id_or_alias, servers)
        await self.hs.admin_rooms.check_joinable(room_id)
        if await self._through_remote("knock", user_id, room_id, given, reason):
            return room_id
        await self.hs.rooms.room_version(room_id)
        self.hs.ratelimiter.check("join", user_id)
        current = await self.hs.rooms.membership(room_id, user_id)
        if current is not None and current[0] in ("join", "invite", "ban"):
            raise forbidden(f"You cannot knock while your membership is {current[0]}")
        content = await self._content("knock", user_id, reason)
        await self.hs.events.send(room_id, user_id, "m.room.member", content, user_id)
        return room_id

    async def set_membership(
        self, sender: str, room_id: str, target: str, membership: str, body: dict[str, Any],
        *, unban: bool = False,
    ) -> None:
        """invite, leave, kick (leave of another user), ban and unban."""
        reason = reason_field(body)
        await self.hs.rooms.room_version(room_id)
        current = await self.hs.rooms.membership(room_id, target)
        current_m = current[0] if current else None
        content: dict[str, Any] = {"membership": membership}
        if membership == "invite":
            await self.hs.admin_rooms.check_joinable(room_id)
            self.hs.ratelimiter.check("invite", sender)
            await self.hs.rooms.require_accounts([target])
            if current_m in ("join", "ban"):
                raise forbidden(f"{target} is {'already in' if current_m == 'join' else 'banned from'} the room")
            if target.split(":", 1)[1] != self.hs.server_name:
                # Another server's user: that server must countersign the invite first.
                if not self.hs.config.federation.enabled:
                    raise forbidden("This server does not federate: "
                                    f"{target} is on another server")
                if reason is not None:
                    content["reason"] = reason
                await self.hs.remote_membership.invite(sender, room_id, target, content)
                return
            content.update(await self.hs.rooms.profile(target))
        elif membership == "leave" and target == sender and current_m in ("invite", "knock") \
                and self.hs.config.federation.enabled \
                and not await self.hs.remote_membership.is_resident(room_id):
            # Rejecting an invite to (or retracting a knock on) a room this server is not in.
            if reason is not None:
                content["reason"] = reason
            await self.hs.remote_membership.leave(sender, room_id, content)
            return
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

    async def shared_rooms(self, user_id: str, other: str) -> list[str]:
        """The rooms both users are joined to, sorted."""
        mine = set(await self.hs.db.run(store.joined_rooms, user_id))
        return sorted(mine.intersection(await self.hs.db.run(store.joined_rooms, other)))

    async def forget(self, user_id: str, room_id: str) -> None:
        # Not rooms.room_version: a room a server admin deleted can still be forgotten.
        check_room_id(room_id)
        await self.hs.events.room_version(room_id)
        current = await self.hs.rooms.membership(room_id, user_id)
        if current is None:
            raise not_found("You have never been in this room")
        if current[0] not in ("leave", "ban"):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        await self.hs.db.run(store.forget_room, room_id, user_id)

