"""Typing, receipts and presence between Veche and a server the test plays
(tests/federation/fake_peer.py), which has a user joined to a Veche room: what Veche sends
it, that typing is not kept through an outage, and which presence Veche takes from it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.conftest import Client, ServerProcess
from tests.federation.fake_peer import FakePeer
from tests.federation.peers import start_federating_veche
from tests.federation.pki import TestCA
from tests.sync_helpers import events_of


def q(value: str) -> str:
    return quote(value, safe="")


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def edus(peer: FakePeer, edu_type: str, since: int = 0) -> list[dict[str, Any]]:
    return [e["content"] for t in peer.transactions[since:] for e in t["edus"]
            if e["edu_type"] == edu_type]


async def room_with_peer(http: aiohttp.ClientSession, veche: ServerProcess,
                         peer: FakePeer) -> tuple[Client, str, str]:
    alice = await Client(http, veche.base_url).register("alice")
    _, room = await alice.post("createRoom", {"preset": "public_chat"})
    status, answer, _ = await peer.join(http, veche, room["room_id"], peer.user("bob"))
    assert status == 200, answer
    _, sent = await alice.put(f"rooms/{q(room['room_id'])}/send/m.room.message/m",
                              {"msgtype": "m.text", "body": "hi"})
    return alice, room["room_id"], sent["event_id"]


async def test_typing_receipts_and_presence_go_to_the_room_servers_typing_not_after_an_outage(
        veche: ServerProcess, peer: FakePeer, http: aiohttp.ClientSession) -> None:
    alice, room_id, event_id = await room_with_peer(http, veche, peer)
    a = alice.user_id or ""
    assert (await alice.put(f"rooms/{q(room_id)}/typing/{q(a)}",
                            {"typing": True, "timeout": 10000}))[0] == 200
    await wait_for(lambda: edus(peer, "m.typing"), "the typing EDU")
    assert edus(peer, "m.typing")[0] == {"room_id": room_id, "user_id": a, "typing": True,
                                         "timeout": 10000}
    assert (await alice.post(f"rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {}))[0] == 200
    # A private receipt stays here.
    assert (await alice.post(f"rooms/{q(room_id)}/receipt/m.read.private/{q(event_id)}", {}))[0] == 200
    await wait_for(lambda: edus(peer, "m.receipt"), "the receipt EDU")
    receipt = edus(peer, "m.receipt")[0][room_id]["m.read"][a]
    assert receipt["event_ids"] == [event_id] and isinstance(receipt["data"]["ts"], int)
    assert (await alice.put(f"presence/{q(a)}/status",
                            {"presence": "online", "status_msg": "here"}))[0] == 200
    pushed = await wait_for(lambda: [p for c in edus(peer, "m.presence") for p in c["push"]
                                     if p.get("status_msg") == "here"], "the presence EDU")
    assert pushed[0]["user_id"] == a and pushed[0]["presence"] == "online"
    assert isinstance(pushed[0]["last_active_ago"], int)

    # The peer is down: typing sent meanwhile is not kept for it; receipts are.
    peer.up = False
    assert (await alice.put(f"rooms/{q(room_id)}/typing/{q(a)}", {"typing": False}))[0] == 200
    await wait_for(lambda: peer.refused >= 1, "a refused transaction")
    _, sent = await alice.put(f"rooms/{q(room_id)}/send/m.room.message/m2",
                              {"msgtype": "m.text", "body": "while down"})
    assert (await alice.post(f"rooms/{q(room_id)}/receipt/m.read/{q(sent['event_id'])}", {}))[0] == 200
    peer.up = True
    before = len(peer.transactions)
    status, _ = await peer.request(
        http, veche, "GET", f"/_matrix/federation/v1/query/profile?user_id={q(a)}")
    assert status == 200
    await wait_for(lambda: any(room_id in c for c in edus(peer, "m.receipt", before)),
                   "the receipt owed")
    assert edus(peer, "m.typing", before) == []


async def test_presence_is_taken_for_the_origins_users_sharing_a_room(
        veche: ServerProcess, peer: FakePeer, http: aiohttp.ClientSession) -> None:
    alice, room_id, _ = await room_with_peer(http, veche, peer)
    a, bob, carol = alice.user_id or "", peer.user("bob"), peer.user("carol")
    push = [
        {"user_id": bob, "presence": "unavailable", "status_msg": "away", "last_active_ago": 5000,
         "currently_active": False},
        # Not the origin's user: refused.
        {"user_id": a, "presence": "offline", "status_msg": "hacked", "last_active_ago": 0},
        # Shares no room with anyone here (yet): not kept.
        {"user_id": carol, "presence": "online", "status_msg": "early", "last_active_ago": 0},
        {"user_id": bob, "presence": "sleeping"},
    ]
    assert (await alice.put(f"presence/{q(a)}/status", {"presence": "online",
                                                        "status_msg": "mine"}))[0] == 200
    txn = {"origin": peer.name, "origin_server_ts": int(time.time() * 1000), "pdus": [],
           "edus": [{"edu_type": "m.presence", "content": {"push": push}}]}
    status, body = await peer.request(http, veche, "PUT", "/_matrix/federation/v1/send/p1", txn)
    assert status == 200, body
    status, got = await alice.get(f"presence/{q(bob)}/status")
    assert status == 200 and got["presence"] == "unavailable" and got["status_msg"] == "away", got
    assert 5000 <= got["last_active_ago"] < 60_000
    status, sync = await alice.get("sync", params={"timeout": "0"})
    shown = {e["sender"]: e["content"] for e in events_of(sync, "presence")}
    assert shown[bob]["status_msg"] == "away"
    status, mine = await alice.get(f"presence/{q(a)}/status")
    assert mine["status_msg"] == "mine", mine
    # carol joins later: what was said of her before is not shown. Her server is told who
    # is present in the room she joined.
    before = len(peer.transactions)
    status, answer, _ = await peer.join(http, veche, room_id, carol)
    assert status == 200, answer
    told = await wait_for(lambda: [p for c in edus(peer, "m.presence", before) for p in c["push"]],
                          "the presence of the room's members")
    assert [(p["user_id"], p["status_msg"]) for p in told] == [(a, "mine")]
    status, got = await alice.get(f"presence/{q(carol)}/status")
    assert (status, got) == (200, {"presence": "offline"}), got


async def test_presence_stays_here_when_not_federated(
        make_server: Any, test_ca: TestCA, peer: FakePeer, http: aiohttp.ClientSession) -> None:
    veche = start_federating_veche(make_server, test_ca, VECHE_PRESENCE__FEDERATE="false")
    alice, room_id, _ = await room_with_peer(http, veche, peer)
    a, bob = alice.user_id or "", peer.user("bob")
    assert (await alice.put(f"presence/{q(a)}/status", {"presence": "online"}))[0] == 200
    await asyncio.sleep(0.5)
    # Typing still goes: once it has arrived, so would have the presence queued before it.
    assert (await alice.put(f"rooms/{q(room_id)}/typing/{q(a)}", {"typing": True}))[0] == 200
    await wait_for(lambda: edus(peer, "m.typing"), "the typing EDU")
    assert edus(peer, "m.presence") == []
    txn = {"origin": peer.name, "origin_server_ts": int(time.time() * 1000), "pdus": [],
           "edus": [{"edu_type": "m.presence", "content": {"push": [
               {"user_id": bob, "presence": "online", "last_active_ago": 0}]}}]}
    assert (await peer.request(http, veche, "PUT", "/_matrix/federation/v1/send/p1", txn))[0] == 200
    assert await alice.get(f"presence/{q(bob)}/status") == (200, {"presence": "offline"})
