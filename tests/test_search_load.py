"""A slow search stalls nobody: while a broad /search runs over a big index, other requests
(a /sync woken by a message, /versions) answer at once; a search still finds what was sent
just before it; a search past its time limit is stopped with a clear error."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess
from tests.sync_helpers import send, sync

WORDS = ("the them then there these they this that to too two time take table tell test"
         " a an and any are as at be by can do for from go he her his how in is it its may"
         " me my no not now of on one or our out see she so some up us was we what when who"
         " will with you your").split()


def fill_index(srv: ServerProcess, room_id: str, n: int, start: int = 0) -> None:
    """n searchable messages in the room's index, written straight into the database (sending
    them would take minutes): enough that a broad search takes a good while."""
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(30)) for _ in range(500)]
    if srv.backend == "sqlite":
        conn = sqlite3.connect(srv.db_url.removeprefix("sqlite:///"), timeout=30)
        with conn:
            conn.executemany("INSERT INTO event_search (event_id, room_id, key, stream_ordering,"
                             " value) VALUES (?, ?, ?, ?, ?)",
                             ((f"$bulk{i}", room_id, "content.body", -i, texts[i % len(texts)])
                              for i in range(start, start + n)))
        conn.close()
        return
    import psycopg

    with psycopg.connect(srv.db_url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bulk (id INT, value TEXT)")
        cur.executemany("INSERT INTO bulk VALUES (%s, %s)", list(enumerate(texts)))
        cur.execute("INSERT INTO event_search (event_id, room_id, key, stream_ordering, vector)"
                    " SELECT '$bulk' || g, %s, 'content.body', -g, v.vector FROM"
                    " generate_series(1, %s) g JOIN (SELECT id, to_tsvector('simple', value)"
                    " AS vector FROM bulk) v ON v.id = g %% %s", (room_id, n, len(texts)))


async def setup(srv: ServerProcess, http: aiohttp.ClientSession, n: int
                ) -> tuple[Client, Client, str]:
    alice = await Client(http, srv.base_url).register()
    bob = await Client(http, srv.base_url).register()
    status, room = await alice.post("createRoom", {"preset": "public_chat"})
    assert status == 200, room
    status, body = await bob.post(f"join/{room['room_id']}", {})
    assert status == 200, body
    await asyncio.to_thread(fill_index, srv, room["room_id"], n)
    return alice, bob, room["room_id"]


BATCH = 60_000


async def timed_search(client: Client) -> tuple[float, list[str]]:
    t = time.perf_counter()
    status, body = await client.post("search", broad())
    assert status == 200, body
    found = body["search_categories"]["room_events"]["results"]
    return time.perf_counter() - t, [r["result"]["content"]["body"] for r in found]


def broad(order_by: str = "recent") -> dict[str, Any]:
    return {"search_categories": {"room_events": {"search_term": "t", "order_by": order_by}}}


@pytest.fixture
def sqlite_server(tmp_path: Any) -> Iterator[ServerProcess]:
    # Only SQLite ever ran transactions on the event loop, so the stall is tested there alone
    # (and once per run, whatever the session's backends).
    srv = ServerProcess("sqlite", tmp_path, f"sqlite:///{tmp_path / 'veche.db'}")
    srv.start()
    yield srv
    srv.stop()


async def test_slow_search_stalls_nobody(sqlite_server: ServerProcess) -> None:
    srv = sqlite_server
    async with aiohttp.ClientSession() as http:
        alice, bob, room_id = await setup(srv, http, BATCH)
        filled = BATCH
        # Big enough that a broad search takes a good while on this machine today.
        while (await timed_search(alice))[0] < 0.5 and filled < 6 * BATCH:
            await asyncio.to_thread(fill_index, srv, room_id, BATCH, filled)
            filled += BATCH
        since = (await sync(bob))["next_batch"]
        await send(alice, room_id, "the needle")

        alone, found = await timed_search(alice)
        assert found == ["the needle"]  # what was sent just before is found
        searching = asyncio.create_task(timed_search(alice))
        await asyncio.sleep(alone / 5)  # the search is under way
        t = time.perf_counter()
        status, _ = await bob.get("/_matrix/client/versions")
        versions = time.perf_counter() - t
        assert status == 200
        poll = asyncio.create_task(sync(bob, since, timeout="20000"))
        await asyncio.sleep(0)
        t = time.perf_counter()
        await send(alice, room_id, "the wake-up")
        while "the wake-up" not in str((body := await poll).get("rooms")):
            poll = asyncio.create_task(sync(bob, body["next_batch"], timeout="20000"))
        woken = time.perf_counter() - t
        during, found = await searching
        assert found == ["the needle"]  # it began before the wake-up was sent
        # Each took a small part of a search (by ratio: the machine's speed varies).
        assert alone > 0.3 and during > 0.3, (alone, during)
        assert versions < alone / 3 and woken < alone / 3, (versions, woken, alone)


async def test_search_time_limit(make_server: Callable[..., ServerProcess]) -> None:
    srv = make_server({"VECHE_LIMITS__SEARCH_TIMEOUT_MS": "1"}, dev=True)
    async with aiohttp.ClientSession() as http:
        alice, _, room_id = await setup(srv, http, 5_000)
        status, body = await alice.post("search", broad("rank"))
        assert status == 400 and body["errcode"] == "M_UNKNOWN", body
        assert "longer than" in body["error"]
        # The server goes on.
        await send(alice, room_id, "zebra")
        status, _ = await alice.get("/_matrix/client/versions")
        assert status == 200
