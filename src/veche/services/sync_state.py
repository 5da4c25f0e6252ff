"""The state section of each room in a /sync answer, from state groups
(storage/state_groups_read.py): the state before the timeline's first event, all of it or, for
a limited incremental sync, what differs from the state after the room's last event up to
`since`; plus the current-state entries that changed in the window without the client seeing
them (`_became_current`). History visibility and lazy-loaded members are applied here too,
since both need that state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from veche.storage import events as event_store
from veche.storage import state_groups_read as groups
from veche.storage import sync as store
from veche.storage.database import Txn

if TYPE_CHECKING:
    from veche.services.sync import SyncContext

StateKey = tuple[str, str]


@dataclass
class Room:
    room_id: str
    kind: str  # join or leave
    upto: int
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    limited: bool = False
    prev_batch: int = 0
    state: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None


@dataclass
class Window:
    """A room's timeline, read; its state is worked out for all rooms at once after."""

    room: Room
    matched: list[tuple[int, dict[str, Any]]]
    start_at: tuple[int, dict[str, Any]] | None  # the event the timeline starts at
    first: int  # its position (upto + 1 without one)
    full: bool
    member_pos: int
    start: int | None = None  # the group of the state at the start, once read
    start_read: bool = False


def state_txn(txn: Txn, cache: groups.StateGroupCache, ctx: SyncContext,
              windows: list[Window]) -> None:
    """Each room's state section (and its timeline, once history visibility is applied).

    The state at the start of the timeline is that before its first event, or with no
    event, after the last one up to `upto`. A full section is all of it; an incremental
    limited one what differs from the state at `since` (after the room's last event up
    to it); then come the entries that became current without the client being told
    (see `_became_current`)."""
    if not windows:
        return
    # Most incremental syncs (not limited) need no state at the start of the timeline:
    # it is read for the others, and for those only if it comes to be needed.
    needed = [w for w in windows if w.full or w.room.limited]
    if needed:
        before = store.state_groups_before(
            txn, [w.start_at[1]["event_id"] for w in needed if w.start_at is not None])
        for w in needed:
            start_group(txn, w, before)
        groups.prefetch_states(txn, cache, [w.start for w in needed if w.full])
    changed = store.current_state_changed(txn, {
        w.room.room_id: (w.first - 1 if w.full else ctx.since_pos, w.room.upto)
        for w in windows if w.full or not ctx.timeline_only})
    flt = ctx.filter.room
    for w in windows:
        room_id = w.room.room_id
        state_ids: dict[StateKey, str]
        if w.full:
            state_ids = dict(groups.get_state(txn, cache, w.start))
        elif w.room.limited:
            at_since = store.state_group_at(txn, room_id, ctx.since_pos)
            state_ids = groups.state_difference(txn, cache, w.start, at_since)
        else:
            state_ids = {}
        _became_current(txn, cache, ctx, w, changed.get(room_id), state_ids)
        state_events = event_store.get_events(txn, list(state_ids.values()))

        # History visibility: drop timeline events from before the user could see the room.
        matched = w.matched
        if matched and matched[0][0] < w.member_pos:
            matched = _visible(txn, room_id, ctx.user_id, matched, state_ids, state_events)
        w.room.events = matched
        in_timeline = {e["event_id"] for _, e in matched}
        state_map = {k: state_events[v] for k, v in state_ids.items()
                     if v in state_events and v not in in_timeline}

        if flt.state.lazy_load_members:
            state_map = _lazy_members(txn, cache, ctx, w, state_map, matched)
        w.room.state = [e for e in state_map.values() if flt.state.matches(e, room_id)]


def start_group(txn: Txn, w: Window, before: dict[str, int | None] | None = None) -> None:
    """Read into `w.start` the group of the state at the start of the room's timeline
    (`before`: the groups before events, if read already)."""
    if w.start_read:
        return
    w.start_read = True
    if w.start_at is None:
        w.start = store.state_group_at(txn, w.room.room_id, w.room.upto)
        return
    event_id = w.start_at[1]["event_id"]
    if before is None:
        before = store.state_groups_before(txn, [event_id])
    if event_id in before:
        w.start = before[event_id]
    else:  # the event has no place in the graph
        w.start = store.state_group_at(txn, w.room.room_id, w.first - 1)


def _became_current(
    txn: Txn, cache: groups.StateGroupCache, ctx: SyncContext, w: Window, changed: dict[StateKey, str] | None,
    state_ids: dict[StateKey, str],
) -> None:
    """Add to `state_ids` the entries that became current state within the window (since
    `since`, or for a full section since the timeline's start) but that neither the
    timeline nor the state at its start tells the client: those a state resolution chose
    (a fork merged, an event received on another branch) and state events the timeline
    filter left out. The client takes `state` and then the timeline's state events as
    the room's state, so a key the timeline sets is left to the timeline."""
    if not changed:
        return
    in_timeline = {(e["type"], e["state_key"]) for _, e in w.matched
                   if isinstance(e.get("state_key"), str)}
    candidates = {k: v for k, v in changed.items()
                  if k not in in_timeline and state_ids.get(k) != v}
    unknown = [k for k in candidates if k not in state_ids]
    if not w.full and unknown:
        # Not in the delta: the client still has the entry it had at `since`.
        at_since = store.state_group_at(txn, w.room.room_id, ctx.since_pos)
        known = groups.get_state_keys(txn, cache, at_since, unknown)
        candidates = {k: v for k, v in candidates.items()
                      if k in state_ids or known.get(k) != v}
    state_ids.update(candidates)


def _visible(
    txn: Txn, room_id: str, user_id: str, events: list[tuple[int, dict[str, Any]]],
    state_ids: dict[StateKey, str], state_events: dict[str, dict[str, Any]],
) -> list[tuple[int, dict[str, Any]]]:
    """The events the user may see, each judged by the state at it (services/visibility)."""
    from veche.services.visibility import Visibility

    vis = Visibility.load(txn, room_id, user_id)
    mask = vis.visible(txn, [(e["event_id"], e) for _, e in events])
    return [row for row, ok in zip(events, mask, strict=True) if ok]


def _lazy_members(
    txn: Txn, cache: groups.StateGroupCache, ctx: SyncContext, w: Window, state_map: dict[StateKey, dict[str, Any]],
    timeline: list[tuple[int, dict[str, Any]]],
) -> dict[StateKey, dict[str, Any]]:
    """Keep non-member state plus the member events of the timeline's senders."""
    room_id, full = w.room.room_id, w.full
    flt = ctx.filter.room.state
    sent = ctx.members_known.get(room_id, frozenset())
    wanted = {e["sender"] for _, e in timeline}
    if ctx.since is None or full:
        wanted.add(ctx.user_id)
    in_timeline_members = {e["state_key"] for _, e in timeline
                           if e["type"] == "m.room.member" and "state_key" in e}
    if not flt.include_redundant_members and not full:
        wanted -= sent
    wanted -= in_timeline_members
    kept = {k: v for k, v in state_map.items() if k[0] != "m.room.member"}
    missing = []
    for uid in sorted(wanted):
        ev = state_map.get(("m.room.member", uid))
        if ev is not None:
            kept[("m.room.member", uid)] = ev
        elif not full:
            missing.append(uid)
    if missing:
        start_group(txn, w)
        ids = groups.get_state_keys(txn, cache, w.start,
                                    [("m.room.member", uid) for uid in missing])
        for ev in event_store.get_events(txn, list(ids.values())).values():
            kept[("m.room.member", ev["state_key"])] = ev
    added = ctx.members_added.setdefault(room_id, set())
    added.update(k[1] for k in kept if k[0] == "m.room.member")
    added.update(in_timeline_members)
    return kept
