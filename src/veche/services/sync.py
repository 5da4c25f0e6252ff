"""/sync: what changed for a user since a token, waiting (long-poll) until something does."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from veche.core.push_rules import default_ruleset
from veche.services.events import client_event
from veche.storage import events as event_store
from veche.storage import sync as store
from veche.storage.database import Txn
from veche.streams import StreamToken

if TYPE_CHECKING:
    from veche.server import HomeServer
    from veche.services.auth import Requester

STRIPPED_STATE = (
    ("m.room.create", ""), ("m.room.join_rules", ""), ("m.room.name", ""),
    ("m.room.avatar", ""), ("m.room.canonical_alias", ""), ("m.room.encryption", ""),
)


class SyncService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs

    async def sync(
        self, req: Requester, since: StreamToken | None, timeout_ms: int, full_state: bool,
        sync_filter: dict[str, Any],
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            counter = self.hs.notifier.counter
            upto = StreamToken(self.hs.stream.current, self.hs.typing.serial)
            result, joined, empty = await self._compute(req, since, upto, full_state, sync_filter)
            remaining = deadline - time.monotonic()
            if not empty or since is None or full_state or remaining <= 0:
                return result
            woke = await self.hs.notifier.wait([req.user_id, *joined], counter, remaining)
            if not woke:
                return result

    async def _compute(
        self, req: Requester, since: StreamToken | None, upto: StreamToken, full_state: bool,
        sync_filter: dict[str, Any],
    ) -> tuple[dict[str, Any], list[str], bool]:
        room_filter = sync_filter.get("room") if isinstance(sync_filter.get("room"), dict) else {}
        timeline_filter = room_filter.get("timeline") if isinstance(room_filter.get("timeline"), dict) else {}
        limit = timeline_filter.get("limit", 10)
        limit = limit if isinstance(limit, int) and 0 < limit <= 1000 else 10
        data = await self.hs.db.run(
            self._compute_txn, req, since, upto, full_state, limit, timeline_filter
        )
        joined: list[str] = data.pop("_joined")
        empty: bool = data.pop("_empty")
        now_ms = int(time.time() * 1000)
        typing = self.hs.typing
        for room_id in joined:
            room = data["rooms"]["join"].get(room_id)
            if since is None or typing.changed_since(room_id, since.typing):
                if room is None:
                    room = data["rooms"]["join"][room_id] = _empty_joined_room()
                room["ephemeral"]["events"].append(typing.event(room_id))
                if since is not None:
                    empty = False
        for section in ("join", "leave"):
            for room in data["rooms"][section].values():
                events = room["timeline"]["events"]
                room["timeline"]["events"] = [
                    _with_txn(client_event(e, now_ms=now_ms), e) for e in events
                ]
                for e in room["timeline"]["events"]:
                    e.get("unsigned", {}).pop("transaction_id_of", None)
                room["state"]["events"] = [client_event(e, now_ms=now_ms) for e in room["state"]["events"]]
                await self._bundle(room["timeline"]["events"], req.user_id)
        data["next_batch"] = str(upto)
        return data, joined, empty

    async def _bundle(self, events: list[dict[str, Any]], user_id: str) -> None:
        try:
            from veche.services.relations import bundle_aggregations
        except ImportError:
            return
        if events:
            await bundle_aggregations(self.hs, events, user_id)

    def _compute_txn(
        self, txn: Txn, req: Requester, since: StreamToken | None, upto: StreamToken,
        full_state: bool, limit: int, timeline_filter: dict[str, Any],
    ) -> dict[str, Any]:
        user_id = req.user_id
        since_pos = since.stream if since else 0
        memberships = store.current_memberships(txn, user_id)
        joined = [r for r, m, _ in memberships if m == "join"]
        changed = {r: (m, p) for r, m, p in memberships if p > since_pos}
        rooms: dict[str, Any] = {"join": {}, "invite": {}, "leave": {}, "knock": {}}
        empty = True

        rooms_with_events = store.rooms_with_events(txn, joined, since_pos, upto.stream) \
            if since else set(joined)
        for room_id in joined:
            newly_joined = room_id in changed
            if since is not None and not full_state and room_id not in rooms_with_events \
                    and not newly_joined:
                continue
            from_pos = 0 if (since is None or newly_joined) else since_pos
            timeline, limited = store.room_timeline(txn, room_id, from_pos, upto.stream, limit)
            timeline = [(p, e) for p, e in timeline if _type_allowed(e, timeline_filter)]
            first = timeline[0][0] if timeline else upto.stream + 1
            state_before = event_store.get_state_ids_at(txn, room_id, first - 1)
            if since is None or newly_joined or full_state:
                state_ids = state_before
            elif limited:
                old = event_store.get_state_ids_at(txn, room_id, since_pos)
                state_ids = {k: v for k, v in state_before.items() if old.get(k) != v}
            else:
                state_ids = {}
            in_timeline = {e["event_id"] for _, e in timeline}
            state_events = event_store.get_events(
                txn, [v for v in state_ids.values() if v not in in_timeline]
            )
            events = [e for _, e in timeline]
            txn_ids = store.txn_ids_for(txn, user_id, req.device_id,
                                        [e["event_id"] for e in events if e["sender"] == user_id])
            for e in events:
                if e["event_id"] in txn_ids:
                    e.setdefault("unsigned", {})["transaction_id_of"] = txn_ids[e["event_id"]]
            room = _empty_joined_room()
            room["timeline"] = {"events": events, "limited": limited or (since is None and False),
                                "prev_batch": str(StreamToken(max(first - 1, 0), upto.typing))}
            room["state"]["events"] = list(state_events.values())
            joined_count = len(event_store.get_room_members(txn, room_id, "join"))
            invited_count = len(event_store.get_room_members(txn, room_id, "invite"))
            room["summary"] = {"m.joined_member_count": joined_count,
                               "m.invited_member_count": invited_count}
            count = store.unread_count(txn, room_id, user_id, upto.stream)
            room["unread_notifications"] = {"notification_count": count, "highlight_count": 0}
            rooms["join"][room_id] = room
            empty = empty and not events and not state_events
        # Receipts and room account data of joined rooms.
        for room_id, rtype, uid, thread_id, event_id, ts in store.receipts_since(
            txn, joined, since_pos, upto.stream
        ):
            if rtype == "m.read.private" and uid != user_id:
                continue
            room = rooms["join"].setdefault(room_id, _empty_joined_room())
            receipt: dict[str, Any] = {"ts": ts}
            if thread_id:
                receipt["thread_id"] = thread_id
            _add_receipt(room, event_id, rtype, uid, receipt)
            empty = False
        global_data: list[dict[str, Any]] = []
        for room_id, dtype, content in store.account_data_since(txn, user_id, since_pos, upto.stream):
            empty = False
            if room_id == "":
                global_data.append({"type": dtype, "content": content})
            elif room_id in joined:
                room = rooms["join"].setdefault(room_id, _empty_joined_room())
                room["account_data"]["events"].append({"type": dtype, "content": content})
        if since is None and not any(d["type"] == "m.push_rules" for d in global_data):
            global_data.append({"type": "m.push_rules", "content": default_ruleset(user_id)})
        # Invites, knocks and leaves.
        for room_id, (membership, pos) in changed.items():
            if membership == "invite":
                rooms["invite"][room_id] = {"invite_state": {"events": _stripped_state(txn, room_id, user_id)}}
                empty = False
            elif membership == "knock":
                rooms["knock"][room_id] = {"knock_state": {"events": _stripped_state(txn, room_id, user_id)}}
                empty = False
            elif membership in ("leave", "ban") and since is not None:
                timeline, limited = store.room_timeline(txn, room_id, since_pos, pos, limit)
                first = timeline[0][0] if timeline else pos
                state_ids = event_store.get_state_ids_at(txn, room_id, first - 1) if limited else {}
                in_timeline = {e["event_id"] for _, e in timeline}
                rooms["leave"][room_id] = {
                    "timeline": {"events": [e for _, e in timeline], "limited": limited,
                                 "prev_batch": str(StreamToken(max(first - 1, 0), upto.typing))},
                    "state": {"events": list(event_store.get_events(
                        txn, [v for v in state_ids.values() if v not in in_timeline]).values())},
                    "account_data": {"events": []},
                }
                empty = False
        return {
            "rooms": rooms,
            "account_data": {"events": global_data},
            "presence": {"events": []},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
            "_joined": joined,
            "_empty": empty,
        }


def _empty_joined_room() -> dict[str, Any]:
    return {
        "timeline": {"events": [], "limited": False},
        "state": {"events": []},
        "ephemeral": {"events": []},
        "account_data": {"events": []},
        "unread_notifications": {"notification_count": 0, "highlight_count": 0},
        "summary": {},
    }


def _add_receipt(room: dict[str, Any], event_id: str, rtype: str, uid: str, receipt: dict[str, Any]) -> None:
    for ev in room["ephemeral"]["events"]:
        if ev["type"] == "m.receipt":
            ev["content"].setdefault(event_id, {}).setdefault(rtype, {})[uid] = receipt
            return
    room["ephemeral"]["events"].append(
        {"type": "m.receipt", "content": {event_id: {rtype: {uid: receipt}}}}
    )


def _stripped_state(txn: Txn, room_id: str, user_id: str) -> list[dict[str, Any]]:
    keys = [*STRIPPED_STATE, ("m.room.member", user_id)]
    state = event_store.get_current_state(txn, room_id, keys)
    return [
        {k: e[k] for k in ("type", "state_key", "content", "sender")}
        for e in state.values()
    ]


def _type_allowed(event: dict[str, Any], flt: dict[str, Any]) -> bool:
    types, not_types = flt.get("types"), flt.get("not_types")
    if isinstance(not_types, list) and event["type"] in not_types:
        return False
    if isinstance(types, list) and event["type"] not in types and "*" not in types:
        return False
    return True


def _with_txn(formatted: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    txn_id = stored.get("unsigned", {}).get("transaction_id_of")
    if txn_id is not None:
        formatted["unsigned"]["transaction_id"] = txn_id
    formatted["unsigned"].pop("transaction_id_of", None)
    return formatted
