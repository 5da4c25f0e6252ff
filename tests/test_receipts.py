"""Receipts, read markers, account data and room tags."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.sync_helpers import joined, room_with, send, sync


def _receipts(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    out: dict[str, Any] = {}
    for e in room.get("ephemeral", {}).get("events", []):
        if e["type"] == "m.receipt":
            for event_id, types in e["content"].items():
                for rtype, users in types.items():
                    out.setdefault(event_id, {}).setdefault(rtype, {}).update(users)
    return out


async def test_receipts_reach_others_and_private_stays_private(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    e1 = await send(alice, room_id, "one")
    first = await sync(alice)
    assert (await bob.post(f"rooms/{quote(room_id)}/receipt/m.read/{quote(e1)}", {}))[0] == 200
    body = await sync(alice, first["next_batch"], timeout="5000")
    receipt = _receipts(body, room_id)[e1]["m.read"][bob.user_id]
    assert isinstance(receipt["ts"], int)
    e2 = await send(alice, room_id, "two")
    assert (await bob.post(f"rooms/{quote(room_id)}/receipt/m.read.private/{quote(e2)}", {}))[0] == 200
    later = await sync(alice, body["next_batch"])
    assert "m.read.private" not in str(_receipts(later, room_id))
    mine = await sync(bob)
    assert bob.user_id in _receipts(mine, room_id)[e2]["m.read.private"]


async def test_threaded_receipts_and_validation(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    root = await send(alice, room_id, "root")
    reply = await send(alice, room_id, "in thread",
                       **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    path = f"rooms/{quote(room_id)}/receipt/m.read/{quote(reply)}"
    assert (await bob.post(path, {"thread_id": root}))[0] == 200
    body = await sync(alice)
    assert _receipts(body, room_id)[reply]["m.read"][bob.user_id]["thread_id"] == root
    status, err = await bob.post(path, {"thread_id": ""})
    assert status == 400 and err["errcode"] == "M_INVALID_PARAM"
    status, err = await bob.post(path, {"thread_id": 5})
    assert status == 400
    status, err = await bob.post(f"rooms/{quote(room_id)}/receipt/m.fully_read/{quote(reply)}",
                                 {"thread_id": "main"})
    assert status == 400
    status, err = await bob.post(f"rooms/{quote(room_id)}/receipt/m.unknown/{quote(reply)}", {})
    assert status == 400
    status, err = await bob.post(f"rooms/{quote(room_id)}/receipt/m.read/$nope", {})
    assert status == 404
    eve = await make_client().register()
    status, err = await eve.post(path, {})
    assert status == 403


async def test_read_markers(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    e1 = await send(alice, room_id, "one")
    status, _ = await bob.post(f"rooms/{quote(room_id)}/read_markers",
                               {"m.fully_read": e1, "m.read": e1})
    assert status == 200
    body = await sync(bob)
    room = joined(body, room_id)
    fully = [e for e in room["account_data"]["events"] if e["type"] == "m.fully_read"]
    assert fully == [{"type": "m.fully_read", "content": {"event_id": e1}}]
    assert bob.user_id in _receipts(body, room_id)[e1]["m.read"]
    status, data = await bob.get(f"user/{quote(bob.user_id)}/rooms/{quote(room_id)}/account_data/m.fully_read")
    assert status == 200 and data == {"event_id": e1}


async def test_account_data_round_trip(make_client: Any) -> None:
    alice, bob, room_id = await room_with(make_client)
    first = await sync(alice)
    base = f"user/{quote(alice.user_id)}"
    assert (await alice.put(f"{base}/account_data/org.example.g", {"a": 1}))[0] == 200
    assert (await alice.put(f"{base}/rooms/{quote(room_id)}/account_data/org.example.r", {"b": 2}))[0] == 200
    assert (await alice.get(f"{base}/account_data/org.example.g")) == (200, {"a": 1})
    assert (await alice.get(f"{base}/rooms/{quote(room_id)}/account_data/org.example.r")) == (200, {"b": 2})
    status, _ = await alice.get(f"{base}/account_data/org.example.missing")
    assert status == 404
    body = await sync(alice, first["next_batch"])
    assert {"type": "org.example.g", "content": {"a": 1}} in body["account_data"]["events"]
    assert {"type": "org.example.r", "content": {"b": 2}} in joined(body, room_id)["account_data"]["events"]
    # server-managed types and other users' data are refused
    for t in ("m.fully_read", "m.push_rules"):
        status, err = await alice.put(f"{base}/account_data/{t}", {})
        assert status == 405 and err["errcode"] == "M_BAD_JSON"
    status, _ = await bob.put(f"{base}/account_data/org.example.g", {})
    assert status == 403
    status, _ = await bob.get(f"{base}/account_data/org.example.g")
    assert status == 403
    # an update arrives in an incremental sync
    assert (await alice.put(f"{base}/account_data/org.example.g", {"a": 2}))[0] == 200
    again = await sync(alice, body["next_batch"])
    assert again["account_data"]["events"] == [{"type": "org.example.g", "content": {"a": 2}}]


async def test_tags(make_client: Any) -> None:
    alice, _, room_id = await room_with(make_client)
    base = f"user/{quote(alice.user_id)}/rooms/{quote(room_id)}/tags"
    assert (await alice.get(base)) == (200, {"tags": {}})
    assert (await alice.put(f"{base}/m.favourite", {"order": 0.5}))[0] == 200
    assert (await alice.put(f"{base}/u.work", {}))[0] == 200
    assert (await alice.get(base)) == (200, {"tags": {"m.favourite": {"order": 0.5}, "u.work": {}}})
    body = await sync(alice)
    tags = [e for e in joined(body, room_id)["account_data"]["events"] if e["type"] == "m.tag"]
    assert tags == [{"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.5}, "u.work": {}}}}]
    assert (await alice.delete(f"{base}/u.work"))[0] == 200
    assert (await alice.get(base)) == (200, {"tags": {"m.favourite": {"order": 0.5}}})
    status, _ = await alice.put(f"{base}/m.lowpriority", {"order": "high"})
    assert status == 400
    other = await make_client().register()
    assert (await other.get(base))[0] == 403
