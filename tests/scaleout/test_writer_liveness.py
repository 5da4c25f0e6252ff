"""A killed process is forgotten by the others (who then read past the positions it held)
only once none of its database sessions is left: a session killed in the middle of a query
runs the query to its end, and that may be a COMMIT at a position the others would
otherwise have stepped over for good."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from urllib.parse import quote

import aiohttp
import psycopg
import pytest

from tests.conftest import Client
from tests.scaleout.conftest import Cluster, client_on, started_cluster
from veche.cluster.node import SILENT_S, lock_key


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    yield from started_cluster()


def _forgot(cluster: Cluster, name: str) -> bool:
    return all(f"writer {name} gone" in w.log() for w in cluster.workers if w.name != name)


async def test_a_killed_process_with_a_session_still_busy_is_not_forgotten(
        own_cluster: Cluster, http: aiohttp.ClientSession) -> None:
    w1, w2, _ = own_cluster.workers
    alice = await Client(http, w1.base_url).register()
    status, body = await alice.post("createRoom", {"preset": "public_chat"})
    assert status == 200, body
    room_id = body["room_id"]

    # Another writer holds the room: w2's send waits inside its database session.
    holder = await asyncio.to_thread(psycopg.connect, own_cluster.pg.url, autocommit=True)
    holder.execute("BEGIN")
    holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("room:" + room_id),))
    stuck = asyncio.ensure_future(client_on(http, w2.base_url, alice).put(
        f"rooms/{quote(room_id)}/send/m.room.message/stuck", {"msgtype": "m.text", "body": "x"}))
    await asyncio.sleep(1)
    assert not stuck.done()
    w2.kill9()
    with pytest.raises((aiohttp.ClientError, OSError)):
        await stuck

    # Long past the time a silent writer is looked for: its busy session keeps it known.
    await asyncio.sleep(SILENT_S + 3)
    assert not _forgot(own_cluster, "w2"), own_cluster.logs()

    # The session's query ends (the lock is free), the session with it: now it is gone.
    holder.execute("ROLLBACK")
    holder.close()
    deadline = time.monotonic() + 15
    while not _forgot(own_cluster, "w2"):
        assert time.monotonic() < deadline, own_cluster.logs()
        await asyncio.sleep(0.2)
    # And the others go on.
    status, _ = await client_on(http, w1.base_url, alice).put(
        f"rooms/{quote(room_id)}/send/m.room.message/after", {"msgtype": "m.text", "body": "y"})
    assert status == 200
