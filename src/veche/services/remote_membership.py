"""Membership changes of local users that need another server (server-server "Joining
rooms", "Inviting to a room", "Leaving rooms"): joining a room this server is not in
(make_join, send_join, then the room's state and auth chain stored), inviting a user of
another server (invite v2, the co-signed event persisted here) and rejecting an invite to a
room this server holds no state of (make_leave, send_leave).

A request that cannot reach the other server is an error the client sees: federation off
(403), the server unreachable (502), or the server's own refusal passed through.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from veche.core import auth as auth_rules
from veche.core import events as event_format
from veche.core.events import EventFormatError
from veche.core.federation_pdus import (
    event_from_federation,
    is_v12_create,
    pdu_for_federation,
    stripped_state,
)
from veche.core.redaction import redact_event
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from veche.errors import MatrixError, forbidden, not_found
from veche.federation.errors import (
    FederationDenied,
    FederationError,
    HttpResponseError,
    path,
)
from veche.services.federation_membership import build_event_txn, server_of
from veche.services.stripped_state import STRIPPED_STATE
from veche.storage import event_graph as graph
from veche.storage import events as ev_store
from veche.storage import federation_queue as queue
from veche.storage.database import Txn
from veche.storage.event_graph import EventContext

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]


def federation_failure(e: FederationError, what: str) -> MatrixError:
    """The client's answer when another server could not do what was asked."""
    if isinstance(e, FederationDenied):
        return forbidden(f"Cannot {what}: {e}")
    if isinstance(e, HttpResponseError):
        body = e.body if isinstance(e.body, dict) else {}
        errcode = body.get("errcode") if isinstance(body.get("errcode"), str) else "M_UNKNOWN"
        error = body.get("error") if isinstance(body.get("error"), str) else str(e)
        # The spec: a remote M_MISSING_PARAM / M_INVALID_PARAM is our fault, not the client's.
        if 400 <= e.status < 500 and errcode not in ("M_MISSING_PARAM", "M_INVALID_PARAM"):
            return MatrixError(e.status, errcode, f"Cannot {what}: {error}")
        return MatrixError(502, "M_UNKNOWN", f"Cannot {what}: {error}")
    return MatrixError(502, "M_UNKNOWN", f"Cannot {what}: {e}")


class RemoteMembership:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.server_name = hs.server_name

    @property
    def resident(self) -> Any:
        return self.hs.federation_membership

    # --- where the room lives -------------------------------------------------------------
    async def is_resident(self, room_id: str) -> bool:
        """Whether this server is in the room (a local member joined): then membership
        changes are local events, sent to the others by the queue."""
        if await self.hs.db.run(ev_store.get_room_version, room_id) is None:
            return False
        return self.server_name in await self.hs.db.run(queue.joined_servers, room_id)

    async def candidate_servers(self, room_id: str, user_id: str, given: Iterable[str]) -> list[str]:
        """Servers to ask for a join: the client's, the inviter's, the room ID's, then any
        the (possibly stale) state knows."""
        out = list(given)
        invite = await self.hs.db.run(ev_store.get_membership, room_id, user_id)
        if invite is not None:
            event = await self.hs.db.run(ev_store.get_event, invite[1])
            if event is not None:
                out.append(server_of(event["sender"]))
        if ":" in room_id:
            out.append(room_id.split(":", 1)[1])
        out += sorted(await self.hs.db.run(queue.joined_servers, room_id))
        return [s for s in dict.fromkeys(out) if s and s != self.server_name]

    async def query_alias(self, alias: str) -> tuple[str, list[str]]:
        """(room ID, servers in the room) of another server's alias (/query/directory)."""
        server = server_of(alias)
        try:
            answer = await self.hs.federation_client.get_json(server, path(
                "/_matrix/federation/v1/query/directory", query={"room_alias": alias}))
        except HttpResponseError as e:
            if e.status == 404:
                raise not_found("Room alias not found") from None
            raise federation_failure(e, f"look {alias} up") from None
        except FederationError as e:
            raise federation_failure(e, f"look {alias} up") from None
        room_id = answer.get("room_id")
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise MatrixError(502, "M_UNKNOWN", f"{server} answered with no room ID")
        servers = answer.get("servers")
        return room_id, [s for s in (servers if isinstance(servers, list) else [])
                         if isinstance(s, str)][:20]

    # --- joins ------------------------------------------------------------------------------
    async def join(self, user_id: str, room_id: str, servers: list[str],
                   content: dict[str, Any]) -> None:
        """Join through the first of `servers` that makes and takes the event. When this
        server is already in the room (a restricted join none of its users may vouch for),
        the join is then received like any event of the room, not stored as a new room."""
        if not servers:
            raise not_found("No known servers to join the room through")
        resident = await self.is_resident(room_id)
        failure: MatrixError | None = None
        for server in servers:
            try:
                made = await self.hs.federation_client.get_json(server, path(
                    "/_matrix/federation/v1/make_join/{}/{}", room_id, user_id,
                    query={"ver": list(KNOWN_ROOM_VERSIONS)}))
                rv, event = self._fill_template(made, room_id, user_id, "join", content)
                event_id = event["event_id"]
                answer = await self.hs.federation_client.put_json(server, path(
                    "/_matrix/federation/v2/send_join/{}/{}", room_id, event_id),
                    pdu_for_federation(event, rv), timeout_s=300)
            except FederationError as e:
                logger.info("joining %s through %s: %s", room_id, server, e)
                failure = federation_failure(e, f"join through {server}")
                if isinstance(e, FederationDenied):
                    break
                continue
            except MatrixError as e:
                failure = e
                continue
            if resident:
                await self._receive_own_join(rv, event, answer, server)
            else:
                await self._store_joined_room(rv, room_id, user_id, event, answer, server)
            return
        assert failure is not None
        raise failure

    async def _receive_own_join(self, rv: RoomVersion, join: dict[str, Any],
                                answer: dict[str, Any], server: str) -> None:
        """Our join as the resident server countersigned it, placed in the room's graph as
        received events are (its prev events filled from that server if need be)."""
        from veche.services.pdu_receiver import PduRefused

        signed = answer.get("event")
        pdu = signed if isinstance(signed, dict) else pdu_for_federation(join, rv)
        receiver = self.hs.federation_inbound.receiver
        try:
            event = await receiver.check(rv, pdu)
        except PduRefused as e:
            raise MatrixError(502, "M_UNKNOWN", f"{server} sent back a bad join: {e}") from None
        if event["event_id"] != join["event_id"]:
            raise MatrixError(502, "M_UNKNOWN", f"{server} sent back another event")
        persisted = await receiver.receive(server, rv, event)
        if persisted.rejected is not None:
            raise forbidden(f"The join is not allowed by the room's state: {persisted.rejected}")

    def _fill_template(self, made: Any, room_id: str, user_id: str, membership: str,
                       content: dict[str, Any]) -> tuple[RoomVersion, dict[str, Any]]:
        ident = made.get("room_version") if isinstance(made, dict) else None
        rv = KNOWN_ROOM_VERSIONS.get(ident) if isinstance(ident, str) else None
        if rv is None:
            raise MatrixError(400, "M_UNSUPPORTED_ROOM_VERSION",
                              f"This server does not support room version {ident}")
        template = made.get("event")
        if not isinstance(template, dict) or template.get("room_id") != room_id \
                or template.get("sender") != user_id or template.get("state_key") != user_id \
                or template.get("type") != "m.room.member":
            raise MatrixError(502, "M_UNKNOWN", "The resident server sent a bad template")
        tcontent = template.get("content") if isinstance(template.get("content"), dict) else {}
        if tcontent.get("membership") != membership:
            raise MatrixError(502, "M_UNKNOWN", "The resident server sent a bad template")
        event: dict[str, Any] = {
            k: template[k] for k in ("type", "room_id", "sender", "state_key", "prev_events",
                                     "auth_events", "depth") if k in template}
        event["content"] = {**content, "membership": membership}
        via = tcontent.get("join_authorised_via_users_server")
        if isinstance(via, str):
            event["content"]["join_authorised_via_users_server"] = via
        event["origin_server_ts"] = int(time.time() * 1000)
        signed = event_format.sign_event(event, self.server_name, self.hs.signing_key, rv)
        signed["event_id"] = event_format.compute_event_id(signed, rv)
        return rv, signed

    async def _checked_events(self, rv: RoomVersion, room_id: str, pdus: Any
                              ) -> dict[str, dict[str, Any]]:
        """The received PDUs that are events of this room signed by their sender's server;
        one whose content hash fails is kept redacted (as the spec says)."""
        out: dict[str, dict[str, Any]] = {}
        for pdu in pdus if isinstance(pdus, list) else []:
            try:
                event = event_from_federation(pdu, rv)
            except (EventFormatError, TypeError):
                continue
            if event["room_id"] != room_id or event["event_id"] in out:
                continue
            if not await self.resident.verify_signed_by(event, server_of(event["sender"]), rv):
                logger.info("dropping %s: not signed by its sender's server", event["event_id"])
                continue
            if not event_format.check_content_hash(pdu_for_federation(event, rv)):
                event = {**redact_event(event, rv), "event_id": event["event_id"]}
            out[event["event_id"]] = event
        return out

    async def _store_joined_room(self, rv: RoomVersion, room_id: str, user_id: str,
                                 join: dict[str, Any], answer: dict[str, Any], server: str) -> None:
        """The room as send_join gave it: its state and auth chain stored as outliers, then
        our join with the state before it built from that state, becoming current state."""
        state_events = await self._checked_events(rv, room_id, answer.get("state"))
        chain = await self._checked_events(rv, room_id, answer.get("auth_chain"))
        everything = {**chain, **state_events}
        signed_join = answer.get("event")
        if isinstance(signed_join, dict):
            with contextlib.suppress(EventFormatError, TypeError):
                resident_signed = event_from_federation(signed_join, rv)
                if resident_signed["event_id"] == join["event_id"]:
                    join = resident_signed
        rejected = _rejected_by_auth_events(rv, everything)
        state: dict[StateKey, str] = {}
        for event in state_events.values():
            if isinstance(event.get("state_key"), str) and event["event_id"] not in rejected:
                state[(event["type"], event["state_key"])] = event["event_id"]
        if auth_rules.CREATE_KEY not in state:
            why = next((r for e, r in rejected.items()
                        if everything[e]["type"] == "m.room.create"), "no valid create event")
            raise MatrixError(502, "M_UNKNOWN", f"{server} sent no usable state for the room: {why}")
        join_rejection = _auth_failure(rv, join, state, everything)
        ordered = sorted(everything.values(), key=lambda e: (e.get("depth", 0), e["event_id"]))
        persister = self.hs.events.persister

        def persist(txn: Txn, positions: list[int]) -> tuple[str | None, int]:
            if self.hs.cluster is not None:  # one process at a time on a room's graph
                positions = self.hs.cluster.lock_room(txn, room_id, len(positions))
            if ev_store.get_room_version(txn, room_id) is None:
                create = everything[state[auth_rules.CREATE_KEY]]
                ev_store.insert_room(txn, room_id, rv.identifier, create["sender"],
                                     int(time.time() * 1000))
            for event, pos in zip(ordered, positions, strict=False):
                if ev_store.get_event_position(txn, event["event_id"]) is None:
                    reason = rejected.get(event["event_id"])
                    persister.persist_event(txn, event, EventContext(rejected=reason, outlier=True),
                                            pos, rv=rv)
            if ev_store.get_event_position(txn, join["event_id"]) is not None:
                return None, positions[-1]  # already persisted (a retried join)
            group = graph.store_state_group(txn, room_id, None, state, None)
            context = EventContext(group, rejected=join_rejection)
            persister.persist_event(txn, join, context, positions[-1], rv=rv)
            return join_rejection, positions[-1]

        with contextlib.ExitStack() as stack:
            positions = [stack.enter_context(self.hs.stream.get_next())
                         for _ in range(len(ordered) + 1)]
            reason, last = await self.hs.db.run(persist, positions)
        if reason is not None:
            raise forbidden(f"The join is not allowed by the room's state: {reason}")
        self.hs.notifier.notify([room_id, user_id], last)

    # --- knocks -----------------------------------------------------------------------------
    async def knock(self, user_id: str, room_id: str, servers: list[str],
                    content: dict[str, Any]) -> None:
        failure: MatrixError = not_found("No known servers to knock through")
        for server in servers:
            try:
                made = await self.hs.federation_client.get_json(server, path(
                    "/_matrix/federation/v1/make_knock/{}/{}", room_id, user_id,
                    query={"ver": list(KNOWN_ROOM_VERSIONS)}))
                rv, event = self._fill_template(made, room_id, user_id, "knock", content)
                answer = await self.hs.federation_client.put_json(server, path(
                    "/_matrix/federation/v1/send_knock/{}/{}", room_id, event["event_id"]),
                    pdu_for_federation(event, rv))
            except FederationError as e:
                failure = federation_failure(e, f"knock through {server}")
                if isinstance(e, FederationDenied):
                    break
                continue
            except MatrixError as e:
                failure = e
                continue
            shown = answer.get("knock_room_state")
            await self._store_outlier_membership(
                rv, event, "knock", stripped_state(shown if isinstance(shown, list) else []))
            return
        raise failure

    # --- invites ----------------------------------------------------------------------------
    async def invite(self, sender: str, room_id: str, target: str, content: dict[str, Any]) -> None:
        rv = await self.hs.events.room_version(room_id)
        event, _ = await self.hs.db.run(
            build_event_txn, rv, room_id, sender, "m.room.member",
            {**content, "membership": "invite"}, target)
        signed = event_format.sign_event(event, self.server_name, self.hs.signing_key, rv)
        event_id = event_format.compute_event_id(signed, rv)
        room_state = await self.hs.db.run(
            ev_store.get_current_state, room_id, [*STRIPPED_STATE, ("m.room.member", sender)])
        body = {"room_version": rv.identifier, "event": signed,
                "invite_room_state": [pdu_for_federation(e, rv) for e in room_state.values()]}
        destination = server_of(target)
        try:
            answer = await self.hs.federation_client.put_json(destination, path(
                "/_matrix/federation/v2/invite/{}/{}", room_id, event_id), body)
            returned = event_from_federation(answer.get("event"), rv)
        except FederationError as e:
            raise federation_failure(e, f"invite {target}") from None
        except (EventFormatError, TypeError, AttributeError):
            raise MatrixError(502, "M_UNKNOWN", f"{destination} answered the invite with no event") from None
        if returned["event_id"] != event_id or \
                not await self.resident.verify_signed_by(returned, destination, rv):
            raise MatrixError(502, "M_UNKNOWN", f"{destination} did not countersign the invite")
        persisted = await self.hs.events.persist_received(returned)
        if persisted.rejected is not None:
            raise forbidden(persisted.rejected)

    # --- leaving a room this server is not in (rejecting an invite) -------------------------
    async def leave(self, user_id: str, room_id: str, content: dict[str, Any]) -> None:
        servers = await self.candidate_servers(room_id, user_id, [])
        failure: MatrixError = not_found("No known servers to leave the room through")
        for server in servers:
            try:
                made = await self.hs.federation_client.get_json(server, path(
                    "/_matrix/federation/v1/make_leave/{}/{}", room_id, user_id))
                rv, event = self._fill_template(made, room_id, user_id, "leave", content)
                await self.hs.federation_client.put_json(server, path(
                    "/_matrix/federation/v2/send_leave/{}/{}", room_id, event["event_id"]),
                    pdu_for_federation(event, rv))
            except FederationError as e:
                failure = federation_failure(e, f"leave through {server}")
                continue
            except MatrixError as e:
                failure = e
                continue
            await self._store_outlier_membership(rv, event, "leave")
            return
        # No server of the room took the rejection: the user is rid of the invite here
        # anyway (as Synapse does), with a leave event only this server knows.
        logger.info("rejecting the invite to %s locally: %s", room_id, failure)
        await self._reject_locally(user_id, room_id, content)

    async def _reject_locally(self, user_id: str, room_id: str, content: dict[str, Any]) -> None:
        ident = await self.hs.db.run(ev_store.get_room_version, room_id)
        current = await self.hs.db.run(ev_store.get_membership, room_id, user_id)
        invite = await self.hs.db.run(ev_store.get_event, current[1]) if current else None
        if ident is None or invite is None:
            raise not_found("No invite to this room")
        rv = KNOWN_ROOM_VERSIONS[ident]
        event = {"type": "m.room.member", "room_id": room_id, "sender": user_id,
                 "state_key": user_id, "content": {**content, "membership": "leave"},
                 "origin_server_ts": int(time.time() * 1000),
                 "prev_events": [invite["event_id"]], "auth_events": [invite["event_id"]],
                 "depth": invite.get("depth", 0) + 1}
        signed = event_format.sign_event(event, self.server_name, self.hs.signing_key, rv)
        signed["event_id"] = event_format.compute_event_id(signed, rv)
        await self._store_outlier_membership(rv, signed, "leave")

    async def _store_outlier_membership(self, rv: RoomVersion, event: dict[str, Any],
                                        membership: str,
                                        room_state: list[dict[str, Any]] | None = None) -> None:
        """A local user's membership of a room this server holds no state of: the event
        as an outlier (carrying the room's stripped state for /sync, if given)."""
        room_id, user_id = event["room_id"], event["state_key"]
        persister = self.hs.events.persister
        if room_state is not None:
            # The key /sync reads for invites and knocks alike (services/sync.py).
            event = {**event, "unsigned": {"invite_room_state": room_state}}

        def persist(txn: Txn, pos: int) -> int:
            if self.hs.cluster is not None:  # two processes must not both insert the room
                pos = self.hs.cluster.lock_room(txn, room_id, 1)[0]
            if ev_store.get_room_version(txn, room_id) is None:
                ev_store.insert_room(txn, room_id, rv.identifier, user_id, int(time.time() * 1000))
            persister.persist_event(txn, event, EventContext(outlier=True), pos, rv=rv)
            ev_store.set_membership(txn, room_id, user_id, membership, event["event_id"],
                                       pos, user_id)
            return pos

        with self.hs.stream.get_next() as pos:
            pos = await self.hs.db.run(persist, pos)
        self.hs.notifier.notify([room_id, user_id], pos)


def _rejected_by_auth_events(rv: RoomVersion, events: Mapping[str, dict[str, Any]]) -> dict[str, str]:
    """Events of a send_join answer that fail the auth rules against their own auth events
    (checked oldest first, so a rejected auth event rejects what cites it)."""
    rejected: dict[str, str] = {}
    for event in sorted(events.values(), key=lambda e: (e.get("depth", 0), e["event_id"])):
        auth_state = {}
        for auth_id in event.get("auth_events") or ():
            auth = events.get(auth_id) if isinstance(auth_id, str) else None
            if auth is not None and isinstance(auth.get("state_key"), str):
                auth_state[(auth["type"], auth["state_key"])] = auth
        if rv.room_id_is_create_event_hash and event["type"] != "m.room.create":
            create_id = event_format.create_event_id_from_room_id(event["room_id"])
            if create_id in events:
                auth_state[auth_rules.CREATE_KEY] = events[create_id]
        if any(a in rejected for a in event.get("auth_events") or ()):
            rejected[event["event_id"]] = "an auth event was rejected"
            continue
        try:
            # A v12 create event is checked as sent (its room_id is ours, derived).
            checked = pdu_for_federation(event, rv) if is_v12_create(event, rv) else event
            auth_rules.check_auth_rules(rv, checked, auth_state)
        except (auth_rules.AuthError, EventFormatError) as e:
            rejected[event["event_id"]] = str(e) or "not allowed by its auth events"
    return rejected


def _auth_failure(rv: RoomVersion, event: Mapping[str, Any], state: Mapping[StateKey, str],
                  events: Mapping[str, dict[str, Any]]) -> str | None:
    """Why the state before the event does not allow it, if it does not."""
    keys = {*auth_rules.auth_types_for_event(rv, event), auth_rules.CREATE_KEY}
    auth_state = {k: events[state[k]] for k in keys if k in state and state[k] in events}
    try:
        auth_rules.check_auth_rules(rv, event, auth_state)
    except (auth_rules.AuthError, EventFormatError) as e:
        return str(e) or "not allowed by the state before the event"
    return None
