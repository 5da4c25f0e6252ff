"""`GET /_matrix/federation/v1/hierarchy/{roomId}` as another server (the test) sees it: the
space with its links, the children that server may see (open ones, or restricted to a room
it is in), the IDs of the others, nothing about rooms it may not see; and a local walk
still answers when a linked room's server cannot be asked."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp

from tests.conftest import Client, ServerProcess
from tests.federation.fake_peer import FakePeer


def q(value: str) -> str:
    return quote(value, safe="")


async def create(client: Client, name: str, **body: Any) -> str:
    status, room = await client.post("createRoom", {"name": name, **body})
    assert status == 200, room
    return str(room["room_id"])


async def test_hierarchy_served_to_another_server(
        veche: ServerProcess, peer: FakePeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    space = await create(alice, "S", preset="public_chat", creation_content={"type": "m.space"})
    rooms = {
        "A": await create(alice, "A", preset="public_chat"),
        "B": await create(alice, "B", preset="private_chat"),
        "C": await create(alice, "C", preset="private_chat", initial_state=[{
            "type": "m.room.join_rules", "state_key": "",
            "content": {"join_rule": "restricted",
                        "allow": [{"type": "m.room_membership", "room_id": space}]}}]),
        "elsewhere": f"!nowhere:{peer.name}",
    }
    for name, room_id in rooms.items():
        via = [peer.name] if name == "elsewhere" else [veche.server_name]
        status, body = await alice.put(
            f"rooms/{q(space)}/state/m.space.child/{q(room_id)}",
            {"via": via, **({"suggested": True} if name == "A" else {})})
        assert status == 200, body

    async def ask(room_id: str, suggested_only: bool = False) -> tuple[int, Any]:
        flag = "true" if suggested_only else "false"
        return await peer.request(
            http, veche, "GET", f"/_matrix/federation/v1/hierarchy/{q(room_id)}?suggested_only={flag}")

    status, tree = await ask(space)
    assert status == 200, tree
    assert tree["room"]["room_id"] == space and tree["room"]["room_type"] == "m.space"
    assert {c["state_key"] for c in tree["room"]["children_state"]} == set(rooms.values())
    assert all(isinstance(c["origin_server_ts"], int) for c in tree["room"]["children_state"])
    # A is open; B and C are not open to the peer; the unknown room is left out.
    assert [c["room_id"] for c in tree["children"]] == [rooms["A"]]
    assert tree["children"][0]["name"] == "A" and tree["children"][0]["join_rule"] == "public"
    assert sorted(tree["inaccessible_children"]) == sorted([rooms["B"], rooms["C"]])
    status, tree = await ask(space, suggested_only=True)
    assert [c["state_key"] for c in tree["room"]["children_state"]] == [rooms["A"]]
    assert (await ask(rooms["B"]))[0] == 404
    assert (await ask("!unknown:" + veche.server_name))[0] == 404

    # With a user in the space, the peer may see the room restricted to it.
    status, answer, _ = await peer.join(http, veche, space, peer.user("bob"))
    assert status == 200, answer
    status, tree = await ask(space)
    assert sorted(c["room_id"] for c in tree["children"]) == sorted([rooms["A"], rooms["C"]])
    assert tree["inaccessible_children"] == [rooms["B"]]
    assert (await ask(rooms["C"]))[0] == 200

    # Unsigned: refused.
    async with http.get(f"{veche.base_url}/_matrix/federation/v1/hierarchy/{q(space)}") as r:
        assert r.status == 401

    # alice's own walk: the room on a server that cannot tell about it is left out.
    status, walk = await alice.get(f"/_matrix/client/v1/rooms/{q(space)}/hierarchy")
    assert status == 200, walk
    assert [r["name"] for r in walk["rooms"]] == ["S", "A", "B", "C"]
