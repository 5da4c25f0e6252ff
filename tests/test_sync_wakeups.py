"""Long-polls across concurrent commits in two rooms: a commit that is not yet readable
(an earlier position in another room is still in flight) must not put its waiters back to
sleep until their timeout; they wake as soon as it becomes readable."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg

from tests.conftest import ServerProcess
from tests.sync_helpers import room_with, send, sync

ROUNDS = 3
# A waiter answers within 100 ms of its event becoming readable; on a loaded machine, within
# three times what an uncontended wake-up takes there and then (the bug is a 20 s sleep).
WAKE_BOUND_S = 0.1


async def _long_poll(client: Any, since: str, room_id: str) -> tuple[float, list[str]]:
    body = await sync(client, since, timeout="20000")
    arrived = time.monotonic()
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return arrived, [e["content"].get("body") for e in room.get("timeline", {}).get("events", [])
                     if e["type"] == "m.room.message"]


async def test_waiters_wake_once_an_earlier_commit_in_another_room_lands(
    homeserver: ServerProcess, make_client: Any
) -> None:
    alice, bob, room_b = await room_with(make_client)
    _, carol, room_a = await room_with(make_client)
    plain = []
    for _ in range(3):
        poll = asyncio.create_task(_long_poll(bob, (await sync(bob))["next_batch"], room_b))
        await asyncio.sleep(0.2)
        await send(alice, room_b, "plain")
        sent = time.monotonic()
        plain.append((await poll)[0] - sent)
    bound = max(WAKE_BOUND_S, 3 * sorted(plain)[1])
    for rnd in range(ROUNDS):
        since_b = (await sync(bob))["next_batch"]
        since_a = (await sync(carol))["next_batch"]
        b_poll = asyncio.create_task(_long_poll(bob, since_b, room_b))
        a_poll = asyncio.create_task(_long_poll(carol, since_a, room_a))
        await asyncio.sleep(0.2)
        if homeserver.backend == "postgres":
            # Hold room A's commit open so that its (earlier) position stays in flight
            # while room B's later write commits.
            with psycopg.connect(homeserver.db_url, autocommit=False) as blocker:
                blocker.execute("SELECT 1 FROM event_forward_extremities WHERE room_id = %s"
                                " FOR UPDATE", (room_a,))
                a_send = asyncio.create_task(send(carol, room_a, f"a{rnd}"))
                await asyncio.sleep(0.3)
                assert not a_send.done()
                await send(alice, room_b, f"b{rnd}")
                await asyncio.sleep(0.3)
                # B's event is committed but not readable yet: nobody may have it.
                assert not b_poll.done()
                blocker.commit()
            await a_send
        else:
            # SQLite commits one at a time: the writes simply follow each other.
            await send(carol, room_a, f"a{rnd}")
            await send(alice, room_b, f"b{rnd}")
        readable = time.monotonic()
        (b_at, b_bodies), (a_at, a_bodies) = await asyncio.gather(b_poll, a_poll)
        assert b_bodies == [f"b{rnd}"] and a_bodies == [f"a{rnd}"]
        assert b_at - readable < bound, (rnd, b_at - readable, plain)
        assert a_at - readable < bound, (rnd, a_at - readable, plain)
