"""Server ACLs on what other servers ask of Veche (server-server API "Server Access Control
Lists"): once a room's `m.room.server_acl` denies a server, every endpoint naming the room
answers it 403 M_FORBIDDEN (make_/send_ join, leave, knock, invite, /event, /state,
/state_ids, /event_auth, /backfill, /get_missing_events, /timestamp_to_event) and /send drops
its PDUs (with an error for each) and its typing and receipt EDUs for the room, while a
server the ACL allows is served as before. The test plays both servers
(tests/federation/fake_origin.py): one named `127.0.0.1:<port>`, denied by the ACL, one
`localhost:<port>`, like Veche, allowed (ACLs ignore ports, so hosts tell them apart)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess
from tests.federation.fake_origin import F1, FakeServer, SharedRoom, q
from tests.federation.https_servers import RecordingServer
from tests.federation.pki import TestCA
from tests.federation.test_receive_pdus import texts
from tests.sync_helpers import events_of, section

F2 = "/_matrix/federation/v2"
ACL = {"allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": True}


async def fake_server(test_ca: TestCA, host: str) -> AsyncIterator[FakeServer]:
    server = await RecordingServer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    yield FakeServer(server, host)
    await server.close()


@pytest.fixture
async def denied(test_ca: TestCA) -> AsyncIterator[FakeServer]:
    async for s in fake_server(test_ca, "127.0.0.1"):
        yield s


@pytest.fixture
async def allowed(test_ca: TestCA) -> AsyncIterator[FakeServer]:
    async for s in fake_server(test_ca, "localhost"):
        yield s


async def join_over_send(http: aiohttp.ClientSession, veche: ServerProcess, room: SharedRoom,
                         origin: FakeServer, user: str) -> None:
    join_id, join = room.build(origin, user, "m.room.member", {"membership": "join"}, user)
    assert await origin.send(http, veche, [join]) == (200, {"pdus": {join_id: {}}}), veche.log()


async def ephemeral(alice: Client, room_id: str) -> dict[str, Any]:
    _, sync = await alice.get("sync", params={"timeout": "0"})
    events = events_of(section(sync, "rooms", "join")[room_id], "ephemeral")
    return {e["type"]: e["content"] for e in events}


def refused_by_acl(status: int, body: Any) -> bool:
    return (status, body.get("errcode")) == (403, "M_FORBIDDEN") and "server ACL" in body["error"]


async def test_a_denied_server_is_refused_by_every_endpoint_naming_the_room(
        veche: ServerProcess, denied: FakeServer, allowed: FakeServer,
        http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    status, body = await alice.post("createRoom", {"preset": "public_chat", "room_version": "12"})
    assert status == 200, body
    room_id, rid = body["room_id"], q(body["room_id"])
    room = await SharedRoom.of(alice, room_id)
    bob, eve = denied.user("bob"), allowed.user("eve")
    await join_over_send(http, veche, room, denied, bob)
    await join_over_send(http, veche, room, allowed, eve)
    # A knock room from now on (the users already in stay), so that make_knock has a use.
    status, _ = await alice.put(f"rooms/{rid}/state/m.room.join_rules/", {"join_rule": "knock"})
    assert status == 200
    status, said = await alice.put(f"rooms/{rid}/send/m.room.message/a1",
                                   {"msgtype": "m.text", "body": "before the ACL"})
    assert status == 200
    said_id = said["event_id"]
    status, _ = await alice.put(f"rooms/{rid}/state/m.room.server_acl/", ACL)
    assert status == 200
    await room.refresh(alice)

    # Events and state: the allowed server is served, the denied one refused.
    reads = [f"{F1}/event/{q(said_id)}", f"{F1}/state/{rid}?event_id={q(said_id)}",
             f"{F1}/state_ids/{rid}?event_id={q(said_id)}", f"{F1}/event_auth/{rid}/{q(said_id)}",
             f"{F1}/backfill/{rid}?v={q(said_id)}&limit=5",
             f"{F1}/timestamp_to_event/{rid}?ts=0&dir=f",
             f"{F1}/make_join/{rid}/{{user}}?ver=12", f"{F1}/make_leave/{rid}/{{user}}",
             f"{F1}/make_knock/{rid}/{{newcomer}}?ver=12"]
    for target in reads:
        ok = target.format(user=q(eve), newcomer=q(allowed.user("carol")))
        status, body = await allowed.request(http, veche, "GET", ok)
        assert status == 200, (ok, body)
        no = target.format(user=q(bob), newcomer=q(denied.user("carol")))
        status, body = await denied.request(http, veche, "GET", no)
        assert refused_by_acl(status, body), (no, status, body)
    missing = {"earliest_events": [], "latest_events": [said_id], "limit": 5}
    status, _ = await allowed.request(http, veche, "POST", f"{F1}/get_missing_events/{rid}", missing)
    assert status == 200
    assert refused_by_acl(*await denied.request(
        http, veche, "POST", f"{F1}/get_missing_events/{rid}", missing))

    # Membership events sent back, and an invite of a Veche user: refused, nothing changes.
    dave = await Client(http, veche.base_url).register("dave")
    sends = [
        (f"{F2}/send_leave", bob, "leave"),
        (f"{F2}/send_join", bob, "join"),
        (f"{F1}/send_knock", denied.user("carol"), "knock"),
        (f"{F2}/invite", dave.user_id or "", "invite"),
    ]
    for prefix, target_user, membership in sends:
        event_id, pdu = room.build(denied, bob if membership == "invite" else target_user,
                                   "m.room.member", {"membership": membership}, target_user,
                                   advance=False)
        body = {"room_version": "12", "event": pdu, "invite_room_state": []} \
            if membership == "invite" else pdu
        status, answer = await denied.request(http, veche, "PUT",
                                              f"{prefix}/{rid}/{q(event_id)}", body)
        assert refused_by_acl(status, answer), (prefix, status, answer)
    _, members = await alice.get(f"rooms/{rid}/joined_members")
    assert bob in members["joined"]
    _, state = await alice.get(f"rooms/{rid}/state")
    assert not any(e["type"] == "m.room.member" and e["state_key"] == denied.user("carol")
                   for e in state)
    _, sync = await dave.get("sync", params={"timeout": "0"})
    assert room_id not in sync.get("rooms", {}).get("invite", {})

    # /send: still 200; the denied server's PDU comes back with an error, its typing and
    # receipt are ignored; the allowed server's go through.
    bob_msg, bob_pdu = room.build(denied, bob, "m.room.message",
                                  {"msgtype": "m.text", "body": "from bob"}, advance=False)
    eve_msg, eve_pdu = room.build(allowed, eve, "m.room.message",
                                  {"msgtype": "m.text", "body": "from eve"})
    status, result = await denied.send(http, veche, [bob_pdu], [
        {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": bob, "typing": True}},
        {"edu_type": "m.receipt", "content": {room_id: {"m.read": {bob: {
            "event_ids": [said_id], "data": {"ts": 1}}}}}}])
    assert status == 200 and "server ACL" in result["pdus"][bob_msg]["error"], result
    assert await allowed.send(http, veche, [eve_pdu], [
        {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": eve, "typing": True}},
        {"edu_type": "m.receipt", "content": {room_id: {"m.read": {eve: {
            "event_ids": [said_id], "data": {"ts": 1}}}}}}]) == (200, {"pdus": {eve_msg: {}}})
    assert await texts(alice, room_id) == ["before the ACL", "from eve"]
    shown = await ephemeral(alice, room_id)
    assert shown["m.typing"] == {"user_ids": [eve]}
    assert set(shown["m.receipt"][said_id]["m.read"]) == {eve}

    # The ACL is read from the room's current state: lifted, bob is heard again.
    status, _ = await alice.put(f"rooms/{rid}/state/m.room.server_acl/", {"allow": ["*"]})
    assert status == 200
    await room.refresh(alice)
    again_id, again = room.build(denied, bob, "m.room.message",
                                 {"msgtype": "m.text", "body": "bob again"})
    assert await denied.send(http, veche, [again]) == (200, {"pdus": {again_id: {}}})
    assert (await denied.request(http, veche, "GET", f"{F1}/event/{q(said_id)}"))[0] == 200
    assert (await texts(alice, room_id))[-1] == "bob again"

