"""An incremental /sync whose window holds only new timeline events skips reading receipts,
account data, presence, state and device lists (StreamIdGenerator.timeline_only_after). What
a user sees must not change for it: each window shows what moved in it, whichever order a
message and the other change came in, and a message that moves state (a fork's resolution)
brings that state along. On SQLite and PostgreSQL, with the server in this process so that a
received event can be persisted as federation does it.
"""

from __future__ import annotations

import time
from typing import Any

from tests.e2e_helpers import device_keys, device_signing_key, upload
from tests.test_rooms import create_room, q, send_text
from tests.test_topological_history import Server, server  # noqa: F401 (fixture)
from veche.core import auth as auth_rules
from veche.storage import event_graph as graph


def _timeline(body: dict[str, Any], room_id: str) -> list[dict[str, Any]]:
    room = body["rooms"]["join"].get(room_id, {})
    return list(room.get("timeline", {}).get("events", []))


async def test_a_message_that_moves_state_brings_the_state_to_sync(server: Server) -> None:  # noqa: F811
    alice = await server.user()
    room_id = await create_room(alice, preset="public_chat")
    tip = await send_text(alice, room_id, "before")
    rv = await server.hs.events.room_version(room_id)
    state = await server.run(lambda txn: graph.get_state_ids_after(txn, tip)) or {}
    depth = (await server.run(lambda txn: txn.fetchval(
        "SELECT depth FROM events WHERE event_id = ?", (tip,))))

    def made_elsewhere(etype: str, content: dict[str, Any], prev: str, **extra: Any) -> dict[str, Any]:
        event = {"type": etype, "room_id": room_id, "sender": alice.user_id, "content": content,
                 "origin_server_ts": int(time.time() * 1000), "prev_events": [prev],
                 "depth": depth + 2, **extra}
        event["auth_events"] = sorted(
            state[k] for k in auth_rules.auth_types_for_event(rv, event) if k in state)
        return server.hs.events._sign(event, rv)

    # A topic the room learns only with a received message, whose prev event is not here:
    # as the state after that event, told by the message's server (federation's /state_ids).
    topic = made_elsewhere("m.room.topic", {"topic": "told"}, tip, state_key="")
    await server.hs.events.persist_received(topic, outlier=True)
    status, first = await alice.get("sync")  # the window: the message alone
    assert status == 200, first
    message = made_elsewhere("m.room.message", {"msgtype": "m.text", "body": "after a gap"},
                             "$not-here-" + tip[1:])
    told = {**state, ("m.room.topic", ""): topic["event_id"]}
    persisted = await server.hs.events.persist_received(message, missing_prev_states=[told])
    assert persisted.rejected is None and not persisted.soft_failed, persisted

    status, body = await alice.get("sync", params={"since": first["next_batch"]})
    assert status == 200, body
    assert [e["event_id"] for e in _timeline(body, room_id)] == [message["event_id"]]
    room_state = body["rooms"]["join"][room_id]["state"]["events"]
    assert [(e["type"], e["content"]) for e in room_state] == [("m.room.topic", {"topic": "told"})]


async def test_each_window_shows_what_moved_in_it(server: Server) -> None:  # noqa: F811
    alice, bob = await server.user(), await server.user()
    room_id = await create_room(alice, preset="public_chat")
    status, body = await bob.post(f"join/{q(room_id)}", {})
    assert status == 200, body
    status, body = await alice.get("sync")
    assert status == 200, body
    since = body["next_batch"]

    async def window() -> tuple[dict[str, Any], list[str]]:
        nonlocal since
        status, body = await alice.get("sync", params={"since": since})
        assert status == 200, body
        since = body["next_batch"]
        return body, [e["content"].get("body") for e in _timeline(body, room_id)
                      if e["type"] == "m.room.message"]

    def room_of(body: dict[str, Any]) -> dict[str, Any]:
        return dict(body["rooms"]["join"][room_id])

    # Messages alone: nothing else.
    await send_text(bob, room_id, "one")
    await send_text(bob, room_id, "two")
    body, texts = await window()
    assert texts == ["one", "two"]
    assert not room_of(body).get("ephemeral", {}).get("events")
    assert not room_of(body).get("state", {}).get("events")
    assert not body.get("device_lists", {}).get("changed")

    async def bob_reads(event_id: str) -> None:
        status, resp = await bob.post(f"rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})
        assert status == 200, resp

    def bob_read(body: dict[str, Any]) -> set[str]:
        return {event_id for e in room_of(body).get("ephemeral", {}).get("events", [])
                if e["type"] == "m.receipt" for event_id, r in e["content"].items()
                if bob.user_id in (r.get("m.read") or {})}

    # A receipt before a message, then one after a message.
    earlier = await send_text(alice, room_id, "to be read")
    await window()
    await bob_reads(earlier)
    await send_text(bob, room_id, "after a receipt")
    body, texts = await window()
    assert texts == ["after a receipt"] and bob_read(body) == {earlier}
    later = await send_text(bob, room_id, "before a receipt")
    await bob_reads(later)
    body, texts = await window()
    assert texts == ["before a receipt"] and bob_read(body) == {later}

    # Account data between two messages.
    await send_text(bob, room_id, "three")
    status, resp = await alice.put(
        f"user/{q(alice.user_id)}/rooms/{q(room_id)}/account_data/org.example.tag", {"x": 1})
    assert status == 200, resp
    await send_text(bob, room_id, "four")
    body, texts = await window()
    assert texts == ["three", "four"]
    assert {"type": "org.example.tag", "content": {"x": 1}} in room_of(body)["account_data"]["events"]

    # A topic between two messages: in the timeline, so no state section for it.
    await send_text(bob, room_id, "five")
    status, resp = await alice.put(f"rooms/{q(room_id)}/state/m.room.topic", {"topic": "new"})
    assert status == 200, resp
    await send_text(bob, room_id, "six")
    body, texts = await window()
    assert texts == ["five", "six"]
    assert [e["content"] for e in _timeline(body, room_id) if e["type"] == "m.room.topic"] == [
        {"topic": "new"}]

    # Bob's new device keys, then a message: his device list changed.
    status, resp = await upload(bob, {"device_keys": device_keys(bob, device_signing_key(bob.device_id))})
    assert status == 200, resp
    await send_text(bob, room_id, "seven")
    body, texts = await window()
    assert texts == ["seven"]
    assert bob.user_id in body["device_lists"]["changed"]

    # Messages alone again.
    await send_text(bob, room_id, "eight")
    body, texts = await window()
    assert texts == ["eight"]
    assert not body.get("device_lists", {}).get("changed")
    assert not room_of(body).get("account_data", {}).get("events")
