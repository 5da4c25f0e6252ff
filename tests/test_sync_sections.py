"""/sync sections: state, summaries, leave/invite, lazy-loading members, filters, full_state."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

from tests.sync_helpers import (
    events_of,
    joined,
    room_with,
    section,
    send,
    set_state,
    sync,
    timeline_bodies,
)


async def test_initial_sync_shape(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    body = await sync(alice)
    for key in ("next_batch", "rooms", "account_data", "device_one_time_keys_count"):
        assert key in body
    # Empty sections are left out (core/sync_shape.py): nobody sent Alice a to-device message,
    # no device list changed, she has no invite, no left room, no knock.
    for key in ("to_device", "device_lists"):
        assert key not in body
    assert set(body["rooms"]) == {"join"}
    room = joined(body, room_id)
    assert room["summary"]["m.joined_member_count"] == 2
    assert room["summary"]["m.invited_member_count"] == 0
    assert room["summary"]["m.heroes"] == [bob.user_id]
    state_types = {e["type"] for e in events_of(room, "state")} | \
        {e["type"] for e in events_of(room, "timeline")}
    assert {"m.room.create", "m.room.power_levels", "m.room.member"} <= state_types
    # state holds the state before the timeline: nothing appears in both
    tl_ids = {e["event_id"] for e in events_of(room, "timeline")}
    assert not tl_ids & {e["event_id"] for e in events_of(room, "state")}
    assert all("room_id" not in e for e in events_of(room, "timeline"))
    assert any(e["type"] == "m.push_rules" for e in events_of(body, "account_data"))


async def test_state_delta_in_limited_incremental_sync(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    first = await sync(bob)
    await set_state(alice, room_id, "m.room.name", {"name": "Renamed"})
    for i in range(12):
        await send(alice, room_id, f"filler {i}")
    body = await sync(bob, first["next_batch"])
    room = joined(body, room_id)
    assert room["timeline"]["limited"] is True
    names = [e for e in events_of(room, "state") if e["type"] == "m.room.name"]
    assert names and names[0]["content"] == {"name": "Renamed"}
    # only the delta: the create event is not repeated
    assert not any(e["type"] == "m.room.create" for e in events_of(room, "state"))
    # and an unlimited incremental sync carries state changes in the timeline only
    await set_state(alice, room_id, "m.room.topic", {"topic": "t"})
    body2 = await sync(bob, body["next_batch"])
    room2 = joined(body2, room_id)
    assert room2["timeline"]["limited"] is False
    assert [e["type"] for e in events_of(room2, "timeline")] == ["m.room.topic"]
    assert events_of(room2, "state") == []


async def test_initial_sync_state_is_before_timeline(make_client: Any) -> None:
    alice, _, room_id = await room_with(make_client)
    await set_state(alice, room_id, "m.room.topic", {"topic": "old"})
    for i in range(10):
        await send(alice, room_id, f"x{i}")
    await set_state(alice, room_id, "m.room.topic", {"topic": "new"})
    body = await sync(alice, filter=json.dumps({"room": {"timeline": {"limit": 3}}}))
    room = joined(body, room_id)
    topics = [e["content"]["topic"] for e in events_of(room, "state") if e["type"] == "m.room.topic"]
    assert topics == ["old"]
    assert events_of(room, "timeline")[-1]["content"] == {"topic": "new"}


async def test_leave_section_and_rejected_invite(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    first = await sync(bob)
    await send(alice, room_id, "before you go")
    status, _ = await bob.post(f"rooms/{quote(room_id)}/leave", {})
    assert status == 200
    body = await sync(bob, first["next_batch"])
    assert room_id not in section(body, "rooms", "join")
    left = section(body, "rooms", "leave")[room_id]
    events = events_of(left, "timeline")
    assert events[-1]["type"] == "m.room.member" and events[-1]["content"]["membership"] == "leave"
    assert "before you go" in timeline_bodies(left)
    # after the leave nothing more arrives for that room
    await send(alice, room_id, "after")
    body2 = await sync(bob, body["next_batch"])
    assert room_id not in section(body2, "rooms", "join") and room_id not in section(body2, "rooms", "leave")
    # include_leave shows it on initial sync
    full = await sync(bob, filter=json.dumps({"room": {"include_leave": True}}))
    assert room_id in section(full, "rooms", "leave")
    plain = await sync(bob)
    assert room_id not in section(plain, "rooms", "leave")

    # rejecting an invite: the leave event alone
    carol = await make_client().register()
    status, room2 = await alice.post("createRoom", {"invite": [carol.user_id]})
    c1 = await sync(carol)
    assert room2["room_id"] in section(c1, "rooms", "invite")
    assert (await carol.post(f"rooms/{quote(room2['room_id'])}/leave", {}))[0] == 200
    c2 = await sync(carol, c1["next_batch"])
    rejected = section(c2, "rooms", "leave")[room2["room_id"]]
    assert [e["type"] for e in events_of(rejected, "timeline")] == ["m.room.member"]


async def test_invite_state_and_wake(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    first = await sync(bob)

    async def invite_later() -> float:
        await asyncio.sleep(0.3)
        t = time.monotonic()
        status, room = await alice.post("createRoom", {"name": "Secret", "invite": [bob.user_id],
                                                       "preset": "private_chat"})
        assert status == 200
        return t

    task = asyncio.create_task(invite_later())
    body = await sync(bob, first["next_batch"], timeout="10000")
    elapsed = time.monotonic() - await task
    assert elapsed < 2.0
    (room_id, invite), = section(body, "rooms", "invite").items()
    events = invite["invite_state"]["events"]
    types = {(e["type"], e["state_key"]) for e in events}
    assert ("m.room.name", "") in types and ("m.room.join_rules", "") in types
    assert ("m.room.member", bob.user_id) in types and ("m.room.member", alice.user_id) in types
    # the invite is not repeated when nothing changed
    again = await sync(bob, body["next_batch"])
    assert room_id not in section(again, "rooms", "invite")


async def test_lazy_loading_members(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client, preset="public_chat")
    carol = await make_client().register()
    assert (await carol.post(f"join/{quote(room_id)}", {}))[0] == 200
    for i in range(12):
        await send(alice, room_id, f"a{i}")
    ll = json.dumps({"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 5}}})
    body = await sync(bob, filter=ll)
    room = joined(body, room_id)
    members = {e["state_key"] for e in events_of(room, "state") if e["type"] == "m.room.member"}
    assert alice.user_id in members and carol.user_id not in members
    assert room["summary"]["m.joined_member_count"] == 3
    # a new sender's membership is sent once; alice's is not repeated
    await send(carol, room_id, "hi from carol")
    body2 = await sync(bob, body["next_batch"], filter=ll)
    room2 = joined(body2, room_id)
    members2 = {e["state_key"] for e in events_of(room2, "state") if e["type"] == "m.room.member"}
    assert members2 == {carol.user_id}
    await send(carol, room_id, "again")
    body3 = await sync(bob, body2["next_batch"], filter=ll)
    assert [e for e in events_of(joined(body3, room_id), "state") if e["type"] == "m.room.member"] == []
    # include_redundant_members sends it again
    red = json.dumps({"room": {"state": {"lazy_load_members": True, "include_redundant_members": True}}})
    await send(carol, room_id, "third")
    body4 = await sync(bob, body3["next_batch"], filter=red)
    members4 = {e["state_key"] for e in events_of(joined(body4, room_id), "state") if e["type"] == "m.room.member"}
    assert carol.user_id in members4
    # without lazy loading everyone is there
    full = await sync(bob)
    all_members = {e["state_key"] for e in events_of(joined(full, room_id), "state") + events_of(joined(full, room_id), "timeline")
                   if e["type"] == "m.room.member"}
    assert {alice.user_id, bob.user_id, carol.user_id} <= all_members


async def test_stored_and_inline_filters(make_client: Any) -> None:
    alice, _, room_id = await room_with(make_client)
    await set_state(alice, room_id, "m.room.topic", {"topic": "x"})
    await send(alice, room_id, "message")
    status, created = await alice.post(f"user/{quote(alice.user_id)}/filter", {
        "room": {"timeline": {"types": ["m.room.message"]}, "state": {"types": []},
                 "rooms": [room_id]},
        "event_fields": ["type", "content.body", "event_id", "sender", "origin_server_ts"],
    })
    assert status == 200
    body = await sync(alice, filter=created["filter_id"])
    room = joined(body, room_id)
    events = events_of(room, "timeline")
    assert [(e["type"], e["content"], sorted(e)) for e in events] == [
        ("m.room.message", {"body": "message"},
         ["content", "event_id", "origin_server_ts", "sender", "type"])]
    assert events_of(room, "state") == []
    # not_rooms excludes the room entirely
    body = await sync(alice, filter=json.dumps({"room": {"not_rooms": [room_id]}}))
    assert room_id not in section(body, "rooms", "join")
    # invalid filters are refused
    status, err = await alice.post(f"user/{quote(alice.user_id)}/filter", {"room": {"timeline": {"limit": "x"}}})
    assert status == 400
    status, err = await alice.get("sync", params={"filter": '{"room": {"timeline": {"limit": -1}}}'})
    assert status == 400
    status, err = await alice.get("sync", params={"filter": "999999"})
    assert status in (400, 404)
    status, err = await alice.get(f"user/{quote(alice.user_id)}/filter/12345")
    assert status == 404


async def test_full_state_and_no_change(make_client: Any) -> None:
    alice, _, room_id = await room_with(make_client)
    first = await sync(alice)
    body = await sync(alice, first["next_batch"], full_state="true")
    room = joined(body, room_id)
    assert {"m.room.create", "m.room.power_levels"} <= {e["type"] for e in events_of(room, "state")}
    # nothing new: returns immediately with no timeout, same-or-newer token
    started = time.monotonic()
    quiet = await sync(alice, body["next_batch"])
    assert time.monotonic() - started < 1
    assert section(quiet, "rooms", "join") == {}
    assert int(quiet["next_batch"][1:].split("_")[0]) >= int(body["next_batch"][1:].split("_")[0])


async def test_prev_batch_on_initial_sync_and_bad_since(make_client: Any) -> None:
    alice, _, room_id = await room_with(make_client)
    ids = [await send(alice, room_id, f"p{i}") for i in range(6)]
    body = await sync(alice, filter=json.dumps({"room": {"timeline": {"limit": 2}}}))
    room = joined(body, room_id)
    assert room["timeline"]["limited"] is True
    assert [e["event_id"] for e in events_of(room, "timeline")] == ids[-2:]
    status, older = await alice.get(f"rooms/{quote(room_id)}/messages",
                                    params={"from": room["timeline"]["prev_batch"], "dir": "b", "limit": "2"})
    assert status == 200 and [e["event_id"] for e in older["chunk"]] == [ids[3], ids[2]]
    status, err = await alice.get("sync", params={"since": "garbage"})
    assert status == 400


async def test_typing_cleared_and_expires(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    first = await sync(alice)
    path = f"rooms/{quote(room_id)}/typing/{quote(bob.user_id)}"
    assert (await bob.put(path, {"typing": True, "timeout": 30000}))[0] == 200
    body = await sync(alice, first["next_batch"], timeout="5000")
    typing = [e for e in events_of(joined(body, room_id), "ephemeral") if e["type"] == "m.typing"]
    assert typing[0]["content"]["user_ids"] == [bob.user_id]
    assert (await bob.put(path, {"typing": False}))[0] == 200
    body = await sync(alice, body["next_batch"], timeout="5000")
    typing = [e for e in events_of(joined(body, room_id), "ephemeral") if e["type"] == "m.typing"]
    assert typing[0]["content"]["user_ids"] == []
    # a short timeout expires by itself and wakes the waiting sync
    assert (await bob.put(path, {"typing": True, "timeout": 300}))[0] == 200
    body = await sync(alice, body["next_batch"], timeout="5000")
    assert [e["content"]["user_ids"] for e in events_of(joined(body, room_id), "ephemeral")
            if e["type"] == "m.typing"] == [[bob.user_id]]
    body = await sync(alice, body["next_batch"], timeout="5000")
    assert [e["content"]["user_ids"] for e in events_of(joined(body, room_id), "ephemeral")
            if e["type"] == "m.typing"] == [[]]
    # other users cannot set someone's typing, non-members cannot type
    assert (await alice.put(path, {"typing": True}))[0] == 403
    eve = await make_client().register()
    assert (await eve.put(f"rooms/{quote(room_id)}/typing/{quote(eve.user_id)}", {"typing": True}))[0] == 403


async def test_knock_section(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    status, room = await alice.post("createRoom", {"name": "Knock here", "initial_state": [
        {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]})
    assert status == 200
    first = await sync(bob)
    assert (await bob.post(f"knock/{quote(room['room_id'])}", {"reason": "please"}))[0] == 200
    body = await sync(bob, first["next_batch"])
    knock = section(body, "rooms", "knock")[room["room_id"]]["knock_state"]["events"]
    types = {(e["type"], e["state_key"]) for e in knock}
    assert ("m.room.name", "") in types and ("m.room.member", bob.user_id) in types
    # the room admin sees the knock in the timeline
    admin = await sync(alice)
    members = [e for e in events_of(joined(admin, room["room_id"]), "timeline")
               if e["type"] == "m.room.member" and e["state_key"] == bob.user_id]
    assert members and members[0]["content"]["membership"] == "knock"


async def test_history_visibility_joined_hides_earlier_events(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    status, room = await alice.post("createRoom", {"preset": "public_chat"})
    room_id = room["room_id"]
    await set_state(alice, room_id, "m.room.history_visibility", {"history_visibility": "joined"})
    await send(alice, room_id, "secret before bob")
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    await send(alice, room_id, "after bob joined")
    body = await sync(bob)
    assert timeline_bodies(joined(body, room_id)) == ["after bob joined"]


async def test_newly_joined_room_has_full_state(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    status, room = await alice.post("createRoom", {"preset": "public_chat", "name": "Joinable"})
    room_id = room["room_id"]
    for i in range(12):
        await send(alice, room_id, f"old {i}")
    first = await sync(bob)
    assert room_id not in section(first, "rooms", "join")
    assert (await bob.post(f"join/{quote(room_id)}", {}))[0] == 200
    body = await sync(bob, first["next_batch"])
    room_entry = joined(body, room_id)
    types = {e["type"] for e in events_of(room_entry, "state")}
    assert {"m.room.create", "m.room.name", "m.room.power_levels"} <= types
    assert room_entry["timeline"]["limited"] is True
    assert events_of(room_entry, "timeline")[-1]["type"] == "m.room.member"
    assert room_entry["summary"]["m.joined_member_count"] == 2


async def test_bundled_aggregations_in_timeline(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    root = await send(alice, room_id, "root")
    await send(bob, room_id, "reply", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    body = await sync(alice)
    events = {e["event_id"]: e for e in events_of(joined(body, room_id), "timeline")}
    thread = events[root]["unsigned"]["m.relations"]["m.thread"]
    assert thread["count"] == 1 and thread["latest_event"]["content"]["body"] == "reply"
