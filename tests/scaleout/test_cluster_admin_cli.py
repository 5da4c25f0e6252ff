"""`veche admin` commands that send events or end sessions wait for the server to stop: in a
scale-out deployment every process has a port of its own, so they ask the database which
processes are running, and refuse while any is."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest

from tests.conftest import Client
from tests.scaleout.conftest import Cluster, started_cluster


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    yield from started_cluster()


def admin(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    # The config the processes share, on a port none of them listens on.
    env = {**cluster.workers[0].env, "VECHE_LISTEN__PORT": "1"}
    return subprocess.run([sys.executable, "-m", "veche", "admin", *args], env=env,
                          capture_output=True, text=True, timeout=120)


async def test_session_ending_commands_wait_for_every_process_to_stop(
        own_cluster: Cluster, http: aiohttp.ClientSession) -> None:
    bob = await Client(http, own_cluster.base_url).register()
    out = await asyncio.to_thread(admin, own_cluster, "deactivate-user", bob.user_id or "")
    assert out.returncode != 0 and "running (w1, w2, w3)" in out.stderr, out.stderr
    assert (await bob.get("account/whoami"))[0] == 200

    # One process still running is enough to refuse.
    for w in own_cluster.workers[1:]:
        await asyncio.to_thread(w.stop)
    out = await asyncio.to_thread(admin, own_cluster, "deactivate-user", bob.user_id or "")
    assert out.returncode != 0 and "running (w1)" in out.stderr, out.stderr

    await asyncio.to_thread(own_cluster.workers[0].stop)
    out = await asyncio.to_thread(admin, own_cluster, "deactivate-user", bob.user_id or "")
    assert out.returncode == 0, out.stderr
    await asyncio.to_thread(own_cluster.workers[0].start)
    bob.base_url = own_cluster.workers[0].base_url
    assert (await bob.get("account/whoami"))[0] == 401
