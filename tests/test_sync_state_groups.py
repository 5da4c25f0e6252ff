"""/sync's state section read from state groups: the state at the start of the timeline, and
for a limited incremental sync exactly what differs from the state at `since`.

Each test compares what /sync says with what the client can check another way: /state, or
the events it sent itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import BACKENDS, Client
from tests.inprocess import inprocess_server
from tests.sync_helpers import events_of, joined, room_with, section, send, set_state, sync
from veche.server import HomeServer
from veche.storage import events as event_store
from veche.storage.database import Txn

StateKey = tuple[str, str]
LIMIT_3 = json.dumps({"room": {"timeline": {"limit": 3}}})


def ids(events: list[dict[str, Any]]) -> dict[StateKey, str]:
    return {(e["type"], e["state_key"]): e["event_id"] for e in events if "state_key" in e}


async def room_state(client: Any, room_id: str) -> dict[StateKey, str]:
    status, body = await client.get(f"rooms/{quote(room_id)}/state")
    assert status == 200, body
    return ids(body)


async def fillers(client: Any, room_id: str, n: int = 5) -> None:
    for i in range(n):
        await send(client, room_id, f"filler {i}")


def client_view(room: dict[str, Any], before: dict[StateKey, str]) -> dict[StateKey, str]:
    """The room state a client holds after a sync: what it had, then `state`, then the
    timeline's state events."""
    return {**before, **ids(events_of(room, "state")), **ids(events_of(room, "timeline"))}


async def test_limited_sync_reports_the_net_delta(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client, preset="public_chat")
    carol = await make_client().register()
    await set_state(alice, room_id, "m.room.topic", {"topic": "at since"})
    before = await room_state(alice, room_id)
    since = (await sync(bob, filter=LIMIT_3))["next_batch"]

    await set_state(alice, room_id, "m.room.topic", {"topic": "first change"})
    topic = await set_state(alice, room_id, "m.room.topic", {"topic": "second change"})
    assert (await carol.post(f"join/{quote(room_id)}", {}))[0] == 200
    assert (await carol.post(f"rooms/{quote(room_id)}/leave", {}))[0] == 200
    carol_left = (await room_state(alice, room_id))[("m.room.member", carol.user_id)]
    await fillers(alice, room_id)

    room = joined(await sync(bob, since, filter=LIMIT_3), room_id)
    assert room["timeline"]["limited"] is True
    assert ids(events_of(room, "state")) == {
        ("m.room.topic", ""): topic,
        ("m.room.member", carol.user_id): carol_left,
    }
    assert client_view(room, before) == await room_state(alice, room_id)


async def test_a_change_undone_in_the_gap_reports_the_last_event(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    await set_state(alice, room_id, "m.room.name", {"name": "Kitchen"})
    await set_state(alice, room_id, "m.room.join_rules", {"join_rule": "invite"})
    before = await room_state(alice, room_id)
    since = (await sync(bob, filter=LIMIT_3))["next_batch"]

    # Renamed and named back; opened and closed again: the content is what it was at
    # `since`, the events are new, and only the last of each counts.
    await set_state(alice, room_id, "m.room.name", {"name": "Lounge"})
    name = await set_state(alice, room_id, "m.room.name", {"name": "Kitchen"})
    await set_state(alice, room_id, "m.room.join_rules", {"join_rule": "public"})
    rules = await set_state(alice, room_id, "m.room.join_rules", {"join_rule": "invite"})
    await fillers(alice, room_id)

    room = joined(await sync(bob, since, filter=LIMIT_3), room_id)
    assert room["timeline"]["limited"] is True
    state = {(e["type"], e["state_key"]): e for e in events_of(room, "state")}
    assert ids(events_of(room, "state")) == {
        ("m.room.name", ""): name, ("m.room.join_rules", ""): rules}
    assert state[("m.room.name", "")]["content"] == {"name": "Kitchen"}
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "invite"}
    assert client_view(room, before) == await room_state(alice, room_id)


async def test_state_changes_inside_the_timeline_are_left_to_it(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    since = (await sync(bob, filter=LIMIT_3))["next_batch"]
    before = await room_state(alice, room_id)
    await set_state(alice, room_id, "m.room.topic", {"topic": "in the gap"})
    await fillers(alice, room_id, 4)
    topic = await set_state(alice, room_id, "m.room.topic", {"topic": "in the timeline"})
    await send(alice, room_id, "last")

    room = joined(await sync(bob, since, filter=LIMIT_3), room_id)
    assert room["timeline"]["limited"] is True
    assert topic in {e["event_id"] for e in events_of(room, "timeline")}
    # The state section is the state at the start of the timeline: the gap's topic.
    [state_topic] = [e for e in events_of(room, "state") if e["type"] == "m.room.topic"]
    assert state_topic["content"] == {"topic": "in the gap"}
    assert client_view(room, before) == await room_state(alice, room_id)


async def test_state_events_the_timeline_filter_leaves_out(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    messages_only = json.dumps({"room": {"timeline": {"types": ["m.room.message"]}}})
    since = (await sync(bob, filter=messages_only))["next_batch"]
    before = await room_state(alice, room_id)
    topic = await set_state(alice, room_id, "m.room.topic", {"topic": "unseen"})
    message = await send(alice, room_id, "seen")

    room = joined(await sync(bob, since, filter=messages_only), room_id)
    assert room["timeline"]["limited"] is False
    assert [e["event_id"] for e in events_of(room, "timeline")] == [message]
    assert ids(events_of(room, "state")) == {("m.room.topic", ""): topic}
    assert client_view(room, before) == await room_state(alice, room_id)


async def test_redacted_state_events(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    topic = await set_state(alice, room_id, "m.room.topic", {"topic": "secret"})
    status, _ = await alice.put(f"rooms/{quote(room_id)}/redact/{quote(topic)}/r1", {})
    assert status == 200
    await fillers(alice, room_id)
    body = await sync(bob, filter=LIMIT_3)
    room = joined(body, room_id)
    state = {(e["type"], e["state_key"]): e for e in events_of(room, "state")}
    assert state[("m.room.topic", "")]["event_id"] == topic
    assert state[("m.room.topic", "")]["content"] == {}
    assert client_view(room, {}) == await room_state(alice, room_id)

    # Redacted in the gap of a limited sync: still the state, pruned.
    name = await set_state(alice, room_id, "m.room.name", {"name": "Soon gone"})
    await send(alice, room_id, "between")
    status, _ = await alice.put(f"rooms/{quote(room_id)}/redact/{quote(name)}/r2", {})
    assert status == 200
    await fillers(alice, room_id)
    room2 = joined(await sync(bob, body["next_batch"], filter=LIMIT_3), room_id)
    assert room2["timeline"]["limited"] is True
    [name_event] = events_of(room2, "state")
    assert name_event["event_id"] == name and name_event["content"] == {}


async def test_initial_sync_state_is_the_state_before_the_timeline(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client, preset="public_chat")
    carol = await make_client().register()
    assert (await carol.post(f"join/{quote(room_id)}", {}))[0] == 200
    await set_state(alice, room_id, "m.room.topic", {"topic": "one"})
    await set_state(alice, room_id, "m.room.name", {"name": "A room"})
    await send(carol, room_id, "hello")
    assert (await carol.post(f"rooms/{quote(room_id)}/leave", {}))[0] == 200
    await set_state(alice, room_id, "m.room.topic", {"topic": "two"})
    current = await room_state(alice, room_id)
    for limit in (1, 2, 3, 5, 50):
        flt = json.dumps({"room": {"timeline": {"limit": limit}}})
        for params in ({}, {"full_state": "true"}):
            room = joined(await sync(bob, filter=flt, **params), room_id)
            state, timeline = ids(events_of(room, "state")), ids(events_of(room, "timeline"))
            assert {**state, **timeline} == current, limit
            # the state section is the state before the first timeline event: no event
            # of the timeline is in it, and every key the timeline sets is older there
            assert not set(state.values()) & {e["event_id"] for e in events_of(room, "timeline")}
    # Timeline of messages only: the state section still ends up at the room's state.
    flt = json.dumps({"room": {"timeline": {"limit": 1, "types": ["m.room.message"]}}})
    room = joined(await sync(bob, filter=flt), room_id)
    assert [e["content"]["body"] for e in events_of(room, "timeline")] == ["hello"]
    assert ids(events_of(room, "state")) == current


async def test_deltas_across_more_changes_than_the_snapshot_interval(make_client: Any) -> None:
    """State groups keep a full snapshot every 100 deltas: differences between points on
    either side of one, or several apart, are still exact."""
    alice, bob, room_id = await room_with(make_client)
    marks: list[tuple[str, dict[StateKey, str]]] = []
    for i in range(230):
        if i in (0, 60, 99, 101, 150, 205):
            marks.append(((await sync(bob, filter=LIMIT_3))["next_batch"],
                          await room_state(alice, room_id)))
        # 130 keys each set once, one key set over and over
        key = str(i) if i < 130 else "again"
        await set_state(alice, room_id, "org.example.counter", {"i": i}, key)
    await fillers(alice, room_id)
    current = await room_state(alice, room_id)
    for since, then in marks:
        room = joined(await sync(bob, since, filter=LIMIT_3), room_id)
        assert room["timeline"]["limited"] is True
        expected = {k: v for k, v in current.items() if then.get(k) != v}
        assert ids(events_of(room, "state")) == expected
    body = await sync(bob, filter=LIMIT_3)
    room = joined(body, room_id)
    assert {**ids(events_of(room, "state")), **ids(events_of(room, "timeline"))} == current


@pytest.fixture(params=BACKENDS)
async def local(
    request: pytest.FixtureRequest, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[HomeServer, str]]:
    """A server in this process, so a test can reach its storage."""
    async with inprocess_server(request.param, "syncstate.test") as local_server:
        yield local_server


async def test_state_a_resolution_chose_is_reported(
    local: tuple[HomeServer, str], http: aiohttp.ClientSession
) -> None:
    """Current state can move to an event no timeline carries: when a fork is merged, state
    resolution may keep an older event (services/persist.py writes each moved row at the
    position of the event whose persisting moved it). Until forks can be made here, the
    resolution's outcome is written as that step writes it; /sync must then tell the
    client, in `state`, unless the timeline sets that key itself."""
    hs, base = local
    alice = await Client(http, base).register()
    bob = await Client(http, base).register()
    status, created = await alice.post("createRoom", {"preset": "public_chat"})
    assert status == 200, created
    room_id = created["room_id"]
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    old_topic = await set_state(alice, room_id, "m.room.topic", {"topic": "old"})
    await set_state(alice, room_id, "m.room.topic", {"topic": "new"})
    since = (await sync(bob))["next_batch"]

    merge = await send(alice, room_id, "a merge")

    def resolve_to_old_topic(txn: Txn) -> None:
        position = event_store.get_event_position(txn, merge)
        assert position is not None
        txn.execute(
            "UPDATE current_state SET event_id = ?, stream_ordering = ?"
            " WHERE room_id = ? AND type = 'm.room.topic' AND state_key = ''",
            (old_topic, position[1], room_id),
        )
        hs.stream.not_timeline(position[1])  # as persisting marks a message that moved state

    await hs.db.run(resolve_to_old_topic)
    assert (await room_state(alice, room_id))[("m.room.topic", "")] == old_topic
    body = await sync(bob, since)
    room = joined(body, room_id)
    assert room["timeline"]["limited"] is False
    assert [e["event_id"] for e in events_of(room, "timeline")] == [merge]
    assert ids(events_of(room, "state")) == {("m.room.topic", ""): old_topic}
    # Said once: the next sync has nothing more to say.
    assert room_id not in section(await sync(bob, body["next_batch"]), "rooms", "join")
