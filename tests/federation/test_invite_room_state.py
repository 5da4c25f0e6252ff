"""The invite_room_state of an incoming v2 invite into a version-12 room (server-server API
"Inviting to a room", v1.16) must carry the room's create event as a signed PDU whose
derived room ID is the invite's room: otherwise 400 M_INVALID_PARAM and the invitee never
hears of it. The other entries may be stripped, as Synapse sends them."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import aiohttp
from signedjson.key import generate_signing_key

from tests.conftest import Client, ServerProcess
from tests.federation.fake_peer import FakePeer
from tests.sync_helpers import section
from veche.core.events import compute_event_id, room_id_from_create_event_id, sign_event
from veche.core.room_versions import KNOWN_ROOM_VERSIONS

V12 = KNOWN_ROOM_VERSIONS["12"]


def create_event(peer: FakePeer, name: str = "carol") -> dict[str, Any]:
    return {"type": "m.room.create", "state_key": "", "sender": peer.user(name),
            "content": {"room_version": "12"}, "origin_server_ts": int(time.time() * 1000),
            "depth": 1, "prev_events": [], "auth_events": []}


async def test_a_v12_invite_needs_the_rooms_signed_create_event(
        veche: ServerProcess, peer: FakePeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    create = peer.sign(create_event(peer), "12")
    create_id = compute_event_id(create, V12)
    room_id = room_id_from_create_event_id(create_id)
    invite = peer.sign({
        "type": "m.room.member", "room_id": room_id, "sender": peer.user("carol"),
        "state_key": alice.user_id, "content": {"membership": "invite"},
        "origin_server_ts": int(time.time() * 1000), "depth": 5,
        "prev_events": ["$" + "a" * 43], "auth_events": [create_id, "$" + "b" * 43]}, "12")
    invite_id = compute_event_id(invite, V12)
    target = f"/_matrix/federation/v2/invite/{quote(room_id)}/{quote(invite_id)}"
    name = {"type": "m.room.name", "state_key": "", "sender": peer.user("carol"),
            "content": {"name": "Across the river"}}
    stripped_create = {k: create[k] for k in ("type", "state_key", "sender", "content")}
    other_room = peer.sign({**create_event(peer, "dan")}, "12")
    forged = sign_event({k: v for k, v in create.items() if k not in ("signatures", "hashes")},
                        peer.name, generate_signing_key("f1"), V12)
    tampered = {**create, "content": {"room_version": "12", "additional_creators": [peer.user("eve")]}}

    async def send(room_state: Any) -> tuple[int, Any]:
        return await peer.request(http, veche, "PUT", target, {
            "room_version": "12", "event": invite, "invite_room_state": room_state})

    for room_state in ([name], [stripped_create, name], [other_room, name], [forged, name],
                       [tampered, name], [create, {**name, "hashes": {}}], "junk"):
        status, body = await send(room_state)
        assert (status, body.get("errcode")) == (400, "M_INVALID_PARAM"), (room_state, body)
    status, sync = await alice.get("sync")
    assert room_id not in section(sync, "rooms", "invite")

    # The create event as a signed PDU, the rest stripped (as Synapse sends it): accepted.
    status, body = await send([create, name])
    assert status == 200, (body, veche.log()[-3000:])
    status, sync = await alice.get("sync")
    shown = {e["type"]: e for e in section(sync, "rooms", "invite")[room_id]["invite_state"]["events"]}
    assert shown["m.room.name"]["content"] == {"name": "Across the river"}
    assert shown["m.room.create"]["content"] == {"room_version": "12"}
