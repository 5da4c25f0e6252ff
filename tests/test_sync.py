"""/sync: initial and incremental sync, long-polling, limited timelines, ephemeral events."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.conftest import Client
from tests.sync_helpers import events_of, joined, section, send, sync, timeline_bodies


async def _room_with(make_client: Any) -> tuple[Any, Any, str]:
    alice = await make_client().register()
    bob = await make_client().register()
    status, room = await alice.post("createRoom", {"preset": "private_chat", "invite": [bob.user_id]})
    assert status == 200, room
    room_id = room["room_id"]
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    return alice, bob, room_id


async def _send(client: Any, room_id: str, body: str) -> str:
    status, resp = await client.put(
        f"rooms/{quote(room_id)}/send/m.room.message/{time.monotonic_ns()}",
        {"msgtype": "m.text", "body": body})
    assert status == 200, resp
    return str(resp["event_id"])


async def test_long_poll_wakes_on_message(make_client: Any) -> None:
    alice, bob, room_id = await _room_with(make_client)
    status, initial = await bob.get("sync")
    assert status == 200 and room_id in section(initial, "rooms", "join")

    async def later() -> float:
        await asyncio.sleep(0.5)
        sent = time.monotonic()
        await _send(alice, room_id, "wake up")
        return sent

    sender = asyncio.create_task(later())
    status, body = await bob.get("sync", params={"since": initial["next_batch"], "timeout": "10000"})
    arrived = time.monotonic()
    sent_at = await sender
    assert status == 200
    bodies = [e["content"].get("body") for e in events_of(section(body, "rooms", "join")[room_id], "timeline")]
    assert bodies == ["wake up"]
    assert arrived - sent_at < 1.0, arrived - sent_at


async def test_empty_incremental_sync_times_out_with_same_position(make_client: Any) -> None:
    alice, _, _ = await _room_with(make_client)
    _, initial = await alice.get("sync")
    started = time.monotonic()
    status, body = await alice.get("sync", params={"since": initial["next_batch"], "timeout": "300"})
    assert status == 200 and time.monotonic() - started >= 0.25
    assert section(body, "rooms", "join") == {}


async def test_limited_timeline_and_prev_batch(make_client: Any) -> None:
    alice, bob, room_id = await _room_with(make_client)
    _, initial = await bob.get("sync")
    sent = [await _send(alice, room_id, f"m{i}") for i in range(15)]
    status, body = await bob.get("sync", params={"since": initial["next_batch"]})
    timeline = section(body, "rooms", "join")[room_id]["timeline"]
    assert timeline["limited"] is True
    assert [e["event_id"] for e in timeline["events"]] == sent[-10:]
    status, older = await bob.get(f"rooms/{quote(room_id)}/messages",
                                  params={"from": timeline["prev_batch"], "dir": "b", "limit": "5"})
    assert status == 200
    assert [e["event_id"] for e in older["chunk"]] == list(reversed(sent[:5]))


async def test_own_messages_carry_transaction_id(make_client: Any) -> None:
    alice, _, room_id = await _room_with(make_client)
    status, resp = await alice.put(f"rooms/{quote(room_id)}/send/m.room.message/my-txn-1",
                                   {"msgtype": "m.text", "body": "hi"})
    assert status == 200
    _, body = await alice.get("sync")
    events = events_of(section(body, "rooms", "join")[room_id], "timeline")
    mine = [e for e in events if e["event_id"] == resp["event_id"]]
    assert mine[0]["unsigned"]["transaction_id"] == "my-txn-1"


async def test_invite_appears_with_stripped_state(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    _, initial = await bob.get("sync")
    status, room = await alice.post("createRoom", {"name": "Invited here", "invite": [bob.user_id]})
    assert status == 200
    _, body = await bob.get("sync", params={"since": initial["next_batch"], "timeout": "5000"})
    invite = section(body, "rooms", "invite")[room["room_id"]]["invite_state"]["events"]
    assert {"m.room.create", "m.room.name", "m.room.member"} <= {e["type"] for e in invite}


async def test_typing_and_private_receipts(make_client: Any) -> None:
    alice, bob, room_id = await _room_with(make_client)
    event_id = await _send(alice, room_id, "read me")
    _, initial = await alice.get("sync")
    assert (await bob.put(f"rooms/{quote(room_id)}/typing/{quote(bob.user_id)}",
                          {"typing": True, "timeout": 10000}))[0] == 200
    _, body = await alice.get("sync", params={"since": initial["next_batch"], "timeout": "5000"})
    ephemeral = events_of(section(body, "rooms", "join")[room_id], "ephemeral")
    typing = [e for e in ephemeral if e["type"] == "m.typing"]
    assert typing and typing[0]["content"]["user_ids"] == [bob.user_id]
    assert (await bob.post(f"rooms/{quote(room_id)}/receipt/m.read.private/{quote(event_id)}", {}))[0] == 200
    assert (await bob.post(f"rooms/{quote(room_id)}/receipt/m.read/{quote(event_id)}", {}))[0] == 200
    _, full = await alice.get("sync")
    receipts = [e for e in events_of(section(full, "rooms", "join")[room_id], "ephemeral") if e["type"] == "m.receipt"]
    content = receipts[0]["content"][event_id]
    assert bob.user_id in content["m.read"] and "m.read.private" not in content
    _, bobs = await bob.get("sync")
    mine = [e for e in events_of(section(bobs, "rooms", "join")[room_id], "ephemeral") if e["type"] == "m.receipt"]
    assert bob.user_id in mine[0]["content"][event_id]["m.read.private"]


async def test_unread_count_follows_receipts(make_client: Any) -> None:
    alice, bob, room_id = await _room_with(make_client)
    ids = [await _send(alice, room_id, f"n{i}") for i in range(3)]
    _, body = await bob.get("sync")
    assert section(body, "rooms", "join")[room_id]["unread_notifications"]["notification_count"] == 3
    assert (await bob.post(f"rooms/{quote(room_id)}/receipt/m.read/{quote(ids[1])}", {}))[0] == 200
    _, body = await bob.get("sync")
    assert section(body, "rooms", "join")[room_id]["unread_notifications"]["notification_count"] == 1


async def test_filters_and_account_data(make_client: Any) -> None:
    alice, _, room_id = await _room_with(make_client)
    status, created = await alice.post(f"user/{quote(alice.user_id)}/filter",
                                       {"room": {"timeline": {"limit": 2}}})
    assert status == 200
    status, stored = await alice.get(f"user/{quote(alice.user_id)}/filter/{created['filter_id']}")
    assert status == 200 and stored == {"room": {"timeline": {"limit": 2}}}
    for i in range(4):
        await _send(alice, room_id, f"f{i}")
    _, body = await alice.get("sync", params={"filter": created["filter_id"]})
    assert len(events_of(section(body, "rooms", "join")[room_id], "timeline")) == 2
    assert (await alice.put(f"user/{quote(alice.user_id)}/account_data/org.example.settings",
                            {"theme": "dark"}))[0] == 200
    status, data = await alice.get(f"user/{quote(alice.user_id)}/account_data/org.example.settings")
    assert status == 200 and data == {"theme": "dark"}
    _, body = await alice.get("sync")
    types = {e["type"]: e["content"] for e in events_of(body, "account_data")}
    assert types["org.example.settings"] == {"theme": "dark"} and "m.push_rules" in types


async def test_no_position_is_reused_after_a_crash(
    make_server: Any, http: aiohttp.ClientSession
) -> None:
    """A position that never got a row (a failed send) still went out in a sync token: after
    the server is killed and restarted, new events must land after it, not on it."""
    srv = make_server({}, dev=True)
    alice, bob = Client(http, srv.base_url), Client(http, srv.base_url)
    await alice.register()
    await bob.register()
    status, room = await alice.post("createRoom", {"preset": "public_chat"})
    assert status == 200
    room_id = room["room_id"]
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    token = (await sync(bob, set_presence="offline"))["next_batch"]
    status, _ = await alice.put(f"rooms/{quote(room_id)}/send/m.room.message/bad",
                                {"msgtype": "m.text", "body": "x", "n": 0.5})
    assert status == 400
    token = (await sync(bob, token, set_presence="offline"))["next_batch"]
    assert srv.proc is not None
    srv.proc.kill()
    srv.proc.wait()
    srv.proc = None
    await asyncio.to_thread(srv.start)
    await send(alice, room_id, "after the crash")
    body = await sync(bob, token, set_presence="offline")
    assert "after the crash" in timeline_bodies(joined(body, room_id))


async def test_shutdown_does_not_wait_for_long_polls(
    make_server: Any, http: aiohttp.ClientSession
) -> None:
    srv = make_server({}, dev=True)
    alice = Client(http, srv.base_url)
    await alice.register()
    token = (await sync(alice, set_presence="offline"))["next_batch"]
    poll = asyncio.ensure_future(sync(alice, token, timeout="60000", set_presence="offline"))
    await asyncio.sleep(0.5)
    assert srv.proc is not None
    started = time.monotonic()
    srv.proc.terminate()
    await asyncio.to_thread(srv.proc.wait, 30)
    assert time.monotonic() - started < 5
    body = await poll  # answered (empty) rather than cut off
    assert body["next_batch"]
