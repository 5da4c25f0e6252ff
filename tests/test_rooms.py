"""Rooms: creation (presets, room versions), membership transitions, sending, state,
redaction and bad input."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest

from tests.conftest import Client


def q(value: str) -> str:
    return quote(value, safe="")


async def create_room(client: Client, **body: Any) -> str:
    status, resp = await client.post("createRoom", body)
    assert status == 200, resp
    return str(resp["room_id"])


async def send_text(client: Client, room_id: str, text: str, txn: str | None = None) -> str:
    import secrets

    txn = txn or secrets.token_hex(8)
    status, resp = await client.put(
        f"rooms/{q(room_id)}/send/m.room.message/{txn}", {"msgtype": "m.text", "body": text}
    )
    assert status == 200, resp
    return str(resp["event_id"])


async def state_of(client: Client, room_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    status, events = await client.get(f"rooms/{q(room_id)}/state")
    assert status == 200, events
    return {(e["type"], e["state_key"]): e for e in events}


async def joined(client: Client, room_id: str) -> set[str]:
    status, resp = await client.get(f"rooms/{q(room_id)}/joined_members")
    assert status == 200, resp
    return set(resp["joined"])


def assert_error(status: int, body: Any, expected_status: int, errcode: str) -> None:
    assert status == expected_status, (status, body)
    assert body["errcode"] == errcode, body


# --- creation -----------------------------------------------------------------------------

PRESET_STATE = {
    "private_chat": ("invite", "shared", "can_join"),
    "trusted_private_chat": ("invite", "shared", "can_join"),
    "public_chat": ("public", "shared", "forbidden"),
}


@pytest.mark.parametrize("version", ["10", "11", "12"])
@pytest.mark.parametrize("preset", sorted(PRESET_STATE))
async def test_create_room_preset_and_version(make_client: Any, preset: str, version: str) -> None:
    alice = await make_client().register()
    room_id = await create_room(alice, preset=preset, room_version=version, name="Room",
                                topic="About things")
    if version == "12":
        assert room_id.startswith("!") and ":" not in room_id
    else:
        assert room_id.startswith("!") and room_id.endswith(":" + alice.user_id.split(":", 1)[1])
    state = await state_of(alice, room_id)
    create = state[("m.room.create", "")]
    assert create["sender"] == alice.user_id
    assert create["content"]["room_version"] == version
    if version == "10":
        assert create["content"]["creator"] == alice.user_id
    else:
        assert "creator" not in create["content"]
    assert state[("m.room.member", alice.user_id)]["content"]["membership"] == "join"
    join_rule, history, guest = PRESET_STATE[preset]
    assert state[("m.room.join_rules", "")]["content"]["join_rule"] == join_rule
    assert state[("m.room.history_visibility", "")]["content"]["history_visibility"] == history
    assert state[("m.room.guest_access", "")]["content"]["guest_access"] == guest
    assert state[("m.room.name", "")]["content"]["name"] == "Room"
    assert state[("m.room.topic", "")]["content"]["topic"] == "About things"
    pl = state[("m.room.power_levels", "")]["content"]
    if version == "12":
        assert alice.user_id not in pl["users"]
        assert pl["events"]["m.room.tombstone"] > pl["state_default"]
    else:
        assert pl["users"][alice.user_id] == 100
    # The creator can still do everything a room admin can.
    status, body = await alice.put(f"rooms/{q(room_id)}/state/m.room.power_levels",
                                   {**pl, "ban": 60})
    assert status == 200, body


async def test_create_room_event_order(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await create_room(
        alice, preset="private_chat", name="N", topic="T", invite=[bob.user_id],
        room_alias_name=f"order{alice.user_id[2:8]}",
        initial_state=[{"type": "m.room.encryption", "state_key": "",
                        "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
    )
    status, body = await alice.get(f"rooms/{q(room_id)}/messages", params={"dir": "f", "limit": "50"})
    assert status == 200, body
    types = [e["type"] for e in body["chunk"]]
    assert types == [
        "m.room.create", "m.room.member", "m.room.power_levels", "m.room.canonical_alias",
        "m.room.join_rules", "m.room.history_visibility", "m.room.guest_access",
        "m.room.encryption", "m.room.name", "m.room.topic", "m.room.member",
    ]
    assert body["chunk"][-1]["state_key"] == bob.user_id
    assert body["chunk"][-1]["content"]["membership"] == "invite"


async def test_trusted_private_chat_invitees(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room12 = await create_room(alice, preset="trusted_private_chat", room_version="12",
                               invite=[bob.user_id], is_direct=True)
    state = await state_of(alice, room12)
    assert state[("m.room.create", "")]["content"]["additional_creators"] == [bob.user_id]
    assert bob.user_id not in state[("m.room.power_levels", "")]["content"]["users"]
    invite = state[("m.room.member", bob.user_id)]["content"]
    assert invite["membership"] == "invite" and invite["is_direct"] is True
    room11 = await create_room(alice, preset="trusted_private_chat", room_version="11",
                               invite=[bob.user_id])
    state = await state_of(alice, room11)
    assert state[("m.room.power_levels", "")]["content"]["users"][bob.user_id] == 100
    assert "additional_creators" not in state[("m.room.create", "")]["content"]


async def test_create_room_overrides(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await create_room(
        alice, room_version="11", power_level_content_override={"events_default": 20},
        creation_content={"m.federate": False, "type": "m.space"},
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
    )
    state = await state_of(alice, room_id)
    assert state[("m.room.power_levels", "")]["content"]["events_default"] == 20
    assert state[("m.room.create", "")]["content"]["m.federate"] is False
    assert state[("m.room.create", "")]["content"]["type"] == "m.space"
    assert state[("m.room.join_rules", "")]["content"]["join_rule"] == "knock"


async def test_create_room_member_has_profile(make_client: Any) -> None:
    alice = await make_client().register()
    status, body = await alice.put(f"profile/{q(alice.user_id)}/displayname", {"displayname": "Alice A"})
    room_id = await create_room(alice)
    state = await state_of(alice, room_id)
    if status == 200:
        assert state[("m.room.member", alice.user_id)]["content"]["displayname"] == "Alice A"


async def test_create_room_bad_input(make_client: Any) -> None:
    alice = await make_client().register()
    status, body = await alice.post("createRoom", {"room_version": "999"})
    assert_error(status, body, 400, "M_UNSUPPORTED_ROOM_VERSION")
    for bad in ({"name": 5}, {"invite": "x"}, {"initial_state": [1]}, {"creation_content": []},
                {"is_direct": "yes"}, {"power_level_content_override": 3}):
        status, body = await alice.post("createRoom", bad)
        assert_error(status, body, 400, "M_BAD_JSON")
    status, body = await alice.post("createRoom", {"preset": "nope"})
    assert_error(status, body, 400, "M_INVALID_PARAM")
    status, body = await alice.post("createRoom", {"invite": ["not-a-user"]})
    assert_error(status, body, 400, "M_INVALID_PARAM")
    status, body = await alice.post("createRoom", data=b"{not json")
    assert_error(status, body, 400, "M_NOT_JSON")
    status, body = await alice.post("createRoom", {}, token=False)
    assert_error(status, body, 401, "M_MISSING_TOKEN")


# --- membership ---------------------------------------------------------------------------

async def test_invite_join_leave_kick_ban(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    carol = await make_client().register()
    room_id = await create_room(alice, preset="private_chat")
    # Invite-only: bob may not join uninvited.
    status, body = await bob.post(f"join/{q(room_id)}", {})
    assert_error(status, body, 403, "M_FORBIDDEN")
    # An outsider may not invite.
    status, body = await carol.post(f"rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await alice.post(f"rooms/{q(room_id)}/invite",
                                    {"user_id": bob.user_id, "reason": "welcome"})
    assert status == 200, body
    status, body = await bob.post(f"rooms/{q(room_id)}/join", {"reason": "hi"})
    assert status == 200 and body["room_id"] == room_id, body
    assert await joined(alice, room_id) == {alice.user_id, bob.user_id}
    # Joining again is fine.
    status, body = await bob.post(f"join/{q(room_id)}", {})
    assert status == 200, body
    status, body = await bob.get("joined_rooms")
    assert status == 200 and room_id in body["joined_rooms"]
    # Inviting a joined user is refused.
    status, body = await alice.post(f"rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    assert_error(status, body, 403, "M_FORBIDDEN")
    # bob (power 0) cannot kick alice.
    status, body = await bob.post(f"rooms/{q(room_id)}/kick", {"user_id": alice.user_id})
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await alice.post(f"rooms/{q(room_id)}/kick",
                                    {"user_id": bob.user_id, "reason": "bye"})
    assert status == 200, body
    state = await state_of(alice, room_id)
    member = state[("m.room.member", bob.user_id)]
    assert member["content"] == {"membership": "leave", "reason": "bye"}
    assert member["sender"] == alice.user_id
    # Kicking someone who is not in the room is refused.
    status, body = await alice.post(f"rooms/{q(room_id)}/kick", {"user_id": carol.user_id})
    assert_error(status, body, 403, "M_FORBIDDEN")
    # Invite, reject.
    assert (await alice.post(f"rooms/{q(room_id)}/invite", {"user_id": bob.user_id}))[0] == 200
    status, body = await bob.post(f"rooms/{q(room_id)}/leave", {"reason": "no thanks"})
    assert status == 200, body
    assert (await state_of(alice, room_id))[("m.room.member", bob.user_id)]["content"][
        "membership"] == "leave"
    # Ban: banned users can neither join nor be invited; unban then invite works.
    status, body = await alice.post(f"rooms/{q(room_id)}/ban", {"user_id": bob.user_id, "reason": "spam"})
    assert status == 200, body
    status, body = await bob.post(f"join/{q(room_id)}", {})
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await alice.post(f"rooms/{q(room_id)}/invite", {"user_id": bob.user_id})
    assert_error(status, body, 403, "M_FORBIDDEN")
    # Unbanning someone who is not banned is refused.
    status, body = await alice.post(f"rooms/{q(room_id)}/unban", {"user_id": carol.user_id})
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await alice.post(f"rooms/{q(room_id)}/unban", {"user_id": bob.user_id})
    assert status == 200, body
    assert (await alice.post(f"rooms/{q(room_id)}/invite", {"user_id": bob.user_id}))[0] == 200
    assert (await bob.post(f"rooms/{q(room_id)}/join", {}))[0] == 200
    # Leaving a room one is not in is refused.
    status, body = await carol.post(f"rooms/{q(room_id)}/leave", {})
    assert_error(status, body, 403, "M_FORBIDDEN")


async def test_ban_of_moderator_needs_higher_power(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await create_room(alice, preset="public_chat", room_version="11")
    assert (await bob.post(f"join/{q(room_id)}", {}))[0] == 200
    status, body = await bob.post(f"rooms/{q(room_id)}/ban", {"user_id": alice.user_id})
    assert_error(status, body, 403, "M_FORBIDDEN")


async def test_knock(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await create_room(
        alice, initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]
    )
    status, body = await bob.post(f"knock/{q(room_id)}", {"reason": "let me in"})
    assert status == 200 and body["room_id"] == room_id, body
    state = await state_of(alice, room_id)
    assert state[("m.room.member", bob.user_id)]["content"]["membership"] == "knock"
    # Retract the knock by leaving, knock again, then get invited in.
    assert (await bob.post(f"rooms/{q(room_id)}/leave", {}))[0] == 200
    assert (await bob.post(f"knock/{q(room_id)}", {}))[0] == 200
    assert (await alice.post(f"rooms/{q(room_id)}/invite", {"user_id": bob.user_id}))[0] == 200
    assert (await bob.post(f"join/{q(room_id)}", {}))[0] == 200
    # Knocking on a room that does not allow it is refused.
    private = await create_room(alice, preset="private_chat")
    status, body = await bob.post(f"knock/{q(private)}", {})
    assert_error(status, body, 403, "M_FORBIDDEN")


async def test_forget(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await create_room(alice)
    status, body = await alice.post(f"rooms/{q(room_id)}/forget", {})
    assert status == 400, body
    assert (await alice.post(f"rooms/{q(room_id)}/leave", {}))[0] == 200
    status, body = await alice.post(f"rooms/{q(room_id)}/forget", {})
    assert status == 200, body
    status, body = await alice.get("joined_rooms")
    assert room_id not in body["joined_rooms"]


async def test_failed_create_room_leaves_nothing_behind(make_client: Any) -> None:
    alice = await make_client().register()
    status, before = await alice.get("joined_rooms")
    assert status == 200
    # Refused before the room exists: content of the wrong type.
    status, body = await alice.post("createRoom", {
        "room_alias_name": "half", "initial_state": [{"type": "m.room.name", "content": {"name": 5}}]})
    assert_error(status, body, 400, "M_INVALID_ROOM_STATE")
    # Refused part-way: the override takes the creator's power, so the name cannot be set.
    status, body = await alice.post("createRoom", {
        "room_version": "10", "room_alias_name": "half", "name": "Half",
        "power_level_content_override": {"users": {alice.user_id: 0}}})
    assert_error(status, body, 400, "M_INVALID_ROOM_STATE")
    status, after = await alice.get("joined_rooms")
    assert status == 200 and after["joined_rooms"] == before["joined_rooms"]
    # The alias is free again.
    status, body = await alice.post("createRoom", {"room_alias_name": "half"})
    assert status == 200 and body["room_alias"].startswith("#half:"), body


async def test_restricted_join(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    space = await create_room(alice, preset="public_chat")
    room_id = await create_room(alice, room_version="10", initial_state=[{
        "type": "m.room.join_rules",
        "content": {"join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space}]},
    }])
    status, body = await bob.post(f"join/{q(room_id)}", {})
    assert_error(status, body, 403, "M_FORBIDDEN")
    assert (await bob.post(f"join/{q(space)}", {}))[0] == 200
    status, body = await bob.post(f"join/{q(room_id)}", {})
    assert status == 200, body


# --- sending, state, redaction --------------------------------------------------------------

async def test_send_is_idempotent(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await create_room(alice)
    first = await send_text(alice, room_id, "hello", txn="same")
    again = await send_text(alice, room_id, "hello", txn="same")
    assert first == again
    other = await send_text(alice, room_id, "hello", txn="other")
    assert other != first
    status, body = await alice.get(f"rooms/{q(room_id)}/event/{q(first)}")
    assert status == 200 and body["content"]["body"] == "hello", body
    # Another device of the same user with the same txnId creates a new event.
    status, login = await alice.post("login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.user_id},
        "password": "correct horse battery",
    }, token=False)
    if status == 200:
        second = await make_client().register()
        second.access_token = login["access_token"]
        assert await send_text(second, room_id, "hello", txn="same") != first


async def test_transaction_ids_are_scoped_to_the_endpoint(make_client: Any) -> None:
    # A bot counting its transaction IDs per room must not lose its messages in the second
    # room to "retries" of the first; nor may a redaction be taken for a send.
    alice = await make_client().register()
    kitchen, garden = await create_room(alice), await create_room(alice)
    in_kitchen = await send_text(alice, kitchen, "in the kitchen", txn="1")
    in_garden = await send_text(alice, garden, "in the garden", txn="1")
    assert in_garden != in_kitchen
    status, body = await alice.get(f"rooms/{q(garden)}/event/{q(in_garden)}")
    assert status == 200 and body["content"]["body"] == "in the garden"
    assert await send_text(alice, garden, "in the garden", txn="1") == in_garden
    status, redaction = await alice.put(f"rooms/{q(kitchen)}/redact/{q(in_kitchen)}/1", {})
    assert status == 200 and redaction["event_id"] != in_kitchen
    status, again = await alice.put(f"rooms/{q(kitchen)}/redact/{q(in_kitchen)}/1", {})
    assert status == 200 and again["event_id"] == redaction["event_id"]
    status, body = await alice.get(f"rooms/{q(kitchen)}/event/{q(in_kitchen)}")
    assert status == 200 and body["content"] == {}


async def test_send_forbidden_and_bad_input(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await create_room(alice)
    status, body = await bob.put(f"rooms/{q(room_id)}/send/m.room.message/t1", {"body": "x"})
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await alice.put(f"rooms/{q(room_id)}/send/m.room.message/t2", data=b"nope")
    assert_error(status, body, 400, "M_NOT_JSON")
    status, body = await alice.put(f"rooms/{q(room_id)}/send/m.room.message/t3", [1, 2])
    assert_error(status, body, 400, "M_BAD_JSON")
    # canonical JSON (room versions 6+) has no floats and no integers beyond 2**53 - 1
    for i, bad in enumerate(({"body": "x", "n": 1.5}, {"body": "x", "n": [2**60]})):
        status, body = await alice.put(f"rooms/{q(room_id)}/send/m.room.message/c{i}", bad)
        assert_error(status, body, 400, "M_BAD_JSON")
    status, body = await alice.put(f"rooms/{q(room_id)}/state/org.example.s", {"n": 0.25})
    assert_error(status, body, 400, "M_BAD_JSON")
    status, body = await alice.put("rooms/not-a-room/send/m.room.message/t4", {"body": "x"})
    assert status == 400 and body["errcode"].startswith("M_"), body
    status, body = await alice.put(f"rooms/{q('!unknown:localhost')}/send/m.room.message/t5",
                                   {"body": "x"})
    assert status in (403, 404) and body["errcode"].startswith("M_"), body
    status, body = await alice.get(f"rooms/{q('!unknown:localhost')}/state")
    assert status in (403, 404) and body["errcode"].startswith("M_"), body
    status, body = await alice.get(f"rooms/{q(room_id)}/event/{q('$nope')}")
    assert_error(status, body, 404, "M_NOT_FOUND")


async def test_state_put_get(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    room_id = await create_room(alice, preset="public_chat")
    status, body = await alice.put(f"rooms/{q(room_id)}/state/m.room.name", {"name": "One"})
    assert status == 200 and body["event_id"].startswith("$"), body
    status, body = await alice.get(f"rooms/{q(room_id)}/state/m.room.name")
    assert status == 200 and body == {"name": "One"}, body
    status, body = await alice.put(f"rooms/{q(room_id)}/state/m.room.name/", {"name": "Two"})
    assert status == 200, body
    status, body = await alice.get(f"rooms/{q(room_id)}/state/m.room.name/")
    assert body == {"name": "Two"}
    status, body = await alice.get(f"rooms/{q(room_id)}/state/m.room.name",
                                   params={"format": "event"})
    assert status == 200 and body["type"] == "m.room.name" and body["content"] == {"name": "Two"}
    status, body = await alice.put(f"rooms/{q(room_id)}/state/org.example.custom/some%2Fkey",
                                   {"value": 1})
    assert status == 200, body
    status, body = await alice.get(f"rooms/{q(room_id)}/state/org.example.custom/some%2Fkey")
    assert status == 200 and body == {"value": 1}, body
    status, body = await alice.get(f"rooms/{q(room_id)}/state/m.room.avatar")
    assert_error(status, body, 404, "M_NOT_FOUND")
    # Non-members cannot read state; members below state_default cannot write it.
    status, body = await bob.get(f"rooms/{q(room_id)}/state")
    assert_error(status, body, 403, "M_FORBIDDEN")
    assert (await bob.post(f"join/{q(room_id)}", {}))[0] == 200
    status, body = await bob.put(f"rooms/{q(room_id)}/state/m.room.name", {"name": "Mine"})
    assert_error(status, body, 403, "M_FORBIDDEN")
    status, body = await bob.get(f"rooms/{q(room_id)}/state/m.room.name")
    assert status == 200 and body == {"name": "Two"}
    # After leaving, bob sees the state as it was when he left.
    assert (await bob.post(f"rooms/{q(room_id)}/leave", {}))[0] == 200
    assert (await alice.put(f"rooms/{q(room_id)}/state/m.room.name", {"name": "Three"}))[0] == 200
    status, body = await bob.get(f"rooms/{q(room_id)}/state/m.room.name")
    assert status == 200 and body == {"name": "Two"}, body
    status, body = await alice.put(f"rooms/{q(room_id)}/state/m.room.name", {"name": 3})
    assert status in (400, 403) and body["errcode"].startswith("M_"), body


async def test_canonical_alias_validation(make_client: Any) -> None:
    alice = await make_client().register()
    room_id = await create_room(alice)
    server = alice.user_id.split(":", 1)[1]
    status, body = await alice.put(f"rooms/{q(room_id)}/state/m.room.canonical_alias",
                                   {"alias": f"#nonexistent-alias:{server}"})
    assert_error(status, body, 400, "M_BAD_ALIAS")
    status, body = await alice.put(f"rooms/{q(room_id)}/state/m.room.canonical_alias",
                                   {"alias": "not an alias"})
    assert_error(status, body, 400, "M_INVALID_PARAM")


async def test_redaction(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    carol = await make_client().register()
    room_id = await create_room(alice, preset="public_chat")
    for c in (bob, carol):
        assert (await c.post(f"join/{q(room_id)}", {}))[0] == 200
    bob_msg = await send_text(bob, room_id, "bob's secret")
    alice_msg = await send_text(alice, room_id, "alice's words")
    carol_msg = await send_text(carol, room_id, "carol's")
    # By sender.
    status, body = await bob.put(f"rooms/{q(room_id)}/redact/{q(bob_msg)}/r1", {"reason": "oops"})
    assert status == 200, body
    redaction_id = body["event_id"]
    status, again = await bob.put(f"rooms/{q(room_id)}/redact/{q(bob_msg)}/r1", {"reason": "oops"})
    assert again["event_id"] == redaction_id
    status, ev = await bob.get(f"rooms/{q(room_id)}/event/{q(bob_msg)}")
    assert status == 200 and ev["content"] == {}, ev
    assert ev["unsigned"]["redacted_because"]["event_id"] == redaction_id
    # Others without power may not.
    status, body = await carol.put(f"rooms/{q(room_id)}/redact/{q(alice_msg)}/r2", {})
    assert_error(status, body, 403, "M_FORBIDDEN")
    # A moderator may.
    status, body = await alice.put(f"rooms/{q(room_id)}/redact/{q(carol_msg)}/r3", {})
    assert status == 200, body
    status, ev = await carol.get(f"rooms/{q(room_id)}/event/{q(carol_msg)}")
    assert ev["content"] == {}
    status, body = await alice.put(f"rooms/{q(room_id)}/redact/{q('$missing')}/r4", {})
    assert status in (400, 404), body


async def test_members_and_joined_members(make_client: Any) -> None:
    alice = await make_client().register()
    bob = await make_client().register()
    carol = await make_client().register()
    room_id = await create_room(alice, preset="public_chat")
    assert (await bob.post(f"join/{q(room_id)}", {}))[0] == 200
    assert (await alice.post(f"rooms/{q(room_id)}/invite", {"user_id": carol.user_id}))[0] == 200
    status, body = await alice.get(f"rooms/{q(room_id)}/members")
    assert status == 200, body
    members = {e["state_key"]: e["content"]["membership"] for e in body["chunk"]}
    assert members == {alice.user_id: "join", bob.user_id: "join", carol.user_id: "invite"}
    status, body = await alice.get(f"rooms/{q(room_id)}/members", params={"membership": "invite"})
    assert [e["state_key"] for e in body["chunk"]] == [carol.user_id]
    status, body = await alice.get(f"rooms/{q(room_id)}/members", params={"not_membership": "join"})
    assert [e["state_key"] for e in body["chunk"]] == [carol.user_id]
    status, body = await alice.get(f"rooms/{q(room_id)}/members", params={"membership": "bogus"})
    assert_error(status, body, 400, "M_INVALID_PARAM")
    # `at` a token from before bob joined.
    status, msgs = await alice.get(f"rooms/{q(room_id)}/messages", params={"dir": "f", "limit": "6"})
    status, body = await alice.get(f"rooms/{q(room_id)}/members", params={"at": msgs["end"]})
    assert status == 200
    assert bob.user_id not in {e["state_key"] for e in body["chunk"]}
    assert await joined(alice, room_id) == {alice.user_id, bob.user_id}
    status, body = await carol.get(f"rooms/{q(room_id)}/joined_members")
    assert_error(status, body, 403, "M_FORBIDDEN")


async def test_concurrent_sends_succeed_or_fail_one_by_one(make_client: Any) -> None:
    """Sends arriving together are persisted together; one bad send fails alone."""
    alice = await make_client().register()
    bob = await make_client().register()  # not in the room
    room_id = await create_room(alice)
    path = f"rooms/{q(room_id)}/send/m.room.message"
    sends = [alice.put(f"{path}/c{i}", {"msgtype": "m.text", "body": f"c{i}"}) for i in range(30)]
    sends += [bob.put(f"{path}/b{i}", {"msgtype": "m.text", "body": "intruder"}) for i in range(5)]
    sends += [alice.put(f"{path}/c{i}", {"msgtype": "m.text", "body": f"c{i}"}) for i in range(5)]
    sends += [alice.put(f"{path}/f{i}", {"msgtype": "m.text", "body": "x", "n": 0.5})
              for i in range(3)]
    results = await asyncio.gather(*sends)
    first, bobs, retries, floats = results[:30], results[30:35], results[35:40], results[40:]
    assert all(status == 200 for status, _ in first), first
    assert all(status == 403 and body["errcode"] == "M_FORBIDDEN" for status, body in bobs)
    assert all(status == 400 and body["errcode"] == "M_BAD_JSON" for status, body in floats)
    # a retried transaction ID gets the event of the first send, in or out of the same batch
    assert [body["event_id"] for _, body in retries] == [body["event_id"] for _, body in first[:5]]
    status, body = await alice.get(f"rooms/{q(room_id)}/messages",
                                   params={"dir": "b", "limit": "100"})
    assert status == 200
    bodies = [e["content"]["body"] for e in body["chunk"] if e["type"] == "m.room.message"]
    assert sorted(bodies) == sorted(f"c{i}" for i in range(30))
    ids = {e["event_id"] for e in body["chunk"]}
    assert {b["event_id"] for _, b in first} <= ids


async def test_identical_rooms_created_at_once_get_distinct_ids(make_client: Any) -> None:
    """From v12 a room ID is the create event's hash: same creator, same content, same
    moment must still give different rooms."""
    alice = await make_client().register()
    results = await asyncio.gather(*[alice.post("createRoom", {"preset": "private_chat"})
                                     for _ in range(12)])
    assert all(status == 200 for status, _ in results), results
    assert len({body["room_id"] for _, body in results}) == 12
