"""The outbound queue against a server the test plays (tests/federation/fake_peer.py): its
user joins a Veche room through make_join/send_join, then Veche's messages reach it in
transactions; while it refuses them they are kept, across a Veche restart, and delivered
as soon as it is heard from again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess
from tests.federation.fake_peer import FakePeer
from veche.core.events import compute_event_id
from veche.core.room_versions import KNOWN_ROOM_VERSIONS


async def wait_for(predicate: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def bodies(peer: FakePeer) -> list[str]:
    return [p["content"].get("body") for p in peer.received_pdus() if p["type"] == "m.room.message"]


@pytest.mark.parametrize("version", ["10", "12"])
async def test_a_remote_member_joins_and_gets_messages_queued_across_a_restart(
        veche: ServerProcess, peer: FakePeer, http: aiohttp.ClientSession, version: str) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    _, room = await alice.post("createRoom", {"preset": "public_chat", "room_version": version})
    room_id = room["room_id"]
    bob = peer.user("bob")

    # A make_join that does not list the room's version is refused as the spec says.
    status, body, _ = await peer.join(http, veche, room_id, bob, versions=("9",))
    assert (status, body["errcode"], body["room_version"]) == (
        400, "M_INCOMPATIBLE_ROOM_VERSION", version)
    # The user must be the asking server's.
    status, body = await peer.request(
        http, veche, "GET", f"/_matrix/federation/v1/make_join/{quote(room_id)}/"
        f"{quote('@x:elsewhere.test')}?ver={version}")
    assert status == 403, body

    status, answer, join_id = await peer.join(http, veche, room_id, bob)
    assert status == 200, (answer, veche.log())
    assert answer["members_omitted"] is False
    rv = KNOWN_ROOM_VERSIONS[version]
    state = {(e["type"], e["state_key"]): e for e in answer["state"]}
    create = state[("m.room.create", "")]
    if version == "12":
        # The create event goes out without its derived room_id: its ID names the room.
        assert "room_id" not in create
        assert room_id == "!" + compute_event_id(create, rv)[1:]
    assert ("m.room.member", alice.user_id) in state and ("m.room.member", bob) not in state
    chain_ids = {compute_event_id(e, rv) for e in answer["auth_chain"]}
    assert compute_event_id(create, rv) in chain_ids
    assert all("event_id" not in e for e in answer["state"] + answer["auth_chain"])
    # Bob is a member for Veche's clients.
    status, members = await alice.get(f"rooms/{room_id}/joined_members")
    assert bob in members["joined"]

    # Veche's messages reach the peer, in order, in transactions it signed.
    for i in range(3):
        await alice.put(f"rooms/{room_id}/send/m.room.message/t{i}", {"msgtype": "m.text", "body": f"m{i}"})
    await wait_for(lambda: bodies(peer) == ["m0", "m1", "m2"], what="the first messages")
    assert all(t["origin"] == veche.server_name for t in peer.transactions)
    assert all(len(t["pdus"]) <= 50 for t in peer.transactions)

    # The peer goes down: the message is kept (and retried, failing).
    peer.up = False
    await alice.put(f"rooms/{room_id}/send/m.room.message/t3", {"msgtype": "m.text", "body": "while down"})
    await wait_for(lambda: peer.refused >= 1, what="a refused transaction")
    # Veche restarts; the queue is in its database.
    await veche.restart()
    peer.up = True
    before = len(peer.transactions)
    # Heard from again (any signed request), Veche sends at once instead of backing off.
    status, _ = await peer.request(
        http, veche, "GET",
        f"/_matrix/federation/v1/query/profile?user_id={quote(alice.user_id or '', safe='')}")
    assert status == 200
    await wait_for(lambda: "while down" in bodies(peer), timeout=8, what="the queued message")
    assert bodies(peer) == ["m0", "m1", "m2", "while down"]
    assert len(peer.transactions) > before


async def test_after_a_long_outage_only_the_newest_event_is_sent(
        veche: ServerProcess, peer: FakePeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    _, room = await alice.post("createRoom", {"preset": "public_chat"})
    room_id = room["room_id"]
    status, _, _ = await peer.join(http, veche, room_id, peer.user("bob"))
    assert status == 200
    peer.up = False
    await alice.put(f"rooms/{room_id}/send/m.room.message/first", {"msgtype": "m.text", "body": "first"})
    await wait_for(lambda: peer.refused >= 1, what="a refused transaction")
    for i in range(60):
        await alice.put(f"rooms/{room_id}/send/m.room.message/b{i}",
                        {"msgtype": "m.text", "body": f"backlog {i}"})
    peer.up = True
    status, _ = await peer.request(
        http, veche, "GET",
        f"/_matrix/federation/v1/query/profile?user_id={quote(alice.user_id or '', safe='')}")
    # More than a transaction's worth was owed: the peer gets the room's newest event (and
    # fetches the gap itself), not 61 events.
    await wait_for(lambda: "backlog 59" in bodies(peer), timeout=8, what="the newest event")
    assert bodies(peer) == ["backlog 59"]
