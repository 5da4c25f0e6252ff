"""Backfill (server-server API "Backfilling and retrieving missing events"): when a client
pages back (`/messages`, dir b) to where this server's history of a room stops (it joined
after the room began elsewhere, or missed a gap), a server in the room is asked for the
events before that edge, `GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=N`.

- The edge: the backward extremities (storage/backfill.py), events that timeline events
  cite as prev_events but that have no place in the graph here; only those cited within
  the page's depths are asked for.
- Each returned PDU goes through the receiving checks (services/pdu_receiver.py: format,
  hashes, signatures, auth events, the state before it; the state at the oldest comes from
  `/state_ids`); what fails is dropped. Accepted events are persisted `backfilled`: placed
  by depth before the history here, with stream orderings below zero, so /sync never
  serves them as new and nobody is notified.
- Servers are tried one after another; each has a timeout and the whole has one, after
  which the page is answered with what is here (the backfill goes on, for the next page).
  An edge no server could fill is not asked for again for a while (backing off).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from veche.federation.errors import FederationError, path
from veche.services.pdu_receiver import PduRefused
from veche.storage import backfill as store
from veche.storage import federation_queue

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

BACKFILL_LIMIT = 100  # events asked for at a time (Synapse asks for 100)
MAX_EXTREMITIES = 5  # `v` values per request
SERVER_TIMEOUT_S = 10.0
PAGE_WAIT_S = 15.0  # how long a page waits for a backfill
RETRY_FIRST_S = 2.0  # an edge no server filled waits this long, doubling each time,
RETRY_MAX_S = 600.0  # up to this, before it is asked for again


class BackfillService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        # Edge event ID -> (when it may be asked for again, how long it waited last).
        self._failed: dict[str, tuple[float, float]] = {}
        self._running: dict[str, asyncio.Task[bool]] = {}  # one backfill per room at a time

    async def maybe_backfill(self, room_id: str, low: int, high: int | None) -> bool:
        """Fill the room's history before the edges cited at depths `low`..`high` (None:
        no upper bound); whether any event was added. Waits at most PAGE_WAIT_S."""
        if not self.hs.config.federation.enabled:
            return False
        task = self._running.get(room_id)
        if task is None:
            edges = await self.hs.db.run(store.backward_extremities, room_id, low, high)
            now = time.monotonic()
            wanted = [e for e, _ in edges if self._failed.get(e, (now, 0.0))[0] <= now]
            if not wanted:
                return False
            task = asyncio.ensure_future(self._backfill(room_id, wanted[:MAX_EXTREMITIES]))
            self._running[room_id] = task
            task.add_done_callback(lambda _t: self._running.pop(room_id, None))
        try:
            return await asyncio.wait_for(asyncio.shield(task), PAGE_WAIT_S)
        except TimeoutError:
            logger.info("backfill of %s still running after %ss: answering with what is here",
                        room_id, PAGE_WAIT_S)
            return False

    async def _backfill(self, room_id: str, edges: list[str]) -> bool:
        try:
            servers = await self._servers(room_id)
            for server in servers:
                try:
                    answer = await self.hs.federation_client.get_json(
                        server, path("/_matrix/federation/v1/backfill/{}", room_id,
                                     query={"v": edges, "limit": str(BACKFILL_LIMIT)}),
                        timeout_s=SERVER_TIMEOUT_S)
                except FederationError as e:
                    logger.info("backfill of %s from %s: %s", room_id, server, e)
                    continue
                pdus = answer.get("pdus")
                if isinstance(pdus, list) and await self._store(server, room_id, pdus):
                    return True
            return False
        except Exception:
            logger.exception("backfill of %s failed", room_id)
            return False
        finally:
            # What is still not placed was not to be had: not asked for again for a while.
            placed = await self.hs.db.run(store.placed_events, edges)
            now = time.monotonic()
            for edge in edges:
                if edge not in placed:
                    wait = min(self._failed.get(edge, (0.0, RETRY_FIRST_S / 2))[1] * 2, RETRY_MAX_S)
                    self._failed[edge] = (now + wait, wait)
            if len(self._failed) > 10_000:
                self._failed.clear()

    async def _servers(self, room_id: str) -> list[str]:
        joined = await self.hs.db.run(federation_queue.joined_servers, room_id)
        return sorted(s for s in joined if s != self.hs.server_name)

    async def _store(self, origin: str, room_id: str, pdus: Iterable[Any]) -> int:
        """Check and persist the events `origin` sent (oldest first); how many were new."""
        rv = await self.hs.events.room_version(room_id)
        receiver = self.hs.federation_inbound.receiver
        checked: dict[str, dict[str, Any]] = {}
        for pdu in list(pdus)[: BACKFILL_LIMIT * 2]:
            if not isinstance(pdu, dict) or pdu.get("room_id") != room_id:
                continue
            try:
                event = await receiver.check(rv, pdu)
            except PduRefused as e:
                logger.info("dropping a backfilled event from %s: %s", origin, e)
                continue
            checked[event["event_id"]] = event
        placed = await self.hs.db.run(store.placed_events, list(checked))
        new = sorted((e for i, e in checked.items() if i not in placed),
                     key=lambda e: (e["depth"], e["origin_server_ts"]))
        stored = 0
        for event in new:
            try:
                persisted = await receiver.receive(origin, rv, event, fill_gaps=False,
                                                   backfilled=True)
            except FederationError as e:
                logger.info("backfilled event %s from %s: %s", event["event_id"], origin, e)
                continue
            stored += int(not persisted.outlier)
        return stored
