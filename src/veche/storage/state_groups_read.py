"""Reading state groups (written by storage/event_graph.py) without loading whole states.

A group is a delta against its `prev_group`, down a chain to a full snapshot. Two groups of
one room usually share most of their chains, so what differs between them lies in the deltas
below their nearest common ancestor: `state_difference` reads those (and a few keys of the
ancestor) rather than two full states, which in a room of 5,000 members is 10,000 rows.
Deltas only add or replace entries (storage/event_graph.py snapshots a state that drops a
key), which is what makes the walk sound.

A snapshot cuts the chain every SNAPSHOT_EVERY deltas, but the walk goes on across it when
the snapshot is the state after an event whose state before is another group: by the
meaning of "state after", the snapshot is that group plus the event itself, a one-entry
delta (a "link"). So a sync across a snapshot boundary still reads a few rows.

Groups never change once written, so what is read is kept in a StateGroupCache, one per
database (group IDs are per database), bounded by the number of entries it holds. /sync on
PostgreSQL reads from worker threads: writes to the cache take its lock; reads are plain
dict lookups.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from veche.storage.database import Txn

StateKey = tuple[str, str]
StateMap = Mapping[StateKey, str]


class StateGroupCache:
    """Groups' chains and deltas, and some groups' full states."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        # group -> (prev_group, its delta rows; None for a snapshot, whose rows are its state)
        self._groups: dict[int, tuple[int | None, dict[StateKey, str] | None]] = {}
        self._full: dict[int, dict[StateKey, str]] = {}
        # snapshot -> (the group it is the state after an event of, that event's entry)
        self._links: dict[int, tuple[int, StateKey, str] | None] = {}
        self._entries = 0
        self._lock = threading.Lock()

    def group(self, group: int) -> tuple[int | None, dict[StateKey, str] | None] | None:
        return self._groups.get(group)

    def full(self, group: int) -> dict[StateKey, str] | None:
        return self._full.get(group)

    def has_link(self, group: int) -> bool:
        """Whether a snapshot's link (or that it has none) is known."""
        return group in self._links

    def link(self, group: int) -> tuple[int, StateKey, str] | None:
        return self._links.get(group)

    def put_link(self, group: int, link: tuple[int, StateKey, str] | None) -> None:
        with self._lock:
            if group not in self._links:
                self._links[group] = link
                self._entries += 1
                self._evict()

    def put_group(self, group: int, prev: int | None, delta: dict[StateKey, str] | None) -> None:
        with self._lock:
            if group not in self._groups:
                self._groups[group] = (prev, delta)
                self._entries += 1 + len(delta or ())
                self._evict()

    def put_full(self, group: int, state: dict[StateKey, str]) -> None:
        with self._lock:
            if group not in self._full:
                self._full[group] = state
                self._entries += 1 + len(state)
                self._evict()

    def _evict(self) -> None:
        # Oldest first (insertion order): cheap, and good enough for immutable data.
        while self._entries > self.max_entries and (self._full or self._groups or self._links):
            if self._full:
                state = self._full.pop(next(iter(self._full)))
                self._entries -= 1 + len(state)
            elif self._links:
                self._links.pop(next(iter(self._links)))
                self._entries -= 1
            else:
                _, delta = self._groups.pop(next(iter(self._groups)))
                self._entries -= 1 + len(delta or ())


def _load_chain(
    txn: Txn, cache: StateGroupCache, group: int
) -> dict[int, tuple[int | None, dict[StateKey, str] | None]]:
    """Read (and cache) the chain from `group` down to its snapshot, with the deltas on the
    way; returned too, as a small cache may not keep it all."""
    rows = txn.fetchall(
        "WITH RECURSIVE chain (id, prev) AS ("
        "  SELECT id, prev_group FROM state_groups WHERE id = ?"
        "  UNION ALL SELECT g.id, g.prev_group FROM state_groups g JOIN chain c ON g.id = c.prev)"
        " SELECT c.id, c.prev, s.type, s.state_key, s.event_id FROM chain c"
        " LEFT JOIN state_groups_state s ON s.state_group = c.id AND c.prev IS NOT NULL",
        (group,),
    )
    found: dict[int, tuple[int | None, dict[StateKey, str] | None]] = {}
    for gid, prev, etype, state_key, event_id in rows:
        entry = found.get(gid)
        if entry is None:
            entry = found[gid] = (prev, {} if prev is not None else None)
        if etype is not None and entry[1] is not None:
            entry[1][(etype, state_key)] = event_id
    if group not in found:
        raise KeyError(f"unknown state group {group}")
    for gid, (prev, delta) in found.items():
        cache.put_group(gid, prev, delta)
    return found


def prefetch_states(txn: Txn, cache: StateGroupCache, groups: Iterable[int | None]) -> None:
    """Read what `get_state` of each group would need from the database, all in one query
    (an initial /sync wants the state of every room at once)."""
    todo = sorted({g for g in groups if g is not None and not _derivable(cache, g)})
    for i in range(0, len(todo), 200):
        chunk = todo[i : i + 200]
        clause, args = txn.in_list("id", chunk)
        rows = txn.fetchall(
            "WITH RECURSIVE chain (id, prev) AS ("
            f"  SELECT id, prev_group FROM state_groups WHERE {clause}"
            "  UNION SELECT g.id, g.prev_group FROM state_groups g JOIN chain c ON g.id = c.prev)"
            " SELECT c.id, c.prev, s.type, s.state_key, s.event_id FROM chain c"
            " LEFT JOIN state_groups_state s ON s.state_group = c.id", args,
        )
        found: dict[int, tuple[int | None, dict[StateKey, str]]] = {}
        for gid, prev, etype, state_key, event_id in rows:
            entry = found.setdefault(gid, (prev, {}))
            if etype is not None:
                entry[1][(etype, state_key)] = event_id
        for gid, (prev, rows_of) in found.items():
            if prev is None:
                cache.put_group(gid, None, None)
                cache.put_full(gid, rows_of)
            else:
                cache.put_group(gid, prev, rows_of)


def _derivable(cache: StateGroupCache, group: int) -> bool:
    """Whether the cache alone gives a group's full state."""
    current: int | None = group
    while current is not None:
        if cache.full(current) is not None:
            return True
        entry = cache.group(current)
        if entry is None:
            return False
        current = entry[0]
    return False


def _chain(txn: Txn, cache: StateGroupCache, group: int) -> list[tuple[int, dict[StateKey, str] | None]]:
    """[(group, delta)] from `group` down to its snapshot (whose delta is None)."""
    out: list[tuple[int, dict[StateKey, str] | None]] = []
    loaded: dict[int, tuple[int | None, dict[StateKey, str] | None]] = {}
    current: int | None = group
    while current is not None:
        entry = loaded.get(current) or cache.group(current)
        if entry is None:  # never read, or evicted since
            loaded = _load_chain(txn, cache, current)
            entry = loaded[current]
        out.append((current, entry[1]))
        current = entry[0]
    return out


def _snapshot_rows(txn: Txn, group: int, keys: list[StateKey] | None) -> dict[StateKey, str]:
    if keys is None:
        return {(t, sk): eid for t, sk, eid in txn.fetchall(
            "SELECT type, state_key, event_id FROM state_groups_state WHERE state_group = ?",
            (group,),
        )}
    # By type, the state keys as an IN list: each a probe of the primary key (a long OR of
    # (type, state_key) pairs is evaluated against every row of the snapshot instead).
    by_type: dict[str, list[str]] = {}
    for etype, state_key in keys:
        by_type.setdefault(etype, []).append(state_key)
    out: dict[StateKey, str] = {}
    for etype, state_keys in by_type.items():
        for i in range(0, len(state_keys), 500):
            clause, args = txn.in_list("state_key", state_keys[i : i + 500])
            for sk, eid in txn.fetchall(
                "SELECT state_key, event_id FROM state_groups_state"
                f" WHERE state_group = ? AND type = ? AND {clause}", [group, etype, *args],
            ):
                out[(etype, sk)] = eid
    return out


def get_state(txn: Txn, cache: StateGroupCache, group: int | None) -> StateMap:
    """The full state of a group (None: the empty state before a room's create event).
    The mapping is shared with the cache: do not change it."""
    if group is None:
        return {}
    cached = cache.full(group)
    if cached is not None:
        return cached
    deltas: list[dict[StateKey, str]] = []
    base: StateMap = {}
    for gid, delta in _chain(txn, cache, group):
        cached = cache.full(gid)
        if cached is not None:
            base = cached
            break
        if delta is None:
            snapshot = _snapshot_rows(txn, gid, None)
            cache.put_full(gid, snapshot)
            base = snapshot
            break
        deltas.append(delta)
    if not deltas:
        return base
    state = dict(base)
    for delta in reversed(deltas):
        state.update(delta)
    cache.put_full(group, state)
    return state


def get_state_keys(
    txn: Txn, cache: StateGroupCache, group: int | None, keys: Iterable[StateKey]
) -> dict[StateKey, str]:
    """The entries of a group's state for `keys` (those it has)."""
    wanted = set(keys)
    if group is None or not wanted:
        return {}
    cached = cache.full(group)
    if cached is not None:
        return {k: cached[k] for k in wanted if k in cached}
    out: dict[StateKey, str] = {}
    for gid, delta in _chain(txn, cache, group):
        full = cache.full(gid)
        if full is not None:
            out.update((k, full[k]) for k in wanted if k in full)
            return out
        if delta is None:
            out.update(_snapshot_rows(txn, gid, sorted(wanted)))
            return out
        for key in [k for k in wanted if k in delta]:
            out[key] = delta[key]
            wanted.discard(key)
        if not wanted:
            return out
    return out


def state_difference(
    txn: Txn, cache: StateGroupCache, new: int | None, old: int | None
) -> dict[StateKey, str]:
    """The entries of state(new) that differ from state(old): what a reader who knew `old`
    is told to reach `new`. Keys that `new` lacks are left out (a client cannot be told
    that state went away)."""
    if new == old or new is None:
        return {}
    if old is None:
        return dict(get_state(txn, cache, new))
    met = _meet(txn, cache, new, old)
    if met is None:
        # No common ancestor near enough (a state rebuilt whole, e.g. to drop a key, or a
        # `since` very far back): compare the two states. Their snapshots' states are
        # cached, so this costs a dict comparison more often than a read.
        old_state = get_state(txn, cache, old)
        return {k: v for k, v in get_state(txn, cache, new).items() if old_state.get(k) != v}
    ancestor, path_new, path_old = met
    new_side = _overlay(path_new)
    old_side = _overlay(path_old)
    # Keys only one side changed compare against the ancestor's entry.
    base = get_state_keys(txn, cache, ancestor, (new_side.keys() ^ old_side.keys()))
    out: dict[StateKey, str] = {}
    for key in new_side.keys() | old_side.keys():
        now = new_side.get(key, base.get(key))
        if now is not None and now != old_side.get(key, base.get(key)):
            out[key] = now
    return out


# Groups walked from each side at most before giving up on a common ancestor.
MAX_WALK = 1000


def _meet(
    txn: Txn, cache: StateGroupCache, new: int, old: int
) -> tuple[int, list[tuple[int, dict[StateKey, str] | None]],
           list[tuple[int, dict[StateKey, str] | None]]] | None:
    """(nearest common ancestor, the groups from `new` down to it, those from `old`), each
    path with the delta leading into each group. A group's parent (prev_group or link) is
    written before it, so has a smaller ID: stepping down whichever side is at the larger
    ID, the two meet at their nearest common ancestor, or one runs out first and there is
    none. A parent that is not smaller gives up (the caller then compares whole states)."""
    paths: tuple[list[tuple[int, dict[StateKey, str] | None]], ...] = ([], [])
    at: list[int | None] = [new, old]
    while True:
        a, b = at
        if a is None or b is None:
            return None
        if a == b:
            return a, paths[0], paths[1]
        side = 0 if a > b else 1
        group = a if side == 0 else b
        if len(paths[side]) >= MAX_WALK:
            return None
        parent, delta = _parent(txn, cache, group)
        if parent is not None and parent >= group:
            return None
        paths[side].append((group, delta))
        at[side] = parent


def _parent(txn: Txn, cache: StateGroupCache, group: int) -> tuple[int | None, dict[StateKey, str] | None]:
    """A group's parent and its delta from it: prev_group, or for a snapshot its link."""
    entry = cache.group(group)
    if entry is None:
        entry = _load_chain(txn, cache, group)[group]
    if entry[0] is not None:
        return entry
    if cache.has_link(group):
        link = cache.link(group)
    else:
        row = txn.fetchone(
            "SELECT t.state_group_before, e.type, e.state_key, e.event_id FROM state_groups g"
            " JOIN event_to_state_groups t ON t.event_id = g.event_id AND t.state_group = g.id"
            " JOIN events e ON e.event_id = g.event_id"
            " WHERE g.id = ? AND e.state_key IS NOT NULL", (group,),
        )
        link = None
        if row is not None and row[0] is not None and int(row[0]) != group:
            link = (int(row[0]), (row[1], row[2]), row[3])
        cache.put_link(group, link)
    if link is None:
        return None, None
    return link[0], {link[1]: link[2]}


def _overlay(chain: list[tuple[int, dict[StateKey, str] | None]]) -> dict[StateKey, str]:
    """The deltas of a chain segment (newest first) merged, newest winning."""
    out: dict[StateKey, str] = {}
    for _, delta in reversed(chain):
        out.update(delta or {})
    return out
