"""Device lists, cross-signing keys and to-device messages from another server, played by
a fake origin (tests/federation/fake_origin.py) sharing a room with a Veche user:
m.device_list_update chains are followed, a gap (a dropped update) or an unknown list is
repaired by a resync through GET /user/devices, each change reaches the local user's /sync
within seconds; m.signing_key_update is kept; m.direct_to_device is delivered once per
message_id. And the other way: Veche serves its users' devices and keys to the origin."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import aiohttp
from signedjson.sign import sign_json

from tests.conftest import Client, ServerProcess
from tests.e2e_helpers import (
    cross_signing_key,
    cs_key,
    device_keys,
    device_signing_key,
    one_time_keys,
    public_of,
    setup_cross_signing,
    upload,
)
from tests.federation.fake_origin import F1, FakeServer, q
from tests.federation.test_receive_pdus import shared_room
from tests.sync_helpers import sync


def remote_device(user_id: str, device_id: str) -> dict[str, Any]:
    return device_keys(SimpleNamespace(user_id=user_id, device_id=device_id),
                       device_signing_key(device_id))


def update(user_id: str, device_id: str, stream_id: int, prev: list[int],
           keys: dict[str, Any] | None = None) -> dict[str, Any]:
    content: dict[str, Any] = {"user_id": user_id, "device_id": device_id,
                               "stream_id": stream_id, "prev_id": prev}
    if keys is None:
        content["deleted"] = True
    else:
        content["keys"] = keys
    return {"edu_type": "m.device_list_update", "content": content}


async def devices_of(client: Client, user_id: str) -> set[str]:
    status, body = await client.post("keys/query", {"device_keys": {user_id: []}})
    assert status == 200, body
    return set(body["device_keys"].get(user_id, {}))


async def changed_within(client: Client, since: str, user_id: str, seconds: float = 5) -> str:
    """Sync from `since` until `user_id` is in device_lists.changed; the new token."""
    deadline = time.monotonic() + seconds
    while True:
        body = await sync(client, since, timeout="1000")
        if user_id in body.get("device_lists", {}).get("changed", []):
            return str(body["next_batch"])
        since = body["next_batch"]
        assert time.monotonic() < deadline, f"{user_id} not in device_lists.changed in {seconds} s"


async def test_remote_device_list_chain_resync_and_to_device(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    bob = origin.user("bob")
    devices_path = f"/_matrix/federation/v1/user/devices/{bob}"

    def resyncs() -> int:
        return len(origin.asked(f"{F1}/user/devices/{q(bob)}")) + len(origin.asked(devices_path))
    since = (await sync(alice))["next_batch"]
    d1, d2, d3 = (remote_device(bob, d) for d in ("D1", "D2", "D3"))

    # A first update for a user with no list here: Veche fetches the whole list.
    origin.answer(devices_path, {"user_id": bob, "stream_id": 1,
                                 "devices": [{"device_id": "D1", "keys": d1}]})
    assert (await origin.send(http, veche, [], [update(bob, "D1", 1, [], d1)]))[0] == 200
    since = await changed_within(alice, since, bob)
    assert await devices_of(alice, bob) == {"D1"}
    assert resyncs() == 1

    # The next one in the chain (prev_id 1) is applied as it is, without asking.
    before = since
    assert (await origin.send(http, veche, [], [update(bob, "D2", 2, [1], d2)]))[0] == 200
    since = await changed_within(alice, since, bob)
    status, body = await alice.get("keys/changes", params={"from": before, "to": since})
    assert status == 200 and bob in body["changed"], body
    assert await devices_of(alice, bob) == {"D1", "D2"}
    assert resyncs() == 1
    status, body = await alice.post("keys/query", {"device_keys": {bob: ["D2"]}})
    assert body["device_keys"][bob]["D2"]["keys"] == d2["keys"] and body["failures"] == {}

    # Update 3 (D3 added) is lost; update 4 (D2 deleted, prev_id 3) reveals the gap and
    # the resync repairs the list.
    origin.answer(devices_path, {"user_id": bob, "stream_id": 4,
                                 "devices": [{"device_id": "D1", "keys": d1},
                                             {"device_id": "D3", "keys": d3}]})
    assert (await origin.send(http, veche, [], [update(bob, "D2", 4, [3])]))[0] == 200
    since = await changed_within(alice, since, bob)
    assert await devices_of(alice, bob) == {"D1", "D3"}
    assert resyncs() == 2
    # And the chain goes on from the resynced stream_id.
    assert (await origin.send(http, veche, [], [update(bob, "D3", 5, [4])]))[0] == 200
    since = await changed_within(alice, since, bob)
    assert await devices_of(alice, bob) == {"D1"}
    assert resyncs() == 2

    # An update about another server's user, or from a user sharing no room, is ignored.
    eve = "@eve:elsewhere.example"
    assert (await origin.send(http, veche, [], [update(eve, "E", 1, [], remote_device(eve, "E"))]))[0] == 200

    # New cross-signing keys.
    master = cross_signing_key()
    edu = {"edu_type": "m.signing_key_update",
           "content": {"user_id": bob, "master_key": cs_key(bob, "master", master)}}
    assert (await origin.send(http, veche, [], [edu]))[0] == 200
    since = await changed_within(alice, since, bob)
    status, body = await alice.post("keys/query", {"device_keys": {bob: []}})
    assert body["master_keys"][bob] == cs_key(bob, "master", master)
    # Alice verifies bob: her user-signing key signs his master key. She (only) sees it.
    alice_keys = await setup_cross_signing(alice)
    signed = sign_json(cs_key(bob, "master", master), alice.user_id or "", alice_keys["user_signing"])
    status, body = await alice.post("keys/signatures/upload", {bob: {public_of(master): signed}})
    assert status == 200 and body["failures"] == {}, body
    status, body = await alice.post("keys/query", {"device_keys": {bob: []}})
    assert body["master_keys"][bob]["signatures"][alice.user_id] == signed["signatures"][alice.user_id]

    # A to-device message, resent in another transaction with the same message_id: once.
    message: dict[str, Any] = {"edu_type": "m.direct_to_device", "content": {
        "sender": bob, "type": "m.room_key_request", "message_id": "m1",
        "messages": {alice.user_id: {alice.device_id: {"action": "request", "n": 1}}}}}
    for _ in range(2):
        assert (await origin.send(http, veche, [], [message]))[0] == 200
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not got:
        body = await sync(alice, since, timeout="1000")
        since = body["next_batch"]
        got = body.get("to_device", {}).get("events", [])
    assert got == [{"sender": bob, "type": "m.room_key_request",
                    "content": {"action": "request", "n": 1}}]
    await asyncio.sleep(0.5)
    body = await sync(alice, since)
    assert body.get("to_device", {}).get("events", []) == []
    # A sender of another server than the origin: dropped.
    forged = {"edu_type": "m.direct_to_device", "content": {**message["content"], "message_id": "m2",
                                                            "sender": "@mallory:elsewhere.example"}}
    assert (await origin.send(http, veche, [], [forged]))[0] == 200
    body = await sync(alice, body["next_batch"], timeout="500")
    assert body.get("to_device", {}).get("events", []) == []

    # Bob leaves and comes back: while no room was shared his server sent nothing here, so
    # the list kept is not trusted and is fetched again when next asked for.
    origin.answer(devices_path, {"user_id": bob, "stream_id": 9,
                                 "devices": [{"device_id": "D3", "keys": d3}]})
    for membership in ("leave", "join"):
        event_id, pdu = room.build(origin, bob, "m.room.member", {"membership": membership}, bob)
        assert await origin.send(http, veche, [pdu]) == (200, {"pdus": {event_id: {}}})
    assert await devices_of(alice, bob) == {"D3"}
    assert resyncs() == 3
    assert await devices_of(alice, bob) == {"D3"}
    assert resyncs() == 3


async def test_local_devices_and_keys_served_to_other_servers(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    alice, _room = await shared_room(http, veche, origin)
    key = device_signing_key(alice.device_id or "")
    dkeys = device_keys(alice, key)
    otks = one_time_keys(key, alice.user_id or "", 2)
    assert (await upload(alice, {"device_keys": dkeys, "one_time_keys": otks}))[0] == 200
    target = f"{F1}/user/devices/{q(alice.user_id or '')}"
    status, body = await origin.request(http, veche, "GET", target)
    assert status == 200, body
    assert body["user_id"] == alice.user_id
    assert [d["device_id"] for d in body["devices"]] == [alice.device_id]
    assert body["devices"][0]["keys"]["keys"] == dkeys["keys"]
    first_stream = body["stream_id"]

    status, body = await origin.request(http, veche, "POST", f"{F1}/user/keys/query",
                                        {"device_keys": {alice.user_id: []}})
    assert status == 200, body
    assert body["device_keys"][alice.user_id][alice.device_id]["signatures"] == dkeys["signatures"]
    status, body = await origin.request(http, veche, "POST", f"{F1}/user/keys/claim", {
        "one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}})
    assert status == 200, body
    (kid, claimed), = body["one_time_keys"][alice.user_id][alice.device_id].items()
    assert otks[kid] == claimed

    # Cross-signing keys are served too, and each change moves the stream on.
    master = cross_signing_key()
    ssk = cross_signing_key()
    status, body = await alice.post("keys/device_signing/upload", {
        "master_key": cs_key(alice.user_id or "", "master", master),
        "self_signing_key": cs_key(alice.user_id or "", "self_signing", ssk, master)})
    assert status == 200, body
    status, body = await origin.request(http, veche, "GET", target)
    assert body["master_key"] == cs_key(alice.user_id or "", "master", master)
    assert body["stream_id"] == first_stream  # cross-signing goes as m.signing_key_update
    status, body = await alice.delete(f"devices/{q(alice.device_id or '')}")
    status, body = await alice.delete(f"devices/{q(alice.device_id or '')}", {"auth": {
        "type": "m.login.password", "session": body["session"], "password": "correct horse battery",
        "identifier": {"type": "m.id.user", "user": alice.user_id}}})
    assert status == 200, body
    status, body = await origin.request(http, veche, "GET", target)
    assert body["devices"] == [] and body["stream_id"] > first_stream
    # Users of other servers are not answered for.
    status, body = await origin.request(http, veche, "GET", f"{F1}/user/devices/{q(origin.user('bob'))}")
    assert status == 400


async def test_keys_query_and_claim_name_a_silent_server_in_failures(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    """A server that accepts connections and never answers costs a query its timeout, not
    more, and is named in `failures`; what other servers answered is still there."""
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    mute = f"@mute:localhost:{port}"
    try:
        alice, _room = await shared_room(http, veche, origin)
        bob = origin.user("bob")
        d1 = remote_device(bob, "D1")
        origin.answer(f"{F1}/user/devices/{bob}", {"user_id": bob, "stream_id": 1,
                                                   "devices": [{"device_id": "D1", "keys": d1}]})
        started = time.monotonic()
        status, body = await alice.post("keys/query", {"timeout": 2000,
                                                       "device_keys": {mute: [], bob: []}})
        assert status == 200, body
        assert time.monotonic() - started < 6
        assert list(body["failures"]) == [f"localhost:{port}"]
        assert set(body["device_keys"][bob]) == {"D1"}
        started = time.monotonic()
        status, body = await alice.post("keys/claim", {"timeout": 1000, "one_time_keys": {
            mute: {"DEV": "signed_curve25519"}}})
        assert status == 200 and list(body["failures"]) == [f"localhost:{port}"], body
        assert time.monotonic() - started < 5
    finally:
        server.close()
