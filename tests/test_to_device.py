"""Send-to-device messaging: delivery through /sync, idempotency, acknowledgement, caps."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any
from urllib.parse import quote

from tests.e2e_helpers import login_again
from tests.sync_helpers import events_of, section, sync

_txn = itertools.count()
PASSWORD = "correct horse battery"


async def send(client: Any, messages: dict[str, Any], event_type: str = "m.test",
               txn_id: str | None = None) -> tuple[int, Any]:
    txn_id = txn_id or f"td{next(_txn)}"
    return await client.put(  # type: ignore[no-any-return]
        f"sendToDevice/{quote(event_type)}/{quote(txn_id)}", {"messages": messages})


def events(body: dict[str, Any]) -> list[dict[str, Any]]:
    return events_of(body, "to_device")


async def test_delivery_and_acknowledgement(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    mark = (await sync(bob))["next_batch"]
    status, body = await send(alice, {bob.user_id: {bob.device_id: {"n": 1}}}, "m.room_key_request")
    assert status == 200 and body == {}
    first = await sync(bob, mark)
    assert events(first) == [{"type": "m.room_key_request", "sender": alice.user_id,
                              "content": {"n": 1}}]
    # Syncing again from the old token redelivers: it was not acknowledged.
    assert events(await sync(bob, mark)) == events(first)
    # Syncing from the new token acknowledges it: gone for good.
    second = await sync(bob, first["next_batch"])
    assert events(second) == []
    assert events(await sync(bob, first["next_batch"])) == []
    assert events(await sync(bob)) == []
    # The sender's own devices get nothing.
    assert events(await sync(alice)) == []


async def test_initial_sync_delivers_and_long_poll_wakes(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    await send(alice, {bob.user_id: {bob.device_id: {"n": "early"}}})
    initial = await sync(bob)
    assert [e["content"]["n"] for e in events(initial)] == ["early"]
    waiter = asyncio.ensure_future(sync(bob, initial["next_batch"], timeout="10000"))
    await asyncio.sleep(0.3)
    await send(alice, {bob.user_id: {bob.device_id: {"n": "late"}}})
    body = await asyncio.wait_for(waiter, 5)
    assert [e["content"]["n"] for e in events(body)] == ["late"]


async def test_idempotent_per_transaction_id(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    mark = (await sync(bob))["next_batch"]
    for _ in range(3):
        assert (await send(alice, {bob.user_id: {bob.device_id: {"n": 1}}}, txn_id="same"))[0] == 200
    assert len(events(await sync(bob, mark))) == 1
    # The same transaction ID from another device of the sender is another request.
    alice2 = await login_again(alice, make_client)
    await send(alice2, {bob.user_id: {bob.device_id: {"n": 2}}}, txn_id="same")
    assert [e["content"]["n"] for e in events(await sync(bob, mark))] == [1, 2]


async def test_star_means_every_device(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    bob2 = await login_again(bob, make_client)
    marks = [(await sync(c))["next_batch"] for c in (bob, bob2)]
    await send(alice, {bob.user_id: {"*": {"to": "all"}}, "@unknown:nowhere.example": {"*": {}}})
    await send(alice, {bob.user_id: {bob2.device_id: {"to": "bob2"}, "NOSUCHDEVICE": {"x": 1}}})
    got1 = [e["content"] for e in events(await sync(bob, marks[0]))]
    got2 = [e["content"] for e in events(await sync(bob2, marks[1]))]
    assert got1 == [{"to": "all"}]
    assert got2 == [{"to": "all"}, {"to": "bob2"}]


async def test_cap_and_continue(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    mark = (await sync(bob))["next_batch"]
    for batch in range(5):  # 10 messages, to the device and to "*" ...
        await send(alice, {bob.user_id: {bob.device_id: {"batch": batch}}})
        await send(alice, {bob.user_id: {"*": {"batch": batch, "star": True}}})
    for i in range(240):  # ... and 240 more: 250 waiting, more than two syncs' worth
        await send(alice, {bob.user_id: {bob.device_id: {"i": i}}})
    received: list[dict[str, Any]] = []
    tokens = [mark]
    for _ in range(10):
        body = await sync(bob, tokens[-1])
        got = events(body)
        assert len(got) <= 100
        received.extend(e["content"] for e in got)
        if not got:
            break
        # A repeated sync from the same token gives the same batch (not acknowledged yet).
        assert events(await sync(bob, tokens[-1])) == got
        assert body["next_batch"] not in tokens
        tokens.append(body["next_batch"])
    expected = [m for b in range(5) for m in ({"batch": b}, {"batch": b, "star": True})]
    expected += [{"i": i} for i in range(240)]
    assert received == expected  # all 250, in order, none twice, none lost


async def test_cap_keeps_room_events(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    _, room = await alice.post("createRoom", {"invite": [bob.user_id]})
    await bob.post(f"join/{quote(room['room_id'])}", {})
    mark = (await sync(bob))["next_batch"]
    for i in range(150):
        await send(alice, {bob.user_id: {bob.device_id: {"i": i}}})
    await alice.put(f"rooms/{quote(room['room_id'])}/send/m.room.message/cap1",
                    {"msgtype": "m.text", "body": "between"})
    first = await sync(bob, mark)
    assert len(events(first)) == 100
    timeline = section(first, "rooms", "join")[room["room_id"]]["timeline"]["events"]
    assert [e["content"].get("body") for e in timeline] == ["between"]
    second = await sync(bob, first["next_batch"])
    assert [e["content"]["i"] for e in events(second)] == list(range(100, 150))
    assert room["room_id"] not in section(second, "rooms", "join")


async def test_deleted_device_inbox_is_dropped(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    bob2 = await login_again(bob, make_client)
    await send(alice, {bob.user_id: {bob2.device_id: {"n": 1}}})
    assert (await bob2.post("logout", {}))[0] == 200
    # Logging in again with the same device ID starts from an empty inbox.
    status, body = await make_client().post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": bob.user_id},
        "password": PASSWORD, "device_id": bob2.device_id}, token=False)
    assert status == 200
    again = make_client()
    again.access_token = body["access_token"]
    assert events(await sync(again)) == []


async def test_bad_requests(make_client: Any) -> None:
    alice = await make_client().register()
    status, body = await alice.put("sendToDevice/m.test/t1", {})
    assert status == 400 and body["errcode"] == "M_MISSING_PARAM"
    status, body = await alice.put("sendToDevice/m.test/t2", {"messages": {"notauser": {}}})
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    status, body = await alice.put("sendToDevice/m.test/t3", {"messages": {alice.user_id: {"D": 1}}})
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    status, body = await make_client().put("sendToDevice/m.test/t4", {"messages": {}}, token=False)
    assert status == 401


async def test_stream_positions_survive_restart(homeserver: Any, make_client: Any) -> None:
    """Read messages are deleted, yet a restart must not hand out their positions again: a
    client holding a token past them would miss what is sent next."""
    alice = await make_client().register()
    bob = await make_client().register()
    _, room = await alice.post("createRoom", {"invite": [bob.user_id]})
    room_id = room["room_id"]
    await bob.post(f"join/{quote(room_id)}", {})
    mark = (await sync(bob))["next_batch"]
    for i in range(3):
        await send(alice, {bob.user_id: {bob.device_id: {"i": i}}})
    first = await sync(bob, mark)
    assert len(events(first)) == 3
    acked = await sync(bob, first["next_batch"])  # acknowledges (deletes) them
    assert events(acked) == []
    await homeserver.restart()
    status, sent = await alice.put(f"rooms/{quote(room_id)}/send/m.room.message/after",
                                   {"msgtype": "m.text", "body": "after restart"})
    assert status == 200, sent
    await send(alice, {bob.user_id: {bob.device_id: {"i": "after"}}})
    body = await sync(bob, acked["next_batch"])
    timeline = events_of(section(body, "rooms", "join")[room_id], "timeline")
    assert [e["content"].get("body") for e in timeline] == ["after restart"]
    assert [e["content"]["i"] for e in events(body)] == ["after"]
