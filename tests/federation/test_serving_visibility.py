"""What a server learns from the serving endpoints is bounded by history visibility:
/timestamp_to_event never names an event the asking server may not see (it answers the
nearest one it may see, or 404), and a server that has left a room is refused its history
(/event, /backfill, /get_missing_events, /timestamp_to_event: 403), as Synapse refuses
any host not in the room now (handlers/federation.py: assert_host_in_room)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import Client, ServerProcess
from tests.federation.fake_origin import F1, FakeServer, SharedRoom, q
from tests.federation.test_receive_pdus import shared_room

JOINED = [{"type": "m.room.history_visibility", "state_key": "",
           "content": {"history_visibility": "joined"}}]


async def _ts_of(client: Client, room_id: str, event_id: str) -> int:
    status, event = await client.get(f"rooms/{q(room_id)}/event/{q(event_id)}")
    assert status == 200, event
    return int(event["origin_server_ts"])


async def test_timestamp_to_event_names_only_events_the_server_may_see(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    status, body = await alice.post("createRoom", {"preset": "public_chat", "initial_state": JOINED})
    assert status == 200, body
    room_id = body["room_id"]
    rid = q(room_id)
    early = []
    for i in range(3):
        status, body = await alice.put(f"rooms/{rid}/send/m.room.message/e{i}",
                                       {"msgtype": "m.text", "body": f"before you came {i}"})
        early.append(body["event_id"])
    room = await SharedRoom.of(alice, room_id)
    hv_id = room.state[("m.room.history_visibility", "")]
    dave = origin.user("dave")
    join_id, join = room.build(origin, dave, "m.room.member", {"membership": "join"}, dave)
    assert (await origin.send(http, veche, [join]))[1] == {"pdus": {join_id: {}}}
    hidden = {*early, hv_id}
    first, last = (await _ts_of(alice, room_id, early[0]), await _ts_of(alice, room_id, early[-1]))

    async def closest(ts: int, direction: str) -> tuple[int, Any]:
        return await origin.request(http, veche, "GET",
                                    f"{F1}/timestamp_to_event/{rid}?ts={ts}&dir={direction}")

    # Forwards from the hidden messages: the first event the origin may see is dave's join.
    for ts in (first, last):
        status, found = await closest(ts, "f")
        assert (status, found.get("event_id")) == (200, join_id), found
    # Backwards from them: an event from before `joined` was set (shared then), never one
    # of the hidden messages.
    status, found = await closest(last, "b")
    assert status == 200 and found["event_id"] not in hidden, found
    status, got = await origin.request(http, veche, "GET", f"{F1}/event/{q(found['event_id'])}")
    assert status == 200 and got["pdus"][0]["content"], got
    # Alice herself may page through all of it: the messages are there, just not for dave's server.
    status, page = await alice.get(f"rooms/{rid}/messages", params={"dir": "b", "limit": "50"})
    assert set(early) <= {e["event_id"] for e in page["chunk"]}


async def test_a_server_that_left_is_refused_the_history(
        veche: ServerProcess, origin: FakeServer, http: aiohttp.ClientSession) -> None:
    alice, room = await shared_room(http, veche, origin)
    rid = q(room.room_id)
    status, body = await alice.put(f"rooms/{rid}/send/m.room.message/seen",
                                   {"msgtype": "m.text", "body": "bob saw this"})
    seen = body["event_id"]
    status, got = await origin.request(http, veche, "GET", f"{F1}/event/{q(seen)}")
    assert status == 200 and got["pdus"][0]["content"]["body"] == "bob saw this"
    bob = origin.user("bob")
    leave_id, leave = room.build(origin, bob, "m.room.member", {"membership": "leave"}, bob)
    assert (await origin.send(http, veche, [leave]))[1] == {"pdus": {leave_id: {}}}
    status, members = await alice.get(f"rooms/{rid}/joined_members")
    assert bob not in members["joined"], members
    for target in (f"{F1}/event/{q(seen)}", f"{F1}/backfill/{rid}?v={q(seen)}&limit=5",
                   f"{F1}/timestamp_to_event/{rid}?ts=0&dir=f",
                   f"{F1}/state_ids/{rid}?event_id={q(seen)}"):
        status, body = await origin.request(http, veche, "GET", target)
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), (target, body)
    status, body = await origin.request(http, veche, "POST", f"{F1}/get_missing_events/{rid}",
                                        {"earliest_events": [], "latest_events": [seen]})
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
