"""Three servers in one room (issue 12, done-when 4): two Veche instances and the session's
Synapse. The room is found in the Veche resident's directory over federation (and a Synapse
room in Synapse's by Veche), joined from the other two, and everyone's messages reach everyone. Then an `m.room.server_acl` denies
the second Veche (named 127.0.0.1:<port>; the others are localhost:<port>, and ACLs ignore
ports): what it sends is refused by the other two (its messages and its user's leave never
appear there, its user's join through either is refused), while they keep talking."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from tests.conftest import Client
from tests.federation.peers import SynapsePeer, start_federating_veche
from tests.federation.pki import TestCA
from tests.federation.test_synapse_rooms import (
    SynapseClient,
    eventually,
    messages,
    send_texts,
    texts,
)

pytestmark = pytest.mark.timeout(900)  # the first run installs Synapse

ACL = {"allow": ["*"], "deny": ["127.0.0.1"], "allow_ip_literals": True}
# How long a refused event is given to show up where it must not: deliveries on loopback
# take well under a second (the allowed servers' messages are awaited as well).
GRACE_S = 3


async def test_three_servers_then_one_denied_by_a_server_acl(
        make_server: Any, test_ca: TestCA, synapse: SynapsePeer,
        http: aiohttp.ClientSession) -> None:
    veche_a = start_federating_veche(make_server, test_ca)
    veche_b = start_federating_veche(make_server, test_ca, host="127.0.0.1")
    alice = await Client(http, veche_a.base_url).register("alice")
    bob = await Client(http, veche_b.base_url).register("bob")
    sam = await SynapseClient(http, synapse.client_url).register()
    status, room = await alice.post("createRoom", {"preset": "public_chat", "visibility": "public",
                                                   "name": "Three servers"})
    assert status == 200, room
    room_id = room["room_id"]
    rid = quote(room_id)

    # Synapse finds the room in Veche A's directory (/publicRooms over federation) and joins
    # through A; B joins through A too.
    status, listed = await sam.get("publicRooms", params={"server": veche_a.server_name})
    assert status == 200 and room_id in {r["room_id"] for r in listed["chunk"]}, listed
    for who in (sam, bob):
        status, body = await who.post(f"join/{rid}", {}, params={"server_name": veche_a.server_name})
        assert status == 200, (body, veche_a.log()[-3000:], synapse.log())
    everyone = {alice.user_id, bob.user_id, sam.user_id}
    # And Veche finds a room in Synapse's directory (POST: a filtered search).
    lobby_name = f"Synapse lobby {secrets.token_hex(4)}"  # the session's Synapse is shared
    status, lobby = await sam.post("createRoom", {"preset": "public_chat", "visibility": "public",
                                                  "name": lobby_name})
    assert status == 200, lobby

    async def alice_finds_the_lobby() -> bool:
        # Synapse fills its directory in the background: it may be empty at first.
        status, found = await alice.post("publicRooms", {"filter": {"generic_search_term": lobby_name}},
                                         params={"server": synapse.server_name})
        assert status == 200, found
        return [r["room_id"] for r in found["chunk"]] == [lobby["room_id"]]

    await eventually(alice_finds_the_lobby, "Synapse's room in its directory, from Veche")

    async def members(client: Client) -> set[str]:
        _, body = await client.get(f"rooms/{rid}/joined_members")
        return set(body.get("joined", {}))

    for client in (alice, bob, sam):
        await eventually(lambda c=client: _equals(members(c), everyone), "all three joined")

    # Each one's message reaches the other two.
    said = {"alice": alice, "bob": bob, "sam": sam}
    for name, client in said.items():
        await send_texts(client, room_id, [f"hello from {name}"])
    hellos = {f"hello from {n}" for n in said}
    for client in said.values():
        await eventually(lambda c=client: _includes(_texts(c, room_id), hellos), "every hello")

    # Alice denies B's host. B and Synapse get the ACL (it is sent to B as to every server
    # still in the room).
    status, _ = await alice.put(f"rooms/{rid}/state/m.room.server_acl/", ACL)
    assert status == 200

    async def has_acl(client: Client) -> bool:
        status, content = await client.get(f"rooms/{rid}/state/m.room.server_acl/")
        return status == 200 and content == ACL

    for client in (bob, sam):
        await eventually(lambda c=client: has_acl(c), "the ACL on every server")

    # Bob's message is refused by both; alice and sam keep talking.
    await send_texts(bob, room_id, ["denied from bob"])
    await send_texts(alice, room_id, ["alice after the ACL"])
    await send_texts(sam, room_id, ["sam after the ACL"])
    after = {"alice after the ACL", "sam after the ACL"}
    for client in (alice, sam):
        await eventually(lambda c=client: _includes(_texts(c, room_id), after), "the others' talk")
    await asyncio.sleep(GRACE_S)
    for client in (alice, sam):
        assert "denied from bob" not in await _texts(client, room_id)
    # B itself still hears the room (the spec: servers still send to a denied resident).
    await eventually(lambda: _includes(_texts(bob, room_id), after), "the others' talk on B")

    # Bob leaves: B's leave event is refused too, he stays joined as A and Synapse see it.
    status, body = await bob.post(f"rooms/{rid}/leave", {})
    assert status == 200, body
    await asyncio.sleep(GRACE_S)
    assert bob.user_id in await members(alice) and bob.user_id in await members(sam)
    # B, no longer in the room, asks A and then Synapse to join again (make_join): refused.
    for server in (veche_a.server_name, synapse.server_name):
        status, body = await bob.post(f"join/{rid}", {}, params={"server_name": server})
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), (server, body)

    # Alice and sam are unaffected.
    await send_texts(sam, room_id, ["still here"])
    await send_texts(alice, room_id, ["me too"])
    for client in (alice, sam):
        await eventually(lambda c=client: _includes(_texts(c, room_id), {"still here", "me too"}),
                         "the talk going on")
        assert "denied from bob" not in await _texts(client, room_id)


async def _texts(client: Client, room_id: str) -> list[str]:
    return texts(await messages(client, room_id))


async def _includes(got: Any, wanted: set[str]) -> bool:
    return wanted <= set(await got)


async def _equals(got: Any, wanted: set[Any]) -> bool:
    return set(await got) == wanted
