"""The search index on both databases: every indexed event is found, one at a time or in
bulk, and a redacted or purged one is not. On SQLite rows wait outside the FTS5 index and
are moved in batches (storage/search.py): none is lost or found twice on the way."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import BACKENDS, open_test_database
from veche.storage import search
from veche.storage.database import Database, Txn

ROOM = "!room:test"


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest) -> Iterator[Database]:
    yield from open_test_database(request.param, "veche-search-")


def _index(db: Database, i: int, body: str, room_id: str = ROOM) -> str:
    event = {"type": "m.room.message", "event_id": f"$e{i}", "room_id": room_id,
             "content": {"msgtype": "m.text", "body": body}}
    db.run_sync(lambda txn: search.index_event(txn, event, i))
    return event["event_id"]


def _find(db: Database, word: str, room_id: str = ROOM) -> list[str]:
    db.run_sync(search.flush_pending)

    def run(txn: Txn) -> list[tuple[str, int, float]]:
        return search.search(txn, [room_id], [word], ["content.body"], "recent")

    return [m[0] for m in db.run_sync(run)]


def test_every_event_indexed_one_transaction_each_is_found_once(db: Database) -> None:
    n = 2 * search.PENDING_BATCH + 17  # past two batch moves, and some left waiting
    ids = [_index(db, i, f"walrus number{i}") for i in range(n)]
    found = _find(db, "walrus")
    assert sorted(found) == sorted(ids)
    assert found[0] == ids[-1]  # newest first
    assert _find(db, f"number{n - 1}") == [ids[-1]]


def test_redacted_and_purged_events_are_not_found(db: Database) -> None:
    kept = _index(db, 1, "otter kept")
    gone = _index(db, 2, "otter redacted")  # still waiting for the index on SQLite
    db.run_sync(lambda txn: search.unindex_event(txn, gone))
    assert _find(db, "otter") == [kept]
    _index(db, 3, "otter elsewhere", room_id="!other:test")
    db.run_sync(lambda txn: search.unindex_room(txn, "!other:test"))
    assert _find(db, "otter", room_id="!other:test") == []
    assert _find(db, "otter") == [kept]
