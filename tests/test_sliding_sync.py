"""Simplified sliding sync (MSC4186) over real HTTP, on both backends: lists, filters,
required_state, subscriptions, extensions, long-polling, positions across a restart."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import quote

from tests.e2e_helpers import device_keys, device_signing_key, fallback_key, one_time_keys, upload
from tests.sync_helpers import send, set_state

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
REQUIRED = [["m.room.name", ""], ["m.room.create", ""], ["m.room.member", "$LAZY"]]


async def ss(client: Any, body: dict[str, Any], pos: str | None = None, timeout: int | None = None,
             expect: int = 200) -> dict[str, Any]:
    params = {}
    if pos is not None:
        params["pos"] = pos
    if timeout is not None:
        params["timeout"] = str(timeout)
    status, resp = await client.post(PATH, body, params=params)
    assert status == expect, resp
    return resp  # type: ignore[no-any-return]


def all_rooms(limit: int = 5, ranges: list[list[int]] | None = None,
              required: list[list[str]] | None = None, **filters: Any) -> dict[str, Any]:
    lst: dict[str, Any] = {"ranges": ranges or [[0, 19]], "timeline_limit": limit,
                           "required_state": REQUIRED if required is None else required}
    if filters:
        lst["filters"] = filters
    return {"lists": {"all": lst}}


def room_ids(resp: dict[str, Any], name: str = "all") -> list[str]:
    return [r for op in resp["lists"][name].get("ops", []) for r in op["room_ids"]]


def bodies(room: dict[str, Any]) -> list[str]:
    return [e["content"]["body"] for e in room.get("timeline", []) if e["type"] == "m.room.message"]


async def new_room(client: Any, name: str | None = None, **extra: Any) -> str:
    body: dict[str, Any] = {"preset": "private_chat", **extra}
    if name:
        body["name"] = name
    status, resp = await client.post("createRoom", body)
    assert status == 200, resp
    return str(resp["room_id"])


async def test_advertised_in_versions(make_client: Any) -> None:
    status, body = await make_client().get("/_matrix/client/versions", token=False)
    assert status == 200
    assert body["unstable_features"]["org.matrix.simplified_msc3575"] is True


async def test_list_order_rooms_and_an_incremental_update(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    rooms = []
    for i in range(3):
        room_id = await new_room(alice, f"room {i}", invite=[bob.user_id])
        assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
        await send(alice, room_id, f"hello {i}")
        rooms.append(room_id)
    resp = await ss(bob, all_rooms(limit=2))
    # Newest first: the room with the latest event leads.
    assert room_ids(resp) == rooms[::-1]
    assert resp["lists"]["all"]["count"] == 3
    room = resp["rooms"][rooms[0]]
    assert room["initial"] is True and room["name"] == "room 0"
    assert bodies(room) == ["hello 0"] and len(room["timeline"]) == 2 and room["limited"] is True
    assert room["joined_count"] == 2 and room["invited_count"] == 0
    assert room["notification_count"] == 1 and room["highlight_count"] == 0
    assert room["num_live"] == 0 and "bump_stamp" in room and room["prev_batch"]
    state = {(e["type"], e["state_key"]) for e in room["required_state"]}
    # $LAZY: the members of the timeline's senders only (Bob's join and Alice's message).
    assert state == {("m.room.name", ""), ("m.room.create", ""),
                     ("m.room.member", alice.user_id), ("m.room.member", bob.user_id)}
    # The prev_batch token pages back with /messages.
    status, page = await bob.get(f"rooms/{quote(rooms[0])}/messages",
                                 params={"from": room["prev_batch"], "dir": "b", "limit": "50"})
    assert status == 200 and page["chunk"]

    pos = resp["pos"]
    await send(alice, rooms[0], "news")
    resp2 = await ss(bob, all_rooms(limit=2), pos=pos, timeout=5000)
    assert room_ids(resp2) == [rooms[0], rooms[2], rooms[1]]
    # Only the room that changed, with only what changed.
    assert list(resp2["rooms"]) == [rooms[0]]
    room = resp2["rooms"][rooms[0]]
    assert "initial" not in room and bodies(room) == ["news"] and room["num_live"] == 1
    assert room["limited"] is False and room["notification_count"] == 2
    assert room["required_state"] == []  # Alice's member event was sent already
    assert "name" not in room and "joined_count" not in room
    # A topic change moves a room up (any event type counts for the order), the bump stamp
    # does not move.
    bump = resp["rooms"][rooms[1]]["bump_stamp"]
    await set_state(alice, rooms[1], "m.room.topic", {"topic": "t"})
    resp3 = await ss(bob, all_rooms(limit=2), pos=resp2["pos"], timeout=5000)
    assert room_ids(resp3)[0] == rooms[1]
    assert resp3["rooms"][rooms[1]].get("bump_stamp", bump) == bump


async def test_reading_elsewhere_updates_the_counts(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await new_room(alice, "r", invite=[bob.user_id])
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    last = await send(alice, room_id, "one")
    resp = await ss(bob, all_rooms(limit=1))
    assert resp["rooms"][room_id]["notification_count"] == 1
    # Bob reads (another of his clients could have): the connection learns the count went
    # down, with no new event in the room (Synapse sends nothing here; its counts are 0).
    assert (await bob.post(f"rooms/{quote(room_id)}/receipt/m.read/{quote(last)}", {}))[0] == 200
    resp = await ss(bob, all_rooms(limit=1), pos=resp["pos"], timeout=5000)
    room = resp["rooms"][room_id]
    assert room["notification_count"] == 0 and room["timeline"] == []


async def test_unread_threads_are_counted_apart(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await new_room(alice, "threads", invite=[bob.user_id])
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    root = await send(alice, room_id, "a root")
    status, body = await alice.put(
        f"rooms/{quote(room_id)}/send/m.room.message/reply1",
        {"msgtype": "m.text", "body": "in the thread",
         "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    assert status == 200, body
    reply = body["event_id"]
    resp = await ss(bob, all_rooms(limit=1))
    room = resp["rooms"][room_id]
    # The room's count has both; the thread's share is told apart.
    assert room["notification_count"] == 2
    assert room["unread_thread_notifications"] == {
        root: {"notification_count": 1, "highlight_count": 0}}
    # Reading the thread (a threaded receipt) leaves the main timeline's message unread.
    status, _ = await bob.post(f"rooms/{quote(room_id)}/receipt/m.read/{quote(reply)}",
                               {"thread_id": root})
    assert status == 200
    resp = await ss(bob, all_rooms(limit=1), pos=resp["pos"], timeout=5000)
    room = resp["rooms"][room_id]
    assert room["notification_count"] == 1 and room["unread_thread_notifications"] == {}


async def test_ranges_and_rooms_coming_into_range(make_client: Any) -> None:
    alice = await make_client().register()
    rooms = [await new_room(alice, f"r{i}") for i in range(4)]
    resp = await ss(alice, all_rooms(ranges=[[0, 1]]))
    assert resp["lists"]["all"]["count"] == 4
    assert room_ids(resp) == [rooms[3], rooms[2]] and set(resp["rooms"]) == {rooms[3], rooms[2]}
    # A room outside the window gets a message: it moves in, whole as it was never sent.
    await send(alice, rooms[0], "up")
    resp = await ss(alice, all_rooms(ranges=[[0, 1]]), pos=resp["pos"])
    assert room_ids(resp) == [rooms[0], rooms[3]]
    assert list(resp["rooms"]) == [rooms[0]] and resp["rooms"][rooms[0]]["initial"] is True


async def test_a_larger_timeline_limit_sends_history_again(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await new_room(alice, "r")
    for i in range(4):
        await send(alice, room_id, f"m{i}")
    resp = await ss(alice, all_rooms(limit=1))
    assert bodies(resp["rooms"][room_id]) == ["m3"]
    # Opening the room: a subscription with more timeline than the list's.
    body = {**all_rooms(limit=1), "room_subscriptions": {room_id: {"timeline_limit": 3}}}
    resp = await ss(alice, body, pos=resp["pos"])
    room = resp["rooms"][room_id]
    assert bodies(room) == ["m1", "m2", "m3"] and room["unstable_expanded_timeline"] is True
    assert room["limited"] is True and "initial" not in room
    # Once sent, it is not sent again.
    resp = await ss(alice, body, pos=resp["pos"])
    assert room_id not in resp["rooms"]


async def test_filters_invites_and_dms(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    plain = await new_room(bob, "plain")
    encrypted = await new_room(bob, "secret", initial_state=[{
        "type": "m.room.encryption", "state_key": "",
        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
    space = await new_room(bob, "space", creation_content={"type": "m.space"})
    dm = await new_room(alice, invite=[bob.user_id], is_direct=True)
    body = {"lists": {
        "dms": {"ranges": [[0, 9]], "timeline_limit": 0, "filters": {"is_dm": True}},
        "enc": {"ranges": [[0, 9]], "timeline_limit": 0, "filters": {"is_encrypted": True}},
        "inv": {"ranges": [[0, 9]], "timeline_limit": 0, "filters": {"is_invite": True}},
        "spaces": {"ranges": [[0, 9]], "timeline_limit": 0, "filters": {"room_types": ["m.space"]}},
        "rooms": {"ranges": [[0, 9]], "timeline_limit": 0,
                  "filters": {"not_room_types": ["m.space"], "is_invite": False}},
    }}
    resp = await ss(bob, body)
    assert room_ids(resp, "dms") == [dm] and room_ids(resp, "inv") == [dm]
    assert room_ids(resp, "enc") == [encrypted] and room_ids(resp, "spaces") == [space]
    assert set(room_ids(resp, "rooms")) == {plain, encrypted}
    invite = resp["rooms"][dm]
    assert invite["is_dm"] is True and invite["timeline"] == []
    stripped = {(e["type"], e["state_key"]) for e in invite["invite_state"]}
    assert ("m.room.member", bob.user_id) in stripped and ("m.room.create", "") in stripped
    # Joining moves the DM out of the invites; m.direct then keeps it a DM.
    assert (await bob.post(f"join/{quote(dm)}", {}))[0] == 200
    assert (await bob.put(f"user/{quote(bob.user_id)}/account_data/m.direct",
                          {alice.user_id: [dm]}))[0] == 200
    resp = await ss(bob, body, pos=resp["pos"])
    assert room_ids(resp, "inv") == [] and room_ids(resp, "dms") == [dm]
    assert resp["rooms"][dm]["initial"] is True and resp["rooms"][dm]["is_dm"] is True
    # Heroes name the unnamed DM.
    assert [h["user_id"] for h in resp["rooms"][dm]["heroes"]] == [alice.user_id]


async def test_spaces_filter(make_client: Any) -> None:
    alice = await make_client().register()
    space = await new_room(alice, "space", creation_content={"type": "m.space"})
    child = await new_room(alice, "child")
    await new_room(alice, "elsewhere")
    await set_state(alice, space, "m.space.child", {"via": ["localhost"]}, child)
    body = {"lists": {"in": {"ranges": [[0, 9]], "timeline_limit": 0,
                             "filters": {"spaces": [space]}}}}
    resp = await ss(alice, body)
    assert room_ids(resp, "in") == [child]
    # A child entry without `via` is no child.
    await set_state(alice, space, "m.space.child", {}, child)
    assert room_ids(await ss(alice, body), "in") == []


async def test_required_state_wildcards_and_growth(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await new_room(alice, "r", topic="a topic")
    sub = {"room_subscriptions": {room_id: {"timeline_limit": 0, "required_state": [
        ["m.room.member", "$ME"], ["m.room.topic", "*"]]}}}
    resp = await ss(alice, sub)
    assert "lists" not in resp
    state = {(e["type"], e["state_key"]) for e in resp["rooms"][room_id]["required_state"]}
    assert state == {("m.room.member", alice.user_id), ("m.room.topic", "")}
    # Asking for more sends what was added, and only that.
    sub["room_subscriptions"][room_id]["required_state"].append(["*", ""])
    resp = await ss(alice, sub, pos=resp["pos"])
    state = {e["type"] for e in resp["rooms"][room_id]["required_state"]}
    assert "m.room.create" in state and "m.room.power_levels" in state
    assert "m.room.member" not in state and "initial" not in resp["rooms"][room_id]
    # A state change the config covers comes as it happens.
    await set_state(alice, room_id, "m.room.topic", {"topic": "new"})
    resp = await ss(alice, sub, pos=resp["pos"])
    topics = [e["content"]["topic"] for e in resp["rooms"][room_id]["required_state"]
              if e["type"] == "m.room.topic"]
    assert topics == ["new"]
    # Asking for less, then for the same again: what the client had is not sent twice
    # (wildcards excepted, as in Synapse)...
    narrow = {"room_subscriptions": {room_id: {"timeline_limit": 0, "required_state": [
        ["m.room.member", "$ME"]]}}}
    wide = {"room_subscriptions": {room_id: {"timeline_limit": 0, "required_state": [
        ["m.room.member", "$ME"], ["m.room.topic", ""]]}}}
    resp = await ss(alice, wide, pos=resp["pos"])
    resp = await ss(alice, narrow, pos=resp["pos"])
    resp = await ss(alice, wide, pos=resp["pos"])
    assert room_id not in resp["rooms"]
    # ...unless it changed while the client was not asking.
    resp = await ss(alice, narrow, pos=resp["pos"])
    await set_state(alice, room_id, "m.room.topic", {"topic": "newer"})
    resp = await ss(alice, narrow, pos=resp["pos"])
    assert resp["rooms"][room_id]["required_state"] == []
    resp = await ss(alice, {"room_subscriptions": {room_id: {"timeline_limit": 0, "required_state": [
        ["m.room.topic", ""]]}}}, pos=resp["pos"])
    assert [e["content"]["topic"] for e in resp["rooms"][room_id]["required_state"]] == ["newer"]
    # A subscription to a room the user is not in shows nothing.
    other = await new_room(await make_client().register())
    resp = await ss(alice, {"room_subscriptions": {other: {"timeline_limit": 5}}})
    assert other not in resp["rooms"]


async def test_extensions(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await new_room(alice, "r", invite=[bob.user_id])
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    event_id = await send(alice, room_id, "hi")
    assert (await bob.post(f"rooms/{quote(room_id)}/receipt/m.read/{quote(event_id)}", {}))[0] == 200
    assert (await bob.put(f"user/{quote(bob.user_id)}/rooms/{quote(room_id)}/account_data/m.tag.x",
                          {"x": 1}))[0] == 200
    key = device_signing_key(bob.device_id)
    assert (await upload(bob, {"one_time_keys": one_time_keys(key, bob.user_id, 1),
                               "fallback_keys": fallback_key(key, bob.user_id)}))[0] == 200
    ext = {"to_device": {"enabled": True}, "e2ee": {"enabled": True},
           "account_data": {"enabled": True}, "receipts": {"enabled": True},
           "typing": {"enabled": True}}
    body = {**all_rooms(limit=1), "extensions": ext}
    resp = await ss(bob, body)
    e = resp["extensions"]
    assert e["e2ee"]["device_one_time_keys_count"]["signed_curve25519"] == 1
    assert e["e2ee"]["device_unused_fallback_key_types"] == ["signed_curve25519"]
    assert e["to_device"]["events"] == []
    assert {d["type"] for d in e["account_data"]["global"]} >= {"m.push_rules"}
    assert e["account_data"]["rooms"][room_id] == [{"type": "m.tag.x", "content": {"x": 1}}]
    receipt = e["receipts"]["rooms"][room_id]
    assert receipt["type"] == "m.receipt" and bob.user_id in receipt["content"][event_id]["m.read"]
    # Live: a to-device message, typing.
    status, _ = await alice.put("sendToDevice/m.test/t1", {"messages": {
        bob.user_id: {bob.device_id: {"n": 1}}}})
    assert status == 200
    assert (await alice.put(f"rooms/{quote(room_id)}/typing/{quote(alice.user_id)}",
                            {"typing": True, "timeout": 30000}))[0] == 200
    resp = await ss(bob, body, pos=resp["pos"])
    e = resp["extensions"]
    assert [m["content"] for m in e["to_device"]["events"]] == [{"n": 1}]
    assert e["typing"]["rooms"][room_id]["content"]["user_ids"] == [alice.user_id]
    # The message stays until a request passes the next_batch it came with.
    again = await ss(bob, body, pos=resp["pos"])
    assert [m["content"] for m in again["extensions"]["to_device"]["events"]] == [{"n": 1}]
    ext["to_device"]["since"] = again["extensions"]["to_device"]["next_batch"]
    done = await ss(bob, body, pos=again["pos"])
    assert done["extensions"]["to_device"]["events"] == []


async def test_device_list_changes_reach_the_e2ee_extension(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await new_room(alice, "r", invite=[bob.user_id])
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    body = {**all_rooms(limit=0), "extensions": {"e2ee": {"enabled": True}}}
    resp = await ss(bob, body)
    assert "device_lists" not in resp["extensions"]["e2ee"]
    # Alice's device gets keys: Bob, who shares a room, is told; a stranger is not.
    stranger = await make_client().register()
    strange = await ss(stranger, body)
    key = device_signing_key(alice.device_id)
    assert (await upload(alice, {"device_keys": device_keys(alice, key)}))[0] == 200
    resp = await ss(bob, body, pos=resp["pos"], timeout=5000)
    assert alice.user_id in resp["extensions"]["e2ee"]["device_lists"]["changed"]
    strange = await ss(stranger, body, pos=strange["pos"])
    assert alice.user_id not in strange["extensions"]["e2ee"]["device_lists"]["changed"]


async def test_long_poll_wakes_on_a_message(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await new_room(alice, "r")
    resp = await ss(alice, all_rooms())
    started = time.monotonic()
    poll = asyncio.ensure_future(ss(alice, all_rooms(), pos=resp["pos"], timeout=20000))
    await asyncio.sleep(0.5)
    assert not poll.done()
    await send(alice, room_id, "wake")
    woke = await asyncio.wait_for(poll, 10)
    assert bodies(woke["rooms"][room_id]) == ["wake"]
    assert time.monotonic() - started < 10
    # A to-device message wakes it too.
    body = {**all_rooms(), "extensions": {"to_device": {"enabled": True}}}
    resp = await ss(alice, body, pos=woke["pos"])
    poll = asyncio.ensure_future(ss(alice, body, pos=resp["pos"], timeout=20000))
    await asyncio.sleep(0.5)
    assert not poll.done()
    assert (await alice.put("sendToDevice/m.test/wake", {"messages": {
        alice.user_id: {alice.device_id: {"wake": True}}}}))[0] == 200
    woke = await asyncio.wait_for(poll, 10)
    assert [m["content"] for m in woke["extensions"]["to_device"]["events"]] == [{"wake": True}]
    # Nothing new: the wait runs to its timeout and answers an empty update.
    started = time.monotonic()
    idle = await ss(alice, all_rooms(), pos=woke["pos"], timeout=700)
    assert time.monotonic() - started >= 0.6 and idle["rooms"] == {}


async def test_positions_survive_a_restart_and_unknown_ones_are_refused(
    homeserver: Any, make_client: Any
) -> None:
    alice = await make_client().register()
    room_id = await new_room(alice, "r")
    body = {"conn_id": "main", **all_rooms()}
    resp = await ss(alice, body)
    await homeserver.restart()
    await send(alice, room_id, "after restart")
    resp = await ss(alice, body, pos=resp["pos"])
    room = resp["rooms"][room_id]
    assert "initial" not in room and bodies(room) == ["after restart"]
    # A retried request (its response lost) from the position before works too.
    pos = resp["pos"]
    resp = await ss(alice, body, pos=pos)
    again = await ss(alice, body, pos=pos)
    assert again["lists"] == resp["lists"]
    # Another connection's positions are not this one's; made-up ones are unknown.
    err = await ss(alice, {**body, "conn_id": "other"}, pos=pos, expect=400)
    assert err["errcode"] == "M_UNKNOWN_POS"
    err = await ss(alice, body, pos="nonsense", expect=400)
    assert err["errcode"] == "M_UNKNOWN_POS"
    err = await ss(await make_client().register(), body, pos=pos, expect=400)
    assert err["errcode"] == "M_UNKNOWN_POS"


async def test_malformed_requests(make_client: Any) -> None:
    alice = await make_client().register()
    for bad in ({"lists": {"a": {"ranges": [[3, 1]]}}}, {"lists": []},
                {"room_subscriptions": {"!r:x": {"timeline_limit": -1}}}):
        err = await ss(alice, bad, expect=400)
        assert err["errcode"] == "M_BAD_JSON"
    status, _ = await make_client().post(PATH, {}, token=False)
    assert status == 401


async def test_extensions_catch_up_a_room_coming_into_range(make_client: Any) -> None:
    """Account data, receipts and typing of a room outside the window come when it comes in:
    all of its account data, the user's own receipts and those on the events shown (as
    Synapse), who is typing."""
    alice = await make_client().register()
    bob = await make_client().register()
    low = await new_room(alice, "low", invite=[bob.user_id])
    assert (await bob.post(f"join/{quote(low)}", {}))[0] == 200
    read = await send(alice, low, "read me")
    assert (await bob.post(f"rooms/{quote(low)}/receipt/m.read/{quote(read)}", {}))[0] == 200
    assert (await alice.post(f"rooms/{quote(low)}/receipt/m.read/{quote(read)}", {}))[0] == 200
    assert (await alice.put(f"user/{quote(alice.user_id)}/rooms/{quote(low)}/account_data/m.tag",
                            {"tags": {"u.x": {}}}))[0] == 200
    assert (await bob.put(f"rooms/{quote(low)}/typing/{quote(bob.user_id)}",
                          {"typing": True, "timeout": 60000}))[0] == 200
    await new_room(alice, "high")
    ext = {"account_data": {"enabled": True}, "receipts": {"enabled": True},
           "typing": {"enabled": True}}
    body = {**all_rooms(limit=1, ranges=[[0, 0]]), "extensions": ext}
    resp = await ss(alice, body)
    assert low not in resp["extensions"]["account_data"]["rooms"]
    assert low not in resp["extensions"]["receipts"]["rooms"]
    # Bob's message brings the room in: its account data and receipts come along.
    await send(bob, low, "up")
    resp = await ss(alice, body, pos=resp["pos"])
    assert resp["rooms"][low]["initial"] is True
    assert resp["extensions"]["account_data"]["rooms"][low] == [
        {"type": "m.tag", "content": {"tags": {"u.x": {}}}}]
    content = resp["extensions"]["receipts"]["rooms"][low]["content"]
    assert set(content[read]["m.read"]) == {alice.user_id}  # her own; Bob's is on an unshown event
    assert resp["extensions"]["typing"]["rooms"][low]["content"]["user_ids"] == [bob.user_id]
    # Nothing is sent twice.
    await send(bob, low, "again")
    resp = await ss(alice, body, pos=resp["pos"])
    assert low not in resp["extensions"]["account_data"]["rooms"]
    assert low not in resp["extensions"]["receipts"]["rooms"]
