"""Room aliases, the published room directory and room upgrades."""

from __future__ import annotations

import secrets
from typing import Any

from tests.test_rooms import assert_error, create_room, q, send_text, state_of


def server_of(client: Any) -> str:
    return str(client.user_id.split(":", 1)[1])


async def test_alias_on_create_and_join_by_alias(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    name = f"pub{secrets.token_hex(4)}"
    alias = f"#{name}:{server_of(alice)}"
    room_id = await create_room(alice, preset="public_chat", room_alias_name=name)
    state = await state_of(alice, room_id)
    assert state[("m.room.canonical_alias", "")]["content"]["alias"] == alias
    status, body = await alice.post("createRoom", {"room_alias_name": name})
    assert_error(status, body, 400, "M_ROOM_IN_USE")
    status, body = await bob.get(f"directory/room/{q(alias)}")
    assert status == 200 and body["room_id"] == room_id and body["servers"], body
    status, body = await bob.post(f"join/{q(alias)}", {})
    assert status == 200 and body["room_id"] == room_id, body
    status, body = await bob.post(f"join/{q('#missing:' + server_of(alice))}", {})
    assert_error(status, body, 404, "M_NOT_FOUND")
    status, body = await bob.post(f"join/{q('nonsense')}", {})
    assert status == 400 and body["errcode"].startswith("M_"), body


async def test_alias_crud(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await create_room(alice, preset="public_chat")
    alias = f"#a{secrets.token_hex(4)}:{server_of(alice)}"
    other = f"#b{secrets.token_hex(4)}:{server_of(alice)}"
    status, body = await alice.put(f"directory/room/{q(alias)}", {"room_id": room_id})
    assert status == 200, body
    status, body = await alice.put(f"directory/room/{q(alias)}", {"room_id": room_id})
    assert status == 409 and body["errcode"].startswith("M_"), body
    status, body = await alice.get(f"rooms/{q(room_id)}/aliases")
    assert status == 200 and body["aliases"] == [alias], body
    status, body = await alice.put(f"directory/room/{q('#x:elsewhere.example')}", {"room_id": room_id})
    assert status == 400, body
    status, body = await alice.put(f"directory/room/{q('bad alias')}", {"room_id": room_id})
    assert_error(status, body, 400, "M_INVALID_PARAM")
    status, body = await alice.put(f"directory/room/{q(other)}", {"room_id": 5})
    assert_error(status, body, 400, "M_BAD_JSON")
    # bob (not in the room) may not add or list aliases, nor delete alice's alias.
    status, body = await bob.put(f"directory/room/{q(other)}", {"room_id": room_id})
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await bob.get(f"rooms/{q(room_id)}/aliases")
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await bob.delete(f"directory/room/{q(alias)}")
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await alice.delete(f"directory/room/{q(alias)}")
    assert status == 200, body
    status, body = await alice.get(f"directory/room/{q(alias)}")
    assert_error(status, body, 404, "M_NOT_FOUND")
    status, body = await alice.delete(f"directory/room/{q(alias)}")
    assert_error(status, body, 404, "M_NOT_FOUND")


async def test_public_rooms(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    marker = secrets.token_hex(6)
    public_ids = [
        await create_room(alice, preset="public_chat", visibility="public",
                          name=f"Room {marker} {i}", topic="searchable")
        for i in range(3)
    ]
    private_id = await create_room(alice, name=f"Room {marker} private")
    status, body = await bob.post("publicRooms", {"filter": {"generic_search_term": marker}})
    assert status == 200, body
    found = {r["room_id"]: r for r in body["chunk"]}
    assert set(found) == set(public_ids)
    entry = found[public_ids[0]]
    assert entry["num_joined_members"] == 1 and entry["world_readable"] is False
    assert entry["guest_can_join"] is False and entry["join_rule"] == "public"
    assert entry["topic"] == "searchable"
    # Pagination.
    status, page1 = await bob.post("publicRooms", {"limit": 2, "filter": {"generic_search_term": marker}})
    assert len(page1["chunk"]) == 2 and "next_batch" in page1
    status, page2 = await bob.post("publicRooms", {"limit": 2, "since": page1["next_batch"],
                                                  "filter": {"generic_search_term": marker}})
    assert len(page2["chunk"]) == 1
    assert {r["room_id"] for r in page1["chunk"] + page2["chunk"]} == set(public_ids)
    status, body = await bob.get("publicRooms", token=False, params={"limit": "500"})
    assert status == 200 and public_ids[0] in {r["room_id"] for r in body["chunk"]}
    # Directory visibility get/put.
    status, body = await bob.get(f"directory/list/room/{q(private_id)}", token=False)
    assert status == 200 and body == {"visibility": "private"}
    status, body = await bob.put(f"directory/list/room/{q(private_id)}", {"visibility": "public"})
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await alice.put(f"directory/list/room/{q(private_id)}", {"visibility": "public"})
    assert status == 200, body
    status, body = await bob.get(f"directory/list/room/{q(private_id)}")
    assert body == {"visibility": "public"}
    status, body = await bob.post("publicRooms", {"filter": {"generic_search_term": "private"}})
    assert private_id in {r["room_id"] for r in body["chunk"]}
    status, body = await alice.put(f"directory/list/room/{q(private_id)}", {"visibility": "secret"})
    assert_error(status, body, 400, "M_INVALID_PARAM")
    status, body = await bob.get(f"directory/list/room/{q('!nope:localhost')}")
    assert_error(status, body, 404, "M_NOT_FOUND")
    status, body = await bob.post("publicRooms", {"limit": "ten"})
    assert_error(status, body, 400, "M_BAD_JSON")


async def test_room_upgrade(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    name = f"up{secrets.token_hex(4)}"
    room_id = await create_room(alice, preset="public_chat", room_version="10", name="Old",
                                topic="Topic", room_alias_name=name, visibility="public")
    assert (await bob.post(f"join/{q(room_id)}", {}))[0] == 200
    status, body = await bob.post(f"rooms/{q(room_id)}/upgrade", {"new_version": "12"})
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await alice.post(f"rooms/{q(room_id)}/upgrade", {"new_version": "999"})
    assert_error(status, body, 400, "M_UNSUPPORTED_ROOM_VERSION")
    status, body = await alice.post(f"rooms/{q(room_id)}/upgrade", {})
    assert status == 400 and body["errcode"] in ("M_MISSING_PARAM", "M_BAD_JSON"), body
    status, body = await alice.post(f"rooms/{q(room_id)}/upgrade", {"new_version": "12"})
    assert status == 200, body
    new_room = body["replacement_room"]
    assert ":" not in new_room
    old_state = await state_of(alice, room_id)
    assert old_state[("m.room.tombstone", "")]["content"]["replacement_room"] == new_room
    old_pl = old_state[("m.room.power_levels", "")]["content"]
    assert old_pl["events_default"] >= 50 and old_pl["invite"] >= 50
    status, body = await bob.put(f"rooms/{q(room_id)}/send/m.room.message/x", {"body": "late"})
    assert_error(status, body, 403, "M_FORBIDDEN")
    new_state = await state_of(alice, new_room)
    create = new_state[("m.room.create", "")]["content"]
    assert create["room_version"] == "12" and create["predecessor"]["room_id"] == room_id
    assert new_state[("m.room.name", "")]["content"]["name"] == "Old"
    assert new_state[("m.room.topic", "")]["content"]["topic"] == "Topic"
    assert new_state[("m.room.join_rules", "")]["content"]["join_rule"] == "public"
    assert alice.user_id not in new_state[("m.room.power_levels", "")]["content"]["users"]
    alias = f"#{name}:{server_of(alice)}"
    assert new_state[("m.room.canonical_alias", "")]["content"]["alias"] == alias
    status, body = await bob.get(f"directory/room/{q(alias)}")
    assert body["room_id"] == new_room
    status, body = await bob.get(f"directory/list/room/{q(new_room)}")
    assert body == {"visibility": "public"}
    # bob follows the tombstone.
    status, body = await bob.post(f"join/{q(new_room)}", {})
    assert status == 200, body
    await send_text(bob, new_room, "in the new room")


async def test_room_upgrade_keeps_power_in_older_version(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await create_room(alice, room_version="12")
    last = await send_text(alice, room_id, "last words")
    status, body = await alice.post(f"rooms/{q(room_id)}/upgrade", {"new_version": "11"})
    assert status == 200, body
    new_room = body["replacement_room"]
    state = await state_of(alice, new_room)
    assert state[("m.room.power_levels", "")]["content"]["users"][alice.user_id] == 100
    # Before v12 the predecessor names the old room's last event.
    predecessor = state[("m.room.create", "")]["content"]["predecessor"]
    assert predecessor == {"room_id": room_id, "event_id": last}
    status, body = await alice.put(f"rooms/{q(new_room)}/state/m.room.name", {"name": "still admin"})
    assert status == 200, body
