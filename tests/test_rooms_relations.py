"""Relations, threads and bundled aggregations."""

from __future__ import annotations

import secrets
from typing import Any

from tests.test_rooms import assert_error, create_room, q, send_text

V1 = "/_matrix/client/v1"


async def send(client: Any, room_id: str, content: dict[str, Any],
               event_type: str = "m.room.message") -> str:
    status, body = await client.put(
        f"rooms/{q(room_id)}/send/{event_type}/{secrets.token_hex(6)}", content
    )
    assert status == 200, body
    return str(body["event_id"])


def thread_reply(root: str, text: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": text,
            "m.relates_to": {"rel_type": "m.thread", "event_id": root}}


def edit(target: str, text: str) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": f"* {text}",
            "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": target}}


async def test_relations_and_aggregations(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await create_room(alice, preset="public_chat")
    assert (await bob.post(f"join/{q(room_id)}", {}))[0] == 200
    root = await send_text(alice, room_id, "root")
    replies = [await send(bob, room_id, thread_reply(root, f"r{i}")) for i in range(3)]
    edit1 = await send(alice, room_id, edit(root, "root v2"))
    edit2 = await send(alice, room_id, edit(root, "root v3"))
    await send(bob, room_id, edit(root, "not allowed: bob is not the sender"))
    reaction = await send(bob, room_id, {"m.relates_to": {
        "rel_type": "m.annotation", "event_id": root, "key": "👍"}}, "m.reaction")
    ref = await send(bob, room_id, {"msgtype": "m.text", "body": "see",
                                    "m.relates_to": {"rel_type": "m.reference", "event_id": root}})

    status, ev = await alice.get(f"rooms/{q(room_id)}/event/{q(root)}")
    assert status == 200, ev
    rel = ev["unsigned"]["m.relations"]
    assert rel["m.thread"]["count"] == 3
    assert rel["m.thread"]["latest_event"]["event_id"] == replies[-1]
    assert rel["m.thread"]["current_user_participated"] is True  # alice sent the root
    assert rel["m.replace"]["event_id"] == edit2
    assert rel["m.reference"]["chunk"] == [{"event_id": ref}]
    status, ev = await make_bob_view(bob, room_id, root)
    assert ev["unsigned"]["m.relations"]["m.thread"]["current_user_participated"] is True

    # /relations: everything, by type, by event type, paginated.
    path = f"{V1}/rooms/{q(room_id)}/relations/{q(root)}"
    status, body = await alice.get(path, params={"limit": "50"})
    assert status == 200, body
    ids = [e["event_id"] for e in body["chunk"]]
    assert ids[0] == ref and root not in ids and reaction in ids and edit1 in ids
    assert len(ids) == 8
    status, body = await alice.get(f"{path}/m.thread")
    assert [e["event_id"] for e in body["chunk"]] == list(reversed(replies))
    status, body = await alice.get(f"{path}/m.annotation/m.reaction")
    assert [e["event_id"] for e in body["chunk"]] == [reaction]
    status, page1 = await alice.get(f"{path}/m.thread", params={"limit": "2", "dir": "f"})
    assert [e["event_id"] for e in page1["chunk"]] == replies[:2]
    status, page2 = await alice.get(f"{path}/m.thread",
                                    params={"limit": "2", "dir": "f", "from": page1["next_batch"]})
    assert [e["event_id"] for e in page2["chunk"]] == replies[2:]
    assert "next_batch" not in page2
    status, body = await alice.get(path, params={"recurse": "true"})
    assert status == 200 and body["recursion_depth"] >= 1

    # Redacting an edit and a thread reply removes them from the aggregations.
    assert (await alice.put(f"rooms/{q(room_id)}/redact/{q(edit2)}/x1", {}))[0] == 200
    assert (await bob.put(f"rooms/{q(room_id)}/redact/{q(replies[-1])}/x2", {}))[0] == 200
    status, ev = await alice.get(f"rooms/{q(room_id)}/event/{q(root)}")
    rel = ev["unsigned"]["m.relations"]
    assert rel["m.replace"]["event_id"] == edit1
    assert rel["m.thread"]["count"] == 2
    assert rel["m.thread"]["latest_event"]["event_id"] == replies[1]
    status, body = await alice.get(f"{path}/m.thread")
    assert [e["event_id"] for e in body["chunk"]] == list(reversed(replies[:2]))

    # Aggregations are bundled in /messages and /context too.
    status, body = await alice.get(f"rooms/{q(room_id)}/messages", params={"limit": "50"})
    root_ev = next(e for e in body["chunk"] if e["event_id"] == root)
    assert root_ev["unsigned"]["m.relations"]["m.thread"]["count"] == 2
    status, body = await alice.get(f"rooms/{q(room_id)}/context/{q(root)}")
    assert body["event"]["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit1

    status, body = await alice.get(f"{V1}/rooms/{q(room_id)}/relations/{q('$missing')}")
    assert_error(status, body, 404, "M_NOT_FOUND")
    stranger = await make_client().register()
    status, body = await stranger.get(path)
    assert status in (403, 404), body


async def make_bob_view(bob: Any, room_id: str, event_id: str) -> tuple[int, Any]:
    return await bob.get(f"rooms/{q(room_id)}/event/{q(event_id)}")  # type: ignore[no-any-return]


async def test_threads_list(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await create_room(alice, preset="public_chat")
    assert (await bob.post(f"join/{q(room_id)}", {}))[0] == 200
    root_a = await send_text(alice, room_id, "thread A")
    root_b = await send_text(bob, room_id, "thread B")
    root_c = await send_text(bob, room_id, "thread C")
    await send(bob, room_id, thread_reply(root_a, "a1"))
    await send(bob, room_id, thread_reply(root_b, "b1"))
    await send(bob, room_id, thread_reply(root_c, "c1"))
    await send(alice, room_id, thread_reply(root_b, "b2"))
    path = f"{V1}/rooms/{q(room_id)}/threads"
    status, body = await alice.get(path)
    assert status == 200, body
    assert [e["event_id"] for e in body["chunk"]] == [root_b, root_c, root_a]
    assert body["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"] == 2
    status, body = await alice.get(path, params={"include": "participated"})
    assert [e["event_id"] for e in body["chunk"]] == [root_b, root_a]
    status, page1 = await alice.get(path, params={"limit": "2"})
    assert [e["event_id"] for e in page1["chunk"]] == [root_b, root_c]
    status, page2 = await alice.get(path, params={"limit": "2", "from": page1["next_batch"]})
    assert [e["event_id"] for e in page2["chunk"]] == [root_a]
    assert "next_batch" not in page2
    status, body = await alice.get(path, params={"include": "some"})
    assert_error(status, body, 400, "M_INVALID_PARAM")
