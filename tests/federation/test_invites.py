"""Invites across servers, with a server the test plays (tests/federation/fake_peer.py):
Veche countersigns an invite of its user, who sees it in /sync with the room's state and can
reject it; an invite of a user on an unreachable or refused server is an error the inviter
sees, never a 200."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import aiohttp
from signedjson.key import decode_verify_key_bytes
from unpaddedbase64 import decode_base64

from tests.conftest import Client, ServerProcess
from tests.federation.fake_peer import FakePeer
from tests.sync_helpers import section
from veche.core.events import compute_event_id, verify_event_signature
from veche.core.room_versions import KNOWN_ROOM_VERSIONS


def invite_event(peer: FakePeer, room_id: str, invitee: str) -> dict[str, Any]:
    event = {
        "type": "m.room.member", "room_id": room_id, "sender": peer.user("carol"),
        "state_key": invitee, "content": {"membership": "invite"},
        "origin_server_ts": int(time.time() * 1000), "depth": 5,
        "prev_events": ["$" + "a" * 43], "auth_events": ["$" + "b" * 43],
    }
    return peer.sign(event, "10")


async def test_an_invite_from_another_server_is_countersigned_shown_and_rejectable(
        veche: ServerProcess, peer: FakePeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    room_id = f"!fedroom:{peer.name}"
    event = invite_event(peer, room_id, alice.user_id or "")
    event_id = compute_event_id(event, KNOWN_ROOM_VERSIONS["10"])
    room_state = [
        {"type": "m.room.create", "state_key": "", "sender": peer.user("carol"),
         "content": {"room_version": "10", "creator": peer.user("carol")}},
        {"type": "m.room.name", "state_key": "", "sender": peer.user("carol"),
         "content": {"name": "Across the river"}},
    ]
    target = f"/_matrix/federation/v2/invite/{quote(room_id)}/{quote(event_id)}"
    # Versions this server does not speak, and users it does not have, are refused.
    status, body = await peer.request(http, veche, "PUT", target, {
        "room_version": "1", "event": event, "invite_room_state": room_state})
    assert (status, body.get("errcode")) == (400, "M_INCOMPATIBLE_ROOM_VERSION")
    ghost = invite_event(peer, room_id, f"@ghost:{veche.server_name}")
    ghost_id = compute_event_id(ghost, KNOWN_ROOM_VERSIONS["10"])
    status, body = await peer.request(
        http, veche, "PUT", f"/_matrix/federation/v2/invite/{quote(room_id)}/{quote(ghost_id)}",
        {"room_version": "10", "event": ghost, "invite_room_state": room_state})
    assert status == 404, body

    status, body = await peer.request(http, veche, "PUT", target, {
        "room_version": "10", "event": event, "invite_room_state": room_state})
    assert status == 200, (body, veche.log())
    # Countersigned by Veche, the event otherwise unchanged.
    signed = body["event"]
    assert compute_event_id(signed, KNOWN_ROOM_VERSIONS["10"]) == event_id
    _, own = await alice.get("/_matrix/key/v2/server", token=False)
    [(key_id, key)] = own["verify_keys"].items()
    verify_key = decode_verify_key_bytes(key_id, decode_base64(key["key"]))
    assert verify_event_signature(signed, veche.server_name, verify_key,
                                  KNOWN_ROOM_VERSIONS["10"], key_id)

    # The invitee sees it, with the state the inviting server sent.
    status, sync = await alice.get("sync")
    invite = section(sync, "rooms", "invite")[room_id]["invite_state"]["events"]
    by_type = {e["type"]: e for e in invite}
    assert by_type["m.room.name"]["content"] == {"name": "Across the river"}
    assert by_type["m.room.member"]["sender"] == peer.user("carol")
    assert by_type["m.room.member"]["content"]["membership"] == "invite"

    # Rejecting it works even though the inviting server does not answer make_leave.
    status, body = await alice.post(f"rooms/{quote(room_id)}/leave", {})
    assert status == 200, (body, veche.log())
    status, sync = await alice.get("sync", params={"since": sync["next_batch"], "timeout": "0"})
    assert room_id not in section(sync, "rooms", "invite")
    status, sync = await alice.get("sync")
    assert room_id not in section(sync, "rooms", "invite")


async def test_inviting_a_user_of_an_unreachable_server_is_an_error(
        veche: ServerProcess, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    _, room = await alice.post("createRoom", {})
    # Nothing listens on port 1 of loopback (which this Veche may reach).
    status, body = await alice.post(f"rooms/{room['room_id']}/invite",
                                    {"user_id": "@bob:localhost:1"})
    assert status == 502 and body["errcode"] == "M_UNKNOWN", body
    assert "localhost:1" in body["error"]
    status, members = await alice.get(f"rooms/{room['room_id']}/members")
    assert [m["state_key"] for m in members["chunk"]] == [alice.user_id]


async def test_a_closed_server_refuses_to_invite_other_servers_users(
        make_server: Any, http: aiohttp.ClientSession) -> None:
    closed = make_server({"VECHE_FEDERATION__ENABLED": "false"}, dev=True)
    alice = await Client(http, closed.base_url).register("alice")
    _, room = await alice.post("createRoom", {})
    status, body = await alice.post(f"rooms/{room['room_id']}/invite",
                                    {"user_id": "@bob:matrix.example"})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body


async def test_a_closed_server_creates_no_room_to_invite_another_servers_user(
        make_server: Any, http: aiohttp.ClientSession) -> None:
    closed = make_server({"VECHE_FEDERATION__ENABLED": "false"}, dev=True)
    alice = await Client(http, closed.base_url).register("alice")
    status, body = await alice.post("createRoom", {"is_direct": True,
                                                   "invite": ["@bob:matrix.example"]})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    status, rooms = await alice.get("joined_rooms")
    assert rooms["joined_rooms"] == []
