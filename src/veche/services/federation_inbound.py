"""Transactions from other servers (`PUT /_matrix/federation/v1/send/{txnId}`).

- Idempotent per (origin, txnId): the answer is kept, and a retry gets it back without
  anything being processed again (recorded in the database within a second, several at
  once). One origin's transactions are handled one at a time, in order; PDUs of different
  rooms concurrently, those of one room in order.
- At most 50 PDUs and 100 EDUs, else 400. Otherwise always 200, with a result per PDU
  (`{}` or `{"error": ...}`): Synapse backs off a destination after any other answer.
- A PDU is taken only for a room this server is in, from an origin the room's server ACL
  allows and that is in the room (a joined user, or the PDU is the membership event of one
  of its users); then services/pdu_receiver.py. PDUs for rooms unknown here (no room
  version to compute their ID with) are left out of the answer, as Synapse does.
- EDUs: m.typing and m.receipt for users of the origin joined to the room; m.presence
  (services/federation_edus.py); m.device_list_update and m.signing_key_update
  (services/device_lists.py), m.direct_to_device (services/to_device.py); the others are
  accepted and ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from veche.core.events import EventFormatError, event_id_of_reference_input, reference_input
from veche.core.federation_pdus import is_v12_create
from veche.core.identifiers import server_name_of
from veche.core.room_versions import RoomVersion
from veche.core.server_acl import server_allowed
from veche.errors import MatrixError, bad_json
from veche.services.pdu_receiver import PduReceiver, PduRefused, Prefetched
from veche.services.server_acl import DENIED, origin_allowed
from veche.storage import events as store
from veche.storage import federation_events as fstore
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer

logger = logging.getLogger(__name__)

MAX_PDUS = 50
# The records of transactions past their keeping time are deleted with every this many
# writes of records.
FORGET_TRANSACTIONS_EVERY = 64
# Received transactions' answers are recorded (for retries) this long after, together.
SAVE_AFTER_S = 1.0
# `_receive_pdu`'s gate not asked yet (a PDU after the first of its room in a transaction).
_UNGATED = "\0ungated"
# A PDU: its event ID, itself, and what its signatures sign if known (core.events.reference_input).
_Pdu = tuple[str, dict[str, Any], bytes | None]
_RoomPdus = tuple[RoomVersion, list[_Pdu]]
_Gated = tuple[str | None, Prefetched | None]
MAX_EDUS = 100
TYPING_TIMEOUT_MS = 30_000  # a remote typing notice lasts as Synapse's federation one does


class FederationInbound:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.receiver = PduReceiver(hs)
        self._origin_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Answers not recorded in the database yet (origin, txn ID) -> the record.
        self._unsaved: dict[tuple[str, str], tuple[str, str, dict[str, Any], int]] = {}
        self._saving: asyncio.Task[None] | None = None
        self._saved = 0  # writes of records since the start

    # --- transactions -----------------------------------------------------------------------

    async def on_send(self, origin: str, txn_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        pdus = body.get("pdus", [])
        edus = body.get("edus", [])
        if not isinstance(pdus, list) or not isinstance(edus, list):
            raise bad_json("pdus and edus must be lists")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise bad_json(f"A transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs")
        # One lock per server that ever authenticated a transaction: few, and kept.
        async with self._origin_locks[origin]:
            unsaved = self._unsaved.get((origin, txn_id))
            if unsaved is not None:
                return unsaved[2]
            by_room = await self._identify(origin, pdus)
            # The replay check and the gate of each room's first PDU share one database
            # transaction (the later PDUs of a room are gated in turn: the earlier ones may
            # change who is in it).
            firsts = [(room_id, rv, *room_pdus[0][:2]) for room_id, (rv, room_pdus) in by_room.items()]
            done, gates = await self.hs.db.run(self._open, origin, txn_id, firsts)
            if done is not None:
                return done
            response = {"pdus": await self._receive_pdus(origin, by_room, gates)}
            for edu in edus:
                await self._receive_edu(origin, edu)
            self._unsaved[(origin, txn_id)] = (origin, txn_id, response, int(time.time() * 1000))
            if self._saving is None:
                self._saving = self.hs.run_in_background(self._save_transactions(), lasting=True)
            return response

    async def _save_transactions(self) -> None:
        """Record the answers of the transactions taken in the last SAVE_AFTER_S, in one
        database transaction: one of its own per transaction cost a tenth of a received PDU's
        CPU. Until then a retry is answered from memory; one arriving after a crash in
        between is processed again, which stores nothing twice (PDUs stored are skipped,
        to-device messages are delivered once per message_id)."""
        try:
            await asyncio.sleep(SAVE_AFTER_S)  # a graceful shutdown waits for it
        finally:
            self._saving = None
        records = list(self._unsaved.values())
        self._saved += 1
        try:
            await self.hs.db.run(partial(
                fstore.store_received_transactions,
                forget_old=self._saved % FORGET_TRANSACTIONS_EVERY == 1), records)
        except Exception:
            logger.exception("recording %d received transaction(s)", len(records))
        for origin, txn_id, _, _ in records:
            self._unsaved.pop((origin, txn_id), None)

    async def _identify(self, origin: str, pdus: list[Any]) -> dict[str, _RoomPdus]:
        """The PDUs with an ID by room, in order. PDUs for rooms unknown here have none (no
        room version to compute it with): they are left out of the answer, as Synapse does."""
        by_room: dict[str, _RoomPdus] = {}
        for pdu in pdus:
            if not isinstance(pdu, dict) or not isinstance(pdu.get("room_id"), str):
                continue
            room_id = pdu["room_id"]
            if room_id not in by_room:
                try:
                    rv = await self.hs.events.room_version(room_id)
                except MatrixError:
                    logger.info("ignoring a PDU from %s for unknown room %s", origin, room_id)
                    continue
                by_room[room_id] = (rv, [])
            rv, room_pdus = by_room[room_id]
            try:
                reference = reference_input(pdu, rv)
            except (EventFormatError, ValueError, TypeError):
                continue
            # The same bytes as the signatures sign, unless the PDU carries what the
            # reference hash leaves out and they do not (an event_id; a v12 create's room).
            signed = None if "event_id" in pdu or is_v12_create(pdu, rv) else reference
            room_pdus.append((event_id_of_reference_input(reference), pdu, signed))
        return {r: v for r, v in by_room.items() if v[1]}

    def _open(self, txn: Txn, origin: str, txn_id: str,
              firsts: list[tuple[str, RoomVersion, str, dict[str, Any]]],
              ) -> tuple[dict[str, Any] | None, dict[str, _Gated]]:
        """(the stored answer of a transaction seen before, or None; by event ID, `_gate` of
        each (room, room version, event ID, PDU) of `firsts` and, for those it lets in, what
        receiving them reads first)."""
        done = fstore.get_received_transaction(txn, origin, txn_id)
        if done is not None:
            return done, {}
        gates: dict[str, _Gated] = {}
        for room_id, rv, event_id, pdu in firsts:
            refusal = self._gate(txn, origin, room_id, event_id, pdu)
            gates[event_id] = (refusal, None if refusal is not None
                               else self.receiver.prefetch(txn, rv, pdu))
        return None, gates

    async def _receive_pdus(self, origin: str, by_room: dict[str, _RoomPdus],
                            gates: dict[str, _Gated]) -> dict[str, dict[str, Any]]:
        results: dict[str, dict[str, Any]] = {}

        async def room(room_id: str, rv: RoomVersion, room_pdus: list[_Pdu]) -> None:
            for i, (event_id, pdu, signed) in enumerate(room_pdus):
                error = await self._receive_pdu(origin, room_id, rv, event_id, pdu, signed,
                                                *(gates[event_id] if i == 0 else (_UNGATED, None)))
                results[event_id] = {} if error is None else {"error": error}

        await asyncio.gather(*(room(r, rv, p) for r, (rv, p) in by_room.items()))
        return results

    async def _receive_pdu(self, origin: str, room_id: str, rv: RoomVersion, event_id: str,
                           pdu: dict[str, Any], signed: bytes | None, gate: str | None,
                           known: Prefetched | None) -> str | None:
        """The error to answer for the PDU, or None. `signed`: what its signatures sign, if
        known; `gate`: what `_gate` said of it, if it was asked already; `known`:
        PduReceiver.prefetch of it."""
        try:
            if gate is _UNGATED:
                gate = await self.hs.db.run(self._gate, origin, room_id, event_id, pdu)
            if gate is not None:
                return gate or None
            event = await self.receiver.check(rv, pdu, event_id=event_id, signed=signed)
            persisted = await self.receiver.receive(origin, rv, event, known=known)
        except PduRefused as e:
            logger.info("PDU %s from %s refused: %s", event_id, origin, e)
            return str(e)
        except Exception:
            # One bad PDU must not cost the others their answers, nor the origin a 500.
            logger.exception("receiving PDU %s from %s failed", event_id, origin)
            return "internal error while processing this event"
        if persisted.rejected is not None:
            return f"rejected: {persisted.rejected}"
        return None

    def _gate(self, txn: Txn, origin: str, room_id: str, event_id: str, pdu: Mapping[str, Any],
              ) -> str | None:
        """Why this room takes no PDU from `origin` (None: it does), or "" for one already
        stored, which needs nothing more; one stored rejected is still rejected (it was
        recorded as such, and nothing is checked again)."""
        facts = fstore.pdu_gate_facts(txn, room_id, event_id, self.hs.server_name, origin)
        if facts.stored:
            return "rejected: it was rejected when first received" if facts.stored_rejected else ""
        if not facts.we_joined:
            return "This server is not in the room"
        if not server_allowed(origin, facts.acl.get("content") if facts.acl else None):
            return DENIED
        own_membership = (pdu.get("type") == "m.room.member"
                          and isinstance(pdu.get("state_key"), str)
                          and server_name_of(pdu["state_key"]) == origin)
        if not own_membership and not facts.origin_joined:
            return f"{origin} is not in the room"
        return None

    # --- EDUs -------------------------------------------------------------------------------

    async def _receive_edu(self, origin: str, edu: Any) -> None:
        if not isinstance(edu, dict) or not isinstance(edu.get("content"), dict):
            return
        try:
            if edu.get("edu_type") == "m.typing":
                await self._typing(origin, edu["content"])
            elif edu.get("edu_type") == "m.receipt":
                await self._receipts(origin, edu["content"])
            elif edu.get("edu_type") == "m.presence":
                await self.hs.federation_edus.receive_presence(origin, edu["content"])
            elif edu.get("edu_type") == "m.device_list_update":
                await self.hs.device_lists.on_device_list_update(origin, edu["content"])
            elif edu.get("edu_type") == "m.signing_key_update":
                await self.hs.device_lists.on_signing_key_update(origin, edu["content"])
            elif edu.get("edu_type") == "m.direct_to_device":
                await self.hs.to_device.receive_remote(origin, edu["content"])
        except MatrixError:
            pass
        except Exception:
            logger.exception("EDU %s from %s failed", edu.get("edu_type"), origin)

    def _member_of_origin(self, txn: Txn, origin: str, room_id: str, user_id: str) -> bool:
        """Whether `user_id`, a user of `origin`, is joined to a room that takes EDUs from
        `origin` (server ACL)."""
        if server_name_of(user_id) != origin:
            return False
        if not origin_allowed(txn, room_id, origin):
            return False
        membership = store.get_membership(txn, room_id, user_id)
        return membership is not None and membership[0] == "join"

    async def _typing(self, origin: str, content: Mapping[str, Any]) -> None:
        room_id, user_id, typing = content.get("room_id"), content.get("user_id"), content.get("typing")
        if not (isinstance(room_id, str) and isinstance(user_id, str) and isinstance(typing, bool)):
            return
        if await self.hs.db.run(self._member_of_origin, origin, room_id, user_id):
            self.hs.typing.set_typing(room_id, user_id, typing, TYPING_TIMEOUT_MS)

    async def _receipts(self, origin: str, content: Mapping[str, Any]) -> None:
        for room_id, by_type in content.items():
            if not isinstance(by_type, dict):
                continue
            users = by_type.get("m.read")
            if not isinstance(users, dict):
                continue
            for user_id, receipt in users.items():
                if not isinstance(receipt, dict):
                    continue
                ids = receipt.get("event_ids")
                data = receipt.get("data")
                thread_id = data.get("thread_id") if isinstance(data, dict) else None
                if not isinstance(ids, list) or not ids or not isinstance(ids[0], str):
                    continue
                if not await self.hs.db.run(self._member_of_origin, origin, room_id, user_id):
                    continue
                await self.hs.receipts.set_receipt(
                    room_id, user_id, "m.read", ids[0],
                    thread_id if isinstance(thread_id, str) else None)

