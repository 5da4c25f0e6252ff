"""The room directory across servers: `/publicRooms?server=<another>` asks that server over
federation (GET, or POST when filtering) for a signed-in user; Veche serves its own directory
to other servers (`/_matrix/federation/v1/publicRooms`), without the rooms that do not
federate. What the client sees when the other server refuses (403), cannot be reached or
answers badly (502), or when federation is off here (403); entries not shaped as the spec
says are left out."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.conftest import Client, ServerProcess, free_port
from tests.federation.fake_origin import FakeServer
from tests.federation.https_servers import RecordingServer
from tests.federation.peers import federating_veche_env, start_federating_veche
from tests.federation.pki import TestCA

PUBLIC_ROOMS = "/_matrix/federation/v1/publicRooms"


@pytest.fixture
async def remote(test_ca: TestCA) -> AsyncIterator[RecordingServer]:
    server = await RecordingServer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    yield server
    await server.close()


async def publish(client: Client, name: str, **create: Any) -> str:
    status, body = await client.post("createRoom", {"preset": "public_chat", "visibility": "public",
                                                    "name": name, **create})
    assert status == 200, body
    return str(body["room_id"])


def ids(page: dict[str, Any]) -> set[str]:
    return {r["room_id"] for r in page["chunk"]}


async def test_the_directory_of_another_server(
        make_server: Any, test_ca: TestCA, remote: RecordingServer,
        http: aiohttp.ClientSession) -> None:
    here, there = start_federating_veche(make_server, test_ca), start_federating_veche(make_server, test_ca)
    alice = await Client(http, here.base_url).register("alice")
    bob = await Client(http, there.base_url).register("bob")
    marker = secrets.token_hex(4)
    lounges = {await publish(bob, f"Lounge {marker} {i}") for i in range(3)}
    space = await publish(bob, f"Space {marker}", creation_content={"type": "m.space"})
    local_only = await publish(bob, f"Lounge {marker} local", creation_content={"m.federate": False})
    await bob.post("createRoom", {"preset": "private_chat", "name": f"Lounge {marker} private"})
    # bob's own server lists the room that does not federate; other servers are not told.
    status, own = await bob.get("publicRooms")
    assert status == 200 and ids(own) == {*lounges, space, local_only}, own

    status, page = await alice.get("publicRooms", params={"server": there.server_name})
    assert status == 200 and ids(page) == {*lounges, space}, page
    entry = next(r for r in page["chunk"] if r["room_id"] == space)
    assert entry["room_type"] == "m.space" and entry["num_joined_members"] == 1
    # Filtered (POST over federation too) and paginated by the other server's tokens.
    status, first = await alice.post("publicRooms", {"limit": 2, "filter": {
        "generic_search_term": "lounge"}}, params={"server": there.server_name})
    assert status == 200 and len(first["chunk"]) == 2 and "next_batch" in first, first
    status, second = await alice.post("publicRooms", {"limit": 2, "since": first["next_batch"],
                                                      "filter": {"generic_search_term": "lounge"}},
                                      params={"server": there.server_name})
    assert status == 200 and ids(first) | ids(second) == lounges, second
    status, spaces = await alice.post("publicRooms", {"filter": {"room_types": ["m.space"]}},
                                      params={"server": there.server_name})
    assert status == 200 and ids(spaces) == {space}
    # Asking another server costs it a request: only for a signed-in user.
    status, body = await alice.get("publicRooms", token=False, params={"server": there.server_name})
    assert (status, body["errcode"]) == (401, "M_MISSING_TOKEN")

    # A server answering with entries the spec would not allow: those are left out; the
    # paging asked for is passed on.
    good = {"room_id": "!good:elsewhere", "num_joined_members": 3, "world_readable": False,
            "guest_can_join": False, "name": "Good"}
    remote.responses[PUBLIC_ROOMS] = (200, {
        "chunk": [good, {"room_id": 5}, {**good, "num_joined_members": "many"}, "junk"],
        "next_batch": "n1", "total_room_count_estimate": 7}, {})
    remote_name = f"localhost:{remote.port}"
    status, page = await alice.get("publicRooms", params={"server": remote_name, "limit": "5",
                                                          "since": "p0"})
    assert (status, page) == (200, {"chunk": [good], "next_batch": "n1",
                                    "total_room_count_estimate": 7})
    asked = parse_qs(urlsplit(remote.seen[-1].path).query)
    assert asked["limit"] == ["5"] and asked["since"] == ["p0"]
    # Its refusal is passed on; its failure, or no answer at all, is a 502.
    remote.responses[PUBLIC_ROOMS] = (403, {"errcode": "M_FORBIDDEN", "error": "no"}, {})
    status, body = await alice.get("publicRooms", params={"server": remote_name})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    remote.responses[PUBLIC_ROOMS] = (500, {"errcode": "M_UNKNOWN"}, {})
    status, body = await alice.get("publicRooms", params={"server": remote_name})
    assert (status, body["errcode"]) == (502, "M_UNKNOWN")
    carol = await Client(http, here.base_url).register("carol")
    status, body = await carol.get("publicRooms", params={"server": f"localhost:{free_port()}"})
    assert (status, body["errcode"]) == (502, "M_UNKNOWN")
    status, body = await carol.get("publicRooms", params={"server": "not a server"})
    assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")

    # With federation off here, no other server is asked.
    closed = make_server(federating_veche_env(test_ca, free_port(), VECHE_FEDERATION__ENABLED=False),
                         dev=True)
    dave = await Client(http, closed.base_url).register("dave")
    seen = len(remote.seen)
    status, body = await dave.get("publicRooms", params={"server": remote_name})
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
    assert len(remote.seen) == seen


async def test_served_to_other_servers_as_the_spec_says(
        make_server: Any, test_ca: TestCA, http: aiohttp.ClientSession) -> None:
    """The server-server endpoint itself, signed by a Veche's own peer: limit 0 is no limit,
    a third-party network lists nothing here, and an unsigned request is refused."""
    veche: ServerProcess = start_federating_veche(make_server, test_ca)
    bob = await Client(http, veche.base_url).register("bob")
    rooms = {await publish(bob, f"Room {i}") for i in range(2)}
    async with http.get(veche.base_url + PUBLIC_ROOMS) as r:
        assert r.status == 401
    origin_server = await RecordingServer(test_ca.issue(["localhost"], ["127.0.0.1"])).start()
    try:
        origin = FakeServer(origin_server)  # it signs; no room is needed
        status, page = await origin.request(http, veche, "GET", PUBLIC_ROOMS + "?limit=0")
        assert status == 200 and ids(page) == rooms and "next_batch" not in page, page
        status, page = await origin.request(http, veche, "GET", PUBLIC_ROOMS + "?limit=1")
        assert status == 200 and len(page["chunk"]) == 1 and page["next_batch"], page
        status, page = await origin.request(http, veche, "POST", PUBLIC_ROOMS, {
            "limit": 1, "since": page["next_batch"], "include_all_networks": True})
        assert status == 200 and len(page["chunk"]) == 1 and "prev_batch" in page, page
        status, page = await origin.request(http, veche, "POST", PUBLIC_ROOMS,
                                            {"third_party_instance_id": "irc"})
        assert (status, page["chunk"]) == (200, [])
        status, body = await origin.request(http, veche, "POST", PUBLIC_ROOMS, {
            "include_all_networks": True, "third_party_instance_id": "irc"})
        assert (status, body["errcode"]) == (400, "M_INVALID_PARAM")
    finally:
        await origin_server.close()
