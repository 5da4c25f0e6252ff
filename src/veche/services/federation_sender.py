"""The outbound federation queue: one per destination, durable, ordered, batched.

- A local event persisted in a room with members on other servers gets one row per such
  server in `federation_outbox`, written in the event's own transaction
  (`queue_event_txn`, called by the persist step), so a restart loses nothing.
- One task per destination sends its rows in queue order, at most 50 PDUs and 100 EDUs per
  `PUT /send/{txnId}`; rows are deleted once the destination answered 200.
- A failed transaction backs the destination off (10 s, doubling, at most an hour; kept in
  `federation_destinations` so a restart keeps it). Any authenticated request from the
  destination (`heard_from`) ends the backoff at once.
- Back from an outage with more than a batch owed, a destination gets only the newest queued
  event of each room (catch-up): it fetches the gap itself (/get_missing_events).
- Ephemeral EDUs (typing) are not queued durably: kept in memory, the newest per key, sent
  with the next transaction, dropped once older than EPHEMERAL_LIFETIME_MS or when that
  transaction fails (a typing notice from before an outage means nothing after it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from veche.core.federation_pdus import pdu_for_federation
from veche.federation.errors import FederationDenied, FederationError, path
from veche.storage import events as ev_store
from veche.storage import federation_queue as queue
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

MAX_PDUS = 50
MAX_EDUS = 100
MIN_BACKOFF_MS = 10_000
MAX_BACKOFF_MS = 3600_000
SEND_TIMEOUT_S = 60
EPHEMERAL_LIFETIME_MS = 20_000


def now_ms() -> int:
    return int(time.time() * 1000)


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


class FederationSender:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.server_name = hs.server_name
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._more: dict[str, asyncio.Event] = {}  # new rows queued
        self._woken: dict[str, asyncio.Event] = {}  # the destination was heard from
        self._backing_off: set[str] = set()
        self._last_heard: dict[str, int] = {}  # destination -> when it last asked us something
        # room_id -> servers with joined members; dropped whenever membership may change.
        self._hosts: dict[str, frozenset[str]] = {}
        self._txn_counter = 0
        # destination -> key -> (queued at, EDU): the newest ephemeral EDU of each key
        self._ephemeral: dict[str, dict[Any, tuple[int, dict[str, Any]]]] = {}

    # --- queueing (in the event's transaction) ----------------------------------------
    def queue_event_txn(self, txn: Txn, event: dict[str, Any], members_changed: list[str]) -> None:
        """The persist step's hook for an accepted event: a local event is owed to every
        other server with a joined member (and a kicked or banned member's own server)."""
        room_id = event["room_id"]
        is_member = event["type"] == "m.room.member"
        if is_member or members_changed:
            self._forget_hosts(txn, room_id)
        target = event.get("state_key")
        if is_member and isinstance(target, str) and \
                (event.get("content") or {}).get("membership") == "join":
            # Whoever joins learns who is present (services/federation_edus.py).
            txn.call_after(lambda: self.hs.call_on_loop(self._joined, room_id, target))
        if server_of(event["sender"]) != self.server_name:
            return
        destinations = set(self._room_hosts(txn, room_id))
        if is_member and isinstance(target, str) and \
                (event.get("content") or {}).get("membership") in ("leave", "ban"):
            destinations.add(server_of(target))
        self.queue_pdu_txn(txn, room_id, event["event_id"], destinations)

    def _joined(self, room_id: str, user_id: str) -> None:
        self.hs.run_in_background(self.hs.federation_edus.member_joined(room_id, user_id))

    def queue_pdu_txn(self, txn: Txn, room_id: str, event_id: str, destinations: set[str]) -> None:
        destinations = {d for d in destinations if d and d != self.server_name}
        if not destinations:
            return
        queue.enqueue_pdu(txn, destinations, room_id, event_id, now_ms())
        txn.call_after(lambda: self.hs.call_on_loop(self.kick, sorted(destinations)))

    def _room_hosts(self, txn: Txn, room_id: str) -> frozenset[str]:
        hosts = self._hosts.get(room_id)
        if hosts is None:
            hosts = frozenset(queue.joined_servers(txn, room_id))
            if len(self._hosts) > 10_000:
                self._hosts.clear()
            self._hosts[room_id] = hosts
        return hosts

    def _forget_hosts(self, txn: Txn, room_id: str) -> None:
        self._hosts.pop(room_id, None)
        # Also after commit: a concurrent reader may have cached the uncommitted view.
        txn.call_after(lambda: self._hosts.pop(room_id, None))

    async def room_hosts(self, room_id: str) -> set[str]:
        return set(await self.hs.db.run(queue.joined_servers, room_id)) - {self.server_name}

    async def queue_depths(self) -> dict[str, int]:
        return await self.hs.db.run(queue.depths)

    async def send_event_to(self, event: dict[str, Any], destinations: set[str]) -> None:
        """Queue an event made elsewhere (a join, leave or knock received through us, the
        resident server) for other servers of the room."""
        await self.hs.db.run(self.queue_pdu_txn, event["room_id"], event["event_id"], destinations)

    async def queue_edu(self, destination: str, edu_type: str, content: dict[str, Any]) -> None:
        if destination == self.server_name or not self.hs.federation_client.allowed(destination):
            return
        await self.hs.db.run(queue.enqueue_edu, destination,
                             {"edu_type": edu_type, "content": content}, now_ms())
        self.kick([destination])

    def send_ephemeral(self, destination: str, edu_type: str, content: dict[str, Any],
                       key: Any) -> None:
        """Send an EDU best-effort with the next transaction; a newer one of the same key
        replaces it."""
        if destination == self.server_name or not self.hs.federation_client.allowed(destination):
            return
        owed = self._ephemeral.setdefault(destination, {})
        if len(owed) > 1000:  # a destination that never answers: keep the newest only
            owed.clear()
        owed[key] = (now_ms(), {"edu_type": edu_type, "content": content})
        self.kick([destination])

    def _take_ephemeral(self, destination: str, room: int) -> list[dict[str, Any]]:
        owed = self._ephemeral.pop(destination, {})
        fresh = now_ms() - EPHEMERAL_LIFETIME_MS
        edus = [edu for ts, edu in owed.values() if ts >= fresh]
        return edus[-room:] if room > 0 else []

    # --- the per-destination tasks ------------------------------------------------------
    def start(self) -> None:
        """Resume the queues the database holds (after a restart)."""
        self.hs.run_in_background(self._resume())

    async def _resume(self) -> None:
        destinations = await self.hs.db.run(queue.destinations_with_pending)
        self.kick(destinations)

    def kick(self, destinations: list[str]) -> None:
        for d in destinations:
            self._more.setdefault(d, asyncio.Event()).set()
            task = self._tasks.get(d)
            if task is None or task.done():
                self._tasks[d] = asyncio.ensure_future(self._run(d))

    def heard_from(self, origin: str) -> None:
        """An authenticated request came from `origin`: it is up, so stop backing off."""
        if len(self._last_heard) > 100_000:
            self._last_heard.clear()
        self._last_heard[origin] = now_ms()
        woken = self._woken.get(origin)
        if woken is not None:
            woken.set()
        if origin in self._backing_off and (origin not in self._tasks or self._tasks[origin].done()):
            self.kick([origin])

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()

    async def _run(self, destination: str) -> None:
        more = self._more.setdefault(destination, asyncio.Event())
        woken = self._woken.setdefault(destination, asyncio.Event())
        try:
            while True:
                backoff = await self.hs.db.run(queue.get_backoff, destination)
                if backoff is not None:
                    self._backing_off.add(destination)
                    woken.clear()
                    wait_s = (backoff[1] + backoff[2] - now_ms()) / 1000
                    # Heard from since the last failure (even before this task began, as
                    # right after a restart): try now.
                    if wait_s > 0 and self._last_heard.get(destination, 0) < backoff[1]:
                        try:
                            await asyncio.wait_for(woken.wait(), wait_s)
                        except TimeoutError:
                            pass
                more.clear()
                sent = await self._send_batch(destination, recovering=backoff is not None)
                if sent is None:  # failed: back off and try again
                    continue
                if backoff is not None:
                    await self.hs.db.run(queue.clear_backoff, destination)
                    self._backing_off.discard(destination)
                if not sent and not more.is_set():
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("federation queue to %s stopped", destination)
        finally:
            if self._tasks.get(destination) is asyncio.current_task():
                del self._tasks[destination]

    async def _send_batch(self, destination: str, *, recovering: bool) -> int | None:
        """Send the oldest rows owed; how many were sent, or None when the send failed."""
        if recovering and await self.hs.db.run(queue.pending_pdu_count, destination) > MAX_PDUS:
            dropped = await self.hs.db.run(queue.keep_newest_per_room, destination)
            logger.info("catching %s up: %d older events left for it to fetch", destination, dropped)
        pdu_rows, edu_rows = await self.hs.db.run(queue.next_batch, destination, MAX_PDUS, MAX_EDUS)
        ephemeral = self._take_ephemeral(destination, MAX_EDUS - len(edu_rows))
        if not pdu_rows and not edu_rows and not ephemeral:
            return 0
        ids = [i for i, _ in pdu_rows] + [i for i, _ in edu_rows]
        events = await self.hs.db.run(ev_store.get_events, [e for _, e in pdu_rows])
        pdus = []
        for _, event_id in pdu_rows:
            event = events.get(event_id)
            if event is not None:
                rv = await self.hs.events.room_version(event["room_id"])
                pdus.append(pdu_for_federation(event, rv))
        self._txn_counter += 1
        txn_id = f"{now_ms()}-{self._txn_counter}-{min(ids, default=0)}"
        body = {"origin": self.server_name, "origin_server_ts": now_ms(), "pdus": pdus,
                "edus": [e for _, e in edu_rows] + ephemeral}
        try:
            answer = await self.hs.federation_client.put_json(
                destination, path("/_matrix/federation/v1/send/{}", txn_id), body,
                timeout_s=SEND_TIMEOUT_S)
        except FederationDenied as e:
            # Never deliverable while the configuration says so: not kept for ever.
            logger.info("dropping %d queued item(s) for %s: %s", len(ids), destination, e)
            await self.hs.db.run(queue.delete_sent, ids)
            return len(ids) + len(ephemeral)
        except FederationError as e:
            await self._back_off(destination, e)
            return None
        for event_id, result in (answer.get("pdus") or {}).items():
            if isinstance(result, dict) and result.get("error"):
                logger.info("%s refused %s: %s", destination, event_id, result["error"])
        await self.hs.db.run(queue.delete_sent, ids)
        return len(ids) + len(ephemeral)

    async def _back_off(self, destination: str, error: Exception) -> None:
        previous = await self.hs.db.run(queue.get_backoff, destination)
        now = now_ms()
        interval = MIN_BACKOFF_MS if previous is None else min(previous[2] * 2, MAX_BACKOFF_MS)
        failure_ts = now if previous is None else previous[0]
        await self.hs.db.run(queue.set_backoff, destination, failure_ts, now, interval)
        self._backing_off.add(destination)
        logger.info("federation to %s failed (%s); next try in %d s", destination, error,
                    interval // 1000)
