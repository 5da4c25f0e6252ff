"""Events and state served to other servers: /event, /state, /state_ids, /event_auth,
/backfill, /get_missing_events, /timestamp_to_event answer a server in the room, as PDUs
(no event_id, a v12 create event without room_id), redacting what history visibility hides
from it; a server not in the room gets 403 everywhere. (Never a 500 from any of them, nor
from any other federation endpoint: test_fuzz_federation.py.)"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.conftest import ServerProcess
from tests.federation.fake_origin import F1, FakeServer, q
from tests.federation.https_servers import RecordingServer
from tests.federation.pki import TestCA
from tests.federation.test_receive_pdus import shared_room
from veche.core.events import compute_event_id


@pytest.fixture
async def stranger(test_ca: TestCA) -> AsyncIterator[FakeServer]:
    server = await RecordingServer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    yield FakeServer(server)
    await server.close()


async def test_serving_a_server_in_the_room(veche: ServerProcess, origin: FakeServer,
                                            stranger: FakeServer, http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    rid = q(room.room_id)
    sent = []
    for i in range(3):
        status, body = await alice.put(f"rooms/{rid}/send/m.room.message/s{i}",
                                       {"msgtype": "m.text", "body": f"m{i}"})
        sent.append(body["event_id"])
    join_id = room.latest[0]
    create_id = room.state[("m.room.create", "")]

    async def get(target: str, server: FakeServer = origin) -> tuple[int, Any]:
        return await server.request(http, veche, "GET", target)

    # /event: a PDU as sent, no event_id; the v12 create event without its derived room_id.
    status, got = await get(f"{F1}/event/{q(sent[0])}")
    assert status == 200 and got["origin"] == veche.server_name, got
    pdu = got["pdus"][0]
    assert "event_id" not in pdu and "unsigned" not in pdu and pdu["content"]["body"] == "m0"
    assert compute_event_id(pdu, room.rv) == sent[0]
    status, got = await get(f"{F1}/event/{q(create_id)}")
    assert status == 200 and "room_id" not in got["pdus"][0]
    assert compute_event_id(got["pdus"][0], room.rv) == create_id
    assert (await get(f"{F1}/event/{q('$' + 'x' * 43)}"))[0] == 404
    # /state_ids and /state: the state before the event, with its auth chain.
    status, ids = await get(f"{F1}/state_ids/{rid}?event_id={q(sent[0])}")
    assert status == 200 and set(ids["pdu_ids"]) == set(room.state.values()), ids
    assert create_id in ids["auth_chain_ids"]
    status, state = await get(f"{F1}/state/{rid}?event_id={q(sent[0])}")
    assert status == 200
    assert {compute_event_id(p, room.rv) for p in state["pdus"]} == set(ids["pdu_ids"])
    assert {compute_event_id(p, room.rv) for p in state["auth_chain"]} == set(ids["auth_chain_ids"])
    assert (await get(f"{F1}/state_ids/{rid}"))[0] == 400
    assert (await get(f"{F1}/state_ids/{rid}?event_id={q('$' + 'x' * 43)}"))[0] == 404
    # /event_auth
    status, auth = await get(f"{F1}/event_auth/{rid}/{q(sent[0])}")
    assert status == 200 and create_id in {compute_event_id(p, room.rv) for p in auth["auth_chain"]}
    # /backfill: the given events and those before them, newest first, up to the limit.
    status, back = await get(f"{F1}/backfill/{rid}?v={q(sent[2])}&limit=3")
    assert status == 200 and [compute_event_id(p, room.rv) for p in back["pdus"]] == sent[::-1]
    # /get_missing_events: between what the asker has and what it asks about.
    status, missing = await origin.request(http, veche, "POST", f"{F1}/get_missing_events/{rid}",
                                           {"earliest_events": [join_id], "latest_events": [sent[2]],
                                            "limit": 10})
    assert status == 200 and [compute_event_id(p, room.rv) for p in missing["events"]] == sent[:2]
    # /timestamp_to_event
    status, found = await get(f"{F1}/timestamp_to_event/{rid}?ts=0&dir=f")
    assert (status, found.get("event_id")) == (200, create_id), found
    now = int(time.time() * 1000) + 1000
    status, found = await get(f"{F1}/timestamp_to_event/{rid}?ts={now}&dir=b")
    assert (status, found["event_id"]) == (200, sent[2])
    assert (await get(f"{F1}/timestamp_to_event/{rid}?ts={now}&dir=f"))[0] == 404
    assert (await get(f"{F1}/timestamp_to_event/{rid}?ts=x&dir=f"))[0] == 400
    # A server with nobody in the room is refused everything.
    for target in (f"{F1}/event/{q(sent[0])}", f"{F1}/state_ids/{rid}?event_id={q(sent[0])}",
                   f"{F1}/state/{rid}?event_id={q(sent[0])}", f"{F1}/event_auth/{rid}/{q(sent[0])}",
                   f"{F1}/backfill/{rid}?v={q(sent[2])}&limit=3",
                   f"{F1}/timestamp_to_event/{rid}?ts=0&dir=f"):
        status, body = await get(target, stranger)
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), (target, body)
    status, body = await stranger.request(http, veche, "POST", f"{F1}/get_missing_events/{rid}",
                                          {"earliest_events": [], "latest_events": [sent[2]]})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")


async def test_history_hidden_from_a_server_is_redacted(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin, initial_state=[{
        "type": "m.room.history_visibility", "state_key": "",
        "content": {"history_visibility": "joined"}}])
    rid = q(room.room_id)
    # The room was joined by bob (shared_room); he leaves, alice talks, he comes back.
    bob = origin.user("bob")
    leave_id, leave = room.build(origin, bob, "m.room.member", {"membership": "leave"}, bob)
    carol = origin.user("carol")  # keeps the origin in the room meanwhile
    carol_id, carol_join = room.build(origin, carol, "m.room.member", {"membership": "join"}, carol,
                                      prev=[leave_id])
    assert (await origin.send(http, veche, [leave, carol_join]))[1] == {
        "pdus": {leave_id: {}, carol_id: {}}}
    status, body = await alice.put(f"rooms/{rid}/send/m.room.message/secret",
                                   {"msgtype": "m.text", "body": "while you were out"})
    secret = body["event_id"]
    status, got = await origin.request(http, veche, "GET", f"{F1}/event/{q(secret)}")
    # carol was joined then: the origin may see it.
    assert status == 200 and got["pdus"][0]["content"]["body"] == "while you were out"
    # Now a room where nobody of the origin was joined at the time.
    alice2, room2 = await shared_room_late_join(http, veche, origin, alice)
    status, got = await origin.request(http, veche, "GET", f"{F1}/event/{q(room2[0])}")
    assert status == 200 and got["pdus"][0]["content"] == {}, got
    status, body = await origin.request(
        http, veche, "GET", f"{F1}/state_ids/{q(room2[1])}?event_id={q(room2[0])}")
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    status, back = await origin.request(
        http, veche, "GET", f"{F1}/backfill/{q(room2[1])}?v={q(room2[2])}&limit=2")
    assert status == 200
    bodies = [p["content"].get("body") for p in back["pdus"]]
    assert "before you came" not in bodies


async def shared_room_late_join(http: aiohttp.ClientSession, veche: ServerProcess,
                                origin: FakeServer, alice: Any) -> tuple[Any, tuple[str, str, str]]:
    """A `joined`-visibility room where alice speaks before the origin's user joins:
    (alice, (her message, room ID, the join))."""
    from tests.federation.fake_origin import SharedRoom

    status, body = await alice.post("createRoom", {"preset": "public_chat", "initial_state": [{
        "type": "m.room.history_visibility", "state_key": "",
        "content": {"history_visibility": "joined"}}]})
    room_id = body["room_id"]
    status, body = await alice.put(f"rooms/{q(room_id)}/send/m.room.message/early",
                                   {"msgtype": "m.text", "body": "before you came"})
    early = body["event_id"]
    room = await SharedRoom.of(alice, room_id)
    dave = origin.user("dave")
    join_id, join = room.build(origin, dave, "m.room.member", {"membership": "join"}, dave)
    assert (await origin.send(http, veche, [join]))[1] == {"pdus": {join_id: {}}}
    return alice, (early, room_id, join_id)
