"""storage/state_groups_read.py against the plain reading of state groups
(storage/event_graph.py's `get_state_group_ids`): on random trees of groups, with chains
long enough to cross the snapshot interval and states that drop keys (which start a new
snapshot), the difference of any two groups, a group's state and a few keys of it are the
same as reading both states whole. A cache too small to hold a chain gives the same answers.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, PostgresTestDatabase
from veche.storage import event_graph as graph
from veche.storage import state_groups_read as reader
from veche.storage.database import Database, Txn, open_database

StateKey = tuple[str, str]


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    tmp = Path(tempfile.mkdtemp(prefix="veche-groups-"))
    pg = PostgresTestDatabase() if request.param == "postgres" else None
    database = open_database(pg.url if pg else f"sqlite:///{tmp / 'veche.db'}", pool_size=1)
    try:
        yield database
    finally:
        database.close()
        if pg is not None:
            pg.drop()
        shutil.rmtree(tmp, ignore_errors=True)


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
        for cache in (reader.StateGroupCache(), reader.StateGroupCache(max_entries=30)):
            pairs = [(rng.choice(made), rng.choice(made)) for _ in range(300)]
            pairs += list(zip(made, made[1:], strict=False))  # neighbours: one delta apart
            for new, old in pairs:
                expected = {k: v for k, v in whole[new].items() if whole[old].get(k) != v}
                assert reader.state_difference(txn, cache, new, old) == expected, (new, old)
            for group in rng.sample(made, 40):
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
