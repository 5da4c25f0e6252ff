"""A room as a graph of events: edges, forward extremities, rejections and state groups.

- `event_edges` holds the `prev_events` of every event placed in the graph (not outliers':
  their place is unknown until they are de-outliered), `event_auth` the `auth_events` of every
  event (outliers included: state resolution walks their auth chains).
- `event_forward_extremities` is the set of the room's events that no accepted event cites;
  a local event takes them (deepest first, at most 20) as its `prev_events`. An event that
  arrives after an event citing it (federation, out of order) never becomes one.
- `rejections` keeps rejected events (stored, never served, never extremities, no effect on
  state); `events.outlier` marks events whose state is unknown (no state group).
- The state at every event is a *state group*: a delta against `prev_group` (only the keys it
  changes), with a full snapshot every SNAPSHOT_EVERY deltas so a read walks a bounded chain.
  A message reuses its predecessor's group, so a room of 5,000 members costs nothing per
  message; a state event adds one group of one row.
- `event_to_state_groups` maps an event to the group of the state *after* it (as Synapse's
  table does) and to the group of the state *before* it, the spec's "state at the event"
  (the two differ only for accepted state events). Keeping both means neither read needs a
  state resolution: a federated event's state before is resolved once, when it arrives.

Current state (`current_state`, `room_memberships`) is derived from the extremities' state by
the persist step (services/persist.py); /sync reads state groups
(storage/state_groups_read.py), /messages pages in (depth, stream) order (storage/history.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from veche.storage.database import Txn

StateKey = tuple[str, str]

# Deltas between full snapshots (Synapse's MAX_STATE_DELTA_HOPS is the same).
SNAPSHOT_EVERY = 100
# The most prev_events a local event cites (the spec's limit on a PDU's prev_events).
MAX_PREV_EVENTS = 20


@dataclass(slots=True, frozen=True)
class EventContext:
    """Where an event stands: the state group before it, and whether it was rejected or is an
    outlier. Persisting derives the rest (the state after it, the extremities)."""

    state_group_before: int | None = None  # None: the empty state (before m.room.create)
    rejected: str | None = None  # the reason
    outlier: bool = False
    # The room's forward extremities when the context was made, in the persisting
    # transaction, if the maker read them: an event citing exactly these becomes the only
    # extremity on top of current state, which then moves by the event's own key alone.
    extremities: tuple[str, ...] | None = None
    # Server-server API "Soft failure": allowed by the state before it but not by current
    # state. It gets its place in the graph and the state after it (later events may cite
    # it), but it never becomes a forward extremity and moves no current state.
    soft_failed: bool = False
    # Some of the state before the event (create, power levels: its auth state), when the
    # maker read it; the push hook reads them (services/persist.py).
    auth_state: Mapping[StateKey, dict[str, Any]] | None = field(
        default=None, compare=False, hash=False)


@dataclass(slots=True, frozen=True)
class PrevEvents:
    """What a new local event builds on."""

    event_ids: list[str]
    depth: int  # the deepest prev event's
    context: EventContext


def get_forward_extremities(txn: Txn, room_id: str) -> list[tuple[str, int, int | None]]:
    """(event_id, depth, state group after it) of the room's extremities, deepest first."""
    return get_forward_extremities_later(txn, room_id)()


def get_forward_extremities_later(
    txn: Txn, room_id: str
) -> Callable[[], list[tuple[str, int, int | None]]]:
    """`get_forward_extremities` as a held read (`Txn.fetchall_later`)."""
    rows = txn.fetchall_later(
        "SELECT f.event_id, e.depth, g.state_group FROM event_forward_extremities f"
        " JOIN events e ON e.event_id = f.event_id"
        " LEFT JOIN event_to_state_groups g ON g.event_id = f.event_id"
        " WHERE f.room_id = ? ORDER BY e.depth DESC, e.stream_ordering DESC",
        (room_id,),
    )
    return lambda: [(r[0], r[1], r[2]) for r in rows()]


def prev_events_for_local_event(txn: Txn, room_id: str) -> PrevEvents | None:
    """The prev_events, depth and state before a new local event; None for an unknown room."""
    return prev_events_for_local_event_later(txn, room_id)()


def prev_events_for_local_event_later(
    txn: Txn, room_id: str
) -> Callable[[], PrevEvents | None]:
    """`prev_events_for_local_event` with its read held (`Txn.fetchall_later`)."""
    read = get_forward_extremities_later(txn, room_id)

    def finish() -> PrevEvents | None:
        everything = read()
        if not everything:
            return None
        extremities = everything[:MAX_PREV_EVENTS]
        groups = {g for _, _, g in extremities}
        if len(groups) == 1:
            group = groups.pop()
        else:
            # Current state is the resolution of every extremity's state (services/persist.py),
            # so, citing them all, the resolution over the prev_events; local sends are
            # authorised against it. (Past MAX_PREV_EVENTS extremities the uncited ones still
            # count: an approximation of the resolution over the cited ones alone.)
            from veche.storage.events import get_current_state_ids

            base = next((g for _, _, g in extremities if g is not None), None)  # the deepest
            group = store_state_group(
                txn, room_id, None, get_current_state_ids(txn, room_id), base)
        cited = [e for e, _, _ in extremities]
        return PrevEvents(cited, extremities[0][1],
                          EventContext(group, extremities=tuple(e for e, _, _ in everything)))

    return finish


def persist_event_graph(txn: Txn, event: Mapping[str, Any], context: EventContext) -> int | None:
    """Write an event's edges, extremities and state groups; returns the group after it."""
    event_id, room_id = event["event_id"], event["room_id"]
    auth_ids = [a for a in dict.fromkeys(event.get("auth_events") or ()) if isinstance(a, str)]
    txn.write_many(
        "INSERT INTO event_auth (event_id, auth_id) VALUES (?, ?)", [(event_id, a) for a in auth_ids]
    )
    if context.rejected is not None:
        txn.write(
            "INSERT INTO rejections (event_id, reason) VALUES (?, ?)", (event_id, context.rejected)
        )
    if context.outlier:
        return None
    prev_ids = [p for p in dict.fromkeys(event.get("prev_events") or ()) if isinstance(p, str)]
    txn.write_many(
        "INSERT INTO event_edges (event_id, prev_event_id) VALUES (?, ?)",
        [(event_id, p) for p in prev_ids],
    )
    before = after = context.state_group_before
    state_key = event.get("state_key")
    if context.rejected is None and isinstance(state_key, str):
        after = _new_group(txn, room_id, event_id, before, {(event["type"], state_key): event_id})
    if after is None:  # only a rejected create event: there is no state to point at
        return None
    txn.write(
        "INSERT INTO event_to_state_groups (event_id, state_group, state_group_before)"
        " VALUES (?, ?, ?)", (event_id, after, before),
    )
    if context.soft_failed:
        txn.write("INSERT INTO soft_failed_events (event_id) VALUES (?)", (event_id,))
    elif context.rejected is None:
        if prev_ids:
            clause, args = txn.in_list("event_id", prev_ids)
            txn.write(
                f"DELETE FROM event_forward_extremities WHERE room_id = ? AND {clause}",
                [room_id, *args],
            )
        txn.write(
            "INSERT INTO event_forward_extremities (room_id, event_id) SELECT ?, ?"
            " WHERE NOT EXISTS (SELECT 1 FROM event_edges x"
            "  LEFT JOIN rejections r ON r.event_id = x.event_id"
            "  WHERE x.prev_event_id = ? AND r.event_id IS NULL)",
            (room_id, event_id, event_id),
        )
    return after


def store_state_group(
    txn: Txn, room_id: str, event_id: str | None, state: Mapping[StateKey, str], base: int | None,
    base_state: Mapping[StateKey, str] | None = None,
) -> int:
    """A group holding exactly `state`: a delta against `base` (whose state the caller may
    pass) when `state` only adds to or replaces entries of it, else a snapshot. Reuses `base`
    when nothing differs."""
    if base is None:
        return _new_group(txn, room_id, event_id, None, state)
    if base_state is None:
        base_state = get_state_group_ids(txn, base)
    if base_state.keys() - state.keys():
        return _new_group(txn, room_id, event_id, None, state)
    delta = {k: v for k, v in state.items() if base_state.get(k) != v}
    return _new_group(txn, room_id, event_id, base, delta) if delta else base


def _new_group(
    txn: Txn, room_id: str, event_id: str | None, prev_group: int | None,
    delta: Mapping[StateKey, str],
) -> int:
    hops = 0
    if prev_group is not None:
        hops = int(txn.fetchval("SELECT delta_hops FROM state_groups WHERE id = ?", (prev_group,))) + 1
        if hops >= SNAPSHOT_EVERY:
            delta = {**get_state_group_ids(txn, prev_group), **delta}
            prev_group, hops = None, 0
    group = int(txn.fetchval(
        "INSERT INTO state_groups (room_id, event_id, prev_group, delta_hops)"
        " VALUES (?, ?, ?, ?) RETURNING id", (room_id, event_id, prev_group, hops),
    ))
    txn.write_many(
        "INSERT INTO state_groups_state (state_group, type, state_key, event_id) VALUES (?, ?, ?, ?)",
        [(group, t, sk, eid) for (t, sk), eid in delta.items()],
    )
    return group


def get_state_group_ids(
    txn: Txn, group: int, keys: Iterable[StateKey] | None = None
) -> dict[StateKey, str]:
    """The state a group stands for (only `keys` of it, if given), its deltas applied over
    its snapshot."""
    where, args = "", []
    if keys is not None:
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        where = " WHERE " + " OR ".join(["(s.type = ? AND s.state_key = ?)"] * len(wanted))
        args = [part for key in wanted for part in key]
    rows = txn.fetchall(
        "WITH RECURSIVE chain (id, prev, hop) AS ("
        "  SELECT id, prev_group, 0 FROM state_groups WHERE id = ?"
        "  UNION ALL SELECT g.id, g.prev_group, c.hop + 1"
        "  FROM state_groups g JOIN chain c ON g.id = c.prev)"
        " SELECT s.type, s.state_key, s.event_id FROM state_groups_state s"
        f" JOIN chain c ON s.state_group = c.id{where} ORDER BY c.hop DESC",
        [group, *args],
    )
    return {(t, sk): eid for t, sk, eid in rows}


def get_state_groups_after(txn: Txn, event_ids: Sequence[str]) -> dict[str, int]:
    """The group after each of the events that has a place in the graph."""
    if not event_ids:
        return {}
    clause, args = txn.in_list("event_id", list(dict.fromkeys(event_ids)))
    return {r[0]: int(r[1]) for r in txn.fetchall(
        f"SELECT event_id, state_group FROM event_to_state_groups WHERE {clause}", args)}


def get_state_groups(txn: Txn, event_id: str) -> tuple[int | None, int | None] | None:
    """(group before, group after) of an event; None if it has no place in the graph."""
    row = txn.fetchone(
        "SELECT state_group_before, state_group FROM event_to_state_groups WHERE event_id = ?",
        (event_id,),
    )
    return (row[0], row[1]) if row else None


def get_state_ids_before(txn: Txn, event_id: str) -> dict[StateKey, str] | None:
    """The spec's state at an event: the room's state just before it."""
    groups = get_state_groups(txn, event_id)
    if groups is None:
        return None
    return get_state_group_ids(txn, groups[0]) if groups[0] is not None else {}


def get_state_ids_after(txn: Txn, event_id: str) -> dict[StateKey, str] | None:
    groups = get_state_groups(txn, event_id)
    return get_state_group_ids(txn, groups[1]) if groups and groups[1] is not None else None


def get_prev_event_ids(txn: Txn, event_id: str) -> list[str]:
    return [r[0] for r in txn.fetchall(
        "SELECT prev_event_id FROM event_edges WHERE event_id = ?", (event_id,)
    )]


def get_auth_chain_ids(txn: Txn, event_ids: Iterable[str]) -> set[str]:
    """Every event reachable from `event_ids` through auth_events (those not reached excluded)."""
    ids = list(dict.fromkeys(event_ids))
    if not ids:
        return set()
    clause, args = txn.in_list("event_id", ids)
    return {r[0] for r in txn.fetchall(
        "WITH RECURSIVE chain (id) AS ("
        f"  SELECT auth_id FROM event_auth WHERE {clause}"
        "  UNION SELECT a.auth_id FROM event_auth a JOIN chain c ON a.event_id = c.id)"
        " SELECT id FROM chain", args,
    )}


def get_auth_chain_difference(txn: Txn, state_sets: Sequence[Mapping[StateKey, str]]) -> set[str]:
    """State resolution's auth difference: the union minus the intersection of the state
    sets' full auth chains, a state's own events counted in its chain (as core/state_res.py
    counts them).

    The events every set holds share their chain C, so the difference is that of the other
    events' chains D_i less C: (U D_i - n D_i) - C. Only the D_i (the conflicted events'
    chains, small) are read whole; C is walked but only its meeting with the candidates
    comes back.
    """
    values = [set(state.values()) for state in state_sets]
    if len(values) < 2:
        return set()
    common = values[0].intersection(*values[1:])
    chains = [(v - common) | get_auth_chain_ids(txn, v - common) for v in values]
    candidates = chains[0].union(*chains[1:]) - chains[0].intersection(*chains[1:])
    if not candidates:
        return set()
    return candidates - common - _reached_from(txn, sorted(common), sorted(candidates))


def _reached_from(txn: Txn, starts: list[str], targets: list[str]) -> set[str]:
    """Those of `targets` in the auth chains of `starts`."""
    found: set[str] = set()
    target_clause, target_args = txn.in_list("id", targets)
    for i in range(0, len(starts), 500):
        clause, args = txn.in_list("event_id", starts[i : i + 500])
        found.update(r[0] for r in txn.fetchall(
            "WITH RECURSIVE chain (id) AS ("
            f"  SELECT auth_id FROM event_auth WHERE {clause}"
            "  UNION SELECT a.auth_id FROM event_auth a JOIN chain c ON a.event_id = c.id)"
            f" SELECT id FROM chain WHERE {target_clause}", [*args, *target_args],
        ))
    return found


class StoredEventGraph:
    """core.state_res's EventGraph over the database: events and their rejections are read
    on first use (in batches when preloaded) and kept for the resolution's length."""

    def __init__(self, txn: Txn) -> None:
        self._txn = txn
        self._events: dict[str, dict[str, Any] | None] = {}
        self._rejected: set[str] = set()

    def preload(self, event_ids: Iterable[str]) -> None:
        ids = [e for e in dict.fromkeys(event_ids) if e not in self._events]
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            clause, args = self._txn.in_list("e.event_id", chunk)
            rows = self._txn.fetchall(
                "SELECT e.event_id, e.json, r.event_id FROM events e"
                f" LEFT JOIN rejections r ON r.event_id = e.event_id WHERE {clause}", args,
            )
            self._events.update(dict.fromkeys(chunk))
            for event_id, raw, rejected in rows:
                self._events[event_id] = orjson.loads(raw)
                if rejected is not None:
                    self._rejected.add(event_id)

    def event(self, event_id: str) -> dict[str, Any] | None:
        if event_id not in self._events:
            self.preload([event_id])
        return self._events[event_id]

    def is_rejected(self, event_id: str) -> bool:
        if event_id not in self._events:
            self.preload([event_id])
        return event_id in self._rejected


def is_rejected(txn: Txn, event_id: str) -> bool:
    return rejection_reason(txn, event_id) is not None


def rejection_reason(txn: Txn, event_id: str) -> str | None:
    return txn.fetchval("SELECT reason FROM rejections WHERE event_id = ?", (event_id,))  # type: ignore[no-any-return]


def backfill_room(txn: Txn, room_id: str) -> None:
    """Build a stored room's graph from its events, as persisting them would have (used by
    migration 0020 on rooms stored as linear chains, before the graph existed)."""
    after: dict[str, int | None] = {}
    last = 0
    while True:
        rows = txn.fetchall(
            "SELECT stream_ordering, json FROM events WHERE room_id = ? AND stream_ordering > ?"
            " ORDER BY stream_ordering LIMIT 1000", (room_id, last),
        )
        if not rows:
            return
        for _, raw in rows:
            event = orjson.loads(raw)
            prevs: Sequence[Any] = event.get("prev_events") or ()
            before = next((after[p] for p in prevs if p in after), None)
            after[event["event_id"]] = persist_event_graph(txn, event, EventContext(before))
        last = rows[-1][0]
