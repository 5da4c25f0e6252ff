"""Deeply nested JSON can't break anyone's /sync: bodies nested deeper than responses can carry
are refused with M_BAD_JSON, and a stored item that still cannot be encoded (written before
the limit existed) is left out of /sync, /messages and /context and logged, not a 500."""

from __future__ import annotations

import itertools
import json
import sqlite3
from typing import Any
from urllib.parse import quote

from tests.conftest import ServerProcess
from tests.sync_helpers import events_of, joined, room_with, section, send, sync
from veche.core.json_limits import MAX_JSON_DEPTH

_txn = itertools.count()
# Deep enough that /sync's wrapping (rooms.join.<id>.timeline.events[i].content...) used to
# overflow orjson's encoder while the body itself was still accepted.
SNEAKY = 250


def nested(depth: int, leaf: Any = "leaf") -> dict[str, Any]:
    """A JSON object `depth` containers deep."""
    value: Any = leaf
    for i in range(depth):
        value = {f"k{i % 3}": value}
    return value  # type: ignore[no-any-return]


def nested_text(depth: int) -> bytes:
    """`depth` objects deep, built as text: Python's own encoder stops near 1000."""
    return b'{"a":' * depth + b"1" + b"}" * depth


def assert_bad_json(status: int, body: Any) -> None:
    assert status == 400 and body["errcode"] == "M_BAD_JSON", (status, body)


async def test_deep_to_device_message_refused_and_recipient_syncs(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    status, body = await alice.put(
        f"sendToDevice/m.test/td{next(_txn)}",
        {"messages": {bob.user_id: {bob.device_id: nested(SNEAKY - 3)}}})
    assert_bad_json(status, body)
    assert section(await sync(bob), "to_device", "events") == []
    status, body = await alice.put(
        f"sendToDevice/m.test/td{next(_txn)}",
        {"messages": {bob.user_id: {"*": nested(MAX_JSON_DEPTH - 3)}}})
    assert status == 200, body
    events = section(await sync(bob), "to_device", "events")
    assert [e["content"] for e in events] == [nested(MAX_JSON_DEPTH - 3)]


async def test_deep_room_events_refused_and_members_sync(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    room = quote(room_id)
    status, body = await alice.put(f"rooms/{room}/send/m.room.message/jd{next(_txn)}",
                                   {"msgtype": "m.text", "body": "deep", "x": nested(SNEAKY)})
    assert_bad_json(status, body)
    status, body = await alice.put(f"rooms/{room}/state/org.example.deep/k", nested(SNEAKY))
    assert_bad_json(status, body)
    # A joiner's own member event is carried in everyone's state and timeline.
    status, body = await bob.put(f"rooms/{room}/state/m.room.member/{quote(bob.user_id)}",
                                 {"membership": "join", "x": nested(SNEAKY)})
    assert_bad_json(status, body)
    await send(alice, room_id, "still here")
    for client in (alice, bob):
        timeline = joined(await sync(client), room_id)["timeline"]["events"]
        assert timeline[-1]["content"]["body"] == "still here"


async def test_deep_account_data_refused(make_client: Any) -> None:
    alice, _bob, room_id = await room_with(make_client)
    user = quote(alice.user_id)
    status, body = await alice.put(f"user/{user}/account_data/org.example.deep", nested(SNEAKY))
    assert_bad_json(status, body)
    status, body = await alice.put(
        f"user/{user}/rooms/{quote(room_id)}/account_data/org.example.deep", nested(SNEAKY))
    assert_bad_json(status, body)
    body = await sync(alice)
    assert "org.example.deep" not in [e["type"] for e in events_of(body, "account_data")]


async def test_over_deep_bodies_and_filters_are_400(make_client: Any) -> None:
    alice = await make_client().register()
    for depth in (MAX_JSON_DEPTH + 1, 255, 300, 1500):
        status, body = await alice.request(
            "PUT", f"user/{quote(alice.user_id)}/account_data/org.example.deep",
            data=nested_text(depth), headers={"Content-Type": "application/json"})
        assert_bad_json(status, body)
        if depth < 1000:  # deeper would pass the request line's length limit
            status, body = await alice.get("sync", params={"filter": nested_text(depth).decode()})
            assert_bad_json(status, body)
    status, body = await alice.request(
        "PUT", f"user/{quote(alice.user_id)}/account_data/org.example.deep",
        data=nested_text(MAX_JSON_DEPTH), headers={"Content-Type": "application/json"})
    assert status == 200, body


async def test_deepest_accepted_edit_of_a_thread_reply_is_served(make_client: Any) -> None:
    """The deepest wrapping of a body: the edit bundled into a thread's latest event, bundled
    into the thread root in a /sync timeline. A body at the limit still fits."""
    alice, bob, room_id = await room_with(make_client)
    room = quote(room_id)
    root = await send(alice, room_id, "root")
    reply = await send(alice, room_id, "reply",
                       **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    new_content = nested(MAX_JSON_DEPTH - 1)
    new_content.update({"msgtype": "m.text", "body": "edited"})
    edit = {"msgtype": "m.text", "body": "* edited", "m.new_content": new_content,
            "m.relates_to": {"rel_type": "m.replace", "event_id": reply}}
    status, body = await alice.put(f"rooms/{room}/send/m.room.message/jd{next(_txn)}", edit)
    assert status == 200, body
    edit_id = body["event_id"]
    timeline = joined(await sync(bob), room_id)["timeline"]["events"]
    by_id = {e["event_id"]: e for e in timeline}
    thread = by_id[root]["unsigned"]["m.relations"]["m.thread"]
    assert thread["latest_event"]["unsigned"]["m.relations"]["m.replace"]["content"] == edit
    status, body = await bob.get(f"rooms/{room}/messages", params={"dir": "b"})
    assert status == 200 and edit_id in [e["event_id"] for e in body["chunk"]], body
    status, body = await bob.get(f"rooms/{room}/event/{quote(edit_id)}")
    assert status == 200 and body["content"] == edit, body
    status, body = await bob.get(f"rooms/{room}/context/{quote(root)}")
    assert status == 200, body


def write_db(server: ServerProcess, sql: str, args: tuple[Any, ...]) -> None:
    """Write to a running server's database behind its back (SQL with `?` placeholders)."""
    if server.db_url.startswith("sqlite:///"):
        with sqlite3.connect(server.db_url.removeprefix("sqlite:///"), timeout=30) as conn:
            assert conn.execute(sql, args).rowcount >= 1
        return
    import psycopg

    with psycopg.connect(server.db_url, autocommit=True) as conn:
        assert conn.execute(sql.replace("?", "%s"), args).rowcount >= 1  # type: ignore[arg-type]


async def test_stored_unencodable_items_are_skipped_and_logged(
    homeserver: ServerProcess, make_client: Any,
) -> None:
    alice, bob, room_id = await room_with(make_client)
    room = quote(room_id)
    before = await send(alice, room_id, "before")
    bad = await send(alice, room_id, "bad")
    after = await send(alice, room_id, "after")
    status, event = await bob.get(f"rooms/{room}/event/{quote(bad)}")
    assert status == 200, event
    # What an older server let through: content nested beyond what any response can carry.
    stored = {k: v for k, v in event.items() if k != "unsigned"}
    stored["content"] = {**event["content"], "x": nested(300)}
    write_db(homeserver, "UPDATE events SET json = ? WHERE event_id = ?", (deep_text(stored), bad))
    status, body = await bob.put(f"user/{quote(bob.user_id)}/account_data/org.example.bad",
                                 {"fine": True})
    assert status == 200, body
    write_db(homeserver, "UPDATE account_data SET content = ? WHERE user_id = ? AND type = ?",
             (deep_text(nested(300)), bob.user_id, "org.example.bad"))
    status, body = await alice.put(f"sendToDevice/m.test/td{next(_txn)}",
                                   {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}})
    assert status == 200, body
    write_db(homeserver, "UPDATE device_inbox SET message_json = ? WHERE user_id = ?",
             (deep_text({"type": "m.test", "sender": alice.user_id, "content": nested(300)}),
              bob.user_id))

    initial = await sync(bob)
    ids = [e["event_id"] for e in events_of(joined(initial, room_id), "timeline")]
    assert before in ids and after in ids and bad not in ids, ids
    assert "org.example.bad" not in [e["type"] for e in events_of(initial, "account_data")]
    assert events_of(initial, "to_device") == []
    status, body = await bob.get(f"rooms/{room}/messages", params={"dir": "b"})
    assert status == 200, body
    ids = [e["event_id"] for e in body["chunk"]]
    assert before in ids and after in ids and bad not in ids, ids
    status, body = await bob.get(f"rooms/{room}/context/{quote(after)}", params={"limit": "5"})
    assert status == 200, body
    assert before in [e["event_id"] for e in body["events_before"]]
    assert bad not in [e["event_id"] for e in body["events_before"]]
    status, body = await bob.get(f"rooms/{room}/event/{quote(bad)}")
    assert status == 404 and body["errcode"] == "M_NOT_FOUND", (status, body)
    assert bad in homeserver.log()


def deep_text(value: Any) -> str:
    # orjson will not write this deep, which is the point; the standard library will.
    return json.dumps(value, separators=(",", ":"))


async def test_integers_that_would_come_back_changed_are_refused(make_client: Any) -> None:
    """orjson reads integers past 64 bits as floats: 10**30 would come back as 1e+30."""
    alice = await make_client().register()
    path = f"user/{quote(alice.user_id)}/account_data/org.example.ints"
    for big in (2**64, -(2**63) - 1, 10**30):
        status, body = await alice.put(path, {"n": big, "f": 1.5})
        assert_bad_json(status, body)
        status, body = await alice.put(path, {"n": [big]})
        assert_bad_json(status, body)
    kept = {"n": [2**64 - 1, -(2**63)], "f": 1.5, "z": -0.0}
    status, body = await alice.put(path, kept)
    assert status == 200, body
    status, body = await alice.get(path)
    assert status == 200 and json.dumps(body) == json.dumps(kept), body
