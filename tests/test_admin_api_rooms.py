"""Synapse's room admin API: list (paging, order, search), details, members, state, block,
and delete: the documented fields, 403 M_FORBIDDEN for anyone but a server admin, and what
deleting does: every local member is out (their /sync shows the leave), nobody can read the
room any more, its aliases are gone, and with `block` nobody can join again."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import quote

from tests.admin_helpers import SYNAPSE_ADMIN, assert_admin_only, make_admin
from tests.sync_helpers import send, sync

V1, V2 = SYNAPSE_ADMIN + "/v1", SYNAPSE_ADMIN + "/v2"
ROOM_FIELDS = {"room_id", "name", "canonical_alias", "joined_members", "joined_local_members",
               "version", "creator", "encryption", "federatable", "public", "join_rules",
               "guest_access", "history_visibility", "state_events", "room_type"}
DETAIL_FIELDS = ROOM_FIELDS | {"topic", "avatar", "joined_local_devices", "forgotten",
                               "tombstoned", "replacement_room"}


async def test_non_admins_are_refused(homeserver: Any, make_client: Any) -> None:
    user = await make_client().register()
    room = quote((await user.post("createRoom", {}))[1]["room_id"])
    for method, path, body in (
        ("GET", f"{V1}/rooms", None), ("GET", f"{V1}/rooms/{room}", None),
        ("GET", f"{V1}/rooms/{room}/members", None), ("GET", f"{V1}/rooms/{room}/state", None),
        ("GET", f"{V1}/rooms/{room}/block", None),
        ("PUT", f"{V1}/rooms/{room}/block", {"block": True}),
        ("DELETE", f"{V1}/rooms/{room}", {}), ("DELETE", f"{V2}/rooms/{room}", {}),
        ("GET", f"{V2}/rooms/{room}/delete_status", None),
    ):
        await assert_admin_only(user, method, path, body)
    # The room the refused DELETE named is still there.
    assert (await user.get(f"rooms/{room}/messages", params={"dir": "b"}))[0] == 200


async def test_list_search_and_order(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice = await make_client().register()
    bob = await make_client().register()
    tag = f"lr{secrets.token_hex(3)}"
    rooms = []
    for i, extra in enumerate(({}, {"invite": [bob.user_id]}, {"preset": "public_chat",
                                                                 "visibility": "public"})):
        status, body = await alice.post("createRoom", {"name": f"{tag} room {i}", **extra})
        rooms.append(body["room_id"])
    assert (await bob.post(f"join/{quote(rooms[1])}", {}))[0] == 200

    status, page = await admin.get(f"{V1}/rooms", params={"search_term": tag})
    assert status == 200, page
    assert page["total_rooms"] == 3 and page["offset"] == 0
    assert [r["room_id"] for r in page["rooms"]] == rooms  # by name
    room = page["rooms"][2]
    assert set(room) >= ROOM_FIELDS
    assert (room["name"], room["creator"], room["public"], room["join_rules"],
            room["joined_members"], room["joined_local_members"]) == (
        f"{tag} room 2", alice.user_id, True, "public", 1, 1)
    assert room["history_visibility"] == "shared" and room["state_events"] >= 5
    assert (room["guest_access"], page["rooms"][0]["guest_access"]) == ("forbidden", "can_join")
    assert room["federatable"] is True and room["encryption"] is None

    status, by_size = await admin.get(f"{V1}/rooms", params={
        "search_term": tag, "order_by": "joined_members"})
    assert by_size["rooms"][0]["room_id"] == rooms[1]  # the largest first
    status, rev = await admin.get(f"{V1}/rooms", params={"search_term": tag, "dir": "b"})
    assert [r["room_id"] for r in rev["rooms"]] == rooms[::-1]
    status, p1 = await admin.get(f"{V1}/rooms", params={"search_term": tag, "limit": "2"})
    assert (len(p1["rooms"]), p1["next_batch"]) == (2, 2) and "prev_batch" not in p1
    status, p2 = await admin.get(f"{V1}/rooms", params={
        "search_term": tag, "limit": "2", "from": str(p1["next_batch"])})
    assert [r["room_id"] for r in p2["rooms"]] == rooms[2:] and "next_batch" not in p2
    assert p2["prev_batch"] == 0
    status, by_id = await admin.get(f"{V1}/rooms", params={"search_term": rooms[0]})
    assert [r["room_id"] for r in by_id["rooms"]] == [rooms[0]]
    status, public = await admin.get(f"{V1}/rooms", params={"search_term": tag,
                                                             "public_rooms": "true"})
    assert [r["room_id"] for r in public["rooms"]] == rooms[2:]
    status, private = await admin.get(f"{V1}/rooms", params={"search_term": tag,
                                                              "public_rooms": "false"})
    assert [r["room_id"] for r in private["rooms"]] == rooms[:2]
    await alice.post(f"rooms/{quote(rooms[0])}/leave", {})
    status, empty = await admin.get(f"{V1}/rooms", params={"search_term": tag,
                                                            "empty_rooms": "true"})
    assert [r["room_id"] for r in empty["rooms"]] == rooms[:1]
    status, busy = await admin.get(f"{V1}/rooms", params={"search_term": tag,
                                                           "empty_rooms": "false"})
    assert [r["room_id"] for r in busy["rooms"]] == rooms[1:]
    for params in ({"order_by": "colour"}, {"dir": "sideways"}, {"limit": "-2"}):
        assert (await admin.get(f"{V1}/rooms", params=params))[0] == 400


async def test_details_members_state(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice = await make_client().register()
    bob = await make_client().register()
    room = (await alice.post("createRoom", {"name": "Details", "topic": "All of them",
                                            "invite": [bob.user_id]}))[1]["room_id"]
    await bob.post(f"join/{quote(room)}", {})
    r = quote(room)
    status, details = await admin.get(f"{V1}/rooms/{r}")
    assert status == 200, details
    assert set(details) >= DETAIL_FIELDS
    assert (details["name"], details["topic"], details["joined_members"],
            details["joined_local_devices"], details["forgotten"], details["tombstoned"]) == (
        "Details", "All of them", 2, 2, False, False)
    status, members = await admin.get(f"{V1}/rooms/{r}/members")
    assert members == {"members": sorted([alice.user_id, bob.user_id]), "total": 2}
    status, state = await admin.get(f"{V1}/rooms/{r}/state")
    types = {e["type"] for e in state["state"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.name", "m.room.member"} <= types
    assert all("event_id" in e and "content" in e for e in state["state"])
    status, only = await admin.get(f"{V1}/rooms/{r}/state", params={"type": "m.room.member"})
    assert sorted(e["state_key"] for e in only["state"]) == sorted([alice.user_id, bob.user_id])
    unknown = quote(f"!nothere:{homeserver.server_name}")
    for path in (f"{V1}/rooms/{unknown}", f"{V1}/rooms/{unknown}/members"):
        assert (await admin.get(path))[0] == 404


async def test_block_room(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice = await make_client().register()
    bob = await make_client().register()
    room = (await alice.post("createRoom", {"preset": "public_chat"}))[1]["room_id"]
    r = quote(room)
    assert await admin.get(f"{V1}/rooms/{r}/block") == (200, {"block": False})
    assert await admin.put(f"{V1}/rooms/{r}/block", {"block": True}) == (200, {"block": True})
    assert await admin.get(f"{V1}/rooms/{r}/block") == (
        200, {"block": True, "user_id": admin.user_id})
    status, out = await bob.post(f"join/{r}", {})
    assert (status, out["errcode"]) == (403, "M_FORBIDDEN")
    status, out = await alice.post(f"rooms/{r}/invite", {"user_id": bob.user_id})
    assert (status, out["errcode"]) == (403, "M_FORBIDDEN")
    assert (await admin.put(f"{V1}/rooms/{r}/block", {"block": False}))[0] == 200
    assert (await bob.post(f"join/{r}", {}))[0] == 200
    assert (await admin.put(f"{V1}/rooms/{r}/block", {"block": "yes"}))[0] == 400


async def _deleted_for(member: Any, room: str, since: str) -> None:
    """The member's /sync shows the room left, and the room's history is closed."""
    left: dict[str, Any] = {}
    for _ in range(20):
        body = await sync(member, since, timeout="2000")
        left = body.get("rooms", {}).get("leave", {})
        if room in left:
            break
        since = body["next_batch"]
    assert room in left, "the deleted room never showed as left"
    status, out = await member.get(f"rooms/{quote(room)}/messages", params={"dir": "b"})
    assert (status, out["errcode"]) == (403, "M_FORBIDDEN")
    status, out = await member.get(f"rooms/{quote(room)}/state")
    assert status == 403


async def test_delete_room_v1(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice = await make_client().register()
    bob = await make_client().register()
    carol = await make_client().register()
    alias = f"#del{secrets.token_hex(3)}:{homeserver.server_name}"
    room = (await alice.post("createRoom", {
        "preset": "public_chat", "visibility": "public",
        "room_alias_name": alias[1:].split(":")[0], "invite": [carol.user_id]}))[1]["room_id"]
    await bob.post(f"join/{quote(room)}", {})
    said = await send(alice, room, "soon gone")
    assert (await bob.post(f"rooms/{quote(room)}/report/{quote(said)}", {"reason": "bad"}))[0] == 200
    report = (await admin.get(f"{V1}/event_reports", params={"room_id": room}))[1][
        "event_reports"][0]["id"]
    since = {c.user_id: (await sync(c))["next_batch"] for c in (alice, bob)}

    status, out = await admin.delete(f"{V1}/rooms/{quote(room)}", {"block": True})
    assert status == 200, out
    assert sorted(out["kicked_users"]) == sorted([alice.user_id, bob.user_id, carol.user_id])
    assert (out["failed_to_kick_users"], out["local_aliases"], out["new_room_id"]) == (
        [], [alias], None)
    for member in (alice, bob):
        await _deleted_for(member, room, since[member.user_id])
    # Nobody can come back, the alias and the directory entry are gone, and the admin API
    # no longer knows the room.
    status, out = await bob.post(f"join/{quote(room)}", {})
    assert (status, out["errcode"]) == (403, "M_FORBIDDEN")
    assert (await carol.post(f"join/{quote(room)}", {}))[0] == 403
    assert (await bob.get(f"directory/room/{quote(alias)}"))[0] == 404
    public = (await bob.get("publicRooms"))[1]["chunk"]
    assert room not in [r["room_id"] for r in public]
    assert (await admin.get(f"{V1}/rooms/{quote(room)}"))[0] == 404
    listed = (await admin.get(f"{V1}/rooms", params={"search_term": room}))[1]
    assert listed["total_rooms"] == 0
    assert await admin.get(f"{V1}/rooms/{quote(room)}/block") == (
        200, {"block": True, "user_id": admin.user_id})
    # Purged: what was said is gone from the database too (the report keeps only the
    # redacted skeleton of the event).
    status, detail = await admin.get(f"{V1}/event_reports/{report}")
    assert status == 200 and detail["event_json"]["event_id"] == said
    assert detail["event_json"]["content"] == {}
    # Former members can still forget it, so their clients stop showing it.
    assert (await bob.post(f"rooms/{quote(room)}/forget", {}))[0] == 200


async def test_delete_room_v2_with_status(homeserver: Any, make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice = await make_client().register()
    room = (await alice.post("createRoom", {"preset": "public_chat"}))[1]["room_id"]
    since = (await sync(alice))["next_batch"]
    r = quote(room)
    status, out = await admin.delete(f"{V2}/rooms/{r}", {"block": False, "purge": True})
    assert status == 200 and isinstance(out["delete_id"], str)
    for _ in range(100):
        status, task = await admin.get(f"{V2}/rooms/delete_status/{out['delete_id']}")
        if task["status"] != "active":
            break
        await asyncio.sleep(0.1)
    assert status == 200
    assert (task["status"], task["room_id"], task["delete_id"]) == ("complete", room,
                                                                    out["delete_id"])
    assert task["shutdown_room"] == {"kicked_users": [alice.user_id], "failed_to_kick_users": [],
                                     "local_aliases": [], "new_room_id": None}
    status, by_room = await admin.get(f"{V2}/rooms/{r}/delete_status")
    assert [t["delete_id"] for t in by_room["results"]] == [out["delete_id"]]
    await _deleted_for(alice, room, since)
    # Not blocked, but purged: still nobody gets back in.
    assert (await alice.post(f"join/{r}", {}))[0] == 403
    assert (await admin.get(f"{V2}/rooms/delete_status/nope"))[0] == 404
    assert (await admin.delete(f"{V2}/rooms/{r}", {}))[0] == 404  # already gone
    status, out = await admin.delete(f"{V2}/rooms/{r}")
    assert status == 400  # the body must be at least {}


async def test_delete_without_purge_keeps_history_for_members(homeserver: Any,
                                                              make_client: Any) -> None:
    admin = await make_admin(homeserver, make_client)
    alice = await make_client().register()
    room = (await alice.post("createRoom", {"preset": "public_chat"}))[1]["room_id"]
    await send(alice, room, "kept")
    status, out = await admin.delete(f"{V1}/rooms/{quote(room)}", {"purge": False,
                                                                    "block": True})
    assert status == 200 and out["kicked_users"] == [alice.user_id]
    status, msgs = await alice.get(f"rooms/{quote(room)}/messages", params={"dir": "b"})
    assert status == 200
    assert "kept" in [e["content"].get("body") for e in msgs["chunk"]]
    assert (await alice.post(f"join/{quote(room)}", {}))[0] == 403
    assert (await admin.delete(f"{V1}/rooms/{quote(room)}",
                               {"new_room_user_id": admin.user_id}))[0] == 400
    assert (await admin.delete(f"{V1}/rooms/{quote(room)}", {"purge": "yes"}))[0] == 400
