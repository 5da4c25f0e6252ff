"""Veche as the resident server of a room, asked by a server the test plays
(tests/federation/fake_peer.py): a restricted join authorised and countersigned by Veche,
make_leave / send_leave, /query/directory, and the refusals the spec names."""

from __future__ import annotations

import time
from urllib.parse import quote

import aiohttp
from signedjson.key import decode_verify_key_bytes
from unpaddedbase64 import decode_base64

from tests.conftest import Client, ServerProcess
from tests.federation.fake_peer import FakePeer
from veche.core.events import compute_event_id, verify_event_signature
from veche.core.room_versions import KNOWN_ROOM_VERSIONS

V12 = KNOWN_ROOM_VERSIONS["12"]


async def members(alice: Client, room_id: str) -> dict[str, str]:
    _, body = await alice.get(f"rooms/{quote(room_id)}/members")
    return {m["state_key"]: m["content"]["membership"] for m in body["chunk"]}


async def test_restricted_join_leave_and_directory(
        veche: ServerProcess, peer: FakePeer, http: aiohttp.ClientSession) -> None:
    alice = await Client(http, veche.base_url).register("alice")
    bob = peer.user("bob")
    _, space = await alice.post("createRoom", {"preset": "public_chat", "room_alias_name": "lobby"})
    _, restricted = await alice.post("createRoom", {"initial_state": [{
        "type": "m.room.join_rules", "state_key": "",
        "content": {"join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": space["room_id"]}]}}]})
    room_id = restricted["room_id"]

    # Not (yet) in the allowing room: refused at make_join.
    status, body, _ = await peer.join(http, veche, room_id, bob)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body

    # The alias is found over federation, then bob joins the allowing room.
    target = f"/_matrix/federation/v1/query/directory?room_alias={quote('#lobby:' + veche.server_name, safe='')}"
    status, found = await peer.request(http, veche, "GET", target)
    assert (status, found["room_id"], found["servers"][0]) == (200, space["room_id"], veche.server_name)
    status, body = await peer.request(http, veche, "GET", target.replace("lobby", "nowhere"))
    assert status == 404
    status, _, _ = await peer.join(http, veche, space["room_id"], bob)
    assert status == 200

    # Now Veche authorises the join (one of its users who may invite) and countersigns it.
    status, answer, join_id = await peer.join(http, veche, room_id, bob)
    assert status == 200, (answer, veche.log())
    event = answer["event"]
    assert event["content"]["join_authorised_via_users_server"] == alice.user_id
    assert compute_event_id(event, V12) == join_id
    _, own = await alice.get("/_matrix/key/v2/server", token=False)
    [(key_id, key)] = own["verify_keys"].items()
    assert verify_event_signature(event, veche.server_name,
                                  decode_verify_key_bytes(key_id, decode_base64(key["key"])), V12, key_id)
    assert (await members(alice, room_id))[bob] == "join"

    # Bob leaves through make_leave / send_leave.
    status, made = await peer.request(
        http, veche, "GET", f"/_matrix/federation/v1/make_leave/{quote(room_id)}/{quote(bob)}")
    assert status == 200 and made["event"]["content"]["membership"] == "leave", made
    leave = peer.sign({**made["event"], "origin_server_ts": int(time.time() * 1000)}, "12")
    leave_id = compute_event_id(leave, V12)
    # Another server's user cannot be made to leave by this one; a forged event is refused.
    status, _ = await peer.request(
        http, veche, "GET",
        f"/_matrix/federation/v1/make_leave/{quote(room_id)}/{quote(alice.user_id or '')}")
    assert status == 403
    # (One whose content hash alone fails is taken redacted, as any received PDU: see
    # test_hostile_peers.py.)
    forged = {**leave, "origin_server_ts": leave["origin_server_ts"] + 1}
    status, body = await peer.request(
        http, veche, "PUT",
        f"/_matrix/federation/v2/send_leave/{quote(room_id)}/{quote(compute_event_id(forged, V12))}",
        forged)
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
    status, body = await peer.request(
        http, veche, "PUT", f"/_matrix/federation/v2/send_leave/{quote(room_id)}/{quote(leave_id)}",
        leave)
    assert (status, body) == (200, {}), veche.log()
    assert (await members(alice, room_id))[bob] == "leave"
