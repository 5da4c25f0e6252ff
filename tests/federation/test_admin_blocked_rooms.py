"""A room a server admin blocked (or deleted) through the admin API is closed to other
servers' users too: make_join, make_knock and invites naming it answer 403 M_FORBIDDEN,
while leaving stays possible; unblocked, it is open again."""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from tests.admin_helpers import SYNAPSE_ADMIN, make_admin
from tests.conftest import Client, ServerProcess
from tests.federation.fake_origin import F1, FakeServer, q

F2 = "/_matrix/federation/v2"


async def test_blocked_room_refuses_remote_joins(veche: ServerProcess, origin: FakeServer,
                                                 http: aiohttp.ClientSession) -> None:
    admin = await make_admin(veche, lambda: Client(http, veche.base_url))
    alice = await Client(http, veche.base_url).register("alice")
    status, body = await alice.post("createRoom", {"preset": "public_chat", "room_version": "12"})
    assert status == 200, body
    rid = q(body["room_id"])
    bob = origin.user("bob")
    make_join = f"{F1}/make_join/{rid}/{q(bob)}?ver=12"
    assert (await origin.request(http, veche, "GET", make_join))[0] == 200

    block = f"{SYNAPSE_ADMIN}/v1/rooms/{quote(body['room_id'])}/block"
    assert (await admin.put(block, {"block": True}))[0] == 200
    status, answer = await origin.request(http, veche, "GET", make_join)
    assert (status, answer.get("errcode")) == (403, "M_FORBIDDEN"), answer
    status, answer = await origin.request(http, veche, "GET",
                                          f"{F1}/make_knock/{rid}/{q(bob)}?ver=12")
    assert (status, answer.get("errcode")) == (403, "M_FORBIDDEN"), answer
    status, answer = await origin.request(http, veche, "PUT", f"{F2}/invite/{rid}/$x", {
        "room_version": "12", "event": {}, "invite_room_state": []})
    assert (status, answer.get("errcode")) == (403, "M_FORBIDDEN"), answer

    assert (await admin.put(block, {"block": False}))[0] == 200
    assert (await origin.request(http, veche, "GET", make_join))[0] == 200
