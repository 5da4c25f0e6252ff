"""Spaces: /hierarchy walks m.space.child links depth first in the spec's order, shows only
rooms the user may see, pages with next_batch; /room_summary answers for open rooms, even
without a token, and never reveals a closed one."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.sync_helpers import set_state


async def create(client: Any, name: str, **body: Any) -> str:
    status, out = await client.post("createRoom", {"name": name, **body})
    assert status == 200, out
    return str(out["room_id"])


async def hierarchy(client: Any, room_id: str, **params: Any) -> tuple[int, Any]:
    return await client.get(f"/_matrix/client/v1/rooms/{quote(room_id)}/hierarchy",
                            params={k: str(v).lower() for k, v in params.items()})


def names(body: dict[str, Any]) -> list[str]:
    return [r.get("name") for r in body["rooms"]]


async def space_tree(make_client: Any) -> tuple[Any, Any, dict[str, str]]:
    alice = await make_client().register()
    bob = await make_client().register()
    server = alice.user_id.split(":", 1)[1]
    space_type = {"creation_content": {"type": "m.space"}}
    ids = {"S": await create(alice, "S", preset="public_chat", **space_type)}
    ids["A"] = await create(alice, "A", preset="public_chat")
    ids["B"] = await create(alice, "B", preset="private_chat")
    ids["C"] = await create(alice, "C", preset="private_chat", initial_state=[{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": ids["S"]}]}}])
    ids["S2"] = await create(alice, "S2", preset="public_chat", **space_type)
    ids["D"] = await create(alice, "D", preset="public_chat")
    ids["E"] = await create(alice, "E", preset="public_chat")
    link = {"via": [server]}
    for child, extra in (("C", {"order": "a", "suggested": True}), ("A", {"order": "b"}),
                         ("B", {}), ("S2", {}), ("E", {})):
        await set_state(alice, ids["S"], "m.space.child", {**link, **extra}, ids[child])
    await set_state(alice, ids["S2"], "m.space.child", link, ids["D"])
    # A link without `via` is a removed child.
    await set_state(alice, ids["S"], "m.space.child", {}, ids["E"])
    assert (await bob.post(f"join/{quote(ids['S'])}", {}))[0] == 200
    return alice, bob, ids


async def test_hierarchy_order_access_depth_and_pages(make_client: Any) -> None:
    alice, bob, ids = await space_tree(make_client)
    status, body = await hierarchy(bob, ids["S"])
    assert status == 200, body
    # B is invite-only: bob may not see it. C is restricted to members of S, which bob is.
    assert names(body) == ["S", "C", "A", "S2", "D"]
    assert "next_batch" not in body
    top = body["rooms"][0]
    assert top["room_type"] == "m.space" and top["num_joined_members"] == 2
    assert [c["state_key"] for c in top["children_state"]] == [ids[n] for n in ("C", "A", "B", "S2")]
    assert all("event_id" not in c and c["origin_server_ts"] > 0 for c in top["children_state"])
    c = body["rooms"][1]
    assert c["join_rule"] == "restricted" and c["allowed_room_ids"] == [ids["S"]]
    assert c["children_state"] == []  # not a space

    assert names((await hierarchy(alice, ids["S"]))[1]) == ["S", "C", "A", "B", "S2", "D"]
    assert names((await hierarchy(bob, ids["S"], max_depth=0))[1]) == ["S"]
    assert names((await hierarchy(bob, ids["S"], max_depth=1))[1]) == ["S", "C", "A", "S2"]
    assert names((await hierarchy(bob, ids["S"], suggested_only=True))[1]) == ["S", "C"]

    pages, token = [], None
    while True:
        status, page = await hierarchy(bob, ids["S"], limit=2, **({"from": token} if token else {}))
        assert status == 200, page
        pages.append(names(page))
        token = page.get("next_batch")
        if token is None:
            break
    assert pages == [["S", "C"], ["A", "S2"], ["D"]]
    _, first = await hierarchy(bob, ids["S"], limit=2)
    status, body = await hierarchy(bob, ids["S"], limit=2, max_depth=1, **{"from": first["next_batch"]})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")

    status, body = await hierarchy(bob, ids["B"])
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    for bad in ({"limit": 0}, {"max_depth": -1}, {"suggested_only": "maybe"}):
        assert (await hierarchy(bob, ids["S"], **bad))[0] == 400, bad


async def test_room_summary(make_client: Any) -> None:
    alice, bob, ids = await space_tree(make_client)
    anon = make_client()

    async def summary(client: Any, room: str, **kw: Any) -> tuple[int, Any]:
        return await client.get(f"/_matrix/client/v1/room_summary/{quote(room)}", **kw)

    status, body = await summary(anon, ids["S"], token=False)
    assert status == 200, body
    assert body["room_type"] == "m.space" and body["name"] == "S" and "membership" not in body
    assert body["room_version"] and body["join_rule"] == "public"
    # Closed rooms are "not found" to those outside them, whoever asks.
    for client, kw in ((anon, {"token": False}), (bob, {})):
        status, body = await summary(client, ids["B"], **kw)
        assert (status, body["errcode"]) == (404, "M_NOT_FOUND")
    assert (await summary(alice, ids["B"]))[1]["membership"] == "join"
    status, body = await summary(bob, ids["C"])
    assert status == 200 and body["membership"] == "leave"
    assert (await summary(bob, "!nosuchroom:nowhere.example"))[0] == 404

    await set_state(alice, ids["A"], "m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"})
    alias = f"spacesummary{bob.user_id[2:8]}"
    assert (await alice.put(f"directory/room/{quote(f'#{alias}:' + alice.user_id.split(':', 1)[1])}",
                            {"room_id": ids["A"]}))[0] == 200
    status, body = await summary(bob, f"#{alias}:{alice.user_id.split(':', 1)[1]}")
    assert status == 200 and body["room_id"] == ids["A"]
    assert body["encryption"] == "m.megolm.v1.aes-sha2"
