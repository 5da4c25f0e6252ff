"""/sync: what changed for a user since a token, waiting (long-poll) until something does.

Everything reported carries a position of the one server-wide stream, so an incremental
sync reads only rows with positions in (since, upto]: a constant number of queries finds
the rooms that changed, and only those rooms are then read one by one. When the stream
has not moved past `since` no row query runs at all.

A room's `state` section comes from state groups (storage/state_groups_read.py): the state
before the timeline's first event, all of it or, for a limited incremental sync, what differs
from the state after the room's last event up to `since`; plus the current-state entries
that changed in the window without the client seeing them (services/sync_state.py).

Sections that other features fill (to-device messages, device list changes, one-time key
counts) are produced by `SyncService.txn_providers`: each reads what it needs inside the
sync's own transaction (one connection checkout and commit per /sync, not one per section;
on PostgreSQL each is a thread hop and round trips) and returns a finisher that fills the
response afterwards and says whether it added anything. `SyncService.providers` are async
callables given the SyncContext after the rooms, for what needs no database.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from veche.core.filters import Filter, RoomEventFilter
from veche.core.push_rules import default_ruleset
from veche.core.sync_shape import lean_sync
from veche.services.events import client_event
from veche.services.lazy_members import LazyMembers, Sent
from veche.services.relations import aggregations_later
from veche.services.stripped_state import stripped_state
from veche.services.sync_state import Room, Window, state_txn
from veche.storage import events as event_store
from veche.storage import presence as presence_store
from veche.storage import state_groups_read as groups
from veche.storage import sync as store
from veche.storage.database import Txn
from veche.streams import StreamToken

if TYPE_CHECKING:
    from veche.server import HomeServer
    from veche.services.auth import Requester

DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 1000
# Rows scanned at most per room to fill a type-filtered timeline.
MAX_SCAN = 2000
PARKED_CACHE_SIZE = 10_000


@dataclass
class SyncContext:
    """One /sync computation: the request, the window (since, upto] and the response."""

    user_id: str
    device_id: str
    since: StreamToken | None
    upto: StreamToken
    full_state: bool
    filter: Filter
    result: dict[str, Any] = field(default_factory=dict)
    joined: list[str] = field(default_factory=list)
    empty: bool = True
    # Incremental, and only events that moved nothing but timelines are past `since`
    # (StreamIdGenerator.timeline_only_after): no receipt, account data, presence, state or
    # device list row can be in the window.
    timeline_only: bool = False
    # The joined rooms, if known without reading (see `sync`).
    joined_known: list[str] | None = None
    access_token_hash: str = ""
    # Lazy-loading members: what the device has (per room) and what this answer adds.
    members_known: Sent = field(default_factory=dict)
    members_added: dict[str, set[str]] = field(default_factory=dict)

    @property
    def since_pos(self) -> int:
        return self.since.stream if self.since is not None else 0


SyncProvider = Callable[[SyncContext], Awaitable[bool]]
# Run inside the sync's transaction; the finisher it returns runs after it, on the loop.
SyncFinisher = Callable[[SyncContext], Awaitable[bool]]
SyncTxnProvider = Callable[[Txn, SyncContext], SyncFinisher]


class SyncService:
    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.providers: list[SyncProvider] = []
        self.txn_providers: list[SyncTxnProvider] = []
        self.lazy_members = LazyMembers()
        self.state_groups = groups.StateGroupCache()
        # (user, device) -> (position, filter, joined rooms) of the last answer computed
        self._parked: dict[tuple[str, str], tuple[StreamToken, Filter, list[str]]] = {}

    def add_provider(self, provider: SyncProvider) -> None:
        self.providers.append(provider)

    def add_txn_provider(self, provider: SyncTxnProvider) -> None:
        self.txn_providers.append(provider)

    async def sync(
        self, req: Requester, since: StreamToken | None, timeout_ms: int, full_state: bool,
        sync_filter: Filter,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            counter = self.hs.notifier.counter
            upto = StreamToken(self.hs.stream.current, self.hs.typing.serial)
            if since is not None and since.stream > upto.stream:
                if self.hs.cluster is not None and await self.hs.cluster.caught_up(since.stream):
                    continue  # another process's token: this one has caught up with it
                # A token from the future (e.g. before a restart that lost positions): clamp.
                since = StreamToken(upto.stream, since.typing)
            remaining = deadline - time.monotonic()
            parked = self._parked.get((req.user_id, req.device_id))
            if (since == upto and parked is not None and parked[0] == upto and remaining > 0
                    and not full_state and parked[1] == sync_filter):
                # Nothing is newer than `since` and the last answer to this device was
                # computed at this very position: this one would be empty. Wait first (the
                # common case: a client's next long-poll right after an answer).
                if await self.hs.notifier.wait([req.user_id, *parked[2]], counter, remaining):
                    continue
            timeline_only = (since is not None and not full_state
                             and self.hs.stream.timeline_only_after(since.stream))
            ctx = SyncContext(req.user_id, req.device_id, since, upto, full_state, sync_filter,
                              timeline_only=timeline_only,
                              access_token_hash=req.access_token_hash)
            if (timeline_only and parked is not None and parked[1] == sync_filter
                    and self.hs.stream.timeline_only_after(parked[0].stream)):
                # No membership moved since the last answer: its joined rooms still are.
                ctx.joined_known = parked[2]
            ctx.members_known = self.lazy_members.known(
                req.user_id, req.device_id, str(since) if since is not None else None)
            await self._compute(ctx)
            if len(self._parked) >= PARKED_CACHE_SIZE:
                self._parked.clear()
            self._parked[(req.user_id, req.device_id)] = (upto, sync_filter, ctx.joined)
            remaining = deadline - time.monotonic()
            if not ctx.empty or since is None or full_state or remaining <= 0:
                return self._answer(ctx)
            woke = await self.hs.notifier.wait([req.user_id, *ctx.joined], counter, remaining)
            if not woke:
                return self._answer(ctx)

    def _answer(self, ctx: SyncContext) -> dict[str, Any]:
        if ctx.filter.room.state.lazy_load_members:
            # Known to the client only once it comes back with this answer's next_batch.
            self.lazy_members.record(ctx.user_id, ctx.device_id, ctx.result["next_batch"],
                                     ctx.members_known, ctx.members_added)
        return lean_sync(ctx.result)

    # --- computing a response ---------------------------------------------------------------
    async def _compute(self, ctx: SyncContext) -> None:
        data = await self.hs.db.run(self._compute_txn, ctx)
        flt = ctx.filter
        now_ms = int(time.time() * 1000)
        rooms_out: dict[str, dict[str, Any]] = {"join": {}, "invite": {}, "leave": {}, "knock": {}}
        all_timeline: list[dict[str, Any]] = []
        txn_ids: dict[str, str] = data["txn_ids"]
        for room in data["rooms"]:
            timeline = []
            for _, ev in room.events:
                out = self._format(ev, now_ms, flt)
                if ev["event_id"] in txn_ids:
                    out.setdefault("unsigned", {})["transaction_id"] = txn_ids[ev["event_id"]]
                timeline.append(out)
            all_timeline.extend(timeline)
            entry: dict[str, Any] = {
                "timeline": {"events": timeline, "limited": room.limited,
                             "prev_batch": str(StreamToken(room.prev_batch, ctx.upto.typing))},
                "state": {"events": [self._format(e, now_ms, flt) for e in room.state]},
                "account_data": {"events": []},
            }
            if room.kind == "join":
                entry["ephemeral"] = {"events": []}
                entry["unread_notifications"] = {"notification_count": 0, "highlight_count": 0}
                entry["summary"] = room.summary or {}
            rooms_out[room.kind][room.room_id] = entry
        _apply_aggregations(all_timeline, data["aggregations"])
        if flt.event_fields is not None:
            for section in ("join", "leave"):
                for entry in rooms_out[section].values():
                    for part in ("timeline", "state"):
                        entry[part]["events"] = [flt.apply_event_fields(e)
                                                 for e in entry[part]["events"]]

        def joined_entry(room_id: str) -> dict[str, Any]:
            entry = rooms_out["join"].get(room_id)
            if entry is None:
                entry = rooms_out["join"][room_id] = {
                    "timeline": {"events": [], "limited": False,
                                 "prev_batch": str(ctx.upto)},
                    "state": {"events": []},
                    "account_data": {"events": []},
                    "ephemeral": {"events": []},
                    "unread_notifications": {"notification_count": 0, "highlight_count": 0},
                    "summary": {},
                }
            return entry

        ephemeral_filter = flt.room.ephemeral
        # Typing (in memory).
        typing = self.hs.typing
        if ephemeral_filter.matches({"type": "m.typing"}):
            for room_id in ctx.joined:
                if ctx.since is None:
                    ev = typing.event(room_id)
                    if not ev["content"]["user_ids"]:
                        continue
                elif typing.changed_since(room_id, ctx.since.typing):
                    ev = typing.event(room_id)
                else:
                    continue
                joined_entry(room_id)["ephemeral"]["events"].append(ev)
        # Receipts.
        if ephemeral_filter.matches({"type": "m.receipt"}):
            receipts: dict[str, dict[str, Any]] = {}
            for room_id, rtype, uid, thread_id, event_id, ts in data["receipts"]:
                if rtype == "m.read.private" and uid != ctx.user_id:
                    continue
                if not ephemeral_filter.matches({"type": "m.receipt", "sender": uid}, room_id):
                    continue
                receipt: dict[str, Any] = {"ts": ts}
                if thread_id:
                    receipt["thread_id"] = thread_id
                content = receipts.setdefault(room_id, {})
                content.setdefault(event_id, {}).setdefault(rtype, {})[uid] = receipt
            for room_id, content in receipts.items():
                joined_entry(room_id)["ephemeral"]["events"].append(
                    {"type": "m.receipt", "content": content})
        # Account data.
        global_data: list[dict[str, Any]] = []
        for room_id, dtype, content in data["account_data"]:
            event = {"type": dtype, "content": content}
            if room_id == "":
                if flt.account_data.matches(event):
                    global_data.append(event)
            elif flt.room.room_allowed(room_id) and flt.room.account_data.matches(event, room_id):
                if room_id in rooms_out["leave"]:
                    rooms_out["leave"][room_id]["account_data"]["events"].append(event)
                elif room_id in data["joined_set"]:
                    joined_entry(room_id)["account_data"]["events"].append(event)
        if ctx.since is None and not any(d["type"] == "m.push_rules" for d in global_data) \
                and flt.account_data.matches({"type": "m.push_rules"}):
            global_data.append({"type": "m.push_rules", "content": default_ruleset(ctx.user_id)})
        # Unread notification counts of every joined room in the response.
        counts: dict[str, Any] = data["counts"]
        missing = [r for r in rooms_out["join"] if r not in data["counted"]]
        if missing:
            counts.update(await self.hs.db.run(
                self.hs.push.unread_counts_txn, ctx.user_id, missing, ctx.upto.stream))
        thread_counts = flt.room.timeline.unread_thread_notifications
        for room_id, entry in rooms_out["join"].items():
            per_thread = counts.get(room_id, {})
            if thread_counts:
                main = per_thread.get(None, (0, 0))
                threads = {t: {"notification_count": n, "highlight_count": h}
                           for t, (n, h) in per_thread.items() if t is not None and (n or h)}
                entry["unread_thread_notifications"] = threads
            else:
                main = (sum(n for n, _ in per_thread.values()), sum(h for _, h in per_thread.values()))
            entry["unread_notifications"] = {"notification_count": main[0],
                                             "highlight_count": main[1]}
        # Invites and knocks.
        for kind, key in (("invite", "invite_state"), ("knock", "knock_state")):
            for room_id, events in data[kind].items():
                rooms_out[kind][room_id] = {key: {"events": events}}
        # Presence.
        presence_events = []
        for row in data["presence"]:
            event = {"type": "m.presence", "sender": row[0], "content": self.hs.presence.format(row)}
            if flt.presence.matches(event):
                presence_events.append(event)

        ctx.result = {
            "next_batch": str(ctx.upto),
            "rooms": rooms_out,
            "account_data": {"events": global_data},
            "presence": {"events": presence_events},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
        }
        ctx.empty = not (any(rooms_out.values()) or global_data or presence_events)
        for finish in data["finishers"]:
            if await finish(ctx):
                ctx.empty = False
        for provider in self.providers:
            if await provider(ctx):
                ctx.empty = False

    def _format(self, event: dict[str, Any], now_ms: int, flt: Filter) -> dict[str, Any]:
        if flt.event_format == "federation":
            return dict(event)
        out = client_event(event, now_ms=now_ms)
        out.pop("room_id", None)
        return out

    # --- the transaction ----------------------------------------------------------------------
    def _compute_txn(self, txn: Txn, ctx: SyncContext) -> dict[str, Any]:
        user_id, since, upto = ctx.user_id, ctx.since, ctx.upto.stream
        since_pos = ctx.since_pos
        flt = ctx.filter
        room_filter = flt.room
        incremental = since is not None
        moved = upto > since_pos or not incremental or ctx.full_state

        if ctx.joined_known is not None:
            # Positions 0: no membership changed in the window (see `joined_known`).
            memberships = [(r, "join", 0, "") for r in ctx.joined_known]
        else:
            memberships = [m for m in store.membership_rows(txn, user_id)
                           if room_filter.room_allowed(m[0])]
        joined = [r for r, m, _, _ in memberships if m == "join"]
        ctx.joined = joined
        if moved:
            # Reads that need nothing but the joined rooms, held: on PostgreSQL they go in
            # one round trip with the providers' first read.
            after = since_pos if incremental else -1
            with_events = (None if not incremental or ctx.full_state else
                           store.rooms_with_new_events_later(txn, joined, since_pos, upto))
            if ctx.timeline_only:
                receipts = account_data = presence = _no_rows
            else:
                receipts = store.receipts_for_rooms_later(txn, joined, after, upto)
                account_data = store.account_data_since_later(txn, user_id, after, upto)
                presence = presence_store.presence_since_for_user_later(txn, user_id, after, upto)
        out: dict[str, Any] = {
            "rooms": [], "receipts": [], "account_data": [], "presence": [], "invite": {},
            "knock": {}, "txn_ids": {}, "joined_set": set(joined), "counted": set(),
            "counts": {}, "aggregations": {},
            "finishers": [provider(txn, ctx) for provider in self.txn_providers],
        }
        if not moved:
            return out
        changed = {r: (m, p, e) for r, m, p, e in memberships if p > since_pos and p <= upto}
        change_events = event_store.get_events(txn, [e for _, _, e in changed.values()])

        def newly(room_id: str, membership: str) -> bool:
            """Whether the membership changed into `membership` within the window."""
            if not incremental or room_id not in changed:
                return False
            ev = change_events.get(changed[room_id][2]) or {}
            prev = (ev.get("unsigned") or {}).get("prev_content") or {}
            return prev.get("membership") != membership

        # Joined rooms: which need a timeline.
        if with_events is None:
            active = list(joined)
        else:
            new_events = with_events()
            active = [r for r in joined if r in new_events or newly(r, "join")]
        limit = room_filter.timeline.limit_or(DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT)
        membership_pos = {r: p for r, _, p, _ in memberships}
        windows: list[Window] = []
        for room_id in active:
            full = not incremental or ctx.full_state or newly(room_id, "join")
            from_pos = 0 if (full and (not incremental or newly(room_id, "join"))) else since_pos
            windows.append(self._timeline_txn(
                txn, ctx, room_id, "join", from_pos, upto, limit, full,
                membership_pos.get(room_id, 0),
            ))
            out["rooms"].append(windows[-1].room)
        # Rooms left (or banned from) within the window; on initial sync only if asked.
        for room_id, membership, pos, event_id in memberships:
            if membership not in ("leave", "ban"):
                continue
            if incremental and not (room_id in changed and newly(room_id, membership)):
                continue
            if not incremental and not room_filter.include_leave:
                continue
            leave_event = change_events.get(event_id) or event_store.get_event(txn, event_id)
            prev = ((leave_event or {}).get("unsigned") or {}).get("prev_content") or {}
            if prev.get("membership") != "join":
                # Never joined (a rejected invite or knock, a ban from outside): the event only.
                room = Room(room_id, "leave", pos, prev_batch=max(pos - 1, 0))
                if leave_event is not None:
                    room.events = [(pos, leave_event)]
                out["rooms"].append(room)
                continue
            windows.append(self._timeline_txn(
                txn, ctx, room_id, "leave", since_pos if incremental else 0, pos, limit, True, pos,
            ))
            out["rooms"].append(windows[-1].room)
        state_txn(txn, self.state_groups, ctx, windows)
        # Invites and knocks.
        for room_id, membership, _pos, event_id in memberships:
            if membership in ("invite", "knock") and (not incremental or room_id in changed):
                out[membership][room_id] = stripped_state(txn, room_id, user_id, event_id)
        # Timeline events the requesting device sent carry their transaction ID.
        own = [e["event_id"] for room in out["rooms"] for _, e in room.events
               if e.get("sender") == user_id]
        out["txn_ids"] = store.txn_ids_for_events(txn, user_id, ctx.device_id, own)
        # Summaries.
        self._summaries_txn(txn, ctx, out["rooms"])
        # Receipts, account data, presence.
        out["receipts"] = receipts()
        out["account_data"] = account_data()
        out["presence"] = presence()
        # Unread counts of the joined rooms this response will (likely) contain.
        counted = {r.room_id for r in out["rooms"] if r.kind == "join"}
        counted.update(r[0] for r in out["receipts"])
        counted.update(r[0] for r in out["account_data"] if r[0])
        counted &= out["joined_set"]
        out["counted"] = counted
        # The aggregations' first read is held, to go with the unread counts' (PostgreSQL).
        timeline = [e for room in out["rooms"] for _, e in room.events]
        aggregations = (aggregations_later(txn, timeline, user_id, int(time.time() * 1000))
                        if timeline else None)
        out["counts"] = (self.hs.push.unread_counts_txn(txn, user_id, list(counted), upto)
                         if counted else {})
        if aggregations is not None:
            out["aggregations"] = aggregations()
        return out

    def _timeline_txn(
        self, txn: Txn, ctx: SyncContext, room_id: str, kind: str, from_pos: int, upto: int,
        limit: int, full: bool, member_pos: int,
    ) -> Window:
        scanned, matched, limited = _fetch_timeline(
            txn, room_id, from_pos, upto, limit, ctx.filter.room.timeline)
        start_at = matched[0] if matched else (scanned[-1] if scanned and limited else None)
        first = start_at[0] if start_at is not None else upto + 1
        room = Room(room_id, kind, upto, limited=limited, prev_batch=max(first - 1, 0))
        return Window(room, matched, start_at, first, full, member_pos)

    def _summaries_txn(self, txn: Txn, ctx: SyncContext, rooms: list[Room]) -> None:
        """m.joined_member_count / m.invited_member_count / m.heroes where they may have changed."""
        need = [r for r in rooms if r.kind == "join" and (
            ctx.since is None or ctx.full_state or r.state
            or any(e["type"] == "m.room.member" for _, e in r.events))]
        if not need:
            return
        ids = [r.room_id for r in need]
        counts = store.member_counts(txn, ids)
        named = store.named_rooms(txn, ids)
        for room in need:
            c = counts.get(room.room_id, {})
            summary: dict[str, Any] = {"m.joined_member_count": c.get("join", 0),
                                       "m.invited_member_count": c.get("invite", 0)}
            if room.room_id not in named:
                summary["m.heroes"] = store.heroes(txn, room.room_id, ctx.user_id)
            room.summary = summary


def _no_rows() -> list[Any]:
    return []


def _fetch_timeline(
    txn: Txn, room_id: str, after: int, upto: int, limit: int, flt: RoomEventFilter
) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, dict[str, Any]]], bool]:
    """(rows scanned newest first, the newest `limit` matching events oldest first, limited)."""
    scanned: list[tuple[int, dict[str, Any]]] = []
    matched: list[tuple[int, dict[str, Any]]] = []
    cursor = upto
    batch = limit + 1 if flt.unrestricted else max(2 * limit + 1, 50)
    limited = False
    while True:
        rows = store.timeline_rows(txn, room_id, after, cursor, batch)
        for so, ev in rows:
            if len(matched) >= limit:
                limited = True
                break
            scanned.append((so, ev))
            if flt.matches(ev, room_id):
                matched.append((so, ev))
        if limited or len(rows) < batch:
            break
        if len(scanned) >= MAX_SCAN:
            limited = True
            break
        cursor = rows[-1][0] - 1
    matched.reverse()
    return scanned, matched, limited


def _apply_aggregations(events: list[dict[str, Any]], found: dict[str, dict[str, Any]]) -> None:
    for event in events:
        agg = found.get(event["event_id"]) if found else None
        if agg:
            unsigned = event.setdefault("unsigned", {})
            unsigned["m.relations"] = {**unsigned.get("m.relations", {}), **agg}
