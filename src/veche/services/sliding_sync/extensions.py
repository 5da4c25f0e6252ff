"""Sliding sync extensions: to_device, e2ee, account_data, receipts, typing.

Each covers what changed since the connection's position (everything, on a new
connection); account_data, receipts and typing only for the rooms their `lists` and `rooms`
name among those of the response's lists and subscriptions (services/sliding_sync/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from veche.core.numbers import parse_count
from veche.core.push_rules import default_ruleset
from veche.core.sliding_sync import Extensions, RoomScope
from veche.storage import sliding_sync as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.server import HomeServer


@dataclass
class Scope:
    """The rooms of this response: by list (those in its ranges) and by subscription."""

    lists_of_room: dict[str, set[str]] = field(default_factory=dict)
    subscribed: set[str] = field(default_factory=set)
    joined: set[str] = field(default_factory=set)
    # Rooms the response sends whole (initial, or with an expanded timeline), and the
    # events of each room's timeline in it.
    first_seen: set[str] = field(default_factory=set)
    timeline_events: dict[str, list[str]] = field(default_factory=dict)
    # extension -> room -> position: what the connection had sent, and what it now has.
    previously: dict[str, dict[str, int]] = field(default_factory=dict)
    sent: dict[str, dict[str, int]] = field(default_factory=dict)

    def rooms(self, scope: RoomScope) -> list[str]:
        rooms = set(self.lists_of_room) | self.subscribed
        return sorted(r for r in rooms if r in self.joined and scope.covers(
            r, self.lists_of_room.get(r, set()), r in self.subscribed))


async def compute(
    hs: HomeServer, user_id: str, device_id: str, ext: Extensions, since: int | None,
    typing_since: int, upto: int, scope: Scope,
) -> tuple[dict[str, Any], bool]:
    """(the extensions section, whether it holds anything new)."""
    out: dict[str, Any] = {}
    news = False
    if ext.to_device:
        to_device_since = parse_count(ext.to_device_since) if ext.to_device_since else None
        events, next_batch = await hs.to_device.sync_section(
            user_id, device_id, to_device_since, upto, ext.to_device_limit)
        out["to_device"] = {"next_batch": str(next_batch), "events": events}
        news = news or bool(events)
    if ext.e2ee:
        e2ee = await hs.e2e_keys.sync_section(user_id, device_id, since, upto)
        if since is None:
            del e2ee["device_lists"]  # nothing to compare with: the client queries keys itself
        else:
            news = news or bool(e2ee["device_lists"]["changed"] or e2ee["device_lists"]["left"])
        out["e2ee"] = e2ee
    if ext.account_data is not None or ext.receipts is not None:
        section, found = await hs.db.run(_stored_txn, user_id, ext, since, upto, scope)
        out.update(section)
        news = news or found
    if ext.typing is not None:
        rooms = {}
        for room_id in scope.rooms(ext.typing):
            if since is None or room_id in scope.first_seen:
                ev = hs.typing.event(room_id)
                if not ev["content"]["user_ids"]:
                    continue
            elif hs.typing.changed_since(room_id, typing_since):
                ev = hs.typing.event(room_id)
            else:
                continue
            rooms[room_id] = ev
        out["typing"] = {"rooms": rooms}
        news = news or bool(rooms)
    return out, news


def _split(scope_rooms: list[str], since: int | None, sent: dict[str, int],
           first_seen: set[str]) -> tuple[dict[str, int], list[str]]:
    """(room -> position to send from, rooms to send as first seen): a room this extension
    never sent, or that the response sends whole, starts over."""
    after: dict[str, int] = {}
    fresh: list[str] = []
    for room_id in scope_rooms:
        if since is None or room_id in first_seen or room_id not in sent:
            fresh.append(room_id)
        else:
            after[room_id] = sent[room_id]
    return after, fresh


def _stored_txn(
    txn: Txn, user_id: str, ext: Extensions, since: int | None, upto: int, scope: Scope,
) -> tuple[dict[str, Any], bool]:
    out: dict[str, Any] = {}
    found = False
    if ext.account_data is not None:
        sent = scope.previously.get("account_data", {})
        after, fresh = _split(scope.rooms(ext.account_data), since, sent, scope.first_seen)
        fresh_set = set(fresh)
        lowest = min([since if since is not None else -1, *after.values()]) if not fresh else -1
        global_data: list[dict[str, Any]] = []
        by_room: dict[str, list[dict[str, Any]]] = {}
        for room_id, dtype, content, pos in store.account_data_rows(txn, user_id, lowest, upto):
            event = {"type": dtype, "content": content}
            if not room_id:
                if since is None or pos > since:
                    global_data.append(event)
            elif room_id in fresh_set or (room_id in after and pos > after[room_id]):
                by_room.setdefault(room_id, []).append(event)
        found = bool(global_data or by_room)
        if since is None and not any(d["type"] == "m.push_rules" for d in global_data):
            global_data.append({"type": "m.push_rules", "content": default_ruleset(user_id)})
        out["account_data"] = {"global": global_data, "rooms": by_room}
        scope.sent["account_data"] = {**sent, **dict.fromkeys([*after, *fresh], upto)}
    if ext.receipts is not None:
        sent = scope.previously.get("receipts", {})
        after, fresh = _split(scope.rooms(ext.receipts), since, sent, scope.first_seen)
        rows = store.receipts_first_seen(
            txn, user_id, fresh, [e for r in fresh for e in scope.timeline_events.get(r, ())], upto)
        by_after: dict[int, list[str]] = {}
        for room_id, pos in after.items():
            by_after.setdefault(pos, []).append(room_id)
        for pos, ids in by_after.items():
            rows.extend(store.receipts_since(txn, ids, pos, upto))
        receipts: dict[str, dict[str, Any]] = {}
        for room_id, rtype, uid, thread_id, event_id, ts, _ in rows:
            if rtype == "m.read.private" and uid != user_id:
                continue
            receipt: dict[str, Any] = {"ts": ts}
            if thread_id:
                receipt["thread_id"] = thread_id
            content = receipts.setdefault(room_id, {"type": "m.receipt", "content": {}})["content"]
            content.setdefault(event_id, {}).setdefault(rtype, {})[uid] = receipt
        out["receipts"] = {"rooms": receipts}
        found = found or bool(receipts)
        scope.sent["receipts"] = {**sent, **dict.fromkeys([*after, *fresh], upto)}
    return out, found
