"""Membership over federation, this server as the resident (server-server API "Joining
rooms", "Leaving rooms", "Knocking upon a room", "Inviting to a room"): event templates
(make_join, make_leave, make_knock), the signed events coming back (send_join v2, send_leave
v2, send_knock), invites of local users by other servers (invite v2) and room alias
queries (/query/directory).

Events the asking server sends through us go through the one persist entry
(`hs.events.persist_received`) and on to the room's other servers (the sender's queue).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from veche.core import auth as auth_rules
from veche.core import events as event_format
from veche.core.events import EventFormatError
from veche.core.federation_pdus import event_from_federation, pdu_for_federation, stripped_state
from veche.core.invite_state import InviteStateError, invite_state_pdus
from veche.core.pdu import PduError, check_pdu_format, checked_content
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from veche.errors import MatrixError, bad_json, forbidden, invalid_param, not_found
from veche.services.persist import MissingPrevEvents
from veche.services.server_acl import require_allowed
from veche.services.stripped_state import STRIPPED_STATE
from veche.storage import event_graph as graph
from veche.storage import events as ev_store
from veche.storage import federation_queue as queue
from veche.storage import rooms as room_store
from veche.storage.database import Txn
from veche.storage.event_graph import MAX_PREV_EVENTS, EventContext

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)


def incompatible(rv: RoomVersion) -> MatrixError:
    return MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION",
                       f"Your server does not support room version {rv.identifier}",
                       room_version=rv.identifier)


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def build_event_txn(
    txn: Txn, rv: RoomVersion, room_id: str, sender: str, event_type: str,
    content: dict[str, Any], state_key: str | None,
) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]]]:
    """An unsigned event on top of the room's current state (its extremities as
    prev_events, its auth_events selected from current state) and the auth state it is
    checked against. Raises 403 when the auth rules refuse it."""
    extremities = graph.get_forward_extremities(txn, room_id)
    if not extremities:
        raise not_found("This server is not in the room")
    event: dict[str, Any] = {
        "type": event_type, "room_id": room_id, "sender": sender, "content": content,
        "origin_server_ts": int(time.time() * 1000),
        "prev_events": [e for e, _, _ in extremities[:MAX_PREV_EVENTS]],
        "depth": min(max(d for _, d, _ in extremities) + 1, 2**63 - 1),
    }
    if state_key is not None:
        event["state_key"] = state_key
    auth_keys = auth_rules.auth_types_for_event(rv, event)
    wanted = {*auth_keys, auth_rules.CREATE_KEY}
    state = ev_store.get_current_state(txn, room_id, wanted)
    event["auth_events"] = sorted(state[k]["event_id"] for k in auth_keys if k in state)
    try:
        auth_rules.check_auth_rules(rv, event, state)
    except auth_rules.AuthError as e:
        raise forbidden(str(e)) from None
    return event, state


def _well_formed(pdu: Any, rv: RoomVersion) -> dict[str, Any]:
    """The stored form of a PDU sent to a membership endpoint, which must have the event
    format of its room version as one in a transaction must (depth, prev and auth events,
    sizes): 400 M_BAD_JSON otherwise. As for any received PDU, a content hash that fails
    means only the redacted form is kept (server-server API "Checks performed on receipt
    of a PDU"): its signature, checked later, covers that form."""
    try:
        event = event_from_federation(pdu, rv)
        received = pdu_for_federation(event, rv)
        check_pdu_format(rv, received)
        return event_from_federation(checked_content(rv, received)[0], rv)
    except (EventFormatError, PduError) as e:
        raise bad_json(f"Malformed event: {e}") from None


def _allowed_by_current_state(txn: Txn, rv: RoomVersion, event: Mapping[str, Any]) -> None:
    keys = {*auth_rules.auth_types_for_event(rv, event), auth_rules.CREATE_KEY}
    state = ev_store.get_current_state(txn, event["room_id"], keys)
    try:
        auth_rules.check_auth_rules(rv, event, state)
    except auth_rules.AuthError as e:
        raise forbidden(f"The invite is not allowed: {e}") from None


class FederationMembershipService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.server_name = hs.server_name

    # --- helpers ----------------------------------------------------------------------
    async def _resident_room(self, room_id: str) -> RoomVersion:
        """The room's version, if this server is in the room (has a joined member)."""
        ident = await self.hs.db.run(ev_store.get_room_version, room_id)
        if ident is None or self.server_name not in await self.hs.db.run(
                queue.joined_servers, room_id):
            raise not_found("This server is not in the room")
        return KNOWN_ROOM_VERSIONS[ident]

    async def verify_signed_by(self, event: Mapping[str, Any], server: str, rv: RoomVersion) -> bool:
        """Whether `server` signed the event with a key valid when it was made."""
        sigs = (event.get("signatures") or {}).get(server)
        if not isinstance(sigs, dict):
            return False
        ts = event.get("origin_server_ts")
        pdu = pdu_for_federation(event, rv)  # what was signed: no event_id
        for key_id in sigs:
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                continue
            key = await self.hs.server_keys.get_verify_key(
                server, key_id, valid_at_ts=ts if isinstance(ts, int) else None)
            if key is not None and event_format.verify_event_signature(pdu, server, key, rv, key_id):
                return True
        return False

    def sign(self, event: dict[str, Any], rv: RoomVersion) -> dict[str, Any]:
        """Add this server's signature; the event ID (a hash without signatures) stays."""
        event_id = event.get("event_id")
        signed = event_format.sign_event(pdu_for_federation(event, rv), self.server_name,
                                         self.hs.signing_key, rv)
        if rv.room_id_is_create_event_hash and "room_id" in event:
            signed["room_id"] = event["room_id"]
        if event_id is not None:
            signed["event_id"] = event_id
        return signed

    async def _received_membership(
        self, origin: str, room_id: str, event_id: str, pdu: Any, membership: str,
    ) -> tuple[RoomVersion, dict[str, Any]]:
        """A membership event sent back after a make_*: from a server the room's ACL allows,
        well formed, about the origin's own user, and signed by the origin."""
        await require_allowed(self.hs, origin, room_id)
        rv = await self._resident_room(room_id)
        if not isinstance(pdu, dict):
            raise bad_json("The request body must be an event")
        event = _well_formed(pdu, rv)
        content = event["content"]
        if event["event_id"] != event_id:
            raise invalid_param("The event ID does not match the event")
        if event.get("room_id") != room_id:
            raise invalid_param("The event is for another room")
        if event["type"] != "m.room.member" or content.get("membership") != membership:
            raise invalid_param(f"Expected an m.room.member event with membership {membership}")
        if event.get("state_key") != event["sender"]:
            raise invalid_param("The event's state_key must be its sender")
        if server_of(event["sender"]) != origin:
            raise forbidden("The event must be about a user of the sending server")
        if not await self.verify_signed_by(event, origin, rv):
            raise forbidden(f"The event is not signed by {origin}")
        return rv, event

    async def _persist(self, event: dict[str, Any]) -> None:
        try:
            persisted = await self.hs.events.persist_received(event)
        except MissingPrevEvents as e:
            raise invalid_param(f"Unknown prev_events: {e.event_ids[:5]}") from None
        if persisted.rejected is not None:
            raise forbidden(f"The event is not allowed: {persisted.rejected}")

    async def _pass_on(self, origin: str, event: dict[str, Any]) -> None:
        """The resident sends a membership event made elsewhere to the room's other servers."""
        hosts = await self.hs.federation_sender.room_hosts(event["room_id"])
        target = server_of(event["sender"])
        await self.hs.federation_sender.send_event_to(event, hosts - {origin, target})

    async def _template(self, origin: str, room_id: str, user_id: str, membership: str,
                        versions: Collection[str] | None) -> dict[str, Any]:
        if server_of(user_id) != origin:
            raise forbidden("The user is not on the requesting server")
        await require_allowed(self.hs, origin, room_id)
        if membership != "leave":
            await self.hs.admin_rooms.check_joinable(room_id)
        rv = await self._resident_room(room_id)
        if versions is not None and rv.identifier not in versions:
            raise incompatible(rv)
        content: dict[str, Any] = {"membership": membership}
        if membership == "join":
            content.update(await self._restricted_join(room_id, user_id, rv))
        event, _ = await self.hs.db.run(
            build_event_txn, rv, room_id, user_id, "m.room.member", content, user_id)
        return {"event": event, "room_version": rv.identifier}

    async def _restricted_join(self, room_id: str, user_id: str, rv: RoomVersion) -> dict[str, Any]:
        """join_authorised_via_users_server, when the room's join rule needs one."""
        state = await self.hs.db.run(ev_store.get_current_state, room_id, [
            ("m.room.join_rules", ""), ("m.room.power_levels", ""), ("m.room.create", ""),
            ("m.room.member", user_id)])
        rule = (state.get(("m.room.join_rules", "")) or {}).get("content") or {}
        if rule.get("join_rule") not in ("restricted", "knock_restricted"):
            return {}
        own = ((state.get(("m.room.member", user_id)) or {}).get("content") or {}).get("membership")
        if own in ("join", "invite"):
            return {}
        allow = rule.get("allow")
        rooms = [a.get("room_id") for a in (allow if isinstance(allow, list) else [])
                 if isinstance(a, dict)
                 and a.get("type") == "m.room_membership" and isinstance(a.get("room_id"), str)]
        mine = set(await self.hs.db.run(ev_store.get_rooms_for_user, user_id))
        if not any(r in mine for r in rooms):
            known = [r for r in rooms if await self.hs.db.run(ev_store.get_room_version, r)]
            if not known:
                raise MatrixError(400, "M_UNABLE_TO_AUTHORISE_JOIN",
                                  "This server knows none of the rooms that allow joining")
            raise forbidden("You are not in a room that allows joining this one")
        pl = (state.get(("m.room.power_levels", "")) or {}).get("content") or {}
        needed = auth_rules.get_named_level(pl, "invite", 0)
        for member in await self.hs.db.run(ev_store.get_room_members, room_id):
            if server_of(member) == self.server_name and \
                    auth_rules.get_user_power_level(member, state, rv) >= needed:
                return {"join_authorised_via_users_server": member}
        raise MatrixError(400, "M_UNABLE_TO_GRANT_JOIN", "No user here can authorise your join")

    async def _state_and_auth_chain(self, room_id: str, event: dict[str, Any], rv: RoomVersion
                                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The state before the event and the auth chain of it and of the event."""
        def read(txn: Txn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            before = graph.get_state_ids_before(txn, event["event_id"]) or {}
            chain = graph.get_auth_chain_ids(txn, [*before.values(), event["event_id"]])
            if rv.room_id_is_create_event_hash and auth_rules.CREATE_KEY in before:
                # v12 events cite no create event, which the room ID implies: sent anyway.
                chain.add(before[auth_rules.CREATE_KEY])
            events = ev_store.get_events(txn, [*before.values(), *chain])
            state = [events[e] for e in before.values() if e in events]
            return state, [events[e] for e in sorted(chain) if e in events]

        state, chain = await self.hs.db.run(read)
        return ([pdu_for_federation(e, rv) for e in state],
                [pdu_for_federation(e, rv) for e in chain])

    # --- joins --------------------------------------------------------------------------
    async def make_join(self, origin: str, room_id: str, user_id: str,
                        versions: Collection[str]) -> dict[str, Any]:
        # Without `ver` the asker speaks only versions 1 and 2, which this server does not.
        return await self._template(origin, room_id, user_id, "join", versions or ["1"])

    async def send_join(self, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
        rv, event = await self._received_membership(origin, room_id, event_id, pdu, "join")
        via = event["content"].get("join_authorised_via_users_server")
        if isinstance(via, str) and server_of(via) == self.server_name:
            event = self.sign(event, rv)  # this server authorises the join
        await self._persist(event)
        await self._pass_on(origin, event)
        state, chain = await self._state_and_auth_chain(room_id, event, rv)
        servers = sorted(await self.hs.db.run(queue.joined_servers, room_id) - {origin})
        # Full state even when asked to omit members (the spec allows it): no partial state.
        return {"origin": self.server_name, "state": state, "auth_chain": chain,
                "event": pdu_for_federation(event, rv), "members_omitted": False,
                "servers_in_room": sorted({self.server_name, *servers})}

    # --- leaves and knocks ----------------------------------------------------------------
    async def make_leave(self, origin: str, room_id: str, user_id: str) -> dict[str, Any]:
        return await self._template(origin, room_id, user_id, "leave", None)

    async def send_leave(self, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
        _, event = await self._received_membership(origin, room_id, event_id, pdu, "leave")
        await self._persist(event)
        await self._pass_on(origin, event)
        return {}

    async def make_knock(self, origin: str, room_id: str, user_id: str,
                         versions: Collection[str]) -> dict[str, Any]:
        await require_allowed(self.hs, origin, room_id)
        rv = await self._resident_room(room_id)
        if not rv.knock_join_rule:
            raise incompatible(rv)
        return await self._template(origin, room_id, user_id, "knock", versions)

    async def send_knock(self, origin: str, room_id: str, event_id: str, pdu: Any) -> dict[str, Any]:
        rv, event = await self._received_membership(origin, room_id, event_id, pdu, "knock")
        await self._persist(event)
        await self._pass_on(origin, event)
        state = await self.hs.db.run(ev_store.get_current_state, room_id, STRIPPED_STATE)
        return {"knock_room_state": stripped_state(state.values())}

    # --- invites of local users -------------------------------------------------------------
    async def invite(self, origin: str, room_id: str, event_id: str, body: Any) -> dict[str, Any]:
        # The ACL of a room this server is in; one it only hears of now has none here.
        await require_allowed(self.hs, origin, room_id)
        await self.hs.admin_rooms.check_joinable(room_id)
        if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
            raise bad_json("Expected {room_version, event, invite_room_state}")
        ident = body.get("room_version")
        rv = KNOWN_ROOM_VERSIONS.get(ident) if isinstance(ident, str) else None
        if rv is None:
            raise MatrixError(400, "M_INCOMPATIBLE_ROOM_VERSION",
                              f"This server does not support room version {ident}",
                              room_version=ident)
        event = _well_formed(body["event"], rv)
        content = event["content"]
        target = event.get("state_key")
        # What a server must not sign for another is M_INVALID_PARAM (invites-v2.yaml).
        if event["event_id"] != event_id or event.get("room_id") != room_id:
            raise invalid_param("The event does not match the request")
        if event["type"] != "m.room.member" or content.get("membership") != "invite" \
                or not isinstance(target, str):
            raise invalid_param("Expected an m.room.member invite")
        if server_of(event["sender"]) != origin:
            raise invalid_param("The inviter is not on the requesting server")
        if server_of(target) != self.server_name:
            raise invalid_param("The invitee is not on this server")
        if await self.hs.db.run(room_store.get_profile, target) is None:
            raise not_found(f"Unknown user {target}")
        known = await self.hs.db.run(ev_store.get_room_version, room_id)
        if known is not None and known != rv.identifier:
            raise invalid_param("The room version does not match the room's")
        current = await self.hs.db.run(ev_store.get_membership, room_id, target)
        if current is not None and current[0] in ("join", "ban"):
            raise forbidden(f"{target} is {current[0]} in the room")
        if not await self.verify_signed_by(event, origin, rv):
            raise invalid_param(f"The invite is not signed by {origin}")
        signed = self.sign(event, rv)
        if known is not None and self.server_name in await self.hs.db.run(
                queue.joined_servers, room_id):
            # A room this server is in: the invite takes its place in the room's graph
            # (the same event coming again in a transaction is then already there).
            try:
                persisted = await self.hs.events.persist_received(signed)
            except MissingPrevEvents:
                # Not placeable yet: kept as an invite alone, like any other, if the room's
                # current state (known here) allows it; an invite by someone who may not
                # invite, or into a room the inviter is not in, is refused.
                await self.hs.db.run(_allowed_by_current_state, rv, signed)
            else:
                if persisted.rejected is not None:
                    raise forbidden(f"The invite is not allowed: {persisted.rejected}")
                return {"event": pdu_for_federation(signed, rv)}
        # An invite alone: what the invitee is shown of the room is invite_room_state, so
        # it must hold up (a room in the graph here is shown from its own state).
        room_state = body.get("invite_room_state")
        await self._check_invite_room_state(rv, room_id, room_state)
        shown = stripped_state(room_state if isinstance(room_state, list) else [])
        await self._store_invite(signed, rv, shown)
        return {"event": pdu_for_federation(signed, rv)}

    async def _check_invite_room_state(self, rv: RoomVersion, room_id: str,
                                       entries: object) -> None:
        """400 M_INVALID_PARAM for invite_room_state that fails the v1.16 checks (its PDUs
        signed by their senders' servers too), in room versions that flag it; a warning
        only in older ones (core/invite_state.py)."""
        try:
            pdus = invite_state_pdus(rv, room_id, entries)
        except InviteStateError as e:
            if rv.invite_room_state_checked:
                raise invalid_param(str(e)) from None
            logger.warning("Invite into %s (room version %s): %s", room_id, rv.identifier, e)
            return
        if not rv.invite_room_state_checked:
            return
        for pdu in pdus:
            if not await self.verify_signed_by(pdu, server_of(pdu["sender"]), rv):
                raise invalid_param(f"{pdu['type']!r} in invite_room_state is not signed by "
                                    f"{server_of(pdu['sender'])}")

    async def invite_v1(self, origin: str, room_id: str, event_id: str, event: Any) -> list[Any]:
        """The v1 form: the body is the event, and the room version "must be assumed" to be
        1 or 2, which this server does not speak (400 M_INCOMPATIBLE_ROOM_VERSION)."""
        answer = await self.invite(origin, room_id, event_id, {"room_version": "1", "event": event})
        return [200, answer]

    async def _store_invite(self, event: dict[str, Any], rv: RoomVersion,
                            room_state: list[dict[str, Any]]) -> None:
        """An invite to a room this server may hold no state of: an outlier carrying the
        room's stripped state (for /sync's invite section) and the invitee's membership."""
        stored = {**event, "unsigned": {"invite_room_state": room_state}}
        room_id, target = event["room_id"], event["state_key"]

        def persist(txn: Txn, pos: int) -> int:
            if self.hs.cluster is not None:  # two processes must not both insert the room
                pos = self.hs.cluster.lock_room(txn, room_id, 1)[0]
            if ev_store.get_room_version(txn, room_id) is None:
                ev_store.insert_room(txn, room_id, rv.identifier, event["sender"],
                                     int(time.time() * 1000))
            if ev_store.get_event_position(txn, event["event_id"]) is None:
                self.hs.events.persister.persist_event(
                    txn, stored, EventContext(outlier=True), pos, rv=rv)
            ev_store.set_membership(txn, room_id, target, "invite", event["event_id"], pos,
                                       event["sender"])
            return pos

        with self.hs.stream.get_next() as pos:
            pos = await self.hs.db.run(persist, pos)
        self.hs.notifier.notify([room_id, target], pos)

    # --- queries ----------------------------------------------------------------------------
    async def query_directory(self, alias: str) -> dict[str, Any]:
        if not alias.startswith("#") or server_of(alias) != self.server_name:
            raise not_found("Room alias not found")
        row = await self.hs.db.run(room_store.get_alias, alias)
        if row is None:
            raise not_found("Room alias not found")
        room_id = row[0]
        servers = await self.hs.db.run(queue.joined_servers, room_id)
        others = sorted(servers - {self.server_name})
        return {"room_id": room_id, "servers": [self.server_name, *others]}
