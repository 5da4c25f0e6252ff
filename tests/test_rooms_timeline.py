"""Timeline reads: /messages pagination, filters, history visibility, /context, /event,
timestamp_to_event."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.test_rooms import assert_error, create_room, q, send_text


async def test_messages_paginate_back_to_create_and_forward(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await create_room(alice, preset="private_chat", name="pages")
    sent = [await send_text(alice, room_id, f"m{i}", txn=f"p{i}") for i in range(120)]
    # Backwards from now, 25 at a time, until there is no `end`.
    seen: list[dict[str, Any]] = []
    token = None
    for _ in range(20):
        params = {"dir": "b", "limit": "25"}
        if token:
            params["from"] = token
        status, body = await alice.get(f"rooms/{q(room_id)}/messages", params=params)
        assert status == 200, body
        assert len(body["chunk"]) <= 25
        seen += body["chunk"]
        if "end" not in body:
            break
        token = body["end"]
    else:
        raise AssertionError("pagination did not end")
    assert seen[-1]["type"] == "m.room.create"
    messages = [e["event_id"] for e in seen if e["type"] == "m.room.message"]
    assert messages == list(reversed(sent))
    ids = [e["event_id"] for e in seen]
    assert len(ids) == len(set(ids))
    # Forwards from the beginning.
    forward: list[dict[str, Any]] = []
    token = None
    for _ in range(20):
        params = {"dir": "f", "limit": "30"}
        if token:
            params["from"] = token
        status, body = await alice.get(f"rooms/{q(room_id)}/messages", params=params)
        assert status == 200, body
        forward += body["chunk"]
        if "end" not in body:
            break
        token = body["end"]
    assert [e["event_id"] for e in forward] == list(reversed(ids))
    # An `end` token continues in the other direction; `to` bounds a page.
    status, first = await alice.get(f"rooms/{q(room_id)}/messages", params={"dir": "b", "limit": "5"})
    status, body = await alice.get(f"rooms/{q(room_id)}/messages",
                                   params={"dir": "b", "to": first["end"], "limit": "50"})
    assert [e["event_id"] for e in body["chunk"]] == list(reversed(sent[-5:]))
    status, body = await alice.get(f"rooms/{q(room_id)}/messages",
                                   params={"dir": "f", "from": first["end"], "limit": "50"})
    assert [e["event_id"] for e in body["chunk"]] == sent[-5:]
    assert "end" not in body


async def test_messages_filter_and_lazy_members(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await create_room(alice, preset="public_chat")
    assert (await bob.post(f"join/{q(room_id)}", {}))[0] == 200
    await send_text(alice, room_id, "from alice")
    await send_text(bob, room_id, "from bob")
    flt = {"types": ["m.room.message"], "senders": [bob.user_id], "lazy_load_members": True}
    status, body = await alice.get(f"rooms/{q(room_id)}/messages",
                                   params={"dir": "b", "filter": json.dumps(flt)})
    assert status == 200, body
    assert [e["content"]["body"] for e in body["chunk"]] == ["from bob"]
    assert {e["state_key"] for e in body["state"]} == {bob.user_id}
    flt = {"not_types": ["m.room.mess*"], "limit": 3}
    status, body = await alice.get(f"rooms/{q(room_id)}/messages",
                                   params={"dir": "b", "filter": json.dumps(flt)})
    assert len(body["chunk"]) == 3
    assert all(e["type"] != "m.room.message" for e in body["chunk"])
    status, body = await alice.get(f"rooms/{q(room_id)}/messages", params={"filter": "{bad"})
    assert_error(status, body, 400, "M_NOT_JSON")
    for bad in ({"types": "m.room.message"}, {"limit": -1}, {"contains_url": "yes"}, [1]):
        status, body = await alice.get(f"rooms/{q(room_id)}/messages",
                                       params={"filter": json.dumps(bad)})
        assert_error(status, body, 400, "M_BAD_JSON")
    # wildcards in types work as in /sync filters
    status, body = await alice.get(f"rooms/{q(room_id)}/messages", params={
        "dir": "b", "filter": json.dumps({"types": ["m.room.mem*"]})})
    assert status == 200 and body["chunk"]
    assert all(e["type"] == "m.room.member" for e in body["chunk"])
    status, body = await alice.get(f"rooms/{q(room_id)}/messages", params={"dir": "x"})
    assert_error(status, body, 400, "M_INVALID_PARAM")
    status, body = await alice.get(f"rooms/{q(room_id)}/messages", params={"from": "garbage"})
    assert_error(status, body, 400, "M_INVALID_PARAM")
    status, body = await alice.get(f"rooms/{q(room_id)}/messages", params={"limit": "x"})
    assert_error(status, body, 400, "M_INVALID_PARAM")


async def test_history_visibility(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    carol = await make_client().register()
    room_id = await create_room(alice, preset="public_chat")
    before = await send_text(alice, room_id, "before bob")
    # shared: bob sees earlier history once joined.
    assert (await bob.post(f"join/{q(room_id)}", {}))[0] == 200
    status, body = await bob.get(f"rooms/{q(room_id)}/messages", params={"limit": "50"})
    assert before in [e["event_id"] for e in body["chunk"]]
    # joined: carol does not see what was sent before she joined.
    assert (await alice.put(f"rooms/{q(room_id)}/state/m.room.history_visibility",
                            {"history_visibility": "joined"}))[0] == 200
    hidden = await send_text(alice, room_id, "before carol")
    assert (await carol.post(f"join/{q(room_id)}", {}))[0] == 200
    visible = await send_text(alice, room_id, "after carol")
    status, body = await carol.get(f"rooms/{q(room_id)}/messages", params={"limit": "50"})
    ids = [e["event_id"] for e in body["chunk"]]
    # ("before bob" was sent while history was shared, so carol may read it.)
    assert visible in ids and hidden not in ids and before in ids
    status, body = await carol.get(f"rooms/{q(room_id)}/event/{q(hidden)}")
    assert_error(status, body, 404, "M_NOT_FOUND")
    status, body = await carol.get(f"rooms/{q(room_id)}/context/{q(hidden)}")
    assert_error(status, body, 404, "M_NOT_FOUND")
    # After leaving, bob no longer sees new events but keeps the old ones.
    assert (await bob.post(f"rooms/{q(room_id)}/leave", {}))[0] == 200
    after_leave = await send_text(alice, room_id, "after bob left")
    status, body = await bob.get(f"rooms/{q(room_id)}/messages", params={"limit": "50"})
    ids = [e["event_id"] for e in body["chunk"]]
    assert after_leave not in ids and visible in ids
    # Strangers cannot read a non-world-readable room at all.
    stranger = await make_client().register()
    status, body = await stranger.get(f"rooms/{q(room_id)}/messages")
    assert_error(status, body, 403, "M_FORBIDDEN")
    # world_readable: anyone can read.
    assert (await alice.put(f"rooms/{q(room_id)}/state/m.room.history_visibility",
                            {"history_visibility": "world_readable"}))[0] == 200
    public = await send_text(alice, room_id, "for everyone")
    status, body = await stranger.get(f"rooms/{q(room_id)}/messages", params={"limit": "50"})
    assert status == 200, body
    ids = [e["event_id"] for e in body["chunk"]]
    # Visibility is decided by the setting in force when each event was sent.
    assert public in ids and after_leave not in ids


async def test_context(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await create_room(alice)
    sent = [await send_text(alice, room_id, f"c{i}") for i in range(10)]
    status, body = await alice.get(f"rooms/{q(room_id)}/context/{q(sent[5])}", params={"limit": "4"})
    assert status == 200, body
    assert body["event"]["event_id"] == sent[5]
    assert [e["event_id"] for e in body["events_before"]] == [sent[4], sent[3]]
    assert [e["event_id"] for e in body["events_after"]] == [sent[6], sent[7]]
    assert {(e["type"], e["state_key"]) for e in body["state"]} >= {
        ("m.room.create", ""), ("m.room.member", alice.user_id)}
    # The tokens continue pagination on either side.
    status, before = await alice.get(f"rooms/{q(room_id)}/messages",
                                     params={"dir": "b", "from": body["start"], "limit": "2"})
    assert [e["event_id"] for e in before["chunk"]] == [sent[2], sent[1]]
    status, after = await alice.get(f"rooms/{q(room_id)}/messages",
                                    params={"dir": "f", "from": body["end"], "limit": "2"})
    assert [e["event_id"] for e in after["chunk"]] == [sent[8], sent[9]]
    status, body = await alice.get(f"rooms/{q(room_id)}/context/{q('$unknown')}")
    assert_error(status, body, 404, "M_NOT_FOUND")


async def test_timestamp_to_event(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await create_room(alice)
    first = await send_text(alice, room_id, "first")
    status, ev = await alice.get(f"rooms/{q(room_id)}/event/{q(first)}")
    ts = ev["origin_server_ts"]
    path = f"/_matrix/client/v1/rooms/{q(room_id)}/timestamp_to_event"
    status, body = await alice.get(path, params={"ts": str(ts), "dir": "f"})
    assert status == 200 and body["origin_server_ts"] >= ts, body
    status, body = await alice.get(path, params={"ts": str(int(time.time() * 1000) + 60_000),
                                                 "dir": "b"})
    assert status == 200 and body["event_id"] == first, body
    status, body = await alice.get(path, params={"ts": str(int(time.time() * 1000) + 60_000),
                                                 "dir": "f"})
    assert_error(status, body, 404, "M_NOT_FOUND")
    status, body = await alice.get(path, params={"ts": "x", "dir": "f"})
    assert_error(status, body, 400, "M_INVALID_PARAM")
