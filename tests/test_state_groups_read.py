"""storage/state_groups_read.py against the plain reading of state groups
(storage/event_graph.py's `get_state_group_ids`): on random trees of groups, with chains
long enough to cross the snapshot interval and states that drop keys (which start a new
snapshot), the difference of any two groups, a group's state and a few keys of it are the
same as reading both states whole. A cache too small to hold a chain gives the same answers.
Groups that are the state after events are linked across snapshots; there the difference
of two groups on either side of a snapshot reads deltas, not states.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from tests.conftest import BACKENDS, open_test_database
from veche.storage import event_graph as graph
from veche.storage import state_groups_read as reader
from veche.storage.database import Database, Txn
from veche.storage.event_graph import EventContext

StateKey = tuple[str, str]


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    yield from open_test_database(request.param, "veche-groups-")


def build_tree(txn: Txn, rng: random.Random, size: int) -> list[int]:
    """Groups of one room: each on the newest for a while (a chain past the snapshot
    interval), then now and then a branch off an older one; entries added and replaced,
    twice one dropped."""
    keys = [("m.room.member", f"@u{i}:x") for i in range(40)] + [("m.room.topic", ""), ("t", "")]
    made = [graph.store_state_group(txn, "!r:x", None, {("m.room.create", ""): "$create"}, None)]
    states = [graph.get_state_group_ids(txn, made[0])]
    for n in range(size):
        at = len(made) - 1 if n < 150 or rng.random() < 0.9 else rng.randrange(len(made))
        state = dict(states[at])
        for key in rng.sample(keys, rng.choice((1, 1, 1, 2, 5))):
            state[key] = f"${n}-{key[1]}"
        if n in (20, 250):
            del state[rng.choice([k for k in state if k[0] != "m.room.create"])]
        group = graph.store_state_group(txn, "!r:x", None, state, made[at])
        made.append(group)
        states.append(state)
    return made


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_differences_match_whole_states(db: Database, seed: int) -> None:
    rng = random.Random(seed)

    def check(txn: Txn) -> None:
        made = build_tree(txn, rng, 260)
        assert max(int(txn.fetchval("SELECT MAX(delta_hops) FROM state_groups")), 0) >= 99
        whole = {g: graph.get_state_group_ids(txn, g) for g in set(made)}
        for cache, tries in ((reader.StateGroupCache(), 300), (reader.StateGroupCache(30), 40)):
            pairs = [(rng.choice(made), rng.choice(made)) for _ in range(tries)]
            start = rng.randrange(max(1, len(made) - tries))
            pairs += list(zip(made[start:], made[start + 1 : start + tries], strict=False))
            for new, old in pairs:
                expected = {k: v for k, v in whole[new].items() if whole[old].get(k) != v}
                assert reader.state_difference(txn, cache, new, old) == expected, (new, old)
            for group in rng.sample(made, tries // 5):
                assert dict(reader.get_state(txn, cache, group)) == whole[group]
                keys = rng.sample(sorted(whole[made[-1]]), 5) + [("absent", "")]
                assert reader.get_state_keys(txn, cache, group, keys) == {
                    k: whole[group][k] for k in keys if k in whole[group]}
            reader.prefetch_states(txn, cache, made[-50:])
            for group in made[-50:]:
                assert dict(reader.get_state(txn, cache, group)) == whole[group]
        assert reader.state_difference(txn, reader.StateGroupCache(), made[5], None) == whole[made[5]]
        assert reader.state_difference(txn, reader.StateGroupCache(), None, made[5]) == {}

    db.run_sync(check)


def place_events(txn: Txn, rng: random.Random, size: int) -> dict[str, int]:
    """A room's events placed in the graph (as persisting them does): a create event, then
    state events each setting one key: 450 members joining one after the other, then
    changes to 30 of them, now and then on an older event (a fork). Returns event -> the
    group after it."""
    after: dict[str, int] = {}
    order: list[str] = []

    def place(event_id: str, etype: str, state_key: str, prev: list[str]) -> None:
        event = {"event_id": event_id, "room_id": "!r:x", "type": etype, "state_key": state_key,
                 "sender": "@a:x", "content": {}, "prev_events": prev, "auth_events": [],
                 "depth": len(order) + 1, "origin_server_ts": 0}
        txn.execute(
            "INSERT INTO events (stream_ordering, event_id, room_id, depth, type, state_key,"
            " sender, origin_server_ts, json) VALUES (?, ?, '!r:x', ?, ?, ?, '@a:x', 0, '{}')",
            (len(order) + 1, event_id, len(order) + 1, etype, state_key),
        )
        group = graph.persist_event_graph(
            txn, event, EventContext(after[prev[0]] if prev else None))
        assert group is not None
        after[event_id] = group
        order.append(event_id)

    place("$create", "m.room.create", "", [])
    for n in range(size):
        prev = order[-1] if n < 450 or rng.random() < 0.9 else rng.choice(order[450:])
        member = n if n < 450 else rng.randrange(30)
        place(f"${n}", "m.room.member", f"@u{member}:x", [prev])
    return after


@pytest.mark.parametrize("seed", [4, 5])
def test_differences_across_snapshots_walk_links(db: Database, seed: int) -> None:
    rng = random.Random(seed)

    def check(txn: Txn) -> None:
        after = place_events(txn, rng, 600)
        made = list(after.values())
        snapshots = int(txn.fetchval("SELECT COUNT(*) FROM state_groups WHERE prev_group IS NULL"))
        assert snapshots >= 5
        whole = {g: graph.get_state_group_ids(txn, g) for g in made}
        cache = reader.StateGroupCache()
        for new, old in [(rng.choice(made), rng.choice(made)) for _ in range(300)]:
            expected = {k: v for k, v in whole[new].items() if whole[old].get(k) != v}
            assert reader.state_difference(txn, cache, new, old) == expected, (new, old)
        # Twenty events apart, across a snapshot or not, with nothing cached: the chains'
        # deltas (at most a snapshot interval each) and a few keys, not two whole states.
        fetched: list[int] = []
        counting = Counting(txn, fetched)
        for new, old in zip(made[300:450], made[280:430], strict=True):
            expected = {k: v for k, v in whole[new].items() if whole[old].get(k) != v}
            fetched.clear()
            assert reader.state_difference(counting, reader.StateGroupCache(), new, old) == expected
            assert sum(fetched) < 250 < len(whole[old]), (new, old, fetched)

    db.run_sync(check)


class Counting:
    """A transaction that notes how many rows each read returns."""

    def __init__(self, txn: Txn, fetched: list[int]) -> None:
        self._txn, self._fetched = txn, fetched

    def fetchall(self, sql: str, args: object = ()) -> list[tuple[object, ...]]:
        rows = self._txn.fetchall(sql, args)  # type: ignore[arg-type]
        self._fetched.append(len(rows))
        return rows

    def in_list(self, column: str, values: list[str]) -> tuple[str, list[str]]:
        return self._txn.in_list(column, values)

    def fetchone(self, sql: str, args: object = ()) -> tuple[object, ...] | None:
        row = self._txn.fetchone(sql, args)  # type: ignore[arg-type]
        self._fetched.append(1 if row else 0)
        return row
