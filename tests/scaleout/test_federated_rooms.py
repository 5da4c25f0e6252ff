"""Issue 15, one writer per room, for rooms that arrive over federation: invites from another
server into a room this server has never seen, received by two processes at the same moment,
both land (the room is created once, not refused to one of them), and each invitee sees
theirs."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import Client
from tests.federation.fake_peer import FakePeer
from tests.federation.pki import TestCA
from tests.scaleout.conftest import Cluster, started_cluster
from veche.core.events import compute_event_id
from veche.core.room_versions import KNOWN_ROOM_VERSIONS

ROOMS = 12


@pytest.fixture(scope="module")
def test_ca() -> Iterator[TestCA]:
    folder = Path(tempfile.mkdtemp(prefix="veche-ca-"))
    yield TestCA(folder)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def federating_cluster(test_ca: TestCA) -> Iterator[Cluster]:
    yield from started_cluster({
        "VECHE_FEDERATION__ENABLED": "true",
        "VECHE_FEDERATION__TLS_PORT": "0",  # federation on the client listener, as behind a proxy
        "VECHE_FEDERATION__CA_FILE": str(test_ca.ca_file),
        "VECHE_FEDERATION__IP_RANGE_ALLOWLIST": json.dumps(["127.0.0.0/8"]),
    })


@pytest.fixture
async def peer(test_ca: TestCA) -> AsyncIterator[FakePeer]:
    fake = await FakePeer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    yield fake
    await fake.close()


async def test_invites_into_one_new_room_on_two_processes_at_once_both_land(
        federating_cluster: Cluster, peer: FakePeer, http: aiohttp.ClientSession) -> None:
    w1, w2 = federating_cluster.workers[:2]
    alice = await Client(http, w1.base_url).register()
    bob = await Client(http, w2.base_url).register()

    def invite(room_id: str, invitee: str) -> tuple[str, dict[str, object]]:
        event = peer.sign({
            "type": "m.room.member", "room_id": room_id, "sender": peer.user("carol"),
            "state_key": invitee, "content": {"membership": "invite"},
            "origin_server_ts": int(time.time() * 1000), "depth": 5,
            "prev_events": ["$" + "a" * 43], "auth_events": ["$" + "b" * 43],
        }, "10")
        return compute_event_id(event, KNOWN_ROOM_VERSIONS["10"]), event

    async def put(worker: object, room_id: str, invitee: str) -> tuple[int, object]:
        event_id, event = invite(room_id, invitee)
        state = [{"type": "m.room.create", "state_key": "", "sender": peer.user("carol"),
                  "content": {"room_version": "10", "creator": peer.user("carol")}}]
        return await peer.request(
            http, worker, "PUT",
            f"/_matrix/federation/v2/invite/{quote(room_id)}/{quote(event_id)}",
            {"room_version": "10", "event": event, "invite_room_state": state})

    rooms = [f"!race{i}:{peer.name}" for i in range(ROOMS)]
    answers = await asyncio.gather(*(
        put(w, room, user.user_id or "")
        for room in rooms for w, user in ((w1, alice), (w2, bob))))
    assert [status for status, _ in answers] == [200] * (2 * ROOMS), answers

    for who in (alice, bob):
        status, sync = await who.get("sync")
        assert status == 200
        assert set(sync.get("rooms", {}).get("invite", {})) == set(rooms), who.user_id
