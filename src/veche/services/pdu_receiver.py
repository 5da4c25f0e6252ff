"""Receiving a PDU (server-server API "Checks performed on receipt of a PDU"): signatures,
content hash, auth against its own auth_events, then the persist step (state before, current
state: services/persist.py), with the graph's gaps filled from the server that sent it.

- Signatures: every server `core.pdu.required_signers` names, with its keys valid at the
  event's `origin_server_ts` (services/server_keys.py fetches them); a PDU failing them is
  dropped. A content hash mismatch keeps the redacted copy.
- Auth events not here are fetched (`/event_auth`) and stored as outliers after the same
  checks; an event they do not allow is stored rejected.
- Missing prev_events: `/get_missing_events` (limit 10, as Synapse) from the origin, events
  between the room's forward extremities and the new one; prev events still missing then
  (the gap is bigger) get their state from the origin (`/state_ids`, then `/event` for each
  event not here, stored as outliers), and the new event's state before is the resolution
  of the known and told states.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from veche.core import auth as auth_rules
from veche.core.events import EventFormatError, create_event_id_from_room_id
from veche.core.federation_pdus import is_v12_create, pdu_for_federation
from veche.core.pdu import (
    PduError,
    check_pdu_format,
    check_signatures,
    checked_content,
    required_signers,
    signature_key_ids,
    with_event_id,
)
from veche.core.room_versions import RoomVersion
from veche.federation.errors import FederationError, path
from veche.services.persist import MissingPrevEvents, Persisted
from veche.storage import event_graph as graph
from veche.storage import federation_events as fstore
from veche.storage.database import Txn

if TYPE_CHECKING:
    from nacl.signing import VerifyKey

    from veche.server import HomeServer

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]
MISSING_EVENTS_LIMIT = 10  # what Synapse asks for
MAX_STATE_FETCH = 5000  # events fetched one by one to learn a state; more is refused
FETCH_CONCURRENCY = 10
# `_prevs_and_auth`'s answer when some auth events are not here (to be fetched).
_AUTH_EVENTS_MISSING = "\0auth events missing"


# A PDU's auth events as stored and the state groups of its prev events in the graph.
Prefetched = tuple[dict[str, fstore.StoredEvent], dict[str, int]]


class PduRefused(Exception):
    """The PDU is dropped (bad format or signature); the message says why."""


class PduReceiver:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    # --- checks ---------------------------------------------------------------------------

    async def check(self, rv: RoomVersion, pdu: Mapping[str, Any], *, limits: bool = True,
                    event_id: str | None = None, signed: bytes | None = None) -> dict[str, Any]:
        """The PDU as it will be stored (event ID added, redacted if its hash fails) if its
        format and signatures hold; PduRefused otherwise. `event_id`: the PDU's, computed
        already (core.events.compute_event_id); `signed`: what its signatures sign, if
        known (core.events.signing_input)."""
        try:
            check_pdu_format(rv, pdu, limits=limits)
            # Hashes and signatures cover the PDU without event_id (a claimed one is
            # ignored). Its unsigned data is the sender's word only, and clients are shown
            # a stored event's unsigned section: none is kept.
            received = pdu_for_federation(pdu, rv)
        except (PduError, EventFormatError) as e:
            raise PduRefused(f"bad event: {e}") from None
        keys = await self._keys_for(rv, received)
        try:
            check_signatures(rv, received, keys, signed)
        except PduError as e:
            raise PduRefused(str(e)) from None
        received, hash_ok = checked_content(rv, received)
        if event_id is None or is_v12_create(received, rv):
            event = with_event_id(rv, received)
        else:  # the reference hash, of the redacted PDU: the same for `received`
            event = {**received, "event_id": event_id}
        if not hash_ok:
            logger.info("content hash of %s does not match: keeping it redacted", event["event_id"])
        return event

    async def _keys_for(self, rv: RoomVersion, event: Mapping[str, Any]) -> dict[tuple[str, str], VerifyKey]:
        keys: dict[tuple[str, str], VerifyKey] = {}
        for server in required_signers(rv, event):
            for key_id in signature_key_ids(event, server)[:4]:
                key = await self.hs.server_keys.get_verify_key(
                    server, key_id, valid_at_ts=int(event["origin_server_ts"]))
                if key is not None:  # signedjson's keys are nacl's
                    keys[(server, key_id)] = cast("VerifyKey", key)
        return keys

    def _auth_failure(self, txn: Txn | None, rv: RoomVersion, event: Mapping[str, Any],
                      stored: dict[str, fstore.StoredEvent] | None = None) -> str | None:
        """Why the event's own auth_events do not allow it; None if they do. Raises LookupError
        when some of them are not here. `stored`: those of them read already (_auth_ids)."""
        auth_ids = [a for a in event["auth_events"]]
        create_id = _create_id(rv, event)
        if stored is None:
            assert txn is not None
            stored = fstore.get_stored_events(txn, _auth_ids(rv, event))
        missing = [a for a in [*auth_ids, *([create_id] if create_id else [])] if a not in stored]
        if missing:
            raise LookupError(missing)
        auth_events = [stored[a].event for a in dict.fromkeys(auth_ids)]
        if len(auth_events) != len(auth_ids):
            return "auth rule: duplicate auth_events"
        rejected = {a for a in auth_ids if stored[a].rejected}
        state: dict[StateKey, Mapping[str, Any]] = {
            (str(e.get("type")), str(e.get("state_key"))): e for e in auth_events}
        if create_id is not None:
            state[auth_rules.CREATE_KEY] = stored[create_id].event
        # A v12 create event is stored with the room ID it defines; the rules see it without.
        subject = ({k: v for k, v in event.items() if k != "room_id"}
                   if is_v12_create(event, rv) else event)
        try:
            auth_rules.check_auth_events(rv, subject, auth_events, rejected)
            auth_rules.check_auth_rules(
                rv, subject, state, is_signed_by=lambda e, s: bool(signature_key_ids(e, s)))
        except (auth_rules.AuthError, EventFormatError) as e:
            return str(e) or "not allowed by its auth events"
        return None

    # --- receiving --------------------------------------------------------------------------

    async def receive(self, origin: str, rv: RoomVersion, event: dict[str, Any], *,
                      fill_gaps: bool = True, backfilled: bool = False,
                      known: Prefetched | None = None) -> Persisted:
        """Persist a checked event (`check`) as part of the room's graph (`backfilled`:
        placed before the history here, services/backfill.py). `known`: `prefetch` of its
        PDU."""
        room_id = event["room_id"]
        missing_states: list[dict[StateKey, str]] = []
        # The common case in one read (or none: `known`): prev events and auth events all here.
        if known is not None:
            missing, rejected = self._prevs_and_auth_of(rv, event, known)
        else:
            missing, rejected = await self.hs.db.run(self._prevs_and_auth, rv, event)
        if missing or rejected is _AUTH_EVENTS_MISSING:
            # The gap first, as Synapse does: the event's auth events are often in it.
            if missing and fill_gaps:
                await self._get_missing_events(origin, rv, event)
                missing = await self._missing_prevs(event)
            for prev_id in missing:
                missing_states.append(await self._state_after(origin, rv, room_id, prev_id))
            rejected = await self._auth_events_failure(origin, rv, event)
        try:
            return await self.hs.events.persist_received(
                event, rejected=rejected, missing_prev_states=missing_states,
                backfilled=backfilled)
        except MissingPrevEvents:
            # Rejected by its auth events with prev events unknown: it has no place in the
            # graph; kept as a rejected outlier so nobody fetches it again.
            return await self.hs.events.persist_received(event, outlier=True, rejected=rejected)

    async def _auth_events_failure(self, origin: str, rv: RoomVersion,
                                   event: dict[str, Any]) -> str | None:
        try:
            return await self.hs.db.run(self._auth_failure, rv, event)
        except LookupError:
            pass
        await self._fetch_auth_chain(origin, rv, event)
        try:
            return await self.hs.db.run(self._auth_failure, rv, event)
        except LookupError as e:
            return f"auth events unknown: {e.args[0]}"

    def prefetch(self, txn: Txn, rv: RoomVersion, pdu: Mapping[str, Any]) -> Prefetched | None:
        """What `receive` reads first about a PDU, read before it is checked (in a
        transaction the caller has open anyway); None if the PDU is too malformed to tell.
        Still true when `receive` comes: events stored stay stored, and as they were."""
        try:
            prevs = list(dict.fromkeys(pdu["prev_events"]))
            auth_ids = _auth_ids(rv, pdu)
        except (KeyError, TypeError, EventFormatError):
            return None
        if not all(isinstance(e, str) for e in (*prevs, *auth_ids)):
            return None
        return fstore.get_stored_events_and_groups(txn, auth_ids, prevs)

    def _prevs_and_auth(self, txn: Txn, rv: RoomVersion, event: Mapping[str, Any],
                        ) -> tuple[list[str], str | None]:
        """(the prev events not in the graph, `_auth_failure` or _AUTH_EVENTS_MISSING)."""
        prevs = list(dict.fromkeys(event["prev_events"]))
        known = fstore.get_stored_events_and_groups(txn, _auth_ids(rv, event), prevs)
        return self._prevs_and_auth_of(rv, event, known, txn)

    def _prevs_and_auth_of(self, rv: RoomVersion, event: Mapping[str, Any], known: Prefetched,
                           txn: Txn | None = None) -> tuple[list[str], str | None]:
        stored, placed = known
        try:
            rejected = self._auth_failure(txn, rv, event, stored)
        except LookupError:
            rejected = _AUTH_EVENTS_MISSING
        return [p for p in dict.fromkeys(event["prev_events"]) if p not in placed], rejected

    async def _missing_prevs(self, event: Mapping[str, Any]) -> list[str]:
        prevs = [p for p in dict.fromkeys(event["prev_events"])]
        placed = await self.hs.db.run(graph.get_state_groups_after, prevs)
        return [p for p in prevs if p not in placed]

    # --- fetching from the origin -----------------------------------------------------------

    async def _fetch_auth_chain(self, origin: str, rv: RoomVersion, event: Mapping[str, Any]) -> None:
        target = path("/_matrix/federation/v1/event_auth/{}/{}", event["room_id"], event["event_id"])
        try:
            answer = await self.hs.federation_client.get_json(origin, target)
        except FederationError as e:
            logger.info("auth chain of %s from %s: %s", event["event_id"], origin, e)
            return
        chain = answer.get("auth_chain")
        if isinstance(chain, list):
            await self.store_outliers(origin, rv, event["room_id"], chain)

    async def store_outliers(self, origin: str, rv: RoomVersion, room_id: str,
                             pdus: Iterable[Any], *, wanted: set[str] | None = None) -> None:
        """Check and store events whose place in the graph is unknown (auth chains, state),
        oldest first so each one's auth events come before it. An event whose auth events
        are not to be had is left out; one they do not allow is stored rejected. `wanted`:
        keep only these event IDs (what was asked for)."""
        checked: list[dict[str, Any]] = []
        for pdu in pdus:
            if not isinstance(pdu, dict) or pdu.get("room_id", room_id) != room_id:
                continue
            try:
                event = await self.check(rv, pdu, limits=False)
            except PduRefused as e:
                logger.info("dropping an event fetched from %s: %s", origin, e)
                continue
            if event["room_id"] == room_id and (wanted is None or event["event_id"] in wanted):
                checked.append(event)
        checked.sort(key=lambda e: (e["depth"], e["origin_server_ts"]))
        for event in checked:
            try:
                rejected = await self.hs.db.run(self._auth_failure, rv, event)
            except LookupError as e:
                logger.info("not storing %s from %s: auth events unknown: %s",
                            event["event_id"], origin, e.args[0])
                continue
            await self.hs.events.persist_received(event, outlier=True, rejected=rejected)

    async def _get_missing_events(self, origin: str, rv: RoomVersion, event: Mapping[str, Any]) -> None:
        room_id = event["room_id"]
        extremities = await self.hs.db.run(graph.get_forward_extremities, room_id)
        body = {"earliest_events": [e for e, _, _ in extremities],
                "latest_events": [event["event_id"]], "limit": MISSING_EVENTS_LIMIT,
                "min_depth": min((d for _, d, _ in extremities), default=0)}
        target = path("/_matrix/federation/v1/get_missing_events/{}", room_id)
        try:
            answer = await self.hs.federation_client.post_json(origin, target, body)
        except FederationError as e:
            logger.info("get_missing_events for %s from %s: %s", event["event_id"], origin, e)
            return
        found = answer.get("events")
        if not isinstance(found, list):
            return
        events = []
        for pdu in found[: MISSING_EVENTS_LIMIT * 2]:
            if not isinstance(pdu, dict) or pdu.get("room_id") != room_id:
                continue
            try:
                events.append(await self.check(rv, pdu))
            except PduRefused as e:
                logger.info("dropping a missing event from %s: %s", origin, e)
        events.sort(key=lambda e: (e["depth"], e["origin_server_ts"]))
        for missing_event in events:
            if missing_event["event_id"] == event["event_id"]:
                continue
            try:
                await self.receive(origin, rv, missing_event, fill_gaps=False)
            except (FederationError, PduRefused) as e:
                logger.info("missing event %s from %s: %s", missing_event["event_id"], origin, e)

    async def _state_after(self, origin: str, rv: RoomVersion, room_id: str,
                           prev_id: str) -> dict[StateKey, str]:
        """The state after a prev event that is not in the graph, as `origin` tells it: the
        state before it (`/state_ids`) plus the event itself if it is an accepted state event.
        Events not here are fetched and stored as outliers."""
        target = path("/_matrix/federation/v1/state_ids/{}", room_id, query={"event_id": prev_id})
        try:
            answer = await self.hs.federation_client.get_json(origin, target)
        except FederationError as e:
            # Judged against no state, the event would be rejected for want of it, and an
            # event this server holds accepted (an outlier from a join) with it.
            raise PduRefused(f"the state at {prev_id} could not be had from {origin}: {e}") from e
        pdu_ids = _id_list(answer.get("pdu_ids"))
        chain_ids = _id_list(answer.get("auth_chain_ids"))
        wanted = list(dict.fromkeys([*chain_ids, *pdu_ids, prev_id]))
        have = await self.hs.db.run(fstore.get_stored_events, wanted)
        fetch = [e for e in wanted if e not in have][:MAX_STATE_FETCH]
        pdus = await self._fetch_events(origin, fetch)
        await self.store_outliers(origin, rv, room_id, pdus, wanted=set(fetch))
        stored = await self.hs.db.run(fstore.get_stored_events, [*pdu_ids, prev_id])
        state: dict[StateKey, str] = {}
        for event_id in [*pdu_ids, prev_id]:
            s = stored.get(event_id)
            if s is None or s.rejected or s.room_id != room_id:
                continue
            state_key = s.event.get("state_key")
            if isinstance(state_key, str):
                state[(s.event["type"], state_key)] = event_id
        return state

    async def _fetch_events(self, origin: str, event_ids: list[str]) -> list[dict[str, Any]]:
        """Events by ID from `origin`; an answer whose ID does not match is checked later
        (`store_outliers` keeps only what was asked for)."""
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(event_id: str) -> dict[str, Any] | None:
            async with limit:
                try:
                    answer = await self.hs.federation_client.get_json(
                        origin, path("/_matrix/federation/v1/event/{}", event_id))
                except FederationError as e:
                    logger.info("event %s from %s: %s", event_id, origin, e)
                    return None
            pdus = answer.get("pdus")
            return pdus[0] if isinstance(pdus, list) and pdus and isinstance(pdus[0], dict) else None

        found = await asyncio.gather(*(one(e) for e in event_ids))
        return [f for f in found if f is not None]


def _create_id(rv: RoomVersion, event: Mapping[str, Any]) -> str | None:
    """A v12 room's create event, which is no auth event but authorises everything."""
    if rv.room_id_is_create_event_hash and event.get("type") != "m.room.create":
        return create_event_id_from_room_id(event["room_id"])
    return None


def _auth_ids(rv: RoomVersion, event: Mapping[str, Any]) -> list[str]:
    """The events `_auth_failure` reads."""
    create_id = _create_id(rv, event)
    return [*event["auth_events"], *([create_id] if create_id else [])]


def _id_list(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
