"""Events and state served to other servers: `/event`, `/state`, `/state_ids`, `/event_auth`,
`/backfill`, `/get_missing_events`, `/timestamp_to_event`.

- The asking server must be in the room (a joined user in current state) and allowed by the
  room's server ACL: 403 M_FORBIDDEN otherwise (`/event` included: what a server not in the
  room may know is nothing).
- Events are served as the asking server may see them (core/server_visibility.py, at the
  state after each event): whole, or redacted when history visibility hides them from it, so
  the graph can still be walked. The state at an event it may not see is refused (403), and
  /timestamp_to_event never names one (it answers the nearest event the server may see).
- A server that has left is refused even the history it saw while it had members: Synapse
  asks the same (assert_host_in_room before filter_events_for_server).
- Rejected events are never served; soft-failed ones are (the spec says so), but walks from
  other events do not pass through them unless they are cited.
- PDUs go out without `event_id`, a v12 create event without `room_id` (core/pdu.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from veche.core.events import create_event_id_from_room_id
from veche.core.federation_pdus import pdu_for_federation
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from veche.core.server_visibility import (
    HISTORY_VISIBILITY_KEY,
    for_server,
    server_may_see,
    visibility_of,
)
from veche.errors import MatrixError, forbidden, invalid_param, not_found
from veche.services.server_acl import check_origin
from veche.storage import event_graph as graph
from veche.storage import events as store
from veche.storage import federation_events as fstore
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

MAX_BACKFILL = 100
MAX_MISSING_EVENTS = 50
# /timestamp_to_event passes over events hidden from the asker in batches, this many at most
# (a bound on the work one request costs).
TIMESTAMP_BATCH = 50
MAX_TIMESTAMP_SCAN = 500


def _now_ms() -> int:
    return int(time.time() * 1000)


class FederationServing:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    def _transaction(self, pdus: list[dict[str, Any]]) -> dict[str, Any]:
        return {"origin": self.hs.server_name, "origin_server_ts": _now_ms(), "pdus": pdus}

    # --- access -----------------------------------------------------------------------------

    def _room_access(self, txn: Txn, origin: str, room_id: str) -> RoomVersion:
        version = store.get_room_version(txn, room_id)
        if version is None or version not in KNOWN_ROOM_VERSIONS:
            raise not_found("Unknown room")
        check_origin(txn, room_id, origin)
        if not fstore.server_has_joined_member(txn, room_id, origin):
            raise forbidden(f"{origin} is not in the room")
        return KNOWN_ROOM_VERSIONS[version]

    def _visible(self, txn: Txn, origin: str, room_id: str,
                 event_ids: Sequence[str]) -> dict[str, bool]:
        """Whether `origin` may see each event, from the state after it (an outlier, whose
        state is unknown, is visible: Synapse assumes the same)."""
        keys = [HISTORY_VISIBILITY_KEY, *fstore.server_member_keys(txn, room_id, origin)]
        groups = {e: g for e in event_ids if (g := _group_after(txn, e)) is not None}
        by_group: dict[int, bool] = {}
        for group in set(groups.values()):
            ids = graph.get_state_group_ids(txn, group, keys)
            events = store.get_events(txn, list(ids.values()))
            hv = events.get(ids.get(HISTORY_VISIBILITY_KEY, ""))
            memberships = [
                events[e]["content"].get("membership") for k, e in ids.items()
                if k != HISTORY_VISIBILITY_KEY and e in events
                and isinstance(events[e].get("content"), dict)]
            by_group[group] = server_may_see(visibility_of(hv), memberships)
        return {e: by_group[groups[e]] if e in groups else True for e in event_ids}

    def _served(self, txn: Txn, rv: RoomVersion, origin: str, room_id: str,
                events: Sequence[fstore.StoredEvent]) -> list[dict[str, Any]]:
        visible = self._visible(txn, origin, room_id, [s.event["event_id"] for s in events])
        return [pdu_for_federation(for_server(rv, s.event, visible[s.event["event_id"]]), rv)
                for s in events]

    # --- endpoints --------------------------------------------------------------------------

    async def get_event(self, origin: str, event_id: str) -> dict[str, Any]:
        def run(txn: Txn) -> dict[str, Any]:
            stored = fstore.get_stored_events(txn, [event_id]).get(event_id)
            if stored is None or stored.rejected:
                raise not_found("Event not found")
            rv = self._room_access(txn, origin, stored.room_id)
            return self._transaction(self._served(txn, rv, origin, stored.room_id, [stored]))

        return await self.hs.db.run_read(run)

    def _event_in_room(self, txn: Txn, room_id: str, event_id: str) -> fstore.StoredEvent:
        stored = fstore.get_stored_events(txn, [event_id]).get(event_id)
        if stored is None or stored.rejected or stored.room_id != room_id:
            raise not_found(f"Could not find event {event_id}")
        return stored

    def _state_ids(self, txn: Txn, origin: str, room_id: str,
                   event_id: str) -> tuple[RoomVersion, list[str], list[str]]:
        rv = self._room_access(txn, origin, room_id)
        self._event_in_room(txn, room_id, event_id)
        state = graph.get_state_ids_before(txn, event_id)
        if state is None:
            raise not_found(f"The state at {event_id} is not known here")
        if not self._visible(txn, origin, room_id, [event_id])[event_id]:
            raise forbidden("You may not see the state at this event")
        pdu_ids = sorted(state.values())
        return rv, pdu_ids, _auth_chain(txn, rv, room_id, pdu_ids)

    async def state_ids(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        _, pdu_ids, chain = await self.hs.db.run_read(self._state_ids, origin, room_id, event_id)
        return {"pdu_ids": pdu_ids, "auth_chain_ids": chain}

    async def state(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        def run(txn: Txn) -> dict[str, Any]:
            rv, pdu_ids, chain = self._state_ids(txn, origin, room_id, event_id)
            events = store.get_events(txn, [*pdu_ids, *chain])
            return {"pdus": [pdu_for_federation(events[e], rv) for e in pdu_ids if e in events],
                    "auth_chain": [pdu_for_federation(events[e], rv) for e in chain if e in events]}

        return await self.hs.db.run_read(run)

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        def run(txn: Txn) -> dict[str, Any]:
            rv = self._room_access(txn, origin, room_id)
            self._event_in_room(txn, room_id, event_id)
            chain = _auth_chain(txn, rv, room_id, [event_id])
            events = store.get_events(txn, chain)
            return {"auth_chain": [pdu_for_federation(events[e], rv) for e in chain if e in events]}

        return await self.hs.db.run_read(run)

    async def backfill(self, origin: str, room_id: str, starts: Sequence[str],
                       limit: int) -> dict[str, Any]:
        if limit < 0:
            raise invalid_param("limit must not be negative")

        def run(txn: Txn) -> dict[str, Any]:
            rv = self._room_access(txn, origin, room_id)
            found = fstore.walk_prev_events(txn, room_id, starts, (), min(limit, MAX_BACKFILL))
            return self._transaction(self._served(txn, rv, origin, room_id, found))

        return await self.hs.db.run_read(run)

    async def get_missing_events(self, origin: str, room_id: str,
                                 body: Mapping[str, Any]) -> dict[str, Any]:
        earliest, latest = _str_list(body.get("earliest_events")), _str_list(body.get("latest_events"))
        limit, min_depth = body.get("limit", 10), body.get("min_depth", 0)
        if earliest is None or latest is None:
            raise MatrixError(400, "M_BAD_JSON", "earliest_events and latest_events must be lists of event IDs")
        if not (_int(limit) and _int(min_depth)):
            raise MatrixError(400, "M_BAD_JSON", "limit and min_depth must be integers")

        def run(txn: Txn) -> dict[str, Any]:
            rv = self._room_access(txn, origin, room_id)
            found = fstore.walk_prev_events(
                txn, room_id, latest, earliest, max(0, min(limit, MAX_MISSING_EVENTS)),
                min_depth, include_starts=False)
            found.reverse()  # oldest first, as Synapse answers
            return {"events": self._served(txn, rv, origin, room_id, found)}

        return await self.hs.db.run_read(run)

    async def timestamp_to_event(self, origin: str, room_id: str, ts: int,
                                 direction: str) -> dict[str, Any]:
        """The nearest event the asking server may see: events hidden from it are passed
        over (never named), up to MAX_TIMESTAMP_SCAN of them, then 404."""
        def run(txn: Txn) -> dict[str, Any]:
            self._room_access(txn, origin, room_id)
            after: tuple[int, int] | None = None
            scanned = 0
            while scanned < MAX_TIMESTAMP_SCAN:
                batch = fstore.events_by_timestamp(txn, room_id, ts, direction,
                                                   TIMESTAMP_BATCH, after)
                visible = self._visible(txn, origin, room_id, [b[0] for b in batch])
                for event_id, origin_ts, _ in batch:
                    if visible[event_id]:
                        return {"event_id": event_id, "origin_server_ts": origin_ts}
                if len(batch) < TIMESTAMP_BATCH:
                    break
                scanned += len(batch)
                after = (batch[-1][1], batch[-1][2])
            raise not_found(f"Unable to find event from {ts} in direction {direction}")

        return await self.hs.db.run_read(run)


def _auth_chain(txn: Txn, rv: RoomVersion, room_id: str, event_ids: list[str]) -> list[str]:
    """The auth chain of events; in v12 rooms with the create event, which every event's
    auth depends on though no auth_events list names it (Synapse serves it so too)."""
    chain = graph.get_auth_chain_ids(txn, event_ids)
    create_id = create_event_id_from_room_id(room_id) if rv.room_id_is_create_event_hash else None
    if create_id is not None and any(e != create_id for e in event_ids):
        chain.add(create_id)
    return sorted(chain)


def _group_after(txn: Txn, event_id: str) -> int | None:
    groups = graph.get_state_groups(txn, event_id)
    return groups[1] if groups else None


def _str_list(value: object) -> list[str] | None:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
