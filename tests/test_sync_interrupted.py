"""A /sync answer that never reaches the client costs it nothing: asking again with the same
`since` gets everything, new messages, to-device messages and lazy-loaded members alike.

On a lossy link a long-poll is often cut after the server has written its answer; the
client can only retry with the token it has."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.conftest import ServerProcess
from tests.sync_helpers import events_of, joined, room_with, send, sync, timeline_bodies

LAZY = json.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 5}}})


def members(room: dict[str, Any]) -> set[str]:
    return {e["state_key"] for e in events_of(room, "state") if e["type"] == "m.room.member"}


async def _three_in_a_room(make_client: Any) -> tuple[Any, Any, Any, str, str]:
    """Alice, Bob and Carol in a room; Bob has synced (lazy-loading members) past Carol's
    join, so her member event is not his yet. Returns them, the room and Bob's token."""
    alice, bob, room_id = await room_with(make_client, preset="public_chat")
    carol = await make_client().register()
    assert (await carol.post(f"join/{quote(room_id)}", {}))[0] == 200
    for i in range(8):
        await send(alice, room_id, f"a{i}")
    body = await sync(bob, filter=LAZY)
    assert carol.user_id not in members(joined(body, room_id))
    return alice, bob, carol, room_id, body["next_batch"]


async def test_a_lost_answer_is_given_again(make_client: Any) -> None:
    alice, bob, carol, room_id, since = await _three_in_a_room(make_client)
    await send(carol, room_id, "hello from carol")
    status, _ = await alice.put(f"sendToDevice/m.test/lost{since}",
                                {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}})
    assert status == 200
    lost = await sync(bob, since, filter=LAZY)  # answered, but say the link dropped it
    assert carol.user_id in members(joined(lost, room_id))

    again = await sync(bob, since, filter=LAZY)
    room = joined(again, room_id)
    assert timeline_bodies(room) == ["hello from carol"]
    assert carol.user_id in members(room)  # not taken as sent by the lost answer
    assert [e["content"] for e in events_of(again, "to_device")] == [{"n": 1}]

    # Once the client has an answer (it comes back with its token), nothing is repeated.
    await send(carol, room_id, "and again")
    after = await sync(bob, again["next_batch"], filter=LAZY)
    room = joined(after, room_id)
    assert timeline_bodies(room) == ["and again"]
    assert carol.user_id not in members(room)
    assert events_of(after, "to_device") == []


async def test_an_interrupted_long_poll_keeps_the_position(
        homeserver: ServerProcess, make_client: Any) -> None:
    _, bob, carol, room_id, since = await _three_in_a_room(make_client)
    url = (f"{homeserver.base_url}/_matrix/client/v3/sync?"
           f"since={quote(since)}&timeout=20000&filter={quote(LAZY)}")
    async with aiohttp.ClientSession() as session:
        poll = asyncio.ensure_future(session.get(
            url, headers={"Authorization": f"Bearer {bob.access_token}"}))
        await asyncio.sleep(0.5)  # the server is waiting
        poll.cancel()  # the client goes away; the session closes its connection
        try:
            await poll
        except asyncio.CancelledError:
            pass
    # The server wakes for this message and answers into the closed connection.
    await send(carol, room_id, "while you were away")
    await asyncio.sleep(1)

    again = await sync(bob, since, filter=LAZY)
    room = joined(again, room_id)
    assert timeline_bodies(room) == ["while you were away"]
    assert carol.user_id in members(room)
