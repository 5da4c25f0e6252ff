"""The event pipeline: build, authorise, sign, persist and announce a room event.

One task per room persists its queued sends in order, each on top of the room's current
state and citing the room's forward extremities as its prev_events (storage/event_graph.py).
Events made elsewhere (federation) join the same queue (`persist_received`), so one room's
events are persisted one at a time whatever their origin; both go through the one persist
step of services/persist.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from veche.core import auth as auth_rules
from veche.core import events as event_format
from veche.core.redaction import redact_event
from veche.core.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from veche.diskfull import disk_full_at
from veche.errors import MatrixError, forbidden, not_found
from veche.services.persist import EventPersister, Persisted
from veche.storage import backfill as backfill_store
from veche.storage import event_graph as graph
from veche.storage import events as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

# (device_id, txn_id, endpoint): a transaction ID is scoped to a device and an endpoint, the
# request's path without the ID (spec "Transaction identifiers").
TxnKey = tuple[str, str, str]

_CREATE_KEY = ("m.room.create", "")


@dataclass(slots=True, frozen=True)
class _SendReads:
    """What a local event is built from, read together (`EventService._send_reads`)."""

    parents: Callable[[], graph.PrevEvents | None]
    auth_keys: set[tuple[str, str]]
    state_ids: Callable[[], dict[tuple[str, str], str]]


# PDU keys that clients see (client-server API "Room Event Format").
CLIENT_KEYS = ("content", "event_id", "origin_server_ts", "room_id", "sender", "state_key", "type")


def client_event(event: dict[str, Any], *, now_ms: int | None = None) -> dict[str, Any]:
    """The client form of a stored PDU (its unsigned section copied, age filled in)."""
    out = {k: event[k] for k in CLIENT_KEYS if k in event}
    if "redacts" in event:
        out["redacts"] = event["redacts"]
    elif event["type"] == "m.room.redaction" and isinstance(event["content"].get("redacts"), str):
        # v11+ moved redacts into content; clients still read the top-level copy.
        out["redacts"] = event["content"]["redacts"]
    unsigned = dict(event.get("unsigned") or {})
    unsigned["age"] = max(0, (now_ms or int(time.time() * 1000)) - event["origin_server_ts"])
    out["unsigned"] = unsigned
    return out


_MAX_BATCH = 64


class _LoneEventFailed(Exception):
    """The one event of a batch failed: raised out of its transaction, which rolls back."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(slots=True)
class _SendRequest:
    rv: RoomVersion
    sender: str
    event_type: str
    content: dict[str, Any]
    state_key: str | None
    txn_key: TxnKey | None
    redacts: str | None
    result: asyncio.Future[Any]  # the stored PDU; a received event's Persisted
    received: dict[str, Any] | None = None  # an event made elsewhere, persisted as it is
    outlier: bool = False
    rejected: str | None = None  # a received event already known to fail its auth events
    missing_prev_states: Sequence[Mapping[tuple[str, str], str]] = ()
    backfilled: bool = False  # placed before the history here, never announced as new

    @property
    def timeline_only(self) -> bool:
        """Whether the event can move nothing but its room's timeline (a state event moves
        state, a redaction what clients hold): `StreamIdGenerator.get_next`'s `timeline`."""
        return self.state_key is None and self.event_type != "m.room.redaction"


class EventService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self._versions: OrderedDict[str, RoomVersion] = OrderedDict()
        self._state_events: OrderedDict[str, dict[str, Any]] = OrderedDict()
        # Sends waiting to be persisted, per room, and the task persisting each room's.
        self._pending: dict[str, list[_SendRequest]] = {}
        self._draining: dict[str, asyncio.Future[None]] = {}
        self._last_create_ts = 0
        self.persister = EventPersister(hs)

    async def room_version(self, room_id: str) -> RoomVersion:
        rv = self._versions.get(room_id)
        if rv is None:
            ident = await self.hs.db.run(store.get_room_version, room_id)
            if ident is None:
                raise not_found("Unknown room")
            rv = self._versions[room_id] = KNOWN_ROOM_VERSIONS[ident]
            if len(self._versions) > 100_000:
                self._versions.popitem(last=False)
        return rv

    async def send(
        self,
        room_id: str,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        *,
        txn_key: TxnKey | None = None,
        redacts: str | None = None,
    ) -> dict[str, Any]:
        """Create and persist an event; returns the stored PDU.

        txn_key is (device_id, txn_id, endpoint): a retried send with the same key returns
        the event created the first time instead of a new one.
        """
        rv = await self.room_version(room_id)
        request = _SendRequest(
            rv, sender, event_type, content, state_key, txn_key, redacts,
            asyncio.get_running_loop().create_future(),
        )
        return (await self._enqueue(room_id, request)).event

    async def persist_received(
        self, event: dict[str, Any], *, outlier: bool = False, rejected: str | None = None,
        missing_prev_states: Sequence[Mapping[tuple[str, str], str]] = (),
        backfilled: bool = False,
    ) -> Persisted:
        """Persist an event made elsewhere (its ID checked, its signatures and auth_events
        verified by the caller): its state before comes from its prev_events, which must be
        in the room's graph (else MissingPrevEvents) unless `missing_prev_states` gives the
        states after those that are not, and it is rejected if that state does not allow
        it, or with `rejected` (the caller found it fails its own auth events). It is
        soft-failed (stored, not announced) if current state does not allow it. An event
        already stored is returned as it was stored (an outlier gets its place in the graph).

        `backfilled` (services/backfill.py): an old event placed before the history here;
        it takes a stream ordering below zero, is never soft-failed (current state is
        later than it), notifies nobody and is not announced to /sync."""
        rv = await self.room_version(event["room_id"])
        request = _SendRequest(
            rv, event["sender"], event["type"], event.get("content") or {}, event.get("state_key"),
            None, None, asyncio.get_running_loop().create_future(), event, outlier, rejected,
            missing_prev_states, backfilled,
        )
        return await self._enqueue(event["room_id"], request)

    async def _enqueue(self, room_id: str, request: _SendRequest) -> Persisted:
        self._pending.setdefault(room_id, []).append(request)
        if room_id not in self._draining:
            self._draining[room_id] = self.hs.run_in_background(self._drain(room_id), lasting=True)
        # A client that goes away stops waiting; its event is still persisted (a retry with
        # the same transaction ID then gets it back).
        return await asyncio.shield(request.result)

    async def _drain(self, room_id: str) -> None:
        """Persist the room's queued sends, one transaction per batch: the room's events
        form one chain, and under load one commit serves many of them."""
        try:
            while queue := self._pending.get(room_id):
                batch, rest = queue[:_MAX_BATCH], queue[_MAX_BATCH:]
                if rest:
                    self._pending[room_id] = rest
                else:
                    del self._pending[room_id]
                await self._persist_batch(room_id, batch)
        finally:
            del self._draining[room_id]

    async def _persist_batch(self, room_id: str, batch: list[_SendRequest]) -> None:
        with contextlib.ExitStack() as stack:
            try:
                # Inside the try: a failure to take positions must answer the senders too.
                positions = [stack.enter_context(self.hs.stream.get_next(timeline=r.timeline_only))
                             for r in batch]
                outcomes = await self.hs.db.run(self._batch_txn, room_id, batch, positions)
            except _LoneEventFailed as e:  # its own error, answered as one in a batch is
                self.hs.push.forget_room(room_id)
                outcomes = [(None, False, e.error)]
            except Exception as e:
                if disk_full_at(e, self.hs.config.database_url) is None:  # else each sender's answer logs it
                    logger.exception("persisting %d event(s) in %s failed", len(batch), room_id)
                self.hs.push.forget_room(room_id)  # it may have cached uncommitted members
                outcomes = [(None, False, e)] * len(batch)
        for req, (persisted, is_new, error) in zip(batch, outcomes, strict=True):
            if error is not None:
                req.result.set_exception(error)
                continue
            assert persisted is not None
            req.result.set_result(persisted)
            if is_new:
                if self.hs.metrics is not None:
                    origin = "local" if req.received is None else "federation"
                    self.hs.metrics.EVENTS_PERSISTED.labels(origin).inc()
                self._announce(persisted.event, persisted.stream_ordering, persisted.members_changed)

    def _batch_txn(
        self, txn: Txn, room_id: str, batch: list[_SendRequest], positions: list[int]
    ) -> list[tuple[Persisted | None, bool, BaseException | None]]:
        out: list[tuple[Persisted | None, bool, BaseException | None]] = []
        if self.hs.cluster is not None:  # one process at a time on a room's graph
            positions = self.hs.cluster.lock_room(txn, room_id, len(positions))
        # A savepoint per event: one that fails leaves the others of the batch intact.
        # (Held writes on PostgreSQL: sent with the event's first read, and its own writes
        # flushed before it counts as done, so their errors stay its own.) A lone event
        # needs none, the transaction is its own: and a savepoint is not free on SQLite,
        # which copies every page the event changes into the savepoint's journal.
        lone = len(batch) == 1
        for req, pos in zip(batch, positions, strict=True):
            if not lone:
                txn.write("SAVEPOINT send_event")
            try:
                if req.received is not None:
                    if req.backfilled:
                        pos = backfill_store.next_backfill_position(txn)
                    persisted, is_new = self._receive_txn(txn, req, req.received, pos)
                else:
                    persisted, is_new = self._send_txn(
                        txn, req.rv, room_id, req.sender, req.event_type, req.content,
                        req.state_key, req.txn_key, req.redacts, pos,
                    )
                txn.flush()
            except Exception as e:
                if lone:
                    raise _LoneEventFailed(e) from e
                txn.execute("ROLLBACK TO SAVEPOINT send_event")
                txn.execute("RELEASE SAVEPOINT send_event")
                out.append((None, False, e))
                continue
            if not lone:
                txn.write("RELEASE SAVEPOINT send_event")
            out.append((persisted, is_new, None))
        return out

    def _send_txn(
        self, txn: Txn, rv: RoomVersion, room_id: str, sender: str, event_type: str,
        content: dict[str, Any], state_key: str | None, txn_key: TxnKey | None,
        redacts: str | None, pos: int,
    ) -> tuple[Persisted, bool]:
        # What the event builds on and its transaction ID's event are independent reads: on
        # PostgreSQL held, so the first one asked for takes all three in one round trip.
        reads = self._send_reads(txn, rv, room_id, sender, event_type, content, state_key)
        if txn_key is not None:
            existing_id = store.get_event_for_txn_id_later(txn, sender, *txn_key)()
            existing = store.get_event(txn, existing_id) if existing_id else None
            if existing is not None:  # a retry: nothing stored, nothing to announce
                return Persisted(existing, pos), False
        persisted = self._build_and_persist_txn(
            txn, rv, room_id, sender, event_type, content, state_key, txn_key, redacts, pos,
            reads,
        )
        return persisted, True

    def _send_reads(
        self, txn: Txn, rv: RoomVersion, room_id: str, sender: str, event_type: str,
        content: dict[str, Any], state_key: str | None,
    ) -> _SendReads:
        """The reads a local event is built from, held (`Txn.fetchall_later`)."""
        shape: dict[str, Any] = {"type": event_type, "sender": sender, "content": content}
        if state_key is not None:
            shape["state_key"] = state_key
        auth_keys = auth_rules.auth_types_for_event(rv, shape)
        wanted = [*auth_keys, _CREATE_KEY]
        if state_key is not None:
            wanted.append((event_type, state_key))
        return _SendReads(graph.prev_events_for_local_event_later(txn, room_id), auth_keys,
                          store.get_current_state_ids_later(txn, room_id, wanted))

    def _receive_txn(
        self, txn: Txn, req: _SendRequest, event: dict[str, Any], pos: int,
    ) -> tuple[Persisted, bool]:
        event_id = event["event_id"]
        stored = store.get_event_position(txn, event_id)
        as_stored = None if stored is None else Persisted(
            event, stored[1], graph.rejection_reason(txn, event_id))
        if as_stored is not None and (req.outlier or not backfill_store.is_outlier(txn, event_id)):
            return as_stored, False
        context = self.persister.compute_context(
            txn, req.rv, event, outlier=req.outlier, missing_prev_states=req.missing_prev_states,
            soft_fail=not req.backfilled)
        if req.rejected is not None and context.rejected is None:
            context = dataclasses.replace(context, rejected=req.rejected, soft_failed=False)
        if as_stored is not None:
            # An outlier gets its place in the graph, unless the state here would reject one
            # held accepted (it passed its auth events; the state before it may be partial).
            if context.rejected is not None and as_stored.rejected is None:
                return as_stored, False
            backfill_store.forget_outlier(txn, event_id)
        persisted = self.persister.persist_event(txn, event, context, pos, rv=req.rv,
                                                 backfilled=req.backfilled)
        accepted = context.rejected is None and not req.outlier and not context.soft_failed
        if accepted and event["type"] == "m.room.redaction":
            self._apply_received_redaction(txn, req.rv, event, context.state_group_before)
        # Redactions that came before this event, their target.
        for redaction_id, group_before in backfill_store.take_pending_redactions(txn, event_id):
            redaction = store.get_event(txn, redaction_id)
            if redaction is not None:
                self._apply_received_redaction(txn, req.rv, redaction, group_before)
        return persisted, accepted and not req.backfilled

    def _apply_received_redaction(
        self, txn: Txn, rv: RoomVersion, redaction: dict[str, Any], group_before: int | None,
    ) -> None:
        """Another server's redaction takes effect when its sender's server also sent the
        target, or its sender may redact others' events in the state before it (the spec's
        redaction rule). A target not here yet waits for it (it takes effect when the
        target arrives: backfill, gap filling or a transaction)."""
        redacts = redaction.get("redacts") if "redacts" in redaction else \
            (redaction.get("content") or {}).get("redacts")
        if not isinstance(redacts, str):
            return
        target = store.get_event(txn, redacts)
        if target is None:
            backfill_store.add_pending_redaction(txn, redacts, redaction["event_id"])
            return
        if target["room_id"] != redaction["room_id"]:
            return
        if target["sender"].split(":", 1)[1] != redaction["sender"].split(":", 1)[1]:
            state_ids = (graph.get_state_group_ids(txn, group_before)
                         if group_before is not None else {})
            keys = [("m.room.power_levels", ""), ("m.room.create", ""),
                    ("m.room.member", redaction["sender"])]
            events = store.get_events(txn, [state_ids[k] for k in keys if k in state_ids])
            auth_state = {k: events[state_ids[k]] for k in keys if state_ids.get(k) in events}
            pl = auth_state.get(("m.room.power_levels", ""), {}).get("content", {})
            level = auth_rules.get_user_power_level(redaction["sender"], auth_state, rv)
            if level < auth_rules.get_named_level(pl, "redact", 50):
                return
        self._apply_redaction(txn, rv, redaction, redacts)

    def _build_and_persist_txn(
        self, txn: Txn, rv: RoomVersion, room_id: str, sender: str, event_type: str,
        content: dict[str, Any], state_key: str | None, txn_key: TxnKey | None,
        redacts: str | None, pos: int, reads: _SendReads,
    ) -> Persisted:
        parents = reads.parents()
        if parents is None:
            raise not_found("Unknown room")
        event: dict[str, Any] = {
            "type": event_type,
            "room_id": room_id,
            "sender": sender,
            "content": content,
            "origin_server_ts": int(time.time() * 1000),
            "prev_events": parents.event_ids,
            "depth": parents.depth + 1,
        }
        if state_key is not None:
            event["state_key"] = state_key
        if redacts is not None:
            # v11+ carry redacts in content; older versions at the top level.
            if rv.identifier in ("10",):
                event["redacts"] = redacts
            else:
                event["content"] = {**content, "redacts": redacts}
        auth_keys = reads.auth_keys
        state_ids = reads.state_ids()
        needed = {k: state_ids[k] for k in auth_keys if k in state_ids}
        lookup = dict(needed)
        if _CREATE_KEY in state_ids:
            lookup[_CREATE_KEY] = state_ids[_CREATE_KEY]
        auth_events = self.state_events(txn, list(lookup.values()))
        auth_state = {k: auth_events[eid] for k, eid in lookup.items()}
        event["auth_events"] = sorted(needed.values())
        try:
            event_format.validate_content(event_type, content)
            event_format.check_canonical_json(content, "content")
        except ValueError as e:
            raise MatrixError(400, "M_BAD_JSON", str(e)) from None
        try:
            event_format.check_event_size_limits(event)
        except ValueError as e:
            raise MatrixError(413, "M_TOO_LARGE", str(e)) from None
        try:
            auth_rules.check_auth_rules(rv, event, auth_state)
        except auth_rules.AuthError as e:
            raise forbidden(str(e)) from None
        if event_type == "m.room.redaction" and redacts is not None:
            self._check_redaction(txn, rv, event, redacts, auth_state)
        event = self._sign(event, rv)
        if state_key is not None:
            prev_state = state_ids.get((event_type, state_key))
            if prev_state is not None:
                prev = store.get_event(txn, prev_state)
                unsigned: dict[str, Any] = {"replaces_state": prev_state}
                if prev is not None:
                    unsigned["prev_content"] = prev["content"]
                    unsigned["prev_sender"] = prev["sender"]
                event["unsigned"] = unsigned
        key = (sender, *txn_key) if txn_key else None
        state_after = dict(auth_state)
        if state_key is not None:
            state_after[(event_type, state_key)] = event
        persisted = self.persister.persist_event(
            txn, event, parents.context, pos, rv=rv, txn_key=key, auth_state=state_after)
        if event_type == "m.room.redaction" and redacts is not None:
            self._apply_redaction(txn, rv, event, redacts)
        return persisted

    def state_events(self, txn: Txn, event_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Auth events by ID, parsed once: the same create, power levels and member events
        authorise every send in a room. Callers must not modify them."""
        cache = self._state_events
        out = {eid: cache[eid] for eid in event_ids if eid in cache}
        missing = [eid for eid in event_ids if eid not in out]
        if missing:
            fetched = store.get_events(txn, missing)
            out.update(fetched)
            cache.update(fetched)
            while len(cache) > 50_000:
                cache.popitem(last=False)
        return out

    def _sign(self, event: dict[str, Any], rv: RoomVersion) -> dict[str, Any]:
        key = self.hs.signing_key
        signed = event_format.sign_event(event, self.hs.server_name, key, rv)
        signed["event_id"] = event_format.compute_event_id(signed, rv)
        return signed

    def _check_redaction(
        self, txn: Txn, rv: RoomVersion, event: dict[str, Any], redacts: str,
        auth_state: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        target = store.get_event(txn, redacts)
        if target is None or target["room_id"] != event["room_id"]:
            raise not_found("Event to redact not found")
        if target["sender"] == event["sender"]:
            return
        pl = auth_state.get(("m.room.power_levels", ""), {}).get("content", {})
        level = auth_rules.get_user_power_level(event["sender"], auth_state, rv)
        if level < auth_rules.get_named_level(pl, "redact", 50):
            raise forbidden("You may not redact other users' events")

    def _apply_redaction(self, txn: Txn, rv: RoomVersion, redaction: dict[str, Any], redacts: str) -> None:
        target = store.get_event(txn, redacts)
        if target is None or target.get("unsigned", {}).get("redacted_because"):
            return
        pruned = redact_event(target, rv)
        pruned["event_id"] = target["event_id"]
        pruned["unsigned"] = {"redacted_because": client_event(redaction)}
        store.apply_redaction(txn, redacts, pruned, redaction["event_id"])
        self._state_events.pop(redacts, None)
        txn.call_after(lambda: self._state_events.pop(redacts, None))

    def _announce(
        self, event: dict[str, Any], pos: int | None = None, members: list[str] | None = None,
    ) -> None:
        keys = [event["room_id"]]
        if event["type"] == "m.room.member":
            keys.append(event["state_key"])
        keys += [m for m in members or () if m not in keys]
        self.hs.notifier.notify(keys, pos)

    async def create_room(
        self, creator: str, rv: RoomVersion, create_content: dict[str, Any]
    ) -> dict[str, Any]:
        """Persist a new room's m.room.create event; returns it (its room_id included)."""
        # From v12 the room ID is the create event's hash, so two rooms created by the same
        # user with the same content in the same millisecond would collide: their
        # timestamps are kept apart.
        now = max(int(time.time() * 1000), self._last_create_ts + 1)
        for _ in range(100):
            self._last_create_ts = now
            event = self._build_create_event(creator, rv, create_content, now)

            def persist(txn: Txn, pos: int, event: dict[str, Any] = event, ts: int = now) -> bool:
                if store.get_room_version(txn, event["room_id"]) is not None:
                    return False  # taken (another worker, or a clock that went back)
                store.insert_room(txn, event["room_id"], rv.identifier, creator, ts)
                self.persister.persist_event(txn, event, graph.EventContext(extremities=()), pos, rv=rv)
                return True

            with self.hs.stream.get_next() as pos:
                if await self.hs.db.run(persist, pos):
                    break
            now += 1
        else:  # pragma: no cover - needs 100 collisions in a row
            raise MatrixError(500, "M_UNKNOWN", "Could not allocate a room ID")
        self._versions[event["room_id"]] = rv
        self._announce(event)
        return event

    def _build_create_event(
        self, creator: str, rv: RoomVersion, create_content: dict[str, Any], now: int
    ) -> dict[str, Any]:
        event: dict[str, Any] = {
            "type": "m.room.create",
            "sender": creator,
            "state_key": "",
            "content": create_content,
            "origin_server_ts": now,
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
        }
        if not rv.room_id_is_create_event_hash:
            event["room_id"] = f"!{_random_localpart()}:{self.hs.server_name}"
        try:
            auth_rules.check_auth_rules(rv, event, {})
        except auth_rules.AuthError as e:
            raise MatrixError(400, "M_BAD_JSON", f"Invalid m.room.create content: {e}") from None
        event = self._sign(event, rv)
        if rv.room_id_is_create_event_hash:
            event["room_id"] = event_format.room_id_from_create_event_id(event["event_id"])
        return event


def _random_localpart() -> str:
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_letters) for _ in range(18))
