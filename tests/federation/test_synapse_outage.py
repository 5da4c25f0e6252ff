"""Outages against the session's Synapse (issue 12, done-when 2): one side is down while the
other's users talk, and nothing is lost once it is back.

- Veche down: Synapse's users send 50 messages and rename the room (and Synapse restarts,
  forgetting what it owed Veche); after Veche starts again its user gets the newest through
  /sync, and the rest, in order, through /messages (the gap is filled with
  /get_missing_events, /state_ids and /backfill), with the new name.
- Synapse down, Veche restarted meanwhile: Veche's messages reach Synapse in order once it
  is back (the outbound queue is in Veche's database).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess
from tests.federation.peers import SynapsePeer
from tests.federation.test_synapse_rooms import (
    SynapseClient,
    eventually,
    messages,
    send_texts,
    texts,
)
from tests.sync_helpers import events_of

pytestmark = pytest.mark.timeout(900)  # the first run installs Synapse


def body_or_name(event: dict[str, Any]) -> str | None:
    if event["type"] == "m.room.message":
        return str(event["content"].get("body"))
    if event["type"] == "m.room.name":
        return f"name: {event['content'].get('name')}"
    return None


async def page_back(client: Client, room_id: str, token: str) -> list[dict[str, Any]]:
    """Every event /messages gives from `token` back to the room's start, oldest first."""
    events: list[dict[str, Any]] = []
    for _ in range(50):
        status, page = await client.get(f"rooms/{quote(room_id)}/messages",
                                        params={"dir": "b", "limit": "20", "from": token})
        assert status == 200, page
        events[:0] = list(reversed(page["chunk"]))
        if "end" not in page:
            return events
        token = page["end"]
    raise AssertionError("no end to the room's history")


async def test_veche_down_while_synapse_users_talk(
        veche: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession) -> None:
    bob = await SynapseClient(http, synapse.client_url).register()
    alice = await Client(http, veche.base_url).register("alice")
    localpart = f"outage{time.monotonic_ns()}"
    status, room = await bob.post("createRoom", {"preset": "public_chat", "room_version": "10",
                                                 "name": "Before", "room_alias_name": localpart})
    assert status == 200, room
    room_id = room["room_id"]
    await send_texts(bob, room_id, [f"early {i}" for i in range(3)])
    status, body = await alice.post(f"join/{quote(f'#{localpart}:{synapse.server_name}')}", {})
    assert status == 200, (body, veche.log())

    async def bob_sees_alice() -> bool:
        _, m = await bob.get(f"rooms/{quote(room_id)}/joined_members")
        return alice.user_id in m.get("joined", {})

    await eventually(bob_sees_alice, "Synapse seeing the join")
    # One message reaches Veche before it goes: Synapse, having delivered to it, then
    # "catches up" after a restart by sending the room's newest event only.
    await send_texts(bob, room_id, ["hello"])

    async def hello() -> Any:
        _, got = await alice.get("sync", params={"timeout": "0"})
        timeline = got.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
        return got if "hello" in map(body_or_name, timeline.get("events", [])) else None

    since = (await eventually(hello, "the first message on Veche"))["next_batch"]

    await asyncio.to_thread(veche.stop)
    said = [f"m {i}" for i in range(50)]
    await send_texts(bob, room_id, said[:25])
    status, body = await bob.put(f"rooms/{quote(room_id)}/state/m.room.name", {"name": "After"})
    assert status == 200, body
    await send_texts(bob, room_id, said[25:])
    # Synapse keeps what it owes a server down for less than an hour in memory, and sends
    # it all when the server is back; restarted, it only sends each room's newest event:
    # the rest is a gap for Veche to fill.
    await asyncio.to_thread(synapse.stop)
    await asyncio.to_thread(synapse.start_again)
    await asyncio.to_thread(veche.start)
    # Synapse backs off from a server it could not reach; any request from it is news that
    # it is back (a profile query here), and Synapse then sends the room's newest event.
    status, _ = await alice.get(f"profile/{quote(bob.user_id or '')}")
    assert status == 200

    async def synced() -> Any:
        _, got = await alice.get("sync", params={"since": since, "timeout": "0"})
        joined = got.get("rooms", {}).get("join", {}).get(room_id)
        timeline = {"events": events_of(joined, "timeline") if joined else []}
        return joined if [body_or_name(e) for e in timeline["events"]][-1:] == ["m 49"] else None

    joined = await eventually(synced, "the newest message in Veche's /sync", timeout=90)
    timeline = joined["timeline"]
    # The new name is in the room's state as /sync gives it, and as the room's state is.
    changed = events_of(joined, "state") + timeline["events"]
    assert any(e["type"] == "m.room.name" and e["content"] == {"name": "After"} for e in changed)
    status, name = await alice.get(f"rooms/{quote(room_id)}/state/m.room.name")
    assert (status, name) == (200, {"name": "After"})

    # Paging back from the /sync timeline gives everything, in order, with the rename in
    # its place: the gap filled by backfill from Synapse, and before alice's join the
    # history she may see (shared) that Veche never had.
    older = await page_back(alice, room_id, timeline["prev_batch"])
    seen = [b for b in map(body_or_name, older + timeline["events"]) if b is not None]
    expected = ["name: Before", "early 0", "early 1", "early 2", "hello",
                *said[:25], "name: After", *said[25:]]
    assert seen == expected, (seen, veche.log())
    ids = [e["event_id"] for e in older + timeline["events"]]
    assert len(ids) == len(set(ids))


async def test_synapse_down_while_veche_users_talk(
        veche: ServerProcess, synapse: SynapsePeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    bob = await SynapseClient(http, synapse.client_url).register()
    status, room = await alice.post("createRoom", {"room_version": "10", "preset": "public_chat"})
    assert status == 200, room
    room_id = room["room_id"]
    status, body = await alice.post(f"rooms/{quote(room_id)}/invite", {"user_id": bob.user_id})
    assert status == 200, (body, veche.log())

    async def bob_invited() -> Any:
        _, sync = await bob.get("sync", params={"timeout": "0"})
        return sync.get("rooms", {}).get("invite", {}).get(room_id)

    await eventually(bob_invited, "the invite on Synapse")
    status, body = await bob.post(f"join/{quote(room_id)}", {})
    assert status == 200, (body, synapse.log())
    await send_texts(alice, room_id, ["before"])

    async def bob_has(expected: list[str]) -> bool:
        return texts(await messages(bob, room_id)) == expected

    await eventually(lambda: bob_has(["before"]), "the first message on Synapse")

    down = [f"down {i}" for i in range(20)]
    await asyncio.to_thread(synapse.stop)
    try:
        await send_texts(alice, room_id, down[:10])
        await veche.restart()
        await send_texts(alice, room_id, down[10:])
    finally:
        await asyncio.to_thread(synapse.start_again)
    # Synapse back: once Veche hears from it (bob looks alice up), the queue goes out.
    status, _ = await bob.get(f"profile/{quote(alice.user_id or '')}")
    assert status == 200, (_, synapse.log())
    await eventually(lambda: bob_has(["before", *down]), "Veche's messages on Synapse",
                     timeout=90)
