"""One room of a sliding sync response: what the client lacks of it, given what the
connection sent before (services/sliding_sync/connection.py).

A room the connection never sent (or that the user has just joined) comes whole, `initial`:
its latest `timeline_limit` events and the `required_state` of its current state. A room
sent before comes only if something happened since: the new events, the state entries that
changed, and the state that a wider `required_state` now asks for. Name, avatar, heroes and
member counts come when first sent or when they may have changed, as Synapse sends them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from veche.core.sliding_sync import BUMP_EVENT_TYPES, MEMBER, RoomConfig, RoomFacts
from veche.services.events import client_event
from veche.services.sliding_sync.connection import RoomSent
from veche.services.sliding_sync.room_list import Membership
from veche.storage import events as event_store
from veche.storage import sliding_sync as store
from veche.storage import state_groups_read as groups
from veche.storage import sync as sync_store
from veche.storage.database import Txn
from veche.streams import StreamToken

if TYPE_CHECKING:
    from veche.server import HomeServer

StateKey = tuple[str, str]
NAME, AVATAR = ("m.room.name", ""), ("m.room.avatar", "")
MAX_HEROES = 5


@dataclass
class RoomsContext:
    user_id: str
    device_id: str
    upto: int
    typing: int
    since: int | None  # the connection's position (None: a new connection)
    now_ms: int


def room_txn(
    hs: HomeServer, txn: Txn, rc: RoomsContext, room_id: str, m: Membership, fact: RoomFacts,
    config: RoomConfig, prev: RoomSent | None, has_events: bool | None = None,
) -> tuple[dict[str, Any] | None, RoomSent]:
    """(the room's entry, or None when the client has all of it; what is now sent).
    `has_events`: whether the room had events since `prev`, if the caller knows."""
    newly_joined = prev is not None and m.membership == "join" and prev.membership != "join"
    initial = prev is None or newly_joined
    if m.membership in ("invite", "knock"):
        sent = RoomSent(rc.upto, config.required_state, config.timeline_limit, set(), m.membership)
        if not initial and prev is not None and prev.membership == m.membership:
            return None, sent
        return _stripped_room(m, fact, initial), sent

    room_upto = rc.upto if m.membership == "join" else min(rc.upto, m.pos)
    from_pos = 0 if initial or prev is None else prev.since
    rs = config.required_state
    added = rs.added_since(prev.required_state) if prev is not None and not initial else rs
    changed_membership = prev is not None and prev.membership != m.membership
    # A larger timeline_limit than the room was sent with (a room opened from the list)
    # sends that much history again, marked as Synapse marks it.
    expanded = prev is not None and not initial and prev.timeline_limit < config.timeline_limit
    if has_events is None and not initial and from_pos < room_upto:
        has_events = bool(sync_store.rooms_with_new_events(txn, [room_id], from_pos, room_upto))
    if not initial and not added.pairs and not changed_membership and not expanded and (
            from_pos >= room_upto or not has_events):
        assert prev is not None
        return None, RoomSent(max(prev.since, room_upto),
                              prev.required_state.remembered_after(rs, set(), rc.user_id),
                              prev.timeline_limit, prev.lazy_sent, m.membership)

    # The timeline: the newest events after what the client has.
    limit = config.timeline_limit
    rows = sync_store.timeline_rows(txn, room_id, 0 if expanded else from_pos, room_upto, limit + 1)
    limited = len(rows) > limit
    rows = list(reversed(rows[:limit]))
    if rows and rows[0][0] < m.pos:
        from veche.services.visibility import Visibility

        mask = Visibility.load(txn, room_id, rc.user_id).visible(
            txn, [(e["event_id"], e) for _, e in rows])
        rows = [row for row, ok in zip(rows, mask, strict=True) if ok]
    senders = {e["sender"] for _, e in rows}

    # Required state.
    group_read: list[int | None] = []

    def group() -> int | None:
        if not group_read:
            group_read.append(sync_store.state_group_at(txn, room_id, room_upto))
        return group_read[0]

    state_ids: dict[StateKey, str] = {}
    changed_keys: set[StateKey] = set()
    lazy_sent = set() if initial or prev is None else set(prev.lazy_sent)
    lazy_new = senders - lazy_sent if rs.lazy_members else set()
    if initial:
        current = groups.get_state(txn, hs.sync.state_groups, group())
        state_ids = {k: v for k, v in current.items() if rs.matches(k[0], k[1], rc.user_id, senders)}
    else:
        changed = sync_store.current_state_changed(
            txn, {room_id: (from_pos, room_upto)}).get(room_id, {})
        changed_keys = set(changed)
        state_ids = {k: v for k, v in changed.items() if rs.matches(k[0], k[1], rc.user_id, senders)}
        if added.pairs or lazy_new:
            current = groups.get_state(txn, hs.sync.state_groups, group())
            for k, v in current.items():
                if added.matches(k[0], k[1], rc.user_id, senders) or (
                        k[0] == MEMBER and k[1] in lazy_new):
                    state_ids[k] = v
    if rs.lazy_members:
        # Any member event sent (by `$ME` too) is one `$LAZY` need not send again.
        lazy_sent |= {k[1] for k in state_ids if k[0] == MEMBER}
    state_events = event_store.get_events(txn, list(state_ids.values()))

    own = [e["event_id"] for _, e in rows if e.get("sender") == rc.user_id]
    txn_ids = sync_store.txn_ids_for_events(txn, rc.user_id, rc.device_id, own)
    timeline = []
    for _, ev in rows:
        out_ev = _client(ev, rc.now_ms)
        if ev["event_id"] in txn_ids:
            out_ev.setdefault("unsigned", {})["transaction_id"] = txn_ids[ev["event_id"]]
        timeline.append(out_ev)

    entry: dict[str, Any] = {}
    membership_changed = initial or changed_membership or any(k[0] == MEMBER for k in changed_keys)
    if initial or NAME in changed_keys or AVATAR in changed_keys:
        meta = groups.get_state_keys(txn, hs.sync.state_groups, group(), [NAME, AVATAR])
        meta_events = event_store.get_events(txn, list(meta.values()))
        name = (meta_events.get(meta.get(NAME, "")) or {}).get("content", {}).get("name")
        avatar = (meta_events.get(meta.get(AVATAR, "")) or {}).get("content", {}).get("url")
        if isinstance(name, str) and name:
            entry["name"] = name
        if isinstance(avatar, str) and avatar:
            entry["avatar"] = avatar
        has_name = "name" in entry
    else:
        has_name = True  # unchanged: the client has the name or the heroes already
    if not has_name and membership_changed:
        heroes = _heroes(txn, room_id, rc.user_id)
        if heroes:
            entry["heroes"] = heroes
    # Counts of a room the user has just left would tell of it after they left (Synapse
    # leaves them out too).
    if membership_changed and (initial or m.membership == "join"):
        counts = sync_store.member_counts(txn, [room_id]).get(room_id, {})
        entry["joined_count"] = counts.get("join", 0)
        entry["invited_count"] = counts.get("invite", 0)
    if m.membership == "join":
        per_thread = hs.push.unread_counts_txn(txn, rc.user_id, [room_id], rc.upto).get(room_id, {})
        entry["notification_count"] = sum(n for n, _ in per_thread.values())
        entry["highlight_count"] = sum(h for _, h in per_thread.values())
        # The counts above include threads (no client of sliding sync asks for them apart);
        # here is each thread's share, for clients that show unread threads. An update
        # always carries it, empty too: a thread read since must be cleared.
        threads = {t: {"notification_count": n, "highlight_count": h}
                   for t, (n, h) in per_thread.items() if t is not None and (n or h)}
        if threads or not initial:
            entry["unread_thread_notifications"] = threads
    else:
        entry["notification_count"] = entry["highlight_count"] = 0
    if initial:
        entry["initial"] = True
    if expanded:
        entry["unstable_expanded_timeline"] = True
    # Always present, even empty (Synapse leaves them out): matrix-js-sdk reads both
    # without checking.
    entry["required_state"] = [_client(state_events[v], rc.now_ms)
                               for v in state_ids.values() if v in state_events]
    entry["timeline"] = timeline
    entry["limited"] = limited
    entry["prev_batch"] = str(StreamToken(rows[0][0] - 1 if rows else room_upto, rc.typing))
    entry["num_live"] = (sum(1 for pos, _ in rows if pos > rc.since) if rc.since is not None else 0)
    bump = _bump_stamp(txn, room_id, m, rows, room_upto, always=initial or limited)
    if bump is not None:
        entry["bump_stamp"] = bump
    if fact.is_dm:
        entry["is_dm"] = True
    remembered = rs if initial or prev is None else prev.required_state.remembered_after(
        rs, changed_keys, rc.user_id)
    return entry, RoomSent(room_upto, remembered, config.timeline_limit, lazy_sent, m.membership)


def _bump_stamp(txn: Txn, room_id: str, m: Membership, rows: list[tuple[int, dict[str, Any]]],
                upto: int, always: bool) -> int | None:
    """The position of the room's latest event of a type that bumps it; when neither first
    sent nor limited, only if the timeline holds one (the client has the older ones)."""
    if m.membership != "join":
        return m.pos
    in_timeline = [pos for pos, e in rows if e["type"] in BUMP_EVENT_TYPES]
    if in_timeline:
        return max(in_timeline)
    if not always:
        return None
    return store.latest_positions(txn, [room_id], upto, BUMP_EVENT_TYPES).get(room_id, m.pos)


def _stripped_room(m: Membership, fact: RoomFacts, initial: bool) -> dict[str, Any]:
    stripped = m.stripped or []
    entry: dict[str, Any] = {}
    for ev in stripped:
        if (ev.get("type"), ev.get("state_key")) == NAME:
            name = (ev.get("content") or {}).get("name")
            if isinstance(name, str) and name:
                entry["name"] = name
    entry.update(notification_count=0, highlight_count=0, bump_stamp=m.pos)
    if initial:
        entry["initial"] = True
    if fact.is_dm:
        entry["is_dm"] = True
    entry["invite_state"] = stripped
    entry["required_state"] = []
    entry["timeline"] = []
    return entry


def _heroes(txn: Txn, room_id: str, user_id: str) -> list[dict[str, Any]]:
    """Up to five members other than the user: joined ones first, then invited, each
    oldest first (Synapse's room summary order); with none, those who left."""
    rows = store.member_rows(txn, room_id, user_id)
    chosen = ([r for r in rows if r[1] == "join"] + [r for r in rows if r[1] == "invite"]
              or [r for r in rows if r[1] in ("leave", "ban")])[:MAX_HEROES]
    events = event_store.get_events(txn, [e for _, _, e in chosen])
    out = []
    for user, _, event_id in chosen:
        hero: dict[str, Any] = {"user_id": user}
        content = (events.get(event_id) or {}).get("content") or {}
        if isinstance(content.get("displayname"), str):
            hero["displayname"] = content["displayname"]
        if isinstance(content.get("avatar_url"), str):
            hero["avatar_url"] = content["avatar_url"]
        out.append(hero)
    return out


def _client(event: dict[str, Any], now_ms: int) -> dict[str, Any]:
    out = client_event(event, now_ms=now_ms)
    out.pop("room_id", None)
    return out
